"""`shoal chaos ...`: run a chaos plan on a cluster made by `shoal cluster up`.

Exit status: 0 when every invariant held, 1 when one broke (the summary says which),
2 on a bad plan, bad flags, or no cluster (ready) in DIR. Errors are one line on stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Sequence

from ..cluster.state import DEFAULT_DIR, ClusterError, load_state
from ..config import UsageError, _Parser, normalise_flags
from .plan import Plan, PlanError, format_timeline, parse_plan

__all__ = ["USAGE", "load_plan", "run_chaos_command"]

USAGE = """Usage: shoal chaos <verb> [args]

    run PLAN.json [-seed S] [-dir DIR] [-out REPORT_DIR] [-dry-run]
        run the plan's faults and workload on the cluster in DIR (default ./.shoal-cluster),
        then check the invariants; writes report.json, summary.txt and timeline.svg into
        REPORT_DIR (default DIR/chaos/<plan>-seed<S>). -dry-run prints the resolved timeline.
    check PLAN.json
        validate a plan without a cluster

Exit status: 0 every invariant held, 1 one broke, 2 bad plan or no cluster.
"""


def load_plan(path: str) -> Plan:
    """Read and validate a PLAN.json file (``PlanError`` naming the file and field)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PlanError(f"{path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PlanError(f"{path}: not JSON: {exc}") from None
    try:
        return parse_plan(data)
    except PlanError as exc:
        raise PlanError(f"{path}: {exc}") from None


def _parser(verb: str) -> _Parser:
    parser = _Parser(prog=f"shoal chaos {verb}", add_help=False)
    parser.add_argument("plan")
    if verb == "run":
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--dir", default=os.environ.get("SHOAL_CLUSTER_DIR") or DEFAULT_DIR)
        parser.add_argument("--out", default=None)
        parser.add_argument("--dry-run", action="store_true")
    return parser


def run_chaos_command(argv: Sequence[str]) -> int:
    """``shoal chaos VERB ...``; the exit status."""
    if not argv or argv[0] in ("-h", "-help", "--help", "help"):
        print(USAGE, end="", file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    verb, rest = argv[0], list(argv[1:])
    if verb not in ("run", "check"):
        print(f"shoal chaos: unknown verb {verb!r} (run or check)", file=sys.stderr)
        return 2
    try:
        args = _parser(verb).parse_args(normalise_flags(rest, ("seed", "dir", "out", "dry-run")))
        plan = load_plan(args.plan)
        if verb == "check":
            print(f"plan {plan.name!r}: {len(plan.steps)} steps, final heal at "
                  f"t={plan.heal_at:g}s, settle up to {plan.settle:g}s: ok")
            return 0
        return _run(plan, args)
    except (UsageError, PlanError, ClusterError) as exc:
        print(f"shoal chaos {verb}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if verb == "run":
            print("shoal chaos run: interrupted; fault rules cleared, stopped nodes continued",
                  file=sys.stderr)
        return 130


def _run(plan: Plan, args: object) -> int:
    from .run import ChaosError, prepare, run_plan

    state = load_state(args.dir)                        # type: ignore[attr-defined]
    seed = state.seed if args.seed is None else args.seed   # type: ignore[attr-defined]
    if args.dry_run:                                    # type: ignore[attr-defined]
        print(format_timeline(plan, prepare(plan, state, seed), seed), end="")
        return 0
    out = Path(args.out) if args.out else state.dir / "chaos" / f"{_slug(plan.name)}-seed{seed}"  # type: ignore[attr-defined]
    try:
        result = run_plan(plan, seed, state, out, echo=lambda line: print(line, flush=True))
    except ChaosError as exc:
        print(f"shoal chaos run: {exc}", file=sys.stderr)
        return 2
    return result.exit_status


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name) or "plan"
