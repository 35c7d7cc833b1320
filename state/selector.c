/* state: label selectors, Kubernetes syntax.
 *
 *	selector    := "" | requirement ("," requirement)*
 *	requirement := "!" KEY | KEY | KEY ("=" | "==" | "!=") VALUE
 *	             | KEY ("in" | "notin") "(" VALUE ("," VALUE)* ")"
 *
 * Whitespace is allowed between tokens. Keys and values are checked with
 * the label syntax. A selector is one allocation for its requirements and
 * values plus one copy of the strings they point into; matching binary-
 * searches the object's sorted labels for each requirement. */
#include "state/schema.h"

#include <stdlib.h>
#include <string.h>

enum sel_op { SEL_EXISTS, SEL_NOT_EXISTS, SEL_EQ, SEL_NE, SEL_IN, SEL_NOT_IN };

struct sel_req {
	enum sel_op op;
	const char *key;
	size_t val0, nvals; /* into aep_selector.vals */
};

struct aep_selector {
	struct sel_req *reqs;
	size_t nreqs;
	const char **vals;
	size_t nvals;
	char *strs; /* the keys and values, NUL-terminated */
};

/* ---- building ------------------------------------------------------------ */

/* Counts known in advance size every array exactly. */
static struct aep_selector *sel_alloc(size_t nreqs, size_t nvals, size_t strs)
{
	struct aep_selector *s = aep_calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->reqs = aep_malloc(nreqs * sizeof(*s->reqs));
	s->vals = aep_malloc(nvals * sizeof(*s->vals));
	s->strs = aep_malloc(strs);
	if (s->reqs == NULL || s->vals == NULL || s->strs == NULL) {
		aep_selector_free(s);
		return NULL;
	}
	return s;
}

void aep_selector_free(struct aep_selector *s)
{
	if (s == NULL)
		return;
	aep_free(s->reqs);
	aep_free(s->vals);
	aep_free(s->strs);
	aep_free(s);
}

bool aep_selector_empty(const struct aep_selector *s)
{
	return s == NULL || s->nreqs == 0;
}

/* ---- parsing ------------------------------------------------------------- */

struct parser {
	const char *s;
	size_t len, off;
	struct aep_error *e;
	struct aep_selector *out; /* NULL on the counting pass */
	size_t nreqs, nvals;
	char *pool;
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_token_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '/';
}

static void skip_space(struct parser *p)
{
	while (p->off < p->len && is_space(p->s[p->off]))
		p->off++;
}

static bool at(struct parser *p, char c)
{
	return p->off < p->len && p->s[p->off] == c;
}

/* The run of token characters at the cursor (possibly empty). */
static size_t token(struct parser *p)
{
	size_t start = p->off;
	while (p->off < p->len && is_token_char(p->s[p->off]))
		p->off++;
	return p->off - start;
}

static int fail(struct parser *p, const char *what)
{
	char q[STATE__QUOTE_MAX];
	if (p->off >= p->len)
		return aep_errorf(p->e, AEP_EINVALID, "label selector: %s at the end", what);
	return aep_errorf(p->e, AEP_EINVALID, "label selector: %s at offset %zu (%s)", what, p->off,
			  state__quote(q, sizeof(q), p->s + p->off, p->len - p->off));
}

static const char *keep(struct parser *p, const char *s, size_t n)
{
	if (p->out == NULL)
		return NULL;
	char *d = p->pool;
	memcpy(d, s, n);
	d[n] = '\0';
	p->pool += n + 1;
	return d;
}

static int key_token(struct parser *p, const char **key)
{
	char q[STATE__QUOTE_MAX];
	struct aep_error ce = {0};
	size_t start = p->off, n = token(p);
	if (n == 0)
		return fail(p, "expected a label key");
	if (aep_validate_label_key(p->s + start, n, &ce) != 0)
		return aep_errorf(p->e, AEP_EINVALID, "label selector: key %s: %s",
				  state__quote(q, sizeof(q), p->s + start, n), ce.msg);
	*key = keep(p, p->s + start, n);
	return 0;
}

static int value_token(struct parser *p)
{
	char q[STATE__QUOTE_MAX];
	struct aep_error ce = {0};
	size_t start = p->off, n = token(p);
	if (aep_validate_label_value(p->s + start, n, &ce) != 0)
		return aep_errorf(p->e, AEP_EINVALID, "label selector: value %s: %s",
				  state__quote(q, sizeof(q), p->s + start, n), ce.msg);
	if (p->out != NULL)
		p->out->vals[p->nvals] = keep(p, p->s + start, n);
	p->nvals++;
	return 0;
}

/* A word operator: "in" or "notin", then space or "(". */
static bool word(struct parser *p, const char *w)
{
	size_t n = strlen(w);
	if (p->len - p->off < n || memcmp(p->s + p->off, w, n) != 0)
		return false;
	if (p->off + n < p->len && is_token_char(p->s[p->off + n]))
		return false;
	p->off += n;
	return true;
}

static int value_set(struct parser *p)
{
	int rc;
	skip_space(p);
	if (!at(p, '('))
		return fail(p, "expected '('");
	p->off++;
	skip_space(p);
	if (at(p, ')'))
		return fail(p, "a value set must not be empty");
	for (;;) {
		skip_space(p);
		rc = value_token(p);
		if (rc != 0)
			return rc;
		skip_space(p);
		if (at(p, ')')) {
			p->off++;
			return 0;
		}
		if (!at(p, ','))
			return fail(p, "expected ',' or ')'");
		p->off++;
	}
}

static int requirement(struct parser *p)
{
	struct sel_req r = {.val0 = p->nvals};
	int rc;

	skip_space(p);
	if (at(p, '!')) {
		p->off++;
		skip_space(p);
		r.op = SEL_NOT_EXISTS;
		rc = key_token(p, &r.key);
		if (rc != 0)
			return rc;
	} else {
		rc = key_token(p, &r.key);
		if (rc != 0)
			return rc;
		skip_space(p);
		if (p->off == p->len || at(p, ',')) {
			r.op = SEL_EXISTS;
		} else if (at(p, '=') ||
			   (at(p, '!') && p->off + 1 < p->len && p->s[p->off + 1] == '=')) {
			r.op = at(p, '!') ? SEL_NE : SEL_EQ;
			p->off += r.op == SEL_NE ? 2 : 1;
			if (r.op == SEL_EQ && at(p, '='))
				p->off++;
			skip_space(p);
			rc = value_token(p);
		} else if (word(p, "in")) {
			r.op = SEL_IN;
			rc = value_set(p);
		} else if (word(p, "notin")) {
			r.op = SEL_NOT_IN;
			rc = value_set(p);
		} else {
			rc = fail(p, "expected '=', '==', '!=', 'in', 'notin' or ','");
		}
		if (rc != 0)
			return rc;
	}
	r.nvals = p->nvals - r.val0;
	if (p->out != NULL)
		p->out->reqs[p->nreqs] = r;
	p->nreqs++;
	return 0;
}

static int parse(struct parser *p)
{
	int rc;
	p->off = 0;
	p->nreqs = 0;
	p->nvals = 0;
	skip_space(p);
	if (p->off == p->len)
		return 0;
	for (;;) {
		rc = requirement(p);
		if (rc != 0)
			return rc;
		skip_space(p);
		if (p->off == p->len)
			return 0;
		if (!at(p, ','))
			return fail(p, "expected ','");
		p->off++;
		skip_space(p);
		if (p->off == p->len)
			return fail(p, "expected a requirement after ','");
	}
}

int aep_selector_parse(const char *s, size_t len, struct aep_selector **out, struct aep_error *e)
{
	struct parser p = {.s = s, .len = len, .e = e};
	int rc;

	/* Pass one validates and counts; pass two fills exact arrays. */
	rc = parse(&p);
	if (rc != 0)
		return rc;
	p.out = sel_alloc(p.nreqs, p.nvals, len + p.nreqs + p.nvals + 1);
	if (p.out == NULL)
		return aep_errorf(e, AEP_ENOMEM, "label selector: out of memory");
	p.pool = p.out->strs;
	parse(&p);
	p.out->nreqs = p.nreqs;
	p.out->nvals = p.nvals;
	*out = p.out;
	return 0;
}

int aep_selector_from_map(const msgpack_object *map, struct aep_selector **out, struct aep_error *e)
{
	char q[STATE__QUOTE_MAX];
	struct aep_error ce = {0};
	size_t n = 0, bytes = 1;

	if (map != NULL && map->type != MSGPACK_OBJECT_NIL) {
		if (map->type != MSGPACK_OBJECT_MAP)
			return aep_errorf(e, AEP_EINVALID, "selector: must be a map");
		n = map->via.map.size;
	}
	if (n > AEP_LABELS_MAX)
		return aep_errorf(e, AEP_EINVALID, "selector: must have at most %d entries",
				  AEP_LABELS_MAX);
	for (size_t i = 0; i < n; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		const msgpack_object *v = &map->via.map.ptr[i].val;
		if (k->type != MSGPACK_OBJECT_STR || v->type != MSGPACK_OBJECT_STR)
			return aep_errorf(e, AEP_EINVALID,
					  "selector: keys and values must be strings");
		if (aep_validate_label_key(k->via.str.ptr, k->via.str.size, &ce) != 0 ||
		    aep_validate_label_value(v->via.str.ptr, v->via.str.size, &ce) != 0)
			return aep_errorf(
			    e, AEP_EINVALID, "selector: %s: %s",
			    state__quote(q, sizeof(q), k->via.str.ptr, k->via.str.size), ce.msg);
		bytes += k->via.str.size + 1 + v->via.str.size + 1;
	}

	struct aep_selector *s = sel_alloc(n, n, bytes);
	if (s == NULL)
		return aep_errorf(e, AEP_ENOMEM, "selector: out of memory");
	char *pool = s->strs;
	for (size_t i = 0; i < n; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		const msgpack_object *v = &map->via.map.ptr[i].val;
		s->reqs[i] = (struct sel_req){SEL_EQ, pool, i, 1};
		memcpy(pool, k->via.str.ptr, k->via.str.size);
		pool += k->via.str.size;
		*pool++ = '\0';
		s->vals[i] = pool;
		memcpy(pool, v->via.str.ptr, v->via.str.size);
		pool += v->via.str.size;
		*pool++ = '\0';
	}
	s->nreqs = n;
	s->nvals = n;
	*out = s;
	return 0;
}

bool aep_selector_required_label(const struct aep_selector *s, const char **key, const char **value)
{
	if (s == NULL)
		return false;
	for (size_t i = 0; i < s->nreqs; i++) {
		const struct sel_req *r = &s->reqs[i];
		if ((r->op == SEL_EQ || r->op == SEL_IN) && r->nvals == 1) {
			*key = r->key;
			*value = s->vals[r->val0];
			return true;
		}
	}
	return false;
}

/* ---- matching ------------------------------------------------------------ */

static const char *label_value(const struct aep_label *labels, size_t n, const char *key)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(labels[mid].key, key);
		if (c == 0)
			return labels[mid].value;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static bool in_set(const struct aep_selector *s, const struct sel_req *r, const char *v)
{
	for (size_t i = 0; i < r->nvals; i++)
		if (strcmp(s->vals[r->val0 + i], v) == 0)
			return true;
	return false;
}

bool aep_selector_matches(const struct aep_selector *s, const struct aep_label *labels,
			  size_t nlabels)
{
	if (s == NULL)
		return true;
	for (size_t i = 0; i < s->nreqs; i++) {
		const struct sel_req *r = &s->reqs[i];
		const char *v = label_value(labels, nlabels, r->key);
		bool ok;
		switch (r->op) {
		case SEL_EXISTS: ok = v != NULL; break;
		case SEL_NOT_EXISTS: ok = v == NULL; break;
		case SEL_EQ: ok = v != NULL && strcmp(v, s->vals[r->val0]) == 0; break;
		case SEL_NE: ok = v == NULL || strcmp(v, s->vals[r->val0]) != 0; break;
		case SEL_IN: ok = v != NULL && in_set(s, r, v); break;
		case SEL_NOT_IN: ok = v == NULL || !in_set(s, r, v); break;
		default: ok = false; break;
		}
		if (!ok)
			return false;
	}
	return true;
}
