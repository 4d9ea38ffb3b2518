"""One ``shoal sim`` run: join, then kills and partitions, with timelines of who saw what.

A run is a fixed sequence of phases on one ``TimelineSimulator`` (``timeline.py``):

1. **join**: ``nodes`` nodes start over ``join_window`` virtual seconds, each joining
   through one or two of the first ``seeds`` nodes (the draws of ``scenarios.join_phase``).
   Curve: when each node first listed all N alive. With ``servers`` M, nodes n1..nM
   also run Raft (``ServerRaft``), bootstrapped once every server sees the others; the
   phase also waits for the first leader.
2. **kill** (``kill`` K > 0), ``SETTLE`` s after the join converged: K nodes are
   killed (kill -9); with servers, the first victim is the Raft leader's node. Curves
   per victim: when each survivor marked it suspect (or worse), and failed; with a
   leader killed, when the next leader was elected.
3. **partition** (each ``partitions`` entry in turn, ``SETTLE`` s after the previous
   phase): the groups (plus one group of every node left out) are split for
   ``partition_time`` s, Raft servers the same way; curves: when each node of a group
   saw every node outside it failed. Then heal; curve: when each node listed every
   running node alive again.

A phase ends when its curves are complete or its bound passes (the bounds of
``scenarios.py``: ``kill_bound``, ``partition_bound``, the join window plus a scaled
push/pull period); ``duration`` caps the whole run and, when given, the run goes on
to exactly that virtual time. ``Experiment.lines()`` is the text ``shoal sim``
prints, ``Experiment.to_json()`` the same as data; both hold virtual times only, so
the same ``SimSpec`` gives the same bytes.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from gossip.config import GossipConfig

from .network import FaultPlan
from .raft_checks import RaftInvariantViolation
from .scenarios import kill_bound, partition_bound
from .simulator import InvariantViolation, Simulator
from .timeline import (ALIVE, FAILED, FRACTIONS, Curve, ServerRaft, TimelineSimulator,
                       join_schedule, server_of)

SETTLE = 2.0
"""Virtual seconds between one phase converging and the next fault."""
POLL = 0.25
LEADER_BOUND = 30.0
"""How long the join phase waits for a first Raft leader after the gossip converged."""


@dataclass(frozen=True)
class SimSpec:
    """Everything a run depends on (the ``shoal sim`` flags)."""

    nodes: int
    seed: int
    profile: str = "lan"
    loss: float = 0.0
    kill: int = 0
    partitions: tuple[tuple[tuple[str, ...], ...], ...] = ()
    """Each partition: its groups of node names (nodes in none form one more group)."""
    partition_time: float = 30.0
    duration: float | None = None
    servers: int = 0
    join_window: float = 5.0
    seeds: int = 3
    delay_min: float = 0.0005
    delay_mean: float = 0.002

    def plan(self) -> FaultPlan:
        return FaultPlan(one_way_delay_min=self.delay_min, one_way_delay_mean=self.delay_mean,
                         packet_loss_probability=self.loss)


@dataclass
class Section:
    """A block of the report: a heading line and its curves."""

    heading: str
    curves: list[Curve] = field(default_factory=list)


@dataclass
class Experiment:
    """The measured run; ``lines()`` and ``to_json()`` render it."""

    spec: SimSpec
    sim: TimelineSimulator
    sections: list[Section] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    raft: ServerRaft | None = None
    raft_lines: list[str] = field(default_factory=list)
    error: str | None = None
    last_start: float = 0.0
    """Virtual time the last node started (and joined)."""

    def note(self, text: str) -> None:
        self.events.append((self.sim.now, text))

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.complete for s in self.sections for c in s.curves)

    def lines(self) -> list[str]:
        spec = self.spec
        parts = [f"nodes={spec.nodes}", f"seed={spec.seed}", f"profile={spec.profile}",
                 f"loss={spec.loss:g}", f"kill={spec.kill}", f"servers={spec.servers}",
                 f"partitions={len(spec.partitions)}",
                 "duration=" + ("auto" if spec.duration is None else f"{spec.duration:g}s")]
        out = ["shoal sim " + " ".join(parts), f"plan: {self.sim.plan.describe()}"]
        for section in self.sections:
            out.append(section.heading)
            width = max(len(c.label) for c in section.curves) if section.curves else 0
            out += ["  " + curve_line(c, width) for c in section.curves]
        out += self.raft_lines
        out.append("timeline (virtual s):")
        out += [f"  {t:9.3f}  {text}" for t, text in self.events]
        if self.error:
            out.append(f"ERROR {self.error}")
        summary = self.sim.summary()
        out.append(" ".join(f"{k}={v}" for k, v in summary.items()))
        out.append("OK" if self.ok else "INCOMPLETE" if self.error is None else "FAILED")
        return out

    def to_json(self) -> dict[str, Any]:
        spec = asdict(self.spec)
        spec["partitions"] = [[list(g) for g in p] for p in self.spec.partitions]
        curves = [{"section": s.heading, "label": c.label, "start": round(c.start, 6),
                   "observers": c.observers, "seen": len(c.times),
                   **{f"p{round(f * 100)}": _round(c.after(f)) for f in FRACTIONS}}
                  for s in self.sections for c in s.curves]
        raft = None
        if self.raft is not None:
            raft = {"bootstrap": round(self.raft.started_at, 6),
                    "elections": self.raft.counts["elections"],
                    "leaders": [{"time": round(e.time, 6), "term": e.term, "node": e.node}
                                for e in self.raft.elected],
                    "commit_index": max(self.raft.checker.committed, default=0)}
        config = self.sim.config
        gossip = {"profile": config.profile, "gossip_interval": config.gossip_interval,
                  "gossip_nodes": config.gossip_nodes, "probe_interval": config.probe_interval,
                  "push_pull_interval": config.push_pull_interval}
        return {"spec": spec, "plan": self.sim.plan.describe(), "gossip": gossip,
                "last_start": round(self.last_start, 6), "curves": curves,
                "events": [[round(t, 6), text] for t, text in self.events], "raft": raft,
                "summary": self.sim.summary(), "error": self.error, "ok": self.ok}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def curve_line(curve: Curve, width: int) -> str:
    """``label   50% +1.23s   90% +2.00s  100% +3.41s  (97/97)``."""
    cells = []
    for fraction in FRACTIONS:
        value = curve.after(fraction)
        text = "-" if value is None else f"+{value:.2f}s"
        cells.append(f"{round(fraction * 100):>3}% {text:>9}")
    return f"{curve.label:<{width}}  {'  '.join(cells)}  ({len(curve.times)}/{curve.observers})"


def _start_and_join(sim: Simulator, name: str, through: list[str]) -> None:
    sim.add_node(name)
    if through:
        sim.join(name, through, retry_interval=1.0)


class _Runner:
    """Runs the phases of the module doc on one ``Experiment``."""

    def __init__(self, spec: SimSpec, progress: Callable[[float, int], None] | None) -> None:
        self.spec = spec
        self.config = GossipConfig.named(spec.profile)
        sim = TimelineSimulator(spec.seed, plan=spec.plan(), config=self.config,
                                trace_packets=False, trace_limit=2000)
        self.sim = sim
        self.exp = Experiment(spec, sim)
        self.end = math.inf if spec.duration is None else spec.duration
        self.rng = random.Random(f"{spec.seed}/scenario")
        self.progress = progress
        self.names = [f"n{i}" for i in range(1, spec.nodes + 1)]

    def run_until(self, done: Callable[[], bool], deadline: float) -> None:
        """Advance in ``POLL`` steps until ``done()`` or ``deadline`` (capped at the end)."""
        deadline = min(deadline, self.end)
        sim = self.sim
        while not done() and sim.now < deadline:
            target = min(deadline, sim.now + POLL)
            if self.progress is not None and math.floor(target) > math.floor(sim.now):
                self.progress(sim.now, sim.events)
            sim.run_until(target)

    def run(self) -> Experiment:
        try:
            self.join()
            if self.spec.kill:
                self.kill()
            for groups in self.spec.partitions:
                self.partition(groups)
            if self.end < math.inf:
                self.run_until(lambda: False, self.end)
            self.sim.check_members()
        except (InvariantViolation, RaftInvariantViolation) as exc:
            self.exp.error = f"invariant violated: {exc}"
        if self.exp.raft is not None:
            self.exp.raft_lines = raft_lines(self.exp)
        self.exp.note("end of run")
        return self.exp

    # --- phases -------------------------------------------------------------------
    def join(self) -> None:
        spec, sim, names = self.spec, self.sim, self.names
        schedule = join_schedule(self.rng, spec.nodes, spec.seeds, spec.join_window)
        for name, at, through in schedule:
            sim.at(at, _start_and_join, sim, name, through)
        last = schedule[-1][1]
        self.exp.last_start = last
        section = Section(f"join: {spec.nodes} nodes start over {last:.2f}s, each through 1-2 "
                          f"of n1..n{min(spec.seeds, spec.nodes)} (times from t=0)")
        join = sim.watch(f"saw all {spec.nodes} alive", names, names, ALIVE, start=0.0,
                         on_complete=lambda: self.exp.note(f"join converged: every node saw all "
                                                           f"{spec.nodes} alive"))
        section.curves.append(join)
        self.exp.sections.append(section)
        self.exp.note(f"n1 starts; the last of {spec.nodes} nodes at {last:.3f}")
        if spec.servers:
            servers = names[:spec.servers]
            sim.watch("servers", servers, servers, ALIVE, start=0.0, on_complete=self.start_raft)
        bound = spec.join_window + self.config.push_pull_scale(spec.nodes)
        self.run_until(lambda: join.complete, bound)
        if spec.servers:
            self.run_until(lambda: self.exp.raft is not None and bool(self.exp.raft.elected),
                           sim.now + LEADER_BOUND)

    def start_raft(self) -> None:
        spec = self.spec
        self.exp.raft = ServerRaft(self.sim, spec.servers, spec.plan(), self.end)
        self.exp.note(f"raft bootstrapped: n1..n{spec.servers} each see all {spec.servers} servers")

    def settle(self) -> None:
        self.run_until(lambda: False, self.sim.now + SETTLE)

    def kill(self) -> None:
        spec, sim, raft = self.spec, self.sim, self.exp.raft
        self.settle()
        if sim.now >= self.end:
            self.exp.note("kill not reached: --duration ended the run")
            return
        running = sim.running()
        victims: list[str] = []
        leader = raft.leader_node() if raft is not None else None
        leader_term = raft.term_of(leader) if leader is not None else 0
        if leader is not None:
            victims.append(leader)
        seeds = set(self.names[:spec.seeds])
        pool = [n for n in running if n not in seeds and n not in victims]
        wanted = min(spec.kill, len(running) - 1) - len(victims)
        victims += sorted(self.rng.sample(pool, min(wanted, len(pool))), key=_index)
        rest = [n for n in running if n in seeds and n not in victims]
        victims += rest[:max(0, wanted - len(pool))]
        survivors = [n for n in running if n not in victims]
        start = sim.now
        for victim in victims:
            sim.kill(victim)
            if raft is not None and victim in self._servers():
                raft.kill(server_of(victim))
            self.exp.note(f"killed {victim}" + (" (raft leader)" if victim == leader else ""))
        section = Section(f"kill: {len(victims)} node(s) killed at {start:.2f}s; "
                          f"{len(survivors)} survivors (times from the kill)")
        for victim in victims:
            suspect = Curve(f"marked {victim} suspect", start, len(survivors))
            section.curves.append(suspect)
            sim.poll_suspects(suspect, survivors, victim, start + kill_bound(self.config, len(running)))
            section.curves.append(sim.watch(f"marked {victim} failed", survivors, [victim], FAILED))
        self.exp.sections.append(section)

        def done() -> bool:
            if not all(c.complete for c in section.curves):
                return False
            return leader is None or any(e.term > leader_term for e in raft.elected)
        self.run_until(done, start + kill_bound(self.config, len(running)))
        for curve in section.curves:
            self.sim.unwatch(curve)

    def partition(self, groups: tuple[tuple[str, ...], ...]) -> None:
        sim, raft = self.sim, self.exp.raft
        self.settle()
        if sim.now >= self.end:
            self.exp.note("partition not reached: --duration ended the run")
            return
        running = sim.running()
        listed = {n for g in groups for n in g}
        sides = [list(g) for g in groups]
        rest = [n for n in self.names if n not in listed]
        if rest:
            sides.append(rest)
        start = sim.now
        handle = sim.partition(sides)
        raft_handle = None
        if raft is not None:
            servers = set(self._servers())
            raft_handle = raft.network.partition(
                [[server_of(n) for n in side if n in servers] for side in sides])
        self.exp.note("partition " + " | ".join(_span(side) for side in sides))
        section = Section(f"partition at {start:.2f}s into {len(sides)} groups for "
                          f"{self.spec.partition_time:g}s (times from the split)")
        for side in sides:
            inside = [n for n in side if n in running]
            outside = [n for n in running if n not in set(side)]
            if inside and outside:
                section.curves.append(sim.watch(f"{_span(side)} saw the others failed",
                                                inside, outside, FAILED))
        self.exp.sections.append(section)
        self.run_until(lambda: False, start + self.spec.partition_time)
        for curve in section.curves:
            sim.unwatch(curve)
        if sim.now >= self.end:
            self.exp.note("heal not reached: --duration ended the run")
            return
        sim.heal(handle)
        if raft is not None and raft_handle is not None:
            raft.network.heal(raft_handle)
        self.exp.note("heal")
        live = sim.running()
        heal = Section(f"heal at {sim.now:.2f}s (times from the heal)")
        curve = sim.watch(f"saw all {len(live)} running alive", live, live, ALIVE,
                          on_complete=lambda: self.exp.note("re-converged: every node saw all alive"))
        heal.curves.append(curve)
        self.exp.sections.append(heal)
        self.run_until(lambda: curve.complete, sim.now + partition_bound(self.config, len(live)))
        sim.unwatch(curve)

    def _servers(self) -> list[str]:
        return self.names[:self.spec.servers]


def _index(name: str) -> int:
    return int(name[1:])


def _span(nodes: list[str] | tuple[str, ...]) -> str:
    """``n1-n3,n7``: node names, consecutive runs folded."""
    numbers = sorted(_index(n) for n in nodes)
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ",".join(f"n{a}" if a == b else f"n{a}-n{b}" for a, b in runs)


def raft_lines(exp: Experiment) -> list[str]:
    """The Raft section: bootstrap, first leader, leaders after kills, leader per term."""
    raft = exp.raft
    assert raft is not None
    spec = exp.spec
    out = [f"raft: {spec.servers} servers on n1..n{spec.servers}, bootstrapped at "
           f"{raft.started_at:.2f}s"]
    if raft.elected:
        first = raft.elected[0]
        out.append(f"  first leader {first.node} term {first.term} at {first.time:.2f}s "
                   f"({first.time - raft.started_at:.2f}s after bootstrap)")
    else:
        out.append("  no leader elected")
    for t, text in exp.events:
        if text.startswith("killed") and "raft leader" in text:
            after = [e for e in raft.elected if e.time > t]
            if after:
                out.append(f"  leader {text.split()[1]} killed at {t:.2f}s: next leader "
                           f"{after[0].node} term {after[0].term} at {after[0].time:.2f}s "
                           f"({after[0].time - t:.2f}s later)")
            else:
                out.append(f"  leader {text.split()[1]} killed at {t:.2f}s: no leader since")
    per_term = " ".join(f"{e.term}={e.node}@{e.time:.2f}s" for e in raft.elected)
    out.append(f"  leader per term: {per_term or '-'}")
    out.append(f"  elections={raft.counts['elections']} proposals={raft.counts['proposals']} "
               f"commit_index={max(raft.checker.committed, default=0)} "
               f"messages={raft.counts['sent']} dropped={raft.counts['dropped']}")
    return out


def run_experiment(spec: SimSpec, *,
                   progress: Callable[[float, int], None] | None = None) -> Experiment:
    """Run ``spec``'s phases; ``progress(virtual now, events)`` about once a virtual second."""
    return _Runner(spec, progress).run()
