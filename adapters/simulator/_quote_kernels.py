"""Compiled row loop behind :func:`adapters.simulator.chains.quote_chain` (numba, cached like
:mod:`core._bsm_kernels`, whose per-row price it calls).

Private: imported on the first simulated chain. One pass per row does what ``quote_chain``
documents: the smile, the Black-Scholes-Merton price, intrinsic and time value, the half spread
and the tick rounding of bid and ask. At chain size the same steps as numpy array operations cost
more in per-call dispatch (about 30 operations, ~45 us) than the arithmetic itself. Every
operation is the numpy form's, in its order, with ``np.maximum``/``np.minimum``/``np.clip``'s NaN
propagation, so the quotes are the numpy form's to the last bit wherever the C library's ``log``
agrees with numpy's (tick rounding absorbs a last-bit difference unless a price sits on a tick
boundary).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from core._bsm_kernels import (
    BoolArray,
    FloatArray,
    _fmax,
    _fmin,
    _jit,
    price1,
    valid_price_inputs,
)


@_jit
def _clip(a: float, lo: float, hi: float) -> float:
    """``np.clip`` of one float (NaN stays NaN)."""
    return _fmin(_fmax(a, lo), hi)


@_jit
def quote_rows_into(
    strikes: FloatArray,
    is_call: BoolArray,
    no_bid_ask_ticks: npt.NDArray[np.int64],
    spot: float,
    forward: float,
    total_sd: float,
    atm_iv: float,
    t: float,
    rate: float,
    dividend_yield: float,
    skew: float,
    smile: float,
    factor_floor: float,
    factor_cap: float,
    rel_scale: float,
    wing_slope: float,
    expiry_boost: float,
    intraday: float,
    min_half: float,
    max_half: float,
    itm_half_frac: float,
    ticks_per_dollar: float,
    rounding_eps: float,
    bid: FloatArray,
    ask: FloatArray,
) -> None:
    """Per row: bid and ask in dollars (``quote_chain``'s surface and spread model)."""
    eq, er, sqrt_t = math.exp(-dividend_yield * t), math.exp(-rate * t), math.sqrt(t)
    discounted_spot = spot * eq
    for i in range(strikes.shape[0]):
        k = strikes[i]
        x = math.log(k / forward) / total_sd
        factor = _clip(1.0 - skew * x + smile * x * x, factor_floor, factor_cap)
        iv = atm_iv * factor
        w = 1.0 if is_call[i] else -1.0
        if valid_price_inputs(spot, k, t, iv, rate, dividend_yield):  # as bs_price, else NaN
            price = price1(spot, k, t, iv, rate, dividend_yield, w, eq, er, sqrt_t)
        else:
            price = math.nan
        intrinsic = _fmax(w * (discounted_spot - k * er), 0.0)
        time_value = _fmax(price - intrinsic, 0.0)
        rel = rel_scale * (1.0 + wing_slope * abs(x)) * expiry_boost * intraday
        half = _clip(min_half + rel * time_value + itm_half_frac * intrinsic, min_half, max_half)
        bid_ticks = np.floor((price - half) * ticks_per_dollar + rounding_eps)
        ask_ticks = np.ceil((price + half) * ticks_per_dollar - rounding_eps)
        if bid_ticks < 1:
            bid_ticks = 0.0
            ask_ticks = _fmax(ask_ticks, float(no_bid_ask_ticks[i]))
        ask_ticks = _fmax(ask_ticks, bid_ticks + 1.0)
        bid[i] = bid_ticks / ticks_per_dollar
        ask[i] = ask_ticks / ticks_per_dollar
