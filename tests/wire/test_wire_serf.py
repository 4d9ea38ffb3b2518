"""Serf messages the spec singles out (section 8), decoded from the captures with explicit values."""

from __future__ import annotations

import msgpack
import pytest

from gossip import wire
from gossip.errors import RemoteProtocolError
from gossip.messages import (FILTER_NODE, FILTER_TAG, PushPull, SerfKeyRequest, SerfKeyResponse,
                             SerfMemberRecord, SerfPushPull, SerfQuery, SerfQueryResponse, SerfRelay,
                             SerfUserEvent, SerfUserEventEntry, SerfUserEvents, UserMsg)
from wire_vectors import find_line, inner_message, plaintext, stream_plaintext

LOCALHOST = bytes([127, 0, 0, 1])


def serf_messages(scenario: str, n: int) -> list:
    """The Serf messages inside the user messages of one captured datagram."""
    contents = wire.decode_packet(plaintext(find_line(scenario, n)))
    return [wire.decode_serf(m.payload) for m in contents.messages if isinstance(m, UserMsg)]


def test_query_with_node_filter_and_relay_factor() -> None:
    """query n=92: node filter ["b"], ack flag, relay factor 1, 3.2 s timeout in nanoseconds."""
    (query,) = serf_messages("query", 92)
    assert isinstance(query, SerfQuery)
    assert (query.name, query.payload, query.flags, query.relay_factor) == ("greet", b"only-b", 1, 1)
    assert (query.addr, query.port, query.source_node) == (LOCALHOST, 17946, "a")
    assert query.timeout_ns == 3_200_000_000
    assert [wire.decode_filter(raw) for raw in query.filters] == [(FILTER_NODE, ("b",))]
    assert query.filters == (wire.encode_filter_nodes(["b"]),)


def test_query_with_tag_filter_and_no_ack() -> None:
    """query n=135: a {Expr, Tag} tag filter, flags 0; encode_filter_tag rebuilds the same bytes."""
    (query,) = serf_messages("query", 135)
    assert query.flags == 0 and query.payload == b"web-only"
    assert [wire.decode_filter(raw) for raw in query.filters] == [(FILTER_TAG, ("role", "web"))]
    assert query.filters == (wire.encode_filter_tag("role", "web"),)


def test_relay_carries_header_and_the_direct_ack_bytes() -> None:
    """query n=94 relays b's ack via c; n=96 (c forwarding) equals the direct ack n=93 byte for byte."""
    (relay,) = serf_messages("query", 94)
    assert isinstance(relay, SerfRelay)
    assert (relay.dest_ip, relay.dest_port, relay.dest_zone, relay.dest_name) == (LOCALHOST, 17946, "", "a")
    ack = wire.decode_serf(relay.inner)
    assert ack == SerfQueryResponse(ltime=2, id=1148928581, from_="b", flags=1, payload=None)
    direct = plaintext(find_line("query", 93))
    forwarded = plaintext(find_line("query", 96))
    assert direct == forwarded == b"\x08" + relay.inner
    assert wire.encode_serf(relay) == wire.decode_packet(plaintext(find_line("query", 94))).messages[0].payload


def test_conflict_response_member_record() -> None:
    """name-conflict n=58: c answers _serf_conflict with its Member record for b, tags as a map."""
    (response,) = serf_messages("name-conflict", 58)
    record = wire.decode_serf(response.payload)
    assert record == SerfMemberRecord(
        name="b", addr=LOCALHOST, port=17947, tags={"role": "db"}, status=1, protocol_min=1,
        protocol_max=5, protocol_cur=2, delegate_min=2, delegate_max=5, delegate_cur=5)
    assert wire.encode_serf(record) == response.payload


def test_conflict_query_and_empty_tags_meta() -> None:
    """name-conflict n=56: the duplicate b asks _serf_conflict about itself; its meta ff80 is no tags."""
    messages = wire.decode_packet(plaintext(find_line("name-conflict", 56))).messages
    duplicate = [m for m in messages if getattr(m, "port", None) == 17949][0]
    assert wire.decode_tags(duplicate.meta) == {}
    query = wire.decode_serf(messages[-1].payload)
    assert (query.name, query.payload, query.filters) == ("_serf_conflict", b"b", ())


def test_key_request_and_list_response() -> None:
    """join-encrypted n=128 installs KEY2; n=102 lists KEY1 as the only and primary key."""
    (install,) = serf_messages("join-encrypted", 128)
    assert install.name == "_serf_install-key"
    assert wire.decode_serf(install.payload) == SerfKeyRequest(key=bytes(range(0x40, 0x50)))
    (listing,) = serf_messages("join-encrypted", 102)
    key1 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    assert wire.decode_serf(listing.payload) == SerfKeyResponse(
        result=True, message="", keys=(key1,), primary_key=key1)


def test_key_response_without_keys_encodes_nil_keys() -> None:
    """An install/use/remove answer has no key list: Keys is nil (0xc0), as Serf sends it."""
    body = wire.encode_serf(SerfKeyResponse(result=True, message=""))
    assert b"\xa4Keys\xc0" in body
    assert wire.decode_serf(body) == SerfKeyResponse(result=True, message="")


def test_user_events_with_and_without_payload() -> None:
    """user-event n=50 carries deploy/v1.2.3 coalescable; n=74 has a nil payload and CC=false."""
    assert serf_messages("user-event", 50) == [SerfUserEvent(ltime=1, name="deploy", payload=b"v1.2.3", cc=True)]
    assert serf_messages("user-event", 74) == [SerfUserEvent(ltime=2, name="restart", payload=None, cc=False)]


def test_serf_push_pull_has_512_event_slots() -> None:
    """join-plain n=1: the Serf user state of a join push/pull holds 512 nil event slots."""
    message = wire.decode(inner_message(stream_plaintext(find_line("join-plain", 1))))
    assert isinstance(message, PushPull) and message.join
    state = wire.decode_serf(message.user_state)
    assert isinstance(state, SerfPushPull)
    assert state.events == (None,) * 512
    assert (state.ltime, state.event_ltime, state.query_ltime) == (1, 1, 1)
    assert state.status_ltimes == {"b": 0} and state.left_members == ()
    assert wire.encode_serf(state) == message.user_state


def test_serf_push_pull_with_event_and_left_member() -> None:
    """python-interop n=186: one non-nil event slot at LTime 1 and a left member "py"."""
    message = wire.decode(inner_message(stream_plaintext(find_line("python-interop", 186))))
    state = wire.decode_serf(message.user_state)
    assert [slot for slot in state.events if slot is not None] == [
        SerfUserEvents(ltime=1, events=(SerfUserEventEntry(name="hello", payload=b"from-serf"),))]
    assert state.events[1] is not None  # slot = LTime mod 512
    assert state.left_members == ("py",)
    assert state.status_ltimes == {"a": 0, "b": 1, "py": 3}
    wire_order = msgpack.unpackb(message.user_state[1:], raw=True)[b"StatusLTimes"]
    assert list(state.status_ltimes) == [key.decode() for key in wire_order]  # Go map order kept


def test_legacy_role_only_meta() -> None:
    """protocol2-role n=3: agent a's meta is the bare role string "legacy"."""
    messages = wire.decode_packet(plaintext(find_line("protocol2-role", 3))).messages
    legacy = [m for m in messages if m.node == "a"][0]
    assert legacy.vsn == bytes([1, 5, 2, 2, 5, 2])
    assert wire.decode_tags(legacy.meta) == {"role": "legacy"}


@pytest.mark.parametrize("raw", [b"", b"\x02\x90", b"\x00\x81\xa1a\x01", b"\x01\x91\x01", b"\x00\x91\xa2\xff\xfe"])
def test_bad_filters_raise_remote_protocol_error(raw: bytes) -> None:
    """Empty, unknown-type, wrongly shaped or non-UTF-8 filters raise RemoteProtocolError."""
    with pytest.raises(RemoteProtocolError):
        wire.decode_filter(raw)


def test_tags_round_trip_in_dict_order() -> None:
    """encode_tags keeps the mapping's order; decode_tags gives the same dict back."""
    tags = {"role": "web", "dc": "east"}
    meta = wire.encode_tags(tags)
    assert meta == bytes.fromhex("ff82a4726f6c65a3776562a26463a465617374")  # join-encrypted n=3, node a
    assert list(wire.decode_tags(meta).items()) == list(tags.items())
