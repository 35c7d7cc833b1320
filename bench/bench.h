/* aep-bench: benchmarks that print figures (never timed assertions). */
#ifndef AEP_BENCH_H
#define AEP_BENCH_H

#include <stddef.h>
#include <sys/types.h>

#include "net/net.h"

#define BENCH_MAX_MASTERS 9

/* A throwaway cluster of `aep master` processes on 127.0.0.1 in a
 * temporary directory, removed by bench_cluster_stop (also on failure). */
struct bench_cluster {
	char dir[256];
	char aep[4096]; /* the aep binary */
	unsigned n;
	unsigned base; /* API ports base..base+n-1, Raft base+100.. */
	pid_t pids[BENCH_MAX_MASTERS];
	char leader_addr[64];
	unsigned leader;     /* index of the leader when the run started */
	struct aep_tls *tls; /* admin client TLS */
	char cluster[512];   /* --initial-cluster */
	int keep;
};

int bench_cluster_start(struct bench_cluster *c, unsigned n, unsigned base, const char *aep);
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

/* The aep binary beside this aep-bench, into @out. */
int bench_default_aep(char *out, size_t size);

/* Latency samples → percentiles (sorts in place). */
double bench_percentile(double *v, size_t n, double p);

#endif /* AEP_BENCH_H */
