"""/v1/agent/host and /v1/agent/pprof on in-process agents (agent-api.md 3.7, 3.9, 4)."""

from __future__ import annotations

import sys
import tracemalloc
from typing import Iterator

import pytest
import trio

from agent import pprof

from .conformance_helpers import JSON, TEXT, Agent, acl_tokens, agents, wait_leader
from .helpers import wait_until_async

HOST_KEYS = ["OS", "Network", "ResolvConf", "Hosts", "Environment", "Disk"]


@pytest.fixture(autouse=True)
def stop_tracemalloc() -> Iterator[None]:
    """A heap profile starts tracemalloc in this process; stop it so later tests run at full speed."""
    yield
    if tracemalloc.is_tracing():
        tracemalloc.stop()


async def _wait_status(agent: Agent, path: str, status: int = 200, timeout: float = 20.0) -> None:
    async def probe() -> int:
        return (await agent.call("GET", path)).status
    await wait_until_async(probe, lambda got: got == status, timeout=timeout)


async def test_dev_agent_host_shapes_and_targets() -> None:
    """Without a target the bare host object; with server_id (name, node ID, leader) or the
    agent's own node_id the wrapped {AgentID, HostData}; lookup failures per section 4."""
    async with agents() as ag:
        dev = await ag.start("-dev", "-node", "d1")
        await wait_leader(dev)
        bare = await dev.call("GET", "/v1/agent/host")
        assert list(bare.json()) == HOST_KEYS
        assert bare.body[-1:] != b"\n"
        node_id = dev.runtime.client.node_id   # type: ignore[union-attr]
        server_node_id = dev.running.node_id
        for query, agent_id in ((f"node_id={node_id}", node_id), ("server_id=d1.global", "d1.global"),
                                (f"server_id={server_node_id}", "d1.global"), ("server_id=leader", "d1.global")):
            wrapped = (await dev.call("GET", f"/v1/agent/host?{query}")).json()
            assert list(wrapped) == ["AgentID", "HostData"], query
            assert wrapped["AgentID"] == agent_id, query
            assert list(wrapped["HostData"]) == HOST_KEYS
        assert (await dev.call("GET", "/v1/agent/host?node_id=nosuch")).triple() == (
            404, b'Unknown node "nosuch"', TEXT)
        assert (await dev.call("GET", "/v1/agent/host?server_id=x")).triple() == (
            500, b"unknown Nomad server x", TEXT)
        assert (await dev.call("GET", "/v1/agent/host?server_id=x&node_id=y")).triple() == (
            400, b"Can only forward to either client node or server", TEXT)
        assert (await dev.call("GET", "/v1/agent/host?region=mars")).triple() == (
            500, b"No path to region", TEXT)
        assert (await dev.call("POST", "/v1/agent/host")).triple() == (405, b"Invalid method", TEXT)
        pretty = await dev.call("GET", "/v1/agent/host?pretty")
        assert pretty.content_type == JSON and pretty.body.endswith(b"\n")


async def test_pprof_on_a_dev_agent() -> None:
    """seconds defaults to 1 s; goroutine lists a task by name; 3.9 headers; 404 texts; 301."""
    async with agents() as ag:
        dev = await ag.start("-dev", "-node", "d2")

        async def parked_marker() -> None:
            await trio.sleep_forever()
        ag.nursery.start_soon(parked_marker, name="debug-routes-marker")

        started = trio.current_time()
        profile = await dev.call("GET", "/v1/agent/pprof/profile?seconds=&node_id=&server_id=")
        elapsed = trio.current_time() - started
        assert profile.status == 200, profile
        assert profile.headers["x-shoal-profile-seconds"] == "1"   # the default window
        assert elapsed >= 1.0, elapsed                              # and it was waited out
        assert profile.content_type == "application/octet-stream"
        assert profile.headers["content-disposition"] == 'attachment; filename="profile"'
        assert profile.headers["x-content-type-options"] == "nosniff"
        assert b"thread MainThread;" in profile.body

        dump = await dev.call("GET", "/v1/agent/pprof/goroutine?debug=2")
        assert (dump.status, dump.content_type) == (200, TEXT)
        assert dump.headers["x-content-type-options"] == "nosniff"
        assert "[debug-routes-marker]" in dump.text and "parked_marker" in dump.text
        binary = await dev.call("GET", "/v1/agent/pprof/goroutine")
        assert binary.headers["content-disposition"] == 'attachment; filename="goroutine"'
        assert b"task debug-routes-marker;" in binary.body

        cmdline = await dev.call("GET", "/v1/agent/pprof/cmdline")
        assert cmdline.triple() == (200, "\x00".join(sys.orig_argv).encode(), TEXT)
        heap = await dev.call("GET", "/v1/agent/pprof/heap?profile=goroutine&debug=1&gc=1")
        assert heap.text.startswith("heap profile: ")   # the path wins over ?profile= (Q8)
        empty = await dev.call("GET", "/v1/agent/pprof/mutex?debug=1")
        assert empty.text.startswith("mutex profile: empty.")

        assert (await dev.call("GET", "/v1/agent/pprof/")).triple() == (404, b"Invalid method", TEXT)
        assert (await dev.call("GET", "/v1/agent/pprof/nosuch")).triple() == (
            404, b"Pprof profile not found profile: nosuch", TEXT)
        assert (await dev.call("GET", "/v1/agent/pprof/heap/extra")).triple() == (
            404, b"Pprof profile not found profile: heap/extra", TEXT)
        assert (await dev.call("PUT", "/v1/agent/pprof/cmdline")).triple() == (405, b"Invalid method", TEXT)
        redirect = await dev.call("GET", "/v1/agent/pprof?debug=1")
        assert redirect.status == 301 and redirect.headers["location"] == "/v1/agent/pprof/?debug=1"
        assert (await dev.call("GET", "/v1/agent/pprof/goroutine?node_id=nosuch")).triple() == (
            404, b'Unknown node "nosuch"', TEXT)
        assert (await dev.call("GET", "/v1/agent/pprof/goroutine?server_id=x")).triple() == (
            500, b"unknown Nomad server x", TEXT)


async def test_without_enable_debug_debug_endpoints_are_refused() -> None:
    """ACLs off and enable_debug unset: 403 Permission denied; the path rules still come first."""
    async with agents() as ag:
        server = await ag.server("s1", expect=0)
        assert not server.runtime.config.enable_debug
        for path in ("/v1/agent/host", "/v1/agent/pprof/cmdline", "/v1/agent/pprof/nosuch",
                     "/v1/agent/host?server_id=s1.global"):
            assert (await server.call("GET", path)).triple() == (403, b"Permission denied", TEXT), path
        assert (await server.call("GET", "/v1/agent/pprof/")).triple() == (404, b"Invalid method", TEXT)
        assert (await server.call("GET", "/v1/agent/pprof/heap?node_id=a&server_id=b")).status == 400


async def test_node_forwarding_reaches_a_client_only_agent() -> None:
    """A server reaches a client-only agent by node_id over the client's rpc listener. The client
    has no enable_debug: host is still answered there (a client target accepts it with ACLs off),
    pprof is refused by it, and its own /pprof with no target profiles itself (Q7: 403 here);
    pprof with server_id from that client goes through to the server (no check on the client)."""
    async with agents() as ag:
        server = await ag.server("s1", enable_debug=True)
        client = await ag.client("c1", (server,))
        node_id = client.runtime.client.node_id   # type: ignore[union-attr]
        await _wait_status(server, f"/v1/agent/host?node_id={node_id}")
        wrapped = (await server.call("GET", f"/v1/agent/host?node_id={node_id}")).json()
        assert wrapped["AgentID"] == node_id and list(wrapped["HostData"]) == HOST_KEYS
        node = (await server.call("GET", f"/v1/node/{node_id}")).json()
        assert node["RPCAddr"] == f"127.0.0.1:{client.runtime.config.rpc_port}"
        refused = await server.call("GET", f"/v1/agent/pprof/cmdline?node_id={node_id}")
        assert refused.triple() == (403, b"Permission denied", TEXT)
        assert (await client.call("GET", "/v1/agent/pprof/cmdline")).triple() == (
            403, b"Permission denied", TEXT)
        assert (await client.call("GET", "/v1/agent/host")).status == 403
        via_server = await client.call("GET", "/v1/agent/pprof/goroutine?debug=1&server_id=s1.global")
        assert (via_server.status, via_server.content_type) == (200, TEXT)
        assert (await client.call("GET", "/v1/agent/pprof/goroutine?server_id=nobody")).triple() == (
            500, b"unknown Nomad server nobody", TEXT)
        # the client stops: its node is still registered, but nothing answers at its address
        client.stop()
        gone = await server.call("GET", f"/v1/agent/host?node_id={node_id}")
        assert gone.triple() == (404, b"No path to node", TEXT)


async def test_acls_on_the_token_travels_with_forwarded_requests() -> None:
    """ACLs on, enable_debug off everywhere: the caller's token is checked on each hop, so an
    agent:read token reads a client's host data by node_id but cannot profile it, and an
    agent:write token can; unknown tokens read ACL token not found (host) / Permission denied."""
    async with agents() as ag:
        server = await ag.server("s1", acl_enabled=True)
        client = await ag.client("c1", (server,), acl_enabled=True)
        secrets = await acl_tokens(server)
        node_id = client.runtime.client.node_id   # type: ignore[union-attr]

        async def probe() -> int:
            return (await server.call("GET", f"/v1/agent/host?node_id={node_id}",
                                      token=secrets["management"])).status
        await wait_until_async(probe, lambda got: got == 200, timeout=20)
        host = await server.call("GET", f"/v1/agent/host?node_id={node_id}", token=secrets["agent-read"])
        assert host.json()["AgentID"] == node_id
        path = f"/v1/agent/pprof/cmdline?node_id={node_id}"
        assert (await server.call("GET", path, token=secrets["agent-read"])).triple() == (
            403, b"Permission denied", TEXT)
        assert (await server.call("GET", path, token=secrets["agent-write"])).status == 200
        assert (await server.call("GET", path, token=secrets["unknown"])).triple() == (
            403, b"Permission denied", TEXT)
        assert (await server.call("GET", f"/v1/agent/host?node_id={node_id}",
                                  token=secrets["unknown"])).triple() == (403, b"ACL token not found", TEXT)
        via = await client.call("GET", "/v1/agent/host?server_id=s1.global", token=secrets["agent-read"])
        assert via.json()["AgentID"] == "s1.global"


def test_cap_is_documented_constant() -> None:
    """The seconds cap the docs name is the one the code applies."""
    assert pprof.profile_seconds(10**6) == pprof.MAX_SECONDS == 30
