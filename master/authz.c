/* Authorisation of API calls by node agents (docs/NODES.md, "Identities").
 *
 * A caller whose certificate CN is "system:node:NAME" is a node agent. It
 * may read and write its own Node and the pods bound to it
 * (spec.nodeName == NAME), create its own Node and call the node methods
 * (node.register, node.heartbeat, pod.status: their handlers in nodes.c
 * check the name themselves); every other call is refused with Forbidden
 * and a Kubernetes-shaped message:
 *
 *	pods "web-1" is forbidden: User "system:node:n2" cannot get resource
 *	"pods" in the namespace "default": the pod is bound to node "n1"
 *
 * Every other identity (administrators, masters) may call every method;
 * callers without a certificate reach only `join` (api.c refuses the rest).
 *
 * The decision needs the stored pod, so it is taken where the store is
 * authoritative: a node's get/update/delete/create on a follower answers
 * NotLeader with details.leader (the client library redials there), since a
 * forwarded call would reach the leader under the follower's identity. A
 * `stale: true` get is decided and served from the follower's own store.
 * list and watch are refused outright: a node gets its pods from node.sync,
 * which the leader sends after node.register. */
#include "master/master-int.h"

#include <stdio.h>
#include <string.h>

#define NODE_PREFIX	"system:node:"
#define NODE_PREFIX_LEN (sizeof(NODE_PREFIX) - 1)

bool master__node_identity(const struct aep_rpc_conn *c, char name[AEP_NAME_MAX + 1])
{
	const char *id = aep_rpc_conn_identity(c);
	if (id == NULL || strncmp(id, NODE_PREFIX, NODE_PREFIX_LEN) != 0)
		return false;
	const char *n = id + NODE_PREFIX_LEN;
	size_t len = strlen(n);
	struct aep_error e = {0};
	if (len == 0 || len > AEP_NAME_MAX || aep_validate_dns1123_subdomain(n, len, &e) != 0)
		return false;
	memcpy(name, n, len + 1);
	return true;
}

/* What a node asks for: filled from the params of get/update/delete/create. */
struct target {
	const struct aep_kind_info *ki;
	char ns[AEP_NAME_MAX + 1];
	char name[AEP_NAME_MAX + 1];
	char node[AEP_NAME_MAX + 1]; /* update/create of a pod: its spec.nodeName */
};

static void deny(struct aep_rpc_conn *c, uint64_t msgid, int code, const char *msg)
{
	aep_rpc_reply_error(c, msgid, code, msg, NULL, 0);
}

/* Forbidden, worded like Kubernetes' authorizer. @t may be NULL (the
 * method names no object). */
static void forbid(struct aep_rpc_conn *c, uint64_t msgid, const char *node, const char *verb,
		   const struct target *t, const char *why)
{
	char msg[AEP_ERRMSG_MAX];
	if (t == NULL)
		snprintf(msg, sizeof(msg), "User \"" NODE_PREFIX "%s\" cannot %s: %s", node, verb,
			 why);
	else if (t->name[0] != '\0' && t->ns[0] != '\0')
		snprintf(msg, sizeof(msg),
			 "%s \"%.100s\" is forbidden: User \"" NODE_PREFIX
			 "%.100s\" cannot %s resource \"%s\" in the namespace \"%.60s\": %s",
			 t->ki->plural, t->name, node, verb, t->ki->plural, t->ns, why);
	else if (t->name[0] != '\0')
		snprintf(msg, sizeof(msg),
			 "%s \"%.100s\" is forbidden: User \"" NODE_PREFIX
			 "%.100s\" cannot %s resource \"%s\": %s",
			 t->ki->plural, t->name, node, verb, t->ki->plural, why);
	else
		snprintf(msg, sizeof(msg),
			 "%s is forbidden: User \"" NODE_PREFIX "%.100s\" cannot %s resource "
			 "\"%s\": %s",
			 t->ki->plural, node, verb, t->ki->plural, why);
	deny(c, msgid, AEP_EFORBIDDEN, msg);
}

/* A string parameter into @buf; "" when absent or nil. Returns false (and
 * fills @e) when it is not a string or too long. */
static bool param_copy(const msgpack_object *params, const char *key, char *buf, size_t size,
		       struct aep_error *e)
{
	buf[0] = '\0';
	const msgpack_object *v = params ? aep_mp_map_get(params, key) : NULL;
	if (v == NULL || v->type == MSGPACK_OBJECT_NIL)
		return true;
	if (v->type != MSGPACK_OBJECT_STR) {
		aep_errorf(e, AEP_EBADREQUEST, "%s: must be a string", key);
		return false;
	}
	if (v->via.str.size >= size) {
		aep_errorf(e, AEP_EBADREQUEST, "%s: too long", key);
		return false;
	}
	memcpy(buf, v->via.str.ptr, v->via.str.size);
	buf[v->via.str.size] = '\0';
	return true;
}

/* get/delete/list/watch params: kind, namespace ("default" for namespaced
 * kinds, as api.c does for get and delete), name. */
static bool target_from_params(const msgpack_object *params, struct target *t, struct aep_error *e)
{
	char kind[64];
	memset(t, 0, sizeof(*t));
	if (!param_copy(params, "kind", kind, sizeof(kind), e))
		return false;
	t->ki = aep_kind_lookup(kind, strlen(kind));
	if (t->ki == NULL) {
		aep_errorf(e, AEP_EBADREQUEST, "kind \"%s\": unknown kind", kind);
		return false;
	}
	if (!param_copy(params, "namespace", t->ns, sizeof(t->ns), e) ||
	    !param_copy(params, "name", t->name, sizeof(t->name), e))
		return false;
	if (!t->ki->namespaced)
		t->ns[0] = '\0';
	else if (t->ns[0] == '\0')
		strcpy(t->ns, "default");
	return true;
}

/* create/update params: the object, decoded and validated exactly as the
 * handler will decode it, so both see the same kind, namespace and name. */
static bool target_from_object(const msgpack_object *params, struct target *t, struct aep_error *e)
{
	memset(t, 0, sizeof(*t));
	const msgpack_object *obj = params ? aep_mp_map_get(params, "object") : NULL;
	if (obj == NULL || obj->type != MSGPACK_OBJECT_MAP) {
		aep_errorf(e, AEP_EBADREQUEST, "object: required map");
		return false;
	}
	struct aep_object *o = NULL;
	if (aep_object_from_msgpack(obj, &o, e) != 0)
		return false;
	t->ki = aep_kind_info(o->kind);
	snprintf(t->ns, sizeof(t->ns), "%s", o->meta.ns);
	snprintf(t->name, sizeof(t->name), "%s", o->meta.name);
	snprintf(t->node, sizeof(t->node), "%s", o->node_name ? o->node_name : "");
	aep_object_unref(o);
	return true;
}

/* Answer NotLeader with {leader: ADDR}, or Unavailable when no leader is
 * known. */
static void not_leader(struct master *m, struct aep_rpc_conn *c, uint64_t msgid)
{
	const char *api = master__leader_api(m);
	if (api == NULL || strcmp(api, m->advertise) == 0) {
		deny(c, msgid, AEP_EUNAVAILABLE, "no leader is known yet; retry shortly");
		return;
	}
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "leader");
	aep_pack_str(&pk, api);
	if (b.failed)
		deny(c, msgid, AEP_ENOMEM, "out of memory");
	else
		aep_rpc_reply_error(c, msgid, AEP_ENOTLEADER,
				    "node agents are served by the leader only", b.data, b.len);
	aep_buf_free(&b);
}

/* A pod the node may touch: it exists and is bound to @node. Answers the
 * request and returns false otherwise. */
static bool own_pod(struct master *m, struct aep_rpc_conn *c, uint64_t msgid, const char *node,
		    const char *verb, const struct target *t)
{
	struct aep_object *o = aep_store_get(m->store, AEP_KIND_POD, t->ns, t->name);
	if (o == NULL) {
		char msg[AEP_ERRMSG_MAX];
		snprintf(msg, sizeof(msg), "pods \"%.200s\" not found in namespace \"%.60s\"",
			 t->name, t->ns);
		deny(c, msgid, AEP_ENOTFOUND, msg);
		return false;
	}
	bool ok = o->node_name != NULL && strcmp(o->node_name, node) == 0;
	if (!ok) {
		char why[AEP_NAME_MAX + 64];
		if (o->node_name == NULL || o->node_name[0] == '\0')
			snprintf(why, sizeof(why), "the pod is not bound to any node");
		else
			snprintf(why, sizeof(why), "the pod is bound to node \"%.200s\"",
				 o->node_name);
		forbid(c, msgid, node, verb, t, why);
	}
	aep_object_unref(o);
	return ok;
}

static const char *const method_names[] = {
#define AUTHZ__M_NAME(e, s, w) s,
    MASTER_METHODS(AUTHZ__M_NAME)
#undef AUTHZ__M_NAME
};

bool master__authorize(struct master *m, struct aep_rpc_conn *c, uint64_t msgid,
		       enum master_method which, const msgpack_object *params)
{
	const char *method = method_names[which];
	const char *id = aep_rpc_conn_identity(c);
	char node[AEP_NAME_MAX + 1];
	if (id == NULL || strncmp(id, NODE_PREFIX, NODE_PREFIX_LEN) != 0)
		return true; /* administrators and masters: everything */
	if (!master__node_identity(c, node)) {
		deny(c, msgid, AEP_EFORBIDDEN,
		     "the certificate's common name is not system:node:NAME with a valid node "
		     "name");
		return false;
	}
	if (which == MASTER_M_NODE_REGISTER || which == MASTER_M_NODE_HEARTBEAT ||
	    which == MASTER_M_POD_STATUS)
		return true; /* the handler checks the name (nodes.c) */
	if (params != NULL && params->type == MSGPACK_OBJECT_NIL)
		params = NULL;

	struct aep_error e = {0};
	struct target t;
	bool get = which == MASTER_M_GET;
	bool update = which == MASTER_M_UPDATE;
	bool create = which == MASTER_M_CREATE;
	bool del = which == MASTER_M_DELETE;
	if (which == MASTER_M_LIST || which == MASTER_M_WATCH) {
		if (!target_from_params(params, &t, &e)) {
			deny(c, msgid, e.code, e.msg);
			return false;
		}
		t.name[0] = '\0';
		forbid(c, msgid, node, method, &t,
		       "node agents cannot list or watch; the leader sends a node its pods with "
		       "node.sync after node.register");
		return false;
	}
	if (!get && !update && !create && !del) {
		char verb[80];
		snprintf(verb, sizeof(verb), "call \"%.60s\"", method);
		forbid(c, msgid, node, verb, NULL,
		       "node agents may only read and write their own Node and pods and call the "
		       "node methods");
		return false;
	}
	bool ok =
	    get || del ? target_from_params(params, &t, &e) : target_from_object(params, &t, &e);
	if (!ok) {
		deny(c, msgid, e.code, e.msg);
		return false;
	}
	if (get || del) {
		if (t.name[0] == '\0') {
			deny(c, msgid, AEP_EBADREQUEST, "name: required string");
			return false;
		}
	}
	if (t.ki->kind != AEP_KIND_POD && t.ki->kind != AEP_KIND_NODE) {
		forbid(c, msgid, node, method, &t,
		       "node agents may only access their own Node and the pods bound to it");
		return false;
	}
	if (t.ki->kind == AEP_KIND_NODE) {
		if (del) {
			forbid(c, msgid, node, method, &t, "node agents cannot delete Nodes");
			return false;
		}
		if (strcmp(t.name, node) != 0) {
			forbid(c, msgid, node, method, &t,
			       "a node may only access its own Node object");
			return false;
		}
	} else if (create) {
		forbid(c, msgid, node, method, &t, "node agents cannot create pods");
		return false;
	}

	bool stale = false;
	const msgpack_object *sv = params ? aep_mp_map_get(params, "stale") : NULL;
	if (get && sv != NULL && sv->type == MSGPACK_OBJECT_BOOLEAN)
		stale = sv->via.boolean;
	if (!stale && !master__is_leader(m)) {
		not_leader(m, c, msgid);
		return false;
	}
	if (t.ki->kind == AEP_KIND_NODE)
		return true;
	if (!own_pod(m, c, msgid, node, method, &t))
		return false;
	if (update && strcmp(t.node, node) != 0) {
		forbid(c, msgid, node, method, &t,
		       "the update must keep the pod bound to this node (spec.nodeName)");
		return false;
	}
	return true;
}
