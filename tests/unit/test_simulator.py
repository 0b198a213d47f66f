"""The seeded synthetic market (adapters.simulator): shapes, determinism, realism, listings, faults."""

from __future__ import annotations

import dataclasses
import time as clock
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import numpy as np
import pytest

from adapters.ports import MarketData, MarketDataError
from adapters.simulator import SimulatedMarket, SimulatorConfig
from core.calendar import NY, session, trading_days
from core.marketdata import Bars, BoolArray, ChainSnapshot, FloatArray
from core.models import OptionContract, Right
from core.pricing import implied_vol, year_fraction

REGULAR_DAY = date(2026, 11, 24)  # a Tuesday
EARLY_CLOSE = date(2026, 11, 27)  # Friday after Thanksgiving, closes 13:00
THANKSGIVING = date(2026, 11, 26)
GOOD_FRIDAY = date(2026, 4, 3)
ETFS = ("SPY", "QQQ", "IWM")


@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return SimulatedMarket(seed=7)


def at_time(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), tzinfo=NY)


def full_day(m: SimulatedMarket, symbol: str, day: date) -> Bars:
    s = session(day)
    return m.bars(symbol, s.open, s.close)


def spy_chain(
    m: SimulatedMarket, day: date = REGULAR_DAY, hh: int = 10, mm: int = 30
) -> ChainSnapshot:
    return m.chain("SPY", day, at_time(day, hh, mm))


def otm_rows(snap: ChainSnapshot) -> BoolArray:
    rows: BoolArray = np.where(snap.is_call, snap.strikes > snap.spot, snap.strikes < snap.spot)
    return rows


# -- the port -----------------------------------------------------------------------------------


def test_isinstance_when_simulated_market_then_implements_market_data_port(
    market: SimulatedMarket,
) -> None:
    assert isinstance(market, MarketData)


# -- determinism --------------------------------------------------------------------------------


def test_bars_and_chain_when_same_seed_in_any_call_order_then_bit_identical() -> None:
    first, second = SimulatedMarket(11), SimulatedMarket(11)
    at = at_time(REGULAR_DAY, 11, 15, 30)
    # the second instance visits other days and symbols first
    second.chain("QQQ", EARLY_CLOSE, at_time(EARLY_CLOSE, 10, 0))
    full_day(second, "IWM", date(2026, 11, 23))
    second.prior_close("SPY", date(2026, 2, 2))
    for symbol in (*ETFS, "VIX"):
        a, b = full_day(first, symbol, REGULAR_DAY), full_day(second, symbol, REGULAR_DAY)
        for name in ("open", "high", "low", "close", "volume"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), (symbol, name)
        assert a.times == b.times
    c1, c2 = first.chain("SPY", REGULAR_DAY, at), second.chain("SPY", REGULAR_DAY, at)
    assert np.array_equal(c1.bid, c2.bid)
    assert np.array_equal(c1.ask, c2.ask)
    assert np.array_equal(c1.open_interest, c2.open_interest)
    assert c1.spot == c2.spot


def test_bars_when_different_seed_then_different_paths() -> None:
    a = full_day(SimulatedMarket(1), "SPY", REGULAR_DAY)
    b = full_day(SimulatedMarket(2), "SPY", REGULAR_DAY)
    assert not np.array_equal(a.close, b.close)


def test_prior_close_when_dates_differ_then_levels_differ(market: SimulatedMarket) -> None:
    levels = {
        market.prior_close("SPY", d) for d in trading_days(date(2026, 6, 1), date(2026, 6, 12))
    }
    assert len(levels) == 10


# -- bars ---------------------------------------------------------------------------------------


def test_bars_when_regular_day_then_390_minute_bars_from_open_to_close(
    market: SimulatedMarket,
) -> None:
    bars = full_day(market, "SPY", REGULAR_DAY)
    assert len(bars) == 390
    assert bars.times[0] == at_time(REGULAR_DAY, 9, 30)
    assert bars.times[-1] == at_time(REGULAR_DAY, 15, 59)
    assert all(t.tzinfo is not None for t in bars.times)


def test_bars_when_early_close_day_then_210_bars_ending_at_13_00(market: SimulatedMarket) -> None:
    bars = full_day(market, "QQQ", EARLY_CLOSE)
    assert len(bars) == 210
    assert bars.times[-1] == at_time(EARLY_CLOSE, 12, 59)
    assert len(market.bars("QQQ", at_time(EARLY_CLOSE, 0, 0), at_time(EARLY_CLOSE, 23, 0))) == 210


def test_bars_when_holiday_then_empty(market: SimulatedMarket) -> None:
    bars = market.bars("SPY", at_time(THANKSGIVING, 0, 0), at_time(THANKSGIVING, 23, 59))
    assert len(bars) == 0
    with pytest.raises(MarketDataError):
        market.chain("SPY", EARLY_CLOSE, at_time(THANKSGIVING, 10, 0))


def test_bars_when_end_mid_minute_then_only_completed_bars(market: SimulatedMarket) -> None:
    s = session(REGULAR_DAY)
    bars = market.bars("SPY", s.open, at_time(REGULAR_DAY, 10, 0, 30))
    assert len(bars) == 30
    assert bars.times[-1] == at_time(REGULAR_DAY, 9, 59)
    assert len(market.bars("SPY", s.open, at_time(REGULAR_DAY, 9, 30, 59))) == 0


def test_bars_when_generated_then_ohlc_consistent_and_volume_positive(
    market: SimulatedMarket,
) -> None:
    for symbol in (*ETFS, "VIX"):
        b = full_day(market, symbol, REGULAR_DAY)
        assert np.all(b.low <= np.minimum(b.open, b.close))
        assert np.all(b.high >= np.maximum(b.open, b.close))
        assert np.all(b.low > 0)
        assert np.array_equal(b.open[1:], b.close[:-1])
        if symbol == "VIX":
            assert np.all(b.volume == 0)  # an index has no volume
        else:
            assert np.all(b.volume > 0)


def test_prior_close_when_next_session_then_equals_last_minute_close(
    market: SimulatedMarket,
) -> None:
    for symbol in (*ETFS, "VIX"):
        last = full_day(market, symbol, EARLY_CLOSE).close[-1]
        assert market.prior_close(symbol, date(2026, 11, 30)) == last
        assert market.last_price(symbol, at_time(EARLY_CLOSE, 15, 0)) == last
    before_open = market.last_price("SPY", at_time(REGULAR_DAY, 8, 0))
    assert before_open == market.prior_close("SPY", REGULAR_DAY)


def test_daily_bars_when_requested_then_match_intraday_simulation(market: SimulatedMarket) -> None:
    start, end = at_time(date(2026, 11, 23), 0, 0), at_time(date(2026, 11, 28), 0, 0)
    daily = market.bars("IWM", start, end, freq="1d")
    assert [t.date() for t in daily.times] == [
        date(2026, 11, 23),
        date(2026, 11, 24),
        date(2026, 11, 25),
        EARLY_CLOSE,
    ]
    minute = full_day(market, "IWM", EARLY_CLOSE)
    assert daily.open[-1] == minute.open[0]
    assert daily.close[-1] == minute.close[-1]
    assert daily.high[-1] == minute.high.max()
    assert daily.low[-1] == minute.low.min()
    assert daily.volume[-1] == minute.volume.sum()


def test_bars_when_unknown_symbol_or_frequency_then_market_data_error(
    market: SimulatedMarket,
) -> None:
    s = session(REGULAR_DAY)
    with pytest.raises(MarketDataError):
        market.bars("GME", s.open, s.close)  # TSLA is a simulated stock now
    with pytest.raises(MarketDataError):
        market.bars("SPY", s.open, s.close, freq="5min")


# -- realism of the paths -----------------------------------------------------------------------


def _pooled_returns(seeds: range, days: list[date]) -> dict[str, FloatArray]:
    out: dict[str, list[FloatArray]] = {sym: [] for sym in (*ETFS, "VIX")}
    for seed in seeds:
        m = SimulatedMarket(seed)
        for day in days:
            for sym, parts in out.items():
                parts.append(np.diff(np.log(full_day(m, sym, day).close)))
    return {sym: np.concatenate(parts) for sym, parts in out.items()}


def test_returns_when_pooled_over_seeds_then_correlations_near_configured() -> None:
    rets = _pooled_returns(range(1, 7), [date(2026, 3, 9), date(2026, 3, 10)])
    corr = np.corrcoef([rets[s] for s in ("SPY", "QQQ", "IWM", "VIX")])
    assert corr[0, 1] == pytest.approx(0.90, abs=0.07)
    assert corr[0, 2] == pytest.approx(0.80, abs=0.08)
    assert corr[1, 2] == pytest.approx(0.75, abs=0.08)
    assert corr[0, 3] == pytest.approx(-0.70, abs=0.12)


def test_variance_when_pooled_over_seeds_then_u_shaped_intraday() -> None:
    first, mid, last = [], [], []
    for seed in range(1, 9):
        r = np.diff(np.log(full_day(SimulatedMarket(seed), "SPY", date(2026, 3, 11)).close))
        first.append(np.mean(r[:30] ** 2))
        mid.append(np.mean(r[150:270] ** 2))
        last.append(np.mean(r[-30:] ** 2))
    assert np.mean(first) > 1.3 * np.mean(mid)
    assert np.mean(last) > 1.2 * np.mean(mid)


def test_day_info_when_seeds_1_to_20_then_regimes_and_divergences_vary() -> None:
    regimes, episodes = set(), 0
    for seed in range(1, 21):
        info = SimulatedMarket(seed).day_info(date(2026, 1, 14))
        regimes.add(info.regime)
        episodes += info.divergence is not None
    assert len(regimes) >= 3
    assert 0 < episodes < 20


def test_paths_when_divergence_episode_then_laggard_trails_then_catches_up() -> None:
    found = 0
    for seed in range(1, 30):
        m = SimulatedMarket(seed)
        info = m.day_info(date(2026, 1, 14))
        ep = info.divergence
        if ep is None:
            continue
        s = session(info.day)
        start = int((ep.start - s.open).total_seconds() // 60)
        end = int((ep.caught_up - s.open).total_seconds() // 60)
        moves = {}
        for sym in ETFS:
            c = full_day(m, sym, info.day).close
            moves[sym] = np.log(c[end - 5] / c[start - 1])
        leaders = [moves[sym] for sym in ETFS if sym != ep.laggard]
        # relative to the leaders, the laggard has done less in the episode's direction
        if ep.direction * (np.mean(leaders) - moves[ep.laggard]) > 0:
            found += 1
        if found >= 3:
            break
    assert found >= 3


# -- chains: surface and quotes -------------------------------------------------------------------


def test_chain_when_before_first_bar_completes_then_spot_is_session_open(
    market: SimulatedMarket,
) -> None:
    bars = full_day(market, "SPY", REGULAR_DAY)
    assert spy_chain(market, hh=9, mm=30).spot == bars.open[0]
    snap = market.chain("SPY", REGULAR_DAY, at_time(REGULAR_DAY, 10, 0, 30))
    assert snap.spot == bars.close[29]  # the 09:59 bar is the last completed one
    assert market.last_price("SPY", at_time(REGULAR_DAY, 10, 0, 30)) == snap.spot


def test_chain_when_priced_then_bid_not_above_ask_and_never_negative(
    market: SimulatedMarket,
) -> None:
    for underlying in ETFS:
        snap = market.chain(underlying, EARLY_CLOSE, at_time(EARLY_CLOSE, 11, 0))
        assert np.all(snap.bid >= 0)
        assert np.all(snap.bid < snap.ask)
        assert np.all(np.isfinite(snap.bid) & np.isfinite(snap.ask))
        cents = np.concatenate([snap.bid, snap.ask]) * 100
        assert np.allclose(cents, np.round(cents))


def test_chain_when_priced_then_otm_put_iv_exceeds_otm_call_iv(market: SimulatedMarket) -> None:
    at = at_time(REGULAR_DAY, 10, 30)
    snap = market.chain("SPY", REGULAR_DAY, at)
    t = year_fraction(at, session(REGULAR_DAY).close)
    iv = implied_vol(snap.mid, snap.spot, snap.strikes, t, snap.is_call).iv
    atm = round(snap.spot)
    for distance in (2.0, 4.0, 6.0):
        put = np.nonzero(~snap.is_call & (snap.strikes == atm - distance))[0][0]
        call = np.nonzero(snap.is_call & (snap.strikes == atm + distance))[0][0]
        assert iv[put] > iv[call]


def test_chain_when_atm_iv_then_tied_to_vix_and_ordered_spy_qqq_iwm(
    market: SimulatedMarket,
) -> None:
    at = at_time(EARLY_CLOSE, 10, 0)
    close = session(EARLY_CLOSE).close
    t = year_fraction(at, close)
    atm_iv = {}
    for underlying in ETFS:
        snap = market.chain(underlying, EARLY_CLOSE, at)
        iv = implied_vol(snap.mid, snap.spot, snap.strikes, t, snap.is_call).iv
        nearest = np.argsort(np.abs(snap.strikes - snap.spot))[:2]
        atm_iv[underlying] = float(np.mean(iv[nearest]))
    assert atm_iv["SPY"] < atm_iv["QQQ"] < atm_iv["IWM"]
    vix = market.last_price("VIX", at)
    # calendar-time 0DTE IV exceeds VIX/100 (the remaining session's variance over a few hours)
    assert vix / 100 < atm_iv["SPY"] < 6 * vix / 100


def test_chain_when_away_from_atm_then_relative_spread_wider(market: SimulatedMarket) -> None:
    snap = spy_chain(market)
    calls = snap.is_call & (snap.strikes > snap.spot) & (snap.bid > 0)
    strikes = snap.strikes[calls]
    rel = ((snap.ask - snap.bid) / snap.mid)[calls]
    assert rel[-1] > 3 * rel[0]  # farthest quoted OTM call vs the nearest
    assert np.corrcoef(strikes, rel)[0, 1] > 0.5


def test_chain_when_far_otm_then_bid_zero_and_ask_a_few_cents(market: SimulatedMarket) -> None:
    snap = spy_chain(market)
    far = np.abs(snap.strikes / snap.spot - 1.0) > 0.04
    far_otm = far & otm_rows(snap)
    assert far_otm.sum() > 10
    assert np.all(snap.bid[far_otm] == 0.0)
    assert np.all((snap.ask[far_otm] >= 0.01) & (snap.ask[far_otm] <= 0.05))
    assert np.any(snap.bid > 0)


def test_chain_when_calls_by_strike_then_mids_decrease_and_convex(market: SimulatedMarket) -> None:
    snap = spy_chain(market)
    for is_call in (True, False):
        rows = (snap.is_call == is_call) & (snap.bid > 0)
        mids = snap.mid[rows]
        tol = 0.015
        diffs = np.diff(mids)
        if is_call:
            assert np.all(diffs <= tol)
        else:
            assert np.all(diffs >= -tol)
        assert np.all(np.diff(diffs) >= -2 * tol)  # convex in strike, up to tick rounding


def test_chain_when_mids_then_put_call_parity_roughly_holds(market: SimulatedMarket) -> None:
    snap = spy_chain(market)
    calls = snap.is_call & (snap.bid > 0)
    puts = ~snap.is_call & (snap.bid > 0)
    both = np.intersect1d(snap.strikes[calls], snap.strikes[puts])
    assert both.size > 5
    for k in both:
        c = np.nonzero(snap.is_call & (snap.strikes == k))[0][0]
        p = np.nonzero(~snap.is_call & (snap.strikes == k))[0][0]
        tolerance = (snap.ask[c] - snap.bid[c] + snap.ask[p] - snap.bid[p]) / 2 + 0.01
        assert abs(snap.mid[c] - snap.mid[p] - (snap.spot - k)) <= tolerance


def test_chain_when_open_interest_then_peaked_near_atm_with_thin_wings(
    market: SimulatedMarket,
) -> None:
    snap = spy_chain(market)
    near = np.abs(snap.strikes / snap.spot - 1.0) < 0.01
    wings = np.abs(snap.strikes / snap.spot - 1.0) > 0.06
    assert np.median(snap.open_interest[near]) > 10 * np.median(snap.open_interest[wings])
    assert np.any(snap.open_interest < 100)
    assert np.all(snap.open_interest >= 0)


def test_chain_when_strikes_then_one_dollar_grid_around_spot(market: SimulatedMarket) -> None:
    snap = spy_chain(market)
    grid = np.unique(snap.strikes)
    assert np.allclose(np.diff(grid), 1.0)
    ref = market.prior_close("SPY", REGULAR_DAY)
    assert grid[0] <= 0.93 * ref and grid[-1] >= 1.07 * ref
    assert len(snap) == 2 * grid.size


def test_quote_when_contract_listed_then_matches_chain_row(market: SimulatedMarket) -> None:
    at = at_time(REGULAR_DAY, 13, 7, 42)
    snap = market.chain("QQQ", REGULAR_DAY, at)
    i = int(np.argmin(np.abs(snap.strikes - snap.spot)))
    contract = snap.contract(i)
    assert market.quote(contract, at) == (float(snap.bid[i]), float(snap.ask[i]))
    unlisted = OptionContract("QQQ", REGULAR_DAY, Decimal("1.5"), Right.CALL)
    with pytest.raises(MarketDataError):
        market.quote(unlisted, at)


def test_chain_when_closer_to_expiry_then_atm_straddle_cheaper(market: SimulatedMarket) -> None:
    def straddle(hh: int, mm: int) -> float:
        snap = market.chain("SPY", REGULAR_DAY, at_time(REGULAR_DAY, hh, mm))
        k = float(snap.strikes[np.argmin(np.abs(snap.strikes - snap.spot))])
        rows = snap.strikes == k
        return float(snap.mid[rows].sum()) - abs(snap.spot - k)

    assert straddle(10, 0) > straddle(13, 0) > straddle(15, 45)


# -- listings -----------------------------------------------------------------------------------


def test_expiries_when_early_close_friday_then_spy_lists_same_day(market: SimulatedMarket) -> None:
    listed = market.expiries("SPY", EARLY_CLOSE)
    assert listed[0] == EARLY_CLOSE
    assert listed == sorted(listed)
    assert listed[-1] <= EARLY_CLOSE + timedelta(days=45)
    assert date(2026, 11, 30) in listed


def test_expiries_when_iwm_then_no_tuesday_and_no_holiday(market: SimulatedMarket) -> None:
    listed = market.expiries("IWM", date(2026, 11, 20))
    assert listed
    assert all(d.weekday() != 1 for d in listed)  # no Tuesday
    thursdays = [d for d in listed if d.weekday() == 3]
    # the Fridays Christmas and New Year's Day are holidays: their expiries move to Thursday
    assert thursdays == [date(2026, 12, 24), date(2026, 12, 31)]
    assert REGULAR_DAY not in listed
    with pytest.raises(MarketDataError):
        market.chain("IWM", REGULAR_DAY, at_time(REGULAR_DAY, 10, 0))


def test_expiries_when_holidays_in_range_then_never_listed(market: SimulatedMarket) -> None:
    for underlying in ETFS:
        listed = market.expiries(underlying, date(2026, 11, 16))
        assert THANKSGIVING not in listed
        assert date(2026, 12, 25) not in listed
        assert all(d.weekday() < 5 for d in listed)


def test_expiries_when_friday_is_a_holiday_then_iwm_expires_thursday(
    market: SimulatedMarket,
) -> None:
    listed = market.expiries("IWM", date(2026, 3, 30))
    assert GOOD_FRIDAY not in listed
    assert date(2026, 4, 2) in listed  # the Thursday before Good Friday
    assert date(2026, 3, 31) not in listed  # a Tuesday


def test_chain_when_invalid_request_then_market_data_error(market: SimulatedMarket) -> None:
    with pytest.raises(MarketDataError):
        market.chain("VIX", REGULAR_DAY, at_time(REGULAR_DAY, 10, 0))
    with pytest.raises(MarketDataError):
        market.chain("TSLA", REGULAR_DAY, at_time(REGULAR_DAY, 10, 0))
    with pytest.raises(MarketDataError):  # expired
        market.chain("SPY", date(2026, 11, 23), at_time(REGULAR_DAY, 10, 0))
    with pytest.raises(MarketDataError):  # before the open / at the close
        market.chain("SPY", REGULAR_DAY, at_time(REGULAR_DAY, 9, 29))
    with pytest.raises(MarketDataError):
        market.chain("SPY", REGULAR_DAY, at_time(REGULAR_DAY, 16, 0))
    with pytest.raises(MarketDataError):  # a weekend is not an expiry
        market.chain("SPY", date(2026, 11, 28), at_time(REGULAR_DAY, 10, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        market.chain("SPY", REGULAR_DAY, datetime(2026, 11, 24, 10, 0))  # noqa: DTZ001


# -- faults and gaps ----------------------------------------------------------------------------


def test_chain_when_fault_rate_set_then_all_four_fault_types_appear() -> None:
    m = SimulatedMarket(3, SimulatorConfig(fault_rate=0.2))
    snap = m.chain("SPY", REGULAR_DAY, at_time(REGULAR_DAY, 11, 0))
    nan_bid = np.isnan(snap.bid)
    zero_ask = snap.ask == 0
    negative = snap.bid < 0
    crossed = snap.bid > snap.ask
    for kind in (nan_bid, zero_ask, negative, crossed):
        assert kind.any()
    faulty = nan_bid | zero_ask | negative | crossed
    assert 0.05 < faulty.mean() < 0.4
    clean = SimulatedMarket(3).chain("SPY", REGULAR_DAY, at_time(REGULAR_DAY, 11, 0))
    assert np.array_equal(snap.bid[~faulty], clean.bid[~faulty])
    same = m.chain("SPY", REGULAR_DAY, at_time(REGULAR_DAY, 11, 0))
    assert np.array_equal(same.bid, snap.bid, equal_nan=True)


def test_chain_when_configured_missing_then_market_data_error_only_there() -> None:
    cfg = SimulatorConfig(missing_chains=frozenset({("QQQ", REGULAR_DAY)}))
    m = SimulatedMarket(5, cfg)
    at = at_time(REGULAR_DAY, 10, 0)
    with pytest.raises(MarketDataError, match="QQQ"):
        m.chain("QQQ", REGULAR_DAY, at)
    assert REGULAR_DAY in m.expiries("QQQ", REGULAR_DAY)
    assert len(m.chain("SPY", REGULAR_DAY, at)) > 0
    assert len(m.chain("QQQ", EARLY_CLOSE, at_time(EARLY_CLOSE, 10, 0))) > 0


def test_config_when_correlations_inconsistent_then_value_error() -> None:
    bad = {("SPY", "QQQ"): 0.95, ("SPY", "IWM"): 0.95, ("QQQ", "IWM"): -0.9}
    with pytest.raises(ValueError, match="positive definite"):
        SimulatorConfig(correlations=bad)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SimulatorConfig().fault_rate = 0.5  # type: ignore[misc]


# -- performance ---------------------------------------------------------------------------------


def test_chain_when_called_every_minute_then_fast(market: SimulatedMarket) -> None:
    s = session(REGULAR_DAY)
    market.chain("IWM", date(2026, 11, 25), s.open)  # build the day and the listing
    start = clock.perf_counter()
    n = 200
    for i in range(n):
        market.chain("IWM", date(2026, 11, 25), s.open + timedelta(minutes=i, seconds=17))
    per_call = (clock.perf_counter() - start) / n
    assert per_call < 0.005  # typically ~0.2 ms; generous for slow CI machines
