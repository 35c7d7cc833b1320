/* The client configuration: relative paths resolve against the file's
 * directory, servers as a string or a list, the search order --config,
 * $AEP_CONFIG, ~/.aep/config, and clear errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/cli.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/aep-test-config-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	unsetenv("AEP_CONFIG");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	unsetenv("AEP_CONFIG");
	return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *rel, const char *text)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	/* make every directory on the way */
	for (char *s = path + strlen(dir) + 1; (s = strchr(s, '/')) != NULL; s++) {
		*s = '\0';
		mkdir(path, 0755);
		*s = '/';
	}
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void test_relative_paths_and_servers(void **state)
{
	(void)state;
	const char *p = write_file("conf/admin.conf", "servers: 127.0.0.1:7001,127.0.0.1:7002\n"
						      "ca: pki/ca.crt\n"
						      "cert: /abs/admin.crt\n"
						      "key: ../keys/admin.key\n");
	struct aep_cli_config c;
	struct aep_error e = {0};
	assert_int_equal(aep_cli_config_load(p, &c, &e), 0);
	assert_string_equal(c.servers, "127.0.0.1:7001,127.0.0.1:7002");
	char *real = realpath(dir, NULL);
	char want[512];
	snprintf(want, sizeof(want), "%s/conf/pki/ca.crt", real);
	assert_string_equal(c.ca, want);
	assert_string_equal(c.cert, "/abs/admin.crt");
	snprintf(want, sizeof(want), "%s/conf/../keys/admin.key", real);
	assert_string_equal(c.key, want);
	free(real);
	aep_cli_config_free(&c);

	p = write_file("list.conf", "servers:\n- 127.0.0.1:1\n- \"[::1]:2\"\n");
	assert_int_equal(aep_cli_config_load(p, &c, &e), 0);
	assert_string_equal(c.servers, "127.0.0.1:1,[::1]:2");
	assert_null(c.ca);
	aep_cli_config_free(&c);
}

static void test_bad_files(void **state)
{
	(void)state;
	struct aep_cli_config c;
	struct aep_error e = {0};
	const char *p = write_file("typo.conf", "servers: a:1\ncerts: x\n");
	assert_int_equal(aep_cli_config_load(p, &c, &e), AEP_EINVALID);
	assert_non_null(strstr(e.msg, "unknown key \"certs\""));
	p = write_file("noservers.conf", "ca: x\n");
	assert_int_equal(aep_cli_config_load(p, &c, &e), AEP_EINVALID);
	assert_non_null(strstr(e.msg, "no servers"));
	p = write_file("syntax.conf", "servers: a:1\n  ca: [\n");
	assert_int_equal(aep_cli_config_load(p, &c, &e), AEP_EINVALID);
	assert_non_null(strstr(e.msg, "line "));
	assert_null(c.servers);
}

static void test_search_order(void **state)
{
	(void)state;
	struct aep_cli_config c;
	struct aep_error e = {0};
	const char *home_conf = write_file("home/.aep/config", "servers: home:1\n");
	(void)home_conf;
	char home[128];
	snprintf(home, sizeof(home), "%s/home", dir);
	setenv("HOME", home, 1);
	assert_int_equal(aep_cli_config_load(NULL, &c, &e), 0);
	assert_string_equal(c.servers, "home:1");
	aep_cli_config_free(&c);

	char env_path[256];
	snprintf(env_path, sizeof(env_path), "%s", write_file("env.conf", "servers: env:1\n"));
	setenv("AEP_CONFIG", env_path, 1);
	assert_int_equal(aep_cli_config_load(NULL, &c, &e), 0);
	assert_string_equal(c.servers, "env:1");
	aep_cli_config_free(&c);

	const char *flag = write_file("flag.conf", "servers: flag:1\n");
	assert_int_equal(aep_cli_config_load(flag, &c, &e), 0);
	assert_string_equal(c.servers, "flag:1");
	aep_cli_config_free(&c);

	/* a named file that is missing is an error, not a fallback */
	char missing[256];
	snprintf(missing, sizeof(missing), "%s/missing.conf", dir);
	assert_int_equal(aep_cli_config_load(missing, &c, &e), AEP_ENOTFOUND);
	assert_non_null(strstr(e.msg, "missing.conf"));

	/* nothing anywhere */
	unsetenv("AEP_CONFIG");
	snprintf(home, sizeof(home), "%s/nohome", dir);
	setenv("HOME", home, 1);
	assert_int_equal(aep_cli_config_load(NULL, &c, &e), AEP_ENOTFOUND);
	assert_non_null(strstr(e.msg, "--config"));
	assert_non_null(strstr(e.msg, "AEP_CONFIG"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_relative_paths_and_servers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_search_order, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
