"""The client half of an agent: register a node, heartbeat, and run simulated allocations.

Theory of operation (issue 4 item 5; docs/internals.md, "RPC methods of the
scheduling flow"):

* Identity. The node id is a UUID kept in ``<data_dir>/client/node-id`` (random and
  in memory without a data dir); the known servers are kept in
  ``<data_dir>/client/servers.json`` and reloaded at start when none are given.
* Servers. ``_servers`` is an ordered list; every RPC goes to the first one and, when
  that answers ``RpcUnavailable``, the server is rotated to the back and the next one
  is tried (Nomad's ``NotifyFailedServer``). A ``Servers`` list in an answer replaces
  the known list (kept in the order of the servers already known), and is persisted.
* Registration. ``Node.Register`` with the Node record (Status ``ready``) is retried
  with exponential backoff from 1 s to 30 s; a change of the server list wakes the
  wait early. The answer carries ``HeartbeatTTL``.
* Heartbeats. ``Node.Heartbeat`` at a random point of the TTL window,
  ``ttl * uniform(0.5, 0.9)``, so a thousand clients do not beat in step. The error
  ``node not found`` (the servers forgot us) starts registration again.
* Allocations (simulated). ``Node.GetAllocs`` is polled every second. ``AllocRunner``
  (pure) decides: desired ``run`` and pending -> ``running``; an alloc with a
  ``Duration`` (batch/sysbatch) -> ``complete`` that many seconds after it started;
  desired ``stop`` and not terminal -> ``complete``. Updates are batched into one
  ``Node.UpdateAllocs`` call and resent until a server takes them.
* ``set_servers`` is the PUT of agent-api.md 3.2: normalise (default port 4647,
  bare IPv6 bracketed), resolve, ping each with ``Status.Ping``, keep the survivors.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import platform
import random
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from .identity import IdentityError, load_or_create_uuid, write_atomically
from .join import split_join_address
from .rpc import RpcError, RpcPool, RpcUnavailable

__all__ = ["AllocRunner", "ClientRuntime", "ClientStateError", "DEFAULT_RPC_PORT", "format_address",
           "heartbeat_delay", "host_resources", "load_client_node_id", "load_servers",
           "normalise_server_address", "resources_from", "save_servers"]

log = logging.getLogger(__name__)

DEFAULT_RPC_PORT = 4647
DEFAULT_CPU_MHZ = 2000
RETRY_MIN = 1.0
RETRY_MAX = 30.0
ALLOC_POLL_INTERVAL = 1.0
ALLOC_QUERY_WAIT = 5.0
"""Longest a server may block a ``Node.GetAllocs`` (sent as ``MaxQueryTime``)."""
RPC_TIMEOUT = 10.0
PING_TIMEOUT = 5.0
NODE_NOT_FOUND = "node not found"
TERMINAL = frozenset({"complete", "failed", "lost"})
_FINITE_JOB_TYPES = frozenset({"batch", "sysbatch"})


class ClientStateError(Exception):
    """The client's files in the data dir cannot be read or written (a startup error)."""


# --- pure helpers ---------------------------------------------------------------------


def format_address(host: str, port: int) -> str:
    """``ip:port``, IPv6 hosts bracketed (``[::1]:4647``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def normalise_server_address(text: str, default_port: int = DEFAULT_RPC_PORT) -> tuple[str, int]:
    """A server address as given (``host``, ``host:port``, ``[v6]:port``, bare v6) -> (host, port).

    Raises:
        ValueError: empty host or a port that is not a number in range.
    """
    host, port = split_join_address(text.strip(), default_port)
    if not host:
        raise ValueError(f"missing host in address {text!r}")
    return host, port


def heartbeat_delay(ttl: float, rng: random.Random) -> float:
    """When to send the next heartbeat: a random point in [0.5, 0.9] of the TTL."""
    return ttl * rng.uniform(0.5, 0.9)


def next_backoff(current: float) -> float:
    """Exponential backoff between ``RETRY_MIN`` and ``RETRY_MAX`` seconds."""
    return min(max(current * 2, RETRY_MIN), RETRY_MAX)


def resources_from(cores: int, mhz_per_core: float, memory_bytes: int) -> dict[str, int]:
    """Node resources: CPU in MHz over all cores, memory in MB."""
    return {"CPU": int(max(cores, 1) * mhz_per_core), "MemoryMB": int(memory_bytes // 2**20)}


def host_resources() -> dict[str, int]:
    """This host's resources from psutil; per-core MHz is the max frequency, else 2000."""
    import psutil

    cores = psutil.cpu_count(logical=True) or 1
    mhz = float(DEFAULT_CPU_MHZ)
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):  # absent on some platforms and VMs
        freq = None
    if freq is not None and freq.max and freq.max > 0:
        mhz = float(freq.max)
    return resources_from(cores, mhz, psutil.virtual_memory().total)


def load_client_node_id(data_dir: str | None) -> str:
    """The node id from ``<data_dir>/client/node-id``, created on first use; random without a dir.

    Raises:
        ClientStateError: the file is unreadable, holds no UUID, or cannot be written.
    """
    path = Path(data_dir) / "client" / "node-id" if data_dir else None
    try:
        return load_or_create_uuid(path)
    except IdentityError as exc:
        raise ClientStateError(str(exc)) from None


def load_servers(data_dir: str | None) -> list[str]:
    """The server list saved in ``<data_dir>/client/servers.json`` ([] when absent or unreadable)."""
    if not data_dir:
        return []
    path = Path(data_dir) / "client" / "servers.json"
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.warning("client servers file ignored path=%s error=%s", path, exc)
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        log.warning("client servers file ignored path=%s error=not a list of strings", path)
        return []
    return list(value)


def save_servers(data_dir: str | None, servers: Sequence[str]) -> None:
    """Write the server list to ``<data_dir>/client/servers.json`` (nothing without a dir)."""
    if data_dir:
        _write_atomically(Path(data_dir) / "client" / "servers.json", json.dumps(list(servers)))


def _write_atomically(path: Path, text: str) -> None:
    try:
        write_atomically(path, text)
    except IdentityError as exc:
        raise ClientStateError(str(exc)) from None


def _as_map(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RpcError(f"rpc error: malformed answer {type(value).__name__}")
    return value


def _alloc_duration(alloc: Mapping[str, Any]) -> float | None:
    """Seconds a finite (batch/sysbatch) alloc runs; None when it runs until stopped.

    ``Duration`` 0 means "until stopped" (service groups carry 0), unless the alloc also
    says its ``JobType`` is batch or sysbatch.
    """
    duration = alloc.get("Duration")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration):
        return None
    if duration > 0 or (duration == 0 and alloc.get("JobType") in _FINITE_JOB_TYPES):
        return float(duration)
    return None


class AllocRunner:
    """The simulated task runner: which ClientStatus updates this node owes its servers.

    Pure: told the server's allocs and the time, it keeps the status it last decided
    per alloc, when finite allocs finish, and the updates not yet taken by a server.
    """

    def __init__(self) -> None:
        self._status: dict[str, str] = {}       # alloc id -> the status this client decided
        self._finish_at: dict[str, float] = {}  # running finite allocs -> completion time
        self._unsent: dict[str, str] = {}       # alloc id -> status not yet acknowledged
        self.dropped = 0                        # malformed alloc records ignored

    @property
    def num_allocations(self) -> int:
        """Allocations the servers list for this node (terminal ones included, as Nomad)."""
        return len(self._status)

    def observe(self, allocs: Sequence[Any], now: float) -> None:
        """Take the servers' list of this node's allocs."""
        seen: set[str] = set()
        for alloc in allocs:
            if not isinstance(alloc, dict) or not isinstance(alloc.get("ID"), str):
                self.dropped += 1
                continue
            seen.add(alloc["ID"])
            self._observe_one(alloc, now)
        for gone in [i for i in self._status if i not in seen]:
            self._status.pop(gone)
            self._finish_at.pop(gone, None)
            self._unsent.pop(gone, None)

    def _observe_one(self, alloc: dict[str, Any], now: float) -> None:
        alloc_id = alloc["ID"]
        server_status = alloc.get("ClientStatus")
        status = self._status.get(alloc_id) or server_status or "pending"
        if server_status in TERMINAL and status not in TERMINAL:
            status = server_status   # the servers decided (a "lost" alloc of a down node)
            self._unsent.pop(alloc_id, None)
        self._status[alloc_id] = status
        if status in TERMINAL:
            self._finish_at.pop(alloc_id, None)
            return
        desired = alloc.get("DesiredStatus")
        if desired in ("stop", "evict"):
            self._set(alloc_id, "complete")
            return
        if desired != "run":
            return
        if status == "pending":
            self._set(alloc_id, "running")
        duration = _alloc_duration(alloc)
        if duration is not None and alloc_id not in self._finish_at:
            self._finish_at[alloc_id] = now + duration

    def _set(self, alloc_id: str, status: str) -> None:
        self._status[alloc_id] = status
        self._unsent[alloc_id] = status
        if status in TERMINAL:
            self._finish_at.pop(alloc_id, None)
        log.info("alloc status changed alloc_id=%s status=%s", alloc_id, status)

    def handle_timers(self, now: float) -> None:
        """Complete the finite allocs whose duration has passed."""
        for alloc_id, finish_at in sorted(self._finish_at.items()):
            if finish_at <= now:
                self._set(alloc_id, "complete")

    def next_deadline(self) -> float | None:
        return min(self._finish_at.values(), default=None)

    def pending_updates(self) -> list[dict[str, str]]:
        """The updates to send, oldest decision first: ``[{"ID", "ClientStatus"}]``."""
        return [{"ID": i, "ClientStatus": s} for i, s in self._unsent.items()]

    def updates_sent(self, updates: Sequence[Mapping[str, str]]) -> None:
        """A server took ``updates``; forget those whose status has not changed since."""
        for update in updates:
            if self._unsent.get(update["ID"]) == update["ClientStatus"]:
                del self._unsent[update["ID"]]

    def status(self, alloc_id: str) -> str | None:
        return self._status.get(alloc_id)


# --- the trio side --------------------------------------------------------------------


class ClientRuntime:
    """One client node: registration, heartbeats, the server list and simulated allocs.

    Args:
        config: the agent's settings (kept for the node's attributes).
        pool: outbound RPC (its ``run`` must be started by the caller).
        servers: server addresses from ``-servers``; when empty, the saved list is used.
        data_dir: where ``client/node-id`` and ``client/servers.json`` live (or None).
        http_addr: this agent's HTTP ``ip:port``, put in the Node record.
        rpc_addr: this agent's rpc ``ip:port`` (``RPCAddr``: where servers reach it by node_id).
        rng: heartbeat jitter.
    Raises:
        ClientStateError: the data dir's client files are unusable.
        ValueError: a server address does not parse.
    """

    def __init__(self, config: Any, *, pool: RpcPool, servers: Sequence[str], data_dir: str | None,
                 node_name: str, datacenter: str, node_class: str = "",
                 meta: Mapping[str, str] = {}, resources: Mapping[str, int] | None = None,
                 http_addr: str, rng: random.Random, rpc_addr: str = "") -> None:
        self.config = config
        self.pool = pool
        self.data_dir = data_dir or None
        self.node_name = node_name
        self.datacenter = datacenter
        self.node_class = node_class
        self.meta = dict(meta)
        self.resources = dict(resources) if resources is not None else host_resources()
        self.http_addr = http_addr
        self.rpc_addr = rpc_addr
        self.rng = rng
        self.node_id = load_client_node_id(self.data_dir)
        given = [format_address(*normalise_server_address(s)) for s in servers]
        self._servers: list[str] = _unique(given) if given else _unique(load_servers(self.data_dir))
        if given:
            save_servers(self.data_dir, self._servers)
        self.allocs = AllocRunner()
        self.heartbeat_ttl = 0.0
        self.last_heartbeat: float | None = None  # trio.current_time() of the last good beat
        self.registered = trio.Event()
        self._servers_changed = trio.Event()
        self._allocs_changed = trio.Event()

    # views for the HTTP layer

    def servers(self) -> list[str]:
        """Known servers, sorted (agent-api.md 3.2 GET)."""
        return sorted(self._servers)

    @property
    def num_allocations(self) -> int:
        return self.allocs.num_allocations

    def node_record(self) -> dict[str, Any]:
        """The Node record of the contract (docs/internals.md), Status ``ready``."""
        return {
            "ID": self.node_id, "Name": self.node_name, "Datacenter": self.datacenter,
            "NodeClass": self.node_class, "Meta": dict(self.meta),
            "Attributes": {"kernel.name": platform.system().lower(), "cpu.arch": platform.machine(),
                           "unique.hostname": socket.gethostname(),
                           "cpu.totalcompute": str(self.resources.get("CPU", 0)),
                           "memory.totalbytes": str(self.resources.get("MemoryMB", 0) * 2**20)},
            "NodeResources": {"CPU": int(self.resources.get("CPU", 0)),
                              "MemoryMB": int(self.resources.get("MemoryMB", 0))},
            "Status": "ready", "SchedulingEligibility": "eligible", "HTTPAddr": self.http_addr,
            "RPCAddr": self.rpc_addr,
            "CreateIndex": 0, "ModifyIndex": 0, "StatusUpdatedAt": time.time_ns(),
        }

    # the server list

    def _replace_servers(self, servers: Sequence[str], reason: str) -> None:
        new = _unique(servers)
        if new == self._servers:
            return
        self._servers = new
        log.info("client servers updated servers=%s reason=%s", ",".join(new), reason)
        try:
            save_servers(self.data_dir, new)
        except ClientStateError as exc:   # the list in memory still works
            log.error("client servers not saved error=%s", exc)
        self._servers_changed.set()
        self._servers_changed = trio.Event()

    def _adopt_servers(self, answer: Mapping[str, Any]) -> None:
        """Take the ``Servers`` of an answer, keeping the known ones' order first."""
        listed = answer.get("Servers")
        if not isinstance(listed, list) or not listed:
            return
        try:
            fresh = [format_address(*normalise_server_address(s)) for s in listed if isinstance(s, str)]
        except ValueError as exc:
            log.warning("servers list from server ignored error=%s", exc)
            return
        ordered = [s for s in self._servers if s in fresh] + [s for s in fresh if s not in self._servers]
        self._replace_servers(ordered, "server answer")

    def _rotate(self, address: str) -> None:
        if address in self._servers and self._servers[-1] != address:
            self._servers.remove(address)
            self._servers.append(address)

    async def call(self, method: str, args: Any, timeout: float = RPC_TIMEOUT) -> dict[str, Any]:
        """Call ``method`` on the first server that answers; unreachable ones go to the back.

        Raises:
            RpcUnavailable: no known server answered.
            RpcError: a server answered with an error (or a malformed answer).
        """
        errors = []
        for address in list(self._servers):
            try:
                result = await self.pool.call(address, method, args, timeout)
            except RpcUnavailable as exc:
                log.warning("server unavailable, rotating address=%s method=%s error=%s",
                            address, method, exc)
                self._rotate(address)
                errors.append(str(exc))
                continue
            answer = _as_map(result)
            self._adopt_servers(answer)
            return answer
        detail = "; ".join(errors) if errors else "no servers known"
        raise RpcUnavailable(f"rpc error: no server answered {method}: {detail}", sent=bool(errors))

    async def set_servers(self, addresses: Sequence[str]) -> tuple[int, list[str]]:
        """agent-api.md 3.2 PUT: (number kept, errors in address order).

        The list is replaced only when at least one address resolved and answered a ping.
        """
        results: list[tuple[str | None, str | None]] = [(None, None)] * len(addresses)

        async def check(index: int, text: str) -> None:
            results[index] = await self._check_server(text)

        async with trio.open_nursery() as nursery:
            for index, text in enumerate(addresses):
                nursery.start_soon(check, index, text)
        survivors = _unique([address for address, _ in results if address is not None])
        errors = [error for _, error in results if error is not None]
        if survivors:
            self._replace_servers(survivors, "set servers")
        return len(survivors), errors

    async def _check_server(self, text: str) -> tuple[str | None, str | None]:
        try:
            host, port = normalise_server_address(text)
        except ValueError as exc:
            return None, f"address {text}: {exc}"
        try:
            ip = await _resolve(host, port)
        except OSError as exc:
            reason = "no such host" if isinstance(exc, socket.gaierror) else str(exc)
            return None, f"lookup {host}: {reason}"
        address = format_address(ip, port)
        try:
            await self.pool.call(address, "Status.Ping", {}, PING_TIMEOUT)
        except RpcError as exc:
            return None, f"Server at address {address} failed ping: {exc}"
        return address, None

    # the tasks

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Register, heartbeat and run allocs until cancelled."""
        log.info("client starting node_id=%s servers=%s", self.node_id, ",".join(self._servers))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._heartbeat_loop)
            nursery.start_soon(self._alloc_poll_loop)
            nursery.start_soon(self._alloc_update_loop)
            task_status.started()

    async def _wait_retry(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less when the server list changes."""
        with trio.move_on_after(delay):
            await self._servers_changed.wait()

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._register()
            await self._heartbeat_until_forgotten()

    async def _register(self) -> None:
        backoff = RETRY_MIN
        while True:
            try:
                answer = await self.call("Node.Register", {"Node": self.node_record()})
            except RpcError as exc:
                log.warning("node registration failed retry=%.1fs error=%s", backoff, exc)
                await self._wait_retry(backoff)
                backoff = next_backoff(backoff)
                continue
            self._heartbeat_ok(answer)
            log.info("node registered node_id=%s ttl=%.1fs", self.node_id, self.heartbeat_ttl)
            self.registered.set()
            return

    async def _heartbeat_until_forgotten(self) -> None:
        """Heartbeat until a server says ``node not found``."""
        delay = heartbeat_delay(self.heartbeat_ttl, self.rng)
        backoff = RETRY_MIN
        while True:
            await trio.sleep(delay)
            try:
                answer = await self.call("Node.Heartbeat", {"NodeID": self.node_id, "Status": "ready"})
            except RpcError as exc:
                if NODE_NOT_FOUND in str(exc):
                    log.info("node unknown to servers, registering again node_id=%s", self.node_id)
                    return
                log.warning("heartbeat failed retry=%.1fs error=%s", backoff, exc)
                delay, backoff = backoff, next_backoff(backoff)
                continue
            backoff = RETRY_MIN
            self._heartbeat_ok(answer)
            delay = heartbeat_delay(self.heartbeat_ttl, self.rng)

    def _heartbeat_ok(self, answer: Mapping[str, Any]) -> None:
        ttl = answer.get("HeartbeatTTL")
        if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and 0 < ttl < math.inf:
            self.heartbeat_ttl = float(ttl)
        elif self.heartbeat_ttl <= 0:
            log.warning("server gave no heartbeat ttl, using default ttl=%.1fs", RETRY_MAX)
            self.heartbeat_ttl = RETRY_MAX
        self.last_heartbeat = trio.current_time()
        log.debug("heartbeat ok ttl=%.1fs", self.heartbeat_ttl)

    async def _alloc_poll_loop(self) -> None:
        await self.registered.wait()
        index = 0
        while True:
            args = {"NodeID": self.node_id, "MinIndex": index, "MaxQueryTime": ALLOC_QUERY_WAIT}
            try:
                answer = await self.call("Node.GetAllocs", args, timeout=ALLOC_QUERY_WAIT + RPC_TIMEOUT)
            except RpcError as exc:
                log.warning("alloc poll failed error=%s", exc)
            else:
                allocs = answer.get("Allocs")
                if isinstance(allocs, list):
                    self.allocs.observe(allocs, trio.current_time())
                    self._allocs_changed.set()
                if isinstance(answer.get("Index"), int) and not isinstance(answer["Index"], bool):
                    index = answer["Index"]
            await trio.sleep(ALLOC_POLL_INTERVAL)

    async def _alloc_update_loop(self) -> None:
        """Send the alloc runner's updates, batched; wake on new allocs or a finishing one."""
        retry_at = math.inf
        while True:
            next_finish = self.allocs.next_deadline()
            deadline = min(math.inf if next_finish is None else next_finish, retry_at)
            with trio.move_on_at(deadline):
                await self._allocs_changed.wait()
            self._allocs_changed = trio.Event()
            self.allocs.handle_timers(trio.current_time())
            updates = self.allocs.pending_updates()
            retry_at = math.inf
            if not updates:
                continue
            try:
                await self.call("Node.UpdateAllocs", {"Allocs": updates})
            except RpcError as exc:
                log.warning("alloc update failed count=%d error=%s", len(updates), exc)
                retry_at = trio.current_time() + RETRY_MIN
                continue
            self.allocs.updates_sent(updates)
            log.debug("alloc updates sent count=%d", len(updates))


async def _resolve(host: str, port: int) -> str:
    """One IP for ``host``, IPv4 first as Go's ResolveTCPAddr; literals need no lookup."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"no addresses for {host}")
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(infos[0][4][0])


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))
