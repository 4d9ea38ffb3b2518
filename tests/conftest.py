"""Options shared by the whole suite (registered here so they work from the repository root)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--sim-seeds", type=int, default=0, metavar="N",
                     help="run the seeded simulations for N random seeds as well as the fixed ones")
