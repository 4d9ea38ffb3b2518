"""The trio driver of one ``RaftCore``: timers, storage, transport, state machine.

One task (``RaftHandle.run``) feeds the core every input and performs its outputs
batch by batch, in the order ``raftlite/events.py`` fixes: all ``Persist`` of a batch
and one fsync (in a worker thread for file storage), then the sends, then the state
machine, then role changes. Other tasks never await inside the core: they call a
core method synchronously through the handle (``apply``, ``change``...) and wake the
pump, so the core is only ever touched from trio's one thread and a batch never mixes
with the next.

A proposer waits for its entry by index: when the entry at that index is applied
with the term it was proposed in, the state machine's result is returned; a
different term there means the entry was overwritten after a leadership change
(``LeadershipLost``: it surely did not happen); a timeout means it may or may not
happen (``CommitTimeout``), as maelstrom's definite/indefinite errors distinguish.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import trio

from .core import RaftCore
from .errors import NotLeader, RaftError
from .events import Apply, Output, Persist, RaftStats, Restore, RoleChanged, Send, SnapshotWanted
from .messages import AppendEntries, Message
from .types import Configuration, Entry, EntryKind, PersistentState, Role

__all__ = ["CommitTimeout", "LeadershipLost", "RaftHandle", "StateMachine", "Transport"]

log = logging.getLogger(__name__)

_INBOX_LIMIT = 20000


class LeadershipLost(RaftError):
    """The entry was overwritten by another leader's: it did not happen."""


class CommitTimeout(RaftError):
    """The entry was not applied in time: it may still happen."""


class Transport(Protocol):
    """Where the driver hands messages; never blocks."""

    def send_nowait(self, to_id: str, to_address: str, message: Message) -> None: ...


class StateMachine(Protocol):
    """The agent's replicated state (``agent/state.py``)."""

    def apply(self, index: int, data: bytes) -> Any: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


class Storage(Protocol):
    def load(self) -> PersistentState: ...

    def persist(self, batch: Sequence[Persist]) -> None: ...


@dataclass
class _Proposal:
    data: bytes
    index: int = 0
    waiter: "_Waiter | None" = None
    error: BaseException | None = None
    done: trio.Event = field(default_factory=trio.Event)


@dataclass
class _Waiter:
    term: int
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None


class RaftHandle:
    """Owns one core's pump task; the agent's one contact with raft.

    Args:
        core: the core, built from ``storage.load()``.
        storage: ``MemoryStorage`` or ``FileStorage``.
        transport: sends messages (the rpc port's raft connections).
        state_machine: applies committed commands.
        persist_in_thread: run ``storage.persist`` in a worker thread (file storage).
        on_role: called with each ``RoleChanged`` (sync; must not re-enter).
    """

    def __init__(self, core: RaftCore, storage: Storage, transport: Transport,
                 state_machine: StateMachine, *, persist_in_thread: bool = False,
                 on_role: Callable[[RoleChanged], None] | None = None) -> None:
        self.core = core
        self._storage = storage
        self._transport = transport
        self._fsm = state_machine
        self._persist_in_thread = persist_in_thread
        self._on_role = on_role
        self._inbox: deque[Message] = deque()
        self._proposals: list[_Proposal] = []
        self._wakeup = trio.Event()
        self._waiters: dict[int, _Waiter] = {}
        self._applied = core.applied_index
        # what is on disk, so a message can leave before this batch's fsync only when it
        # promises nothing that is not durable yet (see _perform)
        self._durable_hard_state = (core.term, core.voted_for)
        self._durable_last = core.last_index
        self._applied_event = trio.Event()
        self._role_watchers: list[trio.Event] = []
        self.counters: dict[str, int] = {"inbox_dropped": 0, "batches": 0, "persists": 0,
                                         "sent": 0, "applied": 0, "snapshots": 0,
                                         "restore_failures": 0}

    # ---------------------------------------------------------------- inputs

    def deliver_nowait(self, message: Message) -> bool:
        """Queue a message from the network; False (and counted) when the inbox is full."""
        if len(self._inbox) >= _INBOX_LIMIT:
            self.counters["inbox_dropped"] += 1
            return False
        self._inbox.append(message)
        self._wakeup.set()
        return True

    def call(self, operation: Callable[[RaftCore, float], Any]) -> Any:
        """Run ``operation(core, now)`` now and wake the pump; exceptions propagate."""
        try:
            return operation(self.core, trio.current_time())
        finally:
            self._wakeup.set()

    async def apply(self, data: bytes, timeout: float) -> Any:
        """Propose a command and wait for its result.

        Proposals made while the pump is busy are appended together as one batch (one
        fsync, one message per peer), which is where the throughput comes from.

        Raises:
            NotLeader: not proposed. LeadershipLost: proposed, then overwritten.
            CommitTimeout: not applied within ``timeout``; it may still be.
        """
        proposal = _Proposal(data)
        self._proposals.append(proposal)
        self._wakeup.set()
        with trio.move_on_after(timeout):
            await proposal.done.wait()
        if proposal.error is not None:
            raise proposal.error
        if proposal.waiter is None:
            raise CommitTimeout("timed out before the proposal was appended")
        return await self._wait(proposal.waiter, proposal.index, timeout)

    async def change(self, operation: Callable[[RaftCore, float], int], timeout: float) -> None:
        """Run a configuration change (``core.add_voter`` ...) and wait until it is applied."""
        index = self.call(operation)
        await self._wait_index(index, timeout)

    async def _wait_index(self, index: int, timeout: float) -> Any:
        if index <= self._applied:   # e.g. a configuration change that changed nothing
            return None
        waiter = self._waiters[index] = _Waiter(term=self.core.term)
        return await self._wait(waiter, index, timeout)

    async def _wait(self, waiter: "_Waiter", index: int, timeout: float) -> Any:
        with trio.move_on_after(timeout):
            await waiter.done.wait()
        if not waiter.done.is_set():
            if self._waiters.get(index) is waiter:
                del self._waiters[index]
            raise CommitTimeout(f"timed out waiting for index {index} to be applied")
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    async def read_barrier(self, timeout: float) -> None:
        """Return once a consistent read may be served here (read-index, thesis 6.4).

        This server must lead, have committed an entry of its own term (so its commit
        index covers every write acknowledged by earlier leaders), and have applied up
        to that commit index. Raises ``NotLeader`` when it does not lead, and
        ``CommitTimeout`` when the conditions do not hold within ``timeout``.
        """
        with trio.move_on_after(timeout):
            while True:
                core = self.core
                if core.role is not Role.LEADER:
                    raise NotLeader(core.leader_id, core.leader_address)
                commit = core.commit_index
                if core.raft_log.term_at(commit) == core.term and self._applied >= commit:
                    return
                await self._applied_event.wait()
        raise CommitTimeout("the leader has not caught up with its commit index yet")

    async def wait_applied(self, index: int, timeout: float) -> None:
        """Return once the state machine has applied ``index`` (``CommitTimeout`` after ``timeout``)."""
        with trio.move_on_after(timeout):
            while self._applied < index:
                await self._applied_event.wait()
            return
        raise CommitTimeout(f"state did not reach index {index} in {timeout:g}s (at {self._applied})")

    async def wait_role_change(self) -> None:
        """Return after the next ``RoleChanged``."""
        event = trio.Event()
        self._role_watchers.append(event)
        await event.wait()

    # ------------------------------------------------------------------ pump

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Feed the core and perform its outputs until cancelled."""
        core = self.core
        task_status.started()
        try:
            while True:
                deadline = core.next_deadline()
                with trio.move_on_at(math.inf if deadline is None else deadline):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()
                if self._proposals:
                    await trio.lowlevel.checkpoint()   # let proposers that are ready join the batch
                now = trio.current_time()
                inbox, self._inbox = self._inbox, deque()
                for message in inbox:
                    core.receive(message, now)
                core.handle_timers(now)
                self._propose_pending(now)
                outputs = core.take_outputs()
                if outputs:
                    await self._perform(outputs)
        finally:
            for waiter in self._waiters.values():
                waiter.error = CommitTimeout("raft stopped")
                waiter.done.set()
            for proposal in self._proposals:
                proposal.error = CommitTimeout("raft stopped")
                proposal.done.set()

    def _propose_pending(self, now: float) -> None:
        proposals, self._proposals = self._proposals, []
        if not proposals:
            return
        try:
            indexes = self.core.propose_many([p.data for p in proposals], now)
        except RaftError as exc:
            for proposal in proposals:
                proposal.error = exc
                proposal.done.set()
            return
        for proposal, index in zip(proposals, indexes):
            proposal.index = index
            proposal.waiter = self._waiters[index] = _Waiter(term=self.core.term)
            proposal.done.set()

    async def _perform(self, outputs: list[Output]) -> None:
        self.counters["batches"] += 1
        persists = [o for o in outputs if isinstance(o, Persist)]
        early = self._early_sends(outputs, persists)
        for output in early:
            self._send(output)
        if persists:
            self.counters["persists"] += 1
            if self._persist_in_thread:
                await trio.to_thread.run_sync(self._storage.persist, persists)
            else:
                self._storage.persist(persists)
            self._note_durable(persists)
        sent_early = {id(o) for o in early}
        for output in outputs:
            if isinstance(output, Send) and id(output) not in sent_early:
                self._send(output)
        for output in outputs:
            if isinstance(output, Restore):
                self._restore(output)
            elif isinstance(output, Apply):
                self._apply_entries(output.entries)
        for output in outputs:
            if isinstance(output, RoleChanged):
                self._role_changed(output)
            elif isinstance(output, SnapshotWanted):
                self._take_snapshot()

    def _early_sends(self, outputs: list[Output], persists: list[Persist]) -> list[Send]:
        """The leader's AppendEntries that may leave before this batch's fsync.

        A leader may replicate while its own write is in flight (thesis 10.2.1): no
        answer is read before the persist finishes, so it never counts its own entries
        before they are durable. A message leaves early only when it promises nothing
        that is not on disk yet: the term and vote of the batch are already durable,
        and its ``leader_commit`` is within the durable log. Answers and votes wait.
        """
        if not persists or self.core.role is not Role.LEADER:
            return []
        if any((p.term, p.voted_for) != self._durable_hard_state for p in persists):
            return []
        if any(p.truncate_from is not None or p.snapshot is not None for p in persists):
            return []
        return [o for o in outputs if isinstance(o, Send) and isinstance(o.message, AppendEntries)
                and o.message.leader_commit <= self._durable_last]

    def _note_durable(self, persists: list[Persist]) -> None:
        for persist in persists:
            self._durable_hard_state = (persist.term, persist.voted_for)
            if persist.snapshot is not None:
                self._durable_last = max(self._durable_last, persist.snapshot.index)
            if persist.truncate_from is not None:
                self._durable_last = min(self._durable_last, persist.truncate_from - 1)
            if persist.entries:
                self._durable_last = persist.entries[-1].index

    def _send(self, output: Send) -> None:
        self.counters["sent"] += 1
        self._transport.send_nowait(output.to_id, output.to_address, output.message)

    def _notify_applied(self) -> None:
        event, self._applied_event = self._applied_event, trio.Event()
        event.set()

    def _apply_entries(self, entries: Sequence[Entry]) -> None:
        self._notify_applied()
        for entry in entries:
            result = None
            if entry.kind == EntryKind.COMMAND:
                result = self._fsm.apply(entry.index, entry.data)
            self._applied = entry.index
            self.counters["applied"] += 1
            waiter = self._waiters.pop(entry.index, None)
            if waiter is None:
                continue
            if entry.term != waiter.term:
                waiter.error = LeadershipLost(
                    f"leadership lost: index {entry.index} holds an entry of term {entry.term}")
            else:
                waiter.result = result
            waiter.done.set()

    def _restore(self, restore: Restore) -> None:
        snapshot = restore.snapshot
        log.info("restoring snapshot index=%d term=%d", snapshot.index, snapshot.term)
        try:
            self._fsm.restore(snapshot.data)
        except ValueError as exc:
            # The state machine cannot read what raft says is committed: serving anything
            # from here on could be wrong, so this server stops taking part (loudly).
            self.counters["restore_failures"] += 1
            log.error("snapshot restore failed, raft stopped on this server index=%d error=%s",
                      snapshot.index, exc)
            self.core.shutdown()
            return
        self._applied = snapshot.index
        for index in [i for i in self._waiters if i <= snapshot.index]:
            waiter = self._waiters.pop(index)
            waiter.error = CommitTimeout("entry outcome unknown: a snapshot replaced the log")
            waiter.done.set()

    def _role_changed(self, change: RoleChanged) -> None:
        self._notify_applied()   # a read waiting on a leader that stepped down must look again
        if self._on_role is not None:
            self._on_role(change)
        watchers, self._role_watchers = self._role_watchers, []
        for event in watchers:
            event.set()

    def _take_snapshot(self) -> None:
        data = self._fsm.snapshot()
        self.counters["snapshots"] += 1
        self.core.compact(self._applied, data, trio.current_time())
        self._wakeup.set()

    # ----------------------------------------------------------------- views

    @property
    def applied_index(self) -> int:
        return self._applied

    def stats(self) -> RaftStats:
        return self.core.stats()

    @property
    def configuration(self) -> Configuration:
        return self.core.configuration


async def run_raft(handle: RaftHandle, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                   ) -> None:
    """``handle.run`` under the ``run_<thing>`` name STYLE.md uses for drivers."""
    await handle.run(task_status=task_status)

