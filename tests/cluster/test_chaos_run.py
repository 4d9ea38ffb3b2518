"""`shoal chaos run` on a real cluster made by `shoal cluster up -servers 3 -clients 1`.

One cluster, two plans: a server partitioned for a few seconds and healed passes every
invariant (exit 0); killing two of the three servers reports availability broken (exit
1) while the safety invariants still hold. The cluster is stopped with `shoal cluster
down` in a `finally`, then any agent of its cluster file still running is killed by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from harness import PYTHON, REPO, kill_cluster_leftovers

pytestmark = pytest.mark.cluster

SEED = 11
UP_READY_TIMEOUT = 120.0
"""`shoal cluster up -timeout`: generous, the machine may be loaded by the full suite."""
RUN_TIMEOUT = 180.0

PARTITION_PLAN = {
    "name": "test-partition",
    "steps": [{"at": 1.0, "do": "partition", "groups": [["s3"], ["*"]]},
              {"at": 4.0, "do": "heal"}],
    "workload": {"writes_per_second": 4, "jobs": 3, "job_duration": 0.5},
    "settle": 45.0,
    "bounds": {"converge_within": 40.0},
}

MAJORITY_PLAN = {
    "name": "test-kill-majority",
    "steps": [{"at": 1.0, "do": "kill", "pick": "random-server"},
              {"at": 1.5, "do": "kill", "pick": "random-server"}],
    "workload": {"writes_per_second": 4, "jobs": 2, "job_duration": 0.5},
    "settle": 3.0,
    "bounds": {"converge_within": 20.0},
}


def _shoal(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`shoal ARGS` as `python -m agent ARGS` from the repository."""
    return subprocess.run([PYTHON, "-m", "agent", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONUNBUFFERED="1"))


@pytest.fixture
def chaos_cluster() -> Iterator[Path]:
    """3 servers and 1 client in a fresh folder; `down` and a PID sweep at teardown."""
    directory = Path(tempfile.mkdtemp(prefix="shoal-chaos-"))
    try:
        up = _shoal("cluster", "up", "-servers", "3", "-clients", "1", "-seed", str(SEED),
                    "-timeout", str(int(UP_READY_TIMEOUT)), "-dir", str(directory),
                    timeout=UP_READY_TIMEOUT + 60)
        assert up.returncode == 0, f"cluster up exited {up.returncode}\n{up.stdout}\n{up.stderr}"
        yield directory
    finally:
        try:
            _shoal("cluster", "down", "-dir", str(directory), timeout=60)
        finally:
            leftovers = kill_cluster_leftovers(directory)
            shutil.rmtree(directory, ignore_errors=True)
            assert not leftovers, f"`shoal cluster down` left agents running: pids {leftovers}"


def _run_plan(directory: Path, plan: dict[str, Any], *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    path = directory / f"{plan['name']}.json"
    path.write_text(json.dumps(plan))
    out = directory / "reports" / plan["name"]
    done = _shoal("chaos", "run", str(path), "-seed", str(SEED), "-dir", str(directory), "-out", str(out),
                  *extra, timeout=RUN_TIMEOUT)
    print(f"--- shoal chaos run {plan['name']} (exit {done.returncode}) ---\n{done.stdout}\n{done.stderr}")
    return done, out


def _statuses(out: Path) -> dict[str, str]:
    report = json.loads((out / "report.json").read_text())
    return {v["name"]: v["status"] for v in report["verdicts"]}


def test_partition_heal_passes_and_killing_a_majority_breaks_availability(chaos_cluster: Path) -> None:
    """A healed partition keeps every invariant (exit 0); 2 of 3 servers killed is reported (exit 1)."""
    dry = [_run_plan(chaos_cluster, MAJORITY_PLAN, "-dry-run")[0] for _ in range(2)]
    assert dry[0].returncode == 0 and dry[0].stdout == dry[1].stdout, "same seed, same timeline"

    done, out = _run_plan(chaos_cluster, PARTITION_PLAN)
    assert done.returncode == 0, "the partition plan broke an invariant"
    assert done.stdout.startswith(f"chaos plan 'test-partition' seed={SEED}")
    assert "partition [s3] | [c1 s1 s2]" in done.stdout
    assert done.stdout.count("✓ ") == 5
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "summary.txt", "timeline.svg"]
    assert set(_statuses(out).values()) == {"held"}

    done, out = _run_plan(chaos_cluster, MAJORITY_PLAN)
    assert done.returncode == 1, "killing a majority must be reported"
    statuses = _statuses(out)
    assert statuses["availability"] == "broken"
    assert "✗ available after the heal" in done.stdout and "no leader at the end" in done.stdout
    assert statuses["leaders"] == "held" and statuses["membership"] == "held"
    assert statuses["writes"] != "broken" and statuses["evaluations"] != "broken", statuses
