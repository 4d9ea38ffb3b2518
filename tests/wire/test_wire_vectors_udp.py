"""Every captured datagram decodes, matches its annotation and re-encodes byte for byte."""

from __future__ import annotations

import pytest

from gossip import wire
from gossip.keyring import Keyring
from wire_vectors import (KEYS, annotation, encryption_key, leaf_annotations, leaf_mismatches, line_id,
                          plaintext, reencode_mismatches, udp_lines)

UDP = udp_lines()


def test_udp_vectors_are_present() -> None:
    """The capture files hold UDP lines, so the parametrized tests below cannot pass vacuously."""
    assert len(UDP) > 1000
    assert sum(1 for line in UDP if encryption_key(line)) > 100


@pytest.mark.parametrize("line", UDP, ids=line_id)
def test_udp_line_decodes_like_its_annotation(line: dict) -> None:
    """decode_packet (after decryption) yields the messages and fields the annotation lists."""
    plain = plaintext(line)
    note = annotation(line)
    if note is not None and "plaintext_hex" in note:
        assert plain.hex() == note["plaintext_hex"]
    contents = wire.decode_packet(plain)
    parts, truncated, had_crc = wire.packet_parts(plain)
    assert contents.truncated == truncated == 0
    assert contents.had_crc is had_crc is (plain[0] == 12)
    assert len(contents.messages) == len(parts) >= 1
    if note is None:
        return
    leaves = leaf_annotations(note)
    assert len(leaves) == len(parts)
    problems = []
    for part, message, leaf in zip(parts, contents.messages, leaves):
        problems += leaf_mismatches(part, message, leaf)
    assert not problems, problems


@pytest.mark.parametrize("line", UDP, ids=line_id)
def test_udp_line_reencodes_identically(line: dict) -> None:
    """Decoded memberlist and Serf bodies pack back to the captured bytes (sorted keys, raw strings)."""
    parts, _, _ = wire.packet_parts(plaintext(line))
    problems = [problem for part in parts for problem in reencode_mismatches(part)]
    assert not problems, problems


@pytest.mark.parametrize("line", [line for line in UDP if encryption_key(line)], ids=line_id)
def test_udp_encryption_reproduces_capture_with_recorded_nonce(line: dict) -> None:
    """Encrypting the plaintext with the recorded key and nonce (version 1, empty AAD) gives the datagram."""
    data = bytes.fromhex(line["hex"])
    nonce = data[1:13]  # [version][nonce 12][ciphertext+tag]
    note = annotation(line)
    if note is not None:
        assert note["nonce"] == nonce.hex()
    keyring = Keyring([KEYS[encryption_key(line)]], lambda count: nonce)
    assert keyring.encrypt(plaintext(line)) == data
