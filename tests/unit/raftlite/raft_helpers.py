"""A small in-memory network of ``RaftCore``s for unit tests (etcd raft_test.go's style).

``Network`` owns N cores, a tiny dict-backed store per core that applies ``Persist``
outputs, an explicit clock ``now`` and a FIFO of messages in flight. Delivery is
instant; ``drop``/``cut``/``isolate``/``heal`` decide which links carry messages, and
``intercept`` lets a test hold or rewrite messages. Outputs are performed in the
driver's order: every ``Persist`` of a batch, then the sends, then ``Restore``/``Apply``.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

from raftlite import (Apply, Configuration, Entry, Message, Persist, PersistentState, RaftConfig,
                      Restore, RoleChanged, Send, Server, Snapshot, SnapshotWanted, Suffrage)
from raftlite.core import RaftCore
from raftlite.types import Role

CONFIG = RaftConfig(heartbeat_timeout=1.0, election_timeout=1.0, leader_lease_timeout=0.5,
                    commit_timeout=0.05)


@dataclass
class TinyStorage:
    """Term, vote, snapshot and entries, changed only through ``Persist``."""

    term: int = 0
    voted_for: str | None = None
    snapshot: Snapshot | None = None
    entries: dict[int, Entry] = field(default_factory=dict)
    persists: int = 0

    def apply(self, persist: Persist) -> None:
        """Apply one ``Persist`` in its documented field order."""
        self.persists += 1
        self.term, self.voted_for = persist.term, persist.voted_for
        if persist.snapshot is not None:
            self.snapshot = persist.snapshot
        if persist.log_start is not None:
            self.entries = {i: e for i, e in self.entries.items() if i >= persist.log_start}
        if persist.truncate_from is not None:
            self.entries = {i: e for i, e in self.entries.items() if i < persist.truncate_from}
        for entry in persist.entries:
            assert not self.entries or entry.index <= max(self.entries) + 1, "gap in stored log"
            self.entries[entry.index] = entry

    def load(self) -> PersistentState:
        return PersistentState(term=self.term, voted_for=self.voted_for, snapshot=self.snapshot,
                               entries=tuple(self.entries[i] for i in sorted(self.entries)))


@dataclass
class Node:
    """One server: its core, its store and what its state machine saw."""

    core: RaftCore
    storage: TinyStorage
    applied: list[Entry] = field(default_factory=list)
    restored: list[Snapshot] = field(default_factory=list)
    role_changes: list[RoleChanged] = field(default_factory=list)
    snapshot_wanted: list[int] = field(default_factory=list)
    alive: bool = True

    def commands(self) -> list[bytes]:
        """Data of the COMMAND entries applied, in order."""
        return [e.data for e in self.applied if e.kind == 0]


def address_of(node_id: str) -> str:
    return f"10.0.0.{node_id.lstrip('n') or '0'}:4647"


class Network:
    """N raft cores on a lossless, instant, controllable network."""

    def __init__(self, ids: Iterable[str] = ("n1", "n2", "n3"), *, seed: int = 1,
                 config: RaftConfig = CONFIG, bootstrap: bool = True,
                 nonvoters: Iterable[str] = ()) -> None:
        self.seed = seed
        self.config = config
        self.now = 0.0
        self.nodes: dict[str, Node] = {}
        self.blocked: set[tuple[str, str]] = set()
        self.in_flight: deque[tuple[str, Send]] = deque()
        self.delivered: list[tuple[str, str, Message]] = []
        # intercept(source, send) -> the Send to deliver (maybe rewritten), or None to drop.
        self.intercept: Callable[[str, Send], Send | None] | None = None
        self.logger = logging.getLogger("tests.raftlite")
        ids = list(ids)
        for node_id in ids:
            self.add_node(node_id)
        if bootstrap:
            nonvoting = set(nonvoters)
            configuration = Configuration(tuple(
                Server(i, address_of(i), Suffrage.NONVOTER if i in nonvoting else Suffrage.VOTER)
                for i in ids))
            for node_id in ids:
                self.nodes[node_id].core.bootstrap(configuration, self.now)
            self.pump()

    # ------------------------------------------------------------------ membership of the test

    def add_node(self, node_id: str, *, state: PersistentState | None = None,
                 aliases: Iterable[str] = (), storage: TinyStorage | None = None,
                 address: str | None = None, server_id: str | None = None) -> Node:
        """Create (or recreate) a core from ``state`` (default: its storage's).

        ``node_id`` names the node in the test; ``server_id`` (default the same) is
        the raft id it runs under.
        """
        storage = storage or TinyStorage()
        core = RaftCore(self.config, server_id=server_id or node_id,
                        address=address or address_of(node_id),
                        state=state or storage.load(),
                        rng=random.Random(f"{self.seed}/{node_id}/raft"),
                        log=logging.LoggerAdapter(self.logger, {"node": node_id}),
                        now=self.now, aliases=aliases)
        node = Node(core, storage)
        self.nodes[node_id] = node
        self.collect(node_id)
        return node

    def restart(self, node_id: str, *, aliases: Iterable[str] = (),
                server_id: str | None = None) -> Node:
        """Crash and restart a node from what it persisted (maybe under a new id)."""
        old = self.nodes[node_id]
        old.core.shutdown()
        return self.add_node(node_id, storage=old.storage, aliases=aliases,
                             address=old.core.address,
                             server_id=server_id or old.core.server_id)

    def core(self, node_id: str) -> RaftCore:
        return self.nodes[node_id].core

    # ------------------------------------------------------------------ links

    def cut(self, a: str, b: str) -> None:
        """Drop every message between ``a`` and ``b`` both ways."""
        self.blocked |= {(a, b), (b, a)}

    def isolate(self, node_id: str) -> None:
        for other in self.nodes:
            if other != node_id:
                self.cut(node_id, other)

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between different groups."""
        groups = [set(g) for g in groups]
        for i, group in enumerate(groups):
            for other in groups[i + 1:]:
                for a in group:
                    for b in other:
                        self.cut(a, b)

    def heal(self) -> None:
        self.blocked.clear()

    # ------------------------------------------------------------------ running

    def _route(self, send: Send) -> str | None:
        for node_id, node in self.nodes.items():
            if node.core.address == send.to_address:
                return node_id
        return None

    def collect(self, node_id: str) -> None:
        """Perform one core's outputs in the driver's order (Persist, Send, Apply, ...)."""
        node = self.nodes[node_id]
        outputs = node.core.take_outputs()
        for output in outputs:
            if isinstance(output, Persist):
                node.storage.apply(output)
        for output in outputs:
            if isinstance(output, Send):
                self.in_flight.append((node_id, output))
        for output in outputs:
            if isinstance(output, Restore):
                node.restored.append(output.snapshot)
                node.applied = [e for e in node.applied if e.index <= output.snapshot.index]
            elif isinstance(output, Apply):
                node.applied.extend(output.entries)
            elif isinstance(output, RoleChanged):
                node.role_changes.append(output)
            elif isinstance(output, SnapshotWanted):
                node.snapshot_wanted.append(output.applied_index)

    def pump(self, limit: int = 100_000) -> int:
        """Deliver messages until none is in flight; returns how many were delivered."""
        count = 0
        while self.in_flight:
            source, send = self.in_flight.popleft()
            target = self._route(send)
            if target is None or (source, target) in self.blocked:
                continue
            if not self.nodes[source].alive or not self.nodes[target].alive:
                continue
            if self.intercept is not None:
                replaced = self.intercept(source, send)
                if replaced is None:
                    continue
                send = replaced
            self.delivered.append((source, target, send.message))
            self.nodes[target].core.receive(send.message, self.now)
            self.collect(target)
            count += 1
            assert count < limit, "message storm"
        return count

    def tick(self, dt: float = 0.01) -> None:
        """Advance the clock by ``dt``, run due timers on every core, deliver."""
        self.now += dt
        for node_id in sorted(self.nodes):
            node = self.nodes[node_id]
            if not node.alive:
                continue
            deadline = node.core.next_deadline()
            if deadline is not None and deadline <= self.now:
                node.core.handle_timers(self.now)
                self.collect(node_id)
        self.pump()

    def run(self, duration: float, dt: float = 0.01) -> None:
        end = self.now + duration
        while self.now < end - 1e-9:
            self.tick(dt)

    def run_until(self, predicate: Callable[[], bool], timeout: float = 30.0,
                  dt: float = 0.01) -> None:
        """Tick until ``predicate()``; fail with the seed and roles after ``timeout``."""
        end = self.now + timeout
        while not predicate():
            if self.now >= end:
                raise AssertionError(f"timed out (seed={self.seed}): {self.describe()}")
            self.tick(dt)

    # ------------------------------------------------------------------ views

    def leaders(self) -> list[str]:
        return sorted(i for i, n in self.nodes.items()
                      if n.alive and n.core.role is Role.LEADER)

    def elect(self, timeout: float = 30.0) -> str:
        """Run until exactly one live leader exists that every live node follows."""
        def settled() -> bool:
            leaders = self.leaders()
            if len(leaders) != 1:
                return False
            return all(n.core.leader_id == self.nodes[leaders[0]].core._self_id
                       for n in self.nodes.values() if n.alive and n.core.configuration.get(
                           n.core._self_id) is not None)
        self.run_until(settled, timeout)
        return self.leaders()[0]

    def propose(self, leader: str, *datas: bytes) -> list[int]:
        indexes = [self.core(leader).propose(d, self.now) for d in datas]
        self.collect(leader)
        self.pump()
        return indexes

    def describe(self) -> str:
        return ", ".join(f"{i}:{n.core.role.value}/t{n.core.term}/c{n.core.commit_index}"
                         f"/l{n.core.last_index}" for i, n in sorted(self.nodes.items()))

    def count(self, kind: type, source: str | None = None, target: str | None = None) -> int:
        """Messages of ``kind`` delivered (from ``source`` to ``target`` when given)."""
        return sum(1 for s, t, m in self.delivered if isinstance(m, kind)
                   and (source is None or s == source) and (target is None or t == target))
