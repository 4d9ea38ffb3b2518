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
from typing import Sequence

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
    parser.add_argument(f"--{name}", nargs="?", const="true", default="false", metavar="BOOL",
                        help=help)


AGENT_FLAGS = ("dev", "server", "client", "node", "region", "dc", "bind", "advertise",
               "http-port", "rpc-port", "serf-port", "bootstrap-expect", "join", "retry-join",
               "retry-interval", "retry-max", "encrypt", "data-dir", "log-level",
               "leave-on-interrupt", "leave-on-terminate", "gossip-profile", "raft-protocol",
               "raft-multiplier", "raft-snapshot-threshold", "raft-trailing-logs", "fault-injection",
               "num-schedulers", "enabled-schedulers", "servers", "node-class", "meta",
               "cpu-total-compute", "memory-total-mb")


def _agent_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="shoal agent", add_help=False,
                     description="Run a shoal agent (a Nomad-style server that gossips with Serf).")
    parser.add_argument("-h", "--help", action="store_true")
    _bool_flag(parser, "dev", "dev mode: server and client, bind 127.0.0.1, bootstrap-expect 1")
    _bool_flag(parser, "server", "run as a server (gossip member)")
    _bool_flag(parser, "client", "run as a client (no gossip)")
    parser.add_argument("--node", help="node name (default: host name)")
    parser.add_argument("--region", default="global")
    parser.add_argument("--dc", default="dc1")
    parser.add_argument("--bind", help="bind address (default 0.0.0.0; 127.0.0.1 in -dev)")
    parser.add_argument("--advertise", default="", help="advertised IP (default: from -bind)")
    parser.add_argument("--http-port", default="4646")
    parser.add_argument("--rpc-port", default="4647")
    parser.add_argument("--serf-port", default="4648")
    parser.add_argument("--bootstrap-expect", default=None)
    parser.add_argument("--join", action="append", default=[])
    parser.add_argument("--retry-join", action="append", default=[])
    parser.add_argument("--retry-interval", default="30s")
    parser.add_argument("--retry-max", default="0")
    parser.add_argument("--encrypt", default=None, help="gossip key, base64 of 16, 24 or 32 bytes")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--log-level", default="INFO")
    _bool_flag(parser, "leave-on-interrupt", "leave gracefully on SIGINT (default false)")
    _bool_flag(parser, "leave-on-terminate", "leave gracefully on SIGTERM (default false)")
    parser.add_argument("--gossip-profile", default="",
                        help="lan, wan or local (default: lan on loopback, else wan)")
    parser.add_argument("--raft-protocol", default="3", help="raft protocol, 3 (default) or 2 (deprecated)")
    parser.add_argument("--raft-multiplier", default="1", help="scale raft timeouts, 1..10")
    parser.add_argument("--raft-snapshot-threshold", default="8192",
                        help="applied entries between raft snapshots (default 8192)")
    parser.add_argument("--raft-trailing-logs", default="10240",
                        help="log entries kept after a snapshot (default 10240)")
    _bool_flag(parser, "fault-injection", "allow /v1/agent/faults (chaos experiments)")
    parser.add_argument("--num-schedulers", default=None, help="scheduler workers (default: CPU count)")
    parser.add_argument("--enabled-schedulers", default="service,batch,system,sysbatch",
                        help="comma list of scheduler types (_core is always added)")
    parser.add_argument("--servers", action="append", default=[],
                        help="client: a server's rpc address ip[:port] (repeatable or comma list)")
    parser.add_argument("--node-class", default="")
    parser.add_argument("--meta", action="append", default=[], help="client: node meta key=value (repeatable)")
    parser.add_argument("--cpu-total-compute", default="0", help="client: CPU MHz (default: detected)")
    parser.add_argument("--memory-total-mb", default="0", help="client: memory MB (default: detected)")
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


def parse_agent_args(argv: Sequence[str]) -> AgentConfig:
    """Parse `shoal agent` flags into an ``AgentConfig`` with defaults resolved.

    Raises:
        UsageError: a bad flag or value (the message is one line).
    """
    args = _agent_parser().parse_args(normalise_flags(argv, AGENT_FLAGS))
    if args.help:
        raise UsageError(agent_usage())
    dev = _bool_value("dev", args.dev)
    server = _bool_value("server", args.server)
    client = _bool_value("client", args.client)
    if not (dev or server or client):
        raise UsageError("Must specify either server, client or dev mode for the agent.")
    level = args.log_level.upper()
    if level not in LOG_LEVELS:
        raise UsageError(f"Invalid log level: {args.log_level}")
    try:
        retry_interval = parse_go_duration(args.retry_interval)
    except ValueError as exc:
        raise UsageError(f"invalid value {args.retry_interval!r} for -retry-interval: {exc}") from None
    if retry_interval <= 0:
        raise UsageError("-retry-interval must be positive")
    bind = _ip_flag("bind", args.bind) if args.bind else ("127.0.0.1" if dev else "0.0.0.0")
    advertise = _ip_flag("advertise", args.advertise) if args.advertise else ""
    expect_text = args.bootstrap_expect if args.bootstrap_expect is not None else ("1" if dev else "0")
    profile = args.gossip_profile.lower()
    if profile not in ("", "lan", "wan", "local"):
        raise UsageError(f"invalid value {args.gossip_profile!r} for -gossip-profile (want lan, wan or local)")
    node = args.node if args.node is not None else socket.gethostname()
    if not node:
        raise UsageError("-node must not be empty")
    config = AgentConfig(
        dev=dev, server=server, client=client, node=node, region=args.region,
        datacenter=args.dc, bind=bind, advertise=advertise,
        http_port=_int_flag("http-port", args.http_port),
        rpc_port=_int_flag("rpc-port", args.rpc_port),
        serf_port=_int_flag("serf-port", args.serf_port),
        bootstrap_expect=_int_flag("bootstrap-expect", expect_text, maximum=2**31 - 1),
        join=tuple(args.join), retry_join=tuple(args.retry_join),
        retry_interval=retry_interval,
        retry_max=_int_flag("retry-max", args.retry_max, maximum=2**31 - 1),
        encrypt=decode_encrypt_key(args.encrypt) if args.encrypt is not None else None,
        data_dir=args.data_dir, log_level=level,
        leave_on_interrupt=_bool_value("leave-on-interrupt", args.leave_on_interrupt),
        leave_on_terminate=_bool_value("leave-on-terminate", args.leave_on_terminate),
        gossip_profile=profile,
        raft_protocol=parse_raft_protocol(args.raft_protocol),
        raft_multiplier=_int_flag("raft-multiplier", args.raft_multiplier, minimum=1, maximum=10),
        raft_snapshot_threshold=_int_flag("raft-snapshot-threshold", args.raft_snapshot_threshold,
                                          minimum=1, maximum=2**31 - 1),
        raft_trailing_logs=_int_flag("raft-trailing-logs", args.raft_trailing_logs, maximum=2**31 - 1),
        fault_injection=_bool_value("fault-injection", args.fault_injection),
        num_schedulers=(_int_flag("num-schedulers", args.num_schedulers, maximum=2**31 - 1)
                        if args.num_schedulers is not None else (os.cpu_count() or 1)),
        enabled_schedulers=parse_enabled_schedulers(args.enabled_schedulers),
        servers=tuple(a.strip() for item in args.servers for a in item.split(",") if a.strip()),
        node_class=args.node_class,
        meta=parse_meta(args.meta),
        cpu_total_compute=_int_flag("cpu-total-compute", args.cpu_total_compute, maximum=2**31 - 1),
        memory_total_mb=_int_flag("memory-total-mb", args.memory_total_mb, maximum=2**31 - 1),
    )
    return resolve_defaults(config)


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
