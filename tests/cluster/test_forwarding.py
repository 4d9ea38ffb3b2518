"""Real processes: host and pprof forwarded by server_id / node_id (agent-api.md section 4).

Two servers and one client-only agent, each started with ``-config`` naming an HCL file
that sets ``enable_debug = true`` (ACLs off, so the debug endpoints need it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import free_port, wait_until
from raft_procs import leader, node_at, request, start_servers, wait_one_leader
from sched_procs import make_client, nodes, wait_ready_nodes

pytestmark = pytest.mark.cluster


def argv_of(body: object) -> list[str]:
    """The argv a ``/pprof/cmdline`` answer carries (NUL-separated text)."""
    assert isinstance(body, str), body
    return body.split("\x00")


def test_host_and_pprof_reach_the_named_agent(procs, loopback, tmp_path: Path) -> None:
    """server_id (name, leader) and node_id reach that agent; a client-only agent profiles
    itself without a target (Q7) and reaches a server by name; unknown targets fail with
    section 4's statuses."""
    debug_file = tmp_path / "debug.hcl"
    debug_file.write_text("enable_debug = true\n")
    config = ["-config", str(debug_file)]
    s1, s2 = start_servers(procs, tmp_path, loopback, ["fw1", "fw2"], expect=2, extra=config)
    leader_address = wait_one_leader([s1, s2])
    client_ip = loopback.next()
    client = make_client(procs, tmp_path, client_ip, "fwc", [s1, s2],
                         extra=["-rpc-port", str(free_port(client_ip)), *config])
    client.start()
    everyone = [s1, s2, client]
    [node] = wait_ready_nodes(s1, 1, watch=everyone)
    node_id = node["ID"]

    # server_id: another server by name, and the leader
    status, body = request("GET", f"{s1.url}/v1/agent/host?server_id=fw2.global")
    assert status == 200 and body["AgentID"] == "fw2.global", (status, body)
    assert list(body["HostData"]) == ["OS", "Network", "ResolvConf", "Hosts", "Environment", "Disk"]
    status, body = request("GET", f"{s1.url}/v1/agent/pprof/cmdline?server_id=fw2.global")
    assert status == 200 and "fw2" in argv_of(body) and "fw1" not in argv_of(body), body
    leader_node = node_at([s1, s2], leader_address)
    status, body = request("GET", f"{s2.url}/v1/agent/host?server_id=leader")
    assert status == 200 and body["AgentID"] == leader_node.member_name, (status, body)

    # node_id: the client-only agent, reached over its own rpc listener
    def host_of_node() -> tuple[int, object]:
        return request("GET", f"{s2.url}/v1/agent/host?node_id={node_id}")
    status, body = wait_until("the client node reachable by node_id", host_of_node,
                              lambda answer: answer[0] == 200, timeout=30, watch=everyone)
    assert body["AgentID"] == node_id, body
    status, body = request("GET", f"{s1.url}/v1/agent/pprof/cmdline?node_id={node_id}")
    assert status == 200 and "-client" in argv_of(body) and "fwc" in argv_of(body), (status, body)

    # a client-only agent: no target profiles itself (Q7); server_id goes through a server
    status, body = request("GET", f"{client.url}/v1/agent/pprof/cmdline")
    assert status == 200 and "fwc" in argv_of(body), (status, body)
    status, body = request("GET", f"{client.url}/v1/agent/pprof/cmdline?server_id=fw1.global")
    assert status == 200 and "fw1" in argv_of(body), (status, body)
    status, body = request("GET", f"{client.url}/v1/agent/host?server_id=fw2.global")
    assert status == 200 and body["AgentID"] == "fw2.global", (status, body)

    # unknown targets
    assert request("GET", f"{s1.url}/v1/agent/host?server_id=x") == (500, "unknown Nomad server x")
    assert request("GET", f"{s1.url}/v1/agent/host?node_id=x") == (404, 'Unknown node "x"')
    assert request("GET", f"{client.url}/v1/agent/pprof/goroutine?node_id=x") == (404, 'Unknown node "x"')
    assert leader(s1) == leader_address   # nothing above disturbed the cluster
    assert len(nodes(s1)) == 1
