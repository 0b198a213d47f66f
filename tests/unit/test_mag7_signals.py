"""Mag7 strategy votes at and around their thresholds, the IV method, and the ensemble."""

import math
from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import pytest

from core.calendar import session
from core.chains import LiquidityRules, analyze_chain
from core.models import Direction
from systems.mag7.config import DEFAULT, IVMeasure, Strategy
from systems.mag7.signals import (
    EarningsHistory,
    IVAssessment,
    IVMethod,
    Vote,
    all_votes,
    assess_iv,
    bollinger_vote,
    ensemble,
    macd_vote,
    momentum_vote,
    ratio_level,
    rsi_vote,
    skew_vote,
    vote_bollinger,
    vote_earnings,
    vote_iv,
    vote_macd,
    vote_momentum,
    vote_rsi,
    vote_skew,
)
from tests.unit.test_indicators import RSI_CLOSES
from tests.unit.test_mag7_support import EXPIRY, daily_bars, smile_chain, zigzag

BULL, BEAR, NEUTRAL = Direction.BULLISH, Direction.BEARISH, Direction.NEUTRAL
ENS = DEFAULT.ensemble


def iv_at(level, method=IVMethod.RANK):
    return IVAssessment(method, level, 0.3, 252, reason=f"test level {level}")


NO_IV = IVAssessment(IVMethod.UNAVAILABLE, math.nan, math.nan, 0, reason="none")


# --------------------------------------------------------------------------- RSI


@pytest.mark.parametrize(
    ("value", "direction", "confidence"),
    [
        (30.0, BULL, 0.5),
        (30.01, NEUTRAL, 0.0),
        (20.0, BULL, 0.7),
        (10.0, BULL, 0.9),
        (0.0, BULL, 0.9),  # capped
        (69.99, NEUTRAL, 0.0),
        (70.0, BEAR, 0.5),
        (85.0, BEAR, 0.8),
        (100.0, BEAR, 0.9),
    ],
)
def test_vote_rsi_when_value_at_or_around_30_70_then_direction_and_confidence(
    value, direction, confidence
):
    vote = vote_rsi(value, DEFAULT.rsi)
    assert vote.strategy is Strategy.RSI
    assert vote.direction is direction
    assert vote.confidence == pytest.approx(confidence)


def test_vote_rsi_when_no_value_yet_then_neutral_with_reason():
    vote = vote_rsi(math.nan, DEFAULT.rsi)
    assert vote.direction is NEUTRAL
    assert "needs 15 closes" in vote.reason


def test_rsi_vote_when_stockcharts_series_ends_at_37_77_then_neutral():
    vote = rsi_vote(np.array(RSI_CLOSES), DEFAULT.rsi)
    assert vote.direction is NEUTRAL
    assert "37.7" in vote.reason


def test_rsi_vote_when_twenty_falling_closes_then_bullish_capped():
    vote = rsi_vote(np.linspace(120.0, 100.0, 20), DEFAULT.rsi)
    assert vote.direction is BULL
    assert vote.confidence == pytest.approx(0.9)


# --------------------------------------------------------------------------- MACD


def test_vote_macd_when_cross_up_on_last_bar_then_bullish_from_histogram_size():
    line = np.array([-1.0, -0.5, 0.5])
    vote = vote_macd(line, np.zeros(3), 100.0, DEFAULT.macd)
    # histogram 0.5 = 0.5% of the close: 0.55 + 0.30 * 0.5
    assert vote.direction is BULL
    assert vote.confidence == pytest.approx(0.70)


def test_vote_macd_when_cross_down_then_bearish():
    line = np.array([1.0, 0.2, -0.2])
    vote = vote_macd(line, np.zeros(3), 100.0, DEFAULT.macd)
    assert vote.direction is BEAR
    assert vote.confidence == pytest.approx(0.55 + 0.30 * 0.2)


def test_vote_macd_when_cross_two_bars_ago_then_inside_lookback_of_three():
    line = np.array([-1.0, 1.0, 1.0, 1.0])
    vote = vote_macd(line, np.zeros(4), 100.0, DEFAULT.macd)
    assert vote.direction is BULL
    assert "2 bar(s) ago" in vote.reason


def test_vote_macd_when_cross_three_bars_ago_then_outside_lookback_neutral():
    line = np.array([-1.0, 1.0, 1.0, 1.0, 1.0])
    assert vote_macd(line, np.zeros(5), 100.0, DEFAULT.macd).direction is NEUTRAL


def test_vote_macd_when_histogram_back_to_zero_then_stale_neutral():
    line = np.array([-1.0, 1.0, 0.0])
    vote = vote_macd(line, np.zeros(3), 100.0, DEFAULT.macd)
    assert vote.direction is NEUTRAL
    assert "reversed" in vote.reason


def test_vote_macd_when_huge_histogram_then_capped():
    line = np.array([-1.0, 5.0])
    assert vote_macd(line, np.zeros(2), 100.0, DEFAULT.macd).confidence == pytest.approx(0.85)


def test_macd_vote_when_history_too_short_then_neutral():
    assert macd_vote(np.linspace(100, 110, 30), DEFAULT.macd).direction is NEUTRAL


def test_macd_vote_when_accelerating_decline_reverses_sharply_then_bullish_cross():
    decline = 120.0 - 20.0 * (np.arange(40) / 39.0) ** 2
    # the histogram is -0.52 before the jump; a +8% day lifts it to about +0.04
    assert macd_vote(np.append(decline, 106.0), DEFAULT.macd).direction is NEUTRAL
    vote = macd_vote(np.append(decline, 108.0), DEFAULT.macd)
    assert vote.direction is BULL
    assert "0 bar(s) ago" in vote.reason


# --------------------------------------------------------------------------- Bollinger


@pytest.mark.parametrize(
    ("close", "direction", "confidence"),
    [
        (90.0, BULL, 0.55),  # on the lower band
        (90.01, NEUTRAL, 0.0),
        (84.0, BULL, 0.85),  # 0.3 band widths below: 0.55 + 1.0 * 0.3
        (88.0, BULL, 0.65),
        (70.0, BULL, 0.85),  # capped
        (109.99, NEUTRAL, 0.0),
        (110.0, BEAR, 0.55),
        (112.0, BEAR, 0.65),
    ],
)
def test_vote_bollinger_when_close_at_or_around_bands_then_direction_and_confidence(
    close, direction, confidence
):
    vote = vote_bollinger(close, 110.0, 90.0, DEFAULT.bollinger)
    assert vote.direction is direction
    assert vote.confidence == pytest.approx(confidence)


def test_bollinger_vote_when_last_close_drops_below_lower_band_then_bullish():
    # 19 closes at 100 then 90: mean 99.5, population sigma sqrt(4.75), lower 95.14
    vote = bollinger_vote(np.array([100.0] * 19 + [90.0]), DEFAULT.bollinger)
    assert vote.direction is BULL
    assert "95.14" in vote.reason


def test_bollinger_vote_when_flat_then_no_width_neutral():
    assert bollinger_vote(np.full(25, 100.0), DEFAULT.bollinger).direction is NEUTRAL


# --------------------------------------------------------------------------- momentum


@pytest.mark.parametrize(
    ("change", "adx_value", "direction", "confidence"),
    [
        (0.05, 25.01, BULL, 0.55 + 0.2 * 0.01 / 25),
        (0.0499, 40.0, NEUTRAL, 0.0),
        (0.05, 25.0, NEUTRAL, 0.0),  # ADX must be strictly above 25
        (-0.05, 30.0, BEAR, 0.55 + 0.2 * 5 / 25),
        (0.10, 25.01, BULL, 0.75 + 0.2 * 0.01 / 25),
        (0.20, 60.0, BULL, 0.9),  # capped
    ],
)
def test_vote_momentum_when_change_and_adx_around_thresholds_then_direction(
    change, adx_value, direction, confidence
):
    vote = vote_momentum(change, adx_value, DEFAULT.momentum)
    assert vote.direction is direction
    assert vote.confidence == pytest.approx(confidence)


def test_momentum_vote_when_steady_uptrend_then_bullish_with_adx_100():
    closes = 100 * 1.01 ** np.arange(40)
    bars = daily_bars(closes, highs=closes * 1.005, lows=closes * 0.995)
    vote = momentum_vote(bars, DEFAULT.momentum)
    assert vote.direction is BULL
    assert "ADX(14) 100.0" in vote.reason
    assert vote.confidence == pytest.approx(0.9)


def test_momentum_vote_when_too_few_bars_then_neutral():
    assert momentum_vote(daily_bars(np.linspace(100, 120, 20)), DEFAULT.momentum).direction is (
        NEUTRAL
    )


# --------------------------------------------------------------------------- IV level


def test_assess_iv_when_a_year_of_history_then_rank_method():
    hist = np.concatenate([np.linspace(0.20, 0.40, 251), [0.35]])
    iv = assess_iv(hist, zigzag(60), DEFAULT.iv)
    assert iv.method is IVMethod.RANK
    assert iv.level == pytest.approx(75.0)
    assert iv.history_sessions == 252
    assert "iv_rank" in iv.reason


def test_assess_iv_when_one_session_short_of_a_year_then_iv_hv_fallback_said():
    hist = np.concatenate([np.linspace(0.20, 0.40, 250), [0.35]])
    iv = assess_iv(hist, zigzag(60), DEFAULT.iv)
    assert iv.method is IVMethod.IV_HV_RATIO
    assert iv.is_fallback
    assert "fallback" in iv.reason
    assert "251 of 252" in iv.reason


def test_assess_iv_when_percentile_configured_then_percentile_method():
    hist = np.concatenate([np.linspace(0.20, 0.40, 251), [0.35]])
    cfg = replace(DEFAULT.iv, measure=IVMeasure.PERCENTILE)
    iv = assess_iv(hist, zigzag(60), cfg)
    assert iv.method is IVMethod.PERCENTILE
    # 188 of the 251 earlier values (0.20 + 0.0008 * i) are below 0.35
    assert iv.level == pytest.approx(100 * 188 / 251)


def test_assess_iv_when_fallback_then_ratio_of_iv_to_hv20():
    closes = zigzag(60, step=0.01)
    # +-1% log returns: sample sd over 20 = 0.01 * sqrt(20 / 19), annualised by sqrt(252)
    hv = 0.01 * math.sqrt(20 / 19) * math.sqrt(252)
    iv = assess_iv([0.3] * 10 + [hv * 1.2], closes, DEFAULT.iv)
    assert iv.hv == pytest.approx(hv)
    assert iv.ratio == pytest.approx(1.2)
    assert iv.level == pytest.approx(80.0)


def test_assess_iv_when_current_iv_given_then_appended_as_today():
    iv = assess_iv(np.linspace(0.2, 0.4, 251), zigzag(60), DEFAULT.iv, current_iv=0.2)
    assert iv.method is IVMethod.RANK
    assert iv.level == pytest.approx(0.0)


def test_assess_iv_when_no_history_then_unavailable():
    iv = assess_iv([], zigzag(60), DEFAULT.iv)
    assert iv.method is IVMethod.UNAVAILABLE
    assert vote_iv(iv, DEFAULT.iv).direction is NEUTRAL


@pytest.mark.parametrize(("ratio", "level"), [(0.8, 20.0), (1.0, 50.0), (1.2, 80.0), (2.0, 100.0)])
def test_ratio_level_when_iv_hv_ratio_then_linear_on_20_80_scale(ratio, level):
    assert ratio_level(ratio, DEFAULT.iv) == pytest.approx(level)


@pytest.mark.parametrize(
    ("level", "direction", "confidence"),
    [
        (80.0, BULL, 0.55),
        (79.99, NEUTRAL, 0.0),
        (100.0, BULL, 0.85),
        (90.0, BULL, 0.70),
        (20.0, BEAR, 0.55),
        (20.01, NEUTRAL, 0.0),
        (0.0, BEAR, 0.85),
    ],
)
def test_vote_iv_when_level_around_20_80_then_contrarian_direction(level, direction, confidence):
    vote = vote_iv(iv_at(level), DEFAULT.iv)
    assert vote.direction is direction
    assert vote.confidence == pytest.approx(confidence)


def test_vote_iv_when_fallback_method_then_confidence_scaled_and_method_named():
    vote = vote_iv(iv_at(90.0, IVMethod.IV_HV_RATIO), DEFAULT.iv)
    assert vote.confidence == pytest.approx(0.70 * 0.8)
    assert "iv_hv_ratio" in vote.reason


# --------------------------------------------------------------------------- skew


@pytest.mark.parametrize(
    ("skew", "direction", "confidence"),
    [
        (0.15, BEAR, 0.55),
        (0.1499, NEUTRAL, 0.0),
        (0.30, BEAR, 0.85),
        (-0.15, BULL, 0.55),
        (-0.1499, NEUTRAL, 0.0),
        (-0.225, BULL, 0.70),
    ],
)
def test_vote_skew_when_around_plus_minus_015_then_direction(skew, direction, confidence):
    vote = vote_skew(skew, DEFAULT.skew)
    assert vote.direction is direction
    assert vote.confidence == pytest.approx(confidence)


def _analysis(**kw):
    return analyze_chain(smile_chain(**kw), session(EXPIRY).close, LiquidityRules())


def test_skew_vote_when_flat_smile_then_neutral():
    assert skew_vote(_analysis(), DEFAULT.skew).direction is NEUTRAL


def test_skew_vote_when_puts_much_richer_then_bearish_from_25_delta_ivs():
    vote = skew_vote(_analysis(put_skew=0.25), DEFAULT.skew)
    # 25d put IV ~39.4% vs call ~30.0% over ATM 30.0%: skew ~ +0.316
    assert vote.direction is BEAR
    assert "+0.31" in vote.reason


def test_skew_vote_when_calls_much_richer_then_bullish():
    assert skew_vote(_analysis(call_skew=0.25), DEFAULT.skew).direction is BULL


def test_skew_vote_when_no_contract_near_25_delta_then_neutral_with_reason():
    vote = skew_vote(_analysis(width=2.5), DEFAULT.skew)
    assert vote.direction is NEUTRAL
    assert "delta" in vote.reason


def test_skew_vote_when_no_chain_then_neutral():
    assert skew_vote(None, DEFAULT.skew).direction is NEUTRAL


# --------------------------------------------------------------------------- earnings drift

TODAY = date(2026, 3, 6)
ON = replace(DEFAULT.earnings, calendar_configured=True)


def beats(*surprises, days_ago=10):
    return EarningsHistory(TODAY - timedelta(days=days_ago), tuple(surprises))


def test_vote_earnings_when_no_calendar_configured_then_off():
    vote = vote_earnings(beats(0.05, 0.05, 0.05, 0.05), TODAY, DEFAULT.earnings)
    assert vote.direction is NEUTRAL
    assert vote.reason.startswith("off")


def test_vote_earnings_when_consistent_beats_then_bullish_drift():
    vote = vote_earnings(beats(0.05, 0.03, 0.04, 0.06), TODAY, ON)
    assert vote.direction is BULL
    assert vote.confidence == pytest.approx(0.55 + 0.05 * (0.06 / 0.02 - 1))


def test_vote_earnings_when_consistent_misses_then_bearish_drift():
    assert vote_earnings(beats(-0.05, -0.03, 0.01, -0.04), TODAY, ON).direction is BEAR


def test_vote_earnings_when_beat_rate_below_75_percent_then_neutral():
    assert vote_earnings(beats(-0.05, -0.03, 0.04, 0.06), TODAY, ON).direction is NEUTRAL


def test_vote_earnings_when_report_older_than_window_then_neutral():
    assert vote_earnings(beats(0.05, 0.05, 0.05, 0.05, days_ago=31), TODAY, ON).direction is (
        NEUTRAL
    )
    assert vote_earnings(beats(0.05, 0.05, 0.05, 0.05, days_ago=30), TODAY, ON).direction is BULL


# --------------------------------------------------------------------------- all votes


def test_all_votes_when_flat_history_then_one_vote_per_strategy_in_order():
    votes = all_votes(daily_bars(np.full(260, 100.0)), iv_at(50.0), None, None, TODAY, DEFAULT)
    assert [v.strategy for v in votes] == list(Strategy)
    assert all(v.direction is NEUTRAL for v in votes)


# --------------------------------------------------------------------------- ensemble


def v(strategy, direction, confidence):
    return Vote(strategy, direction, confidence, "test")


def test_ensemble_when_one_strategy_agrees_even_at_full_confidence_then_no_signal():
    result = ensemble([v(Strategy.EARNINGS, BULL, 1.0)], iv_at(50.0), ENS)
    assert result.direction is None
    assert result.bullish_score == pytest.approx(1.0)


def test_ensemble_when_two_agree_at_0_5999_then_no_signal():
    votes = [v(Strategy.RSI, BULL, 0.5999), v(Strategy.MACD, BULL, 0.5999)]
    result = ensemble(votes, iv_at(50.0), ENS)
    assert result.direction is None
    assert result.bullish_score == pytest.approx(0.5999)


def test_ensemble_when_two_agree_at_0_60_then_emits_with_weighted_confidence():
    votes = [v(Strategy.RSI, BULL, 0.60), v(Strategy.MACD, BULL, 0.60)]
    result = ensemble(votes, iv_at(50.0), ENS)
    assert result.direction is BULL
    assert result.confidence == pytest.approx(0.60)
    assert result.agreeing == (Strategy.RSI, Strategy.MACD)


def test_ensemble_when_confidences_differ_then_weighted_by_strategy_weights():
    # (0.7 * 0.9 + 0.6 * 0.5) / (0.7 + 0.6) = 0.93 / 1.3
    votes = [v(Strategy.RSI, BEAR, 0.9), v(Strategy.BOLLINGER, BEAR, 0.5)]
    result = ensemble(votes, iv_at(50.0), ENS)
    assert result.direction is BEAR
    assert result.confidence == pytest.approx(0.93 / 1.3)


def test_ensemble_when_a_strategy_disagrees_then_its_weight_dilutes_confidence():
    # (0.7 * 0.8 + 0.8 * 0.8) / (0.7 + 0.8 + 0.8) = 1.2 / 2.3 = 0.5217
    votes = [
        v(Strategy.RSI, BULL, 0.8),
        v(Strategy.MACD, BULL, 0.8),
        v(Strategy.IV, BEAR, 0.8),
    ]
    result = ensemble(votes, iv_at(50.0), ENS)
    assert result.direction is None
    assert result.bullish_score == pytest.approx(1.2 / 2.3)


def test_ensemble_when_neutral_votes_present_then_they_do_not_dilute():
    votes = [
        v(Strategy.RSI, BULL, 0.6),
        v(Strategy.MACD, BULL, 0.6),
        Vote(Strategy.BOLLINGER, NEUTRAL, 0.0, "inside"),
    ]
    assert ensemble(votes, iv_at(50.0), ENS).direction is BULL


def test_ensemble_when_no_majority_and_iv_level_70_then_neutral_at_base_confidence():
    result = ensemble([v(Strategy.IV, BULL, 0.55)], iv_at(70.0), ENS)
    assert result.direction is NEUTRAL
    assert result.confidence == pytest.approx(0.60)
    assert "iv_rank" in result.reason


def test_ensemble_when_no_majority_and_iv_level_69_99_then_no_signal():
    assert ensemble([], iv_at(69.99), ENS).direction is None


def test_ensemble_when_neutral_and_iv_level_100_then_capped_confidence():
    assert ensemble([], iv_at(100.0), ENS).confidence == pytest.approx(0.80)


def test_ensemble_when_two_against_two_and_rich_iv_then_neutral():
    votes = [
        v(Strategy.RSI, BULL, 0.9),
        v(Strategy.MACD, BULL, 0.9),
        v(Strategy.MOMENTUM, BEAR, 0.9),
        v(Strategy.SKEW, BEAR, 0.9),
    ]
    result = ensemble(votes, iv_at(85.0), ENS)
    assert result.direction is NEUTRAL
    assert result.confidence == pytest.approx(0.60 + 0.20 * 0.5)


def test_ensemble_when_weak_directional_majority_and_rich_iv_then_no_signal():
    votes = [v(Strategy.RSI, BULL, 0.55), v(Strategy.MACD, BULL, 0.55)]
    result = ensemble(votes, iv_at(90.0), ENS)
    assert result.direction is None
    assert "majority below" in result.reason


def test_ensemble_when_iv_from_fallback_then_result_reports_method():
    fallback = iv_at(75.0, IVMethod.IV_HV_RATIO)
    result = ensemble([], fallback, ENS)
    assert result.iv.method is IVMethod.IV_HV_RATIO
    assert "iv_hv_ratio" in result.reason


def test_ensemble_when_iv_unavailable_then_never_neutral():
    assert ensemble([], NO_IV, ENS).direction is None


def test_vote_when_neutral_with_confidence_then_rejected():
    with pytest.raises(ValueError, match="neutral"):
        Vote(Strategy.RSI, NEUTRAL, 0.3, "bad")
