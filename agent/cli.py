"""`shoal`: the command line. `shoal agent` runs an agent; `shoal server ...` talks to one.

Exit codes as Nomad's: 0 success, 1 any error (bad flag, usage, connection, API
error). Errors go to stderr on one line. This module is the only one that
configures logging handlers (stderr, hclog lines: ``agent/logfmt.py``).

Client commands reach the agent at ``-address`` or ``$SHOAL_ADDR``
(default ``http://127.0.0.1:4646``) with the standard library's HTTP client. The
ACL token comes from ``$SHOAL_TOKEN`` (sent as ``X-Nomad-Token``); for an
``https://`` address the CA comes from ``$SHOAL_CACERT`` and an optional client
certificate from ``$SHOAL_CLIENT_CERT`` / ``$SHOAL_CLIENT_KEY``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Sequence

from . import __version__
from .config import (LOG_LEVELS, AgentConfig, UsageError, _Parser, normalise_flags,
                     parse_agent_args)

__all__ = ["main", "configure_logging"]

DEFAULT_ADDRESS = "http://127.0.0.1:4646"

USAGE = """Usage: shoal <command> [args]

Commands:
    agent                  Run a shoal agent
    server members         List the gossip members the agent knows
    server join ADDR...    Join the agent to other servers
    server force-leave     Force a member into the left state
    operator raft list-peers           Show the raft configuration
    operator raft remove-peer          Remove a server from the raft configuration
    operator raft transfer-leadership  Hand leadership to another server
    var put|get|list|purge Write and read Nomad Variables (replicated through raft)
    job run FILE.json      Register a (simulated) job; job status [ID]; job stop ID
    node status [ID]       List client nodes, or show one
    agent-info             Show the agent's stats sections (/v1/agent/self)
    monitor                Stream the agent's logs (-log-level, -server-id, -node-id, -json)
    acl bootstrap|policy apply|token create|token self|token list   ACL tokens and policies
    tls ca create | tls cert create -server|-client|-cli           Write a CA and certificates
    cluster up|status|down|logs|exec|kill|stop|cont|restart|partition|heal|loss|delay
                           A local cluster of real agents, and chaos (docs/cluster.md)
    chaos run PLAN.json -seed S | chaos check PLAN.json
                           Seeded fault plans on that cluster, judged by invariants (docs/chaos.md)
    sim --nodes N --seed S Simulate N gossip (and --servers M Raft) cores; print timelines
    version                Print the version
"""


class CommandError(Exception):
    """A client command failed: print the message on stderr, exit 1."""


def configure_logging(level: str, json: bool = False) -> None:
    """Send every log record at ``level`` or above to stderr as hclog lines.

    Text lines, or JSON objects with ``json`` (``log_json``), as ``agent/logfmt.py``
    writes them. The monitor's broadcaster (``agent/monitor.py``) goes on the root
    logger too; it lowers the root level while a ``/v1/agent/monitor`` stream asks for
    more detail, which is why the stderr handler carries ``level`` itself.
    """
    from .logfmt import HclogFormatter
    from .monitor import install_broadcaster

    logging.addLevelName(LOG_LEVELS["TRACE"], "TRACE")
    logging.addLevelName(logging.WARNING, "WARN")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(HclogFormatter(json=json))
    handler.setLevel(LOG_LEVELS[level])
    root = logging.getLogger()
    root.handlers[:] = [handler]
    install_broadcaster(root, LOG_LEVELS[level])   # sets the root level
    # hypercorn's per-request chatter only at DEBUG
    logging.getLogger("hypercorn").setLevel(max(LOG_LEVELS[level], logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``shoal`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "-help", "--help", "help"):
        print(USAGE, end="", file=sys.stderr if not args else sys.stdout)
        return 1 if not args else 0
    command, rest = args[0], args[1:]
    try:
        if command == "agent":
            return run_agent_command(rest)
        if command == "server":
            return run_server_command(rest)
        if command == "operator":
            return run_operator_command(rest)
        if command == "var":
            return run_var_command(rest)
        if command in ("job", "node"):
            return run_job_command(command, rest)
        if command == "acl":
            from .cli_acl import run_acl_command
            return run_acl_command(rest)
        if command == "tls":
            from .cli_tls import run_tls_command
            return run_tls_command(rest)
        if command == "agent-info":
            from .cli_info import agent_info
            return agent_info(rest)
        if command == "monitor":
            from .cli_monitor import monitor
            return monitor(rest)
        if command == "sim":
            from .sim.cli import run_sim_command
            return run_sim_command(rest)
        if command == "cluster":
            from .cluster.cli import run_cluster_command
            return run_cluster_command(rest)
        if command == "chaos":
            from .chaos.cli import run_chaos_command
            return run_chaos_command(rest)
        if command in ("version", "-version", "--version"):
            print(f"shoal v{__version__}")
            return 0
        raise UsageError(f"unknown command {command!r}")
    except (UsageError, CommandError) as exc:
        print(str(exc).rstrip("\n"), file=sys.stderr)
        return 1


# --- shoal agent -----------------------------------------------------------------


def run_agent_command(argv: Sequence[str]) -> int:
    config = parse_agent_args(argv)
    configure_logging(config.log_level, json=config.log_json)
    import trio

    from .runtime import AgentRuntime, StartupError

    async def _run() -> int:
        runtime = AgentRuntime(config, handle_signals=True)
        async with trio.open_nursery() as nursery:
            running = await nursery.start(_run_and_report, runtime)
            print_banner(config, running)
        return runtime_result[0]

    runtime_result: list[int] = []

    async def _run_and_report(runtime: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        runtime_result.append(await runtime.run(task_status=task_status))

    try:
        return trio.run(_run)
    except KeyboardInterrupt:
        return 1
    except BaseException as exc:  # noqa: BLE001 - unwrap startup errors from nurseries
        startup = _find(exc, (StartupError, UsageError))
        if startup is None:
            raise
        print(f"==> {startup}", file=sys.stderr)
        return 1


def _find(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    if isinstance(exc, kinds):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kinds)
            if found is not None:
                return found
    return None


def print_banner(config: AgentConfig, running: Any) -> None:
    http_host, http_port = running.http_address
    serf = running.serf_address
    serf_text = f"{serf[0]}:{serf[1]}" if serf else "(none: client only)"
    lines = [
        "==> shoal agent configuration:",
        "",
        f"       Advertise Addrs: HTTP: {config.advertise}:{http_port}; "
        f"RPC: {config.advertise}:{config.rpc_port}; Serf: {serf_text}",
        f"            Bind Addrs: HTTP: {http_host}:{http_port}; Serf: "
        f"{config.bind}:{serf[1] if serf else '-'}",
        f"                Client: {str(config.is_client).lower()}",
        f"             Log Level: {config.log_level}",
        f"           Member Name: {running.name}",
        f"               Node Id: {running.node_id}",
        f"                Region: {config.region} (DC: {config.datacenter})",
        f"                Server: {str(config.is_server).lower()}",
        f"        Gossip Profile: {running.gossip_profile}",
        f"            Encryption: {str(config.encrypt is not None).lower()}",
        f"               Version: {__version__}",
        "",
        "==> shoal agent started! Log data will stream in below:",
        "",
    ]
    print("\n".join(lines), flush=True)


# --- shoal server ... -----------------------------------------------------------------


def run_server_command(argv: Sequence[str]) -> int:
    if not argv:
        raise UsageError("usage: shoal server <members|join|force-leave> [options]")
    sub, rest = argv[0], argv[1:]
    if sub == "members":
        return server_members(rest)
    if sub == "join":
        return server_join(rest)
    if sub == "force-leave":
        return server_force_leave(rest)
    raise UsageError(f"unknown command 'server {sub}'")


def run_operator_command(argv: Sequence[str]) -> int:
    from . import cli_cluster

    verbs = {"list-peers": cli_cluster.operator_raft_list_peers,
             "remove-peer": cli_cluster.operator_raft_remove_peer,
             "transfer-leadership": cli_cluster.operator_raft_transfer_leadership}
    if len(argv) < 2 or argv[0] != "raft" or argv[1] not in verbs:
        raise UsageError("usage: shoal operator raft <list-peers|remove-peer|transfer-leadership> [options]")
    return verbs[argv[1]](argv[2:])


def run_var_command(argv: Sequence[str]) -> int:
    from . import cli_cluster

    verbs = {"put": cli_cluster.var_put, "get": cli_cluster.var_get, "list": cli_cluster.var_list,
             "purge": cli_cluster.var_purge}
    if not argv or argv[0] not in verbs:
        raise UsageError("usage: shoal var <put|get|list|purge> [options]")
    return verbs[argv[0]](argv[1:])


def run_job_command(noun: str, argv: Sequence[str]) -> int:
    from . import cli_jobs

    verbs = {("job", "run"): cli_jobs.job_run, ("job", "status"): cli_jobs.job_status,
             ("job", "stop"): cli_jobs.job_stop, ("node", "status"): cli_jobs.node_status}
    if not argv or (noun, argv[0]) not in verbs:
        raise UsageError("usage: shoal job <run|status|stop> ... | shoal node status [ID]")
    return verbs[(noun, argv[0])](argv[1:])


def _client_parser(prog: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, add_help=False)
    parser.add_argument("--help", "-h", action="help", help="show this help and exit")
    parser.add_argument("--address", default=None,
                        help="HTTP address of the agent (default $SHOAL_ADDR or http://127.0.0.1:4646)")
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    longs = [a.option_strings[0][2:] for a in parser._actions if a.option_strings]
    return parser.parse_args(normalise_flags(argv, longs))


def agent_address(flag: str | None) -> str:
    address = flag or os.environ.get("SHOAL_ADDR") or DEFAULT_ADDRESS
    if "://" not in address:
        address = "http://" + address
    return address.rstrip("/")


def http_request(address: str, method: str, path: str,
                 query: Sequence[tuple[str, str]] = (), body: bytes | None = None) -> tuple[int, bytes]:
    """One request to the agent: (status, body). Connection failures raise CommandError.

    ``body``, when given, is sent as JSON; PUT and POST otherwise send an empty body.
    """
    url = address + path + ("?" + urllib.parse.urlencode(list(query)) if query else "")
    data = body if body is not None else (b"" if method in ("PUT", "POST") else None)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    token = os.environ.get("SHOAL_TOKEN", "").strip()
    if token:
        headers["X-Nomad-Token"] = token
    request = urllib.request.Request(url, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60, context=https_context(address)) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"Error querying agent at {address}: {reason}") from None


def https_context(address: str) -> Any:
    """The TLS context for an ``https://`` agent address (None for plain HTTP).

    Verifies against ``$SHOAL_CACERT`` when set (else the system CAs) and presents
    ``$SHOAL_CLIENT_CERT``/``$SHOAL_CLIENT_KEY`` when both are set.
    """
    if not address.startswith("https://"):
        return None
    import ssl

    cafile = os.environ.get("SHOAL_CACERT") or None
    context = ssl.create_default_context(cafile=cafile)
    cert, key = os.environ.get("SHOAL_CLIENT_CERT"), os.environ.get("SHOAL_CLIENT_KEY")
    if cert and key:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise CommandError(f"Error loading client certificate {cert}: {exc}") from None
    return context


def cli_command(function: Callable[[Sequence[str]], int]) -> Callable[[Sequence[str]], int]:
    """Turn UsageError/CommandError into one stderr line and exit status 1.

    ``main`` does the same for every verb; verbs wrapped with this can also be called
    directly (tests, other commands) and still answer with an exit status.
    """
    @functools.wraps(function)
    def wrapper(argv: Sequence[str]) -> int:
        try:
            return function(argv)
        except (UsageError, CommandError) as exc:
            print(str(exc).rstrip("\n").replace("\n", " "), file=sys.stderr)
            return 1
    return wrapper


def response_error(what: str, status: int, body: bytes) -> CommandError:
    """Nomad's CLI wording for a non-200 answer, on one line: ``Error <what>: Unexpected ...``."""
    text = body.decode(errors="replace").strip().replace("\n", " ")
    return CommandError(f"Error {what}: Unexpected response code: {status} ({text})")


def _expect_ok(status: int, body: bytes, what: str) -> None:
    if status != 200:
        raise response_error(what, status, body)


def server_members(argv: Sequence[str]) -> int:
    parser = _client_parser("shoal server members")
    parser.add_argument("--detailed", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = _parse(parser, argv)
    address = agent_address(args.address)
    status, body = http_request(address, "GET", "/v1/agent/members")
    _expect_ok(status, body, "querying servers")
    members = json.loads(body)["Members"] or []
    lookup_error: LeaderLookupError | None = None
    try:
        leaders: dict[str, str] | None = find_leaders(address, members)
    except LeaderLookupError as exc:   # Nomad prints the table, then the warning, and exits 1
        lookup_error, leaders = exc, exc.leaders
    members.sort(key=lambda m: (m["Tags"].get("region", ""), m["Tags"].get("dc", ""), m["Name"]))
    if args.json:   # Nomad ignores a leader-lookup failure here and exits 0
        for member in members:
            member["Tags"]["Leader"] = str(is_leader(member, leaders or {})).lower()
            member["Tags"] = dict(sorted(member["Tags"].items()))   # Go writes map keys sorted
        print(json.dumps(members, indent=4))
        return 0
    print(format_members(members, leaders, detailed=args.detailed or args.verbose))
    if lookup_error is not None:
        print("")
        print(str(lookup_error), file=sys.stderr)
        return 1
    return 0


def find_leaders(address: str, members: list[dict[str, Any]]) -> dict[str, str] | None:
    """Region -> leader "ip:port" from /v1/status/leader, for each region of a non-left member.

    Raises:
        LeaderLookupError: some regions failed (every region is still tried, as Nomad
            does); it carries the leaders found and the errors in multierror layout.
    """
    from .join import multierror

    leaders: dict[str, str] = {}
    errors: list[str] = []
    regions = sorted({m["Tags"].get("region", "") for m in members if m["Status"] != "left"})
    for region in regions:
        status, body = http_request(address, "GET", "/v1/status/leader", [("region", region)])
        if status != 200:
            errors.append(f'Region "{region}": Unexpected response code: {status} '
                          f'({body.decode(errors="replace")})')
            continue
        leaders[region] = json.loads(body)
    if errors:
        raise LeaderLookupError(leaders, f"Error determining leaders: {multierror(errors)}")
    return leaders


class LeaderLookupError(Exception):
    """``/v1/status/leader`` failed for a region; ``leaders`` holds what was found."""

    def __init__(self, leaders: dict[str, str], message: str) -> None:
        super().__init__(message)
        self.leaders = leaders


def is_leader(member: dict[str, Any], leaders: dict[str, str]) -> bool:
    region = member["Tags"].get("region", "")
    host, port = member["Addr"], member["Tags"].get("port", "")
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"   # Go's net.JoinHostPort
    return region in leaders and leaders[region] == address


def format_members(members: list[dict[str, Any]], leaders: dict[str, str] | None, *,
                   detailed: bool) -> str:
    header = ["Name", "Address", "Port", "Status"]
    if leaders is not None:
        header.append("Leader")
    if detailed:
        header.append("Protocol")
    header += ["Raft Version", "Build", "Datacenter", "Region"]
    if detailed:
        header.append("Tags")
    rows = [header]
    for member in members:
        tags = member["Tags"]
        row = [member["Name"], member["Addr"], str(member["Port"]), member["Status"]]
        if leaders is not None:
            row.append(str(is_leader(member, leaders)).lower())
        if detailed:
            row.append(str(member["ProtocolCur"]))
        row += [tags.get("raft_vsn", ""), tags.get("build", ""), tags.get("dc", ""),
                tags.get("region", "")]
        if detailed:
            row.append(",".join(f"{k}={v}" for k, v in sorted(tags.items())))
        rows.append(row)
    return columnize(rows)


def columnize(rows: list[list[str]]) -> str:
    """Left-aligned columns two spaces apart, as Nomad's CLI prints tables."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths)] + [row[-1]]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def server_join(argv: Sequence[str]) -> int:
    parser = _client_parser("shoal server join")
    parser.add_argument("addresses", nargs="*")
    args = _parse(parser, argv)
    if not args.addresses:
        raise UsageError("One or more server addresses must be given (usage: shoal server join ADDR...)")
    address = agent_address(args.address)
    status, body = http_request(address, "PUT", "/v1/agent/join",
                                [("address", a) for a in args.addresses])
    _expect_ok(status, body, "joining")
    result = json.loads(body)
    if result.get("error"):
        raise CommandError(f"Error joining: {result['error']}")
    print(f"Joined {result['num_joined']} servers successfully")
    return 0


def server_force_leave(argv: Sequence[str]) -> int:
    parser = _client_parser("shoal server force-leave")
    parser.add_argument("--prune", action="store_true")
    parser.add_argument("node", nargs="*")
    args = _parse(parser, argv)
    if len(args.node) != 1:
        raise UsageError("This command takes one argument: <node> (usage: shoal server force-leave [-prune] NODE)")
    query = [("node", args.node[0])] + ([("prune", "1")] if args.prune else [])
    status, body = http_request(agent_address(args.address), "PUT", "/v1/agent/force-leave", query)
    _expect_ok(status, body, "force-leaving server")
    return 0
