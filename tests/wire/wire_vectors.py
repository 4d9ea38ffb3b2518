"""Loading the serf 0.9.4 capture vectors and comparing decoded messages with their annotations.

The walkers here read the raw bytes on their own (msgpack, compound lengths) so they
act as an independent oracle for ``gossip.wire``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import zlib
from functools import cache
from pathlib import Path
from typing import Any, Iterator

import msgpack

from gossip import lzw, wire
from gossip.keyring import Keyring
from gossip.messages import MessageType, PushNodeState, SerfMessageType, SerfQuery, SerfRelay

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors" / "serf-0.9.4"
KEYS = {"KEY1": bytes(range(0x00, 0x20)), "KEY2": bytes(range(0x40, 0x50))}
_ENCRYPT_SUMMARY = re.compile(r"^encrypt\[v(\d),(KEY\d)\]")
# Annotation helper entries that are not wire keys.
_HELPER_SUFFIXES = ("_ip", "_list", "_decoded", "_name", "_summary", "_seconds", "_detail")


@cache
def all_lines() -> tuple[dict[str, Any], ...]:
    """Every line of every ``*.jsonl`` capture, in file then packet order."""
    lines = []
    for path in sorted(VECTOR_DIR.glob("*.jsonl")):
        with path.open() as handle:
            lines += [json.loads(text) for text in handle if text.strip()]
    return tuple(lines)


def line_id(line: dict[str, Any]) -> str:
    return f"{line['scenario']}-n{line['n']}"


def udp_lines() -> list[dict[str, Any]]:
    return [line for line in all_lines() if line["transport"] == "udp"]


def tcp_lines() -> list[dict[str, Any]]:
    """TCP lines with bytes (empty hex = refused connect, nothing to parse)."""
    return [line for line in all_lines() if line["transport"] == "tcp" and line["hex"]]


def find_line(scenario: str, n: int) -> dict[str, Any]:
    """The capture line ``<scenario> n=<n>`` the spec cites."""
    (line,) = [line for line in all_lines() if line["scenario"] == scenario and line["n"] == n]
    return line


def encryption_key(line: dict[str, Any]) -> str | None:
    """The key name an encrypted line was sealed with (from its summary), or None."""
    match = _ENCRYPT_SUMMARY.match(line["summary"])
    return match.group(2) if match else None


def annotation(line: dict[str, Any]) -> dict[str, Any] | None:
    """The full ``decoded`` tree, or None where the line only refers to an earlier one."""
    decoded = line.get("decoded") or {}
    return None if "same_summary_as_n" in decoded else decoded


def leaf_annotations(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Annotations of the innermost messages, in wire order (wrappers removed)."""
    if "layer" in node:
        return leaf_annotations(node["plain"])
    kind = node.get("type")
    if kind in (12, 9):
        return leaf_annotations(node["inner"])
    if kind == 7:
        return [leaf for part in node["parts"] for leaf in leaf_annotations(part)]
    return [node]


def compressed_bufs(plain: bytes) -> Iterator[bytes]:
    """Every LZW ``Buf`` in a plaintext packet or stream payload (own walker)."""
    if len(plain) >= 5 and plain[0] == 12:
        assert zlib.crc32(plain[5:]) == int.from_bytes(plain[1:5], "big")
        plain = plain[5:]
    if plain[:1] == b"\x09":
        body = msgpack.Unpacker(raw=True)
        body.feed(plain[1:])
        yield body.unpack()[b"Buf"]
    elif plain[:1] == b"\x07":
        count = plain[1]
        offset = 2 + 2 * count
        for index in range(count):
            length = int.from_bytes(plain[2 + 2 * index:4 + 2 * index], "big")
            yield from compressed_bufs(plain[offset:offset + length])
            offset += length


def raw_key_order(body: bytes) -> list[str]:
    """Map keys of the first msgpack object in ``body``, in wire order."""
    unpacker = msgpack.Unpacker(raw=True)
    unpacker.feed(body)
    return [key.decode() for key in unpacker.unpack()]


def as_annotation(value: Any) -> Any:
    """A decoded value in the annotation's JSON shape (bytes as ``{"hex": ...}``)."""
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, (tuple, list)):
        return [as_annotation(item) for item in value]
    if isinstance(value, dict):
        return {key: as_annotation(item) for key, item in value.items()}
    if dataclasses.is_dataclass(value):
        return {go: as_annotation(getattr(value, attr)) for go, attr in value.WIRE}
    return value


def field_mismatches(message: Any, body: dict[str, Any], wire: Any = None) -> list[str]:
    """Where ``message`` (a decoded dataclass) disagrees with an annotated ``body``."""
    attrs = dict(wire if wire is not None else message.WIRE)
    problems = []
    for key, expected in body.get("fields", {}).items():
        if key.endswith(_HELPER_SUFFIXES) or key not in attrs:
            continue
        actual = as_annotation(getattr(message, attrs[key]))
        if key == "Events" and isinstance(expected, str):
            problems += _events_mismatches(getattr(message, attrs[key]), body["fields"]["Events_summary"])
            continue
        if expected is None and actual in ([], {}):
            continue  # nil slice/map decodes to an empty one
        if actual != expected:
            problems.append(f"{key}: decoded {actual!r:.200} != annotated {expected!r:.200}")
    return problems


def _events_mismatches(events: tuple, summary: dict[str, Any]) -> list[str]:
    slots = [slot for slot in events if slot is not None]
    shown = [{"Events": [{"Name": e.name, "Payload": (e.payload or b"").decode()} for e in slot.events],
              "LTime": slot.ltime} for slot in slots]
    actual = {"length": len(events), "nil_entries": len(events) - len(slots), "non_nil": shown}
    return [] if actual == summary else [f"Events {actual} != {summary}"]


# ---------------------------------------------------------------------------
# Decryption and unwrapping with the codec under test


def _refuse_entropy(count: int) -> bytes:
    raise AssertionError("decoding must not need entropy")


def keyring_for(line: dict[str, Any]) -> Keyring | None:
    """Both vector keys for encrypted lines, the *other* one first so that decryption has
    to try every key (memberlist's rule); None for plaintext lines."""
    key = encryption_key(line)
    if key is None:
        return None
    other = "KEY2" if key == "KEY1" else "KEY1"
    return Keyring([KEYS[other], KEYS[key]], _refuse_entropy)


def plaintext(line: dict[str, Any]) -> bytes:
    """A datagram after decryption by a two-key keyring (unchanged when plaintext)."""
    data = bytes.fromhex(line["hex"])
    keyring = keyring_for(line)
    return data if keyring is None else keyring.decrypt(data)


def stream_plaintext(line: dict[str, Any]) -> bytes:
    """The bytes inside a stream's encryption envelope (the stream itself when plaintext)."""
    data = bytes.fromhex(line["hex"])
    key = encryption_key(line)
    if key is None:
        return data
    assert len(data) == 5 + int.from_bytes(data[1:5], "big")
    return Keyring([KEYS[key]], _refuse_entropy).decrypt(data[5:], aad=data[:5])


def inner_message(plain: bytes) -> bytes:
    """Stream message bytes once a compress wrapper is removed (own msgpack read)."""
    if plain[0] != 9:
        return plain
    return lzw.decompress(msgpack.unpackb(plain[1:], raw=True)[b"Buf"])


# ---------------------------------------------------------------------------
# Annotation and re-encoding checks


def leaf_mismatches(part: bytes, message: Any, note: dict[str, Any]) -> list[str]:
    """Compare one decoded memberlist message (``part`` its bytes) with its annotation."""
    if note.get("type") != part[0]:
        return [f"type {part[0]} != annotated {note.get('type')}"]
    if part[0] == MessageType.USER:
        return serf_mismatches(message.payload, note["serf"])
    if part[0] == MessageType.PUSH_PULL:
        return _push_pull_mismatches(message, note)
    body = note["body"]
    problems = field_mismatches(message, body)
    problems += _key_order_mismatches(part[1:], body)
    problems += _meta_mismatches(body)
    return problems


def serf_mismatches(payload: bytes, note: dict[str, Any]) -> list[str]:
    """Compare a Serf message with its annotation, following relays and nested payloads."""
    message = wire.decode_serf(payload)
    if payload[0] != note["serf_type"]:
        return [f"serf type {payload[0]} != annotated {note['serf_type']}"]
    if isinstance(message, SerfRelay):
        fields = note["relay_header"]["fields"]
        actual = {"DestAddr": {"IP": {"hex": message.dest_ip.hex()}, "Port": message.dest_port,
                               "Zone": message.dest_zone}, "DestName": message.dest_name}
        problems = [] if actual == fields else [f"relay header {actual} != {fields}"]
        return problems + serf_mismatches(message.inner, note["inner"])
    body = note["body"]
    problems = field_mismatches(message, body) + _key_order_mismatches(payload[1:], body)
    fields = body.get("fields", {})
    nested = fields.get("Payload_decoded")
    if isinstance(nested, dict) and "serf_type" in nested:
        problems += serf_mismatches(message.payload, nested)
    if isinstance(message, SerfQuery) and "Filters_decoded" in fields:
        decoded = [wire.decode_filter(raw) for raw in message.filters]
        for (kind, value), expected in zip(decoded, fields["Filters_decoded"], strict=True):
            shown = list(value) if kind == 0 else {"Tag": value[0], "Expr": value[1]}
            if kind != expected["filter_type"] or shown != expected["value"]:
                problems.append(f"filter {kind} {shown} != {expected}")
    return problems


def _push_pull_mismatches(message: Any, note: dict[str, Any]) -> list[str]:
    header = note["header"]["fields"]
    actual = {"Join": message.join, "Nodes": len(message.nodes), "UserStateLen": len(message.user_state)}
    problems = [] if actual == header else [f"push/pull header {actual} != {header}"]
    for node, node_note in zip(message.nodes, note["node_states"], strict=True):
        problems += field_mismatches(node, node_note, PushNodeState.WIRE) + _meta_mismatches(node_note)
    if message.user_state:
        problems += serf_mismatches(message.user_state, note["user_state"])
    return problems


def _key_order_mismatches(body: bytes, note: dict[str, Any]) -> list[str]:
    expected = note.get("keys_in_wire_order")
    if expected is None:
        return []
    actual = raw_key_order(body)
    return [] if actual == expected else [f"key order {actual} != {expected}"]


def _meta_mismatches(body: dict[str, Any]) -> list[str]:
    fields = body.get("fields", {})
    described = fields.get("Meta_decoded")
    if described is None:
        return []
    tags = wire.decode_tags(bytes.fromhex(fields["Meta"]["hex"]))
    if "tags" in described:
        ok = tags == described["tags"] and list(tags) == described["key_order"]
    else:
        ok = tags == {"role": described["role"]}
    return [] if ok else [f"tags {tags} != {described}"]


def reencode_mismatches(part: bytes) -> list[str]:
    """Where decode -> encode of a memberlist message (and its Serf content) changes bytes."""
    message = wire.decode(part)
    problems = [] if wire.encode(message) == part else [f"{type(message).__name__} re-encodes differently"]
    if part[0] == MessageType.USER:
        problems += serf_reencode_mismatches(message.payload)
    elif part[0] == MessageType.PUSH_PULL and message.user_state:
        problems += serf_reencode_mismatches(message.user_state)
    return problems


def serf_reencode_mismatches(payload: bytes) -> list[str]:
    message = wire.decode_serf(payload)
    again = wire.encode_serf(message)
    problems = [] if again == payload else [f"{type(message).__name__}: {again.hex()} != {payload.hex()}"]
    if isinstance(message, SerfRelay):
        problems += serf_reencode_mismatches(message.inner)
    inner = getattr(message, "payload", None)
    if payload[0] in (SerfMessageType.QUERY, SerfMessageType.QUERY_RESPONSE) and inner:
        if inner[0] in (SerfMessageType.CONFLICT_RESPONSE, SerfMessageType.KEY_REQUEST,
                        SerfMessageType.KEY_RESPONSE):
            problems += serf_reencode_mismatches(inner)
    return problems
