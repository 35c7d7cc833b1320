"""`aep up --masters 3` starts a local cluster, prints how to use it, serves
the CLI, and stops every master cleanly on Ctrl-C (SIGINT)."""
import os
import signal
import subprocess
import sys
import tempfile
import time
import shutil

sys.path.insert(0, os.path.dirname(__file__))
from aeptest import AEP, free_port_block, run  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def masters_running(d):
    out = subprocess.run(["pgrep", "-f", "aep master .*--dir %s/" % d], capture_output=True,
                         text=True).stdout
    return [p for p in out.split() if p]


def test_up():
    d = tempfile.mkdtemp(prefix="aep-up-")
    base = free_port_block(3)
    p = subprocess.Popen([AEP, "up", "--masters", "3", "--dir", d, "--base-port", str(base)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = ""
        deadline = time.time() + 60
        while "Ctrl-C" not in out and time.time() < deadline and p.poll() is None:
            out += p.stdout.readline()
        assert "is up" in out and "AEP_CONFIG=%s/admin.conf" % d in out, out
        env = dict(os.environ, AEP_CONFIG=os.path.join(d, "admin.conf"))
        r = subprocess.run([AEP, "create", "-f", os.path.join(ROOT, "examples", "pods.yaml")],
                           env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([AEP, "get", "pods", "-o", "name"], env=env, capture_output=True,
                           text=True, timeout=30)
        assert r.stdout.split() == ["pod/web-1", "pod/web-2"], r.stdout + r.stderr
        assert len(masters_running(d)) == 3
        p.send_signal(signal.SIGINT)
        rest, _ = p.communicate(timeout=60)
        assert p.returncode == 0, rest
        assert "stopped" in rest
        assert masters_running(d) == [], "masters left running"

        # the DIR remembers its shape: other ports or another number of
        # masters are refused (their Raft logs keep the old addresses)
        other = free_port_block(3)
        r = subprocess.run([AEP, "up", "--dir", d, "--base-port", str(other)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "--base-port %d" % base in r.stderr, r
        r = subprocess.run([AEP, "up", "--dir", d, "--masters", "5"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "3 masters" in r.stderr, r
        assert masters_running(d) == [], "a refused run started masters"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for pid in masters_running(d):
            os.kill(int(pid), signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    run([test_up])
