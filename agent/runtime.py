"""The running agent: one nursery owning the gossip driver, the HTTP server and joins.

``AgentRuntime.run`` binds the gossip and HTTP sockets first (so a port in use is a
clean startup error), builds the ``GossipCore`` with the bound port and the server
tags, starts the driver and hypercorn, performs ``-join`` (fatal when nobody
answers), starts ``-retry-join``, and reports readiness. Facts from the gossip core
are consumed by one task: member changes and user events are logged, user queries
are answered with this node's member name, and ``ShutdownRequested`` stops the agent.

Signals follow Nomad: SIGINT with ``leave_on_interrupt`` (SIGTERM with
``leave_on_terminate``) leaves gracefully and exits 0 (1 if the leave timed out or a
second signal came); otherwise the agent exits 1 at once without leaving.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from gossip.config import GossipConfig
from gossip.driver import GossipHandle, open_gossip_sockets
from gossip.events import (MemberFailed, MemberJoined, MemberLeft, MemberReaped, MemberUpdated,
                           Output, QueryReceived, ShutdownRequested, UserEventReceived)

from . import __version__, revision
from .config import AgentConfig, server_tags
from .http.api import AgentAPI
from .join import join_addresses, multierror
from .http.app import create_app
from raftlite.errors import StorageCorrupt

from .faults import FaultFilter
from .identity import IdentityError, load_or_create_uuid
from .client import ClientRuntime, ClientStateError, format_address
from .rpc import RpcPool, RpcServer
from .server import ServerRuntime
from .tlsutil import HttpTLS, RpcTLS, TLSConfigError, http_ssl_config, rpc_tls as build_rpc_tls

__all__ = ["AgentRuntime", "RunningAgent", "StartupError", "fault_peer_names", "load_node_id",
           "node_peer_names"]

log = logging.getLogger(__name__)

_FACT_BUFFER = 4096
_LEAVE_MARGIN = 5.0
"""Seconds allowed for a graceful leave beyond Serf's broadcast timeout + propagate delay."""


_EVENT_KINDS: dict[type, str] = {MemberJoined: "joined", MemberLeft: "left", MemberFailed: "failed",
                                 MemberUpdated: "updated", MemberReaped: "reaped"}


def peer_names(members: Any) -> dict[str, str]:
    """Addresses the fault filter may see for each member: gossip ``ip:port`` and rpc ``ip:port``."""
    names: dict[str, str] = {}
    for member in members:
        host = f"[{member.addr}]" if ":" in member.addr else member.addr
        names[f"{host}:{member.port}"] = member.name
        port = member.tags.get("port", "")
        if port.isdigit():
            names[f"{host}:{port}"] = member.name
    return names


def node_peer_names(nodes: Any) -> dict[str, str]:
    """Addresses of client nodes for the fault filter: Node ``HTTPAddr``/``RPCAddr`` -> ``Name``.

    Clients are no gossip members, so partitions name them by node name; a server's
    filter learns their addresses from the replicated Node records.
    """
    names: dict[str, str] = {}
    for node in nodes:
        name = node.get("Name") or node.get("ID")
        for key in ("HTTPAddr", "RPCAddr"):
            address = node.get(key)
            if isinstance(address, str) and address and isinstance(name, str) and name:
                names[address] = name
    return names


def fault_peer_names(handle: Any, server: Any) -> dict[str, str]:
    """The fault filter's address book on a server: client nodes, then gossip members
    (a gossip member wins an address both claim)."""
    names: dict[str, str] = {}
    if server is not None:
        listed = server.read_now({"Type": "node_list"}).get("Nodes", [])
        records = [server.read_now({"Type": "node_get", "NodeID": stub["ID"]}).get("Node")
                   for stub in listed]
        names.update(node_peer_names(r for r in records if isinstance(r, dict)))
    if handle is not None:
        names.update(peer_names(handle.members()))
    return names


class StartupError(Exception):
    """The agent cannot start (port in use, bad data dir...): one line, exit 1."""


@dataclass(frozen=True)
class RunningAgent:
    """What ``AgentRuntime.run`` reports once it serves."""

    name: str
    node_id: str
    http_address: tuple[str, int]
    serf_address: tuple[str, int] | None
    gossip_profile: str
    handle: GossipHandle | None
    api: AgentAPI


def load_node_id(config: AgentConfig) -> str:
    """The server's node id: kept in ``<data_dir>/server/node-id``; random in -dev or without a data dir."""
    path = None if config.dev or not config.data_dir else Path(config.data_dir) / "server" / "node-id"
    try:
        return load_or_create_uuid(path)
    except IdentityError as exc:
        raise StartupError(str(exc)) from None


def load_tls(config: AgentConfig) -> tuple[HttpTLS | None, RpcTLS | None]:
    """The ``tls`` block's HTTPS settings and rpc contexts; a bad file is a StartupError."""
    try:
        return http_ssl_config(config), build_rpc_tls(config)
    except TLSConfigError as exc:
        raise StartupError(str(exc)) from None


def _bind_http(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise StartupError(f"Error starting HTTP server on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class AgentRuntime:
    """One `shoal agent` process's wiring.

    Args:
        config: the parsed flags.
        gossip_overrides: GossipConfig fields to override (tests shorten timings).
        handle_signals: install SIGINT/SIGTERM handling (only in the main thread).
    """

    def __init__(self, config: AgentConfig, *, gossip_overrides: dict[str, Any] | None = None,
                 handle_signals: bool = False) -> None:
        self.config = config
        self.gossip_config = GossipConfig.named(config.gossip_profile, **(gossip_overrides or {}))
        self.handle_signals = handle_signals
        self.handle: GossipHandle | None = None
        self.server: ServerRuntime | None = None
        self.client: ClientRuntime | None = None
        self.faults: FaultFilter | None = None
        self.http_tls: HttpTLS | None = None
        self.rpc_tls: RpcTLS | None = None
        """With ``tls.rpc``: every rpc listener and pool of this agent uses these contexts."""
        self._exit_code: int | None = None
        self._exit = trio.Event()
        self._facts_send, self._facts_receive = trio.open_memory_channel[Output](_FACT_BUFFER)

    def request_exit(self, code: int) -> None:
        """Stop the agent with exit status ``code`` (the first request wins)."""
        if self._exit_code is None:
            self._exit_code = code
        self._exit.set()

    async def run(self, *, task_status: trio.TaskStatus[RunningAgent] = trio.TASK_STATUS_IGNORED
                  ) -> int:
        """Run until a signal, a shutdown request or ``request_exit``; returns the exit status."""
        config = self.config
        node_id = load_node_id(config)
        self.http_tls, self.rpc_tls = load_tls(config)
        rpc_tls = self.rpc_tls
        http_sock = _bind_http(config.bind, config.http_port)
        sockets = None
        rpc_listener = None
        try:
            if config.is_server:
                rpc_listener = await self._bind_rpc()
                if config.rpc_port == 0:  # port 0 (tests): advertise the port the kernel chose
                    config = self.config = replace(config, rpc_port=rpc_listener.socket.getsockname()[1])
                try:
                    sockets = await open_gossip_sockets((config.bind, config.serf_port))
                except OSError as exc:
                    raise StartupError(f"Error starting gossip on {config.bind}:{config.serf_port}: "
                                       f"{exc.strerror or exc}") from None
                self.handle = self._build_gossip(node_id, sockets.port)
                try:
                    self.server = ServerRuntime(config, node_id, self.handle, rpc_tls=rpc_tls)
                except (StorageCorrupt, OSError) as exc:
                    raise StartupError(f"Error loading raft state from {config.data_dir}/raft: "
                                       f"{exc}") from None
            elif config.is_client:   # client-only: its rpc port serves the agent RPC extensions
                rpc_listener = await self._bind_rpc()
                if config.rpc_port == 0:
                    config = self.config = replace(config, rpc_port=rpc_listener.socket.getsockname()[1])
        except BaseException:
            http_sock.close()
            if rpc_listener is not None:
                await rpc_listener.aclose()
            if sockets is not None:
                await sockets.aclose()
            raise
        if self.handle is not None:
            if config.raft_protocol == 2:
                log.warning("raft_protocol 2 is deprecated: servers are identified by address; "
                            "set raft_protocol = 3")
        if config.fault_injection:
            # a client-only agent is no gossip member: partitions name it by node name
            self.faults = FaultFilter(config.member_name if config.is_server else config.node,
                                      random.Random(os.urandom(8)))
        client_pool = None
        if config.is_client:
            client_pool = self.server.pool if self.server is not None else RpcPool(
                local_ip=None if config.bind in ("0.0.0.0", "::") else config.bind, tls=rpc_tls)
            try:
                self.client = self._build_client(client_pool)
            except (ClientStateError, ValueError) as exc:
                http_sock.close()
                if self.server is None and rpc_listener is not None:
                    await rpc_listener.aclose()
                raise StartupError(f"Error starting client: {exc}") from None
        api = AgentAPI(config, self.handle, server=self.server, faults=self.faults, client=self.client)
        if self.server is not None:
            from .agent_rpc import agent_rpc_handlers
            self.server.rpc.handlers.update(agent_rpc_handlers(api))
            from .monitor_rpc import stream_handlers
            self.server.rpc.stream_handlers.update(stream_handlers(api))
        client_rpc = None if self.server is not None else _client_rpc_server(api, rpc_tls)
        async with trio.open_nursery() as nursery:
            if self.handle is not None and sockets is not None:
                if self.faults is not None:
                    self.handle.set_fault_hook(self.faults)
                await nursery.start(self.handle.run, sockets)
                nursery.start_soon(self._consume_facts)
            if self.server is not None and rpc_listener is not None:
                if self.faults is not None:
                    self.server.install_fault_hook(self.faults)
                await nursery.start(self.server.run, rpc_listener)
            if self.client is not None and client_pool is not None:
                if self.server is None:
                    client_pool.fault_hook = self.faults   # its calls to servers pass the filter
                    await nursery.start(client_pool.run)
                await nursery.start(self.client.run)
            if client_rpc is not None and rpc_listener is not None:
                client_rpc.fault_hook = self.faults
                await nursery.start(client_rpc.serve, rpc_listener)
            http_address = await nursery.start(self._serve_http, api, http_sock)
            if self.handle_signals:
                await nursery.start(self._watch_signals)
            if config.join and not await self._startup_join():
                self.request_exit(1)
            if config.retry_join and self._exit_code is None:
                nursery.start_soon(self._retry_join)
            serf_address = None if sockets is None else (config.advertise, sockets.port)
            task_status.started(RunningAgent(
                name=config.member_name, node_id=node_id, http_address=http_address,
                serf_address=serf_address, gossip_profile=self.gossip_config.profile,
                handle=self.handle, api=api))
            await self._exit.wait()
            nursery.cancel_scope.cancel()
        assert self._exit_code is not None
        return self._exit_code

    def _build_client(self, pool: RpcPool) -> ClientRuntime:
        config = self.config
        servers = list(config.servers)
        if config.is_server:   # -dev, or server+client: the client talks to its own server
            servers = servers or [f"{config.advertise}:{config.rpc_port}"]
        resources = None
        if config.cpu_total_compute or config.memory_total_mb:
            from .client import host_resources
            detected = host_resources()
            resources = {"CPU": config.cpu_total_compute or detected["CPU"],
                         "MemoryMB": config.memory_total_mb or detected["MemoryMB"]}
        seed = int.from_bytes(os.urandom(8), "big")
        return ClientRuntime(config, pool=pool, servers=servers,
                             data_dir=None if config.dev else (config.data_dir or None),
                             node_name=config.node, datacenter=config.datacenter,
                             node_class=config.node_class, meta=dict(config.meta), resources=resources,
                             http_addr=f"{config.advertise}:{config.http_port}",
                             rpc_addr=format_address(config.advertise, config.rpc_port),
                             rng=random.Random(f"{seed}/{config.node}/client"))

    async def _bind_rpc(self) -> trio.SocketListener:
        config = self.config
        try:
            listeners = await trio.open_tcp_listeners(config.rpc_port, host=config.bind)
        except OSError as exc:
            raise StartupError(f"Error starting RPC server on {config.bind}:{config.rpc_port}: "
                               f"{exc.strerror or exc}") from None
        return listeners[0]

    def _build_gossip(self, node_id: str, port: int) -> GossipHandle:
        from gossip.core import GossipCore  # the core is another module's; import at use
        from gossip.keyring import Keyring

        config = self.config
        name = config.member_name
        keyring = Keyring([config.encrypt], os.urandom) if config.encrypt is not None else None
        seed = int.from_bytes(os.urandom(8), "big")
        log.debug("gossip rng seed=%d", seed)
        tags = server_tags(config, node_id=node_id, build=__version__, revision=revision())
        core = GossipCore(self.gossip_config, name=name, addr=config.advertise, port=port,
                          tags=tags, keyring=keyring, rng=random.Random(f"{seed}/{name}/gossip"),
                          entropy=os.urandom,
                          log=logging.LoggerAdapter(logging.getLogger("gossip"), {"node": name}),
                          now=trio.current_time())
        return GossipHandle(core, self.gossip_config, on_fact=self._on_fact)

    def _on_fact(self, fact: Output) -> None:
        try:
            self._facts_send.send_nowait(fact)
        except trio.WouldBlock:
            log.warning("gossip fact dropped: agent too slow fact=%s", type(fact).__name__)

    async def _consume_facts(self) -> None:
        async for fact in self._facts_receive:
            self._handle_fact(fact)

    def _handle_fact(self, fact: Output) -> None:
        member_events = {MemberJoined: "member joined", MemberLeft: "member left",
                         MemberFailed: "member failed", MemberUpdated: "member updated",
                         MemberReaped: "member reaped"}
        if type(fact) in member_events:
            member = fact.member  # type: ignore[union-attr]
            if self.server is not None:
                self.server.member_event(_EVENT_KINDS[type(fact)], member)
            if self.faults is not None and self.handle is not None:
                self.faults.set_peers(fault_peer_names(self.handle, self.server))
            # the gossip core logs these at INFO already
            log.debug("%s name=%s addr=%s:%d", member_events[type(fact)], member.name,
                      member.addr, member.port)
        elif isinstance(fact, UserEventReceived):
            log.debug("user event received name=%s ltime=%d", fact.name, fact.ltime)
        elif isinstance(fact, QueryReceived):
            log.debug("query received name=%s from=%s ltime=%d", fact.name, fact.source_node,
                      fact.ltime)
            # shoal answers every user query with its member name.
            assert self.handle is not None
            self.handle.respond_query(fact.handle, self.config.member_name.encode())
        elif isinstance(fact, ShutdownRequested):
            log.error("gossip requested shutdown reason=%s", fact.reason)
            self.request_exit(1)
        else:
            log.debug("gossip fact %s", fact)

    async def _serve_http(self, api: AgentAPI, http_sock: socket.socket, *,
                          task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
                          ) -> None:
        address = http_sock.getsockname()[:2]
        hconfig = HypercornConfig()
        hconfig.bind = [f"fd://{http_sock.detach()}"]  # hypercorn adopts our bound socket
        hconfig.accesslog = None
        hconfig.errorlog = logging.getLogger("hypercorn.error")
        hconfig.graceful_timeout = 1.0
        hconfig.include_server_header = False
        if self.http_tls is not None:   # tls.http: the adopted socket serves HTTPS only
            hconfig.certfile = self.http_tls.certfile
            hconfig.keyfile = self.http_tls.keyfile
            hconfig.ca_certs = self.http_tls.ca_certs
            hconfig.verify_mode = self.http_tls.verify_mode
            # HTTP/1.1 only: the API's streams (monitor, pprof) and headers behave as over
            # plain HTTP, and h2's hpack does not log every header at DEBUG.
            hconfig.alpn_protocols = ["http/1.1"]
        app = create_app(api)
        await serve(app, hconfig, shutdown_trigger=trio.sleep_forever,  # type: ignore[arg-type]
                    task_status=_Adapt(task_status, address))

    async def _startup_join(self) -> bool:
        assert self.handle is not None, "-join needs -server"
        log.info("joining cluster addresses=%s", ",".join(self.config.join))
        num_joined, errors = await join_addresses(self.handle, self.config.join, self.config.serf_port)
        if num_joined == 0:
            log.error("join failed error=%r", multierror(errors))
            return False
        log.info("join completed num_joined=%d", num_joined)
        return True

    async def _retry_join(self) -> None:
        assert self.handle is not None, "-retry-join needs -server"
        attempt = 0
        while True:
            num_joined, errors = await join_addresses(self.handle, self.config.retry_join,
                                                      self.config.serf_port)
            if num_joined > 0:
                log.info("retry join completed initial_servers=%d", num_joined)
                return
            attempt += 1
            if self.config.retry_max and attempt >= self.config.retry_max:
                log.error("max join retry exhausted, exiting error=%r", multierror(errors))
                self.request_exit(1)
                return
            log.warning("join failed retry=%.1fs error=%r", self.config.retry_interval,
                        multierror(errors))
            await trio.sleep(self.config.retry_interval)

    async def _watch_signals(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                             ) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                graceful = ((signum == signal.SIGINT and self.config.leave_on_interrupt)
                            or (signum == signal.SIGTERM and self.config.leave_on_terminate))
                log.info("caught signal signal=%s graceful=%s", signal.Signals(signum).name, graceful)
                if not graceful or self.handle is None:
                    self.request_exit(1 if not graceful else 0)
                    return
                code = await self._graceful_leave(signals)
                self.request_exit(code)
                return

    async def _graceful_leave(self, signals: Any) -> int:
        assert self.handle is not None
        timeout = (self.gossip_config.broadcast_timeout + self.gossip_config.leave_propagate_delay
                   + _LEAVE_MARGIN)
        log.info("gracefully shutting down agent timeout=%.1fs", timeout)
        result: list[bool] = []
        async with trio.open_nursery() as nursery:
            async def leave() -> None:
                result.append(await self.handle.leave(timeout))  # type: ignore[union-attr]
                nursery.cancel_scope.cancel()

            async def second_signal() -> None:
                async for _ in signals:
                    log.warning("second signal during leave: exiting now")
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(leave)
            nursery.start_soon(second_signal)
        if result and result[0]:
            log.info("graceful leave complete")
            return 0
        log.error("graceful leave did not finish")
        return 1


def _client_rpc_server(api: AgentAPI, tls: Any) -> RpcServer:
    """A client-only agent's rpc listener: the agent RPC extensions (host, pprof, monitor)
    that servers forward to it by ``node_id``; raft frames have no business here."""
    from .agent_rpc import agent_rpc_handlers
    from .monitor_rpc import stream_handlers

    def refuse_raft(message: Any) -> None:
        log.debug("raft message dropped: not a server source=%s", message.source_address)

    server = RpcServer(agent_rpc_handlers(api), refuse_raft, tls=tls)
    server.stream_handlers.update(stream_handlers(api))
    return server


class _Adapt:
    """A task_status that reports ``value`` when hypercorn reports its binds."""

    def __init__(self, inner: trio.TaskStatus[Any], value: Any) -> None:
        self._inner = inner
        self._value = value

    def started(self, _binds: Any = None) -> None:
        self._inner.started(self._value)
