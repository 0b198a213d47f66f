"""Black-Scholes-Merton kernel: published values, identities, greeks, implied vol, time to expiry."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from core.pricing import (
    MINUTES_PER_YEAR,
    ExpiredContractError,
    Greeks,
    IVResult,
    IVStatus,
    bs_delta,
    bs_greeks,
    bs_price,
    erfc,
    implied_vol,
    implied_vol_delta,
    norm_cdf,
    theta_per_day,
    vega_per_point,
    year_fraction,
    year_fractions,
)

NY = ZoneInfo("America/New_York")
ONE_MINUTE = 1.0 / MINUTES_PER_YEAR


def random_grid(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "spot": rng.uniform(20.0, 500.0, n),
        "moneyness": rng.uniform(0.6, 1.6, n),
        "t": rng.uniform(0.02, 2.0, n),
        "vol": rng.uniform(0.05, 1.5, n),
        "r": rng.uniform(-0.01, 0.08, n),
        "q": rng.uniform(0.0, 0.05, n),
        "is_call": rng.random(n) < 0.5,
    }


def assert_close(actual, desired, rtol, atol):
    """Like np.testing.assert_allclose, but ``atol`` may be an array (e.g. scaled by spot)."""
    actual, desired = np.broadcast_arrays(np.asarray(actual), np.asarray(desired))
    excess = np.abs(actual - desired) - (atol + rtol * np.abs(desired))
    worst = int(np.argmax(excess))
    assert excess.flat[worst] <= 0, (
        f"{int((excess > 0).sum())} mismatches; worst at {worst}: "
        f"{actual.flat[worst]!r} vs {desired.flat[worst]!r}"
    )


# ------------------------------------------------------------------ published values


def test_price_when_hull_example_then_call_476_and_put_081():
    # Hull, Options, Futures and Other Derivatives: S=42, K=40, r=10%, vol=20%, T=0.5.
    call = bs_price(42.0, 40.0, 0.5, 0.20, True, 0.10)
    put = bs_price(42.0, 40.0, 0.5, 0.20, False, 0.10)
    assert round(float(call), 2) == 4.76
    assert round(float(put), 2) == 0.81


def test_greeks_when_hull_example_then_match_published_values():
    # Hull's greeks example: S=49, K=50, r=5%, vol=20%, T=20 weeks, call.
    g = bs_greeks(49.0, 50.0, 20.0 / 52.0, 0.20, True, 0.05)
    assert isinstance(g, Greeks)
    assert round(float(g.delta), 3) == 0.522
    assert round(float(g.gamma), 3) == 0.066
    assert round(float(g.theta), 2) == -4.31  # per year
    assert round(float(g.vega), 1) == 12.1  # per 1.00 of vol
    assert round(float(theta_per_day(g)), 4) == round(-4.31 / 365.0, 4)
    assert float(vega_per_point(g)) == pytest.approx(0.121, abs=5e-4)


def test_price_when_hull_index_option_with_dividend_yield_then_call_5183():
    # Hull: index option, S=930, K=900, r=8%, q=3%, vol=20%, T=2 months -> 51.83.
    call = bs_price(930.0, 900.0, 2.0 / 12.0, 0.20, True, 0.08, 0.03)
    assert round(float(call), 2) == 51.83


# ------------------------------------------------------------------ identities and greeks


def test_put_call_parity_when_random_grid_then_holds_to_1e10_of_notional():
    g = random_grid(20_000, seed=1)
    spot, t, r, q = g["spot"], g["t"], g["r"], g["q"]
    strike = spot * g["moneyness"]
    call = bs_price(spot, strike, t, g["vol"], True, r, q)
    put = bs_price(spot, strike, t, g["vol"], False, r, q)
    forward_value = spot * np.exp(-q * t) - strike * np.exp(-r * t)
    # C - P may be ~0, so "relative" is to the notional S + K the two legs are made of
    assert np.all(np.abs((call - put) - forward_value) <= 1e-10 * (spot + strike))


def test_greeks_when_compared_with_central_differences_then_agree():
    g = random_grid(3_000, seed=2)
    spot, t, vol, r, q, is_call = g["spot"], g["t"], g["vol"], g["r"], g["q"], g["is_call"]
    strike = spot * g["moneyness"]

    def price(s=spot, tt=t, v=vol):
        return bs_price(s, strike, tt, v, is_call, r, q)

    analytic = bs_greeks(spot, strike, t, vol, is_call, r, q)
    width = spot * vol * np.sqrt(t)  # steps scale with the width of the distribution
    hs, hg, ht, hv = 1e-3 * width, 1e-2 * width, 1e-4 * t, 1e-4 * vol
    delta = (price(s=spot + hs) - price(s=spot - hs)) / (2 * hs)
    gamma = (price(s=spot + hg) - 2 * price() + price(s=spot - hg)) / hg**2
    theta = -(price(tt=t + ht) - price(tt=t - ht)) / (2 * ht)  # dV/dt = -dV/dT
    vega = (price(v=vol + hv) - price(v=vol - hv)) / (2 * hv)
    np.testing.assert_allclose(analytic.delta, delta, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(analytic.gamma, gamma, rtol=1e-3, atol=1e-8)
    assert_close(analytic.theta, theta, rtol=1e-5, atol=1e-8 * spot)
    assert_close(analytic.vega, vega, rtol=1e-5, atol=1e-8 * spot)


def test_delta_when_cheap_path_then_equals_greeks_delta():
    g = random_grid(5_000, seed=3)
    strike = g["spot"] * g["moneyness"]
    args = (g["spot"], strike, g["t"], g["vol"], g["is_call"], g["r"], g["q"])
    np.testing.assert_allclose(bs_delta(*args), bs_greeks(*args).delta, rtol=1e-14, atol=1e-16)


def test_greeks_when_long_option_then_signs_and_bounds_hold():
    g = random_grid(5_000, seed=4)
    strike = g["spot"] * g["moneyness"]
    gr = bs_greeks(g["spot"], strike, g["t"], g["vol"], g["is_call"], 0.0, 0.0)
    assert np.all(np.where(g["is_call"], gr.delta >= 0, gr.delta <= 0))
    assert np.all(np.abs(gr.delta) <= 1.0)
    assert np.all(gr.gamma >= 0) and np.all(gr.vega >= 0)
    assert np.all(gr.theta <= 0)  # r = q = 0: a long option only loses time value


def test_price_when_deep_otm_or_tiny_t_then_finite_nonnegative_and_monotone_in_vol():
    vols = np.geomspace(1e-4, 5.0, 400)
    for strike, t, is_call in [
        (300.0, ONE_MINUTE, True),
        (30.0, ONE_MINUTE, False),
        (250.0, 0.01, True),
        (40.0, 0.01, False),
        (100.0, 1e-12, True),
    ]:
        p = bs_price(100.0, strike, t, vols, is_call)
        assert np.all(np.isfinite(p)) and np.all(p >= 0.0)
        assert np.all(np.diff(p) >= 0.0)
        g = bs_greeks(100.0, strike, t, vols, is_call)
        for arr in g:
            assert np.all(np.isfinite(arr))


def test_price_when_otm_tail_then_keeps_relative_accuracy():
    # 8 standard deviations out of the money the price is ~1e-14 of spot: it must stay a
    # meaningful positive number (log-space d1/d2 and a relative-accurate tail), matching a
    # scalar reference built on math.erfc.
    spot, strike, t, vol = 100.0, 100.0 * math.exp(8 * 0.2), 1.0, 0.2
    s = vol * math.sqrt(t)
    d1 = math.log(spot / strike) / s + s / 2
    d2 = d1 - s
    ref = spot * 0.5 * math.erfc(-d1 / math.sqrt(2)) - strike * 0.5 * math.erfc(-d2 / math.sqrt(2))
    got = float(bs_price(spot, strike, t, vol, True))
    assert 0.0 < got < 1e-10
    assert got == pytest.approx(ref, rel=1e-9)


def test_price_when_zero_vol_then_discounted_intrinsic():
    p = bs_price(100.0, np.array([90.0, 100.0, 110.0]), 0.5, 0.0, True, 0.05)
    np.testing.assert_allclose(
        p, np.maximum(100.0 - np.array([90.0, 100.0, 110.0]) * math.exp(-0.025), 0.0)
    )


def test_price_when_invalid_inputs_then_nan_not_exception():
    p = bs_price(
        np.array([100.0, -1.0, 100.0, 100.0, np.nan, 100.0]),
        np.array([100.0, 100.0, 0.0, 100.0, 100.0, 100.0]),
        np.array([0.5, 0.5, 0.5, -0.1, 0.5, 0.5]),
        np.array([0.2, 0.2, 0.2, 0.2, 0.2, -0.2]),
        True,
    )
    assert np.isfinite(p[0])
    assert np.all(np.isnan(p[1:]))


def test_price_when_arguments_broadcast_then_shape_follows_numpy():
    strikes = np.linspace(80, 120, 5)[:, None]
    vols = np.array([0.1, 0.2, 0.3])[None, :]
    calls = np.array([True, False, True])[None, :]
    p = bs_price(100.0, strikes, 0.25, vols, calls)
    assert p.shape == (5, 3)
    assert p[2, 1] == pytest.approx(float(bs_price(100.0, 100.0, 0.25, 0.2, False)), rel=1e-15)
    assert bs_greeks(100.0, strikes, 0.25, vols, calls).gamma.shape == (5, 3)
    assert implied_vol(p, 100.0, strikes, 0.25, calls).iv.shape == (5, 3)


def test_price_when_large_array_then_same_as_small_pieces():
    g = random_grid(20_001, seed=5)  # several internal blocks, odd tail
    strike = g["spot"] * g["moneyness"]
    args = (g["spot"], strike, g["t"], g["vol"], g["is_call"], g["r"], g["q"])
    whole = bs_price(*args)
    pieces = np.concatenate(
        [bs_price(*(a[i : i + 100] for a in args)) for i in range(0, 20_001, 100)]
    )
    # the two sides may take different (equally accurate) erfc code paths: equal to rounding
    assert_close(whole, pieces, rtol=1e-12, atol=1e-14 * g["spot"])


# ------------------------------------------------------------------ normal distribution


@pytest.mark.parametrize("n", [7, 500, 5_000, 30_001])  # every internal code path
def test_erfc_when_compared_with_math_erfc_then_within_a_few_ulps(n):
    x = np.concatenate([np.linspace(-6.0, 26.5, n), [-0.46875, 0.46875, 4.0, -4.0, 0.0]])
    ref = np.array([math.erfc(v) for v in x])
    got = erfc(x)
    keep = ref > 1e-300  # below that the result is subnormal and has fewer digits
    np.testing.assert_allclose(got[keep], ref[keep], rtol=4e-15, atol=0)


def test_norm_cdf_when_extreme_or_nonfinite_then_correct_limits():
    x = np.array([-np.inf, -40.0, -38.0, 0.0, 8.5, 40.0, np.inf, np.nan])
    got = norm_cdf(x)
    assert got[0] == 0.0 and got[1] == 0.0
    assert got[2] == pytest.approx(0.5 * math.erfc(38.0 / math.sqrt(2.0)), rel=1e-13)
    assert got[3] == 0.5 and got[5] == 1.0 and got[6] == 1.0
    assert got[4] == pytest.approx(1.0 - 0.5 * math.erfc(8.5 / math.sqrt(2.0)), abs=1e-16)
    assert math.isnan(got[7])


# ------------------------------------------------------------------ implied vol


def stress_grid() -> dict[str, np.ndarray]:
    m, t, v, c, r = np.meshgrid(
        np.geomspace(0.5, 2.0, 41),  # K / S
        np.geomspace(ONE_MINUTE, 2.0, 40),
        np.geomspace(0.01, 3.0, 40),
        [True, False],
        [0.0, 0.05],
        indexing="ij",
    )
    spot = 100.0
    return {"spot": spot, "strike": spot * m, "t": t, "vol": v, "is_call": c, "r": r}


def test_implied_vol_when_stress_grid_round_trip_then_zero_failures():
    g = stress_grid()
    spot, strike, t, vol, is_call, r = (
        g[k] for k in ("spot", "strike", "t", "vol", "is_call", "r")
    )
    price = bs_price(spot, strike, t, vol, is_call, r)
    res = implied_vol(price, spot, strike, t, is_call, r)
    assert isinstance(res, IVResult) and res.status.dtype == np.int8
    vega = bs_greeks(spot, strike, t, vol, is_call, r).vega
    repriced = bs_price(spot, strike, t, res.iv, is_call, r)

    # Every quote is inside the no-arbitrage bounds, so every one must solve and reprice.
    failed = (res.status != IVStatus.OK) | ~np.isfinite(res.iv)
    failed |= np.abs(repriced - price) > 1e-9 * spot
    # The vol itself is only identifiable where it moves the price by more than the price's own
    # rounding noise (a few ulps of S, ~1e-15 S). Where a 1e-6 change of vol moves the price by
    # more than 1e-12 S (three orders of magnitude above that noise) the solved vol must be
    # within 1e-6 of the true one; elsewhere many vols give the same float price and only the
    # repricing check above is meaningful.
    identifiable = vega * 1e-6 > 1e-12 * spot
    failed |= identifiable & ~(np.abs(res.iv - vol) <= 1e-6)
    assert int(failed.sum()) == 0, f"{int(failed.sum())} failures of {failed.size}"
    assert identifiable.sum() > 50_000  # the grid really exercises the solver

    # Quotes within float noise of the intrinsic value cannot identify any vol: they are not
    # dropped but solved (OK, finite, reprices - checked above), at vol_low when nothing else fits.
    lower = np.maximum(
        np.where(is_call, spot - strike * np.exp(-r * t), strike * np.exp(-r * t) - spot), 0
    )
    degenerate = price - lower < 1e-13 * spot
    assert degenerate.sum() > 1_000
    assert np.all(res.status[degenerate] == IVStatus.OK)
    assert np.all(np.isfinite(res.iv[degenerate]))
    assert np.any(res.iv[degenerate] == 1e-4)


def test_implied_vol_when_dividend_yield_then_round_trips():
    g = random_grid(20_000, seed=6)
    strike = g["spot"] * g["moneyness"]
    args = (g["spot"], strike, g["t"])
    price = bs_price(*args, g["vol"], g["is_call"], g["r"], g["q"])
    res = implied_vol(price, *args, g["is_call"], g["r"], g["q"])
    assert np.all(res.status == IVStatus.OK)
    repriced = bs_price(*args, res.iv, g["is_call"], g["r"], g["q"])
    assert np.all(np.abs(repriced - price) <= 1e-9 * g["spot"])
    vega = bs_greeks(*args, g["vol"], g["is_call"], g["r"], g["q"]).vega
    identifiable = vega * 1e-6 > 1e-12 * g["spot"]  # as in the stress-grid test
    assert identifiable.mean() > 0.9
    assert np.all(np.abs(res.iv - g["vol"])[identifiable] <= 1e-6)


def test_implied_vol_when_scalar_inputs_then_scalar_shaped_result():
    res = implied_vol(4.759422392871535, 42.0, 40.0, 0.5, True, 0.10)
    assert res.iv.shape == () and res.status.shape == ()
    assert float(res.iv) == pytest.approx(0.20, abs=1e-12)
    assert int(res.status) == IVStatus.OK


def test_implied_vol_when_price_below_intrinsic_then_below_intrinsic_and_nan():
    # call intrinsic (discounted) = 100 - 90 e^{-0.05*0.5} = 12.222...
    res = implied_vol(np.array([12.0, 12.2]), 100.0, 90.0, 0.5, True, 0.05)
    assert np.all(res.status == IVStatus.BELOW_INTRINSIC)
    assert np.all(np.isnan(res.iv))


def test_implied_vol_when_price_at_or_above_upper_bound_then_above_max_and_nan():
    # call upper bound S e^{-qT}; put upper bound K e^{-rT}
    up_call = 100.0 * math.exp(-0.02 * 0.5)
    up_put = 90.0 * math.exp(-0.05 * 0.5)
    res = implied_vol(
        np.array([up_call, up_call + 1.0, up_put, 150.0]),
        100.0,
        90.0,
        0.5,
        np.array([True, True, False, False]),
        0.05,
        0.02,
    )
    assert np.all(res.status == IVStatus.ABOVE_MAX)
    assert np.all(np.isnan(res.iv))


@pytest.mark.parametrize(
    ("price", "spot", "strike", "t"),
    [
        (np.nan, 100.0, 100.0, 0.5),
        (-0.01, 100.0, 100.0, 0.5),
        (np.inf, 100.0, 100.0, 0.5),
        (5.0, 100.0, 100.0, 0.0),
        (5.0, 100.0, 100.0, -0.1),
        (5.0, 0.0, 100.0, 0.5),
        (5.0, -100.0, 100.0, 0.5),
        (5.0, 100.0, 0.0, 0.5),
        (5.0, np.nan, 100.0, 0.5),
        (5.0, 100.0, 100.0, np.inf),
    ],
)
def test_implied_vol_when_invalid_input_then_invalid_input_and_nan(price, spot, strike, t):
    res = implied_vol(price, spot, strike, t, True)
    assert int(res.status) == IVStatus.INVALID_INPUT
    assert math.isnan(float(res.iv))


def test_implied_vol_when_mixed_array_then_good_elements_still_solved():
    spot, strike, t = 100.0, 100.0, 0.25
    good = float(bs_price(spot, strike, t, 0.3, True))
    price = np.array([good, np.nan, -1.0, -5.0, good, 1e9, good])
    res = implied_vol(price, spot, strike, np.array([t, t, t, t, t, t, 0.0]), True)
    expect = [0, 3, 3, 3, 0, 2, 3]
    assert res.status.tolist() == expect
    assert res.iv[0] == pytest.approx(0.3, abs=1e-12) and res.iv[4] == pytest.approx(0.3, abs=1e-12)
    assert np.array_equal(np.isnan(res.iv), res.status != IVStatus.OK)


def test_implied_vol_when_price_within_tolerance_below_intrinsic_then_vol_low():
    lower = 100.0 - 90.0 * math.exp(-0.05 * 0.5)
    price = np.array([lower, lower - 5e-13 * 100.0, 0.0])
    res = implied_vol(price, 100.0, 90.0, 0.5, np.array([True, True, False]), 0.05, vol_low=0.02)
    assert np.all(res.status == IVStatus.OK)
    assert np.all(res.iv == 0.02)


def test_implied_vol_when_price_between_vol_high_price_and_upper_bound_then_vol_high():
    upper = 100.0
    at_high = float(bs_price(100.0, 100.0, 1.0, 10.0, True))  # ~ S (1 - 6e-7)
    price = np.array([0.5 * (at_high + upper), at_high + 1e-9])
    res = implied_vol(price, 100.0, 100.0, 1.0, True)
    assert np.all(res.status == IVStatus.OK)
    assert np.all(res.iv == 10.0)


def test_implied_vol_when_custom_bounds_then_clamps_to_them():
    price = bs_price(100.0, 100.0, 0.5, np.array([0.05, 0.5, 2.0]), True)
    res = implied_vol(price, 100.0, 100.0, 0.5, True, vol_low=0.1, vol_high=1.0)
    np.testing.assert_allclose(res.iv, [0.1, 0.5, 1.0], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="vol_low"):
        implied_vol(price, 100.0, 100.0, 0.5, True, vol_low=1.0, vol_high=0.5)


def test_implied_vol_when_any_quote_inside_bounds_then_ok_finite_and_consistent():
    # Quotes drawn anywhere between the no-arbitrage bounds (not from the model), over extreme
    # spots, strikes, expiries (1 second to 30 years), rates and yields: never NaN, never an
    # error status; an interior vol reprices, and the clamps only where the model cannot reach.
    rng = np.random.default_rng(8)
    n = 60_000
    spot = np.exp(rng.uniform(np.log(0.01), np.log(1e5), n))
    strike = spot * np.exp(rng.normal(0.0, 1.0, n) * rng.choice([0.01, 0.1, 0.5, 2.0], n))
    t = np.exp(rng.uniform(np.log(1.0 / (365 * 24 * 3600)), np.log(30.0), n))
    r, q = rng.uniform(-0.05, 0.2, n), rng.uniform(-0.05, 0.2, n)
    is_call = rng.random(n) < 0.5
    sdq, kdr = spot * np.exp(-q * t), strike * np.exp(-r * t)
    lower = np.maximum(np.where(is_call, sdq - kdr, kdr - sdq), 0.0)
    upper = np.where(is_call, sdq, kdr)
    u = rng.random(n) ** rng.choice([1.0, 5.0, 20.0, 60.0], n)  # crowd both bounds
    price = np.where(rng.random(n) < 0.5, lower + u * (upper - lower), upper - u * (upper - lower))
    inside = (price > lower) & (price < upper)
    assert inside.mean() > 0.8

    res = implied_vol(price, spot, strike, t, is_call, r, q)
    assert np.all(res.status[inside] == IVStatus.OK)
    ok = res.status == IVStatus.OK
    assert np.all(np.isfinite(res.iv[ok])) and np.all(np.isnan(res.iv[~ok]))
    assert np.all((res.iv[ok] >= 1e-4) & (res.iv[ok] <= 10.0))
    scale = np.maximum(spot, strike)
    at_low, at_high = ok & (res.iv == 1e-4), ok & (res.iv == 10.0)
    interior = ok & ~at_low & ~at_high
    repriced = bs_price(spot, strike, t, res.iv, is_call, r, q)
    assert_close(repriced[interior], price[interior], rtol=0, atol=1e-12 * scale[interior])
    assert np.all(price[at_low] <= repriced[at_low] + 1e-12 * scale[at_low])  # <= BS(vol_low)
    assert np.all(price[at_high] >= repriced[at_high] - 1e-12 * scale[at_high])  # >= BS(vol_high)


def test_implied_vol_when_iterations_run_out_then_bracketed_estimate_still_ok():
    g = random_grid(2_000, seed=9)
    strike = g["spot"] * g["moneyness"]
    price = bs_price(g["spot"], strike, g["t"], g["vol"], g["is_call"])
    res = implied_vol(price, g["spot"], strike, g["t"], g["is_call"], max_iter=1)
    assert np.all(res.status == IVStatus.OK)
    assert np.all(np.isfinite(res.iv)) and np.all((res.iv >= 1e-4) & (res.iv <= 10.0))


def test_implied_vol_when_large_array_then_same_as_small_pieces():
    g = random_grid(9_001, seed=7)
    strike = g["spot"] * g["moneyness"]
    price = bs_price(g["spot"], strike, g["t"], g["vol"], g["is_call"], g["r"])
    whole = implied_vol(price, g["spot"], strike, g["t"], g["is_call"], g["r"])
    parts = [
        implied_vol(price[i : i + 50], g["spot"][i : i + 50], strike[i : i + 50], g["t"][i : i + 50],
                    g["is_call"][i : i + 50], g["r"][i : i + 50])
        for i in range(0, 9_001, 50)
    ]  # fmt: skip
    np.testing.assert_allclose(whole.iv, np.concatenate([p.iv for p in parts]), rtol=1e-11)
    assert np.array_equal(whole.status, np.concatenate([p.status for p in parts]))


def test_implied_vol_when_market_like_chain_then_all_quotes_solve():
    # A 0DTE-like chain 2 hours before the close with cent-rounded mids: every mid that is inside
    # the bounds solves; the ones under intrinsic are reported as such.
    spot, t = 5000.0, 120.0 / MINUTES_PER_YEAR
    strikes = spot + 5.0 * np.arange(-75, 75)
    strike = np.concatenate((strikes, strikes))
    is_call = np.concatenate((np.ones(150, dtype=bool), np.zeros(150, dtype=bool)))
    vol = 0.12 + 8.0 * (strike / spot - 1.0) ** 2
    mid = np.round(bs_price(spot, strike, t, vol, is_call, 0.05), 2) + 0.025
    res = implied_vol(mid, spot, strike, t, is_call, 0.05)
    assert np.all(res.status == IVStatus.OK)
    repriced = bs_price(spot, strike, t, res.iv, is_call, 0.05)
    assert np.all(np.abs(repriced - mid) <= 1e-9 * spot)


def test_implied_vol_delta_when_compared_with_two_calls_then_bit_identical():
    g = random_grid(5_000, seed=11)
    strike = g["spot"] * g["moneyness"]
    args = (g["spot"], strike, g["t"])
    price = bs_price(*args, g["vol"], g["is_call"], g["r"], g["q"])
    price[::97] = np.nan  # invalid rows: NaN iv and delta
    price[1::89] = 0.5 * price[1::89] - 1.0  # some below intrinsic or negative
    both = implied_vol_delta(price, *args, g["is_call"], g["r"], g["q"])
    alone = implied_vol(price, *args, g["is_call"], g["r"], g["q"])
    assert np.array_equal(both.status, alone.status)
    assert np.array_equal(both.iv, alone.iv, equal_nan=True)
    ok = alone.status == IVStatus.OK
    assert 0 < ok.sum() < ok.size
    delta = bs_delta(*args, np.where(ok, alone.iv, 0.2), g["is_call"], g["r"], g["q"])
    assert np.array_equal(both.delta, np.where(ok, delta, np.nan), equal_nan=True)


# ------------------------------------------------------------------ time to expiry


def test_year_fraction_when_thirty_minutes_then_thirty_calendar_minutes():
    now = datetime(2026, 3, 2, 15, 30, tzinfo=NY)
    assert year_fraction(now, now + timedelta(minutes=30)) == pytest.approx(
        30.0 / MINUTES_PER_YEAR, rel=1e-15
    )


def test_year_fraction_when_naive_datetime_then_value_error():
    aware = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)
    naive = datetime(2026, 3, 2, 16, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="timezone-aware"):
        year_fraction(aware, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        year_fraction(naive, aware)


@pytest.mark.parametrize("minutes_after_expiry", [0, 1, 60 * 24])
def test_year_fraction_when_now_at_or_after_expiry_then_expired_contract_error(
    minutes_after_expiry,
):
    expiry = datetime(2026, 3, 2, 16, 0, tzinfo=NY)
    now = expiry + timedelta(minutes=minutes_after_expiry)
    with pytest.raises(ExpiredContractError):
        year_fraction(now, expiry)
    assert issubclass(ExpiredContractError, ValueError)


def test_year_fraction_when_span_crosses_dst_end_then_counts_real_minutes():
    # 2026-11-01 02:00 EDT -> 01:00 EST: noon to noon that day is 25 real hours, not 24.
    now = datetime(2026, 10, 31, 12, 0, tzinfo=NY)
    expiry = datetime(2026, 11, 1, 12, 0, tzinfo=NY)
    assert year_fraction(now, expiry) == pytest.approx(25 * 60 / MINUTES_PER_YEAR, rel=1e-15)
    # across the repeated 01:00-02:00 hour: 00:30 EDT -> 01:30 EST is 2 hours
    a = datetime(2026, 11, 1, 0, 30, tzinfo=NY)
    b = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NY)
    assert year_fraction(a, b) == pytest.approx(120 / MINUTES_PER_YEAR, rel=1e-15)


def test_year_fraction_when_different_zones_then_same_instant_arithmetic():
    now = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)  # 15:00 EST
    expiry = datetime(2026, 3, 2, 16, 0, tzinfo=NY)
    assert year_fraction(now, expiry) == pytest.approx(60 / MINUTES_PER_YEAR, rel=1e-15)


def test_year_fraction_when_less_than_a_second_left_then_floored_at_one_second():
    expiry = datetime(2026, 3, 2, 16, 0, tzinfo=NY)
    t = year_fraction(expiry - timedelta(microseconds=10), expiry)
    assert t == pytest.approx(1.0 / 60.0 / MINUTES_PER_YEAR, rel=1e-15)
    assert t > 0


def test_year_fractions_when_vector_then_matches_scalar_and_names_expired_index():
    now = datetime(2026, 3, 2, 15, 0, tzinfo=NY)
    expiries = [now + timedelta(minutes=m) for m in (1, 60, 60 * 24 * 7)]
    out = year_fractions(now, expiries)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [year_fraction(now, e) for e in expiries], rtol=0)
    with pytest.raises(ExpiredContractError, match=r"expiry_at\[1\]"):
        year_fractions(now, [expiries[0], now - timedelta(minutes=1)])
    with pytest.raises(ValueError, match="timezone-aware"):
        year_fractions(now, [datetime(2026, 3, 3, 16, 0)])  # noqa: DTZ001
