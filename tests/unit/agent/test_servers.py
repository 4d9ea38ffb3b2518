"""agent/servers.py: server parsing, bootstrap planning, raft reconciliation, autopilot."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.servers import (Autopilot, AutopilotConfig, RaftChange, ServerParts, bootstrap_configuration,
                           bootstrap_plan, min_raft_version, parse_server, raft_id_for, reconcile,
                           removal_budget)
from gossip import Member, MemberStatus
from raftlite import Configuration, Server, Suffrage

VOTER, NONVOTER = Suffrage.VOTER, Suffrage.NONVOTER


# --------------------------------------------------------------------------- helpers

def tags(**overrides: str | None) -> dict[str, str]:
    base = {"role": "nomad", "region": "global", "dc": "dc1", "build": "1.3.0", "vsn": "1",
            "raft_vsn": "3", "id": "uuid-1", "rpc_addr": "10.9.9.9", "port": "4647"}
    for key, value in overrides.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def member(status: MemberStatus = MemberStatus.ALIVE, addr: str = "10.0.0.1", **tag_overrides: str | None) -> Member:
    return Member(name="s1.global", addr=addr, port=4648, tags=tags(**tag_overrides), status=status)


def srv(n: int, status: str = "alive", *, vsn: int = 3, region: str = "global", expect: int = 0,
        bootstrap: bool = False, nonvoter: bool = False) -> ServerParts:
    """Server number n: name s<n>, id uuid-<n>, raft address 10.0.0.<n>:4647."""
    return ServerParts(name=f"s{n}", id=f"uuid-{n}", region=region, datacenter="dc1",
                       addr=f"10.0.0.{n}", port=4647, rpc_addr=f"10.0.0.{n}", build="1.3.0",
                       raft_version=vsn, expect=expect, bootstrap=bootstrap, nonvoter=nonvoter,
                       status=status)


def addr(n: int) -> str:
    return f"10.0.0.{n}:4647"


def uid(n: int) -> str:
    return f"uuid-{n}"


def conf(*entries: tuple[str, str] | tuple[str, str, Suffrage]) -> Configuration:
    return Configuration(tuple(Server(*e) for e in entries))


def apply(configuration: Configuration, change: RaftChange) -> Configuration:
    """What raft does with one change; asserts the change makes sense."""
    existing = configuration.get(change.id)
    if change.op in ("add_voter", "add_nonvoter"):
        assert existing is None, change
        suffrage = VOTER if change.op == "add_voter" else NONVOTER
        return configuration.with_server(Server(change.id, change.address, suffrage))
    assert existing is not None, change
    if change.op == "remove":
        return configuration.without(change.id)
    if change.op == "promote":
        return configuration.with_server(Server(change.id, existing.address, VOTER))
    assert change.op == "rename" and configuration.get(change.new_id) is None, change
    return configuration.without(change.id).with_server(
        Server(change.new_id, existing.address, existing.suffrage))


def run_to_fixpoint(servers: list[ServerParts], configuration: Configuration, *, self_id: str,
                    reaped: tuple[str, ...] = (), limit: int = 50,
                    min_voters: int = 0) -> tuple[Configuration, list[RaftChange]]:
    """Apply reconcile's changes until it has none; every step keeps min_voters voters."""
    done: list[RaftChange] = []
    for _ in range(limit):
        changes = reconcile(servers, configuration, self_id=self_id, region="global", reaped=reaped)
        assert len(changes) <= 1
        if not changes:
            return configuration, done
        configuration = apply(configuration, changes[0])
        assert len(configuration.voters()) >= min_voters, (done, changes)
        done.append(changes[0])
    raise AssertionError(f"no fixpoint after {limit} steps: {done[-5:]}")


# --------------------------------------------------------------------------- parse_server

def test_parse_server_reads_every_tag() -> None:
    """A full set of server tags gives every ServerParts field; the raft address uses the gossip IP."""
    parts = parse_server(member(expect="3", nonvoter="1", bootstrap="1"))
    assert parts == ServerParts(name="s1.global", id="uuid-1", region="global", datacenter="dc1",
                                addr="10.0.0.1", port=4647, rpc_addr="10.9.9.9", build="1.3.0",
                                raft_version=3, expect=3, bootstrap=True, nonvoter=True, status="alive")
    assert parts.raft_address == "10.0.0.1:4647"


def test_parse_server_defaults() -> None:
    """Without id, rpc_addr, raft_vsn and expect: "unknown", the member addr, 1 and 0."""
    parts = parse_server(member(id=None, rpc_addr=None, raft_vsn=None))
    assert parts is not None
    assert (parts.id, parts.rpc_addr, parts.raft_version, parts.expect) == ("unknown", "10.0.0.1", 1, 0)
    assert (parts.bootstrap, parts.nonvoter) == (False, False)


def test_parse_server_ipv6_raft_address_is_bracketed() -> None:
    """An IPv6 gossip address is written [addr]:port, as net.JoinHostPort does."""
    parts = parse_server(member(addr="fd00::1"))
    assert parts is not None and parts.raft_address == "[fd00::1]:4647"


@pytest.mark.parametrize("status, text", [(MemberStatus.ALIVE, "alive"), (MemberStatus.LEAVING, "leaving"),
                                          (MemberStatus.LEFT, "left"), (MemberStatus.FAILED, "failed")])
def test_parse_server_status_spelling(status: MemberStatus, text: str) -> None:
    """The member status is kept as the lower-case word the HTTP API uses."""
    parts = parse_server(member(status=status))
    assert parts is not None and parts.status == text


@pytest.mark.parametrize("build", ["1.9.7", "1.10.0-dev", "0.7.0+ent", "1.10.0-beta.1", "1.9.7+ent", "1", "v1.2.3"])
def test_parse_server_accepts_version_spellings(build: str) -> None:
    """Builds in go-version's shape parse."""
    assert parse_server(member(build=build)) is not None


@pytest.mark.parametrize("overrides", [
    {"role": None}, {"role": "consul"}, {"role": "Nomad"},
    {"port": None}, {"port": "abc"}, {"port": "1_0"}, {"port": " 4647"}, {"port": "4647.0"},
    {"port": "70000"}, {"port": ""},
    {"build": None}, {"build": ""}, {"build": "abc"}, {"build": "1.9.x"}, {"build": "1..2"},
    {"expect": "three"}, {"expect": ""}, {"expect": "3.0"},
    {"raft_vsn": "three"}, {"raft_vsn": ""}, {"raft_vsn": "3 "},
])
def test_parse_server_rejections(overrides: dict[str, str | None]) -> None:
    """Each section 2.3 condition that fails makes the member a non-server."""
    assert parse_server(member(**overrides)) is None


# --------------------------------------------------------------------------- versions

def test_min_raft_version_counts_only_alive_servers() -> None:
    """Failed, leaving and left servers do not hold the cluster's version down; none alive gives 0."""
    assert min_raft_version([srv(1, vsn=3), srv(2, "failed", vsn=2), srv(3, "left", vsn=1),
                             srv(4, "leaving", vsn=2)]) == 3
    assert min_raft_version([srv(1, vsn=3), srv(2, vsn=2)]) == 2
    assert min_raft_version([srv(1, "failed", vsn=3)]) == 0
    assert min_raft_version([]) == 0


@pytest.mark.parametrize("version, expected", [(1, "10.0.0.1:4647"), (2, "10.0.0.1:4647"), (3, "uuid-1"),
                                               (4, "uuid-1")])
def test_raft_id_for(version: int, expected: str) -> None:
    """Below protocol 3 the raft id is the address; from 3 on, the node UUID."""
    assert raft_id_for(srv(1), version) == expected


# --------------------------------------------------------------------------- bootstrap

@pytest.mark.parametrize("servers, expect, action, named", [
    ([srv(1, expect=3), srv(2, expect=3), srv(3, expect=3)], 3, "bootstrap", ["s1", "s2", "s3"]),
    ([srv(1, expect=3), srv(2, expect=3)], 3, "wait", []),
    ([srv(1, expect=3), srv(2, expect=5), srv(3, expect=3)], 3, "error", []),
    ([srv(1, expect=3), srv(2), srv(3, expect=3)], 3, "bootstrap", ["s1", "s2", "s3"]),
    ([srv(1, expect=3), srv(2, bootstrap=True, expect=1), srv(3, expect=3)], 3, "error", []),
    ([srv(1, expect=3), srv(2, bootstrap=True), srv(3, expect=3)], 3, "skip", []),
    ([srv(1, expect=3), srv(2, expect=3), srv(3, expect=3, nonvoter=True)], 3, "wait", []),
    ([srv(1, expect=2), srv(2, expect=2), srv(3, expect=2, nonvoter=True)], 2, "bootstrap", ["s1", "s2", "s3"]),
    ([srv(1, expect=3), srv(2, expect=3), srv(3, expect=3, region="eu")], 3, "wait", []),
    ([srv(1, expect=3), srv(2, expect=3), srv(3, expect=5, region="eu"), srv(4, expect=3)], 3, "bootstrap",
     ["s1", "s2", "s4"]),
    ([srv(1, expect=3), srv(2, expect=3), srv(3, "failed", expect=3)], 3, "wait", []),
    ([srv(1, expect=3), srv(2, expect=3), srv(3, expect=3)], 0, "skip", []),
])
def test_bootstrap_plan(servers: list[ServerParts], expect: int, action: str, named: list[str]) -> None:
    """Section 5.2 steps 2-3: mismatched expect, bootstrap mode, too few voters, other regions."""
    plan = bootstrap_plan(servers, region="global", expect=expect)
    assert plan.action == action, plan.reason
    assert [s.name for s in plan.servers] == named
    assert plan.reason and "\n" not in plan.reason


def test_bootstrap_plan_error_names_member_and_both_values() -> None:
    """The mismatch reason names the member and both expect values."""
    plan = bootstrap_plan([srv(1, expect=3), srv(2, expect=5), srv(3, expect=3)], region="global", expect=3)
    assert plan.action == "error"
    assert "s2" in plan.reason and "5" in plan.reason and "3" in plan.reason


def test_bootstrap_plan_refuses_shared_raft_ids() -> None:
    """Two servers with the same UUID would make a broken configuration: error, not bootstrap."""
    twin = dataclasses.replace(srv(2, expect=2), id=uid(1))
    plan = bootstrap_plan([srv(1, expect=2), twin], region="global", expect=2)
    assert plan.action == "error" and "uuid-1" in plan.reason


def test_bootstrap_configuration_ids_follow_version() -> None:
    """UUID ids at protocol 3, address ids below; nonvoter-tagged servers join as non-voters."""
    servers = [srv(1), srv(2), srv(3, nonvoter=True)]
    assert bootstrap_configuration(servers, 3) == conf(
        (uid(1), addr(1)), (uid(2), addr(2)), (uid(3), addr(3), NONVOTER))
    assert bootstrap_configuration(servers[:2], 2) == conf((addr(1), addr(1)), (addr(2), addr(2)))
    with pytest.raises(ValueError):
        bootstrap_configuration([srv(1), dataclasses.replace(srv(2), id=uid(1))], 3)


# --------------------------------------------------------------------------- reconcile

FULL3 = conf((uid(1), addr(1)), (uid(2), addr(2)), (uid(3), addr(3)))


def one(servers: list[ServerParts], configuration: Configuration, self_id: str = "uuid-1",
        reaped: tuple[str, ...] = ()) -> RaftChange | None:
    changes = reconcile(servers, configuration, self_id=self_id, region="global", reaped=reaped)
    assert len(changes) <= 1
    return changes[0] if changes else None


def ops(change: RaftChange | None) -> tuple[str, str, str, str] | None:
    return None if change is None else (change.op, change.id, change.address, change.new_id)


@pytest.mark.parametrize("servers, configuration, expected", [
    # alive, absent, everyone on 3: joins as a non-voter under its UUID.
    ([srv(1), srv(2), srv(3), srv(4)], FULL3, ("add_nonvoter", uid(4), addr(4), "")),
    # alive, absent, someone still on 2: joins as a voter under its address.
    ([srv(1, vsn=2), srv(2, vsn=2), srv(4)], conf((addr(1), addr(1)), (addr(2), addr(2))),
     ("add_voter", addr(4), addr(4), "")),
    # alive and present with the same id and address: nothing.
    ([srv(1), srv(2), srv(3)], FULL3, None),
    # alive, same id at another address: remove the old entry first.
    ([srv(1), srv(2), srv(3)], conf((uid(1), addr(1)), (uid(2), addr(2)), (uid(3), "10.1.1.1:4647")),
     ("remove", uid(3), "10.1.1.1:4647", "")),
    # alive, same address under another id: remove the old entry first.
    ([srv(1), srv(2), srv(3)], conf((uid(1), addr(1)), (uid(2), addr(2)), ("uuid-old", addr(3))),
     ("remove", "uuid-old", addr(3), "")),
    # left: removed by UUID id.
    ([srv(1), srv(2), srv(3, "left")], FULL3, ("remove", uid(3), addr(3), "")),
    # left: removed by address id.
    ([srv(1, vsn=2), srv(2, vsn=2), srv(3, "left", vsn=2)],
     conf((addr(1), addr(1)), (addr(2), addr(2)), (addr(3), addr(3))), ("remove", addr(3), addr(3), "")),
    # left: an entry at its address under an unknown id goes too.
    ([srv(1), srv(2), srv(3, "left")], conf((uid(1), addr(1)), (uid(2), addr(2)), ("x", addr(3))),
     ("remove", "x", addr(3), "")),
    # failed and leaving: no raft change from reconciliation.
    ([srv(1), srv(2), srv(3, "failed")], FULL3, None),
    ([srv(1), srv(2), srv(3, "leaving")], FULL3, None),
    # other regions are ignored, alive or left.
    ([srv(1), srv(2), srv(3), srv(4, region="eu")], FULL3, None),
    ([srv(1), srv(2), srv(3, "left", region="eu")], FULL3, None),
    # at most one change, the first by member name.
    ([srv(1), srv(2), srv(3), srv(5), srv(4)], FULL3, ("add_nonvoter", uid(4), addr(4), "")),
    # everyone on 3: an address-id entry is renamed to the UUID.
    ([srv(1), srv(2), srv(3)], conf((uid(1), addr(1)), (addr(2), addr(2)), (addr(3), addr(3))),
     ("rename", addr(2), addr(2), uid(2))),
    # the leader's own address-id entry is renamed too.
    ([srv(1), srv(2), srv(3)], conf((addr(1), addr(1)), (uid(2), addr(2)), (uid(3), addr(3))),
     ("rename", addr(1), addr(1), uid(1))),
    # someone alive on 2: address ids stay, and UUID entries at the right address stay (no churn).
    ([srv(1), srv(2), srv(3, vsn=2)], conf((uid(1), addr(1)), (addr(2), addr(2)), (addr(3), addr(3))), None),
    # a failed server on 2 does not hold the rename back.
    ([srv(1), srv(2), srv(3, "failed", vsn=2)], conf((uid(1), addr(1)), (addr(2), addr(2)), (addr(3), addr(3))),
     ("rename", addr(2), addr(2), uid(2))),
])
def test_reconcile_table(servers: list[ServerParts], configuration: Configuration,
                         expected: tuple[str, str, str, str] | None) -> None:
    """Each row of the section 5.4 table, and the 2 -> 3 rename rule, gives the expected one change."""
    change = one(servers, configuration)
    assert ops(change) == expected, change
    if change is not None:
        assert change.reason


def test_reconcile_remove_then_add() -> None:
    """A server back at a new address is removed, and the next call adds it at the new address."""
    moved = dataclasses.replace(srv(3), addr="10.0.0.33")
    final, done = run_to_fixpoint([srv(1), srv(2), moved], conf((uid(1), addr(1)), (uid(2), addr(2)),
                                                                (uid(3), addr(3))), self_id=uid(1))
    assert [ops(c) for c in done] == [("remove", uid(3), addr(3), ""),
                                      ("add_nonvoter", uid(3), "10.0.0.33:4647", "")]
    assert final.get(uid(3)) == Server(uid(3), "10.0.0.33:4647", NONVOTER)


def test_reconcile_reaped_names_remove() -> None:
    """A reaped member (its last parts still passed) is removed whatever its last status; unknown names do nothing."""
    servers = [srv(1), srv(2), srv(3, "failed")]
    assert one(servers, FULL3) is None
    assert ops(one(servers, FULL3, reaped=("s3",))) == ("remove", uid(3), addr(3), "")
    assert one(servers, FULL3, reaped=("nobody",)) is None
    assert one([srv(1), srv(2), srv(3)], FULL3, reaped=("s3",)) is None  # back alive: kept


def test_reconcile_leader_skips_itself_in_small_configuration() -> None:
    """With fewer than 3 entries the leader leaves its own conflicts alone; with 3 or more it fixes them."""
    small = conf((uid(1), addr(1)), ("uuid-old", addr(2)))
    assert one([srv(1), srv(2)], small, self_id=uid(2)) is None
    assert ops(one([srv(1), srv(2)], small, self_id=uid(1))) == ("remove", "uuid-old", addr(2), "")
    big = conf((uid(1), addr(1)), ("uuid-old", addr(2)), (uid(3), addr(3)), (uid(2), "10.1.1.1:4647"))
    assert ops(one([srv(1), srv(2), srv(3)], big, self_id=uid(2))) == ("remove", "uuid-old", addr(2), "")


def test_reconcile_never_removes_or_adds_the_leader() -> None:
    """The leader's own entry is neither removed (even at a stale address) nor re-added."""
    configuration = conf((uid(1), "10.1.1.1:4647"), (uid(2), addr(2)), (uid(3), addr(3)))
    assert one([srv(1), srv(2), srv(3)], configuration, self_id=uid(1)) is None
    # The leader missing from the configuration is not added by itself.
    assert one([srv(1), srv(2), srv(3), srv(4)], conf((uid(2), addr(2)), (uid(3), addr(3)), (uid(4), addr(4))),
               self_id=uid(1)) is None


def test_reconcile_two_bootstrap_servers() -> None:
    """A joining bootstrap-mode server is not added while another server is in bootstrap mode too."""
    lone = conf((uid(1), addr(1)))
    assert one([srv(1, bootstrap=True), srv(2, bootstrap=True)], lone) is None
    assert ops(one([srv(1), srv(2, bootstrap=True)], lone)) == ("add_nonvoter", uid(2), addr(2), "")


def restart(servers: list[ServerParts], n: int, **changes: object) -> list[ServerParts]:
    return [dataclasses.replace(s, **changes) if s.name == f"s{n}" else s for s in servers]


def test_rolling_upgrade_two_to_three() -> None:
    """Three servers on protocol 2 restarted one at a time on 3 end with UUID ids, never below 2 voters."""
    servers = [srv(n, vsn=2) for n in (1, 2, 3)]
    configuration = bootstrap_configuration(servers, min_raft_version(servers))
    assert configuration.ids() == (addr(1), addr(2), addr(3))
    for n in (1, 2, 3):
        leader = 2 if n == 1 else 1          # the restarted server is not the leader
        self_id = raft_id_for(srv(leader), 2)  # a leader keeps the id it started with
        servers = restart(servers, n, status="failed")
        configuration, done = run_to_fixpoint(servers, configuration, self_id=self_id, min_voters=2)
        servers = restart(servers, n, status="alive", raft_version=3)
        configuration, more = run_to_fixpoint(servers, configuration, self_id=self_id, min_voters=2)
        assert all(c.op == "rename" for c in done + more)
    assert configuration == conf((uid(1), addr(1)), (uid(2), addr(2)), (uid(3), addr(3)))


def test_rolling_upgrade_with_graceful_leaves() -> None:
    """Leaving and rejoining on protocol 3 (reconcile plus autopilot promotion) keeps 2 voters at every step."""
    servers = [srv(n, vsn=2) for n in (1, 2, 3)]
    configuration = bootstrap_configuration(servers, 2)
    autopilot = Autopilot(AutopilotConfig())
    now = 0.0
    for n in (3, 2, 1):
        leader = 1 if n != 1 else 2
        self_id = raft_id_for(srv(leader), 2)
        servers = restart(servers, n, status="left")
        configuration, _ = run_to_fixpoint(servers, configuration, self_id=self_id, min_voters=2)
        assert len(configuration.servers) == 2
        servers = restart(servers, n, status="alive", raft_version=3)
        for _ in range(10):
            configuration, _ = run_to_fixpoint(servers, configuration, self_id=self_id, min_voters=2)
            now += 10.0
            progress = {s.id: (100, now) for s in configuration.servers}
            actions = autopilot.round(configuration=configuration, servers=servers, progress=progress,
                                      leader_id=self_id, last_index=100, now=now)
            assert not actions.remove_stale and not actions.force_leave
            for raft_id in actions.promote:
                configuration = apply(configuration, RaftChange("promote", raft_id, ""))
            if len(configuration.voters()) == 3:
                break
        assert len(configuration.voters()) == 3
    assert configuration == conf((uid(1), addr(1)), (uid(2), addr(2)), (uid(3), addr(3)))


STATUSES = ["alive", "left", "failed", "leaving", "reaped"]


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[ServerParts], Configuration, str, tuple[str, ...], set[tuple[str, str]]]:
    """Members in every status, entries in every id form, and the configuration reconcile should reach."""
    count = draw(st.integers(1, 6))
    me = srv(0, vsn=draw(st.sampled_from([2, 3])))
    servers, reaped = [me], []
    for n in range(1, count + 1):
        status = draw(st.sampled_from(STATUSES))
        region = draw(st.sampled_from(["global", "global", "global", "eu"]))
        if status == "reaped":
            reaped.append(f"s{n}")
            status = draw(st.sampled_from(["left", "failed"]))
        servers.append(srv(n, status, vsn=draw(st.sampled_from([2, 3])), region=region))
    version = min_raft_version(s for s in servers if s.region == "global")
    my_entry = (addr(0), addr(0)) if version < 3 else draw(st.sampled_from([(addr(0), addr(0)), (uid(0), addr(0))]))
    self_id = draw(st.sampled_from([my_entry[0], uid(0)]))
    entries = {my_entry: draw(st.sampled_from([VOTER, NONVOTER]))}
    expected = {(uid(0), addr(0)) if version >= 3 else my_entry}
    for s in servers[1:]:
        n = int(s.name[1:])
        by_address, by_uuid, moved = (addr(n), addr(n)), (uid(n), addr(n)), (uid(n), f"10.1.0.{n}:4647")
        choices = [(), (by_address,), (by_uuid,), (moved,), (by_address, by_uuid), (by_address, moved)]
        chosen = set(draw(st.sampled_from(choices))) if s.region == "global" else set()
        for form in chosen:
            entries[form] = draw(st.sampled_from([VOTER, NONVOTER]))
        if s.region != "global":
            continue
        if s.status in ("failed", "leaving") and s.name not in reaped:
            expected |= chosen
        elif s.status == "alive":
            keep_uuid = (uid(n), addr(n)) in chosen and (addr(n), addr(n)) not in chosen
            expected.add((uid(n), addr(n)) if version >= 3 or keep_uuid else (addr(n), addr(n)))
    configuration = Configuration(tuple(Server(i, a, suffrage) for (i, a), suffrage in entries.items()))
    return servers, configuration, self_id, tuple(reaped + ["ghost"]), expected


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_reconcile_reaches_fixpoint(cluster: tuple[list[ServerParts], Configuration, str, tuple[str, ...],
                                                   set[tuple[str, str]]]) -> None:
    """Applying reconcile's changes ends within 3x the servers with exactly the alive servers (plus self)."""
    servers, configuration, self_id, reaped, expected = cluster
    mine = {self_id, uid(0), addr(0)}
    for _ in range(3 * len(servers) + 1):
        changes = reconcile(servers, configuration, self_id=self_id, region="global", reaped=reaped)
        assert len(changes) <= 1
        if not changes:
            break
        assert changes[0].op == "rename" or changes[0].id not in mine, changes
        configuration = apply(configuration, changes[0])
    else:
        raise AssertionError(f"no fixpoint within {3 * len(servers)} steps")
    assert {(s.id, s.address) for s in configuration.servers} == expected


# --------------------------------------------------------------------------- autopilot

def pilot_round(autopilot: Autopilot, configuration: Configuration, servers: list[ServerParts], now: float, *,
                progress: dict[str, tuple[int, float | None]] | None = None, leader_id: str = "uuid-1"):
    if progress is None:
        progress = {s.id: (100, now) for s in configuration.servers}
    return autopilot.round(configuration=configuration, servers=servers, progress=progress,
                           leader_id=leader_id, last_index=100, now=now)


WITH_NONVOTER = conf((uid(1), addr(1)), (uid(2), addr(2)), (uid(3), addr(3)), (uid(4), addr(4), NONVOTER))
FOUR = [srv(1), srv(2), srv(3), srv(4)]


def test_autopilot_promotes_after_stabilization_time() -> None:
    """A healthy non-voter is promoted only once it has been healthy for server_stabilization_time."""
    autopilot = Autopilot(AutopilotConfig())
    for now in (0.0, 5.0, 9.9):
        assert pilot_round(autopilot, WITH_NONVOTER, FOUR, now).promote == ()
    assert pilot_round(autopilot, WITH_NONVOTER, FOUR, 10.0).promote == (uid(4),)


def test_autopilot_resets_on_unhealthy() -> None:
    """An unhealthy round restarts the stabilization clock."""
    autopilot = Autopilot(AutopilotConfig())
    pilot_round(autopilot, WITH_NONVOTER, FOUR, 0.0)
    stale_contact = {s.id: (100, 4.0) for s in WITH_NONVOTER.servers}
    assert pilot_round(autopilot, WITH_NONVOTER, FOUR, 5.0, progress=stale_contact).promote == ()
    assert pilot_round(autopilot, WITH_NONVOTER, FOUR, 6.0).promote == ()
    assert pilot_round(autopilot, WITH_NONVOTER, FOUR, 15.9).promote == ()
    assert pilot_round(autopilot, WITH_NONVOTER, FOUR, 16.0).promote == (uid(4),)


@pytest.mark.parametrize("match_index, contact_age, healthy", [
    (100, 0.0, True), (100, 0.125, True), (100, 0.25, False), (-150, 0.0, True), (-151, 0.0, False),
])
def test_autopilot_health(match_index: int, contact_age: float, healthy: bool) -> None:
    """Healthy means contact within the threshold and at most max_trailing_logs behind."""
    autopilot = Autopilot(AutopilotConfig())
    assert autopilot.is_healthy("x", {"x": (match_index, 50.0 - contact_age)}, 100, 50.0) is healthy
    assert autopilot.is_healthy("x", {"x": (100, None)}, 100, 50.0) is False
    assert autopilot.is_healthy("y", {}, 100, 50.0) is False


def test_autopilot_contact_window_follows_heartbeat() -> None:
    """A slow heartbeat (raft_multiplier) widens what counts as recent contact."""
    slow = Autopilot(AutopilotConfig(heartbeat_interval=1.0))
    assert slow.is_healthy("x", {"x": (100, 48.5)}, 100, 50.0)
    assert not slow.is_healthy("x", {"x": (100, 47.9)}, 100, 50.0)


def test_autopilot_does_not_promote_configured_nonvoters_or_strangers() -> None:
    """A nonvoter-tagged server, a failed one and one gossip does not know stay non-voters."""
    autopilot = Autopilot(AutopilotConfig(server_stabilization_time=0.0))
    assert pilot_round(autopilot, WITH_NONVOTER, FOUR, 1.0).promote == (uid(4),)
    for servers in ([srv(1), srv(2), srv(3), srv(4, nonvoter=True)], [srv(1), srv(2), srv(3), srv(4, "failed")],
                    [srv(1), srv(2), srv(3)]):
        assert pilot_round(autopilot, WITH_NONVOTER, servers, 1.0).promote == ()


@pytest.mark.parametrize("voters, min_quorum, removals", [
    (1, 0, 0), (2, 0, 0), (3, 0, 1), (4, 0, 1), (5, 0, 2), (6, 0, 2), (7, 0, 3),
    (5, 4, 1), (5, 5, 0), (7, 5, 2), (3, 3, 0),
])
def test_autopilot_removal_cap(voters: int, min_quorum: int, removals: int) -> None:
    """All voters but the leader failed: at most floor((voters-1)/2) go per round, never below min_quorum."""
    servers = [srv(1)] + [srv(n, "failed") for n in range(2, voters + 1)]
    configuration = Configuration(tuple(Server(uid(n), addr(n)) for n in range(1, voters + 1)))
    actions = pilot_round(Autopilot(AutopilotConfig(min_quorum=min_quorum)), configuration, servers, 1.0)
    assert len(actions.force_leave) == removals == removal_budget(voters, min_quorum)
    assert "s1" not in actions.force_leave


def test_autopilot_stale_and_failed_share_the_budget() -> None:
    """Stale and failed voters together stay within the cap; non-voters need no budget."""
    configuration = conf((uid(1), addr(1)), (uid(2), addr(2)), (uid(3), addr(3)), (uid(4), addr(4)),
                         (uid(5), addr(5)), ("ghost", "10.9.0.1:4647"), (uid(6), addr(6), NONVOTER),
                         ("ghost-nv", "10.9.0.2:4647", NONVOTER))
    servers = [srv(1), srv(2), srv(3, "failed"), srv(4, "failed"), srv(5), srv(6, "failed")]
    actions = pilot_round(Autopilot(AutopilotConfig()), configuration, servers, 1.0)
    # 6 voters: budget 2, spent on ghost (stale) then s3; s4 waits; non-voters go free.
    assert actions.remove_stale == ("ghost", "ghost-nv")
    assert actions.force_leave == ("s3", "s6")


def test_autopilot_stale_means_unknown_by_id_and_address() -> None:
    """An entry known by UUID, by address id or by address alone is not stale."""
    configuration = conf((uid(1), addr(1)), (addr(2), addr(2)), ("other", addr(3)), (uid(4), "10.9.9.9:1"),
                         ("ghost", "10.9.0.1:4647"))
    servers = [srv(1), srv(2, "left"), srv(3), srv(4)]
    assert pilot_round(Autopilot(AutopilotConfig()), configuration, servers, 1.0).remove_stale == ("ghost",)


def test_autopilot_never_removes_the_leader() -> None:
    """The leader's entry is neither stale-removed nor force-left, whatever gossip says."""
    configuration = conf(("leader", "10.9.0.1:4647"), (uid(2), addr(2)), (uid(3), addr(3)), (uid(4), addr(4)),
                         (uid(5), addr(5)))
    servers = [srv(2), srv(3), srv(4), srv(5)]
    actions = pilot_round(Autopilot(AutopilotConfig()), configuration, servers, 1.0, leader_id="leader")
    assert actions.remove_stale == ()
    failed_leader = pilot_round(Autopilot(AutopilotConfig()), FULL3, [srv(1, "failed"), srv(2), srv(3)], 1.0)
    assert failed_leader.force_leave == ()


def test_autopilot_cleanup_disabled() -> None:
    """With cleanup_dead_servers off, nothing is removed or force-left."""
    configuration = conf((uid(1), addr(1)), (uid(2), addr(2)), (uid(3), addr(3)), ("ghost", "10.9.0.1:4647"))
    actions = pilot_round(Autopilot(AutopilotConfig(cleanup_dead_servers=False)), configuration,
                          [srv(1), srv(2), srv(3, "failed")], 1.0)
    assert (actions.remove_stale, actions.force_leave) == ((), ())
