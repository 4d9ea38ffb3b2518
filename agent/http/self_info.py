"""``GET /v1/agent/self``: the agent's configuration, its member, and its stats sections.

agent-api.md section 3.3. Every value in ``stats`` is a string. The ``config`` object
is Nomad 1.9.7's whole agent configuration (``self_config.go_config``), with Go field
names, nanosecond durations and secrets redacted.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import threading
from typing import TYPE_CHECKING, Any

import trio

from .self_config import go_config
from .jsontext import compact_json

if TYPE_CHECKING:
    from gossip.driver import GossipHandle
    from gossip.types import Member

    from ..config import AgentConfig
    from ..server import ServerRuntime

__all__ = ["go_duration", "self_document", "self_body"]

_NS = 1_000_000_000
_GO_MAX_DURATION = "2562047h47m16.854775807s"
"""``time.Duration(math.MaxInt64)``: what Nomad shows as ``last_heartbeat`` before the first one."""


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` (agent-api.md 3.3.3): ``"0s"``, ``"1.5ms"``, ``"2m3.5s"``."""
    nanos = int(round(seconds * _NS))
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < _NS:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _fraction(nanos, size) + unit
    hours, rest = divmod(nanos, 3600 * _NS)
    minutes, rest = divmod(rest, 60 * _NS)
    text = _fraction(rest, _NS) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _fraction(value: int, size: int) -> str:
    whole, frac = divmod(value, size)
    if not frac:
        return str(whole)
    digits = len(str(size)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def _strings(section: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in section.items():
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def nomad_stats(config: AgentConfig, server: ServerRuntime, members: list[Member]) -> dict[str, str]:
    regions = {m.tags.get("region", "") for m in members
               if m.tags.get("role") == "nomad" and str(m.status) not in ("left", "failed")}
    regions.add(config.region)
    is_leader = server.raft.core.role.value == "Leader"
    return _strings({"server": True, "leader": is_leader, "leader_addr": server.leader_address(),
                     "bootstrap": config.bootstrap_expect == 1, "known_regions": len(regions)})


def raft_stats(config: AgentConfig, server: ServerRuntime) -> dict[str, str]:
    core = server.raft.core
    stats = core.stats()
    configuration = core.configuration
    me = {server.server_id, server.raft_address}
    am_voter = any(s.id in me and s.is_voter for s in configuration.servers)
    other_voters = sum(1 for s in configuration.servers if s.is_voter and s.id not in me)
    if stats.role.value == "Leader":
        last_contact = "0"
    elif core.last_contact is None:
        last_contact = "never"
    else:
        last_contact = go_duration(max(trio.current_time() - core.last_contact, 0.0))
    return _strings({
        "state": stats.role.value, "term": stats.term, "last_log_index": stats.last_log_index,
        "last_log_term": stats.last_log_term, "commit_index": stats.commit_index,
        "applied_index": server.raft.applied_index, "fsm_pending": 0,
        "last_snapshot_index": stats.last_snapshot_index,
        "last_snapshot_term": stats.last_snapshot_term,
        "protocol_version": config.raft_protocol, "protocol_version_min": 0,
        "protocol_version_max": 3, "snapshot_version_min": 0, "snapshot_version_max": 1,
        "latest_configuration_index": core.configuration_index,
        "latest_configuration": configuration.describe(),
        "num_peers": other_voters if am_voter else 0, "last_contact": last_contact,
    })


def serf_stats(handle: GossipHandle, members: list[Member]) -> dict[str, str]:
    # The core's own snapshot: none of the driver counters that handle.stats() merges
    # in are shown here.
    stats = handle.core.stats()
    return _strings({
        "members": len(members),
        "failed": sum(1 for m in members if str(m.status) == "failed"),
        "left": sum(1 for m in members if str(m.status) == "left"),
        "health_score": stats.health_score, "member_time": stats.member_time,
        "event_time": stats.event_time, "query_time": stats.query_time,
        "intent_queue": stats.intent_queue, "event_queue": stats.event_queue,
        "query_queue": stats.query_queue, "encrypted": stats.encrypted, "coordinate_resets": 0,
    })


@functools.lru_cache(maxsize=1)
def _runtime_constants() -> tuple[str, str, str, str]:
    """kernel.name, arch, version, cpu_count: fixed for the life of the process."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    version = "python" + ".".join(str(p) for p in sys.version_info[:3])
    return (sys.platform.rstrip("0123456789") or sys.platform, arch, version, str(os.cpu_count() or 1))


def runtime_stats() -> dict[str, str]:
    kernel, arch, version, cpu_count = _runtime_constants()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return {"kernel.name": kernel, "arch": arch, "version": version, "max_procs": str(usable),
            "goroutines": str(_task_count() + threading.active_count()), "cpu_count": cpu_count}


def _task_count() -> int:
    """Live trio tasks, walked from the root task."""
    root = trio.lowlevel.current_root_task()
    if root is None:
        return 0
    count, stack = 0, [root]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def client_stats(client: Any) -> dict[str, str]:
    """``stats.client`` (agent-api.md 3.3.3): node id, servers, allocations, heartbeat."""
    if client.last_heartbeat is None:
        # Nomad prints time.Since of the zero time, which saturates at Go's largest duration.
        since = _GO_MAX_DURATION
    else:
        since = go_duration(max(trio.current_time() - client.last_heartbeat, 0.0))
    return _strings({"node_id": client.node_id, "known_servers": ",".join(sorted(client.servers())),
                     "num_allocations": client.num_allocations, "last_heartbeat": since,
                     "heartbeat_ttl": go_duration(client.heartbeat_ttl)})


def self_document(config: AgentConfig, node_id: str, handle: GossipHandle | None,
                  server: ServerRuntime | None, member: dict[str, Any] | None,
                  client: Any = None) -> dict[str, Any]:
    """The whole ``/v1/agent/self`` answer: ``config``, ``member``, ``stats``."""
    return {"config": go_config(config), "member": member,
            "stats": _stats(config, handle, server, client)}


def self_body(config: AgentConfig, node_id: str, handle: GossipHandle | None,
              server: ServerRuntime | None, member: dict[str, Any] | None,
              client: Any = None) -> str:
    """``self_document`` as compact JSON, the same text as ``json.dumps`` of it gives.

    The ``config`` object (most of the bytes) never changes, so its text is encoded once
    per configuration and spliced in; only ``member`` and ``stats`` are encoded per call.
    """
    member_text = compact_json(member)
    stats_text = compact_json(_stats(config, handle, server, client))
    return f'{{"config":{_config_text(config)},"member":{member_text},"stats":{stats_text}}}'


@functools.lru_cache(maxsize=16)
def _config_text(config: AgentConfig) -> str:
    return compact_json(go_config(config))


def _stats(config: AgentConfig, handle: GossipHandle | None, server: ServerRuntime | None,
           client: Any) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    if client is not None:
        stats["client"] = client_stats(client)
    if server is not None and handle is not None:
        members = handle.members()
        stats["nomad"] = nomad_stats(config, server, members)
        stats["raft"] = raft_stats(config, server)
        stats["serf"] = serf_stats(handle, members)
        stats["vault"] = None
    stats["runtime"] = runtime_stats()
    return stats
