"""Scheduling benchmark: evaluations placed per second and time to place a 1000-allocation job.

Measures, on a cluster of three `shoal agent -server -bootstrap-expect 3` processes (each
on its own loopback address 127.0.X.1..3, started and joined as scripts/bench/raft_bench.py
does) and N simulated client nodes (default 100):

* simulated clients - one benchmark process simulates all N client nodes over the RPC
  wire protocol: it connects to a server's rpc port (byte 0x01, then msgpack frames
  `[u32 length][{"Seq", "Method", "Args"}]`), sends `Node.Register` for each node and
  then `Node.Heartbeat` for each one every ~HeartbeatTTL/2 from a background thread.
  Nobody runs the allocations placed on these nodes: they stay ClientStatus "pending".
  That is enough to measure placement, which is all this benchmark measures.
* throughput - for each K in --workers: `num_schedulers` 0 on all three servers
  (`PUT /v1/agent/schedulers/config`), E small service jobs registered (Count 1..3) so
  their evaluations queue in the leader's broker, then K on all three servers; the clock
  runs from that moment until every evaluation of the batch has left "pending" (polled
  on the leader with `GET /v1/evaluations?stale=true`). evals/s = E / time; allocs/s =
  allocations of the batch's jobs / time. The leader pauses floor(3K/4) of its own
  workers (as Nomad does), so the cluster works with 3K - floor(3K/4) workers.
  Each batch runs on a fresh cluster with freshly registered nodes (so the batches do not
  differ in how much the store already holds); `--shared` runs them all on one cluster.
* big job - one service job with Count 1000 (small resources) registered with K = the
  largest --workers value; time from the PUT until its evaluation is acked, after the plan
  holding the 1000 allocations was committed (the poller also checks that 1000 exist).

Beside them it prints Nomad's published C1M / C2M figures (looked up, with their source
URLs; nothing there is measured here) and what is and is not comparable.

The harness never imports shoal: it starts agents on the command line, talks HTTP and the
rpc port's wire format to them, and stops them with signals. Every process it starts is
killed by PID at the end, also on Ctrl-C, SIGTERM or an exception.

Usage:  .venv/bin/python scripts/bench/sched_bench.py [--quick] [--nodes 100] [--evals 400]
        [--workers 1,2,4,8] [--rounds 2] [--big 1000] [--shared] [--out results.json]
See scripts/bench/README.md ("Scheduling") for the figures and the results.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import msgpack  # a runtime dependency of shoal, not a shoal module

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchprocs import Deadline, kill_all, on_signal, spawn  # noqa: E402,F401
from raft_bench import (ROOT, Cluster, KeepAlive, Node, choose_subnet, cpu_seconds,  # noqa: E402
                        filesystem_of, fmt, request)

ALL_SCHEDULERS = ["service", "batch", "system", "sysbatch", "_core"]
PENDING = "pending"


# --------------------------------------------------------------------------------------
# Simulated client nodes over the rpc port.

class RpcConn:
    """One connection to a server's rpc port: 0x01, then length-prefixed msgpack frames."""

    def __init__(self, ip: str, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((ip, port), timeout=timeout)
        self.sock.sendall(b"\x01")
        self.seq = 0
        self.buffer = b""

    def call(self, method: str, args: dict) -> Any:
        """One request, its answer's Result; RuntimeError with the answer's Error."""
        self.seq += 1
        payload = msgpack.packb({"Seq": self.seq, "Method": method, "Args": args}, use_bin_type=True)
        self.sock.sendall(len(payload).to_bytes(4, "big") + payload)
        while True:
            answer = self._frame()
            if answer.get("Seq") == self.seq:
                break
        if answer.get("Error"):
            raise RuntimeError(f"{method}: {answer['Error']}")
        return answer.get("Result") or {}

    def _frame(self) -> dict:
        while True:
            if len(self.buffer) >= 4:
                length = int.from_bytes(self.buffer[:4], "big")
                if len(self.buffer) >= 4 + length:
                    frame = msgpack.unpackb(self.buffer[4:4 + length], raw=False)
                    self.buffer = self.buffer[4 + length:]
                    return frame if isinstance(frame, dict) else {}
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("rpc connection closed")
            self.buffer += data

    def close(self) -> None:
        self.sock.close()


class SimClients:
    """N simulated client nodes: registered once, then heartbeated from a thread.

    All traffic goes over one rpc connection (to the leader when known; a follower
    forwards Node.* to the leader). A failed call reconnects to the next server.
    """

    def __init__(self, cluster: Cluster, count: int, cpu: int, memory_mb: int) -> None:
        self.cluster = cluster
        self.nodes = [{"ID": str(uuid.uuid4()), "Name": f"sim-{i + 1:03d}", "Datacenter": "dc1",
                       "NodeClass": "", "Meta": {}, "Attributes": {},
                       "NodeResources": {"CPU": cpu, "MemoryMB": memory_mb}, "Status": "ready",
                       "SchedulingEligibility": "eligible", "HTTPAddr": "127.0.0.1:0"}
                      for i in range(count)]
        self.due: dict[str, float] = {}
        self.ttls: list[float] = []
        self.beats = self.errors = 0
        self.conn: RpcConn | None = None
        self.target = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="sim-heartbeats", daemon=True)

    def _call(self, method: str, args: dict, prefer: Node | None = None) -> Any:
        for attempt in range(len(self.cluster.nodes) + 1):
            if self.conn is None:
                node = prefer if prefer is not None and attempt == 0 else \
                    self.cluster.nodes[self.target % len(self.cluster.nodes)]
                try:
                    self.conn = RpcConn(node.ip, node.rpc_port)
                except OSError:
                    self.target += 1
                    continue
            try:
                return self.conn.call(method, args)
            except (OSError, ConnectionError, ValueError, RuntimeError) as error:
                self.errors += 1
                self.conn.close()
                self.conn = None
                self.target += 1
                if attempt == len(self.cluster.nodes):
                    raise RuntimeError(f"{method} failed on every server: {error}") from error
        raise RuntimeError(f"{method}: no server reachable")

    def register(self, leader: Node) -> float:
        start = time.monotonic()
        for node in self.nodes:
            result = self._call("Node.Register", {"Node": node}, prefer=leader)
            ttl = float(result.get("HeartbeatTTL") or 10.0)
            self.ttls.append(ttl)
            self.due[node["ID"]] = time.monotonic() + ttl / 2
        self.thread.start()
        return time.monotonic() - start

    def _loop(self) -> None:
        while not self.stop_event.wait(0.2):
            now = time.monotonic()
            for node_id, due in list(self.due.items()):
                if due > now or self.stop_event.is_set():
                    continue
                try:
                    result = self._call("Node.Heartbeat", {"NodeID": node_id, "Status": "ready"})
                    ttl = float(result.get("HeartbeatTTL") or 10.0)
                    self.beats += 1
                except RuntimeError:
                    ttl = 2.0   # retry soon
                self.due[node_id] = time.monotonic() + ttl / 2

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        if self.conn is not None:
            self.conn.close()


# --------------------------------------------------------------------------------------
# Cluster helpers.

class SchedCluster(Cluster):
    """raft_bench's cluster with scheduler workers (0 at start: the benchmark sets them)."""

    def command(self, node: Node, retry_join: bool) -> list[str]:
        return super().command(node, retry_join) + ["-num-schedulers", "0"]


def set_workers(cluster: Cluster, count: int) -> None:
    body = json.dumps({"num_schedulers": count, "enabled_schedulers": ALL_SCHEDULERS}).encode()
    for node in cluster.nodes:
        status, answer = request(node.ip, node.http_port, "PUT", "/v1/agent/schedulers/config", body, 10)
        if status != 200:
            raise RuntimeError(f"schedulers/config on {node.name}: HTTP {status} {answer[:200]!r}")


def worker_status(node: Node) -> dict[str, int]:
    info = node.get("/v1/agent/schedulers", timeout=5) or {}
    counts: dict[str, int] = {}
    for worker in info.get("schedulers") or []:
        counts[worker.get("status", "?")] = counts.get(worker.get("status", "?"), 0) + 1
    return counts


def small_job(job_id: str, count: int, cpu: int, memory_mb: int) -> bytes:
    return json.dumps({"Job": {"ID": job_id, "Type": "service", "Datacenters": ["dc1"],
                               "TaskGroups": [{"Name": "g", "Count": count,
                                               "Resources": {"CPU": cpu, "MemoryMB": memory_mb}}]}}).encode()


def batch_evals(leader: Node, job_ids: set[str]) -> list[dict] | None:
    evals = leader.get("/v1/evaluations?stale=true", timeout=20)
    if evals is None:
        return None
    return [e for e in evals if e.get("JobID") in job_ids]


def wait_until(check: Callable[[], Any], limit: float, poll: float, what: str) -> Any:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise Deadline(f"{what} not reached after {limit:.0f}s")


# Log lines (INFO/WARNING) that explain a slow batch, counted over the agents' logs.
LOG_PATTERNS = {"plan_rejected": "plan partly rejected", "nacked": "evaluation failed, nacking",
                "worker_errors": "scheduler processing failed", "dequeue_errors": "scheduler dequeue failed",
                "node_down": "node heartbeat missed", "leader_elected": "cluster leadership acquired"}


def log_marks(cluster: Cluster) -> dict[str, int]:
    return {n.name: n.log_path.stat().st_size if n.log_path.exists() else 0 for n in cluster.nodes}


def log_counts(cluster: Cluster, marks: dict[str, int]) -> dict[str, int]:
    """How often each LOG_PATTERNS phrase appeared in the servers' logs since `marks`."""
    time.sleep(0.2)  # let the agents flush the last lines
    counts = dict.fromkeys(LOG_PATTERNS, 0)
    for node in cluster.nodes:
        with open(node.log_path, "rb") as log:
            log.seek(marks.get(node.name, 0))
            text = log.read().decode(errors="replace")
        for key, phrase in LOG_PATTERNS.items():
            counts[key] += text.count(phrase)
    return counts


def cpu_snapshot(cluster: Cluster) -> dict[str, float]:
    return {n.name: cpu_seconds(n.proc.pid) for n in cluster.nodes} | {"bench": cpu_seconds()}


def cpu_pct(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
    return {k: 100 * (after[k] - before[k]) / wall for k in before} if wall > 0 else {}


# --------------------------------------------------------------------------------------
# Phases.

def throughput(cluster: Cluster, leader: Node, workers: int, evals: int, rng: random.Random,
               poll: float, limit: float, settle: float = 1.5) -> dict:
    """Queue `evals` evaluations with no workers, then time `workers` per server draining them."""
    set_workers(cluster, 0)
    time.sleep(settle)  # a stopped worker's dequeue already waiting on the broker (0.5 s) may still take one
    tag = f"k{workers}-{rng.randrange(16**6):06x}"
    counts = {f"{tag}-{i:04d}": rng.randint(1, 3) for i in range(evals)}
    client = KeepAlive(leader.ip, leader.http_port, timeout=30)
    reg_start = time.monotonic()
    for job_id, count in counts.items():
        status = client.put("/v1/jobs", small_job(job_id, count, 20, 16))
        if status != 200:
            raise RuntimeError(f"job register {job_id}: HTTP {status}")
    client.close()
    register_s = time.monotonic() - reg_start
    ids = set(counts)
    queued = wait_until(lambda: (lambda ev: ev if ev is not None and len({e["JobID"] for e in ev}) == evals
                                 else None)(batch_evals(leader, ids)), 60, poll, "all evaluations stored")
    early = sum(1 for e in queued if e.get("Status") != PENDING)
    marks = log_marks(cluster)
    cpu0 = cpu_snapshot(cluster)
    t0_ns, t0 = time.time_ns(), time.monotonic()
    set_workers(cluster, workers)
    set_s = time.monotonic() - t0

    def drained() -> list[dict] | None:
        ev = batch_evals(leader, ids)
        return ev if ev is not None and ev and not any(e.get("Status") == PENDING for e in ev) else None
    final = wait_until(drained, limit, poll, f"batch of {evals} evaluations with K={workers}")
    wall_poll = time.monotonic() - t0
    cpu = cpu_pct(cpu0, cpu_snapshot(cluster), wall_poll)
    paused = worker_status(leader)
    last_ns = max(int(e.get("ModifyTime") or 0) for e in final)
    wall = max((last_ns - t0_ns) / 1e9, 1e-9)
    allocs = leader.get("/v1/allocations?stale=true", timeout=30) or []
    placed = sum(1 for a in allocs if a.get("JobID") in ids)
    store_evals = len(leader.get("/v1/evaluations?stale=true", timeout=30) or [])
    statuses: dict[str, int] = {}
    for e in final:
        statuses[e.get("Status", "?")] = statuses.get(e.get("Status", "?"), 0) + 1
    return {"workers": workers, "effective_workers": 3 * workers - (3 * workers) // 4,
            "leader_workers": paused, "evals": evals, "eval_records": len(final), "statuses": statuses,
            "completed_before_start": early, "wanted_allocs": sum(counts.values()), "placed_allocs": placed,
            "register_s": register_s, "config_put_s": set_s, "wall_s": wall, "wall_poll_s": wall_poll,
            "evals_per_s": evals / wall, "allocs_per_s": placed / wall, "cpu_pct": cpu,
            "store_allocs": len(allocs), "store_evals": store_evals, "leader": leader.name,
            "logs": log_counts(cluster, marks)}


def big_job(cluster: Cluster, leader: Node, workers: int, count: int, poll: float, limit: float) -> dict:
    set_workers(cluster, workers)
    job_id = f"big-{count}-{uuid.uuid4().hex[:6]}"
    marks = log_marks(cluster)
    cpu0 = cpu_snapshot(cluster)
    t0_ns, t0 = time.time_ns(), time.monotonic()
    status, body = request(leader.ip, leader.http_port, "PUT", "/v1/jobs", small_job(job_id, count, 10, 10), 30)
    put_s = time.monotonic() - t0
    if status != 200:
        raise RuntimeError(f"big job register: HTTP {status} {body[:200]!r}")

    def placed() -> list[dict] | None:
        allocs = leader.get(f"/v1/job/{job_id}/allocations?stale=true", timeout=20)
        return allocs if allocs is not None and len(allocs) >= count else None
    allocs = wait_until(placed, limit, poll, f"{count} allocations of {job_id}")
    wall_poll = time.monotonic() - t0
    cpu = cpu_pct(cpu0, cpu_snapshot(cluster), wall_poll)
    evals = wait_until(lambda: (lambda ev: ev if ev and all(e.get("Status") != PENDING for e in ev) else None)(
        leader.get(f"/v1/job/{job_id}/evaluations?stale=true", timeout=10)), 60, poll, "big job's eval done")
    # An allocation's CreateTime is stamped when the worker starts planning; the evaluation's
    # ModifyTime when it is acked, after the plan was committed: that is "all placed".
    last_ns = max(int(e.get("ModifyTime") or 0) for e in evals)
    return {"workers": workers, "count": count, "allocs": len(allocs), "put_s": put_s,
            "wall_s": (last_ns - t0_ns) / 1e9, "wall_poll_s": wall_poll,
            "logs": log_counts(cluster, marks),
            "alloc_create_spread_s": (max(int(a.get("CreateTime") or 0) for a in allocs)
                                      - min(int(a.get("CreateTime") or 0) for a in allocs)) / 1e9,
            "nodes_used": len({a.get("NodeID") for a in allocs}),
            "client_status": sorted({str(a.get("ClientStatus")) for a in allocs}),
            "evals": [e.get("Status") for e in evals], "cpu_pct": cpu}


# --------------------------------------------------------------------------------------
# Nomad's published figures (looked up; nothing here is measured).

NOMAD = [  # (challenge, figure, value, source)
    ("C1M", "when", "published March 2016 (the C2M page: 'In March 2016, we demonstrated ...'); Nomad 0.3.1",
     "https://www.hashicorp.com/c2m"),
    ("C1M", "what", "1,000,000 Docker containers on 5,000 hosts (GCE instances, 1 region) in under 5 minutes",
     "https://www.hashicorp.com/c1m"),
    ("C1M", "rate", "3,750 containers per second", "https://www.hashicorp.com/c1m"),
    ("C1M", "servers", "5 Nomad servers (schedulers); clients not counted in the 5,000",
     "https://www.hashicorp.com/c1m"),
    ("C1M", "jobs", "1,000 jobs x 1,000 tasks (C100K: 500 clients, 318 jobs x 315 tasks = 100,170); "
     "jobs carried constraints to strain the scheduler", "https://www.hashicorp.com/c1m"),
    ("C2M", "when", "with Nomad 1.0's general availability (a repost of the announcement is dated 2021-01-15)",
     "https://www.ashnik.com/hashicorp-nomad-meets-the-2-million-container-challenge/"),
    ("C2M", "what", "2,000,000 Docker containers on 6,100 hosts (AWS Spot instances) in 10 AWS regions",
     "https://www.hashicorp.com/c2m"),
    ("C2M", "time", "22 minutes 14 seconds", "https://www.hashicorp.com/c2m"),
    ("C2M", "rate", "'an average rate of nearly 1,500 containers per second'", "https://www.hashicorp.com/c2m"),
    ("C2M", "servers", "3 schedulers (Nomad servers)", "https://www.hashicorp.com/c2m"),
    ("C1M/C2M", "evaluations per second, or the time to place one job of 1,000 tasks", "not found",
     "neither page gives them"),
]

COMPARABLE = (
    "Comparable: the unit (a placement = an allocation assigned to a node by a "
    "scheduler worker, counted when the server has committed it), the architecture (an "
    "eval broker on the leader, workers on every server planning optimistically from "
    "their state snapshot, a plan applier on the leader checking each plan against "
    "current state, everything committed through Raft, the leader pausing 3/4 of its own "
    "workers), and the order of magnitude of one job's size (C1M used jobs of 1,000 tasks, "
    "as the big-job figure here does). Not comparable: Nomad is Go with BoltDB/MemDB on "
    "dedicated machines (5 or 3 servers, a data center or 10 regions) and its figures "
    "count containers scheduled across 5,000-6,100 real client hosts, with real tasks "
    "started by real clients (the C2M graph also tracks 'Running'); shoal is Python on "
    "one host with 2 cores shared by all three servers, the benchmark process (100 "
    "simulated nodes and the pollers) and whatever else runs there, over loopback, with "
    "100 nodes whose allocations nobody runs (they stay 'pending'); shoal's placement is "
    "simpler (bin-packing on CPU/memory, no constraints, affinities, spreads, ports or "
    "devices); shoal's figures here are per batch of a few hundred evaluations, not a "
    "sustained rate over millions; and the polling itself costs the leader CPU. Read "
    "Nomad's figures as scale, not as a target: a ratio between the two says more "
    "about language, hardware and scope than about the design."
)


# --------------------------------------------------------------------------------------
# Report.

def logs_cell(row: dict) -> str:
    logs = row.get("logs") or {}
    extra = ", ".join(f"{k} {v}" for k, v in logs.items() if v and k not in ("plan_rejected", "nacked"))
    return f"{logs.get('plan_rejected', '-')} / {logs.get('nacked', '-')}" + (f" ({extra})" if extra else "")


def report(results: dict) -> str:
    host = results["host"]
    clusters = results.get("clusters") or []
    regs = [c["nodes_registered_s"] for c in clusters]
    out = [f"Run {results['date']}: {host['cpus']} CPUs, load average {host['load_start']} at start, "
           f"{host.get('load_end', '-')} at end; 3 servers + the benchmark process on one host; "
           f"{'one shared cluster for every batch' if results['args'].get('shared') else 'a fresh cluster per batch'}"
           f" ({len(clusters)} started); {results['args']['nodes']} simulated nodes per cluster (one benchmark "
           f"process, RPC wire protocol), registered in {fmt(max(regs) if regs else None)} s at most; "
           f"heartbeats sent {results.get('heartbeats', '-')}, heartbeat errors {results.get('heartbeat_errors', '-')}"
           f", nodes not ready at the end of a cluster: {sum(c.get('nodes_not_ready_at_end', 0) for c in clusters)}.",
           ""]
    rows = results.get("throughput") or []
    if rows:
        out += ["| round | K per server | workers (3K - floor(3K/4)) | leader workers | evals | allocs placed / wanted "
                "| eval statuses | time (s) | evals/s | allocs/s | CPU % of a core: servers / bench "
                "| plans partly rejected / nacks | allocs in the store |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            cpu = r.get("cpu_pct") or {}
            servers = " + ".join(fmt(v, 0) for k, v in cpu.items() if k != "bench")
            leader = ", ".join(f"{v} {k}" for k, v in sorted(r["leader_workers"].items()))
            statuses = ", ".join(f"{v} {k}" for k, v in sorted(r["statuses"].items()))
            out.append(f"| {r.get('round', 1)} | {r['workers']} | {r['effective_workers']} | {leader} | {r['evals']} | "
                       f"{r['placed_allocs']} / {r['wanted_allocs']} | {statuses} | {fmt(r['wall_s'])} | "
                       f"{fmt(r['evals_per_s'], 1)} | {fmt(r['allocs_per_s'], 1)} | {servers} / "
                       f"{fmt(cpu.get('bench'), 0)} | {logs_cell(r)} | {r.get('store_allocs', '-')} |")
        out += ["", "time = from the `num_schedulers` PUT to the last evaluation's ModifyTime (the poller's "
                f"own view, every {results['args']['poll']} s, is in the JSON as wall_poll_s). Evaluations queued with 0 workers; "
                f"completed before the clock started: {sum(r['completed_before_start'] for r in rows)}.", ""]
    big = results.get("big_job")
    if big:
        cpu = big.get("cpu_pct") or {}
        out += ["| big job | K per server | allocations | nodes used | time to all placed (s) | poll view (s) "
                "| evals | CPU % servers / bench | plans partly rejected / nacks |", "|---|---|---|---|---|---|---|---|---|",
                f"| Count {big['count']} | {big['workers']} | {big['allocs']} | {big['nodes_used']} | "
                f"{fmt(big['wall_s'])} | {fmt(big['wall_poll_s'])} | {', '.join(map(str, big['evals']))} | "
                f"{' + '.join(fmt(v, 0) for k, v in cpu.items() if k != 'bench')} / {fmt(cpu.get('bench'), 0)} | "
                f"{logs_cell(big)} |",
                "", f"time = from the job PUT to its evaluation's ModifyTime (acked after the plan was "
                f"committed; the poller saw all {big['count']} allocations after the 'poll view'); their client "
                f"status: {', '.join(big['client_status'])} (nobody runs them).", ""]
    if results.get("error"):
        out += [f"ERROR: {results['error']}", ""]
    out += ["| Nomad (published, not measured here) | figure | value | source |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in NOMAD]
    out += ["", "What is comparable and what isn't: " + COMPARABLE]
    return "\n".join(out)


# --------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer evaluations per batch (100)")
    p.add_argument("--nodes", type=int, default=100, help="simulated client nodes")
    p.add_argument("--node-cpu", type=int, default=4000)
    p.add_argument("--node-memory", type=int, default=8192)
    p.add_argument("--evals", type=int, default=None, help="evaluations per batch (default 400; --quick 100)")
    p.add_argument("--workers", default="1,2,4,8", help="num_schedulers values per server")
    p.add_argument("--big", type=int, default=1000, help="Count of the big job (0: skip)")
    p.add_argument("--poll", type=float, default=1.0,
                   help="poll period of the evaluation list (s); only detection, the times come from ModifyTime")
    p.add_argument("--rounds", type=int, default=None, help="sweeps over --workers (default 2; --quick 1)")
    p.add_argument("--shared", action="store_true",
                   help="one cluster for every batch (the store grows from batch to batch); default: a fresh "
                        "cluster, with freshly registered nodes, per batch and for the big job")
    p.add_argument("--batch-limit", type=float, default=900.0, help="longest wait for one batch (s)")
    p.add_argument("--port-base", type=int, default=4646, help="HTTP port; RPC +1, gossip +2 (same on each IP)")
    p.add_argument("--subnet", type=int, default=None, help="X of 127.0.X.1-3 (default: a free random one)")
    p.add_argument("--log-level", default="INFO", help="agents' level (INFO: plan rejections are counted)")
    p.add_argument("--python", default=str(ROOT / ".venv/bin/python"))
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=60.0, help="cap of the whole run")
    p.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "shoal-sched-bench" / "sched_bench.json"),
                   help="raw JSON results, rewritten after every phase (default in the temp folder)")
    args = p.parse_args(argv)
    args.evals = args.evals if args.evals is not None else (100 if args.quick else 400)
    args.rounds = args.rounds if args.rounds is not None else (1 if args.quick else 2)
    args.worker_list = [int(x) for x in args.workers.split(",") if x.strip()]
    return args


class Bench:
    """Starts clusters (each with its simulated nodes) and stops them, every process by PID."""

    def __init__(self, args, rng: random.Random, workdir: Path, logdir: Path) -> None:
        self.args, self.rng, self.workdir, self.logdir = args, rng, workdir, logdir
        self.started = 0
        self.sims: SimClients | None = None
        self.cluster: SchedCluster | None = None
        self.heartbeats = self.heartbeat_errors = 0

    def start(self, results: dict) -> tuple[SchedCluster, Node]:
        args = self.args
        self.started += 1
        tag = f"c{self.started}"
        octet = choose_subnet(self.rng, args.port_base, args.subnet)
        nodes = [Node(i, f"s{i}", f"127.0.{octet}.{i + 1}", args.port_base, args.port_base + 1,
                      args.port_base + 2, self.workdir / tag / f"s{i}", self.logdir / f"{tag}-s{i}.log")
                 for i in range(3)]
        cluster = self.cluster = SchedCluster(args.python, nodes, args.log_level)
        for node in nodes:
            cluster.start(node, retry_join=False)
        for node in nodes:
            cluster.wait_http(node, 30)
        for node in nodes[1:]:
            status, body = request(node.ip, node.http_port, "PUT",
                                   f"/v1/agent/join?address={nodes[0].ip}:{nodes[0].serf_port}", timeout=20)
            if status != 200:
                raise RuntimeError(f"join from {node.name} failed: HTTP {status} {body[:200]!r}")
        leader, took = cluster.wait_healthy(120)
        self.sims = SimClients(cluster, args.nodes, args.node_cpu, args.node_memory)
        reg = self.sims.register(leader)
        listed = leader.get("/v1/nodes?stale=true", timeout=10) or []
        ready = sum(1 for n in listed if n.get("Status") == "ready")
        results.setdefault("clusters", []).append(
            {"tag": tag, "addresses": [n.ip for n in nodes], "leader_after_s": took, "nodes_registered_s": reg,
             "nodes_ready": ready, "heartbeat_ttl_s": [min(self.sims.ttls), max(self.sims.ttls)]})
        print(f"cluster {tag} on 127.0.{octet}.1-3: leader {leader.name} {took:.1f}s after the joins; "
              f"{args.nodes} simulated nodes registered in {reg:.1f}s, {ready} ready "
              f"(TTL {min(self.sims.ttls):.0f}-{max(self.sims.ttls):.0f}s)", flush=True)
        return cluster, leader

    def stop(self, results: dict) -> None:
        if self.sims is not None:
            self.sims.stop()
            self.heartbeats += self.sims.beats
            self.heartbeat_errors += self.sims.errors
            self.sims = None
        if self.cluster is not None:
            leader = self.cluster.agreed_leader(self.cluster.nodes)
            if leader is not None and results.get("clusters"):
                listed = leader.get("/v1/nodes?stale=true", timeout=10) or []
                results["clusters"][-1]["nodes_not_ready_at_end"] = sum(
                    1 for n in listed if n.get("Status") != "ready")
            for node in self.cluster.nodes:
                self.cluster.kill(node)
            self.cluster.pool.shutdown(wait=False)
            self.cluster = None
        results["heartbeats"], results["heartbeat_errors"] = self.heartbeats, self.heartbeat_errors


def run(args, bench: Bench, results: dict, rng: random.Random, save: Callable[[], None]) -> None:
    results["throughput"] = []
    batches = [(w, r) for r in range(args.rounds) for w in args.worker_list]
    cluster = None
    for workers, rnd in batches:
        if cluster is None or not args.shared:
            bench.stop(results)
            cluster, _ = bench.start(results)
        leader, _ = cluster.wait_healthy(120)
        print(f"throughput: {args.evals} evaluations, num_schedulers={workers} on each server, "
              f"round {rnd + 1}, leader {leader.name}", flush=True)
        row = throughput(cluster, leader, workers, args.evals, rng, args.poll, args.batch_limit)
        row.update({"round": rnd + 1, "cluster": results["clusters"][-1]["tag"]})
        results["throughput"].append(row)
        print(f"  {row['evals_per_s']:.1f} evals/s, {row['allocs_per_s']:.1f} allocs/s "
              f"({row['wall_s']:.2f}s; leader workers {row['leader_workers']}; {row['statuses']}; "
              f"{row['store_allocs']} allocations in the store; logs {row['logs']})", flush=True)
        save()
    if args.big > 0:
        if cluster is None or not args.shared:
            bench.stop(results)
            cluster, _ = bench.start(results)
        leader, _ = cluster.wait_healthy(120)
        workers = max(args.worker_list)
        print(f"big job: Count {args.big}, num_schedulers={workers}", flush=True)
        results["big_job"] = big_job(cluster, leader, workers, args.big, args.poll, args.batch_limit)
        results["big_job"]["cluster"] = results["clusters"][-1]["tag"]
        print(f"  {args.big} allocations placed {results['big_job']['wall_s']:.2f}s after the PUT", flush=True)
        save()
    bench.stop(results)


def main(argv=None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    rng = random.Random(seed)
    atexit.register(kill_all)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    watchdog = threading.Timer(60 * args.max_minutes, lambda: (print("run cap exceeded", file=sys.stderr),
                                                               kill_all(), os._exit(3)))
    watchdog.daemon = True
    watchdog.start()
    out = Path(args.out)
    logdir = out.with_suffix(".logs")
    logdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="sched_bench."))
    bench = Bench(args, rng, workdir, logdir)
    results: dict = {"seed": seed, "args": {k: v for k, v in vars(args).items()},
                     "date": time.strftime("%Y-%m-%d %H:%M %Z"),
                     "host": {"cpus": os.cpu_count(), "uname": " ".join(os.uname()),
                              "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg())},
                     "data_fs": filesystem_of(workdir)}
    print(f"sched_bench seed={seed} ports {args.port_base}-{args.port_base + 2}, data {workdir}, logs {logdir}, "
          f"{os.cpu_count()} CPUs, {'one shared cluster' if args.shared else 'a fresh cluster per batch'}",
          flush=True)

    def save() -> None:
        out.write_text(json.dumps(results, indent=1, default=str))
    try:
        run(args, bench, results, rng, save)
    except (Deadline, RuntimeError, OSError) as error:
        results["error"] = f"{type(error).__name__}: {error}"
        print(f"error: {results['error']}", file=sys.stderr, flush=True)
    finally:
        try:
            bench.stop(results)
        finally:
            kill_all()
        results["host"]["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        save()
        shutil.rmtree(workdir, ignore_errors=True)
    text = report(results)
    print("\n" + text)
    out.with_suffix(".md").write_text(text + "\n")
    print(f"\nraw results: {out}; tables: {out.with_suffix('.md')}; agent logs: {logdir}")
    return 1 if "error" in results else 0


if __name__ == "__main__":
    sys.exit(main())
