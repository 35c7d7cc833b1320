/* node: internal interfaces shared by the files of node/. */
#ifndef AEP_NODE_INT_H
#define AEP_NODE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "node/node.h"

#define NODE__PATH_MAX 4096
#define NODE__OUT_MAX  (1024 * 1024) /* output kept from one helper call */

/* ---- util.c: blocking helpers for worker threads ------------------------ */

/* Run @argv (argv[0] searched in PATH) with stdin from /dev/null and
 * stdout plus stderr into @out (may be NULL; at most NODE__OUT_MAX kept),
 * wait for it. *@status gets the exit code (128 + signal if killed).
 * Returns 0 when it ran (whatever its exit code), else AEP_EIO. Safe in
 * worker threads: waits for its own pid only. */
int node__run(const char *const argv[], struct aep_buf *out, int *status, struct aep_error *e);
/* node__run that wants exit code 0; else AEP_EIO with "ARGV0 ...: OUTPUT". */
int node__run_ok(const char *const argv[], struct aep_error *e);

int node__mkdir_p(const char *path, mode_t mode, struct aep_error *e);
/* rm -rf that does not cross mount points (it refuses to descend into a
 * directory on another device, so a mounted overlay is never emptied). */
int node__rm_rf(const char *path, struct aep_error *e);
/* Write @len bytes to @path atomically (temporary file, fsync, rename). */
int node__write_file(const char *path, const void *data, size_t len, struct aep_error *e);
/* The same without fsync, for files that a crash may lose (scratch). */
int node__write_scratch(const char *path, const void *data, size_t len, struct aep_error *e);
/* Read a whole small file (at most @max bytes) into @b. AEP_ENOTFOUND when
 * it does not exist. */
int node__read_file(const char *path, size_t max, struct aep_buf *b, struct aep_error *e);
bool node__exists(const char *path);
/* True if @path is a mount point in this mount namespace. */
bool node__is_mounted(const char *path);
/* snprintf into a NODE__PATH_MAX buffer; AEP_EINVALID when too long. */
int node__path(char *buf, struct aep_error *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- net.c: the node bridge, addresses and pod sandboxes (blocking) ----- */

struct node__net {
	char bridge[16];
	char link_prefix[9];
	uint32_t network; /* host order */
	unsigned prefix;
	char gateway[16];
	char dir[NODE__PATH_MAX];
};

int node__net_init(struct node__net *n, const char *dir, const char *bridge, const char *cidr,
		   const char *link_prefix, struct aep_error *e);
/* Create the bridge with the gateway address if it is missing; up. */
int node__net_bridge_ensure(const struct node__net *n, struct aep_error *e);
/* Give pod @uid an address (reusing the one it already holds), make its
 * network namespace at @netns, a veth pair (host end on the bridge, eth0
 * with the address and a default route inside) and record "IP VETH" in
 * @netfile. Fills @ip and @veth. Idempotent for the same uid. On failure
 * whatever was made is undone. */
int node__net_setup(const struct node__net *n, const char *uid, const char *netns,
		    const char *netfile, char ip[16], char veth[16], struct aep_error *e);
/* Undo node__net_setup from what is on disk; missing pieces are fine. */
void node__net_teardown(const struct node__net *n, const char *uid, const char *netns,
			const char *netfile);
/* Release addresses whose pod directory is gone (after a crash). */
void node__net_gc(const struct node__net *n, const char *pods_dir);

/* ---- bundle.c: OCI bundles and root file systems (blocking) ------------ */

struct node__ctr_spec {
	const char *name;
	const char *image;
	bool read_only_root;
};

/* Write DIR/pods/UID/c/NAME/config.json for container @index of @pod. */
int node__bundle_write(const char *dir, const char *uid, const struct aep_object *pod,
		       unsigned index, const char *netns, struct aep_error *e);
/* Make the container's root file system ready: an overlay of the image
 * (lower) with upper/ and work/ mounted at rootfs/ unless it is mounted
 * already; nothing for a read-only root (the image is bound read-only). */
int node__rootfs_mount(const char *dir, const char *uid, const struct node__ctr_spec *c,
		       struct aep_error *e);
void node__rootfs_umount(const char *dir, const char *uid, const char *name);
/* DIR/images/NAME with NAME made file-name safe ('/' and ':' -> '_'). */
int node__image_dir(const char *dir, const char *image, char *out, struct aep_error *e);

#endif /* AEP_NODE_INT_H */
