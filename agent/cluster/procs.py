"""Starting, checking and stopping the cluster's processes, always by PID.

A process is the cluster's only while its PID still runs the command line recorded
in ``cluster.json`` (``psutil``'s view of ``/proc/<pid>/cmdline``): a PID the kernel
has handed to another program since is never signalled. Agents start in their own
session (``start_new_session``), so they outlive the command that started them and a
Ctrl-C in that shell does not reach them; their stdout and stderr go to their log.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import psutil

__all__ = ["spawn", "is_running", "process_status", "send_signal", "stop_processes", "wait_gone",
           "port_free", "serf_binary", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding the ``agent`` package: put on PYTHONPATH of every agent started."""

_children: list[subprocess.Popen[bytes]] = []
"""Processes this Python process started: kept so they are reaped, not left as zombies."""


def _reap() -> None:
    _children[:] = [child for child in _children if child.poll() is None]


def spawn(argv: Sequence[str], log_path: str | os.PathLike[str]) -> int:
    """Start ``argv`` in its own session, appending its output to ``log_path``; its PID.

    Raises:
        OSError: the program cannot be started.
    """
    _reap()
    log_file = Path(log_path)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("SHOAL_ADDR", None)
    with open(log_file, "ab") as log:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        log.write(f"==> {stamp} shoal cluster started: {' '.join(argv)}\n".encode())
        log.flush()
        child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                 cwd=str(REPO_ROOT))
    _children.append(child)
    return child.pid


def _process(pid: int, argv: Sequence[str]) -> psutil.Process | None:
    """The process ``pid`` if it is alive and still runs ``argv``; else None."""
    _reap()
    if pid <= 0:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE or process.cmdline() != list(argv):
            return None
        return process
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def is_running(pid: int, argv: Sequence[str]) -> bool:
    """Whether ``pid`` is alive (running or stopped) with the command line ``argv``."""
    return _process(pid, argv) is not None


def process_status(pid: int, argv: Sequence[str]) -> str:
    """``running``, ``stopped`` (SIGSTOP) or ``dead`` (gone, a zombie, or another program)."""
    process = _process(pid, argv)
    if process is None:
        return "dead"
    try:
        return "stopped" if process.status() == psutil.STATUS_STOPPED else "running"
    except psutil.Error:
        return "dead"


def send_signal(pid: int, argv: Sequence[str], signum: int) -> bool:
    """Signal ``pid`` only if it still runs ``argv``; whether the signal was sent."""
    if _process(pid, argv) is None:
        return False
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def stop_processes(targets: Iterable[tuple[int, Sequence[str]]], *, grace: float = 10.0) -> list[int]:
    """SIGTERM (and SIGCONT, so a stopped one sees it) every target, SIGKILL those left after
    ``grace`` seconds; returns the PIDs that were ours and are gone now."""
    ours = [(pid, list(argv)) for pid, argv in targets if is_running(pid, argv)]
    for pid, argv in ours:
        send_signal(pid, argv, signal.SIGTERM)
        send_signal(pid, argv, signal.SIGCONT)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(is_running(pid, argv) for pid, argv in ours):
        time.sleep(0.05)
    for pid, argv in ours:
        send_signal(pid, argv, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(is_running(pid, argv) for pid, argv in ours):
        time.sleep(0.05)
    return [pid for pid, argv in ours if not is_running(pid, argv)]


def wait_gone(pid: int, argv: Sequence[str], timeout: float) -> bool:
    """Wait until ``pid`` no longer runs ``argv``; whether it is gone."""
    deadline = time.monotonic() + timeout
    while is_running(pid, argv):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def port_free(ip: str, port: int, *, udp: bool = False) -> bool:
    """Whether ``ip:port`` can be bound for TCP (and UDP when ``udp``) right now."""
    kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if udp else [])
    for kind in kinds:
        sock = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip, port))
        except OSError:
            return False
        finally:
            sock.close()
    return True


def serf_binary() -> str | None:
    """The absolute path of ``serf`` on PATH, or None."""
    path = shutil.which("serf")
    return os.path.abspath(path) if path else None
