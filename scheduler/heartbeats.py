"""Client heartbeat TTLs and the leader's heartbeat deadlines (sans-IO).

Theory of operation
-------------------
A client node heartbeats the leader; the leader answers with the TTL the client must
heartbeat within, and marks the node down when a TTL plus a grace passes in silence.
This follows Nomad's ``nomad/heartbeat.go``:

* ``resetHeartbeatTimer`` computes
  ``ttl = helper.RateScaledInterval(MaxHeartbeatsPerSecond, MinHeartbeatTTL, n)``, which
  is ``max(MinHeartbeatTTL, n / MaxHeartbeatsPerSecond)`` seconds with ``n`` the number
  of heartbeat timers the leader holds (one per live node), then adds
  ``helper.RandomStagger(ttl)``, a uniform random duration in ``[0, ttl)``, so that
  nodes registered together do not heartbeat together. That sum is what the client is
  told (``heartbeat_ttl``).
* The leader's timer for the node is that TTL plus ``HeartbeatGrace``
  (``resetHeartbeatTimerLocked(id, ttl + HeartbeatGrace)``): ``HeartbeatTimers.reset``.
* On expiry the timer is deleted and the node marked down (``invalidateHeartbeat``):
  ``HeartbeatTimers.expired`` returns and forgets expired ids, earliest deadline first,
  ties by node id, so the outputs do not depend on dict or set order.
* A new leader gives every non-terminal node ``FAILOVER_HEARTBEAT_TTL`` (Nomad's
  ``FailoverHeartbeatTTL``, 300 s) since clients are switching to it
  (``initializeHeartbeatTimers``), and drops all timers when it steps down
  (``clearAllHeartbeatTimers``): ``clear``.

``rateScaledInterval`` returns the minimum when the rate is at or below once a day;
``heartbeat_ttl`` does the same. Time is passed in as ``now``; randomness comes from
the injected ``rng``.
"""

from __future__ import annotations

import random

from .errors import SchedulerConfigError

__all__ = ["FAILOVER_HEARTBEAT_TTL", "HeartbeatTimers", "heartbeat_ttl", "rate_scaled_interval"]

# Nomad's FailoverHeartbeatTTL: the TTL every node gets from a newly elected leader.
FAILOVER_HEARTBEAT_TTL = 300.0

# Nomad's helper.minRate: at or below one action a day the rate is ignored.
_MIN_RATE = 1.0 / 86400


def rate_scaled_interval(rate: float, minimum: float, n: int) -> float:
    """Return the interval that keeps ``n`` actors at ``rate`` actions per second in total.

    Nomad's ``helper.RateScaledInterval``: ``max(minimum, n / rate)``, or ``minimum``
    when ``rate`` is at or below once a day.
    """
    if rate <= _MIN_RATE:
        return minimum
    return max(minimum, n / rate)


def heartbeat_ttl(num_nodes: int, *, min_ttl: float = 10.0, max_per_second: float = 50.0,
                  rng: random.Random) -> float:
    """Return the TTL to give a heartbeating client (Nomad's ``resetHeartbeatTimer``).

    ``base = max(min_ttl, num_nodes / max_per_second)`` (``RateScaledInterval``) plus a
    stagger drawn uniformly from ``[0, base)`` (``RandomStagger``), so the result lies in
    ``[base, 2 * base)``.

    Args:
        num_nodes: heartbeat timers the leader holds (Nomad uses ``len(heartbeatTimers)``).
        min_ttl: ``min_heartbeat_ttl`` in seconds.
        max_per_second: ``max_heartbeats_per_second``, the target total rate.
        rng: the stagger's source.

    Raises:
        SchedulerConfigError: a negative node count or a non-positive ``min_ttl``.
    """
    if num_nodes < 0:
        raise SchedulerConfigError(f"num_nodes must not be negative, got {num_nodes!r}")
    if not min_ttl > 0:
        raise SchedulerConfigError(f"min_heartbeat_ttl must be positive, got {min_ttl!r}")
    base = rate_scaled_interval(max_per_second, min_ttl, num_nodes)
    # rng.random() is in [0, 1), so the stagger stays strictly below base.
    return base + rng.random() * base


class HeartbeatTimers:
    """The leader's heartbeat deadlines: node id -> the time it is declared down.

    Args:
        grace: ``heartbeat_grace`` seconds added to every TTL, covering the network
            and the client's own scheduling (Nomad's ``HeartbeatGrace``).

    Raises:
        SchedulerConfigError: a negative grace.
    """

    def __init__(self, *, grace: float = 10.0) -> None:
        if grace < 0:
            raise SchedulerConfigError(f"heartbeat_grace must not be negative, got {grace!r}")
        self.grace = float(grace)
        self._deadlines: dict[str, float] = {}

    def reset(self, node_id: str, ttl: float, now: float) -> None:
        """Start or extend the node's timer: deadline = now + ttl + grace."""
        self._deadlines[node_id] = now + ttl + self.grace

    def remove(self, node_id: str) -> None:
        """Stop tracking a node (deregistered or already down); unknown ids are fine."""
        self._deadlines.pop(node_id, None)

    def clear(self) -> None:
        """Stop tracking every node (leadership lost)."""
        self._deadlines.clear()

    def expired(self, now: float) -> list[str]:
        """Return and forget the nodes whose deadline is at or before ``now``.

        Ordered by deadline, then node id, so callers act deterministically.
        """
        due = sorted((deadline, node_id) for node_id, deadline in self._deadlines.items()
                     if deadline <= now)
        for _, node_id in due:
            del self._deadlines[node_id]
        return [node_id for _, node_id in due]

    def next_deadline(self) -> float | None:
        """The earliest deadline, or None when no node is tracked."""
        return min(self._deadlines.values(), default=None)

    def deadline(self, node_id: str) -> float | None:
        """The node's deadline, or None if it is not tracked."""
        return self._deadlines.get(node_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._deadlines

    def __len__(self) -> int:
        return len(self._deadlines)
