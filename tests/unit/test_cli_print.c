/* Printers: YAML and JSON output look like kubectl's and parse back to the
 * same msgpack (round trip through the manifest loader). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/cli.h"

typedef int (*print_fn)(FILE *f, const msgpack_object *o);

/* Print @o with @fn into a heap string (free()). */
static char *print_to_string(print_fn fn, const msgpack_object *o)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	assert_int_equal(fn(f, o), 0);
	fclose(f);
	return text;
}

static void unpack(const struct aep_buf *b, msgpack_zone *z, msgpack_object *o)
{
	struct aep_error e = {0};
	assert_int_equal(aep_mp_unpack(b->data, b->len, z, o, &e), 0);
}

/* Parse @text, print it with @fn, parse the output: same msgpack bytes. */
static char *round_trip(const char *text, print_fn fn)
{
	struct aep_docs a, b;
	struct aep_error e = {0};
	assert_int_equal(aep_manifest_parse(text, strlen(text), &a, &e), 0);
	assert_int_equal(a.n, 1);
	msgpack_zone z;
	msgpack_zone_init(&z, 4096);
	msgpack_object o;
	unpack(&a.items[0], &z, &o);
	char *out = print_to_string(fn, &o);
	if (aep_manifest_parse(out, strlen(out), &b, &e) != 0)
		fail_msg("output does not parse: %s\n%s", e.msg, out);
	assert_int_equal(b.n, 1);
	if (a.items[0].len != b.items[0].len ||
	    memcmp(a.items[0].data, b.items[0].data, a.items[0].len) != 0)
		fail_msg("round trip changed the object:\n%s", out);
	msgpack_zone_destroy(&z);
	aep_docs_free(&a);
	aep_docs_free(&b);
	return out;
}

static const char pod[] =
    "apiVersion: v1\n"
    "kind: Pod\n"
    "metadata:\n"
    "  name: web\n"
    "  namespace: default\n"
    "  labels:\n"
    "    app: web\n"
    "    version: \"2\"\n"
    "  annotations: {}\n"
    "  resourceVersion: \"4295032832\"\n"
    "  creationTimestamp: \"2026-11-27T23:28:38Z\"\n"
    "  generation: 1\n"
    "spec:\n"
    "  containers:\n"
    "  - name: web\n"
    "    image: nginx:1.25\n"
    "    args: [\"--port\", \"8080\", \"true\", \"yes\", \"\", \"~\", \"1.5\"]\n"
    "    ports:\n"
    "    - containerPort: 80\n"
    "  nodeName: null\n"
    "  ratio: 0.1\n"
    "  whole: 2.0\n"
    "  negative: -12\n"
    "  enabled: false\n"
    "  script: |\n"
    "    echo one\n"
    "    echo two\n"
    "  leadingSpace: \" x\"\n"
    "  colon: \"a: b\"\n"
    "  hash: \"#nope\"\n"
    "  dash: \"- item\"\n"
    "  star: \"*ref\"\n"
    "  unicode: \"h\xc3\xa9llo\"\n"
    "status: {}\n";

static void test_yaml_round_trip(void **state)
{
	(void)state;
	char *out = round_trip(pod, aep_print_yaml);
	/* strings that look like other types are quoted, like kubectl */
	assert_non_null(strstr(out, "resourceVersion: \"4295032832\"\n"));
	assert_non_null(strstr(out, "creationTimestamp: \"2026-11-27T23:28:38Z\"\n"));
	assert_non_null(strstr(out, "version: \"2\"\n"));
	assert_non_null(strstr(out, "- \"8080\"\n"));
	assert_non_null(strstr(out, "- \"true\"\n"));
	assert_non_null(strstr(out, "- \"yes\"\n"));
	/* block style, sequences not indented inside maps (kubectl -o yaml) */
	assert_non_null(
	    strstr(out, "spec:\n  containers:\n  - name: web\n    image: nginx:1.25\n"));
	assert_non_null(strstr(out, "generation: 1\n"));
	assert_non_null(strstr(out, "annotations: {}\n"));
	assert_non_null(strstr(out, "nodeName: null\n"));
	assert_non_null(strstr(out, "whole: 2.0\n"));
	assert_non_null(strstr(out, "ratio: 0.1\n"));
	assert_non_null(strstr(out, "script: |\n    echo one\n    echo two\n"));
	assert_null(strstr(out, "---"));
	free(out);
}

static void test_json_round_trip(void **state)
{
	(void)state;
	char *out = round_trip(pod, aep_print_json);
	assert_non_null(strstr(out, "{\n    \"apiVersion\": \"v1\",\n    \"kind\": \"Pod\",\n"));
	assert_non_null(strstr(out, "        \"name\": \"web\",\n"));
	assert_non_null(strstr(out, "\"resourceVersion\": \"4295032832\""));
	assert_non_null(strstr(out, "\"generation\": 1\n"));
	assert_non_null(strstr(out, "\"enabled\": false"));
	assert_non_null(strstr(out, "\"nodeName\": null"));
	assert_non_null(strstr(out, "\"script\": \"echo one\\necho two\\n\""));
	assert_int_equal(out[strlen(out) - 1], '\n');
	free(out);
}

static void test_binary_and_special_values(void **state)
{
	(void)state;
	struct aep_buf b;
	aep_buf_init(&b);
	msgpack_packer pk;
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 5);
	aep_pack_str(&pk, "data");
	msgpack_pack_bin(&pk, 4);
	msgpack_pack_bin_body(&pk, "\x00\xff\x10z", 4);
	aep_pack_str(&pk, "big");
	msgpack_pack_uint64(&pk, UINT64_MAX);
	aep_pack_str(&pk, "min");
	msgpack_pack_int64(&pk, INT64_MIN);
	aep_pack_str(&pk, "list");
	msgpack_pack_array(&pk, 0);
	aep_pack_str(&pk, "bad");
	aep_pack_strn(&pk,
		      "a\xff"
		      "b",
		      3);
	assert_false(b.failed);

	msgpack_zone z;
	msgpack_zone_init(&z, 1024);
	msgpack_object o;
	unpack(&b, &z, &o);

	char *y = print_to_string(aep_print_yaml, &o);
	assert_non_null(strstr(y, "data: !!binary AP8Qeg==\n"));
	assert_non_null(strstr(y, "big: 18446744073709551615\n"));
	assert_non_null(strstr(y, "min: -9223372036854775808\n"));
	assert_non_null(strstr(y, "list: []\n"));
	assert_non_null(strstr(y, "bad: a\xef\xbf\xbd"
				  "b\n")); /* U+FFFD for the bad byte */
	struct aep_docs d;
	struct aep_error e = {0};
	assert_int_equal(aep_manifest_parse(y, strlen(y), &d, &e), 0);
	msgpack_object back;
	unpack(&d.items[0], &z, &back);
	const msgpack_object *data = aep_mp_map_get(&back, "data");
	assert_int_equal(data->type, MSGPACK_OBJECT_BIN);
	assert_int_equal(data->via.bin.size, 4);
	assert_memory_equal(data->via.bin.ptr, "\x00\xff\x10z", 4);
	assert_true(aep_mp_map_get(&back, "big")->via.u64 == UINT64_MAX);
	assert_true(aep_mp_map_get(&back, "min")->via.i64 == INT64_MIN);
	aep_docs_free(&d);

	char *j = print_to_string(aep_print_json, &o);
	assert_non_null(strstr(j, "\"data\": \"AP8Qeg==\""));
	assert_non_null(strstr(j, "\"min\": -9223372036854775808"));
	assert_non_null(strstr(j, "\"list\": []"));
	free(y);
	free(j);
	msgpack_zone_destroy(&z);
	aep_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_yaml_round_trip),
	    cmocka_unit_test(test_json_round_trip),
	    cmocka_unit_test(test_binary_and_special_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
