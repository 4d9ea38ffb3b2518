"""The report of a chaos run: ``report.json``, ``summary.txt`` and ``timeline.svg``.

The texts are built by pure functions (``report_json``, ``summary_text``,
``timeline_svg``) from the ``Record`` and the ``Verdict``s; ``write_report`` only writes
them. The picture is hand-written SVG, no plotting library: time runs left to right;
on top one row per server with its Raft role (leader bands carry their term), then a
row of workload writes (acknowledged or not), then one row per observer x member pair
coloured by what that observer's ``/v1/agent/members`` said of that member; every fault
action is a dashed line across all rows, labelled on top.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Sequence
from xml.sax.saxutils import escape

from .invariants import BROKEN, HELD, Verdict, exit_status
from .record import Record

__all__ = ["MARKS", "report_json", "segments", "summary_text", "timeline_svg", "write_report"]

MARKS = {HELD: "✓", BROKEN: "✗"}
"""The mark of each verdict in the summary (anything else: ``?``)."""

STATUS_COLOURS = {"alive": "#43a047", "suspect": "#fbc02d", "failed": "#e53935", "left": "#78909c",
                  "leaving": "#b0bec5", "absent": "#f5f5f5", "no answer": "#9e9e9e"}
ROLE_COLOURS = {"Leader": "#1e3a8a", "Follower": "#bfdbfe", "Candidate": "#f59e0b",
                "unreachable": "#9e9e9e"}
WRITE_COLOURS = {"ok": "#43a047", "failed": "#e53935", "timeout": "#fb8c00"}

LEFT, PLOT_WIDTH, ROW, GAP, HEADER = 170, 900, 16, 4, 96


def report_json(record: Record, verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """The whole report as JSON-ready data (``record`` can be read back with ``Record.from_json``)."""
    return {"plan": record.plan, "seed": record.seed, "exit_status": exit_status(verdicts),
            "verdicts": [asdict(v) for v in verdicts], "timeline": record.timeline,
            "record": record.to_json()}


def summary_text(record: Record, verdicts: Sequence[Verdict]) -> str:
    """The human summary: one line per invariant with its mark and numbers, then details."""
    broken = [v for v in verdicts if v.status == BROKEN]
    head = (f"chaos run {record.plan!r} seed={record.seed}: "
            + (f"{len(broken)} invariant{'s' if len(broken) != 1 else ''} broken ("
               + ", ".join(v.name for v in broken) + ")" if broken else "every invariant held"))
    lines = [head, ""]
    for verdict in verdicts:
        lines.append(f"{MARKS.get(verdict.status, '?')} {verdict.title}: {verdict.summary}")
        lines += [f"    - {problem}" for problem in verdict.problems]
    lines += ["", "faults as run:"]
    for event in record.faults:
        result = "ok" if event.ok else f"FAILED: {event.error}"
        lines.append(f"  t={event.t:6.1f}s (planned {event.at:.1f}s)  {event.description}  {result}")
    lines += ["", f"observed from t=0 to t={record.ended_t:.1f}s; final heal at t={record.heal_t:.1f}s"]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, record: Record, verdicts: Sequence[Verdict]) -> list[Path]:
    """Write the three files into ``out_dir`` (made if needed); their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"report.json": json.dumps(report_json(record, verdicts), indent=2) + "\n",
             "summary.txt": summary_text(record, verdicts),
             "timeline.svg": timeline_svg(record, verdicts)}
    paths = []
    for name, text in files.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


# --- the picture ------------------------------------------------------------------------------


def segments(points: Iterable[tuple[float, str]], end: float) -> list[tuple[float, float, str]]:
    """Step segments ``(start, stop, value)`` from time-sorted ``(t, value)`` points; equal neighbours merged."""
    out: list[tuple[float, float, str]] = []
    ordered = sorted(points, key=lambda p: p[0])
    for index, (t, value) in enumerate(ordered):
        stop = ordered[index + 1][0] if index + 1 < len(ordered) else max(end, t)
        if out and out[-1][2] == value and out[-1][1] == t:
            out[-1] = (out[-1][0], stop, value)
        else:
            out.append((t, stop, value))
    return out


class _Canvas:
    """SVG elements with the run's time scale."""

    def __init__(self, end: float) -> None:
        self.end = max(end, 1e-3)
        self.parts: list[str] = []

    def x(self, t: float) -> float:
        return round(LEFT + max(0.0, min(t, self.end)) / self.end * PLOT_WIDTH, 1)

    def rect(self, t0: float, t1: float, y: float, fill: str, title: str, height: float = ROW) -> None:
        width = max(self.x(t1) - self.x(t0), 0.8)
        self.parts.append(f'<rect x="{self.x(t0)}" y="{y}" width="{width:.1f}" height="{height}" '
                          f'fill="{fill}"><title>{escape(title)}</title></rect>')

    def text(self, x: float, y: float, text: str, *, size: int = 11, anchor: str = "start",
             fill: str = "#222", weight: str = "normal") -> None:
        self.parts.append(f'<text x="{x}" y="{y}" font-size="{size}" text-anchor="{anchor}" '
                          f'fill="{fill}" font-weight="{weight}">{escape(text)}</text>')

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str, dash: str = "") -> None:
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{stroke}"{extra}/>')


def timeline_svg(record: Record, verdicts: Sequence[Verdict]) -> str:
    """The timeline picture of the run as an SVG document."""
    end = max(record.ended_t, 1.0)
    canvas = _Canvas(end)
    y = HEADER
    y = _raft_rows(canvas, record, y, end)
    y = _write_row(canvas, record, y + GAP * 2)
    y = _view_rows(canvas, record, y + GAP * 2, end)
    bottom = y + GAP
    _axis(canvas, bottom, end)
    _faults(canvas, record, bottom)
    legend_y = bottom + 44
    _legend(canvas, legend_y)
    broken = [v.name for v in verdicts if v.status == BROKEN]
    title = (f"chaos plan {record.plan} · seed {record.seed} · "
             + ("broken: " + ", ".join(broken) if broken else "every invariant held"))
    canvas.text(10, 18, title, size=14, weight="bold", fill="#b71c1c" if broken else "#1b5e20")
    height = legend_y + 30
    width = LEFT + PLOT_WIDTH + 30
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif">\n'
            f'<rect width="{width}" height="{height}" fill="white"/>\n'
            + "\n".join(canvas.parts) + "\n</svg>\n")


def _raft_rows(canvas: _Canvas, record: Record, y: float, end: float) -> float:
    canvas.text(10, y - 4, "raft role", size=10, fill="#555", weight="bold")
    for server in record.observers:
        points = [(s.t, f"{s.state}|{s.term}") for s in record.raft_samples if s.server == server]
        for t0, t1, value in segments(points, end):
            state, term = value.split("|")
            canvas.rect(t0, t1, y, ROLE_COLOURS.get(state, "#e0e0e0"),
                        f"{server}: {state} term {term} from t={t0:.1f}s to {t1:.1f}s")
            if state == "Leader" and canvas.x(t1) - canvas.x(t0) > 26:
                canvas.text(canvas.x(t0) + 3, y + ROW - 4, f"T{term}", size=10, fill="white")
        canvas.text(LEFT - 6, y + ROW - 4, server, anchor="end")
        y += ROW + GAP
    return y


def _write_row(canvas: _Canvas, record: Record, y: float) -> float:
    canvas.text(LEFT - 6, y + ROW - 4, "writes", anchor="end")
    for write in record.writes:
        x = canvas.x(write.started)
        colour = WRITE_COLOURS.get(write.outcome, "#9e9e9e")
        canvas.parts.append(f'<rect x="{x}" y="{y}" width="2" height="{ROW}" fill="{colour}">'
                            f'<title>{escape(f"{write.path} via {write.via}: {write.outcome} {write.error}")}'
                            f'</title></rect>')
    return y + ROW + GAP


def _view_rows(canvas: _Canvas, record: Record, y: float, end: float) -> float:
    canvas.text(10, y - 4, "observer → member", size=10, fill="#555", weight="bold")
    members = sorted({m for s in record.member_samples if s.members for m in s.members}
                     | set(record.expected_alive))
    for observer in record.observers:
        samples = [s for s in record.member_samples if s.observer == observer]
        for member in members:
            name = record.node_of_member.get(member, member)
            points = [(s.t, "no answer" if s.members is None else s.members.get(member, "absent"))
                      for s in samples]
            for t0, t1, status in segments(points, end):
                canvas.rect(t0, t1, y, STATUS_COLOURS.get(status, "#e0e0e0"),
                            f"{observer} saw {name} {status} from t={t0:.1f}s to {t1:.1f}s")
            canvas.text(LEFT - 6, y + ROW - 4, f"{observer} → {name}", anchor="end")
            y += ROW + 1
        y += GAP
    return y


def _axis(canvas: _Canvas, y: float, end: float) -> None:
    canvas.line(LEFT, y, LEFT + PLOT_WIDTH, y, "#444")
    step = next(s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1e9) if end / s <= 12)
    t = 0.0
    while t <= end + 1e-9:
        x = canvas.x(t)
        canvas.line(x, y, x, y + 4, "#444")
        canvas.text(x, y + 16, f"{t:g}s", size=10, anchor="middle")
        t += step


def _faults(canvas: _Canvas, record: Record, bottom: float) -> None:
    for index, event in enumerate(record.faults):
        x = canvas.x(event.t)
        colour = "#6a1b9a" if event.ok else "#b71c1c"
        canvas.line(x, 30 + (index % 3) * 14, x, bottom, colour, dash="4 3")
        label_y = 38 + (index % 3) * 14
        label = f"{event.t:.1f}s {event.description}"
        if x > LEFT + PLOT_WIDTH * 0.7:          # near the right edge: the label ends at its line
            canvas.text(x - 2, label_y, label, size=10, fill=colour, anchor="end")
        else:
            canvas.text(x + 2, label_y, label, size=10, fill=colour)


def _legend(canvas: _Canvas, y: float) -> None:
    x = 10.0
    entries = ([(colour, status) for status, colour in STATUS_COLOURS.items()]
               + [(ROLE_COLOURS["Leader"], "leader"), (ROLE_COLOURS["Follower"], "follower"),
                  (ROLE_COLOURS["Candidate"], "candidate"), (WRITE_COLOURS["ok"], "write ok"),
                  (WRITE_COLOURS["failed"], "write failed"), (WRITE_COLOURS["timeout"], "write timeout")])
    for colour, label in entries:
        canvas.parts.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{colour}" stroke="#999"/>')
        canvas.text(x + 16, y + 10, label, size=10)
        x += 22 + 6.2 * len(label)
