"""The quart-trio routes of the HTTP API; every decision is in the ``AgentAPI`` facade.

Routes check the method, mode and parameters in the order Nomad does
(agent-api.md section 3) and turn results into responses exactly as Nomad writes
them: compact JSON without a trailing newline (``?pretty`` indents by 4 and adds
one), errors as ``text/plain; charset=utf-8`` without a trailing newline, success
without a body as 200 with no Content-Type, and an empty 404 for any other path.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, Sequence

from quart import Response, request
from quart_trio import QuartTrio

from ..config import parse_go_bool, parse_go_duration
from .api import ApiError
from .auth import request_token, require
from .jsontext import compact_json

__all__ = ["create_app", "AgentFacade"]

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
_TEXT = "text/plain; charset=utf-8"
MAX_BODY_BYTES = 1 << 20
"""Largest request body read (1 MiB); a longer one is 413 ``Request body too large``."""


class AgentFacade(Protocol):
    """What the routes need of ``agent.http.api.AgentAPI`` (tests pass a fake)."""

    is_server: bool

    async def members(self, auth_token: str = "") -> dict[str, Any]: ...

    async def members_body(self, auth_token: str = "") -> str:
        """``members`` as compact JSON text (Go's ``json.Marshal`` layout)."""
        ...

    async def join(self, addresses: Sequence[str]) -> dict[str, Any]: ...

    async def force_leave(self, node: str, prune: bool) -> None: ...


def error_response(status: int, message: str) -> Response:
    return Response(message.encode(), status=status, content_type=_TEXT)


def empty_response(status: int = 200) -> Response:
    response = Response(b"", status=status)
    response.headers.pop("Content-Type", None)
    return response


def _pretty() -> bool:
    return "pretty" in request.args and request.args.get("pretty") != "0"


def json_response(value: Any) -> Response:
    """Go's ``json.Marshal`` layout, or ``MarshalIndent`` with 4 spaces for ``?pretty``."""
    if _pretty():
        body = json.dumps(value, indent=4, ensure_ascii=False) + "\n"
    else:
        body = compact_json(value)
    return json_text_response(body)


def json_text_response(body: str) -> Response:
    """A 200 ``application/json`` answer whose JSON text is already made."""
    return Response(body.encode(), status=200, content_type="application/json")


def check_query_options() -> None:
    """Nomad's generic query parsing: the 400s for stale, per_page, wait, index."""
    args = request.args
    if "stale" in args and args["stale"] != "":
        try:
            parse_go_bool(args["stale"])
        except ValueError:
            raise ApiError(400, "Expect `true` or `false` for `stale` query string parameter") from None
    per_page = args.get("per_page", "")
    if per_page != "" and not _is_go_int32(per_page):
        raise ApiError(400, "Expect a number for `per_page` query string parameter")
    wait = args.get("wait", "")
    if wait != "":
        try:
            parse_go_duration(wait)
        except ValueError:
            raise ApiError(400, "Invalid wait time") from None
    index = args.get("index", "")
    if index != "" and not (index.isascii() and index.isdigit() and int(index) < 2**64):
        raise ApiError(400, "Invalid index")


def _is_go_int32(text: str) -> bool:
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit()):
        return False
    return -(2**31) <= int(text) < 2**31


def create_app(api: AgentFacade) -> QuartTrio:
    """The quart-trio application serving ``api``."""
    app = QuartTrio("shoal")
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES   # quart raises 413 when a body is read

    @app.errorhandler(413)
    async def _too_large(_error: Exception) -> Response:
        return error_response(413, "Request body too large")

    @app.errorhandler(ApiError)
    async def _api_error(error: ApiError) -> Response:
        return error_response(error.status, error.message)

    @app.errorhandler(404)
    async def _not_found(_error: Exception) -> Response:
        response = empty_response(404)
        response.shoal_catch_all = True  # type: ignore[attr-defined]  # no extra headers (headers.py)
        return response

    @app.errorhandler(405)
    async def _bad_method(_error: Exception) -> Response:
        return error_response(405, "Invalid method")

    @app.route("/v1/agent/members", methods=ALL_METHODS)
    async def members() -> Response:
        _require_method("GET")
        check_query_options()
        await require(api, "node:read", unknown="Permission denied")
        if _pretty():
            return json_response(await api.members(request_token()))
        return json_text_response(await api.members_body(request_token()))

    @app.route("/v1/agent/join", methods=ALL_METHODS)
    async def join() -> Response:
        _require_method("PUT", "POST")
        _require_server(api)
        addresses = request.args.getlist("address")
        if not addresses:
            raise ApiError(400, "missing address to join")
        return json_response(await api.join(addresses))

    @app.route("/v1/agent/force-leave", methods=ALL_METHODS)
    async def force_leave() -> Response:
        _require_method("PUT", "POST")
        _require_server(api)
        await require(api, "agent:write")
        node = request.args.get("node", "")
        if node == "":
            raise ApiError(400, "missing node to force leave")
        prune_text = request.args.get("prune", "")
        try:
            prune = parse_go_bool(prune_text) if prune_text != "" else False
        except ValueError:
            raise ApiError(400, "invalid prune value") from None
        await api.force_leave(node, prune)
        return empty_response(200)

    @app.route("/v1/agent/self", methods=ALL_METHODS)
    async def agent_self() -> Response:
        _require_method("GET")
        await require(api, "agent:read")
        if _pretty():
            return json_response(api.agent_self())
        # Compact: the unchanging config part is spliced in already encoded.
        return json_text_response(api.agent_self(encoded=True))

    from .client_routes import register_client_routes
    from .cluster_routes import register_cluster_routes
    from .job_routes import register_job_routes
    from .scheduler_routes import register_scheduler_routes
    from .metrics_routes import register_metrics_routes

    register_cluster_routes(app, api)
    register_job_routes(app, api)
    register_client_routes(app, api)
    register_scheduler_routes(app, api)
    register_metrics_routes(app, api)
    from .monitor_routes import register_monitor_routes
    register_monitor_routes(app, api)
    from .health_routes import register_health_routes
    register_health_routes(app, api)
    from .headers import register_header_hooks
    register_header_hooks(app, api)
    from .acl_routes import register_acl_routes
    register_acl_routes(app, api)
    from .debug_routes import register_debug_routes
    register_debug_routes(app, api)
    from .ui_routes import register_ui_routes
    register_ui_routes(app, api)
    return app


def _require_method(*allowed: str) -> None:
    if request.method not in allowed:
        raise ApiError(405, "Invalid method")


def _require_server(api: AgentFacade) -> None:
    if not api.is_server:
        raise ApiError(501, "Invalid method")
