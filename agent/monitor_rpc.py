"""``Agent.Monitor``: the streaming RPC behind a forwarded ``/v1/agent/monitor``.

``open_monitor`` is the one routing step both ends share: it runs
``agent.forward.locate`` (agent-api.md section 4) and either subscribes to this agent's
own log or opens a stream (``agent.rpc_stream.open_stream``) to the next hop with:

    {"AuthToken": str, "LogLevel": str, "LogJSON": bool, "LogIncludeLocation": bool,
     "PlainText": bool, "ServerID": str, "NodeID": str, "Region": str, "Hops": int}

and relays its chunks unchanged. The HTTP route calls it after its own checks; the
``Agent.Monitor`` handler calls it on every hop after re-checking agent:read with the
caller's token (section 1.5; an unknown secret is ``Permission denied`` on a server,
agent-api.md 11 Q3, and ``ACL token not found`` on a client). A client-only agent
sends any targeted request to one of its servers, which locates the target again;
``Hops`` bounds the chain (``agent.forward.MAX_HOPS``).

What the target streams are exactly the bytes its own HTTP route would write: frames,
or raw lines with ``PlainText``. Refusals travel back as ``StreamRefused(status,
message)`` and become the HTTP answer; an unreachable client node is 404 ``No path to
node``, another unreachable agent 500 with the RPC error text (as ``forward.call``).
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from .http.api_errors import ApiError
from .logfmt import parse_monitor_level
from .monitor import get_broadcaster, monitor_chunks
from .rpc import RpcUnavailable, StreamHandler
from .rpc_stream import RpcStream, StreamRefused, open_stream

__all__ = ["MONITOR_METHOD", "open_monitor", "stream_handlers"]

MONITOR_METHOD = "Agent.Monitor"


async def _relay(stream: RpcStream) -> AsyncIterator[bytes]:
    """Copy a forwarded stream's chunks; close it when the consumer stops."""
    try:
        async for chunk in stream:
            yield chunk
    finally:
        await stream.aclose()


async def open_monitor(api: Any, *, token: str, level_text: str, json: bool,
                       include_location: bool, plain: bool, server_id: str = "",
                       node_id: str = "", region: str = "", hops: int = 0) -> AsyncIterator[bytes]:
    """The chunks of a monitor stream for this request, from here or from its target.

    Raises:
        ApiError: an unknown level, a lookup failure of ``locate``, a refusal by the
            next hop (its status and text), an unreachable hop, too many hops.
    """
    level = parse_monitor_level(level_text or "info")
    if level is None:
        raise ApiError(400, f"Unknown log level: {level_text}")
    from . import forward   # the forwarding piece; imported at use

    target = await forward.locate(api, server_id=server_id, node_id=node_id, region=region)
    if target.kind == forward.LOCAL:
        subscription = get_broadcaster().subscribe(level, json=json, include_location=include_location)
        return monitor_chunks(subscription, plain=plain)
    if hops + 1 > forward.MAX_HOPS:
        raise ApiError(500, f"forwarding stopped after {forward.MAX_HOPS} hops")
    pool = api.server.pool if getattr(api, "server", None) is not None else api.client.pool
    args = {"AuthToken": token, "LogLevel": level_text, "LogJSON": json,
            "LogIncludeLocation": include_location, "PlainText": plain,
            "ServerID": server_id, "NodeID": node_id, "Region": region, "Hops": hops + 1}
    try:
        stream = await open_stream(target.rpc_address, MONITOR_METHOD, args, local_ip=pool.local_ip,
                                   tls=getattr(pool, "tls", None), fault_hook=pool.fault_hook)
    except StreamRefused as exc:
        raise ApiError(exc.code, exc.message) from None
    except RpcUnavailable as exc:
        if target.kind == forward.CLIENT:
            raise ApiError(404, "No path to node") from None
        raise ApiError(500, str(exc)) from None
    return _relay(stream)


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key) or ""
    if not isinstance(value, str):
        raise StreamRefused(400, f"invalid monitor request: {key}")
    return value


def stream_handlers(api: Any) -> dict[str, StreamHandler]:
    """The streaming methods of this module, for ``RpcServer.stream_handlers``."""

    async def monitor(args: Any) -> AsyncIterator[bytes]:
        if not isinstance(args, dict):
            raise StreamRefused(400, "invalid monitor request")
        hops = args.get("Hops") or 0
        if not isinstance(hops, int):
            raise StreamRefused(400, "invalid monitor request: Hops")
        from .http import auth   # the ACL piece; imported at use like the routes do

        unknown = auth.PERMISSION_DENIED if api.is_server else auth.TOKEN_NOT_FOUND
        try:
            await auth.check_secret(api, _text(args, "AuthToken"), "agent:read", unknown=unknown)
            return await open_monitor(
                api, token=_text(args, "AuthToken"), level_text=_text(args, "LogLevel"),
                json=bool(args.get("LogJSON")), include_location=bool(args.get("LogIncludeLocation")),
                plain=bool(args.get("PlainText")), server_id=_text(args, "ServerID"),
                node_id=_text(args, "NodeID"), region=_text(args, "Region"), hops=hops)
        except ApiError as exc:
            raise StreamRefused(exc.status, exc.message) from None

    return {MONITOR_METHOD: monitor}
