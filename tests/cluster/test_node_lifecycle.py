"""A node host stopped entirely, against real masters, real agents and real
crun (docs/NODES.md, "Node lifecycle"):

  * three masters with --node-grace 15s and --pod-eviction-timeout 10s
    (the agents heartbeat every 10 s); two node hosts n1 and n2
    (nodehost.py: a network namespace each, an agent in it, busybox
    loaded);
  * an RC of 4 busybox httpd pods, which the scheduler spreads on both
    nodes; all 4 Running;
  * n2 is stopped entirely: kill -9 of its agent, of its containers and of
    every process in its namespace, then the namespace deleted;
  * n2 becomes Ready=False or Unknown once --node-grace has passed (and not
    before), n1 stays Ready; n2's pods are deleted once
    --pod-eviction-timeout has passed after that; the RC's replacements
    run on n1 (Running, podIP in n1's podCIDR), the RC's status is back at
    4, exactly 4 pods exist and n1 runs exactly their 4 containers; a
    watch on the RC's pods never saw more than 4 at once.

It prints the times from the kill to NotReady and to the replacements
Running. Everything the test makes is removed at the end, also on failure.
Needs root: exits 77 (skipped) otherwise."""
import ipaddress
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import aeptest  # noqa: E402
from aeptest import AEP, RpcError  # noqa: E402
from nodehost import HostCluster, NodeHost, check_root, get, node_ready, print_logs, \
    ready_condition, sh, wait_for  # noqa: E402

GRACE_S = 15
EVICT_S = 10
REPLICAS = 4
HEARTBEAT_S = 10  # the agent's (node/agent.c)


def rc_obj():
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
            "spec": {"replicas": REPLICAS, "selector": {"app": "web"},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"terminationGracePeriodSeconds": 1,
                                           "containers": [{
                                               "name": "c", "image": "busybox",
                                               "command": ["httpd", "-f", "-p", "80",
                                                           "-h", "/www"]}]}}}}


class PodWatch(threading.Thread):
    """A watch on the RC's pods from before the RC exists: the live pods
    (created, not yet deleted) at every moment, the most there ever were,
    and when each deletion arrived. Resumes from the last revision if its
    connection drops."""

    def __init__(self, cl):
        super().__init__(daemon=True)
        self.cl = cl
        self.live = {}
        self.max_live = 0
        self.deleted = {}  # name -> time.time() of the DELETED event
        self.rv = None
        self.problem = None
        self.stopping = False
        self.lock = threading.Lock()
        self.started_ok = threading.Event()

    def _watch(self):
        c = self.cl.client(self.cl.names[0], timeout=10.0)
        params = {"kind": "pods", "labelSelector": "app=web"}
        if self.rv is not None:
            params["resourceVersion"] = self.rv
        c.call("watch", params)
        c.sock.settimeout(0.2)
        return c

    def run(self):
        c = None
        while not self.stopping:
            try:
                if c is None:
                    c = self._watch()
                    self.started_ok.set()
                try:
                    c._pump()
                except socket.timeout:
                    continue
                evs = [e for (m, p) in c.events if m == "event" for e in p]
                c.events.clear()
                now = time.time()
                with self.lock:
                    for e in evs:
                        if e["type"] == "ERROR":
                            self.problem = "watch ended: %r" % (e["object"],)
                            continue
                        o = e["object"]
                        name = o["metadata"]["name"]
                        self.rv = o["metadata"].get("resourceVersion", self.rv)
                        if e["type"] == "DELETED":
                            self.live.pop(name, None)
                            self.deleted[name] = now
                        else:
                            self.live[name] = o
                        self.max_live = max(self.max_live, len(self.live))
            except (OSError, ConnectionError, RpcError) as ex:
                if c is not None:
                    c.close()
                c = None
                if self.rv is None:
                    self.problem = "watch failed before any event: %s" % ex
                time.sleep(0.2)
        if c is not None:
            c.close()


def rc_pods(admin):
    return admin.call("list", {"kind": "pods", "labelSelector": "app=web"})["items"]


def running_with_ip(p):
    st = p.get("status", {})
    return st.get("phase") == "Running" and st.get("podIP")


def test_node_lifecycle():
    cl = admin = None
    watch = None
    h1, h2 = NodeHost("n1"), NodeHost("n2")
    ok = False
    try:
        h1.up()
        h2.up(api_ip=h1.host_ip)
        cl = HostCluster(h1.host_ip, extra_args=["--node-grace", "%ds" % GRACE_S,
                                                 "--pod-eviction-timeout", "%ds" % EVICT_S])
        cl.wait_leader()
        token = cl.aep("admin", "token", "create", "--description",
                       "test_node_lifecycle").stdout.strip()
        tar = os.path.join(cl.dir, "busybox.tar")
        sh(AEP, "node", "image", "build-busybox", tar)
        for h in (h1, h2):
            h.load_image("busybox", tar)
            h.start_agent(cl, token)
        nodes = {h.name: wait_for("Node %s Ready" % h.name, lambda h=h: node_ready(cl, h.name),
                                  30) for h in (h1, h2)}
        cidr1 = ipaddress.ip_network(nodes["n1"]["spec"]["podCIDR"])
        cidr2 = ipaddress.ip_network(nodes["n2"]["spec"]["podCIDR"])
        assert not cidr1.overlaps(cidr2), (cidr1, cidr2)
        print("nodes n1 (%s, podCIDR %s) and n2 (%s, podCIDR %s) Ready" % (
            h1.node_ip, cidr1, h2.node_ip, cidr2), flush=True)

        watch = PodWatch(cl)
        watch.start()
        assert watch.started_ok.wait(15), "the watch did not start: %s" % watch.problem
        admin = cl.client(cl.names[0], timeout=15.0)

        # the RC's pods, spread on both nodes, all Running
        cl.aep("create", "-f", "-", input=json.dumps(rc_obj()))
        t0 = time.time()
        pods = wait_for("%d pods Running" % REPLICAS, lambda: (lambda ps: ps if len(ps) ==
                        REPLICAS and all(running_with_ip(p) for p in ps) else None)(
                            rc_pods(admin)), 30, interval=0.2)
        by_node = {}
        for p in pods:
            by_node.setdefault(p["spec"]["nodeName"], []).append(p["metadata"]["name"])
            h1.uids.append(p["metadata"]["uid"])
            h2.uids.append(p["metadata"]["uid"])
        print("%d pods Running after %.2f s: %s" % (
            REPLICAS, time.time() - t0, {n: sorted(v) for n, v in sorted(by_node.items())}),
            flush=True)
        assert sorted(by_node) == ["n1", "n2"], "not spread on both nodes: %s" % by_node
        for p in pods:
            cidr = cidr1 if p["spec"]["nodeName"] == "n1" else cidr2
            assert ipaddress.ip_address(p["status"]["podIP"]) in cidr, (p["status"], cidr)
        assert len(h2.running_containers()) == len(by_node["n2"]), h2.running_containers()
        on_n2 = set(by_node["n2"])

        # stop node host n2 entirely
        t_kill = time.time()
        h2.destroy()
        assert h2.gone() is None, h2.gone()
        t_gone = time.time()
        print("node host n2 stopped (agent, containers, namespace) in %.2f s" % (
            t_gone - t_kill), flush=True)

        # n2 NotReady after --node-grace (its last heartbeat was at most
        # HEARTBEAT_S before the kill), n1 Ready all along
        def n2_lost():
            assert node_ready(cl, "n1") is not None, "n1 is not Ready any more"
            c = ready_condition(get(cl, "node", "n2"))
            return c if c is not None and c.get("status") in ("False", "Unknown") else None
        cond = wait_for("n2 NotReady", n2_lost, GRACE_S + 15, interval=0.2)
        t_lost = time.time()
        print("n2 Ready=%s (reason %s) %.2f s after the kill (--node-grace %ds)" % (
            cond["status"], cond.get("reason"), t_lost - t_kill, GRACE_S), flush=True)
        assert t_lost - t_kill >= GRACE_S - HEARTBEAT_S - 1, \
            "NotReady %.2f s after the kill, before --node-grace" % (t_lost - t_kill)
        with watch.lock:
            early = [n for n in on_n2 if n in watch.deleted]
        assert not early, "n2's pods %s deleted before the node was even NotReady" % early

        # n2's pods deleted after the eviction timeout, replaced on n1
        def replaced():
            assert node_ready(cl, "n1") is not None, "n1 is not Ready any more"
            ps = rc_pods(admin)
            names = {p["metadata"]["name"] for p in ps}
            if names & on_n2 or len(ps) != REPLICAS:
                return None
            if not all(p["spec"].get("nodeName") == "n1" and running_with_ip(p) for p in ps):
                return None
            return ps
        pods = wait_for("the replacements Running on n1", replaced, EVICT_S + 30, interval=0.2)
        t_back = time.time()
        with watch.lock:
            t_del = max(watch.deleted.get(n, t_back) for n in on_n2)
        print("n2's pods deleted %.2f s after the kill (%.2f s after NotReady, "
              "--pod-eviction-timeout %ds); replacements Running on n1 %.2f s after the kill" % (
                  t_del - t_kill, t_del - t_lost, EVICT_S, t_back - t_kill), flush=True)
        assert t_del - t_lost >= EVICT_S - 1, \
            "pods deleted %.2f s after NotReady, before --pod-eviction-timeout" % (
                t_del - t_lost)
        for p in pods:
            assert ipaddress.ip_address(p["status"]["podIP"]) in cidr1, (p["status"], cidr1)
            assert p["status"].get("hostIP") == h1.node_ip, p["status"]
            h1.uids.append(p["metadata"]["uid"])
        wait_for("RC status.replicas %d" % REPLICAS,
                 lambda: (get(cl, "rc", "web") or {}).get("status", {}).get("replicas") ==
                 REPLICAS, 10, interval=0.2)

        # exactly the replicas: in the store, on n1, and at every moment
        time.sleep(2)  # a replica too many would show by now
        pods = rc_pods(admin)
        assert len(pods) == REPLICAS, [p["metadata"]["name"] for p in pods]
        want = {p["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
                for p in pods}
        have = set(h1.running_containers())
        assert have == want, "n1 runs %s; the pods' containers are %s" % (sorted(have),
                                                                           sorted(want))
        with watch.lock:
            max_live, problem = watch.max_live, watch.problem
        assert problem is None, problem
        assert max_live <= REPLICAS, "%d pods of the RC existed at once" % max_live
        print("RC web: %d pods, all on n1, n1 runs exactly their containers; at most %d "
              "existed at once" % (len(pods), max_live), flush=True)

        # clean up through the runtime
        cl.aep("scale", "rc/web", "--replicas=0")
        wait_for("pods removed from n1", lambda: not rc_pods(admin) and
                 os.path.isdir(os.path.join(h1.dir, "pods")) and
                 not os.listdir(os.path.join(h1.dir, "pods")), 30, interval=0.2)
        cl.aep("delete", "rc", "web")
        rc = h1.agent.stop()
        assert rc == 0, "agent exited with %s; log:\n%s" % (rc, h1.agent.log()[-3000:])
        ok = True
    finally:
        if watch is not None:
            watch.stopping = True
            watch.join(5)
        if admin is not None:
            admin.close()
        if not ok:
            print_logs(cl, [h1, h2])
        try:
            h2.destroy()
        finally:
            try:
                h1.destroy()  # the masters' address: last
            finally:
                if cl is not None:
                    cl.close()
    for h in (h1, h2):
        assert h.gone() is None, h.gone()


def main():
    check_root("the node lifecycle test")
    aeptest.run([test_node_lifecycle])


if __name__ == "__main__":
    main()
