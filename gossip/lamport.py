"""Lamport clocks for Serf's three orderings (spec gossip-wire.md section 8.3).

Serf keeps three independent logical clocks: the member clock orders join and
leave intents, the event clock orders user events, the query clock orders
queries. Each is an unsigned counter that the Serf layer starts at 1.

Rules (``lamport.go``):

* ``time()`` reads the counter;
* ``increment()`` adds one and returns the new value;
* ``witness(v)`` moves the counter to ``v + 1`` when ``v`` is at or past it, so a
  clock never runs backwards and always stands one past anything it has seen.

The wire carries LTimes as uint64. Go's counter wraps at 2^64; shoal's saturates
at ``MAX_LTIME`` instead: a peer sending LTime 2^64-1 would otherwise push us to
2^64, which msgpack cannot encode (every later send would fail), and a wrapped
clock would make all our later messages look ancient to everybody. A saturated
clock stays usable: messages keep that LTime and are de-duplicated by content.

Invariant: the counter never decreases and never exceeds ``MAX_LTIME``.
"""

from __future__ import annotations

MAX_LTIME = 2**64 - 1
"""The largest LTime the wire can carry (uint64)."""


def next_ltime(value: int) -> int:
    """``value + 1``, saturating at ``MAX_LTIME`` (for LTimes a peer hands us)."""
    return min(value + 1, MAX_LTIME)


class LamportClock:
    """One Lamport counter; not shared between threads (cores are single-threaded)."""

    __slots__ = ("_counter",)

    def __init__(self, start: int = 0) -> None:
        assert 0 <= start <= MAX_LTIME
        self._counter = start

    def time(self) -> int:
        """The current value."""
        return self._counter

    def increment(self) -> int:
        """Add one (saturating at ``MAX_LTIME``) and return the new value."""
        self._counter = next_ltime(self._counter)
        return self._counter

    def witness(self, value: int) -> None:
        """Record that ``value`` was seen: the counter becomes at least ``value + 1``.

        Saturates at ``MAX_LTIME`` (see the module docstring).
        """
        if value >= self._counter:
            self._counter = next_ltime(value)

    def __repr__(self) -> str:
        return f"LamportClock({self._counter})"
