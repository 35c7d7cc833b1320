/* scheduler: the cache's hash maps.
 *
 * Open addressing with linear probing at most 70% full, and backward-shift
 * deletion (no tombstones, so lookups stay short after churn). Only
 * *_reserve() allocates; put/add after a successful reserve cannot fail,
 * which is how observe() stays all-or-nothing under AEP_ENOMEM. */
#include "scheduler/sched-int.h"

#include <string.h>

uint64_t sched__mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

uint64_t sched__hash(const void *p, size_t n, uint64_t seed)
{
	const unsigned char *c = p;
	uint64_t h = 0xcbf29ce484222325ULL ^ sched__mix(seed);
	for (size_t i = 0; i < n; i++) {
		h ^= c[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

uint64_t sched__hash_str(const char *s, uint64_t seed)
{
	return sched__hash(s, strlen(s), seed);
}

/* ---- pointer maps -------------------------------------------------------- */

void *sched__map_get(const struct sched__map *m, uint64_t h, sched__eq_fn eq, const void *key)
{
	if (m->n == 0)
		return NULL;
	uint32_t mask = m->cap - 1;
	for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
		const struct sched__ment *e = &m->e[i];
		if (e->v == NULL)
			return NULL;
		if (e->h == h && eq(e->v, key))
			return e->v;
	}
}

static void map_insert(struct sched__ment *tab, uint32_t cap, uint64_t h, void *v)
{
	uint32_t mask = cap - 1;
	uint32_t i = (uint32_t)h & mask;
	while (tab[i].v != NULL)
		i = (i + 1) & mask;
	tab[i].h = h;
	tab[i].v = v;
}

int sched__map_reserve(struct sched__map *m, uint32_t extra)
{
	uint64_t need = (uint64_t)m->n + extra;
	if (need * 10 <= (uint64_t)m->cap * 7)
		return 0;
	uint64_t cap = m->cap ? m->cap : 16;
	while (need * 10 > cap * 7)
		cap *= 2;
	if (cap > ((uint64_t)1 << 31))
		return AEP_ENOMEM;
	struct sched__ment *tab = aep_calloc((size_t)cap, sizeof(*tab));
	if (tab == NULL)
		return AEP_ENOMEM;
	for (uint32_t i = 0; i < m->cap; i++)
		if (m->e[i].v != NULL)
			map_insert(tab, (uint32_t)cap, m->e[i].h, m->e[i].v);
	aep_free(m->e);
	m->e = tab;
	m->cap = (uint32_t)cap;
	return 0;
}

void sched__map_put(struct sched__map *m, uint64_t h, void *v)
{
	map_insert(m->e, m->cap, h, v);
	m->n++;
}

void sched__map_del(struct sched__map *m, uint64_t h, const void *v)
{
	if (m->n == 0)
		return;
	uint32_t mask = m->cap - 1;
	uint32_t i = (uint32_t)h & mask;
	while (m->e[i].v != v) {
		if (m->e[i].v == NULL)
			return;
		i = (i + 1) & mask;
	}
	/* Backward shift: pull later entries of the run into the hole when
	 * their home slot is not after the hole. */
	uint32_t hole = i;
	for (uint32_t j = (i + 1) & mask; m->e[j].v != NULL; j = (j + 1) & mask) {
		uint32_t home = (uint32_t)m->e[j].h & mask;
		if (((j - home) & mask) >= ((j - hole) & mask)) {
			m->e[hole] = m->e[j];
			hole = j;
		}
	}
	m->e[hole].v = NULL;
	m->e[hole].h = 0;
	m->n--;
}

void sched__map_free(struct sched__map *m)
{
	aep_free(m->e);
	m->e = NULL;
	m->cap = m->n = 0;
}

/* ---- counters ------------------------------------------------------------ */

int64_t sched__cmap_get(const struct sched__cmap *m, uint64_t k)
{
	if (m->n == 0)
		return 0;
	uint32_t mask = m->cap - 1;
	for (uint32_t i = (uint32_t)sched__mix(k) & mask;; i = (i + 1) & mask) {
		if (m->e[i].k == k)
			return m->e[i].c;
		if (m->e[i].k == 0)
			return 0;
	}
}

static void cmap_insert(struct sched__cent *tab, uint32_t cap, uint64_t k, int64_t c)
{
	uint32_t mask = cap - 1;
	uint32_t i = (uint32_t)sched__mix(k) & mask;
	while (tab[i].k != 0)
		i = (i + 1) & mask;
	tab[i].k = k;
	tab[i].c = c;
}

int sched__cmap_reserve(struct sched__cmap *m, uint32_t extra)
{
	uint64_t need = (uint64_t)m->n + extra;
	if (need * 10 <= (uint64_t)m->cap * 7)
		return 0;
	uint64_t cap = m->cap ? m->cap : 8;
	while (need * 10 > cap * 7)
		cap *= 2;
	if (cap > ((uint64_t)1 << 31))
		return AEP_ENOMEM;
	struct sched__cent *tab = aep_calloc((size_t)cap, sizeof(*tab));
	if (tab == NULL)
		return AEP_ENOMEM;
	for (uint32_t i = 0; i < m->cap; i++)
		if (m->e[i].k != 0)
			cmap_insert(tab, (uint32_t)cap, m->e[i].k, m->e[i].c);
	aep_free(m->e);
	m->e = tab;
	m->cap = (uint32_t)cap;
	return 0;
}

void sched__cmap_add(struct sched__cmap *m, uint64_t k, int64_t delta)
{
	if (delta == 0 || m->cap == 0)
		return;
	uint32_t mask = m->cap - 1;
	uint32_t i = (uint32_t)sched__mix(k) & mask;
	while (m->e[i].k != k && m->e[i].k != 0)
		i = (i + 1) & mask;
	if (m->e[i].k == 0) {
		m->e[i].k = k;
		m->e[i].c = delta;
		m->n++;
		return;
	}
	m->e[i].c += delta;
	if (m->e[i].c != 0)
		return;
	uint32_t hole = i;
	for (uint32_t j = (i + 1) & mask; m->e[j].k != 0; j = (j + 1) & mask) {
		uint32_t home = (uint32_t)sched__mix(m->e[j].k) & mask;
		if (((j - home) & mask) >= ((j - hole) & mask)) {
			m->e[hole] = m->e[j];
			hole = j;
		}
	}
	m->e[hole].k = 0;
	m->e[hole].c = 0;
	m->n--;
}

void sched__cmap_free(struct sched__cmap *m)
{
	aep_free(m->e);
	m->e = NULL;
	m->cap = m->n = 0;
}
