"""The teaching UI: static files at ``/ui`` and its data at ``/v1/ui/state`` and ``/v1/ui/chaos``.

* ``GET /ui`` and ``/ui/`` serve ``agent/ui/index.html``; ``GET /ui/<file>`` serves
  a file of that folder (``ui.js``, ``ui.css``) with its content type. Only names
  listed in the folder are served (no sub-paths); anything else is the empty 404.
  The page is static and hand-written: no build step, nothing fetched from
  elsewhere (a ``Content-Security-Policy`` of ``'self'`` says so to the browser).
  The static files need no token, as Nomad's own ``/ui`` does not.
* ``GET /v1/ui/state`` (agent:read) -> ``ui_state.build_state``'s document, gathered
  by this server, or by one of its servers for a client-only agent (which adds
  ``"RelayedBy": <its node name>``).
* ``POST /v1/ui/chaos`` (agent:write) with ``{"Action": "isolate"|"loss"|"heal",
  "Member": name, "Percent": p}`` -> ``{"Action", "Member", "Applied", "Failed"}``;
  403 when this agent runs without ``-fault-injection``.

Errors are Nomad's: one plain-text line with the status (``agent.http.app``).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from .api_errors import ApiError
from .app import ALL_METHODS, _require_method, json_response
from .auth import request_token, require

__all__ = ["register_ui_routes", "CONTENT_TYPES", "CONTENT_SECURITY_POLICY"]

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
"""Content type by file suffix; a file with another suffix is not served."""

CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")
"""Everything the page uses comes from the agent that serves it."""


def _ui_folder() -> Any:
    return resources.files("agent") / "ui"


def _static(name: str) -> Response | None:
    """The file ``name`` of ``agent/ui`` with its content type; None when not served."""
    suffix = name[name.rfind("."):] if "." in name else ""
    content_type = CONTENT_TYPES.get(suffix)
    entry = _ui_folder() / name
    if content_type is None or "/" in name or name.startswith(".") or not entry.is_file():
        return None
    body = entry.read_bytes()
    response = Response(b"" if request.method == "HEAD" else body, status=200,
                        content_type=content_type)
    response.headers["Content-Length"] = str(len(body))
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def register_ui_routes(app: QuartTrio, api: Any) -> None:
    """Add ``/ui``, ``/ui/<file>``, ``/v1/ui/state`` and ``/v1/ui/chaos`` to ``app``."""
    from quart import abort

    def serve(name: str) -> Response:
        _require_method("GET", "HEAD")
        response = _static(name)
        if response is None:
            abort(404)   # the empty 404 of create_app
        return response

    @app.route("/ui", methods=ALL_METHODS, strict_slashes=False)
    async def ui_index() -> Response:
        return serve("index.html")

    @app.route("/ui/<path:name>", methods=ALL_METHODS)
    async def ui_file(name: str) -> Response:
        return serve(name)

    @app.route("/v1/ui/state", methods=ALL_METHODS)
    async def ui_state() -> Response:
        _require_method("GET")
        await require(api, "agent:read")
        return json_response(await _state(api, request_token()))

    @app.route("/v1/ui/chaos", methods=ALL_METHODS)
    async def ui_chaos() -> Response:
        _require_method("POST", "PUT")
        await require(api, "agent:write")
        from ..ui_rpc import settled
        from ..ui_state import ChaosError, parse_chaos

        await settled(api.faults())   # 403 when fault injection is off here, before the body is read

        raw = await request.get_data()
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            raise ApiError(400, "chaos request is not valid JSON") from None
        try:
            action, member, loss = parse_chaos(body)
        except ChaosError as exc:
            raise ApiError(400, str(exc)) from None
        return json_response(await _chaos(api, request_token(), action, member, loss))


async def _state(api: Any, token: str) -> dict[str, Any]:
    """This server's gathering, or a client-only agent's relay through one of its servers."""
    from ..ui_state import gather_state

    if getattr(api, "server", None) is not None and api.handle is not None:
        return await gather_state(api, token)
    answer = await _relay(api, "Agent.UIState", {"AuthToken": token})
    answer["FaultInjection"] = bool(answer.get("FaultInjection")) and api.faults_filter is not None
    answer["RelayedBy"] = api.config.node   # the page says which agent served it, and through whom
    return answer


async def _chaos(api: Any, token: str, action: str, member: str, loss: float) -> dict[str, Any]:
    from ..ui_rpc import apply_chaos

    if getattr(api, "server", None) is not None and api.handle is not None:
        return await apply_chaos(api, token, action, member, loss)
    return await _relay(api, "Agent.UIChaos", {"AuthToken": token, "Action": action,
                                               "Member": member, "Loss": loss})


async def _relay(api: Any, method: str, args: dict[str, Any]) -> Any:
    from ..agent_info_rpc import api_error_from_rpc
    from ..rpc import RpcError

    client = getattr(api, "client", None)
    if client is None:
        raise ApiError(500, "no servers")
    try:
        return await client.call(method, args)
    except RpcError as exc:
        raise api_error_from_rpc(str(exc)) from None
