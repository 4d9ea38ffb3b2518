"""``python -m agent.sim``: run a seeded simulation scenario and print a summary.

The seed is printed first, then one line per phase, then counters and the real time
taken. The exit status is 0 when every phase met its bound, 1 otherwise.

    python -m agent.sim --nodes 100 --seed 42 --loss 0.05 --scenario join-kill-leave
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from dataclasses import fields

from .scenarios import SCENARIOS, Params, run_scenario


HELP = {
    "nodes": "cluster size (n1 .. nN)",
    "loss": "UDP loss probability",
    "dup": "UDP duplication probability",
    "delay_min": "minimum one-way delay, seconds",
    "delay_mean": "mean of the exponential extra delay, seconds",
    "profile": "gossip timing profile: lan, wan or local",
    "seeds": "how many of the first nodes the others join through",
    "join_window": "nodes start spread over this many virtual seconds",
    "partition_time": "how long the partition lasts, virtual seconds",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = Params()
    parser = argparse.ArgumentParser(prog="python -m agent.sim", description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default=defaults.scenario, choices=sorted(SCENARIOS))
    parser.add_argument("--seed", type=int, default=None,
                        help="root seed (default: a random one, printed)")
    for f in fields(Params):
        if f.name in ("scenario", "seed"):
            continue
        kind = type(f.default)
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default,
                            help=f"{HELP.get(f.name, '')} (default {f.default})")
    parser.add_argument("--trace", type=int, default=0, metavar="N",
                        help="print the last N trace lines (-1: all that were kept)")
    parser.add_argument("--no-packet-trace", action="store_true",
                        help="trace only transitions, not every datagram (faster)")
    parser.add_argument("--log-level", default="WARNING",
                        help="log level of the cores (lines carry virtual time)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"seed={seed}", flush=True)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    values = {f.name: getattr(args, f.name) for f in fields(Params) if f.name != "seed"}
    params = Params(seed=seed, **values)
    result = run_scenario(params, trace_packets=not args.no_packet_trace)
    if args.trace:
        lines = result.sim.trace.lines(None if args.trace < 0 else args.trace)
        print("\n".join(lines))
    print(result.report())
    print("OK" if result.ok else "FAILED")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
