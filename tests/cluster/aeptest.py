"""Helpers for AEP's cluster tests: real `aep master` processes on 127.0.0.1,
and a msgpack-RPC client written only from docs/API.md (Python's standard
ssl module plus Debian's python3-msgpack).

Everything a test starts is stopped, and its temporary directory removed,
when the Cluster is closed -- also when the test fails (use it as a context
manager)."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import msgpack

AEP = os.environ.get("AEP_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "aep")


def free_port_block(n, span=3):
    """A base port such that base..base+n-1, +100 and +200 are all free."""
    import random
    for _ in range(200):
        base = random.randrange(20000, 29000)
        ok = True
        for i in range(n):
            for off in range(0, 100 * span, 100):
                s = socket.socket()
                try:
                    s.bind(("127.0.0.1", base + off + i))
                except OSError:
                    ok = False
                finally:
                    s.close()
        if ok:
            return base
    raise RuntimeError("no free ports")


class RpcError(Exception):
    def __init__(self, err):
        self.code = err.get("code") if isinstance(err, dict) else "Internal"
        self.message = err.get("message") if isinstance(err, dict) else str(err)
        self.details = err.get("details") if isinstance(err, dict) else None
        super().__init__("%s: %s" % (self.code, self.message))


class Client:
    """A msgpack-RPC client over TLS 1.3, as docs/API.md describes."""

    def __init__(self, addr, pki, cert="admin", timeout=10.0):
        host, port = addr.rsplit(":", 1)
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=os.path.join(pki, "ca.crt"))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if cert:
            ctx.load_cert_chain(os.path.join(pki, cert + ".crt"),
                                os.path.join(pki, cert + ".key"))
        raw = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        self.sock.settimeout(timeout)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.msgid = 0
        self.events = []      # notifications received, in order
        self.replies = {}

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _pump(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("server closed the connection")
        self.unpacker.feed(data)
        for msg in self.unpacker:
            if msg[0] == 1:
                self.replies[msg[1]] = (msg[2], msg[3])
            elif msg[0] == 2:
                self.events.append((msg[1], msg[2]))

    def send(self, method, params):
        self.msgid += 1
        self.sock.sendall(msgpack.packb([0, self.msgid, method, [params]]))
        return self.msgid

    def wait(self, msgid):
        while msgid not in self.replies:
            self._pump()
        err, res = self.replies.pop(msgid)
        if err is not None:
            raise RpcError(err)
        return res

    def call(self, method, params=None):
        return self.wait(self.send(method, params or {}))

    def next_events(self, count, timeout=10.0):
        """Wait until at least @count event maps arrived; return them all."""
        deadline = time.time() + timeout
        while True:
            evs = [e for (m, p) in self.events if m == "event" for e in p]
            if len(evs) >= count:
                return evs
            if time.time() > deadline:
                return evs
            self.sock.settimeout(max(0.05, deadline - time.time()))
            try:
                self._pump()
            except socket.timeout:
                pass


def pod(name, labels=None, ns=None, image="busybox"):
    meta = {"name": name}
    if labels:
        meta["labels"] = labels
    if ns:
        meta["namespace"] = ns
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "image": image}]}}


class Cluster:
    """@n masters; the API on @host (Raft and HTTP stay on 127.0.0.1)."""

    def __init__(self, n=3, snapshot_threshold=None, snapshot_trailing=None, http=True,
                 extra_args=None, host="127.0.0.1"):
        self.host = host
        self.n = n
        self.dir = tempfile.mkdtemp(prefix="aep-test-")
        self.base = free_port_block(n)
        self.names = ["m%d" % (i + 1) for i in range(n)]
        self.procs = {}
        self.snapshot_threshold = snapshot_threshold
        self.snapshot_trailing = snapshot_trailing
        self.http = http
        self.extra_args = list(extra_args or [])  # appended to every `aep master`
        masters = ",".join("%s=%s" % (nm, self.api(nm)) for nm in self.names)
        subprocess.run([AEP, "admin", "init", "--dir", self.dir, "--masters", masters],
                       check=True, stdout=subprocess.DEVNULL)
        self.pki = os.path.join(self.dir, "pki")
        self.config = os.path.join(self.dir, "admin.conf")
        for nm in self.names:
            self.start(nm)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        try:
            self.close()
        except AssertionError:
            if exc_type is None:
                raise

    def index(self, name):
        return self.names.index(name)

    def api(self, name):
        return "%s:%d" % (self.host, self.base + self.index(name))

    def http_addr(self, name):
        return "127.0.0.1:%d" % (self.base + 200 + self.index(name))

    def start(self, name):
        i = self.index(name)
        cluster = ",".join("%s=127.0.0.1:%d" % (nm, self.base + 100 + j)
                           for j, nm in enumerate(self.names))
        args = [AEP, "master", "--name", name, "--dir", os.path.join(self.dir, name),
                "--listen", self.api(name), "--peer", "127.0.0.1:%d" % (self.base + 100 + i),
                "--initial-cluster", cluster, "--pki", self.pki]
        if self.http:
            args += ["--http", self.http_addr(name)]
        if self.snapshot_threshold:
            args += ["--snapshot-threshold", str(self.snapshot_threshold)]
        if self.snapshot_trailing:
            args += ["--snapshot-trailing", str(self.snapshot_trailing)]
        args += self.extra_args
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=log)
        log.close()

    def kill(self, name, sig=signal.SIGKILL):
        p = self.procs.pop(name, None)
        if p is not None:
            p.send_signal(sig)
            p.wait(timeout=30)

    def client(self, name=None, **kw):
        return Client(self.api(name or self.names[0]), self.pki, **kw)

    def status(self, name):
        c = self.client(name, timeout=2.0)
        try:
            return c.call("status")
        finally:
            c.close()

    def wait_leader(self, timeout=30.0, exclude=()):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for nm in self.names:
                if nm not in self.procs or nm in exclude:
                    continue
                try:
                    st = self.status(nm)
                except (OSError, RpcError, ConnectionError):
                    continue
                if st.get("leader") and st.get("name") == nm:
                    return nm
            time.sleep(0.1)
        raise AssertionError("no leader elected within %.0fs; logs in %s" % (timeout, self.dir))

    def wait_applied(self, name, index, timeout=60.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.status(name)["appliedIndex"] >= index:
                    return
            except (OSError, RpcError, ConnectionError):
                pass
            time.sleep(0.1)
        raise AssertionError("%s did not reach applied index %d" % (name, index))

    def aep(self, *args, check=True, input=None, timeout=60):
        env = dict(os.environ, AEP_CONFIG=self.config)
        r = subprocess.run([AEP] + list(args), env=env, capture_output=True, text=True,
                           input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("aep %s failed (%d): %s%s" % (" ".join(args), r.returncode,
                                                             r.stdout, r.stderr))
        return r

    def close(self):
        """Stop every master with SIGTERM. A master that does not exit 0
        (a crash, or a sanitizer report at exit) fails the test, with the
        end of its log."""
        bad = []
        for nm in list(self.procs):
            p = self.procs.pop(nm)
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                bad.append((nm, "did not stop within 30 s of SIGTERM"))
                continue
            if p.returncode != 0:
                bad.append((nm, "exited with status %d" % p.returncode))
        for nm, why in bad:
            try:
                with open(os.path.join(self.dir, nm + ".log"), errors="replace") as f:
                    tail = f.read()[-4000:]
            except OSError:
                tail = ""
            print("master %s %s; log ends:\n%s" % (nm, why, tail))
        if os.environ.get("AEP_KEEP_TEST_DIR"):
            print("test directory kept:", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if bad:
            raise AssertionError("masters failed at shutdown: %s" % bad)


def run(tests):
    """Run test functions, print a summary, exit non-zero on any failure."""
    import sys
    import traceback
    failed = 0
    for t in tests:
        start = time.time()
        try:
            t()
            print("PASS %s (%.1fs)" % (t.__name__, time.time() - start), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s (%.1fs)" % (t.__name__, time.time() - start), flush=True)
            traceback.print_exc()
    sys.exit(1 if failed else 0)
