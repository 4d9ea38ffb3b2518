"""What a chaos run observed, as plain data: the input of the invariants and the report.

Theory of operation. The runner (``run.py``) and its samplers (``observe.py``) append
facts to a ``Record`` while the faults happen; nothing here does I/O, so the invariant
checkers and the report writer can be tested on records made by hand, and a report's
``record`` section can be read back (``Record.from_json``) and checked again.

Times are seconds since the run started (the first action's ``t=0``), taken from one
monotonic clock by the runner. Agent logs carry wall-clock times; ``started_wall`` (epoch
seconds at ``t=0``) converts them. Observers are node names (``s1``), members are gossip
member names (``s1.global``); ``node_of_member`` maps one to the other for display.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable

__all__ = ["FaultEvent", "JobResult", "LeaderClaim", "MemberSample", "RaftSample", "Readback",
           "Record", "WriteResult", "leader_claims_from_log", "sample_claims",
           "TERMINAL_EVAL_STATUSES"]

TERMINAL_EVAL_STATUSES = ("complete", "failed", "canceled")


@dataclass(slots=True)
class MemberSample:
    """One observer's member list at time ``t``; ``members`` None when it did not answer."""
    t: float
    observer: str
    members: dict[str, str] | None     # member name -> alive | suspect | failed | left


@dataclass(slots=True)
class RaftSample:
    """One server's raft state at time ``t`` (``state`` "unreachable" when it did not answer)."""
    t: float
    server: str
    state: str                          # Leader | Follower | Candidate | unreachable
    term: int = 0
    leader: str = ""                    # the raft address it follows ("" when none)


@dataclass(slots=True)
class LeaderClaim:
    """A server that led ``term``: from its log (authoritative) or from a sample."""
    server: str
    term: int
    t: float | None                     # None when the log line's time could not be read
    source: str                         # "log" | "sample"


@dataclass(slots=True)
class WriteResult:
    """One variable write of the workload: acknowledged ("ok") or not."""
    seq: int
    path: str
    value: str
    via: str                            # the node whose HTTP API took the request
    started: float
    ended: float
    outcome: str                        # ok | failed | timeout
    error: str = ""
    final: bool = False                 # one of the probes written after the settle


@dataclass(slots=True)
class Readback:
    """What reading an acknowledged write back at the end gave."""
    path: str
    outcome: str                        # value | missing | unreadable
    value: str = ""
    via: str = ""
    authoritative: bool = True          # read through a leader (else a stale read, or none)


@dataclass(slots=True)
class JobResult:
    """One submitted batch job and what the cluster holds for it at the end."""
    id: str
    count: int
    submitted: float
    outcome: str                        # ok | failed | timeout (of the registration)
    via: str = ""
    eval_id: str = ""
    error: str = ""
    found: bool | None = None           # whether the final read found any evaluation (None: no read)
    authoritative: bool = True          # the final read went through a leader
    evals: list[dict[str, str]] = field(default_factory=list)    # {"ID", "Status"}
    allocs: list[dict[str, str]] = field(default_factory=list)   # {"ID", "Name", "ClientStatus", "DesiredStatus"}


@dataclass(slots=True)
class FaultEvent:
    """A timeline action as it ran."""
    t: float
    at: float                           # its planned time
    do: str
    description: str                    # "kill s2", with picks resolved
    ok: bool
    error: str = ""
    node: str = ""                      # the node it was aimed at, once resolved


@dataclass(slots=True)
class Record:
    """Everything one chaos run observed."""
    plan: str
    seed: int
    started_wall: float                 # epoch seconds at t=0
    heal_t: float = 0.0                 # when the final heal ran
    ended_t: float = 0.0                # when observation stopped
    observers: list[str] = field(default_factory=list)        # every server node, sorted
    node_of_member: dict[str, str] = field(default_factory=dict)
    live_observers: list[str] = field(default_factory=list)   # servers running at the end
    expected_alive: list[str] = field(default_factory=list)   # members running at the end
    final_leader: str = ""              # the leader found after the settle ("" = none)
    timeline: list[str] = field(default_factory=list)         # the printed timeline, line by line
    faults: list[FaultEvent] = field(default_factory=list)
    member_samples: list[MemberSample] = field(default_factory=list)
    raft_samples: list[RaftSample] = field(default_factory=list)
    leader_claims: list[LeaderClaim] = field(default_factory=list)
    writes: list[WriteResult] = field(default_factory=list)
    readbacks: list[Readback] = field(default_factory=list)
    jobs: list[JobResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data (the ``record`` section of report.json)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        """Read back what ``to_json`` gave."""
        kinds = {"faults": FaultEvent, "member_samples": MemberSample, "raft_samples": RaftSample,
                 "leader_claims": LeaderClaim, "writes": WriteResult, "readbacks": Readback,
                 "jobs": JobResult}
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name in kinds:
                value = [kinds[f.name](**item) for item in value]
            values[f.name] = value
        return cls(**values)


# --- agent logs ------------------------------------------------------------------------------

_LEADER_TEXT = re.compile(r"^(\S+)\s+\[INFO\]\s.*cluster leadership acquired:? term=(\d+)")


def leader_claims_from_log(text: str, server: str, started_wall: float,
                           not_before: float | None = None) -> list[LeaderClaim]:
    """Every ``cluster leadership acquired term=N`` line of one agent's log.

    Reads hclog text lines and JSON lines (``-log-json``). Lines older than
    ``not_before`` (epoch seconds) are skipped, so a log that outlived an earlier cluster
    in the same folder does not mix its terms in.
    """
    claims: list[LeaderClaim] = []
    for line in text.splitlines():
        found = _leader_line(line)
        if found is None:
            continue
        wall, term = found
        if wall is not None and not_before is not None and wall < not_before:
            continue
        t = None if wall is None else round(wall - started_wall, 3)
        claims.append(LeaderClaim(server=server, term=term, t=t, source="log"))
    return claims


def _leader_line(line: str) -> tuple[float | None, int] | None:
    if "cluster leadership acquired" not in line:
        return None
    if line.startswith("{"):
        try:
            obj = json.loads(line)
            term = int(obj["term"])
        except (ValueError, KeyError, TypeError):
            return None
        return _wall(str(obj.get("@timestamp", ""))), term
    match = _LEADER_TEXT.match(line)
    if match is None:
        return None
    return _wall(match.group(1)), int(match.group(2))


def _wall(text: str) -> float | None:
    """Epoch seconds of an hclog time (``2024-05-01T12:00:00.123Z`` or ``...+0200``)."""
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except ValueError:
        return None


def sample_claims(samples: Iterable[RaftSample]) -> list[LeaderClaim]:
    """One claim per (server, term) a sample showed leading, at its first sighting."""
    seen: dict[tuple[str, int], LeaderClaim] = {}
    for sample in sorted(samples, key=lambda s: s.t):
        if sample.state == "Leader" and (sample.server, sample.term) not in seen:
            seen[(sample.server, sample.term)] = LeaderClaim(sample.server, sample.term, sample.t,
                                                             "sample")
    return list(seen.values())
