"""Go ``compress/lzw`` (LSB order, literal width 8), as memberlist uses it.

Theory of operation (spec: gossip-wire.md section 6). memberlist compresses with
the Go standard library's LZW in GIF style: codes 0..255 are literal bytes, 256
is *clear*, 257 is *end*, and new dictionary entries are numbered from 258 on.
Codes start 9 bits wide; the width grows by one bit each time the next code to be
assigned reaches 512, 1024 and 2048, up to 12 bits. Codes are packed least
significant bit first: each code is OR-ed into an accumulator above the bits
already there and whole bytes leave from the low end; the final partial byte is
padded with zeros.

The encoder reproduces the Go 1.19 writer that serf 0.9.4 was built with, byte for
byte: it opens with a clear code, emits the longest known prefix each time the
next byte would leave the dictionary, and when the next free code reaches 4095 it
sends a clear code (at the current width) and starts over with an empty
dictionary at width 9. It ends with the pending code, the end code and the padded
last byte.

The decoder accepts the output of any Go release (the initial clear is optional),
handles the code being defined right now ("KwKwK"), stops defining entries once
the table is full until a clear arrives, and treats input that stops before the
end code, or any code above the next free one, as an error. It raises only
``RemoteProtocolError`` (reason ``"compress"``, or ``"oversized"`` when a caller's
output limit is passed). Pure: no I/O, no clocks.

Both directions keep a small memo keyed by content: an idle cluster exchanges the
same push/pull state every interval, and pure-Python LZW of a 10 KB state costs
milliseconds. The memo only returns what the function would compute again, so it
changes no result; inputs over ``_MEMO_MAX_INPUT_BYTES`` are never kept.
"""

from __future__ import annotations

from collections import OrderedDict

from .errors import RemoteProtocolError

__all__ = ["compress", "decompress"]

_LITERAL_WIDTH = 8
_CLEAR = 1 << _LITERAL_WIDTH  # 256
_END = _CLEAR + 1  # 257
_FIRST_FREE = _CLEAR + 2  # 258: the first code a dictionary entry gets
_MAX_CODE = (1 << 12) - 1  # 4095
_MAX_WIDTH = 12


_MEMO_ENTRIES = 16
_MEMO_MAX_INPUT_BYTES = 64 * 1024
_compress_memo: "OrderedDict[bytes, bytes]" = OrderedDict()
_decompress_memo: "OrderedDict[tuple[bytes, int | None], bytes]" = OrderedDict()


def _remember(memo: OrderedDict, key: object, value: bytes) -> bytes:
    memo[key] = value
    if len(memo) > _MEMO_ENTRIES:
        memo.popitem(last=False)
    return value


class _BitWriter:
    """Packs variable-width codes LSB first into a bytearray."""

    __slots__ = ("out", "bits", "count")

    def __init__(self) -> None:
        self.out = bytearray()
        self.bits = 0  # pending bits, the oldest in the low end
        self.count = 0  # how many pending bits are valid

    def write(self, code: int, width: int) -> None:
        self.bits |= code << self.count
        self.count += width
        while self.count >= 8:
            self.out.append(self.bits & 0xFF)
            self.bits >>= 8
            self.count -= 8

    def finish(self) -> bytes:
        if self.count > 0:
            self.out.append(self.bits & 0xFF)
        return bytes(self.out)


def compress(data: bytes) -> bytes:
    """Compress ``data`` exactly as Go 1.19 ``lzw.NewWriter(w, lzw.LSB, 8)`` does.

    Args:
        data: any bytes (empty input gives clear + end, 3 bytes).

    Returns:
        The compressed stream, the ``Buf`` of a memberlist ``compress`` message.
    """
    data = bytes(data)
    if len(data) > _MEMO_MAX_INPUT_BYTES:
        return _compress(data)
    known = _compress_memo.get(data)
    if known is not None:
        _compress_memo.move_to_end(data)
        return known
    return _remember(_compress_memo, data, _compress(data))


def _compress(data: bytes) -> bytes:
    writer = _BitWriter()
    width = 9
    writer.write(_CLEAR, width)
    if not data:
        writer.write(_END, width)
        return writer.finish()
    # Dictionary of multi-byte strings: (prefix code << 8 | next byte) -> code.
    table: dict[int, int] = {}
    next_code = _FIRST_FREE - 1  # Go's "hi": the last code handed out (257 at start)
    code = data[0]
    for byte in memoryview(data)[1:]:
        key = (code << 8) | byte
        known = table.get(key)
        if known is not None:
            code = known
            continue
        writer.write(code, width)
        code = byte
        next_code, width, reset = _advance(next_code, width, writer)
        if reset:
            table.clear()
        else:
            table[key] = next_code
    writer.write(code, width)
    next_code, width, _ = _advance(next_code, width, writer)
    writer.write(_END, width)
    return writer.finish()


def _advance(next_code: int, width: int, writer: _BitWriter) -> tuple[int, int, bool]:
    """Count one more code as assigned, growing the width or resetting the table.

    Mirrors the Go writer's ``incHi``: after a code is written the next code number
    is taken; reaching 512/1024/2048 widens codes; reaching 4095 sends a clear code
    at the current width and starts over at width 9.

    Returns:
        (new last-assigned code, new width, whether the dictionary was reset)
    """
    next_code += 1
    if next_code == 1 << width:
        width += 1
    if next_code == _MAX_CODE:
        writer.write(_CLEAR, width)
        return _END, 9, True
    return next_code, width, False


def decompress(data: bytes, *, max_bytes: int | None = None) -> bytes:
    """Decompress a Go LSB/8 LZW stream.

    Args:
        data: the compressed bytes (the ``Buf`` of a ``compress`` message).
        max_bytes: optional limit on the output size.

    Returns:
        The original bytes. Bytes after the end code are ignored, as Go does.

    Raises:
        RemoteProtocolError: reason ``"compress"`` for an invalid code or a stream
            that stops before the end code; ``"oversized"`` past ``max_bytes``.
    """
    data = bytes(data)
    if len(data) > _MEMO_MAX_INPUT_BYTES:
        return _decompress(data, max_bytes)
    key = (data, max_bytes)
    known = _decompress_memo.get(key)
    if known is not None:
        _decompress_memo.move_to_end(key)
        return known
    return _remember(_decompress_memo, key, _decompress(data, max_bytes))


def _decompress(data: bytes, max_bytes: int | None) -> bytes:
    out = bytearray()
    # Entries 0..257 are placeholders so that table[code] indexes directly.
    table: list[bytes] = [bytes((i,)) for i in range(256)] + [b"", b""]
    width = 9
    previous: bytes | None = None  # expansion of the previous code; None after clear
    bits = 0
    count = 0
    position = 0
    size = len(data)
    while True:
        while count < width:
            if position >= size:
                raise RemoteProtocolError("lzw stream ends before the end code", reason="compress")
            bits |= data[position] << count
            position += 1
            count += 8
        code = bits & ((1 << width) - 1)
        bits >>= width
        count -= width
        if code == _CLEAR:
            del table[_FIRST_FREE:]
            width = 9
            previous = None
            continue
        if code == _END:
            return bytes(out)
        next_free = len(table)
        if code < next_free and (code < _CLEAR or code >= _FIRST_FREE):
            entry = table[code]
        elif code == next_free and previous is not None and next_free <= _MAX_CODE:
            entry = previous + previous[:1]  # KwKwK: the entry being defined right now
        else:
            raise RemoteProtocolError(f"lzw code {code} is not defined", reason="compress")
        out += entry
        if max_bytes is not None and len(out) > max_bytes:
            raise RemoteProtocolError(f"lzw output above {max_bytes} bytes", reason="oversized")
        # The first code after a clear (or at the start) defines nothing; a full
        # table defines nothing until the next clear.
        if previous is not None and next_free <= _MAX_CODE:
            table.append(previous + entry[:1])
            if len(table) == 1 << width and width < _MAX_WIDTH:
                width += 1
        previous = entry
