/* lib/: error codes, the failing heap, buffers and msgpack input limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "lib/lib.h"

static void test_error_codes(void **state)
{
	(void)state;
	assert_string_equal(aep_err_code(AEP_ENOTFOUND), "NotFound");
	assert_string_equal(aep_err_code(AEP_ENOTLEADER), "NotLeader");
	assert_string_equal(aep_err_code(-1), "Internal");
	assert_int_equal(aep_err_from_code("Conflict", 8), AEP_ECONFLICT);
	assert_int_equal(aep_err_from_code("Nonsense", 8), AEP_EINTERNAL);
	struct aep_error e = {0};
	assert_int_equal(aep_errorf(&e, AEP_EINVALID, "name: %s", "bad"), AEP_EINVALID);
	aep_error_prefix(&e, "create pod %s", "web");
	assert_string_equal(e.msg, "create pod web: name: bad");
	assert_int_equal(e.code, AEP_EINVALID);
}

static void test_heap_fault(void **state)
{
	(void)state;
	aep_heap_fault_after(2);
	void *a = aep_malloc(8);
	void *b = aep_malloc(8);
	void *c = aep_strdup("x");
	assert_non_null(a);
	assert_null(b);
	assert_null(c);
	assert_int_equal(aep_heap_fault_count(), 2);
	aep_heap_fault_off();
	c = aep_strdup("x");
	assert_non_null(c);
	aep_free(a);
	aep_free(c);
}

static void test_buf(void **state)
{
	(void)state;
	struct aep_buf b;
	aep_buf_init(&b);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(aep_buf_printf(&b, "%d,", i), 0);
	assert_memory_equal(b.data, "0,1,2,", 6);
	aep_heap_fault_after(1);
	char big[100000];
	memset(big, 'x', sizeof(big));
	assert_int_equal(aep_buf_append(&b, big, sizeof(big)), AEP_ENOMEM);
	aep_heap_fault_off();
	assert_true(b.failed);
	size_t len = 0;
	char *p = aep_buf_steal(&b, &len);
	assert_int_equal(len, strlen("0,") * 10 + strlen("10,") * 90 + strlen("100,") * 900);
	assert_null(b.data);
	aep_free(p);
}

static size_t pack(char *out, void (*fn)(msgpack_packer *))
{
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	fn(&pk);
	memcpy(out, b.data, b.len);
	size_t n = b.len;
	aep_buf_free(&b);
	return n;
}

static void pack_sample(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 4);
	msgpack_pack_uint32(pk, 0);
	msgpack_pack_uint32(pk, 7);
	aep_pack_str(pk, "create");
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 2);
	aep_pack_str(pk, "a");
	msgpack_pack_double(pk, 1.5);
	aep_pack_str(pk, "b");
	msgpack_pack_bin(pk, 3);
	msgpack_pack_bin_body(pk, "xyz", 3);
}

static void test_mp_check_whole_and_partial(void **state)
{
	(void)state;
	char buf[256];
	size_t n = pack(buf, pack_sample);
	size_t used = 0;
	struct aep_error e = {0};
	assert_int_equal(aep_mp_check(buf, n, &aep_mp_default_limits, &used, &e), 0);
	assert_int_equal(used, n);
	/* Two objects back to back: the first is found. */
	memcpy(buf + n, buf, n);
	assert_int_equal(aep_mp_check(buf, 2 * n, &aep_mp_default_limits, &used, &e), 0);
	assert_int_equal(used, n);
	/* Every strict prefix needs more bytes. */
	for (size_t k = 0; k < n; k++) {
		assert_int_equal(aep_mp_check(buf, k, &aep_mp_default_limits, &used, &e),
				 AEP_ECANCELED);
		assert_int_equal(used, 0);
	}
	msgpack_zone z;
	msgpack_object o;
	msgpack_zone_init(&z, 256);
	assert_int_equal(aep_mp_unpack(buf, n, &z, &o, &e), 0);
	assert_int_equal(o.type, MSGPACK_OBJECT_ARRAY);
	const msgpack_object *params = &o.via.array.ptr[3].via.array.ptr[0];
	assert_non_null(aep_mp_map_get(params, "b"));
	assert_null(aep_mp_map_get(params, "c"));
	assert_true(aep_mp_str_eq(&o.via.array.ptr[2], "create"));
	msgpack_zone_destroy(&z);
}

static void test_mp_check_limits(void **state)
{
	(void)state;
	struct aep_error e = {0};
	size_t used;
	/* array32 claiming 4 billion elements: refused from the header alone. */
	const char huge_array[] = "\xdd\xff\xff\xff\xff";
	assert_int_equal(aep_mp_check(huge_array, 5, &aep_mp_default_limits, &used, &e),
			 AEP_ETOOLARGE);
	assert_non_null(strstr(e.msg, "limit"));
	/* str32 of 2 GiB. */
	const char huge_str[] = "\xdb\x80\x00\x00\x00";
	assert_int_equal(aep_mp_check(huge_str, 5, &aep_mp_default_limits, &used, &e),
			 AEP_ETOOLARGE);
	/* map32 with 2^31 pairs. */
	const char huge_map[] = "\xdf\x80\x00\x00\x00";
	assert_int_equal(aep_mp_check(huge_map, 5, &aep_mp_default_limits, &used, &e),
			 AEP_ETOOLARGE);
	/* 100 nested arrays. */
	char deep[101];
	memset(deep, 0x91, 100);
	deep[100] = 0x01;
	assert_int_equal(aep_mp_check(deep, sizeof(deep), &aep_mp_default_limits, &used, &e),
			 AEP_ETOOLARGE);
	assert_non_null(strstr(e.msg, "nesting"));
	/* The never-used byte 0xc1. */
	assert_int_equal(aep_mp_check("\x91\xc1", 2, &aep_mp_default_limits, &used, &e),
			 AEP_EBADREQUEST);
	/* Small limits: total bytes. */
	struct aep_mp_limits lim = aep_mp_default_limits;
	lim.max_bytes = 8;
	assert_int_equal(aep_mp_check("\xa9"
				      "123456789",
				      10, &lim, &used, &e),
			 AEP_ETOOLARGE);
	/* An incomplete message that already exceeds the limit is refused, not
	 * waited for. */
	assert_int_equal(aep_mp_check("\x9f\x01\x01\x01\x01\x01\x01\x01\x01", 9, &lim, &used, &e),
			 AEP_ETOOLARGE);
	/* Too many items in all. */
	lim = aep_mp_default_limits;
	lim.max_items = 3;
	assert_int_equal(aep_mp_check("\x93\x01\x02\x03", 4, &lim, &used, &e), AEP_ETOOLARGE);
}

/* Durations as flags take them; every bad one names the flag and changes
 * nothing. */
static void parse_duration_forms(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int64_t ms;
	} ok[] = {{"500ms", 500},     {"40s", 40000},	 {"5m", 300000},
		  {"1h30m", 5400000}, {"7d", 604800000}, {"1.5h", 5400000},
		  {"30", 30000},      {"0", 0},		 {"2m3s4ms", 123004}};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct aep_error e = {0};
		int64_t v = -1;
		assert_int_equal(aep_parse_duration(ok[i].in, "--x", 0, INT64_MAX / 2, &v, &e), 0);
		assert_int_equal(v, ok[i].ms);
	}
	static const char *const bad[] = {"",	"forever", "5",	  "1h30",  "-1s",
					  "1x", "ms",	   "1s1", "1..5s", "1 s"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct aep_error e = {0};
		int64_t v = 7;
		int rv = aep_parse_duration(bad[i], "--x", 0, 4000, &v, &e);
		if (strcmp(bad[i], "5") == 0) { /* 5 s is above the 4 s maximum */
			assert_int_equal(rv, AEP_EINVALID);
			assert_non_null(strstr(e.msg, "must be from 0ms to 4000ms"));
		} else {
			assert_int_equal(rv, AEP_EINVALID);
			assert_non_null(strstr(e.msg, "--x"));
		}
		assert_int_equal(v, 7);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(parse_duration_forms),
	    cmocka_unit_test(test_error_codes),
	    cmocka_unit_test(test_heap_fault),
	    cmocka_unit_test(test_buf),
	    cmocka_unit_test(test_mp_check_whole_and_partial),
	    cmocka_unit_test(test_mp_check_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
