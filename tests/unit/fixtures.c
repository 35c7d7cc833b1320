/* Fixtures shared by the state/ unit tests: objects, commands, selectors
 * and snapshot comparisons, built with the public API only. */
#include "tests/unit/fixtures.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Pack "k=v,k2=v2" as a labels map. */
void fx_pack_labels(msgpack_packer *pk, const char *labels)
{
	char buf[512];
	char *keys[16], *vals[16];
	int n = 0;
	snprintf(buf, sizeof(buf), "%s", labels);
	for (char *tok = strtok(buf, ","); tok != NULL && n < 16; tok = strtok(NULL, ",")) {
		char *eq = strchr(tok, '=');
		assert_non_null(eq);
		*eq = '\0';
		keys[n] = tok;
		vals[n] = eq + 1;
		n++;
	}
	msgpack_pack_map(pk, (size_t)n);
	for (int i = 0; i < n; i++) {
		aep_pack_str(pk, keys[i]);
		aep_pack_str(pk, vals[i]);
	}
}

void fx_pack_meta(msgpack_packer *pk, const char *ns, const char *name, const char *labels)
{
	aep_pack_str(pk, "metadata");
	msgpack_pack_map(pk, 1 + (ns != NULL) + (labels != NULL));
	aep_pack_str(pk, "name");
	aep_pack_str(pk, name);
	if (ns != NULL) {
		aep_pack_str(pk, "namespace");
		aep_pack_str(pk, ns);
	}
	if (labels != NULL) {
		aep_pack_str(pk, "labels");
		fx_pack_labels(pk, labels);
	}
}

/* A Pod's msgpack into @b (reset first). */
void fx_pod(struct aep_buf *b, const char *ns, const char *name, const char *labels,
	    const char *node, const char *image)
{
	msgpack_packer pk;
	aep_buf_reset(b);
	aep_packer_init(&pk, b);
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "kind");
	aep_pack_str(&pk, "Pod");
	fx_pack_meta(&pk, ns, name, labels);
	aep_pack_str(&pk, "spec");
	msgpack_pack_map(&pk, 1 + (node != NULL));
	if (node != NULL) {
		aep_pack_str(&pk, "nodeName");
		aep_pack_str(&pk, node);
	}
	aep_pack_str(&pk, "containers");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, "c");
	aep_pack_str(&pk, "image");
	aep_pack_str(&pk, image);
	assert_false(b->failed);
}

/* A Namespace, Node or Service: metadata only (Service: a spec). */
void fx_simple(struct aep_buf *b, const char *kind, const char *ns, const char *name,
	       const char *labels)
{
	msgpack_packer pk;
	bool svc = strcmp(kind, "Service") == 0;
	aep_buf_reset(b);
	aep_packer_init(&pk, b);
	msgpack_pack_map(&pk, 2 + svc);
	aep_pack_str(&pk, "kind");
	aep_pack_str(&pk, kind);
	fx_pack_meta(&pk, ns, name, labels);
	if (svc) {
		aep_pack_str(&pk, "spec");
		msgpack_pack_map(&pk, 1);
		aep_pack_str(&pk, "ports");
		msgpack_pack_array(&pk, 1);
		msgpack_pack_map(&pk, 1);
		aep_pack_str(&pk, "port");
		msgpack_pack_int(&pk, 80);
	}
	assert_false(b->failed);
}

struct aep_cmd fx_cmd_obj(enum aep_op op, enum aep_kind kind, const struct aep_buf *obj,
			  uint64_t precond, const char *uid, int64_t now)
{
	struct aep_cmd c;
	memset(&c, 0, sizeof(c));
	c.op = op;
	c.kind = kind;
	c.obj = obj->data;
	c.obj_len = obj->len;
	c.precond_rv = precond;
	c.now_ns = now;
	if (uid != NULL)
		snprintf(c.uid, sizeof(c.uid), "%s", uid);
	return c;
}

struct aep_cmd fx_cmd_del(enum aep_kind kind, const char *ns, const char *name, uint64_t precond)
{
	struct aep_cmd c;
	memset(&c, 0, sizeof(c));
	c.op = AEP_OP_DELETE;
	c.kind = kind;
	c.ns = ns;
	c.name = name;
	c.precond_rv = precond;
	return c;
}

void fx_snap(struct aep_store *s, struct aep_buf *out)
{
	aep_buf_reset(out);
	assert_int_equal(aep_store_snapshot(s, out), 0);
}

void fx_assert_same_bytes(const struct aep_buf *a, const struct aep_buf *b)
{
	assert_int_equal(a->len, b->len);
	assert_memory_equal(a->data, b->data, a->len);
}

struct aep_selector *fx_sel(const char *s)
{
	struct aep_selector *out;
	struct aep_error e = {0};
	assert_int_equal(aep_selector_parse(s, strlen(s), &out, &e), 0);
	return out;
}
