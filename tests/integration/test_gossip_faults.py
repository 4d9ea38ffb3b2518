"""Real gossip drivers on 127.0.0.1 behind the agent's fault filter (partitions, loss, delay)."""

from __future__ import annotations

import random

import trio

from agent.faults import FaultFilter, FaultRules

from .helpers import Node, all_alive, fast_config, start_node, wait_until

NAMES = ("a", "b", "c")


async def start_cluster(nursery: trio.Nursery) -> list[Node]:
    """Three joined nodes, all alive everywhere; failed members are retried every 0.5 s."""
    config = fast_config(reconnect_interval=0.5)
    nodes = [await start_node(nursery, name, config=config) for name in NAMES]
    for node in nodes[1:]:
        assert (await node.handle.join([nodes[0].address]))[0] == 1
    await wait_until(lambda: all_alive(nodes, set(NAMES)), timeout=10,
                     describe=lambda: [n.statuses() for n in nodes])
    return nodes


def install_filter(node: Node, nodes: list[Node]) -> FaultFilter:
    """A FaultFilter knowing every node's gossip address, installed as the node's hook."""
    flt = FaultFilter(node.name, random.Random(0))
    flt.set_peers({f"{n.address[0]}:{n.address[1]}": n.name for n in nodes})
    node.handle.set_fault_hook(flt)
    return flt


def sees(node: Node, status: str, names: set[str]) -> bool:
    statuses = node.statuses()
    return all(statuses.get(name) == status for name in names)


async def test_partition_fails_both_sides_and_clearing_heals() -> None:
    """A partition {a} | {b, c} makes each side see the other failed; clearing it heals all."""
    with trio.fail_after(45):
        async with trio.open_nursery() as nursery:
            a, b, c = nodes = await start_cluster(nursery)
            filters = [install_filter(node, nodes) for node in nodes]
            rules = FaultRules.from_json({"Partitions": [["a"], ["b", "c"]], "Seed": 1})
            for flt in filters:
                flt.set_rules(rules)
            await wait_until(
                lambda: sees(a, "failed", {"b", "c"}) and sees(b, "failed", {"a"})
                and sees(c, "failed", {"a"}) and sees(b, "alive", {"c"}),
                timeout=20, describe=lambda: [n.statuses() for n in nodes])
            assert b.counter("driver.fault_dropped_sends") > 0
            assert filters[0].stats()["dropped.outbound.partition"] > 0
            for flt in filters:
                flt.clear()
            await wait_until(lambda: all_alive(nodes, set(NAMES)), timeout=20,
                             describe=lambda: [n.statuses() for n in nodes])
            nursery.cancel_scope.cancel()


async def test_inbound_drop_from_member_by_ip() -> None:
    """With drop_from x, a datagram from x's address never reaches the core and a TCP
    connection from x's IP (any port) is closed at once, long before tcp_timeout."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            node = await start_node(nursery, "n", config=fast_config(tcp_timeout=5.0))
            flt = FaultFilter("n", random.Random(0))
            flt.set_peers({"127.0.0.9:7000": "x"})
            flt.set_rules(FaultRules(drop_from=frozenset({"x"})))
            node.handle.set_fault_hook(flt)
            udp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            with udp:
                await udp.bind(("127.0.0.9", 7000))
                await udp.sendto(b"\xff" * 20, node.address)
                await wait_until(lambda: node.counter("driver.fault_dropped") == 1, timeout=5,
                                 describe=lambda: node.handle.stats().counters)
            assert sum(node.handle.stats().dropped.values()) == 0  # the core saw nothing
            tcp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
            await tcp.bind(("127.0.0.9", 0))
            await tcp.connect(node.address)
            stream = trio.SocketStream(tcp)
            start = trio.current_time()
            assert await stream.receive_some(100) == b""
            assert trio.current_time() - start < 2.0
            await stream.aclose()
            assert node.counter("driver.fault_closed_accepts") == 1
            assert flt.stats()["dropped.inbound.drop_from"] == 2
            nursery.cancel_scope.cancel()


async def test_total_outbound_loss_is_detected_as_failure() -> None:
    """With loss 1.0 on c's outbound traffic (UDP, dials and stream writes), a and b find c failed."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a, b, c = nodes = await start_cluster(nursery)
            install_filter(c, nodes).set_rules(FaultRules(loss=1.0, seed=2))
            await wait_until(lambda: sees(a, "failed", {"c"}) and sees(b, "failed", {"c"}),
                             timeout=20, describe=lambda: [n.statuses() for n in nodes])
            assert c.counter("driver.fault_dropped_sends") > 0
            assert sees(a, "alive", {"b"}) and sees(b, "alive", {"a"})
            nursery.cancel_scope.cancel()


async def test_small_delay_keeps_everyone_alive() -> None:
    """A 20 ms delay on every node's sends is applied (counted) and nobody is suspected."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nodes = await start_cluster(nursery)
            for node in nodes:
                install_filter(node, nodes).set_rules(FaultRules(delay=0.02, seed=3))
            start = {n.name: n.counter("driver.fault_delayed_sends") for n in nodes}
            await wait_until(
                lambda: all(n.counter("driver.fault_delayed_sends") >= start[n.name] + 30
                            for n in nodes),
                timeout=10, describe=lambda: [n.handle.stats().counters for n in nodes])
            assert all_alive(nodes, set(NAMES)), [n.statuses() for n in nodes]
            assert all(n.core.stats().counters.get("suspect", 0) == 0 for n in nodes)
            nursery.cancel_scope.cancel()
