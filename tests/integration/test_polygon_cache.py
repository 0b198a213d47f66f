"""The parquet history cache and the in-memory memo of ``PolygonMarketData``, counted on the
simulator-backed fixture server (real ``massive.RESTClient``, real files)."""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from adapters.polygon import PolygonMarketData
from adapters.simulator import SimulatedMarket
from core import calendar as cal
from tests.fixtures.polygon_server import PolygonFixtureServer

NY = cal.NY
SEED = 21
DAY = date(2026, 11, 27)  # early close: 210 minutes
SESSION = cal.session(DAY)
AFTER = datetime(2026, 12, 1, 7, 0, tzinfo=NY)
SAME_DAY = datetime(2026, 11, 27, 15, 0, tzinfo=NY)


@pytest.fixture(scope="module")
def sim() -> SimulatedMarket:
    return SimulatedMarket(SEED)


@pytest.fixture(scope="module")
def server() -> Iterator[PolygonFixtureServer]:
    with PolygonFixtureServer(market=SimulatedMarket(SEED), quotes_per_minute=1) as srv:
        yield srv


def _md(server: PolygonFixtureServer, cache: Path, now: datetime = AFTER) -> PolygonMarketData:
    return PolygonMarketData(
        "test-key", base_url=server.base_url, live=False, cache_dir=cache, now=lambda: now
    )


def _replay_day(md: PolygonMarketData, underlying: str, step: int = 1) -> list[float]:
    """What a trading loop asks for over one session; returns the mids it saw (for equality)."""
    expiry = md.expiries(underlying, DAY)[0]
    md.prior_close(underlying, DAY)
    md.prior_close("VIX", DAY)
    mids: list[float] = []
    for minute in range(0, 210, step):
        at = SESSION.open + timedelta(minutes=minute)
        md.bars(underlying, SESSION.open, at)
        md.last_price("VIX", at)
        snap = md.chain(underlying, expiry, at)
        mids.append(float(np.nansum(snap.mid)) + snap.spot)
    return mids


def test_cache_when_second_instance_replays_past_day_then_zero_downloads(
    server: PolygonFixtureServer, sim: SimulatedMarket, tmp_path: Path
) -> None:
    server.reset_requests()
    first = _replay_day(_md(server, tmp_path), "IWM")
    n_contracts = len(sim.chain("IWM", DAY, SESSION.open))
    listing = sum(len(sim.chain("IWM", e, SESSION.open)) for e in sim.expiries("IWM", DAY))
    assert server.count("/v3/reference/options/contracts") == math.ceil(listing / 1000)
    assert server.count("/v3/quotes/") == n_contracts  # one page each, once for the day
    assert server.count("/v2/aggs/ticker/IWM/range/1/minute/") == 1
    assert server.count("/v2/aggs/ticker/I:VIX/range/1/minute/") == 1
    assert server.count("/v2/aggs/ticker/IWM/range/1/day/") == 1
    assert server.count("/v2/aggs/ticker/I:VIX/range/1/day/") == 1
    assert server.count() == math.ceil(listing / 1000) + n_contracts + 4
    server.reset_requests()
    second = _replay_day(_md(server, tmp_path), "IWM")
    assert server.count() == 0
    assert second == first
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet")) == [
        "contracts/IWM/2026-11-27_h45.parquet",
        "daily_aggs/IWM/2026-11-25.parquet",  # the session before the 27th (26th: holiday)
        "daily_aggs/VIX/2026-11-25.parquet",
        "minute_aggs/IWM/2026-11-27.parquet",
        "minute_aggs/VIX/2026-11-27.parquet",
        "option_quotes/IWM/2026-11-27/2026-11-27.parquet",
    ]


def test_cache_when_day_is_not_complete_then_not_persisted_and_downloaded_again(
    server: PolygonFixtureServer, tmp_path: Path
) -> None:
    server.reset_requests()
    _replay_day(_md(server, tmp_path, now=SAME_DAY), "IWM", step=30)
    downloads = server.count()
    assert downloads > 0
    assert list(tmp_path.rglob("*2026-11-27*.parquet")) == []
    server.reset_requests()
    _replay_day(_md(server, tmp_path, now=SAME_DAY), "IWM", step=30)
    # only the previous session's daily bars (complete history) came from parquet
    assert server.count() == downloads - 2


def test_cache_when_parquet_corrupt_then_logged_and_downloaded_again(
    server: PolygonFixtureServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    at = SESSION.open + timedelta(minutes=42)
    want = _md(server, tmp_path).chain("SPY", DAY, at)
    quotes = next(tmp_path.rglob("option_quotes/SPY/2026-11-27/2026-11-27.parquet"))
    bars = next(tmp_path.rglob("minute_aggs/SPY/2026-11-27.parquet"))
    quotes.write_bytes(quotes.read_bytes()[: len(quotes.read_bytes()) // 3])
    bars.write_bytes(b"PAR1 not really parquet")
    server.reset_requests()
    with caplog.at_level(logging.WARNING, logger="adapters.polygon.cache"):
        got = _md(server, tmp_path).chain("SPY", DAY, at)
    assert caplog.text.count("unusable file") == 2
    np.testing.assert_array_equal(got.bid, want.bid)
    assert got.spot == want.spot
    assert server.count("/v3/quotes/") == len(want)
    assert server.count("/v2/aggs/ticker/SPY/range/1/minute/") == 1
    assert server.count("/v3/reference/options/contracts") == 0  # that file was fine
    server.reset_requests()
    _md(server, tmp_path).chain("SPY", DAY, at)
    assert server.count() == 0  # rewritten intact


def test_memo_when_replaying_every_minute_then_files_read_once(
    server: PolygonFixtureServer, tmp_path: Path
) -> None:
    _replay_day(_md(server, tmp_path), "QQQ", step=60)
    md = _md(server, tmp_path)
    expiry = md.expiries("QQQ", DAY)[0]
    md.chain("QQQ", expiry, SESSION.open)
    shutil.rmtree(tmp_path)  # from here on only memory can answer
    server.reset_requests()
    for minute in range(1, 210):
        md.chain("QQQ", expiry, SESSION.open + timedelta(minutes=minute))
    assert server.count() == 0
    assert not tmp_path.exists()
