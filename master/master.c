/* `aep master`: flags, start-up and orderly shutdown of one master peer.
 *
 * Start-up: read flags → load TLS material from --pki → create the store →
 * start Raft (bootstrap on a new directory, else restart from disk) → listen
 * for the API → serve HTTP health and metrics. SIGINT/SIGTERM close
 * everything in the reverse order and exit 0. */
#include "master/master.h"
#include "master/master-int.h"

#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: aep master --name NAME --dir DIR --listen ADDR --peer ADDR\n"
	    "                  --initial-cluster NAME=PEERADDR,... [--pki DIR]\n"
	    "                  [--advertise ADDR] [--http ADDR]\n"
	    "                  [--snapshot-threshold N] [--snapshot-trailing N]\n"
	    "                  [--max-inflight N] [--scheduler-policy FILE]\n"
	    "                  [--cluster-cidr CIDR] [--node-cidr-size N]\n"
	    "                  [--node-grace DURATION] [--pod-eviction-timeout DURATION]\n"
	    "                  [--election-timeout DURATION] [--heartbeat-interval DURATION]\n"
	    "\n"
	    "  --name               this master's name, one of --initial-cluster\n"
	    "  --dir                data directory (Raft log and snapshots)\n"
	    "  --listen             API address (msgpack-RPC over TLS), e.g. 127.0.0.1:7001\n"
	    "  --advertise          API address given to clients and peers (default --listen)\n"
	    "  --peer               Raft address, e.g. 127.0.0.1:7101\n"
	    "  --initial-cluster    every master's Raft address: m1=127.0.0.1:7101,...\n"
	    "  --pki                directory with ca.crt, NAME.crt, NAME.key (default DIR/pki)\n"
	    "  --http               address for /livez /readyz /metrics (plain HTTP)\n"
	    "  --snapshot-threshold entries between snapshots (default 8192)\n"
	    "  --snapshot-trailing  entries kept behind a snapshot (default 2048)\n"
	    "  --max-inflight       Raft entries in flight at once (group commit; default 4)\n"
	    "  --election-timeout   a follower that hears nothing from the leader for this\n"
	    "                       long (drawn from [T, 2T)) starts an election; the same on\n"
	    "                       every master (default 500ms, from 100ms to 60s)\n"
	    "  --heartbeat-interval how often the leader reaches every follower (default\n"
	    "                       50ms; at most a fifth of the election timeout)\n"
	    "  --scheduler-policy   predicates and priorities (YAML or JSON, OpenShift's\n"
	    "                       scheduler.json shape) instead of the default: region\n"
	    "                       affinity and zone anti-affinity on the basic predicates\n"
	    "  --cluster-cidr       pod addresses; each node gets a subnet of it\n"
	    "                       (default 10.128.0.0/14)\n"
	    "  --node-cidr-size     prefix length of a node's pod subnet (default 24)\n"
	    "  --node-grace         a node without heartbeats this long becomes\n"
	    "                       Ready=False (default 40s; agents send one every 10s)\n"
	    "  --pod-eviction-timeout\n"
	    "                       then, after this long, its pods are deleted (default 5m)\n");
}

/* A master's heap grows by hundreds of MiB under load (objects, Raft
 * entries, buffers). On 4 KiB pages every first touch is a page fault:
 * perf showed page faults under malloc and memmove at about a tenth of a
 * busy leader's CPU on these virtual machines, and aep-bench store went
 * from 34,000-40,000 to 45,000-52,000 writes/s with huge pages. glibc's
 * malloc asks for transparent huge pages (madvise) when the tunable
 * glibc.malloc.hugetlb=1 is set, which it reads only at process start. */
void aep_master_use_hugepages(char **argv)
{
	const char *off = getenv("AEP_MASTER_HUGEPAGES");
	const char *t = getenv("GLIBC_TUNABLES");
	char buf[1024];

	if ((off != NULL && strcmp(off, "off") == 0) ||
	    (t != NULL && strstr(t, "glibc.malloc.hugetlb") != NULL))
		return;
	if (t != NULL && t[0] != '\0')
		snprintf(buf, sizeof(buf), "%s:glibc.malloc.hugetlb=1", t);
	else
		snprintf(buf, sizeof(buf), "glibc.malloc.hugetlb=1");
	if (setenv("GLIBC_TUNABLES", buf, 1) != 0)
		return;
	execv("/proc/self/exe", argv);
	/* Not executed again (no /proc?): run as we are. */
	if (t != NULL)
		setenv("GLIBC_TUNABLES", t, 1);
	else
		unsetenv("GLIBC_TUNABLES");
}

/* A count flag through lib's aep_parse_uint; 0 keeps the default (NULL:
 * leave *@out as is). */
static int parse_count(const char *s, const char *flag, unsigned *out, struct aep_error *e)
{
	unsigned long long v;
	if (s == NULL)
		return 0;
	if (aep_parse_uint(s, flag, 0, 1000000000, &v, e) != 0)
		return e->code;
	*out = (unsigned)v;
	return 0;
}

/* "m1=127.0.0.1:7101,m2=..." into peers (pointing into @spec, modified). */
static int parse_cluster(char *spec, struct aep_raft_peer **out, unsigned *n, struct aep_error *e)
{
	unsigned cap = 1;
	for (const char *p = spec; *p; p++)
		cap += *p == ',';
	if (cap > 9)
		return aep_errorf(e, AEP_EINVALID, "--initial-cluster: at most 9 masters");
	struct aep_raft_peer *peers = aep_calloc(cap, sizeof(*peers));
	if (peers == NULL)
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	unsigned i = 0;
	char *save = NULL;
	for (char *tok = strtok_r(spec, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (eq == NULL || eq == tok || eq[1] == '\0') {
			aep_free(peers);
			return aep_errorf(e, AEP_EINVALID,
					  "--initial-cluster: \"%s\" is not NAME=HOST:PORT", tok);
		}
		*eq = '\0';
		struct aep_error ve = {0};
		if (aep_validate_dns1123_label(tok, strlen(tok), &ve) != 0) {
			aep_free(peers);
			return aep_errorf(e, AEP_EINVALID, "--initial-cluster: name \"%s\": %s",
					  tok, ve.msg);
		}
		struct sockaddr_storage ss;
		if (aep_addr_parse(eq + 1, &ss, &ve) != 0) {
			aep_free(peers);
			return aep_errorf(e, AEP_EINVALID, "--initial-cluster: %s: %s", tok,
					  ve.msg);
		}
		for (unsigned j = 0; j < i; j++) {
			if (strcmp(peers[j].name, tok) == 0) {
				aep_free(peers);
				return aep_errorf(e, AEP_EINVALID,
						  "--initial-cluster: \"%s\" appears twice", tok);
			}
		}
		peers[i].name = tok;
		peers[i].peer_addr = eq + 1;
		i++;
	}
	if (i == 0) {
		aep_free(peers);
		return aep_errorf(e, AEP_EINVALID, "--initial-cluster: no masters");
	}
	*out = peers;
	*n = i;
	return 0;
}

static void tick_cb(uv_timer_t *t)
{
	master__publish_metrics(t->data);
}

static void closed_noop(uv_handle_t *h)
{
	(void)h;
}

static void raft_closed(void *data)
{
	struct master *m = data;
	uv_close((uv_handle_t *)&m->tick, closed_noop);
	uv_close((uv_handle_t *)&m->sigint, closed_noop);
	uv_close((uv_handle_t *)&m->sigterm, closed_noop);
}

static void fwd_closed(void *data)
{
	(void)data;
}

static void rpc_closed(void *data)
{
	struct master *m = data;
	if (m->fwd != NULL) {
		aep_rpc_client_close(m->fwd, fwd_closed, NULL);
		m->fwd = NULL;
	}
	aep_raft_close(m->raft, raft_closed, m);
}

static void stop(struct master *m)
{
	if (m->stopping)
		return;
	m->stopping = true;
	fprintf(stderr, "aep master %s: stopping\n", m->name);
	master__retry_parked(m); /* answers them: shutting down */
	master__sched_stop(m);
	master__rc_stop(m);
	master__nodes_stop(m);
	uv_timer_stop(&m->tick);
	master__http_stop(m);
	aep_rpc_server_close(m->rpc, rpc_closed, m);
}

static void signal_cb(uv_signal_t *s, int signum)
{
	(void)signum;
	stop(s->data);
}

static int load_tls(struct master *m, struct aep_error *e)
{
	char ca[PATH_MAX], crt[PATH_MAX], key[PATH_MAX];
	snprintf(ca, sizeof(ca), "%s/ca.crt", m->pki);
	snprintf(crt, sizeof(crt), "%s/%s.crt", m->pki, m->name);
	snprintf(key, sizeof(key), "%s/%s.key", m->pki, m->name);
	if (aep_tls_server_new(ca, crt, key, &m->server_tls, e) != 0)
		return aep_error_prefix(e, "TLS server (%s)", crt);
	if (aep_tls_client_new(ca, crt, key, &m->client_tls, e) != 0)
		return aep_error_prefix(e, "TLS client (%s)", crt);
	return 0;
}

int aep_master_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"name", required_argument, NULL, 'n'},
	    {"dir", required_argument, NULL, 'd'},
	    {"listen", required_argument, NULL, 'l'},
	    {"advertise", required_argument, NULL, 'a'},
	    {"peer", required_argument, NULL, 'p'},
	    {"initial-cluster", required_argument, NULL, 'c'},
	    {"pki", required_argument, NULL, 'k'},
	    {"http", required_argument, NULL, 'h'},
	    {"snapshot-threshold", required_argument, NULL, 'T'},
	    {"snapshot-trailing", required_argument, NULL, 'R'},
	    {"max-inflight", required_argument, NULL, 'I'},
	    {"scheduler-policy", required_argument, NULL, 'S'},
	    {"cluster-cidr", required_argument, NULL, 'C'},
	    {"node-cidr-size", required_argument, NULL, 'Z'},
	    {"node-grace", required_argument, NULL, 'G'},
	    {"pod-eviction-timeout", required_argument, NULL, 'E'},
	    {"election-timeout", required_argument, NULL, 'L'},
	    {"heartbeat-interval", required_argument, NULL, 'H'},
	    {"help", no_argument, NULL, '?'},
	    {NULL, 0, NULL, 0},
	};
	struct master m;
	memset(&m, 0, sizeof(m));
	m.rand_off = sizeof(m.rand_pool);
	char *cluster = NULL;
	const char *policy = NULL;
	const char *cluster_cidr = "10.128.0.0/14", *node_cidr_size = "24";
	const char *node_grace = "40s", *pod_eviction = "5m";
	const char *election = "500ms", *heartbeat = "50ms";
	const char *threshold = NULL, *trailing = NULL, *inflight = NULL;
	char pki_default[PATH_MAX];
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n': m.name = optarg; break;
		case 'd': m.dir = optarg; break;
		case 'l': m.listen = optarg; break;
		case 'a': m.advertise = optarg; break;
		case 'p': m.peer = optarg; break;
		case 'c': cluster = optarg; break;
		case 'k': m.pki = optarg; break;
		case 'h': m.http = optarg; break;
		case 'T': threshold = optarg; break;
		case 'R': trailing = optarg; break;
		case 'I': inflight = optarg; break;
		case 'L': election = optarg; break;
		case 'H': heartbeat = optarg; break;
		case 'S': policy = optarg; break;
		case 'C': cluster_cidr = optarg; break;
		case 'Z': node_cidr_size = optarg; break;
		case 'G': node_grace = optarg; break;
		case 'E': pod_eviction = optarg; break;
		default: usage(stderr); return 2;
		}
	}
	if (m.name == NULL || m.dir == NULL || m.listen == NULL || m.peer == NULL ||
	    cluster == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (m.advertise == NULL)
		m.advertise = m.listen;
	if (m.pki == NULL) {
		snprintf(pki_default, sizeof(pki_default), "%s/pki", m.dir);
		m.pki = pki_default;
	}

	struct aep_error e = {0};
	int rv;
	if (master__nodes_parse_cidr(&m, cluster_cidr, node_cidr_size, &e) != 0 ||
	    master__parse_duration(node_grace, "--node-grace", &m.node_grace_ms, &e) != 0 ||
	    master__parse_duration(pod_eviction, "--pod-eviction-timeout", &m.pod_eviction_ms,
				   &e) != 0 ||
	    aep_parse_duration(election, "--election-timeout", 100, 60000, &m.election_timeout_ms,
			       &e) != 0 ||
	    aep_parse_duration(heartbeat, "--heartbeat-interval", 1, 60000, &m.heartbeat_ms, &e) !=
		0 ||
	    parse_count(threshold, "--snapshot-threshold", &m.snapshot_threshold, &e) != 0 ||
	    parse_count(trailing, "--snapshot-trailing", &m.snapshot_trailing, &e) != 0 ||
	    parse_count(inflight, "--max-inflight", &m.max_inflight, &e) != 0) {
		fprintf(stderr, "aep master: %s\n", e.msg);
		return 2;
	}
	if (m.heartbeat_ms * 5 > m.election_timeout_ms) {
		fprintf(stderr,
			"aep master: --heartbeat-interval %s is more than a fifth of "
			"--election-timeout %s\n",
			heartbeat, election);
		return 2;
	}
	char *cluster_copy = aep_strdup(cluster);
	if (cluster_copy == NULL || parse_cluster(cluster_copy, &m.peers, &m.npeers, &e) != 0) {
		fprintf(stderr, "aep master: %s\n", e.msg[0] ? e.msg : "out of memory");
		aep_free(cluster_copy);
		return 2;
	}
	bool found = false;
	for (unsigned i = 0; i < m.npeers; i++)
		found |= strcmp(m.peers[i].name, m.name) == 0;
	if (!found) {
		fprintf(stderr, "aep master: --name %s is not in --initial-cluster\n", m.name);
		rv = 2;
		goto err_after_peers;
	}
	if (policy != NULL && master__sched_load_policy(&m, policy, &e) != 0) {
		fprintf(stderr, "aep master: --scheduler-policy %s\n", e.msg);
		rv = 2;
		goto err_after_peers;
	}
	signal(SIGPIPE, SIG_IGN);
	/* Raft entries and connection buffers of a few hundred KiB come and go
	 * thousands of times a second: keep them on the heap rather than
	 * mapping and unmapping pages for each. */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	if (mkdir(m.dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "aep master: mkdir %s: %s\n", m.dir, strerror(errno));
		rv = 1;
		goto err_after_peers;
	}
	if (pthread_mutex_init(&m.metrics.lock, NULL) != 0) {
		rv = 1;
		goto err_after_peers;
	}
	m.loop = uv_default_loop();

	if (load_tls(&m, &e) != 0) {
		fprintf(stderr, "aep master %s: %s\n", m.name, e.msg);
		rv = 1;
		goto err_after_mutex;
	}
	if (aep_store_new(NULL, &m.store) != 0) {
		fprintf(stderr, "aep master %s: out of memory\n", m.name);
		rv = 1;
		goto err_after_tls;
	}
	struct aep_raft_config rc = {
	    .name = m.name,
	    .dir = m.dir,
	    .peers = m.peers,
	    .npeers = m.npeers,
	    .store = m.store,
	    .snapshot_threshold = m.snapshot_threshold,
	    .snapshot_trailing = m.snapshot_trailing,
	    .max_inflight = m.max_inflight,
	    .election_timeout_ms = (unsigned)m.election_timeout_ms,
	    .heartbeat_timeout_ms = (unsigned)m.heartbeat_ms,
	    .on_leadership = master__leadership,
	    .on_applied = master__applied,
	    .data = &m,
	};
	if (aep_raft_start(m.loop, &rc, &m.raft, &e) != 0) {
		fprintf(stderr, "aep master %s: raft: %s\n", m.name, e.msg);
		rv = 1;
		goto err_after_store;
	}
	if (aep_rpc_server_start(m.loop, m.listen, m.server_tls, &aep_mp_default_limits,
				 &master__rpc_handler, &m, &m.rpc, &e) != 0) {
		fprintf(stderr, "aep master %s: listen %s: %s\n", m.name, m.listen, e.msg);
		/* Raft is running on the loop: close it properly. */
		m.stopping = true;
		aep_raft_close(m.raft, NULL, NULL);
		uv_run(m.loop, UV_RUN_DEFAULT);
		rv = 1;
		goto err_after_store;
	}
	if (m.http != NULL && master__http_start(&m, &e) != 0) {
		fprintf(stderr, "aep master %s: http %s: %s\n", m.name, m.http, e.msg);
		m.exit_code = 1;
		stop(&m);
		uv_run(m.loop, UV_RUN_DEFAULT);
		rv = 1;
		goto err_after_store;
	}
	uv_timer_init(m.loop, &m.tick);
	m.tick.data = &m;
	uv_timer_start(&m.tick, tick_cb, 100, 100);
	uv_signal_init(m.loop, &m.sigint);
	uv_signal_init(m.loop, &m.sigterm);
	m.sigint.data = &m;
	m.sigterm.data = &m;
	uv_signal_start(&m.sigint, signal_cb, SIGINT);
	uv_signal_start(&m.sigterm, signal_cb, SIGTERM);
	fprintf(stderr, "aep master %s: serving API on %s, raft on %s%s%s\n", m.name, m.listen,
		m.peer, m.http ? ", http on " : "", m.http ? m.http : "");

	uv_run(m.loop, UV_RUN_DEFAULT);
	rv = m.exit_code;
err_after_store:
	aep_store_free(m.store);
err_after_tls:
	aep_tls_free(m.server_tls);
	aep_tls_free(m.client_tls);
	aep_free(m.fwd_addr);
	uv_loop_close(m.loop);
err_after_mutex:
	pthread_mutex_destroy(&m.metrics.lock);
err_after_peers:
	aep_buf_free(&m.sched_policy_doc);
	aep_free(m.peers);
	aep_free(cluster_copy);
	return rv;
}
