"""The leader's evaluation broker and blocked-evaluation tracker (sans-IO).

Theory of operation
-------------------
Modelled on Nomad's ``EvalBroker`` (``nomad/eval_broker.go``) and ``BlockedEvals``
(``nomad/blocked_evals.go``); the names of the states below are Nomad's.

State owned by ``EvalBroker`` (all of it in memory, on the leader only):

* ``_deliveries``: every evaluation the broker knows, id -> how many times it has been
  dequeued. It doubles as the de-duplication set: enqueueing a known id is a no-op, so
  the new leader may re-enqueue every pending evaluation of the replicated state
  (Nomad's ``restoreEvals``) while applies of the same evaluations race with it.
* ``_job_evals``: (Namespace, JobID) -> the one evaluation of that job that is ready,
  outstanding or waiting out a nack delay. A second evaluation of the same job waits in
  ``_pending[job]`` until the first is acked or fails, so two workers never schedule
  one job at once (Nomad's ``jobEvals``/``blocked``; called "pending" here because
  "blocked" means something else, see ``BlockedEvals``).
* ``_ready[scheduler]``: a heap per scheduler type (the evaluation's ``Type``), ordered
  by ``Priority`` (higher first), then ``CreateIndex`` (older first), then enqueue
  order. ``dequeue`` takes the best head among the schedulers a worker asks for.
* ``_unacked``: id -> (evaluation, token, nack deadline). A delivery is outstanding
  until ``ack`` or ``nack`` with its token; past ``nack_timeout`` it counts as nacked
  and a late ack with the old token fails (at-least-once delivery).
* ``_delayed``: a nacked evaluation waits ``initial_nack_delay`` after its first
  delivery and ``(deliveries - 1) * subsequent_nack_delay`` after later ones before it
  is ready again (Nomad's ``nackReenqueueDelay``, which compounds the delay).
* ``_failed``: evaluations nacked ``delivery_limit`` times; the leader drains them with
  ``take_failed`` and marks them failed through Raft. The job's next pending
  evaluation is released at once.

Inputs are ``enqueue``, ``dequeue``, ``ack``, ``nack``, ``outstanding_reset`` and
``handle_timers``, each with ``now`` (monotonic seconds); ``set_enabled(False)`` on
leadership loss drops everything (Nomad's ``Flush``). Timers live in one heap of
``(deadline, seq, kind, eval_id)`` whose stale entries are skipped lazily; ``seq`` is
a counter, so equal deadlines fire in creation order and runs are deterministic.

Invariants (asserted by the tests): every enqueued evaluation ends exactly once, acked
or failed, unless the broker is disabled; at most one evaluation per job is ready,
outstanding or delayed; a token is valid for one delivery only.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import BrokerDisabled, BrokerError, EvalNotOutstanding, SchedulerConfigError, TokenMismatch

__all__ = ["BlockedEvals", "EvalBroker", "nack_reenqueue_delay"]

log = logging.getLogger(__name__)

_JobKey = tuple[str, str]  # (Namespace, JobID)
_NACK = "nack"  # timer kind: an outstanding delivery's nack timeout
_WAIT = "wait"  # timer kind: a nacked evaluation's re-enqueue delay

# Counters reported by stats() besides the gauges.
_COUNTERS = ("enqueued", "duplicates_ignored", "dropped_disabled", "dequeued", "acked",
             "nacked", "nack_timeouts", "failed")


def nack_reenqueue_delay(deliveries: int, initial: float, subsequent: float) -> float:
    """Return how long a nacked evaluation waits before it is ready again.

    Nomad's ``nackReenqueueDelay``: nothing before any delivery, ``initial`` after the
    first, then ``(deliveries - 1) * subsequent``, a delay that grows with each retry.
    """
    if deliveries <= 0:
        return 0.0
    if deliveries == 1:
        return initial
    return (deliveries - 1) * subsequent


def _job_key(evaluation: dict) -> _JobKey:
    return (evaluation.get("Namespace") or "default", evaluation["JobID"])


def _order(evaluation: dict) -> tuple[int, int]:
    """Heap key: higher Priority first, then lower CreateIndex (older) first."""
    return (-int(evaluation.get("Priority", 50)), int(evaluation.get("CreateIndex", 0)))


def _check_evaluation(evaluation: dict) -> None:
    """Refuse records the broker cannot order or serialise (a caller's bug)."""
    for field in ("ID", "Type", "JobID"):
        if not isinstance(evaluation.get(field), str) or not evaluation[field]:
            raise BrokerError(f"malformed evaluation: missing {field}")


@dataclass(slots=True)
class _Unacked:
    evaluation: dict
    token: str
    deadline: float
    timer_seq: int  # the live nack timer; older heap entries for this id are stale


class EvalBroker:
    """Ready queues, per-job serialisation, acks and redelivery of evaluations.

    Args:
        nack_timeout: seconds an outstanding delivery may go unacked before it counts
            as nacked (Nomad's ``EvalNackTimeout``, 60 s).
        delivery_limit: deliveries before an evaluation fails (``EvalDeliveryLimit``, 3).
        initial_nack_delay: wait after the first nack (``EvalNackInitialReenqueueDelay``).
        subsequent_nack_delay: unit of the growing wait after later nacks
            (``EvalNackSubsequentReenqueueDelay``).
        rng: source of delivery tokens.
        log: logger (adapter) carrying the node name.

    Raises:
        SchedulerConfigError: a setting is out of range.
    """

    def __init__(self, *, nack_timeout: float = 60.0, delivery_limit: int = 3,
                 initial_nack_delay: float = 1.0, subsequent_nack_delay: float = 20.0,
                 rng: random.Random,
                 log: logging.Logger | logging.LoggerAdapter | None = None) -> None:
        if not nack_timeout > 0:
            raise SchedulerConfigError(f"nack_timeout must be positive, got {nack_timeout!r}")
        if delivery_limit < 1:
            raise SchedulerConfigError(f"delivery_limit must be at least 1, got {delivery_limit!r}")
        if initial_nack_delay < 0 or subsequent_nack_delay < 0:
            raise SchedulerConfigError("nack delays must not be negative")
        self.nack_timeout = float(nack_timeout)
        self.delivery_limit = int(delivery_limit)
        self.initial_nack_delay = float(initial_nack_delay)
        self.subsequent_nack_delay = float(subsequent_nack_delay)
        self._rng = rng
        self._log = log if log is not None else logging.getLogger(__name__)
        self._enabled = False
        self._seq = 0  # orders heap entries; never reused
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._reset()

    def _reset(self) -> None:
        self._evals: dict[str, dict] = {}           # every known evaluation by id
        self._deliveries: dict[str, int] = {}       # id -> times dequeued
        self._job_evals: dict[_JobKey, str] = {}    # job -> its one active evaluation
        self._pending: dict[_JobKey, list[tuple[int, int, int, str]]] = {}
        self._ready: dict[str, list[tuple[int, int, int, str]]] = {}
        self._unacked: dict[str, _Unacked] = {}
        self._delayed: dict[str, int] = {}          # id -> seq of its live wait timer
        self._timers: list[tuple[float, int, str, str]] = []
        self._failed: list[dict] = []

    # ------------------------------------------------------------------ leadership

    def is_enabled(self) -> bool:
        """True while this server is the leader and brokers evaluations."""
        return self._enabled

    def set_enabled(self, enabled: bool) -> None:
        """Turn the broker on (leadership gained) or off (lost; all state dropped)."""
        if enabled == self._enabled:
            return
        self._enabled = enabled
        if enabled:
            self._log.info("eval broker enabled")
            return
        dropped = len(self._evals)
        self._reset()
        self._log.info("eval broker disabled dropped=%d", dropped)

    # ------------------------------------------------------------------ inputs

    def enqueue(self, evaluation: dict, now: float) -> None:
        """Add a pending evaluation; a no-op if its id is already known or disabled.

        Raises:
            BrokerError: the record lacks ``ID``, ``Type`` or ``JobID``.
        """
        _check_evaluation(evaluation)
        if not self._enabled:
            self._counters["dropped_disabled"] += 1
            return
        eval_id = evaluation["ID"]
        if eval_id in self._evals:
            self._counters["duplicates_ignored"] += 1
            return
        self._evals[eval_id] = evaluation
        self._deliveries[eval_id] = 0
        self._counters["enqueued"] += 1
        self._make_ready(eval_id)
        self._log.debug("eval enqueued eval=%s job=%s type=%s", eval_id,
                        evaluation["JobID"], evaluation["Type"])

    def dequeue(self, schedulers: Sequence[str], now: float) -> tuple[dict, str] | None:
        """Deliver the best ready evaluation for any of ``schedulers``, or None.

        The best is the highest ``Priority``, then the lowest ``CreateIndex``, then the
        earliest enqueued, across the asked queues. Returns a copy of the record and a
        fresh token that ``ack``/``nack`` must present.

        Raises:
            BrokerDisabled: this server is not the leader.
        """
        if not self._enabled:
            raise BrokerDisabled("eval broker disabled")
        best: tuple[int, int, int, str] | None = None
        best_queue = ""
        for name in dict.fromkeys(schedulers):
            queue = self._ready.get(name)
            if queue and (best is None or queue[0] < best):
                best, best_queue = queue[0], name
        if best is None:
            return None
        heapq.heappop(self._ready[best_queue])
        eval_id = best[3]
        token = self._new_token()
        timer_seq = self._push_timer(now + self.nack_timeout, _NACK, eval_id)
        evaluation = self._evals[eval_id]
        self._unacked[eval_id] = _Unacked(evaluation, token, now + self.nack_timeout, timer_seq)
        self._deliveries[eval_id] += 1
        self._counters["dequeued"] += 1
        self._log.debug("eval dequeued eval=%s delivery=%d", eval_id, self._deliveries[eval_id])
        return dict(evaluation), token

    def ack(self, eval_id: str, token: str, now: float) -> None:
        """Finish a delivery: forget the evaluation and release the job's next one.

        Raises:
            EvalNotOutstanding, TokenMismatch: nothing was changed.
        """
        entry = self._outstanding(eval_id, token)
        del self._unacked[eval_id]
        self._forget(eval_id)
        self._counters["acked"] += 1
        self._release_job(_job_key(entry.evaluation))
        self._log.debug("eval acked eval=%s", eval_id)

    def nack(self, eval_id: str, token: str, now: float) -> None:
        """Give a delivery back: redeliver after a delay, or fail past the limit.

        Raises:
            EvalNotOutstanding, TokenMismatch: nothing was changed.
        """
        self._outstanding(eval_id, token)
        self._counters["nacked"] += 1
        self._requeue(eval_id, now)

    def outstanding_token(self, eval_id: str) -> str | None:
        """The token of the evaluation's current delivery, or None if not outstanding."""
        entry = self._unacked.get(eval_id)
        return None if entry is None else entry.token

    def outstanding_reset(self, eval_id: str, token: str, now: float) -> None:
        """Restart the nack timeout of a delivery still at work (Nomad's ``OutstandingReset``).

        Raises:
            EvalNotOutstanding, TokenMismatch: nothing was changed.
        """
        entry = self._outstanding(eval_id, token)
        entry.deadline = now + self.nack_timeout
        entry.timer_seq = self._push_timer(entry.deadline, _NACK, eval_id)

    def handle_timers(self, now: float) -> None:
        """Fire every timer due by ``now``: nack timeouts and re-enqueue delays."""
        while self._timers and self._timers[0][0] <= now:
            _, seq, kind, eval_id = heapq.heappop(self._timers)
            if not self._timer_is_live(seq, kind, eval_id):
                continue
            if kind == _NACK:
                self._counters["nack_timeouts"] += 1
                self._log.info("eval nack timeout eval=%s delivery=%d", eval_id,
                               self._deliveries[eval_id])
                self._requeue(eval_id, now)
            else:
                del self._delayed[eval_id]
                self._push_ready(eval_id)

    # ------------------------------------------------------------------ outputs and views

    def next_deadline(self) -> float | None:
        """The earliest live timer, or None; stale heap entries are discarded here."""
        while self._timers:
            _, seq, kind, eval_id = self._timers[0]
            if self._timer_is_live(seq, kind, eval_id):
                return self._timers[0][0]
            heapq.heappop(self._timers)
        return None

    def take_failed(self) -> list[dict]:
        """Evaluations that reached the delivery limit since the last call, in order."""
        failed, self._failed = self._failed, []
        return failed

    def stats(self) -> dict[str, int]:
        """Gauges (``total_*``, ``ready.<type>``, ``unacked.<type>``) and counters."""
        result = {
            "total_ready": sum(len(queue) for queue in self._ready.values()),
            "total_unacked": len(self._unacked),
            "total_pending": sum(len(queue) for queue in self._pending.values()),
            "total_waiting": len(self._delayed),
            "total_failed": len(self._failed),
        }
        for name in sorted(self._ready):
            if self._ready[name]:
                result[f"ready.{name}"] = len(self._ready[name])
        for entry in self._unacked.values():
            key = f"unacked.{entry.evaluation['Type']}"
            result[key] = result.get(key, 0) + 1
        result.update(self._counters)
        return result

    # ------------------------------------------------------------------ helpers

    def _outstanding(self, eval_id: str, token: str) -> _Unacked:
        if not self._enabled:
            raise BrokerDisabled("eval broker disabled")
        entry = self._unacked.get(eval_id)
        if entry is None:
            raise EvalNotOutstanding(f"evaluation {eval_id} is not outstanding")
        if entry.token != token:
            raise TokenMismatch(f"evaluation {eval_id} token does not match")
        return entry

    def _make_ready(self, eval_id: str) -> None:
        """Ready the evaluation, or park it behind the job's active evaluation."""
        evaluation = self._evals[eval_id]
        job = _job_key(evaluation)
        active = self._job_evals.get(job)
        if active is None:
            self._job_evals[job] = eval_id
            self._push_ready(eval_id)
        else:
            assert active != eval_id, "an active evaluation re-entered enqueue"
            heapq.heappush(self._pending.setdefault(job, []),
                           (*_order(evaluation), self._next_seq(), eval_id))

    def _push_ready(self, eval_id: str) -> None:
        evaluation = self._evals[eval_id]
        assert self._job_evals[_job_key(evaluation)] == eval_id
        heapq.heappush(self._ready.setdefault(evaluation["Type"], []),
                       (*_order(evaluation), self._next_seq(), eval_id))

    def _requeue(self, eval_id: str, now: float) -> None:
        """A delivery ended without an ack: delay, redeliver or fail the evaluation."""
        entry = self._unacked.pop(eval_id)
        deliveries = self._deliveries[eval_id]
        if deliveries >= self.delivery_limit:
            self._forget(eval_id)
            self._failed.append(entry.evaluation)
            self._counters["failed"] += 1
            self._log.warning("eval failed delivery limit reached eval=%s job=%s deliveries=%d",
                              eval_id, entry.evaluation["JobID"], deliveries)
            self._release_job(_job_key(entry.evaluation))
            return
        delay = nack_reenqueue_delay(deliveries, self.initial_nack_delay,
                                     self.subsequent_nack_delay)
        if delay > 0:
            self._delayed[eval_id] = self._push_timer(now + delay, _WAIT, eval_id)
        else:
            self._push_ready(eval_id)

    def _release_job(self, job: _JobKey) -> None:
        """The job's active evaluation ended: promote its best pending one, if any."""
        del self._job_evals[job]
        queue = self._pending.get(job)
        if not queue:
            return
        next_id = heapq.heappop(queue)[3]
        if not queue:
            del self._pending[job]
        self._job_evals[job] = next_id
        self._push_ready(next_id)

    def _forget(self, eval_id: str) -> None:
        del self._evals[eval_id]
        del self._deliveries[eval_id]

    def _timer_is_live(self, seq: int, kind: str, eval_id: str) -> bool:
        if kind == _NACK:
            entry = self._unacked.get(eval_id)
            return entry is not None and entry.timer_seq == seq
        return self._delayed.get(eval_id) == seq

    def _push_timer(self, deadline: float, kind: str, eval_id: str) -> int:
        seq = self._next_seq()
        heapq.heappush(self._timers, (deadline, seq, kind, eval_id))
        return seq

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _new_token(self) -> str:
        """A UUID-shaped token from the injected rng (Nomad: ``GenerateUUID``)."""
        digits = f"{self._rng.getrandbits(128):032x}"
        return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


class BlockedEvals:
    """Evaluations that could not place everything, waiting for capacity.

    After Nomad's ``BlockedEvals`` (``nomad/blocked_evals.go``), simplified: one blocked
    evaluation per (Namespace, JobID); a newer one (higher ``CreateIndex``; on a tie,
    the later call) replaces the older, which is reported by ``take_duplicates`` so
    the leader can cancel it, as Nomad's ``GetDuplicates`` does. Any change of capacity
    unblocks everything (Nomad tracks node classes to unblock less; shoal has few
    nodes). Leader only: ``clear`` on leadership loss.
    """

    def __init__(self) -> None:
        self._blocked: dict[_JobKey, dict] = {}
        self._duplicates: list[dict] = []

    def block(self, evaluation: dict) -> None:
        """Track a blocked evaluation, keyed by its job (newest wins)."""
        _check_evaluation(evaluation)
        job = _job_key(evaluation)
        existing = self._blocked.get(job)
        if existing is not None and existing["ID"] == evaluation["ID"]:
            self._blocked[job] = evaluation
            return
        if existing is not None and int(existing.get("CreateIndex", 0)) > int(evaluation.get("CreateIndex", 0)):
            self._duplicates.append(evaluation)
            return
        if existing is not None:
            self._duplicates.append(existing)
        self._blocked[job] = evaluation

    def unblock_all(self) -> list[dict]:
        """Return every blocked evaluation for re-enqueue (best first) and forget them."""
        evaluations = sorted(self._blocked.values(), key=lambda e: (*_order(e), e["ID"]))
        self._blocked.clear()
        return evaluations

    def untrack(self, job_id: str, namespace: str = "default") -> None:
        """Forget the job's blocked evaluation (the job was deregistered)."""
        self._blocked.pop((namespace, job_id), None)

    def take_duplicates(self) -> list[dict]:
        """Blocked evaluations displaced by a newer one of the same job (to cancel)."""
        duplicates, self._duplicates = self._duplicates, []
        return duplicates

    def clear(self) -> None:
        """Drop everything (leadership lost; the next leader restores from state)."""
        self._blocked.clear()
        self._duplicates.clear()

    def blocked_ids(self) -> list[str]:
        """Ids of the blocked evaluations, sorted."""
        return sorted(e["ID"] for e in self._blocked.values())

    def __len__(self) -> int:
        return len(self._blocked)
