"""Helpers for the issue-5 conformance tests: in-process agents, raw HTTP, ACL tokens.

Agents are whole ``AgentRuntime`` instances on 127.0.0.1 with port 0, each in its
own cancel scope so a test can stop one (a crash: no leave is broadcast). Requests
go over real HTTP/1.1 written by hand, so the status, headers and body bytes seen
are exactly what hypercorn sent (chunked bodies are decoded; ``open_stream`` reads a
streaming answer such as ``/v1/agent/monitor`` piece by piece).
"""

from __future__ import annotations

import base64
import json
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Callable, Mapping

import trio

from agent.config import parse_agent_args
from agent.runtime import AgentRuntime, RunningAgent

from .helpers import wait_until_async

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
DEFAULT_SCHEDULERS = ["service", "batch", "system", "sysbatch", "_core"]
FAST = dict(probe_interval=0.3, probe_timeout=0.1, gossip_interval=0.05, tcp_timeout=1.0,
            push_pull_interval=5.0, broadcast_timeout=2.0, leave_propagate_delay=0.2)
BASE_ARGV = ["-bind", "127.0.0.1", "-http-port", "0", "-serf-port", "0", "-rpc-port", "0"]

POLICIES = {
    "agent-read": 'agent {\n  policy = "read"\n}\n',
    "agent-write": 'agent {\n  policy = "write"\n}\n',
    "node-read": 'node {\n  policy = "read"\n}\n',
}
"""One policy per capability the agent endpoints check (agent-api.md 1.5)."""


# ----------------------------------------------------------------------------- HTTP

@dataclass
class Reply:
    """One HTTP answer: status, headers (lower-case names), body bytes, seconds taken."""

    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float = 0.0

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    def json(self) -> Any:
        assert self.content_type == JSON, (self.status, self.headers, self.body[:300])
        return json.loads(self.body)

    @property
    def text(self) -> str:
        assert self.content_type == TEXT, (self.status, self.headers, self.body[:300])
        return self.body.decode()

    def triple(self) -> tuple[int, bytes, str | None]:
        return self.status, self.body, self.content_type


class _Conn:
    """An HTTP/1.1 exchange on one TCP stream: head parsing and chunked decoding."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.eof = False

    async def more(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            self.eof = True
        self.buffer += data

    async def read_head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            if self.eof:
                raise AssertionError(f"connection closed before the head: {self.buffer!r}")
            await self.more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        return int(lines[0].split()[1]), headers

    def take_chunks(self) -> tuple[bytes, bool]:
        """Decode the complete chunks in the buffer: (data, whether the last chunk came)."""
        out = b""
        while True:
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return out, False
            size = int(self.buffer[:line_end].split(b";")[0], 16)
            if size == 0:
                return out, True
            start = line_end + 2
            if len(self.buffer) < start + size + 2:
                return out, False
            out += self.buffer[start:start + size]
            self.buffer = self.buffer[start + size + 2:]


def _request_bytes(method: str, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
             f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _headers(token: str | None, extra: Mapping[str, str]) -> dict[str, str]:
    headers = dict(extra)
    if token is not None:
        headers["X-Nomad-Token"] = token
    return headers


async def http(port: int, method: str, path: str, body: bytes | Any = b"", *,
               token: str | None = None, headers: Mapping[str, str] = {},
               timeout: float = 20.0) -> Reply:
    """One request over real HTTP; a non-bytes ``body`` is sent as JSON."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    start = trio.current_time()
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            conn = _Conn(stream)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_send_ignoring_close, stream,
                                   _request_bytes(method, path, raw, _headers(token, headers)))
                status, head = await conn.read_head()
                if method == "HEAD" or status in (204, 304):
                    data = b""
                elif head.get("transfer-encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        piece, done = conn.take_chunks()
                        data += piece
                        if done:
                            break
                        if conn.eof:
                            raise AssertionError("connection closed inside a chunked body")
                        await conn.more()
                elif "content-length" in head:
                    length = int(head["content-length"])
                    while len(conn.buffer) < length and not conn.eof:
                        await conn.more()
                    data = conn.buffer[:length]
                else:
                    while not conn.eof:
                        await conn.more()
                    data = conn.buffer
                nursery.cancel_scope.cancel()
    return Reply(status, head, data, trio.current_time() - start)


async def _send_ignoring_close(stream: trio.SocketStream, data: bytes) -> None:
    """Send the request; a server that answers early (413) may close before it is all sent."""
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


@dataclass
class Stream:
    """A streaming answer being read: status and headers at once, body on demand."""

    status: int
    headers: dict[str, str]
    conn: _Conn
    data: bytes = b""
    opened_at: float = 0.0
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (time, len(data)) per read

    async def read_until(self, done: Callable[[bytes], bool], timeout: float) -> bytes:
        """Read until ``done(body so far)``; fail after ``timeout`` with what came."""
        with trio.move_on_after(timeout):
            while not done(self.data):
                piece, finished = self.conn.take_chunks()
                if piece:
                    self.data += piece
                    self.arrivals.append((trio.current_time(), len(self.data)))
                    continue
                if finished or self.conn.eof:
                    break
                await self.conn.more()
            return self.data
        raise AssertionError(f"stream condition not met in {timeout}s; body so far: {self.data[-600:]!r}")


@asynccontextmanager
async def open_stream(port: int, path: str, *, token: str | None = None,
                      headers: Mapping[str, str] = {}, timeout: float = 10.0) -> AsyncIterator[Stream]:
    """GET ``path`` and yield once the head has arrived; the connection closes on exit."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(_request_bytes("GET", path, b"", _headers(token, headers)))
        conn = _Conn(stream)
        with trio.fail_after(timeout):
            status, head = await conn.read_head()
        answer = Stream(status, head, conn, opened_at=trio.current_time())
        if head.get("transfer-encoding", "").lower() != "chunked":
            length = int(head.get("content-length", "0"))
            with trio.fail_after(timeout):
                while len(conn.buffer) < length and not conn.eof:
                    await conn.more()
            answer.data = conn.buffer[:length]
        yield answer


# ---------------------------------------------------------------------------- agents

@dataclass
class Agent:
    """One in-process agent: its runtime, what it reported at start, the scope that stops it."""

    runtime: AgentRuntime
    running: RunningAgent
    scope: trio.CancelScope

    @property
    def port(self) -> int:
        return self.running.http_address[1]

    @property
    def name(self) -> str:
        return self.running.name

    @property
    def node(self) -> str:
        return self.runtime.config.node

    @property
    def serf_address(self) -> str:
        assert self.running.serf_address is not None, "not a server"
        host, port = self.running.serf_address
        return f"{host}:{port}"

    @property
    def serf_port(self) -> int:
        assert self.running.serf_address is not None, "not a server"
        return self.running.serf_address[1]

    @property
    def rpc_address(self) -> str:
        return f"127.0.0.1:{self.runtime.config.rpc_port}"

    async def call(self, method: str, path: str, body: bytes | Any = b"", **kwargs: Any) -> Reply:
        return await http(self.port, method, path, body, **kwargs)

    def stop(self) -> None:
        """Stop the agent at once, as a crash would (no leave)."""
        self.scope.cancel()


async def _run_agent(runtime: AgentRuntime, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            running = await nursery.start(runtime.run)
            task_status.started((running, scope))


class Agents:
    """Starts agents in one nursery; all of them stop when the ``agents()`` block ends."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery

    async def start(self, *argv: str, **fields: Any) -> Agent:
        """An agent from CLI flags (plus BASE_ARGV), with ``AgentConfig`` fields replaced."""
        config = parse_agent_args([*BASE_ARGV, *argv])
        if fields:
            config = replace(config, **fields)
        runtime = AgentRuntime(config, gossip_overrides=FAST)
        running, scope = await self.nursery.start(_run_agent, runtime)
        return Agent(runtime, running, scope)

    async def server(self, node: str, *argv: str, expect: int = 1, **fields: Any) -> Agent:
        extra = ["-bootstrap-expect", str(expect)] if expect else []
        return await self.start("-server", "-node", node, *extra, *argv, **fields)

    async def client(self, node: str, servers: tuple[Agent, ...] = (), *argv: str, **fields: Any) -> Agent:
        extra = [a for s in servers for a in ("-servers", s.rpc_address)]
        return await self.start("-client", "-node", node, *extra, *argv, **fields)


@asynccontextmanager
async def agents(timeout: float = 60.0) -> AsyncIterator[Agents]:
    """A nursery of agents under a deadline; every agent is stopped on exit."""
    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            yield Agents(nursery)
            nursery.cancel_scope.cancel()


async def wait_leader(agent: Agent, timeout: float = 15.0) -> str:
    """Wait until ``agent`` names a raft leader; return its address."""
    async def probe() -> str:
        return (await agent.call("GET", "/v1/status/leader")).body.decode()
    return json.loads(await wait_until_async(probe, lambda body: body not in ("", '""'),
                                             timeout=timeout))


async def wait_known_servers(client: Agent, timeout: float = 15.0) -> list[str]:
    """Wait until a client agent's server list is not empty (read in-process, no ACL needed)."""
    assert client.runtime.client is not None

    async def probe() -> list[str]:
        return client.runtime.client.servers()   # type: ignore[union-attr]
    return await wait_until_async(probe, bool, timeout=timeout)


async def acl_tokens(server: Agent) -> dict[str, str]:
    """Bootstrap ACLs on ``server`` and make one client token per policy of POLICIES.

    Returns secrets by name: ``management``, ``agent-read``, ``agent-write``,
    ``node-read``, plus ``unknown`` (a random UUID no token has).
    """
    await wait_leader(server)
    boot = await server.call("POST", "/v1/acl/bootstrap")
    assert boot.status == 200, boot
    tokens = {"management": boot.json()["SecretID"], "unknown": str(uuid.uuid4())}
    for name, rules in POLICIES.items():
        answer = await server.call("PUT", f"/v1/acl/policy/{name}",
                                   {"Name": name, "Description": "", "Rules": rules},
                                   token=tokens["management"])
        assert answer.status == 200, answer
        created = await server.call("POST", "/v1/acl/token",
                                    {"Name": name, "Type": "client", "Policies": [name],
                                     "Global": False}, token=tokens["management"])
        assert created.status == 200, created
        tokens[name] = created.json()["SecretID"]
    return tokens


def decode_frames(data: bytes) -> list[Any]:
    """Monitor frames: JSON objects written back to back without separators."""
    decoder = json.JSONDecoder()
    text = data.decode()
    frames, index = [], 0
    while index < len(text):
        value, index = decoder.raw_decode(text, index)
        frames.append(value)
    return frames


def mismatches(rows: list[tuple[Any, Any, Any]]) -> str:
    """Report lines for (what, expected, got) rows that differ."""
    return "\n".join(f"{what}: expected {want!r}, got {got!r}" for what, want, got in rows if want != got)


def compact_json(value: Any) -> bytes:
    """Go's json.Marshal layout of ``value``."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def pretty_json(value: Any) -> bytes:
    """Go's MarshalIndent layout (4 spaces) plus the trailing newline of ``?pretty``."""
    return (json.dumps(value, indent=4, ensure_ascii=False) + "\n").encode()


def log_text(body: bytes) -> bytes:
    """The log bytes carried by monitor frames (heartbeats skipped)."""
    try:
        frames = decode_frames(body)
    except ValueError:            # a frame cut in the middle: decode what is complete
        return b""
    return b"".join(base64.b64decode(f["Data"]) for f in frames if f)
