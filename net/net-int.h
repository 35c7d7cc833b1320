/* net internals shared by conn.c, server.c, client.c and tls.c. Not a face:
 * nothing outside net/ includes this. */
#ifndef AEP_NET_INT_H
#define AEP_NET_INT_H

#include <openssl/ssl.h>

#include "net/net.h"

/* Coalesced output is flushed once per loop iteration, or at once when it
 * grows past this. */
#define NET__FLUSH_BYTES (64u << 10)
/* A server connection whose queued output passes this stops reading
 * until the peer has taken most of it (the client side never pauses, so
 * two AEP ends cannot both stop reading). */
#define NET__PAUSE_BYTES  (8u << 20)
#define NET__RESUME_BYTES (1u << 20)
/* Time a server connection gets to finish its TLS handshake. */
#define NET__HANDSHAKE_MS 10000
/* After an error reply, or on close, we stop sending and wait this long at
 * most for the peer to close its side, so that what we sent last is not
 * destroyed by a reset caused by bytes we never read. */
#define NET__LINGER_MS 2000

struct aep_tls {
	SSL_CTX *ctx;
	bool server;
};

/* Fill @e with @code, "@what: <the OpenSSL error queue>"; clears the queue. */
int net__tls_error(struct aep_error *e, int code, const char *what);

/* Split "host:port" / "[v6]:port" into @host (no brackets) and @port.
 * Returns AEP_EINVALID with a message on a bad address. */
int net__addr_split(const char *addr, char *host, size_t host_size, unsigned *port,
		    struct aep_error *e);

/* An outgoing call waiting for its response. */
struct net__call {
	uint32_t msgid;
	aep_rpc_reply_cb cb;
	void *data;
	struct net__call *next; /* hash bucket chain */
};

/* What the owner of a connection (server or client) hears about it. */
struct net__owner_ops {
	/* The TLS handshake is done (plaintext: the TCP connection is up). */
	void (*ready)(struct aep_rpc_conn *c);
	/* Closing has begun (c->err says why); called before the pending
	 * calls are cancelled and before the handler's on_close. */
	void (*closing)(struct aep_rpc_conn *c);
	/* Every handle has closed; the owner drops its reference here. */
	void (*closed)(struct aep_rpc_conn *c);
};

struct aep_rpc_conn {
	uv_tcp_t tcp;
	uv_prepare_t flusher; /* flushes coalesced output before the loop polls */
	uv_timer_t timer;     /* connect/handshake timeout, then linger on close */
	uv_connect_t connect_req;
	uv_shutdown_t shutdown_req;
	uv_loop_t *loop;

	unsigned refs;
	unsigned open_handles;
	bool is_server;
	bool tcp_up;	      /* accepted, or connect succeeded */
	bool ready;	      /* handshake done: output may be written */
	bool closing;	      /* aep_rpc_conn_closed() */
	bool handles_closing; /* uv_close issued */
	bool eof;	      /* the peer closed its side or the read failed */
	bool paused;	      /* reading stopped for back-pressure */

	SSL *ssl;  /* NULL: plaintext */
	BIO *rbio; /* network -> SSL (owned by ssl) */
	BIO *wbio; /* SSL -> network (owned by ssl) */

	struct aep_mp_limits limits;
	struct aep_buf in; /* plaintext received, not yet framed */
	size_t in_off;
	struct aep_buf out; /* encoded messages not yet given to SSL/uv_write */
	size_t writing;	    /* bytes in uv_write requests in flight */
	msgpack_zone zone;

	struct net__call **calls; /* hash table of calls in flight, by msgid */
	size_t calls_cap;	  /* buckets: 0 or a power of two */
	size_t ncalls;
	uint32_t next_msgid;

	struct aep_rpc_handler h;
	void *h_data;
	void *user; /* aep_rpc_conn_set_data */

	const struct net__owner_ops *ops;
	void *owner;
	struct aep_rpc_conn *prev, *next; /* the owner's list */
	int cancel_code;		  /* given to calls cancelled by close */
	struct aep_error err;		  /* why the connection closed */

	char *identity;
	char peer[64];
};

/* A new connection on @loop, not yet connected. @tls NULL: plaintext.
 * @verify_host (client side, may be NULL) is the name or IP address the
 * server's certificate must match. The caller holds the one reference. */
int net__conn_new(uv_loop_t *loop, struct aep_tls *tls, bool is_server, const char *verify_host,
		  const struct aep_mp_limits *limits, const struct aep_rpc_handler *h, void *h_data,
		  const struct net__owner_ops *ops, void *owner, struct aep_rpc_conn **out,
		  struct aep_error *e);
/* Server side, after uv_accept() into c->tcp: start reading and the
 * handshake. On failure the connection is closing (c->err says why). */
void net__conn_accepted(struct aep_rpc_conn *c);
/* Client side: connect to @sa; the connection becomes ready (ops->ready)
 * or closes with AEP_EUNAVAILABLE within @timeout_ms. */
void net__conn_connect(struct aep_rpc_conn *c, const struct sockaddr *sa, unsigned timeout_ms);
/* Close with a reason (first reason wins). */
void net__conn_fail(struct aep_rpc_conn *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One decoded msgpack-RPC message; the pointers borrow from the object. */
struct net__msg {
	unsigned type; /* 0 request, 1 response, 2 notification */
	bool has_msgid;
	uint32_t msgid;
	const char *method; /* request, notification; never NULL ("" for msgpack-c's empty str) */
	size_t method_len;
	/* Request: the first param (nil when params is []); notification:
	 * the whole params array. */
	const msgpack_object *params;
	const msgpack_object *error, *result; /* response */
};

/* Check the shape of one decoded message (conn.c's dispatch uses it; the
 * fuzzer drives it directly). Returns 0 with @m filled, or
 * AEP_EBADREQUEST with a static message in *@why; then m->has_msgid tells
 * whether the fault is in a request whose msgid could be read (the error
 * goes to that msgid). Allocates nothing. */
int net__msg_parse(const msgpack_object *o, struct net__msg *m, const char **why);

#endif /* AEP_NET_INT_H */
