"""The leader's eval broker and blocked-eval tracker (after nomad/eval_broker.go, blocked_evals.go)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from scheduler.broker import BlockedEvals, EvalBroker, nack_reenqueue_delay
from scheduler.errors import (BrokerDisabled, BrokerError, EvalNotOutstanding, SchedulerConfigError,
                              SchedulerError, TokenMismatch)


def make_eval(eval_id: str, job: str = "job", *, priority: int = 50, index: int = 1,
              kind: str = "service", namespace: str = "default") -> dict:
    return {"ID": eval_id, "Namespace": namespace, "JobID": job, "Type": kind,
            "Priority": priority, "CreateIndex": index, "Status": "pending",
            "TriggeredBy": "job-register"}


def make_broker(seed: int = 1, **kwargs) -> EvalBroker:
    broker = EvalBroker(rng=random.Random(seed), **kwargs)
    broker.set_enabled(True)
    return broker


def drain(broker: EvalBroker, schedulers=("service", "batch", "system"), now: float = 0.0) -> list[str]:
    """Dequeue and ack everything ready now; return the ids in delivery order."""
    order = []
    while (got := broker.dequeue(schedulers, now)) is not None:
        evaluation, token = got
        order.append(evaluation["ID"])
        broker.ack(evaluation["ID"], token, now)
    return order


# ---------------------------------------------------------------- ordering


def test_ready_order_is_priority_then_create_index():
    """Higher priority comes first; within a priority the lower CreateIndex (older) first."""
    broker = make_broker()
    broker.enqueue(make_eval("low-old", "j1", priority=10, index=1), 0.0)
    broker.enqueue(make_eval("high-new", "j2", priority=90, index=9), 0.0)
    broker.enqueue(make_eval("mid-new", "j3", priority=50, index=8), 0.0)
    broker.enqueue(make_eval("mid-old", "j4", priority=50, index=3), 0.0)
    broker.enqueue(make_eval("high-old", "j5", priority=90, index=2), 0.0)
    assert drain(broker) == ["high-old", "high-new", "mid-old", "mid-new", "low-old"]


def test_equal_keys_dequeue_in_enqueue_order():
    """Evaluations with equal priority and CreateIndex leave in the order they came."""
    broker = make_broker()
    for name in ["c", "a", "b"]:
        broker.enqueue(make_eval(name, f"job-{name}", index=5), 0.0)
    assert drain(broker) == ["c", "a", "b"]


def test_dequeue_only_from_asked_schedulers_and_best_across_them():
    """A worker gets only its schedulers' work, the best head across the queues it asks."""
    broker = make_broker()
    broker.enqueue(make_eval("svc", "j1", priority=50, index=1, kind="service"), 0.0)
    broker.enqueue(make_eval("bat", "j2", priority=70, index=2, kind="batch"), 0.0)
    broker.enqueue(make_eval("sys", "j3", priority=50, index=0, kind="system"), 0.0)
    assert broker.dequeue(["_core"], 0.0) is None
    evaluation, _ = broker.dequeue(["service", "system"], 0.0)
    assert evaluation["ID"] == "sys"  # same priority as svc, older
    evaluation, _ = broker.dequeue(["service", "batch"], 0.0)
    assert evaluation["ID"] == "bat"  # higher priority wins across queues
    stats = broker.stats()
    assert stats["total_ready"] == 1 and stats["ready.service"] == 1
    assert stats["unacked.system"] == 1 and stats["unacked.batch"] == 1


def test_dequeue_returns_a_copy():
    """Mutating the delivered record does not change the broker's copy."""
    broker = make_broker(nack_timeout=1.0, initial_nack_delay=0.0)
    broker.enqueue(make_eval("e1"), 0.0)
    evaluation, token = broker.dequeue(["service"], 0.0)
    evaluation["Priority"] = 1
    broker.nack("e1", token, 0.0)
    again, _ = broker.dequeue(["service"], 0.0)
    assert again["Priority"] == 50


# ---------------------------------------------------------------- per-job serialisation


def test_one_evaluation_per_job_at_a_time():
    """A job's second evaluation waits until the first is acked, then becomes ready."""
    broker = make_broker()
    broker.enqueue(make_eval("first", "web", index=1), 0.0)
    broker.enqueue(make_eval("second", "web", index=2), 0.0)
    broker.enqueue(make_eval("other", "db", index=3), 0.0)
    first, token = broker.dequeue(["service"], 0.0)
    assert first["ID"] == "first"
    other, other_token = broker.dequeue(["service"], 0.0)
    assert other["ID"] == "other"
    assert broker.dequeue(["service"], 0.0) is None
    assert broker.stats()["total_pending"] == 1
    broker.ack("first", token, 1.0)
    second, _ = broker.dequeue(["service"], 1.0)
    assert second["ID"] == "second"
    broker.ack("other", other_token, 1.0)


def test_pending_evaluations_release_best_first():
    """Waiting evaluations of one job are released highest priority, then oldest, first."""
    broker = make_broker()
    broker.enqueue(make_eval("active", "web", index=1), 0.0)
    broker.enqueue(make_eval("p-low", "web", priority=20, index=2), 0.0)
    broker.enqueue(make_eval("p-high-new", "web", priority=80, index=4), 0.0)
    broker.enqueue(make_eval("p-high-old", "web", priority=80, index=3), 0.0)
    assert drain(broker) == ["active", "p-high-old", "p-high-new", "p-low"]


def test_same_job_id_in_other_namespace_is_independent():
    """Serialisation is per (Namespace, JobID): equal job ids in two namespaces run together."""
    broker = make_broker()
    broker.enqueue(make_eval("a", "web", namespace="default"), 0.0)
    broker.enqueue(make_eval("b", "web", namespace="prod"), 0.0)
    assert broker.dequeue(["service"], 0.0) is not None
    assert broker.dequeue(["service"], 0.0) is not None


# ---------------------------------------------------------------- ack / nack / tokens


def test_ack_and_nack_errors_change_nothing():
    """Unknown ids, wrong tokens and double acks raise BrokerError subclasses, state unchanged."""
    broker = make_broker()
    broker.enqueue(make_eval("e1"), 0.0)
    with pytest.raises(EvalNotOutstanding):
        broker.ack("e1", "no-token", 0.0)  # ready, not delivered
    _, token = broker.dequeue(["service"], 0.0)
    before = broker.stats()
    with pytest.raises(TokenMismatch):
        broker.ack("e1", "wrong", 0.0)
    with pytest.raises(TokenMismatch):
        broker.nack("e1", "wrong", 0.0)
    with pytest.raises(EvalNotOutstanding):
        broker.nack("nope", token, 0.0)
    assert broker.stats() == before and broker.outstanding_token("e1") == token
    broker.ack("e1", token, 0.0)
    with pytest.raises(EvalNotOutstanding):
        broker.ack("e1", token, 0.0)
    assert issubclass(EvalNotOutstanding, BrokerError) and issubclass(BrokerError, SchedulerError)
    assert broker.outstanding_token("e1") is None


def test_tokens_are_fresh_per_delivery_and_seeded():
    """Each delivery gets a new UUID-shaped token, reproducible from the rng seed."""
    def tokens(seed: int) -> list[str]:
        broker = make_broker(seed, delivery_limit=4, initial_nack_delay=0.0, subsequent_nack_delay=0.0)
        broker.enqueue(make_eval("e1"), 0.0)
        result = []
        for _ in range(3):
            _, token = broker.dequeue(["service"], 0.0)
            result.append(token)
            broker.nack("e1", token, 0.0)
        return result
    first = tokens(42)
    assert first == tokens(42) and len(set(first)) == 3
    assert [len(part) for part in first[0].split("-")] == [8, 4, 4, 4, 12]


@pytest.mark.parametrize("deliveries, expected", [(0, 0.0), (1, 1.0), (2, 20.0), (3, 40.0), (5, 80.0)])
def test_nack_reenqueue_delay_table(deliveries, expected):
    """Nomad's rule: initial delay after the first delivery, then (n - 1) * subsequent."""
    assert nack_reenqueue_delay(deliveries, 1.0, 20.0) == expected


def test_nack_redelivery_waits_the_delays():
    """A nacked eval is ready again only after initial_nack_delay, then after the subsequent delay."""
    broker = make_broker(delivery_limit=5, initial_nack_delay=1.0, subsequent_nack_delay=20.0)
    broker.enqueue(make_eval("e1"), 0.0)
    _, token = broker.dequeue(["service"], 0.0)
    broker.nack("e1", token, 0.0)
    assert broker.stats()["total_waiting"] == 1
    assert broker.next_deadline() == 1.0
    broker.handle_timers(0.999)
    assert broker.dequeue(["service"], 0.999) is None
    broker.handle_timers(1.0)
    _, token = broker.dequeue(["service"], 1.0)
    broker.nack("e1", token, 2.0)
    assert broker.next_deadline() == 22.0  # (2 - 1) * 20 after the second delivery
    broker.handle_timers(21.9)
    assert broker.dequeue(["service"], 21.9) is None
    broker.handle_timers(22.0)
    assert broker.dequeue(["service"], 22.0) is not None
    assert broker.stats()["nacked"] == 2


def test_delivery_limit_fails_the_eval_and_releases_the_job():
    """After delivery_limit deliveries a nack reports the eval in take_failed and frees its job."""
    broker = make_broker(delivery_limit=3, initial_nack_delay=0.0, subsequent_nack_delay=0.0)
    broker.enqueue(make_eval("bad", "web", index=1), 0.0)
    broker.enqueue(make_eval("next", "web", index=2), 0.0)
    for delivery in range(3):
        evaluation, token = broker.dequeue(["service"], 0.0)
        assert evaluation["ID"] == "bad", f"delivery {delivery + 1}"
        assert broker.take_failed() == []
        broker.nack("bad", token, 0.0)
    failed = broker.take_failed()
    assert [e["ID"] for e in failed] == ["bad"]
    assert broker.take_failed() == []
    stats = broker.stats()
    assert stats["failed"] == 1 and stats["total_failed"] == 0
    assert drain(broker) == ["next"]


def test_nack_timeout_counts_as_nack():
    """An unacked delivery past nack_timeout is redelivered with a new token; the old one fails."""
    broker = make_broker(nack_timeout=60.0, initial_nack_delay=1.0)
    broker.enqueue(make_eval("e1"), 0.0)
    _, old = broker.dequeue(["service"], 0.0)
    assert broker.next_deadline() == 60.0
    broker.handle_timers(59.9)
    assert broker.outstanding_token("e1") == old
    broker.handle_timers(60.0)
    assert broker.outstanding_token("e1") is None
    with pytest.raises(EvalNotOutstanding):
        broker.ack("e1", old, 60.5)
    broker.handle_timers(61.0)
    _, new = broker.dequeue(["service"], 61.0)
    assert new != old
    with pytest.raises(TokenMismatch):
        broker.ack("e1", old, 61.0)
    broker.ack("e1", new, 61.0)
    assert broker.stats()["nack_timeouts"] == 1 and broker.next_deadline() is None


def test_nack_timeout_past_delivery_limit_fails():
    """A timed-out last delivery fails the eval just as an explicit nack would."""
    broker = make_broker(nack_timeout=5.0, delivery_limit=1)
    broker.enqueue(make_eval("e1"), 0.0)
    broker.dequeue(["service"], 0.0)
    broker.handle_timers(5.0)
    assert [e["ID"] for e in broker.take_failed()] == ["e1"]


def test_outstanding_reset_extends_the_nack_timeout():
    """outstanding_reset moves the nack deadline to now + nack_timeout and drops the old one."""
    broker = make_broker(nack_timeout=10.0)
    broker.enqueue(make_eval("e1"), 0.0)
    _, token = broker.dequeue(["service"], 0.0)
    broker.outstanding_reset("e1", token, 8.0)
    assert broker.next_deadline() == 18.0
    broker.handle_timers(10.0)
    assert broker.outstanding_token("e1") == token
    with pytest.raises(TokenMismatch):
        broker.outstanding_reset("e1", "wrong", 9.0)
    broker.ack("e1", token, 12.0)
    assert broker.next_deadline() is None


def test_ack_stops_the_nack_timer():
    """An acked eval never times out later."""
    broker = make_broker(nack_timeout=10.0)
    broker.enqueue(make_eval("e1"), 0.0)
    _, token = broker.dequeue(["service"], 0.0)
    broker.ack("e1", token, 1.0)
    broker.handle_timers(100.0)
    assert broker.stats()["nack_timeouts"] == 0 and broker.take_failed() == []


# ---------------------------------------------------------------- enable / restore / duplicates


def test_disable_drops_everything_and_restore_redelivers():
    """Losing leadership drops all state; the next enable plus re-enqueue delivers again."""
    broker = make_broker()
    broker.enqueue(make_eval("a", "j1"), 0.0)
    broker.enqueue(make_eval("b", "j1", index=2), 0.0)
    broker.enqueue(make_eval("c", "j2"), 0.0)
    _, token = broker.dequeue(["service"], 0.0)
    broker.set_enabled(False)
    assert not broker.is_enabled()
    stats = broker.stats()
    assert all(stats[k] == 0 for k in stats if k.startswith("total_"))
    assert broker.next_deadline() is None
    with pytest.raises(BrokerDisabled):
        broker.dequeue(["service"], 0.0)
    with pytest.raises(BrokerDisabled):
        broker.ack("a", token, 0.0)
    broker.enqueue(make_eval("d", "j3"), 0.0)  # not leader: ignored
    assert broker.stats()["dropped_disabled"] == 1
    broker.set_enabled(True)
    for evaluation in [make_eval("a", "j1"), make_eval("b", "j1", index=2), make_eval("c", "j2")]:
        broker.enqueue(evaluation, 5.0)
    assert sorted(drain(broker, now=5.0)) == ["a", "b", "c"]


def test_enqueue_of_a_known_id_is_a_no_op():
    """Re-enqueueing an eval that is ready, pending, outstanding or delayed changes nothing."""
    broker = make_broker(initial_nack_delay=5.0)
    broker.enqueue(make_eval("ready", "j1"), 0.0)
    broker.enqueue(make_eval("ready", "j1"), 0.0)
    broker.enqueue(make_eval("out", "j2"), 0.0)
    broker.enqueue(make_eval("pending", "j2", index=2), 0.0)
    broker.enqueue(make_eval("pending", "j2", index=2), 0.0)
    evaluation, token = broker.dequeue(["service"], 0.0)
    assert evaluation["ID"] == "ready"
    broker.nack("ready", token, 0.0)  # now delayed
    _, out_token = broker.dequeue(["service"], 0.0)
    for eval_id, job in [("ready", "j1"), ("out", "j2"), ("pending", "j2")]:
        broker.enqueue(make_eval(eval_id, job), 1.0)
    stats = broker.stats()
    assert stats["duplicates_ignored"] == 5 and stats["enqueued"] == 3
    assert (stats["total_ready"], stats["total_unacked"], stats["total_pending"],
            stats["total_waiting"]) == (0, 1, 1, 1)
    broker.ack("out", out_token, 1.0)
    broker.handle_timers(5.0)
    assert sorted(drain(broker, now=5.0)) == ["pending", "ready"]


def test_enqueue_rejects_malformed_records():
    """A record without ID, Type or JobID is refused with BrokerError and not stored."""
    broker = make_broker()
    for field in ("ID", "Type", "JobID"):
        evaluation = make_eval("e1")
        del evaluation[field]
        with pytest.raises(BrokerError, match=field):
            broker.enqueue(evaluation, 0.0)
    assert broker.stats()["enqueued"] == 0


@pytest.mark.parametrize("kwargs", [
    {"nack_timeout": 0.0}, {"delivery_limit": 0}, {"initial_nack_delay": -1.0},
    {"subsequent_nack_delay": -0.5},
])
def test_bad_settings_fail_at_construction(kwargs):
    """Out-of-range broker settings raise SchedulerConfigError, a ValueError."""
    with pytest.raises(SchedulerConfigError):
        EvalBroker(rng=random.Random(0), **kwargs)
    assert issubclass(SchedulerConfigError, ValueError)


# ---------------------------------------------------------------- BlockedEvals


def test_blocked_evals_keep_the_newest_per_job():
    """One blocked eval per job: a newer one replaces the older, which is reported as a duplicate."""
    blocked = BlockedEvals()
    blocked.block(make_eval("old", "web", index=3))
    blocked.block(make_eval("new", "web", index=7))
    blocked.block(make_eval("stale", "web", index=5))  # older than the tracked one
    blocked.block(make_eval("db1", "db", index=4))
    assert len(blocked) == 2 and blocked.blocked_ids() == ["db1", "new"]
    assert sorted(e["ID"] for e in blocked.take_duplicates()) == ["old", "stale"]
    assert blocked.take_duplicates() == []


def test_unblock_all_returns_everything_best_first():
    """unblock_all hands back every blocked eval by priority then age and empties the set."""
    blocked = BlockedEvals()
    blocked.block(make_eval("b", "j2", priority=50, index=9))
    blocked.block(make_eval("a", "j1", priority=50, index=2))
    blocked.block(make_eval("c", "j3", priority=90, index=11))
    assert [e["ID"] for e in blocked.unblock_all()] == ["c", "a", "b"]
    assert len(blocked) == 0 and blocked.unblock_all() == []


def test_untrack_and_clear():
    """untrack forgets one job's blocked eval (namespace-aware); clear forgets all."""
    blocked = BlockedEvals()
    blocked.block(make_eval("a", "web"))
    blocked.block(make_eval("b", "web", namespace="prod"))
    blocked.block(make_eval("c", "db"))
    blocked.untrack("web")
    blocked.untrack("missing")
    assert blocked.blocked_ids() == ["b", "c"]
    blocked.untrack("web", namespace="prod")
    assert blocked.blocked_ids() == ["c"]
    blocked.clear()
    assert len(blocked) == 0


def test_unblocked_evals_flow_through_the_broker():
    """Evals unblocked when capacity appears are enqueued and delivered like new ones."""
    blocked = BlockedEvals()
    broker = make_broker()
    blocked.block(make_eval("b1", "web", index=4))
    blocked.block(make_eval("b2", "db", index=5))
    for evaluation in blocked.unblock_all():
        broker.enqueue(evaluation, 0.0)
    assert drain(broker) == ["b1", "b2"]


# ---------------------------------------------------------------- property: exactly once


JOBS = [("default", "a"), ("default", "b"), ("prod", "a"), ("default", "c")]
SCHEDULER_SETS = [("service",), ("batch",), ("service", "batch")]


class BrokerMachine(RuleBasedStateMachine):
    """Random enqueue/dequeue/ack/nack/timeouts: each eval ends acked or failed exactly once."""

    @initialize(rng=st.randoms(use_true_random=False), limit=st.integers(1, 3))
    def setup(self, rng, limit):
        self.broker = EvalBroker(nack_timeout=5.0, delivery_limit=limit, initial_nack_delay=1.0,
                                 subsequent_nack_delay=2.0, rng=rng)
        self.broker.set_enabled(True)
        self.now = 0.0
        self.count = 0
        self.records: dict[str, dict] = {}
        self.outstanding: dict[str, str] = {}  # id -> token the model believes valid
        self.acked: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()

    def _collect_failed(self):
        for evaluation in self.broker.take_failed():
            self.failed[evaluation["ID"]] += 1
            self.outstanding.pop(evaluation["ID"], None)

    def _sync(self):
        """Forget deliveries the broker timed out, then collect failures."""
        for eval_id, token in list(self.outstanding.items()):
            if self.broker.outstanding_token(eval_id) != token:
                del self.outstanding[eval_id]
        self._collect_failed()

    def _unfinished(self) -> list[str]:
        return sorted(i for i in self.records if not self.acked[i] and not self.failed[i])

    @rule(job=st.sampled_from(JOBS), priority=st.integers(1, 3), kind=st.sampled_from(["service", "batch"]))
    def enqueue(self, job, priority, kind):
        self.count += 1
        evaluation = make_eval(f"e{self.count}", job[1], namespace=job[0], priority=priority,
                               index=self.count, kind=kind)
        self.records[evaluation["ID"]] = evaluation
        self.broker.enqueue(evaluation, self.now)

    @rule(data=st.data())
    def enqueue_again(self, data):
        unfinished = self._unfinished()
        if unfinished:
            eval_id = data.draw(st.sampled_from(unfinished))
            self.broker.enqueue(dict(self.records[eval_id]), self.now)

    @rule(schedulers=st.sampled_from(SCHEDULER_SETS))
    def dequeue(self, schedulers):
        got = self.broker.dequeue(schedulers, self.now)
        if got is None:
            return
        evaluation, token = got
        eval_id = evaluation["ID"]
        assert eval_id not in self.outstanding
        assert not self.acked[eval_id] and not self.failed[eval_id]
        assert evaluation["Type"] in schedulers
        self.outstanding[eval_id] = token

    @rule(data=st.data(), positive=st.booleans())
    def finish(self, data, positive):
        if not self.outstanding:
            return
        eval_id = data.draw(st.sampled_from(sorted(self.outstanding)))
        token = self.outstanding.pop(eval_id)
        if positive:
            self.broker.ack(eval_id, token, self.now)
            self.acked[eval_id] += 1
        else:
            self.broker.nack(eval_id, token, self.now)
        self._collect_failed()

    @rule(data=st.data())
    def wrong_token(self, data):
        if self.outstanding:
            eval_id = data.draw(st.sampled_from(sorted(self.outstanding)))
            with pytest.raises(TokenMismatch):
                self.broker.ack(eval_id, "not-the-token", self.now)

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0, 7.5]))
    def advance(self, dt):
        self.now += dt
        self.broker.handle_timers(self.now)
        self._sync()

    @invariant()
    def at_most_one_outstanding_per_job(self):
        if not hasattr(self, "broker"):
            return
        jobs = [(self.records[i]["Namespace"], self.records[i]["JobID"]) for i in self.outstanding]
        assert len(jobs) == len(set(jobs))
        assert set(self.acked) & set(self.failed) == set()
        assert max(self.acked.values(), default=0) <= 1 and max(self.failed.values(), default=0) <= 1

    def teardown(self):
        if not hasattr(self, "broker"):
            return
        for eval_id in sorted(self.outstanding):  # a live worker finishes its work
            self.broker.ack(eval_id, self.outstanding[eval_id], self.now)
            self.acked[eval_id] += 1
        self.outstanding.clear()
        for _ in range(10 * len(self.records) + 10):
            got = self.broker.dequeue(["service", "batch"], self.now)
            if got is not None:
                self.broker.ack(got[0]["ID"], got[1], self.now)
                self.acked[got[0]["ID"]] += 1
                continue
            deadline = self.broker.next_deadline()
            if deadline is None:
                break
            self.now = max(self.now, deadline)
            self.broker.handle_timers(self.now)
            self._collect_failed()
        self._collect_failed()
        for eval_id in self.records:
            assert self.acked[eval_id] + self.failed[eval_id] == 1, eval_id
        stats = self.broker.stats()
        assert all(stats[k] == 0 for k in stats if k.startswith("total_")), stats


BrokerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestBrokerExactlyOnce = BrokerMachine.TestCase
