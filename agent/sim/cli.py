"""``shoal sim``: production gossip (and Raft) cores in the deterministic simulator.

    shoal sim --nodes N --seed S [--profile lan|wan|local] [--loss P] [--kill K]
              [--partition 'n1-n5|n6-n9' ...] [--partition-time S] [--duration S]
              [--servers M] [--join-window S] [--json] [--plot FILE.png] [--progress]
              [--log-level LEVEL]

Prints the convergence and detection timelines of ``experiment.run_experiment``:
when each fraction of the nodes saw the join converge, when the survivors marked each
killed node suspect and failed, when each side of a partition saw the other failed
and when all saw each other again after the heal, and with ``--servers`` the Raft
elections. stdout holds virtual times only, so the same arguments give the same
bytes; the real time taken goes to stderr. Exit status: 0 when every timeline
completed, 1 on bad arguments (as every ``shoal`` verb: one line on stderr), when
an invariant broke, or when a timeline did not complete within its bound.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Sequence

from agent.config import UsageError, _Parser

from .experiment import Experiment, SimSpec, run_experiment

PROFILES = ("lan", "wan", "local")
_NODE = re.compile(r"^n?(\d+)$")
_RANGE = re.compile(r"^n?(\d+)-n?(\d+)$")


def parse_groups(text: str, nodes: int) -> tuple[tuple[str, ...], ...]:
    """``'n1-n5,n9|n6-n8'`` -> ``(('n1', .. 'n5', 'n9'), ('n6', 'n7', 'n8'))``.

    Groups are separated by ``|``, members by ``,``; a member is ``nK`` or ``K``, a
    range ``nA-nB`` or ``A-B``. Nodes in no group form one more group.

    Raises:
        UsageError: an unknown node, a node listed twice, an empty group.
    """
    groups: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for part in text.split("|"):
        members: list[str] = []
        for item in filter(None, (p.strip() for p in part.split(","))):
            single, span = _NODE.match(item), _RANGE.match(item)
            if single:
                first = last = int(single.group(1))
            elif span:
                first, last = int(span.group(1)), int(span.group(2))
            else:
                raise UsageError(f"--partition: bad node {item!r} (want nK or nA-nB)")
            if not 1 <= first <= last <= nodes:
                raise UsageError(f"--partition: {item!r} is outside n1..n{nodes}")
            for index in range(first, last + 1):
                name = f"n{index}"
                if name in seen:
                    raise UsageError(f"--partition: {name} is in two groups")
                seen.add(name)
                members.append(name)
        if not members:
            raise UsageError(f"--partition: empty group in {text!r}")
        groups.append(tuple(members))
    if len(groups) < 2 and len(seen) == nodes:
        raise UsageError(f"--partition: {text!r} leaves nobody on the other side")
    return tuple(groups)


def _parser() -> _Parser:
    parser = _Parser(prog="shoal sim", description="Run gossip (and Raft) cores in the "
                     "deterministic simulator; print convergence and detection timelines.")
    parser.add_argument("--nodes", type=int, required=True, help="cluster size (n1 .. nN)")
    parser.add_argument("--seed", type=int, required=True, help="root seed of every random choice")
    parser.add_argument("--profile", default="lan", choices=PROFILES, help="gossip timing profile")
    parser.add_argument("--loss", type=float, default=0.0, help="UDP loss probability [0, 1)")
    parser.add_argument("--kill", type=int, default=0, metavar="K",
                        help="kill K nodes once the join converged (with --servers: the leader first)")
    parser.add_argument("--partition", action="append", default=[], metavar="A|B",
                        help="split into groups, e.g. 'n1-n5|n6-n9' (repeat for several, in turn)")
    parser.add_argument("--partition-time", type=float, default=30.0,
                        help="virtual seconds each partition lasts (default 30)")
    parser.add_argument("--duration", type=float, default=None,
                        help="run exactly this many virtual seconds (default: until every "
                             "timeline completed or passed its bound)")
    parser.add_argument("--servers", type=int, default=0, metavar="M",
                        help="n1..nM also run Raft")
    parser.add_argument("--join-window", type=float, default=5.0,
                        help="nodes start over this many virtual seconds (default 5)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the timelines (needs matplotlib)")
    parser.add_argument("--log-level", default="error", type=str.lower,
                        choices=("debug", "info", "warning", "error"),
                        help="level of the cores' log lines on stderr (they carry virtual time)")
    parser.add_argument("--progress", action="store_true",
                        help="virtual and real time on stderr as the run goes")
    return parser


def parse_spec(argv: Sequence[str]) -> tuple[SimSpec, object]:
    """Parse and check the flags; raises ``UsageError`` with a one-line message."""
    args = _parser().parse_args(list(argv))
    if args.nodes < 1:
        raise UsageError("--nodes must be at least 1")
    if not 0.0 <= args.loss < 1.0:
        raise UsageError(f"--loss must be within [0, 1), got {args.loss:g}")
    if not 0 <= args.kill < args.nodes:
        raise UsageError(f"--kill must be within 0..{args.nodes - 1} (someone must survive)")
    if not 0 <= args.servers <= args.nodes:
        raise UsageError(f"--servers must be within 0..{args.nodes}")
    if args.partition_time <= 0:
        raise UsageError("--partition-time must be positive")
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be positive")
    if args.join_window < 0:
        raise UsageError("--join-window must not be negative")
    if args.plot is not None:
        if not args.plot.lower().endswith(".png"):
            raise UsageError(f"--plot writes a PNG: give a FILE.png, not {args.plot!r}")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib, the optional 'plot' extra: "
                             "pip install 'shoal[plot]' (or pip install matplotlib)") from None
    partitions = tuple(parse_groups(text, args.nodes) for text in args.partition)
    spec = SimSpec(nodes=args.nodes, seed=args.seed, profile=args.profile, loss=args.loss,
                   kill=args.kill, partitions=partitions, partition_time=args.partition_time,
                   duration=args.duration, servers=args.servers, join_window=args.join_window)
    return spec, args


def run_sim_command(argv: Sequence[str]) -> int:
    """``shoal sim ...``; returns the exit status (see the module doc)."""
    try:
        spec, args = parse_spec(argv)
    except UsageError as exc:
        print(str(exc).rstrip("\n"), file=sys.stderr)
        return 1
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    began = time.perf_counter()

    def progress(now: float, events: int) -> None:
        print(f"progress virtual={now:.1f}s events={events} "
              f"real={time.perf_counter() - began:.1f}s", file=sys.stderr, flush=True)

    exp = run_experiment(spec, progress=progress if args.progress else None)
    real = time.perf_counter() - began
    if args.json:
        print(json.dumps(exp.to_json(), indent=1, sort_keys=True))
    else:
        print("\n".join(exp.lines()))
    sys.stdout.flush()
    summary = exp.sim.summary()
    print(f"real time {real:.2f}s for {summary['now']:.1f} virtual s, {summary['events']} events "
          f"({summary['events'] / max(real, 1e-9):.0f} events/s)", file=sys.stderr)
    if args.plot:
        write_plot(exp, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0 if exp.ok else 1


def write_plot(exp: Experiment, path: str) -> None:
    """Draw every curve (fraction of observers over virtual time) and mark the events."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=100)
    for section in exp.sections:
        for curve in section.curves:
            points = curve.points()
            if not points:
                continue
            xs = [curve.start] + [t for t, _ in points]
            ys = [0.0] + [100.0 * f for _, f in points]
            ax.step(xs, ys, where="post", label=curve.label)
    for index, (t, text) in enumerate(exp.events):  # staggered so same-time notes stay legible
        ax.axvline(t, color="grey", linestyle=":", linewidth=0.8)
        ax.annotate(text, (t, 2 + 26 * (index % 3)), rotation=90, fontsize=7, color="dimgrey",
                    va="bottom", ha="right")
    if exp.raft is not None:
        for e in exp.raft.elected:
            ax.plot([e.time], [100.0], marker="v", color="black")
            ax.annotate(f"{e.node} t{e.term}", (e.time, 101), fontsize=7, ha="center")
    spec = exp.spec
    ax.set_title(f"shoal sim: {spec.nodes} nodes, seed {spec.seed}, {spec.profile}, "
                 f"loss {spec.loss:g}")
    ax.set_xlabel("virtual time (s)")
    ax.set_ylabel("% of observers that saw it")
    ax.set_ylim(0, 108)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
