"""The node agent (`aep node`, node/agent.c) against real masters and real
crun, on a node host made of a network namespace and a private mount
namespace of the test's own.

  * three masters listen on the host end of a veth pair (10.99.X.1/30);
    the agent runs in the namespace aepT-TAG behind the other end
    (10.99.X.2/30), so that every packet stays between the two;
  * the agent joins with a bootstrap token (no certificate yet), registers
    and gets a pod subnet; pods bound to it (spec.nodeName) run in crun:
    an httpd is Running with a podIP within 10 s, a second pod fetches its
    page with busybox wget through `aep exec`, `aep logs` and `aep logs -f`
    show a container's output, `sh -c 'exit 3'` with restartPolicy Never
    ends Failed with exit code 3;
  * kill -9 of the agent and a new one on the same directory: the httpd
    keeps its container id, its restart count 0 and its start time, and
    still serves;
  * kill -9 of the leader: the agent's node.register reaches the new
    leader within 2 s of the kill (the new leader's log says "session
    from"), and the new session works (a deleted pod is killed).

Everything the test makes (processes, containers, the namespace with the
node's bridge and veths, the host veth, directories) is removed at the
end, also on failure. Needs root: exits 77 (skipped) otherwise."""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import aeptest  # noqa: E402
from aeptest import AEP, Cluster  # noqa: E402

TAG = "%04x" % (os.getpid() & 0xffff)
NETNS = "aepT-" + TAG
HOST_LINK = "aepT%sh" % TAG
NODE_LINK = "aepT%sn" % TAG
SUBNET = random.randrange(1, 63) * 4  # 10.99.0.SUBNET/30
HOST_IP = "10.99.0.%d" % (SUBNET + 1)
NODE_IP = "10.99.0.%d" % (SUBNET + 2)
NODE = "n1"


def sh(*args, check=True, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (" ".join(args), r.returncode, r.stdout,
                                                      r.stderr))
    return r


class HostCluster(Cluster):
    """aeptest.Cluster with the API on @host (the host end of the test's
    veth) instead of 127.0.0.1; Raft and HTTP stay on 127.0.0.1."""

    def __init__(self, host, n=3):
        self.host = host
        self.n = n
        self.dir = tempfile.mkdtemp(prefix="aep-test-")
        self.base = aeptest.free_port_block(n)
        self.names = ["m%d" % (i + 1) for i in range(n)]
        self.procs = {}
        self.snapshot_threshold = None
        self.snapshot_trailing = None
        self.http = True
        self.extra_args = []
        masters = ",".join("%s=%s" % (nm, self.api(nm)) for nm in self.names)
        subprocess.run([AEP, "admin", "init", "--dir", self.dir, "--masters", masters],
                       check=True, stdout=subprocess.DEVNULL)
        self.pki = os.path.join(self.dir, "pki")
        self.config = os.path.join(self.dir, "admin.conf")
        for nm in self.names:
            self.start(nm)

    def api(self, name):
        return "%s:%d" % (self.host, self.base + self.index(name))


class Agent:
    """`aep node` in the test's network namespace, in a private mount
    namespace (unshare -m). nsenter and unshare exec, so the pid is the
    agent's. (`ip netns exec` is not used: it remounts /sys, which takes
    away the cgroup mounts crun needs.)"""

    def __init__(self, cl, ndir, token):
        self.cl = cl
        self.dir = ndir
        self.token = token
        self.log_path = os.path.join(cl.dir, "agent.log")
        self.proc = None

    def start(self):
        servers = ",".join(self.cl.api(nm) for nm in self.cl.names)
        args = ["nsenter", "--net=/run/netns/" + NETNS, "--",
                "unshare", "-m", "--propagation", "private",
                AEP, "node", "--name", NODE, "--server", servers, "--token", self.token,
                "--dir", self.dir, "--ca", os.path.join(self.cl.pki, "ca.crt"),
                "--labels", "region=r1,zone=z1", "--runtime", "crun", "--bridge", "aepbr0"]
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


def wait_for(what, fn, timeout, interval=0.05):
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
    r = cl.aep("get", kind, name, "-o", "json", check=False)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)


def create(cl, obj):
    cl.aep("create", "-f", "-", input=json.dumps(obj))


def pod(name, command, restart="Always"):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": NODE, "restartPolicy": restart,
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox", "command": command}]}}


def phase(cl, name, want):
    p = get(cl, "pod", name)
    st = (p or {}).get("status", {})
    return p if st.get("phase") == want else None


def node_ready(cl):
    n = get(cl, "node", NODE)
    if n is None:
        return None
    for c in n.get("status", {}).get("conditions", []):
        if c.get("type") == "Ready" and c.get("status") == "True":
            return n
    return None


# ---- set-up and clean-up ----------------------------------------------------------------


def net_up():
    sh("ip", "netns", "add", NETNS)
    sh("ip", "link", "add", HOST_LINK, "type", "veth", "peer", "name", NODE_LINK,
       "netns", NETNS)
    sh("ip", "addr", "add", HOST_IP + "/30", "dev", HOST_LINK)
    sh("ip", "link", "set", HOST_LINK, "up")
    sh("ip", "-n", NETNS, "addr", "add", NODE_IP + "/30", "dev", NODE_LINK)
    sh("ip", "-n", NETNS, "link", "set", NODE_LINK, "up")
    sh("ip", "-n", NETNS, "link", "set", "lo", "up")


def netns_pids():
    """Processes in the test's network namespace (the agent, the
    containers' monitors and the OCI runtime's calls)."""
    try:
        ino = os.stat("/run/netns/" + NETNS).st_ino
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


def cleanup(cl, agent, ndir, uids):
    """Everything, whatever state the test left it in."""
    if agent is not None:
        agent.kill9()
    oci = os.path.join(ndir, "oci")
    if os.path.isdir(oci):
        r = sh("crun", "--root", oci, "list", "-q", check=False)
        for cid in r.stdout.split():
            sh("crun", "--root", oci, "kill", cid, "KILL", check=False)
        time.sleep(0.2)
        for cid in r.stdout.split():
            sh("crun", "--root", oci, "delete", "--force", cid, check=False)
    for pid in netns_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    # crun's leftovers of our containers' cgroups (rmdir: only empty ones)
    for uid in uids:
        for base in ("/sys/fs/cgroup",):
            try:
                ctrls = os.listdir(base)
            except OSError:
                continue
            for c in ctrls:
                try:
                    for d in os.listdir(os.path.join(base, c)):
                        if uid in d:
                            try:
                                os.rmdir(os.path.join(base, c, d))
                            except OSError:
                                pass
                except OSError:
                    pass
    sh("ip", "netns", "del", NETNS, check=False)  # the bridge and pod veths with it
    sh("ip", "link", "del", HOST_LINK, check=False)
    # mounts under the node directory live in the agent's mount namespace;
    # should one be visible here, let it go before removing the directory
    try:
        with open("/proc/self/mountinfo") as f:
            mps = [line.split()[4] for line in f if ndir in line]
        for mp in sorted(mps, key=len, reverse=True):
            sh("umount", "-l", mp, check=False)
    except OSError:
        pass
    shutil.rmtree(ndir, ignore_errors=True)


# ---- the test ----------------------------------------------------------------------------


def test_node_agent():
    cl = agent = None
    ndir = tempfile.mkdtemp(prefix="aep-node-")
    uids = []
    ok = False
    try:
        net_up()
        cl = HostCluster(HOST_IP)
        cl.wait_leader()
        token = cl.aep("admin", "token", "create", "--description", "test_node_agent").stdout
        token = token.strip()
        tar = os.path.join(cl.dir, "busybox.tar")
        sh(AEP, "node", "image", "build-busybox", tar)
        sh(AEP, "node", "image", "load", "busybox", tar, "--dir", ndir)

        # join, register
        agent = Agent(cl, ndir, token)
        agent.start()
        n = wait_for("Node n1 Ready", lambda: node_ready(cl), 30)
        assert os.path.exists(os.path.join(ndir, "pki", "node.crt")), agent.log()
        mode = os.stat(os.path.join(ndir, "pki", "node.key")).st_mode & 0o777
        assert mode == 0o600, oct(mode)
        cidr = n["spec"].get("podCIDR")
        assert cidr, n
        assert n["metadata"]["labels"] == {"region": "r1", "zone": "z1"}, n["metadata"]
        addrs = {a["type"]: a["address"] for a in n["status"]["addresses"]}
        assert addrs.get("InternalIP") == NODE_IP, addrs
        assert n["status"]["capacity"]["pods"] == "110", n["status"]
        assert n["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("crun://"), n
        print("node n1 registered: podCIDR %s, capacity %s" % (cidr, n["status"]["capacity"]),
              flush=True)

        # an httpd: Running with a podIP within 10 s
        t0 = time.time()
        create(cl, pod("web", ["httpd", "-f", "-p", "80", "-h", "/www"]))
        web = wait_for("web Running", lambda: (lambda p: p if p and p["status"].get("podIP")
                                               else None)(phase(cl, "web", "Running")), 10)
        print("web Running with podIP %s after %.2f s" % (web["status"]["podIP"],
                                                          time.time() - t0), flush=True)
        uids.append(web["metadata"]["uid"])
        ip = web["status"]["podIP"]
        assert web["status"].get("hostIP") == NODE_IP, web["status"]
        net = cidr.split("/")[0].rsplit(".", 1)[0] + "."
        assert ip.startswith(net), (ip, cidr)
        wcs = web["status"]["containerStatuses"][0]

        # a second pod fetches the page
        create(cl, pod("client", ["sh", "-c", "echo client started; i=0; "
                                  "while true; do echo tick $i; i=$((i+1)); sleep 1; done"]))
        client = wait_for("client Running", lambda: phase(cl, "client", "Running"), 15)
        uids.append(client["metadata"]["uid"])
        r = cl.aep("exec", "client", "--", "wget", "-q", "-O", "-", "http://%s/" % ip)
        assert r.stdout == "hello from aep\n", r.stdout
        r = cl.aep("exec", "client", "--", "sh", "-c", "echo out; echo err >&2; exit 7",
                   check=False)
        assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n"), r

        # logs, logs -f
        r = cl.aep("logs", "client")
        assert r.stdout.startswith("client started\ntick 0\n"), r.stdout
        env = dict(os.environ, AEP_CONFIG=cl.config)
        f = subprocess.Popen([AEP, "logs", "-f", "--tail-bytes", "1", "client"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killer = threading.Timer(10, f.kill)
        killer.start()
        try:
            # the last byte (a newline), then the ticks as they come
            lines = [f.stdout.readline() for _ in range(2)]
            assert any(ln.startswith("tick ") for ln in lines), lines
        finally:
            killer.cancel()
            f.kill()
            f.wait()
        print("exec, logs and logs -f work", flush=True)

        # exit 3, restartPolicy Never: Failed with exit code 3
        create(cl, pod("fail", ["sh", "-c", "exit 3"], restart="Never"))
        failed = wait_for("fail Failed", lambda: phase(cl, "fail", "Failed"), 15)
        uids.append(failed["metadata"]["uid"])
        term = failed["status"]["containerStatuses"][0]["state"].get("terminated", {})
        assert term.get("exitCode") == 3, failed["status"]
        print("fail: Failed, exit code %d" % term["exitCode"], flush=True)

        # kill -9 the agent; a new one adopts the httpd untouched
        agent.kill9()
        out = sh("crun", "--root", os.path.join(ndir, "oci"), "state",
                 wcs["containerID"].split("://", 1)[1])
        assert json.loads(out.stdout)["status"] == "running", out.stdout
        mark = len(agent.log())
        agent.start()
        wait_for("the new agent adopts", lambda: "runtime ready" in agent.log()[mark:], 20)
        wait_for("node.sync after the restart", lambda: "node.sync" in agent.log()[mark:], 20)
        web2 = wait_for("web Running", lambda: phase(cl, "web", "Running"), 10)
        cs2 = web2["status"]["containerStatuses"][0]
        assert cs2["containerID"] == wcs["containerID"], (cs2, wcs)
        assert cs2["restartCount"] == 0, cs2
        assert cs2["state"]["running"]["startedAt"] == wcs["state"]["running"]["startedAt"], \
            (cs2, wcs)
        assert not re.search(r"\): run$", agent.log()[mark:], re.M), agent.log()[mark:]
        r = cl.aep("exec", "client", "--", "wget", "-q", "-O", "-", "http://%s/" % ip)
        assert r.stdout == "hello from aep\n", r.stdout
        print("agent restarted: web kept %s, restartCount 0 (pod startTime %s, before %s)" % (
            cs2["containerID"], web2["status"].get("startTime"), web["status"].get("startTime")),
            flush=True)

        # kill -9 the leader: the agent registers with the new one within 2 s
        leader = cl.wait_leader()
        others = [nm for nm in cl.names if nm != leader]
        offsets = {nm: os.path.getsize(os.path.join(cl.dir, nm + ".log")) for nm in others}
        t_kill = time.time()
        cl.kill(leader)
        t_session = t_elected = new_leader = None
        deadline = t_kill + 15
        while time.time() < deadline and t_session is None:
            for nm in others:
                with open(os.path.join(cl.dir, nm + ".log"), errors="replace") as lf:
                    lf.seek(offsets[nm])
                    text = lf.read()
                if t_elected is None and "became leader" in text:
                    t_elected = time.time()
                if "node %s: session from" % NODE in text:
                    t_session, new_leader = time.time(), nm
            time.sleep(0.005)
        assert t_session is not None, "no session on a new leader; agent log:\n" + \
            agent.log()[-3000:]
        if t_elected is None:
            t_elected = t_session
        print("leader %s killed: %s elected after %.2f s, the agent's session there after "
              "%.2f s (%.2f s after the election)" % (
                  leader, new_leader, t_elected - t_kill, t_session - t_kill,
                  t_session - t_elected), flush=True)
        # The election alone takes 1 to 2 s (libraft draws the election
        # timeout from [1 s, 2 s)); the agent's part is what follows it.
        assert t_session - t_elected <= 0.5, "the agent took %.2f s after the election" % (
            t_session - t_elected)
        if t_elected - t_kill <= 2.0:  # one election round (a split vote takes another)
            assert t_session - t_kill <= 2.5, "session on the new leader %.2f s after the " \
                "kill" % (t_session - t_kill)

        # the new session works: a deleted pod is killed on the node
        fuid = failed["metadata"]["uid"]
        cl.aep("delete", "pod", "fail")
        wait_for("fail removed from the node",
                 lambda: not os.path.exists(os.path.join(ndir, "pods", fuid)), 15)
        cl.start(leader)  # three masters again, so that the clean-up stops cleanly

        # clean up through the runtime: delete the pods, the agent kills them
        cl.aep("delete", "pod", "web", "client")
        wait_for("pods removed from the node",
                 lambda: os.path.isdir(os.path.join(ndir, "pods")) and
                 not os.listdir(os.path.join(ndir, "pods")), 20)
        rc = agent.stop()
        assert rc == 0, "agent exited with %s; log:\n%s" % (rc, agent.log()[-3000:])
        ok = True
    finally:
        if not ok:
            if agent is not None:
                print("agent log (end):\n" + agent.log()[-6000:])
            if cl is not None:
                for nm in cl.names:
                    try:
                        with open(os.path.join(cl.dir, nm + ".log"), errors="replace") as lf:
                            print("---- %s log (end):\n%s" % (nm, lf.read()[-2000:]))
                    except OSError:
                        pass
        cleanup(cl, agent, ndir, uids)
        if cl is not None:
            cl.close()
    leftover = sh("ip", "netns", "list").stdout
    assert NETNS not in leftover, leftover
    assert HOST_LINK not in sh("ip", "-o", "link").stdout


def on_sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def main():
    if os.geteuid() != 0:
        print("SKIP: the node agent test needs root")
        sys.exit(77)
    for tool in ("crun", "ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            print("SKIP: %s is not installed" % tool)
            sys.exit(77)
    # a SIGTERM (ctest's timeout) unwinds like Ctrl-C, through the clean-up
    signal.signal(signal.SIGTERM, on_sigterm)
    aeptest.run([test_node_agent])


if __name__ == "__main__":
    main()
