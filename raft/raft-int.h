/* Private to raft/. */
#ifndef AEP_RAFT_INT_H
#define AEP_RAFT_INT_H

#include <raft.h>
#include <raft/uv.h>

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

#endif /* AEP_RAFT_INT_H */
