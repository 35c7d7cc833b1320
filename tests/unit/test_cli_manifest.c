/* Manifest loading: YAML types, multi-document streams, List expansion,
 * JSON, and refusals (syntax errors with line numbers, duplicate keys,
 * alias and nesting bombs, oversized input). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/cli.h"

struct parsed {
	struct aep_docs docs;
	msgpack_zone zone;
	msgpack_object obj[8];
};

static int parse(const char *text, struct parsed *p, struct aep_error *e)
{
	memset(p, 0, sizeof(*p));
	msgpack_zone_init(&p->zone, 4096);
	int rv = aep_manifest_parse(text, strlen(text), &p->docs, e);
	if (rv != 0)
		return rv;
	for (size_t i = 0; i < p->docs.n && i < 8; i++) {
		struct aep_error ue = {0};
		assert_int_equal(aep_mp_unpack(p->docs.items[i].data, p->docs.items[i].len,
					       &p->zone, &p->obj[i], &ue),
				 0);
	}
	return 0;
}

static void parsed_free(struct parsed *p)
{
	aep_docs_free(&p->docs);
	msgpack_zone_destroy(&p->zone);
}

static const msgpack_object *get(const msgpack_object *o, const char *key)
{
	const msgpack_object *v = aep_mp_map_get(o, key);
	if (v == NULL)
		fail_msg("key %s missing", key);
	return v;
}

static void assert_str(const msgpack_object *o, const char *s)
{
	assert_int_equal(o->type, MSGPACK_OBJECT_STR);
	assert_int_equal(o->via.str.size, strlen(s));
	assert_memory_equal(o->via.str.ptr, s, strlen(s));
}

static void test_scalar_types(void **state)
{
	(void)state;
	const char *y = "kind: Pod\n"
			"i: 42\n"
			"neg: -7\n"
			"hex: 0x1f\n"
			"big: 18446744073709551615\n"
			"f: 1.5\n"
			"exp: 1e3\n"
			"t: true\n"
			"fa: false\n"
			"n1: null\n"
			"n2: ~\n"
			"n3:\n"
			"q1: \"123\"\n"
			"q2: 'true'\n"
			"s: hello world\n"
			"yes: yes\n"
			"tagged: !!str 12\n"
			"tint: !!int \"12\"\n"
			"tfloat: !!float 2\n"
			"bin: !!binary aGVsbG8=\n"
			"ver: 1.2.3\n"
			"lit: |\n"
			"  line1\n"
			"  line2\n";
	struct parsed p;
	struct aep_error e = {0};
	assert_int_equal(parse(y, &p, &e), 0);
	assert_int_equal(p.docs.n, 1);
	const msgpack_object *o = &p.obj[0];
	assert_int_equal(get(o, "i")->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	assert_int_equal(get(o, "i")->via.u64, 42);
	assert_int_equal(get(o, "neg")->type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
	assert_int_equal(get(o, "neg")->via.i64, -7);
	assert_int_equal(get(o, "hex")->via.u64, 31);
	assert_true(get(o, "big")->via.u64 == UINT64_MAX);
	assert_int_equal(get(o, "f")->type, MSGPACK_OBJECT_FLOAT64);
	assert_true(get(o, "f")->via.f64 == 1.5);
	assert_true(get(o, "exp")->via.f64 == 1000.0);
	assert_int_equal(get(o, "t")->type, MSGPACK_OBJECT_BOOLEAN);
	assert_true(get(o, "t")->via.boolean);
	assert_false(get(o, "fa")->via.boolean);
	assert_int_equal(get(o, "n1")->type, MSGPACK_OBJECT_NIL);
	assert_int_equal(get(o, "n2")->type, MSGPACK_OBJECT_NIL);
	assert_int_equal(get(o, "n3")->type, MSGPACK_OBJECT_NIL);
	assert_str(get(o, "q1"), "123");
	assert_str(get(o, "q2"), "true");
	assert_str(get(o, "s"), "hello world");
	assert_str(get(o, "yes"), "yes"); /* YAML 1.2: yes is a string */
	assert_str(get(o, "tagged"), "12");
	assert_int_equal(get(o, "tint")->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	assert_int_equal(get(o, "tint")->via.u64, 12);
	assert_int_equal(get(o, "tfloat")->type, MSGPACK_OBJECT_FLOAT64);
	assert_int_equal(get(o, "bin")->type, MSGPACK_OBJECT_BIN);
	assert_int_equal(get(o, "bin")->via.bin.size, 5);
	assert_memory_equal(get(o, "bin")->via.bin.ptr, "hello", 5);
	assert_str(get(o, "ver"), "1.2.3");
	assert_str(get(o, "lit"), "line1\nline2\n");
	parsed_free(&p);
}

static void test_multi_document(void **state)
{
	(void)state;
	const char *y = "# leading comment\n"
			"---\n"
			"kind: Pod\n"
			"metadata: {name: a}\n"
			"---\n"
			"# an empty document is skipped\n"
			"---\n"
			"kind: Service\n"
			"metadata:\n"
			"  name: b\n"
			"  labels:\n"
			"    app: web\n"
			"...\n";
	struct parsed p;
	struct aep_error e = {0};
	assert_int_equal(parse(y, &p, &e), 0);
	assert_int_equal(p.docs.n, 2);
	assert_str(get(&p.obj[0], "kind"), "Pod");
	assert_str(get(get(&p.obj[0], "metadata"), "name"), "a");
	assert_str(get(&p.obj[1], "kind"), "Service");
	assert_str(get(get(get(&p.obj[1], "metadata"), "labels"), "app"), "web");
	parsed_free(&p);
}

static void test_list_expanded(void **state)
{
	(void)state;
	const char *y = "apiVersion: v1\n"
			"kind: List\n"
			"items:\n"
			"- kind: Pod\n"
			"  metadata: {name: p1}\n"
			"- kind: Pod\n"
			"  metadata: {name: p2}\n"
			"---\n"
			"kind: Namespace\n"
			"metadata: {name: n}\n";
	struct parsed p;
	struct aep_error e = {0};
	assert_int_equal(parse(y, &p, &e), 0);
	assert_int_equal(p.docs.n, 3);
	assert_str(get(get(&p.obj[0], "metadata"), "name"), "p1");
	assert_str(get(get(&p.obj[1], "metadata"), "name"), "p2");
	assert_str(get(&p.obj[2], "kind"), "Namespace");
	parsed_free(&p);
}

static void test_json(void **state)
{
	(void)state;
	const char *j = "{\n"
			"\t\"kind\": \"Pod\",\n"
			"\t\"metadata\": {\"name\": \"web\", \"labels\": {\"app\": \"web\"}},\n"
			"\t\"spec\": {\"containers\": [{\"name\": \"c\", \"image\": \"busybox\", "
			"\"ports\": [{\"containerPort\": 80}]}], \"x\": 1.25, \"y\": null, "
			"\"z\": false, \"s\": \"42\"}\n"
			"}\n";
	struct parsed p;
	struct aep_error e = {0};
	assert_int_equal(parse(j, &p, &e), 0);
	assert_int_equal(p.docs.n, 1);
	const msgpack_object *spec = get(&p.obj[0], "spec");
	const msgpack_object *c = get(spec, "containers");
	assert_int_equal(c->type, MSGPACK_OBJECT_ARRAY);
	assert_int_equal(c->via.array.size, 1);
	const msgpack_object *port =
	    get(&get(&c->via.array.ptr[0], "ports")->via.array.ptr[0], "containerPort");
	assert_int_equal(port->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	assert_int_equal(port->via.u64, 80);
	assert_true(get(spec, "x")->via.f64 == 1.25);
	assert_int_equal(get(spec, "y")->type, MSGPACK_OBJECT_NIL);
	assert_int_equal(get(spec, "z")->type, MSGPACK_OBJECT_BOOLEAN);
	assert_str(get(spec, "s"), "42");
	parsed_free(&p);
}

static void expect_error(const char *text, int code, const char *needle)
{
	struct aep_docs d;
	struct aep_error e = {0};
	int rv = aep_manifest_parse(text, strlen(text), &d, &e);
	if (rv != code || strstr(e.msg, needle) == NULL)
		fail_msg("want %d containing \"%s\", got %d \"%s\"", code, needle, rv, e.msg);
	assert_int_equal(d.n, 0);
}

static void test_errors_name_the_line(void **state)
{
	(void)state;
	expect_error("kind: Pod\nmetadata:\n  name: a\n   bad: indent\n", AEP_EINVALID, "line 4");
	expect_error("kind: Pod\nspec: [1, 2\n", AEP_EINVALID, "line ");
	expect_error("kind: Pod\nmetadata:\n  name: a\n  name: b\n", AEP_EINVALID,
		     "line 4: duplicate key \"name\"");
	expect_error("a: 1\nb: 2\na: 3\n", AEP_EINVALID, "line 3: duplicate key \"a\"");
	expect_error("{\"a\": 1, \"a\": 2}", AEP_EINVALID, "duplicate key \"a\"");
	expect_error("kind: Pod\nx: !!int abc\n", AEP_EINVALID,
		     "line 2: \"abc\" is not a valid !!int");
	expect_error("kind: Pod\nx: !foo bar\n", AEP_EINVALID, "line 2: unsupported tag !foo");
	expect_error("kind: Pod\n---\n- 1\n- 2\n", AEP_EINVALID,
		     "line 3: a document must be a map");
	expect_error("kind: Pod\nx: *nope\n", AEP_EINVALID, "line 2: unknown anchor \"nope\"");
	expect_error("a: &x [1, *x]\n", AEP_EINVALID, "unknown anchor \"x\"");
	expect_error("? [a, b]\n: 1\n", AEP_EINVALID, "line 1: map keys must be scalars");
	/* a document that failed leaves nothing behind even if earlier ones parsed */
	expect_error("kind: Pod\n---\nkind: Pod\nkind: Service\n", AEP_EINVALID,
		     "line 4: duplicate key");
}

static void test_alias_bomb_refused_quickly(void **state)
{
	(void)state;
	/* billion laughs: 9 levels of 10 aliases = 10^9 nodes once expanded */
	struct aep_buf b;
	aep_buf_init(&b);
	aep_buf_printf(&b,
		       "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\","
		       "\"lol\",\"lol\"]\n");
	for (int i = 1; i <= 9; i++) {
		aep_buf_printf(&b, "a%d: &a%d [", i, i);
		for (int j = 0; j < 10; j++)
			aep_buf_printf(&b, "%s*a%d", j ? "," : "", i - 1);
		aep_buf_printf(&b, "]\n");
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct aep_docs d;
	struct aep_error e = {0};
	int rv = aep_manifest_parse(b.data, b.len, &d, &e);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	aep_buf_free(&b);
	assert_int_equal(rv, AEP_ETOOLARGE);
	assert_non_null(strstr(e.msg, "expands to more than"));
	assert_non_null(strstr(e.msg, "line "));
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(secs < 1.0);

	/* modest alias use is fine and is expanded */
	struct parsed p;
	assert_int_equal(parse("base: &b {app: web}\nkind: Pod\nlabels: *b\n", &p, &e), 0);
	assert_string_equal("web", "web");
	const msgpack_object *l = get(&p.obj[0], "labels");
	assert_str(get(l, "app"), "web");
	parsed_free(&p);
}

static void test_depth_bomb_refused(void **state)
{
	(void)state;
	size_t n = 100000;
	char *text = malloc(2 * n + 1);
	assert_non_null(text);
	memset(text, '[', n);
	memset(text + n, ']', n);
	text[2 * n] = '\0';
	struct aep_docs d;
	struct aep_error e = {0};
	assert_int_equal(aep_manifest_parse(text, 2 * n, &d, &e), AEP_ETOOLARGE);
	assert_non_null(strstr(e.msg, "nesting deeper than 64"));
	free(text);

	/* depth reached through aliases counts too */
	struct aep_buf b;
	aep_buf_init(&b);
	aep_buf_printf(&b, "x: &d0 ");
	for (int i = 0; i < 40; i++)
		aep_buf_printf(&b, "[");
	for (int i = 0; i < 40; i++)
		aep_buf_printf(&b, "]");
	aep_buf_printf(&b, "\ny: &d1 ");
	for (int i = 0; i < 40; i++)
		aep_buf_printf(&b, "[");
	aep_buf_printf(&b, "*d0");
	for (int i = 0; i < 40; i++)
		aep_buf_printf(&b, "]");
	aep_buf_printf(&b, "\n");
	assert_int_equal(aep_manifest_parse(b.data, b.len, &d, &e), AEP_ETOOLARGE);
	assert_non_null(strstr(e.msg, "aliases expanded"));
	aep_buf_free(&b);
}

static void test_size_limit(void **state)
{
	(void)state;
	size_t n = AEP_MANIFEST_MAX + 1;
	char *text = malloc(n);
	assert_non_null(text);
	memset(text, ' ', n);
	struct aep_docs d;
	struct aep_error e = {0};
	assert_int_equal(aep_manifest_parse(text, n, &d, &e), AEP_ETOOLARGE);
	free(text);
}

static void test_load_file(void **state)
{
	(void)state;
	char path[] = "/tmp/aep-test-manifest-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *y = "kind: Pod\nmetadata:\n  name: f\n";
	assert_int_equal(write(fd, y, strlen(y)), (ssize_t)strlen(y));
	close(fd);
	struct aep_docs d;
	struct aep_error e = {0};
	assert_int_equal(aep_manifest_load(path, &d, &e), 0);
	assert_int_equal(d.n, 1);
	aep_docs_free(&d);
	unlink(path);
	assert_int_equal(aep_manifest_load(path, &d, &e), AEP_ENOTFOUND);
	assert_non_null(strstr(e.msg, path));
}

static void test_allocation_failures_do_not_leak(void **state)
{
	(void)state;
	const char *y =
	    "kind: List\nitems:\n- kind: Pod\n  metadata: &m {name: a, labels: {x: y}}\n"
	    "- kind: Pod\n  metadata: *m\n";
	for (long n = 1; n < 200; n++) {
		struct aep_docs d;
		struct aep_error e = {0};
		aep_heap_fault_after(n);
		int rv = aep_manifest_parse(y, strlen(y), &d, &e);
		aep_heap_fault_off();
		if (rv == 0) {
			assert_int_equal(d.n, 2);
			aep_docs_free(&d);
			return;
		}
		assert_int_equal(rv, AEP_ENOMEM);
		assert_int_equal(d.n, 0);
	}
	fail_msg("never succeeded");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_scalar_types),
	    cmocka_unit_test(test_multi_document),
	    cmocka_unit_test(test_list_expanded),
	    cmocka_unit_test(test_json),
	    cmocka_unit_test(test_errors_name_the_line),
	    cmocka_unit_test(test_alias_bomb_refused_quickly),
	    cmocka_unit_test(test_depth_bomb_refused),
	    cmocka_unit_test(test_size_limit),
	    cmocka_unit_test(test_load_file),
	    cmocka_unit_test(test_allocation_failures_do_not_leak),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
