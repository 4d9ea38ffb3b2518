"""StreamReader: every envelope and body layout, incremental parsing, and each refusal reason."""

from __future__ import annotations

import msgpack
import pytest

from gossip import lzw, wire
from gossip.errors import RemoteProtocolError
from gossip.keyring import Keyring
from gossip.messages import Ack, Alive, ErrResp, Ping, PushNodeState, PushPull, UserMsg

KEY = bytes(range(16))
OTHER_KEY = bytes(range(32, 64))
PING = Ping(seq_no=7, node="a", source_addr=b"\x7f\x00\x00\x01", source_port=17950, source_node="py")


def counter_entropy(count: int) -> bytes:
    """Deterministic nonces (the content does not matter to these tests)."""
    return bytes(count)


def keyring(*keys: bytes) -> Keyring:
    return Keyring(list(keys or (KEY,)), counter_entropy)


def push_pull(nodes: int = 3, user_state: bytes = b"\x02\x80") -> PushPull:
    states = tuple(PushNodeState(name=f"n{i}", addr=bytes([127, 0, 0, i + 1]), port=7946 + i,
                                 meta=b"\xff\x81\xa4role\xa2db", incarnation=i + 1, state=i % 4,
                                 vsn=bytes([1, 5, 2, 2, 5, 5])) for i in range(nodes))
    return PushPull(join=True, nodes=states, user_state=user_state)


def read_all(data: bytes, ring: Keyring | None = None, chunk: int = 1, **kwargs):
    """Feed ``data`` in chunks; check nothing appears before the last byte; return the message."""
    reader = wire.StreamReader(ring, **kwargs)
    results = [reader.feed(data[i:i + chunk]) for i in range(0, len(data), chunk)]
    assert all(result is None for result in results[:-1])
    reader.eof()
    return results[-1]


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("encrypt", [False, True])
@pytest.mark.parametrize("message", [PING, Ack(seq_no=9), Ack(seq_no=1, payload=b"\x01x"),
                                     ErrResp(error="nope"), push_pull(), push_pull(0, b""),
                                     push_pull(40, b"\x02" + bytes(3000))], ids=repr)
def test_every_layout_round_trips_bytewise(message, encrypt: bool, compress: bool) -> None:
    """encode_stream then StreamReader fed byte by byte gives the message back, in all four envelopes."""
    ring = keyring() if encrypt else None
    data = wire.encode_stream(wire.encode(message), keyring=ring, compress=compress)
    assert (data[0] == 10) is encrypt
    assert read_all(data, ring) == message


def test_encrypted_stream_header_is_aad_and_length() -> None:
    """The envelope is [10][len u32][version 1|nonce|ct+tag] and the 5 header bytes are the AAD."""
    ring = keyring()
    data = wire.encode_stream(wire.encode(PING), keyring=ring, compress=True)
    length = int.from_bytes(data[1:5], "big")
    assert len(data) == 5 + length and data[5] == 1
    assert ring.decrypt(data[5:], aad=data[:5])[0] == 9  # compressed inside
    with pytest.raises(RemoteProtocolError):
        ring.decrypt(data[5:])  # without the header as AAD it does not authenticate


def test_push_pull_waits_for_the_user_state() -> None:
    """A push/pull is complete only once UserStateLen raw bytes after the node states arrived."""
    message = push_pull(2, b"\x02" + b"x" * 50)
    data = wire.encode(message)
    reader = wire.StreamReader(None)
    assert reader.feed(data[:-1]) is None
    assert reader.feed(data[-1:]) == message
    assert reader.feed(b"trailing bytes are ignored") is None


def test_user_message_over_stream() -> None:
    """[8][msgpack {UserMsgLen}][bytes] gives a UserMsg with exactly those bytes."""
    payload = b"\x03" + bytes(range(200))
    assert read_all(wire.encode_user_stream(payload), chunk=3) == UserMsg(payload)
    assert read_all(wire.encode_user_stream(b"")) == UserMsg(b"")


def test_plain_stream_to_encrypted_node_is_encryption_mismatch() -> None:
    """With a keyring, a stream whose first byte is not 10 is refused at that byte."""
    with pytest.raises(RemoteProtocolError) as error:
        wire.StreamReader(keyring()).feed(b"\x00")
    assert error.value.reason == "encryption_mismatch"


def test_encrypted_stream_to_plain_node_is_encryption_mismatch() -> None:
    """Without a keyring, a stream starting with 10 is refused."""
    data = wire.encode_stream(wire.encode(PING), keyring=keyring(), compress=False)
    with pytest.raises(RemoteProtocolError) as error:
        wire.StreamReader(None).feed(data)
    assert error.value.reason == "encryption_mismatch"


def test_unknown_key_is_decrypt_and_second_key_works() -> None:
    """A stream sealed with a key we lack fails with "decrypt"; any installed key opens it."""
    data = wire.encode_stream(wire.encode(PING), keyring=keyring(OTHER_KEY), compress=True)
    with pytest.raises(RemoteProtocolError) as error:
        read_all(data, keyring(KEY))
    assert error.value.reason == "decrypt"
    assert read_all(data, keyring(KEY, OTHER_KEY)) == PING


@pytest.mark.parametrize(("data", "field"), [
    (b"\x0a" + (101).to_bytes(4, "big"), "encrypted length"),
    (b"\x06" + msgpack.packb({"Join": False, "Nodes": 0, "UserStateLen": 101}), "UserStateLen"),
    (b"\x06" + msgpack.packb({"Join": False, "Nodes": 101, "UserStateLen": 0}), "Nodes"),
    (b"\x08" + msgpack.packb({"UserMsgLen": 101}), "UserMsgLen"),
    (b"\x00" + msgpack.packb({"Node": "x" * 200, "SeqNo": 1}), "stream length"),
])
def test_oversized_declared_lengths(data: bytes, field: str) -> None:
    """Declared lengths above max_bytes raise "oversized" before any of that data is awaited."""
    ring = keyring() if data[0] == 10 else None
    with pytest.raises(RemoteProtocolError) as error:
        wire.StreamReader(ring, max_bytes=100).feed(data)
    assert error.value.reason == "oversized", field


def test_eof_in_the_middle_is_truncated() -> None:
    """Closing before the message is complete raises "truncated"; closing before any byte or after the message does not."""
    data = wire.encode_stream(wire.encode(push_pull()), keyring=None, compress=True)
    reader = wire.StreamReader(None)
    reader.feed(data[:-3])
    with pytest.raises(RemoteProtocolError) as error:
        reader.eof()
    assert error.value.reason == "truncated"
    wire.StreamReader(None).eof()
    done = wire.StreamReader(None)
    assert done.feed(data) is not None
    done.eof()


@pytest.mark.parametrize(("data", "reason"), [
    (wire.encode(Alive(1, "a", b"\x7f\x00\x00\x01", 1, b"", b"\x01\x05\x02\x02\x05\x05")), "unknown_type"),
    (b"\xf4\x03abc", "unknown_type"),  # memberlist 0.3 label: not in 0.2.2
    (b"\x07\x00", "unknown_type"),  # compound is UDP only
    (b"\x09" + msgpack.packb({"Algo": 1, "Buf": lzw.compress(b"\x00\x80")}), "compress"),
    (b"\x09" + msgpack.packb({"Algo": 0, "Buf": b"\x00\x01"}), "compress"),
    (b"\x09" + msgpack.packb({"Algo": 0, "Buf": lzw.compress(wire.encode(PING)[:-2])}), "decode"),
    (b"\x09" + msgpack.packb({"Algo": 0, "Buf": lzw.compress(wire.compress_message(b"\x00\x80"))}),
     "unknown_type"),  # compress inside compress
    (b"\x00\x93\x01\x02\x03", "decode"),  # body is an array
    (b"\x00\x81\xa5SeqNo\xff", "decode"),  # negative SeqNo
    (b"\x00\x81\xa4Node\xa2\xff\xfe", "decode"),  # bad UTF-8
    (b"\x00\xc1", "decode"),  # reserved msgpack byte
])
def test_bad_streams_raise_with_reason(data: bytes, reason: str) -> None:
    """Each kind of bad stream raises RemoteProtocolError with its reason, and keeps raising it."""
    reader = wire.StreamReader(None)
    with pytest.raises(RemoteProtocolError) as error:
        reader.feed(data)
    assert error.value.reason == reason
    with pytest.raises(RemoteProtocolError) as again:
        reader.feed(b"\x00")
    assert again.value is error.value


def test_serf_always_compresses_even_when_longer() -> None:
    """encode_stream(compress=True) wraps even a tiny ack (18 bytes plain, 36 compressed in serf's capture)."""
    plain = wire.encode(Ack(seq_no=8))
    wrapped = wire.encode_stream(plain, keyring=None, compress=True)
    assert wrapped[0] == 9 and len(wrapped) > len(plain)
    assert wire.encode_stream(plain, keyring=None, compress=False) == plain
