"""/v1/agent/health, /v1/agent/self stats, extra response headers and members on a
client-only agent, against whole agents in-process (agent-api.md 1.2, 1.6, 3.3, 3.6)."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, AsyncIterator

import trio

from agent.config import parse_agent_args
from agent.runtime import AgentRuntime, RunningAgent

from .conformance_helpers import http
from .helpers import TEXT, wait_until_async
from .test_agent_runtime import FAST

EXTRA = (("X-Shoal-Test", "yes"), ("Access-Control-Allow-Origin", "*"))


@asynccontextmanager
async def agent(argv: list[str], **settings: Any) -> AsyncIterator[tuple[AgentRuntime, RunningAgent]]:
    """One agent on 127.0.0.1 with ports 0 (``settings`` override AgentConfig fields)."""
    config = parse_agent_args(["-bind", "127.0.0.1", "-http-port", "0", "-serf-port", "0",
                               "-rpc-port", "0", *argv])
    runtime = AgentRuntime(replace(config, **settings), gossip_overrides=FAST)
    async with trio.open_nursery() as nursery:
        running = await nursery.start(runtime.run)
        yield runtime, running
        nursery.cancel_scope.cancel()


async def fetch(running: RunningAgent, method: str, path: str) -> tuple[int, bytes, dict[str, str]]:
    """One request over real HTTP: (status, body, headers with lower-case names)."""
    reply = await http(running.http_address[1], method, path)
    return reply.status, reply.body, reply.headers


async def healthy(running: RunningAgent, query: str = "") -> tuple[int, bytes, dict[str, str]]:
    async def probe() -> tuple[int, bytes, dict[str, str]]:
        return await fetch(running, "GET", "/v1/agent/health" + query)
    return await wait_until_async(probe, lambda answer: answer[0] == 200, timeout=15)


async def test_dev_agent_health_parts_and_type_filter() -> None:
    """A -dev agent checks both parts; ?type narrows; ?type=foo checks nothing and is {}."""
    with trio.fail_after(30):
        async with agent(["-dev", "-node", "d"]) as (_, running):
            status, body, headers = await healthy(running)
            assert headers["content-type"] == "application/json"
            assert body == b'{"client":{"ok":true,"message":"ok"},"server":{"ok":true,"message":"ok"}}'
            for query, expected in [("?type=client", {"client": {"ok": True, "message": "ok"}}),
                                    ("?type=server&stale", {"server": {"ok": True, "message": "ok"}}),
                                    ("?type=foo", {}), ("?type=", {})]:
                status, body, _ = await fetch(running, "GET", "/v1/agent/health" + query)
                assert (status, json.loads(body)) == (200, expected), query
            for method in ("PUT", "DELETE"):
                status, body, headers = await fetch(running, method, "/v1/agent/health")
                assert (status, body, headers["content-type"]) == (405, b"Invalid method", TEXT)
            status, body, _ = await fetch(running, "GET", "/v1/agent/health?stale=maybe")
            assert (status, body) == (400, b"Expect `true` or `false` for `stale` query string parameter")
            status, body, _ = await fetch(running, "GET", "/v1/agent/health?wait=soon")
            assert (status, body) == (400, b"Invalid wait time")


async def test_server_only_health_type_client_is_500_json_as_text() -> None:
    """agent-api.md 9: ?type=client on a server-only agent is 500, JSON body, text/plain."""
    with trio.fail_after(30):
        async with agent(["-server", "-node", "s", "-bootstrap-expect", "1"]) as (_, running):
            await healthy(running)
            status, body, headers = await fetch(running, "GET", "/v1/agent/health?type=client")
            assert (status, body, headers["content-type"]) == \
                (500, b'{"client":{"ok":false,"message":"client not enabled"}}', TEXT)
            status, body, _ = await fetch(running, "GET", "/v1/agent/health?type=server&region=nowhere")
            assert (status, body) == (500, b'{"server":{"ok":false,"message":"No path to region"}}')


async def test_without_leader_stale_fails_at_once_default_after_hold_timeout() -> None:
    """No leader (expect 3, alone): ?stale is `no leader` at once; the default waits ~5 s
    for a leader and then reports `No cluster leader`."""
    with trio.fail_after(30):
        async with agent(["-server", "-node", "s", "-bootstrap-expect", "3"]) as (_, running):
            started = trio.current_time()
            status, body, headers = await fetch(running, "GET", "/v1/agent/health?stale")
            assert (status, body, headers["content-type"]) == \
                (500, b'{"server":{"ok":false,"message":"no leader"}}', TEXT)
            assert trio.current_time() - started < 2
            started = trio.current_time()
            status, body, _ = await fetch(running, "GET", "/v1/agent/health")
            assert (status, body) == (500, b'{"server":{"ok":false,"message":"No cluster leader"}}')
            assert 4.5 <= trio.current_time() - started < 10


async def test_extra_headers_on_answers_and_errors_not_on_catch_all_404() -> None:
    """http_api_response_headers are on 200s and errors, never on the empty 404 of unknown paths."""
    with trio.fail_after(30):
        async with agent(["-dev", "-node", "h"], http_api_response_headers=EXTRA) as (_, running):
            await healthy(running)
            for method, path, expected in [("GET", "/v1/agent/self", 200),
                                           ("GET", "/v1/agent/health", 200),
                                           ("DELETE", "/v1/agent/self", 405),
                                           ("GET", "/v1/agent/members?stale=maybe", 400)]:
                status, _, headers = await fetch(running, method, path)
                assert status == expected
                assert headers["x-shoal-test"] == "yes" and headers["access-control-allow-origin"] == "*"
            status, body, headers = await fetch(running, "GET", "/v1/agent/nosuch")
            assert (status, body) == (404, b"")
            assert "x-shoal-test" not in headers and "content-type" not in headers


def assert_all_strings(stats: dict[str, Any], sections: set[str]) -> None:
    assert set(stats) == sections
    for name, section in stats.items():
        if name == "vault":
            assert section is None
            continue
        assert section and all(isinstance(v, str) for v in section.values()), name


async def test_self_stats_per_mode_and_client_only_members_are_forwarded() -> None:
    """Server: nomad/raft/serf/runtime/vault; client-only: client/runtime and the empty
    member; the client-only agent's /members is its server's view (agent-api.md 1.6)."""
    with trio.fail_after(40):
        async with agent(["-server", "-node", "s1", "-bootstrap-expect", "1"]) as (server_rt, server):
            await healthy(server)
            _, body, _ = await fetch(server, "GET", "/v1/agent/self")
            document = json.loads(body)
            assert list(document) == ["config", "member", "stats"]
            # The compact answer splices in the config's cached text: it must still be
            # exactly Go's compact encoding of the document, and hold what ?pretty shows.
            assert body == json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
            _, pretty, _ = await fetch(server, "GET", "/v1/agent/self?pretty")
            shown = json.loads(pretty)
            assert (shown["config"], shown["member"]) == (document["config"], document["member"])
            assert list(shown["stats"]) == list(document["stats"])
            # /members also answers from cached per-member texts: the same rule.
            _, body, _ = await fetch(server, "GET", "/v1/agent/members")
            listed = json.loads(body)
            assert body == json.dumps(listed, separators=(",", ":"), ensure_ascii=False).encode()
            _, pretty, _ = await fetch(server, "GET", "/v1/agent/members?pretty")
            assert json.loads(pretty) == listed
            assert [m["Name"] for m in listed["Members"]] == ["s1.global"]
            assert listed["Members"][0]["Tags"]["role"] == "nomad"
            assert document["member"]["Name"] == "s1.global"
            assert_all_strings(document["stats"], {"nomad", "raft", "serf", "runtime", "vault"})
            assert document["stats"]["nomad"]["leader"] == "true"
            rpc = f"127.0.0.1:{server_rt.config.rpc_port}"
            async with agent(["-client", "-node", "c1", "-servers", rpc]) as (_, client):
                status, body, _ = await healthy(client)
                assert json.loads(body) == {"client": {"ok": True, "message": "ok"}}
                status, body, headers = await fetch(client, "GET", "/v1/agent/members")
                assert (status, headers["content-type"]) == (200, "application/json")
                members = json.loads(body)
                assert (members["ServerName"], members["ServerRegion"], members["ServerDC"]) == \
                    ("s1", "global", "dc1")
                assert [m["Name"] for m in members["Members"]] == ["s1.global"]
                _, body, _ = await fetch(client, "GET", "/v1/agent/self")
                document = json.loads(body)
                assert body == json.dumps(document, separators=(",", ":"),
                                          ensure_ascii=False).encode()
                assert document["member"] == {
                    "Name": "", "Addr": None, "Port": 0, "Tags": None, "Status": "none",
                    "ProtocolMin": 0, "ProtocolMax": 0, "ProtocolCur": 0, "DelegateMin": 0,
                    "DelegateMax": 0, "DelegateCur": 0}
                assert_all_strings(document["stats"], {"client", "runtime"})
                assert document["stats"]["client"]["known_servers"] == rpc
                assert document["config"]["AdvertiseAddrs"]["Serf"] == ""
                status, body, _ = await fetch(client, "GET", "/v1/agent/health?type=server")
                assert (status, body) == (500, b'{"server":{"ok":false,"message":"server not enabled"}}')


async def test_client_without_servers_is_unhealthy() -> None:
    """A client-only agent that knows no server: `no known servers`, 500."""
    with trio.fail_after(20):
        async with agent(["-client", "-node", "lonely"]) as (_, running):
            status, body, headers = await fetch(running, "GET", "/v1/agent/health")
            assert (status, body, headers["content-type"]) == \
                (500, b'{"client":{"ok":false,"message":"no known servers"}}', TEXT)
