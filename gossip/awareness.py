"""Lifeguard local health awareness (spec gossip-wire.md 7.3; memberlist ``awareness.go``).

Theory of operation: a node that is itself slow or partitioned should not rush to
accuse others. It keeps a *health score*, an integer in ``0 .. max_multiplier - 1``
(0 is healthy). The memberlist core moves it:

* a probe that got an ack (direct, relayed or over TCP): -1;
* a probe that failed: + (expected nacks - nacks received), or +1 when no relay
  could send nacks;
* having to refute an accusation about ourselves: +1.

The probe interval is multiplied by ``score + 1`` (``scale``); the probe timeout is
not. The score is clamped at both ends, so a delta can never leave the range.

State owned: the score. Inputs: ``apply_delta``. No time, no I/O.
"""

from __future__ import annotations


class Awareness:
    """The health score of the local node (Lifeguard "LHA")."""

    def __init__(self, max_multiplier: int) -> None:
        """Start healthy (score 0).

        Args:
            max_multiplier: ``awareness_max_multiplier``; the score stays below it.
        """
        assert max_multiplier >= 1
        self._max = max_multiplier
        self._score = 0

    @property
    def score(self) -> int:
        """The current health score, 0 (healthy) to ``max_multiplier - 1``."""
        return self._score

    def apply_delta(self, delta: int) -> bool:
        """Add ``delta`` to the score, clamped to the valid range.

        Returns:
            True when the score changed (callers log the change).
        """
        before = self._score
        self._score = min(self._max - 1, max(0, self._score + delta))
        return self._score != before

    def scale(self, timeout: float) -> float:
        """``timeout`` stretched by the current health: ``timeout * (score + 1)``."""
        return timeout * (self._score + 1)
