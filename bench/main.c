/* aep-bench SUBCOMMAND ...: AEP's benchmarks. Each prints its figures,
 * the last line being KEY=VALUE pairs for scripts. */
#include "bench/bench.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: aep-bench store --masters 3 --clients C --objects N [--conns K]\n"
		   "                       [--value-size BYTES] [--base-port P] [--aep PATH]\n");
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "store") == 0)
		return bench_store(argc - 1, argv + 1);
	usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
	return 2;
}
