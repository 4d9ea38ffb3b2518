"""Placement: turn one evaluation into a plan, and check a plan on the leader.

Theory of operation
-------------------
A scheduler worker dequeues an evaluation, reads a snapshot of the replicated state
(the job, every node, every allocation in the cluster) and calls
``plan_evaluation``. The result is a ``Plan``: allocations to place, allocations to
stop, and per task group the number of allocations that fit nowhere. The plan
travels to the leader over msgpack RPC (``Plan.to_wire`` / ``Plan.from_wire``); the
leader runs ``check_plan`` against its *current* state, which may have moved on since
the worker's snapshot (Nomad's ``evaluatePlan`` in ``nomad/plan_apply.go``), and
applies the accepted part through Raft. Rejected nodes make the worker plan again.

Both functions are pure: no clock (``now_ns`` is passed in), no randomness (ids come
from the injected ``new_id``), and every iteration that can reach the output is in a
sorted order, so the same inputs give the same plan.

Definitions used throughout:

- An allocation is *live* when ``DesiredStatus == "run"`` and ``ClientStatus`` is
  ``"pending"`` or ``"running"``. A node's usage is the sum of its live allocations'
  ``Resources``; capacity is the node's ``NodeResources``; both in CPU MHz and MemoryMB.
- A node is a *candidate* for a job when it is ``"ready"``, ``"eligible"`` and in one
  of the job's datacenters (``"*"`` matches every datacenter).

Reconciliation, per task group (Nomad's ``reconcile.go`` and ``scheduler_system.go``,
much reduced):

- service / batch keep ``Count`` live allocations. Live allocations on nodes that are
  missing or not ready are stopped as ``"lost"`` and replaced; live ones beyond
  ``Count`` are stopped, highest name index first. For batch, a ``"complete"``
  allocation (still desired ``run``) is done: it holds its index and is not replaced.
  Missing allocations get the lowest free indexes, ``"<job>.<tg>[<n>]"``, and go to
  the best-fit candidate: the one with the highest mean CPU/memory utilisation
  *after* placement that still fits, ties to the lowest node ID.
- system / sysbatch keep one live allocation per candidate node (named ``[0]``, as
  Nomad names them). Lost ones are stopped as above; live ones on ready nodes outside
  the job's datacenters, and duplicates on one node, are stopped. For sysbatch a
  ``"complete"`` allocation on a node means that node is done.
- A job that is gone (``None``) or has ``Stop`` set: every live allocation stops.

All stops are decided before any placement, and capacity freed by a stop is usable by
a placement in the same plan; ``check_plan`` counts it the same way, so a plan
computed from some state is always fully accepted against that same state.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

JOB_TYPES = ("service", "batch", "system", "sysbatch")
LIVE_CLIENT_STATUSES = ("pending", "running")
RESOURCE_KEYS = ("CPU", "MemoryMB")

_NAME_INDEX = re.compile(r"\[(\d+)\]$")
_NO_INDEX = 1 << 62   # sorts allocations with unparseable names last (stopped first)


@dataclass(frozen=True)
class Plan:
    """What one evaluation wants changed.

    ``stop`` holds ``(alloc id, new ClientStatus)`` pairs, ``""`` keeping the client
    status; every stopped allocation gets ``DesiredStatus "stop"``. ``failed`` maps a
    task group to the allocations that fit on no node (only non-zero counts).
    """

    eval_id: str
    job_id: str
    place: tuple[dict, ...] = ()
    stop: tuple[tuple[str, str], ...] = ()
    failed: dict[str, int] = field(default_factory=dict)

    def to_wire(self) -> dict:
        """The msgpack/JSON map form (keys as in the ``plan_apply`` state command)."""
        return {
            "EvalID": self.eval_id,
            "JobID": self.job_id,
            "Place": [dict(alloc) for alloc in self.place],
            "Stop": [[alloc_id, status] for alloc_id, status in self.stop],
            "Failed": dict(self.failed),
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Plan:
        """Rebuild a plan from ``to_wire`` output, checking its shape.

        Raises:
            ValueError: ``obj`` is not a plan map (a peer sent something wrong).
        """
        if not isinstance(obj, Mapping):
            raise ValueError("plan is not a map")
        eval_id, job_id = obj.get("EvalID"), obj.get("JobID")
        if not isinstance(eval_id, str) or not isinstance(job_id, str):
            raise ValueError("plan EvalID and JobID must be strings")
        place = tuple(_checked_placement(a) for a in _checked_list(obj.get("Place", []), "Place"))
        stop = tuple(_checked_stop(s) for s in _checked_list(obj.get("Stop", []), "Stop"))
        failed = obj.get("Failed", {})
        if not isinstance(failed, Mapping) or not all(
                isinstance(k, str) and _is_count(v) for k, v in failed.items()):
            raise ValueError("plan Failed must map task group names to counts")
        return cls(eval_id, job_id, place, stop, dict(failed))


def _checked_list(value: Any, name: str) -> list | tuple:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"plan {name} must be a list")
    return value


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _checked_placement(alloc: Any) -> dict:
    # check_plan and the state machine read exactly these fields.
    if not isinstance(alloc, Mapping):
        raise ValueError("plan placement is not a map")
    for key in ("ID", "NodeID", "TaskGroup", "Name"):
        if not isinstance(alloc.get(key), str):
            raise ValueError(f"plan placement {key} must be a string")
    resources = alloc.get("Resources")
    if not isinstance(resources, Mapping) or not all(
            _is_count(resources.get(key)) for key in RESOURCE_KEYS):
        raise ValueError("plan placement Resources must hold CPU and MemoryMB counts")
    return dict(alloc)


def _checked_stop(entry: Any) -> tuple[str, str]:
    if (not isinstance(entry, (list, tuple)) or len(entry) != 2
            or not all(isinstance(part, str) for part in entry)):
        raise ValueError("plan stop entries must be [alloc id, client status]")
    return (entry[0], entry[1])


# ---------------------------------------------------------------- small helpers

def is_live(alloc: Mapping) -> bool:
    """Whether an allocation runs (or is about to) and so uses its node's resources."""
    return alloc.get("DesiredStatus") == "run" and alloc.get("ClientStatus") in LIVE_CLIENT_STATUSES


def _is_done(alloc: Mapping) -> bool:
    """A batch/sysbatch allocation that finished its work and must not run again."""
    return alloc.get("DesiredStatus") == "run" and alloc.get("ClientStatus") == "complete"


def _amount(resources: Mapping | None, key: str) -> int:
    return int((resources or {}).get(key, 0) or 0)


def node_usage(node_id: str, allocs: Iterable[Mapping]) -> dict[str, int]:
    """Sum of the live allocations' ``Resources`` on one node."""
    usage = {key: 0 for key in RESOURCE_KEYS}
    for alloc in allocs:
        if alloc.get("NodeID") == node_id and is_live(alloc):
            for key in RESOURCE_KEYS:
                usage[key] += _amount(alloc.get("Resources"), key)
    return usage


def _usage_by_node(allocs: Iterable[Mapping], skip_ids: set[str]) -> dict[str, dict[str, int]]:
    """``node_usage`` for every node at once, ignoring the allocations in ``skip_ids``."""
    usage: dict[str, dict[str, int]] = {}
    for alloc in allocs:
        if is_live(alloc) and alloc.get("ID") not in skip_ids:
            node = usage.setdefault(alloc.get("NodeID", ""), {key: 0 for key in RESOURCE_KEYS})
            for key in RESOURCE_KEYS:
                node[key] += _amount(alloc.get("Resources"), key)
    return usage


def fits(node: Mapping, usage: Mapping, resources: Mapping) -> bool:
    """Whether ``resources`` more on top of ``usage`` stay within the node's capacity."""
    capacity = node.get("NodeResources")
    return all(_amount(usage, key) + _amount(resources, key) <= _amount(capacity, key)
               for key in RESOURCE_KEYS)


def _utilisation_after(node: Mapping, usage: Mapping, resources: Mapping) -> float:
    """Mean of CPU and memory utilisation once ``resources`` are placed (best-fit score)."""
    capacity = node.get("NodeResources")
    total = 0.0
    for key in RESOURCE_KEYS:
        cap = _amount(capacity, key)
        used = _amount(usage, key) + _amount(resources, key)
        total += used / cap if cap > 0 else 1.0
    return total / len(RESOURCE_KEYS)


def in_datacenters(node: Mapping, datacenters: Sequence[str]) -> bool:
    """Whether the node's datacenter is one of the job's (``"*"`` matches all)."""
    return "*" in datacenters or node.get("Datacenter") in datacenters


def is_candidate(node: Mapping, datacenters: Sequence[str]) -> bool:
    """Whether new allocations of a job with these datacenters may go to the node."""
    return (node.get("Status") == "ready" and node.get("SchedulingEligibility") == "eligible"
            and in_datacenters(node, datacenters))


def alloc_index(alloc: Mapping) -> int | None:
    """The ``n`` of a ``"<job>.<tg>[<n>]"`` name, or None when the name has another shape."""
    match = _NAME_INDEX.search(str(alloc.get("Name", "")))
    return int(match.group(1)) if match else None


def alloc_name(job_id: str, task_group: str, index: int) -> str:
    return f"{job_id}.{task_group}[{index}]"


def _alloc_order(alloc: Mapping) -> tuple[int, str]:
    index = alloc_index(alloc)
    return (_NO_INDEX if index is None else index, str(alloc.get("ID", "")))


def _free_indexes(used: set[int], how_many: int) -> list[int]:
    """The ``how_many`` lowest non-negative integers not in ``used``."""
    free: list[int] = []
    candidate = 0
    while len(free) < how_many:
        if candidate not in used:
            free.append(candidate)
        candidate += 1
    return free


def _is_node_ready(nodes_by_id: Mapping[str, Mapping], node_id: Any) -> bool:
    node = nodes_by_id.get(node_id)
    return node is not None and node.get("Status") == "ready"


# ---------------------------------------------------------------- reconciliation

def _reconcile_count(task_group: Mapping, group_allocs: Sequence[Mapping],
                     nodes_by_id: Mapping[str, Mapping], *, batch: bool
                     ) -> tuple[list[tuple[Mapping, str]], list[int]]:
    """service/batch: the stops and the name indexes to place for one task group."""
    stops: list[tuple[Mapping, str]] = []
    kept: list[Mapping] = []
    done: list[Mapping] = []
    for alloc in sorted(group_allocs, key=_alloc_order):
        if batch and _is_done(alloc):
            done.append(alloc)
        elif not is_live(alloc):
            continue   # terminal or already stopping: neither counts nor holds an index
        elif not _is_node_ready(nodes_by_id, alloc.get("NodeID")):
            stops.append((alloc, "lost"))
        else:
            kept.append(alloc)
    count = max(0, int(task_group.get("Count", 0)))
    excess = min(len(kept), len(kept) + len(done) - count)
    if excess > 0:
        # kept is sorted by index, so the highest indexes go first.
        stops.extend((alloc, "") for alloc in kept[len(kept) - excess:])
        kept = kept[:len(kept) - excess]
    used = {index for index in map(alloc_index, kept + done) if index is not None}
    missing = max(0, count - len(kept) - len(done))
    return stops, _free_indexes(used, missing)


def _reconcile_system(group_allocs: Sequence[Mapping], nodes_by_id: Mapping[str, Mapping],
                      candidates: Sequence[str], datacenters: Sequence[str], *, sysbatch: bool
                      ) -> tuple[list[tuple[Mapping, str]], list[str]]:
    """system/sysbatch: the stops and the node ids to place on for one task group."""
    stops: list[tuple[Mapping, str]] = []
    kept: set[str] = set()   # nodes with a live alloc that stays
    done = {a.get("NodeID") for a in group_allocs if sysbatch and _is_done(a)}
    for alloc in sorted(group_allocs, key=_alloc_order):
        node_id = alloc.get("NodeID")
        if not is_live(alloc):
            continue
        elif not _is_node_ready(nodes_by_id, node_id):
            stops.append((alloc, "lost"))
        elif not in_datacenters(nodes_by_id[node_id], datacenters) or node_id in kept:
            stops.append((alloc, ""))
        else:
            kept.add(node_id)
    occupied = kept | done
    return stops, [node_id for node_id in candidates if node_id not in occupied]


# ---------------------------------------------------------------- planning

class _PlanBuilder:
    """Accumulates one plan: usage per node, stops, placements, failures."""

    def __init__(self, evaluation: Mapping, job: Mapping | None, nodes: Sequence[Mapping],
                 allocs: Sequence[Mapping], new_id: Callable[[], str], now_ns: int) -> None:
        self.evaluation = evaluation
        self.job = job
        self.nodes_by_id = {node["ID"]: node for node in nodes}
        self.usage = _usage_by_node(allocs, set())
        self.new_id = new_id
        self.now_ns = now_ns
        self.stops: dict[str, str] = {}   # alloc id -> new client status
        self.place: list[dict] = []
        self.failed: dict[str, int] = {}

    def stop(self, alloc: Mapping, client_status: str) -> None:
        """Stop a live allocation; its resources are free for later placements."""
        assert is_live(alloc), alloc
        self.stops[alloc["ID"]] = client_status
        node_usage_now = self.usage.get(alloc.get("NodeID", ""))
        if node_usage_now is not None:
            for key in RESOURCE_KEYS:
                node_usage_now[key] -= _amount(alloc.get("Resources"), key)

    def _usage(self, node_id: str) -> dict[str, int]:
        return self.usage.setdefault(node_id, {key: 0 for key in RESOURCE_KEYS})

    def best_node(self, candidates: Sequence[str], resources: Mapping) -> str | None:
        """Best fit: the fitting candidate with the highest utilisation afterwards."""
        best, best_score = None, -1.0
        for node_id in candidates:   # sorted by ID: strict > keeps the lowest ID on ties
            node, usage = self.nodes_by_id[node_id], self._usage(node_id)
            if fits(node, usage, resources):
                score = _utilisation_after(node, usage, resources)
                if score > best_score:
                    best, best_score = node_id, score
        return best

    def try_place(self, task_group: Mapping, index: int, node_id: str | None) -> None:
        """Place one alloc of ``task_group`` on ``node_id`` if it fits, else count a failure."""
        assert self.job is not None
        resources = {key: _amount(task_group.get("Resources"), key) for key in RESOURCE_KEYS}
        tg_name = task_group["Name"]
        if node_id is None or not fits(self.nodes_by_id[node_id], self._usage(node_id), resources):
            self.failed[tg_name] = self.failed.get(tg_name, 0) + 1
            return
        usage = self._usage(node_id)
        for key in RESOURCE_KEYS:
            usage[key] += resources[key]
        self.place.append({
            "ID": self.new_id(), "EvalID": self.evaluation["ID"], "JobID": self.job["ID"],
            "Namespace": self.job.get("Namespace", "default"), "TaskGroup": tg_name,
            "Name": alloc_name(self.job["ID"], tg_name, index), "NodeID": node_id,
            "NodeName": self.nodes_by_id[node_id].get("Name", ""), "Resources": resources,
            "DesiredStatus": "run", "ClientStatus": "pending",
            "CreateTime": self.now_ns, "ModifyTime": self.now_ns,
        })

    def build(self) -> Plan:
        return Plan(eval_id=self.evaluation["ID"], job_id=self.evaluation["JobID"],
                    place=tuple(self.place), stop=tuple(sorted(self.stops.items())),
                    failed=dict(self.failed))


def _job_allocs(allocs: Sequence[Mapping], job_id: str, namespace: str) -> list[Mapping]:
    return [a for a in allocs
            if a.get("JobID") == job_id and a.get("Namespace", "default") == namespace]


def _reconcile_job(builder: _PlanBuilder, job: Mapping, mine: Sequence[Mapping],
                   candidates: Sequence[str], datacenters: Sequence[str]
                   ) -> list[tuple[Mapping, int, str | None]]:
    """Record every stop in ``builder``; return the wanted (task group, index, node or None)."""
    job_type = job["Type"]
    wanted: list[tuple[Mapping, int, str | None]] = []
    group_names = {task_group["Name"] for task_group in job.get("TaskGroups", [])}
    for alloc in sorted(mine, key=lambda a: a["ID"]):
        if is_live(alloc) and alloc.get("TaskGroup") not in group_names:
            builder.stop(alloc, "")   # its task group left the job
    for task_group in job.get("TaskGroups", []):
        group = [a for a in mine if a.get("TaskGroup") == task_group["Name"]]
        if job_type in ("service", "batch"):
            stops, indexes = _reconcile_count(task_group, group, builder.nodes_by_id,
                                              batch=job_type == "batch")
            wanted.extend((task_group, index, None) for index in indexes)
        else:
            stops, node_ids = _reconcile_system(group, builder.nodes_by_id, candidates,
                                                datacenters, sysbatch=job_type == "sysbatch")
            wanted.extend((task_group, 0, node_id) for node_id in node_ids)
        for alloc, client_status in stops:
            builder.stop(alloc, client_status)
    return wanted


def plan_evaluation(evaluation: Mapping, job: Mapping | None, nodes: Sequence[Mapping],
                    allocs: Sequence[Mapping], *, new_id: Callable[[], str], now_ns: int) -> Plan:
    """Compute the plan that brings one job's allocations to what the job asks for.

    Args:
        evaluation: the evaluation being processed (``ID``, ``JobID``, ``Namespace``).
        job: the job as stored, or None when it was purged.
        nodes: every node in the cluster.
        allocs: every allocation in the cluster (other jobs' ones count as usage).
        new_id: makes the ID of each placed allocation, called in placement order.
        now_ns: wall-clock nanoseconds for ``CreateTime``/``ModifyTime``.

    Raises:
        ValueError: the job's ``Type`` is not one of ``JOB_TYPES``.
    """
    builder = _PlanBuilder(evaluation, job, nodes, allocs, new_id, now_ns)
    namespace = (evaluation if job is None else job).get("Namespace", "default")
    mine = _job_allocs(allocs, evaluation["JobID"], namespace)
    if job is None or job.get("Stop"):
        for alloc in sorted(mine, key=lambda a: a["ID"]):
            if is_live(alloc):
                builder.stop(alloc, "")
        return _logged(builder.build())
    assert job["ID"] == evaluation["JobID"], (job["ID"], evaluation["JobID"])
    job_type = job.get("Type")
    if job_type not in JOB_TYPES:
        raise ValueError(f"unknown job type {job_type!r}")
    datacenters = list(job.get("Datacenters", []))
    candidates = sorted(n["ID"] for n in nodes if is_candidate(n, datacenters))
    wanted = _reconcile_job(builder, job, mine, candidates, datacenters)
    # Every stop is in before the first placement, so freed capacity is reusable.
    for task_group, index, node_id in wanted:
        if node_id is None:
            node_id = builder.best_node(candidates, task_group.get("Resources") or {})
        builder.try_place(task_group, index, node_id)
    return _logged(builder.build())


def _logged(plan: Plan) -> Plan:
    log.debug("plan computed eval=%s job=%s place=%d stop=%d failed=%s",
              plan.eval_id, plan.job_id, len(plan.place), len(plan.stop), plan.failed)
    return plan


# ---------------------------------------------------------------- the leader's check

def check_plan(plan: Plan, nodes_by_id: Mapping[str, Mapping],
               allocs: Sequence[Mapping]) -> tuple[Plan, tuple[str, ...]]:
    """Check a submitted plan against the leader's current state.

    Stops are always accepted. For each node receiving placements, all of them are
    rejected together when the node is missing, not ready, or when its live usage
    (less this plan's stops) plus this plan's placements on it exceed its capacity.

    Returns:
        The accepted part of the plan (same ids, stops and failures; only the
        placements on accepted nodes) and the sorted ids of the rejected nodes.
    """
    stopped = {alloc_id for alloc_id, _ in plan.stop}
    usage = _usage_by_node(allocs, stopped)
    wanted: dict[str, dict[str, int]] = {}
    for alloc in plan.place:
        total = wanted.setdefault(alloc["NodeID"], {key: 0 for key in RESOURCE_KEYS})
        for key in RESOURCE_KEYS:
            total[key] += _amount(alloc.get("Resources"), key)
    rejected: list[str] = []
    for node_id in sorted(wanted):
        node = nodes_by_id.get(node_id)
        if node is None or node.get("Status") != "ready":
            rejected.append(node_id)
        elif not fits(node, usage.get(node_id, {}), wanted[node_id]):
            rejected.append(node_id)
    if rejected:
        log.info("plan nodes rejected eval=%s nodes=%s", plan.eval_id, ",".join(rejected))
    refused = set(rejected)
    accepted = Plan(eval_id=plan.eval_id, job_id=plan.job_id,
                    place=tuple(a for a in plan.place if a["NodeID"] not in refused),
                    stop=plan.stop, failed=dict(plan.failed))
    return accepted, tuple(rejected)
