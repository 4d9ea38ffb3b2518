"""A simulation is a pure function of its seed: same seed, same trace."""

from __future__ import annotations

from pathlib import Path

from agent.sim import Params, run_scenario

ROOT = Path(__file__).resolve().parents[2]


def test_same_seed_gives_identical_trace(sim_seed: int) -> None:
    """Two runs of one seed (joins, a kill, a leave, a partition) produce the same trace."""
    params = Params(scenario="all", nodes=16, seed=sim_seed, loss=0.1, dup=0.02,
                    partition_time=20.0)
    print(f"seed={sim_seed} replay: {params.replay_command()}")
    first = run_scenario(params)
    second = run_scenario(params)
    assert first.ok, first.report()
    assert len(first.sim.trace) > 1000
    assert first.sim.trace.lines() == second.sim.trace.lines()
    assert first.sim.trace.digest() == second.sim.trace.digest()


def test_other_seed_gives_other_trace(sim_seed: int) -> None:
    """A different seed changes the run (so the identity above is not vacuous)."""
    params = Params(scenario="join", nodes=8, seed=sim_seed)
    other = Params(scenario="join", nodes=8, seed=sim_seed + 1)
    print(f"seed={sim_seed} replay: {params.replay_command()}")
    assert run_scenario(params).sim.trace.digest() != run_scenario(other).sim.trace.digest()


def test_replay_command_reproduces_the_run_in_a_fresh_process(sim_seed: int) -> None:
    """The printed replay command gives the same trace digest in new processes, whatever
    their hash seed (set iteration order must never reach an output)."""
    import os
    import re
    import subprocess
    import sys
    params = Params(scenario="all", nodes=12, seed=sim_seed, partition_time=15.0)
    command = params.replay_command().split()
    assert command[:3] == ["python", "-m", "agent.sim"]
    print(f"seed={sim_seed} replay: {params.replay_command()}")
    expected = run_scenario(params).sim.trace.digest()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        done = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True,
                              text=True, timeout=120, check=False, cwd=ROOT)
        assert done.stdout.startswith(f"seed={sim_seed}\n"), done.stdout + done.stderr
        assert re.search(rf"trace_digest={expected}\b", done.stdout), done.stdout + done.stderr
