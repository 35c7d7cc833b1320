/* aep-linearize: checks that a recorded history of operations on registers
 * is linearizable (Wing & Gong's search with Lowe's memoisation, as in
 * Knossos and Porcupine).
 *
 * Input (a file or stdin), one record a line; '#' starts a comment:
 *
 *   init KEY VALUE
 *   op ID KEY read  VALUE -   INVOKE COMPLETE STATUS
 *   op ID KEY write VALUE -   INVOKE COMPLETE STATUS
 *   op ID KEY cas   OLD   NEW INVOKE COMPLETE STATUS
 *
 * VALUE, OLD, NEW are unsigned 64-bit integers; INVOKE and COMPLETE are
 * integer times (any unit, one clock); STATUS is ok, fail or unknown.
 * Model: a register per key, starting at its init value (0 without one).
 *  - read ok: the register held VALUE; read fail or unknown: no information.
 *  - write ok: the register became VALUE; write fail: it did not happen;
 *    write unknown: it may have happened at any time after INVOKE, or never.
 *  - cas ok: the register held OLD and became NEW; cas fail: it held
 *    something other than OLD; cas unknown: as write unknown, with effect
 *    only if the register held OLD (a cas without effect is the same as
 *    one that never happened, so only effective ones are searched).
 *
 * ID is an unsigned integer that names the operation in reports.
 *
 * The history is split by key (linearizability is compositional) and each
 * key is searched on its own. Long fault runs keep each key's history short
 * (the harness retires a key after a number of operations), so the cost is
 * linear in the number of keys; memory is the history (about 64 bytes an
 * operation) plus one key's search, whose memoisation is bounded by
 * --max-states and by 1 GiB.
 *
 * Unknown outcomes observed later. When every write puts a value that no
 * other operation of the key writes (the harness makes values unique) and
 * that is not the key's init value, an unknown write or cas whose value an
 * ok read or ok cas later saw certainly happened, before the end of the
 * earliest such observer: it is searched as an ok operation completing
 * then ("resolved"), which prunes the search without changing its answer;
 * an observer that completed before the write began makes the key
 * non-linearizable at once.
 *
 * Output: one line per key (with --quiet only keys that are not
 * linearizable or over the limits), a line with the totals, then
 * `linearizable=yes` or `linearizable=no`; for a key that is not, the
 * operation that no order could place and the register values it could
 * have followed. Exit status 0 yes, 1 no, 2 bad input or a search over
 * its limits (--max-states). */
#include "lib/lib.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIN_KEY_MAX	128
#define LIN_LINE_MAX	512
#define LIN_OPS_MAX	(1u << 26)
#define LIN_KEYS_MAX	(1u << 22)
#define LIN_CACHE_BYTES ((size_t)1 << 30)

enum lin_type { LIN_READ, LIN_WRITE, LIN_CAS };
enum lin_status { LIN_OK, LIN_FAIL, LIN_UNKNOWN };

struct lin_op {
	uint64_t id;
	uint64_t a, b;
	int64_t invoke, complete;
	size_t line;
	uint32_t key;	/* index into history.keys */
	uint8_t type;	/* enum lin_type */
	uint8_t status; /* enum lin_status */
	bool resolved;	/* an unknown outcome that a later op observed */
};

/* One register: its name and init value. */
struct lin_key {
	char *name;
	uint64_t init;
};

struct history {
	struct lin_op *ops;
	size_t n, cap;
	struct lin_key *keys;
	size_t nkeys, capkeys;
	uint32_t *index; /* open addressing: key index + 1, 0 empty */
	size_t nindex;
};

/* One call or return in the time-ordered list the search walks. */
struct entry {
	size_t op; /* index into the key's op array */
	bool call; /* false: the return of op */
	int64_t time;
	size_t match; /* call: index of its return entry, or SIZE_MAX */
	size_t prev, next;
};

struct cache_slot {
	uint64_t hash;
	uint64_t state;
	uint64_t *bits; /* NULL: empty slot */
};

struct search {
	struct lin_op **ops;
	size_t n;
	size_t words;
	struct entry *e; /* e[0] is the list head sentinel */
	size_t ne;
	struct cache_slot *slots;
	size_t nslots, used;
	size_t max_states;
	/* deepest failure, for the report */
	size_t best_done;
	size_t best_op;
	uint64_t best_states[8];
	size_t best_nstates;
};

static int parse_status(const char *s, enum lin_status *st)
{
	if (strcmp(s, "ok") == 0)
		*st = LIN_OK;
	else if (strcmp(s, "fail") == 0)
		*st = LIN_FAIL;
	else if (strcmp(s, "unknown") == 0)
		*st = LIN_UNKNOWN;
	else
		return -1;
	return 0;
}

static int parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (strcmp(s, "-") == 0) {
		*v = 0;
		return 0;
	}
	*v = strtoull(s, &end, 10);
	return (*s == '\0' || *end != '\0') ? -1 : 0;
}

static int parse_i64(const char *s, int64_t *v)
{
	char *end;

	*v = strtoll(s, &end, 10);
	return (*s == '\0' || *end != '\0') ? -1 : 0;
}

/* Appends one op; returns -1 on allocation failure or too many ops. */
static int history_push(struct history *h, const struct lin_op *op)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 1024;
		struct lin_op *ops;

		if (cap > LIN_OPS_MAX)
			return -1;
		ops = aep_realloc(h->ops, cap * sizeof(*ops));
		if (ops == NULL)
			return -1;
		h->ops = ops;
		h->cap = cap;
	}
	h->ops[h->n++] = *op;
	return 0;
}

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

static int index_grow(struct history *h)
{
	size_t n = h->nindex ? h->nindex * 2 : 1024;
	uint32_t *index = aep_calloc(n, sizeof(*index));
	size_t i;

	if (index == NULL)
		return -1;
	for (i = 0; i < h->nkeys; i++) {
		size_t j;

		for (j = name_hash(h->keys[i].name) & (n - 1); index[j] != 0; j = (j + 1) & (n - 1))
			;
		index[j] = (uint32_t)i + 1;
	}
	aep_free(h->index);
	h->index = index;
	h->nindex = n;
	return 0;
}

/* The index of key @name, added (init value 0) if new; -1 when out of
 * memory or over LIN_KEYS_MAX keys. */
static int64_t history_key(struct history *h, const char *name)
{
	size_t j;

	if ((h->nkeys + 1) * 2 > h->nindex && index_grow(h) != 0)
		return -1;
	for (j = name_hash(name) & (h->nindex - 1); h->index[j] != 0;
	     j = (j + 1) & (h->nindex - 1)) {
		if (strcmp(h->keys[h->index[j] - 1].name, name) == 0)
			return h->index[j] - 1;
	}
	if (h->nkeys == LIN_KEYS_MAX)
		return -1;
	if (h->nkeys == h->capkeys) {
		size_t cap = h->capkeys ? h->capkeys * 2 : 64;
		struct lin_key *keys = aep_realloc(h->keys, cap * sizeof(*keys));

		if (keys == NULL)
			return -1;
		h->keys = keys;
		h->capkeys = cap;
	}
	h->keys[h->nkeys].name = aep_strdup(name);
	if (h->keys[h->nkeys].name == NULL)
		return -1;
	h->keys[h->nkeys].init = 0;
	h->index[j] = (uint32_t)h->nkeys + 1;
	return (int64_t)h->nkeys++;
}

static void history_free(struct history *h)
{
	size_t i;

	for (i = 0; i < h->nkeys; i++)
		aep_free(h->keys[i].name);
	aep_free(h->keys);
	aep_free(h->index);
	aep_free(h->ops);
}

/* Reads the whole history; on a malformed line prints it and returns -1. */
static int history_read(struct history *h, FILE *in)
{
	char line[LIN_LINE_MAX];
	size_t lineno = 0;

	while (fgets(line, sizeof(line), in) != NULL) {
		char f[10][LIN_KEY_MAX];
		int nf = 0;
		char *save = NULL;
		char *tok;
		struct lin_op op;
		int64_t key;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(in)) {
			fprintf(stderr, "line %zu: longer than %d bytes\n", lineno, LIN_LINE_MAX);
			return -1;
		}
		for (tok = strtok_r(line, " \t\r\n", &save); tok != NULL && nf < 10;
		     tok = strtok_r(NULL, " \t\r\n", &save)) {
			if (tok[0] == '#')
				break;
			if (strlen(tok) >= LIN_KEY_MAX) {
				fprintf(stderr, "line %zu: field too long\n", lineno);
				return -1;
			}
			strcpy(f[nf++], tok);
		}
		if (nf == 0)
			continue;
		if (strcmp(f[0], "init") == 0 && nf == 3) {
			uint64_t v;

			if (parse_u64(f[2], &v) != 0)
				goto bad;
			key = history_key(h, f[1]);
			if (key < 0)
				goto nomem;
			h->keys[key].init = v;
			continue;
		}
		if (strcmp(f[0], "op") != 0 || nf != 9)
			goto bad;
		memset(&op, 0, sizeof(op));
		if (strcmp(f[3], "read") == 0)
			op.type = LIN_READ;
		else if (strcmp(f[3], "write") == 0)
			op.type = LIN_WRITE;
		else if (strcmp(f[3], "cas") == 0)
			op.type = LIN_CAS;
		else
			goto bad;
		{
			enum lin_status st;

			if (strcmp(f[1], "-") == 0 || parse_u64(f[1], &op.id) != 0 ||
			    parse_u64(f[4], &op.a) != 0 || parse_u64(f[5], &op.b) != 0 ||
			    parse_i64(f[6], &op.invoke) != 0 || parse_status(f[8], &st) != 0)
				goto bad;
			op.status = (uint8_t)st;
		}
		if (op.status == LIN_UNKNOWN)
			op.complete = INT64_MAX;
		else if (parse_i64(f[7], &op.complete) != 0 || op.complete < op.invoke)
			goto bad;
		op.line = lineno;
		key = history_key(h, f[2]);
		if (key < 0 || history_push(h, &op) != 0)
			goto nomem;
		h->ops[h->n - 1].key = (uint32_t)key;
		continue;
	bad:
		fprintf(stderr, "line %zu: malformed record\n", lineno);
		return -1;
	nomem:
		fprintf(stderr, "line %zu: out of memory or too many operations or keys\n", lineno);
		return -1;
	}
	return 0;
}

/* Whether @op may be placed when the register holds @state; sets *next. */
static bool step(const struct lin_op *op, uint64_t state, uint64_t *next)
{
	*next = state;
	switch (op->type) {
	case LIN_READ: return op->a == state;
	case LIN_WRITE: *next = op->a; return true;
	case LIN_CAS:
		if (op->status == LIN_FAIL)
			return op->a != state;
		if (op->a != state)
			return false;
		*next = op->b;
		return true;
	}
	return false;
}

static uint64_t bits_hash(const uint64_t *bits, size_t words, uint64_t state)
{
	uint64_t h = 1469598103934665603ull ^ state;
	size_t i;

	for (i = 0; i < words; i++) {
		h ^= bits[i];
		h *= 1099511628211ull;
		h ^= h >> 29;
	}
	return h;
}

static int cache_grow(struct search *s)
{
	size_t n = s->nslots ? s->nslots * 2 : 4096;
	struct cache_slot *slots = aep_calloc(n, sizeof(*slots));
	size_t i;

	if (slots == NULL)
		return -1;
	for (i = 0; i < s->nslots; i++) {
		size_t j;

		if (s->slots[i].bits == NULL)
			continue;
		for (j = s->slots[i].hash & (n - 1); slots[j].bits != NULL; j = (j + 1) & (n - 1))
			;
		slots[j] = s->slots[i];
	}
	aep_free(s->slots);
	s->slots = slots;
	s->nslots = n;
	return 0;
}

/* Adds (bits, state) to the set of configurations seen. Returns 1 when it
 * was new, 0 when it was there already, -1 on allocation failure or when
 * the set would pass max_states. */
static int cache_add(struct search *s, const uint64_t *bits, uint64_t state)
{
	uint64_t h = bits_hash(bits, s->words, state);
	size_t j;

	if ((s->used + 1) * 2 > s->nslots) {
		if (s->used >= s->max_states || cache_grow(s) != 0)
			return -1;
	}
	for (j = h & (s->nslots - 1); s->slots[j].bits != NULL; j = (j + 1) & (s->nslots - 1)) {
		struct cache_slot *c = &s->slots[j];

		if (c->hash == h && c->state == state &&
		    memcmp(c->bits, bits, s->words * sizeof(*bits)) == 0)
			return 0;
	}
	s->slots[j].bits = aep_malloc(s->words * sizeof(*bits));
	if (s->slots[j].bits == NULL)
		return -1;
	memcpy(s->slots[j].bits, bits, s->words * sizeof(*bits));
	s->slots[j].hash = h;
	s->slots[j].state = state;
	s->used++;
	return 1;
}

static void search_free(struct search *s)
{
	size_t i;

	for (i = 0; i < s->nslots; i++)
		aep_free(s->slots[i].bits);
	aep_free(s->slots);
	aep_free(s->e);
}

struct writer {
	uint64_t value;
	size_t op;
};

static int writer_cmp(const void *pa, const void *pb)
{
	const struct writer *a = pa, *b = pb;

	if (a->value != b->value)
		return a->value < b->value ? -1 : 1;
	return a->op < b->op ? -1 : (a->op > b->op ? 1 : 0);
}

/* The only op of @w[0..@nw) that writes @value, or SIZE_MAX when none or
 * several do. */
static size_t sole_writer(const struct writer *w, size_t nw, uint64_t value)
{
	size_t lo = 0, hi = nw;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (w[mid].value < value)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == nw || w[lo].value != value || (lo + 1 < nw && w[lo + 1].value == value))
		return SIZE_MAX;
	return w[lo].op;
}

/* Resolves the unknown writes and cas of one key that a later ok read or ok
 * cas observed (see the top of the file): they become ok operations that
 * complete with their earliest observer. Returns the number resolved, or -1
 * out of memory; when an observer completed before its write began, stores
 * the two ops in *@bad_write and *@bad_obs and returns 0. */
static int64_t resolve_unknowns(struct lin_op **ops, size_t n, uint64_t init, size_t *bad_write,
				size_t *bad_obs)
{
	struct writer *w = aep_calloc(n + 1, sizeof(*w));
	int64_t *bound = aep_calloc(n + 1, sizeof(*bound));
	size_t *by = aep_calloc(n + 1, sizeof(*by));
	size_t nw = 0, i;
	int64_t resolved = -1;

	*bad_write = *bad_obs = SIZE_MAX;
	if (w == NULL || bound == NULL || by == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		bound[i] = INT64_MAX;
		if (ops[i]->type == LIN_WRITE)
			w[nw++] = (struct writer){ops[i]->a, i};
		else if (ops[i]->type == LIN_CAS && ops[i]->status != LIN_FAIL)
			w[nw++] = (struct writer){ops[i]->b, i};
	}
	qsort(w, nw, sizeof(*w), writer_cmp);
	for (i = 0; i < n; i++) {
		const struct lin_op *op = ops[i];
		size_t k;

		if (op->status != LIN_OK || (op->type != LIN_READ && op->type != LIN_CAS) ||
		    op->a == init)
			continue;
		k = sole_writer(w, nw, op->a);
		if (k == SIZE_MAX || ops[k]->status != LIN_UNKNOWN || op->complete >= bound[k])
			continue;
		bound[k] = op->complete;
		by[k] = i;
	}
	resolved = 0;
	for (i = 0; i < n; i++) {
		if (bound[i] == INT64_MAX)
			continue;
		if (bound[i] < ops[i]->invoke) {
			*bad_write = i;
			*bad_obs = by[i];
			resolved = 0;
			goto out;
		}
		ops[i]->status = LIN_OK;
		ops[i]->complete = bound[i];
		ops[i]->resolved = true;
		resolved++;
	}
out:
	aep_free(w);
	aep_free(bound);
	aep_free(by);
	return resolved;
}

static int entry_cmp(const void *pa, const void *pb)
{
	const struct entry *a = pa, *b = pb;

	if (a->time != b->time)
		return a->time < b->time ? -1 : 1;
	/* At equal times calls come first: the operations overlap. */
	if (a->call != b->call)
		return a->call ? -1 : 1;
	return a->op < b->op ? -1 : (a->op > b->op ? 1 : 0);
}

static void lift(struct entry *e, size_t c)
{
	e[e[c].prev].next = e[c].next;
	if (e[c].next != SIZE_MAX)
		e[e[c].next].prev = e[c].prev;
	if (e[c].match != SIZE_MAX) {
		size_t r = e[c].match;

		e[e[r].prev].next = e[r].next;
		if (e[r].next != SIZE_MAX)
			e[e[r].next].prev = e[r].prev;
	}
}

static void unlift(struct entry *e, size_t c)
{
	if (e[c].match != SIZE_MAX) {
		size_t r = e[c].match;

		e[e[r].prev].next = r;
		if (e[r].next != SIZE_MAX)
			e[e[r].next].prev = r;
	}
	e[e[c].prev].next = c;
	if (e[c].next != SIZE_MAX)
		e[e[c].next].prev = c;
}

/* Searches one key's operations. Returns 1 linearizable, 0 not, -1 when the
 * search ran out of memory or over its limits. */
static int check_key(struct search *s, uint64_t init)
{
	size_t n = s->n, i, k, required = 0, done = 0, depth = 0;
	size_t *stack_entry = NULL;
	uint64_t *stack_state = NULL;
	uint64_t *bits = NULL;
	uint64_t state = init;
	size_t cur;
	int result = -1;

	s->words = (n + 63) / 64;
	s->e = aep_calloc(2 * n + 1, sizeof(*s->e));
	stack_entry = aep_calloc(n + 1, sizeof(*stack_entry));
	stack_state = aep_calloc(n + 1, sizeof(*stack_state));
	bits = aep_calloc(s->words + 1, sizeof(*bits));
	if (s->e == NULL || stack_entry == NULL || stack_state == NULL || bits == NULL)
		goto cleanup;

	/* Build the time-ordered list: every op calls; ops whose outcome is
	 * known also return (unknown ones stay pending forever). */
	k = 1;
	for (i = 0; i < n; i++) {
		s->e[k++] = (struct entry){.op = i, .call = true, .time = s->ops[i]->invoke};
		if (s->ops[i]->status != LIN_UNKNOWN) {
			s->e[k++] =
			    (struct entry){.op = i, .call = false, .time = s->ops[i]->complete};
			required++;
		}
	}
	s->ne = k;
	qsort(s->e + 1, s->ne - 1, sizeof(*s->e), entry_cmp);
	{
		size_t *call_of = aep_calloc(n + 1, sizeof(*call_of));

		if (call_of == NULL)
			goto cleanup;
		for (k = 1; k < s->ne; k++) {
			s->e[k].prev = k - 1;
			s->e[k].next = k + 1 < s->ne ? k + 1 : SIZE_MAX;
			s->e[k].match = SIZE_MAX;
			if (s->e[k].call)
				call_of[s->e[k].op] = k;
			else
				s->e[call_of[s->e[k].op]].match = k;
		}
		aep_free(call_of);
	}
	s->e[0].next = s->ne > 1 ? 1 : SIZE_MAX;
	s->e[0].prev = SIZE_MAX;

	s->best_done = 0;
	s->best_op = SIZE_MAX;
	s->best_nstates = 0;
	cur = s->e[0].next;
	while (done < required) {
		if (cur == SIZE_MAX) {
			/* Only pending unknown ops left that cannot be placed, yet a
			 * known op is still unplaced: impossible, its return would
			 * be in the list. Treat as a dead end. */
			goto backtrack;
		}
		if (s->e[cur].call) {
			const struct lin_op *op = s->ops[s->e[cur].op];
			uint64_t next;
			size_t o = s->e[cur].op;

			if (step(op, state, &next)) {
				int added;

				bits[o / 64] |= 1ull << (o % 64);
				added = cache_add(s, bits, next);
				if (added < 0)
					goto cleanup;
				if (added == 1) {
					stack_entry[depth] = cur;
					stack_state[depth] = state;
					depth++;
					if (op->status != LIN_UNKNOWN)
						done++;
					state = next;
					lift(s->e, cur);
					cur = s->e[0].next;
					continue;
				}
				bits[o / 64] &= ~(1ull << (o % 64));
			}
			cur = s->e[cur].next;
			continue;
		}
		/* A return: the op must already be placed; record and back up. */
		if (done >= s->best_done) {
			if (done > s->best_done || s->best_op != s->e[cur].op)
				s->best_nstates = 0;
			s->best_done = done;
			s->best_op = s->e[cur].op;
			for (k = 0; k < s->best_nstates && s->best_states[k] != state; k++)
				;
			if (k == s->best_nstates && k < 8)
				s->best_states[s->best_nstates++] = state;
		}
	backtrack:
		if (depth == 0) {
			result = 0;
			goto cleanup;
		}
		depth--;
		cur = stack_entry[depth];
		state = stack_state[depth];
		{
			size_t o = s->e[cur].op;

			bits[o / 64] &= ~(1ull << (o % 64));
			if (s->ops[o]->status != LIN_UNKNOWN)
				done--;
		}
		unlift(s->e, cur);
		cur = s->e[cur].next;
	}
	result = 1;
cleanup:
	aep_free(stack_entry);
	aep_free(stack_state);
	aep_free(bits);
	return result;
}

static const char *type_name(enum lin_type t)
{
	return t == LIN_READ ? "read" : (t == LIN_WRITE ? "write" : "cas");
}

static const char *status_name(enum lin_status st)
{
	return st == LIN_OK ? "ok" : (st == LIN_FAIL ? "fail" : "unknown");
}

static int key_cmp(const void *pa, const void *pb)
{
	const struct lin_op *const *a = pa, *const *b = pb;

	if ((*a)->key != (*b)->key)
		return (*a)->key < (*b)->key ? -1 : 1;
	return (*a)->line < (*b)->line ? -1 : ((*a)->line > (*b)->line ? 1 : 0);
}

static void print_op(const char *what, const struct lin_op *op)
{
	printf("%sop %" PRIu64 " (line %zu: %s %" PRIu64 " %" PRIu64 " [%" PRId64 ", %" PRId64
	       "] %s%s)",
	       what, op->id, op->line, type_name((enum lin_type)op->type), op->a, op->b, op->invoke,
	       op->complete, status_name((enum lin_status)op->status),
	       op->resolved ? ", was unknown" : "");
}

int main(int argc, char **argv)
{
	struct history h = {0};
	struct lin_op **sorted = NULL;
	FILE *in = stdin;
	size_t max_states = 20000000, i, j, nkeys = 0, nresolved = 0, most_states = 0;
	size_t longest = 0;
	bool all = true, over = false, quiet = false;
	int status = 2;

	for (i = 1; i < (size_t)argc; i++) {
		if (strcmp(argv[i], "--max-states") == 0 && i + 1 < (size_t)argc) {
			max_states = strtoull(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--quiet") == 0) {
			quiet = true;
		} else if (argv[i][0] != '-' && in == stdin) {
			in = fopen(argv[i], "r");
			if (in == NULL) {
				perror(argv[i]);
				return 2;
			}
		} else {
			fprintf(stderr,
				"usage: aep-linearize [--quiet] [--max-states N] [HISTORY]\n");
			return 2;
		}
	}
	if (history_read(&h, in) != 0)
		goto cleanup;
	/* Ops that certainly did not happen and reads that saw nothing carry
	 * no information: leave them out of the search. */
	sorted = aep_calloc(h.n + 1, sizeof(*sorted));
	if (sorted == NULL)
		goto cleanup;
	for (i = 0, j = 0; i < h.n; i++) {
		struct lin_op *op = &h.ops[i];

		if (op->type == LIN_READ && op->status != LIN_OK)
			continue;
		if (op->type == LIN_WRITE && op->status == LIN_FAIL)
			continue;
		sorted[j++] = op;
	}
	qsort(sorted, j, sizeof(*sorted), key_cmp);
	for (i = 0; i < j;) {
		struct search s = {.ops = sorted + i};
		const struct lin_key *key = &h.keys[sorted[i]->key];
		size_t bad_write, bad_obs, per_state;
		int64_t resolved;
		int r;

		while (i + s.n < j && sorted[i + s.n]->key == sorted[i]->key)
			s.n++;
		/* Memoisation holds one bit per op per state: keep it in bounds. */
		per_state = ((s.n + 63) / 64) * sizeof(uint64_t) + 2 * sizeof(struct cache_slot);
		s.max_states = LIN_CACHE_BYTES / per_state;
		if (s.max_states > max_states)
			s.max_states = max_states;
		resolved = resolve_unknowns(s.ops, s.n, key->init, &bad_write, &bad_obs);
		if (resolved < 0) {
			r = -1;
		} else if (bad_write != SIZE_MAX) {
			r = 0;
		} else {
			nresolved += (size_t)resolved;
			r = check_key(&s, key->init);
		}
		nkeys++;
		if (s.used > most_states)
			most_states = s.used;
		if (s.n > longest)
			longest = s.n;
		if (!quiet || r != 1)
			printf("key=%s ops=%zu resolved=%" PRId64 " states=%zu linearizable=%s\n",
			       key->name, s.n, resolved, s.used,
			       r == 1 ? "yes" : (r == 0 ? "no" : "unknown"));
		if (r == 0 && bad_write != SIZE_MAX) {
			print_op("  ", s.ops[bad_write]);
			print_op(" was observed by ", s.ops[bad_obs]);
			printf(", which completed before it began\n");
		} else if (r == 0 && s.best_op != SIZE_MAX) {
			char what[96];

			snprintf(what, sizeof(what),
				 "  after %zu operations placed, no order places ", s.best_done);
			print_op(what, s.ops[s.best_op]);
			printf("; register could hold:");
			for (size_t k = 0; k < s.best_nstates; k++)
				printf(" %" PRIu64, s.best_states[k]);
			printf("\n");
		}
		if (r == 0)
			all = false;
		if (r < 0)
			over = true;
		search_free(&s);
		i += s.n;
	}
	printf("keys=%zu ops=%zu searched=%zu resolved=%zu longest=%zu most-states=%zu\n", nkeys,
	       h.n, j, nresolved, longest, most_states);
	printf("linearizable=%s\n", !all ? "no" : (over ? "unknown" : "yes"));
	status = !all ? 1 : (over ? 2 : 0);
cleanup:
	if (in != stdin)
		fclose(in);
	aep_free(sorted);
	history_free(&h);
	return status;
}
