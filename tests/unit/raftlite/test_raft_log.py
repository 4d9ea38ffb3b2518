"""RaftLog: term lookup, conflict search, truncation and compaction."""

from __future__ import annotations

import pytest

from raftlite.log import RaftLog
from raftlite.types import Entry, EntryKind


def entries(*terms: int, start: int = 1) -> list[Entry]:
    return [Entry(start + i, term, EntryKind.COMMAND, b"") for i, term in enumerate(terms)]


def test_empty_log_holds_only_the_sentinel() -> None:
    """An empty log has last index 0, term 0, and knows term 0 at index 0 only."""
    log = RaftLog()
    assert (log.last_index, log.last_term) == (0, 0)
    assert log.term_at(0) == 0
    assert log.term_at(1) is None


def test_append_and_term_at() -> None:
    """Appended entries answer term lookups; indexes past the end answer None."""
    log = RaftLog()
    log.append(entries(1, 1, 2))
    assert (log.last_index, log.last_term) == (3, 2)
    assert [log.term_at(i) for i in range(5)] == [0, 1, 1, 2, None]


def test_append_refuses_a_gap() -> None:
    """Entries must continue the log exactly (an invariant, asserted)."""
    log = RaftLog()
    with pytest.raises(AssertionError):
        log.append(entries(1, start=2))


@pytest.mark.parametrize("incoming, conflict", [
    (entries(1, 1, 2), None),                 # all present
    (entries(1, 1, 2, 3), 4),                 # one new entry
    (entries(1, 3, start=2), 3),              # differs at 3
    (entries(2, start=1), 1),                 # differs at once
    ([], None),
])
def test_find_conflict(incoming: list[Entry], conflict: int | None) -> None:
    """The first entry that is new or has another term is the conflict (paper 5.3)."""
    log = RaftLog()
    log.append(entries(1, 1, 2))
    assert log.find_conflict(incoming) == conflict


def test_truncate_from_cuts_the_suffix() -> None:
    """truncate_from drops the entry at the index and everything after it."""
    log = RaftLog()
    log.append(entries(1, 1, 2, 2))
    log.truncate_from(3)
    assert (log.last_index, log.last_term) == (2, 1)
    log.append(entries(3, start=3))
    assert log.term_at(3) == 3


def test_first_and_last_index_of_term() -> None:
    """The back-off hints find the bounds of a term's run."""
    log = RaftLog()
    log.append(entries(1, 2, 2, 2, 4))
    assert log.first_index_of_term(4) == 2
    assert log.first_index_of_term(5) == 5
    assert log.last_index_of_term(2) == 4
    assert log.last_index_of_term(3) is None
    assert log.last_index_of_term(1) == 1


def test_up_to_date_compares_term_then_index() -> None:
    """Section 5.4.1: a later last term wins; with equal terms the longer log wins."""
    log = RaftLog()
    log.append(entries(1, 2, 2))
    assert log.is_up_to_date(3, 2)
    assert log.is_up_to_date(1, 3)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(9, 1)


def test_compact_keeps_trailing_entries() -> None:
    """Compaction moves the snapshot point and keeps entries from keep_from on."""
    log = RaftLog()
    log.append(entries(1, 1, 1, 2, 2, 2))
    log.compact(5, 2, keep_from=4)
    assert (log.snapshot_index, log.snapshot_term, log.start) == (5, 2, 4)
    assert log.term_at(3) is None and log.term_at(4) == 2 and log.term_at(5) == 2
    assert (log.last_index, log.last_term) == (6, 2)
    assert log.first_index_of_term(6) == 4


def test_compact_past_the_end_or_on_disagreement_empties_the_log() -> None:
    """An installed snapshot beyond our log, or disagreeing with it, leaves no entries."""
    log = RaftLog()
    log.append(entries(1, 1, 1))
    log.compact(10, 3, keep_from=11)
    assert (log.last_index, log.last_term, len(log)) == (10, 3, 0)
    other = RaftLog()
    other.append(entries(1, 1, 1, 1))
    other.compact(2, 5, keep_from=3)
    assert (other.last_index, other.last_term, len(other)) == (2, 5, 0)


def test_rebuild_from_snapshot_and_overlapping_entries() -> None:
    """A log rebuilt from storage accepts entries overlapping the snapshot point."""
    log = RaftLog(5, 2, entries(2, 2, 2, 3, start=4))
    assert log.start == 4 and log.last_index == 7 and log.term_at(5) == 2
    stale = RaftLog(9, 3, entries(1, 1))
    assert (stale.last_index, len(stale)) == (9, 0)
