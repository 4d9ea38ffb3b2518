"""Log streaming for ``/v1/agent/monitor``: the broadcaster, per-stream buffers, the framer.

Theory of operation (agent-api.md 3.8; Nomad's ``command/agent/monitor/monitor.go`` and
``client/lib/streamframer/framer.go``):

* ``LogBroadcaster`` is a ``logging.Handler`` on the root logger (installed by
  ``agent.cli.configure_logging``, or on first use by ``get_broadcaster``). Each monitor
  request subscribes with its own level and format (text or JSON, with or without the
  source location). A record is formatted once per format in use (``agent.logfmt``) and
  offered to every subscription whose level it reaches. Only lines logged after the
  subscription exist reach it: there is no history.
* A stream may ask for a lower level than the agent logs at (``log_level=debug`` on an
  agent run at INFO), as Nomad's sinks may. The root logger's level is therefore the
  lowest of the agent's own level and every live subscription's; the stderr handler
  keeps the agent's level for itself.
* ``Subscription`` is the per-stream buffer: at most 512 entries. When the reader is
  slow, new entries are dropped and counted; every 3 s the stream calls
  ``check_dropped``, which queues ``[WARN] Monitor dropped <n> logs during monitor
  request\\n`` (no timestamp), first dropping the oldest entry (and counting it) if the
  buffer is full, exactly as Nomad does.
* ``StreamFramer`` is a sans-IO port of Nomad's stream framer: bytes collect and are cut
  into ``{"Data": <base64>, "FileEvent": "log"}`` frames of at most 1024 bytes of data
  (a line may be split across frames); what is left is flushed by the batch tick every
  200 ms; a ``{}`` heartbeat goes out every 1 s even when idle. Frames are written back
  to back with no separator. Nomad's ``Offset`` and ``File`` are never sent (empty for
  a log stream in practice, and omitted when empty).
* ``monitor_chunks`` is the thin trio driver: one async generator per stream yielding
  the bytes to write (frames, or raw lines when ``plain``), which both the HTTP route
  and the forwarding RPC consume.

Threads. Records may be emitted from any thread (``trio.to_thread`` workers, hypercorn,
library threads). ``logging`` serialises ``emit``; a subscription's buffer has its own
lock; the trio task waiting for entries is woken through the run's trio token
(``run_sync_soon``, thread-safe and idempotent), so nothing blocks the emitting thread.
Subscriptions are held weakly by the broadcaster: a stream whose body was never
iterated (the client went away first) stops receiving when it is garbage, and is pruned
(and the root level recomputed) at the next subscribe or close. No weakref callback does
that work, since one may run inside the garbage collector while the logging lock is held.
"""

from __future__ import annotations

import base64
import collections
import datetime
import logging
import math
import threading
import weakref
from typing import AsyncIterator, Callable

import trio

from .logfmt import format_json, format_text

__all__ = ["BATCH_WINDOW", "BUFFER_ENTRIES", "DROPPED_CHECK_INTERVAL", "FRAME_SIZE",
           "HEARTBEAT", "HEARTBEAT_INTERVAL", "LogBroadcaster", "StreamFramer", "Subscription",
           "data_frame", "dropped_warning", "get_broadcaster", "install_broadcaster",
           "monitor_chunks", "next_tick"]

BUFFER_ENTRIES = 512
"""Entries one stream may hold before new ones are dropped (Nomad's log channel size)."""
DROPPED_CHECK_INTERVAL = 3.0
"""Seconds between checks that inject the dropped-lines warning."""
HEARTBEAT_INTERVAL = 1.0
"""Seconds between ``{}`` heartbeat frames."""
BATCH_WINDOW = 0.2
"""Seconds data may wait to fill a frame before it is flushed."""
FRAME_SIZE = 1024
"""Largest ``Data`` of one frame, in bytes (before base64)."""
HEARTBEAT = b"{}"


def dropped_warning(count: int) -> bytes:
    """The line Nomad injects when a stream lost ``count`` entries."""
    return f"[WARN] Monitor dropped {count} logs during monitor request\n".encode()


def data_frame(data: bytes, file_event: str = "log") -> bytes:
    """One data frame, as Go marshals Nomad's ``StreamFrame`` (empty fields omitted)."""
    return (b'{"Data":"' + base64.b64encode(data) + b'","FileEvent":"'
            + file_event.encode() + b'"}')


def next_tick(previous: float, interval: float, now: float) -> float:
    """The first tick of a ticker started at ``previous`` that lies after ``now``.

    A Go ticker drops the ticks its reader missed, so a late reader sees one tick,
    then the grid continues.
    """
    missed = max(0, math.floor((now - previous) / interval) + 1)
    return previous + missed * interval


class Subscription:
    """One monitor stream's bounded buffer of formatted entries.

    Args:
        level: the lowest record level the stream wants.
        json: JSON lines instead of text lines.
        include_location: add the source location to each line.
        capacity: entries held before new ones are dropped.
    """

    def __init__(self, level: int, *, json: bool = False, include_location: bool = False,
                 capacity: int = BUFFER_ENTRIES) -> None:
        assert capacity > 0
        self.level = level
        self.json = json
        self.include_location = include_location
        self.capacity = capacity
        self.dropped = 0
        """Entries dropped since the last ``check_dropped``."""
        self.dropped_total = 0
        self._entries: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._token: trio.lowlevel.TrioToken | None = None
        self._event: trio.Event | None = None
        self._on_close: Callable[[Subscription], None] | None = None
        self.closed = False

    def offer(self, entry: bytes) -> bool:
        """Queue ``entry`` (any thread); False when the buffer was full and it was dropped."""
        with self._lock:
            if len(self._entries) >= self.capacity:
                self.dropped += 1
                self.dropped_total += 1
                return False
            self._entries.append(entry)
        self._notify()
        return True

    def take_nowait(self) -> list[bytes]:
        """Every buffered entry, oldest first; the buffer is left empty."""
        with self._lock:
            entries = list(self._entries)
            self._entries.clear()
        return entries

    def has_entries(self) -> bool:
        with self._lock:
            return bool(self._entries)

    def check_dropped(self) -> None:
        """Queue the dropped-entries warning if anything was dropped since the last check.

        If the buffer is full, its oldest entry makes room (and counts as dropped too).
        """
        with self._lock:
            if self.dropped == 0:
                return
            if len(self._entries) >= self.capacity:
                self._entries.popleft()
                self.dropped += 1
                self.dropped_total += 1
            self._entries.append(dropped_warning(self.dropped))
            self.dropped = 0
        self._notify()

    def close(self) -> None:
        """Stop receiving entries (idempotent)."""
        if not self.closed:
            self.closed = True
            if self._on_close is not None:
                self._on_close(self)

    # -- waking the trio task that reads the buffer

    def bind_trio(self) -> None:
        """Let ``offer`` from any thread wake ``wait_entries`` of the current trio run."""
        self._token = trio.lowlevel.current_trio_token()

    def _notify(self) -> None:
        token = self._token
        if token is None:
            return
        try:
            token.run_sync_soon(self._wake, idempotent=True)
        except trio.RunFinishedError:
            self._token = None

    def _wake(self) -> None:
        event = self._event
        if event is not None:
            event.set()

    async def wait_entries(self) -> None:
        """Return once the buffer holds an entry (at once if it does already)."""
        if self._token is None:
            self.bind_trio()
        event = trio.Event()
        self._event = event
        if self.has_entries():   # an entry queued before the event existed
            return
        await event.wait()


class LogBroadcaster(logging.Handler):
    """A logging handler that copies each record to every live monitor subscription.

    Args:
        tz: the zone of the timestamps; None for the local zone (tests pin one).
    """

    def __init__(self, *, tz: datetime.tzinfo | None = None) -> None:
        super().__init__(level=logging.NOTSET)
        self.tz = tz
        self._refs: tuple[weakref.ref[Subscription], ...] = ()
        self._mutate = threading.Lock()   # subscribe and close; emit only reads ``_refs``
        self._logger: logging.Logger | None = None
        self._base_level = logging.NOTSET

    def attach(self, logger: logging.Logger, base_level: int) -> None:
        """Install on ``logger``; ``base_level`` is what the agent itself logs at."""
        with self._mutate:
            if self not in logger.handlers:
                logger.addHandler(self)
            self._logger = logger
            self._base_level = base_level
            self._refresh_level()

    @property
    def attached(self) -> bool:
        return self._logger is not None and self in self._logger.handlers

    def subscribe(self, level: int, *, json: bool = False, include_location: bool = False,
                  capacity: int = BUFFER_ENTRIES) -> Subscription:
        """A new stream of the records at ``level`` or above, from now on."""
        subscription = Subscription(level, json=json, include_location=include_location,
                                    capacity=capacity)
        subscription._on_close = self._unsubscribe
        with self._mutate:
            self._refs = (*self._live_refs(), weakref.ref(subscription))
            self._refresh_level()
        return subscription

    def subscriptions(self) -> list[Subscription]:
        """The live subscriptions (for stats and tests)."""
        return [s for s in (ref() for ref in self._refs) if s is not None]

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._mutate:
            self._refs = tuple(ref for ref in self._live_refs() if ref() is not subscription)
            self._refresh_level()

    def _live_refs(self) -> tuple[weakref.ref[Subscription], ...]:
        return tuple(ref for ref in self._refs if ref() is not None)

    def _refresh_level(self) -> None:
        if self._logger is None:
            return
        # NOTSET (0) on the root logger lets everything through, so min() is right.
        wanted = min([self._base_level] + [s.level for s in self.subscriptions()])
        if self._logger.level != wanted:
            self._logger.setLevel(wanted)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            targets = [s for s in (ref() for ref in self._refs)
                       if s is not None and record.levelno >= s.level]
            if not targets:
                return
            lines: dict[tuple[bool, bool], bytes] = {}
            for subscription in targets:
                key = (subscription.json, subscription.include_location)
                line = lines.get(key)
                if line is None:
                    render = format_json if subscription.json else format_text
                    line = render(record, include_location=subscription.include_location,
                                  tz=self.tz).encode("utf-8", "replace")
                    lines[key] = line
                subscription.offer(line)
        except Exception:  # a logging handler never raises into the caller
            self.handleError(record)


_BROADCASTER = LogBroadcaster()


def install_broadcaster(logger: logging.Logger, base_level: int) -> LogBroadcaster:
    """Attach the process's broadcaster to ``logger`` (``configure_logging`` does this)."""
    _BROADCASTER.attach(logger, base_level)
    return _BROADCASTER


def get_broadcaster() -> LogBroadcaster:
    """The process's broadcaster, attached to the root logger at its current level if it
    is not attached yet (in-process agents in tests never call ``configure_logging``)."""
    if not _BROADCASTER.attached:
        root = logging.getLogger()
        _BROADCASTER.attach(root, root.level)
    return _BROADCASTER


class StreamFramer:
    """Nomad's stream framer for one stream, without I/O or clock.

    Inputs: ``send(data)``, ``handle_timers(now)``. Outputs: ``take_outputs()`` gives
    the encoded frames in order; ``next_deadline()`` says when to call
    ``handle_timers`` next.
    """

    def __init__(self, now: float, *, heartbeat_interval: float = HEARTBEAT_INTERVAL,
                 batch_window: float = BATCH_WINDOW, frame_size: int = FRAME_SIZE) -> None:
        assert heartbeat_interval > 0 and batch_window > 0 and frame_size > 0
        self.heartbeat_interval = heartbeat_interval
        self.batch_window = batch_window
        self.frame_size = frame_size
        self._data = bytearray()
        self._next_flush = now + batch_window          # the batch ticker's next tick
        self._next_heartbeat = now + heartbeat_interval
        self._outputs: list[bytes] = []

    def send(self, data: bytes) -> None:
        """Add log bytes; every full ``frame_size`` goes out as a frame at once."""
        self._data += data
        while len(self._data) >= self.frame_size:
            self._cut(self.frame_size)

    def _cut(self, size: int) -> None:
        chunk = bytes(self._data[:size])
        del self._data[:size]
        self._outputs.append(data_frame(chunk))

    def handle_timers(self, now: float) -> None:
        """Run the batch tick (flush what waits, at most one frame) and the heartbeat."""
        if now >= self._next_flush:
            if self._data:
                self._cut(min(len(self._data), self.frame_size))
            self._next_flush = next_tick(self._next_flush, self.batch_window, now)
        if now >= self._next_heartbeat:
            self._outputs.append(HEARTBEAT)
            self._next_heartbeat = next_tick(self._next_heartbeat, self.heartbeat_interval, now)

    def next_deadline(self) -> float:
        """When ``handle_timers`` has work: the heartbeat, or the batch tick if data waits.

        An idle stream skips the batch ticks (nothing to flush), so data arriving after
        a pause may go out at once rather than on the old grid: never later than Nomad.
        """
        if self._data:
            return min(self._next_flush, self._next_heartbeat)
        return self._next_heartbeat

    def pending_bytes(self) -> int:
        return len(self._data)

    def take_outputs(self) -> list[bytes]:
        outputs, self._outputs = self._outputs, []
        return outputs


async def monitor_chunks(subscription: Subscription, *, plain: bool,
                         heartbeat_interval: float = HEARTBEAT_INTERVAL,
                         batch_window: float = BATCH_WINDOW,
                         frame_size: int = FRAME_SIZE) -> AsyncIterator[bytes]:
    """The bytes of one monitor response, until the consumer stops iterating.

    Framed mode yields one frame per item; ``plain`` yields raw log bytes (heartbeats
    produce nothing). The subscription is closed when the generator ends. No cancel
    scope spans a ``yield`` (trio's rule for async generators).
    """
    subscription.bind_trio()
    now = trio.current_time()
    framer = None if plain else StreamFramer(now, heartbeat_interval=heartbeat_interval,
                                             batch_window=batch_window, frame_size=frame_size)
    next_check = now + DROPPED_CHECK_INTERVAL
    try:
        while True:
            now = trio.current_time()
            if now >= next_check:
                subscription.check_dropped()
                next_check = next_tick(next_check, DROPPED_CHECK_INTERVAL, now)
            entries = subscription.take_nowait()
            if framer is None:
                if entries:
                    yield b"".join(entries)
                deadline = next_check
            else:
                for entry in entries:
                    framer.send(entry)
                framer.handle_timers(now)
                for frame in framer.take_outputs():
                    yield frame
                deadline = min(next_check, framer.next_deadline())
            with trio.move_on_at(deadline):
                await subscription.wait_entries()
    finally:
        subscription.close()
