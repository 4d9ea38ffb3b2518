"""`shoal sim`: same arguments and seed give the same bytes; each flag shows in the output.

The determinism test runs `python -m agent sim` twice in fresh interpreters (so hash
randomisation and import order differ) and compares stdout byte for byte. The flag
tests call `run_sim_command` in-process on small clusters to stay fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.sim.cli import parse_groups, run_sim_command
from agent.config import UsageError

ROOT = Path(__file__).resolve().parents[2]


def shoal(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m agent sim ARGS`; the result's `args` holds the child's pid."""
    proc = subprocess.Popen([sys.executable, "-m", "agent", "sim", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.pid, proc.returncode, out, err)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_sim_command(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_same_seed_same_bytes_across_processes() -> None:
    """Two processes, same flags: identical stdout; no real time or pid in it."""
    args = ("--nodes", "12", "--seed", "3", "--loss", "0.02", "--kill", "1", "--servers", "3",
            "--partition", "n1-n6", "--partition-time", "25")
    first, second = shoal(*args), shoal(*args)
    assert first.stdout == second.stdout, (first.stdout.decode(), second.stdout.decode())
    text = first.stdout.decode()
    assert "real time" not in text
    assert f"={first.args}" not in text and f" {first.args} " not in text  # no pid
    assert "real time" in first.stderr.decode()  # wall time goes to stderr only
    for heading in ("join:", "kill:", "partition at", "heal at", "raft: 3 servers", "timeline"):
        assert heading in text, text


def test_seed_and_profile_change_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    """Another seed or profile gives another run; --duration and --join-window show too."""
    _, one, _ = run(capsys, "--nodes", "8", "--seed", "1", "--duration", "10")
    _, two, _ = run(capsys, "--nodes", "8", "--seed", "2", "--duration", "10")
    _, wan, _ = run(capsys, "--nodes", "8", "--seed", "1", "--duration", "10", "--profile", "wan")
    digest = lambda text: text.split("trace_digest=")[1].split()[0]  # noqa: E731
    assert len({digest(one), digest(two), digest(wan)}) == 3
    assert "profile=wan" in wan and "seed=2" in two
    assert "now=10.0 " in one  # --duration runs exactly that long
    _, short, _ = run(capsys, "--nodes", "8", "--seed", "1", "--duration", "10", "--join-window", "1")
    started = lambda text: float(text.split("start over ")[1].split("s")[0])  # noqa: E731
    assert started(short) <= 1.0 < started(one)


def test_loss_kill_and_duration(capsys: pytest.CaptureFixture[str]) -> None:
    """--loss drops datagrams; --kill K gives suspect and failed timelines for K victims."""
    code, out, err = run(capsys, "--nodes", "10", "--seed", "4", "--loss", "0.1", "--kill", "2",
                         "--progress")
    assert code == 0, out + err
    assert "progress virtual=" in err and "progress" not in out  # --progress: stderr only
    assert "loss=0.1 " in out and "lost=0 " not in out
    assert out.count(" suspect ") == 2 and out.count(" failed ") == 2
    assert "kill: 2 node(s) killed" in out and "8 survivors" in out
    assert out.rstrip().endswith("OK")


def test_partition_and_heal_timelines(capsys: pytest.CaptureFixture[str]) -> None:
    """Each side of a partition sees the other failed; after the heal all are alive again."""
    code, out, err = run(capsys, "--nodes", "10", "--seed", "6", "--partition", "1-4|5-7",
                         "--partition-time", "40")
    assert code == 0, out + err
    assert "partition at" in out and "into 3 groups for 40s" in out
    for side in ("n1-n4", "n5-n7", "n8-n10"):
        assert f"{side} saw the others failed" in out
    assert "saw all 10 running alive" in out and "re-converged" in out


def test_servers_elect_and_reelect(capsys: pytest.CaptureFixture[str]) -> None:
    """--servers runs Raft: first leader, and a new one after the leader's node is killed."""
    code, out, err = run(capsys, "--nodes", "6", "--seed", "2", "--servers", "3", "--kill", "1",
                         "--json")
    assert code == 0, out + err
    report = json.loads(out)
    raft = report["raft"]
    assert raft["leaders"] and raft["elections"] >= 1
    killed = [text for _, text in report["events"] if "(raft leader)" in text]
    assert len(killed) == 1
    kill_time = next(t for t, text in report["events"] if "(raft leader)" in text)
    assert any(leader["time"] > kill_time for leader in raft["leaders"])
    assert {c["label"].split()[1] for c in report["curves"] if c["label"].startswith("marked")} \
        == {killed[0].split()[1]}


def test_plot_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--plot draws a PNG when matplotlib is installed."""
    pytest.importorskip("matplotlib")
    path = tmp_path / "sim.png"
    code, _, err = run(capsys, "--nodes", "6", "--seed", "1", "--kill", "1", "--servers", "3",
                       "--plot", str(path))
    assert code == 0, err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(tmp_path: Path) -> None:
    """Without matplotlib, --plot fails at once with one line naming the extra."""
    fake = tmp_path / "matplotlib"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    result = shoal("--nodes", "4", "--seed", "1", "--plot", str(tmp_path / "x.png"), env=env)
    assert result.returncode == 1 and result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "shoal[plot]" in lines[0], lines
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--nodes", "0", "--seed", "1"], "--nodes"),
    (["--nodes", "5"], "--seed"),
    (["--nodes", "5", "--seed", "1", "--loss", "1.5"], "--loss"),
    (["--nodes", "5", "--seed", "1", "--kill", "5"], "--kill"),
    (["--nodes", "5", "--seed", "1", "--servers", "6"], "--servers"),
    (["--nodes", "5", "--seed", "1", "--partition", "n9"], "outside"),
    (["--nodes", "5", "--seed", "1", "--partition", "n1|n1"], "two groups"),
    (["--nodes", "5", "--seed", "1", "--profile", "moon"], "--profile"),
    (["--nodes", "5", "--seed", "1", "--plot", "out.svg"], "PNG"),
    (["--nodes", "5", "--seed", "1", "--bogus"], "--bogus"),
])
def test_bad_input_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str], args: list[str],
                                          message: str) -> None:
    """Bad flags: exit 1 as every shoal verb, one line on stderr, nothing on stdout."""
    code, out, err = run(capsys, *args)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_parse_groups() -> None:
    """Groups by `|`, members by `,`; ranges with or without the n; everyone listed is refused."""
    assert parse_groups("n1-n3,5|4", 6) == (("n1", "n2", "n3", "n5"), ("n4",))
    with pytest.raises(UsageError):
        parse_groups("1-4", 4)
    with pytest.raises(UsageError):
        parse_groups("n1||n2", 4)
