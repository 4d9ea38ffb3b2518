"""Helpers for the scheduling process tests: client agents, jobs, allocations."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from harness import PYTHON, ProcSet, ShoalNode, free_port, wait_until
from raft_procs import request

CLIENT_CPU = 2000      # MHz per simulated client
CLIENT_MEMORY = 2048   # MB per simulated client


def make_client(procs: ProcSet, tmp: Path, ip: str, node: str, servers: Sequence[ShoalNode],
                extra: Sequence[str] = ()) -> ShoalNode:
    """A `shoal agent -client` with fixed simulated resources, pointed at ``servers``' rpc ports."""
    http_port = free_port(ip)
    data_dir = tmp / f"data-{node}"
    data_dir.mkdir(exist_ok=True)
    argv = [PYTHON, "-m", "agent", "agent", "-client", "-node", node, "-dc", "dc1", "-bind", ip,
            "-http-port", str(http_port), "-data-dir", str(data_dir), "-log-level", "DEBUG",
            "-cpu-total-compute", str(CLIENT_CPU), "-memory-total-mb", str(CLIENT_MEMORY)]
    for server in servers:
        argv += ["-servers", f"{server.ip}:{server.rpc_port}"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    client = ShoalNode(name=f"shoal-{node}", argv=argv + list(extra), log_path=tmp / f"shoal-{node}.log",
                       env=env, stop_signal=signal.SIGINT, node=node, ip=ip, http_port=http_port)
    procs.add(client)
    return client


def service_job(job_id: str, count: int, cpu: int = 100, memory: int = 64, kind: str = "service",
                duration: float | None = None) -> dict[str, Any]:
    group: dict[str, Any] = {"Name": "g", "Count": count, "Resources": {"CPU": cpu, "MemoryMB": memory}}
    if duration is not None:
        group["Duration"] = duration
    return {"Job": {"ID": job_id, "Type": kind, "Datacenters": ["dc1"], "TaskGroups": [group]}}


def register(node: ShoalNode, job: dict[str, Any]) -> dict[str, Any]:
    status, body = request("PUT", f"{node.url}/v1/jobs", job, timeout=30)
    assert status == 200, (status, body)
    return body


def allocations(node: ShoalNode) -> list[dict[str, Any]]:
    status, body = request("GET", f"{node.url}/v1/allocations?stale=true", timeout=10)
    assert status == 200, (status, body)
    return body


def evaluations(node: ShoalNode) -> list[dict[str, Any]]:
    status, body = request("GET", f"{node.url}/v1/evaluations?stale=true", timeout=10)
    assert status == 200, (status, body)
    return body


def nodes(node: ShoalNode) -> list[dict[str, Any]]:
    status, body = request("GET", f"{node.url}/v1/nodes?stale=true", timeout=10)
    assert status == 200, (status, body)
    return body


def live(allocs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in allocs if a["DesiredStatus"] == "run" and a["ClientStatus"] in ("pending", "running")]


def node_usage(allocs: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    usage: dict[str, list[int]] = {}
    for alloc in live(allocs):
        used = usage.setdefault(alloc["NodeID"], [0, 0])
        used[0] += alloc["Resources"]["CPU"]
        used[1] += alloc["Resources"]["MemoryMB"]
    return {k: (v[0], v[1]) for k, v in usage.items()}


def duplicate_names(allocs: list[dict[str, Any]]) -> list[str]:
    counts = Counter(a["Name"] for a in live(allocs))
    return sorted(name for name, n in counts.items() if n > 1)


def wait_ready_nodes(observer: ShoalNode, count: int, watch: Sequence[ShoalNode]) -> list[dict[str, Any]]:
    return wait_until(f"{count} ready client nodes", lambda: nodes(observer),
                      lambda ns: sum(1 for n in ns if n["Status"] == "ready") >= count,
                      timeout=60, watch=watch)


def schedulers(node: ShoalNode) -> dict[str, Any]:
    status, body = request("GET", f"{node.url}/v1/agent/schedulers", timeout=10)
    assert status == 200, (status, body)
    return body


def set_schedulers(node: ShoalNode, num: int) -> dict[str, Any]:
    status, body = request("PUT", f"{node.url}/v1/agent/schedulers/config",
                           {"num_schedulers": num,
                            "enabled_schedulers": ["service", "batch", "system", "sysbatch", "_core"]},
                           timeout=10)
    assert status == 200, (status, body)
    return body


def restart_client(procs: ProcSet, old: ShoalNode) -> ShoalNode:
    """A new process for ``old``'s client (same address, port and data dir: the same node id)."""
    generation = sum(1 for p in procs.procs if getattr(p, "node", None) == old.node)
    client = ShoalNode(name=f"{old.name}-{generation}", argv=list(old.argv),
                       log_path=old.log_path.with_name(f"{old.log_path.stem}-{generation}.log"),
                       env=old.env, stop_signal=old.stop_signal, node=old.node, ip=old.ip,
                       http_port=old.http_port)
    procs.add(client)
    client.start()
    return client
