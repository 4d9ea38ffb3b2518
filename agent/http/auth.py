"""ACL checks for the HTTP routes and the agent RPC hops (agent-api.md 1.4, 1.5).

The contract (docs/internals.md, "ACL checks"):

- ``request_token()``: the caller's secret: ``X-Nomad-Token`` (trimmed), else the
  first word after ``Authorization: Bearer`` (scheme case-insensitive); ``""`` is
  the anonymous token. A ``?token=`` query parameter is ignored, as in Nomad.
- ``await require(api, capability, unknown=...)``: with ACLs off, returns. Else the
  token is resolved: unknown secret -> 403 ``unknown`` (``ACL token not found`` by
  default; the members and pprof routes pass ``Permission denied``, the text Nomad's
  RPC layer gives); expired -> 403 ``ACL token expired`` (shoal answers 403 where
  Nomad 1.9.7 answers 500, agent-api.md 11 Q1/Q2; routes passing
  ``unknown="Permission denied"`` get that text for expired tokens too); a token
  without the capability -> 403 ``Permission denied``.
- ``await require_debug(api, capability)``: ``/host`` and ``/pprof``: with ACLs off
  allowed only when the agent has ``enable_debug``; with ACLs on, ``require``.
- ``await check_secret(api, secret, capability, debug=..., unknown=...)``: the same
  check for a secret carried in RPC arguments (``"AuthToken"``) on a forwarding hop.
- ``await resolve_acl(api, secret)``: the ``acl.ACL`` of a secret (raises the
  403s above), for routes whose rule is not one capability (the ACL routes).

Where tokens come from: a server reads its own copy of the replicated state (a stale
read: a token is usable on a server once the write has reached it); a client-only
agent asks a server with RPC ``ACL.ResolveToken`` and keeps a found token for
``acl_token_ttl`` seconds (Nomad's client token cache; unknown secrets are not
cached, so a token created a moment ago works at once). Parsed policies are cached
by (name, ModifyIndex), so a check costs a dict lookup, not an HCL parse.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio
from quart import request

from ..acl import ACL, MANAGEMENT_ACL, Policy, PolicyError, compile_acl, parse_policy, token_expired
from ..state_acl import ANONYMOUS_TOKEN
from .api_errors import ApiError

__all__ = ["acl_enabled", "request_token", "require", "require_debug", "check_secret",
           "resolve_acl", "resolve_token", "lookup_local", "ANONYMOUS_TOKEN", "PERMISSION_DENIED",
           "TOKEN_NOT_FOUND", "TOKEN_EXPIRED"]

log = logging.getLogger(__name__)

PERMISSION_DENIED = "Permission denied"
TOKEN_NOT_FOUND = "ACL token not found"
TOKEN_EXPIRED = "ACL token expired"

def request_token() -> str:
    """The secret of the current request ("" = anonymous); see the module docstring."""
    header = request.headers.get("X-Nomad-Token", "").strip()
    if header:
        return header
    authorization = request.headers.get("Authorization", "").split()
    if len(authorization) >= 2 and authorization[0].lower() == "bearer":
        return authorization[1]
    return ""


async def require(api: Any, capability: str, *, unknown: str = TOKEN_NOT_FOUND) -> None:
    """Raise ``ApiError(403, ...)`` unless the request's token has ``capability``."""
    if not acl_enabled(api):
        return
    await check_secret(api, request_token(), capability, unknown=unknown)


async def require_debug(api: Any, capability: str) -> None:
    """The debug-class rule of ``/host`` (agent:read) and ``/pprof`` (agent:write)."""
    await check_secret(api, request_token(), capability, debug=True)


async def check_secret(api: Any, secret: str, capability: str, *, debug: bool = False,
                       unknown: str = TOKEN_NOT_FOUND) -> None:
    """``require`` for an explicit secret (RPC ``AuthToken``); ``debug`` adds the enable_debug rule."""
    if not acl_enabled(api):
        if debug and not getattr(getattr(api, "config", None), "enable_debug", False):
            raise ApiError(403, PERMISSION_DENIED)
        return
    acl = await resolve_acl(api, secret, unknown=unknown)
    if not acl.allows(capability):
        raise ApiError(403, PERMISSION_DENIED)


async def resolve_acl(api: Any, secret: str, *, unknown: str = TOKEN_NOT_FOUND) -> ACL:
    """The merged rights of ``secret``; raises ApiError 403 when unknown or expired."""
    token, policies = await resolve_token(api, secret)
    if token is None:
        raise ApiError(403, unknown)
    if token_expired(token, time.time_ns()):
        raise ApiError(403, PERMISSION_DENIED if unknown == PERMISSION_DENIED else TOKEN_EXPIRED)
    if token.get("Type") == "management":
        return MANAGEMENT_ACL
    return _compile(api, policies)


async def resolve_token(api: Any, secret: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """``(token or None, its policy records)``; ``""`` resolves to the anonymous token.

    Raises ApiError(500) when a client-only agent cannot reach any server.
    """
    server = getattr(api, "server", None)
    if server is not None:
        return lookup_local(server.state, secret)
    client = getattr(api, "client", None)
    if client is None:
        raise ApiError(500, "no servers")
    return await _resolve_remote(api, client, secret)


def lookup_local(state: Any, secret: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Resolve ``secret`` in a ``StateStore`` (used by servers and by ``ACL.ResolveToken``)."""
    result = state.query({"Type": "acl_resolve", "SecretID": secret})
    return result["Token"], list(result["Policies"])


async def _resolve_remote(api: Any, client: Any, secret: str) -> tuple[dict[str, Any] | None,
                                                                     list[dict[str, Any]]]:
    from ..rpc import RpcError

    cache: dict[str, tuple[float, Any, list[Any]]] = _cache(api, "_acl_token_cache")
    now = trio.current_time()
    hit = cache.get(secret)
    if hit is not None and hit[0] > now:
        return hit[1], hit[2]
    try:
        answer = await client.call("ACL.ResolveToken", {"SecretID": secret})
    except RpcError as exc:
        raise ApiError(500, str(exc)) from None
    token, policies = answer.get("Token"), answer.get("Policies") or []
    if not isinstance(policies, list):
        raise ApiError(500, "rpc error: malformed ACL.ResolveToken answer")
    if token is not None:
        ttl = float(getattr(getattr(api, "config", None), "acl_token_ttl", 30.0))
        if len(cache) > 1024:
            cache.clear()
        cache[secret] = (now + ttl, token, policies)
    return token, policies


def _compile(api: Any, records: list[dict[str, Any]]) -> ACL:
    """Merge the token's policies, parsing each stored policy once per ModifyIndex."""
    parsed_cache: dict[tuple[str, int], Policy] = _cache(api, "_acl_policy_cache")
    parsed = []
    for record in records:
        key = (record["Name"], int(record.get("ModifyIndex", 0)))
        policy = parsed_cache.get(key)
        if policy is None:
            try:
                policy = parse_policy(record["Rules"])
            except PolicyError as exc:       # stored rules were checked on write: never expected
                log.error("stored acl policy does not parse name=%s error=%s", record["Name"], exc)
                continue
            if len(parsed_cache) > 1024:
                parsed_cache.clear()
            parsed_cache[key] = policy
        parsed.append(policy)
    return compile_acl(parsed)


def _cache(api: Any, name: str) -> dict[Any, Any]:
    cache = api.__dict__.get(name)
    if cache is None:
        cache = {}
        setattr(api, name, cache)
    return cache


def acl_enabled(api: Any) -> bool:
    """True when the agent has ``acl { enabled = true }`` (a facade without config: False)."""
    return bool(getattr(getattr(api, "config", None), "acl_enabled", False))
