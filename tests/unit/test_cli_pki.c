/* aep admin init's certificates: the files, their modes, chains that
 * openssl verify accepts, subject alternative names that host name checking
 * accepts (X509 API and a real TLS 1.3 handshake with Python's ssl), and
 * refusals (second init, bad input that must change nothing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cli/cli.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/aep-test-pki-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static const struct aep_pki_master masters[] = {
    {"m1", "127.0.0.1:7001"},
    {"m2", "localhost:7002"},
    {"m3", "127.0.0.3:7003"},
};

static void init_cluster(void)
{
	struct aep_error e = {0};
	int rv = aep_pki_init(dir, masters, 3, &e);
	if (rv != 0)
		fail_msg("aep_pki_init: %s", e.msg);
}

static char *path_of(const char *rel)
{
	static char buf[4][256];
	static int next;
	char *p = buf[next++ % 4];
	snprintf(p, 256, "%s/%s", dir, rel);
	return p;
}

static X509 *load_cert(const char *rel)
{
	FILE *f = fopen(path_of(rel), "r");
	assert_non_null(f);
	X509 *c = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(c);
	return c;
}

static void assert_mode(const char *rel, mode_t mode)
{
	struct stat st;
	assert_int_equal(stat(path_of(rel), &st), 0);
	if ((st.st_mode & 0777) != mode)
		fail_msg("%s has mode %o, want %o", rel, st.st_mode & 0777, mode);
}

static int run(const char *cmd)
{
	int status = system(cmd);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_init_writes_files(void **state)
{
	(void)state;
	init_cluster();
	const char *keys[] = {"pki/ca.key", "pki/m1.key", "pki/m2.key", "pki/m3.key",
			      "pki/admin.key"};
	for (size_t i = 0; i < 5; i++)
		assert_mode(keys[i], 0600);
	const char *certs[] = {"pki/ca.crt", "pki/m1.crt", "pki/m2.crt", "pki/m3.crt",
			       "pki/admin.crt"};
	for (size_t i = 0; i < 5; i++)
		assert_mode(certs[i], 0644);
	assert_mode("admin.conf", 0600);

	/* the configuration it wrote loads, with absolute paths */
	struct aep_cli_config cfg;
	struct aep_error e = {0};
	assert_int_equal(aep_cli_config_load(path_of("admin.conf"), &cfg, &e), 0);
	assert_string_equal(cfg.servers, "127.0.0.1:7001,localhost:7002,127.0.0.3:7003");
	char *real = realpath(dir, NULL);
	char want[512];
	snprintf(want, sizeof(want), "%s/pki/ca.crt", real);
	assert_string_equal(cfg.ca, want);
	snprintf(want, sizeof(want), "%s/pki/admin.crt", real);
	assert_string_equal(cfg.cert, want);
	snprintf(want, sizeof(want), "%s/pki/admin.key", real);
	assert_string_equal(cfg.key, want);
	free(real);
	aep_cli_config_free(&cfg);

	/* a second init refuses and leaves the CA alone */
	FILE *f = fopen(path_of("pki/ca.crt"), "r");
	char before[4096] = {0}, after[4096] = {0};
	assert_true(fread(before, 1, sizeof(before) - 1, f) > 0);
	fclose(f);
	assert_int_equal(aep_pki_init(dir, masters, 3, &e), AEP_EEXISTS);
	assert_non_null(strstr(e.msg, "already exists"));
	f = fopen(path_of("pki/ca.crt"), "r");
	assert_true(fread(after, 1, sizeof(after) - 1, f) > 0);
	fclose(f);
	assert_string_equal(before, after);
}

static void test_certs_verify_against_ca(void **state)
{
	(void)state;
	init_cluster();
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "openssl verify -CAfile '%s/pki/ca.crt' '%s/pki/m1.crt' '%s/pki/m2.crt' "
		 "'%s/pki/admin.crt' >/dev/null",
		 dir, dir, dir, dir);
	assert_int_equal(run(cmd), 0);
	snprintf(cmd, sizeof(cmd),
		 "openssl verify -CAfile '%s/pki/ca.crt' -purpose sslserver '%s/pki/m3.crt' "
		 ">/dev/null && openssl verify -CAfile '%s/pki/ca.crt' -purpose sslclient "
		 "'%s/pki/m3.crt' '%s/pki/admin.crt' >/dev/null",
		 dir, dir, dir, dir, dir);
	assert_int_equal(run(cmd), 0);
	/* the admin certificate is for clients only */
	snprintf(cmd, sizeof(cmd),
		 "openssl verify -CAfile '%s/pki/ca.crt' -purpose sslserver '%s/pki/admin.crt' "
		 ">/dev/null 2>&1",
		 dir, dir);
	assert_int_not_equal(run(cmd), 0);

	X509 *ca = load_cert("pki/ca.crt");
	assert_int_equal(X509_check_ca(ca), 1);
	X509 *m1 = load_cert("pki/m1.crt");
	EVP_PKEY *ca_pub = X509_get0_pubkey(ca);
	assert_int_equal(X509_verify(m1, ca_pub), 1);
	assert_int_equal(X509_get_signature_nid(m1), NID_ecdsa_with_SHA256);
	X509_free(m1);
	X509_free(ca);
}

static void test_sans_and_subjects(void **state)
{
	(void)state;
	init_cluster();
	X509 *m1 = load_cert("pki/m1.crt");
	assert_int_equal(X509_check_ip_asc(m1, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_host(m1, "localhost", 0, 0, NULL), 1);
	assert_int_not_equal(X509_check_ip_asc(m1, "127.0.0.3", 0), 1);
	assert_int_equal(X509_check_purpose(m1, X509_PURPOSE_SSL_SERVER, 0), 1);
	assert_int_equal(X509_check_purpose(m1, X509_PURPOSE_SSL_CLIENT, 0), 1);
	char cn[64];
	X509_NAME_get_text_by_NID(X509_get_subject_name(m1), NID_commonName, cn, sizeof(cn));
	assert_string_equal(cn, "m1");
	X509_free(m1);

	X509 *m2 = load_cert("pki/m2.crt");
	assert_int_equal(X509_check_host(m2, "localhost", 0, 0, NULL), 1);
	assert_int_equal(X509_check_ip_asc(m2, "127.0.0.1", 0), 1);
	X509_free(m2);

	X509 *m3 = load_cert("pki/m3.crt");
	assert_int_equal(X509_check_ip_asc(m3, "127.0.0.3", 0), 1);
	assert_int_equal(X509_check_ip_asc(m3, "127.0.0.1", 0), 1);
	X509_free(m3);

	X509 *admin = load_cert("pki/admin.crt");
	X509_NAME_get_text_by_NID(X509_get_subject_name(admin), NID_commonName, cn, sizeof(cn));
	assert_string_equal(cn, "admin");
	X509_NAME_get_text_by_NID(X509_get_subject_name(admin), NID_organizationName, cn,
				  sizeof(cn));
	assert_string_equal(cn, "system:masters");
	assert_int_equal(X509_check_purpose(admin, X509_PURPOSE_SSL_CLIENT, 0), 1);
	X509_free(admin);
}

/* A real TLS 1.3 handshake on loopback: a Python server with m1's
 * certificate, a Python client that checks the host name "127.0.0.1"
 * against the CA and presents the admin certificate. */
static void test_python_ssl_accepts(void **state)
{
	(void)state;
	if (run("python3 -c 'import ssl' 2>/dev/null") != 0)
		skip();
	init_cluster();
	char script[4096];
	snprintf(script, sizeof(script),
		 "python3 - <<'EOF'\n"
		 "import socket, ssl, threading\n"
		 "d = '%s/pki'\n"
		 "srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
		 "srv.minimum_version = ssl.TLSVersion.TLSv1_3\n"
		 "srv.load_cert_chain(d + '/m1.crt', d + '/m1.key')\n"
		 "srv.load_verify_locations(d + '/ca.crt')\n"
		 "srv.verify_mode = ssl.CERT_REQUIRED\n"
		 "ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen(1)\n"
		 "ls.settimeout(10)\n"
		 "peer = {}\n"
		 "def serve():\n"
		 "    s, _ = ls.accept()\n"
		 "    s.settimeout(10)\n"
		 "    t = srv.wrap_socket(s, server_side=True)\n"
		 "    peer['cn'] = dict(x[0] for x in t.getpeercert()['subject'])['commonName']\n"
		 "    t.sendall(b'ok'); t.close()\n"
		 "th = threading.Thread(target=serve); th.start()\n"
		 "cli = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=d + '/ca.crt')\n"
		 "cli.minimum_version = ssl.TLSVersion.TLSv1_3\n"
		 "cli.load_cert_chain(d + '/admin.crt', d + '/admin.key')\n"
		 "assert cli.check_hostname\n"
		 "c = cli.wrap_socket(socket.create_connection(ls.getsockname(), timeout=10),\n"
		 "                    server_hostname='127.0.0.1')\n"
		 "assert c.recv(2) == b'ok'\n"
		 "c.close(); th.join(10)\n"
		 "assert peer.get('cn') == 'admin', peer\n"
		 "EOF\n",
		 dir);
	assert_int_equal(run(script), 0);
}

static void test_bad_input_changes_nothing(void **state)
{
	(void)state;
	char sub[128];
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	struct aep_error e = {0};
	struct aep_pki_master bad_name[] = {{"M_1", "127.0.0.1:7001"}};
	assert_int_equal(aep_pki_init(sub, bad_name, 1, &e), AEP_EINVALID);
	struct aep_pki_master bad_addr[] = {{"m1", "127.0.0.1"}};
	assert_int_equal(aep_pki_init(sub, bad_addr, 1, &e), AEP_EINVALID);
	assert_non_null(strstr(e.msg, "host:port"));
	struct aep_pki_master twice[] = {{"m1", "127.0.0.1:1"}, {"m1", "127.0.0.1:2"}};
	assert_int_equal(aep_pki_init(sub, twice, 2, &e), AEP_EINVALID);
	assert_int_equal(aep_pki_init(sub, masters, 0, &e), AEP_EINVALID);
	assert_int_not_equal(access(sub, F_OK), 0);
}

static void test_issue(void **state)
{
	(void)state;
	init_cluster();
	struct aep_error e = {0};
	const char *crt = path_of("node1.crt");
	const char *key = path_of("node1.key");
	assert_int_equal(aep_pki_issue(dir, "system:node:n1", "system:nodes",
				       "n1.example,127.0.0.9,DNS:n1", crt, key, &e),
			 0);
	assert_mode("node1.key", 0600);
	X509 *c = load_cert("node1.crt");
	X509 *ca = load_cert("pki/ca.crt");
	assert_int_equal(X509_verify(c, X509_get0_pubkey(ca)), 1);
	assert_int_equal(X509_check_host(c, "n1.example", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(c, "n1", 0, 0, NULL), 1);
	assert_int_equal(X509_check_ip_asc(c, "127.0.0.9", 0), 1);
	char cn[64];
	X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, cn, sizeof(cn));
	assert_string_equal(cn, "system:node:n1");
	X509_free(c);
	X509_free(ca);
	/* never overwrites */
	assert_int_equal(aep_pki_issue(dir, "x", NULL, NULL, crt, path_of("other.key"), &e),
			 AEP_EEXISTS);
	/* needs the CA */
	assert_int_equal(aep_pki_issue("/nonexistent-aep", "x", NULL, NULL, path_of("a.crt"),
				       path_of("a.key"), &e),
			 AEP_ENOTFOUND);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_init_writes_files, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_certs_verify_against_ca, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sans_and_subjects, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_python_ssl_accepts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_input_changes_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_issue, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
