/* `aep node`: the node agent (docs/NODES.md). One process per container
 * host, one libuv loop: the session with the masters on one side, the pod
 * runtime (node.h) on the other.
 *
 * Happy path. aep_node_host_prepare() first (before any thread). Without
 * DIR/pki/node.crt the agent joins: a fresh P-256 key and a PKCS#10
 * request (CN system:node:NAME, O system:nodes), a TLS connection without
 * a client certificate that verifies the masters against --ca (else
 * DIR/pki/ca.crt), `join {token, name, csr}` -> {certificate, ca}, stored
 * as DIR/pki/node.{crt,key} (key 0600) and DIR/pki/ca.crt, node.crt last
 * so that its presence means a complete join. Then, with mutual TLS,
 * node.register {node} (the client library follows NotLeader to the
 * leader); the answer's spec.podCIDR configures the runtime, created on
 * the first registration and adopting whatever an earlier agent left
 * running. The leader then calls node.sync on the connection, and pod.run,
 * pod.kill, pod.logs(.stop) and pod.exec as it sees fit; calls that arrive
 * before the adoption finished wait for it, in order. Every status change
 * of the runtime is reported with pod.status, coalesced per pod (at most
 * one call in flight per pod, the latest status when it is sent);
 * node.heartbeat goes every 10 s.
 *
 * Failure modes. A lost connection (leader gone, leadership moved, the
 * master ended the session) makes the agent register again after 100 ms,
 * doubling to 2 s while no master can be reached at all and to 200 ms
 * while masters answer but have no leader (an election: the new leader is
 * found within a fifth of a second of its election); the leader answers with a
 * node.sync. A heartbeat answered with an error by a live master (the
 * Node was deleted, the leader does not know the node) also registers
 * again. Followed logs end with the session that asked for them. SIGTERM
 * and SIGINT stop the agent without touching the containers: they keep
 * running, and the next agent on the same directory adopts them. */
#include "node/node.h"
#include "net/net.h"
#include "state/state.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define HEARTBEAT_MS	    10000
#define BACKOFF_MIN_MS	    100
#define BACKOFF_MAX_MS	    2000  /* no master reachable */
#define BACKOFF_ANSWERED_MS 200	  /* masters answer, without a leader */
#define STATUS_DELAY_MS	    20	  /* status changes this close travel together */
#define STATUS_RETRY_MS	    1000  /* after a pod.status that failed */
#define CALL_TIMEOUT_MS	    10000 /* join */
#define LOG_TAIL_MAX	    (1u << 20)
#define LOG_CHUNK_MAX	    (256u << 10) /* bytes of one "log" notification */
#define STREAM_BACKLOG_MAX  (8u << 20)	 /* unsent bytes before a followed log ends */
#define EXEC_ARGS_MAX	    1024
#define DEFERRED_MAX	    4096 /* leader calls held while the runtime adopts */
#define LABELS_MAX	    64
#define PODS_CAPACITY	    "110"
#define PATH_MAX_AGENT	    1024

/* ---- state -------------------------------------------------------------------- */

/* The session with the masters. */
enum sess {
	SESS_NONE,	  /* nothing under way */
	SESS_WAIT,	  /* node.register waits for reg_timer */
	SESS_REGISTERING, /* node.register in flight */
	SESS_UP,	  /* registered: the leader's session is our connection */
};

/* What the leader hears about one pod the runtime knows. */
struct podrec {
	struct podrec *next;
	char uid[40];
	char ns[64];
	char name[AEP_NAME_MAX + 1];
	enum aep_pod_phase phase;
	bool dirty;    /* a change not yet sent */
	bool inflight; /* a pod.status call unanswered */
	bool killing;  /* pod.kill came: the pod is gone from the store, report nothing */
};

/* A leader call that arrived before the runtime was ready. */
struct deferred {
	struct deferred *next;
	struct aep_rpc_conn *conn; /* a reference */
	uint64_t msgid;
	char method[32];
	struct aep_buf params; /* msgpack */
};

/* pod.logs: a tail (answered at the end) or a followed stream. */
struct logreq {
	struct aep_logs_req req; /* req.data = this */
	struct logreq *next;
	struct agent *a;
	struct aep_rpc_conn *conn; /* a reference */
	uint64_t msgid;
	bool follow;
	uint64_t stream;
	uint64_t skip; /* follow: bytes of the file's start not sent */
	size_t tail;   /* not follow: bytes kept */
	struct aep_buf buf;
	bool stopping; /* aep_logs_stop wanted (from the stop timer) */
	bool quiet;    /* no log.end: the leader stopped it or left */
};

/* pod.exec in flight. */
struct execreq {
	struct aep_exec_req req; /* req.data = this */
	struct agent *a;
	struct aep_rpc_conn *conn; /* a reference */
	uint64_t msgid;
	uv_timer_t timer; /* timeoutSeconds */
	bool answered;
};

struct label {
	char key[AEP_NAME_MAX + AEP_LABEL_NAME_MAX + 2];
	char value[AEP_LABEL_NAME_MAX + 1];
};

struct agent {
	uv_loop_t loop;
	/* flags */
	const char *name, *servers, *token, *dir, *runtime, *bridge, *ca_opt, *address_opt;
	struct label labels[LABELS_MAX];
	size_t nlabels;
	/* facts about this host, for the Node */
	char runtime_name[16]; /* "crun", "runc" */
	char address[64];      /* InternalIP */
	char cpu[24], memory[32];
	char kernel[128], os_image[256], rt_version[80], arch[72];
	char pki[PATH_MAX_AGENT - 32], crt[PATH_MAX_AGENT], key[PATH_MAX_AGENT], ca[PATH_MAX_AGENT];
	/* the session */
	struct aep_tls *tls;
	struct aep_rpc_client *client;
	enum sess sess;
	unsigned backoff_ms;
	char last_err[AEP_ERRMSG_MAX]; /* of the last failed register, said once */
	int64_t lost_ns;	       /* monotonic: when the session was lost; 0 */
	char session_addr[300];	       /* the master that took node.register */
	bool hb_inflight;
	uv_timer_t reg_timer, hb_timer, status_timer, stop_timer;
	/* the runtime */
	struct aep_runtime *rt;
	bool rt_ready; /* adopted */
	char pod_cidr[48];
	struct podrec *pods;
	struct deferred *dq_head, *dq_tail;
	size_t ndq;
	struct logreq *logs;
	/* shutdown */
	uv_signal_t sigterm, sigint;
	bool stopping;
	int exit_code;
};

static void logf_(struct agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct agent *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "aep node %s: ", a->name);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void agent_stop(struct agent *a, int code);
static void reg_schedule(struct agent *a, unsigned delay_ms);
static void session_lost(struct agent *a, const char *why);
static bool session_moved(struct agent *a);
static void status_arm(struct agent *a, unsigned delay_ms);

/* ---- small helpers -------------------------------------------------------------- */

static int reply_buf(struct aep_rpc_conn *c, uint64_t msgid, const struct aep_buf *b)
{
	if (b->failed)
		return aep_rpc_reply_error(c, msgid, AEP_ENOMEM, "out of memory", NULL, 0);
	return aep_rpc_reply(c, msgid, b->data, b->len);
}

static void reply_empty(struct aep_rpc_conn *c, uint64_t msgid)
{
	aep_rpc_reply(c, msgid, "\x80", 1); /* {} */
}

static void reply_err(struct aep_rpc_conn *c, uint64_t msgid, const struct aep_error *e)
{
	aep_rpc_reply_error(c, msgid, e->code ? e->code : AEP_EINTERNAL, e->msg, NULL, 0);
}

/* A string param into @buf (at most @size - 1 bytes). Absent: "" and 0. */
static int param_str(const msgpack_object *p, const char *key, char *buf, size_t size,
		     bool required, struct aep_error *e)
{
	const msgpack_object *v = aep_mp_map_get(p, key);
	buf[0] = '\0';
	if (v == NULL || v->type == MSGPACK_OBJECT_NIL) {
		if (required)
			return aep_errorf(e, AEP_EBADREQUEST, "%s: required string", key);
		return 0;
	}
	if (v->type != MSGPACK_OBJECT_STR || v->via.str.size >= size ||
	    memchr(v->via.str.ptr, '\0', v->via.str.size) != NULL)
		return aep_errorf(e, AEP_EBADREQUEST, "%s: must be a string of at most %zu bytes",
				  key, size - 1);
	if (required && v->via.str.size == 0)
		return aep_errorf(e, AEP_EBADREQUEST, "%s: required string", key);
	memcpy(buf, v->via.str.ptr, v->via.str.size);
	buf[v->via.str.size] = '\0';
	return 0;
}

/* A non-negative integer param; absent: @dflt. */
static int param_uint(const msgpack_object *p, const char *key, uint64_t dflt, uint64_t *out,
		      struct aep_error *e)
{
	const msgpack_object *v = aep_mp_map_get(p, key);
	*out = dflt;
	if (v == NULL || v->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return aep_errorf(e, AEP_EBADREQUEST, "%s: must be a non-negative integer", key);
	*out = v->via.u64;
	return 0;
}

static struct podrec *podrec_find(struct agent *a, const char *uid)
{
	for (struct podrec *r = a->pods; r != NULL; r = r->next)
		if (strcmp(r->uid, uid) == 0)
			return r;
	return NULL;
}

static void podrec_drop(struct agent *a, const char *uid)
{
	for (struct podrec **pp = &a->pods; *pp != NULL; pp = &(*pp)->next) {
		if (strcmp((*pp)->uid, uid) == 0) {
			struct podrec *r = *pp;
			*pp = r->next;
			aep_free(r);
			return;
		}
	}
}

/* The one container of pod @uid into @out when @out is empty. */
static int default_container(struct agent *a, const char *uid, char *out, size_t size,
			     struct aep_error *e)
{
	if (out[0] != '\0')
		return 0;
	struct aep_pod_status *st;
	int rv = aep_runtime_pod_status(a->rt, uid, &st);
	if (rv != 0)
		return aep_errorf(e, rv, "pod %s is not on this node", uid);
	if (st->ncontainers != 1) {
		aep_pod_status_free(st);
		return aep_errorf(e, AEP_EBADREQUEST,
				  "pod %s has several containers: name one (container)", uid);
	}
	snprintf(out, size, "%s", st->containers[0].name);
	aep_pod_status_free(st);
	return 0;
}

/* The pod's status map as aep_pod_status_pack writes it, with hostIP. */
static void pack_status(struct agent *a, const struct aep_pod_status *st, msgpack_packer *pk)
{
	struct aep_buf b;
	msgpack_packer tpk;
	msgpack_zone zone;
	msgpack_object v;
	struct aep_error e = {0};
	aep_buf_init(&b);
	aep_packer_init(&tpk, &b);
	aep_pod_status_pack(st, a->runtime_name, &tpk);
	msgpack_zone_init(&zone, 1024);
	if (b.failed || aep_mp_unpack(b.data, b.len, &zone, &v, &e) != 0 ||
	    v.type != MSGPACK_OBJECT_MAP || a->address[0] == '\0') {
		aep_pod_status_pack(st, a->runtime_name, pk);
	} else {
		msgpack_pack_map(pk, v.via.map.size + 1);
		for (uint32_t i = 0; i < v.via.map.size; i++) {
			msgpack_pack_object(pk, v.via.map.ptr[i].key);
			msgpack_pack_object(pk, v.via.map.ptr[i].val);
		}
		aep_pack_str(pk, "hostIP");
		aep_pack_str(pk, a->address);
	}
	msgpack_zone_destroy(&zone);
	aep_buf_free(&b);
}

/* ---- pod status reporting ------------------------------------------------------------- */

struct status_call {
	struct agent *a;
	char uid[40];
};

static void status_done(void *data, const struct aep_rpc_reply *reply)
{
	struct status_call *sc = data;
	struct agent *a = sc->a;
	struct podrec *r = podrec_find(a, sc->uid);
	if (!a->stopping && reply->code != AEP_ECANCELED)
		session_moved(a);
	if (r != NULL) {
		r->inflight = false;
		if (reply->code != 0 && reply->code != AEP_ECANCELED) {
			/* NotFound / Forbidden: the pod left this node, a pod.kill
			 * follows; anything else is tried again (the next node.sync
			 * also carries it). */
			if (reply->code != AEP_ENOTFOUND && reply->code != AEP_EFORBIDDEN)
				r->dirty = true;
			if (reply->code != AEP_EUNAVAILABLE)
				logf_(a, "pod.status %s/%s: %s: %.*s", r->ns, r->name,
				      aep_err_code(reply->code), (int)reply->msg_len,
				      reply->msg ? reply->msg : "");
		}
		if (r->dirty)
			status_arm(a, reply->code == 0 ? STATUS_DELAY_MS : STATUS_RETRY_MS);
	}
	aep_free(sc);
}

static void status_send(struct agent *a, struct podrec *r)
{
	struct aep_pod_status *st;
	if (aep_runtime_pod_status(a->rt, r->uid, &st) != 0) {
		r->dirty = false;
		return;
	}
	struct status_call *sc = aep_calloc(1, sizeof(*sc));
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 4);
	aep_pack_str(&pk, "namespace");
	aep_pack_str(&pk, st->ns);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, st->name);
	aep_pack_str(&pk, "uid");
	aep_pack_str(&pk, st->uid);
	aep_pack_str(&pk, "status");
	pack_status(a, st, &pk);
	aep_pod_status_free(st);
	if (sc != NULL && !b.failed) {
		sc->a = a;
		snprintf(sc->uid, sizeof(sc->uid), "%s", r->uid);
		if (aep_rpc_call(a->client, "pod.status", b.data, b.len, status_done, sc) == 0) {
			r->dirty = false;
			r->inflight = true;
			sc = NULL;
		}
	}
	aep_free(sc);
	aep_buf_free(&b);
	if (r->dirty)
		status_arm(a, STATUS_RETRY_MS);
}

static void status_flush(uv_timer_t *t)
{
	struct agent *a = t->data;
	if (a->stopping || a->sess != SESS_UP || a->rt == NULL)
		return;
	for (struct podrec *r = a->pods; r != NULL; r = r->next)
		if (r->dirty && !r->inflight)
			status_send(a, r);
}

static void status_arm(struct agent *a, unsigned delay_ms)
{
	if (a->stopping || a->sess != SESS_UP)
		return; /* node.sync's answer carries every status */
	uint64_t due = uv_now(&a->loop) + delay_ms;
	if (uv_is_active((uv_handle_t *)&a->status_timer) &&
	    uv_timer_get_due_in(&a->status_timer) + uv_now(&a->loop) <= due)
		return;
	uv_timer_start(&a->status_timer, status_flush, delay_ms, 0);
}

static void on_pod_status(struct aep_runtime *rt, const char *uid, const struct aep_pod_status *st,
			  void *data)
{
	struct agent *a = data;
	(void)rt;
	if (st == NULL) {
		podrec_drop(a, uid);
		return;
	}
	struct podrec *r = podrec_find(a, uid);
	if (r == NULL) {
		r = aep_calloc(1, sizeof(*r));
		if (r == NULL)
			return; /* the next node.sync answer carries it */
		snprintf(r->uid, sizeof(r->uid), "%s", uid);
		r->phase = st->phase;
		r->next = a->pods;
		a->pods = r;
		logf_(a, "pod %s/%s (%s): %s%s%s", st->ns, st->name, uid,
		      aep_pod_phase_name(st->phase), st->message[0] ? ": " : "", st->message);
	} else if (r->phase != st->phase) {
		logf_(a, "pod %s/%s: %s -> %s%s%s%s%s%s", st->ns, st->name,
		      aep_pod_phase_name(r->phase), aep_pod_phase_name(st->phase),
		      st->pod_ip[0] ? " (" : "", st->pod_ip, st->pod_ip[0] ? ")" : "",
		      st->message[0] ? ": " : "", st->message);
		r->phase = st->phase;
	}
	snprintf(r->ns, sizeof(r->ns), "%s", st->ns);
	snprintf(r->name, sizeof(r->name), "%s", st->name);
	if (r->killing)
		return;
	r->dirty = true;
	status_arm(a, STATUS_DELAY_MS);
}

/* ---- leader calls: node.sync, pod.run, pod.kill --------------------------------------- */

static void kill_done(struct aep_runtime *rt, const char *uid, int status, void *data)
{
	struct agent *a = data;
	(void)rt;
	if (status == 0)
		logf_(a, "pod %s: stopped and removed", uid);
}

/* Run one Pod object; its uid into @uid. */
static int run_pod(struct agent *a, const msgpack_object *pod, char uid[40], struct aep_error *e)
{
	struct aep_object *o = NULL;
	int rv = aep_object_from_msgpack(pod, &o, e);
	if (rv != 0)
		return aep_error_prefix(e, "pod");
	if (o->kind != AEP_KIND_POD || o->meta.uid[0] == '\0' || strlen(o->meta.uid) >= 40) {
		rv = aep_errorf(e, AEP_EINVALID, "pod %s/%s: a Pod with a uid is required",
				o->meta.ns, o->meta.name);
		goto out;
	}
	snprintf(uid, 40, "%s", o->meta.uid);
	struct aep_pod_status *st = NULL;
	bool known = aep_runtime_pod_status(a->rt, uid, &st) == 0;
	aep_pod_status_free(st);
	rv = aep_runtime_pod_run(a->rt, o, e);
	if (rv != 0)
		aep_error_prefix(e, "pod %s/%s", o->meta.ns, o->meta.name);
	else if (!known)
		logf_(a, "pod %s/%s (%s): run", o->meta.ns, o->meta.name, uid);
out:
	aep_object_unref(o);
	return rv;
}

struct sync_acc {
	char (*want)[40];
	size_t nwant;
	char (*kill)[40];
	size_t nkill, cap;
};

static bool uid_in(char (*set)[40], size_t n, const char *uid)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(set[i], uid) == 0)
			return true;
	return false;
}

static int sync_visit(const struct aep_pod_status *st, void *data)
{
	struct sync_acc *acc = data;
	if (uid_in(acc->want, acc->nwant, st->uid))
		return 0;
	if (acc->nkill == acc->cap) {
		size_t cap = acc->cap ? acc->cap * 2 : 16;
		void *p = aep_realloc(acc->kill, cap * sizeof(*acc->kill));
		if (p == NULL)
			return 1;
		acc->kill = p;
		acc->cap = cap;
	}
	snprintf(acc->kill[acc->nkill++], 40, "%s", st->uid);
	return 0;
}

/* node.sync {generation, pods}: run what is listed, kill the rest, answer
 * {pods: [{uid, status}]} with what runs now. A pod that cannot run (a bad
 * object) is left out of the answer and said in the log. */
static void on_sync(struct agent *a, struct aep_rpc_conn *c, uint64_t msgid,
		    const msgpack_object *p)
{
	struct aep_error e = {0};
	const msgpack_object *pods = aep_mp_map_get(p, "pods");
	uint64_t gen;
	if (pods == NULL || pods->type != MSGPACK_OBJECT_ARRAY ||
	    param_uint(p, "generation", 0, &gen, &e) != 0) {
		if (e.code == 0)
			aep_errorf(&e, AEP_EBADREQUEST, "pods: required list of Pods");
		reply_err(c, msgid, &e);
		return;
	}
	struct sync_acc acc = {0};
	acc.want = aep_calloc(pods->via.array.size + 1, sizeof(*acc.want));
	if (acc.want == NULL) {
		aep_errorf(&e, AEP_ENOMEM, "out of memory");
		reply_err(c, msgid, &e);
		return;
	}
	for (uint32_t i = 0; i < pods->via.array.size; i++) {
		char uid[40];
		aep_error_clear(&e);
		int rv = run_pod(a, &pods->via.array.ptr[i], uid, &e);
		if (rv == 0 || rv == AEP_ECONFLICT)
			snprintf(acc.want[acc.nwant++], 40, "%s", uid);
		if (rv != 0)
			logf_(a, "node.sync: %s", e.msg);
	}
	if (aep_runtime_pod_list(a->rt, sync_visit, &acc) != 0)
		logf_(a, "node.sync: out of memory listing the pods to kill");
	for (size_t i = 0; i < acc.nkill; i++) {
		if (aep_runtime_pod_kill(a->rt, acc.kill[i], kill_done, a) == 0)
			logf_(a, "pod %s: not in node.sync: killing", acc.kill[i]);
	}
	logf_(a, "node.sync (generation %llu): %zu pods to run, %zu to kill",
	      (unsigned long long)gen, acc.nwant, acc.nkill);

	struct aep_buf b;
	msgpack_packer pk;
	uint32_t n = 0;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	struct aep_buf items;
	msgpack_packer ipk;
	aep_buf_init(&items);
	aep_packer_init(&ipk, &items);
	for (size_t i = 0; i < acc.nwant; i++) {
		struct aep_pod_status *st;
		if (aep_runtime_pod_status(a->rt, acc.want[i], &st) != 0)
			continue;
		msgpack_pack_map(&ipk, 2);
		aep_pack_str(&ipk, "uid");
		aep_pack_str(&ipk, st->uid);
		aep_pack_str(&ipk, "status");
		pack_status(a, st, &ipk);
		aep_pod_status_free(st);
		struct podrec *r = podrec_find(a, acc.want[i]);
		if (r != NULL && !r->inflight)
			r->dirty = false; /* this answer carries it */
		n++;
	}
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "pods");
	msgpack_pack_array(&pk, n);
	aep_buf_append(&b, items.data, items.len);
	if (items.failed)
		b.failed = true;
	reply_buf(c, msgid, &b);
	aep_buf_free(&items);
	aep_buf_free(&b);
	aep_free(acc.want);
	aep_free(acc.kill);
}

/* pod.run {pod} */
static void on_run(struct agent *a, struct aep_rpc_conn *c, uint64_t msgid, const msgpack_object *p)
{
	struct aep_error e = {0};
	const msgpack_object *pod = aep_mp_map_get(p, "pod");
	char uid[40];
	if (pod == NULL || pod->type != MSGPACK_OBJECT_MAP) {
		aep_errorf(&e, AEP_EBADREQUEST, "pod: required map (a Pod)");
		reply_err(c, msgid, &e);
		return;
	}
	if (run_pod(a, pod, uid, &e) != 0) {
		logf_(a, "pod.run: %s", e.msg);
		reply_err(c, msgid, &e);
		return;
	}
	reply_empty(c, msgid);
}

/* pod.kill {uid, namespace, name, gracePeriodSeconds?}: answered at once;
 * the teardown goes on in the runtime (its grace period, then removal). */
static void on_kill(struct agent *a, struct aep_rpc_conn *c, uint64_t msgid,
		    const msgpack_object *p)
{
	struct aep_error e = {0};
	char uid[40], ns[64], name[AEP_NAME_MAX + 1];
	if (param_str(p, "uid", uid, sizeof(uid), true, &e) != 0 ||
	    param_str(p, "namespace", ns, sizeof(ns), false, &e) != 0 ||
	    param_str(p, "name", name, sizeof(name), false, &e) != 0) {
		reply_err(c, msgid, &e);
		return;
	}
	int rv = aep_runtime_pod_kill(a->rt, uid, kill_done, a);
	if (rv == 0) {
		logf_(a, "pod %s/%s (%s): killing", ns, name, uid);
		struct podrec *r = podrec_find(a, uid);
		if (r == NULL && (r = aep_calloc(1, sizeof(*r))) != NULL) {
			snprintf(r->uid, sizeof(r->uid), "%s", uid);
			r->next = a->pods;
			a->pods = r;
		}
		if (r != NULL) {
			r->killing = true;
			r->dirty = false;
		}
	} else if (rv != AEP_ENOTFOUND)
		logf_(a, "pod.kill %s/%s: %s", ns, name, aep_err_code(rv));
	reply_empty(c, msgid); /* unknown uid: already gone */
}

/* ---- pod.logs ------------------------------------------------------------------------ */

static void logreq_free(struct logreq *lr)
{
	struct agent *a = lr->a;
	for (struct logreq **pp = &a->logs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == lr) {
			*pp = lr->next;
			break;
		}
	}
	aep_rpc_conn_unref(lr->conn);
	aep_buf_free(&lr->buf);
	aep_free(lr);
}

static void notify_stream(struct logreq *lr, const char *method, const char *data, size_t len)
{
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, data != NULL ? 2 : 1);
	aep_pack_str(&pk, "stream");
	msgpack_pack_uint64(&pk, lr->stream);
	if (data != NULL) {
		aep_pack_str(&pk, "data");
		msgpack_pack_bin(&pk, len);
		msgpack_pack_bin_body(&pk, data, len);
	}
	if (!b.failed)
		aep_rpc_notify(lr->conn, method, b.data, b.len);
	aep_buf_free(&b);
}

/* Stops wanted from inside a logs callback happen here, outside it. */
static void stop_pending(uv_timer_t *t)
{
	struct agent *a = t->data;
	for (struct logreq *lr = a->logs, *next; lr != NULL; lr = next) {
		next = lr->next;
		if (lr->stopping) {
			lr->stopping = false;
			aep_logs_stop(&lr->req);
		}
	}
}

static void logs_cb(struct aep_logs_req *req, int status, const char *data, size_t len)
{
	struct logreq *lr = req->data;
	struct agent *a = lr->a;
	if (len > 0) {
		if (lr->follow) {
			if (lr->skip >= len) {
				lr->skip -= len;
				return;
			}
			data += lr->skip;
			len -= lr->skip;
			lr->skip = 0;
			if (aep_rpc_conn_closed(lr->conn) ||
			    aep_rpc_conn_pending(lr->conn) > STREAM_BACKLOG_MAX) {
				if (!aep_rpc_conn_closed(lr->conn))
					logf_(a,
					      "log stream %llu: the master does not take it "
					      "fast enough: ending it",
					      (unsigned long long)lr->stream);
				lr->stopping = true;
				uv_timer_start(&a->stop_timer, stop_pending, 0, 0);
				return;
			}
			for (size_t off = 0; off < len; off += LOG_CHUNK_MAX)
				notify_stream(lr, "log", data + off,
					      len - off > LOG_CHUNK_MAX ? LOG_CHUNK_MAX
									: len - off);
			return;
		}
		aep_buf_append(&lr->buf, data, len);
		if (lr->buf.len > 2 * lr->tail + LOG_CHUNK_MAX) {
			memmove(lr->buf.data, lr->buf.data + lr->buf.len - lr->tail, lr->tail);
			lr->buf.len = lr->tail;
		}
		return;
	}
	if (lr->follow) {
		if (!lr->quiet)
			notify_stream(lr, "log.end", NULL, 0);
	} else if (status != 0) {
		struct aep_error e = {0};
		aep_errorf(&e, status, "reading the log failed: %s", aep_err_code(status));
		reply_err(lr->conn, lr->msgid, &e);
	} else {
		size_t n = lr->buf.len > lr->tail ? lr->tail : lr->buf.len;
		const char *start = lr->buf.data + (lr->buf.len - n);
		struct aep_buf b;
		msgpack_packer pk;
		aep_buf_init(&b);
		aep_packer_init(&pk, &b);
		msgpack_pack_map(&pk, 1);
		aep_pack_str(&pk, "data");
		msgpack_pack_bin(&pk, n);
		msgpack_pack_bin_body(&pk, start, n);
		if (lr->buf.failed)
			b.failed = true;
		reply_buf(lr->conn, lr->msgid, &b);
		aep_buf_free(&b);
	}
	logreq_free(lr);
}

/* pod.logs {uid, container?, tailBytes?} -> {data}, or with {follow: true,
 * stream}: {} and then "log" notifications until "log.end". */
static void on_logs(struct agent *a, struct aep_rpc_conn *c, uint64_t msgid,
		    const msgpack_object *p)
{
	struct aep_error e = {0};
	char uid[40], ctr[AEP_LABEL_NAME_MAX + 1];
	uint64_t tail, stream = 0;
	bool follow = false;
	const msgpack_object *f = aep_mp_map_get(p, "follow");
	if (param_str(p, "uid", uid, sizeof(uid), true, &e) != 0 ||
	    param_str(p, "container", ctr, sizeof(ctr), false, &e) != 0 ||
	    param_uint(p, "tailBytes", LOG_TAIL_MAX, &tail, &e) != 0)
		goto fail;
	if (f != NULL && f->type == MSGPACK_OBJECT_BOOLEAN)
		follow = f->via.boolean;
	else if (f != NULL && f->type != MSGPACK_OBJECT_NIL) {
		aep_errorf(&e, AEP_EBADREQUEST, "follow: must be a boolean");
		goto fail;
	}
	if (follow) {
		const msgpack_object *s = aep_mp_map_get(p, "stream");
		if (s == NULL || s->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
			aep_errorf(&e, AEP_EBADREQUEST, "stream: required with follow");
			goto fail;
		}
		stream = s->via.u64;
	}
	if (tail > LOG_TAIL_MAX)
		tail = LOG_TAIL_MAX;
	if (default_container(a, uid, ctr, sizeof(ctr), &e) != 0)
		goto fail;
	struct logreq *lr = aep_calloc(1, sizeof(*lr));
	if (lr == NULL) {
		aep_errorf(&e, AEP_ENOMEM, "out of memory");
		goto fail;
	}
	lr->req.data = lr;
	lr->a = a;
	lr->conn = aep_rpc_conn_ref(c);
	lr->msgid = msgid;
	lr->follow = follow;
	lr->stream = stream;
	lr->tail = (size_t)tail;
	aep_buf_init(&lr->buf);
	if (follow && aep_mp_map_get(p, "tailBytes") != NULL) {
		/* the file layout is node.h's: DIR/pods/UID/NAME.log */
		char path[PATH_MAX_AGENT];
		struct stat sb;
		snprintf(path, sizeof(path), "%s/pods/%s/%s.log", a->dir, uid, ctr);
		if (stat(path, &sb) == 0 && (uint64_t)sb.st_size > tail)
			lr->skip = (uint64_t)sb.st_size - tail;
	}
	int rv = aep_runtime_logs(a->rt, uid, ctr, follow, &lr->req, logs_cb);
	if (rv != 0) {
		aep_rpc_conn_unref(lr->conn);
		aep_free(lr);
		aep_errorf(&e, rv, "pod %s has no container %s on this node", uid, ctr);
		goto fail;
	}
	lr->next = a->logs;
	a->logs = lr;
	if (follow)
		reply_empty(c, msgid);
	return;
fail:
	reply_err(c, msgid, &e);
}

/* pod.logs.stop {stream} */
static void on_logs_stop(struct agent *a, struct aep_rpc_conn *c, uint64_t msgid,
			 const msgpack_object *p)
{
	struct aep_error e = {0};
	uint64_t id;
	if (param_uint(p, "stream", 0, &id, &e) != 0) {
		reply_err(c, msgid, &e);
		return;
	}
	for (struct logreq *lr = a->logs; lr != NULL; lr = lr->next) {
		if (lr->follow && lr->stream == id && lr->conn == c) {
			lr->quiet = true;
			lr->stopping = true;
			uv_timer_start(&a->stop_timer, stop_pending, 0, 0);
			break;
		}
	}
	reply_empty(c, msgid);
}

/* End the followed logs of connections that closed. */
static void logs_orphaned(struct agent *a)
{
	bool any = false;
	for (struct logreq *lr = a->logs; lr != NULL; lr = lr->next) {
		if (lr->follow && aep_rpc_conn_closed(lr->conn)) {
			lr->quiet = true;
			lr->stopping = true;
			any = true;
		}
	}
	if (any)
		uv_timer_start(&a->stop_timer, stop_pending, 0, 0);
}

/* ---- pod.exec ------------------------------------------------------------------------ */

static void exec_closed(uv_handle_t *h)
{
	struct execreq *x = h->data;
	aep_rpc_conn_unref(x->conn);
	aep_free(x);
}

static void exec_timeout(uv_timer_t *t)
{
	struct execreq *x = t->data;
	struct aep_error e = {0};
	x->answered = true;
	aep_errorf(&e, AEP_ETIMEOUT, "the command did not end within timeoutSeconds");
	reply_err(x->conn, x->msgid, &e);
}

static void exec_cb(struct aep_exec_req *req, int status, int exit_code, const struct aep_buf *out,
		    const struct aep_buf *err)
{
	struct execreq *x = req->data;
	if (!x->answered) {
		x->answered = true;
		if (status != 0) {
			struct aep_error e = {0};
			aep_errorf(&e, status, "exec: %s", aep_err_code(status));
			reply_err(x->conn, x->msgid, &e);
		} else {
			struct aep_buf b;
			msgpack_packer pk;
			aep_buf_init(&b);
			aep_packer_init(&pk, &b);
			msgpack_pack_map(&pk, 3);
			aep_pack_str(&pk, "exitCode");
			msgpack_pack_int(&pk, exit_code);
			aep_pack_str(&pk, "stdout");
			msgpack_pack_bin(&pk, out->len);
			msgpack_pack_bin_body(&pk, out->data, out->len);
			aep_pack_str(&pk, "stderr");
			msgpack_pack_bin(&pk, err->len);
			msgpack_pack_bin_body(&pk, err->data, err->len);
			reply_buf(x->conn, x->msgid, &b);
			aep_buf_free(&b);
		}
	}
	uv_close((uv_handle_t *)&x->timer, exec_closed);
}

/* pod.exec {uid, container?, command, timeoutSeconds?} -> {exitCode,
 * stdout, stderr}. On a timeout the answer is Timeout and the command is
 * left to end by itself (node.h has no way to cancel one exec). */
static void on_exec(struct agent *a, struct aep_rpc_conn *c, uint64_t msgid,
		    const msgpack_object *p)
{
	struct aep_error e = {0};
	char uid[40], ctr[AEP_LABEL_NAME_MAX + 1];
	uint64_t timeout;
	const msgpack_object *cmd = aep_mp_map_get(p, "command");
	char **argv = NULL;
	uint32_t n = 0;
	if (param_str(p, "uid", uid, sizeof(uid), true, &e) != 0 ||
	    param_str(p, "container", ctr, sizeof(ctr), false, &e) != 0 ||
	    param_uint(p, "timeoutSeconds", 0, &timeout, &e) != 0)
		goto fail;
	if (cmd == NULL || cmd->type != MSGPACK_OBJECT_ARRAY || cmd->via.array.size == 0 ||
	    cmd->via.array.size > EXEC_ARGS_MAX) {
		aep_errorf(&e, AEP_EBADREQUEST, "command: required list of 1 to %d strings",
			   EXEC_ARGS_MAX);
		goto fail;
	}
	if (default_container(a, uid, ctr, sizeof(ctr), &e) != 0)
		goto fail;
	n = cmd->via.array.size;
	argv = aep_calloc(n + 1, sizeof(*argv));
	if (argv == NULL) {
		aep_errorf(&e, AEP_ENOMEM, "out of memory");
		goto fail;
	}
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *s = &cmd->via.array.ptr[i];
		if (s->type != MSGPACK_OBJECT_STR ||
		    memchr(s->via.str.ptr, '\0', s->via.str.size) != NULL) {
			aep_errorf(&e, AEP_EBADREQUEST, "command[%u]: must be a string", i);
			goto fail;
		}
		if ((argv[i] = aep_mp_strdup(s)) == NULL) {
			aep_errorf(&e, AEP_ENOMEM, "out of memory");
			goto fail;
		}
	}
	struct execreq *x = aep_calloc(1, sizeof(*x));
	if (x == NULL) {
		aep_errorf(&e, AEP_ENOMEM, "out of memory");
		goto fail;
	}
	x->req.data = x;
	x->a = a;
	x->msgid = msgid;
	uv_timer_init(&a->loop, &x->timer);
	x->timer.data = x;
	if (aep_runtime_exec(a->rt, uid, ctr, (const char *const *)argv, &x->req, exec_cb, &e) !=
	    0) {
		x->conn = NULL;
		uv_close((uv_handle_t *)&x->timer, exec_closed);
		goto fail;
	}
	x->conn = aep_rpc_conn_ref(c);
	if (timeout > 0)
		uv_timer_start(&x->timer, exec_timeout, timeout > 86400 ? 86400000 : timeout * 1000,
			       0);
	for (uint32_t i = 0; i < n; i++)
		aep_free(argv[i]);
	aep_free(argv);
	return;
fail:
	for (uint32_t i = 0; argv != NULL && i < n; i++)
		aep_free(argv[i]);
	aep_free(argv);
	reply_err(c, msgid, &e);
}

/* ---- dispatch ------------------------------------------------------------------------ */

typedef void (*method_fn)(struct agent *a, struct aep_rpc_conn *c, uint64_t msgid,
			  const msgpack_object *params);

static const struct {
	const char *name;
	method_fn fn;
} methods[] = {
    {"node.sync", on_sync}, {"pod.run", on_run},   {"pod.kill", on_kill},
    {"pod.logs", on_logs},  {"pod.exec", on_exec}, {"pod.logs.stop", on_logs_stop},
};

static method_fn method_find(const char *m, size_t len)
{
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strlen(methods[i].name) == len && memcmp(methods[i].name, m, len) == 0)
			return methods[i].fn;
	return NULL;
}

static void on_request(void *data, struct aep_rpc_conn *c, uint64_t msgid, const char *method,
		       size_t method_len, const msgpack_object *params)
{
	struct agent *a = data;
	method_fn fn = method_find(method, method_len);
	if (fn == NULL) {
		char msg[128];
		snprintf(msg, sizeof(msg), "the node agent has no method \"%.*s\"",
			 (int)(method_len > 64 ? 64 : method_len), method);
		aep_rpc_reply_error(c, msgid, AEP_ENOMETHOD, msg, NULL, 0);
		return;
	}
	if (a->stopping) {
		aep_rpc_reply_error(c, msgid, AEP_EUNAVAILABLE, "the node agent is stopping", NULL,
				    0);
		return;
	}
	if (params == NULL || params->type != MSGPACK_OBJECT_MAP) {
		aep_rpc_reply_error(c, msgid, AEP_EBADREQUEST, "params must be one map", NULL, 0);
		return;
	}
	if (a->rt_ready) {
		fn(a, c, msgid, params);
		return;
	}
	/* The runtime is adopting what an earlier agent left: hold the call. */
	struct deferred *d = a->ndq < DEFERRED_MAX ? aep_calloc(1, sizeof(*d)) : NULL;
	if (d == NULL) {
		aep_rpc_reply_error(c, msgid, AEP_EUNAVAILABLE, "the node agent is starting; retry",
				    NULL, 0);
		return;
	}
	msgpack_packer pk;
	aep_buf_init(&d->params);
	aep_packer_init(&pk, &d->params);
	msgpack_pack_object(&pk, *params);
	snprintf(d->method, sizeof(d->method), "%.*s", (int)method_len, method);
	d->conn = aep_rpc_conn_ref(c);
	d->msgid = msgid;
	if (a->dq_tail != NULL)
		a->dq_tail->next = d;
	else
		a->dq_head = d;
	a->dq_tail = d;
	a->ndq++;
}

static void deferred_free(struct deferred *d)
{
	aep_rpc_conn_unref(d->conn);
	aep_buf_free(&d->params);
	aep_free(d);
}

static void deferred_run(struct agent *a)
{
	while (a->dq_head != NULL && !a->stopping) {
		struct deferred *d = a->dq_head;
		a->dq_head = d->next;
		if (a->dq_head == NULL)
			a->dq_tail = NULL;
		a->ndq--;
		msgpack_zone zone;
		msgpack_object v;
		struct aep_error e = {0};
		msgpack_zone_init(&zone, 4096);
		if (d->params.failed ||
		    aep_mp_unpack(d->params.data, d->params.len, &zone, &v, &e) != 0) {
			aep_rpc_reply_error(d->conn, d->msgid, AEP_ENOMEM, "out of memory", NULL,
					    0);
		} else if (!aep_rpc_conn_closed(d->conn)) {
			method_fn fn = method_find(d->method, strlen(d->method));
			fn(a, d->conn, d->msgid, &v);
		}
		msgpack_zone_destroy(&zone);
		deferred_free(d);
	}
}

/* ---- node.register, heartbeats -------------------------------------------------------- */

static void pack_resources(struct agent *a, msgpack_packer *pk)
{
	msgpack_pack_map(pk, 3);
	aep_pack_str(pk, "cpu");
	aep_pack_str(pk, a->cpu);
	aep_pack_str(pk, "memory");
	aep_pack_str(pk, a->memory);
	aep_pack_str(pk, "pods");
	aep_pack_str(pk, PODS_CAPACITY);
}

/* {node: Node} for node.register. */
static void pack_register(struct agent *a, struct aep_buf *b)
{
	msgpack_packer pk;
	aep_packer_init(&pk, b);
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "node");
	msgpack_pack_map(&pk, 4);
	aep_pack_str(&pk, "apiVersion");
	aep_pack_str(&pk, "v1");
	aep_pack_str(&pk, "kind");
	aep_pack_str(&pk, "Node");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, a->nlabels > 0 ? 2 : 1);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, a->name);
	if (a->nlabels > 0) {
		aep_pack_str(&pk, "labels");
		msgpack_pack_map(&pk, (uint32_t)a->nlabels);
		for (size_t i = 0; i < a->nlabels; i++) {
			aep_pack_str(&pk, a->labels[i].key);
			aep_pack_str(&pk, a->labels[i].value);
		}
	}
	aep_pack_str(&pk, "status");
	msgpack_pack_map(&pk, 4);
	aep_pack_str(&pk, "capacity");
	pack_resources(a, &pk);
	aep_pack_str(&pk, "allocatable");
	pack_resources(a, &pk);
	aep_pack_str(&pk, "addresses");
	msgpack_pack_array(&pk, a->address[0] ? 2 : 1);
	if (a->address[0]) {
		msgpack_pack_map(&pk, 2);
		aep_pack_str(&pk, "type");
		aep_pack_str(&pk, "InternalIP");
		aep_pack_str(&pk, "address");
		aep_pack_str(&pk, a->address);
	}
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "type");
	aep_pack_str(&pk, "Hostname");
	aep_pack_str(&pk, "address");
	aep_pack_str(&pk, a->name);
	aep_pack_str(&pk, "nodeInfo");
	msgpack_pack_map(&pk, 4);
	aep_pack_str(&pk, "kernelVersion");
	aep_pack_str(&pk, a->kernel);
	aep_pack_str(&pk, "osImage");
	aep_pack_str(&pk, a->os_image);
	aep_pack_str(&pk, "containerRuntimeVersion");
	aep_pack_str(&pk, a->rt_version);
	aep_pack_str(&pk, "architecture");
	aep_pack_str(&pk, a->arch);
}

static void adopt_done(struct aep_runtime *rt, int status, void *data)
{
	struct agent *a = data;
	(void)rt;
	if (status == AEP_ECANCELED)
		return;
	size_t n = 0;
	for (struct podrec *r = a->pods; r != NULL; r = r->next)
		n++;
	if (status != 0)
		logf_(a, "adopting the pods of %s failed (%s); going on with what was found",
		      a->dir, aep_err_code(status));
	else
		logf_(a, "runtime ready: %zu pods adopted", n);
	a->rt_ready = true;
	deferred_run(a);
}

/* The first registration: the runtime, on the node's pod subnet. */
static int runtime_start(struct agent *a, struct aep_error *e)
{
	struct aep_runtime_config cfg = {
	    .dir = a->dir,
	    .runtime = a->runtime,
	    .bridge = a->bridge,
	    .pod_cidr = a->pod_cidr,
	    .status_cb = on_pod_status,
	    .data = a,
	};
	int rv = aep_runtime_new(&a->loop, &cfg, &a->rt, e);
	if (rv != 0)
		return rv;
	rv = aep_runtime_adopt(a->rt, adopt_done, a);
	if (rv != 0)
		return aep_errorf(e, rv, "adopt: %s", aep_err_code(rv));
	return 0;
}

static void reg_done(void *data, const struct aep_rpc_reply *reply)
{
	struct agent *a = data;
	if (a->stopping || reply->code == AEP_ECANCELED)
		return;
	if (reply->code != 0) {
		/* A master answered (NotLeader after the redirects, no leader
		 * yet): an election; short retries. Nobody answered: back off. */
		bool answered =
		    reply->code != AEP_EUNAVAILABLE || aep_rpc_client_server(a->client) != NULL;
		unsigned delay = a->backoff_ms;
		if (answered && delay > BACKOFF_ANSWERED_MS)
			delay = BACKOFF_ANSWERED_MS;
		a->backoff_ms =
		    a->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : a->backoff_ms * 2;
		char msg[AEP_ERRMSG_MAX];
		snprintf(msg, sizeof(msg), "%s: %.*s", aep_err_code(reply->code),
			 (int)(reply->msg_len > 300 ? 300 : reply->msg_len),
			 reply->msg ? reply->msg : "");
		if (strcmp(msg, a->last_err) != 0) {
			logf_(a, "node.register: %s; retrying", msg);
			snprintf(a->last_err, sizeof(a->last_err), "%s", msg);
		}
		a->sess = SESS_NONE;
		reg_schedule(a, delay);
		return;
	}
	const msgpack_object *cidr =
	    aep_mp_map_get(aep_mp_map_get(reply->result, "spec"), "podCIDR");
	if (cidr == NULL || cidr->type != MSGPACK_OBJECT_STR || cidr->via.str.size == 0 ||
	    cidr->via.str.size >= sizeof(a->pod_cidr)) {
		logf_(a, "node.register: the Node has no spec.podCIDR; retrying");
		a->sess = SESS_NONE;
		reg_schedule(a, BACKOFF_MAX_MS);
		return;
	}
	char got[sizeof(a->pod_cidr)];
	memcpy(got, cidr->via.str.ptr, cidr->via.str.size);
	got[cidr->via.str.size] = '\0';
	const char *server = aep_rpc_client_server(a->client);
	int64_t now = aep_now_monotonic_ns();
	if (a->lost_ns != 0)
		logf_(a, "registered with %s (podCIDR %s), %lld ms after the session was lost",
		      server ? server : "?", got, (long long)((now - a->lost_ns) / 1000000));
	else
		logf_(a, "registered with %s (podCIDR %s)", server ? server : "?", got);
	a->sess = SESS_UP;
	a->backoff_ms = BACKOFF_MIN_MS;
	a->last_err[0] = '\0';
	a->lost_ns = 0;
	if (a->rt == NULL) {
		struct aep_error e = {0};
		snprintf(a->pod_cidr, sizeof(a->pod_cidr), "%s", got);
		if (runtime_start(a, &e) != 0) {
			logf_(a, "%s", e.msg);
			agent_stop(a, 1);
			return;
		}
	} else if (strcmp(got, a->pod_cidr) != 0) {
		logf_(a,
		      "the Node's podCIDR is now %s, the runtime's %s: pods keep the old "
		      "subnet until the agent restarts",
		      got, a->pod_cidr);
	}
	snprintf(a->session_addr, sizeof(a->session_addr), "%s", server ? server : "");
	status_arm(a, STATUS_DELAY_MS);
}

static void reg_fire(uv_timer_t *t)
{
	struct agent *a = t->data;
	struct aep_buf b;
	if (a->stopping || a->sess != SESS_WAIT)
		return;
	aep_buf_init(&b);
	pack_register(a, &b);
	int rv = b.failed ? AEP_ENOMEM
			  : aep_rpc_call(a->client, "node.register", b.data, b.len, reg_done, a);
	aep_buf_free(&b);
	if (rv != 0) {
		a->sess = SESS_NONE;
		reg_schedule(a, BACKOFF_MAX_MS);
		return;
	}
	a->sess = SESS_REGISTERING;
}

static void reg_schedule(struct agent *a, unsigned delay_ms)
{
	if (a->stopping || a->sess != SESS_NONE)
		return;
	a->sess = SESS_WAIT;
	uv_timer_start(&a->reg_timer, reg_fire, delay_ms, 0);
}

/* The session is gone (the connection broke, or the leader said it does
 * not know us): register again. */
static void session_lost(struct agent *a, const char *why)
{
	if (a->sess != SESS_UP)
		return;
	logf_(a, "session lost (%s); registering again", why);
	a->sess = SESS_NONE;
	a->lost_ns = aep_now_monotonic_ns();
	a->backoff_ms = BACKOFF_MIN_MS;
	reg_schedule(a, BACKOFF_MIN_MS);
}

static void on_disconnect(void *data)
{
	struct agent *a = data;
	if (a->stopping)
		return;
	logs_orphaned(a);
	session_lost(a, "connection closed");
}

/* A NotLeader answer makes the client library move its connection to the
 * leader; the old one, our session, then drains and closes quietly. A
 * reply that came back over another master means that happened. */
static bool session_moved(struct agent *a)
{
	const char *server = aep_rpc_client_server(a->client);
	if (a->sess != SESS_UP || server == NULL || strcmp(server, a->session_addr) == 0)
		return false;
	char why[400];
	snprintf(why, sizeof(why), "the connection moved from %s to %s", a->session_addr, server);
	session_lost(a, why);
	return true;
}

static void hb_done(void *data, const struct aep_rpc_reply *reply)
{
	struct agent *a = data;
	a->hb_inflight = false;
	if (a->stopping || reply->code == AEP_ECANCELED || session_moved(a) || reply->code == 0)
		return;
	if (reply->code == AEP_EUNAVAILABLE && aep_rpc_client_server(a->client) == NULL)
		return; /* the connection broke: on_disconnect registers again */
	char why[AEP_ERRMSG_MAX];
	snprintf(why, sizeof(why), "node.heartbeat: %s: %.*s", aep_err_code(reply->code),
		 (int)(reply->msg_len > 300 ? 300 : reply->msg_len), reply->msg ? reply->msg : "");
	session_lost(a, why);
}

static void hb_fire(uv_timer_t *t)
{
	struct agent *a = t->data;
	if (a->stopping || a->sess != SESS_UP || a->hb_inflight)
		return;
	if (aep_rpc_call(a->client, "node.heartbeat", "\x80", 1, hb_done, a) == 0)
		a->hb_inflight = true;
}

/* ---- shutdown ------------------------------------------------------------------------ */

static void handle_closed(uv_handle_t *h)
{
	(void)h;
}

static void client_closed(void *data)
{
	struct agent *a = data;
	a->client = NULL;
	uv_close((uv_handle_t *)&a->reg_timer, handle_closed);
	uv_close((uv_handle_t *)&a->hb_timer, handle_closed);
	uv_close((uv_handle_t *)&a->status_timer, handle_closed);
	uv_close((uv_handle_t *)&a->stop_timer, handle_closed);
	uv_close((uv_handle_t *)&a->sigterm, handle_closed);
	uv_close((uv_handle_t *)&a->sigint, handle_closed);
}

static void rt_closed(struct aep_runtime *rt, void *data)
{
	struct agent *a = data;
	(void)rt;
	a->rt = NULL;
	aep_rpc_client_close(a->client, client_closed, a);
}

/* Stop: the containers keep running (the next agent adopts them). */
static void agent_stop(struct agent *a, int code)
{
	if (a->stopping)
		return;
	a->stopping = true;
	a->exit_code = code;
	logf_(a, "stopping; containers keep running");
	uv_timer_stop(&a->reg_timer);
	uv_timer_stop(&a->hb_timer);
	uv_timer_stop(&a->status_timer);
	while (a->dq_head != NULL) {
		struct deferred *d = a->dq_head;
		a->dq_head = d->next;
		aep_rpc_reply_error(d->conn, d->msgid, AEP_EUNAVAILABLE,
				    "the node agent is stopping", NULL, 0);
		deferred_free(d);
	}
	a->dq_tail = NULL;
	a->ndq = 0;
	for (struct logreq *lr = a->logs; lr != NULL; lr = lr->next)
		lr->stopping = true;
	stop_pending(&a->stop_timer);
	if (a->rt != NULL)
		aep_runtime_close(a->rt, rt_closed, a);
	else
		rt_closed(NULL, a);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct agent *a = s->data;
	logf_(a, "%s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	agent_stop(a, 0);
}

/* ---- joining ------------------------------------------------------------------------- */

static int ssl_err(struct aep_error *e, const char *what)
{
	unsigned long code = ERR_get_error();
	char buf[256] = "unknown error";
	if (code != 0)
		ERR_error_string_n(code, buf, sizeof(buf));
	ERR_clear_error();
	return aep_errorf(e, AEP_EINTERNAL, "%s: %s", what, buf);
}

/* A P-256 key and a PEM PKCS#10 request for CN @cn, O system:nodes. */
static int csr_new(const char *cn, EVP_PKEY **key, struct aep_buf *csr, struct aep_error *e)
{
	X509_REQ *req = NULL;
	BIO *bio = NULL;
	char *pem;
	long n;
	int rv = 0;
	*key = EVP_EC_gen("P-256");
	if (*key == NULL)
		return ssl_err(e, "generate a P-256 key");
	req = X509_REQ_new();
	if (req == NULL) {
		rv = ssl_err(e, "X509_REQ_new");
		goto out;
	}
	X509_NAME *nm = X509_REQ_get_subject_name(req);
	if (!X509_REQ_set_version(req, 0) ||
	    !X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8,
					(const unsigned char *)"system:nodes", -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
					0) ||
	    !X509_REQ_set_pubkey(req, *key) || X509_REQ_sign(req, *key, EVP_sha256()) <= 0) {
		rv = ssl_err(e, "certificate request");
		goto out;
	}
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL || !PEM_write_bio_X509_REQ(bio, req) ||
	    (n = BIO_get_mem_data(bio, &pem)) <= 0) {
		rv = ssl_err(e, "write the certificate request");
		goto out;
	}
	if (aep_buf_append(csr, pem, (size_t)n) != 0)
		rv = aep_errorf(e, AEP_ENOMEM, "out of memory");
out:
	BIO_free(bio);
	X509_REQ_free(req);
	if (rv != 0) {
		EVP_PKEY_free(*key);
		*key = NULL;
	}
	return rv;
}

/* Write @len bytes to @path through PATH.tmp and a rename, with @mode. */
static int write_atomic(const char *path, const char *data, size_t len, mode_t mode,
			struct aep_error *e)
{
	char tmp[PATH_MAX_AGENT + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return aep_errorf(e, AEP_EIO, "create %s: %s", tmp, strerror(errno));
	fchmod(fd, mode);
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			int err = errno;
			close(fd);
			unlink(tmp);
			return aep_errorf(e, AEP_EIO, "write %s: %s", tmp, strerror(err));
		}
		off += (size_t)w;
	}
	if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
		int err = errno;
		unlink(tmp);
		return aep_errorf(e, AEP_EIO, "write %s: %s", path, strerror(err));
	}
	return 0;
}

static int write_key(const char *path, EVP_PKEY *key, struct aep_error *e)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem;
	long n;
	int rv;
	if (bio == NULL || !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) ||
	    (n = BIO_get_mem_data(bio, &pem)) <= 0)
		rv = ssl_err(e, "write the key");
	else
		rv = write_atomic(path, pem, (size_t)n, 0600, e);
	BIO_free(bio);
	return rv;
}

static void join_client_closed(void *data)
{
	*(bool *)data = true;
}

/* Trade --token for a node certificate (docs/NODES.md, "Joining"). Runs
 * the loop itself: called before anything else is on it. Retries while
 * no master answers or there is no leader; a refused token or request is
 * final. */
static int join(struct agent *a, struct aep_error *e)
{
	struct stat sb;
	const char *ca = a->ca_opt;
	if (ca == NULL && stat(a->ca, &sb) == 0)
		ca = a->ca;
	if (ca == NULL)
		return aep_errorf(e, AEP_EINVALID,
				  "no CA to check the masters against: give --ca FILE (the "
				  "cluster's pki/ca.crt)");
	if (a->token == NULL)
		return aep_errorf(e, AEP_EINVALID, "%s is missing: --token is needed to join",
				  a->crt);
	char cn[AEP_NAME_MAX + 16];
	snprintf(cn, sizeof(cn), "system:node:%s", a->name);
	EVP_PKEY *key = NULL;
	struct aep_buf csr, params, res;
	struct aep_tls *tls = NULL;
	struct aep_rpc_client *cl = NULL;
	msgpack_zone zone;
	bool zone_ready = false;
	int rv;
	aep_buf_init(&csr);
	aep_buf_init(&params);
	aep_buf_init(&res);
	if ((rv = csr_new(cn, &key, &csr, e)) != 0)
		goto out;
	if ((rv = aep_tls_client_new(ca, NULL, NULL, &tls, e)) != 0) {
		aep_error_prefix(e, "TLS (join)");
		goto out;
	}
	struct aep_rpc_client_config cc = {.servers = a->servers, .tls = tls};
	if ((rv = aep_rpc_client_new(&a->loop, &cc, &cl, e)) != 0)
		goto out;
	msgpack_packer pk;
	aep_packer_init(&pk, &params);
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "token");
	aep_pack_str(&pk, a->token);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, a->name);
	aep_pack_str(&pk, "csr");
	aep_pack_strn(&pk, csr.data, csr.len);
	if (params.failed) {
		rv = aep_errorf(e, AEP_ENOMEM, "out of memory");
		goto out;
	}
	logf_(a, "joining through %s (masters checked against %s)", a->servers, ca);
	unsigned delay = BACKOFF_MIN_MS;
	char last[AEP_ERRMSG_MAX] = "";
	for (;;) {
		aep_buf_reset(&res);
		aep_error_clear(e);
		rv = aep_rpc_call_sync(&a->loop, cl, "join", params.data, params.len,
				       CALL_TIMEOUT_MS, &res, e);
		if (rv == 0)
			break;
		if (rv != AEP_EUNAVAILABLE && rv != AEP_ETIMEOUT && rv != AEP_ENOTLEADER &&
		    rv != AEP_EIO && rv != AEP_EINTERNAL) {
			aep_error_prefix(e, "join");
			goto out;
		}
		if (strcmp(last, e->msg) != 0) {
			logf_(a, "join: %s: %s; retrying", aep_err_code(rv), e->msg);
			snprintf(last, sizeof(last), "%s", e->msg);
		}
		uv_sleep(delay);
		delay = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
	}
	msgpack_object v;
	msgpack_zone_init(&zone, 4096);
	zone_ready = true;
	if ((rv = aep_mp_unpack(res.data, res.len, &zone, &v, e)) != 0)
		goto out;
	const msgpack_object *cert = aep_mp_map_get(&v, "certificate");
	const msgpack_object *cacert = aep_mp_map_get(&v, "ca");
	if (cert == NULL || cert->type != MSGPACK_OBJECT_STR || cacert == NULL ||
	    cacert->type != MSGPACK_OBJECT_STR) {
		rv = aep_errorf(e, AEP_EBADREQUEST, "join: the answer lacks certificate or ca");
		goto out;
	}
	if ((rv = write_key(a->key, key, e)) != 0 ||
	    (rv = write_atomic(a->ca, cacert->via.str.ptr, cacert->via.str.size, 0644, e)) != 0 ||
	    (rv = write_atomic(a->crt, cert->via.str.ptr, cert->via.str.size, 0644, e)) != 0)
		goto out;
	logf_(a, "joined: certificate for %s in %s", cn, a->crt);
out:
	if (cl != NULL) {
		bool closed = false;
		aep_rpc_client_close(cl, join_client_closed, &closed);
		while (!closed && uv_run(&a->loop, UV_RUN_ONCE) != 0)
			;
	}
	if (zone_ready)
		msgpack_zone_destroy(&zone);
	aep_tls_free(tls);
	EVP_PKEY_free(key);
	aep_buf_free(&csr);
	aep_buf_free(&params);
	aep_buf_free(&res);
	return rv;
}

/* ---- facts about the host -------------------------------------------------------------- */

/* The local address the kernel would use towards the first master (a
 * connected UDP socket sends nothing). */
static void local_address(struct agent *a)
{
	char first[300];
	const char *comma = strchr(a->servers, ',');
	size_t n = comma ? (size_t)(comma - a->servers) : strlen(a->servers);
	struct sockaddr_storage ss, me = {0};
	socklen_t len = sizeof(me);
	struct aep_error e = {0};
	if (n >= sizeof(first))
		return;
	memcpy(first, a->servers, n);
	first[n] = '\0';
	if (aep_addr_parse(first, &ss, &e) != 0)
		return;
	int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	socklen_t sl =
	    ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	if (connect(fd, (struct sockaddr *)&ss, sl) == 0 &&
	    getsockname(fd, (struct sockaddr *)&me, &len) == 0) {
		if (me.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&me)->sin_addr, a->address,
				  sizeof(a->address));
		else
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&me)->sin6_addr, a->address,
				  sizeof(a->address));
	}
	close(fd);
}

/* The first line of `RUNTIME --version` ("crun version 1.8.1") as
 * "crun://1.8.1". Once, at start, before the loop runs. */
static void runtime_version(struct agent *a)
{
	char cmd[PATH_MAX_AGENT + 32], line[256] = "";
	snprintf(a->rt_version, sizeof(a->rt_version), "%s://unknown", a->runtime_name);
	if (strchr(a->runtime, '\'') != NULL)
		return;
	snprintf(cmd, sizeof(cmd), "'%s' --version 2>/dev/null", a->runtime);
	FILE *f = popen(cmd, "r");
	if (f == NULL)
		return;
	if (fgets(line, sizeof(line), f) != NULL) {
		const char *v = strstr(line, "version ");
		if (v != NULL) {
			v += 8;
			size_t n = strcspn(v, " \n");
			snprintf(a->rt_version, sizeof(a->rt_version), "%s://%.*s", a->runtime_name,
				 (int)(n > 40 ? 40 : n), v);
		}
	}
	pclose(f);
}

static void host_facts(struct agent *a)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	snprintf(a->cpu, sizeof(a->cpu), "%ld", ncpu > 0 ? ncpu : 1);
	snprintf(a->memory, sizeof(a->memory), "0");
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	if (f != NULL) {
		while (fgets(line, sizeof(line), f) != NULL) {
			const char *num = line + 9;
			char *end;
			unsigned long long kb;
			if (strncmp(line, "MemTotal:", 9) != 0)
				continue;
			errno = 0;
			kb = strtoull(num, &end, 10);
			if (end != num && errno == 0) {
				snprintf(a->memory, sizeof(a->memory), "%lluKi", kb);
				break;
			}
		}
		fclose(f);
	}
	struct utsname u;
	snprintf(a->kernel, sizeof(a->kernel), "unknown");
	snprintf(a->arch, sizeof(a->arch), "unknown");
	if (uname(&u) == 0) {
		snprintf(a->kernel, sizeof(a->kernel), "%.120s", u.release);
		const char *arch = strcmp(u.machine, "x86_64") == 0    ? "amd64"
				   : strcmp(u.machine, "aarch64") == 0 ? "arm64"
								       : u.machine;
		snprintf(a->arch, sizeof(a->arch), "%s", arch);
	}
	snprintf(a->os_image, sizeof(a->os_image), "Linux");
	f = fopen("/etc/os-release", "r");
	if (f != NULL) {
		while (fgets(line, sizeof(line), f) != NULL) {
			if (strncmp(line, "PRETTY_NAME=", 12) == 0) {
				char *v = line + 12;
				v[strcspn(v, "\n")] = '\0';
				if (*v == '"') {
					v++;
					char *q = strchr(v, '"');
					if (q != NULL)
						*q = '\0';
				}
				if (*v != '\0')
					snprintf(a->os_image, sizeof(a->os_image), "%.250s", v);
				break;
			}
		}
		fclose(f);
	}
	const char *base = strrchr(a->runtime, '/');
	snprintf(a->runtime_name, sizeof(a->runtime_name), "%s", base ? base + 1 : a->runtime);
	runtime_version(a);
	if (a->address_opt != NULL)
		snprintf(a->address, sizeof(a->address), "%s", a->address_opt);
	else
		local_address(a);
}

/* "k=v,k2=v2" */
static int parse_labels(struct agent *a, const char *s, struct aep_error *e)
{
	while (s != NULL && *s != '\0') {
		const char *comma = strchr(s, ',');
		size_t n = comma ? (size_t)(comma - s) : strlen(s);
		const char *eq = memchr(s, '=', n);
		if (eq == NULL)
			return aep_errorf(e, AEP_EINVALID, "--labels: \"%.*s\": want KEY=VALUE",
					  (int)n, s);
		size_t kl = (size_t)(eq - s), vl = n - kl - 1;
		if (a->nlabels == LABELS_MAX)
			return aep_errorf(e, AEP_EINVALID, "--labels: at most %d", LABELS_MAX);
		struct label *l = &a->labels[a->nlabels];
		if (kl >= sizeof(l->key) || vl >= sizeof(l->value) ||
		    aep_validate_label_key(s, kl, e) != 0 ||
		    aep_validate_label_value(eq + 1, vl, e) != 0) {
			if (e->code == 0)
				aep_errorf(e, AEP_EINVALID, "too long");
			return aep_error_prefix(e, "--labels: \"%.*s\"", (int)n, s);
		}
		memcpy(l->key, s, kl);
		l->key[kl] = '\0';
		memcpy(l->value, eq + 1, vl);
		l->value[vl] = '\0';
		a->nlabels++;
		s = comma ? comma + 1 : NULL;
	}
	return 0;
}

/* ---- aep node ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fputs("usage: aep node --name NAME --server ADDR[,ADDR...] --dir DIR [--token ID.SECRET]\n"
	      "                [--ca FILE] [--labels k=v,...] [--runtime crun|runc|PATH]\n"
	      "                [--bridge NAME] [--address IP]\n"
	      "       aep node image load NAME FILE --dir DIR\n"
	      "       aep node image build-busybox FILE [--busybox PATH]\n"
	      "\n"
	      "  --name      the node's name (its Node object, its certificate system:node:NAME)\n"
	      "  --server    masters to register with (any of them; the leader is found)\n"
	      "  --dir       the agent's directory: pki/, images/, pods/, ... (node.h)\n"
	      "  --token     bootstrap token (aep admin token create), for the first start:\n"
	      "              without DIR/pki/node.crt the agent joins with it\n"
	      "  --ca        the cluster CA that the masters are checked against when joining\n"
	      "              (default DIR/pki/ca.crt)\n"
	      "  --labels    the Node's labels, e.g. region=r1,zone=z1\n"
	      "  --runtime   the OCI runtime (default crun)\n"
	      "  --bridge    the pod bridge (default aepbr0)\n"
	      "  --address   the node's InternalIP (default: the address it reaches the\n"
	      "              masters from)\n"
	      "\n"
	      "SIGTERM or SIGINT stop the agent; its containers keep running and the next\n"
	      "agent on the same --dir takes them over.\n",
	      f);
}

/* aep node image ... */
static int image_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"dir", required_argument, NULL, 'd'},
	    {"busybox", required_argument, NULL, 'b'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *dir = NULL, *busybox = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'b': busybox = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	struct aep_error e = {0};
	int rest = argc - optind;
	char **args = argv + optind;
	if (rest == 3 && strcmp(args[0], "load") == 0) {
		if (dir == NULL) {
			fprintf(stderr, "error: aep node image load: --dir is required\n");
			return 1;
		}
		if (aep_image_load(dir, args[1], args[2], &e) != 0) {
			fprintf(stderr, "error: %s\n", e.msg);
			return 1;
		}
		printf("image %s loaded into %s\n", args[1], dir);
		return 0;
	}
	if (rest == 2 && strcmp(args[0], "build-busybox") == 0) {
		if (aep_image_build_busybox(args[1], busybox, &e) != 0) {
			fprintf(stderr, "error: %s\n", e.msg);
			return 1;
		}
		printf("%s\n", args[1]);
		return 0;
	}
	usage(stderr);
	return 1;
}

int aep_node_main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "image") == 0)
		return image_main(argc - 1, argv + 1);

	static const struct option opts[] = {
	    {"name", required_argument, NULL, 'n'},
	    {"server", required_argument, NULL, 's'},
	    {"token", required_argument, NULL, 't'},
	    {"dir", required_argument, NULL, 'd'},
	    {"labels", required_argument, NULL, 'l'},
	    {"runtime", required_argument, NULL, 'r'},
	    {"bridge", required_argument, NULL, 'b'},
	    {"ca", required_argument, NULL, 'c'},
	    {"address", required_argument, NULL, 'a'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct agent *a = aep_calloc(1, sizeof(*a));
	struct aep_error e = {0};
	const char *labels = NULL;
	int c, rv = 1;
	if (a == NULL) {
		fprintf(stderr, "aep node: out of memory\n");
		return 1;
	}
	a->runtime = "crun";
	a->bridge = "aepbr0";
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'n': a->name = optarg; break;
		case 's': a->servers = optarg; break;
		case 't': a->token = optarg; break;
		case 'd': a->dir = optarg; break;
		case 'l': labels = optarg; break;
		case 'r': a->runtime = optarg; break;
		case 'b': a->bridge = optarg; break;
		case 'c': a->ca_opt = optarg; break;
		case 'a': a->address_opt = optarg; break;
		case 'h':
			usage(stdout);
			aep_free(a);
			return 0;
		default: usage(stderr); goto out_free;
		}
	}
	if (optind != argc || a->name == NULL || a->servers == NULL || a->dir == NULL) {
		usage(stderr);
		goto out_free;
	}
	if (parse_labels(a, labels, &e) != 0) {
		logf_(a, "%s", e.msg);
		goto out_free;
	}
	/* Before any thread: crun needs a private mount namespace without the
	 * hybrid host's cgroup2 mount. */
	if (aep_node_host_prepare(&e) != 0) {
		logf_(a, "%s", e.msg);
		goto out_free;
	}
	signal(SIGPIPE, SIG_IGN);
	if (snprintf(a->pki, sizeof(a->pki), "%s/pki", a->dir) >= (int)sizeof(a->pki) - 16) {
		logf_(a, "--dir is too long");
		goto out_free;
	}
	snprintf(a->crt, sizeof(a->crt), "%s/node.crt", a->pki);
	snprintf(a->key, sizeof(a->key), "%s/node.key", a->pki);
	snprintf(a->ca, sizeof(a->ca), "%s/ca.crt", a->pki);
	if ((mkdir(a->dir, 0755) != 0 && errno != EEXIST) ||
	    (mkdir(a->pki, 0700) != 0 && errno != EEXIST)) {
		logf_(a, "create %s: %s", a->pki, strerror(errno));
		goto out_free;
	}
	if (uv_loop_init(&a->loop) != 0) {
		logf_(a, "uv_loop_init failed");
		goto out_free;
	}
	struct stat sb;
	if (stat(a->crt, &sb) != 0 && join(a, &e) != 0) {
		logf_(a, "%s", e.msg);
		goto out_loop;
	}
	if (aep_tls_client_new(a->ca, a->crt, a->key, &a->tls, &e) != 0) {
		logf_(a, "TLS: %s", e.msg);
		goto out_loop;
	}
	host_facts(a);
	struct aep_rpc_client_config cc = {
	    .servers = a->servers,
	    .tls = a->tls,
	    .on_disconnect = on_disconnect,
	    .on_request = on_request,
	    .data = a,
	};
	if (aep_rpc_client_new(&a->loop, &cc, &a->client, &e) != 0) {
		logf_(a, "%s", e.msg);
		goto out_tls;
	}
	uv_timer_init(&a->loop, &a->reg_timer);
	uv_timer_init(&a->loop, &a->hb_timer);
	uv_timer_init(&a->loop, &a->status_timer);
	uv_timer_init(&a->loop, &a->stop_timer);
	a->reg_timer.data = a->hb_timer.data = a->status_timer.data = a->stop_timer.data = a;
	uv_signal_init(&a->loop, &a->sigterm);
	uv_signal_init(&a->loop, &a->sigint);
	a->sigterm.data = a->sigint.data = a;
	uv_signal_start(&a->sigterm, on_signal, SIGTERM);
	uv_signal_start(&a->sigint, on_signal, SIGINT);
	uv_timer_start(&a->hb_timer, hb_fire, HEARTBEAT_MS, HEARTBEAT_MS);
	logf_(a, "starting: masters %s, InternalIP %s, %s CPUs, memory %s, runtime %s", a->servers,
	      a->address[0] ? a->address : "unknown", a->cpu, a->memory, a->rt_version);
	a->backoff_ms = BACKOFF_MIN_MS;
	reg_schedule(a, 0);
	uv_run(&a->loop, UV_RUN_DEFAULT);
	rv = a->exit_code;
	while (a->pods != NULL) {
		struct podrec *r = a->pods;
		a->pods = r->next;
		aep_free(r);
	}
out_tls:
	aep_tls_free(a->tls);
out_loop:
	uv_run(&a->loop, UV_RUN_DEFAULT);
	uv_loop_close(&a->loop);
out_free:
	aep_free(a);
	return rv;
}
