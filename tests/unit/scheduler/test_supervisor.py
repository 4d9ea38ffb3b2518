"""SupervisorCore: worker statuses, pause/resume/stop, the leader rule and pool rebuilds (agent-api.md 5.6)."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from scheduler.errors import SchedulerConfigError
from scheduler.supervisor import (ALL_SCHEDULERS, SupervisorCore, WorkerStatus, WorkloadStatus,
                                  format_rfc3339_nano, leader_pause_count, lists_differ,
                                  validate_pool_args)

LOG = logging.LoggerAdapter(logging.getLogger("test.supervisor"), {"node": "s1"})
DEFAULT = ["service", "batch", "system", "sysbatch", "_core"]
S, W = WorkerStatus, WorkloadStatus


def make_core(n: int = 4, enabled: list[str] | None = None) -> SupervisorCore:
    counter = itertools.count(1)
    core = SupervisorCore(n, DEFAULT if enabled is None else enabled,
                          new_id=lambda: f"w{next(counter)}", log=LOG)
    core.start_pool("2021-12-21T19:25:00.911883Z")
    return core


def statuses(core: SupervisorCore) -> list[tuple[str, str]]:
    return [(str(w.status), str(w.workload_status)) for w in core.workers()]


def run_loops(core: SupervisorCore) -> None:
    """What the driver's worker tasks do once each: start, then one checkpoint."""
    for view in core.take_started():
        core.loop_started(view.id)
    for view in core.workers():
        if view.status not in (S.STOPPED,):
            core.set_workload(view.id, W.WAITING_TO_DEQUEUE)
            if core.checkpoint(view.id) == "stop":
                core.exited(view.id)


# --- tables -------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "paused"), [(0, 0), (1, 0), (2, 1), (3, 2), (4, 3), (5, 3), (6, 4),
                                           (7, 5), (8, 6)])
def test_leader_pause_count_table(n: int, paused: int) -> None:
    """The leader pauses floor(3n/4) workers, none when n <= 1 (5.6.3)."""
    assert leader_pause_count(n) == paused


@pytest.mark.parametrize("n", range(1, 9))
def test_leader_pauses_first_slice_of_real_pool(n: int) -> None:
    """A pool of n on a leader shows exactly leader_pause_count(n) Paused workers, the first ones."""
    core = make_core(n)
    core.set_leader(True)
    run_loops(core)
    paused = [w.status == S.PAUSED for w in core.workers()]
    assert paused == [True] * leader_pause_count(n) + [False] * (n - leader_pause_count(n))
    core.set_leader(False)
    core.wake_events()
    for view in core.workers():
        core.resumed(view.id)
    assert all(w.status == S.STARTED for w in core.workers())


@pytest.mark.parametrize(("old", "new", "differ"), [
    (DEFAULT, DEFAULT, False),
    (DEFAULT, list(reversed(DEFAULT)), False),                       # order is not significant
    (["service", "_core"], ["service", "_core"], False),
    # Upstream quirk: a new list that is a sorted prefix of the old one was judged unchanged.
    (["batch", "service", "_core"], ["_core", "batch"], True),
    (DEFAULT, ["_core"], True),
    # Upstream quirk: an extension of the old list crashed the request.
    (["_core", "batch"], ["_core", "batch", "service"], True),
    (["_core"], DEFAULT, True),
    # Duplicates count (a multiset comparison).
    (["_core", "batch"], ["_core", "batch", "batch"], True),
    (["_core", "batch", "batch"], ["batch", "_core", "batch"], False),
    (["_core", "batch"], ["_core", "system"], True),
    ([], [], False),
])
def test_lists_differ_table(old: list[str], new: list[str], differ: bool) -> None:
    """Lists are compared as sorted multisets, fixing the prefix and extension quirks of 5.6.4."""
    assert lists_differ(old, new) is differ


@pytest.mark.parametrize(("num", "enabled", "ok"), [
    (0, ["_core"], True),
    (100, ["_core", "_core", "batch"], True),            # no upper limit; duplicates accepted
    (-1, DEFAULT, False),
    (2, ["service"], False),                             # _core must be present (spec section 9)
    (2, ["_core", "all"], False),                        # "all" is not a scheduler name
    (2, [], False),
    (2, ["_core", "Service"], False),                    # names are case-sensitive
])
def test_validate_pool_args_table(num: int, enabled: list[str], ok: bool) -> None:
    """num >= 0, every name known, _core present; otherwise SchedulerConfigError (a ValueError)."""
    if ok:
        validate_pool_args(num, enabled)
    else:
        with pytest.raises(SchedulerConfigError):
            validate_pool_args(num, enabled)
        assert issubclass(SchedulerConfigError, ValueError)


@pytest.mark.parametrize(("wall_ns", "text"), [
    (1640114700911883000, "2021-12-21T19:25:00.911883Z"),
    (1640114700911890000, "2021-12-21T19:25:00.91189Z"),
    (1640114700000000000, "2021-12-21T19:25:00Z"),
    (1640114700000000001, "2021-12-21T19:25:00.000000001Z"),
    (0, "1970-01-01T00:00:00Z"),
    (951782400_500000000, "2000-02-29T00:00:00.5Z"),
    (4107542399_000000000, "2100-02-28T23:59:59Z"),
])
def test_format_rfc3339_nano_table(wall_ns: int, text: str) -> None:
    """Go's RFC3339Nano: UTC, up to 9 fractional digits with trailing zeros trimmed."""
    assert format_rfc3339_nano(wall_ns) == text


def test_constructor_rejects_bad_settings() -> None:
    """A bad num_schedulers or scheduler list fails at construction."""
    with pytest.raises(SchedulerConfigError):
        SupervisorCore(-1, DEFAULT, new_id=lambda: "x", log=LOG)
    with pytest.raises(SchedulerConfigError):
        SupervisorCore(1, ["service"], new_id=lambda: "x", log=LOG)


# --- transitions --------------------------------------------------------------------


def test_new_worker_starts_then_runs() -> None:
    """A new worker is Starting/UnknownStatus, then Started/Running once its loop checks in."""
    core = make_core(1)
    assert statuses(core) == [("Starting", "UnknownStatus")]
    [view] = core.take_started()
    assert core.take_started() == []
    core.loop_started(view.id)
    assert statuses(core) == [("Started", "Running")]
    assert core.checkpoint(view.id) == "run"


def test_pause_takes_effect_at_checkpoint_and_resume_restores_workload() -> None:
    """Pausing shows the real workload until the checkpoint; resume restores it."""
    core = make_core(1)
    run_loops(core)
    [view] = core.workers()
    core.pause_worker(view.id)
    assert statuses(core) == [("Pausing", "WaitingToDequeue")]
    assert core.checkpoint(view.id) == "pause"
    assert statuses(core) == [("Paused", "Paused")]
    core.pause_worker(view.id)                                 # ignored while Paused
    assert core.wake_events() == set()
    core.resume_worker(view.id)
    assert statuses(core) == [("Resuming", "Paused")]
    assert core.wake_events() == {view.id}
    core.resumed(view.id)
    assert statuses(core) == [("Started", "WaitingToDequeue")]


def test_resume_while_pausing_cancels_the_pause() -> None:
    """shoal's fix of quirk Q10: a resume before the checkpoint cancels the pending pause."""
    core = make_core(1)
    run_loops(core)
    [view] = core.workers()
    core.pause_worker(view.id)
    core.resume_worker(view.id)
    assert statuses(core)[0][0] == "Started"
    assert core.checkpoint(view.id) == "run"


def test_stop_wakes_a_paused_worker() -> None:
    """Stop on a Paused worker queues a wake; it stays Stopping until the loop exits."""
    core = make_core(1)
    run_loops(core)
    [view] = core.workers()
    core.pause_worker(view.id)
    core.checkpoint(view.id)
    core.stop_worker(view.id)
    assert core.wake_events() == {view.id}
    assert statuses(core) == [("Stopping", "Paused")]
    core.resumed(view.id)
    assert core.checkpoint(view.id) == "stop"
    core.exited(view.id)
    assert statuses(core) == [("Stopped", "Stopped")]
    with pytest.raises(KeyError):
        core.checkpoint(view.id)


def test_reconfigure_rebuilds_only_on_difference() -> None:
    """Same values change nothing; a difference stops the old pool and starts new ids."""
    core = make_core(2)
    run_loops(core)
    old = [w.id for w in core.workers()]
    assert core.reconfigure(2, list(reversed(DEFAULT)), "t2") is False
    assert [w.id for w in core.workers()] == old
    assert core.reconfigure(3, ["_core", "batch"], "t2") is True
    new = core.take_started()
    assert [w.id for w in new] == [w.id for w in core.workers()] and not set(old) & {w.id for w in new}
    assert all(w.started == "t2" and w.enabled_schedulers == ("_core", "batch") for w in new)
    assert [w.id for w in core.retiring()] == old
    assert core.wake_events() == set(old)
    for worker_id in old:
        assert core.checkpoint(worker_id) == "stop"
        core.exited(worker_id)
    assert core.retiring() == []
    assert (core.num_schedulers, core.enabled_schedulers) == (3, ("_core", "batch"))


def test_invalid_reconfigure_changes_nothing() -> None:
    """A rejected reconfigure leaves the pool and the values in force untouched."""
    core = make_core(2)
    before = core.workers()
    with pytest.raises(SchedulerConfigError):
        core.reconfigure(2, ["service"], "t2")
    assert core.workers() == before and core.num_schedulers == 2


def test_rebuild_on_leader_pauses_the_new_pool_at_once() -> None:
    """After a rebuild on the leader the new pool's first floor(3n/4) are pausing."""
    core = make_core(2)
    core.set_leader(True)
    core.reconfigure(8, DEFAULT, "t2")
    assert [w.status for w in core.workers()] == [S.PAUSING] * 6 + [S.STARTING] * 2


def test_zero_workers_lists_nothing() -> None:
    """num_schedulers 0 is allowed and leaves an empty pool."""
    core = make_core(0)
    core.set_leader(True)
    assert core.workers() == [] and core.take_started() == []


# --- the state machine --------------------------------------------------------------


@dataclass
class ModelWorker:
    """What a worker should look like, kept independently of the core."""

    id: str
    loop_started: bool = False
    stop: bool = False
    want_pause: bool = False
    parked: bool = False
    exited: bool = False
    workload: str = "UnknownStatus"

    def status(self) -> str:
        if self.exited:
            return "Stopped"
        if self.stop:
            return "Stopping"
        if self.parked:
            return "Paused" if self.want_pause else "Resuming"
        if self.want_pause:
            return "Pausing"
        return "Started" if self.loop_started else "Starting"

    def workload_status(self) -> str:
        if self.exited:
            return "Stopped"
        if self.parked:
            return "Paused"
        return self.workload if self.loop_started else "UnknownStatus"


@dataclass
class Model:
    num: int
    enabled: list[str]
    pool: list[ModelWorker] = field(default_factory=list)
    retiring: list[ModelWorker] = field(default_factory=list)
    leader: bool = False
    manual: bool = False          # an operator paused/resumed/stopped a worker of this pool


NAMES = st.sampled_from(ALL_SCHEDULERS + ("all", "bogus"))
ENABLED_LISTS = st.one_of(st.lists(st.sampled_from(ALL_SCHEDULERS), max_size=4).map(lambda l: [*l, "_core"]),
                          st.lists(NAMES, max_size=6))


def model_pause_count(n: int) -> int:
    """The model's own statement of the leader rule (5.6.3), kept apart from the core's."""
    return (3 * n) // 4 if n > 1 else 0


class SupervisorMachine(RuleBasedStateMachine):
    """Random operator, leadership and loop events against ``Model``."""

    def __init__(self) -> None:
        super().__init__()
        self.issued = 0
        self.core = SupervisorCore(3, DEFAULT, new_id=self._next_id, log=LOG)
        self.model = Model(3, list(DEFAULT))
        self.core.start_pool("t0")
        self.model.pool = [ModelWorker(f"w{i}") for i in (1, 2, 3)]
        self.spawned: set[str] = set()
        self.woken: set[str] = set()

    def _next_id(self) -> str:
        self.issued += 1
        return f"w{self.issued}"

    def live(self) -> list[ModelWorker]:
        return [w for w in [*self.model.pool, *self.model.retiring] if not w.exited]

    def _pause(self, worker: ModelWorker) -> None:
        if worker.status() not in ("Pausing", "Paused", "Stopping", "Stopped"):
            worker.want_pause = True

    def _resume(self, worker: ModelWorker) -> None:
        if not worker.stop and not worker.exited:
            worker.want_pause = False

    def _stop(self, worker: ModelWorker) -> None:
        if not worker.exited:
            worker.stop = True

    # operator and leadership events

    @rule(num=st.integers(-1, 6), enabled=ENABLED_LISTS)
    def reconfigure(self, num: int, enabled: list[str]) -> None:
        valid = num >= 0 and "_core" in enabled and all(n in ALL_SCHEDULERS for n in enabled)
        if not valid:
            with pytest.raises(SchedulerConfigError):
                self.core.reconfigure(num, enabled, "t1")
            return
        changed = num != self.model.num or sorted(enabled) != sorted(self.model.enabled)
        assert self.core.reconfigure(num, enabled, "t1") is changed
        if not changed:
            return
        for worker in self.model.pool:
            self._stop(worker)
        self.model.retiring += self.model.pool
        self.model.pool = [ModelWorker(f"w{self.issued - num + 1 + i}") for i in range(num)]
        self.model.num, self.model.enabled, self.model.manual = num, list(enabled), False
        if self.model.leader:
            for worker in self.model.pool[:model_pause_count(num)]:
                self._pause(worker)

    @rule(is_leader=st.booleans())
    def set_leader(self, is_leader: bool) -> None:
        self.core.set_leader(is_leader)
        if is_leader != self.model.leader:
            self.model.leader = is_leader
            for worker in self.model.pool[:model_pause_count(len(self.model.pool))]:
                (self._pause if is_leader else self._resume)(worker)

    @rule(data=st.data(), action=st.sampled_from(["pause", "resume", "pause", "resume", "stop",
                                                  "stop_all"]))
    def operate(self, data: st.DataObject, action: str) -> None:
        if action == "stop_all":
            self.core.stop_all()
            for worker in self.live():
                self._stop(worker)
        else:
            if not self.model.pool:
                return
            worker = data.draw(st.sampled_from(self.model.pool))
            if worker.exited:
                return
            getattr(self.core, f"{action}_worker")(worker.id)
            getattr(self, f"_{action}")(worker)
        self.model.manual = True

    # loop events (what the driver's tasks do)

    @rule()
    def spawn_and_deliver_wakes(self) -> None:
        self.spawned |= {view.id for view in self.core.take_started()}
        self.woken |= self.core.wake_events()

    @precondition(lambda self: any(w.id in self.spawned and not w.loop_started for w in self.live()))
    @rule(data=st.data())
    def loop_start(self, data: st.DataObject) -> None:
        worker = data.draw(st.sampled_from(
            [w for w in self.live() if w.id in self.spawned and not w.loop_started]))
        self.core.loop_started(worker.id)
        worker.loop_started, worker.workload = True, "Running"

    @precondition(lambda self: any(w.loop_started and not w.parked for w in self.live()))
    @rule(data=st.data(), workload=st.sampled_from([W.SCHEDULING, W.BACKOFF, W.WAITING_FOR_RAFT]))
    def loop_step(self, data: st.DataObject, workload: WorkloadStatus) -> None:
        worker = data.draw(st.sampled_from([w for w in self.live() if w.loop_started and not w.parked]))
        self._step(worker, workload)

    @precondition(lambda self: any(w.parked and w.id in self.woken for w in self.live()))
    @rule(data=st.data())
    def loop_wake(self, data: st.DataObject) -> None:
        self._wake(data.draw(st.sampled_from([w for w in self.live() if w.parked and w.id in self.woken])))

    @rule()
    def settle(self) -> None:
        """Every loop runs once: spawned ones start, running ones step, woken ones wake."""
        self.spawn_and_deliver_wakes()
        for worker in self.live():
            if worker.id in self.spawned and not worker.loop_started:
                self.core.loop_started(worker.id)
                worker.loop_started, worker.workload = True, "Running"
            if worker.parked and worker.id in self.woken:
                self._wake(worker)
            elif worker.loop_started and not worker.parked:
                self._step(worker, W.WAITING_TO_DEQUEUE)

    def _wake(self, worker: ModelWorker) -> None:
        """A parked loop wakes: ``resumed``, then one loop iteration (as the driver does)."""
        self.woken.discard(worker.id)
        self.core.resumed(worker.id)
        if not worker.want_pause or worker.stop:
            worker.parked = False
            worker.workload = "WaitingToDequeue"
        self._step(worker, W.SCHEDULING)

    def _step(self, worker: ModelWorker, workload: WorkloadStatus) -> None:
        """One loop iteration: WaitingToDequeue, checkpoint, then act on the answer."""
        self.core.set_workload(worker.id, W.WAITING_TO_DEQUEUE)
        if not worker.parked:
            worker.workload = "WaitingToDequeue"
        answer = self.core.checkpoint(worker.id)
        expected = "stop" if worker.stop else "pause" if worker.want_pause else "run"
        assert answer == expected, (worker, answer)
        if answer == "stop":
            self.core.exited(worker.id)
            worker.exited, worker.parked = True, False
            self.model.retiring = [w for w in self.model.retiring if w.id != worker.id]
        elif answer == "pause":
            worker.parked = True
        else:
            self.core.set_workload(worker.id, workload)
            worker.workload = str(workload)

    # invariants

    @invariant()
    def statuses_match_the_model(self) -> None:
        views = self.core.workers()
        assert [v.id for v in views] == [w.id for w in self.model.pool]
        for view, worker in zip(views, self.model.pool):
            assert (str(view.status), str(view.workload_status)) == (worker.status(),
                                                                       worker.workload_status()), worker
            assert view.status in set(WorkerStatus) and view.workload_status in set(WorkloadStatus)
            assert list(view.enabled_schedulers) == self.model.enabled
        assert [v.id for v in self.core.retiring()] == [w.id for w in self.model.retiring]
        assert (self.core.num_schedulers, list(self.core.enabled_schedulers)) == (
            self.model.num, self.model.enabled)

    @invariant()
    def no_lost_wakeups(self) -> None:
        pending = set(self.core._to_wake)
        for worker in self.live():
            if worker.parked and (worker.stop or not worker.want_pause):
                assert worker.id in self.woken | pending, worker

    @invariant()
    def leader_rule_holds(self) -> None:
        if self.model.manual:
            return
        pool = self.model.pool
        expected = model_pause_count(len(pool)) if self.model.leader else 0
        wanting = [w.want_pause for w in pool]
        assert wanting == [True] * expected + [False] * (len(pool) - expected)
        checked_in = all(w.parked == w.want_pause for w in pool)
        if checked_in:     # every loop has reached its checkpoint since the last change
            paused = sum(v.status == S.PAUSED for v in self.core.workers())
            assert paused == expected


TestSupervisorMachine = SupervisorMachine.TestCase
TestSupervisorMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
