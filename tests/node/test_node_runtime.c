/* The node pod runtime on the real thing: crun (or runc: --runtime runc),
 * real network namespaces, veth pairs, a bridge and overlay mounts.
 *
 * The program needs root (else it exits 77, ctest's skip code). It first
 * moves itself into a network namespace of its own (so the node bridge and
 * every host-side veth live there, never on the machine's network) and a
 * private mount namespace without the cgroup2 mount (what crun needs,
 * aep_node_host_prepare). Every name it makes carries a per-run prefix;
 * cleanup() (also at exit and on SIGTERM/SIGINT) kills and deletes the
 * run's containers and monitors, unmounts and removes its directory; the
 * namespaces die with the process.
 *
 * Pod addresses are reached from the test itself through the bridge (the
 * gateway address is the test namespace's), with plain TCP.
 *
 * "--agent ..." is the child mode of the adoption test: a runtime in a
 * process that the test SIGKILLs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "node/node.h"
#include "tests/unit/fixtures.h"

extern char **environ;

static char prefix[16]; /* per run: "an" + 4 hex digits */
static char dir[256];	/* the runtime's directory */
static char bridge[16]; /* PREFIX "br" */
static char cidr[32];	/* 10.88.N.0/24 */
static char net3[16];	/* "10.88.N" */
static const char *runtime = "crun";
static char self_exe[4096];

static pid_t agent_pid; /* the child agent of test_adopt while it lives */
static uv_loop_t loop;
static uv_timer_t tick;
static struct aep_runtime *rt;

/* ---- helpers ------------------------------------------------------------ */

/* libuv's SIGCHLD handler interrupts blocking calls that have a timeout
 * (sockets with SO_RCVTIMEO are never restarted) and stdio reads: block
 * it around such calls; it is delivered when unblocked. */
static void chld_block(sigset_t *old)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &s, old);
}

static void chld_restore(const sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* Run a shell command; its exit code. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The output of a shell command (first 64 KiB), in a static buffer. */
static const char *sh_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *sh_out(const char *fmt, ...)
{
	static char out[65536];
	char cmd[8192];
	va_list ap;
	size_t n = 0;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	sigset_t old;

	out[0] = '\0';
	chld_block(&old);
	f = popen(cmd, "r");
	if (f != NULL) {
		n = fread(out, 1, sizeof(out) - 1, f);
		out[n] = '\0';
		pclose(f);
	}
	chld_restore(&old);
	return out;
}

/* Kill and delete the run's containers and monitors, unmount and remove
 * its directory. Safe to call many times, from atexit too. */
static void cleanup(void)
{
	static bool done;
	char line[8192];
	FILE *f;

	if (dir[0] == '\0' || done)
		return;
	done = true;
	/* First the child agent: it would restart what we kill. */
	if (agent_pid > 0) {
		kill(agent_pid, SIGKILL);
		waitpid(agent_pid, NULL, 0);
		agent_pid = 0;
	}
	sh("for id in $(%s --root %s/oci list -q 2>/dev/null); do "
	   "%s --root %s/oci kill $id KILL 2>/dev/null; done; sleep 0.2; "
	   "for id in $(%s --root %s/oci list -q 2>/dev/null); do "
	   "%s --root %s/oci delete -f $id >/dev/null 2>&1; done",
	   runtime, dir, runtime, dir, runtime, dir, runtime, dir);
	/* Monitors and anything else started with our directory in argv. */
	sh("for p in /proc/[0-9]*; do "
	   "grep -qsF '%s/' $p/cmdline && [ ${p#/proc/} != $$ ] && kill -9 ${p#/proc/} "
	   "2>/dev/null; "
	   "done; true",
	   dir);
	/* Unmount everything under dir, deepest first. */
	for (int round = 0; round < 8; round++) {
		bool any = false;
		f = fopen("/proc/self/mountinfo", "re");
		if (f == NULL)
			break;
		while (fgets(line, sizeof(line), f) != NULL) {
			char mp[4096];
			if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 &&
			    strncmp(mp, dir, strlen(dir)) == 0 && umount2(mp, MNT_DETACH) == 0)
				any = true;
		}
		fclose(f);
		if (!any)
			break;
	}
	sh("rmdir /sys/fs/cgroup/*/%s-* 2>/dev/null; rm -rf %s", prefix, dir);
	sh("ip link del %s 2>/dev/null; true", bridge);
}

static void on_signal(int sig)
{
	(void)sig;
	exit(1); /* atexit(cleanup) */
}

static void tick_cb(uv_timer_t *t)
{
	(void)t;
}

/* Run the loop until @pred(@arg) or @ms pass; true if @pred became true. */
static bool run_until(bool (*pred)(void *), void *arg, int64_t ms)
{
	int64_t deadline = aep_now_monotonic_ns() + ms * 1000000;

	while (!pred(arg)) {
		if (aep_now_monotonic_ns() > deadline)
			return false;
		uv_run(&loop, UV_RUN_ONCE);
	}
	return true;
}

static bool never(void *arg)
{
	(void)arg;
	return false;
}

static void run_for(int64_t ms)
{
	run_until(never, NULL, ms);
}

/* ---- pods --------------------------------------------------------------- */

/* A Pod from JSON-ish text with uid PREFIX-NAME. */
static struct aep_object *pod_new(const char *name, const char *policy, const char *containers)
{
	char json[8192];
	struct aep_object *o;

	snprintf(json, sizeof(json),
		 "{'kind':'Pod','metadata':{'name':'%s','namespace':'default','uid':'%s-%s',"
		 "'generation':1},'spec':{'restartPolicy':'%s','containers':[%s]}}",
		 name, prefix, name, policy, containers);
	o = fx_must_decode(json);
	return o;
}

static const char *uid_of(const char *name)
{
	static char uid[64];
	snprintf(uid, sizeof(uid), "%s-%s", prefix, name);
	return uid;
}

static void rt_open(void);

static void run_pod(struct aep_object *o)
{
	struct aep_error e = {0};
	int rc;

	if (rt == NULL)
		rt_open(); /* an earlier test failed with the runtime closed */
	rc = aep_runtime_pod_run(rt, o, &e);
	if (rc != 0)
		fail_msg("pod_run: %s", e.msg);
	aep_object_unref(o);
}

struct want {
	const char *uid;
	enum aep_pod_phase phase;
};

static bool phase_is(void *arg)
{
	struct want *w = arg;
	struct aep_pod_status *st;
	bool ok;

	if (aep_runtime_pod_status(rt, w->uid, &st) != 0)
		return false;
	ok = st->phase == w->phase;
	aep_pod_status_free(st);
	return ok;
}

static void wait_phase(const char *name, enum aep_pod_phase phase, int64_t ms)
{
	struct want w = {uid_of(name), phase};
	if (!run_until(phase_is, &w, ms)) {
		struct aep_pod_status *st = NULL;
		aep_runtime_pod_status(rt, w.uid, &st);
		fail_msg("pod %s: want %s, have %s (%s; c0 %s exit %d)", name,
			 aep_pod_phase_name(phase), st ? aep_pod_phase_name(st->phase) : "none",
			 st ? st->message : "", st ? st->containers[0].reason : "",
			 st ? st->containers[0].exit_code : 0);
	}
}

static struct aep_pod_status *status_of(const char *name)
{
	struct aep_pod_status *st = NULL;
	assert_int_equal(aep_runtime_pod_status(rt, uid_of(name), &st), 0);
	return st;
}

struct kill_wait {
	int done;
	int status;
};

static void kill_done(struct aep_runtime *r, const char *uid, int status, void *data)
{
	struct kill_wait *k = data;
	(void)r;
	(void)uid;
	k->done++;
	k->status = status;
}

static bool kill_is_done(void *arg)
{
	return ((struct kill_wait *)arg)->done > 0;
}

static void kill_pod(const char *name)
{
	struct kill_wait k = {0, 0};
	assert_int_equal(aep_runtime_pod_kill(rt, uid_of(name), kill_done, &k), 0);
	assert_true(run_until(kill_is_done, &k, 30000));
	assert_int_equal(k.status, 0);
}

/* GET / from @ip:@port over TCP from the test namespace; the body or "". */
static const char *http_get_once(const char *ip, int port);

static const char *http_get(const char *ip, int port)
{
	sigset_t old;
	const char *body;

	chld_block(&old);
	body = http_get_once(ip, port);
	chld_restore(&old);
	return body;
}

static const char *http_get_once(const char *ip, int port)
{
	static char resp[4096];
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	size_t n = 0;
	ssize_t r;
	const char req[] = "GET / HTTP/1.0\r\nHost: x\r\n\r\n";

	resp[0] = '\0';
	inet_pton(AF_INET, ip, &sa.sin_addr);
	struct timeval tv = {5, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
		fprintf(stderr, "http_get %s:%d: %s\n", ip, port, strerror(errno));
		if (getenv("AEP_NODE_TEST_DEBUG"))
			sh("ip -br addr; ip route; ip neigh; bridge link");
		if (fd >= 0)
			close(fd);
		return resp;
	}
	while (n < sizeof(resp) - 1 && (r = read(fd, resp + n, sizeof(resp) - 1 - n)) > 0)
		n += (size_t)r;
	resp[n] = '\0';
	close(fd);
	char *body = strstr(resp, "\r\n\r\n");
	if (body == NULL)
		fprintf(stderr, "http_get %s:%d: no response (%zu bytes: %.80s) %s\n", ip, port, n,
			resp, strerror(errno));
	return body ? body + 4 : "";
}

/* ---- logs and exec plumbing --------------------------------------------- */

struct logs_got {
	struct aep_buf text;
	bool done;
	int status;
};

static void logs_cb(struct aep_logs_req *req, int status, const char *data, size_t len)
{
	struct logs_got *g = req->data;
	if (len > 0) {
		aep_buf_append(&g->text, data, len);
		return;
	}
	g->done = true;
	g->status = status;
}

static bool logs_done(void *arg)
{
	return ((struct logs_got *)arg)->done;
}

/* The whole log of @name/@ctr, NUL-terminated in @g->text. */
static void read_logs(const char *name, const char *ctr, bool follow, struct logs_got *g,
		      int64_t ms)
{
	struct aep_logs_req req = {.data = g};
	aep_buf_init(&g->text);
	g->done = false;
	assert_int_equal(aep_runtime_logs(rt, uid_of(name), ctr, follow, &req, logs_cb), 0);
	assert_true(run_until(logs_done, g, ms));
	aep_buf_append(&g->text, "", 1);
}

struct exec_got {
	bool done;
	int status, exit_code;
	char out[4096], err[4096];
};

static void exec_cb(struct aep_exec_req *req, int status, int exit_code, const struct aep_buf *out,
		    const struct aep_buf *err)
{
	struct exec_got *g = req->data;
	g->done = true;
	g->status = status;
	g->exit_code = exit_code;
	snprintf(g->out, sizeof(g->out), "%.*s", (int)out->len, out->data ? out->data : "");
	snprintf(g->err, sizeof(g->err), "%.*s", (int)err->len, err->data ? err->data : "");
}

static bool exec_done(void *arg)
{
	return ((struct exec_got *)arg)->done;
}

static void exec_in(const char *name, const char *ctr, const char *const argv[], struct exec_got *g)
{
	struct aep_exec_req req = {.data = g};
	struct aep_error e = {0};
	memset(g, 0, sizeof(*g));
	if (aep_runtime_exec(rt, uid_of(name), ctr, argv, &req, exec_cb, &e) != 0)
		fail_msg("exec: %s", e.msg);
	assert_true(run_until(exec_done, g, 20000));
	assert_int_equal(g->status, 0);
}

/* ---- the runtime -------------------------------------------------------- */

static int64_t running_at[64]; /* perf: when pod perf-N turned Running */
static int64_t created_at[64];

static void status_cb(struct aep_runtime *r, const char *uid, const struct aep_pod_status *st,
		      void *data)
{
	const char *p;
	(void)r;
	(void)data;
	if (st == NULL || st->phase != AEP_PHASE_RUNNING)
		return;
	p = strstr(uid, "-perf");
	if (p != NULL) {
		int i = atoi(p + 5);
		if (i >= 0 && i < 64 && running_at[i] == 0)
			running_at[i] = aep_now_monotonic_ns();
	}
}

static struct aep_runtime_config config(void)
{
	static char idp[24];
	snprintf(idp, sizeof(idp), "%s-", prefix);
	struct aep_runtime_config cfg = {
	    .dir = dir,
	    .runtime = runtime,
	    .bridge = bridge,
	    .pod_cidr = cidr,
	    .link_prefix = prefix,
	    .id_prefix = idp,
	    .backoff_base_ms = 100,
	    .backoff_max_ms = 2000,
	    .grace_ms = 1000,
	    .status_cb = status_cb,
	};
	return cfg;
}

static void rt_open(void)
{
	struct aep_runtime_config cfg = config();
	struct aep_error e = {0};
	if (aep_runtime_new(&loop, &cfg, &rt, &e) != 0)
		fail_msg("runtime: %s", e.msg);
}

static bool closed_flag;
static void closed(struct aep_runtime *r, void *data)
{
	(void)r;
	(void)data;
	closed_flag = true;
}

static bool is_closed(void *arg)
{
	(void)arg;
	return closed_flag;
}

static void rt_close(void)
{
	if (rt == NULL)
		return;
	closed_flag = false;
	aep_runtime_close(rt, closed, NULL);
	assert_true(run_until(is_closed, NULL, 10000));
	rt = NULL;
}

#define BB "'image':'busybox'"

static int setup(void **state)
{
	struct aep_error e = {0};
	char tar[512];

	(void)state;
	uv_loop_init(&loop);
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, tick_cb, 50, 50); /* bounds each UV_RUN_ONCE */
	snprintf(tar, sizeof(tar), "%s/busybox.tar", dir);
	if (aep_image_build_busybox(tar, NULL, &e) != 0 ||
	    aep_image_load(dir, "busybox", tar, &e) != 0) {
		fprintf(stderr, "image: %s\n", e.msg);
		return -1;
	}
	rt_open();
	return 0;
}

/* ---- tests -------------------------------------------------------------- */

static void test_image(void **state)
{
	struct aep_error e = {0};
	char path[600], tar[512];
	struct stat st;

	(void)state;
	snprintf(path, sizeof(path), "%s/images/busybox/rootfs/bin/wget", dir);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	snprintf(path, sizeof(path), "%s/images/busybox/rootfs/tmp", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 01777);
	assert_true(aep_image_exists(dir, "busybox"));
	snprintf(tar, sizeof(tar), "%s/busybox.tar", dir);
	assert_int_equal(aep_image_load(dir, "busybox", tar, &e), AEP_EEXISTS);
	/* A tarball that climbs out of the image is refused, nothing left. */
	assert_int_equal(sh("cd %s && mkdir -p evil/a && echo x > evil/x && "
			    "tar -cf evil.tar -P evil/a/../../evil/x 2>/dev/null",
			    dir),
			 0);
	snprintf(tar, sizeof(tar), "%s/evil.tar", dir);
	assert_int_equal(aep_image_load(dir, "evil", tar, &e), AEP_EINVALID);
	assert_false(aep_image_exists(dir, "evil"));
	assert_int_equal(aep_image_load(dir, "../x", tar, &e), AEP_EINVALID);
}

/* Bad pods are refused with a clear error and leave nothing; a missing
 * image keeps the container waiting; memory faults leave nothing behind or
 * a pod that still comes up. */
static void test_errors(void **state)
{
	struct aep_error e = {0};
	struct aep_object *o;
	struct aep_pod_status *st;

	(void)state;
	o = fx_must_decode("{'kind':'Pod','metadata':{'name':'nouid'},'spec':{'containers':["
			   "{'name':'c','image':'busybox'}]}}");
	assert_int_equal(aep_runtime_pod_run(rt, o, &e), AEP_EINVALID);
	assert_non_null(strstr(e.msg, "metadata.uid"));
	aep_object_unref(o);
	o = pod_new("badimg", "Never", "{'name':'c','image':'../../etc'}");
	assert_int_equal(aep_runtime_pod_run(rt, o, &e), AEP_EINVALID);
	aep_object_unref(o);
	assert_int_equal(aep_runtime_pod_status(rt, uid_of("badimg"), &st), AEP_ENOTFOUND);

	run_pod(pod_new("noimg", "Always", "{'name':'c','image':'nosuch:1.0'}"));
	for (int i = 0; i < 100; i++) {
		st = status_of("noimg");
		bool seen = strcmp(st->containers[0].reason, "ErrImageNeverPull") == 0;
		aep_pod_status_free(st);
		if (seen)
			break;
		run_for(100);
	}
	st = status_of("noimg");
	assert_string_equal(st->containers[0].reason, "ErrImageNeverPull");
	assert_int_equal(st->phase, AEP_PHASE_PENDING);
	assert_non_null(strstr(st->message, "nosuch:1.0"));
	aep_pod_status_free(st);
	kill_pod("noimg");

	/* Fail the Nth allocation of pod_run until it succeeds: before that,
	 * ENOMEM and no pod; the first success has its sandbox job's
	 * allocation failed (every allocation after the Nth fails), which a
	 * retry timer recovers from. */
	int rc = -1;
	for (long n = 1; n < 100 && rc != 0; n++) {
		o = pod_new("fault", "Always", "{'name':'c'," BB ",'command':['sleep','3600']}");
		aep_heap_fault_after(n);
		rc = aep_runtime_pod_run(rt, o, &e);
		aep_heap_fault_off();
		aep_object_unref(o);
		if (rc != 0) {
			assert_int_equal(rc, AEP_ENOMEM);
			assert_int_equal(aep_runtime_pod_status(rt, uid_of("fault"), &st),
					 AEP_ENOTFOUND);
		}
	}
	assert_int_equal(rc, 0);
	wait_phase("fault", AEP_PHASE_RUNNING, 20000);
	kill_pod("fault");
}

static char web_ip[16];

/* (a) a web pod gets an address; a second pod fetches its page. */
static void test_pod_network(void **state)
{
	struct aep_pod_status *st;
	char client[1024];
	struct logs_got g;

	(void)state;
	run_pod(pod_new("web", "Always",
			"{'name':'httpd'," BB ",'command':['httpd','-f','-p','80','-h','/www']}"));
	wait_phase("web", AEP_PHASE_RUNNING, 20000);
	st = status_of("web");
	assert_int_equal(strncmp(st->pod_ip, net3, strlen(net3)), 0);
	assert_int_equal(st->containers[0].state, AEP_CTR_RUNNING);
	snprintf(web_ip, sizeof(web_ip), "%s", st->pod_ip);
	aep_pod_status_free(st);
	/* Running again is a no-op: same container, no restart. */
	run_pod(pod_new("web", "Always",
			"{'name':'httpd'," BB ",'command':['httpd','-f','-p','80','-h','/www']}"));
	run_for(300);
	st = status_of("web");
	assert_int_equal(st->containers[0].restarts, 0);
	assert_int_equal(st->containers[0].state, AEP_CTR_RUNNING);
	aep_pod_status_free(st);

	snprintf(client, sizeof(client),
		 "{'name':'wget'," BB ",'command':['sh','-c','for i in 1 2 3 4 5 6 7 8 9 10; "
		 "do wget -q -O - http://%s/ && exit 0; sleep 0.3; done; exit 1']}",
		 web_ip);
	run_pod(pod_new("client", "Never", client));
	wait_phase("client", AEP_PHASE_SUCCEEDED, 20000);
	st = status_of("client");
	assert_int_not_equal(strcmp(st->pod_ip, web_ip), 0);
	assert_int_equal(st->containers[0].exit_code, 0);
	aep_pod_status_free(st);
	read_logs("client", "wget", false, &g, 5000);
	assert_int_equal(g.status, 0);
	assert_non_null(strstr(g.text.data, "hello from aep"));
	aep_buf_free(&g.text);
	/* And from the node itself (the bridge's gateway address). */
	assert_string_equal(http_get(web_ip, 80), "hello from aep\n");
	kill_pod("client");
}

/* (b) two containers share the pod's network namespace. */
static void test_shared_netns(void **state)
{
	struct aep_pod_status *st;
	struct logs_got g;

	(void)state;
	run_pod(pod_new("duo", "Never",
			"{'name':'server'," BB ",'command':['httpd','-f','-p','8080','-h','/www']},"
			"{'name':'probe'," BB
			",'command':['sh','-c','for i in 1 2 3 4 5 6 7 8 9 10; do "
			"wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.3; done; exit 1'],"
			"'securityContext':{'readOnlyRootFilesystem':true}}"));
	wait_phase("duo", AEP_PHASE_RUNNING, 20000);
	for (int i = 0; i < 100; i++) {
		st = status_of("duo");
		bool over = st->containers[1].state == AEP_CTR_TERMINATED;
		aep_pod_status_free(st);
		if (over)
			break;
		run_for(100);
	}
	st = status_of("duo");
	assert_int_equal(st->containers[0].state, AEP_CTR_RUNNING);
	assert_int_equal(st->containers[1].state, AEP_CTR_TERMINATED);
	assert_int_equal(st->containers[1].exit_code, 0);
	assert_int_equal(st->phase, AEP_PHASE_RUNNING);
	aep_pod_status_free(st);
	read_logs("duo", "probe", false, &g, 5000);
	assert_non_null(strstr(g.text.data, "hello from aep"));
	aep_buf_free(&g.text);
	st = status_of("duo");
	assert_string_equal(http_get(st->pod_ip, 8080), "hello from aep\n");
	aep_pod_status_free(st);
}

struct restarts_want {
	const char *uid;
	unsigned n;
};

static bool restarts_reach(void *arg)
{
	struct restarts_want *w = arg;
	struct aep_pod_status *st;
	bool ok;
	if (aep_runtime_pod_status(rt, w->uid, &st) != 0)
		return false;
	ok = st->containers[0].restarts >= w->n;
	aep_pod_status_free(st);
	return ok;
}

/* (c) exit codes, restart policies and backoff. */
static void test_exit_codes(void **state)
{
	struct aep_pod_status *st;
	int64_t t0;

	(void)state;
	t0 = aep_now_monotonic_ns();
	run_pod(pod_new("crash", "OnFailure",
			"{'name':'c'," BB ",'command':['sh','-c','echo boom; exit 3']}"));
	run_pod(pod_new("never", "Never", "{'name':'c'," BB ",'command':['sh','-c','exit 3']}"));
	run_pod(pod_new("ok", "OnFailure", "{'name':'c'," BB ",'command':['sh','-c','exit 0']}"));
	wait_phase("never", AEP_PHASE_FAILED, 20000);
	wait_phase("ok", AEP_PHASE_SUCCEEDED, 20000);

	struct restarts_want w = {uid_of("crash"), 3};
	assert_true(run_until(restarts_reach, &w, 20000));
	/* Backoff 100, 200, 400 ms before restarts 1, 2, 3: never faster. */
	int64_t took_ms = (aep_now_monotonic_ns() - t0) / 1000000;
	printf("[ info ] OnFailure exit 3: restartCount 3 after %lld ms (backoff sum 700 ms)\n",
	       (long long)took_ms);
	assert_true(took_ms >= 700);
	st = status_of("crash");
	assert_int_equal(st->phase, AEP_PHASE_RUNNING);
	assert_true(st->containers[0].has_run);
	assert_int_equal(st->containers[0].exit_code, 3);
	aep_pod_status_free(st);
	{
		struct logs_got g;
		read_logs("crash", "c", false, &g, 5000);
		/* Restarts append to the same log. */
		assert_non_null(strstr(strstr(g.text.data, "boom\n") + 1, "boom\n"));
		aep_buf_free(&g.text);
	}

	st = status_of("never");
	assert_int_equal(st->containers[0].state, AEP_CTR_TERMINATED);
	assert_int_equal(st->containers[0].exit_code, 3);
	assert_int_equal(st->containers[0].restarts, 0);
	assert_string_equal(st->containers[0].reason, "Error");
	aep_pod_status_free(st);
	st = status_of("ok");
	assert_int_equal(st->containers[0].exit_code, 0);
	assert_int_equal(st->containers[0].restarts, 0);
	assert_string_equal(st->containers[0].reason, "Completed");
	aep_pod_status_free(st);

	/* The status as the masters get it. */
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	st = status_of("never");
	aep_pod_status_pack(st, "crun", &pk);
	aep_pod_status_free(st);
	msgpack_zone z;
	msgpack_object o;
	struct aep_error e;
	msgpack_zone_init(&z, 1024);
	assert_int_equal(aep_mp_unpack(b.data, b.len, &z, &o, &e), 0);
	assert_true(aep_mp_str_eq(aep_mp_map_get(&o, "phase"), "Failed"));
	const msgpack_object *cs = aep_mp_map_get(&o, "containerStatuses");
	assert_non_null(cs);
	const msgpack_object *term =
	    aep_mp_map_get(aep_mp_map_get(&cs->via.array.ptr[0], "state"), "terminated");
	assert_non_null(term);
	assert_int_equal(aep_mp_map_get(term, "exitCode")->via.i64, 3);
	msgpack_zone_destroy(&z);
	aep_buf_free(&b);

	kill_pod("crash");
	kill_pod("never");
	kill_pod("ok");
}

/* (c2) a crash-looping pod killed at many moments of its cycle (running,
 * exited, waiting out the back-off, being started again): every kill
 * ends, and leaves no directory. */
static void test_kill_while_restarting(void **state)
{
	(void)state;
	for (int i = 0; i < 12; i++) {
		char name[16];
		snprintf(name, sizeof(name), "loop%d", i);
		run_pod(pod_new(name, "Always",
				"{'name':'c'," BB ",'command':['sh','-c','sleep 0.05; exit 1']}"));
		struct restarts_want w = {uid_of(name), 1};
		assert_true(run_until(restarts_reach, &w, 20000));
		run_for(i * 37 % 300);
		kill_pod(name);
		assert_int_not_equal(sh("test -e %s/pods/%s", dir, uid_of(name)), 0);
	}
}

/* (d) logs (also followed) and exec. */
static void test_logs_exec(void **state)
{
	struct logs_got g;
	struct exec_got x;

	(void)state;
	run_pod(pod_new("talk", "Never",
			"{'name':'c'," BB ",'command':['sh','-c','sleep 0.5; for i in 1 2 3; do "
			"echo line$i; sleep 0.2; done']}"));
	/* Follow from before the container runs until it has ended. */
	read_logs("talk", "c", true, &g, 20000);
	assert_int_equal(g.status, 0);
	assert_string_equal(g.text.data, "line1\nline2\nline3\n");
	aep_buf_free(&g.text);
	wait_phase("talk", AEP_PHASE_SUCCEEDED, 5000);

	const char *cat[] = {"cat", "/www/index.html", NULL};
	exec_in("web", "httpd", cat, &x);
	assert_int_equal(x.exit_code, 0);
	assert_string_equal(x.out, "hello from aep\n");
	const char *mixed[] = {"sh", "-c", "echo out; echo err >&2; hostname; exit 7", NULL};
	exec_in("web", "httpd", mixed, &x);
	assert_int_equal(x.exit_code, 7);
	assert_string_equal(x.out, "out\nweb\n");
	assert_string_equal(x.err, "err\n");
	/* Environment, limits and the writable overlay. */
	const char *probe[] = {"sh", "-c", "touch /made && echo $HOSTNAME", NULL};
	exec_in("web", "httpd", probe, &x);
	assert_int_equal(x.exit_code, 0);
	/* A read-only root refuses writes but /tmp works. */
	run_pod(pod_new("ro", "Always",
			"{'name':'c'," BB ",'command':['sleep','3600'],"
			"'env':[{'name':'GREETING','value':'hi there'}],"
			"'resources':{'limits':{'memory':'64Mi','cpu':'250m'}},"
			"'securityContext':{'readOnlyRootFilesystem':true}}"));
	wait_phase("ro", AEP_PHASE_RUNNING, 20000);
	const char *ro[] = {"sh", "-c",
			    "touch /x 2>/dev/null && echo rw || echo ro; "
			    "touch /tmp/x && echo tmp-ok; echo $GREETING",
			    NULL};
	exec_in("ro", "c", ro, &x);
	assert_string_equal(x.out, "ro\ntmp-ok\nhi there\n");
	kill_pod("talk");
	kill_pod("ro");
}

/* (f) kill removes containers, veth, namespace, address. */
static void test_kill_cleans(void **state)
{
	struct aep_pod_status *st;
	char ip[16], id[AEP_CTR_ID_MAX];
	char veth[32];

	(void)state;
	st = status_of("duo");
	snprintf(ip, sizeof(ip), "%s", st->pod_ip);
	snprintf(id, sizeof(id), "%s", st->containers[0].id);
	aep_pod_status_free(st);
	/* The veth of the pod: the host end named PREFIX + hex index. */
	snprintf(veth, sizeof(veth), "%s%x", prefix, atoi(strrchr(ip, '.') + 1));
	assert_int_equal(sh("ip link show %s >/dev/null 2>&1", veth), 0);
	assert_int_equal(sh("test -e %s/ipam/%s", dir, ip), 0);
	assert_non_null(strstr(sh_out("%s --root %s/oci list -q", runtime, dir), id));

	kill_pod("duo");
	struct aep_pod_status *none = NULL;
	assert_int_equal(aep_runtime_pod_status(rt, uid_of("duo"), &none), AEP_ENOTFOUND);
	assert_int_not_equal(sh("ip link show %s >/dev/null 2>&1", veth), 0);
	assert_int_not_equal(sh("test -e %s/ipam/%s", dir, ip), 0);
	assert_int_not_equal(sh("test -e %s/netns/%s", dir, uid_of("duo")), 0);
	assert_int_not_equal(sh("test -e %s/pods/%s", dir, uid_of("duo")), 0);
	assert_null(strstr(sh_out("%s --root %s/oci list -q", runtime, dir), id));
	assert_int_not_equal(sh("grep -qF %s/pods/%s /proc/self/mountinfo", dir, uid_of("duo")), 0);
	assert_int_equal(aep_runtime_pod_kill(rt, uid_of("duo"), NULL, NULL), AEP_ENOTFOUND);
}

static void adopt_done(struct aep_runtime *r, int status, void *data)
{
	(void)r;
	*(int *)data = status;
}

static bool adopt_is_done(void *arg)
{
	return *(int *)arg != -1;
}

/* (e) adoption after the agent is SIGKILLed. */
static void test_adopt(void **state)
{
	char line[512], id[AEP_CTR_ID_MAX], pid[32], ip[16];
	int fds[2];
	pid_t child;
	posix_spawn_file_actions_t fa;
	FILE *f;

	(void)state;
	/* The web pod stays in this runtime's directory; close it (an agent
	 * that stops leaves its containers running). */
	struct aep_pod_status *st = status_of("web");
	char web_id[AEP_CTR_ID_MAX];
	snprintf(web_id, sizeof(web_id), "%s", st->containers[0].id);
	aep_pod_status_free(st);
	rt_close();

	/* A child agent runs another pod and is killed with SIGKILL. */
	assert_int_equal(pipe(fds), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addclose(&fa, fds[0]);
	char *argv[] = {self_exe, "--agent", dir, prefix, (char *)runtime, cidr, NULL};
	assert_int_equal(posix_spawn(&child, self_exe, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	f = fdopen(fds[0], "r");
	agent_pid = child;
	assert_non_null(f);
	char *got = fgets(line, sizeof(line), f);
	fclose(f);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	agent_pid = 0;
	assert_non_null(got);
	assert_int_equal(sscanf(line, "%191s %31s %15s", id, pid, ip), 3);
	printf("[ info ] agent %d killed; its pod: container %s pid %s ip %s\n", (int)child, id,
	       pid, ip);

	/* A new runtime adopts both pods: same ids, same processes. */
	rt_open();
	struct aep_pod_status *st2;
	int adopt_status = -1;
	assert_int_equal(aep_runtime_adopt(rt, adopt_done, &adopt_status), 0);
	assert_true(run_until(adopt_is_done, &adopt_status, 30000));
	assert_int_equal(adopt_status, 0);
	wait_phase("adoptee", AEP_PHASE_RUNNING, 20000);
	wait_phase("web", AEP_PHASE_RUNNING, 20000);
	st2 = status_of("adoptee");
	assert_string_equal(st2->containers[0].id, id);
	assert_int_equal(st2->containers[0].restarts, 0);
	assert_string_equal(st2->pod_ip, ip);
	aep_pod_status_free(st2);
	st2 = status_of("web");
	assert_string_equal(st2->containers[0].id, web_id);
	assert_int_equal(st2->containers[0].restarts, 0);
	aep_pod_status_free(st2);
	/* The same process, still serving. */
	char pidfile[1024];
	snprintf(pidfile, sizeof(pidfile), "%s/pods/%s/c/httpd/pid", dir, uid_of("adoptee"));
	assert_string_equal(sh_out("cat %s", pidfile), pid);
	assert_int_equal(kill(atoi(pid), 0), 0);
	assert_string_equal(http_get(ip, 80), "hello from aep\n");
	assert_string_equal(http_get(web_ip, 80), "hello from aep\n");
	run_for(500);
	st2 = status_of("adoptee");
	assert_int_equal(st2->containers[0].restarts, 0);
	assert_int_equal(st2->containers[0].state, AEP_CTR_RUNNING);
	aep_pod_status_free(st2);
	/* Its end is still seen: kill the process behind the runtime's back. */
	kill(atoi(pid), SIGKILL);
	struct restarts_want w = {uid_of("adoptee"), 1};
	assert_true(run_until(restarts_reach, &w, 20000));
	wait_phase("adoptee", AEP_PHASE_RUNNING, 20000);
	kill_pod("adoptee");
	kill_pod("web");
}

static int percentile(int64_t *v, int n, int pct)
{
	int idx = (n * pct + 99) / 100 - 1;
	return (int)(v[idx < 0 ? 0 : idx] / 1000000);
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static bool all_running(void *arg)
{
	int n = *(int *)arg;
	for (int i = 0; i < n; i++)
		if (running_at[i] == 0)
			return false;
	return true;
}

/* Figures: pod start (create to Running), one at a time and 20 at once. */
static void test_perf(void **state)
{
	const int n = 20;
	int64_t lat[64];
	char name[32];

	(void)state;
	for (int round = 0; round < 2; round++) {
		memset(running_at, 0, sizeof(running_at));
		for (int i = 0; i < n; i++) {
			snprintf(name, sizeof(name), "perf%d", i);
			created_at[i] = aep_now_monotonic_ns();
			run_pod(pod_new(name, "Always",
					"{'name':'c'," BB ",'command':['sleep','3600']}"));
			if (round == 0) {
				int k = i + 1;
				assert_true(run_until(all_running, &k, 30000));
			}
		}
		int k = n;
		assert_true(run_until(all_running, &k, 60000));
		for (int i = 0; i < n; i++)
			lat[i] = running_at[i] - created_at[i];
		qsort(lat, (size_t)n, sizeof(lat[0]), cmp64);
		printf("[ info ] %s: %d pods, create to Running: p50 %d ms, p99 %d ms, max %d ms "
		       "(%s)\n",
		       round == 0 ? "one at a time" : "all at once", n, percentile(lat, n, 50),
		       percentile(lat, n, 99), (int)(lat[n - 1] / 1000000), runtime);
		struct kill_wait kw = {0, 0};
		int64_t t0 = aep_now_monotonic_ns();
		for (int i = 0; i < n; i++) {
			snprintf(name, sizeof(name), "perf%d", i);
			assert_int_equal(aep_runtime_pod_kill(rt, uid_of(name), kill_done, &kw), 0);
		}
		for (int i = 0; i < 600 && kw.done < n; i++)
			run_for(100);
		assert_int_equal(kw.done, n);
		printf("[ info ] killed %d pods in %lld ms (grace 1 s: sleep ignores SIGTERM)\n", n,
		       (long long)((aep_now_monotonic_ns() - t0) / 1000000));
	}
}

/* (g) nothing is left behind. */
static void test_nothing_left(void **state)
{
	(void)state;
	rt_close();
	assert_string_equal(sh_out("%s --root %s/oci list -q", runtime, dir), "");
	assert_string_equal(
	    sh_out("ls %s/pods %s/netns %s/ipam", dir, dir, dir),
	    sh_out("printf '%s/ipam:\\n\\n%s/netns:\\n\\n%s/pods:\\n'", dir, dir, dir));
	assert_int_not_equal(sh("grep -qF %s/ /proc/self/mountinfo", dir), 0);
	/* Only the bridge is left of our links; the runtime keeps it. */
	assert_string_equal(sh_out("ip -o link show | grep -oE ' %s[0-9a-f]+[@:]' | sort", prefix),
			    "");
	/* The runtime deleted the containers' cgroups. */
	assert_string_equal(sh_out("ls -d /sys/fs/cgroup/*/%s-* 2>/dev/null", prefix), "");
	assert_int_equal(sh("ip link show %s >/dev/null", bridge), 0);
	assert_int_equal(sh("ip link del %s", bridge), 0);
	assert_int_equal(sh("for p in /proc/[0-9]*; do grep -qsF '%s/' $p/cmdline && "
			    "[ ${p#/proc/} != $$ ] && exit 1; done; exit 0",
			    dir),
			 0);
}

/* ---- the child agent of test_adopt -------------------------------------- */

static bool adoptee_running(void *arg)
{
	(void)arg;
	struct want w = {uid_of("adoptee"), AEP_PHASE_RUNNING};
	return phase_is(&w);
}

static int agent_main(char **argv)
{
	struct aep_pod_status *st;

	prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
	snprintf(dir, sizeof(dir), "%s", argv[2]);
	snprintf(prefix, sizeof(prefix), "%s", argv[3]);
	runtime = argv[4];
	snprintf(cidr, sizeof(cidr), "%s", argv[5]);
	snprintf(bridge, sizeof(bridge), "%.8sbr", prefix);
	uv_loop_init(&loop);
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, tick_cb, 50, 50);
	rt_open();
	run_pod(pod_new("adoptee", "Always",
			"{'name':'httpd'," BB ",'command':['httpd','-f','-p','80','-h','/www']}"));
	if (!run_until(adoptee_running, NULL, 20000))
		return 1;
	assert_int_equal(aep_runtime_pod_status(rt, uid_of("adoptee"), &st), 0);
	char pidfile[1024], pid[32] = "";
	snprintf(pidfile, sizeof(pidfile), "%s/pods/%s/c/httpd/pid", dir, uid_of("adoptee"));
	snprintf(pid, sizeof(pid), "%s", sh_out("cat %s", pidfile));
	printf("%s %s %s\n", st->containers[0].id, pid, st->pod_ip);
	fflush(stdout);
	aep_pod_status_free(st);
	for (;;)
		uv_run(&loop, UV_RUN_DEFAULT); /* until SIGKILL */
}

int main(int argc, char **argv)
{
	struct aep_error e = {0};

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1) < 0)
		return 1;
	if (argc >= 6 && strcmp(argv[1], "--agent") == 0)
		return agent_main(argv);
	if (argc >= 3 && strcmp(argv[1], "--runtime") == 0)
		runtime = argv[2];
	if (geteuid() != 0) {
		printf("SKIP: the node runtime test needs root (namespaces, mounts, %s)\n",
		       runtime);
		return 77;
	}
	if (sh("command -v %s >/dev/null && command -v busybox >/dev/null && command -v ip "
	       ">/dev/null",
	       runtime) != 0) {
		printf("FAIL: %s, busybox or ip missing: run scripts/setup.sh\n", runtime);
		return 1;
	}
	/* A network namespace of our own, then a private mount namespace
	 * without the cgroup2 mount. No thread exists yet. */
	if (unshare(CLONE_NEWNET) != 0) {
		perror("unshare(CLONE_NEWNET)");
		return 1;
	}
	sh("ip link set lo up");
	if (aep_node_host_prepare(&e) != 0) {
		printf("FAIL: %s\n", e.msg);
		return 1;
	}
	snprintf(prefix, sizeof(prefix), "an%04x", (unsigned)getpid() & 0xffff);
	snprintf(bridge, sizeof(bridge), "%.8sbr", prefix);
	snprintf(net3, sizeof(net3), "10.88.%u", (unsigned)getpid() % 250 + 1);
	snprintf(cidr, sizeof(cidr), "%s.0/24", net3);
	snprintf(dir, sizeof(dir), "/tmp/aep-node-%s-XXXXXX", prefix);
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	atexit(cleanup);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	printf("[ info ] runtime %s, dir %s, bridge %s, subnet %s\n", runtime, dir, bridge, cidr);

	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_image),	 cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_pod_network),	 cmocka_unit_test(test_shared_netns),
	    cmocka_unit_test(test_exit_codes),	 cmocka_unit_test(test_kill_while_restarting),
	    cmocka_unit_test(test_logs_exec),	 cmocka_unit_test(test_kill_cleans),
	    cmocka_unit_test(test_adopt),	 cmocka_unit_test(test_perf),
	    cmocka_unit_test(test_nothing_left),
	};
	int failed = cmocka_run_group_tests_name("node_runtime", tests, setup, NULL);
	if (rt != NULL) {
		closed_flag = false;
		aep_runtime_close(rt, closed, NULL);
		run_until(is_closed, NULL, 10000);
	}
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	cleanup();
	return failed == 0 ? 0 : 1;
}
