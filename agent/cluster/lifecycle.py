"""Bringing a local cluster up and down, and the status table.

``up`` refuses a folder whose cluster still runs, replaces a stale one (every pid
gone), picks a free /24 loopback block, writes each shoal node's ``agent.hcl``, starts
every process (saving the state after each, so ``down`` finds even a half-started
cluster), and waits until ``ops.check_ready`` finds nothing missing. Past the deadline
it stops what it started, removes the state file and says what was missing.
``down`` stops every recorded process by PID and removes the state file; it is
idempotent.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from . import ops, procs
from .state import (STATE_FILE, ClusterError, ClusterState, NodeInfo, agent_hcl, check_counts,
                    load_state,
                    node_ports, plan_block, plan_cluster, remove_state, save_state)

__all__ = ["up", "down", "status_rows", "Row", "BLOCK_ATTEMPTS"]

BLOCK_ATTEMPTS = 32


def _running(state: ClusterState) -> list[NodeInfo]:
    return [n for n in state.nodes if procs.is_running(n.pid, n.argv)]


def _clear_stale(directory: Path, note: Callable[[str], None]) -> None:
    """Refuse a live cluster in ``directory``; remove a stale one's state and node folders."""
    if not (directory / STATE_FILE).exists():
        return
    old = load_state(directory)
    alive = _running(old)
    if alive:
        listed = ", ".join(f"{n.name} (pid {n.pid})" for n in alive)
        raise ClusterError(f"a cluster is already running in {directory}: {listed}; "
                           f"stop it with `shoal cluster down -dir {directory}` first")
    note(f"replacing the stale cluster state in {directory} (no process of it runs)")
    for node in old.nodes:
        shutil.rmtree(directory / node.name, ignore_errors=True)
    remove_state(directory)


def _free_block(directory: Path, seed: int, plan: Callable[[str], ClusterState]) -> ClusterState:
    """The first planned cluster whose every address and port is free to bind."""
    for attempt in range(BLOCK_ATTEMPTS):
        state = plan(plan_block(seed, directory, attempt))
        if all(procs.port_free(n.ip, port, udp=udp) for n in state.nodes
               for port, udp in node_ports(n.role)):
            return state
    raise ClusterError(f"no free loopback block found in {BLOCK_ATTEMPTS} tries (seed {seed}); "
                       "is 127.0.0.0/8 routed to lo?")


def _prepare(node: NodeInfo) -> None:
    """Make the node's folder; a data dir left by an earlier cluster of ours is wiped."""
    home = Path(node.log).parent
    home.mkdir(parents=True, exist_ok=True)
    if node.is_shoal:
        if Path(node.config).exists() and Path(node.data_dir).exists():
            shutil.rmtree(node.data_dir)
        Path(node.config).write_text(agent_hcl(node.name))


def up(directory: str | os.PathLike[str], *, servers: int = 3, clients: int = 2, serfs: int = 0,
       seed: int | None = None, timeout: float = 60.0, agent_flags: Sequence[str] = (),
       progress: Callable[[ops.Readiness], None] = lambda r: None,
       note: Callable[[str], None] = lambda text: None) -> ClusterState:
    """Start a cluster in ``directory`` and wait until it is ready; its state.

    Raises:
        ClusterError: a live cluster in the folder, bad counts, no serf binary, no free
            block, a process that exits, or the deadline (everything started is stopped).
    """
    root = Path(os.path.abspath(directory))
    check_counts(servers, clients, serfs)
    serf_binary = procs.serf_binary()
    if serfs and serf_binary is None:
        raise ClusterError(f"-serf {serfs} needs the `serf` binary on PATH (Debian: apt-get "
                           "install serf); start without -serf, or install it")
    root.mkdir(parents=True, exist_ok=True)
    _clear_stale(root, note)
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "big")
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def plan(block: str) -> ClusterState:
        return plan_cluster(root, block, servers=servers, clients=clients, serfs=serfs, seed=seed,
                            python=sys.executable, serf_binary=serf_binary, created=created,
                            agent_flags=agent_flags)
    state = _free_block(root, seed, plan)
    block = state.nodes[0].ip.rsplit(".", 1)[0]
    note(f"starting {len(state.nodes)} nodes on {block}.0/24 (seed {seed}) in {root}")
    save_state(state)
    try:
        for node in state.nodes:
            _prepare(node)
            try:
                pid = procs.spawn(node.argv, node.log)
            except OSError as exc:
                raise ClusterError(f"cannot start {node.name}: {exc}") from None
            state.with_pid(node.name, pid)
            save_state(state)
        _wait_ready(state, timeout, progress)
    except BaseException:
        down(state)
        raise
    return state


def _wait_ready(state: ClusterState, timeout: float,
                progress: Callable[[ops.Readiness], None]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        ready = ops.check_ready(state)
        progress(ready)
        if ready.done:
            return
        if time.monotonic() >= deadline:
            raise ClusterError(f"the cluster was not ready after {timeout:g}s ({ready.line()}); "
                               f"missing: {'; '.join(ready.missing)}; logs in {state.dir}")
        time.sleep(0.25)


def down(state: ClusterState, *, grace: float = 10.0) -> list[str]:
    """Stop every process of ``state`` by PID and remove its state file; the names stopped."""
    alive = _running(state)
    procs.stop_processes([(n.pid, n.argv) for n in alive], grace=grace)
    remove_state(state.dir)
    return [n.name for n in alive]


@dataclass(frozen=True)
class Row:
    """One line of the status table."""

    name: str
    role: str
    address: str
    ports: str
    pid: int
    status: str
    leader: str


def _ports(node: NodeInfo) -> str:
    def port(address: str) -> str:
        return address.rsplit(":", 1)[1]
    if node.role == "serf":
        return f"serf {port(node.serf)} rpc {port(node.serf_rpc)}"
    text = f"http {port(node.http)} rpc {port(node.rpc)}"
    return text + (f" serf {port(node.serf)}" if node.serf else "")


def _seen(statuses: list[str]) -> str:
    """How the servers see one node: one word when they agree, else counts."""
    if not statuses:
        return "unseen"
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    return next(iter(counts)) if len(counts) == 1 else " ".join(f"{s}:{c}" for s, c in counts.items())


def status_rows(state: ClusterState) -> tuple[list[Row], str]:
    """The table rows (process state, then what the servers see) and a leader line."""
    views = ops.member_views(state)
    raft = ops.leaders(state)
    nodes = ops.client_views(state)
    rows = []
    leader_addr = next((addr for _, _, addr in raft.values() if addr), "")
    for node in state.nodes:
        process = procs.process_status(node.pid, node.argv)
        if node.role == "client":
            seen = nodes.get(node.name, "unregistered")
        else:
            seen = _seen([view[node.member] for view in views.values() if node.member in view])
        role_state = raft[node.name][0].lower() if node.name in raft else ""
        rows.append(Row(node.name, node.role, node.ip, _ports(node), node.pid,
                        f"{process}, {seen}", role_state))
    terms = sorted({t for _, t, _ in raft.values()})
    leader_name = next((n.name for n in state.of_role("server") if n.rpc == leader_addr), "")
    line = (f"leader: {leader_name} ({leader_addr}), term {terms[-1]}" if leader_name
            else "leader: none")
    return rows, line
