/* The store: tables, indexes, and the deterministic apply of Raft entries.
 *
 * aep_store_apply() reads the whole entry first: a malformed one (bad
 * framing, an unknown op or kind, a length past the bytes left or past the
 * limits) is refused with AEP_EINVALID before anything changes. Then each
 * command, at position p, runs with revision AEP_REV(index, p) in two
 * steps: a check-and-prepare step that looks the object up, decides the
 * outcome and allocates everything the change needs (the decoded and
 * stamped object, the table entry, member strings), and a commit step that
 * cannot fail. A refused command (NotFound, AlreadyExists, Conflict,
 * Invalid, Forbidden) changes nothing and gets its code in its result;
 * these outcomes depend only on the store and the entry, so every peer
 * decides the same.
 *
 * Running out of memory is the one outcome that is not deterministic. The
 * command it hits changes nothing, the commands after it in the entry are
 * not applied, the applied index stays where it was, and
 * aep_store_apply() returns AEP_ENOMEM: the store is consistent but behind
 * its peers, and the caller must rebuild it from a snapshot and the log
 * rather than apply later entries on top. */
#include "state/object-int.h"
#include "state/store-int.h"

#include <stdio.h>
#include <string.h>

#define LOG_MAX_DEFAULT 100000

/* ---- trees -------------------------------------------------------------- */

int state__key_cmp(const struct state__entry *a, const struct state__entry *b)
{
	int c = strcmp(a->obj->meta.ns, b->obj->meta.ns);
	if (c != 0)
		return c;
	return strcmp(a->obj->meta.name, b->obj->meta.name);
}

/* FNV-1a over @a, a NUL, @b. */
uint64_t state__hash2(const char *a, const char *b)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *a != '\0'; a++)
		h = (h ^ (unsigned char)*a) * 0x100000001b3ULL;
	h *= 0x100000001b3ULL;
	for (; *b != '\0'; b++)
		h = (h ^ (unsigned char)*b) * 0x100000001b3ULL;
	return h;
}

int state__label_cmp(const struct state__label_ref *a, const struct state__label_ref *b)
{
	if (a->hash != b->hash)
		return a->hash < b->hash ? -1 : 1;
	const struct aep_label *la = &a->e->obj->meta.labels[a->i];
	const struct aep_label *lb = &b->e->obj->meta.labels[b->i];
	int c = strcmp(la->key, lb->key);
	if (c != 0)
		return c;
	c = strcmp(la->value, lb->value);
	if (c != 0)
		return c;
	return state__key_cmp(a->e, b->e);
}

RB_GENERATE(state__key_tree, state__entry, by_key, state__key_cmp)
RB_GENERATE(state__label_tree, state__label_ref, link, state__label_cmp)

/* A stack-built stand-in for an entry, for lookups and range starts. */
struct probe {
	struct aep_object obj;
	struct aep_label label;
	struct state__label_ref ref;
	struct state__entry *e; /* in ebuf: an entry with no labels */
	_Alignas(struct state__entry) unsigned char ebuf[sizeof(struct state__entry)];
};

static void probe_init(struct probe *p, const char *ns, const char *name)
{
	memset(p, 0, sizeof(*p));
	p->obj.meta.ns = (char *)ns;
	p->obj.meta.name = (char *)name;
	p->obj.meta.labels = &p->label;
	p->obj.meta.nlabels = 1;
	p->e = (struct state__entry *)p->ebuf;
	p->e->obj = &p->obj;
	p->ref.e = p->e;
	p->ref.i = 0;
}

static struct state__entry *table_find(struct aep_store *s, enum aep_kind kind, const char *ns,
				       const char *name)
{
	struct probe p;
	probe_init(&p, ns, name);
	return RB_FIND(state__key_tree, &s->tables[kind].tree, p.e);
}

static bool kind_valid(enum aep_kind kind)
{
	return (unsigned)kind < AEP_KIND__COUNT;
}

static bool namespaced(enum aep_kind kind)
{
	const struct aep_kind_info *ki = aep_kind_info(kind);
	return ki != NULL && ki->namespaced;
}

static const char *plural(enum aep_kind kind)
{
	const struct aep_kind_info *ki = aep_kind_info(kind);
	return ki != NULL ? ki->plural : "objects";
}

/* ---- entries ------------------------------------------------------------ */

/* An entry for @obj, not yet in any tree; takes no reference. */
static struct state__entry *entry_alloc(const struct aep_object *obj)
{
	size_t n = obj->meta.nlabels;
	struct state__entry *e = aep_malloc(sizeof(*e) + n * sizeof(struct state__label_ref));
	if (e == NULL)
		return NULL;
	memset(e, 0, sizeof(*e));
	e->nlabels = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		e->labels[i].e = e;
		e->labels[i].i = (uint32_t)i;
		e->labels[i].hash =
		    state__hash2(obj->meta.labels[i].key, obj->meta.labels[i].value);
	}
	return e;
}

/* Labels must be strictly ordered by key for the label index to hold one
 * node per (object, key). The decoder sorts them; this guards the index. */
static bool labels_ordered(const struct aep_object *obj)
{
	for (size_t i = 1; i < obj->meta.nlabels; i++)
		if (strcmp(obj->meta.labels[i - 1].key, obj->meta.labels[i].key) >= 0)
			return false;
	return true;
}

static bool same_labels(const struct aep_object *a, const struct aep_object *b)
{
	if (a->meta.nlabels != b->meta.nlabels)
		return false;
	for (size_t i = 0; i < a->meta.nlabels; i++)
		if (strcmp(a->meta.labels[i].key, b->meta.labels[i].key) != 0 ||
		    strcmp(a->meta.labels[i].value, b->meta.labels[i].value) != 0)
			return false;
	return true;
}

static bool same_str(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool on_node_index(const struct aep_object *obj)
{
	return obj->kind == AEP_KIND_POD && obj->node_name != NULL;
}

/* Link @e (whose obj is set) into every tree. If an entry with its key is
 * there already, returns that one and links nothing. */
static struct state__entry *entry_link(struct aep_store *s, struct state__entry *e)
{
	struct state__table *t = &s->tables[e->obj->kind];
	struct state__entry *dup = RB_INSERT(state__key_tree, &t->tree, e);
	if (dup != NULL)
		return dup;
	for (uint32_t i = 0; i < e->nlabels; i++)
		RB_INSERT(state__label_tree, &t->labels, &e->labels[i]);
	if (on_node_index(e->obj))
		state__nodes_link(&s->pods_by_node, e);
	t->count++;
	return NULL;
}

static void entry_unlink(struct aep_store *s, struct state__entry *e)
{
	struct state__table *t = &s->tables[e->obj->kind];
	RB_REMOVE(state__key_tree, &t->tree, e);
	for (uint32_t i = 0; i < e->nlabels; i++)
		RB_REMOVE(state__label_tree, &t->labels, &e->labels[i]);
	state__nodes_unlink(&s->pods_by_node, e);
	t->count--;
}

int state__store_insert(struct aep_store *s, struct aep_object *obj)
{
	if (!kind_valid(obj->kind) || !labels_ordered(obj))
		return AEP_EINVALID;
	if (on_node_index(obj) && state__nodes_reserve(&s->pods_by_node, obj->node_name) != 0)
		return AEP_ENOMEM;
	struct state__entry *e = entry_alloc(obj);
	if (e == NULL) {
		if (on_node_index(obj))
			state__nodes_release(&s->pods_by_node, obj->node_name);
		return AEP_ENOMEM;
	}
	e->obj = obj;
	if (entry_link(s, e) != NULL) {
		aep_free(e);
		if (on_node_index(obj))
			state__nodes_release(&s->pods_by_node, obj->node_name);
		return AEP_EEXISTS;
	}
	aep_object_ref(obj);
	return 0;
}

/* ---- store life --------------------------------------------------------- */

int state__store_alloc(size_t log_max, struct aep_store **out)
{
	struct aep_store *s = aep_calloc(1, sizeof(*s));
	if (s == NULL)
		return AEP_ENOMEM;
	for (int k = 0; k < AEP_KIND__COUNT; k++) {
		RB_INIT(&s->tables[k].tree);
		RB_INIT(&s->tables[k].labels);
	}
	if (log_max > 0) {
		s->log.ring = aep_calloc(log_max, sizeof(*s->log.ring));
		if (s->log.ring == NULL) {
			aep_free(s);
			return AEP_ENOMEM;
		}
	}
	s->log.cap = log_max;
	*out = s;
	return 0;
}

static void members_free(struct aep_member *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		aep_free((char *)m[i].name);
		aep_free((char *)m[i].api);
		aep_free((char *)m[i].peer);
	}
	aep_free(m);
}

/* Free a subtree in post-order: no node is read after it is freed (an
 * in-order walk would climb through freed parents). The depth of a
 * red-black tree is at most 2 log2(n), so the recursion stays shallow. */
static void entries_free(struct state__entry *e)
{
	if (e == NULL)
		return;
	entries_free(RB_LEFT(e, by_key));
	entries_free(RB_RIGHT(e, by_key));
	aep_object_unref(e->obj);
	aep_free(e);
}

void state__store_clear_content(struct aep_store *s)
{
	for (int k = 0; k < AEP_KIND__COUNT; k++) {
		struct state__table *t = &s->tables[k];
		entries_free(RB_ROOT(&t->tree));
		RB_INIT(&t->tree);
		RB_INIT(&t->labels);
		t->count = 0;
	}
	state__nodes_free(&s->pods_by_node);
	members_free(s->members, s->nmembers);
	s->members = NULL;
	s->nmembers = 0;
}

void state__store_move_content(struct aep_store *to, struct aep_store *from)
{
	/* BSD trees hold no pointer back to their head: heads move by value. */
	for (int k = 0; k < AEP_KIND__COUNT; k++) {
		to->tables[k] = from->tables[k];
		RB_INIT(&from->tables[k].tree);
		RB_INIT(&from->tables[k].labels);
		from->tables[k].count = 0;
	}
	to->pods_by_node = from->pods_by_node;
	memset(&from->pods_by_node, 0, sizeof(from->pods_by_node));
	to->members = from->members;
	to->nmembers = from->nmembers;
	from->members = NULL;
	from->nmembers = 0;
}

/* The namespaces every store starts with: fixed uids, created at 0. */
static const struct {
	const char *name;
	const char *uid;
} initial_namespaces[] = {
    {"default", "00000000-0000-4000-8000-000000000001"},
    {"kube-system", "00000000-0000-4000-8000-000000000002"},
};

static int add_initial_namespace(struct aep_store *s, const char *name, const char *uid)
{
	struct aep_buf b;
	msgpack_packer pk;
	struct aep_error e = {0};
	struct aep_object *decoded = NULL, *stamped = NULL;
	int rv;

	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "apiVersion");
	aep_pack_str(&pk, "v1");
	aep_pack_str(&pk, "kind");
	aep_pack_str(&pk, "Namespace");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, name);
	if (b.failed) {
		rv = AEP_ENOMEM;
		goto err_after_buf;
	}
	rv = aep_object_decode(b.data, b.len, &decoded, &e);
	if (rv != 0)
		goto err_after_buf;
	rv = aep_object_stamp(decoded, uid, 0, 0, 1, &stamped);
	if (rv != 0)
		goto err_after_decode;
	rv = state__store_insert(s, stamped);
	aep_object_unref(stamped);
err_after_decode:
	aep_object_unref(decoded);
err_after_buf:
	aep_buf_free(&b);
	return rv;
}

int aep_store_new(const struct aep_store_config *cfg, struct aep_store **out)
{
	size_t log_max =
	    cfg != NULL && cfg->event_log_max > 0 ? cfg->event_log_max : LOG_MAX_DEFAULT;
	struct aep_store *s;
	int rv = state__store_alloc(log_max, &s);
	if (rv != 0)
		return rv;
	for (size_t i = 0; i < sizeof(initial_namespaces) / sizeof(initial_namespaces[0]); i++) {
		rv =
		    add_initial_namespace(s, initial_namespaces[i].name, initial_namespaces[i].uid);
		if (rv != 0) {
			aep_store_free(s);
			return rv;
		}
	}
	*out = s;
	return 0;
}

void aep_store_free(struct aep_store *s)
{
	if (s == NULL)
		return;
	state__watch_free_all(s);
	state__log_reset(s, 0);
	state__store_clear_content(s);
	aep_free(s->log.ring);
	aep_free(s);
}

/* ---- results ------------------------------------------------------------ */

/* Refuse the command with @code. The message is best effort: without
 * memory for it the result carries the code alone. Returns 0 (the
 * command's outcome is decided). */
__attribute__((format(printf, 3, 4))) static int refuse(struct aep_result *r, int code,
							const char *fmt, ...)
{
	char buf[AEP_ERRMSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	r->code = code;
	r->rv = 0;
	r->obj = NULL;
	r->msg = aep_strdup(buf);
	return 0;
}

/* ---- spec comparison ---------------------------------------------------- */

/* The bytes of the top-level "spec" value of an object's encoding (NULL
 * when absent). The encoding is the canonical one, so equal specs have
 * equal bytes. */
static void spec_span(const struct aep_object *o, const char **p, size_t *n)
{
	struct state__rd r = {(const unsigned char *)o->data, o->len, 0};
	uint32_t pairs;
	*p = NULL;
	*n = 0;
	if (state__rd_map(&r, &pairs) != 0)
		return;
	for (uint32_t i = 0; i < pairs; i++) {
		const char *k, *v;
		uint32_t kn;
		size_t vn;
		bool is_spec = false;
		if (state__rd_str(&r, &k, &kn) == 0)
			is_spec = kn == 4 && memcmp(k, "spec", 4) == 0;
		else if (state__rd_raw(&r, o->len, &k, &vn) != 0)
			return;
		if (state__rd_raw(&r, o->len, &v, &vn) != 0)
			return;
		if (is_spec) {
			*p = v;
			*n = vn;
			return;
		}
	}
}

/* Whether @a's spec differs from the spec bytes @pb/@nb (NULL: none). */
static bool spec_changed(const struct aep_object *a, const char *pb, size_t nb)
{
	const char *pa;
	size_t na;
	spec_span(a, &pa, &na);
	if (pa == NULL || pb == NULL)
		return pa != pb;
	return na != nb || memcmp(pa, pb, na) != 0;
}

/* ---- apply -------------------------------------------------------------- */

/* Copy a span into a NUL-terminated buffer of AEP_NAME_MAX + 1 bytes
 * (state__cmd_decode bounded it). */
static void span_str(char *buf, const char *s, uint32_t n)
{
	if (s != NULL)
		memcpy(buf, s, n);
	buf[s != NULL ? n : 0] = '\0';
}

static void set_success(struct aep_result *r, uint64_t rv, struct aep_object *obj)
{
	r->code = 0;
	r->rv = rv;
	r->obj = aep_object_ref(obj);
	r->msg = NULL;
}

/* The object a create/update carries. Its canonical encoding is read in
 * place (obj NULL, cv set); bytes not laid out canonically (a leader never
 * writes them) are decoded and validated as a client's (obj set), so they
 * are accepted or refused as by aep_object_decode(). */
struct cmd_in {
	struct aep_object *obj;
	struct state__canon cv;
	char ns[AEP_NAME_MAX + 1], name[AEP_NAME_MAX + 1];
};

/* Read the object of @c into @in. Returns 0 with @in set (release it with
 * cmd_in_release), AEP_ENOMEM, or 0 with the result refused and @in empty
 * (in->obj NULL and in->name[0] == '\0'). */
static int cmd_object(const struct state__cmd *c, struct aep_result *r, struct cmd_in *in)
{
	struct aep_error e = {0};
	struct aep_object *o;
	in->obj = NULL;
	in->name[0] = '\0';
	if (state__canon_read(c->kind, c->obj, c->obj_len, &in->cv) == 0) {
		span_str(in->ns, in->cv.ns.p, (uint32_t)in->cv.ns.n);
		span_str(in->name, in->cv.name.p, (uint32_t)in->cv.name.n);
		return 0;
	}
	int rv = aep_object_decode(c->obj, c->obj_len, &o, &e);
	if (rv == AEP_ENOMEM)
		return AEP_ENOMEM;
	if (rv != 0)
		return refuse(r, rv, "%s", e.msg);
	if (o->kind != c->kind) {
		enum aep_kind got = o->kind;
		aep_object_unref(o);
		return refuse(r, AEP_EINVALID, "kind: the object is a %s, the command is for %s",
			      aep_kind_info(got)->name, aep_kind_info(c->kind)->name);
	}
	if (!labels_ordered(o)) {
		aep_object_unref(o);
		return refuse(r, AEP_EINVALID, "metadata.labels: duplicate or unsorted keys");
	}
	if (namespaced(o->kind) && o->meta.ns[0] == '\0') {
		aep_object_unref(o);
		return refuse(r, AEP_EINVALID, "metadata.namespace: required for %s",
			      plural(c->kind));
	}
	/* Decoding checked both names: at most AEP_NAME_MAX bytes. */
	snprintf(in->ns, sizeof(in->ns), "%s", o->meta.ns);
	snprintf(in->name, sizeof(in->name), "%s", o->meta.name);
	in->obj = o;
	return 0;
}

static bool cmd_in_ok(const struct cmd_in *in)
{
	return in->name[0] != '\0';
}

static void cmd_in_spec(const struct cmd_in *in, const char **p, size_t *n)
{
	if (in->obj != NULL) {
		spec_span(in->obj, p, n);
	} else {
		*p = in->cv.spec.p;
		*n = in->cv.spec.n;
	}
}

/* The stamped object: aep_object_stamp() with every field given. */
static int cmd_in_stamp(const struct cmd_in *in, const char *uid, uint64_t rv, int64_t created_ns,
			int64_t generation, struct aep_object **out)
{
	if (in->obj != NULL)
		return aep_object_stamp(in->obj, uid, rv, created_ns, generation, out);
	return state__canon_stamp(&in->cv, uid, rv, created_ns, generation, out);
}

static void cmd_in_release(struct cmd_in *in)
{
	aep_object_unref(in->obj);
	in->obj = NULL;
}

static void push_event(struct aep_store *s, enum aep_event_type type, uint64_t rv,
		       struct aep_object *obj, struct aep_object *prev)
{
	struct state__event ev = {type, rv, obj, prev};
	s->revision = rv;
	state__log_push(s, &ev);
}

static int apply_create(struct aep_store *s, const struct state__cmd *c, uint64_t rv,
			struct aep_result *r)
{
	struct cmd_in in;
	struct aep_object *out;
	struct state__entry *e;
	int err = cmd_object(c, r, &in);
	if (err != 0 || !cmd_in_ok(&in))
		return err;
	const char *ns = in.ns, *name = in.name;
	if (namespaced(c->kind) && table_find(s, AEP_KIND_NAMESPACE, "", ns) == NULL) {
		err = refuse(r, AEP_ENOTFOUND, "namespace \"%s\" not found", ns);
		goto out_release_in;
	}
	if (c->uid == NULL || c->uid_len == 0) {
		err = refuse(r, AEP_EINVALID, "create %s \"%s\": the command carries no uid",
			     plural(c->kind), name);
		goto out_release_in;
	}
	char uid[sizeof(((struct aep_cmd *)0)->uid)];
	memcpy(uid, c->uid, c->uid_len);
	uid[c->uid_len] = '\0';
	err = cmd_in_stamp(&in, uid, rv, c->now_ns, 1, &out);
	if (err != 0)
		goto out_release_in;
	if (on_node_index(out) && state__nodes_reserve(&s->pods_by_node, out->node_name) != 0) {
		err = AEP_ENOMEM;
		goto out_unref_out;
	}
	e = entry_alloc(out);
	if (e == NULL) {
		err = AEP_ENOMEM;
		goto out_release_node;
	}

	/* Commit: the key tree insert finds a duplicate (then nothing is
	 * linked) or links the entry; nothing after it fails. */
	e->obj = out;
	if (entry_link(s, e) != NULL) {
		aep_free(e);
		err = refuse(r, AEP_EEXISTS, "%s \"%s\" already exists", plural(c->kind), name);
		goto out_release_node;
	}
	set_success(r, rv, out);
	push_event(s, AEP_EV_ADDED, rv, aep_object_ref(out), NULL);
	cmd_in_release(&in);
	return 0;

out_release_node:
	if (on_node_index(out))
		state__nodes_release(&s->pods_by_node, out->node_name);
out_unref_out:
	aep_object_unref(out);
out_release_in:
	cmd_in_release(&in);
	return err;
}

static int refuse_conflict(struct aep_result *r, enum aep_kind kind, const char *name)
{
	return refuse(r, AEP_ECONFLICT,
		      "Operation cannot be fulfilled on %s \"%s\": the object has been "
		      "modified; please apply your changes to the latest version and try again",
		      plural(kind), name);
}

/* Does the update in @in name the object whose uid is @uid (or no uid)? */
static bool uid_matches(const struct cmd_in *in, const char *uid)
{
	if (in->obj != NULL)
		return in->obj->meta.uid[0] == '\0' || strcmp(in->obj->meta.uid, uid) == 0;
	if (in->cv.uid.p == NULL || in->cv.uid.n == 0)
		return true;
	return strlen(uid) == in->cv.uid.n && memcmp(in->cv.uid.p, uid, in->cv.uid.n) == 0;
}

static int apply_update(struct aep_store *s, const struct state__cmd *c, uint64_t rv,
			struct aep_result *r)
{
	struct cmd_in in;
	struct aep_object *out, *old;
	struct state__entry *e, *ne = NULL;
	const char *spec;
	size_t spec_len;
	int err = cmd_object(c, r, &in);
	if (err != 0 || !cmd_in_ok(&in))
		return err;
	e = table_find(s, c->kind, in.ns, in.name);
	if (e == NULL) {
		err = refuse(r, AEP_ENOTFOUND, "%s \"%s\" not found", plural(c->kind), in.name);
		goto out_release_in;
	}
	old = e->obj;
	if (c->precond_rv != 0 && c->precond_rv != old->meta.rv) {
		err = refuse_conflict(r, c->kind, in.name);
		goto out_release_in;
	}
	if (!uid_matches(&in, old->meta.uid)) {
		err = refuse(r, AEP_EINVALID,
			     "metadata.uid: Invalid value: field is immutable (%s \"%s\" has "
			     "uid %s: it was deleted and created again)",
			     plural(c->kind), in.name, old->meta.uid);
		goto out_release_in;
	}
	cmd_in_spec(&in, &spec, &spec_len);
	int64_t gen = old->meta.generation + (spec_changed(old, spec, spec_len) ? 1 : 0);
	err = cmd_in_stamp(&in, old->meta.uid, rv, old->meta.created_ns, gen, &out);
	if (err != 0)
		goto out_release_in;
	bool relabel = !same_labels(old, out);
	if (on_node_index(out) && state__nodes_reserve(&s->pods_by_node, out->node_name) != 0) {
		err = AEP_ENOMEM;
		goto out_unref_out;
	}
	if (relabel) {
		ne = entry_alloc(out);
		if (ne == NULL) {
			err = AEP_ENOMEM;
			goto out_release_node;
		}
	}

	/* Commit: nothing below fails. The entry's reference to the old
	 * object moves to the event. */
	if (relabel) {
		entry_unlink(s, e);
		aep_free(e);
		ne->obj = out;
		(void)entry_link(s, ne); /* the key was just freed: no duplicate */
	} else {
		bool was_indexed = on_node_index(old);
		bool node_moved = !same_str(old->node_name, out->node_name);
		if (was_indexed && node_moved)
			state__nodes_unlink(&s->pods_by_node, e);
		e->obj = out;
		if (on_node_index(out) && (node_moved || !was_indexed))
			state__nodes_link(&s->pods_by_node, e);
	}
	if (on_node_index(old))
		state__nodes_release(&s->pods_by_node, old->node_name);
	set_success(r, rv, out);
	push_event(s, AEP_EV_MODIFIED, rv, aep_object_ref(out), old);
	cmd_in_release(&in);
	return 0;

out_release_node:
	if (on_node_index(out))
		state__nodes_release(&s->pods_by_node, out->node_name);
out_unref_out:
	aep_object_unref(out);
out_release_in:
	cmd_in_release(&in);
	return err;
}

/* The canonical encoding of the unbound pod @c with spec.nodeName = @node
 * spliced in: nodeName is the first field of a pod's spec, so it goes
 * right after the spec map's header. Returns 0 with *@out (aep_malloc'd,
 * *@out_len bytes), AEP_ETOOLARGE or AEP_ENOMEM. */
static int splice_node(const struct state__canon *c, const char *node, char **out, size_t *out_len)
{
	struct state__rd r = {(const unsigned char *)c->spec.p, c->spec.n, 0};
	uint32_t pairs;
	if (c->spec.p == NULL || state__rd_map(&r, &pairs) != 0)
		return AEP_EINVALID; /* a stored pod always has a spec map */
	size_t head = (size_t)(c->spec.p - c->data);
	size_t len = c->len + 5 + 9 + 5 + strlen(node);
	if (len > AEP_OBJECT_MAX)
		return AEP_ETOOLARGE;
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	if (aep_buf_reserve(&b, len) != 0)
		return AEP_ENOMEM;
	aep_packer_init(&pk, &b);
	aep_buf_append(&b, c->data, head);
	msgpack_pack_map(&pk, pairs + 1);
	aep_pack_str(&pk, "nodeName");
	aep_pack_str(&pk, node);
	aep_buf_append(&b, c->spec.p + r.off, c->len - head - r.off);
	if (b.failed) {
		aep_buf_free(&b);
		return AEP_ENOMEM;
	}
	*out = aep_buf_steal(&b, out_len);
	return 0;
}

static int apply_bind(struct aep_store *s, const struct state__cmd *c, uint64_t rv,
		      struct aep_result *r)
{
	char ns[AEP_NAME_MAX + 1], name[AEP_NAME_MAX + 1], node[AEP_NAME_MAX + 1];
	struct aep_error ve = {0};
	struct state__canon old_cv, new_cv;
	struct aep_object *out;
	char *bytes;
	size_t len;
	int err;

	span_str(ns, c->ns, c->ns_len);
	span_str(name, c->name, c->name_len);
	span_str(node, c->node, c->node_len);
	if (c->kind != AEP_KIND_POD)
		return refuse(r, AEP_EINVALID, "bind: only pods are bound, not %s",
			      plural(c->kind));
	if (aep_validate_dns1123_subdomain(node, c->node_len, &ve) != 0)
		return refuse(r, AEP_EINVALID, "bind pods \"%s\": node name: %s", name, ve.msg);
	struct state__entry *e = table_find(s, AEP_KIND_POD, ns, name);
	if (e == NULL)
		return refuse(r, AEP_ENOTFOUND, "pods \"%s\" not found", name);
	struct aep_object *old = e->obj;
	if (c->uid != NULL && c->uid_len > 0 &&
	    (strlen(old->meta.uid) != c->uid_len || memcmp(old->meta.uid, c->uid, c->uid_len) != 0))
		return refuse(r, AEP_ECONFLICT,
			      "pods \"%s\" has uid %s, the binding is for %.*s (deleted and "
			      "created again)",
			      name, old->meta.uid, (int)c->uid_len, c->uid);
	if (c->precond_rv != 0 && c->precond_rv != old->meta.rv)
		return refuse_conflict(r, AEP_KIND_POD, name);
	if (old->node_name != NULL)
		return refuse(r, AEP_ECONFLICT, "pods \"%s\" is already bound to node \"%s\"", name,
			      old->node_name);
	if (state__canon_read(AEP_KIND_POD, old->data, old->len, &old_cv) != 0)
		return refuse(r, AEP_EINTERNAL, "pods \"%s\": stored encoding unreadable", name);
	err = splice_node(&old_cv, node, &bytes, &len);
	if (err == AEP_ETOOLARGE)
		return refuse(r, err, "pods \"%s\": too large to bind", name);
	if (err != 0)
		return err;
	if (state__canon_read(AEP_KIND_POD, bytes, len, &new_cv) != 0) {
		aep_free(bytes);
		return refuse(r, AEP_EINTERNAL, "pods \"%s\": bound encoding unreadable", name);
	}
	err = state__canon_stamp(&new_cv, NULL, rv, -1, old->meta.generation + 1, &out);
	aep_free(bytes);
	if (err != 0)
		return err;
	if (state__nodes_reserve(&s->pods_by_node, node) != 0) {
		aep_object_unref(out);
		return AEP_ENOMEM;
	}

	/* Commit: nothing below fails. The entry's reference to the old
	 * object moves to the event. */
	e->obj = out;
	state__nodes_link(&s->pods_by_node, e);
	set_success(r, rv, out);
	push_event(s, AEP_EV_MODIFIED, rv, aep_object_ref(out), old);
	return 0;
}

/* Whether any namespaced object lives in namespace @ns. */
static bool namespace_in_use(struct aep_store *s, const char *ns)
{
	struct probe p;
	probe_init(&p, ns, "");
	for (int k = 0; k < AEP_KIND__COUNT; k++) {
		if (!namespaced((enum aep_kind)k))
			continue;
		struct state__entry *e = RB_NFIND(state__key_tree, &s->tables[k].tree, p.e);
		if (e != NULL && strcmp(e->obj->meta.ns, ns) == 0)
			return true;
	}
	return false;
}

static bool namespace_protected(const char *name)
{
	for (size_t i = 0; i < sizeof(initial_namespaces) / sizeof(initial_namespaces[0]); i++)
		if (strcmp(initial_namespaces[i].name, name) == 0)
			return true;
	return false;
}

static int apply_delete(struct aep_store *s, const struct state__cmd *c, uint64_t rv,
			struct aep_result *r)
{
	char ns[AEP_NAME_MAX + 1], name[AEP_NAME_MAX + 1];
	struct aep_object *gone;
	span_str(name, c->name, c->name_len);
	if (namespaced(c->kind))
		span_str(ns, c->ns, c->ns_len);
	else
		ns[0] = '\0';
	if (namespaced(c->kind) && ns[0] == '\0')
		return refuse(r, AEP_EINVALID, "delete %s \"%s\": a namespace is required",
			      plural(c->kind), name);
	struct state__entry *e = table_find(s, c->kind, ns, name);
	if (e == NULL)
		return refuse(r, AEP_ENOTFOUND, "%s \"%s\" not found", plural(c->kind), name);
	if (c->precond_rv != 0 && c->precond_rv != e->obj->meta.rv)
		return refuse_conflict(r, c->kind, name);
	if (c->kind == AEP_KIND_NAMESPACE) {
		if (namespace_protected(name))
			return refuse(r, AEP_EFORBIDDEN,
				      "namespaces \"%s\" is forbidden: this namespace may not be "
				      "deleted",
				      name);
		if (namespace_in_use(s, name))
			return refuse(r, AEP_ECONFLICT,
				      "namespace %s is not empty: delete its objects first", name);
	}
	/* The deleted object is reported with the delete's revision. */
	int err = aep_object_stamp(e->obj, NULL, rv, -1, -1, &gone);
	if (err != 0)
		return err;

	/* Commit: nothing below fails. */
	struct aep_object *old = e->obj;
	entry_unlink(s, e);
	aep_free(e);
	if (on_node_index(old))
		state__nodes_release(&s->pods_by_node, old->node_name);
	aep_object_unref(old);
	set_success(r, rv, gone);
	push_event(s, AEP_EV_DELETED, rv, gone, NULL);
	return 0;
}

static int member_cmp(const char *a, size_t an, const char *b)
{
	size_t bn = strlen(b);
	int c = memcmp(a, b, an < bn ? an : bn);
	if (c != 0)
		return c;
	return an < bn ? -1 : an > bn;
}

int state__store_set_member(struct aep_store *s, const char *name, size_t name_len, const char *api,
			    size_t api_len, const char *peer, size_t peer_len)
{
	size_t i = 0;
	while (i < s->nmembers && member_cmp(name, name_len, s->members[i].name) > 0)
		i++;
	bool found = i < s->nmembers && member_cmp(name, name_len, s->members[i].name) == 0;
	char *a = aep_strndup(api, api_len);
	char *p = aep_strndup(peer, peer_len);
	char *n = found ? NULL : aep_strndup(name, name_len);
	if (a == NULL || p == NULL || (!found && n == NULL))
		goto err_after_strings;
	if (found) {
		aep_free((char *)s->members[i].api);
		aep_free((char *)s->members[i].peer);
		s->members[i].api = a;
		s->members[i].peer = p;
		return 0;
	}
	struct aep_member *m = aep_realloc(s->members, (s->nmembers + 1) * sizeof(*m));
	if (m == NULL)
		goto err_after_strings;
	memmove(&m[i + 1], &m[i], (s->nmembers - i) * sizeof(*m));
	m[i].name = n;
	m[i].api = a;
	m[i].peer = p;
	s->members = m;
	s->nmembers++;
	return 0;

err_after_strings:
	aep_free(a);
	aep_free(p);
	aep_free(n);
	return AEP_ENOMEM;
}

static int apply_member(struct aep_store *s, const struct state__cmd *c, struct aep_result *r)
{
	if (c->name_len == 0)
		return refuse(r, AEP_EINVALID, "member: a name is required");
	int err = state__store_set_member(s, c->name, c->name_len, c->api, c->api_len, c->peer,
					  c->peer_len);
	if (err != 0)
		return err;
	r->code = 0;
	return 0;
}

/* Apply one command. Returns 0 once its outcome is in @r (success or a
 * refusal), AEP_ENOMEM when it could not be decided (nothing changed). */
static int apply_cmd(struct aep_store *s, const struct state__cmd *c, uint64_t rv,
		     struct aep_result *r)
{
	switch (c->op) {
	case AEP_OP_CREATE: return apply_create(s, c, rv, r);
	case AEP_OP_UPDATE: return apply_update(s, c, rv, r);
	case AEP_OP_DELETE: return apply_delete(s, c, rv, r);
	case AEP_OP_MEMBER: return apply_member(s, c, r);
	case AEP_OP_BIND: return apply_bind(s, c, rv, r);
	}
	return refuse(r, AEP_EINVALID, "unknown operation %d", (int)c->op);
}

int aep_store_apply(struct aep_store *s, uint64_t index, const char *data, size_t len,
		    struct aep_result **results, size_t *nresults)
{
	struct state__rd r = {(const unsigned char *)data, len, 0};
	struct state__cmd c;
	struct aep_result *res = NULL, scratch;
	uint32_t n;

	if (results != NULL)
		*results = NULL;
	if (nresults != NULL)
		*nresults = 0;
	/* Revisions must grow, and be made by the applier, not its watchers. */
	if (index == 0 || index <= s->applied_index || index > AEP_REV_INDEX(UINT64_MAX) ||
	    s->watchers.dispatching > 0)
		return AEP_EINVALID;
	if (state__rd_array(&r, &n) != 0 || n > AEP_BATCH_MAX)
		return AEP_EINVALID;
	size_t first = r.off;
	for (uint32_t i = 0; i < n; i++)
		if (state__cmd_decode(&r, &c) != 0)
			return AEP_EINVALID;
	if (r.off != len)
		return AEP_EINVALID;
	if (results != NULL) {
		res = aep_calloc(n > 0 ? n : 1, sizeof(*res));
		if (res == NULL)
			return AEP_ENOMEM;
	}

	r.off = first;
	for (uint32_t i = 0; i < n; i++) {
		struct aep_result *ri = res != NULL ? &res[i] : &scratch;
		memset(ri, 0, sizeof(*ri));
		state__cmd_decode(&r, &c);
		if (apply_cmd(s, &c, AEP_REV(index, i), ri) != 0) {
			aep_result_clear(ri);
			goto err_after_results;
		}
		if (res == NULL)
			aep_result_clear(ri);
	}
	s->applied_index = index;
	if (results != NULL)
		*results = res;
	else
		aep_free(res);
	if (nresults != NULL)
		*nresults = n;
	return 0;

err_after_results:
	if (res != NULL) {
		for (uint32_t i = 0; i < n; i++)
			aep_result_clear(&res[i]);
		aep_free(res);
	}
	return AEP_ENOMEM;
}

/* ---- reads -------------------------------------------------------------- */

uint64_t aep_store_revision(const struct aep_store *s)
{
	return s->revision;
}

uint64_t aep_store_applied_index(const struct aep_store *s)
{
	return s->applied_index;
}

size_t aep_store_count(const struct aep_store *s, enum aep_kind kind)
{
	return kind_valid(kind) ? s->tables[kind].count : 0;
}

/* The namespace to look in: cluster-scoped kinds ignore it. */
static const char *scope_ns(enum aep_kind kind, const char *ns)
{
	return namespaced(kind) ? ns : "";
}

struct aep_object *aep_store_get(struct aep_store *s, enum aep_kind kind, const char *ns,
				 const char *name)
{
	if (!kind_valid(kind) || name == NULL)
		return NULL;
	ns = scope_ns(kind, ns);
	if (ns == NULL)
		return NULL;
	struct state__entry *e = table_find(s, kind, ns, name);
	return e != NULL ? aep_object_ref(e->obj) : NULL;
}

static bool matches(const struct aep_selector *sel, const struct aep_object *o)
{
	return sel == NULL || aep_selector_matches(sel, o->meta.labels, o->meta.nlabels);
}

/* Walk the label index run of key=value (within @ns when given). */
static int list_by_label(struct aep_store *s, enum aep_kind kind, const char *ns, const char *key,
			 const char *value, const struct aep_selector *sel, aep_store_visit_cb cb,
			 void *data)
{
	struct probe p;
	probe_init(&p, ns != NULL ? ns : "", "");
	p.label.key = (char *)key;
	p.label.value = (char *)value;
	p.ref.hash = state__hash2(key, value);
	struct state__label_ref *l = RB_NFIND(state__label_tree, &s->tables[kind].labels, &p.ref);
	for (; l != NULL; l = RB_NEXT(state__label_tree, &s->tables[kind].labels, l)) {
		const struct aep_object *o = l->e->obj;
		const struct aep_label *lab = &o->meta.labels[l->i];
		if (strcmp(lab->key, key) != 0 || strcmp(lab->value, value) != 0)
			break;
		if (ns != NULL && strcmp(o->meta.ns, ns) != 0)
			break;
		if (!matches(sel, o))
			continue;
		int rv = cb(o, data);
		if (rv != 0)
			return rv;
	}
	return 0;
}

int aep_store_list(struct aep_store *s, enum aep_kind kind, const char *ns,
		   const struct aep_selector *sel, aep_store_visit_cb cb, void *data)
{
	if (!kind_valid(kind))
		return 0;
	if (!namespaced(kind))
		ns = NULL;
	if (sel != NULL && aep_selector_empty(sel))
		sel = NULL;
	const char *key, *value;
	if (sel != NULL && aep_selector_required_label(sel, &key, &value))
		return list_by_label(s, kind, ns, key, value, sel, cb, data);

	struct state__key_tree *tree = &s->tables[kind].tree;
	struct state__entry *e;
	if (ns != NULL) {
		struct probe p;
		probe_init(&p, ns, "");
		e = RB_NFIND(state__key_tree, tree, p.e);
	} else {
		e = RB_MIN(state__key_tree, tree);
	}
	for (; e != NULL; e = RB_NEXT(state__key_tree, tree, e)) {
		if (ns != NULL && strcmp(e->obj->meta.ns, ns) != 0)
			break;
		if (!matches(sel, e->obj))
			continue;
		int rv = cb(e->obj, data);
		if (rv != 0)
			return rv;
	}
	return 0;
}

int aep_store_list_pods_on_node(struct aep_store *s, const char *node, aep_store_visit_cb cb,
				void *data)
{
	if (node == NULL)
		return 0;
	return state__nodes_visit(&s->pods_by_node, node, cb, data);
}

int aep_store_members(struct aep_store *s, const struct aep_member **out, size_t *n)
{
	*out = s->members;
	*n = s->nmembers;
	return 0;
}
