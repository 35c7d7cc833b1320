/* The RPC client over a list of servers.
 *
 * Happy path: the first call finds no connection, waits in the client's
 * queue and starts a connect to the server that worked last (initially the
 * first); once TCP and TLS are up the queue is sent, and later calls go
 * straight onto the connection. Each call keeps its method and params so
 * that a NotLeader answer carrying details.leader can send it again to the
 * leader (at most 5 times): the client then connects there and lets the
 * old connection drain (it closes once its last call is answered).
 *
 * Failure modes: a connect that fails or times out moves on to the next
 * server; after one round without success the queued calls get
 * AEP_EUNAVAILABLE with the last error. A connection that breaks gives its
 * calls in flight AEP_EUNAVAILABLE (outcome unknown) and fires
 * on_disconnect; the next call reconnects. aep_rpc_client_close() gives
 * every call still open AEP_ECANCELED. */
#include "net/net-int.h"

#include <string.h>

#define MAX_REDIRECTS 5
#define ADDR_MAX      300

struct client_call {
	struct aep_rpc_client *cl;
	struct aep_rpc_conn *conn; /* where it was sent; NULL while queued */
	aep_rpc_reply_cb cb;
	void *data;
	unsigned redirects;
	struct client_call *next; /* the queue */
	size_t len;		  /* of the params after the method's NUL */
	char buf[];		  /* method, NUL, params */
};

struct aep_rpc_client {
	uv_loop_t *loop;
	char **servers;
	size_t nservers;
	struct aep_tls *tls;
	struct aep_mp_limits limits;
	unsigned timeout_ms;
	struct aep_rpc_client_config cfg; /* callbacks and data */
	uv_timer_t defer;		  /* makes aep_rpc_client_close() report from the loop */

	struct aep_rpc_conn *conn; /* current: connecting or ready */
	bool ready;
	char conn_addr[ADDR_MAX];
	long conn_index;	    /* in servers, or -1 for a redirect */
	struct aep_rpc_conn *conns; /* every connection not yet fully closed */

	char *redirect; /* the leader to try first */
	size_t next_server;
	size_t attempts; /* in the current round */
	struct aep_error last_err;
	struct client_call *wait_head, *wait_tail;

	bool closing;
	bool defer_closed;
	void (*close_cb)(void *data);
	void *close_data;
};

static void connect_next(struct aep_rpc_client *cl);

static void complete(struct client_call *call, int code, const char *msg)
{
	struct aep_rpc_reply r = {.code = code, .msg = msg, .msg_len = strlen(msg)};
	call->cb(call->data, &r);
	aep_free(call);
}

static void enqueue(struct aep_rpc_client *cl, struct client_call *call)
{
	call->next = NULL;
	if (cl->wait_tail != NULL)
		cl->wait_tail->next = call;
	else
		cl->wait_head = call;
	cl->wait_tail = call;
}

/* Every queued call gets @code. Callbacks may queue new calls. */
static void fail_waiting(struct aep_rpc_client *cl, int code, const char *msg)
{
	struct client_call *call = cl->wait_head;
	cl->wait_head = cl->wait_tail = NULL;
	while (call != NULL) {
		struct client_call *next = call->next;
		complete(call, code, msg);
		call = next;
	}
}

static void call_reply(void *data, const struct aep_rpc_reply *reply);

static int send_call(struct aep_rpc_client *cl, struct client_call *call)
{
	int rv = aep_rpc_conn_call(cl->conn, call->buf, call->buf + strlen(call->buf) + 1,
				   call->len, call_reply, call);
	if (rv == 0)
		call->conn = cl->conn;
	return rv;
}

/* A connection that is no longer current closes once nothing waits on it. */
static void drain_check(struct aep_rpc_client *cl, struct aep_rpc_conn *c)
{
	if (c != NULL && c != cl->conn && !c->closing && c->ncalls == 0)
		aep_rpc_conn_close(c);
}

/* Switch to @addr (a leader named by a NotLeader answer). */
static void redirect_to(struct aep_rpc_client *cl, const char *addr)
{
	char *r = aep_strdup(addr);
	if (r != NULL) {
		aep_free(cl->redirect);
		cl->redirect = r;
	}
	if (cl->conn != NULL && strcmp(cl->conn_addr, addr) != 0) {
		struct aep_rpc_conn *old = cl->conn;
		cl->conn = NULL;
		cl->ready = false;
		if (!old->ready)
			aep_rpc_conn_close(old);
		else
			drain_check(cl, old);
	}
	cl->attempts = 0;
}

static void call_reply(void *data, const struct aep_rpc_reply *reply)
{
	struct client_call *call = data;
	struct aep_rpc_client *cl = call->cl;
	struct aep_rpc_conn *c = call->conn;
	const msgpack_object *leader = NULL;

	call->conn = NULL;
	if (reply->code == AEP_ENOTLEADER && reply->details != NULL)
		leader = aep_mp_map_get(reply->details, "leader");
	if (leader != NULL && leader->type == MSGPACK_OBJECT_STR && leader->via.str.size > 0 &&
	    leader->via.str.size < ADDR_MAX && call->redirects < MAX_REDIRECTS && !cl->closing) {
		char addr[ADDR_MAX];
		memcpy(addr, leader->via.str.ptr, leader->via.str.size);
		addr[leader->via.str.size] = '\0';
		call->redirects++;
		if (cl->ready && strcmp(cl->conn_addr, addr) == 0) {
			if (send_call(cl, call) != 0)
				complete(call, AEP_EUNAVAILABLE, "resend to the leader failed");
		} else {
			redirect_to(cl, addr);
			enqueue(cl, call);
			if (cl->conn == NULL)
				connect_next(cl);
		}
		drain_check(cl, c);
		return;
	}
	call->cb(call->data, reply);
	aep_free(call);
	drain_check(cl, c);
}

/* ---- connections -------------------------------------------------------- */

static void conn_on_request(struct aep_rpc_conn *c, uint64_t msgid, const char *method,
			    size_t method_len, const msgpack_object *params, void *data)
{
	struct aep_rpc_client *cl = data;
	if (cl->cfg.on_request != NULL && !cl->closing)
		cl->cfg.on_request(cl->cfg.data, c, msgid, method, method_len, params);
	else
		aep_rpc_reply_error(c, msgid, AEP_ENOMETHOD, "the client serves no methods", NULL,
				    0);
}

static void conn_on_notify(struct aep_rpc_conn *c, const char *method, size_t method_len,
			   const msgpack_object *params, void *data)
{
	struct aep_rpc_client *cl = data;
	(void)c;
	if (cl->cfg.on_notify != NULL && !cl->closing)
		cl->cfg.on_notify(cl->cfg.data, method, method_len, params);
}

static const struct aep_rpc_handler client_handler = {
    .on_request = conn_on_request,
    .on_notify = conn_on_notify,
};

static void conn_ready(struct aep_rpc_conn *c)
{
	struct aep_rpc_client *cl = c->owner;

	if (c != cl->conn) {
		drain_check(cl, c); /* no longer wanted */
		return;
	}
	cl->ready = true;
	cl->attempts = 0;
	if (cl->conn_index >= 0) {
		cl->next_server = (size_t)cl->conn_index;
	} else {
		for (size_t i = 0; i < cl->nservers; i++) {
			if (strcmp(cl->servers[i], cl->conn_addr) == 0)
				cl->next_server = i;
		}
	}
	aep_free(cl->redirect);
	cl->redirect = NULL;

	struct client_call *call = cl->wait_head;
	cl->wait_head = cl->wait_tail = NULL;
	while (call != NULL) {
		struct client_call *next = call->next;
		if (send_call(cl, call) != 0)
			complete(call, AEP_ENOMEM, "out of memory sending the call");
		call = next;
	}
}

static void conn_closing(struct aep_rpc_conn *c)
{
	struct aep_rpc_client *cl = c->owner;
	bool was_ready = c->ready;

	if (cl->closing)
		return;
	if (c == cl->conn) {
		was_ready = cl->ready;
		cl->conn = NULL;
		cl->ready = false;
		if (!was_ready) {
			/* A connect attempt failed: on to the next server. */
			cl->last_err = c->err;
			cl->attempts++;
			connect_next(cl);
			return;
		}
	}
	if (was_ready && c->err.code != AEP_ECANCELED && cl->cfg.on_disconnect != NULL)
		cl->cfg.on_disconnect(cl->cfg.data);
	if (cl->conn == NULL && cl->wait_head != NULL)
		connect_next(cl);
}

static void maybe_finish_close(struct aep_rpc_client *cl)
{
	if (!cl->closing || !cl->defer_closed || cl->conns != NULL)
		return;
	void (*cb)(void *) = cl->close_cb;
	void *data = cl->close_data;
	for (size_t i = 0; i < cl->nservers; i++)
		aep_free(cl->servers[i]);
	aep_free(cl->servers);
	aep_free(cl->redirect);
	aep_free(cl);
	if (cb != NULL)
		cb(data);
}

static void conn_closed(struct aep_rpc_conn *c)
{
	struct aep_rpc_client *cl = c->owner;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		cl->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	c->ops = NULL;
	c->owner = NULL;
	aep_rpc_conn_unref(c);
	maybe_finish_close(cl);
}

static const struct net__owner_ops client_conn_ops = {
    .ready = conn_ready,
    .closing = conn_closing,
    .closed = conn_closed,
};

/* Start a connect to the next server of this round, unless one is under
 * way or nothing waits. After a round without success the queue fails. */
static void connect_next(struct aep_rpc_client *cl)
{
	while (cl->conn == NULL && cl->wait_head != NULL && !cl->closing) {
		size_t total = cl->nservers + (cl->redirect != NULL ? 1 : 0);
		if (cl->attempts >= total) {
			char msg[AEP_ERRMSG_MAX + 64];
			snprintf(msg, sizeof(msg), "no server available: %s", cl->last_err.msg);
			cl->attempts = 0;
			aep_free(cl->redirect);
			cl->redirect = NULL;
			fail_waiting(cl, AEP_EUNAVAILABLE, msg);
			return;
		}
		const char *addr;
		long index;
		if (cl->redirect != NULL && cl->attempts == 0) {
			addr = cl->redirect;
			index = -1;
		} else {
			size_t k = cl->attempts - (cl->redirect != NULL ? 1 : 0);
			index = (long)((cl->next_server + k) % cl->nservers);
			addr = cl->servers[index];
		}

		struct sockaddr_storage ss;
		char host[256];
		unsigned port;
		struct aep_rpc_conn *c;
		struct aep_error e = {0};
		if (aep_addr_parse(addr, &ss, &e) != 0 ||
		    net__addr_split(addr, host, sizeof(host), &port, &e) != 0 ||
		    net__conn_new(cl->loop, cl->tls, false, host, &cl->limits, &client_handler, cl,
				  &client_conn_ops, cl, &c, &e) != 0) {
			cl->last_err = e;
			cl->attempts++;
			continue;
		}
		c->next = cl->conns;
		if (cl->conns != NULL)
			cl->conns->prev = c;
		cl->conns = c;
		cl->conn = c;
		cl->ready = false;
		cl->conn_index = index;
		snprintf(cl->conn_addr, sizeof(cl->conn_addr), "%s", addr);
		net__conn_connect(c, (const struct sockaddr *)&ss, cl->timeout_ms);
	}
}

/* ---- the client --------------------------------------------------------- */

int aep_rpc_client_new(uv_loop_t *loop, const struct aep_rpc_client_config *cfg,
		       struct aep_rpc_client **out, struct aep_error *e)
{
	struct aep_rpc_client *cl;
	int rv;

	if (cfg->servers == NULL || cfg->servers[0] == '\0')
		return aep_errorf(e, AEP_EINVALID, "client: no servers");
	if (cfg->tls != NULL && cfg->tls->server)
		return aep_errorf(e, AEP_EINVALID, "client: not a client TLS context");
	cl = aep_calloc(1, sizeof(*cl));
	if (cl == NULL)
		return aep_errorf(e, AEP_ENOMEM, "client: out of memory");
	cl->loop = loop;
	cl->tls = cfg->tls;
	cl->limits = cfg->limits != NULL ? *cfg->limits : aep_mp_default_limits;
	cl->timeout_ms = cfg->connect_timeout_ms != 0 ? cfg->connect_timeout_ms : 5000;
	cl->cfg = *cfg;
	cl->cfg.servers = NULL;

	/* Split and check the list now: a bad address is the caller's error. */
	const char *p = cfg->servers;
	while (*p != '\0') {
		const char *comma = strchr(p, ',');
		size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
		while (n > 0 && (*p == ' ' || *p == '\t')) {
			p++;
			n--;
		}
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n > 0) {
			struct sockaddr_storage ss;
			char **grown;
			char *addr = aep_strndup(p, n);
			if (addr == NULL) {
				rv = aep_errorf(e, AEP_ENOMEM, "client: out of memory");
				goto err_after_servers;
			}
			if (n >= ADDR_MAX) {
				aep_free(addr);
				rv = aep_errorf(e, AEP_EINVALID, "client: server address too long");
				goto err_after_servers;
			}
			rv = aep_addr_parse(addr, &ss, e);
			if (rv != 0) {
				aep_free(addr);
				aep_error_prefix(e, "client");
				goto err_after_servers;
			}
			grown = aep_realloc(cl->servers, (cl->nservers + 1) * sizeof(*grown));
			if (grown == NULL) {
				aep_free(addr);
				rv = aep_errorf(e, AEP_ENOMEM, "client: out of memory");
				goto err_after_servers;
			}
			cl->servers = grown;
			cl->servers[cl->nservers++] = addr;
		}
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	if (cl->nservers == 0) {
		rv = aep_errorf(e, AEP_EINVALID, "client: no servers");
		goto err_after_servers;
	}
	uv_timer_init(loop, &cl->defer);
	cl->defer.data = cl;
	*out = cl;
	return 0;

err_after_servers:
	for (size_t i = 0; i < cl->nservers; i++)
		aep_free(cl->servers[i]);
	aep_free(cl->servers);
	aep_free(cl);
	return rv;
}

int aep_rpc_call(struct aep_rpc_client *cl, const char *method, const char *params, size_t len,
		 aep_rpc_reply_cb cb, void *data)
{
	if (cl->closing)
		return AEP_ECANCELED;
	size_t mlen = strlen(method);
	struct client_call *call = aep_malloc(sizeof(*call) + mlen + 1 + len);
	if (call == NULL)
		return AEP_ENOMEM;
	call->cl = cl;
	call->conn = NULL;
	call->cb = cb;
	call->data = data;
	call->redirects = 0;
	call->next = NULL;
	call->len = len;
	memcpy(call->buf, method, mlen + 1);
	if (len > 0)
		memcpy(call->buf + mlen + 1, params, len);
	if (cl->ready) {
		int rv = send_call(cl, call);
		if (rv != 0)
			aep_free(call);
		return rv;
	}
	enqueue(cl, call);
	connect_next(cl);
	return 0;
}

const char *aep_rpc_client_server(const struct aep_rpc_client *cl)
{
	return cl->ready ? cl->conn_addr : NULL;
}

static void defer_closed_cb(uv_handle_t *h)
{
	struct aep_rpc_client *cl = h->data;
	cl->defer_closed = true;
	maybe_finish_close(cl);
}

void aep_rpc_client_close(struct aep_rpc_client *cl, void (*cb)(void *data), void *data)
{
	if (cl->closing)
		return;
	cl->closing = true;
	cl->close_cb = cb;
	cl->close_data = data;
	cl->conn = NULL;
	cl->ready = false;
	fail_waiting(cl, AEP_ECANCELED, "client closed");
	/* Connections leave the list only when their handles have closed. */
	for (struct aep_rpc_conn *c = cl->conns; c != NULL; c = c->next) {
		c->cancel_code = AEP_ECANCELED;
		aep_rpc_conn_close(c);
	}
	uv_close((uv_handle_t *)&cl->defer, defer_closed_cb);
}

/* ---- blocking use ------------------------------------------------------- */

struct sync_call {
	bool done;
	bool abandoned; /* the caller timed out and left; free on completion */
	int code;
	char msg[AEP_ERRMSG_MAX];
	struct aep_buf *result;
};

static void sync_cb(void *data, const struct aep_rpc_reply *r)
{
	struct sync_call *sc = data;

	if (sc->abandoned) {
		aep_free(sc);
		return;
	}
	sc->done = true;
	sc->code = r->code;
	if (r->code != 0) {
		snprintf(sc->msg, sizeof(sc->msg), "%.*s", (int)r->msg_len, r->msg);
		return;
	}
	if (sc->result != NULL) {
		msgpack_packer pk;
		aep_packer_init(&pk, sc->result);
		if (msgpack_pack_object(&pk, *r->result) != 0 || sc->result->failed) {
			sc->code = AEP_ENOMEM;
			snprintf(sc->msg, sizeof(sc->msg), "out of memory copying the result");
		}
	}
}

static void sync_timer_cb(uv_timer_t *t)
{
	bool *expired = t->data;
	*expired = true;
}

static void free_handle_cb(uv_handle_t *h)
{
	aep_free(h);
}

int aep_rpc_call_sync(uv_loop_t *loop, struct aep_rpc_client *c, const char *method,
		      const char *params, size_t len, unsigned timeout_ms, struct aep_buf *result,
		      struct aep_error *e)
{
	struct sync_call *sc = aep_calloc(1, sizeof(*sc));
	uv_timer_t *timer = aep_malloc(sizeof(*timer));
	bool expired = false;
	int rv;

	if (sc == NULL || timer == NULL) {
		aep_free(sc);
		aep_free(timer);
		return aep_errorf(e, AEP_ENOMEM, "%s: out of memory", method);
	}
	sc->result = result;
	rv = aep_rpc_call(c, method, params, len, sync_cb, sc);
	if (rv != 0) {
		aep_free(sc);
		aep_free(timer);
		return aep_errorf(e, rv, "%s: %s", method, aep_err_code(rv));
	}
	uv_timer_init(loop, timer);
	timer->data = &expired;
	uv_timer_start(timer, sync_timer_cb, timeout_ms, 0);
	while (!sc->done && !expired) {
		if (uv_run(loop, UV_RUN_ONCE) == 0 && !sc->done)
			break; /* nothing left that could answer */
	}
	uv_close((uv_handle_t *)timer, free_handle_cb);
	uv_run(loop, UV_RUN_NOWAIT); /* runs the close callback */
	if (!sc->done) {
		sc->abandoned = true;
		return aep_errorf(e, AEP_ETIMEOUT, "%s: no answer within %u ms", method,
				  timeout_ms);
	}
	rv = sc->code;
	if (rv != 0)
		aep_errorf(e, rv, "%s", sc->msg);
	aep_free(sc);
	return rv;
}
