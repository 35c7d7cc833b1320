/* state: AEP's replicated object model. Pure: no sockets, no clocks, no
 * threads. Everything here is deterministic given its inputs.
 *
 * Objects are msgpack maps shaped like Kubernetes objects. An object in the
 * store is immutable and reference-counted: updates replace it, so readers
 * (watch events, list results) can keep a reference without copying.
 *
 * Kinds and their fields are declared once, in state/schema.h (X-macro
 * lists). From those declarations come the kind table, the validator (which
 * rejects unknown fields with a clear error) and the accessors below.
 *
 * Writes are commands (struct aep_cmd). The leader stamps everything that
 * is not deterministic (uid, time) into the command; aep_store_apply()
 * turns a Raft entry (a batch of encoded commands) into new store state,
 * watch events and one result per command. The revision (resourceVersion)
 * of an object is AEP_REV(index, position): the Raft index of the entry
 * that last changed it and the command's position within that entry. */
#ifndef AEP_STATE_H
#define AEP_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/lib.h"

/* ---- kinds -------------------------------------------------------------- */

/* X(ENUM, Kind, plural, singular, short, namespaced) */
#define AEP_KINDS(X)                                                                            \
	X(NAMESPACE, "Namespace", "namespaces", "namespace", "ns", false)                       \
	X(NODE, "Node", "nodes", "node", "no", false)                                           \
	X(POD, "Pod", "pods", "pod", "po", true)                                                \
	X(RC, "ReplicationController", "replicationcontrollers", "replicationcontroller", "rc", \
	  true)                                                                                 \
	X(SERVICE, "Service", "services", "service", "svc", true)                               \
	X(ENDPOINTS, "Endpoints", "endpoints", "endpoints", "ep", true)                         \
	X(EVENT, "Event", "events", "event", "ev", true)                                        \
	X(SECRET, "Secret", "secrets", "secret", "secret", true)

enum aep_kind {
#define AEP__KIND_ENUM(e, k, p, singular, s, n) AEP_KIND_##e,
	AEP_KINDS(AEP__KIND_ENUM)
#undef AEP__KIND_ENUM
	    AEP_KIND__COUNT
};

struct aep_kind_info {
	const char *name;      /* "Pod" */
	const char *plural;    /* "pods" */
	const char *singular;  /* "pod" */
	const char *shortname; /* "po" */
	enum aep_kind kind;
	bool namespaced;
};

const struct aep_kind_info *aep_kind_info(enum aep_kind kind);
/* Accepts Kind ("Pod"), plural, singular and short names, any case.
 * Returns NULL when unknown. */
const struct aep_kind_info *aep_kind_lookup(const char *name, size_t len);

/* ---- limits ------------------------------------------------------------- */
#define AEP_NAME_MAX	      253 /* DNS-1123 subdomain */
#define AEP_LABEL_NAME_MAX    63  /* label name part and label values */
#define AEP_LABELS_MAX	      64  /* labels per object */
#define AEP_ANNOTATIONS_BYTES (256 * 1024)
#define AEP_OBJECT_MAX	      (1024 * 1024) /* encoded bytes of one object */

/* ---- objects ------------------------------------------------------------ */

struct aep_label {
	char *key;
	char *value;
};

struct aep_meta {
	char *name;
	char *ns;  /* "" for cluster-scoped kinds */
	char *uid; /* "" until created */
	uint64_t rv;
	int64_t created_ns; /* creationTimestamp, Unix ns; 0 until created */
	int64_t generation;
	struct aep_label *labels; /* sorted by key */
	size_t nlabels;
};

/* A Pod's status.phase, read once when the object is built. */
enum aep_pod_phase {
	AEP_PHASE_NONE, /* no phase, or not a Pod */
	AEP_PHASE_PENDING,
	AEP_PHASE_RUNNING,
	AEP_PHASE_SUCCEEDED,
	AEP_PHASE_FAILED,
	AEP_PHASE_UNKNOWN,
};
/* "Pending", "Running", ...; "" for AEP_PHASE_NONE. */
const char *aep_pod_phase_name(enum aep_pod_phase p);

struct aep_object {
	unsigned refs;
	enum aep_kind kind;
	struct aep_meta meta;
	char *node_name;	  /* Pod spec.nodeName, else NULL */
	enum aep_pod_phase phase; /* Pod status.phase */
	size_t len;		  /* the full msgpack encoding, metadata included */
	char *data;
};

/* Decode and validate an object submitted by a client: a msgpack map with
 * kind, apiVersion (optional, "v1"), metadata, spec, status as the schema
 * declares. Unknown fields, wrong types, bad names, bad labels and sizes
 * over the limits are AEP_EINVALID with a message naming the field
 * ("metadata.labels: key \"-x\": must ..."); an object whose encoding
 * exceeds AEP_OBJECT_MAX is AEP_ETOOLARGE, bytes that are not one whole
 * msgpack value AEP_EBADREQUEST, and AEP_ENOMEM leaves nothing behind.
 * On success *@out has one reference and owns a canonical re-encoding of
 * the input: fixed key order (apiVersion "v1" always, kind, metadata,
 * then the kind's fields in schema order), maps sorted by key, optional
 * empty strings, lists and maps and nils dropped, quantities as strings,
 * times in UTC. The same logical object always gives the same bytes, and
 * decoding those bytes gives them back unchanged. A namespaced kind
 * without a namespace gets "default"; a cluster-scoped kind with one is
 * invalid. */
int aep_object_decode(const char *data, size_t len, struct aep_object **out, struct aep_error *e);
/* The same, from an already unpacked msgpack_object. */
int aep_object_from_msgpack(const msgpack_object *o, struct aep_object **out, struct aep_error *e);

/* Objects are one allocation (struct, labels, strings, encoding) and are
 * freed when the last reference goes; they are not thread-safe. unref of
 * NULL is a no-op. */
struct aep_object *aep_object_ref(struct aep_object *o);
void aep_object_unref(struct aep_object *o);

/* Return a new object (one reference) equal to @o with the given metadata
 * stamped in; the encoding is rebuilt, canonical as decode makes it.
 * @uid NULL keeps @o's uid ("" clears it); @rv always replaces (0 drops
 * resourceVersion); @created_ns < 0 keeps @o's (0 drops
 * creationTimestamp); @generation < 0 keeps @o's. Node name, labels and
 * everything outside metadata are kept. Returns 0 or AEP_ENOMEM (*@out
 * untouched). */
int aep_object_stamp(const struct aep_object *o, const char *uid, uint64_t rv, int64_t created_ns,
		     int64_t generation, struct aep_object **out);

/* Format Unix ns as RFC 3339 UTC ("2026-11-27T23:28:38Z") into @buf (>= 32).
 * A non-zero sub-second part is written as a fraction without trailing
 * zeros ("...:38.25Z"), so aep_time_parse() gives back exactly @ns. */
void aep_time_format(int64_t ns, char *buf, size_t size);
/* Parse RFC 3339 ("2026-11-27T23:28:38Z"; optional fraction of up to 9
 * digits; "Z" or a "+HH:MM"/"-HH:MM" offset) into Unix ns. Returns 0, or
 * AEP_EINVALID when malformed or outside the int64 ns range. */
int aep_time_parse(const char *s, size_t len, int64_t *ns);

/* Validation helpers, also used by the CLI. Each returns 0 or AEP_EINVALID
 * with a message in @e. */
int aep_validate_dns1123_subdomain(const char *s, size_t len, struct aep_error *e);
int aep_validate_dns1123_label(const char *s, size_t len, struct aep_error *e);
int aep_validate_label_key(const char *s, size_t len, struct aep_error *e);
int aep_validate_label_value(const char *s, size_t len, struct aep_error *e);

/* A resource quantity ("100m", "2", "64Mi", "1.5G", "1e3") as milli-units:
 * "100m" -> 100, "2" -> 2000, "1Ki" -> 1024000. Fractions of a milli-unit
 * round up. Returns 0, or AEP_EINVALID when malformed or beyond INT64_MAX
 * milli-units (about 9.2 PB of memory). */
int aep_quantity_parse(const char *s, size_t len, int64_t *milli, struct aep_error *e);

/* ---- label selectors ---------------------------------------------------- */

/* Kubernetes syntax: "a=b,c!=d,e in (x,y),f notin (z),g,!h", also "a==b";
 * comma is AND, whitespace between tokens is ignored, keys and values must
 * be valid label keys and values. "" (or only spaces) is the empty
 * selector, which matches everything. "a!=b" and "a notin (...)" also match
 * objects without label a. Returns 0 with *@out owned by the caller
 * (aep_selector_free), AEP_EINVALID with the offset of the fault in @e, or
 * AEP_ENOMEM. */
struct aep_selector;
int aep_selector_parse(const char *s, size_t len, struct aep_selector **out, struct aep_error *e);
/* From a map of key -> value (an RC or Service selector): all must equal.
 * NULL, nil or {} give the empty selector. Errors as aep_selector_parse. */
int aep_selector_from_map(const msgpack_object *map, struct aep_selector **out,
			  struct aep_error *e);
/* @labels sorted by key (as in struct aep_meta). A NULL selector matches. */
bool aep_selector_matches(const struct aep_selector *s, const struct aep_label *labels,
			  size_t nlabels);
/* True for NULL and for a selector without requirements. */
bool aep_selector_empty(const struct aep_selector *s);
/* A label every object matching @s must carry: the first requirement that
 * is "key=value", "key==value" or "key in (value)" with one value. Returns
 * false when @s has none (or is NULL). The strings live as long as @s. The
 * store's label index uses it to list by selector without a scan. */
bool aep_selector_required_label(const struct aep_selector *s, const char **key,
				 const char **value);
void aep_selector_free(struct aep_selector *s); /* NULL is fine */

/* ---- commands ----------------------------------------------------------- */

enum aep_op {
	AEP_OP_CREATE = 1,
	AEP_OP_UPDATE = 2, /* replace; precondition if cmd.precond_rv != 0 */
	AEP_OP_DELETE = 3, /* precondition if cmd.precond_rv != 0 */
	AEP_OP_MEMBER = 4, /* record a master's addresses (name, api, peer) */
	AEP_OP_BIND = 5,   /* set an unbound Pod's spec.nodeName (ns, name, node; uid if set) */
};

struct aep_cmd {
	enum aep_op op;
	enum aep_kind kind;
	const char *ns; /* delete: which object; create/update: from obj */
	const char *name;
	uint64_t precond_rv;
	char uid[40];	 /* create: stamped by the leader */
	int64_t now_ns;	 /* stamped by the leader */
	const char *obj; /* create/update: the validated object's msgpack */
	size_t obj_len;
	/* AEP_OP_MEMBER */
	const char *member_api;
	const char *member_peer;
	/* AEP_OP_BIND: the node; cmd.uid, when set, must be the pod's uid.
	 * The pod must exist and be unbound (else NotFound / Conflict); the
	 * bound pod gets a new revision and a MODIFIED event. */
	const char *node;
};

/* Append the encoding of @cmd to @b. */
int aep_cmd_encode(const struct aep_cmd *cmd, msgpack_packer *pk);

/* A Raft entry: a msgpack array of commands. */
struct aep_batch {
	struct aep_buf buf;
	uint32_t count;
	size_t hdr; /* bytes reserved for the array header at the front */
};
void aep_batch_init(struct aep_batch *b);
int aep_batch_add(struct aep_batch *b, const struct aep_cmd *cmd);
/* Finish the entry: returns a pointer/length to its bytes (valid until
 * aep_batch_reset/free). */
int aep_batch_finish(struct aep_batch *b, const char **data, size_t *len);
void aep_batch_reset(struct aep_batch *b);
void aep_batch_free(struct aep_batch *b);

/* One command's outcome. On success obj is the object after the command
 * (for delete: the object as it was, with the delete's revision), with a
 * reference the holder releases with aep_result_clear(). */
struct aep_result {
	int code;
	uint64_t rv;
	struct aep_object *obj;
	char *msg; /* heap, NULL when code == 0 */
};
void aep_result_clear(struct aep_result *r);

/* ---- the store ---------------------------------------------------------- */

#define AEP_REV(index, pos) (((uint64_t)(index) << 16) | (uint64_t)(pos))
#define AEP_REV_INDEX(rev)  ((rev) >> 16)
#define AEP_BATCH_MAX	    65535 /* commands per entry */

struct aep_store;

struct aep_store_config {
	size_t event_log_max; /* events kept for watches (default 100000) */
};

/* A new store holding the "default", "kube-system" namespaces created at
 * revision 0 with a fixed uid, so every peer starts identical. */
int aep_store_new(const struct aep_store_config *cfg, struct aep_store **out);
void aep_store_free(struct aep_store *s);

/* Apply the Raft entry at @index. @results (may be NULL) receives one
 * result per command in the entry; *@nresults their count; the caller frees
 * them with aep_result_clear() and aep_free(). A malformed entry changes
 * nothing and returns AEP_EINVALID (a leader never writes one); so does an
 * @index not above the applied index. A refused command (NotFound, Conflict,
 * ...) changes nothing and is only reported in its result. AEP_ENOMEM: the
 * command that ran out changed nothing, the ones before it in the entry
 * are applied, the rest are not, the applied index stays: the store is
 * consistent but behind its peers and must be rebuilt from a snapshot and
 * the log. On any error *@results is NULL. Watch callbacks run from here
 * and must not apply or restore. */
int aep_store_apply(struct aep_store *s, uint64_t index, const char *data, size_t len,
		    struct aep_result **results, size_t *nresults);

/* The revision of the last applied change (0 in a new store). */
uint64_t aep_store_revision(const struct aep_store *s);
/* The Raft index last given to aep_store_apply or restored. */
uint64_t aep_store_applied_index(const struct aep_store *s);
size_t aep_store_count(const struct aep_store *s, enum aep_kind kind);

/* Lookups return a new reference (aep_object_unref) or NULL. */
struct aep_object *aep_store_get(struct aep_store *s, enum aep_kind kind, const char *ns,
				 const char *name);

/* Call @cb for each object of @kind in namespace @ns (NULL: all) that
 * matches @sel (NULL: all), in (namespace, name) order. The object is
 * borrowed for the call. Stop early when @cb returns non-zero (returned). */
typedef int (*aep_store_visit_cb)(const struct aep_object *o, void *data);
int aep_store_list(struct aep_store *s, enum aep_kind kind, const char *ns,
		   const struct aep_selector *sel, aep_store_visit_cb cb, void *data);
/* Pods bound to @node (spec.nodeName), via the index. */
int aep_store_list_pods_on_node(struct aep_store *s, const char *node, aep_store_visit_cb cb,
				void *data);

/* Masters recorded by AEP_OP_MEMBER commands. */
struct aep_member {
	const char *name;
	const char *api;
	const char *peer;
};
int aep_store_members(struct aep_store *s, const struct aep_member **out, size_t *n);

/* ---- watches ------------------------------------------------------------ */

enum aep_event_type { AEP_EV_ADDED = 1, AEP_EV_MODIFIED = 2, AEP_EV_DELETED = 3 };
const char *aep_event_type_name(enum aep_event_type t);

struct aep_event {
	enum aep_event_type type;
	uint64_t rv;
	struct aep_object *obj; /* borrowed; ref it to keep it */
	/* MODIFIED: the object as it was before this change, when the log
	 * still knows it (NULL after a snapshot restore); else NULL.
	 * Borrowed. Controllers use it to see what changed. */
	struct aep_object *prev;
};

/* Called synchronously from aep_store_apply (and from aep_store_watch for
 * the replay), once per matching event in revision order. @ev == NULL means
 * the watch has expired (a snapshot replaced the store under it): the owner
 * should tell its client "Expired" and aep_store_unwatch() it. */
typedef void (*aep_watch_cb)(const struct aep_event *ev, void *data);

struct aep_watch;

/* Start a watch on @kind in @ns (NULL: all) matching @sel (may be NULL; the
 * watch takes ownership of it). Events with revision > @from_rv that are
 * still in the log are replayed first, in order, before this returns; then
 * later events arrive as they are applied. If events after @from_rv have
 * already left the log, returns AEP_EEXPIRED and starts nothing. @from_rv =
 * 0 means "from now". With a selector, a MODIFIED event that moves the
 * object into it arrives as ADDED and one that moves it out as DELETED
 * (Kubernetes semantics). @sel is freed by the store on failure too.
 * Callbacks may unwatch any watch and start new ones. */
int aep_store_watch(struct aep_store *s, enum aep_kind kind, const char *ns,
		    struct aep_selector *sel, uint64_t from_rv, aep_watch_cb cb, void *data,
		    struct aep_watch **out, struct aep_error *e);
void aep_store_unwatch(struct aep_store *s, struct aep_watch *w);

/* ---- snapshots ---------------------------------------------------------- */

/* The whole store (objects, members, revision, applied index) as msgpack,
 * lz4-compressed. Two stores with the same content give identical bytes. */
int aep_store_snapshot(struct aep_store *s, struct aep_buf *out);
/* The same in two steps, so that the costly part runs off the loop: take
 * a view of the store (references every object: cheap, on the store's
 * thread), encode it anywhere (reads only the view, which later changes to
 * the store do not touch; objects are immutable), free it on the store's
 * thread again. Encoding appends to @out exactly what aep_store_snapshot()
 * would have appended at the time of the view; on failure @out keeps its
 * length. */
struct aep_store_view;
int aep_store_view_take(struct aep_store *s, struct aep_store_view **out);
int aep_store_view_encode(const struct aep_store_view *v, struct aep_buf *out);
void aep_store_view_free(struct aep_store_view *v); /* NULL is fine */
/* Replace the content of @s with a snapshot. The event log restarts at the
 * snapshot's revision (older watches get AEP_EEXPIRED). On error @s is
 * unchanged. Active watches are kept. */
int aep_store_restore(struct aep_store *s, const char *data, size_t len, struct aep_error *e);

#endif /* AEP_STATE_H */
