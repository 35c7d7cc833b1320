"""A client in another language (Python, python3-msgpack + ssl), written from
docs/API.md alone, creates, lists, gets, updates, deletes and watches
objects on a real 3-master cluster, and gets the documented errors."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from aeptest import Cluster, RpcError, pod, run  # noqa: E402


def expect_error(code, fn, *args):
    try:
        fn(*args)
    except RpcError as e:
        assert e.code == code, "expected %s, got %s (%s)" % (code, e.code, e.message)
        return e
    raise AssertionError("expected %s, got success" % code)


def test_create_list_watch():
    with Cluster(3) as cl:
        leader = cl.wait_leader()
        follower = [n for n in cl.names if n != leader][0]
        # Writes through a follower are forwarded to the leader.
        c = cl.client(follower)
        created = c.call("create", {"object": pod("web-1", {"app": "web"})})
        assert created["metadata"]["name"] == "web-1"
        assert created["metadata"]["namespace"] == "default"
        assert created["metadata"]["uid"]
        rv1 = int(created["metadata"]["resourceVersion"])
        assert rv1 > 0
        assert created["metadata"]["creationTimestamp"].endswith("Z")
        c.call("create", {"object": pod("db-1", {"app": "db"})})

        lst = c.call("list", {"kind": "pods", "labelSelector": "app=web"})
        assert [o["metadata"]["name"] for o in lst["items"]] == ["web-1"]
        all_pods = c.call("list", {"kind": "Pod"})
        assert sorted(o["metadata"]["name"] for o in all_pods["items"]) == ["db-1", "web-1"]
        list_rv = int(all_pods["resourceVersion"])
        assert list_rv >= rv1

        got = c.call("get", {"kind": "po", "namespace": "default", "name": "web-1"})
        assert got == created

        # Watch from the list's revision on another master: sees later changes only.
        w = cl.client(leader)
        wres = w.call("watch", {"kind": "pods", "resourceVersion": str(list_rv)})
        wid = wres["watch"]
        upd = dict(got)
        upd["metadata"] = dict(got["metadata"], labels={"app": "web", "v": "2"})
        updated = c.call("update", {"object": upd})
        assert int(updated["metadata"]["resourceVersion"]) > rv1
        c.call("create", {"object": pod("web-2", {"app": "web"})})
        c.call("delete", {"kind": "pods", "name": "db-1"})
        evs = w.next_events(3)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [
            ("MODIFIED", "web-1"), ("ADDED", "web-2"), ("DELETED", "db-1")], evs
        assert all(e["watch"] == wid for e in evs)
        revs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
        assert revs == sorted(revs) and len(set(revs)) == 3

        # A watch from an old revision replays exactly what happened since.
        w2 = cl.client(follower)
        w2.call("watch", {"kind": "pods", "resourceVersion": str(rv1)})
        evs2 = w2.next_events(5)
        names = [(e["type"], e["object"]["metadata"]["name"]) for e in evs2]
        assert names == [("ADDED", "db-1"), ("MODIFIED", "web-1"), ("ADDED", "web-2"),
                         ("DELETED", "db-1")], names
        w.close()
        w2.close()
        c.close()


def test_errors():
    with Cluster(3) as cl:
        leader = cl.wait_leader()
        c = cl.client(leader)
        c.call("create", {"object": pod("a")})
        expect_error("AlreadyExists", c.call, "create", {"object": pod("a")})
        expect_error("NotFound", c.call, "get", {"kind": "pods", "name": "nope"})
        e = expect_error("Invalid", c.call, "create", {"object": pod("Bad_Name")})
        assert "name" in e.message
        bad = pod("b")
        bad["spec"]["bogus"] = 1
        e = expect_error("Invalid", c.call, "create", {"object": bad})
        assert "bogus" in e.message
        expect_error("MethodNotFound", c.call, "frobnicate", {})
        expect_error("BadRequest", c.call, "list", {"kind": "nosuchkind"})
        cur = c.call("get", {"kind": "pods", "name": "a"})
        stale = dict(cur)
        stale["metadata"] = dict(cur["metadata"], resourceVersion="1")
        expect_error("Conflict", c.call, "update", {"object": stale})
        expect_error("Conflict", c.call, "delete",
                     {"kind": "pods", "name": "a", "resourceVersion": "1"})
        ok = dict(cur)
        ok["metadata"] = dict(cur["metadata"], labels={"x": "y"})
        c.call("update", {"object": ok})
        expect_error("NotFound", c.call, "create", {"object": pod("x", ns="nonexistent")})
        # Nothing changed by the failures: still exactly one pod.
        assert [o["metadata"]["name"] for o in c.call("list", {"kind": "pods"})["items"]] == ["a"]
        # A client without a certificate is refused.
        anon = cl.client(leader, cert=None)
        expect_error("Unauthorized", anon.call, "list", {"kind": "pods"})
        anon.close()
        c.close()


if __name__ == "__main__":
    run([test_create_list_watch, test_errors])
