/* aep-bench store: write throughput and latency of a master cluster.
 *
 * Starts --masters master processes on 127.0.0.1, then --clients logical
 * clients, each creating objects one after another (issue, wait for the
 * answer, issue the next) over --conns TLS connections to the leader, until
 * --objects distinct objects (Pods of about --value-size bytes of payload,
 * sequential names, already bound to a node so that the leader's scheduler
 * leaves them alone: this measures the store's write path) exist. This is the shape of etcd's published put
 * benchmark (bench/vs-etcd runs both). Prints the figures; the last line is
 * "writes_per_s=... p50_ms=... p99_ms=...". */
#include "bench/bench.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct store_bench;

struct lclient {
	struct store_bench *b;
	unsigned conn;
	int64_t t0;
};

struct store_bench {
	uv_loop_t *loop;
	struct aep_rpc_client **conns;
	unsigned nconns;
	struct lclient *clients;
	unsigned nclients;
	uint64_t objects;
	uint64_t next;
	uint64_t done;
	uint64_t errors;
	double *lat_ms;
	char *value;
	size_t value_size;
	int64_t start_ns;
	int64_t end_ns;
};

static void issue(struct lclient *lc);

static void done_cb(void *data, const struct aep_rpc_reply *reply)
{
	struct lclient *lc = data;
	struct store_bench *b = lc->b;
	int64_t now = aep_now_monotonic_ns();
	if (reply->code != 0) {
		if (b->errors++ < 5)
			fprintf(stderr, "aep-bench: create failed: %s: %.*s\n",
				aep_err_code(reply->code), (int)reply->msg_len,
				reply->msg ? reply->msg : "");
	}
	b->lat_ms[b->done++] = (double)(now - lc->t0) / 1e6;
	if (b->done == b->objects) {
		b->end_ns = now;
		for (unsigned i = 0; i < b->nconns; i++)
			aep_rpc_client_close(b->conns[i], NULL, NULL);
		return;
	}
	issue(lc);
}

static void issue(struct lclient *lc)
{
	struct store_bench *b = lc->b;
	if (b->next >= b->objects)
		return;
	uint64_t idx = b->next++;
	char name[32];
	snprintf(name, sizeof(name), "obj-%08llu", (unsigned long long)idx);
	struct aep_buf buf;
	aep_buf_init(&buf);
	bench_pack_create_pod(&buf, name, b->value, b->value_size);
	lc->t0 = aep_now_monotonic_ns();
	int rv = aep_rpc_call(b->conns[lc->conn], "create", buf.data, buf.len, done_cb, lc);
	aep_buf_free(&buf);
	if (rv != 0) {
		fprintf(stderr, "aep-bench: cannot issue a call: %s\n", aep_err_code(rv));
		exit(1);
	}
}

int bench_store(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"masters", required_argument, NULL, 'm'},
	    {"clients", required_argument, NULL, 'c'},
	    {"conns", required_argument, NULL, 'k'},
	    {"objects", required_argument, NULL, 'n'},
	    {"value-size", required_argument, NULL, 'v'},
	    {"base-port", required_argument, NULL, 'p'},
	    {"aep", required_argument, NULL, 'a'},
	    {NULL, 0, NULL, 0},
	};
	unsigned masters = 3, clients = 1000, conns = 100, base = 17001;
	uint64_t objects = 100000;
	size_t value_size = 256;
	char aep[4096] = "";
	int c;
	optind = 1;
	struct aep_error e = {0};
	unsigned long long v = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'm':
			bad = aep_parse_uint(optarg, "--masters", 1, BENCH_MAX_MASTERS, &v, &e);
			masters = (unsigned)v;
			break;
		case 'c':
			bad = aep_parse_uint(optarg, "--clients", 1, 100000, &v, &e);
			clients = (unsigned)v;
			break;
		case 'k':
			bad = aep_parse_uint(optarg, "--conns", 1, 10000, &v, &e);
			conns = (unsigned)v;
			break;
		case 'n':
			bad = aep_parse_uint(optarg, "--objects", 1, 100000000, &v, &e);
			objects = v;
			break;
		case 'v':
			bad = aep_parse_uint(optarg, "--value-size", 0, 65536, &v, &e);
			value_size = (size_t)v;
			break;
		case 'p':
			bad = aep_parse_uint(optarg, "--base-port", 1024, 65000, &v, &e);
			base = (unsigned)v;
			break;
		case 'a': snprintf(aep, sizeof(aep), "%s", optarg); break;
		default: return 2;
		}
		if (bad) {
			fprintf(stderr, "aep-bench store: %s\n", e.msg);
			return 2;
		}
	}
	/* The flags' ranges start at 1: clients spread over conns. */
	if (clients == 0 || conns == 0)
		return 2;
	if (conns > clients)
		conns = clients;
	if (aep[0] == '\0' && bench_default_aep(aep, sizeof(aep)) != 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);

	struct bench_cluster cl;
	memset(&cl, 0, sizeof(cl));
	if (bench_cluster_start(&cl, masters, base, aep) != 0) {
		bench_cluster_stop(&cl);
		return 1;
	}
	printf("cluster: %u masters in %s, leader at %s\n", masters, cl.dir, cl.leader_addr);

	struct store_bench b;
	memset(&b, 0, sizeof(b));
	b.loop = uv_default_loop();
	b.objects = objects;
	b.nconns = conns;
	b.nclients = clients;
	b.value_size = value_size;
	b.value = aep_malloc(value_size + 1);
	b.lat_ms = aep_calloc(objects, sizeof(double));
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	b.conns = aep_calloc(conns, sizeof(*b.conns));
	b.clients = aep_calloc(clients, sizeof(*b.clients));
	if (b.value == NULL || b.lat_ms == NULL || b.conns == NULL || b.clients == NULL) {
		fprintf(stderr, "aep-bench: out of memory\n");
		bench_cluster_stop(&cl);
		return 1;
	}
	for (size_t i = 0; i < value_size; i++)
		b.value[i] = (char)('a' + (i % 26));
	for (unsigned i = 0; i < conns; i++) {
		struct aep_rpc_client_config cfg = {.servers = cl.leader_addr, .tls = cl.tls};
		if (aep_rpc_client_new(b.loop, &cfg, &b.conns[i], &e) != 0) {
			fprintf(stderr, "aep-bench: client: %s\n", e.msg);
			bench_cluster_stop(&cl);
			return 1;
		}
	}
	/* Connect (TCP and TLS handshakes) before the clock starts, as etcd's
	 * load generator does: the figures are about writes. */
	for (unsigned i = 0; i < conns; i++) {
		struct aep_buf res;
		aep_buf_init(&res);
		if (aep_rpc_call_sync(b.loop, b.conns[i], "status", "\x80", 1, 10000, &res, &e) !=
		    0) {
			fprintf(stderr, "aep-bench: connection %u: %s\n", i, e.msg);
			aep_buf_free(&res);
			bench_cluster_stop(&cl);
			return 1;
		}
		aep_buf_free(&res);
	}
	printf("load: %llu objects, %u clients over %u connections, %zu-byte values\n",
	       (unsigned long long)objects, clients, conns, value_size);
	fflush(stdout);
	b.start_ns = aep_now_monotonic_ns();
	for (unsigned i = 0; i < clients; i++) {
		b.clients[i].b = &b;
		b.clients[i].conn = i % conns;
		issue(&b.clients[i]);
	}
	uv_run(b.loop, UV_RUN_DEFAULT);
	if (b.end_ns == 0)
		b.end_ns = aep_now_monotonic_ns();
	double secs = (double)(b.end_ns - b.start_ns) / 1e9;
	double wps = (double)b.done / secs;
	double p50 = bench_percentile(b.lat_ms, b.done, 50);
	double p99 = bench_percentile(b.lat_ms, b.done, 99);
	double pmax = b.done ? b.lat_ms[b.done - 1] : 0;
	printf("done: %llu writes in %.2f s, %llu errors, max %.1f ms\n",
	       (unsigned long long)b.done, secs, (unsigned long long)b.errors, pmax);
	double entries = bench_metric(&cl, cl.leader, "aep_raft_entries_applied_total");
	double commands = bench_metric(&cl, cl.leader, "aep_raft_commands_applied_total");
	if (entries > 0)
		printf("raft: %.0f entries for %.0f commands (%.1f per entry)\n", entries, commands,
		       commands / entries);
	double lsum = bench_metric(&cl, cl.leader, "aep_api_request_duration_seconds_sum");
	double lcount = bench_metric(&cl, cl.leader, "aep_api_request_duration_seconds_count");
	if (lcount > 0)
		printf("leader: mean create latency inside the master %.2f ms\n",
		       lsum / lcount * 1000);
	bench_cluster_stop(&cl);
	aep_free(b.value);
	aep_free(b.lat_ms);
	aep_free(b.conns);
	aep_free(b.clients);
	printf("writes_per_s=%.0f p50_ms=%.2f p99_ms=%.2f\n", wps, p50, p99);
	return b.errors == 0 ? 0 : 1;
}
