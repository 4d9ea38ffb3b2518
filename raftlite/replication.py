"""Log replication and snapshots for ``RaftCore`` (Raft paper sections 5.3, 5.4, 7).

Theory of operation. This mixin holds no state of its own beyond ``Progress``, the
leader's view of one peer; it reads and writes ``RaftCore``'s fields.

Leader side. Each peer has a ``Progress``. A peer starts **probing**: one
AppendEntries from ``next_index`` at a time, resent every heartbeat until answered.
The first success switches it to **replicating**: new entries are sent as soon as
they are appended, ``next_index`` advancing optimistically (pipelining), at most
``max_append_entries`` per message. A rejection carries the follower's hint
(``conflict_term``, ``conflict_index``); the leader jumps ``next_index`` past a
whole conflicting term in one round trip and goes back to probing. Whenever the
entry before ``next_index`` has been compacted, the peer gets the latest snapshot in
one ``InstallSnapshot`` instead. Heartbeats go to each peer every ``heartbeat/10``,
and within ``commit_timeout`` of the commit index moving. The commit index moves
only to an entry of the leader's own term stored by a majority of the latest
configuration's voters (figure 8: earlier terms commit indirectly).

Follower side. AppendEntries is accepted when our log holds ``prev_log_index`` with
``prev_log_term``; the first conflicting entry and all after it are cut (never a
committed one), the rest appended, and the answer (sent in the batch that persists
the entries) names the last index known to match. On a mismatch the answer carries
the conflict hint. Entries at or before our snapshot point are committed and match
by definition. An InstallSnapshot replaces the state machine (``Restore``) and keeps
our entries after the snapshot point if our log agrees at that point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .events import Persist, Restore
from .messages import (AppendEntries, AppendEntriesResponse, InstallSnapshot,
                       InstallSnapshotResponse, TimeoutNow)
from .types import Configuration, Entry, EntryKind, Role

if TYPE_CHECKING:
    from .core import RaftCore


@dataclass(slots=True)
class Progress:
    """What the leader knows of one peer's log."""

    address: str
    next_index: int                    # next entry to send
    match_index: int = 0               # highest entry known stored on the peer
    last_contact: float | None = None  # last response from the peer
    next_heartbeat: float = 0.0        # send (heartbeat or retry) at this time
    probing: bool = True               # one message in flight until an answer
    snapshot_until: float | None = None  # InstallSnapshot in flight, no resend before


class ReplicationMixin:
    """Replication half of ``RaftCore``."""

    # ------------------------------------------------------------------ leader: peers

    def _sync_peers(self: "RaftCore", now: float) -> None:
        """Track every server of the latest and the committed configuration but us.

        A removed server keeps being replicated to until its removal commits, so it
        most likely learns it was removed and stops campaigning.
        """
        wanted: dict[str, str] = {}
        for configuration in (self.committed_configuration, self.configuration):
            mine = self._my_id(configuration)
            for server in configuration.servers:
                if server.id != mine:
                    wanted[server.id] = server.address
        for peer_id in list(self._peers):
            if peer_id not in wanted:
                del self._peers[peer_id]
        for peer_id, address in sorted(wanted.items()):
            progress = self._peers.get(peer_id)
            if progress is None:
                self._peers[peer_id] = Progress(address=address,
                                                next_index=self.raft_log.last_index + 1,
                                                last_contact=now, next_heartbeat=now)
            else:
                progress.address = address

    def _send_append(self: "RaftCore", peer_id: str, now: float) -> None:
        """Send the peer what it lacks from ``next_index`` (maybe nothing: a heartbeat)."""
        progress = self._peers[peer_id]
        if progress.snapshot_until is not None and now < progress.snapshot_until:
            progress.next_heartbeat = progress.snapshot_until
            return
        progress.snapshot_until = None
        progress.next_heartbeat = now + self._heartbeat_interval
        prev = progress.next_index - 1
        prev_term = self.raft_log.term_at(prev)
        if prev_term is None:
            self._send_snapshot(peer_id, progress, now)
            return
        high = min(self.raft_log.last_index + 1,
                   progress.next_index + self.config.max_append_entries)
        entries = self.raft_log.slice(progress.next_index, high)
        self._send(peer_id, progress.address, AppendEntries(
            term=self.term, source_id=self._self_id, source_address=self.address,
            prev_log_index=prev, prev_log_term=prev_term, entries=entries,
            leader_commit=self.commit_index))
        if entries and not progress.probing:
            progress.next_index = entries[-1].index + 1

    def _send_snapshot(self: "RaftCore", peer_id: str, progress: Progress, now: float) -> None:
        """The peer needs compacted entries: send the whole latest snapshot."""
        assert self.snapshot is not None, "entries compacted without a snapshot"
        self._count("snapshots_sent")
        self._logger.info("sending snapshot peer=%s index=%d", peer_id, self.snapshot.index)
        self._send(peer_id, progress.address, InstallSnapshot(
            term=self.term, source_id=self._self_id, source_address=self.address,
            snapshot=self.snapshot))
        progress.snapshot_until = now + self.config.heartbeat / 2
        progress.next_heartbeat = progress.snapshot_until

    def _replicate_new(self: "RaftCore", first_index: int, now: float) -> None:
        """Pipeline freshly appended entries to every peer that had everything before."""
        for peer_id in sorted(self._peers):
            progress = self._peers[peer_id]
            if not progress.probing and progress.next_index == first_index:
                # a batch longer than max_append_entries goes out as several messages
                while progress.next_index <= self.raft_log.last_index:
                    before = progress.next_index
                    self._send_append(peer_id, now)
                    if progress.probing or progress.next_index == before:
                        break

    def _responding_peer(self: "RaftCore", msg: AppendEntriesResponse | InstallSnapshotResponse,
                         now: float) -> tuple[str, Progress] | None:
        """Leader: the peer a response comes from, its contact noted; None (counted) otherwise."""
        if self.role is not Role.LEADER:
            self._drop("not_leader")
            return None
        peer_id = self._peer_id_of(msg)
        if peer_id is None:
            self._drop("unknown_peer")
            return None
        progress = self._peers[peer_id]
        progress.last_contact = now
        return peer_id, progress

    def _on_append_response(self: "RaftCore", msg: AppendEntriesResponse, now: float) -> None:
        """Advance or back off one peer's progress."""
        found = self._responding_peer(msg, now)
        if found is None:
            return
        peer_id, progress = found
        if msg.success:
            self._on_append_success(peer_id, progress, msg.last_log_index, now)
            return
        self._count("append_rejections_received")
        hint = self._back_off_hint(msg)
        progress.next_index = max(progress.match_index + 1, min(progress.next_index, hint))
        progress.probing = True
        self._send_append(peer_id, now)

    def _on_append_success(self: "RaftCore", peer_id: str, progress: Progress,
                           match: int, now: float) -> None:
        if match > self.raft_log.last_index:
            self._drop("match_beyond_log")
            return
        progress.match_index = max(progress.match_index, match)
        progress.next_index = max(progress.next_index, progress.match_index + 1)
        progress.probing = False
        self._maybe_commit(now)
        if self.role is not Role.LEADER:
            return
        self._maybe_send_timeout_now(peer_id, now)
        if progress.next_index <= self.raft_log.last_index:
            self._send_append(peer_id, now)

    def _back_off_hint(self: "RaftCore", msg: AppendEntriesResponse) -> int:
        """Where to resume after a rejection (paper section 5.3, etcd's findConflictByTerm)."""
        if msg.conflict_term > 0:
            last = self.raft_log.last_index_of_term(msg.conflict_term)
            if last is not None:
                return last + 1
        if msg.conflict_index > 0:
            return msg.conflict_index
        return msg.last_log_index + 1

    def _maybe_commit(self: "RaftCore", now: float) -> None:
        """Commit the highest entry of our term stored on a majority of voters."""
        voters = self.configuration.voters()
        if not voters:
            return
        me = self._my_id(self.configuration)
        matches = sorted((self.raft_log.last_index if voter == me
                          else self._peers[voter].match_index if voter in self._peers else 0)
                         for voter in voters)
        candidate = matches[(len(matches) - 1) // 2]
        if candidate <= self.commit_index or self.raft_log.term_at(candidate) != self.term:
            return
        self.commit_index = candidate
        deadline = now + self.config.commit_timeout
        for progress in self._peers.values():
            progress.next_heartbeat = min(progress.next_heartbeat, deadline)
        self._sync_peers(now)
        self._maybe_step_down_removed(now)

    def _maybe_step_down_removed(self: "RaftCore", now: float) -> None:
        """A leader no longer a voter in the committed configuration steps down (thesis 4.2.2)."""
        if self.configuration_index > self.commit_index:
            return
        me = self._my_id(self.committed_configuration)
        server = self.committed_configuration.get(me) if me is not None else None
        if server is not None and server.is_voter:
            return
        # Tell the others the commit index first, so they apply the change promptly.
        for peer_id in sorted(self._peers):
            self._send_append(peer_id, now)
        self._logger.info("stepping down: removed from configuration term=%d", self.term)
        self._become_follower(self.term, None, None, now)

    def _maybe_send_timeout_now(self: "RaftCore", peer_id: str, now: float) -> None:
        """Leadership transfer: once the target is caught up, tell it to campaign."""
        if self._transfer is None or self._transfer[0] != peer_id or self._transfer_sent:
            return
        progress = self._peers.get(peer_id)
        if progress is None or progress.match_index < self.raft_log.last_index:
            return
        self._transfer_sent = True
        self._logger.info("leadership transfer: timeout now target=%s", peer_id)
        self._send(peer_id, progress.address, TimeoutNow(
            term=self.term, source_id=self._self_id, source_address=self.address))

    # ------------------------------------------------------------------ follower

    def _on_append_entries(self: "RaftCore", msg: AppendEntries, now: float) -> None:
        """Follower: check the previous entry, cut conflicts, append, answer."""
        if not self._follow(msg, now):
            return
        if not self._well_formed(msg):
            self._drop("malformed")
            return
        log = self.raft_log
        prev, prev_term, entries = msg.prev_log_index, msg.prev_log_term, msg.entries
        last_new = prev + len(entries)
        if prev < log.snapshot_index:
            # Entries up to our snapshot are committed, hence equal to the leader's.
            entries = tuple(e for e in entries if e.index > log.snapshot_index)
            prev, prev_term = log.snapshot_index, log.snapshot_term
        if prev > log.last_index:
            self._reject_append(log.last_index + 1, 0)
            return
        term = log.term_at(prev)
        if term != prev_term:
            assert term is not None
            self._reject_append(log.first_index_of_term(prev), term)
            return
        if not self._store_entries(entries, now):
            return
        match = max(last_new, log.snapshot_index)
        self._advance_follower_commit(min(msg.leader_commit, match))
        self._reply(msg, AppendEntriesResponse(
            term=self.term, source_id=self._self_id, source_address=self.address,
            success=True, last_log_index=match))

    def _follow(self: "RaftCore", msg: AppendEntries | InstallSnapshot, now: float) -> bool:
        """A leader of our term spoke: follow it; False if we are a leader ourselves."""
        if self.role is Role.LEADER:
            self._logger.warning("second leader in term term=%d other=%s", self.term,
                                 msg.source_id)
            self._drop("second_leader")
            return False
        if (self.role is not Role.FOLLOWER or self.leader_id != msg.source_id
                or self._pre_votes is not None):
            self._become_follower(self.term, msg.source_id, msg.source_address, now)
        self.leader_address = msg.source_address
        self.last_contact = now
        self._reset_election_timer(now, candidate=False)
        return True

    @staticmethod
    def _well_formed(msg: AppendEntries) -> bool:
        """Entries must continue ``prev_log_index`` contiguously with sane terms."""
        if msg.prev_log_index < 0 or msg.leader_commit < 0:
            return False
        last_term = msg.prev_log_term
        for offset, entry in enumerate(msg.entries):
            if entry.index != msg.prev_log_index + 1 + offset:
                return False
            if entry.term < last_term or entry.term > msg.term:
                return False
            last_term = entry.term
        return True

    def _reject_append(self: "RaftCore", conflict_index: int, conflict_term: int) -> None:
        self._count("append_rejected")
        assert self.leader_id is not None and self.leader_address is not None
        self._send(self.leader_id, self.leader_address, AppendEntriesResponse(
            term=self.term, source_id=self._self_id, source_address=self.address,
            success=False, last_log_index=self.raft_log.last_index,
            conflict_index=conflict_index, conflict_term=conflict_term))

    def _store_entries(self: "RaftCore", entries: Sequence[Entry], now: float) -> bool:
        """Cut the first conflict and what follows, append the rest; False if refused."""
        log = self.raft_log
        conflict = log.find_conflict(entries)
        if conflict is None:
            return True
        if conflict <= self.commit_index:
            self._logger.error("leader contradicts a committed entry index=%d commit=%d",
                               conflict, self.commit_index)
            self._drop("conflict_below_commit")
            return False
        new = tuple(e for e in entries if e.index >= conflict)
        configurations = self._decode_configurations(new)
        if configurations is None:
            return False
        truncate = conflict if conflict <= log.last_index else None
        if truncate is not None:
            log.truncate_from(truncate)
            self._rollback_configurations(truncate)
        log.append(new)
        self._outputs.append(Persist(self.term, self.voted_for, truncate_from=truncate,
                                     entries=new))
        self._configurations.extend(configurations)
        return True

    def _decode_configurations(self: "RaftCore", entries: Sequence[Entry]
                               ) -> list[tuple[int, Configuration]] | None:
        """Configurations carried by ``entries``; None (and a drop) if one is malformed."""
        found = []
        for entry in entries:
            if entry.kind == EntryKind.CONFIGURATION:
                try:
                    found.append((entry.index, Configuration.decode(entry.data)))
                except ValueError as exc:
                    self._logger.warning("bad configuration entry index=%d error=%s",
                                         entry.index, exc)
                    self._drop("bad_configuration")
                    return None
        return found

    def _advance_follower_commit(self: "RaftCore", commit: int) -> None:
        if commit > self.commit_index:
            self.commit_index = min(commit, self.raft_log.last_index)

    # ------------------------------------------------------------------ snapshots

    def _on_install_snapshot(self: "RaftCore", msg: InstallSnapshot, now: float) -> None:
        """Follower: replace our state with the leader's snapshot (paper section 7)."""
        if not self._follow(msg, now):
            return
        snapshot = msg.snapshot
        log = self.raft_log
        if snapshot.index > self.commit_index:
            keep = snapshot.index <= log.last_index and log.matches(snapshot.index, snapshot.term)
            log.compact(snapshot.index, snapshot.term, keep_from=snapshot.index + 1)
            self._outputs.append(Persist(
                self.term, self.voted_for, snapshot=snapshot, log_start=snapshot.index + 1,
                truncate_from=None if keep else snapshot.index + 1))
            self.snapshot = snapshot
            kept = self._decode_configurations(
                [e for e in log.entries() if e.index > snapshot.index]) or []
            self._configurations = [(snapshot.configuration_index, snapshot.configuration)]
            self._configurations.extend(kept)
            self.commit_index = snapshot.index
            self.applied_index = snapshot.index
            self._snapshot_wanted = False
            self._outputs.append(Restore(snapshot))
            self._count("snapshots_installed")
            self._logger.info("snapshot installed index=%d term=%d kept_entries=%s",
                              snapshot.index, snapshot.term, keep)
        self._reply(msg, InstallSnapshotResponse(
            term=self.term, source_id=self._self_id, source_address=self.address,
            success=True, last_index=snapshot.index))

    def _on_snapshot_response(self: "RaftCore", msg: InstallSnapshotResponse,
                              now: float) -> None:
        """Leader: the peer installed (or refused) our snapshot."""
        found = self._responding_peer(msg, now)
        if found is None:
            return
        peer_id, progress = found
        progress.snapshot_until = None
        # the snapshot's resend deadline held heartbeats back; resume the normal rhythm
        progress.next_heartbeat = min(progress.next_heartbeat, now + self._heartbeat_interval)
        if msg.success:
            self._on_append_success(peer_id, progress, msg.last_index, now)
        else:
            progress.probing = True
            self._send_append(peer_id, now)
