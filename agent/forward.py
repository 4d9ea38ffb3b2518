"""Where a ``/host``, ``/pprof`` or ``/monitor`` request is answered (agent-api.md section 4).

``locate`` applies the routing rules to one agent's view and names the next hop:

* An agent running a client answers itself when no target is given (``/pprof`` on a
  client-only agent then profiles that agent, quirk Q7) or when ``node_id`` is its
  own node ID.
* A client-only agent sends everything else to one of its servers, which decides.
* A server first honours ``region`` (another region: any alive server of it, else
  ``No path to region``); then ``node_id`` (the node in the replicated state;
  unknown -> 404 ``Unknown node "<id>"``; down or without an rpc address -> 404
  ``No path to node``); then ``server_id`` (``leader``, or a member name or node ID
  of a server of the region; ``No cluster leader``, ``unknown Nomad server <v>``);
  with neither, it answers itself.

The caller then answers locally or sends the request with ``call`` to the target,
whose own handler runs ``locate`` again (a server named by ``leader`` that has just
lost leadership passes the request on). ``Hops`` in the RPC arguments bounds the
chain. Errors cross RPC hops as ``RPC Error:: <status>,<message>`` (Nomad's coded
RPC errors, agent-api.md 1.3) and turn back into ``ApiError`` at the HTTP edge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .http.api_errors import ApiError
from .rpc import RpcError, RpcUnavailable

__all__ = ["CLIENT", "LOCAL", "MAX_HOPS", "SERVER", "Target", "api_error", "call", "coded_error",
           "locate", "rpc_address"]

LOCAL, SERVER, CLIENT = "local", "server", "client"
MAX_HOPS = 4
"""Forwarding hops a request may take (client -> server -> other region -> leader -> node)."""
_CODED = re.compile(r"RPC Error:: (\d{3}),(.*)", re.DOTALL)


@dataclass(frozen=True)
class Target:
    """The agent that answers, as seen from this one."""

    kind: str            # "local" (this agent answers) | "server" | "client"
    rpc_address: str     # "ip:port" to dial ("" when local)
    agent_id: str        # server member name (name.region) or client node id ("" when not known yet)


def coded_error(status: int, message: str) -> RpcError:
    """An RPC error carrying an HTTP status across hops (``RPC Error:: 404,Unknown node ...``)."""
    return RpcError(f"RPC Error:: {status},{message}")


def api_error(exc: RpcError | ApiError | str, default_status: int = 500) -> ApiError:
    """agent-api.md 1.3 rules 2-3: a coded error keeps its status; ``Permission denied`` is 403."""
    if isinstance(exc, ApiError):
        return exc
    text = str(exc)
    match = _CODED.fullmatch(text)
    if match:
        return ApiError(int(match.group(1)), match.group(2))
    for ending in ("Permission denied", "ACL token not found"):
        if text.endswith(ending):
            return ApiError(403, ending)
    return ApiError(default_status, text)


def rpc_address(host: str, port: int) -> str:
    """``ip:port``, IPv6 bracketed."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _own_node_id(api: Any) -> str:
    client = getattr(api, "client", None)
    return client.node_id if client is not None else ""


async def locate(api: Any, *, server_id: str, node_id: str, region: str = "") -> Target:
    """The agent that should answer a request for ``server_id``/``node_id`` in ``region``.

    Empty strings mean "not given". Callers reject both targets together first.

    Raises:
        ApiError: 404 ``Unknown node "<id>"`` / ``No path to node``; 500 ``unknown
            Nomad server <v>``, ``No cluster leader``, ``No path to region``, ``no servers``.
    """
    config = api.config
    own_region = region in ("", config.region)
    client = getattr(api, "client", None)
    if client is not None and own_region and not server_id and node_id in ("", client.node_id):
        return Target(LOCAL, "", client.node_id if node_id else "")
    server = getattr(api, "server", None)
    if server is None:
        return _via_a_server(api)
    if not own_region:
        return _region_server(server, region)
    if node_id:
        return _node_target(server, node_id)
    if server_id:
        return _server_target(api, server, server_id)
    return Target(LOCAL, "", config.member_name)


def _via_a_server(api: Any) -> Target:
    """A client-only agent: the first server it knows decides (``call`` fails over to the next)."""
    client = getattr(api, "client", None)
    servers = client.servers() if client is not None else []
    if not servers:
        raise ApiError(500, "no servers")
    return Target(SERVER, servers[0], "")


def _region_server(server: Any, region: str) -> Target:
    """Any alive server of ``region`` (sorted by name: any of them can route further)."""
    for parts in server.servers():
        if parts.region == region and parts.is_alive:
            return Target(SERVER, rpc_address(parts.rpc_addr, parts.port), parts.name)
    raise ApiError(500, "No path to region")


def _node_target(server: Any, node_id: str) -> Target:
    try:
        answer = server.read_now({"Type": "node_get", "NodeID": node_id})
    except RpcError as exc:
        raise ApiError(500, str(exc)) from None
    node = answer.get("Node") if isinstance(answer, dict) else None
    if not isinstance(node, dict) or node.get("ID") != node_id:   # an exact ID, as Nomad's NodeByID
        raise ApiError(404, f'Unknown node "{node_id}"')
    address = node.get("RPCAddr")
    if node.get("Status") == "down" or not isinstance(address, str) or not address:
        raise ApiError(404, "No path to node")
    return Target(CLIENT, address, node_id)


def _server_target(api: Any, server: Any, server_id: str) -> Target:
    """Nomad's ``forwardFor``: ``leader`` or a member name / node ID of a server of this region."""
    config = api.config
    me = config.member_name
    servers = server.servers()
    if server_id == "leader":
        leader = server.leader_address()
        if not leader:
            raise ApiError(500, "No cluster leader")
        if leader == server.raft_address:
            return Target(LOCAL, "", me)
        for parts in servers:
            if parts.raft_address == leader:
                return Target(SERVER, rpc_address(parts.rpc_addr, parts.port), parts.name)
        return Target(SERVER, leader, "")   # a leader gossip has not shown us yet: its raft address
    target = None
    for parts in servers:
        if server_id in (parts.name, parts.id):
            if parts.region != config.region:
                raise ApiError(500, f"Requested server:{server_id} region:{parts.region} does not "
                                    f"exist in requested region: {config.region}")
            target = parts
    if target is None:
        raise ApiError(500, f"unknown Nomad server {server_id}")
    if target.name == me:
        return Target(LOCAL, "", me)
    return Target(SERVER, rpc_address(target.rpc_addr, target.port), target.name)


async def call(api: Any, target: Target, method: str, args: dict[str, Any], *,
               timeout: float) -> Any:
    """Send a forwarded agent call to ``target`` (never ``LOCAL``); errors become ``ApiError``.

    ``args["Hops"]`` is raised by one; past ``MAX_HOPS`` the request is refused. A
    client-only agent's relay goes through ``ClientRuntime.call`` (which fails over
    between its servers); an unreachable client node is 404 ``No path to node``.
    """
    assert target.kind != LOCAL, "a local target is answered, not called"
    hops = int(args.get("Hops") or 0) + 1
    if hops > MAX_HOPS:
        raise ApiError(500, f"forwarding stopped after {MAX_HOPS} hops")
    args = dict(args, Hops=hops)
    server = getattr(api, "server", None)
    client = getattr(api, "client", None)
    try:
        if server is None:
            if client is None:
                raise ApiError(500, "no servers")
            if target.kind == SERVER:
                return await client.call(method, args, timeout)
            return await client.pool.call(target.rpc_address, method, args, timeout)
        return await server.pool.call(target.rpc_address, method, args, timeout)
    except RpcUnavailable as exc:
        if target.kind == CLIENT:
            raise ApiError(404, "No path to node") from None
        raise ApiError(500, str(exc)) from None
    except RpcError as exc:
        raise api_error(exc) from None
