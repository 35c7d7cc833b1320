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
 * The history is split by key (linearizability is compositional) and each
 * key is searched on its own. Output: one line per key, then
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

#define LIN_KEY_MAX  128
#define LIN_LINE_MAX 512
#define LIN_OPS_MAX  (1u << 24)

enum lin_type { LIN_READ, LIN_WRITE, LIN_CAS };
enum lin_status { LIN_OK, LIN_FAIL, LIN_UNKNOWN };

struct lin_op {
	char key[LIN_KEY_MAX];
	char id[LIN_KEY_MAX];
	enum lin_type type;
	enum lin_status status;
	uint64_t a, b;
	int64_t invoke, complete;
	size_t line;
};

struct lin_init {
	char key[LIN_KEY_MAX];
	uint64_t value;
};

struct history {
	struct lin_op *ops;
	size_t n, cap;
	struct lin_init *inits;
	size_t ninit, capinit;
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
	const struct lin_op **ops;
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

static int history_init(struct history *h, const char *key, uint64_t value)
{
	if (h->ninit == h->capinit) {
		size_t cap = h->capinit ? h->capinit * 2 : 16;
		struct lin_init *in;

		if (cap > LIN_OPS_MAX)
			return -1;
		in = aep_realloc(h->inits, cap * sizeof(*in));
		if (in == NULL)
			return -1;
		h->inits = in;
		h->capinit = cap;
	}
	snprintf(h->inits[h->ninit].key, LIN_KEY_MAX, "%s", key);
	h->inits[h->ninit++].value = value;
	return 0;
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

			if (parse_u64(f[2], &v) != 0 || history_init(h, f[1], v) != 0)
				goto bad;
			continue;
		}
		if (strcmp(f[0], "op") != 0 || nf != 9)
			goto bad;
		memset(&op, 0, sizeof(op));
		snprintf(op.id, sizeof(op.id), "%s", f[1]);
		snprintf(op.key, sizeof(op.key), "%s", f[2]);
		if (strcmp(f[3], "read") == 0)
			op.type = LIN_READ;
		else if (strcmp(f[3], "write") == 0)
			op.type = LIN_WRITE;
		else if (strcmp(f[3], "cas") == 0)
			op.type = LIN_CAS;
		else
			goto bad;
		if (parse_u64(f[4], &op.a) != 0 || parse_u64(f[5], &op.b) != 0 ||
		    parse_i64(f[6], &op.invoke) != 0 || parse_status(f[8], &op.status) != 0)
			goto bad;
		if (op.status == LIN_UNKNOWN)
			op.complete = INT64_MAX;
		else if (parse_i64(f[7], &op.complete) != 0 || op.complete < op.invoke)
			goto bad;
		op.line = lineno;
		if (history_push(h, &op) != 0) {
			fprintf(stderr, "line %zu: out of memory or too many operations\n", lineno);
			return -1;
		}
		continue;
	bad:
		fprintf(stderr, "line %zu: malformed record\n", lineno);
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
	int c = strcmp((*a)->key, (*b)->key);

	if (c != 0)
		return c;
	return (*a)->line < (*b)->line ? -1 : 1;
}

int main(int argc, char **argv)
{
	struct history h = {0};
	const struct lin_op **sorted = NULL;
	FILE *in = stdin;
	size_t max_states = 20000000, i, j;
	bool all = true, over = false;
	int status = 2;

	for (i = 1; i < (size_t)argc; i++) {
		if (strcmp(argv[i], "--max-states") == 0 && i + 1 < (size_t)argc) {
			max_states = strtoull(argv[++i], NULL, 10);
		} else if (argv[i][0] != '-' && in == stdin) {
			in = fopen(argv[i], "r");
			if (in == NULL) {
				perror(argv[i]);
				return 2;
			}
		} else {
			fprintf(stderr, "usage: aep-linearize [--max-states N] [HISTORY]\n");
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
		const struct lin_op *op = &h.ops[i];

		if (op->type == LIN_READ && op->status != LIN_OK)
			continue;
		if (op->type == LIN_WRITE && op->status == LIN_FAIL)
			continue;
		sorted[j++] = op;
	}
	qsort(sorted, j, sizeof(*sorted), key_cmp);
	for (i = 0; i < j;) {
		struct search s = {.ops = sorted + i, .max_states = max_states};
		uint64_t init = 0;
		size_t k;
		int r;

		while (i + s.n < j && strcmp(sorted[i + s.n]->key, sorted[i]->key) == 0)
			s.n++;
		for (k = 0; k < h.ninit; k++)
			if (strcmp(h.inits[k].key, sorted[i]->key) == 0)
				init = h.inits[k].value;
		r = check_key(&s, init);
		printf("key=%s ops=%zu states=%zu linearizable=%s\n", sorted[i]->key, s.n, s.used,
		       r == 1 ? "yes" : (r == 0 ? "no" : "unknown"));
		if (r == 0 && s.best_op != SIZE_MAX) {
			const struct lin_op *op = s.ops[s.best_op];

			printf("  after %zu operations placed, no order places op %s "
			       "(line %zu: %s %" PRIu64 " %" PRIu64 " [%" PRId64 ", %" PRId64
			       "] %s); register could hold:",
			       s.best_done, op->id, op->line, type_name(op->type), op->a, op->b,
			       op->invoke, op->complete, status_name(op->status));
			for (k = 0; k < s.best_nstates; k++)
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
	printf("linearizable=%s\n", !all ? "no" : (over ? "unknown" : "yes"));
	status = !all ? 1 : (over ? 2 : 0);
cleanup:
	if (in != stdin)
		fclose(in);
	aep_free(sorted);
	aep_free(h.ops);
	aep_free(h.inits);
	return status;
}
