"""`shoal job run|status|stop` and `shoal node status`: client commands for simulated jobs.

Each command takes the arguments after its verb and returns the exit status, as the
other client commands do (``agent/cli_cluster.py``): 0 on success, 1 on a usage,
connection or API error with one line on stderr, and, like Nomad's evaluation
monitor, 2 when an evaluation it watched finished without placing everything.

Output follows Nomad's ``command/job_run.go``, ``job_status.go``, ``job_stop.go``,
``node_status.go`` and ``monitor.go`` for what shoal has: the "==> Monitoring
evaluation" lines, the ``key = value`` blocks, the job and node tables, 8-character
IDs unless ``-verbose``, relative times ("2m5s ago"). Formatting lives in pure
functions (``format_jobs``, ``format_job``, ``format_allocs``, ``format_nodes``,
``format_node``, ``pretty_time_diff``) so tests need no server. The monitor polls
``/v1/evaluation/<id>`` every half second; ``_sleep`` and ``_now_ns`` are module
attributes so tests can replace them.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

from .cli import CommandError, _client_parser, _parse, agent_address, columnize, http_request
from .cli_cluster import _command, _fail, format_time
from .config import UsageError

__all__ = ["job_run", "job_status", "job_stop", "node_status", "monitor_evaluation",
           "format_jobs", "format_job", "format_allocs", "format_nodes", "format_node",
           "format_kv", "pretty_time_diff", "load_job_file"]

_sleep = time.sleep
_now_ns = time.time_ns
POLL_INTERVAL = 0.5
MONITOR_POLLS = 600                 # give up watching after about five minutes
_TERMINAL_EVAL = ("complete", "failed", "canceled", "cancelled")
_LIVE_ALLOC = ("pending", "running")


def _short(value: Any, verbose: bool) -> str:
    text = str(value or "")
    return text if verbose else text[:8]


def _path(*parts: str) -> str:
    return "/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)


def _get_json(address: str, path: str, what: str,
              query: Sequence[tuple[str, str]] = ()) -> Any:
    status, body = http_request(address, "GET", path, query)
    if status != 200:
        raise _fail(what, status, body)
    return json.loads(body)


# --- job run ------------------------------------------------------------------------------


def load_job_file(path: str) -> bytes:
    """The register body for a JSON job file (``-`` reads stdin): ``{"Job": ...}``."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as exc:
        raise CommandError(f"Error getting job struct: Error reading job file from {path}: "
                           f"{exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"Error getting job struct: Error parsing job file from {path}: "
                           f"{exc}") from None
    try:
        job = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"Error getting job struct: Error parsing job file from {path}: "
                           f"{str(exc).splitlines()[0]}") from None
    if isinstance(job, dict) and "Job" not in job:
        job = {"Job": job}
    return json.dumps(job).encode()


@_command
def job_run(argv: Sequence[str]) -> int:
    """``shoal job run [-detach] [-verbose] FILE.json``: register a job, watch its evaluation."""
    parser = _client_parser("shoal job run")
    parser.add_argument("--detach", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("args", nargs="*")
    args = _parse(parser, argv)
    if len(args.args) != 1:
        raise UsageError("This command takes one argument: <path>")
    body = load_job_file(args.args[0])
    address = agent_address(args.address)
    status, answer = http_request(address, "PUT", "/v1/jobs", (), body)
    if status != 200:
        raise _fail("submitting job", status, answer)
    eval_id = json.loads(answer).get("EvalID", "")
    if args.detach or not eval_id:
        print("Job registration successful")
        if eval_id:
            print(f"Evaluation ID: {eval_id}")
        return 0
    return monitor_evaluation(address, eval_id, args.verbose)


# --- evaluation monitor -------------------------------------------------------------------


def monitor_evaluation(address: str, eval_id: str, verbose: bool) -> int:
    """Nomad's monitor: follow one evaluation until it is complete, failed or canceled."""
    print(f'==> {_stamp()}: Monitoring evaluation "{_short(eval_id, verbose)}"')
    last_status, announced, seen = "", False, set()
    evaluation: dict[str, Any] = {}
    for _ in range(MONITOR_POLLS):
        status, body = http_request(address, "GET", _path("v1", "evaluation", eval_id))
        if status == 404:       # a stale server may not have it yet
            _sleep(POLL_INTERVAL)
            continue
        if status != 200:
            raise _fail("reading evaluation", status, body)
        evaluation = json.loads(body)
        if not announced:
            print(f"    {_stamp()}: {_trigger_line(evaluation)}")
            announced = True
        new_status = str(evaluation.get("Status", ""))
        if last_status and new_status != last_status:
            print(f'    {_stamp()}: Evaluation status changed: "{last_status}" -> "{new_status}"')
        last_status = new_status
        _print_new_allocs(address, evaluation, seen, verbose)
        if new_status in _TERMINAL_EVAL:
            return _finish(evaluation, verbose)
        _sleep(POLL_INTERVAL)
    last = last_status or "unknown"
    raise CommandError(f'Error monitoring evaluation "{eval_id}": still "{last}" '
                       f"after {MONITOR_POLLS * POLL_INTERVAL:g}s")


def _trigger_line(evaluation: dict[str, Any]) -> str:
    if evaluation.get("TriggeredBy") == "node-update" and evaluation.get("NodeID"):
        return f'Evaluation triggered by node "{str(evaluation["NodeID"])[:8]}"'
    return f'Evaluation triggered by job "{evaluation.get("JobID", "")}"'


def _print_new_allocs(address: str, evaluation: dict[str, Any], seen: set[str],
                      verbose: bool) -> None:
    job_id = str(evaluation.get("JobID", ""))
    if not job_id:
        return
    query = [("namespace", str(evaluation.get("Namespace") or "default"))]
    status, body = http_request(address, "GET", _path("v1", "job", job_id, "allocations"), query)
    if status != 200:
        return                  # the allocation lines are a courtesy; the eval status decides
    for alloc in json.loads(body) or []:
        if alloc.get("EvalID") != evaluation.get("ID") or alloc.get("ID") in seen:
            continue
        seen.add(alloc["ID"])
        print(f'    {_stamp()}: Allocation "{_short(alloc["ID"], verbose)}" created: node '
              f'"{_short(alloc.get("NodeID"), verbose)}", group "{alloc.get("TaskGroup", "")}"')


def _finish(evaluation: dict[str, Any], verbose: bool) -> int:
    eval_short = _short(evaluation.get("ID"), verbose)
    status = evaluation.get("Status", "")
    queued = {tg: n for tg, n in sorted((evaluation.get("QueuedAllocations") or {}).items()) if n}
    if status == "complete" and not queued:
        print(f'==> {_stamp()}: Evaluation "{eval_short}" finished with status "complete"')
        return 0
    if status != "complete":
        reason = evaluation.get("StatusDescription") or ""
        print(f'==> {_stamp()}: Evaluation "{eval_short}" finished with status "{status}"'
              + (f": {reason}" if reason else ""))
        return 2
    print(f'==> {_stamp()}: Evaluation "{eval_short}" finished with status "complete" but '
          f"failed to place all allocations:")
    for group, count in queued.items():
        plural = "allocation" if count == 1 else "allocations"
        print(f'    Task Group "{group}" (failed to place {count} {plural})')
    if evaluation.get("BlockedEval"):
        print(f'    Evaluation "{_short(evaluation["BlockedEval"], verbose)}" waiting for '
              f"additional capacity to place remainder")
    return 2


def _stamp() -> str:
    return format_time(_now_ns())


# --- job status ---------------------------------------------------------------------------


@_command
def job_status(argv: Sequence[str]) -> int:
    """``shoal job status [-verbose] [-namespace NS] [ID]``: all jobs, or one and its allocs."""
    parser = _client_parser("shoal job status")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--namespace", default="")
    parser.add_argument("args", nargs="*")
    args = _parse(parser, argv)
    if len(args.args) > 1:
        raise UsageError("This command takes either no arguments or one: <job>")
    address = agent_address(args.address)
    ns = [("namespace", args.namespace)] if args.namespace else []
    if not args.args:
        jobs = _get_json(address, "/v1/jobs", "querying jobs", ns) or []
        print(format_jobs(jobs) if jobs else "No running jobs")
        return 0
    job = _find_job(address, args.args[0], ns)
    ns = [("namespace", str(job.get("Namespace") or "default"))]
    allocs = _get_json(address, _path("v1", "job", job["ID"], "allocations"),
                       "querying job allocations", ns) or []
    evals = _get_json(address, _path("v1", "job", job["ID"], "evaluations"),
                      "querying job evaluations", ns) or []
    print(format_job(job, allocs, evals, _now_ns(), verbose=args.verbose))
    return 0


def _find_job(address: str, given: str, ns: list[tuple[str, str]]) -> dict[str, Any]:
    """The job with ID ``given``, or the only one whose ID starts with it (Nomad's lookup)."""
    status, body = http_request(address, "GET", _path("v1", "job", given), ns)
    if status == 200:
        return json.loads(body)
    if status != 404:
        raise _fail("querying job", status, body)
    jobs = _get_json(address, "/v1/jobs", "querying jobs", [("prefix", given)] + ns) or []
    if not jobs:
        raise CommandError(f'No job(s) with prefix or ID "{given}" found')
    if len(jobs) > 1:
        raise CommandError("Prefix matched multiple jobs: "
                           + ", ".join(str(j.get("ID")) for j in jobs))
    return _get_json(address, _path("v1", "job", jobs[0]["ID"]), "querying job", ns)


def _job_status_text(job: dict[str, Any]) -> str:
    status = str(job.get("Status", ""))
    return f"{status} (stopped)" if job.get("Stop") else status


def format_jobs(jobs: Sequence[dict[str, Any]]) -> str:
    """Nomad's job list: ``ID Type Priority Status Submit Date``."""
    rows = [["ID", "Type", "Priority", "Status", "Submit Date"]]
    for job in jobs:
        rows.append([str(job.get("ID", "")), str(job.get("Type", "")),
                     str(job.get("Priority", "")), _job_status_text(job),
                     _date(job.get("SubmitTime"))])
    return columnize(rows)


def _date(unix_ns: Any) -> str:
    return format_time(int(unix_ns)) if isinstance(unix_ns, int) and unix_ns > 0 else ""


def format_job(job: dict[str, Any], allocs: Sequence[dict[str, Any]],
               evals: Sequence[dict[str, Any]], now_ns: int, *, verbose: bool = False) -> str:
    """One job as Nomad prints it: the key = value block, Summary, Allocations."""
    lines = [format_kv([
        ("ID", job.get("ID", "")), ("Name", job.get("Name", "")),
        ("Submit Date", _date(job.get("SubmitTime"))), ("Type", job.get("Type", "")),
        ("Priority", job.get("Priority", "")),
        ("Datacenters", ",".join(job.get("Datacenters") or [])),
        ("Namespace", job.get("Namespace", "default")), ("Status", _job_status_text(job)),
        ("Periodic", "false"), ("Parameterized", "false")])]
    lines += ["", "Summary", format_summary(job, allocs, evals)]
    lines += ["", "Allocations"]
    lines.append(format_allocs(allocs, now_ns, verbose=verbose) if allocs
                 else "No allocations placed")
    return "\n".join(lines)


def format_summary(job: dict[str, Any], allocs: Sequence[dict[str, Any]],
                   evals: Sequence[dict[str, Any]]) -> str:
    """Per task group: Queued (from the newest evaluation) and allocations by client status."""
    newest = max(evals, key=lambda e: e.get("CreateIndex", 0), default={})
    queued = newest.get("QueuedAllocations") or {}
    columns = {"pending": "Starting", "running": "Running", "failed": "Failed",
               "complete": "Complete", "lost": "Lost"}
    rows = [["Task Group", "Queued", "Starting", "Running", "Failed", "Complete", "Lost",
             "Unknown"]]
    for group in job.get("TaskGroups") or []:
        name = group.get("Name", "")
        counts = dict.fromkeys(["Starting", "Running", "Failed", "Complete", "Lost", "Unknown"], 0)
        for alloc in allocs:
            if alloc.get("TaskGroup") == name:
                counts[columns.get(alloc.get("ClientStatus", ""), "Unknown")] += 1
        rows.append([name, str(queued.get(name, 0))] + [str(n) for n in counts.values()])
    return columnize(rows)


def format_allocs(allocs: Sequence[dict[str, Any]], now_ns: int, *,
                  verbose: bool = False) -> str:
    """Nomad's allocation table: ``ID Node ID Task Group Desired Status Created Modified``."""
    rows = [["ID", "Node ID", "Task Group", "Desired", "Status", "Created", "Modified"]]
    ordered = sorted(allocs, key=lambda a: (-int(a.get("CreateIndex", 0)), str(a.get("ID", ""))))
    for alloc in ordered:
        rows.append([_short(alloc.get("ID"), verbose), _short(alloc.get("NodeID"), verbose),
                     str(alloc.get("TaskGroup", "")), str(alloc.get("DesiredStatus", "")),
                     str(alloc.get("ClientStatus", "")),
                     pretty_time_diff(int(alloc.get("CreateTime") or 0), now_ns),
                     pretty_time_diff(int(alloc.get("ModifyTime") or 0), now_ns)])
    return columnize(rows)


def format_kv(pairs: Sequence[tuple[str, Any]]) -> str:
    """Nomad's ``formatKV``: keys padded to one width, then `` = `` and the value."""
    width = max(len(key) for key, _ in pairs)
    return "\n".join(f"{key.ljust(width)} = {value}" for key, value in pairs)


def pretty_time_diff(first_ns: int, now_ns: int) -> str:
    """Nomad's ``prettyTimeDiff``: the two largest units, "ago" or "from now"; "" for 0."""
    if first_ns <= 0:
        return ""
    first, second = round(first_ns / 1e9), round(now_ns / 1e9)
    suffix = " ago" if second >= first else " from now"
    seconds = abs(second - first)
    if seconds == 0:
        return "0s" + suffix
    parts = []
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if parts or seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts[:2]) + suffix


# --- job stop -----------------------------------------------------------------------------


@_command
def job_stop(argv: Sequence[str]) -> int:
    """``shoal job stop [-purge] [-detach] [-verbose] [-namespace NS] ID``."""
    parser = _client_parser("shoal job stop")
    for flag in ("--purge", "--detach", "--verbose", "--yes"):
        parser.add_argument(flag, action="store_true")
    parser.add_argument("--namespace", default="")
    parser.add_argument("args", nargs="*")
    args = _parse(parser, argv)
    if len(args.args) != 1:
        raise UsageError("This command takes one argument: <job>")
    address = agent_address(args.address)
    ns = [("namespace", args.namespace)] if args.namespace else []
    job = _find_job(address, args.args[0], ns)
    query = [("namespace", str(job.get("Namespace") or "default"))]
    if args.purge:
        query.append(("purge", "true"))
    status, body = http_request(address, "DELETE", _path("v1", "job", job["ID"]), query)
    if status != 200:
        raise _fail("deregistering job", status, body)
    eval_id = json.loads(body).get("EvalID", "")
    if args.detach or not eval_id:
        print(eval_id)
        return 0
    return monitor_evaluation(address, eval_id, args.verbose)


# --- node status --------------------------------------------------------------------------


@_command
def node_status(argv: Sequence[str]) -> int:
    """``shoal node status [-verbose] [ID]``: all client nodes, or one with its allocations."""
    parser = _client_parser("shoal node status")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("args", nargs="*")
    args = _parse(parser, argv)
    if len(args.args) > 1:
        raise UsageError("This command takes either no arguments or one: <node>")
    address = agent_address(args.address)
    if not args.args:
        nodes = _get_json(address, "/v1/nodes", "querying node status") or []
        if nodes:                # Nomad prints nothing when there are no nodes
            print(format_nodes(nodes, verbose=args.verbose))
        return 0
    given = args.args[0]
    status, body = http_request(address, "GET", _path("v1", "node", given))
    if status == 404:
        raise CommandError(f'No node(s) with prefix "{given}" found')
    if status != 200:
        raise _fail("querying node info", status, body)
    node = json.loads(body)
    allocs = _get_json(address, _path("v1", "node", node["ID"], "allocations"),
                       "querying node allocations") or []
    print(format_node(node, allocs, _now_ns(), verbose=args.verbose))
    return 0


def format_nodes(nodes: Sequence[dict[str, Any]], *, verbose: bool = False) -> str:
    """Nomad's node list: ``ID Node Pool DC Name Class Drain Eligibility Status``."""
    rows = [["ID", "Node Pool", "DC", "Name", "Class", "Drain", "Eligibility", "Status"]]
    for node in nodes:
        rows.append([_short(node.get("ID"), verbose), str(node.get("NodePool") or "default"),
                     str(node.get("Datacenter", "")), str(node.get("Name", "")),
                     str(node.get("NodeClass") or "<none>"),
                     "true" if node.get("Drain") else "false",
                     str(node.get("SchedulingEligibility", "")), str(node.get("Status", ""))])
    return columnize(rows)


def format_node(node: dict[str, Any], allocs: Sequence[dict[str, Any]], now_ns: int, *,
                verbose: bool = False) -> str:
    """One node: the key = value block, Allocated Resources, Allocations."""
    lines = [format_kv([
        ("ID", _short(node.get("ID"), verbose)), ("Name", node.get("Name", "")),
        ("Node Pool", node.get("NodePool") or "default"),
        ("Class", node.get("NodeClass") or "<none>"), ("DC", node.get("Datacenter", "")),
        ("Drain", "false"), ("Eligibility", node.get("SchedulingEligibility", "")),
        ("Status", node.get("Status", "")), ("HTTP Address", node.get("HTTPAddr", ""))])]
    live = [a for a in allocs
            if a.get("DesiredStatus") == "run" and a.get("ClientStatus") in _LIVE_ALLOC]
    used_cpu = sum(int((a.get("Resources") or {}).get("CPU", 0)) for a in live)
    used_mem = sum(int((a.get("Resources") or {}).get("MemoryMB", 0)) for a in live)
    total = node.get("NodeResources") or {}
    lines += ["", "Allocated Resources", columnize([
        ["CPU", "Memory"],
        [f"{used_cpu}/{total.get('CPU', 0)} MHz",
         f"{used_mem} MiB/{total.get('MemoryMB', 0)} MiB"]])]
    lines += ["", "Allocations"]
    lines.append(format_allocs(allocs, now_ns, verbose=verbose) if allocs
                 else "No allocations placed")
    return "\n".join(lines)
