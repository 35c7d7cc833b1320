/* The API handlers of a master (docs/API.md).
 *
 * Happy path of a write: a request arrives on any master → it is decoded and
 * validated here → on the leader it becomes a command submitted to raft/
 * (group commit) and the reply is sent when the command has been applied;
 * on a follower it is forwarded to the leader over one client connection
 * and the leader's answer relayed. Reads are linearizable: the leader
 * serves them after a read barrier (one barrier serves every read that
 * arrived before it was issued), a follower forwards them; `stale: true`
 * reads are answered from the local store. Watches are served by whichever
 * master the client is connected to, from its own applied store.
 *
 * Failure modes: no leader known → Unavailable; leadership lost while a
 * write is in flight → Unavailable (outcome unknown); the client leaves
 * before the answer → the answer is dropped (connections are refcounted). */
#include "master/master-int.h"

#include <stdio.h>
#include <string.h>
#include <openssl/rand.h>

struct method_info {
	const char *name;
	bool write;
};

static const struct method_info methods[] = {
#define MASTER__M_INFO(e, s, w) {s, w},
    MASTER_METHODS(MASTER__M_INFO)
#undef MASTER__M_INFO
};

static const double bucket_bounds[] = {
#define MASTER__BOUND(b) b,
    MASTER_BUCKETS(MASTER__BOUND)
#undef MASTER__BOUND
};

/* ---- per-connection state ------------------------------------------------ */

struct watch {
	struct watch *next;
	uint64_t id;
	struct aep_watch *w;
	struct conn_state *cs;
	bool expired;
	bool starting; /* replaying: events go to @replay */
	uint64_t from; /* events at or below this revision are not sent */
	struct aep_buf replay;
	uint32_t nreplay;
};

struct conn_state {
	struct master *m;
	struct aep_rpc_conn *conn; /* borrowed: the state lives as long as it */
	struct watch *watches;
};

/* ---- one request in progress --------------------------------------------- */

struct req {
	struct master *m;
	struct aep_rpc_conn *conn;
	uint64_t msgid;
	enum master_method method;
	int64_t start_ns;
	/* a read waiting for a barrier */
	struct req *next;
	enum aep_kind kind;
	char *ns;
	char *name;
	struct aep_selector *sel;
	/* parked while no leader is known: the params, re-dispatched later */
	struct aep_buf parked;
};

static struct req *req_new(struct master *m, struct aep_rpc_conn *c, uint64_t msgid,
			   enum master_method method)
{
	struct req *r = aep_calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->m = m;
	r->conn = aep_rpc_conn_ref(c);
	r->msgid = msgid;
	r->method = method;
	r->start_ns = aep_now_monotonic_ns();
	return r;
}

static void record(struct master *m, enum master_method method, int64_t start_ns, bool error)
{
	struct master_method_stats *st = &m->stats[method];
	double s = (double)(aep_now_monotonic_ns() - start_ns) / 1e9;
	st->count++;
	st->sum_s += s;
	if (error)
		st->errors++;
	for (int i = 0; i < MASTER_NBUCKETS; i++) {
		if (s <= bucket_bounds[i])
			st->buckets[i]++;
	}
}

static void req_free(struct req *r)
{
	aep_rpc_conn_unref(r->conn);
	aep_free(r->ns);
	aep_free(r->name);
	if (r->sel != NULL)
		aep_selector_free(r->sel);
	aep_buf_free(&r->parked);
	aep_free(r);
}

static void req_reply(struct req *r, const char *data, size_t len)
{
	aep_rpc_reply(r->conn, r->msgid, data, len);
	record(r->m, r->method, r->start_ns, false);
	req_free(r);
}

static void req_error(struct req *r, int code, const char *msg)
{
	aep_rpc_reply_error(r->conn, r->msgid, code, msg, NULL, 0);
	record(r->m, r->method, r->start_ns, true);
	req_free(r);
}

/* ---- helpers --------------------------------------------------------------- */

/* A random (version 4) UUID. Random bytes come from OpenSSL's generator
 * in blocks of 4 KiB: a call (or a getrandom() system call) per object
 * costs more than the rest of a create. */
int master__uuid4(struct master *m, char out[40])
{
	static const char hex[] = "0123456789abcdef";
	if (m->rand_off + 16 > sizeof(m->rand_pool)) {
		if (RAND_bytes(m->rand_pool, sizeof(m->rand_pool)) != 1)
			return AEP_EINTERNAL;
		m->rand_off = 0;
	}
	unsigned char *b = m->rand_pool + m->rand_off;
	m->rand_off += 16;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	char *p = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[b[i] >> 4];
		*p++ = hex[b[i] & 15];
	}
	*p = '\0';
	return 0;
}

/* A string parameter copied to the heap; NULL when absent. Returns
 * AEP_EBADREQUEST when present but not a string. */
static int param_str(const msgpack_object *params, const char *key, char **out, struct aep_error *e)
{
	*out = NULL;
	const msgpack_object *v = aep_mp_map_get(params, key);
	if (v == NULL || v->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (v->type != MSGPACK_OBJECT_STR)
		return aep_errorf(e, AEP_EBADREQUEST, "%s: must be a string", key);
	if (v->via.str.size > AEP_NAME_MAX * 4)
		return aep_errorf(e, AEP_EBADREQUEST, "%s: too long", key);
	*out = aep_strndup(v->via.str.ptr, v->via.str.size);
	return *out == NULL ? aep_errorf(e, AEP_ENOMEM, "out of memory") : 0;
}

/* A revision given as an unsigned integer or a decimal string. */
static int param_rev(const msgpack_object *params, const char *key, uint64_t *out,
		     struct aep_error *e)
{
	*out = 0;
	const msgpack_object *v = aep_mp_map_get(params, key);
	if (v == NULL || v->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		*out = v->via.u64;
		return 0;
	}
	if (v->type == MSGPACK_OBJECT_STR && v->via.str.size > 0 && v->via.str.size <= 20) {
		uint64_t n = 0;
		for (uint32_t i = 0; i < v->via.str.size; i++) {
			char c = v->via.str.ptr[i];
			if (c < '0' || c > '9' || n > (UINT64_MAX - 9) / 10)
				goto bad;
			n = n * 10 + (uint64_t)(c - '0');
		}
		*out = n;
		return 0;
	}
bad:
	return aep_errorf(e, AEP_EBADREQUEST, "%s: must be an unsigned integer revision", key);
}

/* A boolean parameter; false when absent. Returns AEP_EBADREQUEST when
 * present but not a boolean. */
static int param_bool(const msgpack_object *params, const char *key, bool *out, struct aep_error *e)
{
	const msgpack_object *v = aep_mp_map_get(params, key);
	*out = false;
	if (v == NULL || v->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (v->type != MSGPACK_OBJECT_BOOLEAN)
		return aep_errorf(e, AEP_EBADREQUEST, "%s: must be a boolean", key);
	*out = v->via.boolean;
	return 0;
}

/* Refuse parameters a method does not know, so typos are not silently
 * ignored. @known is NULL-terminated. */
static int check_params(const msgpack_object *params, const char *const *known, struct aep_error *e)
{
	if (params == NULL || params->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (params->type != MSGPACK_OBJECT_MAP)
		return aep_errorf(e, AEP_EBADREQUEST, "params: must be [ {map} ]");
	uint32_t seen = 0; /* bit j: known[j] was given */
	for (uint32_t i = 0; i < params->via.map.size; i++) {
		const msgpack_object *k = &params->via.map.ptr[i].key;
		bool ok = false;
		for (unsigned j = 0; known[j] != NULL && k->type == MSGPACK_OBJECT_STR; j++) {
			if (aep_mp_str_eq(k, known[j])) {
				if (seen & (1u << j))
					return aep_errorf(e, AEP_EBADREQUEST,
							  "parameter \"%s\" given twice", known[j]);
				seen |= 1u << j;
				ok = true;
				break;
			}
		}
		if (!ok) {
			if (k->type == MSGPACK_OBJECT_STR)
				return aep_errorf(
				    e, AEP_EBADREQUEST, "unknown parameter \"%.*s\"",
				    (int)(k->via.str.size > 64 ? 64 : k->via.str.size),
				    k->via.str.ptr);
			return aep_errorf(e, AEP_EBADREQUEST, "parameter names must be strings");
		}
	}
	return 0;
}

/* kind (+ namespace rules): fills @kind and @ns ("" for cluster scope,
 * "default" when a namespaced kind has none and @default_ns). */
static int param_kind_ns(const msgpack_object *params, bool default_ns, enum aep_kind *kind,
			 char **ns, struct aep_error *e)
{
	const msgpack_object *k = aep_mp_map_get(params, "kind");
	if (k == NULL || k->type != MSGPACK_OBJECT_STR)
		return aep_errorf(e, AEP_EBADREQUEST, "kind: required string");
	const struct aep_kind_info *ki = aep_kind_lookup(k->via.str.ptr, k->via.str.size);
	if (ki == NULL)
		return aep_errorf(e, AEP_EBADREQUEST, "kind \"%.*s\": unknown kind",
				  (int)(k->via.str.size > 64 ? 64 : k->via.str.size),
				  k->via.str.ptr);
	*kind = ki->kind;
	int rv = param_str(params, "namespace", ns, e);
	if (rv != 0)
		return rv;
	if (!ki->namespaced) {
		aep_free(*ns);
		*ns = aep_strdup("");
	} else if (*ns == NULL && default_ns) {
		*ns = aep_strdup("default");
	} else if (*ns != NULL && **ns == '\0') {
		aep_free(*ns);
		*ns = default_ns ? aep_strdup("default") : NULL;
		if (default_ns && *ns == NULL)
			return aep_errorf(e, AEP_ENOMEM, "out of memory");
		return 0;
	}
	if ((!ki->namespaced || default_ns) && *ns == NULL)
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	return 0;
}

static void object_label(const struct aep_object *o, char *buf, size_t size)
{
	const struct aep_kind_info *ki = aep_kind_info(o->kind);
	if (o->meta.ns != NULL && o->meta.ns[0] != '\0')
		snprintf(buf, size, "%s %s/%s", ki->singular, o->meta.ns, o->meta.name);
	else
		snprintf(buf, size, "%s %s", ki->singular, o->meta.name);
}

/* ---- forwarding to the leader ------------------------------------------- */

const char *master__leader_api(struct master *m)
{
	struct aep_raft_status st;
	aep_raft_status(m->raft, &st);
	if (st.leader_name == NULL)
		return NULL;
	if (strcmp(st.leader_name, m->name) == 0)
		return m->advertise;
	const struct aep_member *mem;
	size_t n;
	if (aep_store_members(m->store, &mem, &n) != 0)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(mem[i].name, st.leader_name) == 0 && mem[i].api[0] != '\0')
			return mem[i].api;
	}
	return NULL;
}

static void fwd_closed(void *data)
{
	(void)data;
}

/* The client connection to the leader, (re)made when the leader moved. */
static struct aep_rpc_client *fwd_client(struct master *m, struct aep_error *e)
{
	const char *api = master__leader_api(m);
	if (api == NULL || strcmp(api, m->advertise) == 0) {
		aep_errorf(e, AEP_EUNAVAILABLE, "no leader is known yet; retry shortly");
		return NULL;
	}
	if (m->fwd != NULL && m->fwd_addr != NULL && strcmp(m->fwd_addr, api) == 0)
		return m->fwd;
	if (m->fwd != NULL) {
		aep_rpc_client_close(m->fwd, fwd_closed, NULL);
		m->fwd = NULL;
	}
	aep_free(m->fwd_addr);
	m->fwd_addr = aep_strdup(api);
	if (m->fwd_addr == NULL) {
		aep_errorf(e, AEP_ENOMEM, "out of memory");
		return NULL;
	}
	struct aep_rpc_client_config cfg = {
	    .servers = m->fwd_addr,
	    .tls = m->client_tls,
	};
	if (aep_rpc_client_new(m->loop, &cfg, &m->fwd, e) != 0)
		return NULL;
	return m->fwd;
}

static void fwd_done(void *data, const struct aep_rpc_reply *reply)
{
	struct req *r = data;
	if (reply->code == AEP_ECANCELED) {
		/* The connection to the leader closed with the call in flight: the
		 * leader may or may not have carried it out. */
		char msg[AEP_ERRMSG_MAX];
		snprintf(msg, sizeof(msg),
			 "lost the leader while forwarding (%.*s); outcome unknown",
			 (int)(reply->msg_len > 200 ? 200 : reply->msg_len),
			 reply->msg ? reply->msg : "");
		req_error(r, AEP_EUNAVAILABLE, msg);
		return;
	}
	if (reply->code != 0) {
		char msg[AEP_ERRMSG_MAX];
		snprintf(msg, sizeof(msg), "%.*s", (int)reply->msg_len,
			 reply->msg ? reply->msg : "");
		if (reply->details != NULL) {
			struct aep_buf b;
			msgpack_packer pk;
			aep_buf_init(&b);
			aep_packer_init(&pk, &b);
			msgpack_pack_object(&pk, *reply->details);
			aep_rpc_reply_error(r->conn, r->msgid, reply->code, msg, b.data, b.len);
			aep_buf_free(&b);
			record(r->m, r->method, r->start_ns, true);
			req_free(r);
			return;
		}
		req_error(r, reply->code, msg);
		return;
	}
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	if (reply->result != NULL)
		msgpack_pack_object(&pk, *reply->result);
	else
		msgpack_pack_nil(&pk);
	if (b.failed)
		req_error(r, AEP_ENOMEM, "out of memory");
	else
		req_reply(r, b.data, b.len);
	aep_buf_free(&b);
}

/* How long a request waits for a leader to become known (an election, or
 * a new leader whose address has not reached this master yet). */
#define PARK_MAX_NS (5 * 1000000000LL)

static void forward(struct req *r, const msgpack_object *params)
{
	struct aep_error e = {0};
	struct aep_rpc_client *c = fwd_client(r->m, &e);
	if (c == NULL) {
		if (e.code != AEP_EUNAVAILABLE ||
		    aep_now_monotonic_ns() - r->start_ns > PARK_MAX_NS) {
			req_error(r, e.code, e.msg);
			return;
		}
		/* Park it: master__retry_parked() dispatches it again. */
		msgpack_packer pk;
		aep_buf_reset(&r->parked);
		aep_packer_init(&pk, &r->parked);
		if (params != NULL)
			msgpack_pack_object(&pk, *params);
		else
			msgpack_pack_map(&pk, 0);
		if (r->parked.failed) {
			req_error(r, AEP_ENOMEM, "out of memory");
			return;
		}
		aep_free(r->ns);
		aep_free(r->name);
		r->ns = r->name = NULL;
		if (r->sel != NULL)
			aep_selector_free(r->sel);
		r->sel = NULL;
		r->next = r->m->parked;
		r->m->parked = r;
		return;
	}
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	if (params != NULL)
		msgpack_pack_object(&pk, *params);
	else
		msgpack_pack_map(&pk, 0);
	if (b.failed) {
		aep_buf_free(&b);
		req_error(r, AEP_ENOMEM, "out of memory");
		return;
	}
	int rv = aep_rpc_call(c, methods[r->method].name, b.data, b.len, fwd_done, r);
	aep_buf_free(&b);
	if (rv != 0)
		req_error(r, AEP_EUNAVAILABLE, "cannot reach the leader");
}

/* ---- writes ---------------------------------------------------------------- */

static void write_done(void *data, const struct aep_result *res)
{
	struct req *r = data;
	if (res->code != 0) {
		req_error(r, res->code, res->msg != NULL ? res->msg : aep_err_code(res->code));
		return;
	}
	if (res->obj != NULL)
		req_reply(r, res->obj->data, res->obj->len);
	else
		req_reply(r, "\x80", 1); /* {} */
}

static void submit(struct req *r, const struct aep_cmd *cmd)
{
	int rv = aep_raft_submit(r->m->raft, cmd, write_done, r);
	if (rv == AEP_ENOTLEADER) {
		/* Lost leadership between the check and now: go through the leader. */
		req_error(r, AEP_EUNAVAILABLE, "leadership is changing; retry");
	} else if (rv != 0) {
		req_error(r, rv, "cannot submit the write");
	}
}

static bool is_leader(struct master *m)
{
	struct aep_raft_status st;
	aep_raft_status(m->raft, &st);
	return st.leader;
}

static void handle_create_update(struct req *r, const msgpack_object *params)
{
	struct master *m = r->m;
	struct aep_error e = {0};
	static const char *const known[] = {"object", NULL};
	if (check_params(params, known, &e) != 0) {
		req_error(r, e.code, e.msg);
		return;
	}
	const msgpack_object *obj = aep_mp_map_get(params, "object");
	if (obj == NULL || obj->type != MSGPACK_OBJECT_MAP) {
		req_error(r, AEP_EBADREQUEST, "object: required map");
		return;
	}
	struct aep_object *o = NULL;
	if (aep_object_from_msgpack(obj, &o, &e) != 0) {
		req_error(r, e.code, e.msg);
		return;
	}
	if (r->method == MASTER_M_CREATE && o->meta.rv != 0) {
		char what[AEP_NAME_MAX * 2 + 32];
		char msg[AEP_ERRMSG_MAX];
		object_label(o, what, sizeof(what));
		snprintf(msg, sizeof(msg),
			 "create %.400s: metadata.resourceVersion must not be set", what);
		aep_object_unref(o);
		req_error(r, AEP_EINVALID, msg);
		return;
	}
	if (!is_leader(m)) {
		aep_object_unref(o);
		forward(r, params);
		return;
	}
	struct aep_cmd cmd = {
	    .op = r->method == MASTER_M_CREATE ? AEP_OP_CREATE : AEP_OP_UPDATE,
	    .kind = o->kind,
	    .ns = o->meta.ns,
	    .name = o->meta.name,
	    .precond_rv = r->method == MASTER_M_UPDATE ? o->meta.rv : 0,
	    .now_ns = aep_now_realtime_ns(),
	    .obj = o->data,
	    .obj_len = o->len,
	};
	if (cmd.op == AEP_OP_CREATE && master__uuid4(m, cmd.uid) != 0) {
		aep_object_unref(o);
		req_error(r, AEP_EINTERNAL, "no random numbers for a uid");
		return;
	}
	submit(r, &cmd);
	aep_object_unref(o);
}

static void handle_delete(struct req *r, const msgpack_object *params)
{
	struct aep_error e = {0};
	static const char *const known[] = {"kind", "namespace", "name", "resourceVersion", NULL};
	enum aep_kind kind;
	uint64_t rev;
	if (check_params(params, known, &e) != 0 ||
	    param_kind_ns(params, true, &kind, &r->ns, &e) != 0 ||
	    param_str(params, "name", &r->name, &e) != 0 ||
	    param_rev(params, "resourceVersion", &rev, &e) != 0) {
		req_error(r, e.code, e.msg);
		return;
	}
	if (r->name == NULL) {
		req_error(r, AEP_EBADREQUEST, "name: required string");
		return;
	}
	if (!is_leader(r->m)) {
		forward(r, params);
		return;
	}
	struct aep_cmd cmd = {
	    .op = AEP_OP_DELETE,
	    .kind = kind,
	    .ns = r->ns,
	    .name = r->name,
	    .precond_rv = rev,
	    .now_ns = aep_now_realtime_ns(),
	};
	submit(r, &cmd);
}

static void handle_announce(struct req *r, const msgpack_object *params)
{
	struct aep_error e = {0};
	static const char *const known[] = {"name", "api", "peer", NULL};
	char *api = NULL, *peer = NULL;
	if (check_params(params, known, &e) != 0 || param_str(params, "name", &r->name, &e) != 0 ||
	    param_str(params, "api", &api, &e) != 0 || param_str(params, "peer", &peer, &e) != 0 ||
	    r->name == NULL || api == NULL || peer == NULL) {
		aep_free(api);
		aep_free(peer);
		req_error(r, e.code ? e.code : AEP_EBADREQUEST,
			  e.code ? e.msg : "announce: name, api and peer are required");
		return;
	}
	/* Only a master announces, and only itself: its certificate's common
	 * name is its name, and the name is one of the configured peers. */
	const char *id = aep_rpc_conn_identity(r->conn);
	bool peer_ok = false;
	for (unsigned i = 0; i < r->m->npeers; i++)
		peer_ok = peer_ok || strcmp(r->m->peers[i].name, r->name) == 0;
	if (id == NULL || strcmp(id, r->name) != 0 || !peer_ok) {
		aep_free(api);
		aep_free(peer);
		req_error(r, AEP_EFORBIDDEN, "announce: only a master may announce itself");
		return;
	}
	if (!is_leader(r->m)) {
		aep_free(api);
		aep_free(peer);
		forward(r, params);
		return;
	}
	struct aep_cmd cmd = {
	    .op = AEP_OP_MEMBER,
	    .name = r->name,
	    .member_api = api,
	    .member_peer = peer,
	};
	submit(r, &cmd);
	aep_free(api);
	aep_free(peer);
}

/* ---- reads ----------------------------------------------------------------- */

static void serve_get(struct req *r)
{
	struct aep_object *o = aep_store_get(r->m->store, r->kind, r->ns, r->name);
	if (o == NULL) {
		char msg[AEP_ERRMSG_MAX];
		const struct aep_kind_info *ki = aep_kind_info(r->kind);
		if (r->ns[0] != '\0')
			snprintf(msg, sizeof(msg), "%s \"%s\" not found in namespace \"%s\"",
				 ki->plural, r->name, r->ns);
		else
			snprintf(msg, sizeof(msg), "%s \"%s\" not found", ki->plural, r->name);
		req_error(r, AEP_ENOTFOUND, msg);
		return;
	}
	req_reply(r, o->data, o->len);
	aep_object_unref(o);
}

struct list_acc {
	struct aep_buf items;
	uint32_t n;
};

static int list_visit(const struct aep_object *o, void *data)
{
	struct list_acc *acc = data;
	if (aep_buf_append(&acc->items, o->data, o->len) != 0)
		return AEP_ENOMEM;
	acc->n++;
	return 0;
}

static void serve_list(struct req *r)
{
	struct list_acc acc = {.n = 0};
	aep_buf_init(&acc.items);
	int rv = aep_store_list(r->m->store, r->kind, r->ns, r->sel, list_visit, &acc);
	if (rv != 0) {
		aep_buf_free(&acc.items);
		req_error(r, AEP_ENOMEM, "out of memory listing objects");
		return;
	}
	struct aep_buf b;
	msgpack_packer pk;
	char rev[24];
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "items");
	msgpack_pack_array(&pk, acc.n);
	aep_buf_append(&b, acc.items.data, acc.items.len);
	aep_pack_str(&pk, "resourceVersion");
	snprintf(rev, sizeof(rev), "%llu", (unsigned long long)aep_store_revision(r->m->store));
	aep_pack_str(&pk, rev);
	aep_buf_free(&acc.items);
	if (b.failed)
		req_error(r, AEP_ENOMEM, "out of memory listing objects");
	else
		req_reply(r, b.data, b.len);
	aep_buf_free(&b);
}

static void serve_read(struct req *r)
{
	if (r->method == MASTER_M_GET)
		serve_get(r);
	else
		serve_list(r);
}

/* Reads wait for a barrier issued after they arrived: one barrier in flight
 * at a time; reads that arrive meanwhile wait for the next one. */
static void issue_barrier(struct master *m);

static void barrier_done(void *data, int code)
{
	struct master *m = data;
	struct req *list = m->reads_inflight;
	m->reads_inflight = NULL;
	m->barrier_inflight = false;
	while (list != NULL) {
		struct req *r = list;
		list = r->next;
		if (code != 0)
			req_error(r, AEP_EUNAVAILABLE, "leadership lost during a read; retry");
		else
			serve_read(r);
	}
	if (m->reads_waiting != NULL)
		issue_barrier(m);
}

static void issue_barrier(struct master *m)
{
	m->reads_inflight = m->reads_waiting;
	m->reads_waiting = NULL;
	m->barrier_inflight = true;
	if (aep_raft_barrier(m->raft, barrier_done, m) != 0)
		barrier_done(m, AEP_ENOTLEADER);
}

static void handle_read(struct req *r, const msgpack_object *params)
{
	struct master *m = r->m;
	struct aep_error e = {0};
	static const char *const get_known[] = {"kind", "namespace", "name", "stale", NULL};
	static const char *const list_known[] = {"kind", "namespace", "labelSelector", "stale",
						 NULL};
	bool get = r->method == MASTER_M_GET;
	if (check_params(params, get ? get_known : list_known, &e) != 0 ||
	    param_kind_ns(params, get, &r->kind, &r->ns, &e) != 0) {
		req_error(r, e.code, e.msg);
		return;
	}
	if (get) {
		if (param_str(params, "name", &r->name, &e) != 0 || r->name == NULL) {
			req_error(r, e.code ? e.code : AEP_EBADREQUEST,
				  e.code ? e.msg : "name: required string");
			return;
		}
	} else {
		char *sel = NULL;
		if (param_str(params, "labelSelector", &sel, &e) != 0) {
			req_error(r, e.code, e.msg);
			return;
		}
		if (sel != NULL) {
			int rv = aep_selector_parse(sel, strlen(sel), &r->sel, &e);
			aep_free(sel);
			if (rv != 0) {
				req_error(r, AEP_EBADREQUEST, e.msg);
				return;
			}
		}
	}
	bool stale;
	if (param_bool(params, "stale", &stale, &e) != 0) {
		req_error(r, e.code, e.msg);
		return;
	}
	if (stale) {
		serve_read(r);
		return;
	}
	if (!is_leader(m)) {
		forward(r, params);
		return;
	}
	r->next = m->reads_waiting;
	m->reads_waiting = r;
	if (!m->barrier_inflight)
		issue_barrier(m);
}

/* ---- watches --------------------------------------------------------------- */

/* One event map {watch, type, object} appended to @b. */
static void pack_event(struct aep_buf *b, uint64_t id, const char *type, const char *obj,
		       size_t len)
{
	msgpack_packer pk;
	aep_packer_init(&pk, b);
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "watch");
	msgpack_pack_uint64(&pk, id);
	aep_pack_str(&pk, "type");
	aep_pack_str(&pk, type);
	aep_pack_str(&pk, "object");
	aep_buf_append(b, obj, len);
}

/* Send @n packed event maps as one notification [2, "event", [...]]. */
static void send_events(struct aep_rpc_conn *c, const struct aep_buf *events, uint32_t n)
{
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_array(&pk, n);
	aep_buf_append(&b, events->data, events->len);
	if (!b.failed)
		aep_rpc_notify(c, "event", b.data, b.len);
	aep_buf_free(&b);
}

/* A watcher that cannot keep up (this many bytes queued) is disconnected;
 * its client resumes from its last revision on a new connection. */
#define WATCH_BACKLOG_MAX (256u << 20)

static void watch_event(const struct aep_event *ev, void *data)
{
	struct watch *w = data;
	if (w->expired)
		return;
	struct aep_buf one;
	struct aep_buf *b = w->starting ? &w->replay : &one;
	if (!w->starting)
		aep_buf_init(&one);
	if (ev != NULL && ev->rv <= w->from)
		return; /* this master is behind the revision the client asked for */
	if (ev == NULL) {
		static const char expired[] = "\x82\xa4"
					      "code"
					      "\xa7"
					      "Expired"
					      "\xa7"
					      "message"
					      "\xd9\x30"
					      "the store was replaced by a snapshot; list again";
		w->expired = true;
		pack_event(b, w->id, "ERROR", expired, sizeof(expired) - 1);
	} else {
		if (!w->starting && aep_rpc_conn_pending(w->cs->conn) > WATCH_BACKLOG_MAX) {
			aep_rpc_conn_close(w->cs->conn);
			return;
		}
		pack_event(b, w->id, aep_event_type_name(ev->type), ev->obj->data, ev->obj->len);
	}
	if (w->starting) {
		w->nreplay++;
	} else {
		send_events(w->cs->conn, &one, 1);
		aep_buf_free(&one);
	}
}

static struct conn_state *conn_state(struct master *m, struct aep_rpc_conn *c)
{
	struct conn_state *cs = aep_rpc_conn_get_data(c);
	if (cs != NULL)
		return cs;
	cs = aep_calloc(1, sizeof(*cs));
	if (cs == NULL)
		return NULL;
	cs->m = m;
	cs->conn = c;
	aep_rpc_conn_set_data(c, cs);
	return cs;
}

/* The reply {watch, resourceVersion} must reach the client before any
 * event, and a watch that cannot start (Expired) must answer with an error
 * and send nothing: the replay that aep_store_watch delivers synchronously
 * is therefore collected first and sent after the reply, in one
 * notification. */
static void handle_watch(struct req *r, const msgpack_object *params)
{
	struct master *m = r->m;
	struct aep_error e = {0};
	static const char *const known[] = {"kind", "namespace", "labelSelector", "resourceVersion",
					    NULL};
	enum aep_kind kind;
	uint64_t from;
	char *selstr = NULL;
	struct aep_selector *sel = NULL;
	if (check_params(params, known, &e) != 0 ||
	    param_kind_ns(params, false, &kind, &r->ns, &e) != 0 ||
	    param_rev(params, "resourceVersion", &from, &e) != 0 ||
	    param_str(params, "labelSelector", &selstr, &e) != 0) {
		req_error(r, e.code, e.msg);
		return;
	}
	if (selstr != NULL) {
		int rv = aep_selector_parse(selstr, strlen(selstr), &sel, &e);
		aep_free(selstr);
		if (rv != 0) {
			req_error(r, AEP_EBADREQUEST, e.msg);
			return;
		}
	}
	struct conn_state *cs = conn_state(m, r->conn);
	struct watch *w = aep_calloc(1, sizeof(*w));
	if (cs == NULL || w == NULL) {
		aep_free(w);
		if (sel != NULL)
			aep_selector_free(sel);
		req_error(r, AEP_ENOMEM, "out of memory");
		return;
	}
	w->id = ++m->next_watch_id;
	w->cs = cs;
	w->starting = true;
	aep_buf_init(&w->replay);
	/* A client that talked to a master further ahead may ask for a revision
	 * this one has not applied yet: watch from here, and skip the events
	 * the client has already seen. */
	uint64_t now_rev = aep_store_revision(m->store);
	w->from = from;
	int rv = aep_store_watch(m->store, kind, r->ns, sel, from > now_rev ? now_rev : from,
				 watch_event, w, &w->w, &e);
	if (from > now_rev)
		now_rev = from;
	if (rv != 0) {
		aep_buf_free(&w->replay);
		aep_free(w);
		req_error(r, rv, e.msg);
		return;
	}
	struct aep_buf b;
	msgpack_packer pk;
	char rev[24];
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "watch");
	msgpack_pack_uint64(&pk, w->id);
	aep_pack_str(&pk, "resourceVersion");
	snprintf(rev, sizeof(rev), "%llu", (unsigned long long)now_rev);
	aep_pack_str(&pk, rev);
	if (b.failed || w->replay.failed) {
		aep_buf_free(&b);
		aep_store_unwatch(m->store, w->w);
		aep_buf_free(&w->replay);
		aep_free(w);
		req_error(r, AEP_ENOMEM, "out of memory");
		return;
	}
	w->next = cs->watches;
	cs->watches = w;
	m->nwatches++;
	req_reply(r, b.data, b.len);
	aep_buf_free(&b);
	if (w->nreplay > 0)
		send_events(cs->conn, &w->replay, w->nreplay);
	aep_buf_free(&w->replay);
	w->starting = false;
}

static void handle_unwatch(struct req *r, const msgpack_object *params)
{
	struct master *m = r->m;
	struct aep_error e = {0};
	static const char *const known[] = {"watch", NULL};
	if (check_params(params, known, &e) != 0) {
		req_error(r, e.code, e.msg);
		return;
	}
	const msgpack_object *id = aep_mp_map_get(params, "watch");
	if (id == NULL || id->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		req_error(r, AEP_EBADREQUEST, "watch: required watch id");
		return;
	}
	struct conn_state *cs = aep_rpc_conn_get_data(r->conn);
	for (struct watch **pp = cs ? &cs->watches : NULL; pp != NULL && *pp != NULL;
	     pp = &(*pp)->next) {
		struct watch *w = *pp;
		if (w->id == id->via.u64) {
			*pp = w->next;
			aep_store_unwatch(m->store, w->w);
			aep_free(w);
			m->nwatches--;
			req_reply(r, "\x80", 1);
			return;
		}
	}
	req_error(r, AEP_ENOTFOUND, "no such watch on this connection");
}

/* ---- status and members ---------------------------------------------------- */

static void handle_status(struct req *r)
{
	struct master *m = r->m;
	struct aep_raft_status st;
	aep_raft_status(m->raft, &st);
	struct aep_buf b;
	msgpack_packer pk;
	char rev[24];
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 8);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, m->name);
	aep_pack_str(&pk, "leader");
	st.leader ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
	aep_pack_str(&pk, "leaderName");
	if (st.leader_name != NULL)
		aep_pack_str(&pk, st.leader_name);
	else
		msgpack_pack_nil(&pk);
	aep_pack_str(&pk, "term");
	msgpack_pack_uint64(&pk, st.term);
	aep_pack_str(&pk, "commitIndex");
	msgpack_pack_uint64(&pk, st.commit_index);
	aep_pack_str(&pk, "appliedIndex");
	msgpack_pack_uint64(&pk, st.applied_index);
	aep_pack_str(&pk, "revision");
	snprintf(rev, sizeof(rev), "%llu", (unsigned long long)aep_store_revision(m->store));
	aep_pack_str(&pk, rev);
	aep_pack_str(&pk, "version");
	aep_pack_str(&pk, AEP_VERSION);
	if (b.failed)
		req_error(r, AEP_ENOMEM, "out of memory");
	else
		req_reply(r, b.data, b.len);
	aep_buf_free(&b);
}

static void handle_members(struct req *r)
{
	struct master *m = r->m;
	struct aep_raft_status st;
	aep_raft_status(m->raft, &st);
	const struct aep_member *mem = NULL;
	size_t n = 0;
	aep_store_members(m->store, &mem, &n);
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_array(&pk, m->npeers);
	for (unsigned i = 0; i < m->npeers; i++) {
		const char *api = "";
		for (size_t j = 0; j < n; j++) {
			if (strcmp(mem[j].name, m->peers[i].name) == 0)
				api = mem[j].api;
		}
		msgpack_pack_map(&pk, 4);
		aep_pack_str(&pk, "name");
		aep_pack_str(&pk, m->peers[i].name);
		aep_pack_str(&pk, "address");
		aep_pack_str(&pk, api);
		aep_pack_str(&pk, "peerAddress");
		aep_pack_str(&pk, m->peers[i].peer_addr);
		aep_pack_str(&pk, "leader");
		if (st.leader_name != NULL && strcmp(st.leader_name, m->peers[i].name) == 0)
			msgpack_pack_true(&pk);
		else
			msgpack_pack_false(&pk);
	}
	if (b.failed)
		req_error(r, AEP_ENOMEM, "out of memory");
	else
		req_reply(r, b.data, b.len);
	aep_buf_free(&b);
}

/* transfer {to?}: the leader hands leadership to @to (default: the most
 * up-to-date follower); a follower forwards. Answers once libraft has
 * started the transfer; the new leader is visible in status/members. */
static void handle_transfer(struct req *r, const msgpack_object *params)
{
	static const char *const known[] = {"to", NULL};
	struct aep_error e = {0};
	char *to = NULL;
	if (check_params(params, known, &e) != 0 || param_str(params, "to", &to, &e) != 0) {
		req_error(r, e.code, e.msg);
		return;
	}
	if (!is_leader(r->m)) {
		aep_free(to);
		forward(r, params);
		return;
	}
	if (aep_raft_transfer(r->m->raft, to, &e) != 0)
		req_error(r, e.code, e.msg);
	else
		req_reply(r, "\xc0", 1); /* nil */
	aep_free(to);
}

/* plan {objects}: where the pods of a manifest would land; the leader
 * answers from its scheduler's cache, a follower forwards. */
static void handle_plan(struct req *r, const msgpack_object *params)
{
	struct aep_error e = {0};
	struct aep_buf b;
	if (!is_leader(r->m)) {
		forward(r, params);
		return;
	}
	aep_buf_init(&b);
	if (master__sched_plan(r->m, params, &b, &e) != 0)
		req_error(r, e.code, e.msg);
	else
		req_reply(r, b.data, b.len);
	aep_buf_free(&b);
}

/* ---- dispatch ------------------------------------------------------------- */

static void dispatch(struct req *r, const msgpack_object *params);

static void on_request(struct aep_rpc_conn *c, uint64_t msgid, const char *method,
		       size_t method_len, const msgpack_object *params, void *data)
{
	struct master *m = data;
	int which = -1;
	for (int i = 0; i < MASTER_M__COUNT; i++) {
		if (strlen(methods[i].name) == method_len &&
		    memcmp(methods[i].name, method, method_len) == 0) {
			which = i;
			break;
		}
	}
	if (which < 0) {
		char msg[160];
		snprintf(msg, sizeof(msg), "unknown method \"%.*s\"",
			 (int)(method_len > 64 ? 64 : method_len), method);
		aep_rpc_reply_error(c, msgid, AEP_ENOMETHOD, msg, NULL, 0);
		return;
	}
	if (aep_rpc_conn_identity(c) == NULL && which != MASTER_M_JOIN) {
		aep_rpc_reply_error(c, msgid, AEP_EUNAUTHORIZED,
				    "a client certificate signed by the cluster CA is required",
				    NULL, 0);
		return;
	}
	if (params != NULL && params->type != MSGPACK_OBJECT_MAP &&
	    params->type != MSGPACK_OBJECT_NIL) {
		aep_rpc_reply_error(c, msgid, AEP_EBADREQUEST,
				    "params must be an array holding one map", NULL, 0);
		return;
	}
	if (!master__authorize(m, c, msgid, (enum master_method)which, params))
		return; /* answered: Forbidden & co. (authz.c) */
	if (m->stopping) {
		aep_rpc_reply_error(c, msgid, AEP_EUNAVAILABLE, "this master is shutting down",
				    NULL, 0);
		return;
	}
	struct req *r = req_new(m, c, msgid, (enum master_method)which);
	if (r == NULL) {
		aep_rpc_reply_error(c, msgid, AEP_ENOMEM, "out of memory", NULL, 0);
		return;
	}
	dispatch(r, params);
}

static void dispatch(struct req *r, const msgpack_object *params)
{
	switch (r->method) {
	case MASTER_M_CREATE:
	case MASTER_M_UPDATE: handle_create_update(r, params); break;
	case MASTER_M_DELETE: handle_delete(r, params); break;
	case MASTER_M_GET:
	case MASTER_M_LIST: handle_read(r, params); break;
	case MASTER_M_WATCH: handle_watch(r, params); break;
	case MASTER_M_UNWATCH: handle_unwatch(r, params); break;
	case MASTER_M_STATUS:
	case MASTER_M_MEMBERS: {
		static const char *const none[] = {NULL};
		struct aep_error e = {0};
		if (check_params(params, none, &e) != 0)
			req_error(r, e.code, e.msg);
		else if (r->method == MASTER_M_STATUS)
			handle_status(r);
		else
			handle_members(r);
		break;
	}
	case MASTER_M_ANNOUNCE: handle_announce(r, params); break;
	case MASTER_M_TRANSFER: handle_transfer(r, params); break;
	case MASTER_M_PLAN: handle_plan(r, params); break;
	case MASTER_M_NODE_REGISTER: master__node_register(r, params); break;
	case MASTER_M_NODE_HEARTBEAT: master__node_heartbeat(r, params); break;
	case MASTER_M_POD_STATUS: master__pod_status(r, params); break;
	case MASTER_M_LOGS: master__logs(r, params); break;
	case MASTER_M_EXEC: master__exec(r, params); break;
	case MASTER_M_JOIN: master__join(r, params); break;
	default: req_error(r, AEP_EINTERNAL, "unhandled method"); break;
	}
}

void master__retry_parked(struct master *m)
{
	struct req *list = m->parked;
	m->parked = NULL;
	while (list != NULL) {
		struct req *r = list;
		list = r->next;
		r->next = NULL;
		if (m->stopping || aep_rpc_conn_closed(r->conn)) {
			req_error(r, AEP_EUNAVAILABLE, "this master is shutting down");
			continue;
		}
		msgpack_zone z;
		msgpack_object params;
		struct aep_error e = {0};
		msgpack_zone_init(&z, 1024);
		if (aep_mp_unpack(r->parked.data, r->parked.len, &z, &params, &e) != 0)
			req_error(r, e.code, e.msg);
		else
			dispatch(r, &params);
		msgpack_zone_destroy(&z);
	}
}

static void on_notify(struct aep_rpc_conn *c, const char *method, size_t method_len,
		      const msgpack_object *params, void *data)
{
	master__nodes_notify(data, c, method, method_len, params);
}

static void on_close(struct aep_rpc_conn *c, void *data)
{
	struct master *m = data;
	master__nodes_conn_closed(m, c);
	struct conn_state *cs = aep_rpc_conn_get_data(c);
	if (cs == NULL)
		return;
	while (cs->watches != NULL) {
		struct watch *w = cs->watches;
		cs->watches = w->next;
		aep_store_unwatch(m->store, w->w);
		aep_free(w);
		m->nwatches--;
	}
	aep_rpc_conn_set_data(c, NULL);
	aep_free(cs);
}

const struct aep_rpc_handler master__rpc_handler = {
    .on_request = on_request,
    .on_notify = on_notify,
    .on_close = on_close,
};

/* ---- for handlers in other files (nodes.c) ------------------------------------ */

void master__req_reply(struct req *r, const char *data, size_t len)
{
	req_reply(r, data, len);
}

void master__req_error(struct req *r, int code, const char *msg)
{
	req_error(r, code, msg);
}

void master__req_error_details(struct req *r, int code, const char *msg, const char *details,
			       size_t len)
{
	aep_rpc_reply_error(r->conn, r->msgid, code, msg, details, len);
	record(r->m, r->method, r->start_ns, true);
	req_free(r);
}

void master__req_forward(struct req *r, const msgpack_object *params)
{
	forward(r, params);
}

struct aep_rpc_conn *master__req_conn(const struct req *r)
{
	return r->conn;
}

struct master *master__req_master(const struct req *r)
{
	return r->m;
}

bool master__is_leader(struct master *m)
{
	return is_leader(m);
}

/* ---- leadership, members, metrics ------------------------------------------- */

static void announce_done(void *data, const struct aep_rpc_reply *reply)
{
	struct master *m = data;
	(void)reply;
	m->announce_inflight = false;
}

static void announce_self_done(void *data, const struct aep_result *res)
{
	struct master *m = data;
	(void)res;
	m->announce_inflight = false;
}

/* Make sure the member table holds this master's addresses: the leader
 * writes it directly; a follower asks the leader. */
static void maybe_announce(struct master *m)
{
	if (m->announce_inflight || m->stopping)
		return;
	const struct aep_member *mem = NULL;
	size_t n = 0;
	aep_store_members(m->store, &mem, &n);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(mem[i].name, m->name) == 0 && strcmp(mem[i].api, m->advertise) == 0 &&
		    strcmp(mem[i].peer, m->peer) == 0)
			return;
	}
	if (is_leader(m)) {
		struct aep_cmd cmd = {
		    .op = AEP_OP_MEMBER,
		    .name = m->name,
		    .member_api = m->advertise,
		    .member_peer = m->peer,
		};
		if (aep_raft_submit(m->raft, &cmd, announce_self_done, m) == 0)
			m->announce_inflight = true;
		return;
	}
	struct aep_error e = {0};
	struct aep_rpc_client *c = fwd_client(m, &e);
	if (c == NULL)
		return;
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, m->name);
	aep_pack_str(&pk, "api");
	aep_pack_str(&pk, m->advertise);
	aep_pack_str(&pk, "peer");
	aep_pack_str(&pk, m->peer);
	if (!b.failed && aep_rpc_call(c, "announce", b.data, b.len, announce_done, m) == 0)
		m->announce_inflight = true;
	aep_buf_free(&b);
}

void master__leadership(void *data, bool leader)
{
	struct master *m = data;
	fprintf(stderr, "aep master %s: %s\n", m->name,
		leader ? "became leader" : "is no longer leader");
	if (leader && m->fwd != NULL) {
		aep_rpc_client_close(m->fwd, fwd_closed, NULL);
		m->fwd = NULL;
	}
	if (leader && !m->stopping) {
		if (master__sched_start(m) != 0 || master__rc_start(m) != 0 ||
		    master__nodes_start(m) != 0)
			fprintf(stderr,
				"aep master %s: cannot start the controllers: out of memory\n",
				m->name);
	} else if (!leader) {
		master__sched_stop(m);
		master__rc_stop(m);
		master__nodes_stop(m);
	}
	maybe_announce(m);
}

void master__applied(void *data, uint64_t index)
{
	(void)data;
	(void)index;
}

void master__publish_metrics(struct master *m)
{
	struct aep_raft_status st;
	aep_raft_status(m->raft, &st);
	maybe_announce(m);
	master__retry_parked(m);
	pthread_mutex_lock(&m->metrics.lock);
	m->metrics.raft = st;
	snprintf(m->metrics.leader_name, sizeof(m->metrics.leader_name), "%s",
		 st.leader_name ? st.leader_name : "");
	m->metrics.raft.leader_name = NULL;
	m->metrics.revision = aep_store_revision(m->store);
	for (int k = 0; k < AEP_KIND__COUNT; k++)
		m->metrics.objects[k] = aep_store_count(m->store, (enum aep_kind)k);
	m->metrics.watches = m->nwatches;
	m->metrics.sched_bound = m->sched_bound;
	m->metrics.sched_refused = m->sched_refused;
	m->metrics.sched_failed = m->sched_failed;
	m->metrics.sched_events_skipped = m->sched_events_skipped;
	m->metrics.sched_queued = master__sched_queued(m);
	m->metrics.connections = m->nconns;
	memcpy(m->metrics.methods, m->stats, sizeof(m->stats));
	m->metrics.ready = st.leader_name != NULL && st.applied_index >= st.commit_index;
	pthread_mutex_unlock(&m->metrics.lock);
}
