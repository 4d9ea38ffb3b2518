"""raftlite: a Raft core (sans-IO), its storage and its trio driver.

Other packages use only the names listed here.
"""

from .config import RaftConfig
from .errors import (ConfigChangeInProgress, ConfigError, NotLeader, RaftError, RaftProtocolError,
                     StorageCorrupt, UnknownServer)
from .events import Apply, Output, Persist, RaftStats, Restore, RoleChanged, Send, SnapshotWanted
from .messages import (AppendEntries, AppendEntriesResponse, InstallSnapshot,
                       InstallSnapshotResponse, Message, RequestVote, RequestVoteResponse,
                       TimeoutNow)
from .types import Configuration, Entry, EntryKind, PersistentState, Role, Server, Snapshot, Suffrage

__all__ = [
    "AppendEntries", "AppendEntriesResponse", "Apply", "ConfigChangeInProgress", "ConfigError",
    "Configuration", "Entry", "EntryKind", "InstallSnapshot", "InstallSnapshotResponse",
    "Message", "NotLeader", "Output", "Persist", "PersistentState", "RaftConfig", "RaftError",
    "RaftProtocolError", "RaftStats", "RequestVote", "RequestVoteResponse", "Restore", "Role",
    "RoleChanged", "Send", "Server", "Snapshot", "SnapshotWanted", "StorageCorrupt", "Suffrage",
    "TimeoutNow", "UnknownServer",
]
