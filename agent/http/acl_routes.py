"""Routes of Nomad's ACL API: bootstrap, policies, tokens (``/v1/acl/*``; docs/acl.md).

``register_acl_routes(app, api)`` adds them to the app of ``agent.http.app``. They
follow Nomad's ``command/agent/acl_endpoint.go`` and ``nomad/acl_endpoint.go``:

- the method is checked first (405 ``Invalid method``); then, with ACLs disabled,
  every endpoint answers **400 ``ACL support disabled``**;
- writes go through Raft (``api.state_apply``, forwarded to the leader); the
  proposer draws AccessorID and SecretID and stamps the time, so every server
  stores the same token; reads are consistent unless ``?stale``, and set
  ``X-Nomad-Index``, ``X-Nomad-KnownLeader``, ``X-Nomad-LastContact``;
- rights: policy writes, token create, list and delete need a management token;
  ``GET /v1/acl/policy/:name`` a management token or one holding that policy;
  ``GET /v1/acl/policies`` lists every policy for management and the caller's own
  ones otherwise; ``GET /v1/acl/token/:accessor`` management or the token itself;
  an unknown secret is 403 ``ACL token not found``, an expired one 403
  ``ACL token expired``, anything else refused 403 ``Permission denied``;
- ``POST /v1/acl/bootstrap`` answers the management token once; then 400
  ``ACL bootstrap already done (reset index: N)``.

Times are stored as Unix ns and shown as Go's ``time.Time`` JSON (RFC 3339, UTC).
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from ..config import parse_go_duration
from ..state_acl import validate_policy, validate_token
from .api_errors import ApiError
from .app import ALL_METHODS, _require_method, empty_response, json_response
from .auth import (PERMISSION_DENIED, TOKEN_NOT_FOUND, acl_enabled, request_token, resolve_acl,
                   resolve_token)
from .cluster_routes import _is_stale, _json_body, _with_index, _with_read_meta
from .sched_api import rfc3339_nano

__all__ = ["register_acl_routes", "token_json", "token_stub", "policy_json", "policy_stub",
           "TOKEN_MIN_EXPIRATION_TTL", "TOKEN_MAX_EXPIRATION_TTL"]

TOKEN_MIN_EXPIRATION_TTL = 60.0              # Nomad's acl.token_min_expiration_ttl default (1m)
TOKEN_MAX_EXPIRATION_TTL = 24 * 3600.0       # Nomad's acl.token_max_expiration_ttl default (24h)
_NS = 1_000_000_000
ACL_DISABLED = "ACL support disabled"


def register_acl_routes(app: QuartTrio, api: Any) -> None:
    """Add the ``/v1/acl/*`` routes (once per app)."""
    if app.extensions.get("shoal.acl_routes"):
        return
    app.extensions["shoal.acl_routes"] = True

    @app.route("/v1/acl/bootstrap", methods=ALL_METHODS)
    async def bootstrap() -> Response:
        _require_method("PUT", "POST")
        _require_enabled(api)
        return await _bootstrap(api)

    @app.route("/v1/acl/policies", methods=ALL_METHODS)
    async def policies() -> Response:
        _require_method("GET")
        _require_enabled(api)
        return await _policy_list(api)

    @app.route("/v1/acl/policy/<path:name>", methods=ALL_METHODS, merge_slashes=False)
    async def policy(name: str) -> Response:
        _require_method("GET", "PUT", "POST", "DELETE")
        _require_enabled(api)
        if request.method == "GET":
            return await _policy_get(api, name)
        await _require_management(api)
        if request.method == "DELETE":
            result = _checked(await api.state_apply({"Type": "acl_policy_delete", "Names": [name]}))
            return _with_index(empty_response(200), result.get("Index"))
        return await _policy_put(api, name)

    @app.route("/v1/acl/tokens", methods=ALL_METHODS)
    async def tokens() -> Response:
        _require_method("GET")
        _require_enabled(api)
        await _require_management(api)
        result = await api.state_read({"Type": "acl_token_list"}, _is_stale())
        return _with_read_meta(json_response([token_stub(t) for t in result["Tokens"]]), result)

    @app.route("/v1/acl/token", methods=ALL_METHODS)
    async def token_create() -> Response:
        _require_method("PUT", "POST")
        _require_enabled(api)
        await _require_management(api)
        return await _token_write(api, None)

    @app.route("/v1/acl/token/<path:accessor>", methods=ALL_METHODS, merge_slashes=False)
    async def token(accessor: str) -> Response:
        if accessor == "self":
            _require_method("GET")
            _require_enabled(api)
            return await _token_self(api)
        _require_method("GET", "PUT", "POST", "DELETE")
        _require_enabled(api)
        if request.method == "GET":
            return await _token_get(api, accessor)
        await _require_management(api)
        if request.method == "DELETE":
            result = _checked(await api.state_apply({"Type": "acl_token_delete",
                                                     "AccessorIDs": [accessor]}))
            return _with_index(empty_response(200), result.get("Index"))
        return await _token_write(api, accessor)


# --- handlers ------------------------------------------------------------------------


async def _bootstrap(api: Any) -> Response:
    data = await request.get_data()
    secret = ""
    if data.strip():
        body = await _json_body()
        if not isinstance(body, dict):
            raise ApiError(400, "Request body must be a JSON object")
        secret = body.get("BootstrapSecret") or ""
        if not isinstance(secret, str) or (secret and not _is_uuid(secret)):
            raise ApiError(400, "invalid acl token")
    status = await api.state_read({"Type": "acl_bootstrap_status"}, True)
    if status.get("BootstrapIndex"):
        raise ApiError(400, f"ACL bootstrap already done (reset index: {status['BootstrapIndex']})")
    token = {"AccessorID": str(uuid.uuid4()), "SecretID": secret or str(uuid.uuid4()),
             "Name": "Bootstrap Token", "Type": "management", "Policies": [], "Global": True}
    result = _checked(await api.state_apply({"Type": "acl_bootstrap", "Token": token,
                                             "Time": time.time_ns()}))
    return _with_index(json_response(token_json(result["Token"])), result.get("Index"))


async def _policy_list(api: Any) -> Response:
    acl = await resolve_acl(api, request_token())
    result = await api.state_read({"Type": "acl_policy_list"}, _is_stale())
    listed = result["Policies"]
    if not acl.management:
        token, _ = await resolve_token(api, request_token())
        mine = set(token.get("Policies") or []) if token else set()
        listed = [p for p in listed if p["Name"] in mine]
    return _with_read_meta(json_response([policy_stub(p) for p in listed]), result)


async def _policy_get(api: Any, name: str) -> Response:
    acl = await resolve_acl(api, request_token())
    if not acl.management:
        token, _ = await resolve_token(api, request_token())
        if token is None or name not in (token.get("Policies") or []):
            raise ApiError(403, PERMISSION_DENIED)
    result = await api.state_read({"Type": "acl_policy_get", "Name": name}, _is_stale())
    if result.get("Policy") is None:
        return _with_read_meta(_not_found("ACL policy not found"), result)
    return _with_read_meta(json_response(policy_json(result["Policy"])), result)


async def _policy_put(api: Any, name: str) -> Response:
    body = await _json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    if body.get("Name") != name:
        raise ApiError(400, "ACL policy name does not match request path")
    policy = {"Name": name, "Description": body.get("Description") or "", "Rules": body.get("Rules")}
    error = validate_policy(policy)
    if error:
        raise ApiError(400, f"policy 0 invalid: {error}")
    result = _checked(await api.state_apply({"Type": "acl_policy_upsert", "Policies": [policy]}))
    return _with_index(empty_response(200), result.get("Index"))


async def _token_self(api: Any) -> Response:
    secret = request_token()
    if secret == "":
        raise ApiError(403, TOKEN_NOT_FOUND)
    await resolve_acl(api, secret)               # 403 for unknown or expired
    token, _ = await resolve_token(api, secret)
    assert token is not None
    return json_response(token_json(token))


async def _token_get(api: Any, accessor: str) -> Response:
    acl = await resolve_acl(api, request_token())
    if not acl.management:
        token, _ = await resolve_token(api, request_token())
        if token is None or token.get("AccessorID") != accessor:
            raise ApiError(403, PERMISSION_DENIED)
    result = await api.state_read({"Type": "acl_token_get", "AccessorID": accessor}, _is_stale())
    if result.get("Token") is None:
        return _with_read_meta(_not_found(TOKEN_NOT_FOUND), result)
    return _with_read_meta(json_response(token_json(result["Token"])), result)


async def _token_write(api: Any, accessor: str | None) -> Response:
    """Create (``accessor`` None) or update a token from the request body."""
    body = await _json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    now = time.time_ns()
    if accessor is None:
        if body.get("AccessorID"):
            raise ApiError(400, "ACL token accessor ID cannot be set when creating a token")
        token = {"AccessorID": str(uuid.uuid4()), "SecretID": str(uuid.uuid4())}
        expiration = _expiration(body, now)
    else:
        if body.get("AccessorID") not in (None, "", accessor):
            raise ApiError(400, "ACL token accessor ID does not match request path")
        current = (await api.state_read({"Type": "acl_token_get", "AccessorID": accessor}, False))["Token"]
        if current is None:
            raise ApiError(404, TOKEN_NOT_FOUND)
        token = {"AccessorID": accessor, "SecretID": current["SecretID"]}
        expiration = current.get("ExpirationTime")
    token.update({"Name": body.get("Name") or "", "Type": body.get("Type") or "client",
                  "Policies": body.get("Policies") or [], "Global": body.get("Global", False)})
    if expiration:
        token["ExpirationTime"] = expiration
    error = validate_token(token)
    if error:
        raise ApiError(400, f"token 0 invalid: {error}")
    result = _checked(await api.state_apply({"Type": "acl_token_upsert", "Tokens": [token],
                                             "Time": now}))
    return _with_index(json_response(token_json(result["Tokens"][0])), result.get("Index"))


def _expiration(body: dict[str, Any], now_ns: int) -> int | None:
    """``ExpirationTTL`` (ns, or a Go duration string) as an absolute time; bounds as Nomad's defaults."""
    ttl = body.get("ExpirationTTL")
    if ttl in (None, 0, ""):
        if body.get("ExpirationTime"):
            raise ApiError(400, "ExpirationTime cannot be set directly; use ExpirationTTL")
        return None
    if isinstance(ttl, str):
        try:
            seconds = parse_go_duration(ttl)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
    elif isinstance(ttl, int) and not isinstance(ttl, bool):
        seconds = ttl / _NS
    else:
        raise ApiError(400, "ExpirationTTL must be a duration in nanoseconds")
    if not TOKEN_MIN_EXPIRATION_TTL <= seconds <= TOKEN_MAX_EXPIRATION_TTL:
        raise ApiError(400, "token 0 invalid: expiration time cannot be less than 1m0s or more "
                            "than 24h0m0s in the future")
    return now_ns + int(seconds * _NS)


# --- checks and shapes ------------------------------------------------------------------


def _require_enabled(api: Any) -> None:
    if not acl_enabled(api):
        raise ApiError(400, ACL_DISABLED)


async def _require_management(api: Any) -> None:
    acl = await resolve_acl(api, request_token())
    if not acl.management:
        raise ApiError(403, PERMISSION_DENIED)


def _checked(result: Any) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise ApiError(500, "malformed state answer")
    if "Error" in result:
        raise ApiError(400, str(result["Error"]))
    return result


def _not_found(message: str) -> Response:
    return Response(message.encode(), status=404, content_type="text/plain; charset=utf-8")


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def _time(ns: int) -> str:
    return rfc3339_nano(int(ns))


def token_json(token: dict[str, Any]) -> dict[str, Any]:
    """Nomad's ``ACLToken`` JSON (times as RFC 3339; ``ExpirationTime`` only when set)."""
    out = {"AccessorID": token["AccessorID"], "SecretID": token["SecretID"], "Name": token["Name"],
           "Type": token["Type"], "Policies": list(token.get("Policies") or []) or None,
           "Global": token["Global"], "CreateTime": _time(token.get("CreateTime", 0))}
    if token.get("ExpirationTime"):
        out["ExpirationTime"] = _time(token["ExpirationTime"])
    out["CreateIndex"], out["ModifyIndex"] = token["CreateIndex"], token["ModifyIndex"]
    return out


def token_stub(token: dict[str, Any]) -> dict[str, Any]:
    """Nomad's ``ACLTokenListStub``: the token without its SecretID."""
    out = token_json(token)
    del out["SecretID"]
    return out


def _policy_hash(policy: dict[str, Any]) -> str:
    """Nomad's ``ACLPolicy.SetHash``: BLAKE2b-256 of name, description, rules (base64 in JSON)."""
    digest = hashlib.blake2b(digest_size=32)
    for part in (policy["Name"], policy.get("Description", ""), policy["Rules"]):
        digest.update(part.encode())
    return base64.b64encode(digest.digest()).decode()


def policy_json(policy: dict[str, Any]) -> dict[str, Any]:
    """Nomad's ``ACLPolicy`` JSON."""
    return {"Name": policy["Name"], "Description": policy.get("Description", ""),
            "Rules": policy["Rules"], "Hash": _policy_hash(policy),
            "CreateIndex": policy["CreateIndex"], "ModifyIndex": policy["ModifyIndex"]}


def policy_stub(policy: dict[str, Any]) -> dict[str, Any]:
    """Nomad's ``ACLPolicyListStub``: everything but the rules."""
    out = policy_json(policy)
    del out["Rules"]
    return out
