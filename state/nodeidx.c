/* state: the index of pods by the node they are bound to.
 *
 * One group per node name, found through a hash table; a group's pods
 * are a doubly-linked list through their entries, so binding, moving or
 * deleting a pod costs a hash lookup and a few pointer writes whatever
 * the cluster's size. Listing a node's pods sorts them by (namespace,
 * name), which is cheap for the few dozen pods a node holds and keeps
 * writes, the hot path on every master, free of tree walks.
 *
 * A group is made by state__nodes_reserve() before a command commits
 * (it allocates); linking and unlinking never allocate or free, so the
 * store's commit sections cannot fail; state__nodes_release() frees a
 * group left empty once a command is done with it. */
#include "state/store-int.h"

#include <stdlib.h>
#include <string.h>

struct state__node_group {
	struct state__node_group *hnext; /* hash chain */
	struct state__entry *head;	 /* its pods, through node_next/node_prev */
	size_t n;
	uint64_t hash;
	char name[];
};

#define NODES_BUCKETS_MIN 64

static struct state__node_group **slot(const struct state__node_index *x, uint64_t hash)
{
	return &x->buckets[hash & (x->nbuckets - 1)];
}

struct state__node_group *state__nodes_find(const struct state__node_index *x, const char *node)
{
	if (x->nbuckets == 0)
		return NULL;
	uint64_t h = state__hash2(node, "");
	for (struct state__node_group *g = *slot(x, h); g != NULL; g = g->hnext)
		if (g->hash == h && strcmp(g->name, node) == 0)
			return g;
	return NULL;
}

/* Double the table (or make the first one). AEP_ENOMEM changes nothing. */
static int grow(struct state__node_index *x)
{
	size_t n = x->nbuckets != 0 ? x->nbuckets * 2 : NODES_BUCKETS_MIN;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	struct state__node_group **b = aep_calloc(n, sizeof(*b));
	if (b == NULL)
		return AEP_ENOMEM;
	for (size_t i = 0; i < x->nbuckets; i++) {
		struct state__node_group *g = x->buckets[i], *next;
		for (; g != NULL; g = next) {
			next = g->hnext;
			g->hnext = b[g->hash & (n - 1)];
			b[g->hash & (n - 1)] = g;
		}
	}
	aep_free(x->buckets);
	x->buckets = b;
	x->nbuckets = n;
	return 0;
}

int state__nodes_reserve(struct state__node_index *x, const char *node)
{
	if (state__nodes_find(x, node) != NULL)
		return 0;
	if (x->ngroups >= x->nbuckets && grow(x) != 0)
		return AEP_ENOMEM;
	size_t len = strlen(node);
	struct state__node_group *g = aep_malloc(sizeof(*g) + len + 1);
	if (g == NULL)
		return AEP_ENOMEM;
	memcpy(g->name, node, len + 1);
	g->hash = state__hash2(node, "");
	g->head = NULL;
	g->n = 0;
	struct state__node_group **s = slot(x, g->hash);
	g->hnext = *s;
	*s = g;
	x->ngroups++;
	return 0;
}

static void group_drop(struct state__node_index *x, struct state__node_group *g)
{
	struct state__node_group **p = slot(x, g->hash);
	while (*p != g)
		p = &(*p)->hnext;
	*p = g->hnext;
	x->ngroups--;
	aep_free(g);
}

void state__nodes_release(struct state__node_index *x, const char *node)
{
	struct state__node_group *g = state__nodes_find(x, node);
	if (g != NULL && g->n == 0)
		group_drop(x, g);
}

void state__nodes_link(struct state__node_index *x, struct state__entry *e)
{
	struct state__node_group *g = state__nodes_find(x, e->obj->node_name);
	/* Reserved before the commit: a missing group is a bug in the caller. */
	if (g == NULL)
		abort();
	e->node_group = g;
	e->node_prev = NULL;
	e->node_next = g->head;
	if (g->head != NULL)
		g->head->node_prev = e;
	g->head = e;
	g->n++;
}

void state__nodes_unlink(struct state__node_index *x, struct state__entry *e)
{
	(void)x; /* the group is reached through the entry */
	struct state__node_group *g = e->node_group;
	if (g == NULL)
		return;
	if (e->node_prev != NULL)
		e->node_prev->node_next = e->node_next;
	else
		g->head = e->node_next;
	if (e->node_next != NULL)
		e->node_next->node_prev = e->node_prev;
	e->node_group = NULL;
	e->node_next = e->node_prev = NULL;
	g->n--; /* an empty group stays until state__nodes_release() */
}

static int entry_cmp(const void *a, const void *b)
{
	return state__key_cmp(*(struct state__entry *const *)a, *(struct state__entry *const *)b);
}

int state__nodes_visit(const struct state__node_index *x, const char *node, aep_store_visit_cb cb,
		       void *data)
{
	struct state__node_group *g = state__nodes_find(x, node);
	if (g == NULL || g->n == 0)
		return 0;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	struct state__entry **v = aep_malloc(g->n * sizeof(*v));
	if (v == NULL)
		return AEP_ENOMEM;
	size_t n = 0;
	for (struct state__entry *e = g->head; e != NULL; e = e->node_next)
		v[n++] = e;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	qsort(v, n, sizeof(*v), entry_cmp);
	int rv = 0;
	for (size_t i = 0; i < n && rv == 0; i++)
		rv = cb(v[i]->obj, data);
	aep_free(v);
	return rv;
}

void state__nodes_free(struct state__node_index *x)
{
	for (size_t i = 0; i < x->nbuckets; i++) {
		struct state__node_group *g = x->buckets[i], *next;
		for (; g != NULL; g = next) {
			next = g->hnext;
			aep_free(g);
		}
	}
	aep_free(x->buckets);
	memset(x, 0, sizeof(*x));
}
