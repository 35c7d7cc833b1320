/* scheduler: placing queued pods.
 *
 * Happy path of aep_sched_run() for one pod: its equivalence class (same
 * namespace and node selector) holds the nodes that pass every static
 * predicate, in the walk order (nodes interleaved by the spreading label,
 * so any stretch of it holds every zone). Starting where the previous pod
 * of the class stopped, the walk checks the dynamic predicates (resources,
 * host ports, service affinity: integer compares on the node's counters)
 * until it has a sample of feasible nodes, scores the sample (priorities
 * normalised over it; spreading uses the group's global per-node and
 * per-zone counts, so the sample needs only to contain each zone) and picks
 * the best, ties to the first in walk order. The placement is assumed at
 * once. A pod that fits nowhere gets the explanation of every node's first
 * failing predicate, in policy order, and backs off.
 *
 * Failure modes: out of memory part-way leaves the pod at the head of the
 * queue and returns what was done. */
#include "scheduler/sched-int.h"

#include <string.h>

#define BACKOFF_INITIAL_NS 1000000000LL
#define BACKOFF_MAX_NS	   60000000000LL
#define SFAIL_PASS	   0xffff

const char *const sched__reason_text[SCHED__W__COUNT] = {
    [SCHED__W_NOT_READY] = "node(s) not ready",
    [SCHED__W_UNSCHEDULABLE] = "node(s) unschedulable",
    [SCHED__W_PODS] = "too many pods",
    [SCHED__W_CPU] = "insufficient cpu",
    [SCHED__W_MEM] = "insufficient memory",
    [SCHED__W_PORTS] = "host port conflict",
    [SCHED__W_SELECTOR] = "did not match node selector",
    [SCHED__W_HOST_NAME] = "did not match host name",
    [SCHED__W_MISSING_LABELS] = "missing required labels",
    [SCHED__W_FORBIDDEN_LABELS] = "has forbidden labels",
    [SCHED__W_AFFINITY] = "did not match service affinity",
};

/* ---- queue ------------------------------------------------------------------- */

void sched__queue_push(struct aep_sched *s, struct sched__pod *p)
{
	p->q = SCHED__Q_FIFO;
	p->q_next = NULL;
	p->q_prev = s->fifo_tail;
	if (s->fifo_tail != NULL)
		s->fifo_tail->q_next = p;
	else
		s->fifo_head = p;
	s->fifo_tail = p;
	s->nfifo++;
}

static void heap_swap(struct aep_sched *s, uint32_t a, uint32_t b)
{
	struct sched__pod *t = s->heap[a];
	s->heap[a] = s->heap[b];
	s->heap[b] = t;
	s->heap[a]->heap_idx = a;
	s->heap[b]->heap_idx = b;
}

static void heap_up(struct aep_sched *s, uint32_t i)
{
	while (i > 0 && s->heap[(i - 1) / 2]->due > s->heap[i]->due) {
		heap_swap(s, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(struct aep_sched *s, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < s->nheap && s->heap[l]->due < s->heap[m]->due)
			m = l;
		if (r < s->nheap && s->heap[r]->due < s->heap[m]->due)
			m = r;
		if (m == i)
			return;
		heap_swap(s, i, m);
		i = m;
	}
}

int sched__queue_reserve(struct aep_sched *s)
{
	if (s->nheap < s->heap_cap)
		return 0;
	uint32_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	struct sched__pod **h = aep_realloc(s->heap, cap * sizeof(*h));
	if (h == NULL)
		return AEP_ENOMEM;
	s->heap = h;
	s->heap_cap = cap;
	return 0;
}

void sched__queue_remove(struct aep_sched *s, struct sched__pod *p)
{
	if (p->q == SCHED__Q_FIFO) {
		if (p->q_prev != NULL)
			p->q_prev->q_next = p->q_next;
		else
			s->fifo_head = p->q_next;
		if (p->q_next != NULL)
			p->q_next->q_prev = p->q_prev;
		else
			s->fifo_tail = p->q_prev;
		p->q_prev = p->q_next = NULL;
		s->nfifo--;
	} else if (p->q == SCHED__Q_BACKOFF) {
		uint32_t i = p->heap_idx;
		s->nheap--;
		if (i != s->nheap) {
			s->heap[i] = s->heap[s->nheap];
			s->heap[i]->heap_idx = i;
			heap_down(s, i);
			heap_up(s, i);
		}
	}
	p->q = SCHED__Q_NONE;
}

void sched__flush_backoff(struct aep_sched *s)
{
	while (s->nheap > 0) {
		struct sched__pod *p = s->heap[0];
		sched__queue_remove(s, p);
		sched__queue_push(s, p);
	}
}

size_t aep_sched_queued(const struct aep_sched *s)
{
	return s->nfifo + s->nheap;
}

int64_t aep_sched_next_due(const struct aep_sched *s)
{
	return s->nheap > 0 ? s->heap[0]->due : INT64_MAX;
}

/* ---- equivalence classes ------------------------------------------------------ */

struct class_key {
	const struct sched__ns *ns;
	const struct aep_label *sel;
	size_t nsel;
};

static uint64_t class_hash(const struct sched__ns *ns, const struct aep_label *sel, size_t nsel)
{
	uint64_t h = ns->h;
	for (size_t i = 0; i < nsel; i++)
		h = sched__hash_str(sel[i].value, sched__hash_str(sel[i].key, h));
	return h;
}

static bool class_eq(const void *v, const void *key)
{
	const struct sched__class *c = v;
	const struct class_key *k = key;
	if (c->ns != k->ns || c->nsel != k->nsel)
		return false;
	for (size_t i = 0; i < c->nsel; i++)
		if (strcmp(c->sel[i].key, k->sel[i].key) != 0 ||
		    strcmp(c->sel[i].value, k->sel[i].value) != 0)
			return false;
	return true;
}

static void class_free_subs(struct sched__class *c)
{
	for (uint32_t i = 0; i < c->nsubs; i++)
		aep_free(c->subs[i].list);
	aep_free(c->subs);
}

static void class_free(struct aep_sched *s, struct sched__class *c)
{
	sched__map_del(&s->classes, c->h, c);
	class_free_subs(c);
	aep_free(c->list);
	aep_free(c->sfail);
	aep_free(c->sel);
	aep_free(c);
}

static void idle_unlink(struct aep_sched *s, struct sched__class *c)
{
	if (c->idle_prev != NULL)
		c->idle_prev->idle_next = c->idle_next;
	else
		s->idle_head = c->idle_next;
	if (c->idle_next != NULL)
		c->idle_next->idle_prev = c->idle_prev;
	else
		s->idle_tail = c->idle_prev;
	c->idle_prev = c->idle_next = NULL;
	c->idle = false;
	s->nidle--;
}

int sched__class_get(struct aep_sched *s, struct sched__pod *p, struct sched__class **out)
{
	struct class_key k = {p->ns, p->nsel, p->nnsel};
	uint64_t h = class_hash(p->ns, p->nsel, p->nnsel);
	struct sched__class *c = sched__map_get(&s->classes, h, class_eq, &k);
	if (c == NULL) {
		if (sched__map_reserve(&s->classes, 1) != 0)
			return AEP_ENOMEM;
		c = aep_calloc(1, sizeof(*c));
		if (c == NULL)
			return AEP_ENOMEM;
		size_t bytes = p->nnsel * sizeof(struct aep_label);
		for (size_t i = 0; i < p->nnsel; i++)
			bytes += strlen(p->nsel[i].key) + strlen(p->nsel[i].value) + 2;
		c->sel = aep_malloc(bytes);
		if (c->sel == NULL) {
			aep_free(c);
			return AEP_ENOMEM;
		}
		char *q = (char *)(c->sel + p->nnsel);
		for (size_t i = 0; i < p->nnsel; i++) {
			size_t kl = strlen(p->nsel[i].key) + 1, vl = strlen(p->nsel[i].value) + 1;
			c->sel[i].key = memcpy(q, p->nsel[i].key, kl);
			q += kl;
			c->sel[i].value = memcpy(q, p->nsel[i].value, vl);
			q += vl;
		}
		c->nsel = p->nnsel;
		c->ns = p->ns;
		c->h = h;
		sched__map_put(&s->classes, h, c);
	} else if (c->idle) {
		idle_unlink(s, c);
	}
	c->refs++;
	*out = c;
	return 0;
}

void sched__class_put(struct aep_sched *s, struct sched__class *c)
{
	if (--c->refs > 0)
		return;
	c->idle = true;
	c->idle_next = NULL;
	c->idle_prev = s->idle_tail;
	if (s->idle_tail != NULL)
		s->idle_tail->idle_next = c;
	else
		s->idle_head = c;
	s->idle_tail = c;
	s->nidle++;
	if (s->nidle > SCHED__IDLE_CLASSES) {
		struct sched__class *old = s->idle_head;
		idle_unlink(s, old);
		class_free(s, old);
	}
}

void sched__free_classes(struct aep_sched *s)
{
	for (uint32_t i = 0; i < s->classes.cap; i++) {
		struct sched__class *c = s->classes.e[i].v;
		if (c != NULL) {
			class_free_subs(c);
			aep_free(c->list);
			aep_free(c->sfail);
			aep_free(c->sel);
			aep_free(c);
		}
	}
	sched__map_free(&s->classes);
}

/* ---- walk order ------------------------------------------------------------------ */

/* The present nodes, interleaved by the value of the spread label: one of
 * each value in turn. Rebuilt when a static input changed. */
static int ensure_walk(struct aep_sched *s)
{
	if (s->walk_epoch == s->epoch)
		return 0;
	uint32_t need = s->npresent ? s->npresent : 1;
	if (s->walk_cap < need) {
		uint32_t cap = need + need / 4;
		uint32_t *walk = aep_malloc(cap * sizeof(*walk));
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
		struct sched__node **cand = aep_malloc(cap * sizeof(*cand));
		int64_t *score = aep_malloc(cap * sizeof(*score));
		int64_t *raw = aep_malloc(cap * sizeof(*raw));
		if (walk == NULL || cand == NULL || score == NULL || raw == NULL) {
			aep_free(walk);
			aep_free(cand);
			aep_free(score);
			aep_free(raw);
			return AEP_ENOMEM;
		}
		aep_free(s->walk);
		aep_free(s->cand);
		aep_free(s->score);
		aep_free(s->raw);
		s->walk = walk;
		s->cand = cand;
		s->score = score;
		s->raw = raw;
		s->walk_cap = cap;
	}
	int slot = s->pol->spread_slot;
	uint32_t m = 0;
	if (slot < 0) {
		for (uint32_t i = 0; i < s->nodes_hi; i++)
			if (s->nodes[i] != NULL && s->nodes[i]->obj != NULL)
				s->walk[m++] = i;
		s->nwalk = m;
		s->nbuckets = 1;
		s->walk_epoch = s->epoch;
		return 0;
	}
	/* Counting sort by value into tmp, then deal one per bucket per round. */
	uint32_t nb = s->nvals[slot] + 1;
	uint32_t *start = aep_calloc((size_t)nb + 1, sizeof(*start));
	uint32_t *fill = aep_calloc((size_t)nb, sizeof(*fill));
	uint32_t *tmp = aep_malloc(need * sizeof(*tmp));
	uint32_t *active = aep_malloc((size_t)nb * sizeof(*active));
	if (start == NULL || fill == NULL || tmp == NULL || active == NULL) {
		aep_free(start);
		aep_free(fill);
		aep_free(tmp);
		aep_free(active);
		return AEP_ENOMEM;
	}
	for (uint32_t i = 0; i < s->nodes_hi; i++)
		if (s->nodes[i] != NULL && s->nodes[i]->obj != NULL)
			start[s->nodes[i]->lv[slot] + 1]++;
	uint32_t nactive = 0;
	for (uint32_t b = 0; b < nb; b++) {
		if (start[b + 1] > 0)
			active[nactive++] = b;
		start[b + 1] += start[b];
	}
	for (uint32_t i = 0; i < s->nodes_hi; i++) {
		const struct sched__node *n = s->nodes[i];
		if (n != NULL && n->obj != NULL)
			tmp[start[n->lv[slot]] + fill[n->lv[slot]]++] = i;
	}
	s->nbuckets = nactive;
	for (uint32_t r = 0; nactive > 0; r++) {
		uint32_t keep = 0;
		for (uint32_t a = 0; a < nactive; a++) {
			uint32_t b = active[a];
			s->walk[m++] = tmp[start[b] + r];
			if (r + 1 < start[b + 1] - start[b])
				active[keep++] = b;
		}
		nactive = keep;
	}
	s->nwalk = m;
	s->walk_epoch = s->epoch;
	aep_free(start);
	aep_free(fill);
	aep_free(tmp);
	aep_free(active);
	return 0;
}

/* ---- predicates ----------------------------------------------------------------- */

/* The first static predicate @n fails for a pod of namespace @ns with node
 * selector @sel (and preset host name @host, plan only), as pred << 8 |
 * reason, or SFAIL_PASS. */
static uint16_t static_fail(const struct aep_sched *s, const struct sched__ns *ns,
			    const struct aep_label *sel, size_t nsel, const char *host,
			    const struct sched__node *n)
{
	const struct aep_sched_policy *pol = s->pol;
	const struct aep_meta *m = &n->obj->meta;
	for (size_t i = 0; i < pol->npreds; i++) {
		const struct sched__pred *pr = &pol->preds[i];
		int w = -1;
		switch (pr->type) {
		case SCHED__P_NODE_READY:
			if (!n->ready)
				w = SCHED__W_NOT_READY;
			else if (n->unschedulable)
				w = SCHED__W_UNSCHEDULABLE;
			break;
		case SCHED__P_NODE_SELECTOR:
			if (!sched__labels_subset(sel, nsel, m->labels, m->nlabels) ||
			    (ns->sel != NULL &&
			     !aep_selector_matches(ns->sel, m->labels, m->nlabels)))
				w = SCHED__W_SELECTOR;
			break;
		case SCHED__P_HOST_NAME:
			if (host != NULL && strcmp(host, n->name) != 0)
				w = SCHED__W_HOST_NAME;
			break;
		case SCHED__P_LABELS_PRESENCE:
			for (size_t j = 0; j < pr->nlabels && w < 0; j++) {
				bool has = sched__label_get(m->labels, m->nlabels, pr->labels[j]);
				if (pr->presence && !has)
					w = SCHED__W_MISSING_LABELS;
				else if (!pr->presence && has)
					w = SCHED__W_FORBIDDEN_LABELS;
			}
			break;
		default: break;
		}
		if (w >= 0)
			return (uint16_t)(i << 8 | (unsigned)w);
	}
	return SFAIL_PASS;
}

static bool is_dynamic(enum sched__pred_type t)
{
	return t == SCHED__P_RESOURCES || t == SCHED__P_HOST_PORTS ||
	       t == SCHED__P_SERVICE_AFFINITY;
}

/* Per pod: what the dynamic predicates compare against. */
struct pctx {
	const struct sched__pod *p;
	/* serviceAffinity: the value id each slot must have, 0: free,
	 * UINT32_MAX: the pod's groups disagree, so nothing fits */
	uint32_t req[SCHED__SLOTS_MAX];
	uint32_t nfixed; /* slots with a required value, listed in fixed[] */
	uint8_t fixed[SCHED__SLOTS_MAX];
	bool impossible;
	bool resources, ports; /* what fits() checks */
};

static void ctx_init(const struct aep_sched *s, const struct sched__pod *p, struct pctx *ctx)
{
	const struct aep_sched_policy *pol = s->pol;
	ctx->p = p;
	memset(ctx->req, 0, sizeof(ctx->req));
	for (size_t i = 0; i < pol->npreds; i++) {
		const struct sched__pred *pr = &pol->preds[i];
		if (pr->type != SCHED__P_SERVICE_AFFINITY)
			continue;
		for (size_t j = 0; j < pr->nlabels; j++) {
			unsigned k = pr->slots[j];
			const char *key = pol->slot_keys[k], *rk, *rv;
			/* A node selector that fixes the label decides it. */
			if (sched__label_get(p->nsel, p->nnsel, key) != NULL)
				continue;
			if (aep_selector_required_label(p->ns->sel, &rk, &rv) &&
			    strcmp(rk, key) == 0)
				continue;
			uint32_t v = ctx->req[k];
			for (uint32_t g = 0; g < p->ngroups; g++) {
				uint32_t a = p->groups[g]->aff[k];
				if (a == 0)
					continue;
				if (v == 0)
					v = a;
				else if (v != a)
					v = UINT32_MAX;
			}
			ctx->req[k] = v;
		}
	}
	ctx->nfixed = 0;
	ctx->impossible = false;
	for (unsigned k = 0; k < pol->nslots; k++) {
		if (ctx->req[k] == UINT32_MAX)
			ctx->impossible = true;
		else if (ctx->req[k] != 0)
			ctx->fixed[ctx->nfixed++] = (uint8_t)k;
	}
	ctx->resources = s->has_resources;
	ctx->ports = s->has_ports && p->nports > 0;
}

static bool port_used(const struct sched__node *n, uint32_t port)
{
	uint32_t lo = 0, hi = n->nports;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (n->ports[mid] == port)
			return true;
		if (n->ports[mid] < port)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* The reason @n fails the dynamic predicate @pr for the pod, or -1. */
static int dyn_fail(const struct pctx *ctx, const struct sched__pred *pr,
		    const struct sched__node *n)
{
	const struct sched__pod *p = ctx->p;
	switch (pr->type) {
	case SCHED__P_RESOURCES:
		if (n->npods >= n->alloc_pods)
			return SCHED__W_PODS;
		if (p->cpu > 0 && p->cpu > n->alloc_cpu - n->req_cpu)
			return SCHED__W_CPU;
		if (p->mem > 0 && p->mem > n->alloc_mem - n->req_mem)
			return SCHED__W_MEM;
		return -1;
	case SCHED__P_HOST_PORTS:
		for (uint32_t i = 0; i < p->nports; i++)
			if (port_used(n, p->ports[i]))
				return SCHED__W_PORTS;
		return -1;
	case SCHED__P_SERVICE_AFFINITY:
		for (size_t j = 0; j < pr->nlabels; j++) {
			uint32_t want = ctx->req[pr->slots[j]];
			if (want != 0 && n->lv[pr->slots[j]] != want)
				return SCHED__W_AFFINITY;
		}
		return -1;
	default: return -1;
	}
}

/* Does @n pass every dynamic predicate? The walk's inner loop: the same
 * answer as dyn_fail() over the policy's dynamic predicates. */
static inline bool fits(const struct pctx *ctx, const struct sched__node *n)
{
	const struct sched__pod *p = ctx->p;
	if (ctx->resources &&
	    (n->npods >= n->alloc_pods || (p->cpu > 0 && p->cpu > n->alloc_cpu - n->req_cpu) ||
	     (p->mem > 0 && p->mem > n->alloc_mem - n->req_mem)))
		return false;
	for (uint32_t i = 0; i < ctx->nfixed; i++)
		if (n->lv[ctx->fixed[i]] != ctx->req[ctx->fixed[i]])
			return false;
	if (ctx->ports)
		for (uint32_t i = 0; i < p->nports; i++)
			if (port_used(n, p->ports[i]))
				return false;
	return true;
}

/* The reason @n is out for the pod, every predicate in policy order; -1 when
 * it fits. @sfail: the class's static result for @n, or SFAIL_PASS + 1 to
 * compute it here. */
static int node_fail(const struct aep_sched *s, const struct pctx *ctx, uint32_t sfail,
		     const char *host, const struct sched__node *n)
{
	const struct aep_sched_policy *pol = s->pol;
	if (sfail > SFAIL_PASS)
		sfail = static_fail(s, ctx->p->ns, ctx->p->nsel, ctx->p->nnsel, host, n);
	size_t sp = sfail == SFAIL_PASS ? pol->npreds : sfail >> 8;
	for (size_t i = 0; i < pol->npreds; i++) {
		if (i == sp)
			return (int)(sfail & 0xff);
		if (is_dynamic(pol->preds[i].type)) {
			int w = dyn_fail(ctx, &pol->preds[i], n);
			if (w >= 0)
				return w;
		}
	}
	return -1;
}

/* "0/N nodes available: A reason, B reason", largest count first. */
static char *explain(const uint32_t counts[SCHED__W__COUNT], uint32_t total)
{
	struct aep_buf b;
	aep_buf_init(&b);
	aep_buf_printf(&b, "0/%u nodes available: ", total);
	bool done[SCHED__W__COUNT] = {false};
	bool any = false;
	for (;;) {
		int best = -1;
		for (int w = 0; w < SCHED__W__COUNT; w++)
			if (!done[w] && counts[w] > 0 && (best < 0 || counts[w] > counts[best]))
				best = w;
		if (best < 0)
			break;
		done[best] = true;
		aep_buf_printf(&b, "%s%u %s", any ? ", " : "", counts[best],
			       sched__reason_text[best]);
		any = true;
	}
	if (!any)
		aep_buf_printf(&b, "no nodes registered");
	if (b.failed) {
		aep_buf_free(&b);
		return NULL;
	}
	aep_buf_append(&b, "", 1);
	if (b.failed) {
		aep_buf_free(&b);
		return NULL;
	}
	return aep_buf_steal(&b, NULL);
}

/* ---- priorities ------------------------------------------------------------------ */

static int64_t least_requested(int64_t alloc, int64_t req, int64_t pod)
{
	if (alloc <= 0)
		return 0;
	double free = (double)alloc - (double)req - (double)pod;
	return free <= 0 ? 0 : (int64_t)(free * 100.0 / (double)alloc);
}

static double fraction(int64_t alloc, int64_t req, int64_t pod)
{
	return alloc <= 0 ? 1.0 : ((double)req + (double)pod) / (double)alloc;
}

/* Score s->cand[0..m) into s->score; returns the index of the best, ties
 * taken in turn (s->rr) so that identical nodes fill evenly. */
static uint32_t score_cands(struct aep_sched *s, const struct pctx *ctx, uint32_t m)
{
	const struct aep_sched_policy *pol = s->pol;
	const struct sched__pod *p = ctx->p;
	struct sched__node **cand = s->cand;
	int64_t *score = s->score, *raw = s->raw;
	memset(score, 0, m * sizeof(*score));
	for (size_t i = 0; i < pol->nprios; i++) {
		const struct sched__prio *pr = &pol->prios[i];
		int64_t w = pr->weight, lo = INT64_MAX, hi = -1;
		switch (pr->type) {
		case SCHED__R_LEAST_REQUESTED:
			for (uint32_t e = 0; e < m; e++) {
				const struct sched__node *n = cand[e];
				score[e] +=
				    w * ((least_requested(n->alloc_cpu, n->req_cpu, p->cpu) +
					  least_requested(n->alloc_mem, n->req_mem, p->mem)) /
					 2);
			}
			break;
		case SCHED__R_BALANCED:
			for (uint32_t e = 0; e < m; e++) {
				const struct sched__node *n = cand[e];
				double cf = fraction(n->alloc_cpu, n->req_cpu, p->cpu);
				double mf = fraction(n->alloc_mem, n->req_mem, p->mem);
				if (cf < 1.0 && mf < 1.0) {
					double d = cf > mf ? cf - mf : mf - cf;
					score[e] += w * (int64_t)(100.0 - d * 100.0);
				}
			}
			break;
		case SCHED__R_SELECTOR_SPREAD:
			for (uint32_t e = 0; e < m; e++) {
				raw[e] = 0;
				for (uint32_t g = 0; g < p->ngroups; g++)
					raw[e] += sched__cmap_get(&p->groups[g]->on_node,
								  (uint64_t)cand[e]->idx + 1);
				hi = raw[e] > hi ? raw[e] : hi;
			}
			for (uint32_t e = 0; e < m; e++)
				score[e] += w * (hi <= 0 ? 100 : 100 * (hi - raw[e]) / hi);
			break;
		case SCHED__R_ANTI_AFFINITY:
			for (uint32_t e = 0; e < m; e++) {
				uint32_t v = cand[e]->lv[pr->slot];
				raw[e] = -1;
				if (v == 0)
					continue;
				raw[e] = 0;
				for (uint32_t g = 0; g < p->ngroups; g++) {
					const struct sched__group *gr = p->groups[g];
					if (v < gr->vcap[pr->slot])
						raw[e] += gr->vcnt[pr->slot][v];
				}
				lo = raw[e] < lo ? raw[e] : lo;
				hi = raw[e] > hi ? raw[e] : hi;
			}
			for (uint32_t e = 0; e < m; e++) {
				if (raw[e] < 0)
					continue;
				score[e] += w * (hi == lo ? 100 : 100 * (hi - raw[e]) / (hi - lo));
			}
			break;
		case SCHED__R_LABEL_PREFERENCE:
			for (uint32_t e = 0; e < m; e++)
				if ((cand[e]->lv[pr->slot] != 0) == pr->presence)
					score[e] += w * 100;
			break;
		}
	}
	int64_t top = score[0];
	uint32_t nties = 0;
	for (uint32_t e = 0; e < m; e++) {
		if (score[e] > top) {
			top = score[e];
			nties = 0;
		}
		nties += score[e] == top;
	}
	uint32_t pick = (uint32_t)(s->rr++ % nties);
	for (uint32_t e = 0; e < m; e++)
		if (score[e] == top && pick-- == 0)
			return e;
	return 0;
}

/* ---- run --------------------------------------------------------------------------- */

static uint32_t sample_want(const struct aep_sched *s)
{
	if (s->sample_min == 0 && s->sample_pct == 0)
		return UINT32_MAX;
	uint64_t w = s->sample_min;
	uint64_t pct = (uint64_t)s->npresent * s->sample_pct / 100;
	w = pct > w ? pct : w;
	w = s->nbuckets > w ? s->nbuckets : w;
	return w > UINT32_MAX ? UINT32_MAX : (uint32_t)w;
}

static int class_build(struct aep_sched *s, struct sched__class *c)
{
	if (c->epoch == s->epoch)
		return 0;
	uint32_t need = s->nodes_hi ? s->nodes_hi : 1;
	if (c->cap < need) {
		uint32_t *list = aep_malloc(need * sizeof(*list));
		uint16_t *sfail = aep_malloc(need * sizeof(*sfail));
		if (list == NULL || sfail == NULL) {
			aep_free(list);
			aep_free(sfail);
			return AEP_ENOMEM;
		}
		aep_free(c->list);
		aep_free(c->sfail);
		c->list = list;
		c->sfail = sfail;
		c->cap = need;
	}
	uint32_t n = 0;
	for (uint32_t i = 0; i < s->nwalk; i++) {
		const struct sched__node *nd = s->nodes[s->walk[i]];
		uint16_t r = static_fail(s, c->ns, c->sel, c->nsel, NULL, nd);
		c->sfail[nd->idx] = r;
		if (r == SFAIL_PASS)
			c->list[n++] = nd->idx;
	}
	c->n = n;
	if (c->next >= n)
		c->next = 0;
	c->epoch = s->epoch;
	return 0;
}

/* The class's nodes whose slot @k has value @v, in walk order; NULL when
 * the class has too many such lists already. */
static int class_sub(struct aep_sched *s, struct sched__class *c, unsigned k, uint32_t v,
		     struct sched__sub **out)
{
	struct sched__sub *sub = NULL;
	*out = NULL;
	for (uint32_t i = 0; i < c->nsubs && sub == NULL; i++)
		if (c->subs[i].slot == k && c->subs[i].value == v)
			sub = &c->subs[i];
	if (sub == NULL) {
		if (c->nsubs == SCHED__SUBS_MAX)
			return 0;
		struct sched__sub *a = aep_realloc(c->subs, (c->nsubs + 1) * sizeof(*a));
		if (a == NULL)
			return AEP_ENOMEM;
		c->subs = a;
		sub = &c->subs[c->nsubs];
		memset(sub, 0, sizeof(*sub));
		sub->slot = k;
		sub->value = v;
		c->nsubs++;
	}
	if (sub->epoch != s->epoch) {
		uint32_t n = 0;
		for (uint32_t i = 0; i < c->n; i++)
			n += s->nodes[c->list[i]]->lv[k] == v;
		uint32_t *list = aep_malloc((n ? n : 1) * sizeof(*list));
		if (list == NULL)
			return AEP_ENOMEM;
		n = 0;
		for (uint32_t i = 0; i < c->n; i++)
			if (s->nodes[c->list[i]]->lv[k] == v)
				list[n++] = c->list[i];
		aep_free(sub->list);
		sub->list = list;
		sub->n = n;
		if (sub->next >= n)
			sub->next = 0;
		sub->epoch = s->epoch;
	}
	*out = sub;
	return 0;
}

static char *sel_err_message(const struct sched__ns *ns)
{
	return aep_strdup(ns->sel_err);
}

/* Choose a node for queued pod @p: *@node, or *@msg (aep_malloc'd) when it
 * fits nowhere. Returns 0 or AEP_ENOMEM (nothing changed). */
static int schedule_one(struct aep_sched *s, struct sched__pod *p, struct sched__node **node,
			char **msg)
{
	*node = NULL;
	*msg = NULL;
	if (p->ns->sel_err != NULL) {
		*msg = sel_err_message(p->ns);
		return *msg ? 0 : AEP_ENOMEM;
	}
	struct sched__class *c = p->cls;
	if (class_build(s, c) != 0)
		return AEP_ENOMEM;
	struct pctx ctx;
	ctx_init(s, p, &ctx);
	/* Walk the class's nodes, or only those with the value the service
	 * affinity requires. */
	const uint32_t *list = c->list;
	uint32_t len = c->n, *next = &c->next;
	if (ctx.nfixed > 0) {
		struct sched__sub *sub;
		if (class_sub(s, c, ctx.fixed[0], ctx.req[ctx.fixed[0]], &sub) != 0)
			return AEP_ENOMEM;
		if (sub != NULL) {
			list = sub->list;
			len = sub->n;
			next = &sub->next;
		}
	}
	uint32_t want = sample_want(s), m = 0, walked = 0, start = *next;
	while (!ctx.impossible && walked < len && m < want) {
		uint32_t pos = start + walked;
		if (pos >= len)
			pos -= len;
		struct sched__node *n = s->nodes[list[pos]];
		walked++;
		if (fits(&ctx, n))
			s->cand[m++] = n;
	}
	if (m > 0) {
		*next = (start + walked) % len;
		*node = s->cand[score_cands(s, &ctx, m)];
		return 0;
	}
	uint32_t counts[SCHED__W__COUNT] = {0};
	for (uint32_t i = 0; i < s->nwalk; i++) {
		const struct sched__node *n = s->nodes[s->walk[i]];
		int w = node_fail(s, &ctx, c->sfail[n->idx], NULL, n);
		if (w >= 0)
			counts[w]++;
	}
	*msg = explain(counts, s->npresent);
	return *msg ? 0 : AEP_ENOMEM;
}

int aep_sched_run(struct aep_sched *s, int64_t now_ns, size_t max, struct aep_sched_binding *bind,
		  size_t *nbind, struct aep_sched_failure *fail, size_t *nfail)
{
	*nbind = *nfail = 0;
	while (s->nheap > 0 && s->heap[0]->due <= now_ns) {
		struct sched__pod *p = s->heap[0];
		sched__queue_remove(s, p);
		sched__queue_push(s, p);
	}
	if (s->fifo_head == NULL || max == 0)
		return 0;
	int rc = ensure_walk(s);
	if (rc != 0)
		return rc;
	while (*nbind + *nfail < max && s->fifo_head != NULL) {
		struct sched__pod *p = s->fifo_head;
		struct sched__node *n;
		char *msg;
		if ((rc = schedule_one(s, p, &n, &msg)) != 0)
			break;
		if (n != NULL) {
			if ((rc = sched__pod_reserve(s, p, n)) != 0)
				break;
			sched__queue_remove(s, p);
			sched__pod_place(s, p, n, true);
			bind[*nbind].pod = aep_object_ref(p->obj);
			bind[*nbind].node = n->name;
			(*nbind)++;
			continue;
		}
		if ((rc = sched__queue_reserve(s)) != 0) {
			aep_free(msg);
			break;
		}
		sched__queue_remove(s, p);
		p->backoff = p->backoff == 0 ? BACKOFF_INITIAL_NS
					     : (p->backoff >= BACKOFF_MAX_NS / 2 ? BACKOFF_MAX_NS
										 : p->backoff * 2);
		p->due = now_ns > INT64_MAX - p->backoff ? INT64_MAX : now_ns + p->backoff;
		p->q = SCHED__Q_BACKOFF;
		p->heap_idx = s->nheap;
		s->heap[s->nheap++] = p;
		heap_up(s, p->heap_idx);
		fail[*nfail].pod = aep_object_ref(p->obj);
		fail[*nfail].message = msg;
		(*nfail)++;
	}
	return rc != 0 && *nbind + *nfail == 0 ? rc : 0;
}

void aep_sched_forget(struct aep_sched *s, const char *ns, const char *name, const char *uid)
{
	struct sched__pod *p = sched__pod_find(s, ns, name);
	if (p == NULL || strcmp(p->obj->meta.uid, uid) != 0)
		return;
	if (p->assumed) {
		sched__pod_unplace(s, p);
		sched__flush_backoff(s);
	}
	if (p->node == NULL && p->cls != NULL && p->q == SCHED__Q_NONE)
		sched__queue_push(s, p);
}

/* ---- plan ----------------------------------------------------------------------------- */

void aep_sched_plan_clear(struct aep_sched_plan *p)
{
	aep_free(p->node);
	aep_free(p->region);
	aep_free(p->zone);
	aep_free(p->why);
	memset(p, 0, sizeof(*p));
}

static char *label_dup(const struct sched__node *n, const char *key)
{
	const char *v = sched__label_get(n->obj->meta.labels, n->obj->meta.nlabels, key);
	return aep_strdup(v ? v : "");
}

/* Plan one pod against every node; on success @tp is placed (assumed). */
static int plan_one(struct aep_sched *s, struct sched__pod *tp, struct aep_sched_plan *out)
{
	if (tp->ns->sel_err != NULL) {
		out->why = sel_err_message(tp->ns);
		return out->why ? 0 : AEP_ENOMEM;
	}
	struct pctx ctx;
	ctx_init(s, tp, &ctx);
	uint32_t counts[SCHED__W__COUNT] = {0};
	uint32_t m = 0;
	for (uint32_t i = 0; i < s->nwalk; i++) {
		struct sched__node *n = s->nodes[s->walk[i]];
		int w = node_fail(s, &ctx, SFAIL_PASS + 1, tp->obj->node_name, n);
		if (w < 0)
			s->cand[m++] = n;
		else
			counts[w]++;
	}
	if (m == 0) {
		out->why = explain(counts, s->npresent);
		return out->why ? 0 : AEP_ENOMEM;
	}
	uint32_t best = score_cands(s, &ctx, m);
	struct sched__node *n = s->cand[best];
	out->score = s->score[best];
	out->node = aep_strdup(n->name);
	out->region = label_dup(n, "region");
	out->zone = label_dup(n, "zone");
	if (out->node == NULL || out->region == NULL || out->zone == NULL ||
	    sched__pod_reserve(s, tp, n) != 0)
		return AEP_ENOMEM;
	sched__pod_place(s, tp, n, true);
	return 0;
}

int aep_sched_plan(struct aep_sched *s, struct aep_object *const *pods, size_t n,
		   struct aep_sched_plan *out)
{
	memset(out, 0, n * sizeof(*out));
	if (n == 0)
		return 0;
	int rc = ensure_walk(s);
	if (rc != 0)
		return rc;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	struct sched__pod **tmp = aep_calloc(n, sizeof(*tmp));
	if (tmp == NULL)
		return AEP_ENOMEM;
	uint64_t rr = s->rr;
	size_t i;
	for (i = 0; i < n && rc == 0; i++) {
		struct sched__pod *tp = aep_calloc(1, sizeof(*tp));
		if (tp == NULL) {
			rc = AEP_ENOMEM;
			break;
		}
		tmp[i] = tp;
		tp->obj = aep_object_ref(pods[i]);
		rc = sched__pod_parse(s, pods[i], tp);
		msgpack_zone_clear(&s->zone);
		if (rc == AEP_EINVALID) {
			rc = 0;
			out[i].why = aep_strdup("the pod's spec cannot be read");
			if (out[i].why == NULL)
				rc = AEP_ENOMEM;
			continue;
		}
		if (rc != 0)
			break;
		tp->ns = sched__ns_get(s, pods[i]->meta.ns);
		if (tp->ns == NULL) {
			rc = AEP_ENOMEM;
			break;
		}
		sched__pod_groups(s, tp);
		rc = plan_one(s, tp, &out[i]);
	}
	while (i-- > 0) {
		if (tmp[i] != NULL) {
			sched__pod_unplace(s, tmp[i]);
			sched__pod_free(tmp[i]);
		}
	}
	aep_free(tmp);
	s->rr = rr;
	if (rc != 0)
		for (i = 0; i < n; i++)
			aep_sched_plan_clear(&out[i]);
	return rc;
}

/* ---- life ------------------------------------------------------------------------------ */

int aep_sched_new(struct aep_sched_policy *p, struct aep_sched **out)
{
	struct aep_sched *s = aep_calloc(1, sizeof(*s));
	if (s == NULL) {
		aep_sched_policy_free(p);
		return AEP_ENOMEM;
	}
	if (!msgpack_zone_init(&s->zone, 4096)) {
		aep_free(s);
		aep_sched_policy_free(p);
		return AEP_ENOMEM;
	}
	s->pol = p;
	s->epoch = 1;
	s->sample_min = 100;
	for (size_t i = 0; i < p->npreds; i++) {
		s->has_resources = s->has_resources || p->preds[i].type == SCHED__P_RESOURCES;
		s->has_ports = s->has_ports || p->preds[i].type == SCHED__P_HOST_PORTS;
	}
	*out = s;
	return 0;
}

void aep_sched_set_sample(struct aep_sched *s, uint32_t min_feasible, uint32_t percent)
{
	s->sample_min = min_feasible;
	s->sample_pct = percent > 100 ? 100 : percent;
}

void aep_sched_free(struct aep_sched *s)
{
	if (s == NULL)
		return;
	sched__free_classes(s);
	sched__free_cache(s);
	aep_free(s->heap);
	aep_free(s->walk);
	aep_free(s->cand);
	aep_free(s->score);
	aep_free(s->raw);
	msgpack_zone_destroy(&s->zone);
	aep_sched_policy_free(s->pol);
	aep_free(s);
}
