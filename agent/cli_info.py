"""``shoal agent-info [-json] [-address ADDR]``: the agent's stats sections, like ``nomad agent-info``.

GET ``/v1/agent/self`` and print each ``stats`` section name, then one
``  key = value`` line per entry, sections and keys sorted (agent-api.md 7). A
section that is ``null`` (``vault`` on a server without a Vault token) prints its
name alone, as Nomad does. ``-json`` prints the whole ``/v1/agent/self`` answer as
indented JSON with object keys sorted (Go encodes the decoded maps that way).
Errors: ``Error querying agent info: ...`` on stderr and exit status 1.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from .cli import CommandError, _client_parser, _parse, agent_address, http_request, response_error

__all__ = ["agent_info", "format_agent_info"]


def format_agent_info(document: dict[str, Any]) -> str:
    """The text ``nomad agent-info`` prints for a ``/v1/agent/self`` answer."""
    stats = document.get("stats") or {}
    lines: list[str] = []
    for section in sorted(stats):
        lines.append(section)
        entries = stats[section] if isinstance(stats[section], dict) else {}
        for key in sorted(entries):
            lines.append(f"  {key} = {entries[key]}")
    return "\n".join(lines)


def agent_info(argv: Sequence[str]) -> int:
    """Run ``shoal agent-info``; returns the exit status (UsageError/CommandError propagate)."""
    parser = _client_parser("shoal agent-info")
    parser.add_argument("--json", action="store_true", help="print the /v1/agent/self JSON")
    args = _parse(parser, argv)
    status, body = http_request(agent_address(args.address), "GET", "/v1/agent/self")
    if status != 200:
        raise response_error("querying agent info", status, body)
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise CommandError(f"Error querying agent info: bad JSON from the agent: {exc}") from None
    if args.json:
        print(json.dumps(document, indent=4, sort_keys=True, ensure_ascii=False))
    else:
        print(format_agent_info(document))
    return 0
