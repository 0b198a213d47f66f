"""Black-Scholes-Merton pricing kernel: prices, analytic greeks, implied vol, time to expiry.

Float64 throughout; every function broadcasts its arguments like a numpy ufunc, so a whole option
chain is priced in one call. Conventions:

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
``vol sqrt t`` gives the discounted intrinsic value, never NaN.

Execution: the functions here broadcast and flatten their arguments with numpy, then run one
compiled loop over the elements (:mod:`core._bsm_kernels`, numba, cached on disk; imported on the
first pricing call, so importing this module stays cheap). At chain size the former pure-numpy
formulation was dominated by the dispatch of a few hundred array operations per call (README
"Performance").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

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


def _flat_float(x: npt.ArrayLike) -> tuple[FloatArray, tuple[int, ...]]:
    arr = np.asarray(x, dtype=np.float64)
    return np.ascontiguousarray(arr).reshape(-1), arr.shape


def erfc(x: npt.ArrayLike) -> FloatArray:
    """Complementary error function, vectorised (Cody's rational approximations, ~1e-15 rel.)."""
    from core import _bsm_kernels as kern

    flat, shape = _flat_float(x)
    out = np.empty_like(flat)
    kern.erfc_into(flat, out)
    return out.reshape(shape)


def norm_cdf(x: npt.ArrayLike) -> FloatArray:
    """Standard normal CDF, accurate to ~1e-15 relative deep in both tails."""
    from core import _bsm_kernels as kern

    flat, shape = _flat_float(x)
    out = np.empty_like(flat)
    kern.ncdf_into(flat, out)
    return out.reshape(shape)


def norm_pdf(x: npt.ArrayLike) -> FloatArray:
    """Standard normal density."""
    arr = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        out: FloatArray = np.exp(-0.5 * arr * arr) * _INV_SQRT_2PI
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
    """Broadcast ``is_call`` and the float arguments to one shape and flatten them.

    Written for the common case, where the per-call cost matters at chain size: float64 arrays of
    one shape and Python floats are used as they are (np.broadcast_shapes alone costs ~3 us).
    """
    flag = np.asarray(is_call, dtype=np.bool_)
    floats = [
        a if type(a) is np.ndarray and a.dtype == np.float64 else np.asarray(a, dtype=np.float64)
        for a in args
    ]
    shape: tuple[int, ...] = flag.shape
    for f in floats:
        if f.ndim and f.shape != shape:
            if shape:
                shape = np.broadcast_shapes(flag.shape, *(g.shape for g in floats))
                break
            shape = f.shape
    size = math.prod(shape)
    return _Inputs(shape, tuple(_flat(f, shape, size) for f in floats), _flat(flag, shape, size))


def _flat(a: npt.NDArray[_G], shape: tuple[int, ...], size: int) -> npt.NDArray[_G]:
    """``a`` broadcast to ``shape``, as a contiguous 1-d array (no copy when it already is)."""
    if a.shape == shape:
        if a.ndim == 1 and a.flags.c_contiguous:
            return a
        return np.ascontiguousarray(a).reshape(size)
    if a.ndim == 0:
        out = np.empty(size, dtype=a.dtype)
        out.fill(a)  # (faster than np.full)
        return out
    return np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(size)


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
    from core import _bsm_kernels as kern

    inp = _prepare(is_call, spot, strike, t, vol, r, q)
    price = np.empty(inp.is_call.shape[0], dtype=np.float64)
    sa, ka, ta, va, ra, qa = inp.arrays
    kern.price_into(sa, ka, ta, va, ra, qa, inp.is_call, price)
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
    from core import _bsm_kernels as kern

    inp = _prepare(is_call, spot, strike, t, vol, r, q)
    delta = np.empty(inp.is_call.shape[0], dtype=np.float64)
    sa, ka, ta, va, ra, qa = inp.arrays
    kern.delta_into(sa, ka, ta, va, ra, qa, inp.is_call, delta)
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
    from core import _bsm_kernels as kern

    inp = _prepare(is_call, spot, strike, t, vol, r, q)
    n = inp.is_call.shape[0]
    out = np.empty((4, n), dtype=np.float64)
    delta, gamma, theta, vega = out
    sa, ka, ta, va, ra, qa = inp.arrays
    kern.greeks_into(sa, ka, ta, va, ra, qa, inp.is_call, delta, gamma, theta, vega)
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


VOL_LOW, VOL_HIGH = 1e-4, 10.0
"""Default bounds of :func:`implied_vol`: a solvable quote gets an iv in ``[VOL_LOW, VOL_HIGH]``."""
IV_TOL, IV_MAX_ITER = 1e-10, 100
"""Default tolerance (relative to vol) and iteration cap of :func:`implied_vol`."""


class IVResult(NamedTuple):
    """Implied vols and statuses; ``iv`` is NaN exactly where ``status != IVStatus.OK``."""

    iv: FloatArray
    status: Int8Array


def implied_vol(
    price: npt.ArrayLike,
    spot: npt.ArrayLike,
    strike: npt.ArrayLike,
    t: npt.ArrayLike,
    is_call: npt.ArrayLike,
    r: npt.ArrayLike = 0.0,
    q: npt.ArrayLike = 0.0,
    *,
    vol_low: float = VOL_LOW,
    vol_high: float = VOL_HIGH,
    tol: float = IV_TOL,
    max_iter: int = IV_MAX_ITER,
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

    Method (details in ``core._bsm_kernels``: ``_solve1`` and ``_iterate1``): the quote becomes the
    normalised out-of-the-money price ``b(x, s)`` with ``x = -|ln(F/K)|``, ``s = vol sqrt t``
    (in-the-money quotes via put-call parity, so the time value is never lost in a difference).
    As in Jaeckel's "Let's Be Rational", three regimes of ``s`` each get an objective that is
    close to linear in ``s`` and a starting point from the asymptotics of ``b``; bracketed Halley
    steps then converge in 2-4 iterations, falling back to geometric bisection whenever a step
    leaves the per-element bracket, so every element converges. ``tol`` is relative to ``s``
    (so to vol); if ``max_iter`` runs out the current bracketed estimate is returned (still OK).
    """
    iv, status, _ = _implied_vol(
        price, spot, strike, t, is_call, r, q, vol_low, vol_high, tol, max_iter, with_delta=False
    )
    return IVResult(iv, status)


class IVDelta(NamedTuple):
    """:class:`IVResult` plus the delta at the implied vol (NaN exactly where ``iv`` is)."""

    iv: FloatArray
    status: Int8Array
    delta: FloatArray


def implied_vol_delta(
    price: npt.ArrayLike,
    spot: npt.ArrayLike,
    strike: npt.ArrayLike,
    t: npt.ArrayLike,
    is_call: npt.ArrayLike,
    r: npt.ArrayLike = 0.0,
    q: npt.ArrayLike = 0.0,
    *,
    vol_low: float = VOL_LOW,
    vol_high: float = VOL_HIGH,
    tol: float = IV_TOL,
    max_iter: int = IV_MAX_ITER,
) -> IVDelta:
    """:func:`implied_vol` and, in the same pass, ``bs_delta`` at the solved vol.

    Identical (bit for bit) to ``implied_vol`` followed by ``bs_delta(spot, strike, t, iv, ...)``
    on the rows whose status is OK; NaN elsewhere. One pass instead of two: the chain scan.
    """
    iv, status, delta = _implied_vol(
        price, spot, strike, t, is_call, r, q, vol_low, vol_high, tol, max_iter, with_delta=True
    )
    return IVDelta(iv, status, delta)


def _implied_vol(
    price: npt.ArrayLike,
    spot: npt.ArrayLike,
    strike: npt.ArrayLike,
    t: npt.ArrayLike,
    is_call: npt.ArrayLike,
    r: npt.ArrayLike,
    q: npt.ArrayLike,
    vol_low: float,
    vol_high: float,
    tol: float,
    max_iter: int,
    *,
    with_delta: bool,
) -> tuple[FloatArray, Int8Array, FloatArray]:
    from core import _bsm_kernels as kern

    if not (0.0 < vol_low < vol_high and math.isfinite(vol_high)):
        raise ValueError(f"need 0 < vol_low < vol_high < inf, got {vol_low}, {vol_high}")
    if not tol > 0.0 or max_iter < 1:
        raise ValueError(f"need tol > 0 and max_iter >= 1, got {tol}, {max_iter}")
    inp = _prepare(is_call, price, spot, strike, t, r, q)
    n = inp.is_call.shape[0]
    iv = np.empty(n, dtype=np.float64)
    status = np.empty(n, dtype=np.int8)
    delta = np.empty(n if with_delta else 0, dtype=np.float64)
    pa, sa, ka, ta, ra, qa = inp.arrays
    kern.iv_into(
        pa, sa, ka, ta, ra, qa, inp.is_call, vol_low, vol_high, tol, max_iter, iv, status,
        with_delta, delta,
    )  # fmt: skip
    shape = inp.shape
    return iv.reshape(shape), status.reshape(shape), delta.reshape(shape if with_delta else (0,))
