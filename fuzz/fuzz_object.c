/* fuzz_object: aep_object_decode() on arbitrary bytes.
 *
 * Beyond "no crash, leak or sanitizer report", it checks what state.h
 * promises about an accepted object: its bytes are canonical (decoding
 * them gives the same bytes and the same kind and metadata), the
 * unpacked route (aep_mp_check, aep_mp_unpack, aep_object_from_msgpack)
 * agrees with the byte route, and aep_object_stamp() succeeds and gives
 * an object that decodes to itself with the stamped metadata. A broken
 * promise traps. */
#include <stdint.h>
#include <string.h>

#include "state/state.h"

#define CHECK(cond)                       \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

static bool same_meta(const struct aep_object *a, const struct aep_object *b)
{
	if (a->kind != b->kind || strcmp(a->meta.name, b->meta.name) != 0 ||
	    strcmp(a->meta.ns, b->meta.ns) != 0 || strcmp(a->meta.uid, b->meta.uid) != 0 ||
	    a->meta.rv != b->meta.rv || a->meta.created_ns != b->meta.created_ns ||
	    a->meta.generation != b->meta.generation || a->meta.nlabels != b->meta.nlabels)
		return false;
	if ((a->node_name == NULL) != (b->node_name == NULL) ||
	    (a->node_name != NULL && strcmp(a->node_name, b->node_name) != 0))
		return false;
	for (size_t i = 0; i < a->meta.nlabels; i++)
		if (strcmp(a->meta.labels[i].key, b->meta.labels[i].key) != 0 ||
		    strcmp(a->meta.labels[i].value, b->meta.labels[i].value) != 0)
			return false;
	return true;
}

static bool same_bytes(const struct aep_object *a, const struct aep_object *b)
{
	return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* The unpacked route must accept exactly what the byte route accepts
 * (when the bytes are one whole value within the API's limits) and give
 * the same canonical bytes. */
static void check_unpacked(const uint8_t *data, size_t size, const struct aep_object *o)
{
	struct aep_error e = {0};
	msgpack_zone zone;
	msgpack_object mo;
	size_t used;

	if (aep_mp_check((const char *)data, size, &aep_mp_default_limits, &used, &e) != 0 ||
	    used != size)
		return;
	CHECK(msgpack_zone_init(&zone, 4096));
	if (aep_mp_unpack((const char *)data, size, &zone, &mo, &e) == 0) {
		struct aep_object *u = NULL;
		int rv = aep_object_from_msgpack(&mo, &u, &e);
		CHECK((rv == 0) == (o != NULL));
		if (rv == 0) {
			CHECK(same_bytes(o, u));
			CHECK(same_meta(o, u));
			aep_object_unref(u);
		}
	}
	msgpack_zone_destroy(&zone);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct aep_error e = {0};
	struct aep_object *o = NULL, *again, *st, *st2;
	static const char uid[] = "0b9d3c1e-7f6a-4c2b-9e8d-5a4f3b2c1d0e";
	const uint64_t rv = AEP_REV(7, 3);
	const int64_t created = 1795000000123456789;

	if (aep_object_decode((const char *)data, size, &o, &e) != 0) {
		check_unpacked(data, size, NULL);
		return 0;
	}
	CHECK(o->refs == 1 && o->len <= AEP_OBJECT_MAX);
	check_unpacked(data, size, o);

	/* Canonical: the object's own bytes decode to themselves. */
	CHECK(aep_object_decode(o->data, o->len, &again, &e) == 0);
	CHECK(same_bytes(o, again));
	CHECK(same_meta(o, again));
	aep_object_unref(again);

	/* Stamping as the leader does on create. */
	CHECK(aep_object_stamp(o, uid, rv, created, 1, &st) == 0);
	CHECK(st->kind == o->kind && strcmp(st->meta.uid, uid) == 0 && st->meta.rv == rv &&
	      st->meta.created_ns == created && st->meta.generation == 1);
	if (st->len <= AEP_OBJECT_MAX) {
		CHECK(aep_object_decode(st->data, st->len, &again, &e) == 0);
		CHECK(same_bytes(st, again));
		CHECK(same_meta(st, again));
		aep_object_unref(again);
	}
	/* Keep-everything stamp (uid NULL, created < 0, generation < 0) with
	 * the old revision gives the stamped object back. */
	CHECK(aep_object_stamp(st, NULL, rv, -1, -1, &st2) == 0);
	CHECK(same_bytes(st, st2));
	CHECK(same_meta(st, st2));
	aep_object_unref(st2);
	/* Clearing what was stamped gives the original back when it had
	 * none of it. */
	if (o->meta.uid[0] == '\0' && o->meta.rv == 0 && o->meta.created_ns == 0 &&
	    o->meta.generation == 0) {
		CHECK(aep_object_stamp(st, "", 0, 0, 0, &st2) == 0);
		CHECK(same_bytes(o, st2));
		aep_object_unref(st2);
	}
	aep_object_unref(st);
	aep_object_unref(o);
	return 0;
}
