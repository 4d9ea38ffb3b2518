"""Seeded Raft simulations: the paper's safety properties hold, and the checker can fail.

Each seed draws a fault plan (partitions, loss, duplicates, delays, crashes and
restarts, a pause) for a 5-server cluster of production ``RaftCore``s; every batch
of outputs is checked for election safety, log matching, leader completeness and
state machine safety, and after healing the cluster must converge. A failure
prints the seed and the replay command first. ``--sim-seeds N`` adds N random seeds
(through the ``sim_seed`` fixture of tests/sim/conftest.py).
"""

from __future__ import annotations

import pytest

from agent.sim.network import FaultPlan
from agent.sim.raft import RaftSimulation, main, run
from agent.sim.raft_checks import RaftInvariantViolation, SafetyChecker, StateMachine
from raftlite.events import Persist, RoleChanged
from raftlite.types import Configuration, Entry, EntryKind, Role, Snapshot

FIXED_SEEDS = range(50)
SERVERS = 5
DURATION = 40.0


def _check(seed: int) -> None:
    report = run(seed, SERVERS, DURATION)
    print(report.text())
    assert report.ok, report.text()
    assert report.leaders, report.text()
    assert report.converged_after is not None


@pytest.mark.parametrize("seed", FIXED_SEEDS, ids=[f"seed{s}" for s in FIXED_SEEDS])
def test_fixed_seed_keeps_raft_safety_and_converges(seed: int) -> None:
    """Under the seed's faults no safety property breaks, and after healing all converge."""
    _check(seed)


def test_random_seed_keeps_raft_safety_and_converges(sim_seed: int) -> None:
    """The same, for the suite's simulation seeds (``--sim-seeds N`` adds random ones)."""
    _check(sim_seed + 1_000_000)


def test_quiet_cluster_commits_what_the_client_proposes() -> None:
    """Without faults, through transfers and membership changes, nearly every proposal commits."""
    report = run(3, SERVERS, DURATION, plan=FaultPlan(), transfer_interval=4.0,
                 membership_interval=4.0)
    print(report.text())
    assert report.ok, report.text()
    assert report.transfers >= 1 and report.membership_changes >= 1
    assert report.accepted > 50 and report.messages_dropped == 0
    assert report.committed >= report.accepted - 2 * len(report.leaders), report.text()


def test_same_seed_gives_the_same_report() -> None:
    """A run is a pure function of its seed: two runs give equal reports and trace digests."""
    first, second = run(11, SERVERS, DURATION), run(11, SERVERS, DURATION)
    assert first == second
    assert run(12, SERVERS, DURATION) != first


def test_main_prints_seed_first_and_the_same_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m agent.sim.raft`` prints the seed first and identical output for one seed."""
    assert main(["--seed", "5", "--duration", "10"]) == 0
    first = capsys.readouterr().out
    assert main(["--seed", "5", "--duration", "10"]) == 0
    assert capsys.readouterr().out == first
    assert first.startswith("seed=5\n") and first.rstrip().endswith("OK")


def test_simulation_reports_an_injected_second_leader_with_its_seed() -> None:
    """A core claiming a term another server leads is caught, and the report names the seed."""
    sim = RaftSimulation(2, SERVERS, 10.0, plan=FaultPlan())
    sim.run_until(5.0)
    leader = next(s for s in sim.servers.values() if s.core.role == Role.LEADER)
    liar = next(s for s in sim.servers.values() if s is not leader)
    real = liar.core.take_outputs

    def take_outputs() -> list[object]:
        return [*real(), RoleChanged(Role.LEADER, leader.core.term, liar.name, liar.address)]
    liar.core.take_outputs = take_outputs
    report = sim.run()
    assert not report.ok
    assert report.violation.startswith("seed=2 replay: python -m agent.sim.raft --seed 2")
    assert "two leaders in term" in report.violation


def test_simulation_catches_a_core_that_votes_for_stale_logs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With votes granted whatever the candidate's log, some seed breaks leader completeness."""
    import raftlite.log
    monkeypatch.setattr(raftlite.log.RaftLog, "is_up_to_date", lambda self, index, term: True)
    failed = [report for report in (run(seed, SERVERS, DURATION) for seed in range(40))
              if report.violation]
    assert failed, "no seed caught a core that votes for any log"
    print(failed[0].text())
    assert "leader completeness" in "".join(r.violation for r in failed)


def test_simulation_reports_a_cluster_that_never_elects(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core that refuses every vote breaks no safety property but fails the liveness check."""
    import raftlite.log
    monkeypatch.setattr(raftlite.log.RaftLog, "is_up_to_date", lambda self, index, term: False)
    report = run(4, SERVERS, 5.0, plan=FaultPlan(), heal_bound=5.0)
    assert report.violation is None, report.text()
    assert report.liveness is not None and "0 leaders" in report.liveness
    assert report.text().startswith("seed=4 replay: python -m agent.sim.raft --seed 4")


# --- the checker on fabricated histories ---------------------------------------------

def _entry(index: int, term: int, data: bytes = b"x") -> Entry:
    return Entry(index, term, EntryKind.COMMAND, data)


def _checker(*names: str) -> SafetyChecker:
    checker = SafetyChecker("seed=99 replay: test")
    for name in names:
        checker.add_server(name)
    return checker


def test_checker_rejects_two_leaders_in_one_term() -> None:
    """Two servers reporting leadership of term 3 break election safety."""
    checker = _checker("a", "b")
    checker.role_changed("a", Role.LEADER, 3, "a")
    checker.role_changed("b", Role.FOLLOWER, 3, "a")
    with pytest.raises(RaftInvariantViolation, match="seed=99.*\n.*two leaders in term 3"):
        checker.role_changed("b", Role.LEADER, 3, "b")


def test_checker_rejects_a_follower_naming_another_leader() -> None:
    """A follower naming a different leader for a term someone leads is caught too."""
    checker = _checker("a", "b", "c")
    checker.role_changed("a", Role.LEADER, 2, "a")
    with pytest.raises(RaftInvariantViolation, match="two leaders in term 2"):
        checker.role_changed("c", Role.FOLLOWER, 2, "b")


def test_checker_rejects_logs_that_agree_on_an_entry_but_not_before_it() -> None:
    """Entry (2, term 2) after different predecessors in two logs breaks log matching."""
    checker = _checker("a", "b")
    checker.persisted("a", Persist(2, None, entries=(_entry(1, 1), _entry(2, 2))))
    with pytest.raises(RaftInvariantViolation, match="log matching: entry 2 term 2"):
        checker.persisted("b", Persist(2, None, entries=(_entry(1, 2), _entry(2, 2))))


def test_checker_rejects_two_entries_with_one_index_and_term() -> None:
    """Same index and term with different data breaks log matching."""
    checker = _checker("a", "b")
    checker.persisted("a", Persist(1, None, entries=(_entry(1, 1, b"x"),)))
    with pytest.raises(RaftInvariantViolation, match="log matching"):
        checker.persisted("b", Persist(1, None, entries=(_entry(1, 1, b"y"),)))


def test_checker_rejects_truncating_a_committed_entry() -> None:
    """A server cutting an entry a leader committed is caught (holding a stale one is not)."""
    checker = _checker("a", "b")
    checker.persisted("a", Persist(1, None, entries=(_entry(1, 1), _entry(2, 1))))
    checker.leader_committed("a", 1, 1, 2)
    checker.persisted("b", Persist(2, None, entries=(_entry(1, 1), _entry(2, 2))))  # stale: legal
    with pytest.raises(RaftInvariantViolation, match="truncates committed entry 2"):
        checker.persisted("a", Persist(2, None, truncate_from=2))


def test_checker_rejects_a_leader_without_a_committed_entry() -> None:
    """A leader of term 3 lacking an entry committed in term 1 breaks leader completeness."""
    checker = _checker("a", "b")
    checker.persisted("a", Persist(1, None, entries=(_entry(1, 1), _entry(2, 1))))
    checker.leader_committed("a", 1, 1, 2)
    checker.persisted("b", Persist(3, "b", entries=(_entry(1, 1),)))
    with pytest.raises(RaftInvariantViolation, match="leader completeness: b leads term 3"):
        checker.role_changed("b", Role.LEADER, 3, "b")


def test_checker_rejects_a_leader_lacking_an_entry_committed_after_its_election() -> None:
    """Leader completeness holds whatever the real-time order: a later commit is checked too."""
    checker = _checker("a", "b")
    checker.persisted("a", Persist(1, None, entries=(_entry(1, 1),)))
    checker.persisted("b", Persist(2, "b", entries=(_entry(1, 2),)))
    checker.role_changed("b", Role.LEADER, 2, "b")
    with pytest.raises(RaftInvariantViolation, match="leader completeness: b leads term 2"):
        checker.leader_committed("a", 1, 1, 1)


def test_checker_rejects_a_divergent_applied_entry() -> None:
    """Two servers applying different entries at index 1 break state machine safety."""
    checker = _checker("a", "b")
    one, other = StateMachine(), StateMachine()
    one.apply(_entry(1, 1, b"x"))
    other.apply(_entry(1, 1, b"y"))
    checker.applied("a", _entry(1, 1, b"x"), one.digest, 1)
    with pytest.raises(RaftInvariantViolation, match="state machine safety: b applies"):
        checker.applied("b", _entry(1, 1, b"y"), other.digest, 1)


def test_checker_rejects_an_applied_gap_and_a_restore_backwards() -> None:
    """Applying index 3 after 1, or restoring a snapshot behind the applied index, is caught."""
    checker = _checker("a")
    machine = StateMachine()
    for index in (1, 2):
        machine.apply(_entry(index, 1))
        checker.applied("a", _entry(index, 1), machine.digest, 1)
    with pytest.raises(RaftInvariantViolation, match="applies index 4 after 2"):
        checker.applied("a", _entry(4, 1), machine.digest, 1)
    with pytest.raises(RaftInvariantViolation, match="restores a snapshot at 1, behind"):
        checker.restored("a", 1, checker.digests[1])


def test_checker_accepts_a_consistent_history_with_a_snapshot() -> None:
    """A legal history (append, commit, apply, compact, new leader) passes every check."""
    checker = _checker("a", "b")
    entries = (_entry(1, 1), _entry(2, 1))
    machine = StateMachine()
    for name in ("a", "b"):
        checker.persisted(name, Persist(1, "a", entries=entries))
    checker.role_changed("a", Role.LEADER, 1, "a")
    checker.leader_committed("a", 1, 1, 2)
    for entry in entries:
        machine.apply(entry)
        checker.applied("a", entry, machine.digest, 1)
    snap = Snapshot(2, 1, Configuration(), 0, machine.snapshot())
    checker.persisted("a", Persist(1, "a", snapshot=snap, log_start=2))
    checker.persisted("b", Persist(2, "b", entries=(_entry(3, 2),)))
    checker.role_changed("b", Role.LEADER, 2, "b")
    assert checker.leaders == {1: "a", 2: "b"}
    assert checker.committed == {1: (1, 1), 2: (1, 1)}
