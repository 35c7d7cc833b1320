/* scheduler: internal structures shared by the files of scheduler/.
 *
 * Nodes, pods, namespaces, groups and equivalence classes live in hash maps
 * (map.c). Every node has a slot index (its place in aep_sched.nodes) used
 * as the key of the per-group node counters and of the per-class static
 * predicate results. Label keys that the policy spreads or pins on
 * (serviceAffinity, serviceAntiAffinity, labelPreference) are "slots": each
 * node carries, per slot, an interned id of its value (0 = no such label),
 * so predicates and priorities compare integers in the hot path. */
#ifndef AEP_SCHED_INT_H
#define AEP_SCHED_INT_H

#include "scheduler/scheduler.h"

#define SCHED__PREDS_MAX      32  /* predicates in a policy */
#define SCHED__PRIOS_MAX      32  /* priorities in a policy */
#define SCHED__ARG_LABELS_MAX 16  /* labels in one argument */
#define SCHED__SLOTS_MAX      16  /* distinct label keys used by a policy */
#define SCHED__NAME_MAX	      128 /* bytes in a predicate/priority name */
#define SCHED__GROUPS_MAX     8	  /* groups counted per pod (more are ignored) */
#define SCHED__PORTS_MAX      256 /* host ports of one pod */
#define SCHED__IDLE_CLASSES   64  /* equivalence classes kept without queued pods */

/* ---- policy (policy.c) -------------------------------------------------- */

enum sched__pred_type {
	SCHED__P_NODE_READY,
	SCHED__P_RESOURCES,
	SCHED__P_HOST_PORTS,
	SCHED__P_NODE_SELECTOR,
	SCHED__P_HOST_NAME,
	SCHED__P_LABELS_PRESENCE,
	SCHED__P_SERVICE_AFFINITY,
};

enum sched__prio_type {
	SCHED__R_LEAST_REQUESTED,
	SCHED__R_BALANCED,
	SCHED__R_SELECTOR_SPREAD,
	SCHED__R_ANTI_AFFINITY,
	SCHED__R_LABEL_PREFERENCE,
};

struct sched__pred {
	char *name;
	enum sched__pred_type type;
	char **labels;			      /* labelsPresence, serviceAffinity */
	uint8_t slots[SCHED__ARG_LABELS_MAX]; /* serviceAffinity: slot of each label */
	size_t nlabels;
	bool presence;
};

struct sched__prio {
	char *name;
	enum sched__prio_type type;
	int64_t weight;
	char *label; /* serviceAntiAffinity, labelPreference */
	uint8_t slot;
	bool presence;
};

struct aep_sched_policy {
	struct sched__pred preds[SCHED__PREDS_MAX];
	size_t npreds;
	struct sched__prio prios[SCHED__PRIOS_MAX];
	size_t nprios;
	char *slot_keys[SCHED__SLOTS_MAX];
	size_t nslots;
	int spread_slot; /* slot nodes are interleaved by (first anti-affinity), -1: none */
};

/* ---- hash maps (map.c) -------------------------------------------------- */

/* Open addressing, linear probing, backward-shift deletion. Values are
 * non-NULL pointers; the caller hashes and compares keys. Growth happens
 * only in sched__map_reserve(), so a put after a reserve cannot fail. */
struct sched__ment {
	uint64_t h;
	void *v;
};
struct sched__map {
	struct sched__ment *e;
	uint32_t cap, n; /* cap: 0 or a power of two */
};
typedef bool (*sched__eq_fn)(const void *v, const void *key);

uint64_t sched__hash(const void *p, size_t n, uint64_t seed);
uint64_t sched__hash_str(const char *s, uint64_t seed);
uint64_t sched__mix(uint64_t x);
void *sched__map_get(const struct sched__map *m, uint64_t h, sched__eq_fn eq, const void *key);
int sched__map_reserve(struct sched__map *m, uint32_t extra);
void sched__map_put(struct sched__map *m, uint64_t h, void *v);
void sched__map_del(struct sched__map *m, uint64_t h, const void *v);
void sched__map_free(struct sched__map *m);

/* Counters keyed by a non-zero uint64; an entry whose count drops to 0 is
 * removed. */
struct sched__cent {
	uint64_t k;
	int64_t c;
};
struct sched__cmap {
	struct sched__cent *e;
	uint32_t cap, n;
};
int64_t sched__cmap_get(const struct sched__cmap *m, uint64_t k);
int sched__cmap_reserve(struct sched__cmap *m, uint32_t extra);
void sched__cmap_add(struct sched__cmap *m, uint64_t k, int64_t delta); /* after reserve */
void sched__cmap_free(struct sched__cmap *m);

/* ---- cache objects ------------------------------------------------------ */

struct sched__pod;

/* The fields the walk reads come first: one cache line for the fit check,
 * one for the label values. */
struct sched__node {
	int64_t alloc_cpu, alloc_mem, alloc_pods;
	int64_t req_cpu, req_mem, npods;
	uint32_t *ports; /* host ports in use: port | proto << 16, sorted, repeats allowed */
	uint32_t nports, cap_ports;
	uint32_t lv[SCHED__SLOTS_MAX]; /* value id per slot, 0: label absent */
	uint32_t idx;		       /* slot in aep_sched.nodes */
	bool ready, unschedulable;
	char *name;
	uint64_t h;
	struct aep_object *obj;	 /* the Node, NULL while only pods name it */
	struct sched__pod *pods; /* placed here (bound or assumed), linked by node_next */
};

struct sched__ns {
	char *name;
	uint64_t h;
	bool present;
	struct aep_selector *sel; /* the project's default node selector, NULL: none */
	char *sel_err;		  /* why the annotation is unusable, NULL when fine */
	struct sched__pod *pods;  /* every pod of the namespace, linked by ns_next */
};

/* A Service or ReplicationController: the pods its selector matches are
 * spread and kept together by the priorities and predicates. */
struct sched__gidx;
struct sched__group {
	enum aep_kind kind;
	struct sched__ns *ns;
	char *name;
	uint64_t h;
	struct aep_label *sel; /* sorted, owned in one block with the strings */
	size_t nsel;
	struct sched__gidx *idx; /* index entry of sel[0], NULL when nsel == 0 */
	struct sched__group *idx_next;
	int64_t placed;			 /* pods placed */
	struct sched__cmap on_node;	 /* node idx + 1 -> pods */
	int64_t *vcnt[SCHED__SLOTS_MAX]; /* value id -> pods, per slot */
	uint32_t vcap[SCHED__SLOTS_MAX];
	uint32_t aff[SCHED__SLOTS_MAX]; /* the value the group's pods stay on, 0: none yet */
};

/* Groups of one namespace whose first selector label is key=value. */
struct sched__gidx {
	uint64_t h;
	struct sched__ns *ns;
	char *key, *value;
	struct sched__group *first;
};

/* The nodes of a class with one value of a label, for pods whose service
 * affinity requires that value. */
struct sched__sub {
	uint32_t slot, value;
	uint64_t epoch;
	uint32_t *list;
	uint32_t n, next;
};
#define SCHED__SUBS_MAX 64 /* per class; beyond, the walk filters the class list */

/* Pods that share the static predicates' outcome: same namespace and node
 * selector. */
struct sched__class {
	struct sched__sub *subs;
	uint32_t nsubs;
	uint64_t h;
	struct sched__ns *ns;
	struct aep_label *sel; /* the pod's nodeSelector, sorted, owned */
	size_t nsel;
	unsigned refs; /* pods unbound in the store: queued or assumed */
	struct sched__class *idle_prev, *idle_next;
	bool idle;
	uint64_t epoch;	  /* built at this static epoch; 0: never */
	uint32_t *list;	  /* nodes passing every static predicate, in walk order */
	uint32_t n, next; /* next: where the next pod starts walking */
	uint16_t *sfail;  /* per node idx: pred index << 8 | reason, 0xffff: pass */
	uint32_t cap;	  /* of list and sfail */
};

enum sched__qstate { SCHED__Q_NONE, SCHED__Q_FIFO, SCHED__Q_BACKOFF };

struct sched__pod {
	struct aep_object *obj;
	uint64_t h;
	struct sched__ns *ns;
	struct sched__pod *ns_prev, *ns_next;
	struct sched__node *node; /* placed: bound or assumed */
	struct sched__pod *node_prev, *node_next;
	bool assumed, terminal;
	int64_t cpu, mem;
	uint32_t *ports;
	uint32_t nports;
	struct sched__group *groups[SCHED__GROUPS_MAX];
	uint32_t ngroups;
	struct aep_label *nsel; /* spec.nodeSelector, sorted, owned */
	size_t nnsel;
	struct sched__class *cls; /* while queued */
	enum sched__qstate q;
	struct sched__pod *q_prev, *q_next;
	uint32_t heap_idx;
	int64_t due, backoff;
};

enum sched__reason {
	SCHED__W_NOT_READY,
	SCHED__W_UNSCHEDULABLE,
	SCHED__W_PODS,
	SCHED__W_CPU,
	SCHED__W_MEM,
	SCHED__W_PORTS,
	SCHED__W_SELECTOR,
	SCHED__W_HOST_NAME,
	SCHED__W_MISSING_LABELS,
	SCHED__W_FORBIDDEN_LABELS,
	SCHED__W_AFFINITY,
	SCHED__W__COUNT
};
extern const char *const sched__reason_text[SCHED__W__COUNT];

struct aep_sched {
	struct aep_sched_policy *pol;
	msgpack_zone zone;
	struct sched__map nodes_by_name, pods, nss, groups, gidx, classes;
	struct sched__map vals[SCHED__SLOTS_MAX]; /* value string -> id (interned forever) */
	uint32_t nvals[SCHED__SLOTS_MAX];
	struct sched__node **nodes; /* by idx; NULL: free slot */
	uint32_t nodes_cap, nodes_hi;
	uint32_t *free_idx;
	uint32_t nfree;
	uint32_t npresent;
	uint64_t epoch;	     /* bumped when a static predicate's input changes */
	uint64_t walk_epoch; /* walk built at */
	uint32_t *walk;	     /* present nodes interleaved by the spread slot */
	uint32_t nwalk, walk_cap;
	uint32_t nbuckets; /* spread values present in the walk */
	/* scoring scratch, sized with the walk */
	struct sched__node **cand;
	int64_t *score, *raw;
	/* queue */
	struct sched__pod *fifo_head, *fifo_tail;
	size_t nfifo;
	struct sched__pod **heap;
	uint32_t nheap, heap_cap;
	/* idle classes, oldest first */
	struct sched__class *idle_head, *idle_tail;
	uint32_t nidle;
	uint32_t sample_min, sample_pct;
	uint64_t rr;		       /* ties among the best nodes go round-robin */
	bool has_resources, has_ports; /* the policy checks them */
};

/* ---- cache.c ------------------------------------------------------------ */

/* Find by name; NULL when absent. */
struct sched__node *sched__node_find(const struct aep_sched *s, const char *name);
/* Labels: value of @key in sorted @l, or NULL. */
const char *sched__label_get(const struct aep_label *l, size_t n, const char *key);
/* Do sorted @want pairs all appear in sorted @have? */
bool sched__labels_subset(const struct aep_label *want, size_t nwant, const struct aep_label *have,
			  size_t nhave);
/* Make room so that sched__pod_account(+1) of @p on @n cannot fail. */
int sched__pod_reserve(struct aep_sched *s, struct sched__pod *p, struct sched__node *n);
/* Count @p against @n (bound or assumed): requests, pod count, ports, groups. */
void sched__pod_place(struct aep_sched *s, struct sched__pod *p, struct sched__node *n,
		      bool assumed);
/* Undo sched__pod_place(). Frees @p's node entry when it was only a name. */
void sched__pod_unplace(struct aep_sched *s, struct sched__pod *p);
/* The groups of a pod: fill p->groups from its namespace's index. */
void sched__pod_groups(struct aep_sched *s, struct sched__pod *p);
/* Free a pod that is not in any map, list or queue (plan's temporaries). */
void sched__pod_free(struct sched__pod *p);
/* Parse a Pod's spec into @p (requests, ports, node selector, phase).
 * Returns 0, AEP_EINVALID or AEP_ENOMEM. */
int sched__pod_parse(struct aep_sched *s, const struct aep_object *o, struct sched__pod *p);
/* Namespace entry, created when absent. NULL: out of memory. */
struct sched__ns *sched__ns_get(struct aep_sched *s, const char *name);
void sched__free_cache(struct aep_sched *s);

/* ---- sched.c ------------------------------------------------------------ */

void sched__queue_push(struct aep_sched *s, struct sched__pod *p); /* FIFO tail, due now */
void sched__queue_remove(struct aep_sched *s, struct sched__pod *p);
int sched__queue_reserve(struct aep_sched *s);	/* room for one more backed-off pod */
void sched__flush_backoff(struct aep_sched *s); /* every backed-off pod due now */
void sched__class_put(struct aep_sched *s, struct sched__class *c); /* drop a queued pod's ref */
/* The class of @p (ns, node selector), found or made; with a reference. */
int sched__class_get(struct aep_sched *s, struct sched__pod *p, struct sched__class **out);
void sched__free_classes(struct aep_sched *s);

/* The cached pod @ns/@name, or NULL. */
struct sched__pod *sched__pod_find(const struct aep_sched *s, const char *ns, const char *name);

#endif /* AEP_SCHED_INT_H */
