"""Chaos plans: PLAN.json validation naming the field, the seeded timeline, and `shoal chaos check`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.chaos.cli import load_plan, run_chaos_command
from agent.chaos.plan import FINAL_HEAL, PlanError, format_timeline, parse_plan, resolve_timeline
from agent.cluster.state import plan_cluster, save_state

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((REPO / "docs" / "chaos").glob("*.json"))
NODES = [("s1", "server"), ("s2", "server"), ("s3", "server"), ("c1", "client"), ("c2", "client")]


def plan(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "t", "steps": [{"at": 1, "do": "kill", "node": "s1"}]}
    base.update(fields)
    return base


def test_example_plans_are_valid_and_resolve() -> None:
    """Every plan in docs/chaos parses and resolves on a 3-server, 2-client cluster."""
    assert {p.name for p in EXAMPLES} >= {"partition-heal.json", "kill-leader.json",
                                          "kill-majority.json", "flaky-network.json"}
    for path in EXAMPLES:
        parsed = load_plan(str(path))
        actions = resolve_timeline(parsed, NODES, seed=7)
        assert actions[-1].do == FINAL_HEAL, path


def test_defaults_and_step_order() -> None:
    """Steps are sorted by time (ties keep file order); omitted fields take their defaults."""
    parsed = parse_plan({"name": " p ", "steps": [
        {"at": 5, "do": "heal"}, {"at": 1, "do": "stop", "node": "s2"}, {"at": 1, "do": "cont", "node": "s2"}]})
    assert parsed.name == "p"
    assert [(s.at, s.do) for s in parsed.steps] == [(1.0, "stop"), (1.0, "cont"), (5.0, "heal")]
    assert parsed.heal_at == 5.0 and parsed.settle == 30.0
    assert parsed.workload.writes_per_second == 5.0 and parsed.workload.jobs == 0
    assert parsed.bounds.converge_within == 20.0


@pytest.mark.parametrize("document, field", [
    ([], "plan: expected a JSON object"),
    (plan(name=""), "name:"),
    (plan(extra=1), "extra: unknown key"),
    (plan(steps={}), "steps: expected a list"),
    (plan(steps=[{"do": "kill", "node": "s1"}]), "steps[0].at: missing"),
    (plan(steps=[{"at": -1, "do": "heal"}]), "steps[0].at:"),
    (plan(steps=[{"at": 1, "do": "explode"}]), "steps[0].do: expected one of"),
    (plan(steps=[{"at": 1, "do": "kill"}]), "steps[0]: give exactly one of node or pick"),
    (plan(steps=[{"at": 1, "do": "kill", "node": "s1", "pick": "leader"}]), "steps[0]: give exactly one"),
    (plan(steps=[{"at": 1, "do": "kill", "pick": "oldest"}]), "steps[0].pick: expected one of"),
    (plan(steps=[{"at": 1, "do": "kill", "node": "s1", "ms": 5}]), "steps[0].ms: unknown key"),
    (plan(steps=[{"at": 1, "do": "loss", "node": "s1"}]), "steps[0].percent: missing"),
    (plan(steps=[{"at": 1, "do": "loss", "node": "s1", "percent": 120}]), "steps[0].percent: expected"),
    (plan(steps=[{"at": 1, "do": "delay", "node": "s1", "ms": "x"}]), "steps[0].ms: expected"),
    (plan(steps=[{"at": 1, "do": "partition", "groups": [["s1"]]}]), "steps[0].groups: expected a list of at least two"),
    (plan(steps=[{"at": 1, "do": "partition", "groups": [["s1"], ["s1"]]}]), "steps[0].groups[1]: 's1' is already"),
    (plan(steps=[{"at": 1, "do": "partition", "groups": [["s1"], []]}]), "steps[0].groups[1]: expected a non-empty"),
    (plan(steps=[{"at": 1, "do": "partition"}]), "steps[0]: a partition gives exactly one"),
    (plan(steps=[{"at": 1, "do": "restart", "node": "@x"}]), "steps[0].node: @x names no earlier"),
    (plan(steps=[{"at": 1, "do": "kill", "node": "s1", "label": "a"},
                 {"at": 2, "do": "kill", "node": "s2", "label": "a"}]), "steps[1].label: 'a' is already"),
    (plan(workload={"jobs": -1}), "workload.jobs: expected a whole number"),
    (plan(workload={"writes_per_second": True}), "workload.writes_per_second:"),
    (plan(workload={"rate": 1}), "workload.rate: unknown key"),
    (plan(settle=0), "settle: expected a positive number"),
    (plan(bounds={"converge_within": "soon"}), "bounds.converge_within:"),
    (plan(heal_at=0.5), "heal_at: 0.5 comes before the last step"),
])
def test_bad_plans_name_the_field(document: Any, field: str) -> None:
    """Each bad plan raises PlanError whose message starts with (or holds) the field."""
    with pytest.raises(PlanError) as error:
        parse_plan(document)
    assert field in str(error.value), str(error.value)


def test_same_seed_same_timeline_and_seeds_differ() -> None:
    """Random picks come from the seed: equal seeds agree; across seeds every server gets picked."""
    parsed = parse_plan(plan(steps=[{"at": 1, "do": "kill", "pick": "random-server"}]))
    first = format_timeline(parsed, resolve_timeline(parsed, NODES, 11), 11)
    assert first == format_timeline(parsed, resolve_timeline(parsed, NODES, 11), 11)
    picked = {resolve_timeline(parsed, NODES, seed)[0].node for seed in range(40)}
    assert picked == {"s1", "s2", "s3"}


def test_picks_skip_nodes_the_timeline_took_down() -> None:
    """Two kills of random servers never pick the same one; a restart puts it back in the pool."""
    parsed = parse_plan(plan(steps=[{"at": 1, "do": "kill", "pick": "random-server"},
                                    {"at": 2, "do": "kill", "pick": "random-server"},
                                    {"at": 3, "do": "kill", "pick": "random-server"}]))
    for seed in range(30):
        actions = resolve_timeline(parsed, NODES, seed)
        assert len({a.node for a in actions[:3]}) == 3
    more = parse_plan(plan(steps=[{"at": i, "do": "kill", "pick": "random-server"} for i in range(4)]))
    with pytest.raises(PlanError, match=r"steps\[3\].pick: random-server has no node left"):
        resolve_timeline(more, NODES, 1)


def test_names_are_checked_against_the_cluster() -> None:
    """A node the cluster lacks is an error naming the step; loss on a serf agent too."""
    parsed = parse_plan(plan(steps=[{"at": 1, "do": "kill", "node": "s9"}]))
    with pytest.raises(PlanError, match=r"steps\[0\].node: no node 's9'"):
        resolve_timeline(parsed, NODES, 1)
    lossy = parse_plan(plan(steps=[{"at": 1, "do": "loss", "node": "serf1", "percent": 5}]))
    with pytest.raises(PlanError, match="serf agent"):
        resolve_timeline(lossy, NODES + [("serf1", "serf")], 1)
    split = parse_plan(plan(steps=[{"at": 1, "do": "partition", "groups": [["s1"], ["x"]]}]))
    with pytest.raises(PlanError, match=r"steps\[0\].groups\[1\]: no node 'x'"):
        resolve_timeline(split, NODES, 1)


def test_partition_rest_isolate_labels_and_runtime_picks() -> None:
    """"*" stands for the unnamed nodes; isolate cuts one node off; leader picks wait for the run."""
    parsed = parse_plan({"name": "x", "steps": [
        {"at": 1, "do": "partition", "groups": [["s1", "c1"], ["*"]]},
        {"at": 2, "do": "partition", "isolate": "s2"},
        {"at": 3, "do": "kill", "pick": "leader", "label": "old"},
        {"at": 4, "do": "restart", "node": "@old"},
        {"at": 5, "do": "stop", "pick": "random-client", "label": "c"},
        {"at": 6, "do": "cont", "node": "@c"},
        {"at": 7, "do": "partition", "isolate": "follower"}], "heal_at": 9})
    actions = resolve_timeline(parsed, NODES, 3)
    assert actions[0].groups == (("s1", "c1"), ("c2", "s2", "s3"))
    assert actions[1].groups == (("s2",), ("c1", "c2", "s1", "s3"))
    assert actions[2].node == "leader" and actions[3].node == "@old"
    assert actions[4].node in ("c1", "c2") and actions[5].node == actions[4].node
    assert actions[6].groups is None and actions[6].isolate == "follower"
    assert (actions[7].at, actions[7].do) == (9.0, FINAL_HEAL)
    text = format_timeline(parsed, actions, 3)
    assert "kill leader as @old" in text and "partition [s1 c1] | [c2 s2 s3]" in text
    with pytest.raises(PlanError, match="stands for no node"):
        resolve_timeline(parse_plan({"name": "y", "steps": [{"at": 1, "do": "partition", "groups": [
            ["s1", "s2", "s3", "c1", "c2"], ["*"]]}]}), NODES, 1)


def test_chaos_check_and_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`shoal chaos check` accepts a good plan (0); a bad plan or no cluster exits 2 with one line."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps(plan()))
    assert run_chaos_command(["check", str(good)]) == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(plan(steps=[{"at": 1, "do": "loss", "node": "s1", "percent": 101}])))
    capsys.readouterr()
    assert run_chaos_command(["run", str(bad), "-seed", "1", "-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "steps[0].percent" in err and str(bad) in err
    assert run_chaos_command(["run", str(good), "-dir", str(tmp_path / "none")]) == 2
    assert "no cluster in" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{")
    assert run_chaos_command(["check", str(tmp_path / "broken.json")]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert run_chaos_command(["run"]) == 2
    assert run_chaos_command(["explode"]) == 2


def test_dry_run_prints_the_resolved_timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`run -dry-run` resolves against DIR/cluster.json and starts nothing; same seed, same text."""
    state = plan_cluster(tmp_path, "127.99.1", servers=3, clients=1, serfs=0, seed=5,
                         python="python3", serf_binary=None, created="2024-01-01T00:00:00Z")
    save_state(state)
    path = REPO / "docs" / "chaos" / "kill-majority.json"
    outputs = []
    for _ in range(2):
        assert run_chaos_command(["run", str(path), "-seed", "7", "-dir", str(tmp_path), "-dry-run"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert "seed=7" in outputs[0] and outputs[0].count("kill s") == 2
