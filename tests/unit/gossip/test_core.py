"""GossipCore end to end: several cores (real Memberlist + Serf) on a list network, explicit time."""

from __future__ import annotations

import logging
import random
from collections import deque
from typing import Any

import pytest

from gossip import (CloseStream, ConfigError, ForceLeaveFinished, GossipConfig, GossipCore,
                    JoinFinished,
                    LeaveFinished, MemberFailed, MemberJoined, MemberLeft, MemberReaped,
                    MemberStatus, OpenStream, QueryAckReceived, QueryFinished, QueryReceived,
                    QueryResponseReceived, SendPacket, ShutdownRequested, UserEventReceived,
                    WriteStream)
from gossip.types import Address

IP = "127.0.0.1"


class Net:
    """Cores wired by a FIFO of deliveries; ``down`` nodes neither send nor receive."""

    def __init__(self, count: int, *, seed: int = 1, config: GossipConfig | None = None,
                 tags: dict[str, str] | None = None) -> None:
        self.config = config or GossipConfig.lan()
        self.seed = seed
        self.now = 0.0
        self.cores: dict[Address, GossipCore] = {}
        self.facts: dict[str, list[Any]] = {}
        self.down: set[Address] = set()
        self.queue: deque[tuple[Any, ...]] = deque()
        self.links: dict[tuple[Address, int], tuple[Address, int]] = {}
        self.sent_packets: list[tuple[Address, Address, bytes]] = []
        self.opens: list[tuple[float, Address, Address]] = []
        for i in range(count):
            self.add(f"n{i}", 7000 + i, tags=tags)

    def add(self, name: str, port: int, *, tags: dict[str, str] | None = None) -> GossipCore:
        addr = (IP, port)
        core = GossipCore(self.config, name=name, addr=IP, port=port,
                          tags=tags if tags is not None else {"role": "test"}, keyring=None,
                          rng=random.Random(f"{self.seed}/{name}/gossip"),
                          entropy=random.Random(f"{self.seed}/{name}/entropy").randbytes,
                          log=logging.LoggerAdapter(logging.getLogger(f"test.{name}"), {}),
                          now=self.now)
        self.cores[addr] = core
        self.facts.setdefault(name, [])
        self.drain(addr)
        return core

    def core(self, name: str) -> GossipCore:
        return next(c for c in self.cores.values() if c.name == name)

    def addr(self, name: str) -> Address:
        return next(a for a, c in self.cores.items() if c.name == name)

    def events(self, name: str, kind: type) -> list[Any]:
        return [f for f in self.facts[name] if isinstance(f, kind)]

    # --- plumbing ---
    def drain(self, addr: Address) -> None:
        core = self.cores[addr]
        for out in core.take_outputs():
            if isinstance(out, SendPacket):
                self.queue.append(("packet", addr, out.dest, out.data))
            elif isinstance(out, OpenStream):
                self.queue.append(("open", addr, out.stream_id, out.dest, out.data))
            elif isinstance(out, WriteStream):
                self.queue.append(("write", addr, out.stream_id, out.data))
            elif isinstance(out, CloseStream):
                self.queue.append(("close", addr, out.stream_id))
            else:
                self.facts[core.name].append(out)

    def flush(self) -> None:
        steps = 0
        while self.queue:
            steps += 1
            assert steps < 100_000, "delivery storm"
            item = self.queue.popleft()
            getattr(self, "_deliver_" + item[0])(*item[1:])

    def _deliver_packet(self, src: Address, dest: Address, data: bytes) -> None:
        self.sent_packets.append((src, dest, data))
        if src in self.down or dest in self.down or dest not in self.cores:
            return
        self.cores[dest].receive_packet(data, src, self.now)
        self.drain(dest)

    def _deliver_open(self, src: Address, stream_id: int, dest: Address, data: bytes) -> None:
        self.opens.append((self.now, src, dest))
        if src in self.down:
            return
        if dest in self.down or dest not in self.cores:
            self.cores[src].stream_failed(stream_id, "connection refused", self.now)
            self.drain(src)
            return
        peer_id = self.cores[dest].accept_stream(src, self.now)
        self.links[(src, stream_id)] = (dest, peer_id)
        self.links[(dest, peer_id)] = (src, stream_id)
        self.cores[dest].stream_data(peer_id, data, self.now)
        self.drain(dest)

    def _deliver_write(self, src: Address, stream_id: int, data: bytes) -> None:
        peer = self.links.get((src, stream_id))
        if peer is None or peer[0] in self.down or src in self.down:
            return
        self.cores[peer[0]].stream_data(peer[1], data, self.now)
        self.drain(peer[0])

    def _deliver_close(self, src: Address, stream_id: int) -> None:
        peer = self.links.pop((src, stream_id), None)
        if peer is None:
            return
        self.links.pop(peer, None)
        if peer[0] not in self.down:
            self.cores[peer[0]].stream_closed(peer[1], self.now)
            self.drain(peer[0])

    # --- driving ---
    def call(self, name: str, method: str, *args: Any, **kwargs: Any) -> Any:
        addr = self.addr(name)
        result = getattr(self.cores[addr], method)(*args, now=self.now, **kwargs)
        self.drain(addr)
        self.flush()
        return result

    def run_until(self, until: float) -> None:
        while True:
            live = {a: c for a, c in self.cores.items() if a not in self.down}
            deadlines = [d for d in (c.next_deadline() for c in live.values()) if d is not None]
            if not deadlines or min(deadlines) > until:
                break
            self.now = max(self.now, min(deadlines))
            for addr, core in sorted(live.items()):
                deadline = core.next_deadline()
                if deadline is not None and deadline <= self.now:
                    core.handle_timers(self.now)
                    self.drain(addr)
            self.flush()
        self.now = until

    def statuses(self, viewer: str) -> dict[str, MemberStatus]:
        return {m.name: m.status for m in self.core(viewer).members()}


def joined(count: int, seed: int = 1, **kwargs: Any) -> Net:
    net = Net(count, seed=seed, **kwargs)
    for i in range(1, count):
        net.call(f"n{i}", "join", [(IP, 7000)])
    net.run_until(5.0)
    return net


# ---------------------------------------------------------------------------


def test_join_makes_every_member_alive_everywhere() -> None:
    """Three cores joining one seed all list all three members alive with tags."""
    net = joined(3)
    for name in ("n0", "n1", "n2"):
        assert net.statuses(name) == {"n0": MemberStatus.ALIVE, "n1": MemberStatus.ALIVE,
                                      "n2": MemberStatus.ALIVE}
        assert {m.tags["role"] for m in net.core(name).members()} == {"test"}
        assert {e.member.name for e in net.events(name, MemberJoined)} == {"n0", "n1", "n2"}
    stats = net.core("n0").stats()
    assert stats.members == 3 and stats.incarnation == 1


def test_join_intent_carries_member_clock() -> None:
    """After joining, every node knows the joiners' status LTimes from their join intents."""
    net = joined(3)
    serf = net.core("n0").serf
    assert serf.members["n1"].status_ltime >= 1
    assert serf.members["n2"].status_ltime >= 1
    assert serf.clock.time() > max(m.status_ltime for m in serf.members.values())


def test_graceful_leave_shows_left_not_failed() -> None:
    """A leaving node's intent arrives before its dead: others see left, never failed."""
    # No periodic push/pull here: one landing between intent and dead carries the
    # leaver's status LTime as a join LTime and masks the intent (Serf 0.9.4 does
    # the same; test_push_pull_status_ltime_can_mask_a_leave pins it).
    net = joined(3, config=GossipConfig.lan(push_pull_interval=600.0))
    net.call("n2", "leave")
    assert net.core("n2").is_leaving
    net.run_until(20.0)
    assert net.events("n2", LeaveFinished) == [LeaveFinished()]
    assert net.core("n2").has_left
    for viewer in ("n0", "n1"):
        assert net.statuses(viewer)["n2"] == MemberStatus.LEFT
        assert [e.member.name for e in net.events(viewer, MemberLeft)] == ["n2"]
        assert net.events(viewer, MemberFailed) == []


def test_leave_waits_for_propagate_delay() -> None:
    """LeaveFinished comes no earlier than leave_propagate_delay after the call."""
    net = joined(2)
    start = net.now
    net.call("n1", "leave")
    finished_at = None
    while finished_at is None and net.now < start + 20:
        net.run_until(net.now + 0.05)
        if net.events("n1", LeaveFinished):
            finished_at = net.now
    assert finished_at is not None
    assert finished_at - start >= net.config.leave_propagate_delay


def test_killed_node_becomes_failed() -> None:
    """A node that stops answering is reported failed by the others."""
    net = joined(3)
    net.down.add(net.addr("n2"))
    net.run_until(60.0)
    for viewer in ("n0", "n1"):
        assert net.statuses(viewer)["n2"] == MemberStatus.FAILED
        assert [e.member.name for e in net.events(viewer, MemberFailed)] == ["n2"]


def test_force_leave_of_failed_member_makes_it_left() -> None:
    """force_leave of a failed member turns it left everywhere and reports success."""
    net = joined(3)
    net.down.add(net.addr("n2"))
    net.run_until(60.0)
    request = net.call("n0", "force_leave", "n2", False)
    net.run_until(70.0)
    assert net.events("n0", ForceLeaveFinished) == [ForceLeaveFinished(request, None)]
    for viewer in ("n0", "n1"):
        assert net.statuses(viewer)["n2"] == MemberStatus.LEFT
        assert [e.member.name for e in net.events(viewer, MemberLeft)] == ["n2"]


def test_force_leave_with_prune_erases_member() -> None:
    """force_leave with prune removes a failed member from every list and reports reaped."""
    net = joined(3)
    net.down.add(net.addr("n2"))
    net.run_until(60.0)
    net.call("n0", "force_leave", "n2", True)
    net.run_until(70.0)
    for viewer in ("n0", "n1"):
        assert "n2" not in net.statuses(viewer)
        assert [e.member.name for e in net.events(viewer, MemberReaped)] == ["n2"]


def test_force_leave_alone_finishes_at_once() -> None:
    """With no other alive member, force_leave reports success immediately."""
    net = Net(1)
    request = net.call("n0", "force_leave", "ghost", False)
    assert net.events("n0", ForceLeaveFinished) == [ForceLeaveFinished(request, None)]


def test_user_event_delivered_once_everywhere() -> None:
    """A user event reaches every node exactly once, despite re-broadcasts."""
    net = joined(4)
    net.call("n1", "user_event", "deploy", b"v1.2.3", True)
    net.run_until(20.0)
    for name in ("n0", "n1", "n2", "n3"):
        events = net.events(name, UserEventReceived)
        # (coalesce is only known to nodes that got the broadcast, not a push/pull copy)
        assert [(e.name, e.payload, e.ltime) for e in events] == [("deploy", b"v1.2.3", 1)]
        assert net.core(name).stats().counters["user_events"] == 1
    assert net.events("n1", UserEventReceived)[0].coalesce is True


def test_user_event_too_large_is_refused() -> None:
    """An oversized user event raises ConfigError and changes nothing."""
    net = joined(2)
    before = net.core("n0").serf.event_clock.time()
    with pytest.raises(ConfigError):
        net.call("n0", "user_event", "big", b"x" * 600, False)
    assert net.core("n0").serf.event_clock.time() == before
    assert len(net.core("n0").serf.event_queue) == 0


def test_query_collects_acks_and_responses() -> None:
    """A query is acked and answered by every node; the originator sees each once."""
    net = joined(3)
    handle = net.call("n0", "query", "ask", b"payload", timeout=5.0)
    net.run_until(net.now + 1.0)
    for name in ("n0", "n1", "n2"):
        received = net.events(name, QueryReceived)
        assert [(q.name, q.payload, q.source_node) for q in received] == [("ask", b"payload", "n0")]
        net.call(name, "respond_query", received[0].handle, f"from {name}".encode())
    net.run_until(net.now + 1.0)
    acks = {e.from_ for e in net.events("n0", QueryAckReceived) if e.handle == handle}
    answers = {e.from_: e.payload for e in net.events("n0", QueryResponseReceived)}
    assert acks == {"n0", "n1", "n2"}
    assert answers == {"n0": b"from n0", "n1": b"from n1", "n2": b"from n2"}
    assert net.events("n0", QueryFinished) == []
    net.run_until(net.now + 5.0)
    assert net.events("n0", QueryFinished) == [QueryFinished(handle)]
    assert net.core("n1").stats().counters["queries_answered"] == 1


def test_query_node_filter_selects_nodes() -> None:
    """A node filter limits delivery to the named nodes; others still relay the query."""
    net = joined(3)
    net.call("n0", "query", "ask", b"", nodes=["n2"], timeout=5.0)
    net.run_until(net.now + 2.0)
    assert [len(net.events(n, QueryReceived)) for n in ("n0", "n1", "n2")] == [0, 0, 1]


def test_query_tag_filter_uses_unanchored_regex() -> None:
    """A tag filter matches by Go-style unanchored search of the tag value."""
    net = joined(3)
    net.call("n1", "set_tags", {"role": "web-frontend"})
    net.run_until(net.now + 3.0)
    net.call("n0", "query", "ask", b"", tags={"role": "front"}, timeout=5.0)
    net.run_until(net.now + 2.0)
    assert [len(net.events(n, QueryReceived)) for n in ("n0", "n1", "n2")] == [0, 1, 0]


def test_query_relay_copies_are_deduplicated() -> None:
    """With relay_factor, relayed copies reach the originator but are reported once."""
    net = joined(4)
    handle = net.call("n0", "query", "ask", b"", relay_factor=2, timeout=5.0)
    net.run_until(net.now + 1.0)
    for name in ("n1", "n2", "n3"):
        q = net.events(name, QueryReceived)[0]
        net.call(name, "respond_query", q.handle, name.encode())
    net.run_until(net.now + 1.0)
    responses = [e.from_ for e in net.events("n0", QueryResponseReceived) if e.handle == handle]
    assert sorted(responses) == ["n1", "n2", "n3"]
    counters = net.core("n0").stats().counters
    assert counters.get("query_duplicate_responses", 0) > 0
    assert counters.get("query_duplicate_acks", 0) > 0


def test_serf_ping_query_is_only_acked() -> None:
    """_serf_ping is acked by everyone, answered by nobody and hidden from applications."""
    net = joined(3)
    handle = net.call("n0", "query", "_serf_ping", b"", timeout=3.0)
    net.run_until(net.now + 4.0)
    assert {e.from_ for e in net.events("n0", QueryAckReceived) if e.handle == handle} == {
        "n0", "n1", "n2"}
    assert net.events("n0", QueryResponseReceived) == []
    assert all(net.events(n, QueryReceived) == [] for n in ("n0", "n1", "n2"))


def test_name_conflict_newcomer_shuts_down() -> None:
    """A second node claiming an existing name loses the _serf_conflict vote and stops."""
    net = joined(3)
    imposter = net.add("n1", 7100)
    imposter_addr = (IP, 7100)
    imposter.join([(IP, 7000)], now=net.now)
    net.drain(imposter_addr)
    net.flush()
    net.run_until(net.now + 10.0)
    assert net.facts["n1"].count(ShutdownRequested("name conflict")) == 1
    assert net.cores[(IP, 7001)].serf.state.value == "alive"
    assert net.statuses("n0")["n1"] == MemberStatus.ALIVE
    assert net.core("n0").members()[1].port == 7001


def test_push_pull_merges_left_members() -> None:
    """A node that missed a leave learns it from a push/pull's LeftMembers."""
    net = joined(3)
    late = net.addr("n2")
    net.down.add(late)  # n2 misses the leave gossip entirely
    net.call("n1", "leave")
    net.run_until(net.now + 10.0)
    assert net.statuses("n0")["n1"] == MemberStatus.LEFT
    net.down.discard(late)
    net.down.add(net.addr("n1"))  # n1 has stopped
    net.call("n2", "join", [(IP, 7000)])
    net.run_until(net.now + 5.0)
    # memberlist merges node states first (n1 dead -> failed), then Serf's
    # LeftMembers turns failed into left, as in Go.
    assert net.statuses("n2")["n1"] == MemberStatus.LEFT
    about_n1 = [type(f) for f in net.facts["n2"]
                if getattr(getattr(f, "member", None), "name", None) == "n1"]
    assert about_n1[-1] is MemberLeft


def test_join_ignores_old_events_by_default() -> None:
    """A node joining late is not handed events sent before it joined."""
    net = joined(2)
    net.call("n0", "user_event", "old", b"", False)
    net.run_until(net.now + 5.0)
    late = net.add("n9", 7009)
    net.call("n9", "join", [(IP, 7000)])
    net.run_until(net.now + 5.0)
    assert net.events("n9", UserEventReceived) == []
    assert late.serf.event_min_time >= 2


def test_join_can_replay_old_events() -> None:
    """With ignore_old_events=False a late joiner receives the buffered events."""
    net = joined(2)
    net.call("n0", "user_event", "old", b"x", False)
    net.run_until(net.now + 5.0)
    net.add("n9", 7009)
    net.call("n9", "join", [(IP, 7000)], ignore_old_events=False)
    net.run_until(net.now + 5.0)
    assert [e.name for e in net.events("n9", UserEventReceived)] == ["old"]


def test_stats_report_members_and_counters() -> None:
    """stats() shows the member count, health and the shared counters."""
    net = joined(3)
    net.call("n0", "query", "ask", b"", timeout=1.0)
    net.run_until(net.now + 2.0)
    stats = net.core("n1").stats()
    assert stats.members == 3
    assert stats.health_score == 0
    assert stats.counters["queries_received"] == 1


def test_push_pull_status_ltime_can_mask_a_leave() -> None:
    """Pinned Serf quirk: a push/pull between a leave intent and the dead carries the
    leaver's new status LTime as a join LTime, so the late intent is ignored and the
    leaver shows as failed on that node."""
    net = joined(2, config=GossipConfig.lan(push_pull_interval=600.0))
    net.down.add(net.addr("n0"))  # n0 misses the intent
    net.call("n1", "leave")
    assert net.core("n1").serf.members["n1"].status_ltime == 2
    net.down.discard(net.addr("n0"))
    # a push/pull from n1 reaches n0 before the intent does
    n0 = net.core("n0")
    n0.serf.merge_remote_state(net.core("n1").serf.local_state(False), False, net.now)
    assert n0.serf.members["n1"].status_ltime == 2
    assert n0.serf.members["n1"].status == MemberStatus.ALIVE


def test_reconnect_attempts_are_hidden_from_the_application() -> None:
    """Serf's reconnect joins to a failed member happen, but emit no JoinFinished."""
    config = GossipConfig.lan(reconnect_interval=10.0, push_pull_interval=600.0)
    net = joined(3, config=config)
    for name in ("n0", "n1"):
        net.facts[name].clear()
    dead = net.addr("n2")
    net.down.add(dead)
    net.run_until(120.0)
    assert net.statuses("n0")["n2"] == MemberStatus.FAILED
    attempts = [o for o in net.opens if o[2] == dead and o[1] != dead]
    assert attempts, "no reconnect attempt in 115 s"
    assert all(not isinstance(f, JoinFinished) for n in ("n0", "n1") for f in net.facts[n])
