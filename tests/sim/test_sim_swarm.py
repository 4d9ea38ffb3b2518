"""Swarm runs: the seed draws the fault plan (loss, duplicates, delays, a partition,
clogged links, a pause, a kill and restart); once the faults are over, all converge."""

from __future__ import annotations

import pytest

from agent.sim import Params, run_scenario


@pytest.mark.parametrize("variant", range(4))
def test_swarm_plan_then_convergence(sim_seed: int, variant: int) -> None:
    """Whatever plan the seed draws, every running node lists every running node alive after."""
    seed = sim_seed * 100 + variant
    params = Params(scenario="swarm", nodes=20, seed=seed)
    print(f"seed={seed} replay: {params.replay_command()}")
    result = run_scenario(params, trace_limit=20_000)
    print(result.report())
    assert result.ok, "\n".join([result.report(), *result.sim.trace.lines(40)])
    assert [p.name for p in result.phases] == ["join", "swarm"]
