"""The observers of a chaos run: samplers, the workload, and the reads at the end.

Plain threads and the standard library's HTTP client: each server gets one sampler
thread polling ``/v1/agent/members`` and ``/v1/agent/self`` every ``interval`` seconds,
so a SIGSTOPped server that never answers holds up only its own samples. The workload
writes variables ``chaos/<run>/<seq>`` through the servers in turn and submits batch
jobs; each result is appended to the shared ``Record`` under one lock. Nothing here
decides whether an invariant held (``invariants.py`` does, from the record).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .record import JobResult, LeaderClaim, MemberSample, RaftSample, Readback, Record, WriteResult
from .invariants import job_problems
from .record import leader_claims_from_log

__all__ = ["Clock", "HttpError", "Observer", "http_json", "job_document", "read_jobs",
           "jobs_settled", "read_back", "read_leader_logs", "submit_job", "write_variable"]

SAMPLE_INTERVAL = 0.5
SAMPLE_TIMEOUT = 1.5
WRITE_TIMEOUT = 5.0          # above the servers' hold timeout for a leader, so "no leader" is definite
READ_TIMEOUT = 3.0


class HttpError(Exception):
    """No HTTP answer (refused, reset, timed out)."""


class Clock:
    """Seconds since the run started, from the monotonic clock; ``started_wall`` for logs."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.started_wall = time.time()

    def now(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        """Wait until run time ``t``; False when ``stop`` was set first."""
        delay = t - self.now()
        if stop is None:
            if delay > 0:
                time.sleep(delay)
            return True
        return not stop.wait(max(delay, 0.0))


def http_json(address: str, method: str, path: str, body: Any = None, *,
              timeout: float) -> tuple[int, Any]:
    """One request to ``ip:port``: (status, decoded JSON or text). ``HttpError`` when no answer."""
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=payload,
                           headers={"Content-Type": "application/json"} if payload else {})
        response = connection.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise HttpError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
    finally:
        connection.close()
    text = data.decode(errors="replace")
    try:
        return response.status, json.loads(text) if text else None
    except ValueError:
        return response.status, text.strip()


@dataclass(frozen=True)
class Target:
    """A node the observers talk to: its name and HTTP ``ip:port``."""
    name: str
    http: str


class Observer:
    """Samplers for every server, appending to ``record`` until ``stop()``."""

    def __init__(self, record: Record, clock: Clock, servers: Sequence[Target], *,
                 interval: float = SAMPLE_INTERVAL) -> None:
        self.record = record
        self.clock = clock
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._sample_loop, args=(server, interval),
                                          name=f"chaos-sample-{server.name}", daemon=True)
                         for server in servers]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=SAMPLE_TIMEOUT * 3)

    def add(self, attribute: str, item: Any) -> None:
        """Append ``item`` to the record's list ``attribute`` (thread-safe)."""
        with self.lock:
            getattr(self.record, attribute).append(item)

    def latest_views(self) -> dict[str, dict[str, str] | None]:
        """Each observer's latest member view (None: it did not answer)."""
        with self.lock:
            latest: dict[str, MemberSample] = {}
            for sample in self.record.member_samples:
                latest[sample.observer] = sample
        return {name: sample.members for name, sample in latest.items()}

    def latest_raft(self) -> dict[str, RaftSample]:
        with self.lock:
            latest: dict[str, RaftSample] = {}
            for sample in self.record.raft_samples:
                latest[sample.server] = sample
        return latest

    def _sample_loop(self, server: Target, interval: float) -> None:
        next_t = self.clock.now()
        while not self._stop.is_set():
            self.add("member_samples", MemberSample(self.clock.now(), server.name, members_of(server)))
            self.add("raft_samples", raft_of(server, self.clock.now()))
            next_t = max(next_t + interval, self.clock.now())
            self.clock.sleep_until(next_t, self._stop)


def members_of(server: Target) -> dict[str, str] | None:
    """``{member: status}`` from the server's ``/v1/agent/members`` (None: no answer)."""
    try:
        status, body = http_json(server.http, "GET", "/v1/agent/members", timeout=SAMPLE_TIMEOUT)
    except HttpError:
        return None
    if status != 200 or not isinstance(body, dict):
        return None
    return {str(m.get("Name")): str(m.get("Status")) for m in body.get("Members") or []}


def raft_of(server: Target, t: float) -> RaftSample:
    """The server's raft state from ``/v1/agent/self`` ``stats.raft``."""
    try:
        status, body = http_json(server.http, "GET", "/v1/agent/self", timeout=SAMPLE_TIMEOUT)
    except HttpError:
        return RaftSample(t, server.name, "unreachable")
    stats = body.get("stats", {}) if isinstance(body, dict) and status == 200 else {}
    raft, nomad = stats.get("raft") or {}, stats.get("nomad") or {}
    if not raft:
        return RaftSample(t, server.name, "unreachable")
    try:
        term = int(raft.get("term", "0"))
    except ValueError:
        term = 0
    return RaftSample(t, server.name, str(raft.get("state", "")), term, str(nomad.get("leader_addr", "")))


# --- the workload -----------------------------------------------------------------------------


def write_variable(target: Target, path: str, value: str, seq: int, clock: Clock, *,
                   final: bool = False) -> WriteResult:
    """``PUT /v1/var/<path>`` with ``{"Items": {"value": value}}``; ok only on 200."""
    started = clock.now()
    body = {"Path": path, "Items": {"value": value}}
    try:
        status, answer = http_json(target.http, "PUT", f"/v1/var/{path}", body, timeout=WRITE_TIMEOUT)
    except HttpError as exc:
        outcome = "timeout" if "timed out" in str(exc) else "failed"
        return WriteResult(seq, path, value, target.name, started, clock.now(), outcome, str(exc), final)
    if status == 200:
        return WriteResult(seq, path, value, target.name, started, clock.now(), "ok", "", final)
    return WriteResult(seq, path, value, target.name, started, clock.now(), "failed",
                       f"{status} {_short(answer)}", final)


def job_document(job_id: str, count: int, duration: float) -> dict[str, Any]:
    """The batch job the workload submits (docs/scheduling.md): ``count`` short allocations."""
    return {"Job": {"ID": job_id, "Type": "batch", "Datacenters": ["*"],
                    "TaskGroups": [{"Name": "work", "Count": count, "Duration": duration,
                                    "Resources": {"CPU": 10, "MemoryMB": 8}}]}}


def submit_job(target: Target, job_id: str, count: int, duration: float, clock: Clock) -> JobResult:
    """``PUT /v1/jobs``; the job is acknowledged when the answer carries an EvalID."""
    started = clock.now()
    try:
        status, answer = http_json(target.http, "PUT", "/v1/jobs", job_document(job_id, count, duration),
                                   timeout=WRITE_TIMEOUT)
    except HttpError as exc:
        outcome = "timeout" if "timed out" in str(exc) else "failed"
        return JobResult(job_id, count, started, outcome, target.name, error=str(exc))
    if status == 200 and isinstance(answer, dict) and answer.get("EvalID"):
        return JobResult(job_id, count, started, "ok", target.name, eval_id=str(answer["EvalID"]))
    return JobResult(job_id, count, started, "failed", target.name, error=f"{status} {_short(answer)}")


def _short(answer: Any) -> str:
    text = answer if isinstance(answer, str) else json.dumps(answer)
    return text.replace("\n", " ")[:200]


# --- reads at the end -------------------------------------------------------------------------


def _read(targets: Sequence[Target], path: str, *, stale: bool) -> tuple[int, Any, str] | None:
    """The first answer of a server for ``path`` that is 200 or 404 (None: no server could say)."""
    suffix = ("&" if "?" in path else "?") + "stale=true" if stale else ""
    for target in targets:
        try:
            status, body = http_json(target.http, "GET", path + suffix, timeout=READ_TIMEOUT)
        except HttpError:
            continue
        if status in (200, 404):
            return status, body, target.name
    return None


def read_back(writes: Sequence[WriteResult], targets: Sequence[Target], has_leader: bool) -> list[Readback]:
    """Read every acknowledged write: through the leader when there is one, else stale on each server."""
    reads = []
    for write in writes:
        if write.outcome != "ok":
            continue
        reads.append(_read_one(write.path, targets, has_leader))
    return reads


def _read_one(path: str, targets: Sequence[Target], has_leader: bool) -> Readback:
    if has_leader:
        answer = _read(targets, f"/v1/var/{path}", stale=False)
        if answer is not None:
            return _readback(path, answer, authoritative=True)
    missing: Readback | None = None
    for target in targets:                       # a stale read on each: any copy shows it
        answer = _read([target], f"/v1/var/{path}", stale=True)
        if answer is None:
            continue
        result = _readback(path, answer, authoritative=False)
        if result.outcome == "value":
            return result
        missing = result
    return missing or Readback(path, "unreadable", authoritative=False)


def _readback(path: str, answer: tuple[int, Any, str], *, authoritative: bool) -> Readback:
    status, body, via = answer
    if status == 404:
        return Readback(path, "missing", via=via, authoritative=authoritative)
    items = body.get("Items", {}) if isinstance(body, dict) else {}
    return Readback(path, "value", str(items.get("value", "")), via, authoritative)


def read_jobs(jobs: Sequence[JobResult], targets: Sequence[Target], has_leader: bool) -> None:
    """Fill each job's ``evals``, ``allocs``, ``found`` and ``authoritative`` from the cluster."""
    for job in jobs:
        stale = not has_leader
        evals = _read(targets, f"/v1/job/{job.id}/evaluations", stale=stale)
        allocs = _read(targets, f"/v1/job/{job.id}/allocations", stale=stale)
        if evals is None and not stale:
            stale = True
            evals = _read(targets, f"/v1/job/{job.id}/evaluations", stale=True)
            allocs = _read(targets, f"/v1/job/{job.id}/allocations", stale=True)
        job.authoritative = not stale
        if evals is None or allocs is None:
            job.found = None
            continue
        eval_list = evals[1] if evals[0] == 200 and isinstance(evals[1], list) else []
        alloc_list = allocs[1] if allocs[0] == 200 and isinstance(allocs[1], list) else []
        job.evals = [{"ID": str(e.get("ID", "")), "Status": str(e.get("Status", ""))} for e in eval_list]
        job.allocs = [{"ID": str(a.get("ID", "")), "Name": str(a.get("Name", "")),
                       "ClientStatus": str(a.get("ClientStatus", "")),
                       "DesiredStatus": str(a.get("DesiredStatus", ""))} for a in alloc_list]
        job.found = bool(job.evals)


def jobs_settled(jobs: Sequence[JobResult]) -> bool:
    """Whether every job read has all evaluations terminal and its allocations finished placing."""
    return all(not any(job_problems(job)[:2]) for job in jobs)


def read_leader_logs(logs: dict[str, str], started_wall: float,
                     not_before: float | None) -> list[LeaderClaim]:
    """Leadership lines of each server's log file (``{server: path}``).

    ``not_before`` (epoch seconds: when the cluster was made) leaves out lines of an
    earlier cluster that wrote to the same files.
    """
    claims: list[LeaderClaim] = []
    for server, path in sorted(logs.items()):
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        claims += leader_claims_from_log(text, server, started_wall, not_before=not_before)
    return claims
