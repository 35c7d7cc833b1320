/* fuzz_manifest: aep_manifest_parse() (cli/manifest.c, YAML or JSON) on
 * arbitrary text, then every document through aep_object_decode().
 *
 * Checked promises (a broken one traps): on failure nothing is left in
 * the result and the message is set; on success every document is
 * exactly one msgpack map, and an object decoded from it is canonical
 * (its bytes decode to themselves). */
#include <stdint.h>
#include <string.h>

#include "cli/cli.h"
#include "state/state.h"

#define CHECK(cond)                       \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

/* The manifest's own bounds (AEP_MANIFEST_DEPTH levels of nesting) are
 * looser than the API's: the wire limit applies to what is sent, not to
 * what is parsed. */
static const struct aep_mp_limits doc_limits = {
    .max_bytes = 64u << 20,
    .max_depth = AEP_MANIFEST_DEPTH + 2,
    .max_len = AEP_MANIFEST_NODES,
    .max_str = AEP_MANIFEST_MAX,
    .max_items = 2 * (uint64_t)AEP_MANIFEST_NODES,
};

static bool is_map(unsigned char c)
{
	return (c >= 0x80 && c <= 0x8f) || c == 0xde || c == 0xdf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct aep_error e = {0};
	struct aep_docs docs;

	int rv = aep_manifest_parse((const char *)data, size, &docs, &e);
	if (rv != 0) {
		CHECK(rv != AEP_ENOMEM && e.msg[0] != '\0');
		CHECK(docs.n == 0 && docs.items == NULL);
		return 0;
	}
	for (size_t i = 0; i < docs.n; i++) {
		const struct aep_buf *d = &docs.items[i];
		struct aep_object *o, *again;
		size_t used;

		CHECK(d->len > 0 && is_map((unsigned char)d->data[0]));
		CHECK(aep_mp_check(d->data, d->len, &doc_limits, &used, &e) == 0 && used == d->len);
		if (aep_object_decode(d->data, d->len, &o, &e) != 0)
			continue;
		CHECK(aep_object_decode(o->data, o->len, &again, &e) == 0);
		CHECK(again->len == o->len && memcmp(again->data, o->data, o->len) == 0);
		aep_object_unref(again);
		aep_object_unref(o);
	}
	aep_docs_free(&docs);
	return 0;
}
