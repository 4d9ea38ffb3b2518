"""The rpc port: server RPC and Raft on one TCP listener, the first byte choosing.

Like Nomad's rpc port, each connection opens with one byte: ``0x01`` for RPC,
``0x02`` for Raft. After it come frames ``[u32 big-endian length][payload]``:

* RPC: request ``{"Seq", "Method", "Args"}``, response ``{"Seq", "Error", "Result"}``
  (msgpack). Requests on one connection may be answered out of order.
* Raft: one-way frames, each a ``raftlite.codec`` message. Answers travel on the
  answering server's own connection, so each side keeps one outbound connection per
  peer (``RaftTransport``) and never writes on an inbound one.

Anything else (an unknown first byte, an oversized or undecodable frame) is logged,
counted under ``dropped.<reason>`` and closes that connection only. Every transport
passes the fault filter (``agent/faults.py``) when one is installed.

With ``tls.rpc`` (``agent/tlsutil.py``) every connection opens with ``0x04`` (Nomad's
``RpcTLS``), then a mutual-TLS handshake, then the usual protocol byte inside TLS
(``dial`` does this for every dialler). The server then refuses plain connections
(``dropped.tls_required``), failed handshakes (``dropped.tls_handshake``: e.g. a
certificate of another CA) and, with ``verify_server_hostname``, Raft connections whose
certificate does not name ``server.<region>.nomad`` (``dropped.raft_tls_name``).
"""

from __future__ import annotations

import itertools
import logging
import struct
from collections import Counter
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

import msgpack
import trio

from .tlsutil import RpcTLS, verify_peer_name

from raftlite.codec import decode_message, encode_message
from raftlite.errors import RaftProtocolError
from raftlite.messages import Message

__all__ = ["NOT_LEADER", "RPC_BYTE", "RAFT_BYTE", "TLS_BYTE", "dial", "RaftTransport", "RpcError", "RpcPool", "RpcServer",
           "RpcUnavailable", "split_address"]

log = logging.getLogger(__name__)

RPC_BYTE = 0x01
RAFT_BYTE = 0x02
TLS_BYTE = 0x04
"""Nomad's ``RpcTLS``: a TLS handshake follows, then the real protocol byte inside it."""
MAX_FRAME = 64 * 2**20
_HEADER = struct.Struct(">I")
_FIRST_BYTE_TIMEOUT = 10.0
_DIAL_TIMEOUT = 2.0
_PEER_QUEUE = 4096

Handler = Callable[[Any], Awaitable[Any]]

STREAM_BYTE = 0x03
"""A streaming call (``agent/rpc_stream.py``): one request frame ``{"Method", "Args"}``,
then a header frame ``{"Error", "Code"}`` and frames of raw bytes from the server until
either side closes (Nomad's ``RpcStreaming`` byte)."""

StreamHandler = Callable[[Any], Awaitable[AsyncIterator[bytes]]]
"""A stream method: checks its args (raising ``StreamRefused`` or ``RpcError`` to refuse)
and returns the async iterator of chunks to send."""


class FaultHook(Protocol):
    def outbound(self, address: str) -> float | None: ...

    def inbound(self, address: str) -> bool: ...


class RpcError(Exception):
    """The remote handler answered with an error (its text is the message)."""


class RpcUnavailable(RpcError):
    """The remote server could not be reached or did not answer in time.

    ``sent`` tells whether the request may have reached the server: False for a failed
    dial (safe to retry anywhere), True when it was written and then the connection
    broke or the answer did not come (the call may or may not have taken effect).
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


NOT_LEADER = "rpc error: not leader"
"""The error text of a server-only call that reached a server that does not lead."""


class FrameError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def split_address(address: str) -> tuple[str, int]:
    """``"ip:port"`` or ``"[v6]:port"`` -> (host, port); ValueError when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"bad address {address!r}")
    return host.strip("[]"), int(port)


def frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


class FrameReader:
    """Incremental ``[u32 len][payload]`` splitter."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= 4:
            (length,) = _HEADER.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise FrameError("oversized")
            if len(self._buffer) < 4 + length:
                break
            frames.append(bytes(self._buffer[4:4 + length]))
            del self._buffer[:4 + length]
        return frames


class RpcServer:
    """Accepts rpc-port connections and dispatches them by their first byte.

    Args:
        handlers: RPC method name -> async function of the decoded args.
        raft_inbound: takes each decoded raft message (never blocks).
        tls: with ``tls.rpc``: only ``0x04`` + TLS connections are accepted.
    """

    def __init__(self, handlers: dict[str, Handler], raft_inbound: Callable[[Message], None], *,
                 tls: RpcTLS | None = None) -> None:
        self.handlers = handlers
        self._raft_inbound = raft_inbound
        self.tls = tls
        self.fault_hook: FaultHook | None = None
        self.counters: Counter[str] = Counter()
        self.stream_handlers: dict[str, StreamHandler] = {}
        """Streaming methods, served on connections that start with ``STREAM_BYTE``."""

    async def serve(self, listener: trio.SocketListener, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with listener, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    self.counters["accept_errors"] += 1
                    log.error("rpc accept failed error=%s", exc)
                    await trio.sleep(0.1)
                    continue
                nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        peer = _peer(stream)
        async with stream:
            try:
                if self.fault_hook is not None and not self.fault_hook.inbound(peer):
                    self.counters["fault_dropped"] += 1
                    return
                with trio.move_on_after(_FIRST_BYTE_TIMEOUT) as scope:
                    first = await stream.receive_some(1)
                if scope.cancelled_caught or not first:
                    return
                if first[0] == TLS_BYTE or self.tls is not None:
                    upgraded = await self._upgrade_tls(stream, peer, first[0])
                    if upgraded is None:
                        return
                    stream, first = upgraded   # the inner protocol byte picks, as below
                if first[0] == RPC_BYTE:
                    await self._serve_rpc(stream, peer)
                elif first[0] == RAFT_BYTE:
                    await self._serve_raft(stream, peer)
                elif first[0] == STREAM_BYTE:
                    from .rpc_stream import serve_stream   # agent/rpc_stream.py: the stream protocol
                    await serve_stream(self, stream, peer)
                else:
                    self._drop(peer, "unknown_protocol", f"first byte 0x{first[0]:02x}")
            except FrameError as exc:
                self._drop(peer, exc.reason, "bad frame")
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                self.counters["connection_errors"] += 1

    def _drop(self, peer: str, reason: str, detail: str) -> None:
        self.counters[f"dropped.{reason}"] += 1
        log.warning("rpc connection dropped peer=%s reason=%s detail=%s", peer, reason, detail)

    async def _upgrade_tls(self, stream: Any, peer: str, first: int) -> tuple[Any, bytes] | None:
        """The TLS layer of a connection: ``0x04``, a handshake, then the inner first byte.

        Returns the TLS stream and the inner protocol byte, or None when the connection
        was refused (logged and counted), as Nomad's ``handleConn`` refuses them.
        """
        tls = self.tls
        if tls is None:
            self._drop(peer, "tls_not_configured", "TLS connection attempted, server not configured for TLS")
            return None
        if first != TLS_BYTE:
            self._drop(peer, "tls_required", f"non-TLS connection (first byte 0x{first:02x}) with tls.rpc set")
            return None
        # https_compatible: a peer closing without close_notify reads as a plain EOF, as over
        # TCP; frames are length-prefixed, so a truncation cannot pass for a whole message.
        ssl_stream = trio.SSLStream(stream, tls.server, server_side=True, https_compatible=True)
        with trio.move_on_after(_FIRST_BYTE_TIMEOUT) as scope:
            try:
                await ssl_stream.do_handshake()
                inner = await ssl_stream.receive_some(1)
            except trio.BrokenResourceError as exc:
                self._drop(peer, "tls_handshake", str(exc.__cause__ or exc))
                return None
        if scope.cancelled_caught:
            self._drop(peer, "tls_handshake", "timeout")
            return None
        if not inner:
            return None
        if inner[0] == TLS_BYTE:
            self._drop(peer, "tls_nested", "TLS inside TLS")
            return None
        if (inner[0] == RAFT_BYTE and tls.verify_server_hostname
                and not verify_peer_name(ssl_stream.getpeercert(), tls.server_name)):
            self._drop(peer, "raft_tls_name", f"raft peer certificate does not name {tls.server_name}")
            return None
        return ssl_stream, inner

    async def _serve_raft(self, stream: trio.abc.Stream, peer: str) -> None:
        reader = FrameReader()
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            for payload in reader.feed(data):
                try:
                    message = decode_message(payload)
                except RaftProtocolError as exc:
                    self.counters[f"dropped.raft_{exc.reason}"] += 1
                    log.warning("raft message dropped peer=%s reason=%s error=%s", peer, exc.reason, exc)
                    continue
                hook = self.fault_hook
                if hook is not None and not hook.inbound(message.source_address):
                    self.counters["fault_dropped"] += 1
                    continue
                self.counters["raft_received"] += 1
                self._raft_inbound(message)

    async def _serve_rpc(self, stream: trio.abc.Stream, peer: str) -> None:
        reader = FrameReader()
        write_lock = trio.Lock()
        async with trio.open_nursery() as nursery:
            # Errors are handled inside the nursery: trio would wrap them in an
            # ExceptionGroup that the caller's except clauses do not match.
            try:
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    for payload in reader.feed(data):
                        request = _decode_request(payload)
                        if request is None:
                            self._drop(peer, "rpc_decode", "bad request")
                            nursery.cancel_scope.cancel()
                            return
                        nursery.start_soon(self._answer, stream, write_lock, *request)
            except FrameError as exc:
                self._drop(peer, exc.reason, "bad frame")
                nursery.cancel_scope.cancel()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                self.counters["connection_errors"] += 1
                nursery.cancel_scope.cancel()

    async def _answer(self, stream: trio.abc.Stream, lock: trio.Lock, seq: int, method: str,
                      args: Any) -> None:
        handler = self.handlers.get(method)
        error, result = "", None
        if handler is None:
            error = f"rpc: can't find method {method}"
        else:
            try:
                result = await handler(args)
            except RpcError as exc:
                error = str(exc)
            except Exception as exc:  # a handler bug must not take the agent down with it
                self.counters["handler_errors"] += 1
                log.exception("rpc handler failed method=%s", method)
                error = f"rpc error: internal error in {method}: {exc}"
        self.counters["rpc_served"] += 1
        payload = msgpack.packb({"Seq": seq, "Error": error, "Result": result}, use_bin_type=True)
        async with lock:
            try:
                await stream.send_all(frame(payload))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


def _decode_request(payload: bytes) -> tuple[int, str, Any] | None:
    try:
        obj = msgpack.unpackb(payload, raw=False)
    except Exception:  # msgpack raises several unrelated types on bad bytes
        return None
    if not isinstance(obj, dict):
        return None
    seq, method = obj.get("Seq"), obj.get("Method")
    if not isinstance(seq, int) or not isinstance(method, str):
        return None
    return seq, method, obj.get("Args")


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "unknown"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _RpcConnection:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.lock = trio.Lock()
        self.pending: dict[int, tuple[trio.Event, list[Any]]] = {}
        self.broken = False


class RpcPool:
    """Outbound RPC: one pooled connection per server address, requests multiplexed.

    ``local_ip`` binds outgoing connections to this node's address, so peers (and their
    fault filters) see which node dials them on a loopback cluster. ``tls`` (``tls.rpc``)
    makes every connection ``0x04`` + TLS (see ``dial``).
    """

    def __init__(self, local_ip: str | None = None, *, tls: RpcTLS | None = None) -> None:
        self.local_ip = local_ip
        self.tls = tls
        self._connections: dict[str, _RpcConnection] = {}
        self._dialing: dict[str, trio.Lock] = {}
        self._seq = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        self.fault_hook: FaultHook | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def call(self, address: str, method: str, args: Any, timeout: float = 10.0) -> Any:
        """Call ``method`` on the server at ``address``.

        Raises:
            RpcError: the handler answered with an error.
            RpcUnavailable: no connection, or no answer within ``timeout``.
        """
        hook = self.fault_hook
        sent = False
        with trio.move_on_after(timeout):
            if hook is not None:
                delay = hook.outbound(address)
                if delay is None:
                    await trio.sleep_forever()
                elif delay > 0:
                    await trio.sleep(delay)
            connection = await self._connect(address)
            seq = next(self._seq)
            done, box = trio.Event(), []
            connection.pending[seq] = (done, box)
            payload = msgpack.packb({"Seq": seq, "Method": method, "Args": args}, use_bin_type=True)
            try:
                async with connection.lock:
                    sent = True   # from here on the server may have the request
                    await connection.stream.send_all(frame(payload))
                await done.wait()
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                connection.broken = True
                raise RpcUnavailable(f"rpc error: connection to {address} lost: {exc}", sent=sent) from None
            finally:
                connection.pending.pop(seq, None)
            if not box:
                raise RpcUnavailable(f"rpc error: connection to {address} lost", sent=True)
            error, result = box[0]
            if error:
                raise RpcError(error)
            return result
        raise RpcUnavailable(f"rpc error: timeout after {timeout:g}s calling {method} on {address}",
                             sent=sent)

    async def _connect(self, address: str) -> _RpcConnection:
        connection = self._connections.get(address)
        if connection is not None and not connection.broken:
            return connection
        lock = self._dialing.setdefault(address, trio.Lock())
        async with lock:
            connection = self._connections.get(address)
            if connection is not None and not connection.broken:
                return connection
            try:
                stream = await dial(address, RPC_BYTE, local_ip=self.local_ip, tls=self.tls)
            except (OSError, trio.TooSlowError, trio.BrokenResourceError, ValueError) as exc:
                reason = exc.__cause__ or exc   # a failed TLS handshake carries its ssl error
                raise RpcUnavailable(f"rpc error: dial tcp {address}: {reason}", sent=False) from None
            connection = _RpcConnection(stream)
            self._connections[address] = connection
            assert self._nursery is not None, "RpcPool.run must be started first"
            self._nursery.start_soon(self._read_responses, address, connection)
            return connection

    async def _read_responses(self, address: str, connection: _RpcConnection) -> None:
        reader = FrameReader()
        try:
            while True:
                data = await connection.stream.receive_some(65536)
                if not data:
                    break
                for payload in reader.feed(data):
                    obj = msgpack.unpackb(payload, raw=False)
                    waiter = connection.pending.get(obj.get("Seq"))
                    if waiter is not None:
                        waiter[1].append((obj.get("Error") or "", obj.get("Result")))
                        waiter[0].set()
        except Exception as exc:  # a broken or garbled answer: drop the connection, callers retry
            log.warning("rpc connection closed address=%s error=%s", address, exc)
        finally:
            connection.broken = True
            if self._connections.get(address) is connection:
                del self._connections[address]
            for done, _box in list(connection.pending.values()):
                done.set()
            await connection.stream.aclose()


class RaftTransport:
    """Outbound raft messages: one connection and one bounded queue per peer address."""

    def __init__(self, local_ip: str | None = None, *, tls: RpcTLS | None = None) -> None:
        self.local_ip = local_ip
        self.tls = tls
        self._queues: dict[str, trio.MemorySendChannel[bytes]] = {}
        self._nursery: trio.Nursery | None = None
        self.fault_hook: FaultHook | None = None
        self.counters: Counter[str] = Counter()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def send_nowait(self, to_id: str, to_address: str, message: Message) -> None:
        hook = self.fault_hook
        delay = 0.0
        if hook is not None:
            verdict = hook.outbound(to_address)
            if verdict is None:
                self.counters["fault_dropped"] += 1
                return
            delay = verdict
        payload = frame(encode_message(message))
        if delay > 0:
            assert self._nursery is not None
            self._nursery.start_soon(self._send_later, to_address, payload, delay)
        else:
            self._enqueue(to_address, payload)

    async def _send_later(self, address: str, payload: bytes, delay: float) -> None:
        await trio.sleep(delay)
        self._enqueue(address, payload)

    def _enqueue(self, address: str, payload: bytes) -> None:
        queue = self._queues.get(address)
        if queue is None:
            assert self._nursery is not None, "RaftTransport.run must be started first"
            queue, receive = trio.open_memory_channel[bytes](_PEER_QUEUE)
            self._queues[address] = queue
            self._nursery.start_soon(self._peer, address, receive)
        try:
            queue.send_nowait(payload)
        except trio.WouldBlock:
            self.counters["queue_full"] += 1

    async def _peer(self, address: str, queue: trio.MemoryReceiveChannel[bytes]) -> None:
        """Keep a connection to ``address`` and write queued frames, batching what waits."""
        backoff = 0.05
        while True:
            payload = await queue.receive()
            try:
                stream = await dial(address, RAFT_BYTE, local_ip=self.local_ip, tls=self.tls,
                                    send_protocol=False)
            except trio.BrokenResourceError as exc:   # the TLS handshake failed
                self.counters["tls_errors"] += 1
                if backoff == 0.05:   # once per failing streak, not per retry
                    log.warning("raft dial refused by TLS address=%s error=%s", address,
                                exc.__cause__ or exc)
                _drain(queue)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            except (OSError, trio.TooSlowError, ValueError):
                self.counters["dial_errors"] += 1
                _drain(queue)   # raft resends what matters; stale frames only delay it
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.05
            try:
                async with stream:
                    await stream.send_all(bytes([RAFT_BYTE]) + payload)
                    while True:
                        batch = [await queue.receive()]
                        while len(batch) < 256:
                            try:
                                batch.append(queue.receive_nowait())
                            except trio.WouldBlock:
                                break
                        await stream.send_all(b"".join(batch))
                        self.counters["sent"] += len(batch)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                self.counters["write_errors"] += 1


async def dial(address: str, protocol: int, *, local_ip: str | None = None, tls: RpcTLS | None = None,
               send_protocol: bool = True) -> trio.abc.Stream:
    """Open an rpc-port connection to ``address`` for ``protocol`` (``RPC_BYTE``...).

    Plain: TCP, then the protocol byte. With ``tls``: TCP, ``0x04``, a TLS handshake
    that presents our certificate and verifies the server's, then the protocol byte
    inside TLS. With ``send_protocol=False`` the caller sends the protocol byte itself
    with its first frame (one write). The whole dial is bounded by the dial timeout.

    Raises:
        OSError, trio.TooSlowError: no connection.
        trio.BrokenResourceError: the TLS handshake failed (its ``__cause__`` says why).
        ValueError: ``address`` is not ``ip:port``.
    """
    host, port = split_address(address)
    with trio.fail_after(_DIAL_TIMEOUT):
        stream = await trio.open_tcp_stream(host, port, local_address=local_ip)
        try:
            out: trio.abc.Stream = stream
            if tls is not None:
                await stream.send_all(bytes([TLS_BYTE]))
                out = trio.SSLStream(stream, tls.client, server_hostname=tls.server_name,
                                     https_compatible=True)   # as in RpcServer._upgrade_tls
                await out.do_handshake()
            if send_protocol:
                await out.send_all(bytes([protocol]))
            return out
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise


def _drain(queue: trio.MemoryReceiveChannel[bytes]) -> None:
    while True:
        try:
            queue.receive_nowait()
        except trio.WouldBlock:
            return
