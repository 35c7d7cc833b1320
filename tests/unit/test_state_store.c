/* The store: apply semantics of each command, lists and indexes, malformed
 * entries, determinism across stores, and allocation failure during apply. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "state/state.h"
#include "tests/unit/fixtures.h"

/* ---- helpers ------------------------------------------------------------ */

/* Collects "ns/name" of visited objects, comma-separated. */
struct names {
	char buf[4096];
};

static int collect(const struct aep_object *o, void *data)
{
	struct names *n = data;
	size_t len = strlen(n->buf);
	snprintf(n->buf + len, sizeof(n->buf) - len, "%s%s/%s", len ? "," : "", o->meta.ns,
		 o->meta.name);
	return 0;
}

static const char *list(struct aep_store *s, enum aep_kind kind, const char *ns,
			const char *selector, struct names *n)
{
	struct aep_selector *se = selector != NULL ? fx_sel(selector) : NULL;
	n->buf[0] = '\0';
	assert_int_equal(aep_store_list(s, kind, ns, se, collect, n), 0);
	if (se != NULL)
		aep_selector_free(se);
	return n->buf;
}

static const char *on_node(struct aep_store *s, const char *node, struct names *n)
{
	n->buf[0] = '\0';
	assert_int_equal(aep_store_list_pods_on_node(s, node, collect, n), 0);
	return n->buf;
}

/* ---- tests -------------------------------------------------------------- */

static void new_store_has_default_namespaces(void **state)
{
	(void)state;
	struct aep_store *a = fx_new_store(), *b = fx_new_store();
	struct aep_buf sa, sb;
	aep_buf_init(&sa);
	aep_buf_init(&sb);
	assert_int_equal(aep_store_revision(a), 0);
	assert_int_equal(aep_store_applied_index(a), 0);
	assert_int_equal(aep_store_count(a, AEP_KIND_NAMESPACE), 2);
	struct aep_object *o = aep_store_get(a, AEP_KIND_NAMESPACE, NULL, "kube-system");
	assert_non_null(o);
	assert_true(o->meta.uid[0] != '\0');
	assert_int_equal(o->meta.created_ns, 0);
	aep_object_unref(o);
	o = aep_store_get(a, AEP_KIND_NAMESPACE, NULL, "default");
	assert_non_null(o);
	aep_object_unref(o);
	fx_snap(a, &sa);
	fx_snap(b, &sb);
	fx_assert_same_bytes(&sa, &sb);
	aep_buf_free(&sa);
	aep_buf_free(&sb);
	aep_store_free(a);
	aep_store_free(b);
}

static void create_stamps_and_refuses_duplicates(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	struct aep_buf b;
	struct aep_result r;
	aep_buf_init(&b);
	fx_pod(&b, "default", "web", "app=web", NULL, "nginx");
	struct aep_cmd c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b, 0, "uid-1", 1000000000);
	assert_int_equal(fx_apply1(s, 5, &c, &r), 0);
	assert_int_equal(r.rv, AEP_REV(5, 0));
	assert_non_null(r.obj);
	assert_string_equal(r.obj->meta.uid, "uid-1");
	assert_int_equal(r.obj->meta.rv, AEP_REV(5, 0));
	assert_int_equal(r.obj->meta.created_ns, 1000000000);
	assert_int_equal(r.obj->meta.generation, 1);
	assert_null(r.msg);
	aep_result_clear(&r);
	assert_int_equal(aep_store_revision(s), AEP_REV(5, 0));
	assert_int_equal(aep_store_applied_index(s), 5);

	struct aep_object *o = aep_store_get(s, AEP_KIND_POD, "default", "web");
	assert_non_null(o);
	assert_string_equal(o->meta.uid, "uid-1");
	aep_object_unref(o);
	assert_null(aep_store_get(s, AEP_KIND_POD, "kube-system", "web"));

	c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b, 0, "uid-2", 2);
	assert_int_equal(fx_apply1(s, 6, &c, &r), AEP_EEXISTS);
	assert_non_null(r.msg);
	assert_non_null(strstr(r.msg, "pods \"web\" already exists"));
	assert_null(r.obj);
	aep_result_clear(&r);
	/* A refused command changes nothing, but the index still advances. */
	assert_int_equal(aep_store_revision(s), AEP_REV(5, 0));
	assert_int_equal(aep_store_applied_index(s), 6);

	fx_pod(&b, "nope", "web", NULL, NULL, "nginx");
	c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b, 0, "uid-3", 3);
	assert_int_equal(fx_apply1(s, 7, &c, &r), AEP_ENOTFOUND);
	assert_non_null(strstr(r.msg, "namespace \"nope\" not found"));
	aep_result_clear(&r);

	/* Once the namespace exists, the same create works. */
	fx_simple(&b, "Namespace", NULL, "nope", NULL);
	c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_NAMESPACE, &b, 0, "uid-4", 4);
	assert_int_equal(fx_apply1_code(s, 8, &c), 0);
	fx_pod(&b, "nope", "web", NULL, NULL, "nginx");
	c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b, 0, "uid-5", 5);
	assert_int_equal(fx_apply1_code(s, 9, &c), 0);
	assert_int_equal(aep_store_count(s, AEP_KIND_POD), 2);

	/* A command whose kind is not the object's is refused. */
	fx_pod(&b, "default", "other", NULL, NULL, "nginx");
	c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_SERVICE, &b, 0, "uid-6", 6);
	assert_int_equal(fx_apply1_code(s, 10, &c), AEP_EINVALID);

	/* Re-applying an old index is refused. */
	struct aep_batch bt;
	const char *data;
	size_t len;
	aep_batch_init(&bt);
	assert_int_equal(aep_batch_finish(&bt, &data, &len), 0);
	assert_int_equal(aep_store_apply(s, 10, data, len, NULL, NULL), AEP_EINVALID);
	assert_int_equal(aep_store_apply(s, 11, data, len, NULL, NULL), 0);
	aep_batch_free(&bt);

	aep_buf_free(&b);
	aep_store_free(s);
}

static void update_preconditions_and_generation(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	struct aep_buf b;
	struct aep_result r;
	aep_buf_init(&b);

	fx_pod(&b, "default", "web", "app=web", NULL, "nginx");
	struct aep_cmd c = fx_cmd_obj(AEP_OP_UPDATE, AEP_KIND_POD, &b, 0, NULL, 9);
	assert_int_equal(fx_apply1(s, 1, &c, &r), AEP_ENOTFOUND);
	assert_non_null(strstr(r.msg, "pods \"web\" not found"));
	aep_result_clear(&r);

	c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b, 0, "uid-1", 1000);
	assert_int_equal(fx_apply1_code(s, 2, &c), 0);
	uint64_t rv1 = AEP_REV(2, 0);

	/* Wrong precondition: Conflict, nothing changes. */
	fx_pod(&b, "default", "web", "app=web", NULL, "nginx:2");
	c = fx_cmd_obj(AEP_OP_UPDATE, AEP_KIND_POD, &b, rv1 + 1, NULL, 2000);
	assert_int_equal(fx_apply1(s, 3, &c, &r), AEP_ECONFLICT);
	assert_non_null(strstr(r.msg, "pods \"web\""));
	assert_non_null(strstr(r.msg, "the object has been modified"));
	aep_result_clear(&r);
	struct aep_object *o = aep_store_get(s, AEP_KIND_POD, "default", "web");
	assert_int_equal(o->meta.rv, rv1);
	aep_object_unref(o);

	/* Right precondition, spec changed: generation 2, uid and creation
	 * time kept. */
	c = fx_cmd_obj(AEP_OP_UPDATE, AEP_KIND_POD, &b, rv1, "ignored", 2000);
	assert_int_equal(fx_apply1(s, 4, &c, &r), 0);
	assert_int_equal(r.rv, AEP_REV(4, 0));
	assert_string_equal(r.obj->meta.uid, "uid-1");
	assert_int_equal(r.obj->meta.created_ns, 1000);
	assert_int_equal(r.obj->meta.generation, 2);
	aep_result_clear(&r);

	/* Labels only: generation stays. No precondition: last write wins. */
	fx_pod(&b, "default", "web", "app=web,tier=fe", NULL, "nginx:2");
	c = fx_cmd_obj(AEP_OP_UPDATE, AEP_KIND_POD, &b, 0, NULL, 3000);
	assert_int_equal(fx_apply1(s, 5, &c, &r), 0);
	assert_int_equal(r.obj->meta.generation, 2);
	assert_int_equal(r.obj->meta.nlabels, 2);
	aep_result_clear(&r);
	o = aep_store_get(s, AEP_KIND_POD, "default", "web");
	assert_int_equal(o->meta.rv, AEP_REV(5, 0));
	assert_int_equal(o->meta.nlabels, 2);
	aep_object_unref(o);
	assert_int_equal(aep_store_count(s, AEP_KIND_POD), 1);

	aep_buf_free(&b);
	aep_store_free(s);
}

static void delete_semantics(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	struct aep_buf b;
	struct aep_result r;
	aep_buf_init(&b);

	struct aep_cmd c = fx_cmd_del(AEP_KIND_POD, "default", "web", 0);
	assert_int_equal(fx_apply1(s, 1, &c, &r), AEP_ENOTFOUND);
	assert_non_null(strstr(r.msg, "pods \"web\" not found"));
	aep_result_clear(&r);

	fx_simple(&b, "Namespace", NULL, "team", NULL);
	c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_NAMESPACE, &b, 0, "uid-ns", 1);
	assert_int_equal(fx_apply1_code(s, 2, &c), 0);
	fx_pod(&b, "team", "web", NULL, "n1", "nginx");
	c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b, 0, "uid-1", 1);
	assert_int_equal(fx_apply1_code(s, 3, &c), 0);

	/* A namespace with objects in it cannot go; the initial ones never. */
	c = fx_cmd_del(AEP_KIND_NAMESPACE, NULL, "team", 0);
	assert_int_equal(fx_apply1(s, 4, &c, &r), AEP_ECONFLICT);
	assert_non_null(strstr(r.msg, "namespace team is not empty"));
	aep_result_clear(&r);
	c = fx_cmd_del(AEP_KIND_NAMESPACE, NULL, "default", 0);
	assert_int_equal(fx_apply1_code(s, 5, &c), AEP_EFORBIDDEN);
	assert_int_equal(aep_store_count(s, AEP_KIND_NAMESPACE), 3);

	c = fx_cmd_del(AEP_KIND_POD, "team", "web", AEP_REV(3, 0) + 7);
	assert_int_equal(fx_apply1_code(s, 6, &c), AEP_ECONFLICT);
	c = fx_cmd_del(AEP_KIND_POD, "team", "web", AEP_REV(3, 0));
	assert_int_equal(fx_apply1(s, 7, &c, &r), 0);
	assert_int_equal(r.rv, AEP_REV(7, 0));
	assert_int_equal(r.obj->meta.rv, AEP_REV(7, 0));
	assert_string_equal(r.obj->meta.uid, "uid-1");
	aep_result_clear(&r);
	assert_null(aep_store_get(s, AEP_KIND_POD, "team", "web"));
	assert_int_equal(aep_store_count(s, AEP_KIND_POD), 0);
	struct names n;
	assert_string_equal(on_node(s, "n1", &n), "");

	c = fx_cmd_del(AEP_KIND_NAMESPACE, NULL, "team", 0);
	assert_int_equal(fx_apply1_code(s, 8, &c), 0);
	assert_int_equal(aep_store_count(s, AEP_KIND_NAMESPACE), 2);
	assert_int_equal(aep_store_revision(s), AEP_REV(8, 0));

	aep_buf_free(&b);
	aep_store_free(s);
}

static void create_pods(struct aep_store *s, uint64_t *index)
{
	static const struct {
		const char *ns, *name, *labels, *node;
	} pods[] = {
	    {"default", "a", "app=web,tier=fe", "n1"}, {"default", "b", "app=db,tier=be", "n2"},
	    {"default", "c", "app=web,tier=be", "n1"}, {"kube-system", "a", "app=web", NULL},
	    {"kube-system", "d", "app=dns", "n2"},     {"default", "e", NULL, NULL},
	};
	struct aep_buf b;
	aep_buf_init(&b);
	for (size_t i = 0; i < sizeof(pods) / sizeof(pods[0]); i++) {
		char uid[16];
		snprintf(uid, sizeof(uid), "u%zu", i);
		fx_pod(&b, pods[i].ns, pods[i].name, pods[i].labels, pods[i].node, "img");
		struct aep_cmd c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b, 0, uid, 1);
		assert_int_equal(fx_apply1_code(s, (*index)++, &c), 0);
	}
	fx_simple(&b, "Service", "default", "web", "app=web");
	struct aep_cmd c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_SERVICE, &b, 0, "svc", 1);
	assert_int_equal(fx_apply1_code(s, (*index)++, &c), 0);
	aep_buf_free(&b);
}

static void list_by_namespace_and_selector(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	struct names n;
	uint64_t index = 1;
	create_pods(s, &index);

	assert_string_equal(list(s, AEP_KIND_POD, NULL, NULL, &n),
			    "default/a,default/b,default/c,default/e,kube-system/a,kube-system/d");
	assert_string_equal(list(s, AEP_KIND_POD, "default", NULL, &n),
			    "default/a,default/b,default/c,default/e");
	assert_string_equal(list(s, AEP_KIND_POD, "kube-system", NULL, &n),
			    "kube-system/a,kube-system/d");
	assert_string_equal(list(s, AEP_KIND_POD, "nope", NULL, &n), "");
	/* Equality terms use the label index; the others scan. Same answers. */
	assert_string_equal(list(s, AEP_KIND_POD, NULL, "app=web", &n),
			    "default/a,default/c,kube-system/a");
	assert_string_equal(list(s, AEP_KIND_POD, "default", "app=web", &n), "default/a,default/c");
	assert_string_equal(list(s, AEP_KIND_POD, "kube-system", "app==web", &n), "kube-system/a");
	assert_string_equal(list(s, AEP_KIND_POD, "default", "app=web,tier=be", &n), "default/c");
	assert_string_equal(list(s, AEP_KIND_POD, NULL, "tier=be,app=web", &n), "default/c");
	assert_string_equal(list(s, AEP_KIND_POD, NULL, "app=nope", &n), "");
	assert_string_equal(list(s, AEP_KIND_POD, "default", "app!=web", &n),
			    "default/b,default/e");
	assert_string_equal(list(s, AEP_KIND_POD, NULL, "app in (db,dns)", &n),
			    "default/b,kube-system/d");
	assert_string_equal(list(s, AEP_KIND_POD, NULL, "!tier", &n),
			    "default/e,kube-system/a,kube-system/d");
	assert_string_equal(list(s, AEP_KIND_POD, NULL, "tier", &n),
			    "default/a,default/b,default/c");
	/* The index is per kind. */
	assert_string_equal(list(s, AEP_KIND_SERVICE, NULL, "app=web", &n), "default/web");
	/* Cluster-scoped kinds ignore the namespace. */
	assert_string_equal(list(s, AEP_KIND_NAMESPACE, "default", NULL, &n),
			    "/default,/kube-system");

	aep_store_free(s);
}

static int stop_at_second(const struct aep_object *o, void *data)
{
	int *count = data;
	(void)o;
	return ++*count == 2 ? 42 : 0;
}

static void list_stops_early(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	uint64_t index = 1;
	int count = 0;
	create_pods(s, &index);
	assert_int_equal(aep_store_list(s, AEP_KIND_POD, NULL, NULL, stop_at_second, &count), 42);
	assert_int_equal(count, 2);
	count = 0;
	struct aep_selector *se = fx_sel("app=web");
	assert_int_equal(aep_store_list(s, AEP_KIND_POD, NULL, se, stop_at_second, &count), 42);
	aep_selector_free(se);
	aep_store_free(s);
}

static void pods_on_node_follow_updates(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	struct names n;
	struct aep_buf b;
	uint64_t index = 1;
	aep_buf_init(&b);
	create_pods(s, &index);
	assert_string_equal(on_node(s, "n1", &n), "default/a,default/c");
	assert_string_equal(on_node(s, "n2", &n), "default/b,kube-system/d");
	assert_string_equal(on_node(s, "n", &n), "");
	assert_string_equal(on_node(s, "n3", &n), "");

	/* Bind an unbound pod, move a bound one (labels kept, then changed). */
	fx_pod(&b, "default", "e", NULL, "n2", "img");
	struct aep_cmd c = fx_cmd_obj(AEP_OP_UPDATE, AEP_KIND_POD, &b, 0, NULL, 1);
	assert_int_equal(fx_apply1_code(s, index++, &c), 0);
	fx_pod(&b, "default", "a", "app=web,tier=fe", "n3", "img");
	c = fx_cmd_obj(AEP_OP_UPDATE, AEP_KIND_POD, &b, 0, NULL, 1);
	assert_int_equal(fx_apply1_code(s, index++, &c), 0);
	fx_pod(&b, "default", "c", "app=other", "n3", "img");
	c = fx_cmd_obj(AEP_OP_UPDATE, AEP_KIND_POD, &b, 0, NULL, 1);
	assert_int_equal(fx_apply1_code(s, index++, &c), 0);
	assert_string_equal(on_node(s, "n1", &n), "");
	assert_string_equal(on_node(s, "n2", &n), "default/b,default/e,kube-system/d");
	assert_string_equal(on_node(s, "n3", &n), "default/a,default/c");
	assert_string_equal(list(s, AEP_KIND_POD, NULL, "app=web", &n), "default/a,kube-system/a");
	assert_string_equal(list(s, AEP_KIND_POD, NULL, "app=other", &n), "default/c");
	/* Unbind. */
	fx_pod(&b, "default", "a", "app=web,tier=fe", NULL, "img");
	c = fx_cmd_obj(AEP_OP_UPDATE, AEP_KIND_POD, &b, 0, NULL, 1);
	assert_int_equal(fx_apply1_code(s, index++, &c), 0);
	assert_string_equal(on_node(s, "n3", &n), "default/c");
	aep_buf_free(&b);
	aep_store_free(s);
}

static void batch_positions_and_members(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	struct aep_buf b1, b2;
	struct aep_batch bt;
	struct aep_result *res;
	const char *data;
	size_t len, n;
	aep_buf_init(&b1);
	aep_buf_init(&b2);
	aep_batch_init(&bt);

	fx_pod(&b1, "default", "p", NULL, NULL, "one");
	fx_pod(&b2, "default", "p", NULL, NULL, "two");
	struct aep_cmd cmds[5];
	cmds[0] = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b1, 0, "u1", 1);
	cmds[1] = fx_cmd_obj(AEP_OP_UPDATE, AEP_KIND_POD, &b2, AEP_REV(3, 0), NULL, 2);
	cmds[2] = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b1, 0, "u2", 3);
	memset(&cmds[3], 0, sizeof(cmds[3]));
	cmds[3].op = AEP_OP_MEMBER;
	cmds[3].name = "m2";
	cmds[3].member_api = "127.0.0.1:7002";
	cmds[3].member_peer = "127.0.0.1:8002";
	cmds[4] = cmds[3];
	cmds[4].name = "m1";
	cmds[4].member_api = "127.0.0.1:7001";
	for (int i = 0; i < 5; i++)
		assert_int_equal(aep_batch_add(&bt, &cmds[i]), 0);
	assert_int_equal(aep_batch_finish(&bt, &data, &len), 0);
	assert_int_equal((unsigned char)data[0], 0x95);
	assert_int_equal(aep_store_apply(s, 3, data, len, &res, &n), 0);
	assert_int_equal(n, 5);
	assert_int_equal(res[0].code, 0);
	assert_int_equal(res[0].rv, AEP_REV(3, 0));
	assert_int_equal(res[1].code, 0);
	assert_int_equal(res[1].rv, AEP_REV(3, 1));
	assert_int_equal(res[1].obj->meta.generation, 2);
	assert_int_equal(res[2].code, AEP_EEXISTS);
	assert_int_equal(res[3].code, 0);
	assert_int_equal(res[4].code, 0);
	for (size_t i = 0; i < n; i++)
		aep_result_clear(&res[i]);
	aep_free(res);
	assert_int_equal(aep_store_revision(s), AEP_REV(3, 1));

	const struct aep_member *m;
	size_t nm;
	assert_int_equal(aep_store_members(s, &m, &nm), 0);
	assert_int_equal(nm, 2);
	assert_string_equal(m[0].name, "m1");
	assert_string_equal(m[0].api, "127.0.0.1:7001");
	assert_string_equal(m[1].name, "m2");
	/* A member command for a known name replaces its addresses. */
	cmds[3].member_api = "127.0.0.9:7002";
	assert_int_equal(fx_apply1_code(s, 4, &cmds[3]), 0);
	assert_int_equal(aep_store_members(s, &m, &nm), 0);
	assert_int_equal(nm, 2);
	assert_string_equal(m[1].api, "127.0.0.9:7002");

	/* More than 15 commands: array16 header in front. */
	aep_batch_reset(&bt);
	for (int i = 0; i < 20; i++)
		assert_int_equal(aep_batch_add(&bt, &cmds[3]), 0);
	assert_int_equal(aep_batch_finish(&bt, &data, &len), 0);
	assert_int_equal((unsigned char)data[0], 0xdc);
	assert_int_equal(aep_store_apply(s, 5, data, len, NULL, &n), 0);
	assert_int_equal(n, 20);

	/* A command the encoder refuses leaves the batch as it was. */
	struct aep_cmd bad = cmds[0];
	bad.obj = NULL;
	assert_int_equal(aep_batch_add(&bt, &bad), AEP_EINVALID);
	assert_int_equal(bt.count, 20);

	aep_batch_free(&bt);
	aep_buf_free(&b1);
	aep_buf_free(&b2);
	aep_store_free(s);
}

static void malformed_entries_change_nothing(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	struct aep_buf b, before, after;
	struct aep_batch bt;
	const char *data;
	size_t len, n = 99;
	struct aep_result *res = (struct aep_result *)&n;
	aep_buf_init(&b);
	aep_buf_init(&before);
	aep_buf_init(&after);
	aep_batch_init(&bt);
	uint64_t index = 1;
	create_pods(s, &index);
	fx_snap(s, &before);

	fx_pod(&b, "default", "x", NULL, NULL, "img");
	struct aep_cmd c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b, 0, "ux", 1);
	assert_int_equal(aep_batch_add(&bt, &c), 0);
	assert_int_equal(aep_batch_add(&bt, &c), 0);
	assert_int_equal(aep_batch_finish(&bt, &data, &len), 0);

	/* Every truncation of a valid entry is refused. */
	for (size_t cut = 0; cut < len; cut++) {
		assert_int_equal(aep_store_apply(s, 100, data, cut, &res, &n), AEP_EINVALID);
		assert_null(res);
		assert_int_equal(n, 0);
	}
	/* Trailing bytes. */
	char *copy = malloc(len + 1);
	memcpy(copy, data, len);
	copy[len] = 0;
	assert_int_equal(aep_store_apply(s, 100, copy, len + 1, NULL, NULL), AEP_EINVALID);
	/* Every single-byte change is either refused whole or gives
	 * deterministic per-command results; never a crash. */
	for (size_t i = 0; i < len; i += 7) {
		memcpy(copy, data, len);
		copy[i] ^= 0x5a;
		struct aep_store *t = fx_new_store();
		(void)aep_store_apply(t, 100, copy, len, NULL, NULL);
		aep_store_free(t);
	}
	/* Header claims more commands than there are; the second command
	 * broken: the first must not be applied either. */
	memcpy(copy, data, len);
	copy[0] = (char)0x93;
	assert_int_equal(aep_store_apply(s, 100, copy, len, NULL, NULL), AEP_EINVALID);
	memcpy(copy, data, len);
	copy[len - 1] = (char)0xc1; /* never-used msgpack byte */
	assert_int_equal(aep_store_apply(s, 100, copy, len, NULL, NULL), AEP_EINVALID);
	/* Unknown op and kind. */
	static const char bad_op[] = "\x91\x9b\x09\x02\xc0\xa1x\x00\xc0\x00\xc0\xc0\xc0\xc0";
	static const char bad_kind[] = "\x91\x9b\x03\x7f\xc0\xa1x\x00\xc0\x00\xc0\xc0\xc0\xc0";
	static const char good_del[] = "\x91\x9b\x03\x02\xa1x\xa1x\x00\xc0\x00\xc0\xc0\xc0\xc0";
	assert_int_equal(aep_store_apply(s, 100, bad_op, sizeof(bad_op) - 1, NULL, NULL),
			 AEP_EINVALID);
	assert_int_equal(aep_store_apply(s, 100, bad_kind, sizeof(bad_kind) - 1, NULL, NULL),
			 AEP_EINVALID);
	assert_int_equal(aep_store_apply(s, 100, "\xc0", 1, NULL, NULL), AEP_EINVALID);
	assert_int_equal(aep_store_apply(s, 100, "", 0, NULL, NULL), AEP_EINVALID);
	fx_snap(s, &after);
	fx_assert_same_bytes(&before, &after);
	assert_int_equal(aep_store_applied_index(s), index - 1);
	/* The hand-written well-formed delete decodes (and finds nothing). */
	assert_int_equal(aep_store_apply(s, 100, good_del, sizeof(good_del) - 1, &res, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(res[0].code, AEP_ENOTFOUND);
	aep_result_clear(&res[0]);
	aep_free(res);

	free(copy);
	aep_batch_free(&bt);
	aep_buf_free(&b);
	aep_buf_free(&before);
	aep_buf_free(&after);
	aep_store_free(s);
}

/* ---- determinism -------------------------------------------------------- */

static uint64_t rng_next(uint64_t *x)
{
	/* splitmix64 */
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Generates entries of random commands. It tracks nothing of the store:
 * half the preconditions are right only by chance, which is the point. */
struct gen {
	uint64_t rng;
	uint64_t index;
	uint64_t last_rv[64];
};

static const char *const gen_ns[] = {"default", "kube-system", "team-a", "team-b"};
static const char *const gen_app[] = {"web", "db", "cache"};

static void gen_entry(struct gen *g, struct aep_batch *bt, struct aep_buf *objs)
{
	uint32_t count = 1 + (uint32_t)(rng_next(&g->rng) % 8);
	aep_batch_reset(bt);
	for (uint32_t i = 0; i < count; i++) {
		uint64_t r = rng_next(&g->rng);
		unsigned slot = (unsigned)(r % 64);
		const char *ns = gen_ns[(r >> 8) % 4];
		char name[32], uid[40], labels[64], node[16];
		snprintf(name, sizeof(name), "obj-%u", slot % 16);
		snprintf(uid, sizeof(uid), "uid-%llu", (unsigned long long)g->index * 100 + i);
		snprintf(labels, sizeof(labels), "app=%s,rnd=%u", gen_app[(r >> 12) % 3],
			 (unsigned)((r >> 16) % 2));
		snprintf(node, sizeof(node), "node-%u", (unsigned)((r >> 20) % 3));
		unsigned what = (unsigned)((r >> 24) % 10);
		enum aep_kind kind = (r >> 28) % 3 == 0 ? AEP_KIND_SERVICE : AEP_KIND_POD;
		struct aep_buf *ob = &objs[i];
		struct aep_cmd c;
		if (what == 9 && (r >> 32) % 4 == 0) {
			/* Namespaces come and go (delete fails while in use). */
			const char *nsn = gen_ns[2 + (r >> 34) % 2];
			if ((r >> 36) % 2 == 0) {
				fx_simple(ob, "Namespace", NULL, nsn, NULL);
				c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_NAMESPACE, ob, 0, uid, 1);
			} else {
				c = fx_cmd_del(AEP_KIND_NAMESPACE, NULL, nsn, 0);
			}
		} else if (what >= 8) {
			uint64_t pre = (r >> 40) % 2 ? g->last_rv[slot] : 0;
			c = fx_cmd_del(kind, ns, name, pre);
		} else {
			if (kind == AEP_KIND_POD)
				fx_pod(ob, ns, name, labels, (r >> 44) % 2 ? node : NULL,
				       (r >> 45) % 2 ? "img:1" : "img:2");
			else
				fx_simple(ob, "Service", ns, name, labels);
			uint64_t pre = (r >> 40) % 3 == 0   ? g->last_rv[slot]
				       : (r >> 40) % 3 == 1 ? 0
							    : AEP_REV(g->index, 9);
			c = fx_cmd_obj(what < 4 ? AEP_OP_CREATE : AEP_OP_UPDATE, kind, ob, pre, uid,
				       (int64_t)g->index * 1000000000);
		}
		g->last_rv[slot] = AEP_REV(g->index, i);
		assert_int_equal(aep_batch_add(bt, &c), 0);
	}
}

static void apply_is_deterministic(void **state)
{
	(void)state;
	struct aep_store *a = fx_new_store(), *b;
	struct aep_store_config cfg = {.event_log_max = 50};
	assert_int_equal(aep_store_new(&cfg, &b), 0);
	struct gen g = {.rng = 12345, .index = 1};
	struct aep_batch bt;
	struct aep_buf objs[8], sa, sb;
	size_t ok = 0, refused = 0;
	aep_batch_init(&bt);
	aep_buf_init(&sa);
	aep_buf_init(&sb);
	for (int i = 0; i < 8; i++)
		aep_buf_init(&objs[i]);

	for (int e = 0; e < 800; e++, g.index++) {
		const char *data;
		size_t len, na, nb;
		struct aep_result *ra, *rb;
		gen_entry(&g, &bt, objs);
		assert_int_equal(aep_batch_finish(&bt, &data, &len), 0);
		assert_int_equal(aep_store_apply(a, g.index, data, len, &ra, &na), 0);
		assert_int_equal(aep_store_apply(b, g.index, data, len, &rb, &nb), 0);
		assert_int_equal(na, nb);
		for (size_t i = 0; i < na; i++) {
			assert_int_equal(ra[i].code, rb[i].code);
			assert_int_equal(ra[i].rv, rb[i].rv);
			assert_int_equal(ra[i].obj == NULL, rb[i].obj == NULL);
			if (ra[i].obj != NULL) {
				assert_int_equal(ra[i].obj->len, rb[i].obj->len);
				assert_memory_equal(ra[i].obj->data, rb[i].obj->data,
						    ra[i].obj->len);
			}
			if (ra[i].code == 0)
				ok++;
			else
				refused++;
			aep_result_clear(&ra[i]);
			aep_result_clear(&rb[i]);
		}
		aep_free(ra);
		aep_free(rb);
	}
	/* The mix exercised both outcomes. */
	assert_true(ok > 500);
	assert_true(refused > 500);
	assert_true(aep_store_count(a, AEP_KIND_POD) > 10);
	fx_snap(a, &sa);
	fx_snap(b, &sb);
	fx_assert_same_bytes(&sa, &sb);
	assert_int_equal(aep_store_revision(a), aep_store_revision(b));

	/* A third store, same seed: same bytes again (nothing depends on the
	 * address space or on the results being asked for). */
	struct aep_store *c = fx_new_store();
	struct gen g2 = {.rng = 12345, .index = 1};
	for (int e = 0; e < 800; e++, g2.index++) {
		const char *data;
		size_t len;
		gen_entry(&g2, &bt, objs);
		assert_int_equal(aep_batch_finish(&bt, &data, &len), 0);
		assert_int_equal(aep_store_apply(c, g2.index, data, len, NULL, NULL), 0);
	}
	fx_snap(c, &sb);
	fx_assert_same_bytes(&sa, &sb);

	for (int i = 0; i < 8; i++)
		aep_buf_free(&objs[i]);
	aep_buf_free(&sa);
	aep_buf_free(&sb);
	aep_batch_free(&bt);
	aep_store_free(a);
	aep_store_free(b);
	aep_store_free(c);
}

/* ---- allocation failure ------------------------------------------------- */

/* Apply @c with the n-th allocation failing, for n = 1, 2, ... until it
 * succeeds, each try at the next index. Every failure must be AEP_ENOMEM
 * with the store's snapshot, revision and applied index exactly as
 * before. A refusal (@want != 0) may also come back decided but without
 * its message when only the message could not be allocated. */
static void sweep_apply(struct aep_store *s, uint64_t *index, const struct aep_cmd *c, int want)
{
	struct aep_batch bt;
	struct aep_buf before, after;
	const char *data;
	size_t len;
	aep_batch_init(&bt);
	aep_buf_init(&before);
	aep_buf_init(&after);
	assert_int_equal(aep_batch_add(&bt, c), 0);
	assert_int_equal(aep_batch_finish(&bt, &data, &len), 0);
	fx_snap(s, &before);
	uint64_t rev = aep_store_revision(s);
	int failures = 0;
	for (long n = 1;; n++) {
		struct aep_result *res = NULL;
		size_t nres = 0;
		uint64_t applied = aep_store_applied_index(s);
		aep_heap_fault_after(n);
		int rv = aep_store_apply(s, (*index)++, data, len, &res, &nres);
		long hits = aep_heap_fault_count();
		aep_heap_fault_off();
		if (rv == 0) {
			assert_int_equal(nres, 1);
			assert_int_equal(res[0].code, want);
			bool done = hits == 0;
			if (!done) {
				assert_int_not_equal(want, 0);
				assert_null(res[0].msg);
			} else if (want != 0) {
				assert_non_null(res[0].msg);
			}
			aep_result_clear(&res[0]);
			aep_free(res);
			if (done)
				break;
			continue;
		}
		failures++;
		assert_int_equal(rv, AEP_ENOMEM);
		assert_null(res);
		fx_snap(s, &after);
		fx_assert_same_bytes(&before, &after);
		assert_int_equal(aep_store_revision(s), rev);
		assert_int_equal(aep_store_applied_index(s), applied);
		assert_true(n < 1000);
	}
	/* An apply that needs memory had some to fail. */
	assert_true(failures > 0);
	aep_buf_free(&before);
	aep_buf_free(&after);
	aep_batch_free(&bt);
}

static void apply_survives_allocation_failure(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	struct aep_buf b;
	uint64_t index = 1;
	aep_buf_init(&b);
	create_pods(s, &index);

	fx_pod(&b, "default", "new", "app=web,x=y", "n1", "img");
	struct aep_cmd c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b, 0, "un", 1);
	sweep_apply(s, &index, &c, 0);
	/* Update keeping labels, then changing them. */
	fx_pod(&b, "default", "new", "app=web,x=y", "n2", "img:2");
	c = fx_cmd_obj(AEP_OP_UPDATE, AEP_KIND_POD, &b, 0, NULL, 2);
	sweep_apply(s, &index, &c, 0);
	fx_pod(&b, "default", "new", "app=db", "n2", "img:2");
	c = fx_cmd_obj(AEP_OP_UPDATE, AEP_KIND_POD, &b, 0, NULL, 2);
	sweep_apply(s, &index, &c, 0);
	c = fx_cmd_del(AEP_KIND_POD, "default", "new", 0);
	sweep_apply(s, &index, &c, 0);
	memset(&c, 0, sizeof(c));
	c.op = AEP_OP_MEMBER;
	c.name = "m1";
	c.member_api = "a";
	c.member_peer = "p";
	sweep_apply(s, &index, &c, 0);
	c.member_api = "b";
	sweep_apply(s, &index, &c, 0);
	/* Refusals need memory too (decoding the object). */
	fx_pod(&b, "default", "a", NULL, NULL, "img");
	c = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b, 0, "ua", 1);
	sweep_apply(s, &index, &c, AEP_EEXISTS);

	struct names n;
	assert_string_equal(list(s, AEP_KIND_POD, NULL, "app=web", &n),
			    "default/a,default/c,kube-system/a");
	aep_buf_free(&b);
	aep_store_free(s);
}

/* Out of memory in the middle of an entry: the commands before the one
 * that failed stay applied, the rest are not, the applied index stays. */
static void entry_stops_at_allocation_failure(void **state)
{
	(void)state;
	struct aep_buf b1, b2;
	struct aep_batch bt;
	const char *data;
	size_t len;
	bool saw_half = false;
	aep_buf_init(&b1);
	aep_buf_init(&b2);
	aep_batch_init(&bt);
	fx_pod(&b1, "default", "one", "app=x", NULL, "img");
	fx_pod(&b2, "default", "two", "app=x", NULL, "img");
	struct aep_cmd c1 = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b1, 0, "u1", 1);
	struct aep_cmd c2 = fx_cmd_obj(AEP_OP_CREATE, AEP_KIND_POD, &b2, 0, "u2", 1);
	assert_int_equal(aep_batch_add(&bt, &c1), 0);
	assert_int_equal(aep_batch_add(&bt, &c2), 0);
	assert_int_equal(aep_batch_finish(&bt, &data, &len), 0);
	for (long n = 1;; n++) {
		struct aep_store *s = fx_new_store();
		struct aep_result *res = NULL;
		size_t nres = 0;
		aep_heap_fault_after(n);
		int rv = aep_store_apply(s, 7, data, len, n % 2 ? &res : NULL, &nres);
		aep_heap_fault_off();
		struct aep_object *one = aep_store_get(s, AEP_KIND_POD, "default", "one");
		struct aep_object *two = aep_store_get(s, AEP_KIND_POD, "default", "two");
		if (rv == 0) {
			assert_non_null(one);
			assert_non_null(two);
			assert_int_equal(aep_store_applied_index(s), 7);
			if (res != NULL) {
				aep_result_clear(&res[0]);
				aep_result_clear(&res[1]);
				aep_free(res);
			}
		} else {
			assert_int_equal(rv, AEP_ENOMEM);
			assert_null(res);
			assert_null(two);
			assert_int_equal(aep_store_applied_index(s), 0);
			if (one != NULL) {
				saw_half = true;
				assert_int_equal(aep_store_revision(s), AEP_REV(7, 0));
			} else {
				assert_int_equal(aep_store_revision(s), 0);
			}
		}
		if (one != NULL)
			aep_object_unref(one);
		if (two != NULL)
			aep_object_unref(two);
		aep_store_free(s);
		if (rv == 0)
			break;
		assert_true(n < 1000);
	}
	assert_true(saw_half);
	aep_batch_free(&bt);
	aep_buf_free(&b1);
	aep_buf_free(&b2);
}

static void store_new_survives_allocation_failure(void **state)
{
	(void)state;
	for (long n = 1;; n++) {
		struct aep_store *s = NULL;
		aep_heap_fault_after(n);
		int rv = aep_store_new(NULL, &s);
		aep_heap_fault_off();
		if (rv == 0) {
			assert_int_equal(aep_store_count(s, AEP_KIND_NAMESPACE), 2);
			aep_store_free(s);
			break;
		}
		assert_int_equal(rv, AEP_ENOMEM);
		assert_true(n < 1000);
	}
}

static struct aep_cmd bind_cmd(const char *ns, const char *name, const char *node, const char *uid)
{
	struct aep_cmd c = {.op = AEP_OP_BIND,
			    .kind = AEP_KIND_POD,
			    .ns = ns,
			    .name = name,
			    .node = node,
			    .now_ns = 5};
	if (uid != NULL)
		snprintf(c.uid, sizeof(c.uid), "%s", uid);
	return c;
}

/* The scheduler's binding: an unbound pod gets spec.nodeName once; every
 * refusal names why and changes nothing. */
static void bind_sets_node_once(void **state)
{
	(void)state;
	struct aep_store *s = fx_new_store();
	struct names n;
	struct aep_result r;
	uint64_t index = 1;
	create_pods(s, &index); /* default/e (uid u5) and kube-system/a are unbound */
	struct aep_object *before = aep_store_get(s, AEP_KIND_POD, "default", "e");
	uint64_t rev = aep_store_revision(s);

	struct aep_cmd c = bind_cmd("default", "e", "n3", "u5");
	assert_int_equal(fx_apply1(s, index++, &c, &r), 0);
	assert_string_equal(r.obj->node_name, "n3");
	assert_int_equal(r.rv, AEP_REV(index - 1, 0));
	assert_int_equal(r.obj->meta.generation, before->meta.generation + 1);
	assert_string_equal(r.obj->meta.uid, "u5");
	aep_result_clear(&r);
	assert_string_equal(on_node(s, "n3", &n), "default/e");
	struct aep_object *after = aep_store_get(s, AEP_KIND_POD, "default", "e");
	/* The bound object is exactly what a client's update with nodeName
	 * set would have stored: same canonical bytes apart from metadata. */
	struct aep_buf b;
	aep_buf_init(&b);
	fx_pod(&b, "default", "e", NULL, "n3", "img");
	struct aep_object *want = NULL;
	struct aep_error e = {0};
	assert_int_equal(aep_object_decode(b.data, b.len, &want, &e), 0);
	struct aep_object *stamped = NULL;
	assert_int_equal(aep_object_stamp(want, "u5", after->meta.rv, after->meta.created_ns,
					  after->meta.generation, &stamped),
			 0);
	assert_int_equal(stamped->len, after->len);
	assert_memory_equal(stamped->data, after->data, after->len);
	aep_object_unref(stamped);
	aep_object_unref(want);
	aep_buf_free(&b);

	uint64_t rev_bound = aep_store_revision(s);
	assert_true(rev_bound > rev);
	static const struct {
		const char *ns, *name, *node, *uid;
		int code;
		const char *msg;
	} bad[] = {
	    {"default", "e", "n4", NULL, AEP_ECONFLICT, "already bound to node \"n3\""},
	    {"default", "a", "n4", NULL, AEP_ECONFLICT, "already bound to node \"n1\""},
	    {"default", "zz", "n4", NULL, AEP_ENOTFOUND, "pods \"zz\" not found"},
	    {"kube-system", "a", "n4", "other", AEP_ECONFLICT, "deleted and created again"},
	    {"kube-system", "a", "Bad_Node", NULL, AEP_EINVALID, "node name"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = bind_cmd(bad[i].ns, bad[i].name, bad[i].node, bad[i].uid);
		assert_int_equal(fx_apply1(s, index++, &c, &r), bad[i].code);
		assert_non_null(strstr(r.msg, bad[i].msg));
		aep_result_clear(&r);
	}
	c = bind_cmd("default", "e", "n4", NULL);
	c.kind = AEP_KIND_SERVICE;
	assert_int_equal(fx_apply1_code(s, index++, &c), AEP_EINVALID);
	assert_int_equal(aep_store_revision(s), rev_bound);
	assert_string_equal(on_node(s, "n4", &n), "");
	struct aep_object *ks = aep_store_get(s, AEP_KIND_POD, "kube-system", "a");
	assert_null(ks->node_name);
	aep_object_unref(ks);
	aep_object_unref(after);
	aep_object_unref(before);
	aep_store_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(new_store_has_default_namespaces),
	    cmocka_unit_test(create_stamps_and_refuses_duplicates),
	    cmocka_unit_test(update_preconditions_and_generation),
	    cmocka_unit_test(delete_semantics),
	    cmocka_unit_test(list_by_namespace_and_selector),
	    cmocka_unit_test(list_stops_early),
	    cmocka_unit_test(pods_on_node_follow_updates),
	    cmocka_unit_test(bind_sets_node_once),
	    cmocka_unit_test(batch_positions_and_members),
	    cmocka_unit_test(malformed_entries_change_nothing),
	    cmocka_unit_test(apply_is_deterministic),
	    cmocka_unit_test(apply_survives_allocation_failure),
	    cmocka_unit_test(entry_stops_at_allocation_failure),
	    cmocka_unit_test(store_new_survives_allocation_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
