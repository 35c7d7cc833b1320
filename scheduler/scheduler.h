/* scheduler: placement of pods on nodes.
 *
 * The scheduler keeps its own cache of nodes, pods, namespaces and the
 * groups (Services, ReplicationControllers) that spread pods, fed from the
 * store's watches through aep_sched_observe(). Unbound pods wait in a queue;
 * aep_sched_run() places the due ones with the policy's predicates
 * (filters) and priorities (scores), assumes each placement at once and
 * hands back bindings for the caller to write through the store. A binding
 * the store refuses is given back with aep_sched_forget().
 *
 * Pure: no sockets, no clocks, no threads. The caller passes monotonic time
 * in. Nothing here is thread-safe.
 *
 * Speed: per pod the work is bounded by a sample of feasible nodes walked
 * from a rotating offset in an order interleaved by the spreading label
 * (zone), so that every zone is in every sample; static predicates are
 * cached per equivalence class of pods (namespace and node selector). */
#ifndef AEP_SCHEDULER_H
#define AEP_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/lib.h"
#include "state/state.h"

/* Namespace annotation holding the project's default node selector. */
#define AEP_SCHED_NODE_SELECTOR_ANNOTATION "aep.io/node-selector"

/* ---- policy ------------------------------------------------------------- */

struct aep_sched_policy;

/* A policy document as a msgpack map (the master turns a YAML or JSON file into msgpack):
 * {kind: "Policy", apiVersion: "v1", predicates: [{name, argument?}...], priorities: [{name,
 * weight, argument?}...]}, OpenShift scheduler.json shape: predicate names PodFitsResources,
 * PodFitsHostPorts (alias PodFitsPorts), MatchNodeSelector, HostName, NodeReady (ready +
 * schedulable; always on even if not listed), and argument forms
 * {labelsPresence: {labels: [..], presence: bool}}, {serviceAffinity: {labels: [..]}} under any
 * user name; priorities LeastRequestedPriority, BalancedResourceAllocation,
 * SelectorSpreadPriority (alias ServiceSpreadingPriority), and argument forms
 * {serviceAntiAffinity: {label: "zone"}}, {labelPreference: {label: "..", presence: bool}}.
 * Weights 1..100. Unknown names, bad arguments, wrong types, duplicate names: AEP_EINVALID
 * with a message naming the entry ("priorities[2]: unknown priority \"Foo\""); AEP_ENOMEM.
 * On failure *@out is untouched. The document replaces the defaults. */
int aep_sched_policy_parse(const msgpack_object *doc, struct aep_sched_policy **out,
			   struct aep_error *e);
/* The default policy: NodeReady, PodFitsResources, PodFitsHostPorts, MatchNodeSelector,
 * HostName, Region = serviceAffinity on "region"; priorities LeastRequestedPriority 1,
 * BalancedResourceAllocation 1, SelectorSpreadPriority 1, Zone = serviceAntiAffinity on "zone"
 * weight 2. Returns 0 or AEP_ENOMEM. */
int aep_sched_policy_default(struct aep_sched_policy **out);
void aep_sched_policy_free(struct aep_sched_policy *p); /* NULL is fine */
/* One line per predicate/priority, for the master's log at start-up; appended to @out.
 * Returns 0 or AEP_ENOMEM. */
int aep_sched_policy_describe(const struct aep_sched_policy *p, struct aep_buf *out);

/* ---- the scheduler ------------------------------------------------------ */

struct aep_sched;

/* Takes ownership of @p (also on failure). Returns 0 or AEP_ENOMEM. */
int aep_sched_new(struct aep_sched_policy *p, struct aep_sched **out);
void aep_sched_free(struct aep_sched *s); /* NULL is fine; drops every reference held */

/* How many nodes to score per pod: at least @min_feasible feasible nodes, or @percent of the
 * nodes if more, always enough to see every value of the spreading label; 0 and 0 score every
 * feasible node. Defaults: 100 and 0. */
void aep_sched_set_sample(struct aep_sched *s, uint32_t min_feasible, uint32_t percent);

/* Feed every change of Node, Pod, Namespace, Service and ReplicationController objects in
 * revision order, exactly as the store's watches (or a list at start) give them; other kinds
 * are ignored. Pods without spec.nodeName join the queue (in arrival order); bound pods count
 * against their node (requests, pod count, host ports, per-group counts); pods in phase
 * Succeeded or Failed count nowhere. A pod seen bound that the scheduler had assumed elsewhere
 * is accounted where the store says. The cache keeps references to the objects. Returns 0,
 * AEP_EINVALID for an object it cannot read (nothing changes), or AEP_ENOMEM, which leaves the
 * cache as it was. */
int aep_sched_observe(struct aep_sched *s, enum aep_event_type t, const struct aep_object *o);

struct aep_sched_binding {
	struct aep_object *pod; /* a reference: the caller unrefs it */
	const char *node;	/* valid until the node leaves the cache */
};
struct aep_sched_failure {
	struct aep_object *pod; /* a reference: the caller unrefs it */
	char *message;		/* aep_malloc'd, the caller frees:
				   "0/5000 nodes available: 4000 insufficient cpu, 1000 did not match
				   node selector" */
};
/* Place up to @max queued pods that are due at @now_ns (a monotonic clock given by the caller).
 * Each placed pod is assumed (its node's accounting includes it at once) and returned in @bind;
 * each pod that fits nowhere is re-queued with backoff (1 s doubling to 60 s) and returned in
 * @fail (arrays of @max; counts in *@nbind, *@nfail). A node added or changed, or a pod deleted
 * or un-assumed, makes every backed-off pod due again. Out of memory part-way stops early and
 * returns 0 with what was done (the rest stays queued); AEP_ENOMEM only when nothing was done. */
int aep_sched_run(struct aep_sched *s, int64_t now_ns, size_t max, struct aep_sched_binding *bind,
		  size_t *nbind, struct aep_sched_failure *fail, size_t *nfail);
/* The binding of @pod (ns/name/uid) was refused or its outcome is unknown: drop the assumption;
 * if the cache still has the pod unbound, queue it again (due now). Unknown pods and other uids
 * are ignored. */
void aep_sched_forget(struct aep_sched *s, const char *ns, const char *name, const char *uid);
size_t aep_sched_queued(const struct aep_sched *s);    /* pods waiting (due or backed off) */
int64_t aep_sched_next_due(const struct aep_sched *s); /* earliest backed-off due time, INT64_MAX
							  if none */

/* What the cache counts against one node, for describe and tests. */
struct aep_sched_node_info {
	bool registered; /* the Node object is in the cache (else only pods name it) */
	bool ready, unschedulable;
	int64_t alloc_cpu, alloc_mem, alloc_pods; /* milli-cpu, bytes, pods */
	int64_t req_cpu, req_mem, pods;		  /* bound and assumed pods */
};
/* Returns 0 or AEP_ENOTFOUND. */
int aep_sched_node_info(const struct aep_sched *s, const char *node,
			struct aep_sched_node_info *out);

/* Dry run: place @pods (validated Pod objects, not necessarily stored; nodeName empty) one after
 * another as if each were bound, then undo every assumption, leaving the cache as it was.
 * Every feasible node is scored (no sampling). out[i] gets node/region/zone (labels "region",
 * "zone" of the chosen node; "" when absent), the total score, or node NULL and why = the
 * explanation. Returns 0, or AEP_ENOMEM with every out[i] cleared and the cache unchanged. */
struct aep_sched_plan {
	char *node, *region, *zone, *why; /* aep_malloc'd or NULL */
	int64_t score;
};
int aep_sched_plan(struct aep_sched *s, struct aep_object *const *pods, size_t n,
		   struct aep_sched_plan *out);
void aep_sched_plan_clear(struct aep_sched_plan *p);

#endif /* AEP_SCHEDULER_H */
