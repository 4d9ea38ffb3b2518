"""``RaftCore``: one raft server as a sans-IO state machine (docs/internals.md, raftlite/).

Theory of operation. State owned: the persistent term and vote, the log
(``RaftLog``: a snapshot point plus entries), the latest snapshot, the volatile
commit and applied indexes, the configurations still in the log, and the role with
its role-specific state (pre-votes and votes while campaigning; a ``Progress`` per
peer, the lease deadline and a leadership transfer while leading). Elections live in
``election.py`` and replication in ``replication.py``, as mixins over this state.

Inputs are method calls carrying ``now``; outputs (``Persist``, ``Send``, ``Apply``,
``Restore``, ``RoleChanged``, ``SnapshotWanted``) queue until ``take_outputs``.
The driver performs every ``Persist`` of a batch before any ``Send``, so a vote or an
entry acknowledgement is only emitted in the batch that persists it, and the leader
counts its own entries durable once their ``Persist`` is emitted. Every input ends in
``_finish``: committed entries are handed out (``Apply``, all kinds, in order), a
snapshot is asked for past ``snapshot_threshold``, and ``RoleChanged`` is emitted when
role, term or known leader differ from what was last reported.

Invariants: ``applied_index <= commit_index <= last_index``; the commit index never
falls; a leader only commits entries of its own term by counting (paper figure 8);
entries at or below the commit index are never cut. Configurations take effect when
appended (thesis 4.1) and are rolled back when a conflicting suffix is cut. The server
recognises itself in a configuration by ``server_id`` or any alias (the protocol-2
address id during a 2 -> 3 upgrade) and speaks under the id the configuration uses.
Messages of a lower term are answered with our term where the paper says to
(RequestVote, AppendEntries, InstallSnapshot) and otherwise dropped and counted.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Iterable

from .config import RaftConfig
from .election import ElectionMixin
from .errors import ConfigChangeInProgress, NotLeader, RaftError, UnknownServer
from .events import Apply, Output, Persist, RaftStats, Restore, RoleChanged, Send, SnapshotWanted
from .log import RaftLog
from .messages import (AppendEntries, AppendEntriesResponse, InstallSnapshot,
                       InstallSnapshotResponse, Message, RequestVote, RequestVoteResponse,
                       TimeoutNow)
from .replication import Progress, ReplicationMixin
from .types import (Configuration, Entry, EntryKind, PersistentState, Role, Server, Snapshot,
                    Suffrage)

# Heartbeats go to each peer this many times per heartbeat timeout.
HEARTBEATS_PER_TIMEOUT = 10


class RaftCore(ElectionMixin, ReplicationMixin):
    """One raft server: inputs in, outputs out, no I/O (see the module docstring)."""

    def __init__(self, config: RaftConfig, *, server_id: str, address: str,
                 state: PersistentState, rng: random.Random,
                 log: logging.LoggerAdapter | logging.Logger, now: float,
                 aliases: Iterable[str] = ()) -> None:
        """Rebuild a server from what storage loaded (``state``), as a follower.

        The commit and applied indexes start at the snapshot's index: nothing is
        applied until a leader tells us the commit index. When ``state`` holds a
        snapshot, the first outputs carry ``Restore(snapshot)`` for the state machine.

        Args:
            aliases: other ids that also mean this server (protocol 2's address id).
        """
        self.config = config
        self.server_id = server_id
        self.address = address
        self.aliases = tuple(sorted(set(aliases) - {server_id}))
        self._rng = rng
        self._logger = log
        self._now = now
        self._outputs: list[Output] = []
        self._counters: Counter[str] = Counter()
        self._heartbeat_interval = config.heartbeat / HEARTBEATS_PER_TIMEOUT
        self.role = Role.FOLLOWER
        self.term = state.term
        self.voted_for = state.voted_for
        self.leader_id: str | None = None
        self.leader_address: str | None = None
        self.last_contact: float | None = None  # last message from a leader of our term
        snapshot = state.snapshot
        self.snapshot: Snapshot | None = snapshot
        self.raft_log = RaftLog(snapshot.index if snapshot else 0,
                                snapshot.term if snapshot else 0, state.entries)
        self.commit_index = self.applied_index = self.raft_log.snapshot_index
        # (index, configuration) of the snapshot's and every later configuration entry.
        self._configurations: list[tuple[int, Configuration]] = [
            (snapshot.configuration_index, snapshot.configuration) if snapshot
            else (0, Configuration())]
        for entry in self.raft_log.entries():
            if entry.kind == EntryKind.CONFIGURATION and entry.index > self.raft_log.snapshot_index:
                self._configurations.append((entry.index, Configuration.decode(entry.data)))
        self._pre_votes: dict[str, bool] | None = None  # pre-vote round in progress
        self._votes: dict[str, bool] = {}                # real election ballots
        self._peers: dict[str, Progress] = {}            # leader only
        self._lease_deadline: float | None = None        # leader only
        self._transfer: tuple[str, float] | None = None  # leader: (target, give up at)
        self._transfer_sent = False
        self._snapshot_wanted = False
        self._election_deadline: float | None = None
        self._reset_election_timer(now, candidate=False)
        self._reported = (self.role, self.term, self.leader_id, self.leader_address)
        if snapshot is not None:
            self._outputs.append(Restore(snapshot))

    # ------------------------------------------------------------------ views

    @property
    def last_index(self) -> int:
        return self.raft_log.last_index

    @property
    def last_term(self) -> int:
        return self.raft_log.last_term

    @property
    def configuration(self) -> Configuration:
        """The latest configuration in the log, committed or not."""
        return self._configurations[-1][1]

    @property
    def configuration_index(self) -> int:
        return self._configurations[-1][0]

    @property
    def committed_configuration(self) -> Configuration:
        """The latest configuration at or below the commit index."""
        for index, configuration in reversed(self._configurations):
            if index <= self.commit_index:
                return configuration
        return self._configurations[0][1]

    def progress(self) -> dict[str, tuple[int, float | None]]:
        """Leader: id -> (match index, last contact), ourselves included; else empty."""
        if self.role is not Role.LEADER:
            return {}
        result = {peer_id: (p.match_index, p.last_contact) for peer_id, p in self._peers.items()}
        result[self._self_id] = (self.raft_log.last_index, self._now)
        return dict(sorted(result.items()))

    def stats(self) -> RaftStats:
        """A frozen snapshot of counters and gauges."""
        return RaftStats(counters=dict(sorted(self._counters.items())), role=self.role,
                         term=self.term, last_log_index=self.raft_log.last_index,
                         last_log_term=self.raft_log.last_term, commit_index=self.commit_index,
                         applied_index=self.applied_index,
                         last_snapshot_index=self.raft_log.snapshot_index,
                         last_snapshot_term=self.raft_log.snapshot_term,
                         configuration_index=self.configuration_index)

    def next_deadline(self) -> float | None:
        """When ``handle_timers`` next has something to do."""
        if self.role is Role.SHUTDOWN:
            return None
        if self.role is not Role.LEADER:
            return self._election_deadline
        deadlines = [p.next_heartbeat for p in self._peers.values()]
        if self._lease_deadline is not None:
            deadlines.append(self._lease_deadline)
        if self._transfer is not None:
            deadlines.append(self._transfer[1])
        return min(deadlines) if deadlines else None

    def take_outputs(self) -> list[Output]:
        """Drain the outputs queued so far, in order."""
        outputs, self._outputs = self._outputs, []
        return outputs

    # ------------------------------------------------------------------ inputs

    def receive(self, message: Message, now: float) -> None:
        """Handle one message from a peer (known to our configuration or not)."""
        if self.role is Role.SHUTDOWN:
            self._drop("shutdown")
            return
        self._now = now
        if self._check_term(message, now):
            handler = self._HANDLERS.get(type(message))
            if handler is None:
                self._drop("unknown_message")
            else:
                handler(self, message, now)
        self._finish(now)

    def handle_timers(self, now: float) -> None:
        """Run whatever timer is due: election, heartbeats, lease, transfer expiry."""
        if self.role is Role.SHUTDOWN:
            return
        self._now = now
        if self.role is Role.LEADER:
            self._leader_timers(now)
        elif self._election_deadline is not None and now >= self._election_deadline:
            self._on_election_timer(now)
        self._finish(now)

    def bootstrap(self, configuration: Configuration, now: float) -> None:
        """Start a new cluster with ``configuration`` as entry 1 of term 1.

        Raises:
            RaftError: this server has state already (bootstrap only once, ever).
        """
        if self.term != 0 or self.voted_for is not None or self.raft_log.last_index != 0:
            raise RaftError("cannot bootstrap: raft state exists")
        if not configuration.voters():
            raise RaftError("cannot bootstrap: configuration has no voter")
        self._now = now
        self.term = 1
        entry = Entry(1, 1, EntryKind.CONFIGURATION, configuration.encode())
        self.raft_log.append([entry])
        self._configurations.append((1, configuration))
        self._outputs.append(Persist(self.term, self.voted_for, entries=(entry,)))
        self._logger.info("bootstrapped servers=%d", len(configuration.servers))
        self._finish(now)

    def propose(self, data: bytes, now: float) -> int:
        """Append a command; returns its index (committed later, maybe never).

        Raises:
            NotLeader: not the leader, or a leadership transfer is in flight.
        """
        return self.propose_many([data], now)[0]

    def propose_many(self, commands: list[bytes], now: float) -> list[int]:
        """Append several commands as one batch: one ``Persist``, one message per peer.

        Returns their indexes, in order. Raises ``NotLeader`` like ``propose``.
        """
        assert commands, "propose_many needs at least one command"
        self._require_leader()
        self._now = now
        first = self.raft_log.last_index + 1
        entries = [Entry(first + i, self.term, EntryKind.COMMAND, data)
                   for i, data in enumerate(commands)]
        self._append_local(entries, now)
        self._finish(now)
        return [entry.index for entry in entries]

    def add_voter(self, id: str, address: str, now: float) -> int:
        """Add (or promote) a voting server; returns the configuration entry's index."""
        return self._change_configuration(
            lambda c: c.with_server(Server(id, address, Suffrage.VOTER)), now)

    def add_nonvoter(self, id: str, address: str, now: float) -> int:
        """Add a non-voting server (an existing server keeps its suffrage)."""
        def change(c: Configuration) -> Configuration:
            old = c.get(id)
            return c.with_server(Server(id, address, old.suffrage if old else Suffrage.NONVOTER))
        return self._change_configuration(change, now)

    def promote(self, id: str, now: float) -> int:
        """Make a known server a voter."""
        def change(c: Configuration) -> Configuration:
            old = self._known(c, id)
            return c.with_server(Server(id, old.address, Suffrage.VOTER))
        return self._change_configuration(change, now)

    def remove_server(self, id: str, now: float) -> int:
        """Remove a known server (ourselves included: we step down once it commits)."""
        def change(c: Configuration) -> Configuration:
            self._known(c, id)
            return c.without(id)
        return self._change_configuration(change, now)

    def rename_server(self, old_id: str, new_id: str, now: float) -> int:
        """Give a server a new id, same address and suffrage (raft protocol 2 -> 3)."""
        def change(c: Configuration) -> Configuration:
            old = self._known(c, old_id)
            if new_id != old_id and c.get(new_id) is not None:
                raise RaftError(f"server id {new_id} is already in the configuration")
            return c.without(old_id).with_server(Server(new_id, old.address, old.suffrage))
        return self._change_configuration(change, now)

    def transfer_leadership(self, target_id: str | None, now: float) -> None:
        """Hand leadership to ``target_id`` (None: the most up-to-date other voter).

        Raises:
            NotLeader: not the leader (or a transfer is already in flight).
            UnknownServer: ``target_id`` is not another voter.
            RaftError: there is no other voter to pick.
        """
        self._require_leader()
        self._now = now
        me = self._my_id(self.configuration)
        voters = [v for v in self.configuration.voters() if v != me and v in self._peers]
        if target_id is None:
            if not voters:
                raise RaftError("no other voter to transfer leadership to")
            target_id = max(voters, key=lambda v: (self._peers[v].match_index, v))
        elif target_id not in voters:
            raise UnknownServer(f"{target_id} is not another voter")
        self._transfer = (target_id, now + self.config.election)
        self._transfer_sent = False
        self._count("transfers_started")
        self._logger.info("leadership transfer started target=%s", target_id)
        self._maybe_send_timeout_now(target_id, now)
        if not self._transfer_sent:
            self._send_append(target_id, now)
        self._finish(now)

    def compact(self, index: int, data: bytes, now: float) -> None:
        """Take ``data``, the state machine at applied ``index``, as the new snapshot.

        Keeps ``trailing_logs`` entries before ``index``. An index at or below the
        current snapshot is ignored (a late answer to an old ``SnapshotWanted``).

        Raises:
            RaftError: ``index`` is beyond what was applied.
        """
        if index > self.applied_index:
            raise RaftError(f"cannot compact at {index}: applied only {self.applied_index}")
        self._now = now
        self._snapshot_wanted = False
        if index <= self.raft_log.snapshot_index or self.role is Role.SHUTDOWN:
            return
        term = self.raft_log.term_at(index)
        assert term is not None
        configuration_index, configuration = self._configuration_at(index)
        snapshot = Snapshot(index, term, configuration, configuration_index, data)
        self.raft_log.compact(index, term, keep_from=index - self.config.trailing_logs + 1)
        self.snapshot = snapshot
        self._configurations = ([(configuration_index, configuration)]
                                + [c for c in self._configurations if c[0] > index])
        self._outputs.append(Persist(self.term, self.voted_for, snapshot=snapshot,
                                     log_start=self.raft_log.start))
        self._count("snapshots_taken")
        self._logger.info("snapshot taken index=%d term=%d", index, term)
        self._finish(now)

    def shutdown(self) -> None:
        """Stop for good: role SHUTDOWN, every later input ignored, no more outputs."""
        if self.role is not Role.SHUTDOWN:
            self._logger.info("raft shut down term=%d", self.term)
        self.role = Role.SHUTDOWN
        self._peers = {}
        self._election_deadline = None

    # ------------------------------------------------------------------ dispatch

    def _check_term(self, msg: Message, now: float) -> bool:
        """Apply the term rules common to every message; False when it is dealt with."""
        if msg.term > self.term:
            if isinstance(msg, RequestVote):
                return True  # the vote handler decides (stickiness, pre-vote keep our term)
            if isinstance(msg, RequestVoteResponse) and msg.pre_vote and msg.granted:
                return True  # granted pre-votes carry the term we would move to
            leader = isinstance(msg, (AppendEntries, InstallSnapshot, TimeoutNow))
            self._logger.info("newer term seen term=%d from=%s", msg.term, msg.source_id)
            self._become_follower(msg.term, msg.source_id if leader else None,
                                  msg.source_address if leader else None, now)
            return True
        if msg.term == self.term:
            return True
        # A message from an older term.
        common = dict(term=self.term, source_id=self._self_id, source_address=self.address)
        if isinstance(msg, RequestVote):
            self._count("votes_refused")
            self._reply(msg, RequestVoteResponse(granted=False, pre_vote=msg.pre_vote, **common))
        elif isinstance(msg, AppendEntries):
            self._count("stale_term_answered")
            self._reply(msg, AppendEntriesResponse(success=False,
                                                   last_log_index=self.raft_log.last_index,
                                                   **common))
        elif isinstance(msg, InstallSnapshot):
            self._count("stale_term_answered")
            self._reply(msg, InstallSnapshotResponse(success=False, last_index=0, **common))
        else:
            self._drop("stale_term")
        return False

    def _on_timeout_now(self, msg: TimeoutNow, now: float) -> None:
        """Leadership transfer: campaign at once, skipping pre-vote and stickiness."""
        if self.role is Role.LEADER or not self._is_voter():
            self._drop("timeout_now_ignored")
            return
        self._logger.info("timeout now received from=%s term=%d", msg.source_id, self.term)
        self._become_candidate(now, transfer=True)

    _HANDLERS = {
        RequestVote: ElectionMixin._on_request_vote,
        RequestVoteResponse: ElectionMixin._on_vote_response,
        AppendEntries: ReplicationMixin._on_append_entries,
        AppendEntriesResponse: ReplicationMixin._on_append_response,
        InstallSnapshot: ReplicationMixin._on_install_snapshot,
        InstallSnapshotResponse: ReplicationMixin._on_snapshot_response,
        TimeoutNow: _on_timeout_now,
    }

    # ------------------------------------------------------------------ roles

    def _become_follower(self, term: int, leader_id: str | None, leader_address: str | None,
                         now: float) -> None:
        """Follow ``leader_id`` (or nobody yet) in ``term``; a newer term clears the vote."""
        if term > self.term:
            self.term = term
            self.voted_for = None
            self._persist_hard_state()
        was = self.role
        self.role = Role.FOLLOWER
        self.leader_id, self.leader_address = leader_id, leader_address
        if leader_id is not None:
            self.last_contact = now
        self._pre_votes = None
        self._votes = {}
        self._peers = {}
        self._lease_deadline = None
        self._transfer = None
        self._reset_election_timer(now, candidate=False)
        if was is not Role.FOLLOWER:
            self._logger.info("became follower term=%d leader=%s was=%s", term, leader_id, was)

    def _leader_timers(self, now: float) -> None:
        """Heartbeats and retries per peer, transfer expiry, lease check."""
        for peer_id in sorted(self._peers):
            if self._peers[peer_id].next_heartbeat <= now:
                self._send_append(peer_id, now)
        if self._transfer is not None and now >= self._transfer[1]:
            self._logger.info("leadership transfer timed out target=%s", self._transfer[0])
            self._count("transfers_timed_out")
            self._transfer = None
        if self._lease_deadline is not None and now >= self._lease_deadline:
            self._check_lease(now)

    def _check_lease(self, now: float) -> None:
        """Step down unless a quorum of voters (us included) was heard within the lease.

        The next check is due when the quorum-th freshest contact turns ``lease`` old.
        """
        lease = self.config.lease
        me = self._my_id(self.configuration)
        voters = self.configuration.voters()
        if not voters:
            self._lease_deadline = now + lease
            return
        contacts = []
        for voter in voters:
            progress = self._peers.get(voter)
            if voter == me:
                contacts.append(now)
            elif progress is not None and progress.last_contact is not None:
                contacts.append(progress.last_contact)
        contacts.sort(reverse=True)
        quorum = len(voters) // 2 + 1
        # Compare as c + lease <= now, the same sum as the deadline (no float gap).
        if len(contacts) < quorum or contacts[quorum - 1] + lease <= now:
            self._count("stepped_down_lease")
            self._logger.info("stepping down: lease lost term=%d fresh=%d voters=%d", self.term,
                              sum(1 for c in contacts if now - c < lease), len(voters))
            self._become_follower(self.term, None, None, now)
            return
        self._lease_deadline = contacts[quorum - 1] + lease

    def _reset_election_timer(self, now: float, *, candidate: bool) -> None:
        """Random timeout: follower in [heartbeat, 2*heartbeat), candidate [election, 2*election)."""
        base = self.config.election if candidate else self.config.heartbeat
        self._election_deadline = now + base + self._rng.random() * base

    def _require_leader(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id, self.leader_address)
        if self._transfer is not None:
            raise NotLeader(None, None)

    # ------------------------------------------------------------------ log & configuration

    def _append_local(self, entries: list[Entry], now: float) -> None:
        """Leader: append our own entries, persist, pipeline them, maybe commit."""
        first = entries[0].index
        self.raft_log.append(entries)
        self._outputs.append(Persist(self.term, self.voted_for, entries=tuple(entries)))
        changed = False
        for entry in entries:
            if entry.kind == EntryKind.CONFIGURATION:
                self._configurations.append((entry.index, Configuration.decode(entry.data)))
                changed = True
        if changed:
            self._sync_peers(now)
        self._replicate_new(first, now)
        self._maybe_commit(now)

    def _change_configuration(self, change, now: float) -> int:
        """One membership change at a time, as a CONFIGURATION entry (thesis 4.1)."""
        self._require_leader()
        if self.configuration_index > self.commit_index:
            raise ConfigChangeInProgress("a configuration change is not committed yet")
        if self.raft_log.term_at(self.commit_index) != self.term:
            raise ConfigChangeInProgress("the leader has not committed an entry of its term yet")
        new = change(self.configuration)
        if not new.voters():
            raise RaftError("cannot remove the last voter")
        if new == self.configuration:
            return self.configuration_index
        self._now = now
        index = self.raft_log.last_index + 1
        self._logger.info("configuration change index=%d servers=%s", index, new.describe())
        self._append_local([Entry(index, self.term, EntryKind.CONFIGURATION, new.encode())], now)
        self._finish(now)
        return index

    @staticmethod
    def _known(configuration: Configuration, server_id: str) -> Server:
        server = configuration.get(server_id)
        if server is None:
            raise UnknownServer(f"server {server_id} is not in the configuration")
        return server

    def _configuration_at(self, index: int) -> tuple[int, Configuration]:
        for entry in reversed(self._configurations):
            if entry[0] <= index:
                return entry
        return self._configurations[0]

    def _rollback_configurations(self, truncated_from: int) -> None:
        """A suffix from ``truncated_from`` was cut: forget the configurations in it."""
        kept = [c for c in self._configurations if c[0] < truncated_from]
        self._configurations = kept or self._configurations[:1]

    # ------------------------------------------------------------------ identity

    def _my_id(self, configuration: Configuration) -> str | None:
        """The id ``configuration`` knows us by: server_id or an alias; None if absent."""
        if configuration.get(self.server_id) is not None:
            return self.server_id
        for alias in self.aliases:
            if configuration.get(alias) is not None:
                return alias
        return None

    @property
    def _self_id(self) -> str:
        """The id we speak under: the latest configuration's name for us."""
        return self._my_id(self.configuration) or self.server_id

    def _is_voter(self) -> bool:
        me = self._my_id(self.configuration)
        server = self.configuration.get(me) if me is not None else None
        return server is not None and server.is_voter

    def _config_id_of(self, msg: Message, configuration: Configuration) -> str | None:
        """The sender's id in ``configuration``, by id or else by address."""
        if configuration.get(msg.source_id) is not None:
            return msg.source_id
        for server in configuration.servers:
            if server.address == msg.source_address:
                return server.id
        return None

    def _peer_id_of(self, msg: Message) -> str | None:
        if msg.source_id in self._peers:
            return msg.source_id
        for peer_id, progress in sorted(self._peers.items()):
            if progress.address == msg.source_address:
                return peer_id
        return None

    # ------------------------------------------------------------------ outputs

    def _send(self, to_id: str, to_address: str, message: Message) -> None:
        self._outputs.append(Send(to_id, to_address, message))

    def _reply(self, msg: Message, answer: Message) -> None:
        self._send(msg.source_id, msg.source_address, answer)

    def _persist_hard_state(self) -> None:
        self._outputs.append(Persist(self.term, self.voted_for))

    def _count(self, name: str) -> None:
        self._counters[name] += 1

    def _drop(self, reason: str) -> None:
        self._counters[f"messages_dropped.{reason}"] += 1

    def _finish(self, now: float) -> None:
        """End of every input: apply, ask for a snapshot, report role changes."""
        if self.role is Role.LEADER:
            self.leader_id = self._self_id  # a rename of ourselves changes our id
        if self.commit_index > self.applied_index:
            entries = self.raft_log.slice(self.applied_index + 1, self.commit_index + 1)
            self.applied_index = self.commit_index
            self._outputs.append(Apply(entries))
        if (not self._snapshot_wanted and self.applied_index - self.raft_log.snapshot_index
                >= self.config.snapshot_threshold):
            self._snapshot_wanted = True
            self._outputs.append(SnapshotWanted(self.applied_index))
        reported = (self.role, self.term, self.leader_id, self.leader_address)
        if reported != self._reported and self.role is not Role.SHUTDOWN:
            self._reported = reported
            self._outputs.append(RoleChanged(*reported))
