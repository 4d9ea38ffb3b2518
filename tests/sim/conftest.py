"""Seeds for the simulation tests: a fixed list, plus ``--sim-seeds N`` random ones.

Every test taking a ``sim_seed`` argument runs once per seed; the seeds are printed
in the session header and first in every failure, with the command that replays
the run (``python -m agent.sim ... --seed S``). ``--sim-seeds`` is registered in
``tests/conftest.py`` so it works from the repository root; ``SHOAL_SIM_SEEDS=N``
does the same.
"""

from __future__ import annotations

import os
import random

import pytest

from agent.sim import Params, Result, run_scenario

DEFAULT_SEEDS = (1, 2)


def _seeds(config: pytest.Config) -> list[int]:
    seeds = getattr(config, "_shoal_sim_seeds", None)
    if seeds is None:
        extra = config.getoption("--sim-seeds", default=0) or int(os.environ.get("SHOAL_SIM_SEEDS", "0"))
        chooser = random.SystemRandom()
        seeds = list(DEFAULT_SEEDS) + [chooser.randrange(2**32) for _ in range(extra)]
        config._shoal_sim_seeds = seeds  # type: ignore[attr-defined]
    return seeds


def pytest_report_header(config: pytest.Config) -> str:
    return f"simulation seeds: {' '.join(map(str, _seeds(config)))}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim_seed" in metafunc.fixturenames:
        seeds = _seeds(metafunc.config)
        metafunc.parametrize("sim_seed", seeds, ids=[f"seed{s}" for s in seeds])


_RUNS: dict[tuple[Params, int], Result] = {}


@pytest.fixture(scope="session")
def simulate():
    """Run a scenario once per session and parameter set (several tests read one run)."""
    def run(params: Params, trace_limit: int = 20_000) -> Result:
        key = (params, trace_limit)
        if key not in _RUNS:
            _RUNS[key] = run_scenario(params, trace_limit=trace_limit)
        result = _RUNS[key]
        print(f"seed={params.seed} replay: {params.replay_command()}")
        print(f"real time {result.real_seconds:.1f}s for {result.sim.now:.1f} virtual s")
        return result
    return run


@pytest.fixture(scope="session")
def failure_report():
    """What a failing simulation test prints: seed and replay first, then the run."""
    def report(result: Result, last: int = 40) -> str:
        return "\n".join([result.report(), f"--- last {last} trace lines ---",
                          *result.sim.trace.lines(last)])
    return report
