"""The replication manager and `aep scale`, against real 3-master clusters, as an operator
sees them through the CLI: three ready Node objects (no agents), then

  (a) an RC with replicas 5 gets exactly 5 pods with its labels, all bound; `aep scale
      rc/web --replicas=9` makes 9, `aep scale rc web --replicas 2` makes 2 (the two
      oldest stay) and no pod of a second RC is touched; a deleted pod is replaced;
  (b) bad `aep scale` inputs exit 1 with a message and change nothing;
  (c) scale to 20 and kill -9 the leader as soon as the scale returns: once the new
      leader settles there are exactly 20 pods and status.replicas is 20.

Run one part: python3 test_replication.py test_scale_survives_leader_kill"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from aeptest import Cluster, run  # noqa: E402

NODES = ["node-1", "node-2", "node-3"]


def node_obj(name):
    res = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"region": "east", "zone": "east-" + name[-1]}},
            "status": {"capacity": res, "allocatable": dict(res),
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def rc_obj(name, replicas, app):
    return {"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"replicas": replicas, "selector": {"app": app},
                     "template": {"metadata": {"labels": {"app": app, "tier": "t-" + app}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def create(cl, objs):
    return cl.aep("create", "-f", "-", input=json.dumps({"kind": "List", "items": objs}),
                  timeout=120).stdout


def all_pods(cl):
    out = cl.aep("get", "pods", "-n", "default", "-o", "json").stdout.strip()
    return json.loads(out)["items"] if out else []


def pods_of(cl, app):
    """{name: pod} of the pods labelled app=@app."""
    return {p["metadata"]["name"]: p for p in all_pods(cl)
            if p["metadata"].get("labels", {}).get("app") == app}


def get_rc(cl, name):
    return json.loads(cl.aep("get", "rc", name, "-o", "json").stdout)


def wait_pods(cl, app, n, timeout=20.0, stable=0.0):
    """Poll until exactly @n pods of @app exist and all are bound (and stay @n for @stable
    seconds); {name: pod}."""
    deadline = time.time() + timeout
    since = None
    while True:
        mine = pods_of(cl, app)
        bound = [k for k, p in mine.items() if p.get("spec", {}).get("nodeName")]
        if len(mine) == n and len(bound) == n:
            since = since or time.time()
            if time.time() - since >= stable:
                return mine
        else:
            since = None
        if time.time() > deadline:
            raise AssertionError("app=%s: %d pods (%d bound), want %d after %.0fs; logs in %s"
                                 % (app, len(mine), len(bound), n, timeout, cl.dir))
        time.sleep(0.3)


def check_labels(mine, app, rc):
    for name, p in mine.items():
        assert name.startswith(rc + "-"), name
        labels = p["metadata"].get("labels", {})
        assert labels == {"app": app, "tier": "t-" + app}, (name, labels)
        assert p["spec"]["nodeName"] in NODES, (name, p["spec"]["nodeName"])


def replication_cluster():
    cl = Cluster(3)
    try:
        cl.wait_leader()
        out = create(cl, [node_obj(n) for n in NODES])
        for n in NODES:
            assert "node/%s created" % n in out, out
    except BaseException:
        cl.close()
        raise
    return cl


# ---- (a) + (b) ------------------------------------------------------------------------------

def test_scale_and_replace():
    with replication_cluster() as cl:
        create(cl, [rc_obj("other", 3, "other")])
        others = wait_pods(cl, "other", 3)
        check_labels(others, "other", "other")

        create(cl, [rc_obj("web", 5, "web")])
        mine = wait_pods(cl, "web", 5)
        check_labels(mine, "web", "web")

        r = cl.aep("scale", "rc/web", "--replicas=9")
        assert r.stdout.strip() == "replicationcontroller/web scaled", r.stdout
        assert get_rc(cl, "web")["spec"]["replicas"] == 9
        mine9 = wait_pods(cl, "web", 9)
        check_labels(mine9, "web", "web")
        assert set(mine) <= set(mine9), (sorted(mine), sorted(mine9))

        r = cl.aep("scale", "rc", "web", "--replicas", "2", "-n", "default")
        assert r.stdout.strip() == "replicationcontroller/web scaled", r.stdout
        mine2 = wait_pods(cl, "web", 2, stable=2.0)
        assert set(mine2) <= set(mine9), (sorted(mine2), sorted(mine9))
        # none is running (no agents): the youngest go, the two oldest stay
        by_age = sorted(mine9, key=lambda k: (mine9[k]["metadata"]["creationTimestamp"], k))
        assert set(mine2) == set(by_age[:2]), (sorted(mine2), by_age)
        assert set(pods_of(cl, "other")) == set(others), "the other RC's pods changed"

        # a deleted pod is replaced by one new pod
        victim = sorted(mine2)[0]
        cl.aep("delete", "pod", victim)
        deadline = time.time() + 20
        while True:
            now = pods_of(cl, "web")
            if victim not in now and len(now) == 2 and all(
                    p.get("spec", {}).get("nodeName") for p in now.values()):
                break
            assert time.time() < deadline, "pod %s not replaced: %s" % (victim, sorted(now))
            time.sleep(0.3)
        time.sleep(2)
        now = wait_pods(cl, "web", 2)
        assert len(set(now) - set(mine2)) == 1, (sorted(mine2), sorted(now))
        check_labels(now, "web", "web")
        assert set(pods_of(cl, "other")) == set(others), "the other RC's pods changed"

        # --current-replicas precondition
        r = cl.aep("scale", "rc/web", "--replicas=4", "--current-replicas=3", check=False)
        assert r.returncode == 1 and "Expected replicas to be 3, was 2" in r.stderr, r
        r = cl.aep("scale", "rc/web", "--replicas=2", "--current-replicas=2")
        assert "replicationcontroller/web scaled" in r.stdout, r.stdout

        # (b) bad inputs: exit 1, a message, nothing changed
        rv_before = get_rc(cl, "web")["metadata"]["resourceVersion"]
        other_rv = get_rc(cl, "other")["metadata"]["resourceVersion"]
        bad = [
            (["scale", "rc/web"], "replicas"),
            (["scale", "rc/web", "--replicas=-1"], "non-negative"),
            (["scale", "rc/web", "--replicas", "-3"], "non-negative"),
            (["scale", "rc/web", "--replicas=abc"], "invalid argument"),
            (["scale", "rc/web", "--replicas=3x"], "invalid argument"),
            (["scale", "rc/web", "--replicas="], "invalid argument"),
            (["scale", "rc/web", "--replicas=99999999999999999999"], "invalid argument"),
            (["scale", "rc/web", "--replicas=3", "--current-replicas=x"], "current-replicas"),
            (["scale", "pod/web", "--replicas=3"], "only replicationcontrollers"),
            (["scale", "nodes", "node-1", "--replicas=3"], "only replicationcontrollers"),
            (["scale", "bogus/web", "--replicas=3"], "resource type"),
            (["scale", "rc/nope", "--replicas=3"], 'replicationcontrollers "nope" not found'),
            (["scale", "rc/web", "-n", "elsewhere", "--replicas=3"], "not found"),
            (["scale", "rc/", "--replicas=3"], "resource and name"),
            (["scale", "rc", "--replicas=3"], "name"),
            (["scale", "--replicas=3"], "specify"),
            (["scale", "rc/web", "rc/other", "--replicas=3"], "one resource"),
        ]
        for args, msg in bad:
            r = cl.aep(*args, check=False)
            assert r.returncode == 1, (args, r.returncode, r.stdout, r.stderr)
            assert msg in r.stderr, (args, r.stderr)
            assert r.stdout == "", (args, r.stdout)
        assert get_rc(cl, "web")["metadata"]["resourceVersion"] == rv_before
        assert get_rc(cl, "other")["metadata"]["resourceVersion"] == other_rv
        assert get_rc(cl, "web")["spec"]["replicas"] == 2
        assert set(wait_pods(cl, "web", 2)) == set(now)
        assert set(pods_of(cl, "other")) == set(others)


# ---- (c) --------------------------------------------------------------------------------------

def test_scale_survives_leader_kill():
    with replication_cluster() as cl:
        create(cl, [rc_obj("web", 2, "web")])
        wait_pods(cl, "web", 2)
        leader = cl.wait_leader()
        cl.aep("scale", "rc/web", "--replicas=20")
        cl.kill(leader)
        killed_at = time.time()
        new_leader = cl.wait_leader(timeout=30, exclude=(leader,))
        deadline = killed_at + 30
        most = 0
        while True:
            try:
                mine = pods_of(cl, "web")
                rc = get_rc(cl, "web")
            except AssertionError:
                mine, rc = {}, {}
            status = rc.get("status", {}).get("replicas")
            most = max(most, len(mine))
            bound = [p for p in mine.values() if p.get("spec", {}).get("nodeName")]
            if len(mine) == 20 and len(bound) == 20 and status == 20:
                break
            assert time.time() < deadline, (
                "after killing %s (new leader %s): %d pods, %d bound, status.replicas %s; "
                "logs in %s" % (leader, new_leader, len(mine), len(bound), status, cl.dir))
            time.sleep(0.3)
        assert rc["spec"]["replicas"] == 20, rc
        assert most <= 20, "%d pods seen at once after the failover (want at most 20)" % most
        # settled: it stays exactly 20
        time.sleep(3)
        final = wait_pods(cl, "web", 20)
        check_labels(final, "web", "web")
        assert get_rc(cl, "web")["status"]["replicas"] == 20
        print("  %s killed; new leader %s settled in %.1fs (at most %d pods seen)" % (
            leader, new_leader, time.time() - killed_at, most))


if __name__ == "__main__":
    tests = [test_scale_and_replace, test_scale_survives_leader_kill]
    if len(sys.argv) > 1:
        tests = [t for t in tests if t.__name__ in sys.argv[1:]]
    run(tests)
