/* Commands and Raft entries.
 *
 * A command is a msgpack array of ten values, in this order:
 *
 *   [op, kind, ns|nil, name|nil, precond_rv, uid|nil, now_ns, obj|nil,
 *    member_api|nil, member_peer|nil]
 *
 * op and kind are the enum values (unsigned ints); precond_rv an unsigned
 * int; now_ns a signed int; obj the object's canonical msgpack (as made by
 * aep_object_decode) carried as bin, so reading an entry never walks into
 * it. An entry is a msgpack array of commands. struct aep_batch reserves
 * five bytes in front of the first command and writes the array header
 * into their tail at finish, so adding a command is one append.
 *
 * Reading uses a small cursor over exactly the shapes above, every length
 * checked against the bytes that are left; it allocates nothing. */
#include "state/store-int.h"

#include <string.h>

#define CMD_FIELDS  11
#define CMD_STR_MAX 1024 /* member addresses */
#define BATCH_HDR   5	 /* array32 header */

/* ---- reader ------------------------------------------------------------- */

static uint64_t be(const unsigned char *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Read @n big-endian bytes after the type byte at r->off; -1 if truncated. */
static int rd_be(const struct state__rd *r, unsigned n, uint64_t *v)
{
	if (r->len - r->off < 1 + (size_t)n)
		return -1;
	*v = be(r->p + r->off + 1, n);
	return 0;
}

int state__rd_array(struct state__rd *r, uint32_t *n)
{
	if (r->off >= r->len)
		return -1;
	unsigned char c = r->p[r->off];
	uint64_t v;
	unsigned hdr;
	if (c >= 0x90 && c <= 0x9f) {
		v = c & 0x0f;
		hdr = 0;
	} else if (c == 0xdc || c == 0xdd) {
		hdr = c == 0xdc ? 2 : 4;
		if (rd_be(r, hdr, &v) != 0)
			return -1;
	} else {
		return -1;
	}
	/* Each element takes at least one byte. */
	if (v > r->len - r->off - 1 - hdr)
		return -1;
	r->off += 1 + hdr;
	*n = (uint32_t)v;
	return 0;
}

int state__rd_map(struct state__rd *r, uint32_t *npairs)
{
	if (r->off >= r->len)
		return -1;
	unsigned char c = r->p[r->off];
	uint64_t v;
	unsigned hdr;
	if (c >= 0x80 && c <= 0x8f) {
		v = c & 0x0f;
		hdr = 0;
	} else if (c == 0xde || c == 0xdf) {
		hdr = c == 0xde ? 2 : 4;
		if (rd_be(r, hdr, &v) != 0)
			return -1;
	} else {
		return -1;
	}
	/* Each pair takes at least two bytes. */
	if (v > (r->len - r->off - 1 - hdr) / 2)
		return -1;
	r->off += 1 + hdr;
	*npairs = (uint32_t)v;
	return 0;
}

/* An integer of either sign: *neg tells which; *mag is the value or, for a
 * negative one, its two's-complement bits. */
static int rd_integer(struct state__rd *r, bool *neg, uint64_t *bits)
{
	if (r->off >= r->len)
		return -1;
	unsigned char c = r->p[r->off];
	uint64_t v;
	unsigned n;
	if (c <= 0x7f) {
		*neg = false;
		*bits = c;
		r->off++;
		return 0;
	}
	if (c >= 0xe0) {
		*neg = true;
		*bits = (uint64_t)(int64_t)(int8_t)c;
		r->off++;
		return 0;
	}
	switch (c) {
	case 0xcc:
	case 0xd0: n = 1; break;
	case 0xcd:
	case 0xd1: n = 2; break;
	case 0xce:
	case 0xd2: n = 4; break;
	case 0xcf:
	case 0xd3: n = 8; break;
	default: return -1;
	}
	if (rd_be(r, n, &v) != 0)
		return -1;
	if (c >= 0xd0) {
		/* Sign-extend the n-byte value. */
		unsigned shift = 64 - 8 * n;
		int64_t sv = (int64_t)(v << shift) >> shift;
		*neg = sv < 0;
		*bits = (uint64_t)sv;
	} else {
		*neg = false;
		*bits = v;
	}
	r->off += 1 + n;
	return 0;
}

int state__rd_uint(struct state__rd *r, uint64_t *v)
{
	size_t off = r->off;
	bool neg;
	if (rd_integer(r, &neg, v) != 0)
		return -1;
	if (neg) {
		r->off = off;
		return -1;
	}
	return 0;
}

int state__rd_int(struct state__rd *r, int64_t *v)
{
	size_t off = r->off;
	bool neg;
	uint64_t bits;
	if (rd_integer(r, &neg, &bits) != 0)
		return -1;
	if (!neg && bits > INT64_MAX) {
		r->off = off;
		return -1;
	}
	*v = (int64_t)bits;
	return 0;
}

/* A str or bin body: header of @hdr length bytes (0: length in @fixlen). */
static int rd_body(struct state__rd *r, unsigned hdr, uint64_t fixlen, const char **s, uint32_t *n)
{
	uint64_t v = fixlen;
	if (hdr > 0 && rd_be(r, hdr, &v) != 0)
		return -1;
	if (v > r->len - r->off - 1 - hdr)
		return -1;
	*s = (const char *)r->p + r->off + 1 + hdr;
	*n = (uint32_t)v;
	r->off += 1 + hdr + (size_t)v;
	return 0;
}

int state__rd_str(struct state__rd *r, const char **s, uint32_t *n)
{
	if (r->off >= r->len)
		return -1;
	unsigned char c = r->p[r->off];
	if (c >= 0xa0 && c <= 0xbf)
		return rd_body(r, 0, c & 0x1f, s, n);
	switch (c) {
	case 0xd9: return rd_body(r, 1, 0, s, n);
	case 0xda: return rd_body(r, 2, 0, s, n);
	case 0xdb: return rd_body(r, 4, 0, s, n);
	default: return -1;
	}
}

int state__rd_bin(struct state__rd *r, const char **s, uint32_t *n)
{
	if (r->off >= r->len)
		return -1;
	switch (r->p[r->off]) {
	case 0xc4: return rd_body(r, 1, 0, s, n);
	case 0xc5: return rd_body(r, 2, 0, s, n);
	case 0xc6: return rd_body(r, 4, 0, s, n);
	default: return -1;
	}
}

static bool rd_nil(struct state__rd *r)
{
	if (r->off < r->len && r->p[r->off] == 0xc0) {
		r->off++;
		return true;
	}
	return false;
}

int state__rd_str_or_nil(struct state__rd *r, const char **s, uint32_t *n)
{
	if (rd_nil(r)) {
		*s = NULL;
		*n = 0;
		return 0;
	}
	return state__rd_str(r, s, n);
}

int state__rd_raw(struct state__rd *r, size_t max, const char **s, size_t *n)
{
	struct aep_mp_limits lim = aep_mp_default_limits;
	struct aep_error e = {0};
	size_t used;
	lim.max_bytes = max;
	if (aep_mp_check((const char *)r->p + r->off, r->len - r->off, &lim, &used, &e) != 0)
		return -1;
	*s = (const char *)r->p + r->off;
	*n = used;
	r->off += used;
	return 0;
}

/* ---- commands ----------------------------------------------------------- */

static bool has_nul(const char *s, uint32_t n)
{
	return s != NULL && memchr(s, '\0', n) != NULL;
}

int state__cmd_decode(struct state__rd *r, struct state__cmd *c)
{
	uint32_t n;
	uint64_t op, kind;
	memset(c, 0, sizeof(*c));
	if (state__rd_array(r, &n) != 0 || n != CMD_FIELDS)
		return -1;
	if (state__rd_uint(r, &op) != 0 || op < AEP_OP_CREATE || op > AEP_OP_BIND)
		return -1;
	if (state__rd_uint(r, &kind) != 0 || kind >= AEP_KIND__COUNT)
		return -1;
	c->op = (enum aep_op)op;
	c->kind = (enum aep_kind)kind;
	if (state__rd_str_or_nil(r, &c->ns, &c->ns_len) != 0 ||
	    state__rd_str_or_nil(r, &c->name, &c->name_len) != 0 ||
	    state__rd_uint(r, &c->precond_rv) != 0 ||
	    state__rd_str_or_nil(r, &c->uid, &c->uid_len) != 0 || state__rd_int(r, &c->now_ns) != 0)
		return -1;
	if (rd_nil(r)) {
		c->obj = NULL;
		c->obj_len = 0;
	} else if (state__rd_bin(r, &c->obj, &c->obj_len) != 0) {
		return -1;
	}
	if (state__rd_str_or_nil(r, &c->api, &c->api_len) != 0 ||
	    state__rd_str_or_nil(r, &c->peer, &c->peer_len) != 0 ||
	    state__rd_str_or_nil(r, &c->node, &c->node_len) != 0)
		return -1;

	if (c->ns_len > AEP_NAME_MAX || c->name_len > AEP_NAME_MAX ||
	    c->uid_len >= sizeof(((struct aep_cmd *)0)->uid) || c->obj_len > AEP_OBJECT_MAX ||
	    c->api_len > CMD_STR_MAX || c->peer_len > CMD_STR_MAX || c->node_len > AEP_NAME_MAX)
		return -1;
	if (has_nul(c->ns, c->ns_len) || has_nul(c->name, c->name_len) ||
	    has_nul(c->uid, c->uid_len) || has_nul(c->api, c->api_len) ||
	    has_nul(c->peer, c->peer_len) || has_nul(c->node, c->node_len))
		return -1;
	switch (c->op) {
	case AEP_OP_CREATE:
	case AEP_OP_UPDATE:
		if (c->obj == NULL)
			return -1;
		break;
	case AEP_OP_DELETE:
		if (c->name == NULL)
			return -1;
		break;
	case AEP_OP_MEMBER:
		if (c->name == NULL || c->api == NULL || c->peer == NULL)
			return -1;
		break;
	case AEP_OP_BIND:
		if (c->name == NULL || c->node == NULL)
			return -1;
		break;
	}
	return 0;
}

static int pack_opt_str(msgpack_packer *pk, const char *s)
{
	if (s == NULL)
		return msgpack_pack_nil(pk);
	size_t n = strlen(s);
	if (msgpack_pack_str(pk, n) != 0)
		return -1;
	return msgpack_pack_str_body(pk, s, n);
}

static bool str_ok(const char *s, size_t max)
{
	return s == NULL || strnlen(s, max + 1) <= max;
}

int aep_cmd_encode(const struct aep_cmd *cmd, msgpack_packer *pk)
{
	size_t uid_len = strnlen(cmd->uid, sizeof(cmd->uid));
	if (cmd->op < AEP_OP_CREATE || cmd->op > AEP_OP_BIND ||
	    (unsigned)cmd->kind >= AEP_KIND__COUNT || uid_len == sizeof(cmd->uid) ||
	    !str_ok(cmd->ns, AEP_NAME_MAX) || !str_ok(cmd->name, AEP_NAME_MAX) ||
	    !str_ok(cmd->member_api, CMD_STR_MAX) || !str_ok(cmd->member_peer, CMD_STR_MAX) ||
	    !str_ok(cmd->node, AEP_NAME_MAX) || cmd->obj_len > AEP_OBJECT_MAX)
		return AEP_EINVALID;
	switch (cmd->op) {
	case AEP_OP_CREATE:
	case AEP_OP_UPDATE:
		if (cmd->obj == NULL)
			return AEP_EINVALID;
		break;
	case AEP_OP_DELETE:
		if (cmd->name == NULL)
			return AEP_EINVALID;
		break;
	case AEP_OP_MEMBER:
		if (cmd->name == NULL || cmd->member_api == NULL || cmd->member_peer == NULL)
			return AEP_EINVALID;
		break;
	case AEP_OP_BIND:
		if (cmd->name == NULL || cmd->node == NULL)
			return AEP_EINVALID;
		break;
	}

	int rv = msgpack_pack_array(pk, CMD_FIELDS);
	rv |= msgpack_pack_uint64(pk, (uint64_t)cmd->op);
	rv |= msgpack_pack_uint64(pk, (uint64_t)cmd->kind);
	rv |= pack_opt_str(pk, cmd->ns);
	rv |= pack_opt_str(pk, cmd->name);
	rv |= msgpack_pack_uint64(pk, cmd->precond_rv);
	rv |= pack_opt_str(pk, uid_len > 0 ? cmd->uid : NULL);
	rv |= msgpack_pack_int64(pk, cmd->now_ns);
	if (cmd->obj != NULL) {
		rv |= msgpack_pack_bin(pk, cmd->obj_len);
		rv |= msgpack_pack_bin_body(pk, cmd->obj, cmd->obj_len);
	} else {
		rv |= msgpack_pack_nil(pk);
	}
	rv |= pack_opt_str(pk, cmd->member_api);
	rv |= pack_opt_str(pk, cmd->member_peer);
	rv |= pack_opt_str(pk, cmd->node);
	return rv == 0 ? 0 : AEP_ENOMEM;
}

/* ---- batches ------------------------------------------------------------ */

void aep_batch_init(struct aep_batch *b)
{
	aep_buf_init(&b->buf);
	b->count = 0;
	b->hdr = BATCH_HDR;
}

/* Append one command. On failure (AEP_EINVALID for a bad command,
 * AEP_ETOOLARGE past AEP_BATCH_MAX commands, AEP_ENOMEM) the batch is as
 * it was. */
int aep_batch_add(struct aep_batch *b, const struct aep_cmd *cmd)
{
	static const char zero[BATCH_HDR];
	if (b->count >= AEP_BATCH_MAX)
		return AEP_ETOOLARGE;
	if (b->buf.len == 0 && aep_buf_append(&b->buf, zero, sizeof(zero)) != 0)
		return AEP_ENOMEM;
	size_t len = b->buf.len;
	msgpack_packer pk;
	aep_packer_init(&pk, &b->buf);
	int rv = aep_cmd_encode(cmd, &pk);
	if (rv != 0) {
		b->buf.len = len;
		b->buf.failed = false;
		return rv;
	}
	b->count++;
	return 0;
}

/* The header goes in the last bytes of the reserved room, in its shortest
 * form, so the entry is the same as msgpack would write it. */
int aep_batch_finish(struct aep_batch *b, const char **data, size_t *len)
{
	static const char zero[BATCH_HDR];
	if (b->buf.len == 0 && aep_buf_append(&b->buf, zero, sizeof(zero)) != 0)
		return AEP_ENOMEM;
	unsigned char *p = (unsigned char *)b->buf.data;
	uint32_t n = b->count;
	size_t h;
	if (n <= 15) {
		h = 1;
		p[BATCH_HDR - 1] = (unsigned char)(0x90 | n);
	} else if (n <= UINT16_MAX) {
		h = 3;
		p[BATCH_HDR - 3] = 0xdc;
		p[BATCH_HDR - 2] = (unsigned char)(n >> 8);
		p[BATCH_HDR - 1] = (unsigned char)n;
	} else {
		h = 5;
		p[0] = 0xdd;
		p[1] = (unsigned char)(n >> 24);
		p[2] = (unsigned char)(n >> 16);
		p[3] = (unsigned char)(n >> 8);
		p[4] = (unsigned char)n;
	}
	*data = b->buf.data + (BATCH_HDR - h);
	*len = b->buf.len - (BATCH_HDR - h);
	return 0;
}

void aep_batch_reset(struct aep_batch *b)
{
	aep_buf_reset(&b->buf);
	b->count = 0;
}

void aep_batch_free(struct aep_batch *b)
{
	aep_buf_free(&b->buf);
	b->count = 0;
}

void aep_result_clear(struct aep_result *r)
{
	if (r->obj != NULL)
		aep_object_unref(r->obj);
	aep_free(r->msg);
	memset(r, 0, sizeof(*r));
}
