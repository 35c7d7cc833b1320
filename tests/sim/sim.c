/* aep-sim: deterministic simulation of AEP's replicated state machine.
 *
 * Each seed builds a 3- or 5-peer cluster on libraft's fixture
 * (raft/fixture.h: the real Raft algorithm over an in-memory network, disk
 * and clock), gives every peer its own aep_store as the state machine, and
 * drives it with random client requests and random faults. All randomness
 * comes from one PRNG seeded with the seed, and the fixture's clock is
 * simulated, so a seed replays exactly.
 *
 * Clients submit entries (batches of 1-3 commands: creates of pods and
 * namespaces from a small name space so AlreadyExists and NotFound happen,
 * updates with a precondition taken from the client's last acknowledged
 * result, deletes, member records) with raft_apply() on a peer that
 * believes it leads, and read with raft_barrier() followed by a look at
 * that peer's store. Faults: link cuts, one-way drops, partitions, kill and
 * revive, network and disk latency, I/O errors, forced elections
 * (raft_fixture_depose + raft_fixture_elect) and reshuffled election
 * timeouts.
 *
 * Checks, as they happen:
 *  - at most one leader per term, over the whole run; an index a leader
 *    reports committed is held by a majority of the peers' logs;
 *  - every peer applies the same entry bytes, with the same per-command
 *    results, at every index; peers that snapshot at the same index produce
 *    identical snapshot bytes;
 *  - a reference model, fed with the applied log in index order, predicts
 *    every command's outcome (code and revision): so a stale precondition
 *    that succeeds, a lost create or a phantom object is caught at the
 *    index where it happens;
 *  - an entry refused by raft_apply() is never applied, no entry is applied
 *    twice, an acknowledged entry is the one applied at its index;
 *  - a linearizable read (barrier on the leader) sees every write
 *    acknowledged before it started, and that peer's store equals the model
 *    at its applied index; followers' stores are compared the same way.
 * At the end every fault is healed and the cluster runs until all peers
 * have applied the same last index; then all stores' snapshot bytes must be
 * identical and equal to the model, every acknowledged write must be in
 * the log, every request must have had its callback, and for every object
 * the last acknowledged write is what the store holds unless a later
 * applied write (acknowledged or not: a "maybe") changed it.
 *
 * Entries and snapshots are framed by raft/frame.c, as a real peer frames
 * them: an 8-byte "AEP1" + 32-bit little-endian length header, the batch,
 * zero padding to 8 bytes; snapshots start with "AEPSNAP1".
 *
 * Limits of the fixture (libraft 0.15): kill/revive cut a peer off and
 * stop its clock but keep its memory (there is no crash-restart from
 * disk), and a peer whose I/O fails may turn RAFT_UNAVAILABLE for good; so
 * I/O faults go only to a minority of peers chosen per seed, and final
 * checks skip unavailable peers. The fixture completes a peer's disk
 * writes by completion time, so a latency drop is held back until the peer
 * has no write in flight: a real log never reorders its writes.
 *
 * Usage: aep-sim --seed N [--peers 3|5] [--steps K] [--raw-io] [-v]
 *        aep-sim --seeds A-B [--peers 3|5|3,5] [--steps K] [--raw-io]
 * --raw-io leaves out the workarounds for the libraft 0.15 bugs described
 * under "libraft workarounds" below, to reproduce them.
 * A failing seed prints "FAIL seed=N: ..." and the command that replays
 * it; the exit status is 1 if any seed failed. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <raft.h>
#include <raft/fixture.h>

#include "lib/lib.h"
#include "raft/raft-int.h"
#include "state/state.h"

#if defined(__SANITIZE_ADDRESS__)
#define SIM_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIM_SANITIZER 1
#endif
#endif
#ifdef SIM_SANITIZER
#include <sanitizer/common_interface_defs.h>
#endif

#define SIM_PEERS_MAX	  5
#define SIM_CLIENTS	  3
#define SIM_OPS_MAX	  3 /* commands per entry */
#define SIM_STEPS	  600
#define SIM_SNAP_THRESH	  32
#define SIM_SNAP_TRAILING 8
#define SIM_ELECTION_MS	  1000 /* the fixture's default, required by raft_fixture_depose */
#define SIM_NOW_BASE	  INT64_C(1767225600000000000) /* 2026-01-01T00:00:00Z */
#define SIM_HEAL_MS	  60000
#define SIM_MEMBERS	  3

/* ---- the key space ------------------------------------------------------ */

struct key_def {
	enum aep_kind kind;
	const char *ns;
	const char *name;
	bool hot; /* a compare-and-set register: most updates go here */
};

static const struct key_def key_defs[] = {
    {AEP_KIND_NAMESPACE, "", "sim-a", false}, {AEP_KIND_NAMESPACE, "", "sim-b", false},
    {AEP_KIND_POD, "default", "hot0", true},  {AEP_KIND_POD, "default", "hot1", true},
    {AEP_KIND_POD, "default", "p0", false},   {AEP_KIND_POD, "default", "p1", false},
    {AEP_KIND_POD, "default", "p2", false},   {AEP_KIND_POD, "sim-a", "p0", false},
    {AEP_KIND_POD, "sim-a", "p1", false},     {AEP_KIND_POD, "sim-b", "p0", false},
    {AEP_KIND_POD, "sim-b", "p1", false},
};
#define NKEYS	  (sizeof(key_defs) / sizeof(key_defs[0]))
#define NNS_KEYS  2 /* the first keys are the namespaces sim-a, sim-b */
#define NHOT_KEYS 2 /* then the hot pods */

/* One version of a key in the model: what the applied log made of it. */
struct version {
	raft_index index;
	uint64_t rv;
	uint32_t tag;
	bool present;
};

struct key {
	struct version *hist; /* in index order */
	size_t n, cap;
	/* the acknowledged write with the highest index (client view) */
	raft_index acked_index;
	uint64_t acked_rv;
	uint32_t acked_tag;
	bool acked_present;
};

/* ---- requests ----------------------------------------------------------- */

struct op {
	enum aep_op op;
	unsigned key; /* key_defs index; member number for AEP_OP_MEMBER */
	uint64_t precond;
	uint32_t tag;
	/* outcome, from the applied log */
	int code;
	uint64_t rv;
};

enum req_state {
	REQ_PENDING, /* raft_apply() took it, no callback yet */
	REQ_ACKED,   /* callback with status 0 */
	REQ_FAILED,  /* callback with an error: outcome unknown */
	REQ_REFUSED, /* raft_apply() failed: never written */
};

struct sim;

struct req {
	struct raft_apply apply;
	struct sim *sim;
	unsigned id;
	unsigned client;
	unsigned peer;
	raft_index index; /* from raft_apply() */
	uint64_t hash;	  /* of the framed entry */
	enum req_state state;
	int status;
	raft_index applied; /* where it was applied, 0 if not (yet) */
	unsigned nops;
	struct op ops[SIM_OPS_MAX];
};

struct read {
	struct raft_barrier barrier;
	struct sim *sim;
	unsigned peer;
	unsigned client;
	raft_index need; /* highest acknowledged index when the read started */
	bool done;
	int status;
	bool final; /* the barrier of the heal phase */
};

/* What the applied log holds at one index (first application wins, later
 * ones must match). */
struct slot {
	bool set;
	bool snap_set;
	uint64_t hash;
	uint64_t res; /* hash of the store's results */
	uint64_t snap;
	int req; /* request id, -1 if none matched */
};

struct peer {
	struct sim *sim;
	unsigned i;
	struct raft_fsm fsm;
	struct aep_store *store;
	unsigned applies, snapshots, restores;
};

struct member_model {
	bool present;
	uint32_t tag;
};

struct sim {
	struct raft_fixture f;
	uint64_t seed;
	unsigned n;
	unsigned steps;
	bool verbose;
	uint64_t rng;

	struct peer peers[SIM_PEERS_MAX];
	bool dead[SIM_PEERS_MAX];
	bool cut[SIM_PEERS_MAX][SIM_PEERS_MAX];	 /* symmetric link cut */
	bool drop[SIM_PEERS_MAX][SIM_PEERS_MAX]; /* one-way: i -> j dropped */
	bool faulty[SIM_PEERS_MAX];		 /* may get I/O errors */
	/* Disk latency: the fixture completes a peer's appends by completion
	 * time, so lowering the latency under queued writes would complete a
	 * later write first, which a real disk log (raft_uv writes in order)
	 * never does and libraft does not expect (its last_stored goes back).
	 * A decrease therefore waits until the peer has no append in flight. */
	unsigned disk_ms[SIM_PEERS_MAX];
	unsigned disk_next_ms[SIM_PEERS_MAX]; /* 0: no decrease waiting */
	int (*orig_append)(struct raft_io *, struct raft_io_append *, const struct raft_entry[],
			   unsigned, raft_io_append_cb);
	struct inflight_append {
		struct raft_io_append *req;
		raft_io_append_cb cb;
		unsigned peer;
	} * appends;
	size_t nappends, capappends;
	unsigned appends_pending[SIM_PEERS_MAX];

	raft_id *term_leader;
	size_t nterms;

	struct slot *log;
	size_t nlog;
	raft_index model_index; /* last index fed to the model */
	struct key keys[NKEYS];
	struct member_model members[SIM_MEMBERS];

	struct req **reqs;
	size_t nreqs, capreqs;
	struct read **reads;
	size_t nreads, capreads;

	uint64_t known[SIM_CLIENTS][NKEYS]; /* each client's last seen rv, 0 = absent */
	raft_index acked_max;
	uint32_t next_tag;

	/* the fixture's own I/O methods, wrapped (see "libraft workarounds") */
	bool raw_io;
	int (*orig_send)(struct raft_io *, struct raft_io_send *, const struct raft_message *,
			 raft_io_send_cb);
	int (*orig_truncate)(struct raft_io *, raft_index);
	int (*orig_start)(struct raft_io *, unsigned, raft_io_tick_cb, raft_io_recv_cb);
	raft_io_recv_cb recv_cb;		 /* libraft's */
	struct raft__match match[SIM_PEERS_MAX]; /* raft/io.c's rules, per peer */
	struct deferred_send *deferred;
	size_t ndeferred, capdeferred;
	unsigned n_send_errors;

	bool closing;
	bool failed;
	char why[1024];

	/* statistics */
	unsigned n_acked, n_failed, n_refused, n_reads, n_reads_ok;
	unsigned n_kills, n_partitions, n_io_faults, n_elections, n_cuts;
	unsigned n_unavailable;
};

struct deferred_send {
	struct raft_io_send *req;
	raft_io_send_cb cb;
	int status;
};

static char crash_msg[512]; /* written by the crash handlers */
static struct sim *cur_sim; /* the running seed, for the I/O wrappers */

/* ---- helpers ------------------------------------------------------------ */

static void fail(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct sim *s, const char *fmt, ...)
{
	va_list ap;
	if (s->failed || s->closing)
		return;
	s->failed = true;
	va_start(ap, fmt);
	vsnprintf(s->why, sizeof(s->why), fmt, ap);
	va_end(ap);
}

static void note(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct sim *s, const char *fmt, ...)
{
	va_list ap;
	if (!s->verbose)
		return;
	fprintf(stderr, "[%6llu ms] ", (unsigned long long)s->f.time);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* splitmix64: the only source of randomness. */
static uint64_t rnd(struct sim *s)
{
	uint64_t z = (s->rng += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static unsigned below(struct sim *s, unsigned n)
{
	return n > 0 ? (unsigned)(rnd(s) % n) : 0;
}

/* True with probability @per_mille / 1000. */
static bool chance(struct sim *s, unsigned per_mille)
{
	return below(s, 1000) < per_mille;
}

static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

#define FNV_INIT UINT64_C(0xcbf29ce484222325)

static struct raft *peer_raft(struct sim *s, unsigned i)
{
	return raft_fixture_get(&s->f, i);
}

static bool available(struct sim *s, unsigned i)
{
	return raft_state(peer_raft(s, i)) != RAFT_UNAVAILABLE;
}

static const char *op_name(enum aep_op op)
{
	switch (op) {
	case AEP_OP_CREATE: return "create";
	case AEP_OP_UPDATE: return "update";
	case AEP_OP_DELETE: return "delete";
	case AEP_OP_MEMBER: return "member";
	case AEP_OP_BIND: return "bind";
	}
	return "?";
}

static void key_str(unsigned k, char *buf, size_t size)
{
	const struct key_def *d = &key_defs[k];
	if (d->kind == AEP_KIND_NAMESPACE)
		snprintf(buf, size, "namespace %s", d->name);
	else
		snprintf(buf, size, "pod %s/%s", d->ns, d->name);
}

/* ---- the applied log ---------------------------------------------------- */

static struct slot *slot_at(struct sim *s, raft_index index)
{
	if (index >= s->nlog) {
		size_t n = s->nlog ? s->nlog : 256;
		while (n <= index)
			n *= 2;
		struct slot *l = aep_realloc(s->log, n * sizeof(*l));
		if (l == NULL) {
			fprintf(stderr, "aep-sim: out of memory\n");
			exit(2);
		}
		memset(l + s->nlog, 0, (n - s->nlog) * sizeof(*l));
		s->log = l;
		s->nlog = n;
	}
	return &s->log[index];
}

static struct req *req_by_hash(struct sim *s, uint64_t hash)
{
	for (size_t i = s->nreqs; i-- > 0;)
		if (s->reqs[i]->hash == hash)
			return s->reqs[i];
	return NULL;
}

/* ---- the model ---------------------------------------------------------- */

static const struct version *version_at(const struct key *k, raft_index at)
{
	const struct version *v = NULL;
	for (size_t i = 0; i < k->n && k->hist[i].index <= at; i++)
		v = &k->hist[i];
	return v;
}

static const struct version *version_now(const struct key *k)
{
	return k->n > 0 ? &k->hist[k->n - 1] : NULL;
}

static bool present_now(struct sim *s, unsigned key)
{
	const struct version *v = version_now(&s->keys[key]);
	return v != NULL && v->present;
}

static void version_push(struct sim *s, unsigned key, raft_index index, uint64_t rv, uint32_t tag,
			 bool present)
{
	struct key *k = &s->keys[key];
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 16;
		struct version *h = aep_realloc(k->hist, cap * sizeof(*h));
		if (h == NULL) {
			fprintf(stderr, "aep-sim: out of memory\n");
			exit(2);
		}
		k->hist = h;
		k->cap = cap;
	}
	k->hist[k->n++] = (struct version){index, rv, tag, present};
}

static bool ns_exists(struct sim *s, const char *ns)
{
	if (strcmp(ns, "default") == 0 || strcmp(ns, "kube-system") == 0)
		return true;
	for (unsigned k = 0; k < NNS_KEYS; k++)
		if (strcmp(key_defs[k].name, ns) == 0)
			return present_now(s, k);
	return false;
}

static bool ns_in_use(struct sim *s, const char *ns)
{
	for (unsigned k = NNS_KEYS; k < NKEYS; k++)
		if (strcmp(key_defs[k].ns, ns) == 0 && present_now(s, k))
			return true;
	return false;
}

/* What the store must answer for @op at (@index, @pos), given every entry
 * before it; a success is recorded in the model. */
static void model_apply(struct sim *s, const struct op *op, raft_index index, unsigned pos,
			int *code, uint64_t *rv)
{
	uint64_t new_rv = AEP_REV(index, pos);
	*rv = 0;
	if (op->op == AEP_OP_MEMBER) {
		s->members[op->key].present = true;
		s->members[op->key].tag = op->tag;
		*code = 0;
		return;
	}
	const struct key_def *d = &key_defs[op->key];
	const struct version *v = version_now(&s->keys[op->key]);
	bool present = v != NULL && v->present;
	switch (op->op) {
	case AEP_OP_CREATE:
		if (d->kind == AEP_KIND_POD && !ns_exists(s, d->ns)) {
			*code = AEP_ENOTFOUND;
		} else if (present) {
			*code = AEP_EEXISTS;
		} else {
			*code = 0;
			*rv = new_rv;
			version_push(s, op->key, index, new_rv, op->tag, true);
		}
		return;
	case AEP_OP_UPDATE:
		if (!present) {
			*code = AEP_ENOTFOUND;
		} else if (op->precond != 0 && op->precond != v->rv) {
			*code = AEP_ECONFLICT;
		} else {
			*code = 0;
			*rv = new_rv;
			version_push(s, op->key, index, new_rv, op->tag, true);
		}
		return;
	case AEP_OP_DELETE:
		if (!present) {
			*code = AEP_ENOTFOUND;
		} else if (op->precond != 0 && op->precond != v->rv) {
			*code = AEP_ECONFLICT;
		} else if (d->kind == AEP_KIND_NAMESPACE && ns_in_use(s, d->name)) {
			*code = AEP_ECONFLICT;
		} else {
			*code = 0;
			*rv = new_rv;
			version_push(s, op->key, index, new_rv, v->tag, false);
		}
		return;
	case AEP_OP_MEMBER:
	case AEP_OP_BIND: break; /* not generated by this workload */
	}
}

/* The label "v" of @o ("t<tag>"), or -1. */
static int64_t obj_tag(const struct aep_object *o)
{
	for (size_t i = 0; i < o->meta.nlabels; i++) {
		if (strcmp(o->meta.labels[i].key, "v") == 0) {
			const char *v = o->meta.labels[i].value;
			if (v[0] != 't')
				return -1;
			return strtoll(v + 1, NULL, 10);
		}
	}
	return -1;
}

/* Compare the store of peer @p with the model as of index @at. */
static void check_store(struct sim *s, unsigned p, raft_index at, const char *when)
{
	struct aep_store *st = s->peers[p].store;
	size_t pods = 0, nss = 2;
	char kb[128];

	if (s->failed)
		return;
	for (unsigned k = 0; k < NKEYS; k++) {
		const struct key_def *d = &key_defs[k];
		const struct version *v = version_at(&s->keys[k], at);
		bool want = v != NULL && v->present;
		struct aep_object *o = aep_store_get(st, d->kind, d->ns, d->name);
		key_str(k, kb, sizeof(kb));
		if (want && d->kind == AEP_KIND_POD)
			pods++;
		else if (want)
			nss++;
		if (o == NULL && want) {
			fail(s,
			     "%s: peer %u at index %llu: %s missing (model: rv %llu from index "
			     "%llu)",
			     when, p, (unsigned long long)at, kb, (unsigned long long)v->rv,
			     (unsigned long long)v->index);
			return;
		}
		if (o != NULL && !want) {
			fail(
			    s,
			    "%s: peer %u at index %llu: %s present with rv %llu, model says absent",
			    when, p, (unsigned long long)at, kb, (unsigned long long)o->meta.rv);
			aep_object_unref(o);
			return;
		}
		if (o == NULL)
			continue;
		if (o->meta.rv != v->rv || obj_tag(o) != (int64_t)v->tag) {
			fail(s,
			     "%s: peer %u at index %llu: %s has rv %llu tag %lld, model rv %llu "
			     "tag %u",
			     when, p, (unsigned long long)at, kb, (unsigned long long)o->meta.rv,
			     (long long)obj_tag(o), (unsigned long long)v->rv, v->tag);
			aep_object_unref(o);
			return;
		}
		aep_object_unref(o);
	}
	if (aep_store_count(st, AEP_KIND_POD) != pods ||
	    aep_store_count(st, AEP_KIND_NAMESPACE) != nss)
		fail(s, "%s: peer %u at index %llu: %zu pods and %zu namespaces, model %zu and %zu",
		     when, p, (unsigned long long)at, aep_store_count(st, AEP_KIND_POD),
		     aep_store_count(st, AEP_KIND_NAMESPACE), pods, nss);
}

/* ---- the state machine -------------------------------------------------- */

/* The batch inside @buf, or false for one that raft/frame.c did not frame
 * (or that libraft handed back with a length not a multiple of 8). */
static bool entry_unframe(const struct raft_buffer *buf, const char **data, size_t *len)
{
	return buf->len % 8 == 0 && raft__entry_unframe(buf, data, len);
}

static uint64_t results_hash(const struct aep_result *res, size_t n)
{
	uint64_t h = FNV_INIT;
	for (size_t i = 0; i < n; i++) {
		h = fnv(h, &res[i].code, sizeof(res[i].code));
		h = fnv(h, &res[i].rv, sizeof(res[i].rv));
		if (res[i].obj != NULL)
			h = fnv(h, res[i].obj->data, res[i].obj->len);
		if (res[i].msg != NULL)
			h = fnv(h, res[i].msg, strlen(res[i].msg));
	}
	return h;
}

/* The first application of @index anywhere: feed the model, compare its
 * predictions with what the store answered. */
static void first_apply(struct sim *s, unsigned p, raft_index index, struct slot *sl,
			const struct aep_result *res, size_t nres)
{
	struct req *rq = req_by_hash(s, sl->hash);
	char kb[128];

	if (index <= s->model_index) {
		fail(s, "peer %u applied index %llu first, after the model reached %llu", p,
		     (unsigned long long)index, (unsigned long long)s->model_index);
		return;
	}
	s->model_index = index;
	if (rq == NULL) {
		fail(s, "peer %u applied an entry at index %llu that no client submitted", p,
		     (unsigned long long)index);
		return;
	}
	sl->req = (int)rq->id;
	if (rq->state == REQ_REFUSED) {
		fail(s, "request %u was refused by raft_apply() (%s) yet applied at index %llu",
		     rq->id, raft_strerror(rq->status), (unsigned long long)index);
		return;
	}
	if (rq->applied != 0) {
		fail(s, "request %u applied twice: at index %llu and %llu", rq->id,
		     (unsigned long long)rq->applied, (unsigned long long)index);
		return;
	}
	if (rq->index != index) {
		fail(s, "request %u got index %llu from raft_apply() but was applied at %llu",
		     rq->id, (unsigned long long)rq->index, (unsigned long long)index);
		return;
	}
	rq->applied = index;
	if (nres != rq->nops) {
		fail(s, "index %llu: the store gave %zu results for %u commands",
		     (unsigned long long)index, nres, rq->nops);
		return;
	}
	for (unsigned i = 0; i < rq->nops; i++) {
		struct op *op = &rq->ops[i];
		int code = 0;
		uint64_t rv = 0;
		const struct version *before =
		    op->op == AEP_OP_MEMBER ? NULL : version_now(&s->keys[op->key]);
		uint64_t cur = before != NULL && before->present ? before->rv : 0;
		uint32_t cur_tag = before != NULL ? before->tag : 0; /* model_apply may move it */
		model_apply(s, op, index, i, &code, &rv);
		op->code = res[i].code;
		op->rv = res[i].rv;
		if (op->op == AEP_OP_MEMBER)
			snprintf(kb, sizeof(kb), "member m%u", op->key);
		else
			key_str(op->key, kb, sizeof(kb));
		if (res[i].code != code || (code == 0 && res[i].rv != rv)) {
			fail(s,
			     "index %llu command %u (%s %s, precondition %llu): the store says %s "
			     "rv %llu (%s), the model says %s rv %llu (current rv %llu)%s",
			     (unsigned long long)index, i, op_name(op->op), kb,
			     (unsigned long long)op->precond, aep_err_code(res[i].code),
			     (unsigned long long)res[i].rv, res[i].msg ? res[i].msg : "",
			     aep_err_code(code), (unsigned long long)rv, (unsigned long long)cur,
			     code == AEP_ECONFLICT && res[i].code == 0
				 ? ": a stale precondition was not honoured"
				 : "");
			return;
		}
		if (code != 0 || op->op == AEP_OP_MEMBER)
			continue;
		const struct aep_object *o = res[i].obj;
		const struct key_def *d = &key_defs[op->key];
		int64_t want_tag = op->op == AEP_OP_DELETE ? (int64_t)cur_tag : op->tag;
		if (o == NULL || o->meta.rv != rv || o->kind != d->kind ||
		    strcmp(o->meta.name, d->name) != 0 || strcmp(o->meta.ns, d->ns) != 0 ||
		    obj_tag(o) != want_tag) {
			fail(s, "index %llu command %u (%s %s): the result's object is wrong",
			     (unsigned long long)index, i, op_name(op->op), kb);
			return;
		}
	}
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct peer *pe = fsm->data;
	struct sim *s = pe->sim;
	raft_index index = raft_last_applied(peer_raft(s, pe->i)) + 1;
	struct aep_result *res = NULL;
	size_t nres = 0, len;
	const char *data;
	int rv;

	*result = NULL;
	pe->applies++;
	if (!entry_unframe(buf, &data, &len)) {
		fail(s, "peer %u: the entry at index %llu is not an AEP entry", pe->i,
		     (unsigned long long)index);
		return 0;
	}
	if (aep_store_applied_index(pe->store) >= index) {
		fail(s, "peer %u: libraft applies index %llu but the store is at %llu", pe->i,
		     (unsigned long long)index,
		     (unsigned long long)aep_store_applied_index(pe->store));
		return 0;
	}
	rv = aep_store_apply(pe->store, index, data, len, &res, &nres);
	if (rv != 0) {
		fail(s, "peer %u: aep_store_apply(index %llu) failed: %s", pe->i,
		     (unsigned long long)index, aep_err_code(rv));
		return 0;
	}
	uint64_t hash = fnv(FNV_INIT, buf->base, buf->len);
	uint64_t rh = results_hash(res, nres);
	struct slot *sl = slot_at(s, index);
	if (!sl->set) {
		sl->set = true;
		sl->hash = hash;
		sl->res = rh;
		sl->req = -1;
		first_apply(s, pe->i, index, sl, res, nres);
	} else if (sl->hash != hash) {
		fail(s, "peer %u applied a different entry at index %llu than another peer did",
		     pe->i, (unsigned long long)index);
	} else if (sl->res != rh) {
		fail(s,
		     "peer %u: the same entry at index %llu gave different results than on "
		     "another peer (the store is not deterministic)",
		     pe->i, (unsigned long long)index);
	}
	for (size_t i = 0; i < nres; i++)
		aep_result_clear(&res[i]);
	aep_free(res);
	return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct peer *pe = fsm->data;
	struct sim *s = pe->sim;
	raft_index index = raft_last_applied(peer_raft(s, pe->i));
	struct aep_buf b;
	int rv;

	aep_buf_init(&b);
	rv = aep_store_snapshot(pe->store, &b);
	if (rv != 0) {
		fail(s, "peer %u: aep_store_snapshot failed: %s", pe->i, aep_err_code(rv));
		aep_buf_free(&b);
		return RAFT_NOMEM;
	}
	uint64_t h = fnv(FNV_INIT, b.data, b.len);
	struct slot *sl = slot_at(s, index);
	if (!sl->snap_set) {
		sl->snap_set = true;
		sl->snap = h;
	} else if (sl->snap != h) {
		fail(s, "peer %u: its snapshot at index %llu differs from another peer's", pe->i,
		     (unsigned long long)index);
	}
	rv = raft__snapshot_frame(b.data, b.len, bufs, n_bufs);
	aep_buf_free(&b);
	if (rv != 0)
		return rv;
	pe->snapshots++;
	return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	(void)fsm;
	raft__buffers_free(bufs, n_bufs);
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct peer *pe = fsm->data;
	struct sim *s = pe->sim;
	struct aep_error e = {0};
	const char *data;
	size_t len;
	int rv;

	if (!raft__snapshot_unframe(buf, &data, &len)) {
		fail(s, "peer %u: restore: not an AEP snapshot", pe->i);
		return RAFT_MALFORMED;
	}
	rv = aep_store_restore(pe->store, data, len, &e);
	if (rv != 0) {
		fail(s, "peer %u: aep_store_restore failed: %s: %s", pe->i, aep_err_code(rv),
		     e.msg);
		return RAFT_MALFORMED;
	}
	raft_free(buf->base);
	pe->restores++;
	note(s, "peer %u restored a snapshot at store index %llu", pe->i,
	     (unsigned long long)aep_store_applied_index(pe->store));
	return 0;
}

/* ---- libraft workarounds ------------------------------------------------ */

static unsigned io_peer(struct sim *s, struct raft_io *io)
{
	for (unsigned i = 0; i < s->n; i++)
		if (&s->f.servers[i].io == io)
			return i;
	fprintf(stderr, "aep-sim: unknown raft_io\n");
	exit(2);
}

/* The four libraft 0.15 bugs and the rules that work around them are
 * described in raft/io.c, which applies them to raft_uv in production. The
 * sim applies the same message rules (raft__match_*, one struct
 * raft__match per peer) to the fixture's I/O: recv_matching() on every
 * message received, send_deferring() on every message sent. Only the
 * fourth bug (a send that fails at once) is handled here, as the fixture
 * fails sends differently from raft_uv. */

/* Hand @m to libraft through raft/io.c's receive rules. */
static void recv_matching(struct raft_io *io, struct raft_message *m)
{
	struct sim *s = cur_sim;
	unsigned i = io_peer(s, io);
	struct raft *r = peer_raft(s, i);

	raft__match_recv_begin(&s->match[i], r, m);
	s->recv_cb(io, m);
	raft__match_recv_end(&s->match[i], r);
}

static int start_matching(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
			  raft_io_recv_cb recv)
{
	struct sim *s = cur_sim;
	s->recv_cb = recv;
	return s->orig_start(io, msecs, tick, recv_matching);
}

/* libraft 0.15 bug: when a follower rejects an AppendEntries carrying
 * entries, recvAppendEntries() frees the entries' batch, then sends the
 * reply; if io->send() fails synchronously it returns the error and its
 * caller (recvCb) frees the same batch again: a double free. The fixture's
 * send fails synchronously on an injected I/O fault. raft_uv's send
 * reports errors through the callback (only allocation failures return
 * at once), so the sim does the same: a send that fails at once is
 * completed with its error from the next fixture event instead.
 * Before that, @message gets raft/io.c's send rules. Reproduce the raw bug
 * with --raw-io. */
static int send_deferring(struct raft_io *io, struct raft_io_send *req,
			  const struct raft_message *message, raft_io_send_cb cb)
{
	struct sim *s = cur_sim;
	unsigned i = io_peer(s, io);
	struct raft_message m = *message;
	raft__match_send(&s->match[i], peer_raft(s, i), &m);
	int rv = s->orig_send(io, req, &m, cb);
	if (rv == 0)
		return 0;
	s->n_send_errors++;
	if (s->ndeferred == s->capdeferred) {
		size_t cap = s->capdeferred ? s->capdeferred * 2 : 16;
		struct deferred_send *d = aep_realloc(s->deferred, cap * sizeof(*d));
		if (d == NULL)
			return rv;
		s->deferred = d;
		s->capdeferred = cap;
	}
	req->cb = cb;
	s->deferred[s->ndeferred++] = (struct deferred_send){req, cb, rv};
	return 0;
}

static void flush_deferred_sends(struct sim *s)
{
	while (s->ndeferred > 0) {
		struct deferred_send d = s->deferred[0];
		memmove(s->deferred, s->deferred + 1, (s->ndeferred - 1) * sizeof(*s->deferred));
		s->ndeferred--;
		d.cb(d.req, d.status);
	}
}

/* Bug in the fixture's in-memory raft_io (test code shipped with libraft
 * 0.15, not raft_uv): truncate(index) copies index - 1 entries from its
 * array without checking how many it holds, and that array does not
 * account for an installed snapshot, so truncating a follower that
 * installed a snapshot reads past the array (ASan: heap-buffer-overflow,
 * --raw-io --seed 74 --peers 5). The fixture's persisted log is only read
 * back by raft_start(), which a seed never calls twice, so the sim skips
 * the fixture's truncate: libraft's in-memory log, which every check here
 * reads, is truncated as usual. */
static int truncate_skipped(struct raft_io *io, raft_index index)
{
	(void)io;
	(void)index;
	return 0;
}

static void disk_latency(struct sim *s, unsigned i, unsigned ms)
{
	if (ms >= s->disk_ms[i] || s->appends_pending[i] == 0) {
		raft_fixture_set_disk_latency(&s->f, i, ms);
		s->disk_ms[i] = ms;
		s->disk_next_ms[i] = 0;
		return;
	}
	s->disk_next_ms[i] = ms;
}

static void disk_latency_due(struct sim *s)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->disk_next_ms[i] != 0 && s->appends_pending[i] == 0)
			disk_latency(s, i, s->disk_next_ms[i]);
}

static void append_done(struct raft_io_append *req, int status)
{
	struct sim *s = cur_sim;
	for (size_t k = 0; k < s->nappends; k++) {
		if (s->appends[k].req != req)
			continue;
		struct inflight_append a = s->appends[k];
		s->appends[k] = s->appends[--s->nappends];
		s->appends_pending[a.peer]--;
		a.cb(req, status);
		return;
	}
	fprintf(stderr, "aep-sim: unknown append request\n");
	exit(2);
}

/* Counts the appends in flight on each peer (see disk_ms). */
static int append_counting(struct raft_io *io, struct raft_io_append *req,
			   const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
	struct sim *s = cur_sim;
	unsigned i = io_peer(s, io);
	if (s->nappends == s->capappends) {
		size_t cap = s->capappends ? s->capappends * 2 : 32;
		struct inflight_append *a = aep_realloc(s->appends, cap * sizeof(*a));
		if (a == NULL)
			return RAFT_NOMEM;
		s->appends = a;
		s->capappends = cap;
	}
	s->appends[s->nappends++] = (struct inflight_append){req, cb, i};
	s->appends_pending[i]++;
	int rv = s->orig_append(io, req, entries, n, append_done);
	if (rv != 0) {
		s->nappends--;
		s->appends_pending[i]--;
	}
	return rv;
}

/* ---- invariants checked after every fixture event ----------------------- */

static void on_event(struct raft_fixture *f, struct raft_fixture_event *ev)
{
	struct sim *s = (struct sim *)((char *)f - offsetof(struct sim, f));
	(void)ev;
	flush_deferred_sends(s);
	disk_latency_due(s);
	for (unsigned i = 0; i < s->n; i++) {
		struct raft *r = peer_raft(s, i);
		if (raft_state(r) != RAFT_LEADER)
			continue;
		raft_term t = r->current_term;
		if (t >= s->nterms) {
			size_t n = s->nterms ? s->nterms : 64;
			while (n <= t)
				n *= 2;
			raft_id *tl = aep_realloc(s->term_leader, n * sizeof(*tl));
			if (tl == NULL) {
				fprintf(stderr, "aep-sim: out of memory\n");
				exit(2);
			}
			memset(tl + s->nterms, 0, (n - s->nterms) * sizeof(*tl));
			s->term_leader = tl;
			s->nterms = n;
		}
		/* A committed entry is held by a majority. */
		raft_index c = r->commit_index;
		raft_term ct = raft__log_term_at(r, c);
		if (c > 0 && ct != 0 && !s->dead[i]) {
			unsigned holders = 0;
			for (unsigned j = 0; j < s->n; j++) {
				struct raft *o = peer_raft(s, j);
				if (raft__log_term_at(o, c) == ct ||
				    o->log.snapshot.last_index > c ||
				    (o->log.snapshot.last_index == c &&
				     o->log.snapshot.last_term == ct))
					holders++;
			}
			if (holders <= s->n / 2)
				fail(s,
				     "leader %u (term %llu) committed index %llu (term %llu) held "
				     "by "
				     "only %u of %u peers",
				     i, (unsigned long long)t, (unsigned long long)c,
				     (unsigned long long)ct, holders, s->n);
		}
		if (s->term_leader[t] == 0) {
			s->term_leader[t] = r->id;
			note(s, "peer %u leads term %llu", i, (unsigned long long)t);
		} else if (s->term_leader[t] != r->id) {
			fail(s, "two leaders in term %llu: peers %llu and %u",
			     (unsigned long long)t, (unsigned long long)s->term_leader[t] - 1, i);
		}
	}
}

static void advance(struct sim *s, unsigned ms)
{
	raft_time until = s->f.time + ms;
	while (s->f.time < until && !s->failed)
		raft_fixture_step(&s->f);
}

/* ---- the network -------------------------------------------------------- */

/* Make the fixture's links match cut[][], and its saturation match
 * dead[] and drop[] (kill and revive use saturation too). */
static void net_sync(struct sim *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		for (unsigned j = 0; j < s->n; j++) {
			if (i == j)
				continue;
			if (i < j) {
				if (s->cut[i][j])
					raft_fixture_disconnect(&s->f, i, j);
				else
					raft_fixture_reconnect(&s->f, i, j);
			}
			bool sat = s->dead[i] || s->dead[j] || s->drop[i][j];
			if (sat != raft_fixture_saturated(&s->f, i, j)) {
				if (sat)
					raft_fixture_saturate(&s->f, i, j);
				else
					raft_fixture_desaturate(&s->f, i, j);
			}
		}
	}
}

static bool healthy(struct sim *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		if (s->dead[i] || !available(s, i))
			return false;
		for (unsigned j = 0; j < s->n; j++)
			if (s->cut[i][j] || s->drop[i][j])
				return false;
	}
	return true;
}

static raft_term last_log_term(struct raft *r)
{
	const struct raft_log *l = &r->log;
	size_t used = l->back >= l->front ? l->back - l->front : l->size - l->front + l->back;
	if (used == 0)
		return l->snapshot.last_term;
	return l->entries[(l->back + l->size - 1) % l->size].term;
}

/* ---- faults ------------------------------------------------------------- */

static unsigned n_dead(struct sim *s)
{
	unsigned d = 0;
	for (unsigned i = 0; i < s->n; i++)
		d += s->dead[i];
	return d;
}

static unsigned pick_leader(struct sim *s);

static void fault_election(struct sim *s)
{
	unsigned li = raft_fixture_leader_index(&s->f);

	/* Forced: depose the stable leader, then elect the peer with the most
	 * up-to-date log (the fixture asserts that its pick wins). Only on a
	 * healthy network, where the fixture's preconditions hold. */
	if (healthy(s) && li < s->n && raft_state(peer_raft(s, li)) == RAFT_LEADER) {
		for (unsigned i = 0; i < s->n; i++)
			if (i != li && raft_state(peer_raft(s, i)) != RAFT_FOLLOWER)
				goto reshuffle;
		note(s, "fault: depose leader %u", li);
		raft_fixture_depose(&s->f);
		if (s->failed || s->f.leader_id != 0)
			return;
		unsigned best = s->n, ties = 0;
		for (unsigned i = 0; i < s->n; i++) {
			struct raft *r = peer_raft(s, i);
			if (raft_state(r) != RAFT_FOLLOWER)
				return;
			if (best == s->n) {
				best = i;
				ties = 1;
				continue;
			}
			struct raft *b = peer_raft(s, best);
			raft_term ti = last_log_term(r), tb = last_log_term(b);
			raft_index ii = raft_last_index(r), ib = raft_last_index(b);
			if (ti > tb || (ti == tb && ii > ib)) {
				best = i;
				ties = 1;
			} else if (ti == tb && ii == ib && below(s, ++ties) == 0) {
				best = i;
			}
		}
		note(s, "fault: elect %u", best);
		raft_fixture_elect(&s->f, best);
		s->n_elections++;
		return;
	}
reshuffle:
	/* Otherwise: new randomized election timeouts, taken at each
	 * peer's next timer reset. */
	for (unsigned i = 0; i < s->n; i++)
		raft_fixture_set_randomized_election_timeout(&s->f, i,
							     SIM_ELECTION_MS + below(s, 1000));
	note(s, "fault: reshuffle election timeouts");
}

static void faults(struct sim *s)
{
	unsigned n = s->n, i = below(s, n), j = below(s, n);
	unsigned minority = (n - 1) / 2;
	unsigned leader = pick_leader(s);

	/* Half of the targeted faults hit a leader: that is where elections,
	 * stale leaders and uncommitted tails come from. */
	if (leader < n && chance(s, 500))
		i = leader;

	if (chance(s, 20) && !s->dead[i] && (n_dead(s) < minority || chance(s, 150))) {
		note(s, "fault: kill %u", i);
		raft_fixture_kill(&s->f, i);
		s->dead[i] = true;
		s->n_kills++;
		net_sync(s);
	}
	if (n_dead(s) > 0 && chance(s, 60)) {
		for (unsigned k = 0; k < n; k++) {
			unsigned d = (i + k) % n;
			if (!s->dead[d])
				continue;
			note(s, "fault: revive %u", d);
			raft_fixture_revive(&s->f, d);
			s->dead[d] = false;
			net_sync(s);
			break;
		}
	}
	if (i != j && chance(s, 20)) {
		note(s, "fault: cut %u-%u", i, j);
		s->cut[i][j] = s->cut[j][i] = true;
		s->n_cuts++;
		net_sync(s);
	}
	if (i != j && chance(s, 10)) {
		note(s, "fault: drop %u->%u", i, j);
		s->drop[i][j] = true;
		s->n_cuts++;
		net_sync(s);
	}
	if (chance(s, 15)) {
		/* a minority on one side */
		bool side[SIM_PEERS_MAX] = {false};
		unsigned size = 1 + below(s, minority);
		for (unsigned k = 0; k < size; k++)
			side[(i + k) % n] = true;
		for (unsigned a = 0; a < n; a++)
			for (unsigned b = 0; b < n; b++)
				if (side[a] != side[b])
					s->cut[a][b] = true;
		note(s, "fault: partition %u peers from %u", size, i);
		s->n_partitions++;
		net_sync(s);
	}
	if (chance(s, 50)) {
		bool any = false;
		for (unsigned a = 0; a < n; a++)
			for (unsigned b = 0; b < n; b++) {
				any |= s->cut[a][b] || s->drop[a][b];
				s->cut[a][b] = s->drop[a][b] = false;
			}
		if (any) {
			note(s, "fault: heal the network");
			net_sync(s);
		}
	}
	if (chance(s, 30)) {
		unsigned ms = chance(s, 200) ? 100 + below(s, 400) : 1 + below(s, 40);
		note(s, "fault: network latency of %u: %u ms", i, ms);
		raft_fixture_set_network_latency(&s->f, i, ms);
	}
	if (chance(s, 30)) {
		unsigned ms = chance(s, 200) ? 100 + below(s, 900) : 1 + below(s, 30);
		note(s, "fault: disk latency of %u: %u ms", i, ms);
		disk_latency(s, i, ms);
	}
	if (s->faulty[i] && chance(s, 15)) {
		int delay = (int)below(s, 20), repeat = 1 + (int)below(s, 3);
		note(s, "fault: I/O errors on %u after %d requests, %d times", i, delay, repeat);
		raft_fixture_io_fault(&s->f, i, delay, repeat);
		s->n_io_faults++;
	}
	if (chance(s, 15))
		fault_election(s);
}

/* ---- clients ------------------------------------------------------------ */

static void track(struct sim *s, void *p, void ***arr, size_t *n, size_t *cap)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		void **a = aep_realloc(*arr, c * sizeof(*a));
		if (a == NULL) {
			fprintf(stderr, "aep-sim: out of memory\n");
			exit(2);
		}
		*arr = a;
		*cap = c;
	}
	(*arr)[(*n)++] = p;
	(void)s;
}

/* A peer that believes it leads and is up, chosen at random (possibly a
 * stale leader cut off from the rest), or s->n. */
static unsigned pick_leader(struct sim *s)
{
	unsigned cand[SIM_PEERS_MAX], nc = 0;
	for (unsigned i = 0; i < s->n; i++)
		if (!s->dead[i] && raft_state(peer_raft(s, i)) == RAFT_LEADER)
			cand[nc++] = i;
	return nc > 0 ? cand[below(s, nc)] : s->n;
}

/* The msgpack of a Pod or Namespace for @key carrying label v=t<tag>, in
 * canonical form (as the leader's validation makes it): *@out gets one
 * reference. */
static int build_object(unsigned key, uint32_t tag, struct aep_object **out)
{
	const struct key_def *d = &key_defs[key];
	struct aep_error e = {0};
	struct aep_buf b;
	msgpack_packer pk;
	char v[16];
	int rv;

	snprintf(v, sizeof(v), "t%u", tag);
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, d->kind == AEP_KIND_POD ? 3 : 2);
	aep_pack_str(&pk, "kind");
	aep_pack_str(&pk, d->kind == AEP_KIND_POD ? "Pod" : "Namespace");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, d->kind == AEP_KIND_POD ? 3 : 2);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, d->name);
	if (d->kind == AEP_KIND_POD) {
		aep_pack_str(&pk, "namespace");
		aep_pack_str(&pk, d->ns);
	}
	aep_pack_str(&pk, "labels");
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "v");
	aep_pack_str(&pk, v);
	if (d->kind == AEP_KIND_POD) {
		char image[32];
		snprintf(image, sizeof(image), "busybox:%u", tag % 5);
		aep_pack_str(&pk, "spec");
		msgpack_pack_map(&pk, 1);
		aep_pack_str(&pk, "containers");
		msgpack_pack_array(&pk, 1);
		msgpack_pack_map(&pk, 2);
		aep_pack_str(&pk, "name");
		aep_pack_str(&pk, "c");
		aep_pack_str(&pk, "image");
		aep_pack_str(&pk, image);
	}
	if (b.failed) {
		aep_buf_free(&b);
		return AEP_ENOMEM;
	}
	rv = aep_object_decode(b.data, b.len, out, &e);
	if (rv != 0)
		fprintf(stderr, "aep-sim: building the object: %s\n", e.msg);
	aep_buf_free(&b);
	return rv;
}

static void gen_op(struct sim *s, unsigned client, struct op *op)
{
	unsigned r = below(s, 100);
	memset(op, 0, sizeof(*op));
	op->tag = ++s->next_tag;
	if (r < 35) {
		op->op = AEP_OP_CREATE;
		op->key =
		    chance(s, 150) ? below(s, NNS_KEYS) : NNS_KEYS + below(s, NKEYS - NNS_KEYS);
	} else if (r < 80) {
		op->op = AEP_OP_UPDATE;
		op->key = chance(s, 700) ? NNS_KEYS + below(s, NHOT_KEYS) : below(s, NKEYS);
		uint64_t known = s->known[client][op->key];
		if (key_defs[op->key].hot) {
			/* a compare-and-set from what this client last saw */
			if (known != 0)
				op->precond = known;
			else if (chance(s, 500))
				op->precond = AEP_REV(1 + below(s, 400), below(s, 3));
		} else if (chance(s, 300)) {
			op->precond = known != 0 ? known : AEP_REV(1 + below(s, 400), 0);
		}
	} else if (r < 95) {
		op->op = AEP_OP_DELETE;
		op->key =
		    chance(s, 200) ? below(s, NNS_KEYS) : NNS_KEYS + below(s, NKEYS - NNS_KEYS);
		if (chance(s, 300))
			op->precond = s->known[client][op->key];
	} else {
		op->op = AEP_OP_MEMBER;
		op->key = below(s, SIM_MEMBERS);
	}
}

static void apply_cb(struct raft_apply *ap, int status, void *result)
{
	struct req *rq = ap->data;
	struct sim *s = rq->sim;
	(void)result;

	if (rq->state != REQ_PENDING) {
		fail(s, "request %u: a second callback (status %d)", rq->id, status);
		return;
	}
	rq->status = status;
	if (status != 0) {
		rq->state = REQ_FAILED;
		s->n_failed++;
		return;
	}
	rq->state = REQ_ACKED;
	s->n_acked++;
	if (rq->applied != rq->index) {
		fail(s, "request %u acknowledged at index %llu but applied at %llu", rq->id,
		     (unsigned long long)rq->index, (unsigned long long)rq->applied);
		return;
	}
	if (s->log[rq->index].hash != rq->hash) {
		fail(s, "request %u acknowledged, but index %llu holds another entry", rq->id,
		     (unsigned long long)rq->index);
		return;
	}
	if (rq->index > s->acked_max)
		s->acked_max = rq->index;
	for (unsigned i = 0; i < rq->nops; i++) {
		const struct op *op = &rq->ops[i];
		if (op->op == AEP_OP_MEMBER || op->code != 0)
			continue;
		struct key *k = &s->keys[op->key];
		bool present = op->op != AEP_OP_DELETE;
		s->known[rq->client][op->key] = present ? op->rv : 0;
		if (rq->index >= k->acked_index) {
			k->acked_index = rq->index;
			k->acked_rv = op->rv;
			k->acked_tag = op->tag;
			k->acked_present = present;
		}
	}
}

static void submit(struct sim *s)
{
	unsigned p = pick_leader(s), client = below(s, SIM_CLIENTS);
	struct aep_batch batch;
	struct raft_buffer buf;
	const char *data;
	size_t len;
	int rv;

	if (p == s->n)
		return;
	struct req *rq = aep_calloc(1, sizeof(*rq));
	if (rq == NULL) {
		fprintf(stderr, "aep-sim: out of memory\n");
		exit(2);
	}
	rq->sim = s;
	rq->id = (unsigned)s->nreqs;
	rq->client = client;
	rq->peer = p;
	rq->nops = chance(s, 850) ? 1 : 2 + below(s, SIM_OPS_MAX - 1);
	track(s, rq, (void ***)&s->reqs, &s->nreqs, &s->capreqs);

	aep_batch_init(&batch);
	for (unsigned i = 0; i < rq->nops; i++) {
		struct op *op = &rq->ops[i];
		struct aep_object *o = NULL;
		struct aep_cmd c;
		char member[8], api[32], peer[32];

		gen_op(s, client, op);
		memset(&c, 0, sizeof(c));
		c.op = op->op;
		c.precond_rv = op->precond;
		/* unique per command, so every entry's bytes are unique */
		c.now_ns = SIM_NOW_BASE + (int64_t)rq->id * 1000 + i;
		if (op->op == AEP_OP_MEMBER) {
			snprintf(member, sizeof(member), "m%u", op->key);
			snprintf(api, sizeof(api), "127.0.0.1:%u", 10000 + op->tag % 50000);
			snprintf(peer, sizeof(peer), "127.0.0.1:%u", 20000 + op->tag % 40000);
			c.kind = AEP_KIND_NAMESPACE;
			c.name = member;
			c.member_api = api;
			c.member_peer = peer;
		} else {
			const struct key_def *d = &key_defs[op->key];
			c.kind = d->kind;
			c.ns = d->kind == AEP_KIND_POD ? d->ns : NULL;
			c.name = d->name;
			if (op->op == AEP_OP_CREATE)
				snprintf(c.uid, sizeof(c.uid), "sim-%u-%u", rq->id, i);
			if (op->op != AEP_OP_DELETE) {
				if (build_object(op->key, op->tag, &o) != 0) {
					fprintf(stderr, "aep-sim: cannot build an object\n");
					exit(2);
				}
				c.obj = o->data;
				c.obj_len = o->len;
			}
		}
		rv = aep_batch_add(&batch, &c);
		aep_object_unref(o);
		if (rv != 0) {
			fprintf(stderr, "aep-sim: aep_batch_add: %s\n", aep_err_code(rv));
			exit(2);
		}
	}
	rv = aep_batch_finish(&batch, &data, &len);
	if (rv != 0) {
		fprintf(stderr, "aep-sim: aep_batch_finish: %s\n", aep_err_code(rv));
		exit(2);
	}
	rv = raft__entry_frame(data, len, &buf);
	if (rv != 0) {
		fprintf(stderr, "aep-sim: raft__entry_frame: %s\n", raft_strerror(rv));
		exit(2);
	}
	aep_batch_free(&batch);
	rq->hash = fnv(FNV_INIT, buf.base, buf.len);
	rq->apply.data = rq;
	rv = raft_apply(peer_raft(s, p), &rq->apply, &buf, 1, apply_cb);
	if (rv != 0) {
		raft_free(buf.base);
		rq->state = REQ_REFUSED;
		rq->status = rv;
		s->n_refused++;
		note(s, "client %u: raft_apply on %u refused: %s", client, p, raft_strerror(rv));
		return;
	}
	rq->index = rq->apply.index;
	note(s, "client %u: request %u (%u commands) on %u at index %llu", client, rq->id, rq->nops,
	     p, (unsigned long long)rq->index);
}

static void read_cb(struct raft_barrier *b, int status)
{
	struct read *rd = b->data;
	struct sim *s = rd->sim;
	struct raft *r = peer_raft(s, rd->peer);

	if (rd->done) {
		fail(s, "read on peer %u: a second barrier callback", rd->peer);
		return;
	}
	rd->done = true;
	rd->status = status;
	if (status != 0 || rd->final)
		return;
	s->n_reads_ok++;
	raft_index at = raft_last_applied(r);
	if (at < rd->need) {
		fail(s,
		     "read on leader %u after its barrier: applied index %llu misses writes "
		     "acknowledged up to %llu before the read started",
		     rd->peer, (unsigned long long)at, (unsigned long long)rd->need);
		return;
	}
	check_store(s, rd->peer, at, "linearizable read");
	/* The client learns the current revisions, for its next CAS. */
	for (unsigned k = 0; k < NKEYS; k++) {
		const struct version *v = version_at(&s->keys[k], at);
		s->known[rd->client][k] = v != NULL && v->present ? v->rv : 0;
	}
}

static struct read *start_read(struct sim *s, unsigned p, bool final)
{
	struct read *rd = aep_calloc(1, sizeof(*rd));
	if (rd == NULL) {
		fprintf(stderr, "aep-sim: out of memory\n");
		exit(2);
	}
	rd->sim = s;
	rd->peer = p;
	rd->client = below(s, SIM_CLIENTS);
	rd->need = s->acked_max;
	rd->final = final;
	rd->barrier.data = rd;
	track(s, rd, (void ***)&s->reads, &s->nreads, &s->capreads);
	int rv = raft_barrier(peer_raft(s, p), &rd->barrier, read_cb);
	if (rv != 0) {
		rd->done = true;
		rd->status = rv;
	}
	if (!final)
		s->n_reads++;
	return rd;
}

/* ---- the end ------------------------------------------------------------ */

/* "p0 F t3 last 40 applied 40 | p1 ...": for failure messages. */
static const char *cluster_str(struct sim *s)
{
	static char buf[512];
	static const char *states = "UFCL";
	size_t off = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < s->n && off < sizeof(buf); i++) {
		struct raft *r = peer_raft(s, i);
		off += (size_t)snprintf(
		    buf + off, sizeof(buf) - off, "%sp%u %c%s t%llu last %llu applied %llu",
		    i ? " | " : "", i, states[raft_state(r) & 3], s->dead[i] ? " dead" : "",
		    (unsigned long long)r->current_term, (unsigned long long)raft_last_index(r),
		    (unsigned long long)raft_last_applied(r));
	}
	return buf;
}

struct all_applied {
	struct sim *s;
	raft_index index;
};

static bool all_applied(struct raft_fixture *f, void *arg)
{
	struct all_applied *a = arg;
	struct sim *s = a->s;
	(void)f;
	if (s->failed)
		return true;
	for (unsigned i = 0; i < s->n; i++)
		if (available(s, i) && raft_last_applied(peer_raft(s, i)) < a->index)
			return false;
	return true;
}

static bool has_leader(struct raft_fixture *f, void *arg)
{
	struct sim *s = arg;
	return s->failed || f->leader_id != 0;
}

static bool read_done(struct raft_fixture *f, void *arg)
{
	struct read *rd = arg;
	(void)f;
	return rd->sim->failed || rd->done;
}

/* Heal every fault, let the cluster settle and compare everything. */
static void heal_and_check(struct sim *s)
{
	unsigned leader = s->n, nav = 0, first = s->n;

	note(s, "heal");
	for (unsigned i = 0; i < s->n; i++) {
		if (s->dead[i])
			raft_fixture_revive(&s->f, i);
		s->dead[i] = false;
		for (unsigned j = 0; j < s->n; j++)
			s->cut[i][j] = s->drop[i][j] = false;
		raft_fixture_set_network_latency(&s->f, i, 15);
		disk_latency(s, i, 10);
		raft_fixture_io_fault(&s->f, i, -1, 0);
		raft_fixture_set_randomized_election_timeout(&s->f, i, SIM_ELECTION_MS + 100 * i);
	}
	/* A peer that libraft turned unavailable (after an I/O error) is
	 * down for good: take it out, as its process would be. */
	for (unsigned i = 0; i < s->n; i++) {
		if (available(s, i)) {
			nav++;
			if (first == s->n)
				first = i;
		} else {
			raft_fixture_kill(&s->f, i);
			s->dead[i] = true;
			s->n_unavailable++;
		}
	}
	net_sync(s);
	if (nav <= s->n / 2) {
		fail(s, "only %u of %u peers are available at the end", nav, s->n);
		return;
	}

	/* A barrier committed by the final leader commits everything before
	 * it; retry when leadership moves under it. */
	struct read *fin = NULL;
	for (int attempt = 0; attempt < 10 && !s->failed; attempt++) {
		if (!raft_fixture_step_until(&s->f, has_leader, s, SIM_HEAL_MS)) {
			fail(s, "no stable leader within %u ms after healing: %s", SIM_HEAL_MS,
			     cluster_str(s));
			return;
		}
		leader = raft_fixture_leader_index(&s->f);
		fin = start_read(s, leader, true);
		raft_fixture_step_until(&s->f, read_done, fin, SIM_HEAL_MS);
		if (fin->done && fin->status == 0)
			break;
	}
	if (s->failed)
		return;
	if (fin == NULL || !fin->done || fin->status != 0) {
		fail(s, "the final barrier never committed (%s): %s",
		     fin == NULL  ? "not started"
		     : !fin->done ? "no callback"
				  : raft_strerror(fin->status),
		     cluster_str(s));
		return;
	}
	struct all_applied a = {s, raft_last_index(peer_raft(s, leader))};
	if (!raft_fixture_step_until(&s->f, all_applied, &a, SIM_HEAL_MS)) {
		for (unsigned i = 0; i < s->n; i++)
			if (available(s, i) && raft_last_applied(peer_raft(s, i)) < a.index)
				fail(s,
				     "peer %u stuck at applied index %llu, the leader is at %llu: "
				     "%s",
				     i, (unsigned long long)raft_last_applied(peer_raft(s, i)),
				     (unsigned long long)a.index, cluster_str(s));
		return;
	}
	/* One more heartbeat round: nothing may move. */
	advance(s, 500);
	if (s->failed)
		return;

	struct aep_buf ref, b;
	aep_buf_init(&ref);
	aep_buf_init(&b);
	raft_index at = raft_last_applied(peer_raft(s, first));
	for (unsigned i = 0; i < s->n && !s->failed; i++) {
		if (!available(s, i))
			continue;
		if (raft_last_applied(peer_raft(s, i)) != at) {
			fail(s, "after healing peer %u applied up to %llu, peer %u up to %llu", i,
			     (unsigned long long)raft_last_applied(peer_raft(s, i)), first,
			     (unsigned long long)at);
			break;
		}
		aep_buf_reset(&b);
		int rv = aep_store_snapshot(s->peers[i].store, i == first ? &ref : &b);
		if (rv != 0) {
			fail(s, "aep_store_snapshot: %s", aep_err_code(rv));
			break;
		}
		if (i != first && (b.len != ref.len || memcmp(b.data, ref.data, b.len) != 0))
			fail(s,
			     "after healing the stores of peers %u and %u differ (snapshot bytes)",
			     first, i);
		check_store(s, i, at, "final state");
		const struct aep_member *m;
		size_t nm = 0;
		aep_store_members(s->peers[i].store, &m, &nm);
		size_t want = 0;
		for (unsigned k = 0; k < SIM_MEMBERS; k++)
			want += s->members[k].present;
		if (nm != want)
			fail(s, "peer %u has %zu members, the model %zu", i, nm, want);
	}
	aep_buf_free(&ref);
	aep_buf_free(&b);

	/* Every acknowledged write is in the log; every request on a peer
	 * that is still available has had its callback. */
	for (size_t r = 0; r < s->nreqs && !s->failed; r++) {
		struct req *rq = s->reqs[r];
		if (rq->state == REQ_ACKED && (rq->applied == 0 || rq->applied > at))
			fail(s, "acknowledged request %u (index %llu) is not in the final log",
			     rq->id, (unsigned long long)rq->index);
		if (rq->state == REQ_PENDING && available(s, rq->peer))
			fail(s, "request %u on peer %u (index %llu) never got its callback", rq->id,
			     rq->peer, (unsigned long long)rq->index);
	}

	/* The client's view: the last acknowledged write of each object holds,
	 * unless a later applied write (acknowledged or not) changed it. */
	for (unsigned k = 0; k < NKEYS && !s->failed; k++) {
		const struct key *key = &s->keys[k];
		const struct key_def *d = &key_defs[k];
		if (key->acked_index == 0)
			continue;
		struct aep_object *o =
		    aep_store_get(s->peers[first].store, d->kind, d->ns, d->name);
		bool same = key->acked_present ? o != NULL && o->meta.rv == key->acked_rv &&
						     obj_tag(o) == (int64_t)key->acked_tag
					       : o == NULL;
		aep_object_unref(o);
		if (same)
			continue;
		bool later = false;
		for (raft_index i = key->acked_index + 1; i <= at && !later; i++) {
			const struct slot *sl = &s->log[i];
			if (!sl->set || sl->req < 0)
				continue;
			const struct req *rq = s->reqs[sl->req];
			for (unsigned c = 0; c < rq->nops; c++)
				if (rq->ops[c].op != AEP_OP_MEMBER && rq->ops[c].key == k &&
				    rq->ops[c].code == 0)
					later = true;
		}
		if (!later) {
			char kb[128];
			key_str(k, kb, sizeof(kb));
			fail(s,
			     "%s: the acknowledged write at index %llu (rv %llu) was lost and no "
			     "later write explains it",
			     kb, (unsigned long long)key->acked_index,
			     (unsigned long long)key->acked_rv);
		}
	}
}

/* ---- one seed ----------------------------------------------------------- */

static void usage_replay(char *buf, size_t size, uint64_t seed, unsigned n, unsigned steps,
			 bool raw_io)
{
	char extra[48] = "";
	if (steps != SIM_STEPS)
		snprintf(extra, sizeof(extra), " --steps %u", steps);
	if (raw_io)
		snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), " --raw-io");
	snprintf(buf, size, "replay: tests/sim/aep-sim --seed %llu --peers %u%s",
		 (unsigned long long)seed, n, extra);
}

static void crash_handler(int sig)
{
	ssize_t w = write(STDERR_FILENO, crash_msg, strlen(crash_msg));
	(void)w;
	signal(sig, SIG_DFL);
	raise(sig);
}

#ifdef SIM_SANITIZER
static void sanitizer_death(void)
{
	ssize_t w = write(STDERR_FILENO, crash_msg, strlen(crash_msg));
	(void)w;
}
#endif

static int setup(struct sim *s)
{
	struct raft_configuration conf;
	struct aep_store_config cfg = {.event_log_max = 64};
	int rv;

	rv = raft_fixture_initialize(&s->f);
	if (rv != 0)
		return rv;
	for (unsigned i = 0; i < s->n; i++) {
		struct peer *pe = &s->peers[i];
		pe->sim = s;
		pe->i = i;
		rv = aep_store_new(&cfg, &pe->store);
		if (rv != 0)
			return RAFT_NOMEM;
		pe->fsm.version = 2;
		pe->fsm.data = pe;
		pe->fsm.apply = fsm_apply;
		pe->fsm.snapshot = fsm_snapshot;
		pe->fsm.restore = fsm_restore;
		pe->fsm.snapshot_finalize = fsm_snapshot_finalize;
		pe->fsm.snapshot_async = NULL;
		rv = raft_fixture_grow(&s->f, &pe->fsm);
		if (rv != 0)
			return rv;
		struct raft *r = peer_raft(s, i);
		raft_set_snapshot_threshold(r, SIM_SNAP_THRESH);
		raft_set_snapshot_trailing(r, SIM_SNAP_TRAILING);
		raft_set_pre_vote(r, true);
		struct raft_io *io = &s->f.servers[i].io;
		s->orig_append = io->append;
		io->append = append_counting;
		if (!s->raw_io) {
			s->orig_send = io->send;
			s->orig_truncate = io->truncate;
			s->orig_start = io->start;
			io->send = send_deferring;
			io->truncate = truncate_skipped;
			io->start = start_matching;
		}
		raft_fixture_set_randomized_election_timeout(&s->f, i,
							     SIM_ELECTION_MS + below(s, 1000));
		raft_fixture_set_network_latency(&s->f, i, 1 + below(s, 30));
		s->disk_ms[i] = 1 + below(s, 20);
		raft_fixture_set_disk_latency(&s->f, i, s->disk_ms[i]);
	}
	/* A minority may see I/O errors (a peer may turn unavailable for good
	 * after one; the fixture cannot restart it). */
	for (unsigned k = 0; k < (s->n - 1) / 2; k++)
		s->faulty[below(s, s->n)] = true;
	rv = raft_fixture_configuration(&s->f, s->n, &conf);
	if (rv != 0)
		return rv;
	rv = raft_fixture_bootstrap(&s->f, &conf);
	raft_configuration_close(&conf);
	if (rv != 0)
		return rv;
	raft_fixture_hook(&s->f, on_event);
	return raft_fixture_start(&s->f);
}

static void teardown(struct sim *s, bool started)
{
	s->closing = true;
	flush_deferred_sends(s);
	if (started)
		raft_fixture_close(&s->f);
	aep_free(s->deferred);
	aep_free(s->appends);
	for (unsigned i = 0; i < s->n; i++)
		aep_store_free(s->peers[i].store);
	for (size_t i = 0; i < s->nreqs; i++)
		aep_free(s->reqs[i]);
	for (size_t i = 0; i < s->nreads; i++)
		aep_free(s->reads[i]);
	for (unsigned k = 0; k < NKEYS; k++)
		aep_free(s->keys[k].hist);
	aep_free(s->reqs);
	aep_free(s->reads);
	aep_free(s->log);
	aep_free(s->term_leader);
}

/* Run one seed; 0 when every check passed. */
static int run_seed(uint64_t seed, unsigned n, unsigned steps, bool verbose, bool quiet,
		    bool raw_io)
{
	struct sim *s = aep_calloc(1, sizeof(*s));
	char replay[128];
	int rv;

	if (s == NULL) {
		fprintf(stderr, "aep-sim: out of memory\n");
		return 2;
	}
	usage_replay(replay, sizeof(replay), seed, n, steps, raw_io);
	snprintf(crash_msg, sizeof(crash_msg), "FAIL seed=%llu: the process died (see above)\n%s\n",
		 (unsigned long long)seed, replay);
	s->seed = seed;
	s->n = n;
	s->steps = steps;
	s->verbose = verbose;
	s->raw_io = raw_io;
	s->rng = seed * 2654435761u + n;
	cur_sim = s;
	rv = setup(s);
	if (rv != 0) {
		fprintf(stderr, "FAIL seed=%llu: setting up the cluster: %s\n%s\n",
			(unsigned long long)seed, raft_strerror(rv), replay);
		teardown(s, true);
		aep_free(s);
		return 1;
	}
	for (unsigned step = 0; step < steps && !s->failed; step++) {
		faults(s);
		if (chance(s, 600))
			submit(s);
		if (chance(s, 150))
			submit(s);
		if (chance(s, 100)) {
			unsigned p = pick_leader(s);
			if (p < s->n)
				start_read(s, p, false);
		}
		advance(s, 5 + below(s, 100));
		/* A follower's store equals the model at its own applied index. */
		unsigned p = below(s, s->n);
		if (!s->failed && step % 4 == 0 && available(s, p))
			check_store(s, p, raft_last_applied(peer_raft(s, p)), "peer state");
	}
	if (!s->failed)
		heal_and_check(s);

	unsigned terms = 0;
	for (size_t t = 0; t < s->nterms; t++)
		terms += s->term_leader[t] != 0;
	unsigned snaps = 0, restores = 0, result_clamps = 0, commit_clamps = 0, trims = 0;
	for (unsigned i = 0; i < n; i++) {
		snaps += s->peers[i].snapshots;
		restores += s->peers[i].restores;
		result_clamps += s->match[i].n_result_clamps;
		commit_clamps += s->match[i].n_commit_clamps;
		trims += s->match[i].n_ae_trims;
	}
	if (s->failed) {
		fprintf(stderr, "FAIL seed=%llu: %s\n%s\n", (unsigned long long)seed, s->why,
			replay);
	} else if (!quiet) {
		printf(
		    "ok seed=%llu peers=%u: %llu ms simulated, %zu requests (%u acked, %u "
		    "failed, %u refused), %u/%u reads, %llu entries, %u terms with a leader, "
		    "%u snapshots, %u installs, %u kills, %u partitions, %u cuts, %u I/O faults, "
		    "%u forced elections, %u unavailable, %u/%u/%u/%u send errors/result clamps/"
		    "commit clamps/trims\n",
		    (unsigned long long)seed, n, (unsigned long long)s->f.time, s->nreqs,
		    s->n_acked, s->n_failed, s->n_refused, s->n_reads_ok, s->n_reads,
		    (unsigned long long)s->model_index, terms, snaps, restores, s->n_kills,
		    s->n_partitions, s->n_cuts, s->n_io_faults, s->n_elections, s->n_unavailable,
		    s->n_send_errors, result_clamps, commit_clamps, trims);
	}
	bool failed = s->failed;
	teardown(s, true);
	aep_free(s);
	return failed ? 1 : 0;
}

/* Run one seed in a child process, so that a seed that crashes (a libraft
 * assertion, a sanitizer report) is reported and the range goes on. */
static int run_isolated(uint64_t seed, unsigned n, unsigned steps, bool raw_io)
{
	int status;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return run_seed(seed, n, steps, false, true, raw_io);
	if (pid == 0)
		_exit(run_seed(seed, n, steps, false, true, raw_io));
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return 1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* ---- main --------------------------------------------------------------- */

static int parse_u64(const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		return -1;
	*v = x;
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: aep-sim --seed N [--peers 3|5] [--steps K] [--raw-io] [-v]\n"
			"       aep-sim --seeds A-B [--peers 3|5|3,5] [--steps K] [--raw-io]\n");
}

int main(int argc, char **argv)
{
	uint64_t first = 1, last = 1, steps = SIM_STEPS;
	bool verbose = false, range = false, p3 = true, p5 = false, raw_io = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "-v") == 0) {
			verbose = true;
		} else if (strcmp(a, "--raw-io") == 0) {
			raw_io = true;
		} else if (strcmp(a, "--seed") == 0 && v != NULL) {
			if (parse_u64(v, &first) != 0)
				goto bad;
			last = first;
			i++;
		} else if (strcmp(a, "--seeds") == 0 && v != NULL) {
			char lo[32];
			const char *dash = strchr(v, '-');
			if (dash == NULL || (size_t)(dash - v) >= sizeof(lo))
				goto bad;
			memcpy(lo, v, (size_t)(dash - v));
			lo[dash - v] = '\0';
			if (parse_u64(lo, &first) != 0 || parse_u64(dash + 1, &last) != 0 ||
			    last < first)
				goto bad;
			range = true;
			i++;
		} else if (strcmp(a, "--peers") == 0 && v != NULL) {
			p3 = strcmp(v, "3") == 0 || strcmp(v, "3,5") == 0;
			p5 = strcmp(v, "5") == 0 || strcmp(v, "3,5") == 0;
			if (!p3 && !p5)
				goto bad;
			i++;
		} else if (strcmp(a, "--steps") == 0 && v != NULL) {
			if (parse_u64(v, &steps) != 0 || steps == 0 || steps > 1000000)
				goto bad;
			i++;
		} else {
			goto bad;
		}
	}

	signal(SIGPIPE, SIG_IGN);
	signal(SIGABRT, crash_handler);
	signal(SIGSEGV, crash_handler);
	signal(SIGBUS, crash_handler);
	signal(SIGFPE, crash_handler);
#ifdef SIM_SANITIZER
	__sanitizer_set_death_callback(sanitizer_death);
#endif
	if (!verbose)
		setvbuf(stdout, NULL, _IOLBF, 0);

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	unsigned long runs = 0, failures = 0;
	for (uint64_t seed = first; seed <= last; seed++) {
		for (unsigned n = 3; n <= 5; n += 2) {
			if ((n == 3 && !p3) || (n == 5 && !p5))
				continue;
			runs++;
			if (range)
				failures += run_isolated(seed, n, (unsigned)steps, raw_io) != 0;
			else
				failures +=
				    run_seed(seed, n, (unsigned)steps, verbose, false, raw_io) != 0;
		}
		if (seed == UINT64_MAX)
			break;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (range)
		printf("aep-sim: %lu runs, %lu failed, %.1f s (%.1f ms per run)\n", runs, failures,
		       secs, runs ? secs * 1000 / (double)runs : 0.0);
	return failures > 0 ? 1 : 0;

bad:
	usage();
	return 2;
}
