/* net: MessagePack-RPC over TLS and plaintext, end to end on one loop.
 *
 * The test makes its own throwaway PKI (EC P-256) in a temporary
 * directory: a CA, a server certificate for IP 127.0.0.1, a client
 * certificate "admin", and a second, unrelated CA with a client
 * certificate "rogue". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/lib.h"
#include "net/net.h"

/* ---- PKI ---------------------------------------------------------------- */

static char dir[64];

static char *path(const char *name)
{
	static char bufs[8][128];
	static int i;
	char *p = bufs[i++ % 8];
	snprintf(p, 128, "%s/%s", dir, name);
	return p;
}

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, bool ca,
		       const char *san)
{
	static long serial = 1;
	X509 *x = X509_new();
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name);
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
	add_ext(x, &ctx, NID_subject_key_identifier, "hash");
	if (ca) {
		add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		add_ext(x, &ctx, NID_basic_constraints, "CA:FALSE");
		add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
		add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature");
		add_ext(x, &ctx, NID_ext_key_usage, "serverAuth,clientAuth");
	}
	if (san != NULL)
		add_ext(x, &ctx, NID_subject_alt_name, san);
	assert_true(X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) > 0);
	return x;
}

static void write_pem(const char *name, X509 *x, EVP_PKEY *key)
{
	char n[64];
	snprintf(n, sizeof(n), "%s.crt", name);
	FILE *f = fopen(path(n), "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	fclose(f);
	if (key == NULL)
		return;
	snprintf(n, sizeof(n), "%s.key", name);
	f = fopen(path(n), "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
}

static const char *pki_files[] = {"ca.crt",    "server.crt", "server.key", "admin.crt",
				  "admin.key", "other.crt",  "rogue.crt",  "rogue.key"};

static int pki_setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/aep-net-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	EVP_PKEY *ca_key = EVP_EC_gen("P-256");
	EVP_PKEY *srv_key = EVP_EC_gen("P-256");
	EVP_PKEY *adm_key = EVP_EC_gen("P-256");
	EVP_PKEY *oca_key = EVP_EC_gen("P-256");
	EVP_PKEY *rog_key = EVP_EC_gen("P-256");
	X509 *ca = make_cert("test-ca", ca_key, NULL, NULL, true, NULL);
	X509 *srv = make_cert("server", srv_key, ca, ca_key, false, "IP:127.0.0.1");
	X509 *adm = make_cert("admin", adm_key, ca, ca_key, false, NULL);
	X509 *oca = make_cert("other-ca", oca_key, NULL, NULL, true, NULL);
	X509 *rog = make_cert("rogue", rog_key, oca, oca_key, false, NULL);
	write_pem("ca", ca, NULL);
	write_pem("server", srv, srv_key);
	write_pem("admin", adm, adm_key);
	write_pem("other", oca, NULL);
	write_pem("rogue", rog, rog_key);
	X509 *certs[] = {ca, srv, adm, oca, rog};
	EVP_PKEY *keys[] = {ca_key, srv_key, adm_key, oca_key, rog_key};
	for (int i = 0; i < 5; i++) {
		X509_free(certs[i]);
		EVP_PKEY_free(keys[i]);
	}
	return 0;
}

static int pki_teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(pki_files) / sizeof(pki_files[0]); i++)
		unlink(path(pki_files[i]));
	rmdir(dir);
	return 0;
}

/* ---- loop helpers ------------------------------------------------------- */

static void expire_cb(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

/* Run @loop until *@flag is true; fails the test after @ms. */
static void run_until(uv_loop_t *loop, const bool *flag, unsigned ms)
{
	uv_timer_t t;
	bool expired = false;
	uv_timer_init(loop, &t);
	t.data = &expired;
	uv_timer_start(&t, expire_cb, ms, 0);
	while (!*flag && !expired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	assert_true(*flag);
}

static void set_flag(void *data)
{
	*(bool *)data = true;
}

/* ---- the test server ---------------------------------------------------- */

enum srv_mode { SRV_NORMAL, SRV_NOTLEADER };

struct srv {
	struct aep_rpc_server *s;
	int port;
	char addr[64];
	enum srv_mode mode;
	char leader[64]; /* SRV_NOTLEADER: where to send the client */
	int requests;
	int closes;
	/* "defer": answered in reverse order once three have come */
	struct aep_rpc_conn *deferred_conn;
	uint64_t deferred[3];
	int64_t deferred_val[3];
	int ndeferred;
	/* "hold": never answered; the server calls the client back instead */
	struct aep_rpc_conn *held;
	int held_cb_count;
	int held_cb_code;
	char last_identity[64];
	bool identity_seen;
};

static void pack_reply_obj(struct aep_rpc_conn *c, uint64_t msgid, const msgpack_object *o)
{
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	if (msgpack_pack_object(&pk, *o) != 0 || b.failed) {
		aep_rpc_reply_error(c, msgid, AEP_ENOMEM, "out of memory", NULL, 0);
	} else {
		aep_rpc_reply(c, msgid, b.data, b.len);
	}
	aep_buf_free(&b);
}

struct callback_ctx {
	struct aep_rpc_conn *c;
	uint64_t msgid;
};

static void callback_reply(void *data, const struct aep_rpc_reply *r)
{
	struct callback_ctx *ctx = data;
	if (r->code == 0)
		pack_reply_obj(ctx->c, ctx->msgid, r->result);
	else
		aep_rpc_reply_error(ctx->c, ctx->msgid, r->code, r->msg, NULL, 0);
	aep_rpc_conn_unref(ctx->c);
	free(ctx);
}

static void held_call_cb(void *data, const struct aep_rpc_reply *r)
{
	struct srv *s = data;
	s->held_cb_count++;
	s->held_cb_code = r->code;
}

static bool is(const char *m, size_t n, const char *s)
{
	return strlen(s) == n && memcmp(m, s, n) == 0;
}

static void srv_request(struct aep_rpc_conn *c, uint64_t msgid, const char *method, size_t n,
			const msgpack_object *params, void *data)
{
	struct srv *s = data;
	s->requests++;
	if (s->mode == SRV_NOTLEADER) {
		struct aep_buf d;
		msgpack_packer pk;
		aep_buf_init(&d);
		aep_packer_init(&pk, &d);
		msgpack_pack_map(&pk, 1);
		aep_pack_str(&pk, "leader");
		aep_pack_str(&pk, s->leader);
		aep_rpc_reply_error(c, msgid, AEP_ENOTLEADER, "not the leader", d.data, d.len);
		aep_buf_free(&d);
		return;
	}
	if (is(method, n, "echo")) {
		pack_reply_obj(c, msgid, params);
	} else if (is(method, n, "whoami")) {
		const char *id = aep_rpc_conn_identity(c);
		s->identity_seen = true;
		snprintf(s->last_identity, sizeof(s->last_identity), "%s", id ? id : "(none)");
		struct aep_buf b = {0};
		msgpack_packer pk;
		aep_packer_init(&pk, &b);
		if (id != NULL)
			aep_pack_str(&pk, id);
		else
			msgpack_pack_nil(&pk);
		aep_rpc_reply(c, msgid, b.data, b.len);
		aep_buf_free(&b);
	} else if (is(method, n, "defer")) {
		assert_true(s->ndeferred < 3);
		if (s->deferred_conn == NULL)
			s->deferred_conn = aep_rpc_conn_ref(c);
		s->deferred[s->ndeferred] = msgid;
		s->deferred_val[s->ndeferred] = params->via.i64;
		s->ndeferred++;
		if (s->ndeferred == 3) {
			for (int i = 2; i >= 0; i--) {
				struct aep_buf b = {0};
				msgpack_packer pk;
				aep_packer_init(&pk, &b);
				msgpack_pack_int64(&pk, s->deferred_val[i] * 10);
				assert_int_equal(
				    aep_rpc_reply(s->deferred_conn, s->deferred[i], b.data, b.len),
				    0);
				aep_buf_free(&b);
			}
			aep_rpc_conn_unref(s->deferred_conn);
			s->deferred_conn = NULL;
			s->ndeferred = 0;
		}
	} else if (is(method, n, "notify")) {
		struct aep_buf b = {0};
		msgpack_packer pk;
		aep_packer_init(&pk, &b);
		msgpack_pack_array(&pk, 1);
		msgpack_pack_object(&pk, *params);
		aep_rpc_notify(c, "event", b.data, b.len);
		aep_buf_free(&b);
		aep_rpc_reply(c, msgid, "\x80", 1);
	} else if (is(method, n, "flood")) {
		/* 100 notifications of 100 KiB: far more than one flush. */
		static char blob[100 << 10];
		struct aep_buf b = {0};
		msgpack_packer pk;
		aep_packer_init(&pk, &b);
		for (int i = 0; i < 100; i++) {
			aep_buf_reset(&b);
			msgpack_pack_array(&pk, 1);
			msgpack_pack_map(&pk, 2);
			aep_pack_str(&pk, "n");
			msgpack_pack_int(&pk, i);
			aep_pack_str(&pk, "blob");
			msgpack_pack_bin(&pk, sizeof(blob));
			msgpack_pack_bin_body(&pk, blob, sizeof(blob));
			assert_int_equal(aep_rpc_notify(c, "event", b.data, b.len), 0);
		}
		/* Much is still waiting for the socket. */
		assert_true(aep_rpc_conn_pending(c) > (1u << 20));
		aep_buf_free(&b);
		aep_rpc_reply(c, msgid, NULL, 0);
	} else if (is(method, n, "callback")) {
		struct callback_ctx *ctx = malloc(sizeof(*ctx));
		ctx->c = aep_rpc_conn_ref(c);
		ctx->msgid = msgid;
		struct aep_buf b = {0};
		msgpack_packer pk;
		aep_packer_init(&pk, &b);
		msgpack_pack_object(&pk, *params);
		assert_int_equal(aep_rpc_conn_call(c, "ping", b.data, b.len, callback_reply, ctx),
				 0);
		aep_buf_free(&b);
	} else if (is(method, n, "hold")) {
		if (s->held == NULL)
			s->held = aep_rpc_conn_ref(c);
		assert_int_equal(aep_rpc_conn_call(c, "hold", NULL, 0, held_call_cb, s), 0);
	} else {
		aep_rpc_reply_error(c, msgid, AEP_ENOMETHOD, "no such method", NULL, 0);
	}
}

static void srv_close(struct aep_rpc_conn *c, void *data)
{
	struct srv *s = data;
	(void)c;
	s->closes++;
}

static const struct aep_rpc_handler srv_handler = {
    .on_request = srv_request,
    .on_close = srv_close,
};

static void srv_start(uv_loop_t *loop, struct srv *s, struct aep_tls *tls,
		      const struct aep_mp_limits *lim)
{
	struct aep_error e = {0};
	int rv = aep_rpc_server_start(loop, "127.0.0.1:0", tls, lim, &srv_handler, s, &s->s, &e);
	if (rv != 0)
		fail_msg("server start: %s", e.msg);
	s->port = aep_rpc_server_port(s->s);
	assert_true(s->port > 0);
	snprintf(s->addr, sizeof(s->addr), "127.0.0.1:%d", s->port);
}

static void srv_stop(uv_loop_t *loop, struct srv *s)
{
	bool done = false;
	if (s->held != NULL) {
		aep_rpc_conn_unref(s->held);
		s->held = NULL;
	}
	aep_rpc_server_close(s->s, set_flag, &done);
	run_until(loop, &done, 5000);
}

/* ---- the test client ---------------------------------------------------- */

struct call_result {
	int count; /* callbacks: must end at exactly 1 */
	int code;
	char msg[AEP_ERRMSG_MAX];
	struct aep_buf result;
	bool done;
};

static void call_cb(void *data, const struct aep_rpc_reply *r)
{
	struct call_result *res = data;
	res->count++;
	res->done = true;
	res->code = r->code;
	if (r->code != 0) {
		assert_non_null(r->msg);
		snprintf(res->msg, sizeof(res->msg), "%s", r->msg);
		assert_null(r->result);
		return;
	}
	msgpack_packer pk;
	aep_packer_init(&pk, &res->result);
	msgpack_pack_object(&pk, *r->result);
}

static void result_obj(struct call_result *res, msgpack_zone *z, msgpack_object *o)
{
	struct aep_error e = {0};
	assert_int_equal(aep_mp_unpack(res->result.data, res->result.len, z, o, &e), 0);
}

struct cli_events {
	int notifies;
	char method[32];
	int64_t notify_val;
	int out_of_order;
	int disconnects;
	int pings;
};

static void cli_notify(void *data, const char *method, size_t n, const msgpack_object *params)
{
	struct cli_events *ev = data;
	ev->notifies++;
	snprintf(ev->method, sizeof(ev->method), "%.*s", (int)n, method);
	assert_int_equal(params->type, MSGPACK_OBJECT_ARRAY);
	assert_int_equal(params->via.array.size, 1);
	const msgpack_object *v = aep_mp_map_get(&params->via.array.ptr[0], "n");
	assert_non_null(v);
	if (ev->notifies > 1 && v->via.i64 != ev->notify_val + 1)
		ev->out_of_order++;
	ev->notify_val = v->via.i64;
}

static void cli_disconnect(void *data)
{
	struct cli_events *ev = data;
	ev->disconnects++;
}

static void cli_request(void *data, struct aep_rpc_conn *c, uint64_t msgid, const char *method,
			size_t n, const msgpack_object *params)
{
	struct cli_events *ev = data;
	if (is(method, n, "ping")) {
		ev->pings++;
		const msgpack_object *v = aep_mp_map_get(params, "x");
		assert_non_null(v);
		struct aep_buf b = {0};
		msgpack_packer pk;
		aep_packer_init(&pk, &b);
		msgpack_pack_map(&pk, 1);
		aep_pack_str(&pk, "pong");
		msgpack_pack_int64(&pk, v->via.i64 + 1);
		aep_rpc_reply(c, msgid, b.data, b.len);
		aep_buf_free(&b);
	}
	/* "hold": never answered */
}

static struct aep_rpc_client *client_new(uv_loop_t *loop, const char *servers, struct aep_tls *tls,
					 struct cli_events *ev)
{
	struct aep_rpc_client_config cfg = {
	    .servers = servers,
	    .tls = tls,
	    .connect_timeout_ms = 2000,
	    .on_notify = cli_notify,
	    .on_disconnect = cli_disconnect,
	    .on_request = cli_request,
	    .data = ev,
	};
	struct aep_rpc_client *cl;
	struct aep_error e = {0};
	if (aep_rpc_client_new(loop, &cfg, &cl, &e) != 0)
		fail_msg("client: %s", e.msg);
	return cl;
}

static void client_close(uv_loop_t *loop, struct aep_rpc_client *cl)
{
	bool done = false;
	aep_rpc_client_close(cl, set_flag, &done);
	run_until(loop, &done, 5000);
}

/* {"n": v} */
static void pack_n(struct aep_buf *b, int64_t v)
{
	msgpack_packer pk;
	aep_buf_reset(b);
	aep_packer_init(&pk, b);
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "n");
	msgpack_pack_int64(&pk, v);
}

static struct aep_tls *server_tls(void)
{
	struct aep_tls *t;
	struct aep_error e = {0};
	if (aep_tls_server_new(path("ca.crt"), path("server.crt"), path("server.key"), &t, &e))
		fail_msg("server tls: %s", e.msg);
	return t;
}

static struct aep_tls *client_tls(const char *ca, const char *name)
{
	struct aep_tls *t;
	struct aep_error e = {0};
	char crt[64], key[64];
	snprintf(crt, sizeof(crt), "%s.crt", name ? name : "");
	snprintf(key, sizeof(key), "%s.key", name ? name : "");
	if (aep_tls_client_new(path(ca), name ? path(crt) : NULL, name ? path(key) : NULL, &t, &e))
		fail_msg("client tls: %s", e.msg);
	return t;
}

static void loop_close(uv_loop_t *loop)
{
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(loop), 0);
}

/* ---- tests -------------------------------------------------------------- */

/* A call's result comes back; over TLS the server sees the client's CN. */
static void echo_round_trip(bool tls)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct aep_tls *stls = tls ? server_tls() : NULL;
	struct aep_tls *ctls = tls ? client_tls("ca.crt", "admin") : NULL;
	struct srv s = {0};
	srv_start(&loop, &s, stls, NULL);
	struct cli_events ev = {0};
	struct aep_rpc_client *cl = client_new(&loop, s.addr, ctls, &ev);
	assert_null(aep_rpc_client_server(cl));

	struct aep_buf p = {0};
	pack_n(&p, 42);
	struct call_result r = {0};
	assert_int_equal(aep_rpc_call(cl, "echo", p.data, p.len, call_cb, &r), 0);
	run_until(&loop, &r.done, 5000);
	assert_int_equal(r.count, 1);
	assert_int_equal(r.code, 0);
	msgpack_zone z;
	msgpack_zone_init(&z, 1024);
	msgpack_object o;
	result_obj(&r, &z, &o);
	const msgpack_object *n = aep_mp_map_get(&o, "n");
	assert_non_null(n);
	assert_int_equal(n->via.i64, 42);
	assert_string_equal(aep_rpc_client_server(cl), s.addr);

	struct call_result who = {0};
	assert_int_equal(aep_rpc_call(cl, "whoami", NULL, 0, call_cb, &who), 0);
	run_until(&loop, &who.done, 5000);
	assert_int_equal(who.code, 0);
	result_obj(&who, &z, &o);
	if (tls) {
		assert_int_equal(o.type, MSGPACK_OBJECT_STR);
		assert_true(aep_mp_str_eq(&o, "admin"));
	} else {
		assert_int_equal(o.type, MSGPACK_OBJECT_NIL);
	}

	struct call_result bad = {0};
	assert_int_equal(aep_rpc_call(cl, "nosuch", NULL, 0, call_cb, &bad), 0);
	run_until(&loop, &bad.done, 5000);
	assert_int_equal(bad.code, AEP_ENOMETHOD);
	assert_string_equal(bad.msg, "no such method");

	msgpack_zone_destroy(&z);
	client_close(&loop, cl);
	assert_int_equal(r.count, 1);
	srv_stop(&loop, &s);
	assert_int_equal(s.closes, 1);
	aep_buf_free(&p);
	aep_buf_free(&r.result);
	aep_buf_free(&who.result);
	aep_buf_free(&bad.result);
	aep_tls_free(stls);
	aep_tls_free(ctls);
	loop_close(&loop);
}

static void test_echo_tls(void **state)
{
	(void)state;
	echo_round_trip(true);
}

static void test_echo_plaintext(void **state)
{
	(void)state;
	echo_round_trip(false);
}

/* A client without a certificate is let in, with no identity. */
static void test_tls_anonymous(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct aep_tls *stls = server_tls();
	struct aep_tls *ctls = client_tls("ca.crt", NULL);
	struct srv s = {0};
	srv_start(&loop, &s, stls, NULL);
	struct cli_events ev = {0};
	struct aep_rpc_client *cl = client_new(&loop, s.addr, ctls, &ev);
	struct call_result who = {0};
	assert_int_equal(aep_rpc_call(cl, "whoami", NULL, 0, call_cb, &who), 0);
	run_until(&loop, &who.done, 5000);
	assert_int_equal(who.code, 0);
	assert_string_equal(s.last_identity, "(none)");
	client_close(&loop, cl);
	srv_stop(&loop, &s);
	aep_buf_free(&who.result);
	aep_tls_free(stls);
	aep_tls_free(ctls);
	loop_close(&loop);
}

/* Failing TLS set-ups: the call fails with Unavailable and a reason. */
static void tls_failure(const char *ca, const char *cert, bool by_name, const char *expect)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct aep_tls *stls = server_tls();
	struct aep_tls *ctls = client_tls(ca, cert);
	struct srv s = {0};
	srv_start(&loop, &s, stls, NULL);
	char addr[64];
	snprintf(addr, sizeof(addr), "%s:%d", by_name ? "localhost" : "127.0.0.1", s.port);
	struct cli_events ev = {0};
	struct aep_rpc_client *cl = client_new(&loop, addr, ctls, &ev);
	struct call_result r = {0};
	assert_int_equal(aep_rpc_call(cl, "echo", "\x80", 1, call_cb, &r), 0);
	run_until(&loop, &r.done, 5000);
	assert_int_equal(r.count, 1);
	assert_int_equal(r.code, AEP_EUNAVAILABLE);
	if (strstr(r.msg, expect) == NULL)
		fail_msg("expected \"%s\" in: %s", expect, r.msg);
	assert_int_equal(s.requests, 0);
	assert_null(aep_rpc_client_server(cl));
	client_close(&loop, cl);
	srv_stop(&loop, &s);
	/* The handler never saw a connection that did not come up. */
	assert_int_equal(s.closes, 0);
	aep_buf_free(&r.result);
	aep_tls_free(stls);
	aep_tls_free(ctls);
	loop_close(&loop);
}

static void test_tls_wrong_ca(void **state)
{
	(void)state;
	tls_failure("other.crt", "admin", false, "certificate verify failed");
}

static void test_tls_hostname_mismatch(void **state)
{
	(void)state;
	tls_failure("ca.crt", "admin", true, "certificate verify failed");
}

/* A client certificate from another CA is refused by the server. */
static void test_tls_rogue_client(void **state)
{
	(void)state;
	tls_failure("ca.crt", "rogue", false, "127.0.0.1");
}

/* 10,000 calls sent before any answer; each answer reaches its own call. */
struct pipe_state {
	int done;
	int bad;
	int64_t *seen;
};

struct pipe_call {
	struct pipe_state *ps;
	int64_t n;
};

static void pipe_cb(void *data, const struct aep_rpc_reply *r)
{
	struct pipe_call *pc = data;
	const msgpack_object *n = r->code == 0 ? aep_mp_map_get(r->result, "n") : NULL;
	if (n == NULL || n->via.i64 != pc->n)
		pc->ps->bad++;
	else
		pc->ps->seen[pc->n]++;
	pc->ps->done++;
}

static double pipeline(bool tls, int count, bool print)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct aep_tls *stls = tls ? server_tls() : NULL;
	struct aep_tls *ctls = tls ? client_tls("ca.crt", "admin") : NULL;
	struct srv s = {0};
	srv_start(&loop, &s, stls, NULL);
	struct cli_events ev = {0};
	struct aep_rpc_client *cl = client_new(&loop, s.addr, ctls, &ev);

	/* Connect first so that the figure is the steady state. */
	struct call_result warm = {0};
	assert_int_equal(aep_rpc_call(cl, "echo", "\x80", 1, call_cb, &warm), 0);
	run_until(&loop, &warm.done, 5000);

	struct pipe_state ps = {.seen = calloc((size_t)count, sizeof(int64_t))};
	struct pipe_call *calls = calloc((size_t)count, sizeof(*calls));
	struct aep_buf p = {0};
	int64_t t0 = aep_now_monotonic_ns();
	for (int i = 0; i < count; i++) {
		calls[i].ps = &ps;
		calls[i].n = i;
		pack_n(&p, i);
		assert_int_equal(aep_rpc_call(cl, "echo", p.data, p.len, pipe_cb, &calls[i]), 0);
	}
	uv_timer_t t;
	bool expired = false;
	uv_timer_init(&loop, &t);
	t.data = &expired;
	uv_timer_start(&t, expire_cb, 60000, 0);
	while (ps.done < count && !expired)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	int64_t t1 = aep_now_monotonic_ns();
	double rate = (double)count / ((double)(t1 - t0) / 1e9);
	if (print)
		printf("[ figure ] %d pipelined echo calls over %s on loopback: %.0f calls/s\n",
		       count, tls ? "TLS 1.3" : "plaintext", rate);
	assert_int_equal(ps.done, count);
	assert_int_equal(ps.bad, 0);
	for (int i = 0; i < count; i++)
		assert_int_equal(ps.seen[i], 1);
	assert_int_equal(s.requests, count + 1);

	client_close(&loop, cl);
	srv_stop(&loop, &s);
	free(ps.seen);
	free(calls);
	aep_buf_free(&p);
	aep_buf_free(&warm.result);
	aep_tls_free(stls);
	aep_tls_free(ctls);
	loop_close(&loop);
	return rate;
}

static void test_pipeline_10k(void **state)
{
	(void)state;
	pipeline(true, 10000, false);
	pipeline(false, 10000, false);
}

static void test_throughput_figure(void **state)
{
	(void)state;
	pipeline(true, 100000, true);
}

/* Answers in another order than the calls still reach the right calls. */
static void test_out_of_order(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct aep_tls *stls = server_tls();
	struct aep_tls *ctls = client_tls("ca.crt", "admin");
	struct srv s = {0};
	srv_start(&loop, &s, stls, NULL);
	struct cli_events ev = {0};
	struct aep_rpc_client *cl = client_new(&loop, s.addr, ctls, &ev);
	struct call_result r[3] = {0};
	for (int i = 0; i < 3; i++) {
		char v = (char)(i + 1); /* positive fixint */
		assert_int_equal(aep_rpc_call(cl, "defer", &v, 1, call_cb, &r[i]), 0);
	}
	run_until(&loop, &r[0].done, 5000);
	msgpack_zone z;
	msgpack_zone_init(&z, 1024);
	for (int i = 0; i < 3; i++) {
		assert_true(r[i].done);
		assert_int_equal(r[i].count, 1);
		assert_int_equal(r[i].code, 0);
		msgpack_object o;
		result_obj(&r[i], &z, &o);
		assert_int_equal(o.via.i64, (i + 1) * 10);
		aep_buf_free(&r[i].result);
	}
	msgpack_zone_destroy(&z);
	client_close(&loop, cl);
	srv_stop(&loop, &s);
	aep_tls_free(stls);
	aep_tls_free(ctls);
	loop_close(&loop);
}

/* The server calls the client on the client's connection, and notifies. */
static void test_server_calls_client_and_notifies(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct aep_tls *stls = server_tls();
	struct aep_tls *ctls = client_tls("ca.crt", "admin");
	struct srv s = {0};
	srv_start(&loop, &s, stls, NULL);
	struct cli_events ev = {0};
	struct aep_rpc_client *cl = client_new(&loop, s.addr, ctls, &ev);

	struct aep_buf p = {0};
	msgpack_packer pk;
	aep_packer_init(&pk, &p);
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "x");
	msgpack_pack_int(&pk, 6);
	struct call_result r = {0};
	assert_int_equal(aep_rpc_call(cl, "callback", p.data, p.len, call_cb, &r), 0);
	run_until(&loop, &r.done, 5000);
	assert_int_equal(r.code, 0);
	assert_int_equal(ev.pings, 1);
	msgpack_zone z;
	msgpack_zone_init(&z, 1024);
	msgpack_object o;
	result_obj(&r, &z, &o);
	const msgpack_object *pong = aep_mp_map_get(&o, "pong");
	assert_non_null(pong);
	assert_int_equal(pong->via.i64, 7);

	pack_n(&p, 99);
	struct call_result nr = {0};
	assert_int_equal(aep_rpc_call(cl, "notify", p.data, p.len, call_cb, &nr), 0);
	run_until(&loop, &nr.done, 5000);
	/* The notification was sent before the reply, so it is already here. */
	assert_int_equal(ev.notifies, 1);
	assert_string_equal(ev.method, "event");
	assert_int_equal(ev.notify_val, 99);

	msgpack_zone_destroy(&z);
	client_close(&loop, cl);
	assert_int_equal(ev.disconnects, 0);
	srv_stop(&loop, &s);
	aep_buf_free(&p);
	aep_buf_free(&r.result);
	aep_buf_free(&nr.result);
	aep_tls_free(stls);
	aep_tls_free(ctls);
	loop_close(&loop);
}

/* Output far larger than the socket takes at once: pending bytes are
 * counted, everything arrives in order, then the reply. */
static void test_large_output(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct aep_tls *stls = server_tls();
	struct aep_tls *ctls = client_tls("ca.crt", "admin");
	struct srv s = {0};
	srv_start(&loop, &s, stls, NULL);
	struct cli_events ev = {0};
	struct aep_rpc_client *cl = client_new(&loop, s.addr, ctls, &ev);
	struct call_result r = {0};
	assert_int_equal(aep_rpc_call(cl, "flood", NULL, 0, call_cb, &r), 0);
	run_until(&loop, &r.done, 10000);
	assert_int_equal(r.code, 0);
	assert_int_equal(ev.notifies, 100);
	assert_int_equal(ev.out_of_order, 0);
	assert_int_equal(ev.notify_val, 99);
	client_close(&loop, cl);
	srv_stop(&loop, &s);
	aep_buf_free(&r.result);
	aep_tls_free(stls);
	aep_tls_free(ctls);
	loop_close(&loop);
}

/* NotLeader with details.leader: the client goes there and resends. */
static void test_notleader_redirect(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct aep_tls *stls = server_tls();
	struct aep_tls *ctls = client_tls("ca.crt", "admin");
	struct srv a = {.mode = SRV_NOTLEADER};
	struct srv b = {0};
	srv_start(&loop, &a, stls, NULL);
	srv_start(&loop, &b, stls, NULL);
	snprintf(a.leader, sizeof(a.leader), "%s", b.addr);
	struct cli_events ev = {0};
	struct aep_rpc_client *cl = client_new(&loop, a.addr, ctls, &ev);
	struct aep_buf p = {0};
	pack_n(&p, 5);
	struct call_result r = {0};
	assert_int_equal(aep_rpc_call(cl, "echo", p.data, p.len, call_cb, &r), 0);
	run_until(&loop, &r.done, 5000);
	assert_int_equal(r.count, 1);
	assert_int_equal(r.code, 0);
	assert_int_equal(a.requests, 1);
	assert_int_equal(b.requests, 1);
	assert_string_equal(aep_rpc_client_server(cl), b.addr);
	/* The next call goes straight to the leader. */
	struct call_result r2 = {0};
	assert_int_equal(aep_rpc_call(cl, "echo", p.data, p.len, call_cb, &r2), 0);
	run_until(&loop, &r2.done, 5000);
	assert_int_equal(r2.code, 0);
	assert_int_equal(a.requests, 1);
	assert_int_equal(b.requests, 2);
	client_close(&loop, cl);

	/* Two servers that send the client to each other: it gives up. */
	b.mode = SRV_NOTLEADER;
	snprintf(b.leader, sizeof(b.leader), "%s", a.addr);
	a.requests = b.requests = 0;
	cl = client_new(&loop, a.addr, ctls, &ev);
	struct call_result r3 = {0};
	assert_int_equal(aep_rpc_call(cl, "echo", p.data, p.len, call_cb, &r3), 0);
	run_until(&loop, &r3.done, 5000);
	assert_int_equal(r3.count, 1);
	assert_int_equal(r3.code, AEP_ENOTLEADER);
	assert_int_equal(a.requests + b.requests, 6); /* the first try and 5 redirects */
	client_close(&loop, cl);
	assert_int_equal(r3.count, 1);

	srv_stop(&loop, &a);
	srv_stop(&loop, &b);
	aep_buf_free(&p);
	aep_buf_free(&r.result);
	aep_buf_free(&r2.result);
	aep_tls_free(stls);
	aep_tls_free(ctls);
	loop_close(&loop);
}

/* A dead server in the list is skipped; an all-dead list fails. */
static void test_failover_and_unavailable(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct srv dead = {0};
	struct srv s = {0};
	srv_start(&loop, &dead, NULL, NULL);
	char dead_addr[64];
	snprintf(dead_addr, sizeof(dead_addr), "%s", dead.addr);
	srv_stop(&loop, &dead); /* its port now refuses connections */
	srv_start(&loop, &s, NULL, NULL);

	char list[160];
	snprintf(list, sizeof(list), "%s, %s", dead_addr, s.addr);
	struct cli_events ev = {0};
	struct aep_rpc_client *cl = client_new(&loop, list, NULL, &ev);
	struct call_result r = {0};
	assert_int_equal(aep_rpc_call(cl, "echo", "\x80", 1, call_cb, &r), 0);
	run_until(&loop, &r.done, 5000);
	assert_int_equal(r.code, 0);
	assert_string_equal(aep_rpc_client_server(cl), s.addr);
	client_close(&loop, cl);

	cl = client_new(&loop, dead_addr, NULL, &ev);
	struct call_result r2 = {0};
	assert_int_equal(aep_rpc_call(cl, "echo", "\x80", 1, call_cb, &r2), 0);
	run_until(&loop, &r2.done, 5000);
	assert_int_equal(r2.count, 1);
	assert_int_equal(r2.code, AEP_EUNAVAILABLE);
	assert_non_null(strstr(r2.msg, "no server available"));
	client_close(&loop, cl);

	/* Bad addresses are refused up front. */
	struct aep_rpc_client_config cfg = {.servers = "127.0.0.1"};
	struct aep_error e = {0};
	assert_int_equal(aep_rpc_client_new(&loop, &cfg, &cl, &e), AEP_EINVALID);

	srv_stop(&loop, &s);
	aep_buf_free(&r.result);
	loop_close(&loop);
}

/* The server in use goes away: the next call reconnects to another. */
static void test_reconnect(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct aep_tls *stls = server_tls();
	struct aep_tls *ctls = client_tls("ca.crt", "admin");
	struct srv a = {0}, b = {0};
	srv_start(&loop, &a, stls, NULL);
	srv_start(&loop, &b, stls, NULL);
	char list[160];
	snprintf(list, sizeof(list), "%s,%s", a.addr, b.addr);
	struct cli_events ev = {0};
	struct aep_rpc_client *cl = client_new(&loop, list, ctls, &ev);
	struct call_result r = {0};
	assert_int_equal(aep_rpc_call(cl, "echo", "\x80", 1, call_cb, &r), 0);
	run_until(&loop, &r.done, 5000);
	assert_int_equal(r.code, 0);
	assert_string_equal(aep_rpc_client_server(cl), a.addr);

	srv_stop(&loop, &a);
	while (ev.disconnects == 0)
		uv_run(&loop, UV_RUN_ONCE);
	assert_null(aep_rpc_client_server(cl));
	struct call_result r2 = {0};
	assert_int_equal(aep_rpc_call(cl, "echo", "\x80", 1, call_cb, &r2), 0);
	run_until(&loop, &r2.done, 5000);
	assert_int_equal(r2.code, 0);
	assert_string_equal(aep_rpc_client_server(cl), b.addr);
	assert_int_equal(b.requests, 1);
	assert_int_equal(ev.disconnects, 1);

	client_close(&loop, cl);
	srv_stop(&loop, &b);
	aep_buf_free(&r.result);
	aep_buf_free(&r2.result);
	aep_tls_free(stls);
	aep_tls_free(ctls);
	loop_close(&loop);
}

/* Server close with calls in flight both ways: the client's call gets
 * Unavailable, the server's call to the client Canceled, each once. */
static void test_server_close_in_flight(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct aep_tls *stls = server_tls();
	struct aep_tls *ctls = client_tls("ca.crt", "admin");
	struct srv s = {0};
	srv_start(&loop, &s, stls, NULL);
	struct cli_events ev = {0};
	struct aep_rpc_client *cl = client_new(&loop, s.addr, ctls, &ev);
	struct call_result r = {0};
	assert_int_equal(aep_rpc_call(cl, "hold", NULL, 0, call_cb, &r), 0);
	while (s.requests == 0)
		uv_run(&loop, UV_RUN_ONCE);
	struct aep_rpc_conn *held = aep_rpc_conn_ref(s.held);

	bool closed = false;
	aep_rpc_server_close(s.s, set_flag, &closed);
	assert_int_equal(s.held_cb_count, 1);
	assert_int_equal(s.held_cb_code, AEP_ECANCELED);
	assert_true(aep_rpc_conn_closed(held));
	/* Answers on a closed connection go nowhere. */
	assert_int_equal(aep_rpc_reply(held, 1, "\xc0", 1), AEP_ECANCELED);
	assert_int_equal(aep_rpc_notify(held, "event", NULL, 0), AEP_ECANCELED);
	run_until(&loop, &r.done, 5000);
	assert_int_equal(r.code, AEP_EUNAVAILABLE);
	run_until(&loop, &closed, 5000);
	assert_int_equal(r.count, 1);
	assert_int_equal(s.held_cb_count, 1);
	assert_int_equal(ev.disconnects, 1);
	assert_int_equal(s.closes, 1);
	aep_rpc_conn_unref(held);
	aep_rpc_conn_unref(s.held);
	s.held = NULL;

	client_close(&loop, cl);
	aep_buf_free(&r.result);
	aep_tls_free(stls);
	aep_tls_free(ctls);
	loop_close(&loop);
}

/* Calls waiting for a connection are cancelled by client close. */
static void test_client_close_cancels(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct srv s = {0};
	srv_start(&loop, &s, NULL, NULL);
	struct cli_events ev = {0};
	struct aep_rpc_client *cl = client_new(&loop, s.addr, NULL, &ev);
	struct call_result r = {0};
	assert_int_equal(aep_rpc_call(cl, "echo", "\x80", 1, call_cb, &r), 0);
	bool done = false;
	aep_rpc_client_close(cl, set_flag, &done);
	assert_int_equal(r.count, 1);
	assert_int_equal(r.code, AEP_ECANCELED);
	run_until(&loop, &done, 5000);
	assert_int_equal(r.count, 1);
	srv_stop(&loop, &s);
	loop_close(&loop);
}

/* aep_rpc_call_sync: the CLI's way. */
static void test_call_sync(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct srv s = {0};
	srv_start(&loop, &s, NULL, NULL);
	struct cli_events ev = {0};
	struct aep_rpc_client *cl = client_new(&loop, s.addr, NULL, &ev);
	struct aep_buf p = {0}, out = {0};
	struct aep_error e = {0};
	pack_n(&p, 3);
	assert_int_equal(aep_rpc_call_sync(&loop, cl, "echo", p.data, p.len, 5000, &out, &e), 0);
	assert_int_equal(out.len, p.len);
	assert_memory_equal(out.data, p.data, p.len);
	assert_int_equal(aep_rpc_call_sync(&loop, cl, "nosuch", NULL, 0, 5000, &out, &e),
			 AEP_ENOMETHOD);
	assert_string_equal(e.msg, "no such method");
	/* No answer in time. */
	assert_int_equal(aep_rpc_call_sync(&loop, cl, "hold", NULL, 0, 100, &out, &e),
			 AEP_ETIMEOUT);
	client_close(&loop, cl);
	srv_stop(&loop, &s);
	aep_buf_free(&p);
	aep_buf_free(&out);
	loop_close(&loop);
}

/* ---- raw wire tests ----------------------------------------------------- */

struct raw {
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_write_t wreq;
	uv_buf_t tx;
	bool close_after_write;
	struct aep_buf rx;
	bool closed;
};

static void raw_closed_cb(uv_handle_t *h)
{
	struct raw *r = h->data;
	r->closed = true;
}

static void raw_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
	struct raw *r = h->data;
	aep_buf_reserve(&r->rx, n);
	*b = uv_buf_init(r->rx.data + r->rx.len, (unsigned)(r->rx.cap - r->rx.len));
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct raw *r = s->data;
	(void)b;
	if (n > 0)
		r->rx.len += (size_t)n;
	else if (n < 0 && !uv_is_closing((uv_handle_t *)s))
		uv_close((uv_handle_t *)s, raw_closed_cb);
}

static void raw_written(uv_write_t *w, int status)
{
	struct raw *r = w->data;
	(void)status;
	if (r->close_after_write && !uv_is_closing((uv_handle_t *)&r->tcp))
		uv_close((uv_handle_t *)&r->tcp, raw_closed_cb);
}

static void raw_connected(uv_connect_t *req, int status)
{
	struct raw *r = req->data;
	assert_int_equal(status, 0);
	uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
	r->wreq.data = r;
	uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &r->tx, 1, raw_written);
}

/* Send @data on a plaintext connection and collect what comes back until
 * the server closes (or, with @close_after_write, until we have sent). */
static void raw_exchange(uv_loop_t *loop, int port, const char *data, size_t len,
			 bool close_after_write, struct raw *r)
{
	struct sockaddr_in sa;
	memset(r, 0, sizeof(*r));
	uv_ip4_addr("127.0.0.1", port, &sa);
	uv_tcp_init(loop, &r->tcp);
	r->tcp.data = r;
	r->creq.data = r;
	r->tx = uv_buf_init((char *)data, (unsigned)len);
	r->close_after_write = close_after_write;
	uv_tcp_connect(&r->creq, &r->tcp, (struct sockaddr *)&sa, raw_connected);
	run_until(loop, &r->closed, 5000);
}

/* The messages in @r->rx, unpacked into @z. */
static size_t raw_messages(struct raw *r, msgpack_zone *z, msgpack_object *out, size_t max)
{
	size_t off = 0, n = 0;
	while (off < r->rx.len && n < max) {
		msgpack_unpack_return rv = msgpack_unpack(r->rx.data, r->rx.len, &off, z, &out[n]);
		assert_true(rv == MSGPACK_UNPACK_SUCCESS || rv == MSGPACK_UNPACK_EXTRA_BYTES);
		n++;
	}
	return n;
}

/* [1, msgid, {code: @code, ...}, nil] */
static void assert_error_response(const msgpack_object *o, uint64_t msgid, const char *code)
{
	assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
	assert_int_equal(o->via.array.size, 4);
	assert_int_equal(o->via.array.ptr[0].via.u64, 1);
	assert_int_equal(o->via.array.ptr[1].via.u64, msgid);
	assert_true(aep_mp_str_eq(aep_mp_map_get(&o->via.array.ptr[2], "code"), code));
	assert_int_equal(o->via.array.ptr[3].type, MSGPACK_OBJECT_NIL);
}

static void test_wire_limits_and_garbage(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct aep_mp_limits lim = aep_mp_default_limits;
	lim.max_bytes = 64 << 10;
	struct srv s = {0};
	srv_start(&loop, &s, NULL, &lim);
	msgpack_zone z;
	msgpack_zone_init(&z, 4096);
	msgpack_object msgs[4];
	struct raw r;

	/* A plain request works on the raw wire, params [map] -> map. */
	struct aep_buf b = {0};
	msgpack_packer pk;
	aep_packer_init(&pk, &b);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_int(&pk, 0);
	msgpack_pack_int(&pk, 300);
	aep_pack_str(&pk, "echo");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 0);
	/* ... followed by a byte that is no msgpack, so that the server
	 * answers, then complains and closes. */
	aep_buf_append(&b, "\xc1", 1);
	raw_exchange(&loop, s.port, b.data, b.len, false, &r);
	assert_int_equal(raw_messages(&r, &z, msgs, 4), 2);
	assert_int_equal(msgs[0].via.array.ptr[0].via.u64, 1);
	assert_int_equal(msgs[0].via.array.ptr[1].via.u64, 300);
	assert_int_equal(msgs[0].via.array.ptr[2].type, MSGPACK_OBJECT_NIL);
	assert_int_equal(msgs[0].via.array.ptr[3].type, MSGPACK_OBJECT_MAP);
	assert_int_equal(msgs[1].via.array.ptr[0].via.u64, 2);
	aep_buf_free(&r.rx);

	/* Over the size limit: TooLarge to msgid 7, then the server closes. */
	aep_buf_reset(&b);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_int(&pk, 0);
	msgpack_pack_int(&pk, 7);
	aep_pack_str(&pk, "echo");
	msgpack_pack_array(&pk, 1);
	size_t big = 100 << 10;
	char *blob = calloc(1, big);
	msgpack_pack_bin(&pk, big);
	msgpack_pack_bin_body(&pk, blob, big);
	free(blob);
	int before = s.requests;
	raw_exchange(&loop, s.port, b.data, b.len, false, &r);
	assert_int_equal(raw_messages(&r, &z, msgs, 4), 1);
	assert_error_response(&msgs[0], 7, "TooLarge");
	assert_int_equal(s.requests, before);
	aep_buf_free(&r.rx);

	/* Nesting deeper than 32: TooLarge. */
	aep_buf_reset(&b);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_int(&pk, 0);
	msgpack_pack_int(&pk, 8);
	aep_pack_str(&pk, "echo");
	for (int i = 0; i < 40; i++)
		msgpack_pack_array(&pk, 1);
	msgpack_pack_nil(&pk);
	raw_exchange(&loop, s.port, b.data, b.len, false, &r);
	assert_int_equal(raw_messages(&r, &z, msgs, 4), 1);
	assert_error_response(&msgs[0], 8, "TooLarge");
	aep_buf_free(&r.rx);

	/* Bytes that are not msgpack: an "error" notification, then close. */
	raw_exchange(&loop, s.port, "\xc1\xc1\xc1\xc1", 4, false, &r);
	assert_int_equal(raw_messages(&r, &z, msgs, 4), 1);
	assert_int_equal(msgs[0].via.array.size, 3);
	assert_int_equal(msgs[0].via.array.ptr[0].via.u64, 2);
	assert_true(aep_mp_str_eq(&msgs[0].via.array.ptr[1], "error"));
	assert_true(aep_mp_str_eq(
	    aep_mp_map_get(&msgs[0].via.array.ptr[2].via.array.ptr[0], "code"), "BadRequest"));
	aep_buf_free(&r.rx);

	/* msgpack of the wrong shape: BadRequest to its msgid. */
	aep_buf_reset(&b);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_int(&pk, 0);
	msgpack_pack_int(&pk, 9);
	msgpack_pack_int(&pk, 5); /* method must be a string */
	msgpack_pack_array(&pk, 0);
	raw_exchange(&loop, s.port, b.data, b.len, false, &r);
	assert_int_equal(raw_messages(&r, &z, msgs, 4), 1);
	assert_error_response(&msgs[0], 9, "BadRequest");
	aep_buf_free(&r.rx);

	/* Params that are not an array: BadRequest. */
	aep_buf_reset(&b);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_int(&pk, 0);
	msgpack_pack_int(&pk, 10);
	aep_pack_str(&pk, "echo");
	msgpack_pack_map(&pk, 0);
	raw_exchange(&loop, s.port, b.data, b.len, false, &r);
	assert_int_equal(raw_messages(&r, &z, msgs, 4), 1);
	assert_error_response(&msgs[0], 10, "BadRequest");
	aep_buf_free(&r.rx);

	/* A stream cut in the middle of a message: nothing dispatched, the
	 * server closes its side. */
	aep_buf_reset(&b);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_int(&pk, 0);
	msgpack_pack_int(&pk, 11);
	aep_pack_str(&pk, "echo");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_str(&pk, 100);
	msgpack_pack_str_body(&pk, "only a part", 11);
	before = s.requests;
	int closes = s.closes;
	raw_exchange(&loop, s.port, b.data, b.len, true, &r);
	while (s.closes == closes)
		uv_run(&loop, UV_RUN_ONCE);
	assert_int_equal(s.requests, before);
	aep_buf_free(&r.rx);

	msgpack_zone_destroy(&z);
	aep_buf_free(&b);
	srv_stop(&loop, &s);
	loop_close(&loop);
}

/* ---- allocation failures ------------------------------------------------ */

/* Fail the Nth allocation, for every N, on a whole call (client encode,
 * server accept/decode/reply, client decode): the call's callback fires
 * exactly once (or aep_rpc_call refuses it), everything closes, and the
 * leak checker finds nothing. */
static void fault_sweep(bool tls)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct aep_tls *stls = tls ? server_tls() : NULL;
	struct aep_tls *ctls = tls ? client_tls("ca.crt", "admin") : NULL;
	struct srv s = {0};
	srv_start(&loop, &s, stls, NULL);
	/* {"n": 1, "blob": 200 KiB}: arrives in several reads on both ends. */
	struct aep_buf p = {0};
	msgpack_packer pk;
	aep_packer_init(&pk, &p);
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "n");
	msgpack_pack_int(&pk, 1);
	aep_pack_str(&pk, "blob");
	char *blob = calloc(1, 200 << 10);
	msgpack_pack_bin(&pk, 200 << 10);
	msgpack_pack_bin_body(&pk, blob, 200 << 10);
	free(blob);
	int ok = 0, failed = 0;
	bool clean = false;
	for (long n = 1; n < 2000 && !clean; n++) {
		struct cli_events ev = {0};
		struct aep_rpc_client_config cfg = {
		    .servers = s.addr,
		    .tls = ctls,
		    .connect_timeout_ms = 2000,
		    .data = &ev,
		};
		struct aep_rpc_client *cl = NULL;
		struct aep_error e = {0};
		struct call_result r = {0};
		aep_heap_fault_after(n);
		int rv = aep_rpc_client_new(&loop, &cfg, &cl, &e);
		if (rv == 0) {
			rv = aep_rpc_call(cl, "echo", p.data, p.len, call_cb, &r);
			if (rv == 0)
				run_until(&loop, &r.done, 5000);
		}
		long hits = aep_heap_fault_count();
		aep_heap_fault_off();
		if (r.done) {
			assert_int_equal(r.count, 1);
			if (r.code == 0)
				ok++;
			else
				failed++;
		} else {
			assert_int_equal(rv, AEP_ENOMEM);
		}
		if (cl != NULL)
			client_close(&loop, cl);
		assert_true(r.count <= 1);
		aep_buf_free(&r.result);
		if (hits == 0) {
			/* No allocation failed: the sweep has covered every one. */
			assert_int_equal(r.code, 0);
			clean = true;
		}
	}
	assert_true(clean);
	assert_true(ok >= 1);
	assert_true(failed >= 1);
	/* The server still serves after all that. */
	struct cli_events ev = {0};
	struct aep_rpc_client *cl = client_new(&loop, s.addr, ctls, &ev);
	struct call_result r = {0};
	assert_int_equal(aep_rpc_call(cl, "echo", p.data, p.len, call_cb, &r), 0);
	run_until(&loop, &r.done, 5000);
	assert_int_equal(r.code, 0);
	client_close(&loop, cl);
	srv_stop(&loop, &s);
	aep_buf_free(&r.result);
	aep_buf_free(&p);
	aep_tls_free(stls);
	aep_tls_free(ctls);
	loop_close(&loop);
}

static void test_fault_sweep(void **state)
{
	(void)state;
	fault_sweep(false);
	fault_sweep(true);
}

/* ---- addresses ---------------------------------------------------------- */

static void test_addr_parse(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	struct aep_error e = {0};
	assert_int_equal(aep_addr_parse("127.0.0.1:7001", &ss, &e), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 7001);
	assert_int_equal(aep_addr_parse("[::1]:7002", &ss, &e), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 7002);
	assert_int_equal(aep_addr_parse("localhost:7003", &ss, &e), 0);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 7003);
	const char *bad[] = {
	    "",		 "127.0.0.1",	  "127.0.0.1:", ":7001",     "::1:7001",
	    "[::1]7001", "1.2.3.4:70000", "1.2.3.4:7x", "[zz]:7001", "no-such-host.invalid:1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		aep_error_clear(&e);
		assert_int_equal(aep_addr_parse(bad[i], &ss, &e), AEP_EINVALID);
		assert_true(e.msg[0] != '\0');
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_addr_parse),
	    cmocka_unit_test(test_echo_tls),
	    cmocka_unit_test(test_echo_plaintext),
	    cmocka_unit_test(test_tls_anonymous),
	    cmocka_unit_test(test_tls_wrong_ca),
	    cmocka_unit_test(test_tls_hostname_mismatch),
	    cmocka_unit_test(test_tls_rogue_client),
	    cmocka_unit_test(test_pipeline_10k),
	    cmocka_unit_test(test_out_of_order),
	    cmocka_unit_test(test_server_calls_client_and_notifies),
	    cmocka_unit_test(test_large_output),
	    cmocka_unit_test(test_notleader_redirect),
	    cmocka_unit_test(test_failover_and_unavailable),
	    cmocka_unit_test(test_reconnect),
	    cmocka_unit_test(test_server_close_in_flight),
	    cmocka_unit_test(test_client_close_cancels),
	    cmocka_unit_test(test_call_sync),
	    cmocka_unit_test(test_wire_limits_and_garbage),
	    cmocka_unit_test(test_fault_sweep),
	    cmocka_unit_test(test_throughput_figure),
	};
	return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
