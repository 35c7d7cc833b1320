/* scheduler/: predicates, priorities, explanations, the queue, plan, spread
 * over zones and allocation failures, through the public API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/scheduler.h"
#include "tests/unit/fixtures.h"

#define SEC 1000000000LL

/* ---- helpers ---------------------------------------------------------------- */

static struct aep_sched *sched_default(void)
{
	struct aep_sched_policy *p = NULL;
	struct aep_sched *s = NULL;
	assert_int_equal(aep_sched_policy_default(&p), 0);
	assert_int_equal(aep_sched_new(p, &s), 0);
	return s;
}

static struct aep_sched *sched_policy(const char *json)
{
	struct aep_buf b;
	fx_mp(json, &b);
	msgpack_zone z;
	msgpack_zone_init(&z, 1024);
	msgpack_object doc;
	struct aep_error e = {0};
	assert_int_equal(aep_mp_unpack(b.data, b.len, &z, &doc, &e), 0);
	struct aep_sched_policy *p = NULL;
	int rc = aep_sched_policy_parse(&doc, &p, &e);
	if (rc != 0)
		fail_msg("policy: %s", e.msg);
	msgpack_zone_destroy(&z);
	aep_buf_free(&b);
	struct aep_sched *s = NULL;
	assert_int_equal(aep_sched_new(p, &s), 0);
	return s;
}

static void feed(struct aep_sched *s, enum aep_event_type t, const char *json)
{
	struct aep_object *o = fx_must_decode(json);
	int rc = aep_sched_observe(s, t, o);
	if (rc != 0)
		fail_msg("observe %s: %s", json, aep_err_code(rc));
	aep_object_unref(o);
}

/* A node; @labels like "'zone':'a'" or ""; @extra more of the object. */
static void node_full(struct aep_sched *s, enum aep_event_type t, const char *name,
		      const char *labels, const char *cpu, const char *mem, int pods,
		      const char *ready, bool unsched)
{
	char j[1024];
	snprintf(
	    j, sizeof(j),
	    "{'kind':'Node','metadata':{'name':'%s','labels':{%s}},'spec':{'unschedulable':%s},"
	    "'status':{'allocatable':{'cpu':'%s','memory':'%s','pods':%d},"
	    "'conditions':[{'type':'Ready','status':'%s'}]}}",
	    name, labels, unsched ? "true" : "false", cpu, mem, pods, ready);
	feed(s, t, j);
}

static void node(struct aep_sched *s, const char *name, const char *labels, const char *cpu,
		 const char *mem)
{
	node_full(s, AEP_EV_ADDED, name, labels, cpu, mem, 110, "True", false);
}

static void pod_json(char *j, size_t size, const char *ns, const char *name, const char *labels,
		     const char *spec, const char *container)
{
	snprintf(j, size,
		 "{'kind':'Pod','metadata':{'name':'%s','namespace':'%s','uid':'uid-%s',"
		 "'labels':{%s}},'spec':{%s'containers':[{'name':'c','image':'busybox'%s}]}}",
		 name, ns, name, labels, spec, container);
}

/* A pod in "default"; @spec: fields before containers ("'nodeName':'n1',");
 * @container: more of the container (",'resources':{...}"). */
static void pod_ns(struct aep_sched *s, enum aep_event_type t, const char *ns, const char *name,
		   const char *labels, const char *spec, const char *container)
{
	char j[1024];
	pod_json(j, sizeof(j), ns, name, labels, spec, container);
	feed(s, t, j);
}

static void pod(struct aep_sched *s, const char *name, const char *labels, const char *spec,
		const char *container)
{
	pod_ns(s, AEP_EV_ADDED, "default", name, labels, spec, container);
}

#define CPU(q)	     ",'resources':{'requests':{'cpu':'" q "'}}"
#define MEM(q)	     ",'resources':{'requests':{'memory':'" q "'}}"
#define CPUMEM(c, m) ",'resources':{'requests':{'cpu':'" c "','memory':'" m "'}}"

struct outcome {
	size_t nb, nf;
	char pod[64][64];
	char node[64][64];
	char fpod[64][64];
	char msg[64][512];
};

static void run_at(struct aep_sched *s, int64_t now, struct outcome *r)
{
	struct aep_sched_binding b[64];
	struct aep_sched_failure f[64];
	memset(r, 0, sizeof(*r));
	assert_int_equal(aep_sched_run(s, now, 64, b, &r->nb, f, &r->nf), 0);
	for (size_t i = 0; i < r->nb; i++) {
		snprintf(r->pod[i], sizeof(r->pod[i]), "%s", b[i].pod->meta.name);
		snprintf(r->node[i], sizeof(r->node[i]), "%s", b[i].node);
		aep_object_unref(b[i].pod);
	}
	for (size_t i = 0; i < r->nf; i++) {
		snprintf(r->fpod[i], sizeof(r->fpod[i]), "%s", f[i].pod->meta.name);
		snprintf(r->msg[i], sizeof(r->msg[i]), "%s", f[i].message);
		aep_object_unref(f[i].pod);
		aep_free(f[i].message);
	}
}

static void run(struct aep_sched *s, struct outcome *r)
{
	run_at(s, 0, r);
}

/* The node @pod was bound to in @r, or NULL. */
static const char *where(const struct outcome *r, const char *pod)
{
	for (size_t i = 0; i < r->nb; i++)
		if (strcmp(r->pod[i], pod) == 0)
			return r->node[i];
	return NULL;
}

static const char *why(const struct outcome *r, const char *pod)
{
	for (size_t i = 0; i < r->nf; i++)
		if (strcmp(r->fpod[i], pod) == 0)
			return r->msg[i];
	return NULL;
}

static int64_t req_cpu(struct aep_sched *s, const char *node)
{
	struct aep_sched_node_info ni;
	assert_int_equal(aep_sched_node_info(s, node, &ni), 0);
	return ni.req_cpu;
}

static int64_t pods_on(struct aep_sched *s, const char *node)
{
	struct aep_sched_node_info ni;
	assert_int_equal(aep_sched_node_info(s, node, &ni), 0);
	return ni.pods;
}

/* ---- predicates ---------------------------------------------------------------- */

static void test_resources(void **state)
{
	(void)state;
	struct aep_sched *s = sched_default();
	node(s, "n1", "", "2", "1Gi");
	pod(s, "a", "", "", CPU("1"));
	pod(s, "b", "", "", CPU("1"));
	pod(s, "c", "", "", CPU("1"));
	struct outcome r;
	run(s, &r);
	assert_string_equal(where(&r, "a"), "n1");
	assert_string_equal(where(&r, "b"), "n1");
	assert_string_equal(why(&r, "c"), "0/1 nodes available: 1 insufficient cpu");
	assert_int_equal(req_cpu(s, "n1"), 2000);

	/* memory; a limit without a request counts as the request */
	pod(s, "m", "", "", MEM("768Mi"));
	pod(s, "m2", "", "", MEM("768Mi"));
	pod(s, "lim", "", "", ",'resources':{'limits':{'cpu':'100m'}}");
	pod(s, "zero", "", "", "");
	run(s, &r);
	assert_string_equal(where(&r, "m"), "n1");
	assert_string_equal(why(&r, "m2"), "0/1 nodes available: 1 insufficient memory");
	assert_string_equal(why(&r, "lim"), "0/1 nodes available: 1 insufficient cpu");
	assert_string_equal(where(&r, "zero"), "n1"); /* no requests: fits a full node */
	aep_sched_free(s);

	/* pod count */
	s = sched_default();
	node_full(s, AEP_EV_ADDED, "n1", "", "4", "4Gi", 2, "True", false);
	pod(s, "a", "", "", "");
	pod(s, "b", "", "", "");
	pod(s, "c", "", "", "");
	run(s, &r);
	assert_int_equal(r.nb, 2);
	assert_string_equal(why(&r, "c"), "0/1 nodes available: 1 too many pods");
	aep_sched_free(s);
}

static void test_host_ports(void **state)
{
	(void)state;
	struct aep_sched *s = sched_default();
	node(s, "n1", "", "4", "4Gi");
	pod(s, "a", "", "", ",'ports':[{'containerPort':80,'hostPort':8080}]");
	pod(s, "b", "", "", ",'ports':[{'containerPort':81,'hostPort':8080,'protocol':'TCP'}]");
	pod(s, "c", "", "", ",'ports':[{'containerPort':80,'hostPort':8080,'protocol':'UDP'}]");
	pod(s, "d", "", "", ",'ports':[{'containerPort':80}]");
	struct outcome r;
	run(s, &r);
	assert_string_equal(where(&r, "a"), "n1");
	assert_string_equal(why(&r, "b"), "0/1 nodes available: 1 host port conflict");
	assert_string_equal(where(&r, "c"), "n1");
	assert_string_equal(where(&r, "d"), "n1");
	/* deleting the holder frees the port and makes b due again */
	pod_ns(s, AEP_EV_DELETED, "default", "a", "", "", "");
	run(s, &r);
	assert_string_equal(where(&r, "b"), "n1");
	aep_sched_free(s);
}

static void test_node_ready(void **state)
{
	(void)state;
	struct aep_sched *s = sched_default();
	node_full(s, AEP_EV_ADDED, "n1", "", "4", "4Gi", 110, "False", false);
	node_full(s, AEP_EV_ADDED, "n2", "", "4", "4Gi", 110, "True", true);
	pod(s, "a", "", "", "");
	struct outcome r;
	run(s, &r);
	assert_string_equal(why(&r, "a"),
			    "0/2 nodes available: 1 node(s) not ready, 1 node(s) unschedulable");
	/* n1 becomes ready: the backed-off pod is due again at once */
	node_full(s, AEP_EV_MODIFIED, "n1", "", "4", "4Gi", 110, "True", false);
	run(s, &r);
	assert_string_equal(where(&r, "a"), "n1");
	aep_sched_free(s);
}

static void test_node_selector(void **state)
{
	(void)state;
	struct aep_sched *s = sched_default();
	node(s, "n1", "'disk':'hdd'", "4", "4Gi");
	node(s, "n2", "'disk':'ssd'", "4", "4Gi");
	pod(s, "a", "", "'nodeSelector':{'disk':'ssd'},", "");
	pod(s, "b", "", "'nodeSelector':{'disk':'ssd'},", "");
	pod(s, "c", "", "'nodeSelector':{'disk':'nvme'},", "");
	struct outcome r;
	run(s, &r);
	assert_string_equal(where(&r, "a"), "n2");
	assert_string_equal(where(&r, "b"), "n2");
	assert_string_equal(why(&r, "c"), "0/2 nodes available: 2 did not match node selector");
	aep_sched_free(s);
}

static void test_project_selector(void **state)
{
	(void)state;
	struct aep_sched *s = sched_default();
	feed(s, AEP_EV_ADDED,
	     "{'kind':'Namespace','metadata':{'name':'team','annotations':"
	     "{'aep.io/node-selector':'region=west'}}}");
	feed(s, AEP_EV_ADDED,
	     "{'kind':'Namespace','metadata':{'name':'bad','annotations':"
	     "{'aep.io/node-selector':'region in (west'}}}");
	node(s, "e1", "'region':'east'", "4", "4Gi");
	node(s, "w1", "'region':'west'", "4", "4Gi");
	pod_ns(s, AEP_EV_ADDED, "team", "a", "", "", "");
	pod_ns(s, AEP_EV_ADDED, "team", "b", "", "", "");
	pod_ns(s, AEP_EV_ADDED, "team", "c", "", "'nodeSelector':{'region':'east'},", "");
	pod_ns(s, AEP_EV_ADDED, "bad", "d", "", "", "");
	struct outcome r;
	run(s, &r);
	assert_string_equal(where(&r, "a"), "w1");
	assert_string_equal(where(&r, "b"), "w1");
	assert_string_equal(why(&r, "c"), "0/2 nodes available: 2 did not match node selector");

	struct aep_selector *sel = NULL;
	struct aep_error e = {0};
	assert_int_equal(aep_selector_parse("region in (west", 15, &sel, &e), AEP_EINVALID);
	char want[600];
	snprintf(want, sizeof(want),
		 "namespace \"bad\": annotation aep.io/node-selector: invalid node selector: %s",
		 e.msg);
	assert_string_equal(why(&r, "d"), want);

	/* Fixing the annotation makes the namespace's pods due and placeable. */
	feed(s, AEP_EV_MODIFIED,
	     "{'kind':'Namespace','metadata':{'name':'bad','annotations':"
	     "{'aep.io/node-selector':'region in (east)'}}}");
	run(s, &r);
	assert_string_equal(where(&r, "d"), "e1");
	aep_sched_free(s);
}

static void test_labels_presence(void **state)
{
	(void)state;
	struct aep_sched *s = sched_policy(
	    "{'kind':'Policy','apiVersion':'v1','predicates':[{'name':'NeedsRack','argument':"
	    "{'labelsPresence':{'labels':['rack'],'presence':true}}},{'name':'NotRetiring',"
	    "'argument':{'labelsPresence':{'labels':['retiring'],'presence':false}}}],"
	    "'priorities':[]}");
	node(s, "n1", "", "4", "4Gi");
	node(s, "n2", "'rack':'r1'", "4", "4Gi");
	node(s, "n3", "'rack':'r2','retiring':'yes'", "4", "4Gi");
	pod(s, "a", "", "", "");
	pod(s, "b", "", "", "");
	struct outcome r;
	run(s, &r);
	assert_string_equal(where(&r, "a"), "n2");
	assert_string_equal(where(&r, "b"), "n2");
	node_full(s, AEP_EV_MODIFIED, "n2", "'rack':'r1'", "4", "4Gi", 110, "False", false);
	pod(s, "c", "", "", "");
	run(s, &r);
	assert_string_equal(why(&r, "c"), "0/3 nodes available: 1 node(s) not ready, 1 missing "
					  "required labels, 1 has forbidden labels");
	aep_sched_free(s);
}

static const char *const RC_WEB =
    "{'kind':'ReplicationController','metadata':{'name':'web','namespace':'default'},"
    "'spec':{'replicas':12,'selector':{'app':'web'},'template':{'metadata':{'labels':"
    "{'app':'web'}},'spec':{'containers':[{'name':'c','image':'nginx'}]}}}}";

static void test_service_affinity(void **state)
{
	(void)state;
	struct aep_sched *s = sched_default();
	node(s, "e1", "'region':'east','zone':'e-a'", "4", "4Gi");
	node(s, "w1", "'region':'west','zone':'w-a'", "2", "4Gi");
	feed(s, AEP_EV_ADDED, RC_WEB);
	/* One replica already runs in the west: the others follow it. */
	pod(s, "web-0", "'app':'web'", "'nodeName':'w1',", CPU("1"));
	pod(s, "web-1", "'app':'web'", "", CPU("1"));
	pod(s, "web-2", "'app':'web'", "", CPU("1"));
	pod(s, "other", "'app':'other'", "", CPU("1"));
	struct outcome r;
	run(s, &r);
	assert_string_equal(where(&r, "web-1"), "w1");
	assert_string_equal(why(&r, "web-2"),
			    "0/2 nodes available: 1 insufficient cpu, 1 did not match service "
			    "affinity");
	assert_string_equal(where(&r, "other"), "e1");
	/* A node selector that names the region decides it instead. */
	pod(s, "web-3", "'app':'web'", "'nodeSelector':{'region':'east'},", CPU("1"));
	run(s, &r);
	assert_string_equal(where(&r, "web-3"), "e1");
	aep_sched_free(s);
}

static void test_host_name_plan(void **state)
{
	(void)state;
	struct aep_sched *s = sched_default();
	node(s, "n1", "", "4", "4Gi");
	node(s, "n2", "", "4", "4Gi");
	char j[1024];
	pod_json(j, sizeof(j), "default", "a", "", "'nodeName':'n2',", "");
	struct aep_object *pods[2];
	pods[0] = fx_must_decode(j);
	pod_json(j, sizeof(j), "default", "b", "", "'nodeName':'n9',", "");
	pods[1] = fx_must_decode(j);
	struct aep_sched_plan out[2];
	assert_int_equal(aep_sched_plan(s, pods, 2, out), 0);
	assert_string_equal(out[0].node, "n2");
	assert_null(out[1].node);
	assert_string_equal(out[1].why, "0/2 nodes available: 2 did not match host name");
	for (int i = 0; i < 2; i++) {
		aep_sched_plan_clear(&out[i]);
		aep_object_unref(pods[i]);
	}
	aep_sched_free(s);
}

/* ---- priorities ------------------------------------------------------------------ */

static void test_least_requested(void **state)
{
	(void)state;
	struct aep_sched *s =
	    sched_policy("{'predicates':[{'name':'PodFitsResources'}],'priorities':[{'name':"
			 "'LeastRequestedPriority','weight':1}]}");
	node(s, "n1", "", "4", "4Gi");
	node(s, "n2", "", "4", "4Gi");
	pod(s, "busy", "", "'nodeName':'n1',", CPUMEM("2", "2Gi"));
	pod(s, "a", "", "", CPUMEM("100m", "100Mi"));
	struct outcome r;
	run(s, &r);
	assert_string_equal(where(&r, "a"), "n2");
	/* Equal again after n2 takes as much: identical nodes fill evenly. */
	pod(s, "big", "", "", CPUMEM("1900m", "1948Mi"));
	run(s, &r);
	assert_string_equal(where(&r, "big"), "n2");
	aep_sched_free(s);
}

static void test_balanced(void **state)
{
	(void)state;
	struct aep_sched *s =
	    sched_policy("{'predicates':[{'name':'PodFitsResources'}],'priorities':[{'name':"
			 "'BalancedResourceAllocation','weight':1}]}");
	node(s, "mem-heavy", "", "4", "4Gi");
	node(s, "cpu-heavy", "", "4", "4Gi");
	pod(s, "x", "", "'nodeName':'cpu-heavy',", CPU("3"));
	pod(s, "y", "", "'nodeName':'mem-heavy',", MEM("3Gi"));
	/* A memory-only pod balances the cpu-heavy node; a cpu-only one the other. */
	pod(s, "m", "", "", MEM("512Mi"));
	struct outcome r;
	run(s, &r);
	assert_string_equal(where(&r, "m"), "cpu-heavy");
	pod(s, "c", "", "", CPU("1"));
	run(s, &r);
	assert_string_equal(where(&r, "c"), "mem-heavy");
	aep_sched_free(s);
}

static void test_selector_spread(void **state)
{
	(void)state;
	struct aep_sched *s = sched_policy(
	    "{'predicates':[],'priorities':[{'name':'ServiceSpreadingPriority','weight':1}]}");
	node(s, "n1", "", "4", "4Gi");
	node(s, "n2", "", "4", "4Gi");
	feed(s, AEP_EV_ADDED,
	     "{'kind':'Service','metadata':{'name':'db','namespace':'default'},'spec':"
	     "{'selector':{'app':'db'},'ports':[{'port':5432}]}}");
	pod(s, "db-0", "'app':'db'", "'nodeName':'n1',", "");
	pod(s, "db-1", "'app':'db'", "", "");
	struct outcome r;
	run(s, &r);
	assert_string_equal(where(&r, "db-1"), "n2");
	/* Without the service the pods are no group: the first node in turn. */
	feed(s, AEP_EV_DELETED,
	     "{'kind':'Service','metadata':{'name':'db','namespace':'default'},'spec':"
	     "{'selector':{'app':'db'},'ports':[{'port':5432}]}}");
	pod(s, "db-2", "'app':'db'", "'nodeName':'n1',", "");
	pod(s, "db-3", "'app':'db'", "", "");
	pod(s, "db-4", "'app':'db'", "", "");
	run(s, &r);
	assert_int_equal(r.nb, 2);
	assert_string_not_equal(where(&r, "db-3"), where(&r, "db-4"));
	aep_sched_free(s);
}

static void test_anti_affinity(void **state)
{
	(void)state;
	struct aep_sched *s =
	    sched_policy("{'predicates':[],'priorities':[{'name':'Zone','weight':2,'argument':"
			 "{'serviceAntiAffinity':{'label':'zone'}}}]}");
	node(s, "x1", "", "4", "4Gi");
	node(s, "a1", "'zone':'a'", "4", "4Gi");
	node(s, "b1", "'zone':'b'", "4", "4Gi");
	feed(s, AEP_EV_ADDED, RC_WEB);
	pod(s, "web-0", "'app':'web'", "'nodeName':'a1',", "");
	pod(s, "web-1", "'app':'web'", "", "");
	struct outcome r;
	run(s, &r);
	assert_string_equal(where(&r, "web-1"), "b1");
	/* Zones even: either zone, never the node without one. */
	pod(s, "web-2", "'app':'web'", "", "");
	run(s, &r);
	assert_string_not_equal(where(&r, "web-2"), "x1");
	aep_sched_free(s);
}

static void test_label_preference(void **state)
{
	(void)state;
	struct aep_sched *s = sched_policy(
	    "{'priorities':[{'name':'PreferSSD','weight':3,'argument':{'labelPreference':"
	    "{'label':'ssd','presence':true}}}]}");
	node(s, "n1", "", "4", "4Gi");
	node(s, "n2", "'ssd':'yes'", "4", "4Gi");
	pod(s, "a", "", "", "");
	pod(s, "b", "", "", "");
	struct outcome r;
	run(s, &r);
	assert_string_equal(where(&r, "a"), "n2");
	assert_string_equal(where(&r, "b"), "n2");
	aep_sched_free(s);

	s = sched_policy("{'priorities':[{'name':'AvoidSSD','weight':3,'argument':"
			 "{'labelPreference':{'label':'ssd','presence':false}}}]}");
	node(s, "n2", "'ssd':'yes'", "4", "4Gi");
	node(s, "n1", "", "4", "4Gi");
	pod(s, "a", "", "", "");
	run(s, &r);
	assert_string_equal(where(&r, "a"), "n1");
	aep_sched_free(s);
}

/* ---- explanations ---------------------------------------------------------------- */

static void five_nodes(struct aep_sched *s)
{
	node(s, "n1", "'disk':'ssd'", "1", "4Gi");
	node(s, "n2", "'disk':'ssd'", "1", "4Gi");
	node(s, "n3", "", "1", "4Gi");
	node(s, "n4", "'disk':'hdd'", "8", "4Gi");
	node_full(s, AEP_EV_ADDED, "n5", "'disk':'ssd'", "8", "4Gi", 110, "False", false);
}

static void test_explanation(void **state)
{
	(void)state;
	struct aep_sched *s = sched_default();
	five_nodes(s);
	pod(s, "a", "", "'nodeSelector':{'disk':'ssd'},", CPU("2"));
	struct outcome r;
	run(s, &r);
	/* n3 fails both: counted under the first predicate in policy order */
	assert_string_equal(why(&r, "a"), "0/5 nodes available: 3 insufficient cpu, 1 node(s) "
					  "not ready, 1 did not match node selector");
	aep_sched_free(s);

	s = sched_policy("{'predicates':[{'name':'MatchNodeSelector'},{'name':"
			 "'PodFitsResources'},{'name':'NodeReady'}]}");
	five_nodes(s);
	pod(s, "a", "", "'nodeSelector':{'disk':'ssd'},", CPU("2"));
	run(s, &r);
	assert_string_equal(why(&r, "a"), "0/5 nodes available: 2 insufficient cpu, 2 did not "
					  "match node selector, 1 node(s) not ready");
	aep_sched_free(s);

	s = sched_default();
	pod(s, "a", "", "", "");
	run(s, &r);
	assert_string_equal(why(&r, "a"), "0/0 nodes available: no nodes registered");
	aep_sched_free(s);
}

/* ---- queue -------------------------------------------------------------------------- */

static void test_backoff(void **state)
{
	(void)state;
	struct aep_sched *s = sched_default();
	node(s, "n1", "", "1", "4Gi");
	pod(s, "big", "", "", CPU("2"));
	assert_int_equal(aep_sched_queued(s), 1);
	assert_int_equal(aep_sched_next_due(s), INT64_MAX);
	struct outcome r;
	int64_t now = 5 * SEC;
	static const int64_t waits[] = {1, 2, 4, 8, 16, 32, 60, 60};
	for (size_t i = 0; i < sizeof(waits) / sizeof(waits[0]); i++) {
		run_at(s, now, &r);
		assert_int_equal(r.nf, 1);
		assert_int_equal(aep_sched_queued(s), 1);
		assert_int_equal(aep_sched_next_due(s), now + waits[i] * SEC);
		run_at(s, now + waits[i] * SEC - 1, &r); /* not due yet */
		assert_int_equal(r.nb + r.nf, 0);
		now += waits[i] * SEC;
	}
	/* More cpu on the node: due again at once. */
	node_full(s, AEP_EV_MODIFIED, "n1", "", "4", "4Gi", 110, "True", false);
	assert_int_equal(aep_sched_next_due(s), INT64_MAX);
	run_at(s, now - 10 * SEC, &r);
	assert_string_equal(where(&r, "big"), "n1");
	assert_int_equal(aep_sched_queued(s), 0);
	/* A heartbeat that changes nothing the scheduler reads leaves backoff alone. */
	pod(s, "huge", "", "", CPU("8"));
	run_at(s, now, &r);
	assert_int_equal(r.nf, 1);
	node_full(s, AEP_EV_MODIFIED, "n1", "", "4", "4Gi", 110, "True", false);
	assert_int_equal(aep_sched_next_due(s), now + SEC);
	aep_sched_free(s);
}

static void test_forget(void **state)
{
	(void)state;
	struct aep_sched *s = sched_default();
	node(s, "n1", "", "2", "4Gi");
	node(s, "n2", "", "2", "4Gi");
	pod(s, "p", "", "", CPU("1"));
	struct outcome r;
	run(s, &r);
	char first[64];
	snprintf(first, sizeof(first), "%s", where(&r, "p"));
	assert_int_equal(req_cpu(s, first), 1000);
	assert_int_equal(aep_sched_queued(s), 0);

	aep_sched_forget(s, "default", "p", "uid-other"); /* another pod: ignored */
	assert_int_equal(req_cpu(s, first), 1000);
	aep_sched_forget(s, "default", "p", "uid-p");
	assert_int_equal(req_cpu(s, first), 0);
	assert_int_equal(aep_sched_queued(s), 1);
	run(s, &r);
	assert_non_null(where(&r, "p"));
	assert_int_equal(req_cpu(s, "n1") + req_cpu(s, "n2"), 1000);

	/* The store binds it elsewhere than assumed: counted where the store says. */
	const char *other = strcmp(where(&r, "p"), "n1") == 0 ? "n2" : "n1";
	char spec[64];
	snprintf(spec, sizeof(spec), "'nodeName':'%s',", other);
	pod_ns(s, AEP_EV_MODIFIED, "default", "p", "", spec, CPU("1"));
	assert_int_equal(req_cpu(s, other), 1000);
	assert_int_equal(req_cpu(s, "n1") + req_cpu(s, "n2"), 1000);
	/* Bound: forget changes nothing. */
	aep_sched_forget(s, "default", "p", "uid-p");
	assert_int_equal(req_cpu(s, other), 1000);
	assert_int_equal(aep_sched_queued(s), 0);
	/* Deleted: nothing counted, its node entry stays for the Node. */
	pod_ns(s, AEP_EV_DELETED, "default", "p", "", spec, CPU("1"));
	assert_int_equal(req_cpu(s, other), 0);
	aep_sched_free(s);
}

static void test_assumed_then_seen_unbound(void **state)
{
	(void)state;
	struct aep_sched *s = sched_default();
	node(s, "n1", "", "2", "4Gi");
	pod(s, "p", "", "", CPU("1"));
	struct outcome r;
	run(s, &r);
	assert_string_equal(where(&r, "p"), "n1");
	/* A status update before the binding lands keeps the assumption. */
	pod_ns(s, AEP_EV_MODIFIED, "default", "p", "", "'restartPolicy':'Always',", CPU("1"));
	assert_int_equal(req_cpu(s, "n1"), 1000);
	assert_int_equal(aep_sched_queued(s), 0);
	/* Completed pods count nowhere. */
	feed(s, AEP_EV_MODIFIED,
	     "{'kind':'Pod','metadata':{'name':'p','namespace':'default','uid':'uid-p'},"
	     "'spec':{'nodeName':'n1','containers':[{'name':'c','image':'busybox','resources':"
	     "{'requests':{'cpu':'1'}}}]},'status':{'phase':'Succeeded'}}");
	assert_int_equal(req_cpu(s, "n1"), 0);
	assert_int_equal(pods_on(s, "n1"), 0);
	aep_sched_free(s);
}

static void test_bound_before_node(void **state)
{
	(void)state;
	struct aep_sched *s = sched_default();
	/* A list at start may give pods before their nodes. */
	feed(s, AEP_EV_ADDED, RC_WEB);
	pod(s, "web-0", "'app':'web'", "'nodeName':'w1',", CPU("1"));
	struct aep_sched_node_info ni;
	assert_int_equal(aep_sched_node_info(s, "w1", &ni), 0);
	assert_false(ni.registered);
	assert_int_equal(ni.req_cpu, 1000);
	node(s, "e1", "'region':'east','zone':'e-a'", "4", "4Gi");
	node(s, "w1", "'region':'west','zone':'w-a'", "4", "4Gi");
	assert_int_equal(aep_sched_node_info(s, "w1", &ni), 0);
	assert_true(ni.registered);
	assert_int_equal(ni.req_cpu, 1000);
	/* The node's region now counts for the group's affinity. */
	pod(s, "web-1", "'app':'web'", "", CPU("1"));
	struct outcome r;
	run(s, &r);
	assert_string_equal(where(&r, "web-1"), "w1");
	/* A node gone with pods still on it stays as a name until they go. */
	node_full(s, AEP_EV_DELETED, "w1", "", "4", "4Gi", 110, "True", false);
	assert_int_equal(aep_sched_node_info(s, "w1", &ni), 0);
	assert_false(ni.registered);
	pod_ns(s, AEP_EV_DELETED, "default", "web-0", "", "", "");
	aep_sched_forget(s, "default", "web-1", "uid-web-1");
	assert_int_equal(aep_sched_node_info(s, "w1", &ni), AEP_ENOTFOUND);
	run(s, &r);
	assert_string_equal(where(&r, "web-1"), "e1");
	aep_sched_free(s);
}

/* ---- plan ---------------------------------------------------------------------------- */

static void info_all(struct aep_sched *s, const char *const *names, size_t n,
		     struct aep_sched_node_info *out)
{
	memset(out, 0, n * sizeof(*out));
	for (size_t i = 0; i < n; i++)
		assert_int_equal(aep_sched_node_info(s, names[i], &out[i]), 0);
}

static void test_plan(void **state)
{
	(void)state;
	struct aep_sched *s = sched_default();
	node(s, "a1", "'region':'west','zone':'w-a'", "1", "4Gi");
	node(s, "b1", "'region':'west','zone':'w-b'", "1", "4Gi");
	node(s, "c1", "", "1", "4Gi");
	feed(s, AEP_EV_ADDED, RC_WEB);
	pod(s, "queued", "'app':'web'", "", CPU("1"));
	static const char *const names[] = {"a1", "b1", "c1"};
	struct aep_sched_node_info before[3], after[3];
	info_all(s, names, 3, before);

	struct aep_object *pods[4];
	char j[1024];
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof(name), "web-%d", i);
		pod_json(j, sizeof(j), "default", name, "'app':'web'", "", CPU("1"));
		pods[i] = fx_must_decode(j);
	}
	struct aep_sched_plan out[4];
	assert_int_equal(aep_sched_plan(s, pods, 4, out), 0);
	/* Each plan step sees the ones before: three fit, one per node; the
	 * web group stays in one region by the Region affinity. */
	assert_non_null(out[0].node);
	assert_string_equal(out[0].region, "west");
	assert_non_null(out[1].node);
	assert_string_equal(out[1].region, "west");
	assert_string_not_equal(out[0].zone, out[1].zone);
	assert_true(out[0].score > 0);
	assert_null(out[2].node);
	assert_string_equal(out[2].why, "0/3 nodes available: 2 insufficient cpu, 1 did not "
					"match service affinity");
	assert_null(out[3].node);
	for (int i = 0; i < 4; i++) {
		aep_sched_plan_clear(&out[i]);
		aep_object_unref(pods[i]);
	}
	info_all(s, names, 3, after);
	assert_memory_equal(before, after, sizeof(before));
	assert_int_equal(aep_sched_queued(s), 1);
	struct outcome r;
	run(s, &r);
	assert_int_equal(r.nb, 1);
	aep_sched_free(s);
}

/* ---- spread over zones ------------------------------------------------------------------- */

static void spread_cluster(struct aep_sched *s)
{
	static const char *const regions[] = {"east", "west"};
	for (int rg = 0; rg < 2; rg++) {
		for (int z = 0; z < 3; z++) {
			for (int i = 0; i < 3; i++) {
				char name[32], labels[128];
				snprintf(name, sizeof(name), "%s-%c-%d", regions[rg], 'a' + z, i);
				snprintf(labels, sizeof(labels), "'region':'%s','zone':'%s-%c'",
					 regions[rg], regions[rg], 'a' + z);
				node(s, name, labels, "8", "16Gi");
			}
		}
	}
	feed(s, AEP_EV_ADDED, RC_WEB);
}

static void check_spread(const struct outcome *r, const char *region)
{
	int per_zone[3] = {0};
	assert_int_equal(r->nb, 12);
	for (size_t i = 0; i < r->nb; i++) {
		assert_memory_equal(r->node[i], region, strlen(region));
		per_zone[r->node[i][strlen(region) + 1] - 'a']++;
	}
	assert_int_equal(per_zone[0], 4);
	assert_int_equal(per_zone[1], 4);
	assert_int_equal(per_zone[2], 4);
}

static void test_rc_spread_zones(void **state)
{
	(void)state;
	struct aep_sched *s = sched_default();
	spread_cluster(s);
	for (int i = 0; i < 12; i++) {
		char name[16];
		snprintf(name, sizeof(name), "web-%d", i);
		pod(s, name, "'app':'web'", "'nodeSelector':{'region':'west'},", CPU("500m"));
	}
	struct outcome r;
	run(s, &r);
	check_spread(&r, "west");
	aep_sched_free(s);

	/* Without a selector: Region affinity keeps them in the first pod's
	 * region, Zone anti-affinity spreads them there. */
	s = sched_default();
	spread_cluster(s);
	for (int i = 0; i < 12; i++) {
		char name[16];
		snprintf(name, sizeof(name), "web-%d", i);
		pod(s, name, "'app':'web'", "", CPU("500m"));
	}
	run(s, &r);
	char region[8];
	snprintf(region, sizeof(region), "%.4s", r.node[0]);
	check_spread(&r, region);
	aep_sched_free(s);
}

/* ---- allocation failures ------------------------------------------------------------------- */

struct snapshot {
	size_t queued;
	int64_t next_due;
	struct aep_sched_node_info n[3];
};

static const char *const sweep_nodes[] = {"w-a", "w-b", "e-a"};

static void snap(struct aep_sched *s, struct snapshot *sn)
{
	memset(sn, 0, sizeof(*sn));
	sn->queued = aep_sched_queued(s);
	sn->next_due = aep_sched_next_due(s);
	for (int i = 0; i < 3; i++)
		aep_sched_node_info(s, sweep_nodes[i], &sn->n[i]);
}

static struct aep_sched *sweep_cluster(void)
{
	struct aep_sched *s = sched_default();
	feed(s, AEP_EV_ADDED, "{'kind':'Namespace','metadata':{'name':'default'}}");
	node(s, "w-a", "'region':'west','zone':'w-a'", "4", "4Gi");
	node(s, "w-b", "'region':'west','zone':'w-b'", "4", "4Gi");
	node(s, "e-a", "'region':'east','zone':'e-a'", "4", "4Gi");
	feed(s, AEP_EV_ADDED, RC_WEB);
	pod(s, "web-0", "'app':'web'", "'nodeName':'w-a',", CPU("1"));
	pod(s, "web-1", "'app':'web'", "", CPU("1"));
	pod(s, "web-2", "'app':'web'", "", ",'ports':[{'containerPort':80,'hostPort':80}]");
	return s;
}

static void test_alloc_failures_observe(void **state)
{
	(void)state;
	const char *objs[] = {
	    /* new node with new label values */
	    "{'kind':'Node','metadata':{'name':'e-b','labels':{'region':'east','zone':'e-b'}},"
	    "'status':{'allocatable':{'cpu':'4','memory':'4Gi'},'conditions':[{'type':"
	    "'Ready','status':'True'}]}}",
	    /* relabel a node with pods */
	    "{'kind':'Node','metadata':{'name':'w-a','labels':{'region':'west','zone':'w-z'}},"
	    "'status':{'allocatable':{'cpu':'4','memory':'4Gi'},'conditions':[{'type':"
	    "'Ready','status':'True'}]}}",
	    /* a bound pod of the group on a node not seen yet */
	    "{'kind':'Pod','metadata':{'name':'web-9','namespace':'default','uid':'u9','labels':"
	    "{'app':'web'}},'spec':{'nodeName':'x-1','containers':[{'name':'c','image':'b',"
	    "'ports':[{'containerPort':1,'hostPort':1}]}]}}",
	    /* a queued pod in a new namespace with a node selector */
	    "{'kind':'Pod','metadata':{'name':'q','namespace':'other','uid':'uq'},'spec':"
	    "{'nodeSelector':{'zone':'w-b'},'containers':[{'name':'c','image':'b'}]}}",
	    /* a new service selecting existing pods */
	    "{'kind':'Service','metadata':{'name':'web','namespace':'default'},'spec':"
	    "{'selector':{'app':'web'}}}",
	    /* the RC's selector changes */
	    "{'kind':'ReplicationController','metadata':{'name':'web','namespace':'default'},"
	    "'spec':{'selector':{'app':'web','tier':'x'},'template':{'metadata':{'labels':"
	    "{'app':'web','tier':'x'}},'spec':{'containers':[{'name':'c','image':'nginx'}]}}}}",
	    /* a namespace selector */
	    "{'kind':'Namespace','metadata':{'name':'default','annotations':"
	    "{'aep.io/node-selector':'region=west'}}}",
	};
	for (size_t k = 0; k < sizeof(objs) / sizeof(objs[0]); k++) {
		struct aep_object *o = fx_must_decode(objs[k]);
		int failures = 0;
		for (long n = 1;; n++) {
			struct aep_sched *s = sweep_cluster();
			struct snapshot before, after;
			snap(s, &before);
			aep_heap_fault_after(n);
			int rc = aep_sched_observe(s, AEP_EV_ADDED, o);
			long hits = aep_heap_fault_count();
			aep_heap_fault_off();
			if (rc == 0 && hits == 0) {
				aep_sched_free(s);
				break;
			}
			assert_int_equal(rc, AEP_ENOMEM);
			failures++;
			snap(s, &after);
			assert_memory_equal(&before, &after, sizeof(before));
			/* And it still works afterwards. */
			assert_int_equal(aep_sched_observe(s, AEP_EV_ADDED, o), 0);
			struct outcome r;
			run(s, &r);
			aep_sched_free(s);
		}
		assert_true(failures > 0);
		aep_object_unref(o);
	}
}

static void test_alloc_failures_run(void **state)
{
	(void)state;
	int failures = 0;
	for (long n = 1;; n++) {
		struct aep_sched *s = sweep_cluster();
		struct snapshot before, after;
		snap(s, &before);
		struct aep_sched_binding b[8];
		struct aep_sched_failure f[8];
		size_t nb = 9, nf = 9;
		aep_heap_fault_after(n);
		int rc = aep_sched_run(s, 0, 8, b, &nb, f, &nf);
		long hits = aep_heap_fault_count();
		aep_heap_fault_off();
		if (rc != 0) {
			assert_int_equal(rc, AEP_ENOMEM);
			assert_int_equal(nb + nf, 0);
			snap(s, &after);
			assert_memory_equal(&before, &after, sizeof(before));
		}
		for (size_t i = 0; i < nb; i++)
			aep_object_unref(b[i].pod);
		for (size_t i = 0; i < nf; i++) {
			aep_object_unref(f[i].pod);
			aep_free(f[i].message);
		}
		/* Whatever is left is placed on the next run. */
		size_t done = nb;
		struct outcome r;
		run(s, &r);
		assert_int_equal(done + r.nb, 2);
		aep_sched_free(s);
		if (hits == 0)
			break;
		failures++;
	}
	assert_true(failures > 0);

	/* aep_sched_new and the default policy under failures leak nothing. */
	for (long n = 1;; n++) {
		struct aep_sched_policy *p = NULL;
		struct aep_sched *s = NULL;
		aep_heap_fault_after(n);
		int rc = aep_sched_policy_default(&p);
		if (rc == 0)
			rc = aep_sched_new(p, &s);
		long hits = aep_heap_fault_count();
		aep_heap_fault_off();
		aep_sched_free(s);
		if (hits == 0) {
			assert_int_equal(rc, 0);
			break;
		}
		assert_int_equal(rc, AEP_ENOMEM);
	}
}

static void test_alloc_failures_plan(void **state)
{
	(void)state;
	char j[1024];
	pod_json(j, sizeof(j), "default", "planned", "'app':'web'", "", CPU("1"));
	struct aep_object *o = fx_must_decode(j);
	for (long n = 1;; n++) {
		struct aep_sched *s = sweep_cluster();
		struct snapshot before, after;
		snap(s, &before);
		struct aep_sched_plan out;
		aep_heap_fault_after(n);
		int rc = aep_sched_plan(s, &o, 1, &out);
		long hits = aep_heap_fault_count();
		aep_heap_fault_off();
		snap(s, &after);
		assert_memory_equal(&before, &after, sizeof(before));
		if (rc != 0) {
			assert_int_equal(rc, AEP_ENOMEM);
			assert_null(out.node);
			assert_null(out.why);
		}
		aep_sched_plan_clear(&out);
		aep_sched_free(s);
		if (hits == 0)
			break;
	}
	aep_object_unref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_resources),
	    cmocka_unit_test(test_host_ports),
	    cmocka_unit_test(test_node_ready),
	    cmocka_unit_test(test_node_selector),
	    cmocka_unit_test(test_project_selector),
	    cmocka_unit_test(test_labels_presence),
	    cmocka_unit_test(test_service_affinity),
	    cmocka_unit_test(test_host_name_plan),
	    cmocka_unit_test(test_least_requested),
	    cmocka_unit_test(test_balanced),
	    cmocka_unit_test(test_selector_spread),
	    cmocka_unit_test(test_anti_affinity),
	    cmocka_unit_test(test_label_preference),
	    cmocka_unit_test(test_explanation),
	    cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_forget),
	    cmocka_unit_test(test_assumed_then_seen_unbound),
	    cmocka_unit_test(test_bound_before_node),
	    cmocka_unit_test(test_plan),
	    cmocka_unit_test(test_rc_spread_zones),
	    cmocka_unit_test(test_alloc_failures_observe),
	    cmocka_unit_test(test_alloc_failures_run),
	    cmocka_unit_test(test_alloc_failures_plan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
