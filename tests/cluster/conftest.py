"""Fixtures for tests/cluster: process sets stopped in teardown, logs on failure."""

from __future__ import annotations

import shutil
from typing import Iterator

import pytest

from harness import LoopbackAllocator, ProcSet

_ALLOCATOR = LoopbackAllocator()


@pytest.fixture
def loopback() -> LoopbackAllocator:
    """Distinct loopback addresses (127.0.B.N), never reused within a session."""
    return _ALLOCATOR


@pytest.fixture
def procs(request: pytest.FixtureRequest) -> Iterator[ProcSet]:
    """Every process the test starts; all stopped by PID at teardown, even on failure."""
    procset = ProcSet()
    request.node._cluster_procs = procset
    try:
        yield procset
    finally:
        procset.stop_all()


@pytest.fixture
def serf_binary() -> str:
    """The path of the real `serf` binary; skips the test when it is missing."""
    path = shutil.which("serf")
    if path is None:
        pytest.skip("the `serf` binary (Debian package serf 0.9.4) is not installed; "
                    "install it with `apt-get install serf` to run the interop tests")
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Attach the log tail of every process of a failed test to its report."""
    outcome = yield
    report = outcome.get_result()
    procset = getattr(item, "_cluster_procs", None)
    if procset is None or not report.failed or report.when == "teardown":
        return
    for title, text in procset.log_report():
        report.sections.append((title, text))
