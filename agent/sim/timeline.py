"""Convergence and detection timelines: what ``shoal sim`` measures and prints.

Theory of operation. ``TimelineSimulator`` is the gossip ``Simulator`` plus *watches*:
a watch is a set of observers, a set of subjects and a status; for every observer it
counts the subjects its member events currently report with that status, and records
the virtual time at which the count first reaches all of them. The counts change
only in ``_on_member`` (the one place a process's event-built view changes) and when
a process starts, so keeping them costs O(watches) per member event; the times are
exact, not polled. A ``Curve`` is such a record: per observer, when the condition
first held; ``Curve.after(fraction)`` answers "when had 50 % of them seen it".

Suspicion is not a Serf event, so ``suspect`` curves are read from each observer's
memberlist record of the victim (``state``, ``state_change``), polled every
``SUSPECT_POLL`` virtual seconds; Lifeguard keeps a node suspect for seconds, so
``state_change`` gives the exact time. An observer that heard ``dead`` first counts
as suspecting at that moment ("suspect or worse"). Polls are heap entries like any
other, and never feed a core, so the cores' run is unchanged by them.

``ServerRaft`` runs production ``RaftCore``s through ``agent/sim/raft.py``'s
``RaftSimulation`` on the same heap and clock (``at`` and ``now`` delegate to the
gossip simulator): server ``sI`` lives on node ``nI``, is killed with it and is cut
off by the same partitions. The servers bootstrap together (all voters, as after
``-bootstrap-expect M``) at the moment every server's gossip view lists all M
servers alive. Everything is seeded (see docs/simulator.md), so a run is a pure
function of its ``SimSpec``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from gossip.messages import MemberStatus, NodeState
from raftlite.types import Role

from .network import FaultPlan
from .raft import RaftSimulation
from .simulator import Process, Simulator

ALIVE, FAILED = MemberStatus.ALIVE, MemberStatus.FAILED
SUSPECT_POLL = 0.1
FRACTIONS = (0.5, 0.9, 1.0)


@dataclass
class Curve:
    """When each observer first saw a condition hold (absolute virtual seconds)."""

    label: str
    start: float
    """Virtual time the measurement counts from (a start, a kill, a heal)."""
    observers: int
    times: dict[str, float] = field(default_factory=dict)

    def after(self, fraction: float) -> float | None:
        """Seconds after ``start`` until ``fraction`` of the observers had seen it (None: never)."""
        wanted = max(1, math.ceil(fraction * self.observers - 1e-9))
        if len(self.times) < wanted:
            return None
        return sorted(self.times.values())[wanted - 1] - self.start

    @property
    def complete(self) -> bool:
        return len(self.times) >= self.observers

    def points(self) -> list[tuple[float, float]]:
        """(absolute time, fraction of observers) after each observer, for plots."""
        times = sorted(self.times.values())
        return [(t, (i + 1) / self.observers) for i, t in enumerate(times)]


class _Watch:
    """Counts, per observer, the subjects reported with ``status`` (see module doc)."""

    def __init__(self, curve: Curve, observers: Iterable[str], subjects: Iterable[str],
                 status: MemberStatus, on_complete: Callable[[], None] | None) -> None:
        self.curve = curve
        self.observers = set(observers)
        self.subjects = set(subjects)
        self.status = status
        self.counts: dict[str, int] = {}
        self.on_complete = on_complete

    def recount(self, proc: Process, now: float) -> None:
        status, subjects = self.status, self.subjects
        self.counts[proc.name] = sum(1 for name, seen in proc.view.items()
                                     if seen is status and name in subjects)
        self._check(proc.name, now)

    def update(self, observer: str, subject: str, old: Any, new: Any, now: float) -> None:
        if observer not in self.observers or subject not in self.subjects:
            return
        count = self.counts.get(observer, 0)
        count += (new is self.status) - (old is self.status)
        self.counts[observer] = count
        self._check(observer, now)

    def _check(self, observer: str, now: float) -> None:
        curve = self.curve
        if self.counts.get(observer) == len(self.subjects) and observer not in curve.times:
            curve.times[observer] = now
            if curve.complete and self.on_complete is not None:
                callback, self.on_complete = self.on_complete, None
                callback()


class TimelineSimulator(Simulator):
    """``Simulator`` that keeps ``Curve``s of who saw what when (module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._watches: list[_Watch] = []
        super().__init__(*args, **kwargs)

    def watch(self, label: str, observers: list[str], subjects: list[str], status: MemberStatus,
              *, start: float | None = None,
              on_complete: Callable[[], None] | None = None) -> Curve:
        """Start a curve: when each observer first reports every subject with ``status``."""
        curve = Curve(label, self.now if start is None else start, len(observers))
        watch = _Watch(curve, observers, subjects, status, on_complete)
        self._watches.append(watch)
        for name in sorted(observers):
            if name in self._procs and self._procs[name].view:
                watch.recount(self._procs[name], self.now)
        return curve

    def unwatch(self, curve: Curve) -> None:
        self._watches = [w for w in self._watches if w.curve is not curve]

    def _start(self, proc: Process) -> None:
        super()._start(proc)
        for watch in list(self._watches):
            if proc.name in watch.observers:
                watch.recount(proc, self.now)

    def _on_member(self, proc: Process, out: Any) -> None:
        name = out.member.name
        old = proc.view.get(name)
        super()._on_member(proc, out)
        new = proc.view.get(name)
        if old is not new:
            for watch in list(self._watches):
                watch.update(proc.name, name, old, new, self.now)

    def poll_suspects(self, curve: Curve, observers: list[str], victim: str, until: float) -> None:
        """Fill ``curve`` with when each observer's memberlist first had ``victim`` suspect or worse."""
        for name in observers:
            if name in curve.times:
                continue
            proc = self._procs[name]
            if not proc.is_running:
                continue
            node = proc.core.memberlist.node(victim)
            if (node is not None and node.state != NodeState.ALIVE
                    and node.state_change >= curve.start):
                curve.times[name] = node.state_change
        if not curve.complete and self.now + SUSPECT_POLL <= until:
            self.at(self.now + SUSPECT_POLL, self.poll_suspects, curve, observers, victim, until)


@dataclass(frozen=True)
class Elected:
    """A server became leader (``time`` virtual seconds, ``node`` its gossip node)."""

    time: float
    term: int
    node: str


class ServerRaft(RaftSimulation):
    """Production ``RaftCore``s on the gossip simulator's heap and clock (module doc)."""

    def __init__(self, sim: Simulator, servers: int, plan: FaultPlan, end: float) -> None:
        self._sim = sim
        self.elected: list[Elected] = []
        self.started_at = sim.now
        # No leadership transfers or membership changes: the run shows elections caused
        # by start, kills and partitions only. The client still writes every ~0.2 s.
        super().__init__(int(sim.seed), servers, duration=end, plan=plan,
                         transfer_interval=1e12, membership_interval=None)

    @property  # type: ignore[override]
    def now(self) -> float:
        return self._sim.now

    @now.setter
    def now(self, value: float) -> None:
        """The gossip simulator's heap owns the clock; RaftSimulation's own writes are ignored."""

    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        self._sim.at(t, fn, *args)

    def _role_changed(self, srv: Any, out: Any) -> None:
        super()._role_changed(srv, out)
        if out.role == Role.LEADER:
            self.elected.append(Elected(self.now, out.term, node_of(srv.name)))

    def leader_node(self) -> str | None:
        """The gossip node whose server leads in the highest term now, if any."""
        leaders = [s for s in self._live() if s.core.role == Role.LEADER]
        if not leaders:
            return None
        return node_of(max(leaders, key=lambda s: s.core.term).name)

    def term_of(self, node: str) -> int:
        srv = self.servers[server_of(node)]
        return 0 if srv.core is None else srv.core.term


def node_of(server: str) -> str:
    """Raft server ``sI`` runs on gossip node ``nI``."""
    return "n" + server[1:]


def server_of(node: str) -> str:
    return "s" + node[1:]


def join_schedule(rng: random.Random, nodes: int, seeds: int,
                  window: float) -> list[tuple[str, float, list[str]]]:
    """(node, start time, nodes it joins through): starts spread over ``window`` s.

    The same draws as ``scenarios.join_phase``, so ``python -m agent.sim --scenario
    join`` with the same seed starts the same nodes at the same times.
    """
    names = [f"n{i}" for i in range(1, nodes + 1)]
    seed_names = names[:max(1, seeds)]
    starts = [0.0] + sorted(rng.uniform(0.0, window) for _ in names[1:])
    schedule = []
    for index, (name, at) in enumerate(zip(names, starts)):
        started = seed_names[:index]
        through = sorted(rng.sample(started, min(len(started), rng.choice((1, 2)))))
        schedule.append((name, at, through))
    return schedule
