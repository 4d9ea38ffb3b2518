"""Serf layer logic driven directly, with a fake memberlist and explicit time."""

from __future__ import annotations

import base64
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest

from gossip import wire
from gossip.config import DEFAULT_VSN, GossipConfig
from gossip.errors import ConfigError
from gossip.events import (ForceLeaveFinished, LeaveFinished, MemberFailed, MemberJoined,
                           MemberLeft, MemberReaped, MemberUpdated, QueryAckReceived,
                           QueryFinished, QueryReceived, QueryResponseReceived, ShutdownRequested,
                           UserEventReceived)
from gossip.keyring import Keyring
from gossip.lamport import LamportClock
from gossip.messages import (MemberStatus, NodeState, SerfJoin, SerfKeyRequest, SerfKeyResponse,
                             SerfLeave, SerfMemberRecord, SerfPushPull, SerfQuery,
                             SerfQueryResponse, SerfRelay, SerfUserEvent, SerfUserEventEntry,
                             SerfUserEvents, UserMsg)
from gossip.serf import RELAY_ROUNDS, Serf, SerfState
from gossip.stats import Counters
from gossip.types import NodeView, ip_to_bytes

ME = ("10.0.0.1", 7946)


def node(name: str, addr: str = "10.0.0.2", port: int = 7946, *, meta: bytes | None = None,
         vsn: bytes = DEFAULT_VSN, state: NodeState = NodeState.ALIVE) -> NodeView:
    if meta is None:
        meta = wire.encode_tags({"role": name})
    return NodeView(name, addr, port, meta, vsn, 1, state, 0.0)


class FakeMemberlist:
    """Records what Serf asks of memberlist."""

    def __init__(self, serf: Serf) -> None:
        self.serf = serf
        self.sent: list[tuple[tuple[str, int], bytes]] = []
        self.joins: list[list[tuple[str, int]]] = []
        self.left = False
        self.leave_sent = False
        self.updates = 0

    def local(self) -> NodeView:
        return node(self.serf.name, *ME, meta=self.serf.node_meta(512))

    def nodes(self) -> list[NodeView]:
        return [node(m.name, m.addr, m.port) for m in self.serf.members.values()
                if m.status == MemberStatus.ALIVE]

    def send_user(self, dest: tuple[str, int], payload: bytes) -> None:
        self.sent.append((dest, payload))

    def join(self, seeds: list[tuple[str, int]], now: float) -> int:
        self.joins.append(list(seeds))
        return 100 + len(self.joins)

    def leave(self, now: float) -> None:
        self.left = True

    def leave_broadcast_sent(self) -> bool:
        return self.leave_sent

    def update_node(self, now: float) -> None:
        self.updates += 1


def make(name: str = "me", *, tags: dict[str, str] | None = None, keyring: Keyring | None = None,
         config: GossipConfig | None = None, seed: int = 7) -> tuple[Serf, FakeMemberlist]:
    serf = Serf(config or GossipConfig.lan(), name=name, tags=tags or {"role": "me"},
                keyring=keyring, rng=random.Random(seed),
                log=logging.LoggerAdapter(logging.getLogger(f"test.{name}"), {}),
                counters=Counters(), now=0.0)
    ml = FakeMemberlist(serf)
    serf.attach(ml, 0.0)  # type: ignore[arg-type]
    serf.take_outputs()
    return serf, ml


def with_peers(*names: str, **kwargs: Any) -> tuple[Serf, FakeMemberlist]:
    serf, ml = make(**kwargs)
    for i, name in enumerate(names):
        serf.notify_join(node(name, f"10.0.0.{i + 2}"), 0.0)
    serf.take_outputs()
    return serf, ml


def drain_queue(serf: Serf) -> list[bytes]:
    out = []
    for _ in range(100):
        got = serf.get_broadcasts(2, 1400)
        if not got:
            break
        out += got
    return out


def queued(serf: Serf) -> list[bytes]:
    """Every distinct message waiting in Serf's three queues (nothing is taken)."""
    return (serf.intent_queue.messages() + serf.query_queue.messages()
            + serf.event_queue.messages())


def sent_messages(ml: FakeMemberlist) -> list[tuple[tuple[str, int], Any]]:
    return [(dest, wire.decode_serf(raw)) for dest, raw in ml.sent]


# --------------------------------------------------------------------------- clocks


@pytest.mark.parametrize("start, witnessed, after", [(1, 0, 1), (1, 1, 2), (5, 9, 10), (5, 4, 5)])
def test_lamport_witness(start: int, witnessed: int, after: int) -> None:
    """witness(v) moves the clock to v + 1 only when v is at or past it."""
    clock = LamportClock(start)
    clock.witness(witnessed)
    assert clock.time() == after


def test_lamport_increment_returns_new_value() -> None:
    """increment adds one and returns the new value."""
    clock = LamportClock(1)
    assert clock.increment() == 2 and clock.time() == 2


# --------------------------------------------------------------------------- tags


def test_meta_is_fixed_bytes_until_set_tags() -> None:
    """node_meta returns identical bytes each call, and new bytes after set_tags."""
    serf, ml = make(tags={"b": "2", "a": "1"})
    first = serf.node_meta(512)
    assert first[0] == 0xFF and serf.node_meta(512) is first
    assert wire.decode_tags(first) == {"a": "1", "b": "2"}
    serf.set_tags({"role": "db"}, 1.0)
    assert wire.decode_tags(serf.node_meta(512)) == {"role": "db"} and ml.updates == 1
    assert serf.members["me"].tags == {"role": "db"}


def test_oversized_tags_are_refused() -> None:
    """Tags over 512 encoded bytes raise ConfigError at start and at set_tags (no change)."""
    with pytest.raises(ConfigError):
        make(tags={"big": "x" * 600})
    serf, ml = make()
    before = serf.node_meta(512)
    with pytest.raises(ConfigError):
        serf.set_tags({"big": "x" * 600}, 1.0)
    assert serf.node_meta(512) == before and ml.updates == 0


def test_member_record_from_legacy_meta_and_vsn() -> None:
    """Role-only meta decodes to {"role": ...}; protocol versions come from Vsn."""
    serf, _ = make()
    serf.notify_join(node("old", meta=b"legacy", vsn=bytes([1, 4, 2, 2, 4, 3])), 1.0)
    [joined] = serf.take_outputs()
    assert isinstance(joined, MemberJoined)
    member = joined.member
    assert member.tags == {"role": "legacy"} and member.status == MemberStatus.ALIVE
    assert (member.protocol_min, member.protocol_max, member.protocol_cur) == (1, 4, 2)
    assert (member.delegate_min, member.delegate_max, member.delegate_cur) == (2, 4, 3)


# --------------------------------------------------------------------------- status rules


def test_memberlist_leave_maps_alive_to_failed_and_leaving_to_left() -> None:
    """memberlist leave: alive -> failed, leaving -> left (spec 8.4)."""
    serf, _ = with_peers("a", "b")
    assert serf.notify_user_msg(wire.encode_serf(SerfLeave(5, "b")), ME, 1.0) is None
    assert serf.members["b"].status == MemberStatus.LEAVING
    serf.notify_leave(node("a"), 2.0)
    serf.notify_leave(node("b"), 2.0)
    out = serf.take_outputs()
    assert [(type(o), o.member.name) for o in out] == [(MemberFailed, "a"), (MemberLeft, "b")]
    assert serf.members["a"].leave_time == 2.0


def test_join_intent_returns_leaving_member_to_alive() -> None:
    """A newer join intent turns a leaving member alive; an older one is ignored."""
    serf, _ = with_peers("a")
    serf.notify_user_msg(wire.encode_serf(SerfLeave(5, "a")), ME, 1.0)
    serf.notify_user_msg(wire.encode_serf(SerfJoin(4, "a")), ME, 1.0)
    assert serf.members["a"].status == MemberStatus.LEAVING
    serf.notify_user_msg(wire.encode_serf(SerfJoin(6, "a")), ME, 1.0)
    assert serf.members["a"].status == MemberStatus.ALIVE
    assert serf.members["a"].status_ltime == 6 and serf.clock.time() == 7


def test_leave_intent_turns_failed_into_left() -> None:
    """A leave intent about a failed member makes it left and reports MemberLeft."""
    serf, _ = with_peers("a")
    serf.notify_leave(node("a"), 1.0)
    serf.take_outputs()
    serf.notify_user_msg(wire.encode_serf(SerfLeave(3, "a")), ME, 2.0)
    [left] = serf.take_outputs()
    assert isinstance(left, MemberLeft) and left.member.status == MemberStatus.LEFT


def test_intents_rebroadcast_exact_bytes_once() -> None:
    """A new intent is queued again byte for byte; a repeat is not."""
    serf, _ = with_peers("a")
    # A non-canonical encoding (Prune key first) must come back out unchanged.
    raw = b"\x00\x83\xa5Prune\xc2\xa5LTime\x09\xa4Node\xa1a"
    assert wire.decode_serf(raw) == SerfLeave(9, "a")
    serf.notify_user_msg(raw, ME, 1.0)
    serf.notify_user_msg(raw, ME, 1.0)
    assert serf.intent_queue.messages() == [raw]


def test_unknown_node_intents_are_buffered_highest_first() -> None:
    """Intents about unknown nodes keep the highest LTime and seed the new member."""
    serf, _ = make()
    serf.notify_user_msg(wire.encode_serf(SerfJoin(4, "x")), ME, 1.0)
    serf.notify_user_msg(wire.encode_serf(SerfLeave(6, "x")), ME, 1.0)
    serf.notify_user_msg(wire.encode_serf(SerfJoin(5, "x")), ME, 1.0)
    assert (serf.recent_intents["x"].kind, serf.recent_intents["x"].ltime) == (0, 6)
    assert sorted(serf.intent_queue.messages()) == sorted(
        [wire.encode_serf(SerfJoin(4, "x")), wire.encode_serf(SerfLeave(6, "x"))])
    serf.notify_join(node("x"), 2.0)
    assert serf.members["x"].status == MemberStatus.LEAVING
    assert serf.members["x"].status_ltime == 6


def test_buffered_intents_expire() -> None:
    """The reaper drops buffered intents older than recent_intent_timeout."""
    serf, _ = make(config=GossipConfig.lan(recent_intent_timeout=10.0, reap_interval=5.0))
    serf.notify_user_msg(wire.encode_serf(SerfJoin(4, "x")), ME, 1.0)
    serf.handle_timers(10.0)
    assert "x" in serf.recent_intents
    serf.handle_timers(15.0)
    assert "x" not in serf.recent_intents


def test_leave_intent_about_us_is_refuted() -> None:
    """A leave intent about ourselves while alive is answered with a newer join intent."""
    serf, _ = with_peers("a")
    serf.notify_user_msg(wire.encode_serf(SerfLeave(10, "me")), ME, 1.0)
    assert serf.members["me"].status == MemberStatus.ALIVE
    queued = [wire.decode_serf(m) for m in drain_queue(serf)]
    assert SerfJoin(11, "me") in queued
    assert not any(isinstance(m, SerfLeave) for m in queued)


# --------------------------------------------------------------------------- force leave / prune


def test_force_leave_reports_after_transmission() -> None:
    """ForceLeaveFinished(id, None) comes once the leave intent has left the queue."""
    serf, _ = with_peers("a", "b")
    serf.notify_leave(node("b"), 1.0)
    serf.take_outputs()
    request = serf.force_leave("b", False, 2.0)
    assert serf.members["b"].status == MemberStatus.LEFT
    serf.advance(2.0)
    assert not any(isinstance(o, ForceLeaveFinished) for o in serf.take_outputs())
    drain_queue(serf)
    serf.advance(2.5)
    assert serf.take_outputs() == [ForceLeaveFinished(request, None)]


def test_force_leave_times_out() -> None:
    """Without transmission, ForceLeaveFinished carries the timeout error after broadcast_timeout."""
    serf, _ = with_peers("a", "b")
    request = serf.force_leave("b", False, 2.0)
    assert serf.next_deadline() <= 2.0 + serf.config.broadcast_timeout
    serf.handle_timers(2.0 + serf.config.broadcast_timeout)
    assert ForceLeaveFinished(request, "timed out broadcasting node removal") in serf.take_outputs()


def test_force_leave_unknown_name_is_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """An unknown name logs a warning and still succeeds (Nomad behaviour)."""
    serf, _ = make()
    with caplog.at_level(logging.WARNING):
        request = serf.force_leave("ghost", False, 1.0)
    assert serf.take_outputs() == [ForceLeaveFinished(request, None)]
    assert "force leave of unknown member name=ghost" in caplog.text


def test_prune_of_leaving_member_waits() -> None:
    """Prune erases a leaving member only after broadcast_timeout + leave_propagate_delay."""
    serf, _ = with_peers("a", "b")
    serf.force_leave("b", True, 1.0)
    assert serf.members["b"].status == MemberStatus.LEAVING
    delay = serf.config.broadcast_timeout + serf.config.leave_propagate_delay
    serf.handle_timers(1.0 + delay - 0.01)
    assert "b" in serf.members
    serf.handle_timers(1.0 + delay)
    assert "b" not in serf.members
    assert any(isinstance(o, MemberReaped) for o in serf.take_outputs())


# --------------------------------------------------------------------------- graceful leave


def test_leave_steps_in_order() -> None:
    """Leave: intent sent -> relay rounds -> memberlist leave -> dead sent -> propagate delay
    -> LeaveFinished."""
    serf, ml = with_peers("a")
    serf.leave(10.0)
    assert serf.state == SerfState.LEAVING
    assert serf.members["me"].status == MemberStatus.LEAVING
    serf.advance(10.1)
    assert not ml.left
    [intent] = queued(serf)
    assert wire.decode_serf(intent) == SerfLeave(1, "me")
    drain_queue(serf)
    assert serf.clock.time() == 2
    serf.advance(10.2)
    assert not ml.left                    # relays get RELAY_ROUNDS gossip rounds first
    relay_end = 10.2 + RELAY_ROUNDS * serf.config.gossip_interval
    assert serf.next_deadline() <= relay_end
    serf.handle_timers(relay_end)
    assert ml.left
    ml.leave_sent = True
    serf.advance(relay_end + 0.1)
    start = relay_end + 0.1
    serf.handle_timers(start + serf.config.leave_propagate_delay - 0.01)
    assert serf.take_outputs() == []
    serf.handle_timers(start + serf.config.leave_propagate_delay)
    assert serf.take_outputs() == [LeaveFinished()] and serf.state == SerfState.LEFT


def test_leave_intent_timeout_still_proceeds() -> None:
    """An intent never transmitted delays memberlist leave by broadcast_timeout only."""
    serf, ml = with_peers("a")
    serf.leave(0.0)
    serf.handle_timers(serf.config.broadcast_timeout)
    assert ml.left


# --------------------------------------------------------------------------- reap / reconnect


def test_reap_erases_failed_and_left_after_their_timeouts() -> None:
    """Failed members go after reconnect_timeout, left ones after tombstone_timeout."""
    config = GossipConfig.lan(reconnect_timeout=100.0, tombstone_timeout=50.0, reap_interval=10.0)
    serf, _ = with_peers("a", "b", config=config)
    serf.notify_leave(node("a"), 0.0)  # failed
    serf.notify_user_msg(wire.encode_serf(SerfLeave(5, "b")), ME, 0.0)
    serf.notify_leave(node("b"), 0.0)  # left
    serf.take_outputs()
    serf.handle_timers(60.0)
    assert [o.member.name for o in serf.take_outputs() if isinstance(o, MemberReaped)] == ["b"]
    serf.handle_timers(110.0)
    assert [o.member.name for o in serf.take_outputs() if isinstance(o, MemberReaped)] == ["a"]


def test_reconnect_joins_a_failed_member() -> None:
    """With as many failed as alive members, the reconnect tick always tries a join."""
    serf, ml = with_peers("a", config=GossipConfig.lan(reconnect_interval=30.0))
    serf.notify_leave(node("a", "10.0.0.2"), 0.0)
    serf.handle_timers(30.0)
    assert ml.joins == [[("10.0.0.2", 7946)]]
    assert serf.reconnect_join_ids == {101}


# --------------------------------------------------------------------------- user events


def test_user_event_clock_and_local_delivery() -> None:
    """Sending uses the event clock then increments it, delivering locally at once."""
    serf, _ = with_peers("a")
    serf.user_event("deploy", b"v1", True, 1.0)
    assert serf.take_outputs() == [UserEventReceived("deploy", b"v1", 1, True)]
    assert serf.event_clock.time() == 2
    [raw] = queued(serf)
    assert wire.decode_serf(raw) == SerfUserEvent(1, "deploy", b"v1", True)


def test_user_event_size_limit() -> None:
    """name + payload over user_event_size_limit raises and changes nothing."""
    serf, _ = make()
    with pytest.raises(ConfigError):
        serf.user_event("e", b"x" * 512, False, 1.0)
    assert serf.event_clock.time() == 1 and len(serf.event_queue) == 0


@pytest.mark.parametrize("ltime, clock, min_time, delivered", [
    (5, 1, 0, True),      # new
    (5, 1, 6, False),     # below the minimum event time
    (10, 600, 0, False),  # more than 512 behind the clock
    (100, 600, 0, True),  # inside the window
])
def test_user_event_acceptance(ltime: int, clock: int, min_time: int, delivered: bool) -> None:
    """Received events respect the minimum time and the 512 window (spec 8.6)."""
    serf, _ = make()
    serf.event_clock.witness(clock - 1)
    serf.event_min_time = min_time
    serf.notify_user_msg(wire.encode_serf(SerfUserEvent(ltime, "e", b"p", False)), ME, 1.0)
    assert (serf.take_outputs() != []) is delivered
    assert serf.event_clock.time() >= ltime + 1


def test_duplicate_user_event_is_dropped_not_rebroadcast() -> None:
    """The same (LTime, name, payload) is delivered and re-broadcast once."""
    serf, _ = make()
    raw = wire.encode_serf(SerfUserEvent(3, "e", None, False))
    serf.notify_user_msg(raw, ME, 1.0)
    serf.notify_user_msg(raw, ME, 1.0)
    serf.notify_user_msg(wire.encode_serf(SerfUserEvent(3, "e", b"other", False)), ME, 1.0)
    assert [o.payload for o in serf.take_outputs()] == [b"", b"other"]
    assert len(serf.event_queue) == 2


# --------------------------------------------------------------------------- queries


def incoming_query(name: str = "q", *, ltime: int = 3, flags: int = 1, filters: tuple = (),
                   relay: int = 0, timeout: float = 5.0, payload: bytes | None = b"") -> bytes:
    return wire.encode_serf(SerfQuery(
        ltime=ltime, id=77, addr=ip_to_bytes("10.0.0.9"), port=9000, source_node="origin",
        filters=filters, flags=flags, relay_factor=relay, timeout_ns=int(timeout * 1e9),
        name=name, payload=payload))


def test_query_is_acked_delivered_and_answered_once() -> None:
    """A query is acked to Addr:Port, delivered, and answered once before its deadline."""
    serf, ml = with_peers("a")
    serf.notify_user_msg(incoming_query(payload=b"hi"), ME, 1.0)
    [received] = serf.take_outputs()
    assert isinstance(received, QueryReceived)
    assert (received.name, received.payload, received.source_node, received.deadline) == (
        "q", b"hi", "origin", 6.0)
    assert sent_messages(ml) == [(("10.0.0.9", 9000), SerfQueryResponse(3, 77, "me", 1, None))]
    serf.respond_query(received.handle, b"answer", 2.0)
    serf.respond_query(received.handle, b"again", 2.0)
    assert sent_messages(ml)[1:] == [
        (("10.0.0.9", 9000), SerfQueryResponse(3, 77, "me", 0, b"answer"))]
    assert serf._counters.get("queries_answered") == 1
    assert len(serf.query_queue) == 1  # re-broadcast


def test_query_response_late_or_oversized() -> None:
    """No answer after the deadline; an oversized answer raises ConfigError."""
    serf, ml = make()
    serf.notify_user_msg(incoming_query(), ME, 1.0)
    [received] = serf.take_outputs()
    with pytest.raises(ConfigError):
        serf.respond_query(received.handle, b"x" * 2000, 2.0)
    serf.respond_query(received.handle, b"late", 7.0)
    assert len(ml.sent) == 1  # the ack only


def test_query_duplicate_and_no_broadcast_flag() -> None:
    """A repeated (LTime, ID) is ignored; flag 2 stops the re-broadcast."""
    serf, _ = make()
    raw = incoming_query(flags=2)
    serf.notify_user_msg(raw, ME, 1.0)
    serf.notify_user_msg(raw, ME, 1.0)
    assert len([o for o in serf.take_outputs() if isinstance(o, QueryReceived)]) == 1
    assert len(serf.query_queue) == 0
    assert serf._counters.get("queries_received") == 1


@pytest.mark.parametrize("filters, selected", [
    ((wire.encode_filter_nodes(["x", "me"]),), True),
    ((wire.encode_filter_nodes(["x"]),), False),
    ((wire.encode_filter_tag("role", "^we"),), True),
    ((wire.encode_filter_tag("role", "b-f"),), True),   # unanchored
    ((wire.encode_filter_tag("role", "^front"),), False),
    ((wire.encode_filter_tag("role", "([a"),), False),  # does not compile
    ((wire.encode_filter_tag("dc", ".*"),), True),      # missing tag is ""
    ((bytes([5]) + b"\x90",), False),                   # unknown filter type
])
def test_query_filters(filters: tuple, selected: bool) -> None:
    """Node and tag filters select nodes as Serf does; broken filters skip the query."""
    serf, ml = make(tags={"role": "web-frontend"})
    serf.notify_user_msg(incoming_query(filters=filters), ME, 1.0)
    assert bool(serf.take_outputs()) is selected
    assert bool(ml.sent) is selected
    assert len(serf.query_queue) == 1  # re-broadcast either way


def test_query_relay_goes_to_capable_alive_members() -> None:
    """Relayed copies go only to alive members with pmax >= 5, wrapped as relay messages."""
    serf, ml = make()
    serf.notify_join(node("new1", "10.0.0.2"), 0.0)
    serf.notify_join(node("new2", "10.0.0.3"), 0.0)
    serf.notify_join(node("old", "10.0.0.4", vsn=bytes([1, 4, 2, 2, 5, 4])), 0.0)
    serf.notify_join(node("dead", "10.0.0.5"), 0.0)
    serf.notify_leave(node("dead", "10.0.0.5"), 0.0)
    serf.notify_user_msg(incoming_query(relay=2), ME, 1.0)
    relays = [(dest, msg) for dest, msg in sent_messages(ml) if isinstance(msg, SerfRelay)]
    assert sorted(dest for dest, _ in relays) == [("10.0.0.2", 7946), ("10.0.0.3", 7946)]
    for _, relay in relays:
        assert (relay.dest_ip, relay.dest_port, relay.dest_name) == (
            ip_to_bytes("10.0.0.9"), 9000, "origin")
        assert wire.decode_serf(relay.inner) == SerfQueryResponse(3, 77, "me", 1, None)


def test_relay_message_is_forwarded() -> None:
    """A relay message is unwrapped and its inner bytes sent to DestAddr."""
    serf, ml = make()
    inner = wire.encode_serf(SerfQueryResponse(3, 77, "x", 1, None))
    relay = SerfRelay(ip_to_bytes("10.0.0.9"), 9000, "", "origin", inner)
    serf.notify_user_msg(wire.encode_serf(relay), ME, 1.0)
    assert ml.sent == [(("10.0.0.9", 9000), inner)]


def test_started_query_collects_deduplicated_replies() -> None:
    """The originator reports each ack and response once, then QueryFinished at the deadline."""
    serf, ml = with_peers("a")
    handle = serf.query("q", b"", 1.0, timeout=2.0)
    [own] = serf.take_outputs()
    assert isinstance(own, QueryReceived)
    [query] = [wire.decode_serf(m) for m in queued(serf)]
    assert isinstance(query, SerfQuery) and query.id < 2**31 and query.flags == 1
    assert query.timeout_ns == 2_000_000_000 and query.source_node == "me"
    for flags, payload in ((1, None), (1, None), (0, b"r"), (0, b"r2")):
        serf.notify_user_msg(wire.encode_serf(
            SerfQueryResponse(query.ltime, query.id, "a", flags, payload)), ME, 1.5)
    assert serf.take_outputs() == [QueryAckReceived(handle, "a"),
                                   QueryResponseReceived(handle, "a", b"r")]
    serf.handle_timers(3.0)
    assert serf.take_outputs() == [QueryFinished(handle)]
    serf.notify_user_msg(wire.encode_serf(
        SerfQueryResponse(query.ltime, query.id, "b", 0, b"late")), ME, 3.5)
    assert serf.take_outputs() == []


def test_query_default_timeout_and_size_limit() -> None:
    """The default timeout follows the alive count; an oversized query raises."""
    serf, _ = with_peers("a", "b")
    serf.query("q", b"", 0.0)
    [q] = [wire.decode_serf(m) for m in queued(serf)]
    assert q.timeout_ns == round(serf.config.default_query_timeout(3) * 1e9)
    with pytest.raises(ConfigError):
        serf.query("q", b"x" * 2000, 0.0)


# --------------------------------------------------------------------------- internal queries


def test_conflict_query_answers_with_member_record() -> None:
    """_serf_conflict is answered with our record of the name, not at all for our own name."""
    serf, ml = with_peers("a")
    serf.notify_user_msg(incoming_query("_serf_conflict", payload=b"a", flags=0), ME, 1.0)
    assert serf.take_outputs() == []
    [(_, response)] = sent_messages(ml)
    record = wire.decode_serf(response.payload)
    assert isinstance(record, SerfMemberRecord)
    assert (record.name, record.addr, record.status) == ("a", ip_to_bytes("10.0.0.2"), 1)
    serf.notify_user_msg(incoming_query("_serf_conflict", ltime=4, payload=b"me", flags=0),
                         ME, 1.0)
    assert len(ml.sent) == 1


def test_key_queries_change_the_keyring() -> None:
    """Key queries install/use/remove/list keys and answer with keyResponse."""
    k1, k2 = bytes(range(16)), bytes(range(16, 32))
    keyring = Keyring([k1], random.Random(1).randbytes)
    serf, ml = make(keyring=keyring)
    request = wire.encode_serf(SerfKeyRequest(k2))
    for ltime, name in ((3, "install-key"), (4, "use-key")):
        serf.notify_user_msg(incoming_query("_serf_" + name, ltime=ltime, payload=request,
                                            flags=0), ME, 1.0)
    assert keyring.keys == (k2, k1)
    serf.notify_user_msg(incoming_query("_serf_remove-key", ltime=5, payload=request,
                                        flags=0), ME, 1.0)
    serf.notify_user_msg(incoming_query("_serf_list-keys", ltime=6, flags=0,
                                        payload=wire.encode_serf(SerfKeyRequest(b""))), ME, 1.0)
    answers = [wire.decode_serf(msg.payload) for _, msg in sent_messages(ml)]
    assert [a.result for a in answers] == [True, True, False, True]
    assert answers[2].message != ""  # removing the primary is refused
    assert answers[3].primary_key == base64.b64encode(k2).decode()
    assert sorted(answers[3].keys) == sorted(base64.b64encode(k).decode() for k in (k1, k2))


def test_key_query_without_keyring() -> None:
    """Without encryption, key queries answer Result=false with Serf's message."""
    serf, ml = make()
    serf.notify_user_msg(incoming_query("_serf_install-key", flags=0,
                                        payload=wire.encode_serf(SerfKeyRequest(bytes(16)))),
                         ME, 1.0)
    [(_, msg)] = sent_messages(ml)
    assert wire.decode_serf(msg.payload) == SerfKeyResponse(
        False, "No keyring to modify (encryption not enabled)")


@pytest.mark.parametrize("answers, shutdown", [
    ([("a", ("10.0.0.1", 7946)), ("b", ("10.0.0.1", 7946))], False),
    ([("a", ("10.0.0.1", 7946)), ("b", ("10.0.0.7", 7946))], True),   # 1 of 2: no majority
    ([("a", ("10.0.0.1", 7946)), ("b", ("10.0.0.7", 7946)), ("c", ("10.0.0.1", 7946))], False),
    ([], True),                                                        # nobody vouches for us
])
def test_name_conflict_vote(answers: list, shutdown: bool) -> None:
    """Our own name claimed elsewhere: a _serf_conflict vote; a minority shuts us down."""
    serf, ml = with_peers("a", "b", "c")
    serf.notify_conflict(node("me", *ME), node("me", "10.0.0.7"), 1.0)
    assert serf.take_outputs() == []  # our own conflict query is internal
    [q] = [wire.decode_serf(m) for m in queued(serf)]
    assert (q.name, q.payload, q.flags) == ("_serf_conflict", b"me", 0)
    for sender, (addr, port) in answers:
        record = SerfMemberRecord("me", ip_to_bytes(addr), port, {}, 1, 1, 5, 2, 2, 5, 4)
        serf.notify_user_msg(wire.encode_serf(SerfQueryResponse(
            q.ltime, q.id, sender, 0, wire.encode_serf(record))), ME, 1.5)
    serf.handle_timers(1.0 + q.timeout_ns / 1e9)
    assert (ShutdownRequested("name conflict") in serf.take_outputs()) is shutdown


# --------------------------------------------------------------------------- push/pull


def test_local_state_has_full_event_ring_and_left_members() -> None:
    """Push/pull state carries all clocks, every status LTime, left names and 512 slots."""
    serf, _ = with_peers("a", "b")
    serf.notify_user_msg(wire.encode_serf(SerfLeave(5, "b")), ME, 0.0)
    serf.notify_leave(node("b"), 0.0)
    serf.user_event("e", b"p", False, 0.0)
    state = wire.decode_serf(serf.local_state(False))
    assert isinstance(state, SerfPushPull)
    assert state.left_members == ("b",)
    assert state.status_ltimes == {"a": 0, "b": 5, "me": 0}
    assert len(state.events) == 512 and state.events[1].events[0].name == "e"
    assert (state.ltime, state.event_ltime, state.query_ltime) == (6, 2, 1)


def test_merge_remote_state_rules() -> None:
    """Merging witnesses clocks minus one, applies left then join LTimes, and events."""
    serf, _ = with_peers("a", "b")
    remote = SerfPushPull(ltime=20, status_ltimes={"a": 7, "b": 4, "z": 3},
                          left_members=("b",), event_ltime=9,
                          events=(None,) * 5 + (SerfUserEvents(5, (SerfUserEventEntry("ev", b"x"),)),),
                          query_ltime=30)
    serf.merge_remote_state(wire.encode_serf(remote), False, 1.0)
    assert serf.take_outputs() == [UserEventReceived("ev", b"x", 5, False)]
    assert (serf.clock.time(), serf.event_clock.time(), serf.query_clock.time()) == (20, 9, 30)
    assert serf.members["b"].status == MemberStatus.LEAVING
    assert serf.members["b"].status_ltime == 5
    assert serf.members["a"].status_ltime == 7
    assert serf.recent_intents["z"].ltime == 3


def test_push_pull_with_a_newer_status_about_us_is_refuted() -> None:
    """A peer force-left us and push/pulls before its intent's gossip copy reaches us.

    Its state carries our status LTime as the leave's (not in left members). We take it
    (as Serf does) and so would ignore the intent's copy when it arrives; without a
    refutation the peer would keep us "leaving" for good. So a join intent with a newer
    LTime goes out at once.
    """
    serf, _ = with_peers("a")
    serf.broadcast_join(0.0)
    own = serf.members["me"].status_ltime
    drain_queue(serf)
    remote = SerfPushPull(ltime=own + 3, status_ltimes={"a": 0, "me": own + 2}, left_members=(),
                          event_ltime=1, events=(), query_ltime=1)
    serf.merge_remote_state(wire.encode_serf(remote), False, 1.0)
    refute = [wire.decode_serf(m) for m in queued(serf)]
    assert refute == [SerfJoin(own + 3, "me")], refute
    drain_queue(serf)
    # The intent's copy arriving afterwards is old news, and needs no second answer.
    serf.notify_user_msg(wire.encode_serf(SerfLeave(own + 2, "me")), ME, 1.1)
    assert queued(serf) == [] and serf.members["me"].status == MemberStatus.ALIVE
    # Our own status LTime coming back, or an older one, is no reason to refute.
    for ltime in (own + 3, own):
        same = SerfPushPull(ltime=own + 4, status_ltimes={"me": ltime}, left_members=(),
                            event_ltime=1, events=(), query_ltime=1)
        serf.merge_remote_state(wire.encode_serf(same), False, 1.2)
        assert queued(serf) == []


def test_join_push_pull_ignores_old_events() -> None:
    """During a join that ignores old events, the remote event clock becomes the minimum."""
    serf, _ = make()
    donor, _ = make("donor")
    donor.user_event("old", b"", False, 0.0)
    state = donor.local_state(True)
    serf.join_started(True)
    serf.merge_remote_state(state, True, 1.0)
    assert serf.event_min_time == 2 and serf.take_outputs() == []
    serf.join_finished(1, True, 1.0)
    replay, _ = make("replay")
    replay.merge_remote_state(state, True, 1.0)
    assert [o.name for o in replay.take_outputs()] == ["old"]


def test_bad_serf_messages_are_counted_and_dropped() -> None:
    """Undecodable Serf bytes and push/pull states are counted, never raised."""
    serf, _ = make()
    for raw in (b"\x03\xff", b"\x63", b"\x00\x93\x01"):
        serf.notify_user_msg(raw, ME, 1.0)
    serf.merge_remote_state(b"\x02\xc1", False, 1.0)
    serf.merge_remote_state(wire.encode_serf(SerfJoin(1, "x")), False, 1.0)
    assert serf._counters.get("dropped.serf_decode") == 5
    assert serf.take_outputs() == []


def test_notify_update_refreshes_tags() -> None:
    """A meta change reported by memberlist updates the member's tags."""
    serf, _ = with_peers("a")
    serf.notify_update(node("a", "10.0.0.2", meta=wire.encode_tags({"role": "new"})), 1.0)
    [update] = serf.take_outputs()
    assert isinstance(update, MemberUpdated) and update.member.tags == {"role": "new"}


# --------------------------------------------------------------------------- captured traffic

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "serf-0.9.4"


def vector_user_payloads(scenario: str, n: int) -> list[bytes]:
    """The Serf messages (type 8 stripped) inside captured UDP packet ``n``."""
    for line in (VECTORS / f"{scenario}.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["n"] == n:
            contents = wire.decode_packet(bytes.fromhex(record["hex"]))
            return [m.payload for m in contents.messages if isinstance(m, UserMsg)]
    raise LookupError(f"{scenario} n={n}")


def test_captured_query_ack_and_relay_are_byte_identical() -> None:
    """Fed serf's query n=92, node b acks (n=93) and relays (n=94) with serf's exact bytes."""
    serf, ml = make("b")
    serf.notify_join(node("a", "127.0.0.1", 17946), 0.0)
    serf.notify_join(node("c", "127.0.0.1", 17948), 0.0)
    [query] = vector_user_payloads("query", 92)
    serf.notify_user_msg(query, ("127.0.0.1", 17946), 1.0)
    [ack] = vector_user_payloads("query", 93)
    [relay] = vector_user_payloads("query", 94)
    assert ml.sent[0] == (("127.0.0.1", 17946), ack)
    assert ml.sent[1][1] == relay and len(ml.sent) == 2
    assert serf.queries.record(2, 1148928581) is False  # recorded as seen


def test_captured_user_event_is_delivered() -> None:
    """serf's captured user event n=50 is delivered with its name, payload and LTime."""
    serf, _ = make("b")
    [event] = vector_user_payloads("user-event", 50)
    serf.notify_user_msg(event, ("127.0.0.1", 17946), 1.0)
    [received] = serf.take_outputs()
    assert (received.name, received.payload, received.ltime) == ("deploy", b"v1.2.3", 1)
    assert serf.event_queue.messages() == [event]


def test_captured_conflict_response_counts_against_newcomer() -> None:
    """The conflict answer serf sent (n=58) names the original b, so our vote is lost."""
    serf, ml = make("b", config=GossipConfig.lan())
    ml.local = lambda: node("b", "127.0.0.1", 17950)  # type: ignore[method-assign]
    serf.notify_conflict(node("b", "127.0.0.1", 17950), node("b", "127.0.0.1", 17947), 1.0)
    [q] = [wire.decode_serf(m) for m in queued(serf)]
    [raw] = vector_user_payloads("name-conflict", 58)
    captured = wire.decode_serf(raw)
    # re-address serf's answer to our query (its LTime/ID were those of the capture)
    answer = SerfQueryResponse(q.ltime, q.id, captured.from_, captured.flags, captured.payload)
    serf.notify_user_msg(wire.encode_serf(answer), ("127.0.0.1", 17948), 1.5)
    serf.handle_timers(1.0 + q.timeout_ns / 1e9)
    assert serf.take_outputs() == [ShutdownRequested("name conflict")]
