"""Real `shoal agent -server` processes with `tls { http = true rpc = true }` from a
-config file, certificates made by `shoal tls ca create` / `shoal tls cert create`.

HTTPS answers `curl --cacert`, plain HTTP to the same port fails, three servers form a
raft cluster over TLS and replicate a variable, and a fourth server whose certificate
comes from another CA joins gossip but never joins raft: the leader's rpc ping fails
its handshake (the fourth server's rpc port counts the refused connections), so the
leader never adds it to the raft configuration, and it never hears from a leader.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Sequence

import pytest

from harness import CONVERGE_DEADLINE, PYTHON, ShoalNode, make_shoal, wait_until
from raft_procs import request

pytestmark = pytest.mark.cluster

LEADER_DEADLINE = 30.0
NEVER_WINDOW = 12.0
"""Seconds the foreign server is watched: longer than autopilot's 10 s stabilization
time, after which a healthy non-voter would have been promoted."""


def shoal_tls(folder: Path, *args: str) -> str:
    """Run `shoal tls ...` in ``folder``; its stdout (fails the test on a non-zero exit)."""
    done = subprocess.run([PYTHON, "-m", "agent", "tls", *args], cwd=folder, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def make_pki(folder: Path, ips: Sequence[str]) -> dict[str, Path]:
    """A CA and one server certificate valid for every address in ``ips``."""
    folder.mkdir()
    shoal_tls(folder, "ca", "create")
    extra = [arg for ip in ips for arg in ("-additional-ipaddress", ip)]
    out = shoal_tls(folder, "cert", "create", "-server", *extra)
    assert "global-server-nomad.pem" in out
    return {"ca": folder / "nomad-agent-ca.pem", "cert": folder / "global-server-nomad.pem",
            "key": folder / "global-server-nomad-key.pem"}


def write_config(path: Path, pki: dict[str, Path], *, http: bool) -> Path:
    path.write_text(f"""
tls {{
  http = {str(http).lower()}
  rpc  = true
  ca_file   = "{pki['ca']}"
  cert_file = "{pki['cert']}"
  key_file  = "{pki['key']}"
  verify_server_hostname = true
}}
""")
    return path


class Api:
    """HTTP(S) requests to one node: https with the cluster CA, or plain http."""

    def __init__(self, node: ShoalNode, ca: Path | None) -> None:
        self.node = node
        self.context = ssl.create_default_context(cafile=str(ca)) if ca else None
        self.base = f"{'https' if ca else 'http'}://{node.ip}:{node.http_port}"

    def call(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
        return request(method, self.base + path, body, timeout=timeout, context=self.context)

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        assert status == 200, (path, status, body)
        return body

    def statuses(self) -> dict[str, str]:
        return {m["Name"]: m["Status"] for m in self.get("/v1/agent/members")["Members"]}

    def counter(self, suffix: str) -> int:
        """The /v1/metrics counter whose name ends with ``suffix`` (0 when absent)."""
        counters = self.get("/v1/metrics").get("Counters") or []
        return sum(int(c.get("Count", 0)) for c in counters if c.get("Name", "").endswith(suffix))

    def voters(self) -> dict[str, bool]:
        servers = self.get("/v1/operator/raft/configuration?stale=true")["Servers"]
        return {s["Address"]: s["Voter"] for s in servers}


def start(node: ShoalNode, api: Api) -> None:
    node.start()
    wait_until(f"{node.name} to serve {api.base}", api.statuses,
               lambda s: s.get(node.member_name) == "alive", timeout=30, watch=[node])


def curl_self(api: Api, ca: Path) -> dict[str, Any]:
    """GET /v1/agent/self with `curl --cacert` (python's ssl when curl is missing)."""
    if shutil.which("curl") is None:
        return api.get("/v1/agent/self")
    done = subprocess.run(["curl", "-sS", "--fail", "--cacert", str(ca), f"{api.base}/v1/agent/self"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def plain_http_fails(node: ShoalNode) -> str:
    """A plain-HTTP request to the TLS port must fail; returns how it failed."""
    url = f"http://{node.ip}:{node.http_port}/v1/agent/self"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            raise AssertionError(f"plain HTTP to the TLS port answered {response.status}")
    except urllib.error.HTTPError as error:
        raise AssertionError(f"plain HTTP to the TLS port answered {error.code}") from None
    except (OSError, ValueError) as error:   # reset, empty reply, bad status line
        return type(error).__name__


def test_tls_cluster_and_a_server_from_another_ca(procs, loopback, tmp_path):
    """HTTPS with --cacert, plain HTTP refused, raft over TLS, foreign CA kept out."""
    ips = [loopback.next() for _ in range(4)]
    cluster = make_pki(tmp_path / "pki", ips[:3])
    other = make_pki(tmp_path / "other", ips[3:])
    cluster_hcl = write_config(tmp_path / "tls.hcl", cluster, http=True)
    foreign_hcl = write_config(tmp_path / "foreign.hcl", other, http=False)

    nodes = [make_shoal(procs, tmp_path, ip, f"t{i + 1}",
                        extra=["-bootstrap-expect", "3", "-config", str(cluster_hcl)])
             for i, ip in enumerate(ips[:3])]
    apis = [Api(node, cluster["ca"]) for node in nodes]
    for node, api in zip(nodes, apis):
        start(node, api)

    document = curl_self(apis[0], cluster["ca"])
    assert document["member"]["Name"] == nodes[0].member_name
    assert plain_http_fails(nodes[0])
    with pytest.raises(urllib.error.URLError):   # HTTPS without the CA: not trusted
        urllib.request.urlopen(f"{apis[0].base}/v1/agent/self", timeout=10)

    for api in apis[1:]:
        status, body = api.call("PUT", f"/v1/agent/join?address={nodes[0].serf_addr}", timeout=20)
        assert (status, body) == (200, {"num_joined": 1, "error": ""})
    wait_until("servers alive", lambda: [a.statuses() for a in apis],
               lambda views: all(v == {n.member_name: "alive" for n in nodes} for v in views),
               timeout=CONVERGE_DEADLINE, watch=nodes)
    leaders = wait_until("one raft leader over TLS", lambda: [a.get("/v1/status/leader") for a in apis],
                         lambda seen: len(set(seen)) == 1 and seen[0] != "", timeout=LEADER_DEADLINE,
                         watch=nodes)
    leader_api = next(a for a in apis if f"{a.node.ip}:{a.node.rpc_port}" == leaders[0])
    follower_api = next(a for a in apis if a is not leader_api)
    status, body = follower_api.call("PUT", "/v1/var/tls/check", {"Path": "tls/check",
                                                                  "Items": {"over": "tls"}})
    assert status == 200, (status, body)
    wait_until("the variable on every server",
               lambda: [[v["Path"] for v in a.get("/v1/vars?stale=true&prefix=tls")] for a in apis],
               lambda views: all(v == ["tls/check"] for v in views), timeout=30, watch=nodes)
    assert sorted(leader_api.voters().values()) == [True, True, True]
    # The CLI reaches an https:// address with $SHOAL_CACERT.
    done = subprocess.run([PYTHON, "-m", "agent", "server", "members", "-address", apis[0].base],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, SHOAL_CACERT=str(cluster["ca"])))
    assert done.returncode == 0, done.stderr
    assert all(n.member_name in done.stdout for n in nodes), done.stdout
    assert leader_api.counter("rpc.dropped.tls_handshake") == 0

    # A fourth server whose certificate comes from another CA (plain HTTP, TLS rpc).
    foreign = make_shoal(procs, tmp_path, ips[3], "t4", extra=["-config", str(foreign_hcl)])
    foreign_api = Api(foreign, None)
    start(foreign, foreign_api)
    status, body = foreign_api.call("PUT", f"/v1/agent/join?address={nodes[0].serf_addr}", timeout=20)
    assert (status, body) == (200, {"num_joined": 1, "error": ""})
    foreign_rpc = f"{foreign.ip}:{foreign.rpc_port}"
    wait_until("the leader's rpc ping of the foreign server to fail TLS, and be counted there",
               lambda: foreign_api.counter("rpc.dropped.tls_handshake"),
               lambda seen: seen > 0, timeout=30, watch=nodes + [foreign])

    end = time.monotonic() + NEVER_WINDOW
    while time.monotonic() < end:
        voters = leader_api.voters()
        assert foreign_rpc not in voters, voters
        assert sorted(v for a, v in voters.items() if a != foreign_rpc) == [True, True, True], voters
        assert foreign_api.get("/v1/status/leader") == "", "the foreign server heard from a leader"
        assert foreign.running(), foreign.log_tail(40)
        time.sleep(0.5)
    assert foreign_api.get("/v1/vars?stale=true&prefix=tls") == []
    status, body = leader_api.call("PUT", "/v1/var/tls/after", {"Path": "tls/after", "Items": {"a": "b"}})
    assert status == 200, (status, body)
