/* master: one AEP master peer's process wiring. The API handlers over the
 * store and Raft, forwarding of writes and linearizable reads to the
 * leader, the member table, and /livez /readyz /metrics over HTTP. */
#ifndef AEP_MASTER_H
#define AEP_MASTER_H

/* "aep master --name N --dir D --listen ADDR --peer ADDR
 *  --initial-cluster m1=PEER,... [--http ADDR] [--pki DIR]"; argv[0] is
 * "master". Runs until SIGINT/SIGTERM; returns the exit status. */
int aep_master_main(int argc, char **argv);

/* Called first with the process's whole argv ("aep master ..."): unless
 * AEP_MASTER_HUGEPAGES=off or GLIBC_TUNABLES already says, sets glibc's
 * malloc to back the heap with transparent huge pages (a tunable read at
 * process start) and executes the same command again; returns only when
 * it did not (then the master runs on 4 KiB pages). */
void aep_master_use_hugepages(char **argv);

#endif /* AEP_MASTER_H */
