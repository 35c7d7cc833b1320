/* aep admin token create|list|delete: bootstrap tokens for joining nodes
 * (docs/NODES.md, "Joining").
 *
 * A token "ID.SECRET" (6 and 16 characters of [a-z0-9], from OpenSSL's
 * generator) is the Secret kube-system/bootstrap-token-ID of type
 * aep.io/bootstrap-token with data {token-id, token-secret, expiration,
 * usage-join, description}; the leader checks it when a node calls join.
 * create prints the token once: list shows IDs, expiry and descriptions,
 * never secrets; delete revokes. Flags are checked before anything is
 * sent, so bad input changes nothing. */
#include "cli/cli.h"
#include "cli/internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#define TOKEN_NS	  "kube-system"
#define TOKEN_TYPE	  "aep.io/bootstrap-token"
#define TOKEN_PREFIX	  "bootstrap-token-"
#define TOKEN_ID_LEN	  6
#define TOKEN_SECRET_LEN  16
#define TOKEN_TTL_DEFAULT "24h"
#define TOKEN_TTL_MAX_S	  (10LL * 366 * 86400) /* ten years */
#define DESCRIPTION_MAX	  1024
#define CREATE_ATTEMPTS	  3

/* A duration "24h", "1h30m", "90s", "7d" or plain seconds ("0": never
 * expires) in seconds, at most TOKEN_TTL_MAX_S. */
static bool parse_ttl(const char *s, int64_t *out)
{
	struct aep_error e = {0};
	int64_t ms;
	if (aep_parse_duration(s, "--ttl", 0, (int64_t)TOKEN_TTL_MAX_S * 1000, &ms, &e) != 0)
		return false;
	*out = ms / 1000;
	return true;
}

/* @n characters of [a-z0-9], uniformly (rejection sampling), into @out. */
static int random_chars(char *out, size_t n, struct aep_error *e)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char buf[64];
	size_t have = 0;
	while (have < n) {
		if (RAND_bytes(buf, sizeof(buf)) != 1)
			return aep_errorf(e, AEP_EINTERNAL, "no random bytes from OpenSSL");
		for (size_t i = 0; i < sizeof(buf) && have < n; i++) {
			if (buf[i] < 252) /* 252 = 7 * 36: no bias */
				out[have++] = alphabet[buf[i] % 36];
		}
	}
	out[n] = '\0';
	return 0;
}

static bool id_ok(const char *s, size_t n)
{
	if (n != TOKEN_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
			return false;
	}
	return true;
}

static json_t *token_secret(const char *id, const char *secret, const char *expiration,
			    const char *description)
{
	json_t *data = json_pack("{s:s, s:s, s:s}", "token-id", id, "token-secret", secret,
				 "usage-join", "true");
	if (data == NULL)
		return NULL;
	if ((expiration != NULL &&
	     json_object_set_new(data, "expiration", json_string(expiration)) != 0) ||
	    (description != NULL && *description != '\0' &&
	     json_object_set_new(data, "description", json_string(description)) != 0)) {
		json_decref(data);
		return NULL;
	}
	char name[64];
	snprintf(name, sizeof(name), TOKEN_PREFIX "%s", id);
	return json_pack("{s:{s:s, s:s, s:{s:s, s:s}, s:s, s:o}}", "object", "apiVersion", "v1",
			 "kind", "Secret", "metadata", "name", name, "namespace", TOKEN_NS, "type",
			 TOKEN_TYPE, "data", data);
}

/* After a retried create answered AlreadyExists: did the first attempt
 * store this very token? */
static bool stored_is_ours(struct cli *c, const char *id, const char *secret)
{
	char name[64], got[TOKEN_SECRET_LEN + 8];
	struct aep_error e = {0};
	struct cli__reply r;
	snprintf(name, sizeof(name), TOKEN_PREFIX "%s", id);
	if (cli__call(
		c, "get",
		json_pack("{s:s, s:s, s:s}", "kind", "Secret", "namespace", TOKEN_NS, "name", name),
		&r, &e) != 0)
		return false;
	bool ours =
	    strcmp(cli__mp_str(&r.obj, "data.token-secret", got, sizeof(got), ""), secret) == 0;
	cli__reply_free(&r);
	return ours;
}

static int token_create(struct cli *c)
{
	if (c->o.nargs != 0) {
		fprintf(stderr, "error: usage: aep admin token create [--ttl 24h] "
				"[--description TEXT]\n");
		return 1;
	}
	int64_t ttl;
	const char *ttl_text = c->o.ttl ? c->o.ttl : TOKEN_TTL_DEFAULT;
	if (!parse_ttl(ttl_text, &ttl)) {
		fprintf(stderr,
			"error: invalid --ttl \"%s\": use e.g. 24h, 1h30m, 90s, 7d (at most ten "
			"years), or 0 for a token that never expires\n",
			ttl_text);
		return 1;
	}
	const char *desc = c->o.description;
	if (desc != NULL && strlen(desc) > DESCRIPTION_MAX) {
		fprintf(stderr, "error: --description: at most %d bytes\n", DESCRIPTION_MAX);
		return 1;
	}
	json_t *probe = desc != NULL ? json_string(desc) : NULL; /* NULL: not UTF-8 */
	if (desc != NULL && probe == NULL) {
		fprintf(stderr, "error: --description: must be valid UTF-8 text\n");
		return 1;
	}
	json_decref(probe);
	char expiration[40];
	if (ttl > 0)
		aep_time_format((aep_now_realtime_ns() / 1000000000 + ttl) * 1000000000, expiration,
				sizeof(expiration));
	struct aep_error e = {0};
	char id[TOKEN_ID_LEN + 1], secret[TOKEN_SECRET_LEN + 1];
	for (int attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
		if (random_chars(id, TOKEN_ID_LEN, &e) != 0 ||
		    random_chars(secret, TOKEN_SECRET_LEN, &e) != 0) {
			cli__report(&e);
			return 1;
		}
		struct cli__reply r;
		int rv =
		    cli__call(c, "create",
			      token_secret(id, secret, ttl > 0 ? expiration : NULL, desc), &r, &e);
		if (rv == 0) {
			cli__reply_free(&r);
			printf("%s.%s\n", id, secret);
			return 0;
		}
		if (rv == AEP_EEXISTS && c->retried && stored_is_ours(c, id, secret)) {
			printf("%s.%s\n", id, secret);
			return 0;
		}
		if (rv != AEP_EEXISTS)
			break; /* AlreadyExists: that ID is taken; draw another */
	}
	cli__report(&e);
	return 1;
}

/* One row of the list, from a Secret of type aep.io/bootstrap-token. */
struct token_row {
	char id[64];
	char expires[64];
	char desc[DESCRIPTION_MAX + 1];
	bool join;
};

static void token_row(const msgpack_object *o, struct token_row *t)
{
	char name[300], join[16], buf[DESCRIPTION_MAX + 1];
	/* cli__mp_str returns the default without touching the buffer */
	const char *n = cli__mp_str(o, "metadata.name", name, sizeof(name), "");
	if (strncmp(n, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) == 0)
		n += strlen(TOKEN_PREFIX);
	snprintf(t->id, sizeof(t->id), "%s", cli__mp_str(o, "data.token-id", buf, sizeof(buf), n));
	snprintf(t->expires, sizeof(t->expires), "%s",
		 cli__mp_str(o, "data.expiration", buf, sizeof(buf), ""));
	snprintf(t->desc, sizeof(t->desc), "%s",
		 cli__mp_str(o, "data.description", buf, sizeof(buf), ""));
	t->join = strcmp(cli__mp_str(o, "data.usage-join", join, sizeof(join), ""), "true") == 0;
}

static int print_structured(struct cli *c, json_t *list)
{
	struct aep_buf b;
	msgpack_packer pk;
	msgpack_zone z;
	msgpack_object o;
	struct aep_error e = {0};
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	cli__json_pack(&pk, list);
	int rv = 1;
	msgpack_zone_init(&z, 4096);
	if (!b.failed && aep_mp_unpack(b.data, b.len, &z, &o, &e) == 0)
		rv = strcmp(c->o.output, "json") == 0 ? aep_print_json(stdout, &o)
						      : aep_print_yaml(stdout, &o);
	else
		fprintf(stderr, "error: out of memory\n");
	msgpack_zone_destroy(&z);
	aep_buf_free(&b);
	return rv != 0;
}

static int token_list(struct cli *c)
{
	if (c->o.nargs != 0) {
		fprintf(stderr, "error: usage: aep admin token list [-o json|yaml|name]\n");
		return 1;
	}
	struct aep_error e = {0};
	struct cli__reply r;
	if (cli__call(c, "list", json_pack("{s:s, s:s}", "kind", "Secret", "namespace", TOKEN_NS),
		      &r, &e) != 0) {
		cli__report(&e);
		return 1;
	}
	const msgpack_object *items = cli__mp_path(&r.obj, "items");
	if (items == NULL || items->type != MSGPACK_OBJECT_ARRAY) {
		cli__reply_free(&r);
		fprintf(stderr, "error: list: unexpected answer from the server\n");
		return 1;
	}
	const char *out = c->o.output;
	bool structured = out != NULL && (strcmp(out, "json") == 0 || strcmp(out, "yaml") == 0);
	bool names = out != NULL && strcmp(out, "name") == 0;
	int64_t now_s = aep_now_realtime_ns() / 1000000000;
	json_t *list = json_array();
	struct cli__table t;
	cli__table_init(&t, 5);
	static const char *const hdr[] = {"ID", "TTL", "EXPIRES", "USAGES", "DESCRIPTION"};
	int status = cli__table_add(&t, hdr) != 0 || list == NULL;
	size_t n = 0;
	struct token_row row;
	for (uint32_t i = 0; i < items->via.array.size && status == 0; i++) {
		const msgpack_object *o = &items->via.array.ptr[i];
		char type[64];
		if (strcmp(cli__mp_str(o, "type", type, sizeof(type), ""), TOKEN_TYPE) != 0)
			continue;
		token_row(o, &row);
		n++;
		char ttl[32];
		int64_t at;
		if (row.expires[0] == '\0')
			snprintf(ttl, sizeof(ttl), "<forever>");
		else if (!cli__parse_time(row.expires, &at))
			snprintf(ttl, sizeof(ttl), "<unknown>");
		else if (at <= now_s)
			snprintf(ttl, sizeof(ttl), "<expired>");
		else
			cli__format_duration(at - now_s, ttl, sizeof(ttl));
		const char *cells[] = {row.id, ttl, row.expires[0] ? row.expires : "<never>",
				       row.join ? "join" : "<none>",
				       row.desc[0] ? row.desc : "<none>"};
		if (names)
			printf("%s\n", row.id);
		json_t *j = json_pack("{s:s, s:s*, s:[], s:s*}", "id", row.id, "expiration",
				      row.expires[0] ? row.expires : NULL, "usages", "description",
				      row.desc[0] ? row.desc : NULL);
		if (j != NULL && row.join)
			json_array_append_new(json_object_get(j, "usages"), json_string("join"));
		if (j == NULL || json_array_append_new(list, j) != 0 ||
		    cli__table_add(&t, cells) != 0)
			status = 1;
	}
	if (status != 0)
		fprintf(stderr, "error: out of memory\n");
	else if (structured)
		status = print_structured(c, list);
	else if (n == 0)
		fprintf(stderr, "No bootstrap tokens found.\n");
	else if (!names)
		cli__table_print(stdout, &t);
	cli__table_free(&t);
	json_decref(list);
	cli__reply_free(&r);
	return status;
}

static int token_delete(struct cli *c)
{
	if (c->o.nargs == 0) {
		fprintf(stderr, "error: usage: aep admin token delete ID...\n");
		return 1;
	}
	/* Every argument is checked before anything is deleted. */
	for (size_t i = 0; i < c->o.nargs; i++) {
		const char *a = c->o.args[i];
		const char *dot = strchr(a, '.');
		if (!id_ok(a, dot ? (size_t)(dot - a) : strlen(a))) {
			fprintf(stderr,
				"error: \"%s\": a token ID is 6 characters of [a-z0-9] (or give "
				"the whole token ID.SECRET)\n",
				a);
			return 1;
		}
	}
	int status = 0;
	for (size_t i = 0; i < c->o.nargs; i++) {
		char id[TOKEN_ID_LEN + 1], name[64];
		memcpy(id, c->o.args[i], TOKEN_ID_LEN);
		id[TOKEN_ID_LEN] = '\0';
		snprintf(name, sizeof(name), TOKEN_PREFIX "%s", id);
		struct aep_error e = {0};
		struct cli__reply r;
		int rv = cli__call(c, "delete",
				   json_pack("{s:s, s:s, s:s}", "kind", "Secret", "namespace",
					     TOKEN_NS, "name", name),
				   &r, &e);
		if (rv == 0) {
			cli__reply_free(&r);
			printf("bootstrap token \"%s\" deleted\n", id);
		} else if (rv == AEP_ENOTFOUND && c->retried) {
			printf("bootstrap token \"%s\" deleted\n", id); /* by the first attempt */
		} else {
			if (rv == AEP_ENOTFOUND)
				aep_errorf(&e, AEP_ENOTFOUND, "bootstrap token \"%s\" not found",
					   id);
			cli__report(&e);
			status = 1;
		}
	}
	return status;
}

int cli__cmd_token(struct cli *c)
{
	if (c->o.nargs == 0) {
		fprintf(stderr, "error: usage: aep admin token create|list|delete ...\n");
		return 1;
	}
	const char *sub = c->o.args[0];
	c->o.args++;
	c->o.nargs--;
	int rv;
	if (strcmp(sub, "create") == 0) {
		rv = token_create(c);
	} else if (strcmp(sub, "list") == 0) {
		rv = token_list(c);
	} else if (strcmp(sub, "delete") == 0) {
		rv = token_delete(c);
	} else {
		fprintf(stderr, "error: unknown command \"%s\" for \"aep admin token\"\n", sub);
		rv = 1;
	}
	c->o.args--;
	c->o.nargs++;
	return rv;
}
