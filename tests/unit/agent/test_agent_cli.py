"""The `shoal` client commands: table layout, exit codes and error lines."""

from __future__ import annotations

import pytest

from agent import cli


def member(name: str, region: str, dc: str, port: str = "4647") -> dict:
    return {"Name": name, "Addr": "127.0.0.1", "Port": 4648, "Status": "alive", "ProtocolCur": 2,
            "Tags": {"region": region, "dc": dc, "build": "0.1.0", "raft_vsn": "3", "port": port}}


def test_members_table_without_leader_column() -> None:
    """Without /v1/status/leader the table has Nomad's columns minus Leader."""
    text = cli.format_members([member("a.global", "global", "dc1")], None, detailed=False)
    assert text.splitlines() == [
        "Name      Address    Port  Status  Raft Version  Build  Datacenter  Region",
        "a.global  127.0.0.1  4648  alive   3             0.1.0  dc1         global"]


def test_members_table_marks_leader_and_detailed_tags() -> None:
    """The leader is the member whose Addr:port tag equals the leader address; -detailed adds tags."""
    members = [member("a.global", "global", "dc1", "1"), member("b.global", "global", "dc1", "2")]
    text = cli.format_members(members, {"global": "127.0.0.1:2"}, detailed=True)
    header, first, second = text.splitlines()
    assert header.split() [:6] == ["Name", "Address", "Port", "Status", "Leader", "Protocol"]
    assert first.split()[4] == "false" and second.split()[4] == "true"
    assert first.endswith("build=0.1.0,dc=dc1,port=1,raft_vsn=3,region=global")


def test_server_members_connection_refused_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """An unreachable agent gives one stderr line and exit status 1."""
    assert cli.main(["server", "members", "-address", "http://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "127.0.0.1:1" in err


@pytest.mark.parametrize("argv", [["server"], ["server", "join"], ["server", "force-leave"],
                                  ["server", "force-leave", "a", "b"], ["server", "nosuch"],
                                  ["nosuch"], ["agent", "-server", "-bogus"]])
def test_usage_errors_exit_1(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Usage errors print to stderr and exit 1, as Nomad's CLI does."""
    assert cli.main(argv) == 1
    assert capsys.readouterr().err.strip()


def test_address_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SHOAL_ADDR aims the client when -address is not given; a scheme is added if missing."""
    monkeypatch.setenv("SHOAL_ADDR", "127.0.0.9:5646")
    assert cli.agent_address(None) == "http://127.0.0.9:5646"
    assert cli.agent_address("http://x:1/") == "http://x:1"
    monkeypatch.delenv("SHOAL_ADDR")
    assert cli.agent_address(None) == "http://127.0.0.1:4646"
