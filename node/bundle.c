/* OCI bundles: one per container, at DIR/pods/UID/c/NAME, written with
 * jansson from the Pod's container spec.
 *
 * The root file system is an overlay per container: the image's rootfs as
 * the lower layer, upper/ and work/ beside config.json, mounted at rootfs/
 * by the agent before each run (the writes of a container survive its
 * restarts, as with `docker restart`). A container with
 * securityContext.readOnlyRootFilesystem gets no overlay: its root is the
 * image's rootfs itself, bound read-only by the runtime, with a tmpfs on
 * /tmp. Every container of a pod joins the pod's network namespace; pid,
 * ipc, uts and mount namespaces are its own, the hostname is the pod's
 * name. resources.limits become cgroup limits (memory in bytes; cpu as a
 * CFS quota over a 100 ms period). */
#include "node/node-int.h"

#include <errno.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <jansson.h>

int node__image_dir(const char *dir, const char *image, char *out, struct aep_error *e)
{
	size_t len = strlen(image);

	if (len == 0 || len > AEP_IMAGE_NAME_MAX)
		return aep_errorf(e, AEP_EINVALID, "image name: must be 1 to %d bytes",
				  AEP_IMAGE_NAME_MAX);
	for (size_t i = 0; i < len; i++) {
		char c = image[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-' || c == ':' || c == '/' || c == '@'))
			return aep_errorf(e, AEP_EINVALID, "image name %s: bad character", image);
	}
	if (image[0] == '.')
		return aep_errorf(e, AEP_EINVALID, "image name %s: must not start with '.'", image);
	if (node__path(out, e, "%s/images/%s", dir, image) != 0)
		return e->code;
	for (char *p = out + strlen(out) - len; *p != '\0'; p++)
		if (*p == '/' || *p == ':')
			*p = '_';
	return 0;
}

static const char *const default_caps[] = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",	       "CAP_FOWNER",
    "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",	       "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",	   "CAP_AUDIT_WRITE",
};

static json_t *caps_array(void)
{
	json_t *a = json_array();
	for (size_t i = 0; a != NULL && i < sizeof(default_caps) / sizeof(default_caps[0]); i++)
		json_array_append_new(a, json_string(default_caps[i]));
	return a;
}

static json_t *oci_mount(const char *dst, const char *type, const char *src, const char *opts)
{
	json_t *m = json_object(), *o = json_array();
	char *copy = aep_strdup(opts);

	if (m == NULL || o == NULL || copy == NULL) {
		json_decref(m);
		json_decref(o);
		aep_free(copy);
		return NULL;
	}
	for (char *save = NULL, *t = strtok_r(copy, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save))
		json_array_append_new(o, json_string(t));
	aep_free(copy);
	json_object_set_new(m, "destination", json_string(dst));
	json_object_set_new(m, "type", json_string(type));
	json_object_set_new(m, "source", json_string(src));
	json_object_set_new(m, "options", o);
	return m;
}

static json_t *str_array(const char *const *v)
{
	json_t *a = json_array();
	for (; a != NULL && *v != NULL; v++)
		json_array_append_new(a, json_string(*v));
	return a;
}

/* Append the strings of msgpack array @o (if any) to JSON array @a. */
static void append_strs(json_t *a, const msgpack_object *o)
{
	if (o == NULL || o->type != MSGPACK_OBJECT_ARRAY)
		return;
	for (uint32_t i = 0; i < o->via.array.size; i++) {
		const msgpack_object *s = &o->via.array.ptr[i];
		if (s->type == MSGPACK_OBJECT_STR)
			json_array_append_new(a, json_stringn(s->via.str.ptr, s->via.str.size));
	}
}

static int quantity(const msgpack_object *limits, const char *key, int64_t *milli)
{
	const msgpack_object *q = limits ? aep_mp_map_get(limits, key) : NULL;
	struct aep_error e;

	*milli = 0;
	if (q == NULL)
		return 0;
	if (q->type == MSGPACK_OBJECT_STR)
		return aep_quantity_parse(q->via.str.ptr, q->via.str.size, milli, &e);
	if (q->type == MSGPACK_OBJECT_POSITIVE_INTEGER && q->via.u64 < INT64_MAX / 1000) {
		*milli = (int64_t)q->via.u64 * 1000;
		return 0;
	}
	return AEP_EINVALID;
}

static json_t *build_config(const msgpack_object *pod_meta, const msgpack_object *c,
			    const char *netns, const char *root_path, bool ro)
{
	static const char *const masked[] = {"/proc/acpi",
					     "/proc/asound",
					     "/proc/kcore",
					     "/proc/keys",
					     "/proc/latency_stats",
					     "/proc/timer_list",
					     "/proc/timer_stats",
					     "/proc/sched_debug",
					     "/sys/firmware",
					     "/proc/scsi",
					     NULL};
	static const char *const readonly[] = {
	    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", NULL};
	const msgpack_object *name = aep_mp_map_get(pod_meta, "name");
	const msgpack_object *env = aep_mp_map_get(c, "env");
	const msgpack_object *wd = aep_mp_map_get(c, "workingDir");
	const msgpack_object *res = aep_mp_map_get(c, "resources");
	const msgpack_object *limits = res ? aep_mp_map_get(res, "limits") : NULL;
	json_t *cfg = json_object(), *proc = json_object(), *args = json_array();
	json_t *envs = json_array(), *caps = json_object(), *root = json_object();
	json_t *mounts = json_array(), *linux = json_object(), *nss = json_array();
	json_t *resources = json_object(), *user = json_object(), *rlim = json_array();
	char hostname[64];
	int64_t mem, cpu;

	if (!cfg || !proc || !args || !envs || !caps || !root || !mounts || !linux || !nss ||
	    !resources || !user || !rlim)
		goto err_after_alloc;
	snprintf(hostname, sizeof(hostname), "%.*s", name ? (int)name->via.str.size : 3,
		 name ? name->via.str.ptr : "pod");

	/* process */
	append_strs(args, aep_mp_map_get(c, "command"));
	append_strs(args, aep_mp_map_get(c, "args"));
	if (json_array_size(args) == 0)
		json_array_append_new(args, json_string("/bin/sh"));
	json_array_append_new(envs, json_string("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
						"/usr/bin:/sbin:/bin"));
	json_array_append_new(envs, json_pack("s+", "HOSTNAME=", hostname));
	for (uint32_t i = 0; env && env->type == MSGPACK_OBJECT_ARRAY && i < env->via.array.size;
	     i++) {
		const msgpack_object *n = aep_mp_map_get(&env->via.array.ptr[i], "name");
		const msgpack_object *v = aep_mp_map_get(&env->via.array.ptr[i], "value");
		if (n == NULL || n->type != MSGPACK_OBJECT_STR)
			continue;
		json_array_append_new(
		    envs,
		    json_sprintf("%.*s=%.*s", (int)n->via.str.size, n->via.str.ptr,
				 v && v->type == MSGPACK_OBJECT_STR ? (int)v->via.str.size : 0,
				 v && v->type == MSGPACK_OBJECT_STR ? v->via.str.ptr : ""));
	}
	json_object_set_new(user, "uid", json_integer(0));
	json_object_set_new(user, "gid", json_integer(0));
	json_object_set_new(caps, "bounding", caps_array());
	json_object_set_new(caps, "effective", caps_array());
	json_object_set_new(caps, "permitted", caps_array());
	json_object_set_new(proc, "terminal", json_false());
	json_object_set_new(proc, "user", user);
	json_object_set_new(proc, "args", args);
	json_object_set_new(proc, "env", envs);
	if (wd && wd->type == MSGPACK_OBJECT_STR && wd->via.str.size > 0)
		json_object_set_new(proc, "cwd", json_stringn(wd->via.str.ptr, wd->via.str.size));
	else
		json_object_set_new(proc, "cwd", json_string("/"));
	json_object_set_new(proc, "capabilities", caps);
	json_object_set_new(proc, "rlimits", rlim); /* none: the agent's limits */
	json_object_set_new(proc, "noNewPrivileges", json_false());

	/* root and mounts */
	json_object_set_new(root, "path", json_string(root_path));
	json_object_set_new(root, "readonly", json_boolean(ro));
	json_array_append_new(mounts, oci_mount("/proc", "proc", "proc", "nosuid,noexec,nodev"));
	json_array_append_new(
	    mounts, oci_mount("/dev", "tmpfs", "tmpfs", "nosuid,strictatime,mode=755,size=65536k"));
	json_array_append_new(mounts,
			      oci_mount("/dev/pts", "devpts", "devpts",
					"nosuid,noexec,newinstance,ptmxmode=0666,mode=0620"));
	json_array_append_new(mounts, oci_mount("/dev/shm", "tmpfs", "shm",
						"nosuid,noexec,nodev,mode=1777,size=65536k"));
	json_array_append_new(mounts,
			      oci_mount("/dev/mqueue", "mqueue", "mqueue", "nosuid,noexec,nodev"));
	json_array_append_new(mounts,
			      oci_mount("/sys", "sysfs", "sysfs", "nosuid,noexec,nodev,ro"));
	if (ro)
		json_array_append_new(
		    mounts, oci_mount("/tmp", "tmpfs", "tmpfs", "nosuid,nodev,mode=1777"));

	/* linux: namespaces, the pod's network, limits */
	json_array_append_new(nss, json_pack("{s:s}", "type", "pid"));
	json_array_append_new(nss, json_pack("{s:s}", "type", "ipc"));
	json_array_append_new(nss, json_pack("{s:s}", "type", "uts"));
	json_array_append_new(nss, json_pack("{s:s}", "type", "mount"));
	json_array_append_new(nss, json_pack("{s:s,s:s}", "type", "network", "path", netns));
	if (quantity(limits, "memory", &mem) != 0 || quantity(limits, "cpu", &cpu) != 0)
		goto err_after_alloc;
	if (mem > 0) {
		int64_t bytes = mem / 1000 + (mem % 1000 != 0);
		json_object_set_new(resources, "memory",
				    json_pack("{s:I}", "limit", (json_int_t)bytes));
	}
	if (cpu > 0) {
		int64_t quota = cpu * 100; /* milli-CPUs * 100000 us / 1000 */
		if (quota < 1000)
			quota = 1000;
		json_object_set_new(resources, "cpu",
				    json_pack("{s:I,s:I}", "quota", (json_int_t)quota, "period",
					      (json_int_t)100000));
	}
	json_object_set_new(linux, "namespaces", nss);
	json_object_set_new(linux, "resources", resources);
	json_object_set_new(linux, "maskedPaths", str_array(masked));
	json_object_set_new(linux, "readonlyPaths", str_array(readonly));

	json_object_set_new(cfg, "ociVersion", json_string("1.0.2"));
	json_object_set_new(cfg, "process", proc);
	json_object_set_new(cfg, "root", root);
	json_object_set_new(cfg, "hostname", json_string(hostname));
	json_object_set_new(cfg, "mounts", mounts);
	json_object_set_new(cfg, "linux", linux);
	return cfg;

err_after_alloc:
	json_decref(cfg);
	json_decref(proc);
	json_decref(args);
	json_decref(envs);
	json_decref(caps);
	json_decref(root);
	json_decref(mounts);
	json_decref(linux);
	json_decref(nss);
	json_decref(resources);
	json_decref(user);
	json_decref(rlim);
	return NULL;
}

int node__bundle_write(const char *dir, const char *uid, const struct aep_object *pod,
		       unsigned index, const char *netns, struct aep_error *e)
{
	msgpack_zone zone;
	msgpack_object o;
	const msgpack_object *meta, *spec, *cs, *c, *sc, *ro, *cname, *image;
	char cdir[NODE__PATH_MAX], path[NODE__PATH_MAX], img[NODE__PATH_MAX], root[NODE__PATH_MAX];
	char *text = NULL;
	json_t *cfg;
	bool read_only;
	int rc;

	msgpack_zone_init(&zone, 4096);
	rc = aep_mp_unpack(pod->data, pod->len, &zone, &o, e);
	if (rc != 0)
		goto out;
	meta = aep_mp_map_get(&o, "metadata");
	spec = aep_mp_map_get(&o, "spec");
	cs = spec ? aep_mp_map_get(spec, "containers") : NULL;
	if (meta == NULL || cs == NULL || cs->type != MSGPACK_OBJECT_ARRAY ||
	    index >= cs->via.array.size) {
		rc = aep_errorf(e, AEP_EINVALID, "pod: no container %u", index);
		goto out;
	}
	c = &cs->via.array.ptr[index];
	cname = aep_mp_map_get(c, "name");
	image = aep_mp_map_get(c, "image");
	sc = aep_mp_map_get(c, "securityContext");
	ro = sc ? aep_mp_map_get(sc, "readOnlyRootFilesystem") : NULL;
	read_only = ro && ro->type == MSGPACK_OBJECT_BOOLEAN && ro->via.boolean;
	if (cname == NULL || image == NULL || cname->type != MSGPACK_OBJECT_STR ||
	    image->type != MSGPACK_OBJECT_STR) {
		rc = aep_errorf(e, AEP_EINVALID, "pod: container %u: no name or image", index);
		goto out;
	}
	char iname[AEP_IMAGE_NAME_MAX + 1];
	snprintf(iname, sizeof(iname), "%.*s", (int)image->via.str.size, image->via.str.ptr);
	if ((rc = node__image_dir(dir, iname, img, e)) != 0 ||
	    (rc = node__path(cdir, e, "%s/pods/%s/c/%.*s", dir, uid, (int)cname->via.str.size,
			     cname->via.str.ptr)) != 0)
		goto out;
	if ((rc = node__mkdir_p(cdir, 0700, e)) != 0)
		goto out;
	if (read_only) {
		rc = node__path(root, e, "%s/rootfs", img);
	} else {
		const char *sub[] = {"rootfs", "upper", "work"};
		rc = 0;
		for (int i = 0; rc == 0 && i < 3; i++) {
			if ((rc = node__path(path, e, "%s/%s", cdir, sub[i])) == 0)
				rc = node__mkdir_p(path, 0755, e);
		}
		snprintf(root, sizeof(root), "rootfs");
	}
	if (rc != 0)
		goto out;
	cfg = build_config(meta, c, netns, root, read_only);
	if (cfg == NULL) {
		rc = aep_errorf(e, AEP_ENOMEM, "config.json: out of memory or bad limits");
		goto out;
	}
	text = json_dumps(cfg, JSON_INDENT(1));
	json_decref(cfg);
	if (text == NULL) {
		rc = aep_errorf(e, AEP_ENOMEM, "config.json: out of memory");
		goto out;
	}
	if ((rc = node__path(path, e, "%s/config.json", cdir)) == 0)
		rc = node__write_file(path, text, strlen(text), e);
	{
		json_free_t jfree;
		json_get_alloc_funcs(NULL, &jfree);
		jfree(text); /* jansson's allocator (the AEP heap once a runtime set it) */
	}
out:
	msgpack_zone_destroy(&zone);
	return rc;
}

int node__rootfs_mount(const char *dir, const char *uid, const struct node__ctr_spec *c,
		       struct aep_error *e)
{
	char img[NODE__PATH_MAX], cdir[NODE__PATH_MAX], target[NODE__PATH_MAX];
	char opts[3 * NODE__PATH_MAX + 64];
	struct stat st;
	int n;

	if (node__image_dir(dir, c->image, img, e) != 0 ||
	    node__path(cdir, e, "%s/pods/%s/c/%s", dir, uid, c->name) != 0 ||
	    node__path(target, e, "%s/rootfs", img) != 0)
		return e->code;
	if (stat(target, &st) != 0 || !S_ISDIR(st.st_mode))
		return aep_errorf(e, AEP_ENOTFOUND, "image %s: not loaded", c->image);
	if (c->read_only_root)
		return 0;
	n = snprintf(opts, sizeof(opts), "lowerdir=%s/rootfs,upperdir=%s/upper,workdir=%s/work",
		     img, cdir, cdir);
	if (n < 0 || (size_t)n >= sizeof(opts) || node__path(target, e, "%s/rootfs", cdir) != 0)
		return aep_errorf(e, AEP_EINVALID, "overlay: paths too long");
	if (node__is_mounted(target))
		return 0;
	if (mount("overlay", target, "overlay", MS_NODEV, opts) != 0)
		return aep_errorf(e, AEP_EIO, "mount overlay on %s: %s", target, strerror(errno));
	return 0;
}

void node__rootfs_umount(const char *dir, const char *uid, const char *name)
{
	char target[NODE__PATH_MAX];
	struct aep_error e;

	if (node__path(target, &e, "%s/pods/%s/c/%s/rootfs", dir, uid, name) != 0)
		return;
	while (node__is_mounted(target) && umount2(target, MNT_DETACH) == 0)
		;
}
