"""How long `shoal cluster up` takes until the cluster is ready, and what a cluster weighs.

Runs the real command line (`python -m agent cluster up ...`) in a fresh folder for
each size, times it from the start of the command to its exit (the command itself
waits until every server sees every member alive, a leader exists and every client
is registered ready), then reads the resident memory (RSS) and CPU of every agent
process listed in the folder's `cluster.json`, idle for a short settle time, and
stops the cluster with `shoal cluster down`. Every PID is checked gone afterwards.

    .venv/bin/python scripts/bench/cluster_bench.py            # 3+2, 20 servers, 50 agents
    .venv/bin/python scripts/bench/cluster_bench.py --quick    # 3+2 only

The cluster tool picks its own loopback block from the seed and folder; sizes run one
after another, never at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def shoal(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "agent", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def measure(label: str, servers: int, clients: int, seed: int, settle: float) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="shoal-cluster-bench-"))
    up_timeout = 60 + 3 * (servers + clients)
    started = time.monotonic()
    done = shoal("cluster", "up", "-dir", str(folder), "-servers", str(servers), "-clients",
                 str(clients), "-seed", str(seed), "-timeout", str(up_timeout), timeout=up_timeout + 60)
    elapsed = time.monotonic() - started
    result = {"label": label, "servers": servers, "clients": clients, "ok": done.returncode == 0,
              "up_seconds": round(elapsed, 2)}
    pids: list[int] = []
    try:
        state_file = folder / "cluster.json"
        if state_file.exists():
            pids = [int(n["pid"]) for n in json.loads(state_file.read_text())["nodes"]]
        if done.returncode != 0:
            result["error"] = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return result
        procs = [psutil.Process(pid) for pid in pids]
        for proc in procs:
            proc.cpu_percent(None)
        time.sleep(settle)  # an idle window to read steady-state RSS and CPU, not an outcome wait
        rss = [proc.memory_info().rss for proc in procs]
        cpu = [proc.cpu_percent(None) for proc in procs]
        result.update({"agents": len(procs), "rss_total_mb": round(sum(rss) / 2**20, 1),
                       "rss_per_agent_mb": round(sum(rss) / len(rss) / 2**20, 1),
                       "rss_max_mb": round(max(rss) / 2**20, 1),
                       "idle_cpu_percent_total": round(sum(cpu), 1)})
        return result
    finally:
        shoal("cluster", "down", "-dir", str(folder), timeout=120)
        leftovers = [pid for pid in pids if psutil.pid_exists(pid)
                     and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        for pid in leftovers:
            os.kill(pid, 9)
        if leftovers:
            result["leftover_pids_killed"] = leftovers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 3+2 cluster")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--settle", type=float, default=10.0, help="idle seconds before reading RSS/CPU")
    parser.add_argument("--out", help="write the results as JSON here too")
    args = parser.parse_args()
    sizes = [("3 servers + 2 clients", 3, 2)]
    if not args.quick:
        sizes += [("20 servers", 20, 0), ("50 agents (3 servers + 47 clients)", 3, 47)]
    print(f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}; each size in a fresh folder")
    rows = [measure(label, s, c, args.seed, args.settle) for label, s, c in sizes]
    print()
    print(f"{'cluster':38} {'up (s)':>7} {'agents':>6} {'RSS total MB':>12} {'per agent':>9} "
          f"{'max':>6} {'idle CPU %':>10}")
    for row in rows:
        if not row["ok"]:
            print(f"{row['label']:38} {row['up_seconds']:7.1f}  FAILED: {row.get('error')}")
            continue
        print(f"{row['label']:38} {row['up_seconds']:7.1f} {row['agents']:6d} {row['rss_total_mb']:12.1f} "
              f"{row['rss_per_agent_mb']:9.1f} {row['rss_max_mb']:6.1f} {row['idle_cpu_percent_total']:10.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
