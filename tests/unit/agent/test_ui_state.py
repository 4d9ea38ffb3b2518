"""The teaching UI's data: cell statuses, the matrix layout, chaos planning and the routes.

The pure functions of ``agent/ui_state.py`` are checked with plain values; the routes
of ``agent/http/ui_routes.py`` and the RPC handlers of ``agent/ui_rpc.py`` run against a
small fake agent through quart's in-memory test client (no sockets).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent.faults import FaultFilter, FaultRules
from agent.http.api_errors import ApiError
from agent.http.app import create_app
from agent.ui_rpc import rpc_handlers
from agent.ui_state import (ChaosError, build_state, cell_status, chaos_rules, chaos_targets,
                            member_cells, parse_chaos, worker_counts)
from gossip.messages import MemberStatus, NodeState
from gossip.types import Member, NodeView


def _member(name: str, status: MemberStatus = MemberStatus.ALIVE, server: bool = True) -> Member:
    tags = {"role": "nomad", "port": "4647", "build": "1.9.0"} if server else {"role": "web"}
    return Member(name=name, addr="127.0.0.2", port=4648, tags=tags, status=status)


def _node(name: str, state: NodeState, incarnation: int) -> NodeView:
    return NodeView(name, "127.0.0.2", 4648, b"", b"\x01\x05\x02\x02\x05\x04", incarnation, state, 0.0)


# --- cells -------------------------------------------------------------------------------


@pytest.mark.parametrize("serf, memberlist, shown", [
    ("alive", "alive", "alive"),
    ("alive", "suspect", "suspect"),      # suspicion lives only in memberlist
    ("alive", None, "alive"),
    ("failed", "dead", "failed"),
    ("failed", "suspect", "failed"),      # Serf's verdict wins once it is not alive
    ("left", "left", "left"),
    ("leaving", "alive", "leaving"),
])
def test_cell_status_shows_suspect_only_over_alive(serf: str, memberlist: str | None, shown: str) -> None:
    """A cell shows Serf's status, except suspect while Serf still says alive."""
    assert cell_status(serf, memberlist) == shown


def test_member_cells_carry_incarnation_and_kind() -> None:
    """Each member gets its status, the observer's incarnation for it, its address and kind."""
    members = [_member("s2.global"), _member("s1.global"), _member("web", server=False),
               _member("gone", MemberStatus.FAILED)]
    nodes = [_node("s1.global", NodeState.ALIVE, 1), _node("s2.global", NodeState.SUSPECT, 4),
             _node("gone", NodeState.DEAD, 2)]
    cells = member_cells(members, nodes)
    assert list(cells) == ["gone", "s1.global", "s2.global", "web"]
    assert cells["s2.global"] == {"Status": "suspect", "Incarnation": 4, "Addr": "127.0.0.2:4648",
                                  "Kind": "server"}
    assert cells["gone"]["Status"] == "failed"
    assert cells["web"] == {"Status": "alive", "Incarnation": None, "Addr": "127.0.0.2:4648",
                            "Kind": "serf"}


def test_worker_counts_sorted_by_status() -> None:
    """Workers are counted per status, in name order."""
    assert worker_counts(["Started", "Paused", "Paused", "Paused"]) == {"Paused": 3, "Started": 1}
    assert worker_counts([]) == {}


# --- the matrix --------------------------------------------------------------------------


def _view(name: str, members: dict[str, str]) -> dict[str, Any]:
    return {"Name": name, "Reachable": True, "Error": "",
            "Members": {m: {"Status": s, "Incarnation": 1, "Addr": "", "Kind": "serf" if m == "a" else "server"}
                        for m, s in members.items()},
            "Raft": {"State": "Follower", "Term": 2, "Leader": "s1.global"},
            "Workers": {"Started": 1}, "Faults": {"Enabled": True, "Rules": None}}


def test_build_state_rows_columns_and_unreachable_observers() -> None:
    """Rows are servers in name order; columns the union of all views; missing rows say why."""
    views = {"s1.global": _view("s1.global", {"s1.global": "alive", "s2.global": "alive", "a": "alive"}),
             "s2.global": "no answer: i/o timeout"}
    servers = [("s3.global", "failed"), ("s2.global", "alive"), ("s1.global", "alive")]
    state = build_state("s1.global", True, servers, views)
    assert state["Observer"] == "s1.global" and state["FaultInjection"] is True
    assert state["Members"] == [{"Name": "a", "Kind": "serf"}, {"Name": "s1.global", "Kind": "server"},
                                {"Name": "s2.global", "Kind": "server"}, {"Name": "s3.global", "Kind": "server"}]
    rows = {row["Name"]: row for row in state["Observers"]}
    assert [row["Name"] for row in state["Observers"]] == ["s1.global", "s2.global", "s3.global"]
    assert rows["s1.global"]["Reachable"] and rows["s1.global"]["Status"] == "alive"
    assert rows["s2.global"] == {"Name": "s2.global", "Reachable": False, "Error": "no answer: i/o timeout",
                                 "Members": {}, "Raft": None, "Workers": {}, "Faults": None,
                                 "Status": "alive"}
    assert rows["s3.global"]["Error"] == "failed in s1.global's view; not asked"


# --- chaos planning ----------------------------------------------------------------------


def test_parse_chaos_accepts_the_three_actions() -> None:
    """Isolate and loss name a member; loss takes a percent in (0, 100]; heal needs nothing."""
    assert parse_chaos({"Action": "isolate", "Member": "s2.global"}) == ("isolate", "s2.global", 0.0)
    assert parse_chaos({"Action": "loss", "Member": "s2.global", "Percent": 20}) == ("loss", "s2.global", 0.2)
    assert parse_chaos({"Action": "heal"}) == ("heal", "", 0.0)


@pytest.mark.parametrize("body, message", [
    ([], "chaos request must be a JSON object"),
    ({"Action": "boom"}, "Action must be one of isolate, loss, heal, got 'boom'"),
    ({"Action": "isolate"}, "isolate needs a Member name"),
    ({"Action": "loss", "Member": "s1", "Percent": 0}, "Percent must be a number in (0, 100], got 0"),
    ({"Action": "loss", "Member": "s1", "Percent": True}, "Percent must be a number in (0, 100], got True"),
    ({"Action": "loss", "Member": "s1"}, "Percent must be a number in (0, 100], got None"),
])
def test_parse_chaos_refuses_bad_bodies(body: Any, message: str) -> None:
    """A bad chaos body is one clear line."""
    with pytest.raises(ChaosError) as info:
        parse_chaos(body)
    assert str(info.value) == message


def test_chaos_targets_keep_rules_on_the_serving_side() -> None:
    """Isolation goes on every server but the isolated one, so heal from here reaches all holders."""
    alive = ["s1.global", "s2.global", "s3.global"]
    assert chaos_targets("isolate", "s3.global", "s1.global", alive) == ["s1.global", "s2.global"]
    assert chaos_targets("isolate", "serf1", "s2.global", alive) == ["s2.global", "s1.global", "s3.global"]
    assert chaos_targets("isolate", "s1.global", "s1.global", alive) == ["s1.global"]
    assert chaos_targets("loss", "s2.global", "s1.global", alive) == ["s2.global"]
    assert chaos_targets("heal", "", "s2.global", alive) == ["s2.global", "s1.global", "s3.global"]
    with pytest.raises(ChaosError, match="serf1 is not an alive server"):
        chaos_targets("loss", "serf1", "s1.global", alive)


def test_chaos_rules_merge_into_current_rules() -> None:
    """Isolate adds a group of one (moving the member out of others); loss keeps the rest; heal clears."""
    first = chaos_rules(None, "isolate", "s3.global", 0.0)
    assert first == {"DropTo": [], "DropFrom": [], "Loss": 0, "DelayMs": 0,
                     "Partitions": [["s3.global"]], "Seed": 0}
    second = chaos_rules(first, "isolate", "s2.global", 0.0)
    assert second is not None and second["Partitions"] == [["s2.global"], ["s3.global"]]
    current = {"DropTo": ["x"], "DropFrom": [], "Loss": 0, "DelayMs": 50,
               "Partitions": [["s1.global", "s2.global"]], "Seed": 7}
    moved = chaos_rules(current, "isolate", "s2.global", 0.0)
    assert moved == dict(current, Partitions=[["s1.global"], ["s2.global"]])
    assert chaos_rules(current, "loss", "s1.global", 0.2) == dict(current, Loss=0.2)
    assert chaos_rules(current, "heal", "", 0.0) is None
    # every result is a valid /v1/agent/faults body
    for rules in (first, second, moved):
        FaultRules.from_json(rules)


# --- routes and RPC against a fake agent ----------------------------------------------------


class _Raft:
    def stats(self) -> Any:
        from types import SimpleNamespace
        from raftlite import Role
        return SimpleNamespace(role=Role.LEADER, term=5)


@dataclass
class _FakeServer:
    raft_address: str = "127.0.0.2:4647"
    supervisor: Any = None
    raft: Any = None

    def __post_init__(self) -> None:
        from types import SimpleNamespace
        self.raft = SimpleNamespace(core=_Raft())

    def leader_address(self) -> str:
        return self.raft_address

    def servers(self) -> list[Any]:
        from agent.servers import parse_server
        return [p for p in (parse_server(m) for m in _FakeHandle().members()) if p is not None]


@dataclass
class _FakeHandle:
    def members(self) -> list[Member]:
        return [_member("s1.global"), _member("web", server=False)]


@dataclass
class _FakeConfig:
    member_name: str = "s1.global"
    acl_enabled: bool = False
    http_api_response_headers: tuple = ()
    enable_debug: bool = False


@dataclass
class _FakeAPI:
    """Just what the UI routes touch; fault injection on when ``faults_filter`` is set."""

    faults_filter: FaultFilter | None = None
    config: _FakeConfig = field(default_factory=_FakeConfig)
    handle: _FakeHandle = field(default_factory=_FakeHandle)
    server: _FakeServer = field(default_factory=_FakeServer)
    client: Any = None
    is_server: bool = True
    calls: list[str] = field(default_factory=list)

    def faults(self) -> dict[str, Any] | None:
        if self.faults_filter is None:
            raise ApiError(403, "fault injection is disabled on this agent (start it with -fault-injection)")
        rules = self.faults_filter.rules
        return None if rules is None else rules.to_json()

    async def set_faults(self, body: Any) -> dict[str, Any]:
        rules = FaultRules.from_json(body)
        self.faults_filter.set_rules(rules)
        return rules.to_json()

    def clear_faults(self) -> None:
        self.faults()   # the 403 first, as AgentAPI does
        assert self.faults_filter is not None
        self.faults_filter.clear()


def _with_faults() -> _FakeAPI:
    import random
    return _FakeAPI(faults_filter=FaultFilter("s1.global", random.Random("ui-test")))


async def test_ui_files_are_served_with_their_content_types() -> None:
    """/ui and /ui/ give the page; the assets come with their types; nothing else is served."""
    client = create_app(_FakeAPI()).test_client()
    for path in ("/ui", "/ui/"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        body = await response.get_data()
        assert b'src="/ui/ui.js"' in body and b"http://" not in body and b"https://" not in body
    expected = {"/ui/ui.js": "text/javascript; charset=utf-8", "/ui/ui.css": "text/css; charset=utf-8",
                "/ui/index.html": "text/html; charset=utf-8"}
    for path, content_type in expected.items():
        response = await client.get(path)
        assert (response.status_code, response.headers["Content-Type"]) == (200, content_type), path
    for path in ("/ui/missing.js", "/ui/../ui_state.py", "/ui/__init__.py", "/ui/x/ui.js"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert await response.get_data() == b""
    response = await client.post("/ui")
    assert (response.status_code, await response.get_data()) == (405, b"Invalid method")


async def test_state_route_gathers_the_local_view() -> None:
    """/v1/ui/state of a lone server: its row, its members, raft role and term, fault rules."""
    client = create_app(_with_faults()).test_client()
    response = await client.get("/v1/ui/state")
    assert response.status_code == 200
    state = json.loads(await response.get_data())
    assert state["Observer"] == "s1.global" and state["FaultInjection"] is True
    assert [m["Name"] for m in state["Members"]] == ["s1.global", "web"]
    (row,) = state["Observers"]
    assert row["Members"]["web"]["Kind"] == "serf"
    assert row["Raft"] == {"State": "Leader", "Term": 5, "Leader": "s1.global"}
    assert row["Faults"] == {"Enabled": True, "Rules": None}
    response = await client.post("/v1/ui/state")
    assert response.status_code == 405


async def test_chaos_route_refuses_without_fault_injection_and_applies_with_it() -> None:
    """Without -fault-injection chaos is 403 and nothing changes; with it the rules change."""
    client = create_app(_FakeAPI()).test_client()
    response = await client.post("/v1/ui/chaos", data=json.dumps({"Action": "heal"}))
    assert response.status_code == 403
    assert (await response.get_data()).startswith(b"fault injection is disabled on this agent")

    api = _with_faults()
    client = create_app(api).test_client()
    response = await client.post("/v1/ui/chaos", data=json.dumps({"Action": "isolate", "Member": "web"}))
    assert response.status_code == 200
    assert json.loads(await response.get_data()) == {"Action": "isolate", "Member": "web",
                                                     "Applied": ["s1.global"], "Failed": {}}
    assert api.faults()["Partitions"] == [["web"]]
    response = await client.post("/v1/ui/chaos", data=json.dumps({"Action": "loss", "Member": "s1.global",
                                                                  "Percent": 20}))
    assert response.status_code == 200 and api.faults()["Loss"] == 0.2
    response = await client.post("/v1/ui/chaos", data=b"{not json")
    assert (response.status_code, await response.get_data()) == (400, b"chaos request is not valid JSON")
    response = await client.post("/v1/ui/chaos", data=json.dumps({"Action": "loss", "Member": "web",
                                                                  "Percent": 20}))
    assert response.status_code == 400 and api.faults()["Loss"] == 0.2   # bad input changes nothing
    response = await client.post("/v1/ui/chaos", data=json.dumps({"Action": "heal"}))
    assert response.status_code == 200 and api.faults() is None


async def test_rpc_handlers_answer_view_and_faults() -> None:
    """Agent.UIView gives the row; Agent.UIFaults merges into this agent's rules; bad args refused."""
    from agent.rpc import RpcError

    api = _with_faults()
    handlers = rpc_handlers(api)
    view = await handlers["Agent.UIView"]({"AuthToken": ""})
    assert view["Name"] == "s1.global" and view["Raft"]["Term"] == 5
    answer = await handlers["Agent.UIFaults"]({"AuthToken": "", "Action": "isolate", "Member": "web",
                                               "Loss": 0.0})
    assert answer["Rules"]["Partitions"] == [["web"]]
    with pytest.raises(RpcError):
        await handlers["Agent.UIFaults"]({"AuthToken": "", "Action": "nope", "Member": "", "Loss": 0})
    with pytest.raises(RpcError, match="403,fault injection is disabled"):
        await rpc_handlers(_FakeAPI())["Agent.UIFaults"]({"AuthToken": "", "Action": "heal",
                                                          "Member": "", "Loss": 0})


class _AclState:
    """A replicated state that knows one management token, ``secret-m``."""

    def query(self, query: dict[str, Any]) -> dict[str, Any]:
        assert query["Type"] == "acl_resolve"
        if query["SecretID"] == "secret-m":
            return {"Token": {"Type": "management", "SecretID": "secret-m"}, "Policies": []}
        if query["SecretID"] == "":
            return {"Token": {"Type": "client", "SecretID": ""}, "Policies": []}   # anonymous: no rights
        return {"Token": None, "Policies": []}


async def test_state_and_chaos_need_a_token_with_acls_on_but_the_page_does_not() -> None:
    """With ACLs on: the page loads without a token; state and chaos need one (X-Nomad-Token)."""
    api = _with_faults()
    api.config.acl_enabled = True
    api.server.state = _AclState()   # type: ignore[attr-defined]
    client = create_app(api).test_client()
    assert (await client.get("/ui")).status_code == 200
    response = await client.get("/v1/ui/state")
    assert (response.status_code, await response.get_data()) == (403, b"Permission denied")
    response = await client.get("/v1/ui/state", headers={"X-Nomad-Token": "secret-x"})
    assert (response.status_code, await response.get_data()) == (403, b"ACL token not found")
    response = await client.get("/v1/ui/state", headers={"X-Nomad-Token": "secret-m"})
    assert response.status_code == 200
    response = await client.post("/v1/ui/chaos", data=json.dumps({"Action": "heal"}))
    assert response.status_code == 403
    response = await client.post("/v1/ui/chaos", data=json.dumps({"Action": "heal"}),
                                 headers={"X-Nomad-Token": "secret-m"})
    assert response.status_code == 200
