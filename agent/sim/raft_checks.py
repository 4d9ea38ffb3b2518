"""The Raft paper's safety properties, checked incrementally as a simulation runs.

Theory of operation. ``SafetyChecker`` watches what every server of a simulated
cluster does, through the same outputs a driver sees, and raises
``RaftInvariantViolation`` the moment one of the properties of the Raft paper
(figure 3) fails. The simulation calls it after every batch of outputs; tests can
also feed it a fabricated history to show it catches one.

* Election safety: at most one leader per term. ``role_changed`` records the leader
  of each term from ``RoleChanged(LEADER)`` and from the leader a follower names, so
  it holds across restarts and across servers.
* Log matching: if two logs hold an entry with the same index and term, they are
  identical up to it. The checker mirrors every server's durable log (the ``Persist``
  outputs, applied as storage applies them) and keeps, for each ``(index, term)``
  ever appended anywhere, the entry's kind, data and the term of the entry before it.
  By induction on the index, two logs that agree on ``(index, term)`` and on every
  such record agree on their whole prefix, so checking each appended entry against
  the record is enough, and costs O(1) per entry.
* Leader completeness: an entry committed by the leader of term T is in the log of
  every leader of a term above T, whatever the real-time order of the commit and
  the election. Commits are recorded with the term of the leader that committed
  them (``leader_committed``) or, from an ``Apply``, with the applier's current
  term, an upper bound, which keeps the check sound. When a server becomes leader,
  every recorded commit of a lower term must be in its mirrored log (or under its
  snapshot); when a commit is recorded, every current leader of a higher term must
  hold it. A server may hold a stale entry at a committed index (it will be cut),
  but never cuts the committed entry itself.
* State machine safety: no two servers apply different entries at one index, each
  server applies indexes in order without gaps, and a ``Restore`` only moves a state
  machine to a snapshot at or past where it was. Every state machine folds the
  entries it applies into a running digest; equal digests at an index mean equal
  states, so snapshots and final states are compared by digest.

The module also holds what a run is made of and reports: ``raft_plan`` draws a
fault plan aimed at Raft (some faults hit whoever leads when they start), and
``SimReport`` is the result of ``agent.sim.raft.run``.
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass, field
from typing import Callable, Sequence

import msgpack

from raftlite.events import Persist
from raftlite.types import Entry, Role, Snapshot

from .network import Clog, FaultPlan, Partition, ProcessFault

_ENTRY_HEAD = struct.Struct("!QQB")


class RaftInvariantViolation(AssertionError):
    """A simulated Raft cluster broke a safety property."""


def fold_digest(digest: bytes, entry: Entry) -> bytes:
    """The state digest after applying ``entry`` to a state whose digest is ``digest``."""
    h = hashlib.blake2b(digest, digest_size=16)
    h.update(_ENTRY_HEAD.pack(entry.index, entry.term, int(entry.kind)))
    h.update(entry.data)
    return h.digest()


class StateMachine:
    """The simulation's replicated state: commands applied, folded into a digest.

    ``index`` is the last index applied; ``digest`` identifies the whole state
    (all entries applied so far, in order); ``commands`` counts COMMAND entries.
    """

    __slots__ = ("index", "digest", "commands")

    def __init__(self, index: int = 0, digest: bytes = b"", commands: int = 0) -> None:
        self.index = index
        self.digest = digest
        self.commands = commands

    def apply(self, entry: Entry) -> None:
        self.index = entry.index
        self.digest = fold_digest(self.digest, entry)
        if entry.kind == 0:
            self.commands += 1

    def snapshot(self) -> bytes:
        """The bytes handed to ``compact()``: index, digest and command count."""
        return msgpack.packb([self.index, self.digest, self.commands], use_bin_type=True)

    @classmethod
    def from_snapshot(cls, data: bytes) -> "StateMachine":
        index, digest, commands = msgpack.unpackb(data, raw=False)
        return cls(index, digest, commands)


@dataclass(slots=True)
class LogMirror:
    """One server's durable log as its ``Persist`` outputs left it: terms by index."""

    snapshot_index: int = 0
    snapshot_term: int = 0
    terms: dict[int, int] = field(default_factory=dict)

    def term_at(self, index: int) -> int | None:
        if index == 0:
            return 0
        if index == self.snapshot_index:
            return self.snapshot_term
        return self.terms.get(index)

    @property
    def last_index(self) -> int:
        return max(self.terms) if self.terms else self.snapshot_index


@dataclass(slots=True)
class _Applier:
    """What the checker knows of one server's state machine."""

    index: int = 0


class SafetyChecker:
    """Checks election safety, log matching, leader completeness, state machine safety.

    Args:
        context: printed first in every violation (seed and replay command).
        clock: returns the current virtual time, printed with each violation.
    """

    def __init__(self, context: str = "", clock: Callable[[], float] | None = None) -> None:
        self.context = context
        self._clock = clock or (lambda: 0.0)
        self.leaders: dict[int, str] = {}
        """Term -> the one server that led it (or that a follower named as leader)."""
        self.entries: dict[tuple[int, int], tuple[int, int, bytes]] = {}
        """(index, term) -> (term of the entry before it, kind, data), as first appended."""
        self.committed: dict[int, tuple[int, int]] = {}
        """Index -> (entry term, lowest term known to have committed it)."""
        self.digests: dict[int, bytes] = {0: b""}
        """Index -> state digest after applying it (same on every server)."""
        self.applied_entries: dict[int, tuple[int, int, bytes]] = {}
        self.current_leaders: dict[str, int] = {}
        """Server -> the term it leads now (until its next RoleChanged or restart)."""
        self.logs: dict[str, LogMirror] = {}
        self.appliers: dict[str, _Applier] = {}
        self.checks = 0

    # --- reporting ------------------------------------------------------------------
    def fail(self, text: str) -> None:
        """Raise the violation, with the context line first."""
        head = f"{self.context}\n" if self.context else ""
        raise RaftInvariantViolation(f"{head}t={self._clock():.3f} {text}")

    # --- server lifecycle -----------------------------------------------------------
    def add_server(self, name: str) -> None:
        self.logs.setdefault(name, LogMirror())
        self.appliers.setdefault(name, _Applier())

    def restarted(self, name: str, machine_index: int) -> None:
        """A new process for ``name``: its state machine starts at ``machine_index``."""
        self.appliers[name] = _Applier(machine_index)
        self.current_leaders.pop(name, None)

    # --- election safety and leader completeness -------------------------------------
    def role_changed(self, name: str, role: Role, term: int, leader_id: str | None) -> None:
        """A ``RoleChanged`` output of server ``name``."""
        self.checks += 1
        self.current_leaders.pop(name, None)
        if role == Role.LEADER:
            if leader_id not in (None, name):
                self.fail(f"election safety: {name} is leader of term {term} "
                          f"but names {leader_id} as leader")
            self._claim_leader(term, name, name)
            self._check_leader_complete(name, term)
            self.current_leaders[name] = term
        elif leader_id is not None:
            self._claim_leader(term, leader_id, name)

    def _claim_leader(self, term: int, leader: str, witness: str) -> None:
        known = self.leaders.setdefault(term, leader)
        if known != leader:
            self.fail(f"election safety: two leaders in term {term}: {known} and {leader} "
                      f"(seen by {witness})")

    def _check_leader_complete(self, name: str, term: int) -> None:
        for index, (entry_term, commit_term) in self.committed.items():
            self._check_leader_has(name, term, index, entry_term, commit_term)

    def _check_leader_has(self, name: str, term: int, index: int, entry_term: int,
                          commit_term: int) -> None:
        """Leader ``name`` of ``term`` holds entry ``index`` if a lower term committed it."""
        log = self.logs[name]
        if commit_term >= term or index < log.snapshot_index:
            return
        have = log.term_at(index)
        if have != entry_term:
            self.fail(f"leader completeness: {name} leads term {term} without entry "
                      f"{index} (term {entry_term}, committed by term {commit_term}); "
                      f"its log has term {have} there")

    # --- commits -------------------------------------------------------------------
    def leader_committed(self, name: str, term: int, first: int, last: int) -> None:
        """Leader ``name`` of ``term`` has commit index ``last``; record ``first..last``."""
        log = self.logs[name]
        for index in range(max(first, log.snapshot_index + 1), last + 1):
            entry_term = log.term_at(index)
            if entry_term is None:
                self.fail(f"leader {name} of term {term} commits index {index} "
                          f"beyond its log (last {log.last_index})")
            self._record_commit(index, entry_term, term, name)

    def _record_commit(self, index: int, entry_term: int, commit_term: int, name: str) -> None:
        known = self.committed.get(index)
        if known is not None and known[0] != entry_term:
            self.fail(f"state machine safety: index {index} committed with term {known[0]} "
                      f"and, at {name}, with term {entry_term}")
        if known is None or commit_term < known[1]:
            self.committed[index] = (entry_term, commit_term)
            for leader, term in self.current_leaders.items():  # leaders elected before
                self._check_leader_has(leader, term, index, entry_term, commit_term)

    # --- log matching --------------------------------------------------------------
    def persisted(self, name: str, persist: Persist) -> None:
        """Mirror one ``Persist`` of server ``name`` and check what it appended."""
        self.checks += 1
        log = self.logs[name]
        if persist.snapshot is not None:
            self._take_snapshot(name, log, persist.snapshot)
        if persist.log_start is not None:
            for index in [i for i in log.terms if i < persist.log_start]:
                del log.terms[index]
        dropped: list[tuple[int, int]] = []
        if persist.truncate_from is not None:
            dropped = sorted((i, t) for i, t in log.terms.items() if i >= persist.truncate_from)
            for index, _ in dropped:
                del log.terms[index]
        for entry in persist.entries:
            self._append(name, log, entry)
        for index, term in dropped:  # a committed entry may be rewritten, never lost
            known = self.committed.get(index)
            if (known is not None and known[0] == term and index > log.snapshot_index
                    and log.terms.get(index) != term):
                self.fail(f"leader completeness: {name} truncates committed entry {index} "
                          f"(term {term})")
        snapshot = persist.snapshot
        after = None if snapshot is None else log.terms.get(snapshot.index + 1)
        if after is not None and self.entries[(snapshot.index + 1, after)][0] != snapshot.term:
            self.fail(f"log matching: {name} keeps entry {snapshot.index + 1} after a "
                      f"snapshot of term {snapshot.term} it does not follow")

    def _append(self, name: str, log: LogMirror, entry: Entry) -> None:
        index = entry.index
        prev = log.term_at(index - 1)
        if prev is None:
            self.fail(f"log matching: {name} appends entry {index} after a gap "
                      f"(log ends at {log.last_index}, snapshot {log.snapshot_index})")
        if index in log.terms:
            self.fail(f"log matching: {name} appends entry {index} over an entry it did not "
                      f"truncate")
        record = (prev, int(entry.kind), entry.data)
        known = self.entries.setdefault((index, entry.term), record)
        if known != record:
            self.fail(f"log matching: entry {index} term {entry.term} at {name} is "
                      f"{_show(record)} but was {_show(known)} elsewhere")
        log.terms[index] = entry.term

    def _take_snapshot(self, name: str, log: LogMirror, snapshot: Snapshot) -> None:
        known = self.committed.get(snapshot.index)
        if known is not None and known[0] != snapshot.term:
            self.fail(f"state machine safety: {name} stores a snapshot at {snapshot.index} "
                      f"term {snapshot.term}, but term {known[0]} was committed there")
        digest = self.digests.get(snapshot.index)
        machine = StateMachine.from_snapshot(snapshot.data)
        if machine.index != snapshot.index or (digest is not None and digest != machine.digest):
            self.fail(f"state machine safety: {name} stores a snapshot at {snapshot.index} "
                      f"whose state is not the state applied there")
        if snapshot.index >= log.snapshot_index:
            log.snapshot_index, log.snapshot_term = snapshot.index, snapshot.term

    # --- state machine safety ------------------------------------------------------
    def applied(self, name: str, entry: Entry, digest: bytes, term_now: int) -> None:
        """Server ``name`` (now in ``term_now``) applied ``entry``; its state is ``digest``."""
        self.checks += 1
        applier = self.appliers[name]
        if entry.index != applier.index + 1:
            self.fail(f"state machine safety: {name} applies index {entry.index} after "
                      f"{applier.index}")
        applier.index = entry.index
        record = (entry.term, int(entry.kind), entry.data)
        known = self.applied_entries.setdefault(entry.index, record)
        if known != record:
            self.fail(f"state machine safety: {name} applies {_show(record)} at index "
                      f"{entry.index}, another server applied {_show(known)}")
        self._record_commit(entry.index, entry.term, term_now, name)
        known_digest = self.digests.setdefault(entry.index, digest)
        if known_digest != digest:
            self.fail(f"state machine safety: {name}'s state after index {entry.index} "
                      f"differs from another server's")

    def restored(self, name: str, index: int, digest: bytes) -> None:
        """Server ``name`` replaced its state machine by a snapshot at ``index``."""
        self.checks += 1
        applier = self.appliers[name]
        if index < applier.index:
            self.fail(f"state machine safety: {name} restores a snapshot at {index}, "
                      f"behind its applied index {applier.index}")
        known = self.digests.get(index)
        if known is not None and known != digest:
            self.fail(f"state machine safety: {name} restores a snapshot at {index} whose "
                      f"state differs from the state applied there")
        applier.index = index


def _show(record: tuple[int, int, bytes]) -> str:
    return f"({record[0]}, kind {record[1]}, data {record[2][:24]!r})"


# --- plans and reports ------------------------------------------------------------
LEADER = "@leader"
"""In a plan drawn by ``raft_plan``: the leader of the highest term when the fault starts."""
DOWN = "@down"
"""In a plan drawn by ``raft_plan``: the server down (or paused) the longest."""


def raft_plan(rng: random.Random, names: Sequence[str], duration: float) -> FaultPlan:
    """A fault plan for a Raft cluster drawn from ``rng`` (swarm testing).

    Unlike ``FaultPlan.swarm`` any server may be hit, and about half the faults aim at
    whoever leads when they start (``LEADER``), which is what makes logs diverge: up
    to six partitions (one server cut off, a minority, or three groups), clogged
    links, up to six crashes (restarted later, or at once), maybe a pause. Every
    fault ends before ``0.95 * duration``.
    """
    names = sorted(names)
    end = 0.95 * duration

    def pick() -> str:
        return LEADER if rng.random() < 0.5 else rng.choice(names)

    partitions = [_draw_partition(rng, names, duration, end, pick())
                  for _ in range(rng.randrange(0, 7))]
    clogs = []
    for _ in range(rng.randrange(0, 4)):
        source, dest = rng.sample(names, 2)
        start = rng.uniform(0.05, 0.8) * duration
        clogs.append(Clog(start, min(end, start + rng.uniform(0.5, 5.0)), source, dest))
    processes = []
    for _ in range(rng.randrange(0, 7)):
        node, at = pick(), rng.uniform(0.05, 0.85) * duration
        if rng.random() < 0.3:
            processes.append(ProcessFault(at, "restart", node))
        else:
            processes += [ProcessFault(at, "kill", node),
                          ProcessFault(min(end, at + rng.uniform(0.2, 8.0)), "restart", DOWN)]
    if rng.random() < 0.3:
        at = rng.uniform(0.05, 0.8) * duration
        processes += [ProcessFault(at, "pause", pick()),
                      ProcessFault(min(end, at + rng.uniform(0.5, 5.0)), "resume", DOWN)]
    return FaultPlan(
        one_way_delay_min=rng.choice((0.0005, 0.002, 0.01)),
        one_way_delay_mean=rng.choice((0.0, 0.002, 0.01, 0.05, 0.2)),
        packet_loss_probability=rng.choice((0.0, 0.01, 0.05, 0.2)),
        packet_replay_probability=rng.choice((0.0, 0.02, 0.1)),
        partitions=tuple(partitions), clogs=tuple(clogs),
        processes=tuple(sorted(processes, key=lambda f: f.at)))


def _draw_partition(rng: random.Random, names: list[str], duration: float, end: float,
                    first: str) -> Partition:
    """One server cut off, a minority, or three groups; ``first`` is always cut off."""
    start = rng.uniform(0.05, 0.8) * duration
    order = list(dict.fromkeys([first, *rng.sample(names, len(names))]))
    shape = rng.random()
    if shape < 0.4:
        groups: tuple[tuple[str, ...], ...] = ((order[0],),)
    elif shape < 0.8:
        groups = (tuple(order[:(len(names) - 1) // 2 or 1]),)
    else:
        third = max(1, len(names) // 3)
        groups = (tuple(order[:third]), tuple(order[third:2 * third]))
    return Partition(start, min(end, start + rng.uniform(1.0, 10.0)), groups)


@dataclass(frozen=True)
class SimReport:
    """What one run did; ``ok`` when no invariant broke and the cluster converged."""

    seed: int
    servers: int
    duration: float
    plan: str
    elections: int                     # candidacies (RoleChanged to Candidate)
    leaders: tuple[tuple[int, str], ...]  # (term, leader) for every term that had one
    proposals: int
    accepted: int
    committed: int                     # accepted proposals whose entry got committed
    commit_index: int                  # highest index known committed
    messages_sent: int
    messages_delivered: int
    messages_dropped: int              # lost, cut by a partition, or to a dead process
    messages_duplicated: int
    crashes: int
    restarts: int
    compactions: int
    restores: int
    transfers: int
    membership_changes: int            # servers removed, added back, promoted
    converged_after: float | None      # virtual seconds from heal to convergence
    final_state: str                   # digest of the converged state machines
    trace_digest: str                  # digest of every trace line (transitions, faults)
    violation: str | None = None
    liveness: str | None = None
    trace_tail: tuple[str, ...] = field(default=(), compare=False)

    @property
    def ok(self) -> bool:
        return self.violation is None and self.liveness is None

    def lines(self) -> list[str]:
        """The summary ``python -m agent.sim.raft`` prints (after the seed)."""
        terms = " ".join(f"{t}:{name}" for t, name in self.leaders[-12:])
        converged = ("never" if self.converged_after is None
                     else f"{self.converged_after:.2f}s")
        out = [f"plan: {self.plan}",
               f"elections={self.elections} leader-terms={len(self.leaders)} last: {terms}",
               f"proposals={self.proposals} accepted={self.accepted} committed={self.committed} "
               f"commit_index={self.commit_index}",
               f"messages sent={self.messages_sent} delivered={self.messages_delivered} "
               f"dropped={self.messages_dropped} duplicated={self.messages_duplicated}",
               f"crashes={self.crashes} restarts={self.restarts} compactions={self.compactions} "
               f"restores={self.restores} transfers={self.transfers} "
               f"membership_changes={self.membership_changes}",
               f"converged_after={converged} "
               f"final_state={self.final_state}"]
        if self.violation:
            out.append(f"VIOLATION: {self.violation}")
        if self.liveness:
            out.append(f"LIVENESS: {self.liveness}")
        return out

    def text(self) -> str:
        """Seed and replay first, then the summary and the trace tail when it failed."""
        replay = replay_command(self.seed, self.servers, self.duration)
        lines = [f"seed={self.seed} replay: {replay}", *self.lines()]
        if not self.ok and self.trace_tail:
            lines += ["--- last trace lines ---", *self.trace_tail]
        return "\n".join(lines)


def replay_command(seed: int, servers: int, duration: float) -> str:
    return f"python -m agent.sim.raft --seed {seed} --servers {servers} --duration {duration:g}"
