/* scheduler: the node/pod cache, fed by aep_sched_observe().
 *
 * Each observed object is unpacked once; what placement needs is kept in
 * compact structs (sched-int.h). Every change is made in two steps: first
 * everything that can fail (allocation, map growth, counter room) is done
 * without touching what is visible, then the change is committed with
 * operations that cannot fail. So AEP_ENOMEM leaves the cache as it was
 * (apart from interned label values and empty entries nobody can see). */
#include "scheduler/sched-int.h"

#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------- */

const char *sched__label_get(const struct aep_label *l, size_t n, const char *key)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(l[mid].key, key);
		if (c == 0)
			return l[mid].value;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

bool sched__labels_subset(const struct aep_label *want, size_t nwant, const struct aep_label *have,
			  size_t nhave)
{
	size_t j = 0;
	for (size_t i = 0; i < nwant; i++) {
		int c = 1;
		while (j < nhave && (c = strcmp(have[j].key, want[i].key)) < 0)
			j++;
		if (j == nhave || c != 0 || strcmp(have[j].value, want[i].value) != 0)
			return false;
		j++;
	}
	return true;
}

static bool labels_equal(const struct aep_label *a, size_t na, const struct aep_label *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i].key, b[i].key) != 0 || strcmp(a[i].value, b[i].value) != 0)
			return false;
	return true;
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct aep_label *)a)->key, ((const struct aep_label *)b)->key);
}

/* A msgpack map of strings to strings as one block of sorted labels (NULL
 * when empty). Non-string entries are AEP_EINVALID. */
static int labels_from_map(const msgpack_object *map, struct aep_label **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (map == NULL || map->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (map->type != MSGPACK_OBJECT_MAP || map->via.map.size > AEP_LABELS_MAX)
		return AEP_EINVALID;
	uint32_t cnt = map->via.map.size;
	if (cnt == 0)
		return 0;
	size_t bytes = cnt * sizeof(struct aep_label);
	for (uint32_t i = 0; i < cnt; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		if (kv->key.type != MSGPACK_OBJECT_STR || kv->val.type != MSGPACK_OBJECT_STR)
			return AEP_EINVALID;
		bytes += kv->key.via.str.size + kv->val.via.str.size + 2;
	}
	struct aep_label *l = aep_malloc(bytes);
	if (l == NULL)
		return AEP_ENOMEM;
	char *p = (char *)(l + cnt);
	for (uint32_t i = 0; i < cnt; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		l[i].key = p;
		memcpy(p, kv->key.via.str.ptr, kv->key.via.str.size);
		p += kv->key.via.str.size;
		*p++ = '\0';
		l[i].value = p;
		memcpy(p, kv->val.via.str.ptr, kv->val.via.str.size);
		p += kv->val.via.str.size;
		*p++ = '\0';
	}
	qsort(l, cnt, sizeof(*l), label_cmp);
	*out = l;
	*n = cnt;
	return 0;
}

/* Unpack @o's encoding into the scheduler's zone (cleared by the caller). */
static int unpack(struct aep_sched *s, const struct aep_object *o, msgpack_object *root)
{
	struct aep_error e = {0};
	int rc = aep_mp_unpack(o->data, o->len, &s->zone, root, &e);
	if (rc != 0)
		return rc == AEP_ENOMEM ? AEP_ENOMEM : AEP_EINVALID;
	return root->type == MSGPACK_OBJECT_MAP ? 0 : AEP_EINVALID;
}

/* A quantity field in milli-units; @dflt when absent. */
static int qty(const msgpack_object *map, const char *key, int64_t dflt, int64_t *out)
{
	const msgpack_object *q = aep_mp_map_get(map, key);
	struct aep_error e = {0};
	if (q == NULL || q->type == MSGPACK_OBJECT_NIL) {
		*out = dflt;
		return 0;
	}
	if (q->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		*out = q->via.u64 > (uint64_t)INT64_MAX / 1000 ? INT64_MAX
							       : (int64_t)q->via.u64 * 1000;
		return 0;
	}
	if (q->type != MSGPACK_OBJECT_STR)
		return AEP_EINVALID;
	return aep_quantity_parse(q->via.str.ptr, q->via.str.size, out, &e) == 0 ? 0 : AEP_EINVALID;
}

static int64_t sat_add(int64_t a, int64_t b)
{
	return a > INT64_MAX - b ? INT64_MAX : a + b;
}

static int64_t milli_to_units(int64_t m)
{
	return m / 1000 + (m % 1000 != 0);
}

/* ---- equality callbacks ---------------------------------------------------- */

struct pod_key {
	const char *ns, *name;
};
static bool pod_eq(const void *v, const void *key)
{
	const struct sched__pod *p = v;
	const struct pod_key *k = key;
	return strcmp(p->obj->meta.name, k->name) == 0 && strcmp(p->obj->meta.ns, k->ns) == 0;
}
static uint64_t pod_hash(const char *ns, const char *name)
{
	return sched__hash_str(name, sched__hash_str(ns, 1));
}

struct sched__pod *sched__pod_find(const struct aep_sched *s, const char *ns, const char *name)
{
	struct pod_key key = {ns, name};
	return sched__map_get(&s->pods, pod_hash(ns, name), pod_eq, &key);
}

static bool node_eq(const void *v, const void *key)
{
	return strcmp(((const struct sched__node *)v)->name, key) == 0;
}

static bool ns_eq(const void *v, const void *key)
{
	return strcmp(((const struct sched__ns *)v)->name, key) == 0;
}

struct group_key {
	enum aep_kind kind;
	const struct sched__ns *ns;
	const char *name;
};
static bool group_eq(const void *v, const void *key)
{
	const struct sched__group *g = v;
	const struct group_key *k = key;
	return g->kind == k->kind && g->ns == k->ns && strcmp(g->name, k->name) == 0;
}
static uint64_t group_hash(enum aep_kind kind, const struct sched__ns *ns, const char *name)
{
	return sched__hash_str(name, ns->h ^ (uint64_t)kind);
}

struct gidx_key {
	const struct sched__ns *ns;
	const char *key, *value;
};
static bool gidx_eq(const void *v, const void *key)
{
	const struct sched__gidx *g = v;
	const struct gidx_key *k = key;
	return g->ns == k->ns && strcmp(g->key, k->key) == 0 && strcmp(g->value, k->value) == 0;
}
static uint64_t gidx_hash(const struct sched__ns *ns, const char *key, const char *value)
{
	return sched__hash_str(value, sched__hash_str(key, ns->h));
}

static bool str_eq(const void *v, const void *key)
{
	return strcmp(v, key) == 0;
}

/* ---- label values ---------------------------------------------------------- */

/* The id of @value in @slot, interned when new (ids start at 1). The map
 * holds the string with its id in the 4 bytes before it. */
static int intern(struct aep_sched *s, unsigned slot, const char *value, uint32_t *id)
{
	uint64_t h = sched__hash_str(value, slot);
	char *v = sched__map_get(&s->vals[slot], h, str_eq, value);
	if (v != NULL) {
		memcpy(id, v - sizeof(uint32_t), sizeof(uint32_t));
		return 0;
	}
	if (s->nvals[slot] == UINT32_MAX - 1 || sched__map_reserve(&s->vals[slot], 1) != 0)
		return AEP_ENOMEM;
	size_t len = strlen(value);
	char *blk = aep_malloc(sizeof(uint32_t) + len + 1);
	if (blk == NULL)
		return AEP_ENOMEM;
	uint32_t nid = ++s->nvals[slot];
	memcpy(blk, &nid, sizeof(nid));
	memcpy(blk + sizeof(uint32_t), value, len + 1);
	sched__map_put(&s->vals[slot], h, blk + sizeof(uint32_t));
	*id = nid;
	return 0;
}

/* ---- nodes ----------------------------------------------------------------- */

struct sched__node *sched__node_find(const struct aep_sched *s, const char *name)
{
	return sched__map_get(&s->nodes_by_name, sched__hash_str(name, 0), node_eq, name);
}

/* A node entry for @name, created without labels or capacity when absent.
 * *@created tells whether it is new (then node_drop() undoes it). */
static int node_get(struct aep_sched *s, const char *name, struct sched__node **out, bool *created)
{
	*created = false;
	*out = sched__node_find(s, name);
	if (*out != NULL)
		return 0;
	if (sched__map_reserve(&s->nodes_by_name, 1) != 0)
		return AEP_ENOMEM;
	if (s->nfree == 0 && s->nodes_hi == s->nodes_cap) {
		if (s->nodes_cap >= UINT32_MAX / 4)
			return AEP_ENOMEM;
		uint32_t cap = s->nodes_cap ? s->nodes_cap * 2 : 64;
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
		struct sched__node **nodes = aep_realloc(s->nodes, cap * sizeof(*nodes));
		if (nodes == NULL)
			return AEP_ENOMEM;
		s->nodes = nodes;
		uint32_t *fr = aep_realloc(s->free_idx, cap * sizeof(*fr));
		if (fr == NULL)
			return AEP_ENOMEM;
		s->free_idx = fr;
		s->nodes_cap = cap;
	}
	struct sched__node *n = aep_calloc(1, sizeof(*n));
	if (n == NULL)
		return AEP_ENOMEM;
	n->name = aep_strdup(name);
	if (n->name == NULL) {
		aep_free(n);
		return AEP_ENOMEM;
	}
	n->h = sched__hash_str(name, 0);
	n->idx = s->nfree > 0 ? s->free_idx[--s->nfree] : s->nodes_hi++;
	s->nodes[n->idx] = n;
	sched__map_put(&s->nodes_by_name, n->h, n);
	*out = n;
	*created = true;
	return 0;
}

/* Free a node entry that has neither a Node object nor pods. */
static void node_drop(struct aep_sched *s, struct sched__node *n)
{
	sched__map_del(&s->nodes_by_name, n->h, n);
	s->nodes[n->idx] = NULL;
	s->free_idx[s->nfree++] = n->idx;
	aep_free(n->ports);
	aep_free(n->name);
	aep_free(n);
}

struct node_info {
	bool ready, unschedulable;
	int64_t cpu, mem, pods;
	uint32_t lv[SCHED__SLOTS_MAX];
};

static int node_parse(struct aep_sched *s, const struct aep_object *o, struct node_info *ni)
{
	msgpack_object root;
	int rc = unpack(s, o, &root);
	if (rc != 0)
		return rc;
	const msgpack_object *spec = aep_mp_map_get(&root, "spec");
	const msgpack_object *uns = aep_mp_map_get(spec, "unschedulable");
	ni->unschedulable = uns != NULL && uns->type == MSGPACK_OBJECT_BOOLEAN && uns->via.boolean;
	const msgpack_object *status = aep_mp_map_get(&root, "status");
	const msgpack_object *alloc = aep_mp_map_get(status, "allocatable");
	const msgpack_object *cap = aep_mp_map_get(status, "capacity");
	int64_t c, m, p;
	if (qty(cap, "cpu", 0, &c) != 0 || qty(cap, "memory", 0, &m) != 0 ||
	    qty(cap, "pods", 110000, &p) != 0)
		return AEP_EINVALID;
	if (qty(alloc, "cpu", c, &ni->cpu) != 0 || qty(alloc, "memory", m, &ni->mem) != 0 ||
	    qty(alloc, "pods", p, &ni->pods) != 0)
		return AEP_EINVALID;
	ni->mem = milli_to_units(ni->mem);
	ni->pods /= 1000;
	ni->ready = false;
	const msgpack_object *conds = aep_mp_map_get(status, "conditions");
	for (uint32_t i = 0;
	     conds != NULL && conds->type == MSGPACK_OBJECT_ARRAY && i < conds->via.array.size;
	     i++) {
		const msgpack_object *cd = &conds->via.array.ptr[i];
		if (aep_mp_str_eq(aep_mp_map_get(cd, "type"), "Ready"))
			ni->ready = aep_mp_str_eq(aep_mp_map_get(cd, "status"), "True");
	}
	for (size_t k = 0; k < s->pol->nslots; k++) {
		const char *v =
		    sched__label_get(o->meta.labels, o->meta.nlabels, s->pol->slot_keys[k]);
		ni->lv[k] = 0;
		if (v != NULL && (rc = intern(s, (unsigned)k, v, &ni->lv[k])) != 0)
			return rc;
	}
	return 0;
}

/* Room in @g's per-value counters for value @v of slot @k. */
static int group_vreserve(struct aep_sched *s, struct sched__group *g, unsigned k, uint32_t v)
{
	if (v < g->vcap[k])
		return 0;
	uint32_t cap = s->nvals[k] + 1;
	if (cap <= v)
		cap = v + 1;
	int64_t *a = aep_realloc(g->vcnt[k], cap * sizeof(*a));
	if (a == NULL)
		return AEP_ENOMEM;
	memset(a + g->vcap[k], 0, (cap - g->vcap[k]) * sizeof(*a));
	g->vcnt[k] = a;
	g->vcap[k] = cap;
	return 0;
}

/* Count @delta pods of @g on @n's value of slot @k (room reserved). */
static void group_vadd(struct sched__group *g, unsigned k, uint32_t v, int64_t delta)
{
	if (v == 0)
		return;
	g->vcnt[k][v] += delta;
	if (delta > 0 && g->aff[k] == 0)
		g->aff[k] = v;
	if (delta < 0 && g->vcnt[k][v] == 0 && g->aff[k] == v) {
		g->aff[k] = 0;
		for (uint32_t i = 1; i < g->vcap[k]; i++) {
			if (g->vcnt[k][i] > 0) {
				g->aff[k] = i;
				break;
			}
		}
	}
}

static void group_count(struct aep_sched *s, struct sched__group *g, struct sched__node *n,
			int64_t delta)
{
	g->placed += delta;
	sched__cmap_add(&g->on_node, (uint64_t)n->idx + 1, delta);
	for (unsigned k = 0; k < s->pol->nslots; k++)
		group_vadd(g, k, n->lv[k], delta);
}

static int node_ports_reserve(struct sched__node *n, uint32_t extra)
{
	if (n->nports + extra <= n->cap_ports)
		return 0;
	uint32_t cap = n->cap_ports ? n->cap_ports * 2 : 4;
	while (cap < n->nports + extra)
		cap *= 2;
	uint32_t *a = aep_realloc(n->ports, cap * sizeof(*a));
	if (a == NULL)
		return AEP_ENOMEM;
	n->ports = a;
	n->cap_ports = cap;
	return 0;
}

int sched__pod_reserve(struct aep_sched *s, struct sched__pod *p, struct sched__node *n)
{
	if (node_ports_reserve(n, p->nports) != 0)
		return AEP_ENOMEM;
	for (uint32_t i = 0; i < p->ngroups; i++) {
		struct sched__group *g = p->groups[i];
		if (sched__cmap_reserve(&g->on_node, 1) != 0)
			return AEP_ENOMEM;
		for (unsigned k = 0; k < s->pol->nslots; k++)
			if (group_vreserve(s, g, k, n->lv[k]) != 0)
				return AEP_ENOMEM;
	}
	return 0;
}

void sched__pod_place(struct aep_sched *s, struct sched__pod *p, struct sched__node *n,
		      bool assumed)
{
	p->node = n;
	p->assumed = assumed;
	p->node_prev = NULL;
	p->node_next = n->pods;
	if (n->pods != NULL)
		n->pods->node_prev = p;
	n->pods = p;
	n->req_cpu = sat_add(n->req_cpu, p->cpu);
	n->req_mem = sat_add(n->req_mem, p->mem);
	n->npods++;
	for (uint32_t i = 0; i < p->nports; i++) {
		uint32_t j = n->nports;
		while (j > 0 && n->ports[j - 1] > p->ports[i]) {
			n->ports[j] = n->ports[j - 1];
			j--;
		}
		n->ports[j] = p->ports[i];
		n->nports++;
	}
	for (uint32_t i = 0; i < p->ngroups; i++)
		group_count(s, p->groups[i], n, 1);
}

void sched__pod_unplace(struct aep_sched *s, struct sched__pod *p)
{
	struct sched__node *n = p->node;
	if (n == NULL)
		return;
	if (p->node_prev != NULL)
		p->node_prev->node_next = p->node_next;
	else
		n->pods = p->node_next;
	if (p->node_next != NULL)
		p->node_next->node_prev = p->node_prev;
	p->node_prev = p->node_next = NULL;
	/* Sums saturate, so recompute them from the pods still here when that
	 * could have happened; else subtract. */
	if (n->req_cpu == INT64_MAX || n->req_mem == INT64_MAX) {
		n->req_cpu = n->req_mem = 0;
		for (struct sched__pod *q = n->pods; q != NULL; q = q->node_next) {
			n->req_cpu = sat_add(n->req_cpu, q->cpu);
			n->req_mem = sat_add(n->req_mem, q->mem);
		}
	} else {
		n->req_cpu -= p->cpu;
		n->req_mem -= p->mem;
	}
	n->npods--;
	for (uint32_t i = 0; i < p->nports; i++) {
		for (uint32_t j = 0; j < n->nports; j++) {
			if (n->ports[j] == p->ports[i]) {
				memmove(&n->ports[j], &n->ports[j + 1],
					(n->nports - j - 1) * sizeof(n->ports[0]));
				n->nports--;
				break;
			}
		}
	}
	for (uint32_t i = 0; i < p->ngroups; i++)
		group_count(s, p->groups[i], n, -1);
	p->node = NULL;
	p->assumed = false;
	if (n->obj == NULL && n->pods == NULL)
		node_drop(s, n);
}

static bool node_labels_equal(const struct aep_object *a, const struct aep_object *b)
{
	return labels_equal(a->meta.labels, a->meta.nlabels, b->meta.labels, b->meta.nlabels);
}

static int observe_node(struct aep_sched *s, enum aep_event_type t, const struct aep_object *o)
{
	struct sched__node *n = sched__node_find(s, o->meta.name);
	if (t == AEP_EV_DELETED) {
		if (n == NULL || n->obj == NULL)
			return 0;
		aep_object_unref(n->obj);
		n->obj = NULL;
		n->ready = false;
		s->npresent--;
		s->epoch++;
		if (n->pods == NULL)
			node_drop(s, n);
		return 0;
	}
	struct node_info ni = {0};
	int rc = node_parse(s, o, &ni);
	if (rc != 0)
		return rc;
	bool created = false;
	if (n == NULL && (rc = node_get(s, o->meta.name, &n, &created)) != 0)
		return rc;
	/* Pods already here move to the node's new label values. */
	bool relabel = memcmp(ni.lv, n->lv, sizeof(ni.lv)) != 0;
	for (struct sched__pod *p = relabel ? n->pods : NULL; p != NULL; p = p->node_next)
		for (uint32_t i = 0; i < p->ngroups; i++)
			for (unsigned k = 0; k < s->pol->nslots; k++)
				if (group_vreserve(s, p->groups[i], k, ni.lv[k]) != 0)
					goto err_after_node_get;

	bool statics = n->obj == NULL || n->ready != ni.ready ||
		       n->unschedulable != ni.unschedulable || !node_labels_equal(n->obj, o);
	bool relevant =
	    statics || n->alloc_cpu != ni.cpu || n->alloc_mem != ni.mem || n->alloc_pods != ni.pods;
	if (n->obj == NULL)
		s->npresent++;
	aep_object_unref(n->obj);
	n->obj = aep_object_ref((struct aep_object *)o);
	n->ready = ni.ready;
	n->unschedulable = ni.unschedulable;
	n->alloc_cpu = ni.cpu;
	n->alloc_mem = ni.mem;
	n->alloc_pods = ni.pods;
	if (relabel) {
		for (struct sched__pod *p = n->pods; p != NULL; p = p->node_next) {
			for (uint32_t i = 0; i < p->ngroups; i++) {
				for (unsigned k = 0; k < s->pol->nslots; k++) {
					group_vadd(p->groups[i], k, n->lv[k], -1);
					group_vadd(p->groups[i], k, ni.lv[k], 1);
				}
			}
		}
		memcpy(n->lv, ni.lv, sizeof(ni.lv));
	}
	if (statics)
		s->epoch++;
	if (relevant)
		sched__flush_backoff(s);
	return 0;

err_after_node_get:
	if (created)
		node_drop(s, n);
	return AEP_ENOMEM;
}

/* ---- namespaces ------------------------------------------------------------ */

struct sched__ns *sched__ns_get(struct aep_sched *s, const char *name)
{
	uint64_t h = sched__hash_str(name, 2);
	struct sched__ns *ns = sched__map_get(&s->nss, h, ns_eq, name);
	if (ns != NULL)
		return ns;
	if (sched__map_reserve(&s->nss, 1) != 0)
		return NULL;
	ns = aep_calloc(1, sizeof(*ns));
	if (ns == NULL)
		return NULL;
	ns->name = aep_strdup(name);
	if (ns->name == NULL) {
		aep_free(ns);
		return NULL;
	}
	ns->h = h;
	sched__map_put(&s->nss, h, ns);
	return ns;
}

static int observe_ns(struct aep_sched *s, enum aep_event_type t, const struct aep_object *o)
{
	struct sched__ns *ns = sched__ns_get(s, o->meta.name);
	if (ns == NULL)
		return AEP_ENOMEM;
	struct aep_selector *sel = NULL;
	char *err = NULL;
	if (t != AEP_EV_DELETED) {
		msgpack_object root;
		int rc = unpack(s, o, &root);
		if (rc != 0)
			return rc;
		const msgpack_object *a =
		    aep_mp_map_get(aep_mp_map_get(aep_mp_map_get(&root, "metadata"), "annotations"),
				   AEP_SCHED_NODE_SELECTOR_ANNOTATION);
		if (a != NULL && a->type == MSGPACK_OBJECT_STR) {
			struct aep_error e = {0};
			rc = aep_selector_parse(a->via.str.ptr, a->via.str.size, &sel, &e);
			if (rc == AEP_ENOMEM)
				return rc;
			if (rc != 0) {
				struct aep_buf b;
				aep_buf_init(&b);
				aep_buf_printf(&b,
					       "namespace \"%s\": annotation %s: invalid node "
					       "selector: %s",
					       o->meta.name, AEP_SCHED_NODE_SELECTOR_ANNOTATION,
					       e.msg);
				if (b.failed)
					return AEP_ENOMEM;
				err = aep_buf_steal(&b, NULL);
			}
		}
	}
	bool was = ns->present;
	aep_selector_free(ns->sel);
	aep_free(ns->sel_err);
	ns->sel = sel;
	ns->sel_err = err;
	ns->present = t != AEP_EV_DELETED;
	/* Cheap to be coarse: namespaces change rarely. */
	if (was || ns->present) {
		s->epoch++;
		sched__flush_backoff(s);
	}
	return 0;
}

/* ---- groups ----------------------------------------------------------------- */

static void group_free(struct sched__group *g)
{
	sched__cmap_free(&g->on_node);
	for (unsigned k = 0; k < SCHED__SLOTS_MAX; k++)
		aep_free(g->vcnt[k]);
	aep_free(g->sel);
	aep_free(g->name);
	aep_free(g);
}

static void group_unindex(struct aep_sched *s, struct sched__group *g)
{
	struct sched__gidx *gi = g->idx;
	if (gi == NULL)
		return;
	struct sched__group **pp = &gi->first;
	while (*pp != g)
		pp = &(*pp)->idx_next;
	*pp = g->idx_next;
	g->idx = NULL;
	if (gi->first == NULL) {
		sched__map_del(&s->gidx, gi->h, gi);
		aep_free(gi->key);
		aep_free(gi->value);
		aep_free(gi);
	}
}

void sched__pod_groups(struct aep_sched *s, struct sched__pod *p)
{
	const struct aep_meta *m = &p->obj->meta;
	p->ngroups = 0;
	for (size_t i = 0; i < m->nlabels; i++) {
		struct gidx_key k = {p->ns, m->labels[i].key, m->labels[i].value};
		struct sched__gidx *gi =
		    sched__map_get(&s->gidx, gidx_hash(p->ns, k.key, k.value), gidx_eq, &k);
		for (struct sched__group *g = gi ? gi->first : NULL; g != NULL; g = g->idx_next) {
			if (p->ngroups < SCHED__GROUPS_MAX &&
			    sched__labels_subset(g->sel, g->nsel, m->labels, m->nlabels))
				p->groups[p->ngroups++] = g;
		}
	}
}

static void pod_drop_group(struct aep_sched *s, struct sched__pod *p, struct sched__group *g)
{
	for (uint32_t i = 0; i < p->ngroups; i++) {
		if (p->groups[i] == g) {
			if (p->node != NULL)
				group_count(s, g, p->node, -1);
			p->groups[i] = p->groups[--p->ngroups];
			return;
		}
	}
}

static int observe_group(struct aep_sched *s, enum aep_event_type t, const struct aep_object *o)
{
	struct sched__ns *ns = sched__ns_get(s, o->meta.ns);
	if (ns == NULL)
		return AEP_ENOMEM;
	struct group_key key = {o->kind, ns, o->meta.name};
	uint64_t h = group_hash(o->kind, ns, o->meta.name);
	struct sched__group *old = sched__map_get(&s->groups, h, group_eq, &key);
	struct sched__group *g = NULL;
	struct sched__gidx *gi = NULL;
	bool gi_new = false;
	int rc;

	if (t != AEP_EV_DELETED) {
		msgpack_object root;
		if ((rc = unpack(s, o, &root)) != 0)
			return rc;
		const msgpack_object *spec = aep_mp_map_get(&root, "spec");
		const msgpack_object *sel = aep_mp_map_get(spec, "selector");
		if (o->kind == AEP_KIND_RC &&
		    (sel == NULL || sel->type != MSGPACK_OBJECT_MAP || sel->via.map.size == 0))
			sel = aep_mp_map_get(
			    aep_mp_map_get(aep_mp_map_get(spec, "template"), "metadata"), "labels");
		struct aep_label *l;
		size_t nl;
		if ((rc = labels_from_map(sel, &l, &nl)) != 0)
			return rc;
		if (old != NULL && labels_equal(old->sel, old->nsel, l, nl)) {
			aep_free(l);
			return 0;
		}
		if (old == NULL && nl == 0)
			return 0; /* selects nothing */
		g = aep_calloc(1, sizeof(*g));
		if (g == NULL) {
			aep_free(l);
			return AEP_ENOMEM;
		}
		g->sel = l;
		g->nsel = nl;
		g->kind = o->kind;
		g->ns = ns;
		g->h = h;
		g->name = aep_strdup(o->meta.name);
		if (g->name == NULL || (old == NULL && sched__map_reserve(&s->groups, 1) != 0))
			goto err_after_group_alloc;
		for (unsigned k = 0; k < s->pol->nslots; k++)
			if (group_vreserve(s, g, k, s->nvals[k]) != 0)
				goto err_after_group_alloc;
		if (nl > 0) {
			struct gidx_key ik = {ns, l[0].key, l[0].value};
			uint64_t ih = gidx_hash(ns, ik.key, ik.value);
			gi = sched__map_get(&s->gidx, ih, gidx_eq, &ik);
			if (gi == NULL) {
				if (sched__map_reserve(&s->gidx, 1) != 0)
					goto err_after_group_alloc;
				gi = aep_calloc(1, sizeof(*gi));
				if (gi == NULL)
					goto err_after_group_alloc;
				gi_new = true;
				gi->h = ih;
				gi->ns = ns;
				gi->key = aep_strdup(l[0].key);
				gi->value = aep_strdup(l[0].value);
				if (gi->key == NULL || gi->value == NULL)
					goto err_after_gidx_alloc;
			}
		}
		/* Room to count the placed pods it selects. */
		uint32_t placed = 0;
		for (struct sched__pod *p = ns->pods; p != NULL; p = p->ns_next)
			if (p->node != NULL &&
			    sched__labels_subset(l, nl, p->obj->meta.labels, p->obj->meta.nlabels))
				placed++;
		if (sched__cmap_reserve(&g->on_node, placed) != 0)
			goto err_after_gidx_alloc;
	} else if (old == NULL) {
		return 0;
	}

	/* Commit: @old leaves every pod; @g joins the pods it selects. */
	for (struct sched__pod *p = ns->pods; p != NULL; p = p->ns_next) {
		if (old != NULL)
			pod_drop_group(s, p, old);
		if (g != NULL && g->nsel > 0 && p->ngroups < SCHED__GROUPS_MAX &&
		    sched__labels_subset(g->sel, g->nsel, p->obj->meta.labels,
					 p->obj->meta.nlabels)) {
			p->groups[p->ngroups++] = g;
			if (p->node != NULL)
				group_count(s, g, p->node, 1);
		}
	}
	/* @g joins its index entry before @old leaves, so that an entry they
	 * share is not freed in between. */
	if (g != NULL && gi != NULL) {
		if (gi_new)
			sched__map_put(&s->gidx, gi->h, gi);
		g->idx = gi;
		g->idx_next = gi->first;
		gi->first = g;
	}
	if (old != NULL) {
		group_unindex(s, old);
		sched__map_del(&s->groups, old->h, old);
		group_free(old);
	}
	if (g != NULL)
		sched__map_put(&s->groups, g->h, g);
	return 0;

err_after_gidx_alloc:
	if (gi_new) {
		aep_free(gi->key);
		aep_free(gi->value);
		aep_free(gi);
	}
err_after_group_alloc:
	group_free(g);
	return AEP_ENOMEM;
}

/* ---- pods ------------------------------------------------------------------- */

void sched__pod_free(struct sched__pod *p)
{
	if (p == NULL)
		return;
	aep_object_unref(p->obj);
	aep_free(p->ports);
	aep_free(p->nsel);
	aep_free(p);
}

static int proto_code(const msgpack_object *o)
{
	if (o == NULL || aep_mp_str_eq(o, "TCP"))
		return 0;
	if (aep_mp_str_eq(o, "UDP"))
		return 1;
	if (aep_mp_str_eq(o, "SCTP"))
		return 2;
	return -1;
}

int sched__pod_parse(struct aep_sched *s, const struct aep_object *o, struct sched__pod *p)
{
	msgpack_object root;
	int rc = unpack(s, o, &root);
	if (rc != 0)
		return rc;
	const msgpack_object *spec = aep_mp_map_get(&root, "spec");
	p->terminal = o->phase == AEP_PHASE_SUCCEEDED || o->phase == AEP_PHASE_FAILED;
	const msgpack_object *cs = aep_mp_map_get(spec, "containers");
	if (cs == NULL || cs->type != MSGPACK_OBJECT_ARRAY)
		return AEP_EINVALID;
	uint32_t ports[SCHED__PORTS_MAX];
	uint32_t np = 0;
	p->cpu = p->mem = 0;
	for (uint32_t i = 0; i < cs->via.array.size; i++) {
		const msgpack_object *c = &cs->via.array.ptr[i];
		const msgpack_object *res = aep_mp_map_get(c, "resources");
		const msgpack_object *req = aep_mp_map_get(res, "requests");
		const msgpack_object *lim = aep_mp_map_get(res, "limits");
		int64_t lc, lm, cpu, mem;
		if (qty(lim, "cpu", 0, &lc) != 0 || qty(lim, "memory", 0, &lm) != 0 ||
		    qty(req, "cpu", lc, &cpu) != 0 || qty(req, "memory", lm, &mem) != 0)
			return AEP_EINVALID;
		p->cpu = sat_add(p->cpu, cpu);
		p->mem = sat_add(p->mem, milli_to_units(mem));
		const msgpack_object *cp = aep_mp_map_get(c, "ports");
		for (uint32_t j = 0;
		     cp != NULL && cp->type == MSGPACK_OBJECT_ARRAY && j < cp->via.array.size;
		     j++) {
			const msgpack_object *hp =
			    aep_mp_map_get(&cp->via.array.ptr[j], "hostPort");
			if (hp == NULL || hp->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
			    hp->via.u64 == 0)
				continue;
			int proto = proto_code(aep_mp_map_get(&cp->via.array.ptr[j], "protocol"));
			if (hp->via.u64 > 65535 || proto < 0 || np == SCHED__PORTS_MAX)
				return AEP_EINVALID;
			ports[np++] = (uint32_t)hp->via.u64 | (uint32_t)proto << 16;
		}
	}
	if (np > 0) {
		p->ports = aep_malloc(np * sizeof(*p->ports));
		if (p->ports == NULL)
			return AEP_ENOMEM;
		memcpy(p->ports, ports, np * sizeof(*p->ports));
		p->nports = np;
	}
	return labels_from_map(aep_mp_map_get(spec, "nodeSelector"), &p->nsel, &p->nnsel);
}

static void ns_link(struct sched__pod *p)
{
	p->ns_prev = NULL;
	p->ns_next = p->ns->pods;
	if (p->ns->pods != NULL)
		p->ns->pods->ns_prev = p;
	p->ns->pods = p;
}

static void ns_unlink(struct sched__pod *p)
{
	if (p->ns_prev != NULL)
		p->ns_prev->ns_next = p->ns_next;
	else
		p->ns->pods = p->ns_next;
	if (p->ns_next != NULL)
		p->ns_next->ns_prev = p->ns_prev;
}

/* Take @old out of every map, list and queue and free it. */
static void pod_remove(struct aep_sched *s, struct sched__pod *old)
{
	bool placed = old->node != NULL;
	sched__pod_unplace(s, old);
	sched__queue_remove(s, old);
	if (old->cls != NULL)
		sched__class_put(s, old->cls);
	ns_unlink(old);
	sched__map_del(&s->pods, old->h, old);
	sched__pod_free(old);
	if (placed)
		sched__flush_backoff(s);
}

static int observe_pod(struct aep_sched *s, enum aep_event_type t, const struct aep_object *o)
{
	struct pod_key key = {o->meta.ns, o->meta.name};
	uint64_t h = pod_hash(o->meta.ns, o->meta.name);
	struct sched__pod *old = sched__map_get(&s->pods, h, pod_eq, &key);
	if (t == AEP_EV_DELETED) {
		if (old != NULL)
			pod_remove(s, old);
		return 0;
	}
	/* Another uid under the same name: the first pod's deletion was missed;
	 * the new one inherits neither its assumption nor its queue place. */
	bool same = old != NULL && strcmp(old->obj->meta.uid, o->meta.uid) == 0;
	struct sched__pod *p = aep_calloc(1, sizeof(*p));
	if (p == NULL)
		return AEP_ENOMEM;
	p->h = h;
	p->obj = aep_object_ref((struct aep_object *)o);
	int rc = sched__pod_parse(s, o, p);
	if (rc != 0)
		goto err_after_pod_alloc;
	rc = AEP_ENOMEM;
	p->ns = sched__ns_get(s, o->meta.ns);
	if (p->ns == NULL)
		goto err_after_pod_alloc;
	sched__pod_groups(s, p);

	/* Where it counts: the store's node, else the node it is assumed on. */
	struct sched__node *target = NULL;
	bool created = false, assumed = false;
	if (!p->terminal && o->node_name != NULL) {
		if (node_get(s, o->node_name, &target, &created) != 0)
			goto err_after_pod_alloc;
	} else if (!p->terminal && same && old->assumed) {
		target = old->node;
		assumed = true;
	}
	if (target != NULL && sched__pod_reserve(s, p, target) != 0)
		goto err_after_node_get;
	if (!p->terminal && o->node_name == NULL && sched__class_get(s, p, &p->cls) != 0)
		goto err_after_node_get;
	if (old == NULL && sched__map_reserve(&s->pods, 1) != 0)
		goto err_after_class_get;

	/* Commit. The new pod takes the old one's place in the queue. */
	bool flush = false;
	if (target != NULL)
		sched__pod_place(s, p, target, assumed);
	if (old != NULL) {
		flush = old->node != NULL && (target == NULL || !same);
		if (same) {
			p->due = old->due;
			p->backoff = old->backoff;
		}
		if (!same) {
			/* queued afresh below */
		} else if (old->q == SCHED__Q_FIFO && p->cls != NULL && target == NULL) {
			p->q = SCHED__Q_FIFO;
			p->q_prev = old->q_prev;
			p->q_next = old->q_next;
			if (p->q_prev != NULL)
				p->q_prev->q_next = p;
			else
				s->fifo_head = p;
			if (p->q_next != NULL)
				p->q_next->q_prev = p;
			else
				s->fifo_tail = p;
			old->q = SCHED__Q_NONE;
		} else if (old->q == SCHED__Q_BACKOFF && p->cls != NULL && target == NULL) {
			p->q = SCHED__Q_BACKOFF;
			p->heap_idx = old->heap_idx;
			s->heap[p->heap_idx] = p;
			old->q = SCHED__Q_NONE;
		}
		sched__pod_unplace(s, old);
		sched__queue_remove(s, old);
		if (old->cls != NULL)
			sched__class_put(s, old->cls);
		ns_unlink(old);
		sched__map_del(&s->pods, old->h, old);
		sched__pod_free(old);
	}
	ns_link(p);
	sched__map_put(&s->pods, p->h, p);
	if (p->cls != NULL && target == NULL && p->q == SCHED__Q_NONE)
		sched__queue_push(s, p);
	if (flush)
		sched__flush_backoff(s);
	return 0;

err_after_class_get:
	if (p->cls != NULL)
		sched__class_put(s, p->cls);
err_after_node_get:
	if (created)
		node_drop(s, target);
err_after_pod_alloc:
	sched__pod_free(p);
	return rc;
}

int aep_sched_observe(struct aep_sched *s, enum aep_event_type t, const struct aep_object *o)
{
	int rc;
	switch (o->kind) {
	case AEP_KIND_NODE: rc = observe_node(s, t, o); break;
	case AEP_KIND_POD: rc = observe_pod(s, t, o); break;
	case AEP_KIND_NAMESPACE: rc = observe_ns(s, t, o); break;
	case AEP_KIND_SERVICE:
	case AEP_KIND_RC: rc = observe_group(s, t, o); break;
	default: rc = 0; break;
	}
	msgpack_zone_clear(&s->zone);
	return rc;
}

int aep_sched_node_info(const struct aep_sched *s, const char *node,
			struct aep_sched_node_info *out)
{
	const struct sched__node *n = sched__node_find(s, node);
	if (n == NULL)
		return AEP_ENOTFOUND;
	out->registered = n->obj != NULL;
	out->ready = n->ready;
	out->unschedulable = n->unschedulable;
	out->alloc_cpu = n->alloc_cpu;
	out->alloc_mem = n->alloc_mem;
	out->alloc_pods = n->alloc_pods;
	out->req_cpu = n->req_cpu;
	out->req_mem = n->req_mem;
	out->pods = n->npods;
	return 0;
}

void sched__free_cache(struct aep_sched *s)
{
	for (uint32_t i = 0; i < s->pods.cap; i++) {
		struct sched__pod *p = s->pods.e[i].v;
		if (p != NULL)
			sched__pod_free(p);
	}
	sched__map_free(&s->pods);
	for (uint32_t i = 0; i < s->nodes_hi; i++) {
		struct sched__node *n = s->nodes[i];
		if (n == NULL)
			continue;
		aep_object_unref(n->obj);
		aep_free(n->ports);
		aep_free(n->name);
		aep_free(n);
	}
	aep_free(s->nodes);
	aep_free(s->free_idx);
	sched__map_free(&s->nodes_by_name);
	for (uint32_t i = 0; i < s->groups.cap; i++)
		if (s->groups.e[i].v != NULL)
			group_free(s->groups.e[i].v);
	sched__map_free(&s->groups);
	for (uint32_t i = 0; i < s->gidx.cap; i++) {
		struct sched__gidx *gi = s->gidx.e[i].v;
		if (gi != NULL) {
			aep_free(gi->key);
			aep_free(gi->value);
			aep_free(gi);
		}
	}
	sched__map_free(&s->gidx);
	for (uint32_t i = 0; i < s->nss.cap; i++) {
		struct sched__ns *ns = s->nss.e[i].v;
		if (ns != NULL) {
			aep_selector_free(ns->sel);
			aep_free(ns->sel_err);
			aep_free(ns->name);
			aep_free(ns);
		}
	}
	sched__map_free(&s->nss);
	for (unsigned k = 0; k < SCHED__SLOTS_MAX; k++) {
		for (uint32_t i = 0; i < s->vals[k].cap; i++) {
			char *v = s->vals[k].e[i].v;
			if (v != NULL)
				aep_free(v - sizeof(uint32_t));
		}
		sched__map_free(&s->vals[k]);
	}
}
