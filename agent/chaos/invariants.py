"""The invariants a chaos run is judged by, as pure functions of its ``Record``.

Theory of operation. Each checker reads the record and returns a ``Verdict``: ``held``,
``broken``, or ``unknown`` when the facts needed were out of reach (no leader at the
end, so nothing could be read through one). ``unknown`` never hides a violation that
was seen: a doubled allocation seen in a stale read is broken, because stale state is
still committed state.

1. **Membership converges** (``membership``): after the final heal, every server that
   runs at the end sees every gossip member that runs at the end as ``alive``, within
   ``bounds.converge_within`` seconds, and keeps seeing so until observation stops. An
   observer converges at its first sample after the heal from which all its later
   samples are all-alive; the cluster converges when the last observer has.
2. **At most one leader per term** (``leaders``): the agents' logs ("cluster leadership
   acquired term=N", one line per win, so a leader that lasted less than a sampling
   interval is still counted) and every sample that said Leader, grouped by term.
3. **No acknowledged write lost** (``writes``): every write that was answered 200 reads
   back with its value at the end. A 404 from a read through the leader is a loss; a
   write that could only be looked for in stale reads (no leader) and was not found
   there is unverified, because a majority that is down still holds it.
4. **No evaluation lost or doubled** (``evaluations``): every job whose registration
   was acknowledged has evaluations, all terminal (complete, failed or canceled), and
   exactly its count of allocations with distinct names, not counting allocations
   replaced because their node was lost or that the scheduler stopped. A job whose
   registration failed is checked the same way when the cluster has it anyway.
5. **Availability** (``availability``): the fraction of workload writes acknowledged
   and the longest interval in which no server said it was leader, reported always;
   broken only when, after the final heal and the settle, no leader exists or the
   probe writes still fail.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

from .record import TERMINAL_EVAL_STATUSES, JobResult, Record, sample_claims

__all__ = ["BROKEN", "HELD", "UNKNOWN", "Verdict", "check_all", "check_availability",
           "check_evaluations", "check_leaders", "check_membership", "check_writes",
           "converge_times", "job_problems", "leaderless_intervals", "exit_status"]

HELD, BROKEN, UNKNOWN = "held", "broken", "unknown"
MAX_PROBLEMS = 20
"""Problems listed per verdict (the count is always complete)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one invariant."""
    name: str                                   # membership | leaders | writes | evaluations | availability
    title: str                                  # the invariant in words
    status: str                                 # held | broken | unknown
    summary: str                                # one line with the numbers
    numbers: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def check_all(record: Record, converge_within: float) -> list[Verdict]:
    """Every invariant, in the order of the summary."""
    return [check_membership(record, converge_within), check_leaders(record),
            check_writes(record), check_evaluations(record), check_availability(record)]


def exit_status(verdicts: Sequence[Verdict]) -> int:
    """1 when an invariant broke, else 0 (``unknown`` is not a break)."""
    return 1 if any(v.status == BROKEN for v in verdicts) else 0


# --- 1. membership ---------------------------------------------------------------------------


def converge_times(record: Record) -> dict[str, float | None]:
    """Per live observer: seconds from the final heal until its view stayed all-alive (None: never)."""
    expected = set(record.expected_alive)
    by_observer: dict[str, list[Any]] = defaultdict(list)
    for sample in record.member_samples:
        if sample.t >= record.heal_t:
            by_observer[sample.observer].append(sample)
    times: dict[str, float | None] = {}
    for observer in record.live_observers:
        samples = sorted(by_observer.get(observer, []), key=lambda s: s.t)
        since: float | None = None
        for sample in samples:
            good = sample.members is not None and all(sample.members.get(m) == "alive" for m in expected)
            if not good:
                since = None
            elif since is None:
                since = sample.t
        times[observer] = None if since is None else round(max(since - record.heal_t, 0.0), 3)
    return times


def check_membership(record: Record, converge_within: float) -> Verdict:
    """Invariant 1: every live server sees every live member alive within the bound."""
    title = "membership converges after the heal"
    times = converge_times(record)
    numbers: dict[str, Any] = {"bound_s": converge_within, "per_observer_s": times,
                               "expected_alive": sorted(record.expected_alive)}
    if not record.live_observers:
        return Verdict("membership", title, UNKNOWN, "no server runs at the end to ask", numbers)
    never = sorted(o for o, t in times.items() if t is None)
    problems = [f"{o} never saw {_missing_text(record, o)} alive after the heal" for o in never]
    worst = max((t for t in times.values() if t is not None), default=None)
    numbers["converged_s"] = None if never else worst
    if never:
        return Verdict("membership", title, BROKEN,
                       f"{len(never)} of {len(times)} servers not converged after "
                       f"{record.ended_t - record.heal_t:.1f}s", numbers, problems[:MAX_PROBLEMS])
    assert worst is not None
    n = len(record.expected_alive)
    if worst > converge_within:
        return Verdict("membership", title, BROKEN,
                       f"converged in {worst:.1f}s, over the bound of {converge_within:g}s", numbers,
                       [f"{o} took {t:.1f}s" for o, t in sorted(times.items()) if t and t > converge_within])
    return Verdict("membership", title, HELD,
                   f"{_count(len(times), 'server')} saw all {_count(n, 'live member')} alive "
                   f"{worst:.1f}s after the heal "
                   f"(bound {converge_within:g}s)", numbers)


def _missing_text(record: Record, observer: str) -> str:
    last = [s for s in record.member_samples if s.observer == observer]
    if not last:
        return "anything (no sample)"
    view = max(last, key=lambda s: s.t).members
    if view is None:
        return "anything (it did not answer at the end)"
    missing = sorted(f"{m} ({view.get(m, 'absent')})" for m in record.expected_alive if view.get(m) != "alive")
    return ", ".join(missing) or "everyone (flapping)"


# --- 2. leaders ------------------------------------------------------------------------------


def check_leaders(record: Record) -> Verdict:
    """Invariant 2: no term has two leaders, by the logs and by the samples."""
    title = "at most one leader per term"
    claims = list(record.leader_claims) + sample_claims(record.raft_samples)
    leaders: dict[int, set[str]] = defaultdict(set)
    for claim in claims:
        leaders[claim.term].add(claim.server)
    doubled = {term: sorted(servers) for term, servers in sorted(leaders.items()) if len(servers) > 1}
    from_logs = sum(1 for c in record.leader_claims if c.source == "log")
    numbers = {"terms": len(leaders), "log_lines": from_logs,
               "leader_of_term": {str(t): sorted(s) for t, s in sorted(leaders.items())}}
    if doubled:
        problems = [f"term {t}: {', '.join(s)}" for t, s in doubled.items()]
        return Verdict("leaders", title, BROKEN, f"{len(doubled)} terms had two or more leaders",
                       numbers, problems[:MAX_PROBLEMS])
    return Verdict("leaders", title, HELD,
                   f"{_count(len(leaders), 'term')} with a leader, one each "
                   f"({_count(from_logs, 'log line')})", numbers)


# --- 3. writes -------------------------------------------------------------------------------


def check_writes(record: Record) -> Verdict:
    """Invariant 3: every acknowledged write reads back with its value."""
    title = "no acknowledged write lost"
    acked = [w for w in record.writes if w.outcome == "ok"]
    reads = {r.path: r for r in record.readbacks}
    lost, wrong, unverified, good = [], [], [], 0
    for write in acked:
        read = reads.get(write.path)
        if read is None or read.outcome == "unreadable" or (read.outcome == "missing" and not read.authoritative):
            unverified.append(write.path)
        elif read.outcome == "missing":
            lost.append(f"{write.path} (acked at t={write.ended:.1f}s via {write.via}) is gone")
        elif read.value != write.value:
            wrong.append(f"{write.path} reads {read.value!r}, acked {write.value!r}")
        else:
            good += 1
    numbers = {"acked": len(acked), "read_back": good, "lost": len(lost), "wrong": len(wrong),
               "unverified": len(unverified), "attempted": len(record.writes)}
    if lost or wrong:
        return Verdict("writes", title, BROKEN,
                       f"{len(lost)} lost and {len(wrong)} changed of {len(acked)} acknowledged",
                       numbers, (lost + wrong)[:MAX_PROBLEMS])
    if unverified:
        return Verdict("writes", title, UNKNOWN,
                       f"{good} of {len(acked)} read back; {len(unverified)} unverifiable without a leader",
                       numbers, [f"{p} not found in stale reads" for p in unverified][:MAX_PROBLEMS])
    return Verdict("writes", title, HELD, f"{good} of {len(acked)} acknowledged writes read back", numbers)


# --- 4. evaluations ---------------------------------------------------------------------------


def check_evaluations(record: Record) -> Verdict:
    """Invariant 4: each job's evaluations terminal, its allocations exactly its count."""
    title = "no evaluation lost or doubled"
    broken: list[str] = []
    unknown: list[str] = []
    checked = failed_evals = 0
    for job in record.jobs:
        problems, doubts, failed = job_problems(job)
        failed_evals += failed
        if problems or doubts or job.found:
            checked += 1
        broken += problems
        unknown += doubts
    acked = sum(1 for j in record.jobs if j.outcome == "ok")
    numbers = {"jobs": len(record.jobs), "acked": acked, "checked": checked,
               "failed_evals": failed_evals, "problems": len(broken), "unverified": len(unknown)}
    if broken:
        return Verdict("evaluations", title, BROKEN, f"{len(broken)} problems in {len(record.jobs)} jobs",
                       numbers, broken[:MAX_PROBLEMS])
    if unknown:
        return Verdict("evaluations", title, UNKNOWN,
                       f"{len(unknown)} of {len(record.jobs)} jobs could not be confirmed without a leader",
                       numbers, unknown[:MAX_PROBLEMS])
    return Verdict("evaluations", title, HELD,
                   f"{acked} of {_count(len(record.jobs), 'job')} acknowledged; {checked} in the "
                   f"cluster, each placed exactly once with terminal evaluations "
                   f"({_count(failed_evals, 'failed evaluation')})", numbers)


def job_problems(job: JobResult) -> tuple[list[str], list[str], int]:
    """(violations seen, things that could not be confirmed, failed evaluations) of one job."""
    failed = sum(1 for e in job.evals if e.get("Status") == "failed")
    if job.found is None:
        return [], ([f"{job.id}: not read at the end"] if job.outcome == "ok" else []), failed
    if not job.found:
        if job.outcome != "ok":
            return [], [], failed                  # never registered: nothing to check
        if job.authoritative:
            return [f"{job.id}: acknowledged (eval {job.eval_id}) but has no evaluation"], [], failed
        return [], [f"{job.id}: not in stale state"], failed
    active = [a for a in job.allocs if a.get("ClientStatus") != "lost"
              and a.get("DesiredStatus", "run") == "run"]
    names = Counter(a.get("Name", "") for a in active)
    doubled = sorted(name for name, n in names.items() if n > 1)
    problems = [f"{job.id}: allocation {name} placed {names[name]} times" for name in doubled]
    doubts: list[str] = []
    note = problems if job.authoritative else doubts
    if len(active) > job.count and not doubled:
        problems.append(f"{job.id}: {len(active)} allocations for a count of {job.count}")
    elif len(active) < job.count:
        note.append(f"{job.id}: {len(active)} allocations for a count of {job.count}")
    pending = sorted(e.get("ID", "")[:8] + "=" + e.get("Status", "") for e in job.evals
                     if e.get("Status") not in TERMINAL_EVAL_STATUSES)
    if pending:
        note.append(f"{job.id}: evaluations not terminal: {', '.join(pending)}")
    return problems, doubts, failed


# --- 5. availability --------------------------------------------------------------------------


def leaderless_intervals(record: Record) -> list[tuple[float, float]]:
    """Intervals in which no server's latest sample said Leader, from the first sample on."""
    samples = sorted(record.raft_samples, key=lambda s: s.t)
    if not samples:
        return []
    latest: dict[str, str] = {}
    intervals: list[tuple[float, float]] = []
    start: float | None = None
    for sample in samples:
        latest[sample.server] = sample.state
        led = any(state == "Leader" for state in latest.values())
        if not led and start is None:
            start = sample.t
        elif led and start is not None:
            intervals.append((start, sample.t))
            start = None
    if start is not None:
        intervals.append((start, max(record.ended_t, samples[-1].t)))
    return intervals


def check_availability(record: Record) -> Verdict:
    """Invariant 5: a leader and working writes once the faults are healed."""
    title = "available after the heal"
    workload = [w for w in record.writes if not w.final]
    probes = [w for w in record.writes if w.final]
    ok = sum(1 for w in workload if w.outcome == "ok")
    intervals = leaderless_intervals(record)
    longest = max((end - start for start, end in intervals), default=0.0)
    numbers = {"writes": len(workload), "writes_ok": ok,
               "write_success": round(ok / len(workload), 4) if workload else None,
               "longest_leaderless_s": round(longest, 3), "leaderless_intervals": len(intervals),
               "leader_at_end": record.final_leader,
               "probes": len(probes), "probes_ok": sum(1 for w in probes if w.outcome == "ok")}
    share = f"{ok}/{len(workload)} writes acknowledged ({_percent(ok, len(workload))})"
    gap = f"longest leaderless {longest:.1f}s"
    problems = []
    if not record.final_leader:
        problems.append("no leader after the final heal and the settle")
    problems += [f"probe write {w.path} via {w.via}: {w.outcome} {w.error}".rstrip()
                 for w in probes if w.outcome != "ok"]
    if not probes and record.final_leader:
        problems.append("no probe write was made after the settle")
    if problems:
        return Verdict("availability", title, BROKEN, f"{share}, {gap}; "
                       + ("no leader at the end" if not record.final_leader else "probe writes failed"),
                       numbers, problems[:MAX_PROBLEMS])
    return Verdict("availability", title, HELD,
                   f"{share}, {gap}, leader {record.final_leader} at the end", numbers)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _percent(part: int, whole: int) -> str:
    return "no writes" if whole == 0 else f"{100.0 * part / whole:.1f}%"

