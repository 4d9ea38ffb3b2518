"""The simulator's own machinery on small clusters: processes, faults as data, trace."""

from __future__ import annotations

import re

import pytest

from agent.sim import FaultPlan, Partition, ProcessFault, ProcessState, Simulator
from gossip.messages import MemberStatus

ALIVE, FAILED = MemberStatus.ALIVE, MemberStatus.FAILED


def start_cluster(sim: Simulator, n: int) -> list[str]:
    """Start n nodes 0.1 s apart, each joining n1, and wait until all see all alive."""
    names = [f"n{i}" for i in range(1, n + 1)]
    for index, name in enumerate(names):
        sim.at(index * 0.1, _start, sim, name, [] if index == 0 else ["n1"])
    sim.run_until(n * 0.1)
    converged = sim.run_until_true(lambda: everyone_sees(sim, names, ALIVE), sim.now + 30.0)
    assert converged is not None, f"seed={sim.seed}: no convergence\n" + "\n".join(sim.trace.lines(30))
    return names


def _start(sim: Simulator, name: str, seeds: list[str]) -> None:
    sim.add_node(name)
    if seeds:
        sim.join(name, seeds, retry_interval=1.0)


def everyone_sees(sim: Simulator, subjects: list[str], status: MemberStatus,
                  observers: list[str] | None = None) -> bool:
    observers = sim.running() if observers is None else observers
    return all(sim.status_seen(o, s) is status for o in observers for s in subjects)


def test_trace_lines_name_time_nodes_and_message() -> None:
    """Trace lines read `<time> <dst><-<src> <message>` and transitions `<time> <node> <what>`."""
    sim = Simulator(7)
    start_cluster(sim, 3)
    sim.run_for(3.0)
    lines = sim.trace.lines()
    assert any(re.fullmatch(r"\d+\.\d{3} n\d<-n\d Ping n\d seq=\d+", line) for line in lines)
    assert any(re.fullmatch(r"\d+\.\d{3} n\d<-n\d Ack seq=\d+", line) for line in lines)
    assert any(line.split()[1:] == ["n1", "started", "generation=0"] for line in lines)
    assert any(line.endswith("n3 member n1 joined") for line in lines)
    assert all(float(line.split()[0]) >= 0 for line in lines)


def test_paused_node_comes_back_without_being_declared_failed() -> None:
    """A node stopped for less than the suspicion timeout is suspected at most, never failed."""
    sim = Simulator(3)
    names = start_cluster(sim, 8)
    minimum, _ = sim.config.suspicion_timeouts(8)
    sim.pause("n5")
    sim.run_for(minimum / 2)
    assert sim.process("n5").state is ProcessState.PAUSED
    sim.resume("n5")
    sim.run_for(30.0)
    assert everyone_sees(sim, names, ALIVE)
    assert not any(line.endswith("member n5 failed") for line in sim.trace.lines())


def test_killed_then_restarted_node_is_alive_again_everywhere() -> None:
    """kill -9 is reported failed; a fresh core under the same name rejoins and is alive again."""
    sim = Simulator(5, plan=FaultPlan(packet_loss_probability=0.05))
    names = start_cluster(sim, 8)
    sim.kill("n4")
    others = [n for n in names if n != "n4"]
    assert sim.run_until_true(lambda: everyone_sees(sim, ["n4"], FAILED, others), sim.now + 60) is not None
    sim.restart("n4", ["n1"], retry_interval=1.0)
    assert sim.process("n4").generation == 1
    back = sim.run_until_true(lambda: everyone_sees(sim, names, ALIVE), sim.now + 60)
    assert back is not None, "\n".join(sim.trace.lines(40))
    sim.check_members()


def test_fault_plan_process_faults_and_partitions_are_applied_at_their_times() -> None:
    """A plan's kill happens at its time, and its partition drops datagrams only while it lasts."""
    plan = FaultPlan(partitions=(Partition(5.0, 8.0, (("n1", "n2"),)),),
                     processes=(ProcessFault(10.0, "kill", "n3"),))
    sim = Simulator(11, plan=plan)
    start_cluster(sim, 4)
    sim.run_until(4.9)
    assert sim.network.cut == 0
    sim.run_until(8.0)
    cut = sim.network.cut
    assert cut > 0
    sim.run_until(9.9)
    assert sim.network.cut == cut
    assert sim.process("n3").is_running
    sim.run_until(10.0)
    assert sim.process("n3").state is ProcessState.KILLED
    assert "10.000 n3 killed" in sim.trace.lines()


def test_swarm_plan_is_a_function_of_the_seed() -> None:
    """The seed draws the same swarm plan every time, and a valid one."""
    import random
    names = [f"n{i}" for i in range(1, 11)]
    first = FaultPlan.swarm(random.Random("9/plan"), names, 60.0)
    assert first == FaultPlan.swarm(random.Random("9/plan"), names, 60.0)
    assert 0.0 <= first.packet_loss_probability <= 1.0
    assert all(p.start < p.end for p in first.partitions)


def test_a_core_reporting_itself_failed_breaks_an_invariant() -> None:
    """Invariants are checked after every event: a self-failure stops the run with the seed."""
    from agent.sim import InvariantViolation
    from gossip import events as ev
    sim = Simulator(13)
    start_cluster(sim, 2)
    proc = sim.process("n2")
    proc.core._outputs.append(ev.MemberFailed(proc.core.local_member()))  # as a buggy core would
    sim.at(sim.now, sim._after_input, proc)
    with pytest.raises(InvariantViolation, match="seed=13 .*n2 reports itself failed"):
        sim.run_for(1.0)
