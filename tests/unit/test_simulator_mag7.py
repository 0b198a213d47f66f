"""The simulated Mag7 stocks (adapters.simulator.mag7): factor structure, listings, chains,
earnings, IV history, port semantics and determinism."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, time, timedelta
from itertools import combinations

import numpy as np
import pytest

from adapters.ports import MarketData, MarketDataError
from adapters.simulator import EarningsTiming, Mag7MarketConfig, SimulatedMarket, SimulatorConfig
from core.calendar import NY, is_trading_day, next_trading_day, previous_trading_day, session
from core.marketdata import Bars, ChainSnapshot, FloatArray
from core.models import OptionContract, Right
from core.pricing import implied_vol, year_fraction

MAG7 = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "TSLA", "META")
SECTOR = {
    "AAPL": "tech",
    "MSFT": "tech",
    "NVDA": "tech",
    "GOOGL": "comm",
    "META": "comm",
    "AMZN": "cons",
    "TSLA": "cons",
}
YEAR_START = datetime(2025, 11, 24, 9, 30, tzinfo=NY)
YEAR_END = datetime(2026, 11, 25, tzinfo=NY)
REGULAR_DAY = date(2026, 11, 24)
FRIDAY = date(2026, 11, 20)
GOOD_FRIDAY_2027 = date(2027, 3, 26)


@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return SimulatedMarket(seed=21)


@pytest.fixture(scope="module")
def year_closes(market: SimulatedMarket) -> dict[str, FloatArray]:
    return {s: market.bars(s, YEAR_START, YEAR_END, "1d").close for s in (*MAG7, "SPY")}


def at_time(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), tzinfo=NY)


def full_day(m: SimulatedMarket, symbol: str, day: date) -> Bars:
    s = session(day)
    return m.bars(symbol, s.open, s.close)


def weekly(m: SimulatedMarket, symbol: str, day: date) -> date:
    """The listed expiry 5..10 days out (the Mag7 entry rule's window)."""
    return next(e for e in m.expiries(symbol, day) if 5 <= (e - day).days <= 10)


def atm_iv(snap: ChainSnapshot) -> float:
    t = year_fraction(snap.at, session(snap.expiry).close)
    iv = implied_vol(snap.mid, snap.spot, snap.strikes, t, snap.is_call).iv
    near = np.abs(snap.strikes - snap.spot)
    rows = np.flatnonzero(near == near.min())
    return float(np.mean(iv[rows]))


# -- symbols and the port -------------------------------------------------------------------------


def test_symbols_when_default_config_then_etfs_vix_and_mag7(market: SimulatedMarket) -> None:
    assert market.symbols == ("SPY", "QQQ", "IWM", "VIX", *MAG7)
    assert market.config.symbols == ("SPY", "QQQ", "IWM", "VIX")
    assert isinstance(market, MarketData)


def test_stock_engine_when_only_etfs_used_then_never_built() -> None:
    m = SimulatedMarket(3)
    full_day(m, "SPY", REGULAR_DAY)
    m.chain("SPY", REGULAR_DAY, at_time(REGULAR_DAY, 10, 0))
    assert m._mag7_engine is None
    m.last_price("AAPL", at_time(REGULAR_DAY, 10, 0))
    assert m._mag7_engine is not None


def test_stocks_when_mag7_disabled_then_unknown() -> None:
    m = SimulatedMarket(3, SimulatorConfig(mag7=None))
    assert m.symbols == ("SPY", "QQQ", "IWM", "VIX")
    with pytest.raises(MarketDataError):
        m.prior_close("AAPL", REGULAR_DAY)
    with pytest.raises(MarketDataError):
        m.expiries("AAPL", REGULAR_DAY)
    with pytest.raises(MarketDataError):
        m.earnings_dates("AAPL", date(2026, 1, 1), date(2026, 12, 31))


# -- prices ---------------------------------------------------------------------------------------


def test_daily_returns_when_a_year_then_correlations_realistic_and_sector_higher(
    year_closes: dict[str, FloatArray],
) -> None:
    returns = {s: np.diff(np.log(c)) for s, c in year_closes.items()}
    assert all(r.shape == (251,) for r in returns.values())
    same: list[float] = []
    cross: list[float] = []
    for a, b in combinations(MAG7, 2):
        rho = float(np.corrcoef(returns[a], returns[b])[0, 1])
        assert 0.25 <= rho <= 0.85, (a, b, rho)
        (same if SECTOR[a] == SECTOR[b] else cross).append(rho)
    assert 0.35 <= np.mean(cross) <= 0.6
    assert 0.45 <= np.mean(same) <= 0.75
    assert np.mean(same) > np.mean(cross) + 0.05
    for s in MAG7:
        assert np.corrcoef(returns[s], returns["SPY"])[0, 1] > 0.45, s


def test_daily_returns_when_a_year_then_vols_ordered_by_name(
    year_closes: dict[str, FloatArray],
) -> None:
    vol = {s: float(np.std(np.diff(np.log(year_closes[s])))) * np.sqrt(252) for s in MAG7}
    assert all(0.15 <= v <= 0.9 for v in vol.values()), vol
    assert min(vol["NVDA"], vol["TSLA"]) > max(vol["AAPL"], vol["MSFT"])


def test_prices_when_late_2026_then_plausible_levels(market: SimulatedMarket) -> None:
    for s in MAG7:
        assert 50.0 < market.prior_close(s, REGULAR_DAY) < 2000.0, s


def test_minute_returns_when_a_session_then_co_move_with_spy(market: SimulatedMarket) -> None:
    spy = np.diff(np.log(full_day(market, "SPY", REGULAR_DAY).close))
    for s in MAG7:
        stock = np.diff(np.log(full_day(market, s, REGULAR_DAY).close))
        assert np.corrcoef(stock, spy)[0, 1] > 0.3, s


def test_minute_bars_when_a_stock_session_then_shape_and_ohlc_consistent(
    market: SimulatedMarket,
) -> None:
    bars = full_day(market, "NVDA", REGULAR_DAY)
    assert len(bars) == 390
    assert bars.times[0] == at_time(REGULAR_DAY, 9, 30)
    assert np.all(bars.high >= np.maximum(bars.open, bars.close))
    assert np.all(bars.low <= np.minimum(bars.open, bars.close))
    assert np.all(bars.volume >= 1)
    assert np.array_equal(bars.open[1:], bars.close[:-1])
    early = full_day(market, "NVDA", date(2026, 11, 27))
    assert len(early) == 210


def test_daily_bars_when_stock_then_match_minute_bars_and_prior_close(
    market: SimulatedMarket,
) -> None:
    day = REGULAR_DAY
    minute = full_day(market, "AMZN", day)
    daily = market.bars("AMZN", session(day).open, session(day).close, "1d")
    assert len(daily) == 1 and daily.times == (session(day).open,)
    assert daily.open[0] == minute.open[0]
    assert daily.high[0] == minute.high.max()
    assert daily.low[0] == minute.low.min()
    assert daily.close[0] == minute.close[-1]
    assert daily.volume[0] == minute.volume.sum()
    assert market.prior_close("AMZN", next_trading_day(day)) == minute.close[-1]
    assert market.last_price("AMZN", at_time(day, 17, 0)) == minute.close[-1]
    assert market.last_price("AMZN", at_time(day, 9, 30, 30)) == minute.open[0]
    assert market.last_price("AMZN", at_time(day, 12, 0, 30)) == minute.close[149]


def test_daily_bars_when_history_requested_then_a_year_back_from_any_day() -> None:
    m = SimulatedMarket(5)
    for end in (date(2017, 6, 1), date(2029, 9, 4)):
        start = datetime.combine(end - timedelta(days=366), time(0), tzinfo=NY)
        bars = m.bars("META", start, datetime.combine(end, time(0), tzinfo=NY), "1d")
        assert len(bars) >= 250
        assert np.all(np.isfinite(bars.close)) and np.all(bars.close > 0)


def test_bars_when_holiday_then_empty_for_a_stock(market: SimulatedMarket) -> None:
    day = date(2026, 11, 26)
    assert len(market.bars("AAPL", at_time(day, 9, 30), at_time(day, 16, 0))) == 0


# -- listings -------------------------------------------------------------------------------------


def test_expiries_when_listed_then_fridays_weekly_six_weeks_and_monthlies(
    market: SimulatedMarket,
) -> None:
    listed = market.expiries("AAPL", date(2026, 10, 1))
    weeklies = [e for e in listed if (e - date(2026, 10, 1)).days <= 42]
    assert [e.weekday() for e in weeklies] == [4] * len(weeklies)
    assert len(weeklies) == 6
    later = [e for e in listed if e not in weeklies]
    assert later and all(e.weekday() == 4 and 15 <= e.day <= 21 for e in later)  # monthlies
    assert all(is_trading_day(e) for e in listed)
    assert market.expiries("TSLA", date(2026, 10, 1)) == listed


def test_expiries_when_good_friday_2027_then_thursday_expiry(market: SimulatedMarket) -> None:
    listed = market.expiries("MSFT", date(2027, 3, 15))
    assert date(2027, 3, 25) in listed
    assert GOOD_FRIDAY_2027 not in listed
    assert not is_trading_day(GOOD_FRIDAY_2027)


def test_expiries_when_friday_then_same_day_weekly_listed(market: SimulatedMarket) -> None:
    assert market.expiries("GOOGL", FRIDAY)[0] == FRIDAY
    assert market.expiries("GOOGL", REGULAR_DAY)[0] == date(2026, 11, 27)  # Fri after Thanksgiving


def test_chain_when_strikes_then_step_by_price_level(market: SimulatedMarket) -> None:
    mag7 = market.config.mag7
    assert mag7 is not None
    for s in MAG7:
        snap = market.chain(s, weekly(market, s, FRIDAY), at_time(FRIDAY, 10, 0))
        want = mag7.strike_step(market.prior_close(s, FRIDAY))
        assert want in (1.0, 2.5, 5.0)
        grid = np.unique(snap.strikes)
        assert np.allclose(np.diff(grid), want), s
        assert grid[0] < snap.spot < grid[-1]


@pytest.mark.parametrize("symbol", ["AAPL", "NVDA", "TSLA", "META"])
@pytest.mark.parametrize("day", [FRIDAY, date(2026, 7, 10)])
def test_chain_when_priced_then_quotes_sane_and_monotone(
    market: SimulatedMarket, symbol: str, day: date
) -> None:
    for hh, mm in ((10, 0), (15, 30)):
        snap = market.chain(symbol, weekly(market, symbol, day), at_time(day, hh, mm))
        assert np.all(snap.bid >= 0) and np.all(snap.bid <= snap.ask)
        bid = snap.bid > 0  # a no-bid row asks a seeded 1..5 ticks: its mid is no price
        calls, puts = snap.mid[snap.is_call & bid], snap.mid[~snap.is_call & bid]
        tick_tol = 0.015  # bid rounded down, ask up
        assert np.all(np.diff(calls) <= tick_tol) and np.all(np.diff(puts) >= -tick_tol)
        assert np.all(np.diff(np.diff(calls)) >= -2 * tick_tol)  # convex in strike
        near = np.abs(snap.strikes - snap.spot) < 0.03 * snap.spot
        spread = (snap.ask - snap.bid)[near]
        assert np.all(spread <= np.maximum(0.10, 0.15 * snap.mid[near]))
        assert np.all(snap.open_interest[near] >= 100)
        oi = snap.open_interest  # listed before the open: peaked at the prior close
        ref = np.abs(snap.strikes / market.prior_close(symbol, day) - 1.0) < 0.03
        assert oi.max() > 1000 and oi[ref].mean() > 2 * oi[~ref].mean()


def test_chain_when_otm_puts_vs_calls_then_put_skew(market: SimulatedMarket) -> None:
    snap = market.chain("MSFT", weekly(market, "MSFT", FRIDAY), at_time(FRIDAY, 10, 0))
    t = year_fraction(snap.at, session(snap.expiry).close)
    iv = implied_vol(snap.mid, snap.spot, snap.strikes, t, snap.is_call).iv
    put = (~snap.is_call) & (np.abs(snap.strikes / snap.spot - 0.95) < 0.01)
    call = snap.is_call & (np.abs(snap.strikes / snap.spot - 1.05) < 0.01)
    assert np.mean(iv[put]) > np.mean(iv[call])


def test_chain_when_vols_by_name_then_high_vol_names_richer(market: SimulatedMarket) -> None:
    ivs = {
        s: atm_iv(market.chain(s, weekly(market, s, FRIDAY), at_time(FRIDAY, 10, 0))) for s in MAG7
    }
    assert all(0.08 < v < 1.5 for v in ivs.values()), ivs
    assert min(ivs["NVDA"], ivs["TSLA"]) > max(ivs["AAPL"], ivs["MSFT"])


def test_quote_when_stock_contract_listed_then_matches_chain_row(
    market: SimulatedMarket,
) -> None:
    at = at_time(FRIDAY, 12, 0)
    snap = market.chain("AAPL", weekly(market, "AAPL", FRIDAY), at)
    row = int(np.argmin(np.abs(snap.strikes - snap.spot)))
    contract = snap.contract(row)
    assert market.quote(contract, at) == (float(snap.bid[row]), float(snap.ask[row]))
    missing = OptionContract("AAPL", snap.expiry, contract.strike + 10_000, Right.CALL)
    with pytest.raises(MarketDataError):
        market.quote(missing, at)


def test_chain_when_expiry_not_listed_or_outside_session_then_market_data_error(
    market: SimulatedMarket,
) -> None:
    with pytest.raises(MarketDataError):
        market.chain("AAPL", date(2026, 11, 23), at_time(FRIDAY, 10, 0))  # a Monday
    with pytest.raises(MarketDataError):
        market.chain("AAPL", FRIDAY, at_time(FRIDAY, 16, 30))
    with pytest.raises(MarketDataError):
        market.chain("AAPL", date(2026, 11, 13), at_time(FRIDAY, 10, 0))  # expired


# -- earnings -------------------------------------------------------------------------------------


def test_earnings_dates_when_a_year_then_quarterly_on_sessions(market: SimulatedMarket) -> None:
    for s in MAG7:
        dates = market.earnings_dates(s, date(2026, 1, 1), date(2026, 12, 31))
        assert len(dates) == 4, (s, dates)
        assert all(is_trading_day(d) for d in dates)
        gaps = np.diff([d.toordinal() for d in dates])
        assert np.all((gaps > 70) & (gaps < 110)), (s, dates)
        months = {d.month for d in dates}
        assert months <= ({2, 3, 5, 6, 8, 9, 11, 12} if s == "NVDA" else {1, 2, 4, 5, 7, 8, 10, 11})


def test_earnings_events_when_timed_then_session_follows_report(market: SimulatedMarket) -> None:
    events = [
        e for s in MAG7 for e in market.earnings_events(s, date(2025, 1, 1), date(2027, 12, 31))
    ]
    assert {e.timing for e in events} == set(EarningsTiming)
    for e in events:
        if e.timing is EarningsTiming.AFTER_CLOSE:
            assert e.session == next_trading_day(e.report_day)
        else:
            assert e.session == e.report_day
        assert 0.01 < e.implied_move < 0.25


def test_earnings_gap_when_earnings_session_then_larger_than_typical(
    market: SimulatedMarket,
) -> None:
    earnings: list[float] = []
    other: list[float] = []
    for s in MAG7:
        bars = market.bars(s, YEAR_START, YEAR_END, "1d")
        days = [t.date() for t in bars.times]
        gaps = np.abs(np.log(bars.open[1:] / bars.close[:-1]))
        dates = set(market.earnings_dates(s, days[1], days[-1]))
        for day, gap in zip(days[1:], gaps, strict=True):
            (earnings if day in dates else other).append(gap)
    assert len(earnings) >= 28
    assert np.mean(earnings) > 3.0 * np.mean(other)


def test_iv_history_when_earnings_then_higher_before_than_after(
    market: SimulatedMarket,
) -> None:
    ratios = []
    for s in MAG7:
        days, ivs = market.atm_iv_history(s, REGULAR_DAY, 260)
        for e in market.earnings_dates(s, days[1], days[-1]):
            i = days.index(e)
            ratios.append(ivs[i - 1] / ivs[i])
    assert len(ratios) >= 28
    assert np.mean(ratios) > 1.1
    assert np.mean(np.array(ratios) > 1.0) >= 0.85


def test_chain_when_expiry_spans_earnings_then_iv_crushed_after(market: SimulatedMarket) -> None:
    crushed = 0
    events = market.earnings_events("META", date(2026, 1, 1), date(2026, 12, 31))
    for event in events:
        before = previous_trading_day(event.session)
        expiry = next(e for e in market.expiries("META", before) if e > event.session)
        iv_before = atm_iv(market.chain("META", expiry, at_time(before, 15, 0)))
        iv_after = atm_iv(market.chain("META", expiry, at_time(event.session, 10, 0)))
        crushed += iv_before > 1.15 * iv_after
    assert crushed == len(events) == 4


# -- IV history -----------------------------------------------------------------------------------


def test_iv_history_when_requested_then_a_year_and_more_of_positive_values(
    market: SimulatedMarket,
) -> None:
    days, ivs = market.atm_iv_history("GOOGL", REGULAR_DAY, 300)
    assert len(days) == len(ivs) == 300
    assert days[-1] == REGULAR_DAY and days == tuple(sorted(days))
    assert all(is_trading_day(d) for d in days)
    assert np.all((ivs > 0.08) & (ivs < 1.5))
    assert ivs.max() > 1.3 * ivs.min()  # enough variation for an IV rank
    weekend_days, _ = market.atm_iv_history("GOOGL", date(2026, 11, 22), 5)
    assert weekend_days[-1] == FRIDAY


@pytest.mark.parametrize("symbol", ["AAPL", "NVDA", "META", "SPY"])
def test_iv_history_when_compared_to_chain_at_close_then_same_vol_model(
    market: SimulatedMarket, symbol: str
) -> None:
    day, expiry = date(2026, 10, 16), date(2026, 11, 13)  # the expiry 28 days out = the 30d node
    snap = market.chain(symbol, expiry, at_time(day, 15, 59, 59))
    _, ivs = market.atm_iv_history(symbol, day, 1)
    assert atm_iv(snap) == pytest.approx(float(ivs[-1]), abs=0.003)


def test_iv_history_when_bad_symbol_then_market_data_error(market: SimulatedMarket) -> None:
    with pytest.raises(MarketDataError):
        market.atm_iv_history("VIX", REGULAR_DAY, 10)
    with pytest.raises(MarketDataError):
        market.atm_iv_history("XYZ", REGULAR_DAY, 10)
    with pytest.raises(MarketDataError):
        market.earnings_dates("SPY", date(2026, 1, 1), date(2026, 12, 31))


# -- determinism ----------------------------------------------------------------------------------


def test_stock_data_when_same_seed_in_any_call_order_then_bit_identical() -> None:
    first, second = SimulatedMarket(11), SimulatedMarket(11)
    at = at_time(REGULAR_DAY, 14, 0)
    # the second instance looks at other days, names and history first
    second.chain("TSLA", date(2026, 12, 4), at_time(date(2026, 11, 30), 12, 0))
    second.atm_iv_history("NVDA", date(2027, 2, 1), 50)
    second.bars("META", datetime(2026, 3, 2, tzinfo=NY), datetime(2026, 5, 1, tzinfo=NY), "1d")
    full_day(second, "SPY", date(2026, 11, 23))
    for s in ("AAPL", "NVDA"):
        a, b = full_day(first, s, REGULAR_DAY), full_day(second, s, REGULAR_DAY)
        for name in ("open", "high", "low", "close", "volume"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), (s, name)
        c1 = first.chain(s, date(2026, 12, 4), at)
        c2 = second.chain(s, date(2026, 12, 4), at)
        assert np.array_equal(c1.bid, c2.bid) and np.array_equal(c1.ask, c2.ask)
        assert np.array_equal(c1.open_interest, c2.open_interest) and c1.spot == c2.spot
        y1 = first.bars(s, YEAR_START, YEAR_END, "1d")
        y2 = second.bars(s, YEAR_START, YEAR_END, "1d")
        assert np.array_equal(y1.close, y2.close) and np.array_equal(y1.high, y2.high)
        d1, iv1 = first.atm_iv_history(s, REGULAR_DAY, 100)
        d2, iv2 = second.atm_iv_history(s, REGULAR_DAY, 100)
        assert d1 == d2 and np.array_equal(iv1, iv2)
        span = (date(2025, 1, 1), date(2027, 12, 31))
        assert first.earnings_events(s, *span) == second.earnings_events(s, *span)


def test_stock_data_when_different_seed_then_different_paths_and_calendar() -> None:
    a, b = SimulatedMarket(1), SimulatedMarket(2)
    assert a.prior_close("AAPL", REGULAR_DAY) != b.prior_close("AAPL", REGULAR_DAY)
    span = (date(2026, 1, 1), date(2027, 12, 31))
    assert a.earnings_dates("AAPL", *span) != b.earnings_dates("AAPL", *span) or (
        a.earnings_dates("MSFT", *span) != b.earnings_dates("MSFT", *span)
    )


# -- configuration --------------------------------------------------------------------------------


def test_config_when_subset_of_stocks_then_only_those_simulated() -> None:
    stocks = Mag7MarketConfig().stocks
    subset = Mag7MarketConfig(stocks={s: stocks[s] for s in ("AAPL", "TSLA")})
    m = SimulatedMarket(2, SimulatorConfig(mag7=subset))
    assert m.symbols == ("SPY", "QQQ", "IWM", "VIX", "AAPL", "TSLA")
    assert m.prior_close("TSLA", REGULAR_DAY) > 0
    with pytest.raises(MarketDataError):
        m.prior_close("NVDA", REGULAR_DAY)


def test_config_when_inconsistent_mag7_numbers_then_value_error() -> None:
    spec = Mag7MarketConfig().stocks["AAPL"]
    with pytest.raises(ValueError, match="market_symbol"):
        SimulatorConfig(mag7=Mag7MarketConfig(market_symbol="DIA"))
    with pytest.raises(ValueError, match="clash"):
        SimulatorConfig(mag7=Mag7MarketConfig(stocks={"SPY": spec}))
    with pytest.raises(ValueError, match="loadings"):
        dataclasses.replace(spec, market_loading=0.9, sector_loading=0.5)
    with pytest.raises(ValueError, match="strike_steps"):
        Mag7MarketConfig(strike_steps=((100.0, 1.0),))
