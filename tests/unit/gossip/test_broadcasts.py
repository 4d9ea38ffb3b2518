"""TransmitLimitedQueue order and limits (spec 2.7, memberlist queue_test.go)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, strategies as st

from gossip.broadcasts import TransmitLimitedQueue, retransmit_limit


def make_queue(n: int = 10, mult: int = 1) -> TransmitLimitedQueue:
    return TransmitLimitedQueue(mult, lambda: n)


@pytest.mark.parametrize("mult, n, limit", [
    (4, 0, 0), (4, 1, 4), (4, 3, 4), (4, 9, 4), (4, 10, 8), (4, 99, 8), (4, 100, 12), (2, 3, 2),
])
def test_retransmit_limit_table(mult, n, limit):
    """limit = mult * ceil(log10(n + 1))."""
    assert retransmit_limit(mult, n) == limit


def test_order_is_fewest_transmits_then_largest_then_newest():
    """Equal transmits: longer first, equal length: newer first; sent items drop a tier."""
    queue = make_queue(n=10, mult=3)
    for message in (b"aa", b"bbbb", b"cc", b"d"):
        queue.queue(message)
    assert queue.messages() == [b"bbbb", b"cc", b"aa", b"d"]
    assert queue.get_broadcasts(0, 6) == [b"bbbb", b"cc"]
    # bbbb and cc were sent once; aa and d have not been sent yet.
    assert queue.messages() == [b"aa", b"d", b"bbbb", b"cc"]
    assert queue.get_broadcasts(0, 100) == [b"aa", b"d", b"bbbb", b"cc"]


def test_largest_item_that_still_fits_is_taken():
    """Within a tier an item too big for the remaining budget is skipped for a smaller one."""
    queue = make_queue()
    for message in (b"x" * 11, b"y" * 6, b"z" * 2):
        queue.queue(message)
    # 12 bytes, 2 per item: x (13) does not fit, y (8) does, then z (4) fills it exactly.
    assert queue.get_broadcasts(2, 12) == [b"y" * 6, b"z" * 2]
    assert queue.get_broadcasts(2, 13) == [b"x" * 11]


def test_messages_are_dropped_after_the_retransmit_limit():
    """With 3 nodes and mult 4 each message goes out exactly 4 times."""
    finished = []
    queue = TransmitLimitedQueue(4, lambda: 3)
    queue.queue(b"leave", on_finished=lambda: finished.append("leave"))
    sent = 0
    while queue.get_broadcasts(2, 1400):
        sent += 1
    assert sent == 4 and len(queue) == 0 and finished == ["leave"]


def test_limit_follows_the_cluster_size_at_each_fetch():
    """The limit is computed at fetch time from num_nodes()."""
    size = [3]
    queue = TransmitLimitedQueue(4, lambda: size[0])
    queue.queue(b"m")
    for _ in range(3):
        queue.get_broadcasts(0, 100)
    size[0] = 10  # limit becomes 8
    for _ in range(5):
        assert queue.get_broadcasts(0, 100) == [b"m"]
    assert queue.get_broadcasts(0, 100) == []


def test_named_message_replaces_the_queued_one():
    """A new broadcast about node X discards the queued one about X; unnamed ones never do."""
    finished = []
    queue = make_queue()
    queue.queue(b"alive-x-1", name="x", on_finished=lambda: finished.append(1))
    queue.queue(b"serf-1")
    queue.queue(b"serf-1")
    queue.queue(b"dead-x-2", name="x")
    assert sorted(queue.messages()) == [b"dead-x-2", b"serf-1", b"serf-1"]
    assert finished == [1]
    assert queue.transmits("x") == 0


def test_prune_keeps_the_freshest():
    """prune drops the most transmitted, then smallest, then oldest until max_retain remain."""
    queue = make_queue(mult=5)
    queue.queue(b"old")
    queue.get_broadcasts(0, 3)
    queue.queue(b"n1")
    queue.queue(b"n2")
    queue.prune(2)
    assert queue.messages() == [b"n2", b"n1"]
    queue.prune(1)
    assert queue.messages() == [b"n2"]
    queue.reset()
    assert len(queue) == 0


def test_nothing_is_taken_when_the_overhead_eats_the_budget():
    """A budget not larger than the per-item overhead yields nothing and counts nothing."""
    queue = make_queue()
    queue.queue(b"a")
    assert queue.get_broadcasts(2, 2) == []
    assert queue.get_broadcasts(2, 3) == [b"a"]


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=30), st.integers(0, 300),
       st.randoms(use_true_random=False))
def test_fetch_respects_budget_and_tier_order(messages, limit, rng: random.Random):
    """Property: a fetch never exceeds its budget, and no unsent message is passed over
    for a sent one when it would have fit (naive oracle of the tier rule)."""
    queue = make_queue(n=100, mult=3)
    for message in messages:
        queue.queue(message)
    for _ in range(rng.randrange(3)):
        queue.get_broadcasts(2, rng.randrange(200))
    items = queue._ordered()
    before = {id(item): item.transmits for item in items}
    taken = queue.get_broadcasts(2, limit)
    assert sum(len(m) + 2 for m in taken) <= limit
    taken_ids = set()
    for message in taken:
        match = next(i for i in items if i.message == message and id(i) not in taken_ids)
        taken_ids.add(id(match))
    if taken:
        worst_taken = max(before[i] for i in taken_ids)
        left = [i for i in items if id(i) not in taken_ids]
        used = sum(len(m) + 2 for m in taken)
        for item in left:
            if before[id(item)] < worst_taken:
                # A less-sent message may be passed over only if it did not fit; the
                # budget only shrinks, so it must not fit in what is left at the end.
                assert len(item.message) + 2 > limit - used


class NaiveQueue:
    """Reference model: a plain list scanned in full for every pick (memberlist's order)."""

    def __init__(self, mult: int, num_nodes):
        self.mult, self.num_nodes = mult, num_nodes
        self.items: list[list] = []  # [message, name, id, transmits, on_finished]
        self.next_id = 0

    def _remove(self, item):
        self.items.remove(item)
        if not self.items:
            self.next_id = 0
        if item[4] is not None:
            item[4]()

    def queue(self, message, *, name=None, on_finished=None):
        for item in list(self.items):
            if name is not None and item[1] == name:
                self._remove(item)
        self.next_id += 1
        self.items.append([message, name, self.next_id, 0, on_finished])

    @staticmethod
    def key(item):
        return (item[3], -len(item[0]), -item[2])

    def get_broadcasts(self, overhead, limit):
        if not self.items:
            return []
        transmit_limit = retransmit_limit(self.mult, self.num_nodes())
        taken, used = [], 0
        while limit - used - overhead > 0:
            fits = [i for i in self.items if len(i[0]) <= limit - used - overhead
                    and all(i is not t for t in taken)]
            if not fits:
                break
            best = min(fits, key=self.key)
            used += overhead + len(best[0])
            taken.append(best)
        for item in taken:
            item[3] += 1
            if item[3] >= transmit_limit:
                self._remove(item)
        return [item[0] for item in taken]

    def prune(self, max_retain):
        while len(self.items) > max_retain:
            self._remove(max(self.items, key=self.key))

    def reset(self):
        for item in list(self.items):  # oldest first
            self._remove(item)
        self.next_id = 0

    def messages(self):
        return [item[0] for item in sorted(self.items, key=self.key)]


@given(st.randoms(use_true_random=False))
def test_queue_matches_the_naive_reference(rng: random.Random):
    """Property: any mix of queue/fetch/prune/reset gives the same results, order and
    on_finished calls as a naive full-scan implementation of memberlist's order."""
    size = [rng.randrange(1, 200)]
    fast, slow = TransmitLimitedQueue(2, lambda: size[0]), NaiveQueue(2, lambda: size[0])
    finished_fast: list[int] = []
    finished_slow: list[int] = []
    for step in range(rng.randrange(1, 120)):
        op = rng.random()
        if op < 0.5:
            # Distinct contents (a counter) with few distinct lengths, so ties happen.
            message = step.to_bytes(2, "big") + bytes(rng.choice((0, 1, 3, 5, 30)))
            name = rng.choice((None, None, "a", "b", "c"))
            fast.queue(message, name=name, on_finished=lambda s=step: finished_fast.append(s))
            slow.queue(message, name=name, on_finished=lambda s=step: finished_slow.append(s))
        elif op < 0.85:
            overhead, limit = rng.randrange(4), rng.randrange(60)
            assert fast.get_broadcasts(overhead, limit) == slow.get_broadcasts(overhead, limit)
        elif op < 0.92:
            keep = rng.randrange(8)
            fast.prune(keep)
            slow.prune(keep)
        elif op < 0.95:
            fast.reset()
            slow.reset()
        else:
            size[0] = rng.randrange(0, 200)
        assert fast.messages() == slow.messages()
        assert len(fast) == len(slow.items)
        assert finished_fast == finished_slow
        for name in ("a", "b", "c"):
            want = next((i[3] for i in slow.items if i[1] == name), None)
            assert fast.transmits(name) == want
