"""Start a local cluster of `shoal agent -server` processes on loopback.

Node i (1-based) listens on HTTP 4646 + 10*(i-1), RPC 4647 + 10*(i-1) and gossip
4648 + 10*(i-1), so node 1 has Nomad's default ports and `shoal server members`
works against it without -address. The script drives the agents only from outside:
it starts them, joins them through `PUT /v1/agent/join`, waits until every agent
lists every server alive and all name one raft leader, prints the member table with
`shoal server members`, and stops every agent by PID on Ctrl-C (SIGTERM: agents leave
gracefully; SIGKILL after 10 s).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def http(method: str, url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until(what: str, predicate, deadline_s: float, interval: float = 0.2):
    """Poll `predicate` until it returns a true value; fail with the last value seen."""
    end = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < end:
        try:
            last = predicate()
            if last:
                return last
        except OSError as error:
            last = error
        time.sleep(interval)
    raise SystemExit(f"gave up waiting for {what} after {deadline_s:.0f}s; last seen: {last!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--servers", type=int, default=3, help="number of servers (default 3)")
    parser.add_argument("--bind", default="127.0.0.1", help="loopback address for every agent")
    parser.add_argument("--base-port", type=int, default=4646, help="HTTP port of node 1")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--once", action="store_true", help="print the members and stop")
    args = parser.parse_args()
    if args.servers < 1:
        parser.error("need at least one server")

    # SIGTERM/SIGHUP (e.g. from `timeout` or a closed terminal) stop the cluster the
    # same way Ctrl-C does, so no agent is left running without its launcher.
    def stop_on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGHUP, stop_on_signal)

    workdir = Path(tempfile.mkdtemp(prefix="shoal-cluster-"))
    procs: list[subprocess.Popen] = []
    nodes = []
    for i in range(args.servers):
        base = args.base_port + 10 * i
        name = f"server{i + 1}"
        log_path = workdir / f"{name}.log"
        cmd = [sys.executable, "-m", "agent", "agent", "-server", "-node", name,
               "-bind", args.bind, "-http-port", str(base), "-rpc-port", str(base + 1),
               "-serf-port", str(base + 2), "-bootstrap-expect", str(args.servers),
               "-data-dir", str(workdir / name), "-log-level", args.log_level,
               "-leave-on-terminate", "-leave-on-interrupt"]
        log = open(log_path, "wb")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        nodes.append((name, f"http://{args.bind}:{base}", f"{args.bind}:{base + 2}", log_path))
        time.sleep(0.3)  # spread starts so probe ticks are not in lock-step

    def stop_all() -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + 10
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    try:
        for name, url, _, log_path in nodes:
            def ready(url=url):
                for proc in procs:
                    if proc.poll() is not None:
                        raise SystemExit(f"an agent exited early; see logs in {workdir}")
                return http("GET", url + "/v1/agent/members")[0] == 200
            wait_until(f"{name} to serve HTTP", ready, 30)
        seed = nodes[0][2]
        for name, url, _, _ in nodes[1:]:
            status, body = http("PUT", f"{url}/v1/agent/join?address={seed}", timeout=15)
            result = json.loads(body)
            if status != 200 or result.get("error"):
                raise SystemExit(f"{name} could not join {seed}: {status} {body!r}")

        def converged():
            for _, url, _, _ in nodes:
                members = json.loads(http("GET", url + "/v1/agent/members")[1])["Members"]
                alive = [m for m in members if m["Status"] == "alive"]
                if len(alive) != len(nodes):
                    return False
            return True
        wait_until("every server to list every server alive", converged, 30)

        def one_leader():
            leaders = {json.loads(http("GET", url + "/v1/status/leader")[1]) for _, url, _, _ in nodes}
            return len(leaders) == 1 and "" not in leaders
        wait_until("a raft leader named by every server", one_leader, 30)

        env = dict(os.environ, SHOAL_ADDR=nodes[0][1])
        subprocess.run([sys.executable, "-m", "agent", "server", "members"], env=env, check=False)
        print(f"\n{len(nodes)} servers running; logs in {workdir}")
        for name, url, gossip, _ in nodes:
            print(f"  {name}: HTTP {url}  gossip {gossip}")
        if args.once:
            return 0
        print("try: SHOAL_ADDR=%s shoal server members -detailed    (Ctrl-C stops the cluster)" % nodes[0][1])
        while all(proc.poll() is None for proc in procs):
            time.sleep(0.5)
        print("an agent exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
