"""Value types shared by the raftlite core, codec, storage and driver.

Everything here is immutable. A ``Configuration`` is the set of servers with their
suffrage; it travels inside CONFIGURATION log entries (msgpack of ``to_wire()``) and
inside snapshots. Server ids are opaque strings: a node UUID under raft protocol 3,
the address ``ip:port`` under protocol 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

import msgpack


class Suffrage(StrEnum):
    """A server's right to vote, spelt as hashicorp/raft prints it."""

    VOTER = "Voter"
    NONVOTER = "Nonvoter"
    STAGING = "Staging"


class Role(StrEnum):
    """A raft server's role, spelt as ``stats.raft.state`` shows it."""

    FOLLOWER = "Follower"
    CANDIDATE = "Candidate"
    LEADER = "Leader"
    SHUTDOWN = "Shutdown"


@dataclass(frozen=True, slots=True)
class Server:
    """One member of a raft configuration."""

    id: str
    address: str
    suffrage: Suffrage = Suffrage.VOTER

    @property
    def is_voter(self) -> bool:
        return self.suffrage == Suffrage.VOTER


@dataclass(frozen=True, slots=True)
class Configuration:
    """The servers of a raft cluster, sorted by id."""

    servers: tuple[Server, ...] = ()

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.servers, key=lambda s: s.id))
        object.__setattr__(self, "servers", ordered)
        assert len({s.id for s in ordered}) == len(ordered), "duplicate server id"

    def voters(self) -> tuple[str, ...]:
        """Ids of the voting servers, sorted."""
        return tuple(s.id for s in self.servers if s.is_voter)

    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.servers)

    def get(self, server_id: str) -> Server | None:
        for server in self.servers:
            if server.id == server_id:
                return server
        return None

    def with_server(self, server: Server) -> "Configuration":
        """This configuration with ``server`` added or replaced (by id)."""
        return Configuration(tuple(s for s in self.servers if s.id != server.id) + (server,))

    def without(self, server_id: str) -> "Configuration":
        return Configuration(tuple(s for s in self.servers if s.id != server_id))

    def to_wire(self) -> list[dict[str, str]]:
        return [{"ID": s.id, "Address": s.address, "Suffrage": s.suffrage.value}
                for s in self.servers]

    @classmethod
    def from_wire(cls, obj: object) -> "Configuration":
        """Rebuild from ``to_wire()`` output; ValueError when the shape is wrong."""
        if not isinstance(obj, list):
            raise ValueError("configuration is not a list")
        servers = []
        for item in obj:
            if not isinstance(item, dict):
                raise ValueError("configuration server is not a map")
            sid, address, suffrage = item.get("ID"), item.get("Address"), item.get("Suffrage")
            if not isinstance(sid, str) or not isinstance(address, str) or not sid:
                raise ValueError("configuration server lacks ID or Address")
            try:
                servers.append(Server(sid, address, Suffrage(suffrage)))
            except ValueError:
                raise ValueError(f"unknown suffrage {suffrage!r}") from None
        if len({s.id for s in servers}) != len(servers):
            raise ValueError("duplicate server id in configuration")
        return cls(tuple(servers))

    def encode(self) -> bytes:
        """The bytes a CONFIGURATION entry carries."""
        return msgpack.packb(self.to_wire(), use_bin_type=True)

    @classmethod
    def decode(cls, data: bytes) -> "Configuration":
        """Inverse of ``encode``; ValueError on bad bytes."""
        try:
            obj = msgpack.unpackb(data, raw=False)
        except Exception as exc:  # msgpack raises several unrelated types
            raise ValueError(f"bad configuration bytes: {exc}") from None
        return cls.from_wire(obj)

    def describe(self) -> str:
        """Go's ``%+v`` form used by ``stats.raft.latest_configuration``."""
        inner = " ".join(f"{{Suffrage:{s.suffrage.value} ID:{s.id} Address:{s.address}}}"
                         for s in self.servers)
        return f"[{inner}]"


class EntryKind(IntEnum):
    """What a log entry carries."""

    COMMAND = 0          # opaque bytes for the state machine
    NOOP = 1             # a new leader's first entry (commits earlier terms, section 5.4.2)
    CONFIGURATION = 2    # Configuration.encode()


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry."""

    index: int
    term: int
    kind: EntryKind
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state machine at ``index``/``term`` and the configuration in force there."""

    index: int
    term: int
    configuration: Configuration
    configuration_index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class PersistentState:
    """What storage hands back on start: term, vote, snapshot, entries after it."""

    term: int = 0
    voted_for: str | None = None
    snapshot: Snapshot | None = None
    entries: tuple[Entry, ...] = ()

    def is_empty(self) -> bool:
        """True when nothing was ever stored: only then may a server bootstrap."""
        return self.term == 0 and self.voted_for is None and self.snapshot is None and not self.entries
