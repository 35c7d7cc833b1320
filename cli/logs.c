/* aep logs and aep exec: a pod's container log, and a command run in it,
 * relayed by the leader from the pod's node agent (docs/NODES.md).
 *
 *	aep logs POD [-c CONTAINER] [-f] [--tail-bytes N]
 *	aep exec POD [-c CONTAINER] -- COMMAND [ARG...]
 *
 * logs calls `logs {namespace, name, container?, tailBytes?}` and writes
 * the answer's data to stdout. With -f (--follow) the call carries
 * follow: true; the master answers {} and then sends notifications
 * [2, "log", [{data}]] until [2, "log.end", [{error?}]]; each chunk is
 * written (and flushed) as it comes. A stream that ends with an error, or
 * a connection that breaks, exits 1 with the reason on stderr.
 *
 * exec calls `exec {namespace, name, container?, command}` and writes the
 * answer's stdout and stderr to ours; the exit code is the command's
 * (kubectl's behaviour), 1 for any error from the masters.
 *
 * A pod with several containers needs -c; the masters name the choices. */
#include "cli/cli.h"
#include "cli/internal.h"

#include <string.h>

/* Write a str or bin value's bytes to @f. */
static void write_bytes(FILE *f, const msgpack_object *v)
{
	if (v == NULL)
		return;
	if (v->type == MSGPACK_OBJECT_BIN)
		fwrite(v->via.bin.ptr, 1, v->via.bin.size, f);
	else if (v->type == MSGPACK_OBJECT_STR)
		fwrite(v->via.str.ptr, 1, v->via.str.size, f);
}

struct follow {
	bool running; /* the loop runs for the stream (the call has been answered) */
	bool done;
	int status;
};

static void on_log(struct cli *c, const char *method, size_t method_len,
		   const msgpack_object *params)
{
	struct follow *fl = c->event_data;
	const msgpack_object *p = NULL;
	if (params->type == MSGPACK_OBJECT_ARRAY && params->via.array.size == 1)
		p = &params->via.array.ptr[0];
	if (method_len == 3 && memcmp(method, "log", 3) == 0) {
		write_bytes(stdout, aep_mp_map_get(p, "data"));
		fflush(stdout);
		return;
	}
	if (method_len != 7 || memcmp(method, "log.end", 7) != 0)
		return;
	const msgpack_object *err = aep_mp_map_get(p, "error");
	if (err != NULL && err->type == MSGPACK_OBJECT_STR) {
		fprintf(stderr, "error: %.*s\n", (int)err->via.str.size, err->via.str.ptr);
		fl->status = 1;
	}
	fl->done = true;
	if (fl->running)
		uv_stop(&c->loop);
}

/* The pod name: the one positional before "--" (logs: the only one). */
static int pod_arg(struct cli *c, const char *verb, size_t npos, const char **pod)
{
	if (npos != 1) {
		fprintf(stderr, "error: %s\n",
			npos == 0 ? "a pod name is required" : "exactly one pod name is expected");
		fprintf(stderr, "usage: %s\n",
			strcmp(verb, "logs") == 0
			    ? "aep logs POD [-c CONTAINER] [-f] [--tail-bytes N]"
			    : "aep exec POD [-c CONTAINER] -- COMMAND [ARG...]");
		return 1;
	}
	*pod = c->o.args[0];
	return 0;
}

int cli__cmd_logs(struct cli *c)
{
	const struct aep_kind_info *ki = aep_kind_info(AEP_KIND_POD);
	struct aep_error e = {0};
	struct cli__reply r;
	const char *pod;
	if (pod_arg(c, "logs", c->o.nargs, &pod) != 0)
		return 1;
	json_t *p = json_pack("{s:s, s:s}", "namespace", cli__namespace(c, ki), "name", pod);
	if (p != NULL && c->o.container != NULL)
		json_object_set_new(p, "container", json_string(c->o.container));
	if (p != NULL && c->o.tail_bytes != NULL) {
		unsigned long long n;
		if (aep_parse_uint(c->o.tail_bytes, "--tail-bytes", 0, 1u << 20, &n, &e) != 0) {
			json_decref(p);
			fprintf(stderr, "error: %s\n", e.msg);
			return 1;
		}
		json_object_set_new(p, "tailBytes", json_integer((json_int_t)n));
	}
	if (!c->o.follow) {
		if (cli__call(c, "logs", p, &r, &e) != 0) {
			cli__report(&e);
			return 1;
		}
		write_bytes(stdout, aep_mp_map_get(&r.obj, "data"));
		cli__reply_free(&r);
		return 0;
	}
	struct follow fl = {.status = 0};
	if (p != NULL)
		json_object_set_new(p, "follow", json_true());
	c->on_notify_cb = on_log;
	c->event_data = &fl;
	/* --timeout bounds the call; the stream then lasts as long as it lasts */
	if (cli__call(c, "logs", p, &r, &e) != 0) {
		c->on_notify_cb = NULL;
		cli__report(&e);
		return 1;
	}
	cli__reply_free(&r);
	if (!fl.done) {
		fl.running = true;
		cli__run(c);
	}
	c->on_notify_cb = NULL;
	if (!fl.done) {
		fprintf(stderr, "error: lost the connection to the master; the log may go on\n");
		return 1;
	}
	return fl.status;
}

int cli__cmd_exec(struct cli *c)
{
	const struct aep_kind_info *ki = aep_kind_info(AEP_KIND_POD);
	struct aep_error e = {0};
	struct cli__reply r;
	const char *pod;
	if (c->o.dashdash < 0) {
		fprintf(stderr, "error: the command goes after \"--\": aep exec POD [-c CONTAINER] "
				"-- COMMAND [ARG...]\n");
		return 1;
	}
	size_t npos = (size_t)c->o.dashdash - 1; /* args[0] was the verb */
	if (pod_arg(c, "exec", npos, &pod) != 0)
		return 1;
	if (c->o.nargs <= npos) {
		fprintf(stderr, "error: a command is required after \"--\"\n");
		return 1;
	}
	json_t *cmd = json_array();
	for (size_t i = npos; cmd != NULL && i < c->o.nargs; i++)
		json_array_append_new(cmd, json_string(c->o.args[i]));
	json_t *p = json_pack("{s:s, s:s, s:o}", "namespace", cli__namespace(c, ki), "name", pod,
			      "command", cmd);
	if (p != NULL && c->o.container != NULL)
		json_object_set_new(p, "container", json_string(c->o.container));
	if (cli__call(c, "exec", p, &r, &e) != 0) {
		cli__report(&e);
		return 1;
	}
	write_bytes(stdout, aep_mp_map_get(&r.obj, "stdout"));
	fflush(stdout);
	write_bytes(stderr, aep_mp_map_get(&r.obj, "stderr"));
	int64_t code = cli__mp_int(&r.obj, "exitCode", 1);
	cli__reply_free(&r);
	return code < 0 || code > 255 ? 1 : (int)code;
}
