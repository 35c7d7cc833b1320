#!/usr/bin/env python3
"""Joining nodes and what node agents may do (docs/NODES.md), on real
masters: bootstrap tokens made with `aep admin token`, the join method
called by a client without a certificate (Python's ssl and msgpack; the key
and the request come from the openssl command line), and the certificate it
gets, used to read and write -- or be refused -- Nodes and pods.

Run: python3 tests/cluster/test_join.py (AEP_BIN selects the binary)."""
import os
import re
import subprocess
import time

import aeptest
from aeptest import RpcError

TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")


def expect_error(code, fn, *args, contains=None):
    try:
        res = fn(*args)
    except RpcError as e:
        assert e.code == code, "expected %s, got %s: %s" % (code, e.code, e.message)
        if contains is not None:
            assert contains in e.message, "%r not in %r" % (contains, e.message)
        return e
    raise AssertionError("expected %s, got a result: %r" % (code, res))


def make_csr(dirname, stem, cn):
    """An ECDSA P-256 key and a PEM PKCS#10 request for @cn; returns the
    request's text and the key's path."""
    key = os.path.join(dirname, stem + ".key")
    csr = os.path.join(dirname, stem + ".csr")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
                    "-subj", "/O=system:nodes/CN=" + cn],
                   check=True, capture_output=True)
    with open(csr) as f:
        return f.read(), key


def create_token(cl, *flags):
    out = cl.aep("admin", "token", "create", *flags).stdout.strip()
    assert TOKEN_RE.match(out), "not ID.SECRET: %r" % out
    return out


def node_pod(name, node):
    p = aeptest.pod(name)
    p["spec"]["nodeName"] = node
    return p


def test_join_and_node_authorization():
    with aeptest.Cluster(3) as cl:
        leader = cl.wait_leader()
        follower = [n for n in cl.names if n != leader][0]
        admin = cl.client(leader)

        token = create_token(cl, "--description", "rack 4")
        tid, secret = TOKEN_RE.match(token).groups()
        listed = cl.aep("admin", "token", "list").stdout
        assert tid in listed and "rack 4" in listed and "join" in listed, listed
        assert secret not in listed, "token list shows the secret"

        csr_n1, key_n1 = make_csr(cl.dir, "n1", "system:node:n1")
        csr_wrong, _ = make_csr(cl.dir, "wrong", "system:node:n9")

        # Without a certificate, nothing but join.
        anon = aeptest.Client(cl.api(follower), cl.pki, cert=None)
        expect_error("Unauthorized", anon.call, "get", {"kind": "Node", "name": "n1"},
                     contains="client certificate")
        expect_error("Unauthorized", anon.call, "join",
                     {"token": tid + ".0000000000000000", "name": "n1", "csr": csr_n1})
        expect_error("Unauthorized", anon.call, "join",
                     {"token": "not-a-token", "name": "n1", "csr": csr_n1})
        expect_error("Invalid", anon.call, "join",
                     {"token": token, "name": "n1", "csr": csr_wrong},
                     contains='"system:node:n1"')
        expect_error("Invalid", anon.call, "join",
                     {"token": token, "name": "N_1", "csr": csr_n1})
        expect_error("Invalid", anon.call, "join",
                     {"token": token, "name": "n1", "csr": "-----BEGIN CERTIFICATE REQUEST-----"
                      "\nAAAA\n-----END CERTIFICATE REQUEST-----\n"})

        # The right one, through a follower (forwarded to the leader).
        res = anon.call("join", {"token": token, "name": "n1", "csr": csr_n1})
        anon.close()
        with open(os.path.join(cl.pki, "ca.crt")) as f:
            assert res["ca"] == f.read()
        crt = os.path.join(cl.pki, "node-n1.crt")
        with open(crt, "w") as f:
            f.write(res["certificate"])
        os.rename(key_n1, os.path.join(cl.pki, "node-n1.key"))
        subj = subprocess.run(["openssl", "x509", "-noout", "-subject", "-enddate", "-in", crt],
                              check=True, capture_output=True, text=True).stdout
        assert "CN = system:node:n1" in subj and "O = system:nodes" in subj, subj
        subprocess.run(["openssl", "verify", "-CAfile", os.path.join(cl.pki, "ca.crt"), crt],
                       check=True, capture_output=True)

        # The node's own Node: create and read it; another node's: refused.
        node = cl.client(leader, cert="node-n1")
        node.call("create", {"object": {"kind": "Node", "metadata": {"name": "n1"}}})
        assert node.call("get", {"kind": "Node", "name": "n1"})["metadata"]["name"] == "n1"
        admin.call("create", {"object": {"kind": "Node", "metadata": {"name": "n2"}}})
        expect_error("Forbidden", node.call, "get", {"kind": "Node", "name": "n2"},
                     contains='User "system:node:n1"')
        expect_error("Forbidden", node.call, "create",
                     {"object": {"kind": "Node", "metadata": {"name": "n3"}}})

        # Pods: its own, yes; another node's, no.
        admin.call("create", {"object": node_pod("mine", "n1")})
        theirs = admin.call("create", {"object": node_pod("theirs", "n2")})
        got = node.call("get", {"kind": "pods", "name": "mine"})
        assert got["spec"]["nodeName"] == "n1"
        expect_error("Forbidden", node.call, "get", {"kind": "pods", "name": "theirs"},
                     contains='pods "theirs" is forbidden: User "system:node:n1" cannot get '
                     'resource "pods"')
        e = expect_error("Forbidden", node.call, "update", {"object": theirs})
        assert 'bound to node "n2"' in e.message, e.message
        expect_error("Forbidden", node.call, "delete", {"kind": "pods", "name": "theirs"})
        after = admin.call("get", {"kind": "pods", "name": "theirs"})
        assert after["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]

        got["metadata"]["labels"] = {"seen": "yes"}
        upd = node.call("update", {"object": got})
        assert upd["metadata"]["labels"] == {"seen": "yes"}
        upd["spec"]["nodeName"] = "n2"
        expect_error("Forbidden", node.call, "update", {"object": upd},
                     contains="spec.nodeName")
        assert admin.call("get", {"kind": "pods", "name": "mine"})["spec"]["nodeName"] == "n1"

        expect_error("Forbidden", node.call, "create", {"object": node_pod("new", "n1")},
                     contains="cannot create")
        expect_error("Forbidden", node.call, "list", {"kind": "pods"}, contains="node.sync")
        expect_error("Forbidden", node.call, "watch", {"kind": "pods"})
        expect_error("Forbidden", node.call, "get", {"kind": "Namespace", "name": "default"})
        expect_error("Forbidden", node.call, "transfer", {})
        expect_error("Forbidden", node.call, "join",
                     {"token": token, "name": "n1", "csr": csr_n1})
        node.close()

        # On a follower, a node is sent to the leader.
        fnode = cl.client(follower, cert="node-n1")
        e = expect_error("NotLeader", fnode.call, "get", {"kind": "pods", "name": "mine"})
        assert e.details == {"leader": cl.api(leader)}, e.details
        fnode.close()
        admin.close()


def test_token_expiry_delete_and_bad_input():
    with aeptest.Cluster(1) as cl:
        leader = cl.wait_leader()
        csr, _ = make_csr(cl.dir, "n5", "system:node:n5")

        def join(token):
            c = aeptest.Client(cl.api(leader), cl.pki, cert=None)
            try:
                return c.call("join", {"token": token, "name": "n5", "csr": csr})
            finally:
                c.close()

        def secrets():
            c = cl.client(leader)
            try:
                return c.call("list", {"kind": "secrets", "namespace": "kube-system"})["items"]
            finally:
                c.close()

        # Bad flags change nothing.
        r = cl.aep("admin", "token", "create", "--ttl", "soon", check=False)
        assert r.returncode == 1 and "invalid --ttl" in r.stderr, r.stderr
        r = cl.aep("admin", "token", "delete", "BAD!", check=False)
        assert r.returncode == 1 and "6 characters" in r.stderr, r.stderr
        assert secrets() == []

        short = create_token(cl, "--ttl", "1s")
        time.sleep(2.2)
        expect_error("Unauthorized", join, short, contains="expired")
        assert "<expired>" in cl.aep("admin", "token", "list").stdout

        token = create_token(cl)
        tid = token.split(".")[0]
        assert "certificate" in join(token)

        # Without ca.key the master cannot sign.
        ca_key = os.path.join(cl.pki, "ca.key")
        os.rename(ca_key, ca_key + ".away")
        try:
            expect_error("Unavailable", join, token, contains="no CA key")
        finally:
            os.rename(ca_key + ".away", ca_key)

        out = cl.aep("admin", "token", "delete", tid).stdout
        assert 'bootstrap token "%s" deleted' % tid in out, out
        expect_error("Unauthorized", join, token)
        assert tid not in cl.aep("admin", "token", "list").stdout
        r = cl.aep("admin", "token", "delete", tid, check=False)
        assert r.returncode == 1 and "not found" in r.stderr, r.stderr


if __name__ == "__main__":
    aeptest.run([test_join_and_node_authorization, test_token_expiry_delete_and_bad_input])
