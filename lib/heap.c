/* The one heap. Every AEP allocation goes through here so that tests can
 * make the Nth allocation fail (SQLite's fault.c idea) and check that the
 * caller reports a clean error and leaks nothing. */
#include "lib/lib.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic long fault_countdown; /* 0: off; n: the nth call fails */
static _Atomic long fault_hits;

static bool fault_now(void)
{
	long n = atomic_load_explicit(&fault_countdown, memory_order_relaxed);
	if (n <= 0)
		return false;
	if (n == 1) {
		atomic_fetch_add(&fault_hits, 1);
		return true; /* stays at 1: every later allocation fails too */
	}
	atomic_fetch_sub(&fault_countdown, 1);
	return false;
}

void aep_heap_fault_after(long n)
{
	atomic_store(&fault_hits, 0);
	atomic_store(&fault_countdown, n > 0 ? n : 0);
}

void aep_heap_fault_off(void)
{
	atomic_store(&fault_countdown, 0);
}

long aep_heap_fault_count(void)
{
	return atomic_load(&fault_hits);
}

void *aep_malloc(size_t size)
{
	if (fault_now())
		return NULL;
	return malloc(size == 0 ? 1 : size);
}

void *aep_calloc(size_t n, size_t size)
{
	if (fault_now())
		return NULL;
	if (n == 0 || size == 0)
		return calloc(1, 1);
	return calloc(n, size);
}

void *aep_realloc(void *ptr, size_t size)
{
	if (fault_now())
		return NULL;
	return realloc(ptr, size == 0 ? 1 : size);
}

void aep_free(void *ptr)
{
	free(ptr);
}

char *aep_strndup(const char *s, size_t n)
{
	char *p = aep_malloc(n + 1);
	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *aep_strdup(const char *s)
{
	return aep_strndup(s, strlen(s));
}
