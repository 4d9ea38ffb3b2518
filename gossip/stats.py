"""Counters for the gossip cores, and the frozen snapshot ``stats()`` returns."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping


class Counters:
    """A mutable bag of named integer counters, owned by one core.

    Names are dotted snake case: ``dropped.<reason>`` for packets and streams thrown
    away, ``received.<kind>``/``sent.<kind>`` for traffic, plain names for events
    (``probes``, ``probe_failures``, ``refutes``, ``user_events``...).
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def inc(self, name: str, amount: int = 1) -> None:
        self._counts[name] += amount

    def get(self, name: str) -> int:
        return self._counts.get(name, 0)

    def snapshot(self) -> Mapping[str, int]:
        return MappingProxyType(dict(sorted(self._counts.items())))


@dataclass(frozen=True, slots=True)
class GossipStats:
    """A frozen snapshot of a core's counters and sizes.

    ``counters`` holds every counter by name (see ``Counters``); ``dropped`` is the
    subset named ``dropped.<reason>``, keyed by reason.
    """

    counters: Mapping[str, int] = field(default_factory=dict)
    members: int = 0
    health_score: int = 0
    incarnation: int = 0
    member_time: int = 0     # Serf's three Lamport clocks
    event_time: int = 0
    query_time: int = 0
    intent_queue: int = 0    # broadcasts waiting in Serf's three queues
    event_queue: int = 0
    query_queue: int = 0
    encrypted: bool = False

    @property
    def dropped(self) -> Mapping[str, int]:
        return {k[len("dropped."):]: v for k, v in self.counters.items() if k.startswith("dropped.")}
