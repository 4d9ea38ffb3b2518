"""Hypothesis: every message type round-trips, and any bytes either decode or raise RemoteProtocolError."""

from __future__ import annotations

from typing import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip import lzw, wire
from gossip.errors import RemoteProtocolError
from gossip.keyring import Keyring
from gossip.messages import (Ack, Alive, Dead, ErrResp, IndirectPing, Nack, Ping, PushNodeState, PushPull,
                             SerfJoin, SerfKeyRequest, SerfKeyResponse, SerfLeave, SerfMemberRecord,
                             SerfPushPull, SerfQuery, SerfQueryResponse, SerfRelay, SerfUserEvent,
                             SerfUserEventEntry, SerfUserEvents, Suspect, UserMsg)
from wire_vectors import plaintext, stream_plaintext, tcp_lines, udp_lines

U8, U16, U32 = st.integers(0, 2**8 - 1), st.integers(0, 2**16 - 1), st.integers(0, 2**32 - 1)
U64, I64 = st.integers(0, 2**64 - 1), st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(max_size=12)
RAW = st.binary(max_size=24)
OPT_RAW = st.none() | RAW
KEYS = [bytes(range(16)), bytes(range(100, 132))]


def entropy(count: int) -> bytes:
    return b"\x5a" * count


RING = Keyring(KEYS, entropy)

PUSH_NODE = st.builds(PushNodeState, name=TEXT, addr=RAW, port=U16, meta=RAW, incarnation=U32,
                      state=I64, vsn=RAW)
PACKET_MESSAGES = st.one_of(
    st.builds(Ping, seq_no=U32, node=TEXT, source_addr=RAW, source_port=U16, source_node=TEXT),
    st.builds(IndirectPing, seq_no=U32, target=RAW, port=U16, node=TEXT, nack=st.booleans(),
              source_addr=RAW, source_port=U16, source_node=TEXT),
    st.builds(Ack, seq_no=U32, payload=OPT_RAW),
    st.builds(Nack, seq_no=U32),
    st.builds(Suspect, incarnation=U32, node=TEXT, from_=TEXT),
    st.builds(Dead, incarnation=U32, node=TEXT, from_=TEXT),
    st.builds(Alive, incarnation=U32, node=TEXT, addr=RAW, port=U16, meta=RAW, vsn=RAW),
    st.builds(UserMsg, payload=RAW),
)
STREAM_MESSAGES = st.one_of(
    st.builds(Ping, seq_no=U32, node=TEXT, source_addr=RAW, source_port=U16, source_node=TEXT),
    st.builds(Ack, seq_no=U32, payload=OPT_RAW),
    st.builds(ErrResp, error=TEXT),
    st.builds(PushPull, join=st.booleans(), nodes=st.lists(PUSH_NODE, max_size=4).map(tuple),
              user_state=RAW),
)
EVENT_SLOT = st.builds(SerfUserEvents, ltime=U64, events=st.lists(
    st.builds(SerfUserEventEntry, name=TEXT, payload=OPT_RAW), max_size=3).map(tuple))
SERF_MESSAGES = st.one_of(
    st.builds(SerfLeave, ltime=U64, node=TEXT, prune=st.booleans()),
    st.builds(SerfJoin, ltime=U64, node=TEXT),
    st.builds(SerfPushPull, ltime=U64, status_ltimes=st.dictionaries(TEXT, U64, max_size=4),
              left_members=st.lists(TEXT, max_size=3).map(tuple), event_ltime=U64,
              events=st.lists(st.none() | EVENT_SLOT, max_size=6).map(tuple), query_ltime=U64),
    st.builds(SerfUserEvent, ltime=U64, name=TEXT, payload=OPT_RAW, cc=st.booleans()),
    st.builds(SerfQuery, ltime=U64, id=U32, addr=RAW, port=U16, source_node=TEXT,
              filters=st.lists(RAW, max_size=3).map(tuple), flags=U32, relay_factor=U8,
              timeout_ns=I64, name=TEXT, payload=OPT_RAW),
    st.builds(SerfQueryResponse, ltime=U64, id=U32, from_=TEXT, flags=U32, payload=OPT_RAW),
    st.builds(SerfMemberRecord, name=TEXT, addr=RAW, port=U16, tags=st.dictionaries(TEXT, TEXT, max_size=4),
              status=I64, protocol_min=U8, protocol_max=U8, protocol_cur=U8, delegate_min=U8,
              delegate_max=U8, delegate_cur=U8),
    st.builds(SerfKeyRequest, key=RAW),
    st.builds(SerfKeyResponse, result=st.booleans(), message=TEXT, keys=st.lists(TEXT, max_size=3).map(tuple),
              primary_key=TEXT),
    st.builds(SerfRelay, dest_ip=RAW, dest_port=U16, dest_zone=TEXT, dest_name=TEXT, inner=RAW),
)


@given(PACKET_MESSAGES | STREAM_MESSAGES)
def test_memberlist_messages_round_trip(message) -> None:
    """decode(encode(m)) == m for every memberlist message type."""
    assert wire.decode(wire.encode(message)) == message


@given(SERF_MESSAGES)
def test_serf_messages_round_trip(message) -> None:
    """decode_serf(encode_serf(m)) == m for every Serf message type, relay included."""
    assert wire.decode_serf(wire.encode_serf(message)) == message


@given(st.lists(PACKET_MESSAGES, min_size=1, max_size=6), st.booleans(), st.booleans())
def test_packets_round_trip(messages, compress: bool, crc: bool) -> None:
    """A compound of messages, maybe compressed and CRC-wrapped, decodes to the same list."""
    packet = wire.make_compound([wire.encode(message) for message in messages])
    if compress:
        packet = wire.compress_message(packet)
    if crc:
        packet = wire.add_crc(packet)
    contents = wire.decode_packet(packet)
    assert contents.messages == messages and contents.had_crc is crc and contents.truncated == 0


@given(STREAM_MESSAGES, st.booleans(), st.booleans(), st.data())
def test_streams_round_trip_in_any_chunking(message, encrypt: bool, compress: bool, data) -> None:
    """encode_stream output fed to StreamReader in arbitrary chunks yields the message at the last byte."""
    ring = RING if encrypt else None
    stream = wire.encode_stream(wire.encode(message), keyring=ring, compress=compress)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=8)))
    reader = wire.StreamReader(ring)
    bounds = [0, *cuts, len(stream)]
    results = [reader.feed(stream[a:b]) for a, b in zip(bounds, bounds[1:])]
    assert results[-1] == message and all(r is None for r in results[:-1])


@given(st.dictionaries(TEXT, TEXT, max_size=6))
def test_tags_round_trip(tags) -> None:
    """decode_tags(encode_tags(t)) == t, in the same key order."""
    assert list(wire.decode_tags(wire.encode_tags(tags)).items()) == list(tags.items())


@given(st.lists(TEXT, max_size=4), TEXT, TEXT)
def test_filters_round_trip(names, tag, expr) -> None:
    """Node and tag filters decode to what was encoded."""
    assert wire.decode_filter(wire.encode_filter_nodes(names)) == (0, tuple(names))
    assert wire.decode_filter(wire.encode_filter_tag(tag, expr)) == (1, (tag, expr))


# ---------------------------------------------------------------------------
# Any bytes: decode or RemoteProtocolError, never anything else


def returns_or_remote_error(function: Callable[[bytes], object], data: bytes) -> None:
    try:
        function(data)
    except RemoteProtocolError as error:
        assert error.reason in {"decode", "crc", "compress", "decrypt", "unknown_type", "truncated",
                                "oversized", "encryption_mismatch"}, error.reason


def feed_in_two(ring: Keyring | None) -> Callable[[bytes], object]:
    def feed(data: bytes) -> object:
        reader = wire.StreamReader(ring, max_bytes=1 << 16)
        reader.feed(data[: len(data) // 2])
        reader.feed(data[len(data) // 2:])
        return reader.eof()
    return feed


DECODERS: list[Callable[[bytes], object]] = [
    wire.decode_packet, wire.decode, wire.decode_serf, wire.decode_tags, wire.decode_filter,
    feed_in_two(None), feed_in_two(RING), RING.decrypt, lzw.decompress,
]
SAMPLES = ([plaintext(line) for line in udp_lines()[::7]]
           + [stream_plaintext(line) for line in tcp_lines() if line["summary"] != "encrypt()"]
           + [bytes.fromhex(line["hex"]) for line in tcp_lines()[::5]])


@given(st.binary(max_size=400))
def test_random_bytes_decode_or_raise_remote_error(data: bytes) -> None:
    """Random bytes given to every decoder either return or raise RemoteProtocolError."""
    for function in DECODERS:
        returns_or_remote_error(function, data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
       st.integers(0, 10_000))
def test_mutated_captures_decode_or_raise_remote_error(sample: bytes, flips, cut: int) -> None:
    """Captured packets and streams with changed bytes and truncation never raise anything else."""
    data = bytearray(sample)
    for index, value in flips:
        data[index % len(data)] = value
    data = bytes(data[: max(1, cut % (len(data) + 1))])
    for function in DECODERS:
        returns_or_remote_error(function, data)
    inner = data[1:]  # also as the body/payload of a user message, a compress buffer and a blob
    for function in (wire.decode_serf, lzw.decompress, RING.decrypt):
        returns_or_remote_error(function, inner)


@given(st.binary(min_size=1, max_size=200), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)),
                                                     min_size=1, max_size=3))
def test_mutated_lzw_streams_decode_or_raise(data: bytes, flips) -> None:
    """A valid LZW stream with changed bytes decompresses to something or raises reason "compress"."""
    buf = bytearray(lzw.compress(data))
    for index, value in flips:
        buf[index % len(buf)] = value
    try:
        lzw.decompress(bytes(buf))
    except RemoteProtocolError as error:
        assert error.reason == "compress"


@given(st.integers(0, 1), st.binary(min_size=28, max_size=90), st.binary(max_size=8))
def test_blobs_with_plausible_header_raise_decrypt(version: int, rest: bytes, aad: bytes) -> None:
    """Blobs past the version/length checks still only raise RemoteProtocolError("decrypt")."""
    try:
        RING.decrypt(bytes([version]) + rest, aad=aad)
    except RemoteProtocolError as error:
        assert error.reason == "decrypt"
