"""``ApiError``: an HTTP error answer, raised anywhere behind the routes."""

from __future__ import annotations

__all__ = ["ApiError"]


class ApiError(Exception):
    """An HTTP error answer: ``status`` and the exact plain-text ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
