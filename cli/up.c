/* `aep up`: a whole local cluster on one machine, for trying AEP out.
 *
 * Creates DIR (certificates on first use; reused afterwards, so running it
 * again restarts the same cluster from disk), starts N `aep master`
 * processes on 127.0.0.1, waits until they have elected a leader, prints
 * how to use the cluster and then waits. Ctrl-C (or SIGTERM) stops every
 * master it started and waits for them to exit. */
#include "cli/cli.h"
#include "net/net.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define UP_MAX_MASTERS 9

struct up {
	const char *dir;
	unsigned n;
	unsigned base;
	char self[PATH_MAX];
	pid_t pids[UP_MAX_MASTERS];
	char cluster[1024];
};

static void up_usage(FILE *f)
{
	fprintf(f, "usage: aep up [--masters 1|3|5] [--dir DIR] [--base-port PORT]\n"
		   "\n"
		   "Starts a local AEP cluster on 127.0.0.1: master I serves its API on\n"
		   "PORT+I-1 (default 7001), Raft on PORT+100+I-1 and metrics on\n"
		   "PORT+200+I-1. DIR (default ./aep-local) keeps certificates, data and\n"
		   "logs; running it again restarts the same cluster. Ctrl-C stops it.\n");
}

static pid_t start_master(struct up *u, unsigned i)
{
	char name[16], dir[PATH_MAX], listen[64], peer[64], http[64], pki[PATH_MAX], log[PATH_MAX];
	snprintf(name, sizeof(name), "m%u", i + 1);
	snprintf(dir, sizeof(dir), "%s/%s", u->dir, name);
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", u->base + i);
	snprintf(peer, sizeof(peer), "127.0.0.1:%u", u->base + 100 + i);
	snprintf(http, sizeof(http), "127.0.0.1:%u", u->base + 200 + i);
	snprintf(pki, sizeof(pki), "%s/pki", u->dir);
	snprintf(log, sizeof(log), "%s/%s.log", u->dir, name);
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
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execl(u->self, u->self, "master", "--name", name, "--dir", dir, "--listen", listen,
	      "--peer", peer, "--initial-cluster", u->cluster, "--pki", pki, "--http", http,
	      (char *)NULL);
	fprintf(stderr, "exec %s: %s\n", u->self, strerror(errno));
	_exit(127);
}

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

/* Ask every master for its status until one reports a leader. */
static int wait_leader(struct up *u, char *leader, size_t size, unsigned timeout_s)
{
	char ca[PATH_MAX], crt[PATH_MAX], key[PATH_MAX], servers[512] = "";
	snprintf(ca, sizeof(ca), "%s/pki/ca.crt", u->dir);
	snprintf(crt, sizeof(crt), "%s/pki/admin.crt", u->dir);
	snprintf(key, sizeof(key), "%s/pki/admin.key", u->dir);
	struct aep_error e = {0};
	struct aep_tls *tls = NULL;
	if (aep_tls_client_new(ca, crt, key, &tls, &e) != 0) {
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
			snprintf(servers, sizeof(servers), "127.0.0.1:%u", u->base + i);
			if (aep_cli_leader_of(servers, tls, leader, size) == 0)
				rv = 0;
		}
		if (rv != 0)
			usleep(200 * 1000);
	}
	aep_tls_free(tls);
	return rv;
}

static void stop_all(struct up *u)
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

int aep_cli_up(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"masters", required_argument, NULL, 'm'},
	    {"dir", required_argument, NULL, 'd'},
	    {"base-port", required_argument, NULL, 'p'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct up u;
	memset(&u, 0, sizeof(u));
	u.n = 3;
	u.base = 7001;
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
			break;
		case 'd': dir = optarg; break;
		case 'p':
			if (aep_parse_uint(optarg, "--base-port", 1024, 65535 - 300, &v, &pe) != 0)
				goto bad_flag;
			u.base = (unsigned)v;
			break;
		case 'h': up_usage(stdout); return 0;
		default: up_usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		up_usage(stderr);
		return 2;
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
	u.dir = absdir;
	ssize_t n = readlink("/proc/self/exe", u.self, sizeof(u.self) - 1);
	if (n <= 0) {
		fprintf(stderr, "error: cannot find the aep binary: %s\n", strerror(errno));
		return 1;
	}
	u.self[n] = '\0';

	struct aep_pki_master masters[UP_MAX_MASTERS];
	char names[UP_MAX_MASTERS][16], addrs[UP_MAX_MASTERS][64];
	size_t off = 0;
	for (unsigned i = 0; i < u.n; i++) {
		snprintf(names[i], sizeof(names[i]), "m%u", i + 1);
		snprintf(addrs[i], sizeof(addrs[i]), "127.0.0.1:%u", u.base + i);
		masters[i].name = names[i];
		masters[i].addr = addrs[i];
		off +=
		    (size_t)snprintf(u.cluster + off, sizeof(u.cluster) - off, "%sm%u=127.0.0.1:%u",
				     i ? "," : "", i + 1, u.base + 100 + i);
	}
	char ca[PATH_MAX + 16];
	snprintf(ca, sizeof(ca), "%s/pki/ca.crt", u.dir);
	struct aep_error e = {0};
	if (access(ca, F_OK) != 0 && aep_pki_init(u.dir, masters, u.n, &e) != 0) {
		fprintf(stderr, "error: certificates: %s\n", e.msg);
		return 1;
	}

	/* Signals are taken synchronously with sigwait below. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);

	for (unsigned i = 0; i < u.n; i++) {
		u.pids[i] = start_master(&u, i);
		if (u.pids[i] < 0) {
			fprintf(stderr, "error: fork: %s\n", strerror(errno));
			stop_all(&u);
			return 1;
		}
	}
	char leader[64] = "";
	if (wait_leader(&u, leader, sizeof(leader), 60) != 0) {
		fprintf(stderr, "error: the masters did not elect a leader; logs are in %s\n",
			u.dir);
		stop_all(&u);
		return 1;
	}
	printf("AEP local cluster is up: %u master%s, leader %s\n\n", u.n, u.n > 1 ? "s" : "",
	       leader);
	for (unsigned i = 0; i < u.n; i++)
		printf("  m%u  api 127.0.0.1:%u  raft 127.0.0.1:%u  "
		       "metrics http://127.0.0.1:%u/metrics  log %s/m%u.log\n",
		       i + 1, u.base + i, u.base + 100 + i, u.base + 200 + i, u.dir, i + 1);
	printf("\nUse it from another terminal:\n"
	       "  export AEP_CONFIG=%s/admin.conf\n"
	       "  %s admin members\n"
	       "  %s create -f examples/pods.yaml\n"
	       "  %s get pods -o wide\n"
	       "  %s get pods -l app=web -o yaml\n"
	       "  %s get pods -w\n"
	       "\nPress Ctrl-C to stop the cluster (its data stays in %s).\n",
	       u.dir, u.self, u.self, u.self, u.self, u.self, u.dir);
	fflush(stdout);

	for (;;) {
		int sig = 0;
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGCHLD) {
			int status;
			pid_t pid;
			while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
				for (unsigned i = 0; i < u.n; i++) {
					if (u.pids[i] == pid) {
						fprintf(stderr,
							"aep up: master m%u exited (%s %d); see "
							"%s/m%u.log\n",
							i + 1,
							WIFSIGNALED(status) ? "signal" : "status",
							WIFSIGNALED(status) ? WTERMSIG(status)
									    : WEXITSTATUS(status),
							u.dir, i + 1);
						u.pids[i] = 0;
					}
				}
			}
			continue;
		}
		break;
	}
	printf("\nstopping the cluster...\n");
	stop_all(&u);
	printf("stopped\n");
	return 0;
bad_flag:
	fprintf(stderr, "error: %s\n", pe.msg);
	return 2;
}
