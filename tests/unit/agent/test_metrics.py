"""agent.metrics: go-metrics' interval arithmetic, Nomad's JSON shape and Prometheus text."""

from __future__ import annotations

import math
import re
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.metrics import (Aggregate, MetricsRegistry, Readings, go_time_string, labels_of,
                           prometheus_name, prometheus_value, render_json, render_prometheus)

T0 = 1_700_000_000.0   # a multiple of 10: the start of an interval


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=50))
def test_aggregate_matches_a_naive_oracle(values: list[float]) -> None:
    """Count, sum, min, max, mean and the sample stddev agree with the statistics module."""
    agg = Aggregate()
    for value in values:
        agg.ingest(value)
    assert agg.count == len(values)
    assert agg.min == min(values) and agg.max == max(values)
    assert math.isclose(agg.sum, math.fsum(values), rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(agg.mean, statistics.fmean(values), rel_tol=1e-9, abs_tol=1e-6)
    expected = statistics.stdev(values) if len(values) > 1 else 0.0
    assert math.isclose(agg.stddev, expected, rel_tol=1e-6, abs_tol=1e-2)


def test_ingest_repeated_equals_repeated_ingest() -> None:
    """Adding a value n times at once is the same as n single adds (used for totals)."""
    once, many = Aggregate(), Aggregate()
    once.ingest_repeated(2.5, 4)
    for _ in range(4):
        many.ingest(2.5)
    assert once == many
    empty = Aggregate()
    empty.ingest_repeated(1.0, 0)
    assert empty == Aggregate() and empty.mean == 0.0 and empty.stddev == 0.0


def test_counter_rate_is_sum_over_the_interval() -> None:
    """Rate = sum / interval seconds, Count = increments (go-metrics' IncrCounter)."""
    registry = MetricsRegistry(now=T0)
    for _ in range(5):
        registry.incr_counter("shoal.http.requests", 1.0, {"route": "/x"}, now=T0 + 1)
    registry.incr_counter("shoal.http.requests", 3.0, {"route": "/x"}, now=T0 + 2)
    [counter] = registry.summary(T0 + 3).counters
    assert (counter.aggregate.count, counter.aggregate.sum) == (6, 8.0)
    assert counter.rate == pytest.approx(0.8)
    assert (counter.aggregate.min, counter.aggregate.max) == (1.0, 3.0)


def test_summary_shows_the_last_finished_interval() -> None:
    """With one interval the current one is shown; later, the most recent finished one."""
    registry = MetricsRegistry(now=T0)
    registry.add_sample("s", 10.0, now=T0 + 1)
    assert [s.aggregate.count for s in registry.summary(T0 + 2).samples] == [1]
    registry.add_sample("s", 20.0, now=T0 + 11)
    registry.add_sample("s", 30.0, now=T0 + 12)
    # Now in the second interval: the first (finished) one is shown.
    summary = registry.summary(T0 + 13)
    assert summary.timestamp == T0
    assert [s.aggregate.sum for s in summary.samples] == [10.0]
    # In the third interval the second one is shown; a skipped interval is never created.
    summary = registry.summary(T0 + 45)
    assert summary.timestamp == T0 + 10
    assert [s.aggregate.sum for s in summary.samples] == [50.0]
    assert registry.summary(T0 + 45).samples[0].aggregate.stddev == pytest.approx(math.sqrt(50))


def test_old_intervals_are_dropped_but_totals_stay() -> None:
    """Only retain/interval intervals are kept; the cumulative view never resets."""
    registry = MetricsRegistry(now=T0, interval=1.0, retain=3.0)
    for second in range(10):
        registry.incr_counter("c", now=T0 + second)
    assert len(registry._intervals) == 3
    _, counters, _ = registry.cumulative()
    assert [(c.name, c.aggregate.count) for c in counters] == [("c", 10)]


def test_a_wall_clock_stepping_back_writes_to_the_newest_interval() -> None:
    """A clock set back does not create an interval older than the newest."""
    registry = MetricsRegistry(now=T0)
    registry.incr_counter("c", now=T0 + 25)
    registry.incr_counter("c", now=T0 + 3)
    assert len(registry._intervals) == 1 and registry._intervals[0].counters[("c", ())].count == 2


@pytest.mark.parametrize("interval,retain", [(0, 60), (-1, 60), (math.inf, math.inf), (10, 5),
                                             (math.nan, 60), (10, math.nan)])
def test_bad_interval_or_retain_is_refused(interval: float, retain: float) -> None:
    """The constructor refuses intervals that are not positive and retains below them."""
    with pytest.raises(ValueError):
        MetricsRegistry(now=T0, interval=interval, retain=retain)


def test_gauges_keep_the_last_value_and_readings_override() -> None:
    """A gauge shows its last value in the interval; readings are merged in unlabelled."""
    registry = MetricsRegistry(now=T0)
    registry.set_gauge("g", 1, now=T0 + 1)
    registry.set_gauge("g", 2, {"a": "b"}, now=T0 + 2)
    registry.set_gauge("g", 3, now=T0 + 3)
    summary = registry.summary(T0 + 4, Readings(gauges={"h": 7}))
    assert [(g.name, g.value, g.labels) for g in summary.gauges] == [
        ("g", 3.0, ()), ("g", 2.0, (("a", "b"),)), ("h", 7.0, ())]


def test_totals_read_as_increments_since_start() -> None:
    """A component's total n: Count = Sum = n, Min = Max = Mean = 1, Rate = n / uptime."""
    registry = MetricsRegistry(now=T0)
    summary = registry.summary(T0 + 4, Readings(totals={"shoal.gossip.x": 8, "shoal.gossip.y": 0}))
    doc = render_json(summary)
    x, y = doc["Counters"]
    assert x == {"Name": "shoal.gossip.x", "Count": 8, "Rate": 2.0, "Sum": 8.0, "Min": 1.0,
                 "Max": 1.0, "Mean": 1.0, "Stddev": 0.0, "Labels": {}}
    assert (y["Count"], y["Sum"], y["Min"], y["Mean"]) == (0, 0.0, 0.0, 0.0)


def test_json_shape_is_nomads() -> None:
    """Go's field order for MetricsSummary, GaugeValue and SampledValue; labels as a map."""
    registry = MetricsRegistry(now=T0)
    registry.incr_counter("c", labels={"method": "GET"}, now=T0 + 1)
    registry.add_sample("s", 1.5, now=T0 + 1)
    registry.set_gauge("g", 4, now=T0 + 1)
    doc = render_json(registry.summary(T0 + 2))
    assert list(doc) == ["Timestamp", "Gauges", "Points", "Counters", "Samples"]
    assert doc["Timestamp"] == "2023-11-14 22:13:20 +0000 UTC"
    assert doc["Points"] == []
    assert doc["Gauges"] == [{"Name": "g", "Value": 4.0, "Labels": {}}]
    assert list(doc["Counters"][0]) == ["Name", "Count", "Rate", "Sum", "Min", "Max", "Mean",
                                        "Stddev", "Labels"]
    assert doc["Counters"][0]["Labels"] == {"method": "GET"}
    assert list(doc["Samples"][0]) == list(doc["Counters"][0])


def test_go_time_string_rounds_to_the_second() -> None:
    """The stamp is Go's time.Time.String of the UTC time rounded to the second."""
    assert go_time_string(0) == "1970-01-01 00:00:00 +0000 UTC"
    assert go_time_string(1549398240.6) == "2019-02-05 20:24:01 +0000 UTC"


def test_labels_are_sorted_pairs() -> None:
    assert labels_of({"b": "1", "a": 2}) == (("a", "2"), ("b", "1"))
    assert labels_of(None) == () and labels_of((("z", "1"),)) == (("z", "1"),)


# ----------------------------------------------------------------- Prometheus

_SERIES = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(?:\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)\})?'
    r' (?P<value>[-+]?(?:[0-9.]+(?:e[-+]?[0-9]+)?|Inf|NaN))$')


def parse_prometheus(text: str) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """A small 0.0.4 parser: every family has HELP then TYPE, then `name{labels} value` lines."""
    assert text.endswith("\n")
    families: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current = None
    lines = text[:-1].split("\n")
    for index, line in enumerate(lines):
        if line.startswith("# HELP "):
            current = line.split(" ")[2]
            assert current not in families, f"family {current} twice"
            assert lines[index + 1].startswith(f"# TYPE {current} "), lines[index + 1]
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "summary"), line
            families[name] = (kind, [])
            continue
        match = _SERIES.match(line)
        assert match, f"not a series line: {line!r}"
        name = match["name"]
        assert current is not None
        kind = families[current][0]
        allowed = {current} | ({current + "_sum", current + "_count"} if kind == "summary" else set())
        assert name in allowed, (name, current)
        families[current][1].append((line[:line.rindex(" ")], match["value"]))
    return families


def test_prometheus_text_parses_and_carries_every_metric() -> None:
    """Gauges, counters (cumulative sums) and samples (summaries) in valid 0.0.4 text."""
    registry = MetricsRegistry(now=T0)
    registry.incr_counter("shoal.http.requests", labels={"method": "GET", "route": "/v1/job/<job_id>",
                                                        "status": "200"}, now=T0 + 1)
    registry.incr_counter("shoal.http.requests", labels={"method": "GET", "route": "/v1/job/<job_id>",
                                                        "status": "200"}, now=T0 + 31)
    registry.add_sample("shoal.http.request_duration", 2.5, {"route": 'we"ird\\\n'}, now=T0 + 1)
    text = render_prometheus(*registry.cumulative(
        Readings(gauges={"shoal.gossip.members": 3, "shoal.raft.x-y": 0.25},
                 totals={"shoal.gossip.dropped.bad_label": 4})))
    families = parse_prometheus(text)
    assert families["shoal_http_requests"] == (
        "counter", [('shoal_http_requests{method="GET",route="/v1/job/<job_id>",status="200"}', "2")])
    kind, series = families["shoal_http_request_duration"]
    assert kind == "summary"
    assert series == [('shoal_http_request_duration_sum{route="we\\"ird\\\\\\n"}', "2.5"),
                      ('shoal_http_request_duration_count{route="we\\"ird\\\\\\n"}', "1")]
    assert families["shoal_gossip_members"] == ("gauge", [("shoal_gossip_members", "3")])
    assert families["shoal_raft_x_y"] == ("gauge", [("shoal_raft_x_y", "0.25")])
    assert families["shoal_gossip_dropped_bad_label"] == (
        "counter", [("shoal_gossip_dropped_bad_label", "4")])
    assert "# HELP shoal_http_requests shoal.http.requests\n" in text


def test_prometheus_name_collisions_keep_the_first_family() -> None:
    """Two names that flatten alike with different types never make an invalid document."""
    registry = MetricsRegistry(now=T0)
    registry.incr_counter("a_b", now=T0)
    text = render_prometheus(*registry.cumulative(Readings(gauges={"a.b": 1})))
    assert parse_prometheus(text) == {"a_b": ("gauge", [("a_b", "1")])}
    assert render_prometheus([], [], []) == ""


@pytest.mark.parametrize("name,flat", [("shoal.http.requests", "shoal_http_requests"),
                                       ("a-b c", "a_b_c"), ("9lives", "_9lives"), ("x:y", "x:y")])
def test_prometheus_names(name: str, flat: str) -> None:
    assert prometheus_name(name) == flat


@pytest.mark.parametrize("value,text", [(3.0, "3"), (0.5, "0.5"), (1e-7, "1e-07"), (1e20, "1e+20"),
                                        (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN"),
                                        (-2.0, "-2")])
def test_prometheus_values(value: float, text: str) -> None:
    assert prometheus_value(value) == text
