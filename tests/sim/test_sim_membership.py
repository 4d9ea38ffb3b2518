"""Issue 2's simulation: 100 nodes on a lossy virtual network join, detect a kill,
see a graceful leave, and heal a partition, each within a bound from the config."""

from __future__ import annotations

from agent.sim import Params

NODES = 100
LOSS = 0.05


def membership_run(simulate, seed: int):
    return simulate(Params(scenario="join-kill-leave", nodes=NODES, seed=seed, loss=LOSS))


def test_join_converges(simulate, failure_report, sim_seed: int) -> None:
    """100 nodes joining through 3 seeds at 5% loss all list all 100 alive in bounded time."""
    result = membership_run(simulate, sim_seed)
    phase = result.phase("join")
    assert result.error is None and phase is not None and phase.ok, failure_report(result)
    assert phase.elapsed <= phase.bound


def test_killed_node_reported_failed_by_every_survivor(simulate, failure_report,
                                                        sim_seed: int) -> None:
    """A killed node is reported failed by all 99 survivors within the suspicion bound."""
    result = membership_run(simulate, sim_seed)
    phase = result.phase("kill")
    assert result.error is None and phase is not None and phase.ok, failure_report(result)
    assert len(phase.latencies) == NODES - 1, failure_report(result)
    assert max(phase.latencies.values()) <= phase.bound


def test_departed_node_reported_left_by_every_other(simulate, failure_report,
                                                     sim_seed: int) -> None:
    """A gracefully leaving node is reported left by all 98 other running nodes."""
    result = membership_run(simulate, sim_seed)
    phase = result.phase("leave")
    assert result.error is None and phase is not None and phase.ok, failure_report(result)
    assert len(phase.latencies) == NODES - 2, failure_report(result)


def test_partition_heals_and_converges(simulate, failure_report, sim_seed: int) -> None:
    """Two halves cut apart long enough to fail each other are all alive again after healing."""
    result = simulate(Params(scenario="partition", nodes=50, seed=sim_seed, loss=LOSS))
    phase = result.phase("partition")
    assert result.error is None and phase is not None and phase.ok, failure_report(result)
    # the cut really split the cluster: most of one side had failed the whole other side
    assert phase.counts["saw_far_side_failed"] >= phase.counts["side"] // 2, failure_report(result)
