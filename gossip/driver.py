"""The trio driver of one ``GossipCore``: UDP socket, TCP listener, streams, timers.

The driver makes no protocol decision. It owns a UDP socket and a TCP listener bound
to the same port (memberlist's transport), and a few tasks:

* the packet reader feeds each datagram to ``core.receive_packet``;
* the timer task sleeps until ``core.next_deadline()`` (or until an input changed
  it) and calls ``core.handle_timers``;
* the packet sender drains a queue of datagrams to ``sendto``;
* the acceptor announces each incoming connection with ``core.accept_stream``;
* one task per TCP stream writes what the core queued for it and feeds what it
  reads back into the core.

Every input goes through ``GossipHandle._feed``, which calls the core and then
performs its outputs at once, synchronously: packets and stream writes go into
queues, new streams are spawned, facts go to the ``on_fact`` callback and to the
``join``/``leave``/``force_leave`` waiters. So no output waits on another input,
and the order in which the core emitted outputs for one stream is kept.
"""

from __future__ import annotations

import errno
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import trio

from .config import GossipConfig
from .events import (CloseStream, ForceLeaveFinished, JoinFinished, LeaveFinished, OpenStream,
                     Output, SendPacket, WriteStream)
from .stats import Counters, GossipStats
from .types import Address, Member

__all__ = ["GossipHandle", "GossipSockets", "open_gossip_sockets", "run_gossip", "dial_error"]

log = logging.getLogger(__name__)

_SEND_QUEUE_PACKETS = 4096
"""Datagrams waiting for the sender task; beyond this they are dropped and counted."""

_READ_CHUNK_BYTES = 65536
_CLOSE = object()
"""Sentinel in a stream's write queue: close after everything queued before it."""


@dataclass
class GossipSockets:
    """A UDP socket and a TCP listener bound to the same address and port."""

    udp: trio.socket.SocketType
    tcp: trio.SocketListener
    address: Address

    @property
    def port(self) -> int:
        return self.address[1]

    async def aclose(self) -> None:
        self.udp.close()
        await self.tcp.aclose()


async def open_gossip_sockets(bind: Address, *, attempts: int = 20) -> GossipSockets:
    """Bind UDP and TCP on ``bind``; with port 0 both share the port the OS picks.

    Raises:
        OSError: the address cannot be bound (in use, not local...).
    """
    host, port = bind
    family = trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET
    for attempt in range(attempts):
        udp = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
        try:
            await udp.bind((host, port))
            actual = udp.getsockname()[1]
            tcp = trio.socket.socket(family, trio.socket.SOCK_STREAM)
            try:
                tcp.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
                await tcp.bind((host, actual))
                tcp.listen(128)
            except OSError:
                tcp.close()
                raise
        except OSError as exc:
            udp.close()
            # With port 0 the TCP port the OS chose for UDP may be taken: pick again.
            if port == 0 and exc.errno == errno.EADDRINUSE and attempt + 1 < attempts:
                continue
            raise
        return GossipSockets(udp, trio.SocketListener(tcp), (host, actual))
    raise AssertionError("unreachable")


def dial_error(dest: Address, exc: BaseException) -> str:
    """Go's wording for a failed TCP dial, e.g. ``dial tcp 1.2.3.4:4648: connect: connection refused``."""
    where = f"{_join_host_port(dest)}"
    if isinstance(exc, trio.TooSlowError):
        return f"dial tcp {where}: i/o timeout"
    if isinstance(exc, OSError) and (exc.errno or exc.strerror):
        return f"dial tcp {where}: connect: {_strerror(exc)}"
    return f"dial tcp {where}: {exc}"


def _strerror(exc: OSError) -> str:
    """Go spells errno texts in lower case ("connection refused")."""
    text = os.strerror(exc.errno) if exc.errno else str(exc.strerror)
    return text[:1].lower() + text[1:]


def _join_host_port(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _io_error(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "i/o timeout"
    if isinstance(exc, OSError) and (exc.errno or exc.strerror):
        return _strerror(exc)
    if isinstance(exc, trio.BrokenResourceError) and isinstance(exc.__cause__, OSError):
        return _io_error(exc.__cause__)
    return str(exc) or type(exc).__name__


@dataclass
class _Stream:
    """The driver's side of one core stream: a write queue and how it ended."""

    stream_id: int
    peer: Address
    send: trio.MemorySendChannel[Any]
    receive: trio.MemoryReceiveChannel[Any]
    cancel: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: bool = False
    """The core knows the stream is over (it closed it, or we reported the end)."""


class GossipHandle:
    """What the agent holds of a running gossip driver: commands and views.

    Args:
        core: the ``GossipCore`` (or anything with its interface) to drive.
        config: the core's config; the driver reads ``tcp_timeout`` and
            ``max_packet_bytes``.
        on_fact: called synchronously with every output that is not an I/O command
            (``MemberJoined``, ``UserEventReceived``, ``QueryReceived``,
            ``ShutdownRequested``...). It must not call back into the handle
            synchronously; hand the fact to a channel instead.
    """

    def __init__(self, core: Any, config: GossipConfig,
                 on_fact: Callable[[Output], None] | None = None) -> None:
        self.core = core
        self.config = config
        self.on_fact = on_fact
        self.counters = Counters()
        self.address: Address | None = None
        self._streams: dict[int, _Stream] = {}
        self._nursery: trio.Nursery | None = None
        self._wake = trio.Event()
        self._packets_send, self._packets_receive = trio.open_memory_channel[tuple[Address, bytes]](
            _SEND_QUEUE_PACKETS)
        self._waiters: dict[tuple[str, int], trio.Event] = {}
        self._results: dict[tuple[str, int], Any] = {}
        self._leave_done = trio.Event()
        self._running = trio.Event()

    # --- running -------------------------------------------------------------

    async def run(self, sockets: GossipSockets, *,
                  task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Drive the core over ``sockets`` until cancelled; reports the bound port."""
        self.address = sockets.address
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._send_packets, sockets.udp)
                nursery.start_soon(self._read_packets, sockets.udp)
                nursery.start_soon(self._accept_streams, sockets.tcp)
                nursery.start_soon(self._run_timers)
                self._drain()  # outputs queued before the driver started (e.g. an early join)
                self._running.set()
                task_status.started(sockets.port)
                await trio.sleep_forever()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await sockets.aclose()
        raise AssertionError("unreachable")

    async def _read_packets(self, udp: trio.socket.SocketType) -> NoReturn:
        # One byte more than the limit, so the core sees an oversized datagram as such.
        size = max(self.config.max_packet_bytes, 65535) + 1
        while True:
            try:
                data, source = await udp.recvfrom(size)
            except OSError as exc:  # e.g. ICMP port unreachable reported on Linux
                self.counters.inc("driver.receive_errors")
                log.debug("udp receive failed error=%s", exc)
                continue
            self._feed(self.core.receive_packet, data, (source[0], source[1]))

    async def _send_packets(self, udp: trio.socket.SocketType) -> NoReturn:
        async for dest, data in self._packets_receive:
            try:
                await udp.sendto(data, dest)
            except OSError as exc:
                self.counters.inc("driver.send_errors")
                log.debug("udp send failed dest=%s:%d error=%s", dest[0], dest[1], exc)
        raise AssertionError("packet queue closed")

    async def _run_timers(self) -> NoReturn:
        while True:
            deadline = self.core.next_deadline()
            wake = self._wake
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await wake.wait()
            if wake.is_set():
                self._wake = trio.Event()
            now = trio.current_time()
            if deadline is not None and now >= deadline:
                self.core.handle_timers(now=now)
                self._drain()

    async def _accept_streams(self, listener: trio.SocketListener) -> NoReturn:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE and friends: back off a little
                self.counters.inc("driver.accept_errors")
                log.error("tcp accept failed error=%s", exc)
                await trio.sleep(0.1)
                continue
            try:
                host, port = stream.socket.getpeername()[:2]
            except OSError:
                await stream.aclose()
                continue
            stream_id = self.core.accept_stream((host, port), now=trio.current_time())
            state = self._register(stream_id, (host, port))
            self._drain()
            self._wake_timers()
            assert self._nursery is not None
            self._nursery.start_soon(self._serve_stream, state, stream)

    # --- inputs and outputs ----------------------------------------------------

    def _feed(self, method: Callable[..., Any], *args: Any) -> Any:
        """Call one core input with ``now``, then perform its outputs at once."""
        result = method(*args, now=trio.current_time())
        self._drain()
        self._wake_timers()
        return result

    def _wake_timers(self) -> None:
        self._wake.set()

    def _drain(self) -> None:
        """Perform every queued output of the core without blocking."""
        if self._nursery is None:
            return  # not running yet: run() drains when it starts
        for output in self.core.take_outputs():
            if isinstance(output, SendPacket):
                try:
                    self._packets_send.send_nowait((output.dest, output.data))
                except trio.WouldBlock:
                    self.counters.inc("driver.send_queue_full")
            elif isinstance(output, OpenStream):
                state = self._register(output.stream_id, output.dest)
                state.send.send_nowait(output.data)
                self._nursery.start_soon(self._dial_stream, state)
            elif isinstance(output, WriteStream):
                state = self._streams.get(output.stream_id)
                if state is not None and not state.done:
                    state.send.send_nowait(output.data)
            elif isinstance(output, CloseStream):
                state = self._streams.get(output.stream_id)
                if state is not None and not state.done:
                    state.done = True
                    state.send.send_nowait(_CLOSE)
            else:
                self._fact(output)

    def _fact(self, output: Output) -> None:
        key: tuple[str, int] | None = None
        if isinstance(output, JoinFinished):
            key = ("join", output.join_id)
        elif isinstance(output, ForceLeaveFinished):
            key = ("force_leave", output.request_id)
        elif isinstance(output, LeaveFinished):
            self._leave_done.set()
        if key is not None:
            self._results[key] = output
            waiter = self._waiters.pop(key, None)
            if waiter is not None:
                waiter.set()
        if self.on_fact is not None:
            self.on_fact(output)

    # --- streams -----------------------------------------------------------------

    def _register(self, stream_id: int, peer: Address) -> _Stream:
        send, receive = trio.open_memory_channel[Any](math.inf)
        state = _Stream(stream_id, peer, send, receive)
        assert stream_id not in self._streams, f"stream id {stream_id} reused"
        self._streams[stream_id] = state
        return state

    async def _dial_stream(self, state: _Stream) -> None:
        host, port = state.peer
        family = trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET
        sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
        try:
            with trio.fail_after(self.config.tcp_timeout):
                await sock.connect((host, port))
        except (OSError, trio.TooSlowError) as exc:
            sock.close()
            self.counters.inc("driver.dial_errors")
            self._streams.pop(state.stream_id, None)
            self._end_stream(state, dial_error(state.peer, exc))
            return
        await self._serve_stream(state, trio.SocketStream(sock))

    async def _serve_stream(self, state: _Stream, stream: trio.SocketStream) -> None:
        try:
            with state.cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_stream, state, stream, nursery.cancel_scope)
                    await self._read_stream(state, stream)
                    # EOF from the peer: let queued writes (and the close) finish.
                    await trio.sleep_forever()
        finally:
            self._streams.pop(state.stream_id, None)
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _read_stream(self, state: _Stream, stream: trio.SocketStream) -> None:
        while True:
            try:
                data = await stream.receive_some(_READ_CHUNK_BYTES)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._end_stream(state, f"read tcp {_join_host_port(state.peer)}: {_io_error(exc)}")
                return
            if state.done:
                return
            if not data:
                self._end_stream(state, None)
                return
            self._feed(self.core.stream_data, state.stream_id, data)

    async def _write_stream(self, state: _Stream, stream: trio.SocketStream,
                            scope: trio.CancelScope) -> None:
        async for item in state.receive:
            if item is _CLOSE:
                break
            try:
                with trio.fail_after(self.config.tcp_timeout):
                    await stream.send_all(item)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                    trio.TooSlowError) as exc:
                self._end_stream(state, f"write tcp {_join_host_port(state.peer)}: {_io_error(exc)}")
                break
        scope.cancel()

    def _end_stream(self, state: _Stream, failure: str | None) -> None:
        """Tell the core a stream ended (closed by the peer, or failed), once."""
        if state.done:
            return
        state.done = True
        if failure is None:
            self._feed(self.core.stream_closed, state.stream_id)
        else:
            log.debug("stream failed id=%d peer=%s reason=%s", state.stream_id,
                      _join_host_port(state.peer), failure)
            self._feed(self.core.stream_failed, state.stream_id, failure)
        state.send.send_nowait(_CLOSE)

    # --- commands for the agent ----------------------------------------------------

    async def wait_running(self) -> None:
        """Wait until ``run`` has started (sockets bound, tasks running)."""
        await self._running.wait()

    async def join(self, seeds: Sequence[Address]) -> tuple[int, tuple[str, ...]]:
        """Push/pull with every seed; returns (how many answered, errors)."""
        join_id = self.core.join(list(seeds), now=trio.current_time())
        result = await self._wait_result("join", join_id)
        return result.num_joined, tuple(result.errors)

    async def leave(self, timeout: float) -> bool:
        """Leave gracefully; True when the core reported ``LeaveFinished`` in time."""
        self._feed(self.core.leave)
        with trio.move_on_after(timeout):
            await self._leave_done.wait()
        return self._leave_done.is_set()

    async def force_leave(self, name: str, prune: bool) -> str | None:
        """Force a member to left (and maybe prune it); the core's error or None."""
        request_id = self.core.force_leave(name, prune, now=trio.current_time())
        result = await self._wait_result("force_leave", request_id)
        return result.error

    def respond_query(self, handle: int, payload: bytes) -> None:
        self._feed(self.core.respond_query, handle, payload)

    def user_event(self, name: str, payload: bytes, coalesce: bool = True) -> None:
        self._feed(self.core.user_event, name, payload, coalesce)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._feed(self.core.set_tags, tags)

    async def _wait_result(self, kind: str, request_id: int) -> Any:
        key = (kind, request_id)
        if key not in self._results:
            waiter = self._waiters[key] = trio.Event()
            self._drain()
            self._wake_timers()
            await waiter.wait()
        return self._results.pop(key)

    def members(self) -> list[Member]:
        return self.core.members()

    def local_member(self) -> Member:
        return self.core.local_member()

    def stats(self) -> GossipStats:
        """The core's stats with the driver's own counters (``driver.*``) merged in."""
        stats = self.core.stats()
        merged = dict(stats.counters)
        for name, value in self.counters.snapshot().items():
            merged[name] = merged.get(name, 0) + value
        return replace(stats, counters=dict(sorted(merged.items())))


async def run_gossip(core: Any, *, bind: Address | GossipSockets,
                     config: GossipConfig | None = None, handle: GossipHandle | None = None,
                     on_fact: Callable[[Output], None] | None = None,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> NoReturn:
    """Own the UDP socket, the TCP listener, the streams and the timers of one core.

    Args:
        core: the ``GossipCore``.
        bind: an address to bind (port 0 picks one), or sockets bound already with
            ``open_gossip_sockets`` (needed when the core must know its port first).
        config: the core's ``GossipConfig`` (default: ``core.config``).
        handle: the ``GossipHandle`` to run (for join/leave/...); one is made if None.
        on_fact: see ``GossipHandle``; used only when ``handle`` is None.

    Reports the bound port through ``task_status``; runs until cancelled.
    """
    if handle is None:
        handle = GossipHandle(core, config if config is not None else core.config, on_fact)
    sockets = bind if isinstance(bind, GossipSockets) else await open_gossip_sockets(bind)
    await handle.run(sockets, task_status=task_status)
