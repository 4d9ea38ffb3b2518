"""StateStore scheduling tables: nodes, jobs, evaluations, allocations (commands, queries, snapshots)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.state import StateStore, encode_command
from agent.state_sched import alloc_terminal, job_status

T0 = 1_700_000_000_000_000_000
RES = {"CPU": 100, "MemoryMB": 64}


def node(node_id: str = "n1", **fields: Any) -> dict[str, Any]:
    return {"ID": node_id, "Name": node_id, "Datacenter": "dc1", "NodeClass": "",
            "NodeResources": {"CPU": 1000, "MemoryMB": 1024}, "Status": "ready",
            "HTTPAddr": "10.0.0.1:4646", **fields}


def job(job_id: str = "web", jtype: str = "service", count: int = 2, **fields: Any) -> dict[str, Any]:
    return {"ID": job_id, "Name": job_id, "Type": jtype, "Datacenters": ["dc1"], "Priority": 50,
            "TaskGroups": [{"Name": "g", "Count": count, "Resources": RES}], **fields}


def evaluation(eval_id: str, job_id: str = "web", *, status: str = "pending", jtype: str = "service",
               **fields: Any) -> dict[str, Any]:
    return {"ID": eval_id, "Namespace": "default", "Priority": 50, "Type": jtype,
            "TriggeredBy": "job-register", "JobID": job_id, "Status": status, **fields}


def alloc(alloc_id: str, job_id: str = "web", node_id: str = "n1", **fields: Any) -> dict[str, Any]:
    return {"ID": alloc_id, "EvalID": "e1", "NodeID": node_id, "JobID": job_id, "TaskGroup": "g",
            "Resources": RES, **fields}


def cmd(kind: str, **fields: Any) -> bytes:
    return encode_command({"Type": kind, **fields})


def plan(eval_id: str = "e1", job_id: str = "web", place: list[dict[str, Any]] | None = None,
         stop: list[list[str]] | None = None, update: dict[str, Any] | None = None,
         evals: list[dict[str, Any]] | None = None, time: int = T0) -> bytes:
    return cmd("plan_apply", Plan={"EvalID": eval_id, "JobID": job_id, "Place": place or [],
                                   "Stop": stop or []},
               EvalUpdate=update, Evals=evals or [], Time=time)


def q(store: StateStore, kind: str, **fields: Any) -> dict[str, Any]:
    return store.query({"Type": kind, **fields})


def tables(store: StateStore) -> dict[str, Any]:
    snap = msgpack.unpackb(store.snapshot(), strict_map_key=False)
    return {k: snap[k] for k in ("TableIndex", "Variables", "Nodes", "Jobs", "Evals", "Allocs")}


def seeded(index: int = 0) -> StateStore:
    """A store with node n1, running service job web (eval e1 complete, allocs a1 and a2)."""
    store = StateStore()
    store.apply(index + 1, cmd("node_register", Node=node(), Time=T0))
    store.apply(index + 2, cmd("job_register", Job=job(), Eval=evaluation("e1"), Time=T0))
    store.apply(index + 3, plan(place=[alloc("a1"), alloc("a2")],
                                update={"ID": "e1", "Status": "complete"}))
    return store


# --- nodes ---------------------------------------------------------------------------

def test_node_register_then_reregister_keeps_create_index_and_eligibility() -> None:
    """A re-register replaces the node but keeps CreateIndex and the stored eligibility."""
    store = StateStore()
    assert store.apply(2, cmd("node_register", Node=node(), Time=T0)) == {"Index": 2}
    first = q(store, "node_get", NodeID="n1")
    assert first["Index"] == 2
    assert first["Node"]["CreateIndex"] == first["Node"]["ModifyIndex"] == 2
    assert first["Node"]["StatusUpdatedAt"] == T0 and first["Node"]["Meta"] == {}
    store.apply(4, cmd("node_register", Time=T0 + 1,
                       Node=node(Status="initializing", SchedulingEligibility="ineligible")))
    second = q(store, "node_get", NodeID="n1")["Node"]
    assert (second["CreateIndex"], second["ModifyIndex"]) == (2, 4)
    assert second["Status"] == "initializing" and second["SchedulingEligibility"] == "eligible"


def test_node_status_updates_status_time_and_writes_evals() -> None:
    """node_status sets Status and StatusUpdatedAt and writes the carried evaluations in the same apply."""
    store = seeded()
    result = store.apply(10, cmd("node_status", NodeID="n1", Status="down", Time=T0 + 5,
                                 Evals=[evaluation("e2", TriggeredBy="node-update", NodeID="n1")]))
    assert result == {"Index": 10}
    got = q(store, "node_get", NodeID="n1")
    assert got["Node"]["Status"] == "down" and got["Node"]["StatusUpdatedAt"] == T0 + 5
    assert got["Node"]["ModifyIndex"] == 10 and got["Index"] == 10
    assert q(store, "eval_get", EvalID="e2")["Eval"]["CreateIndex"] == 10
    assert store.table_index("evals") == 10
    assert store.apply(11, cmd("node_status", NodeID="zz", Status="down", Time=T0)) == {
        "Error": "node not found"}


def test_node_get_prefix_match_and_list_stubs() -> None:
    """node_get takes an exact ID or a unique prefix; node_list gives Nomad-style stubs sorted by ID."""
    store = StateStore()
    for index, node_id in enumerate(["abc-1", "abd-2", "xyz-3"], start=1):
        store.apply(index, cmd("node_register", Node=node(node_id), Time=T0))
    assert q(store, "node_get", NodeID="abc")["Node"]["ID"] == "abc-1"
    assert q(store, "node_get", NodeID="ab")["Node"] is None          # ambiguous
    assert q(store, "node_get", NodeID="q")["Node"] is None           # no match
    assert q(store, "node_get", NodeID="")["Node"] is None
    listed = q(store, "node_list")
    assert listed["Index"] == 3 and [n["ID"] for n in listed["Nodes"]] == ["abc-1", "abd-2", "xyz-3"]
    assert listed["Nodes"][0] == {
        "Address": "10.0.0.1", "ID": "abc-1", "Datacenter": "dc1", "Name": "abc-1", "NodeClass": "",
        "Drain": False, "SchedulingEligibility": "eligible", "Status": "ready",
        "StatusDescription": "", "CreateIndex": 1, "ModifyIndex": 1}
    assert [n["ID"] for n in q(store, "node_list", Prefix="ab")["Nodes"]] == ["abc-1", "abd-2"]


# --- jobs ----------------------------------------------------------------------------

def test_job_register_versions_and_indexes() -> None:
    """A new job is version 0; the same spec again keeps Version/JobModifyIndex; a change bumps both."""
    store = StateStore()
    result = store.apply(3, cmd("job_register", Job=job(), Eval=evaluation("e1"), Time=T0))
    assert result == {"Index": 3, "JobModifyIndex": 3, "EvalID": "e1", "EvalCreateIndex": 3}
    got = q(store, "job_get", JobID="web", Namespace="default")["Job"]
    assert (got["Version"], got["CreateIndex"], got["ModifyIndex"], got["JobModifyIndex"]) == (0, 3, 3, 3)
    assert got["Status"] == "pending" and got["SubmitTime"] == T0 and got["Namespace"] == "default"
    store.apply(5, cmd("job_register", Job=job(), Eval=evaluation("e2"), Time=T0 + 1))
    same = q(store, "job_get", JobID="web")["Job"]
    assert (same["Version"], same["CreateIndex"], same["ModifyIndex"], same["JobModifyIndex"]) == (0, 3, 5, 3)
    assert same["SubmitTime"] == T0
    store.apply(7, cmd("job_register", Job=job(count=5), Eval=None, Time=T0 + 2))
    changed = q(store, "job_get", JobID="web")["Job"]
    assert (changed["Version"], changed["CreateIndex"], changed["JobModifyIndex"]) == (1, 3, 7)
    assert changed["TaskGroups"][0]["Count"] == 5 and changed["SubmitTime"] == T0 + 2
    assert q(store, "job_get", JobID="web")["Index"] == 7


def test_job_deregister_stop_then_purge() -> None:
    """Deregister sets Stop and a new Version; Purge deletes the job; an unknown job is an error."""
    store = seeded()
    result = store.apply(5, cmd("job_deregister", JobID="web", Namespace="default", Purge=False,
                                Eval=evaluation("e2", TriggeredBy="job-deregister"), Time=T0))
    assert result["Index"] == 5 and result["EvalID"] == "e2" and result["JobModifyIndex"] == 5
    stopped = q(store, "job_get", JobID="web")["Job"]
    assert stopped["Stop"] is True and stopped["Version"] == 1
    assert stopped["Status"] == "running"              # its allocations still run
    assert q(store, "eval_get", EvalID="e2")["Eval"]["Status"] == "pending"
    store.apply(6, cmd("job_deregister", JobID="web", Namespace="default", Purge=True, Eval=None))
    assert q(store, "job_get", JobID="web") == {"Index": 6, "Job": None}
    assert len(q(store, "job_allocs", JobID="web")["Allocs"]) == 2   # allocations stay until GC
    assert store.apply(7, cmd("job_deregister", JobID="web", Namespace="default", Purge=True)) == {
        "Error": "job not found"}


def test_job_list_stubs_and_namespace_filter() -> None:
    """job_list returns Nomad-style stubs for one namespace (default) or all ("*")."""
    store = StateStore()
    store.apply(1, cmd("job_register", Job=job("b"), Eval=None, Time=T0))
    store.apply(2, cmd("job_register", Job=job("a", Namespace="prod"), Eval=None, Time=T0))
    store.apply(3, cmd("job_register", Job=job("a"), Eval=None, Time=T0))
    listed = q(store, "job_list")
    assert listed["Index"] == 3 and [j["ID"] for j in listed["Jobs"]] == ["a", "b"]
    assert set(listed["Jobs"][0]) == {
        "ID", "ParentID", "Name", "Namespace", "Datacenters", "Type", "Priority", "Periodic",
        "ParameterizedJob", "Stop", "Status", "StatusDescription", "CreateIndex", "ModifyIndex",
        "JobModifyIndex", "SubmitTime"}
    every = q(store, "job_list", Namespace="*")["Jobs"]
    assert [(j["Namespace"], j["ID"]) for j in every] == [("default", "a"), ("default", "b"), ("prod", "a")]
    assert q(store, "job_get", JobID="a", Namespace="prod")["Job"]["CreateIndex"] == 2


# --- evaluations -----------------------------------------------------------------------

def test_eval_upsert_indexes_and_complete_cancels_blocked() -> None:
    """eval_upsert keeps CreateIndex; a complete eval with no BlockedEval cancels the job's blocked evals."""
    store = StateStore()
    store.apply(1, cmd("job_register", Job=job(), Eval=None, Time=T0))
    store.apply(2, cmd("eval_upsert", Evals=[evaluation("e1"), evaluation("b1", status="blocked")],
                       Time=T0))
    store.apply(3, cmd("eval_upsert", Evals=[evaluation("e1", status="complete")], Time=T0 + 9))
    e1 = q(store, "eval_get", EvalID="e1")["Eval"]
    assert (e1["CreateIndex"], e1["ModifyIndex"], e1["CreateTime"], e1["ModifyTime"]) == (2, 3, T0, T0 + 9)
    b1 = q(store, "eval_get", EvalID="b1")["Eval"]
    assert b1["Status"] == "canceled" and b1["ModifyIndex"] == 3
    assert b1["StatusDescription"] == 'evaluation "e1" successful'
    assert q(store, "job_get", JobID="web")["Job"]["Status"] == "dead"


def test_eval_lists_sorted_by_create_index_and_filtered() -> None:
    """eval_list and job_evals sort by CreateIndex and filter by JobID, Status and Namespace."""
    store = StateStore()
    store.apply(1, cmd("eval_upsert", Evals=[evaluation("z", "j1")]))
    store.apply(2, cmd("eval_upsert", Evals=[evaluation("a", "j2", status="blocked")]))
    store.apply(3, cmd("eval_upsert", Evals=[evaluation("m", "j1", Namespace="prod")]))
    assert [e["ID"] for e in q(store, "eval_list")["Evals"]] == ["z", "a", "m"]
    assert [e["ID"] for e in q(store, "eval_list", JobID="j1")["Evals"]] == ["z", "m"]
    assert [e["ID"] for e in q(store, "eval_list", Status="blocked")["Evals"]] == ["a"]
    assert [e["ID"] for e in q(store, "eval_list", Namespace="prod")["Evals"]] == ["m"]
    assert [e["ID"] for e in q(store, "job_evals", JobID="j1")["Evals"]] == ["z"]
    assert q(store, "eval_list")["Index"] == 3
    assert q(store, "eval_get", EvalID="nope") == {"Index": 3, "Eval": None}


# --- plans and allocations ---------------------------------------------------------------

def test_plan_apply_places_stops_updates_eval_and_adds_evals_in_one_apply() -> None:
    """One plan_apply writes placements, stops, the eval update and a blocked eval at the same index."""
    store = seeded()
    store.apply(4, cmd("job_register", Job=job(count=3), Eval=evaluation("e2"), Time=T0))
    result = store.apply(5, plan("e2", place=[alloc("a3", EvalID="e2")],
                                 stop=[["a1", "lost"], ["a2", ""], ["missing", ""]],
                                 update={"ID": "e2", "Status": "complete", "BlockedEval": "b2",
                                         "QueuedAllocations": {"g": 1}},
                                 evals=[evaluation("b2", status="blocked", PreviousEval="e2")],
                                 time=T0 + 3))
    assert result == {"Index": 5}
    allocs = {a["ID"]: a for a in q(store, "job_allocs", JobID="web")["Allocs"]}
    assert (allocs["a1"]["DesiredStatus"], allocs["a1"]["ClientStatus"]) == ("stop", "lost")
    assert (allocs["a2"]["DesiredStatus"], allocs["a2"]["ClientStatus"]) == ("stop", "pending")
    assert allocs["a1"]["ModifyIndex"] == 5 and allocs["a1"]["ModifyTime"] == T0 + 3
    a3 = allocs["a3"]
    assert (a3["DesiredStatus"], a3["ClientStatus"], a3["CreateIndex"], a3["Name"]) == (
        "run", "pending", 5, "web.g[0]")
    e2 = q(store, "eval_get", EvalID="e2")["Eval"]
    assert (e2["Status"], e2["BlockedEval"], e2["QueuedAllocations"], e2["CreateIndex"]) == (
        "complete", "b2", {"g": 1}, 4)
    assert q(store, "eval_get", EvalID="b2")["Eval"]["Status"] == "blocked"   # not canceled
    assert {store.table_index(t) for t in ("allocs", "evals")} == {5}


def test_alloc_client_update_and_alloc_lists() -> None:
    """Client updates set ClientStatus and ModifyTime, skip unknown ids; lists filter by node and job."""
    store = seeded()
    store.apply(4, cmd("node_register", Node=node("n2"), Time=T0))
    store.apply(5, plan(place=[alloc("a3", node_id="n2")]))
    result = store.apply(6, cmd("alloc_client_update", Time=T0 + 4,
                                Allocs=[{"ID": "a1", "ClientStatus": "running"},
                                        {"ID": "ghost", "ClientStatus": "failed"}]))
    assert result == {"Index": 6}
    a1 = q(store, "alloc_get", AllocID="a1")
    assert a1["Index"] == 6 and a1["Alloc"]["ClientStatus"] == "running"
    assert a1["Alloc"]["ModifyTime"] == T0 + 4 and a1["Alloc"]["ModifyIndex"] == 6
    assert [a["ID"] for a in q(store, "alloc_list")["Allocs"]] == ["a1", "a2", "a3"]
    assert [a["ID"] for a in q(store, "alloc_list", NodeID="n2")["Allocs"]] == ["a3"]
    assert [a["ID"] for a in q(store, "alloc_list", NodeID="n1", JobID="web")["Allocs"]] == ["a1", "a2"]
    assert q(store, "alloc_list", JobID="other")["Allocs"] == []
    assert q(store, "alloc_get", AllocID="ghost")["Alloc"] is None


@pytest.mark.parametrize(("jtype", "steps", "expected"), [
    # batch: pending -> running once placed -> dead when every alloc is terminal
    ("batch", [], "pending"),
    ("batch", ["place"], "running"),
    ("batch", ["place", "complete_one"], "running"),
    ("batch", ["place", "complete_one", "complete_other"], "dead"),
    ("sysbatch", ["place", "complete_one", "complete_other"], "dead"),
    ("batch", ["place", "complete_one", "complete_other", "pending_eval"], "pending"),  # new work
    ("service", ["place", "stop_all"], "dead"),
    ("service", ["place", "stop_all", "pending_eval"], "pending"),
    ("service", ["blocked_eval"], "pending"),
    ("system", [], "running"),
    ("system", ["place", "stop_all", "deregister"], "dead"),
    ("service", ["place", "deregister"], "running"),      # stopped, allocations not yet stopped
])
def test_job_status_transitions(jtype: str, steps: list[str], expected: str) -> None:
    """Job Status follows Nomad's getJobStatus as plans, client updates and evals arrive."""
    store = StateStore()
    store.apply(1, cmd("node_register", Node=node(), Time=T0))
    store.apply(2, cmd("job_register", Job=job(jtype=jtype), Eval=evaluation("e1", jtype=jtype),
                       Time=T0))
    actions = {
        "place": plan(place=[alloc("a1"), alloc("a2")], update={"ID": "e1", "Status": "complete"}),
        "complete_one": cmd("alloc_client_update", Allocs=[{"ID": "a1", "ClientStatus": "complete"}],
                            Time=T0),
        "complete_other": cmd("alloc_client_update", Time=T0,
                              Allocs=[{"ID": "a2", "ClientStatus": "complete"}]),
        "stop_all": plan(stop=[["a1", ""], ["a2", ""]], update={"ID": "e1", "Status": "complete"}),
        "pending_eval": cmd("eval_upsert", Evals=[evaluation("e9", jtype=jtype)]),
        "blocked_eval": cmd("eval_upsert", Evals=[evaluation("e1", status="blocked", jtype=jtype)]),
        "deregister": cmd("job_deregister", JobID="web", Namespace="default", Purge=False),
    }
    for index, step in enumerate(steps, start=3):
        assert "Error" not in store.apply(index, actions[step]), step
    got = q(store, "job_get", JobID="web")["Job"]
    assert got["Status"] == expected
    assert got["Status"] == job_status(got, q(store, "job_allocs", JobID="web")["Allocs"],
                                       q(store, "job_evals", JobID="web")["Evals"])


def test_scheduling_snapshot_has_job_nodes_job_allocs_and_live_allocs() -> None:
    """The worker's snapshot holds the job, all nodes, all the job's allocs, and the room other
    jobs' live allocs take, as one usage record per node (terminal ones take none)."""
    store = seeded()
    store.apply(4, cmd("job_register", Job=job("db"), Eval=None, Time=T0))
    store.apply(5, plan("x", "db", place=[alloc("d1", "db"), alloc("d2", "db")]))
    store.apply(6, cmd("alloc_client_update", Time=T0,
                       Allocs=[{"ID": "d2", "ClientStatus": "failed"},
                               {"ID": "a2", "ClientStatus": "complete"}]))
    snap = q(store, "scheduling_snapshot", JobID="web", Namespace="default")
    assert snap["Index"] == 6 and snap["Job"]["ID"] == "web"
    assert [n["ID"] for n in snap["Nodes"]] == ["n1"]
    assert [a["ID"] for a in snap["Allocs"]] == ["a1", "a2", "usage:n1"]
    d1 = q(store, "alloc_get", AllocID="d1")["Alloc"]
    assert snap["Allocs"][-1]["Resources"] == d1["Resources"]   # only d1 is live among db's
    assert all(not alloc_terminal(a) for a in snap["Allocs"] if a["JobID"] != "web")
    missing = q(store, "scheduling_snapshot", JobID="nope")
    assert missing["Job"] is None and [a["ID"] for a in missing["Allocs"]] == ["usage:n1"]
    a1 = q(store, "alloc_get", AllocID="a1")["Alloc"]
    assert missing["Allocs"][0]["Resources"] == {
        k: a1["Resources"][k] + d1["Resources"][k] for k in ("CPU", "MemoryMB")}


def test_empty_store_queries_report_index_one_and_bad_queries_raise() -> None:
    """Every query on an empty store reports Index 1; malformed arguments raise ValueError."""
    store = StateStore()
    for kind, args in [("node_list", {}), ("node_get", {"NodeID": "x"}), ("job_list", {}),
                       ("job_get", {"JobID": "x"}), ("job_allocs", {"JobID": "x"}),
                       ("job_evals", {"JobID": "x"}), ("eval_list", {}), ("eval_get", {"EvalID": "x"}),
                       ("alloc_list", {}), ("alloc_get", {"AllocID": "x"}),
                       ("scheduling_snapshot", {"JobID": "x"})]:
        assert q(store, kind, **args)["Index"] == 1, kind
    for kind, args in [("node_get", {}), ("job_get", {"JobID": 3}), ("eval_get", {"EvalID": None}),
                       ("alloc_list", {"NodeID": 5}), ("job_list", {"Namespace": 1}),
                       ("scheduling_snapshot", {})]:
        with pytest.raises(ValueError):
            q(store, kind, **args)


def test_query_results_are_copies() -> None:
    """Mutating a query result never changes the store."""
    store = seeded()
    got = q(store, "job_get", JobID="web")["Job"]
    got["TaskGroups"][0]["Count"] = 99
    q(store, "alloc_get", AllocID="a1")["Alloc"]["Resources"]["CPU"] = 0
    q(store, "scheduling_snapshot", JobID="web")["Nodes"][0]["NodeResources"]["CPU"] = 0
    assert q(store, "job_get", JobID="web")["Job"]["TaskGroups"][0]["Count"] == 2
    assert q(store, "alloc_get", AllocID="a1")["Alloc"]["Resources"]["CPU"] == 100
    assert q(store, "node_get", NodeID="n1")["Node"]["NodeResources"]["CPU"] == 1000


# --- bad shapes -------------------------------------------------------------------------

BAD = [
    cmd("node_register", Node="x"),
    cmd("node_register", Node=node(ID="")),
    cmd("node_register", Node=node(NodeResources={"CPU": -1, "MemoryMB": 1})),
    cmd("node_register", Node=node(Status="asleep")),
    cmd("node_register", Node=node(Meta={"k": 1})),
    cmd("node_register", Node=node(), Evals=[{"ID": "e"}]),
    cmd("node_register", Node=node(), Time=-4),
    cmd("node_status", NodeID="n1", Status="ready"),                 # no Time
    cmd("node_status", NodeID="n1", Status="gone", Time=T0),
    cmd("node_status", NodeID=7, Status="down", Time=T0),
    cmd("job_register", Job=None, Eval=None),
    cmd("job_register", Job=job(jtype="daemon"), Eval=None),
    cmd("job_register", Job=job(count=-1), Eval=None),
    cmd("job_register", Job=job(ID=""), Eval=None),
    cmd("job_register", Job=job(Priority=101), Eval=None),
    cmd("job_register", Job=job(TaskGroups=[]), Eval=None),
    cmd("job_register", Job=job(Datacenters="dc1"), Eval=None),
    cmd("job_register", Job=job(Stop="yes"), Eval=None),
    cmd("job_register", Job=job(Namespace="*"), Eval=None),
    cmd("job_register", Job=job(TaskGroups=[{"Name": "g", "Count": 1, "Resources": RES, "Duration": -1}]),
        Eval=None),
    cmd("job_register", Job=job(TaskGroups=[{"Name": "g", "Resources": RES}] * 2), Eval=None),
    cmd("job_register", Job=job(), Eval={"ID": "e", "Type": "service", "JobID": "web", "Status": "odd"}),
    cmd("job_deregister", JobID="web", Namespace="default", Purge="yes"),
    cmd("job_deregister", JobID="", Namespace="default"),
    cmd("job_deregister", JobID="nope", Namespace="default"),
    cmd("eval_upsert", Evals="e"),
    cmd("eval_upsert", Evals=[evaluation("ok"), evaluation("bad", jtype="nope")]),
    cmd("eval_upsert", Evals=[evaluation("q", QueuedAllocations={"g": -1})]),
    cmd("plan_apply", Plan=None),
    plan(place=[alloc("a9", NodeID="")]),
    plan(place=[alloc("a9", Resources={"CPU": "1"})]),
    plan(place=[alloc("a9")], stop=[["a1", "gone"]]),
    plan(stop=[["a1"]]),
    plan(place=[alloc("a9")], update={"ID": "e1", "Status": "weird"}),
    plan(place=[alloc("a9")], update={"Status": "complete"}),
    plan(place=[alloc("a9")], evals=[{"ID": "x"}]),
    cmd("alloc_client_update", Allocs=[{"ID": "a1", "ClientStatus": "running"}]),   # no Time
    cmd("alloc_client_update", Allocs=[{"ID": "a1", "ClientStatus": "done"}], Time=T0),
    cmd("alloc_client_update", Allocs=None, Time=T0),
    cmd("alloc_client_update", Allocs=[{"ID": "a1", "ClientStatus": "running"}], Time=T0, Evals=[5]),
]


@pytest.mark.parametrize("data", BAD)
def test_bad_commands_give_error_and_change_nothing(data: bytes) -> None:
    """A malformed scheduling command returns {"Error": msg} and leaves every table as it was."""
    store = seeded()
    before = tables(store)
    result = store.apply(10, data)
    assert set(result) == {"Error"} and isinstance(result["Error"], str) and result["Error"]
    assert tables(store) == before and store.index == 10


# --- snapshots ----------------------------------------------------------------------------

def test_snapshot_round_trip_and_version_one_restore() -> None:
    """A version-2 snapshot restores every table; a version-1 snapshot restores variables only."""
    store = seeded()
    copy = StateStore()
    copy.restore(store.snapshot())
    assert copy.state_equal(store)
    assert q(copy, "job_allocs", JobID="web") == q(store, "job_allocs", JobID="web")
    assert q(copy, "alloc_list", NodeID="n1") == q(store, "alloc_list", NodeID="n1")
    old = {"Version": 1, "Index": 4, "TableIndex": {"variables": 4},
           "Variables": [{"Namespace": "default", "Path": "a", "CreateIndex": 4, "CreateTime": 0,
                          "ModifyIndex": 4, "ModifyTime": 0, "Items": {"k": "v"}}]}
    copy.restore(msgpack.packb(old))
    assert copy.index == 4 and copy.get_variable("default", "a") is not None
    assert q(copy, "job_list", Namespace="*") == {"Index": 1, "Jobs": []}
    for bad in ({**msgpack.unpackb(store.snapshot()), "Nodes": 5},
                {**msgpack.unpackb(store.snapshot()), "Allocs": [{"ID": "x"}]}):
        with pytest.raises(ValueError):
            copy.restore(msgpack.packb(bad))
    assert copy.index == 4


# --- property: replicas that restore midway end equal -----------------------------------

IDS = st.sampled_from(["x1", "x2", "x3"])
NODE_IDS = st.sampled_from(["n1", "n2"])
JOB_IDS = st.sampled_from(["web", "batchy"])
TYPES = st.sampled_from(["service", "batch", "system", "sysbatch"])
EVAL_STATUS = st.sampled_from(["pending", "blocked", "complete", "failed", "canceled", "bogus"])
CLIENT = st.sampled_from(["pending", "running", "complete", "failed", "lost"])
TIMES = st.integers(min_value=0, max_value=2**40)


def _eval_st() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda i, j, s, t: evaluation(i, j, status=s, jtype=t, BlockedEval=""),
                     st.sampled_from(["e1", "e2", "e3"]), JOB_IDS, EVAL_STATUS, TYPES)


SCHED_COMMANDS = st.one_of(
    st.builds(lambda n, s, t: cmd("node_register", Node=node(n, Status=s), Time=t), NODE_IDS,
              st.sampled_from(["ready", "down", "initializing"]), TIMES),
    st.builds(lambda n, s, t, evs: cmd("node_status", NodeID=n, Status=s, Time=t, Evals=evs),
              NODE_IDS, st.sampled_from(["ready", "down"]), TIMES, st.lists(_eval_st(), max_size=2)),
    st.builds(lambda j, t, c, ev, tm: cmd("job_register", Job=job(j, jtype=t, count=c), Eval=ev, Time=tm),
              JOB_IDS, TYPES, st.integers(min_value=-1, max_value=3), st.one_of(st.none(), _eval_st()),
              TIMES),
    st.builds(lambda j, p, ev: cmd("job_deregister", JobID=j, Namespace="default", Purge=p, Eval=ev),
              JOB_IDS, st.booleans(), st.one_of(st.none(), _eval_st())),
    st.builds(lambda evs, t: cmd("eval_upsert", Evals=evs, Time=t), st.lists(_eval_st(), max_size=3), TIMES),
    st.builds(lambda places, stops, upd, evs, t: plan(place=places, stop=stops, update=upd, evals=evs,
                                                      time=t),
              st.lists(st.builds(lambda i, j, n: alloc(i, j, n), IDS, JOB_IDS, NODE_IDS), max_size=3),
              st.lists(st.tuples(IDS, st.sampled_from(["", "lost", "complete"])).map(list), max_size=2),
              st.one_of(st.none(), st.builds(lambda i, s: {"ID": i, "Status": s},
                                             st.sampled_from(["e1", "e2"]), EVAL_STATUS)),
              st.lists(_eval_st(), max_size=1), TIMES),
    st.builds(lambda ups, t: cmd("alloc_client_update", Allocs=ups, Time=t),
              st.lists(st.builds(lambda i, s: {"ID": i, "ClientStatus": s}, IDS, CLIENT), max_size=3),
              TIMES),
    st.binary(max_size=6),
)


@settings(max_examples=120, deadline=None)
@given(commands=st.lists(SCHED_COMMANDS, max_size=25), cut=st.integers(min_value=0, max_value=25),
       gaps=st.lists(st.integers(min_value=1, max_value=3), min_size=25, max_size=25))
def test_replica_restored_midway_ends_equal(commands: list[bytes], cut: int, gaps: list[int]) -> None:
    """A store fed every command and one restored from its snapshot midway end equal, result for result."""
    leader, follower = StateStore(), StateStore()
    cut = min(cut, len(commands))
    index = 0
    for position, data in enumerate(commands):
        if position == cut:
            follower.restore(leader.snapshot())
        index += gaps[position]
        expected = leader.apply(index, data)
        if position >= cut:
            assert follower.apply(index, data) == expected
    if cut == len(commands):
        follower.restore(leader.snapshot())
    assert follower.state_equal(leader)
    assert follower.snapshot() == leader.snapshot()
    for kind in ("eval_list", "alloc_list"):
        assert q(follower, kind) == q(leader, kind)
    _check_invariants(leader)


def _check_invariants(store: StateStore) -> None:
    """Indexes are ordered and every job's Status is what Nomad's rule gives."""
    records = (q(store, "node_list")["Nodes"] + q(store, "job_list", Namespace="*")["Jobs"]
               + q(store, "eval_list")["Evals"] + q(store, "alloc_list")["Allocs"])
    for record in records:
        assert 1 <= record["CreateIndex"] <= record["ModifyIndex"] <= store.index
    for stub in q(store, "job_list", Namespace="*")["Jobs"]:
        full = q(store, "job_get", JobID=stub["ID"])["Job"]
        assert full["Status"] == job_status(full, q(store, "job_allocs", JobID=stub["ID"])["Allocs"],
                                            q(store, "job_evals", JobID=stub["ID"])["Evals"])


def test_an_evaluation_moved_to_another_job_updates_the_old_jobs_status() -> None:
    """Re-upserting an eval id under another job re-derives the old job's status too
    (found by the replica property: the two replicas disagreed on the old job's status)."""
    store = StateStore()
    store.apply(1, cmd("job_register", Job=job("web", count=0), Time=1))
    store.apply(2, cmd("job_deregister", JobID="web", Namespace="default", Purge=False,
                       Eval=evaluation("e1", "web", status="complete", BlockedEval="")))
    assert store.query({"Type": "job_get", "JobID": "web"})["Job"]["Status"] == "dead"
    store.apply(3, cmd("eval_upsert", Evals=[evaluation("e1", "other")], Time=3))
    restored = StateStore()
    restored.restore(store.snapshot())
    statuses = [r.query({"Type": "job_get", "JobID": "web"})["Job"]["Status"] for r in (store, restored)]
    assert statuses == ["pending", "pending"]   # no evaluation and no allocation left: pending
