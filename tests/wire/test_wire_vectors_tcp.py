"""Every captured TCP stream parses incrementally through StreamReader and matches its annotation."""

from __future__ import annotations

import pytest

from gossip import wire
from gossip.errors import RemoteProtocolError
from gossip.keyring import Keyring
from wire_vectors import (KEYS, annotation, encryption_key, inner_message, keyring_for, leaf_annotations,
                          leaf_mismatches, find_line, line_id, reencode_mismatches, stream_plaintext, tcp_lines)

# The test client's deliberately broken "encrypted" stream is checked on its own below.
TCP = [line for line in tcp_lines() if line["summary"] != "encrypt()"]
BROKEN = [line for line in tcp_lines() if line["summary"] == "encrypt()"]


def test_tcp_vectors_are_present() -> None:
    """There are plaintext and encrypted, serf and prototype streams to test."""
    assert len(TCP) > 60
    assert any(keyring_for(line) for line in TCP)
    assert {line["origin"] for line in TCP} == {"serf", "python-prototype", "test-client"}


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20], ids=["bytewise", "chunk7", "whole"])
@pytest.mark.parametrize("line", TCP, ids=line_id)
def test_tcp_line_parses_incrementally(line: dict, chunk: int) -> None:
    """The message appears exactly when its last byte is fed, whatever the chunking."""
    data = bytes.fromhex(line["hex"])
    reader = wire.StreamReader(keyring_for(line))
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    results = [reader.feed(piece) for piece in pieces]
    assert results[:-1] == [None] * (len(pieces) - 1)
    assert results[-1] is not None
    assert reader.feed(b"") is None  # nothing more after the one message
    reader.eof()
    plain = stream_plaintext(line)
    assert results[-1] == wire.decode(inner_message(plain))


@pytest.mark.parametrize("line", TCP, ids=line_id)
def test_tcp_line_matches_annotation_and_reencodes(line: dict) -> None:
    """Decrypted bytes equal plaintext_hex (AAD = header); fields match; bodies re-encode identically."""
    plain = stream_plaintext(line)
    note = annotation(line)
    message_bytes = inner_message(plain)
    message = wire.decode(message_bytes)
    if note is not None:
        if "plaintext_hex" in note:
            assert plain.hex() == note["plaintext_hex"]
            assert note["aad_hex"] == line["hex"][:10]
        (leaf,) = leaf_annotations(note)
        assert leaf_mismatches(message_bytes, message, leaf) == []
    if line["origin"] != "test-client":  # the test client wrote its ping with unsorted keys
        assert reencode_mismatches(message_bytes) == []


@pytest.mark.parametrize("line", [line for line in TCP if line["origin"] == "serf"], ids=line_id)
def test_encode_stream_reproduces_serf_stream(line: dict) -> None:
    """encode_stream(compress=True, keyring with the recorded nonce) gives serf's exact stream bytes."""
    message = inner_message(stream_plaintext(line))
    key = encryption_key(line)
    keyring = None
    if key is not None:
        nonce = bytes.fromhex(line["hex"])[6:18]  # [10][len u32][version][nonce 12]...
        keyring = Keyring([KEYS[key]], lambda count: nonce)
    assert wire.encode_stream(message, keyring=keyring, compress=True).hex() == line["hex"]


@pytest.mark.parametrize("line", BROKEN, ids=line_id)
def test_broken_encrypted_stream_is_refused(line: dict) -> None:
    """The test client's 5-byte 'encrypted' stream is a mismatch for a plaintext node and undecryptable for an encrypted one."""
    data = bytes.fromhex(line["hex"])
    with pytest.raises(RemoteProtocolError) as plain_node:
        wire.StreamReader(None).feed(data)
    assert plain_node.value.reason == "encryption_mismatch"
    with pytest.raises(RemoteProtocolError) as encrypted_node:
        wire.StreamReader(keyring_for(find_line("join-encrypted", 1))).feed(data)
    assert encrypted_node.value.reason == "decrypt"


def test_plain_stream_to_encrypted_node_is_a_mismatch() -> None:
    """stream-error n=1: a plaintext ping sent to an encrypted agent is refused as encryption_mismatch."""
    (line,) = [line for line in TCP if line["scenario"] == "stream-error" and line["n"] == 1]
    reader = wire.StreamReader(keyring_for(find_line("join-encrypted", 1)))
    with pytest.raises(RemoteProtocolError) as error:
        reader.feed(bytes.fromhex(line["hex"]))
    assert error.value.reason == "encryption_mismatch"
