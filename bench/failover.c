/* aep-bench failover: how long writes stop when the leader dies.
 *
 * Starts --masters masters on 127.0.0.1. Each run: a new client configured
 * with every master's address, as the CLI is, the leader's first (so that
 * it is connected to the leader, the case where the client itself must
 * find another master), writes until writes flow, the leader is killed
 * with SIGKILL, and the client keeps writing (each write issued after the kill,
 * retried 5 ms after a failure: connection refused, Unavailable, no leader
 * yet). The run's figure is the time from the kill to the first write
 * acknowledged after it. The killed master is then started again from its
 * directory and the next run waits until every master reports the same
 * leader. Prints each run and, last, "failover_ms_median=... min_ms=...
 * max_ms=... runs=N". */
#include "bench/bench.h"
#include "cli/cli.h"

#include <getopt.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct writer {
	uv_loop_t *loop;
	struct aep_rpc_client *client;
	unsigned run;
	unsigned seq;
};

/* One create, waited for. Returns 0 when acknowledged. */
static int write_one(struct writer *w, unsigned timeout_ms, struct aep_error *e)
{
	char name[48];
	struct aep_buf buf;
	int rv;

	snprintf(name, sizeof(name), "failover-%u-%06u", w->run, w->seq++);
	aep_buf_init(&buf);
	bench_pack_create_pod(&buf, name, NULL, 0);
	if (buf.failed) {
		aep_buf_free(&buf);
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	}
	rv =
	    aep_rpc_call_sync(w->loop, w->client, "create", buf.data, buf.len, timeout_ms, NULL, e);
	aep_buf_free(&buf);
	return rv;
}

/* Every running master names the same running leader. */
static int settled(struct bench_cluster *c, unsigned *leader)
{
	unsigned first = 0;
	bool have = false;
	for (unsigned i = 0; i < c->n; i++) {
		char addr[32], name[32] = "";
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", c->base + i);
		if (aep_cli_leader_of(addr, c->tls, name, sizeof(name)) != 0 || name[0] != 'm')
			return -1;
		unsigned k = (unsigned)strtoul(name + 1, NULL, 10);
		if (k < 1 || k > c->n || (have && k - 1 != first))
			return -1;
		first = k - 1;
		have = true;
	}
	if (!have || c->pids[first] <= 0)
		return -1;
	*leader = first;
	return 0;
}

static int cmp_ms(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int bench_failover(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"masters", required_argument, NULL, 'm'},
	    {"runs", required_argument, NULL, 'r'},
	    {"base-port", required_argument, NULL, 'p'},
	    {"aep", required_argument, NULL, 'a'},
	    {NULL, 0, NULL, 0},
	};
	unsigned masters = 3, runs = 5, base = 17401;
	char aep[4096] = "";
	struct aep_error e = {0};
	unsigned long long v;
	int c, status = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'm':
			bad = aep_parse_uint(optarg, "--masters", 3, BENCH_MAX_MASTERS, &v, &e);
			masters = (unsigned)v;
			break;
		case 'r':
			bad = aep_parse_uint(optarg, "--runs", 1, 100, &v, &e);
			runs = (unsigned)v;
			break;
		case 'p':
			bad = aep_parse_uint(optarg, "--base-port", 1024, 65000, &v, &e);
			base = (unsigned)v;
			break;
		case 'a': snprintf(aep, sizeof(aep), "%s", optarg); break;
		default: return 2;
		}
		if (bad) {
			fprintf(stderr, "aep-bench failover: %s\n", e.msg);
			return 2;
		}
	}
	if (aep[0] == '\0' && bench_default_aep(aep, sizeof(aep)) != 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);

	struct bench_cluster cl;
	memset(&cl, 0, sizeof(cl));
	if (bench_cluster_start(&cl, masters, base, aep) != 0) {
		bench_cluster_stop(&cl);
		return 1;
	}
	printf("cluster: %u masters in %s\n", masters, cl.dir);
	struct writer w = {.loop = uv_default_loop()};
	double ms[100];
	unsigned done = 0;
	for (unsigned run = 1; run <= runs; run++) {
		unsigned leader;
		int64_t deadline = aep_now_monotonic_ns() + 60 * 1000000000LL;
		while (settled(&cl, &leader) != 0 && aep_now_monotonic_ns() < deadline)
			usleep(50 * 1000);
		if (settled(&cl, &leader) != 0) {
			fprintf(stderr,
				"aep-bench failover: run %u: the masters do not agree on a "
				"leader within 60 s; logs in %s\n",
				run, cl.dir);
			cl.keep = 1;
			status = 1;
			break;
		}
		char servers[BENCH_MAX_MASTERS * 24];
		size_t off =
		    (size_t)snprintf(servers, sizeof(servers), "127.0.0.1:%u", base + leader);
		for (unsigned i = 0; i < masters; i++) {
			if (i != leader)
				off += (size_t)snprintf(servers + off, sizeof(servers) - off,
							",127.0.0.1:%u", base + i);
		}
		struct aep_rpc_client_config cfg = {.servers = servers, .tls = cl.tls};
		if (aep_rpc_client_new(w.loop, &cfg, &w.client, &e) != 0) {
			fprintf(stderr, "aep-bench failover: client: %s\n", e.msg);
			status = 1;
			break;
		}
		w.run = run;
		w.seq = 0;
		unsigned ok = 0;
		while (ok < 50 && aep_now_monotonic_ns() < deadline) {
			if (write_one(&w, 5000, &e) == 0)
				ok++;
		}
		char at[64];
		const char *cur = aep_rpc_client_server(w.client);
		snprintf(at, sizeof(at), "%s", cur != NULL ? cur : "-");
		int64_t t_kill = aep_now_monotonic_ns();
		if (bench_cluster_kill(&cl, leader) != 0) {
			fprintf(stderr, "aep-bench failover: cannot kill m%u\n", leader + 1);
			status = 1;
			aep_rpc_client_close(w.client, NULL, NULL);
			break;
		}
		unsigned tries = 0;
		int64_t t_ack = 0;
		deadline = t_kill + 60 * 1000000000LL;
		while (aep_now_monotonic_ns() < deadline) {
			tries++;
			if (write_one(&w, 5000, &e) == 0) {
				t_ack = aep_now_monotonic_ns();
				break;
			}
			usleep(5 * 1000);
		}
		aep_rpc_client_close(w.client, NULL, NULL);
		uv_run(w.loop, UV_RUN_DEFAULT);
		if (t_ack == 0) {
			fprintf(stderr,
				"aep-bench failover: run %u: no write acknowledged within "
				"60 s of the kill (last: %s); logs in %s\n",
				run, e.msg, cl.dir);
			cl.keep = 1;
			status = 1;
			break;
		}
		ms[done++] = (double)(t_ack - t_kill) / 1e6;
		unsigned now_leader = 0;
		const char *new_leader = bench_cluster_leader(&cl, &now_leader) == 0 ? "m" : "?";
		printf("run %u: killed leader m%u (client was on %s): next write acknowledged "
		       "after %.0f ms (%u attempts), new leader %s%u\n",
		       run, leader + 1, at, ms[done - 1], tries, new_leader, now_leader + 1);
		fflush(stdout);
		if (bench_cluster_restart(&cl, leader) != 0) {
			fprintf(stderr, "aep-bench failover: cannot restart m%u\n", leader + 1);
			status = 1;
			break;
		}
	}
	uv_run(w.loop, UV_RUN_DEFAULT);
	bench_cluster_stop(&cl);
	if (done == 0)
		return 1;
	qsort(ms, done, sizeof(ms[0]), cmp_ms);
	double median = done % 2 ? ms[done / 2] : (ms[done / 2 - 1] + ms[done / 2]) / 2;
	printf("failover_ms_median=%.0f min_ms=%.0f max_ms=%.0f runs=%u\n", median, ms[0],
	       ms[done - 1], done);
	return status;
}
