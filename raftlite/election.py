"""Elections for ``RaftCore``: pre-vote, RequestVote, becoming candidate and leader.

Theory of operation (Raft paper section 5.2, Ongaro's thesis sections 3.10, 4.2.3, 9.6).
This mixin holds no state of its own; it reads and writes ``RaftCore``'s fields.

* A follower (or a candidate whose election timed out) whose timer fires runs a
  **pre-vote** round: ``RequestVote(pre_vote=True, term=term+1)`` to every other voter,
  without changing its own term or vote. Its role does not change for a pre-vote
  (etcd raft calls this state PreCandidate; shoal keeps the role it had).
* A voter grants a pre-vote when the candidate's log is at least as up to date as
  its own and it has not heard from a leader within a heartbeat timeout (**leader
  stickiness**). The same stickiness refuses real votes, unless the request carries
  ``leadership_transfer`` (sent after ``TimeoutNow``). A server partitioned away
  thus cannot depose a healthy leader when it returns: its pre-votes are refused and
  its term never rose.
* A majority of pre-votes (counting only voters of our latest configuration, itself
  included) starts the real election: term+1, vote for self, persist, RequestVote.
  A majority of votes makes a leader, which appends a NOOP (section 5.4.2, 8).
* Non-voters and servers removed from (or not yet in) the configuration never campaign.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .messages import RequestVote, RequestVoteResponse
from .types import Entry, EntryKind, Role

if TYPE_CHECKING:
    from .core import RaftCore


class ElectionMixin:
    """Election half of ``RaftCore``."""

    # ------------------------------------------------------------------ timer

    def _on_election_timer(self: "RaftCore", now: float) -> None:
        """The follower or candidate timer fired: forget the leader, maybe pre-vote."""
        if self.leader_id is not None:
            self._logger.info("leader lost term=%d leader=%s", self.term, self.leader_id)
        self.leader_id = self.leader_address = None
        if not self._is_voter():
            # Non-voters and removed servers never campaign; they wait to be contacted.
            self._reset_election_timer(now, candidate=False)
            return
        self._start_pre_vote(now)

    def _start_pre_vote(self: "RaftCore", now: float) -> None:
        """Ask the other voters whether they would vote for us at term+1 (thesis 9.6)."""
        me = self._self_id
        self._pre_votes = {me: True}
        self._votes = {}
        self._count("pre_votes_started")
        self._logger.info("pre-vote started term=%d next_term=%d", self.term, self.term + 1)
        self._reset_election_timer(now, candidate=True)
        for server in self.configuration.servers:
            if server.is_voter and server.id != me:
                self._send(server.id, server.address, RequestVote(
                    term=self.term + 1, source_id=me, source_address=self.address,
                    last_log_index=self.raft_log.last_index,
                    last_log_term=self.raft_log.last_term, pre_vote=True))
        if self._has_quorum(self._pre_votes):
            self._become_candidate(now, transfer=False)

    def _become_candidate(self: "RaftCore", now: float, *, transfer: bool) -> None:
        """Start a real election: term+1, vote for self, persist, ask every voter."""
        me = self._self_id
        self.role = Role.CANDIDATE
        self.term += 1
        self.voted_for = me
        self.leader_id = self.leader_address = None
        self._persist_hard_state()
        self._pre_votes = None
        self._votes = {me: True}
        self._peers = {}
        self._count("elections_started")
        self._logger.info("became candidate term=%d transfer=%s", self.term, transfer)
        self._reset_election_timer(now, candidate=True)
        for server in self.configuration.servers:
            if server.is_voter and server.id != me:
                self._send(server.id, server.address, RequestVote(
                    term=self.term, source_id=me, source_address=self.address,
                    last_log_index=self.raft_log.last_index,
                    last_log_term=self.raft_log.last_term, pre_vote=False,
                    leadership_transfer=transfer))
        if self._has_quorum(self._votes):
            self._become_leader(now)

    def _become_leader(self: "RaftCore", now: float) -> None:
        """Won the election: start replicating and append a NOOP of our term."""
        self.role = Role.LEADER
        self.leader_id, self.leader_address = self._self_id, self.address
        self._pre_votes = None
        self._votes = {}
        self._election_deadline = None
        self._transfer = None
        self._peers = {}
        self._sync_peers(now)
        self._lease_deadline = now + self.config.lease
        self._count("leader_elected")
        self._logger.info("became leader term=%d last_index=%d", self.term,
                          self.raft_log.last_index)
        noop = Entry(self.raft_log.last_index + 1, self.term, EntryKind.NOOP, b"")
        self._append_local([noop], now)
        for peer_id in sorted(self._peers):
            self._send_append(peer_id, now)

    def _has_quorum(self: "RaftCore", ballots: dict[str, bool]) -> bool:
        """True when a majority of the latest configuration's voters said yes."""
        voters = self.configuration.voters()
        if not voters:
            return False
        yes = sum(1 for v in voters if ballots.get(v))
        return yes > len(voters) // 2

    # ------------------------------------------------------------------ voter side

    def _heard_from_leader(self: "RaftCore", now: float) -> bool:
        """Leader stickiness: a leader exists as far as we know (thesis 4.2.3)."""
        if self.role is Role.LEADER:
            return True
        return (self.leader_id is not None and self.last_contact is not None
                and now - self.last_contact < self.config.heartbeat)

    def _on_request_vote(self: "RaftCore", msg: RequestVote, now: float) -> None:
        """Answer a (pre-)vote request; term checks of lower terms were done by the caller."""
        if self._heard_from_leader(now) and not msg.leadership_transfer:
            if self._config_id_of(msg, self.configuration) is None:
                self._count("votes_refused_unknown")
            else:
                self._count("votes_refused")
            self._logger.debug("vote refused (leader is alive) candidate=%s term=%d",
                               msg.source_id, msg.term)
            self._answer_vote(msg, granted=False, term=self.term)
            return
        up_to_date = self.raft_log.is_up_to_date(msg.last_log_index, msg.last_log_term)
        if msg.pre_vote:
            # a pre-vote for a later term, or for our term when we could still vote for them
            # (etcd's rule): granting it where the real vote would fail only wastes a term
            granted = up_to_date and (msg.term > self.term or (
                msg.term == self.term and self.voted_for in (None, msg.source_id)))
            self._count("votes_granted" if granted else "votes_refused")
            self._answer_vote(msg, granted=granted, term=msg.term if granted else self.term)
            return
        if msg.term > self.term:
            self._become_follower(msg.term, None, None, now)
        granted = up_to_date and self.voted_for in (None, msg.source_id)
        if granted:
            self.voted_for = msg.source_id
            self._persist_hard_state()
            self._reset_election_timer(now, candidate=False)
            self._count("votes_granted")
            self._logger.info("vote granted candidate=%s term=%d", msg.source_id, self.term)
        else:
            self._count("votes_refused")
        self._answer_vote(msg, granted=granted, term=self.term)

    def _answer_vote(self: "RaftCore", msg: RequestVote, *, granted: bool, term: int) -> None:
        self._reply(msg, RequestVoteResponse(term=term, source_id=self._self_id,
                                             source_address=self.address, granted=granted,
                                             pre_vote=msg.pre_vote))

    # ------------------------------------------------------------------ candidate side

    def _on_vote_response(self: "RaftCore", msg: RequestVoteResponse, now: float) -> None:
        """Count a (pre-)vote; a majority moves us on."""
        voter = self._config_id_of(msg, self.configuration)
        if voter is None:
            self._drop("unknown_voter")
            return
        if msg.pre_vote:
            if self._pre_votes is None or msg.term != self.term + 1 or self.role is Role.LEADER:
                self._drop("stale_vote")
                return
            self._pre_votes[voter] = msg.granted
            if self._has_quorum(self._pre_votes):
                self._become_candidate(now, transfer=False)
            return
        if self.role is not Role.CANDIDATE or msg.term != self.term:
            self._drop("stale_vote")
            return
        self._votes[voter] = msg.granted
        if self._has_quorum(self._votes):
            self._become_leader(now)
