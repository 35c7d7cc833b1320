/* Node hosts on this machine (host.h): a network namespace and a veth
 * pair made with iproute2, an agent started in the namespace by a forked
 * child, and a purge that removes everything from the names alone.
 *
 * Why `ip` and not netlink: the few links and addresses of a host are
 * made once, each `ip` call's message goes straight into the error, and
 * node/net.c makes pod networks the same way. Entering the namespaces is
 * done with syscalls in the forked child (setns, unshare, mount), as
 * `nsenter --net` and `unshare -m --propagation private` would, but
 * without `ip netns exec`, which remounts /sys and so takes away the
 * cgroup mounts that crun needs.
 *
 * Failure modes. A child that cannot enter the namespaces or exec reports
 * why over a close-on-exec pipe before it exits (the caller sees "setns
 * ...: ..." and no pid). create() undoes its steps with the purge. The
 * purge kills by namespace membership and by the containers' cgroups, not
 * by pid files, so it also works after the process that made the host was
 * killed with SIGKILL and its agent with it. */
#include "node/host.h"
#include "node/node-int.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NETNS_DIR     "/run/netns"
#define KILL_WAIT_MS  5000 /* for processes to leave a namespace or cgroup */
#define LINK_WAIT_MS  3000 /* for a deleted link to disappear */
#define STATE_SUBDIRS "oci", "pods", "netns", "ipam"
#define RUN_OUT_MAX   (1024 * 1024)
#define ARGV_MAX      64

static const char *const state_subdirs[] = {STATE_SUBDIRS, NULL};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- checks ------------------------------------------------------------- */

static bool name_ok(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > max || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

/* "A.B.C.D/N": the address into @ip (16 bytes). */
static bool cidr_ok(const char *s, char *ip)
{
	char buf[32];
	struct in_addr in;
	const char *slash = s ? strchr(s, '/') : NULL;
	if (slash == NULL || (size_t)(slash - s) >= 16 || strlen(s) >= sizeof(buf))
		return false;
	memcpy(buf, s, (size_t)(slash - s));
	buf[slash - s] = '\0';
	char *end;
	long p = strtol(slash + 1, &end, 10);
	if (inet_pton(AF_INET, buf, &in) != 1 || *end != '\0' || slash[1] == '\0' || p < 1 ||
	    p > 32)
		return false;
	if (ip != NULL)
		memcpy(ip, buf, strlen(buf) + 1);
	return true;
}

static int check_config(const struct aep_nodehost_config *cfg, char node_ip[16],
			struct aep_error *e)
{
	if (!name_ok(cfg->netns, AEP_NODEHOST_NAME_MAX))
		return aep_errorf(e, AEP_EINVALID, "netns \"%s\": want 1 to %d of [A-Za-z0-9._-]",
				  cfg->netns ? cfg->netns : "", AEP_NODEHOST_NAME_MAX);
	if (!name_ok(cfg->link, AEP_NODEHOST_LINK_MAX))
		return aep_errorf(e, AEP_EINVALID, "link \"%s\": want 1 to %d of [A-Za-z0-9._-]",
				  cfg->link ? cfg->link : "", AEP_NODEHOST_LINK_MAX);
	if (cfg->bridge != NULL && !name_ok(cfg->bridge, AEP_NODEHOST_LINK_MAX))
		return aep_errorf(e, AEP_EINVALID, "bridge \"%s\": not a link name", cfg->bridge);
	if (cfg->dir == NULL || cfg->dir[0] != '/' || strlen(cfg->dir) > 3000)
		return aep_errorf(e, AEP_EINVALID, "dir: want an absolute path");
	if (cfg->bridge == NULL && !cidr_ok(cfg->host_addr, NULL))
		return aep_errorf(e, AEP_EINVALID, "host address \"%s\": want A.B.C.D/N",
				  cfg->host_addr ? cfg->host_addr : "");
	if (!cidr_ok(cfg->node_addr, node_ip))
		return aep_errorf(e, AEP_EINVALID, "node address \"%s\": want A.B.C.D/N",
				  cfg->node_addr ? cfg->node_addr : "");
	if (cfg->runtime != NULL && (cfg->runtime[0] == '\0' || strlen(cfg->runtime) > 255))
		return aep_errorf(e, AEP_EINVALID, "runtime: want a name or a path");
	return 0;
}

/* ---- running programs ----------------------------------------------------- */

/* @name searched in PATH (or taken as is when it has a '/') into @out. */
static int find_program(const char *name, char *out, size_t size, struct aep_error *e)
{
	if (strchr(name, '/') != NULL) {
		if (snprintf(out, size, "%s", name) >= (int)size)
			return aep_errorf(e, AEP_EINVALID, "%s: path too long", name);
		return 0;
	}
	const char *path = getenv("PATH");
	if (path == NULL || *path == '\0')
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	while (*path != '\0') {
		size_t n = strcspn(path, ":");
		if (n > 0 && snprintf(out, size, "%.*s/%s", (int)n, path, name) < (int)size &&
		    access(out, X_OK) == 0)
			return 0;
		path += n;
		if (*path == ':')
			path++;
	}
	return aep_errorf(e, AEP_EIO, "%s: not found in PATH", name);
}

/* In the forked child: report @what and errno over @fd, exit. */
static void child_fail(int fd, const char *what) __attribute__((noreturn));
static void child_fail(int fd, const char *what)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "%s: %s", what, strerror(errno));
	if (n > 0 && write(fd, msg, (size_t)n) < 0) {
		/* nobody to tell */
	}
	_exit(127);
}

struct spawn_opts {
	const char *netns; /* NULL: stay in the caller's */
	bool cgroup_prep;  /* aep_node_host_prepare(): what crun needs */
	bool die_with_parent;
	int out; /* stdout and stderr; -1: /dev/null */
};

/* fork, enter the namespaces, exec. Returns 0 with *@pid once the child
 * has exec'd, else an error with the child's reason. */
static int spawn(const struct spawn_opts *o, const char *const argv[], pid_t *pid,
		 struct aep_error *e)
{
	char path[4096], nspath[128];
	int rep[2];
	pid_t parent = getpid();

	if (find_program(argv[0], path, sizeof(path), e) != 0)
		return e->code;
	if (o->netns != NULL)
		snprintf(nspath, sizeof(nspath), NETNS_DIR "/%s", o->netns);
	if (pipe2(rep, O_CLOEXEC) != 0)
		return aep_errorf(e, AEP_EIO, "pipe: %s", strerror(errno));
	pid_t child = fork();
	if (child < 0) {
		close(rep[0]);
		close(rep[1]);
		return aep_errorf(e, AEP_EIO, "fork: %s", strerror(errno));
	}
	if (child == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		static const int sigs[] = {SIGPIPE, SIGINT, SIGTERM, SIGCHLD, SIGHUP, SIGQUIT};
		for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			signal(sigs[i], SIG_DFL);
		close(rep[0]);
		if (o->die_with_parent &&
		    (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent))
			_exit(1);
		setsid();
		if (o->netns != NULL) {
			int fd = open(nspath, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				child_fail(rep[1], nspath);
			if (setns(fd, CLONE_NEWNET) != 0)
				child_fail(rep[1], "setns");
			close(fd);
		}
		if (unshare(CLONE_NEWNS) != 0)
			child_fail(rep[1], "unshare(CLONE_NEWNS)");
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
			child_fail(rep[1], "make / private");
		if (o->cgroup_prep) {
			struct aep_error pe = {0};
			if (aep_node_host_prepare(&pe) != 0) {
				errno = EIO;
				child_fail(rep[1], pe.msg);
			}
		}
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null < 0)
			child_fail(rep[1], "/dev/null");
		int out = o->out >= 0 ? o->out : null;
		if (dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			child_fail(rep[1], "dup2");
		execv(path, (char *const *)argv);
		child_fail(rep[1], path);
	}
	close(rep[1]);
	char msg[256];
	ssize_t n;
	while ((n = read(rep[0], msg, sizeof(msg) - 1)) < 0 && errno == EINTR)
		;
	close(rep[0]);
	if (n > 0) {
		msg[n] = '\0';
		while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
			;
		return aep_errorf(e, AEP_EIO, "%s: %s", argv[0], msg);
	}
	*pid = child;
	return 0;
}

/* Wait for @pid at most @timeout_ms (0: forever); SIGKILL after it.
 * Returns the exit code (128 + signal), or -1 after the timeout. */
static int wait_child(pid_t pid, unsigned timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int ws;
	for (;;) {
		pid_t r = waitpid(pid, &ws, timeout_ms ? WNOHANG : 0);
		if (r == pid)
			return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
		if (r < 0 && errno != EINTR)
			return -1;
		if (timeout_ms && now_ms() >= deadline) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
				;
			return -1;
		}
		if (timeout_ms)
			sleep_ms(10);
	}
}

/* spawn() with stdout and stderr collected into @out; waits. */
static int run_in(const struct spawn_opts *base, const char *const argv[], unsigned timeout_ms,
		  struct aep_buf *out, int *status, struct aep_error *e)
{
	struct spawn_opts o = *base;
	int fds[2];
	pid_t pid = -1;

	if (pipe2(fds, O_CLOEXEC) != 0)
		return aep_errorf(e, AEP_EIO, "pipe: %s", strerror(errno));
	o.out = fds[1];
	int rv = spawn(&o, argv, &pid, e);
	close(fds[1]);
	if (rv != 0) {
		close(fds[0]);
		return rv;
	}
	int64_t deadline = now_ms() + (timeout_ms ? timeout_ms : 3600 * 1000);
	for (;;) {
		struct pollfd p = {fds[0], POLLIN, 0};
		int64_t left = deadline - now_ms();
		if (left <= 0)
			break;
		int r = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		char chunk[4096];
		ssize_t n = read(fds[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (out != NULL && out->len + (size_t)n <= RUN_OUT_MAX)
			aep_buf_append(out, chunk, (size_t)n);
	}
	close(fds[0]);
	int64_t left = deadline - now_ms();
	*status = wait_child(pid, left > 1 ? (unsigned)left : 1);
	return 0;
}

int aep_nodehost_spawn(const struct aep_nodehost *h, const char *const argv[], const char *log,
		       bool die_with_parent, pid_t *pid, struct aep_error *e)
{
	struct spawn_opts o = {h->netns, false, die_with_parent, -1};
	if (log != NULL) {
		o.out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (o.out < 0)
			return aep_errorf(e, AEP_EIO, "open %s: %s", log, strerror(errno));
	}
	int rv = spawn(&o, argv, pid, e);
	if (o.out >= 0)
		close(o.out);
	return rv;
}

int aep_nodehost_run(const struct aep_nodehost *h, const char *const argv[], unsigned timeout_ms,
		     struct aep_buf *out, int *status, struct aep_error *e)
{
	struct spawn_opts o = {h->netns, false, false, -1};
	return run_in(&o, argv, timeout_ms, out, status, e);
}

/* ---- ip ------------------------------------------------------------------- */

int aep_nodehost_ip(const char *netns, const char *const args[], struct aep_error *e)
{
	const char *argv[ARGV_MAX];
	size_t n = 0;
	argv[n++] = "ip";
	if (netns != NULL) {
		argv[n++] = "-n";
		argv[n++] = netns;
	}
	for (size_t i = 0; args[i] != NULL; i++) {
		if (n + 1 >= ARGV_MAX)
			return aep_errorf(e, AEP_EINVALID, "ip: too many arguments");
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	return node__run_ok(argv, e);
}

static bool link_exists(const char *name)
{
	return if_nametoindex(name) != 0;
}

int aep_nodehost_link_delete(const char *name, struct aep_error *e)
{
	if (!link_exists(name))
		return 0;
	const char *del[] = {"link", "del", name, NULL};
	int rv = aep_nodehost_ip(NULL, del, e);
	/* Gone already (a veth goes with its peer's namespace): fine. */
	if (rv != 0 && !link_exists(name))
		rv = 0;
	int64_t deadline = now_ms() + LINK_WAIT_MS;
	while (rv == 0 && link_exists(name) && now_ms() < deadline)
		sleep_ms(10);
	if (rv == 0 && link_exists(name))
		rv = aep_errorf(e, AEP_EIO, "link %s: still there after deleting it", name);
	return rv;
}

int aep_nodehost_bridge_create(const char *name, const char *addr, struct aep_error *e)
{
	if (!name_ok(name, AEP_NODEHOST_LINK_MAX))
		return aep_errorf(e, AEP_EINVALID, "bridge \"%s\": not a link name", name);
	if (!cidr_ok(addr, NULL))
		return aep_errorf(e, AEP_EINVALID, "bridge address \"%s\": want A.B.C.D/N", addr);
	if (aep_nodehost_link_delete(name, e) != 0)
		return e->code;
	const char *add[] = {"link", "add", name, "type", "bridge", NULL};
	const char *ad[] = {"addr", "add", addr, "dev", name, NULL};
	const char *up[] = {"link", "set", name, "up", NULL};
	if (aep_nodehost_ip(NULL, add, e) != 0)
		return aep_error_prefix(e, "bridge %s", name);
	if (aep_nodehost_ip(NULL, ad, e) != 0 || aep_nodehost_ip(NULL, up, e) != 0) {
		struct aep_error ignore = {0};
		aep_nodehost_link_delete(name, &ignore);
		return aep_error_prefix(e, "bridge %s", name);
	}
	return 0;
}

/* ---- purge -------------------------------------------------------------- */

/* SIGKILL every process whose network namespace is @ino on @dev, until
 * none is left. Returns how many were still there at the end. */
static size_t kill_netns_members(dev_t dev, ino_t ino)
{
	int64_t deadline = now_ms() + KILL_WAIT_MS;
	size_t left;
	do {
		left = 0;
		DIR *d = opendir("/proc");
		if (d == NULL)
			return 0;
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			char path[300];
			struct stat st;
			if (de->d_name[0] < '1' || de->d_name[0] > '9')
				continue;
			snprintf(path, sizeof(path), "/proc/%s/ns/net", de->d_name);
			if (stat(path, &st) != 0 || st.st_dev != dev || st.st_ino != ino)
				continue;
			pid_t pid = (pid_t)strtol(de->d_name, NULL, 10);
			if (pid == getpid())
				continue;
			kill(pid, SIGKILL);
			/* Our own child (an agent whose host struct is gone)? */
			waitpid(pid, NULL, WNOHANG);
			left++;
		}
		closedir(d);
		if (left > 0)
			sleep_ms(20);
	} while (left > 0 && now_ms() < deadline);
	return left;
}

/* The pids in every controller's cgroup @id: SIGKILL them, then remove
 * the cgroups (rmdir only removes empty ones). Returns how many cgroups
 * could not be removed. */
static size_t kill_cgroup(const char *id)
{
	int64_t deadline = now_ms() + KILL_WAIT_MS;
	size_t left;
	do {
		left = 0;
		DIR *d = opendir("/sys/fs/cgroup");
		if (d == NULL)
			return 0;
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			char path[NODE__PATH_MAX];
			struct aep_error ig;
			if (de->d_name[0] == '.' ||
			    node__path(path, &ig, "/sys/fs/cgroup/%s/%s", de->d_name, id) != 0 ||
			    rmdir(path) == 0 || errno == ENOENT || errno == ENOTDIR)
				continue;
			char procs[NODE__PATH_MAX + 16];
			snprintf(procs, sizeof(procs), "%s/cgroup.procs", path);
			FILE *f = fopen(procs, "re");
			if (f != NULL) {
				char num[32];
				while (fgets(num, sizeof(num), f) != NULL) {
					long pid = strtol(num, NULL, 10);
					if (pid > 0)
						kill((pid_t)pid, SIGKILL);
				}
				fclose(f);
			}
			left++;
		}
		closedir(d);
		if (left > 0)
			sleep_ms(20);
	} while (left > 0 && now_ms() < deadline);
	return left;
}

/* Containers in the runtime's state directory DIR/oci: their processes
 * (through their cgroups), the runtime's record of them, their cgroups. */
static int purge_containers(const struct aep_nodehost_config *cfg, bool netns_exists,
			    struct aep_error *e)
{
	char oci[NODE__PATH_MAX];
	int rv = 0;
	if (node__path(oci, e, "%s/oci", cfg->dir) != 0)
		return e->code;
	DIR *d = opendir(oci);
	if (d == NULL)
		return 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN))
			continue;
		kill_cgroup(de->d_name);
		/* The runtime forgets it: in the node's namespaces, as the
		 * agent ran it (crun wants the cgroup mounts arranged so). */
		const char *argv[] = {cfg->runtime ? cfg->runtime : "crun",
				      "--root",
				      oci,
				      "delete",
				      "--force",
				      de->d_name,
				      NULL};
		struct spawn_opts o = {netns_exists ? cfg->netns : NULL, true, false, -1};
		struct aep_error ig = {0};
		int st;
		run_in(&o, argv, 10000, NULL, &st, &ig);
		if (kill_cgroup(de->d_name) > 0 && rv == 0)
			rv = aep_errorf(e, AEP_EIO, "container %s: its cgroup stays busy",
					de->d_name);
	}
	closedir(d);
	return rv;
}

/* Octal escapes of /proc/self/mountinfo ("\040" for a space) undone. */
static void unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r != '\0'; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* Lazily unmount everything at or under @dir in this mount namespace,
 * deepest first. */
static void umount_under(const char *dir)
{
	size_t dlen = strlen(dir);
	for (int round = 0; round < 64; round++) {
		FILE *f = fopen("/proc/self/mountinfo", "re");
		if (f == NULL)
			return;
		char line[8192], best[NODE__PATH_MAX] = "";
		while (fgets(line, sizeof(line), f) != NULL) {
			char mp[NODE__PATH_MAX];
			/* id parent major:minor root mountpoint ... */
			if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
				continue;
			unescape(mp);
			if (strncmp(mp, dir, dlen) != 0 || (mp[dlen] != '\0' && mp[dlen] != '/'))
				continue;
			if (strlen(mp) > strlen(best))
				snprintf(best, sizeof(best), "%s", mp);
		}
		fclose(f);
		if (best[0] == '\0' || umount2(best, MNT_DETACH) != 0)
			return;
	}
}

int aep_nodehost_purge(const struct aep_nodehost_config *cfg, struct aep_error *e)
{
	char nspath[128], path[NODE__PATH_MAX];
	struct stat st;
	int rv = 0;
	struct aep_error ig = {0};

	if (!name_ok(cfg->netns, AEP_NODEHOST_NAME_MAX) ||
	    !name_ok(cfg->link, AEP_NODEHOST_LINK_MAX) || cfg->dir == NULL || cfg->dir[0] != '/')
		return aep_errorf(e, AEP_EINVALID, "purge: bad names");
	snprintf(nspath, sizeof(nspath), NETNS_DIR "/%s", cfg->netns);
	bool have_ns = stat(nspath, &st) == 0;
	/* The agent, the containers' monitors, runtime calls: whatever runs
	 * in the namespace; first, so that nothing restarts a container. */
	if (have_ns && kill_netns_members(st.st_dev, st.st_ino) > 0)
		rv = aep_errorf(e, AEP_EIO, "netns %s: processes survive SIGKILL", cfg->netns);
	struct aep_error ce = {0};
	if (purge_containers(cfg, have_ns, &ce) != 0 && rv == 0)
		rv = aep_errorf(e, ce.code, "%s", ce.msg);
	if (have_ns || lstat(nspath, &st) == 0) {
		umount2(nspath, MNT_DETACH);
		if (unlink(nspath) != 0 && errno != ENOENT && rv == 0)
			rv = aep_errorf(e, AEP_EIO, "unlink %s: %s", nspath, strerror(errno));
	}
	struct aep_error le = {0};
	if (aep_nodehost_link_delete(cfg->link, &le) != 0 && rv == 0)
		rv = aep_errorf(e, le.code, "%s", le.msg);
	umount_under(cfg->dir);
	for (size_t i = 0; state_subdirs[i] != NULL; i++) {
		struct aep_error re = {0};
		if (node__path(path, &ig, "%s/%s", cfg->dir, state_subdirs[i]) == 0 &&
		    node__rm_rf(path, &re) != 0 && rv == 0)
			rv = aep_errorf(e, re.code, "%s", re.msg);
	}
	return rv;
}

/* ---- create and destroy --------------------------------------------------- */

/* IPv4 forwarding on in the namespace: a child enters it and writes the
 * namespace's own sysctl. */
static int netns_forward(const char *netns, struct aep_error *e)
{
	char nspath[128];
	snprintf(nspath, sizeof(nspath), NETNS_DIR "/%s", netns);
	pid_t pid = fork();
	if (pid < 0)
		return aep_errorf(e, AEP_EIO, "fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(nspath, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, CLONE_NEWNET) != 0)
			_exit(1);
		int s = open("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC);
		_exit(s >= 0 && write(s, "1\n", 2) == 2 ? 0 : 2);
	}
	int code = wait_child(pid, 5000);
	if (code != 0)
		return aep_errorf(e, AEP_EIO, "netns %s: cannot turn forwarding on (%d)", netns,
				  code);
	return 0;
}

static void copy_config(struct aep_nodehost *h, const struct aep_nodehost_config *cfg)
{
	snprintf(h->netns, sizeof(h->netns), "%s", cfg->netns);
	snprintf(h->link, sizeof(h->link), "%s", cfg->link);
	snprintf(h->dir, sizeof(h->dir), "%s", cfg->dir);
	snprintf(h->runtime, sizeof(h->runtime), "%s", cfg->runtime ? cfg->runtime : "crun");
}

static void config_of(const struct aep_nodehost *h, struct aep_nodehost_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->netns = h->netns;
	cfg->link = h->link;
	cfg->dir = h->dir;
	cfg->runtime = h->runtime;
}

int aep_nodehost_create(const struct aep_nodehost_config *cfg, struct aep_nodehost **out,
			struct aep_error *e)
{
	char node_ip[16];
	struct aep_error ig = {0};

	if (check_config(cfg, node_ip, e) != 0)
		return e->code;
	if (geteuid() != 0)
		return aep_errorf(e, AEP_EFORBIDDEN, "node host %s: must run as root", cfg->netns);
	if (aep_nodehost_purge(cfg, e) != 0)
		return aep_error_prefix(e, "node host %s: leftovers of an earlier run", cfg->netns);
	struct aep_nodehost *h = aep_calloc(1, sizeof(*h));
	if (h == NULL)
		return aep_errorf(e, AEP_ENOMEM, "node host %s: out of memory", cfg->netns);
	copy_config(h, cfg);
	snprintf(h->node_ip, sizeof(h->node_ip), "%s", node_ip);
	if (node__mkdir_p(cfg->dir, 0755, e) != 0)
		goto err_after_alloc;

	const char *ns_add[] = {"netns", "add", cfg->netns, NULL};
	if (aep_nodehost_ip(NULL, ns_add, e) != 0)
		goto err_after_alloc;
	const char *veth[] = {"link", "add",  cfg->link, "type",     "veth", "peer",
			      "name", "eth0", "netns",	 cfg->netns, NULL};
	if (aep_nodehost_ip(NULL, veth, e) != 0)
		goto err_after_netns;
	if (cfg->bridge != NULL) {
		const char *br[] = {"link", "set", cfg->link, "master", cfg->bridge, "up", NULL};
		if (aep_nodehost_ip(NULL, br, e) != 0)
			goto err_after_netns;
	} else {
		const char *ad[] = {"addr", "add", cfg->host_addr, "dev", cfg->link, NULL};
		const char *up[] = {"link", "set", cfg->link, "up", NULL};
		if (aep_nodehost_ip(NULL, ad, e) != 0 || aep_nodehost_ip(NULL, up, e) != 0)
			goto err_after_netns;
	}
	const char *lo[] = {"link", "set", "lo", "up", NULL};
	const char *ad[] = {"addr", "add", cfg->node_addr, "dev", "eth0", NULL};
	const char *up[] = {"link", "set", "eth0", "up", NULL};
	if (aep_nodehost_ip(cfg->netns, lo, e) != 0 || aep_nodehost_ip(cfg->netns, ad, e) != 0 ||
	    aep_nodehost_ip(cfg->netns, up, e) != 0)
		goto err_after_netns;
	if (cfg->forward && netns_forward(cfg->netns, e) != 0)
		goto err_after_netns;
	*out = h;
	return 0;

err_after_netns:
	aep_nodehost_purge(cfg, &ig);
err_after_alloc:
	aep_free(h);
	return aep_error_prefix(e, "node host %s", cfg->netns);
}

int aep_nodehost_agent_start(struct aep_nodehost *h, const struct aep_nodehost_agent *a,
			     struct aep_error *e)
{
	const char *argv[ARGV_MAX];
	size_t n = 0;
	char ca[NODE__PATH_MAX];

	if (h->agent > 0)
		return aep_errorf(e, AEP_ECONFLICT, "node host %s: an agent runs already",
				  h->netns);
	if (a->aep == NULL || a->name == NULL || a->servers == NULL || a->ca == NULL)
		return aep_errorf(e, AEP_EINVALID, "agent: aep, name, servers and ca are required");
	snprintf(ca, sizeof(ca), "%s", a->ca);
	argv[n++] = a->aep;
	argv[n++] = "node";
	argv[n++] = "--name";
	argv[n++] = a->name;
	argv[n++] = "--server";
	argv[n++] = a->servers;
	argv[n++] = "--dir";
	argv[n++] = h->dir;
	argv[n++] = "--ca";
	argv[n++] = ca;
	argv[n++] = "--runtime";
	argv[n++] = h->runtime;
	argv[n++] = "--bridge";
	argv[n++] = a->bridge ? a->bridge : "aepbr0";
	if (a->token != NULL) {
		argv[n++] = "--token";
		argv[n++] = a->token;
	}
	if (a->labels != NULL) {
		argv[n++] = "--labels";
		argv[n++] = a->labels;
	}
	for (size_t i = 0; a->extra_args != NULL && a->extra_args[i] != NULL; i++) {
		if (n + 1 >= ARGV_MAX)
			return aep_errorf(e, AEP_EINVALID, "agent: too many arguments");
		argv[n++] = a->extra_args[i];
	}
	argv[n] = NULL;
	pid_t pid = -1;
	if (aep_nodehost_spawn(h, argv, a->log, a->die_with_parent, &pid, e) != 0)
		return aep_error_prefix(e, "node host %s: agent", h->netns);
	h->agent = pid;
	h->agent_status = 0;
	return 0;
}

bool aep_nodehost_agent_ended(struct aep_nodehost *h)
{
	int ws;
	if (h->agent <= 0)
		return false;
	if (waitpid(h->agent, &ws, WNOHANG) != h->agent)
		return false;
	h->agent = 0;
	h->agent_status = ws;
	return true;
}

int aep_nodehost_agent_stop(struct aep_nodehost *h, unsigned timeout_ms)
{
	if (h->agent <= 0)
		return -1;
	kill(h->agent, SIGTERM);
	int64_t deadline = now_ms() + timeout_ms;
	while (!aep_nodehost_agent_ended(h)) {
		if (now_ms() >= deadline) {
			kill(h->agent, SIGKILL);
			int ws = 0;
			while (waitpid(h->agent, &ws, 0) < 0 && errno == EINTR)
				;
			h->agent = 0;
			h->agent_status = ws;
			break;
		}
		sleep_ms(10);
	}
	return h->agent_status;
}

int aep_nodehost_destroy(struct aep_nodehost *h, struct aep_error *e)
{
	struct aep_nodehost_config cfg;
	if (h == NULL)
		return 0;
	if (h->agent > 0) {
		kill(h->agent, SIGKILL);
		while (waitpid(h->agent, NULL, 0) < 0 && errno == EINTR)
			;
		h->agent = 0;
	}
	config_of(h, &cfg);
	int rv = aep_nodehost_purge(&cfg, e);
	aep_free(h);
	return rv;
}
