"""Compiled row loops behind :func:`core.chains.analyze_chain` (numba, cached like
:mod:`core._bsm_kernels`, whose per-row implied vol and delta they call).

Private: imported on the first chain scan. Two passes do what ``analyze_chain`` documents:
``chain_flags_into`` checks every row (quote sanity by the rule of ``core.chains.quote_problem``,
the mid's IVStatus from the no-arbitrage bounds, the liquidity rules), which is all the status and
flags need; ``chain_solve_into`` solves the implied vol and the delta at it of the rows asked for
(all OK rows, or the few a reader needs). At chain size the same steps as numpy array operations
cost more in per-call dispatch (about 25 operations, ~15 us) than the arithmetic itself.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from core._bsm_kernels import (
    _INVALID,
    _NAN,
    _OK,
    BoolArray,
    FloatArray,
    Int8Array,
    _jit,
    delta1,
    iv1,
    iv_status1,
    valid_iv_inputs,
)


@_jit
def chain_flags_into(
    bid: FloatArray,
    ask: FloatArray,
    open_interest: npt.NDArray[np.int64],
    strike: FloatArray,
    is_call: BoolArray,
    spot: FloatArray,
    t: FloatArray,
    r: float,
    q: float,
    min_bid: float,
    max_spread_abs: float,
    max_spread_frac: float,
    min_open_interest: int,
    status: Int8Array,
    liquid: BoolArray,
) -> None:
    """Per row: IVStatus (``INVALID_INPUT`` for a bad quote) and the liquidity flag."""
    t0 = eq = er = _NAN
    for i in range(bid.shape[0]):
        b, a = bid[i], ask[i]
        liquid[i] = False
        # quote_problem(b, a) == "": finite, non-negative, ask > 0, not crossed (NaN fails all)
        if not (b >= 0.0 and b <= a and a > 0.0 and a < math.inf):
            status[i] = _INVALID
            continue
        mid = (b + a) / 2.0
        s_, k_, t_ = spot[i], strike[i], t[i]
        if not valid_iv_inputs(mid, s_, k_, t_, r, q):
            status[i] = _INVALID
            continue
        if t_ != t0:  # one chain shares t
            t0 = t_
            eq, er = math.exp(-q * t_), math.exp(-r * t_)
        code = iv_status1(mid, s_, k_, is_call[i], eq, er)
        status[i] = code
        if code != _OK:
            continue
        oi = open_interest[i]
        max_spread = max(max_spread_abs, max_spread_frac * mid)
        liquid[i] = (
            b > min_bid and a - b <= max_spread + 1e-12 and (oi < 0 or oi >= min_open_interest)
        )


@_jit
def chain_solve_into(
    rows: npt.NDArray[np.int64],
    bid: FloatArray,
    ask: FloatArray,
    strike: FloatArray,
    is_call: BoolArray,
    spot: FloatArray,
    t: FloatArray,
    r: float,
    q: float,
    vol_low: float,
    vol_high: float,
    tol: float,
    max_iter: int,
    iv: FloatArray,
    delta: FloatArray,
) -> None:
    """For each of ``rows`` (rows ``chain_flags_into`` found OK): the implied vol of the mid and
    the delta at that vol, into ``iv`` and ``delta``."""
    t0 = eq = er = sqrt_t = _NAN
    for j in range(rows.shape[0]):
        i = rows[j]
        mid = (bid[i] + ask[i]) / 2.0
        s_, k_, t_ = spot[i], strike[i], t[i]
        if t_ != t0:
            t0 = t_
            eq, er, sqrt_t = math.exp(-q * t_), math.exp(-r * t_), math.sqrt(t_)
        call = is_call[i]
        vol, code = iv1(mid, s_, k_, call, eq, er, sqrt_t, vol_low, vol_high, tol, max_iter)
        if code != _OK:  # not an OK row: left NaN
            continue
        iv[i] = vol
        delta[i] = delta1(s_, k_, t_, vol, r, q, 1.0 if call else -1.0, eq, sqrt_t)
