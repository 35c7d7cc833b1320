"""kill -9 of the leader during a stream of writes: every acknowledged write
is on every peer afterwards, a new leader accepts writes, and killed peers
restart from disk and catch up -- from the log, and from a snapshot when
they are too far behind."""
import os
import random
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from aeptest import Client, Cluster, RpcError, pod, run  # noqa: E402


class Writers:
    """Threads creating pods through any live master, recording outcomes."""

    def __init__(self, cl, nthreads=4):
        self.cl = cl
        self.acked = set()
        self.maybe = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.acked_after = {}  # name -> time acknowledged
        self.threads = [threading.Thread(target=self.loop, args=(t,)) for t in range(nthreads)]

    def loop(self, t):
        i = 0
        c = None
        while not self.stop.is_set():
            if c is None:
                live = [n for n in self.cl.names if n in self.cl.procs]
                try:
                    c = Client(self.cl.api(random.choice(live)), self.cl.pki, timeout=5.0)
                except OSError:
                    time.sleep(0.05)
                    continue
            name = "w%d-%06d" % (t, i)
            i += 1
            try:
                c.call("create", {"object": pod(name)})
                with self.lock:
                    self.acked.add(name)
                    self.acked_after[name] = time.time()
            except RpcError as e:
                with self.lock:
                    self.maybe.add(name)
                if e.code not in ("Unavailable", "NotLeader", "AlreadyExists"):
                    raise
                time.sleep(0.02)
            except (OSError, ConnectionError):
                with self.lock:
                    self.maybe.add(name)
                c.close()
                c = None
        if c is not None:
            c.close()

    def __enter__(self):
        for th in self.threads:
            th.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for th in self.threads:
            th.join(timeout=30)


def names_on(cl, name):
    c = cl.client(name)
    try:
        items = c.call("list", {"kind": "pods", "stale": True})["items"]
        return {o["metadata"]["name"] for o in items}
    finally:
        c.close()


def converge(cl, timeout=60.0):
    """Wait until every live peer applied what the leader has committed."""
    leader = cl.wait_leader()
    commit = cl.status(leader)["commitIndex"]
    for n in cl.procs:
        cl.wait_applied(n, commit, timeout)
    return leader


def metric(cl, name, metric_name):
    body = urllib.request.urlopen("http://%s/metrics" % cl.http_addr(name), timeout=5).read()
    for line in body.decode().splitlines():
        if line.startswith(metric_name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("metric %s not found" % metric_name)


def test_kill_leader_during_writes():
    with Cluster(3, snapshot_threshold=64, snapshot_trailing=16) as cl:
        first = cl.wait_leader()
        with Writers(cl) as w:
            time.sleep(1.5)
            killed_at = time.time()
            cl.kill(first)
            second = cl.wait_leader(exclude=(first,))
            assert second != first
            time.sleep(1.5)
        after = [n for n, t in w.acked_after.items() if t > killed_at + 0.5]
        assert after, "the new leader acknowledged no writes"
        # the new leader's log appends are measured (write and fsync)
        assert metric(cl, second, "aep_raft_disk_append_seconds_count") > 0
        assert len(w.acked) > 50, "too few writes acknowledged: %d" % len(w.acked)
        converge(cl)
        for n in cl.procs:
            missing = w.acked - names_on(cl, n)
            assert not missing, "%s lost acknowledged writes: %s" % (n, sorted(missing)[:5])

        # The killed peer restarts from disk and catches up.
        cl.start(first)
        converge(cl)
        have = names_on(cl, first)
        assert not (w.acked - have), "restarted peer misses acknowledged writes"
        extra = have - w.acked - w.maybe
        assert not extra, "writes nobody made: %s" % sorted(extra)[:5]


def test_far_behind_peer_needs_snapshot():
    with Cluster(3, snapshot_threshold=64, snapshot_trailing=16) as cl:
        leader = cl.wait_leader()
        follower = [n for n in cl.names if n != leader][0]
        c = cl.client(leader)
        c.call("create", {"object": pod("before")})
        cl.kill(follower)
        # Enough entries that the leader's log no longer reaches back.
        acked = set()
        for i in range(400):
            c.call("create", {"object": pod("p-%04d" % i)})
            acked.add("p-%04d" % i)
        c.close()
        cl.start(follower)
        converge(cl)
        assert acked | {"before"} <= names_on(cl, follower)
        assert metric(cl, follower, "aep_raft_snapshots_installed_total") >= 1, \
            "the restarted follower caught up without a snapshot"
        # And it keeps up with new writes afterwards.
        c = cl.client(cl.wait_leader())
        c.call("create", {"object": pod("after")})
        c.close()
        converge(cl)
        assert "after" in names_on(cl, follower)


if __name__ == "__main__":
    run([test_kill_leader_during_writes, test_far_behind_peer_needs_snapshot])
