/* Workarounds for five bugs of libraft 0.15.0, at the raft_io boundary.
 *
 * libraft talks to the disk and the network only through struct raft_io.
 * aep_raft_start() lets raft_uv_init() fill one, then raft__io_wrap()
 * replaces its start, send, close, append and snapshot_put methods with the
 * wrappers below before raft_init() sees it: every message libraft
 * receives passes through recv_wrapped() and every message it sends
 * through send_wrapped(), where the rules below fix what libraft gets
 * wrong. Rules 1-3 (raft__match_*) take plain structs, so the simulation in
 * tests/sim/ can apply them to libraft's fixture I/O too. The sim found
 * bugs 1-4, whose reproducers run the sim without its own copy of the
 * workarounds; the fault test on real processes found bug 5:
 *
 * 1. Safety: stale tail counted as a match (docs/LIBRAFT.md, bug 4).
 *    A follower that accepts an AppendEntries replies with last_log_index =
 *    its last *stored* index, not prev_log_index + n_entries, and the leader
 *    takes that as the follower's match index. An old leader that appended
 *    entries it never committed while cut off, then rejoins, thus tells the
 *    new leader that it holds the new leader's (different) entries at those
 *    indexes: the leader counts it for commitment, commits an entry only it
 *    holds, and acknowledged writes can be lost. The follower would also
 *    trust leader_commit beyond what the AppendEntries verified.
 *    Rule: track the highest index known to match the current leader's log
 *    (prev_log_index + n_entries of each AppendEntries accepted, the last
 *    index of each InstallSnapshot); clamp last_log_index of outgoing
 *    successful AppendEntries results to it, and clamp an incoming
 *    leader_commit to prev_log_index + n_entries.
 *    Reproduce: tests/sim/aep-sim-repro-stale-tail (exits 1 while the bug
 *    is there) or tests/sim/aep-sim --seed 19 --peers 3 --raw-io, both in
 *    the build directory.
 *
 * 2. Liveness with pre-vote: refused vote without the higher term (bug 5).
 *    A server that refuses a (pre-)vote because its own term is higher
 *    replies with the request's term instead of its own, so the candidate
 *    never learns the higher term; two servers can then refuse each other
 *    for ever and no leader is elected.
 *    Rule: a refused vote carries the sender's current term (as Raft's
 *    RequestVote reply is specified).
 *    Reproduce: tests/sim/aep-sim --raw-io --seed 330 --peers 3.
 *
 * 3. Crash: AppendEntries below the follower's snapshot (bug 6).
 *    A follower that took a snapshot and compacted its log, then receives
 *    an AppendEntries whose prev_log_index lies below its snapshot (a
 *    leader resending a catch-up batch), logs "No log entries found at
 *    index N" and dereferences NULL.
 *    Rule: entries up to the follower's snapshot are committed, so a leader
 *    of the current term holds the same ones: drop them from the message
 *    and start it at the snapshot (prev_log_index and prev_log_term of the
 *    snapshot's last entry).
 *    Reproduce: tests/sim/aep-sim --raw-io --seed 316 --peers 3.
 *
 * 4. Double free when a send fails at once (bug 7).
 *    When a follower rejects an AppendEntries that carries entries, libraft
 *    frees the entries' batch, then sends the reply; if io->send() returns
 *    an error, its caller frees the batch again. raft_uv's send fails at
 *    once only when it runs out of memory.
 *    Rule: a send that fails at once returns 0, and its callback gets the
 *    error from the next tick (or when the I/O closes), outside libraft.
 *    At most RAFT__IO_DEFERRED_MAX are held; beyond that the error is
 *    returned as before.
 *    Reproduce: tests/sim/aep-sim --raw-io --seed 46 --peers 5.
 *
 * 5. Crash or stall after a failed disk write (bug 8).
 *    libraft 0.15 mishandles an append that fails (ENOSPC): the leader
 *    fires the callback of the first entry only, truncates its in-memory
 *    log although the entries were already sent to the followers (which
 *    may commit them), and leaves the requests of the other entries queued;
 *    raft_uv, when it cannot prepare a new open segment, fails the pending
 *    appends but has already counted their indexes. The master then
 *    crashes (NULL dereference in libraft) or stays leader without ever
 *    committing again.
 *    Rule (the space guard): libraft must not see ENOSPC. The free space of
 *    the data directory's file system is checked before every append,
 *    snapshot and received entry; below a reserve (three open segments
 *    plus two of the largest snapshot) appends and snapshots are refused at
 *    once with RAFT_BUSY (libraft unwinds that cleanly: raft_apply fails,
 *    nothing was sent; AEP answers Unavailable); received messages whose
 *    handling writes to the disk (entries, a snapshot, a higher term or a
 *    vote to persist, an election to start) are dropped as if lost, since
 *    a failed set_term or set_vote stops libraft for good; and a leader
 *    hands leadership to a follower. Once space is back (one segment above
 *    the reserve) everything flows again and the follower catches up.
 *    Reproduce: tests/faults/faults.py --masters 3 --kinds
 *    disk-full,transfer-leader --duration 150 (see docs/LIBRAFT.md).
 *
 * All rules only ever make a server claim less (a lower match index, a
 * lower commit index, fewer entries that are already in its snapshot) or
 * tell a candidate the truth about a higher term, so they cannot break a
 * correct libraft. */
#include "raft/raft-int.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "lib/lib.h"

/* ---- the rules ---------------------------------------------------------- */

raft_term raft__log_term_at(const struct raft *r, raft_index index)
{
	const struct raft_log *l = &r->log;
	size_t used;

	if (l->size == 0)
		used = 0;
	else
		used = l->back >= l->front ? l->back - l->front : l->size - l->front + l->back;
	if (index > l->offset && index <= l->offset + used)
		return l->entries[(l->front + (index - l->offset - 1)) % l->size].term;
	if (index != 0 && index == l->snapshot.last_index)
		return l->snapshot.last_term;
	return 0;
}

/* Rule 3: drop the entries of @ae that @r's snapshot covers. Consecutive
 * entries may share a batch (as libraft's own entry_batches__destroy
 * assumes); a batch is freed once no kept entry uses it. */
static void trim_below_snapshot(struct raft__match *t, const struct raft *r,
				struct raft_append_entries *ae)
{
	raft_index snap = r->log.snapshot.last_index;
	if (snap == 0 || ae->prev_log_index >= snap || ae->term < r->current_term)
		return;
	raft_index covered = snap - ae->prev_log_index; /* entries at or below snap */
	unsigned k = covered >= ae->n_entries ? ae->n_entries : (unsigned)covered;
	void *kept_batch = k < ae->n_entries ? ae->entries[k].batch : NULL;
	void *freed = NULL;
	for (unsigned i = 0; i < k; i++) {
		void *b = ae->entries[i].batch;
		if (b != NULL && b != freed && b != kept_batch) {
			raft_free(b);
			freed = b;
		}
	}
	if (k == ae->n_entries) {
		raft_free(ae->entries);
		ae->entries = NULL;
		ae->n_entries = 0;
	} else if (k > 0) {
		memmove(ae->entries, ae->entries + k, (ae->n_entries - k) * sizeof(*ae->entries));
		ae->n_entries -= k;
	}
	ae->prev_log_index = snap;
	ae->prev_log_term = r->log.snapshot.last_term;
	t->n_ae_trims++;
}

void raft__match_recv_begin(struct raft__match *t, const struct raft *r, struct raft_message *m)
{
	raft_term term = 0;

	t->in_recv = true;
	t->recv_type = m->type;
	t->recv_term = 0;
	t->pending = 0;
	t->pending_term = 0;
	if (m->type == RAFT_IO_APPEND_ENTRIES) {
		struct raft_append_entries *ae = &m->append_entries;
		trim_below_snapshot(t, r, ae);
		raft_index upto = ae->prev_log_index + ae->n_entries;
		if (ae->leader_commit > upto) {
			ae->leader_commit = upto;
			t->n_commit_clamps++;
		}
		term = ae->term;
		t->pending = upto;
		t->pending_term =
		    ae->n_entries > 0 ? ae->entries[ae->n_entries - 1].term : ae->prev_log_term;
	} else if (m->type == RAFT_IO_INSTALL_SNAPSHOT) {
		term = m->install_snapshot.term;
		t->pending = m->install_snapshot.last_index;
		t->pending_term = m->install_snapshot.last_term;
	}
	/* A message from a stale leader is refused: it says nothing about the
	 * current leader's log. */
	if (term == 0 || term < r->current_term) {
		t->pending = 0;
		return;
	}
	t->recv_term = term;
	if (term != t->term) {
		t->term = term;
		t->matched = 0;
	}
}

void raft__match_recv_end(struct raft__match *t, const struct raft *r)
{
	bool matches = false;

	t->in_recv = false;
	if (t->recv_term == 0 || r->current_term != t->recv_term || t->pending <= t->matched)
		return;
	if (t->recv_type == RAFT_IO_INSTALL_SNAPSHOT)
		matches = true; /* a snapshot holds committed entries only */
	else if (t->recv_type == RAFT_IO_APPEND_ENTRIES)
		matches = raft__log_term_at(r, t->pending) == t->pending_term;
	if (matches)
		t->matched = t->pending;
}

bool raft__match_send(struct raft__match *t, const struct raft *r, struct raft_message *m)
{
	if (m->type == RAFT_IO_APPEND_ENTRIES_RESULT && m->append_entries_result.rejected == 0) {
		struct raft_append_entries_result *res = &m->append_entries_result;
		raft_index lim = t->term == res->term ? t->matched : 0;
		if (t->in_recv && t->pending > lim)
			lim = t->pending; /* the reply to the message being received */
		if (res->last_log_index > lim) {
			res->last_log_index = lim;
			t->n_result_clamps++;
			return true;
		}
	} else if (m->type == RAFT_IO_REQUEST_VOTE_RESULT && !m->request_vote_result.vote_granted &&
		   m->request_vote_result.term < r->current_term) {
		m->request_vote_result.term = r->current_term;
		t->n_vote_terms++;
		return true;
	}
	return false;
}

/* ---- the raft_io wrappers ----------------------------------------------- */

static struct raft__io *wrapper_of(struct raft_io *io)
{
	return (struct raft__io *)((char *)io - offsetof(struct raft__io, io));
}

/* ---- the disk space guard (rule 5) -------------------------------------- */

bool raft__space_low(bool was_low, uint64_t free_bytes, uint64_t max_snapshot)
{
	uint64_t reserve = 3 * RAFT__IO_SEGMENT_BYTES + 2 * max_snapshot;

	if (was_low)
		reserve += RAFT__IO_SEGMENT_BYTES;
	return free_bytes < reserve;
}

/* Re-check the free space; returns whether libraft is to be held back. */
static bool space_check(struct raft__io *w)
{
	struct raft__space *sp = &w->space;
	struct statvfs st;
	bool low;

	if (sp->dir[0] == '\0' || statvfs(sp->dir, &st) != 0)
		return false;
	sp->free_bytes = (uint64_t)st.f_bavail * st.f_frsize;
	low = raft__space_low(sp->low, sp->free_bytes, sp->max_snapshot);
	if (low != sp->low)
		fprintf(stderr, "raft: %s: %llu MiB free: %s\n", sp->dir,
			(unsigned long long)(sp->free_bytes >> 20),
			low ? "low on disk space, refusing new entries"
			    : "disk space back, accepting entries");
	sp->low = low;
	return low;
}

/* Room, at the last check, to write @bytes and two segments more. */
static bool space_fits(const struct raft__io *w, uint64_t bytes)
{
	return w->space.dir[0] != '\0' && w->space.free_bytes > bytes + 2 * RAFT__IO_SEGMENT_BYTES;
}

static void space_refuse(struct raft__io *w, const char *what)
{
	snprintf(w->io.errmsg, sizeof(w->io.errmsg),
		 "%s refused: low on disk space (%llu MiB free in %.150s)", what,
		 (unsigned long long)(w->space.free_bytes >> 20), w->space.dir);
}

static void space_transfer_cb(struct raft_transfer *req)
{
	struct raft__io *w = req->data;
	w->space.transferring = false;
}

/* A leader low on space asks libraft to hand leadership to a follower. Runs
 * from the tick, outside libraft's own stack. */
static void space_maybe_transfer(struct raft__io *w)
{
	struct raft *r = w->raft;

	if (!w->space.low || w->space.transferring || raft_state(r) != RAFT_LEADER ||
	    r->transfer != NULL)
		return;
	memset(&w->space.transfer, 0, sizeof(w->space.transfer));
	w->space.transfer.data = w;
	if (raft_transfer(r, &w->space.transfer, 0, space_transfer_cb) == 0) {
		w->space.transferring = true;
		w->space.n_transfers++;
	}
}

/* The term a received message carries. */
static raft_term message_term(const struct raft_message *m)
{
	switch (m->type) {
	case RAFT_IO_APPEND_ENTRIES: return m->append_entries.term;
	case RAFT_IO_APPEND_ENTRIES_RESULT: return m->append_entries_result.term;
	case RAFT_IO_REQUEST_VOTE: return m->request_vote.term;
	case RAFT_IO_REQUEST_VOTE_RESULT: return m->request_vote_result.term;
	case RAFT_IO_INSTALL_SNAPSHOT: return m->install_snapshot.term;
	case RAFT_IO_TIMEOUT_NOW: return m->timeout_now.term;
	default: return 0;
	}
}

/* Whether libraft, handling @m, may write to the disk: entries or a
 * snapshot to store, a higher term to persist (set_term), a vote to
 * persist (set_vote), an election to start (TimeoutNow; or a pre-vote won,
 * after which the real election persists its term). Such messages are
 * dropped while space is low, as if lost; raft_uv's set_term and set_vote
 * failing would stop libraft for good (RAFT_UNAVAILABLE). */
static bool space_needs_disk(const struct raft *r, const struct raft_message *m)
{
	switch (m->type) {
	case RAFT_IO_APPEND_ENTRIES:
		if (m->append_entries.n_entries > 0)
			return true;
		break;
	case RAFT_IO_INSTALL_SNAPSHOT:
	case RAFT_IO_TIMEOUT_NOW:
	case RAFT_IO_REQUEST_VOTE_RESULT: return true;
	case RAFT_IO_REQUEST_VOTE:
		if (!m->request_vote.pre_vote)
			return true;
		break;
	default: break;
	}
	return message_term(m) > r->current_term;
}

/* What handling @m may write beyond raft_uv's metadata; entries count as
 * too much, they wait until the reserve is there. */
static uint64_t message_bytes(const struct raft_message *m)
{
	if (m->type == RAFT_IO_INSTALL_SNAPSHOT)
		return m->install_snapshot.data.len;
	if (m->type == RAFT_IO_APPEND_ENTRIES && m->append_entries.n_entries > 0)
		return UINT64_MAX / 2;
	return 0;
}

/* Free what a received message owns when it is dropped instead of being
 * handed to libraft (which would free the same). */
static void message_drop(struct raft_message *m)
{
	if (m->type == RAFT_IO_APPEND_ENTRIES) {
		struct raft_append_entries *ae = &m->append_entries;
		void *freed = NULL;

		for (unsigned i = 0; i < ae->n_entries; i++) {
			void *b = ae->entries[i].batch;
			if (b != NULL && b != freed) {
				raft_free(b);
				freed = b;
			}
		}
		raft_free(ae->entries);
		ae->entries = NULL;
		ae->n_entries = 0;
	} else if (m->type == RAFT_IO_INSTALL_SNAPSHOT) {
		raft_configuration_close(&m->install_snapshot.conf);
		raft_free(m->install_snapshot.data.base);
	}
}

/* An append handed to raft_uv: libraft's request and callback. */
struct space_append {
	struct raft_io_append req; /* what raft_uv gets */
	struct raft_io_append *orig;
	raft_io_append_cb cb;
	struct raft__io *w;
	uint64_t start_ns;
};

const unsigned AEP_RAFT_DISK_BUCKETS_MS[AEP_RAFT_DISK_NBUCKETS] = {1,	2,   5,	  10,	25,  50,
								   100, 250, 500, 1000, 2500};

static void disk_observe(struct raft__io *w, uint64_t ns)
{
	w->disk_appends++;
	w->disk_seconds += (double)ns / 1e9;
	for (unsigned i = 0; i < AEP_RAFT_DISK_NBUCKETS; i++) {
		if (ns <= (uint64_t)AEP_RAFT_DISK_BUCKETS_MS[i] * 1000000)
			w->disk_buckets[i]++;
	}
}

static void append_done(struct raft_io_append *req, int status)
{
	struct space_append *a = req->data;
	struct raft_io_append *orig = a->orig;
	raft_io_append_cb cb = a->cb;

	if (a->w->loop != NULL)
		disk_observe(a->w, uv_hrtime() - a->start_ns);
	if (status != 0) {
		/* The disk filled between the check and the write (or the
		 * guard is off): libraft mishandles this, so say it happened. */
		a->w->space.n_failed_appends++;
		fprintf(stderr, "raft: %s: append failed (libraft code %d)%s\n",
			a->w->space.dir[0] ? a->w->space.dir : "data directory", status,
			a->w->space.dir[0] ? " despite the disk space guard" : "");
	}
	aep_free(a);
	orig->cb = cb;
	cb(orig, status);
}

static int append_wrapped(struct raft_io *io, struct raft_io_append *req,
			  const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
	struct raft__io *w = wrapper_of(io);
	struct space_append *a;
	int rv;

	/* Only a leader's appends come from raft_apply() and raft_barrier(),
	 * which unwind a refusal cleanly; libraft stops for good when a
	 * follower's append fails at once. A follower low on space gets no
	 * entries (recv_wrapped drops them); one that arrives anyway (a message
	 * received before the disk filled) goes to raft_uv, whose open
	 * segments are preallocated. */
	if (space_check(w)) {
		if (raft_state(w->raft) == RAFT_LEADER) {
			w->space.n_refused_appends++;
			space_refuse(w, "append");
			return RAFT_BUSY;
		}
		w->space.n_low_appends++;
	}
	a = aep_malloc(sizeof(*a));
	if (a == NULL)
		return w->orig_append(io, req, entries, n, cb); /* only unobserved */
	a->req.data = a;
	a->orig = req;
	a->cb = cb;
	a->w = w;
	a->start_ns = uv_hrtime();
	rv = w->orig_append(io, &a->req, entries, n, append_done);
	if (rv != 0)
		aep_free(a);
	return rv;
}

static int snapshot_put_wrapped(struct raft_io *io, unsigned trailing,
				struct raft_io_snapshot_put *req,
				const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
	struct raft__io *w = wrapper_of(io);
	uint64_t size = 0;

	for (unsigned i = 0; i < snapshot->n_bufs; i++)
		size += snapshot->bufs[i].len;
	if (size > w->space.max_snapshot)
		w->space.max_snapshot = size;
	/* trailing is 0 when a follower installs a snapshot it received; that
	 * failing at once stops libraft, and recv_wrapped drops such messages
	 * while space is low. A snapshot of our own is retried later; but one
	 * that fits is taken even then, since it lets raft_uv delete the log
	 * behind it: refusing it could keep a master low for good. */
	if (trailing > 0 && space_check(w) && !space_fits(w, size)) {
		w->space.n_refused_snapshots++;
		space_refuse(w, "snapshot");
		return RAFT_BUSY;
	}
	return w->orig_snapshot_put(io, trailing, req, snapshot, cb);
}

/* The first members of libraft 0.15's struct uv (src/uv.h), which
 * raft_uv_init() stores in io->impl. Read only to learn the data
 * directory, and only after checking that the back pointer is @io and that
 * the string names a directory. */
struct uv_head {
	struct raft_io *io;
	struct uv_loop_s *loop;
	char dir[];
};

static void space_init(struct raft__io *w)
{
	const struct uv_head *uv = w->io.impl;
	struct stat st;
	size_t len;

	memset(&w->space, 0, sizeof(w->space));
	const char *guard = getenv("AEP_RAFT_SPACE_GUARD");
	if (guard != NULL && strcmp(guard, "off") == 0) {
		/* the reproducer of docs/LIBRAFT.md, bug 8 */
		fprintf(stderr, "raft: AEP_RAFT_SPACE_GUARD=off: disk space guard off\n");
		return;
	}
	if (uv == NULL || uv->io != &w->io)
		goto off;
	len = strnlen(uv->dir, sizeof(w->space.dir));
	if (len == 0 || len == sizeof(w->space.dir) || stat(uv->dir, &st) != 0 ||
	    !S_ISDIR(st.st_mode))
		goto off;
	memcpy(w->space.dir, uv->dir, len + 1);
	return;
off:
	fprintf(stderr, "raft: cannot find raft_uv's data directory: disk space guard off\n");
}

/* Complete the sends that failed at once, in order, with their error. */
static void flush_deferred(struct raft__io *w)
{
	while (w->ndeferred > 0) {
		struct raft__deferred_send d = w->deferred[0];
		w->ndeferred--;
		memmove(w->deferred, w->deferred + 1, w->ndeferred * sizeof(*w->deferred));
		d.cb(d.req, d.status);
	}
}

static void recv_wrapped(struct raft_io *io, struct raft_message *m)
{
	struct raft__io *w = wrapper_of(io);
	/* While space is low, what fits still passes: a snapshot replaces the
	 * whole log (how a master that fell behind on a small disk gets its
	 * space back), and a higher term, a vote or a heartbeat write only
	 * raft_uv's small metadata file; without those the master would never
	 * learn the leader's term, answer it, or be sent that snapshot.
	 * Entries wait for the reserve (a new segment is where ENOSPC hurts). */
	if (space_needs_disk(w->raft, m) && space_check(w) && !space_fits(w, message_bytes(m))) {
		w->space.n_dropped++;
		message_drop(m);
		return;
	}
	raft__match_recv_begin(&w->match, w->raft, m);
	w->recv_cb(io, m);
	raft__match_recv_end(&w->match, w->raft);
}

static void tick_wrapped(struct raft_io *io)
{
	struct raft__io *w = wrapper_of(io);
	flush_deferred(w);
	space_check(w);
	space_maybe_transfer(w);
	if (raft_state(w->raft) == RAFT_UNAVAILABLE && !w->space.unavailable) {
		/* libraft stops for good after some I/O errors; say so. */
		w->space.unavailable = true;
		fprintf(stderr, "raft: libraft stopped (unavailable): %s\n", raft_errmsg(w->raft));
	}
	w->tick_cb(io);
}

static int start_wrapped(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
			 raft_io_recv_cb recv)
{
	struct raft__io *w = wrapper_of(io);
	w->tick_cb = tick;
	w->recv_cb = recv;
	return w->orig_start(io, msecs, tick_wrapped, recv_wrapped);
}

static int send_wrapped(struct raft_io *io, struct raft_io_send *req,
			const struct raft_message *message, raft_io_send_cb cb)
{
	struct raft__io *w = wrapper_of(io);
	struct raft_message copy = *message;
	bool changed = raft__match_send(&w->match, w->raft, &copy);
	int rv = w->orig_send(io, req, changed ? &copy : message, cb);
	if (rv == 0 || cb == NULL || w->ndeferred == RAFT__IO_DEFERRED_MAX)
		return rv;
	req->cb = cb;
	w->deferred[w->ndeferred++] = (struct raft__deferred_send){req, cb, rv};
	return 0;
}

/* ---- async_work ----------------------------------------------------------
 *
 * libraft 0.15 encodes snapshots off the loop only through io->async_work
 * (io version 2), which its own raft_uv does not have. A job runs on the
 * loop's thread pool; its callback runs on the loop. Jobs that finish once
 * libraft is closing the I/O report RAFT_CANCELED (nothing may be written
 * any more), and libraft hears that the I/O is closed only after the last
 * job's callback. */
struct async_job {
	uv_work_t work;
	struct raft__io *w;
	struct raft_io_async_work *req;
	int status;
};

static void async_run(uv_work_t *work)
{
	struct async_job *job = work->data;
	job->status = job->req->work(job->req);
}

static void maybe_close_done(struct raft__io *w)
{
	raft_io_close_cb cb = w->close_cb;
	if (!w->closed || w->async_pending > 0 || cb == NULL)
		return;
	w->close_cb = NULL;
	cb(&w->io);
}

static void async_done(uv_work_t *work, int status)
{
	struct async_job *job = work->data;
	struct raft__io *w = job->w;
	struct raft_io_async_work *req = job->req;
	int rv = w->closing ? RAFT_CANCELED : status != 0 ? RAFT_IOERR : job->status;

	aep_free(job);
	w->async_pending--;
	req->cb(req, rv);
	maybe_close_done(w);
}

static int async_work_wrapped(struct raft_io *io, struct raft_io_async_work *req,
			      raft_io_async_work_cb cb)
{
	struct raft__io *w = wrapper_of(io);
	struct async_job *job;

	if (w->closing)
		return RAFT_CANCELED;
	job = aep_malloc(sizeof(*job));
	if (job == NULL)
		return RAFT_NOMEM;
	job->work.data = job;
	job->w = w;
	job->req = req;
	job->status = 0;
	req->cb = cb;
	if (uv_queue_work(w->loop, &job->work, async_run, async_done) != 0) {
		aep_free(job);
		return RAFT_IOERR;
	}
	w->async_pending++;
	return 0;
}

static void orig_closed(struct raft_io *io)
{
	struct raft__io *w = wrapper_of(io);
	w->closed = true;
	maybe_close_done(w);
}

static void close_wrapped(struct raft_io *io, raft_io_close_cb cb)
{
	struct raft__io *w = wrapper_of(io);
	/* libraft closes its I/O from raft_close(), outside its callbacks, and
	 * still expects every send to complete. */
	flush_deferred(w);
	w->closing = true;
	w->close_cb = cb;
	w->orig_close(io, orig_closed);
}

void raft__io_wrap(struct raft__io *w, struct raft *raft, struct uv_loop_s *loop)
{
	w->raft = raft;
	w->loop = loop;
	w->async_pending = 0;
	w->closing = false;
	w->closed = false;
	w->close_cb = NULL;
	memset(w->disk_buckets, 0, sizeof(w->disk_buckets));
	w->disk_appends = 0;
	w->disk_seconds = 0;
	memset(&w->match, 0, sizeof(w->match));
	w->ndeferred = 0;
	w->orig_start = w->io.start;
	w->orig_send = w->io.send;
	w->orig_close = w->io.close;
	w->orig_append = w->io.append;
	w->orig_snapshot_put = w->io.snapshot_put;
	w->io.start = start_wrapped;
	w->io.send = send_wrapped;
	w->io.close = close_wrapped;
	w->io.append = append_wrapped;
	w->io.snapshot_put = snapshot_put_wrapped;
	if (loop != NULL) {
		w->io.version = 2;
		w->io.async_work = async_work_wrapped;
	}
	space_init(w);
}
