"""What the cluster tool does to a cluster: views through the API, chaos verbs, readiness.

Everything reaches the agents from outside, as a user would: HTTP on each agent's
address (``/v1/agent/members``, ``/v1/agent/self``, ``/v1/status/leader``,
``/v1/nodes``, ``/v1/agent/faults``) and signals by PID (``procs``). Calls to several
agents run in threads side by side, so one stopped (SIGSTOP) agent costs one timeout,
not one per agent.

Fault verbs follow ``agent/faults.py``: a rule set shapes the traffic of the agent it
is set on, so ``partition`` puts the same groups on every shoal agent, translated
from node names to the names the filters know (``NodeInfo.member``). Each verb is a
read-modify-write of the node's rules, so ``loss`` keeps a partition and the other way
round; ``heal`` deletes every rule everywhere. Serf agents have no fault filter: they
may be named in a partition (the shoal agents then cut them off), but they get no
rules of their own, so two serf agents in different groups still talk to each other.

Verbs validate their input before they touch anything (``ClusterError``); a node
that is down or does not answer is skipped and named in the notes they return.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, TypeVar

from . import procs
from .state import ClusterError, ClusterState, NodeInfo, save_state

__all__ = ["kill", "stop", "cont", "restart", "partition", "heal", "loss", "delay", "rejoin_all",
           "member_views", "leaders", "client_views", "node_faults", "check_ready", "Readiness",
           "http_json", "log_tail"]

T = TypeVar("T")
R = TypeVar("R")

HTTP_TIMEOUT = 2.0
KILL_WAIT = 10.0
JOIN_TIMEOUT = 20.0


# --- HTTP -----------------------------------------------------------------------------


def http_json(method: str, address: str, path: str, body: Any = None,
              timeout: float = HTTP_TIMEOUT) -> Any:
    """One API call to ``http://address/path``; the decoded JSON answer (None when empty).

    Raises:
        ClusterError: no answer, or a status other than 200 (with the agent's text).
    """
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{address}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace").strip()
        raise ClusterError(f"{method} {path} on {address}: {exc.code} {text}") from None
    except (OSError, ValueError) as exc:
        raise ClusterError(f"{method} {path} on {address}: {exc}") from None
    return json.loads(raw) if raw.strip() else None


def _each(items: Iterable[T], fn: Callable[[T], R]) -> list[tuple[T, R | ClusterError]]:
    """``fn`` on every item in threads; each result or the ClusterError it raised."""
    items = list(items)

    def run(item: T) -> R | ClusterError:
        try:
            return fn(item)
        except ClusterError as exc:
            return exc
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(zip(items, pool.map(run, items)))


def _live(nodes: Iterable[NodeInfo]) -> list[NodeInfo]:
    """The nodes whose process runs (not stopped, not dead)."""
    return [n for n in nodes if procs.process_status(n.pid, n.argv) == "running"]


# --- views ------------------------------------------------------------------------------


def member_views(state: ClusterState) -> dict[str, dict[str, str]]:
    """``{observer: {member: status}}`` from each running server's ``/v1/agent/members``."""
    views = {}
    for node, answer in _each(_live(state.of_role("server")),
                              lambda n: http_json("GET", n.http, "/v1/agent/members")):
        if not isinstance(answer, ClusterError):
            views[node.name] = {m["Name"]: m["Status"] for m in answer.get("Members") or []}
    return views


def leaders(state: ClusterState) -> dict[str, tuple[str, int, str]]:
    """``{server: (raft state, term, leader "ip:port" or "")}`` from each running server."""
    def ask(node: NodeInfo) -> tuple[str, int, str]:
        raft = (http_json("GET", node.http, "/v1/agent/self").get("stats") or {}).get("raft") or {}
        leader = http_json("GET", node.http, "/v1/status/leader")
        return str(raft.get("state", "")), int(raft.get("term", 0)), str(leader or "")
    return {node.name: answer for node, answer in _each(_live(state.of_role("server")), ask)
            if not isinstance(answer, ClusterError)}


def client_views(state: ClusterState) -> dict[str, str]:
    """``{client node name: Status}`` from ``/v1/nodes`` of the first server that answers."""
    for node in _live(state.of_role("server")):
        try:
            nodes = http_json("GET", node.http, "/v1/nodes")
        except ClusterError:
            continue
        return {n["Name"]: n["Status"] for n in nodes or []}
    return {}


def node_faults(node: NodeInfo) -> dict[str, Any] | None:
    """The rules in force on a shoal node (``GET /v1/agent/faults``; None when none)."""
    return http_json("GET", node.http, "/v1/agent/faults")


# --- signals ----------------------------------------------------------------------------


def _signal(state: ClusterState, name: str, signum: int, what: str) -> NodeInfo:
    node = state.node(name)
    if not procs.send_signal(node.pid, node.argv, signum):
        raise ClusterError(f"{name} is not running (pid {node.pid}); nothing to {what}")
    return node


def kill(state: ClusterState, name: str) -> None:
    """SIGKILL the node: it stops at once, with no leave; peers detect it as failed."""
    node = _signal(state, name, signal.SIGKILL, "kill")
    procs.wait_gone(node.pid, node.argv, KILL_WAIT)


def stop(state: ClusterState, name: str) -> None:
    """SIGSTOP the node: it freezes (sockets open, nothing answered) until ``cont``."""
    _signal(state, name, signal.SIGSTOP, "stop")


def cont(state: ClusterState, name: str) -> None:
    """SIGCONT a stopped node."""
    _signal(state, name, signal.SIGCONT, "continue")


def restart(state: ClusterState, name: str) -> int:
    """Kill the node if it runs, start it again with the same argv and data dir; the new pid.

    The state file is updated with the new pid. Fault rules live in the agent's memory,
    so a restarted node starts with none.
    """
    node = state.node(name)
    if procs.send_signal(node.pid, node.argv, signal.SIGKILL):
        if not procs.wait_gone(node.pid, node.argv, KILL_WAIT):
            raise ClusterError(f"{name} (pid {node.pid}) did not die within {KILL_WAIT:g}s")
    try:
        pid = procs.spawn(node.argv, node.log)
    except OSError as exc:
        raise ClusterError(f"cannot start {name}: {exc}") from None
    state.with_pid(name, pid)
    save_state(state)
    return pid


# --- fault rules --------------------------------------------------------------------------


def _merge(state: ClusterState, targets: list[NodeInfo],
           change: Callable[[dict[str, Any]], None]) -> list[str]:
    """Read-modify-write the rules of every target; notes for those skipped."""
    notes = []
    running = _live(targets)
    for node in targets:
        if node not in running:
            notes.append(f"{node.name}: not running ({procs.process_status(node.pid, node.argv)}), "
                         f"rules not set")

    def apply(node: NodeInfo) -> None:
        rules = node_faults(node) or {}
        rules["Seed"] = state.seed
        change(rules)
        http_json("PUT", node.http, "/v1/agent/faults", rules)
    for node, result in _each(running, apply):
        if isinstance(result, ClusterError):
            notes.append(f"{node.name}: rules not set: {result}")
    return notes


def partition(state: ClusterState, groups: list[list[str]]) -> list[str]:
    """Cut the cluster into ``groups`` of node names on every shoal agent.

    Nodes named in no group form one more group together (``agent/faults.py``).

    Returns:
        notes: unlisted nodes, serf agents the filters cannot keep apart, skipped nodes.
    Raises:
        ClusterError: no group, an empty group, an unknown node or one named twice.
    """
    if not groups or any(not group for group in groups):
        raise ClusterError("partition needs groups of node names, e.g. `partition s1,c1 s2,s3`")
    seen: dict[str, int] = {}
    for index, group in enumerate(groups):
        for name in group:
            state.node(name)
            if name in seen:
                raise ClusterError(f"{name} is in two groups ({seen[name] + 1} and {index + 1})")
            seen[name] = index
    members = [sorted(state.node(name).member for name in group) for group in groups]
    notes = []
    unlisted = [n.name for n in state.nodes if n.name not in seen]
    if unlisted:
        notes.append(f"not named, so one more group together: {','.join(unlisted)}")
    serf_groups = {seen.get(n.name, -1) for n in state.of_role("serf")}
    if len(serf_groups) > 1:
        notes.append("serf agents have no fault filter: those in different groups still reach "
                     "each other directly")

    def change(rules: dict[str, Any]) -> None:
        rules["Partitions"] = members
    return notes + _merge(state, state.shoal_nodes, change)


def heal(state: ClusterState, *, rejoin: bool = True) -> list[str]:
    """Delete every fault rule on every shoal agent; notes for those skipped.

    With ``rejoin`` each running server then joins every other gossip member (a
    push/pull each way), so both sides learn at once what the other believed and a
    member declared failed or left refutes it, instead of waiting for Serf's
    reconnect timer (``reconnect_interval``, 30 s): what an operator does after a
    network heals, with ``shoal server join``.
    """
    notes = []
    running = _live(state.shoal_nodes)
    notes += [f"{n.name}: not running, nothing to heal" for n in state.shoal_nodes if n not in running]
    for node, result in _each(running, lambda n: http_json("DELETE", n.http, "/v1/agent/faults")):
        if isinstance(result, ClusterError):
            notes.append(f"{node.name}: rules not cleared: {result}")
    if rejoin:
        notes += rejoin_all(state)
    return notes


def rejoin_all(state: ClusterState) -> list[str]:
    """Ask every running server to join every other running gossip member; notes on failures."""
    members = [n for n in _live(state.nodes) if n.role != "client"]

    def join(node: NodeInfo) -> None:
        query = "&".join(f"address={m.serf}" for m in members if m.name != node.name)
        if query:
            answer = http_json("PUT", node.http, f"/v1/agent/join?{query}", timeout=JOIN_TIMEOUT)
            if answer and answer.get("error") and not answer.get("num_joined"):
                raise ClusterError(answer["error"])
    return [f"{node.name}: rejoin failed: {result}"
            for node, result in _each([m for m in members if m.role == "server"], join)
            if isinstance(result, ClusterError)]


def _shoal_node(state: ClusterState, name: str, verb: str) -> NodeInfo:
    node = state.node(name)
    if not node.is_shoal:
        raise ClusterError(f"{name} is a serf agent: it has no fault filter, so {verb} "
                           f"applies to shoal agents only")
    return node


def loss(state: ClusterState, name: str, percent: float) -> list[str]:
    """Lose ``percent`` % of the node's outbound packets, frames and dials (other rules kept)."""
    if not 0.0 <= percent <= 100.0:
        raise ClusterError(f"loss must be a percentage within [0, 100], got {percent:g}")
    node = _shoal_node(state, name, "loss")
    return _merge(state, [node], lambda rules: rules.__setitem__("Loss", percent / 100.0))


def delay(state: ClusterState, name: str, ms: float) -> list[str]:
    """Add ``ms`` milliseconds to every outbound packet of the node (other rules kept)."""
    if not ms >= 0.0 or ms == float("inf"):
        raise ClusterError(f"delay must be a finite number of milliseconds >= 0, got {ms:g}")
    node = _shoal_node(state, name, "delay")
    return _merge(state, [node], lambda rules: rules.__setitem__("DelayMs", ms))


# --- readiness ------------------------------------------------------------------------------


@dataclass
class Readiness:
    """How far a starting cluster is; ``done`` when nothing is missing."""

    total: int
    up: list[str] = field(default_factory=list)
    converged: list[str] = field(default_factory=list)   # servers seeing every member alive
    servers: int = 0
    leader: str = ""                                      # "ip:port" every server names
    clients_ready: list[str] = field(default_factory=list)
    clients: int = 0
    missing: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not self.missing

    def line(self) -> str:
        """The one progress line ``up`` keeps updated."""
        text = (f"{len(self.up)}/{self.total} up, members converged "
                f"{len(self.converged)}/{self.servers}, leader: {self.leader or 'none'}")
        if self.clients:
            text += f", clients ready {len(self.clients_ready)}/{self.clients}"
        return text


def _answers(node: NodeInfo) -> bool:
    if node.is_shoal:
        http_json("GET", node.http, "/v1/agent/self")
        return True
    import socket
    host, port = node.serf_rpc.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=HTTP_TIMEOUT):
        return True


def check_ready(state: ClusterState) -> Readiness:
    """One look at the cluster: which nodes answer, converge, and whether a leader exists.

    Raises:
        ClusterError: a node's process has exited (with the tail of its log).
    """
    for node in state.nodes:
        if not procs.is_running(node.pid, node.argv):
            raise ClusterError(f"{node.name} exited; the end of {node.log}:\n{log_tail(node.log)}")
    servers, clients = state.of_role("server"), state.of_role("client")
    ready = Readiness(total=len(state.nodes), servers=len(servers), clients=len(clients))

    def probe(node: NodeInfo) -> bool:
        try:
            return _answers(node)
        except OSError as exc:
            raise ClusterError(str(exc)) from None
    ready.up = [n.name for n, ok in _each(state.nodes, probe) if ok is True]
    views = member_views(state)
    wanted = state.gossip_members
    ready.converged = [name for name, view in views.items()
                       if all(view.get(member) == "alive" for member in wanted)]
    named = {answer[2] for answer in leaders(state).values()}
    if len(named) == 1 and "" not in named and len(views) == len(servers):
        ready.leader = named.pop()
    statuses = client_views(state)
    ready.clients_ready = [n.name for n in clients if statuses.get(n.name) == "ready"]
    missing = [f"{n.name} does not answer" for n in state.nodes if n.name not in ready.up]
    for server in servers:
        if server.name in views and server.name not in ready.converged:
            view = views[server.name]
            odd = [f"{m}={view.get(m, 'unknown')}" for m in wanted if view.get(m) != "alive"]
            missing.append(f"{server.name} sees {', '.join(odd)}")
    if not ready.leader:
        missing.append("no raft leader named by every server")
    missing += [f"client {n.name} not registered ready ({statuses.get(n.name, 'unknown')})"
                for n in clients if n.name not in ready.clients_ready]
    ready.missing = missing
    return ready


def log_tail(path: str, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ("" when unreadable)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 65536))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
