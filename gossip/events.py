"""What the gossip cores hand their driver: I/O commands and reported facts.

``GossipCore.take_outputs()`` returns these in the order they must be performed.
Commands are imperative (``SendPacket``); facts are past tense (``MemberJoined``).

Streams: the core numbers every TCP stream. For an outgoing one it emits
``OpenStream`` (connect to ``dest``, write ``data``, then feed every byte read back
through ``GossipCore.stream_data`` and the end through ``stream_closed``; report a
failed connect or I/O error through ``stream_failed``). An incoming connection is
announced with ``GossipCore.accept_stream`` which returns its id. ``WriteStream``
and ``CloseStream`` apply to either kind. The core owns stream deadlines: when a
stream passes its timeout it emits ``CloseStream`` and counts a drop.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import Address, Member

# --- I/O commands -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendPacket:
    """Send one UDP datagram from the gossip socket."""

    dest: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class OpenStream:
    """Connect over TCP to ``dest`` and write ``data``; replies go to ``stream_data``."""

    stream_id: int
    dest: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class WriteStream:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseStream:
    stream_id: int


# --- facts ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberJoined:
    member: Member


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """A member went to status left (graceful leave or force-leave of a failed one)."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberFailed:
    member: Member


@dataclass(frozen=True, slots=True)
class MemberUpdated:
    member: Member


@dataclass(frozen=True, slots=True)
class MemberReaped:
    member: Member


@dataclass(frozen=True, slots=True)
class UserEventReceived:
    name: str
    payload: bytes
    ltime: int
    coalesce: bool


@dataclass(frozen=True, slots=True)
class QueryReceived:
    """A user query for the application; answer with ``GossipCore.respond_query``."""

    handle: int
    name: str
    payload: bytes
    ltime: int
    source_node: str
    deadline: float


@dataclass(frozen=True, slots=True)
class QueryAckReceived:
    handle: int
    from_: str


@dataclass(frozen=True, slots=True)
class QueryResponseReceived:
    handle: int
    from_: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class QueryFinished:
    """A query this node started reached its deadline."""

    handle: int


@dataclass(frozen=True, slots=True)
class JoinFinished:
    """The result of ``GossipCore.join``: how many seeds answered, and every error."""

    join_id: int
    num_joined: int
    errors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LeaveFinished:
    """Graceful leave is done: the driver may stop."""


@dataclass(frozen=True, slots=True)
class ForceLeaveFinished:
    request_id: int
    error: str | None


@dataclass(frozen=True, slots=True)
class ShutdownRequested:
    """The core wants the agent to stop (e.g. it lost a name-conflict vote)."""

    reason: str


Output = (SendPacket | OpenStream | WriteStream | CloseStream | MemberJoined | MemberLeft
          | MemberFailed | MemberUpdated | MemberReaped | UserEventReceived | QueryReceived
          | QueryAckReceived | QueryResponseReceived | QueryFinished | JoinFinished
          | LeaveFinished | ForceLeaveFinished | ShutdownRequested)
