"""HTTP benchmark (issue 5): shoal's agent API beside a bare quart-trio handler.

One real ``shoal agent -server`` process whose gossip view holds 50 members (itself
and 49 more ``shoal agent -server`` processes in a region of their own, ``swarm``, so
they gossip with it but never join its Raft peer set), and a bare quart-trio app on
hypercorn (another process) that answers the same paths with the same bytes, fetched
from the agent first. A separate load-generator process (raw sockets, HTTP/1.1
keep-alive, one request in flight per connection) measures requests per second and
p50/p99 latency of ``GET /v1/agent/members`` and ``GET /v1/agent/self`` at 1, 8 and 64
connections on both servers in the same run, and prints the ratio shoal / bare (goal
>= 0.5). Then the agent's RSS before and after 100k requests, and after 100k more.

Run from the repository root::

    .venv/bin/python scripts/bench/http_bench.py            # ~6 min
    .venv/bin/python scripts/bench/http_bench.py --quick    # < 60 s smoke run

The same file is the helper processes (``--role bare|load``). Agents are driven only
by their command line, HTTP and signals. Every process started is killed by PID at
the end, also on errors and signals (``benchprocs``). It is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import atexit
import json
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchprocs import Deadline, kill_all, on_signal, reap, spawn  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PATHS = ("/v1/agent/members", "/v1/agent/self")
MEMBERS = 50
GOAL = 0.5


# ------------------------------------------------------------------ load generator

class _Conn:
    """One keep-alive connection: the request in flight and the bytes read so far."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.need: int | None = None     # bytes of the whole response, once headers are in
        self.closing = False             # the response said "Connection: close"
        self.sent_at = 0.0


def _response_head(buffer: bytearray) -> tuple[int, bool] | None:
    """(total length, Connection: close) of the response at the head of ``buffer``."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    if not head[0].startswith("HTTP/1.1 200 "):
        raise RuntimeError(f"unexpected status line {head[0]!r}")
    length, closing = None, False
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = end + 4 + int(value.strip())
        elif name == "connection" and value.strip().lower() == "close":
            closing = True
    if length is None:
        raise RuntimeError("response without Content-Length")
    return length, closing


def _connect(port: int, selector: selectors.BaseSelector) -> _Conn:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    conn = _Conn(sock)
    selector.register(sock, selectors.EVENT_READ, conn)
    return conn


def run_load(port: int, path: str, connections: int, *, warmup: float, duration: float,
             total: int) -> dict[str, Any]:
    """Keep ``connections`` busy; measure a time window (``total`` = 0) or ``total`` requests.

    A connection the server ends with ``Connection: close`` (hypercorn's
    ``keep_alive_max_requests``, 1000) is replaced by a new one, as a client would.
    """
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               "User-Agent: shoal-http-bench\r\nAccept: */*\r\n\r\n").encode()
    selector = selectors.DefaultSelector()
    conns = [_connect(port, selector) for _ in range(connections)]
    started = time.perf_counter()
    window_start, window_end = started + warmup, started + warmup + duration
    latencies: list[float] = []
    issued = completed = 0
    response_bytes = reconnects = 0

    def send(conn: _Conn) -> None:
        nonlocal issued
        issued += 1
        conn.sent_at = time.perf_counter()
        conn.sock.sendall(request)   # small; one request in flight, so the buffer never fills

    open_conns = len(conns)
    for conn in conns:
        send(conn)
    while open_conns:
        events = selector.select(timeout=10.0)
        if not events:
            raise RuntimeError(f"no response for 10 s ({completed} completed)")
        for key, _ in events:
            conn = key.data
            data = conn.sock.recv(1 << 18)
            if not data:
                raise RuntimeError(f"server closed a keep-alive connection after {completed} responses; pending {bytes(conn.buffer[:300])!r}")
            conn.buffer += data
            if conn.need is None:
                head = _response_head(conn.buffer)
                if head is not None:
                    conn.need, conn.closing = head
            if conn.need is None or len(conn.buffer) < conn.need:
                continue
            if len(conn.buffer) > conn.need:
                raise RuntimeError("bytes after a response with one request in flight")
            now = time.perf_counter()
            completed += 1
            response_bytes = conn.need
            if total or window_start <= now <= window_end:
                latencies.append(now - conn.sent_at)
            conn.buffer.clear()
            conn.need = None
            more = issued < total if total else now < window_end
            if not more or conn.closing:
                selector.unregister(conn.sock)
                conn.sock.close()
                open_conns -= 1
            if more and conn.closing:
                conn = _connect(port, selector)
                reconnects += 1
                open_conns += 1
            if more:
                send(conn)
    elapsed = time.perf_counter() - started if total else duration
    latencies.sort()
    return {"path": path, "connections": connections, "requests": len(latencies),
            "seconds": elapsed, "rps": len(latencies) / elapsed,
            "p50_ms": _percentile(latencies, 0.50) * 1000, "p99_ms": _percentile(latencies, 0.99) * 1000,
            "response_bytes": response_bytes, "reconnects": reconnects}


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, int(-(-q * len(sorted_values) // 1)))   # ceil(q * n)
    return sorted_values[rank - 1]


# ------------------------------------------------------------------ helper processes

def run_bare(port: int, bodies_file: str) -> None:
    """A bare quart-trio app on hypercorn answering each path with its fixed bytes."""
    import trio
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.trio import serve
    from quart import Response
    from quart_trio import QuartTrio

    bodies: dict[str, str] = json.loads(Path(bodies_file).read_text())
    app = QuartTrio("bare")

    def handler_for(body: bytes):
        async def handler() -> Response:
            return Response(body, status=200, content_type="application/json")
        return handler

    for path, text in bodies.items():
        app.add_url_rule(path, endpoint=path, view_func=handler_for(text.encode()), methods=["GET"])
    config = HypercornConfig()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.include_server_header = False   # as the agent's hypercorn
    config.graceful_timeout = 1.0
    trio.run(serve, app, config)


# ------------------------------------------------------------------ orchestration

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(what: str, check, timeout: float, procs: list[subprocess.Popen]) -> Any:
    """Poll ``check`` until truthy; fail naming ``what`` (or a child that exited)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise Deadline(f"{what}: pid {proc.pid} exited with {proc.returncode}")
        try:
            last = check()
            if last:
                return last
        except OSError as exc:
            last = exc
        time.sleep(0.1)   # polling interval of a bounded wait
    raise Deadline(f"{what}: not after {timeout:.0f} s (last: {last!r})")


def alive_members(http: int) -> int:
    status, body = http_get(f"http://127.0.0.1:{http}/v1/agent/members")
    if status != 200:
        return 0
    return sum(1 for m in json.loads(body)["Members"] if m["Status"] == "alive")


def load(args: argparse.Namespace, port: int, path: str, connections: int, *,
         total: int = 0) -> dict[str, Any]:
    """Run the load generator as its own process and return its JSON result."""
    argv = [sys.executable, __file__, "--role", "load", "--port", str(port), "--path", path,
            "--connections", str(connections), "--warmup", str(args.warmup),
            "--duration", str(args.duration), "--total", str(total)]
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=args.warmup + args.duration + 60 + total / 200)
    finally:
        reap(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed on {path} C={connections}: {err.strip()}")
    return json.loads(out)


def rss_mb(pid: int) -> float:
    import psutil
    return psutil.Process(pid).memory_info().rss / 1e6


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="shoal-http-bench-"))
    print(f"load generator: built-in raw-socket HTTP/1.1 keep-alive client "
          f"(wrk {'found at ' + shutil.which('wrk') if shutil.which('wrk') else 'not installed'}; "
          f"not used, so both servers see the same client)")
    http, rpc, serf, bare_port = free_port(), free_port(), free_port(), free_port()
    log = open(workdir / "agent.log", "w")
    agent = spawn([args.shoal_python, "-m", "agent", "agent", "-server", "-bootstrap-expect", "1",
                   "-node", "bench", "-bind", "127.0.0.1", "-http-port", str(http),
                   "-rpc-port", str(rpc), "-serf-port", str(serf), "-log-level", "WARN"],
                  cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    procs = [agent]
    result: dict[str, Any] = {"quick": args.quick, "members": args.members}
    try:
        wait_for("agent HTTP", lambda: alive_members(http) >= 1, 30, procs)
        begun = time.monotonic()
        for index in range(args.members - 1):
            procs.append(spawn(
                [args.shoal_python, "-m", "agent", "agent", "-server", "-region", "swarm",
                 "-node", f"swarm-{index:02d}", "-bind", "127.0.0.1", "-http-port", "0",
                 "-rpc-port", "0", "-serf-port", "0", "-num-schedulers", "0",
                 "-join", f"127.0.0.1:{serf}", "-log-level", "WARN"],
                cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
        wait_for(f"{args.members} alive members", lambda: alive_members(http) == args.members,
                 180, procs)
        print(f"{args.members - 1} more servers (region swarm) started and joined in "
              f"{time.monotonic() - begun:.1f} s")
        bodies = {}
        for path in PATHS:
            status, body = http_get(f"http://127.0.0.1:{http}{path}")
            assert status == 200, (path, status, body[:200])
            bodies[path] = body.decode()
        (workdir / "bodies.json").write_text(json.dumps(bodies))
        bare = spawn([sys.executable, __file__, "--role", "bare", "--port", str(bare_port),
                      "--bodies", str(workdir / "bodies.json")], cwd=str(ROOT),
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=open(workdir / "bare.log", "w"))
        procs.append(bare)
        wait_for("bare app", lambda: http_get(f"http://127.0.0.1:{bare_port}{PATHS[0]}")[0] == 200,
                 30, procs)
        print(f"agent pid {agent.pid} http {http}: {args.members} members alive; bare pid {bare.pid} "
              f"port {bare_port}; bodies {', '.join(f'{p} {len(b)} B' for p, b in bodies.items())}")
        result["throughput"] = throughput(args, http, bare_port)
        result["memory"] = memory(args, agent.pid, http)
        return result
    except BaseException:
        print(f"benchmark failed; logs in {workdir}", file=sys.stderr)
        args.keep_logs = True
        raise
    finally:
        for proc in reversed(procs):
            reap(proc)
        log.close()
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)


def throughput(args: argparse.Namespace, http: int, bare_port: int) -> list[dict[str, Any]]:
    rows = []
    print(f"\n{'path':<20} {'C':>3} | {'shoal req/s':>11} {'p50 ms':>7} {'p99 ms':>7} | "
          f"{'bare req/s':>10} {'p50 ms':>7} {'p99 ms':>7} | {'ratio':>5}  goal >= {GOAL}")
    for path in PATHS:
        for connections in args.connections:
            shoal = load(args, http, path, connections)
            bare = load(args, bare_port, path, connections)
            ratio = shoal["rps"] / bare["rps"] if bare["rps"] else 0.0
            rows.append({"path": path, "connections": connections, "shoal": shoal, "bare": bare,
                         "ratio": ratio, "met": ratio >= GOAL})
            print(f"{path:<20} {connections:>3} | {shoal['rps']:>11.0f} {shoal['p50_ms']:>7.2f} "
                  f"{shoal['p99_ms']:>7.2f} | {bare['rps']:>10.0f} {bare['p50_ms']:>7.2f} "
                  f"{bare['p99_ms']:>7.2f} | {ratio:>5.2f}  {'met' if ratio >= GOAL else 'NOT met'}",
                  flush=True)
    return rows


def memory(args: argparse.Namespace, pid: int, http: int) -> dict[str, Any]:
    """RSS before, after ``--memory-requests`` requests, and after as many again."""
    marks = [rss_mb(pid)]
    for _ in range(2):
        for index, path in enumerate(PATHS):
            share = args.memory_requests // len(PATHS) + (index < args.memory_requests % len(PATHS))
            load(args, http, path, 8, total=share)
        marks.append(rss_mb(pid))
    n = args.memory_requests
    print(f"\nagent RSS: {marks[0]:.1f} MB at start, {marks[1]:.1f} MB after {n} requests, "
          f"{marks[2]:.1f} MB after {2 * n} (growth over the second {n}: {marks[2] - marks[1]:+.1f} MB)")
    return {"requests_per_round": n, "rss_mb": marks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("main", "bare", "load"), default="main")
    parser.add_argument("--quick", action="store_true", help="short smoke run (< 60 s)")
    parser.add_argument("--connections", default="1,8,64")
    parser.add_argument("--duration", type=float, default=None, help="seconds measured per cell (10)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before measuring (2)")
    parser.add_argument("--memory-requests", type=int, default=None, help="requests per memory round (100000)")
    parser.add_argument("--members", type=int, default=MEMBERS, help="gossip members in the agent's view (50)")
    parser.add_argument("--shoal-python", default=sys.executable)
    parser.add_argument("--out", default="", help="write the results as JSON here")
    parser.add_argument("--keep-logs", action="store_true")
    # helper roles
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--path", default=PATHS[0])
    parser.add_argument("--bodies", default="")
    parser.add_argument("--total", type=int, default=0)
    args = parser.parse_args(argv)
    if args.role == "bare":
        run_bare(args.port, args.bodies)
        return 0
    if args.role == "load":
        print(json.dumps(run_load(args.port, args.path, int(args.connections), warmup=args.warmup,
                                  duration=args.duration, total=args.total)))
        return 0
    args.connections = [int(c) for c in args.connections.split(",")]
    args.duration = args.duration if args.duration is not None else (1.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 2.0)
    if args.memory_requests is None:
        args.memory_requests = 3_000 if args.quick else 100_000
    atexit.register(kill_all)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    started = time.monotonic()
    result = orchestrate(args)
    result["wall_seconds"] = time.monotonic() - started
    print(f"\ntotal {result['wall_seconds']:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
