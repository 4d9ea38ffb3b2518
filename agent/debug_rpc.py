"""``Agent.Host`` and ``Agent.Pprof``: the debug endpoints, answered here or passed on.

The HTTP routes (``agent/http/debug_routes.py``) and the RPC handlers share
``answer_host`` and ``answer_pprof``: each runs ``forward.locate`` on this agent,
checks the caller's token as this agent's role requires, then answers locally or
calls the next hop with the same arguments. RPC arguments are maps::

    {"AuthToken", "ServerID", "NodeID", "Region", "Hops",
     # Agent.Pprof only:
     "ReqType": "cmdline" | "profile" | "trace" | "lookup", "Profile", "Seconds", "Debug", "GC"}

Results: ``Agent.Host`` -> ``{"AgentID", "HostData"}``; ``Agent.Pprof`` ->
``{"Payload": bytes, "HTTPHeaders": {name: value}}``. Errors carry their HTTP
status as ``RPC Error:: <status>,<message>``.

ACL rules per hop (agent-api.md 1.5, 3.7, 3.9): host needs agent:read on every
server it passes, with ACLs off only where that server has ``enable_debug``; a
client-only target accepts it with ACLs off. pprof needs agent:write on every
server hop; the agent that profiles itself also needs debug allowed (ACLs off:
its own ``enable_debug``). An unknown token on pprof reads ``Permission denied``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import trio

from . import forward, pprof
from .forward import LOCAL, Target
from .hostinfo import host_data
from .http.api_errors import ApiError

__all__ = ["DebugRequest", "PprofRequest", "answer_host", "auth_module", "answer_pprof", "check_access",
           "pprof_from_args", "pprof_timeout", "request_from_args", "rpc_handlers"]

RPC_MARGIN = 10.0
"""Seconds an RPC may take beyond the profile's own duration, per hop still possible."""
HOST_TIMEOUT = 15.0
"""Seconds a forwarded host request may take (statvfs on a slow mount is the long part)."""


@dataclass(frozen=True)
class DebugRequest:
    """Who asks, and for which agent."""

    token: str = ""
    server_id: str = ""
    node_id: str = ""
    region: str = ""
    hops: int = 0

    def to_args(self) -> dict[str, Any]:
        return {"AuthToken": self.token, "ServerID": self.server_id, "NodeID": self.node_id,
                "Region": self.region, "Hops": self.hops}


@dataclass(frozen=True)
class PprofRequest:
    """What profile: ``kind`` is ``cmdline``, ``profile``, ``trace`` or ``lookup`` (of ``name``)."""

    kind: str
    name: str = ""
    seconds: int = 0
    debug: int = 0
    gc: int = 0

    def to_args(self) -> dict[str, Any]:
        return {"ReqType": self.kind, "Profile": self.name, "Seconds": self.seconds,
                "Debug": self.debug, "GC": self.gc}


def auth_module() -> Any:
    """``agent.http.auth`` (the ACL piece), or None while it is not installed."""
    try:
        from .http import auth
    except ModuleNotFoundError as exc:
        if exc.name != "agent.http.auth":
            raise
        return None
    return auth


async def check_access(api: Any, secret: str, capability: str, *, debug: bool,
                       unknown: str = "ACL token not found") -> None:
    """``auth.check_secret`` when the ACL module is present, else the ACLs-off rule.

    Raises:
        ApiError: 403 ``Permission denied`` (or the token-resolution texts of auth).
    """
    auth = auth_module()
    if auth is not None:
        await auth.check_secret(api, secret, capability, debug=debug, unknown=unknown)
        return
    # Without the ACL module no token can be verified: ACLs on refuses everything.
    if getattr(api.config, "acl_enabled", False) or (debug and not api.config.enable_debug):
        raise ApiError(403, "Permission denied")


def pprof_timeout(request: PprofRequest, hops: int) -> float:
    """How long to wait for a forwarded profile: its run time plus a margin per remaining hop."""
    running = pprof.profile_seconds(request.seconds) if request.kind in ("profile", "trace") else 0
    return running + RPC_MARGIN * max(forward.MAX_HOPS - hops, 1)


async def _locate(api: Any, request: DebugRequest) -> Target:
    return await forward.locate(api, server_id=request.server_id, node_id=request.node_id,
                                region=request.region)


async def answer_host(api: Any, request: DebugRequest, *, checked: bool = False) -> dict[str, Any]:
    """``{"AgentID", "HostData"}`` from the agent ``request`` names.

    ``checked``: the HTTP layer has already applied this agent's check (``require_debug``).
    """
    if not checked:
        # servers apply the debug rule; a client-only target accepts with ACLs off
        await check_access(api, request.token, "agent:read", debug=api.server is not None)
    target = await _locate(api, request)
    if target.kind == LOCAL:
        data = await trio.to_thread.run_sync(host_data)
        return {"AgentID": target.agent_id or _local_id(api, request), "HostData": data}
    args = request.to_args()
    return await forward.call(api, target, "Agent.Host", args, timeout=HOST_TIMEOUT)


def _local_id(api: Any, request: DebugRequest) -> str:
    """The answering agent's ID: its node ID when a node was asked for, else its member name."""
    if request.node_id and api.client is not None:
        return api.client.node_id
    if api.server is not None:
        return api.config.member_name
    return api.client.node_id if api.client is not None else ""


async def answer_pprof(api: Any, request: DebugRequest, profile: PprofRequest) -> pprof.Profile:
    """The profile from the agent ``request`` names (this one, or over RPC)."""
    target = await _locate(api, request)
    if target.kind == LOCAL:
        await check_access(api, request.token, "agent:write", debug=True, unknown="Permission denied")
        try:
            return await pprof.collect(profile.kind, profile.name, seconds=profile.seconds,
                                       debug=profile.debug, gc=profile.gc)
        except pprof.ProfileNotFound as exc:
            raise ApiError(404, str(exc)) from None
    if api.server is not None:   # a server on the way needs agent:write, not debug
        await check_access(api, request.token, "agent:write", debug=False, unknown="Permission denied")
    args = {**request.to_args(), **profile.to_args()}
    result = await forward.call(api, target, "Agent.Pprof", args,
                                timeout=pprof_timeout(profile, request.hops))
    return _profile_from(result)


def _profile_from(result: Any) -> pprof.Profile:
    if not isinstance(result, dict) or not isinstance(result.get("Payload"), bytes):
        raise ApiError(500, "rpc error: malformed pprof answer")
    headers = result.get("HTTPHeaders") or {}
    if not isinstance(headers, dict):
        raise ApiError(500, "rpc error: malformed pprof answer")
    return pprof.Profile(result["Payload"], {str(k): str(v) for k, v in headers.items()})


# --- RPC ---------------------------------------------------------------------------------


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise forward.coded_error(400, f"{key} must be a string")
    return value


def _int(args: dict[str, Any], key: str) -> int:
    value = args.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise forward.coded_error(400, f"{key} must be an integer")
    return value


def request_from_args(args: Any) -> DebugRequest:
    """The ``DebugRequest`` of RPC arguments; a malformed map is a coded 400."""
    if not isinstance(args, dict):
        raise forward.coded_error(400, "arguments must be a map")
    return DebugRequest(token=_text(args, "AuthToken"), server_id=_text(args, "ServerID"),
                        node_id=_text(args, "NodeID"), region=_text(args, "Region"),
                        hops=_int(args, "Hops"))


def pprof_from_args(args: dict[str, Any]) -> PprofRequest:
    kind = _text(args, "ReqType")
    if kind not in ("cmdline", "profile", "trace", "lookup"):
        raise forward.coded_error(404, "Unknown profile request type")
    return PprofRequest(kind=kind, name=_text(args, "Profile"), seconds=_int(args, "Seconds"),
                        debug=_int(args, "Debug"), gc=_int(args, "GC"))


def _coded(handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Turn the ``ApiError`` of a handler into a coded ``RpcError`` for the caller."""
    async def run(args: Any) -> Any:
        try:
            return await handler(args)
        except ApiError as exc:
            raise forward.coded_error(exc.status, exc.message) from None
    return run


def rpc_handlers(api: Any) -> dict[str, Callable[[Any], Any]]:
    """``Agent.Host`` and ``Agent.Pprof`` for ``agent/agent_rpc.py``."""
    async def host(args: Any) -> Any:
        return await answer_host(api, request_from_args(args))

    async def profile(args: Any) -> Any:
        request = request_from_args(args)
        result = await answer_pprof(api, request, pprof_from_args(args))
        return {"Payload": result.payload, "HTTPHeaders": dict(result.headers)}

    return {"Agent.Host": _coded(host), "Agent.Pprof": _coded(profile)}

