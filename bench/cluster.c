/* Start and stop a throwaway master cluster for a benchmark run. */
#include "bench/bench.h"
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* The cluster a signal must clean up: masters are killed and the temporary
 * directory removed with async-signal-safe calls only. */
static struct bench_cluster *running;

volatile sig_atomic_t bench_interrupted;

static void on_signal_deferred(int sig)
{
	bench_interrupted = sig;
}

void bench_catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal_deferred;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static const char *api_host(const struct bench_cluster *c)
{
	return c->host[0] != '\0' ? c->host : "127.0.0.1";
}

void bench_cluster_api(const struct bench_cluster *c, unsigned i, char *out, size_t size)
{
	int n = snprintf(out, size, "%s:%u", api_host(c), c->base + i);
	if (n < 0 || (size_t)n >= size)
		out[0] = '\0'; /* never a cut address; sizes are BENCH_ADDR_MAX */
}

static void on_signal(int sig)
{
	struct bench_cluster *c = running;
	if (c != NULL) {
		for (unsigned i = 0; i < c->n; i++) {
			if (c->pids[i] > 0)
				kill(c->pids[i], SIGKILL);
		}
		pid_t pid = fork();
		if (pid == 0) {
			execl("/bin/rm", "rm", "-rf", c->dir, (char *)NULL);
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Fork and exec master @i (m<i+1>) of @c; its log is appended to or
 * truncated (@log_flag O_APPEND or O_TRUNC). */
static int start_master(struct bench_cluster *c, unsigned i, int log_flag)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "aep-bench: fork: %s\n", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		/* A benchmark killed with SIGKILL takes its masters with it. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(127);
		char name[16], dir[300], listen[BENCH_ADDR_MAX], peer[32], pki[300], log[300],
		    http[32];
		snprintf(name, sizeof(name), "m%u", i + 1);
		snprintf(dir, sizeof(dir), "%s/%s", c->dir, name);
		bench_cluster_api(c, i, listen, sizeof(listen));
		snprintf(peer, sizeof(peer), "127.0.0.1:%u", c->base + 100 + i);
		snprintf(pki, sizeof(pki), "%s/pki", c->dir);
		snprintf(log, sizeof(log), "%s/%s.log", c->dir, name);
		snprintf(http, sizeof(http), "127.0.0.1:%u", c->base + 200 + i);
		int fd = open(log, O_WRONLY | O_CREAT | log_flag, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		const char *inflight = getenv("AEP_BENCH_MAX_INFLIGHT");
		/* The benchmarks register Nodes without agents: keep the
		 * node lifecycle from declaring them lost mid-run. */
		execl(c->aep, c->aep, "master", "--name", name, "--dir", dir, "--listen", listen,
		      "--peer", peer, "--initial-cluster", c->cluster, "--pki", pki,
		      "--max-inflight", inflight ? inflight : "0", "--http", http, "--node-grace",
		      "24h", "--pod-eviction-timeout", "24h", (char *)NULL);
		_exit(127);
	}
	c->pids[i] = pid;
	return 0;
}

int bench_cluster_restart(struct bench_cluster *c, unsigned i)
{
	if (i >= c->n || c->pids[i] > 0)
		return -1;
	return start_master(c, i, O_APPEND);
}

int bench_cluster_start(struct bench_cluster *c, unsigned n, unsigned base, const char *aep)
{
	memset(c->pids, 0, sizeof(c->pids));
	c->n = n;
	running = c;
	if (!c->defer_signals) {
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
	}
	c->base = base;
	snprintf(c->aep, sizeof(c->aep), "%s", aep);
	const char *tmp = getenv("TMPDIR");
	snprintf(c->dir, sizeof(c->dir), "%s/aep-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(c->dir) == NULL) {
		fprintf(stderr, "aep-bench: mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	struct aep_pki_master masters[BENCH_MAX_MASTERS];
	char names[BENCH_MAX_MASTERS][16], addrs[BENCH_MAX_MASTERS][BENCH_ADDR_MAX],
	    cluster[512] = "";
	size_t off = 0;
	for (unsigned i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "m%u", i + 1);
		bench_cluster_api(c, i, addrs[i], sizeof(addrs[i]));
		masters[i].name = names[i];
		masters[i].addr = addrs[i];
		off += (size_t)snprintf(cluster + off, sizeof(cluster) - off, "%sm%u=127.0.0.1:%u",
					i ? "," : "", i + 1, base + 100 + i);
	}
	struct aep_error e = {0};
	char ca[300], crt[300], key[300];
	if (aep_pki_init(c->dir, masters, n, &e) != 0) {
		fprintf(stderr, "aep-bench: certificates: %s\n", e.msg);
		return 1;
	}
	snprintf(ca, sizeof(ca), "%s/pki/ca.crt", c->dir);
	snprintf(crt, sizeof(crt), "%s/pki/admin.crt", c->dir);
	snprintf(key, sizeof(key), "%s/pki/admin.key", c->dir);
	if (aep_tls_client_new(ca, crt, key, &c->tls, &e) != 0) {
		fprintf(stderr, "aep-bench: TLS: %s\n", e.msg);
		return 1;
	}
	snprintf(c->cluster, sizeof(c->cluster), "%s", cluster);
	for (unsigned i = 0; i < n; i++) {
		if (start_master(c, i, O_TRUNC) != 0)
			return 1;
	}
	char leader[32] = "";
	time_t deadline = time(NULL) + 60;
	while (time(NULL) < deadline && !bench_interrupted) {
		for (unsigned i = 0; i < n && leader[0] == '\0'; i++) {
			char addr[BENCH_ADDR_MAX];
			bench_cluster_api(c, i, addr, sizeof(addr));
			aep_cli_leader_of(addr, c->tls, leader, sizeof(leader));
		}
		if (leader[0] != '\0')
			break;
		usleep(100 * 1000);
	}
	if (leader[0] == '\0' && bench_interrupted)
		return 1;
	if (leader[0] == '\0') {
		fprintf(stderr, "aep-bench: no leader elected; logs in %s\n", c->dir);
		c->keep = 1;
		return 1;
	}
	/* Masters are named m1..mN: the leader's index from its name. */
	unsigned li = 0;
	for (unsigned i = 0; i < n; i++) {
		if (strncmp(names[i], leader, sizeof(names[i])) == 0)
			li = i;
	}
	c->leader = li;
	bench_cluster_api(c, li, c->leader_addr, sizeof(c->leader_addr));
	return 0;
}

void bench_cluster_stop(struct bench_cluster *c)
{
	if (!c->defer_signals) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
	}
	running = NULL;
	for (unsigned i = 0; i < c->n; i++) {
		if (c->pids[i] > 0)
			kill(c->pids[i], SIGTERM);
	}
	for (unsigned i = 0; i < c->n; i++) {
		if (c->pids[i] <= 0)
			continue;
		int st;
		for (int t = 0; t < 100 && waitpid(c->pids[i], &st, WNOHANG) == 0; t++)
			usleep(100 * 1000);
		if (waitpid(c->pids[i], &st, WNOHANG) == 0) {
			kill(c->pids[i], SIGKILL);
			waitpid(c->pids[i], &st, 0);
		}
		c->pids[i] = 0;
	}
	aep_tls_free(c->tls);
	c->tls = NULL;
	if (getenv("AEP_BENCH_KEEP") != NULL)
		c->keep = 1;
	if (!c->keep && c->dir[0] != '\0') {
		char cmd[400];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "aep-bench: could not remove %s\n", c->dir);
	}
}

int bench_cluster_kill(struct bench_cluster *c, unsigned i)
{
	if (i >= c->n || c->pids[i] <= 0)
		return -1;
	if (kill(c->pids[i], SIGKILL) != 0)
		return -1;
	/* SIGKILL cannot be caught: the wait ends once the kernel has torn the
	 * process down, which closes its sockets (its clients see EOF). */
	while (waitpid(c->pids[i], NULL, 0) < 0 && errno == EINTR)
		;
	c->pids[i] = 0;
	return 0;
}

int bench_cluster_leader(struct bench_cluster *c, unsigned *idx)
{
	for (unsigned i = 0; i < c->n; i++) {
		char addr[BENCH_ADDR_MAX], leader[32] = "";
		if (c->pids[i] <= 0)
			continue;
		bench_cluster_api(c, i, addr, sizeof(addr));
		if (aep_cli_leader_of(addr, c->tls, leader, sizeof(leader)) != 0)
			continue;
		/* Masters are named m1..mN. */
		char *end = leader;
		unsigned long k = leader[0] == 'm' ? strtoul(leader + 1, &end, 10) : 0;
		if (k >= 1 && k <= c->n && *end == '\0' && c->pids[k - 1] > 0) {
			*idx = (unsigned)k - 1;
			return 0;
		}
	}
	return -1;
}

void bench_pack_create_pod(struct aep_buf *b, const char *name, const char *value, size_t len)
{
	msgpack_packer pk;
	aep_packer_init(&pk, b);
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "object");
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "kind");
	aep_pack_str(&pk, "Pod");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, value != NULL ? 2 : 1);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, name);
	if (value != NULL) {
		aep_pack_str(&pk, "annotations");
		msgpack_pack_map(&pk, 1);
		aep_pack_str(&pk, "data");
		aep_pack_strn(&pk, value, len);
	}
	aep_pack_str(&pk, "spec");
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "nodeName");
	aep_pack_str(&pk, "bench-node");
	aep_pack_str(&pk, "containers");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, "c");
	aep_pack_str(&pk, "image");
	aep_pack_str(&pk, "busybox");
}

int bench_default_aep(char *out, size_t size)
{
	/* build/aep-bench → build/aep */
	char self[4000];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return -1;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash == NULL)
		return -1;
	*slash = '\0';
	snprintf(out, size, "%s/aep", self);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

double bench_percentile(double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

double bench_metric(struct bench_cluster *c, unsigned i, const char *name)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)(c->base + 200 + i))};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	static char resp[1 << 20];
	size_t len = 0;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
		if (write(fd, req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1) {
			ssize_t n;
			while (len < sizeof(resp) - 1 &&
			       (n = read(fd, resp + len, sizeof(resp) - 1 - len)) > 0)
				len += (size_t)n;
		}
	}
	close(fd);
	resp[len] = '\0';
	char key[128];
	snprintf(key, sizeof(key), "\n%s{", name);
	const char *p = strstr(resp, key);
	if (p == NULL)
		return -1;
	p = strchr(p + 1, '}');
	return p ? strtod(p + 1, NULL) : -1;
}
