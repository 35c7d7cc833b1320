/* net: the wire. MessagePack-RPC (request [0,id,method,params], response
 * [1,id,error,result], notification [2,method,params]) over TLS 1.3 on
 * libuv streams, in both directions on one connection: either end may
 * call, reply and notify.
 *
 * Framing: a connection is one stream of msgpack objects. Every incoming
 * object is bounded with aep_mp_check() (size, depth, container lengths)
 * before msgpack-c unpacks it; a peer that breaks a limit gets an error
 * response (when a msgid could be read) and the connection is closed.
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
 * (or IP address) checking; @cert_file/@key_file (may be NULL) are our
 * client certificate. */
int aep_tls_client_new(const char *ca_file, const char *cert_file, const char *key_file,
		       struct aep_tls **out, struct aep_error *e);
void aep_tls_free(struct aep_tls *t);

/* "host:port" (IPv4, [IPv6]:port or a name that resolves to loopback) into
 * a sockaddr. Returns AEP_EINVALID with a message on a bad address. */
int aep_addr_parse(const char *addr, struct sockaddr_storage *out, struct aep_error *e);

/* ---- connections -------------------------------------------------------- */

struct aep_rpc_conn;

/* The result of a call: @code 0 and @result set, or an error code with
 * @msg (and @details when the peer sent an error map with "details"). The
 * objects live only for the duration of the callback. */
struct aep_rpc_reply {
	int code;
	const char *msg;
	size_t msg_len;
	const msgpack_object *details; /* NULL or the error's details */
	const msgpack_object *result;  /* NULL on error */
};
typedef void (*aep_rpc_reply_cb)(void *data, const struct aep_rpc_reply *reply);

struct aep_rpc_handler {
	/* A request: answer later (or now) with aep_rpc_reply*(c, msgid, ...).
	 * @params lives only for the duration of the call. */
	void (*on_request)(struct aep_rpc_conn *c, uint64_t msgid, const char *method,
			   size_t method_len, const msgpack_object *params, void *data);
	void (*on_notify)(struct aep_rpc_conn *c, const char *method, size_t method_len,
			  const msgpack_object *params, void *data);
	/* The connection closed (peer left, error, or aep_rpc_conn_close). After
	 * this, replies and notifications on @c are dropped; the last reference
	 * is released by the owner. */
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

/* Answer request @msgid with a pre-encoded msgpack result. */
int aep_rpc_reply(struct aep_rpc_conn *c, uint64_t msgid, const char *result, size_t len);
/* Answer with an error map {code, message} (+ details when non-NULL: a
 * pre-encoded msgpack map, e.g. {leader: "127.0.0.1:7001"}). */
int aep_rpc_reply_error(struct aep_rpc_conn *c, uint64_t msgid, int code, const char *msg,
			const char *details, size_t details_len);
int aep_rpc_notify(struct aep_rpc_conn *c, const char *method, const char *params,
		   size_t len);
/* Call a method on the peer. */
int aep_rpc_conn_call(struct aep_rpc_conn *c, const char *method, const char *params,
		      size_t len, aep_rpc_reply_cb cb, void *data);
/* Bytes queued for sending and not yet written (for back-pressure). */
size_t aep_rpc_conn_pending(const struct aep_rpc_conn *c);

/* ---- server ------------------------------------------------------------- */

struct aep_rpc_server;

/* Listen on @addr ("127.0.0.1:7001"; port 0 picks one). @tls NULL means
 * plaintext (tests only). */
int aep_rpc_server_start(uv_loop_t *loop, const char *addr, struct aep_tls *tls,
			 const struct aep_mp_limits *limits, const struct aep_rpc_handler *h,
			 void *data, struct aep_rpc_server **out, struct aep_error *e);
/* The bound port (useful with port 0). */
int aep_rpc_server_port(const struct aep_rpc_server *s);
/* Stop listening and close every connection; @cb once all are closed. */
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
	const char *servers; /* "127.0.0.1:7001,127.0.0.1:7002" */
	struct aep_tls *tls; /* NULL: plaintext */
	const struct aep_mp_limits *limits; /* NULL: defaults */
	unsigned connect_timeout_ms;        /* 0: 5000 */
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
int aep_rpc_call(struct aep_rpc_client *c, const char *method, const char *params, size_t len,
		 aep_rpc_reply_cb cb, void *data);
/* The address of the server currently connected, or NULL. */
const char *aep_rpc_client_server(const struct aep_rpc_client *c);
void aep_rpc_client_close(struct aep_rpc_client *c, void (*cb)(void *data), void *data);

/* Blocking convenience for command-line use: run @loop until the call
 * completes or @timeout_ms passes. On success @result receives the result
 * re-encoded as msgpack bytes. */
int aep_rpc_call_sync(uv_loop_t *loop, struct aep_rpc_client *c, const char *method,
		      const char *params, size_t len, unsigned timeout_ms, struct aep_buf *result,
		      struct aep_error *e);

#endif /* AEP_NET_H */
