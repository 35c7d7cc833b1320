/* raft/: three real aep_raft peers (libraft's libuv I/O and TCP transport
 * on 127.0.0.1) in one process on one loop, each with its own store and
 * data directory under /tmp. Checks what a user of the API would notice:
 * every submit gets exactly one answer, the stores agree byte for byte,
 * restarts replay the log, a lagging follower catches up from a snapshot,
 * group commit packs commands into few entries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#define _XOPEN_SOURCE_EXTENDED 1
#include <ftw.h>
#include <cmocka.h>

#include "lib/lib.h"
#include "raft/raft.h"
#include "state/state.h"
#include "tests/unit/fixtures.h"

#define NPEERS	3
#define WAIT_MS 20000

struct peer {
	struct cluster *c;
	int i;
	char name[16];
	char addr[32];
	char dir[256];
	struct aep_store *store;
	struct aep_raft *raft;
	bool leader; /* on_leadership's last word */
	int leadership_events;
	bool closed;
};

struct cluster {
	uv_loop_t loop;
	uv_timer_t tick;
	char base[64];
	struct aep_raft_peer peers[NPEERS];
	struct peer p[NPEERS];
	struct aep_raft_config cfg; /* template: thresholds, timeouts */
};

/* Ports the kernel just handed out as free: bound together so that they
 * differ, then released for the peers (tests run in parallel). */
static void free_ports(int *ports, int n)
{
	int fds[NPEERS];
	for (int i = 0; i < n; i++) {
		struct sockaddr_in sa = {.sin_family = AF_INET};
		socklen_t len = sizeof(sa);
		inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(fds[i] >= 0);
		assert_int_equal(bind(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(getsockname(fds[i], (struct sockaddr *)&sa, &len), 0);
		ports[i] = ntohs(sa.sin_port);
	}
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* The data directory of the cluster in use, removed by teardown also when
 * a test fails half-way. */
static char live_base[64];

static void on_leadership(void *data, bool leader)
{
	struct peer *p = data;
	p->leader = leader;
	p->leadership_events++;
}

static void tick_cb(uv_timer_t *t)
{
	(void)t;
}

static void cluster_init(struct cluster *c, unsigned threshold, unsigned trailing)
{
	memset(c, 0, sizeof(*c));
	assert_int_equal(uv_loop_init(&c->loop), 0);
	uv_timer_init(&c->loop, &c->tick);
	uv_timer_start(&c->tick, tick_cb, 5, 5);
	snprintf(c->base, sizeof(c->base), "/tmp/aep-raft-test-XXXXXX");
	assert_non_null(mkdtemp(c->base));
	snprintf(live_base, sizeof(live_base), "%s", c->base);
	char base[sizeof(c->base)];
	memcpy(base, c->base, sizeof(base));
	int ports[NPEERS];
	free_ports(ports, NPEERS);
	for (int i = 0; i < NPEERS; i++) {
		struct peer *p = &c->p[i];
		p->c = c;
		p->i = i;
		snprintf(p->name, sizeof(p->name), "m%d", i + 1);
		snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", ports[i]);
		snprintf(p->dir, sizeof(p->dir), "%s/m%d", base, i + 1);
		c->peers[i].name = p->name;
		c->peers[i].peer_addr = p->addr;
	}
	c->cfg.peers = c->peers;
	c->cfg.npeers = NPEERS;
	c->cfg.snapshot_threshold = threshold;
	c->cfg.snapshot_trailing = trailing;
	c->cfg.election_timeout_ms = 600;
	c->cfg.heartbeat_timeout_ms = 60;
	c->cfg.on_leadership = on_leadership;
}

static void peer_start(struct cluster *c, int i)
{
	struct peer *p = &c->p[i];
	struct aep_raft_config cfg = c->cfg;
	struct aep_error e = {0};

	assert_int_equal(aep_store_new(NULL, &p->store), 0);
	cfg.name = p->name;
	cfg.dir = p->dir;
	cfg.store = p->store;
	cfg.data = p;
	p->leader = false;
	p->closed = false;
	int rv = aep_raft_start(&c->loop, &cfg, &p->raft, &e);
	if (rv != 0)
		fail_msg("start %s: %s: %s", p->name, aep_err_code(rv), e.msg);
}

/* What each peer thinks, for a failing wait. */
static void dump(struct cluster *c)
{
	for (int i = 0; i < NPEERS; i++) {
		struct peer *p = &c->p[i];
		struct aep_raft_status st;
		if (p->raft == NULL) {
			fprintf(stderr, "  %s: stopped\n", p->name);
			continue;
		}
		aep_raft_status(p->raft, &st);
		fprintf(stderr,
			"  %s: leader=%d (%s, ready=%d) term=%llu commit=%llu applied=%llu "
			"last=%llu store=%llu entries=%llu commands=%llu snaps=%llu/%llu\n",
			p->name, st.leader, st.leader_name ? st.leader_name : "-", p->leader,
			(unsigned long long)st.term, (unsigned long long)st.commit_index,
			(unsigned long long)st.applied_index, (unsigned long long)st.last_index,
			(unsigned long long)aep_store_applied_index(p->store),
			(unsigned long long)st.entries_applied,
			(unsigned long long)st.commands_applied,
			(unsigned long long)st.snapshots_taken,
			(unsigned long long)st.snapshots_installed);
	}
}

/* Run the loop until @done(c, arg) or the deadline. */
static bool run_until(struct cluster *c, bool (*done)(struct cluster *c, void *arg), void *arg,
		      int ms)
{
	int64_t end = aep_now_monotonic_ns() + (int64_t)ms * 1000000;
	while (!done(c, arg)) {
		if (aep_now_monotonic_ns() > end) {
			fprintf(stderr, "timed out after %d ms:\n", ms);
			dump(c);
			return false;
		}
		uv_run(&c->loop, UV_RUN_ONCE);
	}
	return true;
}

static void closed_cb(void *data)
{
	struct peer *p = data;
	p->closed = true;
}

static bool peer_closed(struct cluster *c, void *arg)
{
	(void)c;
	return ((struct peer *)arg)->closed;
}

static void peer_stop(struct cluster *c, int i)
{
	struct peer *p = &c->p[i];
	if (p->raft == NULL)
		return;
	aep_raft_close(p->raft, closed_cb, p);
	assert_true(run_until(c, peer_closed, p, WAIT_MS));
	p->raft = NULL;
	p->leader = false;
	aep_store_free(p->store);
	p->store = NULL;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void cluster_free(struct cluster *c)
{
	for (int i = 0; i < NPEERS; i++)
		peer_stop(c, i);
	uv_close((uv_handle_t *)&c->tick, NULL);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&c->loop), 0);
	nftw(c->base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	live_base[0] = '\0';
}

static int teardown(void **state)
{
	(void)state;
	if (live_base[0] != '\0')
		nftw(live_base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	live_base[0] = '\0';
	return 0;
}

static int leader_of(struct cluster *c)
{
	for (int i = 0; i < NPEERS; i++)
		if (c->p[i].raft != NULL && c->p[i].leader)
			return i;
	return -1;
}

static bool have_leader(struct cluster *c, void *arg)
{
	(void)arg;
	return leader_of(c) >= 0;
}

static int wait_leader(struct cluster *c)
{
	assert_true(run_until(c, have_leader, NULL, WAIT_MS));
	return leader_of(c);
}

/* Every running peer's store has applied @arg's index. */
static bool stores_at(struct cluster *c, void *arg)
{
	uint64_t index = *(uint64_t *)arg;
	for (int i = 0; i < NPEERS; i++)
		if (c->p[i].raft != NULL && aep_store_applied_index(c->p[i].store) < index)
			return false;
	return true;
}

static void snapshot_of(struct peer *p, struct aep_buf *b)
{
	aep_buf_init(b);
	assert_int_equal(aep_store_snapshot(p->store, b), 0);
}

/* All running stores catch up with @ref's and hold the same bytes. */
static void assert_stores_equal(struct cluster *c, int ref)
{
	uint64_t index = aep_store_applied_index(c->p[ref].store);
	struct aep_buf want, got;

	assert_true(run_until(c, stores_at, &index, WAIT_MS));
	snapshot_of(&c->p[ref], &want);
	for (int i = 0; i < NPEERS; i++) {
		if (i == ref || c->p[i].raft == NULL)
			continue;
		assert_int_equal(aep_store_applied_index(c->p[i].store), index);
		snapshot_of(&c->p[i], &got);
		assert_int_equal(got.len, want.len);
		assert_memory_equal(got.data, want.data, want.len);
		aep_buf_free(&got);
	}
	aep_buf_free(&want);
}

/* ---- commands ----------------------------------------------------------- */

static struct aep_object *pod(const char *name)
{
	return fx_pod_object("default", name, "app=web");
}

static void make_cmd(struct aep_cmd *cmd, enum aep_op op, const struct aep_object *o,
		     uint64_t precond)
{
	memset(cmd, 0, sizeof(*cmd));
	cmd->op = op;
	cmd->kind = AEP_KIND_POD;
	cmd->ns = "default";
	cmd->name = o->meta.name;
	cmd->precond_rv = precond;
	snprintf(cmd->uid, sizeof(cmd->uid), "uid-%s", o->meta.name);
	cmd->now_ns = 1700000000000000000LL;
	cmd->obj = o->data;
	cmd->obj_len = o->len;
}

struct answer {
	int calls;
	int code;
	uint64_t rv;
};

static void answer_cb(void *data, const struct aep_result *res)
{
	struct answer *a = data;
	a->calls++;
	a->code = res->code;
	a->rv = res->rv;
	if (res->code != 0)
		assert_non_null(res->msg);
}

struct answers {
	struct answer *a;
	int n;
};

static bool all_answered(struct cluster *c, void *arg)
{
	(void)c;
	struct answers *as = arg;
	for (int i = 0; i < as->n; i++)
		if (as->a[i].calls == 0)
			return false;
	return true;
}

/* Submit creates of pods PREFIX-0.. on peer @i; returns how many were taken. */
static int submit_creates(struct cluster *c, int i, const char *prefix, struct answer *a, int n)
{
	char name[64];
	struct aep_cmd cmd;
	for (int k = 0; k < n; k++) {
		snprintf(name, sizeof(name), "%s-%d", prefix, k);
		struct aep_object *o = pod(name);
		make_cmd(&cmd, AEP_OP_CREATE, o, 0);
		int rv = aep_raft_submit(c->p[i].raft, &cmd, answer_cb, &a[k]);
		aep_object_unref(o);
		if (rv != 0)
			return k;
	}
	return n;
}

static void submit_one(struct cluster *c, int i, enum aep_op op, const char *name, uint64_t precond,
		       struct answer *a)
{
	struct aep_object *o = pod(name);
	struct aep_cmd cmd;
	make_cmd(&cmd, op, o, precond);
	assert_int_equal(aep_raft_submit(c->p[i].raft, &cmd, answer_cb, a), 0);
	aep_object_unref(o);
	struct answers as = {a, 1};
	assert_true(run_until(c, all_answered, &as, WAIT_MS));
	assert_int_equal(a->calls, 1);
}

/* ---- tests -------------------------------------------------------------- */

static void barrier_cb(void *data, int code)
{
	int *out = data;
	*out = code;
}

static bool int_set(struct cluster *c, void *arg)
{
	(void)c;
	return *(int *)arg != -1;
}

/* 1,000 creates at once: one answer each, increasing revisions, few entries,
 * equal stores; NotLeader on followers; preconditions; restart replays. */
static void test_replicate(void **state)
{
	(void)state;
	struct cluster c;
	enum { N = 1000 };
	struct answer *a = calloc(N, sizeof(*a));

	cluster_init(&c, 0, 0);
	for (int i = 0; i < NPEERS; i++)
		peer_start(&c, i);
	int l = wait_leader(&c);
	struct aep_raft_status st;
	aep_raft_status(c.p[l].raft, &st);
	assert_true(st.leader);
	assert_string_equal(st.leader_name, c.p[l].name);
	uint64_t entries0 = st.entries_applied;

	assert_int_equal(submit_creates(&c, l, "p", a, N), N);
	struct answers as = {a, N};
	assert_true(run_until(&c, all_answered, &as, WAIT_MS));
	for (int k = 0; k < N; k++) {
		assert_int_equal(a[k].calls, 1);
		assert_int_equal(a[k].code, 0);
		if (k > 0)
			assert_true(a[k].rv > a[k - 1].rv);
	}
	aep_raft_status(c.p[l].raft, &st);
	assert_true(st.commands_applied >= N);
	/* Group commit: 1,000 commands in a handful of entries. */
	assert_true(st.entries_applied - entries0 <= 20);
	assert_true(st.commit_index >= st.applied_index);
	assert_true(st.last_index >= st.commit_index);
	assert_int_equal(aep_store_count(c.p[l].store, AEP_KIND_POD), N);
	assert_stores_equal(&c, l);

	/* Followers refuse writes and barriers and name the leader. */
	int f = (l + 1) % NPEERS;
	struct aep_object *o = pod("x");
	struct aep_cmd cmd;
	make_cmd(&cmd, AEP_OP_CREATE, o, 0);
	assert_int_equal(aep_raft_submit(c.p[f].raft, &cmd, answer_cb, NULL), AEP_ENOTLEADER);
	aep_object_unref(o);
	int bcode = -1;
	assert_int_equal(aep_raft_barrier(c.p[f].raft, barrier_cb, &bcode), AEP_ENOTLEADER);
	aep_raft_status(c.p[f].raft, &st);
	assert_false(st.leader);
	assert_non_null(st.leader_name);
	assert_string_equal(st.leader_name, c.p[l].name);
	assert_string_equal(aep_raft_name(c.p[f].raft), c.p[f].name);

	/* Barrier on the leader. */
	assert_int_equal(aep_raft_barrier(c.p[l].raft, barrier_cb, &bcode), 0);
	assert_true(run_until(&c, int_set, &bcode, WAIT_MS));
	assert_int_equal(bcode, 0);

	/* The store's own outcomes travel back: AlreadyExists, Conflict. */
	struct answer dup = {0}, stale = {0}, ok = {0};
	submit_one(&c, l, AEP_OP_CREATE, "p-7", 0, &dup);
	assert_int_equal(dup.code, AEP_EEXISTS);
	submit_one(&c, l, AEP_OP_UPDATE, "p-7", a[7].rv + 1, &stale);
	assert_int_equal(stale.code, AEP_ECONFLICT);
	submit_one(&c, l, AEP_OP_UPDATE, "p-7", a[7].rv, &ok);
	assert_int_equal(ok.code, 0);
	assert_true(ok.rv > a[N - 1].rv);
	assert_stores_equal(&c, l);

	/* Restart everything: the stores are rebuilt from the logs. */
	struct aep_buf before;
	snapshot_of(&c.p[l], &before);
	uint64_t index = aep_store_applied_index(c.p[l].store);
	for (int i = 0; i < NPEERS; i++)
		peer_stop(&c, i);
	for (int i = 0; i < NPEERS; i++)
		peer_start(&c, i);
	l = wait_leader(&c);
	assert_true(run_until(&c, stores_at, &index, WAIT_MS));
	for (int i = 0; i < NPEERS; i++) {
		struct aep_buf got;
		snapshot_of(&c.p[i], &got);
		assert_int_equal(got.len, before.len);
		assert_memory_equal(got.data, before.data, before.len);
		aep_buf_free(&got);
	}
	aep_buf_free(&before);

	cluster_free(&c);
	free(a);
}

/* Chained writes: each callback submits the next, so each command is its
 * own entry (the log grows by one entry per command, to take snapshots). */
struct chain {
	struct cluster *c;
	int peer;
	const char *prefix;
	int next, n, done, failed;
};

static void chain_submit(struct chain *ch);

static void chain_cb(void *data, const struct aep_result *res)
{
	struct chain *ch = data;
	ch->done++;
	if (res->code != 0)
		ch->failed++;
	chain_submit(ch);
}

static void chain_submit(struct chain *ch)
{
	char name[64];
	struct aep_cmd cmd;
	if (ch->next >= ch->n)
		return;
	snprintf(name, sizeof(name), "%s-%d", ch->prefix, ch->next++);
	struct aep_object *o = pod(name);
	make_cmd(&cmd, AEP_OP_CREATE, o, 0);
	assert_int_equal(aep_raft_submit(ch->c->p[ch->peer].raft, &cmd, chain_cb, ch), 0);
	aep_object_unref(o);
}

static bool chain_done(struct cluster *c, void *arg)
{
	(void)c;
	struct chain *ch = arg;
	return ch->done == ch->n;
}

static void run_chain(struct cluster *c, int peer, const char *prefix, int n)
{
	struct chain ch = {c, peer, prefix, 0, n, 0, 0};
	chain_submit(&ch);
	assert_true(run_until(c, chain_done, &ch, 60000));
	assert_int_equal(ch.failed, 0);
}

/* A follower that was down while the leader compacted its log catches up
 * by installing a snapshot. */
static void test_snapshot_catch_up(void **state)
{
	(void)state;
	struct cluster c;
	struct aep_raft_status st;

	cluster_init(&c, 64, 16);
	for (int i = 0; i < NPEERS; i++)
		peer_start(&c, i);
	int l = wait_leader(&c);
	run_chain(&c, l, "a", 200);
	aep_raft_status(c.p[l].raft, &st);
	assert_true(st.snapshots_taken > 0);
	assert_stores_equal(&c, l);

	int f = (l + 1) % NPEERS;
	peer_stop(&c, f);
	run_chain(&c, l, "b", 300);
	peer_start(&c, f);
	assert_stores_equal(&c, l);
	aep_raft_status(c.p[f].raft, &st);
	assert_true(st.snapshots_installed > 0);
	assert_int_equal(aep_store_count(c.p[f].store, AEP_KIND_POD), 500);

	/* And it still follows ordinary appends afterwards. */
	run_chain(&c, l, "c", 20);
	assert_stores_equal(&c, l);
	cluster_free(&c);
}

/* Closing the leader while entries are queued and in flight: every waiter
 * is answered exactly once, with success, Unavailable or Canceled; the
 * other two elect a leader and agree. */
static void test_leader_close(void **state)
{
	(void)state;
	struct cluster c;
	enum { N = 600 };
	struct answer *a = calloc(N, sizeof(*a));

	cluster_init(&c, 0, 0);
	for (int i = 0; i < NPEERS; i++)
		peer_start(&c, i);
	int l = wait_leader(&c);
	assert_int_equal(submit_creates(&c, l, "q", a, N / 2), N / 2);
	uv_run(&c.loop, UV_RUN_NOWAIT); /* into libraft */
	assert_int_equal(submit_creates(&c, l, "r", a + N / 2, N / 2), N / 2);
	uv_run(&c.loop, UV_RUN_NOWAIT);
	peer_stop(&c, l);
	int ok = 0, unavailable = 0, canceled = 0;
	for (int k = 0; k < N; k++) {
		assert_int_equal(a[k].calls, 1);
		if (a[k].code == 0)
			ok++;
		else if (a[k].code == AEP_EUNAVAILABLE)
			unavailable++;
		else if (a[k].code == AEP_ECANCELED)
			canceled++;
		else
			fail_msg("answer %d: %s", k, aep_err_code(a[k].code));
	}
	assert_int_equal(ok + unavailable + canceled, N);
	assert_true(canceled > 0);

	int l2 = wait_leader(&c);
	assert_true(l2 != l);
	struct answer after = {0};
	submit_one(&c, l2, AEP_OP_CREATE, "after", 0, &after);
	assert_int_equal(after.code, 0);
	assert_stores_equal(&c, l2);
	/* No callback fired twice while the others went on. */
	for (int k = 0; k < N; k++)
		assert_int_equal(a[k].calls, 1);
	cluster_free(&c);
	free(a);
}

/* Leadership transfer during writes: queued commands get NotLeader,
 * entries in flight Unavailable or success; the named peer leads. */
static void test_transfer(void **state)
{
	(void)state;
	struct cluster c;
	enum { N = 300 };
	struct answer *a = calloc(N, sizeof(*a));
	struct aep_error e = {0};

	cluster_init(&c, 0, 0);
	for (int i = 0; i < NPEERS; i++)
		peer_start(&c, i);
	int l = wait_leader(&c);
	int t = (l + 2) % NPEERS;
	int f = (l + 1) % NPEERS;
	assert_int_equal(aep_raft_transfer(c.p[f].raft, NULL, &e), AEP_ENOTLEADER);
	assert_int_equal(aep_raft_transfer(c.p[l].raft, "nobody", &e), AEP_ENOTFOUND);
	assert_int_equal(submit_creates(&c, l, "t", a, N), N);
	uv_run(&c.loop, UV_RUN_NOWAIT);
	int rv = aep_raft_transfer(c.p[l].raft, c.p[t].name, &e);
	if (rv != 0)
		fail_msg("transfer: %s", e.msg);
	struct answers as = {a, N};
	assert_true(run_until(&c, all_answered, &as, WAIT_MS));
	for (int k = 0; k < N; k++) {
		assert_int_equal(a[k].calls, 1);
		assert_true(a[k].code == 0 || a[k].code == AEP_EUNAVAILABLE ||
			    a[k].code == AEP_ENOTLEADER);
	}
	int l2 = wait_leader(&c);
	assert_int_equal(l2, t);
	assert_false(c.p[l].leader);
	assert_true(c.p[l].leadership_events >= 2); /* gained, then lost */
	assert_stores_equal(&c, l2);
	cluster_free(&c);
	free(a);
}

/* Not a timed test: prints the throughput of 100,000 creates, with up to
 * 10,000 outstanding at once (submitting everything in one go would starve
 * the followers' timers on the shared loop and cause elections). */
static void test_throughput(void **state)
{
	(void)state;
	struct cluster c;
	enum { N = 100000, WINDOW = 10000 };
	struct answer *a = calloc(N, sizeof(*a));
	struct aep_object **objs = calloc(N, sizeof(*objs));
	char name[64];

	for (int k = 0; k < N; k++) {
		snprintf(name, sizeof(name), "b-%d", k);
		objs[k] = pod(name);
	}
	cluster_init(&c, 0, 0);
	for (int i = 0; i < NPEERS; i++)
		peer_start(&c, i);
	int l = wait_leader(&c);
	struct aep_raft_status st0, st;
	aep_raft_status(c.p[l].raft, &st0);
	int64_t t0 = aep_now_monotonic_ns();
	int64_t end = t0 + (int64_t)240 * 1000000000;
	int submitted = 0, answered = 0;
	while (answered < N) {
		while (submitted < N && submitted - answered < WINDOW) {
			struct aep_cmd cmd;
			make_cmd(&cmd, AEP_OP_CREATE, objs[submitted], 0);
			int rv = aep_raft_submit(c.p[l].raft, &cmd, answer_cb, &a[submitted]);
			if (rv != 0)
				fail_msg("submit %d: %s", submitted, aep_err_code(rv));
			submitted++;
		}
		uv_run(&c.loop, UV_RUN_ONCE);
		while (answered < submitted && a[answered].calls > 0)
			answered++;
		if (aep_now_monotonic_ns() > end) {
			dump(&c);
			fail_msg("%d of %d answered", answered, N);
		}
	}
	int64_t t1 = aep_now_monotonic_ns();
	int failed = 0;
	for (int k = 0; k < N; k++) {
		if (a[k].code != 0 && failed++ < 5)
			fprintf(stderr, "create %d: %s\n", k, aep_err_code(a[k].code));
	}
	assert_int_equal(failed, 0);
	aep_raft_status(c.p[l].raft, &st);
	printf("raft: %d creates in %.2f s: %.0f commands/s in %llu entries (3 peers in one "
	       "process on one loop, %d outstanding)\n",
	       N, (double)(t1 - t0) / 1e9, N / ((double)(t1 - t0) / 1e9),
	       (unsigned long long)(st.entries_applied - st0.entries_applied), WINDOW);
	assert_stores_equal(&c, l);
	cluster_free(&c);
	for (int k = 0; k < N; k++)
		aep_object_unref(objs[k]);
	free(objs);
	free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_replicate, teardown),
	    cmocka_unit_test_teardown(test_snapshot_catch_up, teardown),
	    cmocka_unit_test_teardown(test_leader_close, teardown),
	    cmocka_unit_test_teardown(test_transfer, teardown),
	    cmocka_unit_test_teardown(test_throughput, teardown),
	};
	if (getenv("AEP_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("AEP_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
