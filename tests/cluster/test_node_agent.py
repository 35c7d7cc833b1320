"""The node agent (`aep node`, node/agent.c) against real masters and real
crun, on a node host made of a network namespace and a private mount
namespace of the test's own.

  * three masters listen on the host end of a veth pair (10.99.X.Y+1/30);
    the agent runs in a namespace of the test's behind the other end
    (10.99.X.Y+2/30), so that every packet stays between the two
    (nodehost.py makes the node host and removes it);
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
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import aeptest  # noqa: E402
from aeptest import AEP  # noqa: E402
from nodehost import HostCluster, NodeHost, check_root, get, node_ready, print_logs, sh, \
    wait_for  # noqa: E402

NODE = "n1"


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


# ---- the test ----------------------------------------------------------------------------


def test_node_agent():
    cl = agent = None
    host = NodeHost(NODE)
    ndir = host.dir
    uids = host.uids
    ok = False
    try:
        host.up()
        cl = HostCluster(host.host_ip)
        cl.wait_leader()
        token = cl.aep("admin", "token", "create", "--description", "test_node_agent").stdout
        token = token.strip()
        tar = os.path.join(cl.dir, "busybox.tar")
        sh(AEP, "node", "image", "build-busybox", tar)
        host.load_image("busybox", tar)

        # join, register
        agent = host.start_agent(cl, token)
        n = wait_for("Node n1 Ready", lambda: node_ready(cl, NODE), 30)
        assert os.path.exists(os.path.join(ndir, "pki", "node.crt")), agent.log()
        mode = os.stat(os.path.join(ndir, "pki", "node.key")).st_mode & 0o777
        assert mode == 0o600, oct(mode)
        cidr = n["spec"].get("podCIDR")
        assert cidr, n
        assert n["metadata"]["labels"] == {"region": "r1", "zone": "z1"}, n["metadata"]
        addrs = {a["type"]: a["address"] for a in n["status"]["addresses"]}
        assert addrs.get("InternalIP") == host.node_ip, addrs
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
        assert web["status"].get("hostIP") == host.node_ip, web["status"]
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

        # exit 1, restartPolicy Always: restarted after the back-off (10 s), and the
        # restart count and the exit code (lastState while waiting) say so
        create(cl, pod("crash", ["sh", "-c", "exit 1"]))

        def crash_restarted():
            p = get(cl, "pod", "crash") or {}
            cs = (p.get("status", {}).get("containerStatuses") or [{}])[0]
            return p if cs.get("restartCount", 0) >= 1 else None
        crash = wait_for("crash restarted", crash_restarted, 30, interval=0.2)
        uids.append(crash["metadata"]["uid"])
        ccs = crash["status"]["containerStatuses"][0]
        assert crash["status"]["phase"] == "Running", crash["status"]
        if "waiting" in ccs.get("state", {}):  # in the back-off: the run that ended
            assert ccs["lastState"]["terminated"]["exitCode"] == 1, ccs
        print("crash: restartCount %d, state %s" % (ccs["restartCount"], ccs.get("state")),
              flush=True)
        cl.aep("delete", "pod", "crash")

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
        assert web2["status"].get("startTime") == web["status"].get("startTime"), \
            (web2["status"], web["status"])
        r = cl.aep("exec", "client", "--", "wget", "-q", "-O", "-", "http://%s/" % ip)
        assert r.stdout == "hello from aep\n", r.stdout
        print("agent restarted: web kept %s, restartCount 0 and startTime %s" % (
            cs2["containerID"], web2["status"].get("startTime")), flush=True)

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
        # The election takes 0.5 to 1 s (libraft draws the election timeout
        # from [T, 2T), T = --election-timeout, 500 ms); the agent's part is
        # what follows it. One election round must end within 2 s of the kill
        # (a split vote, rare with pre-vote, takes another round).
        assert t_session - t_elected <= 0.5, "the agent took %.2f s after the election" % (
            t_session - t_elected)
        if t_elected - t_kill <= 1.2:
            assert t_session - t_kill <= 2.0, "session on the new leader %.2f s after the " \
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
            print_logs(cl, [host])
        try:
            host.destroy()
        finally:
            if cl is not None:
                cl.close()
    assert host.gone() is None, host.gone()


def main():
    check_root("the node agent test")
    aeptest.run([test_node_agent])


if __name__ == "__main__":
    main()
