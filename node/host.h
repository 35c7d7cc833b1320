/* node/host.h: a node host on this machine, for `aep up` and aep-bench.
 *
 * A node host is what a container host would be, made of Linux
 * namespaces: a network namespace (/run/netns/NETNS) joined to the
 * machine by a veth pair (LINK on the machine, eth0 inside), addresses on
 * both ends (or the machine's end on a bridge of the caller's), and an
 * `aep node` agent that runs in it, in a private mount namespace of its
 * own, with its directory DIR. Everything it makes has the caller's
 * names, so the caller keeps them unique (derive them from a port or a
 * pid) and can find them again after a crash.
 *
 * Usage (root; blocking calls, a few `ip` runs each):
 *
 *	struct aep_nodehost_config cfg = {
 *		.netns = "aepb-4242-n1",	// unique; /run/netns/NAME
 *		.link = "aepb4242n1",		// unique; at most 15 bytes
 *		.dir = "/tmp/bench/n1",		// the agent's --dir
 *		.host_addr = "10.97.3.1/30",	// LINK's address ...
 *		.node_addr = "10.97.3.2/30",	// ... and eth0's, inside
 *	};
 *	struct aep_nodehost *h;
 *	struct aep_error e = {0};
 *	if (aep_nodehost_create(&cfg, &h, &e) != 0)	// purges leftovers first
 *		fail(e.msg);
 *	// masters listen on 10.97.3.1:PORT, their certificates name
 *	// 10.97.3.1; the image store: aep_image_load(cfg.dir, "busybox", tar)
 *	struct aep_nodehost_agent a = {
 *		.aep = "/path/to/aep", .name = "n1", .servers = "10.97.3.1:7001",
 *		.token = "abcdef.0123456789abcdef", .ca = "PKI/ca.crt",
 *		.labels = "region=r1,zone=z1", .log = "/tmp/bench/n1.log",
 *	};
 *	if (aep_nodehost_agent_start(h, &a, &e) != 0)
 *		fail(e.msg);
 *	...
 *	aep_nodehost_destroy(h, &e);	// agent, containers, processes, netns, link
 *
 * After a crash of the process that made a host, aep_nodehost_purge(&cfg)
 * (or aep_nodehost_create with the same names, which purges first)
 * removes what the crash left: the agent and every other process in the
 * namespace, the runtime's containers (found through DIR/oci) and their
 * cgroups, the namespace, the link, mounts under DIR and the runtime's
 * state under DIR (oci/, pods/, netns/, ipam/). DIR itself, DIR/pki (the
 * node's identity) and DIR/images (its image store) stay: a node host made
 * again with the same DIR is the same node with the same images. */
#ifndef AEP_NODE_HOST_H
#define AEP_NODE_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "lib/lib.h"

#define AEP_NODEHOST_NAME_MAX 63 /* netns names */
#define AEP_NODEHOST_LINK_MAX 15 /* Linux interface names */

struct aep_nodehost_config {
	const char *netns;     /* required: [A-Za-z0-9._-], at most 63 bytes */
	const char *link;      /* required: the machine's end of the veth pair */
	const char *dir;       /* required: absolute; created if missing */
	const char *bridge;    /* NULL: LINK gets host_addr; else LINK is put on this
				  bridge (which must exist) and host_addr is unused */
	const char *host_addr; /* "A.B.C.D/N" (required without a bridge) */
	const char *node_addr; /* required: "A.B.C.D/N" of eth0 in the namespace */
	const char *runtime;   /* the OCI runtime the agent uses, for clean-up:
				  "crun" (default), "runc" or a path */
	bool forward;	       /* IPv4 forwarding on inside the namespace, so that
				  routes through the node reach its pods */
};

/* A live node host. Fields are read-only for the caller. */
struct aep_nodehost {
	char netns[AEP_NODEHOST_NAME_MAX + 1];
	char link[AEP_NODEHOST_LINK_MAX + 1];
	char dir[4096];
	char node_ip[16]; /* node_addr without the prefix length */
	char runtime[256];
	pid_t agent;	  /* 0: no agent running */
	int agent_status; /* the last agent's wait status, once it ended */
};

/* Make the host: purge leftovers of the same names (aep_nodehost_purge),
 * create DIR, the namespace with lo up, the veth pair, the addresses, and
 * forwarding if asked. On failure everything made is removed again and
 * @e says which step failed ("ip link add ...: exit 2: RTNETLINK answers:
 * File exists"). AEP_EFORBIDDEN when not root, AEP_EINVALID for a bad
 * configuration (nothing is touched), AEP_EIO, AEP_ENOMEM. */
int aep_nodehost_create(const struct aep_nodehost_config *cfg, struct aep_nodehost **out,
			struct aep_error *e);

/* The agent's command line: `AEP node --name NAME --server SERVERS --dir
 * DIR --ca CA [--token TOKEN] [--labels LABELS] --runtime RUNTIME --bridge
 * BRIDGE [EXTRA...]`. */
struct aep_nodehost_agent {
	const char *aep;	       /* required: path of the aep binary */
	const char *name;	       /* required: the Node's name */
	const char *servers;	       /* required: masters' API addresses, comma separated */
	const char *ca;		       /* required: the cluster CA */
	const char *token;	       /* bootstrap token; NULL once DIR/pki/node.crt exists */
	const char *labels;	       /* may be NULL */
	const char *bridge;	       /* the pod bridge inside the namespace; "aepbr0" */
	const char *log;	       /* stdout and stderr, appended; NULL: /dev/null */
	const char *const *extra_args; /* NULL-terminated, may be NULL */
	bool die_with_parent;	       /* SIGTERM to the agent when the caller dies */
};

/* Start `aep node` in the host (aep_nodehost_spawn). One agent at a time:
 * AEP_ECONFLICT while one runs. */
int aep_nodehost_agent_start(struct aep_nodehost *h, const struct aep_nodehost_agent *a,
			     struct aep_error *e);
/* SIGTERM, then SIGKILL after @timeout_ms; waits for it. Returns its wait
 * status (0 = exit code 0), or -1 when no agent ran. The agent leaves its
 * containers running (a new agent on DIR adopts them). */
int aep_nodehost_agent_stop(struct aep_nodehost *h, unsigned timeout_ms);
/* Reap the agent if it has ended (never blocks): true, with its wait
 * status in h->agent_status and h->agent 0, when it has. For callers that
 * collect their children themselves: never waitpid(-1) while hosts run. */
bool aep_nodehost_agent_ended(struct aep_nodehost *h);

/* Run @argv (argv[0] searched in PATH) in the host: in its network
 * namespace and in a private mount namespace of its own (mount propagation
 * private), in a new session, with stdin from /dev/null and stdout and
 * stderr appended to @log (NULL: /dev/null), signals unblocked. With
 * @die_with_parent the process gets SIGTERM when the caller dies. Returns
 * at once with the pid in *@pid; the caller waits for it. */
int aep_nodehost_spawn(const struct aep_nodehost *h, const char *const argv[], const char *log,
		       bool die_with_parent, pid_t *pid, struct aep_error *e);
/* Run @argv in the host like aep_nodehost_spawn and wait at most
 * @timeout_ms for it; its stdout and stderr go into @out (may be NULL; at
 * most 1 MiB kept). *@status gets the exit code (128 + signal; -1 when
 * killed for the timeout). Returns 0 when it ran, whatever its exit code. */
int aep_nodehost_run(const struct aep_nodehost *h, const char *const argv[], unsigned timeout_ms,
		     struct aep_buf *out, int *status, struct aep_error *e);

/* Stop the agent (SIGKILL), purge everything (as aep_nodehost_purge) and
 * free @h, whatever the purge says. Returns the purge's result. NULL is
 * fine (0). */
int aep_nodehost_destroy(struct aep_nodehost *h, struct aep_error *e);

/* Remove what a host with @cfg's names may have left; missing pieces are
 * fine, so it can run any number of times. Returns 0, or the first error
 * that left something behind (with what in @e); it goes on past errors. */
int aep_nodehost_purge(const struct aep_nodehost_config *cfg, struct aep_error *e);

/* ---- helpers for the machine's side -------------------------------------- */

/* Create bridge @name with address @addr ("A.B.C.D/N"), up. An existing
 * one of that name is deleted first (a leftover). */
int aep_nodehost_bridge_create(const char *name, const char *addr, struct aep_error *e);
/* Delete bridge (or any link) @name; a missing one is fine. */
int aep_nodehost_link_delete(const char *name, struct aep_error *e);
/* Run `ip ARGS...` (@args NULL-terminated), in namespace @netns when not
 * NULL (`ip -n NETNS`); want exit code 0, else AEP_EIO with ip's message. */
int aep_nodehost_ip(const char *netns, const char *const args[], struct aep_error *e);

#endif /* AEP_NODE_HOST_H */
