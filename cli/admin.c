/* aep version and aep admin (init, issue, members, manage-node).
 *
 * admin members asks any master for the member list, then asks each member
 * directly (its own connection, a short timeout) for its status, so the
 * LEADER and APPLIED columns are each master's own view; a member that does
 * not answer shows its listed role and no applied index.
 *
 * admin manage-node (oadm manage-node grammar) reads each Node, sets or
 * clears spec.unschedulable and writes it back with the resourceVersion it
 * read as a precondition, reading again on Conflict (a few times).
 * --evacuate then deletes every pod bound to the node; it is refused on a
 * node that is schedulable (new pods would land there again) unless the
 * same call marks it unschedulable. Each node is handled on its own: a
 * failure is reported and the next node still goes; the exit code is 1
 * when any failed. */
#include "cli/cli.h"
#include "cli/internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define MEMBER_TIMEOUT_MS 2000u

/* ---- version ------------------------------------------------------------------------ */

int cli__cmd_version(struct cli *c)
{
	printf("Client Version: %s\n", CLI__VERSION);
	if (c->o.client_only)
		return 0;
	struct aep_error e = {0};
	struct cli__reply r;
	if (cli__call(c, "status", json_object(), &r, &e) != 0) {
		cli__report(&e);
		return 1;
	}
	char name[128], leader[128], ver[64];
	printf("Server Version: %s\n",
	       cli__mp_str(&r.obj, "version", ver, sizeof(ver), CLI__VERSION));
	printf("Server: %s (leader: %s, term %" PRId64 ", revision %" PRId64 ")\n",
	       cli__mp_str(&r.obj, "name", name, sizeof(name), "?"),
	       cli__mp_str(&r.obj, "leaderName", leader, sizeof(leader), "<none>"),
	       cli__mp_int(&r.obj, "term", 0), cli__mp_int(&r.obj, "revision", 0));
	cli__reply_free(&r);
	return 0;
}

/* ---- init / issue ---------------------------------------------------------------------- */

static int admin_init(struct cli *c)
{
	if (c->o.dir == NULL || c->o.masters == NULL) {
		fprintf(stderr, "error: usage: aep admin init --dir DIR --masters "
				"m1=127.0.0.1:7001,m2=127.0.0.1:7002,...\n");
		return 1;
	}
	char *spec = aep_strdup(c->o.masters);
	size_t cap = 1;
	for (const char *p = c->o.masters; *p; p++)
		cap += *p == ',';
	struct aep_pki_master *m = aep_calloc(cap, sizeof(*m));
	int status = 1;
	if (spec == NULL || m == NULL) {
		fprintf(stderr, "error: out of memory\n");
		goto out;
	}
	size_t n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(spec, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (eq == NULL || eq == tok || eq[1] == '\0') {
			fprintf(stderr, "error: --masters: \"%s\": expected NAME=HOST:PORT\n", tok);
			goto out;
		}
		*eq = '\0';
		m[n].name = tok;
		m[n].addr = eq + 1;
		n++;
	}
	struct aep_error e = {0};
	if (aep_pki_init(c->o.dir, m, n, &e) != 0) {
		fprintf(stderr, "error: %s\n", e.msg);
		goto out;
	}
	printf("Wrote the cluster CA, %zu master certificate%s and the admin certificate in "
	       "%s/pki\n",
	       n, n == 1 ? "" : "s", c->o.dir);
	printf("Wrote %s/admin.conf: use it with --config %s/admin.conf or AEP_CONFIG\n", c->o.dir,
	       c->o.dir);
	status = 0;
out:
	aep_free(spec);
	aep_free(m);
	return status;
}

static int admin_issue(struct cli *c)
{
	if (c->o.dir == NULL || c->o.cn == NULL || c->o.cert == NULL || c->o.key == NULL) {
		fprintf(stderr, "error: usage: aep admin issue --dir DIR --cn NAME [--org ORG] "
				"[--sans a,b] --cert FILE --key FILE\n");
		return 1;
	}
	struct aep_error e = {0};
	if (aep_pki_issue(c->o.dir, c->o.cn, c->o.org, c->o.sans, c->o.cert, c->o.key, &e) != 0) {
		fprintf(stderr, "error: %s\n", e.msg);
		return 1;
	}
	printf("Wrote %s and %s\n", c->o.cert, c->o.key);
	return 0;
}

/* ---- members ------------------------------------------------------------------------ */

struct member_status {
	bool ok;
	bool leader;
	int64_t applied;
};

static void closed_cb(void *data)
{
	*(bool *)data = true;
}

/* Ask the master at @addr itself for its status. */
static void member_status(struct cli *c, const char *addr, struct member_status *st)
{
	memset(st, 0, sizeof(*st));
	struct aep_rpc_client_config cc = {
	    .servers = addr,
	    .tls = c->tls,
	    .connect_timeout_ms = MEMBER_TIMEOUT_MS,
	};
	struct aep_rpc_client *client;
	struct aep_error e = {0};
	if (aep_rpc_client_new(&c->loop, &cc, &client, &e) != 0)
		return;
	static const char empty_map[] = "\x80";
	struct aep_buf result;
	aep_buf_init(&result);
	if (aep_rpc_call_sync(&c->loop, client, "status", empty_map, 1, MEMBER_TIMEOUT_MS, &result,
			      &e) == 0) {
		msgpack_zone zone;
		msgpack_object o;
		msgpack_zone_init(&zone, 1024);
		if (aep_mp_unpack(result.data, result.len, &zone, &o, &e) == 0) {
			st->ok = true;
			st->leader = cli__mp_bool(&o, "leader", false);
			st->applied = cli__mp_int(&o, "appliedIndex", 0);
		}
		msgpack_zone_destroy(&zone);
	}
	aep_buf_free(&result);
	bool closed = false;
	aep_rpc_client_close(client, closed_cb, &closed);
	while (!closed && uv_run(&c->loop, UV_RUN_ONCE) != 0)
		;
}

static int admin_members(struct cli *c)
{
	struct aep_error e = {0};
	struct cli__reply r;
	if (cli__call(c, "members", json_object(), &r, &e) != 0) {
		cli__report(&e);
		return 1;
	}
	const msgpack_object *list = &r.obj;
	if (list->type == MSGPACK_OBJECT_MAP) {
		const msgpack_object *inner = cli__mp_path(list, "members");
		list = inner ? inner : cli__mp_path(list, "items");
	}
	if (list == NULL || list->type != MSGPACK_OBJECT_ARRAY) {
		cli__reply_free(&r);
		fprintf(stderr, "error: members: unexpected answer from the server\n");
		return 1;
	}
	bool json = c->o.output != NULL && strcmp(c->o.output, "json") == 0;
	bool yaml = c->o.output != NULL && strcmp(c->o.output, "yaml") == 0;
	json_t *out = json_array();
	struct cli__table t;
	cli__table_init(&t, 5);
	static const char *const hdr[] = {"NAME", "ADDRESS", "PEER", "LEADER", "APPLIED"};
	cli__table_add(&t, hdr);
	for (uint32_t i = 0; i < list->via.array.size; i++) {
		const msgpack_object *m = &list->via.array.ptr[i];
		char name[128], addr[300], peer[300], applied[32];
		cli__mp_str(m, "name", name, sizeof(name), "");
		cli__mp_str(m, "address", addr, sizeof(addr), "");
		cli__mp_str(m, "peerAddress", peer, sizeof(peer), "");
		struct member_status st;
		if (addr[0] != '\0')
			member_status(c, addr, &st);
		else
			memset(&st, 0, sizeof(st));
		bool leader = st.ok ? st.leader : cli__mp_bool(m, "leader", false);
		snprintf(applied, sizeof(applied), "%" PRId64, st.applied);
		const char *row[] = {name, addr, peer, leader ? "true" : "false",
				     st.ok ? applied : "<unreachable>"};
		cli__table_add(&t, row);
		json_t *j = json_pack("{s:s, s:s, s:s, s:b}", "name", name, "address", addr,
				      "peerAddress", peer, "leader", leader);
		if (j != NULL)
			json_object_set_new(j, "appliedIndex",
					    st.ok ? json_integer(st.applied) : json_null());
		json_array_append_new(out, j);
	}
	cli__reply_free(&r);
	int status = 0;
	if (json || yaml) {
		if (json) {
			if (json_dumpf(out, stdout, JSON_INDENT(4) | JSON_PRESERVE_ORDER) != 0)
				status = 1;
			putchar('\n');
		} else {
			struct aep_buf b;
			aep_buf_init(&b);
			msgpack_packer pk;
			aep_packer_init(&pk, &b);
			cli__json_pack(&pk, out);
			msgpack_zone zone;
			msgpack_object o;
			msgpack_zone_init(&zone, 1024);
			if (b.failed || aep_mp_unpack(b.data, b.len, &zone, &o, &e) != 0 ||
			    aep_print_yaml(stdout, &o) != 0)
				status = 1;
			msgpack_zone_destroy(&zone);
			aep_buf_free(&b);
		}
	} else {
		cli__table_print(stdout, &t);
	}
	json_decref(out);
	cli__table_free(&t);
	return status;
}

/* ---- manage-node ------------------------------------------------------------------------- */

static json_t *node_params(const char *name)
{
	return json_pack("{s:s, s:s}", "kind", "Node", "name", name);
}

struct sched_edit {
	bool schedulable;
	bool was; /* spec.unschedulable as read */
};

static enum cli__mod sched_mutate(json_t *obj, void *data)
{
	struct sched_edit *se = data;
	json_t *spec = json_object_get(obj, "spec");
	se->was = json_is_true(json_object_get(spec, "unschedulable"));
	if (se->was == !se->schedulable)
		return CLI__SKIP;
	spec = cli__json_member_object(obj, "spec");
	if (spec == NULL) {
		fprintf(stderr, "error: out of memory\n");
		return CLI__FAIL;
	}
	int rv = se->schedulable ? json_object_del(spec, "unschedulable")
				 : json_object_set_new(spec, "unschedulable", json_true());
	if (rv != 0) {
		fprintf(stderr, "error: out of memory\n");
		return CLI__FAIL;
	}
	return CLI__WRITE;
}

/* Make @name's spec.unschedulable say !@schedulable. *@unschedulable gets
 * the state the node is left in. Returns 0, or 1 after printing an error. */
static int set_schedulable(struct cli *c, const char *name, bool schedulable, bool *unschedulable)
{
	struct sched_edit se = {.schedulable = schedulable};
	switch (cli__modify(c, aep_kind_info(AEP_KIND_NODE), NULL, name, sched_mutate, &se)) {
	case CLI__SKIP:
		*unschedulable = se.was;
		printf("node/%s already %s\n", name, se.was ? "unschedulable" : "schedulable");
		return 0;
	case CLI__WRITE:
		*unschedulable = !schedulable;
		printf("node/%s marked %s\n", name, schedulable ? "schedulable" : "unschedulable");
		fflush(stdout);
		return 0;
	case CLI__FAIL: break;
	}
	return 1;
}

/* Is @name marked unschedulable? 0 and *@out, or 1 after printing an error. */
static int node_unschedulable(struct cli *c, const char *name, bool *out)
{
	struct aep_error e = {0};
	struct cli__reply r;
	if (cli__call(c, "get", node_params(name), &r, &e) != 0) {
		if (e.code == AEP_ENOTFOUND)
			aep_errorf(&e, AEP_ENOTFOUND, "nodes \"%s\" not found", name);
		cli__report(&e);
		return 1;
	}
	*out = cli__mp_bool(&r.obj, "spec.unschedulable", false);
	cli__reply_free(&r);
	return 0;
}

/* Delete every pod bound to @node. Returns 0, or 1 when the list or a
 * delete failed (after printing it). */
static int evacuate(struct cli *c, const char *node)
{
	struct aep_error e = {0};
	struct cli__reply r;
	if (cli__call(c, "list", json_pack("{s:s}", "kind", "Pod"), &r, &e) != 0) {
		aep_error_prefix(&e, "evacuate node/%s: list pods", node);
		cli__report(&e);
		return 1;
	}
	const msgpack_object *items = cli__mp_path(&r.obj, "items");
	if (items == NULL || items->type != MSGPACK_OBJECT_ARRAY) {
		cli__reply_free(&r);
		fprintf(stderr, "error: evacuate node/%s: unexpected answer from the server\n",
			node);
		return 1;
	}
	int status = 0;
	size_t deleted = 0;
	for (uint32_t i = 0; i < items->via.array.size; i++) {
		const msgpack_object *p = &items->via.array.ptr[i];
		char on[AEP_NAME_MAX + 1], ns[AEP_NAME_MAX + 1], name[AEP_NAME_MAX + 1];
		if (strcmp(cli__mp_str(p, "spec.nodeName", on, sizeof(on), ""), node) != 0)
			continue;
		cli__mp_str(p, "metadata.namespace", ns, sizeof(ns), "default");
		cli__mp_str(p, "metadata.name", name, sizeof(name), "");
		struct cli__reply d;
		json_t *params =
		    json_pack("{s:s, s:s, s:s}", "kind", "Pod", "namespace", ns, "name", name);
		if (cli__call(c, "delete", params, &d, &e) != 0) {
			if (e.code == AEP_ENOTFOUND)
				continue; /* gone meanwhile: that is what we wanted */
			aep_error_prefix(&e, "evacuate node/%s: delete pod/%s/%s", node, ns, name);
			cli__report(&e);
			status = 1;
			continue;
		}
		cli__reply_free(&d);
		printf("pod/%s/%s deleted\n", ns, name);
		fflush(stdout);
		deleted++;
	}
	cli__reply_free(&r);
	if (deleted == 0 && status == 0)
		printf("node/%s: no pods to evacuate\n", node);
	return status;
}

static int manage_one(struct cli *c, const char *name)
{
	bool unschedulable = false;
	if (c->o.schedulable_set) {
		if (set_schedulable(c, name, c->o.schedulable, &unschedulable) != 0)
			return 1;
	} else if (node_unschedulable(c, name, &unschedulable) != 0) {
		return 1;
	}
	if (!c->o.evacuate)
		return 0;
	if (!unschedulable) {
		fprintf(stderr,
			"error: node/%s is schedulable: new pods would land on it again. Mark it "
			"unschedulable first (add --schedulable=false), then evacuate\n",
			name);
		return 1;
	}
	return evacuate(c, name);
}

/* The nodes matching -l, as a heap array of heap strings in *@out. */
static int selected_nodes(struct cli *c, char ***out, size_t *n)
{
	struct aep_error e = {0};
	struct cli__reply r;
	*out = NULL;
	*n = 0;
	if (cli__call(c, "list",
		      json_pack("{s:s, s:s}", "kind", "Node", "labelSelector", c->o.selector), &r,
		      &e) != 0) {
		cli__report(&e);
		return 1;
	}
	const msgpack_object *items = cli__mp_path(&r.obj, "items");
	uint32_t count =
	    items != NULL && items->type == MSGPACK_OBJECT_ARRAY ? items->via.array.size : 0;
	char **v = aep_calloc(count + 1, sizeof(*v));
	int status = v == NULL;
	for (uint32_t i = 0; i < count && status == 0; i++) {
		char name[AEP_NAME_MAX + 1];
		v[i] = aep_strdup(
		    cli__mp_str(&items->via.array.ptr[i], "metadata.name", name, sizeof(name), ""));
		status = v[i] == NULL;
		*n += v[i] != NULL;
	}
	cli__reply_free(&r);
	if (status != 0)
		fprintf(stderr, "error: out of memory\n");
	*out = v;
	return status;
}

static int admin_manage_node(struct cli *c)
{
	static const char usage[] = "usage: aep admin manage-node NODE... [-l SELECTOR] "
				    "--schedulable=false|true [--evacuate]";
	if (!c->o.schedulable_set && !c->o.evacuate) {
		fprintf(stderr, "error: you must provide --schedulable or --evacuate (%s)\n",
			usage);
		return 1;
	}
	if (c->o.evacuate && c->o.schedulable_set && c->o.schedulable) {
		fprintf(stderr, "error: --evacuate cannot be combined with --schedulable=true: the "
				"evacuated pods' replacements would land on the node again\n");
		return 1;
	}
	if ((c->o.nargs == 0) == (c->o.selector == NULL)) {
		fprintf(stderr, "error: %s (%s)\n",
			c->o.nargs == 0 ? "you must provide one or more nodes or -l SELECTOR"
					: "nodes and -l SELECTOR cannot be combined",
			usage);
		return 1;
	}
	char **names = NULL;
	size_t n = 0;
	if (c->o.selector != NULL) {
		if (selected_nodes(c, &names, &n) != 0) {
			for (size_t i = 0; names != NULL && i < n; i++)
				aep_free(names[i]);
			aep_free(names);
			return 1;
		}
		if (n == 0)
			fprintf(stderr, "No nodes match \"%s\"\n", c->o.selector);
	}
	int status = 0;
	for (size_t i = 0; i < (names ? n : c->o.nargs); i++)
		status |= manage_one(c, names ? names[i] : c->o.args[i]);
	for (size_t i = 0; names != NULL && i < n; i++)
		aep_free(names[i]);
	aep_free(names);
	return status;
}

int cli__cmd_admin(struct cli *c)
{
	if (c->o.nargs == 0) {
		fprintf(stderr, "error: usage: aep admin init|issue|members|manage-node ...\n");
		return 1;
	}
	const char *sub = c->o.args[0];
	c->o.args++;
	c->o.nargs--;
	int rv;
	if (strcmp(sub, "init") == 0)
		rv = admin_init(c);
	else if (strcmp(sub, "issue") == 0)
		rv = admin_issue(c);
	else if (strcmp(sub, "members") == 0)
		rv = admin_members(c);
	else if (strcmp(sub, "manage-node") == 0)
		rv = admin_manage_node(c);
	else {
		fprintf(stderr, "error: unknown command \"%s\" for \"aep admin\"\n", sub);
		rv = 1;
	}
	c->o.args--;
	c->o.nargs++;
	return rv;
}
