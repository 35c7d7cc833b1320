/* Snapshots: identical stores give identical bytes, restore gives the
 * same store back, and corrupt, truncated, oversized or unaffordable input
 * leaves the store as it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lz4frame.h>

#include "state/state.h"
#include "tests/unit/fixtures.h"

/* ---- helpers ------------------------------------------------------------ */

/* ---- a populated store --------------------------------------------------- */

/* Namespaces, nodes, pods (some bound, some deleted, some updated),
 * services and members, over @n entries starting at index 1. */
static void populate(struct aep_store *s, unsigned n)
{
	struct aep_buf b;
	aep_buf_init(&b);
	uint64_t index = 1;
	fx_simple(&b, "Namespace", NULL, "team", "owner=ops");
	struct aep_cmd c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_NAMESPACE, &b, 0, "ns-team", 5);
	assert_int_equal(fx_apply1_code(s, index++, &c), 0);
	for (unsigned i = 0; i < 3; i++) {
		char name[16], uid[16];
		snprintf(name, sizeof(name), "node-%u", i);
		snprintf(uid, sizeof(uid), "nu-%u", i);
		fx_simple(&b, "Node", NULL, name, "zone=a");
		c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_NODE, &b, 0, uid, 7);
		assert_int_equal(fx_apply1_code(s, index++, &c), 0);
	}
	for (unsigned i = 0; i < n; i++) {
		char name[16], uid[16], labels[32], node[16];
		const char *ns = i % 3 == 0 ? "team" : "default";
		snprintf(name, sizeof(name), "p-%u", i % 40);
		snprintf(uid, sizeof(uid), "pu-%u", i);
		snprintf(labels, sizeof(labels), "app=a%u", i % 4);
		snprintf(node, sizeof(node), "node-%u", i % 3);
		fx_pod(&b, ns, name, labels, i % 2 ? node : NULL, i % 5 ? "img:1" : "img:2");
		enum aep_op op = i < 40 ? AEP_OP_CREATE : AEP_OP_UPDATE;
		c = fx_cmd_obj(op, AEP_KIND_POD, &b, 0, uid, (int64_t)i * 1000000007);
		(void)fx_apply1_code(s, index++, &c);
		if (i % 7 == 0) {
			c = fx_cmd_del(AEP_KIND_POD, ns, name, 0);
			(void)fx_apply1_code(s, index++, &c);
		}
	}
	fx_simple(&b, "Service", "default", "web", "app=a1");
	c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_SERVICE, &b, 0, "svc", 9);
	assert_int_equal(fx_apply1_code(s, index++, &c), 0);
	memset(&c, 0, sizeof(c));
	c.op = AEP_OP_MEMBER;
	c.name = "m2";
	c.member_api = "127.0.0.1:7002";
	c.member_peer = "127.0.0.1:8002";
	assert_int_equal(fx_apply1_code(s, index++, &c), 0);
	c.name = "m1";
	assert_int_equal(fx_apply1_code(s, index++, &c), 0);
	aep_buf_free(&b);
}

struct listing {
	struct aep_buf b;
};

static int list_into(const struct aep_object *o, void *data)
{
	struct aep_buf *b = data;
	assert_int_equal(aep_buf_append(b, o->data, o->len), 0);
	return 0;
}

/* Stops at the first object, leaving "ns\0name" in @data (64 bytes). */
static int first_key(const struct aep_object *o, void *data)
{
	char *buf = data;
	size_t nl = strlen(o->meta.ns);
	assert_true(nl + strlen(o->meta.name) + 2 <= 64);
	memcpy(buf, o->meta.ns, nl + 1);
	memcpy(buf + nl + 1, o->meta.name, strlen(o->meta.name) + 1);
	return 1;
}

/* Everything a reader could ask, as bytes. */
static void describe(struct aep_store *s, struct aep_buf *out)
{
	aep_buf_reset(out);
	for (int k = 0; k < AEP_KIND__COUNT; k++) {
		assert_int_equal(aep_store_list(s, (enum aep_kind)k, NULL, NULL, list_into, out),
				 0);
		aep_buf_printf(out, "|%zu|", aep_store_count(s, (enum aep_kind)k));
	}
	struct aep_selector *se = fx_sel("app=a1");
	assert_int_equal(aep_store_list(s, AEP_KIND_POD, "default", se, list_into, out), 0);
	aep_selector_free(se);
	assert_int_equal(aep_store_list_pods_on_node(s, "node-1", list_into, out), 0);
	const struct aep_member *m;
	size_t n;
	assert_int_equal(aep_store_members(s, &m, &n), 0);
	for (size_t i = 0; i < n; i++)
		aep_buf_printf(out, "%s=%s,%s;", m[i].name, m[i].api, m[i].peer);
	aep_buf_printf(out, "rev=%llu,idx=%llu", (unsigned long long)aep_store_revision(s),
		       (unsigned long long)aep_store_applied_index(s));
	assert_false(out->failed);
}

/* ---- tests -------------------------------------------------------------- */

static void identical_stores_identical_bytes(void **state)
{
	(void)state;
	struct aep_store *a = fx_new_store(), *b = fx_new_store();
	struct aep_buf sa, sb;
	aep_buf_init(&sa);
	aep_buf_init(&sb);
	populate(a, 200);
	populate(b, 200);
	fx_snap(a, &sa);
	fx_snap(b, &sb);
	fx_assert_same_bytes(&sa, &sb);
	/* One more change: different bytes. */
	struct aep_cmd c = fx_cmd_del(AEP_KIND_SERVICE, "default", "web", 0);
	assert_int_equal(fx_apply1_code(b, 10000, &c), 0);
	fx_snap(b, &sb);
	assert_true(sa.len != sb.len || memcmp(sa.data, sb.data, sa.len) != 0);
	/* A snapshot is a standard LZ4 frame: magic number first. */
	assert_memory_equal(sa.data, "\x04\x22\x4d\x18", 4);
	aep_buf_free(&sa);
	aep_buf_free(&sb);
	aep_store_free(a);
	aep_store_free(b);
}

static void restore_gives_the_same_store(void **state)
{
	(void)state;
	struct aep_store *a = fx_new_store(), *b = fx_new_store();
	struct aep_buf sa, sb, da, db;
	struct aep_error e = {0};
	aep_buf_init(&sa);
	aep_buf_init(&sb);
	aep_buf_init(&da);
	aep_buf_init(&db);
	populate(a, 300);
	fx_snap(a, &sa);
	/* b has content of its own, replaced whole. */
	populate(b, 10);
	assert_int_equal(aep_store_restore(b, sa.data, sa.len, &e), 0);
	fx_snap(b, &sb);
	fx_assert_same_bytes(&sa, &sb);
	describe(a, &da);
	describe(b, &db);
	fx_assert_same_bytes(&da, &db);
	char ns[64], name[64];
	assert_int_equal(aep_store_list(a, AEP_KIND_POD, NULL, NULL, first_key, ns), 1);
	memcpy(name, ns + strlen(ns) + 1, sizeof(name) - strlen(ns) - 1);
	struct aep_object *oa = aep_store_get(a, AEP_KIND_POD, ns, name);
	struct aep_object *ob = aep_store_get(b, AEP_KIND_POD, ns, name);
	assert_non_null(oa);
	assert_non_null(ob);
	assert_string_equal(oa->meta.uid, ob->meta.uid);
	assert_int_equal(oa->meta.rv, ob->meta.rv);
	assert_int_equal(oa->meta.created_ns, ob->meta.created_ns);
	assert_int_equal(oa->meta.generation, ob->meta.generation);
	aep_object_unref(oa);
	aep_object_unref(ob);

	/* Both go on identically from there. */
	uint64_t next = aep_store_applied_index(a) + 1;
	struct aep_buf p;
	aep_buf_init(&p);
	fx_pod(&p, "team", "late", "app=a1", "node-1", "img");
	struct aep_cmd c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &p, 0, "late", 1);
	assert_int_equal(fx_apply1_code(a, next, &c), 0);
	assert_int_equal(fx_apply1_code(b, next, &c), 0);
	c = fx_cmd_del(AEP_KIND_NAMESPACE, NULL, "team", 0);
	assert_int_equal(fx_apply1_code(a, next + 1, &c), AEP_ECONFLICT);
	assert_int_equal(fx_apply1_code(b, next + 1, &c), AEP_ECONFLICT);
	fx_snap(a, &sa);
	fx_snap(b, &sb);
	fx_assert_same_bytes(&sa, &sb);

	/* An empty (new) store round-trips too. */
	struct aep_store *n = fx_new_store(), *m = fx_new_store();
	populate(m, 5);
	fx_snap(n, &sa);
	assert_int_equal(aep_store_restore(m, sa.data, sa.len, &e), 0);
	fx_snap(m, &sb);
	fx_assert_same_bytes(&sa, &sb);
	assert_int_equal(aep_store_count(m, AEP_KIND_POD), 0);
	assert_int_equal(aep_store_revision(m), 0);

	aep_buf_free(&p);
	aep_buf_free(&sa);
	aep_buf_free(&sb);
	aep_buf_free(&da);
	aep_buf_free(&db);
	aep_store_free(a);
	aep_store_free(b);
	aep_store_free(n);
	aep_store_free(m);
}

/* Restore @data into @s and expect failure with the store unchanged. */
static void restore_fails(struct aep_store *s, const char *data, size_t len)
{
	struct aep_buf before, after;
	struct aep_error e = {0};
	aep_buf_init(&before);
	aep_buf_init(&after);
	fx_snap(s, &before);
	int rv = aep_store_restore(s, data, len, &e);
	assert_int_not_equal(rv, 0);
	assert_int_equal(e.code, rv);
	assert_true(e.msg[0] != '\0');
	fx_snap(s, &after);
	fx_assert_same_bytes(&before, &after);
	aep_buf_free(&before);
	aep_buf_free(&after);
}

/* An LZ4 frame holding @raw as content. */
static void frame(struct aep_buf *out, const char *raw, size_t len)
{
	LZ4F_preferences_t prefs;
	memset(&prefs, 0, sizeof(prefs));
	prefs.frameInfo.contentSize = len;
	prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
	size_t bound = LZ4F_compressFrameBound(len, &prefs);
	aep_buf_reset(out);
	assert_int_equal(aep_buf_reserve(out, bound), 0);
	size_t n = LZ4F_compressFrame(out->data, bound, raw, len, &prefs);
	assert_false(LZ4F_isError(n));
	out->len = n;
}

/* A frame header alone, declaring @size bytes of content. */
static size_t frame_header(char *buf, size_t cap, unsigned long long size)
{
	LZ4F_cctx *cctx;
	LZ4F_preferences_t prefs;
	memset(&prefs, 0, sizeof(prefs));
	prefs.frameInfo.contentSize = size;
	assert_false(LZ4F_isError(LZ4F_createCompressionContext(&cctx, LZ4F_VERSION)));
	size_t n = LZ4F_compressBegin(cctx, buf, cap, &prefs);
	assert_false(LZ4F_isError(n));
	LZ4F_freeCompressionContext(cctx);
	return n;
}

static void corrupt_input_changes_nothing(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store(), *src = fx_new_store();
	struct aep_buf good, bad;
	aep_buf_init(&good);
	aep_buf_init(&bad);
	populate(s, 30);
	populate(src, 60);
	fx_snap(src, &good);

	/* Every truncation. */
	for (size_t cut = 0; cut < good.len; cut += cut < 64 ? 1 : 97)
		restore_fails(s, good.data, cut);
	/* Flipped bytes: the frame's checksums catch them. */
	char *copy = malloc(good.len + 8);
	for (size_t i = 0; i < good.len; i += 13) {
		memcpy(copy, good.data, good.len);
		copy[i] ^= 0x20;
		restore_fails(s, copy, good.len);
	}
	/* Trailing bytes after the frame. */
	memcpy(copy, good.data, good.len);
	memcpy(copy + good.len, "garbage!", 8);
	restore_fails(s, copy, good.len + 8);
	free(copy);
	restore_fails(s, "not a snapshot", 14);

	/* Declared sizes: too large, or too far beyond the compressed size;
	 * refused before any allocation of that size. */
	char hdr[64];
	size_t n = frame_header(hdr, sizeof(hdr), 5ull << 30);
	restore_fails(s, hdr, n);
	n = frame_header(hdr, sizeof(hdr), 1u << 20);
	restore_fails(s, hdr, n);

	/* Well-formed frames with bad content. */
#define BODY(s)                  \
	{                        \
		s, sizeof(s) - 1 \
	}
	static const struct {
		const char *p;
		size_t n;
	} bodies[] = {
	    BODY("\xc0"),			  /* not an array */
	    BODY("\x95\x02\x00\x00\x90\x90"),	  /* version 2 */
	    BODY("\x95\x01\x00\x00\x90"),	  /* short */
	    BODY("\x95\x01\x00\x00\x90\x90\xc0"), /* trailing */
	    BODY("\x95\x01\x00\x00\x91\x93\xa1m\xa1"
		 "a\x01\x90"),					 /* peer not a str */
	    BODY("\x95\x01\x00\x00\x90\x91\x81\xa4kind\xa3Pod"), /* invalid object */
	    BODY("\x95\x01\xce\x00\x05\x00\x00\x01\x90\x90"),	 /* revision past index */
	};
#undef BODY
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		frame(&bad, bodies[i].p, bodies[i].n);
		restore_fails(s, bad.data, bad.len);
	}

	/* Objects out of order or duplicated. Build the content from a real
	 * snapshot of two pods, listed twice. */
	struct aep_store *two = fx_new_store();
	struct aep_buf objs, raw;
	aep_buf_init(&objs);
	aep_buf_init(&raw);
	struct aep_buf p;
	aep_buf_init(&p);
	fx_pod(&p, "default", "a", NULL, NULL, "img");
	struct aep_cmd c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &p, 0, "ua", 1);
	assert_int_equal(fx_apply1_code(two, 1, &c), 0);
	struct aep_object *o = aep_store_get(two, AEP_KIND_POD, "default", "a");
	msgpack_packer pk;
	aep_packer_init(&pk, &raw);
	msgpack_pack_array(&pk, 5);
	msgpack_pack_uint64(&pk, 1);
	msgpack_pack_uint64(&pk, AEP_REV(1, 0));
	msgpack_pack_uint64(&pk, 1);
	msgpack_pack_array(&pk, 0);
	msgpack_pack_array(&pk, 2);
	aep_buf_append(&raw, o->data, o->len);
	aep_buf_append(&raw, o->data, o->len);
	frame(&bad, raw.data, raw.len);
	restore_fails(s, bad.data, bad.len);
	/* The same with the object once restores fine: the builder is right. */
	struct aep_error e = {0};
	aep_buf_reset(&raw);
	msgpack_pack_array(&pk, 5);
	msgpack_pack_uint64(&pk, 1);
	msgpack_pack_uint64(&pk, AEP_REV(1, 0));
	msgpack_pack_uint64(&pk, 1);
	msgpack_pack_array(&pk, 0);
	msgpack_pack_array(&pk, 1);
	aep_buf_append(&raw, o->data, o->len);
	frame(&bad, raw.data, raw.len);
	struct aep_store *t = fx_new_store();
	assert_int_equal(aep_store_restore(t, bad.data, bad.len, &e), 0);
	assert_int_equal(aep_store_count(t, AEP_KIND_POD), 1);
	assert_int_equal(aep_store_count(t, AEP_KIND_NAMESPACE), 0);
	aep_store_free(t);
	aep_object_unref(o);

	aep_buf_free(&p);
	aep_buf_free(&objs);
	aep_buf_free(&raw);
	aep_buf_free(&good);
	aep_buf_free(&bad);
	aep_store_free(two);
	aep_store_free(s);
	aep_store_free(src);
}

static void restore_survives_allocation_failure(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store(), *src = fx_new_store();
	struct aep_buf good, before, after;
	aep_buf_init(&good);
	aep_buf_init(&before);
	aep_buf_init(&after);
	populate(s, 20);
	populate(src, 25);
	fx_snap(src, &good);
	fx_snap(s, &before);
	int failures = 0;
	for (long n = 1;; n++) {
		struct aep_error e = {0};
		aep_heap_fault_after(n);
		int rv = aep_store_restore(s, good.data, good.len, &e);
		aep_heap_fault_off();
		if (rv == 0)
			break;
		failures++;
		assert_int_equal(rv, AEP_ENOMEM);
		fx_snap(s, &after);
		fx_assert_same_bytes(&before, &after);
		assert_true(n < 100000);
	}
	assert_true(failures > 10);
	fx_snap(s, &after);
	fx_assert_same_bytes(&good, &after);

	/* Snapshot itself under failing allocations: AEP_ENOMEM, output as it
	 * was. */
	for (long n = 1;; n++) {
		struct aep_buf out;
		aep_buf_init(&out);
		aep_buf_append(&out, "x", 1);
		aep_heap_fault_after(n);
		int rv = aep_store_snapshot(s, &out);
		aep_heap_fault_off();
		if (rv == 0) {
			assert_int_equal(out.len, good.len + 1);
			assert_memory_equal(out.data + 1, good.data, good.len);
			aep_buf_free(&out);
			break;
		}
		assert_int_equal(rv, AEP_ENOMEM);
		assert_int_equal(out.len, 1);
		aep_buf_free(&out);
		assert_true(n < 1000);
	}
	aep_buf_free(&good);
	aep_buf_free(&before);
	aep_buf_free(&after);
	aep_store_free(s);
	aep_store_free(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(identical_stores_identical_bytes),
	    cmocka_unit_test(restore_gives_the_same_store),
	    cmocka_unit_test(corrupt_input_changes_nothing),
	    cmocka_unit_test(restore_survives_allocation_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
