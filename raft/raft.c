/* raft: one AEP master's Raft peer on canonical libraft 0.15 (libuv I/O,
 * TCP transport) with the state/ store as its state machine.
 *
 * Happy path of a write: aep_raft_submit() encodes the command into the
 * batch at the tail of the queue (struct entry) and starts the idle handle.
 * The idle callback hands queued batches to raft_apply() while fewer than
 * max_inflight entries are in flight, so commands that arrive while entries
 * are in flight pile up in the next batch (group commit). When an entry is
 * committed libraft calls fsm_apply(), which applies it to the store and
 * parks the per-command results on the in-flight entry with that index; the
 * raft_apply callback then moves the entry to the done list, and the next
 * idle callback gives every waiter its result.
 *
 * Failure modes: a raft_apply() that fails at once leaves the waiters of
 * that entry with AEP_ENOTLEADER (nothing was written) or the translated
 * libraft error; an entry in flight when leadership is lost gets
 * AEP_EUNAVAILABLE ("outcome unknown": it may still commit); queued entries
 * get AEP_ENOTLEADER when this peer stops being leader; everything gets
 * AEP_ECANCELED on close. Each callback fires exactly once.
 *
 * Waiter callbacks, barrier callbacks and leadership notifications are
 * delivered from the idle and timer callbacks, never from inside libraft,
 * so user code may call aep_raft_submit() or aep_raft_close() from them.
 * on_applied and the store's watch callbacks do run inside libraft's apply.
 *
 * libraft 0.15 has no leadership callback: a 10 ms timer polls raft_state()
 * and the term. A new leader first commits a barrier, so that its store
 * holds every committed entry, and only then reports on_leadership(true). */
#include "raft/raft.h"
#include "raft/raft-int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <raft.h>
#include <raft/uv.h>

#define RAFT_PEERS_MAX		 32
#define RAFT_BATCH_BYTES	 (1024 * 1024) /* start a new entry beyond this */
#define RAFT_POLL_MS		 10
#define RAFT_CONNECT_RETRY_MS	 200
#define RAFT_INSTALL_SNAPSHOT_MS 5000
#define RAFT_PATH_MAX		 4096

enum entry_kind {
	ENTRY_COMMANDS,	    /* a batch of submitted commands */
	ENTRY_BARRIER,	    /* aep_raft_barrier() */
	ENTRY_LEAD_BARRIER, /* the barrier a new leader commits first */
};

struct waiter {
	aep_raft_submit_cb cb;
	void *data;
};

/* One Raft entry from submit to callbacks. Lives on exactly one of the
 * queue (commands not yet given to libraft), the in-flight list or the done
 * list, or on none while it is being delivered. */
struct entry {
	struct aep_raft *r;
	enum entry_kind kind;
	struct entry *next;
	union {
		struct raft_apply apply;
		struct raft_barrier barrier;
	} req;
	raft_index index; /* once submitted to libraft */
	raft_term term;	  /* the term it was submitted in */
	/* ENTRY_COMMANDS */
	struct aep_batch batch;
	struct waiter *waiters;
	size_t nwaiters;
	size_t cap;
	struct aep_result *results; /* from the store, once applied */
	size_t nresults;
	bool applied;
	/* ENTRY_BARRIER */
	void (*barrier_cb)(void *data, int code);
	void *barrier_data;
	/* outcome */
	int code; /* AEP code; 0 = applied */
	char msg[128];
};

struct entry_list {
	struct entry *head;
	struct entry *tail;
	size_t n;
};

struct peer {
	char *name;
	char *addr;
};

struct aep_raft {
	uv_loop_t *loop;
	struct raft raft;
	struct raft__io io; /* raft_uv's, wrapped (io.c) */
	struct raft__tcp tcp;
	struct raft_fsm fsm;
	struct raft_transfer transfer;
	bool transferring;
	uv_idle_t idle;
	uv_timer_t timer;

	char *name;
	char *dir;
	struct peer *peers;
	unsigned npeers;
	raft_id id;
	struct aep_store *store;
	unsigned max_inflight;
	void (*on_leadership)(void *data, bool leader);
	void (*on_applied)(void *data, uint64_t index);
	void *data;

	struct entry_list queue;
	struct entry_list inflight;
	struct entry_list done;

	/* leadership as seen by the poller */
	bool leader; /* raft_state() == RAFT_LEADER at the last poll */
	raft_term lead_term;
	bool lead_barrier; /* the term's first barrier is in flight */
	bool ready;	   /* on_leadership(true) was reported */

	bool starting; /* inside raft_start(): restores are loads, not installs */
	bool broken;   /* the store ran out of memory mid-entry: apply no more */
	bool closing;
	bool raft_closing; /* raft_close() was called */
	unsigned handles;  /* uv handles and libraft still to report closed */
	void (*close_cb)(void *data);
	void *close_data;

	uint64_t entries_applied;
	uint64_t commands_applied;
	uint64_t snapshots_taken;
	uint64_t snapshots_installed;
	/* The view of the snapshot being encoded off the loop, from
	 * fsm_snapshot() to fsm_snapshot_finalize(); libraft takes one
	 * snapshot at a time. */
	struct aep_store_view *snap_view;
};

/* ---- lists -------------------------------------------------------------- */

static void list_push(struct entry_list *l, struct entry *e)
{
	e->next = NULL;
	if (l->tail != NULL)
		l->tail->next = e;
	else
		l->head = e;
	l->tail = e;
	l->n++;
}

static struct entry *list_pop(struct entry_list *l)
{
	struct entry *e = l->head;
	if (e == NULL)
		return NULL;
	l->head = e->next;
	if (l->head == NULL)
		l->tail = NULL;
	l->n--;
	e->next = NULL;
	return e;
}

static void list_remove(struct entry_list *l, struct entry *e)
{
	struct entry *prev = NULL;
	for (struct entry *it = l->head; it != NULL; prev = it, it = it->next) {
		if (it != e)
			continue;
		if (prev != NULL)
			prev->next = e->next;
		else
			l->head = e->next;
		if (l->tail == e)
			l->tail = prev;
		l->n--;
		e->next = NULL;
		return;
	}
}

/* ---- errors ------------------------------------------------------------- */

/* The AEP code for a libraft code: the one place where they are mapped. */
static int code_from_raft(int rv)
{
	switch (rv) {
	case 0: return 0;
	case RAFT_NOMEM: return AEP_ENOMEM;
	case RAFT_NOTLEADER: return AEP_ENOTLEADER;
	case RAFT_LEADERSHIPLOST: return AEP_EUNAVAILABLE;
	case RAFT_SHUTDOWN:
	case RAFT_CANCELED: return AEP_ECANCELED;
	case RAFT_IOERR:
	case RAFT_NOSPACE:
	case RAFT_CORRUPT:
	case RAFT_UNAUTHORIZED: return AEP_EIO;
	case RAFT_BADID:
	case RAFT_DUPLICATEID:
	case RAFT_DUPLICATEADDRESS:
	case RAFT_BADROLE:
	case RAFT_MALFORMED:
	case RAFT_INVALID:
	case RAFT_NAMETOOLONG: return AEP_EINVALID;
	case RAFT_TOOBIG: return AEP_ETOOLARGE;
	case RAFT_NOTFOUND: return AEP_ENOTFOUND;
	case RAFT_NOCONNECTION:
	case RAFT_BUSY:
	case RAFT_CANTCHANGE:
	case RAFT_TOOMANY:
	case RAFT_CANTBOOTSTRAP: return AEP_EUNAVAILABLE;
	default: return AEP_EINTERNAL;
	}
}

/* Fill @e from a libraft failure: the code, "@what: " and libraft's own
 * message (@detail, often more precise than raft_strerror). */
static int raft_error(struct aep_error *e, int rv, const char *what, const char *detail)
{
	if (detail != NULL && detail[0] != '\0')
		return aep_errorf(e, code_from_raft(rv), "%s: %s (%s)", what, detail,
				  raft_strerror(rv));
	return aep_errorf(e, code_from_raft(rv), "%s: %s", what, raft_strerror(rv));
}

/* ---- entries ------------------------------------------------------------ */

static struct entry *entry_new(struct aep_raft *r, enum entry_kind kind)
{
	struct entry *e = aep_calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->r = r;
	e->kind = kind;
	if (kind == ENTRY_COMMANDS)
		aep_batch_init(&e->batch);
	return e;
}

static void entry_free(struct entry *e)
{
	if (e->kind == ENTRY_COMMANDS) {
		aep_batch_free(&e->batch);
		for (size_t i = 0; i < e->nresults; i++)
			aep_result_clear(&e->results[i]);
		aep_free(e->results);
		aep_free(e->waiters);
	}
	aep_free(e);
}

static void entry_fail(struct entry *e, int code, const char *msg)
{
	e->code = code;
	snprintf(e->msg, sizeof(e->msg), "%s", msg);
}

/* Fire the callbacks of @e (off every list) and free it. */
static void entry_deliver(struct entry *e)
{
	struct aep_raft *r = e->r;

	switch (e->kind) {
	case ENTRY_COMMANDS:
		if (e->code == 0 && (!e->applied || e->nresults != e->nwaiters))
			entry_fail(e, AEP_EINTERNAL, "the store rejected the entry");
		for (size_t i = 0; i < e->nwaiters; i++) {
			if (e->code == 0) {
				e->waiters[i].cb(e->waiters[i].data, &e->results[i]);
			} else {
				struct aep_result res = {.code = e->code, .msg = e->msg};
				e->waiters[i].cb(e->waiters[i].data, &res);
			}
		}
		break;
	case ENTRY_BARRIER: e->barrier_cb(e->barrier_data, e->code); break;
	case ENTRY_LEAD_BARRIER:
		/* Still leader in the term it was submitted for: the store now
		 * holds every committed entry; report the leadership. */
		if (!r->closing && r->leader && r->lead_term == e->term) {
			r->lead_barrier = false;
			if (e->code == 0 && !r->ready) {
				r->ready = true;
				if (r->on_leadership != NULL)
					r->on_leadership(r->data, true);
			}
		}
		break;
	}
	entry_free(e);
}

static void deliver_done(struct aep_raft *r)
{
	struct entry *e;
	while ((e = list_pop(&r->done)) != NULL)
		entry_deliver(e);
}

static void fail_queue(struct aep_raft *r, int code, const char *msg)
{
	struct entry *e;
	while ((e = list_pop(&r->queue)) != NULL) {
		entry_fail(e, code, msg);
		entry_deliver(e);
	}
}

static void idle_cb(uv_idle_t *idle);

static void kick(struct aep_raft *r)
{
	if (!r->closing)
		uv_idle_start(&r->idle, idle_cb);
}

/* A libraft request finished: deliver now when closing (the idle handle is
 * going away), else on the next idle callback, outside libraft's stack. */
static void entry_finished(struct entry *e, int status)
{
	struct aep_raft *r = e->r;

	list_remove(&r->inflight, e);
	if (status != 0) {
		if (r->closing) {
			entry_fail(e, AEP_ECANCELED, "shutting down; outcome unknown");
		} else if (status == RAFT_LEADERSHIPLOST || status == RAFT_NOTLEADER) {
			entry_fail(e, AEP_EUNAVAILABLE, "leadership lost; outcome unknown");
		} else {
			char msg[128];
			snprintf(msg, sizeof(msg), "raft: %s; outcome unknown",
				 raft_strerror(status));
			entry_fail(e, code_from_raft(status), msg);
		}
	}
	if (r->closing) {
		entry_deliver(e);
		return;
	}
	list_push(&r->done, e);
	kick(r);
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	(void)result; /* results travel on the entry, see fsm_apply */
	entry_finished(req->data, status);
}

static void barrier_cb(struct raft_barrier *req, int status)
{
	entry_finished(req->data, status);
}

/* ---- group commit ------------------------------------------------------- */

/* Hand @e (off every list) to libraft. On failure its waiters are failed
 * and it is delivered at once. */
static void submit_entry(struct aep_raft *r, struct entry *e)
{
	const char *data;
	size_t len;
	struct raft_buffer buf;
	int rv;

	e->term = r->raft.current_term;
	if (e->kind != ENTRY_COMMANDS) {
		e->req.barrier.data = e;
		list_push(&r->inflight, e);
		rv = raft_barrier(&r->raft, &e->req.barrier, barrier_cb);
		if (rv != 0)
			goto err_after_push;
		e->index = e->req.barrier.index;
		return;
	}

	rv = aep_batch_finish(&e->batch, &data, &len);
	if (rv != 0) {
		entry_fail(e, rv, "cannot encode the entry");
		goto err;
	}
	/* framed as frame.c describes (docs/LIBRAFT.md, bug 1) */
	rv = raft__entry_frame(data, len, &buf);
	if (rv == RAFT_TOOBIG) {
		entry_fail(e, AEP_ETOOLARGE, "entry too large");
		goto err;
	}
	if (rv != 0) {
		entry_fail(e, AEP_ENOMEM, "out of memory");
		goto err;
	}
	aep_batch_free(&e->batch);
	e->req.apply.data = e;
	list_push(&r->inflight, e);
	rv = raft_apply(&r->raft, &e->req.apply, &buf, 1, apply_cb);
	if (rv != 0) {
		raft_free(buf.base);
		goto err_after_push;
	}
	e->index = e->req.apply.index;
	return;

err_after_push:
	list_remove(&r->inflight, e);
	if (rv == RAFT_NOTLEADER) {
		entry_fail(e, AEP_ENOTLEADER, "not the leader");
	} else {
		char msg[128];
		snprintf(msg, sizeof(msg), "raft: %s", raft_errmsg(&r->raft));
		entry_fail(e, code_from_raft(rv), msg);
	}
err:
	entry_deliver(e);
}

static bool is_leader(struct aep_raft *r)
{
	return raft_state(&r->raft) == RAFT_LEADER;
}

static void flush(struct aep_raft *r)
{
	if (r->closing)
		return;
	if (!is_leader(r)) {
		fail_queue(r, AEP_ENOTLEADER, "not the leader");
		return;
	}
	while (r->queue.head != NULL && r->inflight.n < r->max_inflight && !r->closing)
		submit_entry(r, list_pop(&r->queue));
}

static void poll_leadership(struct aep_raft *r);

static void idle_cb(uv_idle_t *idle)
{
	struct aep_raft *r = idle->data;

	deliver_done(r);
	poll_leadership(r);
	flush(r);
	/* Queued entries wait for an in-flight one to finish; its callback
	 * starts the idle handle again. */
	if (!r->closing && r->done.head == NULL &&
	    (r->queue.head == NULL || r->inflight.n >= r->max_inflight))
		uv_idle_stop(&r->idle);
}

int aep_raft_submit(struct aep_raft *r, const struct aep_cmd *cmd, aep_raft_submit_cb cb,
		    void *data)
{
	struct entry *e = r->queue.tail;
	bool fresh = false;
	int rv;

	if (r->closing)
		return AEP_ECANCELED;
	if (!is_leader(r))
		return AEP_ENOTLEADER;
	if (r->broken)
		return AEP_EUNAVAILABLE;
	if (e == NULL || e->nwaiters >= AEP_BATCH_MAX || e->batch.buf.len >= RAFT_BATCH_BYTES) {
		e = entry_new(r, ENTRY_COMMANDS);
		if (e == NULL)
			return AEP_ENOMEM;
		fresh = true;
	}
	if (e->nwaiters == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 16;
		if (cap > AEP_BATCH_MAX)
			cap = AEP_BATCH_MAX;
		struct waiter *w = aep_realloc(e->waiters, cap * sizeof(*w));
		if (w == NULL) {
			rv = AEP_ENOMEM;
			goto err_after_entry;
		}
		e->waiters = w;
		e->cap = cap;
	}
	rv = aep_batch_add(&e->batch, cmd);
	if (rv != 0)
		goto err_after_entry;
	e->waiters[e->nwaiters].cb = cb;
	e->waiters[e->nwaiters].data = data;
	e->nwaiters++;
	if (fresh)
		list_push(&r->queue, e);
	kick(r);
	return 0;

err_after_entry:
	if (fresh)
		entry_free(e);
	return rv;
}

int aep_raft_barrier(struct aep_raft *r, void (*cb)(void *data, int code), void *data)
{
	struct entry *e;

	if (r->closing)
		return AEP_ECANCELED;
	if (!is_leader(r))
		return AEP_ENOTLEADER;
	e = entry_new(r, ENTRY_BARRIER);
	if (e == NULL)
		return AEP_ENOMEM;
	e->barrier_cb = cb;
	e->barrier_data = data;
	/* Straight to libraft: a barrier must not wait behind queued
	 * commands, which are not "committed before the call". Failures
	 * reach @cb from the next idle callback. */
	e->term = r->raft.current_term;
	e->req.barrier.data = e;
	list_push(&r->inflight, e);
	int rv = raft_barrier(&r->raft, &e->req.barrier, barrier_cb);
	if (rv != 0) {
		list_remove(&r->inflight, e);
		entry_free(e);
		return code_from_raft(rv);
	}
	e->index = e->req.barrier.index;
	return 0;
}

/* ---- leadership --------------------------------------------------------- */

static void lost_leadership(struct aep_raft *r)
{
	bool was_ready = r->ready;

	r->leader = false;
	r->ready = false;
	r->lead_barrier = false;
	fail_queue(r, AEP_ENOTLEADER, "leadership lost before the entry was written");
	if (was_ready && r->on_leadership != NULL)
		r->on_leadership(r->data, false);
}

static void poll_leadership(struct aep_raft *r)
{
	bool now;

	if (r->closing)
		return;
	now = is_leader(r);
	if (r->leader && (!now || r->raft.current_term != r->lead_term))
		lost_leadership(r);
	if (now && !r->leader) {
		r->leader = true;
		r->lead_term = r->raft.current_term;
	}
	if (r->leader && !r->ready && !r->lead_barrier) {
		struct entry *e = entry_new(r, ENTRY_LEAD_BARRIER);
		if (e == NULL)
			return; /* retried on the next poll */
		r->lead_barrier = true;
		submit_entry(r, e);
	}
}

static void timer_cb(uv_timer_t *timer)
{
	struct aep_raft *r = timer->data;
	poll_leadership(r);
	if (r->queue.head != NULL || r->done.head != NULL)
		kick(r);
}

/* ---- the state machine -------------------------------------------------- */

static struct entry *inflight_at(struct aep_raft *r, raft_index index)
{
	for (struct entry *e = r->inflight.head; e != NULL; e = e->next) {
		if (e->index == index && e->kind == ENTRY_COMMANDS)
			return e;
	}
	return NULL;
}

/* Apply a committed entry. libraft advances last_applied after this
 * returns, so the entry's index is last_applied + 1. Results are asked for
 * only when this peer has waiters for the entry. A malformed entry (a
 * leader never writes one) changes nothing and is skipped on every peer
 * alike. Running out of memory leaves the store behind with part of the
 * entry applied (state.h): applying anything more on top would diverge,
 * so this peer stops applying for good (libraft keeps retrying the entry
 * and gets RAFT_NOMEM each time); a restart rebuilds the store from the
 * snapshot and the log. */
static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct aep_raft *r = fsm->data;
	raft_index index = r->raft.last_applied + 1;
	struct aep_result *results = NULL;
	size_t nresults = 0, len = 0;
	const char *data = NULL;
	struct entry *e;
	int rv;

	*result = NULL;
	if (r->broken)
		return RAFT_NOMEM;
	e = inflight_at(r, index);
	if (raft__entry_unframe(buf, &data, &len))
		rv = aep_store_apply(r->store, index, data, len, e != NULL ? &results : NULL,
				     &nresults);
	else
		rv = AEP_EINVALID;
	if (rv == AEP_ENOMEM) {
		r->broken = true;
		fprintf(stderr,
			"aep raft %s: out of memory applying entry %llu: this peer stops "
			"applying; restart it to rebuild its store\n",
			r->name, (unsigned long long)index);
		return RAFT_NOMEM;
	}
	if (rv != 0) {
		fprintf(stderr, "aep raft %s: entry %llu rejected by the store (%s)\n", r->name,
			(unsigned long long)index, aep_err_code(rv));
		nresults = 0;
	}
	r->entries_applied++;
	r->commands_applied += nresults;
	if (e != NULL) {
		e->results = results;
		e->nresults = results != NULL ? nresults : 0;
		e->applied = true;
	}
	if (r->on_applied != NULL)
		r->on_applied(r->data, index);
	return 0;
}

/* Snapshots are taken in three steps so that the loop (heartbeats,
 * elections, the API) never waits for the encoding, which takes hundreds
 * of milliseconds for a large store (tests/unit/test_state_perf.c prints
 * it). fsm_snapshot(), on the loop: a view of the store at the last
 * applied entry (every object referenced; objects are immutable, so what
 * the loop applies meanwhile does not touch it). fsm_snapshot_async(), on
 * a libuv worker thread: the view encoded and framed as frame.c describes,
 * in memory from raft_malloc(). fsm_snapshot_finalize(), on the loop
 * again, whatever happened: buffers and view released. */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct aep_raft *r = fsm->data;
	int rv;

	*bufs = NULL;
	*n_bufs = 0;
	if (r->snap_view != NULL)
		return RAFT_BUSY;
	rv = aep_store_view_take(r->store, &r->snap_view);
	if (rv != 0)
		return rv == AEP_ENOMEM ? RAFT_NOMEM : RAFT_IOERR;
	return 0;
}

static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct aep_raft *r = fsm->data;
	struct aep_buf b;
	int rv;

	aep_buf_init(&b);
	rv = aep_store_view_encode(r->snap_view, &b);
	if (rv != 0)
		rv = rv == AEP_ENOMEM ? RAFT_NOMEM : RAFT_IOERR;
	else
		rv = raft__snapshot_frame(b.data, b.len, bufs, n_bufs);
	aep_buf_free(&b);
	return rv;
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct aep_raft *r = fsm->data;
	if (*n_bufs > 0)
		r->snapshots_taken++;
	raft__buffers_free(bufs, n_bufs);
	aep_store_view_free(r->snap_view);
	r->snap_view = NULL;
	return 0;
}

/* Replace the store with a snapshot. On success the buffer is ours to free
 * (libraft's contract); on failure libraft frees it and the store is
 * unchanged. */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct aep_raft *r = fsm->data;
	struct aep_error e = {0};
	const char *data;
	size_t len;
	int rv;

	if (!raft__snapshot_unframe(buf, &data, &len)) {
		fprintf(stderr, "aep raft %s: restore snapshot: not an AEP snapshot\n", r->name);
		return RAFT_MALFORMED;
	}
	rv = aep_store_restore(r->store, data, len, &e);
	if (rv != 0) {
		fprintf(stderr, "aep raft %s: restore snapshot: %s\n", r->name, e.msg);
		return rv == AEP_ENOMEM ? RAFT_NOMEM : RAFT_MALFORMED;
	}
	raft_free(buf->base);
	if (!r->starting)
		r->snapshots_installed++;
	return 0;
}

/* ---- start and close ---------------------------------------------------- */

static void raft_free_config(struct aep_raft *r)
{
	for (unsigned i = 0; i < r->npeers; i++) {
		aep_free(r->peers[i].name);
		aep_free(r->peers[i].addr);
	}
	aep_free(r->peers);
	aep_free(r->name);
	aep_free(r->dir);
	aep_free(r);
}

static void maybe_closed(struct aep_raft *r)
{
	void (*cb)(void *data) = r->close_cb;
	void *data = r->close_data;

	if (--r->handles > 0)
		return;
	/* Every request has been answered: libraft failed its own. */
	deliver_done(r);
	raft_free_config(r);
	if (cb != NULL)
		cb(data);
}

static void handle_closed(uv_handle_t *h)
{
	maybe_closed(h->data);
}

static void raft_closed(struct raft *raft)
{
	struct aep_raft *r = raft->data;
	raft_uv_close(&r->io.io);
	raft__tcp_close(&r->tcp);
	maybe_closed(r);
}

/* Close the handles and libraft. Must run outside libraft's callbacks: it
 * is called from aep_raft_start() or the idle callback. */
static void teardown(struct aep_raft *r)
{
	r->raft_closing = true;
	r->handles = 3;
	uv_timer_stop(&r->timer);
	uv_idle_stop(&r->idle);
	uv_close((uv_handle_t *)&r->timer, handle_closed);
	uv_close((uv_handle_t *)&r->idle, handle_closed);
	raft_close(&r->raft, raft_closed);
}

static void closing_idle_cb(uv_idle_t *idle)
{
	struct aep_raft *r = idle->data;
	deliver_done(r);
	teardown(r);
}

void aep_raft_close(struct aep_raft *r, void (*cb)(void *data), void *data)
{
	bool was_ready = r->ready;

	if (r->closing)
		return;
	r->closing = true;
	r->close_cb = cb;
	r->close_data = data;
	r->ready = false;
	deliver_done(r);
	fail_queue(r, AEP_ECANCELED, "shutting down");
	if (was_ready && r->on_leadership != NULL)
		r->on_leadership(r->data, false);
	/* libraft is closed from the next idle callback: we may be inside
	 * one of its callbacks now (on_applied, a watch). uv_idle_start()
	 * keeps the old callback of an active handle: stop it first. */
	uv_idle_stop(&r->idle);
	uv_idle_start(&r->idle, closing_idle_cb);
}

static char *join_path(const char *dir, const char *leaf)
{
	size_t n = strlen(dir) + 1 + strlen(leaf) + 1;
	if (n > RAFT_PATH_MAX)
		return NULL;
	char *p = aep_malloc(n);
	if (p != NULL)
		snprintf(p, n, "%s/%s", dir, leaf);
	return p;
}

static int make_dir(const char *path, struct aep_error *e)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return aep_errorf(e, AEP_EIO, "mkdir %s: %s", path, strerror(errno));
	return 0;
}

static int copy_config(struct aep_raft *r, const struct aep_raft_config *cfg, struct aep_error *e)
{
	if (cfg->name == NULL || cfg->dir == NULL || cfg->store == NULL || cfg->peers == NULL)
		return aep_errorf(e, AEP_EINVALID, "name, dir, peers and store are required");
	if (cfg->npeers == 0 || cfg->npeers > RAFT_PEERS_MAX)
		return aep_errorf(e, AEP_EINVALID, "%u peers: must be 1 to %d", cfg->npeers,
				  RAFT_PEERS_MAX);
	r->peers = aep_calloc(cfg->npeers, sizeof(*r->peers));
	if (r->peers == NULL)
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	r->npeers = cfg->npeers;
	for (unsigned i = 0; i < cfg->npeers; i++) {
		const struct aep_raft_peer *p = &cfg->peers[i];
		if (p->name == NULL || p->peer_addr == NULL)
			return aep_errorf(e, AEP_EINVALID, "peer %u: name and address required",
					  i + 1);
		for (unsigned j = 0; j < i; j++) {
			if (strcmp(r->peers[j].name, p->name) == 0 ||
			    strcmp(r->peers[j].addr, p->peer_addr) == 0)
				return aep_errorf(e, AEP_EINVALID,
						  "peer %s: duplicate name or address", p->name);
		}
		r->peers[i].name = aep_strdup(p->name);
		r->peers[i].addr = aep_strdup(p->peer_addr);
		if (r->peers[i].name == NULL || r->peers[i].addr == NULL)
			return aep_errorf(e, AEP_ENOMEM, "out of memory");
		if (strcmp(p->name, cfg->name) == 0)
			r->id = i + 1;
	}
	if (r->id == 0)
		return aep_errorf(e, AEP_EINVALID, "%s is not one of the peers", cfg->name);
	r->name = aep_strdup(cfg->name);
	r->dir = join_path(cfg->dir, "raft");
	if (r->name == NULL || r->dir == NULL)
		return aep_errorf(e, AEP_ENOMEM, "out of memory or data directory path too long");
	r->store = cfg->store;
	r->max_inflight = cfg->max_inflight ? cfg->max_inflight : 4;
	r->on_leadership = cfg->on_leadership;
	r->on_applied = cfg->on_applied;
	r->data = cfg->data;
	return 0;
}

static int bootstrap(struct aep_raft *r, struct aep_error *e)
{
	struct raft_configuration conf;
	int rv = 0;

	raft_configuration_init(&conf);
	for (unsigned i = 0; i < r->npeers; i++) {
		rv = raft_configuration_add(&conf, i + 1, r->peers[i].addr, RAFT_VOTER);
		if (rv != 0) {
			raft_error(e, rv, "raft_configuration_add", NULL);
			goto out;
		}
	}
	rv = raft_bootstrap(&r->raft, &conf);
	if (rv == RAFT_CANTBOOTSTRAP) {
		rv = 0; /* existing state: restart from it */
	} else if (rv != 0) {
		raft_error(e, rv, "raft_bootstrap", raft_errmsg(&r->raft));
	}
out:
	raft_configuration_close(&conf);
	return rv;
}

int aep_raft_start(uv_loop_t *loop, const struct aep_raft_config *cfg, struct aep_raft **out,
		   struct aep_error *e)
{
	struct aep_raft *r;
	int rv;

	/* libuv writes to peers that may have gone: a SIGPIPE would kill the
	 * whole process. */
	signal(SIGPIPE, SIG_IGN);

	r = aep_calloc(1, sizeof(*r));
	if (r == NULL)
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	r->loop = loop;
	rv = copy_config(r, cfg, e);
	if (rv != 0)
		goto err_after_alloc;
	rv = make_dir(cfg->dir, e);
	if (rv == 0)
		rv = make_dir(r->dir, e);
	if (rv != 0)
		goto err_after_alloc;

	rv = raft__tcp_init(&r->tcp, loop, r->peers[r->id - 1].addr);
	if (rv != 0) {
		rv = raft_error(e, rv, "TCP transport", r->tcp.outer.errmsg);
		goto err_after_alloc;
	}
	raft__kaio_init();
	rv = raft_uv_init(&r->io.io, loop, r->dir, &r->tcp.outer);
	if (rv != 0) {
		rv = raft_error(e, rv, r->dir, r->io.io.errmsg);
		goto err_after_tcp_init;
	}
	/* The store's snapshots are lz4 already. */
	raft_uv_set_snapshot_compression(&r->io.io, false);
	raft_uv_set_connect_retry_delay(&r->io.io, RAFT_CONNECT_RETRY_MS);
	/* Work around libraft 0.15's bugs 4-7 (docs/LIBRAFT.md). */
	raft__io_wrap(&r->io, &r->raft, loop);

	r->fsm.version = 3;
	r->fsm.data = r;
	r->fsm.apply = fsm_apply;
	r->fsm.snapshot = fsm_snapshot;
	r->fsm.restore = fsm_restore;
	r->fsm.snapshot_finalize = fsm_snapshot_finalize;
	r->fsm.snapshot_async = fsm_snapshot_async;

	rv = raft_init(&r->raft, &r->io.io, &r->fsm, r->id, r->peers[r->id - 1].addr);
	if (rv != 0) {
		rv = raft_error(e, rv, "raft_init", raft_errmsg(&r->raft));
		goto err_after_uv_init;
	}
	r->raft.data = r;
	/* From here on, failures close libraft asynchronously. */
	uv_idle_init(loop, &r->idle);
	r->idle.data = r;
	uv_timer_init(loop, &r->timer);
	r->timer.data = r;

	rv = bootstrap(r, e);
	if (rv != 0) {
		rv = e->code;
		goto err_after_raft_init;
	}
	raft_set_election_timeout(&r->raft,
				  cfg->election_timeout_ms ? cfg->election_timeout_ms : 1000);
	raft_set_heartbeat_timeout(&r->raft,
				   cfg->heartbeat_timeout_ms ? cfg->heartbeat_timeout_ms : 100);
	raft_set_snapshot_threshold(&r->raft,
				    cfg->snapshot_threshold ? cfg->snapshot_threshold : 8192);
	raft_set_snapshot_trailing(&r->raft,
				   cfg->snapshot_trailing ? cfg->snapshot_trailing : 2048);
	raft_set_pre_vote(&r->raft, true);
	/* libraft 0.15 answers a second InstallSnapshot that arrives while one
	 * is being installed with RAFT_BUSY; the leader then keeps probing
	 * that follower past its log until this timeout gives up on the
	 * snapshot (30 s by default). */
	raft_set_install_snapshot_timeout(&r->raft, RAFT_INSTALL_SNAPSHOT_MS);

	r->starting = true;
	rv = raft_start(&r->raft);
	r->starting = false;
	if (rv != 0) {
		rv = raft_error(e, rv, "raft_start",
				raft_errmsg(&r->raft)[0] ? raft_errmsg(&r->raft) : r->io.io.errmsg);
		goto err_after_raft_init;
	}
	uv_timer_start(&r->timer, timer_cb, RAFT_POLL_MS, RAFT_POLL_MS);
	*out = r;
	return 0;

err_after_raft_init:
	/* Release the rest on the loop: libraft's close is asynchronous. */
	r->closing = true;
	teardown(r);
	return rv;
err_after_uv_init:
	raft_uv_close(&r->io.io);
err_after_tcp_init:
	raft__tcp_close(&r->tcp);
err_after_alloc:
	raft_free_config(r);
	return rv;
}

/* ---- queries and leadership transfer ----------------------------------- */

static void transfer_cb(struct raft_transfer *req)
{
	struct aep_raft *r = req->data;
	r->transferring = false;
}

int aep_raft_transfer(struct aep_raft *r, const char *name, struct aep_error *e)
{
	raft_id id = 0;
	int rv;

	if (r->closing)
		return aep_errorf(e, AEP_ECANCELED, "shutting down");
	if (!is_leader(r))
		return aep_errorf(e, AEP_ENOTLEADER, "%s is not the leader", r->name);
	if (r->transferring)
		return aep_errorf(e, AEP_EUNAVAILABLE, "a leadership transfer is in progress");
	if (name != NULL) {
		for (unsigned i = 0; i < r->npeers; i++) {
			if (strcmp(r->peers[i].name, name) == 0)
				id = i + 1;
		}
		if (id == 0)
			return aep_errorf(e, AEP_ENOTFOUND, "%s: no such peer", name);
		if (id == r->id)
			return aep_errorf(e, AEP_EINVALID, "%s is already the leader", name);
	}
	memset(&r->transfer, 0, sizeof(r->transfer));
	r->transfer.data = r;
	rv = raft_transfer(&r->raft, &r->transfer, id, transfer_cb);
	if (rv != 0)
		return raft_error(e, rv, "transfer leadership", raft_errmsg(&r->raft));
	r->transferring = true;
	return 0;
}

void aep_raft_status(const struct aep_raft *r, struct aep_raft_status *out)
{
	/* libraft's getters take a non-const pointer but only read. */
	struct raft *raft = (struct raft *)&r->raft;
	raft_id id = 0;
	const char *addr = NULL;

	memset(out, 0, sizeof(*out));
	if (!r->raft_closing) {
		out->leader = raft_state(raft) == RAFT_LEADER;
		raft_leader(raft, &id, &addr);
		out->last_index = raft_last_index(raft);
		out->applied_index = raft_last_applied(raft);
	}
	if (id >= 1 && id <= r->npeers)
		out->leader_name = r->peers[id - 1].name;
	out->term = raft->current_term;
	out->commit_index = raft->commit_index;
	out->entries_applied = r->entries_applied;
	out->commands_applied = r->commands_applied;
	out->snapshots_taken = r->snapshots_taken;
	out->snapshots_installed = r->snapshots_installed;
	memcpy(out->disk_buckets, r->io.disk_buckets, sizeof(out->disk_buckets));
	out->disk_appends = r->io.disk_appends;
	out->disk_seconds = r->io.disk_seconds;
}

const char *aep_raft_name(const struct aep_raft *r)
{
	return r->name;
}
