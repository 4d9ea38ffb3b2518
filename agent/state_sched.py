"""Scheduling tables of the replicated state: nodes, jobs, evaluations, allocations.

Theory of operation
-------------------
``SchedTables`` is the part of ``StateStore`` that the scheduling flow writes. Like
the rest of the store it is pure: ``StateStore.apply`` decodes a committed command
and hands it, with the entry's raft index, to one of the ``COMMANDS`` here; reads go
through the queries in ``agent/state.py``. Records are plain dicts with Nomad's
field names (the shapes are in docs/internals.md, "scheduler/ and the scheduling flow").

Every command works in two phases, as one Nomad state-store transaction does:
first it validates and normalises everything it was given (raising
``InvalidRecord``, which the dispatcher turns into ``{"Error": msg}``), then it writes.
The write phase cannot fail, so a bad command changes nothing and a good one changes
everything it names in one apply. Times come from the command (the proposer stamps
them); a record's own time fields win, then the command's ``"Time"``, then 0.

After every write the status of each touched job is recomputed with Nomad's
``getJobStatus`` rule (``nomad/state/state_store.go``): a system job is running
until stopped; any other job is running while it has a non-terminal allocation,
pending while it has a non-terminal evaluation, dead once it has allocations or
evaluations and all are terminal, and pending when it has neither. Like Nomad's
``upsertEvalImpl``, an evaluation written as complete with no ``BlockedEval`` cancels
the job's other blocked evaluations (the leader should then untrack the job in its
``BlockedEvals``).

Each table has its own index (``nodes``, ``jobs``, ``evals``, ``allocs``: Nomad's
table names), the raft index of the last entry that changed it; queries report it as
``Index`` (at least 1). Secondary maps (allocations by job and node, evaluations by
job) are derived and rebuilt on restore; they never reach a snapshot.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["SchedTables", "COMMANDS", "NODES", "JOBS", "EVALS", "ALLOCS", "JOB_TYPES",
           "alloc_terminal", "job_status", "InvalidRecord", "normalize_job", "normalize_node",
           "normalize_eval", "normalize_alloc"]

NODES, JOBS, EVALS, ALLOCS = "nodes", "jobs", "evals", "allocs"
JOB_TYPES = ("service", "batch", "system", "sysbatch")
EVAL_TYPES = JOB_TYPES + ("_core",)
NODE_STATUSES = ("initializing", "ready", "down")
ELIGIBILITY = ("eligible", "ineligible")
EVAL_STATUSES = ("pending", "blocked", "complete", "failed", "canceled")
CLIENT_STATUSES = ("pending", "running", "complete", "failed", "lost")
DESIRED_STATUSES = ("run", "stop", "evict")
TERMINAL_EVAL = frozenset({"complete", "failed", "canceled"})
TERMINAL_CLIENT = frozenset({"complete", "failed", "lost"})
DEFAULT_NAMESPACE = "default"
DEFAULT_DURATION = 5
# Fields the store stamps: not part of a job's spec when deciding whether it changed.
_JOB_META = frozenset({"Status", "StatusDescription", "Version", "CreateIndex", "ModifyIndex",
                       "JobModifyIndex", "SubmitTime"})
_MAX_UINT = 2**63 - 1
_NAMESPACE_RE = re.compile(r"[a-zA-Z0-9\-]{1,128}")

Record = dict[str, Any]
JobKey = tuple[str, str]                     # (Namespace, ID)


class InvalidRecord(Exception):
    """A command or record failed validation; the message is the command's Error."""


# --- field validators: each returns the (defaulted) value or raises InvalidRecord --------

def _need(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidRecord(message)


def _text(rec: Mapping[str, Any], key: str, what: str, *, default: str | None = None,
          nonempty: bool = False) -> str:
    value = rec.get(key)
    if value is None:
        value = default
    _need(value is not None and (value != "" or not nonempty), f"{what} requires {key}")
    _need(isinstance(value, str), f"{what} {key} must be a string")
    return value


def _uint(rec: Mapping[str, Any], key: str, what: str, *, default: int | None = None,
          low: int = 0, high: int = _MAX_UINT) -> int:
    value = rec.get(key, default)
    if value is None:
        value = default
    _need(value is not None, f"{what} requires {key}")
    _need(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
          f"{what} {key} must be an integer in [{low}, {high}]")
    return value


def _choice(rec: Mapping[str, Any], key: str, what: str, allowed: Iterable[str], *,
            default: str | None = None) -> str:
    value = rec.get(key, default)
    if value is None:
        value = default
    allowed = tuple(allowed)
    _need(value in allowed, f"{what} {key} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _namespace(rec: Mapping[str, Any], what: str) -> str:
    value = rec.get("Namespace") or DEFAULT_NAMESPACE
    _need(isinstance(value, str) and _NAMESPACE_RE.fullmatch(value) is not None,
          f"{what} has an invalid namespace {value!r}")
    return value


def _str_map(rec: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    value = rec.get(key) or {}
    _need(isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in value.items()),
          f"{what} {key} must map strings to strings")
    return dict(sorted(value.items()))


def _resources(value: Any, what: str) -> dict[str, int]:
    _need(isinstance(value, Mapping), f"{what} Resources must be an object with CPU and MemoryMB")
    return {"CPU": _uint(value, "CPU", what), "MemoryMB": _uint(value, "MemoryMB", what)}


def _object(value: Any, what: str) -> Mapping[str, Any]:
    _need(isinstance(value, Mapping), f"{what} must be an object")
    return value


def _list(value: Any, what: str, *, optional: bool = True) -> list[Any]:
    if value is None and optional:
        return []
    _need(isinstance(value, (list, tuple)), f"{what} must be a list")
    return list(value)


def _time(command: Mapping[str, Any], *, required: bool = False) -> int:
    if command.get("Time") is None and not required:
        return 0
    return _uint(command, "Time", "command")


# --- record normalisers ---------------------------------------------------------------

def normalize_node(node: Any, now: int) -> Record:
    """A node to register, with defaults filled; raises InvalidRecord."""
    node = _object(node, "node")
    out = copy.deepcopy(dict(node))
    out["ID"] = _text(node, "ID", "node", nonempty=True)
    out["Name"] = _text(node, "Name", "node", default=out["ID"])
    out["Datacenter"] = _text(node, "Datacenter", "node", default="dc1", nonempty=True)
    out["NodeClass"] = _text(node, "NodeClass", "node", default="")
    out["Meta"] = _str_map(node, "Meta", "node")
    out["Attributes"] = _str_map(node, "Attributes", "node")
    out["NodeResources"] = _resources(node.get("NodeResources"), "node")
    out["Status"] = _choice(node, "Status", "node", NODE_STATUSES, default="ready")
    out["SchedulingEligibility"] = _choice(node, "SchedulingEligibility", "node", ELIGIBILITY,
                                           default="eligible")
    out["HTTPAddr"] = _text(node, "HTTPAddr", "node", default="")
    out["StatusUpdatedAt"] = _uint(node, "StatusUpdatedAt", "node", default=now)
    return out


def _task_group(group: Any, position: int) -> Record:
    what = f"task group {position}"
    group = _object(group, what)
    out = copy.deepcopy(dict(group))
    out["Name"] = _text(group, "Name", what, nonempty=True)
    out["Count"] = _uint(group, "Count", what, default=1, high=2**31 - 1)
    out["Resources"] = _resources(group.get("Resources"), what)
    duration = group.get("Duration", DEFAULT_DURATION)
    duration = DEFAULT_DURATION if duration is None else duration
    _need(isinstance(duration, (int, float)) and not isinstance(duration, bool)
          and math.isfinite(duration) and duration >= 0, f"{what} Duration must be seconds >= 0")
    out["Duration"] = duration
    return out


def normalize_job(job: Any, now: int) -> Record:
    """A job to register (minimal checks; the HTTP layer validates fully); raises InvalidRecord."""
    job = _object(job, "job")
    out = copy.deepcopy(dict(job))
    out["ID"] = _text(job, "ID", "job", nonempty=True)
    out["Name"] = _text(job, "Name", "job", default=out["ID"])
    out["Namespace"] = _namespace(job, "job")
    out["Type"] = _choice(job, "Type", "job", JOB_TYPES, default="service")
    datacenters = _list(job.get("Datacenters", ["dc1"]), "job Datacenters")
    _need(len(datacenters) > 0 and all(isinstance(dc, str) and dc for dc in datacenters),
          "job Datacenters must be a non-empty list of names")
    out["Datacenters"] = datacenters
    out["Priority"] = _uint(job, "Priority", "job", default=50, low=1, high=100)
    stop = job.get("Stop", False)
    _need(isinstance(stop, bool), "job Stop must be a boolean")
    out["Stop"] = stop
    groups = [_task_group(g, i) for i, g in enumerate(_list(job.get("TaskGroups"), "job TaskGroups"))]
    _need(len(groups) > 0, "job requires at least one task group")
    _need(len({g["Name"] for g in groups}) == len(groups), "job task group names must be unique")
    out["TaskGroups"] = groups
    out["SubmitTime"] = _uint(job, "SubmitTime", "job", default=now)
    out["StatusDescription"] = _text(job, "StatusDescription", "job", default="")
    return out


def normalize_eval(ev: Any, now: int) -> Record:
    """An evaluation to write; raises InvalidRecord."""
    ev = _object(ev, "evaluation")
    out = copy.deepcopy(dict(ev))
    out["ID"] = _text(ev, "ID", "evaluation", nonempty=True)
    out["Namespace"] = _namespace(ev, "evaluation")
    out["Priority"] = _uint(ev, "Priority", "evaluation", default=50, low=1, high=100)
    out["Type"] = _choice(ev, "Type", "evaluation", EVAL_TYPES)
    out["JobID"] = _text(ev, "JobID", "evaluation")
    for key in ("TriggeredBy", "NodeID", "StatusDescription", "BlockedEval", "PreviousEval"):
        out[key] = _text(ev, key, "evaluation", default="")
    out["Status"] = _choice(ev, "Status", "evaluation", EVAL_STATUSES, default="pending")
    queued = ev.get("QueuedAllocations") or {}
    _need(isinstance(queued, Mapping) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 0 <= v < _MAX_UINT
        for k, v in queued.items()), "evaluation QueuedAllocations must map names to counts")
    out["QueuedAllocations"] = dict(sorted(queued.items()))
    out["CreateTime"] = _uint(ev, "CreateTime", "evaluation", default=now)
    out["ModifyTime"] = _uint(ev, "ModifyTime", "evaluation", default=now)
    return out


def normalize_alloc(alloc: Any, eval_id: str, now: int) -> Record:
    """An allocation to place; raises InvalidRecord."""
    alloc = _object(alloc, "allocation")
    out = copy.deepcopy(dict(alloc))
    out["ID"] = _text(alloc, "ID", "allocation", nonempty=True)
    out["Namespace"] = _namespace(alloc, "allocation")
    out["EvalID"] = _text(alloc, "EvalID", "allocation", default=eval_id)
    for key in ("NodeID", "JobID", "TaskGroup"):
        out[key] = _text(alloc, key, "allocation", nonempty=True)
    out["Name"] = _text(alloc, "Name", "allocation", default=f"{out['JobID']}.{out['TaskGroup']}[0]")
    out["NodeName"] = _text(alloc, "NodeName", "allocation", default="")
    out["Resources"] = _resources(alloc.get("Resources"), "allocation")
    out["DesiredStatus"] = _choice(alloc, "DesiredStatus", "allocation", DESIRED_STATUSES, default="run")
    out["ClientStatus"] = _choice(alloc, "ClientStatus", "allocation", CLIENT_STATUSES, default="pending")
    out["CreateTime"] = _uint(alloc, "CreateTime", "allocation", default=now)
    out["ModifyTime"] = _uint(alloc, "ModifyTime", "allocation", default=now)
    return out


def _evals(value: Any, now: int) -> list[Record]:
    return [normalize_eval(ev, now) for ev in _list(value, "Evals")]


def alloc_terminal(alloc: Mapping[str, Any]) -> bool:
    """Nomad's ``Allocation.TerminalStatus``: desired stop/evict or a terminal client status."""
    return alloc["DesiredStatus"] in ("stop", "evict") or alloc["ClientStatus"] in TERMINAL_CLIENT


def job_status(job: Mapping[str, Any], allocs: Iterable[Mapping[str, Any]],
               evals: Iterable[Mapping[str, Any]]) -> str:
    """Nomad's ``getJobStatus`` over the job's allocations and evaluations."""
    if job["Type"] == "system":
        return "dead" if job["Stop"] else "running"
    has_alloc = False
    for alloc in allocs:
        has_alloc = True
        if not alloc_terminal(alloc):
            return "running"
    has_eval = False
    for ev in evals:
        has_eval = True
        if ev["Status"] not in TERMINAL_EVAL:
            return "pending"
    return "dead" if has_alloc or has_eval else "pending"


def _spec(job: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in job.items() if key not in _JOB_META}


class SchedTables:
    """The four scheduling tables plus derived lookups; ``table_index`` is shared with the store."""

    def __init__(self, table_index: dict[str, int]) -> None:
        self.table_index = table_index
        self.nodes: dict[str, Record] = {}
        self.jobs: dict[JobKey, Record] = {}
        self.evals: dict[str, Record] = {}
        self.allocs: dict[str, Record] = {}
        self._allocs_by_job: dict[JobKey, set[str]] = {}
        self._allocs_by_node: dict[str, set[str]] = {}
        self._evals_by_job: dict[JobKey, set[str]] = {}
        self._touched: set[JobKey] = set()   # jobs an eval or alloc moved away from

    # --- writes (never fail) ----------------------------------------------------------

    def put_alloc(self, alloc: Record, index: int) -> None:
        old = self.allocs.get(alloc["ID"])
        if old is not None:
            self._allocs_by_job[(old["Namespace"], old["JobID"])].discard(old["ID"])
            self._touched.add((old["Namespace"], old["JobID"]))
            self._allocs_by_node[old["NodeID"]].discard(old["ID"])
        self.allocs[alloc["ID"]] = alloc
        self._allocs_by_job.setdefault((alloc["Namespace"], alloc["JobID"]), set()).add(alloc["ID"])
        self._allocs_by_node.setdefault(alloc["NodeID"], set()).add(alloc["ID"])
        self.table_index[ALLOCS] = index

    def put_eval(self, ev: Record, index: int) -> None:
        """Upsert an evaluation (Create* kept) and cancel the job's blocked ones on success."""
        old = self.evals.get(ev["ID"])
        if old is not None:
            self._evals_by_job[(old["Namespace"], old["JobID"])].discard(old["ID"])
            self._touched.add((old["Namespace"], old["JobID"]))   # its status may change too
            ev["CreateIndex"], ev["CreateTime"] = old["CreateIndex"], old["CreateTime"]
        else:
            ev["CreateIndex"] = index
        ev["ModifyIndex"] = index
        key = (ev["Namespace"], ev["JobID"])
        self.evals[ev["ID"]] = ev
        self._evals_by_job.setdefault(key, set()).add(ev["ID"])
        self.table_index[EVALS] = index
        if ev["Status"] == "complete" and not ev["BlockedEval"]:
            for other_id in sorted(self._evals_by_job[key] - {ev["ID"]}):
                other = self.evals[other_id]
                if other["Status"] == "blocked":
                    self.evals[other_id] = dict(
                        other, Status="canceled", ModifyIndex=index, ModifyTime=ev["ModifyTime"],
                        StatusDescription=f'evaluation "{ev["ID"]}" successful')

    def put_job(self, job: Record, index: int) -> None:
        self.jobs[(job["Namespace"], job["ID"])] = job
        self.table_index[JOBS] = index

    def refresh_jobs(self, keys: Iterable[JobKey], index: int) -> None:
        """Recompute the status of each job in ``keys`` (and of any job an evaluation was
        moved away from); a change bumps its ModifyIndex."""
        touched, self._touched = self._touched, set()
        for key in sorted(set(keys) | touched):
            job = self.jobs.get(key)
            if job is None:
                continue
            status = job_status(job, self.job_allocs(key), self.job_evals(key))
            if status != job["Status"]:
                self.jobs[key] = dict(job, Status=status, ModifyIndex=index)
                self.table_index[JOBS] = index

    # --- reads ------------------------------------------------------------------------

    def job_allocs(self, key: JobKey) -> list[Record]:
        return _by_create(self.allocs[i] for i in self._allocs_by_job.get(key, ()))

    def job_evals(self, key: JobKey) -> list[Record]:
        return _by_create(self.evals[i] for i in self._evals_by_job.get(key, ()))

    def node_allocs(self, node_id: str) -> list[Record]:
        return _by_create(self.allocs[i] for i in self._allocs_by_node.get(node_id, ()))

    def index_of(self, *tables: str) -> int:
        return max(1, *(self.table_index.get(table, 0) for table in tables))

    # --- snapshots --------------------------------------------------------------------

    def to_snapshot(self) -> dict[str, list[Record]]:
        return {"Nodes": [self.nodes[k] for k in sorted(self.nodes)],
                "Jobs": [self.jobs[k] for k in sorted(self.jobs)],
                "Evals": [self.evals[k] for k in sorted(self.evals)],
                "Allocs": [self.allocs[k] for k in sorted(self.allocs)]}

    @classmethod
    def from_snapshot(cls, obj: Mapping[str, Any], table_index: dict[str, int]) -> SchedTables:
        """Tables from a snapshot map (a version-1 snapshot has none); KeyError/TypeError if bad."""
        tables = cls(table_index)
        tables.nodes = {n["ID"]: dict(n) for n in obj.get("Nodes", ())}
        tables.jobs = {(j["Namespace"], j["ID"]): dict(j) for j in obj.get("Jobs", ())}
        for ev in obj.get("Evals", ()):
            tables.evals[ev["ID"]] = dict(ev)
            tables._evals_by_job.setdefault((ev["Namespace"], ev["JobID"]), set()).add(ev["ID"])
        for alloc in obj.get("Allocs", ()):
            tables.allocs[alloc["ID"]] = dict(alloc)
            tables._allocs_by_job.setdefault((alloc["Namespace"], alloc["JobID"]), set()).add(alloc["ID"])
            tables._allocs_by_node.setdefault(alloc["NodeID"], set()).add(alloc["ID"])
        return tables

    def equal(self, other: SchedTables) -> bool:
        return (self.nodes == other.nodes and self.jobs == other.jobs
                and self.evals == other.evals and self.allocs == other.allocs)


def _by_create(records: Iterable[Record]) -> list[Record]:
    return sorted(records, key=lambda r: (r["CreateIndex"], r["ID"]))


def _jobs_of(records: Iterable[Mapping[str, Any]]) -> set[JobKey]:
    return {(r["Namespace"], r["JobID"]) for r in records}


# --- commands: validate everything, then write ------------------------------------------

Command = Callable[[SchedTables, int, dict[str, Any]], dict[str, Any]]


def _command(fn: Command) -> Command:
    """Turn a validation failure into ``{"Error": msg}``; the write phase never raises."""
    def run(tables: SchedTables, index: int, command: dict[str, Any]) -> dict[str, Any]:
        try:
            return fn(tables, index, command)
        except InvalidRecord as exc:
            return {"Error": str(exc)}
    run.__name__ = run.__qualname__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def _write_evals(t: SchedTables, evals: Iterable[Record], index: int) -> None:
    for ev in evals:
        t.put_eval(ev, index)


@_command
def node_register(t: SchedTables, index: int, command: dict[str, Any]) -> dict[str, Any]:
    """Upsert a node (CreateIndex and eligibility kept on re-register) and any Evals."""
    now = _time(command)
    node = normalize_node(command.get("Node"), now)
    evals = _evals(command.get("Evals"), now)
    old = t.nodes.get(node["ID"])
    node["CreateIndex"] = old["CreateIndex"] if old else index
    if old is not None:
        node["SchedulingEligibility"] = old["SchedulingEligibility"]   # the operator's, as Nomad
    node["ModifyIndex"] = index
    t.nodes[node["ID"]] = node
    t.table_index[NODES] = index
    _write_evals(t, evals, index)
    t.refresh_jobs(_jobs_of(evals), index)
    return {"Index": index}


@_command
def node_status(t: SchedTables, index: int, command: dict[str, Any]) -> dict[str, Any]:
    """Set a node's Status and StatusUpdatedAt; write any Evals (a down node's replacements)."""
    node_id = _text(command, "NodeID", "node_status", nonempty=True)
    status = _choice(command, "Status", "node_status", NODE_STATUSES)
    now = _time(command, required=True)
    evals = _evals(command.get("Evals"), now)
    node = t.nodes.get(node_id)
    _need(node is not None, "node not found")
    t.nodes[node_id] = dict(node, Status=status, StatusUpdatedAt=now, ModifyIndex=index)
    t.table_index[NODES] = index
    _write_evals(t, evals, index)
    t.refresh_jobs(_jobs_of(evals), index)
    return {"Index": index}


@_command
def job_register(t: SchedTables, index: int, command: dict[str, Any]) -> dict[str, Any]:
    """Upsert a job (a spec change bumps Version and JobModifyIndex) and its Eval."""
    now = _time(command)
    job = normalize_job(command.get("Job"), now)
    ev = None if command.get("Eval") is None else normalize_eval(command["Eval"], now)
    key = (job["Namespace"], job["ID"])
    old = t.jobs.get(key)
    if old is None:
        job.update(CreateIndex=index, Version=0, JobModifyIndex=index, Status="pending")
    elif _spec(old) != _spec(job):
        job.update(CreateIndex=old["CreateIndex"], Version=old["Version"] + 1,
                   JobModifyIndex=index, Status=old["Status"])
    else:
        job.update(CreateIndex=old["CreateIndex"], Version=old["Version"],
                   JobModifyIndex=old["JobModifyIndex"], Status=old["Status"],
                   SubmitTime=old["SubmitTime"])
    job["ModifyIndex"] = index
    t.put_job(job, index)
    evals = [ev] if ev is not None else []
    _write_evals(t, evals, index)
    t.refresh_jobs({key} | _jobs_of(evals), index)
    return {"Index": index, "JobModifyIndex": job["JobModifyIndex"],
            "EvalID": ev["ID"] if ev else "", "EvalCreateIndex": ev["CreateIndex"] if ev else 0}


@_command
def job_deregister(t: SchedTables, index: int, command: dict[str, Any]) -> dict[str, Any]:
    """Stop a job (Stop=True, a new Version) or delete it when Purge; write its Eval."""
    job_id = _text(command, "JobID", "job_deregister", nonempty=True)
    namespace = _namespace(command, "job_deregister")
    purge = command.get("Purge", False)
    _need(isinstance(purge, bool), "job_deregister Purge must be a boolean")
    now = _time(command)
    ev = None if command.get("Eval") is None else normalize_eval(command["Eval"], now)
    key = (namespace, job_id)
    job = t.jobs.get(key)
    _need(job is not None, "job not found")
    modify = job["JobModifyIndex"]
    if purge:
        del t.jobs[key]
        t.table_index[JOBS] = index
    elif not job["Stop"]:
        modify = index
        t.put_job(dict(job, Stop=True, Version=job["Version"] + 1, JobModifyIndex=index,
                       ModifyIndex=index), index)
    evals = [ev] if ev is not None else []
    _write_evals(t, evals, index)
    t.refresh_jobs({key} | _jobs_of(evals), index)
    return {"Index": index, "JobModifyIndex": modify, "EvalID": ev["ID"] if ev else "",
            "EvalCreateIndex": ev["CreateIndex"] if ev else 0}


@_command
def eval_upsert(t: SchedTables, index: int, command: dict[str, Any]) -> dict[str, Any]:
    """Insert or replace evaluations (CreateIndex kept, ModifyIndex this entry)."""
    evals = _evals(command.get("Evals"), _time(command))
    _write_evals(t, evals, index)
    t.refresh_jobs(_jobs_of(evals), index)
    return {"Index": index}


def _stop_entry(entry: Any) -> tuple[str, str]:
    _need(isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)
          and entry[0] != "" and (entry[1] == "" or entry[1] in CLIENT_STATUSES),
          "plan Stop entries must be [alloc id, client status or \"\"]")
    return entry[0], entry[1]


def _eval_update(t: SchedTables, value: Any, now: int) -> Record | None:
    """The plan's evaluation update merged over the stored one (or a whole new evaluation)."""
    if value is None:
        return None
    value = _object(value, "EvalUpdate")
    old = t.evals.get(_text(value, "ID", "EvalUpdate", nonempty=True))
    if old is None:
        return normalize_eval(value, now)
    merged = dict(old)
    merged.update({k: v for k, v in value.items() if k not in ("CreateIndex", "ModifyIndex")})
    merged["ModifyTime"] = value.get("ModifyTime") or now or old["ModifyTime"]
    return normalize_eval(merged, now)


@_command
def plan_apply(t: SchedTables, index: int, command: dict[str, Any]) -> dict[str, Any]:
    """Place and stop allocations, update the plan's evaluation and write extra Evals at once."""
    now = _time(command)
    plan = _object(command.get("Plan"), "Plan")
    eval_id = _text(plan, "EvalID", "plan", default="")
    _text(plan, "JobID", "plan", default="")
    place = [normalize_alloc(a, eval_id, now) for a in _list(plan.get("Place"), "plan Place")]
    stops = [_stop_entry(entry) for entry in _list(plan.get("Stop"), "plan Stop")]
    update = _eval_update(t, command.get("EvalUpdate"), now)
    evals = _evals(command.get("Evals"), now)
    touched: list[Record] = []
    for alloc in place:
        old = t.allocs.get(alloc["ID"])
        alloc["CreateIndex"] = old["CreateIndex"] if old else index
        alloc["ModifyIndex"] = index
        t.put_alloc(alloc, index)
        touched.append(alloc)
    for alloc_id, client_status in stops:
        old = t.allocs.get(alloc_id)
        if old is None:
            continue                        # gone already: Nomad skips missing allocations too
        stopped = dict(old, DesiredStatus="stop", ModifyIndex=index,
                       ModifyTime=now or old["ModifyTime"],
                       ClientStatus=client_status or old["ClientStatus"])
        t.put_alloc(stopped, index)
        touched.append(stopped)
    written = ([update] if update is not None else []) + evals
    _write_evals(t, written, index)
    t.refresh_jobs(_jobs_of(touched) | _jobs_of(written), index)
    return {"Index": index}


@_command
def alloc_client_update(t: SchedTables, index: int, command: dict[str, Any]) -> dict[str, Any]:
    """Set allocations' ClientStatus as their client reports it; write any Evals."""
    now = _time(command, required=True)
    updates = []
    for entry in _list(command.get("Allocs"), "Allocs", optional=False):
        entry = _object(entry, "alloc update")
        updates.append((_text(entry, "ID", "alloc update", nonempty=True),
                        _choice(entry, "ClientStatus", "alloc update", CLIENT_STATUSES)))
    evals = _evals(command.get("Evals"), now)
    touched: list[Record] = []
    for alloc_id, client_status in updates:
        old = t.allocs.get(alloc_id)
        if old is None:
            continue                        # as Nomad: an unknown allocation is ignored
        updated = dict(old, ClientStatus=client_status, ModifyIndex=index, ModifyTime=now)
        t.put_alloc(updated, index)
        touched.append(updated)
    _write_evals(t, evals, index)
    t.refresh_jobs(_jobs_of(touched) | _jobs_of(evals), index)
    return {"Index": index}


COMMANDS: dict[str, Command] = {
    "node_register": node_register, "node_status": node_status,
    "job_register": job_register, "job_deregister": job_deregister,
    "eval_upsert": eval_upsert, "plan_apply": plan_apply,
    "alloc_client_update": alloc_client_update,
}

