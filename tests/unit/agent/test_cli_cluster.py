"""`shoal operator raft ...` and `shoal var ...`: requests sent, tables printed, argument errors."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from agent import cli_cluster

SERVERS = [{"ID": "0b8a-1", "Node": "s1.global", "Address": "127.0.0.1:4647", "Leader": True,
            "Voter": True, "RaftProtocol": "3"},
           {"ID": "0b8a-22", "Node": "server-two.global", "Address": "127.0.0.2:4647",
            "Leader": False, "Voter": False, "RaftProtocol": "3"}]
VAR = {"Namespace": "default", "Path": "app/db", "CreateIndex": 11, "CreateTime": 0,
       "ModifyIndex": 11, "ModifyTime": 0, "Items": {"user": "me"}}


class FakeAgent:
    """Stands in for the HTTP helpers: records each request, answers from a queue."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, str, list[tuple[str, str]], Any]] = []
        monkeypatch.setattr(cli_cluster, "http_request", self.request)
        monkeypatch.delenv("SHOAL_ADDR", raising=False)

    def request(self, address: str, method: str, path: str, query: Any = (),
                body: bytes | None = None) -> tuple[int, bytes]:
        assert address == "http://127.0.0.1:4646"
        self.requests.append((method, path, list(query), json.loads(body) if body else None))
        status, answer = self.answers.pop(0)
        return status, answer if isinstance(answer, bytes) else json.dumps(answer).encode()


def test_format_peers_has_nomads_columns() -> None:
    """list-peers prints Node ID Address State Voter RaftProtocol, leader/follower, true/false."""
    assert cli_cluster.format_peers(SERVERS).splitlines() == [
        "Node               ID       Address         State     Voter  RaftProtocol",
        "s1.global          0b8a-1   127.0.0.1:4647  leader    true   3",
        "server-two.global  0b8a-22  127.0.0.2:4647  follower  false  3"]


def test_list_peers_requests_configuration(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """-stale is passed on; the table goes to stdout; an API error is one stderr line and exit 1."""
    agent = FakeAgent(monkeypatch, (200, {"Servers": SERVERS, "Index": 3}),
                      (500, b"No cluster leader"))
    assert cli_cluster.operator_raft_list_peers(["-stale"]) == 0
    assert agent.requests == [("GET", "/v1/operator/raft/configuration", [("stale", "true")], None)]
    assert capsys.readouterr().out.startswith("Node ")
    assert cli_cluster.operator_raft_list_peers([]) == 1
    assert capsys.readouterr().err == ("Error retrieving operator raft configuration: Unexpected "
                                       "response code: 500 (No cluster leader)\n")


@pytest.mark.parametrize(("argv", "query", "output"), [
    (["-peer-id", "abc"], [("id", "abc")], 'Removed peer with id "abc"\n'),
    (["-peer-address=10.0.0.1:4647"], [("address", "10.0.0.1:4647")],
     'Removed peer with address "10.0.0.1:4647"\n'),
])
def test_remove_peer(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                     argv: list[str], query: list, output: str) -> None:
    """remove-peer sends one of id/address and prints Nomad's confirmation."""
    agent = FakeAgent(monkeypatch, (200, b""))
    assert cli_cluster.operator_raft_remove_peer(argv) == 0
    assert agent.requests == [("DELETE", "/v1/operator/raft/peer", query, None)]
    assert capsys.readouterr().out == output


@pytest.mark.parametrize(("argv", "message"), [
    ([], "an address or id is required for the peer to remove"),
    (["-peer-id", "a", "-peer-address", "b:1"], "cannot give both an address and id"),
    (["-bogus"], "unrecognized arguments"),
])
def test_remove_peer_argument_errors(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str],
                                     argv: list[str], message: str) -> None:
    """Missing, doubled or unknown flags exit 1 with one line and send nothing."""
    agent = FakeAgent(monkeypatch)
    assert cli_cluster.operator_raft_remove_peer(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert agent.requests == []


@pytest.mark.parametrize(("argv", "query", "output"), [
    ([], [], "Transferred leadership\n"),
    (["-peer-id", "x"], [("id", "x")], 'Transferred leadership to peer with id "x"\n'),
    (["-peer-address", "a:1"], [("address", "a:1")],
     'Transferred leadership to peer with address "a:1"\n'),
])
def test_transfer_leadership(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                             argv: list[str], query: list, output: str) -> None:
    """transfer-leadership PUTs an optional target."""
    agent = FakeAgent(monkeypatch, (200, b""))
    assert cli_cluster.operator_raft_transfer_leadership(argv) == 0
    assert agent.requests == [("PUT", "/v1/operator/raft/transfer-leadership", query, None)]
    assert capsys.readouterr().out == output


def test_var_put_sends_items_and_check_index(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """var put PUTs the items (first '=' splits) with ?cas from -check-index; prints the index."""
    updated = dict(VAR, ModifyIndex=14)
    agent = FakeAgent(monkeypatch, (200, VAR), (200, updated))
    assert cli_cluster.var_put(["app/db", "user=me", "url=a=b"]) == 0
    assert cli_cluster.var_put(["-check-index", "11", "-namespace", "prod", "app/db", "k=v"]) == 0
    assert agent.requests == [
        ("PUT", "/v1/var/app/db", [], {"Namespace": "default", "Path": "app/db",
                                       "Items": {"user": "me", "url": "a=b"}}),
        ("PUT", "/v1/var/app/db", [("namespace", "prod"), ("cas", "11")],
         {"Namespace": "prod", "Path": "app/db", "Items": {"k": "v"}})]
    assert capsys.readouterr().out.splitlines() == [
        'Created variable "app/db" with modify index 11',
        'Updated variable "app/db" with modify index 14']


def test_var_put_conflict_and_argument_errors(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A 409 names both indexes on one line; bad items or -check-index send nothing."""
    agent = FakeAgent(monkeypatch, (409, dict(VAR, ModifyIndex=20)))
    assert cli_cluster.var_put(["-check-index=3", "app/db", "k=v"]) == 1
    assert capsys.readouterr().err == ("Error creating variable: Check-and-Set conflict: "
                                       "check-index 3 does not match; the server-side index is 20\n")
    for argv in (["app/db"], ["app/db", "novalue"], ["app/db", "=v"],
                 ["-check-index", "x", "app/db", "k=v"]):
        assert cli_cluster.var_put(argv) == 1
        assert capsys.readouterr().err.count("\n") == 1
    assert len(agent.requests) == 1


def test_var_get_prints_json_or_not_found(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """var get prints the variable as indented JSON; a 404 is Nomad's "variable not found" error."""
    FakeAgent(monkeypatch, (200, VAR), (404, b"variable not found"))
    assert cli_cluster.var_get(["app/db"]) == 0
    assert json.loads(capsys.readouterr().out) == VAR
    assert cli_cluster.var_get(["app/db"]) == 1
    assert capsys.readouterr().err == "Error retrieving variable: variable not found\n"
    assert cli_cluster.var_get([]) == 1


def test_format_variables_table_and_empty() -> None:
    """var list prints Namespace, Path, Last Updated (RFC 3339 of ModifyTime); or "No variables found"."""
    ns = 1_661_267_677 * 10**9 + 123
    listed = [dict(VAR, ModifyTime=ns), dict(VAR, Path="nomad/jobs/example", ModifyTime=ns)]
    eastern = datetime.timezone(datetime.timedelta(hours=-4))
    assert cli_cluster.format_variables(listed, eastern).splitlines() == [
        "Namespace  Path                Last Updated",
        "default    app/db              2022-08-23T11:14:37-04:00",
        "default    nomad/jobs/example  2022-08-23T11:14:37-04:00"]
    assert cli_cluster.format_time(ns, datetime.timezone.utc) == "2022-08-23T15:14:37Z"
    assert cli_cluster.format_variables([]) == "No variables found"


def test_var_list_and_purge_requests(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """var list sends the prefix; var purge DELETEs with ?cas and accepts 204."""
    agent = FakeAgent(monkeypatch, (200, []), (204, b""), (409, None))
    assert cli_cluster.var_list(["app/"]) == 0
    assert cli_cluster.var_purge(["-check-index", "4", "app/db"]) == 0
    assert cli_cluster.var_purge(["-check-index", "4", "gone"]) == 1
    assert agent.requests == [("GET", "/v1/vars", [("prefix", "app/")], None),
                              ("DELETE", "/v1/var/app/db", [("cas", "4")], None),
                              ("DELETE", "/v1/var/gone", [("cas", "4")], None)]
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["No variables found", 'Successfully purged variable "app/db"!']
    assert captured.err == ("Error purging variable: Check-and-Set conflict: check-index 4 does "
                            "not match; the variable does not exist\n")
    assert cli_cluster.var_list(["a", "b"]) == 1
    assert cli_cluster.var_purge([]) == 1


def test_parse_items() -> None:
    """Items split on the first '='; an empty value is allowed, a missing '=' is not."""
    assert cli_cluster.parse_items(["a=1", "b=", "c=x=y"]) == {"a": "1", "b": "", "c": "x=y"}
    with pytest.raises(cli_cluster.UsageError):
        cli_cluster.parse_items(["a"])
