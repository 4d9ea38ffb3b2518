"""Placement: reconciliation per job type, best-fit bin-packing, the leader's plan check, wire form."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from scheduler.placement import (JOB_TYPES, Plan, check_plan, fits, is_candidate, is_live,
                                 node_usage, plan_evaluation)

NOW = 1_700_000_000_000_000_000


# ---------------------------------------------------------------- builders

def node(node_id: str, cpu: int = 1000, mem: int = 1024, *, dc: str = "dc1",
         status: str = "ready", eligibility: str = "eligible") -> dict:
    return {"ID": node_id, "Name": f"name-{node_id}", "Datacenter": dc, "NodeClass": "",
            "Meta": {}, "Attributes": {}, "NodeResources": {"CPU": cpu, "MemoryMB": mem},
            "Status": status, "SchedulingEligibility": eligibility}


def job(job_id: str = "web", job_type: str = "service", count: int = 1, cpu: int = 100,
        mem: int = 128, *, dcs: Sequence[str] = ("dc1",), groups: list[dict] | None = None,
        stop: bool = False) -> dict:
    groups = groups or [{"Name": "g", "Count": count, "Resources": {"CPU": cpu, "MemoryMB": mem}}]
    return {"ID": job_id, "Name": job_id, "Namespace": "default", "Type": job_type,
            "Datacenters": list(dcs), "Priority": 50, "Status": "pending", "Stop": stop,
            "TaskGroups": groups}


def alloc(alloc_id: str, node_id: str, index: int = 0, *, job_id: str = "web", tg: str = "g",
          client: str = "running", desired: str = "run", cpu: int = 100, mem: int = 128) -> dict:
    return {"ID": alloc_id, "Namespace": "default", "EvalID": "old", "JobID": job_id,
            "TaskGroup": tg, "Name": f"{job_id}.{tg}[{index}]", "NodeID": node_id,
            "NodeName": f"name-{node_id}", "Resources": {"CPU": cpu, "MemoryMB": mem},
            "DesiredStatus": desired, "ClientStatus": client}


def evaluation(job_id: str = "web") -> dict:
    return {"ID": f"eval-{job_id}", "Namespace": "default", "JobID": job_id, "Priority": 50,
            "Type": "service", "TriggeredBy": "job-register", "Status": "pending"}


def counter_ids(prefix: str = "new") -> Callable[[], str]:
    numbers = itertools.count()
    return lambda: f"{prefix}-{next(numbers)}"


def plan_for(the_job: dict | None, nodes: list[dict], allocs: list[dict] | None = None,
             job_id: str = "web") -> Plan:
    return plan_evaluation(evaluation(job_id), the_job, nodes, allocs or [],
                           new_id=counter_ids(), now_ns=NOW)


def apply(allocs: Sequence[dict], plan: Plan) -> list[dict]:
    """What the state machine does with an accepted plan."""
    stops = dict(plan.stop)
    out = []
    for existing in allocs:
        if existing["ID"] in stops:
            existing = {**existing, "DesiredStatus": "stop"}
            if stops[existing["ID"]]:
                existing["ClientStatus"] = stops[existing["ID"]]
        out.append(existing)
    return out + [dict(placed) for placed in plan.place]


def placed(plan: Plan) -> list[tuple[str, str]]:
    return [(a["Name"], a["NodeID"]) for a in plan.place]


# ---------------------------------------------------------------- helpers

def test_node_usage_counts_only_live_allocs_on_that_node() -> None:
    """Stopped, terminal and other nodes' allocations use nothing."""
    allocs = [alloc("a", "n1", cpu=100, mem=10), alloc("b", "n1", client="pending", cpu=5, mem=1),
              alloc("c", "n1", desired="stop"), alloc("d", "n1", client="complete"),
              alloc("e", "n1", client="failed"), alloc("f", "n2")]
    assert node_usage("n1", allocs) == {"CPU": 105, "MemoryMB": 11}
    assert [is_live(a) for a in allocs] == [True, True, False, False, False, True]


@pytest.mark.parametrize(("usage", "resources", "ok"), [
    ({"CPU": 900, "MemoryMB": 0}, {"CPU": 100, "MemoryMB": 1024}, True),    # exactly full
    ({"CPU": 901, "MemoryMB": 0}, {"CPU": 100, "MemoryMB": 0}, False),      # CPU over
    ({"CPU": 0, "MemoryMB": 1000}, {"CPU": 0, "MemoryMB": 25}, False),      # memory over
    ({"CPU": 0, "MemoryMB": 0}, {"CPU": 0, "MemoryMB": 0}, True),
])
def test_fits_table(usage: dict, resources: dict, ok: bool) -> None:
    """A request fits when usage plus request stays within capacity in both dimensions."""
    assert fits(node("n", 1000, 1024), usage, resources) is ok


@pytest.mark.parametrize(("kwargs", "dcs", "ok"), [
    ({}, ["dc1"], True),
    ({"dc": "dc2"}, ["dc1"], False),
    ({"dc": "dc2"}, ["dc1", "dc2"], True),
    ({"dc": "dc9"}, ["*"], True),
    ({}, [], False),
    ({"status": "down"}, ["*"], False),
    ({"status": "initializing"}, ["*"], False),
    ({"eligibility": "ineligible"}, ["*"], False),
])
def test_candidate_table(kwargs: dict, dcs: list[str], ok: bool) -> None:
    """Only ready, eligible nodes in one of the job's datacenters ("*" = all) are candidates."""
    assert is_candidate(node("n", **kwargs), dcs) is ok


# ---------------------------------------------------------------- service

# existing: (alloc id, index, node, client status, desired status); nodes n1 (ready), n2 (down)
@pytest.mark.parametrize(("count", "existing", "names", "stops"), [
    (3, [], ["web.g[0]", "web.g[1]", "web.g[2]"], []),
    (3, [("a0", 0, "n1", "running", "run"), ("a1", 1, "n1", "pending", "run")], ["web.g[2]"], []),
    (1, [("a0", 0, "n1", "running", "run"), ("a1", 1, "n1", "running", "run"),
         ("a2", 2, "n1", "running", "run")], [], [("a1", ""), ("a2", "")]),
    (1, [("a0", 0, "n2", "running", "run")], ["web.g[0]"], [("a0", "lost")]),
    (2, [("a0", 0, "n1", "running", "run"), ("a1", 1, "n1", "failed", "run")], ["web.g[1]"], []),
    (2, [("a0", 0, "n1", "complete", "run"), ("a1", 1, "n1", "running", "stop")],
     ["web.g[0]", "web.g[1]"], []),
    (2, [("a3", 3, "n1", "running", "run"), ("a9", 0, "n9", "running", "run")],
     ["web.g[0]"], [("a9", "lost")]),      # n9 is not in the node list at all
    (0, [("a0", 0, "n1", "running", "run")], [], [("a0", "")]),
])
def test_service_reconcile_table(count: int, existing: list[tuple], names: list[str],
                                 stops: list[tuple[str, str]]) -> None:
    """Service keeps Count live allocs: lost ones replaced, extras stopped highest index first."""
    nodes = [node("n1", 10_000, 10_000), node("n2", 10_000, 10_000, status="down")]
    allocs = [alloc(i, n, idx, client=c, desired=d) for i, idx, n, c, d in existing]
    plan = plan_for(job(count=count), nodes, allocs)
    assert [a["Name"] for a in plan.place] == names
    assert all(a["NodeID"] == "n1" for a in plan.place)
    assert list(plan.stop) == stops
    assert plan.failed == {}


def test_placed_alloc_fields() -> None:
    """A placement carries exactly the contract's fields, copied from eval, job, task group and node."""
    plan = plan_for(job(cpu=250, mem=300), [node("n1")])
    assert plan.place == ({
        "ID": "new-0", "EvalID": "eval-web", "JobID": "web", "Namespace": "default",
        "TaskGroup": "g", "Name": "web.g[0]", "NodeID": "n1", "NodeName": "name-n1",
        "Resources": {"CPU": 250, "MemoryMB": 300}, "DesiredStatus": "run",
        "ClientStatus": "pending", "CreateTime": NOW, "ModifyTime": NOW},)
    assert (plan.eval_id, plan.job_id) == ("eval-web", "web")


def test_removed_task_group_allocs_are_stopped() -> None:
    """Live allocs of a task group the job no longer has are stopped."""
    allocs = [alloc("old", "n1", tg="gone"), alloc("keep", "n1")]
    plan = plan_for(job(count=1), [node("n1")], allocs)
    assert plan.stop == (("old", ""),) and plan.place == ()


def test_down_node_replacement_marks_lost_and_moves_elsewhere() -> None:
    """Allocs on a down node are stopped as lost and replaced on a ready node, same name."""
    nodes = [node("n1", status="down"), node("n2")]
    allocs = [alloc("a0", "n1", 0), alloc("a1", "n2", 1)]
    plan = plan_for(job(count=2), nodes, allocs)
    assert plan.stop == (("a0", "lost"),)
    assert placed(plan) == [("web.g[0]", "n2")]


# ---------------------------------------------------------------- best fit, datacenters, failures

def test_best_fit_prefers_the_fullest_node_that_fits() -> None:
    """Bin-packing picks the node with the highest utilisation after placement that still fits."""
    nodes = [node("empty", 1000, 1000), node("half", 1000, 1000), node("full", 1000, 1000)]
    allocs = [alloc("o1", "half", job_id="other", cpu=500, mem=500),
              alloc("o2", "full", job_id="other", cpu=950, mem=950)]
    plan = plan_for(job(count=1, cpu=100, mem=100), nodes, allocs)
    assert placed(plan) == [("web.g[0]", "half")]       # "full" has no room


def test_best_fit_fills_one_node_before_the_next_and_breaks_ties_by_id() -> None:
    """Identical empty nodes: ties go to the lowest ID, which then stays fullest until full."""
    nodes = [node("n3", 300, 300), node("n1", 300, 300), node("n2", 300, 300)]
    plan = plan_for(job(count=5, cpu=100, mem=100), nodes)
    assert [n for _, n in placed(plan)] == ["n1", "n1", "n1", "n2", "n2"]


def test_best_fit_scores_both_dimensions() -> None:
    """A node short of memory is skipped even with CPU to spare; utilisation is the CPU/memory mean."""
    nodes = [node("cpu-rich", 10_000, 100), node("big", 1000, 1000), node("small", 500, 500)]
    plan = plan_for(job(count=1, cpu=200, mem=200), nodes)
    assert placed(plan) == [("web.g[0]", "small")]


@pytest.mark.parametrize(("dcs", "expected"), [
    (["dc1"], ["a"]), (["dc2"], ["b"]), (["dc1", "dc2"], ["a", "b"]), (["*"], ["a", "b", "c"]),
    (["dc9"], []),
])
def test_datacenter_filtering(dcs: list[str], expected: list[str]) -> None:
    """System placement shows exactly which nodes the job's datacenters admit."""
    nodes = [node("a", dc="dc1"), node("b", dc="dc2"), node("c", dc="dc3")]
    plan = plan_for(job(job_type="system", dcs=dcs), nodes)
    assert sorted(n for _, n in placed(plan)) == expected


def test_service_never_places_outside_its_datacenters() -> None:
    """A bigger node in another datacenter is ignored; what does not fit is counted as failed."""
    nodes = [node("small", 200, 200, dc="dc1"), node("huge", 10_000, 10_000, dc="dc2")]
    plan = plan_for(job(count=3, cpu=100, mem=100), nodes)
    assert [n for _, n in placed(plan)] == ["small", "small"]
    assert plan.failed == {"g": 1}


def test_failed_counts_when_nothing_fits() -> None:
    """Each task group counts the allocs that fit nowhere; groups that fit are not listed."""
    groups = [{"Name": "tiny", "Count": 2, "Resources": {"CPU": 10, "MemoryMB": 10}},
              {"Name": "huge", "Count": 3, "Resources": {"CPU": 5000, "MemoryMB": 10}}]
    plan = plan_for(job(groups=groups), [node("n1"), node("n2", status="down")])
    assert [a["Name"] for a in plan.place] == ["web.tiny[0]", "web.tiny[1]"]
    assert plan.failed == {"huge": 3}
    assert plan_for(job(count=2), []).failed == {"g": 2}


def test_stop_frees_capacity_for_another_group_in_the_same_plan() -> None:
    """Capacity freed by a stop in the plan is usable by its placements, and check_plan agrees."""
    groups = [{"Name": "a", "Count": 0, "Resources": {"CPU": 100, "MemoryMB": 100}},
              {"Name": "b", "Count": 1, "Resources": {"CPU": 100, "MemoryMB": 100}}]
    nodes = [node("n1", 100, 100)]
    allocs = [alloc("old", "n1", tg="a", cpu=100, mem=100)]
    plan = plan_for(job(groups=groups), nodes, allocs)
    assert plan.stop == (("old", ""),) and placed(plan) == [("web.b[0]", "n1")]
    assert check_plan(plan, {"n1": nodes[0]}, allocs) == (plan, ())


# ---------------------------------------------------------------- batch

@pytest.mark.parametrize(("count", "existing", "names", "stops"), [
    (2, [("a0", 0, "n1", "complete", "run"), ("a1", 1, "n1", "running", "run")], [], []),
    (2, [("a0", 0, "n1", "complete", "run"), ("a1", 1, "n1", "failed", "run")], ["web.g[1]"], []),
    (1, [("a0", 0, "n2", "complete", "run")], [], []),               # done even on a down node
    (2, [("a0", 0, "n2", "running", "run")], ["web.g[0]", "web.g[1]"], [("a0", "lost")]),
    (1, [("a0", 0, "n1", "complete", "run"), ("a1", 1, "n1", "running", "run")], [], [("a1", "")]),
])
def test_batch_reconcile_table(count: int, existing: list[tuple], names: list[str],
                               stops: list[tuple[str, str]]) -> None:
    """Batch: complete allocs are done (hold their index, never rerun); failed and lost ones are replaced."""
    nodes = [node("n1", 10_000, 10_000), node("n2", 10_000, 10_000, status="down")]
    allocs = [alloc(i, n, idx, client=c, desired=d) for i, idx, n, c, d in existing]
    plan = plan_for(job(job_type="batch", count=count), nodes, allocs)
    assert [a["Name"] for a in plan.place] == names
    assert list(plan.stop) == stops


def test_service_replaces_a_complete_alloc() -> None:
    """Unlike batch, a service alloc that completed is not live and is replaced."""
    allocs = [alloc("a0", "n1", 0, client="complete")]
    assert [a["Name"] for a in plan_for(job(count=1), [node("n1")], allocs).place] == ["web.g[0]"]


# ---------------------------------------------------------------- system and sysbatch

def test_system_one_alloc_per_candidate_node() -> None:
    """System: one alloc per ready eligible node; lost, out-of-datacenter and duplicates stopped."""
    nodes = [node("n1"), node("n2"), node("n3", status="down"), node("n4", dc="dc2"),
             node("n5", eligibility="ineligible"), node("n6", 50, 50)]
    allocs = [alloc("d1", "n1"), alloc("d2", "n1"),          # duplicate on n1
              alloc("lost", "n3"), alloc("outside", "n4"),   # down node, wrong datacenter
              alloc("kept", "n5")]                           # ineligible: keeps what it runs
    plan = plan_for(job(job_type="system", cpu=100, mem=100), nodes, allocs)
    assert placed(plan) == [("web.g[0]", "n2")]
    assert plan.stop == (("d2", ""), ("lost", "lost"), ("outside", ""))
    assert plan.failed == {"g": 1}                           # n6 is too small


def test_system_ignores_count_and_places_every_group() -> None:
    """Each task group of a system job gets its own alloc per node, whatever Count says."""
    groups = [{"Name": "x", "Count": 5, "Resources": {"CPU": 1, "MemoryMB": 1}},
              {"Name": "y", "Count": 0, "Resources": {"CPU": 1, "MemoryMB": 1}}]
    plan = plan_for(job(job_type="system", groups=groups), [node("n1"), node("n2")])
    assert placed(plan) == [("web.x[0]", "n1"), ("web.x[0]", "n2"),
                            ("web.y[0]", "n1"), ("web.y[0]", "n2")]


def test_sysbatch_complete_node_is_done() -> None:
    """Sysbatch: a node with a complete alloc is done; a failed one is rerun; system reruns both."""
    nodes = [node("n1"), node("n2"), node("n3")]
    allocs = [alloc("c", "n1", client="complete"), alloc("f", "n2", client="failed")]
    plan = plan_for(job(job_type="sysbatch"), nodes, allocs)
    assert [n for _, n in placed(plan)] == ["n2", "n3"]
    plan = plan_for(job(job_type="system"), nodes, allocs)
    assert [n for _, n in placed(plan)] == ["n1", "n2", "n3"]


# ---------------------------------------------------------------- stopping jobs

@pytest.mark.parametrize("gone", [True, False])
def test_stopped_or_purged_job_stops_every_live_alloc(gone: bool) -> None:
    """Job None or Stop: every live alloc of the job stops, client status unchanged; others untouched."""
    allocs = [alloc("b", "n2"), alloc("a", "n1"), alloc("done", "n1", client="complete"),
              alloc("other", "n1", job_id="db"), alloc("down", "n3")]
    nodes = [node("n1"), node("n2"), node("n3", status="down")]
    plan = plan_for(None if gone else job(count=5, stop=True), nodes, allocs)
    assert plan.stop == (("a", ""), ("b", ""), ("down", ""))
    assert plan.place == () and plan.failed == {}


def test_unknown_job_type_is_a_value_error() -> None:
    """A job type the planner does not know is refused loudly."""
    with pytest.raises(ValueError, match="unknown job type"):
        plan_for(job(job_type="_core"), [node("n1")])


# ---------------------------------------------------------------- determinism

def random_state(rng: random.Random) -> tuple[dict, list[dict], list[dict]]:
    nodes = [node(f"n{i}", rng.randrange(0, 3000, 100), rng.randrange(0, 3000, 128),
                  dc=rng.choice(["dc1", "dc2"]), status=rng.choice(["ready", "ready", "down"]))
             for i in range(rng.randint(0, 8))]
    groups = [{"Name": f"g{k}", "Count": rng.randint(0, 8),
               "Resources": {"CPU": rng.randrange(0, 800, 50), "MemoryMB": rng.randrange(0, 800, 64)}}
              for k in range(rng.randint(1, 3))]
    the_job = job(job_type=rng.choice(JOB_TYPES), groups=groups, dcs=rng.choice([["dc1"], ["*"]]))
    allocs = [alloc(f"x{i}", rng.choice([n["ID"] for n in nodes] + ["gone"]), rng.randint(0, 6),
                    job_id=rng.choice(["web", "db"]), tg=rng.choice(["g0", "g1", "g2"]),
                    client=rng.choice(["pending", "running", "complete", "failed"]),
                    desired=rng.choice(["run", "run", "stop"]), cpu=rng.randrange(0, 500, 50),
                    mem=rng.randrange(0, 500, 64))
              for i in range(rng.randint(0, 12))]
    return the_job, nodes, allocs


@pytest.mark.parametrize("seed", range(20))
def test_same_inputs_same_plan_whatever_the_input_order(seed: int) -> None:
    """With a seeded new_id, shuffled nodes and allocs give exactly the same plan."""
    print(f"seed={seed}")
    rng = random.Random(seed)
    the_job, nodes, allocs = random_state(rng)

    def run(nodes: list[dict], allocs: list[dict]) -> Plan:
        id_rng = random.Random(f"{seed}/ids")
        return plan_evaluation(evaluation(), the_job, nodes, allocs,
                               new_id=lambda: f"{id_rng.getrandbits(64):016x}", now_ns=NOW)

    first = run(nodes, allocs)
    rng.shuffle(nodes)
    rng.shuffle(allocs)
    assert run(nodes, allocs) == first
    assert run(nodes, allocs).to_wire() == first.to_wire()


# ---------------------------------------------------------------- check_plan

def test_check_plan_rejections() -> None:
    """Missing, down and newly full nodes lose all their placements; stops are always kept."""
    nodes = [node(n, 300, 300) for n in ("ok", "gone", "down", "full")]
    allocs = [alloc("s", "ok", job_id="db")]
    plan = plan_for(job(job_type="system", cpu=100, mem=100, count=1), nodes, allocs)
    plan = Plan(plan.eval_id, plan.job_id, plan.place, (("s", ""), ("unknown", "lost")), {"g": 2})
    now_nodes = {"ok": nodes[0], "down": {**nodes[2], "Status": "down"}, "full": nodes[3]}
    now_allocs = allocs + [alloc("late", "full", job_id="db", cpu=250, mem=10)]
    accepted, rejected = check_plan(plan, now_nodes, now_allocs)
    assert rejected == ("down", "full", "gone")
    assert [a["NodeID"] for a in accepted.place] == ["ok"]
    assert accepted.stop == plan.stop and accepted.failed == {"g": 2}
    assert (accepted.eval_id, accepted.job_id) == (plan.eval_id, plan.job_id)


def test_check_plan_sums_all_placements_on_a_node() -> None:
    """Two placements that each fit but together do not reject the node (and both placements)."""
    nodes = {"n1": node("n1", 300, 300)}
    plan = plan_for(job(count=3, cpu=100, mem=100), list(nodes.values()))
    assert check_plan(plan, nodes, [])[1] == ()
    busy = [alloc("other", "n1", job_id="db", cpu=1, mem=1)]
    accepted, rejected = check_plan(plan, nodes, busy)
    assert rejected == ("n1",) and accepted.place == ()
    stopped_busy = [alloc("other", "n1", job_id="db", desired="stop", cpu=1, mem=1)]
    assert check_plan(plan, nodes, stopped_busy)[1] == ()


# ---------------------------------------------------------------- wire form

def test_wire_round_trip_through_msgpack() -> None:
    """A plan survives to_wire, msgpack and from_wire unchanged."""
    plan = plan_for(job(count=2), [node("n1"), node("n2", status="down")],
                    [alloc("a9", "n2", 0)])
    plan = Plan(plan.eval_id, plan.job_id, plan.place, plan.stop, {"g": 1})
    wire = msgpack.unpackb(msgpack.packb(plan.to_wire()), raw=False)
    assert wire["Stop"] == [["a9", "lost"]]
    assert Plan.from_wire(wire) == plan


GOOD_PLACE = {"ID": "a", "NodeID": "n", "TaskGroup": "g", "Name": "j.g[0]",
              "Resources": {"CPU": 1, "MemoryMB": 1}}


@pytest.mark.parametrize("obj", [
    None, [], "plan", {"JobID": "j"}, {"EvalID": 1, "JobID": "j"},
    {"EvalID": "e", "JobID": "j", "Place": {}},
    {"EvalID": "e", "JobID": "j", "Place": ["x"]},
    {"EvalID": "e", "JobID": "j", "Place": [{**GOOD_PLACE, "NodeID": None}]},
    {"EvalID": "e", "JobID": "j", "Place": [{**GOOD_PLACE, "Resources": {"CPU": 1}}]},
    {"EvalID": "e", "JobID": "j", "Place": [{**GOOD_PLACE, "Resources": {"CPU": -1, "MemoryMB": 1}}]},
    {"EvalID": "e", "JobID": "j", "Stop": [["a"]]},
    {"EvalID": "e", "JobID": "j", "Stop": [["a", 3]]},
    {"EvalID": "e", "JobID": "j", "Failed": {"g": -1}},
    {"EvalID": "e", "JobID": "j", "Failed": {"g": True}},
    {"EvalID": "e", "JobID": "j", "Failed": []},
])
def test_from_wire_rejects_bad_shapes(obj: Any) -> None:
    """Each malformed plan map raises ValueError naming what is wrong."""
    with pytest.raises(ValueError, match="plan"):
        Plan.from_wire(obj)


def test_from_wire_defaults_missing_lists() -> None:
    """The plan_apply shape (no Failed) and an empty plan decode."""
    assert Plan.from_wire({"EvalID": "e", "JobID": "j", "Place": [GOOD_PLACE], "Stop": [["a", ""]]}) \
        == Plan("e", "j", (GOOD_PLACE,), (("a", ""),), {})


# ---------------------------------------------------------------- properties

@st.composite
def cluster_states(draw: st.DrawFn, job_types: Sequence[str] = JOB_TYPES,
                   single_group: bool = False) -> tuple[dict, list[dict], list[dict]]:
    """A job, nodes and allocs (of this job and another) in every combination of status."""
    nodes = [node(f"n{i}", draw(st.integers(0, 4)) * 500, draw(st.integers(0, 4)) * 256,
                  dc=draw(st.sampled_from(["dc1", "dc2"])),
                  status=draw(st.sampled_from(["ready", "ready", "down", "initializing"])),
                  eligibility=draw(st.sampled_from(["eligible", "eligible", "ineligible"])))
             for i in range(draw(st.integers(0, 5)))]
    groups = [{"Name": f"g{k}", "Count": draw(st.integers(0, 6)),
               "Resources": {"CPU": draw(st.integers(0, 3)) * 250,
                             "MemoryMB": draw(st.integers(0, 3)) * 128}}
              for k in range(1 if single_group else draw(st.integers(1, 3)))]
    the_job = job(job_type=draw(st.sampled_from(list(job_types))), groups=groups,
                  dcs=draw(st.sampled_from([["dc1"], ["dc2"], ["dc1", "dc2"], ["*"], []])))
    node_ids = [n["ID"] for n in nodes] + ["missing"]
    allocs = [alloc(f"x{i}", draw(st.sampled_from(node_ids)), draw(st.integers(0, 5)),
                    job_id=draw(st.sampled_from(["web", "web", "db"])),
                    tg=draw(st.sampled_from(["g0", "g0", "g1", "g2", "gone"])),
                    client=draw(st.sampled_from(
                        ["pending", "running", "running", "complete", "failed", "lost"])),
                    desired=draw(st.sampled_from(["run", "run", "stop"])),
                    cpu=draw(st.integers(0, 4)) * 125, mem=draw(st.integers(0, 4)) * 64)
              for i in range(draw(st.integers(0, 12)))]
    return the_job, nodes, allocs


def usage_map(nodes: list[dict], allocs: list[dict]) -> dict[str, dict[str, int]]:
    return {n["ID"]: node_usage(n["ID"], allocs) for n in nodes}


@settings(max_examples=150, deadline=None)
@given(state=cluster_states(), data=st.data())
def test_property_accepted_plan_never_overfills_a_node(state: tuple, data: st.DataObject) -> None:
    """Planned on a stale state, checked on the current one: no node that got placements is over capacity."""
    the_job, nodes, allocs = state
    plan = plan_for(the_job, nodes, allocs)
    # The world moves on between the worker's snapshot and the leader's check.
    now_nodes = {n["ID"]: {**n, "Status": data.draw(st.sampled_from([n["Status"], "down"]))}
                 for n in nodes}
    for node_id in data.draw(st.lists(st.sampled_from(sorted(now_nodes) or ["none"]), max_size=3)):
        now_nodes.pop(node_id, None)
    late = [alloc(f"late{i}", data.draw(st.sampled_from([n["ID"] for n in nodes] or ["none"])),
                  job_id="db", cpu=data.draw(st.integers(0, 4)) * 250,
                  mem=data.draw(st.integers(0, 4)) * 128)
            for i in range(data.draw(st.integers(0, 3)))]
    now_allocs = allocs + late
    accepted, rejected = check_plan(plan, now_nodes, now_allocs)
    before = usage_map(nodes, now_allocs)
    after_allocs = apply(now_allocs, accepted)
    after = usage_map(nodes, after_allocs)
    for placement in accepted.place:
        target = now_nodes[placement["NodeID"]]
        assert target["Status"] == "ready" and placement["NodeID"] not in rejected
        assert fits(target, after[target["ID"]], {"CPU": 0, "MemoryMB": 0}), (target, after)
    for node_id, used in after.items():
        if node_id not in {a["NodeID"] for a in accepted.place}:
            assert all(used[k] <= before[node_id][k] for k in used)


@settings(max_examples=150, deadline=None)
@given(state=cluster_states())
def test_property_plan_is_fully_accepted_against_its_own_state(state: tuple) -> None:
    """check_plan accepts everything plan_evaluation produced from the same state."""
    the_job, nodes, allocs = state
    plan = plan_for(the_job, nodes, allocs)
    assert check_plan(plan, {n["ID"]: n for n in nodes}, allocs) == (plan, ())


def items_that_fit(target: dict, used: dict[str, int], request: dict[str, int], limit: int) -> int:
    """Oracle: how many identical requests fit on one node (capped at limit)."""
    free = {k: target["NodeResources"][k] - used[k] for k in ("CPU", "MemoryMB")}
    if any(v < 0 for v in free.values()):
        return 0
    return min([limit] + [free[k] // request[k] for k in free if request[k] > 0])


@settings(max_examples=200, deadline=None)
@given(state=cluster_states(job_types=("service",), single_group=True))
def test_property_service_live_count_is_count_or_all_that_fits(state: tuple) -> None:
    """After a service plan, live allocs == min(Count, kept + what fits), and the shortfall is in failed."""
    the_job, nodes, allocs = state
    group = the_job["TaskGroups"][0]
    count = group["Count"]
    ready = {n["ID"] for n in nodes if n["Status"] == "ready"}
    mine = [a for a in allocs if a["JobID"] == "web" and is_live(a)]
    # Two live allocs under one name cannot arise (the broker runs one evaluation per job
    # at a time and the plan applier is serial), so such inputs are out of scope here.
    assume(len({a["Name"] for a in mine}) == len(mine))
    kept = sum(1 for a in mine if a["TaskGroup"] == "g0" and a["NodeID"] in ready)
    # Live allocs of a removed task group are stopped, so their room counts as free.
    others = [a for a in allocs if not (a["JobID"] == "web" and a["TaskGroup"] != "g0")]
    room = sum(items_that_fit(n, node_usage(n["ID"], others), group["Resources"], count)
               for n in nodes if is_candidate(n, the_job["Datacenters"]))
    expected = min(count, kept + room)
    plan = plan_for(the_job, nodes, allocs)
    after = apply(allocs, plan)
    live = [a for a in after if a["JobID"] == "web" and is_live(a)]
    assert len(live) == expected
    assert all(a["NodeID"] in ready for a in live)
    assert plan.failed.get("g0", 0) == count - expected
    assert len({a["Name"] for a in live}) == len(live)     # names never collide


@settings(max_examples=300, deadline=None)
@given(state=cluster_states(job_types=("system", "sysbatch")))
@example(state=(job(job_type="system", groups=[{"Name": "g0", "Count": 0, "Resources": {}}]),
                [node("n0"), node("n1")], [alloc("x0", "n0", tg="g0"), alloc("x1", "n0", tg="g0")]))
def test_property_system_never_two_live_allocs_of_a_group_on_a_node(state: tuple) -> None:
    """After a system plan each (task group, node) has at most one live alloc, only on ready nodes."""
    the_job, nodes, allocs = state
    after = apply(allocs, plan_for(the_job, nodes, allocs))
    ready = {n["ID"] for n in nodes if n["Status"] == "ready"}
    pairs = [(a["TaskGroup"], a["NodeID"]) for a in after if a["JobID"] == "web" and is_live(a)]
    assert len(pairs) == len(set(pairs))
    assert all(node_id in ready for _, node_id in pairs)


@settings(max_examples=100, deadline=None)
@given(state=cluster_states(), failed=st.dictionaries(st.text(max_size=5), st.integers(0, 99)))
def test_property_wire_round_trip(state: tuple, failed: dict[str, int]) -> None:
    """Any plan survives to_wire, msgpack and from_wire."""
    the_job, nodes, allocs = state
    plan = plan_for(the_job, nodes, allocs)
    plan = Plan(plan.eval_id, plan.job_id, plan.place, plan.stop, failed)
    assert Plan.from_wire(msgpack.unpackb(msgpack.packb(plan.to_wire()), raw=False)) == plan


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(obj=st.one_of(json_values, st.fixed_dictionaries(
    {"EvalID": st.text(max_size=2), "JobID": st.text(max_size=2)},
    optional={"Place": json_values, "Stop": json_values, "Failed": json_values})))
def test_property_from_wire_decodes_or_raises_value_error(obj: Any) -> None:
    """Arbitrary maps either decode to a Plan or raise ValueError, nothing else."""
    try:
        plan = Plan.from_wire(obj)
    except ValueError:
        return
    assert Plan.from_wire(plan.to_wire()) == plan
