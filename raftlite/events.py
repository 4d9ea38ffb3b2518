"""Outputs of ``RaftCore`` (drained by ``take_outputs()``), and its stats snapshot.

The driver performs a batch in this order (the rule etcd raft's Ready states):
every ``Persist`` of the batch, one fsync, then every ``Send``, then ``Restore`` and
``Apply`` on the state machine, then ``RoleChanged``/``SnapshotWanted``. The core may
therefore treat what it emitted in a ``Persist`` as durable when it emits a ``Send``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .messages import Message
from .types import Entry, Role, Snapshot


@dataclass(frozen=True, slots=True)
class Persist:
    """Durable changes, applied by storage in this field order.

    Attributes:
        term, voted_for: the hard state after this batch (always both given).
        snapshot: a snapshot to store (compaction or an installed one), or None.
        log_start: entries below this index may be discarded, or None.
        truncate_from: entries at or after this index are discarded, or None.
        entries: entries to append (after truncation), in index order.
    """

    term: int
    voted_for: str | None
    snapshot: Snapshot | None = None
    log_start: int | None = None
    truncate_from: int | None = None
    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` to server ``to_id`` at raft address ``to_address``."""

    to_id: str
    to_address: str
    message: Message


@dataclass(frozen=True, slots=True)
class Apply:
    """Committed entries, in index order, each handed out once per process life."""

    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Restore:
    """An installed snapshot: replace the state machine's state with ``snapshot.data``."""

    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """The role, term or known leader changed."""

    role: Role
    term: int
    leader_id: str | None
    leader_address: str | None


@dataclass(frozen=True, slots=True)
class SnapshotWanted:
    """The log passed ``snapshot_threshold``: call ``compact()`` with a state machine snapshot."""

    applied_index: int


Output = Persist | Send | Apply | Restore | RoleChanged | SnapshotWanted


@dataclass(frozen=True, slots=True)
class RaftStats:
    """A frozen snapshot of a core's counters and gauges (``stats.raft`` reads it)."""

    counters: Mapping[str, int] = field(default_factory=dict)
    role: Role = Role.FOLLOWER
    term: int = 0
    last_log_index: int = 0
    last_log_term: int = 0
    commit_index: int = 0
    applied_index: int = 0
    last_snapshot_index: int = 0
    last_snapshot_term: int = 0
    configuration_index: int = 0
