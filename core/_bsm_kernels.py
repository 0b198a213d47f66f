"""Compiled per-element loops behind :mod:`core.pricing` (numba, ``cache=True``).

Private: call the public functions of :mod:`core.pricing`, which broadcast and validate their
arguments and import this module on first use, so importing ``core.pricing`` does not import numba
(about 0.8 s). The kernels take contiguous 1-d float64 / bool arrays of one length and write into
output arrays of that length. The mathematics (and its references) is documented in
:mod:`core.pricing`; each loop body here is the scalar form of that description.

Why compiled: at chain size (hundreds of contracts) a numpy formulation is dominated by the
per-call dispatch of the few hundred array operations an iterative solver needs (~0.8 ms per
300-contract chain); one compiled pass per element does the same arithmetic without temporaries.

Compilation: lazily on first call, cached on disk next to this file (``__pycache__``, or numba's
user-wide cache directory when that is not writable), so only the first process after a change of
this file pays the compile (a few seconds). ``error_model="numpy"``: a division by zero gives
inf/NaN as in numpy, never an exception; no ``fastmath``, so NaN/inf and IEEE rounding hold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Int8Array = npt.NDArray[np.int8]

_F = TypeVar("_F", bound=Callable[..., object])


def _jit(fn: _F) -> _F:
    """``numba.njit`` with the settings above, typed for mypy as the identity."""
    return cast(_F, numba.njit(cache=True, error_model="numpy", nogil=True)(fn))


_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT1_2 = 1.0 / math.sqrt(2.0)
_SQRPI = 5.6418958354775628695e-1  # 1 / sqrt(pi)
_TINY = 1e-300
_NAN = math.nan
_SQRT3 = math.sqrt(3.0)
_LOW_ASYM = 3.0 * math.sqrt(3.0) / (2.0 * math.pi)

# W. J. Cody's CALERF coefficients (see core.pricing).
_A0, _A1, _A2, _A3, _A4 = (
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
)
_B0, _B1, _B2, _B3 = (
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
)
_C0, _C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8 = (
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
_D0, _D1, _D2, _D3, _D4, _D5, _D6, _D7 = (
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
)
_P0, _P1, _P2, _P3, _P4, _P5 = (
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
)
_Q0, _Q1, _Q2, _Q3, _Q4 = (
    2.56852019228982242e00,
    1.87295284992346047e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
)

# Acklam's inverse normal CDF (starting points only; see core.pricing).
_KA0, _KA1, _KA2, _KA3, _KA4, _KA5 = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_KB0, _KB1, _KB2, _KB3, _KB4 = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_KC0, _KC1, _KC2, _KC3, _KC4, _KC5 = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_KD0, _KD1, _KD2, _KD3 = (
    7.784695709041462e-03,
    3.224671290700398e-01,
    2.445134137142996e00,
    3.754408661907416e00,
)
_ACK_P_LOW = 0.02425

# IVStatus values (core.pricing.IVStatus; repeated here so this module does not import it).
_OK, _BELOW, _ABOVE, _INVALID = 0, 1, 2, 3
_BELOW_TOL = 1e-12  # a price this far (times spot) under the intrinsic value is rounding, not arb


# --------------------------------------------------------------------------------------------
# Scalar helpers
# --------------------------------------------------------------------------------------------


@_jit
def _fmax(a: float, b: float) -> float:
    """``np.maximum`` of two floats (NaN if either is NaN)."""
    return a if (a >= b or math.isnan(a)) else b


@_jit
def _fmin(a: float, b: float) -> float:
    """``np.minimum`` of two floats (NaN if either is NaN)."""
    return a if (a <= b or math.isnan(a)) else b


# exp(-(k/16)^2) for k = 0..448 (16 * 28): the exact-square part of exp(-y^2) in erfc1, the very
# values math.exp gives at run time (both are the C library's exp).
_EXP_SQ16 = np.array([math.exp(-(k * 0.0625) * (k * 0.0625)) for k in range(449)])


@_jit
def erfc1(y: float) -> float:
    """Cody's erfc of one float (~1e-15 relative; NaN in, NaN out)."""
    if math.isnan(y):
        return y
    if y > 28.0:  # erfc(28) underflows to 0 and erfc(-28) rounds to 2; this also tames +-inf
        y = 28.0
    elif y < -28.0:
        y = -28.0
    ay = abs(y)
    if ay <= 0.46875:
        t = y * y
        num = _A4 * t
        den = t
        num = (num + _A0) * t
        den = (den + _B0) * t
        num = (num + _A1) * t
        den = (den + _B1) * t
        num = (num + _A2) * t
        den = (den + _B2) * t
        return 1.0 - y * (num + _A3) / (den + _B3)
    if ay <= 4.0:
        num = _C8 * ay
        den = ay
        num = (num + _C0) * ay
        den = (den + _D0) * ay
        num = (num + _C1) * ay
        den = (den + _D1) * ay
        num = (num + _C2) * ay
        den = (den + _D2) * ay
        num = (num + _C3) * ay
        den = (den + _D3) * ay
        num = (num + _C4) * ay
        den = (den + _D4) * ay
        num = (num + _C5) * ay
        den = (den + _D5) * ay
        num = (num + _C6) * ay
        den = (den + _D6) * ay
        rat = (num + _C7) / (den + _D7)
    else:
        t = 1.0 / (ay * ay)
        num = _P5 * t
        den = t
        num = (num + _P0) * t
        den = (den + _Q0) * t
        num = (num + _P1) * t
        den = (den + _Q1) * t
        num = (num + _P2) * t
        den = (den + _Q2) * t
        num = (num + _P3) * t
        den = (den + _Q3) * t
        rat = (_SQRPI - t * (num + _P4) / (den + _Q4)) / ay
    # exp(-ay^2) to full relative accuracy: ay^2 = zs^2 + (ay - zs)(ay + zs), zs^2 exact
    k = int(ay * 16.0)  # ay <= 28: trunc(16 ay) in 0..448
    zs = k * 0.0625
    rat *= float(_EXP_SQ16[k]) * math.exp(-(ay - zs) * (ay + zs))
    return 2.0 - rat if y < 0.0 else rat


@_jit
def ncdf1(x: float) -> float:
    """Standard normal CDF of one float: 0.5 erfc(-x / sqrt 2)."""
    return 0.5 * erfc1(x * -_SQRT1_2)


@_jit
def _inv_ncdf_lower1(p: float) -> float:
    """Acklam's inverse normal CDF for ``0 < p <= 0.5``."""
    if p < _ACK_P_LOW:
        q = math.sqrt(-2.0 * math.log(p))
        num = ((((_KC0 * q + _KC1) * q + _KC2) * q + _KC3) * q + _KC4) * q + _KC5
        return num / (((((_KD0 * q + _KD1) * q + _KD2) * q + _KD3) * q) + 1.0)
    c = p - 0.5
    rr = c * c
    num = ((((_KA0 * rr + _KA1) * rr + _KA2) * rr + _KA3) * rr + _KA4) * rr + _KA5
    den = ((((_KB0 * rr + _KB1) * rr + _KB2) * rr + _KB3) * rr + _KB4) * rr + 1.0
    return num * c / den


# --------------------------------------------------------------------------------------------
# Array kernels: erfc, prices, greeks
# --------------------------------------------------------------------------------------------


@_jit
def erfc_into(y: FloatArray, out: FloatArray) -> None:
    for i in range(y.shape[0]):
        out[i] = erfc1(y[i])


@_jit
def ncdf_into(x: FloatArray, out: FloatArray) -> None:
    for i in range(x.shape[0]):
        out[i] = ncdf1(x[i])


@_jit
def valid_price_inputs(s_: float, k_: float, t_: float, v_: float, r_: float, q_: float) -> bool:
    """Finite inputs with S, K, T > 0 and vol >= 0 (else the price is NaN)."""
    return (s_ > 0.0 and k_ > 0.0 and t_ > 0.0 and v_ >= 0.0) and math.isfinite(
        s_ + k_ + t_ + v_ + r_ + q_
    )


@_jit
def price1(
    s_: float,
    k_: float,
    t_: float,
    v_: float,
    r_: float,
    q_: float,
    w: float,
    eq: float,
    er: float,
    sqrt_t: float,
) -> float:
    """One price from valid inputs (``w`` = +1 call, -1 put; ``eq``, ``er``, ``sqrt_t``: exp(-qT),
    exp(-rT), sqrt(T)), never below the discounted intrinsic value."""
    sdq = s_ * eq
    kdr = k_ * er
    s = v_ * sqrt_t
    d1 = (math.log(s_ / k_) + (r_ - q_) * t_) / max(s, _TINY) + 0.5 * s
    d2 = d1 - s
    p = w * (sdq * ncdf1(w * d1) - kdr * ncdf1(w * d2))
    # no-arbitrage floor: rounding in the difference can dip below the discounted intrinsic
    floor = w * (sdq - kdr)
    if not floor > 0.0:
        floor = 0.0
    return p if p > floor else floor


@_jit
def price_into(
    spot: FloatArray,
    strike: FloatArray,
    t: FloatArray,
    vol: FloatArray,
    r: FloatArray,
    q: FloatArray,
    is_call: BoolArray,
    price: FloatArray,
) -> None:
    t0 = r0 = q0 = eq = er = sqrt_t = _NAN
    for i in range(spot.shape[0]):
        s_, k_, t_, v_, r_, q_ = spot[i], strike[i], t[i], vol[i], r[i], q[i]
        if not valid_price_inputs(s_, k_, t_, v_, r_, q_):
            price[i] = _NAN
            continue
        if not (t_ == t0 and r_ == r0 and q_ == q0):  # a chain shares t, r and q
            t0, r0, q0 = t_, r_, q_
            eq, er, sqrt_t = math.exp(-q_ * t_), math.exp(-r_ * t_), math.sqrt(t_)
        w = 1.0 if is_call[i] else -1.0
        price[i] = price1(s_, k_, t_, v_, r_, q_, w, eq, er, sqrt_t)


@_jit
def delta1(
    s_: float,
    k_: float,
    t_: float,
    v_: float,
    r_: float,
    q_: float,
    w: float,
    eq: float,
    sqrt_t: float,
) -> float:
    """Delta of one valid row; ``eq = e^{-qT}``, ``sqrt_t = sqrt(T)`` (shared by bs_delta,
    implied_vol_delta and the chain scan, so all give the same bits for the same vol)."""
    s = v_ * sqrt_t
    d1 = (math.log(s_ / k_) + (r_ - q_) * t_) / max(s, _TINY) + 0.5 * s
    return w * (s_ * eq / s_) * ncdf1(w * d1)


@_jit
def delta_into(
    spot: FloatArray,
    strike: FloatArray,
    t: FloatArray,
    vol: FloatArray,
    r: FloatArray,
    q: FloatArray,
    is_call: BoolArray,
    delta: FloatArray,
) -> None:
    t0 = q0 = eq = sqrt_t = _NAN
    for i in range(spot.shape[0]):
        s_, k_, t_, v_, r_, q_ = spot[i], strike[i], t[i], vol[i], r[i], q[i]
        if not (s_ > 0.0 and k_ > 0.0 and t_ > 0.0 and v_ >= 0.0) or not math.isfinite(
            s_ + k_ + t_ + v_ + r_ + q_
        ):
            delta[i] = _NAN
            continue
        if not (t_ == t0 and q_ == q0):  # a chain shares t and q
            t0, q0 = t_, q_
            eq, sqrt_t = math.exp(-q_ * t_), math.sqrt(t_)
        delta[i] = delta1(s_, k_, t_, v_, r_, q_, 1.0 if is_call[i] else -1.0, eq, sqrt_t)


@_jit
def greeks_into(
    spot: FloatArray,
    strike: FloatArray,
    t: FloatArray,
    vol: FloatArray,
    r: FloatArray,
    q: FloatArray,
    is_call: BoolArray,
    delta: FloatArray,
    gamma: FloatArray,
    theta: FloatArray,
    vega: FloatArray,
) -> None:
    t0 = r0 = q0 = eq = er = sqrt_t = _NAN
    for i in range(spot.shape[0]):
        s_, k_, t_, v_, r_, q_ = spot[i], strike[i], t[i], vol[i], r[i], q[i]
        if not (s_ > 0.0 and k_ > 0.0 and t_ > 0.0 and v_ >= 0.0) or not math.isfinite(
            s_ + k_ + t_ + v_ + r_ + q_
        ):
            delta[i] = gamma[i] = theta[i] = vega[i] = _NAN
            continue
        if not (t_ == t0 and r_ == r0 and q_ == q0):  # a chain shares t, r and q
            t0, r0, q0 = t_, r_, q_
            eq, er, sqrt_t = math.exp(-q_ * t_), math.exp(-r_ * t_), math.sqrt(t_)
        w = 1.0 if is_call[i] else -1.0
        sdq = s_ * eq
        kdr = k_ * er
        s = v_ * sqrt_t
        d1 = (math.log(s_ / k_) + (r_ - q_) * t_) / max(s, _TINY) + 0.5 * s
        n1 = ncdf1(w * d1)
        n2 = ncdf1(w * (d1 - s))
        sdq_phi = sdq * math.exp(-0.5 * d1 * d1) * _INV_SQRT_2PI  # S e^{-qT} phi(d1)
        delta[i] = w * (sdq / s_) * n1
        gamma[i] = sdq_phi / (s_ * s_ * max(s, _TINY))
        vega[i] = sdq_phi * sqrt_t
        theta[i] = w * (q_ * sdq * n1 - r_ * kdr * n2) - sdq_phi * s / (2.0 * t_)


# --------------------------------------------------------------------------------------------
# Implied volatility
# --------------------------------------------------------------------------------------------


@_jit
def _iterate1(
    x: float,
    ex: float,
    emx: float,
    upper: bool,
    lowest: bool,
    target: float,
    aim: float,
    s_lo: float,
    s_hi: float,
    lo: float,
    hi: float,
    s: float,
    tol: float,
    max_iter: int,
) -> float:
    """Bracketed Halley iteration, one element (the former vectorised ``_iterate`` in scalar form).

    Arguments: x, e^{x/2}, e^{-x/2}, the branch (upper: match b_max - b = target, else
    b = target; lowest: the small-``s`` objective), target, aim (the objective's target value),
    s_lo, s_hi, the bracket lo, hi (an end equal to s_lo / s_hi is not yet evaluated), start s.

    Each element keeps ``lo < root < hi``. A step that leaves the bracket goes to geometric
    bisection, or first probes ``s_lo`` / ``s_hi`` when that end has not been evaluated yet: a
    quote beyond it converges there (the vol_low / vol_high clamp). Stops when the step, or the
    Newton estimate of the error left after it, is below ``tol * s``, or the bracket is that
    narrow. Returns the final ``s`` per element.
    """
    sig = -1.0 if upper else 1.0
    lo_open = lo <= s_lo
    hi_open = hi >= s_hi
    for _ in range(max_iter):
        xs = x / s
        val = ex * ncdf1(sig * (xs + 0.5 * s)) - sig * emx * ncdf1(xs - 0.5 * s)
        too_small = sig * (val - target) < 0.0
        clamped = (too_small and s >= s_hi) or (not too_small and s <= s_lo)
        if too_small:
            lo = s
            lo_open = False
        else:
            hi = s
            hi_open = False
        # Newton step n and c = g''/g' of each objective g; b''/b' = x^2/s^3 - s/4.
        vega = math.exp(-0.5 * xs * xs - 0.125 * s * s) * _INV_SQRT_2PI  # b'(s)
        qv = vega / val  # (ln b)' or -(ln(b_max - b))'
        lv = math.log(val)
        curv = xs * xs / s - 0.25 * s
        if upper:
            n = (lv - aim) / qv
            c = curv + qv
        elif lowest:
            h = -2.0 * lv
            n = (aim * math.sqrt(h) + x) * h / (-x * qv)  # objective |x| / sqrt(-2 ln b)
            c = 3.0 * qv / h + curv - qv
        else:
            n = (aim - val) / vega
            c = curv
        half_nc = 0.5 * n * c
        step = n / (1.0 + half_nc) if abs(half_nc) < 0.5 else n
        abs_step = abs(step)
        rel = step / s
        cs = c * step
        small = (abs_step <= tol * s) or (
            (abs_step <= 1e-2 * s) and ((cs * cs + rel * rel) * abs_step <= 0.1 * tol * s)
        )
        s_new = s + step
        if not ((s_new > lo and s_new < hi) or small):
            if lo_open and s_new <= lo:
                s_new = lo
            elif hi_open and s_new >= hi:
                s_new = hi
            else:
                s_new = math.sqrt(lo * hi)
        if not clamped:
            s = s_new
        if clamped or small or (hi - lo <= tol * lo):
            return s
    return s


@_jit
def _solve1(
    price: float,
    fwd_intrinsic: float,
    sdq: float,
    kdr: float,
    w: float,
    s_lo: float,
    s_hi: float,
    tol: float,
    max_iter: int,
) -> float:
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

    The solver is :func:`_iterate1`.
    """
    xr = math.log(sdq / kdr)  # ln(F / K)
    itm = w * xr > 0.0
    beta = (price - fwd_intrinsic if itm else price) / math.sqrt(sdq * kdr)
    x = -abs(xr)
    ex = math.exp(0.5 * x)  # e^{x/2} = b_max
    emx = 1.0 / ex
    s_c = math.sqrt(-2.0 * x)
    b_c = 0.5 * ex - emx * ncdf1(-s_c)  # b(s_c): d1 = 0, d2 = -s_c
    upper = not (beta < b_c)
    target = ex - beta if upper else beta
    if beta <= 0.0 or (not upper and s_c <= s_lo):
        return s_lo
    if target <= 0.0 or (upper and s_c >= s_hi):
        return s_hi
    ax = -x
    if upper:
        lo, hi = _fmax(s_lo, s_c), s_hi
    else:
        lo, hi = s_lo, _fmin(s_hi, s_c)
    vega_c = ex * _INV_SQRT_2PI  # b'(s_c)
    s_l = s_c - b_c / vega_c  # where the tangent at s_c crosses zero
    p = target / (ex + emx) if upper else _fmin(np.cbrt(beta * _LOW_ASYM / _fmax(ax, _TINY)), 0.49)
    z = _inv_ncdf_lower1(_fmin(_fmax(p, 1e-300), 0.5))  # <= 0
    s_asym = ax / (-_SQRT3 * z)
    lowest = not upper and s_asym < s_l
    if upper:
        s0 = -2.0 * z
        aim = math.log(target)
    elif lowest:
        s0 = s_asym
        aim = ax / math.sqrt(-2.0 * math.log(beta))
    else:
        s0 = s_l + beta / vega_c
        aim = beta
    s0 = _fmin(_fmax(s0, lo), hi)
    return _iterate1(x, ex, emx, upper, lowest, target, aim, s_lo, s_hi, lo, hi, s0, tol, max_iter)


@_jit
def valid_iv_inputs(p: float, s_: float, k_: float, t_: float, r_: float, q_: float) -> bool:
    """Finite inputs with S, K, T > 0 and a price >= 0 (else ``INVALID_INPUT``)."""
    return (s_ > 0.0 and k_ > 0.0 and t_ > 0.0 and p >= 0.0) and math.isfinite(
        p + s_ + k_ + t_ + r_ + q_
    )


@_jit
def iv_status1(p: float, s_: float, k_: float, call: bool, eq: float, er: float) -> int:
    """IVStatus of one row with valid inputs, without solving: ``iv1`` finds a vol (OK) exactly
    when the price lies within the no-arbitrage bounds checked here."""
    sdq = s_ * eq  # S e^{-qT} = F e^{-rT}
    kdr = k_ * er  # K e^{-rT}
    fwd_intrinsic = (1.0 if call else -1.0) * (sdq - kdr)  # discounted w (F - K)
    if p < max(fwd_intrinsic, 0.0) - _BELOW_TOL * s_:
        return _BELOW
    if p >= (sdq if call else kdr):
        return _ABOVE
    return _OK


@_jit
def iv1(
    p: float,
    s_: float,
    k_: float,
    call: bool,
    eq: float,
    er: float,
    sqrt_t: float,
    vol_low: float,
    vol_high: float,
    tol: float,
    max_iter: int,
) -> tuple[float, int]:
    """(implied vol, IVStatus) of one row with valid inputs; ``eq = e^{-qT}``, ``er = e^{-rT}``,
    ``sqrt_t = sqrt(T)``. The vol is NaN unless the status is OK."""
    code = iv_status1(p, s_, k_, call, eq, er)
    if code != _OK:
        return _NAN, code
    w = 1.0 if call else -1.0
    sdq = s_ * eq
    kdr = k_ * er
    fwd_intrinsic = w * (sdq - kdr)
    s_lo, s_hi = vol_low * sqrt_t, vol_high * sqrt_t
    s = _solve1(p, fwd_intrinsic, sdq, kdr, w, s_lo, s_hi, tol, max_iter)
    # exactly vol_low / vol_high at the clamps (s_hi / sqrt_t need not round to vol_high)
    if s >= s_hi:
        return vol_high, _OK
    if s <= s_lo:
        return vol_low, _OK
    return _fmin(_fmax(s / sqrt_t, vol_low), vol_high), _OK


@_jit
def iv_into(
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
    iv: FloatArray,
    status: Int8Array,
    with_delta: bool,
    delta: FloatArray,
) -> None:
    """Implied vol and status per row; with ``with_delta`` also the delta at that vol (NaN where
    the status is not OK) into ``delta`` (which must then have the length of ``price``)."""
    t0 = r0 = q0 = eq = er = sqrt_t = _NAN
    for i in range(price.shape[0]):
        p, s_, k_, t_, r_, q_ = price[i], spot[i], strike[i], t[i], r[i], q[i]
        iv[i] = _NAN
        if with_delta:
            delta[i] = _NAN
        if not valid_iv_inputs(p, s_, k_, t_, r_, q_):
            status[i] = _INVALID
            continue
        if not (t_ == t0 and r_ == r0 and q_ == q0):  # a chain shares t, r and q
            t0, r0, q0 = t_, r_, q_
            eq, er, sqrt_t = math.exp(-q_ * t_), math.exp(-r_ * t_), math.sqrt(t_)
        call = is_call[i]
        vol, code = iv1(p, s_, k_, call, eq, er, sqrt_t, vol_low, vol_high, tol, max_iter)
        status[i] = code
        iv[i] = vol
        if with_delta and code == _OK:
            w = 1.0 if call else -1.0
            delta[i] = delta1(s_, k_, t_, vol, r_, q_, w, eq, sqrt_t)
