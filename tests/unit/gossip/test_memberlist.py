"""Unit tests of the memberlist core: several cores on a list-based fake network.

No sockets and no sleeps: ``Cluster`` delivers ``SendPacket`` to the destination
core's ``receive_packet`` and pipes ``OpenStream``/``WriteStream``/``CloseStream``
between ``accept_stream`` and ``stream_data``; time advances by jumping to the
earliest ``next_deadline`` of all cores.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import pytest

from gossip import wire
from gossip.config import GossipConfig
from gossip.events import CloseStream, JoinFinished, OpenStream, SendPacket, WriteStream
from gossip.keyring import Keyring
from gossip.memberlist import Memberlist
from gossip.messages import (Ack, Alive, Dead, ErrResp, MessageType, NodeState, Ping, PushPull,
                             Suspect)
from gossip.stats import Counters
from gossip.suspicion import remaining_suspicion_time
from gossip.types import NodeView, ip_to_bytes

PORT = 7946


class FakeDelegate:
    """Records what memberlist tells the layer above; serves queued Serf messages."""

    def __init__(self, name: str) -> None:
        self.meta = b"meta-" + name.encode()
        self.events: list[tuple[str, str, NodeState, float]] = []
        self.user_msgs: list[tuple[bytes, tuple[str, int]]] = []
        self.serf_queue: list[bytes] = []
        self.merged: list[tuple[bytes, bool]] = []
        self.conflicts: list[tuple[NodeView, NodeView]] = []

    def node_meta(self, limit: int) -> bytes:
        return self.meta[:limit]

    def notify_user_msg(self, payload, source, now):
        self.user_msgs.append((payload, source))

    def has_broadcasts(self):
        return bool(self.serf_queue)

    def get_broadcasts(self, overhead, limit):
        out, used = [], 0
        while self.serf_queue and used + overhead + len(self.serf_queue[0]) <= limit:
            item = self.serf_queue.pop(0)
            used += overhead + len(item)
            out.append(item)
        return out

    def local_state(self, join):
        return b"\x02state"

    def merge_remote_state(self, buf, join, now):
        self.merged.append((buf, join))

    def notify_join(self, node, now):
        self.events.append(("join", node.name, node.state, now))

    def notify_leave(self, node, now):
        self.events.append(("leave", node.name, node.state, now))

    def notify_update(self, node, now):
        self.events.append(("update", node.name, node.state, now))

    def notify_conflict(self, existing, other, now):
        self.conflicts.append((existing, other))

    def ack_payload(self):
        return b"coord"


@dataclass
class Node:
    name: str
    address: tuple[str, int]
    core: Memberlist
    delegate: FakeDelegate
    counters: Counters
    outputs: list = field(default_factory=list)  # every output this core produced


class Cluster:
    """Memberlist cores joined by a lossless in-memory network with cuttable links."""

    def __init__(self, config: GossipConfig | None = None, seed: int = 1) -> None:
        self.config = config or GossipConfig.lan()
        self.seed = seed
        self.now = 0.0
        self.nodes: dict[str, Node] = {}
        self.blocked: set[tuple[str, str]] = set()  # (from, to) names whose traffic is lost
        self.udp_blocked: set[tuple[str, str]] = set()  # (from, to) names whose datagrams are lost
        self._pipes: dict[tuple[str, int], tuple[str, int]] = {}
        self._next_ephemeral = 40000
        self.trace: list[str] = []

    def add(self, name: str, index: int, keyring: Keyring | None = None) -> Node:
        address = (f"127.0.0.{index}", PORT)
        delegate = FakeDelegate(name)
        counters = Counters()
        log = logging.LoggerAdapter(logging.getLogger(f"test.{name}"), {})
        core = Memberlist(self.config, name=name, addr=address[0], port=PORT, delegate=delegate,
                          keyring=keyring, rng=random.Random(f"{self.seed}/{name}"), log=log,
                          counters=counters, now=self.now)
        node = Node(name, address, core, delegate, counters)
        self.nodes[name] = node
        return node

    def remove(self, name: str) -> None:
        del self.nodes[name]

    def silence(self, name: str) -> None:
        """Lose all traffic to and from ``name`` (a paused process)."""
        for other in self.nodes:
            self.blocked |= {(name, other), (other, name)}

    def by_address(self, address) -> Node | None:
        return next((n for n in self.nodes.values() if n.address == address), None)

    def pump(self) -> None:
        """Deliver outputs until every core is quiet."""
        busy = True
        while busy:
            busy = False
            for node in list(self.nodes.values()):
                outputs = node.core.take_outputs()
                node.outputs += outputs
                for output in outputs:
                    busy = True
                    self._route(node, output)

    def _route(self, node: Node, output) -> None:
        if isinstance(output, SendPacket):
            dest = self.by_address(output.dest)
            link = (node.name, dest.name) if dest is not None else None
            if dest is not None and link not in self.blocked and link not in self.udp_blocked:
                dest.core.receive_packet(output.data, node.address, self.now)
        elif isinstance(output, OpenStream):
            dest = self.by_address(output.dest)
            if dest is None:
                node.core.stream_failed(output.stream_id, "connect: connection refused", self.now)
                return
            if (node.name, dest.name) in self.blocked:
                return  # connected to a silent peer: the stream times out
            self._next_ephemeral += 1
            remote_id = dest.core.accept_stream((node.address[0], self._next_ephemeral), self.now)
            self._pipes[(node.name, output.stream_id)] = (dest.name, remote_id)
            self._pipes[(dest.name, remote_id)] = (node.name, output.stream_id)
            dest.core.stream_data(remote_id, output.data, self.now)
        elif isinstance(output, WriteStream):
            peer = self._pipes.get((node.name, output.stream_id))
            if peer is not None and peer[0] in self.nodes:
                self.nodes[peer[0]].core.stream_data(peer[1], output.data, self.now)
        elif isinstance(output, CloseStream):
            peer = self._pipes.pop((node.name, output.stream_id), None)
            if peer is not None and peer[0] in self.nodes:
                self._pipes.pop(peer, None)
                self.nodes[peer[0]].core.stream_closed(peer[1], self.now)

    def run_until(self, end: float, watch=None) -> None:
        """Advance time to ``end``, firing every timer on the way; ``watch()`` after each step."""
        self.pump()
        while True:
            deadline = min(n.core.next_deadline() for n in self.nodes.values())
            if deadline > end:
                break
            self.now = max(self.now, deadline)
            for node in list(self.nodes.values()):
                node.core.handle_timers(self.now)
            self.pump()
            if watch is not None:
                watch()
        self.now = end

    def view(self, observer: str, subject: str) -> NodeView | None:
        return self.nodes[observer].core.node(subject)

    def states(self, observer: str) -> dict[str, NodeState]:
        return {v.name: v.state for v in self.nodes[observer].core.nodes()}


def joined_cluster(names=("n1", "n2", "n3"), config=None, seed=1, keyring=None) -> Cluster:
    """A cluster whose members all joined the first one, then gossiped for 2 s."""
    cluster = Cluster(config, seed)
    for index, name in enumerate(names, start=1):
        cluster.add(name, index, keyring)
    first = cluster.nodes[names[0]]
    for name in names[1:]:
        cluster.nodes[name].core.join([first.address], cluster.now)
        cluster.pump()
    cluster.run_until(2.0)
    return cluster


def joins_finished(node: Node) -> list[JoinFinished]:
    return [o for o in node.outputs if isinstance(o, JoinFinished)]


# ---------------------------------------------------------------------------- join


def test_join_exchanges_state_and_notifies_both_sides():
    """A push/pull join makes both nodes list each other alive and tells both delegates."""
    cluster = Cluster()
    n1, n2 = cluster.add("n1", 1), cluster.add("n2", 2)
    join_id = n2.core.join([n1.address], 0.0)
    cluster.pump()
    assert joins_finished(n2) == [JoinFinished(join_id, 1, ())]
    assert cluster.states("n1") == {"n1": NodeState.ALIVE, "n2": NodeState.ALIVE}
    assert cluster.states("n2") == {"n1": NodeState.ALIVE, "n2": NodeState.ALIVE}
    assert ("join", "n2", NodeState.ALIVE, 0.0) in n1.delegate.events
    assert ("join", "n1", NodeState.ALIVE, 0.0) in n2.delegate.events
    # Both sides hand Serf the peer's user state; the listener echoes Join=true.
    assert n1.delegate.merged == [(b"\x02state", True)]
    assert n2.delegate.merged == [(b"\x02state", True)]
    assert cluster.view("n2", "n1").meta == b"meta-n1"


def test_third_node_learns_everyone_by_gossip():
    """Joining through one member spreads to all members by gossip and push/pull."""
    cluster = joined_cluster(("n1", "n2", "n3", "n4"))
    for name in cluster.nodes:
        assert set(cluster.states(name).values()) == {NodeState.ALIVE}
        assert len(cluster.states(name)) == 4


def test_join_failure_reports_one_error_per_seed():
    """A refused seed and a silent one each give a Go-worded error; a good one still counts."""
    cluster = Cluster()
    n1, n2, n3 = cluster.add("n1", 1), cluster.add("n2", 2), cluster.add("n3", 3)
    cluster.silence("n3")
    join_id = n2.core.join([("127.0.0.9", PORT), n1.address, n3.address], 0.0)
    cluster.pump()
    assert joins_finished(n2) == []  # the silent seed is still pending
    cluster.run_until(cluster.config.tcp_timeout + 0.001)
    assert joins_finished(n2) == [JoinFinished(join_id, 1, (
        "Failed to join 127.0.0.9:7946: connect: connection refused",
        "Failed to join 127.0.0.3:7946: i/o timeout",
    ))]
    assert n2.counters.get("dropped.stream_timeout") == 1


def test_join_with_no_seeds_finishes_at_once():
    """An empty seed list finishes immediately with nothing joined."""
    cluster = Cluster()
    n1 = cluster.add("n1", 1)
    join_id = n1.core.join([], 0.0)
    assert n1.core.take_outputs() == [JoinFinished(join_id, 0, ())]


# ---------------------------------------------------------------------------- probes


def test_probes_are_acked_and_keep_everyone_healthy():
    """Over 20 s every node probes its peers, gets acks, and nobody is suspected."""
    cluster = joined_cluster()
    cluster.run_until(20.0)
    for node in cluster.nodes.values():
        assert node.counters.get("probes") >= 15
        assert node.counters.get("probe_failures") == 0
        assert node.counters.get("received.ack") >= 15
        assert node.core.health_score == 0
        assert set(cluster.states(node.name).values()) == {NodeState.ALIVE}


def test_ping_is_answered_with_ack_payload_to_source_fields():
    """A ping is acked to SourceAddr:SourcePort with the delegate's payload."""
    cluster = Cluster()
    n1 = cluster.add("n1", 1)
    ping = Ping(77, "n1", ip_to_bytes("127.0.0.5"), 9000, "other")
    n1.core.receive_packet(wire.encode(ping), ("127.0.0.6", 1234), 0.0)
    sends = [o for o in n1.core.take_outputs() if isinstance(o, SendPacket)]
    assert len(sends) == 1 and sends[0].dest == ("127.0.0.5", 9000)
    messages = wire.decode_packet(sends[0].data).messages
    assert messages[0] == Ack(77, b"coord")
    # Our own alive rides along as a piggybacked broadcast.
    assert any(isinstance(m, Alive) and m.node == "n1" for m in messages[1:])


def test_ping_for_another_name_is_dropped():
    """A ping naming another node is counted as wrong_node and not answered."""
    cluster = Cluster()
    n1 = cluster.add("n1", 1)
    n1.core.receive_packet(wire.encode(Ping(1, "someone-else")), ("127.0.0.6", PORT), 0.0)
    assert n1.core.take_outputs() == []
    assert n1.counters.get("dropped.wrong_node") == 1


# ---------------------------------------------------------------------------- failure


def _track(cluster: Cluster, subject: str, table: dict):
    """A watch() that records when each node first saw ``subject`` suspect and dead."""
    def watch():
        for name in cluster.nodes:
            view = cluster.view(name, subject)
            if view is None or name == subject:
                continue
            times = table.setdefault(name, {})
            if view.state in (NodeState.SUSPECT, NodeState.DEAD):
                times.setdefault(view.state, view.state_change)
    return watch


def test_silenced_node_is_suspected_then_dead_after_the_formula_timeout():
    """3 LAN nodes: k = 0, so the first dead declaration comes exactly 4.0 s after its suspect."""
    cluster = joined_cluster()
    cluster.silence("n3")
    start = cluster.now
    table: dict = {}
    cluster.run_until(start + 20.0, _track(cluster, "n3", table))
    for name in ("n1", "n2"):
        assert cluster.view(name, "n3").state == NodeState.DEAD
        assert ("leave", "n3", NodeState.DEAD) in [e[:3] for e in cluster.nodes[name].delegate.events]
    first = min(("n1", "n2"), key=lambda name: table[name][NodeState.DEAD])
    assert cluster.config.suspicion_timeouts(3) == (4.0, 24.0)
    assert table[first][NodeState.DEAD] - table[first][NodeState.SUSPECT] == pytest.approx(4.0)
    assert sum(cluster.nodes[n].counters.get("probe_failures") for n in ("n1", "n2")) >= 1
    assert sum(cluster.nodes[n].counters.get("suspects") for n in ("n1", "n2")) == 2


def test_confirmations_shorten_the_suspicion_of_a_five_node_cluster():
    """5 nodes: k = 2; the first dead declaration lands on the Lifeguard deadline for its confirmations."""
    names = ("n1", "n2", "n3", "n4", "n5")
    cluster = joined_cluster(names)
    cluster.silence("n5")
    start = cluster.now
    table: dict = {}
    cluster.run_until(start + 40.0, _track(cluster, "n5", table))
    assert all(NodeState.DEAD in table[n] for n in names[:4])
    minimum, maximum = cluster.config.suspicion_timeouts(5)
    earliest = min(table[name][NodeState.DEAD] for name in names[:4])
    # Several nodes may see the death at the same instant; the one whose own timer
    # fired waited one of the three Lifeguard steps (0, 1 or 2 confirmations).
    waits = [table[n][NodeState.DEAD] - table[n][NodeState.SUSPECT]
             for n in names[:4] if table[n][NodeState.DEAD] == earliest]
    steps = [remaining_suspicion_time(c, 2, 0.0, minimum, maximum) for c in (0, 1, 2)]
    assert steps == [maximum, 11.381, 4.0]
    matching = [w for w in waits if min(abs(w - step) for step in steps) < 1e-6]
    assert matching, (waits, steps)
    assert max(matching) < maximum  # other nodes' suspicions confirmed it


def test_indirect_probe_through_a_relay_prevents_suspicion():
    """With only the n1<->n3 link cut, n2 relays n1's probes of n3 and nobody suspects n3."""
    cluster = joined_cluster()
    cluster.blocked |= {("n1", "n3"), ("n3", "n1")}
    cluster.run_until(cluster.now + 15.0)
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    assert n2.counters.get("indirect_relays") >= 1
    assert n1.counters.get("probe_failures") == 0
    assert cluster.view("n1", "n3").state == NodeState.ALIVE


def test_tcp_fallback_ping_saves_a_node_that_udp_cannot_reach():
    """UDP lost both ways between two nodes, TCP fine: stream pings keep the probe successful."""
    cluster = joined_cluster(("n1", "n2"))
    cluster.udp_blocked |= {("n1", "n2"), ("n2", "n1")}
    cluster.run_until(cluster.now + 10.0)
    n1 = cluster.nodes["n1"]
    assert n1.counters.get("probes") >= 5
    assert n1.counters.get("probe_failures") == 0
    assert n1.counters.get("received.ack") >= 5  # acks read from the fallback streams
    assert cluster.states("n1") == {"n1": NodeState.ALIVE, "n2": NodeState.ALIVE}


def test_dead_node_is_forgotten_after_gossip_to_the_dead_time():
    """A dead node stays listed for gossip_to_the_dead_time, then goes at the next probe-list wrap."""
    cluster = joined_cluster()
    cluster.silence("n3")
    cluster.run_until(cluster.now + 20.0)
    dead_since = cluster.view("n1", "n3").state_change
    assert cluster.view("n1", "n3").state == NodeState.DEAD
    cluster.run_until(dead_since + cluster.config.gossip_to_the_dead_time - 0.01)
    assert cluster.view("n1", "n3") is not None
    cluster.run_until(dead_since + cluster.config.gossip_to_the_dead_time + 5.0)
    assert cluster.view("n1", "n3") is None
    assert cluster.nodes["n1"].core.num_nodes() == 2


def test_relay_sends_nack_and_requester_health_counts_it():
    """A silent target: the relay nacks, so the requester's failed probe costs it no health."""
    # probe_timeout 0.3 s: the relay's nack (sent 0.3 s after the indirect ping)
    # arrives well before the requester's probe ends at 1.0 s.
    cluster = joined_cluster(config=GossipConfig.lan(probe_timeout=0.3))
    cluster.silence("n3")
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    health_after_failure = []

    def watch():
        if n1.counters.get("probe_failures") == 1 and not health_after_failure:
            health_after_failure.append(n1.core.health_score)
    cluster.run_until(cluster.now + 5.0, watch)
    assert n2.counters.get("nacks_sent") + n1.counters.get("nacks_sent") >= 1
    assert n1.counters.get("received.nack") + n2.counters.get("received.nack") >= 1
    assert health_after_failure == [0]


def test_failed_probe_without_nacking_relays_raises_health_and_stretches_the_interval():
    """Alone with a silent peer, a failed probe adds 1 to health and doubles the next probe period."""
    cluster = joined_cluster(("n1", "n2"))
    cluster.silence("n2")
    n1 = cluster.nodes["n1"]
    cluster.run_until(cluster.now + 1.6)
    assert n1.counters.get("probe_failures") == 1
    assert n1.core.health_score == 1
    assert n1.counters.get("dropped.stream_timeout") == 1  # the TCP fallback ping got nothing
    # The next probe may take probe_interval * (health + 1) = 2 s before it gives up.
    cluster.run_until(cluster.now + 1.0)
    probe = n1.core._probe
    assert probe is not None
    assert probe.deadline - (probe.timeout_at - cluster.config.probe_timeout) == pytest.approx(2.0)


def test_probe_of_a_suspect_node_carries_the_suspicion_with_crc():
    """Probing a suspect target sends compound[ping, suspect] wrapped in a CRC (PMax 5)."""
    cluster = joined_cluster(("n1", "n2"))
    n1 = cluster.nodes["n1"]
    n1.core.receive_packet(wire.encode(Suspect(1, "n2", "n9")), ("127.0.0.9", PORT), cluster.now)
    assert cluster.view("n1", "n2").state == NodeState.SUSPECT
    n1.core.take_outputs()
    cluster.silence("n2")
    seen = len(n1.outputs)
    packets = []
    while not packets:
        cluster.run_until(cluster.now + 0.1)
        packets = [o for o in n1.outputs[seen:] if isinstance(o, SendPacket) and o.dest == ("127.0.0.2", PORT)
                   and any(isinstance(m, Ping) for m in wire.decode_packet(o.data).messages)]
    contents = wire.decode_packet(packets[0].data)
    assert contents.had_crc
    assert isinstance(contents.messages[0], Ping)
    assert contents.messages[1] == Suspect(1, "n2", "n1")


# ---------------------------------------------------------------------------- refute


def test_suspicion_about_ourselves_is_refuted_with_a_higher_incarnation():
    """n1 hears it is suspect: it bumps its incarnation, health +1, and peers see the new alive."""
    cluster = joined_cluster()
    n1 = cluster.nodes["n1"]
    n1.core.receive_packet(wire.encode(Suspect(1, "n1", "n2")), cluster.nodes["n2"].address,
                           cluster.now)
    assert n1.core.incarnation == 2
    assert n1.counters.get("refutes") == 1
    assert n1.core.health_score == 1
    assert cluster.view("n1", "n1").state == NodeState.ALIVE
    cluster.run_until(cluster.now + 2.0)
    for name in ("n2", "n3"):
        assert cluster.view(name, "n1").incarnation == 2
        assert cluster.view(name, "n1").state == NodeState.ALIVE


def test_dead_and_different_alive_about_ourselves_are_refuted():
    """A dead about us, then an alive about us with other meta, each force a higher incarnation."""
    cluster = Cluster()
    n1 = cluster.add("n1", 1)
    n1.core.receive_packet(wire.encode(Dead(5, "n1", "n2")), ("127.0.0.2", PORT), 0.0)
    assert n1.core.incarnation == 6
    alive = Alive(6, "n1", ip_to_bytes("127.0.0.1"), PORT, b"other", GossipConfig().vsn)
    n1.core.receive_packet(wire.encode(alive), ("127.0.0.2", PORT), 0.0)
    assert n1.core.incarnation == 7
    same = Alive(7, "n1", ip_to_bytes("127.0.0.1"), PORT, b"meta-n1", GossipConfig().vsn)
    n1.core.receive_packet(wire.encode(same), ("127.0.0.2", PORT), 0.0)
    assert n1.core.incarnation == 7
    assert n1.counters.get("refutes") == 2


def test_restarted_node_with_incarnation_1_comes_back_by_refuting():
    """A node restarted under the same name is listed dead by peers, refutes, and is alive again."""
    cluster = joined_cluster()
    cluster.silence("n3")
    cluster.run_until(cluster.now + 20.0)
    assert cluster.view("n1", "n3").state == NodeState.DEAD
    cluster.remove("n3")
    cluster.blocked.clear()
    n3 = cluster.add("n3", 3)
    assert n3.core.incarnation == 1
    n3.core.join([cluster.nodes["n1"].address], cluster.now)
    cluster.run_until(cluster.now + 3.0)
    assert n3.core.incarnation >= 2
    assert n3.counters.get("refutes") >= 1
    for name in ("n1", "n2"):
        view = cluster.view(name, "n3")
        assert view.state == NodeState.ALIVE and view.incarnation == n3.core.incarnation
        assert ("join", "n3", NodeState.ALIVE) in [e[:3] for e in cluster.nodes[name].delegate.events]


# ---------------------------------------------------------------------------- leave


def test_leave_makes_peers_list_the_node_left():
    """A graceful leave reaches every peer as state left, and the leaver knows it was sent."""
    cluster = joined_cluster()
    n1 = cluster.nodes["n1"]
    n1.core.leave(cluster.now)
    # The dead-about-self goes out at once in a gossip round (as Go's concurrent
    # gossip loop picks it up), not at the next tick.
    assert n1.core.leave_broadcast_sent()
    cluster.pump()  # deliver without advancing time: peers know at once
    assert {cluster.view(name, "n1").state for name in ("n2", "n3")} & {NodeState.LEFT}
    assert cluster.view("n1", "n1").state == NodeState.LEFT
    cluster.run_until(cluster.now + 1.0)
    for name in ("n2", "n3"):
        assert cluster.view(name, "n1").state == NodeState.LEFT
        assert ("leave", "n1", NodeState.LEFT) in [e[:3] for e in cluster.nodes[name].delegate.events]
    # While leaving, accusations are not refuted.
    n1.core.receive_packet(wire.encode(Suspect(1, "n1", "n2")), ("127.0.0.2", PORT), cluster.now)
    n1.core.receive_packet(wire.encode(Dead(1, "n1", "n2")), ("127.0.0.2", PORT), cluster.now)
    assert n1.counters.get("refutes") == 0
    cluster.run_until(cluster.now + 40.0)
    assert cluster.view("n2", "n1").state == NodeState.LEFT  # left is never forgotten nor probed


def test_leave_alone_counts_as_sent():
    """With no other live node there is nobody to tell: the leave is done at once."""
    cluster = Cluster()
    n1 = cluster.add("n1", 1)
    n1.core.leave(0.0)
    assert n1.core.leave_broadcast_sent()


# ---------------------------------------------------------------------------- alive rules


def test_alive_rules_update_conflict_and_bad_versions():
    """Meta change -> update; another address -> conflict; bad Vsn -> ignored; stale -> ignored."""
    cluster = joined_cluster(("n1", "n2"))
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    vsn = cluster.config.vsn
    n2.delegate.meta = b"new-meta"
    n2.core.update_node(cluster.now)
    cluster.run_until(cluster.now + 1.0)
    assert cluster.view("n1", "n2").meta == b"new-meta"
    assert ("update", "n2", NodeState.ALIVE) in [e[:3] for e in n1.delegate.events]
    before = n1.core.nodes()
    other = Alive(50, "n2", ip_to_bytes("127.0.0.99"), PORT, b"x", vsn)
    n1.core.receive_packet(wire.encode(other), ("127.0.0.99", PORT), cluster.now)
    assert [(e.name, o.addr) for e, o in n1.delegate.conflicts] == [("n2", "127.0.0.99")]
    bad = Alive(60, "n7", ip_to_bytes("127.0.0.7"), PORT, b"", bytes([0, 5, 2, 2, 5, 4]))
    n1.core.receive_packet(wire.encode(bad), ("127.0.0.7", PORT), cluster.now)
    stale = Alive(1, "n2", ip_to_bytes("127.0.0.2"), PORT, b"stale", vsn)
    n1.core.receive_packet(wire.encode(stale), ("127.0.0.2", PORT), cluster.now)
    assert n1.core.nodes() == before
    assert n1.counters.get("dropped.bad_vsn") == 1


def test_left_node_name_may_come_back_from_a_new_address():
    """A left record's name can be taken by another address: that is a join, not a conflict."""
    cluster = joined_cluster(("n1", "n2"))
    n1 = cluster.nodes["n1"]
    n1.core.receive_packet(wire.encode(Dead(1, "n2", "n2")), ("127.0.0.2", PORT), cluster.now)
    moved = Alive(2, "n2", ip_to_bytes("127.0.0.42"), PORT, b"m", cluster.config.vsn)
    n1.core.receive_packet(wire.encode(moved), ("127.0.0.42", PORT), cluster.now)
    view = cluster.view("n1", "n2")
    assert (view.addr, view.state) == ("127.0.0.42", NodeState.ALIVE)
    assert n1.delegate.conflicts == []


# ---------------------------------------------------------------------------- gossip


def test_serf_broadcasts_are_piggybacked_with_type_8():
    """Items from delegate.get_broadcasts travel as user messages and reach the peer's delegate."""
    cluster = joined_cluster(("n1", "n2"))
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    n1.delegate.serf_queue += [b"\x01serf-join", b"\x03event"]
    cluster.run_until(cluster.now + 0.5)
    assert [p for p, _ in n2.delegate.user_msgs] == [b"\x01serf-join", b"\x03event"]


def test_send_user_is_a_bare_type_8_datagram():
    """send_user emits [8]+payload alone, which the peer hands to its delegate."""
    cluster = joined_cluster(("n1", "n2"))
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    n1.core.send_user(n2.address, b"\x05resp")
    out = n1.core.take_outputs()
    assert out == [SendPacket(n2.address, b"\x08\x05resp")]
    n2.core.receive_packet(out[0].data, n1.address, cluster.now)
    assert n2.delegate.user_msgs[-1] == (b"\x05resp", n1.address)


def test_broadcasts_stop_after_the_retransmit_limit():
    """A queued alive is sent retransmit_mult * ceil(log10(n + 1)) times, then dropped."""
    cluster = joined_cluster(("n1", "n2"))
    n1 = cluster.nodes["n1"]
    assert n1.core.queued_broadcasts() == 0
    n1.core.update_node(cluster.now)
    assert n1.core.queued_broadcasts() == 1
    cluster.run_until(cluster.now + 5.0)
    assert n1.core.queued_broadcasts() == 0
    sent_alives = 0
    for out in n1.outputs:
        if isinstance(out, SendPacket):
            sent_alives += sum(isinstance(m, Alive) and m.incarnation == 2
                               for m in wire.decode_packet(out.data).messages)
    assert sent_alives == cluster.config.retransmit_limit(2) == 4


# ---------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize("data, reason", [
    (b"", "truncated"),
    (b"\xf4\x01label", "unknown_type"),
    (b"\x00\xc1", "decode"),
    (b"\x0c\x00\x00\x00\x00\x00\x81", "crc"),
    (bytes(70000), "oversized"),
    (b"\x09\x82\xa4Algo\x00\xa3Buf\xa3abc", "compress"),
])
def test_malformed_packets_are_counted_and_change_nothing(data, reason):
    """Garbage datagrams raise nothing, count dropped.<reason>, and leave the members as they were."""
    cluster = joined_cluster(("n1", "n2"))
    n1 = cluster.nodes["n1"]
    before = n1.core.nodes()
    n1.core.receive_packet(data, ("127.0.0.66", PORT), cluster.now)
    assert n1.counters.get(f"dropped.{reason}") == 1
    assert n1.core.nodes() == before
    assert n1.core.take_outputs() == []


def test_truncated_compound_keeps_complete_parts():
    """A compound cut short delivers its whole parts and counts the rest as truncated."""
    cluster = Cluster()
    n1 = cluster.add("n1", 1)
    ping = wire.encode(Ping(3, "n1"))
    packet = wire.make_compound([ping, ping])[:-3]
    n1.core.receive_packet(packet, ("127.0.0.2", PORT), 0.0)
    assert n1.counters.get("dropped.truncated") == 1
    assert n1.counters.get("received.ping") == 1


# ---------------------------------------------------------------------------- streams


def _open_raw(core: Memberlist, data: bytes) -> tuple[int, list]:
    stream_id = core.accept_stream(("127.0.0.50", 50000), 0.0)
    core.stream_data(stream_id, data, 0.0)
    return stream_id, core.take_outputs()


def _reply(outputs, keyring=None):
    writes = [o for o in outputs if isinstance(o, WriteStream)]
    assert len(writes) == 1
    reader = wire.StreamReader(keyring)
    return reader.feed(writes[0].data)


def test_stream_ping_is_acked_only_for_our_name():
    """A TCP ping for us gets ack{seq, nil}; for another name the stream closes without reply."""
    cluster = Cluster()
    n1 = cluster.add("n1", 1)
    n1.core.take_outputs()
    stream_id, out = _open_raw(n1.core, wire.encode_stream(wire.encode(Ping(9, "n1")),
                                                          keyring=None, compress=True))
    assert _reply(out) == Ack(9, None)
    assert out[-1] == CloseStream(stream_id)
    stream_id, out = _open_raw(n1.core, wire.encode(Ping(9, "n2")))
    assert out == [CloseStream(stream_id)]
    assert n1.counters.get("dropped.wrong_node") == 1


def test_user_message_over_a_stream_reaches_the_delegate():
    """A type-8 stream message goes to notify_user_msg and gets no reply."""
    cluster = Cluster()
    n1 = cluster.add("n1", 1)
    n1.core.take_outputs()
    stream_id, out = _open_raw(n1.core, wire.encode_user_stream(b"\x03hello"))
    assert out == [CloseStream(stream_id)]
    assert n1.delegate.user_msgs == [(b"\x03hello", ("127.0.0.50", 50000))]


def test_unreadable_stream_gets_an_err_reply():
    """A bad push/pull body is answered with err, counted, and closed."""
    cluster = Cluster()
    n1 = cluster.add("n1", 1)
    n1.core.take_outputs()
    stream_id, out = _open_raw(n1.core, b"\x06\xc1garbage")
    reply = _reply(out)
    assert isinstance(reply, ErrResp)
    assert out[-1] == CloseStream(stream_id)
    assert n1.counters.get("dropped.decode") == 1
    assert n1.core.nodes() == [n1.core.local()]


def test_encrypted_node_rejects_plain_stream_with_encrypted_err():
    """A keyed node answers a plaintext stream with an encrypted err in Go's words (4.1)."""
    key = Keyring([bytes(range(16))], entropy=lambda n: bytes(n))
    cluster = Cluster()
    n1 = cluster.add("n1", 1, keyring=key)
    n1.core.take_outputs()
    _, out = _open_raw(n1.core, wire.encode(Ping(1, "n1")))
    assert _reply(out, key) == ErrResp("Encryption is configured but remote state is not encrypted")
    assert n1.counters.get("dropped.encryption_mismatch") == 1


def test_encrypted_cluster_joins_and_probes():
    """Two keyed nodes join and ack probes; every datagram on the wire is encrypted."""
    key = Keyring([bytes(range(32))], entropy=random.Random(5).randbytes)
    cluster = joined_cluster(("n1", "n2"), keyring=key)
    cluster.run_until(5.0)
    n1 = cluster.nodes["n1"]
    assert cluster.states("n1") == {"n1": NodeState.ALIVE, "n2": NodeState.ALIVE}
    assert n1.counters.get("received.ack") >= 3
    packets = [o.data for o in n1.outputs if isinstance(o, SendPacket)]
    assert packets and all(p[0] == 1 for p in packets)  # version byte, no type byte


def test_incoming_stream_times_out():
    """A peer that opens a stream and goes quiet is closed after tcp_timeout and counted."""
    cluster = Cluster()
    n1 = cluster.add("n1", 1)
    n1.core.take_outputs()
    stream_id = n1.core.accept_stream(("127.0.0.50", 50000), 0.0)
    n1.core.stream_data(stream_id, b"\x06", 0.0)
    assert n1.core.next_deadline() <= cluster.config.tcp_timeout
    n1.core.handle_timers(cluster.config.tcp_timeout - 0.001)
    assert CloseStream(stream_id) not in n1.core.take_outputs()
    n1.core.handle_timers(cluster.config.tcp_timeout)
    assert CloseStream(stream_id) in n1.core.take_outputs()
    assert n1.counters.get("dropped.stream_timeout") == 1


def test_push_pull_with_incompatible_versions_is_refused():
    """verifyProtocol: a remote node speaking protocol 0 makes the whole state be discarded."""
    cluster = Cluster()
    n1 = cluster.add("n1", 1)
    n1.core.take_outputs()
    from gossip.messages import PushNodeState
    bad = PushNodeState("old", ip_to_bytes("127.0.0.8"), PORT, b"", 1, 0, b"")
    request = wire.encode(PushPull(False, (bad,), b""))
    _, out = _open_raw(n1.core, request)
    assert isinstance(_reply(out), PushPull)  # the state is sent before merging
    assert n1.core.node("old") is None
    assert n1.counters.get("push_pull_failures") == 1


def test_periodic_push_pull_repairs_a_missed_node():
    """Anti-entropy: a node learned only by one peer reaches the other within a push/pull interval."""
    cluster = joined_cluster(("n1", "n2"))
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    cluster.add("n9", 9)
    # n1 alone hears about n9 (which is not gossiped: its broadcasts are dropped).
    n1.core.receive_packet(wire.encode(Alive(1, "n9", ip_to_bytes("127.0.0.9"), PORT, b"",
                                             cluster.config.vsn)), ("127.0.0.9", PORT), cluster.now)
    n1.core._broadcasts.reset()
    cluster.run_until(cluster.now + cluster.config.push_pull_interval + 1.0)
    assert cluster.view("n2", "n9").state == NodeState.ALIVE
    assert n1.counters.get("push_pulls") + n2.counters.get("push_pulls") >= 1


def test_next_deadline_never_lies_in_the_past_after_handle_timers():
    """After handle_timers(now), the next deadline is strictly later (no busy loop)."""
    cluster = joined_cluster()
    cluster.silence("n2")
    for _ in range(200):
        for node in cluster.nodes.values():
            deadline = node.core.next_deadline()
            node.core.handle_timers(max(cluster.now, deadline))
            assert node.core.next_deadline() > max(cluster.now, deadline)
        cluster.now = min(n.core.next_deadline() for n in cluster.nodes.values())
        cluster.pump()
