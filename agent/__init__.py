"""The shoal agent: CLI, configuration, runtime wiring, HTTP API (and the simulator).

``__version__`` is what a server advertises in its ``build`` serf tag;
``revision()`` the git commit of the source tree (its ``revision`` tag).
"""

from __future__ import annotations

import functools
from pathlib import Path

__all__ = ["__version__", "revision"]

__version__ = "0.1.0"


@functools.cache
def revision() -> str:
    """The git commit the package runs from, read from ``.git`` files; else "unknown"."""
    root = Path(__file__).resolve().parent.parent / ".git"
    try:
        head = (root / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[len("ref: "):]
        ref_file = root / ref
        if ref_file.is_file():
            return ref_file.read_text().strip()
        for line in (root / "packed-refs").read_text().splitlines():
            commit, _, name = line.partition(" ")
            if name == ref:
                return commit
    except OSError:
        pass
    return "unknown"
