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
    before = {id(item): item.transmits for item in queue._items}
    items = list(queue._items)
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
