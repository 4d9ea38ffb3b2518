"""Value types shared by the gossip cores, the driver and the agent."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Mapping

from .messages import MemberStatus, NodeState

Address = tuple[str, int]
"""(IP as text, port). Always numeric: names are resolved by the caller."""


def ip_to_bytes(ip: str) -> bytes:
    """The 4-byte (IPv4) or 16-byte (IPv6) form memberlist puts on the wire."""
    return ipaddress.ip_address(ip).packed


@functools.lru_cache(maxsize=4096)  # pure; every alive/ping decodes one (the simulator's hot path)
def ip_from_bytes(raw: bytes) -> str:
    """Text form of a wire IP; an IPv4-mapped 16-byte address becomes plain IPv4.

    Raises:
        ValueError: ``raw`` is not 4 or 16 bytes.
    """
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if len(raw) == 16:
        address = ipaddress.IPv6Address(raw)
        return str(address.ipv4_mapped) if address.ipv4_mapped else str(address)
    raise ValueError(f"IP of {len(raw)} bytes")


@dataclass(frozen=True, slots=True)
class NodeView:
    """A memberlist node record as others may read it."""

    name: str
    addr: str
    port: int
    meta: bytes
    vsn: bytes
    incarnation: int
    state: NodeState
    state_change: float
    """Monotonic time of the last state change."""

    @property
    def pmin(self) -> int:
        return self.vsn[0] if len(self.vsn) >= 3 else 0

    @property
    def pmax(self) -> int:
        return self.vsn[1] if len(self.vsn) >= 3 else 0


@dataclass(frozen=True, slots=True)
class Member:
    """A Serf member, the shape ``/v1/agent/members`` and ``serf members`` show."""

    name: str
    addr: str
    port: int
    tags: Mapping[str, str] = field(default_factory=dict)
    status: MemberStatus = MemberStatus.ALIVE
    protocol_min: int = 1
    protocol_max: int = 5
    protocol_cur: int = 2
    delegate_min: int = 2
    delegate_max: int = 5
    delegate_cur: int = 4
