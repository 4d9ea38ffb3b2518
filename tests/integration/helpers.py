"""Helpers for integration tests: gossip nodes on 127.0.0.1 and a deadline wait."""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Awaitable

import trio

from gossip.config import GossipConfig
from gossip.core import GossipCore
from gossip.driver import GossipHandle, open_gossip_sockets
from gossip.keyring import Keyring
from gossip.messages import MemberStatus


async def wait_until(predicate: Callable[[], Any], *, timeout: float,
                     describe: Callable[[], object] = lambda: None, poll: float = 0.02) -> Any:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` showing ``describe()``."""
    deadline = trio.current_time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if trio.current_time() >= deadline:
            raise AssertionError(f"condition not met in {timeout}s; last state: {describe()!r}")
        await trio.sleep(poll)  # polling interval of the wait, not a fixed wait for an outcome


async def wait_until_async(probe: Callable[[], Awaitable[Any]], done: Callable[[Any], bool] = bool,
                           *, timeout: float, poll: float = 0.05) -> Any:
    """Like ``wait_until`` for an async ``probe`` (an HTTP call); fails with the last value."""
    deadline = trio.current_time() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if trio.current_time() >= deadline:
            raise AssertionError(f"condition not met in {timeout}s; last state: {value!r}")
        await trio.sleep(poll)  # polling interval of the wait, not a fixed wait for an outcome


@dataclass
class Node:
    name: str
    port: int
    core: GossipCore
    handle: GossipHandle
    facts: list[Any]

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def statuses(self) -> dict[str, str]:
        return {m.name: str(m.status) for m in self.handle.members()}

    def counter(self, name: str) -> int:
        return self.handle.stats().counters.get(name, 0)


def fast_config(**overrides: Any) -> GossipConfig:
    """The local profile, quicker still, for tests on loopback."""
    base = dict(probe_interval=0.3, probe_timeout=0.1, gossip_interval=0.05,
                push_pull_interval=5.0, tcp_timeout=1.0)
    base.update(overrides)
    return GossipConfig.local(**base)


async def start_node(nursery: trio.Nursery, name: str, *, config: GossipConfig | None = None,
                     key: bytes | None = None, seed: int = 1) -> Node:
    """Bind a port on 127.0.0.1, build a core for it and start its driver."""
    config = config or fast_config()
    sockets = await open_gossip_sockets(("127.0.0.1", 0))
    keyring = Keyring([key], os.urandom) if key is not None else None
    core = GossipCore(config, name=name, addr="127.0.0.1", port=sockets.port,
                      tags={"role": "test", "name": name}, keyring=keyring,
                      rng=random.Random(f"{seed}/{name}/gossip"), entropy=os.urandom,
                      log=logging.LoggerAdapter(logging.getLogger("gossip"), {"node": name}),
                      now=trio.current_time())
    facts: list[Any] = []
    handle = GossipHandle(core, config, on_fact=facts.append)
    port = await nursery.start(handle.run, sockets)
    return Node(name, port, core, handle, facts)


def all_alive(nodes: list[Node], names: set[str]) -> bool:
    return all({n for n, s in node.statuses().items() if s == str(MemberStatus.ALIVE)} >= names
               for node in nodes)


TEXT = "text/plain; charset=utf-8"


class Answer:
    """One HTTP answer from quart's test client, with checked JSON and text views."""

    def __init__(self, status: int, body: bytes, headers: Any) -> None:
        self.status, self.body, self.headers = status, body, headers

    @property
    def json(self) -> Any:
        assert self.headers.get("Content-Type") == "application/json", self.headers
        return json.loads(self.body)

    @property
    def text(self) -> str:
        assert self.headers.get("Content-Type") == TEXT, self.headers
        return self.body.decode()


async def request_app(app: Any, method: str, path: str, body: Any = None, *,
                      raw: bytes | None = None) -> Answer:
    """Send one request through ``app``'s test client: ``body`` as JSON, or ``raw`` bytes."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    response = await app.test_client().open(path, method=method, data=data)
    return Answer(response.status_code, await response.get_data(), response.headers)
