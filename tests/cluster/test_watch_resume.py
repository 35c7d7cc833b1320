"""A watch resumed from the last revision it saw sees every later event
exactly once and in order, across a leader change (the watcher's master is
killed with -9 and it resumes on another)."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from aeptest import Client, Cluster, RpcError, pod, run  # noqa: E402


class Watcher:
    """Follows pods from a revision, resuming on another master when its
    connection breaks; records every event it receives."""

    def __init__(self, cl, first, rv):
        self.cl = cl
        self.seen = []
        self.last_rv = rv
        self.resumes = 0
        self.conn = self.connect(first)

    def connect(self, name):
        c = Client(self.cl.api(name), self.cl.pki, timeout=5.0)
        c.call("watch", {"kind": "pods", "resourceVersion": self.last_rv})
        return c

    def poll(self, timeout=0.3):
        try:
            evs = self.conn.next_events(1, timeout=timeout)
            self.conn.events = []
            for ev in evs:
                self.seen.append(ev)
                self.last_rv = ev["object"]["metadata"]["resourceVersion"]
        except (OSError, ConnectionError):
            self.conn.close()
            for name in [n for n in self.cl.names if n in self.cl.procs]:
                try:
                    self.conn = self.connect(name)
                    self.resumes += 1
                    return
                except (OSError, ConnectionError, RpcError):
                    continue
            time.sleep(0.1)

    def until(self, rv, timeout=15.0):
        deadline = time.time() + timeout
        while int(self.last_rv) < rv and time.time() < deadline:
            self.poll()


def test_resume_across_leader_change():
    with Cluster(3) as cl:
        leader = cl.wait_leader()
        c = cl.client(leader)
        c.call("create", {"object": pod("seed")})
        start_rv = c.call("list", {"kind": "pods"})["resourceVersion"]
        c.close()

        acked, maybe = [], set()
        stop = threading.Event()

        def writer():
            i = 0
            conn = None
            while not stop.is_set():
                if conn is None:
                    live = [n for n in cl.names if n in cl.procs]
                    try:
                        conn = Client(cl.api(live[i % len(live)]), cl.pki, timeout=5.0)
                    except OSError:
                        time.sleep(0.05)
                        continue
                name = "e-%05d" % i
                i += 1
                try:
                    conn.call("create", {"object": pod(name)})
                    acked.append(name)
                except RpcError:
                    maybe.add(name)
                    time.sleep(0.02)
                except (OSError, ConnectionError):
                    maybe.add(name)
                    conn.close()
                    conn = None
            if conn:
                conn.close()

        w = Watcher(cl, leader, start_rv)
        th = threading.Thread(target=writer)
        th.start()
        t_end = time.time() + 1.0
        while time.time() < t_end:
            w.poll()
        cl.kill(leader)
        t_end = time.time() + 3.0
        while time.time() < t_end:
            w.poll()
        stop.set()
        th.join()

        final = cl.client(cl.wait_leader())
        everything = final.call("list", {"kind": "pods"})
        final.close()
        w.until(int(everything["resourceVersion"]))
        w.conn.close()

        assert w.resumes >= 1, "the watcher never had to resume"
        revs = [int(e["object"]["metadata"]["resourceVersion"]) for e in w.seen]
        assert revs == sorted(revs), "events out of order"
        assert len(set(revs)) == len(revs), "an event was delivered twice"
        assert all(e["type"] == "ADDED" for e in w.seen), w.seen[:3]
        names = [e["object"]["metadata"]["name"] for e in w.seen]
        missing = set(acked) - set(names)
        assert not missing, "acknowledged creates never seen: %s" % sorted(missing)[:5]
        listed = {o["metadata"]["name"] for o in everything["items"]} - {"seed"}
        assert set(names) == listed, "watch and list disagree: %s" % sorted(
            set(names) ^ listed)[:5]
        assert len(acked) > 20, "too few writes: %d" % len(acked)


if __name__ == "__main__":
    run([test_resume_across_leader_change])
