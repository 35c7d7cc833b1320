/* Snapshots: the whole store as one msgpack value, in an LZ4 frame.
 *
 * The value is
 *
 *   [1, revision, applied_index, [[name, api, peer], ...], [object, ...]]
 *
 * with members in name order and the objects, as their canonical msgpack
 * maps, kind by kind in enum order and by (namespace, name) within a kind.
 * Nothing else goes in (no pointers, no watchers, no event log), so two
 * stores with the same content give the same bytes. The frame records the
 * content size and a content checksum; `lz4 -d` reads it.
 *
 * Restore bounds the declared size before allocating (at most 4 GiB and at
 * most 255 times the compressed size), decompresses, then decodes every
 * object again with aep_object_decode into a fresh store. Only when all of
 * that succeeds does the fresh content replace the store's; on any error
 * the store is untouched. */
#include "state/object-int.h"
#include "state/store-int.h"

#include <lz4frame.h>
#include <string.h>

#define SNAPSHOT_VERSION   1
#define SNAPSHOT_FIELDS	   5
#define SNAPSHOT_RAW_MAX   (4ull << 30)
#define SNAPSHOT_RATIO_MAX 255
#define MEMBER_STR_MAX	   1024

/* A frozen view: every object referenced, in snapshot order, and a copy of
 * the header (revision, index, members) already packed. */
struct aep_store_view {
	struct aep_buf head;	  /* [1, rev, index, members, array header] */
	struct aep_object **objs; /* referenced */
	size_t nobjs;
	uint64_t raw_len; /* head plus every object */
};

void aep_store_view_free(struct aep_store_view *v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->nobjs; i++)
		aep_object_unref(v->objs[i]);
	aep_free(v->objs);
	aep_buf_free(&v->head);
	aep_free(v);
}

int aep_store_view_take(struct aep_store *s, struct aep_store_view **out)
{
	struct aep_store_view *v = aep_calloc(1, sizeof(*v));
	msgpack_packer pk;
	size_t total = 0;

	if (v == NULL)
		return AEP_ENOMEM;
	aep_buf_init(&v->head);
	for (int k = 0; k < AEP_KIND__COUNT; k++)
		total += s->tables[k].count;
	if (total > UINT32_MAX) {
		aep_store_view_free(v);
		return AEP_ETOOLARGE;
	}
	aep_packer_init(&pk, &v->head);
	msgpack_pack_array(&pk, SNAPSHOT_FIELDS);
	msgpack_pack_uint64(&pk, SNAPSHOT_VERSION);
	msgpack_pack_uint64(&pk, s->revision);
	msgpack_pack_uint64(&pk, s->applied_index);
	msgpack_pack_array(&pk, s->nmembers);
	for (size_t i = 0; i < s->nmembers; i++) {
		msgpack_pack_array(&pk, 3);
		aep_pack_str(&pk, s->members[i].name);
		aep_pack_str(&pk, s->members[i].api);
		aep_pack_str(&pk, s->members[i].peer);
	}
	msgpack_pack_array(&pk, total);
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	v->objs = aep_malloc((total > 0 ? total : 1) * sizeof(*v->objs));
	if (v->head.failed || v->objs == NULL) {
		aep_store_view_free(v);
		return AEP_ENOMEM;
	}
	v->raw_len = v->head.len;
	for (int k = 0; k < AEP_KIND__COUNT; k++) {
		struct state__entry *e;
		RB_FOREACH(e, state__key_tree, &s->tables[k].tree)
		{
			v->objs[v->nobjs++] = aep_object_ref(e->obj);
			v->raw_len += e->obj->len;
		}
	}
	*out = v;
	return 0;
}

/* Compress @len bytes into @out, which grows as needed. */
static int compress_more(LZ4F_cctx *cctx, const LZ4F_preferences_t *prefs, struct aep_buf *out,
			 const char *data, size_t len)
{
	size_t bound = LZ4F_compressBound(len, prefs);
	if (aep_buf_reserve(out, bound) != 0)
		return AEP_ENOMEM;
	size_t n = LZ4F_compressUpdate(cctx, out->data + out->len, bound, data, len, NULL);
	if (LZ4F_isError(n))
		return AEP_ENOMEM; /* the bound was enough */
	out->len += n;
	return 0;
}

/* The objects go to the compressor in runs of about this many bytes. */
#define SNAPSHOT_CHUNK (1u << 20)

int aep_store_view_encode(const struct aep_store_view *v, struct aep_buf *out)
{
	LZ4F_preferences_t prefs;
	LZ4F_cctx *cctx;
	struct aep_buf chunk;
	size_t start = out->len;
	int rv;

	if (v->raw_len > SNAPSHOT_RAW_MAX)
		return AEP_ETOOLARGE;
	memset(&prefs, 0, sizeof(prefs));
	prefs.frameInfo.blockSizeID = LZ4F_max4MB;
	prefs.frameInfo.blockMode = LZ4F_blockIndependent;
	prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
	prefs.frameInfo.contentSize = v->raw_len;
	if (LZ4F_isError(LZ4F_createCompressionContext(&cctx, LZ4F_VERSION)))
		return AEP_ENOMEM;
	aep_buf_init(&chunk);
	rv = aep_buf_reserve(out, LZ4F_HEADER_SIZE_MAX);
	if (rv != 0)
		goto out_fail;
	size_t n = LZ4F_compressBegin(cctx, out->data + out->len, LZ4F_HEADER_SIZE_MAX, &prefs);
	if (LZ4F_isError(n)) {
		rv = AEP_ENOMEM;
		goto out_fail;
	}
	out->len += n;
	rv = compress_more(cctx, &prefs, out, v->head.data, v->head.len);
	for (size_t i = 0; rv == 0 && i < v->nobjs; i++) {
		const struct aep_object *o = v->objs[i];
		if (o->len >= SNAPSHOT_CHUNK) {
			rv = compress_more(cctx, &prefs, out, chunk.data, chunk.len);
			aep_buf_reset(&chunk);
			if (rv == 0)
				rv = compress_more(cctx, &prefs, out, o->data, o->len);
			continue;
		}
		if (chunk.len + o->len > SNAPSHOT_CHUNK) {
			rv = compress_more(cctx, &prefs, out, chunk.data, chunk.len);
			aep_buf_reset(&chunk);
		}
		if (rv == 0 && aep_buf_append(&chunk, o->data, o->len) != 0)
			rv = AEP_ENOMEM;
	}
	if (rv == 0)
		rv = compress_more(cctx, &prefs, out, chunk.data, chunk.len);
	if (rv != 0)
		goto out_fail;
	size_t bound = LZ4F_compressBound(0, &prefs);
	rv = aep_buf_reserve(out, bound);
	if (rv != 0)
		goto out_fail;
	n = LZ4F_compressEnd(cctx, out->data + out->len, bound, NULL);
	if (LZ4F_isError(n)) {
		rv = AEP_ENOMEM;
		goto out_fail;
	}
	out->len += n;
	aep_buf_free(&chunk);
	LZ4F_freeCompressionContext(cctx);
	return 0;

out_fail:
	out->len = start;
	out->failed = false;
	aep_buf_free(&chunk);
	LZ4F_freeCompressionContext(cctx);
	return rv;
}

/* Append the snapshot to @out. Returns 0, AEP_ENOMEM or AEP_ETOOLARGE
 * (more than 4 GiB of content); on failure @out keeps its length. */
int aep_store_snapshot(struct aep_store *s, struct aep_buf *out)
{
	struct aep_store_view *v;
	int rv = aep_store_view_take(s, &v);
	if (rv != 0)
		return rv;
	rv = aep_store_view_encode(v, out);
	aep_store_view_free(v);
	return rv;
}

/* Decompress a whole frame into a new heap buffer of its declared size. */
static int decompress(const char *data, size_t len, char **out, size_t *out_len,
		      struct aep_error *e)
{
	LZ4F_dctx *dctx;
	LZ4F_frameInfo_t info;
	char *raw;
	int rv;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
		return aep_errorf(e, AEP_ENOMEM, "snapshot: out of memory");
	size_t consumed = len;
	size_t hint = LZ4F_getFrameInfo(dctx, &info, data, &consumed);
	if (LZ4F_isError(hint)) {
		rv = aep_errorf(e, AEP_EINVALID, "snapshot: not an lz4 frame: %s",
				LZ4F_getErrorName(hint));
		goto out_free_dctx;
	}
	unsigned long long size = info.contentSize;
	if (size == 0) {
		rv = aep_errorf(e, AEP_EINVALID, "snapshot: the frame declares no content size");
		goto out_free_dctx;
	}
	if (size > SNAPSHOT_RAW_MAX || size > SIZE_MAX) {
		rv = aep_errorf(e, AEP_ETOOLARGE, "snapshot: %llu bytes exceed the limit of %llu",
				size, (unsigned long long)SNAPSHOT_RAW_MAX);
		goto out_free_dctx;
	}
	if (size / SNAPSHOT_RATIO_MAX > len) {
		rv =
		    aep_errorf(e, AEP_EINVALID,
			       "snapshot: %llu bytes declared for %zu compressed bytes", size, len);
		goto out_free_dctx;
	}
	raw = aep_malloc((size_t)size);
	if (raw == NULL) {
		rv = aep_errorf(e, AEP_ENOMEM, "snapshot: out of memory for %llu bytes", size);
		goto out_free_dctx;
	}
	size_t in_off = consumed, out_off = 0;
	while (hint != 0) {
		size_t dst = (size_t)size - out_off, src = len - in_off;
		hint = LZ4F_decompress(dctx, raw + out_off, &dst, data + in_off, &src, NULL);
		if (LZ4F_isError(hint)) {
			rv = aep_errorf(e, AEP_EINVALID, "snapshot: %s", LZ4F_getErrorName(hint));
			goto out_free_raw;
		}
		in_off += src;
		out_off += dst;
		if (hint != 0 && src == 0 && dst == 0) {
			rv = aep_errorf(e, AEP_EINVALID, "snapshot: truncated");
			goto out_free_raw;
		}
	}
	if (in_off != len || out_off != size) {
		rv = aep_errorf(e, AEP_EINVALID,
				"snapshot: %zu bytes after the frame, %zu of %llu "
				"bytes decoded",
				len - in_off, out_off, size);
		goto out_free_raw;
	}
	LZ4F_freeDecompressionContext(dctx);
	*out = raw;
	*out_len = (size_t)size;
	return 0;

out_free_raw:
	aep_free(raw);
out_free_dctx:
	LZ4F_freeDecompressionContext(dctx);
	return rv;
}

static int parse_members(struct aep_store *s, struct state__rd *r, struct aep_error *e)
{
	uint32_t n;
	const char *prev = NULL;
	uint32_t prev_len = 0;
	if (state__rd_array(r, &n) != 0)
		return aep_errorf(e, AEP_EINVALID, "snapshot: members: not an array");
	for (uint32_t i = 0; i < n; i++) {
		uint32_t m, nl, al, pl;
		const char *name, *api, *peer;
		if (state__rd_array(r, &m) != 0 || m != 3 || state__rd_str(r, &name, &nl) != 0 ||
		    state__rd_str(r, &api, &al) != 0 || state__rd_str(r, &peer, &pl) != 0 ||
		    nl == 0 || nl > AEP_NAME_MAX || al > MEMBER_STR_MAX || pl > MEMBER_STR_MAX ||
		    memchr(name, 0, nl) || memchr(api, 0, al) || memchr(peer, 0, pl))
			return aep_errorf(e, AEP_EINVALID, "snapshot: member %u: malformed", i);
		if (prev != NULL) {
			int c = memcmp(prev, name, prev_len < nl ? prev_len : nl);
			if (c > 0 || (c == 0 && prev_len >= nl))
				return aep_errorf(e, AEP_EINVALID,
						  "snapshot: members out of order at %u", i);
		}
		if (state__store_set_member(s, name, nl, api, al, peer, pl) != 0)
			return aep_errorf(e, AEP_ENOMEM, "snapshot: out of memory");
		prev = name;
		prev_len = nl;
	}
	return 0;
}

/* Objects must come in snapshot order; this also rules out duplicates. */
static bool in_order(const struct aep_object *prev, const struct aep_object *o)
{
	if (prev == NULL)
		return true;
	if (prev->kind != o->kind)
		return prev->kind < o->kind;
	int c = strcmp(prev->meta.ns, o->meta.ns);
	if (c != 0)
		return c < 0;
	return strcmp(prev->meta.name, o->meta.name) < 0;
}

/* One object of a snapshot. The store's objects are canonical, and apply
 * reads canonical objects with state__canon_read (state/store.c): restore
 * reads them the same way, so a snapshot restores exactly what the store
 * that wrote it had applied, byte for byte. Anything else is decoded and
 * validated as a client's object. */
static int snapshot_object(const char *p, size_t len, struct aep_object **out, struct aep_error *e)
{
	struct state__canon cv;
	for (int k = 0; k < AEP_KIND__COUNT; k++) {
		if (state__canon_read((enum aep_kind)k, p, len, &cv) == 0) {
			if (state__canon_stamp(&cv, NULL, cv.rv, -1, -1, out) != 0)
				return aep_errorf(e, AEP_ENOMEM, "out of memory");
			return 0;
		}
	}
	return aep_object_decode(p, len, out, e);
}

static int parse_objects(struct aep_store *s, struct state__rd *r, uint64_t revision,
			 struct aep_error *e)
{
	uint32_t n;
	struct aep_object *prev = NULL;
	int rv = 0;
	if (state__rd_array(r, &n) != 0)
		return aep_errorf(e, AEP_EINVALID, "snapshot: objects: not an array");
	for (uint32_t i = 0; i < n; i++) {
		const char *p;
		size_t len;
		struct aep_object *o;
		if (state__rd_raw(r, AEP_OBJECT_MAX, &p, &len) != 0) {
			rv = aep_errorf(e, AEP_EINVALID, "snapshot: object %u: malformed", i);
			break;
		}
		rv = snapshot_object(p, len, &o, e);
		if (rv != 0) {
			if (rv != AEP_ENOMEM)
				rv = AEP_EINVALID;
			aep_error_prefix(e, "snapshot: object %u", i);
			e->code = rv;
			break;
		}
		if (!in_order(prev, o) || o->meta.rv > revision) {
			rv = aep_errorf(e, AEP_EINVALID,
					"snapshot: object %u (%s %s/%s): out of order or newer "
					"than the snapshot",
					i, aep_kind_info(o->kind)->name, o->meta.ns, o->meta.name);
			aep_object_unref(o);
			break;
		}
		rv = state__store_insert(s, o);
		if (rv != 0) {
			aep_object_unref(o);
			rv = aep_errorf(e, rv == AEP_ENOMEM ? AEP_ENOMEM : AEP_EINVALID,
					"snapshot: object %u: %s", i, aep_err_code(rv));
			break;
		}
		if (prev != NULL)
			aep_object_unref(prev);
		prev = o;
	}
	if (prev != NULL)
		aep_object_unref(prev);
	return rv;
}

int aep_store_restore(struct aep_store *s, const char *data, size_t len, struct aep_error *e)
{
	char *raw = NULL;
	size_t raw_len = 0;
	struct aep_store *fresh;
	uint32_t n;
	uint64_t version, revision, applied;
	int rv;

	if (s->watchers.dispatching > 0)
		return aep_errorf(e, AEP_EINVALID, "snapshot: restore from a watch callback");
	rv = decompress(data, len, &raw, &raw_len, e);
	if (rv != 0)
		return rv;
	rv = state__store_alloc(0, &fresh);
	if (rv != 0) {
		rv = aep_errorf(e, AEP_ENOMEM, "snapshot: out of memory");
		goto out_free_raw;
	}
	struct state__rd r = {(const unsigned char *)raw, raw_len, 0};
	if (state__rd_array(&r, &n) != 0 || n != SNAPSHOT_FIELDS ||
	    state__rd_uint(&r, &version) != 0 || state__rd_uint(&r, &revision) != 0 ||
	    state__rd_uint(&r, &applied) != 0) {
		rv = aep_errorf(e, AEP_EINVALID, "snapshot: malformed header");
		goto out_free_fresh;
	}
	if (version != SNAPSHOT_VERSION) {
		rv = aep_errorf(e, AEP_EINVALID, "snapshot: format version %llu, expected %d",
				(unsigned long long)version, SNAPSHOT_VERSION);
		goto out_free_fresh;
	}
	if (AEP_REV_INDEX(revision) > applied) {
		rv = aep_errorf(e, AEP_EINVALID,
				"snapshot: revision %llu is past the applied index %llu",
				(unsigned long long)revision, (unsigned long long)applied);
		goto out_free_fresh;
	}
	rv = parse_members(fresh, &r, e);
	if (rv != 0)
		goto out_free_fresh;
	rv = parse_objects(fresh, &r, revision, e);
	if (rv != 0)
		goto out_free_fresh;
	if (r.off != raw_len) {
		rv = aep_errorf(e, AEP_EINVALID, "snapshot: %zu trailing bytes", raw_len - r.off);
		goto out_free_fresh;
	}

	/* Commit: nothing below fails. */
	state__log_reset(s, revision);
	state__store_clear_content(s);
	state__store_move_content(s, fresh);
	s->revision = revision;
	s->applied_index = applied;
	state__watch_expire_all(s);
out_free_fresh:
	aep_store_free(fresh);
out_free_raw:
	aep_free(raw);
	return rv;
}
