"""RaftCore on a small in-memory network, each test traced to a sentence of the Raft
paper (Ongaro & Ousterhout 2014) or of Ongaro's thesis, as etcd's raft_paper_test.go."""

from __future__ import annotations

import dataclasses
import logging
import random

import pytest

from raftlite import (AppendEntries, AppendEntriesResponse, Configuration, Entry, EntryKind,
                      InstallSnapshot, NotLeader, PersistentState, RaftConfig, RaftError,
                      RequestVote, RequestVoteResponse, Role, Send, Server, TimeoutNow)
from raftlite.core import RaftCore

from raft_helpers import CONFIG, Network, address_of

SEEDS = [1, 2, 3]


@pytest.fixture(params=SEEDS, ids=lambda s: f"seed{s}")
def seed(request: pytest.FixtureRequest) -> int:
    print(f"seed={request.param}")
    return request.param


# ------------------------------------------------------------------ elections (5.2)


def test_single_server_elects_itself_and_commits(seed: int) -> None:
    """A one-voter cluster elects itself after a timeout and commits alone."""
    net = Network(["n1"], seed=seed)
    leader = net.elect()
    assert leader == "n1"
    [index] = net.propose("n1", b"x")
    assert net.core("n1").commit_index == index
    assert net.nodes["n1"].commands() == [b"x"]


def test_election_one_leader_everyone_follows(seed: int) -> None:
    """'A candidate wins an election if it receives votes from a majority of the servers'
    and then 'sends heartbeat messages to all of the other servers'."""
    net = Network(seed=seed)
    leader = net.elect()
    terms = {n.core.term for n in net.nodes.values()}
    assert len(terms) == 1
    assert net.core(leader).stats().counters["leader_elected"] == 1
    # The NOOP of the new term commits everywhere (section 5.4.2 / 8).
    net.run(0.5)
    for node in net.nodes.values():
        assert node.core.commit_index == 2
        assert [e.kind for e in node.applied] == [EntryKind.CONFIGURATION, EntryKind.NOOP]


def test_follower_timeout_is_randomised_within_heartbeat_bounds() -> None:
    """Follower timeouts are drawn from [heartbeat, 2*heartbeat)."""
    for seed in range(20):
        core = RaftCore(CONFIG, server_id="n1", address="a", state=PersistentState(),
                        rng=random.Random(seed), log=logging.getLogger("t"), now=10.0)
        deadline = core.next_deadline()
        assert deadline is not None and 11.0 <= deadline < 12.0


def test_split_vote_retries_with_a_higher_term(seed: int) -> None:
    """'If many followers become candidates at the same time, votes could be split so
    that no candidate obtains a majority ... each candidate will time out and start a
    new election by incrementing its term.'"""
    net = Network(["n1", "n2", "n3", "n4"], seed=seed)
    net.cut("n1", "n4")
    net.cut("n2", "n3")
    net.cut("n1", "n2")
    for target in ("n1", "n2"):
        net.core(target).receive(TimeoutNow(term=1, source_id="x", source_address="x"), net.now)
        net.collect(target)
    net.pump()
    assert net.core("n1").role is Role.CANDIDATE and net.core("n2").role is Role.CANDIDATE
    assert net.leaders() == []
    net.heal()
    leader = net.elect()
    assert net.core(leader).term >= 3
    started = sum(n.core.stats().counters.get("elections_started", 0) for n in net.nodes.values())
    assert started >= 3


def test_vote_once_per_term_and_only_for_up_to_date_logs() -> None:
    """'Each server will vote for at most one candidate in a given term' and 'the voter
    denies its vote if its own log is more up-to-date than that of the candidate'."""
    net = Network(seed=1)
    core = net.core("n2")

    def ask(candidate: str, term: int, last_index: int, last_term: int) -> bool:
        core.receive(RequestVote(term, candidate, address_of(candidate), last_index, last_term),
                     net.now)
        answers = [o.message for o in core.take_outputs() if isinstance(o, Send)]
        return answers[-1].granted

    assert not ask("n1", 2, 0, 0)          # our log (index 1, term 1) is longer
    assert ask("n1", 2, 1, 1)
    assert not ask("n3", 2, 5, 1)          # already voted in term 2
    assert ask("n1", 2, 1, 1)              # same candidate again: still yes
    assert ask("n3", 3, 1, 1)              # new term, new vote
    assert core.voted_for == "n3" and core.term == 3


def test_vote_is_persisted_in_the_batch_that_answers() -> None:
    """A vote is only sent in a batch that also persists it (the ordering rule)."""
    net = Network(seed=1)
    core = net.core("n2")
    core.receive(RequestVote(5, "n1", address_of("n1"), 1, 1), net.now)
    outputs = core.take_outputs()
    persisted = [o for o in outputs if type(o).__name__ == "Persist"]
    assert persisted and persisted[-1].term == 5 and persisted[-1].voted_for == "n1"
    answer = [o for o in outputs if isinstance(o, Send)][0].message
    assert answer.granted and outputs.index(persisted[-1]) < outputs.index(
        [o for o in outputs if isinstance(o, Send)][0])


# ------------------------------------------------------------------ pre-vote and stickiness


def test_pre_vote_keeps_a_rejoining_server_from_deposing_the_leader(seed: int) -> None:
    """Thesis 9.6: a server partitioned away runs pre-votes that fail, its term never
    rises, and when it returns the healthy leader stays."""
    net = Network(seed=seed)
    leader = net.elect()
    term = net.core(leader).term
    loner = sorted(set(net.nodes) - {leader})[0]
    net.isolate(loner)
    net.run(10.0)
    stats = net.core(loner).stats().counters
    assert stats["pre_votes_started"] >= 2
    assert stats.get("elections_started", 0) == 0
    assert net.core(loner).term == term
    net.heal()
    net.run(3.0)
    assert net.leaders() == [leader] and net.core(leader).term == term
    assert net.core(loner).leader_id == leader


def test_sticky_voters_refuse_a_real_vote_while_a_leader_is_alive() -> None:
    """Thesis 4.2.3: a server that heard from a leader within a heartbeat timeout
    ignores RequestVote, keeping its term, unless it is a leadership transfer."""
    net = Network(seed=1)
    leader = net.elect()
    follower = sorted(set(net.nodes) - {leader})[0]
    core = net.core(follower)
    term = core.term
    core.receive(RequestVote(term + 5, "n9", "10.9.9.9:4647", 99, term), net.now)
    [answer] = [o.message for o in core.take_outputs() if isinstance(o, Send)]
    assert not answer.granted and core.term == term
    assert core.stats().counters["votes_refused_unknown"] == 1
    other = sorted(set(net.nodes) - {leader, follower})[0]
    core.receive(RequestVote(term + 1, other, address_of(other), 99, term,
                             leadership_transfer=True), net.now)
    [answer] = [o.message for o in core.take_outputs() if isinstance(o, Send)]
    assert answer.granted and core.term == term + 1


# ------------------------------------------------------------------ replication (5.3)


def test_log_matching_after_many_proposals(seed: int) -> None:
    """'If two entries in different logs have the same index and term, then the logs
    are identical in all preceding entries': every log ends equal."""
    net = Network(["n1", "n2", "n3", "n4", "n5"], seed=seed)
    leader = net.elect()
    for i in range(150):
        net.propose(leader, f"v{i}".encode())
    net.run(1.0)
    logs = {i: n.core.raft_log.entries() for i, n in net.nodes.items()}
    assert all(log == logs[leader] for log in logs.values())
    for node in net.nodes.values():
        assert node.commands() == [f"v{i}".encode() for i in range(150)]


def test_entries_are_batched_up_to_max_append_entries() -> None:
    """A lagging follower is caught up in messages of at most max_append_entries."""
    config = dataclasses.replace(CONFIG, max_append_entries=8)
    net = Network(seed=1, config=config)
    leader = net.elect()
    lagging = sorted(set(net.nodes) - {leader})[0]
    net.isolate(lagging)
    for i in range(40):
        net.propose(leader, b"x")
    net.heal()
    net.run(1.0)
    sizes = [len(m.entries) for s, t, m in net.delivered
             if s == leader and t == lagging and isinstance(m, AppendEntries)]
    assert max(sizes) == 8
    assert net.core(lagging).raft_log.entries() == net.core(leader).raft_log.entries()


def diverge(net: Network, count: int) -> tuple[str, str]:
    """Elect a leader, isolate it, let it append ``count`` entries nobody else has,
    and let the others elect a new leader that commits one entry."""
    old = net.elect()
    net.isolate(old)
    for i in range(count):
        net.core(old).propose(f"lost{i}".encode(), net.now)
        net.collect(old)
    net.pump()

    def new_leader() -> bool:
        return any(i != old for i in net.leaders())
    net.run_until(new_leader)
    new = [i for i in net.leaders() if i != old][0]
    net.propose(new, b"kept")
    net.run(0.2)
    return old, new


def test_conflicting_suffix_is_truncated(seed: int) -> None:
    """'If an existing entry conflicts with a new one (same index but different terms),
    delete the existing entry and all that follow it' (figure 2, AppendEntries 3)."""
    net = Network(seed=seed)
    old, new = diverge(net, 3)
    net.heal()
    net.run(2.0)
    assert net.core(old).raft_log.entries() == net.core(new).raft_log.entries()
    assert b"lost0" not in net.nodes[old].commands()
    assert net.nodes[old].commands() == [b"kept"]
    assert net.nodes[old].storage.load().entries == net.core(new).raft_log.entries()


def test_fast_back_off_skips_a_whole_conflicting_term(seed: int) -> None:
    """Section 5.3: with the conflicting term and its first index in the rejection,
    'one AppendEntries RPC will be required for each term with conflicting entries,
    rather than one RPC per entry'."""
    net = Network(seed=seed)
    old, first = diverge(net, 50)
    net.propose(first, *[b"new"] * 60)
    # A leader elected now believes the old server is as long as its own log (60+).
    third = sorted(set(net.nodes) - {old, first})[0]
    net.core(first).transfer_leadership(third, net.now)
    net.collect(first)
    net.pump()
    assert net.leaders() == [third]
    start = len(net.delivered)
    net.heal()
    net.run(2.0)
    rejections = [m for s, t, m in net.delivered[start:]
                  if s == old and isinstance(m, AppendEntriesResponse) and not m.success]
    # One for "your log is too short", one for the term-2 run: not one per entry.
    assert len(rejections) == 2, rejections
    assert rejections[-1].conflict_term == 2
    assert net.core(old).raft_log.entries() == net.core(third).raft_log.entries()


def test_leader_never_commits_a_previous_term_entry_by_counting(seed: int) -> None:
    """Figure 8 / section 5.4.2: 'Raft never commits log entries from previous terms by
    counting replicas. Only log entries from the leader's current term are committed
    by counting replicas'."""
    cfg = Configuration(tuple(Server(i, address_of(i)) for i in ("n1", "n2", "n3")))
    boot = Entry(1, 1, EntryKind.CONFIGURATION, cfg.encode())
    old = Entry(2, 2, EntryKind.COMMAND, b"old")
    net = Network(seed=seed, bootstrap=False)
    for node_id, log in (("n1", (boot, old)), ("n2", (boot, old)), ("n3", (boot,))):
        net.add_node(node_id, state=PersistentState(term=3, entries=log))

    def strip_entries(source: str, send: Send) -> Send | None:
        message = send.message
        if isinstance(message, AppendEntries) and message.entries:
            return dataclasses.replace(send, message=dataclasses.replace(message, entries=()))
        return send
    net.intercept = strip_entries
    net.core("n1").receive(TimeoutNow(3, "x", "x"), net.now)   # n1 campaigns at once
    net.collect("n1")
    net.pump()
    assert net.leaders() == ["n1"] and net.core("n1").term == 4
    net.run(0.5)
    progress = net.core("n1").progress()
    assert progress["n2"][0] == 2                  # 'old' is on a majority (n1, n2)...
    assert net.core("n1").commit_index == 0        # ...yet not committed
    assert all(b"old" not in n.commands() for n in net.nodes.values())
    net.intercept = None
    net.run(0.5)
    assert net.core("n1").commit_index == 3        # the NOOP commits it indirectly
    assert net.nodes["n1"].commands() == [b"old"]


def test_stale_term_append_is_answered_with_our_term() -> None:
    """'Reply false if term < currentTerm' (figure 2), carrying our term."""
    net = Network(seed=1)
    net.elect()
    core = net.core("n2")
    core.receive(AppendEntries(0, "n9", "10.9.9.9:4647", 0, 0, (), 0), net.now)
    [answer] = [o.message for o in core.take_outputs() if isinstance(o, Send)]
    assert not answer.success and answer.term == core.term
    core.receive(RequestVoteResponse(0, "n9", "x", True), net.now)
    assert core.stats().counters["messages_dropped.stale_term"] == 1


def test_malformed_append_is_dropped_and_counted() -> None:
    """Entries that do not continue prev_log_index are dropped, not applied, and counted."""
    net = Network(seed=1)
    leader = net.elect()
    core = net.core("n2" if leader != "n2" else "n3")
    term = core.term
    bad = AppendEntries(term, leader, address_of(leader), 1, 1,
                        (Entry(5, term, EntryKind.COMMAND, b""),), 0)
    core.receive(bad, net.now)
    assert core.stats().counters["messages_dropped.malformed"] == 1
    assert core.last_index == 2


# ------------------------------------------------------------------ lease


def test_isolated_leader_steps_down_after_its_lease(seed: int) -> None:
    """A leader that has not heard from a quorum within leader_lease_timeout steps down."""
    net = Network(seed=seed)
    leader = net.elect()
    net.isolate(leader)
    net.run(CONFIG.lease * 2.5)
    core = net.core(leader)
    assert core.role is Role.FOLLOWER and core.leader_id is None
    assert core.stats().counters["stepped_down_lease"] == 1
    with pytest.raises(NotLeader):
        core.propose(b"x", net.now)


def test_healthy_leader_keeps_its_lease(seed: int) -> None:
    """With its followers answering, a leader stays leader for a long time."""
    net = Network(seed=seed)
    leader = net.elect()
    term = net.core(leader).term
    net.run(20.0, dt=0.05)
    assert net.leaders() == [leader] and net.core(leader).term == term


# ------------------------------------------------------------------ restart


def test_restart_keeps_term_vote_log_and_applies_after_learning_commit(seed: int) -> None:
    """A restarted server keeps term, vote and log, applies nothing until it learns the
    commit index, then applies every committed entry again."""
    net = Network(seed=seed)
    leader = net.elect()
    net.propose(leader, b"a", b"b")
    net.run(0.5)
    before = {i: (n.core.term, n.core.voted_for, n.core.raft_log.entries())
              for i, n in net.nodes.items()}
    for node_id in sorted(net.nodes):
        net.restart(node_id)
    for node_id, node in net.nodes.items():
        core = node.core
        assert (core.term, core.voted_for, core.raft_log.entries()) == before[node_id]
        assert core.commit_index == 0 and node.applied == []
    leader = net.elect()
    net.run(0.5)
    for node in net.nodes.values():
        assert node.commands() == [b"a", b"b"]


# ------------------------------------------------------------------ snapshots (section 7)


def test_snapshot_is_asked_for_and_installed_on_a_lagging_follower(seed: int) -> None:
    """Section 7: 'the leader must occasionally send snapshots to followers that lag
    behind' once it discarded the entries they need."""
    config = dataclasses.replace(CONFIG, snapshot_threshold=10, trailing_logs=2)
    net = Network(seed=seed, config=config)
    leader = net.elect()
    lagging = sorted(set(net.nodes) - {leader})[0]
    net.isolate(lagging)
    for i in range(30):
        net.propose(leader, f"v{i}".encode())
    node = net.nodes[leader]
    assert node.snapshot_wanted, "SnapshotWanted expected past the threshold"
    applied = node.core.applied_index
    node.core.compact(applied, b"state-at-%d" % applied, net.now)
    net.collect(leader)
    assert node.core.raft_log.start == applied - 1
    assert node.storage.snapshot is not None and node.storage.snapshot.index == applied
    net.heal()
    net.run(1.0)
    follower = net.nodes[lagging]
    assert follower.core.stats().counters["snapshots_installed"] == 1
    assert [s.index for s in follower.restored] == [applied]
    assert (follower.core.last_index, follower.core.last_term) == (node.core.last_index,
                                                                  node.core.last_term)
    assert follower.storage.snapshot.data == b"state-at-%d" % applied
    net.propose(leader, b"after")
    net.run(0.3)
    assert follower.commands()[-1] == b"after"


def test_restart_from_a_snapshot_restores_it_and_starts_committed_there() -> None:
    """A core restarted from a snapshot emits Restore and starts its commit index there."""
    config = dataclasses.replace(CONFIG, snapshot_threshold=5, trailing_logs=0)
    net = Network(seed=4, config=config)
    leader = net.elect()
    net.propose(leader, *[b"x"] * 8)
    core = net.core(leader)
    core.compact(core.applied_index, b"S", net.now)
    net.collect(leader)
    snap_index = core.applied_index
    node = net.restart(leader)
    assert [s.data for s in node.restored] == [b"S"]
    assert node.core.commit_index == snap_index == node.core.applied_index
    assert node.core.last_index == snap_index and node.core.configuration.voters()
    net.elect()


def test_compact_beyond_applied_is_refused() -> None:
    """compact() only takes snapshots of what was applied."""
    net = Network(["n1"], seed=1)
    net.elect()
    with pytest.raises(RaftError):
        net.core("n1").compact(99, b"", net.now)


# ------------------------------------------------------------------ leadership transfer (thesis 3.10)


def test_leadership_transfer_to_a_lagging_target(seed: int) -> None:
    """Thesis 3.10: the leader brings the target's log up to date, sends TimeoutNow, and
    the target wins at once; proposals are refused meanwhile."""
    net = Network(seed=seed)
    leader = net.elect()
    target = sorted(set(net.nodes) - {leader})[0]
    net.cut(leader, target)
    net.propose(leader, b"a", b"b")
    net.heal()
    core = net.core(leader)
    core.transfer_leadership(target, net.now)
    with pytest.raises(NotLeader):
        core.propose(b"c", net.now)
    net.collect(leader)
    net.pump()
    assert net.leaders() == [target]
    assert net.count(TimeoutNow, source=leader, target=target) == 1
    assert net.core(target).stats().counters.get("pre_votes_started", 0) == 0
    assert net.core(target).raft_log.entries()[-3].data == b"a"


def test_leadership_transfer_to_the_most_up_to_date_voter() -> None:
    """transfer_leadership(None) picks the voter with the highest match index."""
    net = Network(["n1", "n2", "n3"], seed=2)
    leader = net.elect()
    others = sorted(set(net.nodes) - {leader})
    net.cut(leader, others[0])
    net.propose(leader, b"a")
    net.core(leader).transfer_leadership(None, net.now)
    net.collect(leader)
    net.pump()
    net.heal()
    assert net.leaders() == [others[1]]


def test_transfer_expires_after_an_election_timeout() -> None:
    """A transfer whose target never answers ends after one election timeout."""
    net = Network(seed=1)
    leader = net.elect()
    target = sorted(set(net.nodes) - {leader})[0]
    net.isolate(target)
    core = net.core(leader)
    core.transfer_leadership(target, net.now)
    net.run(CONFIG.election * 1.1)
    assert core.role is Role.LEADER
    assert core.stats().counters["transfers_timed_out"] == 1
    core.propose(b"ok", net.now)


def test_transfer_requires_leadership_and_a_voter() -> None:
    """transfer_leadership raises NotLeader off the leader and RaftError with no voter."""
    net = Network(["n1"], seed=1)
    net.elect()
    with pytest.raises(RaftError):
        net.core("n1").transfer_leadership(None, net.now)
    follower = RaftCore(CONFIG, server_id="z", address="z", state=PersistentState(),
                        rng=random.Random(1), log=logging.getLogger("t"), now=0.0)
    with pytest.raises(NotLeader):
        follower.transfer_leadership(None, 0.0)


# ------------------------------------------------------------------ aliases, shutdown, config


def test_alias_lets_a_server_find_itself_under_its_old_id(seed: int) -> None:
    """A server restarted with a new id and its old id as alias still votes, campaigns
    and speaks under the id the configuration knows it by."""
    net = Network(seed=seed)
    leader = net.elect()
    node_id = sorted(set(net.nodes) - {leader})[0]
    core = net.restart(node_id, server_id="uuid-1", aliases=[node_id]).core
    assert core._self_id == node_id and core._is_voter()
    net.isolate(leader)
    net.run_until(lambda: any(i != leader for i in net.leaders()))
    new_leader = [i for i in net.leaders() if i != leader][0]
    net.heal()
    net.propose(new_leader, b"z")
    net.run(1.0)
    assert b"z" in net.nodes[node_id].commands()
    sources = {m.source_id for s, t, m in net.delivered if s == node_id}
    assert sources == {node_id}


def test_shutdown_stops_all_outputs() -> None:
    """After shutdown the core ignores inputs and emits nothing."""
    net = Network(seed=1)
    net.elect()
    core = net.core("n1")
    core.shutdown()
    core.handle_timers(net.now + 100)
    core.receive(RequestVote(99, "n2", address_of("n2"), 9, 9), net.now)
    assert core.take_outputs() == [] and core.role is Role.SHUTDOWN
    assert core.next_deadline() is None


def test_bootstrap_twice_is_refused() -> None:
    """Bootstrap is allowed only on empty state."""
    net = Network(seed=1)
    with pytest.raises(RaftError):
        net.core("n1").bootstrap(Configuration((Server("n1", "a"),)), net.now)


def test_role_changed_reports_term_and_leader(seed: int) -> None:
    """RoleChanged is emitted whenever role, term or known leader change."""
    net = Network(seed=seed)
    leader = net.elect()
    changes = net.nodes[leader].role_changes
    assert changes[-1].role is Role.LEADER and changes[-1].leader_id == leader
    for node_id, node in net.nodes.items():
        if node_id != leader:
            assert node.role_changes[-1].leader_id == leader
            assert node.role_changes[-1].term == net.core(leader).term


def test_stats_report_gauges() -> None:
    """stats() gives counters and the log gauges."""
    net = Network(seed=1)
    leader = net.elect()
    net.propose(leader, b"a")
    stats = net.core(leader).stats()
    assert stats.role is Role.LEADER and stats.last_log_index == 3 and stats.commit_index == 3
    assert stats.applied_index == 3 and stats.configuration_index == 1


def test_config_is_validated() -> None:
    """A lease longer than the heartbeat timeout is refused at construction."""
    with pytest.raises(RaftError):
        RaftConfig(leader_lease_timeout=2.0)


def test_install_snapshot_from_stale_term_is_refused() -> None:
    """An InstallSnapshot of an older term is answered with failure and our term."""
    net = Network(seed=1)
    net.elect()
    core = net.core("n2")
    snap_cfg = Configuration((Server("n1", "a"),))
    from raftlite import Snapshot
    core.receive(InstallSnapshot(0, "n9", "x", Snapshot(50, 1, snap_cfg, 1, b"")), net.now)
    [answer] = [o.message for o in core.take_outputs() if isinstance(o, Send)]
    assert not answer.success and answer.term == core.term and core.last_index < 50


def test_entry_ack_is_emitted_with_the_persist_of_the_entries() -> None:
    """A follower acknowledges entries only in the batch that persists them."""
    net = Network(seed=1)
    leader = net.elect()
    follower = sorted(set(net.nodes) - {leader})[0]
    core = net.core(follower)
    term = core.term
    entry = Entry(core.last_index + 1, term, EntryKind.COMMAND, b"e")
    core.receive(AppendEntries(term, leader, address_of(leader), entry.index - 1,
                               core.last_term, (entry,), 0), net.now)
    outputs = core.take_outputs()
    persists = [i for i, o in enumerate(outputs) if type(o).__name__ == "Persist"
                and entry in o.entries]
    acks = [i for i, o in enumerate(outputs) if isinstance(o, Send) and o.message.success]
    assert persists and acks and persists[0] < acks[0]
    assert outputs[acks[0]].message.last_log_index == entry.index


def test_leader_heartbeats_every_tenth_of_the_heartbeat_timeout() -> None:
    """An idle leader sends each peer about ten AppendEntries per heartbeat timeout."""
    net = Network(seed=1)
    leader = net.elect()
    net.run(0.5)
    start = len(net.delivered)
    net.run(CONFIG.heartbeat, dt=0.01)
    per_peer = [sum(1 for s, t, m in net.delivered[start:]
                    if s == leader and t == peer and isinstance(m, AppendEntries))
                for peer in sorted(set(net.nodes) - {leader})]
    assert all(9 <= n <= 11 for n in per_peer), per_peer


def test_install_snapshot_keeps_matching_entries_after_it() -> None:
    """'If existing log entry has same index and term as snapshot's last included entry,
    retain log entries following it' (figure 13)."""
    cfg = Configuration(tuple(Server(i, address_of(i)) for i in ("n1", "n2")))
    log = (Entry(1, 1, EntryKind.CONFIGURATION, cfg.encode()),) + tuple(
        Entry(i, 2, EntryKind.COMMAND, b"%d" % i) for i in range(2, 11))
    core = RaftCore(CONFIG, server_id="n2", address=address_of("n2"),
                    state=PersistentState(term=2, entries=log), rng=random.Random(1),
                    log=logging.getLogger("t"), now=0.0)
    from raftlite import Persist, Restore, Snapshot
    snap = Snapshot(5, 2, cfg, 1, b"S5")
    core.receive(InstallSnapshot(2, "n1", address_of("n1"), snap), 0.1)
    outputs = core.take_outputs()
    [persist] = [o for o in outputs if isinstance(o, Persist)]
    assert persist.snapshot == snap and persist.log_start == 6 and persist.truncate_from is None
    assert Restore(snap) in outputs
    assert core.last_index == 10 and core.commit_index == 5 and core.applied_index == 5
    other = Snapshot(7, 3, cfg, 1, b"S7")
    core.receive(InstallSnapshot(3, "n1", address_of("n1"), other), 0.2)
    [persist] = [o for o in core.take_outputs() if isinstance(o, Persist) and o.snapshot]
    assert persist.truncate_from == 8 and core.last_index == 7 and core.last_term == 3


def test_snapshot_wanted_once_until_compacted() -> None:
    """SnapshotWanted is emitted once past the threshold, again only after compact()."""
    config = dataclasses.replace(CONFIG, snapshot_threshold=4, trailing_logs=0)
    net = Network(["n1"], seed=1, config=config)
    net.elect()
    net.propose("n1", *[b"x"] * 6)
    node = net.nodes["n1"]
    assert len(node.snapshot_wanted) == 1
    node.core.compact(node.core.applied_index, b"s", net.now)
    net.collect("n1")
    net.propose("n1", *[b"y"] * 5)
    assert len(node.snapshot_wanted) == 2
    assert node.commands()[-1] == b"y"
