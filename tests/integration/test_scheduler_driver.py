"""run_supervisor with fake dequeue/process callbacks: work flows, pause, resume, rebuild, backoff."""

from __future__ import annotations

import itertools
import logging
from typing import Any, AsyncIterator

import pytest
import trio
import trio.testing

from scheduler.driver import SupervisorHandle, backoff_delay, run_supervisor
from scheduler.supervisor import SupervisorCore, leader_pause_count

from .helpers import wait_until

LOG = logging.LoggerAdapter(logging.getLogger("test.scheduler"), {"node": "s1"})
DEFAULT = ["service", "batch", "system", "sysbatch", "_core"]
WALL_NS = 1640114700911883000


class FakeBroker:
    """A queue of evaluations standing in for the leader's eval broker."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[dict[str, Any]](1000)
        self.dequeue_calls = 0
        self.processed: list[str] = []
        self.schedulers_seen: set[tuple[str, ...]] = set()
        self.fail_dequeues = 0                 # the next N dequeues raise
        self.dequeue_times: list[float] = []

    def push(self, count: int, prefix: str = "e") -> list[str]:
        ids = [f"{prefix}{i}" for i in range(count)]
        for eval_id in ids:
            self.send.send_nowait({"ID": eval_id})
        return ids

    async def dequeue(self, schedulers: list[str], timeout: float) -> tuple[dict[str, Any], str] | None:
        self.dequeue_calls += 1
        self.dequeue_times.append(trio.current_time())
        self.schedulers_seen.add(tuple(schedulers))
        if self.fail_dequeues:
            self.fail_dequeues -= 1
            raise ConnectionError("no leader")
        with trio.move_on_after(timeout):
            evaluation = await self.receive.receive()
            return evaluation, f"token-{evaluation['ID']}"
        return None

    async def process(self, evaluation: dict[str, Any], token: str) -> None:
        assert token == f"token-{evaluation['ID']}"
        await trio.sleep(0.01)
        self.processed.append(evaluation["ID"])


def make_core(n: int, enabled: list[str] | None = None) -> SupervisorCore:
    counter = itertools.count(1)
    return SupervisorCore(n, enabled or DEFAULT, new_id=lambda: f"w{next(counter)}", log=LOG)


async def start(nursery: trio.Nursery, broker: FakeBroker, n: int) -> SupervisorHandle:
    return await nursery.start(lambda task_status: run_supervisor(
        make_core(n), dequeue=broker.dequeue, process=broker.process,
        now_wall=lambda: WALL_NS, task_status=task_status))


def statuses(handle: SupervisorHandle) -> list[str]:
    return [str(w.status) for w in handle.workers()]


@pytest.fixture
async def running() -> AsyncIterator[tuple[trio.Nursery, FakeBroker]]:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            yield nursery, FakeBroker()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("failures", "delay"), [(0, 0.02), (1, 0.08), (2, 0.32), (3, 1.28),
                                                 (4, 5.12), (5, 10.0), (100, 10.0)])
def test_backoff_delay_table(failures: int, delay: float) -> None:
    """Backoff grows four-fold from 20 ms and is capped at 10 s, as Nomad's backoffErr."""
    assert backoff_delay(failures) == pytest.approx(delay)


async def test_work_flows_through_every_worker(running: tuple[trio.Nursery, FakeBroker],
                                               autojump_clock: trio.testing.MockClock) -> None:
    """Three workers start, show Started, and process every evaluation exactly once."""
    nursery, broker = running
    handle = await start(nursery, broker, 3)
    views = handle.workers()
    assert [v.started for v in views] == ["2021-12-21T19:25:00.911883Z"] * 3
    ids = broker.push(30)
    await wait_until(lambda: len(broker.processed) == 30, timeout=10, describe=lambda: broker.processed)
    assert sorted(broker.processed) == sorted(ids)
    assert statuses(handle) == ["Started"] * 3
    assert broker.schedulers_seen == {tuple(DEFAULT)}
    assert handle.running_tasks() == 3


async def test_paused_worker_dequeues_nothing_until_resumed(
        running: tuple[trio.Nursery, FakeBroker], autojump_clock: trio.testing.MockClock) -> None:
    """A paused worker parks: no dequeue attempts and queued work waits; resume restores it."""
    nursery, broker = running
    handle = await start(nursery, broker, 1)
    [view] = handle.workers()
    handle.pause_worker(view.id)
    await wait_until(lambda: statuses(handle) == ["Paused"], timeout=5, describe=lambda: handle.workers())
    assert str(handle.workers()[0].workload_status) == "Paused"
    calls = broker.dequeue_calls
    broker.push(5)
    await trio.sleep(30)   # 30 s of virtual time (autojump): nothing may happen in the window
    assert broker.dequeue_calls == calls and broker.processed == []
    handle.resume_worker(view.id)
    await wait_until(lambda: len(broker.processed) == 5, timeout=5, describe=lambda: handle.workers())
    assert statuses(handle) == ["Started"]


async def test_leader_pauses_its_slice_and_resumes_it_on_step_down(
        running: tuple[trio.Nursery, FakeBroker], autojump_clock: trio.testing.MockClock) -> None:
    """On a leader with 4 workers 3 are Paused and work still flows through the fourth."""
    nursery, broker = running
    handle = await start(nursery, broker, 4)
    handle.set_leader(True)
    expected = ["Paused"] * leader_pause_count(4) + ["Started"]
    await wait_until(lambda: statuses(handle) == expected, timeout=5, describe=lambda: handle.workers())
    broker.push(8)
    await wait_until(lambda: len(broker.processed) == 8, timeout=10, describe=lambda: broker.processed)
    assert statuses(handle) == expected
    handle.set_leader(False)
    await wait_until(lambda: statuses(handle) == ["Started"] * 4, timeout=5,
                     describe=lambda: handle.workers())


async def test_reconfigure_replaces_the_pool_and_old_workers_stop(
        running: tuple[trio.Nursery, FakeBroker], autojump_clock: trio.testing.MockClock) -> None:
    """A rebuild lists only new ids; old loops exit; 0 workers leave work queued until set back."""
    nursery, broker = running
    handle = await start(nursery, broker, 2)
    old = {w.id for w in handle.workers()}
    assert handle.reconfigure(2, list(reversed(DEFAULT))) is False
    assert handle.reconfigure(3, ["_core", "batch"]) is True
    new = {w.id for w in handle.workers()}
    assert len(new) == 3 and not new & old
    await wait_until(lambda: handle.running_tasks() == 3, timeout=5, describe=handle.running_tasks)
    assert handle.config() == {"num_schedulers": 3, "enabled_schedulers": ["_core", "batch"]}

    assert handle.reconfigure(0, ["_core"]) is True
    await wait_until(lambda: handle.running_tasks() == 0, timeout=5, describe=handle.running_tasks)
    assert handle.workers() == []
    broker.push(4)
    await trio.sleep(30)   # 30 s of virtual time (autojump): nothing may happen in the window
    assert broker.processed == []
    handle.reconfigure(2, ["_core"])
    await wait_until(lambda: len(broker.processed) == 4, timeout=5, describe=lambda: broker.processed)
    assert ("_core",) in broker.schedulers_seen


async def test_rebuild_while_paused_stops_parked_workers(
        running: tuple[trio.Nursery, FakeBroker], autojump_clock: trio.testing.MockClock) -> None:
    """Parked workers of a replaced pool are woken and exit; the new pool is paused on a leader."""
    nursery, broker = running
    handle = await start(nursery, broker, 4)
    handle.set_leader(True)
    await wait_until(lambda: statuses(handle).count("Paused") == 3, timeout=5,
                     describe=lambda: handle.workers())
    handle.reconfigure(8, DEFAULT)
    await wait_until(lambda: handle.running_tasks() == 8 and statuses(handle).count("Paused") == 6,
                     timeout=5, describe=lambda: handle.workers())


async def test_dequeue_errors_back_off_exponentially(
        running: tuple[trio.Nursery, FakeBroker], autojump_clock: trio.testing.MockClock) -> None:
    """Failed dequeues show Backoff and retry after 20, 80, 320 ms; a success resets the delay."""
    nursery, broker = running
    broker.fail_dequeues = 4
    handle = await start(nursery, broker, 1)
    await wait_until(lambda: broker.dequeue_calls >= 5, timeout=5, describe=lambda: broker.dequeue_calls)
    gaps = [b - a for a, b in zip(broker.dequeue_times, broker.dequeue_times[1:5])]
    assert gaps == pytest.approx([0.02, 0.08, 0.32, 1.28])
    broker.push(1)
    await wait_until(lambda: broker.processed == ["e0"], timeout=5, describe=lambda: broker.processed)
    broker.fail_dequeues = 3   # the third backoff in a row lasts 0.32 s
    await wait_until(lambda: broker.fail_dequeues == 0
                     and str(handle.workers()[0].workload_status) == "Backoff", timeout=5,
                     describe=lambda: handle.workers(), poll=0.001)
    handle.stop_all()          # a stop cuts a backoff short
    await wait_until(lambda: statuses(handle) == ["Stopped"], timeout=0.05,
                     describe=lambda: handle.workers(), poll=0.001)


async def test_processing_error_does_not_kill_the_worker(
        running: tuple[trio.Nursery, FakeBroker], autojump_clock: trio.testing.MockClock) -> None:
    """A process callback that raises is logged and the worker carries on with the next one."""
    nursery, broker = running
    seen: list[str] = []

    async def flaky(evaluation: dict[str, Any], token: str) -> None:
        seen.append(evaluation["ID"])
        if evaluation["ID"] == "e0":
            raise RuntimeError("plan rejected")

    handle = await nursery.start(lambda task_status: run_supervisor(
        make_core(1), dequeue=broker.dequeue, process=flaky, task_status=task_status))
    broker.push(3)
    await wait_until(lambda: seen == ["e0", "e1", "e2"], timeout=5, describe=lambda: seen)
    assert statuses(handle) == ["Started"]
