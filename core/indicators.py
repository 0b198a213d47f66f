"""Technical indicators on daily bars (pure numpy; the Mag7-7DTE signals are built on them).

Conventions shared by every function here:

* Inputs are 1-D float64 arrays in time order (oldest first); outputs have the same length.
* An output element is ``NaN`` until enough data exists for it (the "warm-up"); a function never
  pads the warm-up with zeros or partial windows.
* Windowed statistics are vectorised (``sliding_window_view``). Wilder's and the exponential
  moving averages are first-order recursions: each value needs the previous one, so they run as a
  short loop over the (at most a few hundred) daily values; everything around them is vectorised.
* Seeds follow StockCharts / Wilder: an EMA starts from the simple average of its first ``n``
  values, Wilder smoothing likewise, so published worked examples are reproduced exactly.

Definitions (``n`` = period):

* ``ema``: alpha = 2 / (n + 1), seeded with the SMA of the first ``n`` finite values.
* ``wilder``: alpha = 1 / n ("RMA"), seeded with the SMA of the first ``n`` finite values.
* ``rsi``: 100 - 100 / (1 + avg gain / avg loss) with Wilder averages of the close-to-close
  gains and losses; first value at index ``n`` (the ``n + 1``-th close). Avg loss 0 -> 100; both
  averages 0 (a flat series) -> 50.
* ``macd``: line = EMA(fast) - EMA(slow); signal = EMA(signal) of the line; histogram = line -
  signal.
* ``bollinger``: middle = SMA(n); bands = middle +- k * sigma over the same window, sigma the
  **population** standard deviation (``ddof=0``) by default as StockCharts uses; ``ddof=1`` gives
  the sample standard deviation.
* ``momentum``: close[t] / close[t - n] - 1 (a fraction, 0.05 = +5%).
* ``adx``: Wilder's directional movement system: true range, +DM/-DM, Wilder-smoothed over ``n``;
  +DI/-DI = 100 * smoothed DM / smoothed TR; DX = 100 * |+DI - -DI| / (+DI + -DI); ADX = Wilder
  average of DX seeded with the mean of the first ``n`` DX values (first ADX at index 2n - 1).
* ``historical_vol``: sample standard deviation (``ddof=1``) of the last ``n`` daily **log**
  returns times sqrt(periods_per_year) (252 trading days).
* ``rolling_correlation`` / ``return_correlation``: Pearson correlation of daily **simple**
  returns (close-to-close percentage changes) over a window.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _as_array(x: npt.ArrayLike, name: str) -> FloatArray:
    arr: FloatArray = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _check_period(n: int, name: str = "period") -> None:
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")


def _nan_like(x: FloatArray) -> FloatArray:
    out: FloatArray = np.full(x.shape, np.nan, dtype=np.float64)
    return out


def sma(x: npt.ArrayLike, n: int) -> FloatArray:
    """Simple moving average over ``n`` values; NaN for the first ``n - 1``."""
    _check_period(n)
    arr = _as_array(x, "x")
    out = _nan_like(arr)
    if arr.shape[0] >= n:
        out[n - 1 :] = sliding_window_view(arr, n).mean(axis=1)
    return out


def rolling_std(x: npt.ArrayLike, n: int, ddof: int = 0) -> FloatArray:
    """Standard deviation over ``n`` values (``ddof=0`` population, 1 sample)."""
    _check_period(n)
    if ddof not in (0, 1) or n - ddof < 1:
        raise ValueError(f"ddof must be 0 or 1 with n > ddof, got ddof={ddof}, n={n}")
    arr = _as_array(x, "x")
    out = _nan_like(arr)
    if arr.shape[0] >= n:
        out[n - 1 :] = sliding_window_view(arr, n).std(axis=1, ddof=ddof)
    return out


def _recursive_average(arr: FloatArray, n: int, alpha: float) -> FloatArray:
    """y = alpha * x + (1 - alpha) * y_prev, seeded with the SMA of the first ``n`` finite values.

    Leading NaNs (the warm-up of an upstream indicator) are skipped; a NaN after the start is an
    error, since it would silently poison every later value.
    """
    _check_period(n)
    out = _nan_like(arr)
    finite = np.flatnonzero(np.isfinite(arr))
    if finite.size == 0:
        return out
    start = int(finite[0])
    if not np.isfinite(arr[start:]).all():
        raise ValueError("series has a gap (NaN/inf) after its first finite value")
    seed_at = start + n - 1
    if seed_at >= arr.shape[0]:
        return out
    value = float(arr[start : seed_at + 1].mean())
    out[seed_at] = value
    keep = 1.0 - alpha
    for i in range(seed_at + 1, arr.shape[0]):
        value = alpha * float(arr[i]) + keep * value
        out[i] = value
    return out


def ema(x: npt.ArrayLike, n: int) -> FloatArray:
    """Exponential moving average, alpha = 2 / (n + 1), SMA-seeded (StockCharts)."""
    return _recursive_average(_as_array(x, "x"), n, 2.0 / (n + 1.0))


def wilder(x: npt.ArrayLike, n: int) -> FloatArray:
    """Wilder's smoothing (RMA), alpha = 1 / n, SMA-seeded."""
    return _recursive_average(_as_array(x, "x"), n, 1.0 / n)


def rsi(close: npt.ArrayLike, n: int = 14) -> FloatArray:
    """Wilder's Relative Strength Index in [0, 100]; NaN for the first ``n`` closes."""
    _check_period(n)
    c = _as_array(close, "close")
    out = _nan_like(c)
    if c.shape[0] < n + 1:
        return out
    change = np.diff(c)
    gain = np.where(change > 0, change, 0.0)
    loss = np.where(change < 0, -change, 0.0)
    avg_gain = wilder(gain, n)
    avg_loss = wilder(loss, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    value = np.where((avg_loss == 0) & (avg_gain > 0), 100.0, value)
    value = np.where((avg_loss == 0) & (avg_gain == 0), 50.0, value)
    out[1:] = value
    return out


class MACD(NamedTuple):
    line: FloatArray
    signal: FloatArray
    histogram: FloatArray


def macd(close: npt.ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> MACD:
    """MACD line, signal line and histogram; the line starts at index ``slow - 1`` and the
    signal/histogram at ``slow + signal - 2``."""
    if not 1 <= fast < slow:
        raise ValueError(f"need 1 <= fast < slow, got fast={fast}, slow={slow}")
    _check_period(signal, "signal")
    c = _as_array(close, "close")
    line = ema(c, fast) - ema(c, slow)
    sig = ema(line, signal)
    return MACD(line, sig, line - sig)


def crossovers(a: npt.ArrayLike, b: npt.ArrayLike) -> IntArray:
    """+1 where ``a`` crosses above ``b`` at t (a[t-1] <= b[t-1] and a[t] > b[t]), -1 where it
    crosses below (a[t-1] >= b[t-1] and a[t] < b[t]), 0 otherwise (also wherever either side is
    NaN at t - 1 or t)."""
    x = _as_array(a, "a")
    y = _as_array(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    out: IntArray = np.zeros(x.shape, dtype=np.int64)
    if x.shape[0] < 2:
        return out
    d = x - y
    prev, cur = d[:-1], d[1:]
    ok = np.isfinite(prev) & np.isfinite(cur)
    out[1:] = np.where(
        ok & (prev <= 0) & (cur > 0), 1, np.where(ok & (prev >= 0) & (cur < 0), -1, 0)
    )
    return out


class Bollinger(NamedTuple):
    middle: FloatArray
    upper: FloatArray
    lower: FloatArray
    percent_b: FloatArray  # (close - lower) / (upper - lower); NaN where the bands have no width


def bollinger(close: npt.ArrayLike, n: int = 20, k: float = 2.0, ddof: int = 0) -> Bollinger:
    """Bollinger bands: SMA(n) +- k sigma (population sigma by default, as StockCharts)."""
    c = _as_array(close, "close")
    middle = sma(c, n)
    sd = rolling_std(c, n, ddof)
    upper = middle + k * sd
    lower = middle - k * sd
    width = upper - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(width > 0, (c - lower) / width, np.nan)
    return Bollinger(middle, upper, lower, pct)


def momentum(close: npt.ArrayLike, n: int = 10) -> FloatArray:
    """n-bar rate of change as a fraction: close[t] / close[t - n] - 1."""
    _check_period(n)
    c = _as_array(close, "close")
    out = _nan_like(c)
    if c.shape[0] > n:
        out[n:] = c[n:] / c[:-n] - 1.0
    return out


class ADX(NamedTuple):
    adx: FloatArray
    plus_di: FloatArray
    minus_di: FloatArray
    dx: FloatArray


def true_range(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike) -> FloatArray:
    """max(high - low, |high - prev close|, |low - prev close|); NaN at index 0."""
    h, lo, c = _as_array(high, "high"), _as_array(low, "low"), _as_array(close, "close")
    if not h.shape == lo.shape == c.shape:
        raise ValueError("high, low and close must have one shape")
    out = _nan_like(c)
    if c.shape[0] >= 2:
        prev = c[:-1]
        out[1:] = np.maximum.reduce([h[1:] - lo[1:], np.abs(h[1:] - prev), np.abs(lo[1:] - prev)])
    return out


def adx(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, n: int = 14) -> ADX:
    """Wilder's ADX with +DI/-DI; DI from index ``n``, ADX from index ``2n - 1``."""
    _check_period(n)
    h, lo = _as_array(high, "high"), _as_array(low, "low")
    tr = true_range(h, lo, close)
    size = tr.shape[0]
    plus_dm = _nan_like(tr)
    minus_dm = _nan_like(tr)
    if size >= 2:
        up = h[1:] - h[:-1]
        down = lo[:-1] - lo[1:]
        plus_dm[1:] = np.where((up > down) & (up > 0), up, 0.0)
        minus_dm[1:] = np.where((down > up) & (down > 0), down, 0.0)
    atr = wilder(tr, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        plus_di = np.where(atr > 0, 100.0 * wilder(plus_dm, n) / atr, 0.0)
        minus_di = np.where(atr > 0, 100.0 * wilder(minus_dm, n) / atr, 0.0)
        plus_di = np.where(np.isfinite(atr), plus_di, np.nan)
        minus_di = np.where(np.isfinite(atr), minus_di, np.nan)
        total = plus_di + minus_di
        dx = np.where(total > 0, 100.0 * np.abs(plus_di - minus_di) / total, 0.0)
        dx = np.where(np.isfinite(total), dx, np.nan)
    return ADX(wilder(dx, n), plus_di, minus_di, dx)


def log_returns(close: npt.ArrayLike) -> FloatArray:
    """ln(close[t] / close[t - 1]); length len(close) - 1."""
    c = _as_array(close, "close")
    out: FloatArray = np.diff(np.log(c))
    return out


def simple_returns(close: npt.ArrayLike) -> FloatArray:
    """close[t] / close[t - 1] - 1; length len(close) - 1."""
    c = _as_array(close, "close")
    out: FloatArray = c[1:] / c[:-1] - 1.0
    return out


def historical_vol(
    close: npt.ArrayLike, n: int = 20, periods_per_year: int = 252, ddof: int = 1
) -> FloatArray:
    """Annualised close-to-close vol: std(last ``n`` log returns, ddof) * sqrt(periods_per_year).

    Aligned to ``close``: the value at t uses returns ending at t; NaN for t < n.
    """
    _check_period(n)
    c = _as_array(close, "close")
    out = _nan_like(c)
    if c.shape[0] > n:
        out[1:] = rolling_std(log_returns(c), n, ddof) * math.sqrt(periods_per_year)
    return out


def rolling_correlation(x: npt.ArrayLike, y: npt.ArrayLike, n: int) -> FloatArray:
    """Pearson correlation of ``x`` and ``y`` over trailing windows of ``n``; NaN in the warm-up
    and where either side has no variance in the window."""
    if n < 2:
        raise ValueError(f"a correlation needs a window >= 2, got {n}")
    a, b = _as_array(x, "x"), _as_array(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    out = _nan_like(a)
    if a.shape[0] < n:
        return out
    wa = sliding_window_view(a, n)
    wb = sliding_window_view(b, n)
    da = wa - wa.mean(axis=1, keepdims=True)
    db = wb - wb.mean(axis=1, keepdims=True)
    cov = (da * db).sum(axis=1)
    var = np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        out[n - 1 :] = np.where(var > 0, cov / var, np.nan)
    return out


def return_correlation(close_a: npt.ArrayLike, close_b: npt.ArrayLike, window: int) -> float:
    """Correlation of the last ``window`` daily simple returns of two aligned close series.

    NaN when fewer than ``window + 1`` closes exist or a side is flat.
    """
    a, b = _as_array(close_a, "close_a"), _as_array(close_b, "close_b")
    if a.shape != b.shape:
        raise ValueError(f"close series must be aligned: {a.shape} vs {b.shape}")
    if a.shape[0] < window + 1:
        return math.nan
    ra = simple_returns(a[-(window + 1) :])
    rb = simple_returns(b[-(window + 1) :])
    return float(rolling_correlation(ra, rb, window)[-1])


def range_rank(history: npt.ArrayLike, window: int) -> float:
    """Where the last value sits in the [min, max] of the last ``window`` values, 0..100 ("IV rank").

    NaN with fewer than ``window`` values; 50 when the window has no range.
    """
    _check_period(window, "window")
    h = _as_array(history, "history")
    if h.shape[0] < window:
        return math.nan
    w = h[-window:]
    lo, hi = float(w.min()), float(w.max())
    if hi == lo:
        return 50.0
    return 100.0 * (float(w[-1]) - lo) / (hi - lo)


def percentile_rank(history: npt.ArrayLike, window: int) -> float:
    """Share of the previous ``window - 1`` values strictly below the last one, 0..100
    ("IV percentile"). NaN with fewer than ``window`` values."""
    _check_period(window, "window")
    h = _as_array(history, "history")
    if h.shape[0] < window or window < 2:
        return math.nan
    w = h[-window:]
    below = int(np.count_nonzero(w[:-1] < w[-1]))
    return 100.0 * below / (window - 1)
