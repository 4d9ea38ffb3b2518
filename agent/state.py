"""``StateStore``: the replicated state machine that Raft feeds, starting with Nomad Variables.

Theory of operation
-------------------
The store owns tables of records and nothing else: no clock, no socket, no log.
Raft hands it every committed COMMAND entry in index order through
``apply(index, data)``; the entry's bytes are a msgpack map made by
``encode_command`` with a ``"Type"`` naming the command. Every server applies the
same entries in the same order, so every store ends in the same state: that is why
the command carries everything that varies between servers (the wall time of a
write is stamped by the proposer, in ``"Time"``, as Nomad's RPC layer does), and
why ``apply`` never raises on bad data. A command that fails validation returns
``{"Error": msg}`` and changes nothing but ``index``, on every server alike.

Inputs: ``apply`` (a committed command), ``restore`` (a snapshot installed by
Raft), ``query`` (a read). Outputs: the result dict of each call, ``snapshot()``.

Invariants:
- ``index`` is the index of the last applied entry; entries arrive in increasing
  index order (an older index is a caller bug: ``AssertionError``).
- A variable's ``ModifyIndex`` is the index of the entry that last wrote it and
  ``CreateIndex <= ModifyIndex <= index``; each table's index (what reads report as
  ``X-Nomad-Index``) is the index of the last entry that changed that table.
- ``restore(snapshot())`` gives an equal store (``state_equal``).

Variables follow Nomad 1.9 (``nomad/structs/variables.go``,
``nomad/state/state_store_variables.go``): keyed by (Namespace, Path); check-and-set
by ``Cas`` (None: unconditional, 0: must not exist, n: ``ModifyIndex`` must be n);
a conflict returns the current variable, or None when there is none (Nomad then
answers with a zero variable carrying only Namespace and Path; the HTTP layer
renders that). Items are stored in the clear: shoal has no keyring for variables.

Commands and queries are looked up by ``Type`` in ``_COMMANDS`` and ``_QUERIES``.
The scheduling tables (nodes, jobs, evals, allocs) and their commands live in
``agent/state_sched.py``; their queries are below. The ACL tables (tokens, policies),
with their commands and queries, live in ``agent/state_acl.py``. List queries sort evaluations and
allocations by ``CreateIndex`` (then ID), nodes by ID and jobs by (Namespace, ID).
Snapshots are version 2 (variables, the scheduling tables and, when present, the ACL
tables); version-1 snapshots (variables only) still restore.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgpack

from . import state_acl, state_sched
from .state_acl import AclTables
from .state_sched import ALLOCS, EVALS, JOBS, NODES, SchedTables

__all__ = ["StateStore", "encode_command", "validate_variable", "validate_path", "validate_namespace",
           "variable_metadata", "zero_variable", "DEFAULT_NAMESPACE", "MAX_VARIABLE_BYTES"]

DEFAULT_NAMESPACE = "default"
MAX_VARIABLE_BYTES = 65536          # Nomad's maxVariableSize: sum of key and value lengths
SNAPSHOT_VERSION = 2
_OLD_SNAPSHOT_VERSIONS = (1,)           # still restored: variables only
_PATH_RE = re.compile(r"[a-zA-Z0-9\-_~/]{1,128}")
_NAMESPACE_RE = re.compile(r"[a-zA-Z0-9\-]{1,128}")
_VARIABLES = "variables"            # table name, as Nomad's TableVariables

Variable = dict[str, Any]


def encode_command(command: Mapping[str, Any]) -> bytes:
    """The bytes of a COMMAND entry: ``command`` as a msgpack map."""
    return msgpack.packb(dict(command), use_bin_type=True)


def validate_path(path: Any) -> str | None:
    """Nomad's ``validatePath`` plus shoal's slash rules: an error message, or None.

    1..128 characters of ``[a-zA-Z0-9-_~/]``, no leading or trailing ``/``, no
    ``//``; under the reserved top-level ``nomad`` only ``nomad/jobs...`` and
    ``nomad/job-templates/<name>`` are allowed.
    """
    if not isinstance(path, str) or path == "":
        return "variable requires path"
    if (_PATH_RE.fullmatch(path) is None or path.startswith("/") or path.endswith("/")
            or "//" in path):
        return f'invalid path "{path}"'
    parts = path.split("/")
    if parts[0] != "nomad":
        return None
    if len(parts) == 1:
        return ('"nomad" is a reserved top-level directory path, but you may write variables '
                'to "nomad/jobs", "nomad/job-templates", or below')
    if parts[1] == "jobs" or (parts[1] == "job-templates" and len(parts) == 3):
        return None
    if parts[1] == "job-templates":
        return ('"nomad/job-templates" is a reserved directory path, but you may write variables '
                'at the level below it, for example, "nomad/job-templates/template-name"')
    return ('only paths at "nomad/jobs" or "nomad/job-templates" and below are valid paths '
            'under the top-level "nomad" directory')


def validate_namespace(namespace: Any) -> str | None:
    """A namespace name as Nomad accepts one for a write; ``*`` is refused."""
    if namespace == "*":
        return 'can not target wildcard ("*")namespace'
    if not isinstance(namespace, str) or _NAMESPACE_RE.fullmatch(namespace) is None:
        return f"invalid namespace {namespace!r}"
    return None


def validate_variable(var: Any) -> str | None:
    """Check a variable to write (``Namespace``, ``Path``, ``Items``): a message, or None.

    Called by the HTTP route before proposing and by ``apply`` again, so a bad
    command that reaches the log anyway changes nothing.
    """
    if not isinstance(var, Mapping):
        return "variable must be an object"
    error = validate_namespace(var.get("Namespace"))
    if error:
        return error
    items = var.get("Items")
    if not isinstance(items, Mapping) or len(items) == 0:
        return "empty variables are invalid"
    size = 0
    for key, value in items.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return "variable items must be strings"
        size += len(key.encode()) + len(value.encode())
    if size > MAX_VARIABLE_BYTES:
        return "variables are limited to 64KiB in total size"
    return validate_path(var.get("Path"))


def variable_metadata(var: Variable) -> Variable:
    """The list form of a variable: everything but ``Items``, in Nomad's field order."""
    return {key: var[key] for key in ("Namespace", "Path", "CreateIndex", "CreateTime",
                                      "ModifyIndex", "ModifyTime")}


def zero_variable(namespace: str, path: str) -> Variable:
    """Nomad's "plausible zero value" conflict for a variable that does not exist."""
    return {"Namespace": namespace, "Path": path, "CreateIndex": 0, "CreateTime": 0,
            "ModifyIndex": 0, "ModifyTime": 0, "Items": None}


def _check_cas(cas: Any) -> str | None:
    if cas is None or (isinstance(cas, int) and not isinstance(cas, bool) and 0 <= cas < 2**64):
        return None
    return "Cas must be null or an unsigned integer"


def _check_time(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return None
    return "Time must be a non-negative integer (ns)"


class StateStore:
    """Nomad's state store in miniature: tables changed only by applied commands."""

    def __init__(self) -> None:
        self.index = 0                                   # last applied raft index
        self._variables: dict[tuple[str, str], Variable] = {}
        self._table_index: dict[str, int] = {}           # table -> last index that changed it
        self._sched = SchedTables(self._table_index)     # nodes, jobs, evals, allocs
        self._acl = AclTables(self._table_index)         # ACL tokens and policies

    # --- inputs -------------------------------------------------------------------

    def apply(self, index: int, data: bytes) -> dict[str, Any]:
        """Apply the COMMAND entry at ``index``; returns its result, never raises on bad data."""
        assert index > self.index, f"apply out of order index={index} applied={self.index}"
        self.index = index
        try:
            command = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:  # noqa: BLE001 - any undecodable bytes are a bad command
            return {"Error": f"undecodable command: {type(exc).__name__}"}
        if not isinstance(command, dict):
            return {"Error": "command must be a map"}
        handler = _COMMANDS.get(command.get("Type")) if isinstance(command.get("Type"), str) else None
        if handler is None:
            return {"Error": f"unknown command type {command.get('Type')!r}"}
        return handler(self, index, command)

    def query(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """Answer a read: ``{"Index": n, ...}``. Raises ValueError on a bad query."""
        kind = query.get("Type")
        handler = _QUERIES.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise ValueError(f"unknown query type {kind!r}")
        return handler(self, query)

    def snapshot(self) -> bytes:
        """Every table and index as msgpack; ``restore`` reads it back."""
        return msgpack.packb({
            "Version": SNAPSHOT_VERSION,
            "Index": self.index,
            "TableIndex": dict(sorted(self._table_index.items())),
            "Variables": [self._variables[key] for key in sorted(self._variables)],
            **self._sched.to_snapshot(),
            **self._acl.to_snapshot(),
        }, use_bin_type=True)

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's. Raises ValueError if it is not one."""
        try:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"bad state snapshot: {exc}") from None
        if not isinstance(obj, dict) or obj.get("Version") not in (SNAPSHOT_VERSION,
                                                                   *_OLD_SNAPSHOT_VERSIONS):
            raise ValueError("bad state snapshot: unknown version")
        try:
            variables = {(v["Namespace"], v["Path"]): dict(v) for v in obj["Variables"]}
            table_index = {str(k): int(v) for k, v in obj["TableIndex"].items()}
            index = int(obj["Index"])
            sched = SchedTables.from_snapshot(obj if obj["Version"] == SNAPSHOT_VERSION else {},
                                              table_index)
            acl = AclTables.from_snapshot(obj, table_index)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"bad state snapshot: {exc!r}") from None
        self._variables, self._table_index, self.index = variables, table_index, index
        self._sched = sched
        self._acl = acl

    # --- views --------------------------------------------------------------------

    def table_index(self, table: str) -> int:
        """Index of the last entry that changed ``table``, at least 1 (Nomad's blocking-query rule)."""
        return max(1, self._table_index.get(table, 0))

    def state_equal(self, other: StateStore) -> bool:
        """Same tables and indexes (for tests and snapshot checks)."""
        return (self.index == other.index and self._variables == other._variables
                and self._table_index == other._table_index and self._sched.equal(other._sched)
                and self._acl.equal(other._acl))

    def get_variable(self, namespace: str, path: str) -> Variable | None:
        var = self._variables.get((namespace, path))
        return _copy_variable(var) if var is not None else None

    # --- variables ----------------------------------------------------------------

    def _var_upsert(self, index: int, command: dict[str, Any]) -> dict[str, Any]:
        var, cas = command.get("Var"), command.get("Cas")
        error = validate_variable(var) or _check_cas(cas) or _check_time(command.get("Time"))
        if error:
            return {"Error": error}
        key = (var["Namespace"], var["Path"])
        current = self._variables.get(key)
        if cas is not None and _cas_conflicts(cas, current):
            return {"Ok": False, "Conflict": _copy_variable(current) if current else None}
        now = command["Time"]
        stored = {
            "Namespace": key[0], "Path": key[1],
            "CreateIndex": current["CreateIndex"] if current else index,
            "CreateTime": current["CreateTime"] if current else now,
            "ModifyIndex": index, "ModifyTime": now,
            "Items": dict(sorted(var["Items"].items())),
        }
        self._variables[key] = stored
        self._table_index[_VARIABLES] = index
        return {"Ok": True, "Var": _copy_variable(stored)}

    def _var_delete(self, index: int, command: dict[str, Any]) -> dict[str, Any]:
        namespace, path, cas = command.get("Namespace"), command.get("Path"), command.get("Cas")
        error = (validate_namespace(namespace) or validate_path(path) or _check_cas(cas))
        if error:
            return {"Error": error}
        key = (namespace, path)
        current = self._variables.get(key)
        if cas is not None and _cas_conflicts(cas, current):
            return {"Ok": False, "Conflict": _copy_variable(current) if current else None}
        if current is not None:
            del self._variables[key]
            self._table_index[_VARIABLES] = index
        return {"Ok": True}

    def _var_get(self, query: Mapping[str, Any]) -> dict[str, Any]:
        namespace, path = query.get("Namespace", DEFAULT_NAMESPACE), query.get("Path")
        if not isinstance(namespace, str) or not isinstance(path, str):
            raise ValueError("var_get needs string Namespace and Path")
        return {"Index": self.table_index(_VARIABLES),
                "Var": self.get_variable(namespace, path)}

    def _var_list(self, query: Mapping[str, Any]) -> dict[str, Any]:
        namespace = query.get("Namespace", DEFAULT_NAMESPACE)
        prefix = query.get("Prefix", "")
        if not isinstance(namespace, str) or not isinstance(prefix, str):
            raise ValueError("var_list needs string Namespace and Prefix")
        matches = [variable_metadata(var) for (ns, path), var in self._variables.items()
                   if (namespace == "*" or ns == namespace) and path.startswith(prefix)]
        matches.sort(key=lambda var: (var["Namespace"], var["Path"]))
        return {"Index": self.table_index(_VARIABLES), "Vars": matches}

    # --- scheduling queries (records are copies; Index is the table's index) -----------

    def _node_list(self, query: Mapping[str, Any]) -> dict[str, Any]:
        prefix = _arg(query, "Prefix", "")
        nodes = self._sched.nodes
        return {"Index": self.table_index(NODES),
                "Nodes": [_node_stub(nodes[i]) for i in sorted(nodes) if i.startswith(prefix)]}

    def _node_get(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """Exact ID, else a unique ID prefix; ambiguous or unknown gives None."""
        node_id = _arg(query, "NodeID", required=True)
        nodes = self._sched.nodes
        node = nodes.get(node_id)
        if node is None and node_id:
            matches = [n for i, n in nodes.items() if i.startswith(node_id)]
            node = matches[0] if len(matches) == 1 else None
        return {"Index": self.table_index(NODES), "Node": _copy(node)}

    def _job_list(self, query: Mapping[str, Any]) -> dict[str, Any]:
        namespace, prefix = _arg(query, "Namespace", DEFAULT_NAMESPACE), _arg(query, "Prefix", "")
        jobs = self._sched.jobs
        return {"Index": self.table_index(JOBS),
                "Jobs": [_job_stub(jobs[key]) for key in sorted(jobs)
                         if namespace in ("*", key[0]) and key[1].startswith(prefix)]}

    def _job_get(self, query: Mapping[str, Any]) -> dict[str, Any]:
        return {"Index": self.table_index(JOBS), "Job": _copy(self._sched.jobs.get(_job_key(query)))}

    def _job_allocs(self, query: Mapping[str, Any]) -> dict[str, Any]:
        return {"Index": self.table_index(ALLOCS),
                "Allocs": _copy(self._sched.job_allocs(_job_key(query)))}

    def _job_evals(self, query: Mapping[str, Any]) -> dict[str, Any]:
        return {"Index": self.table_index(EVALS),
                "Evals": _copy(self._sched.job_evals(_job_key(query)))}

    def _eval_list(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """Evaluations filtered by optional JobID, Status and Namespace ("*" or absent: all)."""
        job_id, status = _arg(query, "JobID"), _arg(query, "Status")
        namespace = _arg(query, "Namespace", "*")
        evals = [ev for ev in self._sched.evals.values()
                 if (job_id is None or ev["JobID"] == job_id)
                 and (status is None or ev["Status"] == status)
                 and namespace in ("*", ev["Namespace"])]
        return {"Index": self.table_index(EVALS), "Evals": _copy(_by_create(evals))}

    def _eval_get(self, query: Mapping[str, Any]) -> dict[str, Any]:
        eval_id = _arg(query, "EvalID", required=True)
        return {"Index": self.table_index(EVALS), "Eval": _copy(self._sched.evals.get(eval_id))}

    def _alloc_list(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """Allocations filtered by optional NodeID, JobID and Namespace ("*" or absent: all)."""
        node_id, job_id = _arg(query, "NodeID"), _arg(query, "JobID")
        namespace = _arg(query, "Namespace", "*")
        sched = self._sched
        candidates = sched.node_allocs(node_id) if node_id is not None else sched.allocs.values()
        allocs = [a for a in candidates if (job_id is None or a["JobID"] == job_id)
                  and namespace in ("*", a["Namespace"])]
        return {"Index": self.table_index(ALLOCS), "Allocs": _copy(_by_create(allocs))}

    def _alloc_get(self, query: Mapping[str, Any]) -> dict[str, Any]:
        alloc_id = _arg(query, "AllocID", required=True)
        return {"Index": self.table_index(ALLOCS), "Alloc": _copy(self._sched.allocs.get(alloc_id))}

    def _scheduling_snapshot(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """What a worker plans from: the job, every node, the job's allocations plus every
        live allocation (for node usage). Index: the newest of the four scheduling tables."""
        key = _job_key(query)
        sched = self._sched
        mine = _copy(sched.job_allocs(key))
        # Other jobs matter only through the room they take: one usage record per node
        # instead of a copy of every allocation keeps a plan's cost flat as the store grows.
        usage: dict[str, list[int]] = {}
        for alloc in sched.allocs.values():
            if (alloc["Namespace"], alloc["JobID"]) == key or state_sched.alloc_terminal(alloc):
                continue
            used = usage.setdefault(alloc["NodeID"], [0, 0])
            used[0] += alloc["Resources"]["CPU"]
            used[1] += alloc["Resources"]["MemoryMB"]
        others = [usage_record(node_id, cpu, memory) for node_id, (cpu, memory) in sorted(usage.items())]
        return {"Index": sched.index_of(NODES, JOBS, EVALS, ALLOCS),
                "Job": _copy(sched.jobs.get(key)),
                "Nodes": _copy([sched.nodes[i] for i in sorted(sched.nodes)]),
                "Allocs": mine + others}


def usage_record(node_id: str, cpu: int, memory: int) -> dict[str, Any]:
    """A stand-in for the live allocations of other jobs on one node: only their size."""
    return {"ID": f"usage:{node_id}", "Namespace": "", "EvalID": "", "JobID": "", "TaskGroup": "",
            "Name": "", "NodeID": node_id, "NodeName": "", "DesiredStatus": "run",
            "ClientStatus": "running", "Resources": {"CPU": cpu, "MemoryMB": memory},
            "CreateIndex": 0, "ModifyIndex": 0}


def _arg(query: Mapping[str, Any], key: str, default: str | None = None, *,
         required: bool = False) -> Any:
    """A string argument of a query (None when absent and not required); ValueError if bad."""
    value = query.get(key, default)
    if value is None:
        value = default
    if (value is None and required) or (value is not None and not isinstance(value, str)):
        raise ValueError(f"{query.get('Type')} needs a string {key}")
    return value


def _job_key(query: Mapping[str, Any]) -> tuple[str, str]:
    return (_arg(query, "Namespace", DEFAULT_NAMESPACE), _arg(query, "JobID", required=True))


def _by_create(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: (r["CreateIndex"], r["ID"]))


def _copy(value: Any) -> Any:
    return copy.deepcopy(value)


# --- list shapes of the scheduling queries ------------------------------------------

def _node_stub(node: Mapping[str, Any]) -> dict[str, Any]:
    """Nomad's ``NodeListStub`` fields that shoal has (Address is HTTPAddr's host)."""
    address = node["HTTPAddr"].rsplit(":", 1)[0].strip("[]") if node["HTTPAddr"] else ""
    return {"Address": address, "ID": node["ID"], "Datacenter": node["Datacenter"],
            "Name": node["Name"], "NodeClass": node["NodeClass"], "Drain": False,
            "SchedulingEligibility": node["SchedulingEligibility"], "Status": node["Status"],
            "StatusDescription": "", "CreateIndex": node["CreateIndex"],
            "ModifyIndex": node["ModifyIndex"]}


def _job_stub(job: Mapping[str, Any]) -> dict[str, Any]:
    """Nomad's ``JobListStub`` fields that shoal has (no JobSummary)."""
    return {"ID": job["ID"], "ParentID": "", "Name": job["Name"], "Namespace": job["Namespace"],
            "Datacenters": list(job["Datacenters"]), "Type": job["Type"],
            "Priority": job["Priority"], "Periodic": False, "ParameterizedJob": False,
            "Stop": job["Stop"], "Status": job["Status"],
            "StatusDescription": job["StatusDescription"], "CreateIndex": job["CreateIndex"],
            "ModifyIndex": job["ModifyIndex"], "JobModifyIndex": job["JobModifyIndex"],
            "SubmitTime": job["SubmitTime"]}


def _cas_conflicts(cas: int, current: Variable | None) -> bool:
    """Nomad's check-and-set rule: 0 means "must not exist", n means "ModifyIndex is n"."""
    if cas == 0:
        return current is not None
    return current is None or current["ModifyIndex"] != cas


def _copy_variable(var: Variable) -> Variable:
    copied = dict(var)
    if isinstance(copied.get("Items"), dict):
        copied["Items"] = dict(copied["Items"])
    return copied


# Type -> handler; the scheduling commands come from agent/state_sched.py.
_COMMANDS: dict[str, Callable[[StateStore, int, dict[str, Any]], dict[str, Any]]] = {
    "var_upsert": StateStore._var_upsert,
    "var_delete": StateStore._var_delete,
}
_QUERIES: dict[str, Callable[[StateStore, Mapping[str, Any]], dict[str, Any]]] = {
    "var_get": StateStore._var_get,
    "var_list": StateStore._var_list,
    "node_list": StateStore._node_list,
    "node_get": StateStore._node_get,
    "job_list": StateStore._job_list,
    "job_get": StateStore._job_get,
    "job_allocs": StateStore._job_allocs,
    "job_evals": StateStore._job_evals,
    "eval_list": StateStore._eval_list,
    "eval_get": StateStore._eval_get,
    "alloc_list": StateStore._alloc_list,
    "alloc_get": StateStore._alloc_get,
    "scheduling_snapshot": StateStore._scheduling_snapshot,
}


def _sched_command(command: state_sched.Command) -> Callable[[StateStore, int, dict[str, Any]],
                                                             dict[str, Any]]:
    def run(store: StateStore, index: int, data: dict[str, Any]) -> dict[str, Any]:
        return command(store._sched, index, data)
    run.__name__ = command.__name__
    return run


_COMMANDS.update((name, _sched_command(fn)) for name, fn in state_sched.COMMANDS.items())


def _acl_command(command: state_acl.Command) -> Callable[[StateStore, int, dict[str, Any]],
                                                         dict[str, Any]]:
    def run(store: StateStore, index: int, data: dict[str, Any]) -> dict[str, Any]:
        return command(store._acl, index, data)
    run.__name__ = command.__name__
    return run


def _acl_query(query: state_acl.Query) -> Callable[[StateStore, Mapping[str, Any]], dict[str, Any]]:
    def run(store: StateStore, data: Mapping[str, Any]) -> dict[str, Any]:
        return query(store._acl, data)
    run.__name__ = query.__name__
    return run


# The ACL tables and their commands and queries live in agent/state_acl.py.
_COMMANDS.update((name, _acl_command(fn)) for name, fn in state_acl.COMMANDS.items())
_QUERIES.update((name, _acl_query(fn)) for name, fn in state_acl.QUERIES.items())
