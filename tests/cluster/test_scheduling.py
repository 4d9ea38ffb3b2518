"""Real servers and clients scheduling simulated jobs: placement, workers, failover, lost nodes."""

from __future__ import annotations

import pytest

from harness import wait_until
from raft_procs import leader, node_at, raft_address, request, start_servers, wait_one_leader
from sched_procs import (CLIENT_CPU, CLIENT_MEMORY, allocations, duplicate_names, evaluations, live,
                         make_client, node_usage, nodes, register, restart_client, schedulers,
                         service_job, set_schedulers, wait_ready_nodes)

pytestmark = pytest.mark.cluster

NUM_SCHEDULERS = 4


def start_cluster(procs, tmp_path, loopback, prefix: str, clients: int = 3):
    servers = start_servers(procs, tmp_path, loopback, [f"{prefix}s{i}" for i in range(1, 4)], expect=3,
                            extra=["-num-schedulers", str(NUM_SCHEDULERS)])
    wait_one_leader(servers)
    agents = [make_client(procs, tmp_path, loopback.next(), f"{prefix}c{i}", servers)
              for i in range(1, clients + 1)]
    for agent in agents:
        agent.start()
    wait_ready_nodes(servers[0], clients, watch=servers + agents)
    return servers, agents


def all_placed(allocs, expected: int) -> bool:
    return len(live(allocs)) == expected and all(a["ClientStatus"] == "running" for a in live(allocs))


def test_twenty_jobs_place_workers_pause_and_resume(procs, loopback, tmp_path):
    """20 jobs on 3 servers + 3 clients: all placed within capacity; the leader pauses 3 of 4
    workers; with num_schedulers 0 everywhere evaluations wait, and are placed once restored."""
    servers, clients = start_cluster(procs, tmp_path, loopback, "a")
    everyone = servers + clients
    for i in range(20):
        register(servers[i % 3], service_job(f"job{i:02d}", count=2, cpu=120, memory=100))
    allocs = wait_until("40 allocations running", lambda: allocations(servers[0]),
                        lambda a: all_placed(a, 40), timeout=90, watch=everyone)
    for node_id, (cpu, memory) in node_usage(allocs).items():
        assert cpu <= CLIENT_CPU and memory <= CLIENT_MEMORY, (node_id, cpu, memory)
    assert duplicate_names(allocs) == []

    # Invalid jobs: one-line 400s, nothing stored.
    for bad, reason in ((service_job("bad1", 1, kind="mystery"), "Type"),
                        (service_job("bad2", -1), "Count"),
                        ({"Job": {"Type": "service", "TaskGroups": [{"Name": "g"}]}}, "ID")):
        status, body = request("PUT", f"{servers[0].url}/v1/jobs", bad)
        assert status == 400 and reason in body and "\n" not in body, (status, body)
    status, body = request("PUT", f"{servers[0].url}/v1/jobs", None)
    assert status == 400, (status, body)
    status, jobs = request("GET", f"{servers[0].url}/v1/jobs")
    assert status == 200 and len(jobs) == 20 and not any(j["ID"].startswith("bad") for j in jobs), jobs

    # A batch job runs for its simulated duration, then completes.
    register(servers[2], service_job("once", count=2, kind="batch", duration=1))
    wait_until("the batch allocations to complete", lambda: allocations(servers[0]),
               lambda a: sum(1 for x in a if x["JobID"] == "once" and x["ClientStatus"] == "complete") == 2,
               timeout=60, watch=everyone)

    lead = node_at(servers, leader(servers[0]))
    paused = [w for w in schedulers(lead)["schedulers"] if w["status"] == "Paused"]
    assert len(paused) == 3, schedulers(lead)
    for follower in (s for s in servers if s is not lead):
        view = schedulers(follower)
        assert len(view["schedulers"]) == NUM_SCHEDULERS
        assert all(w["status"] != "Paused" for w in view["schedulers"]), view

    for server in servers:
        assert set_schedulers(server, 0)["num_schedulers"] == 0
        assert schedulers(server)["schedulers"] == []
    register(servers[1], service_job("queued", count=2))
    pending = wait_until("the new evaluation to be pending", lambda: evaluations(servers[0]),
                         lambda evs: any(e["JobID"] == "queued" for e in evs), timeout=30, watch=everyone)
    assert all(e["Status"] == "pending" for e in pending if e["JobID"] == "queued"), pending
    assert not any(a["JobID"] == "queued" for a in allocations(servers[0]))
    for server in servers:
        set_schedulers(server, NUM_SCHEDULERS)
    wait_until("the queued job to be placed", lambda: allocations(servers[0]),
               lambda a: len(live([x for x in a if x["JobID"] == "queued"])) == 2, timeout=60,
               watch=everyone)


def test_leader_killed_with_evaluations_in_flight_none_lost_none_doubled(procs, loopback, tmp_path):
    """kill -9 of the leader while 200 evaluations are in flight: all complete once, nothing placed twice."""
    servers, clients = start_cluster(procs, tmp_path, loopback, "b")
    from concurrent.futures import ThreadPoolExecutor

    def submit(i: int) -> None:
        register(servers[i % 3], service_job(f"flight{i:03d}", count=1, cpu=20, memory=16))

    for server in servers:   # hold the evaluations in the broker, then release them all at once
        set_schedulers(server, 0)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(submit, range(200)))
    old = node_at(servers, leader(servers[0]))
    for server in servers:
        set_schedulers(server, NUM_SCHEDULERS)
    wait_until("the first placements", lambda: allocations(servers[0]),
               lambda a: any(x["JobID"].startswith("flight") for x in a), timeout=30, watch=servers)
    old.kill9()
    survivors = [s for s in servers if s is not old]
    wait_one_leader(survivors, exclude=raft_address(old), timeout=60)
    everyone = survivors + clients
    evals = wait_until("every evaluation to complete", lambda: evaluations(survivors[0]),
                       lambda evs: len([e for e in evs if e["JobID"].startswith("flight")]) >= 200
                       and all(e["Status"] == "complete" for e in evs if e["JobID"].startswith("flight")),
                       timeout=120, watch=everyone)
    assert len({e["ID"] for e in evals if e["JobID"].startswith("flight")}) >= 200
    allocs = wait_until("200 allocations", lambda: allocations(survivors[0]),
                        lambda a: len(live([x for x in a if x["JobID"].startswith("flight")])) == 200,
                        timeout=60, watch=everyone)
    per_job = {}
    for alloc in live(allocs):
        per_job[alloc["JobID"]] = per_job.get(alloc["JobID"], 0) + 1
    assert all(n == 1 for n in per_job.values()), {k: v for k, v in per_job.items() if v != 1}
    assert duplicate_names(allocs) == []


def test_a_killed_client_loses_its_allocations_to_the_others(procs, loopback, tmp_path):
    """kill -9 of a client: after its heartbeat TTL it is down and its allocations run elsewhere."""
    servers, clients = start_cluster(procs, tmp_path, loopback, "c")
    register(servers[0], service_job("spread", count=6, cpu=500, memory=300))
    allocs = wait_until("6 allocations running", lambda: allocations(servers[0]),
                        lambda a: all_placed(a, 6), timeout=60, watch=servers + clients)
    by_node: dict[str, int] = {}
    for alloc in live(allocs):
        by_node[alloc["NodeID"]] = by_node.get(alloc["NodeID"], 0) + 1
    victim_id = max(by_node, key=lambda k: by_node[k])
    victim_name = next(n["Name"] for n in nodes(servers[0]) if n["ID"] == victim_id)
    victim = next(c for c in clients if c.node == victim_name)
    victim.kill9()
    survivors = [c for c in clients if c is not victim]
    allocs = wait_until("the dead client's allocations to be replaced", lambda: allocations(servers[0]),
                        lambda a: len(live(a)) == 6 and all(x["NodeID"] != victim_id for x in live(a))
                        and all(x["ClientStatus"] == "running" for x in live(a)),
                        timeout=120, watch=servers + survivors)
    lost = [a for a in allocations(servers[0]) if a["NodeID"] == victim_id]
    assert lost and all(a["ClientStatus"] == "lost" or a["DesiredStatus"] == "stop" for a in lost), lost

    # Two clients hold 8 such allocations: 4 more wait in a blocked evaluation until the
    # third client comes back, then they are placed on it.
    register(servers[1], service_job("spread", count=12, cpu=500, memory=300))
    wait_until("a blocked evaluation for the 4 that do not fit", lambda: evaluations(servers[0]),
               lambda evs: any(e["JobID"] == "spread" and e["Status"] == "blocked" for e in evs),
               timeout=60, watch=servers + survivors)
    assert len(live([a for a in allocations(servers[0]) if a["JobID"] == "spread"])) == 8
    back = restart_client(procs, victim)
    wait_until("all 12 placed once capacity returned", lambda: allocations(servers[0]),
               lambda a: len(live([x for x in a if x["JobID"] == "spread"])) == 12,
               timeout=90, watch=servers + survivors + [back])
