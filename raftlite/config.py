"""Raft timings, following hashicorp/raft's defaults, scaled by ``raft_multiplier``.

Nomad multiplies heartbeat, election and lease timeouts by ``raft_multiplier``
(1..10) so that slow or busy machines can trade failover speed for stability.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

MAX_RAFT_MULTIPLIER = 10


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Raft timings and limits.

    Attributes:
        heartbeat_timeout: a follower that hears from no leader for a random time in
            ``[heartbeat, 2*heartbeat)`` starts a (pre-)election. hashicorp/raft: 1 s.
        election_timeout: a candidate that wins no election within a random time in
            ``[election, 2*election)`` starts the next one. hashicorp/raft: 1 s.
        leader_lease_timeout: a leader that has not heard from a quorum of voters for
            this long steps down. hashicorp/raft: 500 ms.
        commit_timeout: the leader sends AppendEntries at least this often to a peer it
            has new entries or a new commit index for. hashicorp/raft: 50 ms.
        max_append_entries: entries per AppendEntries message. hashicorp/raft: 64.
        snapshot_threshold: log entries since the last snapshot before the core asks
            for one (``SnapshotWanted``). hashicorp/raft: 8192.
        trailing_logs: entries kept in the log after a snapshot, so a slightly slow
            follower catches up without a snapshot. hashicorp/raft: 10240.
        raft_multiplier: scales the three timeouts; 1..10 as Nomad allows.
    """

    heartbeat_timeout: float = 1.0
    election_timeout: float = 1.0
    leader_lease_timeout: float = 0.5
    commit_timeout: float = 0.05
    max_append_entries: int = 64
    snapshot_threshold: int = 8192
    trailing_logs: int = 10240
    raft_multiplier: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.raft_multiplier <= MAX_RAFT_MULTIPLIER:
            raise ConfigError(f"raft_multiplier cannot be {self.raft_multiplier}. "
                              f"Must be between 1 and {MAX_RAFT_MULTIPLIER}")
        for name in ("heartbeat_timeout", "election_timeout", "leader_lease_timeout",
                     "commit_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.leader_lease_timeout > self.heartbeat_timeout:
            raise ConfigError("leader_lease_timeout cannot be larger than heartbeat_timeout")
        if self.max_append_entries < 1 or self.snapshot_threshold < 1 or self.trailing_logs < 0:
            raise ConfigError("max_append_entries and snapshot_threshold must be positive")

    @property
    def heartbeat(self) -> float:
        """Follower timeout after multiplying."""
        return self.heartbeat_timeout * self.raft_multiplier

    @property
    def election(self) -> float:
        """Candidate timeout after multiplying."""
        return self.election_timeout * self.raft_multiplier

    @property
    def lease(self) -> float:
        """Leader lease after multiplying."""
        return self.leader_lease_timeout * self.raft_multiplier
