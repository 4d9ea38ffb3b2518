"""``GET /v1/agent/monitor``: stream this agent's log, or another agent's (agent-api.md 3.8).

Order of checks (section 3.8): method (shoal accepts GET only and answers anything else
with 405 ``Invalid method``, agent-api.md 11 Q5) -> ``log_level`` -> ``log_json`` ->
``plain`` -> ``log_include_location`` -> ``node_id`` + ``server_id`` conflict -> pick
the first hop (section 4) -> agent:read on it -> resolve the target -> stream.

First hop and ACL text. A server (or a -dev agent) is its own first hop. A client-only
agent answers itself when no target is given or ``node_id`` is its own node; otherwise
its request goes to a server (also for ``server_id``, which Nomad ignores there:
Q6). An unknown token gets 403 ``Permission denied`` when a server is the first hop
(Nomad's 200-and-empty quirk, Q3) and 403 ``ACL token not found`` when a client answers.
The target re-checks with the same token (``agent/monitor_rpc.py``).

Routing and streaming are ``agent.monitor_rpc.open_monitor``. Forwarding errors are
those of ``agent.forward.locate`` (404 ``Unknown node "<id>"`` and ``No path to node``;
500 ``unknown Nomad server <v>``, ``No cluster leader``, ``No path to region``) -- the
mapping ``/host`` uses, which section 4 recommends over Nomad's 400/500-with-``RPC
Error::`` answers (Q13). An unreachable client node is 404 ``No path to node``, another
unreachable agent 500 with the RPC error text.

The response: 200 with ``Content-Type: application/json`` (frames, see
``agent/monitor.py``) or ``text/plain`` with ``plain=true`` (raw lines), streamed until
the client disconnects, which ends the stream silently. Quart's response timeout is
lifted for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from quart import Response, request

from ..config import parse_go_bool
from ..logfmt import parse_monitor_level
from ..monitor_rpc import open_monitor
from .api_errors import ApiError

__all__ = ["MonitorOptions", "parse_monitor_options", "register_monitor_routes"]

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


@dataclass(frozen=True)
class MonitorOptions:
    """The parsed query of one monitor request."""

    level_text: str          # as given, "info" when absent or empty
    level: int               # Python level number (agent.logfmt.MONITOR_LEVELS)
    json: bool
    plain: bool
    include_location: bool
    node_id: str
    server_id: str


def _go_bool(args: Mapping[str, str], name: str, label: str) -> bool:
    text = args.get(name, "")
    if text == "":
        return False
    try:
        return parse_go_bool(text)
    except ValueError as exc:
        raise ApiError(400, f"Unknown option for {label}: {exc}") from None


def parse_monitor_options(args: Mapping[str, str]) -> MonitorOptions:
    """Check the query in Nomad's order; raises ``ApiError(400, ...)`` at the first fault."""
    level_text = args.get("log_level", "") or "info"
    level = parse_monitor_level(level_text)
    if level is None:
        raise ApiError(400, f"Unknown log level: {level_text}")
    log_json = _go_bool(args, "log_json", "log json")
    plain = _go_bool(args, "plain", "plain")
    include_location = _go_bool(args, "log_include_location", "log_include_location")
    node_id, server_id = args.get("node_id", ""), args.get("server_id", "")
    if node_id and server_id:
        raise ApiError(400, "Cannot target node and server simultaneously")
    return MonitorOptions(level_text=level_text, level=level, json=log_json, plain=plain,
                          include_location=include_location, node_id=node_id,
                          server_id=server_id)


def _answers_locally(api: Any, options: MonitorOptions) -> bool:
    """True when no other agent is involved before the target is resolved."""
    if not options.node_id and not options.server_id:
        return True
    client = getattr(api, "client", None)
    return bool(options.node_id) and client is not None and options.node_id == client.node_id


def register_monitor_routes(app: Any, api: Any) -> None:
    """Add ``/v1/agent/monitor`` to ``app``."""

    @app.route("/v1/agent/monitor", methods=_ALL_METHODS)
    async def agent_monitor() -> Response:
        if request.method != "GET":
            raise ApiError(405, "Invalid method")
        options = parse_monitor_options(request.args)
        from . import auth

        first_hop_is_server = api.is_server or not _answers_locally(api, options)
        await auth.require(api, "agent:read",
                           unknown=auth.PERMISSION_DENIED if first_hop_is_server else auth.TOKEN_NOT_FOUND)
        targeted = bool(options.server_id or options.node_id)
        body = await open_monitor(   # Nomad serves an untargeted stream locally whatever the region
            api, token=auth.request_token(), level_text=options.level_text, json=options.json,
            include_location=options.include_location, plain=options.plain,
            server_id=options.server_id, node_id=options.node_id,
            region=request.args.get("region", "") if targeted else "")
        response = Response(body, status=200,
                            content_type="text/plain" if options.plain else "application/json")
        response.timeout = None   # a stream lasts until the client goes
        return response
