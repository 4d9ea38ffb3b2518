"""The Lifeguard suspicion formula and timer state (spec 7.5, memberlist suspicion_test.go)."""

from __future__ import annotations

import pytest

from gossip.config import GossipConfig
from gossip.suspicion import Suspicion, confirmations_wanted, remaining_suspicion_time


@pytest.mark.parametrize("n, k, elapsed, minimum, maximum, expected", [
    (0, 3, 0.0, 2.0, 30.0, 30.0),
    (1, 3, 2.0, 2.0, 30.0, 14.0),
    (2, 3, 3.0, 2.0, 30.0, 4.81),
    (3, 3, 4.0, 2.0, 30.0, -2.0),
    (4, 3, 5.0, 2.0, 30.0, -3.0),
    (5, 3, 10.0, 2.0, 30.0, -8.0),
    (0, 0, 1.0, 4.0, 24.0, 3.0),   # no confirmations wanted: the plain minimum
    (1, 2, 0.0, 4.0, 24.0, 11.381),  # LAN, 4..9 nodes, one confirmation
])
def test_remaining_suspicion_time_table(n, k, elapsed, minimum, maximum, expected):
    """The remaining time matches memberlist's table, in whole milliseconds."""
    assert remaining_suspicion_time(n, k, elapsed, minimum, maximum) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("mult, n, k", [
    (4, 1, 0), (4, 3, 0), (4, 4, 2), (4, 100, 2), (6, 5, 0), (6, 6, 4), (3, 3, 1), (3, 2, 0),
])
def test_confirmations_wanted_table(mult, n, k):
    """k = suspicion_mult - 2, or 0 when fewer than k peers besides us and the suspect exist."""
    assert confirmations_wanted(mult, n) == k


@pytest.mark.parametrize("profile, n, expected", [
    ("lan", 1, (4.0, 24.0)), ("lan", 3, (4.0, 24.0)), ("lan", 9, (4.0, 24.0)),
    ("lan", 10, (4.0, 24.0)), ("lan", 100, (8.0, 48.0)), ("lan", 50, (6.795, 40.77)),
    ("wan", 3, (30.0, 180.0)), ("local", 3, (3.0, 18.0)),
])
def test_suspicion_timeouts_by_cluster_size(profile, n, expected):
    """min = mult * max(1, log10(n)) * probe_interval (whole ms); max = 6 * min."""
    minimum, maximum = GossipConfig.named(profile).suspicion_timeouts(n)
    assert (minimum, maximum) == pytest.approx(expected)


# (confirmations fed in order with "is it new?", expected deadline offset), k=3, min 0.5, max 2
@pytest.mark.parametrize("confirmations, expected", [
    ([], 2.0),
    ([("me", False), ("foo", True)], 1.25),
    ([("me", False), ("foo", True), ("foo", False), ("foo", False)], 1.25),
    ([("me", False), ("foo", True), ("bar", True)], 0.811),  # Go's test allows 810 +- fudge
    ([("me", False), ("foo", True), ("bar", True), ("baz", True)], 0.5),
    ([("foo", True), ("bar", True), ("baz", True), ("zoo", False)], 0.5),
])
def test_suspicion_timer_confirmations(confirmations, expected):
    """Only new names other than the accuser count, at most k; each moves the deadline in."""
    timer = Suspicion("me", 3, 0.5, 2.0, start=100.0)
    for name, is_new in confirmations:
        assert timer.confirm(name) is is_new
    assert timer.deadline - 100.0 == pytest.approx(expected)
    assert not timer.is_due(100.0 + expected - 0.001)
    assert timer.is_due(100.0 + expected)


def test_timer_without_wanted_confirmations_runs_for_the_minimum():
    """k = 0: the deadline is start + min and confirmations change nothing."""
    timer = Suspicion("me", 0, 4.0, 24.0, start=7.0)
    assert timer.deadline == 11.0
    assert not timer.confirm("other")
    assert timer.deadline == 11.0
