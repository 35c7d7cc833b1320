/* state: the store's private layout, shared by store.c, cmd.c, watch.c and
 * snapshot.c. Nothing outside state/ includes this.
 *
 * Each kind has a table: a red-black tree of entries ordered by (namespace,
 * name), plus a label index: a tree of (label key, label value, namespace,
 * name) nodes, one per label of each object, so the objects carrying
 * "app=web" are one ordered run of it. Pods bound to a node are a third
 * tree ordered by (spec.nodeName, namespace, name). The trees are libbsd's
 * <bsd/sys/tree.h> (header-only); all their nodes live inside struct state__entry, so
 * adding an object is one allocation.
 *
 * The event log is a ring of the last event_log_max changes. Every event
 * with a revision above log.floor is in it. */
#ifndef AEP_STATE_STORE_INT_H
#define AEP_STATE_STORE_INT_H

#include <bsd/sys/tree.h>

#include "state/state.h"

struct state__entry;

/* One label of one stored object, in its kind's label index. */
struct state__label_ref {
	RB_ENTRY(state__label_ref) link;
	struct state__entry *e;
	uint64_t hash; /* state__hash2(key, value): compared first, see below */
	uint32_t i;    /* index in e->obj->meta.labels */
};

struct state__node_group;

struct state__entry {
	RB_ENTRY(state__entry) by_key; /* kind table */
	struct aep_object *obj;	       /* one reference */
	/* The pods of one node (nodeidx.c), when obj is a bound Pod. */
	struct state__node_group *node_group;
	struct state__entry *node_next, *node_prev;
	uint32_t nlabels;
	struct state__label_ref labels[]; /* nlabels, one per obj label */
};

RB_HEAD(state__key_tree, state__entry);
RB_HEAD(state__label_tree, state__label_ref);
/* Generated in store.c as state__key_tree_RB_INSERT() and so on. */
RB_PROTOTYPE(state__key_tree, state__entry, by_key, state__key_cmp)
RB_PROTOTYPE(state__label_tree, state__label_ref, link, state__label_cmp)

/* Pods by node: a hash table of groups (nodeidx.c). */
struct state__node_index {
	struct state__node_group **buckets;
	size_t nbuckets; /* 0 or a power of two */
	size_t ngroups;
};

struct state__table {
	struct state__key_tree tree;
	struct state__label_tree labels;
	size_t count;
};

/* A change, as kept in the event log. obj and prev hold one reference
 * each; prev is the object a MODIFIED event replaced (NULL otherwise). */
struct state__event {
	enum aep_event_type type;
	uint64_t rv;
	struct aep_object *obj;
	struct aep_object *prev;
};

struct state__log {
	struct state__event *ring;
	size_t cap;
	size_t head; /* slot of the oldest event */
	size_t len;
	uint64_t floor; /* every event with rv > floor is in the ring */
};

struct aep_watch {
	struct aep_watch *prev, *next;
	struct aep_store *store;
	enum aep_kind kind;
	char *ns; /* NULL: all namespaces */
	struct aep_selector *sel;
	aep_watch_cb cb;
	void *data;
	uint64_t seen_rv; /* events up to this revision were delivered */
	bool dead;	  /* unwatched during a dispatch; freed after it */
	bool expired;	  /* told so by a restore; gets no more events */
};

struct state__watchers {
	struct aep_watch *head, *tail;
	unsigned dispatching; /* nesting depth of callbacks in progress */
	bool has_dead;
};

struct aep_store {
	struct state__table tables[AEP_KIND__COUNT];
	struct state__node_index pods_by_node;
	struct aep_member *members; /* sorted by name; strings owned */
	size_t nmembers;
	uint64_t revision;
	uint64_t applied_index;
	struct state__log log;
	struct state__watchers watchers;
};

/* ---- store.c ---- */

/* Tree orders: (ns, name); (hash, label key, value, ns, name). The label
 * index compares a hash kept in its tree nodes first: a run of one label
 * stays contiguous and ordered by (ns, name), and an insert reads one
 * cache line per level instead of following pointers into two objects. */
uint64_t state__hash2(const char *a, const char *b);
int state__key_cmp(const struct state__entry *a, const struct state__entry *b);
int state__label_cmp(const struct state__label_ref *a, const struct state__label_ref *b);

/* ---- nodeidx.c: pods by node ---- */
/* Make sure @node has a group (before a commit that links a pod to it).
 * Returns 0 or AEP_ENOMEM (nothing changed). */
int state__nodes_reserve(struct state__node_index *x, const char *node);
/* Free @node's group if it holds no pod (after a commit, or instead of
 * one). */
void state__nodes_release(struct state__node_index *x, const char *node);
/* Link the bound pod @e to its node's reserved group; never fails. */
void state__nodes_link(struct state__node_index *x, struct state__entry *e);
/* Unlink @e if it is linked; never fails (the group stays, maybe empty). */
void state__nodes_unlink(struct state__node_index *x, struct state__entry *e);
struct state__node_group *state__nodes_find(const struct state__node_index *x, const char *node);
/* @cb for each pod of @node in (namespace, name) order; AEP_ENOMEM, or
 * what @cb returned non-zero. */
int state__nodes_visit(const struct state__node_index *x, const char *node, aep_store_visit_cb cb,
		       void *data);
/* Free every group (the entries stay) and empty the index. */
void state__nodes_free(struct state__node_index *x);

/* A store with empty tables and an event log of @log_max slots (no
 * namespaces, no watchers). */
int state__store_alloc(size_t log_max, struct aep_store **out);
/* Free tables and members of @s (not the log, not the watchers) and leave
 * them empty. */
void state__store_clear_content(struct aep_store *s);
/* Add @obj (a reference is taken) to the tables. Fails with AEP_EEXISTS on
 * a duplicate key or AEP_ENOMEM, changing nothing. */
int state__store_insert(struct aep_store *s, struct aep_object *obj);
/* Move the tables and members of @from into @to (whose own were cleared);
 * @from is left empty. */
void state__store_move_content(struct aep_store *to, struct aep_store *from);
/* Upsert a member; copies the strings. AEP_ENOMEM changes nothing. */
int state__store_set_member(struct aep_store *s, const char *name, size_t name_len, const char *api,
			    size_t api_len, const char *peer, size_t peer_len);

/* ---- cmd.c: a bounded reader for the msgpack shapes state/ writes ---- */

struct state__rd {
	const unsigned char *p;
	size_t len;
	size_t off;
};

/* Each reads one value at the cursor and advances past it; -1 (cursor
 * unchanged) when the next value is not of that type or is truncated. */
int state__rd_array(struct state__rd *r, uint32_t *n);
int state__rd_map(struct state__rd *r, uint32_t *npairs);
int state__rd_uint(struct state__rd *r, uint64_t *v);
int state__rd_int(struct state__rd *r, int64_t *v);
int state__rd_str(struct state__rd *r, const char **s, uint32_t *n);
int state__rd_bin(struct state__rd *r, const char **s, uint32_t *n);
/* A str, or nil (then *s = NULL, *n = 0). */
int state__rd_str_or_nil(struct state__rd *r, const char **s, uint32_t *n);
/* One whole value of at most @max bytes, returned as its span. */
int state__rd_raw(struct state__rd *r, size_t max, const char **s, size_t *n);

/* A command as it sits in an entry: spans into the entry's bytes (not
 * NUL-terminated). */
struct state__cmd {
	enum aep_op op;
	enum aep_kind kind;
	const char *ns, *name, *uid, *obj, *api, *peer, *node; /* NULL when absent */
	uint32_t ns_len, name_len, uid_len, obj_len, api_len, peer_len, node_len;
	uint64_t precond_rv;
	int64_t now_ns;
};

/* Decode one command at the cursor; -1 when it is malformed. */
int state__cmd_decode(struct state__rd *r, struct state__cmd *c);

/* ---- watch.c ---- */

/* Append @ev to the log (taking over its references), trimming the oldest
 * event when full, then deliver it to matching watchers. Never fails. */
void state__log_push(struct aep_store *s, const struct state__event *ev);
/* Drop every event and restart the log at revision @floor. */
void state__log_reset(struct aep_store *s, uint64_t floor);
/* Tell every watcher that its watch expired (callback with NULL). */
void state__watch_expire_all(struct aep_store *s);
/* Free every watcher (the store is going away). */
void state__watch_free_all(struct aep_store *s);

#endif /* AEP_STATE_STORE_INT_H */
