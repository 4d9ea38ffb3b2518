"""Raft soak: the seeded Raft simulation (``python -m agent.sim.raft``) over many seeds.

Each seed draws its own fault plan (partitions, loss, duplicates, delays, crashes and
restarts, a pause, faults aimed at the leader) for a cluster of production
``RaftCore``s; a seed fails on any broken safety property (a violation) or when the
healed cluster does not converge (a liveness failure). Prints one table: seeds run,
violations, liveness failures, time; then every failing seed with its replay command
and what broke. Exit status 1 when any seed failed.

Like every script here it drives shoal by its command line, not by import: it
splits the seeds into ``--jobs`` contiguous ranges and runs
``python -m agent.sim.raft --seed S --count N`` for each, which prints one JSON line
per seed.

Usage:  .venv/bin/python scripts/bench/raft_soak.py [--seeds 1000] [--start 0]
        [--servers 5] [--duration 60] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def replay_command(seed: int, servers: int, duration: float) -> str:
    return f"python -m agent.sim.raft --seed {seed} --servers {servers} --duration {duration:g}"


def _ranges(start: int, count: int, jobs: int) -> list[tuple[int, int]]:
    """``count`` seeds from ``start`` cut into at most ``jobs`` contiguous (first, n) ranges."""
    jobs = max(1, min(jobs, count))
    size, extra = divmod(count, jobs)
    out, first = [], start
    for job in range(jobs):
        n = size + (job < extra)
        out.append((first, n))
        first += n
    return out


def _run_range(first: int, n: int, args: argparse.Namespace, results: list[dict],
               lock: threading.Lock, errors: list[str]) -> None:
    """Run one ``--count`` process and collect its JSON lines (progress on stderr)."""
    command = [sys.executable, "-m", "agent.sim.raft", "--seed", str(first), "--count", str(n),
               "--servers", str(args.servers), "--duration", str(args.duration)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            record = json.loads(line)
            with lock:
                results.append(record)
                if len(results) % 50 == 0:
                    failed = sum(not r["ok"] for r in results)
                    print(f"  ... {len(results)} seeds, {failed} failed", file=sys.stderr,
                          flush=True)
        stderr = proc.stderr.read() if proc.stderr else ""
        if proc.wait() not in (0, 1):
            errors.append(f"seeds {first}..{first + n - 1}: exit {proc.returncode}: "
                          f"{stderr[-2000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds (default 1000)")
    parser.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--servers", type=int, default=5)
    parser.add_argument("--duration", type=float, default=60.0, help="virtual seconds of chaos")
    parser.add_argument("--jobs", type=int, default=2, help="simulator processes (default 2)")
    args = parser.parse_args(argv)
    began = time.monotonic()
    results: list[dict] = []
    errors: list[str] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_run_range, args=(first, n, args, results, lock, errors))
               for first, n in _ranges(args.start, args.seeds, args.jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    real = time.monotonic() - began
    results.sort(key=lambda r: r["seed"])
    violations = [r for r in results if r["violation"]]
    liveness = [r for r in results if r["liveness"] and not r["violation"]]
    slowest = max(results, key=lambda r: r["real_seconds"], default=None)
    per_seed = sum(r["real_seconds"] for r in results) / max(1, len(results))
    if slowest:
        per_seed_text = (f"{per_seed:.3f} s (slowest: seed {slowest['seed']}, "
                         f"{slowest['real_seconds']:.2f} s)")
    else:
        per_seed_text = "-"
    rows = [("seeds run", str(len(results))),
            ("violations", str(len(violations))),
            ("liveness failures", str(len(liveness))),
            ("virtual time", f"{len(results) * args.duration:.0f} s of chaos, plus healing"),
            ("real time", f"{real:.1f} s with {args.jobs} jobs"),
            ("real time per seed", per_seed_text),
            ("elections", str(sum(r["elections"] for r in results)))]
    width = max(len(name) for name, _ in rows)
    print(f"raft soak: seeds {args.start}..{args.start + args.seeds - 1}, "
          f"{args.servers} servers, {args.duration:g} s each")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for kind, failed in (("VIOLATION", violations), ("LIVENESS", liveness)):
        for record in failed:
            detail = (record["violation"].splitlines()[2:6] if record["violation"]
                      else [record["liveness"][:400]])
            print(f"{kind} seed={record['seed']}: "
                  f"{replay_command(record['seed'], args.servers, args.duration)}")
            print("    " + "\n    ".join(detail))
    for error in errors:
        print(f"ERROR {error}")
    if violations or liveness or errors or len(results) != args.seeds:
        print("failing seeds: " + " ".join(str(r["seed"]) for r in violations + liveness))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
