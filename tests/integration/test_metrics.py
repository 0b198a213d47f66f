"""InfluxMetrics through the real influxdb-client against a real VictoriaMetrics (``/api/v2/write``).

VictoriaMetrics names a series ``{measurement}_{field}``, turns tags into labels, keeps
millisecond timestamps and ignores org, bucket and token. A write is readable a moment after
``/internal/force_flush``, so reads poll with short timeouts. Every test uses its own measurement
name, so tests sharing the session's instance never see each other's series.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest

from adapters.metrics import InfluxMetrics
from adapters.ports import Metrics
from tests.conftest import VictoriaMetricsLauncher, _free_port

TOKEN = "influx-token-SECRET-8765"
LOGGER = "adapters.metrics"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def unique_measurement(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:10]}"


def millis(ts: datetime) -> int:
    return (ts - EPOCH) // timedelta(milliseconds=1)


def export(base_url: str, selector: str) -> list[dict]:
    query = urlencode({"match[]": selector})
    with urllib.request.urlopen(f"{base_url}/api/v1/export?{query}", timeout=5) as response:
        return [json.loads(line) for line in response.read().decode().splitlines() if line]


def wait_for_series(base_url: str, selector: str, count: int, timeout: float = 15.0) -> list[dict]:
    """Poll (force-flushing each time) until ``selector`` matches ``count`` series with all
    their samples; return them sorted by labels."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{base_url}/internal/force_flush", timeout=5):
            pass
        series = export(base_url, selector)
        if len(series) >= count:
            return sorted(series, key=lambda s: sorted(s["metric"].items()))
        assert time.monotonic() < deadline, f"{selector}: {len(series)} of {count} series"
        time.sleep(0.05)


def adapter_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    ]


@pytest.mark.services
def test_write_when_flushed_then_victoria_metrics_exports_values_tags_and_timestamps(
    victoria_metrics, caplog
):
    name = unique_measurement("greeks")
    metrics = InfluxMetrics(
        victoria_metrics, TOKEN, "dte", "dte-test", default_tags={"mode": "development"}
    )
    assert isinstance(metrics, Metrics)
    t0 = datetime.now(UTC).replace(microsecond=250_789) - timedelta(minutes=5)
    t1 = t0 + timedelta(seconds=60)
    ny = t1.astimezone(datetime.now().astimezone().tzinfo)  # any aware zone is UTC on the wire
    metrics.write(name, {"system": "smart0dte", "underlying": "SPY"}, {"delta": 0.31, "n": 2}, t0)
    metrics.write(name, {"system": "smart0dte", "underlying": "SPY"}, {"delta": -0.125}, ny)
    metrics.write(name, {"system": "mag7", "underlying": "AAPL"}, {"delta": 0.5}, t0)
    metrics.flush()
    assert metrics.stats.written == 3
    assert metrics.stats.pending == 0

    delta = wait_for_series(victoria_metrics, f'{{__name__="{name}_delta"}}', 2)
    assert [s["metric"] for s in delta] == [
        {
            "__name__": f"{name}_delta",
            "mode": "development",
            "system": "mag7",
            "underlying": "AAPL",
        },
        {
            "__name__": f"{name}_delta",
            "mode": "development",
            "system": "smart0dte",
            "underlying": "SPY",
        },
    ]
    assert delta[0]["values"] == [0.5]
    assert delta[0]["timestamps"] == [millis(t0)]
    assert delta[1]["values"] == [0.31, -0.125]
    assert delta[1]["timestamps"] == [millis(t0), millis(t1)]  # microseconds cut to ms
    [count] = wait_for_series(victoria_metrics, f'{{__name__="{name}_n"}}', 1)
    assert count["values"] == [2.0]
    metrics.close()
    assert TOKEN not in caplog.text
    assert not adapter_warnings(caplog)


@pytest.mark.services
def test_write_when_field_is_nan_then_dropped_counted_and_not_sent(victoria_metrics, caplog):
    name = unique_measurement("iv")
    metrics = InfluxMetrics(victoria_metrics, TOKEN, "dte", "dte-test")
    ts = datetime.now(UTC) - timedelta(minutes=1)
    metrics.write(name, {"underlying": "QQQ"}, {"iv": float("nan"), "mid": 1.25}, ts)
    metrics.write(name, {"underlying": "QQQ"}, {"iv": float("inf")}, ts + timedelta(seconds=1))
    metrics.close()
    assert metrics.stats.dropped_fields == 2
    assert metrics.stats.dropped_points == 1  # the second point had no finite field left
    assert metrics.stats.written == 1
    [mid] = wait_for_series(victoria_metrics, f'{{__name__="{name}_mid"}}', 1)
    assert mid["values"] == [1.25]
    assert export(victoria_metrics, f'{{__name__="{name}_iv"}}') == []
    [warning] = adapter_warnings(caplog)  # once per measurement.field, then only counted
    assert "iv" in warning


def test_write_when_port_closed_then_logged_counted_not_raised(caplog):
    url = f"http://127.0.0.1:{_free_port()}"
    metrics = InfluxMetrics(url, TOKEN, "dte", "dte-test", max_retries=0, timeout_ms=1_000)
    ts = datetime.now(UTC)
    metrics.write("loop", {"system": "smart0dte"}, {"latency_ms": 12.0}, ts)
    metrics.flush()
    assert metrics.stats.failed == 1
    assert metrics.stats.failed_batches == 1
    assert metrics.stats.pending == 0
    metrics.write("loop", {"system": "smart0dte"}, {"latency_ms": 13.0}, ts)
    metrics.flush()
    assert metrics.stats.failed == 2
    warnings = adapter_warnings(caplog)
    assert len(warnings) == 1  # one per outage; the second failure is only counted
    assert "failed" in warnings[0]
    assert url in warnings[0]
    metrics.close()
    assert TOKEN not in caplog.text


@pytest.fixture
def black_hole() -> Iterator[str]:
    """URL of a loopback port that accepts TCP connections (kernel backlog) and never answers:
    a hung server, the worst case for a blocking client."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_write_when_server_hangs_then_write_returns_before_request_settles(black_hole, caplog):
    metrics = InfluxMetrics(black_hole, TOKEN, "dte", "b", max_retries=0, timeout_ms=1_000)
    metrics.write("loop", {"system": "mag7"}, {"latency_ms": 7.0}, datetime.now(UTC))
    # the request cannot settle before the 1 s read timeout, yet write has already returned
    assert metrics.stats.pending == 1
    assert metrics.stats.failed == 0
    metrics.flush()  # waits for the timeout
    assert metrics.stats.failed == 1
    assert len(adapter_warnings(caplog)) == 1
    metrics.close()
    assert TOKEN not in caplog.text


def test_write_when_too_many_points_pending_then_new_ones_dropped_and_counted(black_hole, caplog):
    metrics = InfluxMetrics(
        black_hole, TOKEN, "dte", "b", max_retries=0, timeout_ms=1_000, max_pending=2
    )
    ts = datetime.now(UTC)
    for i in range(4):
        metrics.write("loop", {}, {"i": float(i)}, ts)
    assert metrics.stats.pending == 2
    assert metrics.stats.dropped_points == 2
    assert len(adapter_warnings(caplog)) == 1
    metrics.close()
    metrics.write("loop", {}, {"i": 9.0}, ts)  # after close: dropped, not raised
    assert metrics.stats.dropped_points == 3
    assert metrics.stats.failed == 2


@pytest.mark.services
def test_write_when_server_comes_up_after_failures_then_metrics_restored(
    victoria_metrics_launcher: VictoriaMetricsLauncher, caplog
):
    caplog.set_level(logging.INFO, logger=LOGGER)
    port = _free_port()
    name = unique_measurement("pnl")
    metrics = InfluxMetrics(f"http://127.0.0.1:{port}", TOKEN, "dte", "b", max_retries=0)
    ts = datetime.now(UTC) - timedelta(seconds=30)
    metrics.write(name, {"system": "mag7"}, {"usd": 10.0}, ts)
    metrics.flush()
    assert metrics.stats.failed == 1

    base = victoria_metrics_launcher.start(port=port)
    metrics.write(name, {"system": "mag7"}, {"usd": 20.0}, ts + timedelta(seconds=1))
    metrics.flush()
    assert metrics.stats.written == 1
    assert any("metrics restored" in r.getMessage() for r in caplog.records if r.name == LOGGER)
    [series] = wait_for_series(base, f'{{__name__="{name}_usd"}}', 1)
    assert series["values"] == [20.0]  # the failed point is lost, not replayed
    metrics.close()
    assert TOKEN not in caplog.text
