"""`shoal operator raft ...` and `shoal var ...`: client commands for the cluster state.

Each command takes the arguments after its verb and returns the exit status, as
``agent/cli.py``'s commands do: 0 on success, 1 on a usage, connection or API error
with one line on stderr. Output follows Nomad's ``command/operator_raft_*.go`` and
``command/var_*.go`` where shoal has the same feature: the list-peers columns, the
"Removed peer" lines, the variable list table. Formatting lives in pure functions
(``format_peers``, ``format_variables``, ...) so tests need no server.
"""

from __future__ import annotations

import argparse
import datetime
import json
import urllib.parse
from collections.abc import Sequence
from typing import Any

from .cli import (CommandError, _client_parser, _parse, agent_address, columnize, http_request,
                  cli_command as _command, response_error as _fail)
from .config import UsageError

__all__ = ["operator_raft_list_peers", "operator_raft_remove_peer",
           "operator_raft_transfer_leadership", "var_put", "var_get", "var_list", "var_purge",
           "format_peers", "format_variables", "parse_items", "format_time"]


# --- operator raft --------------------------------------------------------------------


@_command
def operator_raft_list_peers(argv: Sequence[str]) -> int:
    """``shoal operator raft list-peers [-stale]``: the raft configuration as Nomad's table."""
    parser = _client_parser("shoal operator raft list-peers")
    parser.add_argument("--stale", action="store_true")
    args = _parse(parser, argv)
    query = [("stale", "true")] if args.stale else []
    status, body = http_request(agent_address(args.address), "GET",
                                "/v1/operator/raft/configuration", query)
    if status != 200:
        raise _fail("retrieving operator raft configuration", status, body)
    print(format_peers(json.loads(body).get("Servers") or []))
    return 0


def format_peers(servers: Sequence[dict[str, Any]]) -> str:
    """Nomad's columns: ``Node ID Address State Voter RaftProtocol``."""
    rows = [["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]]
    for server in servers:
        rows.append([str(server.get("Node", "")), str(server.get("ID", "")),
                     str(server.get("Address", "")),
                     "leader" if server.get("Leader") else "follower",
                     "true" if server.get("Voter") else "false",
                     str(server.get("RaftProtocol", "unknown"))])
    return columnize(rows)


def _peer_parser(prog: str) -> argparse.ArgumentParser:
    parser = _client_parser(prog)
    parser.add_argument("--peer-address", default="")
    parser.add_argument("--peer-id", default="")
    return parser


@_command
def operator_raft_remove_peer(argv: Sequence[str]) -> int:
    """``shoal operator raft remove-peer -peer-id X | -peer-address ip:port``."""
    args = _parse(_peer_parser("shoal operator raft remove-peer"), argv)
    if not args.peer_address and not args.peer_id:
        raise UsageError("Error removing peer: an address or id is required for the peer to remove")
    if args.peer_address and args.peer_id:
        raise UsageError("Error removing peer: cannot give both an address and id")
    query = [("address", args.peer_address)] if args.peer_address else [("id", args.peer_id)]
    status, body = http_request(agent_address(args.address), "DELETE", "/v1/operator/raft/peer", query)
    if status != 200:
        raise _fail("removing peer", status, body)
    if args.peer_address:
        print(f'Removed peer with address "{args.peer_address}"')
    else:
        print(f'Removed peer with id "{args.peer_id}"')
    return 0


@_command
def operator_raft_transfer_leadership(argv: Sequence[str]) -> int:
    """``shoal operator raft transfer-leadership [-peer-id X | -peer-address ip:port]``."""
    args = _parse(_peer_parser("shoal operator raft transfer-leadership"), argv)
    if args.peer_address and args.peer_id:
        raise UsageError("Error transferring leadership: cannot give both an address and id")
    query: list[tuple[str, str]] = []
    if args.peer_address:
        query = [("address", args.peer_address)]
    elif args.peer_id:
        query = [("id", args.peer_id)]
    status, body = http_request(agent_address(args.address), "PUT",
                                "/v1/operator/raft/transfer-leadership", query)
    if status != 200:
        raise _fail("transferring leadership", status, body)
    if args.peer_address:
        print(f'Transferred leadership to peer with address "{args.peer_address}"')
    elif args.peer_id:
        print(f'Transferred leadership to peer with id "{args.peer_id}"')
    else:
        print("Transferred leadership")
    return 0


# --- var --------------------------------------------------------------------------------


def _var_parser(prog: str, *, check_index: bool = False) -> argparse.ArgumentParser:
    parser = _client_parser(prog)
    parser.add_argument("--namespace", default="")
    if check_index:
        parser.add_argument("--check-index", default=None)
    return parser


def _check_index(text: str | None) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f'Invalid -check-index value "{text}": must be an unsigned integer')
    return int(text)


def _var_url(path: str) -> str:
    return "/v1/var/" + urllib.parse.quote(path, safe="/~")


def _var_query(namespace: str, cas: int | None = None) -> list[tuple[str, str]]:
    query = [("namespace", namespace)] if namespace else []
    if cas is not None:
        query.append(("cas", str(cas)))
    return query


def parse_items(pairs: Sequence[str]) -> dict[str, str]:
    """``k=v`` arguments as a map (the first ``=`` splits; later ones stay in the value)."""
    items: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key == "":
            raise UsageError(f'Error parsing item "{pair}": items must be given as key=value')
        items[key] = value
    return items


@_command
def var_put(argv: Sequence[str]) -> int:
    """``shoal var put [-check-index N] [-namespace NS] path k=v...``."""
    parser = _var_parser("shoal var put", check_index=True)
    parser.add_argument("args", nargs="*")
    args = _parse(parser, argv)
    if len(args.args) < 2:
        raise UsageError("usage: shoal var put [-check-index N] <path> <key>=<value>...")
    path, items = args.args[0], parse_items(args.args[1:])
    cas = _check_index(args.check_index)
    body = json.dumps({"Namespace": args.namespace or "default", "Path": path,
                       "Items": items}).encode()
    status, answer = http_request(agent_address(args.address), "PUT", _var_url(path),
                                  _var_query(args.namespace, cas), body)
    if status == 409:
        raise CommandError(_conflict_message("creating variable", cas, answer))
    if status != 200:
        raise _fail("creating variable", status, answer)
    var = json.loads(answer)
    verb = "Created" if var["CreateIndex"] == var["ModifyIndex"] else "Updated"
    print(f'{verb} variable "{var["Path"]}" with modify index {var["ModifyIndex"]}')
    return 0


@_command
def var_get(argv: Sequence[str]) -> int:
    """``shoal var get [-namespace NS] path``: the variable as indented JSON."""
    parser = _var_parser("shoal var get")
    parser.add_argument("args", nargs="*")
    args = _parse(parser, argv)
    if len(args.args) != 1:
        raise UsageError("This command takes one argument: <path>")
    status, body = http_request(agent_address(args.address), "GET", _var_url(args.args[0]),
                                _var_query(args.namespace))
    if status == 404 and body.strip() == b"variable not found":
        raise CommandError("Error retrieving variable: variable not found")
    if status != 200:
        raise _fail("retrieving variable", status, body)
    print(json.dumps(json.loads(body), indent=2))
    return 0


@_command
def var_list(argv: Sequence[str]) -> int:
    """``shoal var list [-namespace NS] [-json] [prefix]``: Namespace, Path, Last Updated."""
    parser = _var_parser("shoal var list")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("args", nargs="*")
    args = _parse(parser, argv)
    if len(args.args) > 1:
        raise UsageError("This command takes flags and either no arguments or one: <prefix>")
    query = _var_query(args.namespace) + ([("prefix", args.args[0])] if args.args else [])
    status, body = http_request(agent_address(args.address), "GET", "/v1/vars", query)
    if status != 200:
        raise _fail("retrieving vars", status, body)
    variables = json.loads(body) or []
    if args.json:
        print(json.dumps(variables, indent=2))
    else:
        print(format_variables(variables))
    return 0


def format_time(unix_ns: int, tz: datetime.tzinfo | None = None) -> str:
    """Go's ``time.Unix(0, ns).Format(time.RFC3339)`` in ``tz`` (local time by default)."""
    moment = datetime.datetime.fromtimestamp(unix_ns // 10**9, tz=datetime.timezone.utc)
    text = moment.astimezone(tz).isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def format_variables(variables: Sequence[dict[str, Any]],
                     tz: datetime.tzinfo | None = None) -> str:
    """Nomad's ``var list`` table, or "No variables found"."""
    if not variables:
        return "No variables found"
    rows = [["Namespace", "Path", "Last Updated"]]
    rows += [[str(v.get("Namespace", "")), str(v.get("Path", "")),
              format_time(int(v.get("ModifyTime", 0)), tz)] for v in variables]
    return columnize(rows)


@_command
def var_purge(argv: Sequence[str]) -> int:
    """``shoal var purge [-check-index N] [-namespace NS] path``."""
    parser = _var_parser("shoal var purge", check_index=True)
    parser.add_argument("args", nargs="*")
    args = _parse(parser, argv)
    if len(args.args) != 1:
        raise UsageError("This command takes one argument: <path>")
    path = args.args[0]
    cas = _check_index(args.check_index)
    status, body = http_request(agent_address(args.address), "DELETE", _var_url(path),
                                _var_query(args.namespace, cas))
    if status == 409:
        raise CommandError(_conflict_message("purging variable", cas, body))
    if status not in (200, 204):
        raise _fail("purging variable", status, body)
    print(f'Successfully purged variable "{path}"!')
    return 0


def _conflict_message(what: str, cas: int | None, body: bytes) -> str:
    """One line naming the index the user gave and the server's current one."""
    try:
        current = json.loads(body) or {}
        server_index = int(current.get("ModifyIndex", 0))
    except (ValueError, TypeError, AttributeError):
        server_index = 0
    where = ("the variable does not exist" if server_index == 0
             else f"the server-side index is {server_index}")
    return (f"Error {what}: Check-and-Set conflict: check-index {cas} does not match; {where}")
