"""ClientRuntime against fake servers (real RpcServer on 127.0.0.1) and /v1/agent/servers routes.

The fake servers share one ``FakeCluster`` (what a raft-replicated state would give
them); each records which server took which call at what (virtual) time.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Sequence

import pytest
import trio

from agent.client import ClientRuntime
from agent.http.app import create_app
from agent.http.client_routes import register_client_routes
from agent.join import multierror
from agent.rpc import RpcError, RpcPool, RpcServer

from .helpers import wait_until
from .test_http_api import raw_request, serve_app

TTL = 10.0


class FakeCluster:
    """The state the fake servers share: nodes, allocs, and a log of calls."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.allocs: dict[str, dict[str, Any]] = {}
        self.index = 1
        self.servers: list[str] = []
        self.refuse_registrations = 0   # answer this many Node.Register calls with an error
        self.calls: list[tuple[float, str, str, Any]] = []   # (time, server, method, args)

    def times(self, method: str, server: str | None = None) -> list[float]:
        return [t for t, s, m, _ in self.calls if m == method and server in (None, s)]

    def args(self, method: str) -> list[Any]:
        return [a for _, _, m, a in self.calls if m == method]

    def handlers(self, name: str) -> dict[str, Any]:
        def record(method: str, args: Any) -> None:
            self.calls.append((trio.current_time(), name, method, args))

        async def ping(args: Any) -> Any:
            record("Status.Ping", args)
            return {}

        async def register(args: Any) -> Any:
            record("Node.Register", args)
            if self.refuse_registrations > 0:
                self.refuse_registrations -= 1
                raise RpcError("rpc error: No cluster leader")
            node = args["Node"]
            self.nodes[node["ID"]] = node
            self.index += 1
            return {"Index": self.index, "HeartbeatTTL": TTL, "Servers": list(self.servers)}

        async def heartbeat(args: Any) -> Any:
            record("Node.Heartbeat", args)
            if args["NodeID"] not in self.nodes:
                raise RpcError("node not found")
            return {"HeartbeatTTL": TTL, "Servers": list(self.servers)}

        async def get_allocs(args: Any) -> Any:
            record("Node.GetAllocs", args)
            mine = [dict(a) for a in self.allocs.values() if a["NodeID"] == args["NodeID"]]
            return {"Index": self.index, "Allocs": mine}

        async def update_allocs(args: Any) -> Any:
            record("Node.UpdateAllocs", args)
            for update in args["Allocs"]:
                self.allocs[update["ID"]]["ClientStatus"] = update["ClientStatus"]
            self.index += 1
            return {"Index": self.index}

        return {"Status.Ping": ping, "Node.Register": register, "Node.Heartbeat": heartbeat,
                "Node.GetAllocs": get_allocs, "Node.UpdateAllocs": update_allocs}


async def serve_fake(cluster: FakeCluster, name: str, *,
                     task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """A real RpcServer with the fake handlers; reports (address, cancel scope that stops it)."""
    with trio.CancelScope() as scope:
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        address = f"127.0.0.1:{listener.socket.getsockname()[1]}"
        server = RpcServer(cluster.handlers(name), lambda _message: None)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, listener)
            task_status.started((address, scope))


async def dead_address() -> str:
    """A loopback port nobody listens on (bound, then closed)."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()
    return f"127.0.0.1:{port}"


def make_client(pool: RpcPool, servers: Sequence[str], data_dir: Path | None = None,
                seed: int = 1) -> ClientRuntime:
    return ClientRuntime(None, pool=pool, servers=servers,
                         data_dir=None if data_dir is None else str(data_dir), node_name="c1",
                         datacenter="dc1", node_class="small", meta={"rack": "r1"},
                         resources={"CPU": 4000, "MemoryMB": 2048}, http_addr="127.0.0.1:4646",
                         rng=random.Random(seed))


async def test_registers_then_heartbeats_in_the_ttl_window(autojump_clock: Any, tmp_path: Path) -> None:
    """The client registers its Node record, then beats every 0.5-0.9 TTL, keeping its id."""
    cluster = FakeCluster()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            address, _ = await nursery.start(serve_fake, cluster, "s1")
            cluster.servers = [address]
            pool = RpcPool()
            await nursery.start(pool.run)
            client = make_client(pool, [address], tmp_path)
            await nursery.start(client.run)
            await wait_until(lambda: len(cluster.times("Node.Heartbeat")) >= 6, timeout=90,
                             describe=lambda: cluster.calls[-3:])
            node = cluster.args("Node.Register")[0]["Node"]
            assert node["ID"] == client.node_id == (tmp_path / "client" / "node-id").read_text()
            assert (node["Status"], node["Datacenter"], node["NodeClass"], node["Meta"]) == (
                "ready", "dc1", "small", {"rack": "r1"})
            assert node["NodeResources"] == {"CPU": 4000, "MemoryMB": 2048}
            assert node["HTTPAddr"] == "127.0.0.1:4646"
            beats = cluster.times("Node.Register")[:1] + cluster.times("Node.Heartbeat")
            gaps = [b - a for a, b in zip(beats, beats[1:])]
            assert all(0.5 * TTL - 0.1 <= gap <= 0.9 * TTL + 0.1 for gap in gaps), gaps
            assert client.heartbeat_ttl == TTL
            assert client.last_heartbeat == pytest.approx(beats[-1], abs=0.1)
            nursery.cancel_scope.cancel()


async def test_node_not_found_registers_again(autojump_clock: Any) -> None:
    """When the servers forget the node, the heartbeat's `node not found` makes it register again."""
    cluster = FakeCluster()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            address, _ = await nursery.start(serve_fake, cluster, "s1")
            pool = RpcPool()
            await nursery.start(pool.run)
            client = make_client(pool, [address])
            await nursery.start(client.run)
            await wait_until(lambda: len(cluster.times("Node.Heartbeat")) >= 1, timeout=30)
            cluster.nodes.clear()
            await wait_until(lambda: len(cluster.times("Node.Register")) >= 2, timeout=30,
                             describe=lambda: cluster.calls[-3:])
            assert client.node_id in cluster.nodes
            forgotten_at = cluster.times("Node.Heartbeat")[-1]
            assert cluster.times("Node.Register")[1] - forgotten_at < 1.0   # at once, no backoff
            nursery.cancel_scope.cancel()


async def test_registration_retries_with_exponential_backoff(autojump_clock: Any) -> None:
    """Refused registrations are retried after 1, 2, 4, 8 s until one succeeds."""
    cluster = FakeCluster()
    cluster.refuse_registrations = 4
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            address, _ = await nursery.start(serve_fake, cluster, "s1")
            pool = RpcPool()
            await nursery.start(pool.run)
            client = make_client(pool, [address])
            await nursery.start(client.run)
            await client.registered.wait()
            attempts = cluster.times("Node.Register")
            assert len(attempts) == 5
            assert [round(b - a, 1) for a, b in zip(attempts, attempts[1:])] == [1.0, 2.0, 4.0, 8.0]
            nursery.cancel_scope.cancel()


async def test_set_servers_wakes_a_waiting_registration(autojump_clock: Any,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A client backing off against a dead server registers as soon as set_servers gives a live one."""
    cluster = FakeCluster()
    with trio.fail_after(200):
        async with trio.open_nursery() as nursery:
            live, _ = await nursery.start(serve_fake, cluster, "s1")
            pool = RpcPool()
            await nursery.start(pool.run)
            client = make_client(pool, [await dead_address()])
            await nursery.start(client.run)
            await wait_until(lambda: "retry=30.0s" in caplog.text, timeout=120)
            assert not client.registered.is_set()
            asked_at = trio.current_time()
            assert (await client.set_servers([live]))[0] == 1
            await client.registered.wait()
            assert cluster.times("Node.Register")[0] - asked_at < 0.5
            nursery.cancel_scope.cancel()


async def test_fails_over_to_the_second_server(autojump_clock: Any, tmp_path: Path) -> None:
    """With the first server closed, heartbeats go to the second, which moves to the front."""
    cluster = FakeCluster()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            first, first_scope = await nursery.start(serve_fake, cluster, "s1")
            second, _ = await nursery.start(serve_fake, cluster, "s2")
            cluster.servers = [first, second]
            pool = RpcPool()
            await nursery.start(pool.run)
            client = make_client(pool, [first, second], tmp_path)
            await nursery.start(client.run)
            await wait_until(lambda: cluster.times("Node.Heartbeat", "s1"), timeout=30)
            assert cluster.times("Node.Heartbeat", "s2") == []
            first_scope.cancel()
            await wait_until(lambda: len(cluster.times("Node.Heartbeat", "s2")) >= 2, timeout=60,
                             describe=lambda: cluster.calls[-3:])
            assert client._servers == [second, first]
            assert client.servers() == sorted([first, second])
            saved = json.loads((tmp_path / "client" / "servers.json").read_text())
            assert sorted(saved) == sorted([first, second])
            nursery.cancel_scope.cancel()


async def test_servers_in_answers_replace_the_known_list(autojump_clock: Any, tmp_path: Path) -> None:
    """A Servers list in an answer replaces the client's list and is saved; a restart reloads it."""
    cluster = FakeCluster()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            first, _ = await nursery.start(serve_fake, cluster, "s1")
            second, _ = await nursery.start(serve_fake, cluster, "s2")
            cluster.servers = [second, first]
            pool = RpcPool()
            await nursery.start(pool.run)
            client = make_client(pool, [first], tmp_path)
            await nursery.start(client.run)
            await wait_until(lambda: len(client.servers()) == 2, timeout=30)
            assert client._servers == [first, second]   # the server in use stays first
            restarted = make_client(pool, [], tmp_path)
            assert restarted.servers() == sorted([first, second])
            assert restarted.node_id == client.node_id
            nursery.cancel_scope.cancel()


async def test_batch_alloc_runs_then_completes_after_its_duration(autojump_clock: Any) -> None:
    """Pending allocs go running in one batched update; a batch one completes Duration s later;
    a stopped service alloc completes."""
    cluster = FakeCluster()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            address, _ = await nursery.start(serve_fake, cluster, "s1")
            pool = RpcPool()
            await nursery.start(pool.run)
            client = make_client(pool, [address])
            base = {"DesiredStatus": "run", "ClientStatus": "pending", "NodeID": client.node_id}
            cluster.allocs["batch"] = {**base, "ID": "batch", "Duration": 5}
            cluster.allocs["web"] = {**base, "ID": "web", "Duration": 0}
            await nursery.start(client.run)
            await wait_until(lambda: cluster.allocs["batch"]["ClientStatus"] == "complete",
                             timeout=60, describe=lambda: cluster.allocs)
            updates = cluster.args("Node.UpdateAllocs")
            assert sorted(u["ID"] for u in updates[0]["Allocs"]) == ["batch", "web"]
            assert {u["ClientStatus"] for u in updates[0]["Allocs"]} == {"running"}
            running_at, complete_at = cluster.times("Node.UpdateAllocs")[:2]
            assert 5.0 <= complete_at - running_at <= 5.5
            assert cluster.allocs["web"]["ClientStatus"] == "running"
            assert client.num_allocations == 2
            cluster.allocs["web"]["DesiredStatus"] = "stop"
            cluster.index += 1
            await wait_until(lambda: cluster.allocs["web"]["ClientStatus"] == "complete", timeout=10)
            nursery.cancel_scope.cancel()


async def test_set_servers_keeps_survivors_and_reports_dead_ones(autojump_clock: Any,
                                                                tmp_path: Path) -> None:
    """set_servers pings each address, keeps the live ones, and words failures as Nomad."""
    cluster = FakeCluster()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            live, _ = await nursery.start(serve_fake, cluster, "s1")
            dead = await dead_address()
            pool = RpcPool()
            await nursery.start(pool.run)
            client = make_client(pool, ["10.255.255.1"], tmp_path)
            assert client.servers() == ["10.255.255.1:4647"]
            num, errors = await client.set_servers([dead, live, "127.0.0.1:notaport"])
            assert num == 1
            assert client.servers() == [live]
            assert len(errors) == 2
            assert errors[0].startswith(f"Server at address {dead} failed ping: ")
            assert errors[1].startswith("address 127.0.0.1:notaport:")
            assert cluster.args("Status.Ping") == [{}]
            num, errors = await client.set_servers([dead])
            assert (num, client.servers()) == (0, [live])   # nothing survived: list unchanged
            assert multierror(errors).startswith(f"1 error occurred:\n\t* Server at address {dead}")
            assert json.loads((tmp_path / "client" / "servers.json").read_text()) == [live]
            nursery.cancel_scope.cancel()


# --- /v1/agent/servers ----------------------------------------------------------------

TEXT = "text/plain; charset=utf-8"


class FakeFacade:
    """A client agent whose server list is a plain list; set_client_servers keeps `keep`."""

    def __init__(self, *, is_client: bool = True, keep: int = 1,
                 errors: Sequence[str] = ()) -> None:
        self.is_client = is_client
        self.is_server = not is_client
        self.servers = ["10.0.0.2:4647", "10.0.0.1:4647"]
        self.keep = keep
        self.errors = list(errors)
        self.set_calls: list[list[str]] = []

    def client_servers(self) -> list[str]:
        return list(self.servers)

    async def set_client_servers(self, addresses: Sequence[str]) -> tuple[int, list[str]]:
        self.set_calls.append(list(addresses))
        if self.keep:
            self.servers = list(addresses)[:self.keep]
        return self.keep, list(self.errors)


async def request(api: FakeFacade, method: str, path: str) -> tuple[int, bytes, str | None]:
    app = create_app(api)  # type: ignore[arg-type]
    register_client_routes(app, api)
    response = await app.test_client().open(path, method=method)
    return response.status_code, await response.get_data(), response.headers.get("Content-Type")


async def test_get_lists_servers_sorted() -> None:
    """GET answers the sorted list as compact JSON, and [] (never null) when empty."""
    api = FakeFacade()
    assert await request(api, "GET", "/v1/agent/servers") == (
        200, b'["10.0.0.1:4647","10.0.0.2:4647"]', "application/json")
    api.servers = []
    assert (await request(api, "GET", "/v1/agent/servers"))[1] == b"[]"


@pytest.mark.parametrize("method", ["PUT", "POST"])
async def test_put_replaces_with_every_address_unsplit(method: str) -> None:
    """PUT/POST pass each repeated address (commas not split) and answer 200 with no body."""
    api = FakeFacade(keep=2)
    status, body, _ = await request(api, method, "/v1/agent/servers?address=10.0.0.9:4647&address=a:1,b:2")
    assert (status, body) == (200, b"")
    assert api.set_calls == [["10.0.0.9:4647", "a:1,b:2"]]


async def test_put_success_has_no_content_type() -> None:
    """Over a real socket (hypercorn), the empty 200 carries no Content-Type, as Nomad's."""
    api = FakeFacade()
    app = create_app(api)  # type: ignore[arg-type]
    register_client_routes(app, api)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_app, app)
            result = await raw_request(port, "PUT", "/v1/agent/servers?address=10.0.0.9")
            nursery.cancel_scope.cancel()
    assert result == (200, b"", None)


async def test_put_without_address_is_400() -> None:
    """PUT without address answers 400 `missing server address` and changes nothing."""
    api = FakeFacade()
    assert await request(api, "PUT", "/v1/agent/servers") == (400, b"missing server address", TEXT)
    assert api.set_calls == []


async def test_put_with_no_survivor_is_400_multierror() -> None:
    """When no address survives, the 400 body is go-multierror's text of the ping errors."""
    errors = ["Server at address 10.0.0.9:4647 failed ping: rpc error: dial tcp: refused",
              "Server at address 10.0.0.8:4647 failed ping: timeout"]
    api = FakeFacade(keep=0, errors=errors)
    status, body, content_type = await request(
        api, "PUT", "/v1/agent/servers?address=10.0.0.9&address=10.0.0.8")
    assert (status, content_type) == (400, TEXT)
    assert body.decode() == ("2 errors occurred:\n\t* " + errors[0] + "\n\t* " + errors[1] + "\n\n")


@pytest.mark.parametrize("method", ["DELETE", "HEAD", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("is_client", [True, False])
async def test_other_methods_are_405_even_on_a_server(method: str, is_client: bool) -> None:
    """Other methods are 405 `Invalid method`, checked before the client-only check."""
    status, body, content_type = await request(FakeFacade(is_client=is_client), method,
                                               "/v1/agent/servers")
    assert (status, content_type) == (405, TEXT)
    if method != "HEAD":
        assert body == b"Invalid method"


@pytest.mark.parametrize("method,path", [("GET", "/v1/agent/servers"),
                                         ("PUT", "/v1/agent/servers"),
                                         ("POST", "/v1/agent/servers?address=10.0.0.1")])
async def test_server_only_agent_is_501(method: str, path: str) -> None:
    """A server-only agent answers 501 `Invalid method`, before the address check."""
    api = FakeFacade(is_client=False)
    assert await request(api, method, path) == (501, b"Invalid method", TEXT)
    assert api.set_calls == []
