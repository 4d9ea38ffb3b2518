"""A server agent's Raft side: storage, the raft driver, the rpc port, bootstrap,
reconciliation of gossip membership into the raft configuration, autopilot, and
forwarding of writes and consistent reads to the leader.

The decisions are pure functions of ``agent/servers.py`` (bootstrap plan, one
reconcile change at a time, autopilot rounds); this module owns the tasks that run
them and the RPC calls they need. The leader loop runs while this server leads:
it reconciles every gossip member once on winning, then on every member event and
every ``RECONCILE_INTERVAL``, and runs an autopilot round every
``AUTOPILOT_INTERVAL`` (agent-api.md sections 5.2-5.5).
"""

from __future__ import annotations

import logging
import os
import random
import uuid
from pathlib import Path
from typing import Any, Callable

import trio

from gossip.driver import GossipHandle
from gossip.types import Member
from raftlite.config import RaftConfig
from raftlite.core import RaftCore
from raftlite.driver import CommitTimeout, LeadershipLost, RaftHandle
from raftlite.errors import ConfigChangeInProgress, NotLeader, RaftError
from raftlite.events import RoleChanged
from raftlite.storage import FileStorage, MemoryStorage
from raftlite.types import Configuration, Role

from .config import AgentConfig
from .rpc import NOT_LEADER, RaftTransport, RpcError, RpcPool, RpcServer, RpcUnavailable
from .tlsutil import RpcTLS
from .servers import (Autopilot, AutopilotConfig, RaftChange, ServerParts, bootstrap_configuration,
                      bootstrap_plan, min_raft_version, parse_server, reconcile)
from .state import StateStore, encode_command

__all__ = ["ServerRuntime", "NoLeader"]

log = logging.getLogger(__name__)

RECONCILE_INTERVAL = 60.0
AUTOPILOT_INTERVAL = 10.0
"""Nomad's autopilot interval (agent-api.md 5.4): promotion and dead-server cleanup."""
APPLY_TIMEOUT = 10.0
ADD_PING_TIMEOUT = 2.0
"""How long the leader waits for a new server's Status.Ping before leaving it out of raft."""
UNREACHABLE_RETRY = 5.0
"""Seconds before the leader tries again to add a server that did not answer its ping."""
HOLD_TIMEOUT = 5.0
"""How long a forwarded request waits for a leader to appear (Nomad's RPCHoldTimeout)."""
BOOTSTRAP_PEER_ATTEMPTS = 6


class NoLeader(Exception):
    """No leader was known within the hold timeout."""


class _HookedState:
    """The state machine raft drives, telling scheduling about every applied command."""

    def __init__(self, state: StateStore, on_applied: Callable[[bytes, Any], None]) -> None:
        self._state = state
        self._on_applied = on_applied

    def apply(self, index: int, data: bytes) -> Any:
        result = self._state.apply(index, data)
        self._on_applied(data, result)
        return result

    def snapshot(self) -> bytes:
        return self._state.snapshot()

    def restore(self, data: bytes) -> None:
        self._state.restore(data)


def _peer_args(args: Any) -> dict[str, str]:
    """The ``{"id", "address"}`` of a remove/transfer call, checked (a peer may send anything)."""
    if not isinstance(args, dict):
        raise RpcError("rpc error: expected a map with id and address")
    out = {}
    for key in ("id", "address"):
        value = args.get(key) or ""
        if not isinstance(value, str):
            raise RpcError(f"rpc error: {key} must be a string")
        out[key] = value
    return out


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ServerRuntime:
    """Everything a server runs beside gossip and HTTP.

    Args:
        config: the agent's settings.
        node_id: the server's UUID (its raft id under protocol 3).
        gossip: the running gossip handle (members, force-leave).
        rpc_tls: with ``tls.rpc``: the contexts for the rpc port, raft and rpc dials.
    """

    def __init__(self, config: AgentConfig, node_id: str, gossip: GossipHandle, *,
                 rpc_tls: RpcTLS | None = None) -> None:
        self.config = config
        self.node_id = node_id
        self.gossip = gossip
        self.raft_address = format_address(config.advertise, config.rpc_port)
        self.server_id = node_id if config.raft_protocol >= 3 else self.raft_address
        self.state = StateStore()
        self.storage: Any = (MemoryStorage() if config.dev or not config.data_dir
                             else FileStorage(Path(config.data_dir) / "raft",
                                              logging.LoggerAdapter(logging.getLogger("raftlite.storage"),
                                                                    {"node": config.member_name})))
        persistent = self.storage.load()
        self.had_state = not persistent.is_empty()
        # a stored snapshot reaches the state machine through the core's first Restore output
        seed = int.from_bytes(os.urandom(8), "big")
        raft_config = RaftConfig(raft_multiplier=config.raft_multiplier,
                                 snapshot_threshold=config.raft_snapshot_threshold,
                                 trailing_logs=config.raft_trailing_logs)
        core = RaftCore(raft_config, server_id=self.server_id, address=self.raft_address,
                        state=persistent, rng=random.Random(f"{seed}/{config.member_name}/raft"),
                        log=logging.LoggerAdapter(logging.getLogger("raftlite"),
                                                  {"node": config.member_name}),
                        now=trio.current_time(),
                        aliases=[self.raft_address] if self.server_id != self.raft_address else [])
        self.transport = RaftTransport(local_ip=self._local_ip(), tls=rpc_tls)
        from .scheduling import SchedulingRuntime   # it imports this module's types
        self.scheduling = SchedulingRuntime(self)
        self.raft = RaftHandle(core, self.storage, self.transport,
                               _HookedState(self.state, self.scheduling.on_applied),
                               persist_in_thread=isinstance(self.storage, FileStorage),
                               on_role=self._on_role)
        self.pool = RpcPool(local_ip=self._local_ip(), tls=rpc_tls)
        self.rpc = RpcServer(self._handlers(), self.raft.deliver_nowait, tls=rpc_tls)
        self.autopilot = Autopilot(AutopilotConfig())
        self.bootstrapped = self.had_state
        self._bootstrapping = False
        self._leader_kick = trio.Event()
        self._reaped: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._leader_scope: trio.CancelScope | None = None
        self._logged_errors: set[str] = set()
        self.supervisor: Any = None   # scheduler.driver.SupervisorHandle once running

    def _local_ip(self) -> str | None:
        """Bind outgoing rpc/raft connections to the bind IP when it is a specific one."""
        bind = self.config.bind
        return None if bind in ("0.0.0.0", "::") else bind

    # ------------------------------------------------------------- lifecycle

    async def run(self, listener: trio.SocketListener, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the rpc port and run raft until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.pool.run)
                await nursery.start(self.transport.run)
                await nursery.start(self.raft.run)
                await nursery.start(self.rpc.serve, listener)
                self.supervisor = await nursery.start(self._run_supervisor)
                if self.config.bootstrap_expect == 1 and not self.had_state:
                    self._bootstrap_alone()
                task_status.started()
                self.check_bootstrap()
        finally:
            close = getattr(self.storage, "close", None)
            if close is not None:
                close()

    async def _run_supervisor(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
                              ) -> None:
        """The scheduler workers (agent-api.md 5.6), dequeuing from the leader's broker."""
        from scheduler.driver import run_supervisor
        from scheduler.supervisor import SupervisorCore

        core = SupervisorCore(self.config.num_schedulers, self.config.enabled_schedulers,
                              new_id=lambda: str(uuid.uuid4()),
                              log=logging.LoggerAdapter(logging.getLogger("scheduler"),
                                                        {"node": self.config.member_name}))

        async def dequeue(schedulers: list[str], timeout: float) -> tuple[Any, ...] | None:
            answer = await self.scheduling.worker_dequeue(schedulers, timeout)
            if answer is None:
                return None
            return answer["Eval"], answer["Token"], int(answer.get("WaitIndex") or 0)

        await run_supervisor(core, dequeue=dequeue, process=self.scheduling.worker_process,
                             release=self.scheduling.worker_release, task_status=task_status)

    def _bootstrap_alone(self) -> None:
        configuration = Configuration((self._self_server(),))
        log.info("bootstrapping raft alone id=%s address=%s", self.server_id, self.raft_address)
        self.raft.call(lambda core, now: core.bootstrap(configuration, now))
        self.bootstrapped = True

    def _self_server(self) -> Any:
        from raftlite.types import Server
        return Server(self.server_id, self.raft_address)

    def spawn(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` in the server's nursery (from sync code)."""
        if self._nursery is not None:
            self._nursery.start_soon(function, *args)

    def install_fault_hook(self, hook: Any) -> None:
        self.rpc.fault_hook = hook
        self.pool.fault_hook = hook
        self.transport.fault_hook = hook

    # --------------------------------------------------------- gossip events

    def servers(self) -> list[ServerParts]:
        parts = (parse_server(member) for member in self.gossip.members())
        return sorted((p for p in parts if p is not None), key=lambda p: p.name)

    def member_event(self, kind: str, member: Member) -> None:
        """A serf member event (``joined``, ``updated``, ``failed``, ``left``, ``reaped``)."""
        if parse_server(member) is None:
            if kind == "joined":
                log.warning("non-server in gossip pool name=%s", member.name)
            return
        if kind == "reaped":
            self._reaped.add(member.name)
        elif kind == "joined":
            self._reaped.discard(member.name)
            self.check_bootstrap()
        self._leader_kick.set()

    # ------------------------------------------------------------- bootstrap

    def check_bootstrap(self) -> None:
        """Section 5.2: bootstrap once ``expect`` servers of the region are known."""
        expect = self.config.bootstrap_expect
        if self.bootstrapped or self._bootstrapping or expect <= 1 or self._nursery is None:
            return
        if self.raft.core.last_index > 0:
            self.bootstrapped = True
            return
        plan = bootstrap_plan(self.servers(), region=self.config.region, expect=expect)
        if plan.action == "error":
            self._log_once(plan.reason)
            return
        if plan.action != "bootstrap":
            return
        self._bootstrapping = True
        self._nursery.start_soon(self._bootstrap_with, plan.servers)

    def _log_once(self, message: str) -> None:
        if message not in self._logged_errors:
            self._logged_errors.add(message)
            log.error("%s", message)

    async def _bootstrap_with(self, servers: tuple[ServerParts, ...]) -> None:
        try:
            for server in servers:
                if server.raft_address == self.raft_address:
                    continue
                peers = await self._ask_peers(server.raft_address)
                if peers:
                    log.info("existing raft peers reported, not bootstrapping server=%s peers=%s",
                             server.name, ",".join(peers))
                    self.bootstrapped = True
                    return
            if self.raft.core.last_index > 0:
                self.bootstrapped = True
                return
            configuration = bootstrap_configuration(servers, min_raft_version(servers))
            log.info("found expected number of peers, attempting bootstrap peers=%s",
                     ",".join(s.address for s in configuration.servers))
            try:
                self.raft.call(lambda core, now: core.bootstrap(configuration, now))
            except RaftError as exc:
                log.error("failed to bootstrap cluster error=%s", exc)
            self.bootstrapped = True
        finally:
            self._bootstrapping = False

    async def _ask_peers(self, address: str) -> list[str]:
        delay = 1.0
        for attempt in range(BOOTSTRAP_PEER_ATTEMPTS):
            try:
                return list(await self.pool.call(address, "Status.Peers", {}, timeout=5.0) or [])
            except RpcError as exc:
                log.warning("failed to confirm peer status peer=%s attempt=%d error=%s",
                            address, attempt + 1, exc)
                await trio.sleep(delay)
                delay *= 2
        return []

    # ---------------------------------------------------------- leader loop

    def _on_role(self, change: RoleChanged) -> None:
        if self.supervisor is not None:   # the leader pauses most of its workers (5.6.3)
            self.supervisor.set_leader(change.role == Role.LEADER)
        if change.role == Role.LEADER and self._leader_scope is None and self._nursery is not None:
            self._leader_scope = trio.CancelScope()
            self._nursery.start_soon(self._lead, self._leader_scope)
        elif change.role != Role.LEADER and self._leader_scope is not None:
            self._leader_scope.cancel()
            self._leader_scope = None

    async def _lead(self, scope: trio.CancelScope) -> None:
        with scope:
            log.info("cluster leadership acquired term=%d", self.raft.core.term)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.scheduling.lead)
                nursery.start_soon(self._membership_loop)
        log.info("cluster leadership lost")

    async def _membership_loop(self) -> None:
        """Reconcile gossip into raft on every member event and every interval; autopilot."""
        next_reconcile = trio.current_time()
        next_autopilot = trio.current_time() + AUTOPILOT_INTERVAL
        while True:
            now = trio.current_time()
            if now >= next_reconcile or self._leader_kick.is_set():
                self._leader_kick = trio.Event()
                all_reachable = await self._reconcile_all()
                if now >= next_reconcile:
                    next_reconcile = now + RECONCILE_INTERVAL
                if not all_reachable:
                    next_reconcile = min(next_reconcile, now + UNREACHABLE_RETRY)
            if now >= next_autopilot:
                await self._autopilot_round()
                next_autopilot = trio.current_time() + AUTOPILOT_INTERVAL
            with trio.move_on_at(min(next_reconcile, next_autopilot)):
                await self._leader_kick.wait()

    async def _reconcile_all(self) -> bool:
        """Apply reconcile changes one at a time until there are none (bounded).

        A server is added to the configuration only once it answers ``Status.Ping`` on
        its rpc port, so one this leader cannot talk to (down already, or with
        ``tls.rpc``, not trusted by the cluster's CA) never enters it; it is tried
        again sooner than the reconcile interval. Returns False when one was skipped so.
        """
        unreachable: set[str] = set()
        for _ in range(3 * max(len(self.servers()), 1) + 3):
            changes = reconcile(self.servers(), self.raft.core.configuration,
                                self_id=self.server_id, region=self.config.region,
                                reaped=sorted(self._reaped))
            changes = [c for c in changes if c.id not in unreachable]
            if not changes:
                break
            change = changes[0]
            if change.op in ("add_nonvoter", "add_voter") and not await self._answers_ping(change):
                unreachable.add(change.id)
                continue
            if not await self._apply_change(change):
                break
        return not unreachable

    async def _answers_ping(self, change: RaftChange) -> bool:
        try:
            await self.pool.call(change.address, "Status.Ping", {}, timeout=ADD_PING_TIMEOUT)
        except (RpcError, RpcUnavailable) as exc:
            log.warning("not adding server to raft: it does not answer on its rpc port "
                        "id=%s address=%s error=%s", change.id, change.address, exc)
            return False
        return True

    async def _apply_change(self, change: RaftChange) -> bool:
        operations: dict[str, Callable[[RaftCore, float], int]] = {
            "add_nonvoter": lambda core, now: core.add_nonvoter(change.id, change.address, now),
            "add_voter": lambda core, now: core.add_voter(change.id, change.address, now),
            "promote": lambda core, now: core.promote(change.id, now),
            "remove": lambda core, now: core.remove_server(change.id, now),
            "rename": lambda core, now: core.rename_server(change.id, change.new_id, now),
        }
        log.info("raft configuration change op=%s id=%s address=%s new_id=%s reason=%s",
                 change.op, change.id, change.address, change.new_id, change.reason)
        try:
            await self.raft.change(operations[change.op], APPLY_TIMEOUT)
        except (ConfigChangeInProgress, CommitTimeout) as exc:
            log.info("raft configuration change postponed op=%s id=%s error=%s", change.op, change.id, exc)
            await trio.sleep(0.2)
            self._leader_kick.set()
            return False
        except RaftError as exc:   # not leader any more, lost, unknown server, last voter
            log.warning("raft configuration change failed op=%s id=%s error=%s", change.op, change.id, exc)
            return False
        return True

    async def _autopilot_round(self) -> None:
        core = self.raft.core
        actions = self.autopilot.round(configuration=core.configuration, servers=self.servers(),
                                       progress=core.progress(), leader_id=self.server_id,
                                       last_index=core.last_index, now=trio.current_time())
        for server_id in actions.promote:
            await self._apply_change(RaftChange("promote", server_id, "", reason="stable"))
        for server_id in actions.remove_stale:
            await self._apply_change(RaftChange("remove", server_id, "", reason="stale"))
        for name in actions.force_leave:
            log.info("autopilot: removing dead server name=%s", name)
            error = await self.gossip.force_leave(name, False)
            if error:
                log.warning("autopilot force-leave failed name=%s error=%s", name, error)

    # ------------------------------------------------------------ forwarding

    async def wait_leader(self, timeout: float = HOLD_TIMEOUT) -> str:
        """The leader's raft address; raises ``NoLeader`` after ``timeout``."""
        with trio.move_on_after(timeout):
            while True:
                core = self.raft.core
                if core.role == Role.LEADER:
                    return self.raft_address
                if core.leader_address:
                    return core.leader_address
                await self.raft.wait_role_change()
        raise NoLeader("No cluster leader")

    async def on_leader(self, method: str, args: Any, local: Callable[[Any], Any], *,
                        idempotent: bool) -> Any:
        """Run ``local(args)`` if this server leads, else call ``method`` on the leader.

        While no leader is known, or the one called says it no longer leads, the call
        waits and retries for up to ``HOLD_TIMEOUT``: nothing was done. A call that was
        sent and then lost (the leader died mid-call) is only retried when
        ``idempotent``; a write then fails with an error saying it may have happened.
        """
        deadline = trio.current_time() + HOLD_TIMEOUT
        while True:
            address = await self.wait_leader(max(deadline - trio.current_time(), 0.0))
            if address == self.raft_address:
                try:
                    return await local(args)
                except NotLeader:
                    pass
            else:
                try:
                    return await self.pool.call(address, method, args, timeout=APPLY_TIMEOUT + 2)
                except RpcUnavailable as exc:
                    if exc.sent and not idempotent:
                        raise RpcError(f"{exc} (the request may or may not have been applied)") from None
                    if trio.current_time() >= deadline:
                        raise
                except RpcError as exc:
                    if str(exc) != NOT_LEADER:
                        raise
            if trio.current_time() >= deadline:
                raise NoLeader("No cluster leader")
            await trio.sleep(0.05)

    async def local_apply(self, command: Any) -> Any:
        if not isinstance(command, dict):
            raise RpcError("rpc error: a command must be a map")
        try:
            return await self.raft.apply(encode_command(command), APPLY_TIMEOUT)
        except LeadershipLost as exc:
            raise RpcError(f"{exc}: the write was not applied") from None
        except CommitTimeout as exc:
            raise RpcError(f"{exc}: the write may or may not be applied") from None

    async def local_read(self, query: Any) -> Any:
        """A consistent read: the leader serves it once its state holds every commit
        it knows of, which needs an entry of its own term committed (read-index,
        Raft thesis 6.4); otherwise it waits briefly or says it is not the leader."""
        await self.raft.read_barrier(HOLD_TIMEOUT)
        return self.read_now(query)

    def read_now(self, query: Any) -> Any:
        if not isinstance(query, dict):
            raise RpcError("rpc error: a query must be a map")
        try:
            return self.state.query(query)
        except ValueError as exc:
            raise RpcError(str(exc)) from None

    # ------------------------------------------------------------------ RPC

    def _handlers(self) -> dict[str, Callable[[Any], Any]]:
        async def status_peers(_args: Any) -> list[str]:
            return self.peer_addresses()

        async def status_leader(_args: Any) -> str:
            return self.leader_address()

        async def state_apply(args: Any) -> Any:
            return await self._leader_only(self.local_apply, args)

        async def state_read(args: Any) -> Any:
            return await self._leader_only(self.local_read, args)

        async def state_apply_any(args: Any) -> Any:
            # from a client-only agent: any server takes it and forwards it to the leader
            return await self._forwarded("State.Apply", args, self.local_apply, idempotent=False)

        async def state_read_any(args: Any) -> Any:
            return await self._forwarded("State.Read", args, self.local_read, idempotent=True)

        async def raft_configuration(_args: Any) -> Any:
            return await self._leader_only(lambda _a: self._configuration_async(), None)

        async def raft_remove(args: Any) -> Any:
            return await self._leader_only(self.local_remove_peer, _peer_args(args))

        async def raft_transfer(args: Any) -> Any:
            return await self._leader_only(self.local_transfer, _peer_args(args))

        handlers = {"Status.Peers": status_peers, "Status.Leader": status_leader,
                    "State.Apply": state_apply, "State.Read": state_read,
                    "State.ApplyAny": state_apply_any, "State.ReadAny": state_read_any,
                    "Operator.RaftGetConfiguration": raft_configuration,
                    "Operator.RaftRemovePeer": raft_remove,
                    "Operator.TransferLeadership": raft_transfer}
        handlers.update(self.scheduling.rpc_handlers())
        return handlers

    async def _forwarded(self, method: str, args: Any, local: Callable[[Any], Any], *,
                         idempotent: bool) -> Any:
        """``on_leader`` for an rpc handler: no leader becomes an RpcError with its text."""
        try:
            return await self.on_leader(method, args, local, idempotent=idempotent)
        except NoLeader as exc:
            raise RpcError(str(exc)) from None

    async def _leader_only(self, local: Callable[[Any], Any], args: Any) -> Any:
        if self.raft.core.role != Role.LEADER:
            raise RpcError(NOT_LEADER)
        try:
            return await local(args)
        except NotLeader:
            raise RpcError(NOT_LEADER) from None

    async def _configuration_async(self) -> dict[str, Any]:
        return self.configuration_view()

    # ------------------------------------------------------------- views/ops

    def metric_values(self) -> tuple[dict[str, float], dict[str, int]]:
        """Gauges and counters for ``/v1/metrics`` (``shoal.raft.*``, ``shoal.rpc.*``)."""
        stats = self.raft.stats()
        gauges = {"shoal.raft.term": stats.term, "shoal.raft.commit_index": stats.commit_index,
                  "shoal.raft.applied_index": stats.applied_index,
                  "shoal.raft.last_log_index": stats.last_log_index,
                  "shoal.raft.last_snapshot_index": stats.last_snapshot_index,
                  "shoal.raft.is_leader": int(stats.role == Role.LEADER),
                  "shoal.raft.peers": len(self.raft.core.configuration.servers)}
        counters = {f"shoal.raft.{k}": v for k, v in stats.counters.items()}
        counters.update({f"shoal.raft.driver.{k}": v for k, v in self.raft.counters.items()})
        counters.update({f"shoal.rpc.{k}": v for k, v in self.rpc.counters.items()})
        counters.update({f"shoal.rpc.transport.{k}": v for k, v in self.transport.counters.items()})
        return {k: float(v) for k, v in gauges.items()}, counters

    def leader_address(self) -> str:
        core = self.raft.core
        if core.role == Role.LEADER:
            return self.raft_address
        return core.leader_address or ""

    def peer_addresses(self) -> list[str]:
        return [server.address for server in self.raft.core.configuration.servers]

    def configuration_view(self) -> dict[str, Any]:
        """Nomad's RaftConfigurationResponse."""
        core = self.raft.core
        by_address = {p.raft_address: p for p in self.servers()}
        leader = self.leader_address()
        servers = []
        for server in core.configuration.servers:
            member = by_address.get(server.address)
            servers.append({"ID": server.id, "Node": member.name if member else "",
                            "Address": server.address, "Leader": server.address == leader,
                            "Voter": server.is_voter,
                            "RaftProtocol": str(member.raft_version) if member else ""})
        return {"Servers": servers, "Index": core.configuration_index}

    async def local_remove_peer(self, args: Any) -> None:
        core = self.raft.core
        server_id, address = args.get("id"), args.get("address")
        if server_id:
            if core.configuration.get(server_id) is None:
                raise RpcError(f'id "{server_id}" was not found in the Raft configuration')
        else:
            matches = [s.id for s in core.configuration.servers if s.address == address]
            if not matches:
                raise RpcError(f'address "{address}" was not found in the Raft configuration')
            server_id = matches[0]
        target = server_id
        try:
            await self.raft.change(lambda c, now: c.remove_server(target, now), APPLY_TIMEOUT)
        except NotLeader:
            raise
        except RaftError as exc:   # in progress, unknown, last voter, lost, timed out
            raise RpcError(str(exc)) from None
        log.info("removed raft peer id=%s", target)

    async def local_transfer(self, args: Any) -> None:
        core = self.raft.core
        server_id, address = args.get("id"), args.get("address")
        if address and not server_id:
            matches = [s.id for s in core.configuration.servers if s.address == address]
            if not matches:
                raise RpcError(f'address "{address}" was not found in the Raft configuration')
            server_id = matches[0]
        if server_id and core.configuration.get(server_id) is None:
            raise RpcError(f'id "{server_id}" was not found in the Raft configuration')
        try:
            self.raft.call(lambda c, now: c.transfer_leadership(server_id or None, now))
        except NotLeader:
            raise
        except RaftError as exc:
            raise RpcError(str(exc)) from None
        # The core gives a transfer one election timeout; wait a little longer than that.
        with trio.move_on_after(2 * self.raft.core.config.election + 1.0):
            while self.raft.core.role == Role.LEADER:
                await self.raft.wait_role_change()
            return
        raise RpcError("leadership transfer did not complete: the target did not take over in time")

