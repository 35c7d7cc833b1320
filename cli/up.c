/* `aep up`: a whole local cluster on one machine, for trying AEP out.
 *
 * Creates DIR (certificates on first use; reused afterwards, so running it
 * again restarts the same cluster from disk), starts N `aep master`
 * processes, waits until they have elected a leader, prints how to use
 * the cluster and then waits. Ctrl-C (or SIGTERM) stops everything it
 * started and waits for it to exit.
 *
 * Without --nodes the masters serve their API on 127.0.0.1. With --nodes K
 * (root) it also makes K node hosts (node/host.h) and the network between
 * them, all named after the base port P so that clusters with different
 * ports never collide and a later run finds what an earlier one left:
 *
 *   bridge aepPb, 10.A.B.1/24    the cluster's network on this machine
 *                                (A.B from P); the masters' API listens
 *                                here, so that agents reach it, and the
 *                                masters advertise it
 *   netns aep-P-nI, link aepPnI  node nI at 10.A.B.(10+I) on that bridge,
 *                                IPv4 forwarding on, labels region=r1,
 *                                zone=zI, agent directory DIR/nI
 *   routes                       on this machine: each node's pod subnet
 *                                (from the cluster CIDR 10.C.0.0/16, C from
 *                                P) via the node's address; in each node:
 *                                the other nodes' pod subnets likewise, so
 *                                that pods reach each other across nodes
 *
 * The masters' certificates must name the bridge address: a DIR first made
 * without nodes (or with another base port) gets its masters' certificates
 * issued again by its own CA with that address added. DIR/admin.conf is
 * rewritten on every run with the addresses the masters listen on, so the
 * CLI on this machine keeps working either way (the bridge address is
 * local to it). Then a bootstrap token (only while some node has not
 * joined yet), the busybox image in every node's store, the agents, the
 * sample replication controller `hello` (DIR/hello.yaml; left as it is
 * when it exists) and a wait until each of its pods is Running and answers
 * HTTP from this machine.
 *
 * Failure modes. A failure or a Ctrl-C during start-up removes whatever was
 * made so far. What a killed `aep up` leaves (its masters and agents die
 * with it: parent-death signal; containers, namespaces, links and routes
 * stay) is listed in DIR/up-nodes; the next run on DIR purges it first.
 * DIR/up.lock keeps two runs off one DIR. */
#include "cli/cli.h"
#include "cli/internal.h"
#include "net/net.h"
#include "node/host.h"
#include "node/node.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define UP_MAX_MASTERS	 9
#define UP_MAX_NODES	 8
#define UP_RC		 "hello"
#define UP_NODE_WAIT_S	 60
#define UP_POD_WAIT_S	 180
#define UP_AGENT_STOP_MS 10000
#define UP_BAD_PATH	 " \t\n,:\\\"'"

extern char **environ;

struct up_node {
	char name[16];	/* n1 */
	char netns[48]; /* aep-P-n1 */
	char link[32];	/* aepPn1: at most 10 bytes for P <= 65535, I <= 9 */
	char addr[48];	/* 10.A.B.11 */
	char labels[64];
	char dir[PATH_MAX];
	char log[PATH_MAX + 16];
	char pod_cidr[32]; /* spec.podCIDR once registered */
	struct aep_nodehost *h;
};

struct up {
	const char *dir;
	unsigned n;
	unsigned nnodes;
	unsigned base;
	char self[PATH_MAX];
	pid_t pids[UP_MAX_MASTERS];
	char cluster[1024];
	char api[UP_MAX_MASTERS][64]; /* each master's API address */
	char servers[1024];	      /* the same, comma separated */
	sigset_t sigs;		      /* SIGINT, SIGTERM, SIGCHLD: taken with sigwait */
	bool stop;		      /* SIGINT or SIGTERM arrived */
	/* --nodes */
	char bridge[16];
	char bridge_ip[16];
	char node_net[32];     /* 10.A.B.0/24 */
	char cluster_cidr[32]; /* 10.C.0.0/16 */
	struct up_node nodes[UP_MAX_NODES];
	bool bridge_made;
	bool state_written;   /* DIR/up-nodes lists this run's names */
	int64_t agents_since; /* Unix seconds (floor) before the agents started */
	/* the client used while starting nodes */
	uv_loop_t loop;
	bool loop_ready;
	struct aep_tls *tls;
	struct aep_rpc_client *client;
};

static void up_usage(FILE *f)
{
	fprintf(f,
		"usage: aep up [--masters 1|3|5] [--nodes N] [--dir DIR] [--base-port PORT]\n"
		"\n"
		"Starts a local AEP cluster: master I serves its API on PORT+I-1 (default\n"
		"7001), Raft on 127.0.0.1:PORT+100+I-1 and metrics on 127.0.0.1:PORT+200+I-1.\n"
		"DIR (default ./aep-local) keeps certificates, data and logs; running it\n"
		"again restarts the same cluster. Ctrl-C stops it.\n"
		"\n"
		"Without --nodes (or with --nodes 0) the API is on 127.0.0.1 and there are\n"
		"no nodes. --nodes N (1 to %d; needs root, ip(8) and crun) adds N node hosts,\n"
		"each a network namespace with an `aep node` agent running pods in crun,\n"
		"on a bridge aepPORTb that carries the API instead (10.A.B.1, A.B from\n"
		"PORT); pod subnets are routed from this machine. A replication controller\n"
		"\"" UP_RC "\" (DIR/" UP_RC ".yaml: busybox httpd, 3 replicas) is created\n"
		"if missing. Ctrl-C also removes the namespaces, links, routes and\n"
		"containers.\n",
		UP_MAX_NODES);
}

/* ---- signals -------------------------------------------------------------- */

/* Sleep @ms unless SIGINT or SIGTERM comes; true when one did (or did
 * before). */
static bool nap(struct up *u, unsigned ms)
{
	sigset_t stop;
	siginfo_t si;
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	if (u->stop)
		return true;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	if (sigtimedwait(&stop, &si, &ts) > 0)
		u->stop = true;
	return u->stop;
}

/* ---- child processes ------------------------------------------------------ */

/* In a forked child: signals back to normal, and SIGTERM when `aep up`
 * dies (also of SIGKILL), so that nothing it started outlives it. */
static void child_signals(pid_t parent)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
		_exit(1);
}

static pid_t start_master(struct up *u, unsigned i)
{
	char name[16], dir[PATH_MAX], peer[64], http[64], pki[PATH_MAX], log[PATH_MAX];
	snprintf(name, sizeof(name), "m%u", i + 1);
	snprintf(dir, sizeof(dir), "%s/%s", u->dir, name);
	snprintf(peer, sizeof(peer), "127.0.0.1:%u", u->base + 100 + i);
	snprintf(http, sizeof(http), "127.0.0.1:%u", u->base + 200 + i);
	snprintf(pki, sizeof(pki), "%s/pki", u->dir);
	snprintf(log, sizeof(log), "%s/%s.log", u->dir, name);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
	/* Own process group: a Ctrl-C in the terminal reaches `aep up`,
	 * which stops the masters in order. */
	setpgid(0, 0);
	child_signals(parent);
	if (u->nnodes > 0)
		execl(u->self, u->self, "master", "--name", name, "--dir", dir, "--listen",
		      u->api[i], "--peer", peer, "--initial-cluster", u->cluster, "--pki", pki,
		      "--http", http, "--cluster-cidr", u->cluster_cidr, (char *)NULL);
	else
		execl(u->self, u->self, "master", "--name", name, "--dir", dir, "--listen",
		      u->api[i], "--peer", peer, "--initial-cluster", u->cluster, "--pki", pki,
		      "--http", http, (char *)NULL);
	fprintf(stderr, "exec %s: %s\n", u->self, strerror(errno));
	_exit(127);
}

/* Run `aep ARGS...` (the same binary, AEP_CONFIG in the environment) and
 * wait; its stdout into @out (NUL-terminated, cut at @size), its stderr
 * to ours. Returns its exit code, or -1 when it could not run. */
static int run_self(struct up *u, const char *const args[], char *out, size_t size)
{
	const char *argv[16];
	size_t n = 0;
	argv[n++] = u->self;
	for (size_t i = 0; args[i] != NULL && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none;
	sigemptyset(&none);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
	pid_t pid;
	int rc = posix_spawn(&pid, u->self, &fa, &attr, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(fds[1]);
	if (rc != 0) {
		close(fds[0]);
		return -1;
	}
	size_t len = 0;
	for (;;) {
		char chunk[1024];
		ssize_t r = read(fds[0], chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (ssize_t i = 0; i < r && len + 1 < size; i++)
			out[len++] = chunk[i];
	}
	if (size > 0)
		out[len] = '\0';
	close(fds[0]);
	int ws;
	while (waitpid(pid, &ws, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

/* ---- masters -------------------------------------------------------------- */

int aep_cli_leader_of(const char *addr, struct aep_tls *tls, char *leader, size_t size)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct aep_rpc_client_config cfg = {.servers = addr, .tls = tls, .connect_timeout_ms = 500};
	struct aep_rpc_client *c = NULL;
	struct aep_error e = {0};
	int rv = AEP_EUNAVAILABLE;
	if (aep_rpc_client_new(&loop, &cfg, &c, &e) == 0) {
		struct aep_buf res;
		aep_buf_init(&res);
		if (aep_rpc_call_sync(&loop, c, "status", "\x80", 1, 1000, &res, &e) == 0) {
			msgpack_zone z;
			msgpack_object o;
			msgpack_zone_init(&z, 1024);
			if (aep_mp_unpack(res.data, res.len, &z, &o, &e) == 0) {
				const msgpack_object *ln = aep_mp_map_get(&o, "leaderName");
				if (ln != NULL && ln->type == MSGPACK_OBJECT_STR) {
					snprintf(leader, size, "%.*s", (int)ln->via.str.size,
						 ln->via.str.ptr);
					rv = 0;
				}
			}
			msgpack_zone_destroy(&z);
		}
		aep_buf_free(&res);
		aep_rpc_client_close(c, NULL, NULL);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return rv;
}

static int admin_tls(struct up *u, struct aep_tls **tls, struct aep_error *e)
{
	char ca[PATH_MAX + 16], crt[PATH_MAX + 16], key[PATH_MAX + 16];
	snprintf(ca, sizeof(ca), "%s/pki/ca.crt", u->dir);
	snprintf(crt, sizeof(crt), "%s/pki/admin.crt", u->dir);
	snprintf(key, sizeof(key), "%s/pki/admin.key", u->dir);
	return aep_tls_client_new(ca, crt, key, tls, e);
}

/* Ask every master for its status until one reports a leader. */
static int wait_leader(struct up *u, char *leader, size_t size, unsigned timeout_s)
{
	struct aep_error e = {0};
	struct aep_tls *tls = NULL;
	if (admin_tls(u, &tls, &e) != 0) {
		fprintf(stderr, "error: %s\n", e.msg);
		return 1;
	}
	int rv = 1;
	time_t deadline = time(NULL) + timeout_s;
	while (time(NULL) < deadline && rv != 0) {
		for (unsigned i = 0; i < u->n && rv != 0; i++) {
			int status;
			if (waitpid(u->pids[i], &status, WNOHANG) == u->pids[i]) {
				fprintf(
				    stderr,
				    "error: master m%u exited during start-up; see %s/m%u.log\n",
				    i + 1, u->dir, i + 1);
				u->pids[i] = 0;
				aep_tls_free(tls);
				return 1;
			}
			if (aep_cli_leader_of(u->api[i], tls, leader, size) == 0)
				rv = 0;
		}
		if (rv != 0 && nap(u, 200))
			break;
	}
	aep_tls_free(tls);
	return rv;
}

static void stop_masters(struct up *u)
{
	for (unsigned i = 0; i < u->n; i++) {
		if (u->pids[i] > 0)
			kill(u->pids[i], SIGTERM);
	}
	for (unsigned i = 0; i < u->n; i++) {
		if (u->pids[i] <= 0)
			continue;
		int status;
		for (int t = 0; t < 150; t++) {
			if (waitpid(u->pids[i], &status, WNOHANG) == u->pids[i]) {
				u->pids[i] = 0;
				break;
			}
			usleep(100 * 1000);
		}
		if (u->pids[i] > 0) {
			kill(u->pids[i], SIGKILL);
			waitpid(u->pids[i], &status, 0);
			u->pids[i] = 0;
		}
	}
}

/* ---- certificates and the client configuration ---------------------------- */

static bool cert_names_ip(const char *path, const char *ip)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	X509 *c = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	bool ok = c != NULL && X509_check_ip_asc(c, ip, 0) == 1;
	X509_free(c);
	return ok;
}

/* Every master's certificate names @ip, issuing it again (same CA, same
 * name, 127.0.0.1 and localhost kept) where it does not. */
static int master_certs_name(struct up *u, const char *ip, struct aep_error *e)
{
	for (unsigned i = 0; i < u->n; i++) {
		char name[16], crt[PATH_MAX + 32], key[PATH_MAX + 32], ncrt[PATH_MAX + 48],
		    nkey[PATH_MAX + 48], sans[128];
		snprintf(name, sizeof(name), "m%u", i + 1);
		snprintf(crt, sizeof(crt), "%s/pki/%s.crt", u->dir, name);
		snprintf(key, sizeof(key), "%s/pki/%s.key", u->dir, name);
		if (cert_names_ip(crt, ip))
			continue;
		snprintf(ncrt, sizeof(ncrt), "%s.new", crt);
		snprintf(nkey, sizeof(nkey), "%s.new", key);
		snprintf(sans, sizeof(sans), "IP:%s,IP:127.0.0.1,DNS:localhost", ip);
		unlink(ncrt);
		unlink(nkey);
		if (aep_pki_issue(u->dir, name, "system:masters", sans, ncrt, nkey, e) != 0)
			return aep_error_prefix(e, "certificate of %s", name);
		if (rename(nkey, key) != 0 || rename(ncrt, crt) != 0)
			return aep_errorf(e, AEP_EIO, "certificate of %s: rename: %s", name,
					  strerror(errno));
		printf("issued %s's certificate again, for %s as well\n", name, ip);
	}
	return 0;
}

/* DIR/admin.conf with this run's API addresses (atomically). */
static int write_admin_conf(struct up *u, struct aep_error *e)
{
	char path[PATH_MAX + 32], tmp[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/admin.conf", u->dir);
	snprintf(tmp, sizeof(tmp), "%s/admin.conf.tmp", u->dir);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (f == NULL) {
		if (fd >= 0)
			close(fd);
		return aep_errorf(e, AEP_EIO, "create %s: %s", tmp, strerror(errno));
	}
	fprintf(f,
		"# AEP client configuration, written by aep up (the masters' API addresses of "
		"its last run)\n"
		"servers: \"%s\"\nca: \"%s/pki/ca.crt\"\ncert: \"%s/pki/admin.crt\"\n"
		"key: \"%s/pki/admin.key\"\n",
		u->servers, u->dir, u->dir, u->dir);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		return aep_errorf(e, AEP_EIO, "write %s: %s", path, strerror(errno));
	}
	return 0;
}

/* ---- RPC while starting nodes --------------------------------------------- */

static int client_open(struct up *u, struct aep_error *e)
{
	if (uv_loop_init(&u->loop) != 0)
		return aep_errorf(e, AEP_EIO, "uv_loop_init failed");
	u->loop_ready = true;
	if (admin_tls(u, &u->tls, e) != 0)
		return e->code;
	struct aep_rpc_client_config cfg = {.servers = u->servers, .tls = u->tls};
	return aep_rpc_client_new(&u->loop, &cfg, &u->client, e);
}

static void client_close(struct up *u)
{
	if (u->client != NULL)
		aep_rpc_client_close(u->client, NULL, NULL);
	u->client = NULL;
	if (u->loop_ready) {
		uv_run(&u->loop, UV_RUN_DEFAULT);
		uv_loop_close(&u->loop);
		u->loop_ready = false;
	}
	aep_tls_free(u->tls);
	u->tls = NULL;
}

/* A result of one call, unpacked. */
struct up_reply {
	struct aep_buf buf;
	msgpack_zone zone;
	msgpack_object obj;
};

static void reply_free(struct up_reply *r)
{
	msgpack_zone_destroy(&r->zone);
	aep_buf_free(&r->buf);
}

/* `METHOD {kind, namespace?, name?|labelSelector?}` into @r (reply_free
 * it, also on failure). */
static int call(struct up *u, const char *method, const char *kind, const char *ns,
		const char *name, const char *selector, struct up_reply *r, struct aep_error *e)
{
	struct aep_buf params;
	msgpack_packer pk;
	aep_buf_init(&params);
	aep_buf_init(&r->buf);
	msgpack_zone_init(&r->zone, 4096);
	aep_packer_init(&pk, &params);
	msgpack_pack_map(&pk, 1 + (ns != NULL) + (name != NULL) + (selector != NULL));
	aep_pack_str(&pk, "kind");
	aep_pack_str(&pk, kind);
	if (ns != NULL) {
		aep_pack_str(&pk, "namespace");
		aep_pack_str(&pk, ns);
	}
	if (name != NULL) {
		aep_pack_str(&pk, "name");
		aep_pack_str(&pk, name);
	}
	if (selector != NULL) {
		aep_pack_str(&pk, "labelSelector");
		aep_pack_str(&pk, selector);
	}
	int rv = params.failed ? aep_errorf(e, AEP_ENOMEM, "out of memory")
			       : aep_rpc_call_sync(&u->loop, u->client, method, params.data,
						   params.len, 5000, &r->buf, e);
	aep_buf_free(&params);
	if (rv == 0)
		rv = aep_mp_unpack(r->buf.data, r->buf.len, &r->zone, &r->obj, e);
	return rv;
}

/* ---- the nodes' network ---------------------------------------------------- */

/* The first line `ip ARGS` prints, if any, into @line ("" when none). */
static void ip_first_line(const char *args, char *line, size_t size)
{
	char cmd[256];
	line[0] = '\0';
	snprintf(cmd, sizeof(cmd), "ip %s 2>/dev/null", args);
	FILE *p = popen(cmd, "r");
	if (p == NULL)
		return;
	if (fgets(line, (int)size, p) != NULL)
		line[strcspn(line, "\n")] = '\0';
	pclose(p);
}

static bool in_path(const char *name)
{
	const char *path = getenv("PATH");
	char full[PATH_MAX];
	if (path == NULL)
		path = "/usr/sbin:/usr/bin:/sbin:/bin";
	while (*path != '\0') {
		size_t n = strcspn(path, ":");
		if (n > 0 &&
		    snprintf(full, sizeof(full), "%.*s/%s", (int)n, path, name) <
			(int)sizeof(full) &&
		    access(full, X_OK) == 0)
			return true;
		path += n;
		if (*path == ':')
			path++;
	}
	return false;
}

static void nodes_plan(struct up *u)
{
	unsigned k = u->base % 2048;
	snprintf(u->bridge, sizeof(u->bridge), "aep%ub", u->base);
	snprintf(u->bridge_ip, sizeof(u->bridge_ip), "10.%u.%u.1", 200 + k / 256, k % 256);
	snprintf(u->node_net, sizeof(u->node_net), "10.%u.%u.0/24", 200 + k / 256, k % 256);
	/* 10.132-191: outside the masters' default 10.128.0.0/14, which
	 * other clusters on this machine keep inside their namespaces. */
	snprintf(u->cluster_cidr, sizeof(u->cluster_cidr), "10.%u.0.0/16", 132 + u->base % 60);
	for (unsigned i = 0; i < u->nnodes; i++) {
		struct up_node *nd = &u->nodes[i];
		snprintf(nd->name, sizeof(nd->name), "n%u", i + 1);
		snprintf(nd->netns, sizeof(nd->netns), "aep-%u-n%u", u->base, i + 1);
		snprintf(nd->link, sizeof(nd->link), "aep%un%u", u->base, i + 1);
		snprintf(nd->addr, sizeof(nd->addr), "10.%u.%u.%u", 200 + k / 256, k % 256, 11 + i);
		snprintf(nd->labels, sizeof(nd->labels), "region=r1,zone=z%u", i + 1);
		snprintf(nd->dir, sizeof(nd->dir), "%s/n%u", u->dir, i + 1);
		snprintf(nd->log, sizeof(nd->log), "%s/n%u.log", u->dir, i + 1);
	}
}

static void state_path(const struct up *u, char *path, size_t size)
{
	snprintf(path, size, "%s/up-nodes", u->dir);
}

/* Remove what an earlier run listed in DIR/up-nodes and did not remove
 * (it was killed). Returns 0 or an error naming what stays. */
static int purge_earlier(struct up *u, struct aep_error *e)
{
	char path[PATH_MAX + 16], line[PATH_MAX + 128];
	state_path(u, path, sizeof(path));
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	int rv = 0;
	while (rv == 0 && fgets(line, sizeof(line), f) != NULL) {
		char a[64], b[64];
		int at = 0;
		line[strcspn(line, "\n")] = '\0';
		/* host NETNS LINK DIR (DIR is the rest of the line) */
		if (sscanf(line, "host %63s %63s %n", a, b, &at) == 2 && at > 0) {
			struct aep_nodehost_config cfg = {.netns = a, .link = b, .dir = line + at};
			rv = aep_nodehost_purge(&cfg, e);
		} else if (sscanf(line, "bridge %63s", a) == 1) {
			rv = aep_nodehost_link_delete(a, e);
		}
	}
	fclose(f);
	if (rv == 0)
		unlink(path);
	return rv;
}

/* List this run's names in DIR/up-nodes before making them. */
static int state_write(struct up *u, struct aep_error *e)
{
	char path[PATH_MAX + 16];
	state_path(u, path, sizeof(path));
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return aep_errorf(e, AEP_EIO, "create %s: %s", path, strerror(errno));
	fprintf(f, "bridge %s\n", u->bridge);
	for (unsigned i = 0; i < u->nnodes; i++)
		fprintf(f, "host %s %s %s\n", u->nodes[i].netns, u->nodes[i].link, u->nodes[i].dir);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		fclose(f);
		return aep_errorf(e, AEP_EIO, "write %s: %s", path, strerror(errno));
	}
	fclose(f);
	u->state_written = true;
	return 0;
}

/* The bridge and the node hosts (the masters are not up yet). */
static int nodes_net_up(struct up *u, struct aep_error *e)
{
	char line[512], args[128];

	/* Leftovers of this DIR and of these names go first; what remains on
	 * the addresses is someone else's. */
	if (purge_earlier(u, e) != 0)
		return aep_error_prefix(e, "leftovers of an earlier aep up on %s", u->dir);
	if (aep_nodehost_link_delete(u->bridge, e) != 0)
		return e->code;
	snprintf(args, sizeof(args), "-o -4 addr show to %s", u->node_net);
	ip_first_line(args, line, sizeof(line));
	if (line[0] != '\0')
		return aep_errorf(e, AEP_ECONFLICT,
				  "%s is in use on this machine (%s); choose another --base-port",
				  u->node_net, line);
	snprintf(args, sizeof(args), "-o -4 route show root %s", u->cluster_cidr);
	ip_first_line(args, line, sizeof(line));
	if (line[0] != '\0')
		return aep_errorf(e, AEP_ECONFLICT,
				  "%s is routed on this machine already (%s); choose another "
				  "--base-port",
				  u->cluster_cidr, line);
	if (state_write(u, e) != 0)
		return e->code;
	char cidr[32];
	snprintf(cidr, sizeof(cidr), "%s/24", u->bridge_ip);
	if (aep_nodehost_bridge_create(u->bridge, cidr, e) != 0)
		return e->code;
	u->bridge_made = true;
	for (unsigned i = 0; i < u->nnodes; i++) {
		struct up_node *nd = &u->nodes[i];
		char addr[32];
		snprintf(addr, sizeof(addr), "%s/24", nd->addr);
		struct aep_nodehost_config cfg = {
		    .netns = nd->netns,
		    .link = nd->link,
		    .dir = nd->dir,
		    .bridge = u->bridge,
		    .node_addr = addr,
		    .forward = true,
		};
		if (aep_nodehost_create(&cfg, &nd->h, e) != 0)
			return e->code;
	}
	return 0;
}

/* Stop the agents (they leave their containers), then remove every node
 * host, the bridge (with the routes through it) and DIR/up-nodes. */
static void nodes_down(struct up *u)
{
	bool clean = true;
	for (unsigned i = 0; i < u->nnodes; i++) {
		if (u->nodes[i].h != NULL)
			aep_nodehost_agent_stop(u->nodes[i].h, UP_AGENT_STOP_MS);
	}
	for (unsigned i = 0; i < u->nnodes; i++) {
		struct aep_error e = {0};
		if (u->nodes[i].h == NULL)
			continue;
		if (aep_nodehost_destroy(u->nodes[i].h, &e) != 0) {
			fprintf(stderr, "aep up: node %s: %s\n", u->nodes[i].name, e.msg);
			clean = false;
		}
		u->nodes[i].h = NULL;
	}
	if (u->bridge_made) {
		struct aep_error e = {0};
		if (aep_nodehost_link_delete(u->bridge, &e) != 0) {
			fprintf(stderr, "aep up: %s\n", e.msg);
			clean = false;
		}
		u->bridge_made = false;
	}
	if (clean && u->state_written) {
		char path[PATH_MAX + 16];
		state_path(u, path, sizeof(path));
		unlink(path);
		u->state_written = false;
	}
}

/* ---- agents, nodes, the sample application --------------------------------- */

static int images_load(struct up *u, struct aep_error *e)
{
	char tar[PATH_MAX + 16];
	snprintf(tar, sizeof(tar), "%s/busybox.tar", u->dir);
	for (unsigned i = 0; i < u->nnodes; i++) {
		if (aep_image_exists(u->nodes[i].dir, "busybox"))
			continue;
		if (access(tar, R_OK) != 0 && aep_image_build_busybox(tar, NULL, e) != 0)
			return aep_error_prefix(e, "busybox image");
		if (aep_image_load(u->nodes[i].dir, "busybox", tar, e) != 0)
			return aep_error_prefix(e, "node %s: busybox image", u->nodes[i].name);
	}
	return 0;
}

static int agents_start(struct up *u, struct aep_error *e)
{
	char token[128] = "", ca[PATH_MAX + 16];
	bool joined = true;
	snprintf(ca, sizeof(ca), "%s/pki/ca.crt", u->dir);
	for (unsigned i = 0; i < u->nnodes; i++) {
		char crt[PATH_MAX + 32];
		snprintf(crt, sizeof(crt), "%s/pki/node.crt", u->nodes[i].dir);
		joined &= access(crt, F_OK) == 0;
	}
	if (!joined) {
		const char *args[] = {"admin",
				      "token",
				      "create",
				      "--ttl",
				      "1h",
				      "--description",
				      "aep up: nodes joining",
				      NULL};
		int rc = run_self(u, args, token, sizeof(token));
		token[strcspn(token, "\n")] = '\0';
		if (rc != 0 || strchr(token, '.') == NULL)
			return aep_errorf(e, AEP_EIO, "aep admin token create failed (exit %d)",
					  rc);
	}
	u->agents_since = (int64_t)time(NULL);
	for (unsigned i = 0; i < u->nnodes; i++) {
		struct up_node *nd = &u->nodes[i];
		struct aep_nodehost_agent a = {
		    .aep = u->self,
		    .name = nd->name,
		    .servers = u->servers,
		    .ca = ca,
		    .token = token[0] ? token : NULL,
		    .labels = nd->labels,
		    .log = nd->log,
		    .die_with_parent = true,
		};
		if (aep_nodehost_agent_start(nd->h, &a, e) != 0)
			return e->code;
	}
	return 0;
}

/* An agent that ended during start-up is an error that names its log. */
static int agents_alive(struct up *u, struct aep_error *e)
{
	for (unsigned i = 0; i < u->nnodes; i++) {
		struct aep_nodehost *h = u->nodes[i].h;
		if (h != NULL && aep_nodehost_agent_ended(h))
			return aep_errorf(
			    e, AEP_EUNAVAILABLE, "the agent of node %s exited (status %d); see %s",
			    u->nodes[i].name,
			    WIFEXITED(h->agent_status) ? WEXITSTATUS(h->agent_status)
						       : 128 + WTERMSIG(h->agent_status),
			    u->nodes[i].log);
	}
	return 0;
}

static bool node_ready(const msgpack_object *node)
{
	const msgpack_object *conds = cli__mp_path(node, "status.conditions");
	if (conds == NULL || conds->type != MSGPACK_OBJECT_ARRAY)
		return false;
	for (uint32_t i = 0; i < conds->via.array.size; i++) {
		char type[32], status[16];
		const msgpack_object *c = &conds->via.array.ptr[i];
		if (strcmp(cli__mp_str(c, "type", type, sizeof(type), ""), "Ready") == 0 &&
		    strcmp(cli__mp_str(c, "status", status, sizeof(status), ""), "True") == 0)
			return true;
	}
	return false;
}

/* Every node registered (it has a pod subnet) and Ready. */
static int nodes_wait(struct up *u, struct aep_error *e)
{
	time_t deadline = time(NULL) + UP_NODE_WAIT_S;
	for (unsigned i = 0; i < u->nnodes; i++) {
		struct up_node *nd = &u->nodes[i];
		for (;;) {
			struct up_reply r;
			struct aep_error ce = {0};
			bool ok = false;
			if (call(u, "get", "Node", NULL, nd->name, NULL, &r, &ce) == 0) {
				cli__mp_str(&r.obj, "spec.podCIDR", nd->pod_cidr,
					    sizeof(nd->pod_cidr), "");
				ok = nd->pod_cidr[0] != '\0' && node_ready(&r.obj);
			}
			reply_free(&r);
			if (ok)
				break;
			if (agents_alive(u, e) != 0)
				return e->code;
			if (time(NULL) >= deadline)
				return aep_errorf(e, AEP_ETIMEOUT,
						  "node %s not Ready within %d s; see %s", nd->name,
						  UP_NODE_WAIT_S, nd->log);
			if (nap(u, 200))
				return aep_errorf(e, AEP_ECANCELED, "interrupted");
		}
	}
	return 0;
}

/* Pod subnets: from this machine to every node, and between the nodes. */
static int routes_add(struct up *u, struct aep_error *e)
{
	for (unsigned i = 0; i < u->nnodes; i++) {
		struct up_node *nd = &u->nodes[i];
		const char *host[] = {"route",	"replace", nd->pod_cidr, "via",
				      nd->addr, "dev",	   u->bridge,	 NULL};
		if (aep_nodehost_ip(NULL, host, e) != 0)
			return e->code;
		for (unsigned j = 0; j < u->nnodes; j++) {
			if (j == i)
				continue;
			const char *peer[] = {"route", "replace",	 u->nodes[j].pod_cidr,
					      "via",   u->nodes[j].addr, NULL};
			if (aep_nodehost_ip(nd->netns, peer, e) != 0)
				return e->code;
		}
	}
	return 0;
}

static const char sample_rc[] =
    "# The sample application of `aep up --nodes`: busybox httpd serving\n"
    "# /www/index.html (\"hello from aep\") on port 80. aep up creates it when\n"
    "# it is missing; edit and `aep apply -f` it, or `aep scale rc/" UP_RC " --replicas=N`.\n"
    "apiVersion: v1\n"
    "kind: ReplicationController\n"
    "metadata:\n"
    "  name: " UP_RC "\n"
    "  labels: {app: " UP_RC "}\n"
    "spec:\n"
    "  replicas: 3\n"
    "  selector: {app: " UP_RC "}\n"
    "  template:\n"
    "    metadata:\n"
    "      labels: {app: " UP_RC "}\n"
    "    spec:\n"
    "      terminationGracePeriodSeconds: 2\n"
    "      containers:\n"
    "        - name: httpd\n"
    "          image: busybox\n"
    "          command: [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n"
    "          ports: [{containerPort: 80}]\n";

/* The sample RC exists (created from DIR/hello.yaml, written if missing);
 * *@created tells whether this run made it. */
static int sample_ensure(struct up *u, bool *created, struct aep_error *e)
{
	struct up_reply r;
	int rv = call(u, "get", "ReplicationController", "default", UP_RC, NULL, &r, e);
	reply_free(&r);
	*created = false;
	if (rv == 0)
		return 0;
	if (rv != AEP_ENOTFOUND)
		return aep_error_prefix(e, "rc/" UP_RC);
	char path[PATH_MAX + 16], out[1024];
	snprintf(path, sizeof(path), "%s/" UP_RC ".yaml", u->dir);
	if (access(path, F_OK) != 0) {
		FILE *f = fopen(path, "w");
		if (f == NULL || fputs(sample_rc, f) < 0 || fclose(f) != 0)
			return aep_errorf(e, AEP_EIO, "write %s: %s", path, strerror(errno));
	}
	const char *args[] = {"create", "-f", path, NULL};
	int rc = run_self(u, args, out, sizeof(out));
	if (rc != 0)
		return aep_errorf(e, AEP_EIO, "aep create -f %s failed (exit %d)", path, rc);
	*created = true;
	return 0;
}

/* GET http://@ip/ from this machine: true on a 200 answer. */
static bool http_ok(const char *ip)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(80)};
	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
		return false;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool ok = false;
	char req[128], buf[256];
	size_t len = 0;
	int err = 0;
	socklen_t el = sizeof(err);
	struct pollfd p = {fd, POLLOUT, 0};
	if ((connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) ||
	    poll(&p, 1, 1000) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 ||
	    err != 0)
		goto out;
	int n = snprintf(req, sizeof(req), "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", ip);
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
		goto out;
	p.events = POLLIN;
	while (len < sizeof(buf) - 1 && poll(&p, 1, 1000) == 1) {
		ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	ok = strncmp(buf, "HTTP/1.", 7) == 0 && strncmp(buf + 8, " 200", 4) == 0;
out:
	close(fd);
	return ok;
}

struct up_pod {
	char name[64];
	char ip[16];
	char node[16];
};

static int pod_cmp(const void *a, const void *b)
{
	return strcmp(((const struct up_pod *)a)->name, ((const struct up_pod *)b)->name);
}

/* The sample RC's pods, all Running with an address that answers HTTP
 * from here, as many as its spec.replicas. Fills @pods (sorted). */
static int pods_wait(struct up *u, struct up_pod *pods, size_t max, size_t *npods,
		     struct aep_error *e)
{
	time_t deadline = time(NULL) + UP_POD_WAIT_S;
	char last[256] = "no answer yet";
	/* Started by this run's agents: a status that an earlier run left in
	 * the store does not count. */
	int64_t since = u->agents_since;
	for (;;) {
		struct up_reply r;
		int64_t want = -1;
		size_t n = 0, ready = 0;
		if (call(u, "get", "ReplicationController", "default", UP_RC, NULL, &r, e) == 0)
			want = cli__mp_int(&r.obj, "spec.replicas", -1);
		reply_free(&r);
		if (want >= 0 &&
		    call(u, "list", "Pod", "default", NULL, "app=" UP_RC, &r, e) == 0) {
			const msgpack_object *items = cli__mp_path(&r.obj, "items");
			for (uint32_t i = 0; items != NULL && items->type == MSGPACK_OBJECT_ARRAY &&
					     i < items->via.array.size && n < max;
			     i++) {
				const msgpack_object *p = &items->via.array.ptr[i];
				char phase[32], started[64];
				int64_t t0 = 0;
				struct up_pod *pd = &pods[n++];
				cli__mp_str(p, "metadata.name", pd->name, sizeof(pd->name), "");
				cli__mp_str(p, "status.podIP", pd->ip, sizeof(pd->ip), "");
				cli__mp_str(p, "spec.nodeName", pd->node, sizeof(pd->node), "");
				cli__mp_str(p, "status.startTime", started, sizeof(started), "");
				if (strcmp(cli__mp_str(p, "status.phase", phase, sizeof(phase), ""),
					   "Running") == 0 &&
				    cli__parse_time(started, &t0) && t0 >= since &&
				    pd->ip[0] != '\0' && http_ok(pd->ip))
					ready++;
			}
			snprintf(last, sizeof(last), "%zu of %lld pods Running and serving", ready,
				 (long long)want);
			reply_free(&r);
		} else if (want >= 0) {
			reply_free(&r);
		}
		if (want >= 0 && (size_t)want == n && ready == n) {
			qsort(pods, n, sizeof(*pods), pod_cmp);
			*npods = n;
			return 0;
		}
		if (agents_alive(u, e) != 0)
			return e->code;
		if (time(NULL) >= deadline)
			return aep_errorf(e, AEP_ETIMEOUT,
					  "rc/" UP_RC ": not every pod serves within %d s (%s)",
					  UP_POD_WAIT_S, last);
		if (nap(u, 300))
			return aep_errorf(e, AEP_ECANCELED, "interrupted");
	}
}

/* ---- output ---------------------------------------------------------------- */

static void print_masters(struct up *u)
{
	for (unsigned i = 0; i < u->n; i++)
		printf("  m%u  api %s  raft 127.0.0.1:%u  metrics http://127.0.0.1:%u/metrics  log "
		       "%s/m%u.log\n",
		       i + 1, u->api[i], u->base + 100 + i, u->base + 200 + i, u->dir, i + 1);
}

static void print_with_nodes(struct up *u, const char *leader, const struct up_pod *pods,
			     size_t npods, bool created)
{
	printf("AEP local cluster is up: %u master%s (leader %s), %u node%s\n\n", u->n,
	       u->n > 1 ? "s" : "", leader, u->nnodes, u->nnodes > 1 ? "s" : "");
	print_masters(u);
	printf("\n");
	for (unsigned i = 0; i < u->nnodes; i++) {
		const struct up_node *nd = &u->nodes[i];
		printf("  %s  address %s  %s  pods %s  netns %s  log %s\n", nd->name, nd->addr,
		       nd->labels, nd->pod_cidr, nd->netns, nd->log);
	}
	printf("\nrc/" UP_RC " (%s %s/" UP_RC ".yaml): %zu pod%s of busybox httpd\n",
	       created ? "created from" : "already there; sample in", u->dir, npods,
	       npods == 1 ? "" : "s");
	for (size_t i = 0; i < npods; i++)
		printf("  %-16s  %-15s  on %s\n", pods[i].name, pods[i].ip, pods[i].node);
	char cmd[6][PATH_MAX + 128];
	const char *why[6] = {NULL};
	size_t ncmd = 0;
	snprintf(cmd[ncmd++], sizeof(cmd[0]), "%s get nodes", u->self);
	snprintf(cmd[ncmd++], sizeof(cmd[0]), "%s get pods -o wide", u->self);
	if (npods > 0) {
		/* A pod fetching the page of a pod on another node, when
		 * there is one. */
		const struct up_pod *from = &pods[0], *to = &pods[npods > 1 ? 1 : 0];
		for (size_t i = 1; i < npods; i++) {
			if (strcmp(pods[i].node, from->node) != 0) {
				to = &pods[i];
				break;
			}
		}
		why[ncmd] = "from this machine (it routes the pod subnets)";
		snprintf(cmd[ncmd++], sizeof(cmd[0]), "wget -qO- http://%s/", pods[0].ip);
		why[ncmd] =
		    strcmp(from->node, to->node) != 0 ? "pod to pod, across nodes" : "pod to pod";
		snprintf(cmd[ncmd++], sizeof(cmd[0]), "%s exec %s -- wget -qO- http://%s/", u->self,
			 from->name, to->ip);
	}
	snprintf(cmd[ncmd++], sizeof(cmd[0]), "%s scale rc/" UP_RC " --replicas=5", u->self);
	why[ncmd] = "the network as node n1 sees it";
	snprintf(cmd[ncmd++], sizeof(cmd[0]), "nsenter --net=/run/netns/%s ip addr",
		 u->nodes[0].netns);
	size_t width = 0;
	for (size_t i = 0; i < ncmd; i++) {
		size_t l = strlen(cmd[i]);
		if (why[i] != NULL && l > width)
			width = l;
	}
	printf("\nUse it from another terminal:\n  export AEP_CONFIG=%s/admin.conf\n", u->dir);
	for (size_t i = 0; i < ncmd; i++) {
		if (why[i] != NULL)
			printf("  %-*s  # %s\n", (int)width, cmd[i], why[i]);
		else
			printf("  %s\n", cmd[i]);
	}
	printf("\nPress Ctrl-C to stop the cluster; it removes the nodes' namespaces, links,\n"
	       "routes and containers (the cluster's data stays in %s).\n",
	       u->dir);
}

static void print_plain(struct up *u, const char *leader)
{
	printf("AEP local cluster is up: %u master%s, leader %s\n\n", u->n, u->n > 1 ? "s" : "",
	       leader);
	print_masters(u);
	printf("\nUse it from another terminal:\n"
	       "  export AEP_CONFIG=%s/admin.conf\n"
	       "  %s admin members\n"
	       "  %s create -f examples/pods.yaml\n"
	       "  %s get pods -o wide\n"
	       "  %s get pods -l app=web -o yaml\n"
	       "  %s get pods -w\n"
	       "\nPress Ctrl-C to stop the cluster (its data stays in %s).\n",
	       u->dir, u->self, u->self, u->self, u->self, u->self, u->dir);
}

/* ---- aep up ------------------------------------------------------------------ */

/* The nodes, from the network to the sample application's pods; a
 * SIGINT or SIGTERM between two steps ends it (AEP_ECANCELED). */
static int nodes_start(struct up *u, struct up_pod *pods, size_t max, size_t *npods, bool *created,
		       struct aep_error *e)
{
	if (client_open(u, e) != 0 || images_load(u, e) != 0)
		return e->code;
	if (nap(u, 0) || agents_start(u, e) != 0)
		goto out;
	if (nap(u, 0) || nodes_wait(u, e) != 0)
		goto out;
	if (nap(u, 0) || routes_add(u, e) != 0)
		goto out;
	if (nap(u, 0) || sample_ensure(u, created, e) != 0)
		goto out;
	if (nap(u, 0) || pods_wait(u, pods, max, npods, e) != 0)
		goto out;
	if (!nap(u, 0))
		return 0;
out:
	if (u->stop)
		return aep_errorf(e, AEP_ECANCELED, "interrupted");
	return e->code;
}

static void watch_children(struct up *u)
{
	for (unsigned i = 0; i < u->n; i++) {
		int status;
		if (u->pids[i] > 0 && waitpid(u->pids[i], &status, WNOHANG) == u->pids[i]) {
			fprintf(stderr, "aep up: master m%u exited (%s %d); see %s/m%u.log\n",
				i + 1, WIFSIGNALED(status) ? "signal" : "status",
				WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
				u->dir, i + 1);
			u->pids[i] = 0;
		}
	}
	for (unsigned i = 0; i < u->nnodes; i++) {
		struct aep_nodehost *h = u->nodes[i].h;
		if (h != NULL && aep_nodehost_agent_ended(h))
			fprintf(stderr, "aep up: the agent of node %s exited (%s %d); see %s\n",
				u->nodes[i].name,
				WIFSIGNALED(h->agent_status) ? "signal" : "status",
				WIFSIGNALED(h->agent_status) ? WTERMSIG(h->agent_status)
							     : WEXITSTATUS(h->agent_status),
				u->nodes[i].log);
	}
}

/* The masters' number and ports are in their Raft logs once they ran: a
 * DIR keeps them in DIR/up.shape. A later run without the flags takes
 * them from there; one with other values is refused (its masters would
 * never elect a leader). 0, or 1 after printing why. */
static int cluster_shape(struct up *u, bool n_given, bool base_given)
{
	char path[PATH_MAX + 16];
	unsigned n, base;
	snprintf(path, sizeof(path), "%s/up.shape", u->dir);
	FILE *f = fopen(path, "r");
	if (f != NULL) {
		char line[64] = "", *end = line;
		bool got =
		    fgets(line, sizeof(line), f) != NULL && strncmp(line, "masters=", 8) == 0;
		fclose(f);
		n = got ? (unsigned)strtoul(line + 8, &end, 10) : 0;
		got = got && strncmp(end, " base-port=", 11) == 0;
		base = got ? (unsigned)strtoul(end + 11, &end, 10) : 0;
		if (got && *end == '\n' && n >= 1 && n <= UP_MAX_MASTERS && base >= 1024 &&
		    base <= 65535 - 300) {
			if ((n_given && n != u->n) || (base_given && base != u->base)) {
				fprintf(stderr,
					"error: %s holds a cluster of %u masters on --base-port "
					"%u (their Raft logs keep those addresses): run aep up "
					"--dir %s with --masters %u --base-port %u (or without "
					"them), or use a new --dir\n",
					u->dir, n, base, u->dir, n, base);
				return 1;
			}
			u->n = n;
			u->base = base;
			return 0;
		}
	}
	f = fopen(path, "w");
	if (f == NULL || fprintf(f, "masters=%u base-port=%u\n", u->n, u->base) < 0 ||
	    fclose(f) != 0) {
		fprintf(stderr, "error: %s: %s\n", path, strerror(errno));
		return 1;
	}
	return 0;
}

int aep_cli_up(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"masters", required_argument, NULL, 'm'}, {"nodes", required_argument, NULL, 'N'},
	    {"dir", required_argument, NULL, 'd'},     {"base-port", required_argument, NULL, 'p'},
	    {"help", no_argument, NULL, 'h'},	       {NULL, 0, NULL, 0},
	};
	static struct up u; /* large; one per process */
	memset(&u, 0, sizeof(u));
	u.n = 3;
	u.base = 7001;
	bool n_given = false, base_given = false;
	const char *dir = "aep-local";
	int c;
	optind = 1;
	struct aep_error pe = {0};
	unsigned long long v = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (aep_parse_uint(optarg, "--masters", 1, UP_MAX_MASTERS, &v, &pe) != 0)
				goto bad_flag;
			u.n = (unsigned)v;
			n_given = true;
			break;
		case 'N':
			if (aep_parse_uint(optarg, "--nodes", 0, UP_MAX_NODES, &v, &pe) != 0)
				goto bad_flag;
			u.nnodes = (unsigned)v;
			break;
		case 'd': dir = optarg; break;
		case 'p':
			if (aep_parse_uint(optarg, "--base-port", 1024, 65535 - 300, &v, &pe) != 0)
				goto bad_flag;
			u.base = (unsigned)v;
			base_given = true;
			break;
		case 'h': up_usage(stdout); return 0;
		default: up_usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		up_usage(stderr);
		return 2;
	}
	/* Checked before anything is made. */
	if (u.nnodes > 0 && geteuid() != 0) {
		fprintf(stderr, "error: aep up --nodes needs root (it makes network namespaces, "
				"links, routes and containers); run it as root, or without "
				"--nodes for masters only\n");
		return 1;
	}
	if (u.nnodes > 0 && (!in_path("ip") || !in_path("crun"))) {
		fprintf(stderr, "error: aep up --nodes needs ip(8) (iproute2) and crun in PATH\n");
		return 1;
	}
	/* Container root file systems are overlay mounts whose options name
	 * directories under DIR. */
	char cwd[PATH_MAX] = "";
	if (u.nnodes > 0 &&
	    ((dir[0] != '/' && getcwd(cwd, sizeof(cwd)) == NULL) ||
	     cwd[strcspn(cwd, UP_BAD_PATH)] != '\0' || dir[strcspn(dir, UP_BAD_PATH)] != '\0')) {
		fprintf(stderr,
			"error: --dir %s%s%s: with --nodes, the path may not contain blanks, ',', "
			"':', quotes or '\\' (the nodes' overlay mounts name it)\n",
			cwd, cwd[0] ? "/" : "", dir);
		return 1;
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "error: mkdir %s: %s\n", dir, strerror(errno));
		return 1;
	}
	char absdir[PATH_MAX];
	if (realpath(dir, absdir) == NULL) {
		fprintf(stderr, "error: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	if (strlen(absdir) > 3000) {
		fprintf(stderr, "error: %s: path too long\n", absdir);
		return 1;
	}
	u.dir = absdir;
	ssize_t n = readlink("/proc/self/exe", u.self, sizeof(u.self) - 1);
	if (n <= 0) {
		fprintf(stderr, "error: cannot find the aep binary: %s\n", strerror(errno));
		return 1;
	}
	u.self[n] = '\0';
	char lock[PATH_MAX + 16];
	snprintf(lock, sizeof(lock), "%s/up.lock", u.dir);
	int lockfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
		fprintf(stderr, "error: %s: %s\n", lock,
			errno == EWOULDBLOCK ? "another aep up runs on this directory"
					     : strerror(errno));
		if (lockfd >= 0)
			close(lockfd);
		return 1;
	}

	if (cluster_shape(&u, n_given, base_given) != 0)
		goto err_unlock;
	if (u.nnodes > 0)
		nodes_plan(&u);
	struct aep_pki_master masters[UP_MAX_MASTERS];
	char names[UP_MAX_MASTERS][16];
	size_t off = 0;
	for (unsigned i = 0; i < u.n; i++) {
		snprintf(names[i], sizeof(names[i]), "m%u", i + 1);
		snprintf(u.api[i], sizeof(u.api[i]), "%s:%u",
			 u.nnodes > 0 ? u.bridge_ip : "127.0.0.1", u.base + i);
		masters[i].name = names[i];
		masters[i].addr = u.api[i];
		off +=
		    (size_t)snprintf(u.cluster + off, sizeof(u.cluster) - off, "%sm%u=127.0.0.1:%u",
				     i ? "," : "", i + 1, u.base + 100 + i);
		snprintf(u.servers + strlen(u.servers), sizeof(u.servers) - strlen(u.servers),
			 "%s%s", i ? "," : "", u.api[i]);
	}
	char ca[PATH_MAX + 16], conf[PATH_MAX + 16];
	snprintf(ca, sizeof(ca), "%s/pki/ca.crt", u.dir);
	snprintf(conf, sizeof(conf), "%s/admin.conf", u.dir);
	setenv("AEP_CONFIG", conf, 1); /* for the aep commands run below */
	struct aep_error e = {0};
	if (access(ca, F_OK) != 0 && aep_pki_init(u.dir, masters, u.n, &e) != 0) {
		fprintf(stderr, "error: certificates: %s\n", e.msg);
		goto err_unlock;
	}
	if ((u.nnodes > 0 && master_certs_name(&u, u.bridge_ip, &e) != 0) ||
	    write_admin_conf(&u, &e) != 0) {
		fprintf(stderr, "error: %s\n", e.msg);
		goto err_unlock;
	}

	/* Signals are taken synchronously: sigwait below, nap() while
	 * starting. */
	sigemptyset(&u.sigs);
	sigaddset(&u.sigs, SIGINT);
	sigaddset(&u.sigs, SIGTERM);
	sigaddset(&u.sigs, SIGCHLD);
	sigprocmask(SIG_BLOCK, &u.sigs, NULL);

	if (u.nnodes > 0) {
		if (nodes_net_up(&u, &e) != 0) {
			fprintf(stderr, "error: %s\n", e.msg);
			goto err_nodes;
		}
	} else {
		/* An earlier run with nodes that was killed: what it left. */
		char path[PATH_MAX + 16];
		state_path(&u, path, sizeof(path));
		if (access(path, F_OK) == 0 && (geteuid() != 0 || purge_earlier(&u, &e) != 0))
			fprintf(stderr,
				"warning: an earlier aep up --nodes on %s left namespaces and "
				"links (listed in %s); run aep up --nodes as root to remove "
				"them%s%s\n",
				u.dir, path, e.msg[0] ? ": " : "", e.msg);
	}

	for (unsigned i = 0; i < u.n; i++) {
		u.pids[i] = start_master(&u, i);
		if (u.pids[i] < 0) {
			fprintf(stderr, "error: fork: %s\n", strerror(errno));
			u.pids[i] = 0;
			goto err_masters;
		}
	}
	char leader[64] = "";
	if (wait_leader(&u, leader, sizeof(leader), 60) != 0) {
		if (u.stop)
			fprintf(stderr, "aep up: interrupted\n");
		else
			fprintf(stderr,
				"error: the masters did not elect a leader; logs are in %s\n",
				u.dir);
		goto err_masters;
	}
	if (u.nnodes > 0) {
		struct up_pod pods[64];
		size_t npods = 0;
		bool created = false;
		printf("masters up (leader %s); starting %u node%s...\n", leader, u.nnodes,
		       u.nnodes > 1 ? "s" : "");
		fflush(stdout);
		int rv =
		    nodes_start(&u, pods, sizeof(pods) / sizeof(pods[0]), &npods, &created, &e);
		client_close(&u);
		if (rv != 0) {
			if (u.stop)
				fprintf(stderr, "aep up: interrupted\n");
			else
				fprintf(stderr, "error: %s\n", e.msg);
			goto err_masters;
		}
		/* The leader may have moved meanwhile: ask again. */
		wait_leader(&u, leader, sizeof(leader), 5);
		print_with_nodes(&u, leader, pods, npods, created);
	} else {
		print_plain(&u, leader);
	}
	fflush(stdout);

	while (!u.stop) {
		int sig = 0;
		if (sigwait(&u.sigs, &sig) != 0)
			continue;
		if (sig == SIGCHLD)
			watch_children(&u);
		else
			u.stop = true;
	}
	printf("\nstopping the cluster...\n");
	fflush(stdout);
	nodes_down(&u);
	stop_masters(&u);
	printf("stopped\n");
	close(lockfd);
	return 0;

err_masters:
	client_close(&u);
	nodes_down(&u);
	stop_masters(&u);
	close(lockfd);
	return u.stop ? 130 : 1;
err_nodes:
	nodes_down(&u);
err_unlock:
	close(lockfd);
	return 1;
bad_flag:
	fprintf(stderr, "error: %s\n", pe.msg);
	return 2;
}
