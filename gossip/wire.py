"""memberlist + Serf wire codec: message bodies and UDP packet layers (streams re-exported).

Theory of operation (spec: gossip-wire.md sections 1-6).

*Bodies.* Every message is ``[type byte][msgpack body]``. go-msgpack writes a Go
struct as a map whose keys are the Go field names in byte-wise sorted order, with
strings and byte slices both in the old raw-string family; msgpack-python with
``use_bin_type=False`` and sorted-key dicts writes the same bytes (section 1.3).
Each message class in ``messages.py`` lists its keys in ``WIRE``; this module adds
the Go type of every key (``_Schema``) and decodes with ``raw=True``, turning the
string fields into ``str`` (bad UTF-8 is an error) and checking integer ranges as
Go does (a negative or too-large value for an unsigned field is an error; ``bool``
also takes 0/1). Unknown keys are skipped, missing keys give the Go zero value,
bytes after the body are ignored (Go's decoder stops after one object). Go maps
(tags, ``StatusLTimes``) keep the order they arrived in, so re-encoding a decoded
message gives the captured bytes back.

*Packets (UDP, section 2).* ``[12][crc32][...]`` is checked and stripped at the
top only, as memberlist's ``ingestPacket`` does; then ``[9]`` compress and ``[7]``
compound nest freely (bounded depth). A compound shorter than its declared
lengths keeps its complete parts and reports how many were cut (``truncated``).
Encryption is the caller's first step (``Keyring.decrypt``), since only it knows
whether the cluster is encrypted.

*Streams (TCP, section 4).* One message per connection, parsed incrementally:
``encode_stream``, ``encode_user_stream`` and ``StreamReader`` live in
``stream_codec.py``, which shares this module's schemas and compress layer; they
are re-exported here, so ``wire.StreamReader`` and friends keep working.

Every decoder raises only ``RemoteProtocolError``; its ``reason`` is one of
``decode``, ``crc``, ``compress``, ``decrypt``, ``unknown_type``, ``truncated``,
``oversized``, ``encryption_mismatch``. Pure: no I/O, no clocks, no randomness
(the keyring holds the injected entropy).
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import msgpack

from . import lzw
from .errors import LocalProtocolError, RemoteProtocolError
from .messages import (
    Ack, Alive, Dead, ErrResp, IndirectPing, MemberlistMessage, MessageType, Nack, Ping,
    PushNodeState, PushPull, SerfJoin, SerfKeyRequest, SerfKeyResponse, SerfLeave,
    SerfMemberRecord, SerfMessage, SerfMessageType, SerfPushPull, SerfQuery,
    SerfQueryResponse, SerfRelay, SerfUserEvent, SerfUserEventEntry, SerfUserEvents, Suspect,
    UserMsg, FILTER_NODE, FILTER_TAG,
)

__all__ = [
    "pack_body", "encode", "decode", "encode_serf", "decode_serf", "encode_tags", "decode_tags",
    "encode_filter_nodes", "encode_filter_tag", "decode_filter", "make_compound", "add_crc",
    "compress_message", "decode_packet", "packet_parts", "PacketContents", "encode_stream",
    "encode_user_stream", "StreamReader", "TAG_MAGIC", "MAX_PACKET_DECOMPRESSED_BYTES",
]

TAG_MAGIC = 0xFF
"""First byte of Serf's tags meta (anything else is the legacy role-only form)."""
MAX_PACKET_DECOMPRESSED_BYTES = 1 << 20
"""A compressed UDP payload may expand to at most this much (a 64 KiB datagram of
12-bit codes could otherwise claim hundreds of megabytes)."""
_MAX_NESTING = 8  # compress/compound layers inside one datagram

# Keys go-msgpack leaves out when zero (``omitempty`` on ping/indirectPing).
_OMIT_EMPTY = frozenset({"SourceAddr", "SourceNode", "SourcePort"})
# Slices Go builds with ``var x []T`` + append: nil (0xc0) when empty.
_NIL_WHEN_EMPTY = frozenset({"Filters", "Keys"})


# ---------------------------------------------------------------------------
# msgpack helpers


def _packb(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=False)


def _bad(message: str, reason: str = "decode") -> RemoteProtocolError:
    return RemoteProtocolError(message, reason=reason)


def _unpack_prefix(data: bytes, offset: int, what: str) -> tuple[object, int]:
    """Decode one msgpack object at ``data[offset:]``; return it and where it ended."""
    try:
        return msgpack.unpackb(data[offset:], raw=True), len(data)
    except msgpack.ExtraData as extra:
        return extra.unpacked, len(data) - len(extra.extra)
    except Exception as exc:  # msgpack raises ValueError, TypeError, FormatError, ...
        raise _bad(f"bad msgpack in {what}: {exc}") from None


# ---------------------------------------------------------------------------
# Field kinds: Go type -> Python value (decode) with the Go zero value.


@dataclass(frozen=True, slots=True)
class _Kind:
    convert: Callable[[object, str], object]
    zero: Callable[[], object]


def _to_str(value: object, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, bytes):
        raise _bad(f"{where}: expected a string, got {type(value).__name__}")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(f"{where}: string is not UTF-8") from None


def _to_bytes(value: object, where: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, bytes):
        raise _bad(f"{where}: expected bytes, got {type(value).__name__}")
    return value


def _to_optional_bytes(value: object, where: str) -> bytes | None:
    return None if value is None else _to_bytes(value, where)


def _to_bool(value: object, where: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _bad(f"{where}: expected a bool, got {value!r:.40}")


def _integer(low: int, high: int) -> _Kind:
    def convert(value: object, where: str) -> int:
        if value is None:
            return 0
        if not isinstance(value, int) or isinstance(value, bool):
            raise _bad(f"{where}: expected an integer, got {type(value).__name__}")
        if not low <= value <= high:
            raise _bad(f"{where}: {value} out of range {low}..{high}")
        return value
    return _Kind(convert, int)


def _list_of(item: _Kind) -> _Kind:
    def convert(value: object, where: str) -> tuple:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise _bad(f"{where}: expected an array, got {type(value).__name__}")
        return tuple(item.convert(element, where) for element in value)
    return _Kind(convert, tuple)


def _map_of(value_kind: _Kind) -> _Kind:
    def convert(value: object, where: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _bad(f"{where}: expected a map, got {type(value).__name__}")
        return {_to_str(k, where): value_kind.convert(v, where) for k, v in value.items()}
    return _Kind(convert, dict)


_STR = _Kind(_to_str, str)
_BYTES = _Kind(_to_bytes, bytes)
_OPT_BYTES = _Kind(_to_optional_bytes, lambda: None)
_BOOL = _Kind(_to_bool, bool)
_U8 = _integer(0, 2**8 - 1)
_U16 = _integer(0, 2**16 - 1)
_U32 = _integer(0, 2**32 - 1)
_U64 = _integer(0, 2**64 - 1)
_INT = _integer(-(2**63), 2**63 - 1)  # Go int / int64 / time.Duration


class _Schema:
    """The Go types of one struct's keys; builds the dataclass (or a dict) on decode.

    Args:
        name: used in error messages.
        kinds: Go key -> kind.
        cls: the message dataclass; its ``WIRE`` names the attributes. ``None``
            for framing structs, which decode to ``{go_key: value}``.
    """

    def __init__(self, name: str, kinds: Mapping[str, _Kind], cls: type | None = None) -> None:
        self.name = name
        self.cls = cls
        attrs = dict(cls.WIRE) if cls is not None else {key: key for key in kinds}
        assert set(attrs) == set(kinds), f"{name}: WIRE and schema disagree"
        # raw key -> (attribute, kind, label for error messages)
        self.fields = {key.encode(): (attrs[key], kind, f"{name}.{key}") for key, kind in kinds.items()}

    def decode(self, obj: object) -> Any:
        if not isinstance(obj, dict):
            raise _bad(f"{self.name}: body is {type(obj).__name__}, not a map")
        values = {attr: kind.zero() for attr, kind, _ in self.fields.values()}
        for key, value in obj.items():
            if not isinstance(key, bytes):
                raise _bad(f"{self.name}: map key {key!r:.40} is not a string")
            spec = self.fields.get(key)
            if spec is not None:  # unknown keys are skipped, as go-msgpack does
                attr, kind, label = spec
                values[attr] = kind.convert(value, label)
        return self.cls(**values) if self.cls is not None else values

    def kind(self) -> _Kind:
        """This struct as a field kind (nil decodes to the zero struct)."""
        return _Kind(lambda value, where: self.decode({} if value is None else value),
                     lambda: self.decode({}))


def _optional(kind: _Kind) -> _Kind:
    return _Kind(lambda value, where: None if value is None else kind.convert(value, where),
                 lambda: None)


_ADDRESS_FIELDS = {"SourceAddr": _BYTES, "SourceNode": _STR, "SourcePort": _U16}
_MEMBERLIST_SCHEMAS: dict[MessageType, _Schema] = {
    MessageType.PING: _Schema("ping", {"Node": _STR, "SeqNo": _U32, **_ADDRESS_FIELDS}, Ping),
    MessageType.INDIRECT_PING: _Schema("indirectPing", {
        "Nack": _BOOL, "Node": _STR, "Port": _U16, "SeqNo": _U32, "Target": _BYTES,
        **_ADDRESS_FIELDS}, IndirectPing),
    MessageType.ACK: _Schema("ack", {"Payload": _OPT_BYTES, "SeqNo": _U32}, Ack),
    MessageType.NACK: _Schema("nack", {"SeqNo": _U32}, Nack),
    MessageType.SUSPECT: _Schema("suspect", {"From": _STR, "Incarnation": _U32, "Node": _STR}, Suspect),
    MessageType.DEAD: _Schema("dead", {"From": _STR, "Incarnation": _U32, "Node": _STR}, Dead),
    MessageType.ALIVE: _Schema("alive", {
        "Addr": _BYTES, "Incarnation": _U32, "Meta": _BYTES, "Node": _STR, "Port": _U16,
        "Vsn": _BYTES}, Alive),
    MessageType.ERR: _Schema("err", {"Error": _STR}, ErrResp),
}
_NODE_STATE = _Schema("pushNodeState", {
    "Addr": _BYTES, "Incarnation": _U32, "Meta": _BYTES, "Name": _STR, "Port": _U16,
    "State": _INT, "Vsn": _BYTES}, PushNodeState)
_PUSH_PULL_HEADER = _Schema("pushPullHeader", {"Join": _BOOL, "Nodes": _INT, "UserStateLen": _INT})
_USER_HEADER = _Schema("userMsgHeader", {"UserMsgLen": _INT})
_COMPRESS = _Schema("compress", {"Algo": _INT, "Buf": _BYTES})

_EVENT_ENTRY = _Schema("userEvent", {"Name": _STR, "Payload": _OPT_BYTES}, SerfUserEventEntry)
_EVENT_SLOT = _Schema("userEvents", {"Events": _list_of(_EVENT_ENTRY.kind()), "LTime": _U64},
                      SerfUserEvents)
_SERF_SCHEMAS: dict[SerfMessageType, _Schema] = {
    SerfMessageType.LEAVE: _Schema("leave", {"LTime": _U64, "Node": _STR, "Prune": _BOOL}, SerfLeave),
    SerfMessageType.JOIN: _Schema("join", {"LTime": _U64, "Node": _STR}, SerfJoin),
    SerfMessageType.PUSH_PULL: _Schema("serfPushPull", {
        "EventLTime": _U64, "Events": _list_of(_optional(_EVENT_SLOT.kind())), "LTime": _U64,
        "LeftMembers": _list_of(_STR), "QueryLTime": _U64, "StatusLTimes": _map_of(_U64)},
        SerfPushPull),
    SerfMessageType.USER_EVENT: _Schema("userEvent", {
        "CC": _BOOL, "LTime": _U64, "Name": _STR, "Payload": _OPT_BYTES}, SerfUserEvent),
    SerfMessageType.QUERY: _Schema("query", {
        "Addr": _BYTES, "Filters": _list_of(_BYTES), "Flags": _U32, "ID": _U32, "LTime": _U64,
        "Name": _STR, "Payload": _OPT_BYTES, "Port": _U16, "RelayFactor": _U8,
        "SourceNode": _STR, "Timeout": _INT}, SerfQuery),
    SerfMessageType.QUERY_RESPONSE: _Schema("queryResponse", {
        "Flags": _U32, "From": _STR, "ID": _U32, "LTime": _U64, "Payload": _OPT_BYTES},
        SerfQueryResponse),
    SerfMessageType.CONFLICT_RESPONSE: _Schema("conflictResponse", {
        "Addr": _BYTES, "DelegateCur": _U8, "DelegateMax": _U8, "DelegateMin": _U8,
        "Name": _STR, "Port": _U16, "ProtocolCur": _U8, "ProtocolMax": _U8,
        "ProtocolMin": _U8, "Status": _INT, "Tags": _map_of(_STR)}, SerfMemberRecord),
    SerfMessageType.KEY_REQUEST: _Schema("keyRequest", {"Key": _BYTES}, SerfKeyRequest),
    SerfMessageType.KEY_RESPONSE: _Schema("keyResponse", {
        "Keys": _list_of(_STR), "Message": _STR, "PrimaryKey": _STR, "Result": _BOOL},
        SerfKeyResponse),
}
_UDP_ADDR = _Schema("UDPAddr", {"IP": _BYTES, "Port": _U16, "Zone": _STR})
_RELAY_HEADER = _Schema("relayHeader", {"DestAddr": _UDP_ADDR.kind(), "DestName": _STR})
_TAG_FILTER = _Schema("filterTag", {"Expr": _STR, "Tag": _STR})


# ---------------------------------------------------------------------------
# Message bodies


def _to_wire(value: object) -> object:
    """A decoded value as msgpack-python should pack it (structs as sorted maps)."""
    if dataclasses.is_dataclass(value) and hasattr(value, "WIRE"):
        return _struct_map(value, value.WIRE)
    if isinstance(value, (tuple, list)):
        return [_to_wire(item) for item in value]
    if isinstance(value, dict):
        return {key: _to_wire(item) for key, item in value.items()}  # Go map: keep order
    return value


def _struct_map(obj: object, wire: Iterable[tuple[str, str]]) -> dict[str, object]:
    body: dict[str, object] = {}
    for go_key, attr in sorted(wire):  # go-msgpack sorts struct keys byte-wise
        value = getattr(obj, attr)
        if go_key in _OMIT_EMPTY and not value:
            continue
        if go_key in _NIL_WHEN_EMPTY and not value:
            value = None
        body[go_key] = _to_wire(value)
    return body


def pack_body(obj: object, wire: Iterable[tuple[str, str]]) -> bytes:
    """The msgpack body of ``obj``: a map of ``wire``'s Go keys in sorted order.

    Source* keys are left out when empty (omitempty); ``Filters``/``Keys`` become
    nil when empty, as Go's append-built slices do.
    """
    return _packb(_struct_map(obj, wire))


def encode(msg: MemberlistMessage) -> bytes:
    """``[type][msgpack]``; ``UserMsg`` is ``[8]+payload``; ``PushPull`` is the
    header, the node states and the raw user state (stream form)."""
    if isinstance(msg, UserMsg):
        return bytes((MessageType.USER,)) + bytes(msg.payload)
    if isinstance(msg, PushPull):
        header = {"Join": bool(msg.join), "Nodes": len(msg.nodes), "UserStateLen": len(msg.user_state)}
        parts = [bytes((MessageType.PUSH_PULL,)), _packb(header)]
        parts += [pack_body(node, PushNodeState.WIRE) for node in msg.nodes]
        parts.append(bytes(msg.user_state))
        return b"".join(parts)
    return bytes((msg.TYPE,)) + pack_body(msg, msg.WIRE)


def decode(data: bytes) -> MemberlistMessage:
    """Decode one whole memberlist message (no compound/CRC/compress unwrapping).

    ``[8]`` gives ``UserMsg`` with the rest as payload (the UDP form); ``[6]`` is a
    complete push/pull.

    Raises:
        RemoteProtocolError: ``truncated`` (empty), ``unknown_type``, ``decode``.
    """
    data = bytes(data)
    if not data:
        raise _bad("empty message", "truncated")
    kind = data[0]
    if kind == MessageType.USER:
        return UserMsg(data[1:])
    if kind == MessageType.PUSH_PULL:
        message = StreamReader(None).feed(data)
        if message is None:
            raise _bad("push/pull shorter than its header says", "truncated")
        return message
    schema = _MEMBERLIST_SCHEMAS.get(kind)  # type: ignore[call-overload]
    if schema is None:
        raise _bad(f"message type {kind} is not a single message", "unknown_type")
    body, _ = _unpack_prefix(data, 1, schema.name)
    return schema.decode(body)


def encode_serf(msg: SerfMessage) -> bytes:
    """``[serf type][msgpack]``; a relay is ``[9][relayHeader][inner message]``."""
    if isinstance(msg, SerfRelay):
        header = {"DestAddr": {"IP": bytes(msg.dest_ip), "Port": msg.dest_port, "Zone": msg.dest_zone},
                  "DestName": msg.dest_name}
        return bytes((SerfMessageType.RELAY,)) + _packb(header) + bytes(msg.inner)
    return bytes((msg.TYPE,)) + pack_body(msg, msg.WIRE)


def decode_serf(data: bytes) -> SerfMessage:
    """Decode a Serf message (the payload of a memberlist user message).

    Raises:
        RemoteProtocolError: ``truncated`` (empty), ``unknown_type``, ``decode``.
    """
    data = bytes(data)
    if not data:
        raise _bad("empty serf message", "truncated")
    kind = data[0]
    if kind == SerfMessageType.RELAY:
        obj, end = _unpack_prefix(data, 1, "relayHeader")
        header = _RELAY_HEADER.decode(obj)
        address = header["DestAddr"]
        return SerfRelay(dest_ip=address["IP"], dest_port=address["Port"], dest_zone=address["Zone"],
                         dest_name=header["DestName"], inner=data[end:])
    schema = _SERF_SCHEMAS.get(kind)  # type: ignore[call-overload]
    if schema is None:
        raise _bad(f"unknown serf message type {kind}", "unknown_type")
    body, _ = _unpack_prefix(data, 1, schema.name)
    return schema.decode(body)


def encode_tags(tags: Mapping[str, str]) -> bytes:
    """Serf node meta: ``0xff`` + msgpack map of the tags, in the mapping's order."""
    return bytes((TAG_MAGIC,)) + _packb(dict(tags))


def decode_tags(meta: bytes) -> dict[str, str]:
    """Tags from node meta; meta not starting with 0xff is the legacy role string.

    Raises:
        RemoteProtocolError: ``decode`` (bad msgpack, not a map of strings, bad UTF-8).
    """
    meta = bytes(meta)
    if not meta or meta[0] != TAG_MAGIC:
        return {"role": _to_str(meta, "meta role")}
    obj, _ = _unpack_prefix(meta, 1, "tags")
    return _map_of(_STR).convert(obj, "tags")  # type: ignore[return-value]


def encode_filter_nodes(names: Sequence[str]) -> bytes:
    """A query node filter: ``[0][msgpack array of names]``."""
    return bytes((FILTER_NODE,)) + _packb(list(names))


def encode_filter_tag(tag: str, expr: str) -> bytes:
    """A query tag filter: ``[1][msgpack {Expr, Tag}]`` (``expr`` is a Go regexp)."""
    return bytes((FILTER_TAG,)) + _packb({"Expr": expr, "Tag": tag})


def decode_filter(raw: bytes) -> tuple[int, object]:
    """Decode one query filter.

    Returns:
        ``(0, tuple_of_names)`` or ``(1, (tag, expr))``.

    Raises:
        RemoteProtocolError: ``unknown_type`` for another filter type (Serf then
            skips the query), ``truncated``/``decode`` for bad bytes.
    """
    raw = bytes(raw)
    if not raw:
        raise _bad("empty query filter", "truncated")
    obj, _ = _unpack_prefix(raw, 1, "filter")
    if raw[0] == FILTER_NODE:
        return FILTER_NODE, _list_of(_STR).convert(obj, "node filter")
    if raw[0] == FILTER_TAG:
        body = _TAG_FILTER.decode(obj)
        return FILTER_TAG, (body["Tag"], body["Expr"])
    raise _bad(f"unknown query filter type {raw[0]}", "unknown_type")


# ---------------------------------------------------------------------------
# Packet layer (UDP)

_PACKET_MESSAGE_TYPES = frozenset({
    MessageType.PING, MessageType.INDIRECT_PING, MessageType.ACK, MessageType.NACK,
    MessageType.SUSPECT, MessageType.ALIVE, MessageType.DEAD, MessageType.USER,
})


@dataclass(frozen=True, slots=True)
class PacketContents:
    """What one datagram carried, wrappers removed.

    ``truncated`` counts compound parts cut off by a short datagram; ``had_crc``
    says the packet was CRC-wrapped (and the CRC matched).
    """

    messages: list[MemberlistMessage] = field(default_factory=list)
    truncated: int = 0
    had_crc: bool = False


def make_compound(parts: Sequence[bytes]) -> bytes:
    """``[7][n][len u16]...[parts]``: several messages in one datagram."""
    if len(parts) > 255:
        raise LocalProtocolError(f"a compound holds at most 255 messages, not {len(parts)}")
    header = bytearray((MessageType.COMPOUND, len(parts)))
    for part in parts:
        if len(part) > 0xFFFF:
            raise LocalProtocolError(f"compound part of {len(part)} bytes")
        header += len(part).to_bytes(2, "big")
    return bytes(header) + b"".join(bytes(part) for part in parts)


def add_crc(packet: bytes) -> bytes:
    """``[12][crc32 IEEE of packet][packet]``."""
    return bytes((MessageType.HAS_CRC,)) + zlib.crc32(packet).to_bytes(4, "big") + bytes(packet)


def compress_message(packet: bytes) -> bytes:
    """``[9][msgpack {Algo: 0, Buf: lzw(packet)}]``."""
    return bytes((MessageType.COMPRESS,)) + _packb({"Algo": 0, "Buf": lzw.compress(packet)})


def packet_parts(data: bytes) -> tuple[list[bytes], int, bool]:
    """Unwrap CRC, compress and compound layers of a (decrypted) datagram.

    Returns:
        (the bytes of every message, type byte first; parts lost to truncation;
        whether a CRC wrapper was present).

    Raises:
        RemoteProtocolError: ``crc``, ``compress``, ``truncated``, ``unknown_type``,
            ``decode``, ``oversized``.
    """
    data = bytes(data)
    had_crc = False
    # Like ingestPacket: a CRC is recognised only at the top and with 5+ bytes.
    if len(data) >= 5 and data[0] == MessageType.HAS_CRC:
        if zlib.crc32(data[5:]) != int.from_bytes(data[1:5], "big"):
            raise _bad("packet checksum mismatch", "crc")
        data, had_crc = data[5:], True
    parts: list[bytes] = []
    truncated = _split(data, parts, 0)
    return parts, truncated, had_crc


def _split(data: bytes, parts: list[bytes], depth: int) -> int:
    """Append the messages inside ``data`` to ``parts``; return the truncated count."""
    if depth > _MAX_NESTING:
        raise _bad("packet nests compound/compress too deeply")
    if not data:
        raise _bad("empty message in packet", "truncated")
    kind = data[0]
    if kind == MessageType.COMPOUND:
        pieces, truncated = _compound_pieces(data)
        for piece in pieces:
            truncated += _split(piece, parts, depth + 1)
        return truncated
    if kind == MessageType.COMPRESS:
        return _split(_decompress_body(data, MAX_PACKET_DECOMPRESSED_BYTES), parts, depth + 1)
    if kind not in _PACKET_MESSAGE_TYPES:
        raise _bad(f"message type {kind} is not supported in a packet", "unknown_type")
    parts.append(data)
    return 0


def _compound_pieces(data: bytes) -> tuple[list[bytes], int]:
    """Split ``[7][n][lengths][parts]``; parts past the end count as truncated."""
    if len(data) < 2:
        raise _bad("compound without a count", "truncated")
    count = data[1]
    offset = 2 + 2 * count
    if len(data) < offset:
        raise _bad("compound length table is truncated", "truncated")
    pieces = []
    for index in range(count):
        length = int.from_bytes(data[2 + 2 * index:4 + 2 * index], "big")
        if offset + length > len(data):
            return pieces, count - index
        pieces.append(data[offset:offset + length])
        offset += length
    return pieces, 0


def _decompress_body(data: bytes, max_bytes: int) -> bytes:
    """The plain bytes inside ``[9][msgpack compress]``."""
    obj, _ = _unpack_prefix(data, 1, "compress")
    return _decompress_fields(_COMPRESS.decode(obj), max_bytes)


def _decompress_fields(body: dict[str, Any], max_bytes: int) -> bytes:
    if body["Algo"] != 0:
        raise _bad(f"unknown compression algorithm {body['Algo']}", "compress")
    return lzw.decompress(body["Buf"], max_bytes=max_bytes)


def decode_packet(data: bytes) -> PacketContents:
    """Decode every message in a (decrypted) datagram.

    Raises:
        RemoteProtocolError: a bad CRC, an unknown type or a bad body anywhere.
    """
    parts, truncated, had_crc = packet_parts(data)
    return PacketContents([decode(part) for part in parts], truncated, had_crc)


# ---------------------------------------------------------------------------
# Stream layer (TCP): lives in stream_codec.py, re-exported here for callers of
# ``wire.StreamReader`` and ``wire.encode_stream``. Imported last because
# stream_codec uses the schemas above; ``decode`` uses StreamReader at call time.

from .stream_codec import StreamReader, encode_stream, encode_user_stream  # noqa: E402
