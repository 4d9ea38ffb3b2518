"""Raft benchmark: leader failover, commit latency and write throughput of 3 shoal servers.

Measures, on a cluster of three `shoal agent -server -bootstrap-expect 3` processes, each
on its own loopback address 127.0.X.1..3 with a data dir (so every acknowledged write is
fsynced on a majority before the reply):

* failover   - kill -9 of the leader -> every survivor's `GET /v1/status/leader` names
  the same new leader (polled every ~10 ms on all survivors in parallel, 0.3 s HTTP
  timeout); the victim is then restarted with its data dir and ports and `-retry-join`,
  and the next trial waits until all three name one leader, the victim is alive in
  `/v1/agent/members` and a voter again in `/v1/operator/raft/configuration?stale=true`;
* commit latency - sequential single `PUT /v1/var/<path>` on one keep-alive connection
  (http.client), first to the leader, then to a follower (which forwards over RPC);
  the figure is the client's HTTP round trip, so it includes HTTP parsing both ways;
* throughput - M writes from C concurrent keep-alive clients (threads) to the leader;
  writes/s = acknowledged (HTTP 200) writes / wall time of the whole batch.

Beside them it prints the goals of issue 3 ("Benchmark") with met / NOT met, and
pysyncobj's published figures (with their source and what they measured) for reference.

The harness never imports shoal: it starts agents on the command line, talks HTTP to
them and stops them with signals. Every process it starts is killed by PID at the end,
also on Ctrl-C, SIGTERM or an exception.

Usage:  .venv/bin/python scripts/bench/raft_bench.py [--trials 30] [--writes 2000]
        [--concurrency 32] [--quick] [--out results.json]
See scripts/bench/README.md ("Raft") for the figures and the results.
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]

# Process registry and cleanup: scripts/bench/benchprocs.py.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchprocs import PROCS, PROCS_LOCK as _PROCS_LOCK, Deadline, kill_all, on_signal as _on_signal, reap, spawn  # noqa: E402



# --------------------------------------------------------------------------------------
# HTTP helpers (http.client: one short connection per poll, keep-alive for the writers).

def request(host: str, port: int, method: str, path: str, body: bytes | None = None,
            timeout: float = 5.0) -> tuple[int, bytes]:
    """One request on a fresh connection; raises OSError / HTTPException on failure."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def get_json(host: str, port: int, path: str, timeout: float = 1.0):
    """GET and parse JSON; None on any error or non-200 answer."""
    try:
        status, body = request(host, port, "GET", path, timeout=timeout)
        return json.loads(body) if status == 200 else None
    except (OSError, http.client.HTTPException, ValueError):
        return None


class KeepAlive:
    """One keep-alive HTTP/1.1 connection that reconnects after an error."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def put(self, path: str, body: bytes) -> int:
        return self.call("PUT", path, body)

    def call(self, method: str, path: str, body: bytes | None = None) -> int:
        """One request; returns the HTTP status, or 0 on a connection error."""
        for attempt in (0, 1):  # a keep-alive connection the server closed is retried once
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                response.read()
                if response.will_close:
                    self.close()
                return response.status
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 1:
                    return 0
        return 0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def ports_free(ip: str, ports: list[int], udp: set[int]) -> bool:
    for port in ports:
        kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if port in udp else [])
        for kind in kinds:
            with socket.socket(socket.AF_INET, kind) as sock:
                if kind == socket.SOCK_STREAM:  # as the agents do: TIME_WAIT leftovers do not count
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((ip, port))
                except OSError:
                    return False
    return True


# --------------------------------------------------------------------------------------
# The cluster.

@dataclass
class Node:
    index: int
    name: str
    ip: str
    http_port: int
    rpc_port: int
    serf_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def raft_addr(self) -> str:
        return f"{self.ip}:{self.rpc_port}"

    def get(self, path: str, timeout: float = 1.0):
        return get_json(self.ip, self.http_port, path, timeout)


@dataclass
class Cluster:
    python: str
    nodes: list[Node]
    log_level: str
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=4))

    def command(self, node: Node, retry_join: bool) -> list[str]:
        argv = [self.python, "-m", "agent", "agent", "-server", "-node", node.name, "-bind", node.ip,
                "-http-port", str(node.http_port), "-rpc-port", str(node.rpc_port),
                "-serf-port", str(node.serf_port), "-data-dir", str(node.data_dir),
                "-bootstrap-expect", str(len(self.nodes)), "-gossip-profile", "lan",
                "-log-level", self.log_level]
        if retry_join:
            for other in self.nodes:
                if other is not node:
                    argv += ["-retry-join", f"{other.ip}:{other.serf_port}"]
            argv += ["-retry-interval", "1s"]
        return argv

    def start(self, node: Node, retry_join: bool) -> None:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(node.log_path, "ab")
        log.write(f"# {time.strftime('%H:%M:%S')} start #{node.starts + 1}\n".encode())
        log.flush()
        node.proc = spawn(self.command(node, retry_join), cwd=str(ROOT), stdin=subprocess.DEVNULL,
                          stdout=log, stderr=subprocess.STDOUT)
        log.close()
        node.starts += 1

    def kill(self, node: Node) -> None:
        if node.proc is not None:
            reap(node.proc)

    def wait_http(self, node: Node, limit: float) -> None:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if node.proc is not None and node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited with {node.proc.returncode}; see {node.log_path}")
            if node.get("/v1/agent/members", timeout=0.5) is not None:
                return
            time.sleep(0.05)
        raise Deadline(f"{node.name} HTTP not up after {limit}s")

    def leaders(self, nodes: list[Node], timeout: float = 0.3) -> list[str | None]:
        """Each node's answer to /v1/status/leader, asked in parallel (None: no answer)."""
        futures = [self.pool.submit(node.get, "/v1/status/leader", timeout) for node in nodes]
        return [f.result() for f in futures]

    def by_addr(self, addr: str) -> Node | None:
        return next((n for n in self.nodes if n.raft_addr == addr), None)

    def agreed_leader(self, nodes: list[Node]) -> Node | None:
        """The node every one of `nodes` names as leader right now, if they agree."""
        answers = self.leaders(nodes)
        if answers and all(isinstance(a, str) and a and a == answers[0] for a in answers):
            return self.by_addr(answers[0])
        return None

    def healthy(self) -> Node | None:
        """All three name one leader; every node sees all three alive in gossip and, in its
        own (stale) raft configuration, all three as voters. Returns the leader or None."""
        leader = self.agreed_leader(self.nodes)
        if leader is None:
            return None
        for node in self.nodes:
            members = node.get("/v1/agent/members")
            alive = {m["Name"].split(".")[0] for m in (members or {}).get("Members", [])
                     if str(m.get("Status", "")).lower() == "alive"}
            if not all(n.name in alive for n in self.nodes):
                return None
            config = node.get("/v1/operator/raft/configuration?stale=true")
            servers = (config or {}).get("Servers") or []
            voters = {str(s.get("Address")) for s in servers if s.get("Voter")}
            if len(servers) != len(self.nodes) or not all(n.raft_addr in voters for n in self.nodes):
                return None
        return leader

    def wait_healthy(self, limit: float, poll: float = 0.2) -> tuple[Node, float]:
        start = time.monotonic()
        while time.monotonic() - start < limit:
            leader = self.healthy()
            if leader is not None:
                return leader, time.monotonic() - start
            time.sleep(poll)
        raise Deadline(f"cluster not healthy (one leader, 3 alive voters) after {limit}s")


def choose_subnet(rng: random.Random, base: int, wanted: int | None) -> int:
    """A 127.0.X.0/24 whose .1-.3 have our three ports free (TCP, and UDP for gossip)."""
    candidates = [wanted] if wanted is not None else rng.sample(range(100, 250), 20)
    for octet in candidates:
        if all(ports_free(f"127.0.{octet}.{i + 1}", [base, base + 1, base + 2], {base + 2}) for i in range(3)):
            return octet
    raise RuntimeError(f"no free 127.0.X.1-3 with ports {base}-{base + 2} among {candidates}")


# --------------------------------------------------------------------------------------
# Statistics and formatting.

def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (with 30 values, p99 is the largest)."""
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def summary(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"n": len(values), "min": min(values), "median": pct(values, 0.5), "p90": pct(values, 0.9),
            "p99": pct(values, 0.99), "max": max(values)}


def fmt(x, digits=2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def met(value, ok: Callable[[float], bool]) -> str:
    if value is None:
        return "NOT met (no figure)"
    return "met" if ok(value) else "**NOT met**"


# --------------------------------------------------------------------------------------
# Phases.

def failover(cluster: Cluster, trials: int, poll: float, limit: float, rejoin_limit: float) -> dict:
    times: list[float] = []
    rejoins: list[float] = []
    timeouts = 0
    leader, _ = cluster.wait_healthy(rejoin_limit)
    for trial in range(trials):
        victim = leader
        survivors = [n for n in cluster.nodes if n is not victim]
        t0 = time.monotonic()
        os.kill(victim.proc.pid, signal.SIGKILL)
        new_leader = None
        while time.monotonic() - t0 < limit:
            tick = time.monotonic()
            agreed = cluster.agreed_leader(survivors)
            if agreed is not None and agreed is not victim:
                new_leader = agreed
                break
            time.sleep(max(0.0, poll - (time.monotonic() - tick)))
        elapsed = time.monotonic() - t0
        cluster.kill(victim)  # reap the killed process
        if new_leader is None:
            timeouts += 1
            print(f"  trial {trial + 1}: no agreed new leader after {limit:.0f}s", flush=True)
        else:
            times.append(elapsed)
        cluster.start(victim, retry_join=True)
        leader, rejoin = cluster.wait_healthy(rejoin_limit)
        rejoins.append(rejoin)
        shown = "timeout" if new_leader is None else f"{elapsed:.3f}s"
        print(f"  trial {trial + 1}/{trials}: killed {victim.name}, new leader "
              f"{new_leader.name if new_leader else '-'} named by all survivors after {shown}; "
              f"healthy again {rejoin:.1f}s after restart", flush=True)
    return {"trials": trials, "timeouts": timeouts, "seconds": times, "summary": summary(times),
            "rejoin": summary(rejoins), "poll_s": poll}


def var_body(i: int) -> bytes:
    return json.dumps({"Items": {"k": f"value-{i:08d}"}}).encode()


def latency(node: Node, writes: int, warmup: int, label: str) -> dict:
    """Sequential requests on one keep-alive connection: PUT of a variable, or for the
    "http_floor" row a GET of /v1/status/leader (HTTP stack only, no raft)."""
    client = KeepAlive(node.ip, node.http_port)
    errors = 0
    samples: list[float] = []
    for i in range(warmup + writes):
        start = time.perf_counter()
        if label == "http_floor":
            status = client.call("GET", "/v1/status/leader")
        else:
            status = client.put(f"/v1/var/bench/lat/{label}/{i % 50}", var_body(i))
        took = time.perf_counter() - start
        if status != 200:
            errors += 1
        elif i >= warmup:
            samples.append(took * 1000)
    client.close()
    return {"node": node.name, "role": label, "writes": writes, "errors": errors, "ms": summary(samples)}


def fsync_floor(directory: Path, count: int) -> dict:
    """Append 100 bytes + fsync, `count` times, in the servers' temp folder: the disk's
    share of one commit (the leader and a follower each fsync before it is acknowledged)."""
    path = directory / "fsync-probe"
    samples: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, b"x" * 100)
            os.fsync(fd)
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return {"ms": summary(samples)}


def filesystem_of(path: Path) -> str:
    """`device type` of the mount holding `path` (longest matching mount point in /proc/mounts)."""
    best, found = "", "unknown"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return found
    target = str(path.resolve())
    for line in lines:
        device, point, kind = line.split()[:3]
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, found = point, f"{device} {kind} on {point}"
    return found


def cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU seconds of a child (from /proc) or, with no pid, of this process."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(cluster: Cluster, node: Node, writes: int, concurrency: int) -> dict:
    counter = itertools.count()
    lock = threading.Lock()
    statuses: dict[int, int] = {}
    samples: list[float] = []
    barrier = threading.Barrier(concurrency + 1)

    def worker(w: int) -> None:
        client = KeepAlive(node.ip, node.http_port)
        mine: list[float] = []
        codes: dict[int, int] = {}
        barrier.wait()
        while True:
            with lock:
                i = next(counter)
            if i >= writes:
                break
            start = time.perf_counter()
            status = client.put(f"/v1/var/bench/tput/c{concurrency}/{i % 200}", var_body(i))
            mine.append((time.perf_counter() - start) * 1000)
            codes[status] = codes.get(status, 0) + 1
        client.close()
        with lock:
            samples.extend(mine)
            for code, count in codes.items():
                statuses[code] = statuses.get(code, 0) + count

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.monotonic()
    cpu0 = {n.name: cpu_seconds(n.proc.pid) for n in cluster.nodes} | {"client": cpu_seconds()}
    for thread in threads:
        thread.join()
    wall = time.monotonic() - start
    cpu1 = {n.name: cpu_seconds(n.proc.pid) for n in cluster.nodes} | {"client": cpu_seconds()}
    cpu_pct = {name: 100 * (cpu1[name] - cpu0[name]) / wall for name in cpu0} if wall > 0 else {}
    acked = statuses.get(200, 0)
    return {"node": node.name, "concurrency": concurrency, "writes": writes, "acked": acked, "cpu_pct": cpu_pct,
            "errors": writes - acked, "statuses": {str(k): v for k, v in statuses.items()},
            "wall_s": wall, "writes_per_s": acked / wall if wall > 0 else None, "ms": summary(samples)}


def rpc_throughput(cluster: Cluster, node: Node, writes: int, inflight: int) -> dict:
    """Writes sent straight to the leader's rpc port (``0x01`` + msgpack frames, the
    ``State.Apply`` method followers use to forward), ``inflight`` outstanding at a time.

    This is raft's own batched throughput (leader fsync, replication, follower fsync,
    apply), without the HTTP layer, which costs ~1 ms of CPU per request on its own.
    """
    import msgpack  # a runtime dependency of shoal, not a shoal module

    sock = socket.create_connection((node.ip, node.rpc_port), timeout=30)
    sock.sendall(b"\x01")
    sent = done = errors = 0
    buffer = b""

    def send(count: int) -> None:
        nonlocal sent
        frames = []
        for _ in range(count):
            if sent >= writes:
                break
            command = {"Type": "var_upsert", "Cas": None, "Time": time.time_ns(),
                       "Var": {"Namespace": "default", "Path": f"bench/rpc/{sent % 200}",
                               "Items": {"i": str(sent)}}}
            payload = msgpack.packb({"Seq": sent + 1, "Method": "State.Apply", "Args": command},
                                    use_bin_type=True)
            frames.append(len(payload).to_bytes(4, "big") + payload)
            sent += 1
        if frames:
            sock.sendall(b"".join(frames))

    cpu0 = {n.name: cpu_seconds(n.proc.pid) for n in cluster.nodes} | {"client": cpu_seconds()}
    start = time.monotonic()
    send(inflight)
    while done < writes:
        data = sock.recv(1 << 20)
        if not data:
            break
        buffer += data
        answered = 0
        while len(buffer) >= 4:
            length = int.from_bytes(buffer[:4], "big")
            if len(buffer) < 4 + length:
                break
            answer = msgpack.unpackb(buffer[4:4 + length], raw=False)
            buffer = buffer[4 + length:]
            answered += 1
            if answer.get("Error") or (answer.get("Result") or {}).get("Error"):
                errors += 1
        done += answered
        send(answered)
    wall = time.monotonic() - start
    sock.close()
    cpu1 = {n.name: cpu_seconds(n.proc.pid) for n in cluster.nodes} | {"client": cpu_seconds()}
    cpu_pct = {name: 100 * (cpu1[name] - cpu0[name]) / wall for name in cpu0} if wall > 0 else {}
    acked = done - errors
    return {"node": node.name, "inflight": inflight, "writes": writes, "acked": acked, "errors": writes - acked,
            "wall_s": wall, "writes_per_s": acked / wall if wall > 0 else None, "cpu_pct": cpu_pct}


# --------------------------------------------------------------------------------------
# pysyncobj's published figures (looked up in bakwc/PySyncObj; nothing here is measured).

PYSYNCOBJ_SOURCE = "https://github.com/bakwc/PySyncObj#performance (README, 'Performance' charts)"
PYSYNCOBJ_METHOD = ("https://github.com/bakwc/PySyncObj/blob/master/benchmarks/benchmarks.py + testobj.py: "
                    "all nodes on one host (localhost), each node process submits its share of writes itself "
                    "(no client hop, async callbacks); figure = highest rate at which >= 90 % of the commands "
                    "succeed over 25 s, median of 5 binary searches; default SyncObjConf, whose journalFile=None "
                    "keeps the log in memory (no fsync). Hardware: not stated.")
PYSYNCOBJ = [  # (figure, value, what it measured)
    ("max throughput, 3 nodes", "15K rps", "'RPS vs Cluster Size' chart; the script's size sweep uses 200-byte requests"),
    ("max throughput, 7 nodes", "14K rps", "same chart"),
    ("max throughput, 3 nodes, 10-byte requests", "22K rps", "'RPS vs Request Size' chart"),
    ("max throughput, 3 nodes, 20 KB requests", "5K rps", "same chart"),
    ("commit latency of one write", "not found", "benchmarks.py has a 'delay' mode; no published figure found"),
    ("leader failover time", "not found", "no published figure found"),
]


# --------------------------------------------------------------------------------------
# Report.

def goals_table(results: dict) -> str:
    f, lat, tput = results.get("failover") or {}, results.get("latency") or {}, results.get("throughput") or []
    fs = f.get("summary") or {}
    leader_ms = ((lat.get("leader") or {}).get("ms") or {}).get("median")
    follower_ms = ((lat.get("follower") or {}).get("ms") or {}).get("median")
    rows = ["| figure | measured | goal (issue 3) | met |", "|---|---|---|---|",
            f"| failover, median (s), n={fs.get('n', 0)}, timeouts={f.get('timeouts', '-')} | {fmt(fs.get('median'))} "
            f"| <= 2 s | {met(fs.get('median'), lambda v: v <= 2.0)} |",
            f"| failover, p99 (s) | {fmt(fs.get('p99'))} | <= 4 s | "
            f"{met(fs.get('p99'), lambda v: v <= 4.0 and not f.get('timeouts'))} |",
            f"| commit latency via leader, median (ms, HTTP round trip) | {fmt(leader_ms)} | <= 5 ms | "
            f"{met(leader_ms, lambda v: v <= 5.0)} |",
            f"| commit latency via follower, median (ms, HTTP + RPC forward) | {fmt(follower_ms)} | - | - |"]
    for t in tput:
        rows.append(f"| throughput over HTTP, C={t['concurrency']} clients, {t['writes']} writes (writes/s) | "
                    f"{fmt(t['writes_per_s'], 0)} | >= 2000 writes/s | {met(t['writes_per_s'], lambda v: v >= 2000)} |")
    for t in results.get("rpc_throughput") or []:
        rows.append(f"| batched raft throughput, rpc port, {t['inflight']} in flight, {t['writes']} writes "
                    f"(writes/s) | {fmt(t['writes_per_s'], 0)} | >= 2000 writes/s | "
                    f"{met(t['writes_per_s'], lambda v: v >= 2000)} |")
    return "\n".join(rows)


def detail_tables(results: dict) -> str:
    out = []
    f = results.get("failover")
    if f:
        s, r = f.get("summary") or {}, f.get("rejoin") or {}
        out += ["| failover | n | min | median | p90 | p99 | max | timeouts |", "|---|---|---|---|---|---|---|---|",
                f"| kill -9 leader -> all survivors name new leader (s) | {s.get('n', 0)} | {fmt(s.get('min'))} | "
                f"{fmt(s.get('median'))} | {fmt(s.get('p90'))} | {fmt(s.get('p99'))} | {fmt(s.get('max'))} | "
                f"{f['timeouts']} |",
                f"| restart -> healthy again (one leader, 3 alive voters) (s) | {r.get('n', 0)} | {fmt(r.get('min'), 1)} | "
                f"{fmt(r.get('median'), 1)} | {fmt(r.get('p90'), 1)} | {fmt(r.get('p99'), 1)} | {fmt(r.get('max'), 1)} | - |",
                ""]
    lat = results.get("latency")
    if lat:
        out += ["| commit latency, sequential, one keep-alive connection (ms) | node | n | errors | median | p90 | p99 | max |",
                "|---|---|---|---|---|---|---|---|"]
        labels = {"leader": "PUT via leader", "follower": "PUT via follower (forwarded over RPC)",
                  "http_floor": "GET /v1/status/leader on the leader (HTTP only, no raft)"}
        for role, text in labels.items():
            row = lat.get(role)
            if row:
                s = row["ms"] or {}
                out.append(f"| {text} | {row['node']} | {s.get('n', 0)} | {row['errors']} | {fmt(s.get('median'))} | "
                           f"{fmt(s.get('p90'))} | {fmt(s.get('p99'))} | {fmt(s.get('max'))} |")
        for key, when in (("fsync", "before the PUTs"), ("fsync_end", "at the end of the run")):
            fs = (results.get(key) or {}).get("ms")
            if fs:
                out.append(f"| append 100 B + fsync in the data dirs' file system, {when} (no HTTP, no raft) | - | "
                           f"{fs['n']} | 0 | {fmt(fs['median'])} | {fmt(fs['p90'])} | {fmt(fs['p99'])} | {fmt(fs['max'])} |")
        out += ["", "Latency = client-side HTTP round trip of `PUT /v1/var/...` (request and JSON parsing on both "
                "sides included), acknowledged only after the entry is fsynced on a majority and applied. The GET row "
                "is the same connection's cost without raft (the HTTP part of the PUT figures); the fsync row is "
                "the disk's part (one on the leader, one on a follower, in parallel).", ""]
    tput = results.get("throughput")
    if tput:
        out += ["| throughput to the leader | C | writes | acked | errors | wall (s) | writes/s "
                "| latency median / p99 (ms) | CPU % of a core: leader / followers / client |",
                "|---|---|---|---|---|---|---|---|---|"]
        for t in tput:
            s, cpu = t["ms"] or {}, t.get("cpu_pct") or {}
            others = " + ".join(fmt(v, 0) for k, v in cpu.items() if k not in (t["node"], "client"))
            out.append(f"| {t['node']} | {t['concurrency']} | {t['writes']} | {t['acked']} | {t['errors']} | "
                       f"{fmt(t['wall_s'])} | {fmt(t['writes_per_s'], 0)} | {fmt(s.get('median'), 1)} / "
                       f"{fmt(s.get('p99'), 1)} | {fmt(cpu.get(t['node']), 0)} / {others} / {fmt(cpu.get('client'), 0)} |")
        out += ["", "writes/s = writes acknowledged with HTTP 200 / wall time from the start of the batch to the "
                "last reply. CPU % = user+system time of each process over the batch / wall time.", ""]
    return "\n".join(out)


def pysyncobj_table() -> str:
    rows = ["| pysyncobj (reference, published, not measured here) | value | what |", "|---|---|---|"]
    rows += [f"| {a} | {b} | {c} |" for a, b, c in PYSYNCOBJ]
    rows += ["", f"Source: {PYSYNCOBJ_SOURCE}.", f"Method: {PYSYNCOBJ_METHOD}"]
    return "\n".join(rows)


def report(results: dict) -> str:
    host = results["host"]
    head = (f"Run {results['date']}: {host['cpus']} CPUs, load average {host['load_start']} at start, "
            f"{host.get('load_end', '-')} at end; the benchmark client runs on the same host as the 3 servers; "
            f"data dirs on {results.get('data_fs', 'unknown')}.")
    return "\n\n".join([head, goals_table(results), detail_tables(results), pysyncobj_table()])


# --------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=None, help="failover trials (default 30; --quick 5)")
    p.add_argument("--latency-writes", type=int, default=None, help="sequential writes per row (default 500; --quick 100)")
    p.add_argument("--writes", type=int, default=None, help="writes per throughput run (default 2000; --quick 1000)")
    p.add_argument("--concurrency", type=int, default=32, help="concurrent clients (also run with 64)")
    p.add_argument("--quick", action="store_true", help="fewer trials and writes")
    p.add_argument("--skip", default="", help="comma list of phases to skip: failover,latency,throughput,rpc")
    p.add_argument("--poll", type=float, default=0.01, help="leader poll period during failover (s)")
    p.add_argument("--failover-limit", type=float, default=30.0, help="longest wait for a new leader (s)")
    p.add_argument("--rejoin-limit", type=float, default=120.0, help="longest wait for a healthy cluster (s)")
    p.add_argument("--port-base", type=int, default=4646, help="HTTP port; RPC +1, gossip +2 (same on each IP)")
    p.add_argument("--subnet", type=int, default=None, help="X of 127.0.X.1-3 (default: a free random one)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--python", default=str(ROOT / ".venv/bin/python"))
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=60.0, help="cap of the whole run")
    p.add_argument("--workdir", default=None, help="where the data dirs go (default: the system temp dir)")
    p.add_argument("--keep-data", action="store_true", help="keep the servers' data dirs")
    p.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "shoal-raft-bench" / "raft_bench.json"),
                   help="raw JSON results, rewritten after every phase (default in the temp folder)")
    args = p.parse_args(argv)
    quick = args.quick
    args.trials = args.trials if args.trials is not None else (5 if quick else 30)
    args.latency_writes = args.latency_writes if args.latency_writes is not None else (100 if quick else 500)
    args.writes = args.writes if args.writes is not None else (1000 if quick else 2000)
    return args


def run(args, cluster: Cluster, results: dict, save: Callable[[], None]) -> None:
    skip = set(filter(None, args.skip.split(",")))
    for node in cluster.nodes:
        cluster.start(node, retry_join=False)
    for node in cluster.nodes:
        cluster.wait_http(node, 30)
    seed = cluster.nodes[0]
    for node in cluster.nodes[1:]:
        status, body = request(node.ip, node.http_port, "PUT",
                               f"/v1/agent/join?address={seed.ip}:{seed.serf_port}", timeout=20)
        if status != 200:
            raise RuntimeError(f"join from {node.name} failed: HTTP {status} {body[:200]!r}")
    leader, took = cluster.wait_healthy(args.rejoin_limit)
    results["first_leader_s"] = took
    print(f"cluster up: leader {leader.name} ({leader.raft_addr}), healthy {took:.1f}s after the joins", flush=True)
    if "failover" not in skip:
        print(f"failover: {args.trials} trials", flush=True)
        results["failover"] = failover(cluster, args.trials, args.poll, args.failover_limit, args.rejoin_limit)
        save()
    leader, _ = cluster.wait_healthy(args.rejoin_limit)
    follower = next(n for n in cluster.nodes if n is not leader)
    if "latency" not in skip:
        results["fsync"] = fsync_floor(cluster.nodes[0].data_dir.parent, args.latency_writes)
        save()
        print(f"commit latency: {args.latency_writes} sequential writes via {leader.name} (leader) "
              f"and via {follower.name} (follower)", flush=True)
        results["latency"] = {"leader": latency(leader, args.latency_writes, 20, "leader"),
                              "follower": latency(follower, args.latency_writes, 20, "follower"),
                              "http_floor": latency(leader, args.latency_writes, 20, "http_floor")}
        save()
    if "throughput" not in skip:
        results["throughput"] = []
        for concurrency in sorted({args.concurrency, 64}):
            print(f"throughput: {args.writes} writes, {concurrency} clients, via {leader.name}", flush=True)
            results["throughput"].append(throughput(cluster, leader, args.writes, concurrency))
            save()
    if "rpc" not in skip:
        results["rpc_throughput"] = []
        for inflight in (64, 256):
            print(f"batched raft throughput: {args.writes * 2} writes over the rpc port, {inflight} in flight",
                  flush=True)
            results["rpc_throughput"].append(rpc_throughput(cluster, leader, args.writes * 2, inflight))
            save()
    # The disk's fsync time drifts with what else the host does: probe it again at the end.
    results["fsync_end"] = fsync_floor(cluster.nodes[0].data_dir.parent, args.latency_writes)


def main(argv=None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    rng = random.Random(seed)
    atexit.register(kill_all)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    watchdog = threading.Timer(60 * args.max_minutes, lambda: (print("run cap exceeded", file=sys.stderr),
                                                               kill_all(), os._exit(3)))
    watchdog.daemon = True
    watchdog.start()
    out = Path(args.out)
    logdir = out.with_suffix(".logs")
    logdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="raft_bench.", dir=args.workdir))
    octet = choose_subnet(rng, args.port_base, args.subnet)
    nodes = [Node(i, f"r{i}", f"127.0.{octet}.{i + 1}", args.port_base, args.port_base + 1, args.port_base + 2,
                  workdir / f"r{i}", logdir / f"r{i}.log") for i in range(3)]
    cluster = Cluster(args.python, nodes, args.log_level)
    results: dict = {"seed": seed, "args": vars(args), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
                     "host": {"cpus": os.cpu_count(), "uname": " ".join(os.uname()),
                              "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg())},
                     "addresses": [n.ip for n in nodes], "data_fs": filesystem_of(workdir)}
    print(f"raft_bench seed={seed} servers on 127.0.{octet}.1-3 ports {args.port_base}-{args.port_base + 2}, "
          f"data {workdir}, logs {logdir}, {os.cpu_count()} CPUs", flush=True)
    start = time.monotonic()

    def save() -> None:
        out.write_text(json.dumps(results, indent=1, default=str))
    try:
        run(args, cluster, results, save)
    except (Deadline, RuntimeError) as error:
        results["error"] = str(error)
        print(f"error: {error}", file=sys.stderr, flush=True)
    finally:
        kill_all()
        cluster.pool.shutdown(wait=False)
        results["host"]["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        results["elapsed_s"] = time.monotonic() - start
        save()
        if not args.keep_data:
            shutil.rmtree(workdir, ignore_errors=True)
    text = report(results)
    print("\n" + text)
    out.with_suffix(".md").write_text(text + "\n")
    print(f"\nraw results: {out}; tables: {out.with_suffix('.md')}; agent logs: {logdir}")
    return 1 if "error" in results else 0


if __name__ == "__main__":
    sys.exit(main())
