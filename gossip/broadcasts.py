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

Structure. memberlist keeps one btree ordered by (transmits, -length, -id). Here the
queue is split into tiers, one per transmit count (``_tiers``, transmit count ->
``_Tier``; ``_levels`` is the sorted list of counts in use, a handful at most, as a
message leaves after ``transmit_limit`` sends). A tier keeps its items' keys
``(length, id)`` in a sorted list, so within a tier the largest message that fits a
budget, newest among equals, is one ``bisect`` (the key just below
``(free, +inf)``); insert and remove are a ``bisect`` plus a list move (C memmove;
the lists are at most a few thousand long). One fetch therefore costs
O(taken * (tiers + log n)) instead of a scan of the whole queue per message taken;
``prune`` pops from the far end of the highest tier.

While one fetch runs, the messages it took are out of the queue and go back in at
their new transmit count when it ends (as memberlist's ``GetBroadcasts`` does), so
a message is never taken twice in one fetch.

The same class serves memberlist's queue and Serf's three queues. Pure: no time,
no I/O; ids are a counter, so the order is deterministic.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
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

    def tier_key(self) -> tuple[int, int]:
        """Position inside its tier, ascending; the best fit is the largest key that fits."""
        return (len(self.message), self.id)


@dataclass(slots=True)
class _Tier:
    """The items sent ``transmits`` times, keyed by (length, id) ascending."""

    keys: list[tuple[int, int]] = field(default_factory=list)
    items: dict[int, _Item] = field(default_factory=dict)  # by id


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
        self._tiers: dict[int, _Tier] = {}
        self._levels: list[int] = []  # sorted transmit counts that have a tier
        self._by_name: dict[str, _Item] = {}
        self._count = 0
        self._next_id = 0

    def __len__(self) -> int:
        return self._count

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
        self._insert(item)
        if name is not None:
            self._by_name[name] = item

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Take messages filling at most ``limit`` bytes, each costing ``overhead`` extra.

        Returns:
            the messages in the order taken (possibly empty).
        """
        if not self._count:
            return []
        transmit_limit = retransmit_limit(self.retransmit_mult, self._num_nodes())
        taken: list[_Item] = []
        used = 0
        while True:
            free = limit - used - overhead
            if free <= 0:
                break
            item = self._best_fit(free)
            if item is None:
                break
            self._unlink(item)  # out of the queue until this fetch ends
            used += overhead + len(item.message)
            taken.append(item)
        for item in taken:
            item.transmits += 1
            if item.transmits < transmit_limit:
                self._insert(item)
            else:
                self._finish(item)
        if not self._count:
            self._next_id = 0
        return [item.message for item in taken]

    def _best_fit(self, free: int) -> _Item | None:
        """The first item in queue order no longer than ``free``."""
        probe = (free, math.inf)
        for level in self._levels:
            tier = self._tiers[level]
            index = bisect.bisect_right(tier.keys, probe)
            if index:
                return tier.items[tier.keys[index - 1][1]]
        return None

    def prune(self, max_retain: int) -> None:
        """Keep at most ``max_retain`` messages, dropping the most-sent, smallest, oldest."""
        while self._count > max(max_retain, 0):
            tier = self._tiers[self._levels[-1]]
            self._remove(tier.items[tier.keys[0][1]])

    def reset(self) -> None:
        """Drop every message (each ``on_finished`` runs, oldest message first)."""
        for item in sorted(self._ordered(), key=lambda item: item.id):
            self._remove(item)
        self._next_id = 0

    def transmits(self, name: str) -> int | None:
        """How often the queued message named ``name`` was sent; None if none is queued."""
        item = self._by_name.get(name)
        return None if item is None else item.transmits

    def messages(self) -> list[bytes]:
        """The queued messages in serving order (for tests and diagnostics)."""
        return [item.message for item in self._ordered()]

    def _ordered(self) -> list[_Item]:
        """Every item in serving order: tiers ascending, keys descending within one."""
        out: list[_Item] = []
        for level in self._levels:
            tier = self._tiers[level]
            out.extend(tier.items[key[1]] for key in reversed(tier.keys))
        return out

    def _insert(self, item: _Item) -> None:
        tier = self._tiers.get(item.transmits)
        if tier is None:
            tier = self._tiers[item.transmits] = _Tier()
            bisect.insort(self._levels, item.transmits)
        bisect.insort(tier.keys, item.tier_key())
        tier.items[item.id] = item
        self._count += 1

    def _unlink(self, item: _Item) -> None:
        """Take ``item`` out of its tier (its name entry stays)."""
        tier = self._tiers[item.transmits]
        key = item.tier_key()
        index = bisect.bisect_left(tier.keys, key)
        assert tier.keys[index] == key
        del tier.keys[index]
        del tier.items[item.id]
        self._count -= 1
        if not tier.keys:
            del self._tiers[item.transmits]
            self._levels.remove(item.transmits)

    def _remove(self, item: _Item) -> None:
        self._unlink(item)
        if not self._count:
            self._next_id = 0
        self._finish(item)

    def _finish(self, item: _Item) -> None:
        """``item`` has left the queue for good: forget its name, run its callback."""
        if item.name is not None and self._by_name.get(item.name) is item:
            del self._by_name[item.name]
        if item.on_finished is not None:
            item.on_finished()
