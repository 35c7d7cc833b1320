"""Fault test on real `aep master` processes, Jepsen style.

N masters, each in its own network namespace (netns.py); concurrent clients
create pods and run a register workload on a few hot pods (linearizable
reads, compare-and-set = update with a resourceVersion precondition, a few
blind writes), every operation recorded with invoke and complete times;
watchers follow all pods and resume from their last revision after any
break (or relist on Expired). A nemesis injects one fault at a time: kill -9
and restart, SIGSTOP/SIGCONT, partitions (leader isolated, majority and
minority, a bridge, one peer isolated) and a full disk on one peer (a small
loop-mounted ext4). At the end every fault is healed and the test checks:

- no acknowledged create is missing on any master, nothing appears that
  nobody wrote, and all masters hold the same objects at the same revisions;
- the register histories are linearizable (aep-linearize);
- every watcher saw every acknowledged change of its span exactly once and
  in revision order;
- no master crashed (only the nemesis's kills), and all exit 0 on SIGTERM.

It prints `faults=F ops=O lost=L linearizable=yes|no ...` and exits 0 only
when all holds. Usage: faults.py --masters 3 --duration 35 (or --faults
1000). AEP_KEEP_TEST_DIR=1 keeps logs and the history."""
import argparse
import ctypes
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from aeptest import Client, RpcError  # noqa: E402
from netns import Net, sh  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
AEP = os.environ.get("AEP_BIN") or os.path.join(HERE, "..", "..", "build", "aep")
LINEARIZE = os.environ.get("AEP_LINEARIZE") or os.path.join(
    HERE, "..", "..", "build", "tests", "faults", "aep-linearize")
API, PEER, HTTP = 7001, 7101, 7201
PR_SET_PDEATHSIG = 1


def die_with_parent():
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def now():
    return time.monotonic_ns()


def pod(name, v=None, rv=None):
    meta = {"name": name, "namespace": "default"}
    if v is not None:
        meta["annotations"] = {"v": str(v)}
    if rv is not None:
        meta["resourceVersion"] = rv
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


class Cluster:
    """Masters in namespaces; data directory of the last one on a small
    loop-mounted file system (for the disk-full fault)."""

    def __init__(self, n, disk):
        self.n = n
        self.dir = tempfile.mkdtemp(prefix="aep-faults-")
        self.net = Net(n)
        self.names = ["m%d" % (i + 1) for i in range(n)]
        self.procs = {}
        self.stopped = set()
        self.crashes = []
        self.loop = None
        self.mnt = None
        self.disk = disk
        self.filler = None

    def setup(self):
        self.net.setup()
        masters = ",".join("%s=%s:%d" % (nm, self.net.addr(i), API)
                           for i, nm in enumerate(self.names))
        sh(AEP, "admin", "init", "--dir", self.dir, "--masters", masters)
        self.pki = os.path.join(self.dir, "pki")
        if self.disk:
            img = os.path.join(self.dir, "disk.img")
            with open(img, "wb") as f:
                f.truncate(96 << 20)
            self.loop = sh("losetup", "-f", "--show", img).stdout.strip()
            sh("mkfs.ext4", "-q", "-m", "0", self.loop)
            self.mnt = os.path.join(self.dir, self.names[-1])
            os.makedirs(self.mnt)
            sh("mount", self.loop, self.mnt)
        self.net.enter_hub()
        for nm in self.names:
            self.start(nm)

    def api(self, name):
        return "%s:%d" % (self.net.addr(self.names.index(name)), API)

    def start(self, name):
        i = self.names.index(name)
        cluster = ",".join("%s=%s:%d" % (nm, self.net.addr(j), PEER)
                           for j, nm in enumerate(self.names))
        ip = self.net.addr(i)
        os.makedirs(os.path.join(self.dir, name), exist_ok=True)
        args = self.net.exec_prefix(i) + [
            AEP, "master", "--name", name, "--dir", os.path.join(self.dir, name, "data"),
            "--listen", "%s:%d" % (ip, API), "--peer", "%s:%d" % (ip, PEER),
            "--initial-cluster", cluster, "--pki", self.pki, "--http", "%s:%d" % (ip, HTTP),
            "--snapshot-threshold", "1024", "--snapshot-trailing", "256"]
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=log,
                                            preexec_fn=die_with_parent)
        log.close()

    def kill(self, name):
        p = self.procs.pop(name)
        self.stopped.discard(name)
        p.kill()
        p.wait()

    def pause(self, name):
        self.procs[name].send_signal(signal.SIGSTOP)
        self.stopped.add(name)

    def resume(self, name):
        self.stopped.discard(name)
        self.procs[name].send_signal(signal.SIGCONT)

    def check_alive(self):
        """Notes masters that exited without being killed and restarts them."""
        for nm, p in list(self.procs.items()):
            if p.poll() is not None:
                self.crashes.append((nm, p.returncode, self.log_tail(nm)))
                print("master %s exited by itself with status %d" % (nm, p.returncode),
                      flush=True)
                del self.procs[nm]
                self.start(nm)

    def log_tail(self, nm, size=3000):
        try:
            with open(os.path.join(self.dir, nm + ".log"), errors="replace") as f:
                return f.read()[-size:]
        except OSError:
            return ""

    def status(self, name, timeout=1.0):
        c = Client(self.api(name), self.pki, timeout=timeout)
        try:
            return c.call("status")
        finally:
            c.close()

    def leader(self):
        best = None
        for nm in self.names:
            if nm not in self.procs or nm in self.stopped:
                continue
            try:
                st = self.status(nm)
            except (OSError, RpcError, ConnectionError):
                continue
            if st.get("leader") and (best is None or st["term"] > best[1]):
                best = (nm, st["term"])
        return best[0] if best else None

    def fill_disk(self):
        st = os.statvfs(self.mnt)
        self.filler = os.path.join(self.mnt, "filler")
        free = st.f_bavail * st.f_frsize
        sh("fallocate", "-l", str(max(free - 4096, 4096)), self.filler, check=False)
        # Whatever fallocate could not take, take block by block.
        try:
            with open(self.filler, "ab") as f:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
        except OSError:
            pass

    def free_disk(self):
        if self.filler:
            try:
                os.unlink(self.filler)
            except OSError:
                pass
            self.filler = None

    def close(self):
        """Stops every master with SIGTERM; returns [(name, why)] for those
        that did not exit 0. Removes namespaces, mounts and (unless kept)
        the directory."""
        bad = []
        for nm in list(self.stopped):
            self.resume(nm)
        for nm in list(self.procs):
            p = self.procs.pop(nm)
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=30)
                if p.returncode != 0:
                    bad.append((nm, "exited with status %d" % p.returncode))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                bad.append((nm, "did not stop within 30 s of SIGTERM"))
        self.free_disk()
        if self.mnt:
            sh("umount", "-l", self.mnt, check=False)
        if self.loop:
            sh("losetup", "-d", self.loop, check=False)
        self.net.close()
        for nm, why in bad:
            print("master %s %s; log ends:\n%s" % (nm, why, self.log_tail(nm)))
        if os.environ.get("AEP_KEEP_TEST_DIR"):
            print("test directory kept:", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return bad


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = []          # (id, key, type, a, b, invoke, complete, status)
        self.acked = {}        # create name -> rv
        self.maybe = set()
        self.writes = {}       # acked rv -> name (creates and updates)
        self.unexpected = []
        self.counts = {"ok": 0, "fail": 0, "unknown": 0}

    def op(self, *rec):
        with self.lock:
            self.ops.append((len(self.ops) + 1,) + rec)
            self.counts[rec[-1]] += 1

    def write_ok(self, obj):
        with self.lock:
            self.writes[int(obj["metadata"]["resourceVersion"])] = obj["metadata"]["name"]


def classify(e):
    """Outcome of a failed write: definite failure or unknown."""
    return "fail" if isinstance(e, RpcError) and e.code == "Conflict" else "unknown"


class Worker(threading.Thread):
    def __init__(self, t, cl, rec, keys, stop):
        super().__init__(daemon=True)
        self.t, self.cl, self.rec, self.keys, self.stop = t, cl, rec, keys, stop
        self.conn = None
        self.seq = 0
        self.known = {}
        self.rng = random.Random(t * 7919 + int(time.time()))

    def connect(self):
        if self.conn is None:
            self.conn = Client(self.cl.api(self.rng.choice(self.cl.names)), self.cl.pki,
                               timeout=3.0)
        return self.conn

    def drop(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def call(self, method, params):
        try:
            return self.connect().call(method, params)
        except RpcError as e:
            if e.code in ("Unavailable", "NotLeader"):
                self.drop()
                time.sleep(0.05)
            raise
        except (OSError, ConnectionError):
            self.drop()
            time.sleep(0.05)
            raise

    def newval(self):
        self.seq += 1
        return (self.t + 1) * 1000000000 + self.seq

    def read(self, key):
        inv = now()
        try:
            o = self.call("get", {"kind": "pods", "name": key})
        except (RpcError, OSError, ConnectionError):
            self.known.pop(key, None)
            return
        v = int(o["metadata"]["annotations"]["v"])
        self.rec.op(key, "read", v, "-", inv, now(), "ok")
        self.known[key] = (v, o["metadata"]["resourceVersion"])

    def update(self, key, cas):
        new = self.newval()
        old, rv = self.known.pop(key) if cas else (None, None)
        inv = now()
        try:
            o = self.call("update", {"object": pod(key, new, rv)})
        except (RpcError, OSError, ConnectionError) as e:
            st = classify(e)
            if cas:
                self.rec.op(key, "cas", old, new, inv, now(), st)
            else:
                self.rec.op(key, "write", new, "-", inv, now(), "unknown")
            self.note(e, ("Conflict",) if cas else ())
            return
        self.rec.write_ok(o)
        if cas:
            self.rec.op(key, "cas", old, new, inv, now(), "ok")
        else:
            self.rec.op(key, "write", new, "-", inv, now(), "ok")
        self.known[key] = (new, o["metadata"]["resourceVersion"])

    def note(self, e, expected):
        if isinstance(e, RpcError) and e.code not in expected + ("Unavailable", "NotLeader"):
            with self.rec.lock:
                self.rec.unexpected.append("%s: %s" % (e.code, e.message))

    def create(self):
        self.seq += 1
        name = "c-%d-%06d" % (self.t, self.seq)
        try:
            o = self.call("create", {"object": pod(name)})
        except (RpcError, OSError, ConnectionError) as e:
            with self.rec.lock:
                self.rec.maybe.add(name)
            self.note(e, ())
            return
        with self.rec.lock:
            self.rec.acked[name] = int(o["metadata"]["resourceVersion"])
        self.rec.write_ok(o)

    def run(self):
        while not self.stop.is_set():
            r = self.rng.random()
            if r < 0.2:
                self.create()
                continue
            key = self.rng.choice(self.keys)
            if r < 0.5 or (r < 0.95 and key not in self.known):
                self.read(key)
            elif r < 0.95:
                self.update(key, True)
            else:
                self.update(key, False)
        self.drop()


class Watcher(threading.Thread):
    """Follows all pods; resumes from its last revision after any break,
    relists on Expired. Spans: (start_rv, events) between relists."""

    def __init__(self, t, cl, start_rv, stop):
        super().__init__(daemon=True)
        self.t, self.cl, self.stop = t, cl, stop
        self.last = start_rv
        self.spans = [[start_rv, []]]
        self.violations = []
        self.resumes = 0
        self.relists = 0
        self.conn = None
        self.rng = random.Random(t)
        self.target = None

    def connect(self):
        names = list(self.cl.names)
        self.rng.shuffle(names)
        for nm in names:
            try:
                c = Client(self.cl.api(nm), self.cl.pki, timeout=3.0)
            except (OSError, ConnectionError):
                continue
            try:
                try:
                    c.call("watch", {"kind": "pods", "resourceVersion": str(self.last)})
                except RpcError as e:
                    if e.code != "Expired":
                        raise
                    lst = c.call("list", {"kind": "pods"})
                    self.last = int(lst["resourceVersion"])
                    self.spans.append([self.last, []])
                    self.relists += 1
                    c.call("watch", {"kind": "pods", "resourceVersion": str(self.last)})
                self.conn = c
                self.resumes += 1
                return
            except (OSError, ConnectionError, RpcError):
                c.close()
        time.sleep(0.2)

    def run(self):
        quiet_since = time.time()
        while not self.stop.is_set() or (self.target and self.last < self.target):
            if self.conn is None:
                self.connect()
                quiet_since = time.time()
                continue
            try:
                evs = self.conn.next_events(1, timeout=0.5)
                self.conn.events = []
            except (OSError, ConnectionError):
                self.conn.close()
                self.conn = None
                continue
            for ev in evs:
                obj = ev.get("object") if isinstance(ev, dict) else None
                if (isinstance(ev, dict) and ev.get("type") == "ERROR"
                        and isinstance(obj, dict) and obj.get("code") == "Expired"):
                    # docs/API.md: the master's store was replaced by a
                    # snapshot; the watch has ended: list again, watch anew.
                    try:
                        lst = self.conn.call("list", {"kind": "pods", "stale": True})
                        self.last = int(lst["resourceVersion"])
                        self.spans.append([self.last, []])
                        self.relists += 1
                        self.conn.call("watch", {"kind": "pods",
                                                 "resourceVersion": str(self.last)})
                    except (OSError, ConnectionError, RpcError):
                        self.conn.close()
                        self.conn = None
                    break
                if not isinstance(obj, dict) or "metadata" not in obj:
                    # Not an event of docs/API.md: note it, resume elsewhere.
                    self.violations.append("event not in the API's shape: %.300r" % (ev,))
                    self.conn.close()
                    self.conn = None
                    break
                rv = int(obj["metadata"]["resourceVersion"])
                if rv <= self.last:
                    self.violations.append("event at revision %d after %d (%s %s)" % (
                        rv, self.last, ev["type"], ev["object"]["metadata"]["name"]))
                    continue
                self.last = rv
                self.spans[-1][1].append((rv, ev["type"], ev["object"]["metadata"]["name"]))
            if evs:
                quiet_since = time.time()
            elif time.time() - quiet_since > (3 if self.stop.is_set() else 8):
                # A connection to a master that died behind a partition
                # stays silent forever: move on.
                self.conn.close()
                self.conn = None
        if self.conn:
            self.conn.close()


class Nemesis:
    def __init__(self, cl, rng, disk):
        self.cl, self.rng, self.disk = cl, rng, disk
        self.count = 0
        self.kinds = {}

    def others(self, nm):
        return [x for x in self.cl.names if x != nm]

    def idx(self, nm):
        return self.cl.names.index(nm)

    def hold(self, lo=0.5, hi=2.5):
        time.sleep(self.rng.uniform(lo, hi))

    def one(self):
        cl, rng, n = self.cl, self.rng, self.cl.n
        kinds = ["kill", "kill-leader", "pause", "pause-leader", "isolate-leader", "split",
                 "bridge", "isolate"]
        if self.disk:
            kinds.append("disk-full")
        kind = rng.choice(kinds)
        leader = cl.leader() or rng.choice(cl.names)
        victim = leader if kind.endswith("leader") else rng.choice(cl.names)
        if kind == "disk-full":
            victim = cl.names[-1]
        self.count += 1
        if os.environ.get("AEP_FAULTS_VERBOSE"):
            print("fault %d: %s %s (leader %s)" % (self.count, kind, victim, leader), flush=True)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if kind.startswith("kill"):
            cl.kill(victim)
            self.hold(0.2, 2.0)
            cl.start(victim)
        elif kind.startswith("pause"):
            cl.pause(victim)
            self.hold()
            cl.resume(victim)
        elif kind in ("isolate-leader", "isolate"):
            i = self.idx(victim)
            cl.net.partition([(i, j) for j in range(n) if j != i])
            self.hold(1.0, 3.0)
            cl.net.heal()
        elif kind == "split":
            order = list(range(n))
            rng.shuffle(order)
            minority = order[:rng.randint(1, (n - 1) // 2)]
            cl.net.partition([(i, j) for i in minority for j in range(n) if j not in minority])
            self.hold(1.0, 3.0)
            cl.net.heal()
        elif kind == "bridge":
            # One master (the bridge) sees both halves; the halves do not
            # see each other.
            order = list(range(n))
            rng.shuffle(order)
            rest = order[1:]
            a, b = rest[:len(rest) // 2], rest[len(rest) // 2:]
            cl.net.partition([(i, j) for i in a for j in b])
            self.hold(1.0, 3.0)
            cl.net.heal()
        elif kind == "disk-full":
            cl.fill_disk()
            self.hold(1.0, 3.0)
            cl.free_disk()
        cl.check_alive()
        self.hold(0.3, 1.0)


def wait_converged(cl, timeout=90.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        cl.check_alive()
        leader = cl.leader()
        if leader:
            try:
                commit = cl.status(leader)["commitIndex"]
                if all(cl.status(nm)["appliedIndex"] >= commit for nm in cl.names):
                    return leader
            except (OSError, RpcError, ConnectionError):
                pass
        time.sleep(0.2)
    views = []
    for nm in cl.names:
        try:
            views.append((nm, cl.status(nm)))
        except (OSError, RpcError, ConnectionError) as e:
            views.append((nm, repr(e)))
    raise AssertionError("the cluster did not converge within %.0f s: %s" % (timeout, views))


def list_on(cl, nm):
    c = Client(cl.api(nm), cl.pki, timeout=10.0)
    try:
        return c.call("list", {"kind": "pods", "stale": True})
    finally:
        c.close()


def call_retry(cl, method, params, timeout=60.0):
    deadline = time.time() + timeout
    while True:
        try:
            c = Client(cl.api(cl.leader() or cl.names[0]), cl.pki, timeout=5.0)
            try:
                return c.call(method, params)
            finally:
                c.close()
        except (OSError, ConnectionError, RpcError) as e:
            if time.time() > deadline:
                raise AssertionError("%s failed for %.0f s: %s" % (method, timeout, e))
            time.sleep(0.2)


def run(args, cl):
    rng = random.Random(args.seed)
    cl.setup()
    wait_converged(cl)
    rec = Recorder()
    keys = ["reg-%d" % k for k in range(args.keys)]
    for k in keys:
        o = call_retry(cl, "create", {"object": pod(k, 0)})
        rec.write_ok(o)
    start_rv = int(call_retry(cl, "list", {"kind": "pods"})["resourceVersion"])
    stop = threading.Event()
    workers = [Worker(t, cl, rec, keys, stop) for t in range(args.clients)]
    wstop = threading.Event()
    watchers = [Watcher(t, cl, start_rv, wstop) for t in range(args.watchers)]
    for th in workers + watchers:
        th.start()
    nem = Nemesis(cl, rng, args.disk)
    t0 = time.time()
    time.sleep(1.0)
    while (nem.count < args.faults) if args.faults else (time.time() - t0 < args.duration):
        nem.one()
        if nem.count % 50 == 0:
            print("faults=%d ops=%d elapsed=%.0fs" % (nem.count, len(rec.ops), time.time() - t0),
                  flush=True)
    cl.net.heal()
    time.sleep(1.0)
    stop.set()
    for th in workers:
        th.join(timeout=30)
    leader = wait_converged(cl)

    failures = []
    # Final linearizable reads of every register, part of the history.
    for k in keys:
        inv = now()
        o = call_retry(cl, "get", {"kind": "pods", "name": k})
        rec.op(k, "read", int(o["metadata"]["annotations"]["v"]), "-", inv, now(), "ok")
    final = call_retry(cl, "list", {"kind": "pods"})
    final_rv = int(final["resourceVersion"])
    leader = wait_converged(cl)

    # Lost writes and divergence.
    views = {nm: list_on(cl, nm) for nm in cl.names}
    lost = set()
    ref = None
    for nm, lst in views.items():
        objs = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in lst["items"]}
        missing = set(rec.acked) - set(objs)
        lost |= missing
        if missing:
            failures.append("%s lost acknowledged creates: %s" % (nm, sorted(missing)[:5]))
        phantom = set(objs) - set(rec.acked) - rec.maybe - set(keys)
        if phantom:
            failures.append("%s holds objects nobody wrote: %s" % (nm, sorted(phantom)[:5]))
        if ref is None:
            ref = (nm, objs)
        elif objs != ref[1]:
            diff = sorted(set(objs.items()) ^ set(ref[1].items()))[:5]
            failures.append("%s and %s disagree: %s" % (nm, ref[0], diff))

    # Linearizability of the registers.
    hist = os.path.join(cl.dir, "history.txt")
    with open(hist, "w") as f:
        for k in keys:
            f.write("init %s 0\n" % k)
        for (i, key, typ, a, b, inv, comp, st) in rec.ops:
            f.write("op %d %s %s %s %s %d %d %s\n" % (i, key, typ, a, b, inv, comp, st))
    r = subprocess.run([LINEARIZE, hist], capture_output=True, text=True, timeout=1800)
    print(r.stdout, end="")
    if r.stderr:
        print(r.stderr, end="")
    lin = "yes" if r.returncode == 0 else ("no" if r.returncode == 1 else "unknown")
    if r.returncode != 0:
        failures.append("register histories are not linearizable (%s)" % lin)
        if not os.environ.get("AEP_KEEP_TEST_DIR"):
            kept = tempfile.mkdtemp(prefix="aep-faults-history-")
            shutil.copy(hist, kept)
            print("history kept in", kept)

    # Watches: each catches up to the final revision, then every
    # acknowledged write in each span was seen once, in order.
    for w in watchers:
        w.target = final_rv
    wstop.set()
    for w in watchers:
        w.join(timeout=120)
        if w.is_alive() or w.last < final_rv:
            failures.append("watcher %d stuck at revision %d < %d" % (w.t, w.last, final_rv))
        failures += ["watcher %d: %s" % (w.t, v) for v in w.violations[:5]]
        for start, evs in w.spans:
            end = evs[-1][0] if evs else start
            seen = {rv: name for rv, _, name in evs}
            for rv, name in rec.writes.items():
                if start < rv <= end and seen.get(rv) != name:
                    failures.append("watcher %d missed %s at revision %d (span %d..%d)" % (
                        w.t, name, rv, start, end))
                    break

    bad = [c for c in cl.crashes]
    for nm, code, tail in bad:
        failures.append("master %s exited by itself with status %d; log ends:\n%s" % (
            nm, code, tail[-1500:]))
    if rec.unexpected:
        failures.append("unexpected errors: %s" % sorted(set(rec.unexpected))[:5])

    print("faults=%d ops=%d (ok=%d fail=%d unknown=%d) creates=%d lost=%d linearizable=%s "
          "watchers=%d resumes=%d relists=%d kinds=%s" % (
              nem.count, len(rec.ops), rec.counts["ok"], rec.counts["fail"],
              rec.counts["unknown"], len(rec.acked), len(lost), lin, len(watchers),
              sum(w.resumes for w in watchers), sum(w.relists for w in watchers),
              ",".join("%s:%d" % kv for kv in sorted(nem.kinds.items()))), flush=True)
    if len(rec.acked) < 10 or rec.counts["ok"] < 50:
        failures.append("too little progress: %d creates, %d ok register ops" % (
            len(rec.acked), rec.counts["ok"]))
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--masters", type=int, default=3)
    ap.add_argument("--duration", type=float, default=35.0)
    ap.add_argument("--faults", type=int, default=0, help="run until this many faults")
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--watchers", type=int, default=2)
    ap.add_argument("--keys", type=int, default=4)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--no-disk", dest="disk", action="store_false")
    args = ap.parse_args()
    print("seed=%d masters=%d" % (args.seed, args.masters), flush=True)

    def on_signal(signum, frame):
        raise SystemExit("stopped by signal %d" % signum)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    cl = Cluster(args.masters, args.disk)
    failures = []
    try:
        failures = run(args, cl)
    finally:
        bad = cl.close()
        failures += ["master %s %s at shutdown" % b for b in bad]
    for f in failures:
        print("FAIL:", f)
    print("PASS" if not failures else "FAILED", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
