/* Pod sandbox networking on one node: a Linux bridge holding the gateway
 * (first) address of the node's pod subnet, and per pod a network
 * namespace with a veth pair: the host end on the bridge, eth0 inside with
 * the pod's address and a default route through the gateway.
 *
 * Why iproute2 through exec and not libnl: this is what the reference CNI
 * plugins' shell-outs and test suites do, every step is one `ip` command
 * whose error text goes straight into the pod's status message, the
 * namespace switch for the in-pod half happens in a child (nsenter), so
 * no agent thread ever changes its network namespace, and all of it runs
 * in worker threads anyway (a pod start costs three execs: unshare,
 * `ip -batch` on the host, `ip -batch` inside the namespace).
 *
 * Addresses (host-local IPAM, as the CNI plugin of that name): one file
 * per allocated address in DIR/ipam, created with O_EXCL and holding the
 * pod's uid, so concurrent allocations in several workers never collide
 * and a restarted agent finds the same allocations. Namespaces are bind
 * mounts at DIR/netns/UID made by `unshare --net=FILE`. */
#include "node/node-int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

static void ip_str(uint32_t a, char out[16])
{
	snprintf(out, 16, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

int node__net_init(struct node__net *n, const char *dir, const char *bridge, const char *cidr,
		   const char *link_prefix, struct aep_error *e)
{
	char addr[32];
	const char *slash = strchr(cidr, '/');
	struct in_addr in;
	unsigned long long prefix;

	memset(n, 0, sizeof(*n));
	if (bridge == NULL || bridge[0] == '\0' || strlen(bridge) > 15 || strchr(bridge, '/') ||
	    strchr(bridge, ' '))
		return aep_errorf(e, AEP_EINVALID, "bridge: must be 1 to 15 bytes");
	if (strlen(link_prefix) > 8 || link_prefix[0] == '\0' || strchr(link_prefix, '/'))
		return aep_errorf(e, AEP_EINVALID, "link prefix: must be 1 to 8 bytes");
	if (slash == NULL || (size_t)(slash - cidr) >= sizeof(addr))
		return aep_errorf(e, AEP_EINVALID, "pod CIDR %s: want A.B.C.D/N", cidr);
	memcpy(addr, cidr, (size_t)(slash - cidr));
	addr[slash - cidr] = '\0';
	if (inet_pton(AF_INET, addr, &in) != 1)
		return aep_errorf(e, AEP_EINVALID, "pod CIDR %s: bad address", cidr);
	if (aep_parse_uint(slash + 1, "pod CIDR prefix", 8, 30, &prefix, e) != 0)
		return e->code;
	n->prefix = (unsigned)prefix;
	n->network = ntohl(in.s_addr) & (0xffffffffu << (32 - n->prefix));
	if (n->network != ntohl(in.s_addr))
		return aep_errorf(e, AEP_EINVALID, "pod CIDR %s: host bits set", cidr);
	ip_str(n->network + 1, n->gateway);
	snprintf(n->bridge, sizeof(n->bridge), "%s", bridge);
	snprintf(n->link_prefix, sizeof(n->link_prefix), "%s", link_prefix);
	if (strlen(dir) >= sizeof(n->dir))
		return aep_errorf(e, AEP_EINVALID, "dir: too long");
	snprintf(n->dir, sizeof(n->dir), "%s", dir);
	return 0;
}

int node__net_bridge_ensure(const struct node__net *n, struct aep_error *e)
{
	char gw[32];
	int status;

	snprintf(gw, sizeof(gw), "%s/%u", n->gateway, n->prefix);
	const char *show[] = {"ip", "link", "show", "dev", n->bridge, NULL};
	if (node__run(show, NULL, &status, e) != 0)
		return e->code;
	if (status != 0) {
		/* A fixed address: a bridge that takes its ports' lowest MAC
		 * changes it as pods come and go, and every pod's ARP entry
		 * for the gateway goes stale. */
		char mac[24];
		uint32_t g = n->network + 1;
		snprintf(mac, sizeof(mac), "02:ae:%02x:%02x:%02x:%02x", g >> 24, (g >> 16) & 255,
			 (g >> 8) & 255, g & 255);
		const char *add[] = {"ip", "link", "add",    n->bridge, "address",
				     mac,  "type", "bridge", NULL};
		if (node__run_ok(add, e) != 0)
			return aep_error_prefix(e, "bridge %s", n->bridge);
	}
	const char *addr[] = {"ip", "addr", "replace", gw, "dev", n->bridge, NULL};
	const char *up[] = {"ip", "link", "set", n->bridge, "up", NULL};
	if (node__run_ok(addr, e) != 0 || node__run_ok(up, e) != 0)
		return aep_error_prefix(e, "bridge %s", n->bridge);
	return 0;
}

/* The address file of @a. */
static int ipam_path(const struct node__net *n, uint32_t a, char *out, struct aep_error *e)
{
	char ip[16];
	ip_str(a, ip);
	return node__path(out, e, "%s/ipam/%s", n->dir, ip);
}

/* Claim a free address for @uid: scan the subnet from a rotating start so
 * a just-released address is not handed out again at once. */
static int ipam_alloc(const struct node__net *n, const char *uid, uint32_t *out,
		      struct aep_error *e)
{
	static _Atomic uint32_t next;
	uint32_t size = 1u << (32 - n->prefix);
	uint32_t usable = size - 3; /* network, gateway, broadcast */
	uint32_t start = next % usable;
	char path[NODE__PATH_MAX];

	for (uint32_t i = 0; i < usable; i++) {
		uint32_t a = n->network + 2 + (start + i) % usable;
		if (ipam_path(n, a, path, e) != 0)
			return e->code;
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0)
			return aep_errorf(e, AEP_EIO, "ipam: %s: %s", path, strerror(errno));
		size_t len = strlen(uid);
		bool ok = write(fd, uid, len) == (ssize_t)len && fsync(fd) == 0;
		close(fd);
		if (!ok) {
			unlink(path);
			return aep_errorf(e, AEP_EIO, "ipam: write %s: %s", path, strerror(errno));
		}
		next = (start + i + 1) % usable;
		*out = a;
		return 0;
	}
	return aep_errorf(e, AEP_EUNAVAILABLE, "ipam: no free address in %s/%u", n->gateway,
			  n->prefix);
}

/* Free @ip if @uid holds it. */
static void ipam_release(const struct node__net *n, const char *uid, const char *ip)
{
	char path[NODE__PATH_MAX];
	struct aep_buf b;
	struct aep_error e;

	if (node__path(path, &e, "%s/ipam/%s", n->dir, ip) != 0)
		return;
	aep_buf_init(&b);
	if (node__read_file(path, 64, &b, &e) == 0 && b.len == strlen(uid) &&
	    memcmp(b.data, uid, b.len) == 0)
		unlink(path);
	aep_buf_free(&b);
}

static int read_netfile(const char *netfile, char ip[16], char veth[16])
{
	struct aep_buf b;
	struct aep_error e;
	int rc = -1;

	aep_buf_init(&b);
	if (node__read_file(netfile, 64, &b, &e) == 0 && aep_buf_append(&b, "", 1) == 0 &&
	    sscanf(b.data, "%15s %15s", ip, veth) == 2)
		rc = 0;
	aep_buf_free(&b);
	return rc;
}

int node__net_setup(const struct node__net *n, const char *uid, const char *netns,
		    const char *netfile, char ip[16], char veth[16], struct aep_error *e)
{
	char line[64], batch[NODE__PATH_MAX], buf[1024], cidr[32];
	uint32_t a = 0;
	int fd;

	/* A retry after a failure or a crash: start from nothing. */
	if (read_netfile(netfile, ip, veth) == 0)
		node__net_teardown(n, uid, netns, netfile);

	if (ipam_alloc(n, uid, &a, e) != 0)
		return e->code;
	ip_str(a, ip);
	snprintf(veth, 16, "%s%x", n->link_prefix, a - n->network);
	snprintf(line, sizeof(line), "%s %s\n", ip, veth);
	if (node__write_file(netfile, line, strlen(line), e) != 0)
		goto err_after_alloc;

	fd = open(netns, O_RDONLY | O_CREAT | O_CLOEXEC, 0444);
	if (fd < 0) {
		aep_errorf(e, AEP_EIO, "netns %s: %s", netns, strerror(errno));
		goto err_after_netfile;
	}
	close(fd);
	char nsopt[NODE__PATH_MAX + 8];
	snprintf(nsopt, sizeof(nsopt), "--net=%s", netns);
	const char *mk[] = {"unshare", nsopt, "true", NULL};
	if (node__run_ok(mk, e) != 0)
		goto err_after_netns;

	/* The host half. The node may still have the address's previous
	 * owner in its neighbour table: forget it. */
	if (node__path(batch, e, "%s.batch", netfile) != 0)
		goto err_after_netns;
	snprintf(buf, sizeof(buf),
		 "neigh flush to %s dev %s\n"
		 "link add %s type veth peer name eth0 netns %s\n"
		 "link set %s master %s up\n",
		 ip, n->bridge, veth, netns, veth, n->bridge);
	if (node__write_scratch(batch, buf, strlen(buf), e) != 0)
		goto err_after_netns;
	const char *host[] = {"ip", "-batch", batch, NULL};
	if (node__run_ok(host, e) != 0)
		goto err_after_veth;

	/* The pod half, in the namespace. */
	snprintf(cidr, sizeof(cidr), "%s/%u", ip, n->prefix);
	snprintf(buf, sizeof(buf),
		 "link set lo up\n"
		 "addr add %s dev eth0\n"
		 "link set eth0 up\n"
		 "route add default via %s dev eth0\n",
		 cidr, n->gateway);
	if (node__write_scratch(batch, buf, strlen(buf), e) != 0)
		goto err_after_veth;
	const char *pod[] = {"nsenter", nsopt, "ip", "-batch", batch, NULL};
	if (node__run_ok(pod, e) != 0)
		goto err_after_veth;
	unlink(batch);
	return 0;

err_after_veth:
	unlink(batch);
	{
		const char *del[] = {"ip", "link", "del", veth, NULL};
		int st;
		struct aep_error ignore;
		node__run(del, NULL, &st, &ignore);
	}
err_after_netns:
	umount2(netns, MNT_DETACH);
	unlink(netns);
err_after_netfile:
	unlink(netfile);
err_after_alloc:
	ipam_release(n, uid, ip);
	ip[0] = veth[0] = '\0';
	return aep_error_prefix(e, "pod network");
}

void node__net_teardown(const struct node__net *n, const char *uid, const char *netns,
			const char *netfile)
{
	char ip[16], veth[16];
	struct aep_error e;
	int st;

	if (read_netfile(netfile, ip, veth) == 0) {
		/* Deleting one end of a veth pair deletes both; it may be gone
		 * already (/sys may show another namespace: just try). */
		const char *del[] = {"ip", "link", "del", veth, NULL};
		node__run(del, NULL, &st, &e);
	}
	while (umount2(netns, MNT_DETACH) == 0)
		;
	unlink(netns);
	if (read_netfile(netfile, ip, veth) == 0) {
		ipam_release(n, uid, ip);
		unlink(netfile);
	}
}

void node__net_gc(const struct node__net *n, const char *pods_dir)
{
	char path[NODE__PATH_MAX], pod[NODE__PATH_MAX];
	struct aep_error e;
	DIR *d;
	struct dirent *de;

	if (node__path(path, &e, "%s/ipam", n->dir) != 0 || (d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		struct aep_buf b;
		char file[NODE__PATH_MAX];
		if (de->d_name[0] == '.')
			continue;
		aep_buf_init(&b);
		if (node__path(file, &e, "%s/%s", path, de->d_name) == 0 &&
		    node__read_file(file, 64, &b, &e) == 0 && aep_buf_append(&b, "", 1) == 0 &&
		    node__path(pod, &e, "%s/%s", pods_dir, b.data) == 0 && !node__exists(pod))
			unlink(file);
		aep_buf_free(&b);
	}
	closedir(d);
}
