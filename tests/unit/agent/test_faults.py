"""The fault rules, their JSON shape, and the fault filter's decisions (agent/faults.py)."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest

from agent.faults import (FaultFilter, FaultRules, FaultSpecError, draw_delay, draw_lost, is_split,
                          partition_groups)

# --- parsing -------------------------------------------------------------------------


@pytest.mark.parametrize("body, expected", [
    ({}, FaultRules()),
    ({"Seed": 7}, FaultRules(seed=7)),
    ({"DropTo": ["b", "a"], "DropFrom": ["c"]},
     FaultRules(drop_to=frozenset({"a", "b"}), drop_from=frozenset({"c"}))),
    ({"Loss": 0.1, "DelayMs": 50}, FaultRules(loss=0.1, delay=0.05)),
    ({"Loss": 1, "DelayMs": 0}, FaultRules(loss=1.0)),
    ({"Partitions": [["c"], ["b", "a"]]}, FaultRules(partitions=(("a", "b"), ("c",)))),
    ({"Partitions": [["a", "a"]]}, FaultRules(partitions=(("a",),))),
])
def test_from_json_accepts(body: dict[str, Any], expected: FaultRules) -> None:
    """Good bodies parse to normalised rules: every key optional, names and groups sorted."""
    assert FaultRules.from_json(body) == expected


@pytest.mark.parametrize("body, message", [
    ([], "fault rules must be a JSON object"),
    ({"Drop": ["a"]}, "unknown key 'Drop'"),
    ({"DropTo": "a"}, "DropTo must be a list of member names"),
    ({"DropTo": [1]}, "DropTo must be a list of member names"),
    ({"DropFrom": [""]}, "DropFrom must be a list of member names"),
    ({"Loss": "0.1"}, "Loss must be a number"),
    ({"Loss": True}, "Loss must be a number"),
    ({"Loss": 1.5}, "Loss must be within [0, 1]"),
    ({"Loss": -0.1}, "Loss must be within [0, 1]"),
    ({"Loss": float("nan")}, "Loss must be within [0, 1]"),
    ({"DelayMs": -1}, "DelayMs must be a finite number >= 0"),
    ({"DelayMs": float("inf")}, "DelayMs must be a finite number >= 0"),
    ({"DelayMs": None}, "DelayMs must be a number"),
    ({"Seed": 1.5}, "Seed must be an integer"),
    ({"Seed": "7"}, "Seed must be an integer"),
    ({"Partitions": ["a"]}, "Partitions must be a list of lists of member names"),
    ({"Partitions": {"a": 1}}, "Partitions must be a list of lists of member names"),
    ({"Partitions": [["a", "b"], ["b"]]}, "Partitions lists member 'b' in groups 0 and 1"),
])
def test_from_json_refuses(body: Any, message: str) -> None:
    """Each bad body raises FaultSpecError with one line naming the offending key."""
    with pytest.raises(FaultSpecError) as info:
        FaultRules.from_json(body)
    text = str(info.value)
    assert message in text and "\n" not in text, text


def test_to_json_round_trips_sorted() -> None:
    """to_json gives the API shape back, sorted, with every key (Seed too) present."""
    body = {"DropTo": ["z", "y"], "DropFrom": ["x"], "Loss": 0.25, "DelayMs": 7,
            "Partitions": [["c"], ["b", "a"]], "Seed": 3}
    shown = FaultRules.from_json(body).to_json()
    assert shown == {"DropTo": ["y", "z"], "DropFrom": ["x"], "Loss": 0.25, "DelayMs": 7,
                     "Partitions": [["a", "b"], ["c"]], "Seed": 3}
    assert FaultRules.from_json(shown).to_json() == shown
    assert FaultRules().to_json()["Seed"] == 0


def test_constructor_validates_too() -> None:
    """Rules built in code are checked like parsed ones."""
    with pytest.raises(FaultSpecError, match="Loss"):
        FaultRules(loss=2.0)
    with pytest.raises(FaultSpecError, match="DelayMs"):
        FaultRules(delay=-0.5)
    with pytest.raises(FaultSpecError, match="Partitions"):
        FaultRules(partitions=(("a",), ("a",)))


# --- the shared model ------------------------------------------------------------------


@pytest.mark.parametrize("groups, a, b, split", [
    ([["a"], ["b", "c"]], "a", "b", True),
    ([["a"], ["b", "c"]], "b", "c", False),
    ([["a"], ["b", "c"]], "a", "a", False),
    ([["a"]], "b", "c", False),   # both unlisted: the extra group
    ([["a"]], "a", "b", True),    # listed against unlisted
    ([["a", "b"]], "a", "b", False),
    ([], "a", "b", False),
])
def test_partition_semantics(groups: list[list[str]], a: str, b: str, split: bool) -> None:
    """Members talk only within their group; the unlisted form one more group."""
    group_of = partition_groups(groups)
    assert is_split(group_of, a, b) is split
    assert is_split(group_of, b, a) is split


def test_draws_match_plain_random_calls() -> None:
    """The shared draws consume the rng exactly as the simulator always did (no draw at 0)."""
    ours, plain = random.Random(5), random.Random(5)
    assert draw_lost(ours, 0.0) is False
    assert draw_lost(ours, 0.5) == (plain.random() < 0.5)
    assert draw_delay(ours, 0.001, 0.0) == 0.001
    assert draw_delay(ours, 0.001, 0.002) == 0.001 + plain.expovariate(1.0 / 0.002)
    assert ours.random() == plain.random()


# --- the filter ---------------------------------------------------------------------------


def make_filter(name: str = "a", **rules: Any) -> FaultFilter:
    flt = FaultFilter(name, random.Random(0))
    flt.set_peers({"10.0.0.1:4648": "a", "10.0.0.2:4648": "b", "10.0.0.2:4647": "b",
                   "10.0.0.3:4648": "c", "127.0.0.1:5001": "x", "127.0.0.1:5002": "y",
                   "[::1]:4648": "v6"})
    if rules:
        flt.set_rules(FaultRules(**rules))
    return flt


@pytest.mark.parametrize("address, name", [
    ("10.0.0.2:4648", "b"),          # exact gossip address
    ("10.0.0.2:4647", "b"),          # exact rpc address
    ("10.0.0.2:51234", "b"),         # ephemeral port, only b has the IP
    ("10.0.0.3:1", "c"),
    ("127.0.0.1:5002", "y"),         # exact wins although two names share the IP
    ("127.0.0.1:40000", None),       # two names on the IP: ambiguous
    ("10.9.9.9:4648", None),
    ("[::1]:9999", "v6"),
])
def test_name_for(address: str, name: str | None) -> None:
    """Addresses resolve exactly first, then by bare IP when exactly one member has it."""
    assert make_filter().name_for(address) == name


def test_no_rules_pass_everything() -> None:
    """Without rules every packet goes out undelayed and every packet comes in."""
    flt = make_filter()
    assert flt.rules is None
    assert flt.outbound("10.0.0.2:4648") == 0.0 and flt.inbound("10.0.0.2:4648")
    assert flt.stats() == {"delayed": 0, "dropped.inbound": 0, "dropped.outbound": 0}


@pytest.mark.parametrize("rules, address, out, inside", [
    (dict(drop_to=frozenset({"b"})), "10.0.0.2:4648", None, True),
    (dict(drop_from=frozenset({"b"})), "10.0.0.2:4648", 0.0, False),
    (dict(drop_from=frozenset({"b"})), "10.0.0.2:33333", 0.0, False),  # TCP from b
    (dict(partitions=(("a",), ("b", "c"))), "10.0.0.2:4648", None, False),
    (dict(partitions=(("a",), ("b", "c"))), "10.0.0.1:4648", 0.0, True),   # itself
    (dict(partitions=(("b",),)), "10.0.0.3:4648", 0.0, True),   # a and c both unlisted
    (dict(partitions=(("b",),)), "10.0.0.2:4648", None, False),
    (dict(partitions=(("a",),)), "10.9.9.9:4648", 0.0, True),   # unknown: no name rules
    (dict(drop_to=frozenset({"b"}), delay=0.05), "10.0.0.3:4648", 0.05, True),
    (dict(loss=1.0), "10.9.9.9:4648", None, True),              # loss applies to unknowns
])
def test_filter_decisions(rules: dict[str, Any], address: str, out: float | None,
                          inside: bool) -> None:
    """outbound/inbound apply drop lists and partitions by name, loss and delay to all."""
    flt = make_filter("a", **rules)
    assert flt.outbound(address) == out
    assert flt.inbound(address) is inside


def test_stats_count_by_direction_and_reason() -> None:
    """Drops are counted per direction and per reason; delays are counted."""
    flt = make_filter("a", drop_to=frozenset({"b"}), partitions=(("a", "b"), ("c",)), delay=0.01)
    flt.outbound("10.0.0.2:4648")
    flt.outbound("10.0.0.3:4648")
    flt.inbound("10.0.0.3:4648")
    flt.outbound("10.9.9.9:1")
    assert flt.stats() == {"delayed": 1, "dropped.inbound": 1, "dropped.inbound.partition": 1,
                           "dropped.outbound": 2, "dropped.outbound.drop_to": 1,
                           "dropped.outbound.partition": 1}


def test_loss_is_near_probability() -> None:
    """With loss p, the share dropped over many sends is close to p (seed printed)."""
    seed = 20240611
    print(f"seed={seed}")
    for p in (0.1, 0.5, 0.9):
        flt = make_filter("a", loss=p, seed=seed)
        dropped = sum(flt.outbound("10.0.0.2:4648") is None for _ in range(10_000))
        assert abs(dropped / 10_000 - p) < 0.02, (p, dropped)


def test_same_seed_same_decisions() -> None:
    """Setting the same rules again replays the same drops; another seed or node draws otherwise."""
    def decisions(flt: FaultFilter) -> list[bool]:
        return [flt.outbound("10.0.0.2:4648") is None for _ in range(200)]

    flt = make_filter("a", loss=0.5, seed=7)
    first = decisions(flt)
    flt.set_rules(FaultRules(loss=0.5, seed=7))
    assert decisions(flt) == first
    assert decisions(make_filter("a", loss=0.5, seed=7)) == first  # rng given is reseeded
    assert decisions(make_filter("a", loss=0.5, seed=8)) != first
    assert decisions(make_filter("c", loss=0.5, seed=7)) != first


def test_set_and_clear_log_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """Setting and clearing rules each log one INFO line carrying the rules."""
    flt = make_filter()
    with caplog.at_level(logging.INFO, logger="agent.faults"):
        flt.set_rules(FaultRules(loss=0.2, partitions=(("a",), ("b",)), seed=9))
        flt.clear()
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.faults"]
    assert lines == ["fault rules set seed=9 loss=0.2 partitions=a|b",
                     "fault rules cleared previous=seed=9 loss=0.2 partitions=a|b"]
    assert flt.rules is None and flt.outbound("10.0.0.2:4648") == 0.0
