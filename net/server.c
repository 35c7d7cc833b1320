/* The RPC server: a listening TCP handle whose accepted connections run
 * the caller's handler. The server holds one reference on each connection
 * until its handles have closed; aep_rpc_server_close() stops listening,
 * closes every connection (their calls in flight get AEP_ECANCELED) and
 * reports once the listener and all connections are gone. */
#include "net/net-int.h"

#include <string.h>

struct aep_rpc_server {
	uv_loop_t *loop;
	uv_tcp_t tcp;
	struct aep_tls *tls;
	struct aep_mp_limits limits;
	struct aep_rpc_handler h;
	void *data;
	struct aep_rpc_conn *conns; /* every connection not yet fully closed */
	int port;
	bool closing;
	bool listener_closed;
	uv_tcp_t reject; /* closes what we had no memory to serve */
	bool reject_busy;
	void (*close_cb)(void *data);
	void *close_data;
};

static void maybe_finish_close(struct aep_rpc_server *s)
{
	if (!s->closing || !s->listener_closed || s->conns != NULL || s->reject_busy)
		return;
	void (*cb)(void *) = s->close_cb;
	void *data = s->close_data;
	aep_free(s);
	if (cb != NULL)
		cb(data);
}

static void conn_closed(struct aep_rpc_conn *c)
{
	struct aep_rpc_server *s = c->owner;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	c->owner = NULL;
	c->ops = NULL;
	aep_rpc_conn_unref(c);
	maybe_finish_close(s);
}

static const struct net__owner_ops server_conn_ops = {
    .closed = conn_closed,
};

static void on_connection(uv_stream_t *listener, int status);

static void reject_closed_cb(uv_handle_t *h)
{
	struct aep_rpc_server *s = h->data;
	s->reject_busy = false;
	if (s->closing) {
		maybe_finish_close(s);
		return;
	}
	/* libuv stops watching the listener while an accepted socket waits
	 * for uv_accept(): take it now (uv_accept says UV_EAGAIN if none). */
	on_connection((uv_stream_t *)&s->tcp, 0);
}

/* No memory for a connection: accept the socket and close it at once, so
 * that the client hears about it and the listener keeps going. */
static void reject(struct aep_rpc_server *s)
{
	if (s->reject_busy)
		return; /* picked up by reject_closed_cb */
	uv_tcp_init(s->loop, &s->reject);
	s->reject.data = s;
	s->reject_busy = true;
	uv_accept((uv_stream_t *)&s->tcp, (uv_stream_t *)&s->reject);
	uv_close((uv_handle_t *)&s->reject, reject_closed_cb);
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct aep_rpc_server *s = listener->data;
	struct aep_rpc_conn *c;
	struct aep_error e = {0};

	if (status < 0 || s->closing)
		return;
	if (net__conn_new(s->loop, s->tls, true, NULL, &s->limits, &s->h, s->data, &server_conn_ops,
			  s, &c, &e) != 0) {
		reject(s);
		return;
	}
	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
		/* Nothing was waiting: the handler never hears of it. */
		c->h.on_close = NULL;
		net__conn_fail(c, AEP_EIO, "accept failed");
		return;
	}
	net__conn_accepted(c);
}

static void listener_closed_cb(uv_handle_t *h)
{
	struct aep_rpc_server *s = h->data;
	s->listener_closed = true;
	maybe_finish_close(s);
}

int aep_rpc_server_start(uv_loop_t *loop, const char *addr, struct aep_tls *tls,
			 const struct aep_mp_limits *limits, const struct aep_rpc_handler *h,
			 void *data, struct aep_rpc_server **out, struct aep_error *e)
{
	struct sockaddr_storage ss;
	int rv = aep_addr_parse(addr, &ss, e);
	if (rv != 0)
		return rv;
	if (tls != NULL && !tls->server)
		return aep_errorf(e, AEP_EINVALID, "listen %s: not a server TLS context", addr);

	struct aep_rpc_server *s = aep_calloc(1, sizeof(*s));
	if (s == NULL)
		return aep_errorf(e, AEP_ENOMEM, "listen %s: out of memory", addr);
	s->loop = loop;
	s->tls = tls;
	s->limits = limits != NULL ? *limits : aep_mp_default_limits;
	s->h = *h;
	s->data = data;
	uv_tcp_init(loop, &s->tcp);
	s->tcp.data = s;

	rv = uv_tcp_bind(&s->tcp, (const struct sockaddr *)&ss, 0);
	if (rv == 0)
		rv = uv_listen((uv_stream_t *)&s->tcp, 511, on_connection);
	if (rv != 0) {
		rv = aep_errorf(e, rv == UV_EADDRINUSE ? AEP_EUNAVAILABLE : AEP_EIO,
				"listen %s: %s", addr, uv_strerror(rv));
		goto err_after_tcp;
	}
	struct sockaddr_storage bound;
	int len = sizeof(bound);
	rv = uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&bound, &len);
	if (rv != 0) {
		rv = aep_errorf(e, AEP_EIO, "listen %s: getsockname: %s", addr, uv_strerror(rv));
		goto err_after_tcp;
	}
	if (bound.ss_family == AF_INET)
		s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
	else
		s->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
	*out = s;
	return 0;

err_after_tcp:
	/* The handle is freed by the loop (run it once before closing it). */
	s->closing = true;
	uv_close((uv_handle_t *)&s->tcp, listener_closed_cb);
	return rv;
}

int aep_rpc_server_port(const struct aep_rpc_server *s)
{
	return s->port;
}

void aep_rpc_server_close(struct aep_rpc_server *s, void (*cb)(void *data), void *data)
{
	if (s->closing)
		return;
	s->closing = true;
	s->close_cb = cb;
	s->close_data = data;
	uv_close((uv_handle_t *)&s->tcp, listener_closed_cb);
	/* Connections leave the list only when their handles have closed,
	 * which is never inside this loop. */
	for (struct aep_rpc_conn *c = s->conns; c != NULL; c = c->next)
		aep_rpc_conn_close(c);
}
