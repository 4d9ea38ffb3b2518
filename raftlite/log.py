"""``RaftLog``: the in-memory log of one raft server (Raft paper figure 2, section 7).

Theory of operation. The log is a snapshot point ``(snapshot_index, snapshot_term)``
plus a contiguous run of entries starting at ``start``. After a compaction that kept
``trailing_logs`` entries, the run may begin at or before the snapshot point
(``start <= snapshot_index + 1`` always holds), so a follower a little behind is
still served from entries rather than a snapshot. Index 0 / term 0 is the empty
log's sentinel: every log "contains" it.

This module decides nothing about terms or leaders; it answers the questions the
core asks (term at an index, where two logs diverge, the first index of a term for
the fast back-off hint) and performs the three edits the core makes: append,
truncate a suffix, compact a prefix. Storage mirrors these edits through
``Persist`` outputs emitted by the core, never by this class.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from .types import Entry


class RaftLog:
    """Entries after (and possibly a few before) the latest snapshot point."""

    def __init__(self, snapshot_index: int = 0, snapshot_term: int = 0,
                 entries: Sequence[Entry] = ()) -> None:
        """Rebuild a log; ``entries`` must be contiguous (they may overlap the snapshot)."""
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        # Keep only entries that connect with the snapshot point: a gap means the
        # stored entries are older than the snapshot and useless.
        usable = [e for e in entries if e.index > 0]
        if usable and usable[0].index > snapshot_index + 1:
            usable = []
        if usable and usable[-1].index <= snapshot_index:
            usable = []
        self._entries: list[Entry] = usable
        self.start = usable[0].index if usable else snapshot_index + 1
        self._check()

    def _check(self) -> None:
        assert self.start <= self.snapshot_index + 1, (self.start, self.snapshot_index)
        for offset, entry in enumerate(self._entries):
            assert entry.index == self.start + offset, "log entries are not contiguous"

    # ------------------------------------------------------------------ queries

    @property
    def last_index(self) -> int:
        """Index of the last entry, or the snapshot index when no entry follows it."""
        if self._entries:
            return max(self._entries[-1].index, self.snapshot_index)
        return self.snapshot_index

    @property
    def last_term(self) -> int:
        """Term of the last entry (the snapshot's term when the log is empty)."""
        term = self.term_at(self.last_index)
        assert term is not None
        return term

    def __len__(self) -> int:
        """Entries held in memory (including trailing ones before the snapshot)."""
        return len(self._entries)

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; None when it was compacted or does not exist."""
        if index == 0:
            return 0
        if index == self.snapshot_index:
            return self.snapshot_term
        entry = self.get(index)
        return None if entry is None else entry.term

    def get(self, index: int) -> Entry | None:
        """The entry at ``index`` if it is held in memory."""
        offset = index - self.start
        if 0 <= offset < len(self._entries):
            return self._entries[offset]
        return None

    def slice(self, low: int, high: int) -> tuple[Entry, ...]:
        """Entries with ``low <= index < high`` (all must be held; see ``has_from``)."""
        if high <= low:
            return ()
        assert low >= self.start, (low, self.start)
        return tuple(self._entries[low - self.start:high - self.start])

    def has_from(self, index: int) -> bool:
        """True when every entry from ``index`` to the end is held in memory."""
        return index >= self.start

    def entries(self) -> tuple[Entry, ...]:
        """Every entry held in memory, in index order."""
        return tuple(self._entries)

    def matches(self, index: int, term: int) -> bool:
        """Log matching property (section 5.3): does our entry at ``index`` have ``term``?"""
        return self.term_at(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Election restriction (section 5.4.1): is a log ending at ``(last_term, last_index)``
        at least as up to date as ours?"""
        return (last_term, last_index) >= (self.last_term, self.last_index)

    def first_index_of_term(self, index: int) -> int:
        """First index of the run of entries sharing the term of the entry at ``index``.

        Used for the fast back-off hint (paper section 5.3): the leader may skip the
        whole conflicting term in one round trip. Never returns an index below the
        first one whose term we know.
        """
        term = self.term_at(index)
        assert term is not None
        first = index
        while first - 1 >= max(self.start, 1) and self.term_at(first - 1) == term:
            first -= 1
        return first

    def last_index_of_term(self, term: int) -> int | None:
        """Highest index whose entry has ``term`` (leader side of the back-off), or None."""
        for entry in reversed(self._entries):
            if entry.term == term:
                return entry.index
            if entry.term < term:
                break
        if self.snapshot_term == term:
            return self.snapshot_index
        return None

    def find_conflict(self, entries: Iterable[Entry]) -> int | None:
        """Index of the first of ``entries`` that is new or differs in term from ours.

        Entries at or before the snapshot point are committed, so they never conflict.
        """
        for entry in entries:
            if entry.index <= self.snapshot_index:
                continue
            term = self.term_at(entry.index)
            if term != entry.term:
                return entry.index
        return None

    # ------------------------------------------------------------------ edits

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries that continue the log exactly."""
        for entry in entries:
            assert entry.index == self.last_index + 1, (entry.index, self.last_index)
            if not self._entries:
                self.start = entry.index
            self._entries.append(entry)

    def truncate_from(self, index: int) -> None:
        """Drop every entry at or after ``index`` (never committed ones: the core checks)."""
        assert index > self.snapshot_index, (index, self.snapshot_index)
        if index < self.start:
            index = self.start
        del self._entries[index - self.start:]

    def compact(self, index: int, term: int, keep_from: int) -> None:
        """Move the snapshot point to ``(index, term)`` and drop entries below ``keep_from``.

        When our entry at ``index`` has another term (an installed snapshot that
        disagrees with us), every entry is dropped: nothing after it can be trusted.
        """
        assert index >= self.snapshot_index
        if self.term_at(index) != term or index > self.last_index:
            self._entries = []
            self.start = index + 1
        else:
            keep_from = max(min(keep_from, index + 1), self.start)
            del self._entries[:keep_from - self.start]
            self.start = keep_from if self._entries else index + 1
        self.snapshot_index = index
        self.snapshot_term = term
        self._check()
