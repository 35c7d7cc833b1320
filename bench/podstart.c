/* aep-bench podstart: the time from a pod's create call to the watch
 * event that shows it Running, on a real node agent running real crun
 * containers, as a user's pod takes that path.
 *
 * Happy path. As root: a node host (node/host.h: network namespace
 * aepb-podstart-PORT, veth aepbpsPORT with 10.97.X.Y+1/30 on this side,
 * +2 inside), named after --base-port, so that a run that was killed -9
 * is purged by the next run on the same port; --masters masters whose
 * API listens on this side's address (their certificates name it; Raft
 * and HTTP stay on 127.0.0.1); a bootstrap token; the busybox image
 * loaded into the node's directory; `aep node` n1 started in the host,
 * its output read through a FIFO and time-stamped here as it comes; the
 * Node waited for until Ready. Then a watch on the benchmark's pods on the
 * leader (--watch-follower: on a follower, which learns of each commit a
 * little later), and --pods pods created unbound on the leader (the scheduler
 * binds them, the leader pushes them to the agent, the agent starts them
 * and reports them Running), each running `sleep 3600`: --concurrency of
 * them in flight (default 1: the next pod is created once the previous one
 * is Running, so that each starts on an idle node). For each pod: the
 * create's send, its answer, the watch events showing it bound and
 * Running, the agent's "run" and "Pending -> Running" lines, and the
 * modification times of the files the agent's runtime writes on the way
 * (the address reservation, the OCI bundle written after the pod's
 * network, the end of the sandbox, the container's start job and crun's
 * pid file; file times come from the kernel's coarse clock, in steps of a
 * few ms). Printed: where the time
 * goes (percentiles of each step), then the line
 *   pods=N p50_ms=... p99_ms=... max_ms=...
 * Then every pod is deleted, the agent waited for until it removed them,
 * and everything is removed: agent, containers, namespace, link,
 * directories, masters.
 *
 * Failure modes: a create that fails, a pod that ends Failed or
 * Succeeded, the watch connection lost, no Node Ready within 60 s, or
 * --timeout reached fail the run (exit status 1) after the same clean-up,
 * which keeps the masters' and the agent's logs.
 * SIGINT and SIGTERM unwind through it too; without root the run exits 77
 * at once (ctest: skipped). */
#include "bench/bench.h"
#include "node/host.h"
#include "node/node.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PS_MAX_PODS	    10000u
#define PS_MAX_CONCURRENCY  256u
#define PS_TICK_MS	    50
#define PS_READY_TIMEOUT_MS 60000
#define PS_GONE_TIMEOUT_MS  120000
#define PS_DELETE_WINDOW    64
#define PS_LINE_MAX	    4096
#define PS_APP		    "aep-bench-podstart"
#define PS_NODE		    "n1"
#define PS_PREFIX	    "podstart-"
#define MS(ns)		    ((double)(ns) / 1e6)

struct ps_opts {
	unsigned pods, concurrency, masters, base, timeout_s;
	bool watch_follower; /* else the watch is on the leader */
	char aep[4096];
};

/* The runtime's files of a pod whose modification times mark its steps,
 * in the order it writes them (node/runtime.c, node/net.c). */
enum ps_file {
	F_IPAM,	    /* ipam/IP: the sandbox job began (address reserved) */
	F_BUNDLE,   /* pods/UID/c/c/config.json: network set up, OCI bundle written */
	F_SANDBOX,  /* pods/UID/start: the sandbox job's last write */
	F_RESTARTS, /* pods/UID/c/c/restarts: the start job (rootfs mounted) */
	F_PID,	    /* pods/UID/c/c/pid: crun created the container */
	F__COUNT
};

/* One pod. Times are monotonic ns; 0: not seen. */
struct ps_pod {
	char uid[40];
	char ip[16];
	int64_t t_send, t_ack, t_bound, t_agent_run, t_agent_running, t_running;
	int64_t f[F__COUNT];
	bool deleted; /* the watch saw it go */
};

struct podstart {
	struct ps_opts o;
	uv_loop_t *loop;
	struct bench_cluster cl;
	struct aep_nodehost *host;
	char node_dir[512];
	char fifo[600];
	struct aep_rpc_client *conn;	/* creates and deletes, to the leader */
	struct aep_rpc_client *watcher; /* the watch: leader, or --watch-follower */
	uv_timer_t tick;
	uv_pipe_t agent_out;
	bool agent_out_open;
	int fifo_wfd; /* our own write end: the FIFO never reads as ended */
	FILE *agent_log;
	char line[PS_LINE_MAX];
	size_t line_len;
	struct ps_pod *pods;
	unsigned sent, inflight, running; /* creates sent; sent, not yet Running */
	unsigned del_next, del_inflight, deleted_seen, removed;
	int64_t t_start, deadline, rt_offset; /* rt_offset: realtime - monotonic */
	enum { PS_IDLE, PS_CREATING, PS_DELETING } stage;
	bool failed;
	char why[512];
};

static void fail(struct podstart *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fail the run with a message (the first one counts) and leave the loop. */
static void fail(struct podstart *b, const char *fmt, ...)
{
	if (!b->failed) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(b->why, sizeof(b->why), fmt, ap);
		va_end(ap);
		b->failed = true;
	}
	uv_stop(b->loop);
}

/* While deleting: every pod is gone from the store and from the node. */
static void check_gone(struct podstart *b)
{
	if (b->stage == PS_DELETING && b->deleted_seen >= b->sent && b->removed >= b->sent)
		uv_stop(b->loop);
}

/* ---- small helpers ------------------------------------------------------------- */

static bool pod_index(const struct podstart *b, const char *s, size_t len, unsigned *idx)
{
	size_t pl = sizeof(PS_PREFIX) - 1;
	unsigned v = 0;
	if (len <= pl || memcmp(s, PS_PREFIX, pl) != 0)
		return false;
	for (size_t i = pl; i < len; i++) {
		if (s[i] < '0' || s[i] > '9' || v > PS_MAX_PODS)
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v >= b->o.pods)
		return false;
	*idx = v;
	return true;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static void copy_str(char *out, size_t size, const msgpack_object *o)
{
	out[0] = '\0';
	if (o != NULL && o->type == MSGPACK_OBJECT_STR && o->via.str.size < size) {
		memcpy(out, o->via.str.ptr, o->via.str.size);
		out[o->via.str.size] = '\0';
	}
}

static void pack_kv(msgpack_packer *pk, const char *k, const char *v)
{
	aep_pack_str(pk, k);
	aep_pack_str(pk, v);
}

/* rm -rf @path, without a shell. */
static void rm_rf(const char *path)
{
	pid_t pid = fork();
	if (pid == 0) {
		execl("/bin/rm", "rm", "-rf", "--", path, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
}

/* A whole call on the benchmark's connection, its result in @res. */
static int call(struct podstart *b, struct aep_rpc_client *c, const char *method,
		const struct aep_buf *req, struct aep_buf *res, struct aep_error *e)
{
	return aep_rpc_call_sync(b->loop, c, method, req->data, req->len, 10000, res, e);
}

/* ---- the agent's output ---------------------------------------------------------- */

/* One line of the agent's output at @now: kept in the log with its time,
 * and the steps of the benchmark's pods taken from it. */
static void agent_line(struct podstart *b, char *line, int64_t now)
{
	if (b->agent_log != NULL)
		fprintf(b->agent_log, "[%10.6f] %s\n", (double)(now - b->t_start) / 1e9, line);
	char *p = strstr(line, ": pod default/" PS_PREFIX);
	unsigned idx;
	if (p != NULL) {
		char *name = p + strlen(": pod default/");
		size_t n = strcspn(name, " :");
		if (!pod_index(b, name, n, &idx))
			return;
		struct ps_pod *pod = &b->pods[idx];
		const char *rest = name + n;
		if (ends_with(rest, ": run") && pod->t_agent_run == 0)
			pod->t_agent_run = now;
		else if (strncmp(rest, ": Pending -> Running", 20) == 0 &&
			 pod->t_agent_running == 0)
			pod->t_agent_running = now;
		return;
	}
	if (ends_with(line, ": stopped and removed")) {
		b->removed++;
		check_gone(b);
	}
}

static void agent_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char chunk[16384];
	(void)h;
	(void)suggested;
	buf->base = chunk;
	buf->len = sizeof(chunk);
}

static void agent_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct podstart *b = s->data;
	if (n < 0) {
		uv_read_stop(s);
		return;
	}
	int64_t now = aep_now_monotonic_ns();
	for (ssize_t i = 0; i < n; i++) {
		char ch = buf->base[i];
		if (ch == '\n' || b->line_len == sizeof(b->line) - 1) {
			b->line[b->line_len] = '\0';
			agent_line(b, b->line, now);
			b->line_len = 0;
			if (ch == '\n')
				continue;
		}
		b->line[b->line_len++] = ch;
	}
}

/* The FIFO the agent writes to: its read end on the loop, and a write end
 * of our own so that it never reads as ended while no agent runs. */
static int agent_out_open(struct podstart *b)
{
	snprintf(b->fifo, sizeof(b->fifo), "%s/agent.fifo", b->cl.dir);
	if (mkfifo(b->fifo, 0600) != 0) {
		fprintf(stderr, "aep-bench podstart: mkfifo %s: %s\n", b->fifo, strerror(errno));
		return 1;
	}
	int rfd = open(b->fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	b->fifo_wfd = rfd >= 0 ? open(b->fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC) : -1;
	if (rfd < 0 || b->fifo_wfd < 0) {
		fprintf(stderr, "aep-bench podstart: open %s: %s\n", b->fifo, strerror(errno));
		if (rfd >= 0)
			close(rfd);
		return 1;
	}
	char path[700];
	snprintf(path, sizeof(path), "%s/%s.log", b->cl.dir, PS_NODE);
	b->agent_log = fopen(path, "we");
	uv_pipe_init(b->loop, &b->agent_out, 0);
	b->agent_out.data = b;
	b->agent_out_open = true;
	if (uv_pipe_open(&b->agent_out, rfd) != 0 ||
	    uv_read_start((uv_stream_t *)&b->agent_out, agent_alloc, agent_read) != 0) {
		fprintf(stderr, "aep-bench podstart: reading %s failed\n", b->fifo);
		return 1;
	}
	return 0;
}

/* ---- set-up ----------------------------------------------------------------------- */

/* A bootstrap token (docs/NODES.md), as `aep admin token create` makes
 * it, into @token ("ID.SECRET"). */
static int make_token(struct podstart *b, char token[24])
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char rnd[22];
	char id[7], secret[17], name[32];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		fprintf(stderr, "aep-bench podstart: getrandom: %s\n", strerror(errno));
		return 1;
	}
	for (int i = 0; i < 6; i++)
		id[i] = alphabet[rnd[i] % 36];
	for (int i = 0; i < 16; i++)
		secret[i] = alphabet[rnd[6 + i] % 36];
	id[6] = secret[16] = '\0';
	snprintf(name, sizeof(name), "bootstrap-token-%s", id);
	struct aep_buf req, res;
	struct aep_error e = {0};
	msgpack_packer pk;
	aep_buf_init(&req);
	aep_buf_init(&res);
	aep_packer_init(&pk, &req);
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "object");
	msgpack_pack_map(&pk, 5);
	pack_kv(&pk, "apiVersion", "v1");
	pack_kv(&pk, "kind", "Secret");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 2);
	pack_kv(&pk, "name", name);
	pack_kv(&pk, "namespace", "kube-system");
	pack_kv(&pk, "type", "aep.io/bootstrap-token");
	aep_pack_str(&pk, "data");
	msgpack_pack_map(&pk, 4);
	pack_kv(&pk, "token-id", id);
	pack_kv(&pk, "token-secret", secret);
	pack_kv(&pk, "usage-join", "true");
	pack_kv(&pk, "description", "aep-bench podstart");
	int rv = req.failed ? AEP_ENOMEM : call(b, b->conn, "create", &req, &res, &e);
	aep_buf_free(&req);
	aep_buf_free(&res);
	if (rv != 0) {
		fprintf(stderr, "aep-bench podstart: creating a bootstrap token: %s\n",
			e.msg[0] ? e.msg : aep_err_code(rv));
		return 1;
	}
	snprintf(token, 24, "%s.%s", id, secret);
	return 0;
}

/* The Node's Ready condition is True. */
static bool node_ready(struct podstart *b)
{
	struct aep_buf req, res;
	struct aep_error e = {0};
	msgpack_packer pk;
	msgpack_unpacked up;
	bool ready = false;
	aep_buf_init(&req);
	aep_buf_init(&res);
	aep_packer_init(&pk, &req);
	msgpack_pack_map(&pk, 2);
	pack_kv(&pk, "kind", "Node");
	pack_kv(&pk, "name", PS_NODE);
	msgpack_unpacked_init(&up);
	if (!req.failed && call(b, b->conn, "get", &req, &res, &e) == 0 &&
	    msgpack_unpack_next(&up, res.data, res.len, NULL) == MSGPACK_UNPACK_SUCCESS) {
		const msgpack_object *conds =
		    aep_mp_map_get(aep_mp_map_get(&up.data, "status"), "conditions");
		for (uint32_t i = 0; conds != NULL && conds->type == MSGPACK_OBJECT_ARRAY &&
				     i < conds->via.array.size;
		     i++) {
			const msgpack_object *c = &conds->via.array.ptr[i];
			if (aep_mp_str_eq(aep_mp_map_get(c, "type"), "Ready") &&
			    aep_mp_str_eq(aep_mp_map_get(c, "status"), "True"))
				ready = true;
		}
	}
	msgpack_unpacked_destroy(&up);
	aep_buf_free(&req);
	aep_buf_free(&res);
	return ready;
}

static void tick_cb(uv_timer_t *t)
{
	struct podstart *b = t->data;
	if (bench_interrupted)
		fail(b, "interrupted by signal %d", (int)bench_interrupted);
	else if (b->stage == PS_CREATING && aep_now_monotonic_ns() > b->deadline)
		fail(b, "--timeout: %u of %u pods Running (agent log: %s/%s.log)", b->running,
		     b->o.pods, b->cl.dir, PS_NODE);
	else if (b->stage == PS_DELETING && aep_now_monotonic_ns() > b->deadline)
		fail(b,
		     "deleting the pods: after %d s, %u of %u gone from the store, %u removed "
		     "from the node",
		     PS_GONE_TIMEOUT_MS / 1000, b->deleted_seen, b->sent, b->removed);
	else if (b->host != NULL && aep_nodehost_agent_ended(b->host))
		fail(b, "the agent exited (status %d); its log: %s/%s.log", b->host->agent_status,
		     b->cl.dir, PS_NODE);
}

/* Run the loop for @ms, reading the agent's output; false when the run
 * failed or was interrupted meanwhile. */
static bool pause_ms(struct podstart *b, unsigned ms)
{
	int64_t until = aep_now_monotonic_ns() + (int64_t)ms * 1000000;
	while (!b->failed && aep_now_monotonic_ns() < until)
		uv_run(b->loop, UV_RUN_ONCE);
	return !b->failed;
}

static int servers_from(struct podstart *b, unsigned first, char *out, size_t size)
{
	size_t off = 0;
	out[0] = '\0';
	for (unsigned k = 0; k < b->cl.n; k++) {
		char addr[BENCH_ADDR_MAX];
		bench_cluster_api(&b->cl, (first + k) % b->cl.n, addr, sizeof(addr));
		int n = snprintf(out + off, size - off, "%s%s", k ? "," : "", addr);
		if (n < 0 || (size_t)n >= size - off)
			return 1;
		off += (size_t)n;
	}
	return 0;
}

static void watch_notify(void *data, const char *method, size_t method_len,
			 const msgpack_object *params);
static void watch_lost(void *data);

/* The node host, the masters, the agent: up to a Ready Node. */
static int setup(struct podstart *b)
{
	struct aep_error e = {0};
	char netns[64], link[16], host_addr[32], node_addr[32], host_ip[16];
	unsigned slot = (b->o.base % 16384u) * 4; /* a /30 of 10.97.0.0/16 */
	snprintf(netns, sizeof(netns), "aepb-podstart-%u", b->o.base);
	snprintf(link, sizeof(link), "aepbps%u", b->o.base);
	snprintf(host_ip, sizeof(host_ip), "10.97.%u.%u", slot >> 8, (slot & 255) + 1);
	snprintf(host_addr, sizeof(host_addr), "%s/30", host_ip);
	snprintf(node_addr, sizeof(node_addr), "10.97.%u.%u/30", slot >> 8, (slot & 255) + 2);
	const char *tmp = getenv("TMPDIR");
	snprintf(b->node_dir, sizeof(b->node_dir), "%s/aep-bench-podstart-%u-node",
		 tmp && *tmp ? tmp : "/tmp", b->o.base);
	struct aep_nodehost_config cfg = {
	    .netns = netns,
	    .link = link,
	    .dir = b->node_dir,
	    .host_addr = host_addr,
	    .node_addr = node_addr,
	    .runtime = "crun",
	};
	/* What a run killed with SIGKILL on this port left, then a clean
	 * directory (the purge keeps the node's identity and images). */
	if (aep_nodehost_purge(&cfg, &e) != 0) {
		fprintf(stderr, "aep-bench podstart: purging an earlier run: %s\n", e.msg);
		return 1;
	}
	rm_rf(b->node_dir);
	if (aep_nodehost_create(&cfg, &b->host, &e) != 0) {
		fprintf(stderr, "aep-bench podstart: node host: %s\n", e.msg);
		return 1;
	}
	fprintf(stderr, "aep-bench podstart: node host: namespace %s, %s %s <-> %s, dir %s\n",
		netns, link, host_addr, node_addr, b->node_dir);

	snprintf(b->cl.host, sizeof(b->cl.host), "%s", host_ip);
	b->cl.defer_signals = 1;
	if (bench_cluster_start(&b->cl, b->o.masters, b->o.base, b->o.aep) != 0)
		return 1;
	fprintf(stderr, "aep-bench podstart: %u masters in %s, leader m%u at %s\n", b->o.masters,
		b->cl.dir, b->cl.leader + 1, b->cl.leader_addr);

	char servers[BENCH_MAX_MASTERS * BENCH_ADDR_MAX],
	    wservers[BENCH_MAX_MASTERS * BENCH_ADDR_MAX];
	unsigned f =
	    b->o.watch_follower && b->cl.n > 1 ? (b->cl.leader + 1) % b->cl.n : b->cl.leader;
	if (servers_from(b, b->cl.leader, servers, sizeof(servers)) != 0 ||
	    servers_from(b, f, wservers, sizeof(wservers)) != 0)
		return 1;
	struct aep_rpc_client_config cc = {.servers = servers, .tls = b->cl.tls};
	struct aep_rpc_client_config wc = {.servers = wservers,
					   .tls = b->cl.tls,
					   .on_notify = watch_notify,
					   .on_disconnect = watch_lost,
					   .data = b};
	if (aep_rpc_client_new(b->loop, &cc, &b->conn, &e) != 0 ||
	    aep_rpc_client_new(b->loop, &wc, &b->watcher, &e) != 0) {
		fprintf(stderr, "aep-bench podstart: client: %s\n", e.msg);
		return 1;
	}
	uv_timer_init(b->loop, &b->tick);
	b->tick.data = b;
	uv_timer_start(&b->tick, tick_cb, PS_TICK_MS, PS_TICK_MS);
	if (agent_out_open(b) != 0)
		return 1;

	char token[24], tar[600], ca[600];
	if (make_token(b, token) != 0)
		return 1;
	snprintf(tar, sizeof(tar), "%s/busybox.tar", b->cl.dir);
	if (aep_image_build_busybox(tar, NULL, &e) != 0 ||
	    aep_image_load(b->node_dir, "busybox", tar, &e) != 0) {
		fprintf(stderr, "aep-bench podstart: busybox image: %s\n", e.msg);
		return 1;
	}
	snprintf(ca, sizeof(ca), "%s/pki/ca.crt", b->cl.dir);
	struct aep_nodehost_agent a = {
	    .aep = b->o.aep,
	    .name = PS_NODE,
	    .servers = servers,
	    .ca = ca,
	    .token = token,
	    .log = b->fifo,
	    .die_with_parent = true,
	};
	int64_t t0 = aep_now_monotonic_ns();
	if (aep_nodehost_agent_start(b->host, &a, &e) != 0) {
		fprintf(stderr, "aep-bench podstart: %s\n", e.msg);
		return 1;
	}
	while (!node_ready(b)) {
		if (!pause_ms(b, 100))
			return 1;
		if (aep_now_monotonic_ns() - t0 > (int64_t)PS_READY_TIMEOUT_MS * 1000000) {
			fprintf(stderr,
				"aep-bench podstart: Node %s not Ready within %d s; logs in %s\n",
				PS_NODE, PS_READY_TIMEOUT_MS / 1000, b->cl.dir);
			b->cl.keep = 1;
			return 1;
		}
	}
	fprintf(stderr, "aep-bench podstart: node %s joined and Ready after %.2f s\n", PS_NODE,
		(double)(aep_now_monotonic_ns() - t0) / 1e9);

	/* The watch, from now on (no pod of ours exists yet). */
	struct aep_buf req, res;
	msgpack_packer pk;
	aep_buf_init(&req);
	aep_buf_init(&res);
	aep_packer_init(&pk, &req);
	msgpack_pack_map(&pk, 3);
	pack_kv(&pk, "kind", "Pod");
	pack_kv(&pk, "namespace", "default");
	pack_kv(&pk, "labelSelector", "app=" PS_APP);
	int rv = req.failed ? AEP_ENOMEM : call(b, b->watcher, "watch", &req, &res, &e);
	aep_buf_free(&req);
	aep_buf_free(&res);
	if (rv != 0) {
		fprintf(stderr, "aep-bench podstart: watch: %s\n", e.msg);
		return 1;
	}
	return 0;
}

/* ---- creating and watching ---------------------------------------------------------- */

static void send_creates(struct podstart *b);

struct call_ctx {
	struct podstart *b;
	unsigned idx;
};

static void created(void *data, const struct aep_rpc_reply *r)
{
	struct call_ctx *cc = data;
	struct podstart *b = cc->b;
	unsigned idx = cc->idx;
	aep_free(cc);
	if (r->code == AEP_ECANCELED)
		return;
	if (r->code != 0) {
		fail(b, "create pod " PS_PREFIX "%05u: %s: %.*s", idx, aep_err_code(r->code),
		     (int)r->msg_len, r->msg ? r->msg : "");
		return;
	}
	b->pods[idx].t_ack = aep_now_monotonic_ns();
}

static void pack_pod(msgpack_packer *pk, unsigned idx)
{
	char name[32];
	snprintf(name, sizeof(name), PS_PREFIX "%05u", idx);
	msgpack_pack_map(pk, 1);
	aep_pack_str(pk, "object");
	msgpack_pack_map(pk, 4);
	pack_kv(pk, "apiVersion", "v1");
	pack_kv(pk, "kind", "Pod");
	aep_pack_str(pk, "metadata");
	msgpack_pack_map(pk, 3);
	pack_kv(pk, "name", name);
	pack_kv(pk, "namespace", "default");
	aep_pack_str(pk, "labels");
	msgpack_pack_map(pk, 1);
	pack_kv(pk, "app", PS_APP);
	aep_pack_str(pk, "spec");
	msgpack_pack_map(pk, 2);
	aep_pack_str(pk, "terminationGracePeriodSeconds");
	msgpack_pack_uint32(pk, 1);
	aep_pack_str(pk, "containers");
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 3);
	pack_kv(pk, "name", "c");
	pack_kv(pk, "image", "busybox");
	aep_pack_str(pk, "command");
	msgpack_pack_array(pk, 2);
	aep_pack_str(pk, "sleep");
	aep_pack_str(pk, "3600");
}

/* Keep --concurrency pods between their create's send and Running. */
static void send_creates(struct podstart *b)
{
	while (!b->failed && b->inflight < b->o.concurrency && b->sent < b->o.pods) {
		unsigned idx = b->sent;
		struct call_ctx *cc = aep_calloc(1, sizeof(*cc));
		struct aep_buf buf;
		msgpack_packer pk;
		aep_buf_init(&buf);
		aep_packer_init(&pk, &buf);
		pack_pod(&pk, idx);
		if (cc == NULL || buf.failed) {
			aep_free(cc);
			aep_buf_free(&buf);
			fail(b, "out of memory");
			return;
		}
		cc->b = b;
		cc->idx = idx;
		b->pods[idx].t_send = aep_now_monotonic_ns();
		b->inflight++;
		b->sent++;
		int rv = aep_rpc_call(b->conn, "create", buf.data, buf.len, created, cc);
		aep_buf_free(&buf);
		if (rv != 0) {
			aep_free(cc);
			fail(b, "create pod " PS_PREFIX "%05u: %s", idx, aep_err_code(rv));
			return;
		}
	}
}

static void on_event(struct podstart *b, const msgpack_object *ev, int64_t now)
{
	const msgpack_object *obj = aep_mp_map_get(ev, "object");
	const msgpack_object *type = aep_mp_map_get(ev, "type");
	const msgpack_object *meta = aep_mp_map_get(obj, "metadata");
	const msgpack_object *name = aep_mp_map_get(meta, "name");
	unsigned idx;
	if (aep_mp_str_eq(type, "ERROR")) {
		fail(b, "the watch ended");
		return;
	}
	if (name == NULL || name->type != MSGPACK_OBJECT_STR ||
	    !pod_index(b, name->via.str.ptr, name->via.str.size, &idx))
		return;
	struct ps_pod *p = &b->pods[idx];
	if (aep_mp_str_eq(type, "DELETED")) {
		if (!p->deleted) {
			p->deleted = true;
			b->deleted_seen++;
		}
		check_gone(b);
		return;
	}
	if (p->uid[0] == '\0')
		copy_str(p->uid, sizeof(p->uid), aep_mp_map_get(meta, "uid"));
	const msgpack_object *node = aep_mp_map_get(aep_mp_map_get(obj, "spec"), "nodeName");
	if (p->t_bound == 0 && node != NULL && node->type == MSGPACK_OBJECT_STR &&
	    node->via.str.size > 0)
		p->t_bound = now;
	const msgpack_object *st = aep_mp_map_get(obj, "status");
	const msgpack_object *phase = aep_mp_map_get(st, "phase");
	if (p->t_running == 0 && aep_mp_str_eq(phase, "Running")) {
		p->t_running = now;
		copy_str(p->ip, sizeof(p->ip), aep_mp_map_get(st, "podIP"));
		b->inflight--;
		b->running++;
		if (b->running == b->o.pods)
			uv_stop(b->loop);
		else
			send_creates(b);
	} else if (aep_mp_str_eq(phase, "Failed") || aep_mp_str_eq(phase, "Succeeded")) {
		fail(b,
		     "pod " PS_PREFIX "%05u ended before it was seen Running; agent log: %s/%s.log",
		     idx, b->cl.dir, PS_NODE);
	}
}

static void watch_notify(void *data, const char *method, size_t method_len,
			 const msgpack_object *params)
{
	struct podstart *b = data;
	if (method_len != 5 || memcmp(method, "event", 5) != 0 || params == NULL ||
	    params->type != MSGPACK_OBJECT_ARRAY)
		return;
	int64_t now = aep_now_monotonic_ns();
	for (uint32_t i = 0; i < params->via.array.size && !b->failed; i++)
		on_event(b, &params->via.array.ptr[i], now);
}

static void watch_lost(void *data)
{
	struct podstart *b = data;
	if (b->stage != PS_IDLE)
		fail(b, "the watch connection was lost");
}

/* ---- figures ------------------------------------------------------------------------ */

/* The modification time of DIR/@rel as monotonic ns; 0 when absent. */
static int64_t file_time(const struct podstart *b, const char *rel)
{
	char path[1200];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", b->node_dir, rel);
	if (stat(path, &st) != 0)
		return 0;
	return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec - b->rt_offset;
}

static void read_file_times(struct podstart *b)
{
	char rel[200];
	for (unsigned i = 0; i < b->o.pods; i++) {
		struct ps_pod *p = &b->pods[i];
		if (p->uid[0] == '\0')
			continue;
		snprintf(rel, sizeof(rel), "ipam/%s", p->ip);
		p->f[F_IPAM] = p->ip[0] ? file_time(b, rel) : 0;
		snprintf(rel, sizeof(rel), "pods/%s/c/c/config.json", p->uid);
		p->f[F_BUNDLE] = file_time(b, rel);
		snprintf(rel, sizeof(rel), "pods/%s/start", p->uid);
		p->f[F_SANDBOX] = file_time(b, rel);
		snprintf(rel, sizeof(rel), "pods/%s/c/c/restarts", p->uid);
		p->f[F_RESTARTS] = file_time(b, rel);
		snprintf(rel, sizeof(rel), "pods/%s/c/c/pid", p->uid);
		p->f[F_PID] = file_time(b, rel);
	}
}

/* One step of a pod's path: from one mark to the next. */
struct step {
	const char *what;
	int from, to; /* marks (below) */
};

enum {
	M_SEND,
	M_ACK,
	M_BOUND,
	M_AGENT_RUN,
	M_IPAM,
	M_BUNDLE,
	M_SANDBOX,
	M_RESTARTS,
	M_PID,
	M_AGENT_RUNNING,
	M_RUNNING,
};

static int64_t mark(const struct ps_pod *p, int m)
{
	switch (m) {
	case M_SEND: return p->t_send;
	case M_ACK: return p->t_ack;
	case M_BOUND: return p->t_bound;
	case M_AGENT_RUN: return p->t_agent_run;
	case M_IPAM: return p->f[F_IPAM];
	case M_BUNDLE: return p->f[F_BUNDLE];
	case M_SANDBOX: return p->f[F_SANDBOX];
	case M_RESTARTS: return p->f[F_RESTARTS];
	case M_PID: return p->f[F_PID];
	case M_AGENT_RUNNING: return p->t_agent_running;
	case M_RUNNING: return p->t_running;
	default: return 0;
	}
}

static const struct step steps[] = {
    {"create answered (API, Raft commit)", M_SEND, M_ACK},
    {"bound, on the watch (scheduler)", M_ACK, M_BOUND},
    {"agent got pod.run (leader push)", M_BOUND, M_AGENT_RUN},
    {"sandbox job began (thread pool)", M_AGENT_RUN, M_IPAM},
    {"pod network and OCI bundle", M_IPAM, M_BUNDLE},
    {"sandbox written (pod.mp, start)", M_BUNDLE, M_SANDBOX},
    {"rootfs mounted (start job)", M_SANDBOX, M_RESTARTS},
    {"container created (monitor, crun)", M_RESTARTS, M_PID},
    {"agent saw it run (inotify)", M_PID, M_AGENT_RUNNING},
    {"Running on the watch (pod.status)", M_AGENT_RUNNING, M_RUNNING},
    {"total: create sent -> Running", M_SEND, M_RUNNING},
};

static void print_figures(struct podstart *b, double *p50, double *p99, double *max)
{
	double *v = aep_calloc(b->o.pods ? b->o.pods : 1, sizeof(*v));
	if (v == NULL)
		return;
	printf("%-38s %6s %8s %8s %8s %8s\n", "step (ms)", "pods", "p50", "p90", "p99", "max");
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		size_t n = 0;
		for (unsigned i = 0; i < b->o.pods; i++) {
			int64_t a = mark(&b->pods[i], steps[s].from);
			int64_t z = mark(&b->pods[i], steps[s].to);
			if (a == 0 || z == 0)
				continue;
			/* a watch event may overtake the create's answer, and
			 * file times are coarse: an early end counts as 0 */
			v[n++] = z > a ? MS(z - a) : 0;
		}
		if (n == 0) {
			printf("%-38s %6zu %8s %8s %8s %8s\n", steps[s].what, n, "-", "-", "-",
			       "-");
			continue;
		}
		double q50 = bench_percentile(v, n, 50), q90 = bench_percentile(v, n, 90);
		double q99 = bench_percentile(v, n, 99), qmax = v[n - 1];
		printf("%-38s %6zu %8.1f %8.1f %8.1f %8.1f\n", steps[s].what, n, q50, q90, q99,
		       qmax);
		if (steps[s].from == M_SEND && steps[s].to == M_RUNNING) {
			*p50 = q50;
			*p99 = q99;
			*max = qmax;
		}
	}
	aep_free(v);
}

/* ---- clean-up ------------------------------------------------------------------------ */

static void send_deletes(struct podstart *b);

static void deleted(void *data, const struct aep_rpc_reply *r)
{
	struct podstart *b = data;
	b->del_inflight--;
	if (r->code != 0 && r->code != AEP_ENOTFOUND && r->code != AEP_ECANCELED)
		fprintf(stderr, "aep-bench podstart: deleting a pod: %s: %.*s\n",
			aep_err_code(r->code), (int)r->msg_len, r->msg ? r->msg : "");
	if (r->code != AEP_ECANCELED)
		send_deletes(b);
}

/* Keep PS_DELETE_WINDOW deletes of the pods created in flight. */
static void send_deletes(struct podstart *b)
{
	while (!b->failed && b->del_next < b->sent && b->del_inflight < PS_DELETE_WINDOW) {
		char name[32];
		struct aep_buf buf;
		msgpack_packer pk;
		snprintf(name, sizeof(name), PS_PREFIX "%05u", b->del_next++);
		aep_buf_init(&buf);
		aep_packer_init(&pk, &buf);
		msgpack_pack_map(&pk, 3);
		pack_kv(&pk, "kind", "Pod");
		pack_kv(&pk, "namespace", "default");
		pack_kv(&pk, "name", name);
		int rv = buf.failed
			     ? AEP_ENOMEM
			     : aep_rpc_call(b->conn, "delete", buf.data, buf.len, deleted, b);
		aep_buf_free(&buf);
		if (rv != 0) {
			fail(b, "delete pod %s: %s", name, aep_err_code(rv));
			return;
		}
		b->del_inflight++;
	}
}

/* Delete the pods through the API and wait until the agent removed them:
 * the containers stop the way a user's would. */
static void delete_pods(struct podstart *b)
{
	int64_t t0 = aep_now_monotonic_ns();
	b->stage = PS_DELETING;
	b->deadline = t0 + (int64_t)PS_GONE_TIMEOUT_MS * 1000000;
	send_deletes(b);
	if (!b->failed && (b->deleted_seen < b->sent || b->removed < b->sent))
		uv_run(b->loop, UV_RUN_DEFAULT);
	b->stage = PS_IDLE;
	if (b->failed)
		return;
	fprintf(stderr, "aep-bench podstart: %u pods deleted and removed from the node in %.2f s\n",
		b->sent, (double)(aep_now_monotonic_ns() - t0) / 1e9);
}

static void close_all(struct podstart *b)
{
	if (b->tick.data != NULL)
		uv_close((uv_handle_t *)&b->tick, NULL);
	if (b->agent_out_open)
		uv_close((uv_handle_t *)&b->agent_out, NULL);
	if (b->conn != NULL)
		aep_rpc_client_close(b->conn, NULL, NULL);
	if (b->watcher != NULL)
		aep_rpc_client_close(b->watcher, NULL, NULL);
	uv_run(b->loop, UV_RUN_DEFAULT);
	if (b->fifo_wfd >= 0)
		close(b->fifo_wfd);
	if (b->agent_log != NULL)
		fclose(b->agent_log);
}

/* ---- the run ----------------------------------------------------------------------- */

static int measure(struct podstart *b)
{
	struct ps_opts *o = &b->o;
	fprintf(stderr,
		"aep-bench podstart: creating %u pods (busybox, sleep 3600), %u at a time; the "
		"scheduler binds them to %s\n",
		o->pods, o->concurrency, PS_NODE);
	b->stage = PS_CREATING;
	b->deadline = aep_now_monotonic_ns() + (int64_t)o->timeout_s * 1000000000;
	int64_t t0 = aep_now_monotonic_ns();
	send_creates(b);
	if (!b->failed && b->running < o->pods)
		uv_run(b->loop, UV_RUN_DEFAULT);
	b->stage = PS_IDLE;
	if (b->failed)
		return 1;
	double wall = (double)(aep_now_monotonic_ns() - t0) / 1e9;
	fprintf(stderr, "aep-bench podstart: %u pods Running after %.2f s (%.1f pods/s)\n", o->pods,
		wall, wall > 0 ? o->pods / wall : 0);
	read_file_times(b);
	double p50 = 0, p99 = 0, max = 0;
	print_figures(b, &p50, &p99, &max);
	printf("pods=%u p50_ms=%.1f p99_ms=%.1f max_ms=%.1f\n", o->pods, p50, p99, max);
	fflush(stdout);
	return 0;
}

static void usage(FILE *f)
{
	fputs("usage: aep-bench podstart [--pods 100] [--concurrency 1] [--masters 3]\n"
	      "                          [--watch-follower] [--timeout 600]\n"
	      "                          [--base-port 17701] [--aep PATH]\n"
	      "\n"
	      "  --pods            pods to create, one after another\n"
	      "  --concurrency     pods between their create and Running at once (1: each\n"
	      "                    starts on an idle node)\n"
	      "  --watch-follower  watch on a follower (default: on the leader)\n"
	      "  --timeout         seconds for all the pods to be Running\n"
	      "  --base-port       API ports P.., Raft P+100.., HTTP P+200..; also names the\n"
	      "                    node host, so a run killed -9 is cleaned by the next one\n"
	      "\n"
	      "Needs root (a network namespace, a veth pair, crun containers); exits 77\n"
	      "otherwise.\n",
	      f);
}

static int parse_opts(int argc, char **argv, struct ps_opts *o)
{
	static const struct option opts[] = {
	    {"pods", required_argument, NULL, 'p'},
	    {"concurrency", required_argument, NULL, 'c'},
	    {"masters", required_argument, NULL, 'm'},
	    {"timeout", required_argument, NULL, 't'},
	    {"base-port", required_argument, NULL, 'b'},
	    {"aep", required_argument, NULL, 'a'},
	    {"watch-follower", no_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	*o = (struct ps_opts){
	    .pods = 100, .concurrency = 1, .masters = 3, .base = 17701, .timeout_s = 600};
	struct aep_error e = {0};
	unsigned long long v = 0;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'p':
			bad = aep_parse_uint(optarg, "--pods", 1, PS_MAX_PODS, &v, &e);
			o->pods = (unsigned)v;
			break;
		case 'c':
			bad =
			    aep_parse_uint(optarg, "--concurrency", 1, PS_MAX_CONCURRENCY, &v, &e);
			o->concurrency = (unsigned)v;
			break;
		case 'm':
			bad = aep_parse_uint(optarg, "--masters", 1, BENCH_MAX_MASTERS, &v, &e);
			o->masters = (unsigned)v;
			break;
		case 't':
			bad = aep_parse_uint(optarg, "--timeout", 1, 86400, &v, &e);
			o->timeout_s = (unsigned)v;
			break;
		case 'b':
			bad = aep_parse_uint(optarg, "--base-port", 1024, 65000, &v, &e);
			o->base = (unsigned)v;
			break;
		case 'a': snprintf(o->aep, sizeof(o->aep), "%s", optarg); break;
		case 'f': o->watch_follower = true; break;
		case 'h': usage(stdout); return -1;
		default: usage(stderr); return 2;
		}
		if (bad) {
			fprintf(stderr, "aep-bench podstart: %s\n", e.msg);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "aep-bench podstart: unexpected argument %s\n", argv[optind]);
		return 2;
	}
	if (o->aep[0] == '\0' && bench_default_aep(o->aep, sizeof(o->aep)) != 0)
		return 1;
	return 0;
}

int bench_podstart(int argc, char **argv)
{
	struct podstart b;
	memset(&b, 0, sizeof(b));
	int rv = parse_opts(argc, argv, &b.o);
	if (rv != 0)
		return rv < 0 ? 0 : rv;
	if (geteuid() != 0) {
		fprintf(stderr, "aep-bench podstart: needs root: it makes a network namespace, a "
				"veth pair and crun containers (skipped: exit 77)\n");
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	bench_catch_signals();
	b.loop = uv_default_loop();
	b.fifo_wfd = -1;
	b.pods = aep_calloc(b.o.pods, sizeof(*b.pods));
	if (b.pods == NULL) {
		fprintf(stderr, "aep-bench podstart: out of memory\n");
		return 1;
	}
	b.t_start = aep_now_monotonic_ns();
	b.rt_offset = aep_now_realtime_ns() - aep_now_monotonic_ns();
	rv = setup(&b) != 0 || b.failed ? 1 : measure(&b);
	if (rv == 0 && !b.failed)
		delete_pods(&b);
	if (b.failed) {
		fprintf(stderr, "aep-bench podstart: FAILED: %s\n", b.why);
		rv = 1;
	}
	if (rv != 0 && !bench_interrupted && b.cl.dir[0] != '\0') {
		b.cl.keep = 1;
		fprintf(stderr, "aep-bench podstart: logs kept in %s\n", b.cl.dir);
	}
	/* Clean-up, whatever happened: the agent first (its containers go with
	 * the node host), then the masters. */
	struct aep_error e = {0};
	if (b.host != NULL && b.host->agent > 0) {
		int st = aep_nodehost_agent_stop(b.host, 20000);
		if (st != 0 && !b.failed && !bench_interrupted)
			fprintf(stderr, "aep-bench podstart: warning: the agent's exit status %d\n",
				st);
	}
	close_all(&b);
	if (b.host != NULL && aep_nodehost_destroy(b.host, &e) != 0) {
		fprintf(stderr, "aep-bench podstart: removing the node host: %s\n", e.msg);
		rv = 1;
	}
	b.host = NULL;
	if (b.node_dir[0] != '\0' && !getenv("AEP_BENCH_KEEP"))
		rm_rf(b.node_dir);
	bench_cluster_stop(&b.cl);
	aep_free(b.pods);
	if (bench_interrupted) {
		fprintf(stderr, "aep-bench podstart: interrupted; everything removed\n");
		return 128 + (int)bench_interrupted;
	}
	return rv;
}
