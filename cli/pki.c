/* Certificates for `aep admin init` (OpenSSL 3): a cluster CA, one
 * certificate per master (server and client: masters also dial each other),
 * an admin client certificate and the admin.conf that points at them.
 *
 * Keys are ECDSA P-256, certificates are signed with SHA-256. Private keys
 * are created with mode 0600 (O_EXCL: an existing file is never
 * overwritten). Inputs are checked before anything is written, so bad input
 * changes nothing; an I/O failure half-way leaves the files written so far
 * (init refuses to run again over an existing CA: remove the directory). */
#include "cli/cli.h"
#include "cli/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CA_DAYS	  (10 * 365)
#define CERT_DAYS (5 * 365)

static int ssl_err(struct aep_error *e, const char *what)
{
	unsigned long code = ERR_get_error();
	char buf[256] = "unknown error";
	if (code != 0)
		ERR_error_string_n(code, buf, sizeof(buf));
	ERR_clear_error();
	return aep_errorf(e, AEP_EINTERNAL, "%s: %s", what, buf);
}

static EVP_PKEY *key_new(struct aep_error *e)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	if (k == NULL)
		ssl_err(e, "generate P-256 key");
	return k;
}

static bool is_ip(const char *host)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Split "host:port" / "[v6]:port" into @host. Returns false when malformed. */
static bool addr_host(const char *addr, char *host, size_t size)
{
	const char *end;
	const char *start = addr;
	if (addr[0] == '[') {
		start = addr + 1;
		end = strchr(start, ']');
		if (end == NULL || end[1] != ':')
			return false;
	} else {
		end = strrchr(addr, ':');
		if (end == NULL)
			return false;
	}
	size_t n = (size_t)(end - start);
	if (n == 0 || n >= size)
		return false;
	memcpy(host, start, n);
	host[n] = '\0';
	const char *port = strrchr(addr, ':') + 1;
	char *pend;
	long p = strtol(port, &pend, 10);
	return *port != '\0' && *pend == '\0' && p > 0 && p < 65536;
}

/* "a,b,IP:c,DNS:d" -> "DNS:a,IP:b,IP:c,DNS:d" for X509V3_EXT_conf_nid. */
static char *san_text(const char *sans)
{
	struct aep_buf b;
	aep_buf_init(&b);
	const char *p = sans;
	while (*p != '\0') {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		char item[300];
		if (n > 0 && n < sizeof(item)) {
			memcpy(item, p, n);
			item[n] = '\0';
			if (strncmp(item, "IP:", 3) == 0 || strncmp(item, "DNS:", 4) == 0)
				aep_buf_printf(&b, "%s%s", b.len ? "," : "", item);
			else
				aep_buf_printf(&b, "%s%s:%s", b.len ? "," : "",
					       is_ip(item) ? "IP" : "DNS", item);
		}
		p += n;
		if (*p == ',')
			p++;
	}
	if (aep_buf_append(&b, "", 1) != 0 || b.failed) {
		aep_buf_free(&b);
		return NULL;
	}
	return aep_buf_steal(&b, NULL);
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value, struct aep_error *e)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (ext == NULL)
		return ssl_err(e, "certificate extension");
	int ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : ssl_err(e, "add certificate extension");
}

struct cert_spec {
	const char *cn;
	const char *org;  /* may be NULL */
	const char *sans; /* X509v3 syntax, may be NULL */
	bool ca;
	const char *eku; /* may be NULL */
	int days;
};

/* A certificate for @key per @s, signed by @ca_key (self-signed when
 * @ca_cert is NULL). Returns NULL with @e set on failure. */
static X509 *cert_make(const struct cert_spec *s, EVP_PKEY *key, X509 *ca_cert, EVP_PKEY *ca_key,
		       struct aep_error *e)
{
	X509 *c = X509_new();
	if (c == NULL) {
		ssl_err(e, "X509_new");
		return NULL;
	}
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	if (RAND_bytes(serial, sizeof(serial)) != 1) {
		ssl_err(e, "random serial");
		goto err_after_cert;
	}
	serial[0] &= 0x7f;
	serial[0] |= 0x01; /* positive and 16 bytes long */
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c)) == NULL) {
		ssl_err(e, "serial");
		goto err_after_cert;
	}
	X509_NAME *name = X509_get_subject_name(c);
	if (!X509_set_version(c, 2) || X509_gmtime_adj(X509_getm_notBefore(c), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(c), (long)s->days * 86400) == NULL ||
	    !X509_set_pubkey(c, key) ||
	    (s->org != NULL &&
	     !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)s->org,
					 -1, -1, 0)) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)s->cn, -1,
					-1, 0) ||
	    !X509_set_issuer_name(c, ca_cert ? X509_get_subject_name(ca_cert) : name)) {
		ssl_err(e, "certificate fields");
		goto err_after_cert;
	}
	if (s->ca) {
		if (add_ext(c, ca_cert, NID_basic_constraints, "critical,CA:TRUE", e) != 0 ||
		    add_ext(c, ca_cert, NID_key_usage,
			    "critical,keyCertSign,cRLSign,digitalSignature", e) != 0)
			goto err_after_cert;
	} else {
		if (add_ext(c, ca_cert, NID_basic_constraints, "critical,CA:FALSE", e) != 0 ||
		    add_ext(c, ca_cert, NID_key_usage, "critical,digitalSignature,keyAgreement",
			    e) != 0)
			goto err_after_cert;
	}
	if (add_ext(c, ca_cert, NID_subject_key_identifier, "hash", e) != 0)
		goto err_after_cert;
	if (ca_cert != NULL &&
	    add_ext(c, ca_cert, NID_authority_key_identifier, "keyid:always", e) != 0)
		goto err_after_cert;
	if (s->eku != NULL && add_ext(c, ca_cert, NID_ext_key_usage, s->eku, e) != 0)
		goto err_after_cert;
	if (s->sans != NULL && *s->sans != '\0' &&
	    add_ext(c, ca_cert, NID_subject_alt_name, s->sans, e) != 0)
		goto err_after_cert;
	if (X509_sign(c, ca_key ? ca_key : key, EVP_sha256()) == 0) {
		ssl_err(e, "sign certificate");
		goto err_after_cert;
	}
	BN_free(bn);
	return c;
err_after_cert:
	BN_free(bn);
	X509_free(c);
	return NULL;
}

/* Create @path (never overwriting) with @mode and write PEM into it. */
static int write_pem(const char *path, mode_t mode, X509 *cert, EVP_PKEY *key, struct aep_error *e)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return aep_errorf(e, errno == EEXIST ? AEP_EEXISTS : AEP_EIO, "create %s: %s", path,
				  strerror(errno));
	fchmod(fd, mode); /* whatever the umask */
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		return aep_errorf(e, AEP_EIO, "fdopen %s: %s", path, strerror(errno));
	}
	int ok = cert ? PEM_write_X509(f, cert)
		      : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	int rv = 0;
	if (!ok)
		rv = ssl_err(e, path);
	if (fclose(f) != 0 && rv == 0)
		rv = aep_errorf(e, AEP_EIO, "write %s: %s", path, strerror(errno));
	return rv;
}

static int write_pair(const char *crt_path, const char *key_path, X509 *c, EVP_PKEY *k,
		      struct aep_error *e)
{
	int rv = write_pem(key_path, 0600, NULL, k, e);
	if (rv == 0)
		rv = write_pem(crt_path, 0644, c, NULL, e);
	return rv;
}

/* Issue and write one leaf certificate signed by @ca. */
static int issue(X509 *ca, EVP_PKEY *ca_key, const struct cert_spec *s, const char *crt_path,
		 const char *key_path, struct aep_error *e)
{
	EVP_PKEY *k = key_new(e);
	if (k == NULL)
		return e->code;
	X509 *c = cert_make(s, k, ca, ca_key, e);
	int rv = c == NULL ? e->code : write_pair(crt_path, key_path, c, k, e);
	X509_free(c);
	EVP_PKEY_free(k);
	return rv;
}

/* Read DIR/pki/ca.crt and ca.key. On success the caller owns *@ca and
 * *@ca_key; on failure nothing is left allocated. */
static int load_ca(const char *dir, X509 **ca, EVP_PKEY **ca_key, struct aep_error *e)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/pki/ca.crt", dir);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return aep_errorf(e, AEP_ENOTFOUND, "open %s: %s", path, strerror(errno));
	*ca = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (*ca == NULL)
		return ssl_err(e, path);
	snprintf(path, sizeof(path), "%s/pki/ca.key", dir);
	f = fopen(path, "r");
	if (f == NULL) {
		X509_free(*ca);
		return aep_errorf(e, AEP_ENOTFOUND, "open %s: %s", path, strerror(errno));
	}
	*ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (*ca_key == NULL) {
		X509_free(*ca);
		return ssl_err(e, path);
	}
	return 0;
}

int aep_pki_issue(const char *dir, const char *cn, const char *org, const char *sans,
		  const char *crt_path, const char *key_path, struct aep_error *e)
{
	if (cn == NULL || *cn == '\0' || strlen(cn) > 64)
		return aep_errorf(e, AEP_EINVALID, "common name must be 1 to 64 characters");
	X509 *ca = NULL;
	EVP_PKEY *ca_key = NULL;
	int rv = load_ca(dir, &ca, &ca_key, e);
	if (rv != 0)
		return rv;
	char *san = NULL;
	if (sans != NULL && *sans != '\0') {
		san = san_text(sans);
		if (san == NULL) {
			rv = aep_errorf(e, AEP_ENOMEM, "out of memory");
			goto err_after_ca;
		}
	}
	struct cert_spec s = {cn, org, san, false, "serverAuth,clientAuth", CERT_DAYS};
	rv = issue(ca, ca_key, &s, crt_path, key_path, e);
	aep_free(san);
err_after_ca:
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return rv;
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return s[0] != '-' && s[n - 1] != '-';
}

static int mkdir_p(const char *path, mode_t mode, struct aep_error *e)
{
	if (mkdir(path, mode) == 0 || errno == EEXIST)
		return 0;
	return aep_errorf(e, AEP_EIO, "mkdir %s: %s", path, strerror(errno));
}

static int write_conf(const char *dir, const char *abs_dir, const struct aep_pki_master *m,
		      size_t n, struct aep_error *e)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/admin.conf", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return aep_errorf(e, errno == EEXIST ? AEP_EEXISTS : AEP_EIO, "create %s: %s", path,
				  strerror(errno));
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		return aep_errorf(e, AEP_EIO, "fdopen %s: %s", path, strerror(errno));
	}
	fprintf(f, "# AEP client configuration, written by aep admin init\nservers: \"");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%s", i ? "," : "", m[i].addr);
	fprintf(
	    f, "\"\nca: \"%s/pki/ca.crt\"\ncert: \"%s/pki/admin.crt\"\nkey: \"%s/pki/admin.key\"\n",
	    abs_dir, abs_dir, abs_dir);
	if (fclose(f) != 0)
		return aep_errorf(e, AEP_EIO, "write %s: %s", path, strerror(errno));
	return 0;
}

int aep_pki_init(const char *dir, const struct aep_pki_master *masters, size_t n,
		 struct aep_error *e)
{
	char path[4096], key_path[4096], host[256], sans[600];
	if (n == 0)
		return aep_errorf(e, AEP_EINVALID, "at least one master is needed");
	if (strlen(dir) > 3000)
		return aep_errorf(e, AEP_EINVALID, "directory name too long");
	for (size_t i = 0; i < n; i++) {
		if (!name_ok(masters[i].name))
			return aep_errorf(e, AEP_EINVALID,
					  "master name \"%s\": must be a DNS label (lower case "
					  "letters, digits, '-')",
					  masters[i].name);
		if (strcmp(masters[i].name, "admin") == 0 || strcmp(masters[i].name, "ca") == 0)
			return aep_errorf(e, AEP_EINVALID, "master name \"%s\" is reserved",
					  masters[i].name);
		if (!addr_host(masters[i].addr, host, sizeof(host)))
			return aep_errorf(e, AEP_EINVALID,
					  "master %s: address \"%s\": expected host:port",
					  masters[i].name, masters[i].addr);
		for (size_t j = 0; j < i; j++) {
			if (strcmp(masters[i].name, masters[j].name) == 0)
				return aep_errorf(e, AEP_EINVALID, "master name \"%s\" given twice",
						  masters[i].name);
		}
	}
	snprintf(path, sizeof(path), "%s/pki/ca.crt", dir);
	if (access(path, F_OK) == 0)
		return aep_errorf(e, AEP_EEXISTS,
				  "%s already exists: refusing to replace the cluster CA", path);
	int rv = mkdir_p(dir, 0755, e);
	if (rv != 0)
		return rv;
	char *abs_dir = realpath(dir, NULL); /* libc malloc */
	if (abs_dir == NULL)
		return aep_errorf(e, AEP_EIO, "realpath %s: %s", dir, strerror(errno));
	snprintf(path, sizeof(path), "%s/pki", dir);
	rv = mkdir_p(path, 0755, e);
	if (rv != 0)
		goto err_after_abs;

	EVP_PKEY *ca_key = key_new(e);
	if (ca_key == NULL) {
		rv = e->code;
		goto err_after_abs;
	}
	struct cert_spec ca_spec = {"aep-ca", NULL, NULL, true, NULL, CA_DAYS};
	X509 *ca = cert_make(&ca_spec, ca_key, NULL, NULL, e);
	if (ca == NULL) {
		rv = e->code;
		goto err_after_ca_key;
	}
	snprintf(path, sizeof(path), "%s/pki/ca.crt", dir);
	snprintf(key_path, sizeof(key_path), "%s/pki/ca.key", dir);
	rv = write_pair(path, key_path, ca, ca_key, e);
	if (rv != 0)
		goto err_after_ca;

	for (size_t i = 0; i < n; i++) {
		addr_host(masters[i].addr, host, sizeof(host));
		bool ip = is_ip(host);
		snprintf(sans, sizeof(sans), "%s:%s", ip ? "IP" : "DNS", host);
		if (strcmp(host, "127.0.0.1") != 0)
			strcat(sans, ",IP:127.0.0.1");
		if (strcmp(host, "localhost") != 0)
			strcat(sans, ",DNS:localhost");
		struct cert_spec s = {masters[i].name, "system:masters",	sans,
				      false,	       "serverAuth,clientAuth", CERT_DAYS};
		snprintf(path, sizeof(path), "%s/pki/%s.crt", dir, masters[i].name);
		snprintf(key_path, sizeof(key_path), "%s/pki/%s.key", dir, masters[i].name);
		rv = issue(ca, ca_key, &s, path, key_path, e);
		if (rv != 0)
			goto err_after_ca;
	}
	struct cert_spec admin = {"admin", "system:masters", NULL, false, "clientAuth", CERT_DAYS};
	snprintf(path, sizeof(path), "%s/pki/admin.crt", dir);
	snprintf(key_path, sizeof(key_path), "%s/pki/admin.key", dir);
	rv = issue(ca, ca_key, &admin, path, key_path, e);
	if (rv != 0)
		goto err_after_ca;
	rv = write_conf(dir, abs_dir, masters, n, e);
err_after_ca:
	X509_free(ca);
err_after_ca_key:
	EVP_PKEY_free(ca_key);
err_after_abs:
	free(abs_dir);
	return rv;
}

int aep_pki_sign_client(const char *ca_crt, const char *ca_key, struct evp_pkey_st *key,
			const char *cn, const char *org, int days, struct aep_buf *out,
			struct aep_error *e)
{
	if (cn == NULL || *cn == '\0' || strlen(cn) > 64)
		return aep_errorf(e, AEP_EINVALID, "common name must be 1 to 64 characters");
	if (days < 1 || days > CERT_DAYS)
		return aep_errorf(e, AEP_EINVALID, "validity must be 1 to %d days", CERT_DAYS);
	FILE *f = fopen(ca_crt, "r");
	if (f == NULL)
		return aep_errorf(e, AEP_ENOTFOUND, "open %s: %s", ca_crt, strerror(errno));
	X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (ca == NULL)
		return ssl_err(e, ca_crt);
	int rv = 0;
	EVP_PKEY *ca_pkey = NULL;
	X509 *c = NULL;
	BIO *bio = NULL;
	f = fopen(ca_key, "r");
	if (f == NULL) {
		rv = aep_errorf(e, AEP_ENOTFOUND, "open %s: %s", ca_key, strerror(errno));
		goto out;
	}
	ca_pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (ca_pkey == NULL) {
		rv = ssl_err(e, ca_key);
		goto out;
	}
	struct cert_spec s = {cn, org, NULL, false, "clientAuth", days};
	c = cert_make(&s, key, ca, ca_pkey, e);
	if (c == NULL) {
		rv = e->code;
		goto out;
	}
	bio = BIO_new(BIO_s_mem());
	char *pem;
	long n;
	if (bio == NULL || !PEM_write_bio_X509(bio, c) || (n = BIO_get_mem_data(bio, &pem)) <= 0) {
		rv = ssl_err(e, "write the certificate");
		goto out;
	}
	if (aep_buf_append(out, pem, (size_t)n) != 0)
		rv = aep_errorf(e, AEP_ENOMEM, "out of memory");
out:
	BIO_free(bio);
	X509_free(c);
	EVP_PKEY_free(ca_pkey);
	X509_free(ca);
	return rv;
}
