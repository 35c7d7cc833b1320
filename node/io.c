/* Logs and exec: requests that stream or collect a container's output.
 *
 * Logs read DIR/pods/UID/NAME.log with uv_fs calls (the thread pool); with
 * follow, a 200 ms timer looks for new bytes once the end is reached (as
 * `tail -f` polls) until the container's run is over and its log drained.
 * Exec spawns "RUNTIME exec ID ARGV..." with two pipes and answers when
 * the process has exited and both pipes are at their end.
 *
 * Every request is on the runtime's list until its final callback; closing
 * the runtime cancels them all (an exec'd command gets SIGKILL) and waits
 * for their handles to close before the runtime's memory goes. */
#include "node/runtime-int.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define LOGS_CHUNK   65536
#define LOGS_POLL_MS 200

enum io_kind { IO_LOGS, IO_EXEC };

struct node__io {
	struct node__io *next, *prev;
	struct aep_runtime *rt;
	enum io_kind kind;
	bool canceled;
	bool finishing;
	unsigned open; /* handles not yet closed */
	char uid[40];
	char cname[64];
	/* logs */
	struct aep_logs_req *lreq;
	char path[NODE__PATH_MAX];
	bool follow;
	uv_file fd;
	int64_t off;
	bool fs_busy;
	uv_fs_t fs;
	uv_timer_t timer;
	int status;
	char buf[LOGS_CHUNK];
	/* exec */
	struct aep_exec_req *ereq;
	uv_process_t proc;
	uv_pipe_t out, err;
	struct aep_buf bout, berr;
	bool exited, out_eof, err_eof;
	int exit_code;
};

static void io_link(struct aep_runtime *rt, struct node__io *io)
{
	io->rt = rt;
	io->next = rt->ios;
	if (rt->ios != NULL)
		rt->ios->prev = io;
	rt->ios = io;
}

static void io_unlink(struct node__io *io)
{
	struct aep_runtime *rt = io->rt;

	if (io->prev != NULL)
		io->prev->next = io->next;
	else
		rt->ios = io->next;
	if (io->next != NULL)
		io->next->prev = io->prev;
}

/* ---- logs --------------------------------------------------------------- */

static void logs_read(struct node__io *io);

static void logs_closed(uv_handle_t *h)
{
	struct node__io *io = h->data;
	struct aep_runtime *rt = io->rt;
	struct aep_logs_req *req = io->lreq;

	int status = io->status;

	io_unlink(io);
	aep_free(io);
	req->priv = NULL;
	req->cb(req, status, NULL, 0);
	node__rt_maybe_free(rt);
}

static void logs_finish(struct node__io *io, int status)
{
	uv_fs_t close_req;

	if (io->finishing)
		return;
	io->finishing = true;
	if (io->fd >= 0) {
		uv_fs_close(io->rt->loop, &close_req, io->fd, NULL);
		uv_fs_req_cleanup(&close_req);
		io->fd = -1;
	}
	io->status = status;
	uv_close((uv_handle_t *)&io->timer, logs_closed);
}

/* Is the container whose log @io follows still (or about to be) running? */
static bool logs_more(struct node__io *io)
{
	struct node__pod *p = node__pod_find(io->rt, io->uid);
	struct node__ctr *c = p ? node__ctr_find(p, io->cname) : NULL;

	if (c == NULL || p->killing)
		return false;
	if (c->run == NODE__RUN_STARTING || c->run == NODE__RUN_RUNNING || c->busy)
		return true;
	return !c->has_run; /* not started yet */
}

static void logs_tick(uv_timer_t *t)
{
	struct node__io *io = t->data;
	logs_read(io);
}

static void logs_read_done(uv_fs_t *fs)
{
	struct node__io *io = fs->data;
	ssize_t n = fs->result;

	uv_fs_req_cleanup(fs);
	io->fs_busy = false;
	if (io->canceled) {
		logs_finish(io, AEP_ECANCELED);
		return;
	}
	if (n < 0) {
		logs_finish(io, AEP_EIO);
		return;
	}
	if (n > 0) {
		io->off += n;
		io->lreq->cb(io->lreq, 0, io->buf, (size_t)n);
		if (io->canceled) { /* the callback stopped it */
			logs_finish(io, AEP_ECANCELED);
			return;
		}
		logs_read(io);
		return;
	}
	if (!io->follow || !logs_more(io)) {
		logs_finish(io, 0);
		return;
	}
	uv_timer_start(&io->timer, logs_tick, LOGS_POLL_MS, 0);
}

static void logs_open_done(uv_fs_t *fs)
{
	struct node__io *io = fs->data;
	ssize_t r = fs->result;

	uv_fs_req_cleanup(fs);
	io->fs_busy = false;
	if (io->canceled) {
		if (r >= 0)
			io->fd = (uv_file)r;
		logs_finish(io, AEP_ECANCELED);
		return;
	}
	if (r < 0) {
		/* No log yet: the container has not started. */
		if (io->follow && logs_more(io))
			uv_timer_start(&io->timer, logs_tick, LOGS_POLL_MS, 0);
		else
			logs_finish(io, 0);
		return;
	}
	io->fd = (uv_file)r;
	logs_read(io);
}

static void logs_read(struct node__io *io)
{
	uv_buf_t b = uv_buf_init(io->buf, sizeof(io->buf));
	int rc;

	io->fs.data = io;
	io->fs_busy = true;
	if (io->fd < 0)
		rc = uv_fs_open(io->rt->loop, &io->fs, io->path, O_RDONLY | O_CLOEXEC, 0,
				logs_open_done);
	else
		rc = uv_fs_read(io->rt->loop, &io->fs, io->fd, &b, 1, io->off, logs_read_done);
	if (rc != 0) {
		io->fs_busy = false;
		logs_finish(io, AEP_EIO);
	}
}

int aep_runtime_logs(struct aep_runtime *rt, const char *uid, const char *container, bool follow,
		     struct aep_logs_req *req, aep_logs_cb cb)
{
	struct node__pod *p = node__pod_find(rt, uid);
	struct node__io *io;
	struct aep_error e;

	if (rt->closing)
		return AEP_ECANCELED;
	if (p == NULL || node__ctr_find(p, container) == NULL)
		return AEP_ENOTFOUND;
	io = aep_calloc(1, sizeof(*io));
	if (io == NULL)
		return AEP_ENOMEM;
	if (node__path(io->path, &e, "%s/%s.log", p->dir, container) != 0) {
		aep_free(io);
		return e.code;
	}
	io->kind = IO_LOGS;
	io->lreq = req;
	io->fd = -1;
	io->follow = follow;
	snprintf(io->uid, sizeof(io->uid), "%s", uid);
	snprintf(io->cname, sizeof(io->cname), "%s", container);
	uv_timer_init(rt->loop, &io->timer);
	io->timer.data = io;
	req->rt = rt;
	req->cb = cb;
	req->priv = io;
	io_link(rt, io);
	logs_read(io);
	return 0;
}

void aep_logs_stop(struct aep_logs_req *req)
{
	struct node__io *io = req->priv;

	if (io == NULL || io->canceled || io->finishing)
		return;
	io->canceled = true;
	if (!io->fs_busy)
		logs_finish(io, AEP_ECANCELED);
}

/* ---- exec --------------------------------------------------------------- */

static void exec_closed(uv_handle_t *h)
{
	struct node__io *io = h->data;
	struct aep_runtime *rt = io->rt;
	struct aep_exec_req *req = io->ereq;

	if (--io->open > 0)
		return;
	io_unlink(io);
	if (req == NULL)
		; /* the spawn failed: the caller had its error already */
	else if (io->canceled)
		req->cb(req, AEP_ECANCELED, -1, &io->bout, &io->berr);
	else
		req->cb(req, 0, io->exit_code, &io->bout, &io->berr);
	aep_buf_free(&io->bout);
	aep_buf_free(&io->berr);
	aep_free(io);
	node__rt_maybe_free(rt);
}

static void exec_finish(struct node__io *io)
{
	if (io->finishing)
		return;
	io->finishing = true;
	uv_close((uv_handle_t *)&io->proc, exec_closed);
	uv_close((uv_handle_t *)&io->out, exec_closed);
	uv_close((uv_handle_t *)&io->err, exec_closed);
}

static void exec_maybe_done(struct node__io *io)
{
	if (io->exited && io->out_eof && io->err_eof)
		exec_finish(io);
}

static void exec_exit(uv_process_t *proc, int64_t status, int sig)
{
	struct node__io *io = proc->data;

	io->exited = true;
	io->exit_code = sig != 0 ? 128 + sig : (int)status;
	exec_maybe_done(io);
}

static void exec_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct node__io *io = h->data;
	(void)suggested;
	buf->base = io->buf;
	buf->len = sizeof(io->buf);
}

static void exec_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct node__io *io = s->data;
	bool is_out = s == (uv_stream_t *)&io->out;
	struct aep_buf *b = is_out ? &io->bout : &io->berr;

	if (n > 0) {
		size_t keep = (size_t)n;
		if (b->len + keep > NODE__OUT_MAX)
			keep = NODE__OUT_MAX - b->len;
		aep_buf_append(b, buf->base, keep);
		return;
	}
	if (n == 0)
		return;
	uv_read_stop(s);
	if (is_out)
		io->out_eof = true;
	else
		io->err_eof = true;
	exec_maybe_done(io);
}

int aep_runtime_exec(struct aep_runtime *rt, const char *uid, const char *container,
		     const char *const argv[], struct aep_exec_req *req, aep_exec_cb cb,
		     struct aep_error *e)
{
	struct node__pod *p = node__pod_find(rt, uid);
	struct node__ctr *c = p ? node__ctr_find(p, container) : NULL;
	struct node__io *io;
	uv_process_options_t opt;
	uv_stdio_container_t stdio[3];
	char **args;
	size_t n = 0;
	int rc;

	if (rt->closing)
		return aep_errorf(e, AEP_ECANCELED, "runtime closing");
	if (c == NULL)
		return aep_errorf(e, AEP_ENOTFOUND, "pod %s: no container %s", uid, container);
	if (c->run != NODE__RUN_RUNNING)
		return aep_errorf(e, AEP_ECONFLICT, "container %s: not running", container);
	while (argv[n] != NULL)
		n++;
	if (n == 0 || n > 4096)
		return aep_errorf(e, AEP_EINVALID, "exec: want 1 to 4096 arguments");
	io = aep_calloc(1, sizeof(*io));
	args = aep_calloc(n + 6, sizeof(*args));
	if (io == NULL || args == NULL) {
		aep_free(io);
		aep_free(args);
		return aep_errorf(e, AEP_ENOMEM, "exec: out of memory");
	}
	args[0] = rt->runtime;
	args[1] = "--root";
	args[2] = rt->oci_root;
	args[3] = "exec";
	args[4] = c->id;
	for (size_t i = 0; i < n; i++)
		args[5 + i] = (char *)argv[i];
	io->kind = IO_EXEC;
	io->ereq = req;
	aep_buf_init(&io->bout);
	aep_buf_init(&io->berr);
	uv_pipe_init(rt->loop, &io->out, 0);
	uv_pipe_init(rt->loop, &io->err, 0);
	io->out.data = io->err.data = io->proc.data = io;
	memset(&opt, 0, sizeof(opt));
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&io->out;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&io->err;
	opt.file = rt->runtime;
	opt.args = args;
	opt.exit_cb = exec_exit;
	opt.stdio = stdio;
	opt.stdio_count = 3;
	rc = uv_spawn(rt->loop, &io->proc, &opt);
	aep_free(args);
	req->rt = rt;
	req->cb = cb;
	req->priv = io;
	io->open = 3;
	io_link(rt, io);
	if (rc != 0) {
		/* No callback for @req: the error is returned here; io goes
		 * when its handles have closed. */
		io->ereq = NULL;
		req->priv = NULL;
		exec_finish(io);
		return aep_errorf(e, AEP_EIO, "exec %s: %s", rt->runtime, uv_strerror(rc));
	}
	uv_read_start((uv_stream_t *)&io->out, exec_alloc, exec_read);
	uv_read_start((uv_stream_t *)&io->err, exec_alloc, exec_read);
	return 0;
}

void node__io_cancel_all(struct aep_runtime *rt)
{
	for (struct node__io *io = rt->ios; io != NULL; io = io->next) {
		if (io->canceled || io->finishing)
			continue;
		io->canceled = true;
		if (io->kind == IO_LOGS) {
			uv_timer_stop(&io->timer);
			if (!io->fs_busy)
				logs_finish(io, AEP_ECANCELED);
		} else {
			if (!io->exited)
				uv_process_kill(&io->proc, SIGKILL);
			exec_finish(io);
		}
	}
}
