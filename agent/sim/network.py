"""The simulator's virtual network: a fault model as data, and the links it shapes.

Theory of operation. ``FaultPlan`` is a frozen description of everything that can go
wrong, in the spirit of TigerBeetle's ``packet_simulator`` options: per-packet delay
(a minimum plus an exponential tail, with optional extra delay on chosen one-way
links), loss and duplication probabilities for datagrams, timed partitions, timed
clogged links, and timed process faults (kill, pause, resume, restart, leave). A plan
is data, so a failing run prints it and a replay uses the same one; with no plan the
seed draws one (``FaultPlan.swarm``, after TigerBeetle's VOPR swarm testing).

``Network`` applies a plan at run time. It owns one ``random.Random`` (derived from
the root seed), so every loss, duplicate and delay decision is a pure function of
the seed and the order of sends, which the simulator's heap makes deterministic.
It answers two questions for the simulator:

* ``datagram_times(src, dst, now)``: when each copy of a UDP datagram arrives; an
  empty tuple means it was lost (loss or partition), two times mean it was
  duplicated. A clogged link holds its packets until the clog ends.
* ``stream_time(src, dst, now)``: when bytes written to a TCP stream arrive, or
  ``None`` while a partition cuts the link. TCP is reliable: no loss, no duplicates;
  the simulator keeps each direction in order.

Nodes are named by the simulator (``n1``, ``n2`` ...); the network knows only names.
Which pairs a partition separates, whether a datagram is lost and how long it takes
are decided by the functions of ``agent/faults.py``, the fault model every real
agent's fault filter applies too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from agent.faults import draw_delay, draw_lost, is_split, partition_groups

PROCESS_ACTIONS = ("kill", "pause", "resume", "restart", "leave")


@dataclass(frozen=True, slots=True)
class Partition:
    """From ``start`` until ``end`` only nodes of the same group can talk.

    Nodes listed in no group form one more group together.
    """

    start: float
    end: float
    groups: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Clog:
    """From ``start`` until ``end`` the one-way link ``source -> dest`` holds its packets."""

    start: float
    end: float
    source: str
    dest: str


@dataclass(frozen=True, slots=True)
class SlowLink:
    """Every packet on the one-way link ``source -> dest`` takes ``extra_delay`` longer."""

    source: str
    dest: str
    extra_delay: float


@dataclass(frozen=True, slots=True)
class ProcessFault:
    """At virtual time ``at``, do ``action`` (one of ``PROCESS_ACTIONS``) to ``node``."""

    at: float
    action: str
    node: str

    def __post_init__(self) -> None:
        if self.action not in PROCESS_ACTIONS:
            raise ValueError(f"unknown process action {self.action!r}")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Everything the virtual network and processes do wrong, as data.

    Delays are one-way: ``one_way_delay_min`` plus an exponential draw with mean
    ``one_way_delay_mean`` (0 gives a fixed delay), plus any ``SlowLink`` extra.
    """

    one_way_delay_min: float = 0.0005
    one_way_delay_mean: float = 0.002
    packet_loss_probability: float = 0.0
    """Chance each UDP datagram is lost (streams are reliable)."""
    packet_replay_probability: float = 0.0
    """Chance a delivered UDP datagram arrives a second time (with its own delay)."""
    slow_links: tuple[SlowLink, ...] = ()
    partitions: tuple[Partition, ...] = ()
    clogs: tuple[Clog, ...] = ()
    processes: tuple[ProcessFault, ...] = ()

    def __post_init__(self) -> None:
        for name in ("packet_loss_probability", "packet_replay_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.one_way_delay_min < 0 or self.one_way_delay_mean < 0:
            raise ValueError("delays must not be negative")

    @classmethod
    def swarm(cls, rng: random.Random, names: Sequence[str], duration: float) -> "FaultPlan":
        """A plan drawn from ``rng``: random loss, delay, one partition, a few clogs.

        Process faults: maybe one node paused for a while, maybe one killed and later
        restarted; never the first node (``names`` sorted), which others join through.
        """
        names = sorted(names)
        partitions: list[Partition] = []
        if len(names) >= 4 and rng.random() < 0.5:
            start = rng.uniform(0.2, 0.5) * duration
            cut = rng.randrange(1, len(names))
            shuffled = list(names)
            rng.shuffle(shuffled)
            partitions.append(Partition(start, start + rng.uniform(5.0, 0.3 * duration),
                                        (tuple(sorted(shuffled[:cut])),)))
        clogs = []
        for _ in range(rng.randrange(0, 4)):
            source, dest = rng.sample(names, 2) if len(names) >= 2 else (names[0], names[0])
            start = rng.uniform(0.1, 0.6) * duration
            clogs.append(Clog(start, start + rng.uniform(0.5, 5.0), source, dest))
        processes: list[ProcessFault] = []
        victims = names[1:]
        if victims and rng.random() < 0.5:
            node, at = rng.choice(victims), rng.uniform(0.2, 0.6) * duration
            processes += [ProcessFault(at, "pause", node),
                          ProcessFault(at + rng.uniform(0.5, 10.0), "resume", node)]
        if victims and rng.random() < 0.5:
            node, at = rng.choice(victims), rng.uniform(0.2, 0.6) * duration
            processes += [ProcessFault(at, "kill", node),
                          ProcessFault(at + rng.uniform(1.0, 0.3 * duration), "restart", node)]
        return cls(
            one_way_delay_min=rng.choice((0.0001, 0.0005, 0.002)),
            one_way_delay_mean=rng.choice((0.0, 0.001, 0.005, 0.02)),
            packet_loss_probability=rng.choice((0.0, 0.01, 0.05, 0.1)),
            packet_replay_probability=rng.choice((0.0, 0.0, 0.01, 0.05)),
            partitions=tuple(partitions),
            clogs=tuple(clogs),
            processes=tuple(sorted(processes, key=lambda f: f.at)),
        )

    def describe(self) -> str:
        """One line a failing run prints, enough to rebuild the plan by hand."""
        parts = [f"delay={self.one_way_delay_min * 1000:g}ms+exp({self.one_way_delay_mean * 1000:g}ms)",
                 f"loss={self.packet_loss_probability:g}",
                 f"dup={self.packet_replay_probability:g}"]
        parts += [f"slow {s.source}->{s.dest}+{s.extra_delay:g}s" for s in self.slow_links]
        parts += [f"partition {p.start:.1f}-{p.end:.1f}s groups={[len(g) for g in p.groups]}"
                  for p in self.partitions]
        parts += [f"clog {c.source}->{c.dest} {c.start:.1f}-{c.end:.1f}s" for c in self.clogs]
        parts += [f"{f.action} {f.node}@{f.at:.1f}s" for f in self.processes]
        return " ".join(parts)


@dataclass(slots=True)
class _ActivePartition:
    group_of: dict[str, int] = field(default_factory=dict)

    def splits(self, a: str, b: str) -> bool:
        return is_split(self.group_of, a, b)


class Network:
    """The links between simulated nodes, shaped by a ``FaultPlan``.

    Scheduled partitions and clogs in the plan are switched on and off by the
    simulator (it owns the clock); tests may also call ``partition``/``heal`` and
    ``clog``/``unclog`` directly.
    """

    def __init__(self, plan: FaultPlan, rng: random.Random) -> None:
        self.plan = plan
        self._rng = rng
        self._partitions: dict[int, _ActivePartition] = {}
        self._next_partition = 0
        self._clogged: dict[tuple[str, str], float] = {}  # link -> clogged until
        self._slow = {(s.source, s.dest): s.extra_delay for s in plan.slow_links}
        self.lost = 0
        self.duplicated = 0
        self.cut = 0

    # --- faults switched at run time ---
    def partition(self, groups: Iterable[Iterable[str]]) -> int:
        """Cut the network into ``groups`` (plus one group of everyone unlisted)."""
        active = _ActivePartition(partition_groups(groups))
        handle = self._next_partition
        self._next_partition += 1
        self._partitions[handle] = active
        return handle

    def heal(self, handle: int | None = None) -> None:
        """End one partition (or every partition when ``handle`` is None)."""
        if handle is None:
            self._partitions.clear()
        else:
            self._partitions.pop(handle, None)

    def clog(self, source: str, dest: str, until: float) -> None:
        self._clogged[(source, dest)] = max(until, self._clogged.get((source, dest), 0.0))

    def unclog(self, source: str, dest: str) -> None:
        self._clogged.pop((source, dest), None)

    def is_partitioned(self) -> bool:
        return bool(self._partitions)

    def reachable(self, source: str, dest: str) -> bool:
        """Whether no active partition separates the two nodes."""
        for active in self._partitions.values():
            if active.splits(source, dest):
                return False
        return True

    # --- per-packet decisions ---
    def _delay(self, source: str, dest: str) -> float:
        plan = self.plan
        delay = draw_delay(self._rng, plan.one_way_delay_min, plan.one_way_delay_mean)
        if self._slow:
            delay += self._slow.get((source, dest), 0.0)
        return delay

    def _held_until(self, source: str, dest: str, now: float) -> float:
        if not self._clogged:
            return now
        until = self._clogged.get((source, dest))
        if until is None:
            return now
        if until <= now:
            del self._clogged[(source, dest)]
            return now
        return until

    def datagram_times(self, source: str, dest: str, now: float) -> tuple[float, ...]:
        """Arrival times of each copy of a UDP datagram sent now (empty: lost)."""
        if self._partitions and not self.reachable(source, dest):
            self.cut += 1
            return ()
        rng = self._rng
        if draw_lost(rng, self.plan.packet_loss_probability):
            self.lost += 1
            return ()
        start = self._held_until(source, dest, now)
        first = start + self._delay(source, dest)
        if self.plan.packet_replay_probability and rng.random() < self.plan.packet_replay_probability:
            self.duplicated += 1
            return (first, start + self._delay(source, dest))
        return (first,)

    def stream_time(self, source: str, dest: str, now: float) -> float | None:
        """Arrival time of stream bytes sent now, or None while a partition cuts the link."""
        if self._partitions and not self.reachable(source, dest):
            return None
        return self._held_until(source, dest, now) + self._delay(source, dest)
