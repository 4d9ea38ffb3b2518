"""Helpers for the raft process tests: start server sets, read leaders, write variables."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Sequence

from harness import (CONVERGE_DEADLINE, ProcSet, ShoalNode, make_shoal, shoal_argv, wait_shoal_ready,
                     wait_statuses, wait_until)

LEADER_DEADLINE = 30.0


def request(method: str, url: str, body: Any = None, timeout: float = 15.0,
            context: Any = None) -> tuple[int, Any]:
    """One HTTP(S) request with an optional JSON body; (status, decoded JSON or text).

    ``context`` is the ``ssl.SSLContext`` for an https URL (None: urllib's default).
    """
    data = None if body is None else json.dumps(body).encode()
    if data is None and method in ("PUT", "POST"):
        data = b""
    req = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def leader(node: ShoalNode) -> str:
    status, body = request("GET", f"{node.url}/v1/status/leader", timeout=5)
    assert status == 200, (status, body)
    return body


def raft_address(node: ShoalNode) -> str:
    return f"{node.ip}:{node.rpc_port}"


def put_var(node: ShoalNode, path: str, items: dict[str, str], timeout: float = 20.0) -> tuple[int, Any]:
    return request("PUT", f"{node.url}/v1/var/{path}", {"Path": path, "Items": items}, timeout=timeout)


def stale_vars(node: ShoalNode, prefix: str = "") -> list[str]:
    status, body = request("GET", f"{node.url}/v1/vars?stale=true&prefix={prefix}", timeout=10)
    assert status == 200, (status, body)
    return sorted(v["Path"] for v in body)


def configuration(node: ShoalNode, stale: bool = True) -> dict[str, Any]:
    suffix = "?stale=true" if stale else ""
    status, body = request("GET", f"{node.url}/v1/operator/raft/configuration{suffix}", timeout=10)
    assert status == 200, (status, body)
    return body


def start_servers(procs: ProcSet, tmp: Path, loopback: Any, names: Sequence[str], *,
                  expect: int, extra: Sequence[str] = ()) -> list[ShoalNode]:
    """Start servers with ``-bootstrap-expect``, join them to the first, wait for all alive."""
    nodes = [make_shoal(procs, tmp, loopback.next(), name,
                        extra=["-bootstrap-expect", str(expect), *extra]) for name in names]
    for node in nodes:
        node.start()
    for node in nodes:
        wait_shoal_ready(node)
    for node in nodes[1:]:
        status, body = node.join(nodes[0].serf_addr)
        assert status == 200 and body == {"num_joined": 1, "error": ""}, (status, body)
    wait_statuses(nodes, {n.member_name: "alive" for n in nodes}, what="servers alive",
                  timeout=CONVERGE_DEADLINE)
    return nodes


def wait_one_leader(nodes: Sequence[ShoalNode], timeout: float = LEADER_DEADLINE,
                    exclude: str = "") -> str:
    """Wait until every node names the same non-empty leader (not ``exclude``); return it."""
    def probe() -> list[str]:
        return [leader(node) for node in nodes]

    seen = wait_until("one leader named by every server", probe,
                      lambda ls: len(set(ls)) == 1 and ls[0] != "" and ls[0] != exclude,
                      timeout=timeout, watch=nodes)
    return seen[0]


def node_at(nodes: Sequence[ShoalNode], address: str) -> ShoalNode:
    for node in nodes:
        if raft_address(node) == address:
            return node
    raise AssertionError(f"no node has raft address {address}; nodes: {[raft_address(n) for n in nodes]}")


def restart(procs: ProcSet, old: ShoalNode, extra: Sequence[str], join: Sequence[str] = ()) -> ShoalNode:
    """A new process for ``old``'s node (same address, ports and data dir)."""
    data_dir = old.log_path.parent / f"data-{old.node}"
    argv = shoal_argv(old.node, old.ip, old.http_port, old.rpc_port, old.serf_port,
                      data_dir=data_dir, extra=list(extra) + [a for j in join for a in ("-retry-join", j)]
                      + ["-retry-interval", "1s"])
    generation = sum(1 for p in procs.procs if getattr(p, "node", None) == old.node)
    node = ShoalNode(name=f"{old.name}-{generation}", argv=argv,
                     log_path=old.log_path.with_name(f"{old.log_path.stem}-{generation}.log"),
                     env=old.env, stop_signal=old.stop_signal, node=old.node, ip=old.ip,
                     http_port=old.http_port, rpc_port=old.rpc_port, serf_port=old.serf_port)
    procs.add(node)
    node.start()
    return node
