"""Wire tests read the serf 0.9.4 captures; stop early with a clear message if they are missing."""

from __future__ import annotations

import pytest

from wire_vectors import VECTOR_DIR, all_lines


@pytest.fixture(scope="session", autouse=True)
def require_vectors() -> None:
    """Every wire test needs the capture files (copied into tests/vectors/ from shared/vectors; never skipped)."""
    assert all_lines(), f"no capture vectors found in {VECTOR_DIR}"
