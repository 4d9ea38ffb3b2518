"""The agent's own RPC methods (host, pprof, monitor, ACL token resolution), gathered.

Each module named in ``_MODULES`` has ``rpc_handlers(api) -> dict[str, handler]``;
the runtime installs the merged table on the server's rpc port and on a client-only
agent's rpc listener (docs/internals.md, "Agent RPC extensions").
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ["agent_rpc_handlers"]

_MODULES: tuple[str, ...] = ("agent.acl_rpc", "agent.agent_info_rpc", "agent.debug_rpc",
                             "agent.ui_rpc")


def agent_rpc_handlers(api: Any) -> dict[str, Callable[[Any], Any]]:
    handlers: dict[str, Callable[[Any], Any]] = {}
    for name in _MODULES:
        handlers.update(importlib.import_module(name).rpc_handlers(api))
    return handlers
