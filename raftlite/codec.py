"""Raft message codec: msgpack ``[type, {key: value}]``, strict on decode.

Theory of operation.

*Layout.* A message is one msgpack array of two items: the ``MessageType`` number and
a map from wire key to value. Each message's keys are listed in ``WIRE`` below,
never derived from Python names (STYLE.md section 9), so a renamed attribute cannot
change the bytes. Strings are msgpack str, ``data`` fields are msgpack bin
(``use_bin_type=True``). Entries travel as compact arrays ``[index, term, kind,
data]``; a snapshot is a map whose configuration is ``Configuration.to_wire()``.
Encoding is canonical: the same message always gives the same bytes.

*Decoding* trusts nothing. The reasons a ``RaftProtocolError`` carries:

* ``decode``: not msgpack, trailing bytes, or not a ``[int, map]`` pair;
* ``unknown_type``: a type number this version does not know;
* ``bad_field``: a key is missing (and has no default) or has the wrong shape:
  integers must be non-negative and below 2**64 (bools are not integers), strings
  must be str, flags must be bools, entries must have index >= 1 in strictly
  increasing order and a known kind, CONFIGURATION entries and snapshots must carry
  a valid configuration, and a snapshot's configuration index may not exceed its
  index.

Unknown keys are ignored and keys missing from an older sender take the dataclass
default, so a field can be added later without a new message type. Nothing but
``RaftProtocolError`` leaves ``decode_message``, whatever the bytes (tests check it
with Hypothesis). Pure: no I/O, no clock.

The entry and snapshot helpers (``entry_to_wire`` and friends) are shared with
``storage.py``, which writes the same shapes to disk.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import msgpack

from .errors import RaftProtocolError
from .messages import (MESSAGE_TYPES, AppendEntries, AppendEntriesResponse, InstallSnapshot,
                       InstallSnapshotResponse, Message, RequestVote,
                       RequestVoteResponse, TimeoutNow)
from .types import Configuration, Entry, EntryKind, Snapshot

__all__ = ["encode_message", "decode_message", "entry_to_wire", "entry_from_wire",
           "entries_from_wire", "snapshot_to_wire", "snapshot_from_wire", "WIRE"]

_UINT_LIMIT = 2**64  # msgpack's largest unsigned integer is 2**64 - 1


# ---------------------------------------------------------------------------
# Field shapes: each converts a Python value to its wire form and back. The
# ``from`` side raises ValueError with a short reason; decode_message turns that
# into RaftProtocolError("bad_field").


def _uint_from_wire(obj: object) -> int:
    if isinstance(obj, bool) or not isinstance(obj, int):
        raise ValueError(f"expected an unsigned integer, got {type(obj).__name__}")
    if not 0 <= obj < _UINT_LIMIT:
        raise ValueError(f"integer {obj} out of range")
    return obj


def _str_from_wire(obj: object) -> str:
    if not isinstance(obj, str):
        raise ValueError(f"expected a string, got {type(obj).__name__}")
    return obj


def _bool_from_wire(obj: object) -> bool:
    if not isinstance(obj, bool):
        raise ValueError(f"expected a bool, got {type(obj).__name__}")
    return obj


def _bytes_from_wire(obj: object) -> bytes:
    if not isinstance(obj, bytes):
        raise ValueError(f"expected bytes, got {type(obj).__name__}")
    return obj


def entry_to_wire(entry: Entry) -> list[Any]:
    """The compact array ``[index, term, kind, data]`` of one entry."""
    return [entry.index, entry.term, int(entry.kind), entry.data]


def entry_from_wire(obj: object) -> Entry:
    """Inverse of ``entry_to_wire``; ValueError when the shape or a value is wrong."""
    if not isinstance(obj, list) or len(obj) != 4:
        raise ValueError("entry is not a 4-item array")
    index, term = _uint_from_wire(obj[0]), _uint_from_wire(obj[1])
    if index < 1:
        raise ValueError("entry index 0")
    kind_number, data = _uint_from_wire(obj[2]), _bytes_from_wire(obj[3])
    try:
        kind = EntryKind(kind_number)
    except ValueError:
        raise ValueError(f"unknown entry kind {kind_number}") from None
    if kind == EntryKind.CONFIGURATION:
        Configuration.decode(data)  # raises ValueError when the payload is not a configuration
    return Entry(index, term, kind, data)


def entries_from_wire(obj: object) -> tuple[Entry, ...]:
    """A list of entries, checked to be in strictly increasing index order."""
    if not isinstance(obj, list):
        raise ValueError("entries is not an array")
    entries = tuple(entry_from_wire(item) for item in obj)
    for before, after in zip(entries, entries[1:]):
        if after.index <= before.index:
            raise ValueError(f"entry index {after.index} after {before.index}")
    return entries


def _entries_to_wire(entries: tuple[Entry, ...]) -> list[list[Any]]:
    return [entry_to_wire(entry) for entry in entries]


_SNAPSHOT_WIRE = ("Index", "Term", "Configuration", "ConfigurationIndex", "Data")


def snapshot_to_wire(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as a map (keys in ``_SNAPSHOT_WIRE``)."""
    return {"Index": snapshot.index, "Term": snapshot.term,
            "Configuration": snapshot.configuration.to_wire(),
            "ConfigurationIndex": snapshot.configuration_index, "Data": snapshot.data}


def snapshot_from_wire(obj: object) -> Snapshot:
    """Inverse of ``snapshot_to_wire``; ValueError when the shape or a value is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("snapshot is not a map")
    missing = [key for key in _SNAPSHOT_WIRE if key not in obj]
    if missing:
        raise ValueError(f"snapshot lacks {missing[0]}")
    index, term = _uint_from_wire(obj["Index"]), _uint_from_wire(obj["Term"])
    configuration_index = _uint_from_wire(obj["ConfigurationIndex"])
    if configuration_index > index:
        raise ValueError("snapshot configuration index beyond its index")
    configuration = Configuration.from_wire(obj["Configuration"])
    return Snapshot(index, term, configuration, configuration_index, _bytes_from_wire(obj["Data"]))


@dataclasses.dataclass(frozen=True, slots=True)
class _Shape:
    """How one kind of field goes to the wire and comes back."""

    to_wire: Callable[[Any], Any]
    from_wire: Callable[[object], Any]


def _same(value: Any) -> Any:
    return value


_UINT = _Shape(_same, _uint_from_wire)
_STR = _Shape(_same, _str_from_wire)
_BOOL = _Shape(_same, _bool_from_wire)
_ENTRIES = _Shape(_entries_to_wire, entries_from_wire)
_SNAPSHOT = _Shape(snapshot_to_wire, snapshot_from_wire)

# Wire keys per message: (wire key, attribute, shape). Append keys only; never rename.
_COMMON = (("Term", "term", _UINT), ("ID", "source_id", _STR), ("Addr", "source_address", _STR))
WIRE: dict[type, tuple[tuple[str, str, _Shape], ...]] = {
    RequestVote: _COMMON + (
        ("LastLogIndex", "last_log_index", _UINT), ("LastLogTerm", "last_log_term", _UINT),
        ("PreVote", "pre_vote", _BOOL), ("LeadershipTransfer", "leadership_transfer", _BOOL)),
    RequestVoteResponse: _COMMON + (("Granted", "granted", _BOOL), ("PreVote", "pre_vote", _BOOL)),
    AppendEntries: _COMMON + (
        ("PrevLogIndex", "prev_log_index", _UINT), ("PrevLogTerm", "prev_log_term", _UINT),
        ("Entries", "entries", _ENTRIES), ("LeaderCommit", "leader_commit", _UINT)),
    AppendEntriesResponse: _COMMON + (
        ("Success", "success", _BOOL), ("LastLogIndex", "last_log_index", _UINT),
        ("ConflictIndex", "conflict_index", _UINT), ("ConflictTerm", "conflict_term", _UINT)),
    InstallSnapshot: _COMMON + (("Snapshot", "snapshot", _SNAPSHOT),),
    InstallSnapshotResponse: _COMMON + (("Success", "success", _BOOL),
                                        ("LastIndex", "last_index", _UINT)),
    TimeoutNow: _COMMON,
}
_CLASSES: dict[int, type] = {int(number): cls for cls, number in MESSAGE_TYPES.items()}
assert set(WIRE) == set(MESSAGE_TYPES), "every message needs a wire key list"


def _defaults(cls: type) -> dict[str, Any]:
    """Attribute defaults of a message dataclass (used when an older sender omits a key)."""
    return {f.name: f.default for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING}


_DEFAULTS: dict[type, dict[str, Any]] = {cls: _defaults(cls) for cls in WIRE}


def encode_message(message: Message) -> bytes:
    """Encode one raft message as msgpack ``[type, {key: value}]``.

    Raises:
        AssertionError: ``message`` is not a raft message (our bug, not a peer's).
    """
    cls = type(message)
    assert cls in WIRE, f"not a raft message: {cls.__name__}"
    body = {key: shape.to_wire(getattr(message, attribute)) for key, attribute, shape in WIRE[cls]}
    return msgpack.packb([int(MESSAGE_TYPES[cls]), body], use_bin_type=True)


def decode_message(data: bytes) -> Message:
    """Decode bytes from a peer into a raft message.

    Raises:
        RaftProtocolError: for any bytes that are not a valid message; ``reason`` is
            ``decode``, ``unknown_type`` or ``bad_field``. Nothing else is raised.
    """
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise RaftProtocolError(f"undecodable raft message: {type(exc).__name__}", "decode") from None
    if not isinstance(obj, list) or len(obj) != 2 or not isinstance(obj[1], dict):
        raise RaftProtocolError("raft message is not a [type, map] pair", "decode")
    number, body = obj
    if isinstance(number, bool) or not isinstance(number, int):
        raise RaftProtocolError("raft message type is not an integer", "decode")
    cls = _CLASSES.get(number)
    if cls is None:
        raise RaftProtocolError(f"unknown raft message type {number}", "unknown_type")
    return _build(cls, body)


def _build(cls: type, body: dict[Any, Any]) -> Message:
    """Construct ``cls`` from its wire map; RaftProtocolError("bad_field") on any bad key."""
    values: dict[str, Any] = {}
    defaults = _DEFAULTS[cls]
    for key, attribute, shape in WIRE[cls]:
        if key not in body:
            if attribute not in defaults:
                raise RaftProtocolError(f"{cls.__name__} lacks {key}", "bad_field")
            values[attribute] = defaults[attribute]
            continue
        try:
            values[attribute] = shape.from_wire(body[key])
        except ValueError as exc:
            raise RaftProtocolError(f"{cls.__name__}.{key}: {exc}", "bad_field") from None
    return cls(**values)
