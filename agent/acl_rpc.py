"""The agent RPC method ``ACL.ResolveToken``: how a client-only agent checks tokens.

A client-only agent has no copy of the replicated state, so ``agent/http/auth.py``
sends ``{"SecretID": s}`` to one of its servers, which answers from its own state
(a stale read, like Nomad's ``ACL.ResolveToken``):
``{"Token": token | None, "Policies": [policy records]}``; ``""`` resolves to the
anonymous token with the ``anonymous`` policy when one exists. An agent without
state (a client-only agent asked in turn) resolves through its own servers.
"""

from __future__ import annotations

from typing import Any, Callable

from .rpc import RpcError

__all__ = ["rpc_handlers"]


def rpc_handlers(api: Any) -> dict[str, Callable[[Any], Any]]:
    """``{"ACL.ResolveToken": handler}`` for the agent RPC table."""

    async def resolve_token(args: Any) -> dict[str, Any]:
        from .http.api_errors import ApiError
        from .http.auth import resolve_token as resolve

        if not isinstance(args, dict) or not isinstance(args.get("SecretID"), str):
            raise RpcError("rpc error: ACL.ResolveToken needs a string SecretID")
        try:
            token, policies = await resolve(api, args["SecretID"])
        except ApiError as exc:
            raise RpcError(exc.message) from None
        return {"Token": token, "Policies": policies}

    return {"ACL.ResolveToken": resolve_token}
