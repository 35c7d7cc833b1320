"""Network namespaces for fault tests: one namespace per master, joined by a
bridge that lives in a "hub" namespace of its own, so the root namespace
gets no new interface, address or route (docs: /work/shared/RUNBOOK.md,
network rule). Addresses are 10.77.0.N/24, reachable only inside these
namespaces; the test's clients run in the hub (10.77.0.254).

Partitions: this kernel has no tc classifiers or actions and the machine no
iptables/nft, so a cut between masters I and J is made with routes inside
their namespaces: I routes J's address through a gateway whose neighbour
entry is a MAC address nobody owns (and J routes I's likewise), so packets
are dropped silently, as on a broken link. Clients in the hub keep reaching
every master, as in Jepsen's partitions.

Everything created is removed by close(); namespaces left over by a test
that was killed with SIGKILL are removed by the next one (their name holds
the dead process's pid)."""
import ctypes
import os
import re
import subprocess

SUBNET = "10.77.0"
HUB_ADDR = SUBNET + ".254"
SINK_ADDR = SUBNET + ".250"
SINK_MAC = "02:00:5e:00:00:fe"
CLONE_NEWNET = 0x40000000


def sh(*args, check=True):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def sweep_stale():
    """Removes namespaces of earlier fault tests whose process is gone."""
    r = sh("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        m = re.match(r"(aepf(\d+)\S*)", line)
        if m and not os.path.exists("/proc/%s" % m.group(2)):
            sh("ip", "netns", "del", m.group(1), check=False)


class Net:
    def __init__(self, n):
        self.n = n
        self.prefix = "aepf%d" % os.getpid()
        self.hub = self.prefix + "h"
        self.nodes = ["%sm%d" % (self.prefix, i + 1) for i in range(n)]
        self.created = []
        self.cuts = set()

    def addr(self, i):
        return "%s.%d" % (SUBNET, i + 1)

    def setup(self):
        sweep_stale()
        sh("ip", "netns", "add", self.hub)
        self.created.append(self.hub)
        hub = ("ip", "-n", self.hub)
        sh(*hub, "link", "set", "lo", "up")
        sh(*hub, "link", "add", "br0", "type", "bridge")
        sh(*hub, "link", "set", "br0", "up")
        sh(*hub, "addr", "add", HUB_ADDR + "/24", "dev", "br0")
        for i, ns in enumerate(self.nodes):
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
            sh(*hub, "link", "add", "v%d" % (i + 1), "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            sh(*hub, "link", "set", "v%d" % (i + 1), "master", "br0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", self.addr(i) + "/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "neigh", "replace", SINK_ADDR, "lladdr", SINK_MAC, "dev", "eth0",
               "nud", "permanent")

    def enter_hub(self):
        """Moves the calling thread (and the threads and processes it starts
        afterwards) into the hub namespace."""
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open("/var/run/netns/" + self.hub, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns " + self.hub)
        finally:
            os.close(fd)

    def exec_prefix(self, i):
        return ["ip", "netns", "exec", self.nodes[i]]

    def _route(self, i, j, cut):
        ns = self.nodes[i]
        if cut:
            sh("ip", "-n", ns, "route", "replace", self.addr(j) + "/32", "via", SINK_ADDR,
               "dev", "eth0")
        else:
            sh("ip", "-n", ns, "route", "del", self.addr(j) + "/32", check=False)

    def partition(self, cuts):
        """Makes exactly the pairs in @cuts (pairs of master indexes) unable
        to talk to each other; every other pair of masters is connected."""
        want = {tuple(sorted(p)) for p in cuts}
        for a, b in self.cuts - want:
            self._route(a, b, False)
            self._route(b, a, False)
        for a, b in want - self.cuts:
            self._route(a, b, True)
            self._route(b, a, True)
        self.cuts = want

    def heal(self):
        self.partition(())

    def close(self):
        for ns in reversed(self.created):
            sh("ip", "netns", "del", ns, check=False)
        self.created = []
