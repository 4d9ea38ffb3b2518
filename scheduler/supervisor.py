"""The scheduler worker supervisor: a pool of workers, their statuses, pause and resume.

Theory of operation (agent-api.md section 5.6).

State owned. ``SupervisorCore`` keeps the pool in force (``num_schedulers`` workers,
each with the same ``enabled_schedulers``), the workers of replaced pools that have
not exited yet (the *retiring* ones, never listed by ``workers()``), whether this
server leads, and two outboxes: workers the driver must spawn a loop for
(``take_started``) and workers whose parked loop must wake (``wake_events``).

Per worker it keeps a ``status`` and a ``workload_status`` with the exact strings of
5.6.1, the workload in force when a pause took effect (restored on resume), and
whether its loop has checked in (``loop_started``).

Inputs. Operator and leadership calls (``reconfigure``, ``set_leader``, ``start_pool``,
``stop_all``, and per worker ``pause_worker``/``resume_worker``/``stop_worker``) only
*request* a change; the worker's own loop makes it real at its next ``checkpoint``,
as Nomad's loop checks its pause flag before each dequeue. Transitions (5.6.2):

    new worker      -> Starting/UnknownStatus --loop_started--> Started/Running
    Started  --pause--> Pausing --checkpoint--> Paused/Paused
    Paused   --resume--> Resuming --resumed--> Started/<workload before the pause>
    any      --stop--> Stopping --exited--> Stopped/Stopped

Choices where Nomad is silent or has a defect:
- a resume while ``Pausing`` cancels the pending pause (spec Q10), back to Started
  (or Starting when the loop has not checked in yet);
- a pause while ``Resuming`` (the loop is still parked) goes straight back to Paused;
- ``pause`` is ignored when Pausing, Paused, Stopping or Stopped; ``resume`` acts only
  when Pausing or Paused; ``stop`` is ignored when Stopping or Stopped.

Leadership (5.6.3): on gaining leadership the first ``leader_pause_count(n)`` workers
of the pool are paused, on losing it that same slice is resumed; after a rebuild the
rule is applied at once to the new pool. Followers never pause workers.

Pool rebuild (5.6.4): a reconfigure rebuilds the pool when ``num_schedulers`` differs
or the enabled lists differ as multisets (``lists_differ``); every old worker is told
to stop and a fresh pool with fresh ids starts.

Invariants: a listed worker belongs to the pool in force; a worker in ``Paused`` has a
parked loop; ids are never reused. No clock or randomness here: ids come from the
injected ``new_id`` and the ``started`` stamps from the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from .errors import SchedulerConfigError

__all__ = ["ALL_SCHEDULERS", "WorkerStatus", "WorkloadStatus", "WorkerView", "SupervisorCore",
           "leader_pause_count", "lists_differ", "validate_pool_args", "format_rfc3339_nano"]

ALL_SCHEDULERS = ("service", "batch", "system", "sysbatch", "_core")
"""The valid names in ``enabled_schedulers``; ``_core`` must always be present."""


class WorkerStatus(StrEnum):
    """A worker's ``status`` (agent-api.md 5.6.1), spelt as the HTTP API shows it."""

    UNKNOWN = "Unknown"
    STARTING = "Starting"
    STARTED = "Started"
    PAUSING = "Pausing"
    PAUSED = "Paused"
    RESUMING = "Resuming"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


class WorkloadStatus(StrEnum):
    """What a worker's loop is doing (``workload_status``, 5.6.1; note the first value)."""

    UNKNOWN = "UnknownStatus"
    RUNNING = "Running"
    WAITING_TO_DEQUEUE = "WaitingToDequeue"
    WAITING_FOR_RAFT = "WaitingForRaft"
    SCHEDULING = "Scheduling"
    SUBMITTING = "Submitting"
    BACKOFF = "Backoff"
    STOPPED = "Stopped"
    PAUSED = "Paused"


@dataclass(frozen=True)
class WorkerView:
    """One worker as ``GET /v1/agent/schedulers`` lists it."""

    id: str
    enabled_schedulers: tuple[str, ...]
    started: str            # creation time, RFC 3339 with up to 9 fractional digits
    status: WorkerStatus
    workload_status: WorkloadStatus


def leader_pause_count(n: int) -> int:
    """How many of a leader's ``n`` workers are paused: floor(3n/4), none when n <= 1."""
    return 0 if n <= 1 else (3 * n) // 4


def lists_differ(old: Sequence[str], new: Sequence[str]) -> bool:
    """Whether two ``enabled_schedulers`` lists differ as multisets (order ignored).

    Nomad compares only over the new list's length (a prefix is "unchanged", an
    extension crashes the request); shoal compares the whole sorted lists (5.6.4).
    """
    return sorted(old) != sorted(new)


def validate_pool_args(num_schedulers: int, enabled: Sequence[str]) -> None:
    """Nomad's ``SchedulerWorkerPoolArgs.IsValid`` (agent-api.md 3.11).

    Raises:
        SchedulerConfigError: ``num_schedulers`` is negative, a name is not one of
            ``ALL_SCHEDULERS``, or ``_core`` is missing. Duplicates are accepted.
    """
    if isinstance(num_schedulers, bool) or not isinstance(num_schedulers, int) or num_schedulers < 0:
        raise SchedulerConfigError(f"num_schedulers must be an integer >= 0, not {num_schedulers!r}")
    unknown = [name for name in enabled if name not in ALL_SCHEDULERS]
    if unknown:
        raise SchedulerConfigError(f"unknown scheduler {unknown[0]!r}")
    if "_core" not in enabled:
        raise SchedulerConfigError('"_core" scheduler not enabled')


def format_rfc3339_nano(wall_ns: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: up to 9 fractional digits, trailing zeros trimmed.

    ``1640114700911883000`` -> ``2021-12-21T19:25:00.911883Z``; a whole second has no dot.
    """
    seconds, nanos = divmod(wall_ns, 1_000_000_000)
    days, rest = divmod(seconds, 86_400)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    year, month, day = _civil_from_days(days)
    fraction = f"{nanos:09d}".rstrip("0")
    dot = f".{fraction}" if fraction else ""
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{dot}Z"


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's method)."""
    days += 719_468
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    mp = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


class _Worker:
    """The supervisor's record of one worker (mutable; views are copied out)."""

    __slots__ = ("id", "enabled", "started", "status", "workload", "workload_before_pause",
                 "loop_started")

    def __init__(self, worker_id: str, enabled: tuple[str, ...], started: str) -> None:
        self.id = worker_id
        self.enabled = enabled
        self.started = started
        self.status = WorkerStatus.STARTING
        self.workload = WorkloadStatus.UNKNOWN
        self.workload_before_pause = WorkloadStatus.UNKNOWN   # restored by `resumed`
        self.loop_started = False                           # the loop has called loop_started

    def view(self) -> WorkerView:
        return WorkerView(self.id, self.enabled, self.started, self.status, self.workload)


_NOT_PAUSABLE = frozenset({WorkerStatus.PAUSING, WorkerStatus.PAUSED, WorkerStatus.STOPPING,
                           WorkerStatus.STOPPED})
_GONE = frozenset({WorkerStatus.STOPPING, WorkerStatus.STOPPED})


class SupervisorCore:
    """The worker pool of one server and every worker's status (agent-api.md 5.6).

    Args:
        num_schedulers: the pool size (>= 0).
        enabled_schedulers: the scheduler types each worker dequeues; must contain ``_core``.
        new_id: a fresh worker id per call (a UUID in the agent, a counter in tests).
        log: carries the node name.

    Raises:
        SchedulerConfigError: the settings are invalid (``validate_pool_args``).
    """

    def __init__(self, num_schedulers: int, enabled_schedulers: Sequence[str], *,
                 new_id: Callable[[], str], log: logging.LoggerAdapter) -> None:
        validate_pool_args(num_schedulers, enabled_schedulers)
        self.num_schedulers = num_schedulers
        self.enabled_schedulers: tuple[str, ...] = tuple(enabled_schedulers)
        self._new_id = new_id
        self._log = log
        self._pool: list[_Worker] = []              # the pool in force, in creation order
        self._retiring: dict[str, _Worker] = {}     # workers of replaced pools not yet exited
        self._by_id: dict[str, _Worker] = {}        # every worker whose loop may still call in
        self._is_leader = False
        self._pool_started = False
        self._to_start: list[_Worker] = []          # spawned by the driver via take_started
        self._to_wake: dict[str, None] = {}         # ordered set drained by wake_events

    # ------------------------------------------------------------------ operator inputs

    def start_pool(self, started: str) -> None:
        """Build the first pool; ``started`` is the creation stamp (RFC 3339, wall time)."""
        assert not self._pool_started, "start_pool called twice"
        self._pool_started = True
        self._build_pool(started)

    def reconfigure(self, num_schedulers: int, enabled: Sequence[str], started: str) -> bool:
        """Apply a new pool size and scheduler list (agent-api.md 3.11, 5.6.4).

        Returns:
            True when the pool was rebuilt, False when nothing differed.

        Raises:
            SchedulerConfigError: invalid values; nothing changed.
        """
        validate_pool_args(num_schedulers, enabled)
        if num_schedulers == self.num_schedulers and not lists_differ(self.enabled_schedulers, enabled):
            return False
        self._log.info("scheduler pool rebuilding num=%d enabled=%s old_num=%d", num_schedulers,
                       ",".join(enabled), self.num_schedulers)
        self.num_schedulers = num_schedulers
        self.enabled_schedulers = tuple(enabled)
        for worker in self._pool:
            self._stop(worker)
            self._retiring[worker.id] = worker
        self._pool = []
        self._pool_started = True
        self._build_pool(started)
        return True

    def set_leader(self, is_leader: bool) -> None:
        """Pause (gaining leadership) or resume (losing it) the leader's slice (5.6.3)."""
        if is_leader == self._is_leader:
            return
        self._is_leader = is_leader
        count = leader_pause_count(len(self._pool))
        self._log.info("scheduler leader pause is_leader=%s workers=%d of=%d", is_leader, count,
                       len(self._pool))
        for worker in self._pool[:count]:
            if is_leader:
                self._pause(worker)
            else:
                self._resume(worker)

    def stop_all(self) -> None:
        """Tell every worker, current and retiring, to stop (agent shutdown)."""
        for worker in [*self._pool, *self._retiring.values()]:
            self._stop(worker)

    def pause_worker(self, worker_id: str) -> None:
        """Nomad's ``Worker.Pause``: ignored when Pausing, Paused, Stopping or Stopped."""
        self._pause(self._worker(worker_id))

    def resume_worker(self, worker_id: str) -> None:
        """Nomad's ``Worker.Resume``, which also cancels a pending pause (spec Q10)."""
        self._resume(self._worker(worker_id))

    def stop_worker(self, worker_id: str) -> None:
        """Nomad's ``Worker.Stop``: the loop exits at its next checkpoint (or wakes to)."""
        self._stop(self._worker(worker_id))

    # ------------------------------------------------------------------ worker-loop inputs

    def loop_started(self, worker_id: str) -> None:
        """The worker's loop is running: Starting -> Started/Running."""
        worker = self._worker(worker_id)
        worker.loop_started = True
        worker.workload = WorkloadStatus.RUNNING
        if worker.status == WorkerStatus.STARTING:
            worker.status = WorkerStatus.STARTED

    def checkpoint(self, worker_id: str) -> str:
        """What the loop does next, asked before each dequeue attempt.

        Returns:
            ``"stop"``: exit (then call ``exited``); ``"pause"``: the worker is now
            Paused/Paused, park until woken (then call ``resumed``); ``"run"``: dequeue.
        """
        worker = self._worker(worker_id)
        if worker.status in _GONE:
            return "stop"
        if worker.status in (WorkerStatus.PAUSING, WorkerStatus.PAUSED):
            if worker.status == WorkerStatus.PAUSING:
                worker.workload_before_pause = worker.workload
                self._log.debug("worker paused id=%s", worker.id)
            worker.status = WorkerStatus.PAUSED
            worker.workload = WorkloadStatus.PAUSED
            return "pause"
        if worker.status == WorkerStatus.RESUMING:     # woken but `resumed` not called: same thing
            self.resumed(worker_id)
        return "run"

    def resumed(self, worker_id: str) -> None:
        """A parked loop woke up: Resuming -> Started with the workload before the pause.

        A worker paused or stopped again meanwhile keeps that status; its next
        checkpoint parks it again or lets it exit.
        """
        worker = self._worker(worker_id)
        if worker.status == WorkerStatus.RESUMING:
            worker.status = WorkerStatus.STARTED
            worker.workload = worker.workload_before_pause
            self._log.debug("worker resumed id=%s", worker.id)

    def set_workload(self, worker_id: str, status: WorkloadStatus) -> None:
        """Record what the loop is doing now (WaitingToDequeue, Scheduling, Backoff, ...)."""
        worker = self._worker(worker_id)
        if worker.status != WorkerStatus.STOPPED:
            worker.workload = WorkloadStatus(status)

    def exited(self, worker_id: str) -> None:
        """The loop ended: Stopped/Stopped, and a retiring worker is forgotten."""
        worker = self._worker(worker_id)
        worker.status = WorkerStatus.STOPPED
        worker.workload = WorkloadStatus.STOPPED
        self._retiring.pop(worker_id, None)
        del self._by_id[worker_id]
        self._to_wake.pop(worker_id, None)

    # ------------------------------------------------------------------ outputs and views

    def workers(self) -> list[WorkerView]:
        """The pool in force, in creation order (retiring workers are not listed)."""
        return [worker.view() for worker in self._pool]

    def retiring(self) -> list[WorkerView]:
        """Workers of replaced pools whose loops have not exited yet."""
        return [worker.view() for worker in self._retiring.values()]

    def take_started(self) -> list[WorkerView]:
        """Workers created since the last call; the driver spawns one loop for each."""
        started, self._to_start = self._to_start, []
        return [worker.view() for worker in started]

    def wake_events(self) -> set[str]:
        """Drain the ids whose loop must be woken from a park or a backoff (resume, stop)."""
        ids, self._to_wake = set(self._to_wake), {}
        return ids

    @property
    def is_leader(self) -> bool:
        return self._is_leader

    # ------------------------------------------------------------------ helpers

    def _build_pool(self, started: str) -> None:
        for _ in range(self.num_schedulers):
            worker = _Worker(self._new_id(), self.enabled_schedulers, started)
            assert worker.id not in self._by_id, f"worker id reused: {worker.id}"
            self._pool.append(worker)
            self._by_id[worker.id] = worker
            self._to_start.append(worker)
        if self._is_leader:
            for worker in self._pool[:leader_pause_count(len(self._pool))]:
                self._pause(worker)

    def _worker(self, worker_id: str) -> _Worker:
        worker = self._by_id.get(worker_id)
        if worker is None:
            raise KeyError(f"unknown or exited worker {worker_id!r}")
        return worker

    def _pause(self, worker: _Worker) -> None:
        if worker.status in _NOT_PAUSABLE:
            return
        if worker.status == WorkerStatus.RESUMING:     # still parked: stay parked
            worker.status = WorkerStatus.PAUSED
            self._to_wake.pop(worker.id, None)
            return
        worker.status = WorkerStatus.PAUSING

    def _resume(self, worker: _Worker) -> None:
        if worker.status == WorkerStatus.PAUSING:      # cancel the pending pause (Q10)
            worker.status = WorkerStatus.STARTED if worker.loop_started else WorkerStatus.STARTING
        elif worker.status == WorkerStatus.PAUSED:
            worker.status = WorkerStatus.RESUMING
            self._to_wake[worker.id] = None

    def _stop(self, worker: _Worker) -> None:
        if worker.status in _GONE:
            return
        worker.status = WorkerStatus.STOPPING
        self._to_wake[worker.id] = None
