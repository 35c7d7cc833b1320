/* net: the wire. MessagePack-RPC (request [0,id,method,params], response
 * [1,id,error,result], notification [2,method,params]) over TLS 1.3 on
 * libuv streams, in both directions on one connection: either end may
 * call, reply and notify.
 *
 * Framing: a connection is one stream of msgpack objects. Every incoming
 * object is bounded with aep_mp_check() (size, depth, container lengths)
 * before msgpack-c unpacks it; a peer that breaks a limit gets a TooLarge
 * error response, one that sends something that is not an RPC message
 * gets BadRequest, and the connection is closed. When no msgid could be
 * read, the error goes out as a notification [2, "error", [{code, message}]].
 *
 * Output is coalesced: messages are encoded into the connection's buffer
 * and flushed once per loop iteration (before the loop polls) or as soon
 * as 64 KiB wait, so that many replies share one TLS record and write.
 *
 * Ownership (libuv rules): the caller owns nothing it did not allocate; a
 * callback fires exactly once, with AEP_ECANCELED when the connection or
 * client closes first. Connections are reference-counted so that an
 * answer computed after the peer left is simply dropped. */
#ifndef AEP_NET_H
#define AEP_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>
#include <uv.h>

#include "lib/lib.h"

/* ---- TLS ---------------------------------------------------------------- */

struct aep_tls;

/* A server context: our certificate and key; client certificates are
 * requested and, when presented, verified against @ca_file. TLS 1.3 only. */
int aep_tls_server_new(const char *ca_file, const char *cert_file, const char *key_file,
		       struct aep_tls **out, struct aep_error *e);
/* A client context: servers are verified against @ca_file with host name
 * (or IP address) checking against the host of the address dialled;
 * @cert_file/@key_file (may be NULL) are our client certificate. */
int aep_tls_client_new(const char *ca_file, const char *cert_file, const char *key_file,
		       struct aep_tls **out, struct aep_error *e);
void aep_tls_free(struct aep_tls *t);

/* "host:port" (IPv4, [IPv6]:port, or a host name such as "localhost",
 * resolved now with getaddrinfo, IPv4 first) into a sockaddr. Returns
 * AEP_EINVALID with a message on a bad address. */
int aep_addr_parse(const char *addr, struct sockaddr_storage *out, struct aep_error *e);

/* ---- connections -------------------------------------------------------- */

struct aep_rpc_conn;

/* The result of a call: @code 0 and @result set, or an error code with
 * @msg (NUL-terminated, at most AEP_ERRMSG_MAX bytes) and @details when
 * the peer sent an error map with "details". An error map's code string
 * maps through aep_err_from_code(); an error that is a plain string gives
 * AEP_EINTERNAL with that string. Everything lives only for the duration
 * of the callback. */
struct aep_rpc_reply {
	int code;
	const char *msg;
	size_t msg_len;
	const msgpack_object *details; /* NULL or the error's details */
	const msgpack_object *result;  /* NULL on error */
};
typedef void (*aep_rpc_reply_cb)(void *data, const struct aep_rpc_reply *reply);

struct aep_rpc_handler {
	/* A request: answer later (or now) with aep_rpc_reply*(c, msgid, ...);
	 * take a reference on @c to answer after returning. @params is the
	 * first element of the request's params array (nil when it is empty);
	 * it lives only for the duration of the call. NULL: every request is
	 * answered MethodNotFound. */
	void (*on_request)(struct aep_rpc_conn *c, uint64_t msgid, const char *method,
			   size_t method_len, const msgpack_object *params, void *data);
	/* A notification; @params is the whole params array. */
	void (*on_notify)(struct aep_rpc_conn *c, const char *method, size_t method_len,
			  const msgpack_object *params, void *data);
	/* The connection closed (peer left, error, or aep_rpc_conn_close);
	 * only for connections that completed their handshake, so once for
	 * every @c the handler was ever given. After this, replies and
	 * notifications on @c are dropped; the server's own reference is
	 * released once its handles have closed. */
	void (*on_close)(struct aep_rpc_conn *c, void *data);
};

struct aep_rpc_conn *aep_rpc_conn_ref(struct aep_rpc_conn *c);
void aep_rpc_conn_unref(struct aep_rpc_conn *c);
/* The peer certificate's subject CN ("admin", "system:node:n1"), or NULL
 * when the peer presented none. */
const char *aep_rpc_conn_identity(const struct aep_rpc_conn *c);
/* "ip:port" of the peer. */
const char *aep_rpc_conn_peer(const struct aep_rpc_conn *c);
void aep_rpc_conn_set_data(struct aep_rpc_conn *c, void *data);
void *aep_rpc_conn_get_data(const struct aep_rpc_conn *c);
bool aep_rpc_conn_closed(const struct aep_rpc_conn *c);
void aep_rpc_conn_close(struct aep_rpc_conn *c);

/* Answer request @msgid with a pre-encoded msgpack result (exactly one
 * object; len 0 sends nil). Returns 0; AEP_ECANCELED when @c is closed
 * (the answer is dropped, harmlessly); AEP_ENOMEM, after which @c closes
 * (from the loop, not inside this call) since the peer would otherwise
 * wait forever. The same holds for aep_rpc_reply_error(). */
int aep_rpc_reply(struct aep_rpc_conn *c, uint64_t msgid, const char *result, size_t len);
/* Answer with an error map {code, message} (+ details when non-NULL: a
 * pre-encoded msgpack map, e.g. {leader: "127.0.0.1:7001"}). */
int aep_rpc_reply_error(struct aep_rpc_conn *c, uint64_t msgid, int code, const char *msg,
			const char *details, size_t details_len);
/* Send [2, method, params]: @params is the whole pre-encoded params
 * array (e.g. [{watch, type, object}, ...]); len 0 sends []. */
int aep_rpc_notify(struct aep_rpc_conn *c, const char *method, const char *params, size_t len);
/* Call a method on the peer: @params is the one pre-encoded parameter (a
 * map), sent as [params]; len 0 sends []. @cb fires exactly once, never
 * inside this call: with the result, the peer's error, or c's cancel code
 * when @c closes first (AEP_ECANCELED on server connections,
 * AEP_EUNAVAILABLE on a client's). A non-zero return (AEP_ECANCELED,
 * AEP_ENOMEM) means @cb will not fire. */
int aep_rpc_conn_call(struct aep_rpc_conn *c, const char *method, const char *params, size_t len,
		      aep_rpc_reply_cb cb, void *data);
/* Bytes queued for sending and not yet written (for back-pressure). */
size_t aep_rpc_conn_pending(const struct aep_rpc_conn *c);

/* ---- server ------------------------------------------------------------- */

struct aep_rpc_server;

/* Listen on @addr ("127.0.0.1:7001"; port 0 picks one). @tls NULL means
 * plaintext (tests only). @limits NULL: aep_mp_default_limits. The
 * handler gets @data; per-connection data goes in aep_rpc_conn_set_data().
 * A connection has 10 s to finish its TLS handshake. On failure the loop
 * must still run once to release the listener's handle. */
int aep_rpc_server_start(uv_loop_t *loop, const char *addr, struct aep_tls *tls,
			 const struct aep_mp_limits *limits, const struct aep_rpc_handler *h,
			 void *data, struct aep_rpc_server **out, struct aep_error *e);
/* The bound port (useful with port 0). */
int aep_rpc_server_port(const struct aep_rpc_server *s);
/* Stop listening and close every connection (their calls in flight get
 * AEP_ECANCELED, their handlers on_close); @cb once the listener and every
 * connection's handles have closed. A connection waits at most 2 s for
 * its peer to take the last bytes and close. Call once. */
void aep_rpc_server_close(struct aep_rpc_server *s, void (*cb)(void *data), void *data);

/* ---- client ------------------------------------------------------------- */

/* A client over a list of servers. It connects lazily to the first that
 * answers; when a call is answered NotLeader with details.leader, it
 * reconnects there and resends that call (at most 5 redirects). A call in
 * flight when the connection breaks gets AEP_EUNAVAILABLE (its outcome is
 * unknown); a call issued while disconnected triggers a reconnect that
 * tries each server in turn. */
struct aep_rpc_client;

struct aep_rpc_client_config {
	const char *servers;		    /* "127.0.0.1:7001,127.0.0.1:7002" */
	struct aep_tls *tls;		    /* NULL: plaintext */
	const struct aep_mp_limits *limits; /* NULL: defaults */
	unsigned connect_timeout_ms;	    /* 0: 5000 */
	/* Notifications from the server (watch events). */
	void (*on_notify)(void *data, const char *method, size_t method_len,
			  const msgpack_object *params);
	/* The connection was lost; watches on it are gone. */
	void (*on_disconnect)(void *data);
	/* Requests from the server on the client's connection (the leader
	 * calls node agents this way); answer with aep_rpc_reply*(@c, @msgid).
	 * NULL: every request is answered MethodNotFound. */
	void (*on_request)(void *data, struct aep_rpc_conn *c, uint64_t msgid, const char *method,
			   size_t method_len, const msgpack_object *params);
	void *data;
};

int aep_rpc_client_new(uv_loop_t *loop, const struct aep_rpc_client_config *cfg,
		       struct aep_rpc_client **out, struct aep_error *e);
/* @params as for aep_rpc_conn_call(). @cb fires exactly once; a non-zero
 * return (AEP_ECANCELED when closing, AEP_ENOMEM) means it will not. It
 * fires inside this call only when no server address resolves. */
int aep_rpc_call(struct aep_rpc_client *c, const char *method, const char *params, size_t len,
		 aep_rpc_reply_cb cb, void *data);
/* The address of the server currently connected, or NULL. */
const char *aep_rpc_client_server(const struct aep_rpc_client *c);
/* Every call still open gets AEP_ECANCELED (queued ones at once); @cb
 * once every connection has closed. Call once. */
void aep_rpc_client_close(struct aep_rpc_client *c, void (*cb)(void *data), void *data);

/* Blocking convenience for command-line use: run @loop until the call
 * completes or @timeout_ms passes (AEP_ETIMEOUT; the call is abandoned,
 * its late answer dropped). On success the result, re-encoded as msgpack,
 * is appended to @result (may be NULL). Not from inside a loop callback. */
int aep_rpc_call_sync(uv_loop_t *loop, struct aep_rpc_client *c, const char *method,
		      const char *params, size_t len, unsigned timeout_ms, struct aep_buf *result,
		      struct aep_error *e);

#endif /* AEP_NET_H */
