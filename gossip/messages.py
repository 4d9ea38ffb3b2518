"""One dataclass per memberlist and Serf wire message (spec: gossip-wire.md sections 3, 4, 8).

The classes hold decoded values only; ``gossip/wire.py`` turns them into bytes and
back. Each class lists its wire keys in ``WIRE`` as ``(go_key, attribute)`` pairs in
the order go-msgpack writes them (byte-wise sorted key names), so encoders never
derive keys from Python names. Strings are ``str``; IPs, meta, payloads and ``Vsn``
are ``bytes``. ``MessageType`` and ``SerfMessageType`` keep the Go numbers and only
grow at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar


class MessageType(IntEnum):
    """memberlist's message type byte (``net.go`` ``messageType``)."""

    PING = 0
    INDIRECT_PING = 1
    ACK = 2
    SUSPECT = 3
    ALIVE = 4
    DEAD = 5
    PUSH_PULL = 6
    COMPOUND = 7
    USER = 8
    COMPRESS = 9
    ENCRYPT = 10
    NACK = 11
    HAS_CRC = 12
    ERR = 13


class NodeState(IntEnum):
    """memberlist node state as carried in push/pull (``State`` field)."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


class SerfMessageType(IntEnum):
    """Serf's message type byte inside a memberlist user message (``messages.go``)."""

    LEAVE = 0
    JOIN = 1
    PUSH_PULL = 2
    USER_EVENT = 3
    QUERY = 4
    QUERY_RESPONSE = 5
    CONFLICT_RESPONSE = 6
    KEY_REQUEST = 7
    KEY_RESPONSE = 8
    RELAY = 9


class MemberStatus(IntEnum):
    """Serf member status (``MemberStatus``); ``str()`` gives the spelling HTTP uses."""

    NONE = 0
    ALIVE = 1
    LEAVING = 2
    LEFT = 3
    FAILED = 4

    def __str__(self) -> str:  # "alive", "leaving", ...
        return self.name.lower()


# ---------------------------------------------------------------------------
# memberlist messages


@dataclass(frozen=True, slots=True)
class Ping:
    """``ping`` (0). ``node`` is the intended target; Source* say where to ack."""

    seq_no: int
    node: str
    source_addr: bytes = b""
    source_port: int = 0
    source_node: str = ""
    TYPE: ClassVar[MessageType] = MessageType.PING
    # Source* are omitempty: the encoder leaves them out when empty/zero.
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (
        ("Node", "node"), ("SeqNo", "seq_no"), ("SourceAddr", "source_addr"),
        ("SourceNode", "source_node"), ("SourcePort", "source_port"),
    )


@dataclass(frozen=True, slots=True)
class IndirectPing:
    """``indirectPing`` (1): ask a relay to ping ``node`` at ``target:port`` for us."""

    seq_no: int
    target: bytes
    port: int
    node: str
    nack: bool = False
    source_addr: bytes = b""
    source_port: int = 0
    source_node: str = ""
    TYPE: ClassVar[MessageType] = MessageType.INDIRECT_PING
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (
        ("Nack", "nack"), ("Node", "node"), ("Port", "port"), ("SeqNo", "seq_no"),
        ("SourceAddr", "source_addr"), ("SourceNode", "source_node"),
        ("SourcePort", "source_port"), ("Target", "target"),
    )


@dataclass(frozen=True, slots=True)
class Ack:
    """``ack`` (2). ``payload`` is None when the Go side sends nil."""

    seq_no: int
    payload: bytes | None = None
    TYPE: ClassVar[MessageType] = MessageType.ACK
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (("Payload", "payload"), ("SeqNo", "seq_no"))


@dataclass(frozen=True, slots=True)
class Nack:
    """``nack`` (11): the relay got no ack from the target in time."""

    seq_no: int
    TYPE: ClassVar[MessageType] = MessageType.NACK
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (("SeqNo", "seq_no"),)


@dataclass(frozen=True, slots=True)
class Suspect:
    """``suspect`` (3): ``from_`` suspects ``node`` at ``incarnation``."""

    incarnation: int
    node: str
    from_: str
    TYPE: ClassVar[MessageType] = MessageType.SUSPECT
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (
        ("From", "from_"), ("Incarnation", "incarnation"), ("Node", "node"),
    )


@dataclass(frozen=True, slots=True)
class Alive:
    """``alive`` (4). ``vsn`` is the 6-byte [PMin PMax PCur DMin DMax DCur]."""

    incarnation: int
    node: str
    addr: bytes
    port: int
    meta: bytes
    vsn: bytes
    TYPE: ClassVar[MessageType] = MessageType.ALIVE
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (
        ("Addr", "addr"), ("Incarnation", "incarnation"), ("Meta", "meta"),
        ("Node", "node"), ("Port", "port"), ("Vsn", "vsn"),
    )


@dataclass(frozen=True, slots=True)
class Dead:
    """``dead`` (5); ``from_ == node`` means a graceful leave (state left)."""

    incarnation: int
    node: str
    from_: str
    TYPE: ClassVar[MessageType] = MessageType.DEAD
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (
        ("From", "from_"), ("Incarnation", "incarnation"), ("Node", "node"),
    )


@dataclass(frozen=True, slots=True)
class ErrResp:
    """``err`` (13), stream only."""

    error: str
    TYPE: ClassVar[MessageType] = MessageType.ERR
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (("Error", "error"),)


@dataclass(frozen=True, slots=True)
class UserMsg:
    """``user`` (8): opaque bytes for the delegate (Serf puts its messages here)."""

    payload: bytes
    TYPE: ClassVar[MessageType] = MessageType.USER


@dataclass(frozen=True, slots=True)
class PushNodeState:
    """One node entry of a push/pull (``pushNodeState``)."""

    name: str
    addr: bytes
    port: int
    meta: bytes
    incarnation: int
    state: int  # NodeState value; kept as int so unknown values survive decode
    vsn: bytes
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (
        ("Addr", "addr"), ("Incarnation", "incarnation"), ("Meta", "meta"),
        ("Name", "name"), ("Port", "port"), ("State", "state"), ("Vsn", "vsn"),
    )


@dataclass(frozen=True, slots=True)
class PushPull:
    """``pushPull`` (6), stream only: header, node states, then the user state bytes."""

    join: bool
    nodes: tuple[PushNodeState, ...]
    user_state: bytes = b""
    TYPE: ClassVar[MessageType] = MessageType.PUSH_PULL
    HEADER_WIRE: ClassVar[tuple[tuple[str, str], ...]] = (
        ("Join", "join"), ("Nodes", "nodes"), ("UserStateLen", "user_state_len"),
    )


MemberlistMessage = Ping | IndirectPing | Ack | Nack | Suspect | Alive | Dead | ErrResp | UserMsg | PushPull


# ---------------------------------------------------------------------------
# Serf messages (inside memberlist user messages)


@dataclass(frozen=True, slots=True)
class SerfLeave:
    """Serf leave intent (0)."""

    ltime: int
    node: str
    prune: bool = False
    TYPE: ClassVar[SerfMessageType] = SerfMessageType.LEAVE
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (("LTime", "ltime"), ("Node", "node"), ("Prune", "prune"))


@dataclass(frozen=True, slots=True)
class SerfJoin:
    """Serf join intent (1)."""

    ltime: int
    node: str
    TYPE: ClassVar[SerfMessageType] = SerfMessageType.JOIN
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (("LTime", "ltime"), ("Node", "node"))


@dataclass(frozen=True, slots=True)
class SerfUserEventEntry:
    """One event inside a push/pull ``Events`` slot."""

    name: str
    payload: bytes | None
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (("Name", "name"), ("Payload", "payload"))


@dataclass(frozen=True, slots=True)
class SerfUserEvents:
    """A non-nil slot of the push/pull event ring: all events of one LTime."""

    ltime: int
    events: tuple[SerfUserEventEntry, ...]
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (("Events", "events"), ("LTime", "ltime"))


@dataclass(frozen=True, slots=True)
class SerfPushPull:
    """Serf push/pull state (2), carried as memberlist push/pull user state."""

    ltime: int
    status_ltimes: dict[str, int]
    left_members: tuple[str, ...]
    event_ltime: int
    events: tuple[SerfUserEvents | None, ...]
    query_ltime: int
    TYPE: ClassVar[SerfMessageType] = SerfMessageType.PUSH_PULL
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (
        ("EventLTime", "event_ltime"), ("Events", "events"), ("LTime", "ltime"),
        ("LeftMembers", "left_members"), ("QueryLTime", "query_ltime"),
        ("StatusLTimes", "status_ltimes"),
    )


@dataclass(frozen=True, slots=True)
class SerfUserEvent:
    """Serf user event (3). ``cc`` = can coalesce. ``payload`` None encodes as nil."""

    ltime: int
    name: str
    payload: bytes | None
    cc: bool
    TYPE: ClassVar[SerfMessageType] = SerfMessageType.USER_EVENT
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (
        ("CC", "cc"), ("LTime", "ltime"), ("Name", "name"), ("Payload", "payload"),
    )


QUERY_FLAG_ACK = 1
QUERY_FLAG_NO_BROADCAST = 2
FILTER_NODE = 0
FILTER_TAG = 1


@dataclass(frozen=True, slots=True)
class SerfQuery:
    """Serf query (4). ``filters`` are encoded filters ``[type][msgpack]``."""

    ltime: int
    id: int
    addr: bytes
    port: int
    source_node: str
    filters: tuple[bytes, ...]
    flags: int
    relay_factor: int
    timeout_ns: int
    name: str
    payload: bytes | None
    TYPE: ClassVar[SerfMessageType] = SerfMessageType.QUERY
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (
        ("Addr", "addr"), ("Filters", "filters"), ("Flags", "flags"), ("ID", "id"),
        ("LTime", "ltime"), ("Name", "name"), ("Payload", "payload"), ("Port", "port"),
        ("RelayFactor", "relay_factor"), ("SourceNode", "source_node"), ("Timeout", "timeout_ns"),
    )


@dataclass(frozen=True, slots=True)
class SerfQueryResponse:
    """Serf query response (5); ``flags & 1`` marks an ack."""

    ltime: int
    id: int
    from_: str
    flags: int
    payload: bytes | None
    TYPE: ClassVar[SerfMessageType] = SerfMessageType.QUERY_RESPONSE
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (
        ("Flags", "flags"), ("From", "from_"), ("ID", "id"), ("LTime", "ltime"), ("Payload", "payload"),
    )


@dataclass(frozen=True, slots=True)
class SerfMemberRecord:
    """A Serf ``Member`` as sent in a conflict response (6)."""

    name: str
    addr: bytes
    port: int
    tags: dict[str, str]
    status: int
    protocol_min: int
    protocol_max: int
    protocol_cur: int
    delegate_min: int
    delegate_max: int
    delegate_cur: int
    TYPE: ClassVar[SerfMessageType] = SerfMessageType.CONFLICT_RESPONSE
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (
        ("Addr", "addr"), ("DelegateCur", "delegate_cur"), ("DelegateMax", "delegate_max"),
        ("DelegateMin", "delegate_min"), ("Name", "name"), ("Port", "port"),
        ("ProtocolCur", "protocol_cur"), ("ProtocolMax", "protocol_max"),
        ("ProtocolMin", "protocol_min"), ("Status", "status"), ("Tags", "tags"),
    )


@dataclass(frozen=True, slots=True)
class SerfKeyRequest:
    """Key-management request (7) inside an internal query payload."""

    key: bytes
    TYPE: ClassVar[SerfMessageType] = SerfMessageType.KEY_REQUEST
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (("Key", "key"),)


@dataclass(frozen=True, slots=True)
class SerfKeyResponse:
    """Key-management response (8) inside a query response payload."""

    result: bool
    message: str
    keys: tuple[str, ...] = ()
    primary_key: str = ""
    TYPE: ClassVar[SerfMessageType] = SerfMessageType.KEY_RESPONSE
    WIRE: ClassVar[tuple[tuple[str, str], ...]] = (
        ("Keys", "keys"), ("Message", "message"), ("PrimaryKey", "primary_key"), ("Result", "result"),
    )


@dataclass(frozen=True, slots=True)
class SerfRelay:
    """Relay (9): forward ``inner`` (a whole Serf message, type byte first) to ``dest``."""

    dest_ip: bytes
    dest_port: int
    dest_zone: str
    dest_name: str
    inner: bytes
    TYPE: ClassVar[SerfMessageType] = SerfMessageType.RELAY


SerfMessage = (SerfLeave | SerfJoin | SerfPushPull | SerfUserEvent | SerfQuery | SerfQueryResponse
               | SerfMemberRecord | SerfKeyRequest | SerfKeyResponse | SerfRelay)
