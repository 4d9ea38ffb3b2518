"""Routes for the cluster state: status, operator raft, Nomad Variables and agent faults.

``register_cluster_routes(app, api)`` adds them to the app of ``agent.http.app``
and writes answers the same way: compact JSON (``?pretty`` indents), one-line
plain-text errors, the method checked first. Every decision stays in the facade
(``AgentAPI``): these routes parse parameters, build state-store commands and
queries (``agent.state``) and turn results into Nomad's status codes and headers.

Nomad details kept on purpose (``command/agent/variable_endpoint.go``,
``operator_endpoint.go``):
- ``/v1/var/<path>`` answers an unknown method with **400** "Invalid method" and a
  successful DELETE with **204** and no body; a check-and-set conflict is 409 with
  the current variable, or a zero variable (Namespace and Path only, ``Items``
  null) when there is none.
- Reads of variables set ``X-Nomad-Index``, ``X-Nomad-KnownLeader`` and
  ``X-Nomad-LastContact``; writes set ``X-Nomad-Index``.
- A client-only agent has no servers to forward to yet: 500 "no servers".
- ACLs (docs/acl.md): status routes need nothing; raft configuration needs
  operator:read, peer removal and leadership transfer operator:write; variables are
  checked per namespace and path (read, write, destroy; lists show only what the
  token may ``list``); ``/v1/agent/faults`` needs agent:write for every method.
"""

from __future__ import annotations

import inspect
import json
import time
from typing import Any, Protocol

from quart import Response, request
from quart_trio import QuartTrio

from ..config import parse_go_bool
from ..state import DEFAULT_NAMESPACE, validate_variable, zero_variable
from .api import ApiError
from .app import (ALL_METHODS, AgentFacade, _require_method, check_query_options,
                  empty_response, json_response)
from .auth import acl_enabled, request_token, require, resolve_acl

__all__ = ["register_cluster_routes", "ClusterFacade"]

_PEER_NEITHER = "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove"
_PEER_BOTH = "Must specify only one of ?id or ?address"


class ClusterFacade(AgentFacade, Protocol):
    """What these routes need of ``AgentAPI`` besides the agent routes' members."""

    async def status_leader(self) -> str: ...

    async def status_peers(self) -> list[str]: ...

    async def raft_configuration(self, stale: bool) -> dict[str, Any]: ...

    async def raft_remove_peer(self, *, id: str | None, address: str | None) -> None: ...

    async def raft_transfer_leadership(self, *, id: str | None, address: str | None) -> None: ...

    async def state_apply(self, command: dict[str, Any]) -> dict[str, Any]: ...

    async def state_read(self, query: dict[str, Any], stale: bool) -> dict[str, Any]: ...

    def faults(self) -> dict[str, Any] | None: ...

    def set_faults(self, body: Any) -> dict[str, Any]: ...

    def clear_faults(self) -> None: ...


def register_cluster_routes(app: QuartTrio, api: ClusterFacade) -> None:
    """Add ``/v1/status/*``, ``/v1/operator/raft/*``, ``/v1/var*`` and ``/v1/agent/faults``.

    Registering twice on one app is a no-op (``create_app`` may already have done it).
    """
    if app.extensions.get("shoal.cluster_routes"):
        return
    app.extensions["shoal.cluster_routes"] = True
    _register_status_routes(app, api)
    _register_operator_routes(app, api)
    _register_variable_routes(app, api)
    _register_fault_routes(app, api)


# --- status and operator ------------------------------------------------------------


def _register_status_routes(app: QuartTrio, api: ClusterFacade) -> None:
    @app.route("/v1/status/leader", methods=ALL_METHODS)
    async def status_leader() -> Response:
        _require_method("GET")
        _require_servers(api)
        check_query_options()
        return json_response(await api.status_leader())

    @app.route("/v1/status/peers", methods=ALL_METHODS)
    async def status_peers() -> Response:
        _require_method("GET")
        _require_servers(api)
        check_query_options()
        return json_response(list(await api.status_peers()))


def _register_operator_routes(app: QuartTrio, api: ClusterFacade) -> None:
    @app.route("/v1/operator/raft/configuration", methods=ALL_METHODS)
    async def raft_configuration() -> Response:
        _require_method("GET")
        _require_servers(api)
        await require(api, "operator:read")
        check_query_options()
        result = await api.raft_configuration(_is_stale())
        return json_response(raft_configuration_json(result))

    @app.route("/v1/operator/raft/peer", methods=ALL_METHODS)
    async def raft_peer() -> Response:
        _require_method("DELETE")
        _require_servers(api)
        await require(api, "operator:write")     # Nomad: management; see docs/acl.md
        id, address = _peer_params()
        if id is None and address is None:
            raise ApiError(400, _PEER_NEITHER)
        await api.raft_remove_peer(id=id, address=address)
        return empty_response(200)

    @app.route("/v1/operator/raft/transfer-leadership", methods=ALL_METHODS)
    async def raft_transfer_leadership() -> Response:
        _require_method("PUT", "POST")
        _require_servers(api)
        await require(api, "operator:write")
        id, address = _peer_params()
        await api.raft_transfer_leadership(id=id, address=address)
        return empty_response(200)


def raft_configuration_json(result: dict[str, Any]) -> dict[str, Any]:
    """Nomad's ``RaftConfigurationResponse`` field order: Servers (each ID, Node, Address,
    Leader, Voter, RaftProtocol), then Index."""
    servers = [{key: server.get(key) for key in ("ID", "Node", "Address", "Leader", "Voter",
                                                 "RaftProtocol")}
               for server in result.get("Servers") or []]
    return {"Servers": servers, "Index": result.get("Index", 0)}


def _peer_params() -> tuple[str | None, str | None]:
    """``?id`` / ``?address`` (present, even empty, counts, as Nomad's ``params[...]``)."""
    id = request.args.get("id") if "id" in request.args else None
    address = request.args.get("address") if "address" in request.args else None
    if id is not None and address is not None:
        raise ApiError(400, _PEER_BOTH)
    return id, address


# --- variables ----------------------------------------------------------------------


def _register_variable_routes(app: QuartTrio, api: ClusterFacade) -> None:
    @app.route("/v1/vars", methods=ALL_METHODS)
    async def variables_list() -> Response:
        _require_method("GET")
        _require_servers(api)
        check_query_options()
        query = {"Type": "var_list", "Namespace": _namespace(None),
                 "Prefix": request.args.get("prefix", "")}
        result = await api.state_read(query, _is_stale())
        listed = await _visible_variables(api, list(result.get("Vars") or []))
        return _with_read_meta(json_response(listed), result)

    @app.route("/v1/var/", methods=ALL_METHODS)
    async def variable_missing_path() -> Response:
        _require_servers(api)
        raise ApiError(400, "missing variable path")

    @app.route("/v1/var/<path:path>", methods=ALL_METHODS, merge_slashes=False)
    async def variable(path: str) -> Response:
        if request.method not in ("GET", "PUT", "POST", "DELETE"):
            raise ApiError(400, "Invalid method")   # Nomad's VariableSpecificRequest says 400
        _require_servers(api)
        if request.method == "GET":
            return await _variable_get(api, path)
        if request.method == "DELETE":
            return await _variable_delete(api, path)
        return await _variable_put(api, path)


async def _variable_get(api: ClusterFacade, path: str) -> Response:
    check_query_options()
    query = {"Type": "var_get", "Namespace": _namespace(None), "Path": path}
    await require(api, f"variable:{query['Namespace']}:{path}:read")
    result = await api.state_read(query, _is_stale())
    if result.get("Var") is None:
        response = Response(b"variable not found", status=404,
                            content_type="text/plain; charset=utf-8")
        return _with_read_meta(response, result)
    return _with_read_meta(json_response(result["Var"]), result)


async def _variable_put(api: ClusterFacade, path: str) -> Response:
    body = await _json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "variable must be a JSON object")
    if body.get("Path") not in (None, "", path):
        raise ApiError(400, f'variable path "{body["Path"]}" in body does not match "{path}" in URL')
    items = body.get("Items")
    if not isinstance(items, dict) or len(items) == 0:
        raise ApiError(400, "variable missing required Items object")
    var = {"Namespace": _namespace(body.get("Namespace")), "Path": path, "Items": items}
    await require(api, f"variable:{var['Namespace']}:{path}:write")
    error = validate_variable(var)
    if error:
        raise ApiError(400, error)
    command = {"Type": "var_upsert", "Var": var, "Cas": _cas(), "Time": time.time_ns()}
    result = await api.state_apply(command)
    if result.get("Ok"):
        response = json_response(result["Var"])
        return _with_index(response, result.get("Index", result["Var"]["ModifyIndex"]))
    return _conflict_or_error(result, var["Namespace"], path)


async def _variable_delete(api: ClusterFacade, path: str) -> Response:
    namespace = _namespace(None)
    await require(api, f"variable:{namespace}:{path}:destroy")
    command = {"Type": "var_delete", "Namespace": namespace, "Path": path, "Cas": _cas()}
    result = await api.state_apply(command)
    if result.get("Ok"):
        return _with_index(empty_response(204), result.get("Index"))
    return _conflict_or_error(result, namespace, path)


def _conflict_or_error(result: dict[str, Any], namespace: str, path: str) -> Response:
    if "Error" in result:
        raise ApiError(400, str(result["Error"]).splitlines()[0] if result["Error"] else "error")
    conflict = result.get("Conflict") or zero_variable(namespace, path)
    response = json_response(conflict)
    response.status_code = 409
    return _with_index(response, conflict["ModifyIndex"])


def _cas() -> int | None:
    """Nomad's ``parseCAS``: absent or empty -> None, else an unsigned 64-bit integer."""
    text = request.args.get("cas", "")
    if text == "":
        return None
    if not (text.isascii() and text.isdigit()) or int(text) >= 2**64:
        raise ApiError(400, f'can not parse cas: strconv.ParseUint: parsing "{text}": invalid syntax')
    return int(text)


def _namespace(body_namespace: Any) -> str:
    """``?namespace=`` wins, then the body's Namespace, then "default"."""
    query = request.args.get("namespace", "")
    if query:
        return query
    if isinstance(body_namespace, str) and body_namespace:
        return body_namespace
    return DEFAULT_NAMESPACE


def _with_read_meta(response: Response, result: dict[str, Any]) -> Response:
    """Nomad's ``setMeta``: index, known leader, last contact (ms)."""
    _with_index(response, result.get("Index", 0))
    response.headers["X-Nomad-KnownLeader"] = "true" if result.get("KnownLeader", True) else "false"
    response.headers["X-Nomad-LastContact"] = str(int(result.get("LastContact", 0)))
    return response


def _with_index(response: Response, index: Any) -> Response:
    if index is not None:
        response.headers["X-Nomad-Index"] = str(int(index))
    return response


# --- faults -------------------------------------------------------------------------


def _register_fault_routes(app: QuartTrio, api: ClusterFacade) -> None:
    @app.route("/v1/agent/faults", methods=ALL_METHODS)
    async def faults() -> Response:
        _require_method("GET", "PUT", "DELETE")
        await require(api, "agent:write")        # reading the rules too (docs/acl.md)
        if request.method == "GET":
            return json_response(await _maybe_await(api.faults()))
        if request.method == "PUT":
            body = await _json_body()
            return json_response(await _maybe_await(api.set_faults(body)))
        await _maybe_await(api.clear_faults())
        return empty_response(200)


# --- helpers ------------------------------------------------------------------------


async def _visible_variables(api: AgentFacade, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The listed variables the caller may ``list`` (all of them with ACLs off)."""
    if not acl_enabled(api):
        return listed
    acl = await resolve_acl(api, request_token())
    return [var for var in listed
            if acl.allows(f"variable:{var['Namespace']}:{var['Path']}:list")]


def _require_servers(api: AgentFacade) -> None:
    """A server answers; a client-only agent forwards through its servers (state_read/apply)."""
    if not api.is_server and getattr(api, "client", None) is None:
        raise ApiError(500, "no servers")


def _is_stale() -> bool:
    """Nomad's ``parseConsistency``: ``?stale`` present means stale unless it parses false."""
    if "stale" not in request.args:
        return False
    text = request.args["stale"]
    return text == "" or parse_go_bool(text)     # check_query_options already refused bad values


async def _json_body() -> Any:
    data = await request.get_data()
    if not data.strip():
        raise ApiError(400, "Request body is empty")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"invalid JSON body: {str(exc).splitlines()[0]}") from None


async def _maybe_await(value: Any) -> Any:
    """The fault methods are plain calls in the contract; accept coroutines as well."""
    return await value if inspect.isawaitable(value) else value
