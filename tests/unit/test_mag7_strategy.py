"""Mag7 weekly cycle: entry day and expiry choice (normal week and Good Friday 2027), the entry
scan end to end (structures, gates, caps, correlation, IV method), and their reasons."""

from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pytest

from core.calendar import NY, session
from core.models import Direction, RiskLimits, SignalKind, StructureKind, SystemName
from core.spreads import bull_call_debit
from systems.mag7.config import DEFAULT
from systems.mag7.signals import IVMethod
from systems.mag7.sizing import SizingCap
from systems.mag7.strategy import (
    SymbolInputs,
    choose_expiry,
    earnings_in_life,
    entry_day_for_week,
    is_entry_day,
    plan_entries,
)
from tests.builders import c
from tests.unit.test_mag7_support import (
    ENTRY_AT,
    ENTRY_DAY,
    EXPIRY,
    at,
    daily_bars,
    mag7_position,
    smile_chain,
    zigzag,
)

GOOD_FRIDAY = date(2027, 3, 26)
GF_ENTRY = date(2027, 3, 25)
EQUITY = Decimal("100000")
LIMITS = RiskLimits()
LISTED = (date(2026, 3, 6), EXPIRY, date(2026, 3, 20), date(2026, 4, 17))

FLAT = np.full(260, 200.0)
DECLINE = np.concatenate([np.full(240, 200.0), 200.0 * np.exp(-0.004 * np.arange(1, 21))])
RANK_100 = np.linspace(0.20, 0.40, 252)  # today's 30d IV is the year's high
RANK_0 = RANK_100[::-1].copy()
RANK_40 = np.concatenate([np.linspace(0.20, 0.40, 251), [0.28]])


def inputs(
    symbol="AAPL",
    closes=FLAT,
    iv_history=RANK_100,
    listed=LISTED,
    expiry=EXPIRY,
    bars_end=date(2026, 3, 5),
    now=ENTRY_AT,
    earnings=(),
    chain=True,
    **smile,
):
    bars = daily_bars(closes, symbol, end=bars_end)
    chains = {}
    if chain:
        chains[expiry] = smile_chain(
            spot=float(closes[-1]), und=symbol, expiry=expiry, at=now, **smile
        )
    return SymbolInputs(symbol, bars, iv_history, tuple(listed), chains, tuple(earnings))


def plan(symbols, book=(), now=ENTRY_AT, equity=EQUITY, limits=LIMITS, cfg=DEFAULT):
    mapping = {s.symbol: s for s in symbols}
    return plan_entries(now, session(now.date()), mapping, list(book), equity, limits, cfg)


def skip_for(result, symbol):
    return [s.reason for s in result.skips if s.underlying == symbol]


def held(symbol, pid, max_loss="100"):
    spread = bull_call_debit(c(190, und=symbol, expiry=EXPIRY), c(200, und=symbol, expiry=EXPIRY))
    return mag7_position(spread, "2.00", pid=pid, max_loss=max_loss)


BULL_CREDIT = {"call_skew": 0.25}  # IV rank 100 (bullish) + call-rich skew (bullish)
BULL_DEBIT = {"closes": DECLINE, "iv_history": RANK_40, "call_skew": 0.25}  # RSI + skew, rank 40


# --------------------------------------------------------------------------- entry day


@pytest.mark.parametrize(
    ("day", "entry"),
    [
        (date(2026, 3, 2), date(2026, 3, 6)),  # Monday -> that week's Friday
        (date(2026, 3, 6), date(2026, 3, 6)),
        (date(2027, 3, 22), GF_ENTRY),  # Good Friday week -> Thursday
        (GOOD_FRIDAY, GF_ENTRY),
    ],
)
def test_entry_day_for_week_when_friday_or_holiday_then_friday_or_day_before(day, entry):
    assert entry_day_for_week(day, DEFAULT.entry_weekday) == entry


def test_is_entry_day_when_good_friday_week_then_thursday_only():
    assert is_entry_day(GF_ENTRY, DEFAULT)
    assert not is_entry_day(GOOD_FRIDAY, DEFAULT)
    assert not is_entry_day(date(2026, 3, 5), DEFAULT)


# --------------------------------------------------------------------------- expiry choice


def test_choose_expiry_when_normal_week_then_listed_seven_day_expiry():
    choice = choose_expiry(ENTRY_DAY, LISTED, DEFAULT)
    assert (choice.expiry, choice.dte) == (EXPIRY, 7)


def test_choose_expiry_when_good_friday_week_then_listed_friday_eight_days_out():
    # the weekly moved to Thursday 03-25 (0 DTE); 2027-04-01 (= today + 7) is not listed
    listed = (date(2027, 3, 25), date(2027, 4, 2), date(2027, 4, 9), date(2027, 4, 16))
    choice = choose_expiry(GF_ENTRY, listed, DEFAULT)
    assert (choice.expiry, choice.dte) == (date(2027, 4, 2), 8)


def test_choose_expiry_when_tie_around_seven_then_earlier():
    choice = choose_expiry(GF_ENTRY, (date(2027, 4, 2), date(2027, 3, 31)), DEFAULT)
    assert (choice.expiry, choice.dte) == (date(2027, 3, 31), 6)


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        ((date(2026, 3, 11), date(2026, 3, 16)), date(2026, 3, 11)),  # 5 beats 10
        ((date(2026, 3, 11),), date(2026, 3, 11)),  # 5 is inside
        ((date(2026, 3, 16),), date(2026, 3, 16)),  # 10 is inside
        ((date(2026, 3, 10), date(2026, 3, 17)), None),  # 4 and 11 are outside
    ],
)
def test_choose_expiry_when_dte_at_range_bounds_then_inclusive_5_to_10(listed, expected):
    assert choose_expiry(ENTRY_DAY, listed, DEFAULT).expiry == expected


def test_choose_expiry_when_none_in_range_then_no_entry_with_reason():
    choice = choose_expiry(ENTRY_DAY, (date(2026, 3, 6), date(2026, 3, 20)), DEFAULT)
    assert choice.expiry is None
    assert "no listed expiry 5..10 days after 2026-03-06" in choice.reason


def test_earnings_in_life_when_on_first_or_last_day_then_inside():
    assert earnings_in_life(ENTRY_DAY, EXPIRY, (ENTRY_DAY,)) == ENTRY_DAY
    assert earnings_in_life(ENTRY_DAY, EXPIRY, (EXPIRY,)) == EXPIRY
    assert earnings_in_life(ENTRY_DAY, EXPIRY, (date(2026, 3, 5), date(2026, 3, 14))) is None


# --------------------------------------------------------------------------- structures


def test_plan_entries_when_bullish_and_iv_rank_100_then_bull_put_credit_sized_by_budget():
    result = plan([inputs(**BULL_CREDIT)])
    (entry,) = result.entries
    assert entry.spread.kind is StructureKind.BULL_PUT_CREDIT
    assert entry.spread.expiry == EXPIRY
    assert entry.signal.signal_id == "mag7:2026-03-06:AAPL:bullish"
    assert entry.signal.kind is SignalKind.ENSEMBLE
    assert entry.signal.system is SystemName.MAG7
    assert entry.signal.confidence == pytest.approx(0.85)
    # budget 100000 x 2% x (0.5 + 0.85) = 2700; max loss per contract = (width - credit) x 100
    assert entry.sizing.budget == Decimal("2700.00")
    assert entry.quantity == int(Decimal("2700") // entry.max_loss_per_contract)
    assert entry.max_loss_per_contract == (Decimal("2.5") + entry.quote.ask) * 100
    assert any("iv_rank" in r for r in entry.reasons)


def test_plan_entries_when_bullish_and_iv_rank_40_then_bull_call_debit():
    (entry,) = plan([inputs(**BULL_DEBIT)]).entries
    assert entry.spread.kind is StructureKind.BULL_CALL_DEBIT
    assert entry.max_loss_per_contract == entry.quote.ask * 100


def test_plan_entries_when_bearish_and_iv_rank_0_then_bear_put_debit():
    (entry,) = plan([inputs(iv_history=RANK_0, put_skew=0.25)]).entries
    assert entry.signal.direction is Direction.BEARISH
    assert entry.spread.kind is StructureKind.BEAR_PUT_DEBIT


def test_plan_entries_when_no_majority_and_iv_rank_100_then_iron_condor():
    (entry,) = plan([inputs()]).entries
    assert entry.signal.direction is Direction.NEUTRAL
    assert entry.spread.kind is StructureKind.IRON_CONDOR
    assert entry.signal.confidence == pytest.approx(0.80)


def test_plan_entries_when_short_iv_history_then_fallback_method_reported():
    closes = zigzag(260, start=200.0)
    result = plan([inputs(closes=closes, iv_history=np.full(100, 0.2), call_skew=0.25)])
    (ev,) = result.evaluations
    assert ev.iv.method is IVMethod.IV_HV_RATIO
    (entry,) = result.entries
    assert any("IV method iv_hv_ratio" in r and "fallback" in r for r in entry.reasons)


def test_plan_entries_when_rerun_then_same_signal_ids():
    first = plan([inputs(**BULL_CREDIT)])
    second = plan([inputs(**BULL_CREDIT)], now=at(ENTRY_DAY, 11))
    assert [e.signal.signal_id for e in first.entries] == [
        e.signal.signal_id for e in second.entries
    ]


# --------------------------------------------------------------------------- gates


def test_plan_entries_when_not_the_entry_day_then_nothing_with_reason():
    now = datetime(2026, 3, 5, 10, tzinfo=NY)
    result = plan([inputs(**BULL_CREDIT)], now=now)
    assert result.entries == ()
    assert "not the entry day (this week's is 2026-03-06)" in skip_for(result, "*")[0]


def test_plan_entries_when_before_ten_then_outside_window():
    result = plan([inputs(**BULL_CREDIT)], now=at(ENTRY_DAY, 9, 45))
    assert result.entries == ()
    assert "entries run 10:00..15:00" in skip_for(result, "*")[0]


def test_plan_entries_when_good_friday_week_then_thursday_scan_picks_listed_april_2():
    now = datetime(2027, 3, 25, 10, tzinfo=NY)
    expiry = date(2027, 4, 2)
    listed = (GF_ENTRY, expiry, date(2027, 4, 9))
    sym = inputs(listed=listed, expiry=expiry, bars_end=date(2027, 3, 24), now=now, **BULL_CREDIT)
    (entry,) = plan([sym], now=now).entries
    assert entry.spread.expiry == expiry
    assert entry.signal.signal_id == "mag7:2027-03-25:AAPL:bullish"


@pytest.mark.parametrize("earnings_day", [date(2026, 3, 10), EXPIRY, ENTRY_DAY])
def test_plan_entries_when_life_spans_earnings_then_no_entry(earnings_day):
    result = plan([inputs(earnings=(earnings_day,), **BULL_CREDIT)])
    assert result.entries == ()
    assert f"spans earnings on {earnings_day}" in skip_for(result, "AAPL")[0]


def test_plan_entries_when_earnings_after_expiry_then_entry_allowed():
    assert len(plan([inputs(earnings=(date(2026, 3, 16),), **BULL_CREDIT)]).entries) == 1


def test_plan_entries_when_no_listed_expiry_in_range_then_skip_with_reason():
    result = plan([inputs(listed=(date(2026, 3, 20),), **BULL_CREDIT)])
    assert result.entries == ()
    assert "no listed expiry" in skip_for(result, "AAPL")[0]


def test_plan_entries_when_chain_missing_then_skip_with_reason():
    result = plan([inputs(chain=False)])
    assert result.entries == ()
    assert "no usable chain for 2026-03-13: no chain supplied" in skip_for(result, "AAPL")[0]


def test_plan_entries_when_no_signal_then_skip_says_why():
    result = plan([inputs(iv_history=RANK_40)])
    assert "no signal" in skip_for(result, "AAPL")[0]


def test_plan_entries_when_now_not_on_session_day_then_error():
    with pytest.raises(ValueError, match="session day"):
        plan_entries(ENTRY_AT, session(date(2026, 3, 5)), {}, [], EQUITY, LIMITS, DEFAULT)


# --------------------------------------------------------------------------- caps


def test_plan_entries_when_three_mag7_positions_open_then_no_entry():
    book = [held("MSFT", "a"), held("GOOGL", "b"), held("TSLA", "c")]
    result = plan([inputs(**BULL_CREDIT)], book=book)
    assert result.entries == ()
    assert "3 Mag7 positions open (max 3)" in skip_for(result, "AAPL")[0]


def test_plan_entries_when_two_open_and_two_signals_then_only_the_more_confident_enters():
    book = [held("GOOGL", "a"), held("TSLA", "b")]
    aapl = inputs(**BULL_DEBIT)  # confidence 0.875
    msft = inputs(symbol="MSFT", **BULL_CREDIT)  # confidence 0.85
    result = plan([aapl, msft], book=book)
    assert [e.signal.underlying for e in result.entries] == ["AAPL"]
    assert "3 Mag7 positions open (max 3)" in skip_for(result, "MSFT")[0]


def test_plan_entries_when_two_mag7_on_the_underlying_then_account_per_underlying_limit():
    book = [held("AAPL", "a"), held("AAPL", "b")]
    result = plan([inputs(**BULL_CREDIT)], book=book)
    assert result.entries == ()
    assert "2 Mag7 positions on AAPL (max 2)" in skip_for(result, "AAPL")[0]


def test_plan_entries_when_account_max_position_size_lower_then_it_binds():
    limits = replace(LIMITS, max_position_size=Decimal("1000"))
    (entry,) = plan([inputs(**BULL_DEBIT)], limits=limits).entries
    assert entry.sizing.bound_by is SizingCap.MAX_POSITION_SIZE
    assert entry.quantity == int(Decimal("1000") // entry.max_loss_per_contract)


def test_plan_entries_when_budget_below_one_contract_then_skip_with_cap_reason():
    result = plan([inputs(**BULL_DEBIT)], equity=Decimal("5000"))
    assert result.entries == ()
    reason = skip_for(result, "AAPL")[0]
    assert "no trade: budget 137.50 below one contract's max loss" in reason
    assert "bound by risk_budget" in reason


def test_plan_entries_when_held_mag7_moves_with_candidate_then_budget_halved():
    msft = inputs(symbol="MSFT", closes=DECLINE * 2, iv_history=RANK_40)  # same returns: corr 1
    (entry,) = plan([inputs(**BULL_DEBIT), msft], book=[held("MSFT", "a")]).entries
    assert entry.sizing.corr_factor == Decimal("0.5")
    assert entry.sizing.budget == Decimal("1375.00")  # 2750 x 0.5
    assert any("mean |corr| 1.000 with held MSFT: x0.5" in r for r in entry.reasons)


def test_plan_entries_when_held_mag7_uncorrelated_then_no_haircut():
    msft = inputs(symbol="MSFT", closes=zigzag(260, start=300.0), iv_history=RANK_40)
    (entry,) = plan([inputs(**BULL_DEBIT), msft], book=[held("MSFT", "a")]).entries
    assert entry.sizing.corr_factor == Decimal("1")


def test_plan_entries_when_held_mag7_has_no_history_then_conservative_haircut():
    (entry,) = plan([inputs(**BULL_DEBIT)], book=[held("NVDA", "a")]).entries
    assert entry.sizing.corr_factor == Decimal("0.5")
