"""Every row of docs/BAD-INPUT.md against one real 3-master cluster.

The table is the specification: this test reads each row's expected outcome
(error code, message substrings, "closed", "ignored", ...) from the document
and holds only the inputs, one function per row id. The ids of the table and
of ROWS must be the same set. Around every row the leader's store revision
must stay put (bad input writes nothing); at the end the store must hold
exactly what the test created on purpose, on every master, and the masters
must still serve and exit cleanly."""
import json
import os
import select
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time

import msgpack

sys.path.insert(0, os.path.dirname(__file__))
from aeptest import AEP, Client, Cluster, RpcError, run  # noqa: E402
from aeptest import pod as unbound_pod  # noqa: E402

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "BAD-INPUT.md")
KINDS = ["Namespace", "Node", "Pod", "ReplicationController", "Service", "Endpoints", "Event"]
NS = "bad-input"


def pod(name, labels=None, ns=None, image="busybox"):
    """A pod already bound to the fixture's node: the leader's scheduler
    leaves it alone, so nothing but the rows writes to the store (an
    unbound pod on a cluster without ready nodes gets FailedScheduling
    events, which would move the revision under a row)."""
    p = unbound_pod(name, labels, ns=ns, image=image)
    p["spec"]["nodeName"] = "fixture-node"
    return p
FOLLOW_ID = 4242
FOLLOW_UP = msgpack.packb([0, FOLLOW_ID, "status", [{}]])
WIRE_WAIT = 5.0


# ---- the table ---------------------------------------------------------------

class Expect:
    def __init__(self, rid, where, token, subs, known_bug):
        self.rid, self.where, self.token, self.subs = rid, where, token, subs
        self.known_bug = known_bug


def parse_doc():
    """{id: Expect} from the tables of docs/BAD-INPUT.md."""
    rows = {}
    with open(DOC, encoding="utf-8") as f:
        for line in f:
            if not re.match(r"^\| [WMCF]\d\d \|", line):
                continue
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            assert len(cells) == 5, "malformed row: %s" % line
            rid, where, _input, expected, _unchanged = cells
            assert rid not in rows, "row %s twice in %s" % (rid, DOC)
            m = re.match(r"^`([^`]+)`(.*)$", expected)
            assert m, "row %s: the expected column must start with a code span" % rid
            token, rest = m.group(1), m.group(2)
            machine = re.split(r" \u2014 | - ", rest, maxsplit=1)[0]
            subs = re.findall(r'"([^"]*)"', machine)
            rows[rid] = Expect(rid, where, token, subs, "KNOWN BUG" in line)
    return rows


# ---- what a row observed ---------------------------------------------------------

class Outcome:
    """kind: "error" (code, message), "ok" (result), "wire" (msgs, closed,
    answered), "closed", "dropped", "refused" (message), "exit" (rc, out, err).
    created: (kind, ns, name) the row made on purpose."""

    def __init__(self, kind, **kw):
        self.kind = kind
        self.created = kw.pop("created", [])
        self.__dict__.update(kw)

    def __repr__(self):
        d = dict(self.__dict__)
        for k in ("out", "err", "message"):
            if isinstance(d.get(k), str) and len(d[k]) > 600:
                d[k] = d[k][:600] + "..."
        return "Outcome(%r)" % d


def error_map_of(msg):
    """The error map of a wire message: a reply's error or an "error" notification's."""
    if isinstance(msg, list) and len(msg) == 4 and msg[0] == 1 and isinstance(msg[2], dict):
        return msg[2]
    if (isinstance(msg, list) and len(msg) == 3 and msg[0] == 2 and msg[1] == "error" and
            isinstance(msg[2], list) and len(msg[2]) == 1 and isinstance(msg[2][0], dict)):
        return msg[2][0]
    return None


def check(exp, out):
    """Problems (strings) with @out against @exp; empty when as documented."""
    p = []

    def subs_in(text, what):
        for s in exp.subs:
            if s not in (text or ""):
                p.append("%s lacks %r: %r" % (what, s, text))

    tok = exp.token
    if tok == "exit 1":
        if out.kind != "exit" or out.rc != 1:
            p.append("expected exit status 1, got %r" % out)
        else:
            subs_in(out.err, "stderr")
    elif tok == "ignored":
        if out.kind != "wire" or out.closed or not out.answered or out.msgs:
            p.append("expected no answer and the follow-up answered, got %r" % out)
    elif tok == "closed":
        if out.kind != "closed":
            p.append("expected the connection closed, got %r" % out)
    elif tok == "dropped":
        if out.kind != "dropped":
            p.append("expected the master to drop the connection and go on, got %r" % out)
    elif tok == "refused":
        if out.kind != "refused":
            p.append("expected the TLS handshake refused, got %r" % out)
        else:
            subs_in(out.message, "alert")
    elif tok.endswith(", closed"):
        code = tok[:-len(", closed")]
        if out.kind != "wire":
            p.append("expected a wire outcome, got %r" % out)
        else:
            errs = [error_map_of(m) for m in out.msgs]
            if len(out.msgs) != 1 or errs[0] is None or errs[0].get("code") != code:
                p.append("expected exactly one %s error, got %r" % (code, out.msgs))
            else:
                subs_in(errs[0].get("message"), "message")
            if not out.closed:
                p.append("expected the connection closed")
            if out.answered:
                p.append("the follow-up after the bad message was answered")
    elif re.match(r"^[A-Za-z]+$", tok):
        if out.kind == "error":
            if out.code != tok:
                p.append("expected %s, got %s: %s" % (tok, out.code, out.message))
            else:
                subs_in(out.message, "message")
        elif out.kind == "wire":
            errs = [error_map_of(m) for m in out.msgs]
            if len(out.msgs) != 1 or errs[0] is None or errs[0].get("code") != tok:
                p.append("expected exactly one %s reply, got %r" % (tok, out.msgs))
            else:
                subs_in(errs[0].get("message"), "message")
            if out.closed or not out.answered:
                p.append("expected the connection to stay usable (closed=%s, follow-up "
                         "answered=%s)" % (out.closed, out.answered))
        else:
            p.append("expected error %s, got %r" % (tok, out))
    else:
        p.append("unknown outcome %r in the document" % tok)
    return p


# ---- clients ---------------------------------------------------------------------

class LaxClient(Client):
    """A Client that sends and receives strings that are not UTF-8 (as
    surrogate escapes), so that a row can send invalid UTF-8 and the test
    can still read what a buggy server might have stored."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape")

    def send(self, method, params):
        self.msgid += 1
        self.sock.sendall(msgpack.packb([0, self.msgid, method, [params]],
                                        unicode_errors="surrogateescape"))
        return self.msgid

    def send_bytes(self, method, params_bytes):
        """A request whose params map is given as raw msgpack bytes."""
        self.msgid += 1
        self.sock.sendall(b"\x94\x00" + msgpack.packb(self.msgid) + msgpack.packb(method) +
                          b"\x91" + params_bytes)
        return self.msgid


def mpmap(*pairs):
    """Raw msgpack bytes of a map from (key, value) pairs, repeats allowed;
    a value of type bytes is taken as already packed."""
    out = bytearray(b"\xde" + struct.pack(">H", len(pairs)))
    for k, v in pairs:
        out += msgpack.packb(k)
        out += v if isinstance(v, (bytes, bytearray)) else msgpack.packb(v)
    return bytes(out)


class Ctx:
    def __init__(self, cl):
        self.cl = cl
        self.leader = cl.wait_leader()
        self.followers = [n for n in cl.names if n != self.leader]
        self.clients = {n: LaxClient(cl.api(n), cl.pki) for n in cl.names}
        self.expected = {}   # (kind, ns, name) -> resourceVersion, what the test made
        self.turn = 0
        self.files = os.path.join(cl.dir, "bad-input-files")
        os.makedirs(self.files)

    # -- bookkeeping
    def note(self, obj):
        m = obj["metadata"]
        self.expected[(obj["kind"], m.get("namespace", ""), m["name"])] = m["resourceVersion"]

    def revision(self):
        return int(self.clients[self.leader].call("status")["revision"])

    def snapshot(self, name, stale=False):
        """{(kind, ns, name): resourceVersion} of every object, as @name sees it."""
        c = self.clients[name]
        out = {}
        for k in KINDS:
            params = {"kind": k}
            if stale:
                params["stale"] = True
            for o in c.call("list", params)["items"]:
                m = o["metadata"]
                key = (o["kind"], m.get("namespace", ""), m["name"])
                out[key] = m.get("resourceVersion", "")
        return out

    # -- calls
    def next_client(self):
        """Method rows alternate between the leader and a follower."""
        self.turn += 1
        name = self.leader if self.turn % 2 else self.followers[self.turn // 2 % 2]
        return self.clients[name]

    def call(self, method, params, client=None):
        c = client or self.next_client()
        try:
            return Outcome("ok", result=c.call(method, params))
        except RpcError as e:
            return Outcome("error", code=e.code, message=e.message)

    def call_bytes(self, method, params_bytes):
        c = self.next_client()
        try:
            return Outcome("ok", result=c.wait(c.send_bytes(method, params_bytes)))
        except RpcError as e:
            return Outcome("error", code=e.code, message=e.message)

    def create(self, obj):
        return self.call("create", {"object": obj})

    def tls(self, name=None, cert="admin", pki=None):
        host, port = self.cl.api(name or self.leader).rsplit(":", 1)
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=os.path.join(self.cl.pki, "ca.crt"))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if cert:
            d = pki or self.cl.pki
            ctx.load_cert_chain(os.path.join(d, cert + ".crt"), os.path.join(d, cert + ".key"))
        s = ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=WIRE_WAIT),
                            server_hostname=host)
        s.settimeout(WIRE_WAIT)
        return s

    def wire(self, payload, follow_up=True):
        """Send @payload (then a status request) on a fresh connection to a
        master; read until the server closes or answers the follow-up."""
        self.turn += 1
        s = self.tls(self.cl.names[self.turn % len(self.cl.names)])
        # One thread sends and reads (an SSL socket is not safe to use from
        # two threads at once): the server may stop reading a large payload
        # and answer while we are still sending.
        data = payload + (FOLLOW_UP if follow_up else b"")
        s.setblocking(False)
        unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape")
        msgs, closed, answered = [], False, False
        sent = 0
        deadline = time.time() + WIRE_WAIT
        while time.time() < deadline and not closed and not answered:
            want_write = sent < len(data)
            r, w, _ = select.select([s], [s] if want_write else [], [], 0.05)
            if w and want_write:
                try:
                    sent += s.send(data[sent:sent + (1 << 16)])
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
                except OSError:
                    sent = len(data)  # the server stopped reading; keep reading
            if not r and s.pending() == 0:
                continue
            try:
                chunk = s.recv(1 << 16)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            except OSError:  # reset, or a TLS error: the server is gone
                closed = True
                break
            if not chunk:
                closed = True
                break
            unpacker.feed(chunk)
            for m in unpacker:
                if isinstance(m, list) and len(m) == 4 and m[0] == 1 and m[1] == FOLLOW_ID:
                    answered = True
                else:
                    msgs.append(m)
        s.close()
        return Outcome("wire", msgs=msgs, closed=closed, answered=answered)

    def aep(self, *args, input=None):
        r = self.cl.aep(*args, check=False, input=input)
        return Outcome("exit", rc=r.returncode, out=r.stdout, err=r.stderr)

    def file(self, name, content):
        p = os.path.join(self.files, name)
        with open(p, "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode())
        return p

    def manifest(self, name, content, *more):
        return self.aep("create", "-f", self.file(name, content), *more)

    # -- set-up: the objects rows lean on, and a follower whose event log
    # starts at a snapshot (for the Expired row)
    def setup(self):
        for key, rv in self.snapshot(self.leader).items():
            self.expected[key] = rv
        c = self.clients[self.leader]
        self.note(c.call("create", {"object": {"kind": "Namespace", "metadata": {"name": NS}}}))
        self.fixture = c.call("create", {"object": pod("fixture", {"app": "web"}, ns=NS)})
        self.note(self.fixture)
        self.note(c.call("create", {"object": {"kind": "Node",
                                               "metadata": {"name": "fixture-node"}}}))
        churn = c.call("create", {"object": pod("churn", ns=NS)})
        self.churn_first_rv = churn["metadata"]["resourceVersion"]
        for i in range(70):
            churn["metadata"]["labels"] = {"n": str(i)}
            churn = c.call("update", {"object": churn})
        self.note(churn)
        # Restart a follower: it loads the snapshot taken past the threshold
        # (64 entries), so its event log starts after the fixture's creation.
        self.restarted = self.followers[0]
        p = self.cl.procs.pop(self.restarted)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        assert p.returncode == 0, "%s exited %d on SIGTERM" % (self.restarted, p.returncode)
        self.clients[self.restarted].close()
        self.cl.start(self.restarted)
        commit = c.call("status")["commitIndex"]
        self.cl.wait_applied(self.restarted, commit)
        self.clients[self.restarted] = LaxClient(self.cl.api(self.restarted), self.cl.pki)
        # A second cluster's CA, for the foreign-certificate row.
        self.other = os.path.join(self.cl.dir, "other-cluster")
        subprocess.run([AEP, "admin", "init", "--dir", self.other, "--masters",
                        "m1=127.0.0.1:1"], check=True, stdout=subprocess.DEVNULL)

    def expect_created(self, out, kind, ns, names, absent=()):
        """A row that creates on purpose: check the good objects exist and
        the bad ones do not, and record them as the test's."""
        c = self.clients[self.leader]
        for n in names:
            obj = c.call("get", {"kind": kind, "namespace": ns, "name": n})
            self.note(obj)
            out.created.append((kind, ns, n))
        for n in absent:
            try:
                c.call("get", {"kind": kind, "namespace": ns, "name": n})
                raise AssertionError("%s %s/%s was created" % (kind, ns, n))
            except RpcError as e:
                assert e.code == "NotFound", e
        return out


# ---- the rows ------------------------------------------------------------------

def good_pod(name, **kw):
    p = pod(name, ns=NS)
    p.update(kw)
    return p


def rc(name, replicas=1, selector=None, tmpl_labels=None):
    return {"kind": "ReplicationController", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "selector": selector or {"a": "b"},
                     "template": {"metadata": {"labels": tmpl_labels or {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


def rc_never(name):
    r = rc(name)
    r["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    return r


def svc(name, **spec):
    s = {"ports": [{"port": 80}]}
    s.update(spec)
    return {"kind": "Service", "metadata": {"name": name, "namespace": NS}, "spec": s}


def pod_meta(name, **meta):
    p = pod(name, ns=NS)
    p["metadata"].update(meta)
    return p


def pod_container(name, **fields):
    p = pod(name, ns=NS)
    p["spec"]["containers"][0].update(fields)
    return p


BAD_UTF8 = b"\xff\xfe".decode("utf-8", "surrogateescape")


def w04(x):
    return x.wire(msgpack.packb([0, 1, "list", [{"kind": "pods", "x": [0] * 100001}]]))


def w19(x):
    s = x.tls()
    s.sendall(msgpack.packb([0, 1, "status", [{}]])[:-2])
    time.sleep(0.2)
    s.close()
    time.sleep(0.2)
    c = LaxClient(x.cl.api(x.leader), x.cl.pki)
    try:
        st = c.call("status")
    finally:
        c.close()
    return Outcome("dropped") if st.get("name") == x.leader else Outcome("ok", result=st)


def w24(x):
    host, port = x.cl.api(x.leader).rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=WIRE_WAIT)
    s.sendall(b"GET / HTTP/1.1\r\n\r\n" + FOLLOW_UP)
    got = b""
    deadline = time.time() + WIRE_WAIT
    try:
        while time.time() < deadline:
            chunk = s.recv(1 << 16)
            if not chunk:
                s.close()
                return Outcome("closed", bytes=got)
            got += chunk
    except socket.timeout:
        pass
    except OSError:
        s.close()
        return Outcome("closed", bytes=got)
    s.close()
    return Outcome("wire", msgs=[got], closed=False, answered=False)


def w25(x):
    try:
        s = x.tls(cert="admin", pki=os.path.join(x.other, "pki"))
        s.sendall(FOLLOW_UP)
        data = s.recv(1 << 16)
        s.close()
        return Outcome("wire", msgs=[data], closed=not data, answered=bool(data))
    except ssl.SSLError as e:
        return Outcome("refused", message=str(e))
    except OSError as e:
        return Outcome("closed", message=str(e))


def m02(x):
    out = x.call("announce", {"name": "m9", "api": "127.0.0.1:1", "peer": "127.0.0.1:2"})
    members = x.clients[x.leader].call("members")
    addrs = sorted(m["address"] for m in members)
    assert addrs == sorted(x.cl.api(n) for n in x.cl.names), members
    return out


def m65(x):
    cur = x.clients[x.leader].call("get", {"kind": "pods", "namespace": NS, "name": "fixture"})
    cur["metadata"]["uid"] = "00000000-0000-4000-8000-000000000000"
    cur["metadata"].pop("resourceVersion")
    return x.call("update", {"object": cur})


def m66(x):
    cur = x.clients[x.leader].call("get", {"kind": "pods", "namespace": NS, "name": "fixture"})
    cur["spec"]["containers"] = {"name": "c", "image": "i"}
    return x.call("update", {"object": cur})


def m67(x):
    c = x.clients[x.restarted]
    out = x.call("watch", {"kind": "pods",
                           "resourceVersion": x.fixture["metadata"]["resourceVersion"]},
                 client=c)
    # Nothing may arrive for a refused watch.
    evs = c.next_events(1, timeout=0.5)
    assert not evs, "events after a refused watch: %r" % evs
    return out


def m78(x):
    anon = LaxClient(x.cl.api(x.leader), x.cl.pki, cert=None)
    try:
        return x.call("list", {"kind": "pods"}, client=anon)
    finally:
        anon.close()


def bomb():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append("%s: &%s [%s]" % (cur, cur, ", ".join(["*" + prev] * 9)))
    return "\n".join(lines) + "\n"


def pod_yaml(name):
    return ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: %s\n"
            "spec:\n  nodeName: fixture-node\n  containers:\n  - {name: c, image: busybox}\n"
            % (name, NS))


def f17(x):
    lst = {"kind": "List", "items": [pod("list-good-1", ns=NS), pod("Bad_Name", ns=NS),
                                     pod("list-good-2", ns=NS)]}
    out = x.manifest("f17.json", json.dumps(lst))
    assert "pod/list-good-1 created" in out.out and "pod/list-good-2 created" in out.out, out
    return x.expect_created(out, "Pod", NS, ["list-good-1", "list-good-2"])


def f18(x):
    lst = {"kind": "List", "items": [pod("list-good-3", ns=NS),
                                     {"kind": "Widget", "metadata": {"name": "w"}},
                                     pod("list-good-4", ns=NS)]}
    out = x.manifest("f18.json", json.dumps(lst))
    assert "pod/list-good-3 created" in out.out and "pod/list-good-4 created" in out.out, out
    return x.expect_created(out, "Pod", NS, ["list-good-3", "list-good-4"])


def f19(x):
    good = x.file("good.yaml", pod_yaml("two-files-good"))
    bad = x.file("bad.yaml", "kind: Pod\nmetadata: {name: two-files-bad, "
                             "namespace: %s\n" % NS)
    out = x.aep("create", "-f", good, "-f", bad)
    assert "pod/two-files-good created" in out.out, out
    return x.expect_created(out, "Pod", NS, ["two-files-good"], absent=["two-files-bad"])


ROWS = {
    # raw wire
    "W01": lambda x: x.wire(b"\xdb" + struct.pack(">I", 100 << 20)),
    "W02": lambda x: x.wire(b"\x91" * 1000 + b"\xc0"),
    "W03": lambda x: x.wire(b"\xdf" + struct.pack(">I", 1 << 31)),
    "W04": w04,
    "W05": lambda x: x.wire(b"\xc1"),
    "W06": lambda x: x.wire(b"GET / HTTP/1.1\r\n\r\n"),
    "W07": lambda x: x.wire(msgpack.packb({"a": 1})),
    "W08": lambda x: x.wire(msgpack.packb([0, 1, "status"])),
    "W09": lambda x: x.wire(msgpack.packb([0, 1, "status", [{}], 5])),
    "W10": lambda x: x.wire(msgpack.packb([0, "x", "status", [{}]])),
    "W11": lambda x: x.wire(msgpack.packb([0, 1 << 33, "status", [{}]])),
    "W12": lambda x: x.wire(msgpack.packb([0, -1, "status", [{}]])),
    "W13": lambda x: x.wire(msgpack.packb([0, 7, 5, [{}]])),
    "W14": lambda x: x.wire(msgpack.packb([0, 7, b"status", [{}]], use_bin_type=True)),
    "W15": lambda x: x.wire(msgpack.packb([0, 7, "status", {}])),
    "W16": lambda x: x.wire(msgpack.packb([3, 7, "status", [{}]])),
    "W17": lambda x: x.wire(msgpack.packb(
        [0, 7, "create", [{"object": {"kind": "Pod", "x": ["a" * 1000] * 5000}}]])),
    "W18": lambda x: x.wire(msgpack.packb([0, 7, "list", [{"kind": "pods",
                                                           "x": "a" * (2 << 20)}]])),
    "W19": w19,
    "W20": lambda x: x.wire(msgpack.packb([2, "frobnicate", [{}]])),
    "W21": lambda x: x.wire(msgpack.packb([1, 9, None, None])),
    "W22": lambda x: x.wire(msgpack.packb([0, 7, "status", [[1]]])),
    "W23": lambda x: x.wire(msgpack.packb(
        [0, 7, "get", [{"kind": "pods", "name": "fixture", "namespace": NS}, {}]])),
    "W24": w24,
    "W25": w25,
    # methods
    "M01": lambda x: x.call("frobnicate", {}),
    "M02": m02,
    "M03": lambda x: x.call("get", {"kind": "Widget", "name": "x"}),
    "M04": lambda x: x.call("list", {}),
    "M05": lambda x: x.call("get", {"kind": 5, "name": "x"}),
    "M06": lambda x: x.call("get", {"kind": "pods"}),
    "M07": lambda x: x.call("delete", {"kind": "pods", "namespace": NS, "name": 5}),
    "M08": lambda x: x.call("get", {"kind": "pods", "name": "a" * 2000}),
    "M09": lambda x: x.call("get", {"kind": "pods", "name": "fixture", "namespace": 5}),
    "M10": lambda x: x.call("get", {"kind": "pods", "name": "x", "nmae": "y"}),
    "M11": lambda x: x.call_bytes("get", mpmap(("kind", "pods"), ("kind", "nodes"),
                                               ("name", "fixture"), ("namespace", NS))),
    "M12": lambda x: x.call("get", {"kind": "pods", "name": "fixture", "namespace": NS,
                                    "stale": "yes"}),
    "M13": lambda x: x.call("status", {"bogus": 1}),
    "M14": lambda x: x.call("create", {"object": "pod"}),
    "M15": lambda x: x.call("create", {}),
    "M16": lambda x: x.create({"kind": "Pod", "spec": {"containers": [{"name": "c",
                                                                       "image": "i"}]}}),
    "M17": lambda x: x.create({"metadata": {"name": "m17", "namespace": NS}}),
    "M18": lambda x: x.create({"kind": "Widget", "metadata": {"name": "m18"}}),
    "M19": lambda x: x.create(good_pod("m19", apiVersion="v2")),
    "M20": lambda x: x.call_bytes("create", mpmap(("object", mpmap(
        ("kind", "Pod"), ("metadata", {"name": "m20", "namespace": NS}),
        ("spec", {"containers": [{"name": "c", "image": "i"}]}), ("kind", "Pod"))))),
    "M21": lambda x: x.call_bytes("create", mpmap(("object", mpmap(
        ("kind", "Pod"),
        ("metadata", b"\x83" + msgpack.packb("name") + msgpack.packb("m21") +
         msgpack.packb("namespace") + msgpack.packb(NS) + msgpack.packb(1) +
         msgpack.packb("x")),
        ("spec", {"containers": [{"name": "c", "image": "i"}]}))))),
    "M22": lambda x: x.create(pod_meta("m22", foo=1)),
    "M23": lambda x: x.create(pod("Web", ns=NS)),
    "M24": lambda x: x.create(pod("a" * 254, ns=NS)),
    "M25": lambda x: x.create(pod("-web", ns=NS)),
    "M26": lambda x: x.create(pod("", ns=NS)),
    "M27": lambda x: x.create({"kind": "Namespace", "metadata": {"name": "a.b"}}),
    "M28": lambda x: x.create(pod("m28" + BAD_UTF8, ns=NS)),
    "M29": lambda x: x.create(pod("m29", {"k%d" % i: "v" for i in range(65)}, ns=NS)),
    "M30": lambda x: x.create(pod("m30", {"k": "v" * 64}, ns=NS)),
    "M31": lambda x: x.create(pod("m31", {"Bad_Prefix/k": "v"}, ns=NS)),
    "M32": lambda x: x.create(pod("m32", {"a/b/c": "v"}, ns=NS)),
    "M33": lambda x: x.create(pod("m33", {"example.com/": "v"}, ns=NS)),
    "M34": lambda x: x.create(pod("m34", {"a": 5}, ns=NS)),
    "M35": lambda x: x.create(pod("m35", {"a": "v" + BAD_UTF8}, ns=NS)),
    "M36": lambda x: x.create(pod_meta("m36", annotations={"a": "v" + BAD_UTF8})),
    "M37": lambda x: x.create(pod_container("m37", image="busybox" + BAD_UTF8)),
    "M38": lambda x: x.create(pod_meta("m38", annotations={"a": "x" * 300000})),
    "M39": lambda x: x.create(good_pod("m39", spec={"containers": [
        {"name": "c%d" % i, "image": "i", "env": [{"name": "E", "value": "x" * 200000}]}
        for i in range(6)]})),
    "M40": lambda x: x.create(good_pod("m40", spec={"containers": {"name": "c",
                                                                   "image": "i"}})),
    "M41": lambda x: x.create(good_pod("m41", spec={})),
    "M42": lambda x: x.create(good_pod("m42", spec={"containers": [
        {"name": "c", "image": "i"}, {"name": "c", "image": "j"}]})),
    "M43": lambda x: x.create(rc("m43", replicas="3")),
    "M44": lambda x: x.create(rc("m44", replicas=-1)),
    "M45": lambda x: x.create(rc("m45", replicas=1.5)),
    "M46": lambda x: x.create(rc("m46", selector={"a": "b"}, tmpl_labels={"a": "c"})),
    "M47": lambda x: x.create(svc("m47", ports=[{"port": 70000}])),
    "M48": lambda x: x.create(pod_container("m48", ports=[{"containerPort": 70000}])),
    "M49": lambda x: x.create(pod_container("m49", ports=[{"containerPort": 80,
                                                           "bogus": 1}])),
    "M50": lambda x: x.create(svc("m50", clusterIP="999.1.1.1")),
    "M51": lambda x: x.create(pod_container("m51", resources={"limits": {"cpu": "lots"}})),
    "M52": lambda x: x.create(good_pod("m52", spec={
        "containers": [{"name": "c", "image": "i"}], "restartPolicy": "Sometimes"})),
    "M53": lambda x: x.create(good_pod("m53", status={"phase": "Bogus"})),
    "M54": lambda x: x.create(pod_meta("m54", creationTimestamp="yesterday")),
    "M55": lambda x: x.create({"kind": "Node", "metadata": {"name": "m55",
                                                            "namespace": "default"}}),
    "M56": lambda x: x.create(pod("m56", ns="no-such-ns")),
    "M57": lambda x: x.create(pod_meta("m57", resourceVersion="5")),
    "M58": lambda x: x.create(pod("fixture", {"app": "web"}, ns=NS)),
    "M59": lambda x: x.call("update", {"object": pod("no-such-pod", ns=NS)}),
    "M60": lambda x: x.call("delete", {"kind": "pods", "namespace": NS,
                                       "name": "no-such-pod"}),
    "M61": lambda x: x.call("update", {"object": pod_meta(
        "churn", resourceVersion=x.churn_first_rv, labels={"stale": "yes"})}),
    "M62": lambda x: x.call("delete", {"kind": "pods", "namespace": NS, "name": "churn",
                                       "resourceVersion": x.churn_first_rv}),
    "M63": lambda x: x.call("delete", {"kind": "pods", "namespace": NS, "name": "churn",
                                       "resourceVersion": "abc"}),
    "M64": lambda x: x.call("update", {"object": pod_meta(
        "fixture", resourceVersion="abc", labels={"app": "web"})}),
    "M65": m65,
    "M66": m66,
    "M67": m67,
    "M68": lambda x: x.call("watch", {"kind": "pods", "resourceVersion": -1}),
    "M69": lambda x: x.call("watch", {"kind": "pods", "resourceVersion": "12x"}),
    "M70": lambda x: x.call("list", {"kind": "pods", "labelSelector": "app in (a"}),
    "M71": lambda x: x.call("list", {"kind": "pods", "labelSelector": "a,,b"}),
    "M72": lambda x: x.call("list", {"kind": "pods", "labelSelector": "x notin ()"}),
    "M73": lambda x: x.call("list", {"kind": "pods", "labelSelector": "a=" + "v" * 64}),
    "M74": lambda x: x.call("list", {"kind": "pods", "labelSelector": 5}),
    "M75": lambda x: x.call("watch", {"kind": "pods", "labelSelector": "a in ("}),
    "M76": lambda x: x.call("unwatch", {"watch": 999}),
    "M77": lambda x: x.call("unwatch", {"watch": "x"}),
    "M78": m78,
    "M79": lambda x: x.create(rc_never("m79")),
    # CLI
    "C01": lambda x: x.aep("get", "widgets"),
    "C02": lambda x: x.aep("get", "pod", "no-such-pod", "-n", NS),
    "C03": lambda x: x.aep("delete", "pod", "no-such-pod", "-n", NS),
    "C04": lambda x: x.aep("delete", "pods"),
    "C05": lambda x: x.aep("label", "pod", "fixture", "app=db", "-n", NS),
    "C06": lambda x: x.aep("label", "pod", "fixture", "Bad Key=v", "-n", NS),
    "C07": lambda x: x.aep("label", "pod", "fixture", "a=b c", "-n", NS),
    "C08": lambda x: x.aep("create", "namespace", "Bad_NS"),
    "C09": lambda x: x.aep("get", "pods", "-l", "a in ("),
    "C10": lambda x: x.aep("--server", "127.0.0.1:1", "get", "pods"),
    "C11": lambda x: x.aep("--server", "not an address", "get", "pods"),
    "C12": lambda x: x.aep("--config", "/nonexistent/admin.conf", "get", "pods"),
    "C13": lambda x: x.aep("--config", x.file("garbage.conf", b"\x01\x02 not {{{\n"),
                           "get", "pods"),
    "C14": lambda x: x.aep("--timeout", "forever", "get", "pods"),
    "C15": lambda x: x.aep("get", "pods", "--frobnicate"),
    "C16": lambda x: x.aep("frobnicate"),
    "C17": lambda x: x.aep("get", "pods", "-o", "bogus"),
    "C18": lambda x: x.aep("create", "-f", "/nonexistent.yaml"),
    # manifests
    "F01": lambda x: x.manifest("f01.yaml", "kind: Pod\nmetadata:\n  name: f01\n"
                                            "  labels: {a: b\nspec: 1\n"),
    "F02": lambda x: x.manifest("f02.yaml", "kind: Pod\nmetadata:\n  name: f02\n"
                                            "   bad: indent\n"),
    "F03": lambda x: x.manifest("f03.yaml", bomb()),
    "F04": lambda x: x.manifest("f04.yaml", "kind: Pod\nmetadata: {name: f04}\nspec: " +
                                "[" * 100 + "]" * 100 + "\n"),
    "F05": lambda x: x.manifest("f05.yaml", "kind: Pod\nmetadata:\n  name: f05\n"
                                            "  name: f05b\n"),
    "F06": lambda x: x.manifest("f06.yaml", ""),
    "F07": lambda x: x.manifest("f07.yaml", "# " + "x" * (9 << 20) + "\n"),
    "F08": lambda x: x.manifest("f08.json", '{"kind": "Pod",\n "metadata": {"name": "f08"}\n'),
    "F09": lambda x: x.manifest("f09.yaml", "kind: Widget\nmetadata: {name: f09}\n"),
    "F10": lambda x: x.manifest("f10.yaml", "metadata: {name: f10}\n"),
    "F11": lambda x: x.manifest("f11.yaml", "just a string\n"),
    "F12": lambda x: x.manifest("f12.yaml", "kind: Pod\nmetadata: *nope\n"),
    "F13": lambda x: x.manifest("f13.yaml", "a: &a [1, *a]\n"),
    "F14": lambda x: x.manifest("f14.yaml", b"\xff\xfe\x00\x01garbage"),
    "F15": lambda x: x.manifest("f15.yaml", b"kind: Pod\nmetadata: {name: f15, annotations: "
                                            b"{a: \"\xff\xfe\"}}\nspec: {containers: "
                                            b"[{name: c, image: i}]}\n"),
    "F16": lambda x: x.manifest("f16.yaml", "kind: Pod\nmetadata: {name: f16, namespace: %s}\n"
                                            "spec: {containers: [{name: c, image: i, "
                                            "bogus: 1}]}\n" % NS),
    "F17": f17,
    "F18": f18,
    "F19": f19,
    "F20": lambda x: x.aep("create", "-f", "-", input="{{{{\n"),
}


# ---- the test --------------------------------------------------------------------

def test_bad_input_table():
    rows = parse_doc()
    assert len(rows) >= 60, "only %d rows in %s" % (len(rows), DOC)
    missing, extra = sorted(set(rows) - set(ROWS)), sorted(set(ROWS) - set(rows))
    assert not missing and not extra, (
        "docs/BAD-INPUT.md and ROWS disagree: in the document only %s, in the test only %s"
        % (missing, extra))
    start = time.time()
    with Cluster(3, snapshot_threshold=64, snapshot_trailing=16) as cl:
        x = Ctx(cl)
        x.setup()
        print("set-up done in %.1fs" % (time.time() - start), flush=True)
        failed, known, fixed = [], [], []
        for rid in sorted(rows, key=lambda r: "WMCF".index(r[0]) * 100 + int(r[1:])):
            exp = rows[rid]
            before = x.revision()
            t0 = time.time()
            try:
                out = ROWS[rid](x)
                problems = check(exp, out)
            except Exception as e:  # a row's own assertion, or the client failing
                out = Outcome("exception", error="%s: %s" % (type(e).__name__, e))
                problems = ["%s: %s" % (type(e).__name__, e)]
            after = x.revision()
            if after != before and not out.created:
                problems.append("the store changed: revision %d -> %d" % (before, after))
            took = time.time() - t0
            if not problems:
                if exp.known_bug:
                    fixed.append(rid)
                    print("FIXED %s: documented as a known bug but now as expected (%.2fs)"
                          % (rid, took), flush=True)
                else:
                    print("ok    %s %s (%.2fs)" % (rid, exp.token, took), flush=True)
            elif exp.known_bug:
                known.append(rid)
                print("KNOWN %s: %s" % (rid, "; ".join(problems)), flush=True)
            else:
                failed.append(rid)
                print("FAIL  %s: expected `%s` %s: %s" % (rid, exp.token, exp.subs,
                                                         "; ".join(problems)), flush=True)
        for c in x.clients.values():
            c.close()
        x.clients = {n: LaxClient(cl.api(n), cl.pki) for n in cl.names}

        # The masters are healthy: every one answers, with one leader.
        leaders = {x.clients[n].call("status")["leaderName"] for n in cl.names}
        assert leaders == {x.leader}, "leaders seen: %s" % leaders
        # A normal create still works, through a follower.
        x.note(x.clients[x.followers[1]].call("create", {"object": pod("after-all", ns=NS)}))
        # The store holds exactly what the test made, on every master.
        want = dict(x.expected)
        commit = x.clients[x.leader].call("status")["commitIndex"]
        store_problems = []
        for n in cl.names:
            cl.wait_applied(n, commit)
            got = x.snapshot(n, stale=(n != x.leader))
            extra = {k: v for k, v in got.items() if k not in want}
            gone = {k: v for k, v in want.items() if k not in got}
            moved = {k: (want[k], got[k]) for k in want if k in got and got[k] != want[k]}
            if extra or gone or moved:
                store_problems.append("%s: extra %s, missing %s, changed (want, got) %s"
                                      % (n, extra, gone, moved))
        for c in x.clients.values():
            c.close()
        ok = len(rows) - len(failed) - len(known) - len(fixed)
        print("bad-input table: %d rows, %d as documented, %d not, %d known bugs, %d fixed "
              "known bugs; store %s; %.1fs" % (len(rows), ok, len(failed), len(known),
                                              len(fixed), "; ".join(store_problems) or "as made",
                                              time.time() - start), flush=True)
        assert not failed, "rows not as documented: %s" % failed
        assert not fixed, "rows marked KNOWN BUG that now pass (remove the marker): %s" % fixed
        assert not store_problems, ("the store differs from what the test created: %s"
                                    % store_problems)

if __name__ == "__main__":
    run([test_bad_input_table])
