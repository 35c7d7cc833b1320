/* state/ object model: kinds, decode/validate/canonical encode, stamp, time. */
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

/* The keys of the top-level map of @o's encoding, in order, joined by ','. */
static void top_keys(const struct aep_object *o, char *out, size_t size)
{
	msgpack_zone z;
	msgpack_object obj;
	size_t off = 0, n = 0;
	msgpack_zone_init(&z, 1024);
	assert_int_equal(msgpack_unpack(o->data, o->len, &off, &z, &obj), MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(obj.type, MSGPACK_OBJECT_MAP);
	out[0] = '\0';
	for (uint32_t i = 0; i < obj.via.map.size; i++) {
		const msgpack_object *k = &obj.via.map.ptr[i].key;
		n += (size_t)snprintf(out + n, size - n, "%s%.*s", i ? "," : "",
				      (int)k->via.str.size, k->via.str.ptr);
	}
	msgpack_zone_destroy(&z);
}

/* ---- fixtures --------------------------------------------------------------- */

/* ---- kinds ------------------------------------------------------------------ */

static void test_kind_table(void **state)
{
	(void)state;
	for (int k = 0; k < AEP_KIND__COUNT; k++) {
		const struct aep_kind_info *ki = aep_kind_info(k);
		assert_non_null(ki);
		assert_int_equal(ki->kind, k);
		assert_non_null(ki->name);
		assert_non_null(ki->plural);
		assert_non_null(ki->singular);
		assert_non_null(ki->shortname);
		assert_ptr_equal(aep_kind_lookup(ki->name, strlen(ki->name)), ki);
		assert_ptr_equal(aep_kind_lookup(ki->plural, strlen(ki->plural)), ki);
		assert_ptr_equal(aep_kind_lookup(ki->singular, strlen(ki->singular)), ki);
		assert_ptr_equal(aep_kind_lookup(ki->shortname, strlen(ki->shortname)), ki);
	}
	assert_null(aep_kind_info(AEP_KIND__COUNT));
	assert_int_equal(aep_kind_lookup("PODS", 4)->kind, AEP_KIND_POD);
	assert_int_equal(aep_kind_lookup("replicationcontroller", 21)->kind, AEP_KIND_RC);
	assert_int_equal(aep_kind_lookup("Svc", 3)->kind, AEP_KIND_SERVICE);
	assert_int_equal(aep_kind_lookup("podsX", 4)->kind, AEP_KIND_POD); /* length-bounded */
	assert_null(aep_kind_lookup("deployment", 10));
	assert_null(aep_kind_lookup("po", 1));
	assert_null(aep_kind_lookup("", 0));
	assert_false(aep_kind_info(AEP_KIND_NODE)->namespaced);
	assert_true(aep_kind_info(AEP_KIND_EVENT)->namespaced);
	assert_string_equal(aep_kind_info(AEP_KIND_RC)->singular, "replicationcontroller");
}

/* ---- round trips -------------------------------------------------------------- */

static void test_roundtrip_every_kind(void **state)
{
	(void)state;
	bool seen[AEP_KIND__COUNT] = {false};
	for (size_t i = 0; i < fx_all_kinds_n; i++) {
		const char *json = fx_all_kinds[i] ? fx_all_kinds[i] : fx_pod_full;
		struct aep_object *a = fx_must_decode(json), *b = NULL;
		struct aep_error e = {0};
		char keys[256];

		seen[a->kind] = true;
		assert_int_equal(aep_object_decode(a->data, a->len, &b, &e), 0);
		assert_int_equal(a->len, b->len);
		assert_memory_equal(a->data, b->data, a->len);
		fx_assert_meta_equal(a, b);
		top_keys(a, keys, sizeof(keys));
		assert_true(strncmp(keys, "apiVersion,kind,metadata", 24) == 0);
		/* Round trip through from_msgpack too. */
		msgpack_zone z;
		msgpack_object obj;
		size_t off = 0;
		struct aep_object *c = NULL;
		msgpack_zone_init(&z, 1024);
		assert_int_equal(msgpack_unpack(a->data, a->len, &off, &z, &obj),
				 MSGPACK_UNPACK_SUCCESS);
		assert_int_equal(aep_object_from_msgpack(&obj, &c, &e), 0);
		assert_memory_equal(a->data, c->data, a->len);
		msgpack_zone_destroy(&z);
		aep_object_unref(a);
		aep_object_unref(b);
		aep_object_unref(c);
	}
	for (int k = 0; k < AEP_KIND__COUNT; k++)
		assert_true(seen[k]);
}

static void test_pod_fields(void **state)
{
	(void)state;
	struct aep_object *o = fx_must_decode(fx_pod_full);
	char keys[256];
	assert_int_equal(o->kind, AEP_KIND_POD);
	assert_string_equal(o->meta.name, "web-1");
	assert_string_equal(o->meta.ns, "prod");
	assert_string_equal(o->meta.uid, "0b7b5c3e-1111-2222-3333-444455556666");
	assert_int_equal(o->meta.rv, 17);
	assert_int_equal(o->meta.created_ns, 1795562918LL * 1000000000LL);
	assert_int_equal(o->meta.generation, 2);
	assert_string_equal(o->node_name, "node-1");
	assert_int_equal(o->phase, AEP_PHASE_RUNNING);
	assert_string_equal(aep_pod_phase_name(o->phase), "Running");
	assert_int_equal(o->meta.nlabels, 3);
	assert_string_equal(o->meta.labels[0].key, "app");
	assert_string_equal(o->meta.labels[1].key, "example.com/team");
	assert_string_equal(o->meta.labels[2].key, "tier");
	assert_string_equal(o->meta.labels[2].value, "front");
	top_keys(o, keys, sizeof(keys));
	assert_string_equal(keys, "apiVersion,kind,metadata,spec,status");
	aep_object_unref(o);

	/* Event: kind-specific fields follow metadata in schema order. */
	o = fx_must_decode(fx_all_kinds[6]);
	top_keys(o, keys, sizeof(keys));
	assert_string_equal(keys, "apiVersion,kind,metadata,involvedObject,reason,message,type,"
				  "count,firstTimestamp,lastTimestamp,source");
	assert_null(o->node_name);
	assert_int_equal(o->phase, AEP_PHASE_NONE);
	aep_object_unref(o);
}

static void test_canonical_bytes(void **state)
{
	(void)state;
	/* The same pod, written two ways: key order, label and annotation
	 * order, apiVersion present or not, nil and empty values, numbers
	 * for quantities, time zones, resourceVersion as int or string. */
	const char *a =
	    "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'p','namespace':'default',"
	    "'labels':{'b':'2','a':'1'},'annotations':{'z':'1','y':'2'},'resourceVersion':5,"
	    "'creationTimestamp':'2026-11-25T01:28:38+02:00'},'spec':{'containers':[{'name':"
	    "'c','image':'i','resources':{'limits':{'cpu':1,'memory':0.5}},'args':[]}],"
	    "'nodeName':'','volumes':[]},'status':null}";
	const char *b =
	    "{'spec':{'nodeSelector':{},'containers':[{'args':null,'image':'i','name':'c',"
	    "'resources':{'limits':{'memory':'0.5','cpu':'1'}},'workingDir':''}]},"
	    "'metadata':{'creationTimestamp':'2026-11-24T23:28:38Z','resourceVersion':'5',"
	    "'annotations':{'y':'2','z':'1'},'labels':{'a':'1','b':'2'},'name':'p'},"
	    "'kind':'Pod'}";
	struct aep_object *x = fx_must_decode(a), *y = fx_must_decode(b);
	assert_int_equal(x->len, y->len);
	assert_memory_equal(x->data, y->data, x->len);
	assert_null(x->node_name); /* "" is no node */
	aep_object_unref(x);
	aep_object_unref(y);

	/* Different content gives different bytes. */
	x = fx_must_decode(POD_C("{'name':'c','image':'i'}"));
	y = fx_must_decode(POD_C("{'name':'c','image':'j'}"));
	assert_true(x->len != y->len || memcmp(x->data, y->data, x->len) != 0);
	aep_object_unref(x);
	aep_object_unref(y);
}

static void test_namespace_scope(void **state)
{
	(void)state;
	struct aep_object *o = fx_must_decode(POD_C(C_WEB));
	assert_string_equal(o->meta.ns, "default");
	assert_string_equal(o->meta.uid, "");
	assert_int_equal(o->meta.rv, 0);
	assert_int_equal(o->meta.created_ns, 0);
	assert_int_equal(o->meta.nlabels, 0);
	aep_object_unref(o);

	o = fx_must_decode("{'kind':'Node','metadata':{'name':'n1','namespace':''}}");
	assert_string_equal(o->meta.ns, "");
	assert_null(o->node_name);
	aep_object_unref(o);
}

/* ---- validation --------------------------------------------------------------- */

struct bad {
	const char *json;
	int code;
	const char *msg;
};

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static void check_bad(int i, const char *json, int code, const char *want)
{
	struct aep_error e = {0};
	struct aep_object *o = NULL;
	int rc = fx_decode_json(json, &o, &e);
	if (rc != code || strstr(e.msg, want) == NULL)
		fail_msg("case %d: got %s \"%s\", want %s \"%s\"\n  input: %.300s", i,
			 aep_err_code(rc), e.msg, aep_err_code(code), want, json);
	assert_null(o);
}

static void test_invalid_table(void **state)
{
	(void)state;
	static const struct bad cases[] = {
	    {"{'kind':'Pod','metadata':{'name':'Web_1'},'spec':{'containers':[" C_WEB "]}}",
	     AEP_EINVALID,
	     "metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain"},
	    {"{'kind':'Pod','metadata':{},'spec':{'containers':[" C_WEB "]}}", AEP_EINVALID,
	     "metadata.name: Required value"},
	    {"{'kind':'Pod','metadata':{'name':''},'spec':{'containers':[" C_WEB "]}}",
	     AEP_EINVALID, "metadata.name: Required value"},
	    {"{'kind':'Pod','spec':{'containers':[" C_WEB "]}}", AEP_EINVALID,
	     "metadata: Required value"},
	    {"{'kind':'Pod','metadata':'p','spec':{'containers':[" C_WEB "]}}", AEP_EINVALID,
	     "metadata: must be an object, not a string"},
	    {"{'kind':'Pod','metadata':{'name':'p','namespace':'Bad_NS'},'spec':{'containers':"
	     "[" C_WEB "]}}",
	     AEP_EINVALID, "metadata.namespace: Invalid value: \"Bad_NS\""},
	    {"{'kind':'Node','metadata':{'name':'n','namespace':'default'}}", AEP_EINVALID,
	     "metadata.namespace: not allowed: Node is cluster-scoped"},
	    {"{'kind':'Namespace','metadata':{'name':'a.b'}}", AEP_EINVALID,
	     "metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label"},
	    {"{'kind':'Pod','metadata':{'name':'p','labels':{'a b':'x'}},'spec':{'containers':"
	     "[" C_WEB "]}}",
	     AEP_EINVALID,
	     "metadata.labels: key \"a b\": name part must consist of alphanumeric characters, "
	     "'-', '_' or '.', and must start and end with an alphanumeric character"},
	    {"{'kind':'Pod','metadata':{'name':'p','labels':{'Bad_.com/x':'y'}},'spec':{"
	     "'containers':[" C_WEB "]}}",
	     AEP_EINVALID, "metadata.labels: key \"Bad_.com/x\": prefix part"},
	    {"{'kind':'Pod','metadata':{'name':'p','labels':{'app':'-web'}},'spec':{"
	     "'containers':[" C_WEB "]}}",
	     AEP_EINVALID, "metadata.labels: key \"app\": value \"-web\": a valid label"},
	    {"{'kind':'Pod','metadata':{'name':'p','labels':{'app':3}},'spec':{"
	     "'containers':[" C_WEB "]}}",
	     AEP_EINVALID, "metadata.labels: key \"app\": value must be a string"},
	    {"{'kind':'Pod','metadata':{'name':'p','labels':{'a':'1','b':'2','a':'3'}},"
	     "'spec':{'containers':[" C_WEB "]}}",
	     AEP_EINVALID, "metadata.labels: duplicate key \"a\""},
	    {"{'kind':'Node','metadata':{'name':'n','annotations':{'k':'1','k':'2'}}}",
	     AEP_EINVALID, "metadata.annotations: duplicate key \"k\""},
	    {"{'kind':'Node','metadata':{'name':'n','annotations':{'a b':'1'}}}", AEP_EINVALID,
	     "metadata.annotations: key \"a b\": name part"},
	    {"{'kind':'Pod','metadata':{'name':'p','labels':['a']},'spec':{"
	     "'containers':[" C_WEB "]}}",
	     AEP_EINVALID, "metadata.labels: must be an object, not a list"},
	    {"{'kind':'Pod','metadata':{'name':'p','selfLink':'/x'},'spec':{'containers':[" C_WEB
	     "]}}",
	     AEP_EINVALID, "metadata.selfLink: unknown field"},
	    {"{'kind':'Pod','metadata':{'name':'p'},'foo':1,'spec':{'containers':[" C_WEB "]}}",
	     AEP_EINVALID, "foo: unknown field"},
	    {POD_SPEC("{'foo':1,'containers':[" C_WEB "]}"), AEP_EINVALID,
	     "spec.foo: unknown field"},
	    {POD_C(C_WEB ",{'name':'b','image':'x','ports':[{'containerPort':80,'bogus':1}]}"),
	     AEP_EINVALID, "spec.containers[1].ports[0].bogus: unknown field"},
	    {POD_C(C_WEB ",{'name':'b','image':'x','ports':[{'containerPort':70000}]}"),
	     AEP_EINVALID,
	     "spec.containers[1].ports[0].containerPort: must be between 1 and 65535"},
	    {POD_C("{'name':'b','image':'x','ports':[{'containerPort':0}]}"), AEP_EINVALID,
	     "spec.containers[0].ports[0].containerPort: must be between 1 and 65535"},
	    {POD_C("{'name':'b','image':'x','ports':[{'containerPort':'80'}]}"), AEP_EINVALID,
	     "spec.containers[0].ports[0].containerPort: must be an integer, not a string"},
	    {POD_C("{'name':'b','image':'x','ports':[{'containerPort':80.5}]}"), AEP_EINVALID,
	     "containerPort: must be an integer within int64 range"},
	    {POD_C("{'name':'b','image':'x','ports':[{'containerPort':80,'protocol':'HTTP'}]}"),
	     AEP_EINVALID,
	     "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported "
	     "values: \"TCP\", \"UDP\", \"SCTP\""},
	    {POD_SPEC("{'restartPolicy':'Sometimes','containers':[" C_WEB "]}"), AEP_EINVALID,
	     "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: "
	     "\"Always\", \"OnFailure\", \"Never\""},
	    {"{'apiVersion':'v2','kind':'Pod','metadata':{'name':'p'},'spec':{'containers':[" C_WEB
	     "]}}",
	     AEP_EINVALID, "apiVersion: Unsupported value: \"v2\""},
	    {"{'metadata':{'name':'p'}}", AEP_EINVALID, "kind: Required value"},
	    {"{'kind':'Deployment','metadata':{'name':'p'}}", AEP_EINVALID,
	     "kind: Unsupported value: \"Deployment\""},
	    {"{'kind':'pod','metadata':{'name':'p'}}", AEP_EINVALID,
	     "kind: Unsupported value: \"pod\""},
	    {"{'kind':7,'metadata':{'name':'p'}}", AEP_EINVALID, "kind: must be a string"},
	    {"['kind','Pod']", AEP_EINVALID, "an object must be a map, not a list"},
	    {"{'kind':'Pod','metadata':{'name':'p'}}", AEP_EINVALID, "spec: Required value"},
	    {POD_SPEC("{}"), AEP_EINVALID, "spec.containers: Required value"},
	    {POD_SPEC("{'containers':[]}"), AEP_EINVALID, "spec.containers: Required value"},
	    {POD_SPEC("[]"), AEP_EINVALID, "spec: must be an object, not a list"},
	    {POD_C("{'name':'web'}"), AEP_EINVALID, "spec.containers[0].image: Required value"},
	    {POD_C("{'name':'Web','image':'x'}"), AEP_EINVALID,
	     "spec.containers[0].name: Invalid value: \"Web\""},
	    {POD_C(C_WEB "," C_WEB), AEP_EINVALID,
	     "spec.containers[1].name: Duplicate value: \"web\""},
	    {POD_SPEC("{'hostNetwork':'yes','containers':[" C_WEB "]}"), AEP_EINVALID,
	     "spec.hostNetwork: must be a boolean, not a string"},
	    {POD_SPEC("{'terminationGracePeriodSeconds':-1,'containers':[" C_WEB "]}"),
	     AEP_EINVALID,
	     "spec.terminationGracePeriodSeconds: must be greater than or equal to 0"},
	    {POD_SPEC("{'nodeName':'Node_1','containers':[" C_WEB "]}"), AEP_EINVALID,
	     "spec.nodeName: Invalid value"},
	    {POD_SPEC("{'nodeName':'a','nodeName':'b','containers':[" C_WEB "]}"), AEP_EINVALID,
	     "spec.nodeName: duplicate field"},
	    {POD_C("{'name':'w','image':'x','resources':{'requests':{'cpu':'lots'}}}"),
	     AEP_EINVALID,
	     "spec.containers[0].resources.requests.cpu: Invalid value: \"lots\": quantities"},
	    {POD_C("{'name':'w','image':'x','resources':{'limits':{'memory':-1}}}"), AEP_EINVALID,
	     "spec.containers[0].resources.limits.memory: must be greater than or equal to 0"},
	    {POD_C("{'name':'w','image':'x','resources':{'limits':{'gpu':1}}}"), AEP_EINVALID,
	     "spec.containers[0].resources.limits.gpu: unknown field"},
	    {POD_C("{'name':'w','image':'x','env':[{'name':'1X','value':'v'}]}"), AEP_EINVALID,
	     "spec.containers[0].env[0].name: Invalid value: \"1X\""},
	    {POD_C("{'name':'w','image':'x','command':['a',2]}"), AEP_EINVALID,
	     "spec.containers[0].command[1]: must be a string, not an integer"},
	    {POD_SPEC("{'containers':[" C_WEB "],'volumes':[{'name':'v'},{'name':'v'}]}"),
	     AEP_EINVALID, "spec.volumes[1].name: Duplicate value: \"v\""},
	    {"{'kind':'Pod','metadata':{'name':'p','uid':'0123456789012345678901234567890123456789'"
	     "},"
	     "'spec':{'containers':[" C_WEB "]}}",
	     AEP_EINVALID, "metadata.uid: must be no more than 39 bytes"},
	    {"{'kind':'Pod','metadata':{'name':'p','resourceVersion':'12a'},'spec':{"
	     "'containers':[" C_WEB "]}}",
	     AEP_EINVALID, "metadata.resourceVersion: Invalid value: \"12a\""},
	    {"{'kind':'Pod','metadata':{'name':'p','resourceVersion':-3},'spec':{"
	     "'containers':[" C_WEB "]}}",
	     AEP_EINVALID, "metadata.resourceVersion: must be a string, not an integer"},
	    {"{'kind':'Pod','metadata':{'name':'p','creationTimestamp':'yesterday'},'spec':{"
	     "'containers':[" C_WEB "]}}",
	     AEP_EINVALID, "metadata.creationTimestamp: Invalid value: \"yesterday\""},
	    {"{'kind':'Pod','metadata':{'name':'p','generation':'1'},'spec':{"
	     "'containers':[" C_WEB "]}}",
	     AEP_EINVALID, "metadata.generation: must be an integer, not a string"},
	    {"{'kind':'ReplicationController','metadata':{'name':'r'},'spec':{'replicas':-1,"
	     "'template':{'spec':{'containers':[" C_WEB "]}}}}",
	     AEP_EINVALID, "spec.replicas: must be greater than or equal to 0"},
	    {"{'kind':'ReplicationController','metadata':{'name':'r'},'spec':{'replicas':1}}",
	     AEP_EINVALID, "spec.template: Required value"},
	    {"{'kind':'ReplicationController','metadata':{'name':'r'},'spec':{'selector':{"
	     "'app':'web'},'template':{'metadata':{'labels':{'app':'db'}},'spec':{"
	     "'containers':[" C_WEB "]}}}}",
	     AEP_EINVALID, "spec.template.metadata.labels: selector does not match"},
	    {"{'kind':'ReplicationController','metadata':{'name':'r'},'spec':{'template':{"
	     "'spec':{'restartPolicy':'Never','containers':[" C_WEB "]}}}}",
	     AEP_EINVALID,
	     "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: "
	     "\"Always\""},
	    {"{'kind':'ReplicationController','metadata':{'name':'r'},'spec':{'template':{"
	     "'spec':{'containers':[{'name':'w','image':'x','ports':[{'containerPort':1e6}]}]}}"
	     "}}",
	     AEP_EINVALID,
	     "spec.template.spec.containers[0].ports[0].containerPort: must be between"},
	    {"{'kind':'Service','metadata':{'name':'s'},'spec':{'ports':[{'port':0}]}}",
	     AEP_EINVALID, "spec.ports[0].port: must be between 1 and 65535"},
	    {"{'kind':'Service','metadata':{'name':'s'},'spec':{'ports':[{'name':'p'}]}}",
	     AEP_EINVALID, "spec.ports[0].port: Required value"},
	    {"{'kind':'Service','metadata':{'name':'s'},'spec':{'type':'External'}}", AEP_EINVALID,
	     "spec.type: Unsupported value: \"External\""},
	    {"{'kind':'Service','metadata':{'name':'s'},'spec':{'ports':[{'port':80,"
	     "'targetPort':'Bad_Name'}]}}",
	     AEP_EINVALID, "spec.ports[0].targetPort: Invalid value: \"Bad_Name\""},
	    {"{'kind':'Service','metadata':{'name':'s'},'spec':{'ports':[{'port':80,"
	     "'targetPort':true}]}}",
	     AEP_EINVALID, "spec.ports[0].targetPort: must be an integer or a string"},
	    {"{'kind':'Service','metadata':{'name':'s'},'spec':{'clusterIP':'10.0.0.300'}}",
	     AEP_EINVALID, "spec.clusterIP: Invalid value: \"10.0.0.300\""},
	    {"{'kind':'Endpoints','metadata':{'name':'e'},'subsets':[{'addresses':[{'ip':"
	     "'10.1.0.300'}]}]}",
	     AEP_EINVALID, "subsets[0].addresses[0].ip: Invalid value: \"10.1.0.300\""},
	    {"{'kind':'Endpoints','metadata':{'name':'e'},'spec':{}}", AEP_EINVALID,
	     "spec: unknown field"},
	    {"{'kind':'Event','metadata':{'name':'e'},'involvedObject':{'name':'x'},'type':"
	     "'Info'}",
	     AEP_EINVALID, "type: Unsupported value: \"Info\""},
	    {"{'kind':'Event','metadata':{'name':'e'}}", AEP_EINVALID,
	     "involvedObject: Required value"},
	    {"{'kind':'Node','metadata':{'name':'n'},'spec':{'taints':[{'key':'k',"
	     "'effect':'Sometimes'}]}}",
	     AEP_EINVALID, "spec.taints[0].effect: Unsupported value"},
	    {"{'kind':'Node','metadata':{'name':'n'},'spec':{'podCIDR':'10.1.0.0/33'}}",
	     AEP_EINVALID, "spec.podCIDR: Invalid value: \"10.1.0.0/33\""},
	    {"{'kind':'Node','metadata':{'name':'n'},'status':{'capacity':{'cpu':'1.5x'}}}",
	     AEP_EINVALID, "status.capacity.cpu: Invalid value"},
	    {"{'kind':'Node','metadata':{'name':'n'},'status':{'conditions':[{'type':'Ready',"
	     "'status':'Yes'}]}}",
	     AEP_EINVALID, "status.conditions[0].status: Unsupported value: \"Yes\""},
	    {"{'kind':'Namespace','metadata':{'name':'n'},'status':{'phase':'Gone'}}", AEP_EINVALID,
	     "status.phase: Unsupported value: \"Gone\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_bad((int)i, cases[i].json, cases[i].code, cases[i].msg);
	assert_true(sizeof(cases) / sizeof(cases[0]) >= 30);
}

/* Inputs built at run time: sizes at and past the limits. */
static void test_invalid_sizes(void **state)
{
	(void)state;
	struct aep_buf j;
	char *s;

	/* 64 labels pass, 65 fail. */
	for (int n = 64; n <= 65; n++) {
		aep_buf_init(&j);
		aep_buf_printf(&j, "{'kind':'Pod','metadata':{'name':'p','labels':{");
		for (int i = 0; i < n; i++)
			aep_buf_printf(&j, "%s'k%02d':'v'", i ? "," : "", i);
		aep_buf_printf(&j, "}},'spec':{'containers':[" C_WEB "]}}");
		aep_buf_append(&j, "", 1);
		if (n == 64) {
			struct aep_object *o = fx_must_decode(j.data);
			assert_int_equal(o->meta.nlabels, 64);
			assert_string_equal(o->meta.labels[63].key, "k63");
			aep_object_unref(o);
		} else {
			check_bad(n, j.data, AEP_EINVALID,
				  "metadata.labels: must have at most 64 labels, not 65");
		}
		aep_buf_free(&j);
	}

	/* Name: 253 pass, 254 fail. Label values: 63 pass, 64 fail. */
	s = repeat('a', 254);
	aep_buf_init(&j);
	aep_buf_printf(&j, "{'kind':'Node','metadata':{'name':'%.253s'}}", s);
	aep_buf_append(&j, "", 1);
	aep_object_unref(fx_must_decode(j.data));
	aep_buf_reset(&j);
	aep_buf_printf(&j, "{'kind':'Node','metadata':{'name':'%s'}}", s);
	aep_buf_append(&j, "", 1);
	check_bad(1, j.data, AEP_EINVALID, "metadata.name: Invalid value: \"aaaa");
	check_bad(1, j.data, AEP_EINVALID, "must be no more than 253 characters");
	aep_buf_reset(&j);
	aep_buf_printf(&j, "{'kind':'Node','metadata':{'name':'n','labels':{'k':'%.63s'}}}", s);
	aep_buf_append(&j, "", 1);
	aep_object_unref(fx_must_decode(j.data));
	aep_buf_reset(&j);
	aep_buf_printf(&j, "{'kind':'Node','metadata':{'name':'n','labels':{'k':'%.64s'}}}", s);
	aep_buf_append(&j, "", 1);
	check_bad(2, j.data, AEP_EINVALID, "must be no more than 63 characters");
	aep_buf_reset(&j);
	aep_buf_printf(&j, "{'kind':'Node','metadata':{'name':'n','labels':{'%.64s':'v'}}}", s);
	aep_buf_append(&j, "", 1);
	check_bad(3, j.data, AEP_EINVALID, "name part must be no more than 63 characters");
	aep_buf_free(&j);
	free(s);

	/* Annotations: 256 KiB in total. */
	s = repeat('x', 128 * 1024);
	aep_buf_init(&j);
	aep_buf_printf(&j,
		       "{'kind':'Node','metadata':{'name':'n','annotations':{'a':'%s',"
		       "'b':'%s'}}}",
		       s, s);
	aep_buf_append(&j, "", 1);
	check_bad(4, j.data, AEP_EINVALID,
		  "metadata.annotations: Too long: must have at most "
		  "262144 bytes");
	aep_buf_free(&j);
	free(s);

	/* A whole object over AEP_OBJECT_MAX. */
	s = repeat('m', AEP_OBJECT_MAX);
	aep_buf_init(&j);
	aep_buf_printf(&j,
		       "{'kind':'Node','metadata':{'name':'n'},'status':{'conditions':["
		       "{'type':'Ready','status':'True','message':'%s'}]}}",
		       s);
	aep_buf_append(&j, "", 1);
	check_bad(5, j.data, AEP_ETOOLARGE, "exceeds the limit");
	/* The same through from_msgpack: the encoder stops at the limit. */
	{
		struct aep_buf b;
		msgpack_zone z;
		msgpack_object obj;
		size_t off = 0;
		struct aep_error e = {0};
		struct aep_object *o = NULL;
		fx_mp(j.data, &b);
		msgpack_zone_init(&z, 1024);
		assert_int_equal(msgpack_unpack(b.data, b.len, &off, &z, &obj),
				 MSGPACK_UNPACK_SUCCESS);
		assert_int_equal(aep_object_from_msgpack(&obj, &o, &e), AEP_ETOOLARGE);
		assert_null(o);
		msgpack_zone_destroy(&z);
		aep_buf_free(&b);
	}
	aep_buf_free(&j);
	free(s);
}

static void test_bad_msgpack(void **state)
{
	(void)state;
	struct aep_buf b;
	struct aep_error e = {0};
	struct aep_object *o = NULL;

	fx_mp(POD_C(C_WEB), &b);
	assert_int_equal(aep_object_decode(b.data, b.len - 1, &o, &e), AEP_EBADREQUEST);
	assert_non_null(strstr(e.msg, "truncated"));
	aep_buf_append(&b, "\xc0", 1);
	assert_int_equal(aep_object_decode(b.data, b.len, &o, &e), AEP_EBADREQUEST);
	assert_non_null(strstr(e.msg, "trailing"));
	assert_int_equal(aep_object_decode("\xc1", 1, &o, &e), AEP_EBADREQUEST);
	assert_int_equal(aep_object_decode("", 0, &o, &e), AEP_EBADREQUEST);
	/* A map header that claims more entries than there are bytes. */
	assert_int_equal(aep_object_decode("\xdf\xff\xff\xff\xff", 5, &o, &e), AEP_ETOOLARGE);
	assert_null(o);
	aep_buf_free(&b);
}

/* ---- stamp ------------------------------------------------------------------ */

static void test_stamp(void **state)
{
	(void)state;
	const int64_t t = 1795562918123456789LL;
	struct aep_object *o = fx_must_decode(
	    "{'kind':'Pod','metadata':{'name':'p','namespace':'ns1','labels':{'b':'2','a':'1'},"
	    "'annotations':{'k':'v'}},'spec':{'nodeName':'n1','containers':[" C_WEB "]}}");
	struct aep_object *s1 = NULL, *s2 = NULL, *s3 = NULL, *back = NULL;
	struct aep_error e = {0};

	assert_int_equal(aep_object_stamp(o, "uid-1", AEP_REV(7, 1), t, 1, &s1), 0);
	assert_string_equal(s1->meta.uid, "uid-1");
	assert_int_equal(s1->meta.rv, AEP_REV(7, 1));
	assert_int_equal(s1->meta.created_ns, t);
	assert_int_equal(s1->meta.generation, 1);
	assert_string_equal(s1->meta.name, "p");
	assert_string_equal(s1->meta.ns, "ns1");
	assert_string_equal(s1->node_name, "n1");
	assert_int_equal(s1->meta.nlabels, 2);
	assert_string_equal(s1->meta.labels[0].key, "a");
	assert_int_equal(s1->refs, 1);
	/* @o is untouched. */
	assert_string_equal(o->meta.uid, "");
	assert_int_equal(o->meta.rv, 0);

	/* The stamped encoding decodes to the same object and bytes. */
	assert_int_equal(aep_object_decode(s1->data, s1->len, &back, &e), 0);
	fx_assert_meta_equal(s1, back);
	assert_int_equal(back->len, s1->len);
	assert_memory_equal(back->data, s1->data, s1->len);
	aep_object_unref(back);

	/* Keep rules: NULL uid, negative created and generation keep. */
	assert_int_equal(aep_object_stamp(s1, NULL, 99, -1, -1, &s2), 0);
	assert_string_equal(s2->meta.uid, "uid-1");
	assert_int_equal(s2->meta.rv, 99);
	assert_int_equal(s2->meta.created_ns, t);
	assert_int_equal(s2->meta.generation, 1);

	/* Clearing everything gives the unstamped bytes back. */
	assert_int_equal(aep_object_stamp(s2, "", 0, 0, 0, &s3), 0);
	assert_int_equal(s3->len, o->len);
	assert_memory_equal(s3->data, o->data, o->len);

	/* The time is in the encoding as RFC 3339. */
	assert_non_null(memmem(s1->data, s1->len, "2026-11-24T23:28:38.123456789Z", 30));
	assert_non_null(memmem(s1->data, s1->len, "annotations", 11));

	aep_object_unref(o);
	aep_object_unref(s1);
	aep_object_unref(s2);
	aep_object_unref(s3);
}

static void test_stamp_every_kind(void **state)
{
	(void)state;
	for (size_t i = 0; i < fx_all_kinds_n; i++) {
		struct aep_object *o =
		    fx_must_decode(fx_all_kinds[i] ? fx_all_kinds[i] : fx_pod_full);
		struct aep_object *s = NULL, *back = NULL;
		struct aep_error e = {0};
		assert_int_equal(aep_object_stamp(o, "u", 12345, 1000000000, 3, &s), 0);
		assert_int_equal(aep_object_decode(s->data, s->len, &back, &e), 0);
		fx_assert_meta_equal(s, back);
		assert_memory_equal(back->data, s->data, s->len);
		assert_int_equal(back->meta.rv, 12345);
		assert_string_equal(back->meta.ns, o->meta.ns);
		aep_object_unref(o);
		aep_object_unref(s);
		aep_object_unref(back);
	}
}

static void test_refcount(void **state)
{
	(void)state;
	struct aep_object *o = fx_must_decode(POD_C(C_WEB));
	assert_int_equal(o->refs, 1);
	assert_ptr_equal(aep_object_ref(o), o);
	assert_int_equal(o->refs, 2);
	aep_object_unref(o);
	assert_int_equal(o->refs, 1);
	assert_string_equal(o->meta.name, "p");
	aep_object_unref(o); /* freed: ASan reports a leak otherwise */
	aep_object_unref(NULL);
}

/* ---- time ------------------------------------------------------------------ */

static void test_time(void **state)
{
	(void)state;
	char buf[32];
	int64_t ns;
	static const struct {
		int64_t ns;
		const char *s;
	} fmt[] = {
	    {0, "1970-01-01T00:00:00Z"},
	    {1795562918LL * 1000000000LL, "2026-11-24T23:28:38Z"},
	    {1709208000LL * 1000000000LL + 500000000, "2024-02-29T12:00:00.5Z"},
	    {-1000000000LL, "1969-12-31T23:59:59Z"},
	    {-1, "1969-12-31T23:59:59.999999999Z"},
	    {INT64_MAX, "2262-04-11T23:47:16.854775807Z"},
	    {INT64_MIN, "1677-09-21T00:12:43.145224192Z"},
	};
	for (size_t i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
		aep_time_format(fmt[i].ns, buf, sizeof(buf));
		assert_string_equal(buf, fmt[i].s);
		assert_int_equal(aep_time_parse(buf, strlen(buf), &ns), 0);
		assert_int_equal(ns, fmt[i].ns);
	}
	static const struct {
		const char *s;
		int64_t ns;
	} parse[] = {
	    {"2026-11-25T01:28:38+02:00", 1795562918LL * 1000000000LL},
	    {"2026-11-24t19:28:38-04:00", 1795562918LL * 1000000000LL},
	    {"2026-11-24 23:28:38.1z", 1795562918LL * 1000000000LL + 100000000},
	};
	for (size_t i = 0; i < sizeof(parse) / sizeof(parse[0]); i++) {
		assert_int_equal(aep_time_parse(parse[i].s, strlen(parse[i].s), &ns), 0);
		assert_int_equal(ns, parse[i].ns);
	}
	static const char *const bad[] = {
	    "",
	    "2026-11-24",
	    "2026-11-24T23:28:38",
	    "2026-13-01T00:00:00Z",
	    "2025-02-29T00:00:00Z",
	    "2026-11-24T24:00:00Z",
	    "2026-11-24T23:28:38.Z",
	    "2026-11-24T23:28:38.1234567891Z",
	    "2026-11-24T23:28:38+0200",
	    "2262-04-12T00:00:00Z",
	    "2026-11-24T23:28:38Zjunk",
	    "yesterday",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(aep_time_parse(bad[i], strlen(bad[i]), &ns), AEP_EINVALID);
	assert_int_equal(aep_time_parse("2024-02-29T00:00:00Z", 20, &ns), 0);
	/* Round trip over a sweep of instants. */
	for (int64_t x = -5000000000000000000LL; x < 5000000000000000000LL;
	     x += 77777777777777777LL) {
		aep_time_format(x, buf, sizeof(buf));
		assert_int_equal(aep_time_parse(buf, strlen(buf), &ns), 0);
		assert_int_equal(ns, x);
	}
}

/* ---- validators ------------------------------------------------------------ */

static void test_validators(void **state)
{
	(void)state;
	struct aep_error e = {0};
	char *s = repeat('a', 254);
#define OK(f, x)  assert_int_equal(f(x, strlen(x), &e), 0)
#define BAD(f, x) assert_int_equal(f(x, strlen(x), &e), AEP_EINVALID)
	OK(aep_validate_dns1123_label, "a");
	OK(aep_validate_dns1123_label, "web-1");
	BAD(aep_validate_dns1123_label, "");
	BAD(aep_validate_dns1123_label, "-a");
	BAD(aep_validate_dns1123_label, "a-");
	BAD(aep_validate_dns1123_label, "a.b");
	BAD(aep_validate_dns1123_label, "A");
	OK(aep_validate_dns1123_subdomain, "a.b-c.d");
	BAD(aep_validate_dns1123_subdomain, "a..b");
	BAD(aep_validate_dns1123_subdomain, ".a");
	BAD(aep_validate_dns1123_subdomain, "a_b");
	assert_int_equal(aep_validate_dns1123_label(s, 63, &e), 0);
	assert_int_equal(aep_validate_dns1123_label(s, 64, &e), AEP_EINVALID);
	assert_int_equal(aep_validate_dns1123_subdomain(s, 253, &e), 0);
	assert_int_equal(aep_validate_dns1123_subdomain(s, 254, &e), AEP_EINVALID);
	OK(aep_validate_label_key, "app");
	OK(aep_validate_label_key, "App_1.x-y");
	OK(aep_validate_label_key, "example.com/app");
	BAD(aep_validate_label_key, "");
	BAD(aep_validate_label_key, "/app");
	BAD(aep_validate_label_key, "example.com/");
	BAD(aep_validate_label_key, "a/b/c");
	BAD(aep_validate_label_key, "_app");
	BAD(aep_validate_label_key, "Example.com/app");
	OK(aep_validate_label_value, "");
	OK(aep_validate_label_value, "v1.2_x-Y");
	BAD(aep_validate_label_value, "v ");
	BAD(aep_validate_label_value, "-v");
	assert_int_equal(aep_validate_label_value("a\0b", 3, &e), AEP_EINVALID);
	assert_non_null(strstr(e.msg, "alphanumeric"));
#undef OK
#undef BAD
	free(s);
}

/* ---- allocation failures ---------------------------------------------------- */

/* An object that allocates several times: annotations and containers past
 * the on-stack limits, and an encoding past the stack buffer. */
static char *big_json(void)
{
	struct aep_buf j;
	aep_buf_init(&j);
	aep_buf_printf(&j, "{'kind':'Pod','metadata':{'name':'big','labels':{'a':'1','b':'2'},"
			   "'annotations':{");
	for (int i = 0; i < 80; i++)
		aep_buf_printf(&j, "%s'note-%03d':'value %d'", i ? "," : "", 79 - i, i);
	aep_buf_printf(&j, "}},'spec':{'nodeName':'n1','containers':[");
	for (int i = 0; i < 20; i++)
		aep_buf_printf(&j, "%s{'name':'c%d','image':'img','args':['x','y']}", i ? "," : "",
			       19 - i);
	aep_buf_printf(&j, "]}}");
	aep_buf_append(&j, "", 1);
	return j.data;
}

static void test_alloc_failure_sweep(void **state)
{
	(void)state;
	char *json = big_json();
	struct aep_buf b;
	int rc = -1;
	long n;

	fx_mp(json, &b);
	for (n = 1; n < 1000; n++) {
		struct aep_error e = {0};
		struct aep_object *o = NULL;
		aep_heap_fault_after(n);
		rc = aep_object_decode(b.data, b.len, &o, &e);
		aep_heap_fault_off();
		if (rc == 0) {
			assert_int_equal(o->meta.nlabels, 2);
			aep_object_unref(o);
			break;
		}
		assert_int_equal(rc, AEP_ENOMEM);
		assert_int_equal(e.code, AEP_ENOMEM);
		assert_null(o);
	}
	assert_int_equal(rc, 0);
	assert_true(n > 3); /* the sweep did fail some allocations */

	/* The same for stamp. */
	struct aep_error e = {0};
	struct aep_object *o = NULL;
	assert_int_equal(aep_object_decode(b.data, b.len, &o, &e), 0);
	for (n = 1; n < 1000; n++) {
		struct aep_object *s = NULL;
		aep_heap_fault_after(n);
		rc = aep_object_stamp(o, "uid", 5, 1, 1, &s);
		aep_heap_fault_off();
		if (rc == 0) {
			assert_string_equal(s->meta.uid, "uid");
			aep_object_unref(s);
			break;
		}
		assert_int_equal(rc, AEP_ENOMEM);
		assert_null(s);
	}
	assert_int_equal(rc, 0);
	assert_true(n > 1);
	aep_object_unref(o);
	aep_buf_free(&b);
	aep_free(json);
}

/* Quantities as the scheduler counts them: milli-units, fractions of a
 * milli-unit rounded up, overflow refused. */
static void test_quantity(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int64_t milli;
	} ok[] = {
	    {"100m", 100},
	    {"2", 2000},
	    {"0.5", 500},
	    {"1Ki", 1024000},
	    {"64Mi", 67108864000},
	    {"1.5G", 1500000000000},
	    {"1e3", 1000000},
	    {"1E-3", 1},
	    {"1n", 1},
	    {"+3k", 3000000},
	    {"16Gi", 17179869184000},
	    {"0", 0},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct aep_error e = {0};
		int64_t v = -1;
		assert_int_equal(aep_quantity_parse(ok[i].in, strlen(ok[i].in), &v, &e), 0);
		assert_int_equal(v, ok[i].milli);
	}
	static const char *const bad[] = {"", "-1", "1x", "10Ei", "99999999999999999999", "m"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct aep_error e = {0};
		int64_t v = 7;
		assert_int_equal(aep_quantity_parse(bad[i], strlen(bad[i]), &v, &e), AEP_EINVALID);
		assert_int_equal(v, 7);
		assert_true(e.msg[0] != '\0');
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kind_table),	    cmocka_unit_test(test_roundtrip_every_kind),
	    cmocka_unit_test(test_pod_fields),	    cmocka_unit_test(test_canonical_bytes),
	    cmocka_unit_test(test_namespace_scope), cmocka_unit_test(test_invalid_table),
	    cmocka_unit_test(test_invalid_sizes),   cmocka_unit_test(test_bad_msgpack),
	    cmocka_unit_test(test_stamp),	    cmocka_unit_test(test_stamp_every_kind),
	    cmocka_unit_test(test_refcount),	    cmocka_unit_test(test_time),
	    cmocka_unit_test(test_validators),	    cmocka_unit_test(test_alloc_failure_sweep),
	    cmocka_unit_test(test_quantity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
