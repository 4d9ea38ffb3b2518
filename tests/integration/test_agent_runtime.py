"""Whole agents in-process (gossip + HTTP on 127.0.0.1, port 0) driven over real HTTP."""

from __future__ import annotations

import json
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import trio

from agent.config import parse_agent_args
from agent.runtime import AgentRuntime, RunningAgent, StartupError, load_node_id

from .helpers import wait_until, wait_until_async
from .test_http_api import raw_request

FAST = dict(probe_interval=0.3, probe_timeout=0.1, gossip_interval=0.05, tcp_timeout=1.0,
            push_pull_interval=5.0, broadcast_timeout=2.0, leave_propagate_delay=0.2)


@asynccontextmanager
async def agents(*argvs: list[str]) -> AsyncIterator[list[tuple[AgentRuntime, RunningAgent]]]:
    """Start one agent per argv (ports 0 on 127.0.0.1) and stop them all afterwards."""
    async with trio.open_nursery() as nursery:
        started = []
        for argv in argvs:
            config = parse_agent_args(["-bind", "127.0.0.1", "-http-port", "0", "-serf-port", "0", "-rpc-port", "0",
                                       *argv])
            runtime = AgentRuntime(config, gossip_overrides=FAST)
            running = await nursery.start(runtime.run)
            started.append((runtime, running))
        yield started
        nursery.cancel_scope.cancel()


async def get_json(running: RunningAgent, method: str, path: str) -> tuple[int, Any]:
    status, body, _ = await raw_request(running.http_address[1], method, path)
    return status, (json.loads(body) if status == 200 and body else body)


async def test_two_agents_join_over_http_and_list_members() -> None:
    """PUT /v1/agent/join joins two agents; /v1/agent/members lists both with Nomad's tags."""
    with trio.fail_after(30):
        async with agents(["-server", "-node", "a", "-bootstrap-expect", "1"],
                          ["-server", "-node", "b", "-region", "r2", "-dc", "d2"]) as started:
            (_, a), (_, b) = started
            host, port = a.serf_address
            status, result = await get_json(b, "PUT", f"/v1/agent/join?address={host}:{port}")
            assert (status, result) == (200, {"num_joined": 1, "error": ""})

            async def names() -> set[str]:
                _, members = await get_json(a, "GET", "/v1/agent/members")
                return {m["Name"] for m in members["Members"] if m["Status"] == "alive"}

            await wait_until_async(names, lambda seen: seen == {"a.global", "b.r2"}, timeout=10)
            _, members = await get_json(a, "GET", "/v1/agent/members")
            assert (members["ServerName"], members["ServerRegion"], members["ServerDC"]) == \
                ("a", "global", "dc1")
            by_name = {m["Name"]: m for m in members["Members"]}
            tags_a = by_name["a.global"]["Tags"]
            assert list(tags_a) == ["role", "region", "dc", "build", "revision", "vsn", "raft_vsn",
                                    "id", "rpc_addr", "port", "bootstrap", "expect"]
            assert tags_a["bootstrap"] == "1" and tags_a["expect"] == "1" and "mvn" not in tags_a
            uuid.UUID(tags_a["id"])
            tags_b = by_name["b.r2"]["Tags"]
            assert (tags_b["region"], tags_b["dc"], tags_b["vsn"], tags_b["raft_vsn"]) == \
                ("r2", "d2", "1", "3")
            assert "expect" not in tags_b and "bootstrap" not in tags_b
            assert by_name["b.r2"]["Port"] == b.serf_address[1]
            assert [by_name["b.r2"][k] for k in ("ProtocolMin", "ProtocolMax", "ProtocolCur",
                                                 "DelegateMin", "DelegateMax", "DelegateCur")] == \
                [1, 5, 2, 2, 5, 4]


async def test_join_failure_is_200_with_multierror_text() -> None:
    """A join where every address fails answers 200 with num_joined 0 and go-multierror text."""
    with trio.fail_after(30):
        async with agents(["-server", "-node", "a"]) as [(_, a)]:
            status, result = await get_json(
                a, "PUT", "/v1/agent/join?address=127.0.0.1:1&address=nosuch.invalid")
            assert status == 200 and result["num_joined"] == 0
            assert result["error"] == (
                "2 errors occurred:\n"
                "\t* Failed to join 127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused\n"
                "\t* Failed to resolve nosuch.invalid: lookup nosuch.invalid: no such host\n\n")


async def test_force_leave_unknown_member_is_200_and_known_failed_becomes_left() -> None:
    """Force-leave of an unknown name is a silent 200; of a failed member it makes it left."""
    with trio.fail_after(40):
        async with trio.open_nursery() as outer:
            async with agents(["-server", "-node", "a"]) as [(_, a)]:
                status, body, content_type = await raw_request(
                    a.http_address[1], "PUT", "/v1/agent/force-leave?node=nobody.global")
                assert (status, body, content_type) == (200, b"", None)
                # b runs in its own nursery so it can be killed without leaving.
                b_scope = trio.CancelScope()
                b_ready: list[RunningAgent] = []

                async def run_b() -> None:
                    with b_scope:
                        config = parse_agent_args(["-server", "-node", "b", "-bind", "127.0.0.1",
                                                   "-http-port", "0", "-serf-port", "0",
                                                   "-rpc-port", "0"])
                        async with trio.open_nursery() as inner:
                            b_ready.append(await inner.start(AgentRuntime(config,
                                                             gossip_overrides=FAST).run))

                outer.start_soon(run_b)
                await wait_until(lambda: b_ready, timeout=5)
                host, port = a.serf_address
                await get_json(b_ready[0], "PUT", f"/v1/agent/join?address={host}:{port}")
                handle = a.handle
                assert handle is not None
                statuses = lambda: {m.name: str(m.status) for m in handle.members()}  # noqa: E731
                await wait_until(lambda: statuses().get("b.global") == "alive", timeout=10,
                                 describe=statuses)
                b_scope.cancel()  # like kill -9: no leave
                await wait_until(lambda: statuses().get("b.global") == "failed", timeout=20,
                                 describe=statuses)
                status, body, _ = await raw_request(a.http_address[1], "POST",
                                                    "/v1/agent/force-leave?node=b.global")
                assert (status, body) == (200, b"")
                await wait_until(lambda: statuses().get("b.global") == "left", timeout=5,
                                 describe=statuses)


async def test_metrics_expose_gossip_counters() -> None:
    """/v1/metrics lists gossip counters as shoal.gossip.<name> and the member gauges."""
    with trio.fail_after(30):
        async with agents(["-server", "-node", "a"]) as [(_, a)]:
            sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            with sock:
                await sock.sendto(b"\xee garbage", a.serf_address)

            async def dropped() -> int:
                _, metrics = await get_json(a, "GET", "/v1/metrics")
                return sum(c["Count"] for c in metrics["Counters"]
                           if c["Name"].startswith("shoal.gossip.dropped."))

            await wait_until_async(dropped, lambda count: count >= 1, timeout=5)
            _, metrics = await get_json(a, "GET", "/v1/metrics")
            gauges = {g["Name"]: g["Value"] for g in metrics["Gauges"]}
            assert gauges["shoal.gossip.members.alive"] == 1.0
            assert list(metrics["Counters"][0]) == ["Name", "Count", "Rate", "Sum", "Min", "Max",
                                                    "Mean", "Stddev", "Labels"]


async def test_client_only_agent_serves_http_without_gossip() -> None:
    """A -client agent runs the HTTP API; join and force-leave are 501 there."""
    with trio.fail_after(10):
        async with agents(["-client", "-node", "c"]) as [(_, c)]:
            assert c.serf_address is None
            status, body, _ = await raw_request(c.http_address[1], "PUT",
                                                "/v1/agent/join?address=127.0.0.1")
            assert (status, body) == (501, b"Invalid method")


async def test_startup_join_failure_exits_1() -> None:
    """-join with no reachable address makes the agent stop with status 1."""
    with trio.fail_after(10):
        config = parse_agent_args(["-server", "-node", "a", "-bind", "127.0.0.1", "-http-port", "0",
                                   "-serf-port", "0", "-rpc-port", "0", "-join", "127.0.0.1:1"])
        assert await AgentRuntime(config, gossip_overrides=FAST).run() == 1


async def test_port_in_use_is_a_startup_error() -> None:
    """An HTTP port already bound fails at start with a StartupError naming the address."""
    with trio.fail_after(10):
        holder = trio.socket.socket()
        with holder:
            await holder.bind(("127.0.0.1", 0))
            holder.listen(1)
            port = holder.getsockname()[1]
            config = parse_agent_args(["-server", "-bind", "127.0.0.1", "-http-port", str(port),
                                       "-serf-port", "0", "-rpc-port", "0"])
            with pytest.raises(StartupError, match=f"127.0.0.1:{port}"):
                await AgentRuntime(config).run()


def test_node_id_is_kept_in_the_data_dir(tmp_path: Path) -> None:
    """With -data-dir the node id is written once to server/node-id and read back."""
    config = parse_agent_args(["-server", "-data-dir", str(tmp_path)])
    first = load_node_id(config)
    assert (tmp_path / "server" / "node-id").read_text() == first
    assert load_node_id(config) == first
    assert load_node_id(parse_agent_args(["-dev", "-data-dir", str(tmp_path)])) != first


async def test_retry_join_gives_up_after_retry_max() -> None:
    """-retry-join against nothing stops the agent with status 1 after -retry-max attempts."""
    with trio.fail_after(10):
        config = parse_agent_args(["-server", "-node", "a", "-bind", "127.0.0.1", "-http-port", "0",
                                   "-serf-port", "0", "-rpc-port", "0", "-retry-join", "127.0.0.1:1",
                                   "-retry-interval", "50ms", "-retry-max", "2"])
        assert await AgentRuntime(config, gossip_overrides=FAST).run() == 1


async def test_retry_join_succeeds_once_the_seed_is_up() -> None:
    """-retry-join keeps trying while the seed is down, then joins once it is up."""
    with trio.fail_after(20):
        probe = trio.socket.socket()
        await probe.bind(("127.0.0.1", 0))
        seed_port = probe.getsockname()[1]
        probe.close()
        async with agents(["-server", "-node", "late", "-retry-join", f"127.0.0.1:{seed_port}",
                           "-retry-interval", "100ms"]) as [(_, late)]:
            handle = late.handle
            assert handle is not None
            await wait_until(lambda: handle.stats().counters.get("driver.dial_errors", 0) >= 2,
                             timeout=5, describe=lambda: handle.stats().counters)
            config = parse_agent_args(["-server", "-node", "seed", "-bind", "127.0.0.1",
                                       "-http-port", "0", "-serf-port", str(seed_port),
                                       "-rpc-port", "0"])
            async with trio.open_nursery() as nursery:
                await nursery.start(AgentRuntime(config, gossip_overrides=FAST).run)
                await wait_until(
                    lambda: {str(m.status) for m in handle.members()
                             if m.name == "seed.global"} == {"alive"},
                    timeout=10, describe=handle.members)
                nursery.cancel_scope.cancel()
