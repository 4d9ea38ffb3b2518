"""Named simulation scenarios shared by the CLI (``python -m agent.sim``) and tests/sim.

A scenario is a list of phases run one after another on one ``Simulator``: each
phase does something (start and join nodes, kill one, have one leave, partition
and heal) and then waits, in virtual time, for the cluster to reach the state it
must reach, up to a bound derived from the gossip configuration. The result records
how long each phase took in virtual time, so tests assert on it and the CLI prints
it. Tests and the CLI run the very same code, so the replay command a failing test
prints reproduces the failure exactly.

Every random choice (start times, seeds to join through, victims, partition groups)
comes from ``random.Random(f"{seed}/scenario")``.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field, fields
from typing import Callable

from gossip.config import GossipConfig
from gossip.messages import MemberStatus

from .network import FaultPlan
from .simulator import InvariantViolation, Simulator

ALIVE, FAILED, LEFT = MemberStatus.ALIVE, MemberStatus.FAILED, MemberStatus.LEFT


@dataclass(frozen=True)
class Params:
    """Everything a run depends on; ``replay_command`` spells it as CLI flags."""

    scenario: str = "join-kill-leave"
    nodes: int = 100
    seed: int = 1
    loss: float = 0.05
    dup: float = 0.0
    delay_min: float = 0.0005
    delay_mean: float = 0.002
    profile: str = "lan"
    seeds: int = 3
    """How many of the first nodes the others join through."""
    join_window: float = 5.0
    """Nodes start spread over this many virtual seconds."""
    partition_time: float = 30.0

    def replay_command(self) -> str:
        flags = [f"--{f.name.replace('_', '-')} {getattr(self, f.name)}" for f in fields(self)
                 if f.name not in ("scenario", "nodes", "seed", "loss")
                 and getattr(self, f.name) != f.default]
        head = (f"python -m agent.sim --scenario {self.scenario} --nodes {self.nodes} "
                f"--seed {self.seed} --loss {self.loss}")
        return " ".join([head, *flags])

    def plan(self) -> FaultPlan:
        return FaultPlan(one_way_delay_min=self.delay_min, one_way_delay_mean=self.delay_mean,
                         packet_loss_probability=self.loss, packet_replay_probability=self.dup)


@dataclass
class Phase:
    """One phase: what it waited for, its bound and how long it took (virtual s)."""

    name: str
    bound: float
    elapsed: float | None = None
    """Virtual seconds until the phase's condition held; None if it never did."""
    detail: str = ""
    latencies: dict[str, float] = field(default_factory=dict)
    """Per observer: virtual seconds until it reported the change (kill, leave)."""
    counts: dict[str, int] = field(default_factory=dict)
    """Other facts a phase measured (partition: how many saw the far side fail)."""

    @property
    def ok(self) -> bool:
        return self.elapsed is not None

    def line(self) -> str:
        took = "NOT within bound" if self.elapsed is None else f"{self.elapsed:.2f}s"
        text = f"{self.name:<10} {took} (bound {self.bound:.1f}s)"
        if self.latencies:
            values = sorted(self.latencies.values())
            text += (f" per-node min/median/max {values[0]:.2f}/"
                     f"{statistics.median(values):.2f}/{values[-1]:.2f}s")
        return text + (f" {self.detail}" if self.detail else "")


@dataclass
class Result:
    params: Params
    sim: Simulator
    phases: list[Phase] = field(default_factory=list)
    error: str | None = None
    real_seconds: float = 0.0

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)

    @property
    def ok(self) -> bool:
        return self.error is None and all(p.ok for p in self.phases)

    def report(self) -> str:
        lines = [f"seed={self.params.seed} replay: {self.params.replay_command()}",
                 f"plan: {self.sim.plan.describe()}"]
        lines += [p.line() for p in self.phases]
        if self.error:
            lines.append(f"ERROR {self.error}")
        summary = self.sim.summary()
        lines.append(" ".join(f"{k}={v}" for k, v in summary.items()))
        lines.append(f"real time {self.real_seconds:.1f}s for {summary['now']:.1f} virtual s")
        return "\n".join(lines)


# --- conditions -----------------------------------------------------------------


def all_see(sim: Simulator, observers: list[str], subjects: list[str],
            status: MemberStatus) -> bool:
    """Whether every observer's member events report every subject with ``status``."""
    for observer in observers:
        view = sim.process(observer).view
        for subject in subjects:
            if view.get(subject) is not status:
                return False
    return True


def disagreements(sim: Simulator, observers: list[str], subjects: list[str],
                  status: MemberStatus, limit: int = 5) -> list[str]:
    """Up to ``limit`` ``observer: subject=status`` lines where cores' lists differ."""
    found = []
    for observer in observers:
        members = sim.members(observer)
        for subject in subjects:
            if members.get(subject) is not status:
                found.append(f"{observer}: {subject}={members.get(subject)}")
                if len(found) >= limit:
                    return found
    return found


def _wait(sim: Simulator, phase: Phase, start: float, observers: Callable[[], list[str]],
          subjects: list[str], status: MemberStatus) -> None:
    """Run until every observer sees every subject with ``status``, both by events
    and by its core's member list, or until ``start + phase.bound``."""
    def holds() -> bool:
        names = observers()
        return all_see(sim, names, subjects, status) and not disagreements(sim, names, subjects, status, 1)

    def cheap() -> bool:
        return all_see(sim, observers(), subjects, status)

    deadline = start + phase.bound
    while sim.now < deadline:
        if sim.run_until_true(cheap, deadline) is None:
            break
        if holds():
            phase.elapsed = sim.now - start
            sim.check_members()
            return
        sim.run_for(0.25)
    wrong = disagreements(sim, observers(), subjects, status)
    phase.detail = "e.g. " + "; ".join(wrong) if wrong else "event views disagree with member lists"


# --- phases ---------------------------------------------------------------------


def join_phase(sim: Simulator, params: Params, rng: random.Random) -> Phase:
    """Start ``nodes`` nodes over ``join_window`` s; each joins through the seed nodes."""
    names = [f"n{i}" for i in range(1, params.nodes + 1)]
    seed_names = names[:max(1, params.seeds)]
    starts = [0.0] + sorted(rng.uniform(0.0, params.join_window) for _ in names[1:])
    for index, (name, at) in enumerate(zip(names, starts)):
        started = seed_names[:index]  # seeds that start before this node
        through = sorted(rng.sample(started, min(len(started), rng.choice((1, 2)))))
        sim.at(at, _start_and_join, sim, name, through)
    # Convergence: gossip spreads in O(log n) rounds; allow the window plus a full
    # push/pull period of slack for nodes whose alive broadcasts were lost.
    bound = params.join_window + sim.config.push_pull_scale(params.nodes)
    phase = Phase("join", bound)
    sim.run_until(starts[-1])
    _wait(sim, phase, 0.0, sim.running, names, ALIVE)
    return phase


def _start_and_join(sim: Simulator, name: str, seeds: list[str]) -> None:
    sim.add_node(name)
    if seeds:
        sim.join(name, seeds, retry_interval=1.0)


def kill_bound(config: GossipConfig, n: int) -> float:
    """How long until every survivor reports a killed node failed, at worst.

    The longest Lifeguard suspicion (no confirmations) plus probe slack: the first
    probe may come a probe interval stretched by the worst health score later, its
    indirect round takes another, and the dead message needs a few gossip rounds.
    """
    _, longest = config.suspicion_timeouts(n)
    probe_slack = 2 * config.probe_interval * config.awareness_max_multiplier
    return longest + probe_slack + 10 * config.gossip_interval


def kill_phase(sim: Simulator, params: Params, rng: random.Random) -> Phase:
    """Kill one non-seed node; every survivor must report it failed."""
    candidates = [n for n in sim.running() if n not in _seed_names(params)]
    victim = rng.choice(candidates)
    phase = Phase("kill", kill_bound(sim.config, len(sim.running())), detail="")
    start = sim.now
    sim.kill(victim)
    _wait(sim, phase, start, sim.running, [victim], FAILED)
    _latencies(sim, phase, start, victim, FAILED)
    phase.detail = f"victim={victim} " + phase.detail
    return phase


def leave_bound(config: GossipConfig, n: int) -> float:
    """Leave intent wait + propagate delay + one scaled push/pull period + slack.

    The push/pull period is there because Serf itself needs it now and then: a node
    that push/pulls with a peer while the leaver is still *leaving* takes the
    leaver's LTime as a join LTime (``leaving`` is not sent as left), so the leave
    intents that follow are stale to it; it reports the leaver failed once the
    memberlist dead arrives, and left only after a push/pull lists the leaver in
    LeftMembers (Serf ``delegate.go`` ``LocalState``/``MergeRemoteState``).
    """
    return (config.broadcast_timeout + config.leave_propagate_delay
            + config.push_pull_scale(n) + 10 * config.probe_interval)


def leave_phase(sim: Simulator, params: Params, rng: random.Random) -> Phase:
    """One non-seed node leaves gracefully; every other running node must say left."""
    candidates = [n for n in sim.running() if n not in _seed_names(params)]
    leaver = rng.choice(candidates)
    phase = Phase("leave", leave_bound(sim.config, len(sim.running())))
    start = sim.now
    sim.leave(leaver)
    others = lambda: [n for n in sim.running() if n != leaver]  # noqa: E731
    _wait(sim, phase, start, others, [leaver], LEFT)
    _latencies(sim, phase, start, leaver, LEFT)
    if phase.ok:  # the leaver itself must also finish: LeaveFinished, then it stops
        finished = sim.run_until_true(lambda: not sim.process(leaver).is_running,
                                      start + phase.bound)
        phase.elapsed = None if finished is None else max(phase.elapsed or 0.0, finished - start)
    state = sim.process(leaver).state.value
    phase.detail = f"leaver={leaver} process={state} " + phase.detail
    if state != "left":
        phase.elapsed = None
        phase.detail += "(the leaving core never said LeaveFinished)"
    return phase


def partition_bound(config: GossipConfig, n: int) -> float:
    """After healing: one Serf reconnect round plus one scaled push/pull period, plus slack.

    A node sees a far node alive again only once it hears an ``alive`` with a higher
    incarnation (the far node refuted after learning it was declared dead). Gossip
    carries that only between nodes that already see each other, so the last
    stragglers learn it from a reconnect (one random failed member per
    ``reconnect_interval``) or from their periodic push/pull (scaled interval).
    """
    return config.reconnect_interval + config.push_pull_scale(n) + 10 * config.probe_interval


def partition_phase(sim: Simulator, params: Params, rng: random.Random) -> Phase:
    """Split the running nodes in two for ``partition_time`` s, heal, require convergence."""
    live = sim.running()
    shuffled = list(live)
    rng.shuffle(shuffled)
    half = len(shuffled) // 2
    handle = sim.partition([shuffled[:half], shuffled[half:]])
    sim.run_for(params.partition_time)
    far = shuffled[half:]
    split = sum(1 for n in shuffled[:half] if all(sim.status_seen(n, f) is FAILED for f in far))
    sim.heal(handle)
    phase = Phase("partition", partition_bound(sim.config, len(live)))
    phase.counts = {"side": half, "saw_far_side_failed": split}
    _wait(sim, phase, sim.now, sim.running, live, ALIVE)
    phase.detail = (f"split {half}/{len(live) - half} for {params.partition_time:g}s "
                    f"({split}/{half} saw the other side failed) " + phase.detail)
    return phase


def swarm_phase(sim: Simulator, params: Params, rng: random.Random) -> Phase:
    """Let the seed-drawn plan's partitions and clogs play out, then require convergence."""
    plan = sim.plan
    end = max([p.end for p in plan.partitions] + [c.end for c in plan.clogs]
              + [f.at for f in plan.processes] + [sim.now])
    sim.run_until(end)
    live = sim.running()
    phase = Phase("swarm", partition_bound(sim.config, len(live)))
    _wait(sim, phase, sim.now, sim.running, live, ALIVE)
    phase.detail = f"faults over at {end:.1f}s " + phase.detail
    return phase


def _latencies(sim: Simulator, phase: Phase, start: float, subject: str,
               status: MemberStatus) -> None:
    for name in sim.running():
        proc = sim.process(name)
        if name != subject and proc.view.get(subject) is status:
            phase.latencies[name] = proc.changed_at[subject] - start


def _seed_names(params: Params) -> list[str]:
    return [f"n{i}" for i in range(1, max(1, params.seeds) + 1)]


SCENARIOS: dict[str, tuple[Callable[[Simulator, Params, random.Random], Phase], ...]] = {
    "join": (join_phase,),
    "join-kill-leave": (join_phase, kill_phase, leave_phase),
    "partition": (join_phase, partition_phase),
    "all": (join_phase, kill_phase, leave_phase, partition_phase),
    "swarm": (join_phase, swarm_phase),
}
SWARM_DURATION = 60.0
"""Virtual seconds over which a swarm plan's faults are spread."""


def run_scenario(params: Params, *, trace_packets: bool = True,
                 trace_limit: int = 200_000) -> Result:
    """Run ``params.scenario``; phases stop at the first one that misses its bound."""
    if params.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {params.scenario!r} (want {', '.join(SCENARIOS)})")
    config = GossipConfig.named(params.profile)
    if params.scenario == "swarm":  # no plan given: the seed draws one (--loss etc. unused)
        names = [f"n{i}" for i in range(1, params.nodes + 1)]
        plan = FaultPlan.swarm(random.Random(f"{params.seed}/plan"), names, SWARM_DURATION)
    else:
        plan = params.plan()
    sim = Simulator(params.seed, plan=plan, config=config, trace_packets=trace_packets,
                    trace_limit=trace_limit)
    rng = random.Random(f"{params.seed}/scenario")
    result = Result(params, sim)
    began = time.perf_counter()
    try:
        for run_phase in SCENARIOS[params.scenario]:
            phase = run_phase(sim, params, rng)
            result.phases.append(phase)
            if not phase.ok:
                break
    except InvariantViolation as exc:
        result.error = f"invariant violated: {exc}"
    result.real_seconds = time.perf_counter() - began
    return result
