"""The cluster tool's pure parts: the plan, cluster.json, input checks of the verbs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cluster import ops
from agent.cluster.cli import run_cluster_command
from agent.cluster.state import (STATE_FILE, ClusterError, ClusterState, load_state, plan_block,
                                 plan_cluster, remove_state, save_state)
from agent.runtime import node_peer_names


def _plan(tmp_path: Path, servers: int = 3, clients: int = 2, serfs: int = 1) -> ClusterState:
    return plan_cluster(tmp_path, "127.99.7", servers=servers, clients=clients, serfs=serfs,
                        seed=7, python="/py", serf_binary="/usr/bin/serf",
                        created="2026-01-01T00:00:00Z", agent_flags=["-raft-multiplier", "2"])


def test_plan_gives_each_node_its_ip_ports_member_name_and_files(tmp_path):
    """Servers, clients and serf agents get .1.. in order, Nomad's ports, the contract's names."""
    state = _plan(tmp_path)
    assert [n.name for n in state.nodes] == ["s1", "s2", "s3", "c1", "c2", "serf1"]
    assert [n.ip for n in state.nodes] == [f"127.99.7.{i}" for i in range(1, 7)]
    s2, c1, serf1 = state.node("s2"), state.node("c1"), state.node("serf1")
    assert (s2.http, s2.rpc, s2.serf, s2.serf_rpc, s2.member) == (
        "127.99.7.2:4646", "127.99.7.2:4647", "127.99.7.2:4648", "", "s2.global")
    assert (c1.serf, c1.member) == ("", "c1")
    assert (serf1.http, serf1.serf, serf1.serf_rpc, serf1.member) == (
        "", "127.99.7.6:7946", "127.99.7.6:7373", "serf1")
    assert state.ui == "http://127.99.7.1:4646/ui"
    assert s2.log == str(tmp_path / "s2" / "agent.log")
    assert s2.data_dir == str(tmp_path / "s2" / "data")
    assert s2.config == str(tmp_path / "s2" / "agent.hcl")
    # servers: bootstrap-expect, retry-join every other server, fault injection, extra flags
    argv = s2.argv
    assert argv[:4] == ["/py", "-m", "agent", "agent"]
    assert argv[argv.index("-bootstrap-expect") + 1] == "3"
    joins = [argv[i + 1] for i, a in enumerate(argv) if a == "-retry-join"]
    assert joins == ["127.99.7.1:4648", "127.99.7.3:4648"]
    assert "-fault-injection" in argv and argv[-2:] == ["-raft-multiplier", "2"]
    assert c1.argv[c1.argv.index("-servers") + 1] == "127.99.7.1:4647,127.99.7.2:4647,127.99.7.3:4647"
    assert "-client" in c1.argv and "-server" not in c1.argv
    assert serf1.argv[:2] == ["/usr/bin/serf", "agent"]
    assert "-retry-join=127.99.7.1:4648" in serf1.argv
    assert state.gossip_members == ["s1.global", "s2.global", "s3.global", "serf1"]


@pytest.mark.parametrize("servers,clients,serfs,binary,message", [
    (0, 2, 0, None, "-servers must be at least 1"),
    (3, -1, 0, None, "must not be negative"),
    (200, 60, 0, None, "do not fit one /24 block"),
    (3, 0, 1, None, "needs the `serf` binary"),
])
def test_plan_refuses_bad_counts(tmp_path, servers, clients, serfs, binary, message):
    """Counts that cannot make a cluster are one-line errors."""
    with pytest.raises(ClusterError, match=message):
        plan_cluster(tmp_path, "127.99.7", servers=servers, clients=clients, serfs=serfs, seed=1,
                     python="/py", serf_binary=binary, created="")


def test_block_is_deterministic_per_seed_folder_and_attempt(tmp_path):
    """The same inputs give the same block; it stays in 127.64-191.x, away from 127.0.0.1."""
    blocks = {plan_block(seed, tmp_path, attempt) for seed in range(20) for attempt in range(5)}
    assert plan_block(7, tmp_path, 0) == plan_block(7, tmp_path, 0)
    assert len(blocks) > 90
    for block in blocks:
        first, second, third = (int(part) for part in block.split("."))
        assert first == 127 and 64 <= second < 192 and 0 <= third < 256


def test_state_round_trips_through_an_atomic_file(tmp_path):
    """save_state writes cluster.json in the contract's shape; load_state reads it back."""
    state = _plan(tmp_path)
    state.with_pid("s1", 4321)
    save_state(state)
    raw = json.loads((tmp_path / STATE_FILE).read_text())
    assert set(raw) == {"version", "seed", "created", "ui", "nodes"}
    assert raw["nodes"][0]["pid"] == 4321 and raw["nodes"][0]["role"] == "server"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    loaded = load_state(tmp_path)
    assert loaded.to_json() == state.to_json() and loaded.dir == tmp_path
    assert remove_state(tmp_path) and not remove_state(tmp_path)
    with pytest.raises(ClusterError, match="no cluster in"):
        load_state(tmp_path)


def test_a_malformed_state_file_is_a_clear_error(tmp_path):
    """A broken cluster.json names the file and the problem."""
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(ClusterError, match="not JSON"):
        load_state(tmp_path)
    (tmp_path / STATE_FILE).write_text(json.dumps({"version": 1, "nodes": [{"name": "s1"}]}))
    with pytest.raises(ClusterError, match="misses key"):
        load_state(tmp_path)


def test_unknown_node_names_the_known_ones(tmp_path):
    with pytest.raises(ClusterError, match=r"no node 'x9'.*nodes: s1, s2, s3, c1, c2, serf1"):
        _plan(tmp_path).node("x9")


@pytest.mark.parametrize("groups,message", [
    ([], "partition needs groups"),
    ([["s1"], []], "partition needs groups"),
    ([["s1", "s9"]], "no node 's9'"),
    ([["s1", "s2"], ["s2", "s3"]], r"s2 is in two groups \(1 and 2\)"),
])
def test_partition_checks_its_input_before_touching_any_agent(tmp_path, groups, message):
    """Bad groups raise before a single HTTP call (the nodes have no process: pid 0)."""
    with pytest.raises(ClusterError, match=message):
        ops.partition(_plan(tmp_path), groups)


def test_loss_and_delay_check_their_input(tmp_path):
    state = _plan(tmp_path)
    with pytest.raises(ClusterError, match="within \\[0, 100\\]"):
        ops.loss(state, "s1", 101)
    with pytest.raises(ClusterError, match=">= 0"):
        ops.delay(state, "s1", -1)
    with pytest.raises(ClusterError, match="serf agent: it has no fault filter"):
        ops.loss(state, "serf1", 10)


def test_a_verb_on_a_node_that_does_not_run_changes_nothing(tmp_path):
    """kill of a node whose pid is gone is an error; merge verbs skip it with a note."""
    state = _plan(tmp_path)
    with pytest.raises(ClusterError, match="s1 is not running"):
        ops.kill(state, "s1")
    notes = ops.loss(state, "s1", 5)
    assert notes == ["s1: not running (dead), rules not set"]


def test_readiness_line():
    ready = ops.Readiness(total=5, up=["s1", "s2", "s3"], converged=["s1", "s2"], servers=3,
                          clients=2, missing=["x"])
    assert ready.line() == "3/5 up, members converged 2/3, leader: none, clients ready 0/2"
    assert not ready.done


def test_cli_bad_input_is_one_line_and_exit_1(tmp_path, capsys):
    """Unknown verbs, missing state and bad numbers: one line on stderr, exit 1."""
    assert run_cluster_command(["frobnicate"]) == 1
    assert run_cluster_command(["status", "-dir", str(tmp_path)]) == 1
    assert run_cluster_command(["loss", "s1", "lots", "-dir", str(tmp_path)]) == 1
    assert run_cluster_command(["exec", "s1", "-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4, err
    assert "unknown cluster verb" in err[0] and "no cluster in" in err[1]
    assert "needs a number" in err[2] and "needs `--`" in err[3]
    assert run_cluster_command(["down", "-dir", str(tmp_path)]) == 0   # idempotent


def test_node_peer_names_maps_client_addresses_to_node_names():
    """A server's fault filter learns clients' HTTP and RPC addresses from Node records."""
    nodes = [{"ID": "a", "Name": "c1", "HTTPAddr": "127.1.1.4:4646", "RPCAddr": "127.1.1.4:4647"},
             {"ID": "b", "Name": "", "HTTPAddr": "127.1.1.5:4646"}]
    assert node_peer_names(nodes) == {"127.1.1.4:4646": "c1", "127.1.1.4:4647": "c1",
                                      "127.1.1.5:4646": "b"}


def test_up_with_serf_but_no_serf_binary_refuses_before_starting(tmp_path, monkeypatch):
    """-serf K without `serf` on PATH is a clear error; nothing is written or started."""
    from agent.cluster import lifecycle, procs

    monkeypatch.setattr(procs, "serf_binary", lambda: None)
    with pytest.raises(ClusterError, match="needs the `serf` binary on PATH"):
        lifecycle.up(tmp_path / "c", serfs=1)
    assert not (tmp_path / "c").exists()


def test_bad_counts_change_nothing(tmp_path):
    """`up -servers 0` fails before the folder is even made."""
    from agent.cluster import lifecycle

    with pytest.raises(ClusterError, match="at least 1"):
        lifecycle.up(tmp_path / "c", servers=0)
    assert not (tmp_path / "c").exists()


def test_a_stale_state_is_replaced(tmp_path):
    """A state whose every pid is gone is removed with its node folders; `up` may go on."""
    from agent.cluster import lifecycle

    state = _plan(tmp_path)   # pids 0: nothing runs
    save_state(state)
    (tmp_path / "s1" / "data").mkdir(parents=True)
    notes: list[str] = []
    lifecycle._clear_stale(tmp_path, notes.append)
    assert not (tmp_path / STATE_FILE).exists() and not (tmp_path / "s1").exists()
    assert notes and "stale" in notes[0]
