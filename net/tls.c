/* TLS contexts (OpenSSL 3, TLS 1.3 only) and address parsing.
 *
 * The server asks every client for a certificate and verifies the one it
 * gets against the CA, but lets a client without one in: identity is
 * decided above this layer (aep_rpc_conn_identity() is NULL then). The
 * client verifies the server against the CA and checks the name or IP
 * address it dialled against the certificate's subject alternative names
 * (per connection, in conn.c). */
#include "net/net-int.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

int net__tls_error(struct aep_error *e, int code, const char *what)
{
	char buf[256] = "";
	unsigned long err;
	unsigned long last = 0;

	/* The first error is usually the root cause ("no such file"), the
	 * last the operation that failed; keep the first. */
	while ((err = ERR_get_error()) != 0) {
		if (last == 0)
			ERR_error_string_n(err, buf, sizeof(buf));
		last = err;
	}
	if (last == 0)
		return aep_errorf(e, code, "%s", what);
	return aep_errorf(e, code, "%s: %s", what, buf);
}

static int tls_new(bool server, const char *ca_file, const char *cert_file, const char *key_file,
		   struct aep_tls **out, struct aep_error *e)
{
	struct aep_tls *t;
	int rv;

	ERR_clear_error();
	t = aep_calloc(1, sizeof(*t));
	if (t == NULL)
		return aep_errorf(e, AEP_ENOMEM, "tls: out of memory");
	t->server = server;
	t->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (t->ctx == NULL) {
		rv = net__tls_error(e, AEP_ENOMEM, "tls: SSL_CTX_new");
		goto err_after_alloc;
	}
	if (SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(t->ctx, TLS1_3_VERSION) != 1) {
		rv = net__tls_error(e, AEP_EINTERNAL, "tls: cannot require TLS 1.3");
		goto err_after_ctx;
	}
	SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
	if (ca_file == NULL) {
		rv = aep_errorf(e, AEP_EINVALID, "tls: a CA file is required");
		goto err_after_ctx;
	}
	if (SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL) != 1) {
		rv = net__tls_error(e, AEP_EINVALID, "tls: load CA");
		aep_error_prefix(e, "%s", ca_file);
		goto err_after_ctx;
	}
	if (server && cert_file == NULL) {
		rv = aep_errorf(e, AEP_EINVALID, "tls: a server needs a certificate and key");
		goto err_after_ctx;
	}
	if (cert_file != NULL) {
		if (key_file == NULL) {
			rv = aep_errorf(e, AEP_EINVALID, "tls: %s: no key file", cert_file);
			goto err_after_ctx;
		}
		if (SSL_CTX_use_certificate_chain_file(t->ctx, cert_file) != 1) {
			rv = net__tls_error(e, AEP_EINVALID, "tls: load certificate");
			aep_error_prefix(e, "%s", cert_file);
			goto err_after_ctx;
		}
		if (SSL_CTX_use_PrivateKey_file(t->ctx, key_file, SSL_FILETYPE_PEM) != 1) {
			rv = net__tls_error(e, AEP_EINVALID, "tls: load key");
			aep_error_prefix(e, "%s", key_file);
			goto err_after_ctx;
		}
		if (SSL_CTX_check_private_key(t->ctx) != 1) {
			rv = net__tls_error(e, AEP_EINVALID, "tls: key does not match certificate");
			aep_error_prefix(e, "%s", key_file);
			goto err_after_ctx;
		}
	}
	if (server) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
		if (names != NULL)
			SSL_CTX_set_client_CA_list(t->ctx, names);
		/* Our clients do not resume sessions: tickets are wasted bytes. */
		SSL_CTX_set_num_tickets(t->ctx, 0);
		SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
	}
	/* Server: a certificate is optional, but one that is sent must verify. */
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	ERR_clear_error();
	*out = t;
	return 0;

err_after_ctx:
	SSL_CTX_free(t->ctx);
err_after_alloc:
	aep_free(t);
	ERR_clear_error();
	return rv;
}

int aep_tls_server_new(const char *ca_file, const char *cert_file, const char *key_file,
		       struct aep_tls **out, struct aep_error *e)
{
	return tls_new(true, ca_file, cert_file, key_file, out, e);
}

int aep_tls_client_new(const char *ca_file, const char *cert_file, const char *key_file,
		       struct aep_tls **out, struct aep_error *e)
{
	return tls_new(false, ca_file, cert_file, key_file, out, e);
}

void aep_tls_free(struct aep_tls *t)
{
	if (t == NULL)
		return;
	/* Connections hold their own reference to the context. */
	SSL_CTX_free(t->ctx);
	aep_free(t);
}

int net__addr_split(const char *addr, char *host, size_t host_size, unsigned *port,
		    struct aep_error *e)
{
	const char *h;
	size_t hlen;
	const char *p;

	if (addr == NULL || addr[0] == '\0')
		return aep_errorf(e, AEP_EINVALID, "empty address");
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (close == NULL || close[1] != ':')
			return aep_errorf(e, AEP_EINVALID, "address %s: expected [ipv6]:port",
					  addr);
		h = addr + 1;
		hlen = (size_t)(close - h);
		p = close + 2;
	} else {
		const char *colon = strrchr(addr, ':');
		if (colon == NULL)
			return aep_errorf(e, AEP_EINVALID, "address %s: expected host:port", addr);
		if (memchr(addr, ':', (size_t)(colon - addr)) != NULL)
			return aep_errorf(e, AEP_EINVALID,
					  "address %s: IPv6 addresses need brackets: [addr]:port",
					  addr);
		h = addr;
		hlen = (size_t)(colon - addr);
		p = colon + 1;
	}
	if (hlen == 0)
		return aep_errorf(e, AEP_EINVALID, "address %s: empty host", addr);
	if (hlen >= host_size || hlen > 253)
		return aep_errorf(e, AEP_EINVALID, "address %.64s...: host too long", addr);
	if (p[0] == '\0' || strlen(p) > 5)
		return aep_errorf(e, AEP_EINVALID, "address %s: bad port", addr);
	unsigned v = 0;
	for (const char *q = p; *q != '\0'; q++) {
		if (*q < '0' || *q > '9')
			return aep_errorf(e, AEP_EINVALID, "address %s: bad port", addr);
		v = v * 10 + (unsigned)(*q - '0');
	}
	if (v > 65535)
		return aep_errorf(e, AEP_EINVALID, "address %s: port out of range", addr);
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = v;
	return 0;
}

int aep_addr_parse(const char *addr, struct sockaddr_storage *out, struct aep_error *e)
{
	char host[256];
	unsigned port = 0;
	int rv = net__addr_split(addr, host, sizeof(host), &port, e);
	if (rv != 0)
		return rv;

	memset(out, 0, sizeof(*out));
	struct sockaddr_in *in4 = (struct sockaddr_in *)out;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		return 0;
	}
	if (addr[0] == '[')
		return aep_errorf(e, AEP_EINVALID, "address %s: bad IPv6 address", addr);

	/* A name: resolved once, here (names are for local use, e.g.
	 * "localhost"; the cluster's addresses are IPs). IPv4 first. */
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	int families[] = {AF_INET, AF_INET6};
	int grv = EAI_NONAME;
	for (size_t i = 0; i < 2 && res == NULL; i++) {
		hints.ai_family = families[i];
		grv = getaddrinfo(host, NULL, &hints, &res);
		if (grv != 0)
			res = NULL;
	}
	if (res == NULL)
		return aep_errorf(e, AEP_EINVALID, "address %s: %s", addr, gai_strerror(grv));
	if (res->ai_addrlen > sizeof(*out)) {
		freeaddrinfo(res);
		return aep_errorf(e, AEP_EINVALID, "address %s: unexpected address size", addr);
	}
	memcpy(out, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	if (out->ss_family == AF_INET)
		in4->sin_port = htons((uint16_t)port);
	else
		in6->sin6_port = htons((uint16_t)port);
	return 0;
}
