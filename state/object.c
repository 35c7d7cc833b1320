/* state: objects — decode, validate, canonical re-encoding, stamping.
 *
 * Decoding walks the client's msgpack map against the kind's schema
 * (schema.h) once: each map's keys are matched to the shape's fields (an
 * unknown or repeated key stops the walk), each value is type-checked and
 * checked, and the canonical encoding is written as the walk goes: the
 * shape's fields in schema order, maps sorted by key, absent-like values
 * (nil, "", empty lists and maps) dropped, quantities and times normalised.
 * metadata is written by pack_meta() from the values it captured, the same
 * code that aep_object_stamp() uses, so decode(stamp(x)) gives stamp(x)'s
 * bytes back.
 *
 * The walk keeps a stack of path frames; only a failure formats them into
 * "spec.containers[1].ports[0].containerPort: ...". Output goes to a buffer
 * on the stack and moves to the heap only past its size, so a small object
 * costs one heap allocation: the object itself, one block holding struct,
 * labels, strings and encoding. */
#include "state/object-int.h"
#include "state/schema.h"
#include "state/store-int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_DEPTH	32 /* frames; the schemas nest far less deeply */
#define SORT_ON_STACK	64 /* map entries sorted without allocating */
#define UNIQUE_ON_STACK 16 /* list elements compared pairwise */

/* ---- output buffer ------------------------------------------------------ */

struct enc {
	char *p;
	size_t len, cap;
	size_t limit; /* bytes; past it: AEP_ETOOLARGE */
	int err;      /* sticky: AEP_ENOMEM or AEP_ETOOLARGE */
	char small[1536];
};

static void enc_init(struct enc *b, size_t limit)
{
	b->limit = limit;
	b->p = b->small;
	b->len = 0;
	b->cap = sizeof(b->small);
	b->err = 0;
}

static void enc_free(struct enc *b)
{
	if (b->p != b->small)
		aep_free(b->p);
}

/* Grow @b for @len more bytes, within its limit. */
static int enc_grow(struct enc *b, size_t len)
{
	if (b->err != 0)
		return -1;
	if (len > b->limit - b->len) {
		b->err = AEP_ETOOLARGE;
		return -1;
	}
	size_t cap = b->cap * 2;
	while (cap < b->len + len)
		cap *= 2;
	if (cap > b->limit)
		cap = b->limit; /* so that the fast path never passes the limit */
	char *p = b->p == b->small ? aep_malloc(cap) : aep_realloc(b->p, cap);
	if (p == NULL) {
		b->err = AEP_ENOMEM;
		return -1;
	}
	if (b->p == b->small)
		memcpy(p, b->small, b->len);
	b->p = p;
	b->cap = cap;
	return 0;
}

/* The packer's sink: most writes are a few bytes into room already there
 * (after an error, cap == len, so every write takes the slow path). */
static int enc_write(void *data, const char *buf, size_t len)
{
	struct enc *b = data;
	if (len > b->cap - b->len && enc_grow(b, len) != 0) {
		b->cap = b->len;
		return -1;
	}
	char *d = b->p + b->len;
	b->len += len;
	if (len <= 8) {
		for (size_t i = 0; i < len; i++)
			d[i] = buf[i];
	} else {
		memcpy(d, buf, len);
	}
	return 0;
}

static int discard_write(void *data, const char *buf, size_t len)
{
	(void)data, (void)buf, (void)len;
	return 0;
}

/* Decimal digits of @v into @buf (>= 21 bytes); returns their count. */
static size_t fmt_u64(char *buf, uint64_t v)
{
	char tmp[20];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	return n;
}

/* aep_pack_strn(), with short strings (most keys and values) written
 * straight into the output buffer when there is room. The bytes are
 * msgpack-c's: a fixstr below 32 bytes. */
static void pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
	if (n < 32 && pk->callback == enc_write) {
		struct enc *b = pk->data;
		if (n < b->cap - b->len) {
			char *d = b->p + b->len;
			d[0] = (char)(0xa0 | n);
			if (n > 0)
				memcpy(d + 1, s, n);
			b->len += n + 1;
			return;
		}
	}
	aep_pack_strn(pk, s, n);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
	pack_strn(pk, s, strlen(s));
}

/* ---- the walk ------------------------------------------------------------ */

struct frame {
	const char *name; /* NULL: an index */
	size_t len;
	uint32_t idx;
};

/* metadata as the encoding writes it. */
struct meta_view {
	struct state__span name, ns, uid;
	uint64_t rv;
	int64_t created_ns, generation;
	size_t nlabels;
	bool annotations;
};

struct walk {
	const struct aep_kind_info *ki;
	struct aep_error *e;
	struct frame path[PATH_DEPTH];
	unsigned depth;
	struct meta_view meta;
	struct state__span labels[AEP_LABELS_MAX][2]; /* metadata.labels, sorted */
};

static void push(struct walk *w, const char *name, size_t len)
{
	if (w->depth < PATH_DEPTH)
		w->path[w->depth] = (struct frame){name, len, 0};
	w->depth++;
}

static void push_idx(struct walk *w, uint32_t idx)
{
	if (w->depth < PATH_DEPTH)
		w->path[w->depth] = (struct frame){NULL, 0, idx};
	w->depth++;
}

static void pop(struct walk *w)
{
	w->depth--;
}

/* Fail with "PATH: MESSAGE"; returns @code. */
__attribute__((format(printf, 3, 4))) static int werr(struct walk *w, int code, const char *fmt,
						      ...)
{
	char path[256], msg[AEP_ERRMSG_MAX];
	size_t o = 0;
	va_list ap;

	path[0] = '\0';
	for (unsigned i = 0; i < w->depth && i < PATH_DEPTH && o < sizeof(path); i++) {
		const struct frame *f = &w->path[i];
		int n;
		if (f->name == NULL)
			n = snprintf(path + o, sizeof(path) - o, "[%u]", (unsigned)f->idx);
		else
			n = snprintf(path + o, sizeof(path) - o, "%s%.*s", o > 0 ? "." : "",
				     (int)f->len, f->name);
		if (n < 0)
			break;
		o += (size_t)n;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (path[0] == '\0')
		return aep_errorf(w->e, code, "%s", msg);
	return aep_errorf(w->e, code, "%s: %s", path, msg);
}

static const char *type_name(const msgpack_object *v)
{
	switch (v->type) {
	case MSGPACK_OBJECT_NIL: return "null";
	case MSGPACK_OBJECT_BOOLEAN: return "a boolean";
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "an integer";
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: return "a number";
	case MSGPACK_OBJECT_STR: return "a string";
	case MSGPACK_OBJECT_ARRAY: return "a list";
	case MSGPACK_OBJECT_MAP: return "an object";
	default: return "binary data";
	}
}

static int wrong_type(struct walk *w, const char *want, const msgpack_object *v)
{
	return werr(w, AEP_EINVALID, "must be %s, not %s", want, type_name(v));
}

static bool str_eq(const msgpack_object *v, const char *s, size_t n)
{
	return v->via.str.size == n && memcmp(v->via.str.ptr, s, n) == 0;
}

/* memcmp order, a prefix first: strcmp order for strings without NUL. */
static int bytes_cmp(const char *a, size_t an, const char *b, size_t bn)
{
	int c = memcmp(a, b, an < bn ? an : bn);
	if (c != 0)
		return c;
	return an < bn ? -1 : an > bn;
}

static int kv_cmp(const void *a, const void *b)
{
	const msgpack_object *ka = &(*(const msgpack_object_kv *const *)a)->key;
	const msgpack_object *kb = &(*(const msgpack_object_kv *const *)b)->key;
	return bytes_cmp(ka->via.str.ptr, ka->via.str.size, kb->via.str.ptr, kb->via.str.size);
}

/* ---- scalar checks --------------------------------------------------------- */

static int check_str(struct walk *w, const struct state__check *c, const char *s, size_t n)
{
	char q[STATE__QUOTE_MAX];
	if (!state__utf8_ok(s, n))
		return werr(w, AEP_EINVALID, "Invalid value: %s: must be valid UTF-8",
			    state__quote(q, sizeof(q), s, n));
	if (c->maxlen != 0 && n > c->maxlen)
		return werr(w, AEP_EINVALID, "must be no more than %zu bytes", c->maxlen);
	if (c->values != NULL) {
		char list[256];
		size_t o = 0;
		for (const char *const *v = c->values; *v != NULL; v++)
			if (strlen(*v) == n && memcmp(*v, s, n) == 0)
				return 0;
		list[0] = '\0';
		for (const char *const *v = c->values; *v != NULL && o < sizeof(list); v++) {
			int k = snprintf(list + o, sizeof(list) - o, "%s\"%s\"",
					 v == c->values ? "" : ", ", *v);
			if (k < 0)
				break;
			o += (size_t)k;
		}
		return werr(w, AEP_EINVALID, "Unsupported value: %s: supported values: %s",
			    state__quote(q, sizeof(q), s, n), list);
	}
	if (c->fn != NULL) {
		struct aep_error ce = {0};
		if (c->fn(s, n, &ce) != 0)
			return werr(w, AEP_EINVALID, "Invalid value: %s: %s",
				    state__quote(q, sizeof(q), s, n), ce.msg);
	}
	return 0;
}

/* An integer, or a float with an integral value in range. */
static bool get_int(const msgpack_object *v, int64_t *out)
{
	switch (v->type) {
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (v->via.u64 > INT64_MAX)
			return false;
		*out = (int64_t)v->via.u64;
		return true;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = v->via.i64; return true;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		if (!(v->via.f64 >= -9223372036854775808.0 && v->via.f64 < 9223372036854775808.0) ||
		    v->via.f64 != floor(v->via.f64))
			return false;
		*out = (int64_t)v->via.f64;
		return true;
	default: return false;
	}
}

static int check_range(struct walk *w, const struct state__check *c, int64_t x)
{
	if (!c->range || (x >= c->min && x <= c->max))
		return 0;
	if (c->max == INT64_MAX)
		return werr(w, AEP_EINVALID, "must be greater than or equal to %lld",
			    (long long)c->min);
	return werr(w, AEP_EINVALID, "must be between %lld and %lld", (long long)c->min,
		    (long long)c->max);
}

static int walk_int(struct walk *w, msgpack_packer *pk, const struct state__check *c,
		    const msgpack_object *v)
{
	int64_t x;
	if (!get_int(v, &x)) {
		if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
		    v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64)
			return werr(w, AEP_EINVALID, "must be an integer within int64 range");
		return wrong_type(w, "an integer", v);
	}
	int rc = check_range(w, c, x);
	if (rc != 0)
		return rc;
	msgpack_pack_int64(pk, x);
	return 0;
}

static int walk_quantity(struct walk *w, msgpack_packer *pk, const msgpack_object *v)
{
	char buf[40];
	int64_t x;
	if (v->type == MSGPACK_OBJECT_STR) {
		struct aep_error ce = {0};
		char q[STATE__QUOTE_MAX];
		if (state__validate_quantity(v->via.str.ptr, v->via.str.size, &ce) != 0)
			return werr(w, AEP_EINVALID, "Invalid value: %s: %s",
				    state__quote(q, sizeof(q), v->via.str.ptr, v->via.str.size),
				    ce.msg);
		pack_strn(pk, v->via.str.ptr, v->via.str.size);
		return 0;
	}
	if (get_int(v, &x)) {
		if (x < 0)
			return werr(w, AEP_EINVALID, "must be greater than or equal to 0");
		buf[fmt_u64(buf, (uint64_t)x)] = '\0';
	} else if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64) {
		double d = v->via.f64;
		if (!isfinite(d) || d < 0)
			return werr(w, AEP_EINVALID, "must be a finite number >= 0");
		/* The shortest form that reads back as @d, so equal numbers
		 * give equal strings. */
		for (int prec = 1; prec <= 17; prec++) {
			snprintf(buf, sizeof(buf), "%.*g", prec, d);
			if (strtod(buf, NULL) == d)
				break;
		}
	} else {
		return wrong_type(w, "a quantity (string or number)", v);
	}
	pack_str(pk, buf);
	return 0;
}

static int walk_time(struct walk *w, msgpack_packer *pk, const msgpack_object *v, int64_t *ns)
{
	char buf[40], q[STATE__QUOTE_MAX];
	if (v->type != MSGPACK_OBJECT_STR)
		return wrong_type(w, "an RFC 3339 time string", v);
	if (aep_time_parse(v->via.str.ptr, v->via.str.size, ns) != 0)
		return werr(w, AEP_EINVALID,
			    "Invalid value: %s: must be an RFC 3339 time (2006-01-02T15:04:05Z)",
			    state__quote(q, sizeof(q), v->via.str.ptr, v->via.str.size));
	aep_time_format(*ns, buf, sizeof(buf));
	pack_str(pk, buf);
	return 0;
}

static int walk_rv(struct walk *w, const msgpack_object *v, uint64_t *rv)
{
	char q[STATE__QUOTE_MAX];
	if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		*rv = v->via.u64;
		return 0;
	}
	if (v->type != MSGPACK_OBJECT_STR)
		return wrong_type(w, "a string", v);
	const char *s = v->via.str.ptr;
	size_t n = v->via.str.size;
	uint64_t x = 0;
	bool ok = n > 0 && n <= 20;
	for (size_t i = 0; ok && i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');
		ok = d <= 9 && x <= (UINT64_MAX - d) / 10;
		x = x * 10 + d;
	}
	if (!ok)
		return werr(w, AEP_EINVALID,
			    "Invalid value: %s: must be an unsigned 64-bit integer",
			    state__quote(q, sizeof(q), s, n));
	*rv = x;
	return 0;
}

/* ---- maps ------------------------------------------------------------------ */

/* Sort the pairs of @map (keys already known to be strings) into *@out,
 * which is @stack when the map is small. Fails on a repeated key. */
static int sort_map(struct walk *w, const msgpack_object *map, const msgpack_object_kv **stack,
		    const msgpack_object_kv ***out)
{
	uint32_t n = map->via.map.size;
	const msgpack_object_kv **kv = stack;
	char q[STATE__QUOTE_MAX];

	if (n > SORT_ON_STACK) {
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
		kv = aep_malloc(n * sizeof(*kv));
		if (kv == NULL)
			return werr(w, AEP_ENOMEM, "out of memory");
	}
	for (uint32_t i = 0; i < n; i++)
		kv[i] = &map->via.map.ptr[i];
	if (n <= 16) {
		/* Few pairs, often already sorted: insertion sort. */
		for (uint32_t i = 1; i < n; i++) {
			const msgpack_object_kv *x = kv[i];
			uint32_t j = i;
			for (; j > 0 && kv_cmp(&kv[j - 1], &x) > 0; j--)
				kv[j] = kv[j - 1];
			kv[j] = x;
		}
	} else {
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
		qsort(kv, n, sizeof(*kv), kv_cmp);
	}
	for (uint32_t i = 1; i < n; i++) {
		if (kv_cmp(&kv[i - 1], &kv[i]) == 0) {
			const msgpack_object *k = &kv[i]->key;
			if (kv != stack)
				aep_free(kv);
			/* The code is returned directly so that the analyzer,
			 * which does not follow variadic werr(), sees that
			 * failure leaves *@out unset. */
			werr(w, AEP_EINVALID, "duplicate key %s",
			     state__quote(q, sizeof(q), k->via.str.ptr, k->via.str.size));
			return AEP_EINVALID;
		}
	}
	*out = kv;
	return 0;
}

/* A label map: string keys and values in label syntax, at most
 * AEP_LABELS_MAX. Written sorted; *@sorted (if not NULL) gets the pairs. */
static int walk_labels(struct walk *w, msgpack_packer *pk, const msgpack_object *v,
		       struct state__span (*sorted)[2])
{
	const msgpack_object_kv *stack[SORT_ON_STACK], **kv;
	char q[STATE__QUOTE_MAX], q2[STATE__QUOTE_MAX];
	struct aep_error ce = {0};
	int rc;

	if (v->type != MSGPACK_OBJECT_MAP)
		return wrong_type(w, "an object", v);
	if (v->via.map.size > AEP_LABELS_MAX)
		return werr(w, AEP_EINVALID, "must have at most %d labels, not %u", AEP_LABELS_MAX,
			    (unsigned)v->via.map.size);
	for (uint32_t i = 0; i < v->via.map.size; i++) {
		const msgpack_object *k = &v->via.map.ptr[i].key;
		const msgpack_object *val = &v->via.map.ptr[i].val;
		if (k->type != MSGPACK_OBJECT_STR)
			return werr(w, AEP_EINVALID, "keys must be strings, not %s", type_name(k));
		state__quote(q, sizeof(q), k->via.str.ptr, k->via.str.size);
		if (aep_validate_label_key(k->via.str.ptr, k->via.str.size, &ce) != 0)
			return werr(w, AEP_EINVALID, "key %s: %s", q, ce.msg);
		if (val->type != MSGPACK_OBJECT_STR)
			return werr(w, AEP_EINVALID, "key %s: value must be a string, not %s", q,
				    type_name(val));
		if (aep_validate_label_value(val->via.str.ptr, val->via.str.size, &ce) != 0)
			return werr(
			    w, AEP_EINVALID, "key %s: value %s: %s", q,
			    state__quote(q2, sizeof(q2), val->via.str.ptr, val->via.str.size),
			    ce.msg);
	}
	rc = sort_map(w, v, stack, &kv);
	if (rc != 0)
		return rc;
	msgpack_pack_map(pk, v->via.map.size);
	for (uint32_t i = 0; i < v->via.map.size; i++) {
		const msgpack_object *k = &kv[i]->key, *val = &kv[i]->val;
		pack_strn(pk, k->via.str.ptr, k->via.str.size);
		pack_strn(pk, val->via.str.ptr, val->via.str.size);
		if (sorted != NULL) {
			sorted[i][0] = (struct state__span){k->via.str.ptr, k->via.str.size};
			sorted[i][1] = (struct state__span){val->via.str.ptr, val->via.str.size};
		}
	}
	/* sort_map() used the stack: at most AEP_LABELS_MAX <= SORT_ON_STACK. */
	return 0;
}

static int walk_annotations(struct walk *w, msgpack_packer *pk, const msgpack_object *v)
{
	const msgpack_object_kv *stack[SORT_ON_STACK], **kv;
	char q[STATE__QUOTE_MAX];
	struct aep_error ce = {0};
	size_t bytes = 0;
	int rc;

	if (v->type != MSGPACK_OBJECT_MAP)
		return wrong_type(w, "an object", v);
	for (uint32_t i = 0; i < v->via.map.size; i++) {
		const msgpack_object *k = &v->via.map.ptr[i].key;
		const msgpack_object *val = &v->via.map.ptr[i].val;
		if (k->type != MSGPACK_OBJECT_STR)
			return werr(w, AEP_EINVALID, "keys must be strings, not %s", type_name(k));
		if (val->type != MSGPACK_OBJECT_STR)
			return werr(w, AEP_EINVALID, "key %s: value must be a string, not %s",
				    state__quote(q, sizeof(q), k->via.str.ptr, k->via.str.size),
				    type_name(val));
		if (!state__utf8_ok(val->via.str.ptr, val->via.str.size))
			return werr(w, AEP_EINVALID, "key %s: value must be valid UTF-8",
				    state__quote(q, sizeof(q), k->via.str.ptr, k->via.str.size));
		bytes += (size_t)k->via.str.size + val->via.str.size;
		if (bytes > AEP_ANNOTATIONS_BYTES)
			return werr(w, AEP_EINVALID, "Too long: must have at most %d bytes",
				    AEP_ANNOTATIONS_BYTES);
	}
	for (uint32_t i = 0; i < v->via.map.size; i++) {
		const msgpack_object *k = &v->via.map.ptr[i].key;
		if (aep_validate_label_key(k->via.str.ptr, k->via.str.size, &ce) != 0)
			return werr(w, AEP_EINVALID, "key %s: %s",
				    state__quote(q, sizeof(q), k->via.str.ptr, k->via.str.size),
				    ce.msg);
	}
	rc = sort_map(w, v, stack, &kv);
	if (rc != 0)
		return rc;
	msgpack_pack_map(pk, v->via.map.size);
	for (uint32_t i = 0; i < v->via.map.size; i++) {
		const msgpack_object *k = &kv[i]->key, *val = &kv[i]->val;
		pack_strn(pk, k->via.str.ptr, k->via.str.size);
		pack_strn(pk, val->via.str.ptr, val->via.str.size);
	}
	if (kv != stack)
		aep_free(kv);
	return 0;
}

/* ---- objects and lists ----------------------------------------------------- */

static int walk_value(struct walk *w, msgpack_packer *pk, const struct state__field *f,
		      const msgpack_object *v);

static bool is_collection(const struct state__field *f)
{
	return f->type == STATE__T_LABELS || f->type == STATE__T_ANNOT ||
	       f->type == STATE__T_STRLIST || f->type == STATE__T_OBJLIST;
}

/* Does @v count as absent for @f? nil always; "" for strings; an empty
 * list or map for collections. */
static bool absent(const struct state__field *f, const msgpack_object *v)
{
	if (v == NULL || v->type == MSGPACK_OBJECT_NIL)
		return true;
	if (v->type == MSGPACK_OBJECT_STR && v->via.str.size == 0)
		return f->type == STATE__T_STR || f->type == STATE__T_TIME ||
		       f->type == STATE__T_QTY || f->type == STATE__T_INTSTR;
	if (is_collection(f)) {
		if (v->type == MSGPACK_OBJECT_ARRAY)
			return v->via.array.size == 0;
		if (v->type == MSGPACK_OBJECT_MAP)
			return v->via.map.size == 0;
	}
	return false;
}

/* Match the keys of @in to the fields of @s into @slots (NULL when
 * absent). */
static int collect(struct walk *w, const struct state__schema *s, const msgpack_object *in,
		   const msgpack_object **slots)
{
	char q[STATE__QUOTE_MAX];
	if (in->type != MSGPACK_OBJECT_MAP)
		return wrong_type(w, "an object", in);
	for (unsigned j = 0; j < s->nfields; j++)
		slots[j] = NULL;
	for (uint32_t i = 0; i < in->via.map.size; i++) {
		const msgpack_object *k = &in->via.map.ptr[i].key;
		unsigned j;
		if (k->type != MSGPACK_OBJECT_STR)
			return werr(w, AEP_EINVALID, "field names must be strings, not %s",
				    type_name(k));
		for (j = 0; j < s->nfields; j++)
			if (str_eq(k, s->fields[j].name, s->fields[j].len))
				break;
		if (j == s->nfields || slots[j] != NULL) {
			int rc;
			state__quote(q, sizeof(q), k->via.str.ptr, k->via.str.size);
			/* The key without its quotes names the path. */
			push(w, q + 1, strlen(q) - 2);
			rc = werr(w, AEP_EINVALID,
				  j == s->nfields ? "unknown field" : "duplicate field");
			pop(w);
			return rc;
		}
		slots[j] = &in->via.map.ptr[i].val;
	}
	return 0;
}

static int walk_obj(struct walk *w, msgpack_packer *pk, const struct state__schema *s,
		    const msgpack_object *in)
{
	const msgpack_object *slots[STATE__FIELDS_MAX];
	uint32_t count = 0;
	int rc = collect(w, s, in, slots);
	if (rc != 0)
		return rc;
	for (unsigned j = 0; j < s->nfields; j++) {
		const struct state__field *f = &s->fields[j];
		if (!absent(f, slots[j]) || f->presence == STATE__ALWAYS) {
			count++;
		} else if (f->presence == STATE__REQ) {
			push(w, f->name, f->len);
			rc = werr(w, AEP_EINVALID, "Required value");
			pop(w);
			return rc;
		}
	}
	msgpack_pack_map(pk, count);
	for (unsigned j = 0; j < s->nfields; j++) {
		const struct state__field *f = &s->fields[j];
		if (absent(f, slots[j]) && f->presence != STATE__ALWAYS)
			continue;
		pack_strn(pk, f->name, f->len);
		push(w, f->name, f->len);
		rc = walk_value(w, pk, f, slots[j]);
		pop(w);
		if (rc != 0)
			return rc;
	}
	return 0;
}

struct named {
	const char *p;
	size_t n;
	uint32_t idx;
};

static int named_cmp(const void *a, const void *b)
{
	const struct named *x = a, *y = b;
	int c = bytes_cmp(x->p, x->n, y->p, y->n);
	return c != 0 ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* The elements of @list (valid objects) have different "name"s. */
static int check_unique_names(struct walk *w, const msgpack_object *list)
{
	uint32_t n = list->via.array.size;
	struct named stack[UNIQUE_ON_STACK], *v = stack;
	uint32_t m = 0, dup = UINT32_MAX;
	char q[STATE__QUOTE_MAX];

	if (n > UNIQUE_ON_STACK) {
		v = aep_malloc(n * sizeof(*v));
		if (v == NULL)
			return werr(w, AEP_ENOMEM, "out of memory");
	}
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *name = aep_mp_map_get(&list->via.array.ptr[i], "name");
		if (name != NULL && name->type == MSGPACK_OBJECT_STR)
			v[m++] = (struct named){name->via.str.ptr, name->via.str.size, i};
	}
	if (v == stack) {
		for (uint32_t i = 1; i < m && dup == UINT32_MAX; i++)
			for (uint32_t j = 0; j < i; j++)
				if (bytes_cmp(v[i].p, v[i].n, v[j].p, v[j].n) == 0) {
					dup = i;
					break;
				}
	} else {
		qsort(v, m, sizeof(*v), named_cmp);
		for (uint32_t i = 1; i < m; i++)
			if (bytes_cmp(v[i].p, v[i].n, v[i - 1].p, v[i - 1].n) == 0 &&
			    (dup == UINT32_MAX || v[i].idx < v[dup].idx))
				dup = i;
	}
	int rc = 0;
	if (dup != UINT32_MAX) {
		push_idx(w, v[dup].idx);
		push(w, "name", 4);
		rc = werr(w, AEP_EINVALID, "Duplicate value: %s",
			  state__quote(q, sizeof(q), v[dup].p, v[dup].n));
		pop(w);
		pop(w);
	}
	if (v != stack)
		aep_free(v);
	return rc;
}

static int walk_list(struct walk *w, msgpack_packer *pk, const struct state__field *f,
		     const msgpack_object *v)
{
	int rc = 0;
	if (v->type != MSGPACK_OBJECT_ARRAY)
		return wrong_type(w, "a list", v);
	msgpack_pack_array(pk, v->via.array.size);
	for (uint32_t i = 0; i < v->via.array.size && rc == 0; i++) {
		const msgpack_object *el = &v->via.array.ptr[i];
		push_idx(w, i);
		if (f->type == STATE__T_OBJLIST) {
			rc = walk_obj(w, pk, f->sub, el);
		} else if (el->type != MSGPACK_OBJECT_STR) {
			rc = wrong_type(w, "a string", el);
		} else {
			rc = check_str(w, f->check, el->via.str.ptr, el->via.str.size);
			pack_strn(pk, el->via.str.ptr, el->via.str.size);
		}
		pop(w);
	}
	if (rc == 0 && f->check->unique_names)
		rc = check_unique_names(w, v);
	return rc;
}

static int walk_meta(struct walk *w, msgpack_packer *pk, const msgpack_object *v);

static int walk_value(struct walk *w, msgpack_packer *pk, const struct state__field *f,
		      const msgpack_object *v)
{
	char q[STATE__QUOTE_MAX];
	int64_t ns;
	int rc;

	/* Only ALWAYS fields reach here without a value, and the schema gives
	 * that presence only to apiVersion and kind, which have defaults. */
	if (v == NULL && f->type != STATE__T_APIVERSION && f->type != STATE__T_KIND)
		return werr(w, AEP_EINTERNAL, "field %s has no value and no default", f->name);

	switch (f->type) {
	case STATE__T_STR:
		if (v->type != MSGPACK_OBJECT_STR)
			return wrong_type(w, "a string", v);
		rc = check_str(w, f->check, v->via.str.ptr, v->via.str.size);
		if (rc == 0)
			pack_strn(pk, v->via.str.ptr, v->via.str.size);
		return rc;
	case STATE__T_INT: return walk_int(w, pk, f->check, v);
	case STATE__T_BOOL:
		if (v->type != MSGPACK_OBJECT_BOOLEAN)
			return wrong_type(w, "a boolean", v);
		if (v->via.boolean)
			msgpack_pack_true(pk);
		else
			msgpack_pack_false(pk);
		return 0;
	case STATE__T_QTY: return walk_quantity(w, pk, v);
	case STATE__T_INTSTR:
		if (v->type == MSGPACK_OBJECT_STR) {
			rc = check_str(w, f->check, v->via.str.ptr, v->via.str.size);
			if (rc == 0)
				pack_strn(pk, v->via.str.ptr, v->via.str.size);
			return rc;
		}
		if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
		    v->type != MSGPACK_OBJECT_NEGATIVE_INTEGER &&
		    v->type != MSGPACK_OBJECT_FLOAT32 && v->type != MSGPACK_OBJECT_FLOAT64)
			return wrong_type(w, "an integer or a string", v);
		return walk_int(w, pk, f->check, v);
	case STATE__T_TIME: return walk_time(w, pk, v, &ns);
	case STATE__T_RV: {
		uint64_t rv;
		char buf[24];
		rc = walk_rv(w, v, &rv);
		if (rc == 0)
			pack_strn(pk, buf, fmt_u64(buf, rv));
		return rc;
	}
	case STATE__T_LABELS: return walk_labels(w, pk, v, NULL);
	case STATE__T_ANNOT: return walk_annotations(w, pk, v);
	case STATE__T_STRLIST:
	case STATE__T_OBJLIST: return walk_list(w, pk, f, v);
	case STATE__T_OBJ: return walk_obj(w, pk, f->sub, v);
	case STATE__T_APIVERSION:
		if (v != NULL && v->type != MSGPACK_OBJECT_NIL &&
		    !(v->type == MSGPACK_OBJECT_STR && str_eq(v, "v1", 2))) {
			if (v->type != MSGPACK_OBJECT_STR)
				return wrong_type(w, "a string", v);
			return werr(w, AEP_EINVALID,
				    "Unsupported value: %s: supported values: \"v1\"",
				    state__quote(q, sizeof(q), v->via.str.ptr, v->via.str.size));
		}
		pack_strn(pk, "v1", 2);
		return 0;
	case STATE__T_KIND:
		/* Checked against the kind table before the walk began. */
		pack_str(pk, w->ki->name);
		return 0;
	case STATE__T_META: return walk_meta(w, pk, v);
	}
	return werr(w, AEP_EINTERNAL, "field type %u has no walker", (unsigned)f->type);
}

/* ---- metadata -------------------------------------------------------------- */

static const char default_ns[] = "default";

/* Write metadata's map header and the fields before labels and
 * annotations, which the caller writes next when m says they are there. */
static void pack_meta_head(msgpack_packer *pk, const struct meta_view *m)
{
	char buf[40];
	uint32_t n = 1 + (m->ns.n > 0) + (m->uid.n > 0) + (m->rv != 0) + (m->created_ns != 0) +
		     (m->generation != 0) + (m->nlabels > 0) + m->annotations;

	msgpack_pack_map(pk, n);
	pack_strn(pk, "name", 4);
	pack_strn(pk, m->name.p, m->name.n);
	if (m->ns.n > 0) {
		pack_strn(pk, "namespace", 9);
		pack_strn(pk, m->ns.p, m->ns.n);
	}
	if (m->uid.n > 0) {
		pack_strn(pk, "uid", 3);
		pack_strn(pk, m->uid.p, m->uid.n);
	}
	if (m->rv != 0) {
		pack_strn(pk, "resourceVersion", 15);
		pack_strn(pk, buf, fmt_u64(buf, m->rv));
	}
	if (m->created_ns != 0) {
		aep_time_format(m->created_ns, buf, sizeof(buf));
		pack_strn(pk, "creationTimestamp", 17);
		pack_str(pk, buf);
	}
	if (m->generation != 0) {
		pack_strn(pk, "generation", 10);
		msgpack_pack_int64(pk, m->generation);
	}
}

_Static_assert(STATE__META_labels == STATE__META__COUNT - 2 &&
		   STATE__META_annotations == STATE__META__COUNT - 1,
	       "walk_meta() expects labels and annotations last in metadata");

static int walk_meta(struct walk *w, msgpack_packer *pk, const msgpack_object *v)
{
	const struct state__schema *s = &state__schema_meta;
	const msgpack_object *slots[STATE__FIELDS_MAX];
	const struct state__kind_schema *ks = state__kind_schema(w->ki->kind);
	struct meta_view *m = &w->meta;
	msgpack_packer discard;
	int rc;

	rc = collect(w, s, v, slots);
	if (rc != 0)
		return rc;
	msgpack_packer_init(&discard, NULL, discard_write);
	/* Scalars: validated here, written by pack_meta_head(). */
	for (unsigned j = 0; j < STATE__META_labels; j++) {
		const struct state__field *f = &s->fields[j];
		if (absent(f, slots[j])) {
			if (f->presence == STATE__REQ) {
				push(w, f->name, f->len);
				rc = werr(w, AEP_EINVALID, "Required value");
				pop(w);
				return rc;
			}
			slots[j] = NULL;
			continue;
		}
		push(w, f->name, f->len);
		switch (j) {
		case STATE__META_resourceVersion: rc = walk_rv(w, slots[j], &m->rv); break;
		case STATE__META_creationTimestamp:
			rc = walk_time(w, &discard, slots[j], &m->created_ns);
			break;
		default: rc = walk_value(w, &discard, f, slots[j]); break;
		}
		pop(w);
		if (rc != 0)
			return rc;
	}
	if (slots[STATE__META_generation] != NULL)
		get_int(slots[STATE__META_generation], &m->generation);

	const msgpack_object *name = slots[STATE__META_name];
	m->name = (struct state__span){name->via.str.ptr, name->via.str.size};
	push(w, "name", 4);
	rc = check_str(w, ks->name_check, m->name.p, m->name.n);
	pop(w);
	if (rc != 0)
		return rc;

	const msgpack_object *ns = slots[STATE__META_namespace];
	if (ns != NULL)
		m->ns = (struct state__span){ns->via.str.ptr, ns->via.str.size};
	push(w, "namespace", 9);
	if (!w->ki->namespaced && ns != NULL)
		rc = werr(w, AEP_EINVALID, "not allowed: %s is cluster-scoped", w->ki->name);
	else if (w->ki->namespaced && ns == NULL)
		m->ns = (struct state__span){default_ns, sizeof(default_ns) - 1};
	else if (ns != NULL)
		rc = check_str(w, &state__check_dns_label, m->ns.p, m->ns.n);
	pop(w);
	if (rc != 0)
		return rc;

	const msgpack_object *uid = slots[STATE__META_uid];
	if (uid != NULL)
		m->uid = (struct state__span){uid->via.str.ptr, uid->via.str.size};

	const msgpack_object *labels = slots[STATE__META_labels];
	const msgpack_object *annotations = slots[STATE__META_annotations];
	if (absent(&s->fields[STATE__META_labels], labels))
		m->nlabels = 0;
	else if (labels->type == MSGPACK_OBJECT_MAP)
		m->nlabels = labels->via.map.size;
	else
		m->nlabels = 1; /* walk_labels() below reports the type */
	m->annotations = !absent(&s->fields[STATE__META_annotations], annotations);
	pack_meta_head(pk, m);
	if (m->nlabels > 0) {
		pack_strn(pk, "labels", 6);
		push(w, "labels", 6);
		rc = walk_labels(w, pk, labels, w->labels);
		pop(w);
		if (rc != 0)
			return rc;
	}
	if (m->annotations) {
		pack_strn(pk, "annotations", 11);
		push(w, "annotations", 11);
		rc = walk_annotations(w, pk, annotations);
		pop(w);
	}
	return rc;
}

/* ---- building objects ------------------------------------------------------- */

static char *put(char **pool, const char *s, size_t n)
{
	char *p = *pool;
	if (n > 0)
		memcpy(p, s, n);
	p[n] = '\0';
	*pool += n + 1;
	return p;
}

static const char *const phase_names[] = {"",	       "Pending", "Running",
					  "Succeeded", "Failed",  "Unknown"};

const char *aep_pod_phase_name(enum aep_pod_phase p)
{
	return (unsigned)p < sizeof(phase_names) / sizeof(phase_names[0]) ? phase_names[p] : "";
}

static enum aep_pod_phase phase_of(const char *p, size_t n)
{
	for (size_t i = AEP_PHASE_PENDING; i < sizeof(phase_names) / sizeof(phase_names[0]); i++) {
		if (n == strlen(phase_names[i]) && memcmp(p, phase_names[i], n) == 0)
			return (enum aep_pod_phase)i;
	}
	return AEP_PHASE_NONE;
}

/* One block: the struct, the label array, the strings, the encoding. */
static int build(enum aep_kind kind, const struct meta_view *m,
		 const struct state__span (*labels)[2], struct state__span node_name, bool has_node,
		 enum aep_pod_phase phase, const struct state__span *parts, size_t nparts,
		 struct aep_object **out)
{
	size_t len = 0;
	for (size_t i = 0; i < nparts; i++)
		len += parts[i].n;
	size_t size = sizeof(struct aep_object) + m->nlabels * sizeof(struct aep_label) +
		      m->name.n + 1 + m->ns.n + 1 + m->uid.n + 1 + len;
	if (has_node)
		size += node_name.n + 1;
	for (size_t i = 0; i < m->nlabels; i++)
		size += labels[i][0].n + 1 + labels[i][1].n + 1;

	struct aep_object *o = aep_malloc(size);
	if (o == NULL)
		return AEP_ENOMEM;
	char *pool = (char *)(o + 1) + m->nlabels * sizeof(struct aep_label);
	o->refs = 1;
	o->kind = kind;
	o->meta.labels = (struct aep_label *)(o + 1);
	o->meta.nlabels = m->nlabels;
	for (size_t i = 0; i < m->nlabels; i++) {
		o->meta.labels[i].key = put(&pool, labels[i][0].p, labels[i][0].n);
		o->meta.labels[i].value = put(&pool, labels[i][1].p, labels[i][1].n);
	}
	o->meta.name = put(&pool, m->name.p, m->name.n);
	o->meta.ns = put(&pool, m->ns.p, m->ns.n);
	o->meta.uid = put(&pool, m->uid.p, m->uid.n);
	o->meta.rv = m->rv;
	o->meta.created_ns = m->created_ns;
	o->meta.generation = m->generation;
	o->node_name = has_node ? put(&pool, node_name.p, node_name.n) : NULL;
	o->phase = phase;
	o->data = pool;
	o->len = len;
	for (size_t i = 0; i < nparts; i++) {
		if (parts[i].n > 0)
			memcpy(pool, parts[i].p, parts[i].n);
		pool += parts[i].n;
	}
	*out = o;
	return 0;
}

int aep_object_from_msgpack(const msgpack_object *obj, struct aep_object **out, struct aep_error *e)
{
	struct walk w; /* labels[] is written only as far as meta.nlabels */
	char q[STATE__QUOTE_MAX];
	struct enc b;
	msgpack_packer pk;
	int rc;

	if (obj->type != MSGPACK_OBJECT_MAP)
		return aep_errorf(e, AEP_EINVALID, "an object must be a map, not %s",
				  type_name(obj));
	const msgpack_object *kind = aep_mp_map_get(obj, "kind");
	if (kind == NULL || kind->type == MSGPACK_OBJECT_NIL ||
	    (kind->type == MSGPACK_OBJECT_STR && kind->via.str.size == 0))
		return aep_errorf(e, AEP_EINVALID, "kind: Required value");
	if (kind->type != MSGPACK_OBJECT_STR)
		return aep_errorf(e, AEP_EINVALID, "kind: must be a string, not %s",
				  type_name(kind));
	const struct aep_kind_info *ki = NULL;
	for (unsigned k = 0; k < AEP_KIND__COUNT && ki == NULL; k++) {
		const struct aep_kind_info *i = aep_kind_info(k);
		if (str_eq(kind, i->name, strlen(i->name)))
			ki = i;
	}
	if (ki == NULL)
		return aep_errorf(
		    e, AEP_EINVALID, "kind: Unsupported value: %s",
		    state__quote(q, sizeof(q), kind->via.str.ptr, kind->via.str.size));
	w.ki = ki;
	w.e = e;
	w.depth = 0;
	w.meta = (struct meta_view){.nlabels = 0};
	const struct state__kind_schema *ks = state__kind_schema(ki->kind);

	enc_init(&b, AEP_OBJECT_MAX);
	msgpack_packer_init(&pk, &b, enc_write);
	rc = walk_obj(&w, &pk, ks->top, obj);
	if (rc == 0 && ks->check != NULL)
		rc = ks->check(obj, e);
	if (rc == 0 && b.err == AEP_ETOOLARGE)
		rc = aep_errorf(e, AEP_ETOOLARGE, "object exceeds the limit of %d bytes",
				AEP_OBJECT_MAX);
	else if (rc == 0 && b.err != 0)
		rc = aep_errorf(e, b.err, "out of memory");
	if (rc != 0)
		goto err_after_enc;

	struct state__span node = {NULL, 0};
	bool has_node = false;
	enum aep_pod_phase phase = AEP_PHASE_NONE;
	if (ki->kind == AEP_KIND_POD) {
		const msgpack_object *nn = aep_mp_map_get(aep_mp_map_get(obj, "spec"), "nodeName");
		const msgpack_object *ph = aep_mp_map_get(aep_mp_map_get(obj, "status"), "phase");
		if (nn != NULL && nn->type == MSGPACK_OBJECT_STR && nn->via.str.size > 0) {
			node = (struct state__span){nn->via.str.ptr, nn->via.str.size};
			has_node = true;
		}
		if (ph != NULL && ph->type == MSGPACK_OBJECT_STR)
			phase = phase_of(ph->via.str.ptr, ph->via.str.size);
	}
	struct state__span enc = {b.p, b.len};
	rc = build(ki->kind, &w.meta, (const struct state__span(*)[2])w.labels, node, has_node,
		   phase, &enc, 1, out);
	if (rc != 0)
		aep_errorf(e, rc, "out of memory");
err_after_enc:
	enc_free(&b);
	return rc;
}

int aep_object_decode(const char *data, size_t len, struct aep_object **out, struct aep_error *e)
{
	struct aep_mp_limits lim = aep_mp_default_limits;
	msgpack_zone zone;
	msgpack_object obj;
	size_t used;
	int rc;

	if (len > AEP_OBJECT_MAX)
		return aep_errorf(e, AEP_ETOOLARGE, "object of %zu bytes exceeds the limit of %d",
				  len, AEP_OBJECT_MAX);
	lim.max_bytes = AEP_OBJECT_MAX;
	rc = aep_mp_check(data, len, &lim, &used, e);
	if (rc == AEP_ECANCELED)
		return aep_errorf(e, AEP_EBADREQUEST, "truncated msgpack object");
	if (rc != 0)
		return rc;
	if (used != len)
		return aep_errorf(e, AEP_EBADREQUEST, "trailing bytes after the object");
	if (!msgpack_zone_init(&zone, 2048))
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	rc = aep_mp_unpack(data, len, &zone, &obj, e);
	if (rc == 0)
		rc = aep_object_from_msgpack(&obj, out, e);
	msgpack_zone_destroy(&zone);
	return rc;
}

struct aep_object *aep_object_ref(struct aep_object *o)
{
	o->refs++;
	return o;
}

void aep_object_unref(struct aep_object *o)
{
	if (o != NULL && --o->refs == 0)
		aep_free(o);
}

/* ---- stamping ------------------------------------------------------------- */

/* A cursor over an encoding this file wrote. */
struct rd {
	const unsigned char *p;
	size_t len, off;
};

static uint32_t rd_be(struct rd *r, unsigned n)
{
	uint32_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | r->p[r->off++];
	return v;
}

static uint32_t rd_map(struct rd *r)
{
	unsigned char c = r->p[r->off++];
	if (c >= 0x80 && c <= 0x8f)
		return c & 0x0f;
	return rd_be(r, c == 0xde ? 2 : 4);
}

static struct state__span rd_str(struct rd *r)
{
	unsigned char c = r->p[r->off++];
	uint32_t n = c >= 0xa0 && c <= 0xbf ? (uint32_t)(c & 0x1f) : rd_be(r, 1u << (c - 0xd9));
	struct state__span s = {(const char *)r->p + r->off, n};
	r->off += n;
	return s;
}

/* Skip one value; returns its span. */
static struct state__span rd_skip(struct rd *r)
{
	static const struct aep_mp_limits lim = {
	    .max_bytes = SIZE_MAX,
	    .max_depth = 128,
	    .max_len = UINT32_MAX,
	    .max_str = UINT32_MAX,
	    .max_items = UINT64_MAX,
	};
	struct aep_error e;
	size_t used = 0;
	struct state__span s = {(const char *)r->p + r->off, 0};
	aep_mp_check(s.p, r->len - r->off, &lim, &used, &e);
	s.n = used;
	r->off += used;
	return s;
}

int aep_object_stamp(const struct aep_object *o, const char *uid, uint64_t rv, int64_t created_ns,
		     int64_t generation, struct aep_object **out)
{
	struct state__span labels[AEP_LABELS_MAX][2];
	struct meta_view m = {
	    .name = {o->meta.name, strlen(o->meta.name)},
	    .ns = {o->meta.ns, strlen(o->meta.ns)},
	    .uid = {o->meta.uid, strlen(o->meta.uid)},
	    .rv = rv,
	    .created_ns = created_ns < 0 ? o->meta.created_ns : created_ns,
	    .generation = generation < 0 ? o->meta.generation : generation,
	    .nlabels = o->meta.nlabels,
	};
	struct rd r = {(const unsigned char *)o->data, o->len, 0};
	struct state__span annotations = {NULL, 0};
	msgpack_packer pk;
	struct enc b;
	int rc;

	if (uid != NULL)
		m.uid = (struct state__span){uid, strlen(uid)};
	for (size_t i = 0; i < o->meta.nlabels; i++) {
		labels[i][0] =
		    (struct state__span){o->meta.labels[i].key, strlen(o->meta.labels[i].key)};
		labels[i][1] =
		    (struct state__span){o->meta.labels[i].value, strlen(o->meta.labels[i].value)};
	}

	/* Stamping adds a few dozen bytes: it may go past AEP_OBJECT_MAX
	 * rather than fail an apply that the leader already accepted. */
	enc_init(&b, SIZE_MAX / 2);
	msgpack_packer_init(&pk, &b, enc_write);
	uint32_t n = rd_map(&r);
	msgpack_pack_map(&pk, n);
	for (uint32_t i = 0; i < n; i++) {
		size_t start = r.off;
		struct state__span key = rd_str(&r);
		if (bytes_cmp(key.p, key.n, "metadata", 8) != 0) {
			rd_skip(&r);
			enc_write(&b, o->data + start, r.off - start);
			continue;
		}
		uint32_t mn = rd_map(&r);
		for (uint32_t j = 0; j < mn; j++) {
			struct state__span mk = rd_str(&r);
			struct state__span mv = rd_skip(&r);
			if (bytes_cmp(mk.p, mk.n, "annotations", 11) == 0)
				annotations = mv;
		}
		m.annotations = annotations.p != NULL;
		pack_strn(&pk, "metadata", 8);
		pack_meta_head(&pk, &m);
		if (m.nlabels > 0) {
			pack_strn(&pk, "labels", 6);
			msgpack_pack_map(&pk, m.nlabels);
			for (size_t j = 0; j < m.nlabels; j++) {
				pack_strn(&pk, labels[j][0].p, labels[j][0].n);
				pack_strn(&pk, labels[j][1].p, labels[j][1].n);
			}
		}
		if (m.annotations) {
			pack_strn(&pk, "annotations", 11);
			enc_write(&b, annotations.p, annotations.n);
		}
	}
	rc = b.err;
	if (rc == 0) {
		struct state__span node = {o->node_name, o->node_name ? strlen(o->node_name) : 0};
		struct state__span enc = {b.p, b.len};
		rc = build(o->kind, &m, (const struct state__span(*)[2])labels, node,
			   o->node_name != NULL, o->phase, &enc, 1, out);
	}
	enc_free(&b);
	return rc;
}

/* ---- canonical encodings, read without validating ------------------------ */

/* The bytes msgpack-c writes for a header of @n: the shortest form. */
static size_t str_hdr_len(size_t n)
{
	return n < 32 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5;
}

static size_t map_hdr_len(size_t n)
{
	return n < 16 ? 1 : n < 65536 ? 3 : 5;
}

/* A string in its shortest form, as canonical encodings write it. */
static int canon_str(struct state__rd *r, struct state__span *s)
{
	size_t off = r->off;
	const char *p;
	uint32_t n;
	if (state__rd_str(r, &p, &n) != 0)
		return -1;
	if (r->off - off != str_hdr_len(n) + n) {
		r->off = off;
		return -1;
	}
	*s = (struct state__span){p, n};
	return 0;
}

static int canon_map(struct state__rd *r, uint32_t *n)
{
	size_t off = r->off;
	if (state__rd_map(r, n) != 0)
		return -1;
	if (r->off - off != map_hdr_len(*n)) {
		r->off = off;
		return -1;
	}
	return 0;
}

static bool span_eq(struct state__span s, const char *p, size_t n)
{
	return s.n == n && memcmp(s.p, p, n) == 0;
}

/* A name the store keys on: non-empty, bounded, no NUL (trees use strcmp). */
static bool key_ok(struct state__span s, size_t max)
{
	return s.n > 0 && s.n <= max && memchr(s.p, '\0', s.n) == NULL;
}

static int canon_skip(struct state__rd *r, struct state__span *v)
{
	return state__rd_raw(r, r->len - r->off, &v->p, &v->n);
}

static int canon_labels(struct state__rd *r, struct state__canon *c)
{
	uint32_t n;
	if (canon_map(r, &n) != 0 || n == 0 || n > AEP_LABELS_MAX)
		return -1;
	for (uint32_t i = 0; i < n; i++) {
		struct state__span *kv = c->labels[i];
		if (canon_str(r, &kv[0]) != 0 || canon_str(r, &kv[1]) != 0 ||
		    !key_ok(kv[0], AEP_NAME_MAX + 1 + AEP_LABEL_NAME_MAX) ||
		    kv[1].n > AEP_LABEL_NAME_MAX || memchr(kv[1].p, '\0', kv[1].n) != NULL)
			return -1;
		const struct state__span *prev = c->labels[i > 0 ? i - 1 : 0];
		if (i > 0 && bytes_cmp(prev[0].p, prev[0].n, kv[0].p, kv[0].n) >= 0)
			return -1;
	}
	c->nlabels = n;
	return 0;
}

static int canon_meta(struct state__rd *r, struct state__canon *c, bool namespaced)
{
	const struct state__schema *s = &state__schema_meta;
	uint32_t n;
	int last = -1;
	if (canon_map(r, &n) != 0)
		return -1;
	c->tail_at = 0;
	for (uint32_t i = 0; i < n; i++) {
		size_t key_at = r->off;
		struct state__span k, v;
		int j = last + 1;
		if (canon_str(r, &k) != 0)
			return -1;
		while (j < STATE__META__COUNT && !span_eq(k, s->fields[j].name, s->fields[j].len))
			j++;
		if (j == STATE__META__COUNT)
			return -1; /* unknown, repeated or out of order */
		last = j;
		switch (j) {
		case STATE__META_name:
			if (canon_str(r, &c->name) != 0 || !key_ok(c->name, AEP_NAME_MAX))
				return -1;
			break;
		case STATE__META_namespace:
			if (!namespaced || canon_str(r, &c->ns) != 0 ||
			    !key_ok(c->ns, AEP_NAME_MAX))
				return -1;
			break;
		case STATE__META_uid:
			if (canon_str(r, &c->uid) != 0 || !key_ok(c->uid, 39))
				return -1;
			break;
		case STATE__META_resourceVersion:
			/* Canonical: the decimal digits of a non-zero revision. */
			if (canon_str(r, &v) != 0 || v.n == 0 || v.n > 20 || v.p[0] == '0')
				return -1;
			c->rv = 0;
			for (size_t d = 0; d < v.n; d++) {
				if (v.p[d] < '0' || v.p[d] > '9' || c->rv > (UINT64_MAX - 9) / 10)
					return -1;
				c->rv = c->rv * 10 + (uint64_t)(v.p[d] - '0');
			}
			break;
		case STATE__META_creationTimestamp:
			if (canon_str(r, &v) != 0 || aep_time_parse(v.p, v.n, &c->created_ns) != 0)
				return -1;
			break;
		case STATE__META_generation:
			if (state__rd_int(r, &c->generation) != 0 || c->generation < 0)
				return -1;
			break;
		case STATE__META_labels:
			c->tail_at = key_at;
			if (canon_labels(r, c) != 0)
				return -1;
			break;
		case STATE__META_annotations:
			if (c->tail_at == 0)
				c->tail_at = key_at;
			/* A non-empty map: decode drops empty ones. */
			if (r->off >= r->len)
				return -1;
			unsigned char h = r->p[r->off];
			if (!((h > 0x80 && h <= 0x8f) || h == 0xde || h == 0xdf) ||
			    canon_skip(r, &v) != 0)
				return -1;
			c->annotations = true;
			break;
		}
	}
	if (c->tail_at == 0)
		c->tail_at = r->off;
	if (c->name.p == NULL || namespaced != (c->ns.p != NULL))
		return -1;
	return 0;
}

/* A map whose first field in schema order is @key, a string: *@out gets
 * it when present (p NULL when not); the map is read to its end. A Pod's
 * spec.nodeName and status.phase, the fields the store keeps aside, are
 * read this way. */
static int canon_first_str(struct state__rd *r, const char *key, size_t klen,
			   struct state__span *out)
{
	uint32_t n;
	*out = (struct state__span){NULL, 0};
	if (canon_map(r, &n) != 0)
		return -1;
	for (uint32_t i = 0; i < n; i++) {
		struct state__span k, v;
		if (canon_str(r, &k) != 0)
			return -1;
		if (span_eq(k, key, klen)) {
			if (i != 0 || canon_str(r, out) != 0)
				return -1;
		} else if (canon_skip(r, &v) != 0) {
			return -1;
		}
	}
	return 0;
}

int state__canon_read(enum aep_kind kind, const char *data, size_t len, struct state__canon *c)
{
	const struct aep_kind_info *ki = aep_kind_info(kind);
	struct state__rd r = {(const unsigned char *)data, len, 0};
	struct state__span k, v;
	uint32_t n;

	if (ki == NULL || len > AEP_OBJECT_MAX)
		return -1;
	memset(c, 0, offsetof(struct state__canon, labels));
	c->kind = kind;
	c->data = data;
	c->len = len;
	if (canon_map(&r, &n) != 0 || n < 3)
		return -1;
	if (canon_str(&r, &k) != 0 || !span_eq(k, "apiVersion", 10) || canon_str(&r, &v) != 0 ||
	    !span_eq(v, "v1", 2))
		return -1;
	if (canon_str(&r, &k) != 0 || !span_eq(k, "kind", 4) || canon_str(&r, &v) != 0 ||
	    !span_eq(v, ki->name, strlen(ki->name)))
		return -1;
	if (canon_str(&r, &k) != 0 || !span_eq(k, "metadata", 8))
		return -1;
	c->meta_at = r.off;
	if (canon_meta(&r, c, ki->namespaced) != 0)
		return -1;

	/* The kind's fields after metadata, each at most once, in order. */
	const struct state__schema *top = state__kind_schema(kind)->top;
	unsigned j = 3;
	for (uint32_t i = 3; i < n; i++, j++) {
		if (canon_str(&r, &k) != 0)
			return -1;
		while (j < top->nfields && !span_eq(k, top->fields[j].name, top->fields[j].len))
			j++;
		if (j == top->nfields)
			return -1;
		size_t at = r.off;
		if (kind == AEP_KIND_POD && span_eq(k, "spec", 4)) {
			if (canon_first_str(&r, "nodeName", 8, &c->node) != 0 ||
			    (c->node.p != NULL && !key_ok(c->node, AEP_NAME_MAX)))
				return -1;
			v = (struct state__span){data + at, r.off - at};
		} else if (kind == AEP_KIND_POD && span_eq(k, "status", 6)) {
			struct state__span ph;
			if (canon_first_str(&r, "phase", 5, &ph) != 0)
				return -1;
			c->phase = ph.p != NULL ? phase_of(ph.p, ph.n) : AEP_PHASE_NONE;
			v = (struct state__span){data + at, r.off - at};
		} else if (canon_skip(&r, &v) != 0) {
			return -1;
		}
		if (span_eq(k, "spec", 4))
			c->spec = v;
	}
	return r.off == len ? 0 : -1;
}

int state__canon_stamp(const struct state__canon *c, const char *uid, uint64_t rv,
		       int64_t created_ns, int64_t generation, struct aep_object **out)
{
	struct meta_view m = {
	    .name = c->name,
	    .ns = c->ns,
	    .uid = uid != NULL ? (struct state__span){uid, strlen(uid)} : c->uid,
	    .rv = rv,
	    .created_ns = created_ns < 0 ? c->created_ns : created_ns,
	    .generation = generation < 0 ? c->generation : generation,
	    .nlabels = c->nlabels,
	    .annotations = c->annotations,
	};
	msgpack_packer pk;
	struct enc b;
	int rc;

	/* metadata's head is a few hundred bytes at most: on the stack. */
	enc_init(&b, SIZE_MAX / 2);
	msgpack_packer_init(&pk, &b, enc_write);
	pack_meta_head(&pk, &m);
	rc = b.err;
	if (rc == 0) {
		const struct state__span parts[3] = {
		    {c->data, c->meta_at},
		    {b.p, b.len},
		    {c->data + c->tail_at, c->len - c->tail_at},
		};
		rc = build(c->kind, &m, (const struct state__span(*)[2])c->labels, c->node,
			   c->node.p != NULL, c->phase, parts, 3, out);
	}
	enc_free(&b);
	return rc;
}
