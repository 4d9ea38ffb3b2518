"""shoal's gossip package: memberlist + Serf, wire-compatible with serf 0.9.4.

Other packages use what ``__all__`` lists: ``GossipCore`` (the sans-IO facade),
its configuration, keyring, value types, the outputs it emits, its errors and
stats. The trio driver lives in ``gossip.driver`` and is imported from there.
"""

from .config import GossipConfig
from .core import GossipCore
from .errors import ConfigError, GossipError, LocalProtocolError, RemoteProtocolError, UnknownMember
from .events import (CloseStream, ForceLeaveFinished, JoinFinished, LeaveFinished, MemberFailed,
                     MemberJoined, MemberLeft, MemberReaped, MemberUpdated, OpenStream, Output,
                     QueryAckReceived, QueryFinished, QueryReceived, QueryResponseReceived,
                     SendPacket, ShutdownRequested, UserEventReceived, WriteStream)
from .keyring import Keyring
from .messages import MemberStatus
from .stats import Counters, GossipStats
from .types import Address, Member, NodeView

__all__ = [
    "Address",
    "CloseStream",
    "ConfigError",
    "Counters",
    "ForceLeaveFinished",
    "GossipConfig",
    "GossipCore",
    "GossipError",
    "GossipStats",
    "JoinFinished",
    "Keyring",
    "LeaveFinished",
    "LocalProtocolError",
    "Member",
    "MemberFailed",
    "MemberJoined",
    "MemberLeft",
    "MemberReaped",
    "MemberStatus",
    "MemberUpdated",
    "NodeView",
    "OpenStream",
    "Output",
    "QueryAckReceived",
    "QueryFinished",
    "QueryReceived",
    "QueryResponseReceived",
    "RemoteProtocolError",
    "SendPacket",
    "ShutdownRequested",
    "UnknownMember",
    "UserEventReceived",
    "WriteStream",
]
