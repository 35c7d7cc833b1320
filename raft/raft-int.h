/* Private to raft/. */
#ifndef AEP_RAFT_INT_H
#define AEP_RAFT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>

#include "raft/raft.h"

/* libraft's own TCP transport with TCP_NODELAY on every connection.
 *
 * libraft 0.15's raft_uv_tcp leaves Nagle's algorithm on: a follower's
 * small AppendEntries result then waits for the leader's delayed ACK (up to
 * 40 ms on Linux), and every entry's commit waits with it. This wrapper
 * hands libraft the same transport, but switches Nagle off on each stream
 * as it is accepted or connected. Give libraft @outer. */
struct raft__tcp {
	struct raft_uv_transport outer; /* what libraft uses */
	struct raft_uv_transport inner; /* raft_uv_tcp */
	raft_uv_accept_cb accept_cb;
	raft_uv_transport_close_cb close_cb;
};

/* raft_uv_tcp_init + bind address. Returns a libraft code, with the message
 * in t->outer.errmsg. */
int raft__tcp_init(struct raft__tcp *t, struct uv_loop_s *loop, const char *bind_address);
/* Release it, after libraft has closed it. */
void raft__tcp_close(struct raft__tcp *t);

/* ---- io.c: workarounds for libraft 0.15 bugs at the raft_io boundary ----
 *
 * The rules (see io.c and docs/LIBRAFT.md, bugs 4-7) work on plain message
 * structs and the local server's struct raft, so that any raft_io (raft_uv
 * here, libraft's fixture in tests/sim/) can apply them. */

/* What one server knows about how far its log matches the current leader's.
 * Zero it before use. */
struct raft__match {
	raft_term term;	    /* of the leader whose entries these are */
	raft_index matched; /* our log matches that leader's up to here */
	/* the message being received (between recv_begin and recv_end) */
	bool in_recv;
	int recv_type;
	raft_term recv_term;
	raft_index pending;	/* prev_log_index + n_entries, or snapshot index */
	raft_term pending_term; /* the term of the entry at @pending */
	/* how often each rule fired (statistics) */
	unsigned n_result_clamps, n_commit_clamps, n_ae_trims, n_vote_terms;
};

/* The term of the entry at @index in @r's in-memory log, or of its
 * snapshot's last entry; 0 when unknown. */
raft_term raft__log_term_at(const struct raft *r, raft_index index);

/* Apply the receive rules to @m before libraft sees it (@r: the receiving
 * server): an AppendEntries starting below @r's snapshot is trimmed to start
 * at the snapshot (batches of dropped entries freed with raft_free; the
 * entries array is kept), and its leader_commit is clamped to prev_log_index
 * + n_entries. Then hand @m to libraft and call raft__match_recv_end(). Never
 * fails. */
void raft__match_recv_begin(struct raft__match *t, const struct raft *r, struct raft_message *m);
/* After libraft handled the message given to raft__match_recv_begin():
 * record how far @r's log now matches the leader. */
void raft__match_recv_end(struct raft__match *t, const struct raft *r);
/* Apply the send rules to @m, a copy of an outgoing message of @r: a
 * successful AppendEntries result claims no more than the index known to
 * match the leader; a refused vote carries @r's current term. Returns true
 * if @m was changed. */
bool raft__match_send(struct raft__match *t, const struct raft *r, struct raft_message *m);

#define RAFT__IO_DEFERRED_MAX 16

/* ---- io.c: the disk space guard (docs/LIBRAFT.md, bug 8) ----
 *
 * libraft 0.15 mishandles a failed disk write (ENOSPC): a leader truncates
 * entries it has already sent, raft_uv miscounts its next index, and the
 * server crashes or stops committing for good. So libraft must never see
 * one: while the file system of the data directory has less free space
 * than the reserve below, the wrapped raft_io refuses new appends and
 * snapshots at once (RAFT_BUSY, which libraft unwinds cleanly and AEP
 * answers as Unavailable), drops received messages whose handling writes
 * to the disk (entries, snapshots, a higher term or a vote to persist, an
 * election to start: the senders retry, as after a lost packet), and a
 * leader hands leadership to a follower. */

#define RAFT__IO_SEGMENT_BYTES ((uint64_t)8 << 20) /* raft_uv's open segment size */
#define RAFT__IO_DIR_MAX       1024

/* Whether the guard holds libraft back, given the free bytes of the data
 * directory's file system, the largest snapshot written so far and whether
 * it held it back until now: low below three segments plus two snapshots,
 * back to normal once one more segment is free (hysteresis). */
bool raft__space_low(bool was_low, uint64_t free_bytes, uint64_t max_snapshot);

/* The raft_io that libraft is given: raft_uv's, with send, start and close
 * wrapped to apply the rules above and to report a send that fails at once
 * through its callback instead. Lives inside struct aep_raft. */
struct raft__io {
	struct raft_io io; /* what libraft uses; io.data and io.impl are theirs */
	struct raft *raft; /* the server using it */
	struct raft__match match;
	int (*orig_start)(struct raft_io *, unsigned, raft_io_tick_cb, raft_io_recv_cb);
	int (*orig_send)(struct raft_io *, struct raft_io_send *, const struct raft_message *,
			 raft_io_send_cb);
	void (*orig_close)(struct raft_io *, raft_io_close_cb);
	int (*orig_append)(struct raft_io *, struct raft_io_append *, const struct raft_entry[],
			   unsigned, raft_io_append_cb);
	int (*orig_snapshot_put)(struct raft_io *, unsigned, struct raft_io_snapshot_put *,
				 const struct raft_snapshot *, raft_io_snapshot_put_cb);
	raft_io_tick_cb tick_cb; /* libraft's */
	raft_io_recv_cb recv_cb; /* libraft's */
	/* async_work, which raft_uv 0.15 lacks: jobs on @loop's thread pool */
	struct uv_loop_s *loop;
	unsigned async_pending;
	bool closing;
	bool closed;		   /* raft_uv's close finished */
	raft_io_close_cb close_cb; /* libraft's, once both are done */
	/* local append latency (aep_raft_status) */
	uint64_t disk_buckets[AEP_RAFT_DISK_NBUCKETS];
	uint64_t disk_appends;
	double disk_seconds;
	/* sends that failed at once, completed from the next tick or close */
	struct raft__deferred_send {
		struct raft_io_send *req;
		raft_io_send_cb cb;
		int status;
	} deferred[RAFT__IO_DEFERRED_MAX];
	unsigned ndeferred;
	/* the disk space guard */
	struct raft__space {
		char dir[RAFT__IO_DIR_MAX]; /* raft_uv's data directory; "" turns it off */
		bool low;
		uint64_t free_bytes;   /* at the last check */
		uint64_t max_snapshot; /* bytes of the largest snapshot put */
		struct raft_transfer transfer;
		bool transferring;
		bool unavailable; /* libraft stopped; reported once */
		/* how often it acted (statistics) */
		unsigned n_refused_appends, n_refused_snapshots, n_dropped, n_transfers;
		unsigned n_low_appends;	   /* a follower's, passed on while low */
		unsigned n_failed_appends; /* failures libraft saw anyway (a race) */
	} space;
};

/* Read AEP_RAFT_IO_DESTROY once (kaio.c: raft_uv's io_destroy calls run
 * off the loop unless it says "sync"). */
void raft__kaio_init(void);

/* Wrap @w->io, which raft_uv_init() filled, for @raft; call before
 * raft_init(). Learns the data directory from raft_uv for the space guard
 * (off, with a note on stderr, if it cannot). Adds async_work (io version
 * 2) on @loop's thread pool, so that snapshots are encoded off the loop. */
void raft__io_wrap(struct raft__io *w, struct raft *raft, struct uv_loop_s *loop);

/* ---- frame.c: what AEP puts inside libraft's entries and snapshots ----
 *
 * An entry is "AEP1", the batch's length (32-bit little endian), the batch
 * and zero padding to a multiple of 8 bytes; a snapshot is "AEPSNAP1" and
 * the store's snapshot. Why: frame.c and docs/LIBRAFT.md, bugs 1 and 2. */

/* Frame @len bytes of @data as one entry into @out, whose base is from
 * raft_malloc() and becomes the caller's. Returns 0, RAFT_TOOBIG if @len
 * does not fit the header, or RAFT_NOMEM; on failure @out holds nothing to
 * free. */
int raft__entry_frame(const char *data, size_t len, struct raft_buffer *out);
/* The batch inside entry @buf (pointing into it), or false for a buffer
 * that is not an AEP entry. */
bool raft__entry_unframe(const struct raft_buffer *buf, const char **data, size_t *len);
/* Frame @len bytes of @data as a snapshot: one buffer, array and base both
 * from raft_malloc(), in *@bufs and *@n_bufs, to be released by libraft or
 * raft__buffers_free(). Returns 0 or RAFT_NOMEM (nothing allocated). */
int raft__snapshot_frame(const char *data, size_t len, struct raft_buffer *bufs[],
			 unsigned *n_bufs);
/* The store's snapshot inside snapshot @buf (pointing into it), or false
 * for a buffer that is not an AEP snapshot. */
bool raft__snapshot_unframe(const struct raft_buffer *buf, const char **data, size_t *len);
/* Free *@n_bufs buffers and the array *@bufs (all from raft_malloc(); *@bufs
 * may be NULL), then set both to NULL and 0: raft_fsm.snapshot_finalize. */
void raft__buffers_free(struct raft_buffer *bufs[], unsigned *n_bufs);

#endif /* AEP_RAFT_INT_H */
