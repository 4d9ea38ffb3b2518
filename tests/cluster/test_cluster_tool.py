"""`shoal cluster`: up, status, exec, every chaos verb seen through the API, and down.

One cluster (3 servers, 2 clients, and a real serf agent when `serf` is installed) is
started with `scripts/run` for the whole module; the tests run in file order against it and
the last one brings it down. Whatever happens, the module's teardown runs `down` and
then SIGKILLs, by PID, any process of the cluster still running its recorded argv.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from agent.cluster import ops, procs
from agent.cluster.state import STATE_FILE, ClusterError, ClusterState, load_state
from harness import PYTHON, REPO, WaitTimeout, wait_until

pytestmark = pytest.mark.cluster

GONE = ("failed", "left")          # autopilot turns a failed server into a left one
DEADLINE = 45.0


class Cluster:
    """The module's cluster: its folder, the `up` output, every (pid, argv) it ever had."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.seen: dict[int, list[str]] = {}
        self.up: subprocess.CompletedProcess[str] | None = None
        self.has_serf = shutil.which("serf") is not None

    def cli(self, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        """Run `shoal cluster ARGS -dir DIR` as a user would."""
        verb, rest = args[0], args[1:]
        result = subprocess.run([PYTHON, "-m", "agent", "cluster", verb, "-dir", str(self.dir), *rest],
                                capture_output=True, text=True, timeout=timeout)
        self.remember()
        return result

    def state(self) -> ClusterState:
        state = load_state(self.dir)
        for node in state.nodes:
            self.seen[node.pid] = node.argv
        return state

    def remember(self) -> None:
        try:
            self.state()
        except ClusterError:
            pass

    def wait(self, what: str, probe: Callable[[], Any], done: Callable[[Any], bool],
             timeout: float = DEADLINE) -> Any:
        """``wait_until`` that adds every node's log tail to a timeout."""
        try:
            return wait_until(what, probe, done, timeout=timeout)
        except WaitTimeout as exc:
            tails = "\n".join(f"--- {n.name} ---\n{ops.log_tail(n.log, 15)}"
                              for n in self.state().nodes)
            raise WaitTimeout(f"{exc}\n{tails}") from None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Start the cluster with `shoal cluster up`; always bring it down and kill leftovers."""
    instance = Cluster(tmp_path_factory.mktemp("cluster") / "c")
    serf = ["-serf", "1"] if instance.has_serf else []
    if not instance.has_serf:
        print("no `serf` binary: the cluster runs without a serf agent "
              "(install Debian's serf to mix one in)")
    try:
        # scripts/run is `shoal cluster up -servers 3 -clients 2 "$@"`, as a user runs it
        instance.up = subprocess.run(["bash", str(REPO / "scripts" / "run"), "-dir", str(instance.dir),
                                      *serf, "-seed", "11"], capture_output=True, text=True,
                                     timeout=600)
        instance.remember()
        yield instance
    finally:
        subprocess.run([PYTHON, "-m", "agent", "cluster", "down", "-dir", str(instance.dir)],
                       capture_output=True, timeout=60)
        for pid, argv in instance.seen.items():
            procs.send_signal(pid, argv, signal.SIGKILL)


def _everyone_alive(state: ClusterState) -> Callable[[dict[str, dict[str, str]]], bool]:
    servers = [n.name for n in state.of_role("server")]

    def done(views: dict[str, dict[str, str]]) -> bool:
        return (sorted(views) == sorted(servers)
                and all(view.get(m) == "alive" for view in views.values() for m in state.gossip_members))
    return done


def _metric(node: Any, name: str) -> int:
    counters = ops.http_json("GET", node.http, "/v1/metrics").get("Counters", [])
    return next((int(c["Count"]) for c in counters if c["Name"] == name), 0)


def test_up_converges_and_prints_the_table(cluster: Cluster) -> None:
    """`scripts/run` (`up`) waits until every node is ready, then prints each node, the leader
    and the UI."""
    result = cluster.up
    assert result is not None
    assert result.returncode == 0, result.stderr + result.stdout
    state = cluster.state()
    names = ["s1", "s2", "s3", "c1", "c2"] + (["serf1"] if cluster.has_serf else [])
    assert [n.name for n in state.nodes] == names
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "ADDRESS", "PORTS", "PID", "STATUS", "LEADER"]
    for node in state.nodes:
        row = next(line for line in lines if line.startswith(node.name + " "))
        assert node.ip in row and str(node.pid) in row, row
        assert ("running, ready" if node.role == "client" else "running, alive") in row, row
    assert sum(1 for line in lines if line.rstrip().endswith(" leader")) == 1
    assert f"UI: {state.ui}" in lines and state.ui.endswith(":4646/ui")
    assert "members converged 3/3" in result.stderr and "on 127." in result.stderr
    assert ops.check_ready(state).done
    faults_on = [ops.node_faults(n) for n in state.shoal_nodes]    # -fault-injection: 200, none set
    assert faults_on == [None] * len(state.shoal_nodes)


def test_second_up_refuses_and_starts_nothing(cluster: Cluster) -> None:
    """`up` on a folder whose cluster runs says so and leaves it alone."""
    before = cluster.state().to_json()
    result = cluster.cli("up")
    assert result.returncode == 1
    assert "already running" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert cluster.state().to_json() == before


def test_status_and_exec(cluster: Cluster) -> None:
    """`status` prints the live table; `exec` aims shoal (and serf) at one node."""
    status = cluster.cli("status")
    assert status.returncode == 0, status.stderr
    assert "leader: s" in status.stdout and "running, alive" in status.stdout
    members = cluster.cli("exec", "s2", "--", "shoal", "server", "members")
    assert members.returncode == 0, members.stderr
    for member in cluster.state().gossip_members:
        assert member in members.stdout
    nodes = cluster.cli("exec", "c1", "--", "shoal", "agent-info")
    assert nodes.returncode == 0, nodes.stderr
    if cluster.has_serf:
        serf = cluster.cli("exec", "serf1", "--", "serf", "members")
        assert serf.returncode == 0 and "s1.global" in serf.stdout, serf.stderr


def test_partition_then_heal(cluster: Cluster) -> None:
    """Each side reports the other failed; clients follow their group; heal brings all back."""
    state = cluster.state()
    left = ["s1", "c1"] + (["serf1"] if cluster.has_serf else [])   # serf1 confirms s1's suspicions
    right = ["s2", "s3", "c2"]
    result = cluster.cli("partition", ",".join(left), ",".join(right))
    assert result.returncode == 0, result.stderr
    left_members = [state.node(n).member for n in left if state.node(n).role != "client"]
    right_members = ["s2.global", "s3.global"]

    def split(views: dict[str, dict[str, str]]) -> bool:
        return (views.get("s1", {}) and all(views["s1"].get(m) in GONE for m in right_members)
                and all(views.get(s, {}).get(m) in GONE for s in ("s2", "s3") for m in left_members))
    cluster.wait("each side to report the other failed", lambda: ops.member_views(state), split)
    # clients: each reaches only the servers of its group (its own filter cuts the others)
    for client, servers in (("c1", {"s1"}), ("c2", {"s2", "s3"})):
        node = state.node(client)
        rules = ops.node_faults(node)
        assert rules is not None and len(rules["Partitions"]) == 2, rules
        answer = ops.http_json("GET", node.http, "/v1/agent/members", timeout=30)
        assert answer["ServerName"] in servers, (client, answer["ServerName"])
    assert _metric(state.node("s2"), "shoal.faults.dropped.inbound") > 0

    healed = cluster.cli("heal")
    assert healed.returncode == 0, healed.stderr
    cluster.wait("every server to see every member alive", lambda: ops.member_views(state),
                 _everyone_alive(state))
    assert [ops.node_faults(n) for n in state.shoal_nodes] == [None] * len(state.shoal_nodes)


def test_kill_then_restart(cluster: Cluster) -> None:
    """`kill` (SIGKILL): the others see it failed; `restart`: alive again with a new pid."""
    state = cluster.state()
    old = state.node("s3")
    assert cluster.cli("kill", "s3").returncode == 0
    assert not procs.is_running(old.pid, old.argv)
    cluster.wait("s1 and s2 to see s3 failed", lambda: ops.member_views(state),
                 lambda views: all(views.get(s, {}).get("s3.global") in GONE for s in ("s1", "s2")))
    result = cluster.cli("restart", "s3")
    assert result.returncode == 0, result.stderr
    fresh = cluster.state()
    new = fresh.node("s3")
    assert new.pid != old.pid and procs.is_running(new.pid, new.argv) and new.argv == old.argv
    cluster.wait("s3 alive again everywhere", lambda: ops.member_views(fresh), _everyone_alive(fresh))
    cluster.wait("a leader named by every server", lambda: ops.check_ready(fresh),
                 lambda ready: ready.leader != "")


def test_stop_then_cont(cluster: Cluster) -> None:
    """`stop` (SIGSTOP): suspect, then failed; `cont`: it refutes and is alive again."""
    state = cluster.state()
    assert cluster.cli("stop", "s2").returncode == 0
    node = state.node("s2")
    assert procs.process_status(node.pid, node.argv) == "stopped"
    cluster.wait("s1 to suspect s2", lambda: ops.member_views(state),
                 lambda views: views.get("s1", {}).get("s2.global") in ("suspect",) + GONE)
    assert cluster.cli("cont", "s2").returncode == 0
    assert procs.process_status(node.pid, node.argv) == "running"
    cluster.wait("s2 alive again everywhere", lambda: ops.member_views(state), _everyone_alive(state))


def test_loss_and_delay_show_in_rules_and_counters(cluster: Cluster) -> None:
    """`loss` and `delay` merge into the node's rules and its fault counters move."""
    state = cluster.state()
    s1, c1 = state.node("s1"), state.node("c1")
    assert cluster.cli("delay", "s1", "20").returncode == 0
    assert cluster.cli("loss", "s1", "10").returncode == 0
    rules = ops.node_faults(s1)
    assert rules is not None and (rules["DelayMs"], rules["Loss"]) == (20, 0.1), rules
    assert cluster.cli("loss", "c1", "50").returncode == 0
    assert ops.node_faults(c1)["Loss"] == 0.5
    cluster.wait("s1 to delay and lose packets",
                 lambda: (_metric(s1, "shoal.faults.delayed"),
                          _metric(s1, "shoal.faults.dropped.outbound.loss")),
                 lambda counts: counts[0] > 0 and counts[1] > 0)
    cluster.wait("c1 to lose calls", lambda: _metric(c1, "shoal.faults.dropped.outbound.loss"),
                 lambda count: count > 0)
    bad = cluster.cli("loss", "s1", "150")
    assert bad.returncode == 1 and ops.node_faults(s1)["Loss"] == 0.1
    assert cluster.cli("heal").returncode == 0
    assert ops.node_faults(s1) is None


def test_down_leaves_no_process_behind(cluster: Cluster) -> None:
    """`down` stops every process of the state file (checked by PID) and is idempotent."""
    state = cluster.state()
    result = cluster.cli("down")
    assert result.returncode == 0, result.stderr
    for node in state.nodes:
        assert not procs.is_running(node.pid, node.argv), node.name
        assert not Path(f"/proc/{node.pid}").exists() or not procs.is_running(node.pid, node.argv)
    assert not (cluster.dir / STATE_FILE).exists()
    again = cluster.cli("down")
    assert again.returncode == 0 and "nothing to stop" in again.stdout


def test_pids_are_checked_against_their_command_line(tmp_path: Path) -> None:
    """A PID that runs another command line is never signalled (a reused PID)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert procs.is_running(child.pid, child.args)
        assert not procs.send_signal(child.pid, ["serf", "agent"], signal.SIGKILL)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
    assert not os.path.exists(f"/proc/{child.pid}") or not procs.is_running(child.pid, child.args)
