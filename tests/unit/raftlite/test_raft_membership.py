"""RaftCore membership changes, one server at a time (Ongaro's thesis chapter 4)."""

from __future__ import annotations

import pytest

from raftlite import (AppendEntriesResponse, ConfigChangeInProgress, NotLeader, RaftError,
                      Role, Suffrage, UnknownServer)

from raft_helpers import Network, address_of

SEEDS = [1, 2, 3]


@pytest.fixture(params=SEEDS, ids=lambda s: f"seed{s}")
def seed(request: pytest.FixtureRequest) -> int:
    print(f"seed={request.param}")
    return request.param


def settled(net: Network) -> str:
    """Elect a leader and let its NOOP commit, so configuration changes are allowed."""
    leader = net.elect()
    net.run(0.3)
    return leader


def test_add_nonvoter_catches_up_a_server_that_knows_no_configuration(seed: int) -> None:
    """A new server with empty state accepts AppendEntries from a leader it does not
    know, and learns the whole log, configuration included."""
    net = Network(seed=seed)
    leader = settled(net)
    net.propose(leader, b"a", b"b")
    net.add_node("n4")
    index = net.core(leader).add_nonvoter("n4", address_of("n4"), net.now)
    net.collect(leader)
    net.run(0.5)
    new = net.nodes["n4"]
    assert new.core.commit_index >= index
    assert new.commands() == [b"a", b"b"]
    assert new.core.configuration.get("n4").suffrage is Suffrage.NONVOTER
    assert new.core.leader_id == leader


def test_nonvoter_never_campaigns_nor_counts(seed: int) -> None:
    """Non-voters replicate but never campaign, and their acknowledgements do not commit."""
    net = Network(["n1", "n2", "n3", "n4"], seed=seed, nonvoters=["n4"])
    leader = settled(net)
    assert leader != "n4"
    voters = sorted(set(net.nodes) - {leader, "n4"})
    net.partition([leader, "n4"], voters)
    commit = net.core(leader).commit_index
    net.core(leader).propose(b"x", net.now)
    net.collect(leader)
    net.pump()
    assert net.core("n4").last_index == net.core(leader).last_index   # replicated...
    assert net.core(leader).commit_index == commit                    # ...not committed
    net.heal()
    net.isolate("n4")
    net.run(10.0)
    counters = net.core("n4").stats().counters
    assert counters.get("pre_votes_started", 0) == 0
    assert counters.get("elections_started", 0) == 0


def test_promote_makes_a_nonvoter_count(seed: int) -> None:
    """After promotion the server is a voter: the leader needs it when others are gone."""
    net = Network(["n1", "n2", "n3", "n4"], seed=seed, nonvoters=["n4"])
    leader = settled(net)
    net.core(leader).promote("n4", net.now)
    net.collect(leader)
    net.run(0.3)
    for node in net.nodes.values():
        assert node.core.configuration.get("n4").suffrage is Suffrage.VOTER
    # Four voters: quorum is three; with one voter cut off, n4's ack is needed.
    other = sorted(set(net.nodes) - {leader, "n4"})[0]
    net.isolate(other)
    [index] = net.propose(leader, b"y")
    assert net.core(leader).commit_index >= index


def test_add_voter_grows_a_single_server_cluster(seed: int) -> None:
    """A configuration takes effect when appended: adding a second voter to a one-voter
    cluster needs that voter to store the change before it commits."""
    net = Network(["n1"], seed=seed)
    settled(net)
    net.add_node("n2")
    net.blocked |= {("n1", "n2"), ("n2", "n1")}
    index = net.core("n1").add_voter("n2", address_of("n2"), net.now)
    net.collect("n1")
    net.pump()
    assert net.core("n1").configuration.voters() == ("n1", "n2")
    assert net.core("n1").commit_index < index
    net.heal()
    net.run(0.5)
    assert net.core("n1").commit_index >= index
    assert net.core("n2").configuration.voters() == ("n1", "n2")
    [value] = net.propose("n1", b"v")
    net.run(0.2)
    assert net.nodes["n2"].commands() == [b"v"]


def test_one_change_at_a_time(seed: int) -> None:
    """A second change is refused (ConfigChangeInProgress) while one is uncommitted."""
    net = Network(seed=seed)
    leader = settled(net)
    net.isolate(leader)
    core = net.core(leader)
    core.add_nonvoter("n4", address_of("n4"), net.now)
    with pytest.raises(ConfigChangeInProgress):
        core.add_nonvoter("n5", address_of("n5"), net.now)
    assert core.configuration.get("n5") is None


def test_no_change_before_the_leader_commits_its_own_term() -> None:
    """A new leader refuses changes until an entry of its term is committed."""
    net = Network(seed=1)
    net.intercept = lambda s, send: (None if isinstance(send.message, AppendEntriesResponse)
                                     else send)
    leader = net.elect()
    with pytest.raises(ConfigChangeInProgress):
        net.core(leader).add_voter("n4", address_of("n4"), net.now)


def test_changes_need_the_leader_and_known_servers() -> None:
    """Followers raise NotLeader; unknown servers raise UnknownServer; renaming onto an
    existing id raises RaftError; nothing changes."""
    net = Network(seed=1)
    leader = settled(net)
    follower = sorted(set(net.nodes) - {leader})[0]
    with pytest.raises(NotLeader) as info:
        net.core(follower).remove_server("n3", net.now)
    assert info.value.leader_id == leader
    core = net.core(leader)
    for call in (lambda: core.promote("zz", net.now), lambda: core.remove_server("zz", net.now),
                 lambda: core.rename_server("zz", "yy", net.now)):
        with pytest.raises(UnknownServer):
            call()
    with pytest.raises(RaftError):
        core.rename_server("n2", "n3", net.now)
    assert core.configuration_index == 1


def test_removed_follower_stops_campaigning(seed: int) -> None:
    """A server removed from the configuration learns it and never campaigns again."""
    net = Network(seed=seed)
    leader = settled(net)
    removed = sorted(set(net.nodes) - {leader})[0]
    index = net.core(leader).remove_server(removed, net.now)
    net.collect(leader)
    net.run(0.3)
    assert net.core(leader).commit_index >= index
    assert net.core(removed).configuration.get(removed) is None
    before = net.core(removed).stats().counters.get("pre_votes_started", 0)
    net.run(10.0)
    assert net.core(removed).stats().counters.get("pre_votes_started", 0) == before
    assert net.leaders() == [leader]


def test_removed_leader_steps_down_once_the_change_commits(seed: int) -> None:
    """Thesis 4.2.2: a leader removed from the configuration steps down once the
    configuration entry is committed, and the rest elect a new leader."""
    net = Network(seed=seed)
    leader = settled(net)
    index = net.core(leader).remove_server(leader, net.now)
    net.collect(leader)
    assert net.core(leader).role is Role.LEADER       # still leading while uncommitted
    net.pump()
    core = net.core(leader)
    assert core.commit_index >= index and core.role is Role.FOLLOWER
    elections = core.stats().counters.get("pre_votes_started", 0)
    net.run_until(lambda: any(i != leader for i in net.leaders()))
    new = [i for i in net.leaders() if i != leader][0]
    net.run(5.0)
    assert net.leaders() == [new]
    assert net.core(new).configuration.voters() == tuple(sorted(set(net.nodes) - {leader}))
    assert core.stats().counters.get("pre_votes_started", 0) == elections


def test_rename_server_keeps_address_and_suffrage(seed: int) -> None:
    """rename_server gives a server its protocol-3 id; the server, restarted with its
    old id as alias, is counted under the new id once the change is appended."""
    net = Network(seed=seed)
    leader = settled(net)
    target = sorted(set(net.nodes) - {leader})[0]
    net.restart(target, server_id=f"uuid-{target}", aliases=[target])
    net.run(0.3)
    net.core(leader).rename_server(target, f"uuid-{target}", net.now)
    net.collect(leader)
    net.run(0.3)
    server = net.core(leader).configuration.get(f"uuid-{target}")
    assert server is not None and server.address == address_of(target)
    assert server.suffrage is Suffrage.VOTER
    assert net.core(leader).configuration.get(target) is None
    assert net.core(target)._self_id == f"uuid-{target}"
    other = sorted(set(net.nodes) - {leader, target})[0]
    net.isolate(other)
    [index] = net.propose(leader, b"after-rename")
    assert net.core(leader).commit_index >= index      # the renamed voter's ack counts


def test_truncation_rolls_the_configuration_back(seed: int) -> None:
    """A configuration entry cut from the log stops being in force (thesis 4.1)."""
    net = Network(seed=seed)
    leader = settled(net)
    net.isolate(leader)
    core = net.core(leader)
    core.add_nonvoter("n9", "10.0.0.9:4647", net.now)
    net.collect(leader)
    assert core.configuration.get("n9") is not None
    net.run_until(lambda: any(i != leader for i in net.leaders()))
    new = [i for i in net.leaders() if i != leader][0]
    net.propose(new, b"x")
    net.heal()
    net.run(2.0)
    assert core.configuration.get("n9") is None
    assert core.configuration_index == 1
    assert core.raft_log.entries() == net.core(new).raft_log.entries()


def test_configuration_views_follow_commit(seed: int) -> None:
    """configuration is the latest entry; committed_configuration waits for the commit."""
    net = Network(seed=seed)
    leader = settled(net)
    net.isolate(leader)
    core = net.core(leader)
    index = core.add_nonvoter("n4", address_of("n4"), net.now)
    assert core.configuration_index == index
    assert core.configuration.get("n4") is not None
    assert core.committed_configuration.get("n4") is None
    net.heal()
    net.run(0.3)
    assert core.role is Role.LEADER
    assert core.committed_configuration.get("n4") is not None
