"""Chaos plans: the PLAN.json schema, its validation, and the seeded fault timeline.

Theory of operation. A plan is data: a list of fault steps, each at a time in seconds
from the start of the run, a workload to keep running meanwhile, how long to let the
cluster settle after the final heal, and the bounds the invariants are held to::

    {"name": "partition-heal",
     "steps": [{"at": 2.0, "do": "partition", "groups": [["s1"], ["s2", "s3"]]},
               {"at": 3.0, "do": "kill", "pick": "random-server", "label": "victim"},
               {"at": 6.0, "do": "restart", "node": "@victim"},
               {"at": 8.0, "do": "heal"}],
     "workload": {"writes_per_second": 5, "jobs": 10},
     "settle": 30.0,
     "bounds": {"converge_within": 20.0}}

``parse_plan`` checks every field and raises ``PlanError`` naming the first bad one
(``steps[2].percent: expected a number from 0 to 100, got "x"``); nothing runs on a bad
plan. ``resolve_timeline`` turns the steps into ``Action``s against the cluster's
nodes: names are checked, ``random-*`` picks are drawn from
``random.Random(f"{seed}/chaos/{name}")`` over the sorted candidates that the timeline
has not already taken down, ``@label`` refers to the node an earlier labelled step
chose, and a partition group's ``"*"`` stands for every node no group names. So the same plan, cluster and seed always give the same timeline, printed before
anything runs. Two picks depend on the live cluster and are resolved when their step
runs: ``leader`` (the server that leads then) and ``follower`` (a seeded choice among
the others). The timeline ends with a ``final-heal``: partitions, loss and delay are
cleared and stopped processes continued; killed ones stay down unless a step restarts
them, so a plan that kills a majority shows what that costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from random import Random
from typing import Any, Mapping, Sequence

__all__ = ["Action", "Bounds", "FINAL_HEAL", "NODE_VERBS", "PICKS", "Plan", "PlanError", "Step",
           "REST", "VERBS", "Workload", "format_timeline", "isolating_groups", "parse_plan",
           "resolve_timeline"]

NODE_VERBS = ("kill", "stop", "cont", "restart", "loss", "delay")
"""Verbs aimed at one node (``node`` or ``pick``)."""

VERBS = NODE_VERBS + ("partition", "heal")

PICKS = ("random-server", "random-client", "random-node", "leader", "follower")
"""``pick`` values: the first three drawn from the seed, the last two when the step runs."""

RUNTIME_PICKS = ("leader", "follower")

FINAL_HEAL = "final-heal"
"""The verb of the action the runner always adds after the last step."""

_TOP_KEYS = ("name", "description", "steps", "workload", "settle", "heal_at", "bounds")
_WORKLOAD_KEYS = ("writes_per_second", "jobs", "job_count", "job_duration")
_BOUND_KEYS = ("converge_within",)
_STEP_KEYS = {"kill": ("node", "pick", "label"), "stop": ("node", "pick", "label"),
              "cont": ("node", "pick", "label"), "restart": ("node", "pick", "label"),
              "loss": ("node", "pick", "label", "percent"), "delay": ("node", "pick", "label", "ms"),
              "partition": ("groups", "isolate"), "heal": ()}
_DOWN_VERBS = ("kill", "stop")
_UP_VERBS = ("restart", "cont")
_ROLE_OF_PICK = {"random-server": ("server",), "random-client": ("client",),
                 "random-node": ("server", "client", "serf")}
REST = "*"
"""In a partition group: every node no group names."""


class PlanError(ValueError):
    """The plan is not valid; the message names the field (exit status 2)."""


@dataclass(frozen=True, slots=True)
class Workload:
    """What the runner keeps doing while the faults happen."""
    writes_per_second: float = 5.0   # PUT /v1/var/chaos/<run>/<seq>, spread over the servers
    jobs: int = 0                    # batch jobs submitted, evenly over the fault window
    job_count: int = 2               # allocations per job (its task group's Count)
    job_duration: float = 1.0        # seconds each simulated batch allocation runs


@dataclass(frozen=True, slots=True)
class Bounds:
    """Numbers the invariants are checked against."""
    converge_within: float = 20.0    # seconds from the final heal until every view is alive


@dataclass(frozen=True, slots=True)
class Step:
    """One validated plan step, as written (picks and labels not yet resolved)."""
    index: int                       # position in the plan's "steps" list
    at: float
    do: str
    node: str | None = None          # a node name or "@label"
    pick: str | None = None
    label: str | None = None
    groups: tuple[tuple[str, ...], ...] | None = None
    isolate: str | None = None       # partition one node (name, "@label" or a pick) from the rest
    percent: float | None = None
    ms: float | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated plan; ``steps`` sorted by time (ties keep the file's order)."""
    name: str
    steps: tuple[Step, ...]
    workload: Workload = Workload()
    settle: float = 30.0             # longest wait after the final heal for the cluster to settle
    heal_at: float = 0.0             # time of the final heal (default: the last step's time)
    bounds: Bounds = Bounds()
    description: str = ""


@dataclass(frozen=True, slots=True)
class Action:
    """One step of the resolved timeline, ready for the runner.

    ``node`` is a node name, or ``"leader"``/``"follower"`` (resolved when the action
    runs), or ``"@label"`` naming such a step. ``groups`` of a partition are node names,
    except that an isolating partition with a runtime pick has ``isolate`` set and the
    runner computes the groups.
    """
    at: float
    do: str
    node: str | None = None
    groups: tuple[tuple[str, ...], ...] | None = None
    isolate: str | None = None
    percent: float | None = None
    ms: float | None = None
    label: str | None = None
    source: int | None = None        # the plan step it came from (None for final-heal)
    note: str = ""                   # how a pick was resolved, for the printed timeline

    def describe(self) -> str:
        """The action as one short phrase: ``kill s2``, ``partition [s1] | [s2 s3]``."""
        if self.do == "partition":
            if self.groups is not None:
                return "partition " + " | ".join("[" + " ".join(g) + "]" for g in self.groups)
            return f"partition isolate {self.isolate}"
        if self.do == "loss":
            return f"loss {self.node} {_number_text(self.percent)}%"
        if self.do == "delay":
            return f"delay {self.node} {_number_text(self.ms)}ms"
        if self.do in NODE_VERBS:
            return f"{self.do} {self.node}"
        return self.do


# --- parsing ---------------------------------------------------------------------------------


def parse_plan(data: Any) -> Plan:
    """Validate a decoded PLAN.json document.

    Raises:
        PlanError: naming the first field that is wrong and why.
    """
    if not isinstance(data, dict):
        raise PlanError(f"plan: expected a JSON object, got {_kind(data)}")
    _unknown_keys(data, _TOP_KEYS, "plan")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PlanError(f"name: expected a non-empty string, got {_kind(name)}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise PlanError(f"description: expected a string, got {_kind(description)}")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list):
        raise PlanError(f"steps: expected a list of steps, got {_kind(raw_steps)}")
    steps = [_parse_step(raw, index) for index, raw in enumerate(raw_steps)]
    _check_labels(steps)
    steps.sort(key=lambda step: (step.at, step.index))
    last = max((step.at for step in steps), default=0.0)
    heal_at = _seconds(data, "heal_at", "heal_at", default=last)
    if heal_at < last:
        raise PlanError(f"heal_at: {_number_text(heal_at)} comes before the last step "
                        f"(at {_number_text(last)})")
    return Plan(name=name.strip(), description=description, steps=tuple(steps),
                workload=_parse_workload(data.get("workload", {})),
                settle=_seconds(data, "settle", "settle", default=30.0, positive=True),
                heal_at=heal_at, bounds=_parse_bounds(data.get("bounds", {})))


def _parse_step(raw: Any, index: int) -> Step:
    where = f"steps[{index}]"
    if not isinstance(raw, dict):
        raise PlanError(f"{where}: expected an object, got {_kind(raw)}")
    verb = raw.get("do")
    if verb not in VERBS:
        raise PlanError(f"{where}.do: expected one of {', '.join(VERBS)}, got {_kind(verb)}")
    _unknown_keys(raw, ("at", "do") + _STEP_KEYS[verb], where)
    if "at" not in raw:
        raise PlanError(f"{where}.at: missing (seconds from the start of the run)")
    at = _seconds(raw, "at", f"{where}.at", default=0.0)
    label = _optional_name(raw, "label", where)
    if label is not None and label.startswith("@"):
        raise PlanError(f"{where}.label: a label does not start with '@'")
    if verb in NODE_VERBS:
        node, pick = _target(raw, where)
        percent = ms = None
        if verb == "loss":
            percent = _ranged(raw, "percent", where, 0.0, 100.0, "a number from 0 to 100")
        if verb == "delay":
            ms = _ranged(raw, "ms", where, 0.0, 600_000.0, "milliseconds from 0 to 600000")
        return Step(index=index, at=at, do=verb, node=node, pick=pick, label=label,
                    percent=percent, ms=ms)
    if verb == "partition":
        return _parse_partition(raw, index, at, where)
    return Step(index=index, at=at, do=verb)


def _target(raw: Mapping[str, Any], where: str) -> tuple[str | None, str | None]:
    node = _optional_name(raw, "node", where)
    pick = raw.get("pick")
    if pick is not None and pick not in PICKS:
        raise PlanError(f"{where}.pick: expected one of {', '.join(PICKS)}, got {_kind(pick)}")
    if (node is None) == (pick is None):
        raise PlanError(f"{where}: give exactly one of node or pick")
    return node, pick


def _parse_partition(raw: Mapping[str, Any], index: int, at: float, where: str) -> Step:
    has_groups, has_isolate = "groups" in raw, "isolate" in raw
    if has_groups == has_isolate:
        raise PlanError(f"{where}: a partition gives exactly one of groups or isolate")
    if has_isolate:
        isolate = raw["isolate"]
        if not isinstance(isolate, str) or not isolate:
            raise PlanError(f"{where}.isolate: expected a node name, @label or pick, got {_kind(isolate)}")
        return Step(index=index, at=at, do="partition", isolate=isolate)
    groups = raw["groups"]
    if not isinstance(groups, list) or len(groups) < 2:
        raise PlanError(f"{where}.groups: expected a list of at least two lists of node names, "
                        f"got {_kind(groups)}")
    seen: dict[str, int] = {}
    parsed: list[tuple[str, ...]] = []
    for g, group in enumerate(groups):
        if not isinstance(group, list) or not group:
            raise PlanError(f"{where}.groups[{g}]: expected a non-empty list of node names, got {_kind(group)}")
        for n, name in enumerate(group):
            if not isinstance(name, str) or not name:
                raise PlanError(f"{where}.groups[{g}][{n}]: expected a node name, got {_kind(name)}")
            if name == REST and REST in seen:
                raise PlanError(f"{where}.groups[{g}]: \"*\" (every node not named) appears twice")
            if name in seen:
                raise PlanError(f"{where}.groups[{g}]: {name!r} is already in group {seen[name]}")
            seen[name] = g
        parsed.append(tuple(group))
    return Step(index=index, at=at, do="partition", groups=tuple(parsed))


def _check_labels(steps: Sequence[Step]) -> None:
    """Labels are unique, and "@label" refers to an earlier labelled step."""
    labelled: dict[str, Step] = {}
    for step in sorted(steps, key=lambda s: (s.at, s.index)):
        for ref, key in ((step.node, "node"), (step.isolate, "isolate")):
            if ref is not None and ref.startswith("@") and ref[1:] not in labelled:
                raise PlanError(f"steps[{step.index}].{key}: {ref} names no earlier labelled step")
        if step.label is not None:
            if step.label in labelled:
                raise PlanError(f"steps[{step.index}].label: {step.label!r} is already the label "
                                f"of steps[{labelled[step.label].index}]")
            labelled[step.label] = step


def _parse_workload(raw: Any) -> Workload:
    if not isinstance(raw, dict):
        raise PlanError(f"workload: expected an object, got {_kind(raw)}")
    _unknown_keys(raw, _WORKLOAD_KEYS, "workload")
    default = Workload()
    return Workload(
        writes_per_second=_ranged(raw, "writes_per_second", "workload", 0.0, 100.0,
                                  "a number from 0 to 100", default=default.writes_per_second),
        jobs=_integer(raw, "jobs", "workload", 0, 1000, default.jobs),
        job_count=_integer(raw, "job_count", "workload", 1, 100, default.job_count),
        job_duration=_ranged(raw, "job_duration", "workload", 0.0, 3600.0,
                             "seconds from 0 to 3600", default=default.job_duration))


def _parse_bounds(raw: Any) -> Bounds:
    if not isinstance(raw, dict):
        raise PlanError(f"bounds: expected an object, got {_kind(raw)}")
    _unknown_keys(raw, _BOUND_KEYS, "bounds")
    return Bounds(converge_within=_seconds(raw, "converge_within", "bounds.converge_within",
                                           default=Bounds().converge_within, positive=True))


# --- field helpers ---------------------------------------------------------------------------


def _kind(value: Any) -> str:
    """How a bad value is shown in an error: its JSON text, or its JSON type when long."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        text = repr(value) if isinstance(value, str) else _number_text(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _number_text(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _unknown_keys(obj: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            prefix = "" if where == "plan" else f"{where}."
            raise PlanError(f"{prefix}{key}: unknown key (expected one of {', '.join(allowed)})")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _seconds(obj: Mapping[str, Any], key: str, where: str, *, default: float,
             positive: bool = False) -> float:
    value = obj.get(key, default)
    if not _is_number(value) or value < 0 or (positive and value == 0) or value > 86_400:
        want = "a positive number of seconds" if positive else "seconds (0 or more)"
        raise PlanError(f"{where}: expected {want}, got {_kind(value)}")
    return float(value)


def _ranged(obj: Mapping[str, Any], key: str, where: str, low: float, high: float, want: str,
            default: float | None = None) -> float:
    if key not in obj and default is not None:
        return default
    if key not in obj:
        raise PlanError(f"{where}.{key}: missing ({want})")
    value = obj[key]
    if not _is_number(value) or not low <= value <= high:
        raise PlanError(f"{where}.{key}: expected {want}, got {_kind(value)}")
    return float(value)


def _integer(obj: Mapping[str, Any], key: str, where: str, low: int, high: int, default: int) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PlanError(f"{where}.{key}: expected a whole number from {low} to {high}, got {_kind(value)}")
    return value


def _optional_name(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise PlanError(f"{where}.{key}: expected a non-empty string, got {_kind(value)}")
    return value


# --- the seeded timeline ---------------------------------------------------------------------


def resolve_timeline(plan: Plan, nodes: Sequence[tuple[str, str]], seed: int) -> list[Action]:
    """The plan's actions against a cluster of ``(name, role)`` nodes, picks drawn from ``seed``.

    Raises:
        PlanError: a step names a node the cluster lacks, aims a verb at a node of the
            wrong kind, or a pick has nothing left to choose from.
    """
    roles = dict(nodes)
    rng = Random(f"{seed}/chaos/{plan.name}")
    down: set[str] = set()
    chosen: dict[str, str] = {}          # label -> node name or runtime pick
    actions: list[Action] = []
    for step in plan.steps:
        where = f"steps[{step.index}]"
        if step.do in NODE_VERBS:
            node, note = _resolve_target(step, roles, down, chosen, rng, where)
            if step.label is not None:
                chosen[step.label] = node
            if node in roles:
                if step.do in _DOWN_VERBS:
                    down.add(node)
                elif step.do in _UP_VERBS:
                    down.discard(node)
            actions.append(Action(at=step.at, do=step.do, node=node, percent=step.percent,
                                  ms=step.ms, label=step.label, source=step.index, note=note))
        elif step.do == "partition":
            actions.append(_resolve_partition(step, roles, down, chosen, rng, where))
        else:
            actions.append(Action(at=step.at, do=step.do, source=step.index))
    actions.append(Action(at=plan.heal_at, do=FINAL_HEAL,
                          note="clear partitions, loss and delay; continue stopped nodes"))
    return actions


def _resolve_target(step: Step, roles: Mapping[str, str], down: set[str], chosen: Mapping[str, str],
                    rng: Random, where: str) -> tuple[str, str]:
    if step.node is not None:
        return _named(step.node, roles, chosen, f"{where}.node", step.do)
    assert step.pick is not None
    return _picked(step.pick, roles, down, rng, f"{where}.pick")


def _named(name: str, roles: Mapping[str, str], chosen: Mapping[str, str], where: str,
           verb: str) -> tuple[str, str]:
    if name.startswith("@"):
        target = chosen[name[1:]]
        return (target, f"{name}") if target in roles else (name, f"{name} = {target}")
    if name not in roles:
        raise PlanError(f"{where}: no node {name!r} in the cluster (nodes: {', '.join(sorted(roles))})")
    if roles[name] == "serf" and verb in ("loss", "delay"):
        raise PlanError(f"{where}: {name!r} is a serf agent, which has no fault filter for {verb}")
    return name, ""


def _picked(pick: str, roles: Mapping[str, str], down: set[str], rng: Random,
            where: str) -> tuple[str, str]:
    if pick in RUNTIME_PICKS:
        return pick, "resolved when the step runs"
    candidates = sorted(n for n, role in roles.items() if role in _ROLE_OF_PICK[pick] and n not in down)
    if not candidates:
        raise PlanError(f"{where}: {pick} has no node left to choose from")
    return candidates[rng.randrange(len(candidates))], pick


def _resolve_partition(step: Step, roles: Mapping[str, str], down: set[str],
                       chosen: Mapping[str, str], rng: Random, where: str) -> Action:
    if step.groups is not None:
        named = {name for group in step.groups for name in group}
        for g, group in enumerate(step.groups):
            for name in group:
                if name != REST and name not in roles:
                    raise PlanError(f"{where}.groups[{g}]: no node {name!r} in the cluster "
                                    f"(nodes: {', '.join(sorted(roles))})")
        rest = tuple(sorted(n for n in roles if n not in named))
        groups = tuple(tuple(n for name in group for n in (rest if name == REST else (name,)))
                       for group in step.groups)
        if any(not group for group in groups):
            raise PlanError(f"{where}.groups: \"*\" stands for no node here (every node is named)")
        note = f"* = {' '.join(rest)}" if REST in named else ""
        return Action(at=step.at, do="partition", groups=groups, source=step.index, note=note)
    assert step.isolate is not None
    if step.isolate in PICKS:
        target, note = _picked(step.isolate, roles, down, rng, f"{where}.isolate")
    else:
        target, note = _named(step.isolate, roles, chosen, f"{where}.isolate", "partition")
    if target not in roles:                      # leader / follower / @label of one: at run time
        return Action(at=step.at, do="partition", isolate=target, source=step.index, note=note)
    return Action(at=step.at, do="partition", groups=isolating_groups(target, sorted(roles)),
                  source=step.index, note=f"isolate {target}" + (f" ({note})" if note else ""))


def isolating_groups(target: str, nodes: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """The groups that cut ``target`` off from every other node."""
    rest = tuple(sorted(n for n in nodes if n != target))
    return ((target,), rest) if rest else ((target,),)


def format_timeline(plan: Plan, actions: Sequence[Action], seed: int) -> str:
    """The resolved timeline as printed before a run (and kept in the report)."""
    lines = [f"chaos plan {plan.name!r} seed={seed}: {len(actions)} actions, "
             f"settle up to {_number_text(plan.settle)}s, "
             f"converge within {_number_text(plan.bounds.converge_within)}s"]
    for action in actions:
        note = f"   ({action.note})" if action.note else ""
        label = f" as @{action.label}" if action.label else ""
        lines.append(f"  t={action.at:6.1f}s  {action.describe()}{label}{note}")
    return "\n".join(lines) + "\n"
