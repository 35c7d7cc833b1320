/* master: node sessions, the dispatcher, the node lifecycle and the logs
 * and exec relays (docs/NODES.md). Leader only.
 *
 * Happy path. A node agent (certificate CN "system:node:NAME") calls
 * node.register {node} on the leader: the Node is created, or its labels
 * and status updated (its spec is the cluster's), with a pod subnet from
 * --cluster-cidr when it has none (the lowest /--node-cidr-size that no
 * Node in the store, and no registration in flight, holds) and Ready=True;
 * the agent gets the Node as stored, and the connection becomes the node's
 * session: the leader calls node.sync {generation, pods} on it with every
 * pod bound to the node. From then on a watch on pods turns each change
 * that matters to the node (a pod bound to it, a new spec generation, a
 * deletion, a move away) into pod.run {pod} or pod.kill {uid, namespace,
 * name} on the session, at most SESSION_INFLIGHT calls unanswered and
 * SESSION_PENDING_MAX bytes queued per session; the rest wait, coalesced
 * per pod, and a queue past SESSION_QUEUE_MAX is replaced by one
 * node.sync. The agent reports with node.heartbeat {} (the time is kept in
 * memory; Ready=True is written when it changes and at least every
 * READY_REFRESH_MS) and pod.status (written into the pod, status only, if
 * the pod is bound to the caller and has that uid; an identical status
 * writes nothing). Clients' logs and exec calls are relayed to the pod's
 * node session as pod.logs / pod.exec, and a followed log's notifications
 * relayed back, until either side goes away.
 *
 * Failure modes. Any error answer to a push (or a push that cannot be
 * sent) makes the node resync: one node.sync with the full desired state,
 * retried with backoff. A newer session of a node replaces (closes) the
 * older one. A node silent for --node-grace (no heartbeat, no register)
 * has its session ended, if one is still open (a peer that vanished can
 * keep a TCP connection open for many minutes), becomes Ready=False
 * (reason NodeStatusUnknown), and after --pod-eviction-timeout more its
 * pods are deleted; their replication controllers replace them. Lost
 * leadership ends every session (agents find the new leader), every log
 * stream, and this state; writes in flight answer later and are ignored
 * (their epoch is over). A new leader knows no heartbeats: every node gets
 * a fresh grace period, and every agent a node.sync when it registers. */
#include "master/master-int.h"

#include <arpa/inet.h>
#include <assert.h>
#include <bsd/sys/tree.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_INFLIGHT    32	       /* pushes (run, kill, sync) unanswered per session */
#define SESSION_PENDING_MAX (4u << 20) /* bytes queued on a session before pushes wait */
#define SESSION_QUEUE_MAX   1024       /* pushes waiting; beyond, one node.sync */
#define SESSION_RELAYS_MAX  64	       /* logs/exec calls in flight per session */
#define SYNC_RETRY_MIN_MS   500
#define SYNC_RETRY_MAX_MS   30000
#define SYNC_BYTES_MAX	    ((4u << 20) - (64u << 10)) /* under the 4 MiB message limit */
#define TICK_MS		    250
#define READY_REFRESH_MS    60000
#define WRITE_RETRIES	    5
#define STREAM_BACKLOG_MAX  (8u << 20) /* bytes queued to a following client */
#define LOG_TAIL_MAX	    (1u << 20)
#define EXEC_ARGS_MAX	    1024
#define CIDR_SUBNETS_BITS   20 /* at most 2^20 node subnets in the cluster CIDR */

/* ---- state ------------------------------------------------------------------ */

/* A push waiting to be sent: pod.run (the pod as last seen) or pod.kill. */
struct op {
	struct op *next;
	bool kill;
	struct aep_object *pod;
};

/* A node's session: the connection on which its node.register succeeded.
 * Referenced by the trees (until it ends) and by each call in flight. */
struct session {
	RB_ENTRY(session) by_name;
	RB_ENTRY(session) by_conn;
	struct master *m;
	struct aep_rpc_conn *conn; /* a reference */
	char *name;
	unsigned refs;
	bool gone;
	struct op *head, *tail;
	size_t nops;
	unsigned inflight; /* pushes, node.sync included */
	unsigned relays;   /* logs/exec calls */
	bool need_sync;
	bool sync_inflight;
	int64_t sync_not_before; /* monotonic ns */
	unsigned sync_failures;
};

/* The lifecycle of a node as this leader sees it, and its allowed moves. */
enum node_state {
	NODE_READY,   /* heard from within --node-grace (or new to this leader) */
	NODE_LOST,    /* silent for --node-grace: Ready=False */
	NODE_EVICTED, /* lost for --pod-eviction-timeout: its pods are deleted */
	NODE__STATES
};

static const bool node_moves[NODE__STATES][NODE__STATES] = {
    [NODE_READY] = {[NODE_READY] = true, [NODE_LOST] = true},
    [NODE_LOST] = {[NODE_READY] = true, [NODE_LOST] = true, [NODE_EVICTED] = true},
    [NODE_EVICTED] = {[NODE_READY] = true, [NODE_EVICTED] = true},
};

enum ready_want { WANT_NONE, WANT_TRUE, WANT_FALSE };

struct noderec {
	RB_ENTRY(noderec) by_name;
	char *name;
	enum node_state state;
	int64_t last_hb_ns;	  /* monotonic: last heartbeat or register */
	int64_t lost_at_ns;	  /* monotonic: when it became NODE_LOST */
	int64_t ready_written_ns; /* monotonic: last Ready=True write; 0: none */
	enum ready_want want;	  /* a Ready write to make */
	bool writing;		  /* a Ready write in flight */
	unsigned evicting;	  /* pod deletions in flight */
	bool seen;
};

/* A followed log: the client's connection and the node session that
 * streams it. */
struct stream {
	struct stream *next;
	uint64_t id;
	struct aep_rpc_conn *client; /* a reference */
	struct session *s;	     /* a reference */
	struct req *r;		     /* the client's call, until the agent answers */
	bool ended;		     /* out of the list while @r was pending */
	bool agent_done;	     /* the agent sent log.end */
	bool client_gone;
	char why[160];
};

/* A pod subnet handed out by a register whose write is in flight. */
struct resv {
	struct resv *next;
	uint32_t index;
};

static int session_name_cmp(const struct session *a, const struct session *b)
{
	return strcmp(a->name, b->name);
}

static int session_conn_cmp(const struct session *a, const struct session *b)
{
	return a->conn < b->conn ? -1 : a->conn > b->conn;
}

static int noderec_cmp(const struct noderec *a, const struct noderec *b)
{
	return strcmp(a->name, b->name);
}

/* libbsd's static tree variants need BSD's __unused: these are external,
 * named for this folder (as in rc.c). */
RB_HEAD(master__node_sessions, session);
RB_HEAD(master__node_conns, session);
RB_HEAD(master__node_recs, noderec);
RB_PROTOTYPE(master__node_sessions, session, by_name, session_name_cmp);
RB_PROTOTYPE(master__node_conns, session, by_conn, session_conn_cmp);
RB_PROTOTYPE(master__node_recs, noderec, by_name, noderec_cmp);
RB_GENERATE(master__node_sessions, session, by_name, session_name_cmp)
RB_GENERATE(master__node_conns, session, by_conn, session_conn_cmp)
RB_GENERATE(master__node_recs, noderec, by_name, noderec_cmp)

struct master_nodes {
	struct master *m;
	uint64_t epoch;
	struct master__node_sessions sessions;
	struct master__node_conns conns;
	struct master__node_recs recs;
	struct aep_watch *w_pod, *w_node;
	bool rebuild;
	uv_timer_t timer;
	struct stream *streams;
	uint64_t next_stream;
	struct resv *resv;
};

/* ---- small helpers --------------------------------------------------------------- */

/* The node name of a caller whose certificate is "system:node:NAME" (in
 * @buf), else NULL. */
static const char *caller_node(struct aep_rpc_conn *c, char buf[AEP_NAME_MAX + 1])
{
	return master__node_identity(c, buf) ? buf : NULL;
}

static int64_t now_ns(void)
{
	return aep_now_monotonic_ns();
}

static bool same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void set_state(struct noderec *rec, enum node_state to)
{
	assert(node_moves[rec->state][to]);
	if (!node_moves[rec->state][to])
		fprintf(stderr, "aep master: bug: node %s: illegal move %d -> %d\n", rec->name,
			rec->state, to);
	rec->state = to;
}

/* Refuse parameters a method does not know; @known is NULL-terminated. */
static int check_params(const msgpack_object *params, const char *const *known, struct aep_error *e)
{
	if (params == NULL || params->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (params->type != MSGPACK_OBJECT_MAP)
		return aep_errorf(e, AEP_EBADREQUEST, "params: must be [ {map} ]");
	for (uint32_t i = 0; i < params->via.map.size; i++) {
		const msgpack_object *k = &params->via.map.ptr[i].key;
		bool ok = false;
		for (unsigned j = 0; known[j] != NULL && !ok; j++)
			ok = aep_mp_str_eq(k, known[j]);
		for (uint32_t j = 0; ok && j < i; j++) {
			const msgpack_object *kj = &params->via.map.ptr[j].key;
			if (kj->via.str.size == k->via.str.size &&
			    memcmp(kj->via.str.ptr, k->via.str.ptr, k->via.str.size) == 0)
				return aep_errorf(e, AEP_EBADREQUEST,
						  "parameter \"%.*s\" given twice",
						  (int)k->via.str.size, k->via.str.ptr);
		}
		if (!ok) {
			if (k->type != MSGPACK_OBJECT_STR)
				return aep_errorf(e, AEP_EBADREQUEST,
						  "parameter names must be strings");
			return aep_errorf(e, AEP_EBADREQUEST, "unknown parameter \"%.*s\"",
					  (int)(k->via.str.size > 64 ? 64 : k->via.str.size),
					  k->via.str.ptr);
		}
	}
	return 0;
}

/* A string parameter into @buf (at most @size - 1 bytes, no NUL inside);
 * "" when absent. */
static int param_str(const msgpack_object *params, const char *key, char *buf, size_t size,
		     struct aep_error *e)
{
	const msgpack_object *v = aep_mp_map_get(params, key);
	buf[0] = '\0';
	if (v == NULL || v->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (v->type != MSGPACK_OBJECT_STR)
		return aep_errorf(e, AEP_EBADREQUEST, "%s: must be a string", key);
	if (v->via.str.size >= size || memchr(v->via.str.ptr, '\0', v->via.str.size) != NULL)
		return aep_errorf(e, AEP_EBADREQUEST, "%s: too long or not text", key);
	memcpy(buf, v->via.str.ptr, v->via.str.size);
	buf[v->via.str.size] = '\0';
	return 0;
}

/* namespace (default "default") and a required name, both valid names. */
static int param_ns_name(const msgpack_object *params, char *ns, char *name, struct aep_error *e)
{
	struct aep_error ve = {0};
	if (param_str(params, "namespace", ns, AEP_NAME_MAX + 1, e) != 0 ||
	    param_str(params, "name", name, AEP_NAME_MAX + 1, e) != 0)
		return e->code;
	if (ns[0] == '\0')
		strcpy(ns, "default");
	if (name[0] == '\0')
		return aep_errorf(e, AEP_EBADREQUEST, "name: required string");
	if (aep_validate_dns1123_label(ns, strlen(ns), &ve) != 0)
		return aep_errorf(e, AEP_EBADREQUEST, "namespace: %s", ve.msg);
	if (aep_validate_dns1123_subdomain(name, strlen(name), &ve) != 0)
		return aep_errorf(e, AEP_EBADREQUEST, "name: %s", ve.msg);
	return 0;
}

/* Answer NotLeader {leader} (the leader's API address), or Unavailable
 * while no leader is known. */
static void not_leader(struct req *r)
{
	struct master *m = master__req_master(r);
	const char *api = master__leader_api(m);
	if (api == NULL || strcmp(api, m->advertise) == 0) {
		master__req_error(r, AEP_EUNAVAILABLE, "no leader is known yet; retry shortly");
		return;
	}
	struct aep_buf b;
	msgpack_packer pk;
	char msg[AEP_ERRMSG_MAX];
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "leader");
	aep_pack_str(&pk, api);
	snprintf(msg, sizeof(msg), "%s is not the leader; call %s", m->name, api);
	if (b.failed)
		master__req_error(r, AEP_ENOMEM, "out of memory");
	else
		master__req_error_details(r, AEP_ENOTLEADER, msg, b.data, b.len);
	aep_buf_free(&b);
}

/* Pack the result of a call (nil when none). */
static int pack_result(const msgpack_object *o, struct aep_buf *b)
{
	msgpack_packer pk;
	aep_packer_init(&pk, b);
	if (o != NULL)
		msgpack_pack_object(&pk, *o);
	else
		msgpack_pack_nil(&pk);
	return b->failed ? AEP_ENOMEM : 0;
}

/* The Ready condition of a Node map: its status string, or NULL. */
static const msgpack_object *ready_condition(const msgpack_object *node)
{
	const msgpack_object *conds = aep_mp_map_get(aep_mp_map_get(node, "status"), "conditions");
	if (conds == NULL || conds->type != MSGPACK_OBJECT_ARRAY)
		return NULL;
	for (uint32_t i = 0; i < conds->via.array.size; i++) {
		if (aep_mp_str_eq(aep_mp_map_get(&conds->via.array.ptr[i], "type"), "Ready"))
			return &conds->via.array.ptr[i];
	}
	return NULL;
}

/* Pack @node (a Node map) with its Ready condition replaced: status True
 * (a heartbeat now) or False with @reason and @message. lastHeartbeatTime
 * is now when @ready, else kept; lastTransitionTime is kept when the
 * status does not change, else now. */
static void pack_node_ready(msgpack_packer *pk, const msgpack_object *node, bool ready,
			    const char *reason, const char *message)
{
	const msgpack_object *status = aep_mp_map_get(node, "status");
	const msgpack_object *conds = aep_mp_map_get(status, "conditions");
	const msgpack_object *old = ready_condition(node);
	const char *want = ready ? "True" : "False";
	const msgpack_object *hb = aep_mp_map_get(old, "lastHeartbeatTime");
	const msgpack_object *ltt = aep_mp_map_get(old, "lastTransitionTime");
	bool same = old != NULL && aep_mp_str_eq(aep_mp_map_get(old, "status"), want);
	char now_s[40];
	aep_time_format(aep_now_realtime_ns(), now_s, sizeof(now_s));

	bool has_status = status != NULL && status->type == MSGPACK_OBJECT_MAP;
	msgpack_pack_map(pk, node->via.map.size + (has_status ? 0 : 1));
	for (uint32_t i = 0; i < node->via.map.size; i++) {
		const msgpack_object_kv *kv = &node->via.map.ptr[i];
		if (aep_mp_str_eq(&kv->key, "status"))
			continue;
		msgpack_pack_object(pk, kv->key);
		msgpack_pack_object(pk, kv->val);
	}
	aep_pack_str(pk, "status");
	bool has_conds = conds != NULL && conds->type == MSGPACK_OBJECT_ARRAY;
	msgpack_pack_map(pk, (has_status ? status->via.map.size : 0) + (has_conds ? 0 : 1));
	for (uint32_t i = 0; has_status && i < status->via.map.size; i++) {
		const msgpack_object_kv *kv = &status->via.map.ptr[i];
		if (aep_mp_str_eq(&kv->key, "conditions"))
			continue;
		msgpack_pack_object(pk, kv->key);
		msgpack_pack_object(pk, kv->val);
	}
	aep_pack_str(pk, "conditions");
	uint32_t nconds = 1;
	for (uint32_t i = 0; has_conds && i < conds->via.array.size; i++)
		nconds += !aep_mp_str_eq(aep_mp_map_get(&conds->via.array.ptr[i], "type"), "Ready");
	msgpack_pack_array(pk, nconds);
	for (uint32_t i = 0; has_conds && i < conds->via.array.size; i++) {
		if (!aep_mp_str_eq(aep_mp_map_get(&conds->via.array.ptr[i], "type"), "Ready"))
			msgpack_pack_object(pk, conds->via.array.ptr[i]);
	}
	bool keep_hb = !ready && hb != NULL && hb->type == MSGPACK_OBJECT_STR;
	bool keep_ltt = same && ltt != NULL && ltt->type == MSGPACK_OBJECT_STR;
	msgpack_pack_map(pk, 4 + (ready || keep_hb) + 1);
	aep_pack_str(pk, "type");
	aep_pack_str(pk, "Ready");
	aep_pack_str(pk, "status");
	aep_pack_str(pk, want);
	aep_pack_str(pk, "reason");
	aep_pack_str(pk, reason);
	aep_pack_str(pk, "message");
	aep_pack_str(pk, message);
	if (ready) {
		aep_pack_str(pk, "lastHeartbeatTime");
		aep_pack_str(pk, now_s);
	} else if (keep_hb) {
		aep_pack_str(pk, "lastHeartbeatTime");
		msgpack_pack_object(pk, *hb);
	}
	aep_pack_str(pk, "lastTransitionTime");
	if (keep_ltt)
		msgpack_pack_object(pk, *ltt);
	else
		aep_pack_str(pk, now_s);
}

/* ---- cluster CIDR ------------------------------------------------------------------ */

/* "a.b.c.d/p" into host-order address and prefix; false when malformed. */
static bool parse_cidr4(const char *s, size_t len, uint32_t *addr, unsigned *prefix)
{
	char buf[32];
	if (len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	char *slash = strchr(buf, '/');
	if (slash == NULL || slash[1] == '\0' || strlen(slash + 1) > 2)
		return false;
	*slash = '\0';
	struct in_addr in;
	if (inet_pton(AF_INET, buf, &in) != 1)
		return false;
	unsigned p = 0;
	for (const char *c = slash + 1; *c; c++) {
		if (*c < '0' || *c > '9')
			return false;
		p = p * 10 + (unsigned)(*c - '0');
	}
	if (p > 32)
		return false;
	*addr = ntohl(in.s_addr);
	*prefix = p;
	return true;
}

static uint32_t prefix_mask(unsigned p)
{
	return p == 0 ? 0 : 0xffffffffu << (32 - p);
}

int master__nodes_parse_cidr(struct master *m, const char *cidr, const char *size,
			     struct aep_error *e)
{
	uint32_t addr;
	unsigned prefix;
	unsigned long long n;
	if (!parse_cidr4(cidr, strlen(cidr), &addr, &prefix))
		return aep_errorf(e, AEP_EINVALID,
				  "--cluster-cidr \"%s\": must be an IPv4 network such as "
				  "10.128.0.0/14",
				  cidr);
	if ((addr & ~prefix_mask(prefix)) != 0)
		return aep_errorf(e, AEP_EINVALID,
				  "--cluster-cidr \"%s\": host bits are set (the network is "
				  "%u.%u.%u.%u/%u)",
				  cidr, (addr & prefix_mask(prefix)) >> 24,
				  ((addr & prefix_mask(prefix)) >> 16) & 255,
				  ((addr & prefix_mask(prefix)) >> 8) & 255,
				  addr & prefix_mask(prefix) & 255, prefix);
	if (aep_parse_uint(size, "--node-cidr-size", 1, 30, &n, e) != 0)
		return e->code;
	if (n < prefix || n - prefix > CIDR_SUBNETS_BITS)
		return aep_errorf(
		    e, AEP_EINVALID,
		    "--node-cidr-size %llu: must be between the cluster CIDR's "
		    "prefix (%u) and %u",
		    n, prefix, prefix + CIDR_SUBNETS_BITS < 30 ? prefix + CIDR_SUBNETS_BITS : 30);
	m->cluster_cidr_addr = addr;
	m->cluster_cidr_prefix = prefix;
	m->node_cidr_size = (unsigned)n;
	return 0;
}

int master__parse_duration(const char *s, const char *flag, int64_t *ms, struct aep_error *e)
{
	return aep_parse_duration(s, flag, 1, 30LL * 86400000, ms, e);
}

struct cidr_used {
	struct master *m;
	uint8_t *bits;
	uint32_t nsub;
};

static void mark_used(struct cidr_used *u, uint32_t addr, unsigned prefix)
{
	struct master *m = u->m;
	unsigned size = m->node_cidr_size;
	uint32_t cmask = prefix_mask(m->cluster_cidr_prefix);
	uint32_t lo = addr & prefix_mask(prefix);
	uint32_t hi = lo | ~prefix_mask(prefix);
	/* the part of [lo, hi] inside the cluster CIDR, in subnets */
	uint32_t clo = m->cluster_cidr_addr, chi = m->cluster_cidr_addr | ~cmask;
	if (hi < clo || lo > chi)
		return;
	if (lo < clo)
		lo = clo;
	if (hi > chi)
		hi = chi;
	uint32_t first = (lo - clo) >> (32 - size), last = (hi - clo) >> (32 - size);
	for (uint32_t i = first; i <= last && i < u->nsub; i++)
		u->bits[i / 8] |= (uint8_t)(1u << (i % 8));
}

static int cidr_visit(const struct aep_object *o, void *data)
{
	struct cidr_used *u = data;
	msgpack_zone zone;
	msgpack_object v;
	struct aep_error e = {0};
	msgpack_zone_init(&zone, 1024);
	if (aep_mp_unpack(o->data, o->len, &zone, &v, &e) == 0) {
		const msgpack_object *c = aep_mp_map_get(aep_mp_map_get(&v, "spec"), "podCIDR");
		uint32_t addr;
		unsigned prefix;
		if (c != NULL && c->type == MSGPACK_OBJECT_STR &&
		    parse_cidr4(c->via.str.ptr, c->via.str.size, &addr, &prefix))
			mark_used(u, addr, prefix);
	}
	msgpack_zone_destroy(&zone);
	return 0;
}

/* The lowest node subnet that no Node in the store overlaps and no
 * register in flight holds: 0 and its index, AEP_EUNAVAILABLE when the
 * cluster CIDR is full, AEP_ENOMEM. */
static int cidr_alloc(struct master_nodes *mn, uint32_t *index)
{
	struct master *m = mn->m;
	struct cidr_used u = {.m = m};
	u.nsub = 1u << (m->node_cidr_size - m->cluster_cidr_prefix);
	u.bits = aep_calloc((u.nsub + 7) / 8, 1);
	if (u.bits == NULL)
		return AEP_ENOMEM;
	aep_store_list(m->store, AEP_KIND_NODE, NULL, NULL, cidr_visit, &u);
	for (struct resv *r = mn->resv; r != NULL; r = r->next)
		u.bits[r->index / 8] |= (uint8_t)(1u << (r->index % 8));
	int rv = AEP_EUNAVAILABLE;
	for (uint32_t i = 0; i < u.nsub; i++) {
		if (u.bits[i / 8] == 0xff) {
			i += 7;
			continue;
		}
		if (!(u.bits[i / 8] & (1u << (i % 8)))) {
			*index = i;
			rv = 0;
			break;
		}
	}
	aep_free(u.bits);
	return rv;
}

static void cidr_format(struct master *m, uint32_t index, char *buf, size_t size)
{
	uint32_t a = m->cluster_cidr_addr + (index << (32 - m->node_cidr_size));
	snprintf(buf, size, "%u.%u.%u.%u/%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255,
		 m->node_cidr_size);
}

static void resv_drop(struct master_nodes *mn, struct resv *r)
{
	for (struct resv **pp = &mn->resv; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			aep_free(r);
			return;
		}
	}
}

/* ---- node records ----------------------------------------------------------------- */

static struct noderec *rec_find(struct master_nodes *mn, const char *name)
{
	struct noderec probe = {.name = (char *)name};
	return RB_FIND(master__node_recs, &mn->recs, &probe);
}

/* The record of @node (a Node), made when new: a fresh grace period. A
 * Node stored as lost by an earlier leader starts lost, with a fresh
 * eviction timeout. */
static struct noderec *rec_get(struct master_nodes *mn, const struct aep_object *node)
{
	struct noderec *rec = rec_find(mn, node->meta.name);
	if (rec != NULL)
		return rec;
	rec = aep_calloc(1, sizeof(*rec));
	if (rec == NULL || (rec->name = aep_strdup(node->meta.name)) == NULL) {
		aep_free(rec);
		return NULL;
	}
	rec->state = NODE_READY;
	rec->last_hb_ns = rec->lost_at_ns = now_ns();
	msgpack_zone zone;
	msgpack_object v;
	struct aep_error e = {0};
	msgpack_zone_init(&zone, 1024);
	if (aep_mp_unpack(node->data, node->len, &zone, &v, &e) == 0) {
		const msgpack_object *rc = ready_condition(&v);
		if (rc != NULL && !aep_mp_str_eq(aep_mp_map_get(rc, "status"), "True") &&
		    aep_mp_str_eq(aep_mp_map_get(rc, "reason"), "NodeStatusUnknown"))
			rec->state = NODE_LOST;
	}
	msgpack_zone_destroy(&zone);
	RB_INSERT(master__node_recs, &mn->recs, rec);
	return rec;
}

static void rec_free(struct master_nodes *mn, struct noderec *rec)
{
	RB_REMOVE(master__node_recs, &mn->recs, rec);
	aep_free(rec->name);
	aep_free(rec);
}

/* ---- Ready writes and evictions ---------------------------------------------------- */

struct node_write {
	struct master *m;
	uint64_t epoch;
	char name[AEP_NAME_MAX + 1];
	bool ready;
};

static struct master_nodes *current(struct master *m, uint64_t epoch)
{
	return m->nodes != NULL && m->nodes->epoch == epoch ? m->nodes : NULL;
}

static void ready_done(void *data, const struct aep_result *res)
{
	struct node_write *w = data;
	struct master_nodes *mn = current(w->m, w->epoch);
	struct noderec *rec = mn != NULL ? rec_find(mn, w->name) : NULL;
	if (rec != NULL) {
		rec->writing = false;
		if (res->code == 0) {
			if (w->ready)
				rec->ready_written_ns = now_ns();
			/* a newer want (the node came back meanwhile) stays */
			if (rec->want == (w->ready ? WANT_TRUE : WANT_FALSE))
				rec->want = WANT_NONE;
		} else if (res->code != AEP_ECONFLICT && res->code != AEP_ENOTFOUND) {
			fprintf(stderr, "aep master %s: node %s: writing Ready=%s: %s\n",
				w->m->name, w->name, w->ready ? "True" : "False",
				res->msg != NULL ? res->msg : aep_err_code(res->code));
		}
		if (res->code == AEP_ENOTFOUND)
			rec->want = WANT_NONE;
	}
	aep_free(w);
}

/* Write the Node's Ready condition (rec->want); retried by the tick while
 * it fails. */
static void ready_write(struct master_nodes *mn, struct noderec *rec)
{
	struct master *m = mn->m;
	bool ready = rec->want == WANT_TRUE;
	struct aep_object *node = aep_store_get(m->store, AEP_KIND_NODE, "", rec->name);
	struct aep_object *out = NULL;
	struct node_write *w = NULL;
	struct aep_error e = {0};
	msgpack_zone zone;
	msgpack_object v;
	struct aep_buf b;
	msgpack_packer pk;
	char msg[160];

	if (node == NULL) {
		rec->want = WANT_NONE;
		return;
	}
	aep_buf_init(&b);
	msgpack_zone_init(&zone, 2048);
	if (aep_mp_unpack(node->data, node->len, &zone, &v, &e) != 0)
		goto out;
	if (!ready) {
		/* already recorded (by this leader or an earlier one)? */
		const msgpack_object *rc = ready_condition(&v);
		if (rc != NULL && aep_mp_str_eq(aep_mp_map_get(rc, "status"), "False") &&
		    aep_mp_str_eq(aep_mp_map_get(rc, "reason"), "NodeStatusUnknown")) {
			rec->want = WANT_NONE;
			goto out;
		}
	}
	snprintf(msg, sizeof(msg),
		 ready ? "the node agent is posting heartbeats"
		       : "the node agent stopped posting heartbeats (no session for %llds)",
		 (long long)(m->node_grace_ms / 1000));
	aep_packer_init(&pk, &b);
	pack_node_ready(&pk, &v, ready, ready ? "NodeReady" : "NodeStatusUnknown", msg);
	if (b.failed || aep_object_decode(b.data, b.len, &out, &e) != 0) {
		fprintf(stderr, "aep master %s: node %s: cannot write Ready: %s\n", m->name,
			rec->name, e.msg[0] ? e.msg : "out of memory");
		goto out;
	}
	w = aep_calloc(1, sizeof(*w));
	if (w == NULL)
		goto out;
	w->m = m;
	w->epoch = mn->epoch;
	w->ready = ready;
	snprintf(w->name, sizeof(w->name), "%s", rec->name);
	struct aep_cmd cmd = {
	    .op = AEP_OP_UPDATE,
	    .kind = AEP_KIND_NODE,
	    .precond_rv = node->meta.rv,
	    .now_ns = aep_now_realtime_ns(),
	    .obj = out->data,
	    .obj_len = out->len,
	};
	if (aep_raft_submit(m->raft, &cmd, ready_done, w) == 0)
		rec->writing = true;
	else
		aep_free(w);
out:
	msgpack_zone_destroy(&zone);
	aep_buf_free(&b);
	aep_object_unref(out);
	aep_object_unref(node);
}

static void evict_done(void *data, const struct aep_result *res)
{
	struct node_write *w = data;
	struct master_nodes *mn = current(w->m, w->epoch);
	struct noderec *rec = mn != NULL ? rec_find(mn, w->name) : NULL;
	if (rec != NULL && rec->evicting > 0)
		rec->evicting--;
	if (res->code != 0 && res->code != AEP_ENOTFOUND && res->code != AEP_ECONFLICT)
		fprintf(stderr, "aep master %s: evicting a pod of node %s: %s\n", w->m->name,
			w->name, res->msg != NULL ? res->msg : aep_err_code(res->code));
	aep_free(w);
}

struct evict_ctx {
	struct master_nodes *mn;
	struct noderec *rec;
};

static int evict_visit(const struct aep_object *pod, void *data)
{
	struct evict_ctx *x = data;
	struct master *m = x->mn->m;
	struct node_write *w = aep_calloc(1, sizeof(*w));
	if (w == NULL)
		return 1;
	w->m = m;
	w->epoch = x->mn->epoch;
	snprintf(w->name, sizeof(w->name), "%s", x->rec->name);
	struct aep_cmd cmd = {
	    .op = AEP_OP_DELETE,
	    .kind = AEP_KIND_POD,
	    .ns = pod->meta.ns,
	    .name = pod->meta.name,
	    .precond_rv = pod->meta.rv,
	    .now_ns = aep_now_realtime_ns(),
	};
	if (aep_raft_submit(m->raft, &cmd, evict_done, w) != 0) {
		aep_free(w);
		return 1;
	}
	fprintf(stderr, "aep master %s: node %s lost: deleting pod %s/%s\n", m->name, x->rec->name,
		pod->meta.ns, pod->meta.name);
	x->rec->evicting++;
	return 0;
}

/* ---- sessions --------------------------------------------------------------------- */

static void stream_finish(struct stream *st, const char *why, bool agent_done);
static void pump(struct session *s);

static void session_unref(struct session *s)
{
	if (s == NULL || --s->refs > 0)
		return;
	while (s->head != NULL) {
		struct op *op = s->head;
		s->head = op->next;
		aep_object_unref(op->pod);
		aep_free(op);
	}
	aep_rpc_conn_unref(s->conn);
	aep_free(s->name);
	aep_free(s);
}

static struct session *session_find(struct master_nodes *mn, const char *name)
{
	struct session probe = {.name = (char *)name};
	return name != NULL ? RB_FIND(master__node_sessions, &mn->sessions, &probe) : NULL;
}

static void queue_clear(struct session *s)
{
	while (s->head != NULL) {
		struct op *op = s->head;
		s->head = op->next;
		aep_object_unref(op->pod);
		aep_free(op);
	}
	s->tail = NULL;
	s->nops = 0;
}

/* End @s: out of the tables, its streams ended, its connection closed
 * (calls in flight are cancelled from inside; their callbacks see
 * s->gone). */
static void session_end(struct master_nodes *mn, struct session *s, const char *why)
{
	if (s->gone)
		return;
	s->gone = true;
	RB_REMOVE(master__node_sessions, &mn->sessions, s);
	RB_REMOVE(master__node_conns, &mn->conns, s);
	queue_clear(s);
	char msg[AEP_ERRMSG_MAX];
	snprintf(msg, sizeof(msg), "the session of node %s ended (%s)", s->name, why);
	for (struct stream **pp = &mn->streams; *pp != NULL;) {
		struct stream *st = *pp;
		if (st->s == s) {
			*pp = st->next;
			stream_finish(st, msg, false);
		} else {
			pp = &st->next;
		}
	}
	fprintf(stderr, "aep master %s: node %s: session from %s ended: %s\n", mn->m->name, s->name,
		aep_rpc_conn_peer(s->conn), why);
	aep_rpc_conn_close(s->conn);
	session_unref(s);
}

/* Make @c the session of node @name, ending an older one. */
static struct session *session_open(struct master_nodes *mn, struct aep_rpc_conn *c,
				    const char *name)
{
	struct session *old = session_find(mn, name);
	if (old != NULL && old->conn == c)
		return old;
	if (old != NULL)
		session_end(mn, old, "replaced by a newer session");
	struct session *s = aep_calloc(1, sizeof(*s));
	if (s == NULL || (s->name = aep_strdup(name)) == NULL) {
		aep_free(s);
		return NULL;
	}
	s->m = mn->m;
	s->conn = aep_rpc_conn_ref(c);
	s->refs = 1;
	RB_INSERT(master__node_sessions, &mn->sessions, s);
	RB_INSERT(master__node_conns, &mn->conns, s);
	fprintf(stderr, "aep master %s: node %s: session from %s\n", mn->m->name, name,
		aep_rpc_conn_peer(c));
	return s;
}

static void resync(struct session *s)
{
	if (s == NULL || s->gone)
		return;
	queue_clear(s);
	s->need_sync = true;
	pump(s);
}

static void sync_failed(struct session *s)
{
	unsigned ms = SYNC_RETRY_MIN_MS;
	for (unsigned i = 0; i < s->sync_failures && ms < SYNC_RETRY_MAX_MS; i++)
		ms *= 2;
	if (ms > SYNC_RETRY_MAX_MS)
		ms = SYNC_RETRY_MAX_MS;
	s->sync_failures++;
	s->need_sync = true;
	s->sync_not_before = now_ns() + (int64_t)ms * 1000000;
}

/* Add a push for @pod to @s: a newer pod.run for the same uid replaces a
 * queued one; a kill drops the queued runs of its pod. */
static void enqueue(struct session *s, const struct aep_object *pod, bool kill)
{
	if (s == NULL || s->gone)
		return;
	if (s->need_sync && !s->sync_inflight) {
		pump(s); /* the coming node.sync carries it */
		return;
	}
	for (struct op **pp = &s->head, *prev = NULL; *pp != NULL;) {
		struct op *op = *pp;
		if (!op->kill && strcmp(op->pod->meta.uid, pod->meta.uid) == 0) {
			if (!kill) {
				aep_object_unref(op->pod);
				op->pod = aep_object_ref((struct aep_object *)pod);
				pump(s);
				return;
			}
			*pp = op->next;
			if (s->tail == op)
				s->tail = prev;
			aep_object_unref(op->pod);
			aep_free(op);
			s->nops--;
			continue;
		}
		prev = op;
		pp = &op->next;
	}
	if (s->nops >= SESSION_QUEUE_MAX) {
		resync(s);
		return;
	}
	struct op *op = aep_calloc(1, sizeof(*op));
	if (op == NULL) {
		resync(s);
		return;
	}
	op->kill = kill;
	op->pod = aep_object_ref((struct aep_object *)pod);
	if (s->tail != NULL)
		s->tail->next = op;
	else
		s->head = op;
	s->tail = op;
	s->nops++;
	pump(s);
}

/* One call in flight on a session. */
struct push {
	struct session *s;
	enum { PUSH_RUN, PUSH_KILL, PUSH_SYNC } what;
	char ns[AEP_NAME_MAX + 1];
	char name[AEP_NAME_MAX + 1];
};

static const char *const push_methods[] = {"pod.run", "pod.kill", "node.sync"};

static void write_statuses(struct session *s, const msgpack_object *result);

static void push_done(void *data, const struct aep_rpc_reply *reply)
{
	struct push *p = data;
	struct session *s = p->s;
	s->inflight--;
	if (p->what == PUSH_SYNC)
		s->sync_inflight = false;
	if (!s->gone) {
		if (reply->code != 0) {
			fprintf(stderr, "aep master %s: node %s: %s %s%s%s: %s: %.*s; resyncing\n",
				s->m->name, s->name, push_methods[p->what], p->ns,
				p->ns[0] ? "/" : "", p->name, aep_err_code(reply->code),
				(int)(reply->msg_len > 200 ? 200 : reply->msg_len),
				reply->msg ? reply->msg : "");
			if (p->what == PUSH_SYNC) {
				sync_failed(s);
			} else {
				queue_clear(s);
				s->need_sync = true;
			}
		} else if (p->what == PUSH_SYNC) {
			s->sync_failures = 0;
			write_statuses(s, reply->result);
		}
		pump(s);
	}
	session_unref(s);
	aep_free(p);
}

static int push_call(struct session *s, struct push *p, const struct aep_buf *params)
{
	if (params->failed) {
		aep_free(p);
		return AEP_ENOMEM;
	}
	int rv = aep_rpc_conn_call(s->conn, push_methods[p->what], params->data, params->len,
				   push_done, p);
	if (rv != 0) {
		aep_free(p);
		return rv;
	}
	s->refs++;
	s->inflight++;
	return 0;
}

struct sync_acc {
	struct aep_buf pods;
	uint32_t n;
};

static int sync_visit(const struct aep_object *pod, void *data)
{
	struct sync_acc *acc = data;
	acc->n++;
	return aep_buf_append(&acc->pods, pod->data, pod->len) != 0 ||
	       acc->pods.len > SYNC_BYTES_MAX;
}

/* node.sync {generation, pods}: every pod bound to the node; the
 * generation is the store's revision, which grows across leaders. */
static int send_sync(struct session *s)
{
	struct master *m = s->m;
	struct sync_acc acc = {.n = 0};
	struct aep_buf b;
	msgpack_packer pk;
	char gen[24];
	int rv;
	aep_buf_init(&acc.pods);
	aep_buf_init(&b);
	if (aep_store_list_pods_on_node(m->store, s->name, sync_visit, &acc) != 0) {
		rv = acc.pods.failed ? AEP_ENOMEM : AEP_ETOOLARGE;
		goto out;
	}
	snprintf(gen, sizeof(gen), "%llu", (unsigned long long)aep_store_revision(m->store));
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "generation");
	msgpack_pack_uint64(&pk, aep_store_revision(m->store));
	aep_pack_str(&pk, "pods");
	msgpack_pack_array(&pk, acc.n);
	aep_buf_append(&b, acc.pods.data, acc.pods.len);
	struct push *p = aep_calloc(1, sizeof(*p));
	if (p == NULL) {
		rv = AEP_ENOMEM;
		goto out;
	}
	p->s = s;
	p->what = PUSH_SYNC;
	rv = push_call(s, p, &b);
	if (rv == 0) {
		s->need_sync = false;
		s->sync_inflight = true;
		queue_clear(s); /* the sync carries them */
	}
out:
	if (rv == AEP_ETOOLARGE)
		fprintf(stderr,
			"aep master %s: node %s: its pods take more than %u bytes: node.sync "
			"cannot carry them; retrying\n",
			m->name, s->name, SYNC_BYTES_MAX);
	aep_buf_free(&acc.pods);
	aep_buf_free(&b);
	return rv;
}

static int send_op(struct session *s, struct op *op)
{
	const struct aep_object *pod = op->pod;
	struct aep_buf b;
	msgpack_packer pk;
	struct push *p = aep_calloc(1, sizeof(*p));
	if (p == NULL)
		return AEP_ENOMEM;
	p->s = s;
	p->what = op->kill ? PUSH_KILL : PUSH_RUN;
	snprintf(p->ns, sizeof(p->ns), "%s", pod->meta.ns);
	snprintf(p->name, sizeof(p->name), "%s", pod->meta.name);
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	if (op->kill) {
		const msgpack_object *grace = NULL;
		msgpack_zone zone;
		msgpack_object v;
		struct aep_error e = {0};
		msgpack_zone_init(&zone, 1024);
		if (aep_mp_unpack(pod->data, pod->len, &zone, &v, &e) == 0)
			grace = aep_mp_map_get(aep_mp_map_get(&v, "spec"),
					       "terminationGracePeriodSeconds");
		msgpack_pack_map(&pk, grace != NULL ? 4 : 3);
		aep_pack_str(&pk, "uid");
		aep_pack_str(&pk, pod->meta.uid);
		aep_pack_str(&pk, "namespace");
		aep_pack_str(&pk, pod->meta.ns);
		aep_pack_str(&pk, "name");
		aep_pack_str(&pk, pod->meta.name);
		if (grace != NULL) {
			aep_pack_str(&pk, "gracePeriodSeconds");
			msgpack_pack_object(&pk, *grace);
		}
		msgpack_zone_destroy(&zone);
	} else {
		msgpack_pack_map(&pk, 1);
		aep_pack_str(&pk, "pod");
		aep_buf_append(&b, pod->data, pod->len);
	}
	int rv = push_call(s, p, &b);
	aep_buf_free(&b);
	return rv;
}

/* Send what @s may send now: a node.sync when one is due, then queued
 * pushes while under the bounds. */
static void pump(struct session *s)
{
	if (s->gone)
		return;
	if (s->need_sync) {
		if (s->sync_inflight || now_ns() < s->sync_not_before ||
		    s->inflight >= SESSION_INFLIGHT)
			return; /* the answer or the tick pumps again */
		if (send_sync(s) != 0) {
			sync_failed(s);
			return;
		}
	}
	while (s->head != NULL && s->inflight < SESSION_INFLIGHT &&
	       aep_rpc_conn_pending(s->conn) < SESSION_PENDING_MAX) {
		struct op *op = s->head;
		s->head = op->next;
		if (s->head == NULL)
			s->tail = NULL;
		s->nops--;
		int rv = send_op(s, op);
		aep_object_unref(op->pod);
		aep_free(op);
		if (rv != 0) {
			queue_clear(s);
			sync_failed(s);
			return;
		}
	}
}

/* ---- pod status ------------------------------------------------------------------- */

/* A status write for a pod: from pod.status (@r answered when done) or
 * from a node.sync answer (@r NULL). */
struct status_write {
	struct master *m;
	struct req *r;
	char node[AEP_NAME_MAX + 1];
	char ns[AEP_NAME_MAX + 1];
	char name[AEP_NAME_MAX + 1];
	char uid[40];
	struct aep_buf status; /* the status map as the agent sent it */
	unsigned tries;
};

static void status_free(struct status_write *w)
{
	aep_buf_free(&w->status);
	aep_free(w);
}

static void status_finish(struct status_write *w, int code, const char *msg)
{
	if (w->r != NULL) {
		if (code == 0)
			master__req_reply(w->r, "\x80", 1); /* {} */
		else
			master__req_error(w->r, code, msg);
	} else if (code != 0 && code != AEP_ENOTFOUND && code != AEP_EUNAVAILABLE) {
		fprintf(stderr, "aep master %s: node %s: status of pod %s/%s: %s\n", w->m->name,
			w->node, w->ns, w->name, msg);
	}
	status_free(w);
}

static void status_done(void *data, const struct aep_result *res);

/* Build the pod with the new status from the store's copy and submit it.
 * Returns 0 when submitted (status_done finishes) or when there is nothing
 * to write (*@same set), or an error code with @e. */
static int status_submit(struct status_write *w, bool *same, struct aep_error *e)
{
	struct master *m = w->m;
	struct aep_object *pod = aep_store_get(m->store, AEP_KIND_POD, w->ns, w->name);
	struct aep_object *out = NULL;
	msgpack_zone zone;
	msgpack_object v, st;
	struct aep_buf b;
	msgpack_packer pk;
	int rv;

	if (pod == NULL || strcmp(pod->meta.uid, w->uid) != 0) {
		aep_object_unref(pod);
		return aep_errorf(e, AEP_ENOTFOUND,
				  "pods \"%s\" with uid %s not found in "
				  "namespace \"%s\"",
				  w->name, w->uid, w->ns);
	}
	if (!same_str(pod->node_name, w->node)) {
		aep_object_unref(pod);
		return aep_errorf(e, AEP_EFORBIDDEN, "pod %s/%s is not bound to node %s", w->ns,
				  w->name, w->node);
	}
	aep_buf_init(&b);
	msgpack_zone_init(&zone, 2048);
	rv = aep_mp_unpack(pod->data, pod->len, &zone, &v, e);
	if (rv == 0)
		rv = aep_mp_unpack(w->status.data, w->status.len, &zone, &st, e);
	if (rv != 0)
		goto out;
	aep_packer_init(&pk, &b);
	const msgpack_object *old = aep_mp_map_get(&v, "status");
	msgpack_pack_map(&pk, v.via.map.size + (old != NULL ? 0 : 1));
	for (uint32_t i = 0; i < v.via.map.size; i++) {
		const msgpack_object_kv *kv = &v.via.map.ptr[i];
		if (aep_mp_str_eq(&kv->key, "status"))
			continue;
		msgpack_pack_object(&pk, kv->key);
		msgpack_pack_object(&pk, kv->val);
	}
	aep_pack_str(&pk, "status");
	msgpack_pack_object(&pk, st);
	if (b.failed) {
		rv = aep_errorf(e, AEP_ENOMEM, "out of memory");
		goto out;
	}
	rv = aep_object_decode(b.data, b.len, &out, e);
	if (rv != 0) {
		/* a field path like "status.podIP: ..." names the fault */
		aep_error_prefix(e, "pod.status %s/%s", w->ns, w->name);
		goto out;
	}
	if (out->len == pod->len && memcmp(out->data, pod->data, pod->len) == 0) {
		*same = true; /* the same status: nothing to write */
		rv = 0;
		goto out;
	}
	struct aep_cmd cmd = {
	    .op = AEP_OP_UPDATE,
	    .kind = AEP_KIND_POD,
	    .precond_rv = pod->meta.rv,
	    .now_ns = aep_now_realtime_ns(),
	    .obj = out->data,
	    .obj_len = out->len,
	};
	rv = aep_raft_submit(m->raft, &cmd, status_done, w);
	if (rv == AEP_ENOTLEADER)
		rv = aep_errorf(e, AEP_EUNAVAILABLE, "leadership is changing; retry");
	else if (rv != 0)
		rv = aep_errorf(e, rv, "cannot submit the write");
out:
	msgpack_zone_destroy(&zone);
	aep_buf_free(&b);
	aep_object_unref(out);
	aep_object_unref(pod);
	return rv;
}

static void status_start(struct status_write *w)
{
	struct aep_error e = {0};
	bool same = false;
	int rv = status_submit(w, &same, &e);
	if (rv == 0 && same)
		status_finish(w, 0, NULL);
	else if (rv != 0)
		status_finish(w, rv, e.msg);
}

static void status_done(void *data, const struct aep_result *res)
{
	struct status_write *w = data;
	/* Another write to the pod (an earlier status, a label) came first:
	 * build again on the new copy; an identical status then writes
	 * nothing. */
	if (res->code == AEP_ECONFLICT && ++w->tries < WRITE_RETRIES) {
		status_start(w);
		return;
	}
	status_finish(w, res->code, res->msg != NULL ? res->msg : aep_err_code(res->code));
}

static struct status_write *status_new(struct master *m, const char *node, const char *ns,
				       const char *name, const char *uid,
				       const msgpack_object *status)
{
	struct status_write *w = aep_calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	w->m = m;
	snprintf(w->node, sizeof(w->node), "%s", node);
	snprintf(w->ns, sizeof(w->ns), "%s", ns);
	snprintf(w->name, sizeof(w->name), "%s", name);
	snprintf(w->uid, sizeof(w->uid), "%s", uid);
	aep_buf_init(&w->status);
	if (pack_result(status, &w->status) != 0) {
		status_free(w);
		return NULL;
	}
	return w;
}

struct uid_find {
	const msgpack_object *uid;
	struct aep_object *pod;
};

static int uid_visit(const struct aep_object *pod, void *data)
{
	struct uid_find *f = data;
	if (f->uid->via.str.size == strlen(pod->meta.uid) &&
	    memcmp(f->uid->via.str.ptr, pod->meta.uid, f->uid->via.str.size) == 0) {
		f->pod = aep_object_ref((struct aep_object *)pod);
		return 1;
	}
	return 0;
}

/* A node.sync answer {pods: [{uid, status}, ...]}: what the agent runs
 * now; the statuses of pods still bound to the node are written. */
static void write_statuses(struct session *s, const msgpack_object *result)
{
	const msgpack_object *pods = aep_mp_map_get(result, "pods");
	if (pods == NULL || pods->type != MSGPACK_OBJECT_ARRAY)
		return;
	for (uint32_t i = 0; i < pods->via.array.size; i++) {
		const msgpack_object *it = &pods->via.array.ptr[i];
		const msgpack_object *uid = aep_mp_map_get(it, "uid");
		const msgpack_object *st = aep_mp_map_get(it, "status");
		if (uid == NULL || uid->type != MSGPACK_OBJECT_STR || st == NULL ||
		    st->type != MSGPACK_OBJECT_MAP)
			continue;
		struct uid_find f = {.uid = uid};
		aep_store_list_pods_on_node(s->m->store, s->name, uid_visit, &f);
		if (f.pod == NULL)
			continue; /* the agent kills what the sync did not list */
		struct status_write *w = status_new(s->m, s->name, f.pod->meta.ns, f.pod->meta.name,
						    f.pod->meta.uid, st);
		aep_object_unref(f.pod);
		if (w != NULL)
			status_start(w);
	}
}

/* ---- the store feed (dispatcher, node records) ----------------------------------- */

static void on_pod_event(const struct aep_event *ev, void *data)
{
	struct master_nodes *mn = data;
	if (ev == NULL) {
		mn->rebuild = true;
		return;
	}
	const struct aep_object *o = ev->obj, *p = ev->prev;
	switch (ev->type) {
	case AEP_EV_ADDED: enqueue(session_find(mn, o->node_name), o, false); break;
	case AEP_EV_DELETED: enqueue(session_find(mn, o->node_name), o, true); break;
	case AEP_EV_MODIFIED:
		if (p == NULL) {
			resync(session_find(mn, o->node_name)); /* cannot tell what changed */
		} else if (!same_str(p->node_name, o->node_name)) {
			enqueue(session_find(mn, p->node_name), p, true);
			enqueue(session_find(mn, o->node_name), o, false);
		} else if (p->meta.generation != o->meta.generation) {
			enqueue(session_find(mn, o->node_name), o, false);
		}
		break;
	}
}

static void on_node_event(const struct aep_event *ev, void *data)
{
	struct master_nodes *mn = data;
	if (ev == NULL) {
		mn->rebuild = true;
		return;
	}
	if (ev->type == AEP_EV_DELETED) {
		struct noderec *rec = rec_find(mn, ev->obj->meta.name);
		if (rec != NULL)
			rec_free(mn, rec);
		/* The agent registers again and so makes its Node again, as
		 * a kubelet does. */
		struct session *s = session_find(mn, ev->obj->meta.name);
		if (s != NULL)
			session_end(mn, s, "its Node was deleted");
	} else if (rec_get(mn, ev->obj) == NULL) {
		mn->rebuild = true;
	}
}

static void unwatch(struct master_nodes *mn)
{
	if (mn->w_pod != NULL)
		aep_store_unwatch(mn->m->store, mn->w_pod);
	if (mn->w_node != NULL)
		aep_store_unwatch(mn->m->store, mn->w_node);
	mn->w_pod = mn->w_node = NULL;
}

static int seed_rec(const struct aep_object *o, void *data)
{
	struct master_nodes *mn = data;
	struct noderec *rec = rec_get(mn, o);
	if (rec == NULL)
		return 1;
	rec->seen = true;
	return 0;
}

/* (Re)build the records from the store and watch from now on; every
 * session resyncs (events may have been missed). Records kept from
 * before keep their times. */
static int build(struct master_nodes *mn)
{
	struct master *m = mn->m;
	struct aep_error e = {0};
	struct noderec *rec, *next;
	unwatch(mn);
	mn->rebuild = true;
	RB_FOREACH(rec, master__node_recs, &mn->recs)
	rec->seen = false;
	if (aep_store_list(m->store, AEP_KIND_NODE, NULL, NULL, seed_rec, mn) != 0)
		return AEP_ENOMEM;
	RB_FOREACH_SAFE(rec, master__node_recs, &mn->recs, next)
	{
		if (!rec->seen)
			rec_free(mn, rec);
	}
	if (aep_store_watch(m->store, AEP_KIND_POD, NULL, NULL, 0, on_pod_event, mn, &mn->w_pod,
			    &e) != 0 ||
	    aep_store_watch(m->store, AEP_KIND_NODE, NULL, NULL, 0, on_node_event, mn, &mn->w_node,
			    &e) != 0) {
		unwatch(mn);
		return AEP_ENOMEM;
	}
	mn->rebuild = false;
	struct session *s;
	RB_FOREACH(s, master__node_sessions, &mn->sessions)
	{
		queue_clear(s);
		s->need_sync = true;
	}
	return 0;
}

/* ---- the lifecycle tick --------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
	struct master_nodes *mn = t->data;
	struct master *m = mn->m;
	int64_t now = now_ns();
	int64_t grace = m->node_grace_ms * 1000000, evict = m->pod_eviction_ms * 1000000;
	struct noderec *rec;
	struct session *s, *snext;

	if (mn->rebuild && build(mn) != 0)
		return; /* out of memory: the next tick tries again */
	RB_FOREACH(rec, master__node_recs, &mn->recs)
	{
		if (now - rec->last_hb_ns >= grace) {
			s = session_find(mn, rec->name);
			if (s != NULL)
				session_end(mn, s, "no heartbeat within --node-grace");
			if (rec->state == NODE_READY) {
				fprintf(stderr,
					"aep master %s: node %s: no heartbeat for %llds: "
					"Ready=False\n",
					m->name, rec->name, (long long)(m->node_grace_ms / 1000));
				set_state(rec, NODE_LOST);
				rec->lost_at_ns = now;
				rec->want = WANT_FALSE;
			}
			if (rec->state == NODE_LOST && now - rec->lost_at_ns >= evict)
				set_state(rec, NODE_EVICTED);
			if (rec->state == NODE_EVICTED && rec->evicting == 0) {
				struct evict_ctx x = {mn, rec};
				aep_store_list_pods_on_node(m->store, rec->name, evict_visit, &x);
			}
		}
		if (rec->want != WANT_NONE && !rec->writing)
			ready_write(mn, rec);
	}
	RB_FOREACH_SAFE(s, master__node_sessions, &mn->sessions, snext)
	pump(s);
}

/* ---- start and stop ------------------------------------------------------------------- */

int master__nodes_start(struct master *m)
{
	struct master_nodes *mn = aep_calloc(1, sizeof(*mn));
	if (mn == NULL)
		return AEP_ENOMEM;
	mn->m = m;
	mn->epoch = ++m->nodes_epoch;
	RB_INIT(&mn->sessions);
	RB_INIT(&mn->conns);
	RB_INIT(&mn->recs);
	uv_timer_init(m->loop, &mn->timer);
	mn->timer.data = mn;
	m->nodes = mn;
	if (build(mn) != 0)
		fprintf(stderr, "aep master %s: node lifecycle: out of memory; retrying\n",
			m->name);
	uv_timer_start(&mn->timer, on_tick, TICK_MS, TICK_MS);
	return 0;
}

static void timer_closed(uv_handle_t *h)
{
	aep_free(h->data);
}

void master__nodes_stop(struct master *m)
{
	struct master_nodes *mn = m->nodes;
	if (mn == NULL)
		return;
	m->nodes = NULL;
	m->nodes_epoch++;
	unwatch(mn);
	while (mn->streams != NULL) {
		struct stream *st = mn->streams;
		mn->streams = st->next;
		stream_finish(st, "this master is no longer the leader", false);
	}
	struct session *s, *snext;
	RB_FOREACH_SAFE(s, master__node_sessions, &mn->sessions, snext)
	session_end(mn, s, "this master is no longer the leader");
	struct noderec *rec, *rnext;
	RB_FOREACH_SAFE(rec, master__node_recs, &mn->recs, rnext)
	rec_free(mn, rec);
	while (mn->resv != NULL)
		resv_drop(mn, mn->resv);
	uv_close((uv_handle_t *)&mn->timer, timer_closed);
}

void master__nodes_conn_closed(struct master *m, struct aep_rpc_conn *c)
{
	struct master_nodes *mn = m->nodes;
	if (mn == NULL)
		return;
	struct session probe = {.conn = c};
	struct session *s = RB_FIND(master__node_conns, &mn->conns, &probe);
	if (s != NULL)
		session_end(mn, s, "the connection closed");
	for (struct stream **pp = &mn->streams; *pp != NULL;) {
		struct stream *st = *pp;
		if (st->client == c) {
			*pp = st->next;
			st->client_gone = true;
			stream_finish(st, NULL, false);
		} else {
			pp = &st->next;
		}
	}
}

/* ---- node.register ----------------------------------------------------------------- */

struct reg {
	struct master *m;
	uint64_t epoch;
	struct req *r;
	struct aep_object *agent; /* the Node as the agent sent it */
	struct resv *resv;
	unsigned tries;
};

static void reg_free(struct reg *g)
{
	struct master_nodes *mn = current(g->m, g->epoch);
	if (mn != NULL && g->resv != NULL)
		resv_drop(mn, g->resv);
	aep_object_unref(g->agent);
	aep_free(g);
}

/* Pack the Node to store: the agent's labels and status (annotations and
 * spec kept when it exists; a new Node takes the agent's spec), a pod
 * subnet when the spec has none, Ready=True. */
static int reg_build(struct reg *g, const struct aep_object *stored, struct aep_buf *out,
		     struct aep_error *e)
{
	struct master_nodes *mn = current(g->m, g->epoch);
	msgpack_zone zone;
	msgpack_object a, s, base;
	struct aep_buf b;
	msgpack_packer pk;
	char cidr[40] = "";
	int rv;

	aep_buf_init(&b);
	msgpack_zone_init(&zone, 4096);
	rv = aep_mp_unpack(g->agent->data, g->agent->len, &zone, &a, e);
	if (rv == 0 && stored != NULL)
		rv = aep_mp_unpack(stored->data, stored->len, &zone, &s, e);
	if (rv != 0)
		goto out;
	const msgpack_object *src = stored != NULL ? &s : &a;
	const msgpack_object *ameta = aep_mp_map_get(&a, "metadata");
	const msgpack_object *labels = aep_mp_map_get(ameta, "labels");
	const msgpack_object *annots =
	    aep_mp_map_get(aep_mp_map_get(src, "metadata"), "annotations");
	const msgpack_object *spec = aep_mp_map_get(src, "spec");
	const msgpack_object *status = aep_mp_map_get(&a, "status");
	const msgpack_object *pc = aep_mp_map_get(spec, "podCIDR");
	bool has_cidr =
	    stored != NULL && pc != NULL && pc->type == MSGPACK_OBJECT_STR && pc->via.str.size > 0;
	if (!has_cidr) {
		/* a new Node's subnet is the cluster's to choose, not the agent's */
		if (g->resv != NULL) {
			resv_drop(mn, g->resv);
			g->resv = NULL;
		}
		uint32_t index;
		struct resv *r = aep_calloc(1, sizeof(*r));
		rv = r == NULL ? AEP_ENOMEM : cidr_alloc(mn, &index);
		if (rv != 0) {
			aep_free(r);
			if (rv == AEP_EUNAVAILABLE)
				aep_errorf(e, rv,
					   "node %s: the cluster CIDR has no free /%u subnet left",
					   g->agent->meta.name, g->m->node_cidr_size);
			else
				aep_errorf(e, rv, "out of memory");
			goto out;
		}
		r->index = index;
		r->next = mn->resv;
		mn->resv = r;
		g->resv = r;
		cidr_format(g->m, index, cidr, sizeof(cidr));
	}
	bool spec_map = spec != NULL && spec->type == MSGPACK_OBJECT_MAP;
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 5);
	aep_pack_str(&pk, "apiVersion");
	aep_pack_str(&pk, "v1");
	aep_pack_str(&pk, "kind");
	aep_pack_str(&pk, "Node");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 1 + (labels != NULL) + (annots != NULL));
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, g->agent->meta.name);
	if (labels != NULL) {
		aep_pack_str(&pk, "labels");
		msgpack_pack_object(&pk, *labels);
	}
	if (annots != NULL) {
		aep_pack_str(&pk, "annotations");
		msgpack_pack_object(&pk, *annots);
	}
	aep_pack_str(&pk, "spec");
	uint32_t nspec = 0;
	for (uint32_t i = 0; spec_map && i < spec->via.map.size; i++)
		nspec += !(cidr[0] && aep_mp_str_eq(&spec->via.map.ptr[i].key, "podCIDR"));
	msgpack_pack_map(&pk, nspec + (cidr[0] != '\0'));
	for (uint32_t i = 0; spec_map && i < spec->via.map.size; i++) {
		const msgpack_object_kv *kv = &spec->via.map.ptr[i];
		if (cidr[0] && aep_mp_str_eq(&kv->key, "podCIDR"))
			continue;
		msgpack_pack_object(&pk, kv->key);
		msgpack_pack_object(&pk, kv->val);
	}
	if (cidr[0]) {
		aep_pack_str(&pk, "podCIDR");
		aep_pack_str(&pk, cidr);
	}
	aep_pack_str(&pk, "status");
	if (status != NULL)
		msgpack_pack_object(&pk, *status);
	else
		msgpack_pack_map(&pk, 0);
	if (b.failed) {
		rv = aep_errorf(e, AEP_ENOMEM, "out of memory");
		goto out;
	}
	/* Then the Ready condition. The agent's own Ready (if any) gives way
	 * to the stored one, so that its transition time is kept when it
	 * stays True. */
	rv = aep_mp_unpack(b.data, b.len, &zone, &base, e);
	if (rv != 0)
		goto out;
	aep_packer_init(&pk, out);
	if (stored != NULL && ready_condition(&s) != NULL) {
		struct aep_buf mb;
		msgpack_object merged;
		msgpack_packer mpk;
		aep_buf_init(&mb);
		aep_packer_init(&mpk, &mb);
		const msgpack_object *sr = ready_condition(&s);
		const msgpack_object *bst = aep_mp_map_get(&base, "status");
		const msgpack_object *bconds = aep_mp_map_get(bst, "conditions");
		bool bconds_ok = bconds != NULL && bconds->type == MSGPACK_OBJECT_ARRAY;
		msgpack_pack_map(&mpk, base.via.map.size);
		for (uint32_t i = 0; i < base.via.map.size; i++) {
			const msgpack_object_kv *kv = &base.via.map.ptr[i];
			msgpack_pack_object(&mpk, kv->key);
			if (!aep_mp_str_eq(&kv->key, "status") || sr == NULL ||
			    kv->val.type != MSGPACK_OBJECT_MAP) {
				msgpack_pack_object(&mpk, kv->val);
				continue;
			}
			msgpack_pack_map(&mpk, kv->val.via.map.size + (bconds_ok ? 0 : 1));
			for (uint32_t j = 0; j < kv->val.via.map.size; j++) {
				const msgpack_object_kv *sk = &kv->val.via.map.ptr[j];
				if (aep_mp_str_eq(&sk->key, "conditions"))
					continue;
				msgpack_pack_object(&mpk, sk->key);
				msgpack_pack_object(&mpk, sk->val);
			}
			aep_pack_str(&mpk, "conditions");
			uint32_t n = 1;
			for (uint32_t j = 0; bconds_ok && j < bconds->via.array.size; j++)
				n += !aep_mp_str_eq(
				    aep_mp_map_get(&bconds->via.array.ptr[j], "type"), "Ready");
			msgpack_pack_array(&mpk, n);
			for (uint32_t j = 0; bconds_ok && j < bconds->via.array.size; j++) {
				if (!aep_mp_str_eq(
					aep_mp_map_get(&bconds->via.array.ptr[j], "type"), "Ready"))
					msgpack_pack_object(&mpk, bconds->via.array.ptr[j]);
			}
			msgpack_pack_object(&mpk, *sr);
		}
		rv = mb.failed ? aep_errorf(e, AEP_ENOMEM, "out of memory")
			       : aep_mp_unpack(mb.data, mb.len, &zone, &merged, e);
		if (rv == 0)
			pack_node_ready(&pk, &merged, true, "NodeReady",
					"the node agent is posting heartbeats");
		aep_buf_free(&mb);
		if (rv != 0)
			goto out;
	} else {
		pack_node_ready(&pk, &base, true, "NodeReady",
				"the node agent is posting heartbeats");
	}
	if (out->failed)
		rv = aep_errorf(e, AEP_ENOMEM, "out of memory");
out:
	msgpack_zone_destroy(&zone);
	aep_buf_free(&b);
	return rv;
}

static void reg_done(void *data, const struct aep_result *res);

/* Returns 0 when submitted, else an error in @e. */
static int reg_submit(struct reg *g, struct aep_error *e)
{
	struct master *m = g->m;
	struct aep_object *stored = aep_store_get(m->store, AEP_KIND_NODE, "", g->agent->meta.name);
	struct aep_object *obj = NULL;
	struct aep_buf b;
	int rv;
	aep_buf_init(&b);
	rv = reg_build(g, stored, &b, e);
	if (rv == 0 && (rv = aep_object_decode(b.data, b.len, &obj, e)) != 0)
		aep_error_prefix(e, "node");
	if (rv != 0)
		goto out;
	struct aep_cmd cmd = {
	    .op = stored != NULL ? AEP_OP_UPDATE : AEP_OP_CREATE,
	    .kind = AEP_KIND_NODE,
	    .ns = "",
	    .name = obj->meta.name,
	    .precond_rv = stored != NULL ? stored->meta.rv : 0,
	    .now_ns = aep_now_realtime_ns(),
	    .obj = obj->data,
	    .obj_len = obj->len,
	};
	if (stored == NULL && master__uuid4(m, cmd.uid) != 0) {
		rv = aep_errorf(e, AEP_EINTERNAL, "no random numbers for a uid");
		goto out;
	}
	rv = aep_raft_submit(m->raft, &cmd, reg_done, g);
	if (rv == AEP_ENOTLEADER)
		rv = aep_errorf(e, AEP_EUNAVAILABLE, "leadership is changing; retry");
	else if (rv != 0)
		rv = aep_errorf(e, rv, "cannot submit the write");
out:
	aep_object_unref(obj);
	aep_object_unref(stored);
	aep_buf_free(&b);
	return rv;
}

static void reg_done(void *data, const struct aep_result *res)
{
	struct reg *g = data;
	struct master_nodes *mn = current(g->m, g->epoch);
	struct aep_error e = {0};
	if (mn == NULL) {
		master__req_error(g->r, AEP_EUNAVAILABLE, "leadership moved during node.register");
		reg_free(g);
		return;
	}
	if ((res->code == AEP_ECONFLICT || res->code == AEP_EEXISTS) &&
	    ++g->tries < WRITE_RETRIES) {
		/* the Node changed (or appeared) meanwhile: build on the new one */
		if (reg_submit(g, &e) != 0) {
			master__req_error(g->r, e.code, e.msg);
			reg_free(g);
		}
		return;
	}
	if (res->code != 0) {
		master__req_error(g->r, res->code,
				  res->msg != NULL ? res->msg : aep_err_code(res->code));
		reg_free(g);
		return;
	}
	/* the answer goes first, then node.sync on the same connection */
	struct aep_rpc_conn *c = aep_rpc_conn_ref(master__req_conn(g->r));
	const char *name = g->agent->meta.name;
	master__req_reply(g->r, res->obj->data, res->obj->len);
	g->r = NULL;
	if (!aep_rpc_conn_closed(c)) {
		struct noderec *rec = rec_get(mn, res->obj);
		struct session *s = session_open(mn, c, name);
		if (rec != NULL) {
			rec->last_hb_ns = now_ns();
			set_state(rec, NODE_READY);
			rec->ready_written_ns = now_ns();
			rec->want = WANT_NONE;
		}
		if (s != NULL) {
			s->sync_failures = 0;
			s->sync_not_before = 0;
			resync(s);
		} else {
			aep_rpc_conn_close(c); /* out of memory: let the agent come again */
		}
	}
	aep_rpc_conn_unref(c);
	reg_free(g);
}

void master__node_register(struct req *r, const msgpack_object *params)
{
	char idbuf[AEP_NAME_MAX + 1];
	static const char *const known[] = {"node", NULL};
	struct master *m = master__req_master(r);
	struct aep_error e = {0};
	const char *caller = caller_node(master__req_conn(r), idbuf);
	struct aep_object *o = NULL;

	if (check_params(params, known, &e) != 0) {
		master__req_error(r, e.code, e.msg);
		return;
	}
	if (caller == NULL) {
		master__req_error(r, AEP_EFORBIDDEN,
				  "node.register: only a node agent (certificate "
				  "system:node:NAME) may register");
		return;
	}
	const msgpack_object *node = aep_mp_map_get(params, "node");
	if (node == NULL || node->type != MSGPACK_OBJECT_MAP) {
		master__req_error(r, AEP_EBADREQUEST, "node: required map (a Node object)");
		return;
	}
	if (aep_object_from_msgpack(node, &o, &e) != 0) {
		aep_error_prefix(&e, "node");
		master__req_error(r, e.code, e.msg);
		return;
	}
	if (o->kind != AEP_KIND_NODE) {
		aep_object_unref(o);
		master__req_error(r, AEP_EINVALID, "node: kind must be Node");
		return;
	}
	if (strcmp(o->meta.name, caller) != 0) {
		char msg[AEP_ERRMSG_MAX];
		snprintf(msg, sizeof(msg),
			 "node.register: node \"%.200s\" is not the certificate's node \"%.200s\"",
			 o->meta.name, caller);
		aep_object_unref(o);
		master__req_error(r, AEP_EFORBIDDEN, msg);
		return;
	}
	if (!master__is_leader(m)) {
		aep_object_unref(o);
		not_leader(r);
		return;
	}
	if (m->nodes == NULL) {
		aep_object_unref(o);
		master__req_error(r, AEP_EUNAVAILABLE, "the node manager is starting; retry");
		return;
	}
	struct reg *g = aep_calloc(1, sizeof(*g));
	if (g == NULL) {
		aep_object_unref(o);
		master__req_error(r, AEP_ENOMEM, "out of memory");
		return;
	}
	g->m = m;
	g->epoch = m->nodes->epoch;
	g->r = r;
	g->agent = o;
	if (reg_submit(g, &e) != 0) {
		master__req_error(r, e.code, e.msg);
		reg_free(g);
	}
}

/* ---- node.heartbeat, pod.status ----------------------------------------------------------- */

void master__node_heartbeat(struct req *r, const msgpack_object *params)
{
	char idbuf[AEP_NAME_MAX + 1];
	static const char *const none[] = {NULL};
	struct master *m = master__req_master(r);
	struct aep_error e = {0};
	const char *caller = caller_node(master__req_conn(r), idbuf);
	if (check_params(params, none, &e) != 0) {
		master__req_error(r, e.code, e.msg);
		return;
	}
	if (caller == NULL) {
		master__req_error(r, AEP_EFORBIDDEN,
				  "node.heartbeat: only a node agent may send heartbeats");
		return;
	}
	if (!master__is_leader(m)) {
		not_leader(r);
		return;
	}
	struct master_nodes *mn = m->nodes;
	if (mn == NULL) {
		master__req_error(r, AEP_EUNAVAILABLE, "the node manager is starting; retry");
		return;
	}
	struct noderec *rec = rec_find(mn, caller);
	if (rec == NULL) {
		struct aep_object *node = aep_store_get(m->store, AEP_KIND_NODE, "", caller);
		rec = node != NULL ? rec_get(mn, node) : NULL;
		aep_object_unref(node);
		if (rec == NULL) {
			char msg[AEP_ERRMSG_MAX];
			snprintf(msg, sizeof(msg),
				 "nodes \"%.200s\" not found: call node.register first", caller);
			master__req_error(r, node == NULL ? AEP_ENOTFOUND : AEP_ENOMEM, msg);
			return;
		}
	}
	int64_t now = now_ns();
	rec->last_hb_ns = now;
	if (rec->state != NODE_READY) {
		fprintf(stderr, "aep master %s: node %s: heartbeat: Ready=True\n", m->name,
			rec->name);
		set_state(rec, NODE_READY);
		rec->want = WANT_TRUE;
	} else if (rec->ready_written_ns == 0 ||
		   now - rec->ready_written_ns >= (int64_t)READY_REFRESH_MS * 1000000) {
		rec->want = WANT_TRUE;
	}
	if (rec->want != WANT_NONE && !rec->writing)
		ready_write(mn, rec);
	master__req_reply(r, "\x80", 1);
}

void master__pod_status(struct req *r, const msgpack_object *params)
{
	char idbuf[AEP_NAME_MAX + 1];
	static const char *const known[] = {"namespace", "name", "uid", "status", NULL};
	struct master *m = master__req_master(r);
	struct aep_error e = {0};
	const char *caller = caller_node(master__req_conn(r), idbuf);
	char ns[AEP_NAME_MAX + 1], name[AEP_NAME_MAX + 1], uid[40];
	if (check_params(params, known, &e) != 0 || param_ns_name(params, ns, name, &e) != 0 ||
	    param_str(params, "uid", uid, sizeof(uid), &e) != 0) {
		master__req_error(r, e.code, e.msg);
		return;
	}
	const msgpack_object *status = aep_mp_map_get(params, "status");
	if (uid[0] == '\0' || status == NULL || status->type != MSGPACK_OBJECT_MAP) {
		master__req_error(r, AEP_EBADREQUEST,
				  uid[0] == '\0' ? "uid: required string" : "status: required map");
		return;
	}
	if (caller == NULL) {
		master__req_error(r, AEP_EFORBIDDEN,
				  "pod.status: only a node agent may report pod status");
		return;
	}
	if (!master__is_leader(m)) {
		not_leader(r);
		return;
	}
	struct status_write *w = status_new(m, caller, ns, name, uid, status);
	if (w == NULL) {
		master__req_error(r, AEP_ENOMEM, "out of memory");
		return;
	}
	w->r = r;
	status_start(w);
}

/* ---- logs and exec ------------------------------------------------------------------ */

/* A relay in flight: a client's call answered from the agent's answer. */
struct relay {
	struct req *r;
	struct session *s;
	struct stream *st; /* a followed log: NULL otherwise */
};

/* Find the pod, its container and its node's session; on failure @r is
 * answered and NULL returned. */
static struct session *relay_target(struct req *r, const char *what, const char *ns,
				    const char *name, char *container, size_t csize, char uid[40])
{
	struct master *m = master__req_master(r);
	struct master_nodes *mn = m->nodes;
	char msg[AEP_ERRMSG_MAX];
	if (mn == NULL) {
		master__req_error(r, AEP_EUNAVAILABLE, "the node manager is starting; retry");
		return NULL;
	}
	struct aep_object *pod = aep_store_get(m->store, AEP_KIND_POD, ns, name);
	if (pod == NULL) {
		snprintf(msg, sizeof(msg), "pods \"%s\" not found in namespace \"%s\"", name, ns);
		master__req_error(r, AEP_ENOTFOUND, msg);
		return NULL;
	}
	struct session *s = NULL;
	msgpack_zone zone;
	msgpack_object v;
	struct aep_error e = {0};
	msgpack_zone_init(&zone, 2048);
	if (aep_mp_unpack(pod->data, pod->len, &zone, &v, &e) != 0) {
		master__req_error(r, e.code, e.msg);
		goto out;
	}
	const msgpack_object *cs = aep_mp_map_get(aep_mp_map_get(&v, "spec"), "containers");
	uint32_t n = cs != NULL && cs->type == MSGPACK_OBJECT_ARRAY ? cs->via.array.size : 0;
	bool found = false;
	struct aep_buf names;
	aep_buf_init(&names);
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *cn = aep_mp_map_get(&cs->via.array.ptr[i], "name");
		if (cn == NULL || cn->type != MSGPACK_OBJECT_STR)
			continue;
		aep_buf_printf(&names, "%s%.*s", i ? " " : "", (int)cn->via.str.size,
			       cn->via.str.ptr);
		if (container[0] != '\0' && strlen(container) == cn->via.str.size &&
		    memcmp(container, cn->via.str.ptr, cn->via.str.size) == 0)
			found = true;
		if (container[0] == '\0' && n == 1 && cn->via.str.size < csize) {
			memcpy(container, cn->via.str.ptr, cn->via.str.size);
			container[cn->via.str.size] = '\0';
			found = true;
		}
	}
	aep_buf_append(&names, "", 1);
	if (!found) {
		if (container[0] == '\0')
			snprintf(msg, sizeof(msg),
				 "%s: a container name must be specified for pod %s, choose one "
				 "of: [%s]",
				 what, name, names.failed ? "" : names.data);
		else
			snprintf(msg, sizeof(msg),
				 "%s: container %s is not valid for pod %s, choose one of: [%s]",
				 what, container, name, names.failed ? "" : names.data);
		aep_buf_free(&names);
		master__req_error(r, AEP_EBADREQUEST, msg);
		goto out;
	}
	aep_buf_free(&names);
	if (pod->node_name == NULL) {
		snprintf(msg, sizeof(msg), "%s: pod %s/%s is not bound to a node yet", what, ns,
			 name);
		master__req_error(r, AEP_EBADREQUEST, msg);
		goto out;
	}
	s = session_find(mn, pod->node_name);
	if (s == NULL) {
		snprintf(msg, sizeof(msg),
			 "%s: node %s of pod %s/%s has no session (its agent is not connected)",
			 what, pod->node_name, ns, name);
		master__req_error(r, AEP_EUNAVAILABLE, msg);
		goto out;
	}
	if (s->relays >= SESSION_RELAYS_MAX) {
		snprintf(msg, sizeof(msg), "%s: node %s has %d calls in flight; retry", what,
			 s->name, SESSION_RELAYS_MAX);
		master__req_error(r, AEP_EUNAVAILABLE, msg);
		s = NULL;
		goto out;
	}
	snprintf(uid, 40, "%s", pod->meta.uid);
out:
	msgpack_zone_destroy(&zone);
	aep_object_unref(pod);
	return s;
}

static void relay_done(void *data, const struct aep_rpc_reply *reply)
{
	struct relay *x = data;
	struct session *s = x->s;
	char msg[AEP_ERRMSG_MAX];
	s->relays--;
	if (reply->code == AEP_ECANCELED) {
		snprintf(msg, sizeof(msg), "the session of node %s ended before it answered",
			 s->name);
		master__req_error(x->r, AEP_EUNAVAILABLE, msg);
	} else if (reply->code != 0) {
		snprintf(msg, sizeof(msg), "node %s: %.*s", s->name,
			 (int)(reply->msg_len > 400 ? 400 : reply->msg_len),
			 reply->msg ? reply->msg : "");
		master__req_error(x->r, reply->code, msg);
	} else {
		struct aep_buf b;
		aep_buf_init(&b);
		if (pack_result(reply->result, &b) != 0)
			master__req_error(x->r, AEP_ENOMEM, "out of memory");
		else
			master__req_reply(x->r, b.data, b.len);
		aep_buf_free(&b);
	}
	session_unref(s);
	aep_free(x);
}

static int relay_call(struct session *s, struct req *r, const char *method,
		      const struct aep_buf *params, aep_rpc_reply_cb cb, struct stream *st)
{
	struct relay *x = aep_calloc(1, sizeof(*x));
	if (x == NULL || params->failed) {
		aep_free(x);
		return AEP_ENOMEM;
	}
	x->r = r;
	x->s = s;
	x->st = st;
	int rv = aep_rpc_conn_call(s->conn, method, params->data, params->len, cb, x);
	if (rv != 0) {
		aep_free(x);
		return rv;
	}
	s->refs++;
	s->relays++;
	return 0;
}

static void noop_reply(void *data, const struct aep_rpc_reply *reply)
{
	(void)data;
	(void)reply;
}

static void stream_unlink(struct master_nodes *mn, struct stream *st)
{
	for (struct stream **pp = &mn->streams; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == st) {
			*pp = st->next;
			return;
		}
	}
}

static void stream_free(struct stream *st)
{
	session_unref(st->s);
	aep_rpc_conn_unref(st->client);
	aep_free(st);
}

/* End @st, already out of mn->streams: the client hears [2, "log.end",
 * [{error?}]] (@why NULL: the log ended normally), the agent pod.logs.stop
 * unless it ended the stream itself. While the agent has not answered the
 * pod.logs call, stream_started finishes instead. */
static void stream_finish(struct stream *st, const char *why, bool agent_done)
{
	struct aep_buf b;
	msgpack_packer pk;
	if (st->r != NULL) {
		st->ended = true;
		st->agent_done = st->agent_done || agent_done;
		snprintf(st->why, sizeof(st->why), "%s", why != NULL ? why : "");
		return;
	}
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	if (!st->client_gone) {
		msgpack_pack_array(&pk, 1);
		msgpack_pack_map(&pk, why != NULL ? 1 : 0);
		if (why != NULL) {
			aep_pack_str(&pk, "error");
			aep_pack_str(&pk, why);
		}
		if (!b.failed)
			aep_rpc_notify(st->client, "log.end", b.data, b.len);
	}
	if (!agent_done && !st->s->gone) {
		aep_buf_reset(&b);
		msgpack_pack_map(&pk, 1);
		aep_pack_str(&pk, "stream");
		msgpack_pack_uint64(&pk, st->id);
		/* best effort: the agent's answer does not matter */
		if (!b.failed)
			(void)aep_rpc_conn_call(st->s->conn, "pod.logs.stop", b.data, b.len,
						noop_reply, NULL);
	}
	aep_buf_free(&b);
	stream_free(st);
}

/* The agent's answer to pod.logs {follow: true}. */
static void stream_started(void *data, const struct aep_rpc_reply *reply)
{
	struct relay *x = data;
	struct session *s = x->s;
	struct stream *st = x->st;
	struct req *r = st->r;
	char msg[AEP_ERRMSG_MAX];
	s->relays--;
	st->r = NULL;
	if (reply->code != 0) {
		if (reply->code == AEP_ECANCELED)
			snprintf(msg, sizeof(msg),
				 "the session of node %s ended before it answered", s->name);
		else
			snprintf(msg, sizeof(msg), "node %s: %.*s", s->name,
				 (int)(reply->msg_len > 400 ? 400 : reply->msg_len),
				 reply->msg ? reply->msg : "");
		master__req_error(r, reply->code == AEP_ECANCELED ? AEP_EUNAVAILABLE : reply->code,
				  msg);
		if (!st->ended)
			stream_unlink(s->m->nodes, st);
		stream_free(st);
	} else if (st->ended && !st->agent_done) {
		/* the client left, or the session or leadership ended, while
		 * the agent was starting: stop it */
		master__req_error(r, AEP_EUNAVAILABLE,
				  st->why[0] ? st->why : "the log stream ended");
		st->client_gone = true;
		stream_finish(st, NULL, false);
	} else {
		master__req_reply(r, "\x80", 1); /* {} */
		if (st->ended)
			stream_finish(st, st->why[0] ? st->why : NULL, true);
	}
	session_unref(s);
	aep_free(x);
}

void master__logs(struct req *r, const msgpack_object *params)
{
	char idbuf[AEP_NAME_MAX + 1];
	static const char *const known[] = {"namespace", "name",      "container",
					    "follow",	 "tailBytes", NULL};
	struct master *m = master__req_master(r);
	struct aep_error e = {0};
	char ns[AEP_NAME_MAX + 1], name[AEP_NAME_MAX + 1], container[AEP_LABEL_NAME_MAX + 2];
	char uid[40];
	bool follow = false;
	int64_t tail = -1;
	if (check_params(params, known, &e) != 0 || param_ns_name(params, ns, name, &e) != 0 ||
	    param_str(params, "container", container, sizeof(container), &e) != 0) {
		master__req_error(r, e.code, e.msg);
		return;
	}
	const msgpack_object *f = aep_mp_map_get(params, "follow");
	const msgpack_object *t = aep_mp_map_get(params, "tailBytes");
	if (f != NULL && f->type != MSGPACK_OBJECT_NIL) {
		if (f->type != MSGPACK_OBJECT_BOOLEAN) {
			master__req_error(r, AEP_EBADREQUEST, "follow: must be a boolean");
			return;
		}
		follow = f->via.boolean;
	}
	if (t != NULL && t->type != MSGPACK_OBJECT_NIL) {
		if (t->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
			master__req_error(r, AEP_EBADREQUEST,
					  "tailBytes: must be a non-negative integer");
			return;
		}
		tail = t->via.u64 > LOG_TAIL_MAX ? LOG_TAIL_MAX : (int64_t)t->via.u64;
	}
	if (caller_node(master__req_conn(r), idbuf) != NULL) {
		master__req_error(r, AEP_EFORBIDDEN, "logs: node agents may not read pod logs");
		return;
	}
	if (!master__is_leader(m)) {
		/* a stream cannot go through the follower's shared connection to
		 * the leader: the client calls the leader itself */
		if (follow)
			not_leader(r);
		else
			master__req_forward(r, params);
		return;
	}
	struct session *s = relay_target(r, "logs", ns, name, container, sizeof(container), uid);
	if (s == NULL)
		return;
	struct stream *st = NULL;
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 2 + (tail >= 0) + (follow ? 2 : 0));
	aep_pack_str(&pk, "uid");
	aep_pack_str(&pk, uid);
	aep_pack_str(&pk, "container");
	aep_pack_str(&pk, container);
	if (tail >= 0) {
		aep_pack_str(&pk, "tailBytes");
		msgpack_pack_int64(&pk, tail);
	}
	if (follow) {
		st = aep_calloc(1, sizeof(*st));
		if (st == NULL) {
			aep_buf_free(&b);
			master__req_error(r, AEP_ENOMEM, "out of memory");
			return;
		}
		st->id = ++m->nodes->next_stream;
		st->client = aep_rpc_conn_ref(master__req_conn(r));
		st->s = s;
		st->r = r;
		aep_pack_str(&pk, "follow");
		msgpack_pack_true(&pk);
		aep_pack_str(&pk, "stream");
		msgpack_pack_uint64(&pk, st->id);
	}
	int rv = relay_call(s, r, "pod.logs", &b, follow ? stream_started : relay_done, st);
	aep_buf_free(&b);
	if (rv != 0) {
		if (st != NULL) {
			st->s = NULL;
			aep_rpc_conn_unref(st->client);
			aep_free(st);
		}
		master__req_error(r, rv == AEP_ENOMEM ? AEP_ENOMEM : AEP_EUNAVAILABLE,
				  "cannot call the node agent");
		return;
	}
	if (st != NULL) {
		s->refs++; /* the stream's reference */
		st->next = m->nodes->streams;
		m->nodes->streams = st;
	}
}

void master__exec(struct req *r, const msgpack_object *params)
{
	char idbuf[AEP_NAME_MAX + 1];
	static const char *const known[] = {"namespace", "name", "container", "command", NULL};
	struct master *m = master__req_master(r);
	struct aep_error e = {0};
	char ns[AEP_NAME_MAX + 1], name[AEP_NAME_MAX + 1], container[AEP_LABEL_NAME_MAX + 2];
	char uid[40];
	if (check_params(params, known, &e) != 0 || param_ns_name(params, ns, name, &e) != 0 ||
	    param_str(params, "container", container, sizeof(container), &e) != 0) {
		master__req_error(r, e.code, e.msg);
		return;
	}
	const msgpack_object *cmd = aep_mp_map_get(params, "command");
	if (cmd == NULL || cmd->type != MSGPACK_OBJECT_ARRAY || cmd->via.array.size == 0 ||
	    cmd->via.array.size > EXEC_ARGS_MAX) {
		char msg[128];
		snprintf(msg, sizeof(msg), "command: required list of 1 to %d strings",
			 EXEC_ARGS_MAX);
		master__req_error(r, AEP_EBADREQUEST, msg);
		return;
	}
	for (uint32_t i = 0; i < cmd->via.array.size; i++) {
		const msgpack_object *a = &cmd->via.array.ptr[i];
		if (a->type != MSGPACK_OBJECT_STR ||
		    memchr(a->via.str.ptr, '\0', a->via.str.size) != NULL ||
		    (i == 0 && a->via.str.size == 0)) {
			char msg[128];
			snprintf(msg, sizeof(msg),
				 "command[%u]: must be a string without NUL bytes%s", i,
				 i == 0 ? ", not empty" : "");
			master__req_error(r, AEP_EBADREQUEST, msg);
			return;
		}
	}
	if (caller_node(master__req_conn(r), idbuf) != NULL) {
		master__req_error(r, AEP_EFORBIDDEN, "exec: node agents may not exec in pods");
		return;
	}
	if (!master__is_leader(m)) {
		master__req_forward(r, params);
		return;
	}
	struct session *s = relay_target(r, "exec", ns, name, container, sizeof(container), uid);
	if (s == NULL)
		return;
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "uid");
	aep_pack_str(&pk, uid);
	aep_pack_str(&pk, "container");
	aep_pack_str(&pk, container);
	aep_pack_str(&pk, "command");
	msgpack_pack_object(&pk, *cmd);
	int rv = relay_call(s, r, "pod.exec", &b, relay_done, NULL);
	aep_buf_free(&b);
	if (rv != 0)
		master__req_error(r, rv == AEP_ENOMEM ? AEP_ENOMEM : AEP_EUNAVAILABLE,
				  "cannot call the node agent");
}

/* [2, "log", [{stream, data}]] and [2, "log.end", [{stream}]] from a node
 * session: relayed to the client that follows the stream. */
void master__nodes_notify(struct master *m, struct aep_rpc_conn *c, const char *method,
			  size_t method_len, const msgpack_object *params)
{
	struct master_nodes *mn = m->nodes;
	bool end = method_len == 7 && memcmp(method, "log.end", 7) == 0;
	bool log = method_len == 3 && memcmp(method, "log", 3) == 0;
	if (mn == NULL || (!end && !log) || params == NULL ||
	    params->type != MSGPACK_OBJECT_ARRAY || params->via.array.size != 1)
		return;
	const msgpack_object *p = &params->via.array.ptr[0];
	const msgpack_object *id = aep_mp_map_get(p, "stream");
	const msgpack_object *data = aep_mp_map_get(p, "data");
	if (id == NULL || id->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return;
	struct stream **pp = &mn->streams;
	for (; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->id == id->via.u64 && (*pp)->s != NULL && (*pp)->s->conn == c)
			break;
	}
	struct stream *st = *pp;
	if (st == NULL)
		return; /* ended on our side already */
	if (end) {
		*pp = st->next;
		stream_finish(st, NULL, true);
		return;
	}
	if (data == NULL || (data->type != MSGPACK_OBJECT_BIN && data->type != MSGPACK_OBJECT_STR))
		return;
	if (aep_rpc_conn_pending(st->client) > STREAM_BACKLOG_MAX) {
		*pp = st->next;
		stream_finish(st, "the client does not read the log fast enough", false);
		return;
	}
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "data");
	msgpack_pack_object(&pk, *data);
	if (!b.failed)
		aep_rpc_notify(st->client, "log", b.data, b.len);
	aep_buf_free(&b);
}
