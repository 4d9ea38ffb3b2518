"""The trio driver of one ``GossipCore``: UDP socket, TCP listener, streams, timers.

The driver makes no protocol decision. It owns a UDP socket and a TCP listener bound
to the same port (memberlist's transport), and a few tasks:

* the packet reader feeds each datagram to ``core.receive_packet``;
* the timer task sleeps until ``core.next_deadline()`` (or until an input changed
  it) and calls ``core.handle_timers``; first it reads, without blocking, every
  datagram already waiting in the socket buffer. After an event-loop stall the timer
  and the reader wake in the same trio batch in random order, and the reader takes
  one datagram per batch: without this drain a probe timeout could fire while its
  ack sat unread in the buffer, and a loaded node would suspect healthy peers;
* the acceptor announces each incoming connection with ``core.accept_stream``;
* one task per TCP stream writes what the core queued for it and feeds what it
  reads back into the core.

Datagrams are sent at once, with a non-blocking ``sendto`` on the driver's own
descriptor, in the order the core emitted them. Only when the kernel's send buffer
is full (EAGAIN) do they wait in a bounded queue for the sender task, which awaits
writability; new datagrams then queue behind them to keep the order. A full queue
means the kernel has been refusing datagrams for thousands of sends: those are
dropped, counted and reported by a rate-limited WARNING (Go's transport would block
the caller instead; a core must never wait on I/O).

Every input goes through ``GossipHandle._feed``, which calls the core and then
performs its outputs at once, synchronously: packets go out (or to the queue),
stream writes go to per-stream queues, new streams are spawned, facts go to the
``on_fact`` callback and to the ``join``/``force_leave`` waiters. So no output waits
on another input, and the order in which the core emitted outputs for one stream is
kept.

An optional fault hook (``fault_hook``, duck-typed: ``outbound(address) -> float |
None`` and ``inbound(address) -> bool``, addresses as "ip:port"; the agent passes its
fault filter) sits in front of both transports. Each outbound datagram is dropped or
sent after the delay it returns (from a task of its own, so the send path never
waits); each inbound datagram it refuses is dropped before the core sees it. A
refused dial behaves like a blackholed one: it fails with "i/o timeout" after
``tcp_timeout``, as a dial into a real partition does; a delayed dial connects after
the delay. An accepted connection it refuses is closed at once. Each write on a
stream asks too: it waits the delay, or, refused, the stream stalls like one into a
partition and fails with "i/o timeout" after ``tcp_timeout`` (the peer's core times
it out on its side). Without a hook none of this code runs.

Network errors never end a task: ICMP errors reported on the UDP socket
(``ConnectionRefusedError`` on Linux after a port unreachable), failed sends, failed
accepts and dials are counted under ``driver.*`` and logged, at most one WARNING per
reason every ``_WARN_INTERVAL`` seconds, carrying the count since the previous one.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import math
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn, Protocol

import trio

from .config import GossipConfig
from .events import (CloseStream, ForceLeaveFinished, JoinFinished, LeaveFinished, OpenStream,
                     Output, SendPacket, WriteStream)
from .stats import Counters, GossipStats
from .types import Address, Member

__all__ = ["FaultHook", "GossipHandle", "GossipSockets", "open_gossip_sockets", "run_gossip",
           "dial_error"]

log = logging.getLogger(__name__)

_SEND_QUEUE_PACKETS = 4096
"""Datagrams waiting for the kernel's send buffer to drain; beyond this they are dropped
and counted. Only used while ``sendto`` says EAGAIN, so it is empty almost always."""

_DRAIN_LIMIT_PACKETS = 4096
"""Most datagrams read ahead of one timer run, so a flood cannot starve the timers."""
_READ_BATCH_PACKETS = 64
"""Most datagrams the reader feeds before it lets other tasks run."""

_UDP_RECEIVE_BUFFER_BYTES = 2 * 1024 * 1024
"""memberlist's ``udpRecvBufSize``: asked for, halved on refusal down to the floor."""
_UDP_RECEIVE_BUFFER_FLOOR_BYTES = 64 * 1024

_WARN_INTERVAL = 10.0
"""Seconds between two WARNING lines for the same reason (the rest are counted)."""

_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
"""The descriptor is non-blocking already (trio set it); the flag makes sure."""

_TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        "ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN",
        "ENOBUFS", "ENOMEM", "EMSGSIZE", "ETIMEDOUT", "EPROTO", "EPERM", "EACCES")
    if hasattr(errno, name))
"""Errors a UDP receive can report for one earlier datagram (ICMP) or a passing
shortage; the socket keeps working. Anything else is a bug or a dead socket."""

_READ_CHUNK_BYTES = 65536
_DELAYED_PACKETS = 4096
"""Datagrams a fault hook's delay may hold at once; beyond this they are dropped and counted."""
_CLOSE = object()
"""Sentinel in a stream's write queue: close after everything queued before it."""


class FaultHook(Protocol):
    """What the driver asks before each send and after each receive (addresses "ip:port")."""

    def outbound(self, address: str) -> float | None:
        """None drops the datagram or dial; else the seconds to delay it (0.0: none)."""

    def inbound(self, address: str) -> bool:
        """False drops the datagram or closes the accepted connection."""


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
            _enlarge_receive_buffer(udp)
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


def _enlarge_receive_buffer(udp: Any) -> int:
    """Ask for a 2 MiB UDP receive buffer, halving on refusal; returns the size granted.

    Gossip arrives in bursts (a push of broadcasts to every member, acks from indirect
    probes), and datagrams beyond a full buffer are lost: memberlist does the same
    (``setUDPRecvBuf``). Linux caps the request at ``net.core.rmem_max`` silently and
    reports twice the size it reserves; BSDs refuse a size above their limit.
    """
    size = _UDP_RECEIVE_BUFFER_BYTES
    while True:
        try:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            break
        except OSError as exc:
            if size // 2 < _UDP_RECEIVE_BUFFER_FLOOR_BYTES:
                log.debug("udp receive buffer not enlarged error=%s", exc)
                break
            size //= 2
    granted = int(udp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    log.debug("udp receive buffer requested_bytes=%d granted_bytes=%d", size, granted)
    return granted


def _sendto_nowait(sock: socket.socket, data: bytes, dest: Address) -> None:
    """Hand one datagram to the kernel or raise ``BlockingIOError`` (a seam for tests)."""
    sock.sendto(data, _DONTWAIT, dest)


@functools.lru_cache(maxsize=1024)
def _is_numeric_host(host: str) -> bool:
    """A literal IP address: a blocking ``sendto`` will not stop to resolve it."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _WarningLimiter:
    """At most one line per reason every ``interval`` seconds, with the count since the last.

    The reasons are a fixed handful of driver failures, so the maps stay small.
    """

    def __init__(self, interval: float = _WARN_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._pending: dict[str, int] = {}

    def warn(self, reason: str, now: float, message: str, *args: object,
             level: int = logging.WARNING) -> bool:
        """Log ``message % args`` with ``reason=`` and ``count=`` unless logged lately."""
        count = self._pending.get(reason, 0) + 1
        last = self._last.get(reason)
        if last is not None and now - last < self.interval:
            self._pending[reason] = count
            return False
        self._last[reason] = now
        self._pending[reason] = 0
        log.log(level, message + " reason=%s count=%d", *args, reason, count)
        return True


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


@dataclass
class _Waiter:
    """One ``join``/``force_leave`` caller waiting for its result fact."""

    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None


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
        fault_hook: an optional ``FaultHook`` in front of UDP and TCP (see the module
            docstring); ``set_fault_hook`` installs or removes one later.
    """

    def __init__(self, core: Any, config: GossipConfig,
                 on_fact: Callable[[Output], None] | None = None, *,
                 fault_hook: FaultHook | None = None) -> None:
        self.core = core
        self._fault_hook = fault_hook
        self._delayed_packets = 0
        """Datagrams a fault hook's delay holds (each in a task of its own)."""
        self.config = config
        self.on_fact = on_fact
        self.counters = Counters()
        self.address: Address | None = None
        self._streams: dict[int, _Stream] = {}
        self._nursery: trio.Nursery | None = None
        self._wake = trio.Event()
        self._timer_deadline = -math.inf  # what the timer task sleeps until (-inf: awake)
        self._packets_send, self._packets_receive = trio.open_memory_channel[tuple[Address, bytes]](
            _SEND_QUEUE_PACKETS)
        self._waiters: dict[tuple[str, int], _Waiter] = {}
        """Commands awaiting their result; an entry lives exactly as long as its caller."""
        self._raw_udp: socket.socket | None = None
        """A duplicate of the UDP descriptor for non-blocking reads and sends."""
        self._send_backlog = 0
        """Datagrams in the send queue or being sent by the sender task."""
        self._warnings = _WarningLimiter()
        self._leave_done = trio.Event()
        self._running = trio.Event()

    # --- running -------------------------------------------------------------

    async def run(self, sockets: GossipSockets, *,
                  task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Drive the core over ``sockets`` until cancelled; reports the bound port."""
        self.address = sockets.address
        udp = sockets.udp
        self._raw_udp = socket.fromfd(udp.fileno(), udp.family, udp.type, udp.proto)
        self._raw_udp.setblocking(False)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._send_packets, sockets.udp)
                nursery.start_soon(self._read_packets)
                nursery.start_soon(self._accept_streams, sockets.tcp)
                nursery.start_soon(self._run_timers)
                self._drain()  # outputs queued before the driver started (e.g. an early join)
                self._running.set()
                task_status.started(sockets.port)
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._raw_udp.close()
            self._raw_udp = None
            with trio.CancelScope(shield=True):
                await sockets.aclose()
        raise AssertionError("unreachable")

    @property
    def _receive_size(self) -> int:
        # One byte more than the limit, so the core sees an oversized datagram as such.
        return max(self.config.max_packet_bytes, 65535) + 1

    async def _read_packets(self) -> NoReturn:
        # Read with plain non-blocking calls and feed each datagram before the next
        # schedule point: trio's own recvfrom yields after taking a datagram, and the
        # timer task could then run handle_timers while that datagram is in our hands.
        assert self._raw_udp is not None
        while True:
            await trio.lowlevel.wait_readable(self._raw_udp)
            self._receive_nowait(_READ_BATCH_PACKETS)

    def _receive_nowait(self, limit: int) -> int:
        """Feed the core the datagrams already in the socket buffer; returns how many."""
        assert self._raw_udp is not None
        size = self._receive_size
        for count in range(limit):
            try:
                data, source = self._raw_udp.recvfrom(size, _DONTWAIT)
            except BlockingIOError:
                return count
            except OSError as exc:  # reported once; the next call reads on
                self._receive_failed(exc)
                continue
            if self._fault_hook is not None and not self._fault_hook.inbound(
                    _join_host_port((source[0], source[1]))):
                self.counters.inc("driver.fault_dropped")
                continue
            self._feed(self.core.receive_packet, data, (source[0], source[1]))
        return limit

    def _receive_failed(self, exc: OSError) -> None:
        """Count an error the UDP socket reported; re-raise one that is not about a datagram."""
        if exc.errno not in _TRANSIENT_ERRNOS:
            raise exc
        # On Linux an ICMP error (port unreachable...) for an earlier send can surface
        # here as ConnectionRefusedError; the socket is fine.
        self.counters.inc("driver.receive_errors")
        self._warnings.warn("receive_error", trio.current_time(),
                            "udp receive failed error=%s", _io_error(exc))

    def _send_packet_nowait(self, dest: Address, data: bytes) -> None:
        """Send one datagram now, or queue it behind earlier ones; never blocks."""
        if self._send_backlog == 0 and self._raw_udp is not None and _is_numeric_host(dest[0]):
            try:
                _sendto_nowait(self._raw_udp, data, dest)
                return
            except BlockingIOError:
                pass  # the kernel's send buffer is full: the sender task waits for room
            except OSError as exc:
                self._send_failed(dest, exc)
                return
        try:
            self._packets_send.send_nowait((dest, data))
        except trio.WouldBlock:
            self.counters.inc("driver.send_queue_full")
            self._warnings.warn("send_queue_full", trio.current_time(),
                                "udp send queue full, datagram dropped dest=%s queued=%d",
                                _join_host_port(dest), self._send_backlog)
            return
        self._send_backlog += 1

    def _send_packet_faulted(self, dest: Address, data: bytes) -> None:
        """Send one datagram as the fault hook says: drop it, now, or after a delay."""
        assert self._fault_hook is not None and self._nursery is not None
        delay = self._fault_hook.outbound(_join_host_port(dest))
        if delay is None:
            self.counters.inc("driver.fault_dropped_sends")
        elif delay <= 0:
            self._send_packet_nowait(dest, data)
        elif self._delayed_packets >= _DELAYED_PACKETS:
            self.counters.inc("driver.fault_delay_full")
        else:
            self._delayed_packets += 1
            self.counters.inc("driver.fault_delayed_sends")
            self._nursery.start_soon(self._send_packet_later, delay, dest, data)

    async def _send_packet_later(self, delay: float, dest: Address, data: bytes) -> None:
        try:
            await trio.sleep(delay)
            self._send_packet_nowait(dest, data)
        finally:
            self._delayed_packets -= 1

    def set_fault_hook(self, hook: FaultHook | None) -> None:
        """Install a fault hook in front of UDP and TCP (None removes it); see the module docstring."""
        self._fault_hook = hook

    def _send_failed(self, dest: Address, exc: OSError) -> None:
        self.counters.inc("driver.send_errors")
        self._warnings.warn("send_error", trio.current_time(), "udp send failed dest=%s error=%s",
                            _join_host_port(dest), _io_error(exc))

    async def _send_packets(self, udp: trio.socket.SocketType) -> NoReturn:
        async for dest, data in self._packets_receive:
            try:
                await udp.sendto(data, dest)  # waits for room in the send buffer
            except OSError as exc:
                self._send_failed(dest, exc)
            finally:
                self._send_backlog -= 1
        raise AssertionError("packet queue closed")

    async def _run_timers(self) -> NoReturn:
        while True:
            deadline = self.core.next_deadline()
            self._timer_deadline = math.inf if deadline is None else deadline
            wake = self._wake
            with trio.move_on_at(self._timer_deadline):
                await wake.wait()
            self._timer_deadline = -math.inf  # awake: any input re-checks at the loop top
            if wake.is_set():
                self._wake = trio.Event()
            if deadline is not None and trio.current_time() >= deadline:
                # Datagrams that arrived before now (an ack during a stall) go first.
                self._receive_nowait(_DRAIN_LIMIT_PACKETS)
                self.core.handle_timers(now=trio.current_time())
                self._drain()

    async def _accept_streams(self, listener: trio.SocketListener) -> NoReturn:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE and friends: back off a little
                self.counters.inc("driver.accept_errors")
                self._warnings.warn("accept_error", trio.current_time(), "tcp accept failed error=%s",
                                    _io_error(exc), level=logging.ERROR)
                await trio.sleep(0.1)
                continue
            try:
                host, port = stream.socket.getpeername()[:2]
            except OSError:
                await stream.aclose()
                continue
            if self._fault_hook is not None and not self._fault_hook.inbound(
                    _join_host_port((host, port))):
                self.counters.inc("driver.fault_closed_accepts")
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
        self._wake_timers_if_sooner()
        return result

    def _wake_timers(self) -> None:
        self._wake.set()

    def _wake_timers_if_sooner(self) -> None:
        # Waking the timer task costs a task switch per packet; only do it when the
        # input moved the core's next deadline before the one the task sleeps until.
        deadline = self.core.next_deadline()
        if deadline is not None and deadline < self._timer_deadline:
            self._wake.set()

    def _drain(self) -> None:
        """Perform every queued output of the core without blocking."""
        if self._nursery is None:
            return  # not running yet: run() drains when it starts
        for output in self.core.take_outputs():
            if isinstance(output, SendPacket):
                if self._fault_hook is None:
                    self._send_packet_nowait(output.dest, output.data)
                else:
                    self._send_packet_faulted(output.dest, output.data)
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
            waiter = self._waiters.get(key)
            if waiter is not None:  # else its caller was cancelled: on_fact still hears it
                waiter.result = output
                waiter.done.set()
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
        sock: trio.socket.SocketType | None = None
        try:
            if self._fault_hook is not None:
                await self._fault_wait(state.peer, "driver.fault_blackholed_dials")
            # Creating the socket can fail too (EMFILE): that is a failed dial, not a crash.
            sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
            with trio.fail_after(self.config.tcp_timeout):
                await sock.connect((host, port))
        except (OSError, trio.TooSlowError) as exc:
            if sock is not None:
                sock.close()
            self.counters.inc("driver.dial_errors")
            self._streams.pop(state.stream_id, None)
            self._end_stream(state, dial_error(state.peer, exc))
            return
        except BaseException:  # cancelled while connecting
            if sock is not None:
                sock.close()
            self._streams.pop(state.stream_id, None)
            raise
        await self._serve_stream(state, trio.SocketStream(sock))

    async def _fault_wait(self, peer: Address, counter: str) -> None:
        """Apply the fault hook to a dial or a stream write: wait the delay it gives, or,
        refused, stall as into a partition and raise ``TooSlowError`` at ``tcp_timeout``."""
        assert self._fault_hook is not None
        delay = self._fault_hook.outbound(_join_host_port(peer))
        if delay is None:
            self.counters.inc(counter)
            await trio.sleep(self.config.tcp_timeout)
            raise trio.TooSlowError
        if delay > 0:
            await trio.sleep(delay)

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
                if self._fault_hook is not None:
                    await self._fault_wait(state.peer, "driver.fault_stalled_writes")
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
        """Wait for the fact that ends request ``(kind, request_id)``; forget it if cancelled."""
        key = (kind, request_id)
        assert key not in self._waiters, f"{kind} id {request_id} reused"
        # Register before draining: the result can only come out of the core's outputs.
        waiter = self._waiters[key] = _Waiter()
        try:
            self._drain()
            self._wake_timers()
            await waiter.done.wait()
        finally:
            del self._waiters[key]
        return waiter.result

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
                     fault_hook: FaultHook | None = None,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> NoReturn:
    """Own the UDP socket, the TCP listener, the streams and the timers of one core.

    Args:
        core: the ``GossipCore``.
        bind: an address to bind (port 0 picks one), or sockets bound already with
            ``open_gossip_sockets`` (needed when the core must know its port first).
        config: the core's ``GossipConfig`` (default: ``core.config``).
        handle: the ``GossipHandle`` to run (for join/leave/...); one is made if None.
        on_fact: see ``GossipHandle``; used only when ``handle`` is None.
        fault_hook: see ``GossipHandle``; installed on ``handle`` too when given.

    Reports the bound port through ``task_status``; runs until cancelled.
    """
    if handle is None:
        handle = GossipHandle(core, config if config is not None else core.config, on_fact,
                              fault_hook=fault_hook)
    elif fault_hook is not None:
        handle.set_fault_hook(fault_hook)
    sockets = bind if isinstance(bind, GossipSockets) else await open_gossip_sockets(bind)
    await handle.run(sockets, task_status=task_status)
