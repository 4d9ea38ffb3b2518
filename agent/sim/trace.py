"""The simulator's trace: one line per delivery or transition, kept in memory.

Recording must be cheap because a 100-node run delivers hundreds of thousands of
packets, so entries are stored raw (time, kind, nodes, bytes) and turned into text
only when printed: ``12.400 n2<-n1 Ping seq=7``. Every entry also feeds a running
BLAKE2 digest, so two runs can be compared for identity without keeping or
formatting every line (the stored lines are capped; the digest covers all).

Packets are summarised by decoding them with ``gossip.wire``; what does not decode
is shown as its size (that is itself worth seeing in a trace).
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque
from typing import Any, Iterator

_TIME = struct.Struct("!d")

# entry kinds
PACKET = 0      # (kind, t, dst, src, data)          UDP datagram delivered
LOST = 1        # (kind, t, dst, src, data)          UDP datagram lost on the way
STREAM = 2      # (kind, t, dst, src, text, data)    stream open / data / close / failure
TRANSITION = 3  # (kind, t, node, text, b"")         process or member state change


class Trace:
    """A bounded in-memory trace plus a digest over every entry ever recorded."""

    def __init__(self, limit: int = 200_000, *, packets: bool = True) -> None:
        self._entries: deque[tuple[Any, ...]] = deque(maxlen=limit)
        self._digest = hashlib.blake2b(digest_size=16)
        self.packets = packets
        """Whether UDP deliveries are recorded (transitions always are)."""
        self.recorded = 0

    def packet(self, kind: int, t: float, dst: str, src: str, data: bytes) -> None:
        if not self.packets:
            return
        self._entries.append((kind, t, dst, src, data))
        self._digest.update(_TIME.pack(t) + f"{kind}{dst}<{src}".encode() + data)
        self.recorded += 1

    def stream(self, t: float, dst: str, src: str, text: str, data: bytes = b"") -> None:
        self._entries.append((STREAM, t, dst, src, text, data))
        self._digest.update(_TIME.pack(t) + f"{dst}<={src} {text}".encode() + data)
        self.recorded += 1

    def transition(self, t: float, node: str, text: str) -> None:
        self._entries.append((TRANSITION, t, node, text))
        self._digest.update(_TIME.pack(t) + f"{node} {text}".encode())
        self.recorded += 1

    def digest(self) -> str:
        """Hex digest of every entry recorded so far, in order."""
        return self._digest.hexdigest()

    def lines(self, last: int | None = None) -> list[str]:
        """The stored entries as text (the last ``last`` of them when given)."""
        entries = list(self._entries)
        if last is not None:
            entries = entries[-last:]
        return [format_entry(entry) for entry in entries]

    def __iter__(self) -> Iterator[str]:
        return (format_entry(entry) for entry in self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def format_entry(entry: tuple[Any, ...]) -> str:
    kind, t = entry[0], entry[1]
    if kind == PACKET:
        return f"{t:.3f} {entry[2]}<-{entry[3]} {summarize_packet(entry[4])}"
    if kind == LOST:
        return f"{t:.3f} {entry[2]}<-{entry[3]} LOST {summarize_packet(entry[4])}"
    if kind == STREAM:
        text = entry[4]
        if entry[5]:
            text = f"{text} {summarize_stream(entry[5])}"
        return f"{t:.3f} {entry[2]}<={entry[3]} {text}"
    return f"{t:.3f} {entry[2]} {entry[3]}"


def summarize_packet(data: bytes) -> str:
    """``Ping seq=7 + Alive n3 inc=2``: the messages of one datagram."""
    from gossip import wire
    try:
        contents = wire.decode_packet(data)
    except Exception as exc:  # noqa: BLE001 - a trace shows what it cannot decode
        return f"<{len(data)} bytes: {type(exc).__name__}>"
    text = " + ".join(summarize_message(m) for m in contents.messages)
    if contents.truncated:
        text += f" (+{contents.truncated} truncated)"
    return text


def summarize_stream(data: bytes) -> str:
    """A stream chunk: its message if it is one whole unencrypted message, else its size."""
    from gossip import wire
    try:
        contents = wire.decode_packet(data)
        return " + ".join(summarize_message(m) for m in contents.messages)
    except Exception:  # noqa: BLE001 - partial chunks are normal on a stream
        return f"<{len(data)} bytes>"


def summarize_message(message: object) -> str:
    """One message as ``Name key=value ...`` with the fields worth reading."""
    name = type(message).__name__
    parts = [name]
    node = getattr(message, "node", None)
    if node is not None:
        parts.append(str(node))
    seq = getattr(message, "seq_no", None)
    if seq is not None:
        parts.append(f"seq={seq}")
    incarnation = getattr(message, "incarnation", None)
    if incarnation is not None:
        parts.append(f"inc={incarnation}")
    source = getattr(message, "from_", None)
    if source is not None:
        parts.append(f"from={source}")
    nodes = getattr(message, "nodes", None)
    if isinstance(nodes, tuple):
        parts.append(f"join={getattr(message, 'join', False)} nodes={len(nodes)}")
    payload = getattr(message, "payload", None)
    if name == "UserMsg" and isinstance(payload, bytes) and payload:
        parts.append(_serf_summary(payload))
    return " ".join(parts)


def _serf_summary(payload: bytes) -> str:
    from gossip import wire
    try:
        inner = wire.decode_serf(payload)
    except Exception:  # noqa: BLE001
        return f"serf-type={payload[0]}"
    fields = [type(inner).__name__]
    for attr in ("node", "ltime", "name"):
        value = getattr(inner, attr, None)
        if value is not None:
            fields.append(f"{attr}={value}")
    return " ".join(fields)
