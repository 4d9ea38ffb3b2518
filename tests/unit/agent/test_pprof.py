"""The pprof counterparts (agent-api.md 3.9): parameters, headers, formats, what each profile sees."""

from __future__ import annotations

import threading
import time
import tracemalloc
from typing import Iterator

import pytest
import trio

from agent import pprof
from agent.pprof import (MAX_SECONDS, ProfileNotFound, collapsed, collect, download_headers, go_atoi,
                         profile_seconds, sample_threads, text_headers)


@pytest.fixture(autouse=True)
def stop_tracemalloc() -> Iterator[None]:
    """A heap profile starts tracemalloc in this process; stop it so later tests run at full speed."""
    yield
    if tracemalloc.is_tracing():
        tracemalloc.stop()


@pytest.mark.parametrize("text,value", [
    ("5", 5), ("+7", 7), ("-3", -3), ("0", 0), ("", 0), (None, 0), ("abc", 0), ("1.5", 0),
    (" 2", 0), ("1_000", 0), ("9223372036854775807", 2**63 - 1), ("9223372036854775808", 0),
])
def test_go_atoi_drops_errors_as_zero(text: str | None, value: int) -> None:
    """Like net/http/pprof: a parameter that Go's Atoi refuses counts as 0."""
    assert go_atoi(text) == value


@pytest.mark.parametrize("seconds,effective", [(0, 1), (-3, 1), (1, 1), (7, 7), (MAX_SECONDS, MAX_SECONDS),
                                               (10**6, MAX_SECONDS)])
def test_profile_seconds_default_and_cap(seconds: int, effective: int) -> None:
    """0, negative (and so invalid) -> 1 s, Nomad's default; longer than the cap -> the cap."""
    assert profile_seconds(seconds) == effective


def test_headers() -> None:
    """Downloads name their file; text is utf-8; both say nosniff."""
    assert download_headers("heap") == {"Content-Type": "application/octet-stream",
                                        "Content-Disposition": 'attachment; filename="heap"',
                                        "X-Content-Type-Options": "nosniff"}
    assert text_headers() == {"Content-Type": "text/plain; charset=utf-8",
                              "X-Content-Type-Options": "nosniff"}


def test_collapsed_format() -> None:
    """One line per stack, root first, biggest count first; a ';' inside a frame is neutralised."""
    text = collapsed({("a", "b"): 2, ("a", "c;d"): 5, ("z",): 2})
    assert text == "a;c:d 5\na;b 2\nz 2\n"


def test_cmdline_is_nul_joined_text() -> None:
    result = pprof.cmdline(["python", "-m", "agent", "agent", "-dev"])
    assert result.payload == b"python\x00-m\x00agent\x00agent\x00-dev"
    assert result.headers == text_headers()


def spin_here(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


def test_cpu_samples_see_a_busy_thread() -> None:
    """The sampler records other threads' stacks, named by thread, root first."""
    stop = threading.Event()
    worker = threading.Thread(target=spin_here, args=(stop,), name="busy-worker", daemon=True)
    worker.start()
    try:
        started = time.monotonic()
        counts = sample_threads(0.2, threading.Event(), interval=0.01)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        worker.join()
    assert elapsed >= 0.2, elapsed   # it samples for the whole window
    busy = [(stack, n) for stack, n in counts.items() if stack[0] == "thread busy-worker"]
    assert busy and any(stack[-1].endswith("spin_here") or f"{__name__}.spin_here" in stack
                        for stack, _ in busy), busy
    assert sum(n for _, n in busy) >= 5


async def test_goroutine_dump_lists_every_task() -> None:
    """A task with a known name shows with its await stack in every debug form."""
    async def parked_marker() -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(parked_marker, name="unit-marker-task")
        await trio.sleep(0)
        full = await collect("lookup", "goroutine", seconds=0, debug=2, gc=0)
        grouped = await collect("lookup", "goroutine", seconds=0, debug=1, gc=0)
        binary = await collect("lookup", "goroutine", seconds=0, debug=0, gc=0)
        nursery.cancel_scope.cancel()
    text = full.payload.decode()
    assert text.startswith("goroutine profile: total ")
    assert "[unit-marker-task]" in text and "parked_marker" in text
    assert "thread MainThread" in text
    assert full.headers == text_headers()
    assert "unit-marker-task" in grouped.payload.decode()
    assert binary.headers["Content-Disposition"] == 'attachment; filename="goroutine"'
    line = next(line for line in binary.payload.decode().splitlines() if line.startswith("task unit-marker-task;"))
    assert "parked_marker" in line and line.endswith(" 1")


async def test_heap_sees_a_new_allocation_site() -> None:
    """tracemalloc starts on first use; an allocation made after that shows with its site."""
    await collect("lookup", "heap", seconds=0, debug=1, gc=0)   # tracing is on from here
    kept = [bytearray(1024) for _ in range(200)]
    text = (await collect("lookup", "heap", seconds=0, debug=1, gc=1)).payload.decode()
    assert text.startswith("heap profile: ") and "tracing since" in text
    assert "test_pprof.py" in text
    allocs = await collect("lookup", "allocs", seconds=0, debug=0, gc=0)
    assert allocs.headers["Content-Disposition"] == 'attachment; filename="allocs"'
    assert b"test_pprof.py" in allocs.payload
    del kept


async def test_trace_records_task_spawns() -> None:
    """trace: a task started during the run appears as spawn, step and exit lines."""
    async def short_lived() -> None:
        await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        async def spawn_later() -> None:
            await trio.sleep(0.1)
            nursery.start_soon(short_lived, name="traced-task")
        nursery.start_soon(spawn_later)
        result = await collect("trace", "", seconds=1, debug=0, gc=0)
    text = result.payload.decode()
    assert result.headers["Content-Disposition"] == 'attachment; filename="trace"'
    assert text.startswith("# shoal trace:")
    assert " spawn - traced-task" in text and " exit - traced-task" in text
    assert " step " in text and " io_wait " in text


async def test_unknown_and_empty_profiles() -> None:
    """Names Go's runtime does not know are 404s; block and mutex are honestly empty."""
    with pytest.raises(ProfileNotFound, match=r"^Pprof profile not found profile: nosuch$"):
        await collect("lookup", "nosuch", seconds=0, debug=0, gc=0)
    for name in ("block", "mutex"):
        result = await collect("lookup", name, seconds=0, debug=1, gc=0)
        assert result.payload.decode().startswith(f"{name} profile: empty.")
    threads = await collect("lookup", "threadcreate", seconds=0, debug=1, gc=0)
    assert threads.payload.decode().startswith("threadcreate profile: total ")
