"""The pure helpers of agent/scheduling.py: what an applied command means for the broker,
and the plan applier's guard against placing a live allocation twice."""

from __future__ import annotations

import msgpack

from agent.scheduling import _without_live_names, carried_evals, frees_capacity, new_eval
from scheduler.placement import Plan


def command(**fields) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


def alloc(alloc_id: str, name: str, node: str = "n1", client: str = "running") -> dict:
    return {"ID": alloc_id, "JobID": "web", "Name": name, "NodeID": node, "DesiredStatus": "run",
            "ClientStatus": client}


def test_carried_evals_reads_eval_evals_and_eval_update() -> None:
    """Evaluations reach the broker from every key a command may carry them in."""
    data = command(Type="plan_apply", EvalUpdate={"ID": "u"}, Eval={"ID": "e"},
                   Evals=[{"ID": "a"}, "junk", {"ID": "b"}])
    assert [e["ID"] for e in carried_evals(data)] == ["e", "u", "a", "b"]
    assert carried_evals(b"\xc1garbage") == []


def test_frees_capacity_only_when_room_may_have_appeared() -> None:
    """Blocked evaluations are retried after a node comes or an allocation ends or stops."""
    assert frees_capacity(command(Type="node_register"))
    assert frees_capacity(command(Type="node_status", Status="ready"))
    assert not frees_capacity(command(Type="node_status", Status="down"))
    assert frees_capacity(command(Type="plan_apply", Plan={"Stop": [["a", ""]]}))
    assert not frees_capacity(command(Type="plan_apply", Plan={"Stop": [], "Place": [{}]}))
    assert frees_capacity(command(Type="alloc_client_update", Allocs=[{"ID": "a", "ClientStatus": "complete"}]))
    assert not frees_capacity(command(Type="alloc_client_update", Allocs=[{"ID": "a", "ClientStatus": "running"}]))
    assert frees_capacity(command(Type="job_deregister"))
    assert not frees_capacity(command(Type="var_upsert"))


def test_a_stale_plan_never_places_a_live_name_twice() -> None:
    """Placements under a name the job already runs are dropped; stopped ones free their name."""
    plan = Plan(eval_id="e", job_id="web", place=(alloc("new1", "web.g[0]"), alloc("new2", "web.g[1]")),
                stop=(), failed={})
    kept = _without_live_names(plan, [alloc("old", "web.g[0]")], "service")
    assert [a["ID"] for a in kept.place] == ["new2"]
    stopping = Plan(eval_id="e", job_id="web", place=plan.place, stop=(("old", "lost"),), failed={})
    assert _without_live_names(stopping, [alloc("old", "web.g[0]")], "service") is stopping
    done = _without_live_names(plan, [alloc("old", "web.g[0]", client="complete")], "service")
    assert done is plan


def test_system_allocations_share_a_name_and_are_kept_per_node() -> None:
    """System jobs name every allocation <job>.<tg>[0]: the guard keys them by node too."""
    plan = Plan(eval_id="e", job_id="web", place=(alloc("a", "web.g[0]", node="n2"),
                                                  alloc("b", "web.g[0]", node="n1")), stop=(), failed={})
    kept = _without_live_names(plan, [alloc("old", "web.g[0]", node="n1")], "system")
    assert [a["ID"] for a in kept.place] == ["a"]


def test_new_eval_carries_the_jobs_identity() -> None:
    """A fresh evaluation is pending, for the job's namespace, priority and type."""
    ev = new_eval({"ID": "web", "Namespace": "ops", "Priority": 70, "Type": "batch"}, "job-register")
    assert (ev["JobID"], ev["Namespace"], ev["Priority"], ev["Type"], ev["Status"]) == (
        "web", "ops", 70, "batch", "pending")
