"""Bad input to raft servers: garbage on the rpc port, a vote from a stranger, a torn log tail."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from harness import wait_until
from raft_procs import (node_at, put_var, raft_address, request, restart, stale_vars, start_servers,
                          wait_one_leader)
from raftlite.codec import encode_message
from raftlite.messages import RequestVote

pytestmark = pytest.mark.cluster


def raft_stats(node) -> dict[str, str]:
    status, body = request("GET", f"{node.url}/v1/agent/self", timeout=5)
    assert status == 200, (status, body)
    return body["stats"]["raft"]


def rpc_counters(node) -> dict[str, int]:
    status, body = request("GET", f"{node.url}/v1/metrics", timeout=5)
    assert status == 200, (status, body)
    return {c["Name"]: c["Count"] for c in body["Counters"] if c["Name"].startswith("shoal.rpc.")}


def raft_counter(node, prefix: str) -> int:
    status, body = request("GET", f"{node.url}/v1/metrics", timeout=5)
    assert status == 200, (status, body)
    return sum(c["Count"] for c in body["Counters"] if c["Name"].startswith(f"shoal.raft.{prefix}"))


def send_raw(node, payload: bytes) -> bytes:
    """Connect to the rpc port, send ``payload``, return what comes back before the server closes."""
    chunks: list[bytes] = []
    with socket.create_connection((node.ip, node.rpc_port), timeout=10) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except (ConnectionResetError, BrokenPipeError):
            pass   # the server closed with our bytes unread: also a refusal
        except OSError as exc:
            # ENOTCONN from shutdown(): the server had already reset the connection
            if exc.errno != errno.ENOTCONN:
                raise
    return b"".join(chunks)


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def test_garbage_on_the_rpc_port_and_a_strangers_vote_leave_the_cluster_unharmed(procs, loopback, tmp_path):
    """Unknown first bytes, bad frames and a high-term RequestVote from an unknown server change nothing."""
    nodes = start_servers(procs, tmp_path, loopback, ["g1", "g2", "g3"], expect=3)
    first = wait_one_leader(nodes)
    leader_node = node_at(nodes, first)
    follower = next(n for n in nodes if n is not leader_node)
    term_before = int(raft_stats(leader_node)["term"])

    assert send_raw(follower, b"GET / HTTP/1.1\r\n\r\n") == b""          # unknown protocol byte
    assert send_raw(follower, b"\x01" + frame(b"\xc1not msgpack")) == b""  # bad RPC frame
    send_raw(follower, b"\x02" + frame(b"\x93\x01\x02"))                   # undecodable raft message
    send_raw(follower, b"\x02" + struct.pack(">I", 2**31))                 # oversized raft frame
    counters = wait_until("the drops to be counted", lambda: rpc_counters(follower),
                          lambda c: c.get("shoal.rpc.dropped.unknown_protocol", 0) >= 1
                          and c.get("shoal.rpc.dropped.rpc_decode", 0) >= 1
                          and c.get("shoal.rpc.dropped.oversized", 0) >= 1
                          and sum(v for k, v in c.items() if k.startswith("shoal.rpc.dropped.raft_")) >= 1,
                          timeout=10, watch=nodes)
    assert counters

    # A server that is not (or no longer) in the configuration asks for votes at a far higher term.
    stranger = RequestVote(term=term_before + 100, source_id="removed-server",
                           source_address="127.0.0.1:1", last_log_index=10**6, last_log_term=term_before + 99)
    for target in nodes:
        send_raw(target, b"\x02" + frame(encode_message(stranger)))
    wait_until("every server to refuse the stranger's vote",
               lambda: [raft_counter(n, "votes_refused") for n in nodes],
               lambda counts: all(c >= 1 for c in counts), timeout=10, watch=nodes)
    status, body = put_var(follower, "after/garbage", {"ok": "yes"})
    assert status == 200, (status, body)
    assert wait_one_leader(nodes) == first
    stats = [raft_stats(n) for n in nodes]
    assert {s["term"] for s in stats} == {str(term_before)}, stats

    # Fault injection is refused on agents not started with -fault-injection, and changes nothing.
    status, body = request("PUT", f"{follower.url}/v1/agent/faults", {"Loss": 1.0})
    assert status == 403 and "fault injection is disabled" in body, (status, body)
    status, body = put_var(follower, "after/refused-faults", {"ok": "yes"})
    assert status == 200, (status, body)


def test_a_torn_log_tail_is_cut_logged_and_the_server_catches_up(procs, loopback, tmp_path):
    """A follower killed mid-write (its log ends in half a record) restarts, logs the cut, and catches up."""
    nodes = start_servers(procs, tmp_path, loopback, ["t1", "t2", "t3"], expect=3)
    first = wait_one_leader(nodes)
    for i in range(20):
        status, body = put_var(nodes[i % 3], f"torn/{i:02d}", {"i": str(i)})
        assert status == 200, (status, body)
    victim = next(n for n in nodes if raft_address(n) != first)
    victim.kill9()
    victim.wait_exit(10)
    log_file = tmp_path / f"data-{victim.node}" / "raft" / "log"
    assert log_file.exists(), sorted(p.name for p in log_file.parent.iterdir())
    size = log_file.stat().st_size
    with log_file.open("ab") as handle:        # a record header promising more than was written
        handle.write(struct.pack(">II", 4096, 0xDEADBEEF) + b"\x92partial")
    others = [n for n in nodes if n is not victim]
    status, body = put_var(others[0], "torn/while-down", {"i": "x"})
    assert status == 200, (status, body)

    back = restart(procs, victim, extra=["-bootstrap-expect", "3"],
                   join=[f"{n.ip}:{n.serf_port}" for n in others])
    everyone = others + [back]
    wait_one_leader(everyone, timeout=60)
    expected = sorted([f"torn/{i:02d}" for i in range(20)] + ["torn/while-down"])
    wait_until(f"{back.name} to catch up", lambda: stale_vars(back, "torn/"),
               lambda paths: paths == expected, timeout=60, watch=everyone)
    assert "raft log tail cut" in back.log_text()
    assert log_file.stat().st_size >= size
