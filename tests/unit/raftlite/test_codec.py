"""raftlite.codec: every message round-trips; any bytes decode or raise RaftProtocolError."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from raftlite.codec import decode_message, encode_message
from raftlite.errors import RaftProtocolError
from raftlite.messages import (AppendEntries, AppendEntriesResponse, InstallSnapshot,
                               InstallSnapshotResponse, RequestVote, RequestVoteResponse,
                               TimeoutNow)
from raftlite.types import Configuration, Entry, EntryKind, Server, Snapshot, Suffrage

U64 = st.integers(0, 2**64 - 1)
SMALL = st.integers(0, 1000)
TEXT = st.text(max_size=10)
SERVER = st.builds(Server, id=st.text(min_size=1, max_size=8), address=TEXT,
                   suffrage=st.sampled_from(Suffrage))
CONFIGURATION = st.lists(SERVER, max_size=4, unique_by=lambda s: s.id).map(
    lambda servers: Configuration(tuple(servers)))


@st.composite
def entry_runs(draw: st.DrawFn) -> tuple[Entry, ...]:
    """Entries with strictly increasing indexes and kinds that fit their data."""
    indexes = sorted(draw(st.sets(st.integers(1, 2**64 - 1), max_size=5)))
    entries = []
    for index in indexes:
        kind = draw(st.sampled_from(EntryKind))
        data = (draw(CONFIGURATION).encode() if kind == EntryKind.CONFIGURATION
                else draw(st.binary(max_size=16)))
        entries.append(Entry(index, draw(U64), kind, data))
    return tuple(entries)


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    index = draw(U64)
    return Snapshot(index, draw(U64), draw(CONFIGURATION), draw(st.integers(0, index)),
                    draw(st.binary(max_size=32)))


def common() -> dict[str, st.SearchStrategy[object]]:
    return {"term": U64, "source_id": TEXT, "source_address": TEXT}


MESSAGES = st.one_of(
    st.builds(RequestVote, last_log_index=U64, last_log_term=U64, pre_vote=st.booleans(),
              leadership_transfer=st.booleans(), **common()),
    st.builds(RequestVoteResponse, granted=st.booleans(), pre_vote=st.booleans(), **common()),
    st.builds(AppendEntries, prev_log_index=U64, prev_log_term=U64, entries=entry_runs(),
              leader_commit=U64, **common()),
    st.builds(AppendEntriesResponse, success=st.booleans(), last_log_index=U64,
              conflict_index=U64, conflict_term=U64, **common()),
    st.builds(InstallSnapshot, snapshot=snapshots(), **common()),
    st.builds(InstallSnapshotResponse, success=st.booleans(), last_index=U64, **common()),
    st.builds(TimeoutNow, **common()),
)

# Values a mutated field may take: every msgpack shape, including wrong ones.
ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | TEXT | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=8)


def decode_or_protocol_error(data: bytes) -> None:
    """Decode ``data``; a RaftProtocolError is fine, a decoded message must re-encode."""
    try:
        message = decode_message(data)
    except RaftProtocolError as exc:
        assert exc.reason in {"decode", "unknown_type", "bad_field"}
        return
    assert decode_message(encode_message(message)) == message


@given(MESSAGES)
def test_every_message_round_trips(message: object) -> None:
    """Encoding then decoding gives the same message back, and encoding is canonical."""
    data = encode_message(message)  # type: ignore[arg-type]
    decoded = decode_message(data)
    assert decoded == message
    assert encode_message(decoded) == data


@given(st.binary(max_size=200))
@example(b"")
@example(b"\xc1")
@example(b"\x92\x03\xc0")
@example(b"\x92\x03\x80\x00")
def test_any_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    """Arbitrary bytes never raise anything but RaftProtocolError."""
    decode_or_protocol_error(data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(MESSAGES, st.data())
def test_mutated_encodings_raise_only_protocol_error(message: object, data: st.DataObject) -> None:
    """Bytes flipped, cut or inserted into a valid encoding never raise anything else."""
    encoded = bytearray(encode_message(message))  # type: ignore[arg-type]
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(encoded)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and position < len(encoded):
            encoded[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "cut":
            del encoded[position:]
        else:
            encoded[position:position] = data.draw(st.binary(min_size=1, max_size=3))
    decode_or_protocol_error(bytes(encoded))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(MESSAGES, st.data())
def test_mutated_fields_raise_only_protocol_error(message: object, data: st.DataObject) -> None:
    """Any value put in any key (nested in entries and snapshots too) decodes or is bad_field."""
    number, body = msgpack.unpackb(encode_message(message), raw=False)  # type: ignore[arg-type]
    key = data.draw(st.sampled_from(sorted(body) + ["Unknown"]))
    target = body
    if key in ("Entries", "Snapshot") and data.draw(st.booleans()) and body[key]:
        target = body[key]
        key = (data.draw(st.integers(0, len(target) - 1)) if isinstance(target, list)
               else data.draw(st.sampled_from(sorted(target))))
        if isinstance(target, list) and data.draw(st.booleans()):
            target, key = target[key], data.draw(st.integers(0, 3))
    if data.draw(st.booleans()):
        target[key] = data.draw(ANY_VALUE)
    elif isinstance(target, dict):
        target.pop(key, None)
    decode_or_protocol_error(msgpack.packb([number, body], use_bin_type=True))


def vote_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {"Term": 2, "ID": "a", "Addr": "127.0.0.1:4647", "LastLogIndex": 1,
                               "LastLogTerm": 1, "PreVote": False, "LeadershipTransfer": False}
    body.update(changes)
    return body


def append_body(entries: list[list[object]]) -> dict[str, object]:
    return {"Term": 2, "ID": "a", "Addr": "x", "PrevLogIndex": 0, "PrevLogTerm": 0,
            "Entries": entries, "LeaderCommit": 0}


GOOD_CONFIGURATION = Configuration((Server("a", "x"),)).encode()


@pytest.mark.parametrize(("obj", "reason"), [
    ("not a pair", "decode"),
    ([3], "decode"),
    ([3, []], "decode"),
    (["3", {}], "decode"),
    ([True, {}], "decode"),
    ([0, {}], "unknown_type"),
    ([99, {}], "unknown_type"),
    ([1, vote_body(Term=-1)], "bad_field"),
    ([1, vote_body(Term=True)], "bad_field"),
    ([1, vote_body(Term=1.0)], "bad_field"),
    ([1, vote_body(ID=b"a")], "bad_field"),
    ([1, vote_body(PreVote=1)], "bad_field"),
    ([1, {"Term": 2, "ID": "a"}], "bad_field"),
    ([3, append_body([[2, 1, 0, b""], [2, 1, 0, b""]])], "bad_field"),
    ([3, append_body([[3, 1, 0, b""], [2, 1, 0, b""]])], "bad_field"),
    ([3, append_body([[0, 1, 0, b""]])], "bad_field"),
    ([3, append_body([[1, 1, 7, b""]])], "bad_field"),
    ([3, append_body([[1, 1, 0, "text"]])], "bad_field"),
    ([3, append_body([[1, 1, 0]])], "bad_field"),
    ([3, append_body([[1, 1, 2, b"\x93not a configuration"]])], "bad_field"),
    ([5, {"Term": 1, "ID": "a", "Addr": "x", "Snapshot": {
        "Index": 3, "Term": 1, "Configuration": [{"ID": "a", "Address": "x", "Suffrage": "Boss"}],
        "ConfigurationIndex": 1, "Data": b""}}], "bad_field"),
    ([5, {"Term": 1, "ID": "a", "Addr": "x", "Snapshot": {
        "Index": 3, "Term": 1, "Configuration": [], "ConfigurationIndex": 4, "Data": b""}}],
     "bad_field"),
])
def test_bad_messages_name_their_reason(obj: object, reason: str) -> None:
    """Each kind of bad input is refused with the reason the module docstring gives."""
    with pytest.raises(RaftProtocolError) as caught:
        decode_message(msgpack.packb(obj, use_bin_type=True))
    assert caught.value.reason == reason


def test_missing_keys_with_defaults_take_them() -> None:
    """An older sender that omits an optional key (PreVote) still decodes, with the default."""
    body = vote_body()
    del body["PreVote"], body["LeadershipTransfer"]
    message = decode_message(msgpack.packb([1, body], use_bin_type=True))
    assert message == RequestVote(2, "a", "127.0.0.1:4647", 1, 1, False, False)


def test_unknown_keys_are_ignored_and_configuration_entries_decode() -> None:
    """Unknown keys are skipped; a CONFIGURATION entry carrying a valid configuration decodes."""
    body = append_body([[1, 1, 2, GOOD_CONFIGURATION], [2, 1, 1, b""]]) | {"Future": [1, 2]}
    message = decode_message(msgpack.packb([3, body], use_bin_type=True))
    assert isinstance(message, AppendEntries)
    assert [e.kind for e in message.entries] == [EntryKind.CONFIGURATION, EntryKind.NOOP]


def test_trailing_bytes_are_refused() -> None:
    """Bytes after the message are a decode error, not silently ignored."""
    data = encode_message(TimeoutNow(1, "a", "x")) + b"\x00"
    with pytest.raises(RaftProtocolError) as caught:
        decode_message(data)
    assert caught.value.reason == "decode"
