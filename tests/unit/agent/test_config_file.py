"""Agent config files (-config): HCL and JSON parsing, Nomad's merge order, flag precedence
and the one-line errors that name the key and the file."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from agent.config import UsageError, parse_agent_args
from agent.config_file import SCHEMA, Leaf, merge_settings, split_host_port

REPO = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


FULL_HCL = """
region = "europe"
datacenter = "dc-west"
name = "s1"
data_dir = "/var/lib/shoal"
bind_addr = "10.0.0.5"
log_level = "debug"
log_json = true
enable_debug = true
leave_on_interrupt = true
leave_on_terminate = true
fault_injection = true
gossip_profile = "LOCAL"
ports { http = 5646
        rpc = 5647
        serf = 5648 }
addresses {
  http = "10.0.0.5 127.0.0.1"
  rpc  = "10.0.0.6"
  serf = "10.0.0.7"
}
advertise {
  http = "192.168.1.1:8080"
  rpc  = "192.168.1.2:5647"
  serf = "192.168.1.2"
}
server {
  enabled = true
  bootstrap_expect = 3
  raft_protocol = 2
  raft_multiplier = 4
  num_schedulers = 6
  enabled_schedulers = ["service", "batch"]
  start_join = ["10.0.0.1"]
  retry_join = ["10.0.0.2", "10.0.0.3:4648"]
  retry_interval = "1m30s"
  retry_max = 5
  raft_snapshot_threshold = 100
  raft_trailing_logs = 50
  encrypt = "%s"
}
client {
  enabled = true
  servers = ["10.0.0.1:4647"]
  node_class = "gpu"
  meta {
    rack = "r1"
  }
  cpu_total_compute = 2000
  memory_total_mb = 1024
}
acl {
  enabled = true
  token_ttl = "10s"
  policy_ttl = "1m"
  role_ttl = "500ms"
}
tls {
  http = true
  rpc = true
  ca_file = "ca.pem"
  cert_file = "cert.pem"
  key_file = "key.pem"
  verify_server_hostname = true
  verify_https_client = true
}
http_api_response_headers = { "Access-Control-Allow-Origin" = "*" }
""" % base64.b64encode(bytes(range(16))).decode()


def test_every_supported_key_reaches_its_field(tmp_path: Path) -> None:
    """Each key of the supported set lands on its AgentConfig field with its type."""
    config = parse_agent_args(["-config", write(tmp_path, "full.hcl", FULL_HCL)])
    assert (config.region, config.datacenter, config.node, config.data_dir) == \
        ("europe", "dc-west", "s1", "/var/lib/shoal")
    assert (config.bind, config.log_level, config.log_json, config.enable_debug) == \
        ("10.0.0.5", "DEBUG", True, True)
    assert (config.leave_on_interrupt, config.leave_on_terminate, config.fault_injection) == \
        (True, True, True)
    assert config.gossip_profile == "local"
    assert (config.http_port, config.rpc_port, config.serf_port) == (5646, 5647, 5648)
    assert (config.http_bind, config.rpc_bind, config.serf_bind) == \
        ("10.0.0.5 127.0.0.1", "10.0.0.6", "10.0.0.7")
    assert (config.advertise, config.advertise_http) == ("192.168.1.2", "192.168.1.1:8080")
    assert (config.server, config.bootstrap_expect, config.raft_protocol, config.raft_multiplier) == \
        (True, 3, 2, 4)
    assert config.num_schedulers == 6 and config.enabled_schedulers == ("service", "batch", "_core")
    assert config.join == ("10.0.0.1",) and config.retry_join == ("10.0.0.2", "10.0.0.3:4648")
    assert (config.retry_interval, config.retry_max) == (90.0, 5)
    assert (config.raft_snapshot_threshold, config.raft_trailing_logs) == (100, 50)
    assert config.encrypt == bytes(range(16))
    assert (config.client, config.servers, config.node_class, config.meta) == \
        (True, ("10.0.0.1:4647",), "gpu", (("rack", "r1"),))
    assert (config.cpu_total_compute, config.memory_total_mb) == (2000, 1024)
    assert (config.acl_enabled, config.acl_token_ttl, config.acl_policy_ttl, config.acl_role_ttl) == \
        (True, 10.0, 60.0, 0.5)
    assert (config.tls_http, config.tls_rpc, config.tls_ca_file, config.tls_cert_file,
            config.tls_key_file, config.tls_verify_server_hostname,
            config.tls_verify_https_client) == (True, True, "ca.pem", "cert.pem", "key.pem", True, True)
    assert config.http_api_response_headers == (("Access-Control-Allow-Origin", "*"),)
    assert config.config_files == (str(tmp_path / "full.hcl"),)


@pytest.mark.parametrize("server_block", [{"enabled": True, "bootstrap_expect": 2},
                                          [{"enabled": True, "bootstrap_expect": 2}],
                                          [{"enabled": True}, {"bootstrap_expect": 2}]])
def test_json_blocks_as_objects_or_lists(tmp_path: Path, server_block: Any) -> None:
    """Nomad's JSON form: a block is an object or a list of objects (merged in order)."""
    path = write(tmp_path, "s.json", json.dumps({"region": "r", "server": server_block,
                                                 "client": [{"meta": [{"a": "1"}, {"b": "2"}]}]}))
    config = parse_agent_args(["-config", path])
    assert (config.region, config.server, config.bootstrap_expect) == ("r", True, 2)
    assert config.meta == (("a", "1"), ("b", "2"))


def test_header_map_forms_and_quoted_keys(tmp_path: Path) -> None:
    """Both `headers = {"X" = "y"}` and `headers { X = "y" }` work; quotes on keys are stripped."""
    path = write(tmp_path, "h.hcl", 'http_api_response_headers = { "X-One" = "1", Two = "2" }\n'
                 'client {\n  meta = { "rack.id" = "r9" }\n}\n')
    second = write(tmp_path, "i.hcl", "http_api_response_headers {\n  X-Three = \"3\"\n}\n")
    config = parse_agent_args(["-server", "-config", path, "-config", second])
    assert config.http_api_response_headers == (("X-One", "1"), ("Two", "2"), ("X-Three", "3"))
    assert config.meta == (("rack.id", "r9"),)


def test_folder_loads_hcl_and_json_in_lexical_order(tmp_path: Path) -> None:
    """A folder gives its *.hcl and *.json files sorted; other files, temp files, sub-folders skipped."""
    folder = tmp_path / "conf.d"
    write(folder, "20-b.json", json.dumps({"datacenter": "from-json", "server": {"start_join": ["b"]}}))
    write(folder, "10-a.hcl", 'datacenter = "from-hcl"\nregion = "r1"\nserver {\n  start_join = ["a"]\n}\n')
    write(folder, "30-c.hcl~", "this is not = valid {")
    write(folder, "notes.txt", "ignored")
    write(folder / "sub", "99.hcl", 'region = "nested"\n')
    config = parse_agent_args(["-server", "-config", str(folder)])
    assert (config.datacenter, config.region, config.join) == ("from-json", "r1", ("a", "b"))
    assert config.config_files == (str(folder / "10-a.hcl"), str(folder / "20-b.json"))


def test_later_files_override_scalars_merge_maps_append_lists(tmp_path: Path) -> None:
    """Nomad's Merge: scalars replace, maps merge key by key, join and server lists append."""
    first = write(tmp_path, "a.hcl", 'region = "one"\nlog_level = "WARN"\nserver {\n'
                  '  enabled = true\n  retry_join = ["x"]\n}\nclient {\n  servers = ["s1"]\n'
                  '  meta {\n    a = "1"\n    b = "1"\n  }\n}\n')
    second = write(tmp_path, "b.json", json.dumps({"region": "two", "server": {"retry_join": ["y"]},
                                                   "client": {"servers": ["s2"], "meta": {"b": "2"}}}))
    config = parse_agent_args(["-config", first, "-config", second])
    assert (config.region, config.log_level) == ("two", "WARN")
    assert config.retry_join == ("x", "y") and config.servers == ("s1", "s2")
    assert config.meta == (("a", "1"), ("b", "2"))
    assert config.config_files == (first, second)


def test_flags_given_override_files_and_flags_left_out_do_not(tmp_path: Path) -> None:
    """Only flags on the command line win over a file; their defaults never do."""
    path = write(tmp_path, "a.hcl", 'region = "file"\ndatacenter = "file-dc"\n'
                 'ports {\n  http = 7000\n  rpc = 7001\n}\nserver {\n  enabled = true\n'
                 '  start_join = ["f"]\n}\nlog_level = "ERROR"\n')
    config = parse_agent_args(["-config", path, "-region", "flag", "-rpc-port", "8001", "-join", "g",
                               "-log-level", "debug"])
    assert (config.region, config.datacenter) == ("flag", "file-dc")
    assert (config.http_port, config.rpc_port) == (7000, 8001)
    assert config.join == ("f", "g") and config.log_level == "DEBUG"


def test_mode_may_come_from_the_file(tmp_path: Path) -> None:
    """server.enabled / client.enabled count as the mode; a flag =false still wins."""
    server = write(tmp_path, "s.hcl", "server {\n  enabled = true\n}\n")
    client = write(tmp_path, "c.json", json.dumps({"client": {"enabled": True}}))
    assert parse_agent_args(["-config", server]).is_server
    assert parse_agent_args(["-config", client]).is_client
    empty = write(tmp_path, "e.hcl", 'region = "r"\n')
    with pytest.raises(UsageError, match="Must specify either server, client or dev mode"):
        parse_agent_args(["-config", empty])
    with pytest.raises(UsageError, match="Must specify either server, client or dev mode"):
        parse_agent_args(["-config", server, "-server=false"])


def test_dev_with_files(tmp_path: Path) -> None:
    """-dev's defaults give way to files, and files to flags; without a file -dev is unchanged."""
    dev = parse_agent_args(["-dev"])
    assert (dev.bind, dev.bootstrap_expect, dev.enable_debug, dev.config_files) == \
        ("127.0.0.1", 1, True, ())
    path = write(tmp_path, "d.hcl", 'bind_addr = "127.0.0.9"\nenable_debug = false\n'
                 'acl {\n  enabled = true\n}\n')
    config = parse_agent_args(["-dev", "-config", path, "-bind", "127.0.0.8"])
    assert config.is_server and config.is_client
    assert (config.bind, config.enable_debug, config.acl_enabled, config.bootstrap_expect) == \
        ("127.0.0.8", False, True, 1)


def test_relative_paths_are_recorded_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config_files holds absolute paths (Files in /v1/agent/self)."""
    write(tmp_path, "rel.hcl", "server {\n  enabled = true\n}\n")
    monkeypatch.chdir(tmp_path)
    assert parse_agent_args(["-config", "rel.hcl"]).config_files == (str(tmp_path / "rel.hcl"),)


def test_advertise_http_ip_gets_the_final_http_port(tmp_path: Path) -> None:
    """advertise.http without a port takes the HTTP port after flags."""
    path = write(tmp_path, "a.hcl", 'advertise {\n  http = "10.1.1.1"\n  serf = "10.1.1.2"\n}\n'
                 'server {\n  enabled = true\n}\n')
    config = parse_agent_args(["-config", path, "-http-port", "9000"])
    assert (config.advertise_http, config.advertise) == ("10.1.1.1:9000", "10.1.1.2")


def expect_error(tmp_path: Path, name: str, text: str, message: str, *flags: str) -> str:
    path = write(tmp_path, name, text)
    with pytest.raises(UsageError) as info:
        parse_agent_args(["-server", "-config", path, *flags])
    error = str(info.value)
    assert "\n" not in error
    assert error.startswith(f"Error loading configuration from {path}: ") or path not in message
    assert message in error, error
    return error


@pytest.mark.parametrize("text,keys", [
    ("server {\n  foo = 1\n}\n", "server.foo"),
    ('bogus = "x"\nclient {\n  meta = { a = "b" }\n  colour = "red"\n}\n', "bogus, client.colour"),
    ("ports {\n  grpc = 1\n}\n", "ports.grpc"),
    ('server "named" {\n  enabled = true\n}\n', "server.named"),
    ("telemetry {\n  prometheus_metrics = true\n}\n", "telemetry"),
])
def test_unknown_keys_fail_naming_key_and_file(tmp_path: Path, text: str, keys: str) -> None:
    """Unknown keys, at any depth, fail with one line naming them and the file."""
    expect_error(tmp_path, "u.hcl", text, f"unexpected keys {keys}")


def test_unknown_key_in_json(tmp_path: Path) -> None:
    """JSON files are checked the same way."""
    expect_error(tmp_path, "u.json", json.dumps({"acl": {"enabled": True, "token_max_expiration_ttl": "x"}}),
                 "unexpected keys acl.token_max_expiration_ttl")


def test_protocol_version_is_refused_with_its_own_message(tmp_path: Path) -> None:
    """server.protocol_version: removed, use raft_protocol."""
    error = expect_error(tmp_path, "p.hcl", "server {\n  protocol_version = 3\n}\n",
                         "server.protocol_version was removed")
    assert "server.raft_protocol" in error


@pytest.mark.parametrize("value", ["4", "1", '"three"'])
def test_bad_raft_protocol_uses_the_flag_message(tmp_path: Path, value: str) -> None:
    """A wrong raft_protocol fails as the flag does: raft_protocol must be 2 or 3."""
    expect_error(tmp_path, "r.hcl", f"server {{\n  raft_protocol = {value}\n}}\n",
                 "raft_protocol must be 2 or 3, got")


@pytest.mark.parametrize("text,message", [
    ('ports {\n  http = "4646"\n}\n', "ports.http must be a whole number, got the string '4646'"),
    ('server {\n  bootstrap_expect = "3"\n}\n', "server.bootstrap_expect must be a whole number"),
    ('enable_debug = "yes"\n', "enable_debug must be a boolean"),
    ("region = 5\n", "region must be a string, got the number 5"),
    ('server {\n  start_join = "a"\n}\n', "server.start_join must be a list of strings"),
    ("acl {\n  token_ttl = 10\n}\n", 'acl.token_ttl must be a duration string such as "10s"'),
    ('acl {\n  token_ttl = "10 minutes"\n}\n', "acl.token_ttl: time:"),
    ('server {\n  retry_interval = "0s"\n}\n', "server.retry_interval must be positive"),
    ("ports {\n  serf = 70000\n}\n", "ports.serf must be in 0..65535, got 70000"),
    ("server {\n  raft_multiplier = 11\n}\n", "server.raft_multiplier must be in 1..10"),
    ('bind_addr = "localhost"\n', "bind_addr must be an IP address, got 'localhost'"),
    ('addresses {\n  http = "{{ GetPrivateIP }}"\n}\n', "go-sockaddr templates are not supported"),
    ('log_level = "LOUD"\n', "Invalid log level: LOUD"),
    ('gossip_profile = "moon"\n', "gossip_profile must be lan, wan or local"),
    ('server {\n  encrypt = "!!"\n}\n', "server.encrypt: Invalid encryption key"),
    ('server {\n  enabled_schedulers = ["cron"]\n}\n', "invalid scheduler 'cron'"),
    ('client {\n  meta {\n    rack = 1\n  }\n}\n', "client.meta.rack must be a string"),
    ("server = 1\n", "server must be a block"),
    ('name = ""\n', "name must not be empty"),
    ('advertise {\n  rpc = "10.0.0.1"\n  serf = "10.0.0.2"\n}\n',
     "advertise.rpc (10.0.0.1) and advertise.serf (10.0.0.2) differ"),
    ('advertise {\n  rpc = "10.0.0.1:99999"\n}\n', "advertise.rpc: bad port"),
])
def test_bad_values_name_the_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    """A wrong type or value fails with one line naming the key and the file."""
    expect_error(tmp_path, "v.hcl", text, message)


def test_advertise_port_must_match_the_port_bound(tmp_path: Path) -> None:
    """shoal advertises the port it listens on: a different advertise port is refused."""
    path = write(tmp_path, "a.hcl", 'advertise {\n  rpc = "10.0.0.1:4647"\n}\n')
    assert parse_agent_args(["-server", "-config", path]).advertise == "10.0.0.1"
    with pytest.raises(UsageError, match="advertise.rpc port 4647 differs from the rpc port 5000"):
        parse_agent_args(["-server", "-config", path, "-rpc-port", "5000"])


def test_hcl_syntax_error_has_file_line_and_column(tmp_path: Path) -> None:
    """An HCL syntax error is one line with the file and a position."""
    error = expect_error(tmp_path, "s.hcl", 'region = "a"\nserver {\n  enabled = \n}\n',
                         "HCL syntax error at line ")
    assert "column" in error


def test_hcl1_quoted_block_keys_are_a_syntax_error(tmp_path: Path) -> None:
    """Nomad's HCL1 `headers { "X" = "y" }` is not HCL2; the error points at it (docs say why)."""
    expect_error(tmp_path, "h.hcl", 'http_api_response_headers {\n  "X-A" = "1"\n}\n',
                 "HCL syntax error at line 2, column 3")


def test_json_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    """A JSON syntax error names line and column."""
    expect_error(tmp_path, "s.json", '{\n  "region": "a",\n}\n', "JSON syntax error at line 3, column 1")
    expect_error(tmp_path, "l.json", "[1, 2]", "the top level must be an object")


def test_missing_path(tmp_path: Path) -> None:
    """A path that does not exist fails naming it."""
    with pytest.raises(UsageError, match="no such file or directory"):
        parse_agent_args(["-server", "-config", str(tmp_path / "nope.hcl")])


def test_a_bad_later_file_fails_even_after_good_ones(tmp_path: Path) -> None:
    """Every file is checked; the error names the file at fault, not the first one."""
    good = write(tmp_path, "a.hcl", 'region = "r"\n')
    bad = write(tmp_path, "b.hcl", "nope = 1\n")
    with pytest.raises(UsageError, match=f"from {bad}: unexpected keys nope"):
        parse_agent_args(["-server", "-config", good, "-config", bad])


def test_merge_settings_rules() -> None:
    """The merge helper: scalars replace, pairs merge keeping first position, lists append."""
    merged = merge_settings({"region": "a", "meta": (("x", "1"), ("y", "1")), "join": ("a",),
                             "enabled_schedulers": ("service", "_core")},
                            {"region": "b", "meta": (("x", "2"),), "join": ("b",),
                             "enabled_schedulers": ("batch", "_core")})
    assert merged == {"region": "b", "meta": (("x", "2"), ("y", "1")), "join": ("a", "b"),
                      "enabled_schedulers": ("service", "_core", "batch")}


@pytest.mark.parametrize("text,expected", [("1.2.3.4", ("1.2.3.4", None)), ("1.2.3.4:80", ("1.2.3.4", 80)),
                                           ("[::1]:80", ("::1", 80)), ("::1", ("::1", None)),
                                           ("[::1]", ("::1", None))])
def test_split_host_port(text: str, expected: tuple[str, int | None]) -> None:
    """Advertise values are ip or ip:port, IPv6 in brackets."""
    assert split_host_port(text) == expected


def _dotted_keys(schema: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, spec in schema.items():
        if isinstance(spec, Leaf):
            keys.append(prefix + key)
        else:
            keys.extend(_dotted_keys(spec, f"{prefix}{key}."))
    return keys


def test_every_supported_key_is_documented() -> None:
    """docs/config.md has a table row for every key the schema accepts."""
    text = (REPO / "docs" / "config.md").read_text()
    missing = [key for key in _dotted_keys(SCHEMA) if f"| `{key}` |" not in text]
    assert not missing, f"undocumented keys: {missing}"


@pytest.mark.parametrize("name", ["agent-server.hcl", "agent-client.json", "agent-dev.hcl"])
def test_documented_examples_parse(name: str) -> None:
    """The example files in docs/examples load without error."""
    config = parse_agent_args(["-dev", "-config", str(REPO / "docs" / "examples" / name)])
    assert config.config_files == (str(REPO / "docs" / "examples" / name),)
