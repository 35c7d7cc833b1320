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

/* ---- a JSON-ish writer: JSON with 'single' or "double" quoted strings --- */

struct js {
	const char *p;
};

static void js_ws(struct js *j)
{
	while (*j->p == ' ' || *j->p == '\n' || *j->p == '\t')
		j->p++;
}

/* Elements of the container whose opening bracket is at @p. */
static uint32_t js_count(const char *p)
{
	int depth = 0;
	uint32_t n = 0;
	bool any = false;
	char q = 0;
	for (p++;; p++) {
		if (q) {
			if (*p == '\\')
				p++;
			else if (*p == q)
				q = 0;
			continue;
		}
		switch (*p) {
		case '\'':
		case '"':
			q = *p;
			any = true;
			break;
		case '{':
		case '[':
			depth++;
			any = true;
			break;
		case '}':
		case ']':
			if (depth-- == 0)
				return any ? n + 1 : 0;
			break;
		case ',':
			if (depth == 0)
				n++;
			break;
		case ' ':
		case '\n':
		case '\t': break;
		case '\0': fail_msg("unterminated JSON"); return 0;
		default: any = true; break;
		}
	}
}

static void js_value(struct js *j, msgpack_packer *pk);

static void js_string(struct js *j, msgpack_packer *pk)
{
	char q = *j->p++;
	struct aep_buf b;
	aep_buf_init(&b);
	while (*j->p != q) {
		assert_true(*j->p != '\0');
		if (*j->p == '\\') {
			j->p++;
			char c = *j->p == 'n' ? '\n' : *j->p;
			aep_buf_append(&b, &c, 1);
		} else {
			aep_buf_append(&b, j->p, 1);
		}
		j->p++;
	}
	j->p++;
	aep_pack_strn(pk, b.data ? b.data : "", b.len);
	aep_buf_free(&b);
}

static void js_value(struct js *j, msgpack_packer *pk)
{
	js_ws(j);
	char c = *j->p;
	if (c == '{' || c == '[') {
		uint32_t n = js_count(j->p);
		char close = c == '{' ? '}' : ']';
		if (c == '{')
			msgpack_pack_map(pk, n);
		else
			msgpack_pack_array(pk, n);
		j->p++;
		for (uint32_t i = 0; i < n; i++) {
			js_ws(j);
			if (i > 0) {
				assert_int_equal(*j->p, ',');
				j->p++;
			}
			js_value(j, pk);
			if (c == '{') {
				js_ws(j);
				assert_int_equal(*j->p, ':');
				j->p++;
				js_value(j, pk);
			}
		}
		js_ws(j);
		assert_int_equal(*j->p, close);
		j->p++;
	} else if (c == '\'' || c == '"') {
		js_string(j, pk);
	} else if (strncmp(j->p, "true", 4) == 0) {
		msgpack_pack_true(pk);
		j->p += 4;
	} else if (strncmp(j->p, "false", 5) == 0) {
		msgpack_pack_false(pk);
		j->p += 5;
	} else if (strncmp(j->p, "null", 4) == 0) {
		msgpack_pack_nil(pk);
		j->p += 4;
	} else {
		char *end;
		size_t n = strspn(j->p, "-+0123456789.eE");
		assert_true(n > 0);
		if (memchr(j->p, '.', n) || memchr(j->p, 'e', n) || memchr(j->p, 'E', n)) {
			msgpack_pack_double(pk, strtod(j->p, &end));
		} else if (*j->p == '-') {
			msgpack_pack_int64(pk, strtoll(j->p, &end, 10));
		} else {
			msgpack_pack_uint64(pk, strtoull(j->p, &end, 10));
		}
		j->p = end;
	}
}

/* The msgpack of @json, in @b (aep_buf_free it). */
void fx_mp(const char *json, struct aep_buf *b)
{
	struct js j = {json};
	msgpack_packer pk;
	aep_buf_init(b);
	aep_packer_init(&pk, b);
	js_value(&j, &pk);
	js_ws(&j);
	assert_int_equal(*j.p, '\0');
}

int fx_decode_json(const char *json, struct aep_object **o, struct aep_error *e)
{
	struct aep_buf b;
	fx_mp(json, &b);
	int rc = aep_object_decode(b.data, b.len, o, e);
	aep_buf_free(&b);
	return rc;
}

struct aep_object *fx_must_decode(const char *json)
{
	struct aep_error e = {0};
	struct aep_object *o = NULL;
	int rc = fx_decode_json(json, &o, &e);
	if (rc != 0)
		fail_msg("decode failed (%s): %s\n  input: %s", aep_err_code(rc), e.msg, json);
	return o;
}

struct aep_object *fx_pod_object(const char *ns, const char *name, const char *labels)
{
	struct aep_buf b;
	struct aep_object *o = NULL;
	struct aep_error e = {0};
	aep_buf_init(&b);
	fx_pod(&b, ns, name, labels, NULL, "busybox");
	if (aep_object_decode(b.data, b.len, &o, &e) != 0)
		fail_msg("pod %s: %s", name, e.msg);
	aep_buf_free(&b);
	return o;
}

/* Objects of every kind in the JSON-ish form (fx_mp); NULL stands for
 * fx_pod_full. */
const char *const fx_pod_full =
    "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'web-1','namespace':'prod',"
    "'uid':'0b7b5c3e-1111-2222-3333-444455556666','resourceVersion':'17',"
    "'creationTimestamp':'2026-11-24T23:28:38Z','generation':2,"
    "'labels':{'app':'web','tier':'front','example.com/team':'a'},"
    "'annotations':{'note':'hello world','example.com/x':''}},"
    "'spec':{'nodeName':'node-1','nodeSelector':{'disk':'ssd'},'restartPolicy':'Always',"
    "'hostNetwork':false,'terminationGracePeriodSeconds':30,"
    "'containers':[{'name':'web','image':'nginx:1.25','command':['nginx'],"
    "'args':['-g','daemon off;'],'workingDir':'/srv','env':[{'name':'MODE','value':'prod'}],"
    "'ports':[{'name':'http','containerPort':80,'hostPort':8080,'protocol':'TCP'}],"
    "'resources':{'requests':{'cpu':'100m','memory':'64Mi'},'limits':{'cpu':1,"
    "'memory':'128Mi'}},'volumeMounts':[{'name':'data','mountPath':'/data','readOnly':true}],"
    "'imagePullPolicy':'IfNotPresent','securityContext':{'readOnlyRootFilesystem':true,"
    "'privileged':false,'runAsUser':1000}},{'name':'side','image':'busybox'}],"
    "'volumes':[{'name':'data','hostPath':{'path':'/var/data'}},{'name':'tmp','emptyDir':{}}]},"
    "'status':{'phase':'Running','podIP':'10.1.0.5','hostIP':'192.168.1.10',"
    "'startTime':'2026-11-24T23:28:40Z','conditions':[{'type':'Ready','status':'True',"
    "'lastTransitionTime':'2026-11-24T23:28:41Z'}],'containerStatuses':[{'name':'web',"
    "'containerID':'crun://abc','image':'nginx:1.25','ready':true,'restartCount':0,"
    "'state':{'running':{'startedAt':'2026-11-24T23:28:40Z'}}},{'name':'side','ready':false,"
    "'restartCount':3,'state':{'terminated':{'exitCode':1,'reason':'Error',"
    "'finishedAt':'2026-11-24T23:29:00Z'}}}]}}";

const char *const fx_all_kinds[] = {
    "{'kind':'Namespace','metadata':{'name':'prod','labels':{'env':'prod'}},"
    "'spec':{'finalizers':['kubernetes']},'status':{'phase':'Active'}}",

    "{'kind':'Node','metadata':{'name':'node-1.example.com'},'spec':{'podCIDR':'10.1.1.0/24',"
    "'unschedulable':true,'providerID':'aep://node-1','taints':[{'key':'dedicated',"
    "'value':'db','effect':'NoSchedule'}]},'status':{'capacity':{'cpu':'4',"
    "'memory':'8Gi','pods':110},'allocatable':{'cpu':'3500m','memory':'7Gi','pods':'110'},"
    "'conditions':[{'type':'Ready','status':'True','reason':'KubeletReady','message':'ok',"
    "'lastHeartbeatTime':'2026-11-24T23:28:38Z','lastTransitionTime':"
    "'2026-11-24T23:00:00Z'}],'addresses':[{'type':'InternalIP','address':'192.168.1.10'},"
    "{'type':'Hostname','address':'node-1'}],'nodeInfo':{'kernelVersion':'6.1.0',"
    "'osImage':'Debian','containerRuntimeVersion':'crun 1.8','architecture':'amd64'},"
    "'phase':'Running'}}",

    NULL, /* pod_full */

    "{'kind':'ReplicationController','metadata':{'name':'web','namespace':'prod'},"
    "'spec':{'replicas':3,'selector':{'app':'web'},'template':{'metadata':{'labels':"
    "{'app':'web','v':'1'},'annotations':{'a':'b'}},'spec':{'restartPolicy':'Always',"
    "'containers':[" C_WEB "]}}},'status':{'replicas':3,'readyReplicas':2,"
    "'availableReplicas':2,'observedGeneration':1}}",

    "{'kind':'Service','metadata':{'name':'web'},'spec':{'selector':{'app':'web'},"
    "'ports':[{'name':'http','port':80,'targetPort':8080,'protocol':'TCP'},{'name':'admin',"
    "'port':9000,'targetPort':'admin','nodePort':30080}],'clusterIP':'10.0.0.10',"
    "'type':'NodePort','sessionAffinity':'ClientIP'},'status':{'loadBalancer':{'ingress':"
    "[{'ip':'203.0.113.7','hostname':'lb.example.com'}]}}}",

    "{'kind':'Endpoints','metadata':{'name':'web','namespace':'prod'},'subsets':[{"
    "'addresses':[{'ip':'10.1.0.5','nodeName':'node-1','hostname':'web-1','targetRef':{"
    "'kind':'Pod','namespace':'prod','name':'web-1','uid':'u-1'}}],'notReadyAddresses':["
    "{'ip':'fd00::5'}],'ports':[{'name':'http','port':8080,'protocol':'TCP'}]}]}",

    "{'kind':'Event','metadata':{'name':'web-1.17a8','namespace':'prod'},'involvedObject':{"
    "'kind':'Pod','namespace':'prod','name':'web-1','uid':'u-1'},'reason':'Scheduled',"
    "'message':'assigned prod/web-1 to node-1','type':'Normal','count':2,"
    "'firstTimestamp':'2026-11-24T23:28:38Z','lastTimestamp':'2026-11-24T23:28:39.5Z',"
    "'source':{'component':'scheduler','host':'master-1'}}",

    "{'kind':'Secret','metadata':{'name':'bootstrap-token-abc123','namespace':'kube-system'},"
    "'type':'aep.io/bootstrap-token','data':{'token-id':'abc123',"
    "'token-secret':'0123456789abcdef','expiration':'2026-11-25T23:28:38Z',"
    "'usage-join':'true','description':'rack 4'}}",
};

const size_t fx_all_kinds_n = sizeof(fx_all_kinds) / sizeof(fx_all_kinds[0]);

/* Apply one command as the entry at @index; returns its result code and
 * leaves the result in *@r (cleared by the caller). */
int fx_apply1(struct aep_store *s, uint64_t index, const struct aep_cmd *c, struct aep_result *r)
{
	struct aep_batch b;
	const char *data;
	size_t len, n;
	struct aep_result *res;
	aep_batch_init(&b);
	assert_int_equal(aep_batch_add(&b, c), 0);
	assert_int_equal(aep_batch_finish(&b, &data, &len), 0);
	assert_int_equal(aep_store_apply(s, index, data, len, &res, &n), 0);
	assert_int_equal(n, 1);
	*r = res[0];
	aep_free(res);
	aep_batch_free(&b);
	return r->code;
}

/* Apply one command as the entry at @index; returns its result code. */
int fx_apply1_code(struct aep_store *s, uint64_t index, const struct aep_cmd *c)
{
	struct aep_batch b;
	const char *data;
	size_t len, n;
	struct aep_result *res;
	aep_batch_init(&b);
	assert_int_equal(aep_batch_add(&b, c), 0);
	assert_int_equal(aep_batch_finish(&b, &data, &len), 0);
	assert_int_equal(aep_store_apply(s, index, data, len, &res, &n), 0);
	assert_int_equal(n, 1);
	int code = res[0].code;
	aep_result_clear(&res[0]);
	aep_free(res);
	aep_batch_free(&b);
	return code;
}

struct aep_store *fx_new_store(void)
{
	struct aep_store *s;
	assert_int_equal(aep_store_new(NULL, &s), 0);
	return s;
}

void fx_assert_meta_equal(const struct aep_object *a, const struct aep_object *b)
{
	assert_int_equal(a->kind, b->kind);
	assert_string_equal(a->meta.name, b->meta.name);
	assert_string_equal(a->meta.ns, b->meta.ns);
	assert_string_equal(a->meta.uid, b->meta.uid);
	assert_int_equal(a->meta.rv, b->meta.rv);
	assert_int_equal(a->meta.created_ns, b->meta.created_ns);
	assert_int_equal(a->meta.generation, b->meta.generation);
	assert_int_equal(a->meta.nlabels, b->meta.nlabels);
	for (size_t i = 0; i < a->meta.nlabels; i++) {
		assert_string_equal(a->meta.labels[i].key, b->meta.labels[i].key);
		assert_string_equal(a->meta.labels[i].value, b->meta.labels[i].value);
	}
	if (a->node_name == NULL)
		assert_null(b->node_name);
	else
		assert_string_equal(a->node_name, b->node_name);
	assert_int_equal(a->phase, b->phase);
}
