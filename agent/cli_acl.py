"""`shoal acl ...`: bootstrap, policies and tokens through the HTTP API (docs/acl.md).

Commands (Nomad's ``command/acl_*.go``; the token in ``$SHOAL_TOKEN`` is sent as
``X-Nomad-Token`` by ``agent.cli.http_request``):

- ``shoal acl bootstrap``: the management token, printed as Nomad prints tokens;
- ``shoal acl policy apply [-description D] NAME FILE`` (``-`` reads stdin):
  ``Successfully wrote "NAME" ACL policy!``;
- ``shoal acl token create [-name N] [-type client|management] [-policy P]...
  [-global] [-ttl D]``: the new token;
- ``shoal acl token self``: the caller's token;
- ``shoal acl token list``: ``Name  Type  Global  Accessor ID  Expired``.

Exit status 0 on success, 1 with one line on stderr otherwise. Formatting lives in
pure functions (``format_token``, ``format_token_list``) so tests need no server.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .cli import (CommandError, _client_parser, _parse, agent_address, columnize, http_request,
                  cli_command as _command, response_error as _fail)
from .config import UsageError, parse_go_duration

__all__ = ["run_acl_command", "format_token", "format_token_list", "go_time"]

USAGE = ("usage: shoal acl bootstrap | policy apply [-description D] NAME FILE | "
         "token create [-name N] [-type client|management] [-policy P]... [-global] [-ttl D] | "
         "token self | token list")


def run_acl_command(argv: Sequence[str]) -> int:
    """Dispatch ``shoal acl <verb> ...``; returns the exit status."""
    words = list(argv)
    table: dict[tuple[str, ...], Callable[[Sequence[str]], int]] = {
        ("bootstrap",): acl_bootstrap, ("policy", "apply"): acl_policy_apply,
        ("token", "create"): acl_token_create, ("token", "self"): acl_token_self,
        ("token", "list"): acl_token_list}
    for key, command in table.items():
        if tuple(words[:len(key)]) == key:
            return command(words[len(key):])
    print(USAGE, file=sys.stderr)
    return 1


def _json(what: str, status: int, body: bytes) -> Any:
    if status != 200:
        raise _fail(what, status, body)
    try:
        return json.loads(body)
    except ValueError:
        raise CommandError(f"Error {what}: the agent answered malformed JSON") from None


@_command
def acl_bootstrap(argv: Sequence[str]) -> int:
    """``shoal acl bootstrap``: print the bootstrap management token."""
    args = _parse(_client_parser("shoal acl bootstrap"), argv)
    status, body = http_request(agent_address(args.address), "POST", "/v1/acl/bootstrap")
    print(format_token(_json("bootstrapping", status, body)))
    return 0


@_command
def acl_policy_apply(argv: Sequence[str]) -> int:
    """``shoal acl policy apply [-description D] NAME FILE``."""
    parser = _client_parser("shoal acl policy apply")
    parser.add_argument("--description", default="")
    parser.add_argument("name")
    parser.add_argument("file")
    args = _parse(parser, argv)
    try:
        rules = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    except OSError as exc:
        raise CommandError(f"Error reading policy file {args.file}: {exc.strerror or exc}") from None
    payload = json.dumps({"Name": args.name, "Description": args.description, "Rules": rules})
    status, body = http_request(agent_address(args.address), "PUT", f"/v1/acl/policy/{args.name}",
                                body=payload.encode())
    if status != 200:
        raise _fail("writing ACL policy", status, body)
    print(f'Successfully wrote "{args.name}" ACL policy!')
    return 0


@_command
def acl_token_create(argv: Sequence[str]) -> int:
    """``shoal acl token create [-name N] [-type T] [-policy P]... [-global] [-ttl D]``."""
    parser = _client_parser("shoal acl token create")
    parser.add_argument("--name", default="")
    parser.add_argument("--type", default="client")
    parser.add_argument("--policy", action="append", default=[])
    parser.add_argument("--global", dest="global_", action="store_true")
    parser.add_argument("--ttl", default="")
    args = _parse(parser, argv)
    request: dict[str, Any] = {"Name": args.name, "Type": args.type, "Policies": args.policy,
                               "Global": args.global_}
    if args.ttl:
        try:
            request["ExpirationTTL"] = int(parse_go_duration(args.ttl) * 1_000_000_000)
        except ValueError as exc:
            raise UsageError(f"Error parsing TTL: {exc}") from None
    status, body = http_request(agent_address(args.address), "PUT", "/v1/acl/token",
                                body=json.dumps(request).encode())
    print(format_token(_json("creating token", status, body)))
    return 0


@_command
def acl_token_self(argv: Sequence[str]) -> int:
    """``shoal acl token self``: the token in ``$SHOAL_TOKEN``."""
    args = _parse(_client_parser("shoal acl token self"), argv)
    status, body = http_request(agent_address(args.address), "GET", "/v1/acl/token/self")
    print(format_token(_json("fetching self token", status, body)))
    return 0


@_command
def acl_token_list(argv: Sequence[str]) -> int:
    """``shoal acl token list``: every token (management token needed)."""
    args = _parse(_client_parser("shoal acl token list"), argv)
    status, body = http_request(agent_address(args.address), "GET", "/v1/acl/tokens")
    tokens = _json("fetching tokens", status, body)
    now = datetime.datetime.now(datetime.timezone.utc)
    print(format_token_list(tokens, now))
    return 0


# --- formatting (pure) ---------------------------------------------------------------


def _parse_time(text: str) -> datetime.datetime:
    """An RFC 3339 time with up to 9 fractional digits (Python keeps 6)."""
    base, _, rest = text.rstrip("Z").partition(".")
    moment = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return moment + datetime.timedelta(microseconds=int((rest + "000000")[:6])) if rest else moment


def go_time(text: str) -> str:
    """Go's ``time.Time.String()`` of an RFC 3339 UTC time: ``2024-01-02 03:04:05.5 +0000 UTC``."""
    base, _, fraction = text.rstrip("Z").partition(".")
    date, _, clock = base.partition("T")
    return f"{date} {clock}{'.' + fraction if fraction else ''} +0000 UTC"


def format_token(token: dict[str, Any]) -> str:
    """Nomad's token key/value block (``formatACLToken``)."""
    expiry = go_time(token["ExpirationTime"]) if token.get("ExpirationTime") else "<none>"
    policies = "n/a" if token.get("Type") == "management" else \
        "[" + " ".join(token.get("Policies") or []) + "]"
    rows = [("Accessor ID", token["AccessorID"]), ("Secret ID", token.get("SecretID", "")),
            ("Name", token.get("Name", "")), ("Type", token["Type"]),
            ("Global", "true" if token.get("Global") else "false"),
            ("Create Time", go_time(token["CreateTime"])), ("Expiry Time", expiry),
            ("Create Index", str(token["CreateIndex"])), ("Modify Index", str(token["ModifyIndex"])),
            ("Policies", policies)]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key.ljust(width)} = {value}" for key, value in rows)


def format_token_list(tokens: Sequence[dict[str, Any]], now: datetime.datetime) -> str:
    """Nomad's ``acl token list`` table, or "No tokens found"."""
    if not tokens:
        return "No tokens found"
    rows = [["Name", "Type", "Global", "Accessor ID", "Expired"]]
    for token in tokens:
        expires = token.get("ExpirationTime")
        expired = bool(expires) and _parse_time(expires) <= now
        rows.append([token.get("Name", ""), token["Type"], "true" if token.get("Global") else "false",
                     token["AccessorID"], "true" if expired else "false"])
    return columnize(rows)
