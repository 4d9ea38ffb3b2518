"""JSON text in the layout of Go's ``json.Marshal``: no spaces, non-ASCII as is.

One place for it, so cached texts spliced into answers (``/v1/agent/self``'s config,
``/v1/agent/members``' members) are byte for byte what encoding the whole answer gives.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["compact_json"]


def compact_json(value: Any) -> str:
    """``value`` as compact JSON text."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
