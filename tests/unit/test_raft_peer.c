/* raft/: one aep_raft peer on its own (a one-voter cluster elects itself at
 * once): configuration errors, a port already taken, the exactly-once
 * contract of submit and close, restart, and failing allocations. */
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

struct fixture {
	uv_loop_t loop;
	char dir[64];
	char addr[32];
	int port;
	struct aep_raft_peer peer;
	struct aep_store *store;
	struct aep_raft *raft;
	int leader_true, leader_false;
	uint64_t applied_index;
	bool closed;
};

static void on_leadership(void *data, bool leader)
{
	struct fixture *f = data;
	if (leader)
		f->leader_true++;
	else
		f->leader_false++;
}

static void on_applied(void *data, uint64_t index)
{
	struct fixture *f = data;
	assert_true(index > f->applied_index);
	f->applied_index = index;
}

static struct aep_raft_config config(struct fixture *f)
{
	struct aep_raft_config cfg = {
	    .name = "m1",
	    .dir = f->dir,
	    .peers = &f->peer,
	    .npeers = 1,
	    .store = f->store,
	    .election_timeout_ms = 300,
	    .heartbeat_timeout_ms = 30,
	    .on_leadership = on_leadership,
	    .on_applied = on_applied,
	    .data = f,
	};
	return cfg;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	snprintf(f->dir, sizeof(f->dir), "/tmp/aep-raft-peer-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	/* A port the kernel just handed out as free (tests run in parallel). */
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	f->port = ntohs(sa.sin_port);
	close(fd);
	snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%d", f->port);
	f->peer.name = "m1";
	f->peer.peer_addr = f->addr;
	assert_int_equal(aep_store_new(NULL, &f->store), 0);
	*state = f;
	return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void closed_cb(void *data)
{
	struct fixture *f = data;
	f->closed = true;
}

static void close_raft(struct fixture *f)
{
	if (f->raft == NULL)
		return;
	f->closed = false;
	aep_raft_close(f->raft, closed_cb, f);
	while (!f->closed)
		uv_run(&f->loop, UV_RUN_ONCE);
	f->raft = NULL;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	close_raft(f);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	aep_store_free(f->store);
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void run_until_leader(struct fixture *f)
{
	int64_t end = aep_now_monotonic_ns() + 10000000000LL;
	while (f->leader_true == f->leader_false) {
		assert_true(aep_now_monotonic_ns() < end);
		uv_run(&f->loop, UV_RUN_ONCE);
	}
}

static void start(struct fixture *f)
{
	struct aep_raft_config cfg = config(f);
	struct aep_error e = {0};
	int rv = aep_raft_start(&f->loop, &cfg, &f->raft, &e);
	if (rv != 0)
		fail_msg("start: %s", e.msg);
	run_until_leader(f);
}

static struct aep_object *pod(const char *name)
{
	return fx_pod_object(NULL, name, NULL);
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
}

static int submit_create(struct fixture *f, const char *name, struct answer *a)
{
	struct aep_object *o = pod(name);
	struct aep_cmd cmd = {
	    .op = AEP_OP_CREATE,
	    .kind = AEP_KIND_POD,
	    .ns = "default",
	    .name = o->meta.name,
	    .now_ns = 1,
	    .obj = o->data,
	    .obj_len = o->len,
	};
	snprintf(cmd.uid, sizeof(cmd.uid), "uid-%s", name);
	int rv = aep_raft_submit(f->raft, &cmd, answer_cb, a);
	aep_object_unref(o);
	return rv;
}

static void wait_answers(struct fixture *f, struct answer *a, int n)
{
	int64_t end = aep_now_monotonic_ns() + 10000000000LL;
	for (int k = 0; k < n; k++) {
		while (a[k].calls == 0) {
			assert_true(aep_now_monotonic_ns() < end);
			uv_run(&f->loop, UV_RUN_ONCE);
		}
	}
}

/* ---- tests -------------------------------------------------------------- */

static void test_bad_config(void **state)
{
	struct fixture *f = *state;
	struct aep_raft_config cfg = config(f);
	struct aep_raft_peer two[2] = {{"m1", "127.0.0.1:1"}, {"m2", "127.0.0.1:1"}};
	struct aep_error e = {0};
	struct aep_raft *r = NULL;

	cfg.name = "m9";
	assert_int_equal(aep_raft_start(&f->loop, &cfg, &r, &e), AEP_EINVALID);
	assert_non_null(strstr(e.msg, "m9"));
	cfg = config(f);
	cfg.npeers = 0;
	assert_int_equal(aep_raft_start(&f->loop, &cfg, &r, &e), AEP_EINVALID);
	cfg = config(f);
	cfg.peers = two;
	cfg.npeers = 2;
	assert_int_equal(aep_raft_start(&f->loop, &cfg, &r, &e), AEP_EINVALID);
	assert_non_null(strstr(e.msg, "duplicate"));
	cfg = config(f);
	cfg.dir = "/proc/aep-no-such-place";
	assert_int_equal(aep_raft_start(&f->loop, &cfg, &r, &e), AEP_EIO);
	assert_null(r);
}

/* A peer address someone else listens on: start fails with a message and
 * leaves nothing behind once the loop has run. */
static void test_port_taken(void **state)
{
	struct fixture *f = *state;
	struct aep_raft_config cfg = config(f);
	struct aep_error e = {0};
	struct aep_raft *r = NULL;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	int rv = aep_raft_start(&f->loop, &cfg, &r, &e);
	assert_int_not_equal(rv, 0);
	assert_null(r);
	assert_true(strlen(e.msg) > 0);
	close(fd);
	/* teardown runs the loop and checks it closes clean. */
}

/* Writes on a one-peer cluster: results, status, barrier, leadership
 * reported once; close answers queued commands exactly once; restart
 * replays the log into a new store. */
static void test_write_close_restart(void **state)
{
	struct fixture *f = *state;
	enum { N = 50 };
	struct answer a[N] = {{0}};
	struct answer late[N] = {{0}};
	char name[32];

	start(f);
	assert_int_equal(f->leader_true, 1);
	for (int k = 0; k < N; k++) {
		snprintf(name, sizeof(name), "w-%d", k);
		assert_int_equal(submit_create(f, name, &a[k]), 0);
	}
	/* Never from inside submit. */
	for (int k = 0; k < N; k++)
		assert_int_equal(a[k].calls, 0);
	wait_answers(f, a, N);
	for (int k = 0; k < N; k++) {
		assert_int_equal(a[k].calls, 1);
		assert_int_equal(a[k].code, 0);
		assert_int_equal(AEP_REV_INDEX(a[k].rv), AEP_REV_INDEX(a[0].rv));
	}
	struct aep_raft_status st;
	aep_raft_status(f->raft, &st);
	assert_true(st.leader);
	assert_string_equal(st.leader_name, "m1");
	assert_int_equal(st.commands_applied, N);
	assert_int_equal(st.entries_applied, 1); /* one entry: group commit */
	assert_int_equal(f->applied_index, AEP_REV_INDEX(a[0].rv));
	assert_int_equal(aep_store_count(f->store, AEP_KIND_POD), N);

	/* A duplicate create gets the store's AlreadyExists. */
	struct answer dup = {0};
	assert_int_equal(submit_create(f, "w-3", &dup), 0);
	wait_answers(f, &dup, 1);
	assert_int_equal(dup.code, AEP_EEXISTS);

	/* Close with commands queued: each answered once, Canceled. */
	for (int k = 0; k < N; k++) {
		snprintf(name, sizeof(name), "late-%d", k);
		assert_int_equal(submit_create(f, name, &late[k]), 0);
	}
	close_raft(f);
	for (int k = 0; k < N; k++) {
		assert_int_equal(late[k].calls, 1);
		assert_int_equal(late[k].code, AEP_ECANCELED);
	}
	assert_int_equal(f->leader_false, 1);

	/* Restart on a new store: the log replays the 50 creates. */
	struct aep_buf before, after;
	aep_buf_init(&before);
	aep_buf_init(&after);
	assert_int_equal(aep_store_snapshot(f->store, &before), 0);
	aep_store_free(f->store);
	assert_int_equal(aep_store_new(NULL, &f->store), 0);
	f->applied_index = 0;
	start(f);
	assert_int_equal(aep_store_count(f->store, AEP_KIND_POD), N);
	assert_int_equal(aep_store_snapshot(f->store, &after), 0);
	assert_int_equal(after.len, before.len);
	assert_memory_equal(after.data, before.data, before.len);
	aep_buf_free(&before);
	aep_buf_free(&after);
}

static void barrier_cb(void *data, int code)
{
	int *out = data;
	*out = code;
}

static void close_in_cb(void *data, const struct aep_result *res)
{
	struct fixture *f = data;
	(void)res;
	/* Closing from a result callback is allowed; a second close is a no-op. */
	aep_raft_close(f->raft, closed_cb, f);
	aep_raft_close(f->raft, closed_cb, f);
}

/* Barrier, then close from inside a submit callback. */
static void test_barrier_and_close_from_callback(void **state)
{
	struct fixture *f = *state;
	int code = -1;
	struct answer a = {0};

	start(f);
	assert_int_equal(aep_raft_barrier(f->raft, barrier_cb, &code), 0);
	while (code == -1)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(code, 0);

	assert_int_equal(submit_create(f, "one", &a), 0);
	struct aep_object *o = pod("two");
	struct aep_cmd cmd = {
	    .op = AEP_OP_CREATE,
	    .kind = AEP_KIND_POD,
	    .ns = "default",
	    .name = "two",
	    .obj = o->data,
	    .obj_len = o->len,
	};
	assert_int_equal(aep_raft_submit(f->raft, &cmd, close_in_cb, f), 0);
	aep_object_unref(o);
	f->closed = false;
	while (!f->closed)
		uv_run(&f->loop, UV_RUN_ONCE);
	f->raft = NULL;
	assert_int_equal(a.calls, 1);
}

/* Failing allocations in start and submit: a clean error, nothing leaked,
 * and the peer keeps working once memory is back. */
static void test_heap_faults(void **state)
{
	struct fixture *f = *state;
	struct aep_raft_config cfg = config(f);
	struct aep_error e = {0};
	int ok_at = 0;

	for (long n = 1; n < 200 && ok_at == 0; n++) {
		struct aep_raft *r = NULL;
		aep_heap_fault_after(n);
		int rv = aep_raft_start(&f->loop, &cfg, &r, &e);
		aep_heap_fault_off();
		if (rv == 0) {
			ok_at = (int)n;
			f->raft = r;
			break;
		}
		assert_int_equal(rv, AEP_ENOMEM);
		assert_null(r);
		uv_run(&f->loop, UV_RUN_DEFAULT); /* finish any close */
	}
	assert_true(ok_at > 1);
	run_until_leader(f);

	struct answer a[8] = {{0}};
	int taken = 0;
	for (long n = 1; n <= 8; n++) {
		char name[16];
		snprintf(name, sizeof(name), "h-%ld", n);
		struct aep_object *o = pod(name);
		struct aep_cmd cmd = {
		    .op = AEP_OP_CREATE,
		    .kind = AEP_KIND_POD,
		    .ns = "default",
		    .name = o->meta.name,
		    .now_ns = 1,
		    .obj = o->data,
		    .obj_len = o->len,
		};
		snprintf(cmd.uid, sizeof(cmd.uid), "uid-%s", name);
		aep_heap_fault_after(n);
		int rv = aep_raft_submit(f->raft, &cmd, answer_cb, &a[taken]);
		aep_heap_fault_off();
		aep_object_unref(o);
		if (rv == 0)
			taken++;
		else
			assert_int_equal(rv, AEP_ENOMEM);
	}
	assert_true(taken > 0 && taken < 8);
	wait_answers(f, a, taken);
	for (int k = 0; k < taken; k++) {
		assert_int_equal(a[k].calls, 1);
		assert_int_equal(a[k].code, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_port_taken, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_close_restart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_barrier_and_close_from_callback, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_heap_faults, setup, teardown),
	};
	if (getenv("AEP_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("AEP_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
