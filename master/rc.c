/* master: the replication manager, a leader-only loop.
 *
 * Every ReplicationController keeps spec.replicas active pods matching its
 * selector (the template's labels when the selector is empty): pods in
 * phase Succeeded or Failed do not count. The manager follows the store
 * through two watches (RCs and pods) and keeps, per RC, the count of its
 * active pods, updated from each pod event's old and new object, so one
 * event costs a few label lookups however many pods an RC has. RCs are
 * indexed by the first label of their selector, so a pod event finds its
 * RCs without looking at the others.
 *
 * A dirty RC is reconciled on the loop's idle turn: missing pods are
 * created from the template (named <rc>-<5 random characters>, at most
 * RC_BURST per RC per turn), surplus pods deleted (unbound ones first,
 * then those not running yet, then the youngest), both through Raft like any client's write. Writes in
 * flight are "expectations": the count plus the creates minus the deletes
 * in flight is what the RC will have, so a turn never creates a pod twice.
 * status.replicas is written back when it changed, at most once a second
 * per RC.
 *
 * Pods are placed by the scheduler as any other pod. Leadership lost: the
 * manager is dropped; the next leader rebuilds it from its own store. */
#include "master/master-int.h"

#include <bsd/sys/tree.h>
#include <stdio.h>
#include <string.h>

#define RC_BURST	 500  /* pods created or deleted per RC per turn */
#define RC_INFLIGHT	 8192 /* writes in flight, all RCs together */
#define RC_STATUS_PERIOD 1000 /* ms between status writes of one RC */

struct rc {
	RB_ENTRY(rc) by_name;
	RB_ENTRY(rc) by_label;
	char *ns, *name;
	const char *key, *value; /* the indexing label (in sel) */
	struct aep_selector *sel;
	struct aep_buf selb;	/* the selector map's encoding, to see changes */
	struct aep_object *obj; /* the RC as last seen */
	int64_t replicas;
	int64_t count; /* active matching pods in the store */
	int64_t creating, deleting;
	int64_t status_written; /* -1: unknown */
	int64_t status_at_ns;
	bool dirty;
	struct rc *next_dirty;
	unsigned refs; /* the manager's trees, and each write in flight */
	bool gone;
};

static int rc_name_cmp(const struct rc *a, const struct rc *b)
{
	int c = strcmp(a->ns, b->ns);
	return c != 0 ? c : strcmp(a->name, b->name);
}

static int rc_label_cmp(const struct rc *a, const struct rc *b)
{
	int c = strcmp(a->ns, b->ns);
	if (c == 0)
		c = strcmp(a->key, b->key);
	if (c == 0)
		c = strcmp(a->value, b->value);
	return c != 0 ? c : strcmp(a->name, b->name);
}

/* Trees of RCs by namespace/name and by their indexing label. libbsd's
 * static variants need BSD's __unused; these are external, named for this
 * folder. */
RB_HEAD(master__rc_names, rc);
RB_HEAD(master__rc_labels, rc);
RB_PROTOTYPE(master__rc_names, rc, by_name, rc_name_cmp);
RB_PROTOTYPE(master__rc_labels, rc, by_label, rc_label_cmp);
RB_GENERATE(master__rc_names, rc, by_name, rc_name_cmp)
RB_GENERATE(master__rc_labels, rc, by_label, rc_label_cmp)

/* A write in flight. A pod create or delete is also an expectation: it
 * sits in the manager's pending tree, keyed by the pod's namespace and
 * name, until the watch shows the pod added or deleted (or the write
 * fails). The count moves when the event is applied, which is before the
 * write's answer arrives; lowering creating/deleting at the same moment
 * keeps count + creating - deleting exact at every instant. */
struct rc_write {
	RB_ENTRY(rc_write) link;
	struct master *m;
	uint64_t epoch;
	struct rc *rc;
	enum aep_op op;
	bool pending; /* in the pending tree */
	char name[AEP_NAME_MAX + 1];
};

static int write_cmp(const struct rc_write *a, const struct rc_write *b)
{
	int c = strcmp(a->rc->ns, b->rc->ns);
	return c != 0 ? c : strcmp(a->name, b->name);
}

RB_HEAD(master__rc_pending, rc_write);
RB_PROTOTYPE(master__rc_pending, rc_write, link, write_cmp);
RB_GENERATE(master__rc_pending, rc_write, link, write_cmp)

struct master_rc {
	struct master *m;
	struct aep_watch *w_rc, *w_pod;
	struct master__rc_names names;
	struct master__rc_labels labels;
	struct master__rc_pending pending;
	struct rc *dirty;
	uv_idle_t idle;
	uv_timer_t timer;
	unsigned open_handles;
	size_t inflight;
	bool rebuild;
};

static void kick(struct master_rc *mr);

static void rc_unref(struct rc *rc)
{
	if (rc == NULL || --rc->refs > 0)
		return;
	aep_selector_free(rc->sel);
	aep_buf_free(&rc->selb);
	aep_object_unref(rc->obj);
	aep_free(rc->ns);
	aep_free(rc->name);
	aep_free(rc);
}

static void mark_dirty(struct master_rc *mr, struct rc *rc)
{
	if (rc->dirty || rc->gone)
		return;
	rc->dirty = true;
	rc->next_dirty = mr->dirty;
	mr->dirty = rc;
}

/* ---- reading objects ------------------------------------------------------ */

/* Succeeded or Failed: the pod no longer counts. */
static bool pod_terminal(const struct aep_object *pod)
{
	return pod->phase == AEP_PHASE_SUCCEEDED || pod->phase == AEP_PHASE_FAILED;
}

/* Where a pod stands in a scale-down: not running yet first. */
static int phase_rank(const struct aep_object *pod)
{
	return pod->phase == AEP_PHASE_RUNNING ? 1 : 0;
}

/* spec.replicas (default 1) and the selector (the template's labels when
 * empty) of the RC @o; the selector map's encoding is appended to @selb. */
static int rc_read(const struct aep_object *o, int64_t *replicas, struct aep_selector **sel,
		   struct aep_buf *selb)
{
	msgpack_zone zone;
	msgpack_object v;
	struct aep_error e = {0};
	int rv;
	msgpack_zone_init(&zone, 2048);
	rv = aep_mp_unpack(o->data, o->len, &zone, &v, &e);
	if (rv == 0) {
		const msgpack_object *spec = aep_mp_map_get(&v, "spec");
		const msgpack_object *r = aep_mp_map_get(spec, "replicas");
		const msgpack_object *s = aep_mp_map_get(spec, "selector");
		if (s == NULL || s->type != MSGPACK_OBJECT_MAP || s->via.map.size == 0)
			s = aep_mp_map_get(
			    aep_mp_map_get(aep_mp_map_get(spec, "template"), "metadata"), "labels");
		*replicas = r != NULL && r->type == MSGPACK_OBJECT_POSITIVE_INTEGER
				? (int64_t)r->via.u64
				: (r == NULL ? 1 : 0);
		rv = aep_selector_from_map(s, sel, &e);
		if (rv == 0 && s != NULL) {
			msgpack_packer pk;
			aep_packer_init(&pk, selb);
			msgpack_pack_object(&pk, *s);
			if (selb->failed) {
				aep_selector_free(*sel);
				*sel = NULL;
				rv = AEP_ENOMEM;
			}
		}
	}
	msgpack_zone_destroy(&zone);
	return rv;
}

/* ---- the RC table ----------------------------------------------------------- */

struct count_visit {
	int64_t n;
};

static int count_pod(const struct aep_object *o, void *data)
{
	struct count_visit *c = data;
	if (!pod_terminal(o))
		c->n++;
	return 0;
}

static void rc_remove(struct master_rc *mr, struct rc *rc)
{
	RB_REMOVE(master__rc_names, &mr->names, rc);
	if (rc->key != NULL)
		RB_REMOVE(master__rc_labels, &mr->labels, rc);
	rc->gone = true;
	rc_unref(rc);
}

static void rc_recount(struct master_rc *mr, struct rc *rc)
{
	struct count_visit c = {0};
	if (rc->key != NULL)
		aep_store_list(mr->m->store, AEP_KIND_POD, rc->ns, rc->sel, count_pod, &c);
	rc->count = c.n;
}

/* An RC appeared or changed: record it; when its selector is new or
 * changed, (re)index it and recount its pods. The record stays the same
 * one across changes, so writes in flight keep counting against it. */
static int rc_upsert(struct master_rc *mr, const struct aep_object *o)
{
	struct rc probe = {.ns = o->meta.ns, .name = o->meta.name};
	struct rc *rc = RB_FIND(master__rc_names, &mr->names, &probe);
	struct aep_selector *sel = NULL;
	struct aep_buf selb;
	int64_t replicas;
	aep_buf_init(&selb);
	int rv = rc_read(o, &replicas, &sel, &selb);
	if (rv != 0) {
		aep_buf_free(&selb);
		return rv == AEP_ENOMEM ? rv : 0; /* unreadable: leave it alone */
	}
	if (rc == NULL) {
		rc = aep_calloc(1, sizeof(*rc));
		if (rc == NULL || (rc->ns = aep_strdup(o->meta.ns)) == NULL ||
		    (rc->name = aep_strdup(o->meta.name)) == NULL) {
			if (rc != NULL)
				aep_free(rc->ns);
			aep_free(rc);
			aep_selector_free(sel);
			aep_buf_free(&selb);
			return AEP_ENOMEM;
		}
		rc->refs = 1;
		rc->status_written = -1;
		RB_INSERT(master__rc_names, &mr->names, rc);
	}
	aep_object_unref(rc->obj);
	rc->obj = aep_object_ref((struct aep_object *)o);
	rc->replicas = replicas;
	if (rc->sel != NULL && selb.len == rc->selb.len &&
	    memcmp(selb.data, rc->selb.data, selb.len) == 0) {
		aep_selector_free(sel);
		aep_buf_free(&selb);
	} else {
		if (rc->key != NULL)
			RB_REMOVE(master__rc_labels, &mr->labels, rc);
		aep_selector_free(rc->sel);
		aep_buf_free(&rc->selb);
		rc->sel = sel;
		rc->selb = selb;
		if (!aep_selector_required_label(sel, &rc->key, &rc->value))
			rc->key = rc->value = NULL; /* an empty selector matches no pods */
		if (rc->key != NULL)
			RB_INSERT(master__rc_labels, &mr->labels, rc);
		rc_recount(mr, rc);
	}
	mark_dirty(mr, rc);
	return 0;
}

/* Add @delta to the count of every RC whose selector matches @pod. */
static void count_pod_rcs(struct master_rc *mr, const struct aep_object *pod, int delta)
{
	for (size_t i = 0; i < pod->meta.nlabels; i++) {
		struct rc probe = {.ns = pod->meta.ns,
				   .key = pod->meta.labels[i].key,
				   .value = pod->meta.labels[i].value,
				   .name = ""};
		for (struct rc *rc = RB_NFIND(master__rc_labels, &mr->labels, &probe);
		     rc != NULL && strcmp(rc->ns, probe.ns) == 0 &&
		     strcmp(rc->key, probe.key) == 0 && strcmp(rc->value, probe.value) == 0;
		     rc = RB_NEXT(master__rc_labels, &mr->labels, rc)) {
			if (aep_selector_matches(rc->sel, pod->meta.labels, pod->meta.nlabels)) {
				rc->count += delta;
				mark_dirty(mr, rc);
			}
		}
	}
}

/* ---- store feed ----------------------------------------------------------------- */

static void on_rc_event(const struct aep_event *ev, void *data)
{
	struct master_rc *mr = data;
	if (ev != NULL && ev->type == AEP_EV_DELETED) {
		struct rc probe = {.ns = ev->obj->meta.ns, .name = ev->obj->meta.name};
		struct rc *rc = RB_FIND(master__rc_names, &mr->names, &probe);
		if (rc != NULL)
			rc_remove(mr, rc);
	} else if (ev == NULL || rc_upsert(mr, ev->obj) != 0) {
		mr->rebuild = true; /* expired, or out of memory: start over */
	}
	kick(mr);
}

/* The write of @w is no longer expected: its effect is in the count (or
 * it failed). */
static void settle(struct master_rc *mr, struct rc_write *w)
{
	RB_REMOVE(master__rc_pending, &mr->pending, w);
	w->pending = false;
	if (w->op == AEP_OP_CREATE)
		w->rc->creating--;
	else
		w->rc->deleting--;
}

/* A pod the manager created or deleted has shown up in the store. */
static void observe_write(struct master_rc *mr, const struct aep_object *pod, enum aep_op op)
{
	struct rc probe_rc = {.ns = pod->meta.ns};
	struct rc_write probe = {.rc = &probe_rc};
	snprintf(probe.name, sizeof(probe.name), "%s", pod->meta.name);
	struct rc_write *w = RB_FIND(master__rc_pending, &mr->pending, &probe);
	if (w != NULL && w->op == op)
		settle(mr, w);
}

static void on_pod_event(const struct aep_event *ev, void *data)
{
	struct master_rc *mr = data;
	if (ev == NULL) {
		mr->rebuild = true;
		kick(mr);
		return;
	}
	if (RB_EMPTY(&mr->labels))
		return;
	const struct aep_object *was = NULL, *is = NULL;
	switch (ev->type) {
	case AEP_EV_ADDED: is = ev->obj; break;
	case AEP_EV_DELETED: was = ev->obj; break;
	case AEP_EV_MODIFIED:
		if (ev->prev == NULL) {
			mr->rebuild = true; /* cannot tell what changed */
			kick(mr);
			return;
		}
		was = ev->prev;
		is = ev->obj;
		break;
	}
	/* A binding or a status change that keeps labels and activity
	 * changes no count; skip the parsing for the common case. */
	if (!RB_EMPTY(&mr->pending) && ev->type != AEP_EV_MODIFIED)
		observe_write(mr, ev->obj,
			      ev->type == AEP_EV_ADDED ? AEP_OP_CREATE : AEP_OP_DELETE);
	bool was_active = was != NULL && !pod_terminal(was);
	bool is_active = is != NULL && !pod_terminal(is);
	if (was_active)
		count_pod_rcs(mr, was, -1);
	if (is_active)
		count_pod_rcs(mr, is, +1);
	kick(mr);
}

static void unwatch(struct master_rc *mr)
{
	if (mr->w_rc != NULL)
		aep_store_unwatch(mr->m->store, mr->w_rc);
	if (mr->w_pod != NULL)
		aep_store_unwatch(mr->m->store, mr->w_pod);
	mr->w_rc = mr->w_pod = NULL;
}

static void drop_all(struct master_rc *mr)
{
	struct rc_write *w, *wnext;
	RB_FOREACH_SAFE(w, master__rc_pending, &mr->pending, wnext)
	{
		RB_REMOVE(master__rc_pending, &mr->pending, w);
		w->pending = false; /* its answer only releases it now */
	}
	struct rc *rc, *next;
	RB_FOREACH_SAFE(rc, master__rc_names, &mr->names, next)
	rc_remove(mr, rc);
	mr->dirty = NULL;
}

static int seed_rc(const struct aep_object *o, void *data)
{
	return rc_upsert(data, o) == AEP_ENOMEM;
}

static int build(struct master_rc *mr)
{
	struct aep_error e = {0};
	unwatch(mr);
	drop_all(mr);
	mr->m->rc_epoch++;
	mr->inflight = 0;
	mr->rebuild = true;
	if (aep_store_list(mr->m->store, AEP_KIND_RC, NULL, NULL, seed_rc, mr) != 0)
		return AEP_ENOMEM;
	if (aep_store_watch(mr->m->store, AEP_KIND_RC, NULL, NULL, 0, on_rc_event, mr, &mr->w_rc,
			    &e) != 0 ||
	    aep_store_watch(mr->m->store, AEP_KIND_POD, NULL, NULL, 0, on_pod_event, mr, &mr->w_pod,
			    &e) != 0) {
		unwatch(mr);
		return AEP_ENOMEM;
	}
	mr->rebuild = false;
	return 0;
}

/* ---- writes --------------------------------------------------------------------- */

static void write_done(void *data, const struct aep_result *res)
{
	struct rc_write *w = data;
	struct master *m = w->m;
	struct master_rc *mr = m->rc;
	if (w->pending && mr != NULL)
		settle(mr, w); /* failed, or its event was never seen */
	if (mr != NULL && w->epoch == m->rc_epoch) {
		mr->inflight--;
		if (res->code != 0 && res->code != AEP_ENOTFOUND) {
			m->rc_write_errors++;
			if (w->op == AEP_OP_UPDATE)
				w->rc->status_written = -1;
		}
		mark_dirty(mr, w->rc);
		kick(mr);
	}
	rc_unref(w->rc);
	aep_free(w);
}

/* Submit @cmd for @rc; @name is the pod a create or delete is about. */
static int submit(struct master_rc *mr, struct rc *rc, const struct aep_cmd *cmd, const char *name)
{
	struct rc_write *w = aep_calloc(1, sizeof(*w));
	if (w == NULL)
		return AEP_ENOMEM;
	w->m = mr->m;
	w->epoch = mr->m->rc_epoch;
	w->rc = rc;
	w->op = cmd->op;
	snprintf(w->name, sizeof(w->name), "%s", name);
	int rv = aep_raft_submit(mr->m->raft, cmd, write_done, w);
	if (rv != 0) {
		aep_free(w);
		return rv;
	}
	rc->refs++;
	mr->inflight++;
	if ((cmd->op == AEP_OP_CREATE || cmd->op == AEP_OP_DELETE) &&
	    RB_INSERT(master__rc_pending, &mr->pending, w) == NULL) {
		w->pending = true;
		if (cmd->op == AEP_OP_CREATE)
			rc->creating++;
		else
			rc->deleting++;
	}
	return 0;
}

int master__template_pod(const msgpack_object *rc, const char *ns, const char *name,
			 struct aep_object **out, struct aep_error *e)
{
	const msgpack_object *tmpl = aep_mp_map_get(aep_mp_map_get(rc, "spec"), "template");
	const msgpack_object *tmeta = aep_mp_map_get(tmpl, "metadata");
	const msgpack_object *labels = aep_mp_map_get(tmeta, "labels");
	const msgpack_object *annots = aep_mp_map_get(tmeta, "annotations");
	const msgpack_object *spec = aep_mp_map_get(tmpl, "spec");
	struct aep_buf b;
	msgpack_packer pk;
	int rv;

	if (spec == NULL)
		return aep_errorf(e, AEP_EINVALID, "spec.template.spec: required");
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "kind");
	aep_pack_str(&pk, "Pod");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 2 + (labels != NULL) + (annots != NULL));
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, name);
	aep_pack_str(&pk, "namespace");
	aep_pack_str(&pk, ns);
	if (labels != NULL) {
		aep_pack_str(&pk, "labels");
		msgpack_pack_object(&pk, *labels);
	}
	if (annots != NULL) {
		aep_pack_str(&pk, "annotations");
		msgpack_pack_object(&pk, *annots);
	}
	aep_pack_str(&pk, "spec");
	msgpack_pack_object(&pk, *spec);
	rv = b.failed ? aep_errorf(e, AEP_ENOMEM, "out of memory")
		      : aep_object_decode(b.data, b.len, out, e);
	aep_buf_free(&b);
	return rv;
}

static unsigned hexval(char c)
{
	return c >= 'a' ? (unsigned)(c - 'a' + 10) : (unsigned)(c - '0');
}

/* Create one pod from @rc's template. */
static int create_pod(struct master_rc *mr, struct rc *rc, const msgpack_object *rco)
{
	static const char alnum[] = "bcdfghjklmnpqrstvwxz2456789";
	char name[AEP_NAME_MAX + 1], uid[40], suffix[6];
	struct aep_object *pod = NULL;
	struct aep_error e = {0};
	int rv;

	if ((rv = master__uuid4(mr->m, uid)) != 0)
		return rv;
	/* The uid's random hex digits pick the suffix, a byte (two digits) per
	 * character so that all 27 characters occur: no second source. The
	 * first 8 characters of a uid are hex digits. */
	for (int i = 0; i < 4; i++) {
		unsigned byte = (hexval(uid[i * 2]) << 4) | hexval(uid[i * 2 + 1]);
		suffix[i] = alnum[byte % (sizeof(alnum) - 1)];
	}
	suffix[4] = alnum[((hexval(uid[9]) << 4) | hexval(uid[10])) % (sizeof(alnum) - 1)];
	suffix[5] = '\0';
	snprintf(name, sizeof(name), "%.*s-%s", AEP_NAME_MAX - 6, rc->name, suffix);
	rv = master__template_pod(rco, rc->ns, name, &pod, &e);
	if (rv == 0) {
		struct aep_cmd cmd = {
		    .op = AEP_OP_CREATE,
		    .kind = AEP_KIND_POD,
		    .now_ns = aep_now_realtime_ns(),
		    .obj = pod->data,
		    .obj_len = pod->len,
		};
		memcpy(cmd.uid, uid, sizeof(cmd.uid));
		rv = submit(mr, rc, &cmd, name);
	}
	aep_object_unref(pod);
	return rv;
}

struct victims {
	struct aep_object **pods;
	size_t n, cap;
};

static int collect_victim(const struct aep_object *o, void *data)
{
	struct victims *v = data;
	if (pod_terminal(o))
		return 0;
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
		struct aep_object **p = aep_realloc(v->pods, cap * sizeof(*p));
		if (p == NULL)
			return 1;
		v->pods = p;
		v->cap = cap;
	}
	v->pods[v->n++] = aep_object_ref((struct aep_object *)o);
	return 0;
}

/* The pods a scale-down costs least go first: unbound ones, then those
 * not running yet, then the youngest (creationTimestamp), so that the
 * long-running pods stay. */
static int victim_cmp(const void *a, const void *b)
{
	const struct aep_object *x = *(struct aep_object *const *)a;
	const struct aep_object *y = *(struct aep_object *const *)b;
	if ((x->node_name == NULL) != (y->node_name == NULL))
		return x->node_name == NULL ? -1 : 1;
	if (phase_rank(x) != phase_rank(y))
		return phase_rank(x) < phase_rank(y) ? -1 : 1;
	if (x->meta.created_ns != y->meta.created_ns)
		return x->meta.created_ns > y->meta.created_ns ? -1 : 1;
	return strcmp(x->meta.name, y->meta.name);
}

static void delete_pods(struct master_rc *mr, struct rc *rc, int64_t n)
{
	struct victims v = {0};
	aep_store_list(mr->m->store, AEP_KIND_POD, rc->ns, rc->sel, collect_victim, &v);
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	qsort(v.pods, v.n, sizeof(*v.pods), victim_cmp);
	for (size_t i = 0; i < v.n; i++) {
		const struct aep_object *pod = v.pods[i];
		if ((int64_t)i < n && mr->inflight < RC_INFLIGHT) {
			struct aep_cmd cmd = {
			    .op = AEP_OP_DELETE,
			    .kind = AEP_KIND_POD,
			    .ns = rc->ns,
			    .name = pod->meta.name,
			    .precond_rv = pod->meta.rv,
			    .now_ns = aep_now_realtime_ns(),
			};
			(void)submit(mr, rc, &cmd, pod->meta.name);
		}
		aep_object_unref(v.pods[i]);
	}
	aep_free(v.pods);
}

/* Write status.replicas = count back to the RC. */
static void write_status(struct master_rc *mr, struct rc *rc, const msgpack_object *rco)
{
	struct aep_object *obj = NULL;
	struct aep_error e = {0};
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, rco->via.map.size + (aep_mp_map_get(rco, "status") ? 0 : 1));
	for (uint32_t i = 0; i < rco->via.map.size; i++) {
		const msgpack_object_kv *kv = &rco->via.map.ptr[i];
		if (aep_mp_str_eq(&kv->key, "status"))
			continue;
		msgpack_pack_object(&pk, kv->key);
		msgpack_pack_object(&pk, kv->val);
	}
	aep_pack_str(&pk, "status");
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "replicas");
	msgpack_pack_int64(&pk, rc->count);
	aep_pack_str(&pk, "observedGeneration");
	msgpack_pack_int64(&pk, rc->obj->meta.generation);
	if (!b.failed && aep_object_decode(b.data, b.len, &obj, &e) == 0) {
		struct aep_cmd cmd = {
		    .op = AEP_OP_UPDATE,
		    .kind = AEP_KIND_RC,
		    .precond_rv = rc->obj->meta.rv,
		    .now_ns = aep_now_realtime_ns(),
		    .obj = obj->data,
		    .obj_len = obj->len,
		};
		if (submit(mr, rc, &cmd, rc->name) == 0) {
			rc->status_written = rc->count;
			rc->status_at_ns = aep_now_monotonic_ns();
		}
	}
	aep_object_unref(obj);
	aep_buf_free(&b);
}

/* Bring @rc toward its replicas. Returns true when it must be looked at
 * again later (bursts left over, a status write held back). */
static bool reconcile(struct master_rc *mr, struct rc *rc)
{
	msgpack_zone zone;
	msgpack_object rco;
	struct aep_error e = {0};
	bool again = false;
	if (rc->key == NULL)
		return false;
	msgpack_zone_init(&zone, 4096);
	if (aep_mp_unpack(rc->obj->data, rc->obj->len, &zone, &rco, &e) != 0) {
		msgpack_zone_destroy(&zone);
		return true;
	}
	int64_t expect = rc->count + rc->creating - rc->deleting;
	if (expect < rc->replicas) {
		int64_t n = rc->replicas - expect;
		if (n > RC_BURST) {
			n = RC_BURST;
			again = true;
		}
		for (int64_t i = 0; i < n && mr->inflight < RC_INFLIGHT; i++) {
			if (create_pod(mr, rc, &rco) != 0) {
				again = true;
				break;
			}
		}
	} else if (expect > rc->replicas && rc->deleting == 0) {
		int64_t n = expect - rc->replicas;
		delete_pods(mr, rc, n > RC_BURST ? RC_BURST : n);
	}
	if (rc->count != rc->status_written) {
		int64_t now = aep_now_monotonic_ns();
		if (now - rc->status_at_ns >= (int64_t)RC_STATUS_PERIOD * 1000000)
			write_status(mr, rc, &rco);
		else
			again = true;
	}
	msgpack_zone_destroy(&zone);
	return again;
}

static void on_timer(uv_timer_t *t)
{
	struct master_rc *mr = t->data;
	struct rc *rc;
	RB_FOREACH(rc, master__rc_names, &mr->names)
	mark_dirty(mr, rc);
	kick(mr);
}

static void on_idle(uv_idle_t *h)
{
	struct master_rc *mr = h->data;
	bool later = false;
	uv_idle_stop(&mr->idle);
	if (mr->rebuild && build(mr) != 0) {
		uv_timer_start(&mr->timer, on_timer, 1000, 0);
		return;
	}
	struct rc *list = mr->dirty;
	mr->dirty = NULL;
	while (list != NULL) {
		struct rc *rc = list;
		list = rc->next_dirty;
		rc->dirty = false;
		if (rc->gone)
			continue;
		if (mr->inflight >= RC_INFLIGHT || reconcile(mr, rc))
			later = true;
	}
	if (later && !uv_is_active((uv_handle_t *)&mr->timer))
		uv_timer_start(&mr->timer, on_timer, 200, 0);
}

static void kick(struct master_rc *mr)
{
	if (mr->dirty != NULL || mr->rebuild)
		uv_idle_start(&mr->idle, on_idle);
}

/* ---- start and stop ----------------------------------------------------------- */

int master__rc_start(struct master *m)
{
	struct master_rc *mr = aep_calloc(1, sizeof(*mr));
	if (mr == NULL)
		return AEP_ENOMEM;
	mr->m = m;
	RB_INIT(&mr->names);
	RB_INIT(&mr->labels);
	RB_INIT(&mr->pending);
	uv_idle_init(m->loop, &mr->idle);
	uv_timer_init(m->loop, &mr->timer);
	mr->idle.data = mr;
	mr->timer.data = mr;
	mr->open_handles = 2;
	m->rc = mr;
	mr->rebuild = true;
	kick(mr);
	return 0;
}

static void handle_closed(uv_handle_t *h)
{
	struct master_rc *mr = h->data;
	if (--mr->open_handles == 0)
		aep_free(mr);
}

void master__rc_stop(struct master *m)
{
	struct master_rc *mr = m->rc;
	if (mr == NULL)
		return;
	m->rc = NULL;
	m->rc_epoch++;
	unwatch(mr);
	drop_all(mr);
	uv_close((uv_handle_t *)&mr->idle, handle_closed);
	uv_close((uv_handle_t *)&mr->timer, handle_closed);
}
