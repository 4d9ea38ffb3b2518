"""Monitor streams: the framer, per-stream buffers, the broadcaster, the trio driver.

agent-api.md 3.8: frames of at most 1024 bytes of Data, back to back; `{}` every 1 s;
200 ms batching; a 512-entry buffer per stream with the dropped-lines warning every 3 s.
The driver tests run on trio's autojump clock, so timings are exact and instant.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import gc
import json
import logging
import threading
from typing import Any

import pytest
import trio

from agent.monitor import (BUFFER_ENTRIES, HEARTBEAT, LogBroadcaster, StreamFramer, Subscription,
                           data_frame, dropped_warning, monitor_chunks, next_tick)


def decode(frames: list[bytes]) -> tuple[list[dict[str, Any]], bytes]:
    """Concatenated frames -> (objects, joined Data), as a consumer reads them."""
    text = b"".join(frames).decode()
    decoder = json.JSONDecoder()
    objects, data, index = [], b"", 0
    while index < len(text):
        obj, index = decoder.raw_decode(text, index)
        objects.append(obj)
        if obj:
            data += base64.b64decode(obj["Data"])
    return objects, data


# ------------------------------------------------------------------ the framer


def test_data_frame_shape() -> None:
    """A data frame is Go's StreamFrame with empty fields omitted: Data and FileEvent."""
    assert data_frame(b"hi\n") == b'{"Data":"aGkK","FileEvent":"log"}'


def test_frames_never_exceed_1024_bytes_and_a_split_line_rejoins() -> None:
    """A 2500-byte line goes out as 1024 + 1024 at once, the rest on the next batch tick."""
    framer = StreamFramer(0.0)
    line = b"x" * 2499 + b"\n"
    framer.send(line)
    first = framer.take_outputs()
    assert [len(base64.b64decode(json.loads(f)["Data"])) for f in first] == [1024, 1024]
    framer.handle_timers(0.1)
    assert framer.take_outputs() == []           # the batch window has not passed
    framer.handle_timers(0.2)
    rest = framer.take_outputs()
    objects, data = decode(first + rest)
    assert data == line
    assert all(len(base64.b64decode(o["Data"])) <= 1024 for o in objects)
    assert all(set(o) == {"Data", "FileEvent"} and o["FileEvent"] == "log" for o in objects)


def test_several_lines_share_a_frame() -> None:
    """Lines collect until the batch tick: one frame can hold several lines."""
    framer = StreamFramer(0.0)
    framer.send(b"a\n")
    framer.send(b"b\n")
    framer.handle_timers(0.2)
    assert framer.take_outputs() == [data_frame(b"a\nb\n")]


def test_heartbeat_every_second_even_with_data() -> None:
    """`{}` goes out on every 1 s tick; data does not postpone it."""
    framer = StreamFramer(10.0)
    assert framer.next_deadline() == 11.0
    framer.handle_timers(11.0)
    assert framer.take_outputs() == [HEARTBEAT]
    framer.send(b"line\n")
    assert framer.next_deadline() == pytest.approx(11.2)   # data waits for the batch tick
    framer.handle_timers(11.2)
    framer.handle_timers(12.0)
    assert framer.take_outputs() == [data_frame(b"line\n"), HEARTBEAT]


def test_late_timer_call_gives_one_heartbeat_like_a_go_ticker() -> None:
    """Missed ticks are dropped, as a Go ticker drops them, and the grid continues."""
    framer = StreamFramer(0.0)
    framer.handle_timers(3.5)
    assert framer.take_outputs() == [HEARTBEAT]
    assert framer.next_deadline() == 4.0


@pytest.mark.parametrize("previous,interval,now,expected", [
    (1.0, 1.0, 1.0, 2.0), (1.0, 1.0, 3.5, 4.0), (0.2, 0.2, 0.1, 0.2), (3.0, 3.0, 9.0, 12.0),
])
def test_next_tick(previous: float, interval: float, now: float, expected: float) -> None:
    """next_tick is the first grid point strictly after now."""
    assert next_tick(previous, interval, now) == pytest.approx(expected)


# ------------------------------------------------------------------ the buffer


def test_buffer_drops_beyond_512_and_warns_with_the_count() -> None:
    """Past 512 entries new ones are dropped; the check makes room and reports n + 1."""
    sub = Subscription(logging.INFO)
    accepted = [sub.offer(f"{i}\n".encode()) for i in range(BUFFER_ENTRIES + 5)]
    assert accepted.count(False) == 5 and sub.dropped == 5
    sub.check_dropped()   # buffer full: the oldest entry goes to make room, and is counted
    entries = sub.take_nowait()
    assert len(entries) == BUFFER_ENTRIES
    assert entries[0] == b"1\n"
    assert entries[-1] == dropped_warning(6) == b"[WARN] Monitor dropped 6 logs during monitor request\n"
    assert sub.dropped == 0 and sub.dropped_total == 6
    sub.check_dropped()
    assert sub.take_nowait() == []   # nothing dropped since: no warning


def test_check_with_room_appends_without_dropping() -> None:
    """With room in the buffer the warning is appended and nothing else is lost."""
    sub = Subscription(logging.INFO, capacity=2)
    for entry in (b"a\n", b"b\n", b"c\n"):
        sub.offer(entry)
    assert sub.take_nowait() == [b"a\n", b"b\n"]
    sub.check_dropped()
    assert sub.take_nowait() == [dropped_warning(1)]


# ------------------------------------------------------------------ the broadcaster


@pytest.fixture
def logger() -> Any:
    """A private logger (no propagation) with a broadcaster in UTC, at WARNING."""
    log = logging.getLogger("tests.monitor.framing")
    log.propagate = False
    broadcaster = LogBroadcaster(tz=datetime.timezone.utc)
    broadcaster.attach(log, logging.WARNING)
    yield log, broadcaster
    log.removeHandler(broadcaster)
    log.setLevel(logging.NOTSET)
    log.propagate = True


def test_levels_and_formats_per_subscription(logger: Any) -> None:
    """Each stream gets records at its own level, in its own format; the logger level follows."""
    log, broadcaster = logger
    text = broadcaster.subscribe(logging.DEBUG)
    as_json = broadcaster.subscribe(logging.WARNING, json=True, include_location=True)
    assert log.level == logging.DEBUG            # lowered for the debug stream
    log.debug("probe sent seq=%d", 7)
    log.warning("member suspect name=%s", "s2")
    text_lines = b"".join(text.take_nowait()).decode().splitlines()
    assert [line.split(" ", 1)[1] for line in text_lines] == [
        "[DEBUG] tests.monitor.framing: probe sent: seq=7",
        "[WARN]  tests.monitor.framing: member suspect: name=s2"]
    (entry,) = [json.loads(line) for line in as_json.take_nowait()]
    assert entry["@level"] == "warn" and entry["name"] == "s2" and "@caller" in entry
    text.close()
    assert log.level == logging.WARNING
    as_json.close()
    assert broadcaster.subscriptions() == [] and log.level == logging.WARNING


def test_no_history_and_off_gets_nothing(logger: Any) -> None:
    """Only records after subscribing arrive; `off` receives nothing at all."""
    log, broadcaster = logger
    log.error("before")
    sub = broadcaster.subscribe(logging.INFO)
    off = broadcaster.subscribe(100)
    log.error("after")
    assert [line.endswith(b"tests.monitor.framing: after\n") for line in sub.take_nowait()] == [True]
    assert off.take_nowait() == []
    sub.close()
    off.close()


def test_subscriptions_are_held_weakly(logger: Any) -> None:
    """A stream nobody reads any more (its body never ran) stops receiving once collected."""
    log, broadcaster = logger
    broadcaster.subscribe(logging.INFO)
    gc.collect()
    log.error("nobody listens")
    assert broadcaster.subscriptions() == []
    keeper = broadcaster.subscribe(logging.ERROR)    # pruning happens on the next change
    assert broadcaster.subscriptions() == [keeper] and log.level == logging.WARNING
    keeper.close()


# ------------------------------------------------------------------ the trio driver


async def test_idle_stream_sends_heartbeats_every_second(autojump_clock: Any) -> None:
    """With nothing logged, the framed stream is `{}` at 1 s, 2 s, 3 s."""
    sub = Subscription(logging.INFO)
    start = trio.current_time()
    async with contextlib.aclosing(monitor_chunks(sub, plain=False)) as chunks:
        seen = [(await chunks.__anext__(), trio.current_time() - start) for _ in range(3)]
    assert [chunk for chunk, _ in seen] == [HEARTBEAT] * 3
    assert [at for _, at in seen] == pytest.approx([1.0, 2.0, 3.0])
    assert sub.closed


async def test_logged_line_arrives_within_the_batch_window(autojump_clock: Any) -> None:
    """A line offered at 50 ms goes out in a data frame by the 200 ms tick."""
    sub = Subscription(logging.INFO)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        async def log_later() -> None:
            await trio.sleep(0.05)
            sub.offer(b"hello\n")
        nursery.start_soon(log_later)
        async with contextlib.aclosing(monitor_chunks(sub, plain=False)) as chunks:
            chunk = await chunks.__anext__()
    assert chunk == data_frame(b"hello\n")
    assert trio.current_time() - start == pytest.approx(0.2)


async def test_dropped_warning_is_injected_after_three_seconds(autojump_clock: Any) -> None:
    """A slow reader loses lines; at the 3 s check the warning line enters the stream."""
    sub = Subscription(logging.INFO, capacity=4)
    for i in range(10):
        sub.offer(f"line {i}\n".encode())
    frames = []
    start = trio.current_time()
    async with contextlib.aclosing(monitor_chunks(sub, plain=False)) as chunks:
        async for chunk in chunks:
            frames.append(chunk)
            if b"Monitor dropped" in decode(frames)[1]:
                break
    _, data = decode(frames)
    assert data == b"line 0\nline 1\nline 2\nline 3\n" + dropped_warning(6)
    # The check runs at 3 s; the batch tick is overdue after the idle spell, so it flushes at once.
    assert trio.current_time() - start == pytest.approx(3.0)


async def test_plain_stream_is_raw_bytes_without_heartbeats(autojump_clock: Any) -> None:
    """plain=true: lines as they are, no frames and no `{}` however long it idles."""
    sub = Subscription(logging.INFO)
    async with trio.open_nursery() as nursery:
        async def log_later() -> None:
            await trio.sleep(5.0)
            sub.offer(b"late line\n")
        nursery.start_soon(log_later)
        async with contextlib.aclosing(monitor_chunks(sub, plain=True)) as chunks:
            assert await chunks.__anext__() == b"late line\n"


async def test_a_record_logged_from_another_thread_wakes_the_stream() -> None:
    """emit from a worker thread reaches a waiting trio stream (real clock, bounded)."""
    log = logging.getLogger("tests.monitor.thread")
    log.propagate = False
    broadcaster = LogBroadcaster()
    broadcaster.attach(log, logging.WARNING)
    try:
        sub = broadcaster.subscribe(logging.INFO)
        with trio.fail_after(5):
            async with contextlib.aclosing(monitor_chunks(sub, plain=True)) as chunks:
                # The thread logs once the stream is already waiting for entries.
                worker = threading.Timer(0.2, log.info, args=("from thread n=%d", 1))
                worker.start()
                chunk = await chunks.__anext__()
                worker.join()
        assert chunk.endswith(b"tests.monitor.thread: from thread: n=1\n")
    finally:
        log.removeHandler(broadcaster)
        log.setLevel(logging.NOTSET)
        log.propagate = True


# ------------------------------------------------------------------ the CLI's decoder


def test_cli_decoder_rejoins_lines_across_frames_and_reads() -> None:
    """`shoal monitor` decodes back-to-back frames fed in arbitrary pieces, skipping `{}`."""
    from agent.cli_monitor import FrameDecoder

    framer = StreamFramer(0.0)
    text = b"".join(f"line {i} ".encode() + b"y" * 300 + b"\n" for i in range(8))
    framer.send(text)
    framer.handle_timers(1.0)
    wire = b"{}" + b"".join(framer.take_outputs()) + b"{}"
    decoder = FrameDecoder()
    out = b"".join(decoder.feed(wire[i:i + 7]) for i in range(0, len(wire), 7))
    assert out == text


def test_cli_decoder_refuses_garbage() -> None:
    """Bytes that are not frames are an error, not silence."""
    from agent.cli_monitor import FrameDecoder

    with pytest.raises(ValueError):
        FrameDecoder().feed(b'{"Data": "***"}')
    with pytest.raises(ValueError):
        FrameDecoder().feed(b"[1]")
