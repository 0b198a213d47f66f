"""Replay and live paths of ``PolygonMarketData`` (real ``massive.RESTClient``) against the
simulator-backed fixture server: the chains, bars and prices must be the simulator's own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta

import numpy as np
import pytest

from adapters.polygon import PolygonMarketData
from adapters.ports import MarketDataError
from adapters.simulator import SimulatedMarket, SimulatorConfig
from core import calendar as cal
from tests.fixtures.polygon_server import PolygonFixtureServer

NY = cal.NY
SEED = 21
NORMAL = date(2026, 11, 24)
EARLY_CLOSE = date(2026, 11, 27)
AFTER = datetime(2026, 12, 2, 8, 0, tzinfo=NY)  # both days are complete history by then


@pytest.fixture(scope="module")
def sim() -> SimulatedMarket:
    return SimulatedMarket(SEED)


@pytest.fixture(scope="module")
def server() -> Iterator[PolygonFixtureServer]:
    with PolygonFixtureServer(market=SimulatedMarket(SEED)) as srv:
        yield srv


@pytest.fixture(scope="module")
def replay(server: PolygonFixtureServer) -> PolygonMarketData:
    return PolygonMarketData(
        "test-key", base_url=server.base_url, live=False, now=lambda: AFTER, workers=4
    )


def _assert_same_chain(got: object, want: object) -> None:
    from core.marketdata import ChainSnapshot

    assert isinstance(got, ChainSnapshot)
    assert isinstance(want, ChainSnapshot)
    np.testing.assert_array_equal(got.strikes, want.strikes)
    np.testing.assert_array_equal(got.is_call, want.is_call)
    np.testing.assert_allclose(got.bid, want.bid, rtol=0, atol=0.005)
    np.testing.assert_allclose(got.ask, want.ask, rtol=0, atol=0.005)
    assert got.spot == pytest.approx(want.spot, abs=1e-9)


@pytest.mark.parametrize(
    ("day", "underlying", "minutes"),
    [
        (NORMAL, "SPY", (0, 1, 59, 211, 389)),
        (NORMAL, "IWM", (0, 120, 389)),
        (EARLY_CLOSE, "SPY", (0, 2, 100, 209)),
        (EARLY_CLOSE, "QQQ", (0, 150, 209)),
    ],
)
def test_replay_chain_when_at_minute_then_bid_ask_equal_simulator(
    replay: PolygonMarketData,
    sim: SimulatedMarket,
    day: date,
    underlying: str,
    minutes: tuple[int, ...],
) -> None:
    expiry = sim.expiries(underlying, day)[0]
    open_ = cal.session(day).open
    for minute in minutes:
        at = open_ + timedelta(minutes=minute)
        _assert_same_chain(replay.chain(underlying, expiry, at), sim.chain(underlying, expiry, at))


def test_replay_chain_when_between_minutes_then_quotes_of_the_minute_start(
    replay: PolygonMarketData, sim: SimulatedMarket
) -> None:
    at = datetime(2026, 11, 24, 10, 15, 30, tzinfo=NY)
    got = replay.chain("SPY", NORMAL, at)
    at_minute = sim.chain("SPY", NORMAL, at.replace(second=0))
    np.testing.assert_array_equal(got.bid, at_minute.bid)
    np.testing.assert_array_equal(got.ask, at_minute.ask)
    assert got.spot == sim.chain("SPY", NORMAL, at).spot
    assert got.at == at


def test_replay_chain_when_parsed_then_own_iv_for_every_sane_row_and_no_oi(
    replay: PolygonMarketData,
) -> None:
    parsed = replay.parsed_chain("SPY", NORMAL, datetime(2026, 11, 24, 11, 0, tzinfo=NY))
    assert parsed.computed.all()
    assert (parsed.snapshot.open_interest == -1).all()
    solved = np.isfinite(parsed.iv)
    assert solved.mean() > 0.5
    assert set(parsed.issue_counts()) <= {"no_own_iv", "bad_quote", "crossed_quote", "no_quote"}
    assert np.all((parsed.delta[solved] > -1) & (parsed.delta[solved] < 1))


def test_replay_chain_when_outside_session_or_expired_then_market_data_error(
    replay: PolygonMarketData,
) -> None:
    with pytest.raises(MarketDataError, match="outside the session 09:30-13:00"):
        replay.chain("SPY", EARLY_CLOSE, datetime(2026, 11, 27, 13, 0, tzinfo=NY))
    with pytest.raises(MarketDataError, match="expired"):
        replay.chain("SPY", date(2026, 11, 23), datetime(2026, 11, 24, 10, 0, tzinfo=NY))
    with pytest.raises(MarketDataError, match="not an NYSE trading day"):
        replay.chain("SPY", EARLY_CLOSE, datetime(2026, 11, 26, 10, 0, tzinfo=NY))


def test_expiries_when_replayed_then_equal_simulator(
    replay: PolygonMarketData, sim: SimulatedMarket
) -> None:
    for day in (NORMAL, EARLY_CLOSE):
        for underlying in ("SPY", "IWM"):
            assert replay.expiries(underlying, day) == list(sim.expiries(underlying, day))


def test_bars_prices_when_replayed_then_equal_simulator(
    replay: PolygonMarketData, sim: SimulatedMarket
) -> None:
    session = cal.session(NORMAL)
    for symbol in ("SPY", "VIX"):
        start, end = session.open + timedelta(minutes=3), session.open + timedelta(minutes=47)
        got, want = replay.bars(symbol, start, end), sim.bars(symbol, start, end)
        assert got.times == want.times
        for name in ("open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        for at in (session.open, session.open + timedelta(seconds=61), session.close):
            assert replay.last_price(symbol, at) == sim.last_price(symbol, at)
        assert replay.prior_close(symbol, NORMAL) == sim.prior_close(symbol, NORMAL)
        assert replay.prior_close(symbol, date(2026, 11, 30)) == sim.prior_close(
            symbol, date(2026, 11, 30)
        )
    start = datetime(2026, 11, 16, tzinfo=NY)
    end = datetime(2026, 11, 28, tzinfo=NY)
    daily, want_daily = replay.bars("QQQ", start, end, "1d"), sim.bars("QQQ", start, end, "1d")
    assert daily.times == want_daily.times
    np.testing.assert_array_equal(daily.close, want_daily.close)
    two_days = replay.bars("IWM", session.open, cal.session(date(2026, 11, 25)).close)
    assert len(two_days) == 2 * 390


def test_replay_when_pages_are_small_then_pagination_followed_and_chain_unchanged(
    sim: SimulatedMarket,
) -> None:
    with PolygonFixtureServer(market=SimulatedMarket(SEED), page_size=150) as small:
        md = PolygonMarketData(
            "test-key", base_url=small.base_url, live=False, now=lambda: AFTER, workers=4
        )
        expiry = sim.expiries("IWM", EARLY_CLOSE)[0]
        at = cal.session(EARLY_CLOSE).open + timedelta(minutes=77)
        _assert_same_chain(md.chain("IWM", expiry, at), sim.chain("IWM", expiry, at))
        assert md.expiries("IWM", EARLY_CLOSE) == list(sim.expiries("IWM", EARLY_CLOSE))
        quotes = [r for r in small.requests if r.path.startswith("/v3/quotes/")]
        contracts = [r for r in small.requests if r.path == "/v3/reference/options/contracts"]
        assert any("cursor" in r.query for r in quotes)
        assert sum("cursor" in r.query for r in contracts) == len(contracts) - 1 >= 10
        assert small.errors == []


def test_replay_chain_when_simulator_lists_no_chain_then_market_data_error() -> None:
    config = SimulatorConfig(missing_chains=frozenset({("QQQ", NORMAL)}))
    with PolygonFixtureServer(market=SimulatedMarket(SEED, config)) as srv:
        md = PolygonMarketData("test-key", base_url=srv.base_url, live=False, now=lambda: AFTER)
        at = cal.session(NORMAL).open + timedelta(minutes=30)
        with pytest.raises(MarketDataError, match="no QQQ contracts expiring 2026-11-24"):
            md.chain("QQQ", NORMAL, at)
        assert md.expiries("QQQ", NORMAL) == []
        assert srv.count("/v3/quotes/") == 0


def test_live_chain_when_now_inside_session_then_snapshot_equals_simulator(
    server: PolygonFixtureServer, sim: SimulatedMarket
) -> None:
    now = datetime(2026, 11, 24, 14, 7, 20, tzinfo=NY)
    server.set_now(now)
    try:
        md = PolygonMarketData("test-key", base_url=server.base_url, live=True, now=lambda: now)
        expiry = sim.expiries("QQQ", NORMAL)[1]
        before = server.count("/v3/snapshot/options/QQQ")
        parsed = md.parsed_chain("QQQ", expiry, now)
        want = sim.chain("QQQ", expiry, now)
        _assert_same_chain(parsed.snapshot, want)
        np.testing.assert_array_equal(parsed.snapshot.open_interest, want.open_interest)
        assert server.count("/v3/snapshot/options/QQQ") - before == -(-len(want) // 250)
        vendor = ~parsed.computed
        assert vendor.mean() > 0.5
        np.testing.assert_allclose(parsed.iv[vendor], parsed.vendor_iv[vendor])
        assert md.last_price("SPY", now) == sim.last_price("SPY", now)
        assert md.last_price("VIX", now) == sim.last_price("VIX", now)
        assert md.prior_close("IWM", NORMAL) == sim.prior_close("IWM", NORMAL)
        assert md.market_status().is_open
        # a past instant of a live adapter is replayed from quotes
        past = now.replace(second=0) - timedelta(hours=2)
        iwm = sim.expiries("IWM", NORMAL)[0]
        _assert_same_chain(md.chain("IWM", iwm, past), sim.chain("IWM", iwm, past))
    finally:
        server.set_now(None)
    assert server.errors == []
