"""agent.jobspec: Nomad-shaped job bodies become canonical Job records or one-line errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.jobspec import JobSpecError, job_stub, parse_duration, parse_job


def group(**fields: Any) -> dict[str, Any]:
    return {"Name": "web", **fields}


def job(**fields: Any) -> dict[str, Any]:
    return {"ID": "example", "TaskGroups": [group()], **fields}


def test_minimal_job_gets_nomads_defaults() -> None:
    """A job with only an ID and one named group gets every default of the contract."""
    assert parse_job({"Job": job()}) == {
        "ID": "example", "Name": "example", "Namespace": "default", "Type": "service",
        "Datacenters": ["*"], "Priority": 50, "Status": "pending", "Stop": False,
        "TaskGroups": [{"Name": "web", "Count": 1, "Resources": {"CPU": 100, "MemoryMB": 300},
                        "Duration": 0}],
        "Version": 0, "CreateIndex": 0, "ModifyIndex": 0, "JobModifyIndex": 0}


def test_bare_job_equals_wrapped_job() -> None:
    """A bare job object is read the same as Nomad's {"Job": ...} register request."""
    body = job(Type="batch", Priority=70, Datacenters=["dc1", "dc2"], Name="Example job")
    assert parse_job(body) == parse_job({"Job": body, "EnforceIndex": False})
    parsed = parse_job(body)
    assert (parsed["Name"], parsed["Priority"], parsed["Datacenters"]) == (
        "Example job", 70, ["dc1", "dc2"])


def test_full_nomad_job_json_sums_task_resources() -> None:
    """A Nomad-style job (Tasks with Resources, extra fields) sums its tasks per group."""
    nomad_job = {"Job": {
        "ID": "cache", "Type": "service", "Region": "global", "Namespace": "prod",
        "Datacenters": [], "Update": {"MaxParallel": 1}, "Meta": {"owner": "me"},
        "TaskGroups": [{"Name": "cache", "Count": 3, "Tasks": [
            {"Name": "redis", "Driver": "docker", "Config": {"image": "redis:7"},
             "Resources": {"CPU": 500, "MemoryMB": 256, "DiskMB": 10}},
            {"Name": "sidecar", "Resources": {"CPU": 50}},
            {"Name": "logger"}]}]}}
    parsed = parse_job(nomad_job)
    assert parsed["Namespace"] == "prod" and parsed["Datacenters"] == ["*"]
    assert parsed["TaskGroups"] == [{"Name": "cache", "Count": 3, "Duration": 0,
                                     "Resources": {"CPU": 650, "MemoryMB": 856}}]


def test_group_resources_win_over_tasks() -> None:
    """shoal's short form, Resources on the group, is used when given."""
    parsed = parse_job(job(TaskGroups=[group(Resources={"CPU": 20, "MemoryMB": 0},
                                             Tasks=[{"Resources": {"CPU": 999}}])]))
    assert parsed["TaskGroups"][0]["Resources"] == {"CPU": 20, "MemoryMB": 0}


@pytest.mark.parametrize(("fields", "seconds"), [
    ({}, 5.0), ({"Duration": 12}, 12.0), ({"Duration": 0.5}, 0.5), ({"Duration": "1m30s"}, 90.0),
    ({"Meta": {"shoal_duration": "250ms"}}, 0.25),
    ({"Duration": 2, "Meta": {"shoal_duration": "9s"}}, 2.0),
])
def test_batch_duration(fields: dict[str, Any], seconds: float) -> None:
    """Batch groups run Duration seconds (number, Go duration, or Meta.shoal_duration; default 5)."""
    for kind in ("batch", "sysbatch"):
        parsed = parse_job(job(Type=kind, TaskGroups=[group(**fields)]))
        assert parsed["TaskGroups"][0]["Duration"] == seconds


def test_service_and_system_ignore_duration_and_keep_count() -> None:
    """Long-running types carry Duration 0; system keeps the (ignored) Count as given."""
    parsed = parse_job(job(Type="system", TaskGroups=[group(Count=0, Duration=30)]))
    assert parsed["TaskGroups"][0]["Duration"] == 0 and parsed["TaskGroups"][0]["Count"] == 0


def test_stop_is_kept() -> None:
    """A job registered with Stop true stays stopped."""
    assert parse_job(job(Stop=True))["Stop"] is True


@pytest.mark.parametrize(("body", "start"), [
    ([1, 2], "Job: expected a JSON object, got a list"),
    ("job", "Job: expected a JSON object, got a string"),
    (None, "Job: expected a JSON object, got null"),
    ({"Job": None}, "Job: must be specified"),
    ({"Job": 3}, "Job: expected a JSON object, got a number"),
    ({"TaskGroups": [{"Name": "a"}]}, "ID: missing job ID"),
    (job(ID=""), "ID: missing job ID"),
    (job(ID=7), "ID: expected a string"),
    (job(ID="my job"), "ID: contains whitespace"),
    (job(ID="x" * 129), "ID: longer than 128 characters (129)"),
    (job(Name=["n"]), "Name: expected a string"),
    (job(Type="docker"), "Type: unknown job type 'docker'"),
    (job(Type=1), "Type: expected a string"),
    (job(Priority=0), "Priority: must be between 1 and 100, got 0"),
    (job(Priority=101), "Priority: must be between 1 and 100, got 101"),
    (job(Priority="50"), "Priority: expected an integer, got a string '50'"),
    (job(Priority=50.0), "Priority: expected an integer, got a number 50.0"),
    (job(Priority=True), "Priority: expected an integer, got a boolean"),
    (job(Datacenters="dc1"), "Datacenters: expected a list of strings"),
    (job(Datacenters=["dc1", ""]), "Datacenters[1]: expected a non-empty string"),
    (job(Stop="yes"), "Stop: expected true or false"),
    (job(TaskGroups=None), "TaskGroups: a job needs at least one task group"),
    (job(TaskGroups=[]), "TaskGroups: a job needs at least one task group"),
    (job(TaskGroups={"web": {}}), "TaskGroups: expected a list"),
    (job(TaskGroups=["web"]), "TaskGroups[0]: expected a JSON object"),
    (job(TaskGroups=[{}]), "TaskGroups[0].Name: missing task group name"),
    (job(TaskGroups=[group(Name="a b")]), "TaskGroups[0].Name: contains whitespace"),
    (job(TaskGroups=[group(), group(Name="db"), group()]),
     "TaskGroups[2].Name: duplicate group name 'web' (also TaskGroups[0])"),
    (job(TaskGroups=[group(Count=-1)]), "TaskGroups[0].Count: can't be negative, got -1"),
    (job(TaskGroups=[group(Count=1.5)]), "TaskGroups[0].Count: expected an integer"),
    (job(TaskGroups=[group(Count="2")]), "TaskGroups[0].Count: expected an integer"),
    (job(TaskGroups=[group(Resources={"CPU": -5})]),
     "TaskGroups[0].Resources.CPU: can't be negative, got -5"),
    (job(TaskGroups=[group(Resources={"MemoryMB": "1GB"})]),
     "TaskGroups[0].Resources.MemoryMB: expected an integer"),
    (job(TaskGroups=[group(Resources=[100])]), "TaskGroups[0].Resources: expected a JSON object"),
    (job(TaskGroups=[group(Tasks={"a": 1})]), "TaskGroups[0].Tasks: expected a list"),
    (job(TaskGroups=[group(Tasks=[{"Resources": {"MemoryMB": -1}}])]),
     "TaskGroups[0].Tasks[0].Resources.MemoryMB: can't be negative"),
    (job(Type="batch", TaskGroups=[group(Duration=-1)]),
     "TaskGroups[0].Duration: can't be negative"),
    (job(Type="batch", TaskGroups=[group(Duration="soon")]),
     "TaskGroups[0].Duration: expected seconds or a duration"),
    (job(Type="batch", TaskGroups=[group(Meta={"shoal_duration": True})]),
     "TaskGroups[0].Meta.shoal_duration: expected seconds or a duration string"),
    (job(TaskGroups=[group(Meta="x")]), "TaskGroups[0].Meta: expected a JSON object"),
])
def test_invalid_jobs_raise_one_line_naming_the_field(body: Any, start: str) -> None:
    """Every invalid job kind raises JobSpecError with one line starting with the field."""
    with pytest.raises(JobSpecError) as caught:
        parse_job(body)
    message = str(caught.value)
    assert message.startswith(start), message
    assert "\n" not in message and isinstance(caught.value, ValueError)


def test_newline_in_id_stays_one_line() -> None:
    """Control characters in a bad value are escaped, so the reason stays on one line."""
    with pytest.raises(JobSpecError) as caught:
        parse_job(job(ID="a\nb"))
    assert str(caught.value) == "ID: contains whitespace: 'a\\nb'"


def test_parse_job_does_not_mutate_its_input() -> None:
    """The body is read, never changed (the route still needs it)."""
    body = {"Job": job(TaskGroups=[group(Tasks=[{"Resources": {"CPU": 1}}])])}
    before = json.dumps(body, sort_keys=True)
    parse_job(body)
    assert json.dumps(body, sort_keys=True) == before


def test_parse_duration() -> None:
    """Go durations without sign: units add up; garbage raises ValueError."""
    assert parse_duration("0") == 0.0
    assert parse_duration("1h2m3s") == 3723.0
    assert parse_duration("1.5s") == 1.5
    for bad in ("", "5", "-1s", "5x", "s", "1s "):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_job_stub_has_nomads_list_fields() -> None:
    """job_stub keeps Nomad's JobListStub fields and drops the task groups."""
    stub = job_stub(dict(parse_job(job()), Status="running", SubmitTime=7, CreateIndex=3))
    assert stub["ID"] == "example" and stub["Status"] == "running" and stub["SubmitTime"] == 7
    assert stub["CreateIndex"] == 3 and stub["Periodic"] is False and "TaskGroups" not in stub
