"""The trio driver of ``SupervisorCore``: one task per scheduler worker.

``run_supervisor`` builds the first pool, hands back a ``SupervisorHandle`` through
``task_status`` and owns a task per worker. Each worker loop asks the core what to do
before every dequeue attempt (``checkpoint``), parks on a ``trio.Event`` while paused,
asks the leader's broker for work through the injected ``dequeue`` callback and
hands what it gets to ``process``. Which decisions are made (pause, stop, statuses)
is the core's business; this module only waits.

The HTTP facade and the leadership watcher call the handle's plain methods; after
each one the handle spawns the workers the core created (``take_started``) and sets
the events of the workers the core wants woken (``wake_events``). Change the core
only through the handle, or those outputs wait for the next handle call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

import trio

from .supervisor import SupervisorCore, WorkerStatus, WorkerView, WorkloadStatus, format_rfc3339_nano

__all__ = ["run_supervisor", "SupervisorHandle", "backoff_delay", "DEQUEUE_TIMEOUT"]

log = logging.getLogger(__name__)

DEQUEUE_TIMEOUT = 0.5        # one dequeue attempt, as a Nomad worker's (agent-api.md 5.6.1)
BACKOFF_BASE = 0.02          # Nomad's backoffBaselineFast
BACKOFF_LIMIT = 10.0         # Nomad's backoffLimitSlow

Dequeue = Callable[..., Awaitable["tuple[Any, ...] | None"]]
Process = Callable[..., Awaitable[None]]


def backoff_delay(failures: int, *, base: float = BACKOFF_BASE, limit: float = BACKOFF_LIMIT) -> float:
    """Nomad's ``Worker.backoffErr``: ``base * 4**failures`` seconds, capped at ``limit``.

    ``failures`` counts the consecutive failures before this one (0 for the first).
    """
    if failures > 64:
        return limit
    return min(base * 4 ** failures, limit)


class SupervisorHandle:
    """What the rest of the agent calls; every method is synchronous and never blocks."""

    def __init__(self, core: SupervisorCore, nursery: trio.Nursery, dequeue: Dequeue,
                 process: Process, now_wall: Callable[[], int], release: Process | None = None) -> None:
        self._core = core
        self._release = release
        self._nursery = nursery
        self._dequeue = dequeue
        self._process = process
        self._now_wall = now_wall
        self._events: dict[str, trio.Event] = {}     # per live worker: set to wake it
        self.dequeue_failures = 0                     # total, for stats and tests

    # views

    def workers(self) -> list[WorkerView]:
        """The pool in force (``GET /v1/agent/schedulers``)."""
        return self._core.workers()

    def config(self) -> dict[str, Any]:
        """The values in force (``GET /v1/agent/schedulers/config`` without server_id)."""
        return {"num_schedulers": self._core.num_schedulers,
                "enabled_schedulers": list(self._core.enabled_schedulers)}

    def running_tasks(self) -> int:
        """Worker loops alive now, current and retiring."""
        return len(self._events)

    # inputs

    def reconfigure(self, num_schedulers: int, enabled: Sequence[str]) -> bool:
        """Apply a pool change and spawn the new workers; True when the pool was rebuilt.

        Raises:
            SchedulerConfigError: invalid values; nothing changed.
        """
        rebuilt = self._core.reconfigure(num_schedulers, enabled, self._stamp())
        self._sync()
        return rebuilt

    def set_leader(self, is_leader: bool) -> None:
        """Leadership gained or lost: the core pauses or resumes the leader's slice."""
        self._core.set_leader(is_leader)
        self._sync()

    def pause_worker(self, worker_id: str) -> None:
        self._core.pause_worker(worker_id)
        self._sync()

    def resume_worker(self, worker_id: str) -> None:
        self._core.resume_worker(worker_id)
        self._sync()

    def stop_all(self) -> None:
        """Tell every worker to stop; their loops exit at their next checkpoint."""
        self._core.stop_all()
        self._sync()

    # internals

    def _stamp(self) -> str:
        return format_rfc3339_nano(self._now_wall())

    def _start_pool(self) -> None:
        self._core.start_pool(self._stamp())
        self._sync()

    def _sync(self) -> None:
        """Spawn the workers the core created and wake the ones it asks for."""
        for view in self._core.take_started():
            self._events[view.id] = trio.Event()
            self._nursery.start_soon(self._worker_loop, view.id, view.enabled_schedulers,
                                     name=f"scheduler-worker-{view.id}")
        for worker_id in sorted(self._core.wake_events()):
            event = self._events.get(worker_id)
            if event is not None:
                event.set()

    async def _wait_woken(self, worker_id: str) -> None:
        await self._events[worker_id].wait()
        self._events[worker_id] = trio.Event()

    async def _worker_loop(self, worker_id: str, enabled: tuple[str, ...]) -> None:
        """One worker: checkpoint, then dequeue and process, until told to stop."""
        core = self._core
        core.loop_started(worker_id)
        log.debug("scheduler worker started id=%s", worker_id)
        failures = 0
        try:
            while True:
                core.set_workload(worker_id, WorkloadStatus.WAITING_TO_DEQUEUE)
                action = core.checkpoint(worker_id)
                if action == "stop":
                    return
                if action == "pause":
                    await self._wait_woken(worker_id)
                    core.resumed(worker_id)
                    continue
                if await self._attempt(worker_id, enabled):
                    failures = 0
                    continue
                core.set_workload(worker_id, WorkloadStatus.BACKOFF)
                with trio.move_on_after(backoff_delay(failures)):
                    await self._wait_woken(worker_id)      # a stop or resume cuts the backoff short
                failures += 1
        finally:
            core.exited(worker_id)
            self._events.pop(worker_id, None)
            log.debug("scheduler worker exited id=%s", worker_id)

    def _told_to_stand_down(self, worker_id: str) -> bool:
        for view in list(self._core.workers()) + list(self._core.retiring()):
            if view.id == worker_id:
                # A pausing worker finishes what it dequeued, as Nomad's does (5.6.2); a
                # stopping one (its pool was replaced, e.g. num_schedulers 0) does not.
                return view.status in (WorkerStatus.STOPPING, WorkerStatus.STOPPED)
        return True   # not in any pool any more

    async def _attempt(self, worker_id: str, enabled: tuple[str, ...]) -> bool:
        """One dequeue attempt and, when it yields work, one evaluation; False on failure."""
        try:
            got = await self._dequeue(list(enabled), timeout=DEQUEUE_TIMEOUT)
        except Exception as exc:    # the leader is unreachable, not elected yet, ...
            self.dequeue_failures += 1
            log.warning("scheduler dequeue failed id=%s error=%s", worker_id, exc)
            return False
        if got is None:
            return True
        if self._told_to_stand_down(worker_id):
            # Stopped while the dequeue was in flight: a retired worker takes no work, so
            # the evaluation goes straight back to the broker (``release``, a nack).
            log.info("scheduler worker hands back an evaluation id=%s", worker_id)
            if self._release is not None:
                try:
                    await self._release(*got)
                except Exception as exc:  # the broker redelivers it after its nack timeout anyway
                    log.warning("scheduler hand-back failed id=%s error=%s", worker_id, exc)
            return True
        self._core.set_workload(worker_id, WorkloadStatus.SCHEDULING)
        try:
            await self._process(*got)
        except Exception as exc:
            log.warning("scheduler processing failed id=%s error=%r", worker_id, exc)
            return False
        return True


async def run_supervisor(core: SupervisorCore, *, dequeue: Dequeue, process: Process,
                         now_wall: Callable[[], int] = time.time_ns, release: Process | None = None,
                         task_status: trio.TaskStatus[SupervisorHandle] = trio.TASK_STATUS_IGNORED,
                         ) -> NoReturn:
    """Run the scheduler workers of ``core`` until cancelled.

    Args:
        core: a fresh supervisor; its first pool is built here (``start_pool``).
        dequeue: ``await dequeue(enabled_schedulers, timeout=0.5)`` -> ``None`` (nothing
            within the timeout) or a tuple of arguments for ``process``, normally
            ``(evaluation, token)``. Raising means the attempt failed: the worker shows
            ``Backoff`` and waits ``backoff_delay``.
        process: ``await process(*got)``: schedule one evaluation (ack or nack included).
        now_wall: wall-clock nanoseconds, for the workers' ``started`` stamps.
        task_status: receives the ``SupervisorHandle``.
    """
    async with trio.open_nursery() as nursery:
        handle = SupervisorHandle(core, nursery, dequeue, process, now_wall, release)
        handle._start_pool()
        task_status.started(handle)
        await trio.sleep_forever()
    raise AssertionError("unreachable")   # pragma: no cover
