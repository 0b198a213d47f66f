from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from core.calendar import NY, session
from core.chains import LiquidityRules, analyze_chain
from core.marketdata import Bars
from core.models import Direction, SignalKind, StructureKind
from systems.smart0dte.config import DEFAULT
from systems.smart0dte.signals import (
    Regime,
    UnderlyingView,
    classify_regime,
    divergence,
    momentum,
    realized_vol,
    volatility,
)
from systems.smart0dte.strategy import BookEntry, plan_entries
from tests.builders import AT, CLOSE, DAY, make_bars, make_chain

SESSION = session(DAY)
MAX_POS = Decimal("5000")


def view(closes, symbol="SPY", vol=0.15, at=AT, chain=True):
    bars = make_bars(closes, symbol)
    analysis = None
    if chain:
        snap = make_chain(spot=float(closes[-1]), vol=vol, at=at, und=symbol)
        analysis = analyze_chain(snap, CLOSE, LiquidityRules())
    return UnderlyingView(symbol, bars, float(closes[0]), analysis, "" if chain else "missing")


def rising(n=60, start=590.0, end=594.0):
    return np.linspace(start, end, n)


@pytest.mark.parametrize(
    ("vix", "regime"),
    [
        (14.99, Regime.LOW),
        (15.0, Regime.NORMAL),
        (24.99, Regime.NORMAL),
        (25.0, Regime.HIGH),
        (29.99, Regime.HIGH),
        (30.0, Regime.NO_ENTRY),
    ],
)
def test_classify_regime_when_vix_at_boundaries_then_band(vix, regime):
    assert classify_regime(vix, DEFAULT.regime) is regime


def test_classify_regime_when_vix_nan_then_error():
    with pytest.raises(ValueError, match="VIX"):
        classify_regime(float("nan"), DEFAULT.regime)


def test_momentum_when_move_beyond_half_implied_and_recent_agrees_then_bullish_capped():
    sig = momentum(view(rising()), DEFAULT.momentum)
    assert sig is not None
    assert sig.kind is SignalKind.MOMENTUM
    assert sig.direction is Direction.BULLISH
    assert sig.confidence == pytest.approx(0.9)


def test_momentum_when_last_15_minutes_disagree_then_no_signal():
    closes = np.concatenate([rising(45, 590, 595), np.linspace(595, 594, 15)])
    assert momentum(view(closes), DEFAULT.momentum) is None


def test_momentum_when_move_small_vs_implied_then_no_signal():
    closes = rising(60, 590.0, 590.05)
    assert momentum(view(closes, vol=0.60), DEFAULT.momentum) is None


def test_momentum_when_confidence_then_rises_with_ratio():
    cfg = DEFAULT.momentum
    v = view(rising(60, 590.0, 591.0))
    sig = momentum(v, cfg)
    assert v.analysis is not None
    ratio = abs(591.0 / 590.0 - 1) / v.analysis.implied_move()
    assert sig is not None
    assert sig.confidence == pytest.approx(min(0.9, 0.5 + 0.3 * ratio))


def _pair(seed=3, n=80, jump=0.004):
    rng = np.random.default_rng(seed)
    common = np.cumsum(rng.normal(0, 0.0004, n))
    spy = 590 * np.exp(common + np.cumsum(rng.normal(0, 0.00005, n)))
    qqq_ret = common + np.cumsum(rng.normal(0, 0.00005, n))
    qqq_ret[-8:] += np.linspace(jump / 8, jump, 8)
    qqq = 510 * np.exp(qqq_ret)
    return spy, qqq


def test_divergence_when_qqq_breaks_away_up_then_spy_laggard_bullish():
    spy, qqq = _pair()
    views = {"SPY": view(spy, "SPY", chain=False), "QQQ": view(qqq, "QQQ", chain=False)}
    sigs = divergence(views, DEFAULT.divergence)
    assert len(sigs) == 1
    assert sigs[0].underlying == "SPY"
    assert sigs[0].direction is Direction.BULLISH
    assert 0.5 <= sigs[0].confidence <= 0.9


def test_divergence_when_pair_uncorrelated_then_no_signal():
    rng = np.random.default_rng(11)
    spy = 590 * np.exp(np.cumsum(rng.normal(0, 0.0005, 80)))
    qqq = 510 * np.exp(np.cumsum(rng.normal(0, 0.0005, 80)))
    qqq[-5:] *= 1.01
    views = {"SPY": view(spy, "SPY", chain=False), "QQQ": view(qqq, "QQQ", chain=False)}
    assert divergence(views, DEFAULT.divergence) == []


def test_divergence_when_too_few_bars_then_no_signal():
    spy, qqq = _pair(n=40)
    views = {"SPY": view(spy, "SPY", chain=False), "QQQ": view(qqq, "QQQ", chain=False)}
    assert divergence(views, DEFAULT.divergence) == []


def test_divergence_when_one_series_misses_a_minute_then_pairs_on_common_times():
    spy, qqq = _pair()
    full = {"SPY": view(spy, "SPY", chain=False), "QQQ": view(qqq, "QQQ", chain=False)}
    bars = full["QQQ"].bars
    keep = [i for i in range(len(bars)) if i != 30]  # QQQ printed no bar at 10:00
    gappy = Bars(
        "QQQ",
        tuple(bars.times[i] for i in keep),
        bars.open[keep],
        bars.high[keep],
        bars.low[keep],
        bars.close[keep],
        bars.volume[keep],
    )
    views = {**full, "QQQ": UnderlyingView("QQQ", gappy, float(qqq[0]), None, "missing")}
    spy_without = {**full, "SPY": view(np.delete(spy, 30), "SPY", chain=False)}
    spy_without["QQQ"] = view(np.delete(qqq, 30), "QQQ", chain=False)

    # the same closes paired on the 79 common minutes, whatever their clock times
    assert divergence(views, DEFAULT.divergence) == divergence(spy_without, DEFAULT.divergence)
    assert len(divergence(views, DEFAULT.divergence)) == 1


def test_realized_vol_when_constant_step_noise_then_annualised_on_calendar_minutes():
    rng = np.random.default_rng(1)
    rets = rng.normal(0, 0.0002, 31)
    closes = 100 * np.exp(np.concatenate([[0.0], np.cumsum(rets)]))
    rv = realized_vol(closes, 30)
    assert rv == pytest.approx(np.std(rets[-30:], ddof=1) * np.sqrt(525600), rel=1e-9)


def test_volatility_when_quiet_tape_and_normal_regime_then_contraction_condor_signal():
    closes = 590 + 0.01 * np.sin(np.arange(60))
    sig = volatility(view(closes, vol=0.15), 18.0, 18.0, Regime.NORMAL, DEFAULT.volatility)
    assert sig is not None
    assert sig.kind is SignalKind.VOL_CONTRACTION


def test_volatility_when_high_regime_then_no_contraction():
    closes = 590 + 0.01 * np.sin(np.arange(60))
    assert volatility(view(closes), 26.0, 26.0, Regime.HIGH, DEFAULT.volatility) is None


def test_volatility_when_vix_up_5pct_then_expansion_straddle_signal():
    closes = 590 + 0.01 * np.sin(np.arange(60))
    sig = volatility(view(closes), 19.0, 18.0, Regime.NORMAL, DEFAULT.volatility)
    assert sig is not None
    assert sig.kind is SignalKind.VOL_EXPANSION


def test_plan_entries_when_momentum_then_bull_call_debit_sized_by_budget():
    plan = plan_entries(AT, SESSION, {"SPY": view(rising())}, 18.0, 18.0, [], MAX_POS, DEFAULT)
    assert plan.regime is Regime.NORMAL
    entries = [e for e in plan.entries if e.signal.kind is SignalKind.MOMENTUM]
    assert len(entries) == 1
    e = entries[0]
    assert e.spread.kind is StructureKind.BULL_CALL_DEBIT
    long_k, short_k = (leg.contract.strike for leg in e.spread.legs)
    assert long_k < short_k
    budget = MAX_POS * Decimal("1.0") * Decimal("1.3")
    expected = int(min(budget, MAX_POS) // e.max_loss_per_contract)
    assert e.quantity == expected
    assert e.max_loss_per_contract == e.quote.ask * 100


def test_plan_entries_when_falling_then_bear_put_debit_long_higher_strike():
    closes = np.linspace(594, 590, 60)
    plan = plan_entries(AT, SESSION, {"SPY": view(closes)}, 18.0, 18.0, [], MAX_POS, DEFAULT)
    e = next(e for e in plan.entries if e.signal.kind is SignalKind.MOMENTUM)
    assert e.spread.kind is StructureKind.BEAR_PUT_DEBIT
    assert e.spread.legs[0].contract.strike > e.spread.legs[1].contract.strike


def test_plan_entries_when_after_cutoff_then_signals_but_no_entries():
    late = datetime(2026, 11, 27, 12, 0, tzinfo=NY)  # early close: cut-off 12:00
    plan = plan_entries(late, SESSION, {"SPY": view(rising())}, 18.0, 18.0, [], MAX_POS, DEFAULT)
    assert plan.signals
    assert plan.entries == ()


def test_plan_entries_when_vix_30_then_no_entries_with_reason():
    plan = plan_entries(AT, SESSION, {"SPY": view(rising())}, 30.0, 30.0, [], MAX_POS, DEFAULT)
    assert plan.entries == ()
    assert any("no new entries" in s.reason for s in plan.skips)


def test_plan_entries_when_same_kind_open_on_underlying_then_skipped():
    book = [BookEntry("SPY", SignalKind.MOMENTUM, AT - timedelta(hours=1), is_open=True)]
    plan = plan_entries(AT, SESSION, {"SPY": view(rising())}, 18.0, 18.0, book, MAX_POS, DEFAULT)
    assert not [e for e in plan.entries if e.signal.kind is SignalKind.MOMENTUM]
    assert any("already open" in s.reason for s in plan.skips)


def test_plan_entries_when_recent_entry_then_cooldown_skips():
    book = [BookEntry("SPY", SignalKind.MOMENTUM, AT - timedelta(minutes=5), is_open=False)]
    plan = plan_entries(AT, SESSION, {"SPY": view(rising())}, 18.0, 18.0, book, MAX_POS, DEFAULT)
    assert not [e for e in plan.entries if e.signal.kind is SignalKind.MOMENTUM]


def test_plan_entries_when_chain_missing_then_no_trade_on_it_and_reason():
    v = view(rising(), chain=False)
    plan = plan_entries(AT, SESSION, {"SPY": v}, 18.0, 18.0, [], MAX_POS, DEFAULT)
    assert plan.entries == ()
    assert any("no same-day chain" in s.reason for s in plan.skips)


def test_plan_entries_when_high_regime_then_budget_scaled_down():
    normal = plan_entries(AT, SESSION, {"SPY": view(rising())}, 18.0, 18.0, [], MAX_POS, DEFAULT)
    high = plan_entries(AT, SESSION, {"SPY": view(rising())}, 26.0, 26.0, [], MAX_POS, DEFAULT)
    qn = next(e.quantity for e in normal.entries if e.signal.kind is SignalKind.MOMENTUM)
    qh = next(e.quantity for e in high.entries if e.signal.kind is SignalKind.MOMENTUM)
    assert qh < qn


def test_config_with_overrides_when_unknown_key_then_error():
    assert DEFAULT.with_overrides({"confidence_threshold": 0.7}).confidence_threshold == 0.7
    with pytest.raises(ValueError, match="unknown"):
        DEFAULT.with_overrides({"confidence_treshold": 0.7})


def _series(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    if kind == "constant":
        return np.full(n, 0.0007)
    if kind == "nan":
        out = rng.normal(0, 1e-3, n)
        out[n // 2] = np.nan
        return out
    return rng.normal(rng.uniform(-1e-3, 1e-3), rng.uniform(1e-5, 1e-2), n)


@pytest.mark.parametrize("n", [2, 3, 7, 8, 9, 30, 60, 127, 128, 129, 391])
def test_signal_statistics_when_computed_by_hand_then_bit_identical_to_numpy(n: int) -> None:
    # the divergence and realised-vol statistics skip numpy's argument handling (hot in the
    # loop); they must stay numpy's numbers to the last bit, NaN and constant series included
    from systems.smart0dte.signals import _corr, _std

    rng = np.random.default_rng(n)
    for kind_x, kind_y in [("random", "random")] * 20 + [
        ("constant", "random"),
        ("random", "constant"),
        ("nan", "random"),
    ]:
        x, y = _series(rng, n, kind_x), _series(rng, n, kind_y)
        if rng.random() < 0.5:
            y = 0.6 * x + 0.4 * y  # correlated pairs too
        with np.errstate(invalid="ignore", divide="ignore"):
            for ddof in (0, 1):
                want = float(np.std(x, ddof=ddof))
                assert repr(_std(x, ddof)) == repr(want), (kind_x, ddof)
            constant = np.std(x) == 0 or np.std(y) == 0
            want_r = 0.0 if constant else float(np.corrcoef(x, y)[0, 1])
        assert repr(_corr(x, y)) == repr(want_r), (kind_x, kind_y)
