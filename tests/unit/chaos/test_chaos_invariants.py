"""Chaos invariants: each holds on a good record and breaks on a crafted bad one; the report files."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from agent.chaos.invariants import (BROKEN, HELD, UNKNOWN, check_all, check_availability,
                                    check_evaluations, check_leaders, check_membership,
                                    check_writes, converge_times, exit_status, leaderless_intervals)
from agent.chaos.record import (FaultEvent, JobResult, LeaderClaim, MemberSample, RaftSample,
                                Readback, Record, WriteResult, leader_claims_from_log)
from agent.chaos.report import segments, summary_text, timeline_svg, write_report

SERVERS = ["s1", "s2", "s3"]
MEMBERS = [f"{s}.global" for s in SERVERS]
STARTED = 1_700_000_000.0


def good_record() -> Record:
    """Three servers; s1 cut off from 2 s to 8 s (seen failed), healed at 8 s, all alive from 10 s."""
    record = Record(plan="unit", seed=1, started_wall=STARTED, heal_t=8.0, ended_t=14.0,
                    observers=list(SERVERS), node_of_member={m: m.split(".")[0] for m in MEMBERS},
                    live_observers=list(SERVERS), expected_alive=list(MEMBERS), final_leader="s2")
    for tick in range(29):
        t = tick * 0.5
        for observer in SERVERS:
            view = {m: "alive" for m in MEMBERS}
            if 4.0 <= t < 10.0 and observer != "s1":
                view["s1.global"] = "failed"
            record.member_samples.append(MemberSample(t, observer, view))
            state = "Leader" if (observer == "s1" and t < 3.0) or (observer == "s2" and t >= 3.5) else "Follower"
            record.raft_samples.append(RaftSample(t, observer, state, 2 if t < 3.0 else 3))
    record.leader_claims = [LeaderClaim("s1", 2, -5.0, "log"), LeaderClaim("s2", 3, 3.2, "log")]
    for seq in range(1, 11):
        outcome = "failed" if seq == 5 else "ok"
        record.writes.append(WriteResult(seq, f"chaos/r/{seq}", f"v{seq}", "s2", seq, seq + 0.1, outcome))
        if outcome == "ok":
            record.readbacks.append(Readback(f"chaos/r/{seq}", "value", f"v{seq}", "s2"))
    for k in range(1, 4):
        record.writes.append(WriteResult(k, f"chaos/r/probe-{k}", f"p{k}", "s3", 13.0, 13.1, "ok", final=True))
        record.readbacks.append(Readback(f"chaos/r/probe-{k}", "value", f"p{k}", "s3"))
    for j in range(2):
        record.jobs.append(JobResult(
            f"job-{j}", 2, j, "ok", "s1", eval_id=f"e{j}", found=True,
            evals=[{"ID": f"e{j}", "Status": "complete"}],
            allocs=[{"ID": f"a{j}{i}", "Name": f"job-{j}.work[{i}]", "ClientStatus": "complete",
                     "DesiredStatus": "run"} for i in range(2)]))
    record.faults = [FaultEvent(2.0, 2.0, "partition", "partition [s1] | [s2 s3]", True),
                     FaultEvent(8.0, 8.0, "final-heal", "final heal", True)]
    return record


def test_every_invariant_holds_on_a_good_record() -> None:
    """The good record passes all five checks; exit status 0."""
    verdicts = check_all(good_record(), converge_within=5.0)
    assert [(v.name, v.status) for v in verdicts] == [
        ("membership", HELD), ("leaders", HELD), ("writes", HELD), ("evaluations", HELD),
        ("availability", HELD)], [v.summary for v in verdicts]
    assert exit_status(verdicts) == 0
    assert verdicts[0].numbers["converged_s"] == 2.0
    assert verdicts[2].numbers == {"acked": 12, "read_back": 12, "lost": 0, "wrong": 0,
                                   "unverified": 0, "attempted": 13}
    assert verdicts[4].numbers["write_success"] == 0.9
    assert verdicts[4].numbers["longest_leaderless_s"] == 0.5


def test_two_leaders_in_one_term_break() -> None:
    """A second log line claiming term 3 (a leader the samples never saw) breaks the invariant."""
    record = good_record()
    record.leader_claims.append(LeaderClaim("s3", 3, 3.3, "log"))
    verdict = check_leaders(record)
    assert verdict.status == BROKEN and verdict.problems == ["term 3: s2, s3"]
    sampled = good_record()           # the samples alone can show it too
    sampled.raft_samples.append(RaftSample(3.6, "s1", "Leader", 3))
    assert check_leaders(sampled).status == BROKEN


def test_a_lost_or_changed_acknowledged_write_breaks() -> None:
    """A 404 through the leader is a loss; another value is a change; a failed write is not owed."""
    record = good_record()
    record.readbacks[2] = Readback("chaos/r/3", "missing", via="s2")
    record.readbacks[3] = Readback("chaos/r/4", "value", "other", "s2")
    verdict = check_writes(record)
    assert verdict.status == BROKEN and verdict.numbers["lost"] == 1 and verdict.numbers["wrong"] == 1
    assert any("chaos/r/3" in p and "gone" in p for p in verdict.problems)
    assert exit_status(check_all(record, 5.0)) == 1


def test_writes_unverifiable_without_a_leader_are_unknown() -> None:
    """Missing only in stale reads is unknown, never a loss: the down majority may hold it."""
    record = good_record()
    record.readbacks[0] = Readback("chaos/r/1", "missing", via="s3", authoritative=False)
    record.readbacks[1] = Readback("chaos/r/2", "unreadable", authoritative=False)
    verdict = check_writes(record)
    assert verdict.status == UNKNOWN and verdict.numbers["unverified"] == 2
    assert exit_status([verdict]) == 0


def test_a_doubled_allocation_breaks_even_in_a_stale_read() -> None:
    """Two live allocations with one name break the invariant; a lost-and-replaced one does not."""
    record = good_record()
    job = record.jobs[0]
    job.authoritative = False
    job.allocs.append({"ID": "dup", "Name": "job-0.work[1]", "ClientStatus": "running", "DesiredStatus": "run"})
    verdict = check_evaluations(record)
    assert verdict.status == BROKEN and "job-0: allocation job-0.work[1] placed 2 times" in verdict.problems
    replaced = good_record()
    replaced.jobs[0].allocs.append({"ID": "old", "Name": "job-0.work[1]", "ClientStatus": "lost",
                                    "DesiredStatus": "stop"})
    assert check_evaluations(replaced).status == HELD


def test_lost_evaluations_break() -> None:
    """An acknowledged job with no evaluation, too few allocations, or a pending evaluation breaks."""
    for change in ("no-evals", "short", "pending"):
        record = good_record()
        job = record.jobs[1]
        if change == "no-evals":
            job.found, job.evals, job.allocs = False, [], []
        elif change == "short":
            job.allocs.pop()
        else:
            job.evals.append({"ID": "e9", "Status": "pending"})
        verdict = check_evaluations(record)
        assert verdict.status == BROKEN, (change, verdict)
    never = good_record()             # a registration that failed and left nothing is fine
    never.jobs.append(JobResult("job-9", 2, 5.0, "failed", "s1", found=False))
    assert check_evaluations(never).status == HELD


def test_non_convergence_and_slow_convergence_break() -> None:
    """An observer still seeing a live member failed at the end breaks; so does a slow convergence."""
    record = good_record()
    for sample in record.member_samples:
        if sample.observer == "s3" and sample.t >= 12.0:
            sample.members = dict(sample.members or {}, **{"s1.global": "failed"})
    verdict = check_membership(record, 5.0)
    assert verdict.status == BROKEN and converge_times(record)["s3"] is None
    assert "s3 never saw s1.global (failed) alive" in verdict.problems[0]
    slow = check_membership(good_record(), 1.0)
    assert slow.status == BROKEN and "over the bound" in slow.summary
    flapping = good_record()          # converged, then lost again: the last streak counts
    for sample in flapping.member_samples:
        if sample.observer == "s2" and sample.t == 11.0:
            sample.members = None
    assert converge_times(flapping)["s2"] == 3.5


def test_availability_breaks_without_a_final_leader_or_with_failing_probes() -> None:
    """No leader after the settle, or a failed probe write, breaks availability."""
    record = good_record()
    record.final_leader = ""
    verdict = check_availability(record)
    assert verdict.status == BROKEN and "no leader at the end" in verdict.summary
    failing = good_record()
    failing.writes[-1].outcome = "timeout"
    assert check_availability(failing).status == BROKEN


def test_leaderless_intervals_follow_the_latest_sample_of_each_server() -> None:
    """A leader that stops answering stops counting; the gap runs to the end when none returns."""
    record = Record(plan="p", seed=0, started_wall=0.0, ended_t=10.0, raft_samples=[
        RaftSample(0.0, "s1", "Leader", 1), RaftSample(0.0, "s2", "Follower", 1),
        RaftSample(2.0, "s1", "unreachable"), RaftSample(3.5, "s2", "Leader", 2),
        RaftSample(6.0, "s2", "Candidate", 3)])
    assert leaderless_intervals(record) == [(2.0, 3.5), (6.0, 10.0)]


def test_leader_lines_are_read_from_text_and_json_logs() -> None:
    """hclog text and JSON lines both give claims; lines before `not_before` are skipped."""
    text = ("2023-11-14T22:13:21.000Z [INFO]  agent.server: cluster leadership acquired: term=4\n"
            "2023-11-14T22:13:25.500+0000 [INFO]  agent.server: cluster leadership lost\n"
            '{"@level":"info","@message":"cluster leadership acquired","@timestamp":'
            '"2023-11-14T22:13:30.250000Z","term":"5"}\n'
            "2023-11-14T20:00:00.000Z [INFO]  agent.server: cluster leadership acquired: term=1\n")
    claims = leader_claims_from_log(text, "s1", STARTED, not_before=STARTED - 60)
    assert [(c.term, c.t) for c in claims] == [(4, 1.0), (5, 10.25)]


def test_record_round_trips_through_json() -> None:
    """report.json's record section reads back into an equal Record."""
    record = good_record()
    assert Record.from_json(json.loads(json.dumps(record.to_json()))) == record


def test_report_files(tmp_path: Path) -> None:
    """summary.txt marks each invariant; timeline.svg is well-formed with a row per pair; JSON has the verdicts."""
    record = good_record()
    record.readbacks[0] = Readback("chaos/r/1", "missing", via="s2")
    verdicts = check_all(record, 5.0)
    paths = write_report(tmp_path / "out", record, verdicts)
    assert [p.name for p in paths] == ["report.json", "summary.txt", "timeline.svg"]
    summary = summary_text(record, verdicts)
    assert summary.startswith("chaos run 'unit' seed=1: 1 invariant broken (writes)")
    assert "✓ membership converges after the heal" in summary and "✗ no acknowledged write lost" in summary
    svg = ET.fromstring(timeline_svg(record, verdicts))
    labels = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "s1 → s2" in labels and "s3 → s3" in labels and "writes" in labels
    assert any(label and "final heal" in label for label in labels)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["exit_status"] == 1 and [v["status"] for v in report["verdicts"]][2] == BROKEN


def test_segments_merge_equal_neighbours() -> None:
    """Consecutive samples with one value make one segment that ends at the next change."""
    assert segments([(0, "a"), (1, "a"), (2, "b"), (3, "a")], 5) == [(0, 2, "a"), (2, 3, "b"), (3, 5, "a")]
