"""Helpers for the cluster tests: real `shoal agent` and `serf agent` processes.

Theory of operation. Every node runs as a real OS process on its own loopback address
(127.0.B.N, see ``LoopbackAllocator``) with ports picked from a range below the
ephemeral one and checked free before use. A ``ProcSet`` owns every process a test
starts; its ``stop_all`` (called from a fixture teardown) signals each one by PID with
SIGTERM, waits a grace period, then SIGKILLs whatever is left, so nothing outlives a
failing test. Each process writes stdout and stderr to one log file under the test's
``tmp_path``; ``ProcSet.log_report`` gives their tails, which the conftest hook attaches
to a failing test's report.

Nothing here sleeps for a fixed time: every wait is ``wait_until``, which polls a probe
until a predicate holds or a deadline passes and then fails with the last state seen.
A wait also fails at once if a process it watches has exited unexpectedly.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
SERF = "serf"

# lan profile: suspicion of a node in a few-node cluster lasts up to ~25 s (spec 7.5).
FAILURE_DEADLINE = 60.0
CONVERGE_DEADLINE = 30.0
START_DEADLINE = 30.0

KEY1 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="   # bytes 00..1f, AES-256
KEY2 = "QEFCQ0RFRkdISUpLTE1OTw=="                       # bytes 40..4f, AES-128


class WaitTimeout(AssertionError):
    """A ``wait_until`` deadline passed; the message holds the last state seen."""


class ProcessDied(AssertionError):
    """A watched process exited while a test was waiting on it."""


# --------------------------------------------------------------------------- waiting

def wait_until(what: str, probe: Callable[[], T], done: Callable[[T], bool] = bool, *,
               timeout: float, watch: Iterable["Proc"] = (), interval: float = 0.25) -> T:
    """Poll ``probe`` until ``done(state)``; return that state, or fail with the last one.

    Exceptions raised by ``probe`` (connection refused, a CLI error...) count as a state
    that is not done. A process in ``watch`` that exits makes the wait fail at once.
    """
    watched = list(watch)
    start = time.monotonic()
    end = start + timeout
    last: object = "<never probed>"
    while True:
        for proc in watched:
            if proc.exited():
                raise ProcessDied(f"while waiting for {what}: {proc.name} (pid {proc.pid}) "
                                  f"exited with {proc.returncode}; last state: {last!r}\n"
                                  f"--- log tail of {proc.name} ---\n{proc.log_tail(60)}")
        try:
            state = probe()
        except Exception as error:  # noqa: BLE001 - any failure is just "not yet"
            last = f"{type(error).__name__}: {error}"
        else:
            last = state
            if done(state):
                return state
        if time.monotonic() >= end:
            raise WaitTimeout(f"gave up waiting for {what} after {time.monotonic() - start:.1f}s; "
                              f"last state seen: {last!r}")
        time.sleep(interval)


# ---------------------------------------------------------------------- addresses

class LoopbackAllocator:
    """Hands out distinct loopback addresses 127.0.B.N (N = 2..254), one per node.

    The first block B is derived from the pid so two test runs on one host rarely
    share addresses; ports are checked free anyway.
    """

    def __init__(self, first_block: int | None = None) -> None:
        self._block = first_block if first_block is not None else 16 + os.getpid() % 200
        self._next = 2

    def next(self) -> str:
        if self._next > 254:
            self._block = 16 + (self._block - 15) % 200
            self._next = 2
        ip = f"127.0.{self._block}.{self._next}"
        self._next += 1
        return ip


_port_rng = random.Random()


def free_port(ip: str, *, udp: bool = False, low: int = 20000, high: int = 32000) -> int:
    """A port on ``ip`` free for TCP (and UDP too when ``udp``), below the ephemeral range."""
    for _ in range(200):
        port = _port_rng.randrange(low, high)
        socks: list[socket.socket] = []
        try:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(tcp)
            tcp.bind((ip, port))
            if udp:
                dgram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(dgram)
                dgram.bind((ip, port))
            return port
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no free port found on {ip}")


# ---------------------------------------------------------------------- processes

@dataclass(repr=False)
class Proc:
    """One OS process of a test, its command line and its log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    # What teardown sends first: a signal that makes the process exit without a leave.
    stop_signal: int = signal.SIGTERM

    def __repr__(self) -> str:
        return f"<{self.name} pid={self.pid} exit={self.returncode}>"

    def start(self) -> "Proc":
        assert self.popen is None or self.popen.poll() is not None, f"{self.name} already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"==== start #{self.starts}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, env=self.env, cwd=REPO)
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exited(self) -> bool:
        return self.popen is not None and self.popen.poll() is not None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to this process by PID (no-op if it already exited)."""
        if self.running():
            assert self.popen is not None
            os.kill(self.popen.pid, sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=10)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit; fail with its log tail if it does not."""
        assert self.popen is not None
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"{self.name} (pid {self.pid}) still running after {timeout:.0f}s\n"
                              f"--- log tail ---\n{self.log_tail(40)}") from None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 150) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@dataclass
class ProcSet:
    """Every process a test started; ``stop_all`` stops them all by PID."""

    procs: list[Proc] = field(default_factory=list)

    def add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def stop_all(self, grace: float = 6.0) -> None:
        """Signal every live process, wait up to ``grace`` s, then SIGKILL the rest.

        The first signal is each process's ``stop_signal``: SIGINT for shoal (which
        leaves only with -leave-on-interrupt), SIGTERM for serf (which exits at once).
        """
        for proc in self.procs:
            try:
                proc.signal(proc.stop_signal)
            except ProcessLookupError:
                pass
        end = time.monotonic() + grace
        for proc in self.procs:
            if proc.popen is None:
                continue
            try:
                proc.popen.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.signal(signal.SIGKILL)
                proc.popen.wait(timeout=10)

    def log_report(self, lines: int = 150) -> list[tuple[str, str]]:
        return [(f"log of {p.name} (pid {p.pid}, exit {p.returncode}, {p.log_path})",
                 p.log_tail(lines)) for p in self.procs]


# ---------------------------------------------------------------------- HTTP

def http(method: str, url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """One HTTP request with urllib; returns (status, body) for every status code."""
    data = b"" if method in ("PUT", "POST") else None
    request = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def http_json(method: str, url: str, timeout: float = 5.0) -> Any:
    status, body = http(method, url, timeout)
    if status != 200:
        raise AssertionError(f"{method} {url} -> {status}: {body[:300]!r}")
    return json.loads(body)


# ---------------------------------------------------------------------- shoal

@dataclass(repr=False)
class ShoalNode(Proc):
    """A `shoal agent -server` process with its own loopback address and ports."""

    node: str = ""
    ip: str = ""
    http_port: int = 0
    rpc_port: int = 0
    serf_port: int = 0

    @property
    def member_name(self) -> str:
        return f"{self.node}.global"

    @property
    def serf_addr(self) -> str:
        return f"{self.ip}:{self.serf_port}"

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.http_port}"

    def members(self) -> list[dict[str, Any]]:
        return http_json("GET", f"{self.url}/v1/agent/members")["Members"]

    def member_map(self) -> dict[str, dict[str, Any]]:
        return {m["Name"]: m for m in self.members()}

    def statuses(self) -> dict[str, str]:
        return {m["Name"]: m["Status"] for m in self.members()}

    def join(self, *addresses: str, timeout: float = 20.0) -> tuple[int, dict[str, Any] | bytes]:
        query = "&".join(f"address={a}" for a in addresses)
        status, body = http("PUT", f"{self.url}/v1/agent/join?{query}", timeout=timeout)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def force_leave(self, name: str, prune: bool = False) -> tuple[int, bytes]:
        suffix = "&prune=1" if prune else ""
        return http("PUT", f"{self.url}/v1/agent/force-leave?node={name}{suffix}", timeout=10)

    def metrics(self) -> dict[str, Any]:
        return http_json("GET", f"{self.url}/v1/metrics")

    def gossip_counters(self) -> dict[str, int]:
        """The gossip counters of /v1/metrics, keyed without their ``...gossip.`` prefix."""
        out: dict[str, int] = {}
        metrics = self.metrics()
        for kind in ("Counters", "Gauges"):
            for entry in metrics.get(kind) or []:
                name = entry.get("Name", "")
                marker = name.find("gossip.")
                if marker < 0:
                    continue
                value = entry.get("Count", entry.get("Value", 0)) if kind == "Counters" else entry.get("Value", 0)
                out[name[marker + len("gossip."):]] = int(value)
        return out

    def dropped(self) -> dict[str, int]:
        return {k[len("dropped."):]: v for k, v in self.gossip_counters().items()
                if k.startswith("dropped.")}


def shoal_argv(node: str, ip: str, http_port: int, rpc_port: int, serf_port: int, *,
               join: Sequence[str] = (), encrypt: str | None = None, data_dir: Path | None = None,
               extra: Sequence[str] = ()) -> list[str]:
    argv = [PYTHON, "-m", "agent", "agent", "-server", "-node", node, "-region", "global",
            "-dc", "dc1", "-bind", ip, "-http-port", str(http_port), "-rpc-port", str(rpc_port),
            "-serf-port", str(serf_port), "-leave-on-terminate", "-log-level", "DEBUG",
            "-gossip-profile", "lan"]
    if data_dir is not None:
        argv += ["-data-dir", str(data_dir)]
    for address in join:
        argv += ["-join", address]
    if encrypt:
        argv += ["-encrypt", encrypt]
    return argv + list(extra)


def make_shoal(procs: ProcSet, tmp: Path, ip: str, node: str, *, join: Sequence[str] = (),
               encrypt: str | None = None, extra: Sequence[str] = ()) -> ShoalNode:
    """Create (not start) a shoal node on ``ip`` with free ports; register it in ``procs``."""
    http_port = free_port(ip)
    rpc_port = free_port(ip)
    serf_port = free_port(ip, udp=True)
    data_dir = tmp / f"data-{node}"
    data_dir.mkdir(exist_ok=True)
    argv = shoal_argv(node, ip, http_port, rpc_port, serf_port, join=join, encrypt=encrypt,
                      data_dir=data_dir, extra=extra)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    shoal = ShoalNode(name=f"shoal-{node}", argv=argv, log_path=tmp / f"shoal-{node}.log", env=env,
                      stop_signal=signal.SIGINT,
                      node=node, ip=ip, http_port=http_port, rpc_port=rpc_port, serf_port=serf_port)
    procs.add(shoal)
    return shoal



def wait_shoal_ready(node: ShoalNode, timeout: float = START_DEADLINE) -> None:
    """Poll /v1/agent/members until the node lists itself alive."""
    wait_until(f"{node.name} to serve /v1/agent/members", node.statuses,
               lambda s: s.get(node.member_name) == "alive", timeout=timeout, watch=[node])


# ---------------------------------------------------------------------- serf

@dataclass(repr=False)
class SerfNode(Proc):
    """A real `serf agent` process (Debian serf 0.9.4) on its own loopback address."""

    node: str = ""
    ip: str = ""
    port: int = 0
    rpc_port: int = 0

    @property
    def member_name(self) -> str:
        return self.node

    @property
    def serf_addr(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def rpc_addr(self) -> str:
        return f"{self.ip}:{self.rpc_port}"

    def cli(self, *args: str, timeout: float = 30.0) -> str:
        """Run ``serf <args> -rpc-addr=...`` and return stdout; fail on a non-zero exit."""
        argv = [SERF, args[0], f"-rpc-addr={self.rpc_addr}", *args[1:]]
        done = subprocess.run(argv, capture_output=True, timeout=timeout, cwd=REPO)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> exit {done.returncode}: "
                                 f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}")
        return done.stdout.decode(errors="replace")

    def members(self) -> list[dict[str, Any]]:
        return json.loads(self.cli("members", "-format=json", timeout=10))["members"]

    def member_map(self) -> dict[str, dict[str, Any]]:
        return {m["name"]: m for m in self.members()}

    def statuses(self) -> dict[str, str]:
        return {m["name"]: m["status"] for m in self.members()}

    def event(self, name: str, payload: str) -> None:
        self.cli("event", name, payload)

    def query(self, name: str, payload: str, timeout: str = "4s") -> dict[str, Any]:
        return json.loads(self.cli("query", "-format=json", f"-timeout={timeout}", name, payload))

    def leave(self) -> None:
        self.cli("leave")


def make_serf(procs: ProcSet, tmp: Path, ip: str, node: str, *, join: Sequence[str] = (),
              encrypt: str | None = None, tags: Mapping[str, str] = {}) -> SerfNode:
    port = free_port(ip, udp=True)
    rpc_port = free_port(ip)
    argv = [SERF, "agent", f"-node={node}", f"-bind={ip}:{port}", f"-rpc-addr={ip}:{rpc_port}",
            "-log-level=debug"]
    for key, value in tags.items():
        argv += ["-tag", f"{key}={value}"]
    if encrypt:
        argv.append(f"-encrypt={encrypt}")
    for address in join:
        argv.append(f"-join={address}")
    serf = SerfNode(name=f"serf-{node}", argv=argv, log_path=tmp / f"serf-{node}.log",
                    node=node, ip=ip, port=port, rpc_port=rpc_port)
    procs.add(serf)
    return serf


def wait_serf_ready(node: SerfNode, timeout: float = START_DEADLINE) -> None:
    wait_until(f"{node.name} to answer `serf members`", node.statuses,
               lambda s: s.get(node.node) == "alive", timeout=timeout, watch=[node])


# ---------------------------------------------------------------------- views

Observer = ShoalNode | SerfNode


def wait_statuses(observers: Sequence[Observer], expected: Mapping[str, str], *, what: str,
                  timeout: float = CONVERGE_DEADLINE) -> dict[str, dict[str, str | None]]:
    """Wait until every observer reports ``expected`` (member name -> status)."""

    def probe() -> dict[str, dict[str, str | None]]:
        view: dict[str, dict[str, str | None]] = {}
        for obs in observers:
            try:
                seen = obs.statuses()
            except Exception as error:  # noqa: BLE001 - reported as state
                view[obs.member_name] = {"<error>": f"{type(error).__name__}: {error}"}
                continue
            view[obs.member_name] = {name: seen.get(name) for name in expected}
        return view

    return wait_until(what, probe,
                      lambda view: all(v == dict(expected) for v in view.values()),
                      timeout=timeout, watch=observers)


def kill_cluster_leftovers(directory: Path) -> list[int]:
    """SIGKILL, by PID, every agent of a `shoal cluster` folder still running; the PIDs killed.

    Only a PID whose command line still names the folder is signalled (never a reused PID).
    """
    import psutil

    path = directory / "cluster.json"
    if not path.exists():
        return []
    killed = []
    for node in json.loads(path.read_text()).get("nodes", []):
        pid = node.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            continue
        try:
            process = psutil.Process(pid)
            if process.is_running() and str(directory) in " ".join(process.cmdline()):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        except (psutil.Error, ProcessLookupError):
            continue
    return killed
