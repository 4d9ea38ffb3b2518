"""The chaos runner: play a resolved timeline on a live cluster while observing it.

Phases (plain threads; ``observe.py`` owns the HTTP):

1. **Preflight.** Every node of ``DIR/cluster.json`` runs, every server sees every
   member alive and a leader exists (``agent.cluster.ops.check_ready``), waited for up
   to ``READY_WAIT`` seconds so that a run right after another one starts clean.
   Otherwise ``ChaosError`` (exit 2): the run would measure the previous experiment.
2. **Faults.** Samplers start, then ``t=0``: the workload writes and submits jobs
   while the main thread runs each action at its time through ``agent.cluster.ops``
   (``leader``/``follower`` picks resolved from the latest samples). The final heal
   clears every rule and continues stopped nodes.
3. **Settle.** Observation goes on until, for two checks in a row, every running
   server sees every running member alive, a leader exists and a write made after the
   heal was acknowledged, or until ``settle`` seconds after the heal.
4. **End.** Probe writes, the reads of every acknowledged write and of every job (the
   jobs are polled until they are placed or the settle time is up), the leadership
   lines of the logs; then the invariants and the report.
"""

from __future__ import annotations

import datetime
import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..cluster import ops, procs
from ..cluster.state import ClusterError, ClusterState, NodeInfo
from .invariants import Verdict, check_all, exit_status
from .observe import (Clock, Observer, Target, http_json, HttpError, jobs_settled, read_back,
                      read_jobs, read_leader_logs, submit_job, write_variable)
from .plan import FINAL_HEAL, Action, Plan, format_timeline, isolating_groups, resolve_timeline
from .record import FaultEvent, Record
from .report import summary_text, write_report

__all__ = ["ChaosError", "RunResult", "run_plan", "prepare"]

READY_WAIT = 30.0
"""Seconds the preflight waits for a converged cluster with a leader."""
JOB_WAIT_MIN = 10.0
"""Seconds the end phase polls jobs at least, even when the settle time is used up."""
PROBES = 3
MAX_IN_FLIGHT = 16


class ChaosError(Exception):
    """The run cannot start (no cluster, cluster not ready): one line, exit status 2."""


@dataclass
class RunResult:
    """What ``run_plan`` returns."""
    exit_status: int
    record: Record
    verdicts: list[Verdict]
    files: list[Path] = field(default_factory=list)


def prepare(plan: Plan, state: ClusterState, seed: int) -> list[Action]:
    """The resolved timeline of ``plan`` on ``state``'s nodes (``PlanError`` when it does not fit)."""
    return resolve_timeline(plan, [(n.name, n.role) for n in state.nodes], seed)


def preflight(state: ClusterState, wait: float = READY_WAIT) -> None:
    """Wait until the cluster is whole and led; ``ChaosError`` saying what is missing."""
    deadline = time.monotonic() + wait
    while True:
        try:
            ready = ops.check_ready(state)
        except ClusterError as exc:
            raise ChaosError(f"cluster in {state.dir} is not whole: {str(exc).splitlines()[0]}") from None
        if ready.done:
            return
        if time.monotonic() >= deadline:
            raise ChaosError(f"cluster in {state.dir} not ready after {wait:g}s: "
                             + "; ".join(ready.missing[:4]))
        time.sleep(0.5)


class _Run:
    """The state of one run shared by the main thread and the workload threads."""

    def __init__(self, plan: Plan, seed: int, state: ClusterState, actions: list[Action],
                 echo: Callable[[str], None], interval: float) -> None:
        self.plan, self.seed, self.state, self.actions, self.echo = plan, seed, state, actions, echo
        self.servers = state.of_role("server")
        self.clock = Clock()
        self.run_id = f"{seed}-{int(self.clock.started_wall * 1000) % 10**10}"
        self.record = Record(plan=plan.name, seed=seed, started_wall=self.clock.started_wall,
                             observers=sorted(n.name for n in self.servers),
                             node_of_member={n.member: n.name for n in state.nodes},
                             timeline=format_timeline(plan, actions, seed).splitlines())
        self.observer = Observer(self.record, self.clock, [Target(n.name, n.http) for n in self.servers],
                                 interval=interval)
        self.down: set[str] = set()          # killed or stopped by this run
        self.stopped: set[str] = set()
        self.labels: dict[str, str] = {}
        self.lock = threading.Lock()
        self.workload_done = threading.Event()
        self.in_flight = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self._turn = itertools.count()      # rotates the servers writes go through

    # --- targets --------------------------------------------------------------------------

    def live_servers(self) -> list[Target]:
        """Servers this run has not taken down, rotated so successive calls spread the load."""
        with self.lock:
            up = [Target(n.name, n.http) for n in self.servers if n.name not in self.down]
        if not up:
            return []
        shift = next(self._turn) % len(up)
        return up[shift:] + up[:shift]

    def running(self, node: NodeInfo) -> bool:
        current = self.state.node(node.name)
        return procs.process_status(current.pid, current.argv) == "running"

    # --- the workload ----------------------------------------------------------------------

    def workload(self) -> None:
        """Writes at the plan's rate and jobs spread over the fault window, until told to stop."""
        wl = self.plan.workload
        write_times = (k / wl.writes_per_second for k in itertools.count()) if wl.writes_per_second else iter(())
        job_times = iter([i * self.plan.heal_at / wl.jobs for i in range(wl.jobs)])
        next_write, next_job = next(write_times, None), next(job_times, None)
        seq, job_index = 0, 0
        while not self.workload_done.is_set():
            upcoming = [t for t in (next_write, next_job) if t is not None]
            if not upcoming:
                return
            if not self.clock.sleep_until(min(upcoming), self.workload_done):
                return
            if next_job is not None and next_job <= self.clock.now():
                self._spawn(self._job, job_index)
                job_index, next_job = job_index + 1, next(job_times, None)
            if next_write is not None and next_write <= self.clock.now():
                seq += 1
                self._spawn(self._write, seq)
                next_write = next(write_times, None)

    def _spawn(self, function: Callable[[int], None], arg: int) -> None:
        self.in_flight.acquire()

        def body() -> None:
            try:
                function(arg)
            finally:
                self.in_flight.release()
        threading.Thread(target=body, daemon=True, name=f"chaos-{function.__name__}-{arg}").start()

    def _write(self, seq: int, final: bool = False) -> None:
        targets = self.live_servers()
        if not targets:
            return
        path = f"chaos/{self.run_id}/{'probe-' if final else ''}{seq}"
        result = write_variable(targets[0], path, f"{self.run_id}:{seq}", seq, self.clock, final=final)
        self.observer.add("writes", result)

    def _job(self, index: int) -> None:
        targets = self.live_servers()
        if not targets:
            return
        wl = self.plan.workload
        job = submit_job(targets[0], f"chaos-{self.run_id}-{index}", wl.job_count, wl.job_duration, self.clock)
        self.observer.add("jobs", job)

    def drain(self) -> None:
        """Wait for every write and job in flight to finish."""
        for _ in range(MAX_IN_FLIGHT):
            self.in_flight.acquire()
        for _ in range(MAX_IN_FLIGHT):
            self.in_flight.release()

    # --- faults ----------------------------------------------------------------------------

    def perform(self, action: Action) -> FaultEvent:
        """Run one action; the event says what was done and whether it worked."""
        t = self.clock.now()
        try:
            description, node = self._perform(action)
        except (ClusterError, _PickError) as exc:
            return FaultEvent(t, action.at, action.do, action.describe(), False,
                              str(exc).splitlines()[0], action.node or "")
        return FaultEvent(t, action.at, action.do, description, True, "", node)

    def _perform(self, action: Action) -> tuple[str, str]:
        if action.do == FINAL_HEAL:
            for name in sorted(self.stopped):
                ops.cont(self.state, name)
            with self.lock:
                self.down -= self.stopped
                self.stopped.clear()
            ops.heal(self.state)
            return "final heal", ""
        if action.do == "heal":
            ops.heal(self.state)
            return "heal", ""
        if action.do == "partition":
            groups = action.groups
            if groups is None:
                assert action.isolate is not None
                target = self._runtime_node(action.isolate)
                groups = isolating_groups(target, sorted(n.name for n in self.state.nodes))
            ops.partition(self.state, [list(g) for g in groups])
            return "partition " + " | ".join("[" + " ".join(g) + "]" for g in groups), ""
        assert action.node is not None
        node = self._runtime_node(action.node)
        if action.label:
            self.labels[action.label] = node
        described = Action(at=action.at, do=action.do, node=node, percent=action.percent,
                           ms=action.ms).describe()
        self._signal_verb(action, node)
        return described + (f" ({action.node})" if node != action.node else ""), node

    def _signal_verb(self, action: Action, node: str) -> None:
        if action.do == "loss":
            assert action.percent is not None
            ops.loss(self.state, node, action.percent)
        elif action.do == "delay":
            assert action.ms is not None
            ops.delay(self.state, node, action.ms)
        elif action.do in ("kill", "stop"):
            getattr(ops, action.do)(self.state, node)
            with self.lock:
                self.down.add(node)
                if action.do == "stop":
                    self.stopped.add(node)
        elif action.do in ("restart", "cont"):
            getattr(ops, action.do)(self.state, node)
            with self.lock:
                self.down.discard(node)
                self.stopped.discard(node)

    def _runtime_node(self, name: str) -> str:
        """A node name for ``name``: itself, the node of an ``@label``, or the leader/a follower now."""
        if name.startswith("@"):
            if name[1:] not in self.labels:
                raise _PickError(f"{name} was not resolved (its step failed)")
            return self.labels[name[1:]]
        if name not in ("leader", "follower"):
            return name
        latest = self.observer.latest_raft()
        leaders = sorted((s.term, s.server) for s in latest.values()
                         if s.state == "Leader" and s.server not in self.down)
        if not leaders:
            raise _PickError(f"no leader to pick at t={self.clock.now():.1f}s")
        leader = leaders[-1][1]
        if name == "leader":
            return leader
        others = sorted(n.name for n in self.servers if n.name != leader and n.name not in self.down)
        if not others:
            raise _PickError("no follower left to pick")
        return others[follower_index(self.seed, self.plan.name, len(self.record.faults), len(others))]

    # --- settling and the end ----------------------------------------------------------------

    def settled(self) -> bool:
        """Every running server sees every running member alive; a leader; a write acked since the heal."""
        live = [n for n in self.state.nodes if self.running(n)]
        expected = {n.member for n in live if n.role != "client"}
        views = self.observer.latest_views()
        for server in (n for n in live if n.role == "server"):
            view = views.get(server.name)
            if view is None or any(view.get(m) != "alive" for m in expected):
                return False
        latest = self.observer.latest_raft()
        if not any(s.state == "Leader" for s in latest.values()):
            return False
        heal = self.record.heal_t
        return any(w.outcome == "ok" and w.started >= heal for w in list(self.record.writes)) \
            or self.plan.workload.writes_per_second == 0

    def find_leader(self) -> str:
        """The server every answering server names as leader now ("" when none)."""
        by_rpc = {n.rpc: n.name for n in self.servers}
        for target in self.live_servers():
            try:
                status, body = http_json(target.http, "GET", "/v1/status/leader", timeout=2.0)
            except HttpError:
                continue
            if status == 200 and isinstance(body, str) and body in by_rpc:
                return by_rpc[body]
        return ""


class _PickError(Exception):
    """A pick resolved at run time had nothing to choose."""


def follower_index(seed: int, plan: str, step: int, n: int) -> int:
    """A seeded index in ``range(n)`` for the ``step``-th action (the ``follower`` pick)."""
    return random.Random(f"{seed}/chaos/{plan}/follower/{step}").randrange(n)


def _created_wall(state: ClusterState) -> float | None:
    try:
        return datetime.datetime.fromisoformat(state.created).timestamp()
    except ValueError:
        return None


def run_plan(plan: Plan, seed: int, state: ClusterState, out_dir: Path, *,
             echo: Callable[[str], None] = print, sample_interval: float = 0.5,
             ready_wait: float = READY_WAIT) -> RunResult:
    """Run ``plan`` on the cluster of ``state``; write the report into ``out_dir``.

    Raises:
        PlanError: the plan does not fit the cluster (a node it names is missing...).
        ChaosError: the cluster is not whole and led before the run.
    """
    actions = prepare(plan, state, seed)
    echo(format_timeline(plan, actions, seed).rstrip("\n"))
    preflight(state, ready_wait)
    run = _Run(plan, seed, state, actions, echo, sample_interval)
    run.observer.start()
    workload = threading.Thread(target=run.workload, name="chaos-workload", daemon=True)
    workload.start()
    try:
        _fault_phase(run)
        _settle_phase(run)
        run.workload_done.set()
        workload.join()
        _end_phase(run)
    except BaseException:               # Ctrl-C or a bug: leave no partition or stopped node behind
        run.workload_done.set()
        run.perform(Action(at=run.clock.now(), do=FINAL_HEAL))
        raise
    finally:
        run.workload_done.set()
        run.observer.stop()
    record = run.record
    record.ended_t = run.clock.now()
    logs = {n.name: n.log for n in run.servers}
    record.leader_claims = read_leader_logs(logs, record.started_wall, _created_wall(state))
    verdicts = check_all(record, plan.bounds.converge_within)
    files = write_report(out_dir, record, verdicts)
    echo(summary_text(record, verdicts).rstrip("\n"))
    echo(f"report: {', '.join(str(p) for p in files)}")
    return RunResult(exit_status(verdicts), record, verdicts, files)


def _fault_phase(run: _Run) -> None:
    run.echo("running:")
    for action in run.actions:
        run.clock.sleep_until(action.at)
        event = run.perform(action)
        run.observer.add("faults", event)
        mark = "" if event.ok else f"  FAILED: {event.error}"
        run.echo(f"  t={event.t:6.1f}s  {event.description}{mark}")
        if action.do == FINAL_HEAL:
            run.record.heal_t = event.t


def _settle_phase(run: _Run) -> None:
    deadline = run.record.heal_t + run.plan.settle
    streak = 0
    while run.clock.now() < deadline:
        run.clock.sleep_until(min(run.clock.now() + 0.5, deadline))
        streak = streak + 1 if run.settled() else 0
        if streak >= 2:
            run.echo(f"  t={run.clock.now():6.1f}s  settled")
            return
    run.echo(f"  t={run.clock.now():6.1f}s  settle time up ({run.plan.settle:g}s after the heal)")


def _end_phase(run: _Run) -> None:
    record = run.record
    record.final_leader = run.find_leader()
    probes = [threading.Thread(target=run._write, args=(k, True), name=f"chaos-probe-{k}")
              for k in range(1, PROBES + 1)]
    for probe in probes:                 # side by side: without a leader each takes a timeout
        probe.start()
    run.drain()
    for probe in probes:
        probe.join()
    targets = run.live_servers()
    has_leader = bool(record.final_leader)
    deadline = max(record.heal_t + run.plan.settle, run.clock.now() + JOB_WAIT_MIN)
    if record.jobs:
        while True:
            read_jobs(record.jobs, targets, has_leader)
            if jobs_settled(record.jobs) or run.clock.now() >= deadline:
                break
            run.clock.sleep_until(run.clock.now() + 1.0)
    record.readbacks = read_back(record.writes, targets, has_leader)
    live = [n for n in run.state.nodes if run.running(n)]
    record.live_observers = sorted(n.name for n in live if n.role == "server")
    record.expected_alive = sorted(n.member for n in live if n.role != "client")
