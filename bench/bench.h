/* aep-bench: benchmarks that print figures (never timed assertions). */
#ifndef AEP_BENCH_H
#define AEP_BENCH_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

#include "net/net.h"

#define BENCH_MAX_MASTERS 9
#define BENCH_ADDR_MAX	  80 /* "HOST:PORT" of a master's API */

/* A throwaway cluster of `aep master` processes on 127.0.0.1 in a
 * temporary directory, removed by bench_cluster_stop (also on failure).
 * The masters get SIGKILL when the benchmark dies, even by SIGKILL
 * (PR_SET_PDEATHSIG). Zero it, then set @host and @defer_signals if
 * wanted, before bench_cluster_start. */
struct bench_cluster {
	/* The API's host (--listen, the certificates, the clients): "" is
	 * 127.0.0.1. Raft and HTTP stay on 127.0.0.1. Another address of this
	 * machine lets node agents in network namespaces reach the masters. */
	char host[64];
	/* SIGINT and SIGTERM: 0, the masters are killed, the directory removed
	 * and the signal re-raised; 1, the caller handles them
	 * (bench_catch_signals) and cleans up itself. */
	int defer_signals;
	char dir[256];
	char aep[4096]; /* the aep binary */
	unsigned n;
	unsigned base; /* API ports base..base+n-1, Raft base+100.. */
	pid_t pids[BENCH_MAX_MASTERS];
	char leader_addr[BENCH_ADDR_MAX];
	unsigned leader;     /* index of the leader when the run started */
	struct aep_tls *tls; /* admin client TLS */
	char cluster[512];   /* --initial-cluster */
	int keep;
};

int bench_cluster_start(struct bench_cluster *c, unsigned n, unsigned base, const char *aep);
/* "HOST:PORT" of master @i's API into @out. */
void bench_cluster_api(const struct bench_cluster *c, unsigned i, char *out, size_t size);
void bench_cluster_stop(struct bench_cluster *c);
/* Kill master @i with SIGKILL (a crash: no shutdown, nothing flushed) and
 * reap it; its slot is then empty (pids[i] = 0), which bench_cluster_stop
 * and the signal handler skip. Returns 0, or -1 when @i is not running. */
int bench_cluster_kill(struct bench_cluster *c, unsigned i);
/* Start master @i again after bench_cluster_kill (same directory: it
 * restarts from disk); its log goes on. Returns 0, or -1 when it runs. */
int bench_cluster_restart(struct bench_cluster *c, unsigned i);
/* The leader as the running masters report it: 0 with its index in *@idx,
 * or -1 when none of them names a running master as leader. Blocking
 * (up to a second per master); not from inside a loop callback. */
int bench_cluster_leader(struct bench_cluster *c, unsigned *idx);
/* A metric of master @i (its first sample), read from its /metrics; -1
 * when absent. */
double bench_metric(struct bench_cluster *c, unsigned i, const char *name);

int bench_store(int argc, char **argv);
/* aep-bench sched (sched.c): scheduling throughput and placement checks;
 * argv[0] is "sched". Returns the exit status. */
int bench_sched(int argc, char **argv);
/* aep-bench failover (failover.c): kill -9 of the leader to the next
 * acknowledged write. */
int bench_failover(int argc, char **argv);

/* SIGINT and SIGTERM set bench_interrupted (to the signal) and do nothing
 * else: for runs that must clean up more than a cluster (namespaces,
 * containers), which check it in their waits and unwind. */
extern volatile sig_atomic_t bench_interrupted;
void bench_catch_signals(void);

/* aep-bench podstart (podstart.c): pod create to Running on a real node
 * agent in a network namespace. Needs root. */
int bench_podstart(int argc, char **argv);

/* Append the params of a `create` of a small Pod named @name, already
 * bound to the node "bench-node" (so that the scheduler leaves it alone:
 * the store's write path is what is measured), with the annotation
 * data=@value (@len bytes) unless @value is NULL. */
void bench_pack_create_pod(struct aep_buf *b, const char *name, const char *value, size_t len);

/* The aep binary beside this aep-bench, into @out. */
int bench_default_aep(char *out, size_t size);

/* Latency samples → percentiles (sorts in place). */
double bench_percentile(double *v, size_t n, double p);

#endif /* AEP_BENCH_H */
