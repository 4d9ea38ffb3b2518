"""Five real `shoal agent -server` processes on loopback: join, fail, leave, return."""

from __future__ import annotations

import signal

import pytest

from harness import (CONVERGE_DEADLINE, FAILURE_DEADLINE, ShoalNode, make_shoal,
                     wait_shoal_ready, wait_statuses, wait_until)

pytestmark = pytest.mark.cluster


def test_five_servers_join_fail_leave_force_leave_and_return(procs, loopback, tmp_path):
    """Five servers join via /v1/agent/join; kill -9 is failed, SIGTERM left, force-leave left, restart alive."""
    nodes: list[ShoalNode] = [make_shoal(procs, tmp_path, loopback.next(), f"n{i}") for i in range(1, 6)]
    for node in nodes:
        node.start()
    for node in nodes:
        wait_shoal_ready(node)

    # Join: every other node asks n1 to join (through the HTTP API, as `shoal server join` does).
    first = nodes[0]
    for node in nodes[1:]:
        status, body = node.join(first.serf_addr)
        assert status == 200 and isinstance(body, dict), (status, body)
        assert body == {"num_joined": 1, "error": ""}, body
    names = [n.member_name for n in nodes]
    wait_statuses(nodes, {name: "alive" for name in names}, what="5 servers to see each other alive",
                  timeout=CONVERGE_DEADLINE)
    view = first.member_map()
    for node in nodes:
        member = view[node.member_name]
        assert (member["Addr"], member["Port"]) == (node.ip, node.serf_port), member
        assert member["Tags"]["role"] == "nomad" and member["Tags"]["port"] == str(node.rpc_port), member

    # kill -9 of n5 and SIGTERM of n4 (-leave-on-terminate) at the same time.
    killed, leaver = nodes[4], nodes[3]
    survivors = nodes[:3]
    killed.kill9()
    leaver.signal(signal.SIGTERM)
    wait_statuses(survivors, {leaver.member_name: "left"}, what="SIGTERMed n4 to be left on survivors",
                  timeout=CONVERGE_DEADLINE)
    assert leaver.wait_exit(timeout=20) == 0, leaver.log_tail(30)
    wait_statuses(survivors, {killed.member_name: "failed", leaver.member_name: "left"},
                  what="kill -9'ed n5 to be failed on every survivor", timeout=FAILURE_DEADLINE)

    # force-leave of the failed node turns it to left everywhere.
    status, body = survivors[1].force_leave(killed.member_name)
    assert status == 200, (status, body)
    wait_statuses(survivors, {killed.member_name: "left", leaver.member_name: "left"},
                  what="force-left n5 to be left on every survivor", timeout=CONVERGE_DEADLINE)

    # The killed node comes back under the same name, address and ports, joining n1.
    killed.argv = killed.argv + ["-join", first.serf_addr]
    killed.start()
    wait_shoal_ready(killed)
    back = survivors + [killed]
    wait_statuses(back, {n.member_name: "alive" for n in back},
                  what="restarted n5 to be alive again everywhere", timeout=CONVERGE_DEADLINE)
    # (A newcomer never learns of members that left before it joined, as in memberlist.)
    wait_statuses(survivors, {leaver.member_name: "left"}, what="n4 to stay left", timeout=5)
    assert all(n.running() for n in back), [(n.name, n.returncode) for n in back]
    wait_until("n5 to list itself once", killed.members,
               lambda ms: [m["Name"] for m in ms].count(killed.member_name) == 1, timeout=5)
