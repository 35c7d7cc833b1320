/* aep: the single binary. "aep master" runs a master peer, "aep node" a
 * node agent; every other verb is the CLI (or "aep up", which starts a
 * local cluster). */
#include "cli/cli.h"
#include "master/master.h"
#include "node/node.h"

#include <string.h>

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "master") == 0) {
		aep_master_use_hugepages(argv);
		return aep_master_main(argc - 1, argv + 1);
	}
	if (argc >= 2 && strcmp(argv[1], "node") == 0)
		return aep_node_main(argc - 1, argv + 1);
	return aep_cli_main(argc, argv);
}
