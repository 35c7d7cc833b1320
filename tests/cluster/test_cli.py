"""The CLI against a real 3-master cluster, as the README shows it:
create -f of a YAML pod list, get (table, -o yaml/json/name, -l, -w),
apply, label, describe, delete, version and admin members."""
import json
import os
import select
import subprocess
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(__file__))
from aeptest import AEP, Cluster, run  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
PODS = os.path.join(ROOT, "examples", "pods.yaml")


def test_cli_workflow():
    with Cluster(3) as cl:
        cl.wait_leader()
        r = cl.aep("create", "-f", PODS)
        assert "pod/web-1 created" in r.stdout and "pod/web-2 created" in r.stdout, r.stdout

        r = cl.aep("get", "pods")
        lines = r.stdout.strip().splitlines()
        assert lines[0].split()[0] == "NAME", r.stdout
        assert [ln.split()[0] for ln in lines[1:]] == ["web-1", "web-2"], r.stdout

        r = cl.aep("get", "pods", "-l", "app=web", "-o", "name")
        assert r.stdout.split() == ["pod/web-1", "pod/web-2"], r.stdout
        r = cl.aep("get", "pods", "-l", "app!=web", "-o", "name")
        assert r.stdout.strip() == "", r.stdout

        doc = yaml.safe_load(cl.aep("get", "pods", "-o", "yaml").stdout)
        assert doc["kind"] == "List"
        assert [i["metadata"]["name"] for i in doc["items"]] == ["web-1", "web-2"]
        assert doc["items"][0]["spec"]["containers"][0]["command"] == ["httpd", "-f", "-p", "80"]

        one = json.loads(cl.aep("get", "pod", "web-1", "-o", "json").stdout)
        assert one["metadata"]["labels"] == {"app": "web", "tier": "frontend"}

        # -w prints changes as they happen.
        env = dict(os.environ, AEP_CONFIG=cl.config)
        watcher = subprocess.Popen([AEP, "get", "pods", "-w"], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        try:
            time.sleep(1.0)
            cl.aep("create", "-f", "-", input=yaml.safe_dump(
                {"kind": "Pod", "metadata": {"name": "web-3", "labels": {"app": "web"}},
                 "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
            deadline = time.time() + 10
            out = ""
            fd = watcher.stdout.fileno()
            while "web-3" not in out and time.time() < deadline:
                ready, _, _ = select.select([fd], [], [], 0.2)
                if ready:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    out += chunk.decode()
            assert "web-3" in out, "get -w did not show the new pod: %r" % out
        finally:
            watcher.terminate()
            watcher.wait(timeout=10)

        # apply: configured, then unchanged.
        manifest = os.path.join(cl.dir, "web1.yaml")
        with open(manifest, "w") as f:
            yaml.safe_dump({"kind": "Pod", "metadata": {"name": "web-1",
                                                        "labels": {"app": "web", "v": "2"}},
                            "spec": {"containers": [{"name": "httpd", "image": "busybox"}]}}, f)
        assert "pod/web-1 configured" in cl.aep("apply", "-f", manifest).stdout
        assert "pod/web-1 unchanged" in cl.aep("apply", "-f", manifest).stdout
        r = cl.aep("get", "pods", "-l", "v=2", "-o", "name")
        assert r.stdout.split() == ["pod/web-1"]

        cl.aep("label", "pod", "web-2", "env=prod")
        assert cl.aep("get", "pods", "-l", "env=prod", "-o", "name").stdout.split() == ["pod/web-2"]
        r = cl.aep("label", "pod", "web-2", "env=dev", check=False)
        assert r.returncode != 0 and "overwrite" in r.stderr, r.stderr
        cl.aep("label", "pod", "web-2", "env=dev", "--overwrite")
        cl.aep("label", "pod", "web-2", "env-")
        assert cl.aep("get", "pods", "-l", "env", "-o", "name").stdout.strip() == ""

        r = cl.aep("describe", "pod", "web-1")
        assert "web-1" in r.stdout and "Name:" in r.stdout, r.stdout

        r = cl.aep("delete", "pod", "web-2")
        assert 'pod "web-2" deleted' in r.stdout, r.stdout
        r = cl.aep("get", "pod", "web-2", check=False)
        assert r.returncode == 1 and "NotFound" in r.stderr and "web-2" in r.stderr, r.stderr

        r = cl.aep("version")
        assert "Client" in r.stdout or "client" in r.stdout.lower(), r.stdout

        members = json.loads(cl.aep("admin", "members", "-o", "json").stdout)
        assert sorted(m["name"] for m in members) == ["m1", "m2", "m3"]
        assert sum(1 for m in members if m["leader"]) == 1
        for m in members:
            assert set(m) >= {"name", "address", "peerAddress", "leader", "appliedIndex"}
            assert m["address"] == cl.api(m["name"])
            assert m["appliedIndex"] > 0


def test_cli_bad_input():
    with Cluster(1) as cl:
        cl.wait_leader()
        bad = os.path.join(cl.dir, "bad.yaml")
        with open(bad, "w") as f:
            f.write("kind: Pod\nmetadata:\n  name: ok\n spec: [\n")
        r = cl.aep("create", "-f", bad, check=False)
        assert r.returncode == 1 and "line" in r.stderr, r.stderr
        with open(bad, "w") as f:
            f.write("kind: Pod\nmetadata: {name: UPPER}\nspec: {containers: [{name: c, image: b}]}\n")
        r = cl.aep("create", "-f", bad, check=False)
        assert r.returncode == 1 and "Invalid" in r.stderr, r.stderr
        r = cl.aep("get", "frobs", check=False)
        assert r.returncode == 1 and "frobs" in r.stderr, r.stderr
        # Nothing was created by the failures.
        assert cl.aep("get", "pods", "-o", "name").stdout.strip() == ""


if __name__ == "__main__":
    run([test_cli_workflow, test_cli_bad_input])
