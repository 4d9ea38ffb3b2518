"""Packet layer (compound, CRC, compress) and the msgpack typing rules of spec section 1."""

from __future__ import annotations

import msgpack
import pytest

from gossip import lzw, wire
from gossip.errors import LocalProtocolError, RemoteProtocolError
from gossip.messages import Ack, Dead, IndirectPing, Nack, Ping, SerfLeave, Suspect, UserMsg

PING = Ping(seq_no=1, node="a", source_addr=b"\x7f\x00\x00\x01", source_port=17947, source_node="b")
SUSPECT = Suspect(incarnation=1, node="c", from_="a")


def test_ping_bytes_match_spec_example() -> None:
    """join-plain n=13: ping{Node a, SeqNo 1, SourceAddr, SourceNode b, SourcePort 17947}."""
    assert wire.encode(PING).hex() == (
        "0085a44e6f6465a161a55365714e6f01aa536f7572636541646472a47f000001"
        "aa536f757263654e6f6465a162aa536f75726365506f7274cd461b")


def test_source_fields_are_omitempty() -> None:
    """Ping and indirect ping leave out empty Source* keys, as go-msgpack's omitempty does."""
    assert msgpack.unpackb(wire.encode(Ping(seq_no=3, node="x"))[1:]) == {"Node": "x", "SeqNo": 3}
    body = msgpack.unpackb(wire.encode(IndirectPing(seq_no=1, target=b"\x01\x02\x03\x04", port=9, node="t"))[1:])
    assert list(body) == ["Nack", "Node", "Port", "SeqNo", "Target"]


def test_nack_bytes_match_spec_example() -> None:
    """kill-failure n=72: nack{SeqNo 6} is 0b 81 a5"SeqNo" 06."""
    assert wire.encode(Nack(seq_no=6)) == b"\x0b\x81\xa5SeqNo\x06"


def test_nested_layers_decode() -> None:
    """crc(compress(compound[ping, suspect, user])) decodes to the three messages in order."""
    parts = [wire.encode(PING), wire.encode(SUSPECT), b"\x08" + wire.encode_serf(SerfLeave(3, "c"))]
    packet = wire.add_crc(wire.compress_message(wire.make_compound(parts)))
    contents = wire.decode_packet(packet)
    assert contents.messages == [PING, SUSPECT, UserMsg(parts[2][1:])]
    assert contents.had_crc and contents.truncated == 0


def test_short_compound_keeps_complete_parts() -> None:
    """A compound cut short keeps its whole parts and counts the rest as truncated."""
    packet = wire.make_compound([wire.encode(PING), wire.encode(SUSPECT), wire.encode(Nack(2))])
    contents = wire.decode_packet(packet[:-12])
    assert contents.messages == [PING]
    assert contents.truncated == 2


def test_bad_crc_is_refused() -> None:
    """A flipped bit after the CRC header raises reason "crc"."""
    packet = bytearray(wire.add_crc(wire.encode(PING)))
    packet[-1] ^= 1
    with pytest.raises(RemoteProtocolError) as error:
        wire.decode_packet(bytes(packet))
    assert error.value.reason == "crc"


@pytest.mark.parametrize(("packet", "reason"), [
    (b"", "truncated"),
    (b"\x07", "truncated"),
    (b"\x07\x02\x00\x01", "truncated"),
    (b"\x07\x01\x00\x00", "truncated"),  # a zero-length part
    (wire.make_compound([wire.add_crc(wire.encode(PING))]), "unknown_type"),  # CRC only at the top
    (b"\x06\x80", "unknown_type"),  # push/pull is stream only
    (b"\x0d\x81\xa5Error\xa1x", "unknown_type"),  # err is stream only
    (b"\x0c\x00\x00", "unknown_type"),  # too short to be a CRC wrapper
    (b"\xf4\x01x" + wire.encode(PING), "unknown_type"),  # labels are not in memberlist 0.2.2
    (b"\x09" + msgpack.packb({"Algo": 2, "Buf": b""}), "compress"),
    (b"\x09" + msgpack.packb({"Algo": 0, "Buf": lzw.compress(wire.encode(PING))[:-2]}), "compress"),
    (b"\x09" + msgpack.packb({"Algo": 0, "Buf": lzw.compress(bytes(2_000_000))}), "oversized"),
])
def test_bad_packets_raise_with_reason(packet: bytes, reason: str) -> None:
    """Each malformed packet raises RemoteProtocolError carrying the matching reason."""
    with pytest.raises(RemoteProtocolError) as error:
        wire.decode_packet(packet)
    assert error.value.reason == reason


def test_deep_nesting_is_refused() -> None:
    """Compounds nested past the limit raise instead of recursing without bound."""
    packet = wire.encode(PING)
    for _ in range(20):
        packet = wire.make_compound([packet])
    with pytest.raises(RemoteProtocolError):
        wire.decode_packet(packet)


def test_make_compound_limits_are_local_errors() -> None:
    """More than 255 parts or a part over 64 KiB is our mistake: LocalProtocolError."""
    with pytest.raises(LocalProtocolError):
        wire.make_compound([b"\x0b\x80"] * 256)
    with pytest.raises(LocalProtocolError):
        wire.make_compound([b"\x08" + bytes(70000)])


def body(**fields) -> bytes:
    return msgpack.packb(fields, use_bin_type=False)


def test_decode_follows_go_struct_rules() -> None:
    """Unknown keys are skipped, missing keys are zero, key order is free, trailing bytes are ignored."""
    data = b"\x03" + body(Zzz=[1, 2], Node="c", From="a") + b"junk"
    assert wire.decode(data) == Suspect(incarnation=0, node="c", from_="a")
    assert wire.decode(b"\x02" + body(SeqNo=5)) == Ack(seq_no=5, payload=None)
    assert wire.decode(b"\x02" + body(SeqNo=5, Payload=b"")) == Ack(seq_no=5, payload=b"")


def test_bool_fields_take_zero_and_one() -> None:
    """Go's bool decoder also accepts the integers 0 and 1, nothing else."""
    assert wire.decode_serf(b"\x00" + body(LTime=1, Node="n", Prune=1)).prune is True
    assert wire.decode_serf(b"\x00" + body(LTime=1, Node="n", Prune=0)).prune is False
    with pytest.raises(RemoteProtocolError):
        wire.decode_serf(b"\x00" + body(LTime=1, Node="n", Prune=2))


@pytest.mark.parametrize("data", [
    b"\x05" + body(Incarnation=-1, Node="n", From="n"),  # negative into unsigned
    b"\x05" + body(Incarnation=2**32, Node="n", From="n"),  # u32 overflow
    b"\x05" + body(Incarnation=True, Node="n", From="n"),  # bool into an integer
    b"\x05" + body(Incarnation=1.5, Node="n", From="n"),  # float into an integer
    b"\x05" + body(Incarnation=1, Node=5, From="n"),  # integer into a string
    b"\x05" + msgpack.packb({"Incarnation": 1, "Node": b"\xc3\x28"}, use_bin_type=True),  # bad UTF-8
    b"\x05" + msgpack.packb({1: 2}),  # non-string key
    b"\x05" + body(Incarnation=1, Node=["n"], From="n"),  # array into a string
    b"\x04" + body(Addr=1),  # integer into bytes
    b"\x04" + body(Port=70000),  # u16 overflow
    b"\x05",  # no body
    b"\x05\x81",  # truncated map
    b"\x0e\x80",  # unknown type
    b"\x09" + body(Algo=0, Buf=b""),  # wrappers are not single messages
])
def test_decode_refuses_badly_typed_bodies(data: bytes) -> None:
    """Wrong types, ranges, encodings and shapes raise RemoteProtocolError."""
    with pytest.raises(RemoteProtocolError):
        wire.decode(data)


def test_dead_from_self_round_trip() -> None:
    """leave n=61 shape: dead with From == Node re-encodes with sorted keys From, Incarnation, Node."""
    data = wire.encode(Dead(incarnation=1, node="c", from_="c"))
    assert data == b"\x05\x83\xa4From\xa1c\xabIncarnation\x01\xa4Node\xa1c"
    assert wire.decode(data) == Dead(incarnation=1, node="c", from_="c")
