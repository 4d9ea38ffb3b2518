"""Transmit-limited broadcast queues (spec gossip-wire.md 2.7; memberlist ``queue.go``).

Theory of operation. Gossip spreads a message by handing it to a few random peers
many times; a ``TransmitLimitedQueue`` holds the messages waiting for those hand-outs.
Every fetch (``get_broadcasts``) fills a byte budget and:

* serves the least-transmitted messages first (new news travels before old news);
* within one transmit count, takes the largest message that still fits, and among
  equal sizes the newest (memberlist's btree order: transmits asc, length desc,
  id desc);
* counts one more transmission for each message taken and drops a message once it
  has been sent ``retransmit_mult * ceil(log10(n + 1))`` times, ``n`` read from the
  ``num_nodes`` callable at each fetch.

A message may carry a ``name``: queueing a new message with the same name
discards the queued one (memberlist keys alive/suspect/dead by node name, so only
the latest news about a node circulates). Unnamed messages (Serf's intents, events
and queries) never replace each other. ``on_finished`` callbacks run when a message
leaves the queue for any reason (limit reached, replaced, pruned, reset), like
memberlist's ``Broadcast.Finished``.

The same class serves memberlist's queue and Serf's three queues. Pure: no time,
no I/O; ids are a counter, so the order is deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """Transmissions of one broadcast among ``n`` nodes: ``mult * ceil(log10(n + 1))``."""
    return retransmit_mult * math.ceil(math.log10(n + 1))


@dataclass(slots=True)
class _Item:
    message: bytes
    name: str | None
    id: int  # queue order stamp: higher is newer
    transmits: int
    on_finished: Callable[[], None] | None

    def sort_key(self) -> tuple[int, int, int]:
        """Position in memberlist's order; the smallest key is served first."""
        return (self.transmits, -len(self.message), -self.id)


class TransmitLimitedQueue:
    """A queue of broadcasts, each sent a bounded number of times."""

    def __init__(self, retransmit_mult: int, num_nodes: Callable[[], int]) -> None:
        """Make an empty queue.

        Args:
            retransmit_mult: ``retransmit_mult`` of the gossip config.
            num_nodes: current cluster size, read at every fetch for the limit.
        """
        self.retransmit_mult = retransmit_mult
        self._num_nodes = num_nodes
        self._items: list[_Item] = []
        self._by_name: dict[str, _Item] = {}
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._items)

    def queue(self, message: bytes, *, name: str | None = None,
              on_finished: Callable[[], None] | None = None) -> None:
        """Queue ``message``; a named message replaces a queued one of the same name.

        Args:
            message: the whole message as it goes in a packet.
            name: replacement key (memberlist: the node name), or None.
            on_finished: called once when the message leaves the queue.
        """
        if name is not None:
            old = self._by_name.get(name)
            if old is not None:
                self._remove(old)
        self._next_id += 1
        item = _Item(message, name, self._next_id, 0, on_finished)
        self._items.append(item)
        if name is not None:
            self._by_name[name] = item

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Take messages filling at most ``limit`` bytes, each costing ``overhead`` extra.

        Returns:
            the messages in the order taken (possibly empty).
        """
        if not self._items:
            return []
        transmit_limit = retransmit_limit(self.retransmit_mult, self._num_nodes())
        taken: list[_Item] = []
        used = 0
        while True:
            free = limit - used - overhead
            if free <= 0:
                break
            item = self._best_fit(free, taken)
            if item is None:
                break
            used += overhead + len(item.message)
            taken.append(item)
        out = []
        for item in taken:
            out.append(item.message)
            item.transmits += 1
            if item.transmits >= transmit_limit:
                self._remove(item)
        return out

    def _best_fit(self, free: int, taken: list[_Item]) -> _Item | None:
        """The first item in queue order (skipping ``taken``) no longer than ``free``."""
        best: _Item | None = None
        for item in self._items:
            if len(item.message) > free or any(item is t for t in taken):
                continue
            if best is None or item.sort_key() < best.sort_key():
                best = item
        return best

    def prune(self, max_retain: int) -> None:
        """Keep at most ``max_retain`` messages, dropping the most-sent, smallest, oldest."""
        while len(self._items) > max_retain:
            worst = max(self._items, key=_Item.sort_key)
            self._remove(worst)

    def reset(self) -> None:
        """Drop every message (each ``on_finished`` runs)."""
        for item in list(self._items):
            self._remove(item)
        self._next_id = 0

    def transmits(self, name: str) -> int | None:
        """How often the queued message named ``name`` was sent; None if none is queued."""
        item = self._by_name.get(name)
        return None if item is None else item.transmits

    def messages(self) -> list[bytes]:
        """The queued messages in serving order (for tests and diagnostics)."""
        return [item.message for item in sorted(self._items, key=_Item.sort_key)]

    def _remove(self, item: _Item) -> None:
        self._items = [other for other in self._items if other is not item]
        if item.name is not None and self._by_name.get(item.name) is item:
            del self._by_name[item.name]
        if not self._items:
            self._next_id = 0
        if item.on_finished is not None:
            item.on_finished()
