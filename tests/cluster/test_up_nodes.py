"""`aep up --masters 3 --nodes 2`: a local cluster with two node hosts
(network namespaces with `aep node` agents running pods in crun), used the
way its printed text says.

  * start on a fresh directory: the message names both nodes; both Nodes
    are Ready with their zone labels; rc/hello's three pods are Running,
    on both nodes; the printed `wget` fetches "hello from aep" from this
    machine, the printed `aep exec ... wget` fetches it from a pod on the
    other node, `aep get pods -o wide` and the `nsenter` line work;
    `aep scale rc/hello --replicas=5` gives five pods that all serve, then
    2 gives two (the others' containers gone from the nodes);
  * Ctrl-C (SIGINT): exit code 0, and nothing is left: no namespace, link,
    route, process, container, cgroup or mount of the cluster;
  * again on the same directory: the cluster comes back (rc/hello already
    there, its two pods serve);
  * kill -9 of `aep up`: its masters and agents end with it, the containers
    and namespaces stay; the next `aep up` on the directory removes them
    and starts cleanly (new containers), and its Ctrl-C leaves nothing;
  * Ctrl-C while the nodes start: exit code 130, nothing left;
  * the directory was first made by `aep up` without nodes (certificates
    for 127.0.0.1 only): the masters' certificates are issued again with
    the bridge address; a run without nodes afterwards serves the CLI on
    127.0.0.1 again.

The test's own clean-up removes everything the cluster may have made, also
when it fails. Needs root: exits 77 (skipped) otherwise."""
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import aeptest  # noqa: E402
from aeptest import AEP  # noqa: E402
from nodehost import sh, wait_for  # noqa: E402

NODES = ("n1", "n2")


class Up:
    """One `aep up` process; its output is collected by a thread."""

    def __init__(self, d, base, nodes=2):
        self.lines = []
        self.p = subprocess.Popen([AEP, "up", "--masters", "3", "--nodes", str(nodes), "--dir",
                                   d, "--base-port", str(base)], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line)

    def text(self):
        return "".join(self.lines)

    def wait_text(self, what, timeout):
        return wait_for("aep up prints %r; output:\n%s" % (what, self.text()),
                        lambda: what in self.text() or (self.p.poll() is not None and
                                                         self._dead(what)), timeout)

    def _dead(self, what):
        self.t.join(5)
        if what in self.text():
            return True
        raise AssertionError("aep up exited with %s before printing %r:\n%s" % (
            self.p.returncode, what, self.text()))

    def stop(self, sig=signal.SIGINT, timeout=60):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.t.join(5)
        return self.p.returncode

    def commands(self):
        """The commands under "Use it from another terminal:" (comments
        dropped), and the AEP_CONFIG it exports."""
        out = self.text().split("Use it from another terminal:\n", 1)[1]
        cmds, config = [], None
        for line in out.split("\n\n", 1)[0].splitlines():
            line = line.split("  # ", 1)[0].strip()
            if line.startswith("export AEP_CONFIG="):
                config = line.split("=", 1)[1]
            elif line:
                cmds.append(line)
        return cmds, config


def command(cmds, word):
    found = [c for c in cmds if word in c]
    assert found, "no printed command with %r in %r" % (word, cmds)
    return shlex.split(found[0])


# ---- what the cluster makes, and its removal ---------------------------------------------


def names(base):
    return {"netns": ["aep-%d-%s" % (base, n) for n in NODES],
            "links": ["aep%db" % base] + ["aep%d%s" % (base, n) for n in NODES]}


def netns_pids(ns):
    try:
        st = os.stat("/run/netns/" + ns)
    except OSError:
        return []
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            s = os.stat("/proc/%s/ns/net" % p)
        except OSError:
            continue
        if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino):
            pids.append(int(p))
    return pids


def containers(d):
    """{node: [container id]} of the OCI runtime's state under each node."""
    out = {}
    for n in NODES:
        oci = os.path.join(d, n, "oci")
        out[n] = sorted(e for e in os.listdir(oci)) if os.path.isdir(oci) else []
    return out


def cgroups_of(cid):
    return [c for c in os.listdir("/sys/fs/cgroup")
            if os.path.isdir(os.path.join("/sys/fs/cgroup", c, cid))]


def processes_of(d):
    r = sh("pgrep", "-f", d, check=False)
    return [int(p) for p in r.stdout.split() if int(p) != os.getpid()]


def argv_of(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def mounts_under(d):
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(d + "/")]


def leftovers(d, base, cids=()):
    """What of the cluster is still there (empty: nothing)."""
    n = names(base)
    left = []
    nets = sh("ip", "netns", "list").stdout
    left += ["netns " + ns for ns in n["netns"] if ns in nets.split()]
    links = sh("ip", "-o", "link").stdout
    left += ["link " + ln for ln in n["links"] if (" %s:" % ln) in links or
             (" %s@" % ln) in links]
    left += ["route " + r for r in sh("ip", "route").stdout.splitlines() if "aep%db" % base in r]
    left += ["process %d" % p for p in processes_of(d)]
    left += ["container %s/%s" % (node, c) for node, cs in containers(d).items() for c in cs]
    left += ["cgroup %s/%s" % (c, cid) for cid in cids for c in cgroups_of(cid)]
    left += ["mount " + m for m in mounts_under(d)]
    return left


def cleanup(d, base):
    """Remove whatever the cluster left, whatever state the test left it in."""
    procs = processes_of(d)
    for p in procs:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    for n in NODES:
        oci = os.path.join(d, n, "oci")
        ids = os.listdir(oci) if os.path.isdir(oci) else []
        for cid in ids:
            for c in cgroups_of(cid):
                try:
                    with open(os.path.join("/sys/fs/cgroup", c, cid, "cgroup.procs")) as f:
                        for pid in f.read().split():
                            os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.2)
        for cid in ids:
            sh("crun", "--root", oci, "delete", "--force", cid, check=False)
            for c in cgroups_of(cid):
                try:
                    os.rmdir(os.path.join("/sys/fs/cgroup", c, cid))
                except OSError:
                    pass
    nm = names(base)
    for ns in nm["netns"]:
        for p in netns_pids(ns):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        sh("ip", "netns", "del", ns, check=False)
    for ln in nm["links"]:
        sh("ip", "link", "del", ln, check=False)
    for m in sorted(mounts_under(d), key=len, reverse=True):
        sh("umount", "-l", m, check=False)
    shutil.rmtree(d, ignore_errors=True)


# ---- reading the cluster ------------------------------------------------------------------


def aep(config, *args, check=True, timeout=60):
    env = dict(os.environ, AEP_CONFIG=config)
    r = subprocess.run([AEP] + list(args), env=env, capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("aep %s: %d: %s%s" % (" ".join(args), r.returncode, r.stdout,
                                                    r.stderr))
    return r


def run_printed(config, argv, timeout=30):
    env = dict(os.environ, AEP_CONFIG=config)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


def pods(config):
    out = aep(config, "get", "pods", "-l", "app=hello", "-o", "json").stdout.strip()
    return json.loads(out)["items"] if out else []


def serving(config, want):
    """The rc's pods when there are exactly @want, all Running, each
    answering "hello from aep" from this machine; else None."""
    ps = pods(config)
    if len(ps) != want:
        return None
    for p in ps:
        st = p.get("status", {})
        if st.get("phase") != "Running" or not st.get("podIP"):
            return None
        r = subprocess.run(["wget", "-qO-", "http://%s/" % st["podIP"]], capture_output=True,
                           text=True, timeout=10)
        if r.stdout != "hello from aep\n":
            return None
    return ps


def start_time(pid):
    """A process's start time (clock ticks since boot), None when it is
    gone or a zombie (killed, its new parent has not reaped it yet): a pid
    together with it names one process even if the pid is reused."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def container_pids(d):
    """{container id: (pid, start time)} of the containers on the nodes."""
    out = {}
    for n in NODES:
        oci = os.path.join(d, n, "oci")
        r = sh("crun", "--root", oci, "list", "-f", "json", check=False)
        for c in json.loads(r.stdout or "[]") if r.returncode == 0 else []:
            out[c["id"]] = (c["pid"], start_time(c["pid"]))
    return out


# ---- the test -----------------------------------------------------------------------------


def test_up_nodes():
    d = tempfile.mkdtemp(prefix="aep-up-nodes-")
    base = aeptest.free_port_block(3)
    up = None
    cids = set()
    config = os.path.join(d, "admin.conf")
    try:
        # a directory first made without nodes: its masters' certificates
        # name 127.0.0.1 only
        up = Up(d, base, nodes=0)
        up.wait_text("Ctrl-C", 60)
        assert "api 127.0.0.1:%d" % base in up.text(), up.text()
        aep(config, "get", "nodes")
        assert up.stop() == 0, up.text()

        # with nodes
        t0 = time.time()
        up = Up(d, base)
        up.wait_text("Ctrl-C", 180)
        out = up.text()
        print("aep up took %.1f s; it printed:\n%s" % (time.time() - t0, out), flush=True)
        assert "2 nodes" in out and "rc/hello (created from" in out, out
        assert "issued m1's certificate again" in out, out
        cmds, printed_config = up.commands()
        assert printed_config == config, printed_config

        nodes = json.loads(aep(config, "get", "nodes", "-o", "json").stdout)["items"]
        assert sorted(n["metadata"]["name"] for n in nodes) == list(NODES), nodes
        for n in nodes:
            ready = [c for c in n["status"]["conditions"] if c["type"] == "Ready"]
            assert ready and ready[0]["status"] == "True", n
            assert n["metadata"]["labels"] == {
                "region": "r1", "zone": "z" + n["metadata"]["name"][1:]}, n["metadata"]
        ps = pods(config)
        assert len(ps) == 3 and all(p["status"]["phase"] == "Running" for p in ps), ps
        on = {p["spec"]["nodeName"] for p in ps}
        assert on == set(NODES), "pods not spread over both nodes: %s" % on
        for p in ps:
            cids.add(p["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1])

        r = run_printed(config, command(cmds, "wget -qO- http://"))
        assert r.stdout == "hello from aep\n", r
        r = run_printed(config, command(cmds, " exec "))
        assert r.returncode == 0 and r.stdout == "hello from aep\n", r
        exec_line = [c for c in cmds if " exec " in c][0]
        assert "across nodes" in out.split(exec_line, 1)[1].split("\n", 1)[0], out
        r = run_printed(config, command(cmds, "get pods -o wide"))
        assert r.returncode == 0 and r.stdout.count("Running") == 3, r
        r = run_printed(config, command(cmds, "nsenter"))
        assert r.returncode == 0 and "inet 10." in r.stdout, r
        print("printed commands work: wget from the host and across nodes, get, nsenter",
              flush=True)

        # scale up and down
        r = run_printed(config, command(cmds, "scale rc/hello --replicas=5"))
        assert r.returncode == 0, r
        ps = wait_for("5 pods serving", lambda: serving(config, 5), 60)
        for p in ps:
            cids.add(p["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1])
        aep(config, "scale", "rc/hello", "--replicas=2")
        wait_for("2 pods serving", lambda: serving(config, 2), 60)
        wait_for("2 containers on the nodes",
                 lambda: sum(len(c) for c in containers(d).values()) == 2, 30)
        print("scaled to 5 and to 2: %s" % containers(d), flush=True)

        # Ctrl-C: nothing left
        t0 = time.time()
        rc = up.stop()
        assert rc == 0, (rc, up.text())
        assert up.text().rstrip().endswith("stopped"), up.text()
        left = leftovers(d, base, cids)
        assert not left, left
        print("Ctrl-C: exit 0 after %.1f s, nothing left" % (time.time() - t0), flush=True)

        # again on the same directory
        up = Up(d, base)
        up.wait_text("Ctrl-C", 180)
        assert "rc/hello (already there" in up.text(), up.text()
        ps = wait_for("2 pods serving", lambda: serving(config, 2), 30)
        before = container_pids(d)
        assert len(before) == 2, before
        print("second run: %s" % sorted(p["metadata"]["name"] for p in ps), flush=True)

        # kill -9: masters and agents end with it, containers stay
        up.stop(signal.SIGKILL)
        wait_for("masters and agents gone", lambda: not [
            a for a in map(argv_of, processes_of(d)) if a[1:2] in (["master"], ["node"])], 20)
        left = leftovers(d, base)
        assert any(x.startswith("netns") for x in left) and \
            any(x.startswith("container") for x in left), left
        print("kill -9: %d things left, e.g. %s" % (len(left), left[:3]), flush=True)

        # the next run cleans up and starts
        up = Up(d, base)
        up.wait_text("Ctrl-C", 180)
        wait_for("2 pods serving", lambda: serving(config, 2), 30)
        after = container_pids(d)
        assert len(after) == 2, after
        for cid, (pid, started) in before.items():
            assert after.get(cid, (0, 0))[0] != pid, "container %s kept pid %d" % (cid, pid)
            assert start_time(pid) != started, "old container process %d lives" % pid
        for c in after:
            cids.add(c)
        rc = up.stop()
        assert rc == 0, (rc, up.text())
        left = leftovers(d, base, cids)
        assert not left, left
        print("after kill -9, the next run started with new containers; its Ctrl-C left "
              "nothing", flush=True)

        # Ctrl-C while the nodes start
        up = Up(d, base)
        up.wait_text("starting 2 nodes", 120)
        rc = up.stop()
        assert rc == 130, (rc, up.text())
        left = leftovers(d, base, cids)
        assert not left, left
        print("Ctrl-C during start-up: exit 130, nothing left", flush=True)

        # and without nodes again: the CLI follows the masters back to
        # 127.0.0.1
        up = Up(d, base, nodes=0)
        up.wait_text("Ctrl-C", 60)
        assert "warning" not in up.text(), up.text()
        aep(config, "get", "rc", "hello")
        assert up.stop() == 0, up.text()
        assert not leftovers(d, base, cids), leftovers(d, base, cids)
        up = None
    finally:
        if up is not None:
            up.stop()
            print("aep up output:\n" + up.text())
            for name in ("n1", "n2", "m1"):
                try:
                    with open(os.path.join(d, name + ".log"), errors="replace") as f:
                        print("---- %s.log (end):\n%s" % (name, f.read()[-3000:]))
                except OSError:
                    pass
        cleanup(d, base)
    assert not leftovers(d, base), leftovers(d, base)


def on_sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def main():
    if os.geteuid() != 0:
        print("SKIP: aep up --nodes needs root")
        sys.exit(77)
    for tool in ("crun", "ip", "nsenter", "wget"):
        if shutil.which(tool) is None:
            print("SKIP: %s is not installed" % tool)
            sys.exit(77)
    # a SIGTERM (ctest's timeout) unwinds like Ctrl-C, through the clean-up
    signal.signal(signal.SIGTERM, on_sigterm)
    aeptest.run([test_up_nodes])


if __name__ == "__main__":
    main()
