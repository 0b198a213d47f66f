"""Black-Scholes-Merton pricing kernel: prices, analytic greeks, implied vol, time to expiry.

Pure float64 numpy (plus the standard library); every function broadcasts its arguments like a
numpy ufunc, so a whole option chain is priced in one call. Conventions:

* ``t`` is the time to expiry in years of **calendar minutes** (``MINUTES_PER_YEAR``), the same
  clock as realised vol; use :func:`year_fraction` to get it from tz-aware datetimes.
* ``r`` is the continuously compounded risk-free rate, ``q`` the continuous dividend yield.
* ``is_call`` is a bool (array); ``True`` is a call, ``False`` a put.
* Invalid inputs (NaN/inf, non-positive spot/strike/t, negative vol) give NaN outputs; they never
  raise, so one bad row cannot break a chain.

Numerics: the normal CDF is W. J. Cody's rational Chebyshev erfc ("Rational Chebyshev approximations
for the error function", Math. Comp. 23, 1969; the SPECFUN ``CALERF`` coefficients), about 1e-15
relative everywhere, so deep out-of-the-money prices stay accurate rather than underflowing to
garbage. ``d1``/``d2`` are formed in log-space from ``ln(F/K) / (vol sqrt t)``; a vanishing
``vol sqrt t`` gives the discounted intrinsic value, never NaN. Large inputs are processed in
blocks of a few thousand elements: the temporaries stay in cache and are reused by the allocator,
which is several times faster than whole-array temporaries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import IntEnum
from typing import NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

# Same aliases as core.marketdata (defined here so core.marketdata may import this module).
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Int8Array = npt.NDArray[np.int8]
_G = TypeVar("_G", bound=np.generic)

MINUTES_PER_YEAR: float = 365.0 * 24 * 60
"""Calendar minutes in a (365-day) year: the unit of every ``t`` in this module."""

_MIN_T_SECONDS = 1.0

_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TINY = 1e-300  # stands in for a zero vol * sqrt(t) so x / s is +-inf (or 0), never 0 / 0

# Elements per block for large inputs (see the module docstring).
_BLOCK = 4096
_IV_BLOCK = 4096


# --------------------------------------------------------------------------------------------
# Time to expiry
# --------------------------------------------------------------------------------------------


class ExpiredContractError(ValueError):
    """``now`` is at or after the contract's expiry: there is no time value left to price."""


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")


def _seconds_to_years(seconds: float) -> float:
    return max(seconds, _MIN_T_SECONDS) / 60.0 / MINUTES_PER_YEAR


def year_fraction(now: datetime, expiry_at: datetime) -> float:
    """Time from ``now`` to ``expiry_at`` in years of calendar minutes (``MINUTES_PER_YEAR``).

    Both datetimes must be tz-aware (naive raises ``ValueError``). The span is the real elapsed
    time: both ends are converted to UTC first, so a span across a DST change counts the minutes
    that actually pass (Python's own ``a - b`` on two datetimes sharing one ``ZoneInfo`` would
    use wall-clock time). ``now >= expiry_at`` raises :class:`ExpiredContractError`; a positive
    span shorter than one second is floored to one second, so the result is never 0.
    """
    _require_aware(now, "now")
    _require_aware(expiry_at, "expiry_at")
    seconds = (expiry_at.astimezone(UTC) - now.astimezone(UTC)).total_seconds()
    if seconds <= 0.0:
        raise ExpiredContractError(f"contract expired: expiry_at={expiry_at} is not after {now}")
    return _seconds_to_years(seconds)


def year_fractions(now: datetime, expiry_at: Sequence[datetime]) -> FloatArray:
    """Vectorised :func:`year_fraction` over many expiries (same rules; errors name the index)."""
    _require_aware(now, "now")
    now_utc = now.astimezone(UTC)
    out = np.empty(len(expiry_at), dtype=np.float64)
    for i, expiry in enumerate(expiry_at):
        _require_aware(expiry, f"expiry_at[{i}]")
        seconds = (expiry.astimezone(UTC) - now_utc).total_seconds()
        if seconds <= 0.0:
            raise ExpiredContractError(
                f"contract expired: expiry_at[{i}]={expiry} is not after {now}"
            )
        out[i] = _seconds_to_years(seconds)
    return out


# --------------------------------------------------------------------------------------------
# Normal distribution
# --------------------------------------------------------------------------------------------

# W. J. Cody's CALERF coefficients. erf on |y| <= 0.46875 (A/B, in y^2), erfc * exp(y^2) on
# 0.46875 < |y| <= 4 (C/D, in y) and on |y| > 4 (P/Q, in 1/y^2).
_A = (
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
)
_B = (
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
)
_C = (
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
    2.15311535474403846e-8,
)
_D = (
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
)
_P = (
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
)
_Q = (
    2.56852019228982242e00,
    1.87295284992346047e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
)
_SQRPI = 5.6418958354775628695e-1  # 1 / sqrt(pi)


def _coefficient_matrix() -> FloatArray:
    """The three rational approximations as one matrix product (small-array path).

    Rows multiply the powers ``[1, t1..t1^4, z..z^8, t3..t3^5]`` (t1 = y^2 clipped to region 1,
    z = |y| clipped to region 2, t3 = 1/z^2 for region 3); columns are numerator and denominator
    of regions 1, 2, 3. All coefficients and powers are positive, so the sums are as accurate as
    Horner's rule.
    """
    m = np.zeros((18, 6), dtype=np.float64)
    m[0:5, 0] = (_A[3], _A[2], _A[1], _A[0], _A[4])
    m[0:5, 1] = (_B[3], _B[2], _B[1], _B[0], 1.0)
    m[0, 2], m[0, 3] = _C[7], _D[7]
    for k in range(1, 8):
        m[4 + k, 2], m[4 + k, 3] = _C[7 - k], _D[7 - k]
    m[12, 2], m[12, 3] = _C[8], 1.0
    m[0, 4], m[0, 5] = _P[4], _Q[4]
    for k in range(1, 5):
        m[12 + k, 4], m[12 + k, 5] = _P[4 - k], _Q[4 - k]
    m[17, 4], m[17, 5] = _P[5], 1.0
    return m


_ERFC_MT = np.ascontiguousarray(_coefficient_matrix().T)
_ERFC_SMALL = 600  # up to this many elements: one matrix product (fewest numpy calls)
_ERFC_CHUNK = 8192  # above it: region by region, in chunks whose temporaries stay small


def _erfc_flat(y: FloatArray) -> FloatArray:
    """erfc of a 1-d float64 array (Cody; ~1e-15 relative; NaN in, NaN out)."""
    n = y.shape[0]
    # erfc(28) underflows to 0 (and erfc(-28) rounds to 2); clipping also tames +-inf.
    y = np.minimum(np.maximum(y, -28.0), 28.0)
    if n <= _ERFC_SMALL:
        return _erfc_small(y)
    if n <= _ERFC_CHUNK:
        return _erfc_regions(y)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, _ERFC_CHUNK):
        stop = min(start + _ERFC_CHUNK, n)
        out[start:stop] = _erfc_regions(y[start:stop])
    return out


def _exp_minus_square(z: FloatArray) -> FloatArray:
    """``exp(-z^2)`` to full relative accuracy: Cody's split ``z^2 = zs^2 + (z - zs)(z + zs)``
    with ``zs = trunc(16 z) / 16``, whose square is exact."""
    zs = np.trunc(z * 16.0) * 0.0625
    out: FloatArray = np.exp(-zs * zs) * np.exp(-(z - zs) * (z + zs))
    return out


def _erfc_small(y: FloatArray) -> FloatArray:
    """All three regions at once: six polynomials from one matrix product (few numpy calls)."""
    n = y.shape[0]
    ay = np.abs(y)
    v = np.empty((18, n), dtype=np.float64)
    v[0] = 1.0
    t1 = np.minimum(ay, 0.46875)
    np.multiply(t1, t1, out=v[1])
    for k in range(2, 5):
        np.multiply(v[k - 1], v[1], out=v[k])
    np.maximum(ay, 0.46875, out=v[5])
    np.minimum(v[5], 4.0, out=v[5])
    for k in range(6, 13):
        np.multiply(v[k - 1], v[5], out=v[k])
    z3 = np.maximum(ay, 4.0)
    np.multiply(z3, z3, out=v[13])
    np.divide(1.0, v[13], out=v[13])
    for k in range(14, 18):
        np.multiply(v[k - 1], v[13], out=v[k])
    r = _ERFC_MT @ v  # (6, n): num1, den1, num2, den2, num3, den3
    small = 1.0 - y * (r[0] / r[1])  # region 1: erfc = 1 - y R1(y^2), either sign of y
    tail = np.where(ay <= 4.0, r[2] / r[3], (_SQRPI - v[13] * (r[4] / r[5])) / z3)
    tail *= _exp_minus_square(ay)
    tail = np.where(y < 0.0, 2.0 - tail, tail)
    out: FloatArray = np.where(ay <= 0.46875, small, tail)
    return out


def _erfc_regions(y: FloatArray) -> FloatArray:
    """Each region's rational function on its own elements only (least arithmetic)."""
    ay = np.abs(y)
    out = np.empty_like(y)
    near = ay <= 0.46875
    i1 = np.flatnonzero(near)
    if i1.size:
        y1 = y[i1]
        t = y1 * y1
        num = _A[4] * t
        den = t.copy()
        for a, b in zip(_A[:3], _B[:3], strict=True):
            num += a
            num *= t
            den += b
            den *= t
        out[i1] = 1.0 - y1 * (num + _A[3]) / (den + _B[3])
    i2 = np.flatnonzero(~near)  # NaN lands here and stays NaN
    if i2.size:
        z = ay[i2]
        rat = np.empty_like(z)
        far = z > 4.0
        j2 = np.flatnonzero(~far)
        if j2.size:
            z2 = z[j2]
            num = _C[8] * z2
            den = z2.copy()
            for c, d in zip(_C[:7], _D[:7], strict=True):
                num += c
                num *= z2
                den += d
                den *= z2
            rat[j2] = (num + _C[7]) / (den + _D[7])
        j3 = np.flatnonzero(far)
        if j3.size:
            z3 = z[j3]
            t = 1.0 / (z3 * z3)
            num = _P[5] * t
            den = t.copy()
            for p, q in zip(_P[:4], _Q[:4], strict=True):
                num += p
                num *= t
                den += q
                den *= t
            rat[j3] = (_SQRPI - t * (num + _P[4]) / (den + _Q[4])) / z3
        rat *= _exp_minus_square(z)
        out[i2] = np.where(y[i2] < 0.0, 2.0 - rat, rat)
    return out


def _ncdf_flat(x: FloatArray) -> FloatArray:
    """Standard normal CDF of a 1-d array: 0.5 * erfc(-x / sqrt 2)."""
    out = _erfc_flat(x * -_SQRT1_2)
    out *= 0.5
    return out


def _ncdf(x: FloatArray) -> FloatArray:
    """Standard normal CDF of an array of any shape (one erfc pass over all of it)."""
    flat = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
    return _ncdf_flat(flat).reshape(np.shape(x))


def erfc(x: npt.ArrayLike) -> FloatArray:
    """Complementary error function, vectorised (Cody's rational approximations, ~1e-15 rel.)."""
    arr = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        return _erfc_flat(arr.reshape(-1)).reshape(arr.shape)


def norm_cdf(x: npt.ArrayLike) -> FloatArray:
    """Standard normal CDF, accurate to ~1e-15 relative deep in both tails."""
    arr = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        return _ncdf(arr)


def norm_pdf(x: npt.ArrayLike) -> FloatArray:
    """Standard normal density."""
    arr = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        out: FloatArray = np.exp(-0.5 * arr * arr) * _INV_SQRT_2PI
    return out


# Acklam's rational approximation of the inverse normal CDF (relative error < 1.2e-9), only
# used for the implied-vol starting points, which Newton then polishes.
_ACK_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_ACK_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_ACK_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_ACK_D = (
    7.784695709041462e-03,
    3.224671290700398e-01,
    2.445134137142996e00,
    3.754408661907416e00,
)
_ACK_P_LOW = 0.02425


def _horner(coeffs: Sequence[float], x: FloatArray) -> FloatArray:
    acc = np.full_like(x, coeffs[0])
    for c in coeffs[1:]:
        acc *= x
        acc += c
    return acc


def _inv_ncdf_lower(p: FloatArray) -> FloatArray:
    """Inverse normal CDF for ``0 < p <= 0.5`` (Acklam; the lower half is all the solver needs)."""
    q = np.sqrt(-2.0 * np.log(np.minimum(p, _ACK_P_LOW)))
    tail = _horner(_ACK_C, q) / (_horner(_ACK_D, q) * q + 1.0)
    c = p - 0.5
    rr = c * c
    central = _horner(_ACK_A, rr) * c / (_horner(_ACK_B, rr) * rr + 1.0)
    out: FloatArray = np.where(p < _ACK_P_LOW, tail, central)
    return out


# --------------------------------------------------------------------------------------------
# Prices and greeks
# --------------------------------------------------------------------------------------------


class Greeks(NamedTuple):
    """Analytic Black-Scholes-Merton greeks of one long option (arrays, broadcast shape).

    * ``delta``: dV/dS (calls in [0, e^{-qT}], puts in [-e^{-qT}, 0]).
    * ``gamma``: d2V/dS2.
    * ``theta``: dV/dt **per year** of calendar time (the option's value change as time passes,
      normally negative for a long option). Per calendar day: :func:`theta_per_day`.
    * ``vega``: dV/dvol **per 1.00 of vol** (i.e. per 100 vol points). Per vol point (0.01):
      :func:`vega_per_point`.
    """

    delta: FloatArray
    gamma: FloatArray
    theta: FloatArray
    vega: FloatArray


def theta_per_day(g: Greeks) -> FloatArray:
    """Theta per calendar day (``g.theta / 365``)."""
    return g.theta / 365.0


def vega_per_point(g: Greeks) -> FloatArray:
    """Vega per vol point, i.e. per 0.01 of vol (``g.vega / 100``)."""
    return g.vega / 100.0


class _Inputs(NamedTuple):
    shape: tuple[int, ...]
    arrays: tuple[FloatArray, ...]  # flattened, contiguous float64, all the same size
    is_call: BoolArray


def _prepare(is_call: npt.ArrayLike, *args: npt.ArrayLike) -> _Inputs:
    """Broadcast ``is_call`` and the float arguments to one shape and flatten them."""
    flag = np.asarray(is_call, dtype=np.bool_)
    floats = [np.asarray(a, dtype=np.float64) for a in args]
    shape = np.broadcast_shapes(flag.shape, *(f.shape for f in floats))
    size = math.prod(shape)
    return _Inputs(shape, tuple(_flat(f, shape, size) for f in floats), _flat(flag, shape, size))


def _flat(a: npt.NDArray[_G], shape: tuple[int, ...], size: int) -> npt.NDArray[_G]:
    """``a`` broadcast to ``shape``, as a contiguous 1-d array (no copy when it already is)."""
    if a.shape == shape:
        return np.ascontiguousarray(a).reshape(size)
    if a.ndim == 0:
        return np.full(size, a, dtype=a.dtype)
    return np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(size)


def _blocked(
    n: int, n_out: int, block: int, fn: Callable[[slice], tuple[FloatArray, ...]]
) -> list[FloatArray]:
    """Run ``fn`` over consecutive slices of ``range(n)`` and concatenate its outputs."""
    if n <= block:
        return list(fn(slice(0, n)))
    outs = [np.empty(n, dtype=np.float64) for _ in range(n_out)]
    for start in range(0, n, block):
        sl = slice(start, min(start + block, n))
        for out, part in zip(outs, fn(sl), strict=True):
            out[sl] = part
    return outs


class _Core(NamedTuple):
    """Shared pieces of one price/greeks evaluation (flat arrays)."""

    w: FloatArray  # +1 call, -1 put
    sdq: FloatArray  # S e^{-qT}
    kdr: FloatArray  # K e^{-rT}
    s: FloatArray  # vol sqrt(T)
    d1: FloatArray
    d2: FloatArray
    bad: BoolArray


def _core(
    spot: FloatArray,
    strike: FloatArray,
    t: FloatArray,
    vol: FloatArray,
    r: FloatArray,
    q: FloatArray,
    is_call: BoolArray,
) -> _Core:
    bad = ~((spot > 0.0) & (strike > 0.0) & (t > 0.0) & (vol >= 0.0))
    bad |= ~np.isfinite(spot + strike + t + vol + r + q)
    w = np.where(is_call, 1.0, -1.0)
    sdq = spot * np.exp(-q * t)
    kdr = strike * np.exp(-r * t)
    s = vol * np.sqrt(t)
    x = np.log(spot / strike) + (r - q) * t  # ln(F / K)
    d1 = x / np.maximum(s, _TINY) + 0.5 * s
    d2 = d1 - s
    return _Core(w, sdq, kdr, s, d1, d2, bad)


def _price_block(
    c: _Core, n1: FloatArray, n2: FloatArray
) -> FloatArray:  # n1 = N(w d1), n2 = N(w d2)
    price = c.w * (c.sdq * n1 - c.kdr * n2)
    # no-arbitrage floor: rounding in the difference can dip below the discounted intrinsic
    price = np.maximum(price, np.maximum(c.w * (c.sdq - c.kdr), 0.0))
    price[c.bad] = np.nan
    return price


def bs_price(
    spot: npt.ArrayLike,
    strike: npt.ArrayLike,
    t: npt.ArrayLike,
    vol: npt.ArrayLike,
    is_call: npt.ArrayLike,
    r: npt.ArrayLike = 0.0,
    q: npt.ArrayLike = 0.0,
) -> FloatArray:
    """Black-Scholes-Merton price ``w (S e^{-qT} N(w d1) - K e^{-rT} N(w d2))`` (w = +1 call).

    Never below the discounted intrinsic value ``max(w (S e^{-qT} - K e^{-rT}), 0)``; a zero vol
    (or vanishing ``vol sqrt t``) gives exactly that value. NaN where the inputs are invalid.
    """
    inp = _prepare(is_call, spot, strike, t, vol, r, q)
    sa, ka, ta, va, ra, qa = inp.arrays

    def run(sl: slice) -> tuple[FloatArray, ...]:
        c = _core(sa[sl], ka[sl], ta[sl], va[sl], ra[sl], qa[sl], inp.is_call[sl])
        nd = _ncdf(np.stack((c.w * c.d1, c.w * c.d2)))
        return (_price_block(c, nd[0], nd[1]),)

    with np.errstate(all="ignore"):
        (price,) = _blocked(sa.shape[0], 1, _BLOCK, run)
    return price.reshape(inp.shape)


def bs_delta(
    spot: npt.ArrayLike,
    strike: npt.ArrayLike,
    t: npt.ArrayLike,
    vol: npt.ArrayLike,
    is_call: npt.ArrayLike,
    r: npt.ArrayLike = 0.0,
    q: npt.ArrayLike = 0.0,
) -> FloatArray:
    """Delta ``w e^{-qT} N(w d1)`` alone (one CDF per option: the cheap path for chain scans)."""
    inp = _prepare(is_call, spot, strike, t, vol, r, q)
    sa, ka, ta, va, ra, qa = inp.arrays

    def run(sl: slice) -> tuple[FloatArray, ...]:
        c = _core(sa[sl], ka[sl], ta[sl], va[sl], ra[sl], qa[sl], inp.is_call[sl])
        delta = c.w * (c.sdq / sa[sl]) * _ncdf_flat(c.w * c.d1)
        delta[c.bad] = np.nan
        return (delta,)

    with np.errstate(all="ignore"):
        (delta,) = _blocked(sa.shape[0], 1, _BLOCK, run)
    return delta.reshape(inp.shape)


def bs_greeks(
    spot: npt.ArrayLike,
    strike: npt.ArrayLike,
    t: npt.ArrayLike,
    vol: npt.ArrayLike,
    is_call: npt.ArrayLike,
    r: npt.ArrayLike = 0.0,
    q: npt.ArrayLike = 0.0,
) -> Greeks:
    """Analytic delta, gamma, theta (per year) and vega (per 1.00 vol); see :class:`Greeks`.

    With ``phi = N'(d1)`` and ``w`` = +1 call / -1 put::

        delta = w e^{-qT} N(w d1)
        gamma = e^{-qT} phi / (S vol sqrt T)
        vega  = S e^{-qT} phi sqrt T
        theta = -S e^{-qT} phi vol / (2 sqrt T) - w r K e^{-rT} N(w d2) + w q S e^{-qT} N(w d1)
    """
    inp = _prepare(is_call, spot, strike, t, vol, r, q)
    sa, ka, ta, va, ra, qa = inp.arrays

    def run(sl: slice) -> tuple[FloatArray, ...]:
        s_, t_, r_, q_ = sa[sl], ta[sl], ra[sl], qa[sl]
        c = _core(s_, ka[sl], t_, va[sl], r_, q_, inp.is_call[sl])
        nd = _ncdf(np.stack((c.w * c.d1, c.w * c.d2)))
        sqrt_t = np.sqrt(t_)
        sdq_phi = c.sdq * np.exp(-0.5 * c.d1 * c.d1) * _INV_SQRT_2PI  # S e^{-qT} phi(d1)
        delta = c.w * (c.sdq / s_) * nd[0]
        gamma = sdq_phi / (s_ * s_ * np.maximum(c.s, _TINY))
        vega = sdq_phi * sqrt_t
        theta = c.w * (q_ * c.sdq * nd[0] - r_ * c.kdr * nd[1]) - sdq_phi * c.s / (2.0 * t_)
        for arr in (delta, gamma, theta, vega):
            arr[c.bad] = np.nan
        return delta, gamma, theta, vega

    with np.errstate(all="ignore"):
        delta, gamma, theta, vega = _blocked(sa.shape[0], 4, _BLOCK, run)
    shape = inp.shape
    return Greeks(
        delta.reshape(shape), gamma.reshape(shape), theta.reshape(shape), vega.reshape(shape)
    )


# --------------------------------------------------------------------------------------------
# Implied volatility
# --------------------------------------------------------------------------------------------


class IVStatus(IntEnum):
    """Outcome of :func:`implied_vol` per element."""

    OK = 0
    BELOW_INTRINSIC = 1  # price < discounted intrinsic (no-arbitrage lower bound): no IV
    ABOVE_MAX = 2  # price >= upper bound (S e^{-qT} call, K e^{-rT} put): no IV
    INVALID_INPUT = 3  # NaN/inf or non-positive S, K, T; negative or NaN price


class IVResult(NamedTuple):
    """Implied vols and statuses; ``iv`` is NaN exactly where ``status != IVStatus.OK``."""

    iv: FloatArray
    status: Int8Array


_BELOW_TOL = 1e-12  # a price this far (times spot) under the intrinsic value is rounding, not arb


def implied_vol(
    price: npt.ArrayLike,
    spot: npt.ArrayLike,
    strike: npt.ArrayLike,
    t: npt.ArrayLike,
    is_call: npt.ArrayLike,
    r: npt.ArrayLike = 0.0,
    q: npt.ArrayLike = 0.0,
    *,
    vol_low: float = 1e-4,
    vol_high: float = 10.0,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> IVResult:
    """Black-Scholes-Merton implied vol of ``price`` (vectorised, bracketed, never NaN when valid).

    Per element, with ``lower = max(w (S e^{-qT} - K e^{-rT}), 0)`` and ``upper = S e^{-qT}``
    (call) or ``K e^{-rT}`` (put):

    * invalid input (NaN/inf anywhere, S, K or t <= 0, price < 0) -> ``INVALID_INPUT``;
    * ``price < lower - 1e-12 * S`` -> ``BELOW_INTRINSIC``;  ``price >= upper`` -> ``ABOVE_MAX``;
    * otherwise ``OK`` with a finite iv in ``[vol_low, vol_high]``: a price at or below
      ``bs_price(vol_low)`` (including one within ``1e-12 * S`` under the intrinsic value, i.e. a
      quote with no measurable time value) gives exactly ``vol_low``; a price at or above
      ``bs_price(vol_high)`` (but under ``upper``) gives exactly ``vol_high``.

    Method (details in :func:`_solve_normalised` and :func:`_iterate`): the quote becomes the
    normalised out-of-the-money price ``b(x, s)`` with ``x = -|ln(F/K)|``, ``s = vol sqrt t``
    (in-the-money quotes via put-call parity, so the time value is never lost in a difference).
    As in Jaeckel's "Let's Be Rational", three regimes of ``s`` each get an objective that is
    close to linear in ``s`` and a starting point from the asymptotics of ``b``; bracketed Halley
    steps then converge in 2-4 iterations, falling back to geometric bisection whenever a step
    leaves the per-element bracket, so every element converges. ``tol`` is relative to ``s``
    (so to vol); if ``max_iter`` runs out the current bracketed estimate is returned (still OK).
    """
    if not (0.0 < vol_low < vol_high and math.isfinite(vol_high)):
        raise ValueError(f"need 0 < vol_low < vol_high < inf, got {vol_low}, {vol_high}")
    if not tol > 0.0 or max_iter < 1:
        raise ValueError(f"need tol > 0 and max_iter >= 1, got {tol}, {max_iter}")
    inp = _prepare(is_call, price, spot, strike, t, r, q)
    pa, sa, ka, ta, ra, qa = inp.arrays

    def run(sl: slice) -> tuple[FloatArray, ...]:
        iv, status = _iv_block(
            pa[sl], sa[sl], ka[sl], ta[sl], ra[sl], qa[sl], inp.is_call[sl],
            vol_low, vol_high, tol, max_iter,
        )  # fmt: skip
        return iv, status.astype(np.float64)

    with np.errstate(all="ignore"):
        iv, status = _blocked(pa.shape[0], 2, _IV_BLOCK, run)
    return IVResult(iv.reshape(inp.shape), status.astype(np.int8).reshape(inp.shape))


def _iv_block(
    price: FloatArray,
    spot: FloatArray,
    strike: FloatArray,
    t: FloatArray,
    r: FloatArray,
    q: FloatArray,
    is_call: BoolArray,
    vol_low: float,
    vol_high: float,
    tol: float,
    max_iter: int,
) -> tuple[FloatArray, Int8Array]:
    n = price.shape[0]
    iv = np.full(n, np.nan)
    status = np.full(n, IVStatus.INVALID_INPUT, dtype=np.int8)
    valid = (spot > 0.0) & (strike > 0.0) & (t > 0.0) & (price >= 0.0)
    valid &= np.isfinite(price + spot + strike + t + r + q)
    w = np.where(is_call, 1.0, -1.0)
    sdq = spot * np.exp(-q * t)  # S e^{-qT} = F e^{-rT}
    kdr = strike * np.exp(-r * t)  # K e^{-rT}
    fwd_intrinsic = w * (sdq - kdr)  # discounted w (F - K)
    lower = np.maximum(fwd_intrinsic, 0.0)
    upper = np.where(is_call, sdq, kdr)
    below = valid & (price < lower - _BELOW_TOL * spot)
    above = valid & ~below & (price >= upper)
    status[below] = IVStatus.BELOW_INTRINSIC
    status[above] = IVStatus.ABOVE_MAX
    solve = valid & ~below & ~above
    status[solve] = IVStatus.OK
    sel = np.flatnonzero(solve)
    if sel.size:
        sqrt_t = np.sqrt(t[sel])
        s_lo, s_hi = vol_low * sqrt_t, vol_high * sqrt_t
        s = _solve_normalised(
            price[sel], fwd_intrinsic[sel], sdq[sel], kdr[sel], w[sel], s_lo, s_hi, tol, max_iter
        )
        # exactly vol_low / vol_high at the clamps (s_hi / sqrt_t need not round to vol_high)
        vol = np.minimum(np.maximum(s / sqrt_t, vol_low), vol_high)
        iv[sel] = np.where(s >= s_hi, vol_high, np.where(s <= s_lo, vol_low, vol))
    return iv, status


def _branch_value(
    x: FloatArray, s: FloatArray, sig: FloatArray, ex: FloatArray, emx: FloatArray
) -> FloatArray:
    """``b(x, s)`` (sig = +1) or ``b_max - b(x, s)`` (sig = -1), each free of cancellation.

    ``b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2)`` is the normalised Black call price
    (``x = ln(F/K) <= 0``); ``b_max - b = e^{x/2} N(-x/s - s/2) + e^{-x/2} N(x/s - s/2)``.
    """
    xs = x / s
    nd = _ncdf_flat(np.concatenate((sig * (xs + 0.5 * s), xs - 0.5 * s)))
    m = x.shape[0]
    out: FloatArray = ex * nd[:m] - sig * emx * nd[m:]
    return out


def _solve_normalised(
    price: FloatArray,
    fwd_intrinsic: FloatArray,
    sdq: FloatArray,
    kdr: FloatArray,
    w: FloatArray,
    s_lo: FloatArray,
    s_hi: FloatArray,
    tol: float,
    max_iter: int,
) -> FloatArray:
    """Total implied std-dev ``s = vol sqrt t``, clamped to ``[s_lo, s_hi]``, of in-bounds quotes.

    The quote becomes the normalised out-of-the-money price ``beta = otm / sqrt(F K)`` (an
    in-the-money quote through put-call parity), to be matched by ``b(x, s)`` with
    ``x = -|ln(F/K)|``; ``b`` rises from 0 to ``b_max = e^{x/2}``, convex below its inflection
    point ``s_c = sqrt(2|x|)`` and concave above it. Following Jaeckel ("Let's Be Rational",
    2015) the range splits in three, each with an objective close to linear in ``s``:

    * upper, ``beta >= b(s_c)``: ``ln(b_max - b)``, computed without cancellation; start from
      ``b_max - b ~ (e^{x/2} + e^{-x/2}) N(-s/2)`` (exact at x = 0);
    * lowest (small ``s``, where ``b ~ (2 pi |x| / (3 sqrt 3)) N(-|x| / (sqrt 3 s))^3``, which
      also gives the start): ``|x| / sqrt(-2 ln b)``, which tends to ``s`` itself as ``s -> 0``;
    * middle, in between: ``b`` itself, from the tangent at ``s_c`` (``b`` is convex there, so
      that start lies at or above the root).

    The solver is :func:`_iterate`.
    """
    xr = np.log(sdq / kdr)  # ln(F / K)
    itm = w * xr > 0.0
    beta = np.where(itm, price - fwd_intrinsic, price) / np.sqrt(sdq * kdr)
    x = -np.abs(xr)
    ex = np.exp(0.5 * x)  # e^{x/2} = b_max
    emx = 1.0 / ex
    s_c = np.sqrt(-2.0 * x)
    b_c = 0.5 * ex - emx * _ncdf_flat(-s_c)  # b(s_c): d1 = 0, d2 = -s_c
    upper = ~(beta < b_c)
    target = np.where(upper, ex - beta, beta)  # of b, or of b_max - b in the upper branch
    # The root is below s_c in the lower branch and above it in the upper one.
    clamp_low = (beta <= 0.0) | (~upper & (s_c <= s_lo))
    clamp_high = ~clamp_low & ((target <= 0.0) | (upper & (s_c >= s_hi)))
    out = np.where(clamp_low, s_lo, s_hi)
    rest = np.flatnonzero(~(clamp_low | clamp_high))
    if rest.size == 0:
        return out

    x, ex, emx, s_c, b_c = x[rest], ex[rest], emx[rest], s_c[rest], b_c[rest]
    beta, target, upper, s_lo, s_hi = beta[rest], target[rest], upper[rest], s_lo[rest], s_hi[rest]
    ax = -x
    lo = np.where(upper, np.maximum(s_lo, s_c), s_lo)
    hi = np.where(upper, s_hi, np.minimum(s_hi, s_c))
    vega_c = ex * _INV_SQRT_2PI  # b'(s_c)
    s_l = s_c - b_c / vega_c  # where the tangent at s_c crosses zero
    p_low = np.cbrt(beta * (3.0 * math.sqrt(3.0) / (2.0 * math.pi)) / np.maximum(ax, _TINY))
    p = np.where(upper, target / (ex + emx), np.minimum(p_low, 0.49))
    z = _inv_ncdf_lower(np.clip(p, 1e-300, 0.5))  # <= 0
    s_asym = ax / (-math.sqrt(3.0) * z)
    lowest = ~upper & (s_asym < s_l)
    s0 = np.where(upper, -2.0 * z, np.where(lowest, s_asym, s_l + beta / vega_c))
    s0 = np.minimum(np.maximum(s0, lo), hi)
    # What each objective aims at: |x| / sqrt(-2 ln beta), ln(b_max - beta), or beta itself.
    aim = np.where(lowest, ax / np.sqrt(-2.0 * np.log(beta)), np.where(upper, np.log(target), beta))
    # Per-element state, one row each, so that dropping converged elements is two calls.
    state = np.stack((x, ex, emx, np.where(upper, -1.0, 1.0), target, aim, s_lo, s_hi, lo, hi, s0))
    flags = np.stack((lowest, upper, lo <= s_lo, hi >= s_hi))
    out[rest] = _iterate(state, flags, tol, max_iter)
    return out


def _iterate(state: FloatArray, flags: BoolArray, tol: float, max_iter: int) -> FloatArray:
    """Bracketed Halley iteration, all elements at once; converged ones drop out.

    ``state`` rows: x, e^{x/2}, e^{-x/2}, sig (+1: match b = target; -1, upper branch: match
    b_max - b = target), target, aim (the objective's target value), s_lo, s_hi, lo, hi, s.
    ``flags`` rows: lowest branch, upper branch, lo not yet evaluated (= s_lo), hi likewise.

    Each element keeps ``lo < root < hi``. A step that leaves the bracket goes to geometric
    bisection, or first probes ``s_lo`` / ``s_hi`` when that end has not been evaluated yet: a
    quote beyond it converges there (the vol_low / vol_high clamp). Stops when the step, or the
    Newton estimate of the error left after it, is below ``tol * s``, or the bracket is that
    narrow. Returns the final ``s`` per element.
    """
    result: FloatArray = state[10].copy()
    idx = np.arange(result.shape[0])
    for _ in range(max_iter):
        x, ex, emx, sig, target, aim, s_lo, s_hi, lo, hi, s = state
        lowest, upper, lo_open, hi_open = flags
        xs = x / s
        val = _branch_value(x, s, sig, ex, emx)
        too_small = sig * (val - target) < 0.0
        clamped = (too_small & (s >= s_hi)) | (~too_small & (s <= s_lo))
        lo[...] = np.where(too_small, s, lo)
        hi[...] = np.where(too_small, hi, s)
        lo_open &= ~too_small
        hi_open &= too_small
        # Newton step n and c = g''/g' of each objective g; b''/b' = x^2/s^3 - s/4.
        vega = np.exp(-0.5 * xs * xs - 0.125 * s * s) * _INV_SQRT_2PI  # b'(s)
        q = vega / val  # (ln b)' or -(ln(b_max - b))'
        lv = np.log(val)
        curv = xs * xs / s - 0.25 * s
        h = -2.0 * lv
        n_low = (aim * np.sqrt(h) + x) * h / (-x * q)  # objective |x| / sqrt(-2 ln b)
        n = np.where(upper, (lv - aim) / q, np.where(lowest, n_low, (aim - val) / vega))
        c = np.where(upper, curv + q, np.where(lowest, 3.0 * q / h + curv - q, curv))
        half_nc = 0.5 * n * c
        step = np.where(np.abs(half_nc) < 0.5, n / (1.0 + half_nc), n)
        # Converged when the step is below tol, or when the error left after this (Halley) step,
        # ~ (c^2 + 1/s^2) step^3 for these near-linear objectives, is 10x below it.
        abs_step = np.abs(step)
        rel = step / s
        cs = c * step
        small = (abs_step <= tol * s) | (
            (abs_step <= 1e-2 * s) & ((cs * cs + rel * rel) * abs_step <= 0.1 * tol * s)
        )
        s_new = s + step
        inside = (s_new > lo) & (s_new < hi)
        fallback = np.where(
            lo_open & (s_new <= lo), lo, np.where(hi_open & (s_new >= hi), hi, np.sqrt(lo * hi))
        )
        s_new = np.where(inside | small, s_new, fallback)
        s[...] = np.where(clamped, s, s_new)
        done = clamped | small | (hi - lo <= tol * lo)
        if done.any():
            result[idx[done]] = s[done]
            keep = np.flatnonzero(~done)
            if keep.size == 0:
                return result
            idx, state, flags = idx[keep], state[:, keep], flags[:, keep]
    result[idx] = state[10]
    return result
