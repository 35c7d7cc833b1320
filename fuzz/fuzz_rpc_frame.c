/* fuzz_rpc_frame: the msgpack-RPC input path of net/ on arbitrary bytes.
 *
 * The input is one connection's plaintext stream. As net/conn.c's
 * process_input does, each message is bounded with aep_mp_check() under
 * the API's default limits, unpacked with aep_mp_unpack() into a zone
 * that is cleared after each message, and its shape checked with
 * net__msg_parse() (the function conn.c's dispatch uses). Then what the
 * handlers read of it is read: a response's error map as deliver_response
 * reads it, a request's params the way the master's API handlers do
 * (aep_mp_map_get, aep_mp_strdup) and, for an "object" param, through
 * aep_object_from_msgpack().
 *
 * The input is also fed again in two pieces (split at a point taken from
 * its first byte), as bytes arrive from a socket: the checker must give the
 * same verdicts for the messages wholly in the first piece, and say "need
 * more" rather than fail for one cut in the middle.
 *
 * Checked promises (a broken one traps): the checker's verdict holds
 * (a checked message unpacks, using exactly the bytes it measured); an
 * incomplete message is never an error; parsing fills what its type
 * promises. */
#include <stdint.h>
#include <string.h>

#include "net/net-int.h"
#include "state/state.h"

#define CHECK(cond)                       \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

/* At most this many messages per input (libFuzzer keeps inputs small). */
#define MAX_MSGS 256

static void read_error(const msgpack_object *err)
{
	if (err->type != MSGPACK_OBJECT_MAP)
		return;
	const msgpack_object *code = aep_mp_map_get(err, "code");
	const msgpack_object *msg = aep_mp_map_get(err, "message");
	if (code != NULL && code->type == MSGPACK_OBJECT_STR) {
		int c = aep_err_from_code(code->via.str.ptr, code->via.str.size);
		CHECK(c >= 0 && c < AEP_E__COUNT);
		CHECK(aep_err_code(c) != NULL);
	}
	if (msg != NULL)
		aep_mp_str_eq(msg, "");
	(void)aep_mp_map_get(err, "details");
}

static void read_params(const msgpack_object *params)
{
	static const char *const keys[] = {"kind", "namespace", "name", "labelSelector",
					   "resourceVersion"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char *s = aep_mp_strdup(aep_mp_map_get(params, keys[i]));
		aep_free(s);
	}
	const msgpack_object *obj = aep_mp_map_get(params, "object");
	if (obj != NULL) {
		struct aep_error e = {0};
		struct aep_object *o;
		if (aep_object_from_msgpack(obj, &o, &e) == 0)
			aep_object_unref(o);
	}
}

/* What aep_mp_check() let through is within the limits it was given:
 * nesting (the top container is level 1), elements per array, pairs per
 * map, bytes per string, elements in all. */
static void check_limits(const msgpack_object *o, unsigned level, uint64_t *items,
			 const struct aep_mp_limits *lim)
{
	CHECK(++*items <= lim->max_items);
	switch (o->type) {
	case MSGPACK_OBJECT_STR: CHECK(o->via.str.size <= lim->max_str); return;
	case MSGPACK_OBJECT_BIN: CHECK(o->via.bin.size <= lim->max_str); return;
	case MSGPACK_OBJECT_EXT: CHECK(o->via.ext.size <= lim->max_str); return;
	case MSGPACK_OBJECT_ARRAY:
		CHECK(o->via.array.size <= lim->max_len);
		if (o->via.array.size > 0)
			CHECK(level <= lim->max_depth);
		for (uint32_t i = 0; i < o->via.array.size; i++)
			check_limits(&o->via.array.ptr[i], level + 1, items, lim);
		return;
	case MSGPACK_OBJECT_MAP:
		CHECK(o->via.map.size <= lim->max_len);
		if (o->via.map.size > 0)
			CHECK(level <= lim->max_depth);
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			check_limits(&o->via.map.ptr[i].key, level + 1, items, lim);
			check_limits(&o->via.map.ptr[i].val, level + 1, items, lim);
		}
		return;
	default: return;
	}
}

/* Frame and parse every whole message in @p; returns how many bytes the
 * whole messages took, and their verdicts (0 ok, else the error code) in
 * @verdicts. *@stopped: the stream had a fault (the connection closes). */
static size_t process(const char *p, size_t len, int *verdicts, size_t *nmsgs, bool *stopped)
{
	struct aep_error e = {0};
	msgpack_zone zone;
	size_t off = 0;

	*nmsgs = 0;
	*stopped = false;
	CHECK(msgpack_zone_init(&zone, 4096));
	while (off < len && *nmsgs < MAX_MSGS) {
		msgpack_object obj;
		size_t used = 1234;
		int rv = aep_mp_check(p + off, len - off, &aep_mp_default_limits, &used, &e);
		if (rv == AEP_ECANCELED) {
			CHECK(used == 0);
			break;
		}
		if (rv != 0) {
			CHECK(rv == AEP_ETOOLARGE || rv == AEP_EBADREQUEST);
			verdicts[(*nmsgs)++] = rv;
			*stopped = true;
			break;
		}
		CHECK(used > 0 && used <= len - off && used <= aep_mp_default_limits.max_bytes);
		/* The checker measured one whole object: msgpack-c agrees. */
		rv = aep_mp_unpack(p + off, used, &zone, &obj, &e);
		CHECK(rv == 0);
		uint64_t items = 0;
		check_limits(&obj, 1, &items, &aep_mp_default_limits);
		off += used;

		struct net__msg m;
		const char *why = NULL;
		rv = net__msg_parse(&obj, &m, &why);
		verdicts[(*nmsgs)++] = rv;
		if (rv != 0) {
			CHECK(rv == AEP_EBADREQUEST && why != NULL);
			CHECK(!m.has_msgid || m.type == 0);
			*stopped = true;
			msgpack_zone_clear(&zone);
			break;
		}
		switch (m.type) {
		case 0:
			CHECK(m.has_msgid && m.method != NULL && m.params != NULL);
			read_params(m.params);
			break;
		case 1:
			CHECK(m.has_msgid && m.error != NULL && m.result != NULL);
			read_error(m.error);
			break;
		case 2:
			CHECK(m.method != NULL && m.params != NULL &&
			      m.params->type == MSGPACK_OBJECT_ARRAY);
			break;
		default: CHECK(false);
		}
		msgpack_zone_clear(&zone);
	}
	msgpack_zone_destroy(&zone);
	return off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int whole[MAX_MSGS], part[MAX_MSGS];
	size_t nwhole, npart;
	bool stopped_whole, stopped_part;
	const char *p = (const char *)data;

	size_t took = process(p, size, whole, &nwhole, &stopped_whole);
	if (size < 2)
		return 0;

	/* The same stream cut in two: the first piece alone must give the
	 * same verdicts for what it wholly holds. */
	size_t cut = 1 + (size_t)data[0] * (size - 1) / 256;
	size_t took1 = process(p, cut, part, &npart, &stopped_part);
	CHECK(took1 <= took || stopped_whole);
	if (!stopped_part) {
		/* Whatever it had was whole or incomplete: never an error. */
		CHECK(npart <= nwhole);
		for (size_t i = 0; i < npart; i++)
			CHECK(part[i] == whole[i]);
	}
	return 0;
}
