"""Lamport clocks for Serf's three orderings (spec gossip-wire.md section 8.3).

Serf keeps three independent logical clocks: the member clock orders join and
leave intents, the event clock orders user events, the query clock orders
queries. Each is an unsigned counter that the Serf layer starts at 1.

Rules (``lamport.go``):

* ``time()`` reads the counter;
* ``increment()`` adds one and returns the new value;
* ``witness(v)`` moves the counter to ``v + 1`` when ``v`` is at or past it, so a
  clock never runs backwards and always stands one past anything it has seen.

Invariant: the counter never decreases.
"""

from __future__ import annotations


class LamportClock:
    """One Lamport counter; not shared between threads (cores are single-threaded)."""

    __slots__ = ("_counter",)

    def __init__(self, start: int = 0) -> None:
        assert start >= 0
        self._counter = start

    def time(self) -> int:
        """The current value."""
        return self._counter

    def increment(self) -> int:
        """Add one and return the new value."""
        self._counter += 1
        return self._counter

    def witness(self, value: int) -> None:
        """Record that ``value`` was seen: the counter becomes at least ``value + 1``."""
        if value >= self._counter:
            self._counter = value + 1

    def __repr__(self) -> str:
        return f"LamportClock({self._counter})"
