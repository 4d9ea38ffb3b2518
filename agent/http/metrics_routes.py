"""``GET /v1/metrics`` and the HTTP request metrics (docs/agent.md, "Metrics").

The JSON and Prometheus documents are rendered by ``agent.metrics`` from one
``MetricsRegistry`` per application plus ``Readings`` gathered here from the parts
of the agent that run: gossip, Raft and rpc, the scheduler workers, the eval broker
(on the leader), the fault filter and the client. Every request is counted and timed
by two hooks: ``shoal.http.requests`` (a counter labelled ``method``, ``route``,
``status``) and ``shoal.http.request_duration`` (a sample in milliseconds labelled
``method``, ``route``). ``route`` is the matched URL rule (``/v1/job/<job_id>``),
never the raw path, and ``unmatched`` for a 404 of an unknown path, so label sets
stay bounded whatever clients send; methods outside HTTP's usual set count as
``OTHER``. A streamed answer (``/v1/agent/monitor``) is timed to its headers.

Nomad serves ``/v1/metrics`` with no ACL (its "ACL Required" is "none"), and so
does shoal. Nomad answers an unknown ``format`` with the JSON document; shoal
answers 400 so that a typo is not mistaken for Prometheus output. Nomad needs
``telemetry.prometheus_metrics`` for ``format=prometheus``; shoal always serves it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import trio
from quart import Response, g, request

from ..metrics import (DEFAULT_INTERVAL, PROMETHEUS_CONTENT_TYPE, MetricsRegistry, Readings, render_json,
                       render_prometheus)
from .api_errors import ApiError
from .app import ALL_METHODS, json_response

__all__ = ["register_metrics_routes", "gather", "registry_of", "REGISTRY_KEY"]

REGISTRY_KEY = "shoal.metrics"
"""Where the application's ``MetricsRegistry`` lives: ``app.extensions[REGISTRY_KEY]``."""

INTERVAL = DEFAULT_INTERVAL
"""Seconds per aggregation interval of the registry ``register_metrics_routes`` makes."""

_KNOWN_METHODS = frozenset(ALL_METHODS) | {"CONNECT", "TRACE"}
_FORMATS = ("", "json", "prometheus")


def registry_of(app: Any) -> MetricsRegistry:
    """The registry ``register_metrics_routes`` installed on ``app``."""
    return app.extensions[REGISTRY_KEY]


def register_metrics_routes(app: Any, api: Any) -> None:
    """Add ``/v1/metrics`` and the request-counting hooks to ``app``."""
    registry = MetricsRegistry(now=time.time(), interval=INTERVAL)
    app.extensions[REGISTRY_KEY] = registry

    @app.before_request
    async def _start_timer() -> None:
        g.shoal_request_started = time.perf_counter()

    @app.after_request
    async def _count_request(response: Response) -> Response:
        started = g.get("shoal_request_started")
        if started is not None:
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            rule = request.url_rule
            route = rule.rule if rule is not None else "unmatched"
            method = request.method if request.method in _KNOWN_METHODS else "OTHER"
            now = time.time()
            registry.incr_counter("shoal.http.requests", 1.0,
                                  (("method", method), ("route", route),
                                   ("status", str(response.status_code))), now=now)
            registry.add_sample("shoal.http.request_duration", elapsed_ms,
                                (("method", method), ("route", route)), now=now)
        return response

    @app.route("/v1/metrics", methods=ALL_METHODS)
    async def metrics() -> Response:
        if request.method != "GET":
            raise ApiError(405, "Invalid method")
        fmt = request.args.get("format", "")
        if fmt not in _FORMATS:
            # json.dumps quotes like Go's %q: one line whatever the client sent.
            raise ApiError(400, f"Invalid format {json.dumps(fmt)}: use format=prometheus, "
                                "or no format for JSON")
        readings = gather(api)
        if fmt == "prometheus":
            text = render_prometheus(*registry.cumulative(readings))
            return Response(text.encode(), status=200, content_type=PROMETHEUS_CONTENT_TYPE)
        return json_response(render_json(registry.summary(time.time(), readings)))


def gather(api: Any) -> Readings:
    """Gauges and cumulative counters of every part of the agent that runs now.

    Reads with ``getattr`` so that a facade without a part (a client-only agent, a
    test's fake) simply has no section for it.
    """
    gauges: dict[str, float] = {}
    totals: dict[str, int] = {}
    handle = getattr(api, "handle", None)
    if handle is not None:
        _gossip(handle, gauges, totals)
    server = getattr(api, "server", None)
    if server is not None:
        raft_gauges, raft_counters = server.metric_values()
        gauges.update(raft_gauges)
        totals.update(raft_counters)
        supervisor = getattr(server, "supervisor", None)
        if supervisor is not None:
            _workers(supervisor, gauges, totals)
        scheduling = getattr(server, "scheduling", None)
        if scheduling is not None and scheduling.broker.is_enabled():
            _broker(scheduling, gauges, totals)
    faults = getattr(api, "faults_filter", None)
    if faults is not None:
        totals.update({f"shoal.faults.{name}": value for name, value in faults.stats().items()})
    client = getattr(api, "client", None)
    if client is not None:
        _client(client, gauges, totals)
    return Readings(gauges=gauges, totals=totals)


def _gossip(handle: Any, gauges: dict[str, float], totals: dict[str, int]) -> None:
    """``shoal.gossip.*``: the core's counters; members by status; queues and clocks."""
    stats = handle.stats()
    statuses = Counter(str(member.status) for member in handle.members())
    gauges.update({"shoal.gossip.members": stats.members,
                   "shoal.gossip.health_score": stats.health_score,
                   "shoal.gossip.incarnation": stats.incarnation,
                   "shoal.gossip.queue.intent": stats.intent_queue,
                   "shoal.gossip.queue.event": stats.event_queue,
                   "shoal.gossip.queue.query": stats.query_queue})
    for status in ("alive", "leaving", "left", "failed"):
        gauges[f"shoal.gossip.members.{status}"] = statuses.get(status, 0)
    totals.update({f"shoal.gossip.{name}": value for name, value in stats.counters.items()})


def _workers(supervisor: Any, gauges: dict[str, float], totals: dict[str, int]) -> None:
    """``shoal.scheduler.workers*``: the pool by status and by what each loop is doing."""
    workers = supervisor.workers()
    gauges["shoal.scheduler.workers"] = len(workers)
    by_status = Counter(str(worker.status) for worker in workers)
    by_workload = Counter(str(worker.workload_status) for worker in workers)
    for status, count in by_status.items():
        gauges[f"shoal.scheduler.workers.{status.lower()}"] = count
    for status, count in by_workload.items():
        gauges[f"shoal.scheduler.workload.{status.lower()}"] = count
    totals["shoal.scheduler.dequeue_failures"] = supervisor.dequeue_failures


def _broker(scheduling: Any, gauges: dict[str, float], totals: dict[str, int]) -> None:
    """``shoal.broker.*`` (ready, unacked, pending, waiting, failed; counters) and blocked evals."""
    for name, value in scheduling.broker.stats().items():
        if name.startswith(("total_", "ready.", "unacked.")):
            gauges[f"shoal.broker.{name}"] = value
        else:
            totals[f"shoal.broker.{name}"] = value
    gauges["shoal.blocked_evals.total_blocked"] = len(scheduling.blocked)


def _client(client: Any, gauges: dict[str, float], totals: dict[str, int]) -> None:
    """``shoal.client.*``: allocations, servers, registration and heartbeat age."""
    gauges["shoal.client.allocations"] = client.num_allocations
    gauges["shoal.client.servers"] = len(client.servers())
    gauges["shoal.client.registered"] = int(client.registered.is_set())
    gauges["shoal.client.heartbeat_ttl_seconds"] = client.heartbeat_ttl
    if client.last_heartbeat is not None:
        gauges["shoal.client.last_heartbeat_age_seconds"] = trio.current_time() - client.last_heartbeat
    totals["shoal.client.allocations_dropped"] = client.allocs.dropped
