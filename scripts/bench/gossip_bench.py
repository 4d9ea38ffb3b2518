"""Gossip benchmark: shoal agents beside real `serf agent` processes, in one run.

Measures, for each cluster size N and each implementation, on 127.0.0.1:

* join convergence  - the last join call returned -> every agent lists all N alive;
* failure detection - kill -9 of a random non-seed agent -> every survivor says `failed`
  (the victim is restarted under the same name and port and rejoined between kills);
* leave propagation - graceful leave (`serf leave` / SIGTERM) -> every other agent says `left`;
* idle cost         - CPU % of one core, RSS and gossip traffic per agent over a quiet window;
* false failures    - suspicions/failures about agents never killed while CPU hogs
  saturate every core, and one agent SIGSTOPped for a while (suspected, never failed).

Timing follows ../shared/bench/serf-baseline.md §3. The harness never imports shoal: it
starts agents on the command line, joins and inspects them over HTTP (shoal) or the
`serf` CLI, stops them with signals, and timestamps every line each agent writes to its
log pipe with time.monotonic() when the line arrives (one reader thread per agent).
At the end of each phase the members API / `serf members` cross-checks the log view.

Traffic is counted per agent by a packet socket on `lo` (AF_PACKET, needs root; each
loopback packet counted once, by its source port) and, as a host-wide cross-check,
from /proc/net/snmp. Every process the harness starts is killed by PID on exit.

Usage:  .venv/bin/python scripts/bench/gossip_bench.py [--quick] [--out results.json]
See scripts/bench/README.md for the columns and the results.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import queue
import random
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

ROOT = Path(__file__).resolve().parents[2]

# Process registry and cleanup: scripts/bench/benchprocs.py.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchprocs import PROCS, PROCS_LOCK as _PROCS_LOCK, Deadline, kill_all, on_signal as _on_signal, reap, spawn  # noqa: E402



RUN_END = [float("inf")]  # monotonic cap of the whole run


def remaining(limit: float) -> float:
    """Seconds left of a wait of `limit` s, never beyond the run cap."""
    return min(limit, RUN_END[0] - time.monotonic())


# --------------------------------------------------------------------------------------
# Log parsing: one table of regexes per implementation.

@dataclass(frozen=True)
class Event:
    t: float          # time.monotonic() when the harness read the line
    observer: str     # node that wrote the line
    kind: str         # alive | failed | left | leaving | reaped | suspect | suspect_timeout | refute | tcp_fallback | ready | eof
    subject: str      # node the line is about ("" if none)
    detail: str = ""


SERF_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("alive", re.compile(r"serf: EventMemberJoin: (\S+)")),
    ("failed", re.compile(r"serf: EventMemberFailed: (\S+)")),
    ("left", re.compile(r"serf: EventMemberLeave(?: \(forced\))?: (\S+)")),
    ("reaped", re.compile(r"serf: EventMemberReap(?: \(forced\))?: (\S+)")),
    ("suspect", re.compile(r"memberlist: Suspect (\S+) has failed")),
    ("suspect_timeout", re.compile(r"memberlist: Marking (\S+) as failed, suspect timeout reached \((\d+) peer")),
    ("refute", re.compile(r"memberlist: Refuting a (?:suspect|dead) message \(from: (\S+)\)")),
    ("tcp_fallback", re.compile(r"memberlist: Was able to connect to (\S+) but other probes failed")),
    ("ready", re.compile(r"Serf agent running!()")),
]

# shoal logs `<time> [LEVEL] <logger>: <phrase> key=value ...` (STYLE.md §8) to stderr.
# Names are `node.region`; the region is stripped so both implementations use nNN.
# The Serf-level status changes (`member joined|failed|left name=X addr=...`) are what
# Serf's EventMember* lines are; the memberlist-level lines (`member alive|dead|left
# name=X incarnation=...`) are not used for status. Serf's `Suspect X has failed` is
# logged only by the prober whose probe failed: shoal's analogue is `probe failed`;
# shoal's `member suspect` is logged by every node that takes up the suspicion
# (kept as `suspect_seen`, which Serf does not log at INFO).
SHOAL_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("alive", re.compile(r"gossip: member joined:? name=(\S+)")),
    ("failed", re.compile(r"gossip: member failed:? name=(\S+)")),
    ("left", re.compile(r"gossip: member left:? name=(\S+) addr=")),
    ("reaped", re.compile(r"gossip: member reaped:? name=(\S+)")),
    ("suspect", re.compile(r"gossip: probe failed:? name=(\S+)")),
    ("suspect_seen", re.compile(r"gossip: member suspect:? name=(\S+)")),
    ("suspect_timeout", re.compile(r"gossip: suspect timeout:? name=(\S+) confirmations=(\d+)")),
    ("refute", re.compile(r"gossip: refuting (?:suspect|dead) about us:? from=(\S+)")),
    ("tcp_fallback", re.compile(r"gossip: probe reached (\S+) only over tcp")),
]


def parse_line(patterns, observer: str, line: str, t: float) -> Event | None:
    for kind, pattern in patterns:
        match = pattern.search(line)
        if match:
            groups = match.groups()
            subject = (groups[0] or "").split(".")[0] if groups else ""
            detail = groups[1] if len(groups) > 1 and groups[1] else ""
            if kind == "refute":
                detail, subject = subject, observer  # the refuting node is the suspect
            return Event(t, observer, kind, subject, detail)
    return None


def reader(proc: subprocess.Popen, stream, observer: str, patterns, out: queue.Queue, log_path: Path) -> None:
    """Timestamp each line of one agent's output on arrival; parse it; keep a raw copy."""
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        log.write(f"# pid {proc.pid} started\n")
        for raw in iter(stream.readline, b""):
            t = time.monotonic()
            line = raw.decode("utf-8", "replace").rstrip("\n")
            log.write(f"{t:.6f} {line}\n")
            event = parse_line(patterns, observer, line, t)
            if event is not None:
                out.put(event)
        log.write(f"{time.monotonic():.6f} # EOF\n")
    out.put(Event(time.monotonic(), observer, "eof", observer, str(proc.pid)))


# --------------------------------------------------------------------------------------
# HTTP / CLI helpers.

def http(method: str, url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def run_cli(argv: list[str], timeout: float = 20.0) -> subprocess.CompletedProcess:
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        reap(proc)
        raise Deadline(f"{argv[:3]} did not finish in {timeout}s")
    with _PROCS_LOCK:
        PROCS.pop(proc.pid, None)
    return subprocess.CompletedProcess(argv, proc.returncode, out, b"")


def ports_free(ports: list[int], udp: set[int]) -> list[int]:
    busy = []
    for port in ports:
        kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if port in udp else [])
        for kind in kinds:
            with socket.socket(socket.AF_INET, kind) as sock:
                if kind == socket.SOCK_STREAM:  # as the agents do: TIME_WAIT leftovers do not count
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    busy.append(port)
                    break
    return busy


# --------------------------------------------------------------------------------------
# The two implementations, behind one small interface.

@dataclass
class AgentSpec:
    index: int
    name: str
    gossip_port: int
    ports: list[int]


def git_revision() -> str:
    """The commit shoal reports in its `revision` tag (or "unknown"), for Serf's tags."""
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


class SerfImpl:
    label = "serf"
    patterns = SERF_PATTERNS

    def __init__(self, args) -> None:
        self.binary = args.serf
        self.base = args.port_base
        self.nomad_tags = args.serf_tags == "nomad"
        self.revision = git_revision()

    def spec(self, i: int) -> AgentSpec:
        gossip, rpc = self.base + i, self.base + 1000 + i
        return AgentSpec(i, f"n{i:02d}", gossip, [gossip, rpc])

    def tags(self, spec: AgentSpec) -> dict[str, str]:
        """The tags a shoal server carries (Nomad's server tags), so both sides gossip
        node metadata of the same size: fewer large alive messages fit a 1400-byte
        gossip packet, which slows join dissemination for whoever carries them."""
        if not self.nomad_tags:
            return {}
        node_id = "%08x-0000-4000-8000-%012x" % (spec.index, spec.gossip_port)
        return {"role": "nomad", "region": "global", "dc": "dc1", "build": "0.1.0",
                "revision": self.revision, "vsn": "1", "raft_vsn": "3", "id": node_id,
                "rpc_addr": "127.0.0.1", "port": str(spec.ports[1])}

    def command(self, spec: AgentSpec) -> list[str]:
        addr = f"127.0.0.1:{spec.gossip_port}"
        tags = [f"-tag={key}={value}" for key, value in self.tags(spec).items()]
        return [self.binary, "agent", f"-node={spec.name}", f"-bind={addr}", f"-advertise={addr}",
                f"-rpc-addr=127.0.0.1:{spec.ports[1]}", "-log-level=info", "-profile=lan", *tags]

    def log_stream(self) -> str:
        return "stdout"

    def is_ready(self, spec: AgentSpec, seen_ready_line: bool) -> bool:
        return seen_ready_line

    def join(self, spec: AgentSpec, seed: AgentSpec) -> None:
        done = run_cli([self.binary, "join", f"-rpc-addr=127.0.0.1:{spec.ports[1]}",
                        f"127.0.0.1:{seed.gossip_port}"])
        if done.returncode != 0:
            raise RuntimeError(f"serf join from {spec.name} failed: {done.stdout!r}")

    def start_leave(self, spec: AgentSpec, proc: subprocess.Popen) -> subprocess.Popen:
        return spawn([self.binary, "leave", f"-rpc-addr=127.0.0.1:{spec.ports[1]}"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def members(self, spec: AgentSpec) -> dict[str, str]:
        done = run_cli([self.binary, "members", "-format=json", f"-rpc-addr=127.0.0.1:{spec.ports[1]}"])
        data = json.loads(done.stdout)
        return {m["name"]: m["status"] for m in data["members"]}


class ShoalImpl:
    label = "shoal"
    patterns = SHOAL_PATTERNS

    def __init__(self, args) -> None:
        self.python = args.shoal_python
        self.base = args.port_base + 2000

    def spec(self, i: int) -> AgentSpec:
        http_port, rpc, serf = self.base + i, self.base + 1000 + i, self.base + 2000 + i
        return AgentSpec(i, f"n{i:02d}", serf, [http_port, rpc, serf])

    def command(self, spec: AgentSpec) -> list[str]:
        http_port, rpc, serf = spec.ports
        return [self.python, "-m", "agent", "agent", "-server", "-node", spec.name, "-bind", "127.0.0.1",
                "-http-port", str(http_port), "-rpc-port", str(rpc), "-serf-port", str(serf),
                "-gossip-profile", "lan", "-log-level", "INFO", "-leave-on-terminate"]

    def log_stream(self) -> str:
        return "stderr"

    def is_ready(self, spec: AgentSpec, seen_ready_line: bool) -> bool:
        try:
            status, _ = http("GET", f"http://127.0.0.1:{spec.ports[0]}/v1/agent/members", timeout=1.0)
        except OSError:
            return False
        return status == 200

    def join(self, spec: AgentSpec, seed: AgentSpec) -> None:
        status, body = http("PUT", f"http://127.0.0.1:{spec.ports[0]}/v1/agent/join"
                                   f"?address=127.0.0.1:{seed.gossip_port}", timeout=20.0)
        reply = json.loads(body) if status == 200 else {}
        if status != 200 or reply.get("num_joined", 0) < 1:
            raise RuntimeError(f"shoal join from {spec.name} failed: HTTP {status} {body[:200]!r}")

    def start_leave(self, spec: AgentSpec, proc: subprocess.Popen) -> None:
        os.kill(proc.pid, signal.SIGTERM)
        return None

    def members(self, spec: AgentSpec) -> dict[str, str]:
        status, body = http("GET", f"http://127.0.0.1:{spec.ports[0]}/v1/agent/members")
        if status != 200:
            raise RuntimeError(f"members on {spec.name}: HTTP {status}")
        return {m["Name"].split(".")[0]: str(m["Status"]).lower() for m in json.loads(body)["Members"]}


# --------------------------------------------------------------------------------------
# Packet counting on lo.

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
LOOPBACK = socket.inet_aton("127.0.0.1")


class Capture:
    """Count loopback IPv4 packets per (protocol, source port) from an AF_PACKET socket.

    Loopback hands every packet to a packet socket twice (outgoing and incoming); the
    outgoing copy is skipped, as libpcap does, so each packet counts once. Only packets
    from 127.0.0.1 to 127.0.0.1 count (the agents bind there, nothing else should). Counting is
    cheap enough for a thread: idle gossip is a few hundred packets per second.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 2**20)
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.5)
        self.lock = threading.Lock()
        self.udp_packets: dict[int, int] = {}    # source port -> datagrams
        self.udp_bytes: dict[int, int] = {}      # source port -> IP bytes
        self.tcp_bytes: dict[int, int] = {}      # either port -> IP bytes (keyed by the lower port)
        self.stop = False
        self.thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop:
            try:
                frame, addr = self.sock.recvfrom(256)
            except socket.timeout:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING or len(frame) < 14 + 24 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack_from("!H", ip, 2)[0]
            proto = ip[9]
            # Only 127.0.0.1 -> 127.0.0.1: tests elsewhere on the host use other 127/8 addresses.
            if len(ip) < ihl + 4 or ip[12:16] != LOOPBACK or ip[16:20] != LOOPBACK:
                continue
            sport, dport = struct.unpack_from("!HH", ip, ihl)
            with self.lock:
                if proto == 17:
                    self.udp_packets[sport] = self.udp_packets.get(sport, 0) + 1
                    self.udp_bytes[sport] = self.udp_bytes.get(sport, 0) + total
                elif proto == 6:
                    for port in (sport, dport):
                        self.tcp_bytes[port] = self.tcp_bytes.get(port, 0) + total

    def snapshot(self) -> dict:
        with self.lock:
            return {"udp_packets": dict(self.udp_packets), "udp_bytes": dict(self.udp_bytes),
                    "tcp_bytes": dict(self.tcp_bytes), "drops": self.drops()}

    def drops(self) -> int:
        try:
            raw = self.sock.getsockopt(263, 6, 8)  # SOL_PACKET, PACKET_STATISTICS (resets on read)
            return struct.unpack("II", raw)[1]
        except OSError:
            return -1

    def close(self) -> None:
        self.stop = True
        self.thread.join(timeout=2)
        self.sock.close()


def snmp_udp() -> tuple[int, int]:
    """Host-wide (InDatagrams, OutDatagrams) from /proc/net/snmp."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("InDatagrams")]), int(values[header.index("OutDatagrams")])


# --------------------------------------------------------------------------------------
# A running cluster of one implementation and its log-derived membership view.

@dataclass
class Agent:
    spec: AgentSpec
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    ready_line: bool = False


@dataclass
class Cluster:
    impl: object
    n: int
    logdir: Path
    agents: list[Agent] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    view: dict[str, dict[str, tuple[str, float]]] = field(default_factory=dict)  # observer -> subject -> (status, t)
    inbox: queue.Queue = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self.agents = [Agent(self.impl.spec(i)) for i in range(self.n)]
        self.logdir.mkdir(parents=True, exist_ok=True)

    @property
    def names(self) -> list[str]:
        return [a.spec.name for a in self.agents]

    def agent(self, name: str) -> Agent:
        return self.agents[int(name[1:])]

    # --- processes
    def start_agent(self, agent: Agent) -> None:
        stream = self.impl.log_stream()
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT} if stream == "stdout" else \
                {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        agent.proc = spawn(self.impl.command(agent.spec), cwd=ROOT, env=env, **pipes)
        agent.started_at = time.monotonic()
        agent.ready_line = False
        self.view[agent.spec.name] = {agent.spec.name: ("alive", agent.started_at)}
        pipe = agent.proc.stdout if stream == "stdout" else agent.proc.stderr
        log_path = self.logdir / f"{self.impl.label}-n{self.n}-{agent.spec.name}.log"
        threading.Thread(target=reader, args=(agent.proc, pipe, agent.spec.name, self.impl.patterns,
                                              self.inbox, log_path), daemon=True).start()

    def start_all(self, spread: float, ready_limit: float) -> float:
        """Start every agent, spread evenly over `spread` s; wait until each is ready."""
        specs = [a.spec for a in self.agents]
        busy = ports_free([p for s in specs for p in s.ports], {s.gossip_port for s in specs})
        if busy:
            raise RuntimeError(f"{self.impl.label}: ports already in use: {busy[:10]}")
        t0 = time.monotonic()
        for i, agent in enumerate(self.agents):
            delay = t0 + spread * i / self.n - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.start_agent(agent)
        for agent in self.agents:
            self.wait_ready(agent, ready_limit)
        return time.monotonic() - t0

    def wait_ready(self, agent: Agent, limit: float) -> None:
        end = time.monotonic() + remaining(limit)
        while time.monotonic() < end:
            self.pump(0.05)
            if agent.proc.poll() is not None:
                raise RuntimeError(f"{self.impl.label} {agent.spec.name} exited with {agent.proc.returncode} "
                                   f"before it was ready (log in {self.logdir})")
            if self.impl.is_ready(agent.spec, agent.ready_line):
                return
        raise Deadline(f"{self.impl.label} {agent.spec.name} not ready after {limit}s")

    def stop_all(self) -> None:
        for agent in self.agents:
            if agent.proc is not None:
                reap(agent.proc)
        self.pump(0.2)

    def live(self) -> list[Agent]:
        return [a for a in self.agents if a.proc is not None and a.proc.poll() is None]

    # --- events
    def pump(self, wait: float) -> None:
        """Apply every event that arrives within `wait` s (at least the ones already queued)."""
        end = time.monotonic() + wait
        while True:
            timeout = end - time.monotonic()
            try:
                event = self.inbox.get(timeout=max(timeout, 0)) if timeout > 0 else self.inbox.get_nowait()
            except queue.Empty:
                return
            self.apply(event)

    def apply(self, event: Event) -> None:
        self.events.append(event)
        if event.kind == "ready":
            self.agent(event.observer).ready_line = True
        elif event.kind in ("alive", "failed", "left", "leaving") and event.observer in self.view:
            agent = self.agent(event.observer)
            if event.t >= agent.started_at:  # ignore late lines of a previous process
                self.view[event.observer][event.subject] = (event.kind, event.t)
        elif event.kind == "reaped" and event.observer in self.view:
            self.view[event.observer].pop(event.subject, None)

    def status(self, observer: str, subject: str) -> tuple[str, float]:
        return self.view.get(observer, {}).get(subject, ("none", 0.0))

    def wait_until(self, what: str, cond: Callable[[], bool], limit: float) -> None:
        end = time.monotonic() + remaining(limit)
        while True:
            self.pump(0.0)
            if cond():
                return
            if time.monotonic() >= end:
                raise Deadline(f"{self.impl.label} N={self.n}: {what} not reached in {limit}s")
            self.pump(0.05)

    def all_alive(self) -> bool:
        names = self.names
        for observer in names:
            for subject in names:
                status, t = self.status(observer, subject)
                if status != "alive":
                    return False
        return True

    def idle(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pump(min(0.2, end - time.monotonic()))

    def cross_check(self, expect: Callable[[str, str], str | None], observers: list[str]) -> str:
        """Compare members API / `serf members` with what the logs said; 'ok' or the mismatches."""
        wrong = []
        for name in observers:
            try:
                members = self.impl.members(self.agent(name).spec)
            except Exception as error:  # noqa: BLE001 - reported, not fatal
                wrong.append(f"{name}: {error}")
                continue
            for subject in self.names:
                want = expect(name, subject)
                if want is not None and members.get(subject) != want:
                    wrong.append(f"{name} sees {subject} {members.get(subject)} (want {want})")
        return "ok" if not wrong else "; ".join(wrong[:8]) + (f" (+{len(wrong) - 8})" if len(wrong) > 8 else "")


# --------------------------------------------------------------------------------------
# Phases.

def summary(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def join_all(cluster: Cluster) -> dict:
    """Every agent joins n00 one after another; time until every view holds all N alive."""
    seed = cluster.agents[0].spec
    t_first = time.monotonic()
    for agent in cluster.agents[1:]:
        cluster.impl.join(agent.spec, seed)
    t_last = time.monotonic()
    cluster.wait_until("join convergence", cluster.all_alive, 120)
    per_agent = []
    for observer in cluster.names:
        per_agent.append(max(cluster.status(observer, s)[1] for s in cluster.names))
    done = max(per_agent)
    check = cluster.cross_check(lambda o, s: "alive", cluster.names)
    return {"after_last_join": max(0.0, done - t_last), "after_first_join": max(0.0, done - t_first),
            "join_calls": t_last - t_first,
            "per_agent_after_last_join": sorted(max(0.0, t - t_last) for t in per_agent), "cli_check": check}


def rejoin(cluster: Cluster, victim: Agent, limit: float = 60) -> float:
    """Restart a stopped agent with the same name and port, join it to n00, wait for all-alive."""
    if victim.proc is not None:
        reap(victim.proc)
    cluster.start_agent(victim)
    cluster.wait_ready(victim, 60)
    restarted = victim.started_at
    cluster.impl.join(victim.spec, cluster.agents[0].spec)
    t_join = time.monotonic()

    def fresh_alive() -> bool:
        return cluster.all_alive() and all(cluster.status(o, victim.spec.name)[1] >= restarted
                                           for o in cluster.names)
    cluster.wait_until(f"rejoin of {victim.spec.name}", fresh_alive, limit)
    latest = max(cluster.status(o, victim.spec.name)[1] for o in cluster.names)
    latest = max([latest] + [cluster.status(victim.spec.name, s)[1] for s in cluster.names])
    return max(0.0, latest - t_join)


def failure_detection(cluster: Cluster, kills: int, rng: random.Random) -> dict:
    reps = []
    for _ in range(kills):
        cluster.wait_until("all alive before kill", cluster.all_alive, 60)
        victim = rng.choice(cluster.agents[1:])
        name = victim.spec.name
        cluster.idle(rng.uniform(1.0, 2.0))
        t_kill = time.monotonic()
        os.kill(victim.proc.pid, signal.SIGKILL)
        survivors = [o for o in cluster.names if o != name]

        def all_failed() -> bool:
            return all(cluster.status(o, name)[0] == "failed" and cluster.status(o, name)[1] > t_kill
                       for o in survivors)
        rep = {"victim": name}
        try:
            cluster.wait_until(f"failure of {name}", all_failed, 60)
            times = [cluster.status(o, name)[1] - t_kill for o in survivors]
            rep.update(all=max(times), first=min(times))
            rep["cli_check"] = cluster.cross_check(lambda o, s: "failed" if s == name else None, survivors)
        except Deadline as error:
            rep["error"] = str(error)
            rep["not_failed_on"] = {o: cluster.status(o, name)[0] for o in survivors
                                    if cluster.status(o, name)[0] != "failed"}
        after = [e for e in cluster.events if e.t > t_kill and e.subject == name]
        suspects = [e.t - t_kill for e in after if e.kind == "suspect"]
        rep["first_suspect"] = min(suspects) if suspects else None
        rep["suspect_logs"] = len(suspects)
        rep["confirmations"] = sorted({e.detail for e in after if e.kind == "suspect_timeout"})
        rep["rejoin"] = rejoin(cluster, victim)
        reps.append(rep)
        print(f"    kill {name}: all {rep.get('all', float('nan')):.2f}s first {rep.get('first', float('nan')):.2f}s "
              f"first suspect {rep['first_suspect']} rejoin {rep['rejoin']:.2f}s {rep.get('cli_check', rep.get('error'))}",
              flush=True)
    return {"reps": reps, "all": summary([r["all"] for r in reps if "all" in r]),
            "first": summary([r["first"] for r in reps if "first" in r]),
            "first_suspect": summary([r["first_suspect"] for r in reps if r["first_suspect"] is not None]),
            "rejoin": summary([r["rejoin"] for r in reps]), "errors": sum("error" in r for r in reps)}


def leave_propagation(cluster: Cluster, reps_wanted: int, rng: random.Random) -> dict:
    reps = []
    for _ in range(reps_wanted):
        cluster.wait_until("all alive before leave", cluster.all_alive, 60)
        leaver = rng.choice(cluster.agents[1:])
        name = leaver.spec.name
        others = [o for o in cluster.names if o != name]
        cluster.idle(rng.uniform(0.5, 1.0))
        t0 = time.monotonic()
        helper = cluster.impl.start_leave(leaver.spec, leaver.proc)
        returned: list[float] = []
        waiter = helper if helper is not None else leaver.proc  # `serf leave` CLI, or the agent itself
        threading.Thread(target=lambda: (waiter.wait(), returned.append(time.monotonic())), daemon=True).start()

        def all_left() -> bool:
            return all(cluster.status(o, name)[0] == "left" and cluster.status(o, name)[1] > t0 for o in others)
        rep = {"leaver": name}
        try:
            cluster.wait_until(f"leave of {name}", all_left, 60)
            times = [cluster.status(o, name)[1] - t0 for o in others]
            rep.update(all=max(times), first=min(times))
            rep["cli_check"] = cluster.cross_check(lambda o, s: "left" if s == name else None, others)
        except Deadline as error:
            rep["error"] = str(error)
            rep["not_left_on"] = {o: cluster.status(o, name)[0] for o in others
                                  if cluster.status(o, name)[0] != "left"}
        try:
            waiter.wait(timeout=max(0.1, remaining(30)))
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.05)
        rep["leave_call_returned"] = returned[0] - t0 if returned else None
        if helper is not None:
            reap(helper)
        try:
            leaver.proc.wait(timeout=max(0.1, remaining(15)))
            rep["process_exit"] = leaver.proc.returncode
        except subprocess.TimeoutExpired:
            rep["process_exit"] = "still running after 15 s (killed)"
        rep["rejoin"] = rejoin(cluster, leaver)
        reps.append(rep)
        print(f"    leave {name}: all {rep.get('all', float('nan')):.2f}s first {rep.get('first', float('nan')):.2f}s "
              f"exit {rep['process_exit']} {rep.get('cli_check', rep.get('error'))}", flush=True)
    return {"reps": reps, "all": summary([r["all"] for r in reps if "all" in r]),
            "first": summary([r["first"] for r in reps if "first" in r]), "errors": sum("error" in r for r in reps)}


def idle_cost(cluster: Cluster, settle: float, window: float, capture: Capture | None) -> dict:
    cluster.idle(settle)
    procs = {a.spec.name: psutil.Process(a.proc.pid) for a in cluster.live()}
    cpu0 = {n: p.cpu_times() for n, p in procs.items()}
    host0, snmp0 = psutil.cpu_times(), snmp_udp()
    cap0 = capture.snapshot() if capture else None
    t0 = time.monotonic()
    cluster.idle(window)
    elapsed = time.monotonic() - t0
    cap1 = capture.snapshot() if capture else None
    host1, snmp1 = psutil.cpu_times(), snmp_udp()
    cpu1 = {n: p.cpu_times() for n, p in procs.items()}
    rss = {n: p.memory_info().rss / 2**20 for n, p in procs.items()}
    cpu = {n: 100 * ((cpu1[n].user + cpu1[n].system) - (cpu0[n].user + cpu0[n].system)) / elapsed for n in procs}
    busy = lambda h: h.user + h.nice + h.system + h.irq + h.softirq + h.steal  # noqa: E731
    total = lambda h: busy(h) + h.idle + h.iowait  # noqa: E731
    out = {"window": elapsed, "n": len(procs), "cpu_pct": summary(list(cpu.values())),
           "cpu_pct_all_agents": sum(cpu.values()), "rss_mb": summary(list(rss.values())),
           "host_busy_pct": 100 * (busy(host1) - busy(host0)) / max(1e-9, total(host1) - total(host0)),
           "steal_pct": 100 * (host1.steal - host0.steal) / max(1e-9, total(host1) - total(host0)),
           "snmp_udp_in_per_agent_s": (snmp1[0] - snmp0[0]) / elapsed / len(procs),
           "snmp_udp_out_per_agent_s": (snmp1[1] - snmp0[1]) / elapsed / len(procs)}
    if capture:
        ports = [a.spec.gossip_port for a in cluster.agents]
        delta = lambda key, p: cap1[key].get(p, 0) - cap0[key].get(p, 0)  # noqa: E731
        pkts = [delta("udp_packets", p) / elapsed for p in ports]
        out.update(udp_pkt_s=summary(pkts), udp_pkt_s_mean=sum(pkts) / len(pkts),
                   udp_bytes_s_mean=sum(delta("udp_bytes", p) for p in ports) / elapsed / len(ports),
                   tcp_bytes_s_mean=sum(delta("tcp_bytes", p) for p in ports) / elapsed / len(ports),
                   capture_drops=cap1["drops"])
    return out


def count_about(cluster: Cluster, t0: float, t1: float, subjects: set[str]) -> dict:
    window = [e for e in cluster.events if t0 <= e.t < t1 and e.subject in subjects]
    kinds = ("suspect", "suspect_seen", "suspect_timeout", "failed", "refute", "tcp_fallback", "left")
    out = {k: sum(e.kind == k for e in window) for k in kinds}
    out["subjects_failed"] = sorted({e.subject for e in window if e.kind == "failed"})
    out["subjects_suspected"] = sorted({e.subject for e in window if e.kind == "suspect"})
    return out


def lag_probe(stop: threading.Event, samples: list[float]) -> None:
    """The harness's own wakeup lag (overshoot of 100 ms sleeps) as a proxy for the agents'."""
    while not stop.is_set():
        t = time.monotonic()
        time.sleep(0.1)
        samples.append((time.monotonic() - t - 0.1) * 1000)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def hog_window(cluster: Cluster, hogs: int, seconds: float, tail: float) -> dict:
    code = f"import time\nt = time.time() + {seconds}\nx = 0\nwhile time.time() < t:\n    x += 1\n"
    procs = [spawn([sys.executable, "-c", code]) for _ in range(hogs)]
    samples: list[float] = []
    stop = threading.Event()
    threading.Thread(target=lag_probe, args=(stop, samples), daemon=True).start()
    host0 = psutil.cpu_times()
    t0 = time.monotonic()
    cluster.idle(seconds)
    t1 = time.monotonic()
    host1 = psutil.cpu_times()
    stop.set()
    for proc in procs:
        reap(proc)
    cluster.idle(tail)
    t2 = time.monotonic()
    everyone = set(cluster.names)
    total = sum(host1) - sum(host0)
    return {"hogs": hogs, "window": t1 - t0,
            "host_busy_pct": 100 * (1 - (host1.idle - host0.idle) / max(total, 1e-9)),
            "lag_ms_p99": pct(samples, 0.99), "lag_ms_max": max(samples) if samples else None,
            "during": count_about(cluster, t0, t1, everyone), "tail": count_about(cluster, t1, t2, everyone),
            "all_alive_after": cluster.all_alive()}


def pause_test(cluster: Cluster, seconds: float, tail: float, rng: random.Random) -> dict:
    cluster.wait_until("all alive before pause", cluster.all_alive, 60)
    victim = rng.choice(cluster.agents[1:])
    name = victim.spec.name
    t0 = time.monotonic()
    os.kill(victim.proc.pid, signal.SIGSTOP)
    try:
        cluster.idle(seconds)
    finally:
        os.kill(victim.proc.pid, signal.SIGCONT)
    t_resume = time.monotonic()
    back = None
    end = t_resume + tail
    while time.monotonic() < end:
        cluster.pump(0.05)
        if back is None and cluster.all_alive():
            back = time.monotonic() - t_resume
    about = [e for e in cluster.events if e.t >= t0 and e.subject == name]
    suspects = [e.t - t0 for e in about if e.kind == "suspect"]
    failed = [e for e in about if e.kind == "failed" and e.observer != name]
    others = set(cluster.names) - {name}
    by_victim = [e for e in cluster.events if e.t >= t_resume and e.observer == name and e.subject in others]
    return {"victim": name, "pause": seconds, "suspect_logs": len(suspects),
            "first_suspect": min(suspects) if suspects else None,
            "observers_failed": len({e.observer for e in failed}), "of": len(others),
            "first_failed": min(e.t - t0 for e in failed) if failed else None,
            "refutations": sum(e.kind == "refute" for e in about),
            "victim_suspected_peers": sum(e.kind == "suspect" for e in by_victim),
            "victim_failed_peers": sum(e.kind == "failed" for e in by_victim),
            "all_alive_after_resume": back,
            "cli_check": cluster.cross_check(lambda o, s: "alive", cluster.names)}


# --------------------------------------------------------------------------------------
# Driver and report.

def wait_quiet(args) -> dict:
    """Wait (bounded) until the shared host is mostly idle; return what was seen."""
    t0 = time.monotonic()
    busy = psutil.cpu_percent(interval=2.0)
    while args.quiet_busy > 0 and busy > args.quiet_busy and time.monotonic() - t0 < remaining(args.quiet_wait):
        busy = psutil.cpu_percent(interval=2.0)
    return {"host_busy_pct_before": busy, "waited_s": time.monotonic() - t0}


def run_size(impl, n: int, args, rng: random.Random, capture: Capture | None, logdir: Path) -> dict:
    cluster = Cluster(impl, n, logdir)
    result: dict = {"impl": impl.label, "n": n, "quiet": wait_quiet(args)}
    try:
        result["startup"] = cluster.start_all(1.0, 120 + 2 * n)
        result["join"] = join_all(cluster)
        print(f"  {impl.label} N={n}: join {result['join']['after_last_join']:.3f}s "
              f"({result['join']['cli_check']})", flush=True)
        result["idle"] = idle_cost(cluster, args.settle, args.window, capture)
        i = result["idle"]
        print(f"  {impl.label} N={n}: idle cpu {i['cpu_pct']['median']:.2f}% rss {i['rss_mb']['median']:.1f}MB "
              f"udp {i.get('udp_pkt_s_mean', float('nan')):.2f} pkt/s", flush=True)
        result["failure"] = failure_detection(cluster, args.kills, rng)
        result["leave"] = leave_propagation(cluster, args.leaves, rng)
    except (Deadline, RuntimeError, OSError, json.JSONDecodeError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
        print(f"  {impl.label} N={n}: FAILED: {result['error']}", flush=True)
    finally:
        cluster.stop_all()
    return result


def run_stress(impl, args, rng: random.Random, logdir: Path) -> dict:
    cluster = Cluster(impl, args.fp_n, logdir / "stress")
    result: dict = {"impl": impl.label, "n": args.fp_n, "quiet": wait_quiet(args)}
    try:
        cluster.start_all(1.0, 120 + 2 * args.fp_n)
        result["join"] = join_all(cluster)
        cluster.idle(args.settle)
        result["control"] = hog_window(cluster, 0, args.fp_control, 0)
        result["hogs"] = hog_window(cluster, args.hogs, args.fp_seconds, 15)
        h = result["hogs"]
        print(f"  {impl.label} N={args.fp_n}: {args.hogs} hogs {args.fp_seconds}s: suspect "
              f"{h['during']['suspect']} failed {h['during']['failed']} (lag p99 {h['lag_ms_p99']} ms)", flush=True)
        result["pause"] = pause_test(cluster, args.pause, 20, rng)
        p = result["pause"]
        print(f"  {impl.label} N={args.fp_n}: SIGSTOP {args.pause}s: suspect logs {p['suspect_logs']}, "
              f"failed on {p['observers_failed']}/{p['of']}", flush=True)
    except (Deadline, RuntimeError, OSError, json.JSONDecodeError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
        print(f"  {impl.label} stress: FAILED: {result['error']}", flush=True)
    finally:
        cluster.stop_all()
    return result


def fmt(x, digits=2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def mmm(s: dict | None, digits=2) -> str:
    if not s:
        return "-"
    return f"{s['min']:.{digits}f} / {s['median']:.{digits}f} / {s['max']:.{digits}f}"


def dig(result: dict | None, *path):
    for key in path:
        if result is None:
            return None
        result = result.get(key) if isinstance(result, dict) else None
    return result


def comparison_table(results: dict) -> str:
    rows = ["| N | metric | shoal | serf | shoal / serf | goal | met |", "|---|---|---|---|---|---|---|"]
    metrics = [  # (label, path to a number, goal text, check(shoal, serf))
        ("join: after last join (s)", ("join", "after_last_join"), "ratio <= 1.2", lambda a, b: a <= 1.2 * b),
        ("failure: all survivors, median (s)", ("failure", "all", "median"), "ratio <= 1.2", lambda a, b: a <= 1.2 * b),
        ("failure: first suspicion, median (s)", ("failure", "first_suspect", "median"), "-", None),
        ("leave: all others, median (s)", ("leave", "all", "median"), "ratio <= 1.2", lambda a, b: a <= 1.2 * b),
        ("idle CPU % of a core, median agent", ("idle", "cpu_pct", "median"), "ratio <= 3", lambda a, b: a <= 3 * b),
        ("idle RSS MB, median agent", ("idle", "rss_mb", "median"), "shoal <= 60 MB", lambda a, b: a <= 60),
        ("idle UDP pkt/s per agent", ("idle", "udp_pkt_s_mean"), "same (+-10 %)", lambda a, b: abs(a - b) <= 0.1 * b),
        ("idle UDP IP bytes/s per agent", ("idle", "udp_bytes_s_mean"), "-", None),
        ("idle TCP bytes/s per agent", ("idle", "tcp_bytes_s_mean"), "-", None),
    ]
    for n in sorted({int(k) for k in results.get("sizes", {})}):
        pair = results["sizes"][str(n)]
        for label, path, goal, check in metrics:
            a, b = dig(pair.get("shoal"), *path), dig(pair.get("serf"), *path)
            ratio = fmt(a / b) if a is not None and b not in (None, 0) else "-"
            met = "-" if check is None or a is None or b is None else ("yes" if check(a, b) else "**no**")
            if a is None and pair.get("shoal", {}).get("error"):
                met = "**failed**"
            rows.append(f"| {n} | {label} | {fmt(a)} | {fmt(b)} | {ratio} | {goal} | {met} |")
    return "\n".join(rows)


def detail_tables(results: dict) -> str:
    out = ["| impl | N | join after last (s) | failure all: min / med / max (s), n | first survivor (s) | "
           "first suspect (s) | confirmations | rejoin (s) | leave all (s), n | CPU % min/med/max | RSS MB | "
           "UDP pkt/s min/med/max | snmp UDP in/s per agent | host busy % | checks |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in sorted({int(k) for k in results.get("sizes", {})}):
        for label in ("shoal", "serf"):
            r = results["sizes"][str(n)].get(label)
            if r is None:
                continue
            if "join" not in r:
                out.append(f"| {label} | {n} | {r.get('error', '-')} |" + " |" * 13)
                continue
            checks = [r["join"]["cli_check"]] + [rep.get("cli_check", rep.get("error", "?"))
                                                for ph in ("failure", "leave") for rep in dig(r, ph, "reps") or []]
            bad = [c for c in checks if c != "ok"]
            conf = sorted({c for rep in dig(r, "failure", "reps") or [] for c in rep["confirmations"]})
            fail_n = dig(r, "failure", "all", "n")
            leave_n = dig(r, "leave", "all", "n")
            out.append(
                f"| {label} | {n} | {fmt(r['join']['after_last_join'], 3)} | {mmm(dig(r, 'failure', 'all'))} (n={fail_n}) | "
                f"{mmm(dig(r, 'failure', 'first'))} | {mmm(dig(r, 'failure', 'first_suspect'))} | {','.join(conf) or '-'} | "
                f"{mmm(dig(r, 'failure', 'rejoin'))} | {mmm(dig(r, 'leave', 'all'))} (n={leave_n}) | "
                f"{mmm(dig(r, 'idle', 'cpu_pct'))} | {mmm(dig(r, 'idle', 'rss_mb'), 1)} | {mmm(dig(r, 'idle', 'udp_pkt_s'))} | "
                f"{fmt(dig(r, 'idle', 'snmp_udp_in_per_agent_s'))} | {fmt(dig(r, 'idle', 'host_busy_pct'), 1)} | "
                f"{'ok' if not bad else '; '.join(bad)[:200]}"
                + (f" ERROR {r['error']}" if r.get("error") else "") + " |")
    return "\n".join(out)


def stress_table(results: dict) -> str:
    out = ["| impl | N | window | hogs | host busy % | lag p99 / max (ms) | suspect logs | suspect timeouts | "
           "`failed` (observer x subject) | subjects failed | refutations | all alive after |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    pause = ["| impl | N | pause (s) | suspect logs about it | first suspicion (s) | observers that said failed | "
             "first failed (s) | its refutations | peers it suspected / failed after | all alive after resume (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label in ("shoal", "serf"):
        r = results.get("stress", {}).get(label)
        if r is None:
            continue
        if r.get("error"):
            out.append(f"| {label} | {r['n']} | ERROR {r['error']} |" + " |" * 9)
        for key in ("control", "hogs"):
            h = r.get(key)
            if not h:
                continue
            d = h["during"]
            out.append(f"| {label} | {r['n']} | {key} {h['window']:.0f} s | {h['hogs']} | {h['host_busy_pct']:.0f} | "
                       f"{fmt(h['lag_ms_p99'], 1)} / {fmt(h['lag_ms_max'], 1)} | {d['suspect']} | {d['suspect_timeout']} | "
                       f"{d['failed']} | {len(d['subjects_failed'])} | {d['refute']} | {h['all_alive_after']} |")
        p = r.get("pause")
        if p:
            pause.append(f"| {label} | {r['n']} | {p['pause']:.0f} | {p['suspect_logs']} | {fmt(p['first_suspect'])} | "
                         f"{p['observers_failed']} of {p['of']} | {fmt(p['first_failed'])} | {p['refutations']} | "
                         f"{p['victim_suspected_peers']} / {p['victim_failed_peers']} | {fmt(p['all_alive_after_resume'])} |")
    return "\n".join(out) + "\n\n" + "\n".join(pause)


def report(results: dict) -> str:
    return ("### Side by side (shoal / serf)\n\n" + comparison_table(results) +
            "\n\n### Details (min / median / max over reps)\n\n" + detail_tables(results) +
            "\n\n### False failures under CPU hogs, and SIGSTOP\n\n" + stress_table(results) + "\n")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=None, help="cluster sizes (default 5,10,20,40)")
    p.add_argument("--impls", default="serf,shoal", help="which implementations (default serf,shoal)")
    p.add_argument("--quick", action="store_true", help="N=5 only, fewer reps, short windows")
    p.add_argument("--kills", type=int, default=None, help="kill -9 reps per N (default 5)")
    p.add_argument("--leaves", type=int, default=None, help="graceful leave reps per N (default 3)")
    p.add_argument("--settle", type=float, default=None, help="settle before the idle window (s)")
    p.add_argument("--window", type=float, default=None, help="idle window (s)")
    p.add_argument("--fp-n", type=int, default=None, help="cluster size of the CPU-hog and SIGSTOP tests")
    p.add_argument("--fp-seconds", type=float, default=None, help="CPU-hog window (s)")
    p.add_argument("--fp-control", type=float, default=None, help="unloaded control window before the hogs (s)")
    p.add_argument("--hogs", type=int, default=psutil.cpu_count() or 2, help="busy-loop processes (default: cores)")
    p.add_argument("--pause", type=float, default=7.0, help="SIGSTOP duration (s)")
    p.add_argument("--quiet-busy", type=float, default=25.0,
                   help="before each cluster, wait until the host is below this busy %% (0: don't wait)")
    p.add_argument("--quiet-wait", type=float, default=120.0, help="longest wait for a quiet host (s)")
    p.add_argument("--no-stress", action="store_true", help="skip the CPU-hog and SIGSTOP tests")
    p.add_argument("--no-capture", action="store_true", help="no AF_PACKET capture (snmp counters only)")
    p.add_argument("--port-base", type=int, default=27000,
                   help="serf: base+i gossip, base+1000+i RPC; shoal: base+2000+i HTTP, +3000 RPC, +4000 gossip")
    p.add_argument("--serf", default="/usr/bin/serf")
    p.add_argument("--serf-tags", choices=("nomad", "none"), default="nomad",
                   help="give Serf agents the same Nomad server tags shoal servers carry "
                        "(default), or none as in the shared baseline")
    p.add_argument("--shoal-python", default=str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists()
                   else sys.executable)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=90.0, help="cap of the whole run")
    p.add_argument("--out", default="gossip_bench.json", help="raw JSON results (written after every phase)")
    p.add_argument("--logdir", default=None, help="raw agent logs (default: <out>.logs/)")
    args = p.parse_args(argv)
    full = {"sizes": "5,10,20,40", "kills": 5, "leaves": 3, "settle": 10.0, "window": 30.0,
            "fp_n": 40, "fp_seconds": 60.0, "fp_control": 10.0}
    quick = {"sizes": "5", "kills": 3, "leaves": 2, "settle": 5.0, "window": 15.0,
             "fp_n": 10, "fp_seconds": 20.0, "fp_control": 5.0}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    print(f"gossip_bench seed={seed} sizes={args.sizes} impls={args.impls}", flush=True)
    rng = random.Random(seed)
    start = time.monotonic()
    RUN_END[0] = start + 60 * args.max_minutes
    atexit.register(kill_all)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    watchdog = threading.Timer(60 * args.max_minutes + 60, lambda: (print("run cap exceeded", file=sys.stderr),
                                                                    kill_all(), os._exit(3)))
    watchdog.daemon = True
    watchdog.start()
    impls = {"serf": SerfImpl, "shoal": ShoalImpl}
    chosen = [impls[name](args) for name in args.impls.split(",")]
    out = Path(args.out)
    logdir = Path(args.logdir) if args.logdir else out.with_suffix(".logs")
    capture = None
    if not args.no_capture:
        try:
            capture = Capture()
        except (PermissionError, OSError) as error:
            print(f"no packet capture ({error}); UDP rate from /proc/net/snmp only", flush=True)
    results: dict = {"seed": seed, "args": vars(args), "host": {"cpus": psutil.cpu_count(),
                     "mem_gb": psutil.virtual_memory().total / 2**30, "uname": " ".join(os.uname())},
                     "capture": capture is not None, "sizes": {}, "stress": {}}

    def save() -> None:
        out.write_text(json.dumps(results, indent=1, default=str))
    try:
        for n in [int(x) for x in args.sizes.split(",")]:
            for impl in chosen:
                results["sizes"].setdefault(str(n), {})[impl.label] = run_size(impl, n, args, rng, capture, logdir)
                save()
        if not args.no_stress:
            for impl in chosen:
                results["stress"][impl.label] = run_stress(impl, args, rng, logdir)
                save()
    finally:
        kill_all()
        if capture:
            capture.close()
        results["elapsed_s"] = time.monotonic() - start
        save()
    text = report(results)
    print("\n" + text)
    out.with_suffix(".md").write_text(text)
    print(f"raw results: {out}; tables: {out.with_suffix('.md')}; agent logs: {logdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
