/* scheduler/: the policy file: valid documents, their description, and the
 * exact error for each kind of fault. */
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

/* Parse the JSON-ish @json as a policy; returns the code, the policy in
 * *@out (or NULL) and the message in @e. */
static int parse(const char *json, struct aep_sched_policy **out, struct aep_error *e)
{
	struct aep_buf b;
	fx_mp(json, &b);
	msgpack_zone z;
	msgpack_zone_init(&z, 1024);
	msgpack_object doc;
	assert_int_equal(aep_mp_unpack(b.data, b.len, &z, &doc, e), 0);
	*out = NULL;
	int rc = aep_sched_policy_parse(&doc, out, e);
	msgpack_zone_destroy(&z);
	aep_buf_free(&b);
	return rc;
}

static void assert_describes(const struct aep_sched_policy *p, const char *want)
{
	struct aep_buf b;
	aep_buf_init(&b);
	assert_int_equal(aep_sched_policy_describe(p, &b), 0);
	aep_buf_append(&b, "", 1);
	assert_string_equal(b.data, want);
	aep_buf_free(&b);
}

static void test_default(void **state)
{
	(void)state;
	struct aep_sched_policy *p = NULL;
	assert_int_equal(aep_sched_policy_default(&p), 0);
	assert_describes(p, "predicate NodeReady\n"
			    "predicate PodFitsResources\n"
			    "predicate PodFitsHostPorts\n"
			    "predicate MatchNodeSelector\n"
			    "predicate HostName\n"
			    "predicate Region: serviceAffinity labels [region]\n"
			    "priority LeastRequestedPriority weight 1\n"
			    "priority BalancedResourceAllocation weight 1\n"
			    "priority SelectorSpreadPriority weight 1\n"
			    "priority Zone weight 2: serviceAntiAffinity label zone\n");
	aep_sched_policy_free(p);
}

static void test_valid(void **state)
{
	(void)state;
	struct aep_sched_policy *p = NULL;
	struct aep_error e = {0};
	int rc =
	    parse("{'kind':'Policy','apiVersion':'v1','predicates':[{'name':'PodFitsPorts'},"
		  "{'name':'PodFitsResources'},{'name':'NodeReady'},{'name':'MatchNodeSelector'},"
		  "{'name':'RequireRack','argument':{'labelsPresence':{'labels':['rack','row'],"
		  "'presence':true}}},{'name':'HostName','argument':{'serviceAffinity':{'labels':"
		  "['region','building']}}}],'priorities':[{'name':'ServiceSpreadingPriority',"
		  "'weight':3},{'name':'Rack','weight':100,'argument':{'serviceAntiAffinity':"
		  "{'label':'rack'}}},{'name':'NoSpot','weight':1,'argument':{'labelPreference':"
		  "{'label':'spot','presence':false}}}]}",
		  &p, &e);
	if (rc != 0)
		fail_msg("%s", e.msg);
	/* NodeReady stays where it was listed; a known name with an argument
	 * is a user name for the argument's predicate. */
	assert_describes(p,
			 "predicate PodFitsPorts: PodFitsHostPorts\n"
			 "predicate PodFitsResources\n"
			 "predicate NodeReady\n"
			 "predicate MatchNodeSelector\n"
			 "predicate RequireRack: labelsPresence labels [rack, row] presence true\n"
			 "predicate HostName: serviceAffinity labels [region, building]\n"
			 "priority ServiceSpreadingPriority weight 3: SelectorSpreadPriority\n"
			 "priority Rack weight 100: serviceAntiAffinity label rack\n"
			 "priority NoSpot weight 1: labelPreference label spot presence false\n");
	aep_sched_policy_free(p);

	/* NodeReady is always on; an empty document keeps only it. */
	assert_int_equal(parse("{'predicates':[{'name':'HostName'}]}", &p, &e), 0);
	assert_describes(p, "predicate NodeReady\npredicate HostName\n");
	aep_sched_policy_free(p);
	assert_int_equal(parse("{}", &p, &e), 0);
	assert_describes(p, "predicate NodeReady\n");
	aep_sched_policy_free(p);
}

static void test_invalid(void **state)
{
	(void)state;
	char bad_key[AEP_ERRMSG_MAX + 64];
	struct aep_error ke = {0};
	assert_int_equal(aep_validate_label_key("-x", 2, &ke), AEP_EINVALID);
	snprintf(bad_key, sizeof(bad_key), "predicates[0].argument.serviceAffinity.labels[1]: %s",
		 ke.msg);
	const struct {
		const char *doc, *msg;
	} cases[] = {
	    {"{'priorities':[{'name':'LeastRequestedPriority','weight':1},{'name':'P','weight':1,"
	     "'argument':{'labelPreference':{'label':'a','presence':true}}},{'name':'Foo',"
	     "'weight':1}]}",
	     "priorities[2]: unknown priority \"Foo\""},
	    {"{'predicates':[{'name':'HostName'},{'name':'Bar'}]}",
	     "predicates[1]: unknown predicate \"Bar\""},
	    {"{'predicates':[{'name':'HostName'},{'name':'HostName'}]}",
	     "predicates[1]: duplicate name \"HostName\""},
	    {"{'priorities':[{'name':'Z','weight':1,'argument':{'labelPreference':{'label':'a',"
	     "'presence':true}}},{'name':'Z','weight':1}]}",
	     "priorities[1]: duplicate name \"Z\""},
	    {"{'priorities':[{'name':'LeastRequestedPriority','weight':0}]}",
	     "priorities[0].weight: must be an integer in 1..100"},
	    {"{'priorities':[{'name':'LeastRequestedPriority','weight':101}]}",
	     "priorities[0].weight: must be an integer in 1..100"},
	    {"{'priorities':[{'name':'LeastRequestedPriority','weight':'1'}]}",
	     "priorities[0].weight: must be an integer in 1..100"},
	    {"{'priorities':[{'name':'LeastRequestedPriority'}]}",
	     "priorities[0].weight: must be an integer in 1..100"},
	    {"{'priorities':[{'name':'LeastRequestedPriority','weight':1,'wieght':2}]}",
	     "priorities[0]: unknown field \"wieght\""},
	    {"{'predicates':[{'name':'R','argument':{'serviceAffinity':{'labels':[]}}}]}",
	     "predicates[0].argument.serviceAffinity.labels: must be a list of 1 to 16 label "
	     "keys"},
	    {"{'predicates':[{'name':'R','argument':{'serviceAffinity':{'labels':'region'}}}]}",
	     "predicates[0].argument.serviceAffinity.labels: must be a list of 1 to 16 label "
	     "keys"},
	    {"{'predicates':[{'name':'R','argument':{'serviceAffinity':{'labels':['a','-x']}}}]}",
	     bad_key},
	    {"{'predicates':[{'name':'R','argument':{'serviceAffinity':{'labels':['a','a']}}}]}",
	     "predicates[0].argument.serviceAffinity.labels[1]: label \"a\" listed twice"},
	    {"{'predicates':[{'name':'R','argument':{'foo':{}}}]}",
	     "predicates[0].argument: unknown field \"foo\""},
	    {"{'predicates':[{'name':'R','argument':{'serviceAffinity':{'labels':['a']},"
	     "'labelsPresence':{'labels':['a'],'presence':true}}}]}",
	     "predicates[0].argument: must be a map with one of labelsPresence, serviceAffinity"},
	    {"{'predicates':[{'name':'R','argument':{'labelsPresence':{'labels':['a']}}}]}",
	     "predicates[0].argument.labelsPresence.presence: must be true or false"},
	    {"{'predicates':[{'name':'R','argument':{'serviceAffinity':[]}}]}",
	     "predicates[0].argument.serviceAffinity: must be a map"},
	    {"{'priorities':[{'name':'Z','weight':1,'argument':{'serviceAntiAffinity':{}}}]}",
	     "priorities[0].argument.serviceAntiAffinity.label: must be a label key"},
	    {"{'priorities':[{'name':'Z','weight':1,'argument':{'serviceAntiAffinity':"
	     "{'label':'zone','x':1}}}]}",
	     "priorities[0].argument.serviceAntiAffinity: unknown field \"x\""},
	    {"{'predicates':{}}", "predicates: must be a list"},
	    {"{'priorities':7}", "priorities: must be a list"},
	    {"{'predicates':['HostName']}", "predicates[0]: must be a map"},
	    {"{'predicates':[{}]}", "predicates[0].name: must be a string of 1 to 128 bytes"},
	    {"{'predicates':[{'name':''}]}",
	     "predicates[0].name: must be a string of 1 to 128 bytes"},
	    {"{'kind':'Pod'}", "kind: must be \"Policy\""},
	    {"{'apiVersion':'v2'}", "apiVersion: must be \"v1\""},
	    {"{'extenders':[]}", "policy: unknown field \"extenders\""},
	    {"[]", "policy: must be a map"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct aep_sched_policy *p = (void *)&cases; /* must stay untouched */
		struct aep_error e = {0};
		struct aep_buf b;
		fx_mp(cases[i].doc, &b);
		msgpack_zone z;
		msgpack_zone_init(&z, 1024);
		msgpack_object doc;
		assert_int_equal(aep_mp_unpack(b.data, b.len, &z, &doc, &e), 0);
		int rc = aep_sched_policy_parse(&doc, &p, &e);
		msgpack_zone_destroy(&z);
		aep_buf_free(&b);
		if (rc != AEP_EINVALID)
			fail_msg("case %zu (%s): rc %d", i, cases[i].doc, rc);
		assert_ptr_equal(p, (void *)&cases);
		assert_string_equal(e.msg, cases[i].msg);
	}
}

static void test_limits(void **state)
{
	(void)state;
	struct aep_buf j;
	aep_buf_init(&j);
	aep_buf_printf(&j, "{'predicates':[");
	for (int i = 0; i < 32; i++)
		aep_buf_printf(&j,
			       "%s{'name':'p%d','argument':{'serviceAffinity':{'labels':['l%d']}}}",
			       i ? "," : "", i, i);
	aep_buf_printf(&j, "]}");
	aep_buf_append(&j, "", 1);
	struct aep_sched_policy *p = NULL;
	struct aep_error e = {0};
	assert_int_equal(parse(j.data, &p, &e), AEP_EINVALID);
	assert_string_equal(e.msg, "predicates: more than 31 entries");
	aep_buf_free(&j);

	aep_buf_init(&j);
	aep_buf_printf(&j, "{'predicates':[");
	for (int i = 0; i < 17; i++)
		aep_buf_printf(&j,
			       "%s{'name':'p%d','argument':{'serviceAffinity':{'labels':['l%d']}}}",
			       i ? "," : "", i, i);
	aep_buf_printf(&j, "]}");
	aep_buf_append(&j, "", 1);
	assert_int_equal(parse(j.data, &p, &e), AEP_EINVALID);
	assert_string_equal(
	    e.msg,
	    "predicates[16].argument.serviceAffinity.labels: more than 16 distinct labels in the "
	    "policy");
	assert_null(p);
	aep_buf_free(&j);
}

static void test_alloc_failures(void **state)
{
	(void)state;
	const char *doc =
	    "{'predicates':[{'name':'R','argument':{'serviceAffinity':{'labels':['region']}}},"
	    "{'name':'L','argument':{'labelsPresence':{'labels':['a','b'],'presence':true}}}],"
	    "'priorities':[{'name':'Z','weight':2,'argument':{'serviceAntiAffinity':"
	    "{'label':'zone'}}},{'name':'LeastRequestedPriority','weight':1}]}";
	struct aep_buf b;
	fx_mp(doc, &b);
	msgpack_zone z;
	msgpack_zone_init(&z, 1024);
	msgpack_object obj;
	struct aep_error e = {0};
	assert_int_equal(aep_mp_unpack(b.data, b.len, &z, &obj, &e), 0);
	int failures = 0;
	for (long n = 1;; n++) {
		struct aep_sched_policy *p = NULL;
		aep_heap_fault_after(n);
		int rc = aep_sched_policy_parse(&obj, &p, &e);
		long hits = aep_heap_fault_count();
		aep_heap_fault_off();
		if (hits == 0) {
			assert_int_equal(rc, 0);
			aep_sched_policy_free(p);
			break;
		}
		failures++;
		assert_int_equal(rc, AEP_ENOMEM);
		assert_null(p);
	}
	assert_true(failures > 5);
	msgpack_zone_destroy(&z);
	aep_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_default),	   cmocka_unit_test(test_valid),
	    cmocka_unit_test(test_invalid),	   cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
