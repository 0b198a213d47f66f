"""Throughput of the pricing kernel (core.pricing) against peers. A script, not a test.

Run: ``.venv/bin/python bench/pricing.py`` (about half a minute). Prints

1. options/s for "implied vol + delta, gamma, theta, vega" on 100k random contracts, ours;
2. the same workload for the peers that are installed, and the ratio ours / peer:
   py_vollib_vectorized (Let's Be Rational + numba) and a scipy baseline (``brentq`` per option
   on a 2k subsample, extrapolated per option);
3. price + delta options/s (ours);
4. microseconds per 300-contract chain scan (mid -> IV -> delta -> strike nearest 0.30 delta).

Nothing here asserts anything about time: numbers depend on the machine.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.pricing import (
    MINUTES_PER_YEAR,
    IVStatus,
    bs_delta,
    bs_greeks,
    bs_price,
    implied_vol,
)

N_CONTRACTS = 100_000
N_SCIPY = 2_000
REPEATS = 7
SEED = 20260101
RATE = 0.05


def best_of(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    """Best wall time of ``repeats`` calls, seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def workload(n: int) -> dict[str, Any]:
    """Seeded random contracts: spot 100, K/S 0.7-1.3, T 1 minute-1 year, vol 5%-100% (uniform)."""
    rng = np.random.default_rng(SEED)
    spot = 100.0
    strike = spot * rng.uniform(0.7, 1.3, n)
    t = rng.uniform(1.0 / MINUTES_PER_YEAR, 1.0, n)
    vol = rng.uniform(0.05, 1.0, n)
    is_call = rng.random(n) < 0.5
    price = bs_price(spot, strike, t, vol, is_call, RATE)
    return {"spot": spot, "strike": strike, "t": t, "vol": vol, "is_call": is_call, "price": price}


def accuracy(iv: np.ndarray, vol: np.ndarray, vega: np.ndarray, spot: float) -> str:
    """Failures (NaN) and the worst vol error where the vol is identifiable from the price."""
    nan = int(np.isnan(iv).sum())
    ident = vega * 1e-6 > 1e-12 * spot  # a 1e-6 vol change moves the price > 1e-12 S
    err = np.abs(iv - vol)[ident & ~np.isnan(iv)]
    worst = float(err.max()) if err.size else float("nan")
    return f"no IV for {nan}/{iv.size}; max |iv - vol| where identifiable {worst:.1e}"


def bench_ours(w: dict[str, Any]) -> float:
    spot, strike, t, is_call, price = w["spot"], w["strike"], w["t"], w["is_call"], w["price"]

    def run() -> None:
        res = implied_vol(price, spot, strike, t, is_call, RATE)
        bs_greeks(spot, strike, t, res.iv, is_call, RATE)

    seconds = best_of(run)
    res = implied_vol(price, spot, strike, t, is_call, RATE)
    vega = bs_greeks(spot, strike, t, w["vol"], is_call, RATE).vega
    print(f"  ours                      {N_CONTRACTS / seconds:>12,.0f} options/s")
    print(f"    ({accuracy(res.iv, w['vol'], vega, spot)})")
    ok = int((res.status == IVStatus.OK).sum())
    print(f"    (status OK for {ok}/{N_CONTRACTS})")
    return N_CONTRACTS / seconds


def import_vollib() -> tuple[Any, str]:
    """Import py_vollib_vectorized, JIT-enabling the helpers its LetsBeRational needs.

    py-lets-be-rational >= 1.1 JIT-compiles only when PY_LETS_BE_RATIONAL_ENABLE_NUMBA is set, and
    moved the Cody erf / normal-distribution and rational-cubic helpers into the plain-Python
    packages cody_special and piecewise_rational, which py_vollib_vectorized 0.1.1's nopython
    functions cannot call. Wrapping those helpers with numba.njit (what older releases did
    themselves) makes the peer run as designed. Returns (module, note on what was done).
    """
    import importlib
    import importlib.util
    import types

    os.environ.setdefault("PY_LETS_BE_RATIONAL_ENABLE_NUMBA", "1")
    note = ""
    helpers = ("cody_special.erf_cody", "cody_special.normaldistribution")
    helpers += ("piecewise_rational.rationalcubic",)
    if all(importlib.util.find_spec(h.split(".")[0]) is not None for h in helpers):
        import numba

        jitted: dict[object, object] = {}
        for name in helpers:
            importlib.import_module(name)
            module = sys.modules[name]  # not getattr: cody_special.erf_cody is also a function
            for attr, obj in list(vars(module).items()):
                if isinstance(obj, types.FunctionType) and obj.__module__ == name:
                    jitted[obj] = numba.njit(obj)
                    setattr(module, attr, jitted[obj])
        for name, module in list(sys.modules.items()):
            if module is not None and name.startswith(("cody_special", "piecewise_rational")):
                for attr, obj in list(vars(module).items()):
                    if isinstance(obj, types.FunctionType) and obj in jitted:
                        setattr(module, attr, jitted[obj])
        note = "; helpers of py-lets-be-rational wrapped with numba.njit"
    import py_vollib_vectorized

    return py_vollib_vectorized, note


def bench_vollib(w: dict[str, Any], ours: float) -> None:
    try:
        pvv, note = import_vollib()
    except ImportError:
        print("  py_vollib_vectorized      skipped (not installed)")
        return
    spot, strike, t, price = w["spot"], w["strike"], w["t"], w["price"]
    flag = np.where(w["is_call"], "c", "p")

    def run(sl: slice = slice(None)) -> np.ndarray:
        kw: dict[str, Any] = {"model": "black_scholes", "return_as": "numpy"}
        iv = pvv.vectorized_implied_volatility(
            price[sl], spot, strike[sl], t[sl], RATE, flag[sl], on_error="ignore", **kw
        )
        iv = np.asarray(iv, dtype=np.float64).reshape(-1)
        args = (flag[sl], spot, strike[sl], t[sl], RATE, iv)
        pvv.vectorized_delta(*args, **kw)
        pvv.vectorized_gamma(*args, **kw)
        pvv.vectorized_theta(*args, **kw)
        pvv.vectorized_vega(*args, **kw)
        return iv

    start = time.perf_counter()
    try:
        run(slice(0, 100))  # numba compiles on first use: keep that out of the timing
    except Exception as exc:  # a broken install must not hide the other numbers
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"  py_vollib_vectorized      skipped (fails: {type(exc).__name__}: {first[:80]})")
        return
    compile_s = time.perf_counter() - start
    seconds = best_of(run)
    rate = N_CONTRACTS / seconds
    vega = bs_greeks(spot, strike, t, w["vol"], w["is_call"], RATE).vega
    print(f"  py_vollib_vectorized      {rate:>12,.0f} options/s   ours/peer = {ours / rate:.2f}")
    print(f"    ({accuracy(run(), w['vol'], vega, spot)})")
    print(f"    (first call incl. JIT compile {compile_s:.1f} s{note})")


def bench_scipy(w: dict[str, Any], ours: float) -> None:
    try:
        from scipy.optimize import brentq
        from scipy.special import ndtr
        from scipy.stats import norm
    except ImportError:
        print("  scipy baseline            skipped (not installed)")
        return
    spot = w["spot"]
    strike, t, vol = w["strike"][:N_SCIPY], w["t"][:N_SCIPY], w["vol"][:N_SCIPY]
    is_call, price = w["is_call"][:N_SCIPY], w["price"][:N_SCIPY]

    def bs(sigma: float, k: float, tt: float, call: bool) -> float:
        sq = sigma * math.sqrt(tt)
        d1 = (math.log(spot / k) + (RATE + 0.5 * sigma * sigma) * tt) / sq
        d2 = d1 - sq
        disc = k * math.exp(-RATE * tt)
        if call:
            return float(spot * ndtr(d1) - disc * ndtr(d2))
        return float(disc * ndtr(-d2) - spot * ndtr(-d1))

    def solve_one(k: float, tt: float, call: bool, p: float) -> float:
        try:
            return float(brentq(lambda s: bs(s, k, tt, call) - p, 1e-4, 10.0, xtol=1e-12))
        except ValueError:  # no sign change: the price is at/below the vol_low price
            return math.nan

    def run() -> np.ndarray:
        iv = np.array(
            [
                solve_one(float(strike[i]), float(t[i]), bool(is_call[i]), float(price[i]))
                for i in range(N_SCIPY)
            ]
        )
        sq = iv * np.sqrt(t)
        d1 = (np.log(spot / strike) + (RATE + 0.5 * iv * iv) * t) / sq
        d2 = d1 - sq
        pdf = norm.pdf(d1)
        disc = strike * np.exp(-RATE * t)
        np.where(is_call, norm.cdf(d1), norm.cdf(d1) - 1.0)  # delta
        pdf / (spot * sq)  # gamma
        -spot * pdf * iv / (2 * np.sqrt(t)) - np.where(
            is_call, RATE * disc * norm.cdf(d2), -RATE * disc * norm.cdf(-d2)
        )  # theta
        spot * pdf * np.sqrt(t)  # vega
        return iv

    seconds = best_of(run, repeats=2)
    rate = N_SCIPY / seconds
    vega = bs_greeks(spot, strike, t, vol, is_call, RATE).vega
    print(
        f"  scipy brentq + norm       {rate:>12,.0f} options/s   ours/peer = {ours / rate:.1f}"
        f"   (measured on {N_SCIPY:,} contracts, per option)"
    )
    print(f"    ({accuracy(run(), vol, vega, spot)})")


def bench_price_delta(w: dict[str, Any]) -> None:
    spot, strike, t, vol, is_call = w["spot"], w["strike"], w["t"], w["vol"], w["is_call"]
    both = best_of(
        lambda: (
            bs_price(spot, strike, t, vol, is_call, RATE),
            bs_delta(spot, strike, t, vol, is_call, RATE),
        )
    )
    greeks = best_of(lambda: bs_greeks(spot, strike, t, vol, is_call, RATE))
    print(f"  ours price + delta        {N_CONTRACTS / both:>12,.0f} options/s")
    print(f"  ours 4 greeks             {N_CONTRACTS / greeks:>12,.0f} options/s")


def bench_chain_scan() -> None:
    """One 0DTE-style snapshot: 150 strikes, calls and puts, a smile, 5-cent wide quotes."""
    spot, t = 5000.0, 150.0 / MINUTES_PER_YEAR  # 2.5 hours to the close
    strikes = spot + 5.0 * np.arange(-75, 75)
    strike = np.concatenate((strikes, strikes))
    is_call = np.concatenate((np.ones(150, dtype=bool), np.zeros(150, dtype=bool)))
    vol = 0.12 + 8.0 * (strike / spot - 1.0) ** 2
    fair = bs_price(spot, strike, t, vol, is_call, RATE)
    bid = np.maximum(np.round(fair - 0.05, 2), 0.0)
    ask = np.round(fair + 0.05, 2)

    def scan() -> tuple[float, float, int, int]:
        mid = 0.5 * (bid + ask)
        res = implied_vol(mid, spot, strike, t, is_call, RATE)
        ok = res.status == IVStatus.OK
        delta = bs_delta(spot, strike, t, np.where(ok, res.iv, 0.2), is_call, RATE)
        dist = np.where(ok, np.abs(np.abs(delta) - 0.30), np.inf)
        call = int(np.argmin(np.where(is_call, dist, np.inf)))
        put = int(np.argmin(np.where(is_call, np.inf, dist)))
        below = int((res.status == IVStatus.BELOW_INTRINSIC).sum())
        return float(strike[call]), float(strike[put]), int(ok.sum()), below

    for _ in range(20):
        scan()
    times = []
    for _ in range(1000):
        start = time.perf_counter()
        picked = scan()
        times.append(time.perf_counter() - start)
    median_us = statistics.median(times) * 1e6
    print(f"  300-contract chain scan   {median_us:>12,.0f} us per scan (median of {len(times)})")
    print(
        f"    (0.30-delta call strike {picked[0]:.0f}, put strike {picked[1]:.0f}; "
        f"{picked[2]}/300 mids solved, {picked[3]} under intrinsic after cent rounding)"
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(
        f"machine: {cpu_model()} ({platform.machine()}), cpu_count={os.cpu_count()}"
        f" (usable {affinity}), python {platform.python_version()}, numpy {np.__version__}"
    )
    if "OPENBLAS_CORETYPE" in os.environ:
        print(f"OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']}")
    w = workload(N_CONTRACTS)
    print(
        f"\nIV + delta/gamma/theta/vega, {N_CONTRACTS:,} random contracts "
        f"(best of {REPEATS}; r={RATE}, seed {SEED}):"
    )
    ours = bench_ours(w)
    bench_vollib(w, ours)
    bench_scipy(w, ours)
    print("\nprices and greeks alone (ours):")
    bench_price_delta(w)
    print("\nchain scan (ours):")
    bench_chain_scan()


if __name__ == "__main__":
    main()
