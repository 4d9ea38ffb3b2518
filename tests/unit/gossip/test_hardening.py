"""Hostile or unlucky inputs to the gossip cores: extreme integers, stalls, floods."""

from __future__ import annotations

import logging
import random

import pytest

from gossip import GossipConfig, GossipCore, wire
from gossip.events import CloseStream, OpenStream, QueryReceived, SendPacket, WriteStream
from gossip.lamport import MAX_LTIME, LamportClock
from gossip.memberlist import MAX_INCARNATION, MAX_RELAYS, MIN_COMPRESS_BYTES
from gossip.messages import (Ack, Alive, Dead, IndirectPing, MessageType, NodeState, PushPull,
                             SerfJoin, SerfLeave, SerfPushPull, SerfQuery, SerfQueryResponse,
                             SerfUserEvent, Suspect, UserMsg)
from gossip.query import MAX_QUERY_RETAIN_SECONDS, MAX_SLOT_ITEMS, max_query_replies
from gossip.serf import MAX_RECENT_INTENTS
from gossip.streams import MAX_INCOMING_STREAMS

U64, U32 = 2**64 - 1, 2**32 - 1
VSN = bytes([1, 5, 2, 2, 5, 5])
PEERS = {"b": ("127.0.0.2", 7946), "c": ("127.0.0.3", 7946), "d": ("127.0.0.4", 7946)}
PEER = PEERS["b"]


def make_core(peers: tuple[str, ...] = ("b",), config: GossipConfig | None = None) -> GossipCore:
    """Node "a" at 127.0.0.1:7946 that already knows ``peers`` as alive."""
    core = GossipCore(config or GossipConfig.lan(), name="a", addr="127.0.0.1", port=7946, tags={"r": "x"},
                      keyring=None, rng=random.Random(1), entropy=random.Random(1).randbytes,
                      log=logging.LoggerAdapter(logging.getLogger("test.hardening"), {}),
                      now=0.0)
    for name in peers:
        ip, port = PEERS[name]
        alive = Alive(1, name, bytes(int(x) for x in ip.split(".")), port,
                      wire.encode_tags({"r": "y"}), VSN)
        core.receive_packet(wire.encode(alive), PEERS[name], now=0.1)
    core.take_outputs()
    return core


def serf_packet(msg) -> bytes:
    return bytes([MessageType.USER]) + wire.encode_serf(msg)


def check_outputs(core: GossipCore) -> list:
    """Drain outputs and decode each packet and stream as a Go peer would (strict ranges)."""
    outputs = core.take_outputs()
    for out in outputs:
        if isinstance(out, SendPacket):
            for message in wire.decode_packet(out.data).messages:
                if isinstance(message, UserMsg):
                    wire.decode_serf(message.payload)
        elif isinstance(out, (OpenStream, WriteStream)):
            message = wire.StreamReader(None).feed(out.data)
            if isinstance(message, PushPull) and message.user_state:
                wire.decode_serf(message.user_state)
    return outputs


def serve_push_pull(core: GossipCore, now: float, user_state: bytes = b"") -> None:
    """A peer opens a push/pull stream to ``core``."""
    stream_id = core.accept_stream(("127.0.0.9", 5555), now=now)
    message = wire.encode(PushPull(False, (), user_state))
    core.stream_data(stream_id, wire.encode_stream(message, keyring=None, compress=False), now=now)


def exercise(core: GossipCore, start: float) -> None:
    """Timers, a served push/pull, an event, a query and a leave; every output must decode."""
    for t in (0.5, 1.0, 4.0, 30.0, 40.0, 100.0):
        core.handle_timers(start + t)
        check_outputs(core)
    serve_push_pull(core, start + 101.0)
    core.user_event("x", b"y", False, now=start + 102.0)
    core.query("q", b"", now=start + 103.0)
    check_outputs(core)
    core.leave(now=start + 104.0)
    core.handle_timers(start + 120.0)
    check_outputs(core)


def test_lamport_clock_saturates_at_the_wire_maximum():
    """witness and increment stop at 2^64-1 instead of overflowing the uint64 field."""
    clock = LamportClock(5)
    clock.witness(U64)
    assert clock.time() == MAX_LTIME == U64
    assert clock.increment() == U64
    clock.witness(U64 - 1)
    assert clock.time() == U64


HOSTILE_SERF = {
    "leave about us": SerfLeave(ltime=U64, node="a"),
    "leave about an unknown name": SerfLeave(ltime=U64, node="zz"),
    "join about a peer": SerfJoin(ltime=U64, node="b"),
    "user event": SerfUserEvent(ltime=U64, name="e", payload=b"", cc=False),
    "query": SerfQuery(ltime=U64, id=1, addr=bytes([127, 0, 0, 2]), port=7946, source_node="b",
                       filters=(), flags=1, relay_factor=0, timeout_ns=10**9, name="q",
                       payload=b""),
}


@pytest.mark.parametrize("label", sorted(HOSTILE_SERF))
def test_max_ltime_from_a_peer_does_not_break_the_node(label):
    """An LTime of 2^64-1 saturates the clock; timers, push/pull, events, queries, leave work."""
    core = make_core()
    core.receive_packet(serf_packet(HOSTILE_SERF[label]), PEER, now=1.0)
    check_outputs(core)
    exercise(core, 1.0)
    serf = core.serf
    assert max(serf.clock.time(), serf.event_clock.time(), serf.query_clock.time()) <= U64
    assert core.has_left


def test_max_ltimes_in_a_push_pull_state_do_not_break_the_node():
    """A Serf push/pull state full of 2^64-1 (a left member too, which Serf bumps by one)."""
    core = make_core()
    state = SerfPushPull(ltime=U64, status_ltimes={"zz": U64, "b": U64}, left_members=("zz",),
                         event_ltime=U64, events=(), query_ltime=U64)
    serve_push_pull(core, 1.0, wire.encode_serf(state))
    check_outputs(core)
    assert core.serf.recent_intents["zz"].ltime == U64
    exercise(core, 1.0)


@pytest.mark.parametrize("kind", [Suspect, Dead])
def test_accusation_at_max_incarnation_is_refuted_within_uint32(kind):
    """A suspect/dead about us at incarnation 0xFFFFFFFF: we refute with 0xFFFFFFFF, not 2^32."""
    core = make_core()
    core.receive_packet(wire.encode(kind(U32, "a", "b")), PEER, now=1.0)
    assert core.memberlist.incarnation == MAX_INCARNATION == U32
    check_outputs(core)
    core.set_tags({"r": "z"}, now=2.0)  # raises the incarnation again: still saturated
    assert core.memberlist.incarnation == U32
    exercise(core, 2.0)


# ---------------------------------------------------------------- probe after a stall


def start_probe(core: GossipCore) -> tuple[float, object]:
    """Run timers until a probe is in flight; returns (time, probe)."""
    t = 0.1
    while core.memberlist._probe is None:
        t = core.next_deadline()
        core.handle_timers(t)
        core.take_outputs()
    return t, core.memberlist._probe


def test_stalled_timers_leave_the_indirect_phase_its_time():
    """handle_timers 1.2 s after the ping starts the indirect phase but does not end the probe;
    the target's ack, read afterwards, keeps it alive."""
    core = make_core(("b", "c", "d"))
    t, probe = start_probe(core)
    core.handle_timers(t + 1.2)
    outputs = core.take_outputs()
    assert core.memberlist._probe is probe and probe.indirect_sent
    assert probe.deadline >= t + 1.2 + probe.interval - core.config.probe_timeout
    assert any(isinstance(o, OpenStream) for o in outputs)  # the TCP fallback went out
    assert core.memberlist.node(probe.target).state == NodeState.ALIVE
    core.receive_packet(wire.encode(Ack(probe.seq, None)), probe.address, now=t + 1.21)
    assert core.memberlist._probe is None
    core.handle_timers(t + 3.0)
    assert core.memberlist.node(probe.target).state == NodeState.ALIVE
    assert core.stats().counters.get("probe_failures", 0) == 0


def test_stalled_probe_without_answer_fails_only_after_the_indirect_wait():
    """No answer at all: the probe fails interval - probe_timeout after the late indirect phase."""
    core = make_core(("b", "c", "d"))
    t, probe = start_probe(core)
    stall = t + 1.2
    core.handle_timers(stall)
    wait = probe.interval - core.config.probe_timeout
    core.handle_timers(stall + wait - 0.01)
    assert core.memberlist.node(probe.target).state == NodeState.ALIVE
    core.handle_timers(stall + wait)
    assert core.memberlist.node(probe.target).state == NodeState.SUSPECT


# ---------------------------------------------------------------- serf drop counters


def event(ltime: int, name: str = "e") -> bytes:
    return serf_packet(SerfUserEvent(ltime=ltime, name=name, payload=b"p", cc=False))


def query(ltime: int, qid: int = 7, timeout_ns: int = 10**9, flags: int = 0) -> bytes:
    return serf_packet(SerfQuery(ltime=ltime, id=qid, addr=bytes([127, 0, 0, 2]), port=7946,
                                 source_node="b", filters=(), flags=flags, relay_factor=0,
                                 timeout_ns=timeout_ns, name="q", payload=b""))


def test_dropped_user_events_are_counted_by_reason():
    """Duplicate, too old (outside the 512 window) and below the join minimum each count."""
    core = make_core()
    counters = core.stats
    core.receive_packet(event(10), PEER, now=1.0)
    core.receive_packet(event(10), PEER, now=1.0)
    assert counters().counters["dropped.event_duplicate"] == 1
    core.receive_packet(event(2000, "late"), PEER, now=1.0)
    core.receive_packet(event(20), PEER, now=1.0)
    assert counters().counters["dropped.event_too_old"] == 1
    core.serf.event_min_time = 3000
    core.receive_packet(event(2500), PEER, now=1.0)
    assert counters().counters["dropped.event_before_min_time"] == 1


def test_dropped_queries_are_counted_by_reason():
    """The same three reasons for queries."""
    core = make_core()
    counters = core.stats
    core.receive_packet(query(10), PEER, now=1.0)
    core.receive_packet(query(10), PEER, now=1.0)
    assert counters().counters["dropped.query_duplicate"] == 1
    core.receive_packet(query(2000), PEER, now=1.0)
    core.receive_packet(query(20), PEER, now=1.0)
    assert counters().counters["dropped.query_too_old"] == 1
    core.serf.query_min_time = 3000
    core.receive_packet(query(2500), PEER, now=1.0)
    assert counters().counters["dropped.query_before_min_time"] == 1


# ---------------------------------------------------------------- compression threshold


def test_only_packets_of_256_bytes_or_more_are_compressed():
    """With compress_udp, a compressible 100-byte packet goes out plain; a 400-byte one compressed."""
    core = make_core(config=GossipConfig.lan(compress_udp=True))
    core.memberlist.send_user(PEER, b"x" * 100)
    core.memberlist.send_user(PEER, b"x" * 400)
    small, large = [o.data for o in core.memberlist.take_outputs() if isinstance(o, SendPacket)]
    assert small[0] == MessageType.USER and len(small) < MIN_COMPRESS_BYTES
    assert large[0] == MessageType.COMPRESS
    assert wire.decode_packet(large).messages[0].payload == b"x" * 400


def test_datagrams_are_not_compressed_by_default():
    """By default no datagram is compressed, however compressible; streams still are."""
    core = make_core()
    core.memberlist.send_user(PEER, b"x" * 1000)
    (packet,) = [o.data for o in core.memberlist.take_outputs() if isinstance(o, SendPacket)]
    assert packet[0] == MessageType.USER and len(packet) == 1001
    core.join([PEER], now=1.0)
    opens = [o for o in core.take_outputs() if isinstance(o, OpenStream)]
    assert opens and opens[0].data[0] == MessageType.COMPRESS


# ---------------------------------------------------------------- bounded state


def test_incoming_query_state_is_kept_at_most_five_minutes():
    """A query with Timeout ~292 years is answerable (and remembered) for 300 s only."""
    core = make_core()
    core.receive_packet(query(10, timeout_ns=2**63 - 1), PEER, now=1.0)
    received = [o for o in core.take_outputs() if isinstance(o, QueryReceived)]
    assert received and received[0].deadline == 1.0 + MAX_QUERY_RETAIN_SECONDS
    assert core.next_deadline() <= 1.0 + MAX_QUERY_RETAIN_SECONDS
    core.handle_timers(1.0 + MAX_QUERY_RETAIN_SECONDS)
    assert core.serf._incoming == {}


def test_one_ltime_keeps_a_bounded_number_of_query_ids():
    """Distinct query ids at one LTime fill a ring slot up to MAX_SLOT_ITEMS, then are dropped."""
    core = make_core()
    for qid in range(MAX_SLOT_ITEMS + 3):
        core.receive_packet(query(10, qid=qid), PEER, now=1.0)
    assert core.stats().counters["dropped.query_slot_full"] == 3
    assert len(core.serf.queries.slots[10].items) == MAX_SLOT_ITEMS


def test_intents_about_unknown_names_are_bounded():
    """Past MAX_RECENT_INTENTS names, the least recently updated intent is forgotten."""
    core = make_core()
    for i in range(MAX_RECENT_INTENTS + 1):
        core.serf._upsert_intent(f"ghost{i}", SerfLeave.TYPE, 5, now=1.0)
    assert len(core.serf.recent_intents) == MAX_RECENT_INTENTS
    assert "ghost0" not in core.serf.recent_intents
    assert core.stats().counters["dropped.intent_evicted"] == 1


def test_indirect_ping_relays_are_bounded():
    """A flood of indirect-ping requests runs at most MAX_RELAYS relays at once."""
    core = make_core()
    for seq in range(MAX_RELAYS + 2):
        request = IndirectPing(seq, bytes([127, 0, 0, 3]), 7946, "c", True, b"", 0, "b")
        core.receive_packet(wire.encode(request), PEER, now=1.0)
    assert len(core.memberlist._relays) == MAX_RELAYS
    assert core.stats().counters["dropped.too_many_relays"] == 2


def test_replies_to_our_query_from_invented_senders_are_bounded():
    """Acks and answers from more distinct names than members can explain are dropped."""
    core = make_core()
    core.query("q", b"", now=1.0)
    (outgoing,) = core.serf._outgoing.values()
    cap = 2 * max_query_replies(len(core.serf.members))
    for i in range(cap + 5):
        response = SerfQueryResponse(ltime=outgoing.ltime, id=outgoing.id, from_=f"n{i}",
                                     flags=0, payload=b"r")
        core.receive_packet(serf_packet(response), PEER, now=1.1)
    assert len(outgoing.responses) == cap
    assert core.stats().counters["dropped.query_reply_overflow"] == 5


def test_incoming_streams_are_capped():
    """The 129th concurrent incoming stream is closed at once and counted; closing frees a slot."""
    core = make_core()
    ids = [core.accept_stream(("127.0.0.9", 6000 + i), now=1.0)
           for i in range(MAX_INCOMING_STREAMS)]
    assert not core.take_outputs()
    refused = core.accept_stream(("127.0.0.9", 7000), now=1.0)
    assert core.take_outputs() == [CloseStream(refused)]
    assert core.stats().counters["dropped.too_many_streams"] == 1
    core.stream_data(refused, b"\x00", now=1.0)  # ignored: no record
    core.stream_failed(ids[0], "reset", now=1.0)
    accepted = core.accept_stream(("127.0.0.9", 7001), now=1.0)
    assert core.take_outputs() == []
    serve_push_pull_on(core, accepted)
    assert any(isinstance(o, WriteStream) and o.stream_id == accepted
               for o in core.take_outputs())


def serve_push_pull_on(core: GossipCore, stream_id: int) -> None:
    message = wire.encode(PushPull(False, (), b""))
    core.stream_data(stream_id, wire.encode_stream(message, keyring=None, compress=False),
                     now=1.0)
