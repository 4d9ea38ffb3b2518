"""``GET /v1/agent/health`` (agent-api.md 3.6): is this agent's client and server part healthy?

* Client part: healthy while the client knows at least one server, else
  ``no known servers``.
* Server part: the server asks "who is the leader?" the way Nomad's ``Status.Leader``
  RPC does. By default the question goes to the leader (RPC ``Agent.Leader``), which
  answers once it can serve consistent reads, so the check proves a leader exists and
  is reachable; with no leader known the server keeps trying for the hold timeout
  (5 s) and then reports ``No cluster leader``. With ``?stale`` the server answers from
  its own raft view at once, ``no leader`` when it knows none. ``?region=`` naming
  another region asks a server of that region; an unknown region is
  ``No path to region``.
* ``type`` (repeatable) restricts the check to ``client`` and/or ``server``; a named
  part the agent does not run fails with ``<part> not enabled``; other values are
  ignored, so ``?type=foo`` checks nothing and is ``{}`` with 200.

All parts healthy: 200 ``application/json``. Any part failing: 500 with the same JSON
as the body, sent as an error, so ``Content-Type: text/plain; charset=utf-8``. GET
only; the generic query parameters are parsed first (their 400s); no ACL.
"""

from __future__ import annotations

from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from ..config import parse_go_bool
from .api_errors import ApiError
from .jsontext import compact_json

__all__ = ["register_health_routes", "health_document", "server_health"]

NO_LEADER = "no leader"
NO_PATH_TO_REGION = "No path to region"


def health_document(checked: dict[str, tuple[bool, str]]) -> tuple[int, dict[str, Any]]:
    """``(status, body)`` from each checked part's ``(ok, message)``, client before server."""
    body: dict[str, Any] = {}
    for part in ("client", "server"):
        if part in checked:
            ok, message = checked[part]
            body[part] = {"ok": ok, "message": message} if message else {"ok": ok}
    healthy = all(ok for ok, _ in checked.values())
    return (200 if healthy else 500), body


def wanted_parts(types: list[str] | None, *, has_client: bool, has_server: bool) -> list[str]:
    """The parts to check: every part the agent runs, or the ``type`` values named."""
    if types is None:
        return [p for p, present in (("client", has_client), ("server", has_server)) if present]
    return [p for p in ("client", "server") if p in types]


def client_health(api: Any) -> tuple[bool, str]:
    client = getattr(api, "client", None)
    if client is None:
        return False, "client not enabled"
    if not client.servers():
        return False, "no known servers"
    return True, "ok"


async def server_health(api: Any, *, stale: bool, region: str) -> tuple[bool, str]:
    """The server part: ``(True, "ok")`` when a leader answers, else the error text."""
    server = getattr(api, "server", None)
    if server is None:
        return False, "server not enabled"
    from raftlite.errors import RaftError

    from ..rpc import RpcError
    from ..server import NoLeader

    try:
        if region and region != api.config.region:
            leader = await _region_leader(api, region)
        elif stale:
            leader = server.leader_address()
        else:
            from ..agent_info_rpc import consistent_leader

            leader = await server.on_leader("Agent.Leader", {}, lambda _args: consistent_leader(server),
                                            idempotent=True)
    except (NoLeader, RpcError, RaftError) as exc:
        return False, str(exc)
    if not leader:
        return False, NO_LEADER
    return True, "ok"


async def _region_leader(api: Any, region: str) -> str:
    """Ask an alive server of ``region`` (from the shared gossip pool) for its leader."""
    from ..rpc import RpcError

    candidates = sorted(
        (m for m in api.handle.members()
         if m.tags.get("role") == "nomad" and m.tags.get("region") == region
         and str(m.status) == "alive" and m.tags.get("port", "").isdigit()),
        key=lambda m: m.name)
    if not candidates:
        raise RpcError(NO_PATH_TO_REGION)
    member = candidates[0]
    host = member.tags.get("rpc_addr") or member.addr
    address = f"[{host}]:{member.tags['port']}" if ":" in host else f"{host}:{member.tags['port']}"
    answer = await api.server.pool.call(address, "Status.Leader", {}, timeout=5.0)
    return answer if isinstance(answer, str) else ""


def register_health_routes(app: QuartTrio, api: Any) -> None:
    """Install ``/v1/agent/health`` on ``app``."""
    from .app import ALL_METHODS, check_query_options, error_response, json_response

    @app.route("/v1/agent/health", methods=ALL_METHODS)
    async def health() -> Response:
        if request.method != "GET":
            raise ApiError(405, "Invalid method")
        check_query_options()
        args = request.args
        stale = "stale" in args and (args["stale"] == "" or parse_go_bool(args["stale"]))
        types = args.getlist("type") if "type" in args else None
        parts = wanted_parts(types, has_client=getattr(api, "client", None) is not None,
                             has_server=getattr(api, "server", None) is not None)
        checked: dict[str, tuple[bool, str]] = {}
        if "client" in parts:
            checked["client"] = client_health(api)
        if "server" in parts:
            checked["server"] = await server_health(api, stale=stale, region=args.get("region", ""))
        status, body = health_document(checked)
        if status == 200:
            return json_response(body)
        return error_response(status, compact_json(body))
