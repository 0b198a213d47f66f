"""The Metrics port's shared contract (validation, NaN policy) over every implementation, and the
NullMetrics / MemoryMetrics specifics. InfluxMetrics takes part only where a point is rejected
before anything is buffered, so no server and no thread is involved."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from adapters.metrics import InfluxMetrics, MemoryMetrics, MetricPoint, NullMetrics
from adapters.ports import Metrics

TS = datetime(2026, 11, 27, 14, 30, 5, 123456, tzinfo=UTC)


def influx() -> InfluxMetrics:
    return InfluxMetrics("http://127.0.0.1:1", "tok-SECRET", "dte", "dte-test")


IMPLEMENTATIONS = [NullMetrics, MemoryMetrics, influx]


@pytest.mark.parametrize("make", IMPLEMENTATIONS)
def test_isinstance_when_any_implementation_then_satisfies_port(make):
    assert isinstance(make(), Metrics)


@pytest.mark.parametrize("make", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "ts"),
    [
        ("", {}, {"v": 1.0}, TS),
        ("loop-latency", {}, {"v": 1.0}, TS),
        ("1loop", {}, {"v": 1.0}, TS),
        ("_loop", {}, {"v": 1.0}, TS),
        ("a" * 129, {}, {"v": 1.0}, TS),
        ("loop", {"": "x"}, {"v": 1.0}, TS),
        ("loop", {"sys tem": "x"}, {"v": 1.0}, TS),
        ("loop", {"system": ""}, {"v": 1.0}, TS),
        ("loop", {"system": "a\nb"}, {"v": 1.0}, TS),
        ("loop", {"system": 7}, {"v": 1.0}, TS),
        ("loop", {}, {}, TS),
        ("loop", {}, {"": 1.0}, TS),
        ("loop", {}, {"v.x": 1.0}, TS),
        ("loop", {}, {"v": "1.0"}, TS),
        ("loop", {}, {"v": None}, TS),
        ("loop", {}, {"v": True}, TS),
        ("loop", {}, {"v": 1.0}, datetime(2026, 11, 27, 14, 30)),  # noqa: DTZ001 - naive on purpose
        ("loop", {}, {"v": 1.0}, "2026-11-27T14:30:00Z"),
    ],
)
def test_write_when_point_malformed_then_value_error(make, measurement, tags, fields, ts):
    metrics = make()
    with pytest.raises(ValueError):  # noqa: PT011 - one error type, many messages
        metrics.write(measurement, tags, fields, ts)


@pytest.mark.parametrize("make", IMPLEMENTATIONS)
def test_write_when_every_field_non_finite_then_point_dropped_and_counted(make, caplog):
    metrics = make()
    metrics.write("greeks", {"underlying": "SPY"}, {"iv": math.nan, "vega": math.inf}, TS)
    metrics.write("greeks", {"underlying": "SPY"}, {"iv": math.nan}, TS)
    assert metrics.stats.dropped_fields == 3
    assert metrics.stats.dropped_points == 2
    assert metrics.stats.accepted == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # first drop of greeks.iv / greeks.vega; the repeat only counted
    assert "iv" in warnings[0].getMessage()
    assert "vega" in warnings[0].getMessage()


def test_write_when_memory_then_validated_point_kept_with_floats():
    metrics = MemoryMetrics()
    ny = TS.astimezone(ZoneInfo("America/New_York"))
    tags = {"system": "smart0dte", "underlying": "SPY"}
    metrics.write("greeks", tags, {"delta": 0.3, "contracts": 2, "iv": math.nan}, ny)
    tags["underlying"] = "changed after the write"
    [point] = metrics.points
    assert point == MetricPoint(
        "greeks", {"system": "smart0dte", "underlying": "SPY"}, {"delta": 0.3, "contracts": 2.0}, ny
    )
    assert isinstance(point.fields["contracts"], float)
    assert point.ts == TS
    assert metrics.stats.accepted == 1
    assert metrics.stats.dropped_fields == 1
    with pytest.raises(TypeError):
        point.tags["system"] = "mag7"  # type: ignore[index]


def test_write_when_memory_full_then_oldest_points_forgotten():
    metrics = MemoryMetrics(max_points=3)
    for i in range(5):
        metrics.write("loop", {"system": "mag7"}, {"i": float(i)}, TS + timedelta(seconds=i))
    assert [p.fields["i"] for p in metrics.points] == [2.0, 3.0, 4.0]
    assert [p.fields["i"] for p in metrics.of("loop")] == [2.0, 3.0, 4.0]
    assert metrics.of("other") == []
    assert metrics.stats.accepted == 5


def test_write_when_null_then_nothing_kept_and_nothing_raised():
    metrics = NullMetrics()
    other_zone = timezone(timedelta(hours=-5))
    metrics.write("loop", {"system": "smart0dte"}, {"latency_ms": 4.2}, TS.astimezone(other_zone))
    metrics.flush()
    metrics.close()
    assert metrics.stats.accepted == 0
    assert metrics.stats.dropped_points == 0


def test_repr_when_influx_then_token_and_url_password_hidden():
    metrics = InfluxMetrics("http://user:pa55@127.0.0.1:1", "tok-SECRET", "dte", "dte-test")
    text = repr(metrics)
    assert "tok-SECRET" not in text
    assert "pa55" not in text
    assert "***" in text


@pytest.mark.parametrize(
    "kwargs",
    [{"batch_size": 0}, {"flush_interval_ms": 0}, {"timeout_ms": -1}, {"max_pending": 0}],
)
def test_init_when_influx_options_not_positive_then_value_error(kwargs):
    with pytest.raises(ValueError, match="must be > 0"):
        InfluxMetrics("http://127.0.0.1:1", "t", "dte", "b", **kwargs)


def test_close_when_influx_never_written_then_nothing_started():
    metrics = influx()
    metrics.flush()
    metrics.close()
    assert metrics.stats.accepted == 0
