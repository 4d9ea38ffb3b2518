"""Cluster routes (status, operator raft, variables, faults) against a fake facade over a StateStore."""

from __future__ import annotations

from typing import Any, Sequence

import pytest

from agent.http.api import ApiError
from agent.http.app import create_app
from agent.http.cluster_routes import register_cluster_routes
from agent.state import StateStore, encode_command

from .helpers import TEXT, Answer, request_app

SERVERS = [{"Node": "s1.global", "ID": "id-1", "Address": "127.0.0.1:4647", "Leader": True,
            "Voter": True, "RaftProtocol": "3"},
           {"ID": "id-2", "Node": "s2.global", "Address": "127.0.0.2:4647", "Leader": False,
            "Voter": False, "RaftProtocol": "3"}]


class FakeCluster:
    """A server agent without raft: writes go straight into an in-process StateStore."""

    def __init__(self, *, is_server: bool = True) -> None:
        self.is_server = is_server
        self.store = StateStore()
        self.next_index = 10
        self.calls: list[tuple[Any, ...]] = []
        self.leader = "127.0.0.1:4647"
        self.fault_plan: dict[str, Any] | None = None
        self.fail_with: ApiError | None = None

    def members(self) -> dict[str, Any]:
        return {"ServerName": "s1", "ServerRegion": "global", "ServerDC": "dc1", "Members": []}

    async def join(self, addresses: Sequence[str]) -> dict[str, Any]:
        return {"num_joined": len(addresses), "error": ""}

    async def force_leave(self, node: str, prune: bool) -> None:
        return None

    def metrics(self) -> dict[str, Any]:
        return {"Timestamp": "t", "Gauges": [], "Counters": [], "Samples": []}

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    async def status_leader(self) -> str:
        self._check()
        return self.leader

    async def status_peers(self) -> list[str]:
        return [s["Address"] for s in SERVERS if s["Voter"]]

    async def raft_configuration(self, stale: bool) -> dict[str, Any]:
        self.calls.append(("configuration", stale))
        return {"Index": 7, "Servers": SERVERS}

    async def raft_remove_peer(self, *, id: str | None, address: str | None) -> None:
        self._check()
        self.calls.append(("remove", id, address))

    async def raft_transfer_leadership(self, *, id: str | None, address: str | None) -> None:
        self._check()
        self.calls.append(("transfer", id, address))

    async def state_apply(self, command: dict[str, Any]) -> dict[str, Any]:
        self._check()
        self.calls.append(("apply", command))
        self.next_index += 1
        return self.store.apply(self.next_index, encode_command(command))

    async def state_read(self, query: dict[str, Any], stale: bool) -> dict[str, Any]:
        self._check()
        self.calls.append(("read", query, stale))
        return self.store.query(query)

    def faults(self) -> dict[str, Any] | None:
        return self.fault_plan

    def set_faults(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "faults must be an object")
        self.fault_plan = body
        return body

    def clear_faults(self) -> None:
        self.fault_plan = None


async def call(api: FakeCluster, method: str, path: str, body: Any = None, *,
               raw: bytes | None = None) -> Answer:
    app = create_app(api)
    register_cluster_routes(app, api)
    return await request_app(app, method, path, body, raw=raw)


async def put_var(api: FakeCluster, path: str, items: dict[str, str], query: str = "") -> Answer:
    return await call(api, "PUT", f"/v1/var/{path}{query}", {"Items": items})


# --- status and operator ------------------------------------------------------------


async def test_status_leader_and_peers() -> None:
    """Leader is a JSON string, "" when none; peers a JSON list of voter addresses."""
    api = FakeCluster()
    answer = await call(api, "GET", "/v1/status/leader")
    assert (answer.status, answer.body) == (200, b'"127.0.0.1:4647"')
    api.leader = ""
    assert (await call(api, "GET", "/v1/status/leader")).json == ""
    assert (await call(api, "GET", "/v1/status/peers")).json == ["127.0.0.1:4647"]
    pretty = await call(api, "GET", "/v1/status/peers?pretty")
    assert pretty.body == b'[\n    "127.0.0.1:4647"\n]\n'


@pytest.mark.parametrize("path", ["/v1/status/leader", "/v1/status/peers",
                                  "/v1/operator/raft/configuration", "/v1/vars"])
async def test_read_routes_refuse_other_methods(path: str) -> None:
    """GET-only routes answer 405 "Invalid method" in plain text."""
    answer = await call(FakeCluster(), "PUT", path)
    assert (answer.status, answer.text) == (405, "Invalid method")


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/status/leader"), ("GET", "/v1/status/peers"),
    ("GET", "/v1/operator/raft/configuration"), ("DELETE", "/v1/operator/raft/peer?id=x"),
    ("PUT", "/v1/operator/raft/transfer-leadership"), ("GET", "/v1/vars"),
    ("GET", "/v1/var/a"), ("DELETE", "/v1/var/a")])
async def test_client_only_agent_has_no_servers(method: str, path: str) -> None:
    """A client-only agent answers server routes with 500 "no servers" after the method check."""
    answer = await call(FakeCluster(is_server=False), method, path)
    assert (answer.status, answer.text) == (500, "no servers")
    wrong = await call(FakeCluster(is_server=False), "PATCH", path)
    assert wrong.status in (400, 405)


async def test_raft_configuration_shape_and_stale() -> None:
    """The configuration is Nomad's RaftConfigurationResponse; ?stale reaches the facade."""
    api = FakeCluster()
    answer = await call(api, "GET", "/v1/operator/raft/configuration")
    assert list(answer.json) == ["Servers", "Index"] and answer.json["Index"] == 7
    assert [list(s) for s in answer.json["Servers"]] == [
        ["ID", "Node", "Address", "Leader", "Voter", "RaftProtocol"]] * 2
    await call(api, "GET", "/v1/operator/raft/configuration?stale")
    await call(api, "GET", "/v1/operator/raft/configuration?stale=false")
    assert api.calls == [("configuration", False), ("configuration", True), ("configuration", False)]
    bad = await call(api, "GET", "/v1/operator/raft/configuration?stale=maybe")
    assert (bad.status, bad.text) == (
        400, "Expect `true` or `false` for `stale` query string parameter")


@pytest.mark.parametrize(("query", "status", "call_seen"), [
    ("?id=id-2", 200, ("remove", "id-2", None)),
    ("?address=127.0.0.2:4647", 200, ("remove", None, "127.0.0.2:4647")),
    ("", 400, None),
    ("?id=a&address=b", 400, None),
])
async def test_remove_peer(query: str, status: int, call_seen: tuple | None) -> None:
    """DELETE /v1/operator/raft/peer takes exactly one of ?id and ?address, Nomad's errors otherwise."""
    api = FakeCluster()
    answer = await call(api, "DELETE", f"/v1/operator/raft/peer{query}")
    assert answer.status == status
    if status == 200:
        assert answer.body == b""
        assert api.calls == [call_seen]
    elif query == "":
        assert answer.text == ("Must specify either ?id with the server's ID or ?address "
                               "with IP:port of peer to remove")
    else:
        assert answer.text == "Must specify only one of ?id or ?address"
    assert (await call(api, "GET", "/v1/operator/raft/peer?id=x")).status == 405


async def test_remove_peer_facade_error_passes_through() -> None:
    """An ApiError from the facade becomes its status and one-line message."""
    api = FakeCluster()
    api.fail_with = ApiError(500, "No cluster leader")
    answer = await call(api, "DELETE", "/v1/operator/raft/peer?id=x")
    assert (answer.status, answer.text) == (500, "No cluster leader")


@pytest.mark.parametrize(("method", "query", "expected"), [
    ("PUT", "", ("transfer", None, None)),
    ("POST", "?id=id-2", ("transfer", "id-2", None)),
    ("PUT", "?address=127.0.0.2:4647", ("transfer", None, "127.0.0.2:4647")),
])
async def test_transfer_leadership(method: str, query: str, expected: tuple) -> None:
    """PUT|POST transfer-leadership passes an optional target to the facade."""
    api = FakeCluster()
    answer = await call(api, method, f"/v1/operator/raft/transfer-leadership{query}")
    assert (answer.status, answer.body) == (200, b"")
    assert api.calls == [expected]
    both = await call(api, "PUT", "/v1/operator/raft/transfer-leadership?id=a&address=b")
    assert (both.status, both.text) == (400, "Must specify only one of ?id or ?address")
    assert (await call(api, "GET", "/v1/operator/raft/transfer-leadership")).status == 405


# --- variables ----------------------------------------------------------------------


async def test_variable_put_get_list_delete() -> None:
    """A variable written by PUT reads back by GET and lists by prefix; DELETE removes it."""
    api = FakeCluster()
    put = await put_var(api, "app/db", {"user": "me", "pw": "x"})
    assert put.status == 200 and put.headers["X-Nomad-Index"] == "11"
    var = put.json
    assert list(var) == ["Namespace", "Path", "CreateIndex", "CreateTime", "ModifyIndex",
                         "ModifyTime", "Items"]
    assert (var["Namespace"], var["Path"], var["CreateIndex"], var["Items"]) == (
        "default", "app/db", 11, {"pw": "x", "user": "me"})
    assert var["CreateTime"] > 1_600_000_000 * 10**9
    got = await call(api, "GET", "/v1/var/app/db")
    assert got.json == var
    assert (got.headers["X-Nomad-Index"], got.headers["X-Nomad-KnownLeader"],
            got.headers["X-Nomad-LastContact"]) == ("11", "true", "0")
    await put_var(api, "other", {"k": "v"})
    listed = await call(api, "GET", "/v1/vars?prefix=app/")
    assert [v["Path"] for v in listed.json] == ["app/db"] and "Items" not in listed.json[0]
    assert listed.headers["X-Nomad-Index"] == "12"
    assert len((await call(api, "GET", "/v1/vars")).json) == 2
    deleted = await call(api, "DELETE", "/v1/var/app/db")
    assert (deleted.status, deleted.body) == (204, b"")
    missing = await call(api, "GET", "/v1/var/app/db")
    assert (missing.status, missing.text) == (404, "variable not found")
    assert missing.headers["X-Nomad-Index"] == "13"


async def test_variable_reads_pass_stale_and_namespace() -> None:
    """?stale and ?namespace reach the state query; an empty list is [] not null."""
    api = FakeCluster()
    assert (await call(api, "GET", "/v1/vars?namespace=prod&stale")).json == []
    await call(api, "GET", "/v1/var/a?namespace=prod")
    assert api.calls == [
        ("read", {"Type": "var_list", "Namespace": "prod", "Prefix": ""}, True),
        ("read", {"Type": "var_get", "Namespace": "prod", "Path": "a"}, False)]


async def test_variable_put_cas_conflicts() -> None:
    """A cas mismatch is 409 with the current variable; on a missing one, Nomad's zero variable."""
    api = FakeCluster()
    created = await put_var(api, "a", {"k": "1"}, "?cas=0")
    assert created.status == 200
    again = await put_var(api, "a", {"k": "2"}, "?cas=0")
    assert again.status == 409 and again.json == created.json
    assert again.headers["X-Nomad-Index"] == str(created.json["ModifyIndex"])
    ok = await put_var(api, "a", {"k": "3"}, f"?cas={created.json['ModifyIndex']}")
    assert ok.status == 200 and ok.json["Items"] == {"k": "3"}
    absent = await put_var(api, "b", {"k": "1"}, "?cas=5")
    assert absent.status == 409
    assert absent.json == {"Namespace": "default", "Path": "b", "CreateIndex": 0,
                           "CreateTime": 0, "ModifyIndex": 0, "ModifyTime": 0, "Items": None}


async def test_variable_delete_cas() -> None:
    """DELETE ?cas=n removes only a variable at ModifyIndex n; otherwise 409 with it."""
    api = FakeCluster()
    index = (await put_var(api, "a", {"k": "1"})).json["ModifyIndex"]
    stale = await call(api, "DELETE", f"/v1/var/a?cas={index - 1}")
    assert stale.status == 409 and stale.json["Path"] == "a"
    assert (await call(api, "DELETE", f"/v1/var/a?cas={index}")).status == 204
    assert (await call(api, "DELETE", "/v1/var/a?cas=0")).status == 204


@pytest.mark.parametrize(("path", "body", "message"), [
    ("a", None, "Request body is empty"),
    ("a", b"{nope", "invalid JSON body: "),
    ("a", b"[1]", "variable must be a JSON object"),
    ("a", b'{"Path": "b", "Items": {"k": "v"}}', 'variable path "b" in body does not match "a" in URL'),
    ("a", b'{"Items": {}}', "variable missing required Items object"),
    ("a", b'{"Namespace": "default"}', "variable missing required Items object"),
    ("a", b'{"Items": {"k": 1}}', "variable items must be strings"),
    ("nomad/x", b'{"Items": {"k": "v"}}', 'only paths at "nomad/jobs"'),
    ("a.b", b'{"Items": {"k": "v"}}', 'invalid path "a.b"'),
    ("a//b", b'{"Items": {"k": "v"}}', 'invalid path "a//b"'),
    ("a?cas=x", b'{"Items": {"k": "v"}}',
     'can not parse cas: strconv.ParseUint: parsing "x": invalid syntax'),
])
async def test_variable_put_bad_input_is_400(path: str, body: bytes | None, message: str) -> None:
    """Bad bodies, paths and cas values are refused with one line before anything is proposed."""
    api = FakeCluster()
    answer = await call(api, "PUT", f"/v1/var/{path}", raw=body or b"")
    assert answer.status == 400 and answer.text.startswith(message), answer.body
    assert "\n" not in answer.text
    assert api.calls == []


async def test_variable_body_path_and_namespace_rules() -> None:
    """A body Path equal to the URL's is accepted; ?namespace wins over the body's Namespace."""
    api = FakeCluster()
    answer = await call(api, "PUT", "/v1/var/a?namespace=prod",
                        {"Path": "a", "Namespace": "dev", "Items": {"k": "v"}})
    assert answer.status == 200 and answer.json["Namespace"] == "prod"
    body_ns = await call(api, "PUT", "/v1/var/a", {"Namespace": "dev", "Items": {"k": "v"}})
    assert body_ns.json["Namespace"] == "dev"


async def test_variable_route_methods_and_missing_path() -> None:
    """/v1/var/<path> answers other methods 400 "Invalid method" (as Nomad); an empty path is 400."""
    api = FakeCluster()
    answer = await call(api, "PATCH", "/v1/var/a")
    assert (answer.status, answer.text) == (400, "Invalid method")
    empty = await call(api, "GET", "/v1/var/")
    assert (empty.status, empty.text) == (400, "missing variable path")
    post = await call(api, "POST", "/v1/var/p", {"Items": {"k": "v"}})
    assert post.status == 200


async def test_variable_apply_error_and_leader_error() -> None:
    """An FSM error result is 400; a facade ApiError (no leader) passes through."""
    api = FakeCluster()

    async def refuse(command: dict[str, Any]) -> dict[str, Any]:
        return {"Error": "bad command\nsecond line"}
    api.state_apply = refuse  # type: ignore[method-assign]
    answer = await put_var(api, "a", {"k": "v"})
    assert (answer.status, answer.text) == (400, "bad command")
    api = FakeCluster()
    api.fail_with = ApiError(500, "No cluster leader")
    answer = await call(api, "GET", "/v1/var/a")
    assert (answer.status, answer.text) == (500, "No cluster leader")


# --- faults -------------------------------------------------------------------------


async def test_faults_get_put_delete() -> None:
    """GET shows the plan (null when none), PUT sets it from JSON, DELETE clears it."""
    api = FakeCluster()
    assert (await call(api, "GET", "/v1/agent/faults")).body == b"null"
    plan = {"Loss": 0.5, "Partitions": [["a"], ["b"]]}
    put = await call(api, "PUT", "/v1/agent/faults", plan)
    assert put.status == 200 and put.json == plan
    assert (await call(api, "GET", "/v1/agent/faults")).json == plan
    cleared = await call(api, "DELETE", "/v1/agent/faults")
    assert (cleared.status, cleared.body) == (200, b"")
    assert api.fault_plan is None
    bad = await call(api, "PUT", "/v1/agent/faults", raw=b"{")
    assert bad.status == 400 and bad.text.startswith("invalid JSON body")
    refused = await call(api, "PUT", "/v1/agent/faults", [1])
    assert (refused.status, refused.text) == (400, "faults must be an object")
    assert (await call(api, "POST", "/v1/agent/faults")).status == 405
    client_only = await call(FakeCluster(is_server=False), "GET", "/v1/agent/faults")
    assert client_only.status == 200
