"""The teaching UI in a real browser: headless Chromium on `/ui` of a 3-server cluster.

The cluster is made by the cluster tool (`shoal cluster up -servers 3 -clients 0`),
the page is driven by Selenium through Debian's `chromedriver`, and the test reads
the matrix as a user sees it: the cells' `data-status` attributes. It kills s3 with
`shoal cluster kill s3` and waits for s1's row to show s3 failed. A screenshot is
kept in `tests/artifacts/` (its path is printed), also when the test fails.

Needs the Debian packages `chromium` and `chromium-driver` (`scripts/test` installs
them when run as root) and the Python package `selenium` (test extra); without them
the test is skipped with a reason naming what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from harness import CONVERGE_DEADLINE, FAILURE_DEADLINE, PYTHON, REPO, kill_cluster_leftovers, wait_until

pytestmark = pytest.mark.cluster

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = REPO / "tests" / "artifacts"
UP_READY_TIMEOUT = 120.0
"""`shoal cluster up -timeout`: seconds for 3 servers to converge and elect (2 loaded cores)."""
UP_TIMEOUT = UP_READY_TIMEOUT + 60.0
"""Seconds the `up` command itself may take before the test gives up on it."""
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1200,900")


def _missing_browser_parts() -> list[str]:
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (Debian package chromium)")
    if not os.access(CHROMEDRIVER, os.X_OK):
        missing.append(f"{CHROMEDRIVER} (Debian package chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the Python package selenium (pip install -e '.[test]')")
    return missing


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium under chromedriver, quit (and its processes gone) at teardown."""
    missing = _missing_browser_parts()
    if missing:
        pytest.skip("the UI browser test needs " + ", ".join(missing)
                    + "; install as root with: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _cluster(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`shoal cluster ARGS` (as `python -m agent cluster ...`); fails the test on a non-zero exit."""
    done = subprocess.run([PYTHON, "-m", "agent", "cluster", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert done.returncode == 0, (f"shoal cluster {' '.join(args)} exited {done.returncode}\n"
                                  f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    return done


def _cluster_file(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "cluster.json").read_text())


@pytest.fixture
def ui_cluster() -> Iterator[Path]:
    """A 3-server cluster made by the cluster tool in a fresh folder; `down` (then a PID sweep) at teardown."""
    directory = Path(tempfile.mkdtemp(prefix="shoal-ui-"))
    try:
        _cluster("up", "-servers", "3", "-clients", "0", "-timeout", str(int(UP_READY_TIMEOUT)),
                 "-dir", str(directory), timeout=UP_TIMEOUT)
        yield directory
    finally:
        try:
            subprocess.run([PYTHON, "-m", "agent", "cluster", "down", "-dir", str(directory)], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
        finally:
            leftovers = kill_cluster_leftovers(directory)
            shutil.rmtree(directory, ignore_errors=True)
            assert not leftovers, f"`shoal cluster down` left agents running: pids {leftovers}"


def _cells(driver: Any) -> dict[tuple[str, str], str]:
    """(observer, member) -> status, as the page shows it now."""
    from selenium.webdriver.common.by import By

    cells = {}
    for cell in driver.find_elements(By.CSS_SELECTOR, "#matrix td[data-observer]"):
        cells[(cell.get_attribute("data-observer"), cell.get_attribute("data-member"))] = \
            cell.get_attribute("data-status")
    return cells


def _screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"ui-{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def test_ui_shows_every_member_and_a_killed_node_turning_failed(browser: Any, ui_cluster: Path,
                                                                request: pytest.FixtureRequest) -> None:
    """The page lists every server alive in every row; kill s3 and s1's row shows s3 failed."""
    from selenium.webdriver.common.by import By

    state = _cluster_file(ui_cluster)
    servers = {node["name"]: node for node in state["nodes"] if node["role"] == "server"}
    members = sorted(node["member"] for node in servers.values())
    s1, s3 = servers["s1"]["member"], servers["s3"]["member"]
    ui_url = state["ui"]
    ok = False
    try:
        browser.get(ui_url)
        expected = {(observer, member): "alive" for observer in members for member in members}
        wait_until("every member alive in every row of the matrix", lambda: _cells(browser),
                   lambda cells: cells == expected, timeout=CONVERGE_DEADLINE)
        headers = [th.get_attribute("data-member")
                   for th in browser.find_elements(By.CSS_SELECTOR, "#matrix thead th[data-member]")]
        assert headers == members
        cell = browser.find_element(By.CSS_SELECTOR, f'#matrix td[data-observer="{s1}"][data-member="{s3}"]')
        assert cell.get_attribute("title").startswith("incarnation ")
        roles = wait_until("one leader in the servers table", lambda: [
            td.get_attribute("data-role")
            for td in browser.find_elements(By.CSS_SELECTOR, '#servers td[data-field="role"]')],
            lambda found: sorted(found) == ["Follower", "Follower", "Leader"], timeout=CONVERGE_DEADLINE)
        assert len(roles) == 3

        # fault injection is on in agents of the cluster tool: the chaos panel is shown and works
        chaos = browser.find_element(By.ID, "chaos")
        assert chaos.is_displayed()
        browser.find_element(By.ID, "chaos-heal").click()
        wait_until("heal all to report every server", lambda: browser.find_element(By.ID, "chaos-result").text,
                   lambda text: text.startswith("heal: rules changed on ") and all(m in text for m in members),
                   timeout=CONVERGE_DEADLINE)

        _cluster("kill", "s3", "-dir", str(ui_cluster))
        wait_until(f"{s1}'s row to show {s3} failed", lambda: _cells(browser).get((s1, s3)),
                   lambda status: status == "failed", timeout=FAILURE_DEADLINE)
        ok = True
    finally:
        _screenshot(browser, request.node.name if ok else f"{request.node.name}-failed")
