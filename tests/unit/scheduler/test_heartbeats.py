"""Nomad's client heartbeat TTL rule and the leader's heartbeat deadlines (nomad/heartbeat.go)."""

from __future__ import annotations

import random

import pytest

from scheduler.errors import SchedulerConfigError
from scheduler.heartbeats import (FAILOVER_HEARTBEAT_TTL, HeartbeatTimers, heartbeat_ttl,
                                  rate_scaled_interval)


class FixedRandom(random.Random):
    """A Random whose random() always returns one chosen fraction."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def random(self) -> float:
        return self.fraction


@pytest.mark.parametrize("num_nodes, min_ttl, rate, expected", [
    (0, 10.0, 50.0, 10.0),
    (10, 10.0, 50.0, 10.0),        # 0.2 s < min: the minimum
    (500, 10.0, 50.0, 10.0),       # exactly the minimum
    (1000, 10.0, 50.0, 20.0),      # 1000 / 50
    (10000, 10.0, 50.0, 200.0),    # 10000 / 50
    (10000, 10.0, 100.0, 100.0),
    (10, 15.0, 50.0, 15.0),        # Nomad's compiled-in minHeartbeatTTL
    (10000, 10.0, 1.0 / 86400, 10.0),  # rate at or below once a day: ignored
])
def test_rate_scaled_interval_table(num_nodes, min_ttl, rate, expected):
    """The base TTL is max(min_ttl, n / rate), or min_ttl for a negligible rate."""
    assert rate_scaled_interval(rate, min_ttl, num_nodes) == pytest.approx(expected)


@pytest.mark.parametrize("num_nodes, fraction, expected", [
    (10, 0.0, 10.0),
    (10, 0.5, 15.0),
    (1000, 0.0, 20.0),
    (1000, 0.25, 25.0),
    (10000, 0.0, 200.0),
    (10000, 0.5, 300.0),
])
def test_heartbeat_ttl_table(num_nodes, fraction, expected):
    """heartbeat_ttl is the base plus fraction * base, the fraction from rng.random()."""
    assert heartbeat_ttl(num_nodes, rng=FixedRandom(fraction)) == pytest.approx(expected)


@pytest.mark.parametrize("seed", [1, 7, 2024, 99991])
@pytest.mark.parametrize("num_nodes, base", [(10, 10.0), (1000, 20.0), (10000, 200.0)])
def test_heartbeat_stagger_stays_in_bounds(seed, num_nodes, base):
    """Over many draws the TTL lies in [base, 2 * base) and actually varies."""
    print(f"seed={seed}")
    rng = random.Random(seed)
    ttls = [heartbeat_ttl(num_nodes, rng=rng) for _ in range(500)]
    assert all(base <= ttl < 2 * base for ttl in ttls)
    assert max(ttls) - min(ttls) > base / 2, "the stagger should spread the TTLs"


def test_heartbeat_ttl_is_reproducible_from_its_seed():
    """The same seed gives the same sequence of TTLs."""
    first = [heartbeat_ttl(100, rng=random.Random("s/n1/heartbeat")) for _ in range(3)]
    second = [heartbeat_ttl(100, rng=random.Random("s/n1/heartbeat")) for _ in range(3)]
    assert first == second


@pytest.mark.parametrize("kwargs", [
    {"num_nodes": -1}, {"num_nodes": 1, "min_ttl": 0.0}, {"num_nodes": 1, "min_ttl": -5.0},
])
def test_heartbeat_ttl_rejects_bad_settings(kwargs):
    """Negative node counts and non-positive minimum TTLs are config errors (ValueErrors)."""
    with pytest.raises(SchedulerConfigError):
        heartbeat_ttl(rng=random.Random(0), **kwargs)
    with pytest.raises(ValueError):
        heartbeat_ttl(rng=random.Random(0), **kwargs)


def test_reset_sets_deadline_with_grace():
    """A reset node's deadline is now + ttl + grace."""
    timers = HeartbeatTimers(grace=10.0)
    timers.reset("n1", 12.5, now=100.0)
    assert timers.deadline("n1") == pytest.approx(122.5)
    assert timers.next_deadline() == pytest.approx(122.5)
    assert "n1" in timers and len(timers) == 1


def test_expiry_is_exact_at_the_deadline():
    """A node is not expired just before its deadline and is expired at it, once."""
    timers = HeartbeatTimers(grace=5.0)
    timers.reset("n1", 10.0, now=0.0)
    assert timers.expired(14.999) == []
    assert timers.expired(15.0) == ["n1"]
    assert timers.expired(100.0) == []
    assert timers.next_deadline() is None


def test_expired_order_is_deadline_then_id():
    """Expired ids come earliest deadline first, ties by node id, whatever the insert order."""
    timers = HeartbeatTimers(grace=0.0)
    timers.reset("c", 5.0, now=0.0)
    timers.reset("b", 3.0, now=0.0)
    timers.reset("a", 5.0, now=0.0)
    timers.reset("d", 50.0, now=0.0)
    assert timers.expired(10.0) == ["b", "a", "c"]
    assert len(timers) == 1 and timers.next_deadline() == 50.0


def test_reset_extends_the_deadline():
    """A heartbeat before expiry pushes the deadline out, so the node survives the old one."""
    timers = HeartbeatTimers(grace=10.0)
    timers.reset("n1", 10.0, now=0.0)      # deadline 20
    timers.reset("n1", 10.0, now=15.0)     # deadline 35
    assert timers.expired(20.0) == []
    assert timers.expired(34.9) == []
    assert timers.expired(35.0) == ["n1"]


def test_remove_and_clear_forget_nodes():
    """Removed nodes never expire; clear forgets all; removing an unknown id is harmless."""
    timers = HeartbeatTimers(grace=1.0)
    for i, node in enumerate(["n1", "n2", "n3"]):
        timers.reset(node, 1.0 + i, now=0.0)
    timers.remove("n1")
    timers.remove("unknown")
    assert timers.expired(100.0) == ["n2", "n3"]
    timers.reset("n4", FAILOVER_HEARTBEAT_TTL, now=0.0)
    timers.clear()
    assert timers.expired(1e9) == [] and timers.next_deadline() is None and len(timers) == 0


def test_negative_grace_is_refused():
    """A negative heartbeat_grace fails at construction."""
    with pytest.raises(SchedulerConfigError):
        HeartbeatTimers(grace=-1.0)
