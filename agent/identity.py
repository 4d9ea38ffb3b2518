"""A node's identity file: a UUID kept in the data dir, made on first use.

Servers keep theirs in ``<data_dir>/server/node-id`` (their raft id under protocol 3),
clients in ``<data_dir>/client/node-id``; both read and write it here.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

__all__ = ["IdentityError", "load_or_create_uuid", "write_atomically"]


class IdentityError(Exception):
    """The identity file is unreadable, holds no UUID, or cannot be written (one line)."""


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (folder made 0700; tmp file + rename)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text)
        os.replace(temporary, path)
    except OSError as exc:
        raise IdentityError(f"Error writing {path}: {exc}") from None


def load_or_create_uuid(path: Path | None) -> str:
    """The UUID in ``path``, written there first if the file is missing; random without a path.

    Raises:
        IdentityError: the file is unreadable, holds no UUID, or cannot be written.
    """
    if path is None:
        return str(uuid.uuid4())
    try:
        text = path.read_text().strip()
        if text:
            return str(uuid.UUID(text))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise IdentityError(f"Error reading node id from {path}: {exc}") from None
    node_id = str(uuid.uuid4())
    write_atomically(path, node_id)
    return node_id
