/* aep get: tables like kubectl, -o yaml|json|name|wide, and -w.
 *
 * A watch lists first (printing what is there), then watches from the
 * list's resourceVersion and prints each change. When the connection drops
 * it watches again from the last revision it printed (the masters replay
 * what it missed, exactly once); when that revision has left the event log
 * (Expired) it lists again. It gives up after about 30 s without a master. */
#include "cli/cli.h"
#include "cli/internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COLS      16
#define WATCH_RETRIES 30

enum fmt { FMT_TABLE, FMT_WIDE, FMT_YAML, FMT_JSON, FMT_NAME };

static enum fmt fmt_of(const struct cli *c)
{
	const char *o = c->o.output;
	if (o == NULL)
		return FMT_TABLE;
	if (strcmp(o, "wide") == 0)
		return FMT_WIDE;
	if (strcmp(o, "yaml") == 0)
		return FMT_YAML;
	if (strcmp(o, "json") == 0)
		return FMT_JSON;
	return FMT_NAME;
}

struct printer {
	struct cli *c;
	const struct aep_kind_info *ki;
	enum fmt fmt;
	struct cli__cols cols;
	size_t widths[MAX_COLS];
	size_t ncols;
	bool header_done;
	size_t docs; /* yaml/json documents printed so far (watch) */
};

static void printer_init(struct printer *p, struct cli *c, const struct aep_kind_info *ki)
{
	memset(p, 0, sizeof(*p));
	p->c = c;
	p->ki = ki;
	p->fmt = fmt_of(c);
	p->cols.wide = p->fmt == FMT_WIDE;
	p->cols.show_ns = c->o.all_ns;
	p->cols.now_s = aep_now_realtime_ns() / 1000000000;
}

static void print_name(const struct aep_kind_info *ki, const msgpack_object *o)
{
	char name[AEP_NAME_MAX + 1];
	printf("%s/%s\n", ki->singular, cli__mp_str(o, "metadata.name", name, sizeof(name), ""));
}

/* "k=v,k2=v2" or "<none>" as a heap string, NULL on ENOMEM. */
static char *labels_text(const msgpack_object *o)
{
	const msgpack_object *l = cli__mp_path(o, "metadata.labels");
	struct aep_buf b;
	aep_buf_init(&b);
	for (uint32_t i = 0; l && l->type == MSGPACK_OBJECT_MAP && i < l->via.map.size; i++) {
		const msgpack_object *k = &l->via.map.ptr[i].key;
		const msgpack_object *v = &l->via.map.ptr[i].val;
		if (k->type != MSGPACK_OBJECT_STR || v->type != MSGPACK_OBJECT_STR)
			continue;
		aep_buf_printf(&b, "%s%.*s=%.*s", b.len ? "," : "", (int)k->via.str.size,
			       k->via.str.ptr, (int)v->via.str.size, v->via.str.ptr);
	}
	if (b.len == 0)
		aep_buf_printf(&b, "<none>");
	if (b.failed || aep_buf_append(&b, "", 1) != 0) {
		aep_buf_free(&b);
		return NULL;
	}
	return aep_buf_steal(&b, NULL);
}

/* Print a table of @objs (the header only the first time); column widths
 * are remembered so that rows printed later by a watch line up. Returns 0
 * or AEP_ENOMEM. */
static int print_table(struct printer *p, const msgpack_object *const *objs, size_t n)
{
	size_t nkind;
	const char *const *kind_hdr = cli__table_header((int)p->ki->kind, &p->cols, &nkind);
	const char *hdr[MAX_COLS];
	size_t ncols = nkind;
	memcpy(hdr, kind_hdr, nkind * sizeof(*hdr));
	if (p->c->o.show_labels)
		hdr[ncols++] = "LABELS";
	struct cli__table t;
	cli__table_init(&t, ncols);
	int rv = 0;
	if (!p->header_done)
		rv = cli__table_add(&t, hdr);
	for (size_t i = 0; i < n && rv == 0; i++) {
		char *cells[MAX_COLS] = {0};
		int got = cli__table_row((int)p->ki->kind, objs[i], &p->cols, cells, MAX_COLS);
		if (got < 0) {
			rv = AEP_ENOMEM;
			break;
		}
		if (p->c->o.show_labels && got < MAX_COLS) {
			cells[got] = labels_text(objs[i]);
			if (cells[got] == NULL) {
				cli__cells_free(cells, (size_t)got);
				rv = AEP_ENOMEM;
				break;
			}
			got++;
		}
		for (int k = got; k < (int)ncols; k++)
			cells[k] = NULL;
		rv = cli__table_add(&t, (const char *const *)cells);
		cli__cells_free(cells, (size_t)got);
	}
	if (rv == 0) {
		/* widths: the widest cell so far (rows printed by a watch line up) */
		p->ncols = ncols;
		for (size_t r = 0; r < t.nrows; r++) {
			for (size_t k = 0; k < ncols && k < MAX_COLS; k++) {
				size_t w = strlen(t.cells[r * ncols + k]);
				if (w > p->widths[k])
					p->widths[k] = w;
			}
		}
		for (size_t r = 0; r < t.nrows; r++) {
			for (size_t k = 0; k < ncols; k++) {
				const char *s = t.cells[r * ncols + k];
				if (k + 1 == ncols)
					printf("%s\n", s);
				else
					printf("%-*s", (int)(p->widths[k] + 3), s);
			}
		}
		p->header_done = true;
	}
	cli__table_free(&t);
	return rv;
}

/* Re-encode @o inside a kubectl List: {apiVersion, items, kind, metadata}. */
static int print_list_doc(struct printer *p, const msgpack_object *const *objs, size_t n,
			  const char *rv_text)
{
	struct aep_buf b;
	aep_buf_init(&b);
	msgpack_packer pk;
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 4);
	aep_pack_str(&pk, "apiVersion");
	aep_pack_str(&pk, "v1");
	aep_pack_str(&pk, "items");
	msgpack_pack_array(&pk, n);
	for (size_t i = 0; i < n; i++)
		msgpack_pack_object(&pk, *objs[i]);
	aep_pack_str(&pk, "kind");
	aep_pack_str(&pk, "List");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "resourceVersion");
	aep_pack_str(&pk, rv_text ? rv_text : "");
	int rv = b.failed ? AEP_ENOMEM : 0;
	if (rv == 0) {
		msgpack_zone zone;
		msgpack_object o;
		msgpack_zone_init(&zone, 4096);
		struct aep_error e = {0};
		rv = aep_mp_unpack(b.data, b.len, &zone, &o, &e);
		if (rv == 0)
			rv = p->fmt == FMT_YAML ? aep_print_yaml(stdout, &o)
						: aep_print_json(stdout, &o);
		msgpack_zone_destroy(&zone);
	}
	aep_buf_free(&b);
	return rv;
}

/* One object as its own document (yaml: "---" between documents). */
static int print_doc(struct printer *p, const msgpack_object *o)
{
	if (p->fmt == FMT_YAML) {
		if (p->docs++ > 0)
			fputs("---\n", stdout);
		return aep_print_yaml(stdout, o);
	}
	p->docs++;
	return aep_print_json(stdout, o);
}

/* Print objects as a whole answer: a List for yaml/json when @as_list. */
static int print_objects(struct printer *p, const msgpack_object *const *objs, size_t n,
			 bool as_list, const char *rv_text)
{
	switch (p->fmt) {
	case FMT_TABLE:
	case FMT_WIDE:
		if (n == 0)
			return 0;
		return print_table(p, objs, n);
	case FMT_NAME:
		for (size_t i = 0; i < n; i++)
			print_name(p->ki, objs[i]);
		return 0;
	case FMT_YAML:
	case FMT_JSON:
		if (as_list)
			return print_list_doc(p, objs, n, rv_text);
		for (size_t i = 0; i < n; i++) {
			int rv = print_doc(p, objs[i]);
			if (rv != 0)
				return rv;
		}
		return 0;
	}
	return 0;
}

static void no_resources(const struct cli *c, const struct aep_kind_info *ki)
{
	const char *ns = cli__namespace(c, ki);
	if (ns != NULL)
		fprintf(stderr, "No resources found in %s namespace.\n", ns);
	else
		fprintf(stderr, "No resources found\n");
}

static json_t *list_params(const struct cli *c, const struct aep_kind_info *ki)
{
	json_t *params = json_pack("{s:s}", "kind", ki->name);
	const char *ns = cli__namespace(c, ki);
	if (params == NULL)
		return NULL;
	if (ns != NULL)
		json_object_set_new(params, "namespace", json_string(ns));
	if (c->o.selector != NULL)
		json_object_set_new(params, "labelSelector", json_string(c->o.selector));
	if (c->o.stale)
		json_object_set_new(params, "stale", json_true());
	return params;
}

/* The list's items (filtered by @name when non-NULL) as pointers into @r. */
static int list_items(const struct cli__reply *r, const char *name, const msgpack_object ***out,
		      size_t *n)
{
	const msgpack_object *items = cli__mp_path(&r->obj, "items");
	*out = NULL;
	*n = 0;
	if (items == NULL || items->type != MSGPACK_OBJECT_ARRAY)
		return 0;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	const msgpack_object **v = aep_calloc(items->via.array.size + 1, sizeof(*v));
	if (v == NULL)
		return AEP_ENOMEM;
	for (uint32_t i = 0; i < items->via.array.size; i++) {
		char buf[AEP_NAME_MAX + 1];
		if (name != NULL && strcmp(cli__mp_str(&items->via.array.ptr[i], "metadata.name",
						       buf, sizeof(buf), ""),
					   name) != 0)
			continue;
		v[(*n)++] = &items->via.array.ptr[i];
	}
	*out = v;
	return 0;
}

/* ---- watch ------------------------------------------------------------------- */

struct watcher {
	struct printer p;
	const char *name; /* only this object, or NULL */
	uint64_t last_rv;
	bool expired;
	bool failed;
};

static uint64_t rv_of(const msgpack_object *o)
{
	char buf[32];
	const char *s = cli__mp_str(o, "metadata.resourceVersion", buf, sizeof(buf), NULL);
	return s ? strtoull(s, NULL, 10) : 0;
}

static void on_watch_event(struct cli *c, const msgpack_object *ev)
{
	struct watcher *w = c->event_data;
	const msgpack_object *obj = cli__mp_path(ev, "object");
	char type[32];
	cli__mp_str(ev, "type", type, sizeof(type), "");
	if (obj == NULL || obj->type != MSGPACK_OBJECT_MAP) {
		char code[32];
		if (strcmp(cli__mp_str(ev, "code", code, sizeof(code), ""), "Expired") == 0 ||
		    strcmp(type, "EXPIRED") == 0) {
			w->expired = true;
			uv_stop(&c->loop);
		}
		return;
	}
	uint64_t rv = rv_of(obj);
	if (rv > w->last_rv)
		w->last_rv = rv;
	if (w->name != NULL) {
		char buf[AEP_NAME_MAX + 1];
		if (strcmp(cli__mp_str(obj, "metadata.name", buf, sizeof(buf), ""), w->name) != 0)
			return;
	}
	w->p.cols.now_s = aep_now_realtime_ns() / 1000000000;
	if (print_objects(&w->p, &obj, 1, false, NULL) != 0 || fflush(stdout) != 0 ||
	    ferror(stdout)) {
		w->failed = true; /* stdout is gone (closed pipe): stop watching */
		uv_stop(&c->loop);
	}
}

/* List and print; sets w->last_rv to the list's revision. */
static int watch_list(struct cli *c, struct watcher *w, bool first, struct aep_error *e)
{
	struct cli__reply r;
	int rv = cli__call(c, "list", list_params(c, w->p.ki), &r, e);
	if (rv != 0)
		return rv;
	const msgpack_object **objs;
	size_t n;
	rv = list_items(&r, w->name, &objs, &n);
	if (rv != 0) {
		cli__reply_free(&r);
		return aep_errorf(e, rv, "out of memory");
	}
	if (first && n == 0 && (w->p.fmt == FMT_TABLE || w->p.fmt == FMT_WIDE))
		no_resources(c, w->p.ki);
	rv = print_objects(&w->p, objs, n, false, NULL);
	fflush(stdout);
	w->last_rv = (uint64_t)cli__mp_int(&r.obj, "resourceVersion", 0);
	for (size_t i = 0; i < n; i++) {
		uint64_t orv = rv_of(objs[i]);
		if (orv > w->last_rv)
			w->last_rv = orv;
	}
	aep_free(objs);
	cli__reply_free(&r);
	if (rv != 0)
		return aep_errorf(e, rv, "printing failed");
	return 0;
}

static int get_watch(struct cli *c, const struct aep_kind_info *ki, const char *name)
{
	struct watcher w;
	memset(&w, 0, sizeof(w));
	printer_init(&w.p, c, ki);
	w.name = name;
	struct aep_error e = {0};
	int rv = watch_list(c, &w, true, &e);
	if (rv != 0) {
		cli__report(&e);
		return 1;
	}
	unsigned failures = 0;
	c->event_data = &w;
	for (;;) {
		json_t *params = list_params(c, ki);
		char rvbuf[32];
		snprintf(rvbuf, sizeof(rvbuf), "%" PRIu64, w.last_rv);
		if (params != NULL) {
			json_object_del(params, "stale");
			json_object_set_new(params, "resourceVersion", json_string(rvbuf));
		}
		struct cli__reply r;
		w.expired = false;
		c->on_event = on_watch_event;
		rv = cli__call(c, "watch", params, &r, &e);
		if (rv == AEP_EEXPIRED) {
			c->on_event = NULL;
			rv = watch_list(c, &w, false, &e);
			if (rv != 0 && rv != AEP_EUNAVAILABLE && rv != AEP_ETIMEOUT &&
			    rv != AEP_ECANCELED) {
				cli__report(&e);
				return 1;
			}
			continue;
		}
		if (rv == AEP_EUNAVAILABLE || rv == AEP_ETIMEOUT || rv == AEP_ECANCELED ||
		    rv == AEP_EIO) {
			c->on_event = NULL;
			if (++failures > WATCH_RETRIES) {
				cli__report(&e);
				return 1;
			}
			uv_sleep(1000);
			continue;
		}
		if (rv != 0) {
			cli__report(&e);
			return 1;
		}
		failures = 0;
		cli__reply_free(&r);
		cli__run(c);
		c->on_event = NULL;
		if (w.failed) {
			fprintf(stderr, "error: printing failed\n");
			return 1;
		}
		if (w.expired) {
			rv = watch_list(c, &w, false, &e);
			if (rv != 0)
				uv_sleep(1000);
			continue;
		}
		if (!c->disconnected)
			uv_sleep(1000); /* the loop ran dry without a disconnect */
	}
}

/* ---- get ------------------------------------------------------------------------ */

int cli__cmd_get(struct cli *c)
{
	struct aep_error e = {0};
	if (c->o.nargs == 0) {
		fprintf(stderr, "error: you must specify the type of resource to get, e.g. "
				"\"aep get pods\"\n");
		return 1;
	}
	/* "pods", "pods web db", "pod/web", "pod/web svc/db" */
	const struct aep_kind_info *ki = NULL;
	const char **names = aep_calloc(c->o.nargs + 1, sizeof(*names));
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	const struct aep_kind_info **kinds = aep_calloc(c->o.nargs + 1, sizeof(*kinds));
	size_t nnames = 0;
	int status = 0;
	if (names == NULL || kinds == NULL) {
		status = 1;
		fprintf(stderr, "error: out of memory\n");
		goto out;
	}
	for (size_t i = 0; i < c->o.nargs; i++) {
		const char *a = c->o.args[i];
		const char *slash = strchr(a, '/');
		if (slash != NULL) {
			kinds[nnames] = cli__kind(a, (size_t)(slash - a), &e);
			if (kinds[nnames] == NULL || slash[1] == '\0') {
				if (kinds[nnames] != NULL)
					aep_errorf(&e, AEP_EINVALID,
						   "arguments in resource/name "
						   "form must have a single "
						   "resource and name");
				fprintf(stderr, "error: %s\n", e.msg);
				status = 1;
				goto out;
			}
			names[nnames++] = slash + 1;
			ki = ki ? ki : kinds[nnames - 1];
		} else if (i == 0) {
			ki = cli__kind(a, strlen(a), &e);
			if (ki == NULL) {
				fprintf(stderr, "error: %s\n", e.msg);
				status = 1;
				goto out;
			}
		} else {
			kinds[nnames] = ki;
			names[nnames++] = a;
		}
	}
	if (c->o.watch) {
		if (nnames > 1) {
			fprintf(stderr,
				"error: watch is only supported on individual resources "
				"and resource collections, but %zu resources were found\n",
				nnames);
			status = 1;
			goto out;
		}
		status = get_watch(c, nnames ? kinds[0] : ki, nnames ? names[0] : NULL);
		goto out;
	}

	struct printer p;
	if (nnames == 0) {
		printer_init(&p, c, ki);
		struct cli__reply r;
		if (cli__call(c, "list", list_params(c, ki), &r, &e) != 0) {
			cli__report(&e);
			status = 1;
			goto out;
		}
		const msgpack_object **objs;
		size_t n;
		if (list_items(&r, NULL, &objs, &n) != 0) {
			cli__reply_free(&r);
			fprintf(stderr, "error: out of memory\n");
			status = 1;
			goto out;
		}
		char rvbuf[32];
		const char *rvtext =
		    cli__mp_str(&r.obj, "resourceVersion", rvbuf, sizeof(rvbuf), "");
		if (n == 0 && (p.fmt == FMT_TABLE || p.fmt == FMT_WIDE || p.fmt == FMT_NAME))
			no_resources(c, ki);
		if (print_objects(&p, objs, n, true, rvtext) != 0)
			status = 1;
		aep_free(objs);
		cli__reply_free(&r);
		goto out;
	}

	/* named objects: fetch each, print those found, report the others */
	struct cli__reply *replies = aep_calloc(nnames, sizeof(*replies));
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	const msgpack_object **objs = aep_calloc(nnames, sizeof(*objs));
	size_t n = 0;
	if (replies == NULL || objs == NULL) {
		aep_free(replies);
		aep_free(objs);
		fprintf(stderr, "error: out of memory\n");
		status = 1;
		goto out;
	}
	for (size_t i = 0; i < nnames; i++) {
		const char *ns = cli__namespace(c, kinds[i]);
		if (ns == NULL && kinds[i]->namespaced)
			ns = c->o.ns ? c->o.ns : "default";
		json_t *params = json_pack("{s:s, s:s}", "kind", kinds[i]->name, "name", names[i]);
		if (params != NULL && ns != NULL)
			json_object_set_new(params, "namespace", json_string(ns));
		if (params != NULL && c->o.stale)
			json_object_set_new(params, "stale", json_true());
		if (cli__call(c, "get", params, &replies[n], &e) != 0) {
			if (e.code == AEP_ENOTFOUND)
				cli__not_found(&e, kinds[i], names[i]);
			cli__report(&e);
			status = 1;
			continue;
		}
		objs[n] = &replies[n].obj;
		n++;
	}
	/* one kind at a time for tables (each kind has its own columns) */
	size_t start = 0;
	while (start < n) {
		char kind_a[64], kind_b[64];
		cli__mp_str(objs[start], "kind", kind_a, sizeof(kind_a), "");
		size_t end = start + 1;
		while (end < n && strcmp(cli__mp_str(objs[end], "kind", kind_b, sizeof(kind_b), ""),
					 kind_a) == 0)
			end++;
		const struct aep_kind_info *k = aep_kind_lookup(kind_a, strlen(kind_a));
		printer_init(&p, c, k ? k : ki ? ki : kinds[0]);
		if (nnames > 1 && (p.fmt == FMT_YAML || p.fmt == FMT_JSON)) {
			/* one List for everything that was found */
			if (print_objects(&p, objs, n, true, "") != 0)
				status = 1;
			break;
		}
		if (start > 0 && (p.fmt == FMT_TABLE || p.fmt == FMT_WIDE))
			putchar('\n');
		if (print_objects(&p, objs + start, end - start, false, NULL) != 0)
			status = 1;
		start = end;
	}
	for (size_t i = 0; i < n; i++)
		cli__reply_free(&replies[i]);
	aep_free(replies);
	aep_free(objs);
out:
	aep_free(names);
	aep_free(kinds);
	return status;
}
