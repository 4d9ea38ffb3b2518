"""What the teaching UI shows: every server's view of every member, gathered.

Theory of operation. ``GET /v1/ui/state`` answers one JSON document: a matrix whose
rows are *observers* (every shoal server this agent knows through gossip) and whose
columns are *members* (every gossip member any observer knows: shoal servers and
real Serf agents alike), plus each observer's Raft role and term, its scheduler
workers counted by status, and its fault rules.

Each observer describes itself with ``local_view`` (this agent directly, the others
through the RPC ``Agent.UIView`` of ``agent/ui_rpc.py``); ``gather_state`` asks every
server alive in this agent's gossip view at once, each under ``VIEW_TIMEOUT``, and
``build_state`` lays the answers out. A server this agent sees as failed or left is
not asked: its row says why it is empty. A server that does not answer (killed and
not yet detected, or cut off by a fault rule) gets a row with its error.

A cell's status is Serf's member status (``alive``, ``leaving``, ``left``,
``failed``), except that a member Serf still calls alive while memberlist suspects
it reads ``suspect``: suspicion lives only inside memberlist (Serf has no such
status), and the observer's own memberlist record gives it, with the incarnation
number the observer holds for that member (``cell_status``).

The chaos helpers (``chaos_targets``, ``chaos_rules``) decide, as pure functions,
which servers a UI chaos action sets rules on and what the rules become: an
isolation is applied on the observer's side of the cut (every other alive server,
never the isolated one, unless the UI runs on the isolated server itself), so that
``heal`` from the same UI can always reach every server that holds a rule.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["VIEW_TIMEOUT", "CHAOS_ACTIONS", "ChaosError", "cell_status", "member_cells",
           "worker_counts", "local_view", "build_state", "gather_state", "parse_chaos",
           "chaos_targets", "chaos_rules"]

log = logging.getLogger(__name__)

VIEW_TIMEOUT = 1.5
"""Seconds one server may take to send its view; the page polls again a second later."""

CHAOS_ACTIONS = ("isolate", "loss", "heal")
"""What the UI's chaos buttons do (``POST /v1/ui/chaos``)."""

_MEMBERLIST_STATES = {0: "alive", 1: "suspect", 2: "dead", 3: "left"}
"""``gossip.messages.NodeState`` values, as the UI spells them."""


class ChaosError(ValueError):
    """A chaos request that cannot be done; one line naming what is wrong."""


# --- one observer's view (pure) ----------------------------------------------------


def cell_status(serf_status: str, memberlist_state: str | None) -> str:
    """The status a cell shows: Serf's, or ``suspect`` while memberlist suspects an alive member."""
    if serf_status == "alive" and memberlist_state == "suspect":
        return "suspect"
    return serf_status


def member_cells(members: Iterable[Any], nodes: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """``{name: {"Status", "Incarnation", "Addr", "Kind"}}`` for one observer.

    Args:
        members: ``gossip.Member`` records (Serf's view: name, addr, port, tags, status).
        nodes: ``gossip.NodeView`` records of the same observer's memberlist (state and
            incarnation); a member without one has ``Incarnation`` None.
    """
    by_name = {node.name: node for node in nodes}
    cells: dict[str, dict[str, Any]] = {}
    for member in sorted(members, key=lambda m: m.name):
        node = by_name.get(member.name)
        state = _MEMBERLIST_STATES.get(int(node.state)) if node is not None else None
        cells[member.name] = {
            "Status": cell_status(str(member.status), state),
            "Incarnation": int(node.incarnation) if node is not None else None,
            "Addr": f"{member.addr}:{member.port}",
            "Kind": "server" if member.tags.get("role") == "nomad" else "serf",
        }
    return cells


def worker_counts(statuses: Iterable[str]) -> dict[str, int]:
    """How many scheduler workers are in each status, by status name."""
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return dict(sorted(counts.items()))


def local_view(api: Any) -> dict[str, Any]:
    """This server's row: its members, Raft role and term, workers and fault rules.

    The answer of RPC ``Agent.UIView`` and of the serving agent's own row. Reads the
    running agent only; never waits.
    """
    handle = api.handle
    core = getattr(handle, "core", None)
    memberlist = getattr(core, "memberlist", None)
    nodes = memberlist.nodes() if memberlist is not None else []
    view: dict[str, Any] = {"Name": api.config.member_name, "Reachable": True, "Error": "",
                            "Members": member_cells(handle.members(), nodes)}
    server = api.server
    if server is not None:
        stats = server.raft.core.stats()
        leader = server.leader_address()
        names = {parts.raft_address: parts.name for parts in server.servers()}
        if leader == server.raft_address:
            names[leader] = api.config.member_name
        view["Raft"] = {"State": stats.role.value, "Term": int(stats.term),
                        "Leader": names.get(leader, leader)}
        supervisor = server.supervisor
        workers = supervisor.workers() if supervisor is not None else []
        view["Workers"] = worker_counts(str(worker.status) for worker in workers)
    else:
        view["Raft"] = None
        view["Workers"] = {}
    fault_filter = api.faults_filter
    rules = fault_filter.rules if fault_filter is not None else None
    view["Faults"] = {"Enabled": fault_filter is not None,
                      "Rules": None if rules is None else rules.to_json()}
    return view


# --- the whole matrix (pure) -------------------------------------------------------


def build_state(serving: str, fault_injection: bool, servers: Sequence[tuple[str, str]],
                views: Mapping[str, dict[str, Any] | str]) -> dict[str, Any]:
    """The ``/v1/ui/state`` document.

    Args:
        serving: the member name of the agent answering (``Observer``).
        fault_injection: whether that agent takes fault rules (the chaos buttons).
        servers: ``(name, status)`` of every server in the serving agent's gossip view.
        views: per server name, its ``local_view`` or the error text of asking it.
    """
    observers = []
    columns: dict[str, str] = {}
    for name, status in sorted(servers):
        answer = views.get(name)
        if isinstance(answer, dict):
            row = dict(answer)
            for member, cell in row.get("Members", {}).items():
                columns.setdefault(member, cell.get("Kind", "serf"))
        else:
            reason = answer if isinstance(answer, str) else f"{status} in {serving}'s view; not asked"
            row = {"Name": name, "Reachable": False, "Error": reason, "Members": {},
                   "Raft": None, "Workers": {}, "Faults": None}
        row["Status"] = status
        observers.append(row)
        columns.setdefault(name, "server")
    return {"Observer": serving, "FaultInjection": fault_injection,
            "Members": [{"Name": name, "Kind": columns[name]} for name in sorted(columns)],
            "Observers": observers}


# --- gathering (trio) --------------------------------------------------------------


async def gather_state(api: Any, token: str) -> dict[str, Any]:
    """Ask every alive server for its view at once; ``build_state`` of the answers.

    Must run on a server agent (a client-only agent relays RPC ``Agent.UIState``).
    """
    import trio

    from .agent_info_rpc import api_error_from_rpc
    from .forward import rpc_address
    from .rpc import RpcError

    server = api.server
    me = api.config.member_name
    parts = server.servers()
    views: dict[str, dict[str, Any] | str] = {me: local_view(api)}

    async def ask(name: str, address: str) -> None:
        try:
            answer = await server.pool.call(address, "Agent.UIView", {"AuthToken": token},
                                            VIEW_TIMEOUT)
            views[name] = answer if isinstance(answer, dict) else "malformed Agent.UIView answer"
        except RpcError as exc:
            views[name] = f"no answer: {api_error_from_rpc(str(exc)).message}"

    async with trio.open_nursery() as nursery:
        for p in parts:
            if p.name != me and p.is_alive:
                nursery.start_soon(ask, p.name, rpc_address(p.rpc_addr, p.port))
    servers = [(p.name, p.status) for p in parts]
    if not any(name == me for name, _ in servers):
        servers.append((me, "alive"))
    return build_state(me, api.faults_filter is not None, servers, views)


# --- chaos (pure) ------------------------------------------------------------------


def parse_chaos(body: Any) -> tuple[str, str, float]:
    """``(action, member, loss)`` from a ``POST /v1/ui/chaos`` body.

    Raises:
        ChaosError: not an object, an unknown action, a missing member or a bad percent.
    """
    if not isinstance(body, dict):
        raise ChaosError("chaos request must be a JSON object")
    action = body.get("Action")
    if action not in CHAOS_ACTIONS:
        raise ChaosError(f"Action must be one of {', '.join(CHAOS_ACTIONS)}, got {action!r}")
    member = body.get("Member", "")
    if action != "heal" and (not isinstance(member, str) or member == ""):
        raise ChaosError(f"{action} needs a Member name")
    loss = 0.0
    if action == "loss":
        percent = body.get("Percent")
        if (not isinstance(percent, (int, float)) or isinstance(percent, bool)
                or not 0 < percent <= 100):
            raise ChaosError(f"Percent must be a number in (0, 100], got {percent!r}")
        loss = float(percent) / 100.0
    return action, member if isinstance(member, str) else "", loss


def chaos_targets(action: str, member: str, serving: str, servers: Iterable[str]) -> list[str]:
    """The servers whose fault rules an action changes, the serving agent first.

    ``isolate``: the serving agent's side, so heal from the same page reaches them all
    (the member itself when it is the serving agent). ``loss``: the member's own agent
    (loss is outbound, so it must be a shoal server). ``heal``: every server given
    (the caller passes the failed ones too, since a rule may be what cut them off).

    Raises:
        ChaosError: loss on a member that is not an alive shoal server.
    """
    alive = sorted(set(servers) | {serving})
    if action == "isolate":
        targets = [serving] if member == serving else [n for n in alive if n != member]
    elif action == "loss":
        if member not in alive:
            raise ChaosError(f"loss applies to the outbound traffic of a shoal server; "
                             f"{member} is not an alive server")
        targets = [member]
    else:
        targets = alive
    return sorted(targets, key=lambda name: (name != serving, name))


def chaos_rules(current: Mapping[str, Any] | None, action: str, member: str,
                loss: float) -> dict[str, Any] | None:
    """A server's new fault rules (``/v1/agent/faults`` JSON) after an action; None clears.

    ``isolate`` puts the member in a partition group of its own (taking it out of any
    other group) and keeps every other rule; ``loss`` sets the loss and keeps the rest.
    """
    if action == "heal":
        return None
    rules = {"DropTo": [], "DropFrom": [], "Loss": 0, "DelayMs": 0, "Partitions": [], "Seed": 0}
    if current:
        rules.update({key: current[key] for key in rules if key in current})
    if action == "isolate":
        groups = [[name for name in group if name != member] for group in rules["Partitions"]]
        rules["Partitions"] = sorted([g for g in groups if g] + [[member]])
    elif action == "loss":
        rules["Loss"] = loss
    else:
        raise ChaosError(f"unknown chaos action {action!r}")
    return rules
