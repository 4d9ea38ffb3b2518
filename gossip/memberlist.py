"""The memberlist core: SWIM membership with Lifeguard, sans-IO (spec gossip-wire.md 2, 4, 7).

Theory of operation. ``Memberlist`` is HashiCorp memberlist 0.2.2 as a pure state
machine. It owns the node records (``members.Members``), the broadcast queue, the
suspicion timers, the local health score, the probe in flight, relays it runs for
others, and the TCP streams it has open (their bookkeeping, push/pull serving and
joins are the ``streams.StreamsMixin`` half of the class). Inputs are calls carrying ``now``
(``receive_packet``, ``accept_stream``/``stream_data``/``stream_closed``/
``stream_failed``, ``join``, ``leave``, ``update_node``, ``handle_timers``); outputs
queue up for ``take_outputs`` (``SendPacket``, ``OpenStream``, ``WriteStream``,
``CloseStream``, ``JoinFinished``). The layer above (Serf) is reached through
``MemberlistDelegate`` calls, synchronously.

Timers (all absolute monotonic seconds, the earliest is ``next_deadline``):

* probe tick every ``probe_interval`` (7.3): ping the next node of the shuffled list;
  after ``probe_timeout`` without an ack, ``indirectPing`` up to ``indirect_checks``
  alive relays and, for targets with PMax >= 3, a TCP stream ping; at
  ``start + probe_interval * (health + 1)`` the probe ends: no ack -> suspect (a late
  ``handle_timers`` never ends the probe in the call that starts the indirect phase:
  that phase always gets ``interval - probe_timeout``). A tick
  that comes while a probe runs waits for it to end (as Go's blocked ticker does);
* gossip tick every ``gossip_interval`` (2.7): queued broadcasts to a few nodes;
* push/pull every ``push_pull_scale(n)`` with one random alive node (7.8);
* one Lifeguard ``Suspicion`` deadline per suspect node (7.5);
* relay duties: forward the ack or send a nack after ``probe_timeout`` (7.4);
* every stream closes ``tcp_timeout`` after it opened (a fallback ping at the
  probe's end if that comes first), counted as ``dropped.stream_timeout``.

Invariants: our own record is always present and alive unless we are leaving;
incarnations of a record never fall; only we raise our own incarnation (refute,
7.6); a peer's bad bytes raise ``RemoteProtocolError`` inside, which is counted
(``dropped.<reason>``), logged as a WARNING naming the peer, and never escapes.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Sequence

from .broadcasts import TransmitLimitedQueue
from .awareness import Awareness
from .config import GossipConfig
from .delegate import MemberlistDelegate
from .errors import RemoteProtocolError
from .events import Output, SendPacket
from .members import Members, NodeRecord
from .messages import (Ack, Alive, Dead, IndirectPing, MessageType, Nack, NodeState, Ping,
                       Suspect, UserMsg)
from .stats import Counters
from .streams import StreamsMixin, format_address
from .suspicion import Suspicion, confirmations_wanted
from .types import Address, NodeView, ip_from_bytes, ip_to_bytes
from . import wire
from .keyring import ENCRYPT_OVERHEAD_V1, Keyring

COMPOUND_HEADER_OVERHEAD = 2  # type byte + count byte of a compound
COMPOUND_ITEM_OVERHEAD = 2  # the u16 length slot per part
USER_MSG_OVERHEAD = 1  # the type-8 byte put in front of each Serf message
MAX_COMPOUND_PARTS = 255  # the count is one byte
MAX_INCARNATION = 0xFFFFFFFF  # incarnations are uint32 on the wire
MAX_RELAYS = 1024  # indirect pings run for others at once; a flood past it is dropped
MIN_COMPRESS_BYTES = 256  # smaller UDP packets are sent uncompressed (see _raw_send)


@dataclass(slots=True)
class _Probe:
    """The probe in flight (at most one)."""

    target: str
    address: Address
    pmax: int
    incarnation: int  # the target's incarnation when the probe started
    seq: int
    timeout_at: float  # no ack by then: indirect pings and TCP fallback
    deadline: float  # the probe ends here (pushed back if the indirect phase starts late)
    interval: float  # the probe interval scaled by our health when the probe started
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0
    fallback_stream: int | None = None
    fallback_ok: bool = False


@dataclass(slots=True)
class _Relay:
    """An indirect ping we run for a requester (7.4), keyed by our own seq."""

    requester: Address
    requester_seq: int
    nack: bool
    expires: float


class Memberlist(StreamsMixin):
    """memberlist 0.2.2 as a sans-IO core; see the module docstring.

    The TCP stream half (push/pull, stream pings, user-message streams, joins) is
    ``streams.StreamsMixin``.
    """

    def __init__(self, config: GossipConfig, *, name: str, addr: str, port: int,
                 delegate: MemberlistDelegate, keyring: Keyring | None,
                 rng: random.Random, log: logging.LoggerAdapter, counters: Counters,
                 now: float) -> None:
        """Create the core and announce ourselves (our alive is queued, Serf is told).

        The delegate's ``node_meta`` and ``notify_join`` (for our own node, as
        memberlist's ``setAlive`` does) are called from here, so the delegate must be
        ready to answer when it constructs us.
        """
        self.config = config
        self.name = name
        self._addr = addr
        self._addr_bytes = ip_to_bytes(addr)
        self._port = port
        self._delegate = delegate
        self._keyring = keyring
        self._rng = rng
        self._log = log
        self._counters = counters
        self._members = Members(name, rng)
        self._awareness = Awareness(config.awareness_max_multiplier)
        self._broadcasts = TransmitLimitedQueue(config.retransmit_mult, lambda: len(self._members))
        self._suspicions: dict[str, Suspicion] = {}
        self._outputs: list[Output] = []
        self._seq = 0
        self._incarnation = 0
        self._leaving = False
        self._leave_message: bytes | None = None
        self._leave_sent = False
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._init_streams()
        # First ticks at random offsets so that nodes started together spread out.
        self._next_probe = now + rng.random() * config.probe_interval
        self._next_gossip = now + rng.random() * config.gossip_interval
        self._next_push_pull = now + rng.random() * config.push_pull_interval
        self._incarnation = 1
        meta = delegate.node_meta(config.meta_max_bytes)
        self._handle_alive(Alive(1, name, self._addr_bytes, port, meta, config.vsn),
                           (addr, port), now, bootstrap=True)

    # ------------------------------------------------------------------ views

    @property
    def incarnation(self) -> int:
        """Our own incarnation number."""
        return self._incarnation

    @property
    def health_score(self) -> int:
        """Lifeguard health score, 0 (healthy) .. awareness_max_multiplier - 1."""
        return self._awareness.score

    @property
    def is_leaving(self) -> bool:
        return self._leaving

    def nodes(self) -> list[NodeView]:
        """Every node record, ourselves and dead/left ones included, in name order."""
        return sorted((record.view() for record in self._members), key=lambda v: v.name)

    def node(self, name: str) -> NodeView | None:
        record = self._members.get(name)
        return None if record is None else record.view()

    def local(self) -> NodeView:
        record = self._members.get(self.name)
        assert record is not None
        return record.view()

    def num_nodes(self) -> int:
        """Every node in the list, self included (memberlist's estNumNodes)."""
        return len(self._members)

    def queued_broadcasts(self) -> int:
        """Messages waiting in memberlist's own broadcast queue."""
        return len(self._broadcasts)

    def take_outputs(self) -> list[Output]:
        """Drain the queued outputs, in the order they must be performed."""
        outputs, self._outputs = self._outputs, []
        return outputs

    def next_deadline(self) -> float | None:
        """The earliest timer: ticks, probe phases, suspicions, relays, streams."""
        times = [self._next_push_pull]
        if self._has_broadcasts():
            # An idle node sleeps through gossip ticks; the tick grid is kept, so a
            # broadcast queued later goes out at the next grid point, as with Go's ticker.
            times.append(self._next_gossip)
        probe = self._probe
        if probe is None:
            times.append(self._next_probe)
        else:
            times.append(probe.deadline if probe.indirect_sent else probe.timeout_at)
        times += [s.deadline for s in self._suspicions.values()]
        times += [r.expires for r in self._relays.values()]
        times += [s.deadline for s in self._streams.values()]
        return min(times)

    # ------------------------------------------------------------------ commands

    def join(self, seeds: Sequence[Address], now: float) -> int:
        """Push/pull with ``Join=true`` to every seed; ``JoinFinished`` reports later.

        Returns:
            the join id that the ``JoinFinished`` output carries.
        """
        join_id = self._new_join(len(seeds))
        for seed in seeds:
            self._open_push_pull(seed, join=True, join_id=join_id, now=now)
        if not seeds:
            self._finish_join(join_id)
        return join_id

    def leave(self, now: float) -> None:
        """Start a graceful leave: broadcast ``dead`` about ourselves from ourselves."""
        if self._leaving:
            return
        self._leaving = True
        me = self._members.get(self.name)
        assert me is not None
        others_alive = any(r.name != self.name and not r.is_dead_or_left() for r in self._members)
        dead = Dead(me.incarnation, self.name, self.name)
        self._leave_message = wire.encode(dead)
        self._log.info("leaving incarnation=%d", me.incarnation)
        self._handle_dead(dead, (self._addr, self._port), now)
        if not others_alive:
            self._leave_sent = True
        else:
            # Serf calls leave the moment its leave intent has been sent its last time,
            # which in Go happens inside a gossip round whose remaining targets then
            # already carry this dead message. Gossiping now gives the same timing
            # instead of waiting for the next tick.
            self._gossip(now)

    def leave_broadcast_sent(self) -> bool:
        """True once our leave has gone out at least once (or nobody was left to tell)."""
        return self._leave_sent

    def update_node(self, now: float) -> None:
        """Our meta changed: raise the incarnation and broadcast a fresh alive."""
        if self._incarnation >= MAX_INCARNATION:
            self._log.warning("incarnation saturated at %d; meta update may not win",
                              MAX_INCARNATION)
        self._incarnation = min(self._incarnation + 1, MAX_INCARNATION)
        meta = self._delegate.node_meta(self.config.meta_max_bytes)
        alive = Alive(self._incarnation, self.name, self._addr_bytes, self._port, meta,
                      self.config.vsn)
        self._handle_alive(alive, (self._addr, self._port), now, bootstrap=True)

    def send_user(self, dest: Address, payload: bytes) -> None:
        """Send a user message (``[8] + payload``) in its own datagram, no CRC."""
        self._raw_send(dest, bytes([MessageType.USER]) + payload, None)

    # ------------------------------------------------------------------ UDP input

    def receive_packet(self, data: bytes, source: Address, now: float) -> None:
        """Handle one datagram from ``source``; bad bytes are counted and dropped."""
        if len(data) > self.config.max_packet_bytes:
            self._drop("oversized", source, f"datagram of {len(data)} bytes")
            return
        try:
            if self._keyring is not None:
                data = self._keyring.decrypt(data, b"")
            contents = wire.decode_packet(data)
        except RemoteProtocolError as exc:
            self._drop(exc.reason, source, str(exc))
            return
        if contents.truncated:
            self._drop("truncated", source, f"{contents.truncated} compound parts cut off",
                       amount=contents.truncated)
        for message in contents.messages:
            self._counters.inc(f"received.{message.TYPE.name.lower()}")
            try:
                self._dispatch(message, source, now)
            except RemoteProtocolError as exc:
                self._drop(exc.reason, source, str(exc))

    def _dispatch(self, message: object, source: Address, now: float) -> None:
        if isinstance(message, Ping):
            self._handle_ping(message, source)
        elif isinstance(message, IndirectPing):
            self._handle_indirect_ping(message, source, now)
        elif isinstance(message, Ack):
            self._handle_ack(message, now)
        elif isinstance(message, Nack):
            if self._probe is not None and self._probe.seq == message.seq_no:
                self._probe.nacks += 1
        elif isinstance(message, Alive):
            self._handle_alive(message, source, now)
        elif isinstance(message, Suspect):
            self._handle_suspect(message, now)
        elif isinstance(message, Dead):
            self._handle_dead(message, source, now)
        elif isinstance(message, UserMsg):
            self._delegate.notify_user_msg(message.payload, source, now)
        else:
            raise RemoteProtocolError(f"{type(message).__name__} is stream-only", "unexpected_type")

    def _reply_address(self, source_addr: bytes, source_port: int, source: Address) -> Address:
        """Where to answer: the message's Source* when set, else the packet source."""
        if source_addr and source_port > 0:
            try:
                return (ip_from_bytes(source_addr), source_port)
            except ValueError:
                raise RemoteProtocolError("bad SourceAddr", "bad_addr") from None
        return source

    def _handle_ping(self, ping: Ping, source: Address) -> None:
        if ping.node and ping.node != self.name:
            self._drop("wrong_node", source, f"ping for {ping.node!r}")
            return
        dest = self._reply_address(ping.source_addr, ping.source_port, source)
        ack = Ack(ping.seq_no, self._delegate.ack_payload())
        self._send_msg(dest, wire.encode(ack))

    def _handle_indirect_ping(self, request: IndirectPing, source: Address, now: float) -> None:
        """Relay duty (7.4): ping the target with our own seq, answer the requester."""
        try:
            target = (ip_from_bytes(request.target), request.port or self._port)
        except ValueError:
            raise RemoteProtocolError("bad indirect ping target", "bad_addr") from None
        requester = self._reply_address(request.source_addr, request.source_port, source)
        if len(self._relays) >= MAX_RELAYS:
            self._drop("too_many_relays", source, f"{len(self._relays)} relays running")
            return
        seq = self._next_seq()
        self._relays[seq] = _Relay(requester, request.seq_no, request.nack,
                                   now + self.config.probe_timeout)
        self._counters.inc("indirect_relays")
        ping = Ping(seq, request.node, self._addr_bytes, self._port, self.name)
        self._send_msg(target, wire.encode(ping))

    def _handle_ack(self, ack: Ack, now: float) -> None:
        relay = self._relays.pop(ack.seq_no, None)
        if relay is not None:
            # Relayed acks carry the requester's seq and no payload (3.2).
            self._send_msg(relay.requester, wire.encode(Ack(relay.requester_seq, None)))
            return
        probe = self._probe
        if probe is not None and probe.seq == ack.seq_no:
            self._finish_probe(now, success=True)

    # ------------------------------------------------------------------ state changes

    def _handle_alive(self, alive: Alive, source: Address, now: float, *,
                      bootstrap: bool = False) -> None:
        """memberlist ``aliveNode`` (7.2)."""
        if self._leaving and alive.node == self.name:
            return
        vsn = alive.vsn
        if len(vsn) >= 3 and (vsn[0] == 0 or vsn[1] == 0 or vsn[0] > vsn[1]):
            self._drop("bad_vsn", source, f"alive for {alive.node!r} with versions {list(vsn)}")
            return
        try:
            addr = ip_from_bytes(alive.addr)
        except ValueError:
            self._drop("bad_addr", source, f"alive for {alive.node!r} with a {len(alive.addr)}-byte IP")
            return
        record = self._members.get(alive.node)
        reclaim = False
        if record is None:
            # Provisionally dead so that the transition below reads as a join.
            record = NodeRecord(alive.node, addr, alive.port, alive.meta,
                                vsn if len(vsn) >= 6 else b"", 0, NodeState.DEAD, now)
            self._members.add(record)
        elif record.address != (addr, alive.port):
            if not self._may_reclaim(record, now):
                self._conflict(record, alive, addr, source, now)
                return
            self._log.info("member address updated name=%s from=%s to=%s", alive.node,
                           format_address(record.address), format_address((addr, alive.port)))
            reclaim = True
        is_local = alive.node == self.name
        if alive.incarnation <= record.incarnation and not is_local and not reclaim:
            return
        if alive.incarnation < record.incarnation and is_local:
            return
        self._suspicions.pop(alive.node, None)
        old_state, old_meta = record.state, record.meta
        if is_local and not bootstrap:
            if (alive.incarnation == record.incarnation and alive.meta == record.meta
                    and alive.vsn == record.vsn):
                return
            self._log.warning("refuting alive about us from=%s incarnation=%d",
                              format_address(source), alive.incarnation)
            self._refute(record, alive.incarnation)
        else:
            self._broadcast(alive.node, wire.encode(alive))
            if len(vsn) >= 6:
                record.vsn = vsn
            record.incarnation = alive.incarnation
            record.meta, record.addr, record.port = alive.meta, addr, alive.port
            if record.state != NodeState.ALIVE:
                record.state, record.state_change = NodeState.ALIVE, now
        if old_state in (NodeState.DEAD, NodeState.LEFT):
            self._counters.inc("joins")
            self._log.info("member alive name=%s addr=%s incarnation=%d", record.name,
                           format_address(record.address), record.incarnation)
            self._delegate.notify_join(record.view(), now)
        elif old_meta != record.meta:
            self._delegate.notify_update(record.view(), now)

    def _may_reclaim(self, record: NodeRecord, now: float) -> bool:
        """A new address may take a name only from a left (or long-dead) record."""
        reclaim_time = self.config.dead_node_reclaim_time
        long_dead = (record.state == NodeState.DEAD and reclaim_time > 0
                     and now - record.state_change > reclaim_time)
        return record.state == NodeState.LEFT or long_dead

    def _conflict(self, record: NodeRecord, alive: Alive, addr: str, source: Address,
                  now: float) -> None:
        self._counters.inc("conflicts")
        self._log.warning("name conflict name=%s mine=%s theirs=%s state=%s from=%s",
                          alive.node, format_address(record.address),
                          format_address((addr, alive.port)), record.state.name.lower(),
                          format_address(source))
        other = NodeView(alive.node, addr, alive.port, alive.meta, alive.vsn,
                         alive.incarnation, NodeState.ALIVE, now)
        self._delegate.notify_conflict(record.view(), other, now)

    def _handle_suspect(self, suspect: Suspect, now: float) -> None:
        """memberlist ``suspectNode`` (7.5)."""
        record = self._members.get(suspect.node)
        if record is None or suspect.incarnation < record.incarnation:
            return
        timer = self._suspicions.get(suspect.node)
        if timer is not None:
            if timer.confirm(suspect.from_):
                self._counters.inc("suspect_confirmations")
                self._broadcast(suspect.node, wire.encode(suspect))
            return
        if record.state != NodeState.ALIVE:
            return
        if record.name == self.name:
            if not self._leaving:
                self._log.warning("refuting suspect about us from=%s", suspect.from_)
                self._refute(record, suspect.incarnation)
            return
        self._broadcast(suspect.node, wire.encode(suspect))
        record.incarnation = suspect.incarnation
        record.state, record.state_change = NodeState.SUSPECT, now
        n = len(self._members)
        minimum, maximum = self.config.suspicion_timeouts(n)
        k = confirmations_wanted(self.config.suspicion_mult, n)
        self._suspicions[record.name] = Suspicion(suspect.from_, k, minimum, maximum, now)
        self._counters.inc("suspects")
        self._log.info("member suspect name=%s incarnation=%d from=%s", record.name,
                       record.incarnation, suspect.from_)

    def _handle_dead(self, dead: Dead, source: Address, now: float) -> None:
        """memberlist ``deadNode`` (7.7); ``from == node`` means left."""
        record = self._members.get(dead.node)
        if record is None or dead.incarnation < record.incarnation:
            return
        self._suspicions.pop(dead.node, None)
        if record.is_dead_or_left():
            return
        if record.name == self.name and not self._leaving:
            self._log.warning("refuting dead about us from=%s", dead.from_)
            self._refute(record, dead.incarnation)
            return
        self._broadcast(dead.node, wire.encode(dead))
        record.incarnation = dead.incarnation
        record.state = NodeState.LEFT if dead.node == dead.from_ else NodeState.DEAD
        record.state_change = now
        self._counters.inc("lefts" if record.state == NodeState.LEFT else "deaths")
        self._log.info("member %s name=%s incarnation=%d from=%s",
                       "left" if record.state == NodeState.LEFT else "dead",
                       record.name, record.incarnation, dead.from_)
        self._delegate.notify_leave(record.view(), now)

    def _refute(self, me: NodeRecord, accused: int) -> None:
        """Out-number an accusation about ourselves and broadcast alive (7.6).

        The incarnation is a uint32 on the wire. Go would send ``accused + 1`` = 2^32
        for an accusation at 0xFFFFFFFF, which Go peers cannot decode; we saturate at
        ``MAX_INCARNATION`` instead (a refute at the maximum only ties the accusation,
        so a peer insisting on it wins; that is logged).
        """
        wanted = max(self._incarnation + 1, accused + 1)
        if wanted > MAX_INCARNATION:
            self._log.warning("incarnation saturated at %d refuting accusation incarnation=%d",
                              MAX_INCARNATION, accused)
        self._incarnation = min(wanted, MAX_INCARNATION)
        me.incarnation = self._incarnation
        self._awareness.apply_delta(1)
        self._counters.inc("refutes")
        alive = Alive(me.incarnation, me.name, self._addr_bytes, me.port, me.meta, me.vsn)
        self._broadcast(me.name, wire.encode(alive))

    def _broadcast(self, node: str, message: bytes) -> None:
        self._broadcasts.queue(message, name=node)

    # ------------------------------------------------------------------ timers

    def handle_timers(self, now: float) -> None:
        """Run every timer that is due at ``now``."""
        self._expire_streams(now)
        self._expire_relays(now)
        self._fire_suspicions(now)
        probe = self._probe
        if probe is not None and not probe.indirect_sent and now >= probe.timeout_at:
            # The indirect phase gets its full time from now (see _probe_indirect), so
            # the probe cannot also end in this call, however late the call comes.
            self._probe_indirect(probe, now)
        elif probe is not None and probe.indirect_sent and now >= probe.deadline:
            self._finish_probe(now, success=False)
        if self._probe is None and now >= self._next_probe:
            self._next_probe = _next_tick(self._next_probe, self.config.probe_interval, now)
            self._start_probe(now)
        if now >= self._next_gossip:
            self._next_gossip = _next_tick(self._next_gossip, self.config.gossip_interval, now)
            self._gossip(now)
        if now >= self._next_push_pull:
            self._next_push_pull = now + self.config.push_pull_scale(len(self._members))
            self._periodic_push_pull(now)

    def _expire_relays(self, now: float) -> None:
        for seq, relay in sorted(self._relays.items()):
            if now >= relay.expires:
                del self._relays[seq]
                if relay.nack:
                    self._counters.inc("nacks_sent")
                    self._send_msg(relay.requester, wire.encode(Nack(relay.requester_seq)))

    def _fire_suspicions(self, now: float) -> None:
        for name in sorted(self._suspicions):
            timer = self._suspicions[name]
            if not timer.is_due(now):
                continue
            del self._suspicions[name]
            record = self._members.get(name)
            if (record is None or record.state != NodeState.SUSPECT
                    or record.state_change != timer.start):
                continue
            self._log.info("suspect timeout name=%s confirmations=%d", name, timer.confirmations)
            self._handle_dead(Dead(record.incarnation, name, self.name), record.address, now)

    # ------------------------------------------------------------------ probing

    def _start_probe(self, now: float) -> None:
        """Ping the next node of the probe list (7.3 step 1)."""
        target = self._members.next_probe_target(now, self.config.gossip_to_the_dead_time)
        if target is None:
            return
        seq = self._next_seq()
        interval = self._awareness.scale(self.config.probe_interval)
        self._probe = _Probe(target.name, target.address, target.pmax, target.incarnation, seq,
                             now + self.config.probe_timeout, now + interval, interval)
        self._counters.inc("probes")
        ping = wire.encode(Ping(seq, target.name, self._addr_bytes, self._port, self.name))
        if target.state == NodeState.ALIVE:
            self._send_msg(target.address, ping)
        else:
            # A suspect target hears the accusation with the ping, to refute quickly.
            suspect = wire.encode(Suspect(target.incarnation, target.name, self.name))
            self._raw_send(target.address, wire.make_compound([ping, suspect]), target)

    def _probe_indirect(self, probe: _Probe, now: float) -> None:
        """No direct ack in time: relays and, in parallel, a TCP ping (7.3 step 3).

        Go waits on real timers, so a late wake-up still leaves the relays and the TCP
        ping their time; here a late ``handle_timers`` call (event loop stall) could
        start this phase past the probe's deadline. So the phase always lasts at least
        ``interval - probe_timeout`` from now, and the direct ping's ack still counts
        if it arrives meanwhile (it may be waiting unread in the socket).
        """
        probe.indirect_sent = True
        probe.deadline = max(probe.deadline, now + probe.interval - self.config.probe_timeout)
        relays = self._members.random_nodes(
            self.config.indirect_checks,
            lambda r: r.name in (self.name, probe.target) or r.state != NodeState.ALIVE)
        for relay in relays:
            wants_nack = relay.pmax >= 4
            probe.expected_nacks += wants_nack
            request = IndirectPing(probe.seq, ip_to_bytes(probe.address[0]), probe.address[1],
                                   probe.target, wants_nack, self._addr_bytes, self._port,
                                   self.name)
            self._send_msg(relay.address, wire.encode(request))
        if probe.pmax >= 3:
            ping = Ping(probe.seq, probe.target, self._addr_bytes, self._port, self.name)
            # Go gives the TCP ping the probe's own deadline; never more than tcp_timeout.
            deadline = min(probe.deadline, now + self.config.tcp_timeout)
            probe.fallback_stream = self._open_stream(
                "ping", probe.address, wire.encode(ping), deadline=deadline, seq=probe.seq)

    def _finish_probe(self, now: float, *, success: bool) -> None:
        """End the probe: update health; a failure makes the target suspect."""
        probe = self._probe
        assert probe is not None
        self._probe = None
        if probe.fallback_stream is not None and probe.fallback_stream in self._streams:
            self._close_stream(probe.fallback_stream)
        if not success and probe.fallback_ok:
            self._log.warning("probe reached %s only over tcp; network may be misconfigured",
                              probe.target)
            success = True
        if success:
            self._awareness.apply_delta(-1)
            return
        self._counters.inc("probe_failures")
        if probe.expected_nacks > 0:
            missed = max(0, probe.expected_nacks - probe.nacks)
        else:
            missed = 1
        if self._awareness.apply_delta(missed):
            self._log.info("health score changed score=%d", self._awareness.score)
        self._log.info("probe failed name=%s", probe.target)
        self._handle_suspect(Suspect(probe.incarnation, probe.target, self.name), now)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    # ------------------------------------------------------------------ sending

    def _encryption_overhead(self) -> int:
        return ENCRYPT_OVERHEAD_V1 if self._keyring is not None else 0

    def _has_broadcasts(self) -> bool:
        """Whether a gossip round would have anything to send."""
        return bool(len(self._broadcasts)) or self._delegate.has_broadcasts()

    def _take_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """memberlist's queue first, then Serf's if more than 3 bytes remain (2.7)."""
        parts = self._broadcasts.get_broadcasts(overhead, limit)
        used = sum(len(part) + overhead for part in parts)
        available = limit - used
        if available > overhead + USER_MSG_OVERHEAD:
            for item in self._delegate.get_broadcasts(overhead + USER_MSG_OVERHEAD, available):
                parts.append(bytes([MessageType.USER]) + item)
        if self._leave_message is not None and not self._leave_sent:
            self._leave_sent = self._leave_message in parts
        return parts[:MAX_COMPOUND_PARTS]

    def _send_msg(self, dest: Address, message: bytes) -> None:
        """Send a direct message with broadcasts piggybacked (memberlist ``sendMsg``)."""
        available = (self.config.udp_buffer_bytes - len(message) - COMPOUND_HEADER_OVERHEAD
                     - self._encryption_overhead())
        extra = self._take_broadcasts(COMPOUND_ITEM_OVERHEAD, available)
        packet = wire.make_compound([message, *extra[:MAX_COMPOUND_PARTS - 1]]) if extra else message
        self._raw_send(dest, packet, None)

    def _raw_send(self, dest: Address, packet: bytes, node: NodeRecord | None) -> None:
        """Compress (if shorter), CRC (node known with PMax >= 5), encrypt; then send.

        Deviation from Go: memberlist tries compression on every packet and keeps the
        result when shorter. Our LZW is pure Python (~0.1 ms a packet, 0.6 ms for
        1400 bytes, and the receiver pays to decompress), so datagrams are compressed
        only with ``config.compress_udp`` and then only from ``MIN_COMPRESS_BYTES`` on.
        Peers accept uncompressed packets whatever their settings (spec section 9).
        Streams are still always compressed.
        """
        if (self.config.enable_compression and self.config.compress_udp
                and len(packet) >= MIN_COMPRESS_BYTES):
            compressed = wire.compress_message(packet)
            if len(compressed) < len(packet):
                packet = compressed
        if node is not None and node.pmax >= 5:
            packet = wire.add_crc(packet)
        if self._keyring is not None:
            packet = self._keyring.encrypt(packet, b"", 1)
        self._counters.inc("sent.packets")
        self._outputs.append(SendPacket(dest, packet))

    def _gossip(self, now: float) -> None:
        """Send queued broadcasts to a few alive, suspect or recently dead nodes."""
        def excluded(record: NodeRecord) -> bool:
            if record.name == self.name:
                return True
            if record.state in (NodeState.ALIVE, NodeState.SUSPECT):
                return False
            return not (record.state == NodeState.DEAD and
                        now - record.state_change <= self.config.gossip_to_the_dead_time)

        budget = (self.config.udp_buffer_bytes - COMPOUND_HEADER_OVERHEAD
                  - self._encryption_overhead())
        # Take the first packet's broadcasts before choosing targets: an idle node
        # has nothing queued, and choosing targets scans every node (5 times a second).
        if len(self._members) <= 1:
            return  # nobody to tell: keep the broadcasts for when somebody joins
        parts = self._take_broadcasts(COMPOUND_ITEM_OVERHEAD, budget)
        if not parts:
            return
        for index, node in enumerate(self._members.random_nodes(self.config.gossip_nodes, excluded)):
            if index > 0:
                parts = self._take_broadcasts(COMPOUND_ITEM_OVERHEAD, budget)
            if not parts:
                return
            packet = parts[0] if len(parts) == 1 else wire.make_compound(parts)
            self._raw_send(node.address, packet, node)

    # ------------------------------------------------------------------ streams

    # ------------------------------------------------------------------ helpers

    def _drop(self, reason: str, peer: Address, detail: str, *, amount: int = 1) -> None:
        """Count and log something a peer sent that we throw away."""
        self._counters.inc(f"dropped.{reason}", amount)
        self._log.warning("dropped from peer=%s reason=%s detail=%s",
                          format_address(peer), reason, detail)


def _next_tick(previous: float, interval: float, now: float) -> float:
    """The next grid time after ``now`` of a ticker that skips missed ticks."""
    missed = int((now - previous) // interval)
    return previous + (missed + 1) * interval
