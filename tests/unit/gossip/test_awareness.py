"""The Lifeguard health score (spec 7.3, memberlist awareness_test.go)."""

from __future__ import annotations

from gossip.awareness import Awareness

# (delta applied, score after, probe interval of 1 s scaled) in sequence
STEPS = [
    (0, 0, 1.0), (-1, 0, 1.0), (-10, 0, 1.0), (1, 1, 2.0), (2, 3, 4.0),
    (3, 6, 7.0), (1, 7, 8.0), (-1, 6, 7.0), (1, 7, 8.0), (10, 7, 8.0), (-10, 0, 1.0),
]


def test_deltas_are_clamped_and_scale_the_timeout():
    """Applied in sequence, the score stays in 0..7 and scales timeouts by score + 1."""
    awareness = Awareness(8)
    for delta, score, timeout in STEPS:
        awareness.apply_delta(delta)
        assert (awareness.score, awareness.scale(1.0)) == (score, timeout), (delta, score)


def test_apply_delta_reports_a_change():
    """apply_delta says whether the score moved (clamped deltas do not)."""
    awareness = Awareness(2)
    assert not awareness.apply_delta(-1)
    assert awareness.apply_delta(5)
    assert awareness.score == 1
    assert not awareness.apply_delta(1)
