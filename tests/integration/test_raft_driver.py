"""``RaftHandle`` (raftlite/driver.py) driving three in-process cores over an in-memory network.

Virtual time (pytest-trio's ``autojump_clock``): every wait is a condition with a
deadline; the clock jumps whenever all tasks sleep, so a 1 s election costs nothing.
A ``Net`` records, per node and per driver batch, every persist and every send in
the order they happened, which lets the tests check the order rules of
``raftlite/events.py`` and the driver's early-send exception.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import msgpack
import pytest
import trio
import trio.testing

from raftlite.config import RaftConfig
from raftlite.core import RaftCore
from raftlite.driver import CommitTimeout, LeadershipLost, RaftHandle
from raftlite.errors import NotLeader
from raftlite.events import Persist
from raftlite.messages import (AppendEntries, AppendEntriesResponse, Message, RequestVote,
                               RequestVoteResponse)
from raftlite.storage import MemoryStorage
from raftlite.types import Configuration, EntryKind, Role, Server, Suffrage

from .helpers import wait_until

NAMES = ("n1", "n2", "n3")
DEADLINE = 60.0   # virtual seconds


class KeyValueMachine:
    """A list of applied commands; ``apply`` answers ``[index, data]``."""

    def __init__(self) -> None:
        self.applied: list[tuple[int, bytes]] = []

    def apply(self, index: int, data: bytes) -> Any:
        self.applied.append((index, data))
        return [index, data]

    def snapshot(self) -> bytes:
        return msgpack.packb([list(item) for item in self.applied], use_bin_type=True)

    def restore(self, data: bytes) -> None:
        self.applied = [(index, value) for index, value in msgpack.unpackb(data, raw=False)]

    def values(self) -> list[bytes]:
        return [data for _, data in self.applied]


class UnreadableSnapshots(KeyValueMachine):
    """A state machine that cannot read any snapshot once ``broken`` is set."""

    broken = False

    def restore(self, data: bytes) -> None:
        if self.broken:
            raise ValueError("snapshot format not understood")
        super().restore(data)


@dataclass
class Event:
    kind: str                       # "persist" or "send"
    node: str
    batch: int                      # the node's driver batch number at the time
    persists: tuple[Persist, ...] = ()
    message: Message | None = None
    to: str = ""


class Net:
    """The in-memory network and the shared record of persists and sends."""

    def __init__(self) -> None:
        self.handles: dict[str, RaftHandle] = {}
        self.events: list[Event] = []
        self.cut: set[str] = set()          # nodes whose messages (both ways) are lost
        self.drop: Callable[[str, str, Message], bool] = lambda src, dst, msg: False

    def batch_of(self, node: str) -> int:
        return self.handles[node].counters["batches"]

    def send(self, src: str, dst: str, message: Message) -> None:
        self.events.append(Event("send", src, self.batch_of(src), message=message, to=dst))
        if src in self.cut or dst in self.cut or self.drop(src, dst, message):
            return
        target = self.handles.get(dst)
        if target is not None:
            target.deliver_nowait(message)


class NodeTransport:
    def __init__(self, net: Net, name: str) -> None:
        self.net, self.name = net, name

    def send_nowait(self, to_id: str, to_address: str, message: Message) -> None:
        assert to_address == address(to_id)
        self.net.send(self.name, to_id, message)


class RecordingStorage(MemoryStorage):
    """MemoryStorage that logs each persist() call, in order with the sends, to the Net."""

    def __init__(self, net: Net, name: str) -> None:
        super().__init__()
        self.net, self.name = net, name

    def persist(self, batch: Sequence[Persist]) -> None:
        self.net.events.append(Event("persist", self.name, self.net.batch_of(self.name),
                                     persists=tuple(batch)))
        super().persist(batch)


@dataclass
class Cluster:
    net: Net
    handles: dict[str, RaftHandle]
    machines: dict[str, KeyValueMachine]
    nursery: trio.Nursery
    configs: dict[str, RaftConfig] = field(default_factory=dict)

    def leaders(self) -> list[str]:
        return [n for n, h in self.handles.items() if h.core.role is Role.LEADER]

    async def leader(self, among: Sequence[str] | None = None, timeout: float = 20.0) -> str:
        names = list(among or self.handles)

        def one_leader() -> str | None:
            found = [n for n in names if self.handles[n].core.role is Role.LEADER]
            return found[0] if len(found) == 1 else None

        return await wait_until(one_leader, timeout=timeout, describe=self.describe)

    def describe(self) -> dict[str, tuple[str, int, int, int]]:
        return {n: (h.core.role.value, h.core.term, h.core.commit_index, h.applied_index)
                for n, h in self.handles.items()}


def address(name: str) -> str:
    return f"{name}.raft:4647"


def configuration(voters: Sequence[str], nonvoters: Sequence[str] = ()) -> Configuration:
    return Configuration(tuple(Server(n, address(n)) for n in voters)
                         + tuple(Server(n, address(n), Suffrage.NONVOTER) for n in nonvoters))


async def start_cluster(nursery: trio.Nursery, *, names: Sequence[str] = NAMES,
                        bootstrap: Configuration | None = None, seed: int = 7,
                        config: RaftConfig | None = None,
                        machines: dict[str, KeyValueMachine] | None = None) -> Cluster:
    """Build one handle per name; every member of ``bootstrap`` bootstraps it (as -bootstrap-expect)."""
    net = Net()
    machines = machines or {}
    handles = {}
    bootstrap = bootstrap or configuration(names)
    for name in names:
        storage = RecordingStorage(net, name)
        core = RaftCore(config or RaftConfig(), server_id=name, address=address(name),
                        state=storage.load(), rng=random.Random(f"{seed}/{name}/raft"),
                        log=logging.LoggerAdapter(logging.getLogger("raftlite"), {"node": name}),
                        now=trio.current_time())
        machine = machines.setdefault(name, KeyValueMachine())
        handles[name] = net.handles[name] = RaftHandle(core, storage, NodeTransport(net, name), machine)
    for name in names:
        await nursery.start(handles[name].run)
        if bootstrap.get(name) is not None and bootstrap.get(name).is_voter:
            handles[name].call(lambda core, now: core.bootstrap(bootstrap, now))
    return Cluster(net, handles, machines, nursery)


def check_durable_before_send(events: list[Event]) -> dict[str, int]:
    """Assert that no message promises what its sender has not persisted yet.

    Walks the record in order, keeping each node's durable term, vote and last index.
    Returns counts of the interesting cases seen, so callers can show they happened.
    """
    durable: dict[str, tuple[int, str | None, int]] = {}
    seen = {"early_appends": 0, "election_batches": 0, "votes": 0}
    persist_pos: dict[tuple[str, int], int] = {}
    for pos, event in enumerate(events):
        if event.kind == "persist":
            persist_pos[(event.node, event.batch)] = pos
    for pos, event in enumerate(events):
        term, vote, last = durable.get(event.node, (0, None, 0))
        if event.kind == "persist":
            before = (term, vote)
            for p in event.persists:
                if p.snapshot is not None:
                    last = max(last, p.snapshot.index)
                if p.truncate_from is not None:
                    last = min(last, p.truncate_from - 1)
                if p.entries:
                    last = p.entries[-1].index
                term, vote = p.term, p.voted_for
            durable[event.node] = (term, vote, last)
            if (term, vote) != before:
                seen["election_batches"] += 1
                early = [e for e in events[:pos] if e.kind == "send" and e.node == event.node
                         and e.batch == event.batch]
                assert not early, f"{event.node} sent {early} before persisting {event.persists}"
            continue
        message = event.message
        where = f"{event.node} batch {event.batch}: {message}"
        if isinstance(message, AppendEntries):
            assert message.term <= term, f"term not durable: {where}"
            assert message.leader_commit <= last, f"commit beyond durable log ({last}): {where}"
            if message.entries and pos < persist_pos.get((event.node, event.batch), -1):
                seen["early_appends"] += 1
        elif isinstance(message, RequestVote) and not message.pre_vote:
            assert (term, vote) == (message.term, event.node), f"vote not durable: {where}"
        elif isinstance(message, RequestVoteResponse) and message.granted and not message.pre_vote:
            assert (term, vote) == (message.term, event.to), f"granted vote not durable: {where}"
            seen["votes"] += 1
        elif isinstance(message, AppendEntriesResponse) and message.success:
            assert message.term <= term and message.last_log_index <= last, \
                f"acknowledged entries not durable ({last}): {where}"
    return seen


# ---------------------------------------------------------------------------------------


async def test_election_apply_on_leader_and_not_leader_on_follower(autojump_clock: Any) -> None:
    """Three bootstrapped handles elect one leader; apply() there returns the state
    machine's result and is applied everywhere; apply() on a follower raises NotLeader."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            cluster = await start_cluster(nursery)
            leader = await cluster.leader()
            result = await cluster.handles[leader].apply(b"hello", timeout=5)
            index = cluster.handles[leader].core.last_index
            assert result == [index, b"hello"]
            follower = next(n for n in NAMES if n != leader)
            with pytest.raises(NotLeader) as caught:
                await cluster.handles[follower].apply(b"nope", timeout=5)
            assert caught.value.leader_id == leader
            assert caught.value.leader_address == address(leader)
            await wait_until(lambda: all(m.values() == [b"hello"] for m in cluster.machines.values()),
                             timeout=5, describe=cluster.describe)
            seen = check_durable_before_send(cluster.net.events)
            assert seen["votes"] >= 1
            nursery.cancel_scope.cancel()


async def test_concurrent_applies_share_persist_batches(autojump_clock: Any) -> None:
    """50 concurrent apply() calls on the leader all complete, in 50 distinct indexes,
    with far fewer than 50 leader persist batches (proposals made together share one)."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            cluster = await start_cluster(nursery)
            leader = await cluster.leader()
            handle = cluster.handles[leader]
            await handle.apply(b"warm-up", timeout=5)
            persists_before = handle.counters["persists"]
            results: dict[int, Any] = {}

            async def propose(i: int) -> None:
                results[i] = await handle.apply(f"cmd-{i}".encode(), timeout=10)

            async with trio.open_nursery() as proposers:
                for i in range(50):
                    proposers.start_soon(propose, i)
            used = handle.counters["persists"] - persists_before
            assert sorted(r[1] for r in results.values()) == sorted(f"cmd-{i}".encode() for i in range(50))
            assert len({r[0] for r in results.values()}) == 50
            assert used <= 5, f"{used} persist batches for 50 proposals"
            assert cluster.machines[leader].values()[1:] == [results[i][1] for i in
                                                             sorted(results, key=lambda i: results[i][0])]
            check_durable_before_send(cluster.net.events)
            nursery.cancel_scope.cancel()


def drop_append_answers(src: str, dst: str, message: Message) -> bool:
    return isinstance(message, AppendEntriesResponse)


async def test_read_barrier_waits_for_the_first_commit_of_the_term(autojump_clock: Any) -> None:
    """On a fresh leader whose NOOP is not committed yet read_barrier() waits, and
    returns once it commits; on a follower it raises NotLeader."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            cluster = await start_cluster(nursery)
            cluster.net.drop = drop_append_answers        # no follower can acknowledge anything
            leader = await cluster.leader()
            handle = cluster.handles[leader]
            returned = trio.Event()

            async def read() -> None:
                await handle.read_barrier(timeout=10)
                returned.set()

            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            assert not returned.is_set()
            assert handle.core.role is Role.LEADER
            assert handle.core.raft_log.term_at(handle.core.commit_index) != handle.core.term
            follower = next(n for n in NAMES if n != leader)
            with pytest.raises(NotLeader):
                await cluster.handles[follower].read_barrier(timeout=1)
            cluster.net.drop = lambda src, dst, msg: False
            await returned.wait()
            core = handle.core
            assert core.role is Role.LEADER
            assert core.raft_log.term_at(core.commit_index) == core.term
            assert handle.applied_index >= core.commit_index
            nursery.cancel_scope.cancel()


async def test_cut_off_leader_steps_down_and_fails_a_waiting_read(autojump_clock: Any) -> None:
    """A fresh leader that hears from no follower loses its lease and steps down; the
    read_barrier() waiting on it raises NotLeader instead of returning."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            cluster = await start_cluster(nursery)
            cluster.net.drop = drop_append_answers
            leader = await cluster.leader()
            handle = cluster.handles[leader]
            elected_at = trio.current_time()
            with pytest.raises(NotLeader):
                await handle.read_barrier(timeout=30)
            assert handle.core.role is not Role.LEADER
            assert handle.core.stats().counters.get("stepped_down_lease", 0) == 1
            # it stepped down on its lease (0.5 s), well before any read timeout
            assert trio.current_time() - elected_at <= 1.0
            nursery.cancel_scope.cancel()


async def test_partitioned_leader_fails_reads_before_a_new_leader_commits(autojump_clock: Any) -> None:
    """Once the majority side has a new leader that committed an entry, the old,
    partitioned leader no longer leads: its read_barrier() raises NotLeader (no stale read)."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            cluster = await start_cluster(nursery)
            old = await cluster.leader()
            await cluster.handles[old].apply(b"before", timeout=5)
            cluster.net.cut.add(old)
            others = [n for n in NAMES if n != old]
            new = await cluster.leader(among=others)
            await cluster.handles[new].apply(b"after", timeout=5)
            assert cluster.handles[old].core.role is not Role.LEADER
            with pytest.raises(NotLeader):
                await cluster.handles[old].read_barrier(timeout=1)
            nursery.cancel_scope.cancel()


async def test_early_send_rules_in_steady_state_and_elections(autojump_clock: Any) -> None:
    """Steady-state AppendEntries carrying a new batch leave before that batch's persist;
    a batch that changes term or vote sends nothing before its persist; every sent
    promise (term, vote, ack, leader_commit) was durable when it left."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            cluster = await start_cluster(nursery)
            first = await cluster.leader()
            for i in range(3):
                await cluster.handles[first].apply(b"x%d" % i, timeout=5)
            # a second election: the first leader is cut off, then comes back
            cluster.net.cut.add(first)
            second = await cluster.leader(among=[n for n in NAMES if n != first])
            for i in range(3):
                await cluster.handles[second].apply(b"y%d" % i, timeout=5)
            cluster.net.cut.clear()
            await wait_until(lambda: all(len(m.values()) == 6 for m in cluster.machines.values()),
                             timeout=10, describe=cluster.describe)
            seen = check_durable_before_send(cluster.net.events)
            assert seen["early_appends"] >= 3, seen
            assert seen["election_batches"] >= 4, seen    # two candidates, at least two voters
            nursery.cancel_scope.cancel()


async def test_single_voter_leader_never_sends_an_undurable_commit(autojump_clock: Any) -> None:
    """A one-voter leader commits its entries the moment it appends them; the
    AppendEntries to its non-voter never carry a leader_commit beyond what was
    persisted before the send (a new non-voter's first message included)."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            cluster = await start_cluster(nursery, names=("n1", "n2", "n3"),
                                          bootstrap=configuration(["n1"], ["n2"]))
            leader = await cluster.leader()
            assert leader == "n1"
            handle = cluster.handles["n1"]

            async def propose(i: int) -> None:
                await handle.apply(b"c%d" % i, timeout=5)

            for round_ in range(3):
                async with trio.open_nursery() as proposers:
                    for i in range(10):
                        proposers.start_soon(propose, 10 * round_ + i)
            # a configuration change commits at once too, and its batch also reaches a new peer
            await handle.change(lambda core, now: core.add_nonvoter("n3", address("n3"), now), 5)
            await handle.apply(b"last", timeout=5)
            last = handle.core.last_index
            await wait_until(lambda: all(h.applied_index == last for h in cluster.handles.values()),
                             timeout=10, describe=cluster.describe)
            assert cluster.machines["n3"].values() == cluster.machines["n1"].values()
            check_durable_before_send(cluster.net.events)
            commits = [e.message.leader_commit for e in cluster.net.events
                       if e.kind == "send" and e.node == "n1" and isinstance(e.message, AppendEntries)]
            assert max(commits) == last     # the commit index did travel, after its persist
            nursery.cancel_scope.cancel()


async def test_overwritten_proposal_fails_with_leadership_lost(autojump_clock: Any) -> None:
    """An entry proposed on a leader that is then partitioned, while the majority
    elects a new leader that commits other entries at that index, never returns success."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            cluster = await start_cluster(nursery)
            old = await cluster.leader()
            old_handle = cluster.handles[old]
            await old_handle.apply(b"first", timeout=5)
            first_index = old_handle.core.last_index
            cluster.net.cut.add(old)
            outcome: list[Any] = []
            proposed = trio.Event()

            async def doomed() -> None:
                try:
                    outcome.append(await old_handle.apply(b"doomed", timeout=30))
                except (LeadershipLost, CommitTimeout) as exc:
                    outcome.append(exc)

            async def watch_proposal() -> None:
                await wait_until(lambda: old_handle.core.last_index > first_index, timeout=5)
                proposed.set()

            nursery.start_soon(doomed)
            nursery.start_soon(watch_proposal)
            await proposed.wait()
            doomed_index = old_handle.core.last_index
            assert doomed_index == first_index + 1
            others = [n for n in NAMES if n != old]
            new = await cluster.leader(among=others)
            for i in range(3):
                await cluster.handles[new].apply(b"other%d" % i, timeout=5)
            new_core = cluster.handles[new].core
            assert new_core.commit_index > doomed_index
            assert new_core.raft_log.term_at(doomed_index) != old_handle.core.raft_log.term_at(doomed_index)
            cluster.net.cut.clear()
            await wait_until(lambda: outcome, timeout=20, describe=cluster.describe)
            assert isinstance(outcome[0], (LeadershipLost, CommitTimeout)), outcome
            assert isinstance(outcome[0], LeadershipLost), "the entry surely did not happen"
            await wait_until(lambda: old_handle.applied_index >= new_core.commit_index, timeout=10)
            assert b"doomed" not in cluster.machines[old].values()
            assert cluster.machines[old].values() == cluster.machines[new].values()
            nursery.cancel_scope.cancel()


async def test_failed_snapshot_restore_shuts_the_core_down(autojump_clock: Any) -> None:
    """A follower whose state machine cannot restore the leader's snapshot stops its
    core (role SHUTDOWN, restore_failures 1) while its pump task and the others go on."""
    config = RaftConfig(snapshot_threshold=4, trailing_logs=0)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            machines: dict[str, KeyValueMachine] = {n: UnreadableSnapshots() for n in NAMES}
            cluster = await start_cluster(nursery, config=config, machines=machines)
            leader = await cluster.leader()
            victim = next(n for n in NAMES if n != leader)
            machines[victim].broken = True
            cluster.net.cut.add(victim)
            for i in range(10):
                await cluster.handles[leader].apply(b"v%d" % i, timeout=5)
            assert cluster.handles[leader].counters["snapshots"] >= 1
            assert cluster.handles[leader].core.raft_log.snapshot_index > cluster.handles[victim].core.last_index
            cluster.net.cut.clear()
            handle = cluster.handles[victim]
            await wait_until(lambda: handle.core.role is Role.SHUTDOWN, timeout=10,
                             describe=cluster.describe)
            assert handle.counters["restore_failures"] == 1
            # the pump is alive: it still drains its inbox (and ignores what it gets)
            dropped = handle.core.stats().counters.get("messages_dropped.shutdown", 0)
            await wait_until(lambda: handle.core.stats().counters.get("messages_dropped.shutdown", 0)
                             > dropped, timeout=5)
            await cluster.handles[leader].apply(b"still-working", timeout=5)
            assert handle.counters["restore_failures"] == 1
            nursery.cancel_scope.cancel()
