"""Job, node, evaluation and allocation routes against a fake facade backed by plain dicts."""

from __future__ import annotations

from typing import Any, Sequence

import pytest

from agent.http.api import ApiError
from agent.http.app import create_app
from agent.http.job_routes import register_job_routes

from .helpers import TEXT, Answer, request_app

JOB = {"ID": "web", "Type": "service", "Datacenters": ["dc1"],
       "TaskGroups": [{"Name": "app", "Count": 2, "Resources": {"CPU": 200, "MemoryMB": 128}}]}
NODE = {"ID": "5f1c9a2e-0000-4000-8000-000000000001", "Name": "c1", "Datacenter": "dc1",
        "NodeClass": "", "Meta": {}, "Attributes": {}, "NodeResources": {"CPU": 4000, "MemoryMB": 8192},
        "Status": "ready", "SchedulingEligibility": "eligible", "HTTPAddr": "127.0.0.1:4656",
        "CreateIndex": 3, "ModifyIndex": 4, "StatusUpdatedAt": 0}


class FakeJobs:
    """A server agent without raft or schedulers: jobs, evals and allocs live in dicts."""

    def __init__(self, *, is_server: bool = True) -> None:
        self.is_server = is_server
        self.index = 10
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {NODE["ID"]: dict(NODE)}
        self.evals: dict[str, dict[str, Any]] = {}
        self.allocs: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.fail_with: ApiError | None = None

    def members(self) -> dict[str, Any]:
        return {"Members": []}

    async def join(self, addresses: Sequence[str]) -> dict[str, Any]:
        return {}

    async def force_leave(self, node: str, prune: bool) -> None:
        return None

    def metrics(self) -> dict[str, Any]:
        return {}

    def _eval(self, job: dict[str, Any], trigger: str) -> dict[str, Any]:
        self.index += 1
        evaluation = {"ID": f"eval-{self.index}", "Namespace": job["Namespace"], "JobID": job["ID"],
                      "Priority": job["Priority"], "Type": job["Type"], "TriggeredBy": trigger,
                      "Status": "pending", "CreateIndex": self.index, "ModifyIndex": self.index}
        self.evals[evaluation["ID"]] = evaluation
        return evaluation

    async def register_job(self, job: dict[str, Any]) -> dict[str, Any]:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(("register", job))
        self.index += 1
        key = (job["Namespace"], job["ID"])
        old = self.jobs.get(key)
        stored = dict(job, CreateIndex=old["CreateIndex"] if old else self.index,
                      ModifyIndex=self.index, JobModifyIndex=self.index, SubmitTime=123)
        self.jobs[key] = stored
        evaluation = self._eval(stored, "job-register")
        alloc_id = f"alloc-{self.index}"
        self.allocs[alloc_id] = {"ID": alloc_id, "Namespace": job["Namespace"],
                                 "EvalID": evaluation["ID"], "JobID": job["ID"],
                                 "NodeID": NODE["ID"], "TaskGroup": "app"}
        return {"EvalID": evaluation["ID"], "EvalCreateIndex": evaluation["CreateIndex"],
                "JobModifyIndex": stored["JobModifyIndex"], "Index": evaluation["CreateIndex"]}

    async def deregister_job(self, job_id: str, namespace: str, purge: bool) -> dict[str, Any]:
        self.calls.append(("deregister", job_id, namespace, purge))
        job = self.jobs.get((namespace, job_id))
        if job is None:
            return {"Error": "job not found"}
        if purge:
            del self.jobs[(namespace, job_id)]
        else:
            job["Stop"] = True
        evaluation = self._eval(job, "job-deregister")
        return {"EvalID": evaluation["ID"], "EvalCreateIndex": evaluation["CreateIndex"],
                "JobModifyIndex": self.index, "Index": self.index}

    async def state_read(self, query: dict[str, Any], stale: bool) -> dict[str, Any]:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(("read", query, stale))
        kind, index = query["Type"], self.index
        namespace = query.get("Namespace", "default")
        if kind == "job_list":
            return {"Index": index, "Jobs": [j for (ns, _), j in self.jobs.items() if ns == namespace]}
        if kind == "job_get":
            return {"Index": index, "Job": self.jobs.get((namespace, query["JobID"]))}
        if kind == "job_allocs":
            return {"Index": index, "Allocs": [a for a in self.allocs.values()
                                               if a["JobID"] == query["JobID"]]}
        if kind == "job_evals":
            return {"Index": index, "Evals": [e for e in self.evals.values()
                                              if e["JobID"] == query["JobID"]]}
        if kind == "node_list":
            return {"Index": 4, "Nodes": list(self.nodes.values())}
        if kind == "node_get":
            found = [n for i, n in self.nodes.items() if i.startswith(query["NodeID"])]
            return {"Index": 4, "Node": found[0] if len(found) == 1 else None}
        if kind == "eval_list":
            return {"Index": index, "Evals": list(self.evals.values())}
        if kind == "eval_get":
            return {"Index": index, "Eval": self.evals.get(query["EvalID"])}
        if kind == "alloc_list":
            allocs = [a for a in self.allocs.values()
                      if query.get("NodeID") in (None, a["NodeID"])]
            return {"Index": index, "Allocs": allocs}
        if kind == "alloc_get":
            return {"Index": index, "Alloc": self.allocs.get(query["AllocID"])}
        return {"Error": f"unknown query {kind}"}


async def call(api: FakeJobs, method: str, path: str, body: Any = None, *,
               raw: bytes | None = None) -> Answer:
    app = create_app(api)
    register_job_routes(app, api)
    register_job_routes(app, api)          # a second registration is a no-op
    return await request_app(app, method, path, body, raw=raw)


def stored(api: FakeJobs) -> list[Any]:
    return [c for c in api.calls if c[0] in ("register", "deregister")]


# --- register -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "POST"])
async def test_register_returns_nomads_response(method: str) -> None:
    """PUT|POST /v1/jobs stores the canonical job and answers JobRegisterResponse with the index."""
    api = FakeJobs()
    answer = await call(api, method, "/v1/jobs", {"Job": JOB})
    assert answer.status == 200
    assert answer.json == {"EvalID": "eval-12", "EvalCreateIndex": 12, "JobModifyIndex": 11,
                           "Warnings": "", "Index": 12, "LastContact": 0, "KnownLeader": False,
                           "NextToken": ""}
    assert answer.headers["X-Nomad-Index"] == "12"
    (_, job), = stored(api)
    assert (job["ID"], job["Name"], job["Priority"], job["Namespace"]) == ("web", "web", 50, "default")
    assert job["TaskGroups"][0]["Resources"] == {"CPU": 200, "MemoryMB": 128}


@pytest.mark.parametrize(("body", "reason"), [
    ({"Job": dict(JOB, Type="docker")},
     "Type: unknown job type 'docker' (expected one of service, batch, system, sysbatch)"),
    ({"Job": dict(JOB, TaskGroups=[{"Name": "app", "Count": -2}])},
     "TaskGroups[0].Count: can't be negative, got -2"),
    ({"Job": {k: v for k, v in JOB.items() if k != "ID"}}, "ID: missing job ID"),
    ({"Job": dict(JOB, Priority="high")}, "Priority: expected an integer, got a string 'high'"),
    ([JOB], "Job: expected a JSON object, got a list"),
    ({"Job": None}, "Job: must be specified"),
])
async def test_invalid_jobs_get_one_line_400_and_nothing_is_stored(body: Any, reason: str) -> None:
    """Unknown type, negative count, missing ID, wrong types: 400, one line, no write."""
    api = FakeJobs()
    answer = await call(api, "PUT", "/v1/jobs", body)
    assert (answer.status, answer.text) == (400, reason)
    assert stored(api) == [] and api.jobs == {}


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "Request body is empty"),
    (b"{\"Job\": {\"ID\": ", "invalid JSON body: Expecting value: line 1 column 16 (char 15)"),
    (b"\xff\xfe", "invalid JSON body:"),
])
async def test_wrong_json_is_a_one_line_400(raw: bytes, reason: str) -> None:
    """A body that is not JSON at all is refused before any parsing of the job."""
    api = FakeJobs()
    answer = await call(api, "POST", "/v1/jobs", raw=raw)
    assert answer.status == 400 and answer.text.startswith(reason)
    assert "\n" not in answer.text and stored(api) == []


async def test_register_on_job_path_checks_the_id_and_namespace() -> None:
    """PUT /v1/job/<id> registers too; a different ID in the body is Nomad's 400;
    ?namespace= fills a job without one."""
    api = FakeJobs()
    mismatch = await call(api, "PUT", "/v1/job/other", {"Job": JOB})
    assert (mismatch.status, mismatch.text) == (400, "Job ID does not match name")
    ok = await call(api, "POST", "/v1/job/web?namespace=prod", {"Job": JOB})
    assert ok.status == 200 and ("prod", "web") in api.jobs
    explicit = await call(api, "PUT", "/v1/jobs?namespace=prod", {"Job": dict(JOB, Namespace="ops")})
    assert explicit.status == 200 and ("ops", "web") in api.jobs


async def test_register_facade_errors_pass_through() -> None:
    """An ApiError from the facade (e.g. no leader) becomes its status and message."""
    api = FakeJobs()
    api.fail_with = ApiError(500, "No cluster leader")
    answer = await call(api, "PUT", "/v1/jobs", {"Job": JOB})
    assert (answer.status, answer.text) == (500, "No cluster leader")


# --- job reads and deregister -------------------------------------------------------------


async def test_job_list_get_allocations_evaluations() -> None:
    """A registered job lists as a stub, reads back whole, and shows its allocs and evals."""
    api = FakeJobs()
    await call(api, "PUT", "/v1/jobs", {"Job": JOB})
    await call(api, "PUT", "/v1/jobs", {"Job": dict(JOB, ID="api")})
    listed = await call(api, "GET", "/v1/jobs")
    assert [j["ID"] for j in listed.json] == ["api", "web"]
    assert "TaskGroups" not in listed.json[0] and listed.json[0]["SubmitTime"] == 123
    assert (listed.headers["X-Nomad-Index"], listed.headers["X-Nomad-KnownLeader"],
            listed.headers["X-Nomad-LastContact"]) == ("14", "true", "0")
    assert [j["ID"] for j in (await call(api, "GET", "/v1/jobs?prefix=w")).json] == ["web"]
    got = await call(api, "GET", "/v1/job/web")
    assert got.json["ID"] == "web" and got.json["TaskGroups"][0]["Name"] == "app"
    allocs = await call(api, "GET", "/v1/job/web/allocations")
    assert [a["EvalID"] for a in allocs.json] == ["eval-12"]
    evals = await call(api, "GET", "/v1/job/web/evaluations")
    assert [e["TriggeredBy"] for e in evals.json] == ["job-register"]
    assert evals.headers["X-Nomad-Index"] == "14"


async def test_reads_pass_stale_and_namespace_and_check_options() -> None:
    """?stale and ?namespace reach the state query; a bad ?stale is Nomad's 400."""
    api = FakeJobs()
    await call(api, "GET", "/v1/job/web?stale&namespace=prod")
    await call(api, "GET", "/v1/jobs")
    assert api.calls == [("read", {"Type": "job_get", "JobID": "web", "Namespace": "prod"}, True),
                         ("read", {"Type": "job_list", "Namespace": "default", "Prefix": ""}, False)]
    bad = await call(api, "GET", "/v1/nodes?stale=maybe")
    assert (bad.status, bad.text) == (400, "Expect `true` or `false` for `stale` query string parameter")


async def test_missing_job_is_404_with_index_headers() -> None:
    """GET /v1/job/<id> of an unknown job is 404 "job not found", still with X-Nomad-Index."""
    answer = await call(FakeJobs(), "GET", "/v1/job/nope")
    assert (answer.status, answer.text) == (404, "job not found")
    assert answer.headers["X-Nomad-Index"] == "10"


async def test_deregister_and_purge() -> None:
    """DELETE stops the job (purge=true removes it) and answers JobDeregisterResponse."""
    api = FakeJobs()
    await call(api, "PUT", "/v1/jobs", {"Job": JOB})
    stopped = await call(api, "DELETE", "/v1/job/web")
    assert stopped.status == 200 and stopped.headers["X-Nomad-Index"] == "13"
    assert stopped.json == {"EvalID": "eval-13", "EvalCreateIndex": 13, "JobModifyIndex": 13,
                            "VolumeEvalID": "", "VolumeEvalIndex": 0, "Index": 13,
                            "LastContact": 0, "KnownLeader": False, "NextToken": ""}
    assert api.jobs[("default", "web")]["Stop"] is True
    purged = await call(api, "DELETE", "/v1/job/web?purge=true")
    assert purged.status == 200 and api.jobs == {}
    assert stored(api)[1:] == [("deregister", "web", "default", False),
                               ("deregister", "web", "default", True)]
    missing = await call(api, "DELETE", "/v1/job/web")
    assert (missing.status, missing.text) == (404, "job not found")


async def test_deregister_bad_purge_value() -> None:
    """A purge value Go's ParseBool refuses is a 400 naming it; nothing is deregistered."""
    api = FakeJobs()
    answer = await call(api, "DELETE", "/v1/job/web?purge=yes")
    assert (answer.status, answer.text) == (
        400, 'Failed to parse value of "purge" (yes) as a bool: '
             'strconv.ParseBool: parsing "yes": invalid syntax')
    assert stored(api) == []


# --- nodes, evaluations, allocations ------------------------------------------------------


async def test_nodes_list_and_get_by_prefix() -> None:
    """/v1/nodes lists NodeListStubs; /v1/node/<prefix> finds one; unknown is 404."""
    api = FakeJobs()
    listed = await call(api, "GET", "/v1/nodes")
    stub, = listed.json
    assert (stub["ID"], stub["Address"], stub["Datacenter"], stub["Status"],
            stub["SchedulingEligibility"], stub["Drain"]) == (
        NODE["ID"], "127.0.0.1", "dc1", "ready", "eligible", False)
    assert "NodeResources" not in stub and listed.headers["X-Nomad-Index"] == "4"
    with_resources = await call(api, "GET", "/v1/nodes?resources=true")
    assert with_resources.json[0]["NodeResources"] == {"CPU": 4000, "MemoryMB": 8192}
    assert (await call(api, "GET", "/v1/nodes?prefix=zz")).json == []
    got = await call(api, "GET", "/v1/node/5f1c")
    assert got.json == NODE
    missing = await call(api, "GET", "/v1/node/abc")
    assert (missing.status, missing.text) == (404, "node not found")


async def test_node_allocations() -> None:
    """/v1/node/<id>/allocations lists the allocs placed on that node."""
    api = FakeJobs()
    await call(api, "PUT", "/v1/jobs", {"Job": JOB})
    answer = await call(api, "GET", f"/v1/node/{NODE['ID']}/allocations")
    assert [a["JobID"] for a in answer.json] == ["web"]
    assert api.calls[-1] == ("read", {"Type": "alloc_list", "NodeID": NODE["ID"]}, False)


async def test_evaluations_and_allocations() -> None:
    """Lists and single reads of evals and allocs; unknown IDs are Nomad's 404 texts."""
    api = FakeJobs()
    await call(api, "PUT", "/v1/jobs", {"Job": JOB})
    evals = await call(api, "GET", "/v1/evaluations")
    assert [e["ID"] for e in evals.json] == ["eval-12"]
    assert (await call(api, "GET", "/v1/evaluations?prefix=x")).json == []
    assert (await call(api, "GET", "/v1/evaluation/eval-12")).json["JobID"] == "web"
    allocs = await call(api, "GET", "/v1/allocations")
    assert [a["ID"] for a in allocs.json] == ["alloc-12"]
    assert (await call(api, "GET", "/v1/allocation/alloc-12")).json["EvalID"] == "eval-12"
    for path, text in (("/v1/evaluation/nope", "eval not found"),
                       ("/v1/allocation/nope", "alloc not found")):
        answer = await call(api, "GET", path)
        assert (answer.status, answer.text) == (404, text)


async def test_state_error_is_a_400() -> None:
    """A query the state store refuses ({"Error": ...}) answers 400 with its one line."""
    api = FakeJobs()

    async def refuse(query: dict[str, Any], stale: bool) -> dict[str, Any]:
        return {"Error": "ambiguous node prefix\n2 matches"}

    api.state_read = refuse  # type: ignore[method-assign]
    answer = await call(api, "GET", "/v1/node/5")
    assert (answer.status, answer.text) == (400, "ambiguous node prefix 2 matches")


# --- methods and client-only agents -------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/v1/jobs"), ("PATCH", "/v1/job/web"), ("PUT", "/v1/job/web/allocations"),
    ("POST", "/v1/job/web/evaluations"), ("PUT", "/v1/nodes"), ("DELETE", "/v1/node/x"),
    ("POST", "/v1/evaluations"), ("PUT", "/v1/evaluation/x"), ("DELETE", "/v1/allocations"),
    ("PUT", "/v1/allocation/x")])
async def test_other_methods_are_405(method: str, path: str) -> None:
    """Each route answers a method it does not serve with 405 "Invalid method"."""
    answer = await call(FakeJobs(), method, path, {"Job": JOB})
    assert (answer.status, answer.text) == (405, "Invalid method")


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/jobs"), ("PUT", "/v1/jobs"), ("GET", "/v1/job/web"), ("DELETE", "/v1/job/web"),
    ("GET", "/v1/job/web/allocations"), ("GET", "/v1/nodes"), ("GET", "/v1/node/x"),
    ("GET", "/v1/evaluations"), ("GET", "/v1/allocation/x")])
async def test_client_only_agent_has_no_servers(method: str, path: str) -> None:
    """A client-only agent answers 500 "no servers" for valid requests, and sends nothing."""
    api = FakeJobs(is_server=False)
    answer = await call(api, method, path, {"Job": JOB})
    assert (answer.status, answer.text) == (500, "no servers")
    assert api.calls == []


async def test_client_only_agent_still_refuses_bad_jobs() -> None:
    """A bad job is a 400 even where there is no server to send it to."""
    answer = await call(FakeJobs(is_server=False), "PUT", "/v1/jobs", {"Job": {"ID": "x"}})
    assert (answer.status, answer.text) == (400, "TaskGroups: a job needs at least one task group")


async def test_pretty_output() -> None:
    """?pretty indents reads by 4 spaces with a trailing newline, as the other routes do."""
    answer = await call(FakeJobs(), "GET", "/v1/jobs?pretty")
    assert answer.body == b"[]\n"
