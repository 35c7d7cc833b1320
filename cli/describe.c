/* aep describe KIND NAME: a readable multi-line view of one object (its
 * metadata, then spec and status as indented key/values) followed by the
 * events whose involvedObject is this object, like kubectl describe. */
#include "cli/cli.h"
#include "cli/internal.h"

#include <inttypes.h>
#include <string.h>

#define KEY_WIDTH 18

static bool is_scalar(const msgpack_object *o)
{
	return o->type != MSGPACK_OBJECT_MAP && o->type != MSGPACK_OBJECT_ARRAY;
}

static bool is_empty(const msgpack_object *o)
{
	return (o->type == MSGPACK_OBJECT_MAP && o->via.map.size == 0) ||
	       (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 0);
}

static void print_scalar(const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_STR:
		/* multi-line strings continue on indented lines */
		for (uint32_t i = 0; i < o->via.str.size; i++)
			putchar(o->via.str.ptr[i]);
		break;
	case MSGPACK_OBJECT_NIL: fputs("<none>", stdout); break;
	case MSGPACK_OBJECT_BOOLEAN: fputs(o->via.boolean ? "true" : "false", stdout); break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER: printf("%" PRIu64, o->via.u64); break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: printf("%" PRId64, o->via.i64); break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: printf("%g", o->via.f64); break;
	case MSGPACK_OBJECT_BIN: printf("<%u bytes>", o->via.bin.size); break;
	default: fputs("?", stdout); break;
	}
}

static void print_value(const msgpack_object *o, int indent);

/* "Key:  value" or "Key:" and the nested value below it. @dash starts the
 * line with "- " (the first key of a map inside a list). */
static void print_key(const char *k, size_t klen, const msgpack_object *v, int indent, bool dash)
{
	printf("%*s%s%.*s:", indent, "", dash ? "- " : "", (int)klen, k);
	if (is_scalar(v) || is_empty(v)) {
		int used = indent + (dash ? 2 : 0) + (int)klen + 1;
		printf("%*s", used < KEY_WIDTH ? KEY_WIDTH - used + 1 : 1, "");
		if (is_empty(v))
			fputs("<none>", stdout);
		else
			print_scalar(v);
		putchar('\n');
		return;
	}
	putchar('\n');
	print_value(v, indent + (dash ? 4 : 2));
}

static void print_value(const msgpack_object *o, int indent)
{
	if (o->type == MSGPACK_OBJECT_MAP) {
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object *k = &o->via.map.ptr[i].key;
			if (k->type != MSGPACK_OBJECT_STR)
				continue;
			print_key(k->via.str.ptr, k->via.str.size, &o->via.map.ptr[i].val, indent,
				  false);
		}
		return;
	}
	if (o->type == MSGPACK_OBJECT_ARRAY) {
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			const msgpack_object *el = &o->via.array.ptr[i];
			if (el->type == MSGPACK_OBJECT_MAP && el->via.map.size > 0) {
				for (uint32_t j = 0; j < el->via.map.size; j++) {
					const msgpack_object *k = &el->via.map.ptr[j].key;
					if (k->type != MSGPACK_OBJECT_STR)
						continue;
					print_key(k->via.str.ptr, k->via.str.size,
						  &el->via.map.ptr[j].val,
						  j == 0 ? indent : indent + 2, j == 0);
				}
			} else if (is_scalar(el) || is_empty(el)) {
				printf("%*s- ", indent, "");
				if (is_empty(el))
					fputs("<none>", stdout);
				else
					print_scalar(el);
				putchar('\n');
			} else {
				printf("%*s-\n", indent, "");
				print_value(el, indent + 2);
			}
		}
		return;
	}
	printf("%*s", indent, "");
	print_scalar(o);
	putchar('\n');
}

static void print_field(const char *label, const char *value)
{
	printf("%-*s%s\n", KEY_WIDTH + 1, label, value);
}

/* Labels and annotations: "k=v" one per line, aligned. */
static void print_pairs(const char *label, const msgpack_object *m)
{
	if (m == NULL || m->type != MSGPACK_OBJECT_MAP || m->via.map.size == 0) {
		print_field(label, "<none>");
		return;
	}
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;
		const msgpack_object *v = &m->via.map.ptr[i].val;
		printf("%-*s", KEY_WIDTH + 1, i == 0 ? label : "");
		if (k->type == MSGPACK_OBJECT_STR)
			printf("%.*s", (int)k->via.str.size, k->via.str.ptr);
		fputs(strcmp(label, "Labels:") == 0 ? "=" : ": ", stdout);
		print_scalar(v);
		putchar('\n');
	}
}

static void print_events(struct cli *c, const struct aep_kind_info *ki, const char *ns,
			 const char *name)
{
	struct aep_error e = {0};
	json_t *params = json_pack("{s:s}", "kind", "Event");
	if (params != NULL && ns != NULL)
		json_object_set_new(params, "namespace", json_string(ns));
	struct cli__reply r;
	if (cli__call(c, "list", params, &r, &e) != 0) {
		printf("Events:            <unavailable: %s>\n", e.msg);
		return;
	}
	const msgpack_object *items = cli__mp_path(&r.obj, "items");
	struct cli__table t;
	cli__table_init(&t, 5);
	static const char *const hdr[] = {"Type", "Reason", "Age", "From", "Message"};
	static const char *const dashes[] = {"----", "------", "----", "----", "-------"};
	cli__table_add(&t, hdr);
	cli__table_add(&t, dashes);
	int64_t now = aep_now_realtime_ns() / 1000000000;
	for (uint32_t i = 0;
	     items && items->type == MSGPACK_OBJECT_ARRAY && i < items->via.array.size; i++) {
		const msgpack_object *ev = &items->via.array.ptr[i];
		char n[AEP_NAME_MAX + 1], k[64], type[32], reason[128], from[128], msg[1024];
		char age[32], ts[64];
		if (strcmp(cli__mp_str(ev, "involvedObject.name", n, sizeof(n), ""), name) != 0)
			continue;
		const char *kind = cli__mp_str(ev, "involvedObject.kind", k, sizeof(k), "");
		const struct aep_kind_info *eki = aep_kind_lookup(kind, strlen(kind));
		if (*kind != '\0' && eki != ki)
			continue;
		const char *when = cli__mp_str(ev, "lastTimestamp", ts, sizeof(ts), NULL);
		int64_t t_s;
		if (when == NULL)
			when = cli__mp_str(ev, "metadata.creationTimestamp", ts, sizeof(ts), NULL);
		if (when != NULL && cli__parse_time(when, &t_s))
			cli__format_duration(now - t_s, age, sizeof(age));
		else
			snprintf(age, sizeof(age), "<unknown>");
		const char *row[] = {
		    cli__mp_str(ev, "type", type, sizeof(type), "Normal"),
		    cli__mp_str(ev, "reason", reason, sizeof(reason), ""),
		    age,
		    cli__mp_str(ev, "source.component", from, sizeof(from), ""),
		    cli__mp_str(ev, "message", msg, sizeof(msg), ""),
		};
		cli__table_add(&t, row);
	}
	if (t.nrows <= 2) {
		printf("Events:            <none>\n");
	} else {
		printf("Events:\n");
		/* print with shared widths */
		size_t w[5] = {0};
		for (size_t r2 = 0; r2 < t.nrows; r2++)
			for (size_t col = 0; col < 5; col++) {
				size_t l = strlen(t.cells[r2 * 5 + col]);
				w[col] = l > w[col] ? l : w[col];
			}
		for (size_t r2 = 0; r2 < t.nrows; r2++) {
			fputs("  ", stdout);
			for (size_t col = 0; col < 5; col++) {
				if (col == 4)
					printf("%s\n", t.cells[r2 * 5 + col]);
				else
					printf("%-*s", (int)w[col] + 2, t.cells[r2 * 5 + col]);
			}
		}
	}
	cli__table_free(&t);
	cli__reply_free(&r);
}

int cli__cmd_describe(struct cli *c)
{
	struct aep_error e = {0};
	if (c->o.nargs < 1) {
		fprintf(stderr, "error: usage: aep describe KIND NAME\n");
		return 1;
	}
	const char *a = c->o.args[0];
	const char *slash = strchr(a, '/');
	const struct aep_kind_info *ki =
	    slash ? cli__kind(a, (size_t)(slash - a), &e) : cli__kind(a, strlen(a), &e);
	if (ki == NULL) {
		fprintf(stderr, "error: %s\n", e.msg);
		return 1;
	}
	const char **names = (const char **)c->o.args + 1;
	size_t nnames = c->o.nargs - 1;
	const char *one = slash ? slash + 1 : NULL;
	if (one != NULL) {
		names = &one;
		nnames = 1;
	}
	if (nnames == 0) {
		fprintf(stderr, "error: you must specify the name of the %s to describe\n",
			ki->singular);
		return 1;
	}
	int status = 0;
	for (size_t i = 0; i < nnames; i++) {
		const char *ns = cli__namespace(c, ki);
		if (ki->namespaced && ns == NULL)
			ns = c->o.ns ? c->o.ns : "default";
		json_t *params = json_pack("{s:s, s:s}", "kind", ki->name, "name", names[i]);
		if (params != NULL && ns != NULL)
			json_object_set_new(params, "namespace", json_string(ns));
		struct cli__reply r;
		if (cli__call(c, "get", params, &r, &e) != 0) {
			if (e.code == AEP_ENOTFOUND)
				cli__not_found(&e, ki, names[i]);
			cli__report(&e);
			status = 1;
			continue;
		}
		if (i > 0)
			fputs("\n\n", stdout);
		const msgpack_object *o = &r.obj;
		char buf[AEP_NAME_MAX + 1];
		print_field("Name:", cli__mp_str(o, "metadata.name", buf, sizeof(buf), ""));
		if (ki->namespaced)
			print_field("Namespace:",
				    cli__mp_str(o, "metadata.namespace", buf, sizeof(buf), ""));
		print_pairs("Labels:", cli__mp_path(o, "metadata.labels"));
		print_pairs("Annotations:", cli__mp_path(o, "metadata.annotations"));
		print_field("CreationTimestamp:", cli__mp_str(o, "metadata.creationTimestamp", buf,
							      sizeof(buf), "<unknown>"));
		print_field("UID:", cli__mp_str(o, "metadata.uid", buf, sizeof(buf), ""));
		print_field("ResourceVersion:",
			    cli__mp_str(o, "metadata.resourceVersion", buf, sizeof(buf), ""));
		/* every other top-level field: spec, status, subsets, ... */
		for (uint32_t k = 0; k < o->via.map.size; k++) {
			const msgpack_object *key = &o->via.map.ptr[k].key;
			const msgpack_object *val = &o->via.map.ptr[k].val;
			if (key->type != MSGPACK_OBJECT_STR)
				continue;
			char kname[64];
			size_t kl = key->via.str.size < sizeof(kname) - 1 ? key->via.str.size
									  : sizeof(kname) - 1;
			memcpy(kname, key->via.str.ptr, kl);
			kname[kl] = '\0';
			if (strcmp(kname, "metadata") == 0 || strcmp(kname, "kind") == 0 ||
			    strcmp(kname, "apiVersion") == 0)
				continue;
			if (kname[0] >= 'a' && kname[0] <= 'z')
				kname[0] = (char)(kname[0] - 'a' + 'A');
			print_key(kname, kl, val, 0, false);
		}
		if (ki->kind != AEP_KIND_EVENT)
			print_events(c, ki, ki->namespaced ? ns : NULL, names[i]);
		cli__reply_free(&r);
	}
	return status;
}
