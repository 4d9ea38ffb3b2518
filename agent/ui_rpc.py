"""RPC methods behind the teaching UI (``/ui``, ``/v1/ui/state``, ``/v1/ui/chaos``).

* ``Agent.UIView {"AuthToken"}`` -> this server's row of the matrix
  (``ui_state.local_view``: ``Name``, ``Members`` {name: {Status, Incarnation, Addr,
  Kind}}, ``Raft`` {State, Term, Leader}, ``Workers`` {status: count}, ``Faults``
  {Enabled, Rules}); needs agent:read.
* ``Agent.UIState {"AuthToken"}`` -> the whole ``/v1/ui/state`` document gathered by
  the answering server; a client-only agent, which has no gossip view, relays its
  page's request here. Needs agent:read.
* ``Agent.UIFaults {"AuthToken", "Action", "Member", "Loss"}`` -> ``{"Rules"}``: the
  answering server merges the action into its own fault rules (``ui_state.chaos_rules``)
  and installs them, or clears them for ``heal``; needs agent:write and the answering
  agent's ``-fault-injection`` (else 403). ``Agent.UIChaos {"AuthToken", "Action",
  "Member", "Loss"}`` runs a whole chaos action from a server (the client relay).

Errors carry their HTTP status as ``RPC Error:: <status>,<message>``
(``agent_info_rpc.rpc_error_text``). ``apply_chaos`` is shared with the HTTP route.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Callable

import trio

from .agent_info_rpc import api_error_from_rpc, carried_api_errors, rpc_auth_token, rpc_error_text
from .http.api_errors import ApiError
from .rpc import RpcError
from .ui_state import CHAOS_ACTIONS, ChaosError, chaos_rules, chaos_targets, gather_state, local_view

__all__ = ["rpc_handlers", "apply_chaos", "local_faults", "settled", "CHAOS_TIMEOUT"]

log = logging.getLogger(__name__)

CHAOS_TIMEOUT = 5.0
"""Seconds one server may take to install a chaos rule."""


def _chaos_args(args: Any, method: str) -> tuple[str, str, float]:
    action = args.get("Action") if isinstance(args, dict) else None
    member = args.get("Member", "") if isinstance(args, dict) else ""
    loss = args.get("Loss", 0.0) if isinstance(args, dict) else 0.0
    if (action not in CHAOS_ACTIONS or not isinstance(member, str)
            or not isinstance(loss, (int, float)) or isinstance(loss, bool) or not 0 <= loss <= 1):
        raise RpcError(f"rpc error: {method} needs Action in {CHAOS_ACTIONS}, a Member and a Loss in [0, 1]")
    return action, member, float(loss)


async def settled(value: Any) -> Any:
    """``value``, awaited when the facade method returned an awaitable (sync or async facades)."""
    return await value if inspect.isawaitable(value) else value


async def local_faults(api: Any, action: str, member: str, loss: float) -> dict[str, Any] | None:
    """Merge ``action`` into this agent's fault rules; the rules now in force (None: none).

    Raises:
        ApiError: 403 when fault injection is off here, 400 for rules the filter refuses.
    """
    current = await settled(api.faults())   # raises the 403 when fault injection is off
    rules = chaos_rules(current, action, member, loss)
    if rules is None:
        await settled(api.clear_faults())
        log.info("ui chaos healed node=%s", api.config.member_name)
        return None
    installed = await settled(api.set_faults(rules))
    log.info("ui chaos applied action=%s member=%s node=%s", action, member, api.config.member_name)
    return installed


async def apply_chaos(api: Any, token: str, action: str, member: str, loss: float) -> dict[str, Any]:
    """Run one UI chaos action on every server it concerns (``ui_state.chaos_targets``).

    The serving agent's own rules change first, the others' over RPC at once.

    Returns:
        ``{"Action", "Member", "Applied": [names], "Failed": {name: error}}``.

    Raises:
        ApiError: 403 when fault injection is off on the serving agent, 400 for a
            member the action cannot apply to.
    """
    from .forward import rpc_address

    server = api.server
    me = api.config.member_name
    await settled(api.faults())   # 403 first, before any server is touched
    # heal also tries servers this agent sees failed: a rule may be what cut them off
    parts = {p.name: p for p in server.servers()
             if p.is_alive or (action == "heal" and p.status != "left")}
    try:
        targets = chaos_targets(action, member, me, parts)
    except ChaosError as exc:
        raise ApiError(400, str(exc)) from None
    applied: list[str] = []
    failed: dict[str, str] = {}
    if targets and targets[0] == me:
        await local_faults(api, action, member, loss)
        applied.append(me)
        targets = targets[1:]

    async def remote(name: str) -> None:
        p = parts[name]
        try:
            await server.pool.call(rpc_address(p.rpc_addr, p.port), "Agent.UIFaults",
                                   {"AuthToken": token, "Action": action, "Member": member,
                                    "Loss": loss}, CHAOS_TIMEOUT)
        except RpcError as exc:
            failed[name] = api_error_from_rpc(str(exc)).message
        else:
            applied.append(name)

    async with trio.open_nursery() as nursery:
        for name in targets:
            nursery.start_soon(remote, name)
    return {"Action": action, "Member": member, "Applied": sorted(applied),
            "Failed": dict(sorted(failed.items()))}


def rpc_handlers(api: Any) -> dict[str, Callable[[Any], Any]]:
    """``Agent.UIView``, ``Agent.UIState``, ``Agent.UIFaults`` and ``Agent.UIChaos``."""
    from .http.auth import check_secret

    def _server_only(method: str) -> None:
        if getattr(api, "handle", None) is None or getattr(api, "server", None) is None:
            raise RpcError(rpc_error_text(400, f"{method} is answered by servers only"))

    async def ui_view(args: Any) -> dict[str, Any]:
        token = rpc_auth_token(args, "Agent.UIView")
        _server_only("Agent.UIView")
        with carried_api_errors():
            await check_secret(api, token, "agent:read")
        return local_view(api)

    async def ui_state(args: Any) -> dict[str, Any]:
        token = rpc_auth_token(args, "Agent.UIState")
        _server_only("Agent.UIState")
        with carried_api_errors():
            await check_secret(api, token, "agent:read")
        return await gather_state(api, token)

    async def ui_faults(args: Any) -> dict[str, Any]:
        token = rpc_auth_token(args, "Agent.UIFaults")
        action, member, loss = _chaos_args(args, "Agent.UIFaults")
        with carried_api_errors():
            await check_secret(api, token, "agent:write")
            return {"Rules": await local_faults(api, action, member, loss)}

    async def ui_chaos(args: Any) -> dict[str, Any]:
        token = rpc_auth_token(args, "Agent.UIChaos")
        action, member, loss = _chaos_args(args, "Agent.UIChaos")
        _server_only("Agent.UIChaos")
        with carried_api_errors():
            await check_secret(api, token, "agent:write")
            return await apply_chaos(api, token, action, member, loss)

    return {"Agent.UIView": ui_view, "Agent.UIState": ui_state, "Agent.UIFaults": ui_faults,
            "Agent.UIChaos": ui_chaos}
