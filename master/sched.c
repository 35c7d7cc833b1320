/* master: the scheduler's leader loop and the plan method.
 *
 * While this master is leader, a scheduler (scheduler/) is fed by store
 * watches on nodes, pods, namespaces, services and replication
 * controllers, seeded from a list of each taken on the same loop turn, so
 * nothing falls between list and watch. An idle handle places due pods in
 * batches of MS_BATCH and submits one bind command per placement; the
 * group commit packs the bindings that queue up while an entry is in flight
 * into the next one. At most MS_INFLIGHT bindings are unanswered at a
 * time, so a large backlog never floods Raft's queue. A bind the store
 * refuses (the pod was deleted, re-created, or bound by a previous leader
 * whose entry committed late) is handed back to the scheduler, which
 * forgets its assumption; the store's rule that a pod is bound only once
 * makes a double binding impossible whatever the leaders do.
 *
 * A pod that fits nowhere is retried with backoff, and its Event
 * "<pod>.failed-scheduling" (reason FailedScheduling) is created or
 * updated with the scheduler's explanation and a count.
 *
 * Leadership lost: the watches end, the scheduler is freed with its cache;
 * bindings still in flight answer later and are ignored (their epoch is
 * over). The next leader rebuilds everything from its own store. */
#include "cli/cli.h"
#include "master/master-int.h"
#include "scheduler/scheduler.h"

#include <stdio.h>
#include <string.h>

#define MS_BATCH      1024  /* pods placed per loop turn */
#define MS_INFLIGHT   16384 /* bindings submitted and not yet answered */
#define PLAN_PODS_MAX 10000 /* pods one plan call may place */
/* FailedScheduling events: at most EVENT_BURST at once, refilled at
 * EVENT_RATE per second. Thousands of pods that fit nowhere (a cluster
 * without room, a typo in a selector) must not turn into thousands of
 * Raft writes a second; a pod whose event is skipped still retries, and
 * its event is written at a later failure. */
#define EVENT_RATE  100
#define EVENT_BURST 500

static const enum aep_kind watched[] = {AEP_KIND_NAMESPACE, AEP_KIND_NODE, AEP_KIND_SERVICE,
					AEP_KIND_RC, AEP_KIND_POD};
#define NWATCHED (sizeof(watched) / sizeof(watched[0]))

struct master_sched {
	struct master *m;
	struct aep_sched *s;
	struct aep_watch *w[NWATCHED];
	uv_idle_t idle;
	uv_timer_t timer;
	unsigned open_handles;
	bool rebuild; /* a watch expired or the cache missed an event */
	size_t inflight;
	double event_tokens;
	int64_t event_refill_ns;
	struct aep_sched_binding bind[MS_BATCH];
	struct aep_sched_failure fail[MS_BATCH];
};

/* A binding or event write in flight: @epoch tells whether the scheduler
 * that issued it still runs. */
struct sched_write {
	struct master *m;
	uint64_t epoch;
	bool binding;
	char ns[AEP_NAME_MAX + 1];
	char name[AEP_NAME_MAX + 1];
	char uid[40];
};

static void kick(struct master_sched *ms);

/* ---- cache feed ----------------------------------------------------------- */

static void on_event(const struct aep_event *ev, void *data)
{
	struct master_sched *ms = data;
	if (ev == NULL || aep_sched_observe(ms->s, ev->type, ev->obj) == AEP_ENOMEM)
		ms->rebuild = true;
	kick(ms);
}

struct seed {
	struct aep_sched *s;
	int err;
};

static int seed_visit(const struct aep_object *o, void *data)
{
	struct seed *sd = data;
	int rv = aep_sched_observe(sd->s, AEP_EV_ADDED, o);
	if (rv == AEP_ENOMEM) {
		sd->err = rv;
		return 1;
	}
	return 0;
}

static void unwatch_all(struct master_sched *ms)
{
	for (size_t i = 0; i < NWATCHED; i++) {
		if (ms->w[i] != NULL)
			aep_store_unwatch(ms->m->store, ms->w[i]);
		ms->w[i] = NULL;
	}
}

/* (Re)build the cache from the store and watch from now on. On failure
 * the scheduler is left empty and @ms->rebuild set, to try again. */
static int build(struct master_sched *ms)
{
	struct master *m = ms->m;
	struct aep_sched_policy *p = NULL;
	struct aep_sched *s = NULL;
	struct aep_error e = {0};
	int rv;

	unwatch_all(ms);
	aep_sched_free(ms->s);
	ms->s = NULL;
	ms->rebuild = true;
	m->sched_epoch++; /* bindings in flight belong to the old cache */
	ms->inflight = 0;
	if (m->sched_policy_doc.len > 0) {
		msgpack_zone zone;
		msgpack_object doc;
		msgpack_zone_init(&zone, 4096);
		rv = aep_mp_unpack(m->sched_policy_doc.data, m->sched_policy_doc.len, &zone, &doc,
				   &e);
		if (rv == 0)
			rv = aep_sched_policy_parse(&doc, &p, &e);
		msgpack_zone_destroy(&zone);
	} else {
		rv = aep_sched_policy_default(&p);
	}
	if (rv != 0)
		return rv;
	rv = aep_sched_new(p, &s);
	if (rv != 0)
		return rv;
	for (size_t i = 0; i < NWATCHED; i++) {
		struct seed sd = {s, 0};
		aep_store_list(m->store, watched[i], NULL, NULL, seed_visit, &sd);
		if (sd.err != 0) {
			aep_sched_free(s);
			return sd.err;
		}
	}
	ms->s = s;
	for (size_t i = 0; i < NWATCHED; i++) {
		rv = aep_store_watch(m->store, watched[i], NULL, NULL, 0, on_event, ms, &ms->w[i],
				     &e);
		if (rv != 0) {
			unwatch_all(ms);
			aep_sched_free(ms->s);
			ms->s = NULL;
			return rv;
		}
	}
	ms->rebuild = false;
	return 0;
}

/* ---- failure events ------------------------------------------------------- */

static void event_done(void *data, const struct aep_result *res)
{
	struct sched_write *w = data;
	if (res->code != 0 && res->code != AEP_ECONFLICT && res->code != AEP_EEXISTS &&
	    res->code != AEP_ECANCELED && res->code != AEP_EUNAVAILABLE)
		fprintf(stderr, "aep master %s: event for pod %s/%s: %s\n", w->m->name, w->ns,
			w->name, res->msg != NULL ? res->msg : aep_err_code(res->code));
	aep_free(w);
}

/* The count and first time of @ev, an Event about the pod with @uid;
 * false when it is about another pod (or unreadable). */
static bool event_prior(const struct aep_object *ev, const char *uid, int64_t *count,
			int64_t *first_ns)
{
	msgpack_zone zone;
	msgpack_object o;
	bool same = false;
	msgpack_zone_init(&zone, 2048);
	struct aep_error e = {0};
	if (aep_mp_unpack(ev->data, ev->len, &zone, &o, &e) == 0) {
		const msgpack_object *inv = aep_mp_map_get(&o, "involvedObject");
		const msgpack_object *c = aep_mp_map_get(&o, "count");
		const msgpack_object *f = aep_mp_map_get(&o, "firstTimestamp");
		same = aep_mp_str_eq(aep_mp_map_get(inv, "uid"), uid);
		if (c != NULL && c->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
			*count = (int64_t)c->via.u64;
		if (f != NULL && f->type == MSGPACK_OBJECT_STR)
			(void)aep_time_parse(f->via.str.ptr, f->via.str.size, first_ns);
	}
	msgpack_zone_destroy(&zone);
	return same;
}

/* Take one event token (see EVENT_RATE); false when none is left. */
static bool event_token(struct master_sched *ms)
{
	int64_t now = aep_now_monotonic_ns();
	ms->event_tokens += (double)(now - ms->event_refill_ns) * EVENT_RATE / 1e9;
	if (ms->event_tokens > EVENT_BURST)
		ms->event_tokens = EVENT_BURST;
	ms->event_refill_ns = now;
	if (ms->event_tokens < 1)
		return false;
	ms->event_tokens -= 1;
	return true;
}

/* Create or update the pod's FailedScheduling event. Best effort: a write
 * that fails or is over the rate is made at the pod's next failure. */
static void record_failure(struct master_sched *ms, const struct aep_object *pod, const char *msg)
{
	struct master *m = ms->m;
	char name[AEP_NAME_MAX + 1], now_s[40], first_s[40];
	int64_t now = aep_now_realtime_ns(), first = now, count = 0;
	struct aep_object *ev = NULL, *prior;
	struct aep_error e = {0};
	struct aep_buf b;
	msgpack_packer pk;

	snprintf(name, sizeof(name), "%.*s.failed-scheduling", AEP_NAME_MAX - 18, pod->meta.name);
	prior = aep_store_get(m->store, AEP_KIND_EVENT, pod->meta.ns, name);
	if (prior != NULL && !event_prior(prior, pod->meta.uid, &count, &first)) {
		count = 0;
		first = now;
	}
	aep_time_format(now, now_s, sizeof(now_s));
	aep_time_format(first, first_s, sizeof(first_s));
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 10);
	aep_pack_str(&pk, "kind");
	aep_pack_str(&pk, "Event");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, name);
	aep_pack_str(&pk, "namespace");
	aep_pack_str(&pk, pod->meta.ns);
	aep_pack_str(&pk, "involvedObject");
	msgpack_pack_map(&pk, 4);
	aep_pack_str(&pk, "kind");
	aep_pack_str(&pk, "Pod");
	aep_pack_str(&pk, "namespace");
	aep_pack_str(&pk, pod->meta.ns);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, pod->meta.name);
	aep_pack_str(&pk, "uid");
	aep_pack_str(&pk, pod->meta.uid);
	aep_pack_str(&pk, "reason");
	aep_pack_str(&pk, "FailedScheduling");
	aep_pack_str(&pk, "message");
	aep_pack_str(&pk, msg);
	aep_pack_str(&pk, "type");
	aep_pack_str(&pk, "Warning");
	aep_pack_str(&pk, "count");
	msgpack_pack_int64(&pk, count + 1);
	aep_pack_str(&pk, "firstTimestamp");
	aep_pack_str(&pk, first_s);
	aep_pack_str(&pk, "lastTimestamp");
	aep_pack_str(&pk, now_s);
	aep_pack_str(&pk, "source");
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "component");
	aep_pack_str(&pk, "scheduler");
	aep_pack_str(&pk, "host");
	aep_pack_str(&pk, m->name);
	if (b.failed || aep_object_decode(b.data, b.len, &ev, &e) != 0)
		goto out;
	struct sched_write *w = aep_calloc(1, sizeof(*w));
	if (w == NULL)
		goto out;
	w->m = m;
	w->epoch = m->sched_epoch;
	snprintf(w->ns, sizeof(w->ns), "%s", pod->meta.ns);
	snprintf(w->name, sizeof(w->name), "%s", pod->meta.name);
	struct aep_cmd cmd = {
	    .op = prior != NULL ? AEP_OP_UPDATE : AEP_OP_CREATE,
	    .kind = AEP_KIND_EVENT,
	    .precond_rv = prior != NULL ? prior->meta.rv : 0,
	    .now_ns = now,
	    .obj = ev->data,
	    .obj_len = ev->len,
	};
	if ((prior == NULL && master__uuid4(m, cmd.uid) != 0) ||
	    aep_raft_submit(m->raft, &cmd, event_done, w) != 0)
		aep_free(w);
out:
	aep_object_unref(ev);
	aep_object_unref(prior);
	aep_buf_free(&b);
}

/* ---- bindings --------------------------------------------------------------- */

static void bind_done(void *data, const struct aep_result *res)
{
	struct sched_write *w = data;
	struct master *m = w->m;
	struct master_sched *ms = m->sched;
	if (ms != NULL && w->epoch == m->sched_epoch) {
		ms->inflight--;
		if (res->code == 0) {
			m->sched_bound++;
		} else {
			m->sched_refused++;
			aep_sched_forget(ms->s, w->ns, w->name, w->uid);
		}
		kick(ms);
	}
	aep_free(w);
}

static void submit_binding(struct master_sched *ms, const struct aep_sched_binding *b)
{
	struct master *m = ms->m;
	const struct aep_object *pod = b->pod;
	struct sched_write *w = aep_calloc(1, sizeof(*w));
	if (w != NULL) {
		w->m = m;
		w->epoch = m->sched_epoch;
		w->binding = true;
		snprintf(w->ns, sizeof(w->ns), "%s", pod->meta.ns);
		snprintf(w->name, sizeof(w->name), "%s", pod->meta.name);
		snprintf(w->uid, sizeof(w->uid), "%s", pod->meta.uid);
		struct aep_cmd cmd = {
		    .op = AEP_OP_BIND,
		    .kind = AEP_KIND_POD,
		    .ns = pod->meta.ns,
		    .name = pod->meta.name,
		    .node = b->node,
		    .now_ns = aep_now_realtime_ns(),
		};
		memcpy(cmd.uid, w->uid, sizeof(cmd.uid));
		if (aep_raft_submit(m->raft, &cmd, bind_done, w) == 0) {
			ms->inflight++;
			return;
		}
		aep_free(w);
	}
	aep_sched_forget(ms->s, pod->meta.ns, pod->meta.name, pod->meta.uid);
}

/* ---- the loop ------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
	kick(t->data);
}

static void on_idle(uv_idle_t *h)
{
	struct master_sched *ms = h->data;
	size_t nb = 0, nf = 0;

	if (ms->rebuild && build(ms) != 0) {
		/* Out of memory or no policy: try again in a second. */
		uv_idle_stop(&ms->idle);
		uv_timer_start(&ms->timer, on_timer, 1000, 0);
		return;
	}
	if (ms->inflight >= MS_INFLIGHT) {
		uv_idle_stop(&ms->idle); /* bind_done kicks */
		return;
	}
	size_t max = MS_INFLIGHT - ms->inflight;
	if (max > MS_BATCH)
		max = MS_BATCH;
	int64_t now = aep_now_monotonic_ns();
	if (aep_sched_run(ms->s, now, max, ms->bind, &nb, ms->fail, &nf) != 0) {
		uv_idle_stop(&ms->idle);
		uv_timer_start(&ms->timer, on_timer, 100, 0);
		return;
	}
	for (size_t i = 0; i < nb; i++) {
		submit_binding(ms, &ms->bind[i]);
		aep_object_unref(ms->bind[i].pod);
	}
	for (size_t i = 0; i < nf; i++) {
		ms->m->sched_failed++;
		if (event_token(ms))
			record_failure(ms, ms->fail[i].pod, ms->fail[i].message);
		else
			ms->m->sched_events_skipped++;
		aep_object_unref(ms->fail[i].pod);
		aep_free(ms->fail[i].message);
	}
	if (nb + nf < max) {
		/* Nothing more is due now: sleep until the next backoff ends
		 * or an event kicks. */
		uv_idle_stop(&ms->idle);
		int64_t due = aep_sched_next_due(ms->s);
		if (due != INT64_MAX) {
			int64_t ms_left = (due - aep_now_monotonic_ns()) / 1000000 + 1;
			uv_timer_start(&ms->timer, on_timer, ms_left > 0 ? (uint64_t)ms_left : 0,
				       0);
		}
	}
}

static void kick(struct master_sched *ms)
{
	if (ms->inflight < MS_INFLIGHT)
		uv_idle_start(&ms->idle, on_idle);
}

int master__sched_start(struct master *m)
{
	struct master_sched *ms = aep_calloc(1, sizeof(*ms));
	if (ms == NULL)
		return AEP_ENOMEM;
	ms->m = m;
	ms->event_tokens = EVENT_BURST;
	ms->event_refill_ns = aep_now_monotonic_ns();
	uv_idle_init(m->loop, &ms->idle);
	uv_timer_init(m->loop, &ms->timer);
	ms->idle.data = ms;
	ms->timer.data = ms;
	ms->open_handles = 2;
	m->sched = ms;
	int rv = build(ms);
	if (rv != 0)
		fprintf(stderr, "aep master %s: scheduler: %s; retrying\n", m->name,
			aep_err_code(rv));
	kick(ms);
	return 0;
}

static void handle_closed(uv_handle_t *h)
{
	struct master_sched *ms = h->data;
	if (--ms->open_handles == 0)
		aep_free(ms);
}

void master__sched_stop(struct master *m)
{
	struct master_sched *ms = m->sched;
	if (ms == NULL)
		return;
	m->sched = NULL;
	m->sched_epoch++;
	unwatch_all(ms);
	aep_sched_free(ms->s);
	ms->s = NULL;
	uv_close((uv_handle_t *)&ms->idle, handle_closed);
	uv_close((uv_handle_t *)&ms->timer, handle_closed);
}

uint64_t master__sched_queued(struct master *m)
{
	return m->sched != NULL && m->sched->s != NULL ? aep_sched_queued(m->sched->s) : 0;
}

/* ---- plan ------------------------------------------------------------------ */

static int plan_add(struct aep_object ***pods, size_t *n, struct aep_object *o, struct aep_error *e)
{
	if (*n >= PLAN_PODS_MAX) {
		aep_object_unref(o);
		return aep_errorf(e, AEP_ETOOLARGE, "objects: more than %d pods to plan",
				  PLAN_PODS_MAX);
	}
	if ((*n & (*n - 1)) == 0) { /* grow at powers of two */
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
		struct aep_object **p = aep_realloc(*pods, (*n ? *n * 2 : 1) * sizeof(*p));
		if (p == NULL) {
			aep_object_unref(o);
			return aep_errorf(e, AEP_ENOMEM, "out of memory");
		}
		*pods = p;
	}
	(*pods)[(*n)++] = o;
	return 0;
}

/* The pods @objects would create (Pods as they are, each ReplicationController's replicas from
 * its template); other kinds give none. */
static int plan_pods(const msgpack_object *objects, struct aep_object ***pods, size_t *n,
		     struct aep_error *e)
{
	for (uint32_t i = 0; i < objects->via.array.size; i++) {
		struct aep_object *o = NULL;
		int rv = aep_object_from_msgpack(&objects->via.array.ptr[i], &o, e);
		if (rv != 0)
			return aep_error_prefix(e, "objects[%u]", i);
		if (o->kind == AEP_KIND_POD) {
			if (plan_add(pods, n, o, e) != 0)
				return e->code;
			continue;
		}
		if (o->kind != AEP_KIND_RC) {
			aep_object_unref(o);
			continue;
		}
		msgpack_zone zone;
		msgpack_object rc;
		msgpack_zone_init(&zone, 4096);
		rv = aep_mp_unpack(o->data, o->len, &zone, &rc, e);
		const msgpack_object *rep =
		    rv == 0 ? aep_mp_map_get(aep_mp_map_get(&rc, "spec"), "replicas") : NULL;
		long replicas = rep != NULL && rep->type == MSGPACK_OBJECT_POSITIVE_INTEGER
				    ? (long)(rep->via.u64 > PLAN_PODS_MAX + 1 ? PLAN_PODS_MAX + 1
									      : rep->via.u64)
				    : (rep == NULL ? 1 : 0);
		for (long r = 1; rv == 0 && r <= replicas; r++) {
			char name[AEP_NAME_MAX + 1];
			struct aep_object *pod = NULL;
			snprintf(name, sizeof(name), "%.*s-%ld", AEP_NAME_MAX - 12, o->meta.name,
				 r);
			rv = master__template_pod(&rc, o->meta.ns, name, &pod, e);
			if (rv != 0)
				rv = aep_error_prefix(e, "objects[%u]: template", i);
			else
				rv = plan_add(pods, n, pod, e);
		}
		msgpack_zone_destroy(&zone);
		aep_object_unref(o);
		if (rv != 0)
			return rv;
	}
	return 0;
}

int master__sched_plan(struct master *m, const msgpack_object *params, struct aep_buf *out,
		       struct aep_error *e)
{
	const msgpack_object *objects = aep_mp_map_get(params, "objects");
	struct aep_object **pods = NULL;
	struct aep_sched_plan *res = NULL;
	size_t n = 0;
	int rv;

	if (params != NULL && params->type == MSGPACK_OBJECT_MAP) {
		for (uint32_t i = 0; i < params->via.map.size; i++) {
			if (!aep_mp_str_eq(&params->via.map.ptr[i].key, "objects"))
				return aep_errorf(e, AEP_EBADREQUEST,
						  "plan: unknown parameter (known: objects)");
		}
	}
	if (objects == NULL || objects->type != MSGPACK_OBJECT_ARRAY)
		return aep_errorf(e, AEP_EBADREQUEST, "objects: required list of objects");
	if (m->sched == NULL || m->sched->s == NULL)
		return aep_errorf(e, AEP_EUNAVAILABLE, "the scheduler is starting; retry");
	rv = plan_pods(objects, &pods, &n, e);
	if (rv != 0)
		goto out;
	res = aep_calloc(n ? n : 1, sizeof(*res));
	if (res == NULL) {
		rv = aep_errorf(e, AEP_ENOMEM, "out of memory");
		goto out;
	}
	rv = aep_sched_plan(m->sched->s, pods, n, res);
	if (rv != 0) {
		aep_errorf(e, rv, "out of memory");
		goto out;
	}
	msgpack_packer pk;
	aep_packer_init(&pk, out);
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "items");
	msgpack_pack_array(&pk, n);
	for (size_t i = 0; i < n; i++) {
		bool placed = res[i].node != NULL;
		msgpack_pack_map(&pk, placed ? 6 : 4);
		aep_pack_str(&pk, "namespace");
		aep_pack_str(&pk, pods[i]->meta.ns);
		aep_pack_str(&pk, "name");
		aep_pack_str(&pk, pods[i]->meta.name);
		aep_pack_str(&pk, "node");
		if (placed) {
			aep_pack_str(&pk, res[i].node);
			aep_pack_str(&pk, "region");
			aep_pack_str(&pk, res[i].region != NULL ? res[i].region : "");
			aep_pack_str(&pk, "zone");
			aep_pack_str(&pk, res[i].zone != NULL ? res[i].zone : "");
			aep_pack_str(&pk, "score");
			msgpack_pack_int64(&pk, res[i].score);
		} else {
			msgpack_pack_nil(&pk);
			aep_pack_str(&pk, "reason");
			aep_pack_str(&pk, res[i].why != NULL ? res[i].why : "");
		}
	}
	if (out->failed)
		rv = aep_errorf(e, AEP_ENOMEM, "out of memory");
out:
	for (size_t i = 0; i < n; i++) {
		aep_object_unref(pods[i]);
		if (res != NULL)
			aep_sched_plan_clear(&res[i]);
	}
	aep_free(res);
	aep_free(pods);
	return rv;
}

/* ---- the policy file --------------------------------------------------------- */

int master__sched_load_policy(struct master *m, const char *path, struct aep_error *e)
{
	struct aep_docs docs = {0};
	struct aep_sched_policy *p = NULL;
	msgpack_zone zone;
	msgpack_object doc;
	int rv = aep_manifest_load(path, &docs, e);
	if (rv != 0)
		return aep_error_prefix(e, "%s", path);
	if (docs.n != 1) {
		aep_docs_free(&docs);
		return aep_errorf(e, AEP_EINVALID, "%s: a policy file holds one document, not %zu",
				  path, docs.n);
	}
	msgpack_zone_init(&zone, 4096);
	rv = aep_mp_unpack(docs.items[0].data, docs.items[0].len, &zone, &doc, e);
	if (rv == 0)
		rv = aep_sched_policy_parse(&doc, &p, e);
	msgpack_zone_destroy(&zone);
	if (rv != 0) {
		aep_docs_free(&docs);
		return aep_error_prefix(e, "%s", path);
	}
	struct aep_buf desc;
	aep_buf_init(&desc);
	if (aep_sched_policy_describe(p, &desc) == 0 && aep_buf_append(&desc, "", 1) == 0)
		fprintf(stderr, "aep master %s: scheduler policy %s:\n%s", m->name, path,
			desc.data);
	aep_buf_free(&desc);
	aep_sched_policy_free(p);
	/* Keep the document: each leadership term builds its own policy. */
	aep_buf_free(&m->sched_policy_doc);
	m->sched_policy_doc = docs.items[0];
	aep_buf_init(&docs.items[0]);
	aep_docs_free(&docs);
	return 0;
}
