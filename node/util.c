/* Blocking helpers for node/'s worker-thread jobs: running a program and
 * collecting its output, and small file operations. None of these may run
 * on the event loop's thread. */
#include "node/node-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int node__run(const char *const argv[], struct aep_buf *out, int *status, struct aep_error *e)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int fds[2];
	pid_t pid;
	int rc, ws;

	if (pipe2(fds, O_CLOEXEC) != 0)
		return aep_errorf(e, AEP_EIO, "%s: pipe: %s", argv[0], strerror(errno));
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
	/* libuv blocks no signals, but the child must not inherit a mask or
	 * ignored signals (SIGPIPE is ignored in every AEP process). */
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	rc = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(fds[1]);
	if (rc != 0) {
		close(fds[0]);
		return aep_errorf(e, AEP_EIO, "%s: %s", argv[0], strerror(rc));
	}
	for (;;) {
		char chunk[4096];
		ssize_t n = read(fds[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (out != NULL && out->len + (size_t)n <= NODE__OUT_MAX)
			aep_buf_append(out, chunk, (size_t)n);
	}
	close(fds[0]);
	while (waitpid(pid, &ws, 0) < 0) {
		if (errno != EINTR)
			return aep_errorf(e, AEP_EIO, "%s: waitpid: %s", argv[0], strerror(errno));
	}
	*status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
	return 0;
}

int node__run_ok(const char *const argv[], struct aep_error *e)
{
	struct aep_buf out;
	int status = -1, rc;

	aep_buf_init(&out);
	rc = node__run(argv, &out, &status, e);
	if (rc == 0 && status != 0) {
		struct aep_buf cmd;
		aep_buf_init(&cmd);
		for (size_t i = 0; argv[i] != NULL && i < 8; i++)
			aep_buf_printf(&cmd, "%s%s", i ? " " : "", argv[i]);
		while (out.len > 0 && (out.data[out.len - 1] == '\n'))
			out.len--;
		rc = aep_errorf(e, AEP_EIO, "%.*s: exit %d: %.*s", (int)cmd.len,
				cmd.data ? cmd.data : "", status, (int)out.len,
				out.data ? out.data : "");
		aep_buf_free(&cmd);
	}
	aep_buf_free(&out);
	return rc;
}

int node__path(char *buf, struct aep_error *e, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, NODE__PATH_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= NODE__PATH_MAX)
		return aep_errorf(e, AEP_EINVALID, "path too long");
	return 0;
}

int node__mkdir_p(const char *path, mode_t mode, struct aep_error *e)
{
	char tmp[NODE__PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(tmp))
		return aep_errorf(e, AEP_EINVALID, "mkdir: bad path");
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
			return aep_errorf(e, AEP_EIO, "mkdir %s: %s", tmp, strerror(errno));
		*p = '/';
	}
	if (mkdir(tmp, mode) != 0 && errno != EEXIST)
		return aep_errorf(e, AEP_EIO, "mkdir %s: %s", tmp, strerror(errno));
	return 0;
}

static int rm_at(int dirfd, const char *name, dev_t dev, struct aep_error *e)
{
	struct stat st;
	int fd;
	DIR *d;
	struct dirent *de;
	int rc = 0;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT
			   ? 0
			   : aep_errorf(e, AEP_EIO, "stat %s: %s", name, strerror(errno));
	if (!S_ISDIR(st.st_mode)) {
		if (unlinkat(dirfd, name, 0) != 0 && errno != ENOENT)
			return aep_errorf(e, AEP_EIO, "unlink %s: %s", name, strerror(errno));
		return 0;
	}
	if (st.st_dev != dev)
		return aep_errorf(e, AEP_EIO, "rm %s: a mount point", name);
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return aep_errorf(e, AEP_EIO, "open %s: %s", name, strerror(errno));
	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return aep_errorf(e, AEP_EIO, "opendir %s: %s", name, strerror(errno));
	}
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		rc = rm_at(fd, de->d_name, dev, e);
	}
	closedir(d);
	if (rc != 0)
		return rc;
	if (unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
		return aep_errorf(e, AEP_EIO, "rmdir %s: %s", name, strerror(errno));
	return 0;
}

int node__rm_rf(const char *path, struct aep_error *e)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return errno == ENOENT
			   ? 0
			   : aep_errorf(e, AEP_EIO, "stat %s: %s", path, strerror(errno));
	return rm_at(AT_FDCWD, path, st.st_dev, e);
}

static int write_file(const char *path, const void *data, size_t len, bool sync,
		      struct aep_error *e)
{
	char tmp[NODE__PATH_MAX];
	const char *p = data;
	int fd;

	if (node__path(tmp, e, "%s.tmp", path) != 0)
		return e->code;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return aep_errorf(e, AEP_EIO, "open %s: %s", tmp, strerror(errno));
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			aep_errorf(e, AEP_EIO, "write %s: %s", tmp, strerror(errno));
			goto err_after_open;
		}
		p += n;
		len -= (size_t)n;
	}
	if (sync && fsync(fd) != 0) {
		aep_errorf(e, AEP_EIO, "fsync %s: %s", tmp, strerror(errno));
		goto err_after_open;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		aep_errorf(e, AEP_EIO, "rename %s: %s", path, strerror(errno));
		unlink(tmp);
		return e->code;
	}
	return 0;

err_after_open:
	close(fd);
	unlink(tmp);
	return e->code;
}

int node__write_file(const char *path, const void *data, size_t len, struct aep_error *e)
{
	return write_file(path, data, len, true, e);
}

int node__write_scratch(const char *path, const void *data, size_t len, struct aep_error *e)
{
	return write_file(path, data, len, false, e);
}

int node__read_file(const char *path, size_t max, struct aep_buf *b, struct aep_error *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return aep_errorf(e, errno == ENOENT ? AEP_ENOTFOUND : AEP_EIO, "open %s: %s", path,
				  strerror(errno));
	for (;;) {
		char chunk[4096];
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			return aep_errorf(e, AEP_EIO, "read %s: %s", path, strerror(errno));
		}
		if (n == 0)
			break;
		if (b->len + (size_t)n > max) {
			close(fd);
			return aep_errorf(e, AEP_ETOOLARGE, "%s: over %zu bytes", path, max);
		}
		if (aep_buf_append(b, chunk, (size_t)n) != 0) {
			close(fd);
			return aep_errorf(e, AEP_ENOMEM, "read %s: out of memory", path);
		}
	}
	close(fd);
	return 0;
}

bool node__exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

bool node__is_mounted(const char *path)
{
	struct stat a, b;
	char parent[NODE__PATH_MAX];
	struct aep_error e;

	if (stat(path, &a) != 0 || node__path(parent, &e, "%s/..", path) != 0 ||
	    stat(parent, &b) != 0)
		return false;
	/* A mount point sits on another device than its parent, or (a bind
	 * mount of the same file system) at the root of its mount: then the
	 * inode differs from what the parent directory lists. The mountinfo
	 * check below covers the second case. */
	if (a.st_dev != b.st_dev)
		return true;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (f == NULL)
		return false;
	char line[8192];
	bool found = false;
	size_t plen = strlen(path);
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		/* id parent major:minor root mountpoint ... */
		char *p = line;
		for (int field = 0; field < 4 && p != NULL; field++) {
			p = strchr(p, ' ');
			if (p != NULL)
				p++;
		}
		if (p == NULL)
			continue;
		if (strncmp(p, path, plen) == 0 && p[plen] == ' ')
			found = true;
	}
	fclose(f);
	return found;
}
