/* scheduler/: throughput figures. Prints pods/s for observe + run + the
 * binding coming back, on 5,000 nodes x 150,000 pods (3 regions x 3 zones,
 * 100 ReplicationControllers) and on 50,000 nodes. No timed assertions:
 * it asserts only correctness (no node over capacity, every RC in one
 * region and spread over its zones within one pod of even).
 *
 * Environment: AEP_SCHED_PERF_PODS (default 150000), AEP_SCHED_PERF_BIG=1
 * adds 50,000 nodes x 1,000,000 pods, AEP_SCHED_PERF_FULL=1 adds a run
 * that scores every feasible node (no sampling) for comparison,
 * AEP_SCHED_PERF_SAMPLE sets the sample (default 100 feasible nodes). */
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

#define REGIONS 3
#define ZONES	3 /* per region */

static struct aep_object *decode(struct aep_buf *b)
{
	struct aep_object *o = NULL;
	struct aep_error e = {0};
	assert_false(b->failed);
	if (aep_object_decode(b->data, b->len, &o, &e) != 0)
		fail_msg("decode: %s", e.msg);
	return o;
}

static struct aep_object *make_node(int i, int nodes)
{
	int zi = i % (REGIONS * ZONES);
	(void)nodes;
	char name[64], region[16], zone[16];
	snprintf(name, sizeof(name), "n-%d-%d", zi, i);
	snprintf(region, sizeof(region), "r%d", zi / ZONES);
	snprintf(zone, sizeof(zone), "r%d-z%d", zi / ZONES, zi % ZONES);
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "kind");
	aep_pack_str(&pk, "Node");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, name);
	aep_pack_str(&pk, "labels");
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "region");
	aep_pack_str(&pk, region);
	aep_pack_str(&pk, "zone");
	aep_pack_str(&pk, zone);
	aep_pack_str(&pk, "status");
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "allocatable");
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "cpu");
	aep_pack_str(&pk, "32");
	aep_pack_str(&pk, "memory");
	aep_pack_str(&pk, "128Gi");
	aep_pack_str(&pk, "pods");
	aep_pack_str(&pk, "110");
	aep_pack_str(&pk, "conditions");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "type");
	aep_pack_str(&pk, "Ready");
	aep_pack_str(&pk, "status");
	aep_pack_str(&pk, "True");
	struct aep_object *o = decode(&b);
	aep_buf_free(&b);
	return o;
}

static struct aep_object *make_rc(int rc)
{
	struct aep_buf b;
	char name[32];
	snprintf(name, sizeof(name), "rc-%d", rc);
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "kind");
	aep_pack_str(&pk, "ReplicationController");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, name);
	aep_pack_str(&pk, "spec");
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "selector");
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "app");
	aep_pack_str(&pk, name);
	aep_pack_str(&pk, "template");
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "labels");
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "app");
	aep_pack_str(&pk, name);
	aep_pack_str(&pk, "spec");
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "containers");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, "c");
	aep_pack_str(&pk, "image");
	aep_pack_str(&pk, "busybox");
	struct aep_object *o = decode(&b);
	aep_buf_free(&b);
	return o;
}

/* Pod @i of RC @rc; even RCs pin their region with a node selector, odd
 * ones let the Region affinity choose. @node: bound there, or NULL. */
static struct aep_object *make_pod(int rc, int i, const char *node)
{
	char name[48], app[32], region[8];
	snprintf(name, sizeof(name), "rc-%d-%d", rc, i);
	snprintf(app, sizeof(app), "rc-%d", rc);
	snprintf(region, sizeof(region), "r%d", rc % REGIONS);
	bool sel = rc % 2 == 0;
	struct aep_buf b;
	msgpack_packer pk;
	aep_buf_init(&b);
	aep_packer_init(&pk, &b);
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "kind");
	aep_pack_str(&pk, "Pod");
	aep_pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, name);
	aep_pack_str(&pk, "uid");
	aep_pack_str(&pk, name);
	aep_pack_str(&pk, "labels");
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "app");
	aep_pack_str(&pk, app);
	aep_pack_str(&pk, "spec");
	msgpack_pack_map(&pk, 1 + sel + (node != NULL));
	if (node != NULL) {
		aep_pack_str(&pk, "nodeName");
		aep_pack_str(&pk, node);
	}
	if (sel) {
		aep_pack_str(&pk, "nodeSelector");
		msgpack_pack_map(&pk, 1);
		aep_pack_str(&pk, "region");
		aep_pack_str(&pk, region);
	}
	aep_pack_str(&pk, "containers");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 3);
	aep_pack_str(&pk, "name");
	aep_pack_str(&pk, "c");
	aep_pack_str(&pk, "image");
	aep_pack_str(&pk, "busybox");
	aep_pack_str(&pk, "resources");
	msgpack_pack_map(&pk, 1);
	aep_pack_str(&pk, "requests");
	msgpack_pack_map(&pk, 2);
	aep_pack_str(&pk, "cpu");
	aep_pack_str(&pk, "100m");
	aep_pack_str(&pk, "memory");
	aep_pack_str(&pk, "256Mi");
	struct aep_object *o = decode(&b);
	aep_buf_free(&b);
	return o;
}

static double secs(int64_t ns)
{
	return (double)ns / 1e9;
}

/* Node names are "n-<zone index>-<i>". */
static int zone_of(const char *node)
{
	return atoi(node + 2);
}

static void scenario(int nodes, int pods, int rcs, uint32_t sample_min, const char *label)
{
	struct aep_sched_policy *pol = NULL;
	struct aep_sched *s = NULL;
	assert_int_equal(aep_sched_policy_default(&pol), 0);
	assert_int_equal(aep_sched_new(pol, &s), 0);
	aep_sched_set_sample(s, sample_min, 0);

	int64_t t0 = aep_now_monotonic_ns();
	for (int i = 0; i < nodes; i++) {
		struct aep_object *o = make_node(i, nodes);
		assert_int_equal(aep_sched_observe(s, AEP_EV_ADDED, o), 0);
		aep_object_unref(o);
	}
	for (int r = 0; r < rcs; r++) {
		struct aep_object *o = make_rc(r);
		assert_int_equal(aep_sched_observe(s, AEP_EV_ADDED, o), 0);
		aep_object_unref(o);
	}
	int64_t t_nodes = aep_now_monotonic_ns() - t0;

	/* Pods arrive RC by RC in chunks, as replication controllers create
	 * them; decoding is outside the timings. */
	struct aep_object **objs = malloc((size_t)pods * sizeof(*objs));
	assert_non_null(objs);
	int per_rc = pods / rcs;
	for (int i = 0; i < pods; i++)
		objs[i] = make_pod(i % rcs, i / rcs, NULL);
	int(*per_zone)[REGIONS * ZONES] = calloc((size_t)rcs, sizeof(*per_zone));
	assert_non_null(per_zone);

	enum { BATCH = 1024 };
	struct aep_sched_binding *bind = malloc(BATCH * sizeof(*bind));
	struct aep_sched_failure *fail = malloc(BATCH * sizeof(*fail));
	int64_t t_obs = 0, t_run = 0, t_ack = 0;
	size_t bound = 0, failed = 0;
	struct aep_object **ack = malloc(BATCH * sizeof(*ack));
	for (int i = 0; i < pods; i += BATCH) {
		int n = pods - i < BATCH ? pods - i : BATCH;
		int64_t a = aep_now_monotonic_ns();
		for (int j = 0; j < n; j++)
			assert_int_equal(aep_sched_observe(s, AEP_EV_ADDED, objs[i + j]), 0);
		int64_t b = aep_now_monotonic_ns();
		size_t nb = 0, nf = 0;
		assert_int_equal(aep_sched_run(s, 0, BATCH, bind, &nb, fail, &nf), 0);
		int64_t c = aep_now_monotonic_ns();
		t_obs += b - a;
		t_run += c - b;
		for (size_t j = 0; j < nf; j++) {
			aep_object_unref(fail[j].pod);
			aep_free(fail[j].message);
		}
		failed += nf;
		/* The store's answer: the bound pod comes back through the watch. */
		for (size_t j = 0; j < nb; j++) {
			int rc = atoi(bind[j].pod->meta.name + 3);
			per_zone[rc][zone_of(bind[j].node)]++;
			ack[j] = make_pod(rc, atoi(strchr(bind[j].pod->meta.name + 3, '-') + 1),
					  bind[j].node);
			aep_object_unref(bind[j].pod);
		}
		int64_t d = aep_now_monotonic_ns();
		for (size_t j = 0; j < nb; j++) {
			assert_int_equal(aep_sched_observe(s, AEP_EV_MODIFIED, ack[j]), 0);
			aep_object_unref(ack[j]);
		}
		t_ack += aep_now_monotonic_ns() - d;
		bound += nb;
	}
	assert_int_equal(failed, 0);
	assert_int_equal(bound, (size_t)pods);
	assert_int_equal(aep_sched_queued(s), 0);

	/* No node over capacity. */
	for (int i = 0; i < nodes; i++) {
		char name[64];
		struct aep_sched_node_info ni;
		snprintf(name, sizeof(name), "n-%d-%d", i % (REGIONS * ZONES), i);
		assert_int_equal(aep_sched_node_info(s, name, &ni), 0);
		assert_true(ni.req_cpu <= ni.alloc_cpu);
		assert_true(ni.req_mem <= ni.alloc_mem);
		assert_true(ni.pods <= ni.alloc_pods);
	}
	/* Each RC in one region, its zones within one pod of even. */
	for (int r = 0; r < rcs; r++) {
		int region = -1, lo = INT32_MAX, hi = 0;
		for (int z = 0; z < REGIONS * ZONES; z++) {
			if (per_zone[r][z] == 0)
				continue;
			if (region < 0)
				region = z / ZONES;
			assert_int_equal(z / ZONES, region);
		}
		if (r % 2 == 0)
			assert_int_equal(region, r % REGIONS);
		for (int z = region * ZONES; z < (region + 1) * ZONES; z++) {
			lo = per_zone[r][z] < lo ? per_zone[r][z] : lo;
			hi = per_zone[r][z] > hi ? per_zone[r][z] : hi;
		}
		if (hi - lo > 1)
			fail_msg("rc-%d: zones %d/%d/%d", r, per_zone[r][region * ZONES],
				 per_zone[r][region * ZONES + 1], per_zone[r][region * ZONES + 2]);
	}

	double total = secs(t_obs + t_run + t_ack);
	printf("scheduler %s: %d nodes, %d pods, %d RCs (%d pods each), sample %u%s\n", label,
	       nodes, pods, rcs, per_rc, sample_min, sample_min ? "" : " (all feasible)");
	printf("  nodes+RCs observed  %8.3f s\n", secs(t_nodes));
	printf("  pod ADDED observe   %8.3f s  %6.2f us/pod\n", secs(t_obs),
	       secs(t_obs) * 1e6 / pods);
	printf("  run (place)         %8.3f s  %6.2f us/pod  %10.0f pods/s\n", secs(t_run),
	       secs(t_run) * 1e6 / pods, pods / secs(t_run));
	printf("  binding observed    %8.3f s  %6.2f us/pod\n", secs(t_ack),
	       secs(t_ack) * 1e6 / pods);
	printf("  all three           %8.3f s  %6.2f us/pod  %10.0f pods/s\n", total,
	       total * 1e6 / pods, pods / total);
	fflush(stdout);

	for (int i = 0; i < pods; i++)
		aep_object_unref(objs[i]);
	free(objs);
	free(per_zone);
	free(bind);
	free(fail);
	free(ack);
	aep_sched_free(s);
}

static int env_int(const char *name, int dflt)
{
	const char *v = getenv(name);
	return v != NULL && *v != '\0' ? atoi(v) : dflt;
}

static void test_5000_nodes(void **state)
{
	(void)state;
	scenario(5000, env_int("AEP_SCHED_PERF_PODS", 150000), 100,
		 (uint32_t)env_int("AEP_SCHED_PERF_SAMPLE", 100), "5k");
	if (env_int("AEP_SCHED_PERF_FULL", 0))
		scenario(5000, 20000, 100, 0, "5k-full");
}

static void test_50000_nodes(void **state)
{
	(void)state;
	scenario(50000, env_int("AEP_SCHED_PERF_PODS", 150000), 100,
		 (uint32_t)env_int("AEP_SCHED_PERF_SAMPLE", 100), "50k");
	if (env_int("AEP_SCHED_PERF_BIG", 0))
		scenario(50000, 1000000, 1000, 100, "50k-1M");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_5000_nodes),
	    cmocka_unit_test(test_50000_nodes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
