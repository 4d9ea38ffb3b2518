"""Metrics: a registry of counters, gauges and samples, rendered as Nomad and Prometheus do.

Theory of operation. Nomad keeps its metrics in go-metrics' in-memory sink
(``metrics.NewInmemSink(10*time.Second, time.Minute)``): time is cut into intervals of
10 s aligned on the wall clock, and each interval holds, per metric name and label
set, the last value of every gauge and an aggregate of every counter increment and
every sample (count, sum, sum of squares, min, max). ``GET /v1/metrics`` shows the
most recent *finished* interval when there is one, else the current one; an
aggregate's ``Rate`` is its sum divided by the interval length in seconds, its
``Stddev`` the sample standard deviation. ``MetricsRegistry`` is that sink.

The agent's components keep their own counters as totals since they started
(``GossipCore.stats()``, ``RaftCore.stats()``, the rpc and fault counters, the eval
broker). Those arrive at render time as ``Readings``: gauges read now and cumulative
totals. A total ``n`` is shown as go-metrics would show ``n`` increments of 1 kept
since start: ``Count = Sum = n``, ``Min = Max = Mean = 1`` (0 when ``n`` is 0),
``Stddev = 0`` and ``Rate = n / uptime``. Cumulative is what chaos tools, tests and
``tests/cluster/harness.py`` compare before and after an experiment, so these
counters are not reset per interval; the counters and samples the agent records per
event (``shoal.http.*``) follow the interval rule above.

Prometheus (text format 0.0.4) shows what go-metrics' Prometheus sink shows:
counters as cumulative totals (``# TYPE counter``, value = sum of increments),
gauges as their last value, samples as summaries with cumulative ``_sum`` and
``_count`` (no quantiles: shoal keeps no per-observation window). Names have every
character outside ``[a-zA-Z0-9_:]`` replaced by ``_``, so ``shoal.http.requests``
becomes ``shoal_http_requests`` (Nomad's ``nomad.`` prefix is ``shoal.`` here).

Pure: every input carries ``now``, wall-clock seconds since the epoch (the intervals
are dates people read and are aligned on the wall clock, as go-metrics aligns them).
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Aggregate", "GaugeValue", "MetricsRegistry", "Readings", "SampledValue",
           "Summary", "go_time_string", "prometheus_name", "render_json", "render_prometheus",
           "PROMETHEUS_CONTENT_TYPE", "DEFAULT_INTERVAL", "DEFAULT_RETAIN"]

DEFAULT_INTERVAL = 10.0
"""Seconds per aggregation interval (Nomad's in-memory sink)."""
DEFAULT_RETAIN = 60.0
"""Seconds of intervals kept (Nomad's in-memory sink keeps one minute)."""
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]
"""Label pairs sorted by name: hashable, so a (name, labels) pair keys a metric."""
_Key = tuple[str, Labels]


def labels_of(labels: Mapping[str, str] | Labels | None) -> Labels:
    """Normalise labels given as a mapping or pairs into sorted pairs of strings."""
    if not labels:
        return ()
    pairs = labels.items() if isinstance(labels, Mapping) else labels
    return tuple(sorted((str(k), str(v)) for k, v in pairs))


@dataclass(slots=True)
class Aggregate:
    """go-metrics' ``AggregateSample``: count, sum, min, max, mean and sample stddev.

    go-metrics derives the stddev from a sum of squares, which loses every digit when
    the values are large and close together; this keeps Welford's running mean and sum
    of squared deviations (``m2``) instead, so the answer is the same but exact enough.
    """

    count: int = 0
    sum: float = 0.0
    min: float = 0.0
    max: float = 0.0
    running_mean: float = 0.0
    m2: float = 0.0

    def ingest(self, value: float) -> None:
        """Add one value (``AggregateSample.Ingest``)."""
        self.ingest_repeated(value, 1)

    def ingest_repeated(self, value: float, times: int) -> None:
        """Add ``value`` ``times`` times at once (as ``times`` calls of ``ingest``)."""
        assert times >= 0, times
        if times == 0:
            return
        first = self.count == 0
        before = self.count
        self.count += times
        self.sum += value * times
        # Chan et al.'s merge of (before, running_mean, m2) with `times` copies of value.
        delta = value - self.running_mean
        self.running_mean += delta * times / self.count
        self.m2 += delta * delta * before * times / self.count
        if first or value < self.min:
            self.min = value
        if first or value > self.max:
            self.max = value

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else 0.0

    @property
    def stddev(self) -> float:
        """Sample standard deviation, 0 below two values (``AggregateSample.Stddev``)."""
        if self.count < 2:
            return 0.0
        return math.sqrt(max(self.m2, 0.0) / (self.count - 1))

    def copy(self) -> Aggregate:
        return Aggregate(self.count, self.sum, self.min, self.max, self.running_mean, self.m2)


@dataclass(slots=True)
class _Interval:
    """One go-metrics interval: the values recorded between ``start`` and its end."""

    start: float
    gauges: dict[_Key, float] = field(default_factory=dict)
    counters: dict[_Key, Aggregate] = field(default_factory=dict)
    samples: dict[_Key, Aggregate] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GaugeValue:
    name: str
    value: float
    labels: Labels = ()


@dataclass(frozen=True, slots=True)
class SampledValue:
    """A counter or a sample over the shown interval (or since start, for totals)."""

    name: str
    aggregate: Aggregate
    rate: float
    labels: Labels = ()


@dataclass(frozen=True, slots=True)
class Summary:
    """What ``GET /v1/metrics`` shows; ``timestamp`` is the interval's start (epoch s)."""

    timestamp: float
    gauges: tuple[GaugeValue, ...]
    counters: tuple[SampledValue, ...]
    samples: tuple[SampledValue, ...]


@dataclass(frozen=True, slots=True)
class Readings:
    """Values read from the agent's components at render time.

    ``gauges``: name -> current value. ``totals``: name -> cumulative count since the
    component started. Both unlabelled, as the components name every series.
    """

    gauges: Mapping[str, float] = field(default_factory=dict)
    totals: Mapping[str, int] = field(default_factory=dict)


class MetricsRegistry:
    """go-metrics' in-memory sink, plus the cumulative view its Prometheus sink keeps.

    Args:
        now: wall-clock seconds at creation (the start of the uptime counters' rate).
        interval: seconds per interval (> 0).
        retain: seconds of intervals kept (>= interval).
    Raises:
        ValueError: ``interval`` or ``retain`` out of range.
    """

    def __init__(self, *, now: float, interval: float = DEFAULT_INTERVAL,
                 retain: float = DEFAULT_RETAIN) -> None:
        if not (interval > 0 and math.isfinite(interval)):
            raise ValueError(f"metrics interval must be a positive number of seconds, not {interval!r}")
        if not (retain >= interval and math.isfinite(retain)):
            raise ValueError(f"metrics retain ({retain!r}) must be at least the interval ({interval!r})")
        self.interval = interval
        self.started = now
        self._max_intervals = max(int(retain // interval), 1)
        self._intervals: list[_Interval] = []        # oldest first; the last is current
        self._gauges: dict[_Key, float] = {}          # last value ever set (Prometheus)
        self._counter_totals: dict[_Key, Aggregate] = {}
        self._sample_totals: dict[_Key, Aggregate] = {}

    # ----------------------------------------------------------------- inputs

    def set_gauge(self, name: str, value: float, labels: Mapping[str, str] | Labels | None = None,
                  *, now: float) -> None:
        key = (name, labels_of(labels))
        self._current(now).gauges[key] = float(value)
        self._gauges[key] = float(value)

    def incr_counter(self, name: str, value: float = 1.0,
                     labels: Mapping[str, str] | Labels | None = None, *, now: float) -> None:
        key = (name, labels_of(labels))
        self._ingest(self._current(now).counters, key, value)
        self._ingest(self._counter_totals, key, value)

    def add_sample(self, name: str, value: float, labels: Mapping[str, str] | Labels | None = None,
                   *, now: float) -> None:
        """One observation, e.g. a request's duration in milliseconds."""
        key = (name, labels_of(labels))
        self._ingest(self._current(now).samples, key, value)
        self._ingest(self._sample_totals, key, value)

    @staticmethod
    def _ingest(table: dict[_Key, Aggregate], key: _Key, value: float) -> None:
        aggregate = table.get(key)
        if aggregate is None:
            aggregate = table[key] = Aggregate()
        aggregate.ingest(float(value))

    def _current(self, now: float) -> _Interval:
        """The interval holding ``now``, created (and old ones dropped) as go-metrics does."""
        start = math.floor(now / self.interval) * self.interval
        if self._intervals and self._intervals[-1].start >= start:
            # A wall clock stepping back keeps writing to the newest interval.
            return self._intervals[-1]
        self._intervals.append(_Interval(start))
        del self._intervals[:-self._max_intervals]
        return self._intervals[-1]

    # ----------------------------------------------------------------- views

    def summary(self, now: float, readings: Readings = Readings()) -> Summary:
        """The interval ``GET /v1/metrics`` shows, with ``readings`` merged in.

        Like go-metrics' ``DisplayMetrics``: the current interval is created first;
        then the most recent finished interval is shown, or the current one if it is
        the only one. Entries are sorted by name, then labels.
        """
        self._current(now)
        shown = self._intervals[-2] if len(self._intervals) >= 2 else self._intervals[-1]
        uptime = max(now - self.started, 1e-9)
        gauges = {key: value for key, value in shown.gauges.items()}
        gauges.update({(name, ()): float(value) for name, value in readings.gauges.items()})
        counters = [SampledValue(name, agg.copy(), agg.sum / self.interval, labels)
                    for (name, labels), agg in shown.counters.items()]
        counters += [total_counter(name, total, uptime) for name, total in readings.totals.items()]
        samples = [SampledValue(name, agg.copy(), agg.sum / self.interval, labels)
                   for (name, labels), agg in shown.samples.items()]
        return Summary(
            timestamp=shown.start,
            gauges=tuple(sorted((GaugeValue(n, v, ls) for (n, ls), v in gauges.items()),
                                key=lambda g: (g.name, g.labels))),
            counters=tuple(sorted(counters, key=lambda c: (c.name, c.labels))),
            samples=tuple(sorted(samples, key=lambda s: (s.name, s.labels))))

    def cumulative(self, readings: Readings = Readings()
                   ) -> tuple[list[GaugeValue], list[SampledValue], list[SampledValue]]:
        """Gauges (last values), counters and samples since start: what Prometheus shows."""
        gauges = {key: value for key, value in self._gauges.items()}
        gauges.update({(name, ()): float(value) for name, value in readings.gauges.items()})
        counters = [SampledValue(n, agg.copy(), 0.0, ls) for (n, ls), agg in self._counter_totals.items()]
        counters += [total_counter(name, total, 1.0) for name, total in readings.totals.items()]
        samples = [SampledValue(n, agg.copy(), 0.0, ls) for (n, ls), agg in self._sample_totals.items()]
        return ([GaugeValue(n, v, ls) for (n, ls), v in sorted(gauges.items())],
                sorted(counters, key=lambda c: (c.name, c.labels)),
                sorted(samples, key=lambda s: (s.name, s.labels)))


def total_counter(name: str, total: int, uptime: float) -> SampledValue:
    """A component's cumulative count as ``total`` increments of 1 since start."""
    aggregate = Aggregate()
    aggregate.ingest_repeated(1.0, max(int(total), 0))
    return SampledValue(name, aggregate, aggregate.sum / uptime)


# --------------------------------------------------------------------- JSON


def go_time_string(epoch_seconds: float) -> str:
    """Go's ``time.Time.String`` of a UTC time rounded to the second: ``2019-02-05 20:24:00 +0000 UTC``."""
    moment = datetime.datetime.fromtimestamp(round(epoch_seconds), tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def render_json(summary: Summary) -> dict[str, Any]:
    """Nomad's ``MetricsSummary`` in Go's field order (Timestamp, Gauges, Points, Counters, Samples)."""
    return {
        "Timestamp": go_time_string(summary.timestamp),
        "Gauges": [{"Name": g.name, "Value": g.value, "Labels": dict(g.labels)}
                   for g in summary.gauges],
        "Points": [],
        "Counters": [_sampled_json(c) for c in summary.counters],
        "Samples": [_sampled_json(s) for s in summary.samples],
    }


def _sampled_json(value: SampledValue) -> dict[str, Any]:
    """go-metrics' ``SampledValue``: Name, the aggregate's fields, Mean, Stddev, Labels."""
    agg = value.aggregate
    return {"Name": value.name, "Count": agg.count, "Rate": value.rate, "Sum": agg.sum,
            "Min": agg.min, "Max": agg.max, "Mean": agg.mean, "Stddev": agg.stddev,
            "Labels": dict(value.labels)}


# --------------------------------------------------------------- Prometheus

_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def prometheus_name(name: str) -> str:
    """A metric name as go-metrics' Prometheus sink flattens it (``a.b-c`` -> ``a_b_c``)."""
    flat = _INVALID_NAME.sub("_", name)
    return "_" + flat if flat[:1].isdigit() or flat == "" else flat


def _label_name(name: str) -> str:
    flat = _INVALID_LABEL.sub("_", name)
    return "_" + flat if flat[:1].isdigit() or flat == "" else flat


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def prometheus_value(value: float) -> str:
    """A sample value as the text format spells it (``+Inf``, ``-Inf``, ``NaN``, Go-like floats)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _series(name: str, labels: Labels, value: float) -> str:
    if labels:
        inner = ",".join(f'{_label_name(k)}="{_escape_label_value(v)}"' for k, v in labels)
        return f"{name}{{{inner}}} {prometheus_value(value)}"
    return f"{name} {prometheus_value(value)}"


def render_prometheus(gauges: Iterable[GaugeValue], counters: Iterable[SampledValue],
                      samples: Iterable[SampledValue]) -> str:
    """The text exposition format 0.0.4: one family per flattened name, HELP and TYPE first.

    A name that flattens onto a family of another type (``a.b`` gauge, ``a_b``
    counter) keeps the first family; the later series are left out rather than
    produce a document Prometheus refuses.
    """
    families: dict[str, tuple[str, str, list[str]]] = {}   # flat name -> (type, help, lines)

    def add(kind: str, dotted: str, lines: list[str], flat: str) -> None:
        family = families.get(flat)
        if family is None:
            families[flat] = (kind, dotted, lines)
        elif family[0] == kind:
            family[2].extend(lines)

    for gauge in gauges:
        flat = prometheus_name(gauge.name)
        add("gauge", gauge.name, [_series(flat, gauge.labels, gauge.value)], flat)
    for counter in counters:
        flat = prometheus_name(counter.name)
        add("counter", counter.name, [_series(flat, counter.labels, counter.aggregate.sum)], flat)
    for sample in samples:
        flat = prometheus_name(sample.name)
        add("summary", sample.name,
            [_series(flat + "_sum", sample.labels, sample.aggregate.sum),
             _series(flat + "_count", sample.labels, sample.aggregate.count)], flat)
    out: list[str] = []
    for flat in sorted(families):
        kind, dotted, lines = families[flat]
        out.append(f"# HELP {flat} {_escape_help(dotted)}")
        out.append(f"# TYPE {flat} {kind}")
        out.extend(lines)
    return "\n".join(out) + "\n" if out else ""
