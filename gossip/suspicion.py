"""Lifeguard suspicion: the dynamic timeout before a suspect node is declared dead.

Spec: gossip-wire.md 7.5; memberlist ``suspicion.go`` and ``state.go`` (``suspectNode``).

Theory of operation. When node X becomes suspect we start one ``Suspicion`` for it.
Its deadline starts far out (``max``) and is pulled in towards ``min`` as other
members independently report X as suspect too ("confirmations"). With ``k``
confirmations wanted, after ``c`` of them the timeout measured from the start is::

    max(min, max - ln(c + 1) / ln(k + 1) * (max - min))      # floored to whole ms

so the first confirmations matter most. When no confirmations are possible
(``k == 0``: too few nodes) the timer simply runs for ``min``.

* ``k = suspicion_mult - 2``, or 0 when ``n - 2 < k`` (n = known nodes, self included;
  minus ourselves and the suspect there are not enough peers to confirm);
* ``min = suspicion_mult * max(1, log10(max(1, n))) * probe_interval`` and
  ``max = suspicion_max_timeout_mult * min`` (``GossipConfig.suspicion_timeouts``);
* the node whose report started the timer never counts as a confirmation, each
  other name counts once, and no more than ``k`` are counted.

This module is pure: ``remaining_suspicion_time`` is the formula (as memberlist's
function of the same name, tested by table), and ``Suspicion`` is the timer's state,
an absolute ``deadline`` the owning core compares with ``now``. Nothing here fires on
its own; the memberlist core checks ``deadline`` in ``handle_timers``.
"""

from __future__ import annotations

import math


def confirmations_wanted(suspicion_mult: int, n: int) -> int:
    """``k``: how many independent confirmations drive the timeout to its minimum.

    Args:
        suspicion_mult: the config knob (4 on LAN).
        n: known nodes, ourselves included.
    """
    k = suspicion_mult - 2
    # Take out ourselves and the suspect: fewer peers than k cannot confirm.
    return 0 if n - 2 < k else k


def remaining_suspicion_time(n: int, k: int, elapsed: float, minimum: float,
                             maximum: float) -> float:
    """Seconds left before the timer fires, after ``n`` of ``k`` confirmations.

    The timeout from the start is computed in whole milliseconds (floor) and never
    drops below ``minimum``; ``elapsed`` (seconds since the start) is subtracted, so
    the result may be negative, meaning "fire now".

    Args:
        n: confirmations counted so far.
        k: confirmations wanted (>= 1 when this is called with n > 0).
        elapsed: seconds since the timer started.
        minimum: the minimum timeout in seconds.
        maximum: the maximum timeout in seconds.
    """
    if k < 1:
        # No confirmations expected: the plain minimum, as the initial timer.
        return minimum - elapsed
    fraction = math.log(n + 1.0) / math.log(k + 1.0)
    raw = maximum - fraction * (maximum - minimum)
    timeout_ms = math.floor(1000.0 * raw)
    timeout = max(timeout_ms / 1000.0, minimum)
    return timeout - elapsed


class Suspicion:
    """The suspicion timer of one suspect node: start, confirmations, deadline."""

    def __init__(self, from_: str, k: int, minimum: float, maximum: float, start: float) -> None:
        """Start a timer at ``start`` (monotonic seconds).

        Args:
            from_: who accused the node first; never counted as a confirmation
                (our own suspect message may be gossiped back to us).
            k: confirmations wanted (``confirmations_wanted``).
            minimum: minimum timeout in seconds.
            maximum: maximum timeout in seconds.
            start: when the node became suspect.
        """
        self.k = k
        self.minimum = minimum
        self.maximum = maximum
        self.start = start
        self.confirmations = 0
        # Names already heard from, the original accuser included.
        self._seen: set[str] = {from_}
        self.deadline = start + (maximum if k >= 1 else minimum)

    def confirm(self, from_: str) -> bool:
        """Count ``from_`` as an independent confirmation if it is new.

        Returns:
            True when this was new information (the caller re-gossips the suspect
            message); False for a repeat, the original accuser, or once ``k``
            confirmations are in.
        """
        if self.confirmations >= self.k:
            return False
        if from_ in self._seen:
            return False
        self._seen.add(from_)
        self.confirmations += 1
        remaining = remaining_suspicion_time(self.confirmations, self.k, 0.0,
                                             self.minimum, self.maximum)
        self.deadline = self.start + remaining
        return True

    def is_due(self, now: float) -> bool:
        """True once ``now`` has reached the deadline."""
        return now >= self.deadline
