/* node: the pod runtime of the node agent.
 *
 * It makes the pods that the masters bind to this node real: an image
 * store of root file systems, per-pod sandboxes (a network namespace with
 * a veth pair on the node's bridge and an address from the node's pod
 * subnet), and per-container OCI bundles run by crun (default) or runc.
 *
 * Everything it keeps lives under one directory (cfg.dir):
 *
 *   images/NAME/rootfs      an image's root file system (aep_image_load)
 *   ipam/A.B.C.D            an allocated pod address; holds the pod's uid
 *   netns/UID               the pod's network namespace (a bind mount)
 *   oci/                    the OCI runtime's state (its --root)
 *   pods/UID/pod.mp         the pod object as last run (msgpack)
 *   pods/UID/net            "IP HOSTVETH"
 *   pods/UID/NAME.log       a container's stdout and stderr, appended
 *                           across restarts
 *   pods/UID/c/NAME/        the container's bundle (config.json, rootfs,
 *                           overlay upper/ and work/), its monitor's pid
 *                           and exit files and its restart count
 *
 * Each container run has a monitor: a detached /bin/sh that runs the OCI
 * runtime in the foreground ("crun run"), with the log file as its stdout
 * and stderr, and writes the exit code to c/NAME/exit when it returns. It
 * lives in its own session, so the agent can die (kill -9) and come back:
 * aep_runtime_adopt() re-reads the directory and the runtime's state and
 * takes the running containers over untouched. The runtime learns that a
 * container started (the runtime's --pid-file appears) and ended (the exit
 * file appears) through inotify on the container's directory.
 *
 * Process: the runtime uses one libuv loop and never blocks it. Runtime
 * calls, `ip`, mounts and file work run in libuv's thread pool or in child
 * processes. crun refuses cgroup v2 in hybrid mode: call
 * aep_node_host_prepare() first thing in the agent (before any thread).
 * All functions must be called on the loop's thread. */
#ifndef AEP_NODE_H
#define AEP_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "lib/lib.h"
#include "state/state.h"

/* ---- host --------------------------------------------------------------- */

/* Move the calling process into a private mount namespace and unmount the
 * cgroup2 mount of a hybrid host (/sys/fs/cgroup/unified), as crun needs
 * (a small private tmpfs takes its place, for what crun writes there).
 * Must run before the process starts any thread (unshare(CLONE_NEWNS) is
 * refused in a threaded process). Returns 0, AEP_EFORBIDDEN (not root) or
 * AEP_EIO with a message. */
int aep_node_host_prepare(struct aep_error *e);

/* ---- images (blocking: call from a worker thread or before the loop) ---- */

#define AEP_IMAGE_NAME_MAX 128

/* Import the root file system tarball @file (any format and compression
 * that libarchive reads) as image @name into DIR/images/NAME/rootfs. The
 * tarball is extracted into a temporary directory that is renamed into
 * place, so a half-extracted image is never visible. Entries with ".."
 * components or that would be written through a symlink are refused
 * (AEP_EINVALID). An image already loaded under @name: AEP_EEXISTS.
 * Names are the container's "image" field: [A-Za-z0-9._:/@-]{1,128}. */
int aep_image_load(const char *dir, const char *name, const char *file, struct aep_error *e);
/* True if image @name is in DIR's store. */
bool aep_image_exists(const char *dir, const char *name);
/* Write a tarball at @file with a busybox root file system: /bin/busybox
 * (a copy of @busybox, default "/bin/busybox", which must be static) and
 * one symlink per applet it lists, /etc/passwd and /etc/group (root and
 * nobody), /tmp (1777), /www/index.html ("hello from aep\n"), and empty
 * /proc, /sys, /dev, /root. */
int aep_image_build_busybox(const char *file, const char *busybox, struct aep_error *e);

/* ---- status ------------------------------------------------------------- */

/* Phases are state.h's enum aep_pod_phase (aep_pod_phase_name()). */

enum aep_ctr_state {
	AEP_CTR_WAITING,
	AEP_CTR_RUNNING,
	AEP_CTR_TERMINATED,
};

#define AEP_CTR_ID_MAX 192

struct aep_container_status {
	char name[64];
	char id[AEP_CTR_ID_MAX]; /* the OCI runtime's container id */
	enum aep_ctr_state state;
	char reason[32];     /* waiting: ContainerCreating, CrashLoopBackOff, ...;
				terminated: Completed, Error */
	int exit_code;	     /* terminated: this run's; waiting after a run: the
				last run's; else 0 */
	bool has_run;	     /* ran at least once (exit_code is meaningful) */
	unsigned restarts;   /* restartCount */
	int64_t started_ns;  /* Unix ns of the current or last run's start */
	int64_t finished_ns; /* terminated: when it ended */
};

struct aep_pod_status {
	char uid[40];
	char ns[64];
	char name[AEP_NAME_MAX + 1];
	int64_t generation;
	enum aep_pod_phase phase;
	char pod_ip[16]; /* "" until the sandbox is up */
	char message[160];
	int64_t start_ns; /* when the runtime accepted the pod */
	size_t ncontainers;
	struct aep_container_status containers[];
};

/* One allocation; aep_free() it. */
void aep_pod_status_free(struct aep_pod_status *st);

/* Pack @st as a Pod's "status" map as state/schema.h declares it (phase,
 * podIP, startTime, containerStatuses with containerID "crun://ID",
 * restartCount, ready and one of waiting/running/terminated). */
void aep_pod_status_pack(const struct aep_pod_status *st, const char *runtime_name,
			 msgpack_packer *pk);

/* ---- the runtime -------------------------------------------------------- */

struct aep_runtime;

/* Called on the loop whenever a pod's status changes (a phase, a
 * container state, a restart count, the address). @st is borrowed for the
 * call. When a killed pod is gone, @st is NULL and @uid names it. */
typedef void (*aep_pod_status_cb)(struct aep_runtime *rt, const char *uid,
				  const struct aep_pod_status *st, void *data);

struct aep_runtime_config {
	const char *dir;	     /* required; created if missing */
	const char *runtime;	     /* "crun" (default), "runc", or a path to one */
	const char *bridge;	     /* required, e.g. "aepbr0" (at most 15 bytes) */
	const char *pod_cidr;	     /* required, IPv4, e.g. "10.88.1.0/24" (/8 to /30) */
	const char *link_prefix;     /* host veth names: PREFIX + hex index; at most 8
				    bytes; default "aepv" */
	const char *id_prefix;	     /* container ids: PREFIX + uid + "-" + name;
				    at most 32 bytes; default "aep-" */
	uint64_t backoff_base_ms;    /* restart backoff: base, doubling... (10000) */
	uint64_t backoff_max_ms;     /* ...up to this (300000) */
	int64_t grace_ms;	     /* 0: the pod's terminationGracePeriodSeconds
				     (default 30 s); > 0: this for every pod */
	aep_pod_status_cb status_cb; /* may be NULL */
	void *data;
};

/* Create a runtime on @loop. Checks the configuration, creates DIR's
 * layout and the bridge with the subnet's first address (blocking, once,
 * a few `ip` calls; call it at start). Returns 0, AEP_EINVALID (bad
 * configuration), AEP_EIO or AEP_ENOMEM with a message in @e. */
int aep_runtime_new(uv_loop_t *loop, const struct aep_runtime_config *cfg, struct aep_runtime **out,
		    struct aep_error *e);

/* Take over what an earlier runtime on the same DIR left: pods with their
 * running containers (same ids, untouched), exit codes written while no
 * agent ran (the restart policy then applies), restart counts. Half-made
 * pods (the sandbox never finished) are torn down, and containers in the
 * OCI runtime's state that belong to no pod are killed and deleted. @cb
 * (may be NULL) fires once with 0 or an error code, or AEP_ECANCELED when
 * the runtime closes first. Call it once, before any pod_run. */
typedef void (*aep_adopt_cb)(struct aep_runtime *rt, int status, void *data);
int aep_runtime_adopt(struct aep_runtime *rt, aep_adopt_cb cb, void *data);

/* Run @pod (a Pod object; it must have metadata.uid and at least one
 * container). Returns at once; the sandbox and the containers come up in
 * the background and the status callback tells how it goes. Idempotent:
 * a pod already known by uid is left as it is (a newer generation is only
 * recorded: a pod's containers are immutable, as in Kubernetes). A pod
 * that is being killed: AEP_ECONFLICT. Bad objects: AEP_EINVALID. The
 * runtime takes its own reference to @pod. */
int aep_runtime_pod_run(struct aep_runtime *rt, const struct aep_object *pod, struct aep_error *e);

/* Stop pod @uid: SIGTERM to its containers, SIGKILL after the grace
 * period, then delete the containers, the overlays, the veth pair, the
 * network namespace, the address (back to the pool) and pods/UID. @cb (may
 * be NULL) fires once when all that is done (0), or with AEP_ECANCELED if
 * the runtime closes first. Killing a pod that is already being killed
 * adds @cb to the wait. Unknown uid: AEP_ENOTFOUND (and @cb never fires). */
typedef void (*aep_kill_cb)(struct aep_runtime *rt, const char *uid, int status, void *data);
int aep_runtime_pod_kill(struct aep_runtime *rt, const char *uid, aep_kill_cb cb, void *data);

/* A copy of pod @uid's status (aep_pod_status_free). AEP_ENOTFOUND or
 * AEP_ENOMEM. */
int aep_runtime_pod_status(struct aep_runtime *rt, const char *uid, struct aep_pod_status **out);
/* Call @cb for each pod (status borrowed), in no particular order; stop
 * when it returns non-zero (returned). */
typedef int (*aep_pod_visit_cb)(const struct aep_pod_status *st, void *data);
int aep_runtime_pod_list(struct aep_runtime *rt, aep_pod_visit_cb cb, void *data);

/* ---- logs and exec ------------------------------------------------------ */

/* Stream the log of @container in pod @uid. @cb fires with chunks
 * (@len > 0, @status 0), then exactly once with @len 0 and the final
 * status: 0 at the end of the file (without @follow), or, with @follow,
 * when the container has stopped and its log is drained; AEP_ECANCELED
 * after aep_logs_stop() or when the runtime closes. The caller owns @req
 * until the final call. Unknown pod or container: AEP_ENOTFOUND (no
 * callback). */
struct aep_logs_req;
typedef void (*aep_logs_cb)(struct aep_logs_req *req, int status, const char *data, size_t len);
struct aep_logs_req {
	void *data; /* for the caller */
	/* private */
	struct aep_runtime *rt;
	aep_logs_cb cb;
	void *priv;
};
int aep_runtime_logs(struct aep_runtime *rt, const char *uid, const char *container, bool follow,
		     struct aep_logs_req *req, aep_logs_cb cb);
void aep_logs_stop(struct aep_logs_req *req);

/* Run @argv (NULL-terminated) in a running container, like `kubectl exec`
 * without a terminal: stdin is empty, stdout and stderr are collected (up
 * to 1 MiB each; more is cut). @cb fires once: @status 0 with the
 * command's @exit_code (128 + signal when killed), or an error code
 * (AEP_ECANCELED when the runtime closes first; the command is then
 * killed). The buffers are borrowed for the call. */
struct aep_exec_req;
typedef void (*aep_exec_cb)(struct aep_exec_req *req, int status, int exit_code,
			    const struct aep_buf *out, const struct aep_buf *err);
struct aep_exec_req {
	void *data;
	/* private */
	struct aep_runtime *rt;
	aep_exec_cb cb;
	void *priv;
};
int aep_runtime_exec(struct aep_runtime *rt, const char *uid, const char *container,
		     const char *const argv[], struct aep_exec_req *req, aep_exec_cb cb,
		     struct aep_error *e);

/* Close the runtime without touching the containers (an agent that stops
 * or restarts leaves them running; aep_runtime_adopt takes them back).
 * Pending callbacks fire with AEP_ECANCELED; @cb (may be NULL) fires once
 * every handle has closed and every background job has returned, after
 * which the memory is gone. */
typedef void (*aep_close_cb)(struct aep_runtime *rt, void *data);
void aep_runtime_close(struct aep_runtime *rt, aep_close_cb cb, void *data);

/* ---- the agent (node/agent.c) -------------------------------------------- */

/* `aep node ...` (argv[0] is "node"): the node agent (docs/NODES.md), or
 * `aep node image load|build-busybox ...`. Returns the exit code. */
int aep_node_main(int argc, char **argv);

#endif /* AEP_NODE_H */
