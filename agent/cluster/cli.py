"""`shoal cluster ...`: parse the verbs, call ``lifecycle`` and ``ops``, print.

Every verb takes ``-dir DIR`` (default ``./.shoal-cluster``, or ``$SHOAL_CLUSTER_DIR``).
Bad input prints one line on stderr and exits 1 having changed nothing; notes (a node
skipped, unlisted nodes of a partition) go to stderr too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Sequence

from ..config import UsageError, _Parser, normalise_flags
from . import lifecycle, ops, procs
from .state import DEFAULT_DIR, ClusterError, ClusterState, load_state

__all__ = ["run_cluster_command", "USAGE"]

USAGE = """Usage: shoal cluster <verb> [-dir DIR] [args]

    up [-servers 3] [-clients 2] [-serf K] [-seed S] [-timeout 60] [-raft-multiplier N]
       [-gossip-profile lan|wan|local]    start a local cluster and wait until it is ready
    status                                the table: processes and what the servers see
    down                                  stop every process of the cluster (by PID)
    logs NODE [-f] [-n LINES]             print (or follow) a node's log
    exec NODE -- shoal ... | serf ...     run a command aimed at NODE (SHOAL_ADDR / -rpc-addr)
    kill|stop|cont|restart NODE           SIGKILL / SIGSTOP / SIGCONT / kill and start again
    partition A,B C,D,E                   cut the cluster into groups of node names
    heal [-no-rejoin]                     remove every fault rule everywhere, then rejoin
    loss NODE PERCENT                     lose PERCENT % of NODE's outbound packets
    delay NODE MS                         add MS milliseconds to NODE's outbound packets
"""

_VERBS = ("up", "status", "down", "logs", "exec", "kill", "stop", "cont", "restart",
          "partition", "heal", "loss", "delay")


def _default_dir() -> str:
    return os.environ.get("SHOAL_CLUSTER_DIR") or DEFAULT_DIR


def _parser(verb: str) -> _Parser:
    parser = _Parser(prog=f"shoal cluster {verb}", add_help=False)
    parser.add_argument("--dir", default=_default_dir())
    return parser


def _parse(parser: _Parser, argv: Sequence[str], flags: Sequence[str]) -> object:
    return parser.parse_args(normalise_flags(argv, ("dir", *flags)))


def run_cluster_command(argv: Sequence[str]) -> int:
    """``shoal cluster VERB ...``; the exit status."""
    if not argv or argv[0] in ("-h", "-help", "--help", "help"):
        print(USAGE, end="", file=sys.stderr if not argv else sys.stdout)
        return 1 if not argv else 0
    verb, rest = argv[0], list(argv[1:])
    if verb not in _VERBS:
        print(f"unknown cluster verb {verb!r} (one of: {', '.join(_VERBS)})", file=sys.stderr)
        return 1
    try:
        return _VERB_FUNCS[verb](rest)
    except (ClusterError, UsageError) as exc:
        print(f"shoal cluster {verb}: {str(exc).rstrip()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _note(text: str) -> None:
    print(f"==> {text}", file=sys.stderr)


# --- up / status / down ---------------------------------------------------------------


class _Progress:
    """One stderr line updated in place on a terminal; a new line per change otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = ""

    def __call__(self, ready: ops.Readiness) -> None:
        line = ready.line()
        if line == self.last:
            return
        self.last = line
        if self.tty:
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.tty and self.last:
            print(file=sys.stderr)


def _up(argv: list[str]) -> int:
    parser = _parser("up")
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--serf", type=int, default=0)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--raft-multiplier", type=int)
    parser.add_argument("--gossip-profile", choices=("lan", "wan", "local"))
    args = _parse(parser, argv, ("servers", "clients", "serf", "seed", "timeout",
                                 "raft-multiplier", "gossip-profile"))
    flags: list[str] = []
    if args.raft_multiplier is not None:
        flags += ["-raft-multiplier", str(args.raft_multiplier)]
    if args.gossip_profile is not None:
        flags += ["-gossip-profile", args.gossip_profile]
    progress = _Progress()
    started = time.monotonic()
    try:
        state = lifecycle.up(args.dir, servers=args.servers, clients=args.clients, serfs=args.serf,
                             seed=args.seed, timeout=args.timeout, agent_flags=flags,
                             progress=progress, note=_note)
    finally:
        progress.finish()
    _note(f"ready in {time.monotonic() - started:.1f}s")
    _print_table(state)
    print(f"\nUI: {state.ui}")
    dir_flag = "" if args.dir in (DEFAULT_DIR, os.environ.get("SHOAL_CLUSTER_DIR")) else f" -dir {args.dir}"
    print(f"try: shoal cluster exec s1{dir_flag} -- shoal server members")
    print(f"stop it with: shoal cluster down{dir_flag}")
    return 0


def _print_table(state: ClusterState) -> None:
    rows, leader_line = lifecycle.status_rows(state)
    header = ("NAME", "ROLE", "ADDRESS", "PORTS", "PID", "STATUS", "LEADER")
    cells = [header] + [(r.name, r.role, r.address, r.ports, str(r.pid), r.status, r.leader)
                        for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"\n{leader_line}; seed {state.seed}; state in {state.dir}")


def _status(argv: list[str]) -> int:
    args = _parse(_parser("status"), argv, ())
    state = load_state(args.dir)
    _print_table(state)
    print(f"UI: {_live_ui(state)}")
    return 0


def _live_ui(state: ClusterState) -> str:
    """The UI of the first server still running (any agent serves /ui), else the recorded one."""
    for node in state.nodes:
        if node.role == "server" and procs.process_status(node.pid, node.argv) == "running":
            return f"http://{node.http}/ui"
    return f"{state.ui} (no server is running)"


def _down(argv: list[str]) -> int:
    args = _parse(_parser("down"), argv, ())
    try:
        state = load_state(args.dir)
    except ClusterError:
        print(f"no cluster in {args.dir}; nothing to stop")
        return 0
    stopped = lifecycle.down(state)
    print(f"stopped {len(stopped)} processes" + (f": {', '.join(stopped)}" if stopped else "")
          + f"; logs kept in {state.dir}")
    return 0


# --- logs / exec ----------------------------------------------------------------------------


def _logs(argv: list[str]) -> int:
    parser = _parser("logs")
    parser.add_argument("node")
    parser.add_argument("-f", "--follow", action="store_true")
    parser.add_argument("-n", "--lines", type=int)
    args = _parse(parser, argv, ("follow", "lines"))
    node = load_state(args.dir).node(args.node)
    try:
        handle = open(node.log, "rb")
    except OSError as exc:
        raise ClusterError(f"cannot read {node.log}: {exc.strerror}") from None
    with handle:
        data = handle.read()
        if args.lines is not None:
            data = b"".join(data.splitlines(keepends=True)[-args.lines:]) if args.lines > 0 else b""
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        while args.follow:
            chunk = handle.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            else:
                time.sleep(0.2)
    return 0


def _exec(argv: list[str]) -> int:
    if "--" not in argv:
        raise UsageError("exec needs `--` before the command: exec NODE -- shoal server members")
    split = argv.index("--")
    parser = _parser("exec")
    parser.add_argument("node")
    args = _parse(parser, argv[:split], ())
    command = argv[split + 1:]
    if not command:
        raise UsageError("exec needs a command after `--`")
    node = load_state(args.dir).node(args.node)
    env = dict(os.environ)
    if node.is_shoal:
        env["SHOAL_ADDR"] = f"http://{node.http}"
        if command[0] == "serf":
            raise ClusterError(f"{node.name} is a shoal agent: use `exec {node.name} -- shoal ...`")
        if command[0] == "shoal":   # this very shoal, whatever PATH says
            command = [sys.executable, "-m", "agent", *command[1:]]
    else:
        if command[0] == "shoal":
            raise ClusterError(f"{node.name} is a serf agent: use `exec {node.name} -- serf members`")
        if command[0] == "serf":
            binary = procs.serf_binary() or "serf"
            command = [binary, *command[1:2], f"-rpc-addr={node.serf_rpc}", *command[2:]]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(procs.REPO_ROOT), env.get("PYTHONPATH", ""))
                                        if p)
    try:
        return subprocess.run(command, env=env).returncode
    except OSError as exc:
        raise ClusterError(f"cannot run {command[0]}: {exc.strerror or exc}") from None


# --- chaos verbs ----------------------------------------------------------------------------


def _one_node(verb: str, argv: list[str]) -> tuple[ClusterState, str]:
    parser = _parser(verb)
    parser.add_argument("node")
    args = _parse(parser, argv, ())
    return load_state(args.dir), args.node


def _signal_verb(verb: str):   # type: ignore[no-untyped-def]
    def run(argv: list[str]) -> int:
        state, name = _one_node(verb, argv)
        if verb == "restart":
            pid = ops.restart(state, name)
            print(f"{name} restarted, pid {pid}")
            return 0
        getattr(ops, verb)(state, name)
        done = {"kill": "killed (SIGKILL)", "stop": "stopped (SIGSTOP)", "cont": "continued (SIGCONT)"}
        print(f"{name} {done[verb]}, pid {state.node(name).pid}")
        return 0
    return run


def _report(notes: list[str], what: str) -> int:
    for text in notes:
        _note(text)
    print(what)
    return 0


def _partition(argv: list[str]) -> int:
    parser = _parser("partition")
    parser.add_argument("groups", nargs="+")
    args = _parse(parser, argv, ())
    groups = [[name for name in group.split(",") if name] for group in args.groups]
    state = load_state(args.dir)
    notes = ops.partition(state, groups)
    return _report(notes, "partitioned: " + " | ".join(",".join(g) for g in groups))


def _heal(argv: list[str]) -> int:
    parser = _parser("heal")
    parser.add_argument("--no-rejoin", action="store_true")
    args = _parse(parser, argv, ("no-rejoin",))
    notes = ops.heal(load_state(args.dir), rejoin=not args.no_rejoin)
    return _report(notes, "healed: every fault rule removed"
                   + ("" if args.no_rejoin else "; servers rejoined"))


def _number_verb(verb: str, unit: str):   # type: ignore[no-untyped-def]
    def run(argv: list[str]) -> int:
        parser = _parser(verb)
        parser.add_argument("node")
        parser.add_argument("value")
        args = _parse(parser, argv, ())
        try:
            value = float(args.value)
        except ValueError:
            raise UsageError(f"{verb} needs a number, got {args.value!r}") from None
        notes = getattr(ops, verb)(load_state(args.dir), args.node, value)
        return _report(notes, f"{args.node}: {verb} {value:g}{unit}")
    return run


_VERB_FUNCS = {
    "up": _up, "status": _status, "down": _down, "logs": _logs, "exec": _exec,
    "kill": _signal_verb("kill"), "stop": _signal_verb("stop"), "cont": _signal_verb("cont"),
    "restart": _signal_verb("restart"), "partition": _partition, "heal": _heal,
    "loss": _number_verb("loss", "%"), "delay": _number_verb("delay", " ms"),
}
