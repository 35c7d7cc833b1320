/* The pod runtime: pods and containers on the loop, their blocking work in
 * libuv's thread pool, one monitor process per container run.
 *
 * Happy path of a pod: pod_run records it (Pending, containers waiting
 * "ContainerCreating") and queues the sandbox job (address, namespace,
 * veth, bundles, pods/UID/pod.mp last). Then each container gets a start
 * job (overlay mount, clean pid/exit files, restart count on disk) and,
 * back on the loop, its monitor is spawned detached:
 *
 *   sh -c 'exec >>LOG 2>&1; RUNTIME --root OCI run --pid-file PID
 *          --bundle B ID; echo $? > EXIT'
 *
 * inotify on the container's directory sees PID appear (running) and EXIT
 * appear (terminated, with the code); the restart policy then decides,
 * with an exponential backoff per container. Pod phases follow kubelet's
 * rules and move only as phase_moves[] allows.
 *
 * Failures: a sandbox job that fails is undone and retried with backoff
 * (the pod stays Pending with the message); a start job that fails (image
 * missing, mount error) leaves the container waiting with the reason and
 * is retried with backoff; a monitor that dies without writing EXIT counts
 * as an exit with its own status. Killing sends SIGTERM, then SIGKILL
 * after the grace period and every second after until every monitor has
 * reported; only then are the containers, overlays, network and directory
 * removed. Closing the runtime leaves containers and monitors running;
 * aep_runtime_adopt() in the next runtime takes them over from disk. */
#include "node/runtime-int.h"

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <jansson.h>

/* ---- pod phases: a declared state machine ------------------------------- */

#define P_ (AEP_PHASE_UNKNOWN + 1)
static const bool phase_moves[P_][P_] = {
    [AEP_PHASE_PENDING] = {[AEP_PHASE_PENDING] = true,
			   [AEP_PHASE_RUNNING] = true,
			   [AEP_PHASE_SUCCEEDED] = true,
			   [AEP_PHASE_FAILED] = true},
    [AEP_PHASE_RUNNING] =
	{[AEP_PHASE_RUNNING] = true, [AEP_PHASE_SUCCEEDED] = true, [AEP_PHASE_FAILED] = true},
    [AEP_PHASE_SUCCEEDED] = {[AEP_PHASE_SUCCEEDED] = true},
    [AEP_PHASE_FAILED] = {[AEP_PHASE_FAILED] = true},
};
#undef P_

/* kubelet's getPhase, for one pod without init containers. */
static enum aep_pod_phase compute_phase(const struct node__pod *p)
{
	unsigned running = 0, fresh = 0, restarting = 0, failed = 0;

	if (!p->sandbox)
		return AEP_PHASE_PENDING;
	for (size_t i = 0; i < p->nctr; i++) {
		const struct node__ctr *c = &p->ctrs[i];
		if (c->state == AEP_CTR_RUNNING)
			running++;
		else if (c->state == AEP_CTR_WAITING)
			c->has_run ? restarting++ : fresh++;
		else if (c->exit_code != 0)
			failed++;
	}
	if (fresh > 0)
		return AEP_PHASE_PENDING;
	if (running > 0 || restarting > 0)
		return AEP_PHASE_RUNNING;
	return failed > 0 ? AEP_PHASE_FAILED : AEP_PHASE_SUCCEEDED;
}

/* ---- status ------------------------------------------------------------- */

void aep_pod_status_free(struct aep_pod_status *st)
{
	aep_free(st);
}

static struct aep_pod_status *status_build(const struct node__pod *p)
{
	struct aep_pod_status *st =
	    aep_calloc(1, sizeof(*st) + p->nctr * sizeof(struct aep_container_status));

	if (st == NULL)
		return NULL;
	snprintf(st->uid, sizeof(st->uid), "%s", p->uid);
	snprintf(st->ns, sizeof(st->ns), "%s", p->ns);
	snprintf(st->name, sizeof(st->name), "%s", p->name);
	st->generation = p->generation;
	st->phase = p->phase;
	snprintf(st->pod_ip, sizeof(st->pod_ip), "%s", p->ip);
	snprintf(st->message, sizeof(st->message), "%s", p->message);
	st->start_ns = p->start_ns;
	st->ncontainers = p->nctr;
	for (size_t i = 0; i < p->nctr; i++) {
		const struct node__ctr *c = &p->ctrs[i];
		struct aep_container_status *cs = &st->containers[i];
		snprintf(cs->name, sizeof(cs->name), "%s", c->name);
		snprintf(cs->id, sizeof(cs->id), "%s", c->id);
		cs->state = c->state;
		snprintf(cs->reason, sizeof(cs->reason), "%s", c->reason);
		cs->exit_code = c->exit_code;
		cs->has_run = c->has_run;
		cs->restarts = c->restarts;
		cs->started_ns = c->started_ns;
		cs->finished_ns = c->finished_ns;
	}
	return st;
}

/* Recompute the phase and tell the owner if anything changed. */
static void pod_changed(struct node__pod *p)
{
	struct aep_runtime *rt = p->rt;
	enum aep_pod_phase next = compute_phase(p);
	struct aep_pod_status *st;

	if (phase_moves[p->phase][next])
		p->phase = next;
	else
		fprintf(stderr, "aep node: pod %s: refused phase move %s -> %s\n", p->uid,
			aep_pod_phase_name(p->phase), aep_pod_phase_name(next));
	st = status_build(p);
	if (st == NULL)
		return; /* the next change reports again */
	if (p->last != NULL &&
	    memcmp(p->last, st, sizeof(*st) + p->nctr * sizeof(st->containers[0])) == 0) {
		aep_free(st);
		return;
	}
	aep_free(p->last);
	p->last = st;
	if (rt->status_cb != NULL && !rt->closing)
		rt->status_cb(rt, p->uid, st, rt->data);
}

static void pack_time(msgpack_packer *pk, const char *key, int64_t ns)
{
	char buf[40];
	aep_time_format(ns, buf, sizeof(buf));
	aep_pack_str(pk, key);
	aep_pack_str(pk, buf);
}

void aep_pod_status_pack(const struct aep_pod_status *st, const char *runtime_name,
			 msgpack_packer *pk)
{
	msgpack_pack_map(pk, 2 + (st->pod_ip[0] != '\0') + (st->start_ns != 0) +
				 (st->message[0] != '\0'));
	aep_pack_str(pk, "phase");
	aep_pack_str(pk, aep_pod_phase_name(st->phase));
	if (st->pod_ip[0] != '\0') {
		aep_pack_str(pk, "podIP");
		aep_pack_str(pk, st->pod_ip);
	}
	if (st->start_ns != 0)
		pack_time(pk, "startTime", st->start_ns);
	if (st->message[0] != '\0') {
		aep_pack_str(pk, "message");
		aep_pack_str(pk, st->message);
	}
	aep_pack_str(pk, "containerStatuses");
	msgpack_pack_array(pk, (uint32_t)st->ncontainers);
	for (size_t i = 0; i < st->ncontainers; i++) {
		const struct aep_container_status *c = &st->containers[i];
		char id[AEP_CTR_ID_MAX + 24];
		snprintf(id, sizeof(id), "%s://%s", runtime_name ? runtime_name : "crun", c->id);
		/* Waiting after a run (a restart's back-off): the run that ended,
		 * as lastState. */
		bool last = c->state == AEP_CTR_WAITING && c->has_run;
		msgpack_pack_map(pk, last ? 6 : 5);
		aep_pack_str(pk, "name");
		aep_pack_str(pk, c->name);
		aep_pack_str(pk, "containerID");
		aep_pack_str(pk, id);
		aep_pack_str(pk, "ready");
		if (c->state == AEP_CTR_RUNNING)
			msgpack_pack_true(pk);
		else
			msgpack_pack_false(pk);
		aep_pack_str(pk, "restartCount");
		msgpack_pack_uint32(pk, c->restarts);
		aep_pack_str(pk, "state");
		msgpack_pack_map(pk, 1);
		switch (c->state) {
		case AEP_CTR_RUNNING:
			aep_pack_str(pk, "running");
			msgpack_pack_map(pk, 1);
			pack_time(pk, "startedAt", c->started_ns);
			break;
		case AEP_CTR_TERMINATED:
			aep_pack_str(pk, "terminated");
			msgpack_pack_map(pk, 4);
			aep_pack_str(pk, "exitCode");
			msgpack_pack_int(pk, c->exit_code);
			aep_pack_str(pk, "reason");
			aep_pack_str(pk, c->reason);
			pack_time(pk, "startedAt", c->started_ns);
			pack_time(pk, "finishedAt", c->finished_ns);
			break;
		default:
			aep_pack_str(pk, "waiting");
			msgpack_pack_map(pk, 1);
			aep_pack_str(pk, "reason");
			aep_pack_str(pk, c->reason);
			break;
		}
		if (last) {
			aep_pack_str(pk, "lastState");
			msgpack_pack_map(pk, 1);
			aep_pack_str(pk, "terminated");
			msgpack_pack_map(pk, 2 + (c->started_ns != 0) + (c->finished_ns != 0));
			aep_pack_str(pk, "exitCode");
			msgpack_pack_int(pk, c->exit_code);
			aep_pack_str(pk, "reason");
			aep_pack_str(pk, c->exit_code == 0 ? "Completed" : "Error");
			if (c->started_ns != 0)
				pack_time(pk, "startedAt", c->started_ns);
			if (c->finished_ns != 0)
				pack_time(pk, "finishedAt", c->finished_ns);
		}
	}
}

/* ---- pod memory --------------------------------------------------------- */

struct node__pod *node__pod_find(struct aep_runtime *rt, const char *uid)
{
	for (struct node__pod *p = rt->pods; p != NULL; p = p->next)
		if (strcmp(p->uid, uid) == 0)
			return p;
	return NULL;
}

struct node__ctr *node__ctr_find(struct node__pod *p, const char *name)
{
	for (size_t i = 0; i < p->nctr; i++)
		if (strcmp(p->ctrs[i].name, name) == 0)
			return &p->ctrs[i];
	return NULL;
}

static void rt_finish_close(struct aep_runtime *rt)
{
	aep_close_cb cb = rt->close_cb;
	void *data = rt->close_data;

	aep_free(rt);
	if (cb != NULL)
		cb(rt, data);
}

void node__rt_maybe_free(struct aep_runtime *rt)
{
	if (rt->closing && rt->npods == 0 && rt->pending == 0 && rt->ios == NULL)
		rt_finish_close(rt);
}

static void pod_unlist(struct node__pod *p)
{
	struct aep_runtime *rt = p->rt;

	if (!p->listed)
		return;
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		rt->pods = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	p->next = p->prev = NULL;
	p->listed = false;
}

/* Free @p once it is off the list with no job in flight and no handle
 * open. */
static void pod_maybe_free(struct node__pod *p)
{
	struct aep_runtime *rt = p->rt;

	if (p->listed || p->busy > 0 || p->holds > 0)
		return;
	while (p->killers != NULL) {
		struct node__killer *k = p->killers;
		p->killers = k->next;
		if (k->cb != NULL)
			k->cb(rt, p->uid, AEP_ECANCELED, k->data);
		aep_free(k);
	}
	aep_object_unref(p->obj);
	aep_free(p->last);
	aep_free(p);
	rt->npods--;
	node__rt_maybe_free(rt);
}

static void pod_handle_closed(uv_handle_t *h)
{
	struct node__pod *p = h->data;
	p->holds--;
	pod_maybe_free(p);
}

static void ctr_handle_closed(uv_handle_t *h)
{
	struct node__ctr *c = h->data;
	struct node__pod *p = c->pod;
	p->holds--;
	pod_maybe_free(p);
}

static void mon_closed(uv_handle_t *h)
{
	struct node__mon *m = h->data;
	struct node__pod *p = m->pod;
	aep_free(m);
	p->holds--;
	pod_maybe_free(p);
}

/* Take @p off the list and close its handles; it is freed when the last
 * one has closed and its jobs have returned. Monitors keep running. */
static void pod_release(struct node__pod *p)
{
	pod_unlist(p);
	uv_close((uv_handle_t *)&p->timer, pod_handle_closed);
	for (size_t i = 0; i < p->nctr; i++) {
		struct node__ctr *c = &p->ctrs[i];
		uv_close((uv_handle_t *)&c->timer, ctr_handle_closed);
		uv_close((uv_handle_t *)&c->ev, ctr_handle_closed);
		if (c->mon != NULL) {
			c->mon->c = NULL;
			uv_close((uv_handle_t *)&c->mon->proc, mon_closed);
			c->mon = NULL;
		}
	}
	pod_maybe_free(p);
}

/* ---- jobs in the thread pool -------------------------------------------- */

enum job_kind { JOB_SANDBOX, JOB_START, JOB_SIGNAL, JOB_TEARDOWN, JOB_ADOPT };

struct adopt_ctr {
	enum { A_FRESH, A_RUNNING, A_EXITED, A_LOST } what;
	int exit_code;
	unsigned restarts;
	int64_t started_ns, finished_ns;
};

struct adopt_pod {
	struct adopt_pod *next;
	struct aep_object *obj;
	char ip[16], veth[16];
	int64_t start_ns; /* its start time as recorded, or -1 */
	struct adopt_ctr ctrs[NODE__CTR_MAX];
};

struct job {
	uv_work_t req;
	enum job_kind kind;
	struct aep_runtime *rt;
	struct node__pod *pod;
	struct node__ctr *c;
	int rc;
	struct aep_error e;
	/* JOB_SANDBOX */
	char ip[16], veth[16];
	/* JOB_START */
	unsigned restarts;
	/* JOB_SIGNAL */
	const char *sig;
	size_t nids;
	char (*ids)[AEP_CTR_ID_MAX];
	/* JOB_ADOPT */
	struct adopt_pod *adopted;
	aep_adopt_cb adopt_cb;
	void *adopt_data;
};

static void job_work(uv_work_t *req);
static void job_done(uv_work_t *req, int status);

static int job_queue(struct aep_runtime *rt, struct node__pod *p, struct node__ctr *c,
		     enum job_kind kind, struct job **out)
{
	struct job *j = aep_calloc(1, sizeof(*j));

	if (j == NULL)
		return AEP_ENOMEM;
	j->kind = kind;
	j->rt = rt;
	j->pod = p;
	j->c = c;
	j->req.data = j;
	if (out != NULL)
		*out = j;
	if (uv_queue_work(rt->loop, &j->req, job_work, job_done) != 0) {
		aep_free(j);
		return AEP_EINTERNAL;
	}
	rt->pending++;
	if (p != NULL)
		p->busy++;
	return 0;
}

static int ctr_path(const struct node__ctr *c, const char *file, char *out, struct aep_error *e)
{
	return node__path(out, e, "%s/%s", c->dir, file);
}

/* Runtime command on @id, output discarded; returns its exit code or -1. */
static int oci(const struct aep_runtime *rt, const char *verb, const char *id, const char *arg)
{
	const char *argv[] = {rt->runtime, "--root", rt->oci_root, verb, id, arg, NULL};
	struct aep_error e;
	int status;

	if (strcmp(verb, "delete") == 0) {
		argv[4] = "-f";
		argv[5] = id;
	}
	return node__run(argv, NULL, &status, &e) == 0 ? status : -1;
}

/* The runtime's view of @id: "running", "created", "stopped", "paused" or
 * "" when it does not know it. */
static void oci_state(const struct aep_runtime *rt, const char *id, char out[16])
{
	const char *argv[] = {rt->runtime, "--root", rt->oci_root, "state", id, NULL};
	struct aep_buf b;
	struct aep_error e;
	json_t *j;
	int status;

	out[0] = '\0';
	aep_buf_init(&b);
	if (node__run(argv, &b, &status, &e) == 0 && status == 0 && b.len > 0 &&
	    (j = json_loadb(b.data, b.len, 0, NULL)) != NULL) {
		const char *s = json_string_value(json_object_get(j, "status"));
		snprintf(out, 16, "%s", s ? s : "");
		json_decref(j);
	}
	aep_buf_free(&b);
}

static int64_t file_mtime_ns(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return 0;
	return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

/* The exit code in @path, or -1. */
/* A decimal number from @path in [0, @max], or -1. */
static long long read_num_file(const char *path, long long max)
{
	struct aep_buf b;
	struct aep_error e;
	long long v = -1;

	aep_buf_init(&b);
	if (node__read_file(path, 32, &b, &e) == 0 && aep_buf_append(&b, "", 1) == 0) {
		char *end;
		long long l = strtoll(b.data, &end, 10);
		if (end != b.data && l >= 0 && l <= max)
			v = l;
	}
	aep_buf_free(&b);
	return v;
}

static int read_int_file(const char *path)
{
	return (int)read_num_file(path, 999999);
}

static void work_sandbox(struct job *j)
{
	struct node__pod *p = j->pod;
	struct aep_runtime *rt = j->rt;
	char path[NODE__PATH_MAX];

	if ((j->rc = node__path(path, &j->e, "%s/net", p->dir)) != 0 ||
	    (j->rc = node__mkdir_p(p->dir, 0700, &j->e)) != 0)
		return;
	j->rc = node__net_setup(&rt->net, p->uid, p->netns, path, j->ip, j->veth, &j->e);
	if (j->rc != 0)
		return;
	for (size_t i = 0; i < p->nctr; i++) {
		j->rc = node__bundle_write(rt->dir, p->uid, p->obj, (unsigned)i, p->netns, &j->e);
		if (j->rc != 0) {
			aep_error_prefix(&j->e, "container %s", p->ctrs[i].name);
			goto err_after_net;
		}
	}
	if ((j->rc = node__path(path, &j->e, "%s/pod.mp", p->dir)) != 0 ||
	    (j->rc = node__write_file(path, p->obj->data, p->obj->len, &j->e)) != 0)
		goto err_after_net;
	/* The pod's start time, for the agent that adopts it after a restart. */
	char start[24];
	int n = snprintf(start, sizeof(start), "%lld\n", (long long)p->start_ns);
	if ((j->rc = node__path(path, &j->e, "%s/start", p->dir)) != 0 ||
	    (j->rc = node__write_file(path, start, (size_t)n, &j->e)) != 0)
		goto err_after_net;
	return;

err_after_net:
	if (node__path(path, &j->e, "%s/net", p->dir) == 0)
		node__net_teardown(&rt->net, p->uid, p->netns, path);
	j->ip[0] = j->veth[0] = '\0';
}

static void work_start(struct job *j)
{
	struct node__ctr *c = j->c;
	struct node__pod *p = j->pod;
	struct node__ctr_spec spec = {c->name, c->image, c->read_only_root};
	char path[NODE__PATH_MAX], line[32];
	char state[16];

	if ((j->rc = node__rootfs_mount(j->rt->dir, p->uid, &spec, &j->e)) != 0)
		return;
	/* A leftover of an earlier run (a monitor that died) would block the
	 * id; a first run has none (adoption clears what a crash left). */
	state[0] = '\0';
	if (j->restarts > 0)
		oci_state(j->rt, c->id, state);
	if (state[0] != '\0') {
		oci(j->rt, "kill", c->id, "KILL");
		oci(j->rt, "delete", c->id, NULL);
	}
	if (ctr_path(c, "exit", path, &j->e) == 0)
		unlink(path);
	if (ctr_path(c, "pid", path, &j->e) == 0)
		unlink(path);
	snprintf(line, sizeof(line), "%u\n", j->restarts);
	if ((j->rc = ctr_path(c, "restarts", path, &j->e)) == 0)
		j->rc = node__write_file(path, line, strlen(line), &j->e);
}

static void work_signal(struct job *j)
{
	for (size_t i = 0; i < j->nids; i++)
		oci(j->rt, "kill", j->ids[i], j->sig);
}

/* Remove what is left of @id's cgroups: crun 1.8, with the cgroup2 mount
 * of a hybrid host unmounted, makes a plain directory with a cgroup.procs
 * file for it under /sys/fs/cgroup/unified (a tmpfs) and never removes
 * it. rmdir only removes empty cgroups, so a live one is never touched;
 * only tmpfs directories are emptied first. */
static void cgroup_cleanup(const char *id)
{
	DIR *d = opendir("/sys/fs/cgroup");
	struct dirent *de;
	char path[NODE__PATH_MAX];
	struct aep_error e;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		struct statfs fs;
		if (de->d_name[0] == '.' ||
		    node__path(path, &e, "/sys/fs/cgroup/%s/%s", de->d_name, id) != 0 ||
		    rmdir(path) == 0 || errno == ENOENT)
			continue;
		/* Not a cgroup file system: plain files that crun wrote. */
		if (statfs(path, &fs) == 0 && fs.f_type == TMPFS_MAGIC)
			node__rm_rf(path, &e);
	}
	closedir(d);
}

static void work_teardown(struct job *j)
{
	struct node__pod *p = j->pod;
	struct aep_runtime *rt = j->rt;
	char path[NODE__PATH_MAX];

	for (size_t i = 0; i < p->nctr; i++) {
		char state[16];
		oci_state(rt, p->ctrs[i].id, state);
		if (state[0] != '\0') {
			oci(rt, "kill", p->ctrs[i].id, "KILL");
			oci(rt, "delete", p->ctrs[i].id, NULL);
		}
		cgroup_cleanup(p->ctrs[i].id);
		node__rootfs_umount(rt->dir, p->uid, p->ctrs[i].name);
	}
	if (node__path(path, &j->e, "%s/net", p->dir) == 0)
		node__net_teardown(&rt->net, p->uid, p->netns, path);
	j->rc = node__rm_rf(p->dir, &j->e);
}

/* ---- parsing a pod ------------------------------------------------------ */

static bool uid_ok(const char *uid)
{
	size_t len = strlen(uid);
	if (len == 0 || len >= 40 || uid[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = uid[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

static void copy_str(char *dst, size_t size, const msgpack_object *o)
{
	if (o != NULL && o->type == MSGPACK_OBJECT_STR && o->via.str.size < size) {
		memcpy(dst, o->via.str.ptr, o->via.str.size);
		dst[o->via.str.size] = '\0';
	} else {
		dst[0] = '\0';
	}
}

/* A new pod (not listed, no handles yet) from @obj. */
static int pod_parse(struct aep_runtime *rt, const struct aep_object *obj, struct node__pod **out,
		     struct aep_error *e)
{
	msgpack_zone zone;
	msgpack_object o;
	const msgpack_object *spec, *cs, *rp, *grace;
	struct node__pod *p = NULL;
	int rc;

	if (obj->kind != AEP_KIND_POD)
		return aep_errorf(e, AEP_EINVALID, "not a Pod");
	if (!uid_ok(obj->meta.uid))
		return aep_errorf(e, AEP_EINVALID, "pod %s/%s: metadata.uid: missing or bad",
				  obj->meta.ns, obj->meta.name);
	msgpack_zone_init(&zone, 4096);
	if ((rc = aep_mp_unpack(obj->data, obj->len, &zone, &o, e)) != 0)
		goto out;
	spec = aep_mp_map_get(&o, "spec");
	cs = spec ? aep_mp_map_get(spec, "containers") : NULL;
	if (cs == NULL || cs->type != MSGPACK_OBJECT_ARRAY || cs->via.array.size == 0 ||
	    cs->via.array.size > NODE__CTR_MAX) {
		rc = aep_errorf(e, AEP_EINVALID, "pod %s: spec.containers: want 1 to %d",
				obj->meta.name, NODE__CTR_MAX);
		goto out;
	}
	p = aep_calloc(1, sizeof(*p) + cs->via.array.size * sizeof(struct node__ctr));
	if (p == NULL) {
		rc = aep_errorf(e, AEP_ENOMEM, "pod %s: out of memory", obj->meta.name);
		goto out;
	}
	p->rt = rt;
	p->phase = AEP_PHASE_PENDING;
	snprintf(p->uid, sizeof(p->uid), "%s", obj->meta.uid);
	snprintf(p->ns, sizeof(p->ns), "%s", obj->meta.ns);
	snprintf(p->name, sizeof(p->name), "%s", obj->meta.name);
	p->generation = obj->meta.generation;
	rp = aep_mp_map_get(spec, "restartPolicy");
	p->policy = aep_mp_str_eq(rp, "Never")	     ? NODE__NEVER
		    : aep_mp_str_eq(rp, "OnFailure") ? NODE__ON_FAILURE
						     : NODE__ALWAYS;
	grace = aep_mp_map_get(spec, "terminationGracePeriodSeconds");
	p->grace_ms = 30000;
	if (grace != NULL && grace->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
	    grace->via.u64 < 86400 * 365)
		p->grace_ms = (int64_t)grace->via.u64 * 1000;
	if (rt->grace_ms > 0)
		p->grace_ms = rt->grace_ms;
	if (node__path(p->dir, e, "%s/pods/%s", rt->dir, p->uid) != 0 ||
	    node__path(p->netns, e, "%s/netns/%s", rt->dir, p->uid) != 0) {
		rc = e->code;
		goto out;
	}
	p->nctr = cs->via.array.size;
	for (size_t i = 0; i < p->nctr; i++) {
		const msgpack_object *c = &cs->via.array.ptr[i];
		const msgpack_object *sc = aep_mp_map_get(c, "securityContext");
		const msgpack_object *ro = sc ? aep_mp_map_get(sc, "readOnlyRootFilesystem") : NULL;
		struct node__ctr *ctr = &p->ctrs[i];
		char imgdir[NODE__PATH_MAX];
		ctr->pod = p;
		copy_str(ctr->name, sizeof(ctr->name), aep_mp_map_get(c, "name"));
		copy_str(ctr->image, sizeof(ctr->image), aep_mp_map_get(c, "image"));
		ctr->read_only_root = ro && ro->type == MSGPACK_OBJECT_BOOLEAN && ro->via.boolean;
		if (ctr->name[0] == '\0' || strchr(ctr->name, '/') != NULL) {
			rc = aep_errorf(e, AEP_EINVALID, "pod %s: container %zu: bad name", p->name,
					i);
			goto out;
		}
		if ((rc = node__image_dir(rt->dir, ctr->image, imgdir, e)) != 0) {
			aep_error_prefix(e, "pod %s: container %s", p->name, ctr->name);
			goto out;
		}
		snprintf(ctr->id, sizeof(ctr->id), "%s%s-%s", rt->id_prefix, p->uid, ctr->name);
		if ((rc = node__path(ctr->dir, e, "%s/c/%s", p->dir, ctr->name)) != 0)
			goto out;
		ctr->state = AEP_CTR_WAITING;
		snprintf(ctr->reason, sizeof(ctr->reason), "ContainerCreating");
		ctr->backoff_ms = rt->backoff_base_ms;
	}
	p->obj = aep_object_ref((struct aep_object *)obj);
	*out = p;
	p = NULL;
	rc = 0;
out:
	aep_free(p);
	msgpack_zone_destroy(&zone);
	return rc;
}

/* Init the pod's handles and list it. Cannot fail. */
static void pod_list(struct aep_runtime *rt, struct node__pod *p)
{
	uv_timer_init(rt->loop, &p->timer);
	p->timer.data = p;
	p->holds++;
	for (size_t i = 0; i < p->nctr; i++) {
		struct node__ctr *c = &p->ctrs[i];
		uv_timer_init(rt->loop, &c->timer);
		c->timer.data = c;
		uv_fs_event_init(rt->loop, &c->ev);
		c->ev.data = c;
		p->holds += 2;
	}
	p->sandbox_backoff_ms = rt->backoff_base_ms;
	p->next = rt->pods;
	if (rt->pods != NULL)
		rt->pods->prev = p;
	rt->pods = p;
	p->listed = true;
	rt->npods++;
}

/* ---- container runs ----------------------------------------------------- */

static void ctr_start(struct node__ctr *c);
static void kill_step(struct node__pod *p);
static void ctr_refresh(struct node__ctr *c);

static void ctr_event(uv_fs_event_t *h, const char *file, int events, int status)
{
	(void)file;
	(void)events;
	(void)status;
	ctr_refresh(h->data);
}

static void ctr_watch(struct node__ctr *c)
{
	if (c->ev_on)
		return;
	if (uv_fs_event_start(&c->ev, ctr_event, c->dir, 0) == 0)
		c->ev_on = true;
}

static uint64_t next_backoff(struct node__ctr *c)
{
	const struct aep_runtime *rt = c->pod->rt;
	uint64_t d = c->backoff_ms;

	c->backoff_ms = d * 2 > rt->backoff_max_ms ? rt->backoff_max_ms : d * 2;
	return d;
}

static void ctr_backoff_fired(uv_timer_t *t)
{
	struct node__ctr *c = t->data;
	ctr_start(c);
}

/* The current run ended with @code (at @finished). */
static void ctr_exited(struct node__ctr *c, int code, int64_t finished)
{
	struct node__pod *p = c->pod;
	const struct aep_runtime *rt = p->rt;
	bool restart;

	c->run = NODE__RUN_EXITED;
	c->has_run = true;
	c->exit_code = code;
	c->finished_ns = finished;
	c->state = AEP_CTR_TERMINATED;
	snprintf(c->reason, sizeof(c->reason), "%s", code == 0 ? "Completed" : "Error");
	if (p->killing) {
		pod_changed(p);
		kill_step(p);
		return;
	}
	restart = p->policy == NODE__ALWAYS || (p->policy == NODE__ON_FAILURE && code != 0);
	if (restart) {
		/* A run that lasted twice the longest delay resets the backoff
		 * (kubelet forgets a container's backoff after that long). */
		if (c->started_ns != 0 &&
		    (uint64_t)(finished - c->started_ns) / 1000000 >= 2 * rt->backoff_max_ms)
			c->backoff_ms = rt->backoff_base_ms;
		c->state = AEP_CTR_WAITING;
		snprintf(c->reason, sizeof(c->reason), "CrashLoopBackOff");
		uv_timer_start(&c->timer, ctr_backoff_fired, next_backoff(c), 0);
	}
	pod_changed(p);
}

/* Look at the pid and exit files of a run in progress. */
static void ctr_refresh(struct node__ctr *c)
{
	char path[NODE__PATH_MAX];
	struct aep_error e;

	if (c->run != NODE__RUN_STARTING && c->run != NODE__RUN_RUNNING)
		return;
	if (ctr_path(c, "exit", path, &e) == 0 && node__exists(path)) {
		int code = read_int_file(path);
		if (code < 0)
			return; /* mid-rename; the next event reads it */
		ctr_exited(c, code, file_mtime_ns(path));
		return;
	}
	/* The runtime creates the pid file, then writes it: wait for the
	 * number (the write is another inotify event). */
	if (c->run == NODE__RUN_STARTING && ctr_path(c, "pid", path, &e) == 0 &&
	    read_int_file(path) > 0) {
		c->run = NODE__RUN_RUNNING;
		c->state = AEP_CTR_RUNNING;
		c->has_run = true;
		c->reason[0] = '\0';
		c->started_ns = file_mtime_ns(path);
		pod_changed(c->pod);
	}
}

static void mon_exited(uv_process_t *proc, int64_t status, int sig)
{
	struct node__mon *m = proc->data;
	struct node__ctr *c = m->c;

	uv_close((uv_handle_t *)proc, mon_closed);
	if (c == NULL)
		return;
	c->mon = NULL;
	ctr_refresh(c);
	if (c->run == NODE__RUN_STARTING || c->run == NODE__RUN_RUNNING) {
		/* The monitor ended without an exit file: it was killed. */
		ctr_exited(c, sig != 0 ? 128 + sig : (int)status, aep_now_realtime_ns());
	}
}

static const char monitor_script[] =
    "exec >>\"$5\" 2>&1 </dev/null; "
    "\"$1\" --root \"$2\" run --pid-file \"$6\" --bundle \"$3\" \"$4\"; "
    "echo $? >\"$7.tmp\"; mv -f \"$7.tmp\" \"$7\"";

static int mon_spawn(struct node__ctr *c, struct aep_error *e)
{
	struct node__pod *p = c->pod;
	struct aep_runtime *rt = p->rt;
	char log[NODE__PATH_MAX], pid[NODE__PATH_MAX], exitf[NODE__PATH_MAX];
	struct node__mon *m;
	uv_process_options_t opt;
	uv_stdio_container_t stdio[3];
	int rc;

	if (node__path(log, e, "%s/%s.log", p->dir, c->name) != 0 ||
	    ctr_path(c, "pid", pid, e) != 0 || ctr_path(c, "exit", exitf, e) != 0)
		return e->code;
	char *args[] = {"sh",	       "-c",	    (char *)monitor_script,
			"aep-monitor", rt->runtime, rt->oci_root,
			c->dir,	       c->id,	    log,
			pid,	       exitf,	    NULL};
	m = aep_calloc(1, sizeof(*m));
	if (m == NULL)
		return aep_errorf(e, AEP_ENOMEM, "monitor: out of memory");
	memset(&opt, 0, sizeof(opt));
	for (int i = 0; i < 3; i++)
		stdio[i].flags = UV_IGNORE;
	opt.file = "/bin/sh";
	opt.args = args;
	opt.exit_cb = mon_exited;
	opt.flags = UV_PROCESS_DETACHED;
	opt.stdio = stdio;
	opt.stdio_count = 3;
	m->pod = p;
	m->c = c;
	m->proc.data = m;
	rc = uv_spawn(rt->loop, &m->proc, &opt);
	p->holds++;
	if (rc != 0) {
		m->c = NULL;
		uv_close((uv_handle_t *)&m->proc, mon_closed);
		return aep_errorf(e, AEP_EIO, "spawn monitor: %s", uv_strerror(rc));
	}
	c->mon = m;
	return 0;
}

static void after_start(struct job *j)
{
	struct node__ctr *c = j->c;
	struct node__pod *p = j->pod;

	c->busy = false;
	if (p->killing || j->rt->closing) {
		if (p->killing)
			kill_step(p);
		return;
	}
	if (j->rc == 0) {
		c->restarts = j->restarts;
		ctr_watch(c);
		j->rc = mon_spawn(c, &j->e);
	}
	if (j->rc != 0) {
		c->state = AEP_CTR_WAITING;
		snprintf(c->reason, sizeof(c->reason), "%s",
			 j->rc == AEP_ENOTFOUND ? "ErrImageNeverPull" : "CreateContainerError");
		snprintf(p->message, sizeof(p->message), "%.63s: %.90s", c->name, j->e.msg);
		uv_timer_start(&c->timer, ctr_backoff_fired, next_backoff(c), 0);
		pod_changed(p);
		return;
	}
	c->run = NODE__RUN_STARTING;
	if (p->message[0] != '\0' && strncmp(p->message, c->name, strlen(c->name)) == 0)
		p->message[0] = '\0';
	ctr_refresh(c); /* a very fast run may be over already */
	pod_changed(p);
}

/* Start a new run of @c (its first, or a restart). */
static void ctr_start(struct node__ctr *c)
{
	struct node__pod *p = c->pod;
	struct job *j;

	if (p->killing || p->rt->closing || c->busy)
		return;
	if (job_queue(p->rt, p, c, JOB_START, &j) != 0) {
		uv_timer_start(&c->timer, ctr_backoff_fired, next_backoff(c), 0);
		return;
	}
	c->busy = true;
	c->run = NODE__RUN_IDLE;
	j->restarts = c->has_run ? c->restarts + 1 : c->restarts;
}

/* ---- sandbox ------------------------------------------------------------ */

static void sandbox_start(struct node__pod *p);

static void sandbox_retry(uv_timer_t *t)
{
	sandbox_start(t->data);
}

static void sandbox_start(struct node__pod *p)
{
	if (p->killing || p->rt->closing)
		return;
	if (job_queue(p->rt, p, NULL, JOB_SANDBOX, NULL) != 0)
		uv_timer_start(&p->timer, sandbox_retry, p->sandbox_backoff_ms, 0);
}

static void after_sandbox(struct job *j)
{
	struct node__pod *p = j->pod;
	const struct aep_runtime *rt = j->rt;

	if (j->rc != 0) {
		snprintf(p->message, sizeof(p->message), "sandbox: %.140s", j->e.msg);
		if (p->killing) {
			kill_step(p);
			return;
		}
		pod_changed(p);
		if (!rt->closing) {
			uv_timer_start(&p->timer, sandbox_retry, p->sandbox_backoff_ms, 0);
			p->sandbox_backoff_ms = p->sandbox_backoff_ms * 2 > rt->backoff_max_ms
						    ? rt->backoff_max_ms
						    : p->sandbox_backoff_ms * 2;
		}
		return;
	}
	snprintf(p->ip, sizeof(p->ip), "%s", j->ip);
	snprintf(p->veth, sizeof(p->veth), "%s", j->veth);
	p->sandbox = true;
	p->message[0] = '\0';
	if (p->killing) {
		kill_step(p);
		return;
	}
	for (size_t i = 0; i < p->nctr; i++)
		ctr_start(&p->ctrs[i]);
	pod_changed(p);
}

/* ---- kill --------------------------------------------------------------- */

static bool ctr_live(const struct node__ctr *c)
{
	return c->run == NODE__RUN_STARTING || c->run == NODE__RUN_RUNNING;
}

static void signal_live(struct node__pod *p, const char *sig)
{
	struct job *j;
	size_t n = 0;
	char(*ids)[AEP_CTR_ID_MAX] = aep_calloc(p->nctr, AEP_CTR_ID_MAX);

	if (ids == NULL)
		return; /* the repeat timer tries again */
	for (size_t i = 0; i < p->nctr; i++)
		if (ctr_live(&p->ctrs[i]))
			memcpy(ids[n++], p->ctrs[i].id, AEP_CTR_ID_MAX);
	if (n == 0 || job_queue(p->rt, p, NULL, JOB_SIGNAL, &j) != 0) {
		aep_free(ids);
		return;
	}
	j->sig = sig;
	j->ids = ids;
	j->nids = n;
}

static void kill_timer(uv_timer_t *t)
{
	struct node__pod *p = t->data;
	signal_live(p, "KILL");
	uv_timer_start(&p->timer, kill_timer, 1000, 0);
}

/* Move a pod that is being killed one step on. */
static void kill_step(struct node__pod *p)
{
	bool live = false;

	if (p->teardown || p->rt->closing)
		return;
	for (size_t i = 0; i < p->nctr; i++)
		live = live || ctr_live(&p->ctrs[i]);
	if (live) {
		if (!p->term_sent) {
			p->term_sent = true;
			signal_live(p, "TERM");
			uv_timer_start(&p->timer, kill_timer, (uint64_t)p->grace_ms, 0);
		}
		return;
	}
	if (p->busy > 0)
		return; /* a job's return calls again */
	uv_timer_stop(&p->timer);
	if (job_queue(p->rt, p, NULL, JOB_TEARDOWN, NULL) != 0) {
		uv_timer_start(&p->timer, kill_timer, 1000, 0);
		return;
	}
	p->teardown = true;
}

static void after_teardown(struct job *j)
{
	struct node__pod *p = j->pod;
	struct aep_runtime *rt = j->rt;

	if (j->rc != 0)
		fprintf(stderr, "aep node: pod %s: teardown: %s\n", p->uid, j->e.msg);
	if (!p->listed)
		return; /* the runtime closed meanwhile: killers get AEP_ECANCELED */
	pod_unlist(p);
	while (p->killers != NULL) {
		struct node__killer *k = p->killers;
		p->killers = k->next;
		if (k->cb != NULL)
			k->cb(rt, p->uid, j->rc, k->data);
		aep_free(k);
	}
	if (rt->status_cb != NULL && !rt->closing)
		rt->status_cb(rt, p->uid, NULL, rt->data);
	pod_release(p);
}

int aep_runtime_pod_kill(struct aep_runtime *rt, const char *uid, aep_kill_cb cb, void *data)
{
	struct node__pod *p = node__pod_find(rt, uid);
	struct node__killer *k;

	if (p == NULL || rt->closing)
		return AEP_ENOTFOUND;
	k = aep_calloc(1, sizeof(*k));
	if (k == NULL)
		return AEP_ENOMEM;
	k->cb = cb;
	k->data = data;
	k->next = p->killers;
	p->killers = k;
	if (p->killing)
		return 0;
	p->killing = true;
	uv_timer_stop(&p->timer);
	for (size_t i = 0; i < p->nctr; i++)
		uv_timer_stop(&p->ctrs[i].timer);
	kill_step(p);
	return 0;
}

/* ---- jobs: dispatch ----------------------------------------------------- */

static void work_adopt(struct job *j);
static void after_adopt(struct job *j);

static void job_work(uv_work_t *req)
{
	struct job *j = req->data;

	switch (j->kind) {
	case JOB_SANDBOX: work_sandbox(j); break;
	case JOB_START: work_start(j); break;
	case JOB_SIGNAL: work_signal(j); break;
	case JOB_TEARDOWN: work_teardown(j); break;
	case JOB_ADOPT: work_adopt(j); break;
	}
}

static void job_done(uv_work_t *req, int status)
{
	struct job *j = req->data;
	struct aep_runtime *rt = j->rt;
	struct node__pod *p = j->pod;

	(void)status; /* jobs are never cancelled */
	if (j->kind == JOB_ADOPT) {
		/* The one kind of job without a pod: job_queue(rt, NULL, ...). */
		after_adopt(j);
		aep_free(j);
		rt->pending--;
		node__rt_maybe_free(rt);
		return;
	}
	/* Every other kind is queued for a pod (kill_step, signal_live,
	 * ctr_start, sandbox_start), so @p is set. */
	p->busy--;
	switch (j->kind) {
	case JOB_SANDBOX: after_sandbox(j); break;
	case JOB_START: after_start(j); break;
	case JOB_SIGNAL:
		aep_free(j->ids);
		if (p->killing)
			kill_step(p);
		break;
	case JOB_TEARDOWN: after_teardown(j); break;
	case JOB_ADOPT: break; /* above */
	}
	aep_free(j);
	rt->pending--;
	pod_maybe_free(p);
	node__rt_maybe_free(rt);
}

/* ---- adoption ----------------------------------------------------------- */

static void adopt_halfmade(struct aep_runtime *rt, const char *uid, const char *pdir)
{
	char path[NODE__PATH_MAX], netns[NODE__PATH_MAX], cdir[NODE__PATH_MAX];
	struct aep_error e;
	DIR *d;
	struct dirent *de;

	if (node__path(cdir, &e, "%s/c", pdir) == 0 && (d = opendir(cdir)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			char id[AEP_CTR_ID_MAX];
			if (de->d_name[0] == '.')
				continue;
			snprintf(id, sizeof(id), "%.32s%.39s-%.63s", rt->id_prefix, uid,
				 de->d_name);
			oci(rt, "kill", id, "KILL");
			oci(rt, "delete", id, NULL);
			node__rootfs_umount(rt->dir, uid, de->d_name);
		}
		closedir(d);
	}
	if (node__path(path, &e, "%s/net", pdir) == 0 &&
	    node__path(netns, &e, "%s/netns/%s", rt->dir, uid) == 0)
		node__net_teardown(&rt->net, uid, netns, path);
	node__rm_rf(pdir, &e);
}

static void adopt_ctr(struct aep_runtime *rt, const char *uid, const char *name,
		      struct adopt_ctr *a)
{
	char cdir[NODE__PATH_MAX], path[NODE__PATH_MAX], id[AEP_CTR_ID_MAX], state[16];
	struct aep_error e;
	int r;

	snprintf(id, sizeof(id), "%s%s-%s", rt->id_prefix, uid, name);
	if (node__path(cdir, &e, "%s/pods/%s/c/%s", rt->dir, uid, name) != 0)
		return;
	a->what = A_FRESH;
	if (node__path(path, &e, "%s/restarts", cdir) != 0 || (r = read_int_file(path)) < 0)
		return; /* never started */
	a->restarts = (unsigned)r;
	if (node__path(path, &e, "%s/pid", cdir) == 0)
		a->started_ns = file_mtime_ns(path);
	if (node__path(path, &e, "%s/exit", cdir) == 0 && (r = read_int_file(path)) >= 0) {
		a->what = A_EXITED;
		a->exit_code = r;
		a->finished_ns = file_mtime_ns(path);
		return;
	}
	oci_state(rt, id, state);
	if (strcmp(state, "running") == 0) {
		a->what = A_RUNNING;
		return;
	}
	/* Half-made or its monitor is gone: clear it; the policy decides. */
	if (state[0] != '\0') {
		oci(rt, "kill", id, "KILL");
		oci(rt, "delete", id, NULL);
	}
	a->what = A_LOST;
	a->exit_code = 255;
	a->finished_ns = aep_now_realtime_ns();
}

static void work_adopt(struct job *j)
{
	struct aep_runtime *rt = j->rt;
	char pods[NODE__PATH_MAX], pdir[NODE__PATH_MAX], path[NODE__PATH_MAX];
	struct aep_buf known;
	DIR *d;
	struct dirent *de;

	aep_buf_init(&known);
	if ((j->rc = node__path(pods, &j->e, "%s/pods", rt->dir)) != 0)
		return;
	d = opendir(pods);
	if (d == NULL) {
		j->rc = aep_errorf(&j->e, AEP_EIO, "adopt: %s: %s", pods, strerror(errno));
		return;
	}
	while ((de = readdir(d)) != NULL) {
		struct aep_buf b;
		struct aep_object *obj = NULL;
		struct adopt_pod *ap;
		struct aep_error e;
		struct node__pod *tmp = NULL;
		if (de->d_name[0] == '.' || !uid_ok(de->d_name) ||
		    node__path(pdir, &e, "%s/%s", pods, de->d_name) != 0 ||
		    node__path(path, &e, "%s/pod.mp", pdir) != 0)
			continue;
		aep_buf_init(&b);
		if (node__read_file(path, AEP_OBJECT_MAX, &b, &e) != 0 ||
		    aep_object_decode(b.data, b.len, &obj, &e) != 0 ||
		    strcmp(obj->meta.uid, de->d_name) != 0 || pod_parse(rt, obj, &tmp, &e) != 0 ||
		    (ap = aep_calloc(1, sizeof(*ap))) == NULL) {
			aep_buf_free(&b);
			aep_object_unref(obj);
			if (tmp != NULL) {
				aep_object_unref(tmp->obj);
				aep_free(tmp);
			}
			adopt_halfmade(rt, de->d_name, pdir);
			continue;
		}
		aep_buf_free(&b);
		if (node__path(path, &e, "%s/net", pdir) == 0) {
			struct aep_buf nb;
			aep_buf_init(&nb);
			if (node__read_file(path, 64, &nb, &e) == 0 &&
			    aep_buf_append(&nb, "", 1) == 0)
				sscanf(nb.data, "%15s %15s", ap->ip, ap->veth);
			aep_buf_free(&nb);
		}
		if (node__path(path, &e, "%s/start", pdir) == 0)
			ap->start_ns = read_num_file(path, INT64_MAX);
		for (size_t i = 0; i < tmp->nctr; i++) {
			adopt_ctr(rt, tmp->uid, tmp->ctrs[i].name, &ap->ctrs[i]);
			aep_buf_printf(&known, "%s\n", tmp->ctrs[i].id);
		}
		aep_object_unref(tmp->obj);
		aep_free(tmp);
		ap->obj = obj;
		ap->next = j->adopted;
		j->adopted = ap;
	}
	closedir(d);

	/* Containers in the runtime's state that no pod owns. */
	const char *argv[] = {rt->runtime, "--root", rt->oci_root, "list", "-q", NULL};
	struct aep_buf out;
	int status;
	aep_buf_init(&out);
	if (node__run(argv, &out, &status, &j->e) == 0 && status == 0 &&
	    aep_buf_append(&out, "", 1) == 0 && aep_buf_append(&known, "", 1) == 0) {
		for (char *save = NULL, *t = strtok_r(out.data, "\n", &save); t != NULL;
		     t = strtok_r(NULL, "\n", &save)) {
			char line[AEP_CTR_ID_MAX + 2];
			snprintf(line, sizeof(line), "%s\n", t);
			if (strncmp(t, rt->id_prefix, strlen(rt->id_prefix)) != 0 ||
			    (known.data != NULL && strstr(known.data, line) != NULL))
				continue;
			oci(rt, "kill", t, "KILL");
			oci(rt, "delete", t, NULL);
		}
	}
	aep_buf_free(&out);
	aep_buf_free(&known);
	node__net_gc(&rt->net, pods);
	j->rc = 0;
}

static void after_adopt(struct job *j)
{
	struct aep_runtime *rt = j->rt;

	while (j->adopted != NULL) {
		struct adopt_pod *ap = j->adopted;
		struct node__pod *p = NULL;
		struct aep_error e;
		j->adopted = ap->next;
		if (!rt->closing && node__pod_find(rt, ap->obj->meta.uid) == NULL &&
		    pod_parse(rt, ap->obj, &p, &e) == 0) {
			pod_list(rt, p);
			p->sandbox = true;
			/* The pod keeps the start time it had before the
			 * agent restarted. */
			p->start_ns = ap->start_ns > 0 ? ap->start_ns : aep_now_realtime_ns();
			snprintf(p->ip, sizeof(p->ip), "%s", ap->ip);
			snprintf(p->veth, sizeof(p->veth), "%s", ap->veth);
			for (size_t i = 0; i < p->nctr; i++) {
				struct node__ctr *c = &p->ctrs[i];
				const struct adopt_ctr *a = &ap->ctrs[i];
				c->restarts = a->restarts;
				c->started_ns = a->started_ns;
				if (a->what == A_FRESH) {
					ctr_start(c);
					continue;
				}
				c->has_run = true;
				ctr_watch(c);
				if (a->what == A_RUNNING) {
					c->run = NODE__RUN_RUNNING;
					c->state = AEP_CTR_RUNNING;
					c->reason[0] = '\0';
					ctr_refresh(c); /* it may have ended meanwhile */
				} else {
					ctr_exited(c, a->exit_code, a->finished_ns);
				}
			}
			pod_changed(p);
		}
		aep_object_unref(ap->obj);
		aep_free(ap);
	}
	rt->adopted = true;
	if (j->adopt_cb != NULL)
		j->adopt_cb(rt, rt->closing ? AEP_ECANCELED : j->rc, j->adopt_data);
}

int aep_runtime_adopt(struct aep_runtime *rt, aep_adopt_cb cb, void *data)
{
	struct job *j;
	int rc;

	if (rt->closing || rt->adopted)
		return AEP_ECONFLICT;
	rt->adopted = true;
	rc = job_queue(rt, NULL, NULL, JOB_ADOPT, &j);
	if (rc != 0)
		return rc;
	j->adopt_cb = cb;
	j->adopt_data = data;
	return 0;
}

/* ---- the public face ---------------------------------------------------- */

int aep_runtime_pod_run(struct aep_runtime *rt, const struct aep_object *pod, struct aep_error *e)
{
	struct node__pod *p = NULL;
	int rc;

	if (rt->closing)
		return aep_errorf(e, AEP_ECANCELED, "runtime closing");
	if (pod->kind == AEP_KIND_POD && (p = node__pod_find(rt, pod->meta.uid)) != NULL) {
		if (p->killing)
			return aep_errorf(e, AEP_ECONFLICT, "pod %s/%s: being killed", p->ns,
					  p->name);
		if (pod->meta.generation > p->generation)
			p->generation = pod->meta.generation;
		return 0;
	}
	rc = pod_parse(rt, pod, &p, e);
	if (rc != 0)
		return rc;
	/* pod_parse sets @p whenever it returns 0; say so, for the analyzer
	 * too (its failures come from aep_errorf, whose code it cannot see). */
	if (p == NULL)
		return aep_errorf(e, AEP_EINTERNAL, "pod %s: parse gave no pod", pod->meta.name);
	pod_list(rt, p);
	p->start_ns = aep_now_realtime_ns();
	sandbox_start(p);
	pod_changed(p);
	return 0;
}

int aep_runtime_pod_status(struct aep_runtime *rt, const char *uid, struct aep_pod_status **out)
{
	struct node__pod *p = node__pod_find(rt, uid);

	if (p == NULL)
		return AEP_ENOTFOUND;
	*out = status_build(p);
	return *out == NULL ? AEP_ENOMEM : 0;
}

int aep_runtime_pod_list(struct aep_runtime *rt, aep_pod_visit_cb cb, void *data)
{
	for (struct node__pod *p = rt->pods; p != NULL; p = p->next) {
		struct aep_pod_status *st = status_build(p);
		int rc;
		if (st == NULL)
			return AEP_ENOMEM;
		rc = cb(st, data);
		aep_free(st);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static void *json_malloc(size_t n)
{
	return aep_malloc(n);
}

int aep_runtime_new(uv_loop_t *loop, const struct aep_runtime_config *cfg, struct aep_runtime **out,
		    struct aep_error *e)
{
	struct aep_runtime *rt;
	const char *runtime = cfg->runtime ? cfg->runtime : "crun";
	const char *idp = cfg->id_prefix ? cfg->id_prefix : "aep-";
	char path[NODE__PATH_MAX];
	static const char *const subdirs[] = {"images", "ipam", "netns", "oci", "pods", NULL};

	if (cfg->dir == NULL || cfg->dir[0] != '/')
		return aep_errorf(e, AEP_EINVALID, "node runtime: dir: must be an absolute path");
	if (strlen(idp) > 32 || strchr(idp, '/') != NULL)
		return aep_errorf(e, AEP_EINVALID, "node runtime: id prefix: at most 32 bytes");
	if (cfg->pod_cidr == NULL)
		return aep_errorf(e, AEP_EINVALID, "node runtime: pod CIDR: required");
	/* jansson allocates through the AEP heap in the whole process. */
	json_set_alloc_funcs(json_malloc, aep_free);
	rt = aep_calloc(1, sizeof(*rt));
	if (rt == NULL)
		return aep_errorf(e, AEP_ENOMEM, "node runtime: out of memory");
	rt->loop = loop;
	snprintf(rt->dir, sizeof(rt->dir), "%s", cfg->dir);
	snprintf(rt->runtime, sizeof(rt->runtime), "%s", runtime);
	snprintf(rt->runtime_name, sizeof(rt->runtime_name), "%s",
		 strstr(runtime, "runc") ? "runc" : "crun");
	snprintf(rt->id_prefix, sizeof(rt->id_prefix), "%s", idp);
	rt->backoff_base_ms = cfg->backoff_base_ms ? cfg->backoff_base_ms : 10000;
	rt->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : 300000;
	if (rt->backoff_max_ms < rt->backoff_base_ms)
		rt->backoff_max_ms = rt->backoff_base_ms;
	rt->grace_ms = cfg->grace_ms;
	rt->status_cb = cfg->status_cb;
	rt->data = cfg->data;
	if (node__path(rt->oci_root, e, "%s/oci", rt->dir) != 0 ||
	    node__net_init(&rt->net, rt->dir, cfg->bridge, cfg->pod_cidr,
			   cfg->link_prefix ? cfg->link_prefix : "aepv", e) != 0)
		goto err_after_alloc;
	for (int i = 0; subdirs[i] != NULL; i++) {
		if (node__path(path, e, "%s/%s", rt->dir, subdirs[i]) != 0 ||
		    node__mkdir_p(path, 0700, e) != 0)
			goto err_after_alloc;
	}
	if (node__net_bridge_ensure(&rt->net, e) != 0)
		goto err_after_alloc;
	*out = rt;
	return 0;

err_after_alloc:
	aep_free(rt);
	return aep_error_prefix(e, "node runtime");
}

void aep_runtime_close(struct aep_runtime *rt, aep_close_cb cb, void *data)
{
	rt->closing = true;
	rt->close_cb = cb;
	rt->close_data = data;
	node__io_cancel_all(rt);
	while (rt->pods != NULL)
		pod_release(rt->pods);
	node__rt_maybe_free(rt);
}

/* ---- host preparation --------------------------------------------------- */

int aep_node_host_prepare(struct aep_error *e)
{
	if (geteuid() != 0)
		return aep_errorf(e, AEP_EFORBIDDEN, "node: must run as root");
	if (unshare(CLONE_NEWNS) != 0)
		return aep_errorf(e, AEP_EIO, "node: unshare(CLONE_NEWNS): %s", strerror(errno));
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		return aep_errorf(e, AEP_EIO, "node: make / private: %s", strerror(errno));
	if (!node__is_mounted("/sys/fs/cgroup/unified"))
		return 0;
	if (umount2("/sys/fs/cgroup/unified", MNT_DETACH) != 0)
		return aep_errorf(e, AEP_EIO, "node: umount /sys/fs/cgroup/unified: %s",
				  strerror(errno));
	/* crun then treats "unified" as one more v1 hierarchy and writes
	 * into it: give it a private tmpfs, not the host's /sys/fs/cgroup. */
	if (mount("tmpfs", "/sys/fs/cgroup/unified", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "mode=755,size=1m") != 0)
		return aep_errorf(e, AEP_EIO, "node: tmpfs on /sys/fs/cgroup/unified: %s",
				  strerror(errno));
	return 0;
}
