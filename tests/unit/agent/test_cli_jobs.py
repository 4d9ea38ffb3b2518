"""`shoal job run|status|stop` and `shoal node status`: requests sent, output printed, errors."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest

from agent import cli_cluster, cli_jobs

NOW = 1_700_000_000 * 10**9
JOB = {"ID": "web", "Name": "web", "Namespace": "default", "Type": "service",
       "Datacenters": ["dc1", "dc2"], "Priority": 50, "Status": "running", "Stop": False,
       "TaskGroups": [{"Name": "app", "Count": 2, "Resources": {"CPU": 200, "MemoryMB": 128},
                       "Duration": 0}],
       "SubmitTime": NOW - 65 * 10**9}
ALLOCS = [{"ID": "a1b2c3d4-aaaa", "EvalID": "e1e2e3e4-eeee", "NodeID": "n1n2n3n4-nnnn",
           "TaskGroup": "app", "DesiredStatus": "run", "ClientStatus": "running",
           "Resources": {"CPU": 200, "MemoryMB": 128}, "CreateIndex": 12,
           "CreateTime": NOW - 65 * 10**9, "ModifyTime": NOW - 5 * 10**9},
          {"ID": "f9f8f7f6-ffff", "EvalID": "e1e2e3e4-eeee", "NodeID": "n1n2n3n4-nnnn",
           "TaskGroup": "app", "DesiredStatus": "run", "ClientStatus": "pending",
           "Resources": {"CPU": 200, "MemoryMB": 128}, "CreateIndex": 13,
           "CreateTime": NOW - 3 * 10**9, "ModifyTime": NOW - 3 * 10**9}]
EVAL = {"ID": "e1e2e3e4-eeee", "JobID": "web", "Namespace": "default", "Status": "pending",
        "TriggeredBy": "job-register", "CreateIndex": 11, "QueuedAllocations": {}}
NODE = {"ID": "n1n2n3n4-nnnn", "Name": "client-1", "Datacenter": "dc1", "NodeClass": "",
        "NodePool": "default", "Drain": False, "SchedulingEligibility": "eligible",
        "Status": "ready", "HTTPAddr": "127.0.0.1:4656",
        "NodeResources": {"CPU": 4000, "MemoryMB": 8192}}
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)")


class FakeAgent:
    """Stands in for the HTTP helper: records each request, answers from a queue."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, str, list[tuple[str, str]], Any]] = []
        self.sleeps = 0
        monkeypatch.setattr(cli_jobs, "http_request", self.request)
        monkeypatch.setattr(cli_jobs, "_sleep", self.sleep)
        monkeypatch.setattr(cli_jobs, "_now_ns", lambda: NOW)
        monkeypatch.delenv("SHOAL_ADDR", raising=False)

    def request(self, address: str, method: str, path: str, query: Any = (),
                body: bytes | None = None) -> tuple[int, bytes]:
        assert address == "http://127.0.0.1:4646"
        self.requests.append((method, path, list(query), json.loads(body) if body else None))
        status, answer = self.answers.pop(0)
        return status, answer if isinstance(answer, bytes) else json.dumps(answer).encode()

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1


def unstamped(text: str) -> list[str]:
    return [STAMP.sub("T", line) for line in text.splitlines()]


def job_file(tmp_path: Path, content: Any) -> str:
    path = tmp_path / "job.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


# --- job run ------------------------------------------------------------------------------


def test_job_run_detach_wraps_a_bare_job(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    """-detach PUTs {"Job": ...} and prints the evaluation ID without watching it."""
    agent = FakeAgent(monkeypatch, (200, {"EvalID": "e1e2e3e4-eeee", "Index": 12}))
    bare = {"ID": "web", "TaskGroups": [{"Name": "app"}]}
    assert cli_jobs.job_run(["-detach", job_file(tmp_path, bare)]) == 0
    assert agent.requests == [("PUT", "/v1/jobs", [], {"Job": bare})]
    assert capsys.readouterr().out == "Job registration successful\nEvaluation ID: e1e2e3e4-eeee\n"


def test_job_run_monitors_until_complete(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    """Without -detach the evaluation is polled; status changes and new allocs are printed once."""
    complete = dict(EVAL, Status="complete")
    agent = FakeAgent(monkeypatch, (200, {"EvalID": EVAL["ID"]}),
                      (404, b"eval not found"),
                      (200, EVAL), (200, ALLOCS[:1]),
                      (200, complete), (200, ALLOCS + [dict(ALLOCS[0], ID="other", EvalID="x")]))
    assert cli_jobs.job_run([job_file(tmp_path, {"Job": JOB})]) == 0
    assert unstamped(capsys.readouterr().out) == [
        '==> T: Monitoring evaluation "e1e2e3e4"',
        '    T: Evaluation triggered by job "web"',
        '    T: Allocation "a1b2c3d4" created: node "n1n2n3n4", group "app"',
        '    T: Evaluation status changed: "pending" -> "complete"',
        '    T: Allocation "f9f8f7f6" created: node "n1n2n3n4", group "app"',
        '==> T: Evaluation "e1e2e3e4" finished with status "complete"']
    assert [r[1] for r in agent.requests[1:3]] == ["/v1/evaluation/e1e2e3e4-eeee"] * 2
    assert agent.requests[3][1:3] == ("/v1/job/web/allocations", [("namespace", "default")])
    assert agent.sleeps == 2


def test_job_run_reports_unplaced_allocations(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    """A complete evaluation with queued allocations names them and the blocked eval; exit 2."""
    done = dict(EVAL, Status="complete", QueuedAllocations={"app": 1, "db": 0},
                BlockedEval="b0b1b2b3-bbbb")
    FakeAgent(monkeypatch, (200, {"EvalID": EVAL["ID"]}), (200, done), (200, []))
    assert cli_jobs.job_run([job_file(tmp_path, {"Job": JOB})]) == 2
    assert unstamped(capsys.readouterr().out)[-3:] == [
        '==> T: Evaluation "e1e2e3e4" finished with status "complete" but failed to place '
        'all allocations:',
        '    Task Group "app" (failed to place 1 allocation)',
        '    Evaluation "b0b1b2b3" waiting for additional capacity to place remainder']


def test_job_run_failed_evaluation_exits_2(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    """A failed evaluation prints its status and description and exits 2."""
    failed = dict(EVAL, Status="failed", StatusDescription="maximum attempts reached (3)")
    FakeAgent(monkeypatch, (200, {"EvalID": EVAL["ID"]}), (200, failed), (200, []))
    assert cli_jobs.job_run(["-verbose", job_file(tmp_path, JOB)]) == 2
    assert unstamped(capsys.readouterr().out)[-1] == (
        '==> T: Evaluation "e1e2e3e4-eeee" finished with status "failed": '
        'maximum attempts reached (3)')


def test_job_run_gives_up_after_the_poll_limit(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    """An evaluation that never finishes ends the monitor with one error line and exit 1."""
    monkeypatch.setattr(cli_jobs, "MONITOR_POLLS", 2)
    FakeAgent(monkeypatch, (200, {"EvalID": EVAL["ID"]}), (200, EVAL), (200, []),
              (200, EVAL), (200, []))
    assert cli_jobs.job_run([job_file(tmp_path, JOB)]) == 1
    assert capsys.readouterr().err == (
        'Error monitoring evaluation "e1e2e3e4-eeee": still "pending" after 1s\n')


def test_job_run_api_error_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The server's 400 reason is shown on one stderr line with Nomad's prefix."""
    FakeAgent(monkeypatch, (400, b"TaskGroups[0].Count: can't be negative, got -1"))
    assert cli_jobs.job_run([job_file(tmp_path, JOB)]) == 1
    assert capsys.readouterr().err == ("Error submitting job: Unexpected response code: 400 "
                                       "(TaskGroups[0].Count: can't be negative, got -1)\n")


@pytest.mark.parametrize(("argv", "message"), [
    ([], "This command takes one argument: <path>"),
    (["a.json", "b.json"], "This command takes one argument: <path>"),
    (["/nonexistent/job.json"], "Error reading job file from /nonexistent/job.json: "
                                "No such file or directory"),
    (["-bogus", "x.json"], "unrecognized arguments"),
])
def test_job_run_argument_errors(monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str],
                                 argv: list[str], message: str) -> None:
    """Missing, extra or unreadable files and unknown flags exit 1 with one line, sending nothing."""
    agent = FakeAgent(monkeypatch)
    assert cli_jobs.job_run(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert agent.requests == []


def test_job_run_refuses_a_file_that_is_not_json(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    """A job file that is not JSON (HCL, say) is refused locally on one line."""
    agent = FakeAgent(monkeypatch)
    path = job_file(tmp_path, 'job "web" {\n}\n')
    assert cli_jobs.job_run([path]) == 1
    assert capsys.readouterr().err == (f"Error getting job struct: Error parsing job file from "
                                       f"{path}: Expecting value: line 1 column 1 (char 0)\n")
    assert agent.requests == []


# --- job status ---------------------------------------------------------------------------


def test_format_jobs_table() -> None:
    """The job list has Nomad's columns; a stopped job reads "dead (stopped)"."""
    jobs = [dict(JOB, SubmitTime=1_661_267_677 * 10**9),
            dict(JOB, ID="batch-1", Type="batch", Priority=70, Status="dead", Stop=True,
                 SubmitTime=0)]
    utc = datetime.timezone.utc
    stamp = cli_cluster.format_time(1_661_267_677 * 10**9)
    assert cli_jobs.format_jobs(jobs).splitlines() == [
        "ID       Type     Priority  Status          Submit Date",
        f"web      service  50        running         {stamp}",
        "batch-1  batch    70        dead (stopped)  "]
    assert cli_cluster.format_time(1_661_267_677 * 10**9, utc) == "2022-08-23T15:14:37Z"


def test_job_status_lists_jobs_or_says_none(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Without an ID: the job table, or Nomad's "No running jobs"."""
    agent = FakeAgent(monkeypatch, (200, [JOB]), (200, []))
    assert cli_jobs.job_status([]) == 0
    assert cli_jobs.job_status(["-namespace", "prod"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ID   Type     Priority  Status   Submit Date") and out[-1] == "No running jobs"
    assert agent.requests == [("GET", "/v1/jobs", [], None),
                              ("GET", "/v1/jobs", [("namespace", "prod")], None)]


def test_format_job_detail() -> None:
    """One job: the key = value block, the summary by client status, the allocations."""
    evals = [dict(EVAL, QueuedAllocations={"app": 3}, CreateIndex=5),
             dict(EVAL, QueuedAllocations={"app": 1}, CreateIndex=9)]
    text = cli_jobs.format_job(dict(JOB, SubmitTime=0), ALLOCS, evals, NOW)
    assert text.splitlines() == [
        "ID            = web",
        "Name          = web",
        "Submit Date   = ",
        "Type          = service",
        "Priority      = 50",
        "Datacenters   = dc1,dc2",
        "Namespace     = default",
        "Status        = running",
        "Periodic      = false",
        "Parameterized = false",
        "",
        "Summary",
        "Task Group  Queued  Starting  Running  Failed  Complete  Lost  Unknown",
        "app         1       1         1        0       0         0     0",
        "",
        "Allocations",
        "ID        Node ID   Task Group  Desired  Status   Created   Modified",
        "f9f8f7f6  n1n2n3n4  app         run      pending  3s ago    3s ago",
        "a1b2c3d4  n1n2n3n4  app         run      running  1m5s ago  5s ago"]
    assert cli_jobs.format_job(JOB, [], [], NOW).endswith("Allocations\nNo allocations placed")


def test_job_status_with_id_falls_back_to_prefix(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown ID is looked up as a prefix; one match is shown with its allocations."""
    agent = FakeAgent(monkeypatch, (404, b"job not found"), (200, [JOB]), (200, JOB),
                      (200, ALLOCS), (200, [EVAL]))
    assert cli_jobs.job_status(["we"]) == 0
    assert [r[:3] for r in agent.requests] == [
        ("GET", "/v1/job/we", []), ("GET", "/v1/jobs", [("prefix", "we")]),
        ("GET", "/v1/job/web", []),
        ("GET", "/v1/job/web/allocations", [("namespace", "default")]),
        ("GET", "/v1/job/web/evaluations", [("namespace", "default")])]
    assert "ID            = web" in capsys.readouterr().out


@pytest.mark.parametrize(("matches", "message"), [
    ([], 'No job(s) with prefix or ID "w" found\n'),
    ([JOB, dict(JOB, ID="worker")], "Prefix matched multiple jobs: web, worker\n"),
])
def test_job_status_prefix_errors(monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str],
                                  matches: list, message: str) -> None:
    """No match or several matches are one-line errors with exit 1."""
    FakeAgent(monkeypatch, (404, b"job not found"), (200, matches))
    assert cli_jobs.job_status(["w"]) == 1
    assert capsys.readouterr().err == message


def test_job_status_argument_and_api_errors(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Two IDs are a usage error; a 500 from the agent is one line with its text."""
    FakeAgent(monkeypatch, (500, b"no servers"))
    assert cli_jobs.job_status(["a", "b"]) == 1
    assert "takes either no arguments or one" in capsys.readouterr().err
    assert cli_jobs.job_status([]) == 1
    assert capsys.readouterr().err == ("Error querying jobs: Unexpected response code: 500 "
                                       "(no servers)\n")


# --- job stop -----------------------------------------------------------------------------


def test_job_stop_detach_and_purge(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """stop -purge -detach DELETEs with purge=true in the job's namespace and prints the eval ID."""
    agent = FakeAgent(monkeypatch, (200, dict(JOB, Namespace="prod")),
                      (200, {"EvalID": "e5e6e7e8-0000", "Index": 20}))
    assert cli_jobs.job_stop(["-purge", "-detach", "-namespace=prod", "web"]) == 0
    assert agent.requests == [
        ("GET", "/v1/job/web", [("namespace", "prod")], None),
        ("DELETE", "/v1/job/web", [("namespace", "prod"), ("purge", "true")], None)]
    assert capsys.readouterr().out == "e5e6e7e8-0000\n"


def test_job_stop_monitors(monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """Without -detach, stop watches the deregister evaluation."""
    stop_eval = dict(EVAL, ID="e5e6e7e8-0000", Status="complete", TriggeredBy="job-deregister")
    FakeAgent(monkeypatch, (200, JOB), (200, {"EvalID": stop_eval["ID"]}), (200, stop_eval),
              (200, []))
    assert cli_jobs.job_stop(["web"]) == 0
    assert unstamped(capsys.readouterr().out) == [
        '==> T: Monitoring evaluation "e5e6e7e8"', '    T: Evaluation triggered by job "web"',
        '==> T: Evaluation "e5e6e7e8" finished with status "complete"']


def test_job_stop_errors(monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    """No ID is a usage error; an unknown job is Nomad's "No job(s)" line; a DELETE error shows."""
    agent = FakeAgent(monkeypatch, (404, b"job not found"), (200, []), (200, JOB),
                      (500, b"No cluster leader"))
    assert cli_jobs.job_stop([]) == 1
    assert "takes one argument" in capsys.readouterr().err
    assert cli_jobs.job_stop(["nope"]) == 1
    assert capsys.readouterr().err == 'No job(s) with prefix or ID "nope" found\n'
    assert cli_jobs.job_stop(["web"]) == 1
    assert capsys.readouterr().err == ("Error deregistering job: Unexpected response code: 500 "
                                       "(No cluster leader)\n")
    assert len(agent.requests) == 4


# --- node status --------------------------------------------------------------------------


def test_format_nodes_table() -> None:
    """Nomad's node columns; short IDs unless verbose; an empty class is <none>."""
    assert cli_jobs.format_nodes([NODE]).splitlines() == [
        "ID        Node Pool  DC   Name      Class   Drain  Eligibility  Status",
        "n1n2n3n4  default    dc1  client-1  <none>  false  eligible     ready"]
    assert cli_jobs.format_nodes([NODE], verbose=True).splitlines()[1].startswith("n1n2n3n4-nnnn ")


def test_node_status_list_and_detail(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Without an ID the table (nothing when empty); with one the details, resources and allocs."""
    stopped = dict(ALLOCS[0], ID="s0s1s2s3", DesiredStatus="stop", ClientStatus="complete")
    agent = FakeAgent(monkeypatch, (200, [NODE]), (200, []), (200, NODE),
                      (200, ALLOCS + [stopped]))
    assert cli_jobs.node_status([]) == 0
    assert cli_jobs.node_status([]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert cli_jobs.node_status(["n1n2"]) == 0
    assert agent.requests[2:] == [("GET", "/v1/node/n1n2", [], None),
                                  ("GET", "/v1/node/n1n2n3n4-nnnn/allocations", [], None)]
    out = capsys.readouterr().out.splitlines()
    assert out[:9] == ["ID           = n1n2n3n4", "Name         = client-1",
                       "Node Pool    = default", "Class        = <none>", "DC           = dc1",
                       "Drain        = false", "Eligibility  = eligible", "Status       = ready",
                       "HTTP Address = 127.0.0.1:4656"]
    assert out[10:13] == ["Allocated Resources", "CPU           Memory",
                          "400/4000 MHz  256 MiB/8192 MiB"]
    assert out[14] == "Allocations" and len(out) == 19


def test_node_status_errors(monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown node is Nomad's one-line "No node(s)"; two IDs are a usage error."""
    FakeAgent(monkeypatch, (404, b"node not found"))
    assert cli_jobs.node_status(["zz"]) == 1
    assert capsys.readouterr().err == 'No node(s) with prefix "zz" found\n'
    assert cli_jobs.node_status(["a", "b"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize(("seconds_ago", "text"), [
    (0, "0s ago"), (5, "5s ago"), (65, "1m5s ago"), (3605, "1h0m ago"), (90000, "1d1h ago"),
    (-30, "30s from now"), (366 * 86400, "1y1d ago")])
def test_pretty_time_diff(seconds_ago: int, text: str) -> None:
    """Nomad's prettyTimeDiff keeps the two largest units."""
    assert cli_jobs.pretty_time_diff(NOW - seconds_ago * 10**9, NOW) == text


def test_pretty_time_diff_of_zero_is_empty() -> None:
    """A zero timestamp prints nothing rather than the epoch."""
    assert cli_jobs.pretty_time_diff(0, NOW) == ""
