"""Node sessions, the dispatcher, node lifecycle and the logs/exec relays
(docs/NODES.md), driven from Python by a fake node agent: a TLS client with
a node certificate (CN system:node:NAME, O system:nodes) that answers the
leader's calls on its connection as the real agent must.

  (a) node.register: identity and leader checks; the Node is created with
      a pod subnet (two nodes get different /24s, the lowest free first);
  (b) a pod bound to n1 reaches n1's agent as pod.run (not n2's); its
      pod.status is stored, an identical one writes nothing, bad ones are
      refused and change nothing; deleting it sends pod.kill;
  (c) logs, logs -f and exec through the CLI are relayed to the agent and
      back (exit code of the command), errors name the cause;
  (d) a reconnecting agent gets node.sync with the pods bound to it;
  (e) kill -9 of the leader: the agent finds the new leader and gets
      node.sync within 2 s of its election;
  (f) an agent that goes silent: Ready=False (NodeStatusUnknown) after
      --node-grace, its pod deleted after --pod-eviction-timeout and
      replaced by its replication controller on the node still alive.

Run one part: python3 test_node_session.py test_node_session"""
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time

import msgpack

sys.path.insert(0, os.path.dirname(__file__))
from aeptest import AEP, Cluster, RpcError, run  # noqa: E402

GRACE_S = 3
EVICT_S = 4


class FakeAgent:
    """The agent side of docs/NODES.md's session, in Python. A reader thread
    answers the leader's calls (node.sync, pod.run, pod.kill, pod.logs,
    pod.exec, pod.logs.stop) with self.handlers[method](params) and records
    every call in self.received; heartbeats run in another thread."""

    def __init__(self, cl, name, labels=None):
        self.cl = cl
        self.name = name
        self.labels = labels or {}
        self.cert = os.path.join(cl.dir, name + ".crt")
        self.key = os.path.join(cl.dir, name + ".key")
        subprocess.run([AEP, "admin", "issue", "--dir", cl.dir, "--cn", "system:node:" + name,
                        "--org", "system:nodes", "--cert", self.cert, "--key", self.key],
                       check=True, stdout=subprocess.DEVNULL)
        self.cond = threading.Condition()
        self.received = []          # (method, params) of the leader's calls, in order
        self.notes = []
        self.replies = {}
        self.msgid = 0
        self.sock = None
        self.outq = []
        self.addr = None
        self.heartbeats = True
        self.reconnect = False      # find the leader again when the connection breaks
        self.closed = False
        self.handlers = {
            "node.sync": lambda p: {"pods": []},
            "pod.run": lambda p: {},
            "pod.kill": lambda p: {},
            "pod.logs.stop": lambda p: {},
        }
        threading.Thread(target=self._heartbeat_loop, daemon=True).start()

    # ---- wire ----------------------------------------------------------------------------

    def _connect(self, addr):
        host, port = addr.rsplit(":", 1)
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=os.path.join(self.cl.pki, "ca.crt"))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(self.cert, self.key)
        raw = socket.create_connection((host, int(port)), timeout=2)
        sock = ctx.wrap_socket(raw, server_hostname=host)
        sock.settimeout(None)
        with self.cond:
            self.sock = sock
            self.addr = addr
            self.replies = {}
            self.outq = []
        threading.Thread(target=self._reader, args=(sock,), daemon=True).start()

    def send(self, msg):
        """Queue @msg for the I/O thread: OpenSSL does not allow one
        connection's reads and writes from two threads at once."""
        data = msgpack.packb(msg, use_bin_type=True)
        with self.cond:
            if self.sock is None:
                raise ConnectionError("not connected")
            self.outq.append(data)

    def _reader(self, sock):
        """The connection's one I/O thread: writes what send() queued, reads
        and dispatches what comes."""
        unpacker = msgpack.Unpacker(raw=False)
        try:
            while True:
                with self.cond:
                    if self.sock is not sock:
                        break
                    out, self.outq = b"".join(self.outq), []
                if out:
                    sock.sendall(out)
                if sock.pending() == 0:
                    r, _, _ = select.select([sock], [], [], 0.02)
                    if not r:
                        continue
                data = sock.recv(1 << 16)
                if not data:
                    break
                unpacker.feed(data)
                for msg in unpacker:
                    self._dispatch(msg)
        except (OSError, ValueError):
            pass
        with self.cond:
            lost = self.sock is sock  # else we closed it ourselves
            if lost:
                self.sock = None
            self.cond.notify_all()
        if lost and self.reconnect and not self.closed:
            threading.Thread(target=self._find_leader, daemon=True).start()

    def _dispatch(self, msg):
        if msg[0] == 1:
            with self.cond:
                self.replies[msg[1]] = (msg[2], msg[3])
                self.cond.notify_all()
        elif msg[0] == 0:
            _, msgid, method, params = msg
            p = params[0] if params else {}
            with self.cond:
                self.received.append((method, p))
                self.cond.notify_all()
            h = self.handlers.get(method)
            if h is None:
                self.send([1, msgid, {"code": "MethodNotFound", "message": method}, None])
                return
            try:
                res = h(p)
            except RpcError as e:
                self.send([1, msgid, {"code": e.code, "message": e.message}, None])
                return
            self.send([1, msgid, None, res])
        elif msg[0] == 2:
            with self.cond:
                self.notes.append((msg[1], msg[2]))
                self.cond.notify_all()

    def call(self, method, params=None, timeout=10.0):
        with self.cond:
            self.msgid += 1
            msgid = self.msgid
        self.send([0, msgid, method, [params if params is not None else {}]])
        deadline = time.time() + timeout
        with self.cond:
            while msgid not in self.replies:
                if self.sock is None:
                    raise ConnectionError("connection closed")
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError("%s: no answer" % method)
                self.cond.wait(left)
            err, res = self.replies.pop(msgid)
        if err is not None:
            raise RpcError(err)
        return res

    def notify(self, method, params):
        self.send([2, method, [params]])

    def disconnect(self):
        with self.cond:
            sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self):
        self.closed = True
        self.heartbeats = False
        self.disconnect()

    # ---- the agent's behaviour ------------------------------------------------------------

    def node(self):
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": self.labels},
                "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                           "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}],
                           "nodeInfo": {"architecture": "amd64"}}}

    def register(self, addr):
        """Dial @addr and register, following NotLeader; returns the Node."""
        drops = 0
        for _ in range(8):
            self.disconnect()
            self._connect(addr)  # a master that is down raises: the caller tries another
            try:
                return self.call("node.register", {"node": self.node()})
            except RpcError as e:
                if e.code != "NotLeader" or not e.details or not e.details.get("leader"):
                    raise
                addr = e.details["leader"]
            except ConnectionError:
                # The connection dropped before the answer: dial again, as the
                # real agent does (twice at most, then let the caller decide).
                drops += 1
                if drops > 2:
                    raise
                time.sleep(0.1)
        raise AssertionError("no registration after 8 attempts (redirects or drops)")

    def _find_leader(self):
        while not self.closed:
            for nm in list(self.cl.procs):
                try:
                    self.register(self.cl.api(nm))
                    return
                except (OSError, RpcError, ConnectionError, TimeoutError):
                    self.disconnect()
            time.sleep(0.05)

    def _heartbeat_loop(self):
        while not self.closed:
            time.sleep(0.5)
            if self.heartbeats and self.sock is not None:
                try:
                    self.call("node.heartbeat", {}, timeout=2)
                except (OSError, RpcError, ConnectionError, TimeoutError):
                    pass

    def wait_call(self, method, pred=lambda p: True, timeout=10.0, start=0):
        """The first call of @method (from index @start) whose params satisfy
        @pred; returns (index, params)."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for i in range(start, len(self.received)):
                    m, p = self.received[i]
                    if m == method and pred(p):
                        return i, p
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("%s: no %s call within %.0fs; got %s" % (
                        self.name, method, timeout, [m for m, _ in self.received[start:]]))
                self.cond.wait(left)

    def mark(self):
        with self.cond:
            return len(self.received)


def expect_error(code, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except RpcError as e:
        assert e.code == code, "expected %s, got %s: %s" % (code, e.code, e.message)
        return e
    raise AssertionError("expected %s, the call succeeded" % code)


def bound_pod(name, node, containers=("c",)):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node,
                     "containers": [{"name": c, "image": "busybox"} for c in containers]}}


def get(cl, kind, name, ns=None):
    c = cl.client(cl.wait_leader())
    try:
        p = {"kind": kind, "name": name}
        if ns:
            p["namespace"] = ns
        return c.call("get", p)
    finally:
        c.close()


def ready_of(node):
    for cd in node.get("status", {}).get("conditions", []):
        if cd["type"] == "Ready":
            return cd
    return None


def pump_until(client, pred, timeout=10.0):
    """Read notifications on an aeptest.Client until @pred() holds."""
    deadline = time.time() + timeout
    while not pred():
        if time.time() > deadline:
            raise AssertionError("timed out; notifications: %s" % client.events)
        client.sock.settimeout(0.2)
        try:
            client._pump()
        except socket.timeout:
            pass
    client.sock.settimeout(10.0)


def wait_for(what, fn, timeout=20.0):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.2)


def test_node_session():
    agents = []
    with Cluster(3, extra_args=["--node-grace", "%ds" % GRACE_S,
                                "--pod-eviction-timeout", "%ds" % EVICT_S]) as cl:
        try:
            run_session(cl, agents)
        finally:
            for a in agents:
                a.close()


def run_session(cl, agents):
    leader = cl.wait_leader()
    follower = [n for n in cl.names if n != leader][0]
    admin = cl.client(leader)
    a1 = FakeAgent(cl, "n1", {"pool": "a"})
    a2 = FakeAgent(cl, "n2", {"pool": "a"})
    agents += [a1, a2]

    # ---- (a) register ----------------------------------------------------------------
    e = expect_error("Forbidden", admin.call, "node.register", {"node": a1.node()})
    assert "system:node" in e.message, e.message
    a1._connect(cl.api(leader))
    bad = a1.node()
    bad["metadata"]["name"] = "n2"
    expect_error("Forbidden", a1.call, "node.register", {"node": bad})
    expect_error("BadRequest", a1.call, "node.register", {"node": "n1"})
    expect_error("BadRequest", a1.call, "node.register", {"node": a1.node(), "x": 1})
    bad = a1.node()
    bad["status"]["capacity"]["cpu"] = "lots"
    expect_error("Invalid", a1.call, "node.register", {"node": bad})
    expect_error("NotFound", a1.call, "node.heartbeat", {})
    a1.disconnect()
    a1._connect(cl.api(follower))
    e = expect_error("NotLeader", a1.call, "node.register", {"node": a1.node()})
    assert e.details["leader"] == cl.api(leader), e.details
    assert admin.call("list", {"kind": "nodes"})["items"] == [], "refused registers wrote"

    mark1 = a1.mark()
    n1 = a1.register(cl.api(follower))          # redirected to the leader
    assert a1.addr == cl.api(leader), a1.addr
    n2 = a2.register(cl.api(leader))
    assert n1["spec"]["podCIDR"] == "10.128.0.0/24", n1["spec"]
    assert n2["spec"]["podCIDR"] == "10.128.1.0/24", n2["spec"]
    assert n1["metadata"]["labels"] == {"pool": "a"}
    assert ready_of(n1)["status"] == "True", n1["status"]
    _, sync = a1.wait_call("node.sync", start=mark1)
    assert sync["pods"] == [] and sync["generation"] > 0, sync
    a1.reconnect = a2.reconnect = True

    # ---- (b) dispatch and status ---------------------------------------------------------
    m1, m2 = a1.mark(), a2.mark()
    p1 = admin.call("create", {"object": bound_pod("p1", "n1")})
    _, run_ = a1.wait_call("pod.run", lambda p: p["pod"]["metadata"]["name"] == "p1", start=m1)
    assert run_["pod"]["metadata"]["uid"] == p1["metadata"]["uid"]
    time.sleep(0.5)
    assert not [m for m, p in a2.received[m2:] if m == "pod.run"], "n2 got n1's pod"

    st = {"phase": "Running", "podIP": "10.128.0.5", "hostIP": "192.0.2.1",
          "containerStatuses": [{"name": "c", "containerID": "crun://abc", "restartCount": 0,
                                 "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}
    uid = p1["metadata"]["uid"]
    a1.call("pod.status", {"namespace": "default", "name": "p1", "uid": uid, "status": st})
    got = get(cl, "pods", "p1")
    assert got["status"]["phase"] == "Running" and got["status"]["podIP"] == "10.128.0.5", got
    assert got["spec"]["nodeName"] == "n1" and got["metadata"]["uid"] == uid
    rv = got["metadata"]["resourceVersion"]
    a1.call("pod.status", {"namespace": "default", "name": "p1", "uid": uid, "status": st})
    assert get(cl, "pods", "p1")["metadata"]["resourceVersion"] == rv, "identical status wrote"
    e = expect_error("Invalid", a1.call, "pod.status",
                     {"namespace": "default", "name": "p1", "uid": uid,
                      "status": dict(st, podIP="not-an-ip")})
    assert "podIP" in e.message, e.message
    expect_error("NotFound", a1.call, "pod.status",
                 {"name": "p1", "uid": "0000", "status": st})
    expect_error("Forbidden", a2.call, "pod.status",
                 {"name": "p1", "uid": uid, "status": {"phase": "Failed"}})
    expect_error("BadRequest", a1.call, "pod.status", {"name": "p1", "uid": uid})
    expect_error("Forbidden", admin.call, "pod.status", {"name": "p1", "uid": uid, "status": st})
    assert get(cl, "pods", "p1")["metadata"]["resourceVersion"] == rv, "refused status wrote"

    # ---- (c) logs and exec ------------------------------------------------------------------
    a1.handlers["pod.logs"] = lambda p: {"data": b"hello from " + p["container"].encode() + b"\n"}
    r = cl.aep("logs", "p1")
    assert r.stdout == "hello from c\n", r
    a1.handlers["pod.exec"] = lambda p: {"exitCode": 3, "stdout": " ".join(p["command"]).encode(),
                                         "stderr": b"oops"}
    r = cl.aep("exec", "p1", "--", "ls", "-l", "/", check=False)
    assert r.returncode == 3 and r.stdout == "ls -l /" and r.stderr == "oops", r
    _, ex = a1.wait_call("pod.exec")
    assert ex["uid"] == uid and ex["container"] == "c" and ex["command"] == ["ls", "-l", "/"]
    r = cl.aep("exec", "p1", "ls", check=False)
    assert r.returncode == 1 and "--" in r.stderr, r

    def follow_logs(p):
        def stream():
            time.sleep(0.2)
            a1.notify("log", {"stream": p["stream"], "data": b"line 1\n"})
            a1.notify("log", {"stream": p["stream"], "data": b"line 2\n"})
            a1.notify("log.end", {"stream": p["stream"]})
        if p.get("follow"):
            threading.Thread(target=stream, daemon=True).start()
            return {}
        return {"data": b"tail\n"}
    a1.handlers["pod.logs"] = follow_logs
    r = cl.aep("logs", "p1", "-f", timeout=20)
    assert r.returncode == 0 and r.stdout == "line 1\nline 2\n", r

    # a following client that goes away stops the agent's stream
    a1.handlers["pod.logs"] = lambda p: {}
    mk = a1.mark()
    fc = cl.client(leader)
    fc.call("logs", {"name": "p1", "follow": True})
    _, lp = a1.wait_call("pod.logs", lambda p: p.get("follow"), start=mk)
    a1.notify("log", {"stream": lp["stream"], "data": b"x"})
    pump_until(fc, lambda: any(m == "log" for m, _ in fc.events))
    assert [p for m, p in fc.events if m == "log"][0] == [{"data": b"x"}], fc.events
    fc.close()
    _, stop = a1.wait_call("pod.logs.stop", start=mk)
    assert stop["stream"] == lp["stream"], stop

    admin.call("create", {"object": bound_pod("two", "n1", ("a", "b"))})
    r = cl.aep("logs", "two", check=False)
    assert r.returncode == 1 and "choose one of: [a b]" in r.stderr, r
    a1.handlers["pod.logs"] = lambda p: {"data": ("log of " + p["container"]).encode()}
    r = cl.aep("logs", "two", "-c", "b", "--tail-bytes", "100")
    assert r.stdout == "log of b", r
    _, lp = a1.wait_call("pod.logs", lambda p: p["container"] == "b")
    assert lp["tailBytes"] == 100, lp
    admin.call("create", {"object": {"apiVersion": "v1", "kind": "Node",
                                     "metadata": {"name": "n3"}}})
    admin.call("create", {"object": bound_pod("p3", "n3")})
    e = expect_error("Unavailable", admin.call, "logs", {"name": "p3"})
    assert "n3" in e.message and "no session" in e.message, e.message
    expect_error("BadRequest", admin.call, "logs", {"name": "p1", "tailBytes": -1})
    expect_error("BadRequest", admin.call, "exec", {"name": "p1", "command": []})
    expect_error("NotFound", admin.call, "exec", {"name": "nope", "command": ["ls"]})
    a1.handlers["pod.exec"] = lambda p: (_ for _ in ()).throw(
        RpcError({"code": "NotFound", "message": "no container c running"}))
    e = expect_error("NotFound", admin.call, "exec", {"name": "p1", "command": ["ls"]})
    assert "n1" in e.message and "no container" in e.message, e.message
    admin.call("delete", {"kind": "pods", "name": "two"})
    admin.call("delete", {"kind": "pods", "name": "p3"})

    # ---- (b) delete → pod.kill -------------------------------------------------------------
    mk = a1.mark()
    admin.call("delete", {"kind": "pods", "name": "p1"})
    _, kill = a1.wait_call("pod.kill", lambda p: p["name"] == "p1", start=mk)
    assert kill["uid"] == uid and kill["namespace"] == "default", kill

    # ---- (d) reconnect → node.sync lists the bound pods ----------------------------------------
    admin.call("create", {"object": bound_pod("p2", "n1")})
    a1.wait_call("pod.run", lambda p: p["pod"]["metadata"]["name"] == "p2", start=mk)
    mk = a1.mark()
    a1.reconnect = False
    a1.disconnect()
    a1.register(cl.api(leader))
    a1.reconnect = True
    _, sync = a1.wait_call("node.sync", start=mk)
    assert [p["metadata"]["name"] for p in sync["pods"]] == ["p2"], sync

    # ---- (e) kill -9 the leader ---------------------------------------------------------------
    admin.close()
    mk1, mk2 = a1.mark(), a2.mark()
    killed = time.time()
    cl.kill(leader)
    new = cl.wait_leader(exclude=(leader,))
    elected = time.time()
    _, sync = a1.wait_call("node.sync", start=mk1, timeout=2.0 + 0.5)
    took = time.time() - elected
    assert took <= 2.0, "node.sync %.2fs after the election" % took
    assert [p["metadata"]["name"] for p in sync["pods"]] == ["p2"], sync
    assert a1.addr == cl.api(new), (a1.addr, new)
    a2.wait_call("node.sync", start=mk2, timeout=5)
    print("  agent back on the new leader %.2fs after kill -9 (%.2fs after the election)"
          % (time.time() - killed, took))
    admin = cl.client(new)

    # ---- (f) a silent node: Ready=False, eviction, replacement -------------------------------
    cl.aep("admin", "manage-node", "n1", "--schedulable=false")
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
          "spec": {"replicas": 1, "selector": {"app": "web"},
                   "template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"nodeSelector": {"pool": "a"},
                                         "containers": [{"name": "c", "image": "busybox"}]}}}}
    admin.call("create", {"object": rc})

    def web_pods():
        return [p for p in admin.call("list", {"kind": "pods", "labelSelector": "app=web"})
                ["items"] if p["spec"].get("nodeName")]
    first = wait_for("the RC's pod on n2", web_pods)[0]
    assert first["spec"]["nodeName"] == "n2", first
    a2.wait_call("pod.run", lambda p: p["pod"]["metadata"]["name"] == first["metadata"]["name"])
    cl.aep("admin", "manage-node", "n1", "--schedulable=true")
    mk1 = a1.mark()
    a2.close()
    gone = time.time()
    nr = wait_for("n2 Ready=False", lambda: (lambda c: c if c and c["status"] == "False"
                                             else None)(ready_of(get(cl, "nodes", "n2"))),
                  timeout=GRACE_S + 10)
    assert nr["reason"] == "NodeStatusUnknown", nr
    t_lost = time.time() - gone
    assert ready_of(get(cl, "nodes", "n1"))["status"] == "True", "n1 lost its heartbeats"
    assert t_lost >= GRACE_S - 1, "Ready=False after %.1fs, before --node-grace" % t_lost
    wait_for("the replacement on n1", lambda: [p for p in web_pods()
                                               if p["metadata"]["uid"] != first["metadata"]["uid"]
                                               and p["spec"]["nodeName"] == "n1"],
             timeout=GRACE_S + EVICT_S + 15)
    t_evict = time.time() - gone
    assert t_evict >= GRACE_S + EVICT_S - 1, "evicted after %.1fs" % t_evict
    names = [p["metadata"]["name"] for p in web_pods()]
    assert first["metadata"]["name"] not in names, names
    a1.wait_call("pod.run", lambda p: p["pod"]["metadata"]["labels"].get("app") == "web",
                 start=mk1)
    admin.close()


if __name__ == "__main__":
    tests = [test_node_session]
    if len(sys.argv) > 1:
        tests = [t for t in tests if t.__name__ in sys.argv[1:]]
    run(tests)
