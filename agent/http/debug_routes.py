"""``/v1/agent/host`` and ``/v1/agent/pprof/*`` (agent-api.md 3.7, 3.9, section 4).

The routes check method, ACL and parameters in the spec's order, then hand the
request to ``agent.debug_rpc`` (which answers here or forwards over RPC):

* host: GET only (405) -> token and debug ACL on this agent (agent:read; ACLs off:
  ``enable_debug``) -> both ``node_id`` and ``server_id`` is 400 -> answer. Without a
  target the bare host object is returned; with one, ``{"AgentID", "HostData"}``
  (quirk Q4, kept).
* pprof: GET only (405; Nomad accepts any method, quirk Q5) -> empty name 404
  ``Invalid method`` -> both targets 400 -> the ACL checks of each hop and of the
  profiled agent -> unknown name 404. The profile name comes from the path; a
  ``?profile=`` value is ignored (quirk Q8). ``seconds``, ``debug`` and ``gc`` that do
  not parse count as 0, as in Go's ``net/http/pprof``.
* ``/v1/agent/pprof`` without the slash: 301 to ``/v1/agent/pprof/``, as Go's mux.
"""

from __future__ import annotations

import html
from typing import Any

from quart import Response, request

from ..debug_rpc import DebugRequest, PprofRequest, answer_host, answer_pprof, auth_module, check_access
from ..pprof import go_atoi
from .api_errors import ApiError
from .app import ALL_METHODS, json_response

__all__ = ["register_debug_routes"]

_DIRECT_KINDS = ("cmdline", "profile", "trace")


def _request_token() -> str:
    """The caller's secret: ``auth.request_token()`` (ACL piece) or the same rule here."""
    auth = auth_module()
    if auth is not None:
        return auth.request_token()
    token = request.headers.get("X-Nomad-Token", "").strip()
    if token:
        return token
    scheme, _, rest = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and rest.split():
        return rest.split()[0]
    return ""


def _targets() -> DebugRequest:
    args = request.args
    return DebugRequest(token=_request_token(), server_id=args.get("server_id", ""),
                        node_id=args.get("node_id", ""), region=args.get("region", ""))


def _redirect_to_pprof_index() -> Response:
    """Go's ``http.Redirect`` with 301: the query kept; a small HTML body for GET."""
    location = "/v1/agent/pprof/"
    query = request.query_string.decode("latin-1")
    if query:
        location += "?" + query
    body = b""
    response = Response(body, status=301)
    response.headers.pop("Content-Type", None)
    if request.method in ("GET", "HEAD"):
        response.headers["Content-Type"] = "text/html; charset=utf-8"
    if request.method == "GET":
        response.set_data(f'<a href="{html.escape(location)}">Moved Permanently</a>.\n\n'.encode())
    response.headers["Location"] = location
    return response


def register_debug_routes(app: Any, api: Any) -> None:
    """Add the host and pprof routes to ``app``."""

    @app.route("/v1/agent/host", methods=ALL_METHODS)
    async def agent_host() -> Response:
        if request.method != "GET":
            raise ApiError(405, "Invalid method")
        target = _targets()
        auth = auth_module()
        if auth is not None:
            await auth.require_debug(api, "agent:read")
        else:
            await check_access(api, target.token, "agent:read", debug=True)
        if target.server_id and target.node_id:
            raise ApiError(400, "Can only forward to either client node or server")
        answer = await answer_host(api, target, checked=True)
        if target.server_id or target.node_id:
            return json_response(answer)
        return json_response(answer["HostData"])

    @app.route("/v1/agent/pprof", methods=ALL_METHODS)
    async def agent_pprof_redirect() -> Response:
        return _redirect_to_pprof_index()

    @app.route("/v1/agent/pprof/", methods=ALL_METHODS, defaults={"name": ""})
    @app.route("/v1/agent/pprof/<path:name>", methods=ALL_METHODS)
    async def agent_pprof(name: str) -> Response:
        if request.method != "GET":
            raise ApiError(405, "Invalid method")
        if name == "":
            raise ApiError(404, "Invalid method")
        target = _targets()
        if target.server_id and target.node_id:
            raise ApiError(400, "Cannot target node and server simultaneously")
        args = request.args
        profile = PprofRequest(kind=name if name in _DIRECT_KINDS else "lookup", name=name,
                               seconds=go_atoi(args.get("seconds")), debug=go_atoi(args.get("debug")),
                               gc=go_atoi(args.get("gc")))
        result = await answer_pprof(api, target, profile)
        headers = dict(result.headers)
        response = Response(result.payload, status=200,
                            content_type=headers.pop("Content-Type", "application/octet-stream"))
        for header, value in headers.items():
            response.headers[header] = value
        return response
