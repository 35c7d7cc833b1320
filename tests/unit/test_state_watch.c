/* Watches: replay from a revision, expiry when the log was trimmed,
 * namespace and selector filters with Kubernetes transitions, unwatch and
 * watch from inside callbacks, expiry on restore. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "state/state.h"
#include "tests/unit/fixtures.h"

/* ---- helpers ------------------------------------------------------------ */

/* ---- a recording watcher ------------------------------------------------ */

#define REC_MAX 4096

struct rec {
	size_t n;
	int expired;
	struct {
		enum aep_event_type type;
		uint64_t rv;
		char name[64];
		char prev_labels[64]; /* "k=v,..." of ev->prev; "-" when NULL */
	} ev[REC_MAX];
	/* What to do from the callback. */
	struct aep_store *store;
	struct aep_watch **self; /* unwatch this after unwatch_after events */
	size_t unwatch_after;
	struct aep_watch **other; /* unwatch this one on the first event */
	bool unwatch_on_expire;
};

static void record(const struct aep_event *ev, void *data)
{
	struct rec *r = data;
	if (ev == NULL) {
		r->expired++;
		if (r->unwatch_on_expire && r->self != NULL && *r->self != NULL) {
			aep_store_unwatch(r->store, *r->self);
			*r->self = NULL;
		}
		return;
	}
	assert_true(r->n < REC_MAX);
	r->ev[r->n].type = ev->type;
	r->ev[r->n].rv = ev->rv;
	snprintf(r->ev[r->n].name, sizeof(r->ev[r->n].name), "%s", ev->obj->meta.name);
	char *pl = r->ev[r->n].prev_labels;
	size_t off = 0;
	snprintf(pl, 64, "-");
	for (size_t i = 0; ev->prev != NULL && i < ev->prev->meta.nlabels && off < 64; i++)
		off +=
		    (size_t)snprintf(pl + off, 64 - off, "%s%s=%s", i ? "," : "",
				     ev->prev->meta.labels[i].key, ev->prev->meta.labels[i].value);
	if (ev->prev != NULL && ev->prev->meta.nlabels == 0)
		pl[0] = '\0';
	r->n++;
	if (r->other != NULL && *r->other != NULL) {
		aep_store_unwatch(r->store, *r->other);
		*r->other = NULL;
	}
	if (r->self != NULL && *r->self != NULL && r->n == r->unwatch_after) {
		aep_store_unwatch(r->store, *r->self);
		*r->self = NULL;
	}
}

/* "ADDED a, MODIFIED a" */
static const char *rec_str(const struct rec *r, char *buf, size_t size)
{
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < r->n && off < size; i++)
		off += (size_t)snprintf(buf + off, size - off, "%s%s %s", i ? ", " : "",
					aep_event_type_name(r->ev[i].type), r->ev[i].name);
	return buf;
}

static struct aep_watch *watch(struct aep_store *s, enum aep_kind kind, const char *ns,
			       const char *selector, uint64_t from, struct rec *r)
{
	struct aep_watch *w = NULL;
	struct aep_error e = {0};
	assert_int_equal(aep_store_watch(s, kind, ns, selector ? fx_sel(selector) : NULL, from,
					 record, r, &w, &e),
			 0);
	assert_non_null(w);
	return w;
}

static void create_pod(struct aep_store *s, uint64_t index, const char *ns, const char *name,
		       const char *labels, const char *image)
{
	struct aep_buf b;
	char uid[32];
	aep_buf_init(&b);
	snprintf(uid, sizeof(uid), "uid-%llu", (unsigned long long)index);
	fx_pod(&b, ns, name, labels, NULL, image);
	struct aep_cmd c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b, 0, uid, 1);
	assert_int_equal(fx_apply1_code(s, index, &c), 0);
	aep_buf_free(&b);
}

static void update_pod(struct aep_store *s, uint64_t index, const char *ns, const char *name,
		       const char *labels, const char *image)
{
	struct aep_buf b;
	aep_buf_init(&b);
	fx_pod(&b, ns, name, labels, NULL, image);
	struct aep_cmd c = fx_cmd_obj(AEP_OP_UPDATE, AEP_KIND_POD, &b, 0, NULL, 1);
	assert_int_equal(fx_apply1_code(s, index, &c), 0);
	aep_buf_free(&b);
}

static void delete_pod(struct aep_store *s, uint64_t index, const char *ns, const char *name)
{
	struct aep_cmd c = fx_cmd_del(AEP_KIND_POD, ns, name, 0);
	assert_int_equal(fx_apply1_code(s, index, &c), 0);
}

/* ---- tests -------------------------------------------------------------- */

static void replay_from_revision(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	static struct rec all, from5, now, future;
	char buf[1024];
	memset(&all, 0, sizeof(all));
	memset(&from5, 0, sizeof(from5));
	memset(&now, 0, sizeof(now));
	memset(&future, 0, sizeof(future));

	/* index i creates p<i>; 10 events at revisions AEP_REV(i, 0). */
	for (uint64_t i = 1; i <= 10; i++) {
		char name[8];
		snprintf(name, sizeof(name), "p%llu", (unsigned long long)i);
		create_pod(s, i, "default", name, "app=web", "img");
	}
	struct aep_watch *w1 = watch(s, AEP_KIND_POD, NULL, NULL, 1, &all);
	struct aep_watch *w2 = watch(s, AEP_KIND_POD, NULL, NULL, AEP_REV(5, 0), &from5);
	struct aep_watch *w3 = watch(s, AEP_KIND_POD, NULL, NULL, 0, &now);
	struct aep_watch *w4 = watch(s, AEP_KIND_POD, NULL, NULL, aep_store_revision(s), &future);
	assert_int_equal(all.n, 10);
	for (size_t i = 0; i < 10; i++) {
		assert_int_equal(all.ev[i].type, AEP_EV_ADDED);
		assert_int_equal(all.ev[i].rv, AEP_REV(i + 1, 0));
	}
	assert_string_equal(rec_str(&from5, buf, sizeof(buf)),
			    "ADDED p6, ADDED p7, ADDED p8, ADDED p9, ADDED p10");
	assert_int_equal(now.n, 0);
	assert_int_equal(future.n, 0);

	/* Live events reach everyone once, after the replay. */
	update_pod(s, 11, "default", "p1", "app=web", "img:2");
	delete_pod(s, 12, "default", "p2");
	assert_int_equal(all.n, 12);
	assert_int_equal(all.ev[10].type, AEP_EV_MODIFIED);
	assert_int_equal(all.ev[10].rv, AEP_REV(11, 0));
	assert_int_equal(all.ev[11].type, AEP_EV_DELETED);
	assert_string_equal(all.ev[11].name, "p2");
	assert_string_equal(rec_str(&now, buf, sizeof(buf)), "MODIFIED p1, DELETED p2");
	assert_string_equal(rec_str(&future, buf, sizeof(buf)), "MODIFIED p1, DELETED p2");
	assert_int_equal(from5.n, 7);

	/* Replaying from the middle of an entry: only later positions. */
	struct aep_batch bt;
	struct aep_buf b1, b2;
	const char *data;
	size_t len;
	aep_batch_init(&bt);
	aep_buf_init(&b1);
	aep_buf_init(&b2);
	fx_pod(&b1, "default", "q1", NULL, NULL, "img");
	fx_pod(&b2, "default", "q2", NULL, NULL, "img");
	struct aep_cmd c1 = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b1, 0, "uq1", 1);
	struct aep_cmd c2 = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b2, 0, "uq2", 1);
	assert_int_equal(aep_batch_add(&bt, &c1), 0);
	assert_int_equal(aep_batch_add(&bt, &c2), 0);
	assert_int_equal(aep_batch_finish(&bt, &data, &len), 0);
	assert_int_equal(aep_store_apply(s, 13, data, len, NULL, NULL), 0);
	static struct rec mid;
	memset(&mid, 0, sizeof(mid));
	struct aep_watch *w5 = watch(s, AEP_KIND_POD, NULL, NULL, AEP_REV(13, 0), &mid);
	assert_string_equal(rec_str(&mid, buf, sizeof(buf)), "ADDED q2");

	aep_batch_free(&bt);
	aep_buf_free(&b1);
	aep_buf_free(&b2);
	aep_store_unwatch(s, w1);
	aep_store_unwatch(s, w2);
	aep_store_unwatch(s, w3);
	aep_store_unwatch(s, w4);
	aep_store_unwatch(s, w5);
	aep_store_free(s);
}

static void expired_when_log_trimmed(void **state)
{
	(void)state;
	struct aep_store_config cfg = {.event_log_max = 4};
	struct aep_store *s;
	struct aep_watch *w = NULL;
	struct aep_error e = {0};
	static struct rec r;
	char buf[256];
	memset(&r, 0, sizeof(r));
	assert_int_equal(aep_store_new(&cfg, &s), 0);
	for (uint64_t i = 1; i <= 10; i++) {
		char name[8];
		snprintf(name, sizeof(name), "p%llu", (unsigned long long)i);
		create_pod(s, i, "default", name, NULL, "img");
	}
	/* The log holds events 7..10: from 6 on is complete, before is not. */
	assert_int_equal(
	    aep_store_watch(s, AEP_KIND_POD, NULL, NULL, AEP_REV(5, 0), record, &r, &w, &e),
	    AEP_EEXPIRED);
	assert_null(w);
	assert_int_equal(e.code, AEP_EEXPIRED);
	assert_non_null(strstr(e.msg, "too old resource version"));
	assert_int_equal(
	    aep_store_watch(s, AEP_KIND_POD, NULL, fx_sel("app=x"), 1, record, &r, &w, &e),
	    AEP_EEXPIRED);
	assert_int_equal(r.n, 0);
	w = watch(s, AEP_KIND_POD, NULL, NULL, AEP_REV(6, 0), &r);
	assert_string_equal(rec_str(&r, buf, sizeof(buf)),
			    "ADDED p7, ADDED p8, ADDED p9, ADDED p10");
	aep_store_unwatch(s, w);
	aep_store_free(s);
}

static void filters_and_selector_transitions(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	static struct rec web, sys, svc, notweb;
	char buf[1024];
	memset(&web, 0, sizeof(web));
	memset(&sys, 0, sizeof(sys));
	memset(&svc, 0, sizeof(svc));
	memset(&notweb, 0, sizeof(notweb));
	struct aep_watch *w1 = watch(s, AEP_KIND_POD, "default", "app=web", 0, &web);
	struct aep_watch *w2 = watch(s, AEP_KIND_POD, "kube-system", NULL, 0, &sys);
	struct aep_watch *w3 = watch(s, AEP_KIND_SERVICE, NULL, NULL, 0, &svc);
	struct aep_watch *w4 = watch(s, AEP_KIND_POD, NULL, "app!=web", 0, &notweb);
	uint64_t i = 1;
	create_pod(s, i++, "default", "a", "app=db", "img"); /* not web */
	create_pod(s, i++, "kube-system", "k", "app=web", "img");
	update_pod(s, i++, "default", "a", "app=web", "img");	/* enters: ADDED */
	update_pod(s, i++, "default", "a", "app=web", "img:2"); /* MODIFIED */
	update_pod(s, i++, "default", "a", "app=db", "img:2");	/* leaves: DELETED */
	update_pod(s, i++, "default", "a", "app=db", "img:3");	/* outside: nothing */
	update_pod(s, i++, "default", "a", "app=web", "img:3"); /* ADDED */
	delete_pod(s, i++, "default", "a");			/* DELETED */
	delete_pod(s, i++, "kube-system", "k");
	struct aep_buf b;
	aep_buf_init(&b);
	fx_simple(&b, "Service", "default", "a", "app=web");
	struct aep_cmd c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_SERVICE, &b, 0, "svc", 1);
	assert_int_equal(fx_apply1_code(s, i++, &c), 0);
	aep_buf_free(&b);
	assert_string_equal(rec_str(&web, buf, sizeof(buf)),
			    "ADDED a, MODIFIED a, DELETED a, ADDED a, DELETED a");
	assert_int_equal(web.ev[2].rv, AEP_REV(5, 0));
	assert_string_equal(rec_str(&sys, buf, sizeof(buf)), "ADDED k, DELETED k");
	assert_string_equal(rec_str(&svc, buf, sizeof(buf)), "ADDED a");
	assert_string_equal(rec_str(&notweb, buf, sizeof(buf)),
			    "ADDED a, DELETED a, ADDED a, MODIFIED a, DELETED a");

	/* The same transitions on replay. */
	static struct rec replay;
	memset(&replay, 0, sizeof(replay));
	struct aep_watch *w5 = watch(s, AEP_KIND_POD, "default", "app=web", 1, &replay);
	assert_string_equal(rec_str(&replay, buf, sizeof(buf)),
			    "ADDED a, MODIFIED a, DELETED a, ADDED a, DELETED a");
	aep_store_unwatch(s, w1);
	aep_store_unwatch(s, w2);
	aep_store_unwatch(s, w3);
	aep_store_unwatch(s, w4);
	aep_store_unwatch(s, w5);
	aep_store_free(s);
}

static void unwatch_inside_callback(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	static struct rec self, killer, victim, after;
	memset(&self, 0, sizeof(self));
	memset(&killer, 0, sizeof(killer));
	memset(&victim, 0, sizeof(victim));
	memset(&after, 0, sizeof(after));
	struct aep_watch *ws = watch(s, AEP_KIND_POD, NULL, NULL, 0, &self);
	self.store = s;
	self.self = &ws;
	self.unwatch_after = 2;
	struct aep_watch *wk = watch(s, AEP_KIND_POD, NULL, NULL, 0, &killer);
	struct aep_watch *wv = watch(s, AEP_KIND_POD, NULL, NULL, 0, &victim);
	struct aep_watch *wa = watch(s, AEP_KIND_POD, NULL, NULL, 0, &after);
	/* killer sits before victim: victim never hears a thing. */
	killer.store = s;
	killer.other = &wv;

	for (uint64_t i = 1; i <= 4; i++) {
		char name[8];
		snprintf(name, sizeof(name), "p%llu", (unsigned long long)i);
		create_pod(s, i, "default", name, NULL, "img");
	}
	assert_null(ws);
	assert_null(wv);
	assert_int_equal(self.n, 2);
	assert_int_equal(killer.n, 4);
	assert_int_equal(victim.n, 0);
	assert_int_equal(after.n, 4);

	aep_store_unwatch(s, wk);
	aep_store_unwatch(s, wa);
	aep_store_free(s);
}

/* A callback that starts a second watch, from revision 1, on its first
 * event: the new watch replays everything up to the current event once and
 * is not handed the current event a second time. */
struct nester {
	struct aep_store *store;
	struct aep_watch *inner;
	struct rec inner_rec;
	size_t calls;
};

static void nest(const struct aep_event *ev, void *data)
{
	struct nester *n = data;
	if (ev == NULL)
		return;
	if (n->calls++ == 1)
		n->inner = watch(n->store, AEP_KIND_POD, NULL, NULL, 1, &n->inner_rec);
}

static void watch_from_inside_callback(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	static struct nester n;
	struct aep_watch *w = NULL;
	struct aep_error e = {0};
	char buf[256];
	memset(&n, 0, sizeof(n));
	n.store = s;
	assert_int_equal(aep_store_watch(s, AEP_KIND_POD, NULL, NULL, 0, nest, &n, &w, &e), 0);
	create_pod(s, 1, "default", "a", NULL, "img");
	create_pod(s, 2, "default", "b", NULL, "img");
	create_pod(s, 3, "default", "c", NULL, "img");
	assert_non_null(n.inner);
	assert_string_equal(rec_str(&n.inner_rec, buf, sizeof(buf)), "ADDED a, ADDED b, ADDED c");
	aep_store_unwatch(s, n.inner);
	aep_store_unwatch(s, w);
	aep_store_free(s);
}

static void restore_expires_watches(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store(), *other = fx_new_store();
	struct aep_buf snapshot;
	struct aep_error e = {0};
	static struct rec keep, drop;
	aep_buf_init(&snapshot);
	memset(&keep, 0, sizeof(keep));
	memset(&drop, 0, sizeof(drop));
	create_pod(other, 1, "default", "x", NULL, "img");
	create_pod(other, 2, "default", "y", NULL, "img");
	fx_snap(other, &snapshot);

	struct aep_watch *wk = watch(s, AEP_KIND_POD, NULL, NULL, 0, &keep);
	struct aep_watch *wd = watch(s, AEP_KIND_POD, NULL, NULL, 0, &drop);
	drop.store = s;
	drop.self = &wd;
	drop.unwatch_on_expire = true;
	assert_int_equal(aep_store_restore(s, snapshot.data, snapshot.len, &e), 0);
	assert_int_equal(keep.expired, 1);
	assert_int_equal(drop.expired, 1);
	assert_null(wd);
	/* An expired watch hears no more; new watches start from the
	 * snapshot's revision. */
	create_pod(s, 3, "default", "z", NULL, "img");
	assert_int_equal(keep.n, 0);
	struct aep_watch *w = NULL;
	static struct rec r;
	memset(&r, 0, sizeof(r));
	assert_int_equal(
	    aep_store_watch(s, AEP_KIND_POD, NULL, NULL, AEP_REV(1, 0), record, &r, &w, &e),
	    AEP_EEXPIRED);
	w = watch(s, AEP_KIND_POD, NULL, NULL, AEP_REV(2, 0), &r);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.ev[0].name, "z");
	aep_store_unwatch(s, w);
	aep_store_unwatch(s, wk);
	aep_buf_free(&snapshot);
	aep_store_free(s);
	aep_store_free(other);
}

static void watch_survives_allocation_failure(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	static struct rec r;
	create_pod(s, 1, "default", "a", "app=web", "img");
	for (long n = 1;; n++) {
		struct aep_watch *w = NULL;
		struct aep_error e = {0};
		struct aep_selector *se = fx_sel("app=web");
		memset(&r, 0, sizeof(r));
		aep_heap_fault_after(n);
		int rv = aep_store_watch(s, AEP_KIND_POD, "default", se, 1, record, &r, &w, &e);
		aep_heap_fault_off();
		if (rv == 0) {
			assert_int_equal(r.n, 1);
			aep_store_unwatch(s, w);
			break;
		}
		assert_int_equal(rv, AEP_ENOMEM);
		assert_int_equal(r.n, 0);
		assert_true(n < 100);
	}
	aep_store_free(s);
}

/* A MODIFIED event carries the object as it was, so a controller can tell
 * what changed; other events, and MODIFIED turned into ADDED/DELETED by a
 * selector, carry none. Replays carry it too. */
static void modified_carries_previous_object(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	struct rec *all = calloc(1, sizeof(*all)), *sel = calloc(1, sizeof(*sel)),
		   *replay = calloc(1, sizeof(*replay));
	struct aep_watch *w1 = watch(s, AEP_KIND_POD, NULL, NULL, 0, all);
	struct aep_watch *w2 = watch(s, AEP_KIND_POD, NULL, "app=web", 0, sel);
	create_pod(s, 1, "default", "a", "app=web", "img");
	update_pod(s, 2, "default", "a", "app=web,v=2", "img");
	update_pod(s, 3, "default", "a", "app=db", "img");
	delete_pod(s, 4, "default", "a");
	assert_int_equal(all->n, 4);
	assert_string_equal(all->ev[0].prev_labels, "-");
	assert_string_equal(all->ev[1].prev_labels, "app=web");
	assert_string_equal(all->ev[2].prev_labels, "app=web,v=2");
	assert_string_equal(all->ev[3].prev_labels, "-");
	assert_int_equal(sel->n, 3); /* ADDED, MODIFIED, DELETED (moved out) */
	assert_string_equal(sel->ev[1].prev_labels, "app=web");
	assert_int_equal(sel->ev[2].type, AEP_EV_DELETED);
	assert_string_equal(sel->ev[2].prev_labels, "-");
	struct aep_watch *w3 = watch(s, AEP_KIND_POD, NULL, NULL, all->ev[0].rv, replay);
	assert_int_equal(replay->n, 3);
	assert_string_equal(replay->ev[0].prev_labels, "app=web");
	aep_store_unwatch(s, w1);
	aep_store_unwatch(s, w2);
	aep_store_unwatch(s, w3);
	free(all);
	free(sel);
	free(replay);
	aep_store_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(replay_from_revision),
	    cmocka_unit_test(expired_when_log_trimmed),
	    cmocka_unit_test(filters_and_selector_transitions),
	    cmocka_unit_test(unwatch_inside_callback),
	    cmocka_unit_test(watch_from_inside_callback),
	    cmocka_unit_test(restore_expires_watches),
	    cmocka_unit_test(watch_survives_allocation_failure),
	    cmocka_unit_test(modified_carries_previous_object),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
