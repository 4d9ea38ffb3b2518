"""Simulator benchmark: `shoal sim` speed at scale, and simulated vs real join convergence.

1. **Speed.** `shoal sim --nodes N --seed 1 --duration D --progress` for each N of
   `--speed-sizes` (default 1000,10000; D = 60 virtual s): wall time, events per wall
   second, virtual seconds per wall second, peak RSS. The issue's goal is 10,000 nodes
   for 60 virtual s in under 60 wall s. A run that passes `--budget` wall seconds (or
   `--rss-cap-mb`) is stopped by PID, and the virtual time it reached (from its
   `--progress` lines on stderr) is reported instead: nothing is extrapolated.
2. **Convergence.** For each N of `--conv-sizes` (default 10,20), lan profile, no loss:
   * simulated: `shoal sim --nodes N --seed s --json` for `--seeds` seeds; the join
     curve measured from the last node's join (50 / 90 / 100 % of nodes list all N alive);
   * real: N real `shoal agent` processes on 127.0.0.1, started and joined to the first
     one by `gossip_bench.py`'s cluster harness; the same percentiles after the last
     join call returned (log lines timestamped on arrival);
   * Serf's published convergence model (the "Convergence Simulator" of Serf's docs,
     https://www.serf.io/docs/internals/simulator.html, source
     hashicorp/serf website/source/assets/javascripts/_simulator.js): fraction of nodes
     reached after x gossip rounds = 1 / (1 + (N+1) e^(-c N x)) with
     c = fanout / N * (1 - loss) * (1 - failed) * 0.5, one round = the gossip interval;
     the page draws whole rounds up to 99.99 %, so "100 %" in that column is 99.99 %.
     Interval and fanout are the profile's, read from `shoal sim --json`.

The script drives shoal only through its command line and HTTP (tests/test_layering.py).

Usage:  .venv/bin/python scripts/bench/sim_bench.py [--quick] [--out sim_bench.json]
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchprocs import kill_all, on_signal, reap, spawn  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SERF_MODEL_URL = "https://www.serf.io/docs/internals/simulator.html"
SERF_MODEL_MAX = 0.9999  # the page's maxConverge
FRACTIONS = (0.5, 0.9, 1.0)


def sim_argv(python: str, *args: str) -> list[str]:
    return [python, "-m", "agent", "sim", *args]


# --- 1. speed ------------------------------------------------------------------------

def speed_run(python: str, nodes: int, duration: float, budget: float, rss_cap_mb: float) -> dict:
    """One `shoal sim` run under a wall budget; progress parsed from its stderr."""
    argv = sim_argv(python, "--nodes", str(nodes), "--seed", "1", "--duration", str(duration),
                    "--progress", "--json")
    began = time.monotonic()
    proc = spawn(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    last = {"virtual": 0.0, "events": 0, "real": 0.0}
    tail: list[str] = []

    def read_stderr() -> None:
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").strip()
            tail[:] = (tail + [line])[-5:]
            if line.startswith("progress "):
                fields = dict(part.split("=", 1) for part in line.split()[1:])
                last.update(virtual=float(fields["virtual"].rstrip("s")),
                            events=int(fields["events"]), real=float(fields["real"].rstrip("s")))

    out: list[bytes] = []
    readers = [threading.Thread(target=read_stderr, daemon=True),
               threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()
    peak_rss = 0
    stopped_by = "done"
    handle = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            peak_rss = max(peak_rss, handle.memory_info().rss)
        except psutil.Error:
            pass
        if time.monotonic() - began > budget:
            stopped_by = "wall budget"
        elif peak_rss > rss_cap_mb * 2**20:
            stopped_by = "memory cap"
        if stopped_by != "done":
            reap(proc)
            break
        time.sleep(0.5)
    wall = time.monotonic() - began
    reap(proc)
    for reader in readers:
        reader.join(timeout=10)
    result = {"nodes": nodes, "virtual_target": duration, "wall_s": round(wall, 2),
              "stopped_by": stopped_by, "peak_rss_mb": round(peak_rss / 2**20, 1)}
    if stopped_by == "done" and out and out[0]:
        report = json.loads(out[0])
        summary = report["summary"]
        result.update(virtual_reached=summary["now"], events=summary["events"],
                      join_converged=report["curves"][0]["p100"])
    else:
        result.update(virtual_reached=last["virtual"], events=last["events"],
                      join_converged=None, note="virtual time and events as of the last "
                      "progress line", stderr_tail=tail)
    result["events_per_wall_s"] = round(result["events"] / max(wall, 1e-9))
    result["virtual_s_per_wall_s"] = round(result["virtual_reached"] / max(wall, 1e-9), 4)
    result["goal_met"] = (stopped_by == "done" and nodes >= 10_000
                          and duration >= 60 and wall < 60.0)
    return result


# --- 2. convergence ------------------------------------------------------------------

def serf_model(nodes: int, interval: float, fanout: int, loss: float = 0.0,
               failed: float = 0.0) -> dict:
    """Seconds to reach each fraction, in whole rounds, as Serf's convergence page draws it."""
    contact = (fanout / nodes) * (1 - loss) * (1 - failed) * 0.5
    times = {}
    for fraction in FRACTIONS:
        target = min(fraction, SERF_MODEL_MAX)
        rounds = math.log((nodes + 1) / (1 / target - 1)) / (contact * nodes)
        times[f"p{round(fraction * 100)}"] = round(math.ceil(max(rounds, 0.0)) * interval, 3)
    return times


def sim_convergence(python: str, nodes: int, seeds: list[int]) -> dict:
    """Median over seeds of the join percentiles after the last join, and the gossip knobs."""
    per_seed = []
    gossip = {}
    for seed in seeds:
        done = subprocess.run(sim_argv(python, "--nodes", str(nodes), "--seed", str(seed),
                                       "--profile", "lan", "--json"),
                              cwd=ROOT, capture_output=True, timeout=600)
        report = json.loads(done.stdout)
        gossip = report["gossip"]
        curve = report["curves"][0]
        per_seed.append({k: (None if curve[k] is None else curve[k] - report["last_start"])
                         for k in ("p50", "p90", "p100")})
    result = {k: round(statistics.median(s[k] for s in per_seed), 3) for k in ("p50", "p90", "p100")
              if all(s[k] is not None for s in per_seed)}
    return {"seeds": seeds, "per_seed": per_seed, "median": result, "gossip": gossip}


def real_convergence(python: str, nodes: int, port_base: int, logdir: Path) -> dict:
    """N real agents joined one after another to the first; percentiles after the last join."""
    import gossip_bench as gb  # the harness of the gossip benchmark, same folder

    impl = gb.ShoalImpl(argparse.Namespace(shoal_python=python, port_base=port_base))
    cluster = gb.Cluster(impl, nodes, logdir)
    try:
        cluster.start_all(1.0, 120 + 2 * nodes)
        join = gb.join_all(cluster)
    except (gb.Deadline, RuntimeError, OSError) as error:
        return {"error": f"{type(error).__name__}: {error}"}
    finally:
        cluster.stop_all()
    values = join["per_agent_after_last_join"]
    return {"p50": round(percentile(values, 0.5), 3), "p90": round(percentile(values, 0.9), 3),
            "p100": round(values[-1], 3), "join_calls_s": round(join["join_calls"], 3),
            "cli_check": join["cli_check"]}


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The value by which ``fraction`` of the observers were done (as Curve.after)."""
    index = max(1, math.ceil(fraction * len(sorted_values) - 1e-9)) - 1
    return sorted_values[index]


# --- report --------------------------------------------------------------------------

def fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(results: dict) -> str:
    lines = ["### Simulator speed", "",
             "| nodes | virtual s (target) | wall s | events | events / wall s | virtual s / wall s "
             "| peak RSS MB | stopped by | join converged (virtual s) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in results["speed"]:
        lines.append(f"| {r['nodes']} | {r['virtual_reached']:.1f} ({r['virtual_target']:g}) | "
                     f"{r['wall_s']:.1f} | {r['events']} | {r['events_per_wall_s']} | "
                     f"{r['virtual_s_per_wall_s']:.4f} | {r['peak_rss_mb']:.0f} | {r['stopped_by']} | "
                     f"{fmt(r['join_converged'])} |")
    lines += ["", "### Join convergence after the last join (seconds; 50 / 90 / 100 % of nodes "
              "list all N alive)", "",
              f"Serf model: {SERF_MODEL_URL} (its 100 % is 99.99 %).", "",
              "| N | simulated (median of seeds) | real shoal agents | Serf model |",
              "| ---: | --- | --- | --- |"]
    for c in results["convergence"]:
        sim, real, model = c["sim"]["median"], c["real"], c["serf_model"]
        cell = lambda d: " / ".join(fmt(d.get(k)) for k in ("p50", "p90", "p100"))  # noqa: E731
        real_cell = real.get("error") or cell(real)
        lines.append(f"| {c['nodes']} | {cell(sim)} | {real_cell} | {cell(model)} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="speed at 100 and 1000 nodes, short budgets")
    p.add_argument("--speed-sizes", default=None, help="default 1000,10000 (quick: 100,1000)")
    p.add_argument("--duration", type=float, default=60.0, help="virtual seconds per speed run")
    p.add_argument("--budget", type=float, default=None,
                   help="wall seconds before a speed run is stopped (default 1200; quick 120)")
    p.add_argument("--rss-cap-mb", type=float, default=None,
                   help="stop a speed run above this RSS (default: 70%% of RAM)")
    p.add_argument("--conv-sizes", default="10,20", help="sizes of the convergence comparison")
    p.add_argument("--seeds", type=int, default=5, help="simulated seeds per convergence size")
    p.add_argument("--no-real", action="store_true", help="skip the real-agent column")
    p.add_argument("--no-speed", action="store_true", help="skip the speed runs")
    p.add_argument("--port-base", type=int, default=21000,  # below the ephemeral range
                   help="real agents: HTTP base+2000+i, RPC base+3000+i, gossip base+4000+i")
    p.add_argument("--python", default=str(ROOT / ".venv/bin/python")
                   if (ROOT / ".venv/bin/python").exists() else sys.executable)
    p.add_argument("--out", default="sim_bench.json", help="raw JSON results")
    args = p.parse_args(argv)
    if args.speed_sizes is None:
        args.speed_sizes = "100,1000" if args.quick else "1000,10000"
    if args.budget is None:
        args.budget = 120.0 if args.quick else 1200.0
    if args.rss_cap_mb is None:
        args.rss_cap_mb = 0.7 * psutil.virtual_memory().total / 2**20
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    atexit.register(kill_all)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    results: dict = {"speed": [], "convergence": [], "serf_model_url": SERF_MODEL_URL,
                     "cpus": psutil.cpu_count(), "python": sys.version.split()[0]}
    out = Path(args.out)
    if not args.no_speed:
        for nodes in (int(x) for x in args.speed_sizes.split(",")):
            print(f"speed: {nodes} nodes, {args.duration:g} virtual s, budget {args.budget:g} s",
                  flush=True)
            result = speed_run(args.python, nodes, args.duration, args.budget, args.rss_cap_mb)
            results["speed"].append(result)
            print(f"  {json.dumps(result)}", flush=True)
            out.write_text(json.dumps(results, indent=1))
    seeds = list(range(1, args.seeds + 1))
    for nodes in (int(x) for x in args.conv_sizes.split(",")):
        print(f"convergence: {nodes} nodes", flush=True)
        sim = sim_convergence(args.python, nodes, seeds)
        gossip = sim["gossip"]
        model = serf_model(nodes, gossip["gossip_interval"], gossip["gossip_nodes"])
        real = ({"error": "skipped (--no-real)"} if args.no_real else
                real_convergence(args.python, nodes, args.port_base,
                                 out.with_suffix(".logs") / f"n{nodes}"))
        entry = {"nodes": nodes, "sim": sim, "real": real, "serf_model": model}
        results["convergence"].append(entry)
        print(f"  sim {sim['median']} real {real} serf model {model}", flush=True)
        out.write_text(json.dumps(results, indent=1))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
