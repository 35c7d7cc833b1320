/* state: the kinds' schemas, written once. Private to state/.
 *
 * Every object shape is an X-macro list of its fields, in the order the
 * canonical encoding writes them:
 *
 *	X(field, TYPE, PRESENCE, nested schema, check)
 *
 * TYPE is one of enum state__type without its prefix; PRESENCE is REQ
 * (present, not nil; strings non-empty, lists and maps non-empty), OPT, or
 * ALWAYS (optional, but always written: apiVersion, kind); the nested schema
 * names a STATE__SCHEMAS entry (none for non-objects); the check names a
 * STATE__CHECKS entry (none for no check). schema.c turns the lists into the
 * descriptor tables below; object.c walks them to validate and re-encode.
 *
 * Adding a field is one X line. Adding a kind is one line in AEP_KINDS
 * (state.h), one in STATE__KIND_SCHEMAS and its top-level list here. */
#ifndef AEP_STATE_SCHEMA_H
#define AEP_STATE_SCHEMA_H

#include "state/state.h"

enum state__type {
	STATE__T_STR,	     /* string; "" on an optional field means absent */
	STATE__T_INT,	     /* int64 (an integral float is accepted) */
	STATE__T_BOOL,	     /* boolean */
	STATE__T_QTY,	     /* resource quantity: "100m", "64Mi" or a number; written as str */
	STATE__T_INTSTR,     /* int (check's range) or string (check's fn) */
	STATE__T_TIME,	     /* RFC 3339 string, written normalised to UTC */
	STATE__T_RV,	     /* resourceVersion: decimal string or integer of a uint64 */
	STATE__T_LABELS,     /* map of label key -> label value, <= AEP_LABELS_MAX */
	STATE__T_ANNOT,	     /* map of label key -> any string, <= AEP_ANNOTATIONS_BYTES */
	STATE__T_STRLIST,    /* list of strings (check applies to each) */
	STATE__T_OBJ,	     /* nested object */
	STATE__T_OBJLIST,    /* list of nested objects */
	STATE__T_APIVERSION, /* "v1" */
	STATE__T_KIND,	     /* the object's Kind */
	STATE__T_META,	     /* metadata: validated by the schema, encoded by object.c */
};

enum state__presence { STATE__OPT, STATE__REQ, STATE__ALWAYS };

typedef int (*state__str_check_fn)(const char *s, size_t len, struct aep_error *e);

/* What a field's value must satisfy beyond its type. Zero means no rule. */
struct state__check {
	const char *name;
	bool range; /* INT, INTSTR (int form): min <= v <= max */
	int64_t min, max;
	size_t maxlen;		   /* STR: bytes */
	const char *const *values; /* STR: allowed values, NULL-terminated */
	state__str_check_fn fn;	   /* STR, STRLIST elements, INTSTR string form */
	bool unique_names;	   /* OBJLIST: elements' "name" fields differ */
};

struct state__schema;

struct state__field {
	const char *name;
	uint8_t len;
	uint8_t type;	  /* enum state__type */
	uint8_t presence; /* enum state__presence */
	const struct state__schema *sub;
	const struct state__check *check;
};

struct state__schema {
	const char *name;
	const struct state__field *fields;
	unsigned nfields;
};

/* Fields per object shape: bounds the walker's stack slots. */
#define STATE__FIELDS_MAX 32

/* ---- checks ------------------------------------------------------------- */

#define STATE__ENUM(...)                \
	.values = (const char *const[]) \
	{                               \
		__VA_ARGS__, NULL       \
	}

/* C(id, designated initialisers of struct state__check) */
#define STATE__CHECKS(C)                                                                        \
	C(none, .fn = NULL)                                                                     \
	C(uid, .maxlen = 39)                                                                    \
	C(nonneg, .range = true, .min = 0, .max = INT64_MAX)                                    \
	C(port, .range = true, .min = 1, .max = 65535)                                          \
	C(port0, .range = true, .min = 0, .max = 65535)                                         \
	C(port_or_name, .range = true, .min = 1, .max = 65535, .fn = state__validate_port_name) \
	C(port_name, .fn = state__validate_port_name)                                           \
	C(dns_label, .fn = aep_validate_dns1123_label)                                          \
	C(subdomain, .fn = aep_validate_dns1123_subdomain)                                      \
	C(label_key, .fn = aep_validate_label_key)                                              \
	C(label_value, .fn = aep_validate_label_value)                                          \
	C(env_name, .fn = state__validate_env_name)                                             \
	C(ip, .fn = state__validate_ip)                                                         \
	C(cluster_ip, .fn = state__validate_cluster_ip)                                         \
	C(cidr, .fn = state__validate_cidr)                                                     \
	C(unique_names, .unique_names = true)                                                   \
	C(restart_policy, STATE__ENUM("Always", "OnFailure", "Never"))                          \
	C(pull_policy, STATE__ENUM("Always", "IfNotPresent", "Never"))                          \
	C(protocol, STATE__ENUM("TCP", "UDP", "SCTP"))                                          \
	C(pod_phase, STATE__ENUM("Pending", "Running", "Succeeded", "Failed", "Unknown"))       \
	C(ns_phase, STATE__ENUM("Active", "Terminating"))                                       \
	C(node_phase, STATE__ENUM("Pending", "Running", "Terminated"))                          \
	C(cond_status, STATE__ENUM("True", "False", "Unknown"))                                 \
	C(taint_effect, STATE__ENUM("NoSchedule", "PreferNoSchedule", "NoExecute"))             \
	C(address_type,                                                                         \
	  STATE__ENUM("Hostname", "ExternalIP", "InternalIP", "ExternalDNS", "InternalDNS"))    \
	C(service_type, STATE__ENUM("ClusterIP", "NodePort", "LoadBalancer"))                   \
	C(affinity, STATE__ENUM("None", "ClientIP"))                                            \
	C(event_type, STATE__ENUM("Normal", "Warning"))                                         \
	C(medium, STATE__ENUM("Memory"))

/* ---- object shapes ------------------------------------------------------ */

#define STATE__TOP_COMMON(X)                          \
	X(apiVersion, APIVERSION, ALWAYS, none, none) \
	X(kind, KIND, ALWAYS, none, none)             \
	X(metadata, META, REQ, meta, none)

/* The name's syntax depends on the kind (STATE__KIND_SCHEMAS); the
 * namespace's on the kind's scope. Both are checked by object.c. */
#define STATE__SCHEMA_META(X)                       \
	X(name, STR, REQ, none, none)               \
	X(namespace, STR, OPT, none, none)          \
	X(uid, STR, OPT, none, uid)                 \
	X(resourceVersion, RV, OPT, none, none)     \
	X(creationTimestamp, TIME, OPT, none, none) \
	X(generation, INT, OPT, none, nonneg)       \
	X(labels, LABELS, OPT, none, none)          \
	X(annotations, ANNOT, OPT, none, none)

/* Namespace */
#define STATE__SCHEMA_TOP_NAMESPACE(X)   \
	STATE__TOP_COMMON(X)             \
	X(spec, OBJ, OPT, ns_spec, none) \
	X(status, OBJ, OPT, ns_status, none)
#define STATE__SCHEMA_NS_SPEC(X)   X(finalizers, STRLIST, OPT, none, label_key)
#define STATE__SCHEMA_NS_STATUS(X) X(phase, STR, OPT, none, ns_phase)

/* Node */
#define STATE__SCHEMA_TOP_NODE(X)          \
	STATE__TOP_COMMON(X)               \
	X(spec, OBJ, OPT, node_spec, none) \
	X(status, OBJ, OPT, node_status, none)
#define STATE__SCHEMA_NODE_SPEC(X)              \
	X(podCIDR, STR, OPT, none, cidr)        \
	X(unschedulable, BOOL, OPT, none, none) \
	X(providerID, STR, OPT, none, none)     \
	X(taints, OBJLIST, OPT, taint, none)
#define STATE__SCHEMA_TAINT(X)                \
	X(key, STR, REQ, none, label_key)     \
	X(value, STR, OPT, none, label_value) \
	X(effect, STR, REQ, none, taint_effect)
#define STATE__SCHEMA_NODE_STATUS(X)                      \
	X(capacity, OBJ, OPT, node_resources, none)       \
	X(allocatable, OBJ, OPT, node_resources, none)    \
	X(conditions, OBJLIST, OPT, node_condition, none) \
	X(addresses, OBJLIST, OPT, node_address, none)    \
	X(nodeInfo, OBJ, OPT, node_info, none)            \
	X(phase, STR, OPT, none, node_phase)
#define STATE__SCHEMA_NODE_RESOURCES(X) \
	X(cpu, QTY, OPT, none, none)    \
	X(memory, QTY, OPT, none, none) \
	X(pods, QTY, OPT, none, none)
#define STATE__SCHEMA_NODE_CONDITION(X)             \
	X(type, STR, REQ, none, none)               \
	X(status, STR, REQ, none, cond_status)      \
	X(reason, STR, OPT, none, none)             \
	X(message, STR, OPT, none, none)            \
	X(lastHeartbeatTime, TIME, OPT, none, none) \
	X(lastTransitionTime, TIME, OPT, none, none)
#define STATE__SCHEMA_NODE_ADDRESS(X)         \
	X(type, STR, REQ, none, address_type) \
	X(address, STR, REQ, none, none)
#define STATE__SCHEMA_NODE_INFO(X)                       \
	X(kernelVersion, STR, OPT, none, none)           \
	X(osImage, STR, OPT, none, none)                 \
	X(containerRuntimeVersion, STR, OPT, none, none) \
	X(architecture, STR, OPT, none, none)

/* Pod */
#define STATE__SCHEMA_TOP_POD(X)          \
	STATE__TOP_COMMON(X)              \
	X(spec, OBJ, REQ, pod_spec, none) \
	X(status, OBJ, OPT, pod_status, none)
#define STATE__SCHEMA_POD_SPEC(X)                                \
	X(nodeName, STR, OPT, none, subdomain)                   \
	X(nodeSelector, LABELS, OPT, none, none)                 \
	X(restartPolicy, STR, OPT, none, restart_policy)         \
	X(hostNetwork, BOOL, OPT, none, none)                    \
	X(terminationGracePeriodSeconds, INT, OPT, none, nonneg) \
	X(containers, OBJLIST, REQ, container, unique_names)     \
	X(volumes, OBJLIST, OPT, volume, unique_names)
#define STATE__SCHEMA_CONTAINER(X)                        \
	X(name, STR, REQ, none, dns_label)                \
	X(image, STR, REQ, none, none)                    \
	X(command, STRLIST, OPT, none, none)              \
	X(args, STRLIST, OPT, none, none)                 \
	X(workingDir, STR, OPT, none, none)               \
	X(env, OBJLIST, OPT, env_var, none)               \
	X(ports, OBJLIST, OPT, container_port, none)      \
	X(resources, OBJ, OPT, resource_reqs, none)       \
	X(volumeMounts, OBJLIST, OPT, volume_mount, none) \
	X(imagePullPolicy, STR, OPT, none, pull_policy)   \
	X(securityContext, OBJ, OPT, security_context, none)
#define STATE__SCHEMA_ENV_VAR(X)          \
	X(name, STR, REQ, none, env_name) \
	X(value, STR, OPT, none, none)
#define STATE__SCHEMA_CONTAINER_PORT(X)        \
	X(name, STR, OPT, none, port_name)     \
	X(containerPort, INT, REQ, none, port) \
	X(hostPort, INT, OPT, none, port0)     \
	X(protocol, STR, OPT, none, protocol)
#define STATE__SCHEMA_RESOURCE_REQS(X)             \
	X(requests, OBJ, OPT, resource_list, none) \
	X(limits, OBJ, OPT, resource_list, none)
#define STATE__SCHEMA_RESOURCE_LIST(X) \
	X(cpu, QTY, OPT, none, none)   \
	X(memory, QTY, OPT, none, none)
#define STATE__SCHEMA_VOLUME_MOUNT(X)      \
	X(name, STR, REQ, none, dns_label) \
	X(mountPath, STR, REQ, none, none) \
	X(readOnly, BOOL, OPT, none, none)
#define STATE__SCHEMA_SECURITY_CONTEXT(X)                \
	X(readOnlyRootFilesystem, BOOL, OPT, none, none) \
	X(privileged, BOOL, OPT, none, none)             \
	X(runAsUser, INT, OPT, none, nonneg)
#define STATE__SCHEMA_VOLUME(X)                \
	X(name, STR, REQ, none, dns_label)     \
	X(hostPath, OBJ, OPT, host_path, none) \
	X(emptyDir, OBJ, OPT, empty_dir, none)
#define STATE__SCHEMA_HOST_PATH(X) X(path, STR, REQ, none, none)
#define STATE__SCHEMA_EMPTY_DIR(X)        \
	X(medium, STR, OPT, none, medium) \
	X(sizeLimit, QTY, OPT, none, none)
#define STATE__SCHEMA_POD_STATUS(X)                      \
	X(phase, STR, OPT, none, pod_phase)              \
	X(podIP, STR, OPT, none, ip)                     \
	X(hostIP, STR, OPT, none, ip)                    \
	X(startTime, TIME, OPT, none, none)              \
	X(message, STR, OPT, none, none)                 \
	X(reason, STR, OPT, none, none)                  \
	X(conditions, OBJLIST, OPT, pod_condition, none) \
	X(containerStatuses, OBJLIST, OPT, container_status, none)
#define STATE__SCHEMA_POD_CONDITION(X)         \
	X(type, STR, REQ, none, none)          \
	X(status, STR, REQ, none, cond_status) \
	X(reason, STR, OPT, none, none)        \
	X(message, STR, OPT, none, none)       \
	X(lastTransitionTime, TIME, OPT, none, none)
#define STATE__SCHEMA_CONTAINER_STATUS(X)         \
	X(name, STR, REQ, none, dns_label)        \
	X(containerID, STR, OPT, none, none)      \
	X(image, STR, OPT, none, none)            \
	X(ready, BOOL, OPT, none, none)           \
	X(restartCount, INT, OPT, none, nonneg)   \
	X(state, OBJ, OPT, container_state, none) \
	X(lastState, OBJ, OPT, container_state, none)
#define STATE__SCHEMA_CONTAINER_STATE(X)          \
	X(waiting, OBJ, OPT, state_waiting, none) \
	X(running, OBJ, OPT, state_running, none) \
	X(terminated, OBJ, OPT, state_terminated, none)
#define STATE__SCHEMA_STATE_WAITING(X)  \
	X(reason, STR, OPT, none, none) \
	X(message, STR, OPT, none, none)
#define STATE__SCHEMA_STATE_RUNNING(X) X(startedAt, TIME, OPT, none, none)
#define STATE__SCHEMA_STATE_TERMINATED(X)   \
	X(exitCode, INT, REQ, none, none)   \
	X(reason, STR, OPT, none, none)     \
	X(message, STR, OPT, none, none)    \
	X(startedAt, TIME, OPT, none, none) \
	X(finishedAt, TIME, OPT, none, none)

/* ReplicationController */
#define STATE__SCHEMA_TOP_RC(X)          \
	STATE__TOP_COMMON(X)             \
	X(spec, OBJ, REQ, rc_spec, none) \
	X(status, OBJ, OPT, rc_status, none)
#define STATE__SCHEMA_RC_SPEC(X)             \
	X(replicas, INT, OPT, none, nonneg)  \
	X(selector, LABELS, OPT, none, none) \
	X(template, OBJ, REQ, pod_template, none)
#define STATE__SCHEMA_POD_TEMPLATE(X)              \
	X(metadata, OBJ, OPT, template_meta, none) \
	X(spec, OBJ, REQ, pod_spec, none)
#define STATE__SCHEMA_TEMPLATE_META(X)     \
	X(name, STR, OPT, none, subdomain) \
	X(labels, LABELS, OPT, none, none) \
	X(annotations, ANNOT, OPT, none, none)
#define STATE__SCHEMA_RC_STATUS(X)                   \
	X(replicas, INT, OPT, none, nonneg)          \
	X(readyReplicas, INT, OPT, none, nonneg)     \
	X(availableReplicas, INT, OPT, none, nonneg) \
	X(observedGeneration, INT, OPT, none, nonneg)

/* Service */
#define STATE__SCHEMA_TOP_SERVICE(X)          \
	STATE__TOP_COMMON(X)                  \
	X(spec, OBJ, REQ, service_spec, none) \
	X(status, OBJ, OPT, service_status, none)
#define STATE__SCHEMA_SERVICE_SPEC(X)              \
	X(selector, LABELS, OPT, none, none)       \
	X(ports, OBJLIST, OPT, service_port, none) \
	X(clusterIP, STR, OPT, none, cluster_ip)   \
	X(type, STR, OPT, none, service_type)      \
	X(sessionAffinity, STR, OPT, none, affinity)
#define STATE__SCHEMA_SERVICE_PORT(X)                  \
	X(name, STR, OPT, none, port_name)             \
	X(port, INT, REQ, none, port)                  \
	X(targetPort, INTSTR, OPT, none, port_or_name) \
	X(protocol, STR, OPT, none, protocol)          \
	X(nodePort, INT, OPT, none, port0)
#define STATE__SCHEMA_SERVICE_STATUS(X) X(loadBalancer, OBJ, OPT, lb_status, none)
#define STATE__SCHEMA_LB_STATUS(X)	X(ingress, OBJLIST, OPT, lb_ingress, none)
#define STATE__SCHEMA_LB_INGRESS(X) \
	X(ip, STR, OPT, none, ip)   \
	X(hostname, STR, OPT, none, subdomain)

/* Endpoints: no spec; subsets at the top. */
#define STATE__SCHEMA_TOP_ENDPOINTS(X) \
	STATE__TOP_COMMON(X)           \
	X(subsets, OBJLIST, OPT, ep_subset, none)
#define STATE__SCHEMA_EP_SUBSET(X)                           \
	X(addresses, OBJLIST, OPT, ep_address, none)         \
	X(notReadyAddresses, OBJLIST, OPT, ep_address, none) \
	X(ports, OBJLIST, OPT, ep_port, none)
#define STATE__SCHEMA_EP_ADDRESS(X)            \
	X(ip, STR, REQ, none, ip)              \
	X(nodeName, STR, OPT, none, subdomain) \
	X(hostname, STR, OPT, none, dns_label) \
	X(targetRef, OBJ, OPT, object_ref, none)
#define STATE__SCHEMA_OBJECT_REF(X)        \
	X(kind, STR, OPT, none, none)      \
	X(namespace, STR, OPT, none, none) \
	X(name, STR, OPT, none, none)      \
	X(uid, STR, OPT, none, none)
#define STATE__SCHEMA_EP_PORT(X)           \
	X(name, STR, OPT, none, port_name) \
	X(port, INT, REQ, none, port)      \
	X(protocol, STR, OPT, none, protocol)

/* Event: no spec; its fields at the top. */
#define STATE__SCHEMA_TOP_EVENT(X)                    \
	STATE__TOP_COMMON(X)                          \
	X(involvedObject, OBJ, REQ, object_ref, none) \
	X(reason, STR, OPT, none, none)               \
	X(message, STR, OPT, none, none)              \
	X(type, STR, OPT, none, event_type)           \
	X(count, INT, OPT, none, nonneg)              \
	X(firstTimestamp, TIME, OPT, none, none)      \
	X(lastTimestamp, TIME, OPT, none, none)       \
	X(source, OBJ, OPT, event_source, none)
#define STATE__SCHEMA_EVENT_SOURCE(X)      \
	X(component, STR, OPT, none, none) \
	X(host, STR, OPT, none, none)

/* Secret: no spec; type and data at the top. data maps keys to plain
 * strings (bootstrap tokens, docs/NODES.md). */
#define STATE__SCHEMA_TOP_SECRET(X)   \
	STATE__TOP_COMMON(X)          \
	X(type, STR, OPT, none, none) \
	X(data, ANNOT, OPT, none, none)

/* S(id, field list): every shape, each becoming state__schema_<id>. */
#define STATE__SCHEMAS(S)                                   \
	S(meta, STATE__SCHEMA_META)                         \
	S(top_namespace, STATE__SCHEMA_TOP_NAMESPACE)       \
	S(ns_spec, STATE__SCHEMA_NS_SPEC)                   \
	S(ns_status, STATE__SCHEMA_NS_STATUS)               \
	S(top_node, STATE__SCHEMA_TOP_NODE)                 \
	S(node_spec, STATE__SCHEMA_NODE_SPEC)               \
	S(taint, STATE__SCHEMA_TAINT)                       \
	S(node_status, STATE__SCHEMA_NODE_STATUS)           \
	S(node_resources, STATE__SCHEMA_NODE_RESOURCES)     \
	S(node_condition, STATE__SCHEMA_NODE_CONDITION)     \
	S(node_address, STATE__SCHEMA_NODE_ADDRESS)         \
	S(node_info, STATE__SCHEMA_NODE_INFO)               \
	S(top_pod, STATE__SCHEMA_TOP_POD)                   \
	S(pod_spec, STATE__SCHEMA_POD_SPEC)                 \
	S(container, STATE__SCHEMA_CONTAINER)               \
	S(env_var, STATE__SCHEMA_ENV_VAR)                   \
	S(container_port, STATE__SCHEMA_CONTAINER_PORT)     \
	S(resource_reqs, STATE__SCHEMA_RESOURCE_REQS)       \
	S(resource_list, STATE__SCHEMA_RESOURCE_LIST)       \
	S(volume_mount, STATE__SCHEMA_VOLUME_MOUNT)         \
	S(security_context, STATE__SCHEMA_SECURITY_CONTEXT) \
	S(volume, STATE__SCHEMA_VOLUME)                     \
	S(host_path, STATE__SCHEMA_HOST_PATH)               \
	S(empty_dir, STATE__SCHEMA_EMPTY_DIR)               \
	S(pod_status, STATE__SCHEMA_POD_STATUS)             \
	S(pod_condition, STATE__SCHEMA_POD_CONDITION)       \
	S(container_status, STATE__SCHEMA_CONTAINER_STATUS) \
	S(container_state, STATE__SCHEMA_CONTAINER_STATE)   \
	S(state_waiting, STATE__SCHEMA_STATE_WAITING)       \
	S(state_running, STATE__SCHEMA_STATE_RUNNING)       \
	S(state_terminated, STATE__SCHEMA_STATE_TERMINATED) \
	S(top_rc, STATE__SCHEMA_TOP_RC)                     \
	S(rc_spec, STATE__SCHEMA_RC_SPEC)                   \
	S(pod_template, STATE__SCHEMA_POD_TEMPLATE)         \
	S(template_meta, STATE__SCHEMA_TEMPLATE_META)       \
	S(rc_status, STATE__SCHEMA_RC_STATUS)               \
	S(top_service, STATE__SCHEMA_TOP_SERVICE)           \
	S(service_spec, STATE__SCHEMA_SERVICE_SPEC)         \
	S(service_port, STATE__SCHEMA_SERVICE_PORT)         \
	S(service_status, STATE__SCHEMA_SERVICE_STATUS)     \
	S(lb_status, STATE__SCHEMA_LB_STATUS)               \
	S(lb_ingress, STATE__SCHEMA_LB_INGRESS)             \
	S(top_endpoints, STATE__SCHEMA_TOP_ENDPOINTS)       \
	S(ep_subset, STATE__SCHEMA_EP_SUBSET)               \
	S(ep_address, STATE__SCHEMA_EP_ADDRESS)             \
	S(object_ref, STATE__SCHEMA_OBJECT_REF)             \
	S(ep_port, STATE__SCHEMA_EP_PORT)                   \
	S(top_event, STATE__SCHEMA_TOP_EVENT)               \
	S(event_source, STATE__SCHEMA_EVENT_SOURCE)         \
	S(top_secret, STATE__SCHEMA_TOP_SECRET)

/* A whole-object rule that one field's check cannot express. Returns 0 or
 * AEP_EINVALID with a message naming the path. @obj is already valid
 * against the kind's schema. */
typedef int (*state__kind_check_fn)(const msgpack_object *obj, struct aep_error *e);

/* K(ENUM, top-level schema id, name check id, whole-object check or NULL)
 * — one line for each AEP_KINDS entry. */
#define STATE__KIND_SCHEMAS(K)                       \
	K(NAMESPACE, top_namespace, dns_label, NULL) \
	K(NODE, top_node, subdomain, NULL)           \
	K(POD, top_pod, subdomain, NULL)             \
	K(RC, top_rc, subdomain, state__check_rc)    \
	K(SERVICE, top_service, dns_label, NULL)     \
	K(ENDPOINTS, top_endpoints, dns_label, NULL) \
	K(EVENT, top_event, subdomain, NULL)         \
	K(SECRET, top_secret, subdomain, NULL)

/* ---- generated in schema.c ---------------------------------------------- */

#define STATE__DECLARE_CHECK(id, ...)	extern const struct state__check state__check_##id;
#define STATE__DECLARE_SCHEMA(id, list) extern const struct state__schema state__schema_##id;
STATE__CHECKS(STATE__DECLARE_CHECK)
STATE__SCHEMAS(STATE__DECLARE_SCHEMA)
extern const struct state__schema state__schema_none; /* no fields */
#undef STATE__DECLARE_CHECK
#undef STATE__DECLARE_SCHEMA

/* Indexes of metadata's fields, for object.c. */
enum state__meta_field {
#define STATE__META_INDEX(n, t, p, s, c) STATE__META_##n,
	STATE__SCHEMA_META(STATE__META_INDEX)
#undef STATE__META_INDEX
	    STATE__META__COUNT
};

/* One kind's schema (kind.c). */
struct state__kind_schema {
	const struct state__schema *top;
	const struct state__check *name_check;
	state__kind_check_fn check;
};
const struct state__kind_schema *state__kind_schema(enum aep_kind kind);

/* ---- validate.c --------------------------------------------------------- */

/* Is @s (@len bytes) well-formed UTF-8 (no overlong forms, no surrogates)? */
bool state__utf8_ok(const char *s, size_t len);

/* Each returns 0 or AEP_EINVALID with a message (without the field's path)
 * in @e. */
int state__validate_port_name(const char *s, size_t len, struct aep_error *e);
int state__validate_env_name(const char *s, size_t len, struct aep_error *e);
int state__validate_ip(const char *s, size_t len, struct aep_error *e);
int state__validate_cluster_ip(const char *s, size_t len, struct aep_error *e);
int state__validate_cidr(const char *s, size_t len, struct aep_error *e);
int state__validate_quantity(const char *s, size_t len, struct aep_error *e);
/* ReplicationController: a non-empty spec.selector must match the
 * template's labels. */
int state__check_rc(const msgpack_object *obj, struct aep_error *e);

/* Write @s (@len bytes) into @buf (@size >= 8) as a double-quoted string for
 * a message: non-printable bytes become '?', long strings are cut with
 * "...". Returns @buf. */
const char *state__quote(char *buf, size_t size, const char *s, size_t len);
#define STATE__QUOTE_MAX 80

#endif /* AEP_STATE_SCHEMA_H */
