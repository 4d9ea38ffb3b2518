"""The Serf layer: members with a status, intents, user events and queries (spec section 8).

Theory of operation. ``Serf`` sits on top of the memberlist core and implements
``MemberlistDelegate``: memberlist calls it synchronously when nodes join, leave or
change, when a type-8 user message arrives, when it has room for broadcasts, and
around push/pull. ``Serf`` calls back into memberlist (``send_user``, ``join``,
``leave``, ``update_node``, ``local``, ``nodes``) once ``attach`` has given it the
instance. It never waits: everything that waits in Go (graceful leave, force-leave
confirmation, delayed prunes, query deadlines, reap and reconnect loops) is a
deadline served by ``handle_timers`` and ``advance``.

State owned:

* ``members``: one ``SerfMember`` per known name with its Serf status
  (alive/leaving/left/failed), ``status_ltime`` (the LTime of the last intent that
  set it) and ``leave_time`` (when it went failed/left, for the reaper).
* three ``LamportClock``s (member, event, query; 8.3) and the minimum event/query
  times below which messages are ignored.
* ``recent_intents``: for names not known yet, the newest join/leave intent (8.4).
* the event ring (8.6, also sent in push/pull) and the query ring (8.7).
* three ``TransmitLimitedQueue``s: intents, queries, events, served in that order.
  Serf broadcasts never replace each other; a re-broadcast is the exact bytes
  received.
* pending queries: those we answer (``IncomingQuery``) and those we started
  (``OutgoingQuery``); the leave and force-leave progress.

Status rules (spec 8.4) as a table: memberlist join -> alive; memberlist leave ->
leaving becomes left, alive becomes failed; a newer join intent turns leaving back
into alive; a newer leave intent turns alive into leaving and failed into left. An
intent about ourselves that we did not send (a leave, or a newer join) is refuted with
a join intent of our own while we are alive.

Outputs (``MemberJoined``, ``UserEventReceived``, ``QueryReceived``...) queue up in
``take_outputs``; packets go out through memberlist's outputs.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Mapping

from . import wire
from .broadcasts import TransmitLimitedQueue
from .config import GossipConfig
from .errors import ConfigError, RemoteProtocolError
from .events import (ForceLeaveFinished, LeaveFinished, MemberFailed, MemberJoined, MemberLeft,
                     MemberReaped, MemberUpdated, Output, ShutdownRequested, UserEventReceived)
from .keyring import Keyring
from .lamport import LamportClock, next_ltime
from .messages import (MemberStatus, SerfJoin, SerfLeave, SerfMemberRecord, SerfMessageType,
                       SerfPushPull, SerfQuery, SerfQueryResponse, SerfRelay, SerfUserEvent,
                       SerfUserEventEntry, SerfUserEvents)
from .query import CONFLICT_QUERY, IncomingQuery, LamportRing, OutgoingQuery, SerfQueries
from .stats import Counters
from .types import Address, Member, NodeView, ip_from_bytes, ip_to_bytes

if TYPE_CHECKING:
    from .memberlist import Memberlist

FORCE_LEAVE_TIMEOUT_ERROR = "timed out broadcasting node removal"

MAX_RECENT_INTENTS = 4096
"""Most buffered intents about unknown names. Serf's buffer is bounded only by its
timeout, so a peer inventing names could grow it; past this the oldest is forgotten
(counted as ``dropped.intent_evicted``)."""

RELAY_ROUNDS = 3
"""Gossip rounds between a leave intent fully sent and the dead-about-self (see _advance_leave)."""

class SerfState(Enum):
    """The local Serf instance's own lifecycle (serf ``SerfState``)."""

    ALIVE = "alive"
    LEAVING = "leaving"
    LEFT = "left"
    SHUTDOWN = "shutdown"


@dataclass(slots=True)
class SerfMember:
    """Serf's record of one member (serf ``memberState``)."""

    name: str
    addr: str
    port: int
    tags: dict[str, str]
    status: MemberStatus
    vsn: bytes
    status_ltime: int = 0
    leave_time: float | None = None
    """Monotonic time it became failed or left (for the reaper)."""

    def view(self) -> Member:
        """The frozen ``Member`` handed to the application."""
        v = self.vsn if len(self.vsn) >= 6 else bytes(6)
        return Member(name=self.name, addr=self.addr, port=self.port, tags=dict(self.tags),
                      status=self.status, protocol_min=v[0], protocol_max=v[1],
                      protocol_cur=v[2], delegate_min=v[3], delegate_max=v[4], delegate_cur=v[5])

    def record(self) -> SerfMemberRecord:
        """The wire ``Member`` of a conflict response."""
        m = self.view()
        return SerfMemberRecord(name=m.name, addr=ip_to_bytes(m.addr), port=m.port,
                                tags=dict(m.tags), status=int(m.status),
                                protocol_min=m.protocol_min, protocol_max=m.protocol_max,
                                protocol_cur=m.protocol_cur, delegate_min=m.delegate_min,
                                delegate_max=m.delegate_max, delegate_cur=m.delegate_cur)


@dataclass(slots=True)
class _Intent:
    """A buffered intent about a name we do not know yet."""

    kind: SerfMessageType
    ltime: int
    seen_at: float


@dataclass(slots=True)
class _Sent:
    """Set when a queued broadcast has left its queue (memberlist's notify channel)."""

    done: bool = False

    def finish(self) -> None:
        self.done = True


@dataclass(slots=True)
class _ForceLeave:
    request_id: int
    sent: _Sent
    deadline: float


@dataclass(slots=True)
class _Leave:
    """Progress of our graceful leave: intent -> dead -> propagate -> finished."""

    stage: str
    deadline: float
    sent: _Sent | None = None


def encode_meta(tags: Mapping[str, str], limit: int) -> bytes:
    """Our node meta: 0xff + msgpack tags (spec 8.2).

    Raises:
        ConfigError: the encoding is longer than ``limit`` bytes.
    """
    meta = wire.encode_tags(dict(tags))
    if len(meta) > limit:
        raise ConfigError(f"encoded tags are {len(meta)} bytes, over the limit of {limit}")
    return meta


class Serf(SerfQueries):
    """Serf's member, event and query logic over one ``Memberlist`` (see module doc)."""

    def __init__(self, config: GossipConfig, *, name: str, tags: Mapping[str, str],
                 keyring: Keyring | None, rng: random.Random,
                 log: logging.LoggerAdapter | logging.Logger, counters: Counters,
                 now: float) -> None:
        self.config = config
        self.name = name
        self.keyring = keyring
        self._rng = rng
        self._log = log
        self._counters = counters
        self._tags = dict(tags)
        self._meta = encode_meta(self._tags, config.meta_max_bytes)
        self.state = SerfState.ALIVE
        self.members: dict[str, SerfMember] = {}
        self.recent_intents: dict[str, _Intent] = {}
        # Each clock starts at 1, as serf.Create increments them once.
        self.clock = LamportClock(1)
        self.event_clock = LamportClock(1)
        self.query_clock = LamportClock(1)
        self.event_min_time = 0
        self.query_min_time = 0
        self.events: LamportRing[SerfUserEventEntry] = LamportRing(config.event_buffer)
        self.queries: LamportRing[int] = LamportRing(config.query_buffer)
        count = lambda: len(self.members)  # noqa: E731 - Serf sizes its queues by members
        self.intent_queue = TransmitLimitedQueue(config.retransmit_mult, count)
        self.event_queue = TransmitLimitedQueue(config.retransmit_mult, count)
        self.query_queue = TransmitLimitedQueue(config.retransmit_mult, count)
        self._memberlist: Memberlist | None = None
        self._outputs: list[Output] = []
        self._next_handle = 0
        self._incoming: dict[int, IncomingQuery] = {}
        self._outgoing: dict[int, OutgoingQuery] = {}  # by LTime (unique per query we start)
        self._conflict_query: int | None = None  # handle of the running conflict vote
        self._leave: _Leave | None = None
        self._force_leaves: list[_ForceLeave] = []
        self._prunes: list[tuple[float, str]] = []
        self.reconnect_join_ids: set[int] = set()
        self.ignore_old_joins = 0  # joins in flight that asked to ignore old events
        self._next_reap = now + config.reap_interval
        self._next_reconnect = now + config.reconnect_interval
        self._next_queue_check = now + config.queue_check_interval

    # ------------------------------------------------------------------ wiring

    def attach(self, memberlist: Memberlist, now: float) -> None:
        """Give Serf its memberlist; records ourselves if memberlist has not yet."""
        self._memberlist = memberlist
        if self.name not in self.members:
            self.notify_join(memberlist.local(), now)

    @property
    def memberlist(self) -> Memberlist:
        assert self._memberlist is not None, "Serf used before attach()"
        return self._memberlist

    def take_outputs(self) -> list[Output]:
        """Facts produced since the last call, in order."""
        out, self._outputs = self._outputs, []
        return out

    def _next_id(self) -> int:
        self._next_handle += 1
        return self._next_handle

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._tags)

    def set_tags(self, tags: Mapping[str, str], now: float) -> None:
        """Change our tags: new meta, then memberlist announces a new alive.

        Raises:
            ConfigError: the tags encode to more than ``meta_max_bytes``; nothing changes.
        """
        meta = encode_meta(tags, self.config.meta_max_bytes)
        self._tags, self._meta = dict(tags), meta
        me = self.members.get(self.name)
        if me is not None:
            me.tags = dict(tags)
        self.memberlist.update_node(now)

    # ------------------------------------------------------------ delegate

    def node_meta(self, limit: int) -> bytes:
        """Our meta bytes, identical between calls until ``set_tags``."""
        assert len(self._meta) <= limit, "meta checked against meta_max_bytes at set time"
        return self._meta

    def ack_payload(self) -> bytes | None:
        """No network coordinates: acks carry nil (Serf peers accept that)."""
        return None

    def notify_join(self, node: NodeView, now: float) -> None:
        """memberlist says ``node`` is alive: create or revive its record (8.4)."""
        member = self.members.get(node.name)
        if member is None:
            member = SerfMember(node.name, node.addr, node.port, self._decode_tags(node),
                                MemberStatus.ALIVE, node.vsn)
            intent = self.recent_intents.get(node.name)
            if intent is not None and intent.kind == SerfMessageType.JOIN:
                member.status_ltime = intent.ltime
            elif intent is not None and intent.kind == SerfMessageType.LEAVE:
                member.status, member.status_ltime = MemberStatus.LEAVING, intent.ltime
            self.members[node.name] = member
        else:
            member.status, member.leave_time = MemberStatus.ALIVE, None
            member.addr, member.port = node.addr, node.port
            member.tags = self._decode_tags(node)
        member.vsn = node.vsn
        self._log.info("member joined name=%s addr=%s:%d", member.name, member.addr, member.port)
        self._outputs.append(MemberJoined(member.view()))

    def notify_leave(self, node: NodeView, now: float) -> None:
        """memberlist says ``node`` is dead or left: leaving -> left, alive -> failed."""
        member = self.members.get(node.name)
        if member is None:
            return
        if member.status == MemberStatus.LEAVING:
            member.status, member.leave_time = MemberStatus.LEFT, now
            self._log.info("member left name=%s addr=%s", member.name, member.addr)
            self._outputs.append(MemberLeft(member.view()))
        elif member.status == MemberStatus.ALIVE:
            member.status, member.leave_time = MemberStatus.FAILED, now
            self._log.info("member failed name=%s addr=%s", member.name, member.addr)
            self._outputs.append(MemberFailed(member.view()))
        else:
            self._log.debug("member leave in unexpected status name=%s status=%s",
                            member.name, member.status)

    def notify_update(self, node: NodeView, now: float) -> None:
        """memberlist says an alive ``node`` has new meta: refresh tags and versions."""
        member = self.members.get(node.name)
        if member is None:
            return
        member.addr, member.port, member.vsn = node.addr, node.port, node.vsn
        member.tags = self._decode_tags(node)
        self._log.info("member updated name=%s tags=%s", member.name, member.tags)
        self._outputs.append(MemberUpdated(member.view()))

    def notify_conflict(self, existing: NodeView, other: NodeView, now: float) -> None:
        """Two addresses claim one name; when the name is ours, put it to a vote (8.10)."""
        if existing.name != self.name:
            self._log.warning("name conflict name=%s addr=%s:%d other=%s:%d", existing.name,
                              existing.addr, existing.port, other.addr, other.port)
            return
        self._log.error("our name is claimed by another node other=%s:%d resolve=%s",
                        other.addr, other.port, self.config.enable_name_conflict_resolution)
        if not self.config.enable_name_conflict_resolution or self._conflict_query is not None:
            return
        if self.state != SerfState.ALIVE:
            return
        self._conflict_query = self.query(CONFLICT_QUERY, self.name.encode(), now,
                                          request_ack=False, internal=True)

    def has_broadcasts(self) -> bool:
        """Whether any of the three Serf queues holds a message."""
        return bool(len(self.intent_queue) or len(self.query_queue) or len(self.event_queue))

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Intents first, then queries, then events, within ``limit`` bytes."""
        out: list[bytes] = []
        used = 0
        for queue in (self.intent_queue, self.query_queue, self.event_queue):
            got = queue.get_broadcasts(overhead, limit - used)
            used += sum(len(m) + overhead for m in got)
            out.extend(got)
        return out

    def _decode_tags(self, node: NodeView) -> dict[str, str]:
        try:
            return dict(wire.decode_tags(node.meta))
        except RemoteProtocolError as exc:
            self._log.warning("member tags undecodable name=%s reason=%s", node.name, exc)
            return {}

    # --------------------------------------------------------------- user messages

    def notify_user_msg(self, payload: bytes, source: Address, now: float) -> None:
        """A Serf message arrived (type 8 stripped): handle it and maybe re-broadcast it."""
        if not payload:
            return
        try:
            msg = wire.decode_serf(payload)
        except RemoteProtocolError as exc:
            self._counters.inc("dropped.serf_decode")
            self._log.warning("serf message dropped from=%s:%d reason=%s error=%s",
                              source[0], source[1], exc.reason, exc)
            return
        queue: TransmitLimitedQueue | None = None
        if isinstance(msg, SerfLeave):
            queue = self.intent_queue if self._handle_leave_intent(msg, now) else None
        elif isinstance(msg, SerfJoin):
            queue = self.intent_queue if self._handle_join_intent(msg, now) else None
        elif isinstance(msg, SerfUserEvent):
            queue = self.event_queue if self._handle_user_event(msg, now) else None
        elif isinstance(msg, SerfQuery):
            queue = self.query_queue if self._handle_query(msg, now) else None
        elif isinstance(msg, SerfQueryResponse):
            self._handle_query_response(msg, now)
        elif isinstance(msg, SerfRelay):
            self._forward_relay(msg, source)
        else:
            self._counters.inc("dropped.serf_decode")
            self._log.warning("serf message of unexpected kind from=%s:%d type=%s",
                              source[0], source[1], type(msg).__name__)
        if queue is not None:
            queue.queue(bytes(payload))

    def _forward_relay(self, msg: SerfRelay, source: Address) -> None:
        """Relay duty: send the inner message, as ``[8]`` + bytes, to ``DestAddr``."""
        try:
            dest = (ip_from_bytes(msg.dest_ip), msg.dest_port)
        except ValueError:
            self._counters.inc("dropped.serf_decode")
            self._log.warning("relay with bad destination from=%s:%d", source[0], source[1])
            return
        self._log.debug("relaying response to=%s:%d for=%s", dest[0], dest[1], msg.dest_name)
        self.memberlist.send_user(dest, msg.inner)

    # ------------------------------------------------------------------ intents

    def _upsert_intent(self, node: str, kind: SerfMessageType, ltime: int, now: float) -> bool:
        """Buffer an intent about an unknown node; True when it is news (then re-broadcast)."""
        current = self.recent_intents.get(node)
        if current is not None and ltime <= current.ltime:
            return False
        # Re-insert so that the dict stays in order of last update (oldest first).
        self.recent_intents.pop(node, None)
        if len(self.recent_intents) >= MAX_RECENT_INTENTS:
            oldest = next(iter(self.recent_intents))
            del self.recent_intents[oldest]
            self._counters.inc("dropped.intent_evicted")
            self._log.debug("intent buffer full, forgot intent name=%s", oldest)
        self.recent_intents[node] = _Intent(kind, ltime, now)
        return True

    def _handle_join_intent(self, msg: SerfJoin, now: float, *, ours: bool = False) -> bool:
        """Join intent (8.4); True when it should be re-broadcast.

        ``ours`` marks the intent ``broadcast_join`` makes. Any other join intent about us
        that is newer than our status LTime did not come from us: it is a push/pull
        state's artificial join carrying the LTime of a leave intent about us (a
        force-leave while we are alive) whose gossip copy has not reached us yet. Taken
        silently, that LTime would make us ignore the copy when it arrives and leave us
        "leaving" in the sender's view for good, so it is refuted like the leave itself.
        """
        self.clock.witness(msg.ltime)
        member = self.members.get(msg.node)
        if member is None:
            return self._upsert_intent(msg.node, SerfMessageType.JOIN, msg.ltime, now)
        if msg.ltime <= member.status_ltime:
            return False
        member.status_ltime = msg.ltime
        if member.status == MemberStatus.LEAVING:
            member.status = MemberStatus.ALIVE
        if msg.node == self.name and not ours and self.state == SerfState.ALIVE:
            self._log.info("refuting a newer status about us ltime=%d", msg.ltime)
            self.broadcast_join(now)
        return True

    def _handle_leave_intent(self, msg: SerfLeave, now: float) -> bool:
        """Leave intent (8.4); True when it should be re-broadcast."""
        self.clock.witness(msg.ltime)
        member = self.members.get(msg.node)
        if member is None:
            return self._upsert_intent(msg.node, SerfMessageType.LEAVE, msg.ltime, now)
        if msg.ltime <= member.status_ltime:
            self._log.debug("leave intent ignored name=%s ltime=%d status_ltime=%d", msg.node,
                            msg.ltime, member.status_ltime)
            return False
        self._log.debug("leave intent name=%s ltime=%d status=%s", msg.node, msg.ltime, member.status)
        if msg.node == self.name and self.state == SerfState.ALIVE:
            self._log.info("refuting a leave intent about us ltime=%d", msg.ltime)
            self.broadcast_join(now)
            return False
        # Store the LTime even when the status stays (stops endless re-broadcasts).
        member.status_ltime = msg.ltime
        if member.status == MemberStatus.ALIVE:
            member.status = MemberStatus.LEAVING
        elif member.status == MemberStatus.FAILED:
            member.status, member.leave_time = MemberStatus.LEFT, now
            self._log.info("member left name=%s addr=%s forced=true", member.name, member.addr)
            self._outputs.append(MemberLeft(member.view()))
        elif member.status not in (MemberStatus.LEAVING, MemberStatus.LEFT):
            return False
        if msg.prune:
            self._prune(member, now)
        return True

    def _prune(self, member: SerfMember, now: float) -> None:
        """Erase ``member`` now, or after the leave had time to spread if it is leaving."""
        if member.status == MemberStatus.LEAVING:
            delay = self.config.broadcast_timeout + self.config.leave_propagate_delay
            self._prunes.append((now + delay, member.name))
        else:
            self._erase(member.name, forced=True)

    def _erase(self, name: str, *, forced: bool) -> None:
        member = self.members.pop(name, None)
        if member is None:
            return
        self._log.info("member reaped name=%s addr=%s forced=%s", name, member.addr,
                       str(forced).lower())
        self._outputs.append(MemberReaped(member.view()))

    def broadcast_join(self, now: float) -> None:
        """Announce a join intent with the current member clock (join, or refuting a leave)."""
        ltime = self.clock.time()
        msg = SerfJoin(ltime=ltime, node=self.name)
        self.clock.witness(ltime)
        self._handle_join_intent(msg, now, ours=True)
        self.intent_queue.queue(wire.encode_serf(msg))

    def has_alive_members(self) -> bool:
        """Is any member other than us alive?"""
        return any(m.status == MemberStatus.ALIVE and m.name != self.name
                   for m in self.members.values())

    # ------------------------------------------------------------ join / leave

    def join_started(self, ignore_old_events: bool) -> None:
        """A ``GossipCore.join`` began; while it runs, join push/pulls may skip old events."""
        if ignore_old_events:
            self.ignore_old_joins += 1

    def join_finished(self, num_joined: int, ignore_old_events: bool, now: float) -> None:
        """The join ended; announce ourselves if anyone answered (serf ``Join``)."""
        if ignore_old_events:
            self.ignore_old_joins -= 1
        if num_joined > 0 and self.state == SerfState.ALIVE:
            self.broadcast_join(now)

    def leave(self, now: float) -> None:
        """Begin a graceful leave; ``LeaveFinished`` comes out when it is done.

        Stages: the intent is sent, relays get ``RELAY_ROUNDS`` gossip rounds, memberlist
        gossips the dead-about-self, then the propagate delay (``_advance_leave``).
        """
        if self.state != SerfState.ALIVE:
            self._log.warning("leave ignored state=%s", self.state.value)
            return
        self.state = SerfState.LEAVING
        self._log.info("leaving the cluster")
        msg = SerfLeave(ltime=self.clock.time(), node=self.name)
        self.clock.increment()
        self._handle_leave_intent(msg, now)
        if self.has_alive_members():
            sent = _Sent()
            self.intent_queue.queue(wire.encode_serf(msg), on_finished=sent.finish)
            self._leave = _Leave("intent", now + self.config.broadcast_timeout, sent)
        else:
            self._leave = _Leave("intent", now)

    def force_leave(self, name: str, prune: bool, now: float) -> int:
        """Force ``name`` out (leave intent about it); returns the request id.

        ``ForceLeaveFinished(id, None)`` follows once the intent was transmitted (or at
        once with nobody to tell), or ``ForceLeaveFinished(id, "timed out ...")`` after
        ``broadcast_timeout``. An unknown name is no error (Nomad behaviour).
        """
        request_id = self._next_id()
        if name not in self.members:
            self._log.warning("force leave of unknown member name=%s", name)
        msg = SerfLeave(ltime=self.clock.time(), node=name, prune=prune)
        self.clock.increment()
        self._log.info("force leave name=%s prune=%s", name, str(prune).lower())
        self._handle_leave_intent(msg, now)
        if not self.has_alive_members():
            self._outputs.append(ForceLeaveFinished(request_id, None))
            return request_id
        sent = _Sent()
        self.intent_queue.queue(wire.encode_serf(msg), on_finished=sent.finish)
        self._force_leaves.append(
            _ForceLeave(request_id, sent, now + self.config.broadcast_timeout))
        return request_id

    def advance(self, now: float) -> None:
        """Move leave and force-leave along; call after every input (no waiting)."""
        for item in list(self._force_leaves):
            if item.sent.done:
                self._outputs.append(ForceLeaveFinished(item.request_id, None))
            elif now >= item.deadline:
                self._outputs.append(ForceLeaveFinished(item.request_id, FORCE_LEAVE_TIMEOUT_ERROR))
            else:
                continue
            self._force_leaves.remove(item)
        if self._leave is not None:
            self._advance_leave(self._leave, now)

    def _advance_leave(self, leave: _Leave, now: float) -> None:
        """intent sent -> memberlist leave -> dead sent -> propagate delay -> finished."""
        if leave.stage == "intent":
            if not (leave.sent is None or leave.sent.done or now >= leave.deadline):
                return
            if leave.sent is not None and not leave.sent.done:
                self._log.warning("leave intent not fully sent before broadcast_timeout")
            # "Fully sent" counts transmissions, not peers: with more peers than one gossip
            # round reaches, some hear the intent only from relays. Give the relays a few
            # gossip rounds before the dead-about-self, or those peers record a failure
            # where there was a leave (Serf 0.9.4 goes straight on; shoal waits a little).
            leave.stage = "relay"
            relayed = leave.sent is not None and leave.sent.done
            leave.deadline = now + (RELAY_ROUNDS * self.config.gossip_interval if relayed else 0.0)
        if leave.stage == "relay":
            if now < leave.deadline:
                return
            self.memberlist.leave(now)
            leave.stage, leave.deadline = "dead", now + self.config.broadcast_timeout
        if leave.stage == "dead":
            if not (self.memberlist.leave_broadcast_sent() or now >= leave.deadline):
                return
            leave.stage, leave.deadline = "propagate", now + self.config.leave_propagate_delay
        if leave.stage == "propagate" and now >= leave.deadline:
            self.state = SerfState.LEFT
            self._leave = None
            self._log.info("left the cluster")
            self._outputs.append(LeaveFinished())

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """The earliest time ``handle_timers`` has work."""
        times = [self._next_reap, self._next_reconnect, self._next_queue_check]
        times += [f.deadline for f in self._force_leaves]
        times += [t for t, _ in self._prunes]
        times += [q.deadline for q in self._outgoing.values()]
        times += [q.deadline for q in self._incoming.values()]
        if self._leave is not None:
            times.append(self._leave.deadline)
        return min(times)

    def handle_timers(self, now: float) -> None:
        """Run whatever is due: prunes, query deadlines, reap, reconnect, queue check."""
        for due, name in sorted(self._prunes):
            if due <= now:
                self._prunes.remove((due, name))
                self._erase(name, forced=True)
        for handle, query in sorted(self._incoming.items()):
            if query.deadline <= now:
                del self._incoming[handle]
        for ltime, outgoing in sorted(self._outgoing.items()):
            if outgoing.deadline <= now:
                del self._outgoing[ltime]
                self._finish_query(outgoing)
        if now >= self._next_reap:
            self._next_reap = now + self.config.reap_interval
            self._reap(now)
        if now >= self._next_reconnect:
            self._next_reconnect = now + self.config.reconnect_interval
            self._reconnect(now)
        if now >= self._next_queue_check:
            self._next_queue_check = now + self.config.queue_check_interval
            self._check_queues()
        self.advance(now)

    def _reap(self, now: float) -> None:
        """Erase failed members after reconnect_timeout, left ones after tombstone_timeout."""
        for name in sorted(self.members):
            member = self.members[name]
            if member.leave_time is None:
                continue
            if member.status == MemberStatus.FAILED:
                timeout = self.config.reconnect_timeout
            elif member.status == MemberStatus.LEFT:
                timeout = self.config.tombstone_timeout
            else:
                continue
            if now - member.leave_time > timeout:
                self._erase(name, forced=False)
        for name in sorted(self.recent_intents):
            if now - self.recent_intents[name].seen_at > self.config.recent_intent_timeout:
                del self.recent_intents[name]

    def _reconnect(self, now: float) -> None:
        """With probability failed/alive, try a memberlist join to one failed member."""
        failed = [m for _, m in sorted(self.members.items()) if m.status == MemberStatus.FAILED]
        if not failed:
            return
        left = sum(1 for m in self.members.values() if m.status == MemberStatus.LEFT)
        alive = max(1, len(self.members) - len(failed) - left)
        if self._rng.random() > len(failed) / alive:
            return
        member = self._rng.choice(failed)
        self._log.info("reconnecting name=%s addr=%s:%d", member.name, member.addr, member.port)
        self.reconnect_join_ids.add(self.memberlist.join([(member.addr, member.port)], now))

    def _check_queues(self) -> None:
        """Trim a queue past max_queue_depth (serf ``checkQueueDepth``)."""
        limit = self.config.max_queue_depth
        for label, queue in (("intent", self.intent_queue), ("event", self.event_queue),
                             ("query", self.query_queue)):
            if len(queue) > limit:
                self._log.warning("queue too deep, dropping queue=%s depth=%d limit=%d",
                                  label, len(queue), limit)
                queue.prune(limit)

    # ------------------------------------------------------------------ push/pull

    def local_state(self, join: bool) -> bytes:
        """Our Serf push/pull state (8.5): clocks, status LTimes, left names, event ring."""
        names = sorted(self.members)
        events = tuple(
            None if slot is None else SerfUserEvents(slot.ltime, tuple(slot.items))
            for slot in self.events.slots)
        state = SerfPushPull(
            ltime=self.clock.time(),
            status_ltimes={n: self.members[n].status_ltime for n in names},
            left_members=tuple(n for n in names if self.members[n].status == MemberStatus.LEFT),
            event_ltime=self.event_clock.time(), events=events,
            query_ltime=self.query_clock.time())
        return wire.encode_serf(state)

    def merge_remote_state(self, buf: bytes, join: bool, now: float) -> None:
        """Merge a peer's push/pull state: clocks, left members, join LTimes, events."""
        try:
            state = wire.decode_serf(buf)
        except RemoteProtocolError as exc:
            self._counters.inc("dropped.serf_decode")
            self._log.warning("serf push/pull state dropped reason=%s error=%s", exc.reason, exc)
            return
        if not isinstance(state, SerfPushPull):
            self._counters.inc("dropped.serf_decode")
            self._log.warning("serf push/pull state of wrong type type=%s", type(state).__name__)
            return
        for clock, value in ((self.clock, state.ltime), (self.event_clock, state.event_ltime),
                             (self.query_clock, state.query_ltime)):
            if value > 0:
                clock.witness(value - 1)
        left = set(state.left_members)
        for name in state.left_members:
            ltime = next_ltime(state.status_ltimes.get(name, 0))  # saturates: u64 on the wire
            self._handle_leave_intent(SerfLeave(ltime=ltime, node=name), now)
        for name in sorted(state.status_ltimes):
            if name not in left:
                self._handle_join_intent(SerfJoin(state.status_ltimes[name], name), now)
        if join and self.ignore_old_joins > 0:
            self.event_min_time = max(self.event_min_time, state.event_ltime)
        for slot in state.events:
            if slot is None:
                continue
            for entry in slot.events:
                self._handle_user_event(
                    SerfUserEvent(ltime=slot.ltime, name=entry.name, payload=entry.payload,
                                  cc=False), now)

    # ------------------------------------------------------------------ user events

    def user_event(self, name: str, payload: bytes, coalesce: bool, now: float) -> None:
        """Send a user event to the cluster (8.6).

        Raises:
            ConfigError: name + payload exceed ``user_event_size_limit``; nothing sent.
        """
        limit = self.config.user_event_size_limit
        if len(name.encode()) + len(payload) > limit:
            raise ConfigError(f"user event exceeds the limit of {limit} bytes")
        msg = SerfUserEvent(ltime=self.event_clock.time(), name=name, payload=payload,
                            cc=coalesce)
        raw = wire.encode_serf(msg)
        if len(raw) > limit:
            raise ConfigError(f"encoded user event exceeds the limit of {limit} bytes")
        self.event_clock.increment()
        self._handle_user_event(msg, now)
        self.event_queue.queue(raw)

    def _handle_user_event(self, msg: SerfUserEvent, now: float) -> bool:
        """Record and deliver a user event once; True when it should be re-broadcast."""
        self.event_clock.witness(msg.ltime)
        if msg.ltime < self.event_min_time:
            self._counters.inc("dropped.event_before_min_time")
            self._log.debug("user event before the join's minimum ignored name=%s ltime=%d "
                            "min=%d", msg.name, msg.ltime, self.event_min_time)
            return False
        if self.events.is_too_old(msg.ltime, self.event_clock.time()):
            self._counters.inc("dropped.event_too_old")
            self._log.warning("old user event ignored name=%s ltime=%d clock=%d", msg.name,
                              msg.ltime, self.event_clock.time())
            return False
        entry = SerfUserEventEntry(msg.name, msg.payload or b"")
        recorded = self.events.record(msg.ltime, entry)
        if recorded is not True:
            self._counters.inc("dropped.event_duplicate" if recorded is False
                               else "dropped.event_slot_full")
            self._log.debug("user event not delivered name=%s ltime=%d reason=%s", msg.name,
                            msg.ltime, "duplicate" if recorded is False else "slot full")
            return False
        self._counters.inc("user_events")
        self._log.info("user event received name=%s ltime=%d", msg.name, msg.ltime)
        self._outputs.append(UserEventReceived(msg.name, msg.payload or b"", msg.ltime, msg.cc))
        return True

    def _request_shutdown(self, reason: str) -> None:
        """Stop taking part and ask the driver to stop (lost name-conflict vote)."""
        self.state = SerfState.SHUTDOWN
        self._outputs.append(ShutdownRequested(reason))
