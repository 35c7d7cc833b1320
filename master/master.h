/* master: one AEP master peer's process wiring. The API handlers over the
 * store and Raft, forwarding of writes and linearizable reads to the
 * leader, the member table, and /livez /readyz /metrics over HTTP. */
#ifndef AEP_MASTER_H
#define AEP_MASTER_H

/* "aep master --name N --dir D --listen ADDR --peer ADDR
 *  --initial-cluster m1=PEER,... [--http ADDR] [--pki DIR]"; argv[0] is
 * "master". Runs until SIGINT/SIGTERM; returns the exit status. */
int aep_master_main(int argc, char **argv);

#endif /* AEP_MASTER_H */
