"""The trio gossip driver with real GossipCores on 127.0.0.1 sockets."""

from __future__ import annotations

import os
import socket

import trio

from gossip.events import JoinFinished, LeaveFinished, MemberJoined
from gossip.driver import dial_error
from gossip.keyring import Keyring

from .helpers import Node, all_alive, fast_config, start_node, wait_until


async def test_three_nodes_join_and_see_each_other() -> None:
    """Three drivers join through one seed and every node lists all three alive."""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nodes = [await start_node(nursery, f"n{i}") for i in range(3)]
            for node in nodes[1:]:
                num_joined, errors = await node.handle.join([nodes[0].address])
                assert (num_joined, errors) == (1, ())
            names = {n.name for n in nodes}
            await wait_until(lambda: all_alive(nodes, names), timeout=10,
                             describe=lambda: [n.statuses() for n in nodes])
            assert any(isinstance(f, MemberJoined) for f in nodes[0].facts)
            assert any(isinstance(f, JoinFinished) for f in nodes[1].facts)
            nursery.cancel_scope.cancel()


async def test_join_refused_reports_go_dial_error() -> None:
    """Joining a closed port fails with memberlist's 'Failed to join' and Go's dial text."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            node = await start_node(nursery, "lonely")
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
            probe.close()
            num_joined, errors = await node.handle.join([("127.0.0.1", closed_port)])
            assert num_joined == 0
            expected = f"dial tcp 127.0.0.1:{closed_port}: connect: connection refused"
            assert len(errors) == 1 and expected in errors[0], errors
            nursery.cancel_scope.cancel()


async def test_graceful_leave_is_seen_as_left() -> None:
    """A node that leaves gets LeaveFinished and the other node lists it as left."""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            a = await start_node(nursery, "a")
            b = await start_node(nursery, "b")
            assert (await b.handle.join([a.address]))[0] == 1
            await wait_until(lambda: all_alive([a, b], {"a", "b"}), timeout=10,
                             describe=lambda: a.statuses())
            assert await b.handle.leave(timeout=10)
            assert any(isinstance(f, LeaveFinished) for f in b.facts)
            await wait_until(lambda: a.statuses().get("b") == "left", timeout=10,
                             describe=lambda: a.statuses())
            nursery.cancel_scope.cancel()


async def test_silent_stream_is_closed_at_tcp_timeout() -> None:
    """A TCP connection that never sends anything is closed by the core at tcp_timeout and counted."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            node = await start_node(nursery, "n", config=fast_config(tcp_timeout=0.5))
            before = dict(node.handle.stats().dropped)
            stream = await trio.open_tcp_stream(*node.address)
            start = trio.current_time()
            with trio.fail_after(5):
                assert await stream.receive_some(100) == b""  # the node closed it
            assert trio.current_time() - start >= 0.4
            await stream.aclose()
            after = node.handle.stats().dropped
            assert sum(after.values()) > sum(before.values()), after
            nursery.cancel_scope.cancel()


async def test_partial_push_pull_is_closed_at_tcp_timeout() -> None:
    """A stream that starts a message and never finishes it is closed at the timeout."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            node = await start_node(nursery, "n", config=fast_config(tcp_timeout=0.5))
            stream = await trio.open_tcp_stream(*node.address)
            await stream.send_all(bytes([6, 0x83]))  # push/pull type, then a msgpack map head
            with trio.fail_after(5):
                while await stream.receive_some(100):
                    pass
            await stream.aclose()
            assert sum(node.handle.stats().dropped.values()) >= 1
            nursery.cancel_scope.cancel()


async def _send_datagrams(target: Node, payloads: list[bytes]) -> None:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        for payload in payloads:
            await sock.sendto(payload, target.address)


async def test_bad_datagrams_are_counted_and_members_unchanged() -> None:
    """Garbage, truncated, oversized and wrongly encrypted datagrams are dropped and counted."""
    key = bytes(range(16))
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            config = fast_config(max_packet_bytes=1500)
            a = await start_node(nursery, "a", config=config, key=key)
            b = await start_node(nursery, "b", config=config, key=key)
            assert (await b.handle.join([a.address]))[0] == 1
            await wait_until(lambda: all_alive([a, b], {"a", "b"}), timeout=10,
                             describe=lambda: a.statuses())
            members_before = a.statuses()
            wrong = Keyring([bytes(16)], os.urandom).encrypt(b"\x00hello")
            payloads = [b"\xff" * 40, b"", b"\x01", bytes(range(256)) * 12, wrong, b"\x07\x02\x00\x10"]
            await _send_datagrams(a, payloads)
            await wait_until(lambda: sum(a.handle.stats().dropped.values()) >= 4, timeout=5,
                             describe=lambda: a.handle.stats().dropped)
            dropped = a.handle.stats().dropped
            assert dropped.get("oversized", 0) >= 1, dropped
            assert dropped.get("decrypt", 0) >= 1, dropped
            assert a.statuses() == members_before
            nursery.cancel_scope.cancel()


async def test_plain_garbage_to_plain_node_is_counted() -> None:
    """Without encryption, undecodable and truncated datagrams are counted under their reasons."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            a = await start_node(nursery, "a")
            await _send_datagrams(a, [b"\xee\x00", b"\x00\x81", b"\x07\x03\x00\x05\x00\x05"])
            await wait_until(lambda: sum(a.handle.stats().dropped.values()) >= 3, timeout=5,
                             describe=lambda: a.handle.stats().counters)
            assert a.statuses() == {"a": "alive"}
            nursery.cancel_scope.cancel()


def test_dial_error_wording() -> None:
    """Dial failures read as Go's net errors do."""
    refused = ConnectionRefusedError(111, "Connection refused")
    assert dial_error(("10.0.0.9", 4648), refused) == \
        "dial tcp 10.0.0.9:4648: connect: connection refused"
    assert dial_error(("10.0.0.9", 4648), trio.TooSlowError()) == "dial tcp 10.0.0.9:4648: i/o timeout"
