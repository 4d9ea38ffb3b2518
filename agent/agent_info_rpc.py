"""Agent RPC methods behind ``/v1/agent/members`` and ``/v1/agent/health``.

* ``Agent.Members {"AuthToken"}`` -> the answering server's ``/v1/agent/members``
  object. A client-only agent has no gossip view of its own: it sends the request to
  one of its servers and returns that server's answer (agent-api.md 1.6, 3.1). The
  server checks ``node:read`` on the token it was given, as Nomad's server does
  (an unknown secret is ``Permission denied`` there).
* ``Agent.Leader {}`` -> the leader's raft address, answered only by the leader once
  it can serve consistent reads; other servers answer ``NOT_LEADER`` so the caller's
  ``ServerRuntime.on_leader`` finds the leader and retries (the health check of 3.6).

HTTP status across the hop: an ``ApiError`` raised by a handler travels as the error
text ``RPC Error:: <status>,<message>`` (the form Nomad's RPC errors use, 1.3 rule 2)
and ``api_error_from_rpc`` turns it back into the same ``ApiError`` on the caller.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from .rpc import NOT_LEADER, RpcError

__all__ = ["rpc_handlers", "rpc_error_text", "api_error_from_rpc", "carried_api_errors",
           "rpc_auth_token", "NOT_READY"]

_PREFIX = "RPC Error:: "
NOT_READY = "Not ready to serve consistent reads"


def rpc_error_text(status: int, message: str) -> str:
    """The error text that carries an HTTP ``status`` across an RPC hop."""
    return f"{_PREFIX}{status},{message}"


@contextlib.contextmanager
def carried_api_errors() -> Iterator[None]:
    """In an RPC handler: an ``ApiError`` raised inside leaves as the ``RpcError`` carrying it."""
    from .http.api_errors import ApiError

    try:
        yield
    except ApiError as exc:
        raise RpcError(rpc_error_text(exc.status, exc.message)) from None


def rpc_auth_token(args: Any, method: str) -> str:
    """The ``AuthToken`` of an RPC request ("" when absent); RpcError when not a string."""
    token = args.get("AuthToken", "") if isinstance(args, dict) else ""
    if not isinstance(token, str):
        raise RpcError(f"rpc error: {method} needs a string AuthToken")
    return token


def api_error_from_rpc(text: str, default_status: int = 500) -> Any:
    """The ``ApiError`` for an RPC error text: its carried status, else ``default_status``."""
    from .http.api_errors import ApiError

    if text.startswith(_PREFIX):
        code, sep, message = text[len(_PREFIX):].partition(",")
        if sep and code.isascii() and code.isdigit():
            return ApiError(int(code), message)
    return ApiError(default_status, text)


def rpc_handlers(api: Any) -> dict[str, Callable[[Any], Any]]:
    """``{"Agent.Members": ..., "Agent.Leader": ...}`` for the agent RPC table."""

    async def members(args: Any) -> dict[str, Any]:
        from .http.auth import PERMISSION_DENIED, check_secret

        token = rpc_auth_token(args, "Agent.Members")
        with carried_api_errors():
            await check_secret(api, token, "node:read", unknown=PERMISSION_DENIED)
            return api.local_members()

    async def leader(_args: Any) -> str:
        from raftlite.errors import NotLeader

        if api.server is None:
            raise RpcError(NOT_LEADER)
        try:
            return await consistent_leader(api.server)
        except NotLeader:
            raise RpcError(NOT_LEADER) from None

    return {"Agent.Members": members, "Agent.Leader": leader}


async def consistent_leader(server: Any) -> str:
    """This server's raft address if it leads and can serve consistent reads.

    Raises:
        NotLeader: it does not lead (``on_leader`` then looks for the leader again).
        RpcError: ``Not ready to serve consistent reads`` when the leader has not
            applied an entry of its own term within the hold timeout.
    """
    from raftlite.driver import CommitTimeout

    from .server import HOLD_TIMEOUT

    try:
        await server.raft.read_barrier(HOLD_TIMEOUT)
    except CommitTimeout:
        raise RpcError(NOT_READY) from None
    return server.leader_address()
