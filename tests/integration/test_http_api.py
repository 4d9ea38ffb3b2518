"""The HTTP routes against a fake facade: statuses, bodies and content types of agent-api.md."""

from __future__ import annotations

import json
from typing import Any, Sequence

import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from agent.http.api import ApiError, member_json
from agent.join import multierror
from agent.http.app import create_app
from gossip.messages import MemberStatus
from gossip.types import Member

TEXT = "text/plain; charset=utf-8"


class FakeAPI:
    """Records calls; answers like a server agent with one member."""

    def __init__(self, *, is_server: bool = True) -> None:
        self.is_server = is_server
        self.joins: list[list[str]] = []
        self.force_leaves: list[tuple[str, bool]] = []
        self.force_leave_error: str | None = None

    async def members(self, auth_token: str = "") -> dict[str, Any]:
        member = Member("s1.global", "127.0.0.1", 4648, {"role": "nomad", "port": "4647"},
                        MemberStatus.ALIVE)
        return {"ServerName": "s1", "ServerRegion": "global", "ServerDC": "dc1",
                "Members": [member_json(member)]}

    async def members_body(self, auth_token: str = "") -> str:
        return json.dumps(await self.members(auth_token), separators=(",", ":"))

    async def join(self, addresses: Sequence[str]) -> dict[str, Any]:
        self.joins.append(list(addresses))
        return {"num_joined": len(addresses), "error": ""}

    async def force_leave(self, node: str, prune: bool) -> None:
        self.force_leaves.append((node, prune))
        if self.force_leave_error:
            raise ApiError(500, self.force_leave_error)

    def metrics(self) -> dict[str, Any]:
        return {"Timestamp": "t", "Gauges": [], "Counters": [], "Samples": []}


async def call(api: FakeAPI, method: str, path: str) -> tuple[int, bytes, str | None]:
    """One request to the app served by hypercorn on 127.0.0.1: (status, body, content type)."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_app, create_app(api))
            result = await raw_request(port, method, path)
            nursery.cancel_scope.cancel()
    return result


async def serve_app(app: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds: list[str] = []

    class Status:
        def started(self, value: list[str]) -> None:
            binds.extend(value)
            task_status.started(int(value[0].rsplit(":", 1)[1]))

    await serve(app, config, task_status=Status())  # type: ignore[arg-type]


async def raw_request(port: int, method: str, path: str) -> tuple[int, bytes, str | None]:
    """HTTP/1.1 by hand, so the headers seen are exactly what the server sent."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                              f"Content-Length: 0\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in lines[1:])}
        assert "transfer-encoding" not in headers, "the routes always know their length"
        length = 0 if method == "HEAD" else int(headers["content-length"])
        while len(body) < length:
            body += await stream.receive_some(65536)
    return status, body, headers.get("content-type")


@pytest.mark.parametrize("method,path", [
    ("DELETE", "/v1/agent/members"), ("POST", "/v1/agent/members"), ("HEAD", "/v1/agent/members"),
    ("GET", "/v1/agent/join"), ("DELETE", "/v1/agent/join"),
    ("GET", "/v1/agent/force-leave"), ("OPTIONS", "/v1/agent/force-leave"),
    ("PUT", "/v1/metrics"),
])
async def test_wrong_method_is_405_invalid_method(method: str, path: str) -> None:
    """Every endpoint refuses other methods with 405 and the plain text `Invalid method`."""
    status, body, content_type = await call(FakeAPI(), method, path)
    assert status == 405
    if method != "HEAD":
        assert body == b"Invalid method"
    assert content_type == TEXT


@pytest.mark.parametrize("path", ["/v1/agent/join?address=1.2.3.4", "/v1/agent/force-leave?node=x"])
async def test_client_only_agent_gets_501(path: str) -> None:
    """A client-only agent answers join and force-leave with 501 `Invalid method`."""
    status, body, content_type = await call(FakeAPI(is_server=False), "PUT", path)
    assert (status, body, content_type) == (501, b"Invalid method", TEXT)


async def test_method_is_checked_before_mode() -> None:
    """A GET join on a client-only agent is 405, not 501 (method check comes first)."""
    status, _, _ = await call(FakeAPI(is_server=False), "GET", "/v1/agent/join")
    assert status == 405


async def test_join_without_address_is_400() -> None:
    """Join without an address answers 400 `missing address to join`."""
    api = FakeAPI()
    status, body, content_type = await call(api, "POST", "/v1/agent/join")
    assert (status, body, content_type) == (400, b"missing address to join", TEXT)
    assert api.joins == []


async def test_join_passes_every_address_and_returns_compact_json() -> None:
    """Repeated address parameters all reach the facade; the answer is compact JSON."""
    api = FakeAPI()
    status, body, content_type = await call(api, "PUT",
                                            "/v1/agent/join?address=a&address=b:1,c")
    assert status == 200 and content_type == "application/json"
    assert body == b'{"num_joined":2,"error":""}'
    assert api.joins == [["a", "b:1,c"]]


@pytest.mark.parametrize("query,expected", [
    ("node=x", ("x", False)), ("node=x&prune=", ("x", False)), ("node=x&prune=1", ("x", True)),
    ("node=x&prune=True", ("x", True)), ("node=x&prune=F", ("x", False)),
])
async def test_force_leave_success_is_empty_200(query: str, expected: tuple[str, bool]) -> None:
    """Force-leave succeeds with 200, an empty body and no Content-Type; prune uses Go's bools."""
    api = FakeAPI()
    status, body, content_type = await call(api, "PUT", f"/v1/agent/force-leave?{query}")
    assert (status, body, content_type) == (200, b"", None)
    assert api.force_leaves == [expected]


@pytest.mark.parametrize("query,message", [
    ("", b"missing node to force leave"),
    ("prune=maybe", b"missing node to force leave"),
    ("node=x&prune=maybe", b"invalid prune value"),
    ("node=x&prune=yes", b"invalid prune value"),
])
async def test_force_leave_bad_parameters_are_400(query: str, message: bytes) -> None:
    """Missing node, then unparsable prune, give their 400s in that order."""
    api = FakeAPI()
    status, body, content_type = await call(api, "POST", f"/v1/agent/force-leave?{query}")
    assert (status, body, content_type) == (400, message, TEXT)
    assert api.force_leaves == []


async def test_force_leave_broadcast_timeout_is_500() -> None:
    """A force-leave whose broadcast times out answers 500 with the core's text."""
    api = FakeAPI()
    api.force_leave_error = "timed out broadcasting node removal"
    status, body, content_type = await call(api, "PUT", "/v1/agent/force-leave?node=x")
    assert (status, body, content_type) == (500, b"timed out broadcasting node removal", TEXT)


async def test_members_shape_and_key_order() -> None:
    """Members is an object with Nomad's keys in Nomad's order, compact, no newline."""
    status, body, content_type = await call(FakeAPI(), "GET", "/v1/agent/members")
    assert status == 200 and content_type == "application/json"
    assert not body.endswith(b"\n") and b" " not in body
    value = json.loads(body)
    assert list(value) == ["ServerName", "ServerRegion", "ServerDC", "Members"]
    assert list(value["Members"][0]) == [
        "Name", "Addr", "Port", "Tags", "Status", "ProtocolMin", "ProtocolMax", "ProtocolCur",
        "DelegateMin", "DelegateMax", "DelegateCur"]
    assert value["Members"][0]["Status"] == "alive"


@pytest.mark.parametrize("query,pretty", [
    ("?pretty", True), ("?pretty=", True), ("?pretty=false", True), ("?pretty=1", True),
    ("?pretty=0", False), ("", False),
])
async def test_pretty_indents_by_four_with_newline(query: str, pretty: bool) -> None:
    """?pretty (any value but 0) gives 4-space indentation and a trailing newline."""
    _, body, _ = await call(FakeAPI(), "GET", f"/v1/agent/members{query}")
    assert body.endswith(b"\n") == pretty
    assert (b'\n    "ServerName": "s1"' in body) == pretty


@pytest.mark.parametrize("query,message", [
    ("stale=maybe", b"Expect `true` or `false` for `stale` query string parameter"),
    ("per_page=ten", b"Expect a number for `per_page` query string parameter"),
    ("per_page=99999999999", b"Expect a number for `per_page` query string parameter"),
    ("wait=5x", b"Invalid wait time"),
    ("wait=abc", b"Invalid wait time"),
    ("index=-1", b"Invalid index"),
    ("index=1.5", b"Invalid index"),
])
async def test_members_generic_query_errors(query: str, message: bytes) -> None:
    """Malformed generic query parameters on members give the 400s of agent-api.md 1.3."""
    status, body, content_type = await call(FakeAPI(), "GET", f"/v1/agent/members?{query}")
    assert (status, body, content_type) == (400, message, TEXT)


@pytest.mark.parametrize("query", ["stale", "stale=true", "wait=1m30s", "index=7", "per_page=-3",
                                   "region=other", "unknown=1"])
async def test_members_good_query_options_pass(query: str) -> None:
    """Well-formed or unknown query parameters do not change the members answer."""
    status, _, _ = await call(FakeAPI(), "GET", f"/v1/agent/members?{query}")
    assert status == 200


@pytest.mark.parametrize("path", ["/v1/agent/members/", "/v1/agent/nosuch", "/v1/agent/",
                                  "/v1/status/nosuch"])
async def test_unknown_paths_are_empty_404(path: str) -> None:
    """Paths shoal does not serve answer 404 with an empty body and no Content-Type."""
    status, body, content_type = await call(FakeAPI(), "GET", path)
    assert (status, body, content_type) == (404, b"", None)


async def test_metrics_shape() -> None:
    """/v1/metrics answers go-metrics' MetricsSummary as JSON, in Go's field order."""
    status, body, content_type = await call(FakeAPI(), "GET", "/v1/metrics")
    assert status == 200 and content_type == "application/json"
    assert list(json.loads(body)) == ["Timestamp", "Gauges", "Points", "Counters", "Samples"]


@pytest.mark.parametrize("errors,text", [
    ([], ""),
    (["a"], "1 error occurred:\n\t* a\n\n"),
    (["a", "b"], "2 errors occurred:\n\t* a\n\t* b\n\n"),
])
def test_multierror_layout(errors: list[str], text: str) -> None:
    """Join errors use go-multierror's exact layout."""
    assert multierror(errors) == text
