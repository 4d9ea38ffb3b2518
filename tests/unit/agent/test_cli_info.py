"""`shoal agent-info` and `shoal server members` output, as Nomad 1.9 prints them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent import cli, cli_info


def test_agent_info_sorted_sections_and_keys() -> None:
    """Each section name, then `  key = value` lines; sections and keys sorted; null sections bare."""
    document = {"stats": {"runtime": {"version": "python3.11.7", "arch": "amd64"},
                          "nomad": {"server": "true", "leader": "false"}, "vault": None}}
    assert cli_info.format_agent_info(document).splitlines() == [
        "nomad", "  leader = false", "  server = true",
        "runtime", "  arch = amd64", "  version = python3.11.7",
        "vault"]


def test_agent_info_command_text_json_and_errors(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The command GETs /v1/agent/self; -json prints sorted JSON; a non-200 exits 1 with one line."""
    answers: list[tuple[int, bytes]] = [(200, json.dumps({"stats": {"client": {"node_id": "n"}}}).encode())]
    seen: list[tuple[str, str, str]] = []

    def fake(address: str, method: str, path: str, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        seen.append((address, method, path))
        return answers[0]

    monkeypatch.setattr(cli_info, "http_request", fake)
    assert cli.main(["agent-info", "-address", "http://127.0.0.1:5646"]) == 0
    assert capsys.readouterr().out == "client\n  node_id = n\n"
    assert seen == [("http://127.0.0.1:5646", "GET", "/v1/agent/self")]
    assert cli.main(["agent-info", "-json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"stats": {"client": {"node_id": "n"}}}
    answers[0] = (403, b"Permission denied")
    assert cli.main(["agent-info"]) == 1
    assert capsys.readouterr().err == \
        "Error querying agent info: Unexpected response code: 403 (Permission denied)\n"
    assert cli.main(["agent-info", "extra"]) == 1


def member(name: str, tags: dict[str, str]) -> dict[str, Any]:
    return {"Name": name, "Addr": "127.0.0.1", "Port": 4648, "Status": "alive", "ProtocolCur": 2,
            "Tags": tags}


def test_server_members_columns_and_missing_raft_version() -> None:
    """Nomad 1.9's columns; a member without raft_vsn shows an empty cell, as Go's map lookup."""
    members = [member("a.global", {"region": "global", "dc": "dc1", "build": "0.1.0", "port": "4647"})]
    header, row = cli.format_members(members, {"global": "127.0.0.1:4647"}, detailed=False).splitlines()
    assert [c for c in header.split("  ") if c] == ["Name", "Address", "Port", "Status", "Leader",
                                                     "Raft Version", "Build", "Datacenter", "Region"]
    assert row.split() == ["a.global", "127.0.0.1", "4648", "alive", "true", "0.1.0", "dc1", "global"]


def test_server_members_leader_lookup_errors(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Every region is tried; failures print the table, a blank line, then the warning (exit 1);
    -json ignores them and exits 0, with the Leader tag in the sorted tags."""
    body = {"ServerName": "a", "ServerRegion": "r1", "ServerDC": "dc1",
            "Members": [member("a.r1", {"region": "r1", "port": "4647", "raft_vsn": "3"}),
                        member("b.r2", {"region": "r2", "port": "4647", "raft_vsn": "3"})]}

    def fake(address: str, method: str, path: str, query: Any = ()) -> tuple[int, bytes]:
        if path == "/v1/agent/members":
            return 200, json.dumps(body).encode()
        region = dict(query)["region"]
        return (200, b'"127.0.0.1:4647"') if region == "r2" else (500, b"No cluster leader")

    monkeypatch.setattr(cli, "http_request", fake)
    assert cli.main(["server", "members"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[1].split()[4] == "false" and lines[2].split()[4] == "true" and lines[3] == ""
    assert captured.err.startswith('Error determining leaders: 1 error occurred:\n\t* Region "r1": '
                                   'Unexpected response code: 500 (No cluster leader)')
    assert cli.main(["server", "members", "-json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [m["Tags"]["Leader"] for m in printed] == ["false", "true"]
    assert list(printed[0]["Tags"]) == sorted(printed[0]["Tags"])
