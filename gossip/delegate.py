"""The contract between the memberlist core and the Serf layer above it.

memberlist (``gossip/memberlist.py``) knows nodes, probes and dissemination; Serf
(``gossip/serf.py``) knows members, intents, events and queries. Go wires them with
delegates; shoal does the same with plain synchronous calls inside one pure core:
``Memberlist`` calls these methods on the object it was given, never awaiting and
never touching I/O. Both sides are deterministic given ``now``.
"""

from __future__ import annotations

from typing import Protocol

from .types import NodeView


class MemberlistDelegate(Protocol):
    """What memberlist asks of (and tells) the layer above it."""

    def node_meta(self, limit: int) -> bytes:
        """Our node's meta bytes (Serf: 0xff + msgpack tags), at most ``limit`` bytes."""

    def notify_user_msg(self, payload: bytes, source: tuple[str, int], now: float) -> None:
        """A type-8 user message arrived (UDP or stream); ``payload`` lacks the 8."""

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Up to ``limit`` bytes of queued Serf messages (each counted ``overhead`` extra).

        Each returned item is a whole Serf message (serf type byte first, no 8);
        memberlist prepends the 8 when it piggybacks them.
        """

    def has_broadcasts(self) -> bool:
        """Whether ``get_broadcasts`` would return anything (lets an idle node sleep
        through gossip ticks)."""

    def local_state(self, join: bool) -> bytes:
        """Serf's push/pull user state to send (type 2 first)."""

    def merge_remote_state(self, buf: bytes, join: bool, now: float) -> None:
        """Merge a peer's push/pull user state."""

    def notify_join(self, node: NodeView, now: float) -> None:
        """A node became alive (new, or back from dead/left)."""

    def notify_leave(self, node: NodeView, now: float) -> None:
        """A node became dead or left."""

    def notify_update(self, node: NodeView, now: float) -> None:
        """An alive node's meta changed."""

    def notify_conflict(self, existing: NodeView, other: NodeView, now: float) -> None:
        """Another address claims a known name (``other`` is the newcomer)."""

    def ack_payload(self) -> bytes | None:
        """The payload for our ping acks (Serf: coordinate); None for nil."""
