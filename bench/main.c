/* aep-bench SUBCOMMAND ...: AEP's benchmarks. Each prints its figures,
 * the last line being KEY=VALUE pairs for scripts. */
#include "bench/bench.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: aep-bench store --masters 3 --clients C --objects N [--conns K]\n"
		"                       [--value-size BYTES] [--base-port P] [--aep PATH]\n"
		"       aep-bench sched --masters 3 --nodes N --pods P [--regions 3] [--zones 3]\n"
		"                       [--rcs 100] [--cpu-per-pod 100m] [--mem-per-pod 128Mi]\n"
		"                       [--conns 16] [--window 2000] [--timeout 600]\n"
		"                       [--base-port P] [--aep PATH]\n"
		"                       [--self-bind | --self-bind-bad]\n"
		"       aep-bench failover [--masters 3] [--runs 5] [--base-port P] [--aep PATH]\n"
		"       aep-bench podstart [--pods 100] [--concurrency 1] [--masters 3]\n"
		"                          [--watch-follower] [--timeout 600] [--base-port P]\n"
		"                          [--aep PATH]   (root)\n");
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "store") == 0)
		return bench_store(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "sched") == 0)
		return bench_sched(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "failover") == 0)
		return bench_failover(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "podstart") == 0)
		return bench_podstart(argc - 1, argv + 1);
	usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
	return 2;
}
