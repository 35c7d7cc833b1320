/* fuzz_snapshot: aep_store_restore() on arbitrary bytes.
 *
 * Each input is restored twice: as it is (an LZ4 frame, the way a
 * snapshot arrives from a peer or a backup file), and wrapped by this
 * driver into a well-formed LZ4 frame, so that the fuzzer also reaches the
 * msgpack content behind the frame checksums. The seed corpus holds both
 * forms.
 *
 * Checked promises (a broken one traps): a refused snapshot leaves the
 * store as it was (same snapshot bytes); an accepted one snapshots again
 * into bytes that restore into a new store whose snapshot is identical. */
#include <stdint.h>
#include <string.h>

#include <lz4frame.h>

#include "state/state.h"

#define CHECK(cond)                       \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

/* Raw content larger than this is not wrapped (libFuzzer's inputs stay far
 * below it); restore itself is bounded by the frame's declared size. */
#define WRAP_MAX (1u << 20)

static const struct aep_store_config cfg = {.event_log_max = 64};

static void snap(struct aep_store *s, struct aep_buf *b)
{
	aep_buf_reset(b);
	CHECK(aep_store_snapshot(s, b) == 0);
}

static void restore_and_check(const char *data, size_t len)
{
	struct aep_error e = {0};
	struct aep_store *s, *t;
	struct aep_buf before, a, b;

	aep_buf_init(&before);
	aep_buf_init(&a);
	aep_buf_init(&b);
	CHECK(aep_store_new(&cfg, &s) == 0);
	snap(s, &before);
	int rv = aep_store_restore(s, data, len, &e);
	if (rv != 0) {
		CHECK(rv != AEP_ENOMEM && e.msg[0] != '\0');
		snap(s, &a);
		CHECK(a.len == before.len && memcmp(a.data, before.data, a.len) == 0);
		goto out;
	}
	snap(s, &a);
	CHECK(aep_store_new(&cfg, &t) == 0);
	CHECK(aep_store_restore(t, a.data, a.len, &e) == 0);
	CHECK(aep_store_revision(t) == aep_store_revision(s));
	CHECK(aep_store_applied_index(t) == aep_store_applied_index(s));
	snap(t, &b);
	CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
	aep_store_free(t);
out:
	aep_store_free(s);
	aep_buf_free(&b);
	aep_buf_free(&a);
	aep_buf_free(&before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	restore_and_check((const char *)data, size);

	if (size == 0 || size > WRAP_MAX)
		return 0;
	LZ4F_preferences_t prefs;
	memset(&prefs, 0, sizeof(prefs));
	prefs.frameInfo.contentSize = size;
	prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
	size_t bound = LZ4F_compressFrameBound(size, &prefs);
	char *frame = aep_malloc(bound);
	CHECK(frame != NULL);
	size_t n = LZ4F_compressFrame(frame, bound, data, size, &prefs);
	CHECK(!LZ4F_isError(n));
	restore_and_check(frame, n);
	aep_free(frame);
	return 0;
}
