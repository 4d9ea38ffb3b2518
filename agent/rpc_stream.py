"""Streaming calls on the rpc port (first byte ``0x03``): forwarded ``/v1/agent/monitor``.

A plain RPC (``0x01``) answers each request with one response; a stream answers one
request with bytes for as long as both ends want them, as Nomad's streaming RPCs do
for ``Agent.Monitor``. On a connection that opened with ``STREAM_BYTE`` (after the TLS
layer, when ``tls.rpc`` is on; ``agent.rpc.dial`` does both):

1. the client writes one frame (``[u32 length][msgpack]``): ``{"Method": str, "Args": any}``;
2. the server writes one header frame ``{"Error": str, "Code": int}``: ``Error`` empty
   and ``Code`` 200 when the stream starts, else the reason and the HTTP status the
   caller should answer with (``StreamRefused``), after which it closes;
3. the server writes frames whose payloads are raw chunks of the stream, until the
   method's iterator ends or the client closes the connection (either side may).

Handlers live in ``RpcServer.stream_handlers`` (method name -> ``StreamHandler``): an
async function of the args that checks them, raising ``StreamRefused``/``RpcError`` to
refuse, and returns the async iterator of chunks.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import msgpack
import trio

from .rpc import (STREAM_BYTE, FaultHook, FrameReader, RpcError, RpcServer, RpcUnavailable,
                  dial, frame)
from .tlsutil import RpcTLS

__all__ = ["RpcStream", "StreamRefused", "open_stream", "serve_stream"]

log = logging.getLogger(__name__)

_REQUEST_TIMEOUT = 10.0
"""Seconds a server waits for the request frame, and a client for the header frame."""


class StreamRefused(RpcError):
    """A stream method refused the call; ``code`` is the HTTP status to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _pack(value: Any) -> bytes:
    return frame(msgpack.packb(value, use_bin_type=True))


async def _read_frame(stream: trio.abc.Stream, reader: FrameReader, pending: list[bytes]) -> bytes | None:
    """The next frame's payload, or None when the peer closed first."""
    while not pending:
        data = await stream.receive_some(65536)
        if not data:
            return None
        pending.extend(reader.feed(data))
    return pending.pop(0)


def _decode(payload: bytes) -> dict[str, Any] | None:
    try:
        value = msgpack.unpackb(payload, raw=False)
    except Exception:  # msgpack raises several unrelated types on bad bytes
        return None
    return value if isinstance(value, dict) else None


# ----------------------------------------------------------------------- server side


async def serve_stream(server: RpcServer, stream: trio.abc.Stream, peer: str) -> None:
    """Serve one streaming call on ``stream`` (its first byte already read)."""
    reader, pending = FrameReader(), []
    payload = None
    with trio.move_on_after(_REQUEST_TIMEOUT):
        payload = await _read_frame(stream, reader, pending)
    if payload is None:   # closed, or no request in time
        return
    request = _decode(payload)
    if request is None or not isinstance(request.get("Method"), str):
        server._drop(peer, "stream_decode", "bad stream request")
        return
    method, args = request["Method"], request.get("Args")
    handler = server.stream_handlers.get(method)
    code, error = 200, ""
    chunks = None
    if handler is None:
        code, error = 500, f"rpc: can't find method {method}"
    else:
        try:
            chunks = await handler(args)
        except StreamRefused as exc:
            code, error = exc.code, exc.message
        except RpcError as exc:
            code, error = 500, str(exc)
        except Exception as exc:  # a handler bug must not take the agent down with it
            server.counters["handler_errors"] += 1
            log.exception("rpc stream handler failed method=%s", method)
            code, error = 500, f"rpc error: internal error in {method}: {exc}"
    await stream.send_all(_pack({"Error": error, "Code": code}))
    if chunks is None:
        return
    server.counters["streams_served"] += 1
    await _pump(stream, chunks)


async def _pump(stream: trio.abc.Stream, chunks: Any) -> None:
    """Write ``chunks`` as frames until they end or the client closes the connection."""
    async with contextlib.aclosing(chunks) as iterator, trio.open_nursery() as nursery:
        nursery.start_soon(_watch_close, stream, nursery.cancel_scope)
        # Errors are handled inside the nursery body: trio would wrap them in an
        # ExceptionGroup that the caller's except clauses do not match.
        try:
            async for chunk in iterator:
                await stream.send_all(frame(chunk))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        nursery.cancel_scope.cancel()


async def _watch_close(stream: trio.abc.Stream, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` when the client closes (it sends nothing after its request)."""
    try:
        while await stream.receive_some(65536):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    scope.cancel()


# ----------------------------------------------------------------------- client side


class RpcStream:
    """The client end of a started stream: ``async for chunk in stream``, then ``aclose``.

    Iteration ends when the server ends the stream or the connection breaks.
    """

    def __init__(self, stream: trio.abc.Stream, reader: FrameReader, pending: list[bytes]) -> None:
        self._stream = stream
        self._reader = reader
        self._pending = pending

    async def receive(self) -> bytes | None:
        """The next chunk, or None at the end of the stream."""
        try:
            return await _read_frame(self._stream, self._reader, self._pending)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return None

    def __aiter__(self) -> RpcStream:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.receive()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._stream)


async def open_stream(address: str, method: str, args: Any, *, local_ip: str | None = None,
                      tls: RpcTLS | None = None, fault_hook: FaultHook | None = None,
                      timeout: float = _REQUEST_TIMEOUT) -> RpcStream:
    """Start streaming call ``method`` on the agent whose rpc port is ``address``.

    Args:
        local_ip, tls: as the caller's ``RpcPool`` (``pool.local_ip``, ``pool.tls``).
        fault_hook: the fault filter; a dropped link is unreachable, a delayed one waits.

    Raises:
        RpcUnavailable: no connection, or no header within ``timeout``.
        StreamRefused: the server refused the call (``code``, ``message``).
    """
    if fault_hook is not None:
        delay = fault_hook.outbound(address)
        if delay is None:
            raise RpcUnavailable(f"rpc error: dial tcp {address}: dropped by fault injection",
                                 sent=False)
        if delay > 0:
            await trio.sleep(delay)
    try:
        stream = await dial(address, STREAM_BYTE, local_ip=local_ip, tls=tls)
    except (OSError, trio.TooSlowError, trio.BrokenResourceError, ValueError) as exc:
        raise RpcUnavailable(f"rpc error: dial tcp {address}: {exc}", sent=False) from None
    reader, pending = FrameReader(), []
    header = None
    try:
        with trio.move_on_after(timeout):
            await stream.send_all(_pack({"Method": method, "Args": args}))
            payload = await _read_frame(stream, reader, pending)
            header = _decode(payload) if payload is not None else None
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        await trio.aclose_forcefully(stream)
        raise RpcUnavailable(f"rpc error: connection to {address} lost: {exc}", sent=True) from None
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    if header is None:
        await trio.aclose_forcefully(stream)
        raise RpcUnavailable(f"rpc error: no stream header from {address} for {method}", sent=True)
    error = header.get("Error") or ""
    if error:
        await trio.aclose_forcefully(stream)
        code = header.get("Code")
        raise StreamRefused(code if isinstance(code, int) and 400 <= code < 600 else 500, str(error))
    return RpcStream(stream, reader, pending)
