"""``AgentAPI``: the one facade the HTTP routes call; it reads and drives the agent.

Results are plain dicts in Nomad's key order, ready for JSON; failures are
``ApiError(status, message)`` which the routes write as plain text.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from ..join import join_addresses, multierror
from .api_errors import ApiError
from .jsontext import compact_json
from .sched_api import SchedulingMixin
from ..rpc import RpcError

if TYPE_CHECKING:
    from gossip.driver import GossipHandle
    from gossip.types import Member

    from ..config import AgentConfig
    from ..faults import FaultFilter
    from ..server import ServerRuntime

__all__ = ["AgentAPI", "ApiError", "member_json"]

log = logging.getLogger(__name__)


EMPTY_MEMBER: dict[str, Any] = {"Name": "", "Addr": None, "Port": 0, "Tags": None, "Status": "none",
                                "ProtocolMin": 0, "ProtocolMax": 0, "ProtocolCur": 0,
                                "DelegateMin": 0, "DelegateMax": 0, "DelegateCur": 0}
"""What a client-only agent reports as its member (agent-api.md 3.3.2)."""


def member_json(member: Member) -> dict[str, Any]:
    """One serf member as Nomad's ``/v1/agent/members`` writes it (agent-api.md 2.1)."""
    return {
        "Name": member.name,
        "Addr": member.addr,
        "Port": member.port,
        "Tags": dict(member.tags),
        "Status": str(member.status),
        "ProtocolMin": member.protocol_min,
        "ProtocolMax": member.protocol_max,
        "ProtocolCur": member.protocol_cur,
        "DelegateMin": member.delegate_min,
        "DelegateMax": member.delegate_max,
        "DelegateCur": member.delegate_cur,
    }


_MEMBER_TEXT: dict[tuple[Any, ...], str] = {}
_MEMBER_TEXT_LIMIT = 4096


def member_text(member: Member) -> str:
    """``member_json`` as compact JSON, cached by every field it shows.

    ``/v1/agent/members`` lists every member on each request while members seldom
    change; the key holds all the fields (tags in their order), so a cached text is
    always the one ``compact_json(member_json(member))`` would give.
    """
    key = (member.name, member.addr, member.port, tuple(member.tags.items()), member.status,
           member.protocol_min, member.protocol_max, member.protocol_cur,
           member.delegate_min, member.delegate_max, member.delegate_cur)
    text = _MEMBER_TEXT.get(key)
    if text is None:
        if len(_MEMBER_TEXT) >= _MEMBER_TEXT_LIMIT:
            _MEMBER_TEXT.clear()
        text = compact_json(member_json(member))
        _MEMBER_TEXT[key] = text
    return text


class ClusterMixin:
    """Status, operator raft, replicated state and fault endpoints (issue 3)."""

    server: ServerRuntime | None
    faults_filter: FaultFilter | None
    handle: GossipHandle | None

    def _server(self) -> ServerRuntime:
        if self.server is None:
            raise ApiError(500, "no servers")
        return self.server

    async def status_leader(self) -> str:
        return self._server().leader_address()

    async def status_peers(self) -> list[str]:
        return self._server().peer_addresses()

    async def raft_configuration(self, stale: bool) -> dict[str, Any]:
        server = self._server()
        if stale:
            return server.configuration_view()
        return await self._on_leader("Operator.RaftGetConfiguration", {},
                                     lambda _args: _wrap(server.configuration_view()), idempotent=True)

    async def raft_remove_peer(self, *, id: str | None, address: str | None) -> None:
        server = self._server()
        await self._on_leader("Operator.RaftRemovePeer", {"id": id or "", "address": address or ""},
                              server.local_remove_peer, idempotent=False)

    async def raft_transfer_leadership(self, *, id: str | None, address: str | None) -> None:
        server = self._server()
        await self._on_leader("Operator.TransferLeadership", {"id": id or "", "address": address or ""},
                              server.local_transfer, idempotent=False)

    async def state_apply(self, command: dict[str, Any]) -> dict[str, Any]:
        if self.server is None and getattr(self, "client", None) is not None:
            return await self._via_client("State.ApplyAny", command)
        server = self._server()
        return await self._on_leader("State.Apply", command, server.local_apply, idempotent=False)

    async def _via_client(self, method: str, args: Any) -> Any:
        """A client-only agent asks one of its servers, which forwards to the leader."""
        try:
            return await self.client.call(method, args)
        except RpcError as exc:
            raise ApiError(500, str(exc)) from None

    async def state_read(self, query: dict[str, Any], stale: bool) -> dict[str, Any]:
        if self.server is None and getattr(self, "client", None) is not None:
            return await self._via_client("State.ReadAny", query)
        server = self._server()
        if stale:
            try:
                return server.read_now(query)
            except RpcError as exc:
                raise ApiError(400, str(exc)) from None
        return await self._on_leader("State.Read", query, server.local_read, idempotent=True)

    async def _on_leader(self, method: str, args: Any, local: Any, *, idempotent: bool) -> Any:
        from raftlite.errors import RaftError

        from ..server import NoLeader

        try:
            return await self._server().on_leader(method, args, local, idempotent=idempotent)
        except (NoLeader, RpcError, RaftError) as exc:
            raise ApiError(500, str(exc)) from None

    def _filter(self) -> FaultFilter:
        if self.faults_filter is None:
            raise ApiError(403, "fault injection is disabled on this agent (start it with -fault-injection)")
        return self.faults_filter

    def faults(self) -> dict[str, Any] | None:
        rules = self._filter().rules
        return None if rules is None else rules.to_json()

    async def set_faults(self, body: Any) -> dict[str, Any]:
        """Put fault rules in force after refreshing the filter's address book: gossip
        members and client nodes on a server; a client-only agent asks a server for the
        members (RPC ``Agent.Members``), so partitions naming servers cut its calls."""
        from ..faults import FaultRules, FaultSpecError
        from ..runtime import fault_peer_names

        fault_filter = self._filter()
        try:
            rules = FaultRules.from_json(body)
        except FaultSpecError as exc:
            raise ApiError(400, str(exc)) from None
        if self.handle is not None:
            fault_filter.set_peers(fault_peer_names(self.handle, self.server))
        elif self.client is not None:
            await self._client_fault_peers(fault_filter)
        fault_filter.set_rules(rules)
        return rules.to_json()

    async def _client_fault_peers(self, fault_filter: FaultFilter) -> None:
        """Map the servers' gossip and rpc addresses to member names on a client-only agent."""
        assert self.client is not None
        try:   # RpcUnavailable is an RpcError
            answer = await self.client.call("Agent.Members", {"AuthToken": ""})
        except RpcError as exc:
            log.warning("fault filter keeps its address book: members unavailable error=%s", exc)
            return
        names: dict[str, str] = {}
        for member in answer.get("Members") or []:
            addr, name, tags = member.get("Addr"), member.get("Name"), member.get("Tags") or {}
            if not (isinstance(addr, str) and isinstance(name, str)):
                continue
            host = f"[{addr}]" if ":" in addr else addr
            names[f"{host}:{member.get('Port')}"] = name
            if str(tags.get("port", "")).isdigit():
                names[f"{host}:{tags['port']}"] = name
        fault_filter.set_peers(names)

    def clear_faults(self) -> None:
        self._filter().clear()


async def _wrap(value: Any) -> Any:
    return value


class AgentAPI(ClusterMixin, SchedulingMixin):
    """The agent as the HTTP layer sees it.

    Args:
        config: the agent's settings (names, ports, mode).
        handle: the running gossip driver, or None for a client-only agent.
    """

    def __init__(self, config: AgentConfig, handle: GossipHandle | None, *,
                 server: ServerRuntime | None = None, faults: FaultFilter | None = None,
                 client: Any = None) -> None:
        self.config = config
        self.client = client
        self.handle = handle
        self.server = server
        self.faults_filter = faults
        self.is_server = handle is not None
        self._started = trio.current_time() if _in_trio() else 0.0

    async def members(self, auth_token: str = "") -> dict[str, Any]:
        """``/v1/agent/members``: a server's own view; a client-only agent asks one of its
        servers (RPC ``Agent.Members``, which checks node:read on ``auth_token``)."""
        if self.handle is None:
            if self.client is None:
                raise ApiError(500, "no servers")
            from ..agent_info_rpc import api_error_from_rpc

            try:
                return await self.client.call("Agent.Members", {"AuthToken": auth_token})
            except RpcError as exc:
                raise api_error_from_rpc(str(exc)) from None
        return self.local_members()

    def local_members(self) -> dict[str, Any]:
        """This server's gossip members (agent-api.md 3.1)."""
        if self.handle is None:
            raise ApiError(500, "no servers")
        return {
            "ServerName": self.config.node,
            "ServerRegion": self.config.region,
            "ServerDC": self.config.datacenter,
            "Members": [member_json(member) for member in self.handle.members()],
        }

    async def members_body(self, auth_token: str = "") -> str:
        """``members`` as compact JSON; a server's own view is built from cached texts."""
        if self.handle is None:
            return compact_json(await self.members(auth_token))
        head = compact_json({"ServerName": self.config.node, "ServerRegion": self.config.region,
                             "ServerDC": self.config.datacenter})
        listed = ",".join(member_text(member) for member in self.handle.members())
        return f'{head[:-1]},"Members":[{listed}]}}'

    async def join(self, addresses: Sequence[str]) -> dict[str, Any]:
        if self.handle is None:
            raise ApiError(501, "Invalid method")
        num_joined, errors = await join_addresses(self.handle, addresses, self.config.serf_port)
        if num_joined > 0:
            log.info("join done addresses=%s num_joined=%d", ",".join(addresses), num_joined)
            return {"num_joined": num_joined, "error": ""}
        log.warning("join failed addresses=%s errors=%d", ",".join(addresses), len(errors))
        return {"num_joined": 0, "error": multierror(errors)}

    async def force_leave(self, node: str, prune: bool) -> None:
        if self.handle is None:
            raise ApiError(501, "Invalid method")
        known = any(member.name == node for member in self.handle.members())
        if not known:
            log.warning("force leave of unknown member name=%s", node)
        error = await self.handle.force_leave(node, prune)
        if error:
            raise ApiError(500, error)
        log.info("force leave done name=%s prune=%s", node, prune)

    def agent_self(self, *, encoded: bool = False) -> Any:
        """``/v1/agent/self`` (agent-api.md 3.3): the document, or its compact JSON text."""
        from .self_info import self_body, self_document

        member = (member_json(self.handle.local_member()) if self.handle is not None
                  else dict(EMPTY_MEMBER))
        node_id = self.server.node_id if self.server is not None else ""
        build = self_body if encoded else self_document
        return build(self.config, node_id, self.handle, self.server, member, self.client)


def _in_trio() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True
