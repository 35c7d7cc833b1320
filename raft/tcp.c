/* libraft's TCP transport with Nagle's algorithm off (see raft-int.h). Every
 * call goes straight to raft_uv_tcp; only the accept and connect callbacks
 * are intercepted, to call uv_tcp_nodelay() on the new stream. */
#include "raft/raft-int.h"

#include <string.h>

#include "lib/lib.h"

struct raft__connect {
	struct raft__connect *next;
	struct raft__tcp *t;
	struct raft_uv_connect *req;
	raft_uv_connect_cb cb;
};

/* Connect requests in flight, in every transport of the process: the
 * request's data field belongs to libraft, so the callback finds its
 * transport here (there are a handful at most). Loop thread only. */
static struct raft__connect *pending;

static void nodelay(struct uv_stream_s *stream)
{
	if (stream != NULL && stream->type == UV_TCP)
		uv_tcp_nodelay((uv_tcp_t *)stream, 1);
}

static void copy_errmsg(struct raft__tcp *t)
{
	memcpy(t->outer.errmsg, t->inner.errmsg, sizeof(t->outer.errmsg));
}

static int tcp_init(struct raft_uv_transport *outer, raft_id id, const char *address)
{
	struct raft__tcp *t = outer->impl;
	int rv = t->inner.init(&t->inner, id, address);
	if (rv != 0)
		copy_errmsg(t);
	return rv;
}

static void accept_cb(struct raft_uv_transport *inner, raft_id id, const char *address,
		      struct uv_stream_s *stream)
{
	struct raft__tcp *t = inner->data;
	nodelay(stream);
	t->accept_cb(&t->outer, id, address, stream);
}

static int tcp_listen(struct raft_uv_transport *outer, raft_uv_accept_cb cb)
{
	struct raft__tcp *t = outer->impl;
	t->accept_cb = cb;
	int rv = t->inner.listen(&t->inner, accept_cb);
	if (rv != 0)
		copy_errmsg(t);
	return rv;
}

static void connect_cb(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
	struct raft__connect *c = NULL;
	for (struct raft__connect **pp = &pending; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->req == req) {
			c = *pp;
			*pp = c->next;
			break;
		}
	}
	if (c == NULL)
		return; /* not ours: cannot happen */
	if (status == 0)
		nodelay(stream);
	c->cb(c->req, stream, status);
	aep_free(c);
}

static int tcp_connect(struct raft_uv_transport *outer, struct raft_uv_connect *req, raft_id id,
		       const char *address, raft_uv_connect_cb cb)
{
	struct raft__tcp *t = outer->impl;
	struct raft__connect *c = aep_malloc(sizeof(*c));
	if (c == NULL)
		return RAFT_NOMEM;
	c->t = t;
	c->req = req;
	c->cb = cb;
	c->next = pending;
	pending = c;
	int rv = t->inner.connect(&t->inner, req, id, address, connect_cb);
	if (rv != 0) {
		pending = c->next;
		aep_free(c);
		copy_errmsg(t);
	}
	return rv;
}

static void close_cb(struct raft_uv_transport *inner)
{
	struct raft__tcp *t = inner->data;
	if (t->close_cb != NULL)
		t->close_cb(&t->outer);
}

static void tcp_transport_close(struct raft_uv_transport *outer, raft_uv_transport_close_cb cb)
{
	struct raft__tcp *t = outer->impl;
	t->close_cb = cb;
	t->inner.close(&t->inner, close_cb);
}

int raft__tcp_init(struct raft__tcp *t, struct uv_loop_s *loop, const char *bind_address)
{
	memset(t, 0, sizeof(*t));
	int rv = raft_uv_tcp_init(&t->inner, loop);
	if (rv != 0) {
		copy_errmsg(t);
		return rv;
	}
	rv = raft_uv_tcp_set_bind_address(&t->inner, bind_address);
	if (rv != 0) {
		copy_errmsg(t);
		raft_uv_tcp_close(&t->inner);
		return rv;
	}
	t->inner.data = t;
	t->outer.impl = t;
	t->outer.init = tcp_init;
	t->outer.listen = tcp_listen;
	t->outer.connect = tcp_connect;
	t->outer.close = tcp_transport_close;
	return 0;
}

void raft__tcp_close(struct raft__tcp *t)
{
	raft_uv_tcp_close(&t->inner);
	/* Closing cancelled every connect with its callback; drop any left. */
	for (struct raft__connect **pp = &pending; *pp != NULL;) {
		struct raft__connect *c = *pp;
		if (c->t == t) {
			*pp = c->next;
			aep_free(c);
		} else {
			pp = &c->next;
		}
	}
}
