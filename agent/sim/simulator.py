"""A deterministic simulator: many production ``GossipCore``s on a virtual network.

Theory of operation (STYLE.md section 6). The simulator is a plain loop over a heap
of ``(time, seq, function, args)``; it pops the earliest entry, sets the virtual
clock ``now`` to its time and calls it. ``seq`` breaks ties in scheduling order, so
a run is a pure function of the seed, the ``FaultPlan`` and the calls the scenario
makes. It is not trio: trio shuffles task order on purpose.

Processes. Each simulated node is a ``Process`` holding one production
``GossipCore`` built with ``random.Random(f"{seed}/{name}/gossip")`` (and that
generator's ``randbytes`` as entropy; a restart's core uses
``.../gossip/restart<generation>``). A process is RUNNING, PAUSED (SIGSTOP: its
inputs queue up, its timers wait, both are replayed on resume), KILLED (kill -9: its
packets vanish, dials to it are refused, its streams reset), LEFT (graceful leave
finished) or STOPPED (the core asked to shut down). ``restart`` gives the same name
and address a fresh core; ``generation`` counts restarts, and anything addressed to
an older generation's stream or timer is ignored.

Driving a core. After every input the simulator drains ``take_outputs()`` in order
and performs each output as the trio driver would: ``SendPacket`` asks the
``Network`` when (and whether) each copy arrives and schedules the delivery;
streams are simulated TCP connections (see ``_Conn``); reported facts update the
process's event-built view of the members and are traced. It then asks
``next_deadline()`` and schedules one timer entry for that time.

Invariants checked after every event (``InvariantViolation`` names seed and time):
a node's own incarnation never falls within one generation; a node never reports
itself failed, nor left unless it is leaving; no member event names a node the
simulation never created; a core never asks for a timer in a busy loop.
``check_members`` adds the costlier ones (no duplicate names, the local member
alive unless leaving) and runs at phase ends.
"""

from __future__ import annotations

import heapq
import logging
import random
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterable, Sequence

from gossip import events as ev
from gossip.config import GossipConfig
from gossip.messages import MemberStatus

from .network import FaultPlan, Network
from .trace import LOST, PACKET, Trace

log = logging.getLogger(__name__)

GOSSIP_PORT = 7946
PAUSED_INBOX_LIMIT = 2048  # inputs a stopped process's kernel buffers would hold
BUSY_TICK_LIMIT = 10_000


class InvariantViolation(AssertionError):
    """A simulated core broke a property that must always hold."""


class ProcessState(Enum):
    RUNNING = "running"
    PAUSED = "paused"
    KILLED = "killed"
    LEFT = "left"
    STOPPED = "stopped"


@dataclass(eq=False)
class Process:
    """One simulated agent process: a name, an address and its current core."""

    name: str
    addr: str
    core: Any
    generation: int = 0
    state: ProcessState = ProcessState.RUNNING
    timer_at: float | None = None
    inbox: list[tuple[Callable[..., None], tuple[Any, ...]]] = field(default_factory=list)
    view: dict[str, MemberStatus] = field(default_factory=dict)
    """Member statuses as this process's events told them (Serf's event stream)."""
    changed_at: dict[str, float] = field(default_factory=dict)
    """Virtual time of the last member event about each name."""
    incarnation: int = 0
    busy_ticks: int = 0
    last_tick: float = -1.0
    retry_join: tuple[tuple[str, ...], float] | None = None
    joins: list[ev.JoinFinished] = field(default_factory=list)
    conns: dict[int, "_Conn"] = field(default_factory=dict)

    @property
    def address(self) -> tuple[str, int]:
        return (self.addr, GOSSIP_PORT)

    @property
    def is_running(self) -> bool:
        return self.state is ProcessState.RUNNING


class _Conn:
    """A simulated TCP connection; side 0 dialled, side 1 accepted.

    ``ends[i]`` is ``(process, generation, stream id)`` (side 1's id is known once
    accepted); ``open[i]`` says side i has not closed or lost it; ``last[i]`` is the
    arrival time of the latest bytes side i sent, so each direction stays in order.
    ``stalled`` is set when a partition swallowed bytes: TCP would retransmit them
    and deliver nothing after them until it could, so from then on nothing is
    delivered either way and the cores' stream timeouts decide, as over a dead link.
    """

    __slots__ = ("conn_id", "ends", "open", "last", "names", "stalled")

    def __init__(self, conn_id: int, opener: Process, stream_id: int, dest: Process) -> None:
        self.conn_id = conn_id
        self.ends: list[tuple[Process, int, int | None]] = [
            (opener, opener.generation, stream_id), (dest, dest.generation, None)]
        self.open = [True, True]
        self.last = [0.0, 0.0]
        self.names = (opener.name, dest.name)
        self.stalled = False


class _SimLogAdapter(logging.LoggerAdapter):
    """Stamps each core log line with the virtual time and the node name."""

    def __init__(self, logger: logging.Logger, sim: "Simulator", node: str) -> None:
        super().__init__(logger, {"node": node})
        self._sim = sim

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"{self._sim.now:.3f} {self.extra['node']} {msg}", kwargs


def _own_incarnation(core: Any) -> int:
    """The core's own incarnation; memberlist's attribute when exposed (cheap), else stats()."""
    memberlist = getattr(core, "memberlist", None)
    if memberlist is not None:
        return memberlist.incarnation
    return core.stats().incarnation


def default_core_factory(sim: "Simulator", name: str, addr: str, generation: int) -> Any:
    """Build the production ``GossipCore`` for one simulated process."""
    from gossip.core import GossipCore
    suffix = f"/restart{generation}" if generation else ""
    rng = random.Random(f"{sim.seed}/{name}/gossip{suffix}")
    adapter = _SimLogAdapter(logging.getLogger("agent.sim.node"), sim, name)
    return GossipCore(sim.config, name=name, addr=addr, port=GOSSIP_PORT, tags=dict(sim.tags),
                      keyring=None, rng=rng, entropy=rng.randbytes, log=adapter, now=sim.now)


class Simulator:
    """Runs ``GossipCore``s on a virtual network under a virtual clock.

    Args:
        seed: the root seed; every random choice in the run derives from it.
        plan: network and process faults; ``FaultPlan()`` (no faults) when None.
        config: the gossip configuration every node gets (``GossipConfig.lan()``).
        trace_limit: how many trace entries to keep (the digest covers all).
        trace_packets: record UDP deliveries in the trace (transitions always are).
        core_factory: builds a core; tests of the simulator itself may pass a fake.
    """

    def __init__(self, seed: int | str, *, plan: FaultPlan | None = None,
                 config: GossipConfig | None = None, tags: dict[str, str] | None = None,
                 trace_limit: int = 200_000, trace_packets: bool = True,
                 core_factory: Callable[["Simulator", str, str, int], Any] = default_core_factory,
                 ) -> None:
        self.seed = seed
        self.plan = plan if plan is not None else FaultPlan()
        self.config = config if config is not None else GossipConfig.lan()
        self.tags = tags if tags is not None else {"role": "sim"}
        self.network = Network(self.plan, random.Random(f"{seed}/network"))
        self.trace = Trace(trace_limit, packets=trace_packets)
        self.now = 0.0
        self.events = 0
        self.packets_sent = 0
        self.packets_delivered = 0
        self._core_factory = core_factory
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._procs: dict[str, Process] = {}
        self._by_addr: dict[str, str] = {}
        self._streams: dict[tuple[str, int, int], tuple[_Conn, int]] = {}
        self._next_conn = 0
        self._dispatch: dict[type, Callable[[Process, Any], None]] = {
            ev.SendPacket: self._on_send, ev.OpenStream: self._on_open,
            ev.WriteStream: self._on_write, ev.CloseStream: self._on_close,
            ev.MemberJoined: self._on_member, ev.MemberFailed: self._on_member,
            ev.MemberLeft: self._on_member, ev.MemberUpdated: self._on_member,
            ev.MemberReaped: self._on_member, ev.JoinFinished: self._on_join_finished,
            ev.LeaveFinished: self._on_leave_finished, ev.ShutdownRequested: self._on_shutdown,
        }
        self._schedule_plan()

    # --- scheduling ---------------------------------------------------------
    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        """Call ``fn(*args)`` at virtual time ``t`` (not before now)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(t, self.now), self._seq, fn, args))

    def _schedule_plan(self) -> None:
        for part in self.plan.partitions:
            handles: list[int] = []
            self.at(part.start, self._start_partition, part.groups, handles)
            self.at(part.end, self._end_partition, handles)
        for clog in self.plan.clogs:
            self.at(clog.start, self._start_clog, clog.source, clog.dest, clog.end)
        for fault in self.plan.processes:
            self.at(fault.at, self._process_fault, fault.action, fault.node)

    def _start_partition(self, groups: Sequence[Sequence[str]], handles: list[int]) -> None:
        handles.append(self.partition(groups))

    def _end_partition(self, handles: list[int]) -> None:
        for handle in handles:
            self.heal(handle)

    def _start_clog(self, source: str, dest: str, until: float) -> None:
        self.trace.transition(self.now, source, f"link to {dest} clogged until {until:.3f}")
        self.network.clog(source, dest, until)

    def _process_fault(self, action: str, node: str) -> None:
        if node not in self._procs:
            return
        if action == "restart":  # rejoin through the first other running node
            seeds = [n for n in self.running() if n != node][:1]
            self.restart(node, seeds, retry_interval=1.0)
        else:
            getattr(self, action)(node)

    def run_until(self, t: float) -> None:
        """Process every event up to and including virtual time ``t``."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= t:
            when, _, fn, args = pop(heap)
            self.now = when
            self.events += 1
            fn(*args)
        if t > self.now:
            self.now = t

    def run_for(self, duration: float) -> None:
        self.run_until(self.now + duration)

    def run_until_true(self, predicate: Callable[[], bool], deadline: float,
                       poll: float = 0.25) -> float | None:
        """Run until ``predicate()`` holds (checked every ``poll`` s); its time, or None."""
        while True:
            if predicate():
                return self.now
            if self.now >= deadline:
                return None
            self.run_until(min(deadline, self.now + poll))

    # --- processes ----------------------------------------------------------
    def add_node(self, name: str | None = None) -> str:
        """Start a new process now; its name defaults to ``n<k>`` (k counts from 1)."""
        index = len(self._procs) + 1
        name = name or f"n{index}"
        if name in self._procs:
            raise ValueError(f"node {name} exists")
        addr = f"10.0.{index // 250}.{index % 250 + 1}"
        proc = Process(name=name, addr=addr, core=None)
        self._procs[name] = proc
        self._by_addr[addr] = name
        self._start(proc)
        return name

    def _start(self, proc: Process) -> None:
        proc.core = self._core_factory(self, proc.name, proc.addr, proc.generation)
        proc.state = ProcessState.RUNNING
        proc.view = {proc.name: MemberStatus.ALIVE}
        proc.changed_at = {proc.name: self.now}
        proc.incarnation = 0
        proc.timer_at = None
        proc.inbox = []
        self.trace.transition(self.now, proc.name, f"started generation={proc.generation}")
        self._after_input(proc)

    def process(self, name: str) -> Process:
        return self._procs[name]

    def names(self) -> list[str]:
        return list(self._procs)

    def running(self) -> list[str]:
        return [p.name for p in self._procs.values() if p.state is ProcessState.RUNNING]

    def address_of(self, name: str) -> tuple[str, int]:
        return self._procs[name].address

    def join(self, name: str, seeds: Sequence[str], *, retry_interval: float | None = None) -> None:
        """Have ``name`` join through the named ``seeds`` (retrying while none answers)."""
        proc = self._procs[name]
        proc.retry_join = (tuple(seeds), retry_interval) if retry_interval else None
        self.trace.transition(self.now, name, f"join {','.join(seeds)}")
        proc.core.join([self._procs[s].address for s in seeds], self.now)
        self._after_input(proc)

    def leave(self, name: str) -> None:
        """Start a graceful leave; the process stops when its core says LeaveFinished."""
        proc = self._procs[name]
        if not proc.is_running:
            return
        self.trace.transition(self.now, name, "leave requested")
        proc.core.leave(self.now)
        self._after_input(proc)

    def force_leave(self, name: str, target: str, *, prune: bool = False) -> None:
        """Have ``name`` force ``target`` out (a leave intent about it, as ``force-leave``)."""
        proc = self._procs[name]
        if not proc.is_running:
            return
        self.trace.transition(self.now, name, f"force-leave {target}")
        proc.core.force_leave(target, prune, self.now)
        self._after_input(proc)

    def kill(self, name: str) -> None:
        """kill -9: the process vanishes; its peers' streams to it are reset."""
        proc = self._procs[name]
        if proc.state in (ProcessState.KILLED, ProcessState.LEFT, ProcessState.STOPPED):
            return
        self._stop(proc, ProcessState.KILLED, "connection reset by peer")

    def pause(self, name: str) -> None:
        """SIGSTOP: inputs queue up and timers wait until ``resume``."""
        proc = self._procs[name]
        if proc.is_running:
            proc.state = ProcessState.PAUSED
            self.trace.transition(self.now, name, "paused")

    def resume(self, name: str) -> None:
        """SIGCONT: replay the queued inputs, then run the late timers."""
        proc = self._procs[name]
        if proc.state is not ProcessState.PAUSED:
            return
        proc.state = ProcessState.RUNNING
        self.trace.transition(self.now, name, f"resumed queued={len(proc.inbox)}")
        inbox, proc.inbox = proc.inbox, []
        for fn, args in inbox:
            fn(*args)
        if proc.is_running:
            proc.core.handle_timers(self.now)
            self._after_input(proc)

    def restart(self, name: str, seeds: Sequence[str] = (), *,
                retry_interval: float | None = None) -> None:
        """Kill ``name`` if needed and start a fresh core under the same name and address."""
        proc = self._procs[name]
        if proc.state in (ProcessState.RUNNING, ProcessState.PAUSED):
            self._stop(proc, ProcessState.KILLED, "connection reset by peer")
        proc.generation += 1
        self._start(proc)
        if seeds:
            self.join(name, seeds, retry_interval=retry_interval)

    def _stop(self, proc: Process, state: ProcessState, reason: str) -> None:
        proc.state = state
        proc.timer_at = None
        proc.inbox = []
        self.trace.transition(self.now, proc.name, state.value)
        graceful = state is not ProcessState.KILLED
        for conn in list(proc.conns.values()):
            side = 0 if conn.ends[0][0] is proc else 1
            self._drop_end(conn, side)
            other = 1 - side
            if conn.open[other]:
                if graceful:
                    self._send_on_conn(conn, side, self._deliver_stream_closed, ())
                else:
                    self._send_on_conn(conn, side, self._deliver_stream_failed,
                                       (f"read tcp: {reason}",))
        proc.conns.clear()

    # --- network controls ---------------------------------------------------
    def partition(self, groups: Iterable[Iterable[str]]) -> int:
        groups = [sorted(g) for g in groups]
        self.trace.transition(self.now, "net", f"partition {[len(g) for g in groups]}")
        return self.network.partition(groups)

    def heal(self, handle: int | None = None) -> None:
        self.trace.transition(self.now, "net", "heal")
        self.network.heal(handle)

    # --- the core boundary --------------------------------------------------
    def _after_input(self, proc: Process) -> None:
        """Perform the core's outputs, check invariants, reschedule its timer."""
        core = proc.core
        generation = proc.generation
        dispatch = self._dispatch
        for output in core.take_outputs():
            if proc.generation != generation or proc.state is not ProcessState.RUNNING:
                break  # the process stopped part-way through (leave finished)
            handler = dispatch.get(type(output))
            if handler is not None:
                handler(proc, output)
            else:
                self.trace.transition(self.now, proc.name, type(output).__name__)
        if proc.generation != generation or proc.state is not ProcessState.RUNNING:
            return
        incarnation = _own_incarnation(core)
        if incarnation < proc.incarnation:
            self._violation(f"{proc.name} own incarnation fell {proc.incarnation} -> {incarnation}")
        proc.incarnation = incarnation
        deadline = core.next_deadline()
        if deadline is None:
            proc.timer_at = None
        elif deadline != proc.timer_at:
            if deadline < self.now:
                deadline = self.now
            proc.timer_at = deadline
            self.at(deadline, self._tick, proc, generation, deadline)

    def _tick(self, proc: Process, generation: int, at: float) -> None:
        if proc.generation != generation or proc.timer_at != at or not proc.is_running:
            return
        if at == proc.last_tick:
            proc.busy_ticks += 1
            if proc.busy_ticks > BUSY_TICK_LIMIT:
                self._violation(f"{proc.name} asks for a timer at {at} again and again")
        else:
            proc.busy_ticks = 0
            proc.last_tick = at
        proc.timer_at = None
        proc.core.handle_timers(self.now)
        self._after_input(proc)

    def _violation(self, text: str) -> None:
        raise InvariantViolation(f"seed={self.seed} t={self.now:.3f}: {text}")

    # --- outputs: datagrams ---------------------------------------------------
    def _on_send(self, proc: Process, out: ev.SendPacket) -> None:
        self.packets_sent += 1
        dest = self._by_addr.get(out.dest[0])
        if dest is None or out.dest[1] != GOSSIP_PORT:
            self.trace.transition(self.now, proc.name, f"send to unknown {out.dest}")
            return
        times = self.network.datagram_times(proc.name, dest, self.now)
        if not times:
            self.trace.packet(LOST, self.now, dest, proc.name, out.data)
            return
        for t in times:
            self.at(t, self._deliver_packet, dest, proc.address, proc.name, out.data)

    def _deliver_packet(self, dest: str, source: tuple[str, int], source_name: str,
                        data: bytes) -> None:
        proc = self._procs[dest]
        if proc.state is not ProcessState.RUNNING:
            if proc.state is ProcessState.PAUSED and len(proc.inbox) < PAUSED_INBOX_LIMIT:
                proc.inbox.append((self._deliver_packet, (dest, source, source_name, data)))
            return
        self.packets_delivered += 1
        self.trace.packet(PACKET, self.now, dest, source_name, data)
        proc.core.receive_packet(data, source, self.now)
        self._after_input(proc)

    # --- outputs: streams -----------------------------------------------------
    def _on_open(self, proc: Process, out: ev.OpenStream) -> None:
        dest_name = self._by_addr.get(out.dest[0])
        ip, port = out.dest
        if dest_name is None or port != GOSSIP_PORT:
            self.at(self.now + 0.001, self._fail_opener, proc, proc.generation, out.stream_id,
                    f"dial tcp {ip}:{port}: connect: connection refused")
            return
        dest = self._procs[dest_name]
        self._next_conn += 1
        conn = _Conn(self._next_conn, proc, out.stream_id, dest)
        proc.conns[conn.conn_id] = conn
        self._streams[(proc.name, proc.generation, out.stream_id)] = (conn, 0)
        arrival = self.network.stream_time(proc.name, dest_name, self.now)
        if arrival is None:  # SYNs vanish: the dial times out
            conn.open[1] = False
            self.at(self.now + self.config.tcp_timeout, self._deliver_stream_failed, conn, 0,
                    f"dial tcp {ip}:{port}: i/o timeout")
            return
        conn.last[0] = arrival
        self.trace.stream(self.now, dest_name, proc.name, f"dial #{conn.conn_id}")
        self.at(arrival, self._deliver_open, conn, out.data)

    def _fail_opener(self, proc: Process, generation: int, stream_id: int, reason: str) -> None:
        if proc.generation == generation and proc.is_running:
            proc.core.stream_failed(stream_id, reason, self.now)
            self._after_input(proc)

    def _deliver_open(self, conn: _Conn, data: bytes) -> None:
        opener = conn.ends[0][0]
        dest, generation, _ = conn.ends[1]
        if dest.state is ProcessState.PAUSED:  # the kernel accepts; the process is asleep
            dest.inbox.append((self._deliver_open, (conn, data)))
            return
        if dest.state is not ProcessState.RUNNING or dest.generation != generation:
            conn.open[1] = False
            ip = dest.addr
            back = self.network.stream_time(dest.name, opener.name, self.now)
            self.at(self.now if back is None else back, self._deliver_stream_failed, conn, 0,
                    f"dial tcp {ip}:{GOSSIP_PORT}: connect: connection refused")
            return
        if not conn.open[0] and not data:
            conn.open[1] = False
            return
        stream_id = dest.core.accept_stream((opener.addr, 40000 + conn.conn_id % 20000), self.now)
        conn.ends[1] = (dest, generation, stream_id)
        dest.conns[conn.conn_id] = conn
        self._streams[(dest.name, generation, stream_id)] = (conn, 1)
        self.trace.stream(self.now, dest.name, opener.name, f"accept #{conn.conn_id}", data)
        if data:
            dest.core.stream_data(stream_id, data, self.now)
        self._after_input(dest)

    def _send_on_conn(self, conn: _Conn, side: int, fn: Callable[..., None],
                      args: tuple[Any, ...]) -> None:
        """Schedule ``fn(conn, other side, *args)`` in order after side's earlier bytes."""
        other = 1 - side
        if conn.stalled:
            return
        arrival = self.network.stream_time(conn.names[side], conn.names[other], self.now)
        if arrival is None:  # partitioned (see _Conn.stalled)
            conn.stalled = True
            self.trace.stream(self.now, conn.names[other], conn.names[side],
                              f"stalled #{conn.conn_id}")
            return
        arrival = max(arrival, conn.last[side])
        conn.last[side] = arrival
        self.at(arrival, fn, conn, other, *args)

    def _on_write(self, proc: Process, out: ev.WriteStream) -> None:
        entry = self._streams.get((proc.name, proc.generation, out.stream_id))
        if entry is None:
            return  # already failed or closed under the core: the write goes nowhere
        conn, side = entry
        if conn.open[1 - side]:
            self._send_on_conn(conn, side, self._deliver_stream_data, (out.data,))

    def _on_close(self, proc: Process, out: ev.CloseStream) -> None:
        entry = self._streams.get((proc.name, proc.generation, out.stream_id))
        if entry is None:
            return
        conn, side = entry
        self._drop_end(conn, side)
        proc.conns.pop(conn.conn_id, None)
        if conn.open[1 - side]:
            self._send_on_conn(conn, side, self._deliver_stream_closed, ())

    def _drop_end(self, conn: _Conn, side: int) -> None:
        conn.open[side] = False
        proc, generation, stream_id = conn.ends[side]
        if stream_id is not None:
            self._streams.pop((proc.name, generation, stream_id), None)

    def _live_end(self, conn: _Conn, side: int) -> Process | None:
        """The process at ``side`` if it can take input now; queues nothing."""
        proc, generation, stream_id = conn.ends[side]
        if not conn.open[side] or stream_id is None or proc.generation != generation:
            return None
        return proc

    def _deliver_stream_data(self, conn: _Conn, side: int, data: bytes) -> None:
        proc = self._live_end(conn, side)
        if proc is None:
            return
        if proc.state is ProcessState.PAUSED:
            proc.inbox.append((self._deliver_stream_data, (conn, side, data)))
            return
        if proc.is_running:
            self.trace.stream(self.now, proc.name, conn.names[1 - side], f"data #{conn.conn_id}", data)
            proc.core.stream_data(conn.ends[side][2], data, self.now)
            self._after_input(proc)

    def _deliver_stream_closed(self, conn: _Conn, side: int) -> None:
        proc = self._live_end(conn, side)
        if proc is None:
            return
        if proc.state is ProcessState.PAUSED:
            proc.inbox.append((self._deliver_stream_closed, (conn, side)))
            return
        if proc.is_running:
            self.trace.stream(self.now, proc.name, conn.names[1 - side], f"eof #{conn.conn_id}")
            proc.core.stream_closed(conn.ends[side][2], self.now)
            self._after_input(proc)

    def _deliver_stream_failed(self, conn: _Conn, side: int, reason: str) -> None:
        proc = self._live_end(conn, side)
        if proc is None:
            return
        if proc.state is ProcessState.PAUSED:
            proc.inbox.append((self._deliver_stream_failed, (conn, side, reason)))
            return
        self._drop_end(conn, side)
        proc.conns.pop(conn.conn_id, None)
        if proc.is_running:
            self.trace.stream(self.now, proc.name, conn.names[1 - side],
                              f"failed #{conn.conn_id} {reason}")
            proc.core.stream_failed(conn.ends[side][2], reason, self.now)
            self._after_input(proc)

    # --- outputs: facts -------------------------------------------------------
    _STATUS = {ev.MemberJoined: MemberStatus.ALIVE, ev.MemberUpdated: MemberStatus.ALIVE,
               ev.MemberFailed: MemberStatus.FAILED, ev.MemberLeft: MemberStatus.LEFT}

    def _on_member(self, proc: Process, out: Any) -> None:
        name = out.member.name
        kind = type(out)
        if name not in self._procs:
            self._violation(f"{proc.name} reports {kind.__name__} about unknown node {name}")
        if name == proc.name and kind is ev.MemberFailed:
            self._violation(f"{proc.name} reports itself failed")
        if (name == proc.name and kind is ev.MemberLeft
                and not (proc.core.is_leaving or proc.core.has_left)):
            self._violation(f"{proc.name} reports itself left without leaving")
        if kind is ev.MemberReaped:
            proc.view.pop(name, None)
        else:
            proc.view[name] = self._STATUS[kind]
        proc.changed_at[name] = self.now
        self.trace.transition(self.now, proc.name, f"member {name} {kind.__name__[6:].lower()}")

    def _on_join_finished(self, proc: Process, out: ev.JoinFinished) -> None:
        proc.joins.append(out)
        self.trace.transition(self.now, proc.name,
                              f"join finished joined={out.num_joined} errors={len(out.errors)}")
        if out.num_joined == 0 and proc.retry_join is not None:
            seeds, interval = proc.retry_join
            self.at(self.now + interval, self._retry_join, proc, proc.generation, seeds)

    def _retry_join(self, proc: Process, generation: int, seeds: tuple[str, ...]) -> None:
        if proc.generation == generation and proc.is_running and proc.retry_join:
            self.join(proc.name, seeds, retry_interval=proc.retry_join[1])

    def _on_leave_finished(self, proc: Process, out: ev.LeaveFinished) -> None:
        self._stop(proc, ProcessState.LEFT, "")

    def _on_shutdown(self, proc: Process, out: ev.ShutdownRequested) -> None:
        self.trace.transition(self.now, proc.name, f"shutdown requested: {out.reason}")
        self._stop(proc, ProcessState.STOPPED, "")

    # --- views and checks -----------------------------------------------------
    def status_seen(self, observer: str, subject: str) -> MemberStatus | None:
        """``subject``'s status as ``observer``'s member events last reported it."""
        return self._procs[observer].view.get(subject)

    def members(self, observer: str) -> dict[str, MemberStatus]:
        """``observer``'s member list straight from its core."""
        return {m.name: m.status for m in self._procs[observer].core.members()}

    def check_members(self) -> None:
        """The costlier invariants, over every running core's member list."""
        for proc in self._procs.values():
            if not proc.is_running:
                continue
            members = proc.core.members()
            names = [m.name for m in members]
            if len(names) != len(set(names)):
                self._violation(f"{proc.name} lists a member twice: {sorted(names)}")
            unknown = set(names) - set(self._procs)
            if unknown:
                self._violation(f"{proc.name} lists unknown members {sorted(unknown)}")
            local = proc.core.local_member()
            if local.status is not MemberStatus.ALIVE and not proc.core.is_leaving:
                self._violation(f"{proc.name} sees itself {local.status} without leaving")

    def summary(self) -> dict[str, Any]:
        """Counters of the run so far (for reports and the CLI)."""
        return {"now": round(self.now, 3), "events": self.events, "nodes": len(self._procs),
                "running": len(self.running()), "packets_sent": self.packets_sent,
                "packets_delivered": self.packets_delivered, "lost": self.network.lost,
                "duplicated": self.network.duplicated, "cut": self.network.cut,
                "streams": self._next_conn, "trace_digest": self.trace.digest()}
