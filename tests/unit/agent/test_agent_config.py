"""`shoal agent` flag parsing, defaults and the serf tags a server advertises."""

from __future__ import annotations

import base64

import pytest

from agent.config import (UsageError, normalise_flags, parse_agent_args, parse_go_bool,
                          parse_go_duration, server_tags)


@pytest.mark.parametrize("argv", [
    ["-server", "-node=n1", "-http-port=5646", "-serf-port", "5648"],
    ["--server", "--node", "n1", "--http-port", "5646", "--serf-port=5648"],
    ["-server=true", "-node", "n1", "-http-port", "5646", "-serf-port=5648"],
])
def test_single_and_double_dash_spellings_agree(argv: list[str]) -> None:
    """-flag, --flag, -flag=value and -flag value all parse to the same settings."""
    config = parse_agent_args(argv)
    assert (config.server, config.node, config.http_port, config.serf_port) == (True, "n1", 5646, 5648)


def test_defaults_follow_nomad() -> None:
    """Region, dc, ports, bootstrap-expect and leave-on-* default as Nomad's do."""
    config = parse_agent_args(["-server", "-bind", "10.1.2.3"])
    assert (config.region, config.datacenter) == ("global", "dc1")
    assert (config.http_port, config.rpc_port, config.serf_port) == (4646, 4647, 4648)
    assert config.bootstrap_expect == 0
    assert (config.leave_on_interrupt, config.leave_on_terminate) == (False, False)
    assert config.advertise == "10.1.2.3"
    assert config.gossip_profile == "wan"
    assert config.retry_interval == 30.0


def test_dev_mode_is_server_and_client_on_loopback() -> None:
    """-dev binds 127.0.0.1, is server and client, expects 1 server and uses the lan profile."""
    config = parse_agent_args(["-dev"])
    assert config.is_server and config.is_client
    assert (config.bind, config.advertise, config.bootstrap_expect) == ("127.0.0.1", "127.0.0.1", 1)
    assert config.gossip_profile == "lan"


def test_loopback_bind_defaults_to_lan_and_profile_flag_wins() -> None:
    """A loopback gossip address picks lan; -gossip-profile overrides the default."""
    assert parse_agent_args(["-server", "-bind", "127.0.0.2"]).gossip_profile == "lan"
    assert parse_agent_args(["-server", "-bind", "127.0.0.2",
                             "-gossip-profile", "local"]).gossip_profile == "local"
    assert parse_agent_args(["-server", "-bind", "10.0.0.1", "-advertise", "127.0.0.5"]
                            ).gossip_profile == "lan"


def test_join_flags_repeat() -> None:
    """-join and -retry-join may be given several times, in order."""
    config = parse_agent_args(["-server", "-join", "a", "-join=b:1", "-retry-join", "c",
                               "-retry-interval", "1.5s", "-retry-max", "3"])
    assert config.join == ("a", "b:1") and config.retry_join == ("c",)
    assert (config.retry_interval, config.retry_max) == (1.5, 3)


def test_encrypt_key_is_decoded() -> None:
    """-encrypt takes base64 of a 16, 24 or 32 byte key."""
    key = bytes(range(32))
    assert parse_agent_args(["-server", "-encrypt", base64.b64encode(key).decode()]).encrypt == key


@pytest.mark.parametrize("argv,message", [
    ([], "Must specify either server, client or dev mode"),
    (["-server", "-encrypt", "!!"], "Invalid encryption key"),
    (["-server", "-encrypt", base64.b64encode(bytes(10)).decode()], "16, 24 or 32 bytes"),
    (["-server", "-log-level", "LOUD"], "Invalid log level: LOUD"),
    (["-server", "-http-port", "http"], "-http-port"),
    (["-server", "-serf-port", "70000"], "-serf-port"),
    (["-server", "-bind", "localhost"], "-bind"),
    (["-server", "-gossip-profile", "moon"], "-gossip-profile"),
    (["-server", "-bogus"], "unrecognized arguments"),
    (["-server", "-retry-interval", "soon"], "-retry-interval"),
    (["-server=maybe"], "-server"),
])
def test_bad_flags_are_usage_errors(argv: list[str], message: str) -> None:
    """Bad flags raise UsageError with a one-line message naming the problem."""
    with pytest.raises(UsageError, match=message.replace("(", r"\(")) as info:
        parse_agent_args(argv)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("level", ["trace", "DEBUG", "Info", "WARN", "ERROR"])
def test_log_levels_accepted(level: str) -> None:
    """Log levels are Nomad's names, case-insensitive."""
    assert parse_agent_args(["-server", "-log-level", level]).log_level == level.upper()


def test_server_tags_exactly_as_nomad() -> None:
    """Tags are Nomad's (agent-api.md 2.2) in order; bootstrap only for expect 1; never mvn."""
    config = parse_agent_args(["-server", "-node", "s1", "-bind", "127.0.0.2", "-rpc-port", "5647",
                               "-bootstrap-expect", "1"])
    tags = server_tags(config, node_id="id-1", build="0.1.0", revision="abc")
    assert tags == {"role": "nomad", "region": "global", "dc": "dc1", "build": "0.1.0",
                    "revision": "abc", "vsn": "1", "raft_vsn": "3", "id": "id-1",
                    "rpc_addr": "127.0.0.2", "port": "5647", "bootstrap": "1", "expect": "1"}
    assert config.member_name == "s1.global"


@pytest.mark.parametrize("expect,bootstrap,expect_tag", [(0, None, None), (1, "1", "1"),
                                                         (3, None, "3")])
def test_expect_and_bootstrap_tags(expect: int, bootstrap: str | None, expect_tag: str | None) -> None:
    """expect appears when bootstrap_expect != 0, bootstrap only when it is 1."""
    config = parse_agent_args(["-server", "-bootstrap-expect", str(expect)])
    tags = server_tags(config, node_id="x", build="0.1.0", revision="r")
    assert tags.get("bootstrap") == bootstrap and tags.get("expect") == expect_tag
    assert "mvn" not in tags


@pytest.mark.parametrize("text,value", [("1", True), ("t", True), ("T", True), ("TRUE", True),
                                        ("true", True), ("True", True), ("0", False), ("f", False),
                                        ("F", False), ("FALSE", False), ("false", False),
                                        ("False", False)])
def test_go_bool_set(text: str, value: bool) -> None:
    """Exactly Go's strconv.ParseBool set is accepted."""
    assert parse_go_bool(text) is value


@pytest.mark.parametrize("text", ["yes", "", "tRUE", "2", " true"])
def test_go_bool_rejects_others(text: str) -> None:
    """Anything else is refused with Go's wording."""
    with pytest.raises(ValueError, match="strconv.ParseBool"):
        parse_go_bool(text)


@pytest.mark.parametrize("text,seconds", [("0", 0.0), ("1s", 1.0), ("1.5s", 1.5), ("300ms", 0.3),
                                          ("2h45m", 9900.0), ("-1m", -60.0), ("10us", 1e-5),
                                          ("1h2m3s", 3723.0)])
def test_go_duration(text: str, seconds: float) -> None:
    """Go durations parse to seconds."""
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5x", "s", "1..5s", "-", "1s5"])
def test_go_duration_rejects(text: str) -> None:
    """Malformed durations raise ValueError."""
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_normalise_only_known_long_flags() -> None:
    """Known single-dash long flags become --flag; short flags and values are kept."""
    assert normalise_flags(["-node=a", "-h", "-x", "-join", "-5", "--", "-node"], ["node", "join"]) \
        == ["--node=a", "-h", "-x", "--join", "-5", "--", "-node"]


@pytest.mark.parametrize("value, expected", [("3", 3), ("2", 2)])
def test_raft_protocol_3_by_default_and_2_accepted(value: str, expected: int) -> None:
    """raft_protocol follows Nomad 1.3: 3 by default, 2 still accepted; the tag carries it."""
    assert parse_agent_args(["-server"]).raft_protocol == 3
    config = parse_agent_args(["-server", "-raft-protocol", value])
    assert config.raft_protocol == expected
    tags = server_tags(config, node_id="id", build="0.1.0", revision="r")
    assert tags["raft_vsn"] == str(expected)


@pytest.mark.parametrize("value", ["1", "4", "0", "three", "-3"])
def test_other_raft_protocols_are_refused_at_start(value: str) -> None:
    """Any raft_protocol but 2 or 3 stops the agent with one clear line."""
    with pytest.raises(UsageError, match="raft_protocol must be 2 or 3, got"):
        parse_agent_args(["-server", "-raft-protocol", value])


def test_raft_multiplier_and_fault_injection_flags() -> None:
    """-raft-multiplier takes 1..10; fault injection is off unless asked for."""
    assert parse_agent_args(["-server"]).fault_injection is False
    config = parse_agent_args(["-server", "-raft-multiplier", "5", "-fault-injection"])
    assert (config.raft_multiplier, config.fault_injection) == (5, True)
    for bad in ("0", "11"):
        with pytest.raises(UsageError, match="raft-multiplier"):
            parse_agent_args(["-server", "-raft-multiplier", bad])
