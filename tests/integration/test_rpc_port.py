"""The rpc port (agent/rpc.py) of an in-process -dev agent, spoken to over raw TCP,
and ``RpcPool``'s failure reporting against a closed port and a server that dies mid-call."""

from __future__ import annotations

import socket
import struct
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import msgpack
import pytest
import trio

from agent.config import parse_agent_args
from agent.rpc import RpcError, RpcPool, RpcUnavailable
from agent.runtime import AgentRuntime
from agent.server import ServerRuntime
from raftlite.types import Role

from .helpers import wait_until

DEADLINE = 20.0
_LENGTH = struct.Struct(">I")


@asynccontextmanager
async def dev_agent() -> AsyncIterator[tuple[AgentRuntime, ServerRuntime]]:
    """A -dev agent on 127.0.0.1 (every port 0), stopped afterwards, once it leads raft."""
    config = parse_agent_args(["-dev", "-bind", "127.0.0.1", "-http-port", "0",
                               "-serf-port", "0", "-rpc-port", "0"])
    runtime = AgentRuntime(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        server = runtime.server
        assert server is not None and runtime.config.rpc_port != 0
        await wait_until(lambda: server.raft.core.role is Role.LEADER, timeout=10,
                         describe=lambda: server.raft.core.role)
        yield runtime, server
        nursery.cancel_scope.cancel()


class RawRpc:
    """One raw rpc-port connection: the 0x01 byte, then framed msgpack requests."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.seq = 0

    @classmethod
    async def open(cls, port: int) -> "RawRpc":
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"\x01")
        return cls(stream)

    async def call(self, method: str, args: Any) -> tuple[str, Any]:
        """Send one request and read its answer; returns (Error, Result)."""
        self.seq += 1
        payload = msgpack.packb({"Seq": self.seq, "Method": method, "Args": args}, use_bin_type=True)
        await self.stream.send_all(_LENGTH.pack(len(payload)) + payload)
        header = await self._read(4)
        answer = msgpack.unpackb(await self._read(_LENGTH.unpack(header)[0]), raw=False)
        assert answer["Seq"] == self.seq
        return answer["Error"], answer["Result"]

    async def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            data = await self.stream.receive_some(65536)
            assert data, "the rpc port closed the connection"
            self.buffer += data
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out


async def test_bad_requests_get_error_answers_and_the_port_keeps_serving() -> None:
    """State.Read without a query, removing the last voter and an unknown method each
    get an error answer on the same connection, which keeps serving; a garbage first
    byte closes only that connection and is counted."""
    with trio.fail_after(DEADLINE):
        async with dev_agent() as (runtime, server):
            rpc = await RawRpc.open(runtime.config.rpc_port)
            error, result = await rpc.call("State.Read", None)
            assert error == "rpc error: a query must be a map" and result is None
            error, result = await rpc.call("Operator.RaftRemovePeer",
                                           {"id": server.server_id, "address": ""})
            assert "last voter" in error and result is None
            assert server.raft.core.configuration.voters() == (server.server_id,)
            error, _ = await rpc.call("Nope.Missing", {})
            assert error == "rpc: can't find method Nope.Missing"
            error, result = await rpc.call("Status.Peers", {})
            assert (error, result) == ("", [server.raft_address])

            counters = server.rpc.counters
            before = counters["dropped.unknown_protocol"]
            async with await trio.open_tcp_stream("127.0.0.1", runtime.config.rpc_port) as garbage:
                await garbage.send_all(b"\x07")
                assert await garbage.receive_some(100) == b""      # closed by the agent
            assert counters["dropped.unknown_protocol"] == before + 1
            before = counters["dropped.rpc_decode"]
            async with await trio.open_tcp_stream("127.0.0.1", runtime.config.rpc_port) as bad:
                await bad.send_all(b"\x01" + _LENGTH.pack(1) + b"\xc1")   # not msgpack
                assert await bad.receive_some(100) == b""
            assert counters["dropped.rpc_decode"] == before + 1
            # the first connection and new ones still work
            error, result = await rpc.call("Status.Leader", {})
            assert (error, result) == ("", server.raft_address)
            again = await RawRpc.open(runtime.config.rpc_port)
            assert await again.call("Status.Peers", None) == ("", [server.raft_address])
            await rpc.stream.aclose()
            await again.stream.aclose()


async def test_oversized_rpc_frame_closes_only_that_connection() -> None:
    """An RPC frame header announcing more than MAX_FRAME bytes closes that connection,
    is counted under dropped.oversized, and the agent keeps serving."""
    with trio.fail_after(DEADLINE):
        async with dev_agent() as (runtime, server):
            port = runtime.config.rpc_port
            async with await trio.open_tcp_stream("127.0.0.1", port) as bad:
                await bad.send_all(b"\x01" + _LENGTH.pack(2**31))
                assert await bad.receive_some(100) == b""
            assert server.rpc.counters["dropped.oversized"] == 1
            rpc = await RawRpc.open(port)
            assert await rpc.call("Status.Peers", {}) == ("", [server.raft_address])
            await rpc.stream.aclose()


async def test_rpc_client_reset_closes_only_that_connection() -> None:
    """A client that resets its RPC connection (TCP RST) costs that connection only:
    it is counted under connection_errors and the agent keeps serving."""
    with trio.fail_after(DEADLINE):
        async with dev_agent() as (runtime, server):
            port = runtime.config.rpc_port
            rude = await RawRpc.open(port)
            assert await rude.call("Status.Peers", {}) == ("", [server.raft_address])
            rude.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await rude.stream.aclose()                      # linger 0: the kernel sends RST
            await wait_until(lambda: server.rpc.counters["connection_errors"] >= 1, timeout=5)
            rpc = await RawRpc.open(port)
            assert await rpc.call("Status.Peers", {}) == ("", [server.raft_address])
            await rpc.stream.aclose()


async def test_status_peers_and_a_variable_written_and_read_over_rpc() -> None:
    """Status.Peers names the raft address; State.Apply of a var_upsert answers the
    stored variable, which State.Read then returns (raw frames, then RpcPool)."""
    with trio.fail_after(DEADLINE):
        async with dev_agent() as (runtime, server), trio.open_nursery() as nursery:
            port = runtime.config.rpc_port
            assert server.raft_address == f"127.0.0.1:{port}"
            rpc = await RawRpc.open(port)
            assert await rpc.call("Status.Peers", {}) == ("", [f"127.0.0.1:{port}"])
            command = {"Type": "var_upsert", "Cas": None, "Time": 1_700_000_000_000_000_000,
                       "Var": {"Namespace": "default", "Path": "app/config", "Items": {"k": "v"}}}
            error, result = await rpc.call("State.Apply", command)
            assert error == ""
            assert result["Ok"] is True
            var = result["Var"]
            assert (var["Namespace"], var["Path"], var["Items"]) == ("default", "app/config", {"k": "v"})
            assert var["CreateIndex"] == var["ModifyIndex"] == server.raft.applied_index
            assert var["ModifyTime"] == command["Time"]
            assert server.state.get_variable("default", "app/config") == var
            error, read = await rpc.call("State.Read", {"Type": "var_get", "Namespace": "default",
                                                        "Path": "app/config"})
            assert (error, read["Var"]) == ("", var)
            await rpc.stream.aclose()

            pool = RpcPool()
            await nursery.start(pool.run)
            assert await pool.call(server.raft_address, "Status.Peers", {}) == [server.raft_address]
            with pytest.raises(RpcError) as caught:
                await pool.call(server.raft_address, "No.Such", {})
            assert str(caught.value) == "rpc: can't find method No.Such"
            assert not isinstance(caught.value, RpcUnavailable)
            nursery.cancel_scope.cancel()


async def test_pool_call_to_a_closed_port_was_not_sent() -> None:
    """RpcPool.call to a port nobody listens on raises RpcUnavailable with sent=False."""
    with trio.fail_after(DEADLINE):
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        await listener.aclose()
        async with trio.open_nursery() as nursery:
            pool = RpcPool()
            await nursery.start(pool.run)
            with pytest.raises(RpcUnavailable) as caught:
                await pool.call(f"127.0.0.1:{port}", "Status.Peers", {}, timeout=5)
            assert caught.value.sent is False
            nursery.cancel_scope.cancel()


async def test_pool_call_whose_server_dies_mid_call_may_have_been_sent() -> None:
    """A server that reads the whole request and then closes makes RpcPool.call raise
    RpcUnavailable with sent=True (the call may have taken effect)."""
    with trio.fail_after(DEADLINE):
        got: list[dict[str, Any]] = []

        async def read_then_die(stream: trio.SocketStream) -> None:
            data = b""
            async with stream:
                while len(data) < 5 or len(data) < 5 + _LENGTH.unpack(data[1:5])[0]:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    data += chunk
                assert data[0] == 0x01
                got.append(msgpack.unpackb(data[5:], raw=False))

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, read_then_die, 0)
            port = listeners[0].socket.getsockname()[1]
            pool = RpcPool()
            await nursery.start(pool.run)
            with pytest.raises(RpcUnavailable) as caught:
                await pool.call(f"127.0.0.1:{port}", "State.Apply", {"Type": "var_upsert"}, timeout=5)
            assert caught.value.sent is True
            assert [(r["Method"], r["Args"]) for r in got] == [("State.Apply", {"Type": "var_upsert"})]
            nursery.cancel_scope.cancel()
