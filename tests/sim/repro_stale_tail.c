/* Minimal reproducer of a libraft 0.15 safety bug, with only libraft's
 * fixture (no AEP code): a leader commits an entry that only it holds.
 *
 * A follower that accepts an AppendEntries answers with last_log_index =
 * its last *stored* index instead of prev_log_index + n_entries, and the
 * leader takes that as the follower's match index. So a follower holding a
 * stale tail (an ex-leader's uncommitted entries) is counted as holding the
 * new leader's different entries at the same indexes.
 *
 *   1. Three servers; server 0 leads term 2; one entry is committed.
 *   2. Server 0 is cut off and appends three entries it cannot commit.
 *   3. Servers 1 and 2 elect a new leader L in a later term; the third server O
 *      is then cut off from L.
 *   4. Server 0 reconnects to L; L appends entry E (in its term).
 *   5. L answers server 0's heartbeat-accept (last_log_index = 5, its stale
 *      tail) by setting server 0's match index to 5 and commits E: but
 *      server 0's entry at E's index is its own term-2 entry, and O does not
 *      have E. E is committed on one server out of three.
 *
 * Exit status 1 and "BUG" when reproduced, 0 when the library behaves.
 * Build: part of tests/ (target aep-sim-repro-stale-tail). */
#include <stdio.h>
#include <string.h>

#include <raft.h>
#include <raft/fixture.h>

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	(void)fsm;
	(void)buf;
	*result = NULL;
	return 0;
}

static struct raft_apply reqs[16];
static unsigned nreqs;

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	(void)req;
	(void)status;
	(void)result;
}

static void apply_one(struct raft_fixture *f, unsigned i, char tag)
{
	struct raft_buffer buf;
	buf.len = 8;
	buf.base = raft_malloc(buf.len);
	memset(buf.base, tag, buf.len);
	if (raft_apply(raft_fixture_get(f, i), &reqs[nreqs++], &buf, 1, apply_cb) != 0) {
		raft_free(buf.base);
		fprintf(stderr, "raft_apply on %u failed\n", i);
	}
}

static raft_term term_at(struct raft *r, raft_index index)
{
	const struct raft_log *l = &r->log;
	size_t used = l->back >= l->front ? l->back - l->front : l->size - l->front + l->back;
	if (index > l->offset && index <= l->offset + used)
		return l->entries[(l->front + (index - l->offset - 1)) % l->size].term;
	return 0;
}

int main(void)
{
	struct raft_fixture f;
	struct raft_fsm fsms[3];
	struct raft_configuration conf;
	int bug = 0;

	memset(fsms, 0, sizeof(fsms));
	raft_fixture_initialize(&f);
	for (unsigned i = 0; i < 3; i++) {
		fsms[i].version = 1;
		fsms[i].apply = fsm_apply;
		raft_fixture_grow(&f, &fsms[i]);
	}
	raft_fixture_configuration(&f, 3, &conf);
	raft_fixture_bootstrap(&f, &conf);
	raft_configuration_close(&conf);
	raft_fixture_start(&f);

	/* 1 */
	raft_fixture_elect(&f, 0);
	apply_one(&f, 0, 'a');
	raft_fixture_step_until_applied(&f, 3, 2, 2000);

	/* 2 */
	raft_fixture_disconnect(&f, 0, 1);
	raft_fixture_disconnect(&f, 0, 2);
	apply_one(&f, 0, 'x');
	apply_one(&f, 0, 'y');
	apply_one(&f, 0, 'z');
	raft_fixture_step_until_elapsed(&f, 100);

	/* 3 */
	struct raft *r1 = raft_fixture_get(&f, 1), *r2 = raft_fixture_get(&f, 2);
	for (int k = 0; k < 10000 && raft_state(r1) != RAFT_LEADER && raft_state(r2) != RAFT_LEADER;
	     k++)
		raft_fixture_step(&f);
	unsigned li = raft_state(r1) == RAFT_LEADER ? 1 : 2, oi = 3 - li;
	struct raft *l = raft_fixture_get(&f, li), *s0 = raft_fixture_get(&f, 0);
	raft_fixture_disconnect(&f, li, oi);

	/* 4 */
	raft_fixture_reconnect(&f, 0, li);
	raft_index e = raft_last_index(l) + 1;
	apply_one(&f, li, 'E');

	/* 5 */
	for (int k = 0; k < 2000 && l->commit_index < e; k++)
		raft_fixture_step(&f);
	printf("new leader %u (term %llu) commit index %llu; entry %llu: term %llu on the "
	       "leader, term %llu on server 0, %s on server %u\n",
	       li, (unsigned long long)l->current_term, (unsigned long long)l->commit_index,
	       (unsigned long long)e, (unsigned long long)term_at(l, e),
	       (unsigned long long)term_at(s0, e),
	       raft_last_index(raft_fixture_get(&f, oi)) >= e ? "present" : "absent", oi);
	if (l->commit_index >= e && term_at(s0, e) != term_at(l, e) &&
	    raft_last_index(raft_fixture_get(&f, oi)) < e) {
		printf("BUG: entry %llu committed while only the leader holds it\n",
		       (unsigned long long)e);
		bug = 1;
	} else {
		printf("not reproduced\n");
	}
	raft_fixture_close(&f);
	return bug;
}
