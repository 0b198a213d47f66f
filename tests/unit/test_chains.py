from datetime import datetime
from decimal import Decimal

import numpy as np
import pytest

from core.calendar import NY
from core.chains import (
    ChainError,
    LiquidityRules,
    analyze_chain,
    analyze_chains,
    combo_quote,
    quote_problem,
    quote_problems,
)
from core.models import Right
from core.pricing import ExpiredContractError, IVStatus, implied_vol_delta
from core.spreads import bull_call_debit, iron_condor
from tests.builders import AT, CLOSE, DAY, c, make_chain


def test_quote_problems_when_nan_zero_negative_crossed_then_each_named():
    snap = make_chain(bid=(0, np.nan))
    snap2 = make_chain(ask=(1, 0.0))
    snap3 = make_chain(bid=(2, -0.5))
    snap4 = make_chain(bid=(3, 99.0))
    assert "non-finite" in quote_problems(snap)[0]
    assert "zero ask" in quote_problems(snap2)[1]
    assert "negative" in quote_problems(snap3)[2]
    assert "crossed" in quote_problems(snap4)[3]


def test_quote_problems_when_vectorised_then_same_as_quote_problem_per_row():
    bids = [np.nan, 1.0, -0.5, 2.0, 0.0, 0.0, 1.0, np.inf, 1.0, -1.0]
    asks = [1.0, np.nan, 1.0, 1.0, 0.0, 0.5, 1.0, 2.0, -np.inf, 0.0]
    snap = make_chain(bid=(slice(0, len(bids)), bids), ask=(slice(0, len(asks)), asks))
    per_row = zip(snap.bid.tolist(), snap.ask.tolist(), strict=True)
    assert quote_problems(snap) == [quote_problem(b, a) for b, a in per_row]
    assert sum(p != "" for p in quote_problems(snap)) == 8


def test_analyze_chain_when_mid_under_intrinsic_then_problem_names_status_and_row_invalid():
    deep_itm_call = 0  # the 570 call with spot 590: a sane quote far under intrinsic
    snap = make_chain(bid=(deep_itm_call, 0.01), ask=(deep_itm_call, 0.03))
    an = analyze_chain(snap, CLOSE, LiquidityRules())
    assert an.problems[deep_itm_call] == "no implied vol for mid 0.0200: BELOW_INTRINSIC"
    assert not an.valid[deep_itm_call] and np.isnan(an.iv[deep_itm_call])
    assert np.array_equal(an.valid, np.array([p == "" for p in an.problems]))


def test_analyze_chains_when_many_chains_then_same_as_one_call_each():
    chains = [
        (make_chain(spot=590.0, bid=(3, np.nan)), CLOSE),
        (make_chain(spot=412.3, vol=0.3, und="QQQ", oi=50), CLOSE),
        (make_chain(spot=205.0, vol=0.25, und="IWM", at=datetime(2026, 11, 27, 12, 0, tzinfo=NY)), CLOSE),
    ]  # fmt: skip
    rules = LiquidityRules()
    many = analyze_chains(chains, rules, rate=0.04, dividend_yield=0.01)
    assert len(many) == 3 and analyze_chains([], rules) == []
    for (snap, close), got in zip(chains, many, strict=True):
        one = analyze_chain(snap, close, rules, rate=0.04, dividend_yield=0.01)
        assert got.snapshot is snap and got.t == one.t
        for name in ("iv", "delta", "liquid", "valid", "status"):
            assert np.array_equal(getattr(got, name), getattr(one, name), equal_nan=True), name
        assert got.problems == one.problems


def test_analyze_chain_when_compared_with_the_rules_in_numpy_then_identical():
    # the compiled row loop against the documented steps: quote_problem, the mid's implied vol
    # and delta (implied_vol_delta), the liquidity rules
    rng = np.random.default_rng(3)
    rows = rng.choice(82, 24, replace=False)
    snap = make_chain(
        bid=(rows[:12], [np.nan, -0.5, 3.0, np.inf, 0.0, 0.0, 0.01, 2.5, 0.3, 0.0, 1.0, 0.05]),
        ask=(rows[:12], [1.0, 0.2, 2.0, np.inf, 0.0, 0.4, 0.02, 2.5, np.nan, 9.0, 9.0, 0.07]),
        open_interest=(rows[12:], rng.choice([-1, 0, 99, 100, 5000], 12)),
    )
    rules = LiquidityRules(min_bid=0.01, max_spread_abs=0.08, max_spread_frac=0.12)
    an = analyze_chain(snap, CLOSE, rules, rate=0.045, dividend_yield=0.012)

    sane = np.array([quote_problem(b, a) == "" for b, a in zip(snap.bid, snap.ask, strict=True)])
    mid = np.where(sane, (snap.bid + snap.ask) / 2.0, np.nan)
    want = implied_vol_delta(mid, snap.spot, snap.strikes, an.t, snap.is_call, 0.045, 0.012)
    ok = want.status == IVStatus.OK
    oi = snap.open_interest
    with np.errstate(invalid="ignore"):  # inf - inf
        spread_ok = snap.ask - snap.bid <= np.maximum(0.08, 0.12 * mid) + 1e-12
    liquid = ok & (snap.bid > 0.01) & spread_ok & ((oi < 0) | (oi >= 100))
    assert np.array_equal(an.status, want.status)
    assert np.array_equal(an.iv, want.iv, equal_nan=True)
    assert np.array_equal(an.delta, want.delta, equal_nan=True)
    assert np.array_equal(an.valid, ok) and np.array_equal(an.liquid, liquid)
    assert 0 < liquid.sum() < ok.sum() < sane.sum() < len(snap)


def test_analyze_chain_when_atm_iv_read_before_the_arrays_then_same_numbers_either_way():
    # vol and delta are solved when first read: two rows for atm_iv, every OK row for iv/delta
    snap = make_chain(bid=(5, np.nan))
    rules = LiquidityRules()
    first_atm = analyze_chain(snap, CLOSE, rules, rate=0.04, dividend_yield=0.01)
    first_arrays = analyze_chain(snap, CLOSE, rules, rate=0.04, dividend_yield=0.01)

    iv, delta = first_arrays.iv, first_arrays.delta
    atm = first_atm.atm_iv()

    assert atm == first_arrays.atm_iv() and np.isfinite(atm)
    assert np.array_equal(first_atm.iv, iv, equal_nan=True)
    assert np.array_equal(first_atm.delta, delta, equal_nan=True)
    assert np.array_equal(np.isfinite(iv), first_atm.valid) and not first_atm.valid[5]
    with pytest.raises(ValueError, match="read-only"):
        iv[0] = 0.5


def test_analyze_chain_when_bad_quotes_then_rows_skipped_with_reason_and_never_selected():
    idx_call_590 = 20
    snap = make_chain(bid=(idx_call_590, np.nan))
    an = analyze_chain(snap, CLOSE, LiquidityRules())
    assert not an.liquid[idx_call_590]
    skipped = dict(an.skipped())
    assert snap.contract(idx_call_590).symbol in skipped
    assert an.skipped_count == len(an.skipped()) >= 1
    i = an.select_by_delta(Right.CALL, 0.5)
    assert i is not None and i != idx_call_590


def test_analyze_chain_when_clean_then_deltas_match_model_and_atm_near_half():
    an = analyze_chain(make_chain(), CLOSE, LiquidityRules())
    i = an.select_by_delta(Right.CALL, 0.50)
    assert i is not None
    assert abs(float(an.snapshot.strikes[i]) - 590.0) <= 1.0
    assert 0.4 < an.delta[i] < 0.6
    j = an.select_by_delta(Right.PUT, 0.30)
    assert j is not None and an.delta[j] < 0 and float(an.snapshot.strikes[j]) < 590
    assert abs(an.atm_iv() - 0.15) < 0.02


def test_analyze_chain_when_spread_too_wide_or_low_oi_then_not_liquid():
    wide = make_chain(half_spread=0.30)  # 0.60 wide on options worth ~1-3
    an = analyze_chain(wide, CLOSE, LiquidityRules())
    assert not an.liquid[20]
    low_oi = make_chain(oi=50)
    assert not analyze_chain(low_oi, CLOSE, LiquidityRules()).liquid.any()
    unknown_oi = make_chain(oi=-1)  # the feed has no OI: the rule does not apply
    assert analyze_chain(unknown_oi, CLOSE, LiquidityRules()).liquid.any()


def test_analyze_chain_when_bid_zero_then_not_liquid():
    an = analyze_chain(make_chain(), CLOSE, LiquidityRules())
    far_otm_calls = [i for i in range(len(an.snapshot)) if an.snapshot.bid[i] == 0]
    assert far_otm_calls, "the synthetic chain should have zero bids far out"
    assert not an.liquid[far_otm_calls].any()


def test_implied_move_when_straddle_then_mid_over_spot():
    an = analyze_chain(make_chain(), CLOSE, LiquidityRules())
    mids = an.snapshot.mid
    assert an.implied_move() == pytest.approx((mids[20] + mids[61]) / 590.0)


def test_analyze_chain_when_expiry_passed_then_error():
    snap = make_chain(at=AT)
    with pytest.raises(ExpiredContractError):
        analyze_chain(snap, datetime(2026, 11, 27, 10, 0, tzinfo=NY), LiquidityRules())


def test_combo_quote_when_debit_spread_then_natural_is_long_ask_minus_short_bid():
    snap = make_chain()
    s = bull_call_debit(c(590), c(595))
    q = combo_quote({("SPY", DAY): snap}, s)
    i, j = snap.index_of(s.legs[0].contract), snap.index_of(s.legs[1].contract)
    assert q.ask == Decimal(str(snap.ask[i])) - Decimal(str(snap.bid[j]))
    assert q.bid == Decimal(str(snap.bid[i])) - Decimal(str(snap.ask[j]))
    assert q.bid < q.mid < q.ask


def test_combo_quote_when_condor_then_credit_is_negative():
    snap = make_chain()
    ic = iron_condor(c(583, "P"), c(588, "P"), c(592), c(597))
    q = combo_quote({("SPY", DAY): snap}, ic)
    assert q.ask < 0 and q.bid < q.ask


def test_combo_quote_when_leg_unlisted_or_bad_then_chain_error():
    snap = make_chain(bid=(20, np.nan))
    with pytest.raises(ChainError, match="not listed"):
        combo_quote({("SPY", DAY): snap}, bull_call_debit(c(591), c(700)))
    with pytest.raises(ChainError, match="non-finite"):
        combo_quote({("SPY", DAY): snap}, bull_call_debit(c(590), c(595)))
