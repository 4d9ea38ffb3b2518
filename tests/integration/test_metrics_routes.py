"""GET /v1/metrics on an in-process -dev agent: both formats, HTTP counters, bad input."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import trio

from agent.http import metrics_routes
from agent.metrics import PROMETHEUS_CONTENT_TYPE

from .helpers import wait_until_async
from .test_agent_runtime import agents
from .test_http_api import raw_request

TEXT = "text/plain; charset=utf-8"
DEV = ["-dev", "-node", "d"]


@pytest.fixture(autouse=True)
def short_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """One-second intervals, so the JSON's "last finished interval" catches up quickly."""
    monkeypatch.setattr(metrics_routes, "INTERVAL", 1.0)


async def fetch(port: int, path: str, method: str = "GET") -> tuple[int, bytes, str | None]:
    return await raw_request(port, method, path)


async def metrics_json(port: int) -> dict[str, Any]:
    status, body, content_type = await fetch(port, "/v1/metrics")
    assert (status, content_type) == (200, "application/json"), body
    return json.loads(body)


def prometheus_series(text: str) -> dict[str, float]:
    """``name{labels}`` -> value for every series line; every other line is a comment."""
    series = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* ", line), line
            continue
        key, value = line.rsplit(" ", 1)
        series[key] = float(value)
    return series


async def test_json_has_a_section_for_every_running_part() -> None:
    """A -dev agent is server and client: gossip, raft, rpc, workers, broker and client appear."""
    with trio.fail_after(30):
        async with agents(DEV) as [(_, dev)]:
            port = dev.http_address[1]

            async def gauges() -> dict[str, float]:
                doc = await metrics_json(port)
                return {g["Name"]: g["Value"] for g in doc["Gauges"]}

            seen = await wait_until_async(
                gauges, lambda g: g.get("shoal.raft.is_leader") == 1.0
                and g.get("shoal.client.registered") == 1.0, timeout=20)
            assert seen["shoal.gossip.members.alive"] == 1.0
            assert seen["shoal.scheduler.workers"] >= 1
            assert "shoal.broker.total_ready" in seen and "shoal.blocked_evals.total_blocked" in seen
            assert "shoal.client.allocations" in seen
            doc = await metrics_json(port)
            assert list(doc) == ["Timestamp", "Gauges", "Points", "Counters", "Samples"]
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC", doc["Timestamp"])
            names = {c["Name"] for c in doc["Counters"]}
            assert any(n.startswith("shoal.gossip.") for n in names)
            assert any(n.startswith("shoal.raft.") for n in names)
            assert "shoal.scheduler.dequeue_failures" in names and "shoal.broker.enqueued" in names


async def test_http_requests_are_counted_and_timed() -> None:
    """Requests raise shoal.http.requests by route pattern; durations are samples in ms."""
    with trio.fail_after(30):
        async with agents(DEV) as [(_, dev)]:
            port = dev.http_address[1]

            async def scrape() -> dict[str, float]:
                status, body, content_type = await fetch(port, "/v1/metrics?format=prometheus")
                assert (status, content_type) == (200, PROMETHEUS_CONTENT_TYPE)
                return prometheus_series(body.decode())

            self_key = 'shoal_http_requests{method="GET",route="/v1/agent/self",status="200"}'
            before = (await scrape()).get(self_key, 0.0)
            for _ in range(3):
                assert (await fetch(port, "/v1/agent/self"))[0] == 200
            assert (await fetch(port, "/v1/no/such/path/abc123"))[0] == 404
            after = await scrape()
            assert after[self_key] == before + 3
            assert after['shoal_http_requests{method="GET",route="unmatched",status="404"}'] >= 1
            assert not any("abc123" in key for key in after)
            assert after['shoal_http_request_duration_count{method="GET",route="/v1/agent/self"}'] >= 3
            assert after['shoal_http_request_duration_sum{method="GET",route="/v1/agent/self"}'] > 0

            def interval_entry(doc: dict[str, Any]) -> dict[str, Any] | None:
                for sample in doc["Samples"]:
                    if (sample["Name"], sample["Labels"]) == (
                            "shoal.http.request_duration", {"method": "GET", "route": "/v1/agent/self"}):
                        return sample
                return None

            # The JSON shows the last finished interval: wait for one holding the requests.
            doc = await wait_until_async(lambda: metrics_json(port), interval_entry, timeout=10)
            sample = interval_entry(doc)
            assert sample["Count"] >= 1 and sample["Min"] <= sample["Mean"] <= sample["Max"]
            assert sample["Rate"] == pytest.approx(sample["Sum"] / 1.0)


async def test_bad_format_and_wrong_methods() -> None:
    """An unknown format is 400 with one line; other methods are 405 `Invalid method`."""
    with trio.fail_after(30):
        async with agents(DEV) as [(_, dev)]:
            port = dev.http_address[1]
            status, body, content_type = await fetch(port, "/v1/metrics?format=xml")
            assert (status, content_type) == (400, TEXT)
            assert body == b'Invalid format "xml": use format=prometheus, or no format for JSON'
            status, body, _ = await fetch(port, "/v1/metrics?format=a%0Ab")
            assert (status, body) == (400, b'Invalid format "a\\nb": use format=prometheus, '
                                           b'or no format for JSON')
            for method in ("PUT", "POST", "DELETE", "HEAD"):
                status, body, content_type = await fetch(port, "/v1/metrics", method)
                assert (status, content_type) == (405, TEXT), method
                assert body == (b"" if method == "HEAD" else b"Invalid method")
            status, body, _ = await fetch(port, "/v1/metrics?format=json&pretty")
            assert status == 200 and body.endswith(b"\n") and b'\n    "Gauges": [' in body
