"""/v1/agent/monitor on in-process agents: frames, heartbeats, plain text, errors, forwarding.

agent-api.md 3.8 and section 4. Agents share this process's log, so a forwarded stream
shows the same lines a local one would; that the stream really crossed the rpc port is
read from the target's ``streams_served`` counter (a node target can only be reached that
way: the server that receives the request has no other path to it).
"""

from __future__ import annotations

import base64
import gc
import json
import logging
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import trio

from agent.monitor import get_broadcaster
from agent.monitor_rpc import MONITOR_METHOD
from agent.rpc import RpcServer, RpcUnavailable
from agent.rpc_stream import StreamRefused, open_stream as open_rpc_stream
from agent.tlsutil import rpc_tls

from .conformance_helpers import (JSON, TEXT, Agent, acl_tokens, agents, decode_frames, open_stream,
                                  wait_known_servers, wait_leader)
from .helpers import wait_until, wait_until_async
from .test_tls_rpc import make_pki, tls_config

probe_log = logging.getLogger("tests.monitor")


def log_data(body: bytes) -> bytes:
    """The Data of every complete frame in ``body``, concatenated (a cut frame waits)."""
    try:
        frames = decode_frames(body)
    except ValueError:
        return b""
    return b"".join(base64.b64decode(frame["Data"]) for frame in frames if frame)


def live_streams() -> int:
    """Monitor subscriptions alive in this process (collected leftovers of other tests first)."""
    gc.collect()
    return len(get_broadcaster().subscriptions())


def marker() -> str:
    return f"probe-{uuid.uuid4().hex[:12]}"


async def test_frames_carry_a_line_logged_after_connecting_and_heartbeats() -> None:
    """Frames are back-to-back JSON; `{}` comes within ~1 s; a later log line arrives base64."""
    async with agents() as ag:
        server = await ag.server("s1", expect=0)
        async with open_stream(server.port, "/v1/agent/monitor") as stream:
            assert (stream.status, stream.headers.get("content-type")) == (200, JSON)
            await stream.read_until(lambda body: b"{}" in body, timeout=2.5)
            assert trio.current_time() - stream.opened_at <= 2.0   # due at 1 s; slack for a busy host
            token = marker()
            probe_log.info("monitor probe token=%s peer=%s", token, "a b")
            await stream.read_until(lambda body: token.encode() in log_data(body), timeout=5.0)
        frames = decode_frames(stream.data)
        assert {} in frames
        assert all(set(frame) == {"Data", "FileEvent"} for frame in frames if frame)
        line = next(x for x in log_data(stream.data).decode().splitlines() if token in x)
        assert line.split(" ", 1)[1] == f'[INFO]  tests.monitor: monitor probe: token={token} peer="a b"'


async def test_plain_gives_raw_lines_and_no_heartbeats() -> None:
    """plain=true: text/plain, raw lines, nothing at all while idle (no `{}`)."""
    async with agents() as ag:
        server = await ag.server("s1", expect=0)
        async with open_stream(server.port, "/v1/agent/monitor?plain=true&log_level=warn") as stream:
            assert (stream.status, stream.headers.get("content-type")) == (200, "text/plain")
            await trio.sleep(1.2)   # an idle spell longer than the heartbeat interval
            token = marker()
            probe_log.info("filtered out token=%s", token)
            probe_log.warning("kept token=%s", token)
            data = await stream.read_until(lambda body: b"kept" in body, timeout=5.0)
        assert b"{}" not in data and b"filtered out" not in data
        assert data.endswith(f"[WARN]  tests.monitor: kept: token={token}\n".encode())


async def test_log_json_and_location() -> None:
    """log_json=true gives hclog JSON lines; log_include_location adds @caller."""
    async with agents() as ag:
        server = await ag.server("s1", expect=0)
        path = "/v1/agent/monitor?log_json=true&log_include_location=1"
        async with open_stream(server.port, path) as stream:
            token = marker()
            probe_log.info("json probe token=%s", token)
            await stream.read_until(lambda body: token.encode() in log_data(body), timeout=5.0)
        line = next(x for x in log_data(stream.data).splitlines() if token.encode() in x)
        entry = json.loads(line)
        assert (entry["@level"], entry["@message"], entry["@module"], entry["token"]) == (
            "info", "json probe", "tests.monitor", token)
        path, _, line_number = entry["@caller"].rpartition(":")
        assert path.endswith("test_monitor_routes.py") and line_number.isdigit()


PARSE = 'strconv.ParseBool: parsing "maybe": invalid syntax'


@pytest.mark.parametrize("method,query,status,message", [
    ("GET", "log_level=verbose", 400, "Unknown log level: verbose"),
    ("GET", "log_level=verbose&log_json=maybe", 400, "Unknown log level: verbose"),
    ("GET", "log_json=maybe", 400, f"Unknown option for log json: {PARSE}"),
    ("GET", "log_json=1&plain=maybe", 400, f"Unknown option for plain: {PARSE}"),
    ("GET", "log_include_location=maybe", 400, f"Unknown option for log_include_location: {PARSE}"),
    ("GET", "plain=maybe&log_include_location=maybe", 400, f"Unknown option for plain: {PARSE}"),
    ("GET", "node_id=a&server_id=b", 400, "Cannot target node and server simultaneously"),
    ("GET", "log_include_location=maybe&node_id=a&server_id=b", 400,
     f"Unknown option for log_include_location: {PARSE}"),
    ("POST", "", 405, "Invalid method"),
    ("DELETE", "log_level=verbose", 405, "Invalid method"),
    ("GET", "server_id=nosuch.global", 500, "unknown Nomad server nosuch.global"),
])
async def test_bad_requests_answer_before_streaming(method: str, query: str, status: int,
                                                   message: str) -> None:
    """Each rule of 3.8 in Nomad's order, as a plain-text error and no stream."""
    async with agents() as ag:
        server = await ag.server("s1", expect=0)
        before = live_streams()
        reply = await server.call(method, f"/v1/agent/monitor?{query}")
        assert reply.triple() == (status, message.encode(), TEXT)
        assert live_streams() <= before


async def test_client_disconnect_ends_the_stream() -> None:
    """Closing the connection ends the stream silently and drops its subscription."""
    async with agents() as ag:
        server = await ag.server("s1", expect=0)
        before = live_streams()
        async with open_stream(server.port, "/v1/agent/monitor?plain=1") as stream:
            assert stream.status == 200
            assert live_streams() == before + 1
        await wait_until(lambda: live_streams() <= before, timeout=5,
                         describe=live_streams)


async def stream_status(agent: Agent, path: str, token: str | None = None) -> int:
    """The status of a monitor request (a stream is closed as soon as its head is read)."""
    async with open_stream(agent.port, path, token=token) as stream:
        return stream.status


async def served(agent: Agent) -> int:
    assert agent.runtime.server is not None
    return agent.runtime.server.rpc.counters["streams_served"]


async def test_server_id_streams_through_the_named_server() -> None:
    """server_id=<member name> and server_id=leader reach that server over the rpc port."""
    async with agents() as ag:
        s1 = await ag.server("s1", expect=1)
        s2 = await ag.server("s2", expect=0)
        joined = await s2.call("PUT", f"/v1/agent/join?address={s1.serf_address}")
        assert joined.status == 200, joined
        await wait_leader(s1)
        before = live_streams()
        await wait_until_async(lambda: stream_status(s1, "/v1/agent/monitor?server_id=s2.global"),
                               lambda status: status == 200, timeout=10)
        await wait_until_async(lambda: stream_status(s2, "/v1/agent/monitor?server_id=leader"),
                               lambda status: status == 200, timeout=10)
        for target, path in ((s2, "server_id=s2.global"), (s1, "server_id=leader")):
            count = await served(target)
            async with open_stream(s2.port if target is s1 else s1.port,
                                   f"/v1/agent/monitor?{path}&plain=true") as stream:
                assert (stream.status, stream.headers.get("content-type")) == (200, "text/plain")
                token = marker()
                probe_log.warning("forwarded token=%s", token)
                await stream.read_until(lambda body: token.encode() in body, timeout=5.0)
            assert await served(target) == count + 1
        # Closing the HTTP side ends the relay and the target's subscription too.
        await wait_until(lambda: live_streams() <= before, timeout=5,
                         describe=live_streams)


async def test_client_only_agent_routes_server_id_and_servers_route_node_id() -> None:
    """Q6: a client-only agent sends server_id to a server; node_id reaches the client's rpc port."""
    async with agents() as ag:
        server = await ag.server("s1", expect=1)
        await wait_leader(server)
        client = await ag.client("c1", (server,))
        await wait_known_servers(client)
        node_id = client.runtime.client.node_id   # type: ignore[union-attr]

        async def node_registered() -> int:
            return (await server.call("GET", f"/v1/node/{node_id}")).status
        await wait_until_async(node_registered, lambda status: status == 200, timeout=10)
        count = await served(server)
        async with open_stream(client.port, f"/v1/agent/monitor?server_id={server.name}") as stream:
            assert stream.status == 200
            await stream.read_until(lambda body: b"{}" in body, timeout=2.5)
        assert await served(server) == count + 1
        async with open_stream(server.port, f"/v1/agent/monitor?node_id={node_id}&plain=1") as stream:
            assert stream.status == 200
            token = marker()
            probe_log.warning("to the node token=%s", token)
            await stream.read_until(lambda body: token.encode() in body, timeout=5.0)
        unknown = await server.call("GET", "/v1/agent/monitor?node_id=no-such-node")
        assert unknown.triple() == (404, b'Unknown node "no-such-node"', TEXT)


async def test_acl_unknown_token_is_permission_denied_and_hops_recheck() -> None:
    """Q3: an unknown token is 403 Permission denied (not 200 empty); read tokens stream, forwarded too."""
    async with agents() as ag:
        s1 = await ag.server("s1", expect=1, acl_enabled=True)
        s2 = await ag.server("s2", expect=0, acl_enabled=True)
        assert (await s2.call("PUT", f"/v1/agent/join?address={s1.serf_address}")).status == 200
        tokens = await acl_tokens(s1)
        for secret, expected in ((None, b"Permission denied"), (tokens["unknown"], b"Permission denied"),
                                 (tokens["node-read"], b"Permission denied")):
            reply = await s1.call("GET", "/v1/agent/monitor", token=secret)
            assert reply.triple() == (403, expected, TEXT)
        for path in ("/v1/agent/monitor?plain=1", "/v1/agent/monitor?plain=1&server_id=s2.global"):
            await wait_until_async(lambda: stream_status(s1, path, tokens["agent-read"]),
                                   lambda status: status == 200, timeout=10)
        count = await served(s2)
        denied = await s1.call("GET", "/v1/agent/monitor?server_id=s2.global", token=tokens["node-read"])
        assert denied.triple() == (403, b"Permission denied", TEXT)
        assert await served(s2) == count
        # The target re-checks the token itself: a hop that skipped the check would stream.
        for secret in (tokens["unknown"], tokens["node-read"]):
            with pytest.raises(StreamRefused) as refused:
                await open_rpc_stream(s2.rpc_address, MONITOR_METHOD,
                                      {"AuthToken": secret, "LogLevel": "info", "PlainText": True})
            assert (refused.value.code, refused.value.message) == (403, "Permission denied")
        with pytest.raises(StreamRefused) as refused:
            await open_rpc_stream(s2.rpc_address, MONITOR_METHOD,
                                  {"AuthToken": tokens["agent-read"], "LogLevel": "verbose"})
        assert (refused.value.code, refused.value.message) == (400, "Unknown log level: verbose")
        stream = await open_rpc_stream(s2.rpc_address, MONITOR_METHOD,
                                       {"AuthToken": tokens["agent-read"], "LogLevel": "info"})
        try:
            assert await stream.receive() == b"{}"   # the first heartbeat, one second in
        finally:
            await stream.aclose()


# ------------------------------------------------------------ the rpc stream protocol


async def _serve_streams(handlers: dict[str, Any], tls: Any = None, *,
                         task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    server = RpcServer({}, lambda _message: None, tls=tls)
    server.stream_handlers.update(handlers)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started((server, f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"))
    await server.serve(listeners[0])


@pytest.mark.parametrize("with_tls", [False, True])
async def test_rpc_stream_chunks_refusals_and_close(with_tls: bool, tmp_path: Path) -> None:
    """0x03 streams (plain, and inside 0x04 + TLS): chunks in order, coded refusals, and a
    client close ending the server's iterator."""
    finished = trio.Event()

    async def count(args: Any) -> AsyncIterator[bytes]:
        if args.get("Deny"):
            raise StreamRefused(403, "Permission denied")

        async def chunks() -> AsyncIterator[bytes]:
            try:
                for index in range(3):
                    yield f"chunk {index}".encode()
                await trio.sleep_forever()   # a stream lasts until the client goes
            finally:
                finished.set()
        return chunks()

    tls = client_tls = None
    if with_tls:
        pki = make_pki(tmp_path / "pki")
        tls = rpc_tls(tls_config(pki, pki.issue("server", "s1")))
        client_tls = rpc_tls(tls_config(pki, pki.issue("server", "s2")))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server, address = await nursery.start(_serve_streams, {"Count": count}, tls)
            stream = await open_rpc_stream(address, "Count", {}, tls=client_tls)
            assert [await stream.receive() for _ in range(3)] == [b"chunk 0", b"chunk 1", b"chunk 2"]
            await stream.aclose()
            await finished.wait()
            with pytest.raises(StreamRefused) as refused:
                await open_rpc_stream(address, "Count", {"Deny": True}, tls=client_tls)
            assert (refused.value.code, refused.value.message) == (403, "Permission denied")
            with pytest.raises(StreamRefused) as missing:
                await open_rpc_stream(address, "Nope", {}, tls=client_tls)
            assert (missing.value.code, missing.value.message) == (500, "rpc: can't find method Nope")
            assert server.counters["streams_served"] == 1
            if with_tls:   # a plain dialler is refused by a tls.rpc listener
                with pytest.raises(RpcUnavailable):
                    await open_rpc_stream(address, "Count", {})
            nursery.cancel_scope.cancel()
