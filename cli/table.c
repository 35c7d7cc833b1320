/* Tables for `aep get`: one row per object with the columns kubectl shows
 * for its kind, padded like kubectl (widest cell plus three spaces). */
#include "cli/internal.h"
#include "state/state.h"

#include <inttypes.h>
#include <string.h>

void cli__table_init(struct cli__table *t, size_t ncols)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
}

int cli__table_add(struct cli__table *t, const char *const *cells)
{
	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		if (cap > SIZE_MAX / sizeof(char *) / t->ncols)
			return AEP_ENOMEM;
		char **c = aep_realloc(t->cells, cap * t->ncols * sizeof(char *));
		if (c == NULL)
			return AEP_ENOMEM;
		t->cells = c;
		t->cap = cap;
	}
	char **row = &t->cells[t->nrows * t->ncols];
	for (size_t i = 0; i < t->ncols; i++) {
		row[i] = aep_strdup(cells[i] ? cells[i] : "");
		if (row[i] == NULL) {
			for (size_t j = 0; j < i; j++)
				aep_free(row[j]);
			return AEP_ENOMEM;
		}
	}
	t->nrows++;
	return 0;
}

void cli__table_print(FILE *f, const struct cli__table *t)
{
	size_t width[32] = {0};
	size_t ncols = t->ncols < 32 ? t->ncols : 32;
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < ncols; c++) {
			size_t w = strlen(t->cells[r * t->ncols + c]);
			if (w > width[c])
				width[c] = w;
		}
	}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < ncols; c++) {
			const char *s = t->cells[r * t->ncols + c];
			if (c + 1 == ncols)
				fprintf(f, "%s\n", s);
			else
				fprintf(f, "%-*s", (int)(width[c] + 3), s);
		}
	}
}

void cli__table_free(struct cli__table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		aep_free(t->cells[i]);
	aep_free(t->cells);
	memset(t, 0, sizeof(*t));
}

void cli__cells_free(char **cells, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		aep_free(cells[i]);
		cells[i] = NULL;
	}
}

/* ---- columns per kind ------------------------------------------------------- */

static const char *const pod_cols[] = {"NAMESPACE", "NAME", "READY", "STATUS",
				       "RESTARTS",  "AGE",  "IP",    "NODE"};
static const char *const node_cols[] = {"NAMESPACE", "NAME", "STATUS",
					"ROLES",     "AGE",  "INTERNAL-IP"};
static const char *const rc_cols[] = {"NAMESPACE", "NAME", "DESIRED", "CURRENT",
				      "READY",	   "AGE",  "SELECTOR"};
static const char *const svc_cols[] = {"NAMESPACE", "NAME", "TYPE",    "CLUSTER-IP",
				       "PORT(S)",   "AGE",  "SELECTOR"};
static const char *const ns_cols[] = {"NAMESPACE", "NAME", "STATUS", "AGE"};
static const char *const secret_cols[] = {"NAMESPACE", "NAME", "TYPE", "DATA", "AGE"};
static const char *const ep_cols[] = {"NAMESPACE", "NAME", "ENDPOINTS", "AGE"};
static const char *const ev_cols[] = {"NAMESPACE", "LAST SEEN", "TYPE",
				      "REASON",	   "OBJECT",	"MESSAGE"};

struct kind_cols {
	const char *const *cols;
	size_t n;      /* with -o wide */
	size_t narrow; /* without */
};

static struct kind_cols cols_of(int kind)
{
	struct kind_cols k;
	switch (kind) {
	case AEP_KIND_POD: k = (struct kind_cols){pod_cols, 8, 6}; break;
	case AEP_KIND_NODE: k = (struct kind_cols){node_cols, 6, 5}; break;
	case AEP_KIND_RC: k = (struct kind_cols){rc_cols, 7, 6}; break;
	case AEP_KIND_SERVICE: k = (struct kind_cols){svc_cols, 7, 6}; break;
	case AEP_KIND_ENDPOINTS: k = (struct kind_cols){ep_cols, 4, 4}; break;
	case AEP_KIND_EVENT: k = (struct kind_cols){ev_cols, 6, 6}; break;
	case AEP_KIND_SECRET: k = (struct kind_cols){secret_cols, 5, 5}; break;
	default: k = (struct kind_cols){ns_cols, 4, 4}; break;
	}
	return k;
}

const char *const *cli__table_header(int kind, const struct cli__cols *c, size_t *n)
{
	struct kind_cols k = cols_of(kind);
	const struct aep_kind_info *ki = aep_kind_info((enum aep_kind)kind);
	bool ns = c->show_ns && ki != NULL && ki->namespaced;
	*n = (c->wide ? k.n : k.narrow) - (ns ? 0 : 1);
	return ns ? k.cols : k.cols + 1;
}

/* ---- cells ------------------------------------------------------------------ */

struct row {
	char **cells;
	size_t n;
	size_t max;
	bool failed;
};

static void put(struct row *r, const char *s)
{
	if (r->n == r->max) {
		r->failed = true;
		return;
	}
	r->cells[r->n] = aep_strdup(s ? s : "");
	if (r->cells[r->n] == NULL)
		r->failed = true;
	r->n++;
}

static void put_name(struct row *r, const msgpack_object *o)
{
	char buf[AEP_NAME_MAX + 1];
	put(r, cli__mp_str(o, "metadata.name", buf, sizeof(buf), ""));
}

static void put_age(struct row *r, const msgpack_object *o, const struct cli__cols *c)
{
	char buf[32];
	cli__format_age(o, c->now_s, buf, sizeof(buf));
	put(r, buf);
}

static const msgpack_object *array_at(const msgpack_object *o, const char *path)
{
	const msgpack_object *a = cli__mp_path(o, path);
	return a != NULL && a->type == MSGPACK_OBJECT_ARRAY ? a : NULL;
}

static void pod_row(struct row *r, const msgpack_object *o, const struct cli__cols *c)
{
	char buf[256], ready[32], restarts[32];
	const msgpack_object *containers = array_at(o, "spec.containers");
	const msgpack_object *st = array_at(o, "status.containerStatuses");
	uint32_t total = containers ? containers->via.array.size : 0;
	uint32_t nready = 0;
	int64_t nrestarts = 0;
	const char *reason = NULL;
	char reason_buf[64];
	for (uint32_t i = 0; st != NULL && i < st->via.array.size; i++) {
		const msgpack_object *cs = &st->via.array.ptr[i];
		if (cli__mp_bool(cs, "ready", false))
			nready++;
		nrestarts += cli__mp_int(cs, "restartCount", 0);
		const char *w =
		    cli__mp_str(cs, "state.waiting.reason", reason_buf, sizeof(reason_buf), NULL);
		if (w == NULL)
			w = cli__mp_str(cs, "state.terminated.reason", reason_buf,
					sizeof(reason_buf), NULL);
		if (w != NULL && *w != '\0')
			reason = w;
	}
	snprintf(ready, sizeof(ready), "%u/%u", nready, total);
	snprintf(restarts, sizeof(restarts), "%lld", (long long)nrestarts);
	put_name(r, o);
	put(r, ready);
	const char *phase = cli__mp_str(o, "status.phase", buf, sizeof(buf), "Pending");
	if (cli__mp_path(o, "metadata.deletionTimestamp") != NULL)
		phase = "Terminating";
	else if (reason != NULL)
		phase = reason;
	else if (cli__mp_str(o, "status.reason", buf, sizeof(buf), NULL) != NULL)
		phase = buf;
	put(r, phase);
	put(r, restarts);
	put_age(r, o, c);
	if (c->wide) {
		put(r, cli__mp_str(o, "status.podIP", buf, sizeof(buf), "<none>"));
		put(r, cli__mp_str(o, "spec.nodeName", buf, sizeof(buf), "<none>"));
	}
}

static void node_row(struct row *r, const msgpack_object *o, const struct cli__cols *c)
{
	char buf[256];
	const char *status = "Unknown";
	const msgpack_object *conds = array_at(o, "status.conditions");
	for (uint32_t i = 0; conds != NULL && i < conds->via.array.size; i++) {
		const msgpack_object *cd = &conds->via.array.ptr[i];
		char t[32], s[32];
		if (strcmp(cli__mp_str(cd, "type", t, sizeof(t), ""), "Ready") != 0)
			continue;
		const char *v = cli__mp_str(cd, "status", s, sizeof(s), "Unknown");
		status = strcmp(v, "True") == 0	   ? "Ready"
			 : strcmp(v, "False") == 0 ? "NotReady"
						   : "Unknown";
	}
	char full[64];
	snprintf(full, sizeof(full), "%s%s", status,
		 cli__mp_bool(o, "spec.unschedulable", false) ? ",SchedulingDisabled" : "");
	/* roles from node-role.kubernetes.io/ROLE labels */
	char roles[256] = "";
	const msgpack_object *labels = cli__mp_path(o, "metadata.labels");
	static const char prefix[] = "node-role.kubernetes.io/";
	for (uint32_t i = 0;
	     labels && labels->type == MSGPACK_OBJECT_MAP && i < labels->via.map.size; i++) {
		const msgpack_object *k = &labels->via.map.ptr[i].key;
		if (k->type != MSGPACK_OBJECT_STR || k->via.str.size <= sizeof(prefix) - 1 ||
		    memcmp(k->via.str.ptr, prefix, sizeof(prefix) - 1) != 0)
			continue;
		size_t used = strlen(roles);
		snprintf(roles + used, sizeof(roles) - used, "%s%.*s", used ? "," : "",
			 (int)(k->via.str.size - (sizeof(prefix) - 1)),
			 k->via.str.ptr + sizeof(prefix) - 1);
	}
	put_name(r, o);
	put(r, full);
	put(r, roles[0] ? roles : "<none>");
	put_age(r, o, c);
	if (c->wide) {
		const char *ip = "<none>";
		const msgpack_object *addrs = array_at(o, "status.addresses");
		for (uint32_t i = 0; addrs != NULL && i < addrs->via.array.size; i++) {
			char t[32];
			const msgpack_object *a = &addrs->via.array.ptr[i];
			if (strcmp(cli__mp_str(a, "type", t, sizeof(t), ""), "InternalIP") == 0)
				ip = cli__mp_str(a, "address", buf, sizeof(buf), "<none>");
		}
		put(r, ip);
	}
}

static void selector_text(const msgpack_object *sel, char *buf, size_t size)
{
	buf[0] = '\0';
	if (sel == NULL || sel->type != MSGPACK_OBJECT_MAP || sel->via.map.size == 0) {
		snprintf(buf, size, "<none>");
		return;
	}
	size_t used = 0;
	for (uint32_t i = 0; i < sel->via.map.size && used < size; i++) {
		const msgpack_object *k = &sel->via.map.ptr[i].key;
		const msgpack_object *v = &sel->via.map.ptr[i].val;
		if (k->type != MSGPACK_OBJECT_STR || v->type != MSGPACK_OBJECT_STR)
			continue;
		int n = snprintf(buf + used, size - used, "%s%.*s=%.*s", used ? "," : "",
				 (int)k->via.str.size, k->via.str.ptr, (int)v->via.str.size,
				 v->via.str.ptr);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static void rc_row(struct row *r, const msgpack_object *o, const struct cli__cols *c)
{
	char d[32], cur[32], rd[32], sel[512];
	snprintf(d, sizeof(d), "%lld", (long long)cli__mp_int(o, "spec.replicas", 1));
	snprintf(cur, sizeof(cur), "%lld", (long long)cli__mp_int(o, "status.replicas", 0));
	snprintf(rd, sizeof(rd), "%lld", (long long)cli__mp_int(o, "status.readyReplicas", 0));
	put_name(r, o);
	put(r, d);
	put(r, cur);
	put(r, rd);
	put_age(r, o, c);
	if (c->wide) {
		selector_text(cli__mp_path(o, "spec.selector"), sel, sizeof(sel));
		put(r, sel);
	}
}

static void svc_row(struct row *r, const msgpack_object *o, const struct cli__cols *c)
{
	char type[32], ip[64], ports[512] = "", sel[512];
	put_name(r, o);
	put(r, cli__mp_str(o, "spec.type", type, sizeof(type), "ClusterIP"));
	put(r, cli__mp_str(o, "spec.clusterIP", ip, sizeof(ip), "<none>"));
	const msgpack_object *pl = array_at(o, "spec.ports");
	size_t used = 0;
	for (uint32_t i = 0; pl != NULL && i < pl->via.array.size && used < sizeof(ports); i++) {
		const msgpack_object *p = &pl->via.array.ptr[i];
		char proto[16];
		int64_t port = cli__mp_int(p, "port", 0);
		int64_t np = cli__mp_int(p, "nodePort", 0);
		char npbuf[24] = "";
		if (np > 0)
			snprintf(npbuf, sizeof(npbuf), ":%lld", (long long)np);
		int n = snprintf(ports + used, sizeof(ports) - used, "%s%lld%s/%s", used ? "," : "",
				 (long long)port, npbuf,
				 cli__mp_str(p, "protocol", proto, sizeof(proto), "TCP"));
		if (n < 0)
			break;
		used += (size_t)n;
	}
	put(r, ports[0] ? ports : "<none>");
	put_age(r, o, c);
	if (c->wide) {
		selector_text(cli__mp_path(o, "spec.selector"), sel, sizeof(sel));
		put(r, sel);
	}
}

static void ns_row(struct row *r, const msgpack_object *o, const struct cli__cols *c)
{
	char buf[64];
	put_name(r, o);
	put(r, cli__mp_str(o, "status.phase", buf, sizeof(buf), "Active"));
	put_age(r, o, c);
}

/* kubectl's Secret columns: the number of data keys, never their values. */
static void secret_row(struct row *r, const msgpack_object *o, const struct cli__cols *c)
{
	char type[128], n[16];
	const msgpack_object *data = cli__mp_path(o, "data");
	put_name(r, o);
	put(r, cli__mp_str(o, "type", type, sizeof(type), "Opaque"));
	snprintf(n, sizeof(n), "%u",
		 data != NULL && data->type == MSGPACK_OBJECT_MAP ? data->via.map.size : 0u);
	put(r, n);
	put_age(r, o, c);
}

static void ep_row(struct row *r, const msgpack_object *o, const struct cli__cols *c)
{
	char out[512] = "";
	size_t used = 0, shown = 0, total = 0;
	const msgpack_object *subsets = array_at(o, "subsets");
	for (uint32_t s = 0; subsets != NULL && s < subsets->via.array.size; s++) {
		const msgpack_object *ss = &subsets->via.array.ptr[s];
		const msgpack_object *addrs = array_at(ss, "addresses");
		const msgpack_object *ports = array_at(ss, "ports");
		for (uint32_t a = 0; addrs != NULL && a < addrs->via.array.size; a++) {
			char ip[64];
			cli__mp_str(&addrs->via.array.ptr[a], "ip", ip, sizeof(ip), "");
			uint32_t np = ports ? ports->via.array.size : 0;
			for (uint32_t p = 0; p < (np ? np : 1); p++) {
				total++;
				if (shown == 3)
					continue;
				char one[96];
				if (np)
					snprintf(one, sizeof(one), "%s:%lld", ip,
						 (long long)cli__mp_int(&ports->via.array.ptr[p],
									"port", 0));
				else
					snprintf(one, sizeof(one), "%s", ip);
				int n = snprintf(out + used, sizeof(out) - used, "%s%s",
						 used ? "," : "", one);
				if (n > 0 && (size_t)n < sizeof(out) - used)
					used += (size_t)n;
				shown++;
			}
		}
	}
	if (total > shown) {
		size_t u = strlen(out);
		snprintf(out + u, sizeof(out) - u, " + %zu more...", total - shown);
	}
	put_name(r, o);
	put(r, out[0] ? out : "<none>");
	put_age(r, o, c);
}

static void ev_row(struct row *r, const msgpack_object *o, const struct cli__cols *c)
{
	char seen[32], type[32], reason[128], obj[300], kind[64], name[AEP_NAME_MAX + 1];
	char msg[1024], ts[64];
	int64_t t;
	const char *last = cli__mp_str(o, "lastTimestamp", ts, sizeof(ts), NULL);
	if (last == NULL)
		last = cli__mp_str(o, "metadata.creationTimestamp", ts, sizeof(ts), NULL);
	if (last != NULL && cli__parse_time(last, &t)) {
		cli__format_duration(c->now_s - t, seen, sizeof(seen));
	} else {
		snprintf(seen, sizeof(seen), "<unknown>");
	}
	const char *k = cli__mp_str(o, "involvedObject.kind", kind, sizeof(kind), "");
	const struct aep_kind_info *ki = aep_kind_lookup(k, strlen(k));
	snprintf(obj, sizeof(obj), "%s/%s", ki ? ki->singular : k,
		 cli__mp_str(o, "involvedObject.name", name, sizeof(name), ""));
	for (char *p = obj; *p && !ki; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	put(r, seen);
	put(r, cli__mp_str(o, "type", type, sizeof(type), "Normal"));
	put(r, cli__mp_str(o, "reason", reason, sizeof(reason), ""));
	put(r, obj);
	put(r, cli__mp_str(o, "message", msg, sizeof(msg), ""));
}

int cli__table_row(int kind, const msgpack_object *obj, const struct cli__cols *c, char **cells,
		   size_t max)
{
	struct row r = {cells, 0, max, false};
	const struct aep_kind_info *ki = aep_kind_info((enum aep_kind)kind);
	if (c->show_ns && ki != NULL && ki->namespaced) {
		char ns[AEP_NAME_MAX + 1];
		put(&r, cli__mp_str(obj, "metadata.namespace", ns, sizeof(ns), ""));
	}
	switch (kind) {
	case AEP_KIND_POD: pod_row(&r, obj, c); break;
	case AEP_KIND_NODE: node_row(&r, obj, c); break;
	case AEP_KIND_RC: rc_row(&r, obj, c); break;
	case AEP_KIND_SERVICE: svc_row(&r, obj, c); break;
	case AEP_KIND_ENDPOINTS: ep_row(&r, obj, c); break;
	case AEP_KIND_EVENT: ev_row(&r, obj, c); break;
	case AEP_KIND_SECRET: secret_row(&r, obj, c); break;
	default: ns_row(&r, obj, c); break;
	}
	if (r.failed) {
		cli__cells_free(cells, r.n);
		return -1;
	}
	return (int)r.n;
}
