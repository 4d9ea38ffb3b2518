"""Every captured LZW payload decompresses, and recompressing gives serf's Buf byte for byte."""

from __future__ import annotations

import pytest

from gossip import lzw, wire
from wire_vectors import compressed_bufs, line_id, plaintext, stream_plaintext, tcp_lines, udp_lines


def _cases() -> list[tuple[str, bytes]]:
    cases = []
    for line in udp_lines():
        cases += [(line_id(line), buf) for buf in compressed_bufs(plaintext(line))]
    for line in tcp_lines():
        if line["summary"] != "encrypt()":  # the test client's broken stream holds no payload
            cases += [(line_id(line), buf) for buf in compressed_bufs(stream_plaintext(line))]
    return cases


CASES = _cases()


def test_compressed_vectors_are_present() -> None:
    """All 129 compressed payloads of the captures (spec section 6) are found, UDP and TCP."""
    assert len(CASES) == 129
    assert len({buf for _, buf in CASES}) >= 40


@pytest.mark.parametrize(("name", "buf"), CASES, ids=[name for name, _ in CASES])
def test_captured_buf_round_trips(name: str, buf: bytes) -> None:
    """decompress gives a whole message (its type byte first); compress gives the captured bytes back."""
    plain = lzw.decompress(buf)
    assert plain and plain[0] in (0, 2, 6, 7, 8, 13)
    assert lzw.compress(plain) == buf
    assert (buf[0] | (buf[1] & 1) << 8) == 256  # the stream opens with a 9-bit clear code
    if plain[0] == 7:
        assert wire.decode_packet(plain).messages
    else:
        assert wire.decode(plain) is not None
