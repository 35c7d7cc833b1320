/* The join method (docs/NODES.md, "Joining"): a node agent without a
 * certificate trades a bootstrap token and a certificate request for a
 * client certificate signed by the cluster CA.
 *
 * Happy path: join {token: "ID.SECRET", name, csr} arrives on any master
 * (the only method open to callers without a certificate) → the shape of
 * the params is checked → a follower forwards it to the leader → the
 * leader finds the Secret kube-system/bootstrap-token-ID, compares the
 * secret in constant time, checks the expiration and usage-join → checks
 * the node name (DNS-1123 subdomain) and the request (PEM PKCS#10, its
 * signature, CN "system:node:NAME") → signs a client certificate (CN
 * system:node:NAME, O system:nodes, one year) with PKI/ca.key → answers
 * {certificate, ca} as PEM strings.
 *
 * Failure modes: a malformed, unknown, wrong, expired or non-join token is
 * Unauthorized (checked first, so that callers without a valid token learn
 * nothing else); a bad name or request is Invalid; a master started with a
 * --pki directory without ca.key answers Unavailable. Nothing is written
 * to the store: a token may join many nodes until it expires or is
 * deleted. The leader reads the token from its applied store; a token
 * created or deleted through any master is there once that call returned. */
#include "master/master-int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli/cli.h"

#define TOKEN_ID_LEN	 6
#define TOKEN_SECRET_LEN 16
#define TOKEN_MAX	 64
#define CSR_MAX		 (16 * 1024)
#define CA_CERT_MAX	 (64 * 1024)
#define NODE_CERT_DAYS	 365
#define TOKEN_TYPE	 "aep.io/bootstrap-token"

/* The params of one join call, each NUL-terminated and bounded. */
struct join_params {
	char token[TOKEN_MAX + 1];
	char name[AEP_NAME_MAX + 1];
	char *csr; /* heap */
	size_t csr_len;
};

/* A string into @buf (@max bytes and a NUL); a longer one is @too_long. */
static int param_into(const msgpack_object *v, const char *key, char *buf, size_t max, int too_long,
		      struct aep_error *e)
{
	if (v->type != MSGPACK_OBJECT_STR)
		return aep_errorf(e, AEP_EBADREQUEST, "%s: must be a string", key);
	if (v->via.str.size > max)
		return aep_errorf(e, too_long, "%s: longer than %zu bytes", key, max);
	memcpy(buf, v->via.str.ptr, v->via.str.size);
	buf[v->via.str.size] = '\0';
	return 0;
}

/* {token, name, csr}, all required strings, nothing else. */
static int parse_params(const msgpack_object *params, struct join_params *p, struct aep_error *e)
{
	memset(p, 0, sizeof(*p));
	if (params == NULL || params->type != MSGPACK_OBJECT_MAP)
		return aep_errorf(e, AEP_EBADREQUEST, "join: params must be {token, name, csr}");
	bool seen[3] = {false, false, false};
	for (uint32_t i = 0; i < params->via.map.size; i++) {
		const msgpack_object *k = &params->via.map.ptr[i].key;
		const msgpack_object *v = &params->via.map.ptr[i].val;
		int which = aep_mp_str_eq(k, "token")  ? 0
			    : aep_mp_str_eq(k, "name") ? 1
			    : aep_mp_str_eq(k, "csr")  ? 2
						       : -1;
		if (which < 0) {
			if (k->type != MSGPACK_OBJECT_STR)
				return aep_errorf(e, AEP_EBADREQUEST,
						  "parameter names must be strings");
			return aep_errorf(e, AEP_EBADREQUEST, "unknown parameter \"%.*s\"",
					  (int)(k->via.str.size > 64 ? 64 : k->via.str.size),
					  k->via.str.ptr);
		}
		if (seen[which])
			return aep_errorf(e, AEP_EBADREQUEST, "parameter given twice");
		seen[which] = true;
		int rv = 0;
		if (which == 0) {
			rv = param_into(v, "token", p->token, TOKEN_MAX, AEP_EUNAUTHORIZED, e);
		} else if (which == 1) {
			rv = param_into(v, "name", p->name, AEP_NAME_MAX, AEP_EINVALID, e);
		} else {
			if (v->type != MSGPACK_OBJECT_STR)
				return aep_errorf(e, AEP_EBADREQUEST, "csr: must be a string");
			if (v->via.str.size > CSR_MAX)
				return aep_errorf(e, AEP_EINVALID, "csr: longer than %d bytes",
						  CSR_MAX);
			p->csr = aep_strndup(v->via.str.ptr, v->via.str.size);
			if (p->csr == NULL)
				return aep_errorf(e, AEP_ENOMEM, "out of memory");
			p->csr_len = v->via.str.size;
		}
		if (rv != 0)
			return rv;
	}
	if (!seen[0] || !seen[1] || !seen[2])
		return aep_errorf(e, AEP_EBADREQUEST, "join: %s is required",
				  !seen[0]   ? "token"
				  : !seen[1] ? "name"
					     : "csr");
	return 0;
}

static bool token_chars(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
			return false;
	}
	return true;
}

/* The token Secret's data value @key, or NULL. */
static const msgpack_object *secret_data(const msgpack_object *secret, const char *key)
{
	const msgpack_object *data = aep_mp_map_get(secret, "data");
	if (data == NULL || data->type != MSGPACK_OBJECT_MAP)
		return NULL;
	const msgpack_object *v = aep_mp_map_get(data, key);
	return v != NULL && v->type == MSGPACK_OBJECT_STR ? v : NULL;
}

/* Unauthorized unless @token ("ID.SECRET") names a bootstrap token in
 * kube-system whose secret matches, that has not expired and that may be
 * used to join. */
static int check_token(struct master *m, const char *token, struct aep_error *e)
{
	static const char bad[] = "invalid bootstrap token: unknown token ID or wrong secret";
	size_t n = strlen(token);
	if (n != TOKEN_ID_LEN + 1 + TOKEN_SECRET_LEN || token[TOKEN_ID_LEN] != '.' ||
	    !token_chars(token, TOKEN_ID_LEN) ||
	    !token_chars(token + TOKEN_ID_LEN + 1, TOKEN_SECRET_LEN))
		return aep_errorf(e, AEP_EUNAUTHORIZED,
				  "invalid bootstrap token: expected ID.SECRET (6 and 16 "
				  "characters of [a-z0-9])");
	char id[TOKEN_ID_LEN + 1], name[64];
	memcpy(id, token, TOKEN_ID_LEN);
	id[TOKEN_ID_LEN] = '\0';
	snprintf(name, sizeof(name), "bootstrap-token-%s", id);
	struct aep_object *o = aep_store_get(m->store, AEP_KIND_SECRET, "kube-system", name);
	if (o == NULL)
		return aep_errorf(e, AEP_EUNAUTHORIZED, "%s", bad);

	int rv = 0;
	msgpack_zone z;
	msgpack_object obj;
	msgpack_zone_init(&z, 1024);
	if (aep_mp_unpack(o->data, o->len, &z, &obj, e) != 0) {
		rv = aep_errorf(e, AEP_EINTERNAL, "token %s: stored object unreadable", id);
		goto out;
	}
	const msgpack_object *type = aep_mp_map_get(&obj, "type");
	const msgpack_object *sec = secret_data(&obj, "token-secret");
	const msgpack_object *exp = secret_data(&obj, "expiration");
	const msgpack_object *join = secret_data(&obj, "usage-join");
	const char *given = token + TOKEN_ID_LEN + 1;
	/* Compare in constant time; a stored secret of another length never
	 * matches, and is compared against itself so the time is the same. */
	bool match = sec != NULL && sec->via.str.size == TOKEN_SECRET_LEN;
	const char *stored = match ? sec->via.str.ptr : given;
	match = CRYPTO_memcmp(stored, given, TOKEN_SECRET_LEN) == 0 && match;
	if (type == NULL || !aep_mp_str_eq(type, TOKEN_TYPE) || !match) {
		rv = aep_errorf(e, AEP_EUNAUTHORIZED, "%s", bad);
		goto out;
	}
	if (exp != NULL) {
		int64_t at;
		char when[40];
		if (aep_time_parse(exp->via.str.ptr, exp->via.str.size, &at) != 0) {
			rv = aep_errorf(e, AEP_EUNAUTHORIZED,
					"bootstrap token %s: unreadable expiration", id);
			goto out;
		}
		if (at <= aep_now_realtime_ns()) {
			aep_time_format(at, when, sizeof(when));
			rv = aep_errorf(e, AEP_EUNAUTHORIZED, "bootstrap token %s expired at %s",
					id, when);
			goto out;
		}
	}
	if (join == NULL || !aep_mp_str_eq(join, "true"))
		rv = aep_errorf(e, AEP_EUNAUTHORIZED,
				"bootstrap token %s may not be used to join (usage-join is not "
				"\"true\")",
				id);
out:
	msgpack_zone_destroy(&z);
	aep_object_unref(o);
	return rv;
}

static int ssl_invalid(struct aep_error *e, const char *what)
{
	unsigned long code = ERR_get_error();
	char buf[256] = "";
	if (code != 0)
		ERR_error_string_n(code, buf, sizeof(buf));
	ERR_clear_error();
	return aep_errorf(e, AEP_EINVALID, "csr: %s%s%s", what, buf[0] ? ": " : "", buf);
}

/* Parse and verify the request; on success *@key is its public key (the
 * caller frees it). Invalid unless it is one PEM PKCS#10 request, signed by
 * its own key, with an acceptable key and exactly one CN equal to @cn. */
static int check_csr(const char *pem, size_t len, const char *cn, EVP_PKEY **key,
		     struct aep_error *e)
{
	*key = NULL;
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (bio == NULL)
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	X509_REQ *req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (req == NULL)
		return ssl_invalid(e, "not a PEM certificate request (PKCS#10)");
	int rv = 0;
	EVP_PKEY *k = X509_REQ_get_pubkey(req);
	if (k == NULL) {
		rv = ssl_invalid(e, "no usable public key");
		goto out;
	}
	if (X509_REQ_verify(req, k) != 1) {
		rv = ssl_invalid(e, "the signature does not verify with the request's key");
		goto out;
	}
	int type = EVP_PKEY_get_base_id(k);
	int bits = EVP_PKEY_get_bits(k);
	if (!((type == EVP_PKEY_EC && bits >= 256) || (type == EVP_PKEY_RSA && bits >= 2048) ||
	      type == EVP_PKEY_ED25519)) {
		rv = aep_errorf(e, AEP_EINVALID,
				"csr: key must be ECDSA (P-256 or larger), RSA (2048 bits or "
				"more) or Ed25519");
		goto out;
	}
	X509_NAME *subject = X509_REQ_get_subject_name(req);
	int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
	if (at < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, at) >= 0) {
		rv = aep_errorf(e, AEP_EINVALID,
				"csr: the subject must have exactly one common name, \"%s\"", cn);
		goto out;
	}
	unsigned char *utf8 = NULL;
	int n =
	    ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at)));
	if (n < 0) {
		rv = ssl_invalid(e, "unreadable common name");
		goto out;
	}
	if ((size_t)n != strlen(cn) || memcmp(utf8, cn, (size_t)n) != 0) {
		char got[80];
		int shown = n > 64 ? 64 : n;
		for (int i = 0; i < shown; i++)
			got[i] = utf8[i] >= 0x20 && utf8[i] < 0x7f ? (char)utf8[i] : '?';
		got[shown] = '\0';
		rv = aep_errorf(e, AEP_EINVALID, "csr: common name \"%s%s\" must be \"%s\"", got,
				n > 64 ? "..." : "", cn);
	}
	OPENSSL_free(utf8);
out:
	if (rv == 0)
		*key = k;
	else
		EVP_PKEY_free(k);
	X509_REQ_free(req);
	return rv;
}

/* The whole of @path (at most @max bytes) appended to @out. */
static int read_file(const char *path, size_t max, struct aep_buf *out, struct aep_error *e)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return aep_errorf(e, AEP_EUNAVAILABLE, "open %s: %s", path, strerror(errno));
	char chunk[4096];
	size_t n;
	int rv = 0;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (out->len + n > max) {
			rv =
			    aep_errorf(e, AEP_EUNAVAILABLE, "%s: larger than %zu bytes", path, max);
			break;
		}
		if (aep_buf_append(out, chunk, n) != 0) {
			rv = aep_errorf(e, AEP_ENOMEM, "out of memory");
			break;
		}
	}
	if (rv == 0 && ferror(f))
		rv = aep_errorf(e, AEP_EUNAVAILABLE, "read %s: %s", path, strerror(errno));
	fclose(f);
	return rv;
}

/* Check everything and sign; the reply map {certificate, ca} is appended
 * to @out. */
static int join(struct master *m, const struct join_params *p, struct aep_buf *out,
		struct aep_error *e)
{
	int rv = check_token(m, p->token, e);
	if (rv != 0)
		return rv;
	struct aep_error ne = {0};
	if (aep_validate_dns1123_subdomain(p->name, strlen(p->name), &ne) != 0)
		return aep_errorf(e, AEP_EINVALID, "name \"%.64s\": %s", p->name, ne.msg);
	char cn[AEP_NAME_MAX + 16];
	snprintf(cn, sizeof(cn), "system:node:%s", p->name);
	if (strlen(cn) > 64)
		return aep_errorf(e, AEP_EINVALID,
				  "name \"%.64s\": at most 52 characters (a certificate's common "
				  "name holds 64)",
				  p->name);
	EVP_PKEY *key = NULL;
	rv = check_csr(p->csr, p->csr_len, cn, &key, e);
	if (rv != 0)
		return rv;

	char ca_crt[4096], ca_key[4096];
	struct aep_buf cert, ca;
	aep_buf_init(&cert);
	aep_buf_init(&ca);
	snprintf(ca_crt, sizeof(ca_crt), "%s/ca.crt", m->pki);
	snprintf(ca_key, sizeof(ca_key), "%s/ca.key", m->pki);
	if (access(ca_key, R_OK) != 0) {
		rv = aep_errorf(e, AEP_EUNAVAILABLE,
				"this master has no CA key (%s: %s); nodes join through a master "
				"whose --pki directory holds ca.key",
				ca_key, strerror(errno));
		goto out;
	}
	rv = read_file(ca_crt, CA_CERT_MAX, &ca, e);
	if (rv != 0)
		goto out;
	rv = aep_pki_sign_client(ca_crt, ca_key, key, cn, "system:nodes", NODE_CERT_DAYS, &cert, e);
	if (rv != 0) {
		e->code = rv = rv == AEP_ENOMEM ? AEP_ENOMEM : AEP_EUNAVAILABLE;
		aep_error_prefix(e, "sign the node certificate");
		goto out;
	}
	msgpack_packer pk;
	aep_packer_init(&pk, out);
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "certificate");
	aep_pack_strn(&pk, cert.data, cert.len);
	aep_pack_str(&pk, "ca");
	aep_pack_strn(&pk, ca.data, ca.len);
	if (out->failed)
		rv = aep_errorf(e, AEP_ENOMEM, "out of memory");
out:
	aep_buf_free(&cert);
	aep_buf_free(&ca);
	EVP_PKEY_free(key);
	return rv;
}

void master__join(struct req *r, const msgpack_object *params)
{
	struct master *m = master__req_master(r);
	struct aep_error e = {0};
	struct join_params p;
	if (parse_params(params, &p, &e) != 0) {
		aep_free(p.csr);
		master__req_error(r, e.code, e.msg);
		return;
	}
	if (!master__is_leader(m)) {
		aep_free(p.csr);
		master__req_forward(r, params);
		return;
	}
	struct aep_buf b;
	aep_buf_init(&b);
	if (join(m, &p, &b, &e) != 0) {
		master__req_error(r, e.code, e.msg);
	} else {
		fprintf(stderr,
			"aep master %s: signed a certificate for system:node:%s (token %.6s)\n",
			m->name, p.name, p.token);
		master__req_reply(r, b.data, b.len);
	}
	aep_buf_free(&b);
	aep_free(p.csr);
}
