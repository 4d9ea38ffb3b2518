"""Turn the JSON body of ``PUT|POST /v1/jobs`` into shoal's canonical Job record.

Theory of operation
-------------------
Nomad's HTTP API takes ``{"Job": {...}}`` (a ``JobRegisterRequest``); ``shoal job run``
also sends that, and a bare job object is accepted too. ``parse_job`` checks only the
fields shoal simulates (the rest of a Nomad job, such as Update, Constraints or task
Config, is ignored) and fills Nomad's defaults, returning the Job record of
docs/internals.md ("scheduler/ and the scheduling flow"): ID, Name (the ID), Namespace
"default", Type "service", Datacenters ``["*"]`` (Nomad 1.9's default), Priority 50,
and each task group's Name, Count (1), Resources and Duration.

Resources are ``{"CPU": MHz, "MemoryMB": MB}`` per allocation. A group may give them
directly (``"Resources"`` on the group, shoal's short form) or, as Nomad does, per task
(``"Tasks": [{"Resources": {...}}]``): then the tasks' figures are summed, a task
without resources counting Nomad's defaults (100 MHz, 300 MB).

Duration is how long a batch or sysbatch allocation "runs" before it completes, in
seconds (default 5): the group's ``"Duration"`` (number of seconds or a Go duration
such as ``"90s"``) or its ``Meta.shoal_duration``. Service and system allocations run
until stopped, so their groups carry ``Duration: 0``. system/sysbatch placement ignores
Count (one allocation per node), but the value is still checked.

Fields the servers set (Status, Version, the indexes) start at their zero values
here; SubmitTime is left out for the proposer (or the state store) to stamp; a
``Stop`` given by the user is kept, as Nomad keeps it.

Every problem raises ``JobSpecError`` with one line that starts with the field's path
(``TaskGroups[1].Count: ...``), so the HTTP route can answer 400 with it as is.
This module is pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["parse_job", "job_stub", "JobSpecError", "JOB_TYPES", "MAX_ID_LENGTH",
           "DEFAULT_PRIORITY", "DEFAULT_CPU", "DEFAULT_MEMORY_MB", "DEFAULT_DURATION",
           "parse_duration"]

JOB_TYPES = ("service", "batch", "system", "sysbatch")
MAX_ID_LENGTH = 128
MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 1, 100, 50
DEFAULT_CPU = 100           # MHz, Nomad's default task resources
DEFAULT_MEMORY_MB = 300
DEFAULT_DURATION = 5.0      # seconds a batch/sysbatch allocation runs
_FINITE_TYPES = ("batch", "sysbatch")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0}


class JobSpecError(ValueError):
    """A job body shoal will not store; the message is one line naming the field."""


def parse_job(body: Any) -> dict[str, Any]:
    """The canonical Job record for a register body, or ``JobSpecError``."""
    if not isinstance(body, dict):
        raise JobSpecError(f"Job: expected a JSON object, got {_kind(body)}")
    job = body["Job"] if "Job" in body else body
    if job is None:
        raise JobSpecError("Job: must be specified")
    if not isinstance(job, dict):
        raise JobSpecError(f"Job: expected a JSON object, got {_kind(job)}")
    job_id = _job_id(job.get("ID"))
    job_type = _job_type(job.get("Type"))
    priority = _integer(job, "Priority", "Priority", DEFAULT_PRIORITY)
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise JobSpecError(f"Priority: must be between {MIN_PRIORITY} and {MAX_PRIORITY}, "
                           f"got {priority}")
    return {
        "ID": job_id,
        "Name": _string(job, "Name", "Name") or job_id,
        "Namespace": _string(job, "Namespace", "Namespace") or "default",
        "Type": job_type,
        "Datacenters": _datacenters(job.get("Datacenters")),
        "Priority": priority,
        "Status": "pending",
        "Stop": _boolean(job, "Stop", "Stop"),
        "TaskGroups": _task_groups(job.get("TaskGroups"), job_type),
        "Version": 0,
        "CreateIndex": 0,
        "ModifyIndex": 0,
        "JobModifyIndex": 0,
    }


def job_stub(job: dict[str, Any]) -> dict[str, Any]:
    """Nomad's ``JobListStub`` for ``GET /v1/jobs`` (only the fields shoal has)."""
    stub = {"ID": job.get("ID", ""), "ParentID": "", "Name": job.get("Name", job.get("ID", "")),
            "Namespace": job.get("Namespace", "default"),
            "Datacenters": list(job.get("Datacenters") or []), "Type": job.get("Type", ""),
            "Priority": job.get("Priority", DEFAULT_PRIORITY), "Periodic": False,
            "ParameterizedJob": False, "Stop": bool(job.get("Stop", False)),
            "Status": job.get("Status", ""), "StatusDescription": "",
            "CreateIndex": job.get("CreateIndex", 0), "ModifyIndex": job.get("ModifyIndex", 0),
            "JobModifyIndex": job.get("JobModifyIndex", 0),
            "SubmitTime": job.get("SubmitTime", 0)}
    if "JobSummary" in job:
        stub["JobSummary"] = job["JobSummary"]
    return stub


def parse_duration(text: str) -> float:
    """A Go duration without sign (``"90s"``, ``"1m30s"``, ``"250ms"``, ``"0"``) in seconds.

    Raises:
        ValueError: not such a duration.
    """
    if text == "0":
        return 0.0
    position, total = 0, 0.0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position == 0:
        raise ValueError(f"invalid duration {text!r}")
    return total


# --- fields -----------------------------------------------------------------------------


def _job_id(value: Any) -> str:
    if value is None or value == "":
        raise JobSpecError("ID: missing job ID")
    if not isinstance(value, str):
        raise JobSpecError(f"ID: expected a string, got {_kind(value)}")
    if any(ch.isspace() for ch in value):
        raise JobSpecError(f"ID: contains whitespace: {value!r}")
    if "\x00" in value:
        raise JobSpecError("ID: contains a null character")
    if len(value) > MAX_ID_LENGTH:
        raise JobSpecError(f"ID: longer than {MAX_ID_LENGTH} characters ({len(value)})")
    return value


def _job_type(value: Any) -> str:
    if value is None or value == "":
        return "service"              # Nomad's api.Job.Canonicalize default
    if not isinstance(value, str):
        raise JobSpecError(f"Type: expected a string, got {_kind(value)}")
    if value not in JOB_TYPES:
        raise JobSpecError(f"Type: unknown job type {value!r} (expected one of "
                           f"{', '.join(JOB_TYPES)})")
    return value


def _datacenters(value: Any) -> list[str]:
    if value is None:
        return ["*"]
    if not isinstance(value, list):
        raise JobSpecError(f"Datacenters: expected a list of strings, got {_kind(value)}")
    for i, dc in enumerate(value):
        if not isinstance(dc, str) or dc == "":
            raise JobSpecError(f"Datacenters[{i}]: expected a non-empty string, got {_kind(dc)}")
    return list(value) or ["*"]


def _task_groups(value: Any, job_type: str) -> list[dict[str, Any]]:
    if value is None or value == []:
        raise JobSpecError("TaskGroups: a job needs at least one task group")
    if not isinstance(value, list):
        raise JobSpecError(f"TaskGroups: expected a list, got {_kind(value)}")
    groups: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(value):
        path = f"TaskGroups[{i}]"
        group = _task_group(raw, path, job_type)
        if group["Name"] in seen:
            raise JobSpecError(f"{path}.Name: duplicate group name {group['Name']!r} "
                               f"(also TaskGroups[{seen[group['Name']]}])")
        seen[group["Name"]] = i
        groups.append(group)
    return groups


def _task_group(raw: Any, path: str, job_type: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise JobSpecError(f"{path}: expected a JSON object, got {_kind(raw)}")
    name = _string(raw, "Name", f"{path}.Name")
    if name == "":
        raise JobSpecError(f"{path}.Name: missing task group name")
    if any(ch.isspace() for ch in name) or "\x00" in name:
        raise JobSpecError(f"{path}.Name: contains whitespace or a null character: {name!r}")
    count = _integer(raw, "Count", f"{path}.Count", 1)
    if count < 0:
        raise JobSpecError(f"{path}.Count: can't be negative, got {count}")
    duration = _duration(raw, path)
    return {"Name": name, "Count": count, "Resources": _group_resources(raw, path),
            "Duration": duration if job_type in _FINITE_TYPES else 0}


def _group_resources(group: dict[str, Any], path: str) -> dict[str, int]:
    if group.get("Resources") is not None:
        return _resources(group["Resources"], f"{path}.Resources")
    tasks = group.get("Tasks")
    if tasks is None or tasks == []:
        return {"CPU": DEFAULT_CPU, "MemoryMB": DEFAULT_MEMORY_MB}
    if not isinstance(tasks, list):
        raise JobSpecError(f"{path}.Tasks: expected a list, got {_kind(tasks)}")
    total = {"CPU": 0, "MemoryMB": 0}
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise JobSpecError(f"{path}.Tasks[{i}]: expected a JSON object, got {_kind(task)}")
        each = _resources(task.get("Resources"), f"{path}.Tasks[{i}].Resources")
        total["CPU"] += each["CPU"]
        total["MemoryMB"] += each["MemoryMB"]
    return total


def _resources(value: Any, path: str) -> dict[str, int]:
    if value is None:
        return {"CPU": DEFAULT_CPU, "MemoryMB": DEFAULT_MEMORY_MB}
    if not isinstance(value, dict):
        raise JobSpecError(f"{path}: expected a JSON object, got {_kind(value)}")
    result = {}
    for key, default in (("CPU", DEFAULT_CPU), ("MemoryMB", DEFAULT_MEMORY_MB)):
        amount = _integer(value, key, f"{path}.{key}", default)
        if amount < 0:
            raise JobSpecError(f"{path}.{key}: can't be negative, got {amount}")
        result[key] = amount
    return result


def _duration(group: dict[str, Any], path: str) -> float:
    meta = group.get("Meta")
    if meta is not None and not isinstance(meta, dict):
        raise JobSpecError(f"{path}.Meta: expected a JSON object, got {_kind(meta)}")
    if group.get("Duration") is not None:
        value, where = group["Duration"], f"{path}.Duration"
    elif meta and meta.get("shoal_duration") is not None:
        value, where = meta["shoal_duration"], f"{path}.Meta.shoal_duration"
    else:
        return DEFAULT_DURATION
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise JobSpecError(f"{where}: expected seconds or a duration like \"30s\", "
                               f"got {value!r}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise JobSpecError(f"{where}: expected seconds or a duration string, got {_kind(value)}")
    if not 0 <= seconds < float("inf"):
        raise JobSpecError(f"{where}: can't be negative, got {value!r}")
    return seconds


# --- scalars ----------------------------------------------------------------------------


def _integer(obj: dict[str, Any], key: str, path: str, default: int) -> int:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobSpecError(f"{path}: expected an integer, got {_kind(value)} {_show(value)}")
    return value


def _string(obj: dict[str, Any], key: str, path: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise JobSpecError(f"{path}: expected a string, got {_kind(value)}")
    if "\x00" in value:
        raise JobSpecError(f"{path}: contains a null character")
    return value


def _boolean(obj: dict[str, Any], key: str, path: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise JobSpecError(f"{path}: expected true or false, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
