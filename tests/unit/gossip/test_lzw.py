"""gossip.lzw against spec section 6: Go's LSB/8 LZW layout, resets, and decoder edge cases."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip import lzw
from gossip.errors import RemoteProtocolError

CLEAR, END = 256, 257


def pack(codes: list[tuple[int, int]]) -> bytes:
    """Pack (code, width) pairs LSB first with a zero-padded last byte."""
    bits = count = 0
    out = bytearray()
    for code, width in codes:
        bits |= code << count
        count += width
        while count >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            count -= 8
    if count:
        out.append(bits & 0xFF)
    return bytes(out)


def unpack_codes(data: bytes, max_codes: int = 10**6) -> list[tuple[int, int]]:
    """Read (code, width) pairs back, following the width schedule of spec section 6."""
    codes, bits, count, position, width, next_free, fresh = [], 0, 0, 0, 9, 258, True
    while len(codes) < max_codes:
        while count < width:
            bits |= data[position] << count
            position += 1
            count += 8
        code = bits & ((1 << width) - 1)
        bits >>= width
        count -= width
        codes.append((code, width))
        if code == END:
            return codes
        if code == CLEAR:
            width, next_free, fresh = 9, 258, True
            continue
        if not fresh and next_free <= 4095:
            next_free += 1
            if next_free == 1 << width and width < 12:
                width += 1
        fresh = False
    return codes


def naive_compress(data: bytes) -> bytes:
    """A textbook LZW encoder over byte strings, written from the spec's rules (the oracle)."""
    codes = [(CLEAR, 9)]
    table = {bytes([i]): i for i in range(256)}
    next_code, width, current = 258, 9, b""
    for byte in data:
        candidate = current + bytes([byte])
        if candidate in table:
            current = candidate
            continue
        codes.append((table[current], width))
        table[candidate] = next_code
        next_code += 1
        if next_code - 1 == 1 << width:  # the code just taken reached 512/1024/2048
            width += 1
        if next_code - 1 == 4095:
            codes.append((CLEAR, width))
            table = {bytes([i]): i for i in range(256)}
            next_code, width = 258, 9
            # the entry for `candidate` was never usable: drop it with the reset
        current = bytes([byte])
    if current:
        codes.append((table[current], width))
        next_code += 1
        if next_code - 1 == 1 << width:
            width += 1
        if next_code - 1 == 4095:
            codes.append((CLEAR, width))
            width = 9
    codes.append((END, width))
    return pack(codes)


def varied(seed: int, size: int) -> bytes:
    """Data mixing random runs, small alphabets and repeats, so tables fill and reset."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        mode = rng.randrange(3)
        if mode == 0:
            out += rng.randbytes(rng.randrange(1, 400))
        elif mode == 1:
            alphabet = rng.randbytes(rng.randrange(1, 6))
            out += bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 800)))
        elif out:
            start = rng.randrange(len(out))
            out += out[start:start + rng.randrange(1, 300)]
    return bytes(out[:size])


def test_empty_input_is_clear_then_end() -> None:
    """Go writes clear and end (9 bits each) for empty input: 3 bytes."""
    assert lzw.compress(b"") == pack([(CLEAR, 9), (END, 9)])
    assert lzw.decompress(lzw.compress(b"")) == b""


def test_stream_starts_with_clear_and_ends_with_end() -> None:
    """Every compressed stream opens with code 256 and closes with 257 (join-plain n=1 first/last code)."""
    codes = unpack_codes(lzw.compress(b"hello hello hello"))
    assert codes[0] == (CLEAR, 9) and codes[-1] == (END, 9)
    assert [code for code, _ in codes[1:6]] == list(b"hello")


def test_kwkwk_code_decodes() -> None:
    """'aaaa' uses the code being defined right now (258 = 'aa' just after 'a')."""
    data = pack([(CLEAR, 9), (97, 9), (258, 9), (END, 9)])
    assert lzw.decompress(data) == b"aaa"
    assert unpack_codes(lzw.compress(b"aaaa")) == [(CLEAR, 9), (97, 9), (258, 9), (97, 9), (END, 9)]


def test_missing_initial_clear_is_accepted() -> None:
    """Older Go encoders omit the leading clear code; the decoder accepts that."""
    assert lzw.decompress(pack([(104, 9), (105, 9), (258, 9), (END, 9)])) == b"hihi"


@pytest.mark.parametrize("codes", [
    [(CLEAR, 9), (259, 9), (END, 9)],  # beyond the next free code
    [(CLEAR, 9), (258, 9), (END, 9)],  # KwKwK with no previous code
    [(CLEAR, 9), (97, 9), (300, 9), (END, 9)],
])
def test_undefined_codes_are_errors(codes) -> None:
    """A code above the next free one is invalid input."""
    with pytest.raises(RemoteProtocolError) as error:
        lzw.decompress(pack(codes))
    assert error.value.reason == "compress"


@pytest.mark.parametrize("cut", [0, 1, 2, 5])
def test_truncation_is_an_error(cut: int) -> None:
    """Input that ends before the end code raises instead of returning a prefix."""
    data = lzw.compress(b"some message that is long enough")
    with pytest.raises(RemoteProtocolError):
        lzw.decompress(data[:cut] if cut < 3 else data[:-cut])


def test_bytes_after_end_are_ignored() -> None:
    """Like Go's reader, decoding stops at the end code."""
    assert lzw.decompress(lzw.compress(b"abc") + b"\xff\xff") == b"abc"


def test_full_table_keeps_decoding_until_clear() -> None:
    """5000 literals without a clear: entries stop at 4095, width stays 12, output is exact."""
    rng = random.Random(5)
    print("seed 5")
    literals = [rng.randrange(256) for _ in range(5000)]
    codes, width, next_free = [(CLEAR, 9)], 9, 258
    for index, literal in enumerate(literals):
        codes.append((literal, width))
        if index > 0 and next_free <= 4095:
            next_free += 1
            if next_free == 1 << width and width < 12:
                width += 1
    data = pack(codes + [(CLEAR, 12), (65, 9), (258, 9), (END, 9)])
    assert lzw.decompress(data) == bytes(literals) + b"AAA"


def test_output_limit() -> None:
    """max_bytes stops a decompression bomb with reason "oversized"."""
    with pytest.raises(RemoteProtocolError) as error:
        lzw.decompress(lzw.compress(bytes(100_000)), max_bytes=10_000)
    assert error.value.reason == "oversized"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_large_inputs_reset_the_dictionary_like_the_oracle(seed: int) -> None:
    """>= 60 KB of varied data forces clear codes at width 12; output equals the naive oracle's."""
    print(f"seed {seed}")
    data = varied(seed, 70_000)
    compressed = lzw.compress(data)
    codes = unpack_codes(compressed)
    resets = [width for code, width in codes[1:-1] if code == CLEAR]
    assert len(resets) >= 2 and set(resets) == {12}
    assert max(width for _, width in codes) == 12
    assert compressed == naive_compress(data)
    assert lzw.decompress(compressed) == data


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32), st.integers(60_000, 90_000))
def test_round_trip_large(seed: int, size: int) -> None:
    """Large varied inputs (dictionary resets included) round-trip and match the oracle."""
    data = varied(seed, size)
    compressed = lzw.compress(data)
    assert lzw.decompress(compressed) == data
    assert compressed == naive_compress(data)


@given(st.binary(max_size=3000))
def test_round_trip_small(data: bytes) -> None:
    """Any bytes round-trip and the encoder agrees with the oracle."""
    compressed = lzw.compress(data)
    assert lzw.decompress(compressed) == data
    assert compressed == naive_compress(data)
