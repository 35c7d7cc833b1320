/* The verbs that change objects: create, apply, delete, label.
 *
 * Objects travel as jansson values while the CLI edits them (namespace from
 * -n, merged fields for apply, labels) and are packed as msgpack for the
 * call. Each verb goes on after an object fails and exits 1 at the end,
 * like kubectl. Updates carry the resourceVersion they were computed from
 * and are recomputed from a fresh read when the masters answer Conflict. */
#include "cli/cli.h"
#include "cli/internal.h"

#include <string.h>

/* ---- objects from manifests ----------------------------------------------------- */

struct item {
	json_t *obj; /* owned */
	const struct aep_kind_info *ki;
	const char *name; /* borrowed from obj */
	const char *ns;	  /* borrowed from obj, NULL when unset */
};

static const char *json_path_str(json_t *o, const char *a, const char *b)
{
	json_t *v = json_object_get(o, a);
	if (b != NULL)
		v = json_object_get(v, b);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Check a manifest object and fill @it; -n sets (or must match) the
 * namespace. Returns 0, or 1 after printing an error. */
static int item_from_doc(struct cli *c, const char *file, const struct aep_buf *doc,
			 struct item *it)
{
	memset(it, 0, sizeof(*it));
	msgpack_zone zone;
	msgpack_object o;
	struct aep_error e = {0};
	msgpack_zone_init(&zone, 4096);
	if (aep_mp_unpack(doc->data, doc->len, &zone, &o, &e) == 0)
		it->obj = cli__mp_to_json(&o);
	msgpack_zone_destroy(&zone);
	if (it->obj == NULL) {
		fprintf(stderr, "error: %s: out of memory\n", file);
		return 1;
	}
	const char *kind = json_path_str(it->obj, "kind", NULL);
	if (kind == NULL) {
		fprintf(stderr, "error: error validating \"%s\": kind not set\n", file);
		goto err_after_obj;
	}
	it->ki = aep_kind_lookup(kind, strlen(kind));
	if (it->ki == NULL) {
		fprintf(stderr, "error: unable to recognize \"%s\": no matches for kind \"%s\"\n",
			file, kind);
		goto err_after_obj;
	}
	json_t *meta = json_object_get(it->obj, "metadata");
	it->name = json_path_str(it->obj, "metadata", "name");
	if (!json_is_object(meta) || it->name == NULL || *it->name == '\0') {
		fprintf(stderr,
			"error: error when creating \"%s\": %s: resource name may not "
			"be empty\n",
			file, it->ki->name);
		goto err_after_obj;
	}
	it->ns = json_path_str(it->obj, "metadata", "namespace");
	if (it->ki->namespaced && c->o.ns != NULL) {
		if (it->ns != NULL && strcmp(it->ns, c->o.ns) != 0) {
			fprintf(stderr,
				"error: the namespace from the provided object \"%s\" does not "
				"match the namespace \"%s\". You must pass '--namespace=%s' to "
				"perform this operation.\n",
				it->ns, c->o.ns, it->ns);
			goto err_after_obj;
		}
		json_object_set_new(meta, "namespace", json_string(c->o.ns));
		it->ns = json_path_str(it->obj, "metadata", "namespace");
	}
	return 0;
err_after_obj:
	json_decref(it->obj);
	it->obj = NULL;
	return 1;
}

/* Load every -f file: items in order. Returns the number of errors. */
static int load_items(struct cli *c, struct item **out, size_t *n)
{
	int errors = 0;
	*out = NULL;
	*n = 0;
	for (size_t f = 0; f < c->o.nfiles; f++) {
		struct aep_docs docs;
		struct aep_error e = {0};
		if (aep_manifest_load(c->o.files[f], &docs, &e) != 0) {
			fprintf(stderr, "error: %s\n", e.msg);
			errors++;
			continue;
		}
		struct item *v = aep_realloc(*out, (*n + docs.n + 1) * sizeof(*v));
		if (v == NULL) {
			aep_docs_free(&docs);
			fprintf(stderr, "error: out of memory\n");
			errors++;
			continue;
		}
		*out = v;
		for (size_t i = 0; i < docs.n; i++) {
			if (item_from_doc(c, c->o.files[f], &docs.items[i], &v[*n]) != 0)
				errors++;
			else
				(*n)++;
		}
		aep_docs_free(&docs);
	}
	return errors;
}

static void items_free(struct item *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		json_decref(v[i].obj);
	aep_free(v);
}

static json_t *name_params(const struct aep_kind_info *ki, const char *ns, const char *name)
{
	json_t *p = json_pack("{s:s, s:s}", "kind", ki->name, "name", name);
	if (p != NULL && ki->namespaced)
		json_object_set_new(p, "namespace", json_string(ns ? ns : "default"));
	return p;
}

static bool same_as_stored(json_t *stored, json_t *obj);

/* After a retried create answered AlreadyExists: is the stored object the
 * one we sent (same labels, annotations, spec)? */
static bool created_by_us(struct cli *c, json_t *obj, const struct aep_kind_info *ki,
			  const char *name)
{
	struct aep_error e = {0};
	struct cli__reply r;
	const char *ns = json_path_str(obj, "metadata", "namespace");
	if (cli__call(c, "get", name_params(ki, ns ? ns : cli__namespace(c, ki), name), &r, &e) !=
	    0)
		return false;
	json_t *stored = cli__mp_to_json(&r.obj);
	cli__reply_free(&r);
	bool same = stored != NULL && same_as_stored(stored, obj);
	json_decref(stored);
	return same;
}

static int create_one(struct cli *c, json_t *obj, const struct aep_kind_info *ki, const char *name,
		      struct aep_error *e)
{
	struct cli__reply r;
	int rv = cli__call(c, "create", json_pack("{s:O}", "object", obj), &r, e);
	if (rv == AEP_EEXISTS && c->retried && created_by_us(c, obj, ki, name))
		return 0; /* an attempt that looked lost had gone through */
	if (rv == AEP_EEXISTS)
		aep_errorf(e, rv, "%s \"%s\" already exists", ki->plural, name);
	if (rv == 0)
		cli__reply_free(&r);
	return rv;
}

/* ---- create ---------------------------------------------------------------------- */

int cli__cmd_create(struct cli *c)
{
	struct aep_error e = {0};
	if (c->o.nfiles == 0) {
		/* aep create namespace NAME */
		if (c->o.nargs == 2) {
			const struct aep_kind_info *ki =
			    cli__kind(c->o.args[0], strlen(c->o.args[0]), &e);
			if (ki != NULL && ki->kind == AEP_KIND_NAMESPACE) {
				json_t *obj =
				    json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind",
					      "Namespace", "metadata", "name", c->o.args[1]);
				int rv = obj ? create_one(c, obj, ki, c->o.args[1], &e)
					     : aep_errorf(&e, AEP_ENOMEM, "out of memory");
				json_decref(obj);
				if (rv != 0) {
					cli__report(&e);
					return 1;
				}
				printf("namespace/%s created\n", c->o.args[1]);
				return 0;
			}
		}
		fprintf(stderr, "error: must specify one of -f and -k (or \"aep create "
				"namespace NAME\")\n");
		return 1;
	}
	struct item *items;
	size_t n;
	int status = load_items(c, &items, &n) ? 1 : 0;
	if (n == 0 && status == 0) {
		fprintf(stderr, "error: no objects passed to create\n");
		status = 1;
	}
	for (size_t i = 0; i < n; i++) {
		if (create_one(c, items[i].obj, items[i].ki, items[i].name, &e) != 0) {
			cli__report(&e);
			status = 1;
			continue;
		}
		printf("%s/%s created\n", items[i].ki->singular, items[i].name);
		fflush(stdout);
	}
	items_free(items, n);
	return status;
}

/* ---- apply ------------------------------------------------------------------------ */

/* @base with @over laid on it: maps merge key by key, arrays of the same
 * length merge element by element (so values the masters filled in, such
 * as defaults, survive), anything else is replaced by @over. New ref. */
static json_t *merge(json_t *base, json_t *over)
{
	if (json_is_object(base) && json_is_object(over)) {
		json_t *out = json_deep_copy(base);
		const char *k;
		json_t *v;
		if (out == NULL)
			return NULL;
		json_object_foreach(over, k, v)
		{
			json_t *b = json_object_get(base, k);
			json_t *m = b ? merge(b, v) : json_deep_copy(v);
			if (m == NULL || json_object_set_new(out, k, m) != 0) {
				json_decref(out);
				return NULL;
			}
		}
		return out;
	}
	if (json_is_array(base) && json_is_array(over) &&
	    json_array_size(base) == json_array_size(over)) {
		json_t *out = json_array();
		size_t i;
		json_t *v;
		if (out == NULL)
			return NULL;
		json_array_foreach(over, i, v)
		{
			json_t *m = merge(json_array_get(base, i), v);
			if (m == NULL || json_array_append_new(out, m) != 0) {
				json_decref(out);
				return NULL;
			}
		}
		return out;
	}
	return json_deep_copy(over);
}

/* Lay @key of @from (a map) over the same key of @into. */
static int merge_key(json_t *into, json_t *from, const char *key)
{
	json_t *over = json_object_get(from, key);
	if (over == NULL || json_is_null(over))
		return 0;
	json_t *base = json_object_get(into, key);
	json_t *m = base ? merge(base, over) : json_deep_copy(over);
	if (m == NULL)
		return AEP_ENOMEM;
	return json_object_set_new(into, key, m) == 0 ? 0 : AEP_ENOMEM;
}

/* @stored with the labels, annotations, spec and status of @obj laid over
 * it (new reference), or NULL when out of memory. */
static json_t *applied(json_t *stored, json_t *obj)
{
	json_t *want = json_deep_copy(stored);
	json_t *meta = json_object_get(want, "metadata");
	json_t *new_meta = json_object_get(obj, "metadata");
	if (want == NULL || !json_is_object(meta) || merge_key(meta, new_meta, "labels") != 0 ||
	    merge_key(meta, new_meta, "annotations") != 0 || merge_key(want, obj, "spec") != 0 ||
	    merge_key(want, obj, "status") != 0) {
		json_decref(want);
		return NULL;
	}
	return want;
}

static bool same_as_stored(json_t *stored, json_t *obj)
{
	json_t *want = applied(stored, obj);
	bool same = want != NULL && json_equal(stored, want);
	json_decref(want);
	return same;
}

enum apply_result { APPLY_CREATED, APPLY_CONFIGURED, APPLY_UNCHANGED };

static int apply_one(struct cli *c, const struct item *it, enum apply_result *res,
		     struct aep_error *e)
{
	bool maybe_updated = false; /* a retried update answered Conflict */
	for (int attempt = 0;; attempt++) {
		struct cli__reply r;
		int rv = cli__call(c, "get", name_params(it->ki, it->ns, it->name), &r, e);
		if (rv == AEP_ENOTFOUND) {
			rv = create_one(c, it->obj, it->ki, it->name, e);
			if (rv == AEP_EEXISTS && attempt < CLI__CONFLICT_RETRIES)
				continue; /* created meanwhile: update it instead */
			*res = APPLY_CREATED;
			return rv;
		}
		if (rv != 0)
			return rv;
		json_t *stored = cli__mp_to_json(&r.obj);
		cli__reply_free(&r);
		json_t *want = stored ? applied(stored, it->obj) : NULL;
		if (want == NULL) {
			json_decref(stored);
			return aep_errorf(e, AEP_ENOMEM, "out of memory");
		}
		bool same = json_equal(stored, want);
		json_decref(stored);
		if (same) {
			json_decref(want);
			*res = maybe_updated ? APPLY_CONFIGURED : APPLY_UNCHANGED;
			return 0;
		}
		rv = cli__call(c, "update", json_pack("{s:o}", "object", want), &r, e);
		if (rv == AEP_ECONFLICT && c->retried)
			maybe_updated = true;
		if (rv == AEP_ECONFLICT && attempt < CLI__CONFLICT_RETRIES)
			continue;
		if (rv == AEP_ENOTFOUND && attempt < CLI__CONFLICT_RETRIES)
			continue; /* deleted meanwhile: create it */
		if (rv != 0)
			return rv;
		cli__reply_free(&r);
		*res = APPLY_CONFIGURED;
		return 0;
	}
}

int cli__cmd_apply(struct cli *c)
{
	if (c->o.nfiles == 0) {
		fprintf(stderr, "error: must specify -f\n");
		return 1;
	}
	struct item *items;
	size_t n;
	int status = load_items(c, &items, &n) ? 1 : 0;
	if (n == 0 && status == 0) {
		fprintf(stderr, "error: no objects passed to apply\n");
		status = 1;
	}
	for (size_t i = 0; i < n; i++) {
		struct aep_error e = {0};
		enum apply_result res;
		if (apply_one(c, &items[i], &res, &e) != 0) {
			if (e.code == AEP_ENOTFOUND && strstr(e.msg, "not found") == NULL)
				aep_error_prefix(&e, "%s \"%s\"", items[i].ki->plural,
						 items[i].name);
			cli__report(&e);
			status = 1;
			continue;
		}
		printf("%s/%s %s\n", items[i].ki->singular, items[i].name,
		       res == APPLY_CREATED	 ? "created"
		       : res == APPLY_CONFIGURED ? "configured"
						 : "unchanged");
		fflush(stdout);
	}
	items_free(items, n);
	return status;
}

/* ---- delete ------------------------------------------------------------------------ */

static int delete_one(struct cli *c, const struct aep_kind_info *ki, const char *ns,
		      const char *name)
{
	struct aep_error e = {0};
	struct cli__reply r;
	if (cli__call(c, "delete", name_params(ki, ns, name), &r, &e) != 0) {
		if (e.code == AEP_ENOTFOUND && c->retried) {
			/* an attempt that looked lost had gone through */
			printf("%s \"%s\" deleted\n", ki->singular, name);
			return 0;
		}
		if (e.code == AEP_ENOTFOUND)
			cli__not_found(&e, ki, name);
		cli__report(&e);
		return 1;
	}
	cli__reply_free(&r);
	printf("%s \"%s\" deleted\n", ki->singular, name);
	fflush(stdout);
	return 0;
}

/* delete -l SELECTOR: every matching object of the kind. */
static int delete_selected(struct cli *c, const struct aep_kind_info *ki)
{
	struct aep_error e = {0};
	json_t *params = json_pack("{s:s, s:s}", "kind", ki->name, "labelSelector", c->o.selector);
	const char *ns = cli__namespace(c, ki);
	if (params != NULL && ns != NULL)
		json_object_set_new(params, "namespace", json_string(ns));
	struct cli__reply r;
	if (cli__call(c, "list", params, &r, &e) != 0) {
		cli__report(&e);
		return 1;
	}
	int status = 0;
	size_t count = 0;
	const msgpack_object *items = cli__mp_path(&r.obj, "items");
	for (uint32_t i = 0;
	     items && items->type == MSGPACK_OBJECT_ARRAY && i < items->via.array.size; i++) {
		char name[AEP_NAME_MAX + 1], ons[AEP_NAME_MAX + 1];
		const msgpack_object *o = &items->via.array.ptr[i];
		cli__mp_str(o, "metadata.name", name, sizeof(name), "");
		const char *objns = cli__mp_str(o, "metadata.namespace", ons, sizeof(ons), NULL);
		status |= delete_one(c, ki, objns, name);
		count++;
	}
	if (count == 0)
		fprintf(stderr, "No resources found\n");
	cli__reply_free(&r);
	return status;
}

int cli__cmd_delete(struct cli *c)
{
	struct aep_error e = {0};
	int status = 0;
	if (c->o.nfiles > 0) {
		struct item *items;
		size_t n;
		status = load_items(c, &items, &n) ? 1 : 0;
		for (size_t i = 0; i < n; i++)
			status |=
			    delete_one(c, items[i].ki,
				       items[i].ns ? items[i].ns : cli__namespace(c, items[i].ki),
				       items[i].name);
		items_free(items, n);
		return status;
	}
	if (c->o.nargs == 0) {
		fprintf(stderr,
			"error: you must provide one or more resources by argument or "
			"filename, e.g. \"aep delete pod web\" or \"aep delete -f x.yaml\"\n");
		return 1;
	}
	const struct aep_kind_info *ki = NULL;
	size_t named = 0;
	for (size_t i = 0; i < c->o.nargs; i++) {
		const char *a = c->o.args[i];
		const char *slash = strchr(a, '/');
		if (slash != NULL) {
			const struct aep_kind_info *k = cli__kind(a, (size_t)(slash - a), &e);
			if (k == NULL) {
				fprintf(stderr, "error: %s\n", e.msg);
				status = 1;
				continue;
			}
			status |= delete_one(c, k, cli__namespace(c, k), slash + 1);
			named++;
		} else if (i == 0) {
			ki = cli__kind(a, strlen(a), &e);
			if (ki == NULL) {
				fprintf(stderr, "error: %s\n", e.msg);
				return 1;
			}
		} else if (ki == NULL) {
			/* "delete pod/a b": a bare name needs a type as the first argument. */
			fprintf(stderr, "error: no resource type for \"%s\": use TYPE/NAME\n", a);
			status = 1;
		} else {
			status |= delete_one(c, ki, cli__namespace(c, ki), a);
			named++;
		}
	}
	if (named == 0 && ki != NULL) {
		if (c->o.selector != NULL)
			return delete_selected(c, ki);
		fprintf(stderr, "error: resource(s) were provided, but no name was specified\n");
		return 1;
	}
	return status;
}

/* ---- label ------------------------------------------------------------------------ */

struct label_change {
	char *key;   /* heap */
	char *value; /* heap; NULL: remove */
};

static int parse_label_changes(struct cli *c, size_t first, struct label_change *ch, size_t *n)
{
	struct aep_error e = {0};
	*n = 0;
	for (size_t i = first; i < c->o.nargs; i++) {
		const char *a = c->o.args[i];
		size_t len = strlen(a);
		const char *eq = strchr(a, '=');
		struct label_change *x = &ch[(*n)++];
		if (eq == NULL && len > 1 && a[len - 1] == '-') {
			x->key = aep_strndup(a, len - 1);
			x->value = NULL;
		} else if (eq != NULL) {
			x->key = aep_strndup(a, (size_t)(eq - a));
			x->value = aep_strdup(eq + 1);
			if (x->value == NULL) {
				fprintf(stderr, "error: out of memory\n");
				return 1;
			}
			if (aep_validate_label_value(x->value, strlen(x->value), &e) != 0) {
				fprintf(stderr, "error: invalid label value: \"%s\": %s\n", a,
					e.msg);
				return 1;
			}
		} else {
			fprintf(stderr, "error: invalid label spec: %s (use key=value or key-)\n",
				a);
			return 1;
		}
		if (x->key == NULL) {
			fprintf(stderr, "error: out of memory\n");
			return 1;
		}
		if (aep_validate_label_key(x->key, strlen(x->key), &e) != 0) {
			fprintf(stderr, "error: invalid label spec: %s: %s\n", a, e.msg);
			return 1;
		}
	}
	if (*n == 0) {
		fprintf(stderr, "error: at least one label update is required\n");
		return 1;
	}
	return 0;
}

enum label_result { LABELED, UNLABELED, NOT_LABELED };

struct label_edit {
	const struct label_change *ch;
	size_t n;
	bool overwrite;
	const char *plural, *name;
	bool added, removed;
};

static enum cli__mod label_mutate(json_t *obj, void *data)
{
	struct label_edit *le = data;
	json_t *meta = json_object_get(obj, "metadata");
	if (!json_is_object(meta)) {
		fprintf(stderr, "error: %s \"%s\": object has no metadata\n", le->plural, le->name);
		return CLI__FAIL;
	}
	json_t *labels = cli__json_member_object(meta, "labels");
	if (labels == NULL) {
		fprintf(stderr, "error: out of memory\n");
		return CLI__FAIL;
	}
	le->added = le->removed = false;
	for (size_t i = 0; i < le->n; i++) {
		const struct label_change *ch = &le->ch[i];
		json_t *cur = json_object_get(labels, ch->key);
		if (ch->value == NULL) {
			if (cur == NULL) {
				fprintf(stderr, "label \"%s\" not found.\n", ch->key);
				continue;
			}
			json_object_del(labels, ch->key);
			le->removed = true;
			continue;
		}
		if (json_is_string(cur) && strcmp(json_string_value(cur), ch->value) == 0)
			continue;
		if (cur != NULL && !le->overwrite) {
			fprintf(stderr,
				"error: '%s' already has a value (%s), and --overwrite is false\n",
				ch->key, json_is_string(cur) ? json_string_value(cur) : "");
			return CLI__FAIL;
		}
		json_object_set_new(labels, ch->key, json_string(ch->value));
		le->added = true;
	}
	return le->added || le->removed ? CLI__WRITE : CLI__SKIP;
}

static int label_one(struct cli *c, const struct aep_kind_info *ki, const char *name,
		     const struct label_change *ch, size_t n, enum label_result *res)
{
	struct label_edit le = {
	    .ch = ch, .n = n, .overwrite = c->o.overwrite, .plural = ki->plural, .name = name};
	switch (cli__modify(c, ki, cli__namespace(c, ki), name, label_mutate, &le)) {
	case CLI__WRITE: *res = le.added ? LABELED : UNLABELED; return 0;
	case CLI__SKIP: *res = NOT_LABELED; return 0;
	case CLI__FAIL: break;
	}
	return 1;
}

int cli__cmd_label(struct cli *c)
{
	struct aep_error e = {0};
	if (c->o.nargs < 2) {
		fprintf(stderr,
			"error: usage: aep label KIND NAME key=value [key-] [--overwrite]\n");
		return 1;
	}
	const char *a = c->o.args[0];
	const char *slash = strchr(a, '/');
	const struct aep_kind_info *ki;
	const char *name;
	size_t first;
	if (slash != NULL) {
		ki = cli__kind(a, (size_t)(slash - a), &e);
		name = slash + 1;
		first = 1;
	} else {
		ki = cli__kind(a, strlen(a), &e);
		name = c->o.args[1];
		first = 2;
	}
	if (ki == NULL) {
		fprintf(stderr, "error: %s\n", e.msg);
		return 1;
	}
	struct label_change *ch = aep_calloc(c->o.nargs + 1, sizeof(*ch));
	if (ch == NULL) {
		fprintf(stderr, "error: out of memory\n");
		return 1;
	}
	size_t n = 0;
	int status = parse_label_changes(c, first, ch, &n);
	if (status == 0) {
		enum label_result res;
		status = label_one(c, ki, name, ch, n, &res);
		if (status == 0)
			printf("%s/%s %s\n", ki->singular, name,
			       res == LABELED	  ? "labeled"
			       : res == UNLABELED ? "unlabeled"
						  : "not labeled");
	}
	for (size_t i = 0; i < n; i++) {
		aep_free(ch[i].key);
		aep_free(ch[i].value);
	}
	aep_free(ch);
	return status;
}
