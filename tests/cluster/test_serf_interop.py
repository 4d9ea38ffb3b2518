"""A mixed cluster of real `shoal agent` and real `serf agent` processes, plain and encrypted."""

from __future__ import annotations

import re
import signal

import pytest

from harness import (CONVERGE_DEADLINE, FAILURE_DEADLINE, KEY1, KEY2, SerfNode, ShoalNode,
                     make_serf, make_shoal, wait_serf_ready, wait_shoal_ready, wait_statuses,
                     wait_until)

pytestmark = [pytest.mark.serf, pytest.mark.cluster]

SERF_TAGS = {"role": "serf-test", "flavour": "real"}
# What serf 0.9.4 advertises in its memberlist Vsn: [1, 5, 2, 2, 5, 5].
SERF_VERSIONS = {"ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
                 "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 5}


def _start_mixed(procs, loopback, tmp_path, key: str | None):
    """3 shoal + 2 serf joined from both sides: serf->shoal at start, shoal->serf by HTTP."""
    a, b, c = (make_shoal(procs, tmp_path, loopback.next(), name, encrypt=key) for name in "abc")
    for node in (a, b, c):
        node.start()
    s1 = make_serf(procs, tmp_path, loopback.next(), "s1", join=[a.serf_addr], encrypt=key,
                   tags=SERF_TAGS | {"id": "s1"})
    s2 = make_serf(procs, tmp_path, loopback.next(), "s2", encrypt=key, tags=SERF_TAGS | {"id": "s2"})
    for node in (a, b, c):
        wait_shoal_ready(node)
    s1.start()                     # serf joins shoal a with `serf agent -join`
    s2.start()
    wait_serf_ready(s2)
    wait_serf_ready(s1)
    for joiner, target in ((b, a), (c, s2), (a, s2)):   # shoal->shoal, shoal->serf twice
        status, body = joiner.join(target.serf_addr)
        assert status == 200 and body == {"num_joined": 1, "error": ""}, (joiner.name, target.name, status, body)
    everyone = [a, b, c, s1, s2]
    wait_statuses(everyone, {n.member_name: "alive" for n in everyone},
                  what="3 shoal + 2 serf to see each other alive", timeout=CONVERGE_DEADLINE)
    return a, b, c, s1, s2


def _check_views(shoals: list[ShoalNode], serfs: list[SerfNode]) -> None:
    """Serf lists shoal nodes with their tags; shoal lists serf nodes with tags and versions."""
    for serf in serfs:
        seen = serf.member_map()
        for shoal in shoals:
            own = shoal.member_map()[shoal.member_name]
            member = seen[shoal.member_name]
            assert member["status"] == "alive", member
            assert member["addr"] == f"{shoal.ip}:{shoal.serf_port}", member
            assert member["tags"] == own["Tags"], (serf.name, member, own)
            assert member["tags"]["role"] == "nomad" and member["tags"]["region"] == "global", member
            assert member["tags"]["port"] == str(shoal.rpc_port) and "mvn" not in member["tags"], member
    for shoal in shoals:
        seen = shoal.member_map()
        for serf in serfs:
            member = seen[serf.member_name]
            assert member["Status"] == "alive" and member["Addr"] == serf.ip, member
            assert member["Port"] == serf.port, member
            assert member["Tags"] == SERF_TAGS | {"id": serf.node}, member
            assert {k: member[k] for k in SERF_VERSIONS} == SERF_VERSIONS, member


def _check_event_and_query(shoals: list[ShoalNode], sender: SerfNode, tag: str) -> None:
    """`serf event` reaches every shoal node (log + counter); `serf query` gets their names back."""
    before = {s.name: s.gossip_counters().get("user_events", 0) for s in shoals}
    event = f"deploy-{tag}"
    sender.event(event, "v1.2.3")
    pattern = re.compile(rf"user event received.*name={re.escape(event)}\b")
    # Gossip normally delivers the event in well under a second; if a loaded host
    # drops every copy, the event still arrives with the next periodic push/pull
    # (Serf's event ring, every 30 s on lan), so the deadline covers one of those.
    for shoal in shoals:
        wait_until(f"{shoal.name} to log the user event {event}", shoal.log_text,
                   lambda text: bool(pattern.search(text)), timeout=45, watch=[shoal])
        wait_until(f"{shoal.name} to count the user event", lambda: shoal.gossip_counters().get("user_events", 0),
                   lambda n: n > before[shoal.name], timeout=15, watch=[shoal])

    answer = sender.query(f"greet-{tag}", "hi", timeout="4s")
    responses = answer.get("Responses") or {}
    for shoal in shoals:
        assert shoal.member_name in answer.get("Acks", []), answer
        assert responses.get(shoal.member_name) == shoal.member_name, answer


def _check_wrong_key_refused(procs, loopback, tmp_path, a: ShoalNode, s1: SerfNode, key: str) -> None:
    """A shoal node with another key fails to join, never shows up, and the refusal is counted."""
    wrong = make_shoal(procs, tmp_path, loopback.next(), "wrongkey", encrypt=KEY2 if key != KEY2 else KEY1)
    wrong.start()
    wait_shoal_ready(wrong)
    before = a.dropped()
    for target in (s1, a):
        status, body = wrong.join(target.serf_addr)
        assert status != 200 or (isinstance(body, dict) and body.get("num_joined") == 0 and body.get("error")), \
            (target.name, status, body)
    wait_until(f"{a.name} to count the refused stream", a.dropped,
               lambda now: sum(now.values()) > sum(before.values()), timeout=15, watch=[a])
    counted = a.dropped()
    grown = {k: counted[k] - before.get(k, 0) for k in counted if counted[k] > before.get(k, 0)}
    assert set(grown) & {"decrypt", "encryption_mismatch"}, grown
    assert wrong.member_name not in s1.statuses() and wrong.member_name not in a.statuses()
    assert list(wrong.statuses()) == [wrong.member_name], wrong.statuses()
    wrong.kill9()


@pytest.mark.parametrize("key", [None, KEY1], ids=["plain", "encrypted"])
def test_mixed_shoal_and_serf_cluster(procs, loopback, tmp_path, serf_binary, key):
    """Shoal and serf agents form one cluster: views, event, query, failed and left both ways."""
    a, b, c, s1, s2 = _start_mixed(procs, loopback, tmp_path, key)
    shoals, serfs = [a, b, c], [s1, s2]
    _check_views(shoals, serfs)
    _check_event_and_query(shoals, s1, "plain" if key is None else "enc")
    if key is not None:
        _check_wrong_key_refused(procs, loopback, tmp_path, a, s1, key)

    # Shoal departures seen by serf: kill -9 of c and SIGTERM of b (-leave-on-terminate).
    c.kill9()
    b.signal(signal.SIGTERM)
    wait_statuses([s1, s2, a], {b.member_name: "left"}, what="SIGTERMed shoal b to be left in serf",
                  timeout=CONVERGE_DEADLINE)
    wait_statuses([s1, s2, a], {c.member_name: "failed", b.member_name: "left"},
                  what="kill -9'ed shoal c to be failed in serf", timeout=FAILURE_DEADLINE)

    # Serf departures seen by shoal: `serf leave` of s1, then kill -9 of s2.
    # A leaving node gossips its own "dead" a limited number of times (memberlist's
    # retransmit limit: 4 sends here, to random picks among a, s2, b and c), so a alone
    # may miss every one of them; the other live members re-gossip it. Hence s2 stays up
    # until `serf leave` returns (s1 waits a second after its broadcast). And when a still
    # misses it, a's own failure detector ends s1's "leaving" as "left" after a suspicion
    # timeout of up to 24 s with no confirmations, so the deadline is the failure one.
    s1.leave()
    s2.kill9()
    wait_statuses([a], {s1.member_name: "left"}, what="`serf leave` of s1 to be left in shoal",
                  timeout=FAILURE_DEADLINE)
    wait_statuses([a], {s2.member_name: "failed", s1.member_name: "left"},
                  what="kill -9'ed serf s2 to be failed in shoal", timeout=FAILURE_DEADLINE)
    assert a.running()
