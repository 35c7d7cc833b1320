/* aep_cli_main: the command line (kubectl/oc grammar), the connection to
 * the masters and kubectl-style error reporting.
 *
 * Flags may come before or after the verb and its arguments ("aep -n x get
 * pods", "aep get pods -n x"). The client connects lazily on the first
 * call, with one libuv loop and aep_rpc_call_sync per call. Exit codes:
 * 0 ok, 1 any error (printed to stderr). */
#include "cli/cli.h"
#include "cli/internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEOUT_MS 30000u
#define MAX_FILES	   64
#define RETRY_BUDGET_MS	   10000

static const char usage_text[] =
    "aep controls an AEP cluster.\n"
    "\n"
    "Basic commands:\n"
    "  get KIND [NAME...]         show objects (-o wide|yaml|json|name, -l SELECTOR,\n"
    "                             -A, -w to watch, --stale)\n"
    "  describe KIND NAME         show an object in detail with its events\n"
    "  create -f FILE             create the objects of a manifest (YAML or JSON, '-' = stdin)\n"
    "  apply -f FILE              create or update the objects of a manifest\n"
    "  delete KIND NAME... | -f FILE\n"
    "                             delete objects\n"
    "  label KIND NAME k=v k2-    add, change (--overwrite) or remove labels\n"
    "  logs POD [-c CONTAINER] [-f] [--tail-bytes N]\n"
    "                             a container's log (-f: follow it)\n"
    "  exec POD [-c CONTAINER] -- COMMAND [ARG...]\n"
    "                             run a command in a container; exits with its code\n"
    "  scale rc/NAME --replicas=N [--current-replicas=M]\n"
    "                             set a ReplicationController's replicas\n"
    "  version                    client and server versions (--client: client only)\n"
    "  plan -f FILE [-o wide|json|yaml]\n"
    "                             where the scheduler would put the pods of a manifest\n"
    "                             (Pods, ReplicationControllers' replicas); writes nothing\n"
    "\n"
    "Cluster administration:\n"
    "  admin init --dir DIR --masters m1=HOST:PORT,...\n"
    "                             create the CA, master and admin certificates and\n"
    "                             DIR/admin.conf\n"
    "  admin issue --dir DIR --cn NAME [--org O] [--sans a,b] --cert FILE --key FILE\n"
    "                             issue a certificate signed by DIR/pki/ca\n"
    "  admin members [-o json]    the masters, their roles and applied indexes\n"
    "  admin manage-node NODE... [-l SELECTOR] --schedulable=false|true [--evacuate]\n"
    "                             mark nodes (un)schedulable; --evacuate deletes the pods\n"
    "                             bound to unschedulable nodes\n"
    "  admin token create [--ttl 24h] [--description TEXT]\n"
    "                             a bootstrap token for joining nodes (prints ID.SECRET;\n"
    "                             --ttl 0: never expires)\n"
    "  admin token list [-o json|yaml]\n"
    "                             the bootstrap tokens (never their secrets)\n"
    "  admin token delete ID...   revoke bootstrap tokens\n"
    "  master ...                 run a master peer\n"
    "  node ...                   run a node agent (aep node --help)\n"
    "  up ...                     run a local cluster\n"
    "\n"
    "Global flags:\n"
    "  --config FILE              client configuration (else $AEP_CONFIG, ~/.aep/config)\n"
    "  -n, --namespace NS         namespace (default \"default\")\n"
    "  -A, --all-namespaces       every namespace (get)\n"
    "  --show-labels              a LABELS column (get)\n"
    "  -s, --server ADDR[,ADDR]   masters to talk to, instead of the configuration's\n"
    "  --timeout DURATION         per call (\"30s\", \"500ms\", \"2m\"; default 30s)\n"
    "  -h, --help                 this text\n";

static void usage(FILE *f)
{
	fputs(usage_text, f);
}

/* ---- errors ------------------------------------------------------------------ */

static bool from_server(int code)
{
	switch (code) {
	case AEP_ENOTFOUND:
	case AEP_EEXISTS:
	case AEP_ECONFLICT:
	case AEP_EINVALID:
	case AEP_EBADREQUEST:
	case AEP_EFORBIDDEN:
	case AEP_EUNAUTHORIZED:
	case AEP_EEXPIRED:
	case AEP_ETOOLARGE:
	case AEP_ENOMETHOD:
	case AEP_ENOTLEADER: return true;
	default: return false;
	}
}

void cli__report(const struct aep_error *e)
{
	if (from_server(e->code))
		fprintf(stderr, "Error from server (%s): %s\n", aep_err_code(e->code), e->msg);
	else
		fprintf(stderr, "error: %s\n", e->msg[0] ? e->msg : aep_err_code(e->code));
}

/* A local error (bad flag, file): always "error: ...". */
static int local_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int local_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("error: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 1;
}

int cli__not_found(struct aep_error *e, const struct aep_kind_info *ki, const char *name)
{
	return aep_errorf(e, AEP_ENOTFOUND, "%s \"%s\" not found", ki->plural, name);
}

const struct aep_kind_info *cli__kind(const char *s, size_t len, struct aep_error *e)
{
	const struct aep_kind_info *ki = aep_kind_lookup(s, len);
	if (ki == NULL)
		aep_errorf(e, AEP_EINVALID, "the server doesn't have a resource type \"%.*s\"",
			   (int)len, s);
	return ki;
}

json_t *cli__json_member_object(json_t *obj, const char *key)
{
	json_t *m = json_object_get(obj, key);
	if (json_is_object(m))
		return m;
	m = json_object();
	if (m == NULL || json_object_set_new(obj, key, m) != 0)
		return NULL;
	return m;
}

enum cli__mod cli__modify(struct cli *c, const struct aep_kind_info *ki, const char *ns,
			  const char *name, enum cli__mod (*fn)(json_t *obj, void *data),
			  void *data)
{
	struct aep_error e = {0};
	for (int attempt = 0;; attempt++) {
		struct cli__reply r;
		json_t *params = json_pack("{s:s, s:s}", "kind", ki->name, "name", name);
		if (params != NULL && ki->namespaced)
			json_object_set_new(params, "namespace", json_string(ns ? ns : "default"));
		if (cli__call(c, "get", params, &r, &e) != 0)
			goto fail;
		json_t *obj = cli__mp_to_json(&r.obj);
		cli__reply_free(&r);
		if (obj == NULL) {
			fprintf(stderr, "error: out of memory\n");
			return CLI__FAIL;
		}
		enum cli__mod what = fn(obj, data);
		if (what != CLI__WRITE) {
			json_decref(obj);
			return what;
		}
		/* obj still carries the resourceVersion it was read at */
		int rv = cli__call(c, "update", json_pack("{s:o}", "object", obj), &r, &e);
		if (rv == AEP_ECONFLICT && attempt < CLI__CONFLICT_RETRIES)
			continue;
		if (rv != 0)
			goto fail;
		cli__reply_free(&r);
		return CLI__WRITE;
	}
fail:
	if (e.code == AEP_ENOTFOUND)
		cli__not_found(&e, ki, name);
	cli__report(&e);
	return CLI__FAIL;
}

const char *cli__namespace(const struct cli *c, const struct aep_kind_info *ki)
{
	if (!ki->namespaced || c->o.all_ns)
		return NULL;
	return c->o.ns != NULL ? c->o.ns : "default";
}

/* ---- connection -------------------------------------------------------------- */

static void on_notify(void *data, const char *method, size_t method_len,
		      const msgpack_object *params)
{
	struct cli *c = data;
	if (c->on_notify_cb != NULL && (method_len != 5 || memcmp(method, "event", 5) != 0))
		c->on_notify_cb(c, method, method_len, params);
	if (c->on_event == NULL || method_len != 5 || memcmp(method, "event", 5) != 0 ||
	    params->type != MSGPACK_OBJECT_ARRAY)
		return;
	/* [2, "event", [ev, ...]]; tolerate [2, "event", [[ev, ...]]] too */
	const msgpack_object *list = params;
	if (list->via.array.size == 1 && list->via.array.ptr[0].type == MSGPACK_OBJECT_ARRAY)
		list = &list->via.array.ptr[0];
	for (uint32_t i = 0; i < list->via.array.size; i++) {
		if (list->via.array.ptr[i].type == MSGPACK_OBJECT_MAP)
			c->on_event(c, &list->via.array.ptr[i]);
	}
}

static void on_disconnect(void *data)
{
	struct cli *c = data;
	c->disconnected = true;
	if (c->on_event != NULL || c->on_notify_cb != NULL)
		uv_stop(&c->loop);
}

int cli__connect(struct cli *c, struct aep_error *e)
{
	if (c->client != NULL)
		return 0;
	if (!c->cfg_loaded) {
		int rv = aep_cli_config_load(c->o.config, &c->cfg, e);
		if (rv != 0)
			return rv;
		c->cfg_loaded = true;
	}
	if (c->tls == NULL) {
		int rv = aep_tls_client_new(c->cfg.ca, c->cfg.cert, c->cfg.key, &c->tls, e);
		if (rv != 0)
			return aep_error_prefix(e, "TLS client configuration");
	}
	if (!c->loop_ready) {
		if (uv_loop_init(&c->loop) != 0)
			return aep_errorf(e, AEP_EINTERNAL, "uv_loop_init failed");
		c->loop_ready = true;
	}
	struct aep_rpc_client_config cc = {
	    .servers = c->o.server ? c->o.server : c->cfg.servers,
	    .tls = c->tls,
	    .limits = NULL,
	    .connect_timeout_ms = c->o.timeout_ms < 5000 ? c->o.timeout_ms : 5000,
	    .on_notify = on_notify,
	    .on_disconnect = on_disconnect,
	    .data = c,
	};
	return aep_rpc_client_new(&c->loop, &cc, &c->client, e);
}

void cli__reply_free(struct cli__reply *r)
{
	aep_buf_free(&r->buf);
	if (r->zone_ready)
		msgpack_zone_destroy(&r->zone);
	memset(r, 0, sizeof(*r));
}

int cli__call_raw(struct cli *c, const char *method, const char *params, size_t len,
		  struct cli__reply *r, struct aep_error *e)
{
	memset(r, 0, sizeof(*r));
	int rv = cli__connect(c, e);
	if (rv != 0) {
		/* a local problem (configuration, TLS files): never mistaken for an
		 * answer such as NotFound */
		e->code = AEP_EIO;
		return AEP_EIO;
	}
	/* Unavailable (no leader yet, an election, a master going away) is
	 * retried with backoff for a few seconds within --timeout; c->retried
	 * tells the verbs that an earlier attempt may have taken effect. */
	int64_t start_ms = aep_now_monotonic_ns() / 1000000;
	int64_t budget = c->o.timeout_ms < RETRY_BUDGET_MS ? c->o.timeout_ms : RETRY_BUDGET_MS;
	unsigned delay = 100;
	c->retried = false;
	for (;;) {
		int64_t left =
		    (int64_t)c->o.timeout_ms - (aep_now_monotonic_ns() / 1000000 - start_ms);
		c->disconnected = false;
		aep_buf_reset(&r->buf);
		rv = aep_rpc_call_sync(&c->loop, c->client, method, params, len,
				       left > 1 ? (unsigned)left : 1, &r->buf, e);
		if (rv != AEP_EUNAVAILABLE ||
		    aep_now_monotonic_ns() / 1000000 - start_ms + delay > budget)
			break;
		uv_sleep(delay);
		delay = delay * 2 > 1000 ? 1000 : delay * 2;
		c->retried = true;
	}
	if (rv != 0) {
		if (e->code == 0)
			aep_errorf(e, rv, "%s failed", method);
		aep_buf_free(&r->buf);
		return rv;
	}
	msgpack_zone_init(&r->zone, 4096);
	r->zone_ready = true;
	rv = aep_mp_unpack(r->buf.data, r->buf.len, &r->zone, &r->obj, e);
	if (rv != 0)
		cli__reply_free(r);
	return rv;
}

int cli__call(struct cli *c, const char *method, json_t *params, struct cli__reply *r,
	      struct aep_error *e)
{
	memset(r, 0, sizeof(*r));
	if (params == NULL)
		return aep_errorf(e, AEP_ENOMEM, "out of memory");
	struct aep_buf b;
	aep_buf_init(&b);
	msgpack_packer pk;
	aep_packer_init(&pk, &b);
	cli__json_pack(&pk, params);
	json_decref(params);
	int rv = b.failed ? aep_errorf(e, AEP_ENOMEM, "out of memory")
			  : cli__call_raw(c, method, b.data, b.len, r, e);
	aep_buf_free(&b);
	return rv;
}

void cli__run(struct cli *c)
{
	if (c->loop_ready && !c->disconnected)
		uv_run(&c->loop, UV_RUN_DEFAULT);
}

static void client_closed(void *data)
{
	*(bool *)data = true;
}

static void cli_close(struct cli *c)
{
	if (c->client != NULL) {
		bool closed = false;
		c->on_event = NULL;
		aep_rpc_client_close(c->client, client_closed, &closed);
		while (!closed && uv_run(&c->loop, UV_RUN_ONCE) != 0)
			;
		c->client = NULL;
	}
	if (c->loop_ready) {
		uv_run(&c->loop, UV_RUN_DEFAULT);
		uv_loop_close(&c->loop);
		c->loop_ready = false;
	}
	aep_tls_free(c->tls);
	c->tls = NULL;
	aep_cli_config_free(&c->cfg);
}

/* ---- flags ------------------------------------------------------------------- */

/* A --timeout: "30s", "500ms", "2m", "1h" or plain seconds; 0 means the
 * default; at most a day. */
static bool parse_duration(const char *s, unsigned *ms)
{
	struct aep_error e = {0};
	int64_t v;
	if (aep_parse_duration(s, "--timeout", 0, 86400000, &v, &e) != 0)
		return false;
	*ms = (unsigned)v;
	return true;
}

struct flag {
	const char *lng;
	char shrt;
	bool has_value;
	int id;
};

enum {
	F_CONFIG,
	F_NS,
	F_SERVER,
	F_OUTPUT,
	F_SELECTOR,
	F_FILE,
	F_ALL,
	F_WATCH,
	F_STALE,
	F_OVERWRITE,
	F_TIMEOUT,
	F_HELP,
	F_DIR,
	F_MASTERS,
	F_CLIENT,
	F_CN,
	F_ORG,
	F_SANS,
	F_CERT,
	F_KEY,
	F_SHOW_LABELS,
	F_SCHEDULABLE,
	F_EVACUATE,
	F_TTL,
	F_DESCRIPTION,
	F_CONTAINER,
	F_FOLLOW,
	F_TAIL_BYTES,
	F_REPLICAS,
	F_CURRENT_REPLICAS
};

static const struct flag flags[] = {
    {"config", 0, true, F_CONFIG},
    {"kubeconfig", 0, true, F_CONFIG},
    {"namespace", 'n', true, F_NS},
    {"server", 's', true, F_SERVER},
    {"output", 'o', true, F_OUTPUT},
    {"selector", 'l', true, F_SELECTOR},
    {"filename", 'f', true, F_FILE},
    {"all-namespaces", 'A', false, F_ALL},
    {"watch", 'w', false, F_WATCH},
    {"stale", 0, false, F_STALE},
    {"overwrite", 0, false, F_OVERWRITE},
    {"timeout", 0, true, F_TIMEOUT},
    {"request-timeout", 0, true, F_TIMEOUT},
    {"help", 'h', false, F_HELP},
    {"dir", 0, true, F_DIR},
    {"masters", 0, true, F_MASTERS},
    {"client", 0, false, F_CLIENT},
    {"cn", 0, true, F_CN},
    {"org", 0, true, F_ORG},
    {"sans", 0, true, F_SANS},
    {"cert", 0, true, F_CERT},
    {"key", 0, true, F_KEY},
    {"show-labels", 0, false, F_SHOW_LABELS},
    {"schedulable", 0, false, F_SCHEDULABLE},
    {"evacuate", 0, false, F_EVACUATE},
    {"ttl", 0, true, F_TTL},
    {"description", 0, true, F_DESCRIPTION},
    {"container", 'c', true, F_CONTAINER},
    {"follow", 0, false, F_FOLLOW},
    {"tail-bytes", 0, true, F_TAIL_BYTES},
    {"replicas", 0, true, F_REPLICAS},
    {"current-replicas", 0, true, F_CURRENT_REPLICAS},
};

/* logs -f is --follow (kubectl), not --filename */
static const struct flag follow_short = {"follow", 'f', false, F_FOLLOW};

static int set_flag(struct cli__opts *o, int id, const char *v, bool *help)
{
	switch (id) {
	case F_CONFIG: o->config = v; break;
	case F_NS: o->ns = v; break;
	case F_SERVER: o->server = v; break;
	case F_OUTPUT: o->output = v; break;
	case F_SELECTOR: o->selector = v; break;
	case F_FILE:
		if (o->nfiles == MAX_FILES)
			return local_error("at most %d -f flags", MAX_FILES);
		o->files[o->nfiles++] = v;
		break;
	case F_ALL: o->all_ns = true; break;
	case F_WATCH: o->watch = true; break;
	case F_STALE: o->stale = true; break;
	case F_OVERWRITE: o->overwrite = true; break;
	case F_TIMEOUT:
		if (!parse_duration(v, &o->timeout_ms))
			return local_error("invalid --timeout \"%s\": use e.g. 30s, 500ms, 2m", v);
		if (o->timeout_ms == 0)
			o->timeout_ms = DEFAULT_TIMEOUT_MS;
		break;
	case F_HELP: *help = true; break;
	case F_DIR: o->dir = v; break;
	case F_MASTERS: o->masters = v; break;
	case F_CLIENT: o->client_only = true; break;
	case F_CN: o->cn = v; break;
	case F_ORG: o->org = v; break;
	case F_SANS: o->sans = v; break;
	case F_CERT: o->cert = v; break;
	case F_KEY: o->key = v; break;
	case F_SHOW_LABELS: o->show_labels = true; break;
	case F_SCHEDULABLE:
		/* a boolean with an optional value (pflag): --schedulable is true */
		if (v == NULL || strcmp(v, "true") == 0 || strcmp(v, "True") == 0 ||
		    strcmp(v, "TRUE") == 0 || strcmp(v, "t") == 0 || strcmp(v, "1") == 0)
			o->schedulable = true;
		else if (strcmp(v, "false") == 0 || strcmp(v, "False") == 0 ||
			 strcmp(v, "FALSE") == 0 || strcmp(v, "f") == 0 || strcmp(v, "0") == 0)
			o->schedulable = false;
		else
			return local_error("invalid argument \"%s\" for --schedulable: use "
					   "--schedulable=true or --schedulable=false",
					   v);
		o->schedulable_set = true;
		break;
	case F_EVACUATE: o->evacuate = true; break;
	case F_TTL: o->ttl = v; break;
	case F_DESCRIPTION: o->description = v; break;
	case F_CONTAINER: o->container = v; break;
	case F_FOLLOW: o->follow = true; break;
	case F_TAIL_BYTES: o->tail_bytes = v; break;
	case F_REPLICAS: o->replicas = v; break;
	case F_CURRENT_REPLICAS: o->current_replicas = v; break;
	}
	return 0;
}

/* Split argv into flags and positionals (argv[0] is the program). */
static int parse_args(int argc, char **argv, struct cli__opts *o, bool *help)
{
	o->timeout_ms = DEFAULT_TIMEOUT_MS;
	o->dashdash = -1;
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			o->dashdash = (long)o->nargs;
			for (i++; i < argc; i++)
				o->args[o->nargs++] = argv[i];
			break;
		}
		if (a[0] != '-' || a[1] == '\0') {
			o->args[o->nargs++] = a;
			continue;
		}
		const struct flag *f = NULL;
		const char *value = NULL;
		if (a[1] == '-') {
			const char *name = a + 2;
			const char *eq = strchr(name, '=');
			size_t n = eq ? (size_t)(eq - name) : strlen(name);
			for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++) {
				if (strlen(flags[k].lng) == n && memcmp(flags[k].lng, name, n) == 0)
					f = &flags[k];
			}
			if (f == NULL)
				return local_error("unknown flag: --%.*s", (int)n, name);
			if (f->id == F_SCHEDULABLE) {
				/* the one boolean whose "=false" means something */
				if (set_flag(o, f->id, eq ? eq + 1 : NULL, help) != 0)
					return 1;
				continue;
			}
			if (eq != NULL) {
				if (!f->has_value) {
					if (strcmp(eq + 1, "true") == 0)
						eq = NULL;
					else if (strcmp(eq + 1, "false") == 0)
						continue;
					else
						return local_error("flag --%s takes no value",
								   f->lng);
				} else {
					value = eq + 1;
				}
			}
		} else {
			/* short flags: -n NS, -nNS, -oyaml, -Aw */
			for (const char *p = a + 1; *p != '\0'; p++) {
				f = NULL;
				for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++) {
					if (flags[k].shrt == *p)
						f = &flags[k];
				}
				if (*p == 'f' && o->nargs > 0 && strcmp(o->args[0], "logs") == 0)
					f = &follow_short;
				if (f == NULL)
					return local_error("unknown shorthand flag: '%c' in %s", *p,
							   a);
				if (f->has_value) {
					if (p[1] != '\0')
						value = p[1] == '=' ? p + 2 : p + 1;
					break;
				}
				if (p[1] != '\0' && set_flag(o, f->id, NULL, help) != 0)
					return 1;
			}
		}
		if (f->has_value && value == NULL) {
			if (i + 1 >= argc)
				return local_error("flag needs an argument: %s", a);
			value = argv[++i];
		}
		if (set_flag(o, f->id, value, help) != 0)
			return 1;
	}
	return 0;
}

/* aep admin: "token" is token.c's, the rest admin.c's. */
static int cmd_admin(struct cli *c)
{
	if (c->o.nargs == 0 || strcmp(c->o.args[0], "token") != 0)
		return cli__cmd_admin(c);
	c->o.args++;
	c->o.nargs--;
	int rv = cli__cmd_token(c);
	c->o.args--;
	c->o.nargs++;
	return rv;
}

int aep_cli_main(int argc, char **argv)
{
	struct cli c;
	memset(&c, 0, sizeof(c));
	if (argc < 1)
		return 1;
	if (argc >= 2 && strcmp(argv[1], "up") == 0)
		return aep_cli_up(argc - 1, argv + 1); /* its flags are its own */
	/* the positionals and -f files are at most argc each */
	c.o.args = aep_calloc((size_t)argc, sizeof(char *));
	c.o.files = aep_calloc(MAX_FILES, sizeof(char *));
	if (c.o.args == NULL || c.o.files == NULL) {
		aep_free(c.o.args);
		aep_free((void *)c.o.files);
		return local_error("out of memory");
	}
	bool help = false;
	/* a closed pipe (aep get -w | head) is an error on write, not a signal;
	 * the same for a master that goes away mid-write */
	signal(SIGPIPE, SIG_IGN);
	int rv = parse_args(argc, argv, &c.o, &help);
	if (rv != 0)
		goto out;
	if (c.o.nargs == 0 || help || strcmp(c.o.args[0], "help") == 0) {
		usage(stdout);
		rv = 0;
		goto out;
	}
	const char *verb = c.o.args[0];
	c.o.args++;
	c.o.nargs--;
	if (c.o.output != NULL && strcmp(c.o.output, "wide") != 0 &&
	    strcmp(c.o.output, "yaml") != 0 && strcmp(c.o.output, "json") != 0 &&
	    strcmp(c.o.output, "name") != 0) {
		rv = local_error("unable to match a printer suitable for the output format "
				 "\"%s\", allowed formats are: json,name,wide,yaml",
				 c.o.output);
		c.o.args--;
		goto out;
	}
	static const struct {
		const char *name;
		int (*fn)(struct cli *c);
	} verbs[] = {
	    {"get", cli__cmd_get},	     {"create", cli__cmd_create},
	    {"apply", cli__cmd_apply},	     {"delete", cli__cmd_delete},
	    {"describe", cli__cmd_describe}, {"label", cli__cmd_label},
	    {"version", cli__cmd_version},   {"admin", cmd_admin},
	    {"plan", cli__cmd_plan},	     {"logs", cli__cmd_logs},
	    {"exec", cli__cmd_exec},	     {"scale", cli__cmd_scale},
	};
	rv = -1;
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strcmp(verbs[i].name, verb) == 0) {
			rv = verbs[i].fn(&c);
			break;
		}
	}
	if (rv == -1) {
		fprintf(stderr,
			"error: unknown command \"%s\" for \"aep\"\n"
			"Run 'aep help' for usage.\n",
			verb);
		rv = 1;
	}
	c.o.args--;
out:
	fflush(stdout);
	cli_close(&c);
	aep_free(c.o.args);
	aep_free((void *)c.o.files);
	return rv;
}
