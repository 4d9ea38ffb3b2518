"""memberlist's node records and the shuffled probe list (spec gossip-wire.md 7.1, 7.3, 7.9).

Theory of operation. ``Members`` owns one ``NodeRecord`` per known node name,
ourselves included, in a list whose order is the probe order:

* a new node is inserted at a random position (so a node that joins is not always
  probed last, which would stretch the failure-detection bound);
* ``next_probe_target`` walks the list round-robin, skipping ourselves and nodes
  that are dead or left; when the walk wraps, dead nodes whose state is older than
  ``gossip_to_the_dead_time`` are forgotten and the list is reshuffled
  (memberlist ``probe``/``resetNodes``);
* left nodes are never forgotten here (memberlist 0.2.2 only reaps dead ones, 7.7).

``verify_protocol`` is memberlist's ``verifyProtocol`` for push/pull: every node,
local and remote, must speak versions inside the range all alive nodes understand.

Records are mutable and private to the memberlist core; others get ``NodeView``
snapshots. Randomness comes from the ``random.Random`` the core passes in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from .messages import NodeState, PushNodeState
from .types import NodeView


@dataclass(slots=True)
class NodeRecord:
    """What memberlist knows about one node."""

    name: str
    addr: str
    port: int
    meta: bytes
    vsn: bytes  # [PMin PMax PCur DMin DMax DCur], or b"" when never advertised
    incarnation: int
    state: NodeState
    state_change: float  # monotonic time of the last state change

    @property
    def pmax(self) -> int:
        """Highest memberlist protocol the node understands (0 when unknown)."""
        return self.vsn[1] if len(self.vsn) >= 6 else 0

    @property
    def address(self) -> tuple[str, int]:
        return (self.addr, self.port)

    def is_dead_or_left(self) -> bool:
        return self.state in (NodeState.DEAD, NodeState.LEFT)

    def view(self) -> NodeView:
        """A frozen snapshot for other modules."""
        return NodeView(self.name, self.addr, self.port, self.meta, self.vsn,
                        self.incarnation, self.state, self.state_change)


class Members:
    """The node map plus the probe-ordered list."""

    def __init__(self, local_name: str, rng: random.Random) -> None:
        self.local_name = local_name
        self._rng = rng
        self._by_name: dict[str, NodeRecord] = {}
        self._order: list[NodeRecord] = []
        self._probe_index = 0

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self):
        return iter(self._order)

    def get(self, name: str) -> NodeRecord | None:
        return self._by_name.get(name)

    def add(self, record: NodeRecord) -> None:
        """Insert a new node at a random place in the probe list."""
        assert record.name not in self._by_name
        self._by_name[record.name] = record
        n = len(self._order)
        offset = self._rng.randrange(n) if n > 0 else 0
        # Append, then swap with a random slot (memberlist does the same).
        self._order.append(record)
        self._order[offset], self._order[n] = self._order[n], self._order[offset]

    def next_probe_target(self, now: float, gossip_to_the_dead_time: float) -> NodeRecord | None:
        """The next node to probe, or None when nobody is probeable.

        Walks at most one full round (plus the wraps), skipping ourselves, dead and
        left nodes; each wrap forgets long-dead nodes and reshuffles.
        """
        checked = 0
        while checked < len(self._order):
            if self._probe_index >= len(self._order):
                self._reset(now, gossip_to_the_dead_time)
                self._probe_index = 0
                checked += 1
                continue
            record = self._order[self._probe_index]
            self._probe_index += 1
            if record.name == self.local_name or record.is_dead_or_left():
                checked += 1
                continue
            return record
        return None

    def _reset(self, now: float, gossip_to_the_dead_time: float) -> None:
        """Forget dead nodes older than ``gossip_to_the_dead_time``; reshuffle the rest."""
        keep = []
        for record in self._order:
            if (record.state == NodeState.DEAD
                    and now - record.state_change > gossip_to_the_dead_time):
                del self._by_name[record.name]
            else:
                keep.append(record)
        self._rng.shuffle(keep)
        self._order = keep

    def random_nodes(self, k: int, exclude: Callable[[NodeRecord], bool]) -> list[NodeRecord]:
        """Up to ``k`` distinct random nodes for which ``exclude`` is false."""
        candidates = [record for record in self._order if not exclude(record)]
        if len(candidates) <= k:
            self._rng.shuffle(candidates)
            return candidates
        return self._rng.sample(candidates, k)


def verify_protocol(remote: Sequence[PushNodeState], local: Iterable[NodeRecord]) -> str | None:
    """memberlist's push/pull version check (7.9).

    Over every *alive* node (remote list and local records) find the common range
    ``[max PMin, min PMax]`` and ``[max DMin, min DMax]``; every node of either
    side, whatever its state, must speak a current version inside both ranges. A
    remote entry without ``Vsn`` speaks version 0 and fails.

    Returns:
        None when compatible, else the error text (Go's wording).
    """
    local = list(local)
    max_pmin, min_pmax, max_dmin, min_dmax = 0, 255, 0, 255
    ranges: list[bytes] = [r.vsn for r in remote if r.state == NodeState.ALIVE and len(r.vsn) >= 6]
    ranges += [n.vsn for n in local if n.state == NodeState.ALIVE and len(n.vsn) >= 6]
    for vsn in ranges:
        max_pmin, min_pmax = max(max_pmin, vsn[0]), min(min_pmax, vsn[1])
        max_dmin, min_dmax = max(max_dmin, vsn[3]), min(min_dmax, vsn[4])
    speakers = [(r.name, r.vsn) for r in remote] + [(n.name, n.vsn) for n in local]
    for name, vsn in speakers:
        pcur, dcur = (vsn[2], vsn[5]) if len(vsn) >= 6 else (0, 0)
        if not max_pmin <= pcur <= min_pmax:
            return (f"Node '{name}' protocol version ({pcur}) is incompatible: "
                    f"[{max_pmin}, {min_pmax}]")
        if not max_dmin <= dcur <= min_dmax:
            return (f"Node '{name}' delegate protocol version ({dcur}) is incompatible: "
                    f"[{max_dmin}, {min_dmax}]")
    return None
