"""Real `shoal agent -server` processes electing a raft leader and replicating variables."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from harness import PYTHON, REPO, wait_until
from raft_procs import (configuration, leader, node_at, put_var, raft_address, request, restart,
                          stale_vars, start_servers, wait_one_leader)

pytestmark = pytest.mark.cluster


def test_three_servers_elect_fail_over_and_the_old_leader_rejoins(procs, loopback, tmp_path):
    """bootstrap_expect=3 elects one leader; kill -9 of it elects another; restarted, it follows and catches up."""
    nodes = start_servers(procs, tmp_path, loopback, ["r1", "r2", "r3"], expect=3)
    first = wait_one_leader(nodes)
    for i in range(5):
        status, body = put_var(nodes[i % 3], f"before/{i}", {"n": str(i)})
        assert status == 200, (status, body)

    old = node_at(nodes, first)
    old.kill9()
    survivors = [n for n in nodes if n is not old]
    second = wait_one_leader(survivors, exclude=first)
    assert second != first
    status, body = put_var(survivors[0], "after/0", {"n": "0"})
    assert status == 200, (status, body)
    # Autopilot: the dead server goes failed in gossip, is force-left, and leaves raft
    # (one of three voters may go: a majority remains).
    wait_until("autopilot to remove the dead server from raft",
               lambda: sorted(p["Address"] for p in configuration(survivors[0])["Servers"]),
               lambda addresses: addresses == sorted(raft_address(n) for n in survivors),
               timeout=60, watch=survivors)

    others = [f"{n.ip}:{n.serf_port}" for n in survivors]
    back = restart(procs, old, extra=["-bootstrap-expect", "3"], join=others)
    everyone = survivors + [back]
    third = wait_one_leader(everyone, timeout=60)
    assert third != raft_address(back), "the restarted server must come back as a follower"
    expected = sorted([f"before/{i}" for i in range(5)] + ["after/0"])
    wait_until("every server to hold every variable", lambda: [stale_vars(n) for n in everyone],
               lambda views: all(v == expected for v in views), timeout=60, watch=everyone)
    # The leader re-adds it as a non-voter and autopilot promotes it once stable (10 s).
    wait_until("the restarted server to be a voter again",
               lambda: {p["Address"]: p["Voter"] for p in configuration(back)["Servers"]},
               lambda voters: voters.get(raft_address(back)) is True and len(voters) == 3,
               timeout=60, watch=everyone)
    status, body = put_var(back, "after/1", {"n": "1"})
    assert status == 200, (status, body)

    # A graceful leave (SIGTERM with -leave-on-terminate) takes the server out of raft.
    leaving = next(n for n in everyone if raft_address(n) != leader(everyone[0]))
    leaving.signal(signal.SIGTERM)
    assert leaving.wait_exit(30) == 0
    staying = [n for n in everyone if n is not leaving]
    wait_until("the leaver to be removed from raft",
               lambda: sorted(p["Address"] for p in configuration(staying[0])["Servers"]),
               lambda addresses: addresses == sorted(raft_address(n) for n in staying),
               timeout=60, watch=staying)


def test_partition_two_three_minority_commits_nothing_and_logs_heal(procs, loopback, tmp_path):
    """5 servers split 2 | 3 by the fault filter: only the majority commits; after healing every log is equal."""
    names = [f"p{i}" for i in range(1, 6)]
    nodes = start_servers(procs, tmp_path, loopback, names, expect=5, extra=["-fault-injection"])
    first = wait_one_leader(nodes)
    old_leader = node_at(nodes, first)
    # Put the current leader in the minority, so the majority must elect a new one.
    minority = [old_leader] + [n for n in nodes if n is not old_leader][:1]
    majority = [n for n in nodes if n not in minority]
    groups = [[n.member_name for n in minority], [n.member_name for n in majority]]
    for node in nodes:
        status, body = request("PUT", f"{node.url}/v1/agent/faults", {"Partitions": groups, "Seed": 1})
        assert status == 200, (status, body)

    new_leader = wait_one_leader(majority, exclude=first, timeout=45)
    assert node_at(nodes, new_leader) in majority
    for i in range(3):
        status, body = put_var(majority[i % 3], f"majority/{i}", {"i": str(i)})
        assert status == 200, (status, body)
    status, body = put_var(minority[1], "minority/0", {"lost": "yes"}, timeout=30)
    assert status != 200, (status, body)
    for node in minority:
        assert "minority/0" not in stale_vars(node)

    for node in nodes:
        status, body = request("DELETE", f"{node.url}/v1/agent/faults")
        assert status == 200, (status, body)
    wait_one_leader(nodes, timeout=60)
    expected = ["majority/0", "majority/1", "majority/2"]
    wait_until("every log equal after healing", lambda: [stale_vars(n) for n in nodes],
               lambda views: all(v == expected for v in views), timeout=90, watch=nodes)


def test_durability_every_acknowledged_write_survives_kill_of_every_server(procs, loopback, tmp_path):
    """1000 acknowledged writes, kill -9 of all three servers, restart from snapshot + log: all 1000 are there."""
    from concurrent.futures import ThreadPoolExecutor

    snapshots = ["-raft-snapshot-threshold", "150", "-raft-trailing-logs", "40"]
    nodes = start_servers(procs, tmp_path, loopback, ["d1", "d2", "d3"], expect=3, extra=snapshots)
    wait_one_leader(nodes)
    acknowledged: list[str] = []

    def write(i: int) -> str | None:
        status, _body = put_var(nodes[i % 3], f"durable/{i:04d}", {"i": str(i)})
        return f"durable/{i:04d}" if status == 200 else None

    with ThreadPoolExecutor(max_workers=12) as pool:
        acknowledged = [p for p in pool.map(write, range(1000)) if p is not None]
    assert len(acknowledged) == 1000
    for node in nodes:
        node.kill9()
    for node in nodes:
        node.wait_exit(10)
    for node in nodes:   # the state went to snapshots; the log keeps only the tail
        held = sorted((tmp_path / f"data-{node.node}" / "raft" / "snapshots").glob("*.snap"))
        assert held, f"{node.name} wrote no snapshot"
    joins = [f"{n.ip}:{n.serf_port}" for n in nodes]
    restarted = [restart(procs, n, extra=["-bootstrap-expect", "3", *snapshots], join=joins) for n in nodes]
    wait_one_leader(restarted, timeout=60)
    for node in restarted:
        held = wait_until(f"{node.name} to hold every write", lambda node=node: stale_vars(node, "durable/"),
                          lambda paths: len(paths) >= 1000, timeout=60, watch=restarted)
        assert set(acknowledged) <= set(held)


def test_rolling_upgrade_from_raft_protocol_2_to_3(procs, loopback, tmp_path):
    """Three servers on raft protocol 2 restarted one at a time on 3: UUID ids, protocol 3, a leader throughout."""
    nodes = start_servers(procs, tmp_path, loopback, ["u1", "u2", "u3"], expect=3,
                          extra=["-raft-protocol", "2"])
    wait_one_leader(nodes)
    peers = configuration(nodes[0])["Servers"]
    assert sorted(p["ID"] for p in peers) == sorted(raft_address(n) for n in nodes), peers

    longest_gap = 0.0
    last_seen = time.monotonic()

    def note_leader(current: list) -> None:
        nonlocal longest_gap, last_seen
        now = time.monotonic()
        if any(leader_of_live(n) for n in current):
            longest_gap = max(longest_gap, now - last_seen)
            last_seen = now

    current = list(nodes)
    for index, old in enumerate(nodes):
        old.signal(signal.SIGINT)   # no leave: an in-place binary upgrade
        old.wait_exit(15)
        others = [n for n in current if n is not old]
        joins = [f"{n.ip}:{n.serf_port}" for n in others]
        new = restart(procs, old, extra=["-bootstrap-expect", "3", "-raft-protocol", "3"], join=joins)
        current = others + [new]

        def settled(current: list = current) -> bool:
            note_leader(current)
            leaders = {leader_of_live(n) for n in current}
            return len(leaders) == 1 and "" not in leaders

        wait_until(f"a leader named by all after upgrading {old.node}", lambda: settled(), timeout=60,
                   watch=current)
        status, body = put_var(current[0], f"upgrade/{index}", {"i": str(index)})
        assert status == 200, (status, body)

    def upgraded() -> list[dict]:
        note_leader(current)
        return configuration(current[0], stale=False)["Servers"]

    node_ids = {n.node: n for n in current}
    servers = wait_until("list-peers to show UUIDs and protocol 3", upgraded,
                         lambda s: len(s) == 3 and all(p["RaftProtocol"] == "3" and ":" not in p["ID"]
                                                       and p["Voter"] for p in s),
                         timeout=90, watch=current)
    assert sorted(p["Node"] for p in servers) == sorted(f"{n}.global" for n in node_ids), servers
    table = shoal_cli(current[0], "operator", "raft", "list-peers")
    lines = table.strip().splitlines()
    assert lines[0].split() == ["Node", "ID", "Address", "State", "Voter", "RaftProtocol"], table
    assert len(lines) == 4 and all(line.split()[-1] == "3" for line in lines[1:]), table
    assert sum(1 for line in lines[1:] if line.split()[3] == "leader") == 1, table
    assert longest_gap < 60.0, f"no leader for {longest_gap:.1f}s during the upgrade"


def shoal_cli(node, *args: str) -> str:
    """Run ``shoal <args>`` against ``node``'s HTTP address; fail on a non-zero exit."""
    done = subprocess.run([PYTHON, "-m", "agent", *args, "-address", node.url], capture_output=True,
                          text=True, timeout=30, cwd=REPO)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def leader_of_live(node) -> str:
    try:
        return leader(node)
    except Exception:  # noqa: BLE001 - a restarting node has no answer yet
        return ""
