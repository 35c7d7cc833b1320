"""Node hosts for AEP's cluster tests: each one a network namespace of the
test's own, joined to the host by a veth pair, with a node directory and
an `aep node` agent running in it (in a private mount namespace), and the
masters listening on a host end of those veths.

  * NodeHost(name) picks names and a /30 that no other node host of this
    process (nor, as far as `ip -o addr` shows, of any other process)
    uses: namespace aepT-PID-I, links aepTPIDIh (host end, 10.99.X.Y+1) and
    aepTPIDIn (node end, 10.99.X.Y+2). Tests running in parallel therefore
    do not collide.
  * The masters listen on one address (HostCluster(host_ip)): the host end
    of the first node host. The others reach it through a /32 route in
    their namespace to their own host end; the host answers for its local
    address whatever link the packet came in on. Every packet stays between
    the host and the test's namespaces. Destroy the first node host last.
  * NodeHost.destroy() removes everything the node host made, whatever
    state the test left it in: the agent, every container (crun kill, then
    the processes of its cgroups), every process in the namespace (the
    containers' monitors, the runtime's calls), the namespace with the
    node's bridge and pod veths, the host link, the node directory.

Needs root; tests check that first (exit 77)."""
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time

from aeptest import AEP, Cluster

_TAG = "%x" % os.getpid()  # at most 6 hex digits (pid_max is 2^22)
_count = 0
_subnets = set()


def sh(*args, check=True, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (" ".join(args), r.returncode, r.stdout,
                                                      r.stderr))
    return r


def wait_for(what, fn, timeout, interval=0.05):
    """Call @fn until it returns something true (an AssertionError counts
    as false); return that, or fail after @timeout seconds with the last
    result."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
        except AssertionError as e:
            last = e
            last_ok = False
        else:
            last_ok = bool(last)
        if last_ok:
            return last
        time.sleep(interval)
    raise AssertionError("%s: not within %.0f s (last: %r)" % (what, timeout, last))


def get(cl, kind, name):
    """The object as `aep get -o json` shows it, or None."""
    r = cl.aep("get", kind, name, "-o", "json", check=False)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)


def ready_condition(node):
    for c in (node or {}).get("status", {}).get("conditions", []):
        if c.get("type") == "Ready":
            return c
    return None


def node_ready(cl, name):
    """The Node if its Ready condition is True, else None."""
    n = get(cl, "node", name)
    c = ready_condition(n)
    return n if c is not None and c.get("status") == "True" else None


def HostCluster(host, n=3, extra_args=None):
    """aeptest.Cluster with the API on @host (the host end of a node host's
    veth) instead of 127.0.0.1; Raft and HTTP stay on 127.0.0.1."""
    return Cluster(n, extra_args=extra_args, host=host)


def _pick_subnet():
    """A /30 in 10.99.0.0/16 (its base address) that this process has not
    handed out and that no link of the host carries."""
    used = sh("ip", "-o", "-4", "addr", check=False).stdout
    for _ in range(1000):
        base = random.randrange(1, 1 << 14) * 4
        net = "10.99.%d.%d" % (base >> 8, base & 255)
        host = "10.99.%d.%d" % (base >> 8, (base & 255) + 1)
        if base in _subnets or (" %s/" % host) in used:
            continue
        _subnets.add(base)
        return net, host, "10.99.%d.%d" % (base >> 8, (base & 255) + 2)
    raise RuntimeError("no free /30 in 10.99.0.0/16")


class NodeHost:
    """One node host: call up() first, destroy() at the end (always)."""

    def __init__(self, name):
        global _count
        _count += 1
        self.name = name  # the Node's name
        self.netns = "aepT-%s-%d" % (_TAG, _count)
        self.host_link = "aepT%s%dh" % (_TAG, _count)
        self.node_link = "aepT%s%dn" % (_TAG, _count)
        assert len(self.host_link) <= 15, self.host_link
        _, self.host_ip, self.node_ip = _pick_subnet()
        self.dir = tempfile.mkdtemp(prefix="aep-node-")
        self.uids = []  # pods whose cgroup leftovers destroy() sweeps
        self.agent = None
        self.made = False

    def up(self, api_ip=None):
        """The namespace and the veth pair; with @api_ip (the masters' address
        on another node host's link), a /32 route to it through this host's
        own link."""
        self.made = True
        sh("ip", "netns", "add", self.netns)
        sh("ip", "link", "add", self.host_link, "type", "veth", "peer", "name", self.node_link,
           "netns", self.netns)
        sh("ip", "addr", "add", self.host_ip + "/30", "dev", self.host_link)
        sh("ip", "link", "set", self.host_link, "up")
        sh("ip", "-n", self.netns, "addr", "add", self.node_ip + "/30", "dev", self.node_link)
        sh("ip", "-n", self.netns, "link", "set", self.node_link, "up")
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        if api_ip is not None and api_ip != self.host_ip:
            sh("ip", "-n", self.netns, "route", "add", api_ip + "/32", "via", self.host_ip,
               "dev", self.node_link)

    def load_image(self, name, tar):
        sh(AEP, "node", "image", "load", name, tar, "--dir", self.dir)

    def start_agent(self, cl, token, labels="region=r1,zone=z1"):
        if self.agent is None:
            self.agent = Agent(cl, self, token, labels)
        self.agent.start()
        return self.agent

    def oci_root(self):
        return os.path.join(self.dir, "oci")

    def containers(self):
        """The ids of the containers crun knows on this node."""
        if not os.path.isdir(self.oci_root()):
            return []
        r = sh("crun", "--root", self.oci_root(), "list", "-q", check=False)
        return r.stdout.split()

    def running_containers(self):
        out = []
        for cid in self.containers():
            r = sh("crun", "--root", self.oci_root(), "state", cid, check=False)
            try:
                if json.loads(r.stdout).get("status") == "running":
                    out.append(cid)
            except ValueError:
                pass
        return out

    def pids(self):
        """Processes in the node's network namespace (the agent, the
        containers' monitors and the OCI runtime's calls)."""
        try:
            ino = os.stat("/run/netns/" + self.netns).st_ino
        except OSError:
            return []
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                if os.stat("/proc/%s/ns/net" % d).st_ino == ino:
                    pids.append(int(d))
            except OSError:
                pass
        return pids

    def _cgroup_dirs(self, ids):
        """/sys/fs/cgroup/CONTROLLER/D for every D that names one of @ids."""
        out = []
        try:
            ctrls = os.listdir("/sys/fs/cgroup")
        except OSError:
            return out
        for c in ctrls:
            try:
                for d in os.listdir(os.path.join("/sys/fs/cgroup", c)):
                    if any(i in d for i in ids):
                        out.append(os.path.join("/sys/fs/cgroup", c, d))
            except OSError:
                pass
        return out

    def kill_all(self):
        """kill -9 everything the node host runs: the agent, the containers
        (their init: each is its pid namespace's, so the rest go with it;
        then whatever their cgroups still hold) and every process in the
        namespace. The namespace, links and directory stay."""
        if self.agent is not None:
            self.agent.kill9()
        ids = self.containers()
        for cid in ids:
            r = sh("crun", "--root", self.oci_root(), "state", cid, check=False)
            try:
                pid = int(json.loads(r.stdout).get("pid", 0))
            except ValueError:
                pid = 0
            if pid > 0:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for _ in range(100):
            left = self.pids()
            for d in self._cgroup_dirs(ids + self.uids):
                try:
                    with open(os.path.join(d, "cgroup.procs")) as f:
                        left += [int(x) for x in f.read().split()]
                except (OSError, ValueError):
                    pass
            if not left:
                return
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.05)
        raise AssertionError("node host %s: processes left after kill -9: %s" % (
            self.name, left))

    def destroy(self):
        """Everything, whatever state the test left it in."""
        ids = self.containers()
        try:
            self.kill_all()
        finally:
            for cid in ids:
                sh("crun", "--root", self.oci_root(), "delete", "--force", cid, check=False)
            # crun's leftovers of the containers' cgroups (rmdir: only empty ones)
            for d in self._cgroup_dirs(ids + self.uids):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            if self.made:
                # the bridge and pod veths go with the namespace
                sh("ip", "netns", "del", self.netns, check=False)
                sh("ip", "link", "del", self.host_link, check=False)
            # mounts under the node directory live in the agent's mount
            # namespace; should one be visible here, let it go before
            # removing the directory
            try:
                with open("/proc/self/mountinfo") as f:
                    mps = [line.split()[4] for line in f if self.dir in line]
                for mp in sorted(mps, key=len, reverse=True):
                    sh("umount", "-l", mp, check=False)
            except OSError:
                pass
            shutil.rmtree(self.dir, ignore_errors=True)

    def gone(self):
        """None when nothing of the node host is left, else what is."""
        if self.netns in sh("ip", "netns", "list").stdout.split():
            return "namespace " + self.netns
        if sh("ip", "link", "show", "dev", self.host_link, check=False).returncode == 0:
            return "link " + self.host_link
        if os.path.exists(self.dir):
            return "directory " + self.dir
        return None


class Agent:
    """`aep node` in a node host's network namespace, in a private mount
    namespace (unshare -m). nsenter and unshare exec, so the pid is the
    agent's. (`ip netns exec` is not used: it remounts /sys, which takes
    away the cgroup mounts crun needs.)"""

    def __init__(self, cl, host, token, labels="region=r1,zone=z1"):
        self.cl = cl
        self.host = host
        self.dir = host.dir
        self.token = token
        self.labels = labels
        self.log_path = os.path.join(cl.dir, "agent-%s.log" % host.name)
        self.proc = None

    def start(self):
        servers = ",".join(self.cl.api(nm) for nm in self.cl.names)
        args = ["nsenter", "--net=/run/netns/" + self.host.netns, "--",
                "unshare", "-m", "--propagation", "private",
                AEP, "node", "--name", self.host.name, "--server", servers,
                "--token", self.token, "--dir", self.dir,
                "--ca", os.path.join(self.cl.pki, "ca.crt"),
                "--labels", self.labels, "--runtime", "crun", "--bridge", "aepbr0"]
        log = open(self.log_path, "ab")
        log.write(b"---- start\n")
        log.flush()
        self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        log.close()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def kill9(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self):
        """SIGTERM; the agent must exit 0 (containers stay)."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "timeout"
        self.proc = None
        return rc


def print_logs(cl, hosts):
    """The ends of the agents' and masters' logs (for a failed test)."""
    for h in hosts:
        if h.agent is not None:
            print("---- agent %s log (end):\n%s" % (h.name, h.agent.log()[-6000:]))
    if cl is not None:
        for nm in cl.names:
            try:
                with open(os.path.join(cl.dir, nm + ".log"), errors="replace") as lf:
                    print("---- %s log (end):\n%s" % (nm, lf.read()[-3000:]))
            except OSError:
                pass


def check_root(what):
    """Exit 77 (skipped) without root or the tools node hosts need; make
    SIGTERM (ctest's timeout) unwind like Ctrl-C, through the clean-up."""
    import sys
    if os.geteuid() != 0:
        print("SKIP: %s needs root" % what)
        sys.exit(77)
    for tool in ("crun", "ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            print("SKIP: %s is not installed" % tool)
            sys.exit(77)

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, on_sigterm)
