"""Process bookkeeping shared by the benchmarks: every child is killed by PID, never by name.

Children start in their own session (a terminal Ctrl-C reaches only the benchmark,
which then kills them); ``kill_all`` runs at exit and on SIGINT/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

__all__ = ["PROCS", "PROCS_LOCK", "Deadline", "kill_all", "on_signal", "reap", "spawn"]


PROCS: dict[int, subprocess.Popen] = {}
PROCS_LOCK = threading.Lock()


def spawn(argv: list[str], **kwargs) -> subprocess.Popen:
    """Start a child in its own session (so a terminal Ctrl-C reaches only us) and register it."""
    proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
    with PROCS_LOCK:
        PROCS[proc.pid] = proc
    return proc


def reap(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGKILL one child by PID (if still running) and wait for it."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    with PROCS_LOCK:
        PROCS.pop(proc.pid, None)


def kill_all() -> None:
    with PROCS_LOCK:
        procs = list(PROCS.values())
    for proc in procs:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            print(f"warning: pid {proc.pid} did not exit after SIGKILL", file=sys.stderr)
    with PROCS_LOCK:
        PROCS.clear()


def on_signal(signum, _frame) -> None:
    kill_all()
    raise SystemExit(128 + signum)


class Deadline(Exception):
    """A bounded wait ran out."""
