"""Raft storage: ``MemoryStorage`` (-dev, simulator) and ``FileStorage`` (``data_dir/raft/``).

Theory of operation.

*Model.* Both storages keep the same abstract state: the hard state (term, vote),
the newest snapshot, and a log that holds exactly the entries ``start .. next-1``
with no gap (``_LogModel``). A ``Persist`` is applied field by field in the order
its docstring gives: ``snapshot`` (a snapshot at or past the end of the log also
restarts the log just after it, so the next entry can follow it), ``log_start``
(entries below it are dropped), ``truncate_from`` (entries at or after it are
dropped), ``entries`` (each must carry the next index: asserting this is what lets
recovery tell a corrupt record from a good one), then ``term``/``voted_for``.
``load()`` returns the hard state, the snapshot and the entries above the snapshot's
index. ``MemoryStorage`` is that model and nothing else; the tests use it as the
oracle for ``FileStorage``.

*Files* (``FileStorage``, folder created with mode 0700):

* ``meta``: one record ``[term, voted_for]``; replaced atomically (``meta.tmp``,
  fsync, rename, fsync of the folder) and only when the batch changed it. An
  unreadable meta is ``StorageCorrupt``: a forgotten vote could elect two leaders.
* ``log``: append-only records ``[u32 len][u32 crc32][msgpack payload]`` (big-endian),
  payloads ``[0, index, term, kind, data]`` (entry), ``[1, index]`` (truncate_from),
  ``[2, index]`` (log_start). ``load()`` replays them through the model. The first
  record that is short, fails its crc, does not decode, or carries an entry that does
  not follow ends the log: a WARNING names its offset and the bytes cut, the file is
  truncated there and fsynced, and nothing after it is ever returned. A crash can
  only tear the records of the last batch, which were never acknowledged; a flipped
  bit earlier also cuts everything after it, which is the best that can be done
  without a second copy. When more than half the records (and more than
  ``compact_min_records``) are dead (below ``log_start`` or truncated), the file is
  rewritten with the live records only (``log.tmp``, fsync, rename, folder fsync).
* ``snapshots/<term>-<index>.snap``: one crc'd record of the snapshot, written via a
  ``.tmp`` file, fsync, rename and folder fsync; the newest two (by index) are kept.
  ``load()`` uses the newest readable one. An unreadable newest snapshot is logged
  and renamed to ``.corrupt``; the older one is used only if the log still covers
  every index up to the bad one (otherwise committed entries would be forgotten,
  so ``StorageCorrupt``). Snapshot files that exist but none readable: ``StorageCorrupt``.

*Durability* (the driver contract in docs/internals.md): ``persist(batch)`` writes the
meta first (so the stored term is never below a stored entry's term), then the
snapshot, then all log records in one write, then fsyncs the log once. A batch of
entries alone therefore costs exactly one fsync; ``stats["fsyncs"]`` counts every
fsync, folders included (``stats["dir_fsyncs"]`` counts those apart).

File I/O is this module's job, so it uses ``os``; it imports no clock, thread or
socket. The driver calls it from a worker thread, one call at a time.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any, Sequence

import msgpack

from .codec import entry_from_wire, entry_to_wire, snapshot_from_wire, snapshot_to_wire
from .errors import StorageCorrupt
from .events import Persist
from .types import Entry, PersistentState, Snapshot

__all__ = ["MemoryStorage", "FileStorage"]

_HEADER = struct.Struct(">II")  # payload length, crc32 of the payload
_ENTRY, _TRUNCATE_FROM, _LOG_START = 0, 1, 2  # log record payload kinds
_SNAPSHOT_NAME = re.compile(r"^(\d+)-(\d+)\.snap$")
_SNAPSHOTS_KEPT = 2


class _LogModel:
    """A gap-free run of entries ``start .. next_index-1``."""

    def __init__(self) -> None:
        self.start = 1                     # index of the first entry the log may hold
        self.entries: list[Entry] = []     # entries[i].index == start + i

    @property
    def next_index(self) -> int:
        return self.start + len(self.entries)

    def set_start(self, index: int) -> bool:
        """Drop entries below ``index``; False when that changes nothing."""
        if index <= self.start:
            return False
        if index >= self.next_index:
            self.entries = []
        else:
            del self.entries[:index - self.start]
        self.start = index
        return True

    def truncate_from(self, index: int) -> bool:
        """Drop entries at or after ``index``; False when that changes nothing."""
        if index >= self.next_index:
            return False
        del self.entries[max(0, index - self.start):]
        return True

    def append(self, entry: Entry) -> bool:
        """Add ``entry`` if it carries the next index; False (and no change) otherwise."""
        if entry.index != self.next_index:
            return False
        self.entries.append(entry)
        return True

    def entries_after(self, index: int) -> tuple[Entry, ...]:
        return tuple(self.entries[max(0, index + 1 - self.start):])


class _State:
    """Hard state, newest snapshot and log: what a sequence of ``Persist`` leaves behind."""

    def __init__(self) -> None:
        self.term = 0
        self.voted_for: str | None = None
        self.snapshot: Snapshot | None = None
        self.log = _LogModel()

    def apply(self, persist: Persist) -> list[list[Any]]:
        """Apply one ``Persist``; return the log record payloads that replay it."""
        records: list[list[Any]] = []
        snapshot = persist.snapshot
        if snapshot is not None:
            assert self.snapshot is None or snapshot.index >= self.snapshot.index, \
                f"snapshot {snapshot.index} older than stored {self.snapshot.index}"
            self.snapshot = snapshot
            if snapshot.index >= self.log.next_index and self.log.set_start(snapshot.index + 1):
                records.append([_LOG_START, snapshot.index + 1])
        if persist.log_start is not None and self.log.set_start(persist.log_start):
            records.append([_LOG_START, persist.log_start])
        if persist.truncate_from is not None and self.log.truncate_from(persist.truncate_from):
            records.append([_TRUNCATE_FROM, persist.truncate_from])
        for entry in persist.entries:
            if not self.log.append(entry):
                raise AssertionError(f"entry index {entry.index} does not follow "
                                     f"{self.log.next_index - 1}")
            records.append([_ENTRY, *entry_to_wire(entry)])
        self.term, self.voted_for = persist.term, persist.voted_for
        return records

    def persistent_state(self) -> PersistentState:
        after = self.snapshot.index if self.snapshot is not None else 0
        return PersistentState(self.term, self.voted_for, self.snapshot, self.log.entries_after(after))


class MemoryStorage:
    """Storage that lives as long as the object (``-dev``, the simulator, the oracle in tests).

    The simulator keeps the object across a simulated restart and calls ``load()``
    again; every ``persist`` is durable at once.
    """

    def __init__(self) -> None:
        self._state = _State()
        self.stats: dict[str, int] = {"batches": 0, "records_written": 0}

    def load(self) -> PersistentState:
        return self._state.persistent_state()

    def persist(self, batch: Sequence[Persist]) -> None:
        """Apply every ``Persist`` of the batch in order."""
        for persist in batch:
            self.stats["records_written"] += len(self._state.apply(persist))
        self.stats["batches"] += 1

    def close(self) -> None:
        """Nothing to release."""


# ---------------------------------------------------------------------------
# Records: [u32 len][u32 crc32][payload]


def _record(payload: object) -> bytes:
    body = msgpack.packb(payload, use_bin_type=True)
    return _HEADER.pack(len(body), zlib.crc32(body)) + body


def _read_record(data: bytes, offset: int) -> tuple[object, int]:
    """The payload at ``offset`` and the offset after it; ValueError naming the fault."""
    if len(data) - offset < _HEADER.size:
        raise ValueError("short header")
    length, crc = _HEADER.unpack_from(data, offset)
    start = offset + _HEADER.size
    if len(data) - start < length:
        raise ValueError("short body")
    body = data[start:start + length]
    if zlib.crc32(body) != crc:
        raise ValueError("bad crc")
    try:
        return msgpack.unpackb(body, raw=False), start + length
    except Exception:  # msgpack raises several unrelated types
        raise ValueError("undecodable payload") from None


def _replay_record(log: _LogModel, payload: object) -> None:
    """Apply one log record to ``log``; ValueError when it is malformed or does not follow."""
    if not isinstance(payload, list) or not payload:
        raise ValueError("undecodable payload")
    kind, rest = payload[0], payload[1:]
    if kind == _ENTRY:
        entry = entry_from_wire(rest)
        if not log.append(entry):
            raise ValueError(f"entry index {entry.index} does not follow {log.next_index - 1}")
        return
    if kind in (_TRUNCATE_FROM, _LOG_START) and len(rest) == 1 and type(rest[0]) is int \
            and rest[0] >= 1:
        (log.truncate_from if kind == _TRUNCATE_FROM else log.set_start)(rest[0])
        return
    raise ValueError("undecodable payload")


def _replay(data: bytes) -> tuple[_LogModel, int, int, str | None]:
    """Replay a log file: (model, good records, end of the last good one, fault or None)."""
    log, count, offset = _LogModel(), 0, 0
    while offset < len(data):
        try:
            payload, after = _read_record(data, offset)
            _replay_record(log, payload)
        except ValueError as exc:
            return log, count, offset, str(exc)
        count, offset = count + 1, after
    return log, count, offset, None


class FileStorage:
    """Raft state in a folder (``data_dir/raft/``): meta, log and snapshots.

    Args:
        folder: created with mode 0700 if missing.
        log: the node's logger adapter.
        compact_min_records: the log file is rewritten only past this many records.
    """

    def __init__(self, folder: Path, log: logging.LoggerAdapter,
                 *, compact_min_records: int = 1024) -> None:
        self.folder = Path(folder)
        self._logger = log
        self._compact_min_records = compact_min_records
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.folder / "snapshots").mkdir(mode=0o700, exist_ok=True)
        self._state = _State()
        self._fd: int | None = None        # the log, opened for appending by load()
        self._records_in_file = 0          # live and dead records in the log file
        self.stats: dict[str, int] = dict.fromkeys((
            "batches", "records_written", "bytes_written", "fsyncs", "dir_fsyncs",
            "meta_writes", "snapshots_written", "snapshots_deleted", "snapshots_unreadable",
            "log_rewrites", "tail_cuts", "tail_bytes_cut"), 0)

    @property
    def log_path(self) -> Path:
        return self.folder / "log"

    # -- loading ----------------------------------------------------------

    def load(self) -> PersistentState:
        """Read meta, snapshot and log; cut a torn or corrupt log tail.

        Raises:
            StorageCorrupt: meta unreadable, or no usable snapshot where one is needed.
        """
        self.close()
        for leftover in ("meta.tmp", "log.tmp"):
            (self.folder / leftover).unlink(missing_ok=True)
        state = _State()
        state.term, state.voted_for = self._read_meta()
        state.log, self._records_in_file = self._recover_log()
        state.snapshot = self._load_snapshot(state.log)
        self._state = state
        self._open_log()
        if self._needs_rewrite():
            self._rewrite_log()
        loaded = state.persistent_state()
        self._logger.info("raft storage loaded term=%d snapshot_index=%d entries=%d",
                          loaded.term, state.snapshot.index if state.snapshot else 0,
                          len(loaded.entries))
        return loaded

    def _read_meta(self) -> tuple[int, str | None]:
        path = self.folder / "meta"
        if not path.exists():
            return 0, None
        data = path.read_bytes()
        try:
            payload, end = _read_record(data, 0)
            if end != len(data) or not isinstance(payload, list) or len(payload) != 2:
                raise ValueError("bad shape")
            term, voted_for = payload
            if type(term) is not int or term < 0 or not (voted_for is None or isinstance(voted_for, str)):
                raise ValueError("bad values")
        except ValueError as exc:
            raise StorageCorrupt(f"raft meta file {path} is unreadable: {exc}") from None
        return term, voted_for

    def _recover_log(self) -> tuple[_LogModel, int]:
        """Replay the log file, cutting it after the last good record."""
        path = self.log_path
        data = path.read_bytes() if path.exists() else b""
        model, count, good_end, fault = _replay(data)
        if fault is not None:
            cut = len(data) - good_end
            self._logger.warning("raft log tail cut offset=%d bytes=%d reason=%s",
                                 good_end, cut, fault)
            with open(path, "r+b") as handle:
                handle.truncate(good_end)
                self._fsync(handle.fileno())
            self.stats["tail_cuts"] += 1
            self.stats["tail_bytes_cut"] += cut
        return model, count

    def _snapshot_files(self) -> list[tuple[int, int, Path]]:
        """(index, term, path) of every snapshot file, newest first."""
        found = []
        for path in (self.folder / "snapshots").iterdir():
            match = _SNAPSHOT_NAME.match(path.name)
            if match:
                found.append((int(match.group(2)), int(match.group(1)), path))
            elif path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
        return sorted(found, reverse=True)

    def _load_snapshot(self, log: _LogModel) -> Snapshot | None:
        """The newest readable snapshot; an unreadable newer one is set aside if safe."""
        files = self._snapshot_files()
        bad: list[tuple[int, Path]] = []
        for index, term, path in files:
            try:
                snapshot = _read_snapshot(path, index, term)
            except ValueError as exc:
                self._logger.warning("raft snapshot unreadable path=%s reason=%s", path.name, exc)
                self.stats["snapshots_unreadable"] += 1
                bad.append((index, path))
                continue
            if bad and (log.start > snapshot.index + 1 or log.next_index - 1 < bad[0][0]):
                raise StorageCorrupt(f"newest raft snapshot {bad[0][1]} is unreadable and the log "
                                     f"does not cover it from snapshot {path.name}")
            self._set_aside(bad)
            return snapshot
        if files:
            raise StorageCorrupt(f"no readable raft snapshot in {self.folder / 'snapshots'}")
        return None

    def _set_aside(self, bad: list[tuple[int, Path]]) -> None:
        """Rename unreadable snapshots so that they never count among the kept two."""
        for _, path in bad:
            path.rename(path.with_name(path.name + ".corrupt"))
        if bad:
            self._fsync_dir(self.folder / "snapshots")

    def _open_log(self) -> None:
        created = not self.log_path.exists()
        self._fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if created:
            self._fsync_dir(self.folder)

    # -- persisting ------------------------------------------------------

    def persist(self, batch: Sequence[Persist]) -> None:
        """Write every ``Persist`` of the batch, then fsync the log once."""
        if not batch:
            return
        if self._fd is None:
            self.load()
        before = (self._state.term, self._state.voted_for)
        snapshot_before = self._state.snapshot
        records: list[bytes] = []
        for persist in batch:
            records += [_record(payload) for payload in self._state.apply(persist)]
        if (self._state.term, self._state.voted_for) != before:
            self._write_meta(self._state.term, self._state.voted_for)
        if self._state.snapshot is not snapshot_before and self._state.snapshot is not None:
            self._write_snapshot(self._state.snapshot)
        self.stats["batches"] += 1
        if not records:
            return
        self._write_all(b"".join(records))
        self._records_in_file += len(records)
        self.stats["records_written"] += len(records)
        if self._needs_rewrite():
            self._rewrite_log()  # the rewritten file is fsynced: no separate fsync needed
        else:
            assert self._fd is not None
            self._fsync(self._fd)

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None, "storage is closed"
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.stats["bytes_written"] += len(data)

    def _write_meta(self, term: int, voted_for: str | None) -> None:
        self._replace(self.folder / "meta", _record([term, voted_for]))
        self.stats["meta_writes"] += 1

    def _write_snapshot(self, snapshot: Snapshot) -> None:
        """Store ``snapshot`` durably, then delete all but the newest two."""
        folder = self.folder / "snapshots"
        payload = snapshot_to_wire(snapshot)
        self._replace(folder / f"{snapshot.term}-{snapshot.index}.snap", _record(payload))
        self.stats["snapshots_written"] += 1
        for _, _, path in self._snapshot_files()[_SNAPSHOTS_KEPT:]:
            path.unlink(missing_ok=True)   # an old snapshot left behind by a crash is harmless
            self.stats["snapshots_deleted"] += 1

    def _replace(self, path: Path, data: bytes) -> None:
        """Atomically replace ``path`` by ``data``: tmp file, fsync, rename, folder fsync."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            self._fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self._fsync_dir(path.parent)

    def _needs_rewrite(self) -> bool:
        live = len(self._state.log.entries) + 1   # + the log_start record
        dead = self._records_in_file - live
        return self._records_in_file > self._compact_min_records and dead > live

    def _rewrite_log(self) -> None:
        """Replace the log file by the live records: one log_start, then the entries."""
        log = self._state.log
        records = [_record([_LOG_START, log.start])]
        records += [_record([_ENTRY, *entry_to_wire(entry)]) for entry in log.entries]
        dead = self._records_in_file - len(records)
        self.close()
        self._replace(self.log_path, b"".join(records))
        self._fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND)
        self._records_in_file = len(records)
        self.stats["log_rewrites"] += 1
        self._logger.info("raft log rewritten live_records=%d dead_records=%d", len(records), dead)

    def _fsync(self, fd: int) -> None:
        os.fsync(fd)
        self.stats["fsyncs"] += 1

    def _fsync_dir(self, folder: Path) -> None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)
        self.stats["dir_fsyncs"] += 1

    def close(self) -> None:
        """Close the log file; a later ``load()`` reopens it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_snapshot(path: Path, index: int, term: int) -> Snapshot:
    """Read one snapshot file; ValueError when it is damaged or does not match its name."""
    data = path.read_bytes()
    payload, end = _read_record(data, 0)
    if end != len(data):
        raise ValueError("trailing bytes")
    snapshot = snapshot_from_wire(payload)
    if (snapshot.index, snapshot.term) != (index, term):
        raise ValueError("snapshot does not match its file name")
    return snapshot
