"""core.indicators against published worked examples (StockCharts RSI and ADX tables), short
hand-computed series, and a pandas recomputation as a second reference."""

import math

import numpy as np
import pandas as pd
import pytest

from core.indicators import (
    adx,
    bollinger,
    crossovers,
    ema,
    historical_vol,
    log_returns,
    macd,
    momentum,
    percentile_rank,
    range_rank,
    return_correlation,
    rolling_correlation,
    rsi,
    simple_returns,
    sma,
    true_range,
    wilder,
)

# StockCharts ChartSchool "Relative Strength Index" worked example (closes to 4 decimals as in
# the spreadsheet behind the table) and the RSI(14) values the table prints.
RSI_CLOSES = [
    44.3389, 44.0902, 44.1497, 43.6124, 44.3278, 44.8264, 45.0955, 45.4245, 45.8433, 46.0826,
    45.8931, 46.0328, 45.6140, 46.2820, 46.2820, 46.0028, 46.0328, 46.4116, 46.2222, 45.6439,
    46.2122, 46.2521, 45.7137, 46.4515, 45.7835, 45.3548, 44.0288, 44.1783, 44.2181, 44.5672,
    43.4205, 42.6628, 43.1314,
]  # fmt: skip
RSI_PUBLISHED = [
    70.53, 66.32, 66.55, 69.41, 66.36, 57.97, 62.93, 63.26, 56.06, 62.38, 54.71, 50.42, 39.99,
    41.46, 41.87, 45.46, 37.30, 33.08, 37.77,
]  # fmt: skip

# StockCharts ChartSchool "Average Directional Index (ADX)" spreadsheet (cs-adx):
# (date, high, low, close, +DI14, -DI14, DX, ADX)
ADX_TABLE = [
    ("11-Feb-09", 30.1983000, 29.4072000, 29.8720000, None, None, None, None),
    ("12-Feb-09", 30.2776000, 29.3182000, 30.2381000, None, None, None, None),
    ("13-Feb-09", 30.4458000, 29.9611000, 30.0996000, None, None, None, None),
    ("17-Feb-09", 29.3478000, 28.7443000, 28.9028000, None, None, None, None),
    ("18-Feb-09", 29.3477000, 28.5566000, 28.9225000, None, None, None, None),
    ("19-Feb-09", 29.2886000, 28.4081000, 28.4775000, None, None, None, None),
    ("20-Feb-09", 28.8334000, 28.0818000, 28.5566000, None, None, None, None),
    ("23-Feb-09", 28.7346000, 27.4289000, 27.5576000, None, None, None, None),
    ("24-Feb-09", 28.6654000, 27.6565000, 28.4675000, None, None, None, None),
    ("25-Feb-09", 28.8532000, 27.8345000, 28.2796000, None, None, None, None),
    ("26-Feb-09", 28.6356000, 27.3992000, 27.4882000, None, None, None, None),
    ("27-Feb-09", 27.6761000, 27.0927000, 27.2310000, None, None, None, None),
    ("02-Mar-09", 27.2112000, 26.1826000, 26.3507000, None, None, None, None),
    ("03-Mar-09", 26.8651000, 26.1332000, 26.3309000, None, None, None, None),
    ("04-Mar-09", 27.4090000, 26.6277000, 27.0333000, 6.7494187, 32.4195605, 65.5369179, None),
    ("05-Mar-09", 26.9441000, 26.1332000, 26.2221000, 6.2919781, 33.9457668, 68.7259905, None),
    ("06-Mar-09", 26.5189000, 25.4307000, 26.0144000, 5.7817867, 36.4278403, 72.6044170, None),
    ("09-Mar-09", 26.5189000, 25.3518000, 25.4605000, 5.2866653, 33.8872739, 73.0092742, None),
    ("10-Mar-09", 27.0927000, 25.8760000, 27.0333000, 8.6988073, 30.0160112, 55.0621305, None),
    ("11-Mar-09", 27.6860000, 26.9640000, 27.4487000, 12.4910346, 28.4668252, 39.0054333, None),
    ("12-Mar-09", 28.4477000, 27.1421000, 28.3586000, 16.6785194, 25.8669450, 21.5967217, None),
    ("13-Mar-09", 28.5267000, 28.0123000, 28.4278000, 16.6292450, 24.9019540, 19.9192638, None),
    ("16-Mar-09", 28.6654000, 27.8840000, 27.9530000, 16.6937202, 23.4696294, 16.8708767, None),
    ("17-Mar-09", 29.0116000, 27.9928000, 29.0116000, 17.9332083, 21.6526027, 9.3957768, None),
    ("18-Mar-09", 29.8720000, 28.7643000, 29.3776000, 22.7269847, 19.9151478, 6.5940345, None),
    ("19-Mar-09", 29.8028000, 29.1402000, 29.3576000, 21.6099390, 18.9363056, 6.5940345, None),
    ("20-Mar-09", 29.7529000, 28.7127000, 28.9107000, 19.9520101, 20.6365552, 1.6865467, None),
    ("23-Mar-09", 30.6546000, 28.9290000, 30.6149000, 23.8153238, 18.1258276, 13.5654268, 33.5833461),
    ("24-Mar-09", 30.5951000, 30.0304000, 30.0502000, 22.8134766, 17.3633223, 13.5654268, 32.1534947),
    ("25-Mar-09", 30.7635000, 29.3863000, 30.1890000, 20.6131527, 20.1994349, 1.0137016, 29.9292238),
    ("26-Mar-09", 31.1698000, 30.1365000, 31.1202000, 21.9656407, 18.7390828, 7.9267406, 28.3576178),
    ("27-Mar-09", 30.8923000, 30.4267000, 30.5356000, 20.8748381, 17.8085094, 7.9267406, 26.8982694),
    ("30-Mar-09", 30.0402000, 29.3467000, 29.7827000, 19.1217139, 23.9419101, 11.1931967, 25.7764785),
    ("31-Mar-09", 30.6645000, 29.9906000, 30.0402000, 22.3703123, 22.4368271, 0.1484468, 23.9459048),
    ("01-Apr-09", 30.5951000, 29.5152000, 30.4861000, 20.6576174, 24.0894564, 7.6694155, 22.7832985),
    ("02-Apr-09", 31.9724000, 30.9418000, 31.4670000, 27.9963105, 21.6344053, 12.8184836, 22.0715260),
    ("03-Apr-09", 32.1011000, 31.5364000, 32.0515000, 27.6518997, 20.6667053, 14.4565315, 21.5275978),]  # fmt: skip


def _smooth_series(n=80):
    """A deterministic, non-trivial price path (trend + two cycles), not random data."""
    t = np.arange(n, dtype=np.float64)
    return 100.0 + 0.15 * t + 3.0 * np.sin(t / 4.0) + 1.5 * np.cos(t / 9.0)


def _pandas_seeded_ema(values, n, alpha):
    """pandas recursion y = a x + (1 - a) y_prev, seeded with the SMA of the first n values."""
    s = pd.Series(values, dtype=float)
    first = int(s.first_valid_index())
    seeded = s.copy()
    seeded.iloc[: first + n - 1] = np.nan
    seeded.iloc[first + n - 1] = s.iloc[first : first + n].mean()
    return seeded.ewm(alpha=alpha, adjust=False, ignore_na=True).mean().to_numpy()


# --------------------------------------------------------------------------- moving averages


def test_sma_when_window_of_three_then_hand_values_and_nan_warmup():
    out = sma([1.0, 2.0, 3.0, 4.0, 5.0], 3)
    assert np.isnan(out[:2]).all()
    assert out[2:].tolist() == pytest.approx([2.0, 3.0, 4.0])


def test_ema_when_period_three_then_sma_seed_and_half_weight_recursion():
    # seed = (1 + 2 + 3) / 3 = 2; alpha = 2 / 4: 0.5*4 + 0.5*2 = 3; 0.5*5 + 0.5*3 = 4
    out = ema([1.0, 2.0, 3.0, 4.0, 5.0], 3)
    assert np.isnan(out[:2]).all()
    assert out[2:].tolist() == pytest.approx([2.0, 3.0, 4.0])


def test_wilder_when_period_two_then_seed_then_half_weight():
    # seed = (2 + 4) / 2 = 3; alpha = 1/2: (3 + 6) / 2 = 4.5; (4.5 + 1) / 2 = 2.75
    out = wilder([2.0, 4.0, 6.0, 1.0], 2)
    assert np.isnan(out[0])
    assert out[1:].tolist() == pytest.approx([3.0, 4.5, 2.75])


def test_ema_when_leading_nans_then_seeded_from_first_finite_values():
    out = ema([np.nan, np.nan, 2.0, 4.0, 6.0], 2)
    assert np.isnan(out[:3]).all()
    # seed = 3 at index 3; alpha 2/3: 2/3*6 + 1/3*3 = 5
    assert out[3:].tolist() == pytest.approx([3.0, 5.0])


def test_ema_when_gap_after_start_then_error():
    with pytest.raises(ValueError, match="gap"):
        ema([1.0, 2.0, np.nan, 4.0], 2)


def test_ema_when_series_shorter_than_period_then_all_nan():
    assert np.isnan(ema([1.0, 2.0], 3)).all()


def test_sma_when_period_zero_then_error():
    with pytest.raises(ValueError, match="period"):
        sma([1.0], 0)


# --------------------------------------------------------------------------- RSI


def test_rsi_when_stockcharts_example_then_matches_published_table_to_a_cent():
    out = rsi(RSI_CLOSES, 14)
    assert np.isnan(out[:14]).all()
    assert out[14:].tolist() == pytest.approx(RSI_PUBLISHED, abs=0.01)


def test_rsi_when_first_value_then_equals_hand_average_gain_over_loss():
    # gains of the first 14 changes sum to 3.3374, losses to 1.3943 (from the table's closes)
    rs = (3.3374 / 14) / (1.3943 / 14)
    assert rsi(RSI_CLOSES, 14)[14] == pytest.approx(100 - 100 / (1 + rs), abs=1e-9)


def test_rsi_when_recomputed_with_pandas_wilder_ewm_then_identical():
    closes = _smooth_series()
    change = pd.Series(closes).diff()
    gain = change.clip(lower=0).to_numpy()
    loss = (-change.clip(upper=0)).to_numpy()
    avg_gain = _pandas_seeded_ema(gain, 14, 1 / 14)
    avg_loss = _pandas_seeded_ema(loss, 14, 1 / 14)
    expected = 100 - 100 / (1 + avg_gain / avg_loss)
    np.testing.assert_allclose(rsi(closes, 14), expected, rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize(
    ("closes", "value"),
    [
        ([10.0 + i for i in range(16)], 100.0),  # only gains
        ([30.0 - i for i in range(16)], 0.0),  # only losses
        ([10.0] * 16, 50.0),  # no movement at all
    ],
)
def test_rsi_when_one_sided_or_flat_then_extremes_defined(closes, value):
    assert rsi(closes, 14)[-1] == pytest.approx(value)


def test_rsi_when_fewer_than_period_plus_one_closes_then_all_nan():
    assert np.isnan(rsi(RSI_CLOSES[:14], 14)).all()


# --------------------------------------------------------------------------- MACD


def test_macd_when_short_periods_then_matches_hand_fractions():
    # fast EMA(2): 3/2, 19/6, 115/18, 691/54, 4147/162; slow EMA(3): 7/3, 31/6, 127/12, 511/24
    # line: 5/6, 11/9, 239/108, 2791/648; signal EMA(2) of the line: 37/36, 589/324, 845/243
    out = macd([1.0, 2.0, 4.0, 8.0, 16.0, 32.0], fast=2, slow=3, signal=2)
    assert np.isnan(out.line[:2]).all()
    assert out.line[2:].tolist() == pytest.approx([5 / 6, 11 / 9, 239 / 108, 2791 / 648])
    assert np.isnan(out.signal[:3]).all()
    assert out.signal[3:].tolist() == pytest.approx([37 / 36, 589 / 324, 845 / 243])
    assert out.histogram[3:].tolist() == pytest.approx(
        [11 / 9 - 37 / 36, 239 / 108 - 589 / 324, 2791 / 648 - 845 / 243]
    )


def test_macd_when_default_periods_then_matches_pandas_sma_seeded_ewm():
    closes = _smooth_series()
    fast = _pandas_seeded_ema(closes, 12, 2 / 13)
    slow = _pandas_seeded_ema(closes, 26, 2 / 27)
    line = fast - slow
    signal = _pandas_seeded_ema(line, 9, 2 / 10)
    out = macd(closes)
    np.testing.assert_allclose(out.line, line, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(out.signal, signal, rtol=1e-12, equal_nan=True)
    assert np.isnan(out.signal[:33]).all()
    assert np.isfinite(out.signal[33])


def test_macd_when_fast_not_below_slow_then_error():
    with pytest.raises(ValueError, match="fast"):
        macd([1.0] * 40, fast=26, slow=12)


def test_crossovers_when_line_crosses_up_then_down_then_signed_marks():
    # difference -1, 0, 1, 0, -1: touching zero is not a cross; leaving it is
    assert crossovers([1, 2, 3, 2, 1], [2, 2, 2, 2, 2]).tolist() == [0, 0, 1, 0, -1]


def test_crossovers_when_nan_on_either_side_then_no_cross():
    assert crossovers([np.nan, 3.0, 1.0], [2.0, 2.0, 2.0]).tolist() == [0, 0, -1]


# --------------------------------------------------------------------------- Bollinger


def test_bollinger_when_population_sigma_then_hand_bands():
    out = bollinger([1.0, 2.0, 3.0, 4.0, 5.0], n=5, k=2.0)
    # mean 3, population variance (4 + 1 + 0 + 1 + 4) / 5 = 2
    assert np.isnan(out.middle[:4]).all()
    assert out.middle[4] == pytest.approx(3.0)
    assert out.upper[4] == pytest.approx(3 + 2 * math.sqrt(2))
    assert out.lower[4] == pytest.approx(3 - 2 * math.sqrt(2))
    assert out.percent_b[4] == pytest.approx((1 + math.sqrt(2)) / (2 * math.sqrt(2)))


def test_bollinger_when_sample_sigma_then_wider_hand_bands():
    out = bollinger([1.0, 2.0, 3.0, 4.0, 5.0], n=5, k=2.0, ddof=1)
    # sample variance 10 / 4 = 2.5
    assert out.upper[4] == pytest.approx(3 + 2 * math.sqrt(2.5))


def test_bollinger_when_twenty_bars_then_matches_pandas_rolling_population_std():
    closes = _smooth_series()
    s = pd.Series(closes)
    mid = s.rolling(20).mean()
    sd = s.rolling(20).std(ddof=0)
    out = bollinger(closes)
    np.testing.assert_allclose(out.upper, (mid + 2 * sd).to_numpy(), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(out.lower, (mid - 2 * sd).to_numpy(), rtol=1e-12, equal_nan=True)


def test_bollinger_when_flat_window_then_percent_b_nan():
    assert np.isnan(bollinger([5.0] * 20).percent_b[-1])


# --------------------------------------------------------------------------- momentum


def test_momentum_when_three_bars_then_fraction_of_change():
    out = momentum([100.0, 101.0, 102.0, 105.0, 96.9], 3)
    assert np.isnan(out[:3]).all()
    assert out[3:].tolist() == pytest.approx([0.05, 96.9 / 101.0 - 1])


# --------------------------------------------------------------------------- ADX


def _adx_columns():
    table = np.array(
        [[np.nan if v is None else v for v in row[1:]] for row in ADX_TABLE], dtype=np.float64
    )
    return table.T  # high, low, close, +DI, -DI, DX, ADX


def test_adx_when_stockcharts_example_then_matches_published_di_dx_and_adx():
    high, low, close, pdi, mdi, dx, adx_ref = _adx_columns()
    out = adx(high, low, close, 14)
    assert np.isnan(out.plus_di[:14]).all()
    np.testing.assert_allclose(out.plus_di[14:], pdi[14:], atol=1e-6)
    np.testing.assert_allclose(out.minus_di[14:], mdi[14:], atol=1e-6)
    np.testing.assert_allclose(out.dx[14:], dx[14:], atol=1e-6)
    assert np.isnan(out.adx[:27]).all()
    np.testing.assert_allclose(out.adx[27:], adx_ref[27:], atol=1e-6)
    assert out.adx[27] == pytest.approx(33.58, abs=0.005)


def test_true_range_when_gap_then_uses_previous_close():
    # day 2: high-low = 1, |high - prev close| = 3, |low - prev close| = 2
    out = true_range([11.0, 13.0], [9.0, 12.0], [10.0, 12.5])
    assert np.isnan(out[0])
    assert out[1] == pytest.approx(3.0)


def test_adx_when_steady_uptrend_then_minus_di_zero_and_adx_hundred():
    n = 40
    high = 101.0 + np.arange(n)
    low = 99.0 + np.arange(n)
    close = 100.0 + np.arange(n)
    out = adx(high, low, close, 14)
    # every bar: +DM = 1, -DM = 0 (the low rises), TR = 2 -> +DI 50, -DI 0, DX 100
    assert out.plus_di[-1] == pytest.approx(50.0)
    assert out.minus_di[-1] == pytest.approx(0.0)
    assert out.adx[-1] == pytest.approx(100.0)


def test_adx_when_recomputed_with_pandas_then_identical():
    high, low, close = _adx_columns()[:3]
    h, lo, c = pd.Series(high), pd.Series(low), pd.Series(close)
    tr = pd.concat([h - lo, (h - c.shift()).abs(), (lo - c.shift()).abs()], axis=1).max(axis=1)
    tr.iloc[0] = np.nan
    up, down = h.diff(), -lo.diff()
    pdm = np.where((up > down) & (up > 0), up, 0.0)
    mdm = np.where((down > up) & (down > 0), down, 0.0)
    pdm[0] = mdm[0] = np.nan
    atr = _pandas_seeded_ema(tr.to_numpy(), 14, 1 / 14)
    pdi = 100 * _pandas_seeded_ema(pdm, 14, 1 / 14) / atr
    mdi = 100 * _pandas_seeded_ema(mdm, 14, 1 / 14) / atr
    dx = 100 * np.abs(pdi - mdi) / (pdi + mdi)
    out = adx(high, low, close, 14)
    np.testing.assert_allclose(out.adx, _pandas_seeded_ema(dx, 14, 1 / 14), equal_nan=True)


# --------------------------------------------------------------------------- volatility


def test_historical_vol_when_alternating_log_returns_then_hand_value():
    r = 0.01
    closes = 100.0 * np.exp(np.cumsum([0.0, r, -r, r, -r]))
    # returns +r, -r, +r, -r: mean 0, sample variance 4 r^2 / 3
    out = historical_vol(closes, n=4, periods_per_year=252)
    assert np.isnan(out[:4]).all()
    assert out[4] == pytest.approx(r * math.sqrt(4 / 3) * math.sqrt(252))


def test_historical_vol_when_twenty_days_then_matches_pandas():
    closes = _smooth_series()
    expected = np.log(pd.Series(closes)).diff().rolling(20).std() * math.sqrt(252)
    np.testing.assert_allclose(
        historical_vol(closes), expected.to_numpy(), rtol=1e-12, equal_nan=True
    )


def test_returns_when_prices_then_log_and_simple_definitions():
    assert log_returns([100.0, 110.0]).tolist() == pytest.approx([math.log(1.1)])
    assert simple_returns([100.0, 110.0, 99.0]).tolist() == pytest.approx([0.1, -0.1])


# --------------------------------------------------------------------------- correlation


def test_rolling_correlation_when_hand_triplet_then_one_half():
    # x = 1, 2, 3 and y = 1, 3, 2: cov = 1 / 2, var_x = var_y = 1 -> 0.5
    out = rolling_correlation([1.0, 2.0, 3.0], [1.0, 3.0, 2.0], 3)
    assert np.isnan(out[:2]).all()
    assert out[2] == pytest.approx(0.5)


def test_rolling_correlation_when_matches_pandas_then_identical():
    x = np.diff(_smooth_series())
    y = np.cos(np.arange(x.shape[0]) / 3.0)
    expected = pd.Series(x).rolling(10).corr(pd.Series(y)).to_numpy()
    np.testing.assert_allclose(rolling_correlation(x, y, 10), expected, atol=1e-12, equal_nan=True)


def test_return_correlation_when_scaled_or_inverted_returns_then_plus_minus_one():
    base = np.array([0.01, -0.02, 0.015, 0.0, -0.01, 0.03, -0.005])
    a = 100 * np.cumprod(np.concatenate([[1.0], 1 + base]))
    b = 50 * np.cumprod(np.concatenate([[1.0], 1 + 2 * base]))
    c = 80 * np.cumprod(np.concatenate([[1.0], 1 - base]))
    assert return_correlation(a, b, 7) == pytest.approx(1.0)
    assert return_correlation(a, c, 7) == pytest.approx(-1.0)


def test_return_correlation_when_too_short_or_flat_then_nan():
    assert math.isnan(return_correlation([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 5))
    assert math.isnan(return_correlation([1.0, 2.0, 3.0], [4.0, 4.0, 4.0], 2))


# --------------------------------------------------------------------------- IV rank / percentile


def test_range_rank_when_last_inside_range_then_position_in_percent():
    assert range_rank([0.20, 0.40, 0.30, 0.25], 4) == pytest.approx(25.0)
    assert range_rank([0.20, 0.40, 0.30, 0.40], 4) == pytest.approx(100.0)
    assert range_rank([0.99, 0.20, 0.40, 0.30, 0.25], 4) == pytest.approx(25.0)  # window only


def test_range_rank_when_short_or_flat_then_nan_or_fifty():
    assert math.isnan(range_rank([0.2, 0.3], 3))
    assert range_rank([0.3, 0.3, 0.3], 3) == 50.0


def test_percentile_rank_when_hand_window_then_share_strictly_below():
    # previous 4 values 0.20, 0.40, 0.30, 0.25: two are below 0.29 -> 50%
    assert percentile_rank([0.20, 0.40, 0.30, 0.25, 0.29], 5) == pytest.approx(50.0)
    assert math.isnan(percentile_rank([0.2], 5))
