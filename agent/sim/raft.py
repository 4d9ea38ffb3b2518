"""A seeded simulation of a Raft cluster: production ``RaftCore``s, virtual clock and network.

Theory of operation (STYLE.md section 6). ``RaftSimulation`` is a plain loop over a
heap of ``(time, seq, function, args)``; ``seq`` breaks ties in scheduling order, so a
run is a pure function of the seed (and of the plan and config when given). Every
server ``s1 .. sN`` is a production ``RaftCore`` with ``random.Random(f"{seed}/sI/raft")``
(a restart's core adds ``/restart<generation>``), a ``MemoryStorage`` and a small
state machine (``raft_checks.StateMachine``). At t=0 every core is bootstrapped
with the same configuration: all servers voters.

Driving a core, as the trio driver does (docs/internals.md, driver contract): after
every input the simulation drains ``take_outputs()``, hands every ``Persist`` of the
batch to storage (durable at once: a batch is processed at one instant, so a crash
falls between batches and never between a ``Persist`` and its batch's ``Send``s),
then sends every ``Send``, then applies ``Restore``/``Apply``, then reports
``RoleChanged``; a ``SnapshotWanted`` is answered with ``compact()`` and the
state machine's snapshot. Then it schedules one timer at ``next_deadline()``.

Faults come from a ``FaultPlan`` (``raft_plan`` draws one from the seed when none is
given): each ``Send`` asks ``Network.datagram_times`` when, and whether, each copy
arrives, which gives loss, duplication, reordering (random delays), partitions and
clogged links; a kill drops the core and every message in flight to it, a restart
builds a new core from ``storage.load()``; a pause queues inputs until resume. A
client proposes commands to a leader at random intervals; now and then a leader is
asked to transfer leadership, or to change membership one server at a time (remove
a voter, itself included; add it back as a voter, or as a non-voter and promote it).

``raft_checks.SafetyChecker`` checks the Raft paper's safety properties after every
batch and fails fast; the message starts with the seed and the replay command.
When the plan is over everything is healed and restarted, and the cluster must
converge within ``heal_bound`` virtual seconds: every server a voter again (the
harness asks the leader to re-add them), one leader that every server follows,
equal commit indexes, equal state machines.

    python -m agent.sim.raft --seed 7 [--servers 5] [--duration 60]
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import logging
import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from raftlite.config import RaftConfig
from raftlite.core import RaftCore
from raftlite.errors import NotLeader, RaftError
from raftlite.events import Apply, Persist, Restore, RoleChanged, Send, SnapshotWanted
from raftlite.storage import MemoryStorage
from raftlite.types import Configuration, PersistentState, Role, Server, Suffrage

from .network import Clog, FaultPlan, Network, ProcessFault
from .raft_checks import (DOWN, LEADER, RaftInvariantViolation, SafetyChecker, SimReport,
                          StateMachine, raft_plan, replay_command)
from .trace import Trace

log = logging.getLogger(__name__)

RAFT_PORT = 4647
BUSY_TICK_LIMIT = 1000
PAUSED_INBOX_LIMIT = 4096
HEAL_POLL = 0.25

SIM_CONFIG = RaftConfig(snapshot_threshold=32, trailing_logs=8, max_append_entries=16)
"""hashicorp/raft timings, with a small log so snapshots and InstallSnapshot happen."""


class _SimLogAdapter(logging.LoggerAdapter):
    """Stamps each core log line with the virtual time and the server name."""

    def __init__(self, sim: "RaftSimulation", node: str) -> None:
        super().__init__(logging.getLogger("agent.sim.raft.node"), {"node": node})
        self._sim = sim

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"{self._sim.now:.3f} {self.extra['node']} {msg}", kwargs


@dataclass(eq=False)
class _Server:
    """One simulated server process: durable storage survives, the core does not."""

    name: str
    address: str
    storage: Any
    core: Any = None
    machine: StateMachine = field(default_factory=StateMachine)
    generation: int = 0
    paused: bool = False
    timer_at: float | None = None
    inbox: list[Any] = field(default_factory=list)
    busy: int = 0
    leader_commit: int = 0     # highest commit index recorded while this core led


def _summary(message: Any) -> str:
    """``AppendEntries t=3 prev=4/2 n=1 commit=4``: one message for the trace."""
    name = type(message).__name__
    parts = [name, f"t={message.term}"]
    if hasattr(message, "prev_log_index"):
        parts += [f"prev={message.prev_log_index}/{message.prev_log_term}",
                  f"n={len(message.entries)}", f"commit={message.leader_commit}"]
    for attr in ("granted", "success", "pre_vote", "last_log_index", "last_index"):
        if hasattr(message, attr):
            parts.append(f"{attr}={getattr(message, attr)}")
    return " ".join(parts)


class RaftSimulation:
    """Runs ``servers`` production ``RaftCore``s under a virtual clock and network.

    Args:
        seed: the root seed; every random choice in the run derives from it.
        servers: cluster size (``s1 .. sN``, all voters).
        duration: virtual seconds of chaos (plan, client, transfers) before healing.
        plan: network and process faults; drawn by ``raft_plan`` from the seed when None.
        config: the raft configuration of every server (``SIM_CONFIG`` when None).
        heal_bound: virtual seconds after healing within which the cluster must converge.
        client_interval: mean seconds between client proposals.
        transfer_interval: mean seconds between leadership transfer requests.
        membership_interval: mean seconds between membership changes (None: none).
        trace_messages: also trace every delivered message (slower; for reading a run).
    """

    def __init__(self, seed: int, servers: int = 5, duration: float = 60.0,
                 plan: FaultPlan | None = None, config: RaftConfig | None = None, *,
                 heal_bound: float = 30.0, client_interval: float = 0.2,
                 transfer_interval: float = 10.0, membership_interval: float | None = 12.0,
                 trace_limit: int = 400, trace_messages: bool = False) -> None:
        self.seed = seed
        self.duration = duration
        self.heal_bound = heal_bound
        self.names = [f"s{i}" for i in range(1, servers + 1)]
        self.plan = plan if plan is not None else raft_plan(
            random.Random(f"{seed}/plan"), self.names, duration)
        self.config = config if config is not None else SIM_CONFIG
        self.network = Network(self.plan, random.Random(f"{seed}/network"))
        self.trace = Trace(trace_limit, packets=False)
        self.trace_messages = trace_messages
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._rng = random.Random(f"{seed}/client")
        self._fault_rng = random.Random(f"{seed}/faults")
        self._since: dict[str, float] = {}  # server -> when it was killed or paused
        self.client_interval = client_interval
        self.transfer_interval = transfer_interval
        context = (f"seed={seed} replay: {replay_command(seed, servers, duration)}\n"
                   f"plan: {self.plan.describe()}")
        self.checker = SafetyChecker(context, clock=lambda: self.now)
        self.counts = dict.fromkeys(
            ("elections", "proposals", "sent", "delivered", "dropped", "crashes", "restarts",
             "compactions", "restores", "transfers", "membership"), 0)
        self.accepted: list[tuple[int, int, bytes]] = []
        self.leaders: dict[int, str] = {}
        self.servers = {name: _Server(name, f"10.0.0.{i}:{RAFT_PORT}", MemoryStorage())
                        for i, name in enumerate(self.names, start=1)}
        self.configuration = Configuration(tuple(
            Server(s.name, s.address, Suffrage.VOTER) for s in self.servers.values()))
        for srv in self.servers.values():
            self.checker.add_server(srv.name)
            srv.core = self._new_core(srv, PersistentState())
            srv.core.bootstrap(self.configuration, now=0.0)
            self._drain(srv)
        self._schedule_plan()
        self.at(self._rng.expovariate(1.0 / client_interval), self._client_tick)
        self.at(self._rng.expovariate(1.0 / transfer_interval), self._transfer_tick)
        self._membership_rng = random.Random(f"{seed}/membership")
        self.membership_interval = membership_interval
        if membership_interval:
            self.at(self._membership_rng.expovariate(1.0 / membership_interval),
                    self._membership_tick)

    # --- the loop -------------------------------------------------------------------
    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        """Call ``fn(*args)`` at virtual time ``t`` (not before now)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(t, self.now), self._seq, fn, args))

    def run_until(self, t: float) -> None:
        """Process every event up to and including virtual time ``t``."""
        heap = self._heap
        while heap and heap[0][0] <= t:
            when, _, fn, args = heapq.heappop(heap)
            self.now = when
            fn(*args)
        self.now = max(self.now, t)

    def run(self) -> SimReport:
        """Chaos for ``duration``, then heal and wait for convergence; never raises."""
        violation = liveness = None
        converged_after = None
        try:
            self.run_until(self.duration)
            self._heal()
            converged_after, liveness = self._wait_converged()
        except RaftInvariantViolation as exc:
            violation = str(exc)
        except Exception as exc:  # noqa: BLE001 - a core crash is a finding, reported with the seed
            frames = traceback.format_exception(exc)[-6:]
            violation = (f"{self.checker.context}\nt={self.now:.3f} exception "
                         f"{type(exc).__name__}: {exc}\n{''.join(frames).rstrip()}")
        return self._report(violation, liveness, converged_after)

    # --- processes ------------------------------------------------------------------
    def _new_core(self, srv: _Server, state: PersistentState) -> RaftCore:
        suffix = f"/restart{srv.generation}" if srv.generation else ""
        return RaftCore(self.config, server_id=srv.name, address=srv.address, state=state,
                        rng=random.Random(f"{self.seed}/{srv.name}/raft{suffix}"),
                        log=_SimLogAdapter(self, srv.name), now=self.now)

    def kill(self, name: str) -> None:
        """kill -9: the core and everything in flight to it are gone; storage stays."""
        srv = self.servers[name]
        if srv.core is None:
            return
        srv.core, srv.timer_at, srv.paused, srv.inbox = None, None, False, []
        srv.generation += 1
        self.counts["crashes"] += 1
        self.trace.transition(self.now, name, "killed")

    def restart(self, name: str) -> None:
        """Start a new process from durable state (a running one is killed first)."""
        srv = self.servers[name]
        self.kill(name)
        state = srv.storage.load()
        self._check_loaded(srv, state)
        srv.machine = (StateMachine.from_snapshot(state.snapshot.data) if state.snapshot
                       else StateMachine())
        self.checker.restarted(name, srv.machine.index)
        srv.generation += 1
        srv.leader_commit = 0
        srv.core = self._new_core(srv, state)
        self.counts["restarts"] += 1
        self.trace.transition(self.now, name, f"restarted term={state.term} "
                              f"entries={len(state.entries)} machine={srv.machine.index}")
        self._drain(srv)

    def _check_loaded(self, srv: _Server, state: PersistentState) -> None:
        """What storage hands back is what the Persist outputs said (durability)."""
        mirror = self.checker.logs[srv.name]
        loaded = {e.index: e.term for e in state.entries}
        snap = (state.snapshot.index, state.snapshot.term) if state.snapshot else (0, 0)
        kept = {i: t for i, t in mirror.terms.items() if i > snap[0]}
        if loaded != kept or snap != (mirror.snapshot_index, mirror.snapshot_term):
            self.checker.fail(f"durability: {srv.name} loads log {sorted(loaded.items())[-5:]} "
                              f"snapshot {snap}, but persisted {sorted(kept.items())[-5:]} "
                              f"snapshot {(mirror.snapshot_index, mirror.snapshot_term)}")
        mirror.terms = loaded  # storage hands back only the entries after the snapshot

    def pause(self, name: str) -> None:
        srv = self.servers[name]
        if srv.core is not None and not srv.paused:
            srv.paused = True
            self.trace.transition(self.now, name, "paused")

    def resume(self, name: str) -> None:
        """SIGCONT: replay the queued messages, then the late timers."""
        srv = self.servers[name]
        if srv.core is None or not srv.paused:
            return
        srv.paused = False
        self.trace.transition(self.now, name, f"resumed inbox={len(srv.inbox)}")
        inbox, srv.inbox = srv.inbox, []
        for message in inbox:
            if srv.core is not None:
                srv.core.receive(message, self.now)
                self._drain(srv)
        if srv.core is not None:
            srv.timer_at = None
            srv.core.handle_timers(self.now)
            self._drain(srv)

    # --- driving a core -------------------------------------------------------------
    def _drain(self, srv: _Server) -> None:
        """Perform a core's outputs in the driver's order, check, reschedule its timer."""
        compacted = False
        while True:
            outputs = srv.core.take_outputs()
            wanted = self._perform(srv, outputs)
            self._observe_leader(srv)
            if wanted is None or compacted or srv.machine.index == 0:
                break
            compacted = True
            srv.core.compact(srv.machine.index, srv.machine.snapshot(), self.now)
            self.counts["compactions"] += 1
        self._schedule_timer(srv)

    def _perform(self, srv: _Server, outputs: list[Any]) -> SnapshotWanted | None:
        persists = [o for o in outputs if type(o) is Persist]
        if persists:
            srv.storage.persist(persists)
            for persist in persists:
                self.checker.persisted(srv.name, persist)
        for out in outputs:
            if type(out) is Send:
                self._send(srv, out)
        for out in outputs:
            if type(out) is Apply:
                for entry in out.entries:
                    srv.machine.apply(entry)
                    self.checker.applied(srv.name, entry, srv.machine.digest, srv.core.term)
            elif type(out) is Restore:
                srv.machine = StateMachine.from_snapshot(out.snapshot.data)
                self.checker.restored(srv.name, out.snapshot.index, srv.machine.digest)
                self.counts["restores"] += 1
        wanted = None
        for out in outputs:
            if type(out) is RoleChanged:
                self._role_changed(srv, out)
            elif type(out) is SnapshotWanted:
                wanted = out
        return wanted

    def _role_changed(self, srv: _Server, out: RoleChanged) -> None:
        self.trace.transition(self.now, srv.name,
                              f"{out.role} term={out.term} leader={out.leader_id}")
        if out.role == Role.CANDIDATE:
            self.counts["elections"] += 1
        elif out.role == Role.LEADER:
            self.leaders[out.term] = srv.name
            srv.leader_commit = 0
        self.checker.role_changed(srv.name, out.role, out.term, out.leader_id)

    def _observe_leader(self, srv: _Server) -> None:
        core = srv.core
        if core.role == Role.LEADER and core.commit_index > srv.leader_commit:
            self.checker.leader_committed(srv.name, core.term, srv.leader_commit + 1,
                                          core.commit_index)
            srv.leader_commit = core.commit_index

    def _schedule_timer(self, srv: _Server) -> None:
        deadline = srv.core.next_deadline()
        if deadline is None or deadline == srv.timer_at:
            return
        if deadline <= self.now:
            srv.busy += 1
            if srv.busy > BUSY_TICK_LIMIT:
                self.checker.fail(f"{srv.name} asks for a timer at {deadline} again and again")
        else:
            srv.busy = 0
        srv.timer_at = deadline
        self.at(deadline, self._tick, srv, srv.generation, deadline)

    def _tick(self, srv: _Server, generation: int, at: float) -> None:
        if srv.core is None or srv.generation != generation or srv.timer_at != at or srv.paused:
            return
        srv.timer_at = None
        srv.core.handle_timers(self.now)
        self._drain(srv)

    def _send(self, srv: _Server, out: Send) -> None:
        self.counts["sent"] += 1
        dest = self.servers.get(out.to_id)
        if dest is None or dest.address != out.to_address:
            self.checker.fail(f"{srv.name} sends to unknown server {out.to_id}@{out.to_address}")
        times = self.network.datagram_times(srv.name, dest.name, self.now)
        if not times:
            self.counts["dropped"] += 1
        for t in times:
            self.at(t, self._deliver, dest, dest.generation, out.message, srv.name)

    def _deliver(self, dest: _Server, generation: int, message: Any, source: str) -> None:
        if dest.core is None or dest.generation != generation:
            self.counts["dropped"] += 1
            return
        if dest.paused:
            if len(dest.inbox) < PAUSED_INBOX_LIMIT:
                dest.inbox.append(message)
            return
        self.counts["delivered"] += 1
        if self.trace_messages:
            self.trace.transition(self.now, f"{dest.name}<-{source}", _summary(message))
        dest.core.receive(message, self.now)
        self._drain(dest)

    # --- the plan, the client ---------------------------------------------------------
    def _schedule_plan(self) -> None:
        for part in self.plan.partitions:
            handles: list[int] = []
            self.at(part.start, self._start_partition, part.groups, handles)
            self.at(part.end, self._end_partition, handles)
        for clog in self.plan.clogs:
            self.at(clog.start, self._start_clog, clog)
        for fault in self.plan.processes:
            self.at(fault.at, self._process_fault, fault)

    def _start_partition(self, groups: tuple[tuple[str, ...], ...], handles: list[int]) -> None:
        if self.now < self.duration:
            if any(LEADER in group for group in groups):
                leader = self._resolve(LEADER)
                groups = tuple(tuple(leader if n == LEADER else n for n in g
                                     if n == LEADER or n != leader) for g in groups)
            handles.append(self.network.partition(groups))
            self.trace.transition(self.now, "net", f"partition {[list(g) for g in groups]}")

    def _end_partition(self, handles: list[int]) -> None:
        for handle in handles:
            self.network.heal(handle)
        if handles:
            self.trace.transition(self.now, "net", "partition ends")

    def _start_clog(self, clog: Clog) -> None:
        if self.now < self.duration:
            self.network.clog(clog.source, clog.dest, clog.end)
            self.trace.transition(self.now, "net",
                                  f"clog {clog.source}->{clog.dest} until {clog.end:.3f}")

    def _process_fault(self, fault: ProcessFault) -> None:
        node = self._resolve(fault.node)
        if self.now >= self.duration or node not in self.servers:
            return
        self._since.pop(node, None)
        if fault.action in ("kill", "pause", "leave"):
            self._since[node] = self.now
        action = {"kill": self.kill, "restart": self.restart, "pause": self.pause,
                  "resume": self.resume, "leave": self.kill}[fault.action]
        action(node)

    def _resolve(self, node: str) -> str:
        """A plan's server name, with ``LEADER`` and ``DOWN`` resolved now."""
        if node == LEADER:
            leaders = [s for s in self._live() if s.core.role == Role.LEADER]
            if leaders:
                return max(leaders, key=lambda s: s.core.term).name
            live = self._live()
            return self._fault_rng.choice(live).name if live else self.names[0]
        if node == DOWN:
            stopped = sorted((t, n) for n, t in self._since.items()
                             if self.servers[n].core is None or self.servers[n].paused)
            return stopped[0][1] if stopped else ""
        return node

    def _live(self) -> list[_Server]:
        return [s for s in self.servers.values() if s.core is not None and not s.paused]

    def _client_tick(self) -> None:
        """Propose a command to a leader (any live server when none is)."""
        if self.now >= self.duration:
            return
        live = self._live()
        leaders = [s for s in live if s.core.role == Role.LEADER]
        if live:
            target = self._rng.choice(leaders or live)
            self.counts["proposals"] += 1
            data = f"c{self.counts['proposals']}".encode()
            try:
                index = target.core.propose(data, self.now)
            except NotLeader:
                pass
            else:
                self.accepted.append((index, target.core.term, data))
            self._drain(target)
        self.at(self.now + self._rng.expovariate(1.0 / self.client_interval), self._client_tick)

    def _transfer_tick(self) -> None:
        """Ask a leader to hand leadership to a random voter (or one it picks)."""
        if self.now >= self.duration:
            return
        leaders = [s for s in self._live() if s.core.role == Role.LEADER]
        if leaders:
            leader = self._rng.choice(leaders)
            voters = leader.core.configuration.voters()
            target = self._rng.choice([None, *[n for n in voters if n != leader.name]])
            try:
                leader.core.transfer_leadership(target, self.now)
            except RaftError as exc:
                self.trace.transition(self.now, leader.name, f"transfer leadership to {target} "
                                      f"refused: {type(exc).__name__} {exc}")
            else:
                self.counts["transfers"] += 1
                self.trace.transition(self.now, leader.name, f"transfer leadership to {target}")
            self._drain(leader)
        self.at(self.now + self._rng.expovariate(1.0 / self.transfer_interval), self._transfer_tick)

    def _membership_tick(self) -> None:
        """One membership change on a leader: remove a server, or bring a removed one back."""
        if self.now >= self.duration:
            return
        leaders = [s for s in self._live() if s.core.role == Role.LEADER]
        if leaders:
            self._change_membership(self._membership_rng.choice(leaders), repair=False)
        self.at(self.now + self._membership_rng.expovariate(1.0 / self.membership_interval),
                self._membership_tick)

    def _change_membership(self, leader: _Server, *, repair: bool) -> None:
        """Re-add (as voter, or non-voter then promote) or promote; else remove one server.

        With ``repair`` only servers are added or promoted (healing restores all voters).
        """
        rng, core = self._membership_rng, leader.core
        configuration = core.configuration
        missing = [s for s in self.servers.values() if configuration.get(s.name) is None]
        nonvoters = [n for n in self.names if n not in configuration.voters()
                     and configuration.get(n) is not None]
        try:
            if nonvoters:
                what = f"promote {nonvoters[0]}"
                core.promote(nonvoters[0], self.now)
            elif missing and (repair or rng.random() < 0.5):
                target = missing[0]
                if rng.random() < 0.5:
                    what = f"add voter {target.name}"
                    core.add_voter(target.name, target.address, self.now)
                else:
                    what = f"add non-voter {target.name}"
                    core.add_nonvoter(target.name, target.address, self.now)
            elif not repair and len(configuration.voters()) > 3:
                what = f"remove {(target_id := rng.choice(configuration.voters()))}"
                core.remove_server(target_id, self.now)
            else:
                return
        except RaftError as exc:
            self.trace.transition(self.now, leader.name, f"{what} refused: {type(exc).__name__}")
        else:
            self.counts["membership"] += 1
            self.trace.transition(self.now, leader.name, what)
        if leader.core is core:
            self._drain(leader)

    # --- healing and convergence ------------------------------------------------------
    def _heal(self) -> None:
        self.trace.transition(self.now, "net", "heal everything")
        self.network.heal()
        for clog in self.plan.clogs:
            self.network.unclog(clog.source, clog.dest)
        for srv in self.servers.values():
            if srv.core is None:
                self.restart(srv.name)
            elif srv.paused:
                self.resume(srv.name)

    def _wait_converged(self) -> tuple[float | None, str | None]:
        start = self.now
        reason = self._unconverged()
        while reason is not None and self.now < start + self.heal_bound:
            self.run_until(self.now + HEAL_POLL)
            leaders = [s for s in self._live() if s.core.role == Role.LEADER]
            if len(leaders) == 1:
                self._change_membership(leaders[0], repair=True)
            reason = self._unconverged()
        if reason is None:
            return self.now - start, None
        states = "; ".join(self._describe(s) for s in self.servers.values())
        return None, f"not converged {self.heal_bound:g}s after healing: {reason} [{states}]"

    def _describe(self, srv: _Server) -> str:
        core = srv.core
        if core is None:
            return f"{srv.name} down"
        return (f"{srv.name} {core.role} term={core.term} leader={core.leader_id} "
                f"last={core.last_index} commit={core.commit_index} applied={srv.machine.index}")

    def _unconverged(self) -> str | None:
        """Why the healed cluster has not converged yet, or None once it has."""
        cores = [s for s in self.servers.values() if s.core is not None]
        if len(cores) != len(self.servers) or any(s.paused for s in cores):
            return "a server is down or paused"
        leaders = [s for s in cores if s.core.role == Role.LEADER]
        if len(leaders) != 1:
            return f"{len(leaders)} leaders"
        lead = leaders[0].core
        if (list(lead.configuration.voters()) != sorted(self.names)
                or lead.configuration_index > lead.commit_index):
            return f"configuration {lead.configuration.describe()} at {lead.configuration_index}"
        for srv in cores:
            core = srv.core
            if core.term != lead.term or core.leader_id != leaders[0].name:
                return f"{srv.name} is in term {core.term} following {core.leader_id}"
            if core.commit_index != lead.last_index or srv.machine.index != lead.last_index:
                return f"{srv.name} commit={core.commit_index} applied={srv.machine.index} " \
                       f"leader last={lead.last_index}"
            if srv.machine.digest != leaders[0].machine.digest:
                return f"{srv.name} state differs from the leader's"
        return None

    def _report(self, violation: str | None, liveness: str | None,
                converged_after: float | None) -> SimReport:
        applied = self.checker.applied_entries
        committed = sum(1 for index, term, data in self.accepted
                        if applied.get(index) == (term, 0, data))
        digest = hashlib.blake2b(digest_size=8)
        for srv in self.servers.values():
            digest.update(f"{srv.name}:{srv.machine.index}:".encode() + srv.machine.digest)
        c = self.counts
        return SimReport(
            seed=self.seed, servers=len(self.servers), duration=self.duration,
            plan=self.plan.describe(), elections=c["elections"],
            leaders=tuple(sorted(self.leaders.items())), proposals=c["proposals"],
            accepted=len(self.accepted), committed=committed,
            commit_index=max(self.checker.committed, default=0),
            messages_sent=c["sent"], messages_delivered=c["delivered"],
            messages_dropped=c["dropped"], messages_duplicated=self.network.duplicated,
            crashes=c["crashes"], restarts=c["restarts"], compactions=c["compactions"],
            restores=c["restores"], transfers=c["transfers"], membership_changes=c["membership"],
            converged_after=converged_after,
            final_state=digest.hexdigest(), trace_digest=self.trace.digest(),
            violation=violation, liveness=liveness,
            trace_tail=tuple(self.trace.lines(40)))


def run(seed: int, servers: int = 5, duration: float = 60.0, **options: Any) -> SimReport:
    """One seeded run (see ``RaftSimulation``); the report says whether it held."""
    return RaftSimulation(seed, servers, duration, **options).run()


def main(argv: list[str] | None = None) -> int:
    """Run one seed and print seed, summary, OK/FAILED; or, with ``--count``, many seeds."""
    parser = argparse.ArgumentParser(prog="python -m agent.sim.raft",
                                     description="Run a seeded Raft simulation.")
    parser.add_argument("--seed", type=int, required=True, help="the (first) seed")
    parser.add_argument("--servers", type=int, default=5)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--trace", type=int, default=0, metavar="N",
                        help="print the last N trace lines (messages included)")
    parser.add_argument("--count", type=int, default=0, metavar="N",
                        help="run seeds seed .. seed+N-1, one JSON line each (the soak's mode)")
    parser.add_argument("--log-level", default="WARNING", help="log level of the cores")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    if args.count:
        return _run_many(args.seed, args.count, args.servers, args.duration)
    print(f"seed={args.seed}", flush=True)
    sim = RaftSimulation(args.seed, args.servers, args.duration,
                         trace_limit=max(400, args.trace), trace_messages=args.trace > 0)
    report = sim.run()
    if args.trace:
        print("\n".join(sim.trace.lines(args.trace)))
    print("\n".join(report.lines()))
    print("OK" if report.ok else "FAILED")
    return 0 if report.ok else 1


def _run_many(first: int, count: int, servers: int, duration: float) -> int:
    """One JSON object per seed (``real_seconds`` is the only field that varies by run)."""
    failed = 0
    for seed in range(first, first + count):
        began = time.monotonic()
        report = run(seed, servers, duration)
        failed += not report.ok
        print(json.dumps({"seed": seed, "ok": report.ok, "violation": report.violation,
                          "liveness": report.liveness, "elections": report.elections,
                          "commit_index": report.commit_index,
                          "real_seconds": round(time.monotonic() - began, 4)}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
