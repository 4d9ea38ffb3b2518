"""Errors of the raftlite package (STYLE.md section 7).

* ``RaftProtocolError``: a peer sent bytes or a message we cannot accept; the caller
  drops it, logs a WARNING and counts it under ``reason``.
* ``NotLeader``: the operation surely did not happen; retry on the leader named.
* ``ConfigChangeInProgress``, ``UnknownServer``: a configuration change was refused
  and changed nothing.
* ``StorageCorrupt``: the state on disk cannot be used (not a torn tail, which is cut).
* ``ConfigError``: a bad setting, raised by constructors so a bad flag fails at start.
"""

from __future__ import annotations


class RaftError(Exception):
    """Base of every error raised by the raftlite package."""


class RaftProtocolError(RaftError):
    """A peer sent something wrong; drop it and count it under ``reason``."""

    def __init__(self, message: str, reason: str = "decode") -> None:
        super().__init__(message)
        self.reason = reason


class NotLeader(RaftError):
    """This server is not the leader; nothing was done.

    Args:
        leader_id: the leader this server knows of, or None.
        leader_address: its raft address ``ip:port``, or None.
    """

    def __init__(self, leader_id: str | None = None, leader_address: str | None = None) -> None:
        super().__init__("not leader" if leader_address is None
                         else f"not leader (leader is {leader_address})")
        self.leader_id = leader_id
        self.leader_address = leader_address


class ConfigChangeInProgress(RaftError):
    """Another configuration change is not committed yet (one change at a time)."""


class UnknownServer(RaftError):
    """A configuration change named a server that is not in the configuration."""


class StorageCorrupt(RaftError):
    """The raft state on disk is unusable beyond a torn tail (bad meta, bad snapshot)."""


class ConfigError(RaftError):
    """A raft setting is invalid."""
