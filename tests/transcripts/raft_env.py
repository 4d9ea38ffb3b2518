"""An interaction environment that drives ``RaftCore``s for transcript tests.

Modelled on etcd raft's ``rafttest/interaction_env_handler.go``: a scenario is a list
of commands; each command prints what the cores did, and the printout is compared with
the expected trace in the ``.txt`` file. Everything is deterministic: server ``sN`` has
id ``sN``, address ``127.0.0.1:N``, its own virtual clock (starting at 0) and an rng
seeded with ``transcript/sN/<restart count>``; messages wait in one FIFO queue until a
command delivers or drops them.

Each server's outputs are performed the way the driver contract says (Persist to a
private in-memory disk, Send into the queue, Apply to a list that is the state
machine) and printed in the order the core emitted them. After every step the
environment checks Raft's safety properties and prints a ``!! `` line on a violation:
one leader per term, log matching between disks, committed entries never change
(state machine safety) and every new leader holds every committed entry (leader
completeness). A ``!!`` line in an expected trace is a bug, never an expectation.

Commands (``ids`` are server ids such as ``s1``; ``[...]`` is optional):

    add-servers N [max-append-entries=1] [snapshot-threshold=4] [...]   RaftConfig fields
    bootstrap ids...              every named server bootstraps with them as voters
    tick ids... SECONDS           advance the clocks, then handle_timers on each
    campaign id                   jump the clock to the election deadline(s) until it asks for votes
    stabilize [ids...]            deliver queued messages among the servers until quiet
    deliver-msgs id [type=T] [from=id]    deliver what is queued for id now
    drop-msgs [id] [type=T] [from=id]     drop what is queued for id (or anyone) now
    partition ids... | ids... [| ...]     cut links between groups (unlisted: cut from all)
    heal
    propose id DATA / add-voter id new / add-nonvoter id new / promote id target
    remove id target / transfer id [target] / compact id
    crash id / restart id
    status / raft-state / log id / fsm / config / msgs
"""

from __future__ import annotations

import json
import logging
import random
import shlex
from dataclasses import dataclass, field, fields

from raftlite.config import RaftConfig
from raftlite.errors import RaftError
from raftlite.events import Apply, Output, Persist, Restore, RoleChanged, Send, SnapshotWanted
from raftlite.messages import (AppendEntries, AppendEntriesResponse, InstallSnapshot,
                               InstallSnapshotResponse, Message, RequestVote,
                               RequestVoteResponse, TimeoutNow)
from raftlite.types import (Configuration, Entry, EntryKind, PersistentState, Role, Server,
                            Snapshot)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- formatting

def fmt_data(data: bytes) -> str:
    return json.dumps(data.decode("utf-8", "backslashreplace"))


def fmt_conf(configuration: Configuration) -> str:
    names = [s.id if s.is_voter else f"{s.id}:{s.suffrage.value}" for s in configuration.servers]
    return "[" + " ".join(names) + "]"


def fmt_entry(entry: Entry) -> str:
    head = f"{entry.index}/{entry.term}"
    if entry.kind == EntryKind.NOOP:
        return f"{head} noop"
    if entry.kind == EntryKind.CONFIGURATION:
        try:
            return f"{head} conf{fmt_conf(Configuration.decode(entry.data))}"
        except ValueError:
            return f"{head} conf(undecodable)"
    return f"{head} {fmt_data(entry.data)}"


def fmt_snapshot(snapshot: Snapshot | None) -> str:
    if snapshot is None:
        return "none"
    return (f"{snapshot.index}/{snapshot.term} conf{fmt_conf(snapshot.configuration)}"
            f"@{snapshot.configuration_index} data={fmt_data(snapshot.data)}")


def fmt_message(m: Message) -> str:
    """One line per message; fields that are default or zero are left out."""
    name = type(m).__name__
    if isinstance(m, RequestVote):
        flags = (" pre-vote" if m.pre_vote else "") + (" transfer" if m.leadership_transfer else "")
        return f"{name} term={m.term} last={m.last_log_index}/{m.last_log_term}{flags}"
    if isinstance(m, RequestVoteResponse):
        verdict = "granted" if m.granted else "rejected"
        return f"{name} term={m.term} {verdict}" + (" pre-vote" if m.pre_vote else "")
    if isinstance(m, AppendEntries):
        entries = ", ".join(fmt_entry(e) for e in m.entries)
        return (f"{name} term={m.term} prev={m.prev_log_index}/{m.prev_log_term} "
                f"entries=[{entries}] commit={m.leader_commit}")
    if isinstance(m, AppendEntriesResponse):
        if m.success:
            return f"{name} term={m.term} success last={m.last_log_index}"
        return (f"{name} term={m.term} reject last={m.last_log_index} "
                f"conflict_index={m.conflict_index} conflict_term={m.conflict_term}")
    if isinstance(m, InstallSnapshot):
        return f"{name} term={m.term} snapshot={fmt_snapshot(m.snapshot)}"
    if isinstance(m, InstallSnapshotResponse):
        verdict = "success" if m.success else "rejected"
        return f"{name} term={m.term} {verdict} last={m.last_index}"
    assert isinstance(m, TimeoutNow), m
    return f"{name} term={m.term}"


def fmt_persist(p: Persist) -> str:
    parts = [f"term={p.term}", f"vote={p.voted_for or 'none'}"]
    if p.snapshot is not None:
        parts.append(f"snapshot={p.snapshot.index}/{p.snapshot.term}")
    if p.log_start is not None:
        parts.append(f"log_start={p.log_start}")
    if p.truncate_from is not None:
        parts.append(f"truncate_from={p.truncate_from}")
    if p.entries:
        parts.append("entries=[" + ", ".join(fmt_entry(e) for e in p.entries) + "]")
    return "persist " + " ".join(parts)


# ---------------------------------------------------------------- the disk

@dataclass
class Disk:
    """A server's durable state, built only by applying its ``Persist`` outputs."""

    term: int = 0
    vote: str | None = None
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def apply(self, p: Persist) -> list[str]:
        """Apply one Persist in the documented field order; return problems found."""
        problems = []
        if p.snapshot is not None:
            self.snapshot = p.snapshot
        if p.log_start is not None:
            self.entries = [e for e in self.entries if e.index >= p.log_start]
        if p.truncate_from is not None:
            self.entries = [e for e in self.entries if e.index < p.truncate_from]
        for entry in p.entries:
            if entry.index != self.last_index() + 1:
                problems.append(f"persist appends {entry.index} after last index {self.last_index()}")
            self.entries.append(entry)
        if p.term < self.term:
            problems.append(f"persisted term falls from {self.term} to {p.term}")
        if p.term == self.term and self.vote is not None and p.voted_for != self.vote:
            problems.append(f"vote changed within term {p.term}: {self.vote} -> {p.voted_for}")
        self.term, self.vote = p.term, p.voted_for
        return problems

    def last_index(self) -> int:
        if self.entries:
            return self.entries[-1].index
        return self.snapshot.index if self.snapshot else 0

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; None when compacted away or absent."""
        if self.snapshot is not None and index == self.snapshot.index:
            return self.snapshot.term
        for entry in self.entries:
            if entry.index == index:
                return entry.term
        return None

    def state(self) -> PersistentState:
        return PersistentState(term=self.term, voted_for=self.vote, snapshot=self.snapshot,
                               entries=tuple(self.entries))


@dataclass
class Node:
    """One server: its disk outlives crashes; its core and state machine do not."""

    id: str
    address: str
    disk: Disk = field(default_factory=Disk)
    clock: float = 0.0
    core: object | None = None      # RaftCore; typed loosely so this module imports without it
    fsm: list[str] = field(default_factory=list)
    restarts: int = 0
    commit_seen: int = 0            # highest commit index recorded into RaftEnv.committed


# ---------------------------------------------------------------- the environment

class RaftEnv:
    """N RaftCores, a message queue, and the commands of a transcript."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.config = RaftConfig()
        self.queue: list[tuple[str, Send]] = []           # (from id, send), FIFO
        self.groups: list[set[str]] | None = None           # partition, or None when healed
        self.leaders: dict[int, str] = {}                   # term -> leader id (election safety)
        self.committed: dict[int, tuple[int, str]] = {}     # index -> (term, entry text)
        self.out: list[str] = []
        self.sends = 0                                       # Send outputs seen, dropped or not

    # -- plumbing

    def run(self, line: str) -> str:
        """Run one command line; return its printout (never empty, no blank lines)."""
        self.out = []
        words = shlex.split(line)
        handler = getattr(self, "cmd_" + words[0].replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"unknown command {words[0]!r}")
        handler(words[1:])
        text = "\n".join(line if line.strip() else "." for line in self.out)
        return text or "ok"

    def node(self, server_id: str) -> Node:
        if server_id not in self.nodes:
            raise ValueError(f"no server {server_id!r}")
        return self.nodes[server_id]

    def core(self, server_id: str):
        node = self.node(server_id)
        if node.core is None:
            raise ValueError(f"{server_id} is down")
        return node.core

    def linked(self, a: str, b: str) -> bool:
        if self.groups is None:
            return True
        return any(a in g and b in g for g in self.groups)

    def call(self, server_id: str, what: str, fn, *args) -> object:
        """Call a core API, print what it returned or raised, then its outputs."""
        core = self.core(server_id)
        try:
            result = fn(core, *args)
        except RaftError as exc:
            self.out.append(f"{server_id} {what}: {type(exc).__name__}: {exc}")
            result = None
        else:
            self.out.append(f"{server_id} {what}" + ("" if result is None else f" -> {result}"))
        self.drain(server_id)
        return result

    def drain(self, server_id: str, indent: str = "") -> None:
        """Perform and print everything the core queued, then check the invariants."""
        node = self.node(server_id)
        if node.core is None:
            return
        for output in node.core.take_outputs():
            self.perform(node, output, indent)
        self.check(node, indent)

    def perform(self, node: Node, output: Output, indent: str) -> None:
        say = lambda text: self.out.append(f"{indent}{node.id} {text}")  # noqa: E731
        if isinstance(output, Persist):
            say(fmt_persist(output))
            for problem in node.disk.apply(output):
                self.out.append(f"{indent}!! {node.id} {problem}")
        elif isinstance(output, Send):
            self.enqueue(node, output, indent)
        elif isinstance(output, Apply):
            for entry in output.entries:
                say(f"applied {fmt_entry(entry)}")
                if entry.kind == EntryKind.COMMAND:
                    node.fsm.append(entry.data.decode("utf-8", "backslashreplace"))
        elif isinstance(output, Restore):
            say(f"restored snapshot {fmt_snapshot(output.snapshot)}")
            data = output.snapshot.data.decode()
            node.fsm = data.split(",") if data else []
        elif isinstance(output, RoleChanged):
            say(f"became {output.role.value} term={output.term} leader={output.leader_id or 'none'}")
            if output.role == Role.LEADER:
                self.note_leader(node, output.term, indent)
        elif isinstance(output, SnapshotWanted):
            say(f"snapshot wanted applied={output.applied_index}")
        else:
            raise AssertionError(f"unknown output {output!r}")

    def enqueue(self, node: Node, send: Send, indent: str) -> None:
        m = send.message
        self.sends += 1
        line = f"{indent}{node.id}->{send.to_id} {fmt_message(m)}"
        if m.source_id != node.id or m.source_address != node.address:
            self.out.append(f"{indent}!! {node.id} sent as {m.source_id}/{m.source_address}")
        target = self.nodes.get(send.to_id)
        if target is None or target.address != send.to_address:
            self.out.append(f"{line} (dropped: unknown {send.to_id}@{send.to_address})")
        elif target.core is None:
            self.out.append(f"{line} (dropped: {send.to_id} down)")
        elif not self.linked(node.id, send.to_id):
            self.out.append(f"{line} (dropped: partition)")
        else:
            self.out.append(line)
            self.queue.append((node.id, send))

    def deliver(self, source: str, send: Send) -> None:
        target = self.node(send.to_id)
        self.out.append(f"{send.to_id} <- {source} {fmt_message(send.message)}")
        if target.core is None:
            self.out.append(f"  (dropped: {send.to_id} down)")
            return
        target.core.receive(send.message, target.clock)
        self.drain(send.to_id, indent="  ")

    # -- safety checks (Raft paper figure 3)

    def note_leader(self, node: Node, term: int, indent: str) -> None:
        other = self.leaders.setdefault(term, node.id)
        if other != node.id:
            self.out.append(f"{indent}!! two leaders in term {term}: {other} and {node.id}")
        for index, (entry_term, text) in sorted(self.committed.items()):
            below_snapshot = node.disk.snapshot is not None and index < node.disk.snapshot.index
            if not below_snapshot and node.disk.term_at(index) != entry_term:
                self.out.append(f"{indent}!! leader {node.id} lacks committed entry {text}")

    def check(self, node: Node, indent: str) -> None:
        """Record newly committed entries; flag a change to a committed entry."""
        core = node.core
        for index in range(node.commit_seen + 1, core.commit_index + 1):
            entry = next((e for e in node.disk.entries if e.index == index), None)
            if entry is None:
                snapshot = node.disk.snapshot
                if snapshot is None or index > snapshot.index:
                    self.out.append(f"{indent}!! {node.id} commit index {index} beyond its log")
                continue                      # inside a snapshot: was checked when committed
            known = self.committed.setdefault(index, (entry.term, fmt_entry(entry)))
            if known[0] != entry.term:
                self.out.append(f"{indent}!! {node.id} commits {fmt_entry(entry)} "
                                f"but {known[1]} was committed")
        node.commit_seen = max(node.commit_seen, core.commit_index)
        self.check_log_matching(node, indent)

    def check_log_matching(self, node: Node, indent: str) -> None:
        mine = {e.index: e for e in node.disk.entries}
        for other in self.nodes.values():
            if other is node:
                continue
            theirs = {e.index: e for e in other.disk.entries}
            common = sorted(set(mine) & set(theirs), reverse=True)
            top = next((i for i in common if mine[i].term == theirs[i].term), None)
            if top is None:
                continue
            for index in common:
                if index <= top and mine[index] != theirs[index]:
                    self.out.append(f"{indent}!! logs of {node.id} and {other.id} match at "
                                    f"{top}/{mine[top].term} but differ at {index}")
                    return

    # -- commands: setup

    def cmd_add_servers(self, args: list[str]) -> None:
        count, options = int(args[0]), dict(a.split("=", 1) for a in args[1:])
        known = {f.name: f.type for f in fields(RaftConfig)}
        overrides = {}
        for key, value in options.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ValueError(f"unknown option {key}")
            overrides[name] = float(value) if "." in value else int(value)
        if overrides:
            self.config = RaftConfig(**overrides)
        for _ in range(count):
            n = len(self.nodes) + 1
            node = Node(id=f"s{n}", address=f"127.0.0.1:{n}")
            self.nodes[node.id] = node
            self.start(node)

    def start(self, node: Node) -> None:
        from raftlite.core import RaftCore  # imported late: the core may not exist yet
        rng = random.Random(f"transcript/{node.id}/{node.restarts}")
        adapter = logging.LoggerAdapter(log, {"node": node.id})
        node.core = RaftCore(self.config, server_id=node.id, address=node.address,
                             state=node.disk.state(), rng=rng, log=adapter, now=node.clock)
        node.fsm = []
        node.commit_seen = 0
        self.drain(node.id)

    def cmd_bootstrap(self, args: list[str]) -> None:
        conf = Configuration(tuple(Server(i, self.node(i).address) for i in args))
        for server_id in args:
            self.call(server_id, "bootstrap", lambda c: c.bootstrap(conf, self.node(server_id).clock))

    def cmd_crash(self, args: list[str]) -> None:
        for server_id in args:
            node = self.node(server_id)
            node.core, node.fsm = None, []
            self.out.append(f"{server_id} crashed")
            for source, send in [q for q in self.queue if q[1].to_id == server_id]:
                self.queue.remove((source, send))
                self.out.append(f"{source}->{server_id} {fmt_message(send.message)} (dropped: {server_id} down)")

    def cmd_restart(self, args: list[str]) -> None:
        for server_id in args:
            node = self.node(server_id)
            assert node.core is None, f"{server_id} is running"
            node.restarts += 1
            disk = node.disk
            self.out.append(f"{server_id} restarted term={disk.term} vote={disk.vote or 'none'} "
                            f"snapshot={fmt_snapshot(disk.snapshot)} last={disk.last_index()}")
            self.start(node)

    # -- commands: time

    def cmd_tick(self, args: list[str]) -> None:
        seconds = float(args[-1])
        for server_id in args[:-1]:
            node = self.node(server_id)
            node.clock += seconds
            self.core(server_id).handle_timers(node.clock)
            self.drain(server_id)

    def cmd_campaign(self, args: list[str]) -> None:
        node = self.node(args[0])
        core = self.core(args[0])
        if core.role == Role.LEADER:
            raise ValueError(f"{node.id} is the leader")
        for _ in range(20):
            deadline = core.next_deadline()
            if deadline is None:
                raise ValueError(f"{node.id} has no deadline")
            node.clock = max(node.clock, deadline)
            core.handle_timers(node.clock)
            sends = self.sends
            self.drain(node.id)
            if self.sends > sends or core.role != Role.FOLLOWER:
                return
        raise ValueError(f"{node.id} did not campaign")

    # -- commands: network

    def pick(self, args: list[str]) -> list[tuple[str, Send]]:
        """Messages queued now for args[0] (all when no id), filtered by type= and from=."""
        target = args[0] if args and "=" not in args[0] else None
        options = dict(a.split("=", 1) for a in args if "=" in a)
        return [(s, m) for s, m in self.queue if target in (None, m.to_id)
                and options.get("type", type(m.message).__name__) == type(m.message).__name__
                and options.get("from", s) == s]

    def cmd_deliver_msgs(self, args: list[str]) -> None:
        for item in self.pick(args):
            self.queue.remove(item)
            self.deliver(*item)

    def cmd_drop_msgs(self, args: list[str]) -> None:
        for source, send in self.pick(args):
            self.queue.remove((source, send))
            self.out.append(f"dropped {source}->{send.to_id} {fmt_message(send.message)}")

    def cmd_stabilize(self, args: list[str]) -> None:
        among = set(args) if args else set(self.nodes)
        while True:
            item = next((q for q in self.queue if q[0] in among and q[1].to_id in among), None)
            if item is None:
                return
            self.queue.remove(item)
            self.deliver(*item)

    def cmd_partition(self, args: list[str]) -> None:
        groups, current = [], set()
        for word in args + ["|"]:
            if word == "|":
                groups.append(current)
                current = set()
            else:
                current.add(self.node(word).id)
        self.groups = groups
        for source, send in list(self.queue):
            if not self.linked(source, send.to_id):
                self.queue.remove((source, send))
                self.out.append(f"dropped {source}->{send.to_id} {fmt_message(send.message)}")

    def cmd_heal(self, args: list[str]) -> None:
        self.groups = None

    def cmd_msgs(self, args: list[str]) -> None:
        for source, send in self.queue:
            self.out.append(f"{source}->{send.to_id} {fmt_message(send.message)}")

    # -- commands: client and operator calls

    def cmd_propose(self, args: list[str]) -> None:
        node = self.node(args[0])
        self.call(node.id, f"propose {fmt_data(args[1].encode())}",
                  lambda c: c.propose(args[1].encode(), node.clock))

    def cmd_add_voter(self, args: list[str]) -> None:
        leader, new = self.node(args[0]), self.node(args[1])
        self.call(leader.id, f"add-voter {new.id}", lambda c: c.add_voter(new.id, new.address, leader.clock))

    def cmd_add_nonvoter(self, args: list[str]) -> None:
        leader, new = self.node(args[0]), self.node(args[1])
        self.call(leader.id, f"add-nonvoter {new.id}",
                  lambda c: c.add_nonvoter(new.id, new.address, leader.clock))

    def cmd_promote(self, args: list[str]) -> None:
        leader = self.node(args[0])
        self.call(leader.id, f"promote {args[1]}", lambda c: c.promote(args[1], leader.clock))

    def cmd_remove(self, args: list[str]) -> None:
        leader = self.node(args[0])
        self.call(leader.id, f"remove {args[1]}", lambda c: c.remove_server(args[1], leader.clock))

    def cmd_transfer(self, args: list[str]) -> None:
        leader = self.node(args[0])
        target = args[1] if len(args) > 1 else None
        self.call(leader.id, f"transfer {target or 'any'}",
                  lambda c: c.transfer_leadership(target, leader.clock))

    def cmd_compact(self, args: list[str]) -> None:
        node = self.node(args[0])
        index = self.core(node.id).applied_index
        data = ",".join(node.fsm).encode()
        self.call(node.id, f"compact at {index}", lambda c: c.compact(index, data, node.clock))

    # -- commands: views

    def cmd_status(self, args: list[str]) -> None:
        for node in self.nodes.values():
            c = node.core
            if c is None:
                self.out.append(f"{node.id} down")
                continue
            self.out.append(f"{node.id} {c.role.value} term={c.term} leader={c.leader_id or 'none'} "
                            f"commit={c.commit_index} applied={c.applied_index} "
                            f"last={c.last_index}/{c.last_term}")

    def cmd_raft_state(self, args: list[str]) -> None:
        for node in self.nodes.values():
            c = node.core
            self.out.append(f"{node.id}: " + ("down" if c is None else f"{c.role.value} term={c.term}"))

    def cmd_config(self, args: list[str]) -> None:
        for node in self.nodes.values():
            c = node.core
            if c is not None:
                self.out.append(f"{node.id} latest={fmt_conf(c.configuration)}@{c.configuration_index} "
                                f"committed={fmt_conf(c.committed_configuration)}")

    def cmd_log(self, args: list[str]) -> None:
        for server_id in args or list(self.nodes):
            disk = self.node(server_id).disk
            entries = " ".join(f"[{fmt_entry(e)}]" for e in disk.entries)
            self.out.append(f"{server_id} term={disk.term} vote={disk.vote or 'none'} "
                            f"snapshot={fmt_snapshot(disk.snapshot)}")
            self.out.append(f"  {entries or '(no entries)'}")

    def cmd_fsm(self, args: list[str]) -> None:
        for node in self.nodes.values():
            state = "down" if node.core is None else json.dumps(node.fsm)
            self.out.append(f"{node.id} {state}")
