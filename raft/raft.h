/* raft: AEP's replication, canonical libraft 0.15 on libuv.
 *
 * One aep_raft per master process: libraft's libuv I/O (segments and
 * snapshots under DIR/raft) and TCP transport, an FSM adapter that applies
 * committed entries to the state/ store, and group commit: commands
 * submitted while entries are in flight are packed together into the next
 * entry (one Raft entry carries up to AEP_BATCH_MAX commands), with a small
 * number of entries in flight at once.
 *
 * Happy path: aep_raft_submit() on the leader → queued → packed into an
 * entry → raft_apply → committed by a majority → applied to the store on
 * every peer → the submit callback gets the command's result.
 * Failure modes: not the leader → AEP_ENOTLEADER at once; leadership lost
 * while the entry is in flight → AEP_EUNAVAILABLE ("outcome unknown");
 * closing → AEP_ECANCELED. Each callback fires exactly once. */
#ifndef AEP_RAFT_H
#define AEP_RAFT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "lib/lib.h"
#include "state/state.h"

struct aep_raft;

struct aep_raft_peer {
	const char *name;      /* "m1" */
	const char *peer_addr; /* "127.0.0.1:7101": Raft traffic */
};

/* Upper bounds (ms) of the disk append latency buckets. */
#define AEP_RAFT_DISK_NBUCKETS 11
extern const unsigned AEP_RAFT_DISK_BUCKETS_MS[AEP_RAFT_DISK_NBUCKETS];

struct aep_raft_config {
	const char *name;		   /* this peer, one of @peers */
	const char *dir;		   /* data directory (raft/ inside) */
	const struct aep_raft_peer *peers; /* the initial cluster; ids = position + 1 */
	unsigned npeers;
	struct aep_store *store;       /* applied to; owned by the caller */
	unsigned snapshot_threshold;   /* 0: 8192 entries */
	unsigned snapshot_trailing;    /* 0: 2048 entries */
	unsigned election_timeout_ms;  /* 0: 1000 */
	unsigned heartbeat_timeout_ms; /* 0: 100 */
	unsigned max_inflight;	       /* entries in flight at once; 0: 4 */
	/* Called on the loop whenever this peer gains or loses leadership. */
	void (*on_leadership)(void *data, bool leader);
	/* Called after each applied entry (after the store changed). */
	void (*on_applied)(void *data, uint64_t index);
	void *data;
};

/* Start the peer: bootstrap the initial configuration when the directory is
 * new, otherwise restart from disk (snapshot plus log). Ignores SIGPIPE for
 * the whole process. On failure *@out is untouched and @e says why; if
 * libraft had already been initialised, its close finishes on @loop, so run
 * the loop before closing it. Once started, the peer reports
 * on_leadership(true) only after a barrier of its term has been applied,
 * i.e. when its store holds every committed entry. */
int aep_raft_start(uv_loop_t *loop, const struct aep_raft_config *cfg, struct aep_raft **out,
		   struct aep_error *e);

/* The result is borrowed for the duration of the callback (ref the object
 * to keep it). */
typedef void (*aep_raft_submit_cb)(void *data, const struct aep_result *res);

/* Queue @cmd for the next entry (copied). Leader only. Returns 0 and @cb
 * fires exactly once later (never from inside this call), or returns
 * AEP_ENOTLEADER, AEP_ECANCELED (closing), AEP_EUNAVAILABLE (this peer's
 * store failed), AEP_EINVALID (bad command) or AEP_ENOMEM, and @cb never
 * fires. */
int aep_raft_submit(struct aep_raft *r, const struct aep_cmd *cmd, aep_raft_submit_cb cb,
		    void *data);

/* Linearizable-read barrier: @cb(data, 0) once every entry committed before
 * the call has been applied locally and this peer was still leader.
 * Otherwise @cb gets AEP_EUNAVAILABLE (leadership lost) or AEP_ECANCELED.
 * Returns non-zero (AEP_ENOTLEADER, ...) without calling @cb. */
int aep_raft_barrier(struct aep_raft *r, void (*cb)(void *data, int code), void *data);

/* Ask libraft to hand leadership to @name (NULL: the most up-to-date
 * follower). */
int aep_raft_transfer(struct aep_raft *r, const char *name, struct aep_error *e);

struct aep_raft_status {
	bool leader;
	const char *leader_name; /* NULL when unknown */
	uint64_t term;
	uint64_t commit_index;
	uint64_t applied_index;
	uint64_t last_index;
	uint64_t entries_applied;  /* since start */
	uint64_t commands_applied; /* since start */
	uint64_t snapshots_taken;
	uint64_t snapshots_installed;
	/* Appends to the local log (write and fsync, as raft_uv does them):
	 * how many took at most AEP_RAFT_DISK_BUCKETS_MS[i] ms, their count
	 * and the sum of their durations. */
	uint64_t disk_buckets[AEP_RAFT_DISK_NBUCKETS];
	uint64_t disk_appends;
	double disk_seconds;
};
void aep_raft_status(const struct aep_raft *r, struct aep_raft_status *out);
const char *aep_raft_name(const struct aep_raft *r);

/* Stop: fail queued submits with AEP_ECANCELED, close libraft (entries in
 * flight get AEP_ECANCELED too: their outcome is unknown), then @cb (may be
 * NULL), after which @r is gone. A second call does nothing. */
void aep_raft_close(struct aep_raft *r, void (*cb)(void *data), void *data);

#endif /* AEP_RAFT_H */
