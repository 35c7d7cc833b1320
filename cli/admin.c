/* aep version and aep admin (init, issue, members).
 *
 * admin members asks any master for the member list, then asks each member
 * directly (its own connection, a short timeout) for its status, so the
 * LEADER and APPLIED columns are each master's own view; a member that does
 * not answer shows its listed role and no applied index. */
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

int cli__cmd_admin(struct cli *c)
{
	if (c->o.nargs == 0) {
		fprintf(stderr, "error: usage: aep admin init|issue|members ...\n");
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
	else {
		fprintf(stderr, "error: unknown command \"%s\" for \"aep admin\"\n", sub);
		rv = 1;
	}
	c->o.args--;
	c->o.nargs++;
	return rv;
}
