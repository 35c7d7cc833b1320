/* cli internals shared across the files of cli/ (not a face: only files in cli/
 * include it). Names are cli__x. */
#ifndef AEP_CLI_INTERNAL_H
#define AEP_CLI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <msgpack.h>
#include <uv.h>

#include "cli/cli.h"
#include "lib/lib.h"
#include "net/net.h"
#include "state/state.h"

/* ---- base64 (print.c) ---------------------------------------------------- */

/* Encode @len bytes as standard base64 (with padding) into a new heap
 * string (aep_free), or NULL when out of memory. */
char *cli__base64_encode(const char *data, size_t len);
/* Decode standard base64 (whitespace ignored) into a new heap buffer;
 * *@out_len its length. Returns 0, AEP_EINVALID for bad text, AEP_ENOMEM. */
int cli__base64_decode(const char *text, size_t len, char **out, size_t *out_len);

/* ---- msgpack -> jansson (print.c) ---------------------------------------- */

/* A new jansson value equal to @o (bin/ext as base64 strings, non-string
 * map keys in their printed form), or NULL when out of memory. */
json_t *cli__mp_to_json(const msgpack_object *o);

/* ---- reading msgpack maps (util.c) --------------------------------------- */

/* The value at a dotted @path ("metadata.name") in nested maps, or NULL. */
const msgpack_object *cli__mp_path(const msgpack_object *o, const char *path);
/* The string at @path copied into @buf (truncated to @size), or @dflt. */
const char *cli__mp_str(const msgpack_object *o, const char *path, char *buf, size_t size,
			const char *dflt);
/* The integer at @path (int, uint, or a decimal string), or @dflt. */
int64_t cli__mp_int(const msgpack_object *o, const char *path, int64_t dflt);
bool cli__mp_bool(const msgpack_object *o, const char *path, bool dflt);

/* Parse RFC 3339 UTC ("2026-11-27T23:28:38Z", fractional seconds allowed)
 * into Unix seconds. Returns false when @s is not such a time. */
bool cli__parse_time(const char *s, int64_t *out);
/* kubectl-style short age: "12s", "5m3s", "3h", "2d4h", "<unknown>". */
void cli__format_age(const msgpack_object *obj, int64_t now_s, char *buf, size_t size);
/* The same for a duration of @secs seconds (negative counts as 0). */
void cli__format_duration(int64_t secs, char *buf, size_t size);

/* ---- tables (table.c) ----------------------------------------------------- */

struct cli__table {
	size_t ncols;
	size_t nrows; /* rows of cells including the header */
	size_t cap;
	char **cells; /* nrows * ncols heap strings */
};

void cli__table_init(struct cli__table *t, size_t ncols);
/* Add a row of @t->ncols strings (copied). Returns 0 or AEP_ENOMEM. */
int cli__table_add(struct cli__table *t, const char *const *cells);
/* Print with columns padded to the widest cell plus 3 spaces (kubectl). */
void cli__table_print(FILE *f, const struct cli__table *t);
void cli__table_free(struct cli__table *t);

/* Options that change the columns of a table. */
struct cli__cols {
	bool wide;
	bool show_ns;
	int64_t now_s;
};

/* The header cells of @kind's table (a static array, *@n cells). */
const char *const *cli__table_header(int kind, const struct cli__cols *c, size_t *n);
/* Fill @cells (heap strings, freed by the caller with cli__cells_free) with
 * @obj's row. Returns the number of cells or a negative value on ENOMEM. */
int cli__table_row(int kind, const msgpack_object *obj, const struct cli__cols *c, char **cells,
		   size_t max);
void cli__cells_free(char **cells, size_t n);

/* ---- jansson -> msgpack (util.c) ----------------------------------------- */

/* Pack @j (integers as int, reals as float). */
void cli__json_pack(msgpack_packer *pk, const json_t *j);

/* ---- the running command (cmd.c) ------------------------------------------- */

#define CLI__VERSION "v0.1.0"

struct cli__opts {
	const char *config;
	const char *ns;
	const char *server;
	const char *output; /* NULL: table */
	const char *selector;
	const char *dir;
	const char *masters;
	const char *cn;
	const char *org;
	const char *sans;
	const char *cert;
	const char *key;
	const char *ttl;	      /* admin token create --ttl */
	const char *description;      /* admin token create --description */
	const char *container;	      /* logs, exec: -c */
	const char *tail_bytes;	      /* logs --tail-bytes */
	bool follow;		      /* logs -f */
	const char *replicas;	      /* scale --replicas */
	const char *current_replicas; /* scale --current-replicas */
	long dashdash;		      /* index in args (verb included) where "--" was; -1: none */
	const char **files;
	size_t nfiles;
	bool all_ns;
	bool watch;
	bool stale;
	bool overwrite;
	bool show_labels;
	bool client_only;
	bool schedulable_set; /* --schedulable[=true|false] was given */
	bool schedulable;
	bool evacuate;
	unsigned timeout_ms;
	char **args; /* positional arguments after the verb */
	size_t nargs;
};

struct cli;
typedef void (*cli__event_cb)(struct cli *c, const msgpack_object *event);

struct cli {
	struct cli__opts o;
	bool cfg_loaded;
	struct aep_cli_config cfg;
	bool loop_ready;
	uv_loop_t loop;
	struct aep_tls *tls;
	struct aep_rpc_client *client;
	cli__event_cb on_event; /* watch events, one map {watch, type, object} each */
	/* every other notification (logs -f: "log", "log.end"); @params is the
	 * whole params array */
	void (*on_notify_cb)(struct cli *c, const char *method, size_t method_len,
			     const msgpack_object *params);
	void *event_data;
	bool disconnected; /* the client lost its connection (watches are gone) */
	bool retried;	   /* the last call was retried after Unavailable */
};

/* A call's result: @obj points into @buf (keep the reply until done). */
struct cli__reply {
	struct aep_buf buf;
	msgpack_zone zone;
	bool zone_ready;
	msgpack_object obj;
};
void cli__reply_free(struct cli__reply *r);

/* Load the configuration and connect lazily (first call). */
int cli__connect(struct cli *c, struct aep_error *e);
/* Call @method with the map @params (a reference is stolen). On success
 * @r holds the result; on failure @e the error (server errors keep the
 * server's code). */
int cli__call(struct cli *c, const char *method, json_t *params, struct cli__reply *r,
	      struct aep_error *e);
/* The same with pre-encoded msgpack params. */
int cli__call_raw(struct cli *c, const char *method, const char *params, size_t len,
		  struct cli__reply *r, struct aep_error *e);
/* Run the loop until the connection drops or uv_stop (watches). */
void cli__run(struct cli *c);

/* Print @e to stderr like kubectl: "Error from server (NotFound): ..." for
 * errors the server sent, "error: ..." for local ones. */
void cli__report(const struct aep_error *e);
/* Fill @e with kubectl's NotFound message: pods "web" not found. */
int cli__not_found(struct aep_error *e, const struct aep_kind_info *ki, const char *name);
/* Read-modify-write of one object: read it, let @fn change the JSON in
 * place, and update it with the resourceVersion it was read at as a
 * precondition, reading again when the masters answer Conflict (a few
 * times). @fn answers CLI__WRITE (changed), CLI__SKIP (nothing to change:
 * no write) or CLI__FAIL (it printed an error). Returns CLI__WRITE once
 * written, CLI__SKIP, or CLI__FAIL after printing an error (NotFound as
 * kubectl says it). @ns is ignored for cluster-scoped kinds. */
enum cli__mod { CLI__WRITE, CLI__SKIP, CLI__FAIL };
/* @obj's member @key as an object, made (or made again, if it is not an
 * object) when needed; NULL only when out of memory. */
json_t *cli__json_member_object(json_t *obj, const char *key);
#define CLI__CONFLICT_RETRIES 5
enum cli__mod cli__modify(struct cli *c, const struct aep_kind_info *ki, const char *ns,
			  const char *name, enum cli__mod (*fn)(json_t *obj, void *data),
			  void *data);
/* The kind named by @s (Kind, plural, singular or short name), or NULL
 * with @e set to kubectl's "doesn't have a resource type" error. */
const struct aep_kind_info *cli__kind(const char *s, size_t len, struct aep_error *e);
/* The namespace to use for @ki: NULL for cluster-scoped kinds and for -A,
 * else -n or "default". */
const char *cli__namespace(const struct cli *c, const struct aep_kind_info *ki);

int cli__cmd_get(struct cli *c);
int cli__cmd_create(struct cli *c);
int cli__cmd_apply(struct cli *c);
int cli__cmd_delete(struct cli *c);
int cli__cmd_describe(struct cli *c);
int cli__cmd_label(struct cli *c);
int cli__cmd_version(struct cli *c);
int cli__cmd_admin(struct cli *c);
int cli__cmd_plan(struct cli *c);
/* aep logs POD [-c C] [-f] [--tail-bytes N], aep exec POD [-c C] -- CMD... (logs.c) */
int cli__cmd_logs(struct cli *c);
int cli__cmd_exec(struct cli *c);
/* aep admin token create|list|delete (token.c); args start after "token". */
int cli__cmd_token(struct cli *c);
/* aep scale rc/NAME --replicas=N [--current-replicas=M] (scale.c) */
int cli__cmd_scale(struct cli *c);

#endif /* AEP_CLI_INTERNAL_H */
