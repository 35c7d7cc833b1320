"""The scheduler with regions and zones, against real 3-master clusters, as an operator
sees it through the CLI: six Node objects (no agents) in two regions of three zones each,
one node per zone, then

  (a) a ReplicationController's 12 pods with nodeSelector region=east spread 4/4/4 over
      the east zones;
  (b) `aep admin manage-node --schedulable=false` keeps new pods off a node, and
      `--schedulable=true` lets them on again; --evacuate and manage-node's errors;
  (c) a pod that fits nowhere stays Pending with a FailedScheduling event;
  (d) `aep plan -f` shows where pods would go, and why not, and writes nothing;
  (e) the project node selector (namespace annotation aep.io/node-selector);
  (f) kill -9 of the leader while 300 pods (created with every node cordoned, then the
      nodes opened) are being placed: each is bound exactly once and no node is over its
      capacity.

Run one part: python3 test_scheduler.py test_plan_writes_nothing"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from aeptest import Cluster, run  # noqa: E402

# name -> (region, zone): one node per zone, three zones per region.
NODES = {
    "node-1": ("east", "east-a"),
    "node-2": ("east", "east-b"),
    "node-3": ("east", "east-c"),
    "node-4": ("west", "west-a"),
    "node-5": ("west", "west-b"),
    "node-6": ("west", "west-c"),
}
CPU_MILLI = 4000
MAX_PODS = 110


def node_obj(name, region, zone):
    res = {"cpu": "4", "memory": "8Gi", "pods": str(MAX_PODS)}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"region": region, "zone": zone}},
            "status": {"capacity": res, "allocatable": dict(res),
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod_obj(name, labels=None, ns=None, selector=None, cpu=None):
    container = {"name": "c", "image": "busybox"}
    if cpu is not None:
        container["resources"] = {"requests": {"cpu": cpu}}
    meta = {"name": name}
    if labels:
        meta["labels"] = labels
    if ns:
        meta["namespace"] = ns
    spec = {"containers": [container]}
    if selector:
        spec["nodeSelector"] = selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def create(cl, objs):
    """One `aep create -f -` of a List of @objs."""
    r = cl.aep("create", "-f", "-", input=json.dumps({"kind": "List", "items": objs}),
               timeout=300)
    return r.stdout


def pods(cl, ns=None):
    """{(namespace, name): pod} of every pod (or those of @ns)."""
    args = ["get", "pods", "-o", "json"] + (["-n", ns] if ns else ["-A"])
    out = cl.aep(*args).stdout.strip()
    items = json.loads(out)["items"] if out else []
    return {(p["metadata"].get("namespace", "default"), p["metadata"]["name"]): p
            for p in items}


def node_of(p):
    return p.get("spec", {}).get("nodeName")


def wait_bound(cl, names, ns="default", timeout=30.0):
    """Poll until every pod in @names has spec.nodeName; {name: node}."""
    deadline = time.time() + timeout
    while True:
        got = pods(cl, ns)
        bound = {n: node_of(got[(ns, n)]) for n in names
                 if (ns, n) in got and node_of(got[(ns, n)])}
        if len(bound) == len(names):
            return bound
        if time.time() > deadline:
            missing = sorted(set(names) - set(bound))
            raise AssertionError("%d of %d pods not bound after %.0fs: %s ...; logs in %s" % (
                len(missing), len(names), timeout, missing[:10], cl.dir))
        time.sleep(0.3)


def scheduler_cluster():
    """A 3-master cluster with the six nodes registered (through the CLI)."""
    cl = Cluster(3)
    try:
        cl.wait_leader()
        out = create(cl, [node_obj(n, r, z) for n, (r, z) in sorted(NODES.items())])
        for n in NODES:
            assert "node/%s created" % n in out, out
    except BaseException:
        cl.close()
        raise
    return cl


def events_for(cl, pod, ns="default"):
    out = cl.aep("get", "events", "-n", ns, "-o", "json").stdout.strip()
    items = json.loads(out)["items"] if out else []
    return [e for e in items
            if e.get("kind", "Event") == "Event"
            and e.get("involvedObject", {}).get("name") == pod]


def table(stdout):
    """A kubectl-style table as (header, [rows]) with cells split on runs of spaces; the
    last column may hold spaces, so each row is split into at most len(header) cells."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    header = lines[0].split()
    rows = []
    for ln in lines[1:]:
        cells = ln.split(None, len(header) - 1)
        rows.append(cells)
    return header, rows


# ---- (a) ----------------------------------------------------------------------------------

def test_rc_spreads_over_zones_in_region():
    with scheduler_cluster() as cl:
        template_spec = {"nodeSelector": {"region": "east"},
                         "containers": [{"name": "c", "image": "busybox"}]}
        rc = {"apiVersion": "v1", "kind": "ReplicationController",
              "metadata": {"name": "web", "labels": {"app": "web"}},
              "spec": {"replicas": 12, "selector": {"app": "web"},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": template_spec}}}
        # The leader's replication manager makes the 12 pods; the
        # scheduler places them.
        create(cl, [rc])
        deadline = time.time() + 30
        while True:
            mine = {name: p for (ns, name), p in pods(cl, "default").items()
                    if p["metadata"].get("labels", {}).get("app") == "web"}
            bound = {name: node_of(p) for name, p in mine.items() if node_of(p)}
            if len(bound) == 12:
                break
            assert time.time() < deadline, "RC web: %d pods, %d bound after 30s; logs in %s" % (
                len(mine), len(bound), cl.dir)
            time.sleep(0.3)
        assert len(mine) == 12, sorted(mine)
        assert all(n.startswith("web-") for n in mine), sorted(mine)
        per_zone = {}
        for n, node in bound.items():
            assert node in NODES, (n, node)
            region, zone = NODES[node]
            assert region == "east", "pod %s on %s in region %s: %s" % (n, node, region, bound)
            per_zone[zone] = per_zone.get(zone, 0) + 1
        assert per_zone == {"east-a": 4, "east-b": 4, "east-c": 4}, per_zone


# ---- (b) ----------------------------------------------------------------------------------

def test_cordon_keeps_pods_off_node():
    with scheduler_cluster() as cl:
        r = cl.aep("admin", "manage-node", "node-1", "--schedulable=false")
        assert "node/node-1 marked unschedulable" in r.stdout, r.stdout
        node = json.loads(cl.aep("get", "node", "node-1", "-o", "json").stdout)
        assert node["spec"].get("unschedulable") is True, node

        # Five pods that fit anywhere in region east (node-1's): none lands on node-1.
        names = ["extra-%d" % i for i in range(1, 6)]
        create(cl, [pod_obj(n, {"app": "extra"}, selector={"region": "east"})
                    for n in names])
        bound = wait_bound(cl, names)
        assert all(node in ("node-2", "node-3") for node in bound.values()), bound

        # A pod that only node-1 could take waits while it is cordoned ...
        create(cl, [pod_obj("pinned", selector={"zone": "east-a"})])
        time.sleep(3)
        p = pods(cl, "default")[("default", "pinned")]
        assert not node_of(p), "pinned bound to a cordoned node: %s" % node_of(p)

        # ... and goes there once it is schedulable again.
        r = cl.aep("admin", "manage-node", "node-1", "--schedulable=true")
        assert "node/node-1 marked schedulable" in r.stdout, r.stdout
        node = json.loads(cl.aep("get", "node", "node-1", "-o", "json").stdout)
        assert not node.get("spec", {}).get("unschedulable"), node
        assert wait_bound(cl, ["pinned"]) == {"pinned": "node-1"}


def test_manage_node_evacuate_and_errors():
    with scheduler_cluster() as cl:
        names = ["p-%d" % i for i in range(1, 7)]
        create(cl, [pod_obj(n, selector={"region": "east"}) for n in names])
        bound = wait_bound(cl, names)
        on2 = sorted(n for n, node in bound.items() if node == "node-2")
        assert on2, "no pod landed on node-2: %s" % bound

        # Evacuating a schedulable node is refused and deletes nothing.
        r = cl.aep("admin", "manage-node", "node-2", "--evacuate", check=False)
        assert r.returncode == 1 and "schedulable" in r.stderr, (r.stdout, r.stderr)
        assert len(pods(cl)) == len(names)

        r = cl.aep("admin", "manage-node", "node-2", "--schedulable=false", "--evacuate")
        assert "node/node-2 marked unschedulable" in r.stdout, r.stdout
        for n in on2:
            assert "pod/default/%s deleted" % n in r.stdout, r.stdout
        left = pods(cl)
        assert sorted(n for (_, n) in left) == sorted(set(names) - set(on2)), left
        assert all(node_of(p) != "node-2" for p in left.values())

        # `--schedulable` alone means true.
        r = cl.aep("admin", "manage-node", "node-2", "--schedulable")
        assert "node/node-2 marked schedulable" in r.stdout, r.stdout

        r = cl.aep("admin", "manage-node", "no-such-node", "--schedulable=false", check=False)
        assert r.returncode == 1 and "NotFound" in r.stderr and "no-such-node" in r.stderr, \
            r.stderr
        r = cl.aep("admin", "manage-node", "node-3", check=False)
        assert r.returncode == 1 and "--schedulable" in r.stderr, r.stderr
        r = cl.aep("admin", "manage-node", "node-3", "--schedulable=maybe", check=False)
        assert r.returncode == 1 and "maybe" in r.stderr, r.stderr
        # None of the refused calls changed node-3.
        node = json.loads(cl.aep("get", "node", "node-3", "-o", "json").stdout)
        assert not node.get("spec", {}).get("unschedulable"), node


# ---- (c) ----------------------------------------------------------------------------------

def test_unschedulable_pod_gets_event():
    with scheduler_cluster() as cl:
        create(cl, [pod_obj("big", cpu="64")])
        time.sleep(3)
        p = pods(cl, "default")[("default", "big")]
        assert not node_of(p), "a pod asking for 64 cpus was bound to %s" % node_of(p)
        deadline = time.time() + 15
        evs = []
        while time.time() < deadline:
            evs = [e for e in events_for(cl, "big") if e.get("reason") == "FailedScheduling"]
            if evs:
                break
            time.sleep(0.5)
        assert evs, "no FailedScheduling event for pod big: %s" % events_for(cl, "big")
        msg = evs[0].get("message", "")
        assert msg.startswith("0/6 nodes available: 6 insufficient cpu"), msg


# ---- (d) ----------------------------------------------------------------------------------

def test_plan_writes_nothing():
    with scheduler_cluster() as cl:
        create(cl, [pod_obj("existing")])
        wait_bound(cl, ["existing"])
        before = pods(cl)
        manifest = os.path.join(cl.dir, "plan.json")
        with open(manifest, "w") as f:
            json.dump({"kind": "List", "items": [pod_obj("fits", cpu="500m"),
                                                 pod_obj("too-big", cpu="64")]}, f)
        r = cl.aep("plan", "-f", manifest)
        header, rows = table(r.stdout.rsplit("\n", 2)[0])
        assert header == ["POD", "NODE", "REGION", "ZONE", "SCORE", "REASON"], r.stdout
        by_pod = {row[0]: row for row in rows}
        assert by_pod["fits"][1] in NODES, r.stdout
        assert by_pod["fits"][2:4] == list(NODES[by_pod["fits"][1]]), r.stdout
        assert by_pod["too-big"][1] == "<none>", r.stdout
        assert "insufficient cpu" in by_pod["too-big"][-1], r.stdout
        assert r.stdout.strip().splitlines()[-1] == "2 pods: 1 placed, 1 unschedulable", \
            r.stdout

        # An RC gives its replicas, named after it; -o json is the server's answer.
        rc = {"kind": "ReplicationController", "metadata": {"name": "api"},
              "spec": {"replicas": 3, "selector": {"app": "api"},
                       "template": {"metadata": {"labels": {"app": "api"}},
                                    "spec": {"nodeSelector": {"region": "west"},
                                             "containers": [{"name": "c",
                                                             "image": "busybox"}]}}}}
        with open(manifest, "w") as f:
            json.dump(rc, f)
        plan = json.loads(cl.aep("plan", "-f", manifest, "-o", "json").stdout)
        assert sorted(i["name"] for i in plan["items"]) == ["api-1", "api-2", "api-3"], plan
        assert all(i["region"] == "west" for i in plan["items"]), plan

        # A bad object: Invalid naming it, exit 1.
        with open(manifest, "w") as f:
            json.dump({"kind": "List", "items": [pod_obj("ok"),
                                                 {"kind": "Pod", "metadata": {"name": "x"},
                                                  "spec": {}}]}, f)
        r = cl.aep("plan", "-f", manifest, check=False)
        assert r.returncode == 1 and "Invalid" in r.stderr and "objects[1]" in r.stderr, \
            r.stderr

        after = pods(cl)
        assert sorted(after) == sorted(before), (sorted(before), sorted(after))
        assert cl.aep("get", "rc", "-o", "name").stdout.strip() == ""


# ---- (e) ----------------------------------------------------------------------------------

def test_project_node_selector():
    with scheduler_cluster() as cl:
        create(cl, [{"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": "westproj",
                                  "annotations": {"aep.io/node-selector": "region=west"}}}])
        names = ["w-%d" % i for i in range(1, 5)]
        create(cl, [pod_obj(n, ns="westproj") for n in names])
        bound = wait_bound(cl, names, ns="westproj")
        assert all(NODES[node][0] == "west" for node in bound.values()), bound
        # The project's selector and the pod's own must both match: none does.
        create(cl, [pod_obj("east-wish", ns="westproj", selector={"region": "east"})])
        time.sleep(3)
        p = pods(cl, "westproj")[("westproj", "east-wish")]
        assert not node_of(p), "east-wish bound to %s despite the project selector" % node_of(p)


# ---- (f) ----------------------------------------------------------------------------------

def milli(q):
    return int(q[:-1]) if q.endswith("m") else int(float(q) * 1000)


def test_leader_kill_binds_each_pod_once():
    n = 300
    cpu = "75m"  # 300 x 75m = 22.5 of the 24 cpus: a double count would overfill a node
    with scheduler_cluster() as cl:
        leader = cl.wait_leader()
        follower = next(nm for nm in cl.names if nm != leader)
        # Every change to the pods, from a master that survives, to see each binding.
        w = cl.client(follower, timeout=30.0)
        try:
            rv = w.call("list", {"kind": "pods"})["resourceVersion"]
            w.call("watch", {"kind": "pods", "resourceVersion": rv})
            # The nodes are closed while the pods arrive, so that the leader has all 300 to
            # place, not just the last one, when it dies: one create of a List, then the
            # nodes open again and the leader is killed right after.
            r = cl.aep("admin", "manage-node", "-l", "region", "--schedulable=false")
            assert r.stdout.count("marked unschedulable") == len(NODES), r.stdout
            names = ["batch-%d" % i for i in range(1, n + 1)]
            create(cl, [pod_obj(nm, {"app": "batch"}, cpu=cpu) for nm in names])
            assert not any(node_of(p) for p in pods(cl).values()), "bound to a closed node"
            cl.aep("admin", "manage-node", "-l", "region", "--schedulable=true")
            cl.kill(leader)
            killed_at = time.time()
            seen = {}  # pod -> the nodeNames it was seen with, in order

            def drain(timeout):
                evs = w.next_events(1 << 30, timeout=timeout)
                w.events.clear()
                for ev in evs:
                    if ev.get("type") == "ERROR":
                        raise AssertionError("watch ended: %s" % ev)
                    obj = ev.get("object", {})
                    nm = obj.get("metadata", {}).get("name")
                    node = node_of(obj)
                    if nm and node and (not seen.get(nm) or seen[nm][-1] != node):
                        seen.setdefault(nm, []).append(node)

            drain(0.2)
            bound_at_kill = len(seen)
            new_leader = cl.wait_leader(timeout=30, exclude=(leader,))
            bound = wait_bound(cl, names, timeout=max(1.0, 60 - (time.time() - killed_at)))
            drain(2.0)
        finally:
            w.close()
        print("  %d/%d pods bound when %s was killed; new leader %s" % (
            bound_at_kill, n, leader, new_leader))
        moved = {nm: v for nm, v in seen.items() if len(v) > 1}
        assert not moved, "pods bound more than once: %s" % dict(list(moved.items())[:5])
        for nm in names:
            assert seen.get(nm) == [bound[nm]], (nm, seen.get(nm), bound[nm])
        used_cpu, used_pods = {}, {}
        for p in pods(cl).values():
            node = node_of(p)
            if not node:
                continue
            req = p["spec"]["containers"][0].get("resources", {}).get("requests", {})
            used_cpu[node] = used_cpu.get(node, 0) + milli(req.get("cpu", "0"))
            used_pods[node] = used_pods.get(node, 0) + 1
        over = {nd: (used_cpu[nd], used_pods[nd]) for nd in used_cpu
                if used_cpu[nd] > CPU_MILLI or used_pods[nd] > MAX_PODS}
        print("  milli-cpu per node: %s" % sorted(used_cpu.items()))
        assert not over, "nodes over capacity (milli-cpu, pods): %s" % over
        assert set(used_cpu) <= set(NODES), used_cpu


TESTS = [test_rc_spreads_over_zones_in_region, test_cordon_keeps_pods_off_node,
         test_manage_node_evacuate_and_errors, test_unschedulable_pod_gets_event,
         test_plan_writes_nothing, test_project_node_selector,
         test_leader_kill_binds_each_pod_once]

if __name__ == "__main__":
    run([t for t in TESTS if len(sys.argv) < 2 or t.__name__ in sys.argv[1:]])
