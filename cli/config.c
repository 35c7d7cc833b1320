/* The client configuration (admin.conf): a small YAML map
 *
 *   servers: 127.0.0.1:7001,127.0.0.1:7002   # or a list of addresses
 *   ca: pki/ca.crt
 *   cert: pki/admin.crt
 *   key: pki/admin.key
 *
 * read with the manifest parser. Relative paths are resolved against the
 * directory of the file. Unknown keys are refused so that a typo does not
 * silently drop a setting. */
#include "cli/cli.h"
#include "cli/internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A path from the file made absolute against @dir (heap string). */
static char *resolve(const char *dir, const char *p)
{
	if (p[0] == '/' || dir == NULL)
		return aep_strdup(p);
	struct aep_buf b;
	aep_buf_init(&b);
	aep_buf_printf(&b, "%s/%s", dir, p);
	if (b.failed || aep_buf_append(&b, "", 1) != 0) {
		aep_buf_free(&b);
		return NULL;
	}
	return aep_buf_steal(&b, NULL);
}

static char *dir_of(const char *path)
{
	char *abs = realpath(path, NULL); /* libc malloc */
	const char *p = abs ? abs : path;
	const char *slash = strrchr(p, '/');
	char *dir = slash == NULL ? aep_strdup(".")
		    : slash == p  ? aep_strdup("/")
				  : aep_strndup(p, (size_t)(slash - p));
	free(abs);
	return dir;
}

/* servers as a comma-separated heap string, from a string or a list. */
static char *servers_text(const msgpack_object *v)
{
	if (v->type == MSGPACK_OBJECT_STR)
		return aep_strndup(v->via.str.ptr, v->via.str.size);
	if (v->type != MSGPACK_OBJECT_ARRAY)
		return NULL;
	struct aep_buf b;
	aep_buf_init(&b);
	for (uint32_t i = 0; i < v->via.array.size; i++) {
		const msgpack_object *s = &v->via.array.ptr[i];
		if (s->type != MSGPACK_OBJECT_STR) {
			aep_buf_free(&b);
			return NULL;
		}
		if (i > 0)
			aep_buf_append(&b, ",", 1);
		aep_buf_append(&b, s->via.str.ptr, s->via.str.size);
	}
	if (aep_buf_append(&b, "", 1) != 0 || b.failed) {
		aep_buf_free(&b);
		return NULL;
	}
	return aep_buf_steal(&b, NULL);
}

static int config_read(const char *path, struct aep_cli_config *out, struct aep_error *e)
{
	struct aep_docs docs;
	int rv = aep_manifest_load(path, &docs, e);
	if (rv != 0)
		return rv;
	char *dir = NULL;
	msgpack_zone zone;
	msgpack_zone_init(&zone, 1024);
	if (docs.n != 1) {
		rv = aep_errorf(e, AEP_EINVALID, "%s: expected one map with servers, ca, cert, key",
				path);
		goto err_after_docs;
	}
	msgpack_object o;
	rv = aep_mp_unpack(docs.items[0].data, docs.items[0].len, &zone, &o, e);
	if (rv != 0)
		goto err_after_docs;
	dir = dir_of(path);
	if (dir == NULL) {
		rv = aep_errorf(e, AEP_ENOMEM, "out of memory");
		goto err_after_docs;
	}
	for (uint32_t i = 0; i < o.via.map.size; i++) {
		const msgpack_object *k = &o.via.map.ptr[i].key;
		const msgpack_object *v = &o.via.map.ptr[i].val;
		char key[16] = "";
		if (k->via.str.size < sizeof(key))
			memcpy(key, k->via.str.ptr, k->via.str.size);
		char **slot = strcmp(key, "servers") == 0 ? &out->servers
			      : strcmp(key, "ca") == 0	  ? &out->ca
			      : strcmp(key, "cert") == 0  ? &out->cert
			      : strcmp(key, "key") == 0	  ? &out->key
							  : NULL;
		if (slot == NULL) {
			rv = aep_errorf(e, AEP_EINVALID, "%s: unknown key \"%.*s\"", path,
					(int)k->via.str.size, k->via.str.ptr);
			goto err_after_dir;
		}
		if (slot == &out->servers) {
			aep_free(*slot);
			*slot = servers_text(v);
		} else {
			if (v->type != MSGPACK_OBJECT_STR) {
				rv = aep_errorf(e, AEP_EINVALID, "%s: %s: must be a path", path,
						key);
				goto err_after_dir;
			}
			char *raw = aep_strndup(v->via.str.ptr, v->via.str.size);
			aep_free(*slot);
			*slot = raw ? resolve(dir, raw) : NULL;
			aep_free(raw);
		}
		if (*slot == NULL) {
			rv =
			    aep_errorf(e, v->type == MSGPACK_OBJECT_STR ? AEP_ENOMEM : AEP_EINVALID,
				       "%s: %s: must be an address list", path, key);
			goto err_after_dir;
		}
	}
	if (out->servers == NULL || out->servers[0] == '\0') {
		rv = aep_errorf(e, AEP_EINVALID, "%s: no servers", path);
		goto err_after_dir;
	}
err_after_dir:
	aep_free(dir);
err_after_docs:
	msgpack_zone_destroy(&zone);
	aep_docs_free(&docs);
	return rv;
}

int aep_cli_config_load(const char *path, struct aep_cli_config *out, struct aep_error *e)
{
	memset(out, 0, sizeof(*out));
	char home_path[PATH_MAX];
	const char *chosen = path;
	if (chosen == NULL || *chosen == '\0')
		chosen = getenv("AEP_CONFIG");
	if (chosen == NULL || *chosen == '\0') {
		const char *home = getenv("HOME");
		if (home != NULL && *home != '\0') {
			snprintf(home_path, sizeof(home_path), "%s/.aep/config", home);
			if (access(home_path, F_OK) == 0)
				chosen = home_path;
		}
	}
	if (chosen == NULL || *chosen == '\0')
		return aep_errorf(e, AEP_ENOTFOUND,
				  "no client configuration: pass --config FILE, set AEP_CONFIG, "
				  "or create ~/.aep/config (aep admin init writes DIR/admin.conf)");
	int rv = config_read(chosen, out, e);
	if (rv != 0)
		aep_cli_config_free(out);
	return rv;
}

void aep_cli_config_free(struct aep_cli_config *c)
{
	if (c == NULL)
		return;
	aep_free(c->servers);
	aep_free(c->ca);
	aep_free(c->cert);
	aep_free(c->key);
	memset(c, 0, sizeof(*c));
}
