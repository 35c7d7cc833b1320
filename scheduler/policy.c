/* scheduler: the policy file.
 *
 * An OpenShift 3 scheduler.json-shaped document, already turned into
 * msgpack by the caller, becomes a struct aep_sched_policy: predicates in
 * the order given (NodeReady first when the document leaves it out) and
 * weighted priorities. Every fault is AEP_EINVALID with the path of the
 * entry ("predicates[1].argument.serviceAffinity.labels: ..."); nothing is
 * kept of a document that fails. */
#include "scheduler/sched-int.h"

#include <stdio.h>
#include <string.h>

static const struct {
	const char *name;
	enum sched__pred_type type;
} pred_names[] = {
    {"NodeReady", SCHED__P_NODE_READY},
    {"PodFitsResources", SCHED__P_RESOURCES},
    {"PodFitsHostPorts", SCHED__P_HOST_PORTS},
    {"PodFitsPorts", SCHED__P_HOST_PORTS},
    {"MatchNodeSelector", SCHED__P_NODE_SELECTOR},
    {"HostName", SCHED__P_HOST_NAME},
};

static const struct {
	const char *name;
	enum sched__prio_type type;
} prio_names[] = {
    {"LeastRequestedPriority", SCHED__R_LEAST_REQUESTED},
    {"BalancedResourceAllocation", SCHED__R_BALANCED},
    {"SelectorSpreadPriority", SCHED__R_SELECTOR_SPREAD},
    {"ServiceSpreadingPriority", SCHED__R_SELECTOR_SPREAD},
};

void aep_sched_policy_free(struct aep_sched_policy *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->npreds; i++) {
		aep_free(p->preds[i].name);
		for (size_t j = 0; j < p->preds[i].nlabels; j++)
			aep_free(p->preds[i].labels[j]);
		aep_free(p->preds[i].labels);
	}
	for (size_t i = 0; i < p->nprios; i++) {
		aep_free(p->prios[i].name);
		aep_free(p->prios[i].label);
	}
	for (size_t i = 0; i < p->nslots; i++)
		aep_free(p->slot_keys[i]);
	aep_free(p);
}

/* A msgpack string for a message: printable ASCII, at most 64 bytes. */
static const char *quote(char *buf, size_t size, const msgpack_object *o)
{
	size_t n = 0;
	buf[n++] = '"';
	for (uint32_t i = 0; i < o->via.str.size && n + 5 < size; i++) {
		char c = o->via.str.ptr[i];
		buf[n++] = (c >= 0x20 && c < 0x7f) ? c : '?';
	}
	if (n + 5 >= size && o->via.str.size > n - 1) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n++] = '"';
	buf[n] = '\0';
	return buf;
}

/* A map's keys must all be among @allowed (NULL-terminated). */
static int check_keys(const msgpack_object *map, const char *const *allowed, const char *path,
		      struct aep_error *e)
{
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		bool ok = false;
		for (size_t j = 0; k->type == MSGPACK_OBJECT_STR && allowed[j] != NULL; j++)
			ok = ok || aep_mp_str_eq(k, allowed[j]);
		if (!ok) {
			char q[80];
			if (k->type != MSGPACK_OBJECT_STR)
				return aep_errorf(e, AEP_EINVALID, "%s: keys must be strings",
						  path);
			return aep_errorf(e, AEP_EINVALID, "%s: unknown field %s", path,
					  quote(q, sizeof(q), k));
		}
	}
	return 0;
}

/* Intern a label key as a slot of @p. */
static int slot_of(struct aep_sched_policy *p, const char *key, uint8_t *slot, const char *path,
		   struct aep_error *e)
{
	for (size_t i = 0; i < p->nslots; i++) {
		if (strcmp(p->slot_keys[i], key) == 0) {
			*slot = (uint8_t)i;
			return 0;
		}
	}
	if (p->nslots == SCHED__SLOTS_MAX)
		return aep_errorf(e, AEP_EINVALID, "%s: more than %d distinct labels in the policy",
				  path, SCHED__SLOTS_MAX);
	p->slot_keys[p->nslots] = aep_strdup(key);
	if (p->slot_keys[p->nslots] == NULL)
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	*slot = (uint8_t)p->nslots++;
	return 0;
}

static int label_key(const msgpack_object *o, char **out, const char *path, struct aep_error *e)
{
	if (o == NULL || o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0)
		return aep_errorf(e, AEP_EINVALID, "%s: must be a label key", path);
	struct aep_error ve = {0};
	if (aep_validate_label_key(o->via.str.ptr, o->via.str.size, &ve) != 0)
		return aep_errorf(e, AEP_EINVALID, "%s: %s", path, ve.msg);
	*out = aep_mp_strdup(o);
	if (*out == NULL)
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	return 0;
}

static int label_list(const msgpack_object *o, struct sched__pred *pr, const char *path,
		      struct aep_error *e)
{
	if (o == NULL || o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size == 0 ||
	    o->via.array.size > SCHED__ARG_LABELS_MAX)
		return aep_errorf(e, AEP_EINVALID, "%s: must be a list of 1 to %d label keys", path,
				  SCHED__ARG_LABELS_MAX);
	pr->labels = aep_calloc(o->via.array.size, sizeof(*pr->labels));
	if (pr->labels == NULL)
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < o->via.array.size; i++) {
		char sub[160];
		snprintf(sub, sizeof(sub), "%s[%u]", path, i);
		int rc = label_key(&o->via.array.ptr[i], &pr->labels[i], sub, e);
		if (rc != 0)
			return rc;
		pr->nlabels++;
		for (uint32_t j = 0; j < i; j++)
			if (strcmp(pr->labels[j], pr->labels[i]) == 0)
				return aep_errorf(e, AEP_EINVALID, "%s: label \"%s\" listed twice",
						  sub, pr->labels[i]);
	}
	return 0;
}

static int get_bool(const msgpack_object *map, const char *key, bool *out, const char *path,
		    struct aep_error *e)
{
	const msgpack_object *o = aep_mp_map_get(map, key);
	if (o == NULL || o->type != MSGPACK_OBJECT_BOOLEAN)
		return aep_errorf(e, AEP_EINVALID, "%s.%s: must be true or false", path, key);
	*out = o->via.boolean;
	return 0;
}

/* The argument map must hold exactly one of the forms; *@form gets its index. */
static int one_form(const msgpack_object *arg, const char *const *forms, const char *path,
		    int *form, const msgpack_object **val, struct aep_error *e)
{
	if (arg->type != MSGPACK_OBJECT_MAP || arg->via.map.size != 1)
		return aep_errorf(e, AEP_EINVALID, "%s: must be a map with one of %s, %s", path,
				  forms[0], forms[1]);
	int rc = check_keys(arg, forms, path, e);
	if (rc != 0)
		return rc;
	for (int i = 0; forms[i] != NULL; i++) {
		const msgpack_object *v = aep_mp_map_get(arg, forms[i]);
		if (v != NULL) {
			if (v->type != MSGPACK_OBJECT_MAP)
				return aep_errorf(e, AEP_EINVALID, "%s.%s: must be a map", path,
						  forms[i]);
			*form = i;
			*val = v;
			return 0;
		}
	}
	return aep_errorf(e, AEP_EINVALID, "%s: empty", path);
}

static int name_of(const msgpack_object *entry, char **out, const char *path, struct aep_error *e)
{
	const msgpack_object *n = aep_mp_map_get(entry, "name");
	if (n == NULL || n->type != MSGPACK_OBJECT_STR || n->via.str.size == 0 ||
	    n->via.str.size > SCHED__NAME_MAX)
		return aep_errorf(e, AEP_EINVALID, "%s.name: must be a string of 1 to %d bytes",
				  path, SCHED__NAME_MAX);
	for (uint32_t i = 0; i < n->via.str.size; i++) {
		char c = n->via.str.ptr[i];
		if (c < 0x20 || c >= 0x7f)
			return aep_errorf(e, AEP_EINVALID, "%s.name: must be printable ASCII",
					  path);
	}
	*out = aep_mp_strdup(n);
	if (*out == NULL)
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	return 0;
}

static int parse_pred(struct aep_sched_policy *p, const msgpack_object *entry, size_t idx,
		      struct aep_error *e)
{
	static const char *const keys[] = {"name", "argument", NULL};
	static const char *const forms[] = {"labelsPresence", "serviceAffinity", NULL};
	char path[96];
	snprintf(path, sizeof(path), "predicates[%zu]", idx);
	if (entry->type != MSGPACK_OBJECT_MAP)
		return aep_errorf(e, AEP_EINVALID, "%s: must be a map", path);
	int rc = check_keys(entry, keys, path, e);
	if (rc != 0)
		return rc;
	struct sched__pred *pr = &p->preds[p->npreds++];
	rc = name_of(entry, &pr->name, path, e);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i + 1 < p->npreds; i++)
		if (strcmp(p->preds[i].name, pr->name) == 0)
			return aep_errorf(e, AEP_EINVALID, "%s: duplicate name \"%s\"", path,
					  pr->name);
	const msgpack_object *arg = aep_mp_map_get(entry, "argument");
	if (arg == NULL || arg->type == MSGPACK_OBJECT_NIL) {
		for (size_t i = 0; i < sizeof(pred_names) / sizeof(pred_names[0]); i++) {
			if (strcmp(pred_names[i].name, pr->name) == 0) {
				pr->type = pred_names[i].type;
				return 0;
			}
		}
		return aep_errorf(e, AEP_EINVALID, "%s: unknown predicate \"%s\"", path, pr->name);
	}
	char apath[160];
	snprintf(apath, sizeof(apath), "%s.argument", path);
	int form = 0;
	const msgpack_object *v = NULL;
	rc = one_form(arg, forms, apath, &form, &v, e);
	if (rc != 0 || v == NULL) /* v is set whenever rc is 0 */
		return rc != 0 ? rc : aep_errorf(e, AEP_EINVALID, "%s: empty", apath);
	char fpath[200], lpath[220];
	snprintf(fpath, sizeof(fpath), "%s.%s", apath, forms[form]);
	snprintf(lpath, sizeof(lpath), "%s.labels", fpath);
	if (form == 0) {
		static const char *const lp_keys[] = {"labels", "presence", NULL};
		pr->type = SCHED__P_LABELS_PRESENCE;
		rc = check_keys(v, lp_keys, fpath, e);
		if (rc == 0)
			rc = label_list(aep_mp_map_get(v, "labels"), pr, lpath, e);
		if (rc == 0)
			rc = get_bool(v, "presence", &pr->presence, fpath, e);
		return rc;
	}
	static const char *const sa_keys[] = {"labels", NULL};
	pr->type = SCHED__P_SERVICE_AFFINITY;
	rc = check_keys(v, sa_keys, fpath, e);
	if (rc == 0)
		rc = label_list(aep_mp_map_get(v, "labels"), pr, lpath, e);
	for (size_t i = 0; rc == 0 && i < pr->nlabels; i++)
		rc = slot_of(p, pr->labels[i], &pr->slots[i], lpath, e);
	return rc;
}

static int parse_prio(struct aep_sched_policy *p, const msgpack_object *entry, size_t idx,
		      struct aep_error *e)
{
	static const char *const keys[] = {"name", "weight", "argument", NULL};
	static const char *const forms[] = {"serviceAntiAffinity", "labelPreference", NULL};
	char path[96];
	snprintf(path, sizeof(path), "priorities[%zu]", idx);
	if (entry->type != MSGPACK_OBJECT_MAP)
		return aep_errorf(e, AEP_EINVALID, "%s: must be a map", path);
	int rc = check_keys(entry, keys, path, e);
	if (rc != 0)
		return rc;
	struct sched__prio *pr = &p->prios[p->nprios++];
	rc = name_of(entry, &pr->name, path, e);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i + 1 < p->nprios; i++)
		if (strcmp(p->prios[i].name, pr->name) == 0)
			return aep_errorf(e, AEP_EINVALID, "%s: duplicate name \"%s\"", path,
					  pr->name);
	const msgpack_object *w = aep_mp_map_get(entry, "weight");
	if (w == NULL || w->type != MSGPACK_OBJECT_POSITIVE_INTEGER || w->via.u64 < 1 ||
	    w->via.u64 > 100)
		return aep_errorf(e, AEP_EINVALID, "%s.weight: must be an integer in 1..100", path);
	pr->weight = (int64_t)w->via.u64;
	const msgpack_object *arg = aep_mp_map_get(entry, "argument");
	if (arg == NULL || arg->type == MSGPACK_OBJECT_NIL) {
		for (size_t i = 0; i < sizeof(prio_names) / sizeof(prio_names[0]); i++) {
			if (strcmp(prio_names[i].name, pr->name) == 0) {
				pr->type = prio_names[i].type;
				return 0;
			}
		}
		return aep_errorf(e, AEP_EINVALID, "%s: unknown priority \"%s\"", path, pr->name);
	}
	char apath[160];
	snprintf(apath, sizeof(apath), "%s.argument", path);
	int form = 0;
	const msgpack_object *v = NULL;
	rc = one_form(arg, forms, apath, &form, &v, e);
	if (rc != 0 || v == NULL) /* v is set whenever rc is 0 */
		return rc != 0 ? rc : aep_errorf(e, AEP_EINVALID, "%s: empty", apath);
	char fpath[200], lpath[220];
	snprintf(fpath, sizeof(fpath), "%s.%s", apath, forms[form]);
	snprintf(lpath, sizeof(lpath), "%s.label", fpath);
	if (form == 0) {
		static const char *const aa_keys[] = {"label", NULL};
		pr->type = SCHED__R_ANTI_AFFINITY;
		rc = check_keys(v, aa_keys, fpath, e);
	} else {
		static const char *const lp_keys[] = {"label", "presence", NULL};
		pr->type = SCHED__R_LABEL_PREFERENCE;
		rc = check_keys(v, lp_keys, fpath, e);
		if (rc == 0)
			rc = get_bool(v, "presence", &pr->presence, fpath, e);
	}
	if (rc == 0)
		rc = label_key(aep_mp_map_get(v, "label"), &pr->label, lpath, e);
	if (rc == 0)
		rc = slot_of(p, pr->label, &pr->slot, lpath, e);
	if (rc == 0 && form == 0 && p->spread_slot < 0)
		p->spread_slot = pr->slot;
	return rc;
}

int aep_sched_policy_parse(const msgpack_object *doc, struct aep_sched_policy **out,
			   struct aep_error *e)
{
	static const char *const keys[] = {"kind", "apiVersion", "predicates", "priorities", NULL};
	if (doc == NULL || doc->type != MSGPACK_OBJECT_MAP)
		return aep_errorf(e, AEP_EINVALID, "policy: must be a map");
	int rc = check_keys(doc, keys, "policy", e);
	if (rc != 0)
		return rc;
	const msgpack_object *kind = aep_mp_map_get(doc, "kind");
	if (kind != NULL && !aep_mp_str_eq(kind, "Policy"))
		return aep_errorf(e, AEP_EINVALID, "kind: must be \"Policy\"");
	const msgpack_object *ver = aep_mp_map_get(doc, "apiVersion");
	if (ver != NULL && !aep_mp_str_eq(ver, "v1"))
		return aep_errorf(e, AEP_EINVALID, "apiVersion: must be \"v1\"");
	const msgpack_object *preds = aep_mp_map_get(doc, "predicates");
	const msgpack_object *prios = aep_mp_map_get(doc, "priorities");
	if (preds != NULL && preds->type != MSGPACK_OBJECT_ARRAY)
		return aep_errorf(e, AEP_EINVALID, "predicates: must be a list");
	if (prios != NULL && prios->type != MSGPACK_OBJECT_ARRAY)
		return aep_errorf(e, AEP_EINVALID, "priorities: must be a list");
	/* One slot is kept for NodeReady when the document leaves it out. */
	if (preds != NULL && preds->via.array.size > SCHED__PREDS_MAX - 1)
		return aep_errorf(e, AEP_EINVALID, "predicates: more than %d entries",
				  SCHED__PREDS_MAX - 1);
	if (prios != NULL && prios->via.array.size > SCHED__PRIOS_MAX)
		return aep_errorf(e, AEP_EINVALID, "priorities: more than %d entries",
				  SCHED__PRIOS_MAX);

	struct aep_sched_policy *p = aep_calloc(1, sizeof(*p));
	if (p == NULL)
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	p->spread_slot = -1;
	bool ready = false;
	for (uint32_t i = 0; preds != NULL && i < preds->via.array.size; i++) {
		rc = parse_pred(p, &preds->via.array.ptr[i], i, e);
		if (rc != 0)
			goto err_after_policy_alloc;
		ready = ready || p->preds[p->npreds - 1].type == SCHED__P_NODE_READY;
	}
	for (uint32_t i = 0; prios != NULL && i < prios->via.array.size; i++) {
		rc = parse_prio(p, &prios->via.array.ptr[i], i, e);
		if (rc != 0)
			goto err_after_policy_alloc;
	}
	if (!ready) {
		char *name = aep_strdup("NodeReady");
		if (name == NULL) {
			rc = aep_errorf(e, AEP_ENOMEM, "out of memory");
			goto err_after_policy_alloc;
		}
		memmove(&p->preds[1], &p->preds[0], p->npreds * sizeof(p->preds[0]));
		memset(&p->preds[0], 0, sizeof(p->preds[0]));
		p->preds[0].name = name;
		p->preds[0].type = SCHED__P_NODE_READY;
		p->npreds++;
	}
	*out = p;
	return 0;

err_after_policy_alloc:
	aep_sched_policy_free(p);
	return rc;
}

int aep_sched_policy_default(struct aep_sched_policy **out)
{
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "predicates");
	static const char *const plain[] = {"NodeReady", "PodFitsResources", "PodFitsHostPorts",
					    "MatchNodeSelector", "HostName"};
	msgpack_pack_array(&pk, 6);
	for (size_t i = 0; i < 5; i++) {
		msgpack_pack_map(&pk, 1);
		aep_pack_str(&pk, "name");
		aep_pack_str(&pk, plain[i]);
	}
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, "Region");
	aep_pack_str(&pk, "argument");
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "serviceAffinity");
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "labels");
	msgpack_pack_array(&pk, 1);
	aep_pack_str(&pk, "region");

	aep_pack_str(&pk, "priorities");
	static const char *const prios[] = {"LeastRequestedPriority", "BalancedResourceAllocation",
					    "SelectorSpreadPriority"};
	msgpack_pack_array(&pk, 4);
	for (size_t i = 0; i < 3; i++) {
		msgpack_pack_map(&pk, 2);
		aep_pack_str(&pk, "name");
		aep_pack_str(&pk, prios[i]);
		aep_pack_str(&pk, "weight");
		msgpack_pack_uint8(&pk, 1);
	}
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, "Zone");
	aep_pack_str(&pk, "weight");
	msgpack_pack_uint8(&pk, 2);
	aep_pack_str(&pk, "argument");
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "serviceAntiAffinity");
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "label");
	aep_pack_str(&pk, "zone");
	if (b.failed) {
		aep_buf_free(&b);
		return AEP_ENOMEM;
	}

	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 2048)) {
		aep_buf_free(&b);
		return AEP_ENOMEM;
	}
	msgpack_object doc;
	struct aep_error e = {0};
	int rc = aep_mp_unpack(b.data, b.len, &zone, &doc, &e);
	if (rc == 0)
		rc = aep_sched_policy_parse(&doc, out, &e);
	msgpack_zone_destroy(&zone);
	aep_buf_free(&b);
	/* The document is ours: only memory can fail. */
	return rc == 0 ? 0 : AEP_ENOMEM;
}

static const char *pred_kind(const struct sched__pred *pr)
{
	for (size_t i = 0; i < sizeof(pred_names) / sizeof(pred_names[0]); i++)
		if (pred_names[i].type == pr->type)
			return pred_names[i].name;
	return pr->type == SCHED__P_LABELS_PRESENCE ? "labelsPresence" : "serviceAffinity";
}

int aep_sched_policy_describe(const struct aep_sched_policy *p, struct aep_buf *out)
{
	for (size_t i = 0; i < p->npreds; i++) {
		const struct sched__pred *pr = &p->preds[i];
		aep_buf_printf(out, "predicate %s", pr->name);
		if (pr->type == SCHED__P_LABELS_PRESENCE || pr->type == SCHED__P_SERVICE_AFFINITY) {
			aep_buf_printf(out, ": %s labels [", pred_kind(pr));
			for (size_t j = 0; j < pr->nlabels; j++)
				aep_buf_printf(out, "%s%s", j ? ", " : "", pr->labels[j]);
			aep_buf_printf(out, "]");
			if (pr->type == SCHED__P_LABELS_PRESENCE)
				aep_buf_printf(out, " presence %s",
					       pr->presence ? "true" : "false");
		} else if (strcmp(pred_kind(pr), pr->name) != 0) {
			aep_buf_printf(out, ": %s", pred_kind(pr));
		}
		aep_buf_printf(out, "\n");
	}
	for (size_t i = 0; i < p->nprios; i++) {
		const struct sched__prio *pr = &p->prios[i];
		aep_buf_printf(out, "priority %s weight %lld", pr->name, (long long)pr->weight);
		for (size_t j = 0; j < sizeof(prio_names) / sizeof(prio_names[0]); j++) {
			if (prio_names[j].type == pr->type) {
				if (strcmp(prio_names[j].name, pr->name) != 0)
					aep_buf_printf(out, ": %s", prio_names[j].name);
				break;
			}
		}
		if (pr->type == SCHED__R_ANTI_AFFINITY)
			aep_buf_printf(out, ": serviceAntiAffinity label %s", pr->label);
		else if (pr->type == SCHED__R_LABEL_PREFERENCE)
			aep_buf_printf(out, ": labelPreference label %s presence %s", pr->label,
				       pr->presence ? "true" : "false");
		aep_buf_printf(out, "\n");
	}
	return out->failed ? AEP_ENOMEM : 0;
}
