/* fuzz_apply: Raft entries into aep_store_apply().
 *
 * The input is applied twice: whole, as the entry at index 1 of a fresh
 * store; then split at every 0xFF 0xFE marker into at most eight chunks
 * that are applied as entries 1, 2, ... of another fresh store (so that
 * updates and deletes find what earlier entries created). Two watches
 * (all pods; services labelled app=web) see every event.
 *
 * Checked promises (a broken one traps): a refused entry changes nothing
 * (same snapshot bytes, same applied index); an applied one moves the
 * applied index to its own; one result per command, with no message on
 * success; events arrive in revision order, stamped with the entry's
 * index; and the store's snapshot restores into a new store whose own
 * snapshot is byte-identical. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "state/state.h"

#define CHECK(cond)                       \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

#define MAX_CHUNKS 8

/* Say which promise broke, then trap. */
__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("fuzz_apply: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	__builtin_trap();
}

/* A small event log (the default rings 100000 events, allocated up front):
 * cheaper per run, and the log wraps within one input. */
static const struct aep_store_config cfg = {.event_log_max = 64};

struct watch_seen {
	uint64_t index; /* the entry being applied */
	uint64_t last_rv;
	unsigned events;
};

static void on_event(const struct aep_event *ev, void *data)
{
	struct watch_seen *w = data;

	/* No restore happens under these watches: they never expire. */
	CHECK(ev != NULL && ev->obj != NULL);
	CHECK(ev->rv > w->last_rv && AEP_REV_INDEX(ev->rv) == w->index);
	CHECK(ev->type >= AEP_EV_ADDED && ev->type <= AEP_EV_DELETED);
	w->last_rv = ev->rv;
	w->events++;
}

static void snap(struct aep_store *s, struct aep_buf *b)
{
	aep_buf_reset(b);
	CHECK(aep_store_snapshot(s, b) == 0);
}

/* Apply one entry and check what the result promises. */
static void apply_one(struct aep_store *s, uint64_t index, const uint8_t *p, size_t len,
		      struct watch_seen *ws, size_t nws)
{
	struct aep_buf before, after;
	struct aep_result *res;
	size_t n;
	uint64_t applied = aep_store_applied_index(s);

	aep_buf_init(&before);
	aep_buf_init(&after);
	snap(s, &before);
	for (size_t i = 0; i < nws; i++)
		ws[i].index = index;
	int rv = aep_store_apply(s, index, (const char *)p, len, &res, &n);
	if (rv != 0) {
		CHECK(rv == AEP_EINVALID);
		CHECK(res == NULL && n == 0);
		CHECK(aep_store_applied_index(s) == applied);
		snap(s, &after);
		CHECK(before.len == after.len && memcmp(before.data, after.data, before.len) == 0);
	} else {
		CHECK(aep_store_applied_index(s) == index);
		CHECK(n <= AEP_BATCH_MAX && (n == 0 || res != NULL));
		for (size_t i = 0; i < n; i++) {
			CHECK((res[i].code == 0) == (res[i].msg == NULL));
			if (res[i].code == 0 && res[i].obj != NULL)
				CHECK(res[i].rv == AEP_REV(index, i) &&
				      res[i].obj->meta.rv == res[i].rv);
			aep_result_clear(&res[i]);
		}
		aep_free(res);
	}
	aep_buf_free(&after);
	aep_buf_free(&before);
}

/* Snapshot @s, restore into a new store, snapshot that: same bytes. */
static void check_roundtrip(struct aep_store *s)
{
	struct aep_error e = {0};
	struct aep_store *t;
	struct aep_buf a, b;

	aep_buf_init(&a);
	aep_buf_init(&b);
	snap(s, &a);
	CHECK(aep_store_new(&cfg, &t) == 0);
	if (aep_store_restore(t, a.data, a.len, &e) != 0)
		fail("the store's own snapshot does not restore: %s", e.msg);
	if (aep_store_revision(t) != aep_store_revision(s) ||
	    aep_store_applied_index(t) != aep_store_applied_index(s))
		fail("revision %llu/%llu, applied %llu/%llu after restore",
		     (unsigned long long)aep_store_revision(t),
		     (unsigned long long)aep_store_revision(s),
		     (unsigned long long)aep_store_applied_index(t),
		     (unsigned long long)aep_store_applied_index(s));
	for (int k = 0; k < AEP_KIND__COUNT; k++)
		if (aep_store_count(t, (enum aep_kind)k) != aep_store_count(s, (enum aep_kind)k))
			fail("%s: %zu objects after restore, %zu before",
			     aep_kind_info((enum aep_kind)k)->name,
			     aep_store_count(t, (enum aep_kind)k),
			     aep_store_count(s, (enum aep_kind)k));
	snap(t, &b);
	if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
		fail("the restored store's snapshot differs (%zu bytes, %zu before)", b.len, a.len);
	aep_store_free(t);
	aep_buf_free(&b);
	aep_buf_free(&a);
}

static struct aep_store *store_with_watches(struct watch_seen *ws, struct aep_watch **w)
{
	struct aep_error e = {0};
	struct aep_selector *sel;
	struct aep_store *s;

	CHECK(aep_store_new(&cfg, &s) == 0);
	memset(ws, 0, 2 * sizeof(*ws));
	CHECK(aep_store_watch(s, AEP_KIND_POD, NULL, NULL, 0, on_event, &ws[0], &w[0], &e) == 0);
	CHECK(aep_selector_parse("app=web", 7, &sel, &e) == 0);
	CHECK(aep_store_watch(s, AEP_KIND_SERVICE, NULL, sel, 0, on_event, &ws[1], &w[1], &e) == 0);
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct watch_seen ws[2];
	struct aep_watch *w[2];
	struct aep_store *s;

	/* The whole input as one entry. */
	s = store_with_watches(ws, w);
	apply_one(s, 1, data, size, ws, 2);
	check_roundtrip(s);
	aep_store_unwatch(s, w[0]);
	aep_store_unwatch(s, w[1]);
	aep_store_free(s);

	/* The input as consecutive entries. */
	size_t start[MAX_CHUNKS], len[MAX_CHUNKS], nchunks = 0, off = 0;
	bool split = false;
	for (size_t i = 0; i + 1 < size && nchunks < MAX_CHUNKS - 1; i++) {
		if (data[i] == 0xff && data[i + 1] == 0xfe) {
			start[nchunks] = off;
			len[nchunks] = i - off;
			nchunks++;
			off = i + 2;
			i++;
			split = true;
		}
	}
	if (!split)
		return 0;
	start[nchunks] = off;
	len[nchunks] = size - off;
	nchunks++;

	s = store_with_watches(ws, w);
	for (size_t i = 0; i < nchunks; i++)
		apply_one(s, i + 1, data + start[i], len[i], ws, 2);
	check_roundtrip(s);
	/* An index not above the applied one (0 when nothing applied) is
	 * refused without a change. */
	apply_one(s, aep_store_applied_index(s), data, size, ws, 2);
	aep_store_unwatch(s, w[0]);
	aep_store_unwatch(s, w[1]);
	aep_store_free(s);
	return 0;
}
