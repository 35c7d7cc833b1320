/* Private to master/: one master process's parts and how they meet. */
#ifndef AEP_MASTER_INT_H
#define AEP_MASTER_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "net/net.h"
#include "raft/raft.h"
#include "state/state.h"

/* Request latency histogram buckets (seconds), Prometheus style. */
#define MASTER_BUCKETS(X) \
	X(0.0005)         \
	X(0.001) X(0.0025) X(0.005) X(0.01) X(0.025) X(0.05) X(0.1) X(0.25) X(0.5) X(1) X(2.5) X(5)
#define MASTER__BUCKET_COUNT(b) +1
enum { MASTER_NBUCKETS = 0 MASTER_BUCKETS(MASTER__BUCKET_COUNT) };

/* X(enum, "method", write?) — the API's methods (docs/API.md). */
#define MASTER_METHODS(X)                         \
	X(CREATE, "create", true)                 \
	X(GET, "get", false)                      \
	X(LIST, "list", false)                    \
	X(UPDATE, "update", true)                 \
	X(DELETE, "delete", true)                 \
	X(WATCH, "watch", false)                  \
	X(UNWATCH, "unwatch", false)              \
	X(STATUS, "status", false)                \
	X(MEMBERS, "members", false)              \
	X(ANNOUNCE, "announce", true)             \
	X(TRANSFER, "transfer", true)             \
	X(PLAN, "plan", false)                    \
	X(NODE_REGISTER, "node.register", true)   \
	X(NODE_HEARTBEAT, "node.heartbeat", true) \
	X(POD_STATUS, "pod.status", true)         \
	X(LOGS, "logs", false)                    \
	X(EXEC, "exec", false)                    \
	X(JOIN, "join", false)

enum master_method {
#define MASTER__M_ENUM(e, s, w) MASTER_M_##e,
	MASTER_METHODS(MASTER__M_ENUM)
#undef MASTER__M_ENUM
	    MASTER_M__COUNT
};

struct master_method_stats {
	uint64_t count;
	uint64_t errors;
	uint64_t buckets[MASTER_NBUCKETS];
	double sum_s;
};

/* What /metrics shows: published by the loop thread, read by the HTTP
 * thread, under @lock. */
struct req;

struct master_metrics {
	pthread_mutex_t lock;
	struct aep_raft_status raft;
	char leader_name[64];
	uint64_t revision;
	uint64_t objects[AEP_KIND__COUNT];
	uint64_t watches;
	uint64_t connections;
	uint64_t sched_bound, sched_refused, sched_failed, sched_queued, sched_events_skipped;
	struct master_method_stats methods[MASTER_M__COUNT];
	bool ready;
};

struct master {
	uv_loop_t *loop;
	const char *name;
	const char *dir;
	const char *listen;    /* API address */
	const char *advertise; /* API address others use; default @listen */
	const char *peer;      /* Raft address */
	const char *http;      /* /metrics etc.; NULL: off */
	const char *pki;       /* directory with ca.crt, NAME.crt, NAME.key */
	struct aep_raft_peer *peers;
	unsigned npeers;
	unsigned snapshot_threshold;
	unsigned snapshot_trailing;
	unsigned max_inflight;
	int64_t election_timeout_ms;
	int64_t heartbeat_ms;

	struct aep_store *store;
	struct aep_raft *raft;
	struct aep_tls *server_tls;
	struct aep_tls *client_tls;
	struct aep_rpc_server *rpc;

	/* Forwarding to the leader. */
	struct aep_rpc_client *fwd;
	char *fwd_addr; /* the API address @fwd talks to */
	bool announce_inflight;

	/* Linearizable reads waiting for a read barrier (api.c). */
	struct req *reads_waiting;  /* for the next barrier */
	struct req *reads_inflight; /* for the barrier in flight */
	bool barrier_inflight;
	/* Requests waiting for a leader to become known. */
	struct req *parked;

	uv_timer_t tick;
	uv_signal_t sigint;
	uv_signal_t sigterm;
	bool stopping;
	int exit_code;

	unsigned char rand_pool[4096]; /* for uids; see uuid4() */
	size_t rand_off;	       /* starts at sizeof(rand_pool): empty */

	uint64_t next_watch_id;
	uint64_t nwatches;
	uint64_t nconns;
	struct master_method_stats stats[MASTER_M__COUNT];

	struct master_metrics metrics;
	void *httpd;

	/* The scheduler (sched.c): runs only while this master leads. */
	struct master_sched *sched;
	uint64_t sched_epoch;		 /* bumps when a scheduler's cache ends */
	struct aep_buf sched_policy_doc; /* --scheduler-policy as msgpack; empty: default */
	uint64_t sched_bound, sched_refused, sched_failed;
	uint64_t sched_queued; /* published by sched.c while leader */
	uint64_t sched_events_skipped;

	/* The replication manager (rc.c): runs only while this master leads. */
	struct master_rc *rc;
	uint64_t rc_epoch;
	uint64_t rc_write_errors;

	/* Node sessions, the dispatcher and node lifecycle (nodes.c): run
	 * only while this master leads. Flags: --cluster-cidr (IPv4, host
	 * order), --node-cidr-size, --node-grace, --pod-eviction-timeout. */
	struct master_nodes *nodes;
	uint64_t nodes_epoch;
	uint32_t cluster_cidr_addr;
	unsigned cluster_cidr_prefix;
	unsigned node_cidr_size;
	int64_t node_grace_ms;
	int64_t pod_eviction_ms;
};

/* api.c */
/* A random (version 4) UUID into @out. Returns 0 or AEP_EINTERNAL. */
int master__uuid4(struct master *m, char out[40]);
extern const struct aep_rpc_handler master__rpc_handler;
void master__publish_metrics(struct master *m);
void master__leadership(void *data, bool leader);
void master__applied(void *data, uint64_t index);
/* Dispatch again the requests parked while no leader was known. */
void master__retry_parked(struct master *m);
/* The leader's API address from the member table, or NULL. */
const char *master__leader_api(struct master *m);

/* http.c */
int master__http_start(struct master *m, struct aep_error *e);
void master__http_stop(struct master *m);

/* sched.c: the leader's scheduler loop and the plan method. */
/* Start the scheduler on this (new) leader: build its cache from the
 * store and place pods from now on. Returns 0 or AEP_ENOMEM. */
int master__sched_start(struct master *m);
/* Stop it (leadership lost or shutting down); NULL-safe, idempotent. */
void master__sched_stop(struct master *m);
/* Pods waiting for a node; 0 when this master does not lead. */
uint64_t master__sched_queued(struct master *m);
/* The plan method: where the pods of params.objects would land. Leader
 * only. Returns 0 with the reply appended to @out, or an error in @e. */
int master__sched_plan(struct master *m, const msgpack_object *params, struct aep_buf *out,
		       struct aep_error *e);
/* rc.c: the replication manager, leader only (start: 0 or AEP_ENOMEM;
 * stop: NULL-safe, idempotent). */
int master__rc_start(struct master *m);
void master__rc_stop(struct master *m);
/* The Pod that the ReplicationController @rc (unpacked) makes from its
 * template, named @name in @ns, validated and canonical (one reference in
 * *@out). Errors: AEP_EINVALID (no template spec, or the template makes an
 * invalid pod), AEP_ENOMEM. */
int master__template_pod(const msgpack_object *rc, const char *ns, const char *name,
			 struct aep_object **out, struct aep_error *e);
/* rc.c: the replication manager, leader only (start: 0 or AEP_ENOMEM;
 * stop: NULL-safe, idempotent). */
int master__rc_start(struct master *m);
void master__rc_stop(struct master *m);
/* The Pod that the ReplicationController @rc (unpacked) makes from its
 * template, named @name in @ns, validated and canonical (one reference in
 * *@out). Errors: AEP_EINVALID (no template spec, or the template makes an
 * invalid pod), AEP_ENOMEM. */
int master__template_pod(const msgpack_object *rc, const char *ns, const char *name,
			 struct aep_object **out, struct aep_error *e);
/* api.c: for method handlers in other files of master/. The request is
 * answered (and freed) exactly once by one of these. */
void master__req_reply(struct req *r, const char *data, size_t len);
void master__req_error(struct req *r, int code, const char *msg);
/* An error with a pre-encoded details map (e.g. {leader: ADDR}). */
void master__req_error_details(struct req *r, int code, const char *msg, const char *details,
			       size_t len);
/* Relay @r to the leader (parks it while no leader is known). */
void master__req_forward(struct req *r, const msgpack_object *params);
struct aep_rpc_conn *master__req_conn(const struct req *r);
struct master *master__req_master(const struct req *r);
bool master__is_leader(struct master *m);

/* nodes.c: node sessions (docs/NODES.md), the dispatcher that pushes
 * desired state to node agents, the node lifecycle and the logs/exec
 * relays. Leader only (start: 0 or AEP_ENOMEM; stop: NULL-safe,
 * idempotent; stop closes every node session so that agents find the new
 * leader). */
int master__nodes_start(struct master *m);
void master__nodes_stop(struct master *m);
/* The method handlers: node.register, node.heartbeat, pod.status, logs,
 * exec. Each answers @r exactly once. */
void master__node_register(struct req *r, const msgpack_object *params);
void master__node_heartbeat(struct req *r, const msgpack_object *params);
void master__pod_status(struct req *r, const msgpack_object *params);
void master__logs(struct req *r, const msgpack_object *params);
void master__exec(struct req *r, const msgpack_object *params);
/* A notification on a server connection (log streams from node agents). */
void master__nodes_notify(struct master *m, struct aep_rpc_conn *c, const char *method,
			  size_t method_len, const msgpack_object *params);
/* A server connection closed: ends its node session and the log streams
 * it asked for or carried. */
void master__nodes_conn_closed(struct master *m, struct aep_rpc_conn *c);
/* --cluster-cidr and --node-cidr-size into @m. Returns 0 or AEP_EINVALID. */
int master__nodes_parse_cidr(struct master *m, const char *cidr, const char *size,
			     struct aep_error *e);
/* A duration flag ("40s", "5m", "1h", "500ms"; plain numbers are
 * seconds) in milliseconds, in [1 ms, 30 days]. Returns 0 or
 * AEP_EINVALID naming @flag. */
int master__parse_duration(const char *s, const char *flag, int64_t *ms, struct aep_error *e);

/* join.c: join {token, name, csr} (docs/NODES.md): the one method open to
 * callers without a certificate. A follower forwards it; the leader checks
 * the bootstrap token (Unauthorized), the name and the certificate request
 * (Invalid) and answers {certificate, ca} signed with PKI/ca.key
 * (Unavailable without one). Answers @r exactly once. */
void master__join(struct req *r, const msgpack_object *params);

/* authz.c: what node agents (CN system:node:NAME) may call. */
/* True, with the node's name in @name, when @c's certificate is a node
 * agent's with a valid node name; false for every other caller. Node
 * method handlers use it to check that a node speaks only for itself. */
bool master__node_identity(const struct aep_rpc_conn *c, char name[AEP_NAME_MAX + 1]);
/* Decide request @msgid (@which, @params) from @c before dispatch. Returns
 * true when it may go on; otherwise the request has been answered
 * (Forbidden with a Kubernetes-style message, NotFound, BadRequest, or
 * NotLeader with details.leader: a node's object calls are decided and
 * served by the leader). Every caller that is not a node passes. */
bool master__authorize(struct master *m, struct aep_rpc_conn *c, uint64_t msgid,
		       enum master_method which, const msgpack_object *params);

/* Read and check --scheduler-policy FILE (YAML or JSON); kept for every
 * later leadership term. */
int master__sched_load_policy(struct master *m, const char *path, struct aep_error *e);

#endif /* AEP_MASTER_INT_H */
