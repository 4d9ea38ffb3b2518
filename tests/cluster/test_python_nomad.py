"""python-nomad 2.1.0 (from PyPI, unchanged) against real shoal processes (agent-api.md section 14).

One cluster for the module: 3 servers (bootstrap_expect 3) and 1 client-only agent,
plus a single ACL-enabled server started from a ``-config`` HCL file. Each of the six
agent methods returns the shapes of section 14, errors raise the library's exception
classes by status (400 BadRequest, 403 URLNotAuthorized, 404 URLNotFound, 409
VariableConflict, anything else BaseNomadException), and ``region`` is ignored.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from harness import LoopbackAllocator, ProcSet, ShoalNode, http, make_shoal, wait_until
from raft_procs import raft_address, start_servers, wait_one_leader
from sched_procs import make_client

nomad = pytest.importorskip("nomad")
from nomad.api import exceptions as nomad_errors  # noqa: E402  (after the importorskip)

pytestmark = pytest.mark.cluster


@dataclass
class Cluster:
    procs: ProcSet
    servers: list[ShoalNode]
    client: ShoalNode
    acl_server: ShoalNode
    management: str


def _api(node: ShoalNode, **kwargs: Any) -> Any:
    """A python-nomad client for ``node`` (explicit address, so NOMAD_* variables do not leak in)."""
    kwargs.setdefault("token", None)
    return nomad.Nomad(address=node.url, timeout=15, **kwargs)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """3 servers + 1 client-only agent, and a separate ACL-enabled server; all stopped by PID at the end."""
    for name in ("NOMAD_ADDR", "NOMAD_TOKEN", "NOMAD_REGION", "NOMAD_NAMESPACE"):
        os.environ.pop(name, None)
    tmp = tmp_path_factory.mktemp("python-nomad")
    loopback = LoopbackAllocator(16 + (os.getpid() + 100) % 200)   # a block apart from conftest's
    procs = ProcSet()
    try:
        servers = start_servers(procs, tmp, loopback, ["pn1", "pn2", "pn3"], expect=3)
        wait_one_leader(servers)
        client = make_client(procs, tmp, loopback.next(), "pnc", servers)
        client.start()
        wait_until("the client to know its servers", lambda: http("GET", f"{client.url}/v1/agent/servers"),
                   lambda reply: reply[0] == 200 and reply[1] not in (b"", b"[]"), timeout=30,
                   watch=[client])
        config = tmp / "acl.hcl"
        config.write_text("acl {\n  enabled = true\n}\n")
        acl_server = make_shoal(procs, tmp, loopback.next(), "pnacl",
                                extra=["-bootstrap-expect", "1", "-config", str(config)])
        acl_server.start()
        wait_until("the ACL server to have a leader", lambda: http("GET", f"{acl_server.url}/v1/agent/health"),
                   lambda reply: reply[0] == 200, timeout=30, watch=[acl_server])
        management = _api(acl_server).acl.generate_bootstrap()["SecretID"]
        yield Cluster(procs, servers, client, acl_server, management)
    finally:
        procs.stop_all()


@pytest.fixture(autouse=True)
def _attach_logs(request: pytest.FixtureRequest, cluster: Cluster) -> None:
    """Let the conftest report hook print the processes' log tails when a test fails."""
    request.node._cluster_procs = cluster.procs


def _raises(kind: type, call: Any, status: int, text: str | None = None) -> Any:
    """Run ``call``; it must raise exactly ``kind`` carrying a response with ``status`` (and ``text``)."""
    with pytest.raises(nomad_errors.BaseNomadException) as info:
        call()
    error = info.value
    assert type(error) is kind, (type(error), error)
    assert error.nomad_resp.status_code == status, error.nomad_resp.text
    if text is not None:
        assert error.nomad_resp.text == text
        assert text in str(error)
    return error


@pytest.mark.parametrize("region", [None, "global", "elsewhere"])
def test_get_agent_and_members_shapes(cluster: Cluster, region: str | None) -> None:
    """get_agent is the self object; get_members a dict (not a list), on servers and the client."""
    server, client = cluster.servers[0], cluster.client
    doc = _api(server, region=region).agent.get_agent()
    assert list(doc) == ["config", "member", "stats"]
    assert (doc["member"]["Name"], doc["member"]["Status"]) == (server.member_name, "alive")
    assert doc["config"]["Region"] == "global"
    client_doc = _api(client, region=region).agent.get_agent()
    assert client_doc["member"]["Status"] == "none" and client_doc["member"]["Addr"] is None
    for node in (server, client):
        members = _api(node, region=region).agent.get_members()
        assert isinstance(members, dict)
        assert list(members) == ["ServerName", "ServerRegion", "ServerDC", "Members"]
        assert (members["ServerRegion"], members["ServerDC"]) == ("global", "dc1")
        assert {m["Name"]: m["Status"] for m in members["Members"]} == {
            s.member_name: "alive" for s in cluster.servers}
    assert _api(server).agent.get_members()["ServerName"] == server.node


@pytest.mark.parametrize("region", [None, "elsewhere"])
def test_get_and_update_servers(cluster: Cluster, region: str | None) -> None:
    """The client's list is sorted ip:port strings; update_servers answers 200; servers answer 501."""
    agent = _api(cluster.client, region=region).agent
    every = sorted(raft_address(s) for s in cluster.servers)
    assert agent.update_servers(every) == 200
    assert agent.get_servers() == every
    assert agent.update_servers([every[0]]) == 200
    assert agent.get_servers() == [every[0]]
    assert agent.update_servers(every) == 200
    _raises(nomad_errors.BadRequestNomadException, lambda: agent.update_servers([]), 400,
            "missing server address")
    error = _raises(nomad_errors.BadRequestNomadException, lambda: agent.update_servers(["127.0.0.1:1"]), 400)
    assert error.nomad_resp.text.startswith("1 error occurred:\n\t* Server at address 127.0.0.1:1 failed ping: ")
    assert agent.get_servers() == every                      # a refused update changes nothing
    server_agent = _api(cluster.servers[0], region=region).agent
    _raises(nomad_errors.BaseNomadException, server_agent.get_servers, 501, "Invalid method")
    _raises(nomad_errors.BaseNomadException, lambda: server_agent.update_servers(every), 501, "Invalid method")


@pytest.mark.parametrize("region", [None, "elsewhere"])
def test_join_agent(cluster: Cluster, region: str | None) -> None:
    """join_agent returns {num_joined, error} even when every address fails; 400 and 501 raise."""
    s1, s2 = cluster.servers[:2]
    agent = _api(s1, region=region).agent
    assert agent.join_agent([s2.serf_addr]) == {"num_joined": 1, "error": ""}
    assert agent.join_agent(s2.serf_addr) == {"num_joined": 1, "error": ""}      # a string: one address
    assert agent.join_agent([s2.serf_addr, "127.0.0.1:1"]) == {"num_joined": 1, "error": ""}
    failed = agent.join_agent(["127.0.0.1:1"])
    assert list(failed) == ["num_joined", "error"] and failed["num_joined"] == 0
    assert failed["error"].startswith("1 error occurred:\n\t* Failed to join 127.0.0.1:1: ")
    _raises(nomad_errors.BadRequestNomadException, lambda: agent.join_agent([]), 400, "missing address to join")
    client_agent = _api(cluster.client, region=region).agent
    _raises(nomad_errors.BaseNomadException, lambda: client_agent.join_agent([s1.serf_addr]), 501,
            "Invalid method")


@pytest.mark.parametrize("region", [None, "elsewhere"])
def test_force_leave(cluster: Cluster, region: str | None) -> None:
    """force_leave returns the status code 200 (unknown names too); no node raises 400; client 501."""
    agent = _api(cluster.servers[0], region=region).agent
    assert agent.force_leave("nobody.global") == 200
    _raises(nomad_errors.BadRequestNomadException, lambda: agent.force_leave(""), 400,
            "missing node to force leave")
    _raises(nomad_errors.BaseNomadException, lambda: _api(cluster.client).agent.force_leave("x"), 501,
            "Invalid method")
    statuses = {m["Name"]: m["Status"] for m in agent.get_members()["Members"]}
    assert statuses == {s.member_name: "alive" for s in cluster.servers}


def test_acl_errors_raise_url_not_authorized(cluster: Cluster) -> None:
    """With acl { enabled = true } from a -config file: no token or an unknown one raises 403."""
    node = cluster.acl_server
    _raises(nomad_errors.URLNotAuthorizedNomadException, _api(node).agent.get_agent, 403, "Permission denied")
    unknown = _api(node, token=str(uuid.uuid4())).agent
    _raises(nomad_errors.URLNotAuthorizedNomadException, unknown.get_agent, 403, "ACL token not found")
    _raises(nomad_errors.URLNotAuthorizedNomadException, unknown.get_members, 403, "Permission denied")
    _raises(nomad_errors.URLNotAuthorizedNomadException, lambda: unknown.force_leave("x"), 403,
            "ACL token not found")
    managed = _api(node, token=cluster.management).agent
    assert managed.get_agent()["config"]["ACL"]["Enabled"] is True
    assert managed.get_members()["Members"][0]["Name"] == node.member_name
    assert managed.force_leave("nobody.global") == 200
    assert unknown.join_agent(["127.0.0.1:1"])["num_joined"] == 0        # join needs no ACL (Q11)


def test_not_found_and_conflict_through_variables(cluster: Cluster) -> None:
    """No agent method can get a 404 or 409, so the variables API shows those two classes."""
    api = _api(cluster.servers[1])
    _raises(nomad_errors.URLNotFoundNomadException, lambda: api.variable.get_variable("no/such/var"), 404,
            "variable not found")
    path = f"pn/{uuid.uuid4().hex[:8]}"
    created = api.variable.create_variable(path, {"Items": {"k": "v"}}, cas=0)
    assert created["Path"] == path
    _raises(nomad_errors.VariableConflict, lambda: api.variable.create_variable(path, {"Items": {"k": "w"}}, cas=0),
            409)
    assert api.variable.get_variable(path)["Items"] == {"k": "v"}


def test_connection_error_is_base_exception(cluster: Cluster) -> None:
    """A closed port raises BaseNomadException wrapping the requests error (no response)."""
    with pytest.raises(nomad_errors.BaseNomadException) as info:
        nomad.Nomad(address="http://127.0.0.1:1", timeout=2, token=None).agent.get_agent()
    assert type(info.value) is nomad_errors.BaseNomadException
