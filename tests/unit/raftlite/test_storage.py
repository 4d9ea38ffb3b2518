"""raftlite.storage: FileStorage matches MemoryStorage, recovers from torn and corrupt files."""

from __future__ import annotations

import logging
import stat
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftlite.errors import StorageCorrupt
from raftlite.events import Persist
from raftlite.storage import FileStorage, MemoryStorage
from raftlite.types import Configuration, Entry, EntryKind, PersistentState, Server, Snapshot

LOG = logging.LoggerAdapter(logging.getLogger("raftlite.storage"), {"node": "n1"})
CONFIGURATION = Configuration((Server("n1", "127.0.0.1:4647"),))


def entry(index: int, term: int = 1) -> Entry:
    return Entry(index, term, EntryKind.COMMAND, f"command {index}".encode())


def snapshot(index: int, term: int = 1, configuration_index: int = 1) -> Snapshot:
    return Snapshot(index, term, CONFIGURATION, configuration_index, f"state at {index}".encode())


def append(storage: FileStorage | MemoryStorage, *indexes: int, term: int = 1) -> None:
    """One single-entry batch per index."""
    for index in indexes:
        storage.persist([Persist(term, None, entries=(entry(index, term),))])


def reopen(storage: FileStorage, **options: int) -> tuple[FileStorage, PersistentState]:
    storage.close()
    fresh = FileStorage(storage.folder, LOG, **options)
    return fresh, fresh.load()


def record_offsets(path: Path) -> list[int]:
    """Byte offsets of every record of a (good) log file, plus its end."""
    data, offsets, offset = path.read_bytes(), [], 0
    while offset < len(data):
        offsets.append(offset)
        offset += 8 + struct.unpack_from(">I", data, offset)[0]
    return offsets + [offset]


@pytest.fixture
def storage(tmp_path: Path) -> FileStorage:
    store = FileStorage(tmp_path / "raft", LOG)
    store.load()
    return store


# ---------------------------------------------------------------------------
# The model and the oracle


def test_memory_storage_applies_fields_in_order() -> None:
    """snapshot, log_start, truncate_from, entries, then term/vote: load shows the result."""
    memory = MemoryStorage()
    assert memory.load().is_empty()
    append(memory, 1, 2, 3, 4, 5)
    memory.persist([Persist(3, "n2", snapshot=snapshot(2), log_start=2, truncate_from=4,
                            entries=(entry(4, 3), entry(5, 3)))])
    state = memory.load()
    assert (state.term, state.voted_for, state.snapshot) == (3, "n2", snapshot(2))
    assert state.entries == (entry(3), entry(4, 3), entry(5, 3))


def test_snapshot_past_the_log_restarts_it() -> None:
    """An installed snapshot beyond the last entry lets the next entry follow the snapshot."""
    memory = MemoryStorage()
    append(memory, 1, 2)
    memory.persist([Persist(2, None, snapshot=snapshot(50, 2), entries=(entry(51, 2),))])
    assert memory.load().entries == (entry(51, 2),)


def test_entries_that_do_not_follow_are_refused(storage: FileStorage) -> None:
    """A batch with a gap is our bug: AssertionError, and nothing reaches the file."""
    append(storage, 1)
    size = storage.log_path.stat().st_size
    with pytest.raises(AssertionError):
        storage.persist([Persist(1, None, entries=(entry(3),))])
    assert storage.log_path.stat().st_size == size


@st.composite
def persist_batches(draw: st.DrawFn) -> list[tuple[list[Persist], bool]]:
    """Batches of valid Persists (with a restart flag each), built against a tiny mirror."""
    start, next_index, snap_index = 1, 1, 0
    batches = []
    for _ in range(draw(st.integers(1, 8))):
        batch = []
        for _ in range(draw(st.integers(1, 3))):
            snap = None
            if draw(st.integers(0, 5)) == 0:
                index = draw(st.integers(max(1, snap_index), next_index + 2))
                snap, snap_index = snapshot(index, term=index), index
                if index >= next_index:
                    start = next_index = index + 1
            log_start = truncate = None
            if draw(st.integers(0, 3)) == 0:
                log_start = draw(st.integers(1, next_index + 2))
                if log_start > start:
                    next_index, start = max(next_index, log_start), log_start
            if draw(st.integers(0, 3)) == 0:
                # raft never cuts entries a snapshot covers (they are committed)
                truncate = draw(st.integers(max(1, snap_index + 1), max(snap_index + 1, next_index + 1)))
                next_index = max(start, min(next_index, truncate))
            count = draw(st.integers(0, 4))
            entries = tuple(entry(next_index + i, draw(st.integers(0, 3))) for i in range(count))
            next_index += count
            batch.append(Persist(draw(st.integers(0, 3)), draw(st.sampled_from([None, "a", "b"])),
                                 snap, log_start, truncate, entries))
        batches.append((batch, draw(st.booleans())))
    return batches


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(persist_batches())
def test_file_storage_matches_memory_storage(batches: list[tuple[list[Persist], bool]]) -> None:
    """Random persist sequences, with restarts and log rewrites, load as MemoryStorage says."""
    memory = MemoryStorage()
    with tempfile.TemporaryDirectory() as folder:
        files = FileStorage(Path(folder) / "raft", LOG, compact_min_records=3)
        files.load()
        for batch, restart in batches:
            memory.persist(batch)
            files.persist(batch)
            if restart:
                files, loaded = reopen(files, compact_min_records=3)
                assert loaded == memory.load()
        files, loaded = reopen(files, compact_min_records=3)
        assert loaded == memory.load()
        files.close()


# ---------------------------------------------------------------------------
# Restart and recovery


def test_restart_recovers_term_vote_snapshot_and_entries(storage: FileStorage) -> None:
    """Everything a batch persisted is there after a restart, entries after the snapshot only."""
    append(storage, 1, 2, 3)
    storage.persist([Persist(4, "n3", snapshot=snapshot(2), entries=(entry(4, 4),))])
    _, state = reopen(storage)
    assert state == PersistentState(4, "n3", snapshot(2), (entry(3), entry(4, 4)))


def test_folder_is_private(tmp_path: Path) -> None:
    """The raft folder is created with mode 0700."""
    FileStorage(tmp_path / "data" / "raft", LOG).close()
    assert stat.S_IMODE((tmp_path / "data" / "raft").stat().st_mode) == 0o700


def test_torn_tail_at_every_offset_is_cut(storage: FileStorage,
                                          caplog: pytest.LogCaptureFixture) -> None:
    """A last record cut at any byte is logged, never served, and removed from the file."""
    append(storage, 1, 2, 3)
    storage.close()
    pristine = storage.log_path.read_bytes()
    last, end = record_offsets(storage.log_path)[-2:]
    for cut in range(last + 1, end):
        storage.log_path.write_bytes(pristine[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="raftlite.storage"):
            fresh, state = reopen(storage)
        assert state.entries == (entry(1), entry(2)), f"cut at {cut}"
        assert f"raft log tail cut offset={last} bytes={cut - last}" in caplog.text
        assert storage.log_path.stat().st_size == last
        assert fresh.stats["tail_bytes_cut"] == cut - last
        append(fresh, 3)   # the log goes on after the cut
        fresh, state = reopen(fresh)
        assert state.entries == (entry(1), entry(2), entry(3))
        fresh.close()


@pytest.mark.parametrize("where", ["length", "crc", "body"])
def test_flipped_bit_cuts_everything_from_the_bad_record(storage: FileStorage, where: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A bit flipped in record 5 of 10 cuts records 5..10; records 1..4 survive."""
    append(storage, *range(1, 11))
    storage.close()
    offsets = record_offsets(storage.log_path)
    data = bytearray(storage.log_path.read_bytes())
    data[offsets[4] + {"length": 1, "crc": 5, "body": 10}[where]] ^= 0x10
    storage.log_path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="raftlite.storage"):
        _, state = reopen(storage)
    assert state.entries == tuple(entry(i) for i in range(1, 5))
    assert storage.log_path.stat().st_size == offsets[4]
    assert f"offset={offsets[4]} bytes={len(data) - offsets[4]}" in caplog.text


def test_entry_that_does_not_follow_is_cut(storage: FileStorage,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """A well-formed record whose index skips ahead ends the log like a corrupt one."""
    append(storage, 1, 2)
    storage.close()
    good = storage.log_path.stat().st_size
    other = FileStorage(storage.folder.parent / "other", LOG)
    other.load()
    append(other, 1, 2, 3, 4)
    other.close()
    tail = other.log_path.read_bytes()[record_offsets(other.log_path)[3]:]
    storage.log_path.write_bytes(storage.log_path.read_bytes() + tail)
    with caplog.at_level(logging.WARNING, logger="raftlite.storage"):
        _, state = reopen(storage)
    assert state.entries == (entry(1), entry(2))
    assert "does not follow" in caplog.text
    assert storage.log_path.stat().st_size == good


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_corrupt_meta_is_storage_corrupt(storage: FileStorage, damage: str) -> None:
    """An unreadable term/vote file stops the start: a lost vote could elect two leaders."""
    storage.persist([Persist(7, "n2")])
    storage.close()
    meta = storage.folder / "meta"
    data = bytearray(meta.read_bytes())
    if damage == "flip":
        data[-1] ^= 1
    meta.write_bytes({"flip": bytes(data), "truncate": bytes(data[:-2]),
                      "garbage": b"\x00" * 3 + bytes(data), "empty": b""}[damage])
    with pytest.raises(StorageCorrupt):
        reopen(storage)


def test_meta_is_replaced_only_when_term_or_vote_change(storage: FileStorage) -> None:
    """Batches that keep term and vote do not rewrite meta; a new vote does."""
    storage.persist([Persist(2, "n1", entries=(entry(1, 2),))])
    storage.persist([Persist(2, "n1", entries=(entry(2, 2),))])
    assert storage.stats["meta_writes"] == 1
    storage.persist([Persist(2, "n2")])
    assert storage.stats["meta_writes"] == 2
    _, state = reopen(storage)
    assert (state.term, state.voted_for) == (2, "n2")


# ---------------------------------------------------------------------------
# Snapshots


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_newest_two_snapshots_are_kept(storage: FileStorage) -> None:
    """After three snapshots only the newest two files remain."""
    append(storage, *range(1, 31))
    for index in (10, 20, 30):
        storage.persist([Persist(1, None, snapshot=snapshot(index))])
    names = sorted(p.name for p in (storage.folder / "snapshots").iterdir())
    assert names == ["1-20.snap", "1-30.snap"]
    assert storage.stats["snapshots_deleted"] == 1


def test_corrupt_newest_snapshot_falls_back_to_the_older(storage: FileStorage,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """With the log still covering it, a damaged newest snapshot gives way to the older one."""
    append(storage, *range(1, 31))
    storage.persist([Persist(1, None, snapshot=snapshot(10))])
    storage.persist([Persist(1, None, snapshot=snapshot(20), log_start=5)])
    storage.close()
    corrupt(storage.folder / "snapshots" / "1-20.snap")
    with caplog.at_level(logging.WARNING, logger="raftlite.storage"):
        fresh, state = reopen(storage)
    assert state.snapshot == snapshot(10)
    assert state.entries == tuple(entry(i) for i in range(11, 31))
    assert "raft snapshot unreadable path=1-20.snap" in caplog.text
    assert (storage.folder / "snapshots" / "1-20.snap.corrupt").exists()
    fresh.persist([Persist(1, None, snapshot=snapshot(25))])   # the bad file is not one of the two
    names = sorted(p.name for p in (storage.folder / "snapshots").iterdir())
    assert names == ["1-10.snap", "1-20.snap.corrupt", "1-25.snap"]


def test_corrupt_newest_snapshot_not_covered_by_the_log_is_storage_corrupt(
        storage: FileStorage) -> None:
    """Falling back would forget entries 11..20, so the start is refused."""
    append(storage, *range(1, 21))
    storage.persist([Persist(1, None, snapshot=snapshot(10))])
    storage.persist([Persist(1, None, snapshot=snapshot(20), log_start=21)])
    storage.close()
    corrupt(storage.folder / "snapshots" / "1-20.snap")
    with pytest.raises(StorageCorrupt):
        reopen(storage)


def test_no_readable_snapshot_is_storage_corrupt(storage: FileStorage) -> None:
    """Snapshot files exist but none can be read: StorageCorrupt, not an empty state."""
    append(storage, 1, 2, 3)
    storage.persist([Persist(1, None, snapshot=snapshot(3))])
    storage.close()
    corrupt(storage.folder / "snapshots" / "1-3.snap")
    with pytest.raises(StorageCorrupt):
        reopen(storage)


# ---------------------------------------------------------------------------
# Compaction and fsyncs


def test_rewrite_keeps_exactly_the_live_entries(tmp_path: Path) -> None:
    """When most records are dead the file is rewritten to log_start plus the live entries."""
    storage = FileStorage(tmp_path / "raft", LOG, compact_min_records=10)
    storage.load()
    append(storage, *range(1, 21))
    size_before = storage.log_path.stat().st_size
    storage.persist([Persist(1, None, snapshot=snapshot(16), log_start=15)])
    assert storage.stats["log_rewrites"] == 1
    assert len(record_offsets(storage.log_path)) - 1 == 1 + 6   # log_start + entries 15..20
    assert storage.log_path.stat().st_size < size_before
    append(storage, 21)
    storage, state = reopen(storage, compact_min_records=10)
    assert state.entries == tuple(entry(i) for i in range(17, 22))
    assert storage.stats["log_rewrites"] == 0
    storage.close()


def test_small_dead_prefix_is_not_rewritten(storage: FileStorage) -> None:
    """Below compact_min_records the log file is left alone."""
    append(storage, *range(1, 21))
    storage.persist([Persist(1, None, log_start=15)])
    assert storage.stats["log_rewrites"] == 0


def test_one_fsync_per_entry_batch(storage: FileStorage) -> None:
    """Entries alone cost one fsync; a term change adds the meta file's fsync and folder fsync."""
    before = dict(storage.stats)
    storage.persist([Persist(0, None, entries=(entry(1, 0),)),
                     Persist(0, None, entries=(entry(2, 0), entry(3, 0)))])
    assert storage.stats["fsyncs"] - before["fsyncs"] == 1
    assert storage.stats["dir_fsyncs"] == before["dir_fsyncs"]
    storage.persist([Persist(1, "n1", entries=(entry(4, 1),))])
    assert storage.stats["fsyncs"] - before["fsyncs"] == 1 + 3
    assert storage.stats["dir_fsyncs"] - before["dir_fsyncs"] == 1
    storage.persist([])
    assert storage.stats["fsyncs"] - before["fsyncs"] == 4


def test_thousand_single_entry_batches(storage: FileStorage) -> None:
    """1000 single-entry batches complete with one fsync each and all reload."""
    storage.persist([Persist(1, None)])   # the term first: meta is written once, here
    before = storage.stats["fsyncs"]
    append(storage, *range(1, 1001))
    assert storage.stats["fsyncs"] - before == 1000
    storage, state = reopen(storage)
    assert [e.index for e in state.entries] == list(range(1, 1001))
    storage.close()
