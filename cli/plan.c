/* aep plan: where would the masters' scheduler put the pods of a manifest?
 *
 * The manifest's objects go to the master method `plan {objects}` as the
 * manifest gives them (namespaced objects get -n, or "default", like
 * create); the leader's scheduler places the pods they would create one
 * after another as if each were bound and answers one item per pod:
 * {namespace, name, node, region, zone, score} or {namespace, name,
 * node: nil, reason}. Nothing is written. The answer prints as a table with
 * a summary line, or as the server's map with -o json|yaml.
 *
 * Exit codes: 0 when the plan was made, even with unschedulable pods (it is
 * a report); 1 for a bad manifest or flag (nothing is sent) or any error
 * from the masters (Invalid "objects[i]: ...", TooLarge over 10,000 pods). */
#include "cli/cli.h"
#include "cli/internal.h"

#include <inttypes.h>
#include <string.h>

#define NONE "<none>"

/* Append the objects of @path to @objects, with the namespace set for
 * namespaced kinds. Returns 0, or 1 after printing an error. */
static int load_file(struct cli *c, const char *path, json_t *objects)
{
	struct aep_docs docs;
	struct aep_error e = {0};
	if (aep_manifest_load(path, &docs, &e) != 0) {
		fprintf(stderr, "error: %s\n", e.msg);
		return 1;
	}
	int status = 0;
	for (size_t i = 0; i < docs.n && status == 0; i++) {
		msgpack_zone zone;
		msgpack_object o;
		json_t *obj = NULL;
		msgpack_zone_init(&zone, 4096);
		if (aep_mp_unpack(docs.items[i].data, docs.items[i].len, &zone, &o, &e) == 0)
			obj = cli__mp_to_json(&o);
		msgpack_zone_destroy(&zone);
		if (obj == NULL) {
			fprintf(stderr, "error: %s: %s\n", path,
				e.msg[0] ? e.msg : "out of memory");
			status = 1;
			break;
		}
		/* Unknown kinds and bad fields are the server's to judge (it names
		 * the object); only the namespace is the CLI's business. */
		json_t *kind = json_object_get(obj, "kind");
		json_t *meta = json_object_get(obj, "metadata");
		const struct aep_kind_info *ki =
		    json_is_string(kind)
			? aep_kind_lookup(json_string_value(kind), json_string_length(kind))
			: NULL;
		if (ki != NULL && ki->namespaced && json_is_object(meta)) {
			json_t *ns = json_object_get(meta, "namespace");
			const char *want = c->o.ns != NULL ? c->o.ns : "default";
			if (json_is_string(ns) && c->o.ns != NULL &&
			    strcmp(json_string_value(ns), c->o.ns) != 0) {
				fprintf(stderr,
					"error: the namespace from the provided object \"%s\" does "
					"not match the namespace \"%s\". You must pass "
					"'--namespace=%s' to perform this operation.\n",
					json_string_value(ns), c->o.ns, json_string_value(ns));
				status = 1;
			} else if (!json_is_string(ns) &&
				   json_object_set_new(meta, "namespace", json_string(want)) != 0) {
				fprintf(stderr, "error: out of memory\n");
				status = 1;
			}
		}
		if (status == 0 && json_array_append_new(objects, obj) != 0) {
			fprintf(stderr, "error: out of memory\n");
			status = 1;
		} else if (status != 0) {
			json_decref(obj);
		}
	}
	aep_docs_free(&docs);
	return status;
}

/* The score as text: an integer, or a float as the server sent it. */
static void score_text(const msgpack_object *item, char *buf, size_t size)
{
	const msgpack_object *s = cli__mp_path(item, "score");
	if (s != NULL && (s->type == MSGPACK_OBJECT_FLOAT32 || s->type == MSGPACK_OBJECT_FLOAT64))
		snprintf(buf, size, "%.2f", s->via.f64);
	else if (s != NULL && (s->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
			       s->type == MSGPACK_OBJECT_NEGATIVE_INTEGER))
		snprintf(buf, size, "%" PRId64, cli__mp_int(item, "score", 0));
	else
		snprintf(buf, size, NONE);
}

static bool placed(const msgpack_object *item)
{
	const msgpack_object *node = cli__mp_path(item, "node");
	return node != NULL && node->type == MSGPACK_OBJECT_STR && node->via.str.size > 0;
}

/* Print the plan's table and summary. Returns 0 or AEP_ENOMEM. */
static int print_plan(struct cli *c, const msgpack_object *items)
{
	uint32_t n = items->via.array.size;
	uint32_t nplaced = 0;
	bool any_reason = false, many_ns = false;
	char first_ns[AEP_NAME_MAX + 1] = "";
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *it = &items->via.array.ptr[i];
		char ns[AEP_NAME_MAX + 1];
		cli__mp_str(it, "namespace", ns, sizeof(ns), "");
		if (i == 0)
			memcpy(first_ns, ns, sizeof(ns));
		else if (strcmp(ns, first_ns) != 0)
			many_ns = true;
		if (placed(it))
			nplaced++;
		else
			any_reason = true;
	}
	/* NAMESPACE first (like get -A) when asked (-o wide) or when the pods
	 * are in more than one; REASON last, only when some pod fits nowhere */
	bool show_ns = many_ns || (c->o.output != NULL && strcmp(c->o.output, "wide") == 0);
	static const char *const hdr[] = {"NAMESPACE", "POD",	"NODE",	 "REGION",
					  "ZONE",      "SCORE", "REASON"};
	size_t first = show_ns ? 0 : 1;
	size_t ncols = 7 - first - (any_reason ? 0 : 1);
	struct cli__table t;
	cli__table_init(&t, ncols);
	int rv = n > 0 ? cli__table_add(&t, hdr + first) : 0;
	for (uint32_t i = 0; i < n && rv == 0; i++) {
		const msgpack_object *it = &items->via.array.ptr[i];
		char ns[AEP_NAME_MAX + 1], name[AEP_NAME_MAX + 1], node[AEP_NAME_MAX + 1];
		char region[AEP_LABEL_NAME_MAX + 1], zone[AEP_LABEL_NAME_MAX + 1], score[32];
		char *reason = NULL;
		bool ok = placed(it);
		cli__mp_str(it, "namespace", ns, sizeof(ns), "");
		cli__mp_str(it, "name", name, sizeof(name), "");
		const char *row[7] = {ns, name, NONE, NONE, NONE, NONE, ""};
		if (ok) {
			row[2] = cli__mp_str(it, "node", node, sizeof(node), NONE);
			row[3] = cli__mp_str(it, "region", region, sizeof(region), "");
			row[4] = cli__mp_str(it, "zone", zone, sizeof(zone), "");
			row[3] = row[3][0] ? row[3] : NONE;
			row[4] = row[4][0] ? row[4] : NONE;
			score_text(it, score, sizeof(score));
			row[5] = score;
		} else {
			reason = aep_mp_strdup(cli__mp_path(it, "reason"));
			row[6] = reason != NULL ? reason : "unknown";
		}
		rv = cli__table_add(&t, row + first);
		aep_free(reason);
	}
	if (rv == 0) {
		cli__table_print(stdout, &t);
		printf("%" PRIu32 " pods: %" PRIu32 " placed, %" PRIu32 " unschedulable\n", n,
		       nplaced, n - nplaced);
	}
	cli__table_free(&t);
	return rv;
}

int cli__cmd_plan(struct cli *c)
{
	if (c->o.nfiles == 0) {
		fprintf(stderr, "error: must specify -f FILE (aep plan -f FILE [-n NS] "
				"[-o wide|json|yaml])\n");
		return 1;
	}
	if (c->o.nargs > 0) {
		fprintf(stderr, "error: unexpected argument \"%s\": aep plan takes only -f FILE\n",
			c->o.args[0]);
		return 1;
	}
	if (c->o.output != NULL && strcmp(c->o.output, "name") == 0) {
		fprintf(stderr, "error: aep plan prints a table, -o wide, -o json or -o yaml\n");
		return 1;
	}
	json_t *objects = json_array();
	if (objects == NULL) {
		fprintf(stderr, "error: out of memory\n");
		return 1;
	}
	for (size_t f = 0; f < c->o.nfiles; f++) {
		if (load_file(c, c->o.files[f], objects) != 0) {
			json_decref(objects);
			return 1;
		}
	}
	if (json_array_size(objects) == 0) {
		json_decref(objects);
		fprintf(stderr, "error: no objects passed to plan\n");
		return 1;
	}
	struct aep_error e = {0};
	struct cli__reply r;
	if (cli__call(c, "plan", json_pack("{s:o}", "objects", objects), &r, &e) != 0) {
		cli__report(&e);
		return 1;
	}
	const msgpack_object *items = cli__mp_path(&r.obj, "items");
	if (items == NULL || items->type != MSGPACK_OBJECT_ARRAY) {
		cli__reply_free(&r);
		fprintf(stderr, "error: plan: unexpected answer from the server\n");
		return 1;
	}
	int rv;
	if (c->o.output != NULL && strcmp(c->o.output, "json") == 0)
		rv = aep_print_json(stdout, &r.obj);
	else if (c->o.output != NULL && strcmp(c->o.output, "yaml") == 0)
		rv = aep_print_yaml(stdout, &r.obj);
	else
		rv = print_plan(c, items);
	cli__reply_free(&r);
	if (rv != 0) {
		fprintf(stderr, "error: plan: %s\n",
			rv == AEP_ENOMEM ? "out of memory" : "cannot print the answer");
		return 1;
	}
	return 0;
}
