/* state: reading an object's canonical encoding without re-validating it.
 * Private to state/ (object.c writes it, store.c uses it to apply).
 *
 * The object a create or update command carries was made by
 * aep_object_from_msgpack() on the leader, so it is canonical. Applying it
 * needs only its metadata, its spec's bytes and a Pod's spec.nodeName, and
 * a stamped copy: state__canon_read() finds those with every length checked
 * against the bytes (an entry is still untrusted input) and
 * state__canon_stamp() writes the stamped object in one pass, copying the
 * encoding around the rewritten metadata head. For canonical input the
 * result is byte for byte what aep_object_decode() + aep_object_stamp()
 * give. Bytes whose layout is not canonical are not read: the caller falls
 * back to aep_object_decode(), which accepts or refuses them as before. */
#ifndef AEP_STATE_OBJECT_INT_H
#define AEP_STATE_OBJECT_INT_H

#include "state/state.h"

struct state__span {
	const char *p;
	size_t n;
};

/* Spans into the bytes given to state__canon_read(), valid while they are. */
struct state__canon {
	enum aep_kind kind;
	const char *data;
	size_t len;
	struct state__span name;  /* non-empty, <= AEP_NAME_MAX, no NUL */
	struct state__span ns;	  /* "" (p NULL) exactly for cluster-scoped kinds */
	struct state__span uid;	  /* p NULL when absent */
	uint64_t rv;		  /* resourceVersion; 0 when absent */
	int64_t created_ns;	  /* 0 when absent */
	int64_t generation;	  /* 0 when absent */
	struct state__span spec;  /* the top-level "spec" value; p NULL when absent */
	struct state__span node;  /* Pod spec.nodeName; p NULL when absent */
	enum aep_pod_phase phase; /* Pod status.phase */
	size_t meta_at;		  /* offset of metadata's value (its map header) */
	size_t tail_at;		  /* offset of metadata's labels, else annotations, else its end */
	bool annotations;
	size_t nlabels;
	struct state__span labels[AEP_LABELS_MAX][2]; /* key, value; strictly ascending */
};

/* Read @data (@len bytes) as the canonical encoding of an object of @kind.
 * Returns 0 with *@c filled, or -1 when the bytes are not laid out as
 * aep_object_decode() writes that kind (other kind, key order, a short
 * string in a long form, truncation, trailing bytes, ...). Never reads
 * past @len; allocates nothing. Field values are not validated beyond
 * what the store and stamping rely on: names and labels without NUL and
 * in bounds, labels strictly sorted, creationTimestamp a time, generation
 * not negative. */
int state__canon_read(enum aep_kind kind, const char *data, size_t len, struct state__canon *c);

/* aep_object_stamp() of the object @c reads, in one pass over its bytes:
 * a new object (one reference) with the same rules (@uid NULL keeps, ""
 * drops; @rv replaces, 0 drops; @created_ns and @generation < 0 keep, 0
 * drop). Returns 0 or AEP_ENOMEM (*@out untouched). */
int state__canon_stamp(const struct state__canon *c, const char *uid, uint64_t rv,
		       int64_t created_ns, int64_t generation, struct aep_object **out);

#endif /* AEP_STATE_OBJECT_INT_H */
