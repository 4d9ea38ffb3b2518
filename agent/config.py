"""`shoal agent` settings: flag parsing, defaults, validation, and the serf tags.

Flags are spelt as Nomad spells them, with one dash (``-http-port``); ``--flag``
works too, and a value may follow as ``-flag=value`` or ``-flag value``. Boolean
flags take an optional ``=value`` in Go's boolean set (``-leave-on-terminate=false``).

Choices that differ from Nomad, made for local clusters:

* ``-bind`` on a loopback address is accepted outside ``-dev`` (Nomad refuses to
  advertise loopback); the advertise address defaults to the bind address, or, for a
  wildcard bind, to the address the host would route from (else 127.0.0.1).
* ``-http-port``, ``-rpc-port`` and ``-serf-port`` set the ports (Nomad has them only in
  the config file), so many agents fit on one host.
* ``-gossip-profile`` defaults to ``lan`` when the gossip advertise address is a
  loopback address (a cluster on one machine, compared like for like with real Serf
  agents, which use lan), else ``wan``, the profile Nomad servers use.
* ``-data-dir`` is optional; without it (and in ``-dev``) the node id is random.

``-config PATH`` (repeatable) loads HCL or JSON files and folders (``agent/config_file.py``,
``docs/config.md``); flags given on the command line override what the files set.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import ipaddress
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["AgentConfig", "UsageError", "parse_agent_args", "parse_go_bool", "server_tags",
           "parse_go_duration", "normalise_flags", "LOG_LEVELS", "member_name"]

TRACE = 5
LOG_LEVELS = {"TRACE": TRACE, "DEBUG": logging.DEBUG, "INFO": logging.INFO,
              "WARN": logging.WARNING, "WARNING": logging.WARNING, "ERR": logging.ERROR,
              "ERROR": logging.ERROR}

_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


class UsageError(Exception):
    """A bad flag or setting: the agent prints it on one line and exits 1."""


def parse_go_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``: exactly ``1 t T TRUE true True`` and their false twins.

    Raises:
        ValueError: with Go's wording, ``strconv.ParseBool: parsing "x": invalid syntax``.
    """
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                   "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` in seconds (``"1h2m3.5s"``, ``"-300ms"``, ``"0"``).

    Raises:
        ValueError: not a Go duration.
    """
    rest = text
    sign = 1.0
    if rest[:1] in ("+", "-"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    while rest:
        number_end = 0
        while number_end < len(rest) and (rest[number_end].isdigit() or rest[number_end] == "."):
            number_end += 1
        number = rest[:number_end]
        if not number or number == "." or number.count(".") > 1:
            raise ValueError(f'time: invalid duration "{text}"')
        rest = rest[number_end:]
        unit_end = 0
        while unit_end < len(rest) and not (rest[unit_end].isdigit() or rest[unit_end] == "."):
            unit_end += 1
        unit = rest[:unit_end]
        if unit not in _DURATION_UNITS:
            raise ValueError(f'time: {"missing" if not unit else "unknown"} unit in duration "{text}"')
        total += float(number) * _DURATION_UNITS[unit]
        rest = rest[unit_end:]
    return sign * total


@dataclass(frozen=True)
class AgentConfig:
    """Everything `shoal agent` was told, with defaults applied."""

    dev: bool = False
    server: bool = False
    client: bool = False
    node: str = field(default_factory=socket.gethostname)
    region: str = "global"
    datacenter: str = "dc1"
    bind: str = "0.0.0.0"
    advertise: str = ""
    """Gossip and RPC advertise IP; derived from ``bind`` when empty."""
    http_port: int = 4646
    rpc_port: int = 4647
    serf_port: int = 4648
    bootstrap_expect: int = 0
    join: tuple[str, ...] = ()
    retry_join: tuple[str, ...] = ()
    retry_interval: float = 30.0
    retry_max: int = 0
    """0 = retry forever."""
    encrypt: bytes | None = None
    """The raw gossip key (decoded from the -encrypt base64)."""
    data_dir: str = ""
    log_level: str = "INFO"
    leave_on_interrupt: bool = False
    leave_on_terminate: bool = False
    gossip_profile: str = ""
    """lan, wan or local; empty until ``resolved()`` picks the default."""
    raft_protocol: int = 3
    """2 (deprecated: servers identified by address) or 3 (by node id), as Nomad 1.3."""
    raft_multiplier: int = 1
    """Scales raft's heartbeat, election and lease timeouts (1..10)."""
    raft_snapshot_threshold: int = 8192
    """Applied entries since the last snapshot before the next one (Nomad's raft_snapshot_threshold)."""
    raft_trailing_logs: int = 10240
    """Entries kept in the log after a snapshot (Nomad's raft_trailing_logs)."""
    num_schedulers: int = -1
    """Scheduler workers per server; -1 until resolved to the CPU count (Nomad's default)."""
    enabled_schedulers: tuple[str, ...] = ("service", "batch", "system", "sysbatch", "_core")
    servers: tuple[str, ...] = ()
    """A client's servers (``ip[:port]``, rpc port 4647 by default)."""
    node_class: str = ""
    meta: tuple[tuple[str, str], ...] = ()
    cpu_total_compute: int = 0
    """A client's CPU in MHz; 0 = from the machine (psutil)."""
    memory_total_mb: int = 0
    """A client's memory in MB; 0 = from the machine (psutil)."""
    fault_injection: bool = False
    """Allow ``/v1/agent/faults`` to install drop/loss/delay/partition rules."""
    # ---- issue 5: settings mostly reached through config files (-config) ----
    enable_debug: bool = False
    """Allow /v1/agent/host and /v1/agent/pprof with ACLs off (true in -dev)."""
    acl_enabled: bool = False
    """``acl { enabled = true }``: every endpoint checks the caller's token."""
    acl_token_ttl: float = 30.0
    acl_policy_ttl: float = 30.0
    acl_role_ttl: float = 30.0
    acl_replication_token: str = ""
    """Accepted as Nomad does; shoal has no federated regions, so it is only shown, redacted."""
    log_json: bool = False
    """The agent's own log lines as JSON objects (Nomad's ``log_json``)."""
    http_api_response_headers: tuple[tuple[str, str], ...] = ()
    """Extra headers on every API response (errors included, not the catch-all 404)."""
    http_bind: str = ""
    """``addresses.http``: the HTTP bind IP(s), space separated; empty = ``bind``."""
    rpc_bind: str = ""
    """``addresses.rpc``: the rpc bind IP; empty = ``bind``."""
    serf_bind: str = ""
    """``addresses.serf``: the gossip bind IP; empty = ``bind``."""
    advertise_http: str = ""
    """``advertise.http`` as ``ip:port``; empty = advertise IP + http_port."""
    tls_http: bool = False
    tls_rpc: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_verify_server_hostname: bool = False
    tls_verify_https_client: bool = False
    config_files: tuple[str, ...] = ()
    """Config files loaded by -config, in load order (``Files`` in /v1/agent/self)."""

    @property
    def member_name(self) -> str:
        return member_name(self.node, self.region)

    @property
    def is_server(self) -> bool:
        return self.server or self.dev

    @property
    def is_client(self) -> bool:
        return self.client or self.dev


def member_name(node: str, region: str) -> str:
    """The serf member name of a Nomad server: ``<node>.<region>``."""
    return f"{node}.{region}"


class _Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` instead of printing and exiting 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def normalise_flags(argv: Sequence[str], long_flags: Sequence[str]) -> list[str]:
    """Rewrite Nomad's ``-flag`` and ``-flag=value`` to ``--flag`` for argparse.

    Only names in ``long_flags`` are rewritten; everything after ``--`` is kept.
    """
    known = set(long_flags)
    out: list[str] = []
    for index, arg in enumerate(argv):
        if arg == "--":
            out.extend(argv[index:])
            break
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 1:
            name = arg[1:].split("=", 1)[0]
            if name in known:
                arg = "-" + arg
        out.append(arg)
    return out


def _bool_flag(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    parser.add_argument(f"--{name}", nargs="?", const="true", default=None, metavar="BOOL",
                        help=help)


AGENT_FLAGS = ("dev", "server", "client", "node", "region", "dc", "bind", "advertise",
               "http-port", "rpc-port", "serf-port", "bootstrap-expect", "join", "retry-join",
               "retry-interval", "retry-max", "encrypt", "data-dir", "log-level",
               "leave-on-interrupt", "leave-on-terminate", "gossip-profile", "raft-protocol",
               "raft-multiplier", "raft-snapshot-threshold", "raft-trailing-logs", "fault-injection",
               "num-schedulers", "enabled-schedulers", "servers", "node-class", "meta",
               "cpu-total-compute", "memory-total-mb", "config")


def _agent_parser() -> argparse.ArgumentParser:
    """The `shoal agent` flags. Every default is None (or no list): a flag left out must
    not override what a -config file set, so defaults live in ``AgentConfig``."""
    parser = _Parser(prog="shoal agent", add_help=False,
                     description="Run a shoal agent (a Nomad-style server that gossips with Serf).")
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("--config", action="append", metavar="PATH",
                        help="HCL or JSON config file or folder (repeatable; later ones win, "
                             "flags win over files; see docs/config.md)")
    _bool_flag(parser, "dev", "dev mode: server and client, bind 127.0.0.1, bootstrap-expect 1")
    _bool_flag(parser, "server", "run as a server (gossip member)")
    _bool_flag(parser, "client", "run as a client (no gossip)")
    parser.add_argument("--node", help="node name (default: host name)")
    parser.add_argument("--region", help="region (default global)")
    parser.add_argument("--dc", help="datacenter (default dc1)")
    parser.add_argument("--bind", help="bind address (default 0.0.0.0; 127.0.0.1 in -dev)")
    parser.add_argument("--advertise", help="advertised IP (default: from -bind)")
    parser.add_argument("--http-port", help="HTTP port (default 4646)")
    parser.add_argument("--rpc-port", help="RPC port (default 4647)")
    parser.add_argument("--serf-port", help="gossip port (default 4648)")
    parser.add_argument("--bootstrap-expect", help="servers to wait for (default 0; 1 in -dev)")
    parser.add_argument("--join", action="append", help="address to join at start (repeatable)")
    parser.add_argument("--retry-join", action="append", help="address to join, retried (repeatable)")
    parser.add_argument("--retry-interval", help="wait between join attempts (default 30s)")
    parser.add_argument("--retry-max", help="join attempts, 0 = forever (default 0)")
    parser.add_argument("--encrypt", help="gossip key, base64 of 16, 24 or 32 bytes")
    parser.add_argument("--data-dir", help="state directory (default: none, in memory)")
    parser.add_argument("--log-level", help="TRACE, DEBUG, INFO, WARN or ERROR (default INFO)")
    _bool_flag(parser, "leave-on-interrupt", "leave gracefully on SIGINT (default false)")
    _bool_flag(parser, "leave-on-terminate", "leave gracefully on SIGTERM (default false)")
    parser.add_argument("--gossip-profile",
                        help="lan, wan or local (default: lan on loopback, else wan)")
    parser.add_argument("--raft-protocol", help="raft protocol, 3 (default) or 2 (deprecated)")
    parser.add_argument("--raft-multiplier", help="scale raft timeouts, 1..10 (default 1)")
    parser.add_argument("--raft-snapshot-threshold",
                        help="applied entries between raft snapshots (default 8192)")
    parser.add_argument("--raft-trailing-logs",
                        help="log entries kept after a snapshot (default 10240)")
    _bool_flag(parser, "fault-injection", "allow /v1/agent/faults (chaos experiments)")
    parser.add_argument("--num-schedulers", help="scheduler workers (default: CPU count)")
    parser.add_argument("--enabled-schedulers",
                        help="comma list of scheduler types (default service,batch,system,"
                             "sysbatch; _core is always added)")
    parser.add_argument("--servers", action="append",
                        help="client: a server's rpc address ip[:port] (repeatable or comma list)")
    parser.add_argument("--node-class", help="client: node class")
    parser.add_argument("--meta", action="append", help="client: node meta key=value (repeatable)")
    parser.add_argument("--cpu-total-compute", help="client: CPU MHz (default: detected)")
    parser.add_argument("--memory-total-mb", help="client: memory MB (default: detected)")
    return parser


def agent_usage() -> str:
    return _agent_parser().format_help().replace("--", "-")


def _int_flag(name: str, text: str, *, minimum: int = 0, maximum: int = 65535) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise UsageError(f"invalid value {text!r} for -{name}: not an integer") from None
    if not minimum <= value <= maximum:
        raise UsageError(f"invalid value {text!r} for -{name}: out of range {minimum}..{maximum}")
    return value


def _bool_value(name: str, text: str) -> bool:
    try:
        return parse_go_bool(text)
    except ValueError:
        raise UsageError(f"invalid boolean value {text!r} for -{name}") from None


def _ip_flag(name: str, text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise UsageError(f"invalid value {text!r} for -{name}: not an IP address") from None


def decode_encrypt_key(text: str) -> bytes:
    """The raw key of ``-encrypt``; UsageError unless base64 of 16, 24 or 32 bytes."""
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("Invalid encryption key: not valid base64") from None
    if len(key) not in (16, 24, 32):
        raise UsageError(f"Invalid encryption key: key must be 16, 24 or 32 bytes, not {len(key)}")
    return key


_INT32 = 2**31 - 1


def _node_value(name: str, text: str) -> str:
    if not text:
        raise UsageError(f"-{name} must not be empty")
    return text


def _log_level_value(name: str, text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise UsageError(f"Invalid log level: {text}")
    return text.upper()


def _interval_value(name: str, text: str) -> float:
    try:
        seconds = parse_go_duration(text)
    except ValueError as exc:
        raise UsageError(f"invalid value {text!r} for -{name}: {exc}") from None
    if seconds <= 0:
        raise UsageError(f"-{name} must be positive")
    return seconds


def _profile_value(name: str, text: str) -> str:
    if text.lower() not in ("lan", "wan", "local"):
        raise UsageError(f"invalid value {text!r} for -{name} (want lan, wan or local)")
    return text.lower()


def _servers_value(name: str, items: Sequence[str]) -> tuple[str, ...]:
    return tuple(a.strip() for item in items for a in item.split(",") if a.strip())


# (argparse dest, flag name, AgentConfig field, converter(flag name, raw) -> value)
_FLAG_FIELDS: tuple[tuple[str, str, str, Any], ...] = (
    ("dev", "dev", "dev", _bool_value),
    ("server", "server", "server", _bool_value),
    ("client", "client", "client", _bool_value),
    ("node", "node", "node", _node_value),
    ("region", "region", "region", lambda n, t: t),
    ("dc", "dc", "datacenter", lambda n, t: t),
    ("bind", "bind", "bind", _ip_flag),
    ("advertise", "advertise", "advertise", _ip_flag),
    ("http_port", "http-port", "http_port", _int_flag),
    ("rpc_port", "rpc-port", "rpc_port", _int_flag),
    ("serf_port", "serf-port", "serf_port", _int_flag),
    ("bootstrap_expect", "bootstrap-expect", "bootstrap_expect",
     lambda n, t: _int_flag(n, t, maximum=_INT32)),
    ("join", "join", "join", lambda n, items: tuple(items)),
    ("retry_join", "retry-join", "retry_join", lambda n, items: tuple(items)),
    ("retry_interval", "retry-interval", "retry_interval", _interval_value),
    ("retry_max", "retry-max", "retry_max", lambda n, t: _int_flag(n, t, maximum=_INT32)),
    ("encrypt", "encrypt", "encrypt", lambda n, t: decode_encrypt_key(t)),
    ("data_dir", "data-dir", "data_dir", lambda n, t: t),
    ("log_level", "log-level", "log_level", _log_level_value),
    ("leave_on_interrupt", "leave-on-interrupt", "leave_on_interrupt", _bool_value),
    ("leave_on_terminate", "leave-on-terminate", "leave_on_terminate", _bool_value),
    ("gossip_profile", "gossip-profile", "gossip_profile", _profile_value),
    ("raft_protocol", "raft-protocol", "raft_protocol", lambda n, t: parse_raft_protocol(t)),
    ("raft_multiplier", "raft-multiplier", "raft_multiplier",
     lambda n, t: _int_flag(n, t, minimum=1, maximum=10)),
    ("raft_snapshot_threshold", "raft-snapshot-threshold", "raft_snapshot_threshold",
     lambda n, t: _int_flag(n, t, minimum=1, maximum=_INT32)),
    ("raft_trailing_logs", "raft-trailing-logs", "raft_trailing_logs",
     lambda n, t: _int_flag(n, t, maximum=_INT32)),
    ("fault_injection", "fault-injection", "fault_injection", _bool_value),
    ("num_schedulers", "num-schedulers", "num_schedulers",
     lambda n, t: _int_flag(n, t, maximum=_INT32)),
    ("enabled_schedulers", "enabled-schedulers", "enabled_schedulers",
     lambda n, t: parse_enabled_schedulers(t)),
    ("servers", "servers", "servers", _servers_value),
    ("node_class", "node-class", "node_class", lambda n, t: t),
    ("meta", "meta", "meta", lambda n, items: parse_meta(items)),
    ("cpu_total_compute", "cpu-total-compute", "cpu_total_compute",
     lambda n, t: _int_flag(n, t, maximum=_INT32)),
    ("memory_total_mb", "memory-total-mb", "memory_total_mb",
     lambda n, t: _int_flag(n, t, maximum=_INT32)),
)

_DEV_DEFAULTS = {"bind": "127.0.0.1", "bootstrap_expect": 1, "enable_debug": True}
"""What -dev changes from the defaults; config files and flags still override it."""


def flag_settings(args: argparse.Namespace) -> dict[str, Any]:
    """AgentConfig values of the flags given on the command line, checked.

    A flag left out gives nothing here, so it cannot override a config file.
    """
    values: dict[str, Any] = {}
    for dest, name, target, convert in _FLAG_FIELDS:
        raw = getattr(args, dest)
        if raw is not None:
            values[target] = convert(name, raw)
    return values


def parse_agent_args(argv: Sequence[str]) -> AgentConfig:
    """Parse `shoal agent` flags and -config files into an ``AgentConfig``.

    Layers, each overriding the one before (Nomad's order): the defaults, -dev's
    defaults, the config files in the order given, then the flags given explicitly.
    Lists append and maps merge across layers (``config_file.merge_settings``).

    Raises:
        UsageError: a bad flag, file or value (the message is one line).
    """
    from .config_file import FileSettings, load_config_paths, merge_settings

    args = _agent_parser().parse_args(normalise_flags(argv, AGENT_FLAGS))
    if args.help:
        raise UsageError(agent_usage())
    flags = flag_settings(args)
    dev = bool(flags.pop("dev", False))
    files = load_config_paths(args.config) if args.config else FileSettings()
    values = merge_settings(dict(_DEV_DEFAULTS) if dev else {}, files.values)
    values = merge_settings(values, flags)
    if not (dev or values.get("server") or values.get("client")):
        raise UsageError("Must specify either server, client or dev mode for the agent.")
    if "num_schedulers" not in values:
        values["num_schedulers"] = os.cpu_count() or 1
    config = AgentConfig(dev=dev, config_files=files.files, **values)
    if "advertise" not in flags:
        _check_advertise_ports(config, files.advertise_ports)
    return resolve_defaults(_fill_advertise_http(config))


def _check_advertise_ports(config: AgentConfig, ports: dict[str, int]) -> None:
    """A port in ``advertise.rpc``/``advertise.serf`` must be the port shoal binds."""
    for service, port in sorted(ports.items()):
        bound = config.rpc_port if service == "rpc" else config.serf_port
        if port != bound:
            raise UsageError(f"advertise.{service} port {port} differs from the {service} port "
                             f"{bound}: shoal advertises the port it listens on; drop the port "
                             f"from advertise.{service} or make them equal")


def _fill_advertise_http(config: AgentConfig) -> AgentConfig:
    """``advertise.http`` given as a bare IP gets the HTTP port (after flags)."""
    from dataclasses import replace

    from .config_file import split_host_port

    if not config.advertise_http:
        return config
    host, port = split_host_port(config.advertise_http)
    if port is not None:
        return config
    shown = f"[{host}]" if ":" in host else host
    return replace(config, advertise_http=f"{shown}:{config.http_port}")


SCHEDULER_TYPES = ("service", "batch", "system", "sysbatch", "_core")


def parse_enabled_schedulers(text: str) -> tuple[str, ...]:
    """``service,batch`` -> the list with ``_core`` added, as Nomad's config file does."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in SCHEDULER_TYPES]
    if bad:
        raise UsageError(f"invalid scheduler {bad[0]!r} in -enabled-schedulers "
                         f"(want {', '.join(SCHEDULER_TYPES[:4])})")
    if "_core" not in names:
        names.append("_core")
    return tuple(names)


def parse_meta(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid -meta {item!r}: want key=value")
        out.append((key, value))
    return tuple(out)


def parse_raft_protocol(text: str) -> int:
    """Nomad 1.3's rule: 3 by default, 2 accepted (deprecated), anything else refused."""
    try:
        value = int(text, 10)
    except ValueError:
        raise UsageError(f"raft_protocol must be 2 or 3, got {text!r}") from None
    if value not in (2, 3):
        raise UsageError(f"raft_protocol must be 2 or 3, got {value}")
    return value


def resolve_defaults(config: AgentConfig) -> AgentConfig:
    """Fill in the advertise address and the gossip profile (see the module docstring)."""
    from dataclasses import replace

    advertise = config.advertise or default_advertise(config.bind)
    profile = config.gossip_profile
    if not profile:
        profile = "lan" if ipaddress.ip_address(advertise).is_loopback else "wan"
    return replace(config, advertise=advertise, gossip_profile=profile)


def default_advertise(bind: str) -> str:
    """The bind IP, or for a wildcard bind the IP the host routes from (else loopback)."""
    address = ipaddress.ip_address(bind)
    if not address.is_unspecified:
        return bind
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # no packet is sent: this only picks a route
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def server_tags(config: AgentConfig, *, node_id: str, build: str, revision: str) -> dict[str, str]:
    """The serf tags a Nomad server advertises (agent-api.md section 2.2), in Nomad's order.

    ``port`` is the RPC port (what raft dials at the gossip IP); ``rpc_addr`` the RPC
    advertise IP. ``mvn`` is never sent; ``vsn`` is the constant "1".
    """
    tags = {
        "role": "nomad",
        "region": config.region,
        "dc": config.datacenter,
        "build": build,
        "revision": revision,
        "vsn": "1",
        "raft_vsn": str(config.raft_protocol),
        "id": node_id,
        "rpc_addr": config.advertise,
        "port": str(config.rpc_port),
    }
    if config.bootstrap_expect == 1:
        tags["bootstrap"] = "1"
    if config.bootstrap_expect != 0:
        tags["expect"] = str(config.bootstrap_expect)
    return tags
