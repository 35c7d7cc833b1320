/* One MessagePack-RPC connection over TLS (or plaintext) on a libuv TCP
 * handle.
 *
 * Happy path: bytes read from the socket go through a memory BIO into
 * OpenSSL; the plaintext accumulates in c->in; aep_mp_check() bounds the
 * next object before aep_mp_unpack() decodes it into a per-connection zone
 * (cleared after each message); the message is dispatched to the handler
 * (request, notification) or to the waiting call (response). Everything we
 * send is encoded into c->out and flushed once per loop iteration by a
 * prepare handle (or at once past NET__FLUSH_BYTES), so that many replies
 * leave in one SSL_write and one uv_write.
 *
 * Failure modes: a limit broken by the peer gets a TooLarge response (to
 * its msgid when the bytes give one, else an "error" notification), bytes
 * that are not a message get BadRequest, and the connection closes. Close
 * is asynchronous: the owner hears closing (pending calls are then
 * cancelled with c->cancel_code, each callback once) and the handler's
 * on_close; queued output is flushed, the write side shut down, and the
 * handles closed once the peer closes its side or NET__LINGER_MS pass.
 * Memory goes when the last handle has closed and the last reference is
 * dropped. */
#include "net/net-int.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define READ_BUF_SIZE  (64u << 10)
#define SSL_READ_CHUNK (16u << 10)
#define CALLS_MIN      64
/* Buffers that grew past this for one large message are given back. */
#define BUF_KEEP (1u << 20)

/* TLS ciphertext is read here before it goes into the connection's BIO;
 * libuv calls alloc and read back to back, so one buffer serves all. */
static _Thread_local char read_buf[READ_BUF_SIZE];

struct net_write {
	uv_write_t req;
	struct aep_rpc_conn *c;
	char *data;
	size_t len;
};

static void close_handles(struct aep_rpc_conn *c);
static void flusher_cb(uv_prepare_t *h);

/* ---- lifetime ----------------------------------------------------------- */

static void conn_free(struct aep_rpc_conn *c)
{
	SSL_free(c->ssl);
	aep_buf_free(&c->in);
	aep_buf_free(&c->out);
	msgpack_zone_destroy(&c->zone);
	aep_free(c->calls);
	aep_free(c->identity);
	aep_free(c);
}

static void maybe_free(struct aep_rpc_conn *c)
{
	if (c->refs == 0 && c->handles_closing && c->open_handles == 0)
		conn_free(c);
}

struct aep_rpc_conn *aep_rpc_conn_ref(struct aep_rpc_conn *c)
{
	c->refs++;
	return c;
}

void aep_rpc_conn_unref(struct aep_rpc_conn *c)
{
	if (c == NULL)
		return;
	if (--c->refs > 0)
		return;
	if (!c->closing)
		net__conn_fail(c, AEP_ECANCELED, "connection released");
	maybe_free(c);
}

static void peer_name(const struct sockaddr *sa, char *out, size_t n)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
		uv_ip4_name(in4, ip, sizeof(ip));
		snprintf(out, n, "%s:%u", ip, ntohs(in4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		uv_ip6_name(in6, ip, sizeof(ip));
		snprintf(out, n, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(out, n, "?");
	}
}

static bool is_ip(const char *host)
{
	unsigned char a[16];
	return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

int net__conn_new(uv_loop_t *loop, struct aep_tls *tls, bool is_server, const char *verify_host,
		  const struct aep_mp_limits *limits, const struct aep_rpc_handler *h, void *h_data,
		  const struct net__owner_ops *ops, void *owner, struct aep_rpc_conn **out,
		  struct aep_error *e)
{
	struct aep_rpc_conn *c = aep_calloc(1, sizeof(*c));
	int rv;

	if (c == NULL)
		return aep_errorf(e, AEP_ENOMEM, "connection: out of memory");
	c->loop = loop;
	c->refs = 1;
	c->is_server = is_server;
	c->limits = limits != NULL ? *limits : aep_mp_default_limits;
	c->cancel_code = is_server ? AEP_ECANCELED : AEP_EUNAVAILABLE;
	if (h != NULL)
		c->h = *h;
	c->h_data = h_data;
	c->ops = ops;
	c->owner = owner;
	snprintf(c->peer, sizeof(c->peer), "?");
	aep_buf_init(&c->in);
	aep_buf_init(&c->out);
	if (!msgpack_zone_init(&c->zone, 4096)) {
		rv = aep_errorf(e, AEP_ENOMEM, "connection: out of memory");
		goto err_after_alloc;
	}
	if (tls != NULL) {
		ERR_clear_error();
		c->ssl = SSL_new(tls->ctx);
		if (c->ssl == NULL) {
			rv = net__tls_error(e, AEP_ENOMEM, "tls: SSL_new");
			goto err_after_zone;
		}
		c->rbio = BIO_new(BIO_s_mem());
		c->wbio = BIO_new(BIO_s_mem());
		if (c->rbio == NULL || c->wbio == NULL) {
			BIO_free(c->rbio);
			BIO_free(c->wbio);
			rv = net__tls_error(e, AEP_ENOMEM, "tls: BIO_new");
			goto err_after_ssl;
		}
		/* An empty read BIO means "more to come", not end of file. */
		BIO_set_mem_eof_return(c->rbio, -1);
		SSL_set_bio(c->ssl, c->rbio, c->wbio);
		if (is_server) {
			SSL_set_accept_state(c->ssl);
		} else {
			SSL_set_connect_state(c->ssl);
			if (verify_host != NULL) {
				int ok;
				if (is_ip(verify_host)) {
					ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl),
									   verify_host);
				} else {
					ok = SSL_set1_host(c->ssl, verify_host) == 1 &&
					     SSL_set_tlsext_host_name(c->ssl, verify_host) == 1;
				}
				if (ok != 1) {
					rv = net__tls_error(e, AEP_EINVALID, "tls: server name");
					aep_error_prefix(e, "%s", verify_host);
					goto err_after_ssl;
				}
			}
		}
	}
	/* None of these can fail: no socket exists yet. */
	uv_tcp_init(loop, &c->tcp);
	uv_prepare_init(loop, &c->flusher);
	uv_timer_init(loop, &c->timer);
	c->tcp.data = c;
	c->flusher.data = c;
	c->timer.data = c;
	c->connect_req.data = c;
	c->shutdown_req.data = c;
	c->open_handles = 3;
	*out = c;
	return 0;

err_after_ssl:
	SSL_free(c->ssl);
err_after_zone:
	msgpack_zone_destroy(&c->zone);
err_after_alloc:
	aep_free(c);
	ERR_clear_error();
	return rv;
}

static void handle_closed_cb(uv_handle_t *h)
{
	struct aep_rpc_conn *c = h->data;
	if (--c->open_handles > 0)
		return;
	aep_rpc_conn_ref(c);
	if (c->ops != NULL && c->ops->closed != NULL)
		c->ops->closed(c);
	aep_rpc_conn_unref(c);
}

static void close_handles(struct aep_rpc_conn *c)
{
	if (c->handles_closing)
		return;
	c->handles_closing = true;
	uv_close((uv_handle_t *)&c->tcp, handle_closed_cb);
	uv_close((uv_handle_t *)&c->flusher, handle_closed_cb);
	uv_close((uv_handle_t *)&c->timer, handle_closed_cb);
}

/* ---- calls in flight ---------------------------------------------------- */

static int calls_grow(struct aep_rpc_conn *c)
{
	size_t cap = c->calls_cap ? c->calls_cap * 2 : CALLS_MIN;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	struct net__call **t = aep_calloc(cap, sizeof(*t));
	if (t == NULL)
		return AEP_ENOMEM;
	for (size_t i = 0; i < c->calls_cap; i++) {
		struct net__call *call = c->calls[i];
		while (call != NULL) {
			struct net__call *next = call->next;
			size_t slot = call->msgid & (cap - 1);
			call->next = t[slot];
			t[slot] = call;
			call = next;
		}
	}
	aep_free(c->calls);
	c->calls = t;
	c->calls_cap = cap;
	return 0;
}

static struct net__call *calls_find(const struct aep_rpc_conn *c, uint32_t msgid)
{
	if (c->calls_cap == 0)
		return NULL;
	struct net__call *call = c->calls[msgid & (c->calls_cap - 1)];
	while (call != NULL && call->msgid != msgid)
		call = call->next;
	return call;
}

static int calls_add(struct aep_rpc_conn *c, struct net__call *call)
{
	/* A failed grow only makes the chains longer, unless there is no
	 * table at all. */
	if (c->ncalls >= c->calls_cap && calls_grow(c) != 0 && c->calls_cap == 0)
		return AEP_ENOMEM;
	while (calls_find(c, c->next_msgid) != NULL)
		c->next_msgid++;
	call->msgid = c->next_msgid++;
	size_t slot = call->msgid & (c->calls_cap - 1);
	call->next = c->calls[slot];
	c->calls[slot] = call;
	c->ncalls++;
	return 0;
}

static struct net__call *calls_take(struct aep_rpc_conn *c, uint32_t msgid)
{
	if (c->calls_cap == 0)
		return NULL;
	struct net__call **p = &c->calls[msgid & (c->calls_cap - 1)];
	while (*p != NULL && (*p)->msgid != msgid)
		p = &(*p)->next;
	struct net__call *call = *p;
	if (call != NULL) {
		*p = call->next;
		c->ncalls--;
	}
	return call;
}

/* Every call in flight gets c->cancel_code, once. Callbacks may issue new
 * calls; those fail at once since the connection is closing. */
static void calls_cancel_all(struct aep_rpc_conn *c)
{
	struct net__call **t = c->calls;
	size_t cap = c->calls_cap;

	c->calls = NULL;
	c->calls_cap = 0;
	c->ncalls = 0;
	struct aep_rpc_reply r = {
	    .code = c->cancel_code,
	    .msg = c->err.msg,
	    .msg_len = strlen(c->err.msg),
	};
	for (size_t i = 0; i < cap; i++) {
		struct net__call *call = t[i];
		while (call != NULL) {
			struct net__call *next = call->next;
			call->cb(call->data, &r);
			aep_free(call);
			call = next;
		}
	}
	aep_free(t);
}

/* ---- output ------------------------------------------------------------- */

static void resume_reading(struct aep_rpc_conn *c);

static void write_cb(uv_write_t *req, int status)
{
	struct net_write *w = req->data;
	struct aep_rpc_conn *c = w->c;

	c->writing -= w->len;
	aep_free(w->data);
	aep_free(w);
	if (status < 0 && status != UV_ECANCELED)
		net__conn_fail(c, AEP_EIO, "write to %s: %s", c->peer, uv_strerror(status));
	else if (c->paused && !c->closing && aep_rpc_conn_pending(c) < NET__RESUME_BYTES)
		resume_reading(c);
}

/* Write @data (ours to free) to the socket: at once when nothing is
 * queued before it and the socket takes it all (no request, no callback,
 * no poll for writability); what is left goes through uv_write. */
static int write_raw(struct aep_rpc_conn *c, char *data, size_t len)
{
	size_t off = 0;
	if (c->writing == 0) {
		uv_buf_t b = uv_buf_init(data, (unsigned)len);
		int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		if (n >= 0 && (size_t)n == len) {
			aep_free(data);
			return 0;
		}
		if (n > 0) {
			off = (size_t)n;
		} else if (n != UV_EAGAIN && n != UV_ENOSYS) {
			aep_free(data);
			return aep_errorf(&c->err, AEP_EIO, "write to %s: %s", c->peer,
					  uv_strerror(n));
		}
	}
	if (off > 0) {
		memmove(data, data + off, len - off);
		len -= off;
	}
	struct net_write *w = aep_malloc(sizeof(*w));
	if (w == NULL) {
		aep_free(data);
		return aep_errorf(&c->err, AEP_ENOMEM, "send to %s: out of memory", c->peer);
	}
	w->req.data = w;
	w->c = c;
	w->data = data;
	w->len = len;
	uv_buf_t b = uv_buf_init(data, (unsigned)len);
	int rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
	if (rv < 0) {
		aep_free(data);
		aep_free(w);
		return aep_errorf(&c->err, AEP_EIO, "write to %s: %s", c->peer, uv_strerror(rv));
	}
	c->writing += len;
	return 0;
}

static int drain_wbio(struct aep_rpc_conn *c)
{
	size_t n;
	while ((n = BIO_ctrl_pending(c->wbio)) > 0) {
		if (n > INT_MAX)
			n = INT_MAX;
		char *data = aep_malloc(n);
		if (data == NULL)
			return aep_errorf(&c->err, AEP_ENOMEM, "send to %s: out of memory",
					  c->peer);
		int r = BIO_read(c->wbio, data, (int)n);
		if (r <= 0) {
			aep_free(data);
			return aep_errorf(&c->err, AEP_EINTERNAL, "send to %s: BIO_read failed",
					  c->peer);
		}
		int rv = write_raw(c, data, (size_t)r);
		if (rv != 0)
			return rv;
	}
	return 0;
}

/* Hand c->out to TLS and the socket. On failure c->err says why and the
 * caller closes the connection. */
static int flush(struct aep_rpc_conn *c)
{
	if (!c->tcp_up || c->handles_closing)
		return 0;
	if (c->ssl == NULL) {
		if (!c->ready || c->out.len == 0)
			return 0;
		char *data = aep_malloc(c->out.len);
		if (data == NULL)
			return aep_errorf(&c->err, AEP_ENOMEM, "send to %s: out of memory",
					  c->peer);
		memcpy(data, c->out.data, c->out.len);
		size_t len = c->out.len;
		aep_buf_reset(&c->out);
		if (c->out.cap > BUF_KEEP)
			aep_buf_free(&c->out);
		return write_raw(c, data, len);
	}
	if (c->ready && c->out.len > 0) {
		size_t off = 0;
		ERR_clear_error();
		while (off < c->out.len) {
			size_t chunk = c->out.len - off;
			if (chunk > (1u << 30))
				chunk = 1u << 30;
			int r = SSL_write(c->ssl, c->out.data + off, (int)chunk);
			if (r <= 0) {
				net__tls_error(&c->err, AEP_EIO, "tls: SSL_write");
				return AEP_EIO;
			}
			off += (size_t)r;
		}
		aep_buf_reset(&c->out);
		if (c->out.cap > BUF_KEEP)
			aep_buf_free(&c->out);
	}
	return drain_wbio(c);
}

static void pause_if_flooded(struct aep_rpc_conn *c)
{
	if (c->is_server && !c->paused && !c->closing &&
	    aep_rpc_conn_pending(c) > NET__PAUSE_BYTES) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->paused = true;
	}
}

static void flusher_cb(uv_prepare_t *h)
{
	struct aep_rpc_conn *c = h->data;

	uv_prepare_stop(h);
	if (c->closing)
		return;
	/* c->err is set only by a failed flush: report that one now. */
	if (c->err.code != 0 || flush(c) != 0) {
		net__conn_fail(c, c->err.code, "%s", c->err.msg);
		return;
	}
	pause_if_flooded(c);
}

/* Make room for a message of at most @need bytes in c->out, so that
 * encoding it cannot fail half way. */
static int queue_begin(struct aep_rpc_conn *c, size_t need)
{
	if (c == NULL || c->closing)
		return AEP_ECANCELED;
	if (aep_buf_reserve(&c->out, need) != 0) {
		c->out.failed = false;
		return AEP_ENOMEM;
	}
	return 0;
}

/* A message was queued: flush before the loop next polls, or now when
 * enough is waiting. Never calls back into the caller: a failure is
 * reported from the flusher. */
static void queue_end(struct aep_rpc_conn *c)
{
	if (c->out.len >= NET__FLUSH_BYTES && c->ready && c->err.code == 0) {
		if (flush(c) == 0) {
			pause_if_flooded(c);
			return;
		}
	}
	if (!uv_is_active((uv_handle_t *)&c->flusher))
		uv_prepare_start(&c->flusher, flusher_cb);
}

size_t aep_rpc_conn_pending(const struct aep_rpc_conn *c)
{
	size_t n = c->out.len + c->writing;
	if (c->wbio != NULL)
		n += BIO_ctrl_pending(c->wbio);
	return n;
}

/* A reply that cannot be queued would leave the peer waiting forever:
 * the connection closes instead (from the loop, not inside the caller). */
static int reply_failed(struct aep_rpc_conn *c, int rv)
{
	if (rv == AEP_ENOMEM && c->err.code == 0) {
		aep_errorf(&c->err, AEP_ENOMEM, "%s: out of memory for a reply", c->peer);
		uv_prepare_start(&c->flusher, flusher_cb);
	}
	return rv;
}

int aep_rpc_reply(struct aep_rpc_conn *c, uint64_t msgid, const char *result, size_t len)
{
	int rv = queue_begin(c, len + 16);
	if (rv != 0)
		return reply_failed(c, rv);
	msgpack_packer pk;
	aep_packer_init(&pk, &c->out);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, 1);
	msgpack_pack_uint64(&pk, msgid);
	msgpack_pack_nil(&pk);
	if (len == 0)
		msgpack_pack_nil(&pk);
	else
		aep_buf_append(&c->out, result, len);
	queue_end(c);
	return 0;
}

static void pack_error_map(msgpack_packer *pk, int code, const char *msg, const char *details,
			   size_t details_len)
{
	msgpack_pack_map(pk, details != NULL && details_len > 0 ? 3 : 2);
	aep_pack_str(pk, "code");
	aep_pack_str(pk, aep_err_code(code));
	aep_pack_str(pk, "message");
	aep_pack_str(pk, msg != NULL ? msg : "");
	if (details != NULL && details_len > 0) {
		aep_pack_str(pk, "details");
		aep_buf_append(pk->data, details, details_len);
	}
}

static size_t error_map_size(int code, const char *msg, size_t details_len)
{
	return 48 + strlen(aep_err_code(code)) + (msg != NULL ? strlen(msg) : 0) + details_len;
}

int aep_rpc_reply_error(struct aep_rpc_conn *c, uint64_t msgid, int code, const char *msg,
			const char *details, size_t details_len)
{
	int rv = queue_begin(c, 16 + error_map_size(code, msg, details_len));
	if (rv != 0)
		return reply_failed(c, rv);
	msgpack_packer pk;
	aep_packer_init(&pk, &c->out);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, 1);
	msgpack_pack_uint64(&pk, msgid);
	pack_error_map(&pk, code, msg, details, details_len);
	msgpack_pack_nil(&pk);
	queue_end(c);
	return 0;
}

int aep_rpc_notify(struct aep_rpc_conn *c, const char *method, const char *params, size_t len)
{
	size_t mlen = strlen(method);
	int rv = queue_begin(c, 16 + mlen + len);
	if (rv != 0)
		return rv;
	msgpack_packer pk;
	aep_packer_init(&pk, &c->out);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_uint8(&pk, 2);
	aep_pack_strn(&pk, method, mlen);
	if (len == 0)
		msgpack_pack_array(&pk, 0);
	else
		aep_buf_append(&c->out, params, len);
	queue_end(c);
	return 0;
}

int aep_rpc_conn_call(struct aep_rpc_conn *c, const char *method, const char *params, size_t len,
		      aep_rpc_reply_cb cb, void *data)
{
	if (c == NULL || c->closing)
		return AEP_ECANCELED;
	size_t mlen = strlen(method);
	struct net__call *call = aep_malloc(sizeof(*call));
	if (call == NULL)
		return AEP_ENOMEM;
	call->cb = cb;
	call->data = data;
	int rv = queue_begin(c, 24 + mlen + len);
	if (rv != 0)
		goto err_after_alloc;
	rv = calls_add(c, call);
	if (rv != 0)
		goto err_after_alloc;
	msgpack_packer pk;
	aep_packer_init(&pk, &c->out);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, 0);
	msgpack_pack_uint32(&pk, call->msgid);
	aep_pack_strn(&pk, method, mlen);
	if (len == 0) {
		msgpack_pack_array(&pk, 0);
	} else {
		msgpack_pack_array(&pk, 1);
		aep_buf_append(&c->out, params, len);
	}
	queue_end(c);
	return 0;

err_after_alloc:
	aep_free(call);
	return rv;
}

/* ---- input -------------------------------------------------------------- */

/* The msgid of a request whose first bytes are [0, msgid, ...], read
 * without decoding the rest (which may be what broke a limit). */
static bool request_msgid(const char *buf, size_t len, uint64_t *msgid)
{
	const unsigned char *p = (const unsigned char *)buf;
	unsigned n;

	if (len < 3 || p[0] != 0x94 || p[1] != 0x00)
		return false;
	if (p[2] <= 0x7f) {
		*msgid = p[2];
		return true;
	}
	switch (p[2]) {
	case 0xcc: n = 1; break;
	case 0xcd: n = 2; break;
	case 0xce: n = 4; break;
	default: return false;
	}
	if (len < 3 + n)
		return false;
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | p[3 + i];
	*msgid = v;
	return true;
}

/* The peer broke the protocol: tell it why (to its msgid when we know
 * one, else in an "error" notification) and close. */
static void protocol_error(struct aep_rpc_conn *c, int code, bool has_msgid, uint64_t msgid,
			   const char *msg)
{
	if (has_msgid) {
		aep_rpc_reply_error(c, msgid, code, msg, NULL, 0);
	} else if (queue_begin(c, 16 + error_map_size(code, msg, 0)) == 0) {
		msgpack_packer pk;
		aep_packer_init(&pk, &c->out);
		msgpack_pack_array(&pk, 3);
		msgpack_pack_uint8(&pk, 2);
		aep_pack_str(&pk, "error");
		msgpack_pack_array(&pk, 1);
		pack_error_map(&pk, code, msg, NULL, 0);
		queue_end(c);
	}
	net__conn_fail(c, code, "%s sent a bad message: %s", c->peer, msg);
}

static bool is_msgid(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= UINT32_MAX;
}

static void deliver_response(struct aep_rpc_conn *c, const msgpack_object *a)
{
	struct net__call *call = calls_take(c, (uint32_t)a[1].via.u64);
	char msg[AEP_ERRMSG_MAX];
	struct aep_rpc_reply r = {0};

	/* Not ours (or already cancelled): nothing waits for it. */
	if (call == NULL)
		return;
	const msgpack_object *err = &a[2];
	if (err->type == MSGPACK_OBJECT_NIL) {
		r.result = &a[3];
	} else if (err->type == MSGPACK_OBJECT_STR) {
		r.code = AEP_EINTERNAL;
		snprintf(msg, sizeof(msg), "%.*s", (int)err->via.str.size, err->via.str.ptr);
	} else if (err->type == MSGPACK_OBJECT_MAP) {
		const msgpack_object *code = aep_mp_map_get(err, "code");
		const msgpack_object *m = aep_mp_map_get(err, "message");
		r.code = AEP_EINTERNAL;
		if (code != NULL && code->type == MSGPACK_OBJECT_STR)
			r.code = aep_err_from_code(code->via.str.ptr, code->via.str.size);
		if (r.code == AEP_OK)
			r.code = AEP_EINTERNAL;
		if (m != NULL && m->type == MSGPACK_OBJECT_STR)
			snprintf(msg, sizeof(msg), "%.*s", (int)m->via.str.size, m->via.str.ptr);
		else
			snprintf(msg, sizeof(msg), "%s", aep_err_code(r.code));
		r.details = aep_mp_map_get(err, "details");
	} else {
		r.code = AEP_EINTERNAL;
		snprintf(msg, sizeof(msg), "malformed error in response from %s", c->peer);
	}
	if (r.code != 0) {
		r.msg = msg;
		r.msg_len = strlen(msg);
	}
	call->cb(call->data, &r);
	aep_free(call);
}

int net__msg_parse(const msgpack_object *o, struct net__msg *m, const char **why)
{
	static const msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
	const msgpack_object *a;
	uint32_t n;

	memset(m, 0, sizeof(*m));
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 3) {
		*why = "message is not an RPC array";
		return AEP_EBADREQUEST;
	}
	a = o->via.array.ptr;
	n = o->via.array.size;
	if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 > 2) {
		*why = "unknown message type";
		return AEP_EBADREQUEST;
	}
	m->type = (unsigned)a[0].via.u64;
	switch (m->type) {
	case 0:
		if (n != 4 || !is_msgid(&a[1])) {
			*why = "request: expected [0, msgid, method, params]";
			return AEP_EBADREQUEST;
		}
		m->has_msgid = true;
		m->msgid = (uint32_t)a[1].via.u64;
		if (a[2].type != MSGPACK_OBJECT_STR) {
			*why = "request: method is not a string";
			return AEP_EBADREQUEST;
		}
		if (a[3].type != MSGPACK_OBJECT_ARRAY) {
			*why = "request: params is not an array";
			return AEP_EBADREQUEST;
		}
		if (a[3].via.array.size > 1) {
			*why = "request: params must hold one map, not several";
			return AEP_EBADREQUEST;
		}
		m->method = a[2].via.str.size > 0 ? a[2].via.str.ptr : "";
		m->method_len = a[2].via.str.size;
		m->params = a[3].via.array.size > 0 ? &a[3].via.array.ptr[0] : &nil;
		return 0;
	case 1:
		if (n != 4 || !is_msgid(&a[1])) {
			*why = "response: expected [1, msgid, error, result]";
			return AEP_EBADREQUEST;
		}
		m->has_msgid = true;
		m->msgid = (uint32_t)a[1].via.u64;
		m->error = &a[2];
		m->result = &a[3];
		return 0;
	default:
		if (n != 3 || a[1].type != MSGPACK_OBJECT_STR ||
		    a[2].type != MSGPACK_OBJECT_ARRAY) {
			*why = "notification: expected [2, method, params]";
			return AEP_EBADREQUEST;
		}
		m->method = a[1].via.str.size > 0 ? a[1].via.str.ptr : "";
		m->method_len = a[1].via.str.size;
		m->params = &a[2];
		return 0;
	}
}

static void dispatch(struct aep_rpc_conn *c, const msgpack_object *o)
{
	struct net__msg m;
	const char *why;

	if (net__msg_parse(o, &m, &why) != 0) {
		protocol_error(c, AEP_EBADREQUEST, m.has_msgid, m.msgid, why);
		return;
	}
	switch (m.type) {
	case 0:
		if (c->h.on_request == NULL) {
			aep_rpc_reply_error(c, m.msgid, AEP_ENOMETHOD, "this end serves no methods",
					    NULL, 0);
			return;
		}
		c->h.on_request(c, m.msgid, m.method, m.method_len, m.params, c->h_data);
		return;
	case 1: deliver_response(c, o->via.array.ptr); return;
	default:
		if (c->h.on_notify != NULL)
			c->h.on_notify(c, m.method, m.method_len, m.params, c->h_data);
		return;
	}
}

/* Dispatch every whole message in c->in. */
static void process_input(struct aep_rpc_conn *c)
{
	struct aep_error e = {0};
	msgpack_object obj;
	size_t used;

	aep_rpc_conn_ref(c);
	while (!c->closing && c->in_off < c->in.len) {
		const char *p = c->in.data + c->in_off;
		size_t n = c->in.len - c->in_off;
		int rv = aep_mp_check(p, n, &c->limits, &used, &e);
		if (rv == AEP_ECANCELED)
			break; /* an incomplete message: wait for more */
		if (rv != 0) {
			uint64_t msgid = 0;
			bool has = request_msgid(p, n, &msgid);
			protocol_error(c, rv, has, msgid, e.msg);
			break;
		}
		rv = aep_mp_unpack(p, used, &c->zone, &obj, &e);
		if (rv == AEP_ENOMEM) {
			net__conn_fail(c, rv, "%s: %s", c->peer, e.msg);
			break;
		}
		if (rv != 0) {
			protocol_error(c, rv, false, 0, e.msg);
			break;
		}
		c->in_off += used;
		dispatch(c, &obj);
		msgpack_zone_clear(&c->zone);
	}
	if (c->in_off == c->in.len) {
		aep_buf_reset(&c->in);
		if (c->in.cap > BUF_KEEP)
			aep_buf_free(&c->in);
	} else if (c->in_off > 0) {
		memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
		c->in.len -= c->in_off;
	}
	c->in_off = 0;
	aep_rpc_conn_unref(c);
}

static bool extract_identity(struct aep_rpc_conn *c)
{
	X509 *cert = SSL_get0_peer_certificate(c->ssl);
	if (cert == NULL || SSL_get_verify_result(c->ssl) != X509_V_OK)
		return true;
	X509_NAME *name = X509_get_subject_name(cert);
	int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if (i < 0)
		return true;
	ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
	unsigned char *utf8 = NULL;
	int n = ASN1_STRING_to_UTF8(&utf8, s);
	bool ok = true;
	if (n > 0 && memchr(utf8, 0, (size_t)n) == NULL) {
		c->identity = aep_strndup((const char *)utf8, (size_t)n);
		ok = c->identity != NULL;
	}
	OPENSSL_free(utf8);
	return ok;
}

static void become_ready(struct aep_rpc_conn *c)
{
	c->ready = true;
	uv_timer_stop(&c->timer);
	if (c->ops != NULL && c->ops->ready != NULL)
		c->ops->ready(c);
	if (!c->closing && c->out.len > 0)
		queue_end(c);
}

static void handshake_failed(struct aep_rpc_conn *c, int ssl_err)
{
	long verify = SSL_get_verify_result(c->ssl);
	struct aep_error e = {0};

	if (verify != X509_V_OK) {
		aep_errorf(&e, AEP_EUNAVAILABLE,
			   "tls handshake with %s: certificate verify failed: %s", c->peer,
			   X509_verify_cert_error_string(verify));
		ERR_clear_error();
	} else if (ssl_err == SSL_ERROR_SYSCALL || ssl_err == SSL_ERROR_SSL) {
		net__tls_error(&e, AEP_EUNAVAILABLE, "tls handshake");
		aep_error_prefix(&e, "%s", c->peer);
	} else {
		aep_errorf(&e, AEP_EUNAVAILABLE, "%s: tls handshake failed (%d)", c->peer, ssl_err);
	}
	/* Send our alert, if any, before closing; the handshake's failure is
	 * the reason to report, not a failure to send the alert. */
	drain_wbio(c);
	c->err = e;
	net__conn_fail(c, e.code, "%s", e.msg);
}

static void tls_input(struct aep_rpc_conn *c, const char *data, size_t n)
{
	bool peer_done = false;

	ERR_clear_error();
	if (BIO_write(c->rbio, data, (int)n) != (int)n) {
		net__conn_fail(c, AEP_ENOMEM, "%s: tls: out of memory", c->peer);
		return;
	}
	if (!c->ready) {
		int r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			int err = SSL_get_error(c->ssl, r);
			if (err == SSL_ERROR_WANT_READ) {
				if (drain_wbio(c) != 0)
					net__conn_fail(c, c->err.code, "%s", c->err.msg);
				return;
			}
			handshake_failed(c, err);
			return;
		}
		if (drain_wbio(c) != 0) {
			net__conn_fail(c, c->err.code, "%s", c->err.msg);
			return;
		}
		if (!extract_identity(c)) {
			net__conn_fail(c, AEP_ENOMEM, "%s: out of memory", c->peer);
			return;
		}
		become_ready(c);
		if (c->closing)
			return;
	}
	for (;;) {
		if (aep_buf_reserve(&c->in, SSL_READ_CHUNK) != 0) {
			net__conn_fail(c, AEP_ENOMEM, "%s: out of memory for input", c->peer);
			return;
		}
		size_t avail = c->in.cap - c->in.len;
		if (avail > INT_MAX)
			avail = INT_MAX;
		int r = SSL_read(c->ssl, c->in.data + c->in.len, (int)avail);
		if (r > 0) {
			c->in.len += (size_t)r;
			continue;
		}
		int err = SSL_get_error(c->ssl, r);
		if (err == SSL_ERROR_WANT_READ)
			break;
		if (err == SSL_ERROR_ZERO_RETURN) {
			peer_done = true;
			break;
		}
		struct aep_error e = {0};
		net__tls_error(&e, AEP_EIO, "tls");
		net__conn_fail(c, AEP_EIO, "%s: %s", c->peer, e.msg);
		return;
	}
	if (drain_wbio(c) != 0) {
		net__conn_fail(c, c->err.code, "%s", c->err.msg);
		return;
	}
	process_input(c);
	if (peer_done)
		net__conn_fail(c, AEP_EUNAVAILABLE, "%s closed the connection", c->peer);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct aep_rpc_conn *c = h->data;
	(void)suggested;

	if (c->ssl != NULL || c->closing) {
		*buf = uv_buf_init(read_buf, sizeof(read_buf));
		return;
	}
	/* Plaintext goes straight into the input buffer. */
	if (aep_buf_reserve(&c->in, READ_BUF_SIZE) != 0) {
		c->in.failed = false;
		*buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
		return;
	}
	size_t avail = c->in.cap - c->in.len;
	if (avail > UINT_MAX)
		avail = UINT_MAX;
	*buf = uv_buf_init(c->in.data + c->in.len, (unsigned)avail);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct aep_rpc_conn *c = s->data;

	if (nread == 0)
		return;
	if (c->closing) {
		/* Lingering: what the peer still sends is dropped. */
		if (nread < 0) {
			c->eof = true;
			close_handles(c);
		}
		return;
	}
	if (nread < 0) {
		c->eof = true;
		if (nread == UV_EOF)
			net__conn_fail(c, AEP_EUNAVAILABLE, "%s closed the connection", c->peer);
		else if (nread == UV_ENOBUFS)
			net__conn_fail(c, AEP_ENOMEM, "%s: out of memory for input", c->peer);
		else
			net__conn_fail(c, AEP_EIO, "read from %s: %s", c->peer,
				       uv_strerror((int)nread));
		return;
	}
	if (c->ssl == NULL) {
		c->in.len += (size_t)nread;
		process_input(c);
		return;
	}
	tls_input(c, buf->base, (size_t)nread);
}

static void resume_reading(struct aep_rpc_conn *c)
{
	c->paused = false;
	int rv = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
	if (rv < 0 && rv != UV_EALREADY)
		net__conn_fail(c, AEP_EIO, "read from %s: %s", c->peer, uv_strerror(rv));
}

/* ---- connection set-up and close --------------------------------------- */

static void timer_cb(uv_timer_t *t)
{
	struct aep_rpc_conn *c = t->data;

	if (c->closing) {
		close_handles(c); /* the peer did not close in time */
		return;
	}
	if (c->err.code != 0)
		net__conn_fail(c, c->err.code, "%s", c->err.msg);
	else if (c->is_server)
		net__conn_fail(c, AEP_ETIMEOUT, "%s: no TLS handshake in time", c->peer);
	else
		net__conn_fail(c, AEP_EUNAVAILABLE, "connect %s: timed out", c->peer);
}

/* Start reading and, with TLS, the handshake. */
static void start(struct aep_rpc_conn *c)
{
	c->tcp_up = true;
	uv_tcp_nodelay(&c->tcp, 1);
	/* A peer that vanished without a word is noticed eventually. */
	uv_tcp_keepalive(&c->tcp, 1, 60);
	int rv = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
	if (rv < 0) {
		net__conn_fail(c, AEP_EIO, "read from %s: %s", c->peer, uv_strerror(rv));
		return;
	}
	if (c->ssl == NULL) {
		become_ready(c);
		return;
	}
	if (!c->is_server) {
		ERR_clear_error();
		int r = SSL_do_handshake(c->ssl);
		int err = SSL_get_error(c->ssl, r);
		if (err != SSL_ERROR_WANT_READ) {
			handshake_failed(c, err);
			return;
		}
		if (drain_wbio(c) != 0)
			net__conn_fail(c, c->err.code, "%s", c->err.msg);
	}
}

void net__conn_accepted(struct aep_rpc_conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
		peer_name((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
	if (c->ssl != NULL)
		uv_timer_start(&c->timer, timer_cb, NET__HANDSHAKE_MS, 0);
	start(c);
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct aep_rpc_conn *c = req->data;

	if (status == UV_ECANCELED || c->closing)
		return;
	if (status < 0) {
		net__conn_fail(c, AEP_EUNAVAILABLE, "connect %s: %s", c->peer, uv_strerror(status));
		return;
	}
	start(c);
}

void net__conn_connect(struct aep_rpc_conn *c, const struct sockaddr *sa, unsigned timeout_ms)
{
	peer_name(sa, c->peer, sizeof(c->peer));
	int rv = uv_tcp_connect(&c->connect_req, &c->tcp, sa, connect_cb);
	if (rv < 0) {
		/* Reported from the loop, never from inside this call. */
		aep_errorf(&c->err, AEP_EUNAVAILABLE, "connect %s: %s", c->peer, uv_strerror(rv));
		timeout_ms = 0;
	}
	uv_timer_start(&c->timer, timer_cb, timeout_ms, 0);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
	struct aep_rpc_conn *c = req->data;

	if (c->handles_closing)
		return;
	if (status < 0 || c->eof)
		close_handles(c);
	/* Otherwise wait (reading) for the peer's end of file, or the timer. */
}

static void begin_shutdown(struct aep_rpc_conn *c)
{
	if (!c->tcp_up) {
		close_handles(c);
		return;
	}
	if (flush(c) != 0) {
		close_handles(c);
		return;
	}
	if (c->ssl != NULL && c->ready) {
		ERR_clear_error();
		SSL_shutdown(c->ssl); /* queues close_notify */
		ERR_clear_error();
		if (flush(c) != 0) {
			close_handles(c);
			return;
		}
	}
	if (!c->eof) {
		int rv = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
		if (rv < 0 && rv != UV_EALREADY) {
			close_handles(c);
			return;
		}
	}
	if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, shutdown_cb) < 0) {
		close_handles(c);
		return;
	}
	uv_timer_start(&c->timer, timer_cb, NET__LINGER_MS, 0);
}

void net__conn_fail(struct aep_rpc_conn *c, int code, const char *fmt, ...)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->err.code == 0) {
		va_list ap;
		char msg[AEP_ERRMSG_MAX];
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		aep_errorf(&c->err, code, "%s", msg);
	}
	aep_rpc_conn_ref(c);
	uv_timer_stop(&c->timer);
	uv_prepare_stop(&c->flusher);
	if (c->ops != NULL && c->ops->closing != NULL)
		c->ops->closing(c);
	calls_cancel_all(c);
	/* A connection that never came up was never shown to the handler. */
	if (c->h.on_close != NULL && c->ready)
		c->h.on_close(c, c->h_data);
	begin_shutdown(c);
	aep_rpc_conn_unref(c);
}

/* ---- accessors ---------------------------------------------------------- */

const char *aep_rpc_conn_identity(const struct aep_rpc_conn *c)
{
	return c->identity;
}

const char *aep_rpc_conn_peer(const struct aep_rpc_conn *c)
{
	return c->peer;
}

void aep_rpc_conn_set_data(struct aep_rpc_conn *c, void *data)
{
	c->user = data;
}

void *aep_rpc_conn_get_data(const struct aep_rpc_conn *c)
{
	return c->user;
}

bool aep_rpc_conn_closed(const struct aep_rpc_conn *c)
{
	return c->closing;
}

void aep_rpc_conn_close(struct aep_rpc_conn *c)
{
	if (c != NULL)
		net__conn_fail(c, AEP_ECANCELED, "connection to %s closed", c->peer);
}
