/* raft/io.c: the workarounds for libraft 0.15's bugs 4-7 (docs/LIBRAFT.md),
 * driven on synthetic messages and a hand-made struct raft: a follower never
 * claims to match the leader beyond what the leader's messages verified, a
 * refused vote tells the candidate the higher term, an AppendEntries below
 * the snapshot is trimmed, and a send that fails at once completes through
 * its callback from the next tick instead. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "raft/raft-int.h"

/* A server whose in-memory log holds @n entries from index @first, with the
 * terms in @terms, and a snapshot at @first - 1 (when @first > 1). */
struct server {
	struct raft r;
	struct raft_entry entries[64];
};

static void server_init(struct server *s, raft_term current_term, raft_index first,
			raft_term snapshot_term, const raft_term *terms, unsigned n)
{
	memset(s, 0, sizeof(*s));
	s->r.current_term = current_term;
	s->r.log.entries = s->entries;
	s->r.log.size = 64;
	s->r.log.front = 0;
	s->r.log.back = n;
	s->r.log.offset = first - 1;
	if (first > 1) {
		s->r.log.snapshot.last_index = first - 1;
		s->r.log.snapshot.last_term = snapshot_term;
	}
	for (unsigned i = 0; i < n; i++)
		s->entries[i].term = terms[i];
}

static struct raft_message append_entries(raft_term term, raft_index prev, raft_term prev_term,
					  raft_index commit)
{
	struct raft_message m;
	memset(&m, 0, sizeof(m));
	m.type = RAFT_IO_APPEND_ENTRIES;
	m.server_id = 1;
	m.server_address = "leader";
	m.append_entries.term = term;
	m.append_entries.prev_log_index = prev;
	m.append_entries.prev_log_term = prev_term;
	m.append_entries.leader_commit = commit;
	return m;
}

static struct raft_message ae_result(raft_term term, raft_index last, bool rejected)
{
	struct raft_message m;
	memset(&m, 0, sizeof(m));
	m.type = RAFT_IO_APPEND_ENTRIES_RESULT;
	m.server_id = 1;
	m.server_address = "leader";
	m.append_entries_result.term = term;
	m.append_entries_result.rejected = rejected ? last + 1 : 0;
	m.append_entries_result.last_log_index = last;
	return m;
}

/* @n entries of @term in one raft_malloc'd batch whose i-th byte is the
 * entry's index; the entries array is raft_malloc'd too, as raft_uv does. */
static void add_entries(struct raft_message *m, raft_term term, unsigned n)
{
	struct raft_append_entries *ae = &m->append_entries;
	char *batch = raft_malloc(n);
	assert_non_null(batch);
	ae->entries = raft_malloc(n * sizeof(*ae->entries));
	assert_non_null(ae->entries);
	ae->n_entries = n;
	for (unsigned i = 0; i < n; i++) {
		batch[i] = (char)(ae->prev_log_index + 1 + i);
		ae->entries[i] = (struct raft_entry){.term = term,
						     .type = RAFT_COMMAND,
						     .buf = {.base = batch + i, .len = 1},
						     .batch = batch};
	}
}

/* What libraft does with the entries it receives in the end. */
static void entries_release(struct raft_append_entries *ae)
{
	void *batch = NULL;
	for (unsigned i = 0; i < ae->n_entries; i++) {
		if (ae->entries[i].batch != batch) {
			batch = ae->entries[i].batch;
			raft_free(batch);
		}
	}
	raft_free(ae->entries);
}

/* Bug 4: an ex-leader with a stale tail of term 2 at 6-10 hears from the
 * term-3 leader whose log matches it only up to 5. */
static void test_stale_tail_not_claimed(void **state)
{
	(void)state;
	static struct server s;
	const raft_term terms[] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 2};
	server_init(&s, 3, 1, 0, terms, 10);
	struct raft__match t = {0};

	/* A heartbeat that matches at 5: libraft answers "success, last 10"
	 * at once, and would commit up to the leader's 8. */
	struct raft_message hb = append_entries(3, 5, 1, 8);
	raft__match_recv_begin(&t, &s.r, &hb);
	assert_int_equal(hb.append_entries.leader_commit, 5);
	struct raft_message res = ae_result(3, 10, false);
	assert_true(raft__match_send(&t, &s.r, &res));
	assert_int_equal(res.append_entries_result.last_log_index, 5);
	raft__match_recv_end(&t, &s.r);
	assert_int_equal(t.matched, 5);

	/* Later replies (after a disk write) claim no more either. */
	res = ae_result(3, 10, false);
	assert_true(raft__match_send(&t, &s.r, &res));
	assert_int_equal(res.append_entries_result.last_log_index, 5);
	/* A rejection is left alone. */
	res = ae_result(3, 10, true);
	assert_false(raft__match_send(&t, &s.r, &res));
	assert_int_equal(res.append_entries_result.last_log_index, 10);
	/* A success reply in another term than the tracked leader's claims
	 * nothing. */
	res = ae_result(4, 10, false);
	assert_true(raft__match_send(&t, &s.r, &res));
	assert_int_equal(res.append_entries_result.last_log_index, 0);

	/* The leader sends its entries 6-7 (term 3); libraft replaces the
	 * stale tail with them: now 7 matches, and is claimed unchanged. */
	struct raft_message ae = append_entries(3, 5, 1, 7);
	add_entries(&ae, 3, 2);
	raft__match_recv_begin(&t, &s.r, &ae);
	assert_int_equal(ae.append_entries.leader_commit, 7);
	s.entries[5].term = 3;
	s.entries[6].term = 3;
	s.r.log.back = 7;
	raft__match_recv_end(&t, &s.r);
	entries_release(&ae.append_entries);
	assert_int_equal(t.matched, 7);
	res = ae_result(3, 7, false);
	assert_false(raft__match_send(&t, &s.r, &res));
	assert_int_equal(res.append_entries_result.last_log_index, 7);
	assert_int_equal(t.n_result_clamps, 3);
	assert_int_equal(t.n_commit_clamps, 1);
}

/* An AppendEntries that libraft did not take (its log has another term at
 * the end of the message) proves nothing; one from a stale leader does not
 * reset what the current leader proved. */
static void test_unaccepted_append_proves_nothing(void **state)
{
	(void)state;
	static struct server s;
	const raft_term terms[] = {1, 1, 1, 2, 2, 2};
	server_init(&s, 3, 1, 0, terms, 6);
	struct raft__match t = {0};

	struct raft_message hb = append_entries(3, 3, 1, 0);
	raft__match_recv_begin(&t, &s.r, &hb);
	raft__match_recv_end(&t, &s.r);
	assert_int_equal(t.matched, 3);

	/* prev 5 with term 3: the follower has term 2 there and refuses. */
	hb = append_entries(3, 5, 3, 0);
	raft__match_recv_begin(&t, &s.r, &hb);
	raft__match_recv_end(&t, &s.r);
	assert_int_equal(t.matched, 3);

	/* A term-2 leader that did not hear of term 3 yet. */
	hb = append_entries(2, 6, 2, 6);
	raft__match_recv_begin(&t, &s.r, &hb);
	struct raft_message res = ae_result(3, 6, false);
	assert_true(raft__match_send(&t, &s.r, &res));
	assert_int_equal(res.append_entries_result.last_log_index, 3);
	raft__match_recv_end(&t, &s.r);
	assert_int_equal(t.term, 3);
	assert_int_equal(t.matched, 3);

	/* An InstallSnapshot of the current leader proves its last index. */
	struct raft_message is;
	memset(&is, 0, sizeof(is));
	is.type = RAFT_IO_INSTALL_SNAPSHOT;
	is.install_snapshot.term = 3;
	is.install_snapshot.last_index = 40;
	is.install_snapshot.last_term = 3;
	raft__match_recv_begin(&t, &s.r, &is);
	raft__match_recv_end(&t, &s.r);
	assert_int_equal(t.matched, 40);
}

/* Bug 5: a refused (pre-)vote carries the refuser's own, higher term. */
static void test_refused_vote_carries_own_term(void **state)
{
	(void)state;
	static struct server s;
	server_init(&s, 7, 1, 0, NULL, 0);
	struct raft__match t = {0};
	struct raft_message m;
	memset(&m, 0, sizeof(m));
	m.type = RAFT_IO_REQUEST_VOTE_RESULT;
	m.request_vote_result.term = 5;
	m.request_vote_result.vote_granted = false;
	m.request_vote_result.pre_vote = raft_tribool_true;
	assert_true(raft__match_send(&t, &s.r, &m));
	assert_int_equal(m.request_vote_result.term, 7);
	assert_int_equal(t.n_vote_terms, 1);

	/* A granted vote, or a refusal already at our term, is left alone. */
	m.request_vote_result.term = 5;
	m.request_vote_result.vote_granted = true;
	assert_false(raft__match_send(&t, &s.r, &m));
	assert_int_equal(m.request_vote_result.term, 5);
	m.request_vote_result.term = 7;
	m.request_vote_result.vote_granted = false;
	assert_false(raft__match_send(&t, &s.r, &m));
	assert_int_equal(m.request_vote_result.term, 7);
}

/* Bug 6: the follower's snapshot covers up to 100 (term 4) and its log
 * was compacted; the leader resends from 91. */
static void test_append_below_snapshot_trimmed(void **state)
{
	(void)state;
	static struct server s;
	server_init(&s, 5, 101, 4, NULL, 0);
	struct raft__match t = {0};

	/* 91-105: 91-100 are dropped, 101-105 kept in their batch. */
	struct raft_message m = append_entries(5, 90, 4, 105);
	add_entries(&m, 5, 15);
	raft__match_recv_begin(&t, &s.r, &m);
	assert_int_equal(m.append_entries.prev_log_index, 100);
	assert_int_equal(m.append_entries.prev_log_term, 4);
	assert_int_equal(m.append_entries.n_entries, 5);
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(((char *)m.append_entries.entries[i].buf.base)[0], 101 + i);
	assert_int_equal(m.append_entries.leader_commit, 105);
	assert_int_equal(t.pending, 105);
	assert_int_equal(t.n_ae_trims, 1);
	raft__match_recv_end(&t, &s.r);
	entries_release(&m.append_entries);

	/* 91-95, all covered: an empty AppendEntries at the snapshot, whose
	 * batch is freed (the leak checker would tell). */
	m = append_entries(5, 90, 4, 95);
	add_entries(&m, 5, 5);
	raft__match_recv_begin(&t, &s.r, &m);
	assert_int_equal(m.append_entries.n_entries, 0);
	assert_null(m.append_entries.entries);
	assert_int_equal(m.append_entries.prev_log_index, 100);
	assert_int_equal(m.append_entries.leader_commit, 95);
	raft__match_recv_end(&t, &s.r);
	assert_int_equal(t.matched, 100);

	/* Two batches, 91-95 and 96-105: the first is freed, the second kept. */
	m = append_entries(5, 90, 4, 105);
	struct raft_message a = append_entries(5, 90, 4, 0), b = append_entries(5, 95, 4, 0);
	add_entries(&a, 5, 5);
	add_entries(&b, 5, 10);
	m.append_entries.entries = raft_malloc(15 * sizeof(struct raft_entry));
	assert_non_null(m.append_entries.entries);
	memcpy(m.append_entries.entries, a.append_entries.entries, 5 * sizeof(struct raft_entry));
	memcpy(m.append_entries.entries + 5, b.append_entries.entries,
	       10 * sizeof(struct raft_entry));
	m.append_entries.n_entries = 15;
	raft_free(a.append_entries.entries);
	raft_free(b.append_entries.entries);
	raft__match_recv_begin(&t, &s.r, &m);
	assert_int_equal(m.append_entries.n_entries, 5);
	assert_int_equal(((char *)m.append_entries.entries[0].buf.base)[0], 101);
	raft__match_recv_end(&t, &s.r);
	entries_release(&m.append_entries);

	/* Nothing below the snapshot, or a stale leader: untouched. */
	m = append_entries(5, 100, 4, 100);
	raft__match_recv_begin(&t, &s.r, &m);
	raft__match_recv_end(&t, &s.r);
	m = append_entries(4, 90, 4, 90);
	add_entries(&m, 4, 3);
	raft__match_recv_begin(&t, &s.r, &m);
	assert_int_equal(m.append_entries.prev_log_index, 90);
	assert_int_equal(m.append_entries.n_entries, 3);
	raft__match_recv_end(&t, &s.r);
	entries_release(&m.append_entries);
	assert_int_equal(t.n_ae_trims, 3);
}

/* ---- the wrapped raft_io, on a fake inner I/O ---------------------------- */

static struct {
	raft_io_tick_cb tick;
	raft_io_recv_cb recv;
	int send_rv;
	struct raft_message sent;
	unsigned nsent;
	unsigned nclosed;
	/* what "libraft" saw */
	unsigned nticks;
	struct raft_message received;
	int send_status;
	unsigned nsend_cbs;
	unsigned send_cbs_at_tick;
	struct raft__io *w;
} fake;

static int fake_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
		      raft_io_recv_cb recv)
{
	(void)io;
	(void)msecs;
	fake.tick = tick;
	fake.recv = recv;
	return 0;
}

static int fake_send(struct raft_io *io, struct raft_io_send *req,
		     const struct raft_message *message, raft_io_send_cb cb)
{
	(void)io;
	(void)req;
	(void)cb;
	fake.sent = *message;
	fake.nsent++;
	return fake.send_rv;
}

static void fake_close(struct raft_io *io, raft_io_close_cb cb)
{
	(void)io;
	(void)cb;
	fake.nclosed++;
}

static void libraft_tick(struct raft_io *io)
{
	(void)io;
	fake.nticks++;
	fake.send_cbs_at_tick = fake.nsend_cbs;
}

/* libraft answers a heartbeat at once with its last stored index. */
static void libraft_recv(struct raft_io *io, struct raft_message *m)
{
	static struct raft_io_send req;
	fake.received = *m;
	struct raft_message res = ae_result(m->append_entries.term, 10, false);
	assert_int_equal(io->send(io, &req, &res, NULL), 0);
}

static void libraft_send_cb(struct raft_io_send *req, int status)
{
	(void)req;
	fake.send_status = status;
	fake.nsend_cbs++;
}

static void test_wrapped_io(void **state)
{
	(void)state;
	static struct server s;
	static struct raft__io w;
	const raft_term terms[] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 2};
	server_init(&s, 3, 1, 0, terms, 10);
	memset(&w, 0, sizeof(w));
	memset(&fake, 0, sizeof(fake));
	w.io.start = fake_start;
	w.io.send = fake_send;
	w.io.close = fake_close;
	raft__io_wrap(&w, &s.r, NULL);
	assert_int_equal(w.io.start(&w.io, 100, libraft_tick, libraft_recv), 0);
	assert_non_null(fake.recv);

	/* Bug 4 through the wrapper: received commit and sent index clamped. */
	struct raft_message hb = append_entries(3, 5, 1, 9);
	fake.recv(&w.io, &hb);
	assert_int_equal(fake.received.append_entries.leader_commit, 5);
	assert_int_equal(fake.nsent, 1);
	assert_int_equal(fake.sent.append_entries_result.last_log_index, 5);

	/* Bug 7: a send that fails at once returns 0 and completes with its
	 * error from the next tick, before libraft's tick runs. */
	struct raft_io_send req;
	struct raft_message vote;
	memset(&vote, 0, sizeof(vote));
	vote.type = RAFT_IO_REQUEST_VOTE_RESULT;
	vote.request_vote_result.term = 3;
	fake.send_rv = RAFT_NOMEM;
	assert_int_equal(w.io.send(&w.io, &req, &vote, libraft_send_cb), 0);
	assert_int_equal(fake.nsend_cbs, 0);
	fake.tick(&w.io);
	assert_int_equal(fake.nsend_cbs, 1);
	assert_int_equal(fake.send_status, RAFT_NOMEM);
	assert_int_equal(fake.send_cbs_at_tick, 1);
	assert_int_equal(fake.nticks, 1);

	/* Pending ones complete before the I/O closes. */
	assert_int_equal(w.io.send(&w.io, &req, &vote, libraft_send_cb), 0);
	w.io.close(&w.io, NULL);
	assert_int_equal(fake.nsend_cbs, 2);
	assert_int_equal(fake.nclosed, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stale_tail_not_claimed),
	    cmocka_unit_test(test_unaccepted_append_proves_nothing),
	    cmocka_unit_test(test_refused_vote_carries_own_term),
	    cmocka_unit_test(test_append_below_snapshot_trimmed),
	    cmocka_unit_test(test_wrapped_io),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
