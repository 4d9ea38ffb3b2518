"""Python counterparts of Go's pprof profiles for ``/v1/agent/pprof/<name>`` (agent-api.md 3.9).

Go's binary pprof format cannot describe a Python process, so shoal serves its own
formats (documented in docs/debug.md) while keeping Nomad's names, parameters,
status codes and headers:

========================  ==================================================================
``cmdline``               the process's command line (``sys.orig_argv``) joined with NUL bytes
``profile``               CPU samples of every thread's stack, 100 per second for ``seconds``,
                          as collapsed stacks: ``frame;frame;frame count`` per line, root first
``trace``                 trio's scheduler for ``seconds``: task spawns, steps, exits and I/O
                          waits with microsecond times (a ``trio.abc.Instrument``)
``goroutine``             every trio task's await stack and every thread's stack
``heap`` / ``allocs``     live allocations from ``tracemalloc`` (started on first use), by
                          traceback / by source line
``threadcreate``          the threads that exist now, each with its current stack
``block`` / ``mutex``     always empty, with a line saying why (Nomad's are empty too)
========================  ==================================================================

``debug=0`` gives the machine-readable form (collapsed stacks) as a download
(``application/octet-stream``, ``Content-Disposition: attachment``); any other
``debug`` gives text for people (``text/plain; charset=utf-8``). ``profile`` and
``trace`` are always downloads, ``cmdline`` always text. Every answer carries
``X-Content-Type-Options: nosniff``.

Pure helpers (argument parsing, headers, collapsed-stack formatting) sit beside the
collectors; the collectors read the live process (threads, trio tasks, tracemalloc)
and the sampling ones run in a worker thread so the trio loop keeps serving.
"""

from __future__ import annotations

import datetime
import gc
import re
import sys
import threading
import time
import tracemalloc
import types
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

__all__ = ["LOOKUP_PROFILES", "MAX_SECONDS", "Profile", "ProfileNotFound", "collect", "collapsed",
           "go_atoi", "profile_seconds", "cmdline", "download_headers", "text_headers"]

LOOKUP_PROFILES = ("goroutine", "heap", "allocs", "threadcreate", "block", "mutex")
"""The named runtime profiles Go's ``pprof.Lookup`` knows; any other name is a 404."""
MAX_SECONDS = 30
"""Longest ``profile``/``trace`` run; Nomad has no cap, shoal refuses to hold a request longer."""
SAMPLE_INTERVAL = 0.01
"""Seconds between CPU samples (100 Hz, Go's default profiling rate)."""
MAX_TRACE_EVENTS = 200_000
"""Trace lines kept; later events are counted and reported as dropped (bounds memory)."""
MAX_HEAP_STACKS = 2000
"""Allocation sites listed by ``heap``/``allocs``, largest first; the rest are summed in one line."""
TRACEMALLOC_FRAMES = 16
"""Frames kept per allocation once tracemalloc runs."""
TEXT = "text/plain; charset=utf-8"
_GO_INT = re.compile(r"[+-]?[0-9]+")
_INT64 = 2**63


class ProfileNotFound(Exception):
    """An unknown profile name: 404 ``Pprof profile not found profile: <name>``."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Pprof profile not found profile: {name}")
        self.name = name


@dataclass(frozen=True)
class Profile:
    """One answer: the body and the headers to send with it."""

    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)


# --- pure helpers ------------------------------------------------------------------------


def go_atoi(text: str | None) -> int:
    """Go's ``strconv.Atoi`` with the error dropped, as ``net/http/pprof`` does: 0 when invalid."""
    if not text or not _GO_INT.fullmatch(text):
        return 0
    value = int(text)
    return value if -_INT64 <= value < _INT64 else 0


def profile_seconds(seconds: int) -> int:
    """``seconds`` for ``profile``/``trace``: 0 or negative -> 1 (Nomad's default), at most ``MAX_SECONDS``."""
    if seconds <= 0:
        return 1
    return min(seconds, MAX_SECONDS)


def text_headers() -> dict[str, str]:
    return {"Content-Type": TEXT, "X-Content-Type-Options": "nosniff"}


def download_headers(name: str) -> dict[str, str]:
    return {"Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff"}


def _answer(name: str, debug: int, text: str) -> Profile:
    headers = download_headers(name) if debug == 0 else text_headers()
    return Profile(text.encode("utf-8", errors="replace"), headers)


def collapsed(counts: Mapping[tuple[str, ...], int]) -> str:
    """Collapsed stacks (Brendan Gregg's format): ``root;...;leaf count``, largest count first."""
    lines = [f"{';'.join(part.replace(';', ':') for part in stack)} {count}"
             for stack, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    return "".join(line + "\n" for line in lines)


def cmdline(argv: Sequence[str]) -> Profile:
    """``cmdline``: the arguments joined with NUL bytes, as text (never a download)."""
    return Profile("\x00".join(argv).encode("utf-8", errors="replace"), text_headers())


def _function_label(frame: types.FrameType) -> str:
    """``module.Qualified.name`` of a frame's function (stable across lines of one function)."""
    module = frame.f_globals.get("__name__", "?")
    return f"{module}.{frame.f_code.co_qualname}"


def _line_label(frame: types.FrameType, lineno: int) -> str:
    return f"{_function_label(frame)}\n        {frame.f_code.co_filename}:{lineno}"


def _thread_frames(frame: types.FrameType | None) -> list[tuple[types.FrameType, int]]:
    """A thread's frames, root first."""
    frames = []
    while frame is not None:
        frames.append((frame, frame.f_lineno or 0))
        frame = frame.f_back
    frames.reverse()
    return frames


def _thread_names() -> dict[int, str]:
    return {thread.ident: thread.name for thread in threading.enumerate() if thread.ident is not None}


# --- CPU samples -------------------------------------------------------------------------


def sample_threads(seconds: float, stop: threading.Event,
                   interval: float = SAMPLE_INTERVAL) -> Counter[tuple[str, ...]]:
    """Sample every other thread's stack each ``interval`` for ``seconds`` (blocking).

    Returns how often each stack was seen; a stack starts with ``thread <name>``.
    ``stop`` ends the run early (the request went away).
    """
    me = threading.get_ident()
    counts: Counter[tuple[str, ...]] = Counter()
    deadline = time.monotonic() + seconds
    while True:
        names = _thread_names()
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            stack = [f"thread {names.get(ident, ident)}"]
            stack += [_function_label(f) for f, _ in _thread_frames(frame)]
            counts[tuple(stack)] += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0 or stop.wait(min(interval, remaining)):
            return counts


async def _in_thread(function: Any, *args: Any) -> Any:
    """Run a blocking collector in a worker thread; a cancelled request stops it."""
    stop = threading.Event()
    try:
        return await trio.to_thread.run_sync(function, *args, stop, abandon_on_cancel=True)
    finally:
        stop.set()


async def cpu_profile(seconds: int) -> Profile:
    """``profile``: collapsed CPU samples of all threads over ``seconds``."""
    counts = await _in_thread(sample_threads, float(seconds))
    return Profile(collapsed(counts).encode(), _timed_headers("profile", seconds))


def _timed_headers(name: str, seconds: int) -> dict[str, str]:
    """Download headers plus ``X-Shoal-Profile-Seconds``: the window actually recorded
    (after the default and the cap), since the collapsed format has no room for it."""
    return {**download_headers(name), "X-Shoal-Profile-Seconds": str(seconds)}


# --- trace: trio's scheduler -------------------------------------------------------------


class _TraceRecorder(trio.abc.Instrument):
    """Records trio scheduling events with times relative to the start, in microseconds."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.lines: list[str] = []
        self.dropped = 0
        self._steps: dict[Any, float] = {}
        self._io_started = 0.0

    def _micros(self, at: float) -> int:
        return int((at - self.start) * 1e6)

    def _add(self, line: str) -> None:
        if len(self.lines) < MAX_TRACE_EVENTS:
            self.lines.append(line)
        else:
            self.dropped += 1

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self._add(f"{self._micros(time.perf_counter())} spawn - {task.name}")

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self._add(f"{self._micros(time.perf_counter())} exit - {task.name}")

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._steps[task] = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        now = time.perf_counter()
        began = self._steps.pop(task, now)
        self._add(f"{self._micros(began)} step {int((now - began) * 1e6)} {task.name}")

    def before_io_wait(self, timeout: float) -> None:
        self._io_started = time.perf_counter()

    def after_io_wait(self, timeout: float) -> None:
        now = time.perf_counter()
        self._add(f"{self._micros(self._io_started)} io_wait {int((now - self._io_started) * 1e6)} -")


async def trace(seconds: int) -> Profile:
    """``trace``: every trio scheduling event for ``seconds``, one line each."""
    recorder = _TraceRecorder()
    trio.lowlevel.add_instrument(recorder)
    try:
        await trio.sleep(seconds)
    finally:
        trio.lowlevel.remove_instrument(recorder)
    header = (f"# shoal trace: trio scheduler events for {seconds}s; columns: start_us event "
              f"duration_us task ('-' = none); {len(recorder.lines)} events, "
              f"{recorder.dropped} dropped\n")
    body = header + "".join(line + "\n" for line in recorder.lines)
    return Profile(body.encode("utf-8", errors="replace"), _timed_headers("trace", seconds))


# --- goroutine: trio tasks and threads ---------------------------------------------------


def _all_tasks() -> list[tuple[trio.lowlevel.Task, int]]:
    """Every trio task of this run, depth first from the root, with its depth."""
    out: list[tuple[trio.lowlevel.Task, int]] = []
    pending = [(trio.lowlevel.current_root_task(), 0)]
    while pending:
        task, depth = pending.pop()
        if task is None:
            continue
        out.append((task, depth))
        children = [child for nursery in task.child_nurseries for child in nursery.child_tasks]
        children.sort(key=lambda child: (child.name, id(child)), reverse=True)
        pending.extend((child, depth + 1) for child in children)
    return out


def _task_frames(task: trio.lowlevel.Task) -> list[tuple[types.FrameType, int]]:
    """A task's await stack, root first (empty for the task running this code's caller chain)."""
    try:
        return list(task.iter_await_frames())
    except (RuntimeError, AttributeError):   # a coroutine that is finishing has no frames
        return []


@dataclass(frozen=True)
class _Stack:
    kind: str        # "task" or "thread"
    name: str        # the trio task's or thread's name
    title: str       # the heading of its entry in a text dump
    frames: list[tuple[types.FrameType, int]]   # root first


def _stacks() -> list[_Stack]:
    """Every trio task (depth first), then every thread."""
    entries = []
    for number, (task, depth) in enumerate(_all_tasks(), start=1):
        entries.append(_Stack("task", task.name, f"task {number} [{task.name}] depth {depth}",
                              _task_frames(task)))
    names = _thread_names()
    for ident, frame in sorted(sys._current_frames().items()):
        name = str(names.get(ident, ident))
        entries.append(_Stack("thread", name, f"thread {name} ident {ident}", _thread_frames(frame)))
    return entries


def _stack_text(frames: Sequence[tuple[types.FrameType, int]]) -> str:
    """Frames innermost first, as Go's dumps list them."""
    if not frames:
        return "    (no frames)\n"
    return "".join(f"    {_line_label(frame, line)}\n" for frame, line in reversed(frames))


def goroutine(debug: int) -> Profile:
    """``goroutine``: every trio task's await stack and every thread's stack.

    ``debug=0``: collapsed stacks (``task <name>;...`` with counts); ``debug=1``:
    identical stacks grouped with their count and task names; ``debug>=2``: each
    task and thread on its own, innermost frame first.
    """
    entries = _stacks()
    tasks = sum(1 for entry in entries if entry.kind == "task")
    header = (f"goroutine profile: total {tasks} trio tasks, {len(entries) - tasks} threads "
              f"(innermost frame first)\n\n")
    if debug == 0:
        counts: Counter[tuple[str, ...]] = Counter()
        for entry in entries:
            counts[(f"{entry.kind} {entry.name}", *(_function_label(f) for f, _ in entry.frames))] += 1
        return _answer("goroutine", debug, collapsed(counts))
    if debug == 1:
        groups: dict[str, list[str]] = {}
        for entry in entries:
            groups.setdefault(_stack_text(entry.frames), []).append(entry.title)
        parts = [f"{len(titles)} @ {', '.join(titles)}\n{stack}\n"
                 for stack, titles in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))]
        return _answer("goroutine", debug, header + "".join(parts))
    parts = [f"{entry.title}:\n{_stack_text(entry.frames)}\n" for entry in entries]
    return _answer("goroutine", debug, header + "".join(parts))


def threadcreate(debug: int) -> Profile:
    """``threadcreate``: the threads that exist now (Python does not record where each began)."""
    frames = sys._current_frames()
    threads = sorted(threading.enumerate(), key=lambda t: t.ident or 0)
    if debug == 0:
        counts: Counter[tuple[str, ...]] = Counter()
        for thread in threads:
            stack = [_function_label(f) for f, _ in _thread_frames(frames.get(thread.ident or -1))]
            counts[(f"thread {thread.name}", *stack)] += 1
        return _answer("threadcreate", debug, collapsed(counts))
    parts = [f"threadcreate profile: total {len(threads)}\n\n"]
    for thread in threads:
        parts.append(f"thread {thread.name} ident {thread.ident} native_id {thread.native_id} "
                     f"daemon {thread.daemon}:\n"
                     f"{_stack_text(_thread_frames(frames.get(thread.ident or -1)))}\n")
    return _answer("threadcreate", debug, "".join(parts))


# --- heap and allocs: tracemalloc --------------------------------------------------------

_tracing_since: list[str] = []   # wall time tracemalloc was started by shoal (one element)


def _ensure_tracing() -> str:
    """Start tracemalloc on first use; the RFC 3339 time tracing started."""
    if not tracemalloc.is_tracing():
        tracemalloc.start(TRACEMALLOC_FRAMES)
        _tracing_since[:] = [datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")]
    return _tracing_since[0] if _tracing_since else "before shoal looked"


def _snapshot() -> tracemalloc.Snapshot:
    return tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),))


def _frame_label(frame: tracemalloc.Frame) -> str:
    return f"{frame.filename}:{frame.lineno}"


def _site_lines(stats: Sequence[tracemalloc.Statistic], traceback: bool) -> list[str]:
    shown = list(stats[:MAX_HEAP_STACKS])
    lines = []
    for stat in shown:
        lines.append(f"{stat.size} bytes in {stat.count} blocks\n")
        frames = list(stat.traceback) if traceback else list(stat.traceback)[-1:]
        lines += [f"    {_frame_label(frame)}\n" for frame in reversed(frames)]
        lines.append("\n")
    rest = stats[MAX_HEAP_STACKS:]
    if rest:
        lines.append(f"{sum(s.size for s in rest)} bytes in {sum(s.count for s in rest)} blocks "
                     f"at {len(rest)} further sites not listed\n")
    return lines


def heap_report(name: str, debug: int, gc_first: bool, stop: threading.Event | None = None) -> Profile:
    """``heap`` (by traceback) or ``allocs`` (by source line) from a tracemalloc snapshot.

    Blocking; tracemalloc sees only allocations made after it started, so the first
    call shows little. ``gc_first`` collects garbage before the snapshot (``gc>0``).
    """
    if gc_first:
        gc.collect()
    since = _ensure_tracing()
    snapshot = _snapshot()
    by = "traceback" if name == "heap" else "lineno"
    stats = snapshot.statistics(by)
    current, peak = tracemalloc.get_traced_memory()
    if debug == 0:
        counts = {tuple(_frame_label(f) for f in stat.traceback): stat.size for stat in stats}
        return _answer(name, debug, collapsed(counts))
    total = sum(stat.size for stat in stats)
    blocks = sum(stat.count for stat in stats)
    what = "live allocations by traceback" if name == "heap" else \
        "live allocations by source line (tracemalloc cannot see freed memory)"
    header = (f"{name} profile: {total} bytes in {blocks} blocks; {what}; tracing since {since}; "
              f"traced now {current} bytes, peak {peak} bytes\n\n")
    return _answer(name, debug, header + "".join(_site_lines(stats, traceback=name == "heap")))


def empty_profile(name: str, debug: int) -> Profile:
    """``block``/``mutex``: always empty, saying why."""
    text = (f"{name} profile: empty. shoal records no {'blocking' if name == 'block' else 'lock contention'} "
            f"events: Python has no counterpart of Go's runtime sampling of them, and Nomad leaves "
            f"that sampling off, so its {name} profile is empty as well.\n")
    return _answer(name, debug, text)


# --- dispatch ----------------------------------------------------------------------------


async def collect(kind: str, name: str, *, seconds: int, debug: int, gc: int,
                  argv: Iterable[str] | None = None) -> Profile:
    """Produce one profile.

    Args:
        kind: ``cmdline``, ``profile``, ``trace`` or ``lookup`` (a named profile).
        name: the profile name for ``lookup``.
        seconds: as parsed from the request; ``profile_seconds`` applies the default and cap.
        debug: 0 for the download form, else text.
        gc: > 0 collects garbage before a ``heap`` snapshot.
        argv: the command line for ``cmdline`` (``sys.orig_argv`` by default).
    Raises:
        ProfileNotFound: ``lookup`` of a name Go's runtime would not know.
    """
    if kind == "cmdline":
        return cmdline(list(argv) if argv is not None else list(sys.orig_argv))
    if kind == "profile":
        return await cpu_profile(profile_seconds(seconds))
    if kind == "trace":
        return await trace(profile_seconds(seconds))
    if kind != "lookup" or name not in LOOKUP_PROFILES:
        raise ProfileNotFound(name)
    if name == "goroutine":
        return goroutine(debug)
    if name == "threadcreate":
        return threadcreate(debug)
    if name in ("heap", "allocs"):
        return await _in_thread(heap_report, name, debug, name == "heap" and gc > 0)
    return empty_profile(name, debug)
