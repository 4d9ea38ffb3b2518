"""Which gossip members are Nomad servers, and what the raft peer set should be.

Theory of operation. Everything here is a pure function of what gossip reports
(``gossip.Member`` records turned into ``ServerParts``) and of the current raft
``Configuration``; the agent calls these functions and performs the results.

* ``parse_server`` applies agent-api.md section 2.3: a member is a server only when
  its tags say ``role=nomad`` and ``port``/``build``/``expect``/``raft_vsn`` parse.
  The raft address is the *gossip* IP with the ``port`` tag, never ``rpc_addr``.
* raft protocol (issue 3 item 4, Nomad 1.3): the cluster's effective version is the
  lowest ``raft_vsn`` among *alive* servers (``min_raft_version``). Below 3 every
  raft id is the server's address ``ip:port``; at 3 it is the node UUID
  (``raft_id_for``).
* ``bootstrap_plan`` is section 5.2 steps 2-3 (``bootstrap_expect`` discovery),
  ``bootstrap_configuration`` builds the first configuration (step 5).
* ``reconcile`` is the section 5.4 table, run by the leader: it returns at most one
  ``RaftChange`` per call, because raft applies one membership change at a time;
  the caller performs it, waits for it to commit, and calls again until nothing is
  left. During a 2 -> 3 rolling upgrade the entries keep their address ids; once
  every alive server speaks 3 each address-id entry is renamed to its UUID, one per
  call, so the number of voters never dips (no remove-then-add).
* ``Autopilot`` is section 5.4's autopilot: promotion of non-voters healthy for
  ``server_stabilization_time`` (the only state kept: when each became healthy),
  removal of raft entries gossip does not know ("stale"), and force-leave of failed
  servers, with voter removals capped so that a majority of voters always remains.

Invariants: outputs are sorted, so equal inputs give equal outputs; no change ever
removes or adds the leader's own entry (only a rename may touch it).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from gossip import Member
from raftlite import Configuration, Server, Suffrage

__all__ = ["ServerParts", "parse_server", "min_raft_version", "raft_id_for", "BootstrapPlan",
           "bootstrap_plan", "bootstrap_configuration", "RaftChange", "reconcile",
           "AutopilotConfig", "Autopilot", "AutopilotActions", "UUID_RAFT_VERSION"]

log = logging.getLogger(__name__)

UUID_RAFT_VERSION = 3
"""From this raft protocol on, servers are identified by node UUID, not address."""

# Go's strconv.Atoi accepts an optional sign and decimal digits only; Python's int()
# would also take spaces and underscores, which Nomad refuses.
_GO_INT = re.compile(r"[+-]?[0-9]+")
# hashicorp/go-version's shape: numbers with dots, optional prerelease and metadata.
_VERSION = re.compile(r"v?[0-9]+(\.[0-9]+)*"
                      r"(-?[0-9A-Za-z~-]+(\.[0-9A-Za-z~-]+)*)?"
                      r"(\+[0-9A-Za-z~-]+(\.[0-9A-Za-z~-]+)*)?")


@dataclass(frozen=True, slots=True)
class ServerParts:
    """A gossip member that counts as a Nomad server (agent-api.md 2.3)."""

    name: str
    id: str                 # `id` tag, the node UUID; "unknown" when absent
    region: str
    datacenter: str
    addr: str               # gossip IP
    port: int               # `port` tag: the rpc/raft port
    rpc_addr: str           # `rpc_addr` tag, else addr
    build: str
    raft_version: int       # `raft_vsn`, 1 when absent
    expect: int             # `expect`, 0 when absent
    bootstrap: bool
    nonvoter: bool
    status: str             # member status: alive, leaving, left, failed

    @property
    def raft_address(self) -> str:
        """``addr:port``, IPv6 in brackets, as Go's ``net.JoinHostPort`` writes it."""
        if ":" in self.addr:
            return f"[{self.addr}]:{self.port}"
        return f"{self.addr}:{self.port}"

    @property
    def is_alive(self) -> bool:
        return self.status == "alive"


def _go_int(text: str | None) -> int | None:
    if text is None or not _GO_INT.fullmatch(text):
        return None
    return int(text)


def parse_server(member: Member) -> ServerParts | None:
    """The server a member advertises, or None when it is not a server (section 2.3).

    Logs nothing: the caller decides whether "non-server in gossip pool" is worth a line.
    """
    tags = member.tags
    if tags.get("role") != "nomad":
        return None
    port = _go_int(tags.get("port"))
    if port is None or not 0 <= port <= 65535:
        return None
    build = tags.get("build")
    if build is None or not _VERSION.fullmatch(build):
        return None
    expect = _go_int(tags.get("expect", "0"))
    raft_version = _go_int(tags.get("raft_vsn", "1"))
    if expect is None or raft_version is None:
        return None
    return ServerParts(
        name=member.name, id=tags.get("id", "unknown"), region=tags.get("region", ""),
        datacenter=tags.get("dc", ""), addr=member.addr, port=port,
        rpc_addr=tags.get("rpc_addr") or member.addr, build=build, raft_version=raft_version,
        expect=expect, bootstrap="bootstrap" in tags, nonvoter="nonvoter" in tags,
        status=str(member.status))


def min_raft_version(servers: Iterable[ServerParts]) -> int:
    """The lowest ``raft_vsn`` among alive servers; 0 when none is alive."""
    versions = [s.raft_version for s in servers if s.is_alive]
    return min(versions) if versions else 0


def raft_id_for(server: ServerParts, min_version: int) -> str:
    """The raft id of ``server`` in a cluster running raft protocol ``min_version``."""
    return server.id if min_version >= UUID_RAFT_VERSION else server.raft_address


# --------------------------------------------------------------------------- bootstrap

@dataclass(frozen=True, slots=True)
class BootstrapPlan:
    """What ``bootstrap_expect`` discovery should do now (section 5.2)."""

    action: str                          # "wait" | "error" | "skip" | "bootstrap"
    reason: str                          # one line, for the log
    servers: tuple[ServerParts, ...] = ()  # for "bootstrap": every server to include


def bootstrap_plan(servers: Sequence[ServerParts], *, region: str, expect: int) -> BootstrapPlan:
    """Section 5.2 steps 2-3 over the alive servers of ``region``.

    ``expect`` below 2 gives "skip": 0 never bootstraps, 1 bootstraps alone at start
    (the caller does that with ``bootstrap_configuration([self])``). The caller still
    asks the peers for existing raft state (step 4) before acting on "bootstrap".
    """
    if expect < 2:
        return BootstrapPlan("skip", f"bootstrap_expect={expect} does not wait for peers")
    found = sorted((s for s in servers if s.region == region and s.is_alive), key=lambda s: s.name)
    for server in found:
        if server.expect != 0 and server.expect != expect:
            return BootstrapPlan("error", f"member {server.name} has expect={server.expect} but this "
                                          f"server expects {expect}; all servers must expect the same")
    for server in found:
        if server.bootstrap:
            return BootstrapPlan("skip", f"member {server.name} is in bootstrap mode; expect disabled")
    voters = sum(1 for s in found if not s.nonvoter)
    if voters < expect:
        return BootstrapPlan("wait", f"{voters} of {expect} voting servers known")
    clash = _first_clash(found)
    if clash:
        return BootstrapPlan("error", clash)
    return BootstrapPlan("bootstrap", f"{voters} voting servers known", tuple(found))


def _first_clash(servers: Sequence[ServerParts]) -> str:
    """A reason when two servers would share a raft id or address; "" otherwise."""
    version = min_raft_version(servers)
    seen: dict[str, str] = {}
    for server in servers:
        keys = {raft_id_for(server, version), server.raft_address}
        for key in sorted(keys):
            if key in seen:
                return f"members {seen[key]} and {server.name} share raft id or address {key}"
            seen[key] = server.name
    return ""


def bootstrap_configuration(servers: Sequence[ServerParts], min_version: int) -> Configuration:
    """The first configuration: every server, ``nonvoter`` ones as non-voters (5.2 step 5).

    Raises:
        ValueError: two servers would share a raft id (``bootstrap_plan`` reports it first).
    """
    entries: dict[str, Server] = {}
    for server in servers:
        raft_id = raft_id_for(server, min_version)
        if raft_id in entries:
            raise ValueError(f"two servers share raft id {raft_id}")
        suffrage = Suffrage.NONVOTER if server.nonvoter else Suffrage.VOTER
        entries[raft_id] = Server(raft_id, server.raft_address, suffrage)
    return Configuration(tuple(entries.values()))


# --------------------------------------------------------------------------- reconcile

@dataclass(frozen=True, slots=True)
class RaftChange:
    """One membership change the leader should make."""

    op: str            # "add_nonvoter" | "add_voter" | "promote" | "remove" | "rename"
    id: str            # the entry's (current) raft id
    address: str
    new_id: str = ""   # for "rename"
    reason: str = ""   # one line, for the log


def _entry_ids_of(server: ServerParts) -> set[str]:
    """Every raft id the server may have had: its UUID or its address."""
    return {server.id, server.raft_address}


def _present(server: ServerParts, configuration: Configuration, version: int) -> Server | None:
    """The configuration entry that already stands for ``server``, if any.

    At protocol 3 only ``(uuid, address)`` counts. Below 3 an entry at the server's
    address counts whether its id is the address or the UUID, as Nomad 1.3 leaves a
    matching address alone while the cluster is not fully on 3 (no needless churn).
    """
    if version >= UUID_RAFT_VERSION:
        entry = configuration.get(server.id)
        return entry if entry is not None and entry.address == server.raft_address else None
    for candidate in (server.raft_address, server.id):
        entry = configuration.get(candidate)
        if entry is not None and entry.address == server.raft_address:
            return entry
    return None


def _conflicts(server: ServerParts, configuration: Configuration, present: Server | None) -> list[Server]:
    """Entries sharing the server's id or address that are not its present entry."""
    ids = _entry_ids_of(server)
    return [e for e in configuration.servers
            if e != present and (e.id in ids or e.address == server.raft_address)]


def _self_ids(self_id: str, local: Sequence[ServerParts]) -> set[str]:
    """Every id that names the leader: ``self_id`` and, via gossip, its UUID and address."""
    ids = {self_id}
    for server in local:
        if self_id in _entry_ids_of(server):
            ids |= _entry_ids_of(server)
    return ids


def reconcile(servers: Sequence[ServerParts], configuration: Configuration, *, self_id: str,
              region: str, reaped: Iterable[str] = ()) -> list[RaftChange]:
    """The next change that brings raft closer to gossip (section 5.4); at most one.

    Args:
        servers: every gossip server known, any region and status.
        configuration: the latest raft configuration.
        self_id: the leader's raft id (its UUID or, under protocol 2, its address).
        region: the leader's region; other regions are ignored.
        reaped: names of members serf erased. Their raft entries are found through the
            member's last ``ServerParts`` in ``servers`` (any status; the caller parses
            ``MemberReaped.member``); a name gossip no longer lists at all is left to
            autopilot, which removes raft entries unknown to gossip.

    Order: renames, then removals of left or reaped servers, then removals of
    conflicting entries, then additions; each sorted by member name.
    """
    local = sorted((s for s in servers if s.region == region), key=lambda s: s.name)
    version = min_raft_version(local)
    alive = [s for s in local if s.is_alive]
    mine = _self_ids(self_id, local)
    # Entries alive servers stand on are never removed for another server's sake.
    protected = {p for p in (_present(s, configuration, version) for s in alive) if p is not None}
    for step in (_next_rename, _next_departure, _next_conflict, _next_addition):
        change = step(local=local, alive=alive, configuration=configuration, version=version,
                      mine=mine, protected=protected, reaped=set(reaped), all_servers=servers)
        if change is not None:
            assert change.op == "rename" or change.id not in mine, change
            return [change]
    return []


def _next_rename(*, alive: Sequence[ServerParts], configuration: Configuration, version: int,
                 **_: object) -> RaftChange | None:
    """At protocol 3, an entry still keyed by address gets its server's UUID."""
    if version < UUID_RAFT_VERSION:
        return None
    for server in alive:
        entry = configuration.get(server.raft_address)
        if (entry is not None and entry.address == server.raft_address
                and configuration.get(server.id) is None and server.id != "unknown"):
            return RaftChange("rename", entry.id, entry.address, new_id=server.id,
                              reason=f"every alive server speaks raft protocol {version}")
    return None


def _next_departure(*, local: Sequence[ServerParts], configuration: Configuration,
                    mine: set[str], protected: set[Server], reaped: set[str],
                    **_: object) -> RaftChange | None:
    """A left or reaped server's entries (by UUID, address id or address) go."""
    for server in local:
        if server.is_alive or not (server.status == "left" or server.name in reaped):
            continue
        why = "left" if server.status == "left" else "reaped"
        ids = _entry_ids_of(server)
        for entry in configuration.servers:
            matches = entry.id in ids or entry.address == server.raft_address
            if matches and entry.id not in mine and entry not in protected:
                return RaftChange("remove", entry.id, entry.address,
                                  reason=f"member {server.name} {why}")
    return None


def _next_conflict(*, alive: Sequence[ServerParts], configuration: Configuration, version: int,
                   mine: set[str], protected: set[Server], **_: object) -> RaftChange | None:
    """An entry sharing an alive server's id or address, with the other part different."""
    for server in alive:
        if _entry_ids_of(server) & mine and len(configuration.servers) < 3:
            continue  # section 5.4: the leader skips itself in a small configuration
        present = _present(server, configuration, version)
        for entry in _conflicts(server, configuration, present):
            if entry.id not in mine and entry not in protected:
                return RaftChange("remove", entry.id, entry.address,
                                  reason=f"member {server.name} is now {server.id} at "
                                         f"{server.raft_address}")
    return None


def _next_addition(*, alive: Sequence[ServerParts], configuration: Configuration, version: int,
                   mine: set[str], all_servers: Sequence[ServerParts],
                   **_: object) -> RaftChange | None:
    """An alive server with no entry and nothing in its way joins raft."""
    for server in alive:
        raft_id = raft_id_for(server, version)
        if raft_id in mine or _entry_ids_of(server) & mine:
            continue  # the leader is in raft by definition; never re-add it
        present = _present(server, configuration, version)
        if present is not None or _conflicts(server, configuration, present):
            continue
        if server.bootstrap and any(o.bootstrap and o.name != server.name for o in all_servers):
            log.debug("not adding server in bootstrap mode name=%s", server.name)
            continue
        if version >= UUID_RAFT_VERSION:
            return RaftChange("add_nonvoter", raft_id, server.raft_address,
                              reason=f"member {server.name} joined; autopilot promotes it")
        return RaftChange("add_voter", raft_id, server.raft_address,
                          reason=f"member {server.name} joined (raft protocol {version})")
    return None


# --------------------------------------------------------------------------- autopilot

@dataclass(frozen=True, slots=True)
class AutopilotConfig:
    """Autopilot settings, Nomad's defaults (section 5.4).

    Attributes:
        cleanup_dead_servers: remove stale entries and force-leave failed servers.
        last_contact_threshold: a non-voter heard from within this long is healthy.
            Contact counts as recent within
            ``max(last_contact_threshold, 2 * heartbeat_interval)``, so a slow
            ``raft_multiplier`` does not make every server look unhealthy.
        max_trailing_logs: a healthy non-voter's match index is at most this far
            behind the leader's last index.
        server_stabilization_time: healthy this long without a break before promotion.
        min_quorum: dead-server cleanup never leaves fewer voters than this.
        heartbeat_interval: the leader's heartbeat period (``RaftConfig.heartbeat / 10``).
    """

    cleanup_dead_servers: bool = True
    last_contact_threshold: float = 0.2
    max_trailing_logs: int = 250
    server_stabilization_time: float = 10.0
    min_quorum: int = 0
    heartbeat_interval: float = 0.1

    @property
    def contact_window(self) -> float:
        return max(self.last_contact_threshold, 2 * self.heartbeat_interval)


@dataclass(frozen=True, slots=True)
class AutopilotActions:
    """What one autopilot round asks the leader to do (each sorted)."""

    promote: tuple[str, ...] = ()       # raft ids healthy for >= stabilization time
    remove_stale: tuple[str, ...] = ()  # raft ids gossip does not know at all
    force_leave: tuple[str, ...] = ()   # member names of failed servers still in raft


def removal_budget(voters: int, min_quorum: int) -> int:
    """How many voters one round may remove: floor((voters - 1) / 2), keeping min_quorum."""
    return max(0, min((voters - 1) // 2, voters - min_quorum))


class Autopilot:
    """The leader's autopilot; its only state is when each non-voter became healthy."""

    def __init__(self, config: AutopilotConfig) -> None:
        self.config = config
        # raft id -> monotonic time since which it has been healthy without a break
        self.healthy_since: dict[str, float] = {}

    def round(self, *, configuration: Configuration, servers: Sequence[ServerParts],
              progress: Mapping[str, tuple[int, float | None]], leader_id: str,
              last_index: int, now: float) -> AutopilotActions:
        """One autopilot pass over raft and gossip (run every 10 s, and on demand)."""
        promote = self._promotions(configuration, servers, progress, last_index, now)
        if not self.config.cleanup_dead_servers:
            return AutopilotActions(promote=promote)
        stale, failed = self._cleanup(configuration, servers, leader_id)
        return AutopilotActions(promote, stale, failed)

    def is_healthy(self, raft_id: str, progress: Mapping[str, tuple[int, float | None]],
                   last_index: int, now: float) -> bool:
        """Recent contact with the leader and a log close behind its last index."""
        match_index, last_contact = progress.get(raft_id, (0, None))
        if last_contact is None or now - last_contact > self.config.contact_window:
            return False
        return last_index - match_index <= self.config.max_trailing_logs

    def _promotions(self, configuration: Configuration, servers: Sequence[ServerParts],
                    progress: Mapping[str, tuple[int, float | None]], last_index: int,
                    now: float) -> tuple[str, ...]:
        candidates = {e.id for e in configuration.servers if e.suffrage != Suffrage.VOTER}
        for gone in set(self.healthy_since) - candidates:
            del self.healthy_since[gone]
        promote = []
        for raft_id in sorted(candidates):
            server = _gossip_server(configuration.get(raft_id), servers)
            wanted = server is not None and server.is_alive and not server.nonvoter
            if not wanted or not self.is_healthy(raft_id, progress, last_index, now):
                self.healthy_since.pop(raft_id, None)
                continue
            since = self.healthy_since.setdefault(raft_id, now)
            if now - since >= self.config.server_stabilization_time:
                promote.append(raft_id)
        return tuple(promote)

    def _cleanup(self, configuration: Configuration, servers: Sequence[ServerParts],
                 leader_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Stale ids and failed member names, voter removals within the budget."""
        budget = removal_budget(len(configuration.voters()), self.config.min_quorum)
        stale: list[str] = []
        failed: list[str] = []
        # Non-voters first: removing them never costs quorum, so they need no budget.
        for voters_pass in (False, True):
            for entry in configuration.servers:
                if entry.is_voter != voters_pass or entry.id == leader_id:
                    continue
                server = _gossip_server(entry, servers)
                if server is not None and (server.status != "failed" or server.name in failed):
                    continue
                if voters_pass:
                    if budget < 1:
                        log.debug("dead server cleanup deferred id=%s", entry.id)
                        continue
                    budget -= 1
                if server is None:
                    stale.append(entry.id)
                else:
                    failed.append(server.name)
        return tuple(sorted(stale)), tuple(sorted(failed))


def _gossip_server(entry: Server | None, servers: Sequence[ServerParts]) -> ServerParts | None:
    """The gossip server a raft entry stands for (by UUID, address id or address).

    An exact id match wins over an address match, so a reused address does not
    mistake a new server for the old entry's owner.
    """
    if entry is None:
        return None
    by_address = None
    for server in sorted(servers, key=lambda s: s.name):
        if entry.id in _entry_ids_of(server):
            return server
        if by_address is None and entry.address == server.raft_address:
            by_address = server
    return by_address
