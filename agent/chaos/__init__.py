"""`shoal chaos`: seeded fault plans run on a local cluster, judged by invariants.

``plan`` parses PLAN.json and resolves the seeded timeline; ``record`` holds what a
run observed; ``invariants`` judges it; ``report`` writes report.json, summary.txt and
timeline.svg (those four are pure). ``observe`` (HTTP samplers and the workload) and
``run`` (the driver, through ``agent.cluster.ops``) do the I/O; ``cli`` is the command.
User guide: docs/chaos.md.
"""

from .invariants import Verdict, check_all, exit_status
from .plan import Action, Plan, PlanError, parse_plan, resolve_timeline
from .record import Record

__all__ = ["Action", "Plan", "PlanError", "Record", "Verdict", "check_all", "exit_status",
           "parse_plan", "resolve_timeline"]
