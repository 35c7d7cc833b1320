/* aep-bench sched: scheduling throughput of a master cluster.
 *
 * Happy path: start --masters masters on 127.0.0.1; register --nodes Node
 * objects (no agents) labelled region=rI, zone=rI-zJ, each Ready and with
 * room for its share of the pods twice over; open a watch on Pods on a
 * follower (the leader stays free for its controllers); then create --rcs
 * ReplicationControllers, each pinned to one region by its template's
 * nodeSelector, with replicas adding up to --pods. The leader's
 * replication manager creates the pods (named <rc>-<5 random characters>)
 * and its scheduler binds each (sets spec.nodeName through Raft). The
 * watch maps each pod of an RC (label app=rc-NNN) to a record of that RC
 * when it first reports it, records when it was added and when its first
 * binding is seen, and whether the binding ever changes; a pod beyond its
 * RC's replicas, or any deletion, is a violation (the manager over-created).
 * When every pod is bound, the harness waits until each RC's
 * status.replicas shows its replicas and the watch has reported a fence
 * pod created last (so no late addition or deletion is missed), then lists
 * pods and nodes from the leader and checks: capacity, region, zone
 * spread, double binding, lost and extra pods, each RC's count.
 *
 * --direct-pods keeps the harness's own pods: it creates one Service per
 * RC (the group the scheduler spreads over the zones), then the pods
 * rc-NNN-XXXXX pipelined over --conns connections to the leader, --window
 * calls in flight, and the RCs only once every pod create is answered: the
 * manager finds each RC complete and must add and delete nothing.
 *
 * Failure modes: a create that fails, a watch that ends, or a deadline
 * (--timeout) reached before every pod is bound fail the run with what is
 * missing; each check that fails adds to violations and prints its first
 * examples. The exit status is non-zero in either case. The masters and
 * their directory are removed at exit, also on failure and on SIGINT or
 * SIGTERM (bench_cluster_start's handler).
 *
 * --self-bind (with --direct-pods) binds each pod from here (an update
 * setting spec.nodeName, round-robin over the zones of the pod's region)
 * for testing the harness without a scheduler; --self-bind-bad overfills
 * one node (which also skews the zone spread), puts one pod outside its
 * region and re-binds another, to show that the checks catch it.
 *
 * --kill-leader (at --kill-leader-at of the pods seen bound, default half)
 * kills the leader with SIGKILL in the middle of the placement and checks
 * that the next leader's scheduler (and replication manager) carries on;
 * without --direct-pods no pod create is the harness's, so nothing is sent
 * again unless an RC create was in flight. The connections list
 * every master, so a call after the crash reconnects to a survivor and
 * follows its NotLeader redirect; creates answered Unavailable, NotLeader
 * or Timeout (their outcome is unknown) are sent again after
 * SCHED_RETRY_MS, and AlreadyExists on a re-sent create counts as created
 * (the first attempt committed). The watch resumes from its last revision
 * on any running master if its connection drops. Status probes of the
 * survivors, every SCHED_TICK_MS, tell when a new leader is up; the first
 * binding seen after that ends the failover. The checks are the same. */
#include "bench/bench.h"
#include "cli/cli.h"
#include "state/state.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCHED_MAX_NODES	   1000000u
#define SCHED_MAX_PODS	   10000000u
#define SCHED_MAX_RCS	   100000u
#define SCHED_MAX_REGIONS  1000u
#define SCHED_MAX_ZONES	   1000u
#define SCHED_EXAMPLES	   5	 /* examples printed per failed check */
#define SCHED_TICK_MS	   20	 /* --kill-leader: re-sends and status probes */
#define SCHED_RETRY_MS	   100	 /* --kill-leader: delay before a call is sent again */
#define SCHED_MAX_ATTEMPTS 3000	 /* --kill-leader: sends of one create, 5 min at least */
#define SCHED_SETTLE_MS	   30000 /* for the RCs' status and the fence after the bindings */
#define SCHED_FENCE	   "sched-bench-fence" /* a pod created last: the watch is caught up */
#define GI		   ((int64_t)1 << 30)
#define MI		   ((int64_t)1 << 20)
#define KI		   ((int64_t)1 << 10)

enum self_bind { BIND_SCHEDULER, BIND_SELF, BIND_SELF_BAD };

struct sched_opts {
	unsigned masters, regions, zones, rcs, conns, window, base, timeout_s;
	uint64_t nodes, pods;
	int64_t cpu_milli, mem_milli; /* per pod, milli-units */
	char cpu[32], mem[32];	      /* per pod, as given */
	enum self_bind bind;
	bool direct_pods; /* the harness creates the pods, the RCs after them */
	bool kill_leader;
	double kill_at; /* fraction of the pods seen bound that triggers the kill */
	char aep[4096];
};

/* What the watch saw of one pod. Times are monotonic ns, 0 = not yet.
 * Pods of RC k own records rc_first(k).. (its replicas); with
 * --direct-pods record i is the pod the harness named rc-K-J, otherwise
 * the j-th pod of RC k that the watch reported (named by the manager). */
struct pod_rec {
	int64_t t_ack; /* create answered (--direct-pods), else ADDED seen */
	int64_t t_bind;
	const char *name; /* the manager's name (in the name map); NULL before */
	uint32_t node;	  /* 1 + index of the node last seen bound to; 0 = unbound */
	uint16_t binds;	  /* bindings seen: 1 is right, more is a violation */
	bool created;
	bool deleted;
};

/* Pod names the watch reported, mapped to their records; POD_EXTRA marks a
 * pod of one of our RCs that has no record (created beyond its replicas,
 * or not named by the harness with --direct-pods). Open addressing, kept
 * under 3/4 full; the names are owned by the map. */
#define POD_EXTRA UINT64_MAX

struct name_slot {
	char *name; /* NULL: empty */
	uint64_t idx;
};

struct name_map {
	struct name_slot *slots;
	size_t cap, n; /* cap a power of two */
};

struct sched_bench;
struct call_ctx;

/* One batch of calls kept --window deep, spread over the connections. */
struct phase {
	const char *what;
	uint64_t total, next, done, inflight, errors;
	/* Pack item @i's create params into @buf. */
	void (*pack)(struct sched_bench *b, uint64_t i, struct aep_buf *buf);
	/* The answer to a call of item @cc->idx: true when it issued a
	 * follow-up call on @cc (the item is not done yet). */
	bool (*answered)(struct sched_bench *b, struct call_ctx *cc, const struct aep_rpc_reply *r);
};

struct call_ctx {
	struct sched_bench *b;
	uint64_t idx;
	int step;	       /* 0 create, 1 bind (self-bind), 2 re-bind (self-bind-bad) */
	unsigned attempts;     /* sends before the current one (--kill-leader) */
	int64_t retry_at;      /* monotonic ns: when to send again */
	struct call_ctx *next; /* the re-send queue */
};

/* A status probe of one master (--kill-leader): who is leader now. */
struct probe {
	struct sched_bench *b;
	unsigned i;
	struct aep_rpc_client *c;
	bool busy; /* a status call is open */
};

/* One per run: fields are grouped by purpose, not packed. */
/* NOLINTNEXTLINE(clang-analyzer-optin.performance.Padding) */
struct sched_bench {
	struct sched_opts o;
	uv_loop_t *loop;
	struct bench_cluster *cl;
	struct aep_rpc_client **conns;	/* to the leader */
	struct aep_rpc_client *watcher; /* to a follower */
	char follower_addr[64];
	uint64_t watch_id;
	uint64_t watch_rv; /* last revision seen on the watch */
	bool rewatching;
	struct phase ph;
	struct pod_rec *pods;
	struct name_map names;
	uint64_t *rc_seen; /* per RC: records given to its pods (not --direct-pods) */
	/* node capacity, as registered */
	int64_t node_cpu, node_mem, node_pods; /* milli-units */
	/* progress */
	uint64_t created, bound, rebinds, unbinds, deleted, foreign;
	uint64_t extra_added;  /* pods of our RCs with no record, seen ADDED */
	uint64_t gone_unbound; /* records deleted before a binding was seen */
	bool fence_seen;       /* the watch reported the fence pod */
	uint64_t unsettled;    /* RCs whose status never showed their replicas */
	int64_t t_first_send, t_last_ack, t_first_bind, t_last_bind, t_start;
	uint64_t last_bound; /* at the previous progress line */
	bool failed;
	bool closing;	     /* answers now are cancellations: drop them */
	bool rebind_refused; /* --self-bind-bad: the master would not move pod 0 */
	bool pods_phase;
	uv_timer_t progress, deadline;
	/* self-bind */
	uint32_t *rc_cursor;   /* per RC: next zone */
	uint32_t *zone_cursor; /* per region*zones+zone: next node */
	uint64_t bad_load;     /* pods put on node 0 by --self-bind-bad */
	/* --kill-leader */
	uv_timer_t tick;
	struct probe probes[BENCH_MAX_MASTERS];
	struct call_ctx *retry_head, *retry_tail; /* creates to send again, by retry_at */
	uint64_t kill_at_bound;			  /* bindings seen that trigger the kill */
	bool leader_killed;
	unsigned killed;	       /* index of the master killed */
	int new_leader;		       /* index, -1 until a survivor says it leads */
	uint64_t at_bound;	       /* bindings seen when it was killed */
	uint64_t bound_before_elected; /* bindings seen after the kill, before a new leader */
	uint64_t resent, resent_exists, call_failures;
	int64_t t_kill, t_elected, t_failover;
	bool rewatch_due;
	int64_t rewatch_at;
};

/* The limits of our own clients: whole lists of pods and nodes in one
 * answer, watch events in large batches. */
static const struct aep_mp_limits big_limits = {
    .max_bytes = (size_t)1 << 31,
    .max_depth = 32,
    .max_len = 20000000,
    .max_str = 1 << 20,
    .max_items = 2000000000,
};

/* ---- naming and layout ------------------------------------------------------ */

/* Pods of RC k are replicas P/K, the first P%K RCs one more. */
static void pod_rc(const struct sched_bench *b, uint64_t idx, unsigned *k, uint64_t *j)
{
	uint64_t q = b->o.pods / b->o.rcs, rem = b->o.pods % b->o.rcs;
	if (idx < rem * (q + 1)) {
		*k = (unsigned)(idx / (q + 1));
		*j = idx % (q + 1);
	} else {
		uint64_t r = idx - rem * (q + 1);
		*k = (unsigned)(rem + r / q);
		*j = r % q;
	}
}

static uint64_t rc_first(const struct sched_bench *b, unsigned k)
{
	uint64_t q = b->o.pods / b->o.rcs, rem = b->o.pods % b->o.rcs;
	return (uint64_t)k * q + (k < rem ? k : rem);
}

static uint64_t rc_replicas(const struct sched_bench *b, unsigned k)
{
	return rc_first(b, k + 1) - rc_first(b, k);
}

/* Node i: region i % R, zone (i / R) % Z; named node-%05u from 1. */
static unsigned node_region(const struct sched_bench *b, uint64_t i)
{
	return (unsigned)(i % b->o.regions);
}

static unsigned node_zone(const struct sched_bench *b, uint64_t i)
{
	return (unsigned)((i / b->o.regions) % b->o.zones);
}

/* Parse decimal digits of @s[*pos..len); false when there are none. */
static bool parse_num(const char *s, size_t len, size_t *pos, uint64_t *out)
{
	size_t p = *pos;
	uint64_t v = 0;
	while (p < len && s[p] >= '0' && s[p] <= '9' && p - *pos < 12)
		v = v * 10 + (uint64_t)(s[p++] - '0');
	if (p == *pos)
		return false;
	*pos = p;
	*out = v;
	return true;
}

/* The index of our pod named rc-K-J, or false for any other name. */
static bool pod_index(const struct sched_bench *b, const msgpack_object *name, uint64_t *idx)
{
	if (name == NULL || name->type != MSGPACK_OBJECT_STR)
		return false;
	const char *s = name->via.str.ptr;
	size_t len = name->via.str.size, p = 3;
	uint64_t k, j;
	if (len < 3 || memcmp(s, "rc-", 3) != 0 || !parse_num(s, len, &p, &k) || p >= len ||
	    s[p++] != '-' || !parse_num(s, len, &p, &j) || p != len || k >= b->o.rcs ||
	    j >= rc_replicas(b, (unsigned)k))
		return false;
	*idx = rc_first(b, (unsigned)k) + j;
	return true;
}

static const msgpack_object *mp_get2(const msgpack_object *o, const char *a, const char *b)
{
	return aep_mp_map_get(aep_mp_map_get(o, a), b);
}

/* ---- pods named by the replication manager ------------------------------------- */

static uint64_t name_hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

/* Room for @want names without growing. Returns 0 or AEP_ENOMEM. */
static int name_map_init(struct name_map *m, uint64_t want)
{
	size_t cap = 1024;
	while (cap / 4 * 3 <= want)
		cap *= 2;
	m->slots = aep_calloc(cap, sizeof(*m->slots));
	m->cap = m->slots != NULL ? cap : 0;
	m->n = 0;
	return m->slots != NULL ? 0 : AEP_ENOMEM;
}

static void name_map_free(struct name_map *m)
{
	for (size_t i = 0; i < m->cap; i++)
		aep_free(m->slots[i].name);
	aep_free(m->slots);
	*m = (struct name_map){0};
}

/* The slot of @s[0..len) in @m: its entry, or the empty slot it would take. */
static struct name_slot *name_map_slot(const struct name_map *m, const char *s, size_t len)
{
	size_t i = (size_t)name_hash(s, len) & (m->cap - 1);
	while (m->slots[i].name != NULL &&
	       (strlen(m->slots[i].name) != len || memcmp(m->slots[i].name, s, len) != 0))
		i = (i + 1) & (m->cap - 1);
	return &m->slots[i];
}

static int name_map_grow(struct name_map *m)
{
	struct name_map bigger = {0};
	if (name_map_init(&bigger, m->cap) != 0)
		return AEP_ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		if (m->slots[i].name != NULL)
			*name_map_slot(&bigger, m->slots[i].name, strlen(m->slots[i].name)) =
			    m->slots[i];
	}
	bigger.n = m->n;
	aep_free(m->slots);
	*m = bigger;
	return 0;
}

/* Map @s[0..len) (not in @m yet) to @idx; *@name is the map's copy. */
static int name_map_put(struct name_map *m, const char *s, size_t len, uint64_t idx,
			const char **name)
{
	if ((m->n + 1) * 4 > m->cap * 3 && name_map_grow(m) != 0)
		return AEP_ENOMEM;
	struct name_slot *slot = name_map_slot(m, s, len);
	char *copy = aep_malloc(len + 1);
	if (copy == NULL)
		return AEP_ENOMEM;
	memcpy(copy, s, len);
	copy[len] = '\0';
	*slot = (struct name_slot){.name = copy, .idx = idx};
	m->n++;
	*name = copy;
	return 0;
}

/* The RC named by the label app=rc-NNN of @obj (exactly as pack_rc writes
 * it), or false for a pod of no RC of ours. */
static bool pod_app(const struct sched_bench *b, const msgpack_object *obj, unsigned *k)
{
	const msgpack_object *app = aep_mp_map_get(mp_get2(obj, "metadata", "labels"), "app");
	size_t p = 3;
	uint64_t v;
	char canon[32];
	if (app == NULL || app->type != MSGPACK_OBJECT_STR || app->via.str.size < 4 ||
	    memcmp(app->via.str.ptr, "rc-", 3) != 0 ||
	    !parse_num(app->via.str.ptr, app->via.str.size, &p, &v) || p != app->via.str.size ||
	    v >= b->o.rcs)
		return false;
	snprintf(canon, sizeof(canon), "rc-%03" PRIu64, v);
	if (strlen(canon) != app->via.str.size || memcmp(canon, app->via.str.ptr, p) != 0)
		return false;
	*k = (unsigned)v;
	return true;
}

/* The record of the pod named @name: its index, POD_EXTRA for a known pod
 * without one, or false when the watch has not reported it. */
static bool pod_lookup(const struct sched_bench *b, const msgpack_object *name, uint64_t *idx)
{
	if (name == NULL || name->type != MSGPACK_OBJECT_STR)
		return false;
	if (b->o.direct_pods && pod_index(b, name, idx))
		return true;
	const struct name_slot *slot =
	    name_map_slot(&b->names, name->via.str.ptr, name->via.str.size);
	if (slot->name == NULL)
		return false;
	*idx = slot->idx;
	return true;
}

/* A printable name of record @idx. */
static const char *rec_name(const struct sched_bench *b, uint64_t idx, char *buf, size_t size)
{
	unsigned k;
	uint64_t j;
	pod_rc(b, idx, &k, &j);
	if (b->o.direct_pods)
		snprintf(buf, size, "rc-%03u-%05" PRIu64, k, j);
	else if (b->pods[idx].name != NULL)
		snprintf(buf, size, "%s", b->pods[idx].name);
	else
		snprintf(buf, size, "rc-%03u's pod %" PRIu64 " (never seen on the watch)", k,
			 j + 1);
	return buf;
}

/* The index of node-N, or false. */
static bool node_index(const struct sched_bench *b, const msgpack_object *name, uint64_t *idx)
{
	if (name == NULL || name->type != MSGPACK_OBJECT_STR)
		return false;
	const char *s = name->via.str.ptr;
	size_t len = name->via.str.size, p = 5;
	uint64_t n;
	if (len < 5 || memcmp(s, "node-", 5) != 0 || !parse_num(s, len, &p, &n) || p != len ||
	    n == 0 || n > b->o.nodes)
		return false;
	*idx = n - 1;
	return true;
}

/* A quantity field of @map in milli-units; -1 when absent or malformed. */
static int64_t mp_qty(const msgpack_object *map, const char *key)
{
	const msgpack_object *v = aep_mp_map_get(map, key);
	struct aep_error e = {0};
	int64_t q;
	if (v == NULL)
		return -1;
	if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		return v->via.u64 <= (uint64_t)INT64_MAX / 1000 ? (int64_t)v->via.u64 * 1000 : -1;
	if (v->type != MSGPACK_OBJECT_STR ||
	    aep_quantity_parse(v->via.str.ptr, v->via.str.size, &q, &e) != 0)
		return -1;
	return q;
}

/* A quantity in milli-units written the way a manifest would. */
static void fmt_qty(char *out, size_t size, int64_t milli, bool bytes)
{
	if (!bytes) {
		if (milli % 1000 == 0)
			snprintf(out, size, "%" PRId64, milli / 1000);
		else
			snprintf(out, size, "%" PRId64 "m", milli);
		return;
	}
	int64_t v = (milli + 999) / 1000;
	if (v % GI == 0)
		snprintf(out, size, "%" PRId64 "Gi", v / GI);
	else if (v % MI == 0)
		snprintf(out, size, "%" PRId64 "Mi", v / MI);
	else if (v % KI == 0)
		snprintf(out, size, "%" PRId64 "Ki", v / KI);
	else
		snprintf(out, size, "%" PRId64, v);
}

/* ---- objects ----------------------------------------------------------------- */

static void pack_kv(msgpack_packer *pk, const char *k, const char *v)
{
	aep_pack_str(pk, k);
	aep_pack_str(pk, v);
}

static void pack_resources(msgpack_packer *pk, const char *cpu, const char *mem, const char *pods)
{
	msgpack_pack_map(pk, 3);
	pack_kv(pk, "cpu", cpu);
	pack_kv(pk, "memory", mem);
	pack_kv(pk, "pods", pods);
}

static void pack_node(struct sched_bench *b, uint64_t i, struct aep_buf *buf)
{
	char name[32], region[16], zone[32], ip[32], cpu[32], mem[32], pods[32];
	snprintf(name, sizeof(name), "node-%05" PRIu64, i + 1);
	snprintf(region, sizeof(region), "r%u", node_region(b, i));
	snprintf(zone, sizeof(zone), "r%u-z%u", node_region(b, i), node_zone(b, i));
	uint64_t a = i + 1;
	snprintf(ip, sizeof(ip), "10.%u.%u.%u", (unsigned)(a >> 16) & 255, (unsigned)(a >> 8) & 255,
		 (unsigned)a & 255);
	fmt_qty(cpu, sizeof(cpu), b->node_cpu, false);
	fmt_qty(mem, sizeof(mem), b->node_mem, true);
	fmt_qty(pods, sizeof(pods), b->node_pods, false);
	msgpack_packer pk;
	aep_packer_init(&pk, buf);
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "object");
	msgpack_pack_map(&pk, 3);
	pack_kv(&pk, "kind", "Node");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 2);
	pack_kv(&pk, "name", name);
	aep_pack_str(&pk, "labels");
	msgpack_pack_map(&pk, 2);
	pack_kv(&pk, "region", region);
	pack_kv(&pk, "zone", zone);
	aep_pack_str(&pk, "status");
	msgpack_pack_map(&pk, 4);
	aep_pack_str(&pk, "capacity");
	pack_resources(&pk, cpu, mem, pods);
	aep_pack_str(&pk, "allocatable");
	pack_resources(&pk, cpu, mem, pods);
	aep_pack_str(&pk, "conditions");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	pack_kv(&pk, "type", "Ready");
	pack_kv(&pk, "status", "True");
	aep_pack_str(&pk, "addresses");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	pack_kv(&pk, "type", "InternalIP");
	pack_kv(&pk, "address", ip);
}

/* The pod spec of RC @k, bound to @node when not NULL. */
static void pack_pod_spec(struct sched_bench *b, msgpack_packer *pk, unsigned k, const char *node)
{
	char region[16];
	snprintf(region, sizeof(region), "r%u", k % b->o.regions);
	msgpack_pack_map(pk, node != NULL ? 3 : 2);
	if (node != NULL)
		pack_kv(pk, "nodeName", node);
	aep_pack_str(pk, "nodeSelector");
	msgpack_pack_map(pk, 1);
	pack_kv(pk, "region", region);
	aep_pack_str(pk, "containers");
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 3);
	pack_kv(pk, "name", "c");
	pack_kv(pk, "image", "busybox");
	aep_pack_str(pk, "resources");
	msgpack_pack_map(pk, 1);
	aep_pack_str(pk, "requests");
	msgpack_pack_map(pk, 2);
	pack_kv(pk, "cpu", b->o.cpu);
	pack_kv(pk, "memory", b->o.mem);
}

static void pack_app(msgpack_packer *pk, const char *app)
{
	msgpack_pack_map(pk, 1);
	pack_kv(pk, "app", app);
}

static void pack_rc(struct sched_bench *b, uint64_t k, struct aep_buf *buf)
{
	char name[32];
	snprintf(name, sizeof(name), "rc-%03" PRIu64, k);
	msgpack_packer pk;
	aep_packer_init(&pk, buf);
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "object");
	msgpack_pack_map(&pk, 3);
	pack_kv(&pk, "kind", "ReplicationController");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 3);
	pack_kv(&pk, "name", name);
	pack_kv(&pk, "namespace", "default");
	aep_pack_str(&pk, "labels");
	pack_app(&pk, name);
	aep_pack_str(&pk, "spec");
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "replicas");
	msgpack_pack_uint64(&pk, rc_replicas(b, (unsigned)k));
	aep_pack_str(&pk, "selector");
	pack_app(&pk, name);
	aep_pack_str(&pk, "template");
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "labels");
	pack_app(&pk, name);
	aep_pack_str(&pk, "spec");
	pack_pod_spec(b, &pk, (unsigned)k, NULL);
}

/* --direct-pods: Service svc-NNN selecting RC k's pods. The scheduler
 * spreads the pods of each Service and RC over the zones; the RCs come
 * after the pods in this flow, so the Services make the groups. */
static void pack_svc(struct sched_bench *b, uint64_t k, struct aep_buf *buf)
{
	char name[32], app[32];
	(void)b;
	snprintf(name, sizeof(name), "svc-%03" PRIu64, k);
	snprintf(app, sizeof(app), "rc-%03" PRIu64, k);
	msgpack_packer pk;
	aep_packer_init(&pk, buf);
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "object");
	msgpack_pack_map(&pk, 3);
	pack_kv(&pk, "kind", "Service");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 2);
	pack_kv(&pk, "name", name);
	pack_kv(&pk, "namespace", "default");
	aep_pack_str(&pk, "spec");
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "selector");
	pack_app(&pk, app);
	aep_pack_str(&pk, "ports");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "port");
	msgpack_pack_int(&pk, 80);
}

/* Pod @idx as {object: ...}, bound to node index @node when >= 0. */
static void pack_pod_bound(struct sched_bench *b, uint64_t idx, int64_t node, struct aep_buf *buf)
{
	unsigned k;
	uint64_t j;
	pod_rc(b, idx, &k, &j);
	char name[48], app[32], nodename[32];
	snprintf(app, sizeof(app), "rc-%03u", k);
	snprintf(name, sizeof(name), "rc-%03u-%05" PRIu64, k, j);
	if (node >= 0)
		snprintf(nodename, sizeof(nodename), "node-%05" PRId64, node + 1);
	msgpack_packer pk;
	aep_packer_init(&pk, buf);
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "object");
	msgpack_pack_map(&pk, 3);
	pack_kv(&pk, "kind", "Pod");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 3);
	pack_kv(&pk, "name", name);
	pack_kv(&pk, "namespace", "default");
	aep_pack_str(&pk, "labels");
	pack_app(&pk, app);
	aep_pack_str(&pk, "spec");
	pack_pod_spec(b, &pk, k, node >= 0 ? nodename : NULL);
}

static void pack_pod(struct sched_bench *b, uint64_t idx, struct aep_buf *buf)
{
	pack_pod_bound(b, idx, -1, buf);
}

/* ---- pipelined calls ----------------------------------------------------------- */

static void check_finished(struct sched_bench *b);

static void call_done(void *data, const struct aep_rpc_reply *r);

/* Send @cc's next call: its create, or (steps 1, 2) its self-bind update.
 * Returns 0 or the client's error; on error @cc is still the caller's. */
static int send_call(struct sched_bench *b, struct call_ctx *cc, const char *method, int64_t node)
{
	struct aep_buf buf;
	aep_buf_init(&buf);
	if (cc->step == 0)
		b->ph.pack(b, cc->idx, &buf);
	else
		pack_pod_bound(b, cc->idx, node, &buf);
	if (buf.failed) {
		aep_buf_free(&buf);
		return AEP_ENOMEM;
	}
	int rv =
	    aep_rpc_call(b->conns[cc->idx % b->o.conns], method, buf.data, buf.len, call_done, cc);
	aep_buf_free(&buf);
	return rv;
}

static void fail(struct sched_bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct sched_bench *b, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "aep-bench sched: FAILED: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	b->failed = true;
	uv_stop(b->loop);
}

/* Keep the phase's window full. */
static void phase_fill(struct sched_bench *b)
{
	struct phase *ph = &b->ph;
	while (!b->failed && ph->next < ph->total && ph->inflight < b->o.window) {
		struct call_ctx *cc = aep_malloc(sizeof(*cc));
		if (cc == NULL) {
			fail(b, "%s: out of memory", ph->what);
			return;
		}
		*cc = (struct call_ctx){.b = b, .idx = ph->next, .step = 0};
		if (ph->next == 0 && b->pods_phase && b->t_first_send == 0)
			b->t_first_send = aep_now_monotonic_ns();
		int rv = send_call(b, cc, "create", -1);
		if (rv != 0) {
			aep_free(cc);
			fail(b, "%s: cannot issue a call: %s", ph->what, aep_err_code(rv));
			return;
		}
		ph->next++;
		ph->inflight++;
	}
}

/* A create sent again (--kill-leader) that finds its pod: an earlier
 * attempt committed, its answer lost with the connection. */
static bool created_again(const struct call_ctx *cc, const struct aep_rpc_reply *r)
{
	return cc->step == 0 && cc->attempts > 0 && r->code == AEP_EEXISTS;
}

/* --kill-leader: a create (of a pod, or of an RC) whose outcome is unknown
 * (its connection broke, or no master knew a leader yet) joins the re-send
 * queue. True when @cc was queued; it stays in the phase's window
 * meanwhile. */
static bool retry_later(struct sched_bench *b, struct call_ctx *cc, const struct aep_rpc_reply *r)
{
	if (!b->o.kill_leader || !b->pods_phase || cc->step != 0 ||
	    cc->attempts + 1 >= SCHED_MAX_ATTEMPTS ||
	    (r->code != AEP_EUNAVAILABLE && r->code != AEP_ENOTLEADER && r->code != AEP_ETIMEOUT))
		return false;
	if (b->call_failures++ < SCHED_EXAMPLES)
		fprintf(stderr, "aep-bench sched: %s %" PRIu64 ": %s: %.*s; sending it again\n",
			b->ph.what, cc->idx, aep_err_code(r->code), (int)r->msg_len,
			r->msg ? r->msg : "");
	cc->retry_at = aep_now_monotonic_ns() + (int64_t)SCHED_RETRY_MS * 1000000;
	cc->next = NULL;
	if (b->retry_tail != NULL)
		b->retry_tail->next = cc;
	else
		b->retry_head = cc;
	b->retry_tail = cc;
	return true;
}

static void call_done(void *data, const struct aep_rpc_reply *r)
{
	struct call_ctx *cc = data;
	struct sched_bench *b = cc->b;
	struct phase *ph = &b->ph;
	if (b->closing) {
		aep_free(cc);
		return;
	}
	if (retry_later(b, cc, r))
		return;
	if (r->code != 0 && cc->step == 2) {
		/* A master that refuses to move a bound pod is right to. */
		fprintf(stderr,
			"aep-bench sched: the re-binding of pod %" PRIu64
			" was refused: %s: %.*s\n",
			cc->idx, aep_err_code(r->code), (int)r->msg_len, r->msg ? r->msg : "");
		b->rebind_refused = true;
	} else if (r->code != 0 && !created_again(cc, r) && ph->errors++ < SCHED_EXAMPLES)
		fprintf(stderr, "aep-bench sched: %s %" PRIu64 " (step %d): %s: %.*s\n", ph->what,
			cc->idx, cc->step, aep_err_code(r->code), (int)r->msg_len,
			r->msg ? r->msg : "");
	if (ph->answered != NULL && ph->answered(b, cc, r))
		return;
	aep_free(cc);
	ph->inflight--;
	ph->done++;
	if (b->failed)
		return;
	phase_fill(b);
	if (b->pods_phase)
		check_finished(b);
	else if (ph->done == ph->total)
		uv_stop(b->loop);
}

/* Run one phase to its end (or a failure); returns its error count. */
static uint64_t run_phase(struct sched_bench *b, const char *what, uint64_t total,
			  void (*pack)(struct sched_bench *, uint64_t, struct aep_buf *))
{
	b->ph = (struct phase){.what = what, .total = total, .pack = pack};
	if (total == 0)
		return 0;
	phase_fill(b);
	if (!b->failed)
		uv_run(b->loop, UV_RUN_DEFAULT);
	return b->ph.errors;
}

/* ---- self-bind (testing the harness without a scheduler) ---------------------- */

/* Nodes of (region r, zone z) are r + R*(z + Z*j), j = 0, 1, ... */
static uint64_t zone_size(const struct sched_bench *b, unsigned r, unsigned z)
{
	uint64_t first = r + (uint64_t)b->o.regions * z;
	uint64_t step = (uint64_t)b->o.regions * b->o.zones;
	return first < b->o.nodes ? (b->o.nodes - first + step - 1) / step : 0;
}

/* The node for pod @idx: round-robin over the zones of its RC's region,
 * then over the nodes of that zone. -1 when the region has no nodes. With
 * --self-bind-bad, pod 1 goes to region 1 and node 0 first takes one pod
 * more than it has room for. */
static int64_t self_pick(struct sched_bench *b, uint64_t idx)
{
	unsigned k, r;
	uint64_t j;
	pod_rc(b, idx, &k, &j);
	r = k % b->o.regions;
	if (b->o.bind == BIND_SELF_BAD && idx == 1 && b->o.regions > 1 && b->o.nodes > 1)
		return 1; /* region 1, not its RC's */
	if (b->o.bind == BIND_SELF_BAD && r == 0 && b->bad_load <= (uint64_t)b->node_pods / 1000) {
		b->bad_load++;
		return 0;
	}
	for (unsigned t = 0; t < b->o.zones; t++) {
		unsigned z = b->rc_cursor[k]++ % b->o.zones;
		uint64_t n = zone_size(b, r, z);
		if (n == 0)
			continue;
		uint64_t jj = b->zone_cursor[r * b->o.zones + z]++ % n;
		return r + (int64_t)b->o.regions * (z + (int64_t)b->o.zones * (int64_t)jj);
	}
	return -1;
}

/* The pods phase's answers: record the ack; in self-bind mode follow the
 * create with an update that binds the pod (and, for --self-bind-bad, pod
 * 0 with a second one that moves it). */
static bool pod_answered(struct sched_bench *b, struct call_ctx *cc, const struct aep_rpc_reply *r)
{
	int64_t now = aep_now_monotonic_ns(), node;
	if (cc->step == 0) {
		bool ok = r->code == 0 || created_again(cc, r);
		if (ok) {
			b->pods[cc->idx].t_ack = now;
			b->pods[cc->idx].created = true;
			b->created++;
			b->t_last_ack = now;
			if (r->code != 0)
				b->resent_exists++;
		}
		if (!ok || b->o.bind == BIND_SCHEDULER)
			return false;
		node = self_pick(b, cc->idx);
	} else if (cc->step == 1 && r->code == 0 && b->o.bind == BIND_SELF_BAD && cc->idx == 0) {
		node = b->o.regions; /* region 0, the next zone */
	} else {
		return false;
	}
	if (node < 0 || (uint64_t)node >= b->o.nodes)
		return false;
	cc->step++;
	if (send_call(b, cc, "update", node) != 0) {
		b->ph.errors++;
		return false;
	}
	return true;
}

/* ---- --kill-leader ------------------------------------------------------------- */

/* SIGKILL the master the pod connections write to: the leader (they follow
 * NotLeader redirects, so also when leadership moved before). */
static void kill_leader(struct sched_bench *b)
{
	struct bench_cluster *cl = b->cl;
	unsigned li = cl->leader;
	const char *srv = aep_rpc_client_server(b->conns[0]);
	for (unsigned i = 0; srv != NULL && i < cl->n; i++) {
		char addr[32];
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", cl->base + i);
		if (strcmp(addr, srv) == 0)
			li = i;
	}
	pid_t pid = cl->pids[li];
	b->t_kill = aep_now_monotonic_ns();
	b->at_bound = b->bound;
	if (bench_cluster_kill(cl, li) != 0) {
		fail(b, "cannot kill the leader m%u (pid %d)", li + 1, (int)pid);
		return;
	}
	b->leader_killed = true;
	b->killed = li;
	fprintf(stderr,
		"aep-bench sched: killed the leader m%u (pid %d) with SIGKILL: %" PRIu64
		" pods bound, %" PRIu64 " created, %" PRIu64 " %s calls in flight\n",
		li + 1, (int)pid, b->bound, b->created, b->ph.inflight, b->ph.what);
}

static void probe_done(void *data, const struct aep_rpc_reply *r)
{
	struct probe *pr = data;
	struct sched_bench *b = pr->b;
	pr->busy = false;
	if (b->closing || r->code != 0 || r->result == NULL || b->t_elected != 0 ||
	    pr->i == b->killed)
		return;
	const msgpack_object *lead = aep_mp_map_get(r->result, "leader");
	if (lead == NULL || lead->type != MSGPACK_OBJECT_BOOLEAN || !lead->via.boolean)
		return;
	b->t_elected = aep_now_monotonic_ns();
	b->new_leader = (int)pr->i;
	fprintf(stderr,
		"aep-bench sched: m%u reports itself leader %.0f ms after the kill (%" PRIu64
		" bindings seen in between)\n",
		pr->i + 1, (double)(b->t_elected - b->t_kill) / 1e6, b->bound_before_elected);
}

/* Ask every surviving master, one status call each at a time, whether it
 * leads. */
static void probe_all(struct sched_bench *b)
{
	for (unsigned i = 0; i < b->cl->n; i++) {
		struct probe *pr = &b->probes[i];
		if (pr->c == NULL || pr->busy || i == b->killed)
			continue;
		pr->busy = true;
		if (aep_rpc_call(pr->c, "status", "\x80", 1, probe_done, pr) != 0)
			pr->busy = false;
	}
}

/* Send the queued creates that are due. */
static void resend_due(struct sched_bench *b, int64_t now)
{
	while (!b->failed && b->retry_head != NULL && b->retry_head->retry_at <= now) {
		struct call_ctx *cc = b->retry_head;
		b->retry_head = cc->next;
		if (b->retry_head == NULL)
			b->retry_tail = NULL;
		cc->next = NULL;
		cc->attempts++;
		b->resent++;
		int rv = send_call(b, cc, "create", -1);
		if (rv != 0) {
			aep_free(cc);
			fail(b, "%s: cannot send it again: %s", b->ph.what, aep_err_code(rv));
			return;
		}
	}
}

static void rewatch(struct sched_bench *b);

static void tick_cb(uv_timer_t *t)
{
	struct sched_bench *b = t->data;
	int64_t now = aep_now_monotonic_ns();
	resend_due(b, now);
	if (!b->failed && b->rewatch_due && now >= b->rewatch_at)
		rewatch(b);
	if (!b->failed && b->leader_killed && b->t_elected == 0)
		probe_all(b);
}

/* ---- the watch ------------------------------------------------------------------ */

static void on_event(struct sched_bench *b, const msgpack_object *ev, int64_t now)
{
	const msgpack_object *id = aep_mp_map_get(ev, "watch");
	const msgpack_object *type = aep_mp_map_get(ev, "type");
	const msgpack_object *obj = aep_mp_map_get(ev, "object");
	if (id == NULL || id->type != MSGPACK_OBJECT_POSITIVE_INTEGER || id->via.u64 != b->watch_id)
		return;
	if (aep_mp_str_eq(type, "ERROR")) {
		const msgpack_object *msg = aep_mp_map_get(obj, "message");
		fail(b, "the watch on %s ended: %.*s", b->follower_addr,
		     msg && msg->type == MSGPACK_OBJECT_STR ? (int)msg->via.str.size : 0,
		     msg && msg->type == MSGPACK_OBJECT_STR ? msg->via.str.ptr : "");
		return;
	}
	const msgpack_object *rvo = mp_get2(obj, "metadata", "resourceVersion");
	if (rvo != NULL && rvo->type == MSGPACK_OBJECT_STR && rvo->via.str.size < 24) {
		char tmp[24];
		memcpy(tmp, rvo->via.str.ptr, rvo->via.str.size);
		tmp[rvo->via.str.size] = '\0';
		uint64_t rv = strtoull(tmp, NULL, 10);
		if (rv > b->watch_rv)
			b->watch_rv = rv;
	}
	const msgpack_object *name = mp_get2(obj, "metadata", "name");
	bool deleted = aep_mp_str_eq(type, "DELETED");
	uint64_t idx, node;
	unsigned k;
	if (aep_mp_str_eq(name, SCHED_FENCE)) {
		b->fence_seen = true;
		return;
	}
	if (!pod_app(b, obj, &k)) {
		b->foreign++;
		return;
	}
	bool known = pod_lookup(b, name, &idx);
	if (!known && deleted) {
		idx = POD_EXTRA; /* gone before the watch saw it otherwise */
	} else if (!known) {
		/* A pod of RC k seen for the first time: the next record of
		 * k while it has some left, else an extra pod. */
		idx = !b->o.direct_pods && b->rc_seen[k] < rc_replicas(b, k)
			  ? rc_first(b, k) + b->rc_seen[k]
			  : POD_EXTRA;
		const char *copy = NULL;
		if (name == NULL || name->type != MSGPACK_OBJECT_STR ||
		    name_map_put(&b->names, name->via.str.ptr, name->via.str.size, idx, &copy) !=
			0) {
			fail(b, "the watch: a pod of rc-%03u without a name, or out of memory", k);
			return;
		}
		if (idx == POD_EXTRA) {
			if (b->extra_added++ < SCHED_EXAMPLES)
				fprintf(stderr,
					"aep-bench sched: extra pod %s of rc-%03u (%" PRIu64
					" replicas) seen on the watch\n",
					copy, k, rc_replicas(b, k));
		} else {
			b->rc_seen[k]++;
			b->pods[idx].name = copy;
			b->pods[idx].t_ack = now;
			b->pods[idx].created = true;
			b->created++;
			b->t_last_ack = now;
		}
	}
	if (deleted && b->deleted++ < SCHED_EXAMPLES)
		fprintf(stderr, "aep-bench sched: pod %.*s of rc-%03u deleted\n",
			name && name->type == MSGPACK_OBJECT_STR ? (int)name->via.str.size : 0,
			name && name->type == MSGPACK_OBJECT_STR ? name->via.str.ptr : "", k);
	if (idx == POD_EXTRA)
		return;
	struct pod_rec *p = &b->pods[idx];
	if (deleted) {
		if (!p->deleted && p->node == 0)
			b->gone_unbound++;
		p->deleted = true;
		return;
	}
	const msgpack_object *nn = mp_get2(obj, "spec", "nodeName");
	if (nn == NULL || nn->type != MSGPACK_OBJECT_STR || nn->via.str.size == 0) {
		if (p->node != 0) {
			p->node = 0;
			b->unbinds++;
		}
		return;
	}
	if (!node_index(b, nn, &node)) {
		if (b->failed)
			return;
		fail(b, "pod %" PRIu64 " bound to an unknown node %.*s", idx, (int)nn->via.str.size,
		     nn->via.str.ptr);
		return;
	}
	if (p->node == node + 1)
		return; /* another change of a bound pod */
	if (p->binds < UINT16_MAX)
		p->binds++;
	p->node = (uint32_t)(node + 1);
	if (p->binds > 1) {
		b->rebinds++;
		return;
	}
	p->t_bind = now;
	b->bound++;
	if (b->t_first_bind == 0)
		b->t_first_bind = now;
	b->t_last_bind = now;
	if (b->leader_killed && b->t_failover == 0) {
		/* Nothing commits without a leader: bindings seen before a
		 * survivor reports itself leader were committed before the
		 * kill, or by the new leader in the few ms before its report
		 * (the probes' granularity, SCHED_TICK_MS, plus a round trip). */
		if (b->t_elected != 0)
			b->t_failover = now;
		else
			b->bound_before_elected++;
	}
	if (b->o.kill_leader && !b->leader_killed && b->bound >= b->kill_at_bound)
		kill_leader(b);
}

static void watch_notify(void *data, const char *method, size_t method_len,
			 const msgpack_object *params)
{
	struct sched_bench *b = data;
	if (method_len != 5 || memcmp(method, "event", 5) != 0 || params == NULL ||
	    params->type != MSGPACK_OBJECT_ARRAY)
		return;
	int64_t now = aep_now_monotonic_ns();
	for (uint32_t i = 0; i < params->via.array.size && !b->failed; i++)
		on_event(b, &params->via.array.ptr[i], now);
	if (b->pods_phase && !b->failed)
		check_finished(b);
}

static int pack_watch(struct sched_bench *b, struct aep_buf *buf)
{
	char rv[24];
	msgpack_packer pk;
	snprintf(rv, sizeof(rv), "%" PRIu64, b->watch_rv);
	aep_packer_init(&pk, buf);
	msgpack_pack_map(&pk, 3);
	pack_kv(&pk, "kind", "Pod");
	pack_kv(&pk, "namespace", "default");
	pack_kv(&pk, "resourceVersion", rv);
	return buf->failed ? AEP_ENOMEM : 0;
}

static void rewatch_done(void *data, const struct aep_rpc_reply *r)
{
	struct sched_bench *b = data;
	b->rewatching = false;
	if (b->failed || b->closing)
		return;
	const msgpack_object *id = r->code == 0 ? aep_mp_map_get(r->result, "watch") : NULL;
	if (id == NULL || id->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		if (b->o.kill_leader && (r->code == AEP_EUNAVAILABLE || r->code == AEP_ENOTLEADER ||
					 r->code == AEP_ETIMEOUT)) {
			/* No master answered this round: the tick tries again. */
			fprintf(stderr,
				"aep-bench sched: re-watching pods from %" PRIu64
				": %s: %.*s; trying again\n",
				b->watch_rv, aep_err_code(r->code), (int)r->msg_len,
				r->msg ? r->msg : "");
			b->rewatch_due = true;
			b->rewatch_at = aep_now_monotonic_ns() + (int64_t)SCHED_RETRY_MS * 1000000;
			return;
		}
		fail(b, "re-watching pods on %s from %" PRIu64 ": %s: %.*s", b->follower_addr,
		     b->watch_rv, aep_err_code(r->code), (int)r->msg_len, r->msg ? r->msg : "");
		return;
	}
	b->watch_id = id->via.u64;
	const char *srv = aep_rpc_client_server(b->watcher);
	if (srv != NULL)
		snprintf(b->follower_addr, sizeof(b->follower_addr), "%s", srv);
	fprintf(stderr, "aep-bench sched: watch resumed on %s from revision %" PRIu64 "\n",
		b->follower_addr, b->watch_rv);
}

/* Watch again from the last revision seen, on whichever master the watch
 * client reaches (it tries each in turn). */
static void rewatch(struct sched_bench *b)
{
	b->rewatch_due = false;
	b->rewatching = true;
	struct aep_buf buf;
	aep_buf_init(&buf);
	int rv = pack_watch(b, &buf);
	if (rv == 0)
		rv = aep_rpc_call(b->watcher, "watch", buf.data, buf.len, rewatch_done, b);
	aep_buf_free(&buf);
	if (rv != 0) {
		b->rewatching = false;
		fail(b, "re-watching pods: %s", aep_err_code(rv));
	}
}

/* The master dropped the connection (it died, or it cut off a watcher that
 * fell 256 MiB behind): watch again from the last revision seen. */
static void watch_disconnect(void *data)
{
	struct sched_bench *b = data;
	if (b->failed || b->closing || b->rewatching || b->rewatch_due || b->watch_id == 0)
		return;
	fprintf(stderr, "aep-bench sched: the watch connection to %s dropped; resuming\n",
		b->follower_addr);
	b->watch_id = 0;
	rewatch(b);
}

/* ---- progress, end, deadline ------------------------------------------------- */

/* The measured stage ends when every create of the phase is answered and
 * every pod is bound (or was deleted unbound, which the checks report).
 * With --direct-pods the pod creates' phase ends at its last answer: the
 * RCs' phase comes next. */
static void check_finished(struct sched_bench *b)
{
	struct phase *ph = &b->ph;
	if (ph->done < ph->total)
		return;
	if (b->o.direct_pods && ph->pack == pack_pod) {
		uv_stop(b->loop);
		return;
	}
	if ((!b->o.direct_pods && b->created < b->o.pods) ||
	    b->bound + b->gone_unbound < b->created)
		return;
	/* --self-bind-bad moves pod 0 once its first binding is done */
	if (b->o.bind == BIND_SELF_BAD && b->o.nodes > b->o.regions && b->rebinds == 0 &&
	    !b->rebind_refused)
		return;
	uv_stop(b->loop);
}

static void progress_cb(uv_timer_t *t)
{
	struct sched_bench *b = t->data;
	double s = (double)(aep_now_monotonic_ns() - b->t_start) / 1e9;
	fprintf(stderr,
		"aep-bench sched: %6.1f s: created %" PRIu64 "/%" PRIu64 "%s, bound %" PRIu64
		" (+%" PRIu64 "), %" PRIu64 " %s in flight",
		s, b->created, b->o.pods, b->o.direct_pods ? "" : " (seen)", b->bound,
		b->bound - b->last_bound, b->ph.inflight, b->ph.what);
	if (b->extra_added != 0 || b->deleted != 0)
		fprintf(stderr, ", %" PRIu64 " extra, %" PRIu64 " deleted", b->extra_added,
			b->deleted);
	if (b->o.kill_leader)
		fprintf(stderr, ", %" PRIu64 " sent again", b->resent);
	fputc('\n', stderr);
	b->last_bound = b->bound;
}

static void deadline_cb(uv_timer_t *t)
{
	struct sched_bench *b = t->data;
	uint64_t unbound = 0, shown = 0;
	for (uint64_t i = 0; i < b->o.pods; i++) {
		if (b->pods[i].node != 0)
			continue;
		unbound++;
		if (shown++ < SCHED_EXAMPLES) {
			char name[AEP_NAME_MAX + 64];
			fprintf(stderr, "aep-bench sched: not bound: %s%s\n",
				rec_name(b, i, name, sizeof(name)),
				!b->o.direct_pods || b->pods[i].created
				    ? ""
				    : " (create not acknowledged)");
		}
	}
	for (unsigned k = 0, short_rcs = 0; !b->o.direct_pods && k < b->o.rcs; k++) {
		if (b->rc_seen[k] < rc_replicas(b, k) && short_rcs++ < SCHED_EXAMPLES)
			fprintf(stderr,
				"aep-bench sched: rc-%03u: %" PRIu64 " of its %" PRIu64
				" pods seen on the watch\n",
				k, b->rc_seen[k], rc_replicas(b, k));
	}
	fail(b,
	     "timeout after %u s: %" PRIu64 " of %" PRIu64 " pods created, %" PRIu64
	     " bound, %" PRIu64 " unbound",
	     b->o.timeout_s, b->created, b->o.pods, b->bound, unbound);
}

/* ---- verification -------------------------------------------------------------- */

struct node_acct {
	int64_t cpu, mem, pods;	    /* allocatable, milli-units; -1 unknown */
	int64_t used_cpu, used_mem; /* milli-units */
	uint64_t used_pods;
	int region, zone; /* from the labels; -1 when not ours */
};

struct verify {
	struct sched_bench *b;
	struct node_acct *nodes;
	uint8_t *seen;	      /* per pod: listed */
	uint64_t *zone_count; /* per zone of one region, one RC at a time */
	bool *zone_used;      /* zones (region*Z+zone) that have nodes */
	uint64_t viol_capacity, viol_region, viol_spread, viol_twice, viol_lost, viol_extra,
	    viol_unbound, viol_disagree, viol_count;
	uint64_t max_skew;
};

#define EXAMPLE(v, counter, ...)                                          \
	do {                                                              \
		if ((v)->counter++ < SCHED_EXAMPLES)                      \
			fprintf(stderr, "aep-bench sched: " __VA_ARGS__); \
	} while (0)

/* List @kind (with @selector, may be NULL) from the leader and unpack it
 * into @up. Returns the items array, or NULL with a message printed. */
static const msgpack_object *list_items(struct sched_bench *b, const char *kind,
					const char *selector, msgpack_unpacked *up,
					struct aep_buf *res)
{
	struct aep_buf req;
	msgpack_packer pk;
	struct aep_error e = {0};
	aep_buf_init(&req);
	aep_packer_init(&pk, &req);
	msgpack_pack_map(&pk, selector != NULL ? 3 : 1);
	pack_kv(&pk, "kind", kind);
	if (selector != NULL) {
		pack_kv(&pk, "namespace", "default");
		pack_kv(&pk, "labelSelector", selector);
	}
	int rv = req.failed ? AEP_ENOMEM : 0;
	if (rv == 0)
		rv = aep_rpc_call_sync(b->loop, b->conns[0], "list", req.data, req.len, 300000, res,
				       &e);
	aep_buf_free(&req);
	if (rv != 0) {
		fprintf(stderr, "aep-bench sched: list %s %s: %s\n", kind, selector ? selector : "",
			e.msg);
		return NULL;
	}
	if (msgpack_unpack_next(up, res->data, res->len, NULL) != MSGPACK_UNPACK_SUCCESS) {
		fprintf(stderr, "aep-bench sched: list %s: cannot unpack the answer\n", kind);
		return NULL;
	}
	const msgpack_object *items = aep_mp_map_get(&up->data, "items");
	if (items == NULL || items->type != MSGPACK_OBJECT_ARRAY) {
		fprintf(stderr, "aep-bench sched: list %s: no items\n", kind);
		return NULL;
	}
	return items;
}

/* "rN" -> N, "rN-zM" -> M (for @zone); -1 otherwise. */
static int parse_label(const msgpack_object *v, bool zone)
{
	if (v == NULL || v->type != MSGPACK_OBJECT_STR)
		return -1;
	const char *s = v->via.str.ptr;
	size_t len = v->via.str.size, p = 1;
	uint64_t r, z;
	if (len < 2 || s[0] != 'r' || !parse_num(s, len, &p, &r))
		return -1;
	if (!zone)
		return p == len && r < SCHED_MAX_REGIONS ? (int)r : -1;
	if (p + 2 > len || s[p] != '-' || s[p + 1] != 'z')
		return -1;
	p += 2;
	if (!parse_num(s, len, &p, &z) || p != len || z >= SCHED_MAX_ZONES)
		return -1;
	return (int)z;
}

static int verify_nodes(struct verify *v)
{
	struct sched_bench *b = v->b;
	msgpack_unpacked up;
	struct aep_buf res;
	msgpack_unpacked_init(&up);
	aep_buf_init(&res);
	int rv = 1;
	const msgpack_object *items = list_items(b, "Node", NULL, &up, &res);
	if (items == NULL)
		goto out_free_answer;
	for (uint64_t i = 0; i < b->o.nodes; i++)
		v->nodes[i] =
		    (struct node_acct){.cpu = -1, .mem = -1, .pods = -1, .region = -1, .zone = -1};
	uint64_t ours = 0;
	for (uint32_t i = 0; i < items->via.array.size; i++) {
		const msgpack_object *o = &items->via.array.ptr[i];
		uint64_t n;
		if (!node_index(b, mp_get2(o, "metadata", "name"), &n))
			continue;
		struct node_acct *na = &v->nodes[n];
		const msgpack_object *labels = mp_get2(o, "metadata", "labels");
		const msgpack_object *alloc = mp_get2(o, "status", "allocatable");
		na->region = parse_label(aep_mp_map_get(labels, "region"), false);
		na->zone = parse_label(aep_mp_map_get(labels, "zone"), true);
		na->cpu = mp_qty(alloc, "cpu");
		na->mem = mp_qty(alloc, "memory");
		na->pods = mp_qty(alloc, "pods");
		if (na->region >= 0 && (unsigned)na->region < b->o.regions && na->zone >= 0 &&
		    (unsigned)na->zone < b->o.zones)
			v->zone_used[(unsigned)na->region * b->o.zones + (unsigned)na->zone] = true;
		ours++;
	}
	if (ours != b->o.nodes) {
		fprintf(stderr, "aep-bench sched: %" PRIu64 " of %" PRIu64 " nodes listed\n", ours,
			b->o.nodes);
		goto out_free_answer;
	}
	rv = 0;
out_free_answer:
	msgpack_unpacked_destroy(&up);
	aep_buf_free(&res);
	return rv;
}

/* The requests of one pod's containers, summed (milli-units). */
static void pod_requests(const msgpack_object *pod, int64_t *cpu, int64_t *mem)
{
	const msgpack_object *cs = mp_get2(pod, "spec", "containers");
	*cpu = *mem = 0;
	if (cs == NULL || cs->type != MSGPACK_OBJECT_ARRAY)
		return;
	for (uint32_t i = 0; i < cs->via.array.size; i++) {
		const msgpack_object *req = mp_get2(&cs->via.array.ptr[i], "resources", "requests");
		int64_t c = mp_qty(req, "cpu"), m = mp_qty(req, "memory");
		*cpu += c > 0 ? c : 0;
		*mem += m > 0 ? m : 0;
	}
}

static int verify_rc(struct verify *v, unsigned k)
{
	struct sched_bench *b = v->b;
	unsigned region = k % b->o.regions, Z = b->o.zones;
	char sel[48];
	snprintf(sel, sizeof(sel), "app=rc-%03u", k);
	msgpack_unpacked up;
	struct aep_buf res;
	msgpack_unpacked_init(&up);
	aep_buf_init(&res);
	int rv = 1;
	const msgpack_object *items = list_items(b, "Pod", sel, &up, &res);
	if (items == NULL)
		goto out_free_answer;
	memset(v->zone_count, 0, Z * sizeof(*v->zone_count));
	if (items->via.array.size != rc_replicas(b, k))
		EXAMPLE(v, viol_count, "rc-%03u has %" PRIu32 " pods, replicas %" PRIu64 "\n", k,
			items->via.array.size, rc_replicas(b, k));
	for (uint32_t i = 0; i < items->via.array.size; i++) {
		const msgpack_object *o = &items->via.array.ptr[i];
		const msgpack_object *name = mp_get2(o, "metadata", "name");
		const msgpack_object *nn = mp_get2(o, "spec", "nodeName");
		uint64_t idx, n;
		bool ours = pod_lookup(b, name, &idx) && idx != POD_EXTRA;
		int nl = name && name->type == MSGPACK_OBJECT_STR ? (int)name->via.str.size : 0;
		const char *ns = nl ? name->via.str.ptr : "";
		if (!ours) {
			EXAMPLE(v, viol_extra, "extra pod %.*s (%s)\n", nl, ns,
				b->o.direct_pods
				    ? "not created by the harness"
				    : "beyond its RC's replicas on the watch, or never "
				      "seen there");
		} else if (v->seen[idx]++) {
			EXAMPLE(v, viol_twice, "pod %.*s listed twice\n", nl, ns);
			continue;
		}
		if (nn == NULL || nn->type != MSGPACK_OBJECT_STR || nn->via.str.size == 0) {
			EXAMPLE(v, viol_unbound, "pod %.*s not bound\n", nl, ns);
			continue;
		}
		if (!node_index(b, nn, &n)) {
			EXAMPLE(v, viol_region, "pod %.*s bound to unknown node %.*s\n", nl, ns,
				(int)nn->via.str.size, nn->via.str.ptr);
			continue;
		}
		struct node_acct *na = &v->nodes[n];
		int64_t cpu, mem;
		pod_requests(o, &cpu, &mem);
		na->used_cpu += cpu;
		na->used_mem += mem;
		na->used_pods++;
		if (!ours)
			continue;
		if (b->pods[idx].node != n + 1)
			EXAMPLE(v, viol_disagree,
				"pod %.*s: listed on node-%05" PRIu64
				", the watch last saw it on %s%05u\n",
				nl, ns, n + 1, b->pods[idx].node ? "node-" : "none ",
				b->pods[idx].node);
		if (b->pods[idx].binds > 1)
			EXAMPLE(v, viol_twice, "pod %.*s bound %u times\n", nl, ns,
				b->pods[idx].binds);
		if (na->region != (int)region) {
			EXAMPLE(v, viol_region,
				"pod %.*s of region r%u on node-%05" PRIu64 " (region label %d)\n",
				nl, ns, region, n + 1, na->region);
			continue;
		}
		if (na->zone >= 0 && (unsigned)na->zone < Z)
			v->zone_count[na->zone]++;
	}
	uint64_t lo = UINT64_MAX, hi = 0;
	for (unsigned z = 0; z < Z; z++) {
		if (!v->zone_used[region * Z + z])
			continue;
		lo = v->zone_count[z] < lo ? v->zone_count[z] : lo;
		hi = v->zone_count[z] > hi ? v->zone_count[z] : hi;
	}
	if (lo != UINT64_MAX) {
		if (hi - lo > v->max_skew)
			v->max_skew = hi - lo;
		if (hi - lo > 1)
			EXAMPLE(v, viol_spread,
				"rc-%03u: zones of r%u hold %" PRIu64 "..%" PRIu64
				" pods (skew %" PRIu64 ")\n",
				k, region, lo, hi, hi - lo);
	}
	rv = 0;
out_free_answer:
	msgpack_unpacked_destroy(&up);
	aep_buf_free(&res);
	return rv;
}

/* Let the loop run for @ms: the watch keeps reporting meanwhile. */
static void pause_done(uv_timer_t *t)
{
	uv_stop(t->loop);
}

static void run_for(struct sched_bench *b, unsigned ms)
{
	uv_timer_t t;
	uv_timer_init(b->loop, &t);
	uv_timer_start(&t, pause_done, ms, 0);
	uv_run(b->loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(b->loop, UV_RUN_NOWAIT); /* the close callback: @t is on the stack */
}

/* RCs (listed from the leader) whose status.replicas differs from their
 * replicas, or that are missing; with @report, their first examples are
 * printed. -1 when the list cannot be read. */
static int64_t rcs_unsettled(struct sched_bench *b, bool report)
{
	msgpack_unpacked up;
	struct aep_buf res;
	int64_t n = -1;
	uint8_t *ok = aep_calloc(b->o.rcs, 1);
	msgpack_unpacked_init(&up);
	aep_buf_init(&res);
	const msgpack_object *items =
	    ok != NULL ? list_items(b, "ReplicationController", NULL, &up, &res) : NULL;
	if (items == NULL)
		goto out_free_answer;
	unsigned shown = 0;
	for (uint32_t i = 0; i < items->via.array.size; i++) {
		const msgpack_object *o = &items->via.array.ptr[i];
		const msgpack_object *st = mp_get2(o, "status", "replicas");
		bool has = st != NULL && st->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
		unsigned k;
		if (!pod_app(b, o, &k))
			continue;
		if (has && st->via.u64 == rc_replicas(b, k))
			ok[k] = 1;
		else if (report && shown++ < SCHED_EXAMPLES)
			fprintf(stderr,
				"aep-bench sched: rc-%03u: status.replicas %" PRId64
				", replicas %" PRIu64 "\n",
				k, has ? (int64_t)st->via.u64 : -1, rc_replicas(b, k));
	}
	n = 0;
	for (unsigned k = 0; k < b->o.rcs; k++)
		n += !ok[k];
out_free_answer:
	msgpack_unpacked_destroy(&up);
	aep_buf_free(&res);
	aep_free(ok);
	return n;
}

/* After the last binding: wait until every RC's status.replicas shows its
 * replicas (the manager has counted the pods and has nothing left to do),
 * then create the fence pod (bound, no labels: neither the scheduler nor
 * the manager touches it) and wait for the watch to report it, so that
 * every pod event committed before it is in: a pod the manager added or
 * deleted late is seen. RCs that never settle (SCHED_SETTLE_MS) are
 * counted in b->unsettled. Returns 0, or 1 when a list or the fence
 * failed. */
static int settle(struct sched_bench *b)
{
	int64_t t0 = aep_now_monotonic_ns(), until = t0 + (int64_t)SCHED_SETTLE_MS * 1000000;
	int64_t n;
	while ((n = rcs_unsettled(b, false)) > 0 && aep_now_monotonic_ns() < until && !b->failed)
		run_for(b, 200);
	if (n > 0)
		n = rcs_unsettled(b, true);
	if (n < 0 || b->failed)
		return 1;
	b->unsettled = (uint64_t)n;

	struct aep_buf req;
	struct aep_error e = {0};
	msgpack_packer pk;
	aep_buf_init(&req);
	aep_packer_init(&pk, &req);
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "object");
	msgpack_pack_map(&pk, 3);
	pack_kv(&pk, "kind", "Pod");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 2);
	pack_kv(&pk, "name", SCHED_FENCE);
	pack_kv(&pk, "namespace", "default");
	aep_pack_str(&pk, "spec");
	msgpack_pack_map(&pk, 2);
	pack_kv(&pk, "nodeName", "node-00001");
	aep_pack_str(&pk, "containers");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	pack_kv(&pk, "name", "c");
	pack_kv(&pk, "image", "busybox");
	int rv = req.failed ? AEP_ENOMEM
			    : aep_rpc_call_sync(b->loop, b->conns[0], "create", req.data, req.len,
						10000, NULL, &e);
	aep_buf_free(&req);
	if (rv != 0) {
		fprintf(stderr, "aep-bench sched: create the fence pod: %s\n", e.msg);
		return 1;
	}
	while (!b->fence_seen && aep_now_monotonic_ns() < until + 10000000000 && !b->failed)
		run_for(b, 20);
	if (!b->fence_seen) {
		fprintf(stderr, "aep-bench sched: the watch never reported the fence pod\n");
		return 1;
	}
	fprintf(stderr,
		"aep-bench sched: settled in %.2f s: %" PRIu64 " RCs with status.replicas off; "
		"the watch is caught up (fence seen)\n",
		(double)(aep_now_monotonic_ns() - t0) / 1e9, b->unsettled);
	return 0;
}

/* Lists nodes and pods from the leader and runs every check. Returns the
 * number of violations, or -1 when the lists could not be read. */
static int64_t verify(struct sched_bench *b, uint64_t *max_skew)
{
	struct verify v = {.b = b};
	int64_t total = -1;
	v.nodes = aep_calloc(b->o.nodes, sizeof(*v.nodes));
	v.seen = aep_calloc(b->o.pods ? b->o.pods : 1, 1);
	v.zone_count = aep_calloc(b->o.zones, sizeof(*v.zone_count));
	v.zone_used = aep_calloc((size_t)b->o.regions * b->o.zones, sizeof(*v.zone_used));
	if (v.nodes == NULL || v.seen == NULL || v.zone_count == NULL || v.zone_used == NULL) {
		fprintf(stderr, "aep-bench sched: verify: out of memory\n");
		goto out_free_verify;
	}
	if (verify_nodes(&v) != 0)
		goto out_free_verify;
	for (unsigned k = 0; k < b->o.rcs; k++) {
		if (verify_rc(&v, k) != 0)
			goto out_free_verify;
	}
	for (uint64_t i = 0; i < b->o.pods; i++) {
		if (!v.seen[i]) {
			char name[AEP_NAME_MAX + 64];
			EXAMPLE(&v, viol_lost, "pod %s lost (not listed)\n",
				rec_name(b, i, name, sizeof(name)));
		}
	}
	for (uint64_t n = 0; n < b->o.nodes; n++) {
		struct node_acct *na = &v.nodes[n];
		if ((na->cpu >= 0 && na->used_cpu > na->cpu) ||
		    (na->mem >= 0 && na->used_mem > na->mem) ||
		    (na->pods >= 0 && (int64_t)na->used_pods * 1000 > na->pods))
			EXAMPLE(&v, viol_capacity,
				"node-%05" PRIu64 " over capacity: cpu %" PRId64 "m/%" PRId64
				"m, memory %" PRId64 "/%" PRId64 " bytes, pods %" PRIu64 "/%" PRId64
				"\n",
				n + 1, na->used_cpu, na->cpu, na->used_mem / 1000, na->mem / 1000,
				na->used_pods, na->pods / 1000);
	}
	struct {
		const char *what;
		uint64_t n;
	} checks[] = {
	    {"nodes over capacity", v.viol_capacity},
	    {"pods outside their RC's region", v.viol_region},
	    {"RCs spread unevenly over zones", v.viol_spread},
	    {"pods bound twice", v.viol_twice},
	    {"pods lost", v.viol_lost},
	    {"extra pods", v.viol_extra},
	    {"pods not bound", v.viol_unbound},
	    {"pods whose listed node differs from the watch's", v.viol_disagree},
	    {"RCs whose pod count differs from replicas", v.viol_count},
	    {"extra pods of an RC seen on the watch", b->extra_added},
	    {"pods of an RC deleted (seen on the watch)", b->deleted},
	    {"RCs whose status.replicas never reached replicas", b->unsettled},
	};
	total = 0;
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		fprintf(stderr, "aep-bench sched: check: %-50s %s (%" PRIu64 ")\n", checks[i].what,
			checks[i].n ? "FAIL" : "ok", checks[i].n);
		total += (int64_t)checks[i].n;
	}
	*max_skew = v.max_skew;
out_free_verify:
	aep_free(v.nodes);
	aep_free(v.seen);
	aep_free(v.zone_count);
	aep_free(v.zone_used);
	return total;
}

/* ---- driver ---------------------------------------------------------------------- */

/* VmRSS of @pid in MiB, or -1. */
static double rss_mib(pid_t pid)
{
	char path[64], line[256];
	double kb = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kb = strtod(line + 6, NULL);
			break;
		}
	}
	fclose(f);
	return kb < 0 ? -1 : kb / 1024;
}

static int parse_opts(int argc, char **argv, struct sched_opts *o)
{
	static const struct option opts[] = {
	    {"masters", required_argument, NULL, 'm'},
	    {"nodes", required_argument, NULL, 'n'},
	    {"pods", required_argument, NULL, 'p'},
	    {"regions", required_argument, NULL, 'R'},
	    {"zones", required_argument, NULL, 'Z'},
	    {"rcs", required_argument, NULL, 'K'},
	    {"cpu-per-pod", required_argument, NULL, 'c'},
	    {"mem-per-pod", required_argument, NULL, 'M'},
	    {"conns", required_argument, NULL, 'k'},
	    {"window", required_argument, NULL, 'w'},
	    {"timeout", required_argument, NULL, 't'},
	    {"base-port", required_argument, NULL, 'b'},
	    {"aep", required_argument, NULL, 'a'},
	    {"self-bind", no_argument, NULL, 's'},
	    {"self-bind-bad", no_argument, NULL, 'S'},
	    {"kill-leader", no_argument, NULL, 'L'},
	    {"direct-pods", no_argument, NULL, 'D'},
	    {"kill-leader-at", required_argument, NULL, 'A'},
	    {NULL, 0, NULL, 0},
	};
	*o = (struct sched_opts){.masters = 3,
				 .regions = 3,
				 .zones = 3,
				 .rcs = 100,
				 .conns = 16,
				 .window = 2000,
				 .base = 18001,
				 .timeout_s = 600,
				 .nodes = 1000,
				 .pods = 30000,
				 .kill_at = 0.5};
	snprintf(o->cpu, sizeof(o->cpu), "100m");
	snprintf(o->mem, sizeof(o->mem), "128Mi");
	struct aep_error e = {0};
	unsigned long long v = 0;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'm':
			bad = aep_parse_uint(optarg, "--masters", 1, BENCH_MAX_MASTERS, &v, &e);
			o->masters = (unsigned)v;
			break;
		case 'n':
			bad = aep_parse_uint(optarg, "--nodes", 1, SCHED_MAX_NODES, &v, &e);
			o->nodes = v;
			break;
		case 'p':
			bad = aep_parse_uint(optarg, "--pods", 0, SCHED_MAX_PODS, &v, &e);
			o->pods = v;
			break;
		case 'R':
			bad = aep_parse_uint(optarg, "--regions", 1, SCHED_MAX_REGIONS, &v, &e);
			o->regions = (unsigned)v;
			break;
		case 'Z':
			bad = aep_parse_uint(optarg, "--zones", 1, SCHED_MAX_ZONES, &v, &e);
			o->zones = (unsigned)v;
			break;
		case 'K':
			bad = aep_parse_uint(optarg, "--rcs", 1, SCHED_MAX_RCS, &v, &e);
			o->rcs = (unsigned)v;
			break;
		case 'c':
		case 'M': {
			int64_t q;
			char *dst = c == 'c' ? o->cpu : o->mem;
			bad = aep_quantity_parse(optarg, strlen(optarg), &q, &e);
			if (!bad && (q <= 0 || strlen(optarg) >= sizeof(o->cpu)))
				bad = aep_errorf(&e, AEP_EINVALID, "must be a positive quantity");
			if (bad)
				aep_error_prefix(&e, "%s",
						 c == 'c' ? "--cpu-per-pod" : "--mem-per-pod");
			else
				snprintf(dst, sizeof(o->cpu), "%s", optarg);
			break;
		}
		case 'k':
			bad = aep_parse_uint(optarg, "--conns", 1, 1000, &v, &e);
			o->conns = (unsigned)v;
			break;
		case 'w':
			bad = aep_parse_uint(optarg, "--window", 1, 1000000, &v, &e);
			o->window = (unsigned)v;
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
		case 's': o->bind = BIND_SELF; break;
		case 'S': o->bind = BIND_SELF_BAD; break;
		case 'L': o->kill_leader = true; break;
		case 'D': o->direct_pods = true; break;
		case 'A': {
			char *end;
			double f = strtod(optarg, &end);
			if (end == optarg || *end != '\0' || !(f > 0 && f < 1))
				bad = aep_errorf(
				    &e, AEP_EINVALID,
				    "--kill-leader-at: a fraction between 0 and 1, not %s", optarg);
			o->kill_leader = true;
			o->kill_at = f;
			break;
		}
		default: return 2;
		}
		if (bad) {
			fprintf(stderr, "aep-bench sched: %s\n", e.msg);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "aep-bench sched: unexpected argument %s\n", argv[optind]);
		return 2;
	}
	if (o->bind != BIND_SCHEDULER && !o->direct_pods) {
		fprintf(stderr,
			"aep-bench sched: --self-bind and --self-bind-bad bind the pods the "
			"harness creates: they need --direct-pods (by default the "
			"replication manager creates the pods)\n");
		return 2;
	}
	if (o->kill_leader && (o->masters < 3 || o->pods == 0 || o->bind != BIND_SCHEDULER)) {
		fprintf(stderr,
			"aep-bench sched: --kill-leader needs --masters 3 or more (a "
			"majority must survive), pods, and the scheduler (no --self-bind)\n");
		return 2;
	}
	struct aep_error qe = {0};
	aep_quantity_parse(o->cpu, strlen(o->cpu), &o->cpu_milli, &qe);
	aep_quantity_parse(o->mem, strlen(o->mem), &o->mem_milli, &qe);
	if (o->aep[0] == '\0' && bench_default_aep(o->aep, sizeof(o->aep)) != 0)
		return 1;
	return 0;
}

/* Room for twice a node's even share of pods, and never less than a
 * typical 32-core, 128 GiB, 110-pod node. Fails when that overflows. */
static int size_nodes(struct sched_bench *b)
{
	uint64_t share = (2 * b->o.pods + b->o.nodes - 1) / b->o.nodes;
	int64_t pods = share > 110 ? (int64_t)share : 110;
	if (b->o.cpu_milli > INT64_MAX / 1000 / pods || b->o.mem_milli > INT64_MAX / 1000 / pods) {
		fprintf(stderr, "aep-bench sched: per-pod requests too large\n");
		return 1;
	}
	b->node_pods = pods * 1000;
	b->node_cpu = 32000;
	if ((int64_t)share * b->o.cpu_milli > b->node_cpu)
		b->node_cpu = (int64_t)share * b->o.cpu_milli;
	b->node_mem = 128 * GI * 1000;
	if ((int64_t)share * b->o.mem_milli > b->node_mem)
		b->node_mem = (int64_t)share * b->o.mem_milli;
	return 0;
}

/* "127.0.0.1:P,..." of every master, from master @first on. */
static void servers_from(const struct bench_cluster *cl, unsigned first, char *out, size_t size)
{
	size_t off = 0;
	out[0] = '\0';
	for (unsigned k = 0; k < cl->n && off < size; k++)
		off += (size_t)snprintf(out + off, size - off, "%s127.0.0.1:%u", k ? "," : "",
					cl->base + (first + k) % cl->n);
}

/* The pod connections start at the leader and the watch at a follower;
 * both list every master, to carry on when one of them dies. */
static int open_clients(struct sched_bench *b)
{
	struct bench_cluster *cl = b->cl;
	struct aep_error e = {0};
	char servers[BENCH_MAX_MASTERS * 24], wservers[BENCH_MAX_MASTERS * 24];
	servers_from(cl, cl->leader, servers, sizeof(servers));
	for (unsigned i = 0; i < b->o.conns; i++) {
		struct aep_rpc_client_config cfg = {
		    .servers = servers, .tls = cl->tls, .limits = &big_limits};
		if (aep_rpc_client_new(b->loop, &cfg, &b->conns[i], &e) != 0) {
			fprintf(stderr, "aep-bench sched: client: %s\n", e.msg);
			return 1;
		}
	}
	unsigned f = cl->n > 1 ? (cl->leader + 1) % cl->n : cl->leader;
	snprintf(b->follower_addr, sizeof(b->follower_addr), "127.0.0.1:%u", cl->base + f);
	servers_from(cl, f, wservers, sizeof(wservers));
	struct aep_rpc_client_config wcfg = {.servers = wservers,
					     .tls = cl->tls,
					     .limits = &big_limits,
					     .on_notify = watch_notify,
					     .on_disconnect = watch_disconnect,
					     .data = b};
	if (aep_rpc_client_new(b->loop, &wcfg, &b->watcher, &e) != 0) {
		fprintf(stderr, "aep-bench sched: watch client: %s\n", e.msg);
		return 1;
	}
	/* --kill-leader: one status probe per master, to each alone. */
	for (unsigned i = 0; b->o.kill_leader && i < cl->n; i++) {
		char addr[32];
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", cl->base + i);
		struct aep_rpc_client_config pcfg = {
		    .servers = addr, .tls = cl->tls, .connect_timeout_ms = 1000};
		b->probes[i] = (struct probe){.b = b, .i = i};
		if (aep_rpc_client_new(b->loop, &pcfg, &b->probes[i].c, &e) != 0) {
			fprintf(stderr, "aep-bench sched: probe client: %s\n", e.msg);
			return 1;
		}
	}
	/* Connect (TCP and TLS handshakes) before any clock starts. */
	for (unsigned i = 0; i <= b->o.conns + BENCH_MAX_MASTERS; i++) {
		struct aep_rpc_client *c = i < b->o.conns    ? b->conns[i]
					   : i == b->o.conns ? b->watcher
							     : b->probes[i - b->o.conns - 1].c;
		if (c == NULL)
			continue;
		if (aep_rpc_call_sync(b->loop, c, "status", "\x80", 1, 10000, NULL, &e) != 0) {
			fprintf(stderr, "aep-bench sched: connection %u: %s\n", i, e.msg);
			return 1;
		}
	}
	return 0;
}

/* The revision of the master behind @c, from its status. */
static int revision_of(struct sched_bench *b, struct aep_rpc_client *c, uint64_t *rev)
{
	struct aep_buf res;
	struct aep_error e = {0};
	msgpack_unpacked up;
	int rv = 1;
	aep_buf_init(&res);
	msgpack_unpacked_init(&up);
	if (aep_rpc_call_sync(b->loop, c, "status", "\x80", 1, 10000, &res, &e) != 0) {
		fprintf(stderr, "aep-bench sched: status: %s\n", e.msg);
		goto out_free_answer;
	}
	if (msgpack_unpack_next(&up, res.data, res.len, NULL) == MSGPACK_UNPACK_SUCCESS) {
		const msgpack_object *r = aep_mp_map_get(&up.data, "revision");
		if (r != NULL && r->type == MSGPACK_OBJECT_STR && r->via.str.size < 24) {
			char tmp[24];
			memcpy(tmp, r->via.str.ptr, r->via.str.size);
			tmp[r->via.str.size] = '\0';
			*rev = strtoull(tmp, NULL, 10);
			rv = 0;
		}
	}
	if (rv != 0)
		fprintf(stderr, "aep-bench sched: status: no revision\n");
out_free_answer:
	msgpack_unpacked_destroy(&up);
	aep_buf_free(&res);
	return rv;
}

static int start_watch(struct sched_bench *b)
{
	struct aep_buf req, res;
	struct aep_error e = {0};
	msgpack_unpacked up;
	int rv = 1;
	if (revision_of(b, b->conns[0], &b->watch_rv) != 0)
		return 1;
	aep_buf_init(&req);
	aep_buf_init(&res);
	msgpack_unpacked_init(&up);
	if (pack_watch(b, &req) != 0 || aep_rpc_call_sync(b->loop, b->watcher, "watch", req.data,
							  req.len, 10000, &res, &e) != 0) {
		fprintf(stderr, "aep-bench sched: watch on %s: %s\n", b->follower_addr, e.msg);
		goto out_free_bufs;
	}
	if (msgpack_unpack_next(&up, res.data, res.len, NULL) == MSGPACK_UNPACK_SUCCESS) {
		const msgpack_object *id = aep_mp_map_get(&up.data, "watch");
		if (id != NULL && id->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
			b->watch_id = id->via.u64;
			rv = 0;
		}
	}
	if (rv != 0)
		fprintf(stderr, "aep-bench sched: watch: no watch id in the answer\n");
	const char *srv = aep_rpc_client_server(b->watcher);
	if (rv == 0 && srv != NULL && strcmp(srv, b->cl->leader_addr) == 0)
		fprintf(stderr, "aep-bench sched: warning: the watch landed on the leader\n");
out_free_bufs:
	msgpack_unpacked_destroy(&up);
	aep_buf_free(&req);
	aep_buf_free(&res);
	return rv;
}

static void close_all(struct sched_bench *b)
{
	b->closing = true;
	if (b->progress.data != NULL)
		uv_close((uv_handle_t *)&b->progress, NULL);
	if (b->deadline.data != NULL)
		uv_close((uv_handle_t *)&b->deadline, NULL);
	if (b->tick.data != NULL)
		uv_close((uv_handle_t *)&b->tick, NULL);
	for (unsigned i = 0; i < BENCH_MAX_MASTERS; i++) {
		if (b->probes[i].c != NULL)
			aep_rpc_client_close(b->probes[i].c, NULL, NULL);
	}
	/* Creates waiting to be sent again belong to no client. */
	while (b->retry_head != NULL) {
		struct call_ctx *cc = b->retry_head;
		b->retry_head = cc->next;
		aep_free(cc);
	}
	b->retry_tail = NULL;
	for (unsigned i = 0; b->conns != NULL && i < b->o.conns; i++) {
		if (b->conns[i] != NULL)
			aep_rpc_client_close(b->conns[i], NULL, NULL);
	}
	if (b->watcher != NULL)
		aep_rpc_client_close(b->watcher, NULL, NULL);
	uv_run(b->loop, UV_RUN_DEFAULT);
}

static double pct_bind_ms(struct sched_bench *b, double p)
{
	double *lat = aep_malloc((b->o.pods ? b->o.pods : 1) * sizeof(*lat));
	size_t n = 0;
	if (lat == NULL)
		return -1;
	for (uint64_t i = 0; i < b->o.pods; i++) {
		const struct pod_rec *r = &b->pods[i];
		if (r->t_ack == 0 || r->t_bind == 0)
			continue;
		/* a bind event may overtake its create's answer */
		lat[n++] = r->t_bind > r->t_ack ? (double)(r->t_bind - r->t_ack) / 1e6 : 0;
	}
	double v = bench_percentile(lat, n, p);
	aep_free(lat);
	return v;
}

/* Everything after the cluster is up. Returns the exit status. */
static int run(struct sched_bench *b)
{
	struct sched_opts *o = &b->o;
	int64_t t0 = aep_now_monotonic_ns();
	uint64_t errs;
	if (open_clients(b) != 0)
		return 1;
	fprintf(stderr,
		"aep-bench sched: registering %" PRIu64
		" nodes (%u regions x %u zones), %.0f pods, "
		"%.0fm cpu, %.0f MiB each\n",
		o->nodes, o->regions, o->zones, (double)b->node_pods / 1000, (double)b->node_cpu,
		(double)b->node_mem / 1000 / MI);
	errs = run_phase(b, "create node", o->nodes, pack_node);
	if (b->failed || errs != 0) {
		fprintf(stderr, "aep-bench sched: FAILED: %" PRIu64 " node creates failed\n", errs);
		return 1;
	}
	double nodes_s = (double)(aep_now_monotonic_ns() - t0) / 1e9;
	fprintf(stderr, "aep-bench sched: %" PRIu64 " nodes in %.2f s (%.0f/s)\n", o->nodes,
		nodes_s, (double)o->nodes / nodes_s);
	if (o->direct_pods) {
		errs = run_phase(b, "create service", o->rcs, pack_svc);
		if (b->failed || errs != 0) {
			fprintf(stderr,
				"aep-bench sched: FAILED: %" PRIu64 " Service creates failed\n",
				errs);
			return 1;
		}
	}
	if (start_watch(b) != 0)
		return 1;
	if (o->direct_pods)
		fprintf(stderr,
			"aep-bench sched: watching pods on %s from revision %" PRIu64
			"; creating %" PRIu64 " pods (%s cpu, %s memory) over %u connections, %u "
			"in flight%s, then %u RCs (--direct-pods)\n",
			b->follower_addr, b->watch_rv, o->pods, o->cpu, o->mem, o->conns, o->window,
			o->bind == BIND_SELF	   ? ", binding them here (--self-bind)"
			: o->bind == BIND_SELF_BAD ? ", binding them here badly (--self-bind-bad)"
						   : "",
			o->rcs);
	else
		fprintf(stderr,
			"aep-bench sched: watching pods on %s from revision %" PRIu64
			"; creating %u RCs for %" PRIu64
			" pods (%s cpu, %s memory): the replication manager creates the pods\n",
			b->follower_addr, b->watch_rv, o->rcs, o->pods, o->cpu, o->mem);

	b->pods_phase = true;
	b->t_start = aep_now_monotonic_ns();
	uv_timer_init(b->loop, &b->progress);
	uv_timer_init(b->loop, &b->deadline);
	b->progress.data = b;
	b->deadline.data = b;
	uv_timer_start(&b->progress, progress_cb, 2000, 2000);
	uv_timer_start(&b->deadline, deadline_cb, (uint64_t)o->timeout_s * 1000, 0);
	if (o->kill_leader) {
		b->new_leader = -1;
		b->kill_at_bound = (uint64_t)(o->kill_at * (double)o->pods);
		if ((double)b->kill_at_bound < o->kill_at * (double)o->pods)
			b->kill_at_bound++;
		if (b->kill_at_bound == 0)
			b->kill_at_bound = 1;
		uv_timer_init(b->loop, &b->tick);
		b->tick.data = b;
		uv_timer_start(&b->tick, tick_cb, SCHED_TICK_MS, SCHED_TICK_MS);
		fprintf(stderr,
			"aep-bench sched: the leader will be killed when %" PRIu64
			" pods are seen bound\n",
			b->kill_at_bound);
	}
	if (o->direct_pods) {
		b->ph = (struct phase){.what = "create pod",
				       .total = o->pods,
				       .pack = pack_pod,
				       .answered = pod_answered};
		phase_fill(b);
		if (!b->failed) {
			check_finished(b); /* --pods 0 */
			uv_run(b->loop, UV_RUN_DEFAULT);
		}
		if (!b->failed && b->ph.errors != 0) {
			fprintf(stderr, "aep-bench sched: FAILED: %" PRIu64 " pod calls failed\n",
				b->ph.errors);
			return 1;
		}
		if (!b->failed)
			fprintf(stderr,
				"aep-bench sched: %" PRIu64
				" pod creates answered after %.2f s (%" PRIu64
				" bound); creating the %u RCs\n",
				b->created, (double)(aep_now_monotonic_ns() - b->t_start) / 1e9,
				b->bound, o->rcs);
	}
	if (!b->failed) {
		b->ph = (struct phase){.what = "create rc", .total = o->rcs, .pack = pack_rc};
		phase_fill(b);
		if (!b->failed) {
			check_finished(b);
			uv_run(b->loop, UV_RUN_DEFAULT);
		}
	}
	uv_timer_stop(&b->progress);
	uv_timer_stop(&b->deadline);
	b->pods_phase = false;
	if (b->failed)
		return 1;
	if (b->ph.errors != 0) {
		fprintf(stderr, "aep-bench sched: FAILED: %" PRIu64 " RC creates failed\n",
			b->ph.errors);
		return 1;
	}
	int64_t t_end = aep_now_monotonic_ns();
	fprintf(stderr,
		"aep-bench sched: all %" PRIu64 " pods bound after %.2f s; %" PRIu64
		" re-bindings, %" PRIu64 " unbindings, %" PRIu64 " deletions, %" PRIu64
		" events of other pods seen; verifying\n",
		b->bound, (double)(t_end - b->t_start) / 1e9, b->rebinds, b->unbinds, b->deleted,
		b->foreign);
	if (!o->direct_pods || b->extra_added != 0)
		fprintf(stderr,
			"aep-bench sched: %" PRIu64 " pods of the RCs seen added (%" PRIu64
			" beyond their replicas), %" PRIu64 " deleted\n",
			b->created + b->extra_added, b->extra_added, b->deleted);
	int settled = settle(b);
	if (b->tick.data != NULL)
		uv_timer_stop(&b->tick);
	if (settled != 0) {
		fprintf(stderr, "aep-bench sched: FAILED: the RCs and the watch did not settle\n");
		return 1;
	}
	if (o->kill_leader)
		fprintf(stderr,
			"aep-bench sched: %" PRIu64 " creates sent again, %" PRIu64
			" of them found their pod (AlreadyExists)\n",
			b->resent, b->resent_exists);

	/* The leader now, which is the one that scheduled unless it moved. */
	unsigned li = b->cl->leader;
	if (bench_cluster_leader(b->cl, &li) != 0)
		fprintf(stderr, "aep-bench sched: warning: no running master names a leader\n");
	else if (b->leader_killed)
		fprintf(stderr, "aep-bench sched: leadership moved from m%u (killed) to m%u\n",
			b->killed + 1, li + 1);
	else if (li != b->cl->leader)
		fprintf(stderr, "aep-bench sched: warning: leadership moved from m%u to m%u\n",
			b->cl->leader + 1, li + 1);
	double rss = rss_mib(b->cl->pids[li]);

	uint64_t max_skew = 0;
	int64_t violations = verify(b, &max_skew);
	if (violations < 0) {
		fprintf(stderr, "aep-bench sched: FAILED: cannot list pods and nodes\n");
		return 1;
	}
	double create_s = (double)(b->t_last_ack - b->t_first_send) / 1e9;
	double bind_s = (double)(b->t_last_bind - b->t_first_bind) / 1e9;
	double e2e_s = (double)(b->t_last_bind - b->t_first_send) / 1e9;
	double p50 = pct_bind_ms(b, 50), p99 = pct_bind_ms(b, 99);
	fprintf(stderr,
		"aep-bench sched: nodes_s=%.2f end_to_end_s=%.2f p50_bind_ms=%.1f leader=m%u\n",
		nodes_s, e2e_s, p50, li + 1);
	bool kill_failed = false;
	if (o->kill_leader && !b->leader_killed) {
		fprintf(stderr, "aep-bench sched: FAILED: the leader was never killed\n");
		printf("leader_killed=none at_bound=0 failover_ms=-1\n");
		kill_failed = true;
	} else if (o->kill_leader) {
		if (b->t_failover == 0)
			fprintf(stderr,
				"aep-bench sched: warning: no binding seen after the "
				"new leader came up (all were committed before the kill)\n");
		printf("leader_killed=m%u at_bound=%" PRIu64 " failover_ms=%.0f elected_ms=%.0f "
		       "new_leader=m%u resent=%" PRIu64 "\n",
		       b->killed + 1, b->at_bound,
		       b->t_failover ? (double)(b->t_failover - b->t_kill) / 1e6 : -1,
		       b->t_elected ? (double)(b->t_elected - b->t_kill) / 1e6 : -1,
		       b->new_leader >= 0 ? (unsigned)b->new_leader + 1 : li + 1, b->resent);
	}
	printf("nodes=%" PRIu64 " pods=%" PRIu64 " masters=%u create_s=%.2f bind_s=%.2f "
	       "sched_pods_per_s=%.0f leader_rss_mib=%.0f flow=%s\n",
	       o->nodes, o->pods, o->masters, create_s, bind_s,
	       bind_s > 0 ? (double)o->pods / bind_s : 0, rss, o->direct_pods ? "direct" : "rc");
	printf("pods_per_s=%.0f p99_bind_ms=%.1f spread_max_skew=%" PRIu64 " violations=%" PRId64
	       "\n",
	       e2e_s > 0 ? (double)o->pods / e2e_s : 0, p99, max_skew, violations);
	fflush(stdout);
	return violations == 0 && !kill_failed ? 0 : 1;
}

int bench_sched(int argc, char **argv)
{
	struct sched_bench b;
	memset(&b, 0, sizeof(b));
	int rv = parse_opts(argc, argv, &b.o);
	if (rv != 0)
		return rv;
	if (size_nodes(&b) != 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	b.loop = uv_default_loop();
	b.pods = aep_calloc(b.o.pods ? b.o.pods : 1, sizeof(*b.pods));
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	b.conns = aep_calloc(b.o.conns, sizeof(*b.conns));
	b.rc_cursor = aep_calloc(b.o.rcs, sizeof(*b.rc_cursor));
	b.zone_cursor = aep_calloc((size_t)b.o.regions * b.o.zones, sizeof(*b.zone_cursor));
	b.rc_seen = aep_calloc(b.o.rcs, sizeof(*b.rc_seen));
	if (b.pods == NULL || b.conns == NULL || b.rc_cursor == NULL || b.zone_cursor == NULL ||
	    b.rc_seen == NULL || name_map_init(&b.names, b.o.direct_pods ? 0 : b.o.pods) != 0) {
		fprintf(stderr, "aep-bench sched: out of memory\n");
		rv = 1;
		goto out_free_arrays;
	}
	struct bench_cluster cl;
	memset(&cl, 0, sizeof(cl));
	b.cl = &cl;
	if (bench_cluster_start(&cl, b.o.masters, b.o.base, b.o.aep) != 0) {
		rv = 1;
		goto out_stop_cluster;
	}
	fprintf(stderr, "aep-bench sched: %u masters in %s, leader m%u at %s\n", b.o.masters,
		cl.dir, cl.leader + 1, cl.leader_addr);
	rv = run(&b);
	close_all(&b);
out_stop_cluster:
	bench_cluster_stop(&cl);
out_free_arrays:
	aep_free(b.pods);
	aep_free(b.conns);
	aep_free(b.rc_cursor);
	aep_free(b.zone_cursor);
	aep_free(b.rc_seen);
	name_map_free(&b.names);
	return rv;
}
