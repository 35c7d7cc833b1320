/* Manifests: YAML (multi-document) or JSON text into msgpack maps.
 *
 * libyaml's event parser drives a small node tree per document. Anchors
 * register when their node is complete, so an alias always names a finished
 * node and the tree is a DAG (a self-referencing alias is "unknown"). Each
 * finished node knows its size and height once aliases are expanded; those
 * are checked against AEP_MANIFEST_NODES and AEP_MANIFEST_DEPTH as the tree
 * grows, so an alias bomb is refused before anything is expanded, and a
 * nesting bomb is refused at the first level too deep. Then the tree is
 * encoded as msgpack, expanding aliases, with YAML's scalar types: quoted
 * scalars are strings, plain ones may be null, bools, integers or floats,
 * and core-schema tags (!!str, !!int, !!float, !!bool, !!null, !!binary)
 * are honoured. Duplicate map keys and non-scalar keys are refused. Every
 * error names the line. A document of kind List (or *List) is expanded into
 * its items. libyaml itself allocates with malloc; everything AEP keeps
 * goes through the AEP heap. */
#include "cli/cli.h"
#include "cli/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

enum mtype { M_SCALAR, M_SEQ, M_MAP };
enum stype { S_STR, S_INT, S_UINT, S_FLOAT, S_BOOL, S_NULL, S_BIN };

struct mnode {
	enum mtype type;
	size_t line;
	/* scalars */
	enum stype st;
	char *val; /* the text (or the decoded bytes for S_BIN) */
	size_t len;
	union {
		int64_t i;
		uint64_t u;
		double f;
		bool b;
	} v;
	/* collections: children, shared when they came from an alias */
	struct mnode **kids;
	size_t n;
	size_t cap;
	/* after expansion of aliases */
	uint64_t count;
	unsigned height;
	char *anchor;		/* a collection's anchor, registered when it ends */
	struct mnode *all_next; /* every node of the document, for freeing */
};

struct anchor {
	char *name;
	struct mnode *node;
};

struct doc {
	struct mnode *all;
	uint64_t raw;
	struct mnode *stack[AEP_MANIFEST_DEPTH + 1];
	size_t depth;
	struct mnode *root;
	struct anchor *anchors;
	size_t nanchors;
	size_t anchors_cap;
};

#define TAG_PREFIX "tag:yaml.org,2002:"

static void doc_reset(struct doc *d)
{
	struct mnode *m = d->all;
	while (m != NULL) {
		struct mnode *next = m->all_next;
		aep_free(m->val);
		aep_free(m->kids);
		aep_free(m->anchor);
		aep_free(m);
		m = next;
	}
	for (size_t i = 0; i < d->nanchors; i++)
		aep_free(d->anchors[i].name);
	aep_free(d->anchors);
	memset(d, 0, sizeof(*d));
}

static int line_err(struct aep_error *e, int code, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int line_err(struct aep_error *e, int code, size_t line, const char *fmt, ...)
{
	char msg[AEP_ERRMSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return aep_errorf(e, code, "line %zu: %s", line, msg);
}

static struct mnode *node_new(struct doc *d, enum mtype type, size_t line, struct aep_error *e)
{
	if (++d->raw > AEP_MANIFEST_NODES) {
		line_err(e, AEP_ETOOLARGE, line, "document has more than %u nodes",
			 AEP_MANIFEST_NODES);
		return NULL;
	}
	struct mnode *m = aep_calloc(1, sizeof(*m));
	if (m == NULL) {
		aep_errorf(e, AEP_ENOMEM, "out of memory");
		return NULL;
	}
	m->type = type;
	m->line = line;
	m->count = 1;
	m->height = 1;
	m->all_next = d->all;
	d->all = m;
	return m;
}

/* ---- anchors --------------------------------------------------------------
 * Kept in an array searched from the newest (a redefined anchor wins); a
 * document with many anchors is bounded by the node limit, and the search
 * is linear only in the anchors, which real manifests have few of. To keep
 * hostile input from being quadratic, the number of anchors is capped. */
#define ANCHORS_MAX 10000

static int anchor_add(struct doc *d, const char *name, struct mnode *m, struct aep_error *e)
{
	if (d->nanchors == ANCHORS_MAX)
		return line_err(e, AEP_ETOOLARGE, m->line, "more than %d anchors", ANCHORS_MAX);
	if (d->nanchors == d->anchors_cap) {
		size_t cap = d->anchors_cap ? d->anchors_cap * 2 : 8;
		struct anchor *a = aep_realloc(d->anchors, cap * sizeof(*a));
		if (a == NULL)
			return aep_errorf(e, AEP_ENOMEM, "out of memory");
		d->anchors = a;
		d->anchors_cap = cap;
	}
	char *copy = aep_strdup(name);
	if (copy == NULL)
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	d->anchors[d->nanchors].name = copy;
	d->anchors[d->nanchors].node = m;
	d->nanchors++;
	return 0;
}

static struct mnode *anchor_find(const struct doc *d, const char *name)
{
	for (size_t i = d->nanchors; i > 0; i--) {
		if (strcmp(d->anchors[i - 1].name, name) == 0)
			return d->anchors[i - 1].node;
	}
	return NULL;
}

/* ---- scalars -------------------------------------------------------------- */

static bool all_digits(const char *s, size_t len, int base)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool ok = base == 16  ? ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
					 (c >= 'A' && c <= 'F'))
			  : base == 8 ? (c >= '0' && c <= '7')
				      : (c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	return true;
}

static bool text_is(const char *s, size_t len, const char *const *words)
{
	for (; *words != NULL; words++) {
		if (strlen(*words) == len && memcmp(*words, s, len) == 0)
			return true;
	}
	return false;
}

static const char *const null_words[] = {"", "~", "null", "Null", "NULL", NULL};
static const char *const true_words[] = {"true", "True", "TRUE", NULL};
static const char *const false_words[] = {"false", "False", "FALSE", NULL};

/* An integer in YAML 1.2 core syntax: [-+]?[0-9]+, 0x[0-9a-fA-F]+, 0o[0-7]+.
 * Sets the type (S_INT, or S_UINT above INT64_MAX). Returns false when the
 * text is not an integer or does not fit 64 bits. */
static bool parse_int(struct mnode *m)
{
	const char *s = m->val;
	size_t len = m->len;
	int base = 10;
	bool neg = false;
	if (len > 0 && (s[0] == '-' || s[0] == '+')) {
		neg = s[0] == '-';
		s++;
		len--;
	} else if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
		base = s[1] == 'x' ? 16 : 8;
		s += 2;
		len -= 2;
	}
	if (!all_digits(s, len, base))
		return false;
	uint64_t u = 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		unsigned dig = c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
		if (u > (UINT64_MAX - dig) / (unsigned)base)
			return false;
		u = u * (unsigned)base + dig;
	}
	if (neg) {
		if (u > (uint64_t)INT64_MAX + 1)
			return false;
		m->st = S_INT;
		m->v.i = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
	} else if (u > INT64_MAX) {
		m->st = S_UINT;
		m->v.u = u;
	} else {
		m->st = S_INT;
		m->v.i = (int64_t)u;
	}
	return true;
}

/* A float in YAML 1.2 core syntax, including .inf, -.inf and .nan. */
static bool parse_float(struct mnode *m)
{
	const char *s = m->val;
	size_t len = m->len;
	static const char *const inf[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", NULL};
	static const char *const ninf[] = {"-.inf", "-.Inf", "-.INF", NULL};
	static const char *const nan_[] = {".nan", ".NaN", ".NAN", NULL};
	if (text_is(s, len, inf) || text_is(s, len, ninf) || text_is(s, len, nan_)) {
		m->st = S_FLOAT;
		m->v.f = text_is(s, len, nan_) ? NAN : text_is(s, len, ninf) ? -INFINITY : INFINITY;
		return true;
	}
	size_t i = 0;
	if (i < len && (s[i] == '-' || s[i] == '+'))
		i++;
	size_t int_digits = 0, frac_digits = 0;
	while (i < len && s[i] >= '0' && s[i] <= '9') {
		i++;
		int_digits++;
	}
	if (i < len && s[i] == '.') {
		i++;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			i++;
			frac_digits++;
		}
	}
	if (int_digits + frac_digits == 0)
		return false;
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '-' || s[i] == '+'))
			i++;
		size_t exp_digits = 0;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			i++;
			exp_digits++;
		}
		if (exp_digits == 0)
			return false;
	}
	if (i != len)
		return false;
	/* m->val is NUL-terminated (copied with aep_strndup). */
	m->st = S_FLOAT;
	m->v.f = strtod(m->val, NULL);
	return true;
}

/* Give a scalar its type from its tag, or for an untagged plain scalar from
 * its text. Returns 0 or AEP_EINVALID for a tag the value does not fit. */
static int scalar_resolve(struct mnode *m, const char *tag, bool plain, struct aep_error *e)
{
	m->st = S_STR;
	if (tag != NULL && strcmp(tag, "!") != 0) {
		const char *t = tag;
		if (strncmp(t, TAG_PREFIX, strlen(TAG_PREFIX)) != 0)
			return line_err(e, AEP_EINVALID, m->line, "unsupported tag %s", tag);
		t += strlen(TAG_PREFIX);
		if (strcmp(t, "str") == 0)
			return 0;
		if (strcmp(t, "null") == 0) {
			if (!text_is(m->val, m->len, null_words))
				return line_err(e, AEP_EINVALID, m->line,
						"\"%s\" is not a valid !!null", m->val);
			m->st = S_NULL;
			return 0;
		}
		if (strcmp(t, "bool") == 0) {
			if (text_is(m->val, m->len, true_words)) {
				m->st = S_BOOL;
				m->v.b = true;
				return 0;
			}
			if (text_is(m->val, m->len, false_words)) {
				m->st = S_BOOL;
				m->v.b = false;
				return 0;
			}
			return line_err(e, AEP_EINVALID, m->line, "\"%s\" is not a valid !!bool",
					m->val);
		}
		if (strcmp(t, "int") == 0) {
			if (!parse_int(m))
				return line_err(e, AEP_EINVALID, m->line,
						"\"%s\" is not a valid !!int", m->val);
			return 0;
		}
		if (strcmp(t, "float") == 0) {
			if (parse_float(m))
				return 0;
			if (parse_int(m)) {
				double f = m->st == S_UINT ? (double)m->v.u : (double)m->v.i;
				m->st = S_FLOAT;
				m->v.f = f;
				return 0;
			}
			return line_err(e, AEP_EINVALID, m->line, "\"%s\" is not a valid !!float",
					m->val);
		}
		if (strcmp(t, "binary") == 0) {
			char *bytes;
			size_t n;
			int rv = cli__base64_decode(m->val, m->len, &bytes, &n);
			if (rv == AEP_ENOMEM)
				return aep_errorf(e, rv, "out of memory");
			if (rv != 0)
				return line_err(e, AEP_EINVALID, m->line,
						"!!binary value is not valid base64");
			aep_free(m->val);
			m->val = bytes;
			m->len = n;
			m->st = S_BIN;
			return 0;
		}
		return line_err(e, AEP_EINVALID, m->line, "unsupported tag %s", tag);
	}
	if (!plain || tag != NULL)
		return 0;
	if (text_is(m->val, m->len, null_words)) {
		m->st = S_NULL;
	} else if (text_is(m->val, m->len, true_words)) {
		m->st = S_BOOL;
		m->v.b = true;
	} else if (text_is(m->val, m->len, false_words)) {
		m->st = S_BOOL;
		m->v.b = false;
	} else if (!parse_int(m) && !parse_float(m)) {
		m->st = S_STR;
	}
	return 0;
}

/* ---- building the tree ---------------------------------------------------- */

static int attach(struct doc *d, struct mnode *m, struct aep_error *e)
{
	if (d->depth == 0) {
		d->root = m;
		return 0;
	}
	struct mnode *p = d->stack[d->depth - 1];
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 4;
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
		struct mnode **k = aep_realloc(p->kids, cap * sizeof(*k));
		if (k == NULL)
			return aep_errorf(e, AEP_ENOMEM, "out of memory");
		p->kids = k;
		p->cap = cap;
	}
	p->kids[p->n++] = m;
	return 0;
}

static int key_cmp(const void *a, const void *b)
{
	const struct mnode *x = *(struct mnode *const *)a;
	const struct mnode *y = *(struct mnode *const *)b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->val, y->val, n);
	if (c != 0)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->line < y->line ? -1 : x->line > y->line;
}

/* Map keys must be scalars and unique; called when a map is complete. */
static int map_check_keys(struct mnode *m, struct aep_error *e)
{
	size_t nkeys = m->n / 2;
	for (size_t i = 0; i < nkeys; i++) {
		if (m->kids[2 * i]->type != M_SCALAR)
			return line_err(e, AEP_EINVALID, m->kids[2 * i]->line,
					"map keys must be scalars");
	}
	if (nkeys < 2)
		return 0;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	struct mnode **keys = aep_malloc(nkeys * sizeof(*keys));
	if (keys == NULL)
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	for (size_t i = 0; i < nkeys; i++)
		keys[i] = m->kids[2 * i];
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	qsort(keys, nkeys, sizeof(*keys), key_cmp);
	int rv = 0;
	for (size_t i = 1; i < nkeys; i++) {
		if (keys[i]->len == keys[i - 1]->len &&
		    memcmp(keys[i]->val, keys[i - 1]->val, keys[i]->len) == 0) {
			const struct mnode *dup =
			    keys[i]->line >= keys[i - 1]->line ? keys[i] : keys[i - 1];
			rv = line_err(e, AEP_EINVALID, dup->line, "duplicate key \"%.*s\"",
				      (int)(dup->len > 200 ? 200 : dup->len), dup->val);
			break;
		}
	}
	aep_free(keys);
	return rv;
}

/* A collection is complete: sum its expanded size and height. */
static int collection_end(struct doc *d, struct aep_error *e)
{
	struct mnode *m = d->stack[--d->depth];
	uint64_t count = 1;
	unsigned height = 0;
	for (size_t i = 0; i < m->n; i++) {
		count += m->kids[i]->count;
		if (count > AEP_MANIFEST_NODES)
			return line_err(e, AEP_ETOOLARGE, m->line,
					"document expands to more than %u nodes (aliases "
					"expanded): refusing it",
					AEP_MANIFEST_NODES);
		if (m->kids[i]->height > height)
			height = m->kids[i]->height;
	}
	m->count = count;
	m->height = height + 1;
	if (m->type == M_MAP)
		return map_check_keys(m, e);
	return 0;
}

static int on_event(struct doc *d, const yaml_event_t *ev, struct aep_error *e)
{
	size_t line = ev->start_mark.line + 1;
	const char *anchor = NULL;
	struct mnode *m = NULL;
	int rv;

	switch (ev->type) {
	case YAML_ALIAS_EVENT: {
		struct mnode *target = anchor_find(d, (const char *)ev->data.alias.anchor);
		if (target == NULL)
			return line_err(e, AEP_EINVALID, line, "unknown anchor \"%s\"",
					(const char *)ev->data.alias.anchor);
		if (d->depth + target->height > AEP_MANIFEST_DEPTH)
			return line_err(e, AEP_ETOOLARGE, line,
					"nesting deeper than %d levels (aliases expanded)",
					AEP_MANIFEST_DEPTH);
		return attach(d, target, e);
	}
	case YAML_SCALAR_EVENT:
		m = node_new(d, M_SCALAR, line, e);
		if (m == NULL)
			return e->code;
		if (d->depth + 1 > AEP_MANIFEST_DEPTH)
			return line_err(e, AEP_ETOOLARGE, line, "nesting deeper than %d levels",
					AEP_MANIFEST_DEPTH);
		m->val = aep_strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
		if (m->val == NULL)
			return aep_errorf(e, AEP_ENOMEM, "out of memory");
		m->len = ev->data.scalar.length;
		rv = scalar_resolve(m, (const char *)ev->data.scalar.tag,
				    ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, e);
		if (rv != 0)
			return rv;
		rv = attach(d, m, e);
		if (rv != 0)
			return rv;
		anchor = (const char *)ev->data.scalar.anchor;
		break;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		bool map = ev->type == YAML_MAPPING_START_EVENT;
		const char *tag = map ? (const char *)ev->data.mapping_start.tag
				      : (const char *)ev->data.sequence_start.tag;
		const char *want = map ? TAG_PREFIX "map" : TAG_PREFIX "seq";
		if (tag != NULL && strcmp(tag, "!") != 0 && strcmp(tag, want) != 0)
			return line_err(e, AEP_EINVALID, line, "unsupported tag %s", tag);
		if (d->depth >= AEP_MANIFEST_DEPTH)
			return line_err(e, AEP_ETOOLARGE, line, "nesting deeper than %d levels",
					AEP_MANIFEST_DEPTH);
		m = node_new(d, map ? M_MAP : M_SEQ, line, e);
		if (m == NULL)
			return e->code;
		anchor = map ? (const char *)ev->data.mapping_start.anchor
			     : (const char *)ev->data.sequence_start.anchor;
		if (anchor != NULL) {
			m->anchor = aep_strdup(anchor);
			if (m->anchor == NULL)
				return aep_errorf(e, AEP_ENOMEM, "out of memory");
		}
		rv = attach(d, m, e);
		if (rv != 0)
			return rv;
		d->stack[d->depth++] = m;
		return 0;
	}
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT: {
		/* libyaml pairs every end with a start; say so rather than
		 * index the stack at -1 if it ever did not. */
		if (d->depth == 0)
			return line_err(e, AEP_EINTERNAL, line, "collection end without a start");
		m = d->stack[d->depth - 1];
		rv = collection_end(d, e);
		if (rv != 0 || m->anchor == NULL)
			return rv;
		rv = anchor_add(d, m->anchor, m, e);
		aep_free(m->anchor);
		m->anchor = NULL;
		return rv;
	}
	default: return 0;
	}
	if (anchor != NULL)
		return anchor_add(d, anchor, m, e);
	return 0;
}

/* ---- encoding -------------------------------------------------------------- */

static void pack_node(msgpack_packer *pk, const struct mnode *m)
{
	switch (m->type) {
	case M_SCALAR:
		switch (m->st) {
		case S_STR: aep_pack_strn(pk, m->val, m->len); break;
		case S_INT: msgpack_pack_int64(pk, m->v.i); break;
		case S_UINT: msgpack_pack_uint64(pk, m->v.u); break;
		case S_FLOAT: msgpack_pack_double(pk, m->v.f); break;
		case S_BOOL:
			if (m->v.b)
				msgpack_pack_true(pk);
			else
				msgpack_pack_false(pk);
			break;
		case S_NULL: msgpack_pack_nil(pk); break;
		case S_BIN:
			msgpack_pack_bin(pk, m->len);
			msgpack_pack_bin_body(pk, m->val, m->len);
			break;
		}
		break;
	case M_SEQ:
		msgpack_pack_array(pk, m->n);
		for (size_t i = 0; i < m->n; i++)
			pack_node(pk, m->kids[i]);
		break;
	case M_MAP:
		msgpack_pack_map(pk, m->n / 2);
		for (size_t i = 0; i + 1 < m->n; i += 2) {
			/* keys are always strings in AEP objects */
			aep_pack_strn(pk, m->kids[i]->type == M_SCALAR ? m->kids[i]->val : "",
				      m->kids[i]->type == M_SCALAR ? m->kids[i]->len : 0);
			pack_node(pk, m->kids[i + 1]);
		}
		break;
	}
}

static int docs_push(struct aep_docs *out, const struct mnode *m, struct aep_error *e)
{
	struct aep_buf *items = aep_realloc(out->items, (out->n + 1) * sizeof(*items));
	if (items == NULL)
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	out->items = items;
	struct aep_buf *b = &out->items[out->n];
	aep_buf_init(b);
	msgpack_packer pk;
	aep_packer_init(&pk, b);
	pack_node(&pk, m);
	if (b->failed) {
		aep_buf_free(b);
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	}
	out->n++;
	return 0;
}

static const struct mnode *map_lookup(const struct mnode *m, const char *key)
{
	size_t klen = strlen(key);
	for (size_t i = 0; i + 1 < m->n; i += 2) {
		const struct mnode *k = m->kids[i];
		if (k->type == M_SCALAR && k->len == klen && memcmp(k->val, key, klen) == 0)
			return m->kids[i + 1];
	}
	return NULL;
}

static bool is_list_kind(const struct mnode *kind)
{
	if (kind == NULL || kind->type != M_SCALAR || kind->st != S_STR)
		return false;
	return kind->len >= 4 && memcmp(kind->val + kind->len - 4, "List", 4) == 0;
}

static int doc_finish(struct doc *d, struct aep_docs *out, size_t line, struct aep_error *e)
{
	const struct mnode *root = d->root;
	if (root == NULL || (root->type == M_SCALAR && root->st == S_NULL))
		return 0; /* an empty document: skipped, like kubectl */
	if (root->type != M_MAP)
		return line_err(e, AEP_EINVALID, root->line ? root->line : line,
				"a document must be a map (an object with kind, metadata, ...)");
	const struct mnode *items = map_lookup(root, "items");
	const struct mnode *kind = map_lookup(root, "kind");
	if (!is_list_kind(kind) && !(kind == NULL && items != NULL && items->type == M_SEQ))
		return docs_push(out, root, e);
	if (items == NULL || (items->type == M_SCALAR && items->st == S_NULL))
		return 0;
	if (items->type != M_SEQ)
		return line_err(e, AEP_EINVALID, items->line, "items: must be a list");
	for (size_t i = 0; i < items->n; i++) {
		if (items->kids[i]->type != M_MAP)
			return line_err(e, AEP_EINVALID, items->kids[i]->line,
					"items[%zu]: must be a map", i);
		int rv = docs_push(out, items->kids[i], e);
		if (rv != 0)
			return rv;
	}
	return 0;
}

static int parse_error(const yaml_parser_t *p, struct aep_error *e)
{
	if (p->error == YAML_MEMORY_ERROR)
		return aep_errorf(e, AEP_ENOMEM, "out of memory while parsing");
	size_t line = p->problem_mark.line + 1;
	if (p->context != NULL)
		return line_err(e, AEP_EINVALID, line, "%s %s",
				p->problem ? p->problem : "syntax error", p->context);
	return line_err(e, AEP_EINVALID, line, "%s", p->problem ? p->problem : "syntax error");
}

void aep_docs_free(struct aep_docs *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->n; i++)
		aep_buf_free(&d->items[i]);
	aep_free(d->items);
	d->items = NULL;
	d->n = 0;
}

int aep_manifest_parse(const char *text, size_t len, struct aep_docs *out, struct aep_error *e)
{
	memset(out, 0, sizeof(*out));
	if (len > AEP_MANIFEST_MAX)
		return aep_errorf(e, AEP_ETOOLARGE, "manifest is %zu bytes, over the limit of %u",
				  len, AEP_MANIFEST_MAX);
	if (memchr(text, '\0', len) != NULL)
		return aep_errorf(e, AEP_EINVALID, "manifest contains a NUL byte");

	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser))
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);

	struct doc d;
	memset(&d, 0, sizeof(d));
	int rv = 0;
	for (;;) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&parser, &ev)) {
			rv = parse_error(&parser, e);
			break;
		}
		if (ev.type == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (ev.type == YAML_DOCUMENT_END_EVENT) {
			rv = doc_finish(&d, out, ev.start_mark.line + 1, e);
			doc_reset(&d);
		} else {
			rv = on_event(&d, &ev, e);
		}
		yaml_event_delete(&ev);
		if (rv != 0)
			break;
	}
	doc_reset(&d);
	yaml_parser_delete(&parser);
	if (rv != 0)
		aep_docs_free(out);
	return rv;
}

int aep_manifest_load(const char *path, struct aep_docs *out, struct aep_error *e)
{
	memset(out, 0, sizeof(*out));
	bool is_stdin = strcmp(path, "-") == 0;
	int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return aep_errorf(e, errno == ENOENT ? AEP_ENOTFOUND : AEP_EIO,
				  "the path \"%s\" does not exist or cannot be read: %s", path,
				  strerror(errno));
	struct aep_buf b;
	aep_buf_init(&b);
	int rv = 0;
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		rv = aep_errorf(e, AEP_EINVALID, "%s: is a directory", path);
		goto err_after_open;
	}
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > AEP_MANIFEST_MAX) {
		rv = aep_errorf(e, AEP_ETOOLARGE, "%s: %lld bytes, over the limit of %u", path,
				(long long)st.st_size, AEP_MANIFEST_MAX);
		goto err_after_open;
	}
	for (;;) {
		if (aep_buf_reserve(&b, 65536) != 0) {
			rv = aep_errorf(e, AEP_ENOMEM, "out of memory");
			goto err_after_open;
		}
		ssize_t n = read(fd, b.data + b.len, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rv = aep_errorf(e, AEP_EIO, "read %s: %s", path, strerror(errno));
			goto err_after_open;
		}
		if (n == 0)
			break;
		b.len += (size_t)n;
		if (b.len > AEP_MANIFEST_MAX) {
			rv = aep_errorf(e, AEP_ETOOLARGE, "%s: over the limit of %u bytes", path,
					AEP_MANIFEST_MAX);
			goto err_after_open;
		}
	}
	rv = aep_manifest_parse(b.data ? b.data : "", b.len, out, e);
	if (rv != 0 && !is_stdin)
		aep_error_prefix(e, "%s", path);
err_after_open:
	aep_buf_free(&b);
	if (!is_stdin)
		close(fd);
	return rv;
}
