/* Bounding msgpack input before msgpack-c allocates for it.
 *
 * msgpack-c's C unpacker trusts the lengths in the stream: an array header
 * that claims 2^32 elements makes it allocate for them. aep_mp_check()
 * walks the headers of one object without allocating, and refuses it when a
 * length exceeds the limits or the bytes that are left, when nesting is too
 * deep, or when a byte is not msgpack at all. Only then is it unpacked. */
#include "lib/lib.h"

#include <string.h>

const struct aep_mp_limits aep_mp_default_limits = {
    .max_bytes = 4u << 20,
    .max_depth = 32,
    .max_len = 100000,
    .max_str = 1u << 20,
    .max_items = 1000000,
};

#define MP_MAX_DEPTH 128

static uint64_t be(const unsigned char *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

int aep_mp_check(const char *buf, size_t len, const struct aep_mp_limits *lim, size_t *used,
		 struct aep_error *e)
{
	const unsigned char *p = (const unsigned char *)buf;
	uint64_t stack[MP_MAX_DEPTH]; /* elements still owed at each level */
	unsigned depth = 0;
	unsigned max_depth = lim->max_depth < MP_MAX_DEPTH ? lim->max_depth : MP_MAX_DEPTH;
	uint64_t items = 0;
	size_t off = 0;
	uint64_t owed = 1; /* at the top: one object */

	*used = 0;
	for (;;) {
		while (owed == 0) {
			if (depth == 0) {
				*used = off;
				return 0;
			}
			owed = stack[--depth];
		}
		if (off >= len)
			goto need_more;
		if (off >= lim->max_bytes)
			goto too_big;
		owed--;
		if (++items > lim->max_items)
			return aep_errorf(e, AEP_ETOOLARGE, "message has more than %llu elements",
					  (unsigned long long)lim->max_items);
		unsigned char c = p[off++];
		uint64_t skip = 0;  /* payload bytes after the header */
		uint64_t count = 0; /* children for arrays/maps */
		bool container = false;
		unsigned hdr = 0; /* length bytes that follow the type byte */

		if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
			/* fixint, nil, bool */
		} else if (c >= 0x80 && c <= 0x8f) {
			count = 2u * (c & 0x0f);
			container = true;
		} else if (c >= 0x90 && c <= 0x9f) {
			count = c & 0x0f;
			container = true;
		} else if (c >= 0xa0 && c <= 0xbf) {
			skip = c & 0x1f;
		} else {
			switch (c) {
			case 0xc4:
			case 0xd9: hdr = 1; break;
			case 0xc5:
			case 0xda: hdr = 2; break;
			case 0xc6:
			case 0xdb: hdr = 4; break;
			case 0xc7:
				hdr = 1;
				skip = 1;
				break;
			case 0xc8:
				hdr = 2;
				skip = 1;
				break;
			case 0xc9:
				hdr = 4;
				skip = 1;
				break;
			case 0xca: skip = 4; break;
			case 0xcb: skip = 8; break;
			case 0xcc:
			case 0xd0: skip = 1; break;
			case 0xcd:
			case 0xd1: skip = 2; break;
			case 0xce:
			case 0xd2: skip = 4; break;
			case 0xcf:
			case 0xd3: skip = 8; break;
			case 0xd4: skip = 2; break;
			case 0xd5: skip = 3; break;
			case 0xd6: skip = 5; break;
			case 0xd7: skip = 9; break;
			case 0xd8: skip = 17; break;
			case 0xdc:
				hdr = 2;
				container = true;
				break;
			case 0xdd:
				hdr = 4;
				container = true;
				break;
			case 0xde:
				hdr = 2;
				container = true;
				break;
			case 0xdf:
				hdr = 4;
				container = true;
				break;
			default:
				return aep_errorf(e, AEP_EBADREQUEST,
						  "malformed msgpack: byte 0x%02x at offset %zu", c,
						  off - 1);
			}
			if (hdr > 0) {
				if (len - off < hdr)
					goto need_more;
				uint64_t n = be(p + off, hdr);
				off += hdr;
				if (container) {
					count = (c == 0xde || c == 0xdf) ? 2 * n : n;
				} else {
					if (n > lim->max_str)
						return aep_errorf(
						    e, AEP_ETOOLARGE,
						    "string of %llu bytes exceeds the limit of %u",
						    (unsigned long long)n, lim->max_str);
					skip += n;
				}
			}
		}
		if (container) {
			bool map = (c >= 0x80 && c <= 0x8f) || c == 0xde || c == 0xdf;
			uint64_t elems = map ? count / 2 : count;
			if (elems > lim->max_len)
				return aep_errorf(e, AEP_ETOOLARGE,
						  "%s of %llu %s exceeds the limit of %u",
						  map ? "map" : "array", (unsigned long long)elems,
						  map ? "pairs" : "elements", lim->max_len);
			if (count > 0) {
				if (depth + 1 >= max_depth)
					return aep_errorf(e, AEP_ETOOLARGE,
							  "nesting deeper than %u levels",
							  lim->max_depth);
				/* Each element needs at least one byte. */
				if (count > lim->max_bytes)
					goto too_big;
				stack[depth++] = owed;
				owed = count;
			}
		}
		if (skip > 0) {
			if (skip > lim->max_bytes || off + skip > lim->max_bytes)
				goto too_big;
			if (len - off < skip)
				goto need_more;
			off += skip;
		}
	}
need_more:
	if (len >= lim->max_bytes)
		goto too_big;
	*used = 0;
	return AEP_ECANCELED;
too_big:
	return aep_errorf(e, AEP_ETOOLARGE, "message exceeds the limit of %zu bytes",
			  lim->max_bytes);
}

int aep_mp_unpack(const char *buf, size_t len, msgpack_zone *zone, msgpack_object *out,
		  struct aep_error *e)
{
	size_t off = 0;
	msgpack_unpack_return r = msgpack_unpack(buf, len, &off, zone, out);
	switch (r) {
	case MSGPACK_UNPACK_SUCCESS: return 0;
	case MSGPACK_UNPACK_EXTRA_BYTES:
		return aep_errorf(e, AEP_EBADREQUEST, "trailing bytes after msgpack object");
	case MSGPACK_UNPACK_NOMEM_ERROR:
		return aep_errorf(e, AEP_ENOMEM, "out of memory decoding msgpack");
	default: return aep_errorf(e, AEP_EBADREQUEST, "malformed msgpack");
	}
}

const msgpack_object *aep_mp_map_get(const msgpack_object *map, const char *key)
{
	if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	size_t kl = strlen(key);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
		    memcmp(k->via.str.ptr, key, kl) == 0)
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

bool aep_mp_str_eq(const msgpack_object *o, const char *s)
{
	size_t n = strlen(s);
	return o != NULL && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
	       memcmp(o->via.str.ptr, s, n) == 0;
}

char *aep_mp_strdup(const msgpack_object *o)
{
	if (o == NULL || o->type != MSGPACK_OBJECT_STR)
		return NULL;
	return aep_strndup(o->via.str.ptr, o->via.str.size);
}
