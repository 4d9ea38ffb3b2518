"""Raft's messages, one frozen dataclass each (Raft paper figure 2 plus extensions).

Every message names its sender by id and raft address, so a receiver can answer a
server it does not know yet (a new non-voter, a peer whose address changed).
Extensions beyond the paper: ``pre_vote`` (section 9.6 of Ongaro's thesis),
``leadership_transfer`` with ``TimeoutNow`` (thesis 3.10), and the conflict hint in
``AppendEntriesResponse`` for fast back-off (paper section 5.3, last paragraphs).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .types import Entry, Snapshot


class MessageType(IntEnum):
    """Wire numbers; append only."""

    REQUEST_VOTE = 1
    REQUEST_VOTE_RESPONSE = 2
    APPEND_ENTRIES = 3
    APPEND_ENTRIES_RESPONSE = 4
    INSTALL_SNAPSHOT = 5
    INSTALL_SNAPSHOT_RESPONSE = 6
    TIMEOUT_NOW = 7


@dataclass(frozen=True, slots=True)
class RequestVote:
    """A candidate (or pre-candidate) asks for a vote."""

    term: int                 # for a pre-vote: the term the candidate would move to
    source_id: str
    source_address: str
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    leadership_transfer: bool = False   # sent after TimeoutNow: skip leader stickiness


@dataclass(frozen=True, slots=True)
class RequestVoteResponse:
    term: int
    source_id: str
    source_address: str
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """Replication and heartbeat from the leader."""

    term: int
    source_id: str
    source_address: str
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse:
    term: int
    source_id: str
    source_address: str
    success: bool
    last_log_index: int        # success: the follower's match index; failure: its last index
    conflict_index: int = 0    # failure: first index of conflict_term in the follower's log
    conflict_term: int = 0     # failure: term at prev_log_index in the follower's log (0: none)


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """The whole snapshot in one message (shoal's state is small)."""

    term: int
    source_id: str
    source_address: str
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class InstallSnapshotResponse:
    term: int
    source_id: str
    source_address: str
    success: bool
    last_index: int


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer: the target campaigns at once (no pre-vote)."""

    term: int
    source_id: str
    source_address: str


Message = (RequestVote | RequestVoteResponse | AppendEntries | AppendEntriesResponse
           | InstallSnapshot | InstallSnapshotResponse | TimeoutNow)

MESSAGE_TYPES: dict[type, MessageType] = {
    RequestVote: MessageType.REQUEST_VOTE,
    RequestVoteResponse: MessageType.REQUEST_VOTE_RESPONSE,
    AppendEntries: MessageType.APPEND_ENTRIES,
    AppendEntriesResponse: MessageType.APPEND_ENTRIES_RESPONSE,
    InstallSnapshot: MessageType.INSTALL_SNAPSHOT,
    InstallSnapshotResponse: MessageType.INSTALL_SNAPSHOT_RESPONSE,
    TimeoutNow: MessageType.TIMEOUT_NOW,
}
