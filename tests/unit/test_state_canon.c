/* state/: the apply fast path. state__canon_read() + state__canon_stamp()
 * on a canonical encoding give byte for byte what aep_object_decode() +
 * aep_object_stamp() give; anything not laid out canonically is refused
 * (the store then decodes it as before); damaged bytes never crash it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "state/object-int.h"
#include "state/state.h"
#include "tests/unit/fixtures.h"

/* More shapes: metadata with and without each optional part. */
static const char *const extra[] = {
    "{'kind':'Namespace','metadata':{'name':'bare'}}",
    "{'kind':'Node','metadata':{'name':'n','annotations':{'a':'b'}}}",
    "{'kind':'Node','metadata':{'name':'n','labels':{'a':'b'}}}",
    "{'kind':'Pod','metadata':{'name':'p'},'spec':{'containers':[" C_WEB "]}}",
    "{'kind':'Pod','metadata':{'name':'p','namespace':'x','uid':'old-uid',"
    "'resourceVersion':'99','creationTimestamp':'2020-01-01T00:00:00.5Z','generation':7,"
    "'labels':{'z':'1','a':'2','m':''},'annotations':{'long':'"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "'}},'spec':{'nodeName':'node-with-a-rather-long-name-over-32.example.com',"
    "'containers':[" C_WEB "]},'status':{'phase':'Running'}}",
    "{'kind':'Pod','metadata':{'name':'a-name-that-is-longer-than-thirty-one-bytes',"
    "'namespace':'a-namespace-longer-than-thirty-one-b','labels':{'example.com/"
    "a-label-key-longer-than-thirty-two':'a-value-longer-than-thirty-one-bytes'}},"
    "'spec':{'containers':[" C_WEB "]}}",
    "{'kind':'Service','metadata':{'name':'s','namespace':'kube-system',"
    "'generation':300},'spec':{'ports':[{'port':80}]}}",
};

#define NFIX (fx_all_kinds_n + sizeof(extra) / sizeof(extra[0]))

static const char *fixture(size_t i)
{
	size_t n = fx_all_kinds_n;
	if (i < n)
		return fx_all_kinds[i] ? fx_all_kinds[i] : fx_pod_full;
	return extra[i - n];
}

static struct aep_object *must_decode_buf(const char *p, size_t n)
{
	struct aep_error e = {0};
	struct aep_object *o = NULL;
	int rc = aep_object_decode(p, n, &o, &e);
	if (rc != 0)
		fail_msg("decode failed (%s): %s", aep_err_code(rc), e.msg);
	return o;
}

struct stamp {
	const char *uid;
	uint64_t rv;
	int64_t created_ns, generation;
};

static const struct stamp stamps[] = {
    {"0b7b5c3e-1111-2222-3333-444455556666", AEP_REV(7, 1), 1795562918123456789LL, 1},
    {"u", 12345, 1000000000, 3},
    {"", 0, 0, 0},
    {"x", UINT64_MAX, 1, INT64_MAX},
    {NULL, 5, -1, -1}, /* keep */
};

/* The old path (decode again, then stamp) and the new one agree on @data. */
static void check_same(const char *data, size_t len)
{
	for (size_t k = 0; k < sizeof(stamps) / sizeof(stamps[0]); k++) {
		const struct stamp *st = &stamps[k];
		struct aep_object *in = must_decode_buf(data, len), *old = NULL, *neu = NULL;
		struct state__canon c;
		assert_int_equal(state__canon_read(in->kind, data, len, &c), 0);
		assert_int_equal(
		    aep_object_stamp(in, st->uid, st->rv, st->created_ns, st->generation, &old), 0);
		assert_int_equal(
		    state__canon_stamp(&c, st->uid, st->rv, st->created_ns, st->generation, &neu),
		    0);
		assert_int_equal(neu->refs, 1);
		fx_assert_meta_equal(old, neu);
		assert_int_equal(old->len, neu->len);
		assert_memory_equal(old->data, neu->data, old->len);
		/* The spec span is the one the store compares for generation. */
		if (c.spec.p != NULL) {
			assert_true(c.spec.p > data && c.spec.p + c.spec.n <= data + len);
			assert_true(memmem(data, len, "\xa4spec", 5) != NULL);
		}
		aep_object_unref(in);
		aep_object_unref(old);
		aep_object_unref(neu);
	}
}

static void test_same_bytes_every_fixture(void **state)
{
	(void)state;
	bool seen[AEP_KIND__COUNT] = {false};
	for (size_t i = 0; i < NFIX; i++) {
		struct aep_object *o = fx_must_decode(fixture(i)), *s = NULL;
		seen[o->kind] = true;
		/* As the leader sends it (create) and as stored (update input). */
		check_same(o->data, o->len);
		assert_int_equal(aep_object_stamp(o, "uid-9", AEP_REV(3, 2), 1500000000, 4, &s), 0);
		check_same(s->data, s->len);
		aep_object_unref(o);
		aep_object_unref(s);
	}
	for (int k = 0; k < AEP_KIND__COUNT; k++)
		assert_true(seen[k]);
}

/* Many generated pods: name, namespace, label and node lengths across the
 * fixstr/str8 boundary, 0..AEP_LABELS_MAX labels, annotations or not. */
static void test_same_bytes_generated(void **state)
{
	(void)state;
	char json[16384];
	uint64_t x = 42;
	for (int i = 0; i < 400; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		unsigned nl =
		    (unsigned)(x >> 33) % 8 == 0 ? AEP_LABELS_MAX : (unsigned)(x >> 40) % 5;
		size_t name_len = 1 + (size_t)(x >> 20) % 60, val_len = (size_t)(x >> 28) % 63;
		size_t o = 0;
		o += (size_t)snprintf(
		    json + o, sizeof(json) - o,
		    "{'kind':'Pod','metadata':{'name':'%.*s','namespace':'ns-%d',"
		    "'labels':{",
		    (int)name_len, "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij",
		    i % 40);
		for (unsigned l = 0; l < nl; l++)
			o += (size_t)snprintf(
			    json + o, sizeof(json) - o, "%s'k%02u%.*s':'%.*s'", l ? "," : "",
			    (nl - l) * 7 % 100, (int)(l % 40),
			    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", (int)val_len,
			    "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv");
		o += (size_t)snprintf(json + o, sizeof(json) - o,
				      "}%s},'spec':{%s'containers':[" C_WEB "]}}",
				      (x >> 50) % 2 ? ",'annotations':{'note':'n'}" : "",
				      (x >> 52) % 2 ? "'nodeName':'node-1'," : "");
		assert_true(o < sizeof(json));
		struct aep_object *obj = fx_must_decode(json);
		check_same(obj->data, obj->len);
		aep_object_unref(obj);
	}
}

static int canon(const struct aep_buf *b, enum aep_kind kind)
{
	struct state__canon c;
	return state__canon_read(kind, b->data, b->len, &c);
}

/* What a client sends is not canonical: the store decodes it instead. */
static void test_refuses_non_canonical(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    /* No apiVersion (as clients send). */
	    "{'kind':'Pod','metadata':{'name':'p','namespace':'default'},'spec':{'containers':"
	    "[" C_WEB "]}}",
	    /* Key order. */
	    "{'kind':'Pod','apiVersion':'v1','metadata':{'name':'p','namespace':'default'},"
	    "'spec':{'containers':[" C_WEB "]}}",
	    "{'apiVersion':'v1','kind':'Pod','metadata':{'namespace':'default','name':'p'},"
	    "'spec':{'containers':[" C_WEB "]}}",
	    "{'apiVersion':'v1','kind':'Pod','spec':{'containers':[" C_WEB "]},"
	    "'metadata':{'name':'p','namespace':'default'}}",
	    "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'p','namespace':'default'},"
	    "'status':{},'spec':{'containers':[" C_WEB "]}}",
	    /* Unsorted or repeated labels, empty maps. */
	    "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'p','namespace':'default',"
	    "'labels':{'b':'1','a':'2'}},'spec':{'containers':[" C_WEB "]}}",
	    "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'p','namespace':'default',"
	    "'labels':{'a':'1','a':'2'}},'spec':{'containers':[" C_WEB "]}}",
	    "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'p','namespace':'default',"
	    "'labels':{}},'spec':{'containers':[" C_WEB "]}}",
	    "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'p','namespace':'default',"
	    "'annotations':{}},'spec':{'containers':[" C_WEB "]}}",
	    /* Missing or empty names; namespace by scope. */
	    "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'p'},'spec':{'containers':[" C_WEB
	    "]}}",
	    "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'','namespace':'default'},"
	    "'spec':{'containers':[" C_WEB "]}}",
	    "{'apiVersion':'v1','kind':'Pod','metadata':{'namespace':'default'},"
	    "'spec':{'containers':[" C_WEB "]}}",
	    "{'apiVersion':'v1','kind':'Node','metadata':{'name':'n','namespace':'default'}}",
	    /* Unknown fields; a resourceVersion as an integer; nodeName not first. */
	    "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'p','namespace':'default',"
	    "'bogus':'1'},'spec':{'containers':[" C_WEB "]}}",
	    "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'p','namespace':'default'},"
	    "'spec':{'containers':[" C_WEB "]},'bogus':1}",
	    "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'p','namespace':'default',"
	    "'resourceVersion':5},'spec':{'containers':[" C_WEB "]}}",
	    "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'p','namespace':'default'},"
	    "'spec':{'containers':[" C_WEB "],'nodeName':'n'}}",
	    "{'apiVersion':'v2','kind':'Pod','metadata':{'name':'p','namespace':'default'},"
	    "'spec':{'containers':[" C_WEB "]}}",
	    "['apiVersion','v1']",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct aep_buf b;
		fx_mp(bad[i], &b);
		if (canon(&b, AEP_KIND_POD) == 0 || canon(&b, AEP_KIND_NODE) == 0)
			fail_msg("case %zu read as canonical: %s", i, bad[i]);
		aep_buf_free(&b);
	}

	/* The right bytes for another kind; a short string in a long form;
	 * trailing bytes; a NUL in a name. */
	struct aep_object *o = fx_must_decode(
	    "{'kind':'Pod','metadata':{'name':'p','namespace':'default','labels':{'a':'b'}},"
	    "'spec':{'containers':[" C_WEB "]}}");
	struct aep_buf b;
	aep_buf_init(&b);
	aep_buf_append(&b, o->data, o->len);
	assert_int_equal(canon(&b, AEP_KIND_POD), 0);
	assert_int_equal(canon(&b, AEP_KIND_SERVICE), -1);
	aep_buf_append(&b, "\xc0", 1);
	assert_int_equal(canon(&b, AEP_KIND_POD), -1);
	aep_buf_reset(&b);

	char *p = memmem(o->data, o->len, "\xa1p", 2);
	assert_non_null(p);
	size_t at = (size_t)(p - o->data);
	aep_buf_append(&b, o->data, at);
	aep_buf_append(&b, "\xd9\x01p", 3); /* "p" as str8 */
	aep_buf_append(&b, o->data + at + 2, o->len - at - 2);
	assert_int_equal(canon(&b, AEP_KIND_POD), -1);
	aep_buf_reset(&b);
	aep_buf_append(&b, o->data, o->len);
	b.data[at + 1] = '\0';
	assert_int_equal(canon(&b, AEP_KIND_POD), -1);
	aep_buf_free(&b);
	aep_object_unref(o);
}

/* Every truncation is refused; every damaged byte is refused or read into
 * an object whose encoding is one whole msgpack value: no read past the
 * bytes (ASan watches), no crash. */
static void test_damaged_bytes(void **state)
{
	(void)state;
	for (size_t i = 0; i < NFIX; i++) {
		struct aep_object *o = fx_must_decode(fixture(i)), *s = NULL;
		assert_int_equal(aep_object_stamp(o, "uid", 77, 1000000000, 2, &s), 0);
		for (size_t cut = 0; cut < s->len; cut++) {
			char *copy = malloc(cut + 1); /* exact size for ASan */
			struct state__canon c;
			assert_non_null(copy);
			memcpy(copy, s->data, cut);
			assert_int_equal(state__canon_read(s->kind, copy, cut, &c), -1);
			free(copy);
		}
		static const unsigned char bytes[] = {0x00, 0x7f, 0x80, 0x8f, 0xa0, 0xbf, 0xc0,
						      0xc4, 0xd9, 0xdb, 0xdc, 0xde, 0xdf, 0xff};
		for (size_t at = 0; at < s->len; at++) {
			for (size_t v = 0; v < sizeof(bytes); v++) {
				char *copy = malloc(s->len);
				struct state__canon c;
				struct aep_object *out = NULL;
				struct aep_mp_limits lim = aep_mp_default_limits;
				struct aep_error e = {0};
				size_t used = 0;
				assert_non_null(copy);
				memcpy(copy, s->data, s->len);
				copy[at] = (char)bytes[v];
				if (state__canon_read(s->kind, copy, s->len, &c) == 0) {
					assert_int_equal(
					    state__canon_stamp(&c, "u2", 5, 6, 7, &out), 0);
					lim.max_bytes = SIZE_MAX;
					assert_int_equal(
					    aep_mp_check(out->data, out->len, &lim, &used, &e), 0);
					assert_int_equal(used, out->len);
					assert_true(out->meta.name[0] != '\0');
					aep_object_unref(out);
				}
				free(copy);
			}
		}
		aep_object_unref(o);
		aep_object_unref(s);
	}
}

/* Through the store: a create or update carrying canonical bytes (the fast
 * path) stores exactly what the same object in a client's form (decoded
 * again) does, with the same results. */
static void apply_one(struct aep_store *s, uint64_t index, enum aep_op op, enum aep_kind kind,
		      const char *obj, size_t len, const char *uid, int64_t now,
		      struct aep_result *r)
{
	struct aep_batch bt;
	struct aep_cmd c;
	struct aep_result *res;
	const char *data;
	size_t dlen, n;
	memset(&c, 0, sizeof(c));
	c.op = op;
	c.kind = kind;
	c.obj = obj;
	c.obj_len = len;
	c.now_ns = now;
	if (uid != NULL)
		snprintf(c.uid, sizeof(c.uid), "%s", uid);
	aep_batch_init(&bt);
	assert_int_equal(aep_batch_add(&bt, &c), 0);
	assert_int_equal(aep_batch_finish(&bt, &data, &dlen), 0);
	assert_int_equal(aep_store_apply(s, index, data, dlen, &res, &n), 0);
	assert_int_equal(n, 1);
	*r = res[0];
	aep_free(res);
	aep_batch_free(&bt);
}

static void test_store_paths_agree(void **state)
{
	(void)state;
	struct aep_store *fast, *slow;
	uint64_t index = 1;
	assert_int_equal(aep_store_new(NULL, &fast), 0);
	assert_int_equal(aep_store_new(NULL, &slow), 0);
	for (int round = 0; round < 3; round++) {
		for (size_t i = 0; i < NFIX; i++, index++) {
			const char *json = fixture(i);
			struct aep_buf client;
			struct aep_result rf, rs;
			fx_mp(json, &client);
			struct aep_object *o = must_decode_buf(client.data, client.len);
			if (round == 1 && o->kind == AEP_KIND_POD) {
				/* Update with a changed spec: generation moves. */
				struct aep_object *t = o;
				aep_buf_free(&client);
				char *alt = strdup(json);
				char *img = strstr(alt, "nginx:1.25");
				if (img != NULL)
					memcpy(img, "nginx:1.26", 10);
				fx_mp(alt, &client);
				free(alt);
				o = must_decode_buf(client.data, client.len);
				aep_object_unref(t);
			}
			enum aep_op op = round == 0 ? AEP_OP_CREATE : AEP_OP_UPDATE;
			/* The client's form is not canonical (no apiVersion). */
			struct state__canon c;
			assert_int_equal(state__canon_read(o->kind, client.data, client.len, &c),
					 -1);
			if (o->kind == AEP_KIND_NAMESPACE && round == 0) {
				/* The namespaces the fixtures live in. */
				aep_object_unref(o);
				o = fx_must_decode(
				    "{'kind':'Namespace','metadata':{'name':'prod'}}");
			}
			apply_one(fast, index, op, o->kind, o->data, o->len, "uid-a", 1000 + index,
				  &rf);
			if (o->kind == AEP_KIND_NAMESPACE && round == 0)
				apply_one(slow, index, op, o->kind, o->data, o->len, "uid-a",
					  1000 + index, &rs);
			else
				apply_one(slow, index, op, o->kind, client.data, client.len,
					  "uid-a", 1000 + index, &rs);
			assert_int_equal(rf.code, rs.code);
			assert_int_equal(rf.rv, rs.rv);
			if (rf.msg != NULL || rs.msg != NULL)
				assert_string_equal(rf.msg, rs.msg);
			assert_int_equal(rf.obj == NULL, rs.obj == NULL);
			if (rf.obj != NULL) {
				fx_assert_meta_equal(rf.obj, rs.obj);
				assert_int_equal(rf.obj->len, rs.obj->len);
				assert_memory_equal(rf.obj->data, rs.obj->data, rf.obj->len);
			}
			aep_result_clear(&rf);
			aep_result_clear(&rs);
			aep_object_unref(o);
			aep_buf_free(&client);
		}
	}
	struct aep_buf sf, ss;
	aep_buf_init(&sf);
	aep_buf_init(&ss);
	assert_int_equal(aep_store_snapshot(fast, &sf), 0);
	assert_int_equal(aep_store_snapshot(slow, &ss), 0);
	assert_int_equal(sf.len, ss.len);
	assert_memory_equal(sf.data, ss.data, sf.len);
	assert_true(aep_store_count(fast, AEP_KIND_POD) >= 2);
	aep_buf_free(&sf);
	aep_buf_free(&ss);
	aep_store_free(fast);
	aep_store_free(slow);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_same_bytes_every_fixture),
	    cmocka_unit_test(test_same_bytes_generated),
	    cmocka_unit_test(test_refuses_non_canonical),
	    cmocka_unit_test(test_damaged_bytes),
	    cmocka_unit_test(test_store_paths_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
