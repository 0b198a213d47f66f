"""Throughput of the project's backtest (``tasks.backtest``) beside the peers' plain bar loop.

A script, not a test. Run: ``make bench`` or ``.venv-bench/bin/python bench/backtest.py
[--days N] [--no-peers]``. The default is a real simulated year: 252 sessions from 2026-11-16,
about a minute here, plus the peers' 1-2 minutes; ``--days 3`` times three sessions and
extrapolates.

What is measured: ``run_backtest``'s engine (``Backtest``) of Smart-0DTE on the simulator
(seed 7) over ``--days`` consecutive sessions starting 2026-11-16, after one warm-up day
(imports, the numba cache, the simulator's daily paths) that is not counted. Each simulated minute
is one bar per underlying (SPY, QQQ, IWM), and behind each bar the loop prices that underlying's
same-day chain (about 300 contracts: IV and greeks of every quote), evaluates the signals, the
risk gate, the order path (walking limits, fills, ledger rows in SQLite) and the P&L mark,
exactly as a live run does.

Printed: the run's fixed costs (set-up; metrics, tearsheet and stored results at the end), the
days' seconds, seconds per simulated day, ms per loop minute, bars/s (minutes x 3 underlyings),
the year (measured with ``--days 252``, else fixed + 252 x per day) against the 60 s target, and
the peers' bars/s for a plain SMA-cross bar loop on the same simulator's bars
(``bench/backtest_peers.py``) with the ratio. The peers do far less per bar (no option chain, no
order path): the ratio says what the project's per-bar work costs, not which engine is "faster".
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.calendar import trading_days  # noqa: E402
from tasks.backtest import Backtest, BacktestParams  # noqa: E402

SEED = 7
WARMUP = date(2026, 11, 13)
START = date(2026, 11, 16)
UNDERLYINGS = 3
YEAR_SESSIONS = 252
TARGET_YEAR_S = 60.0


@dataclass
class Timing:
    setup: float = 0.0  # Backtest(): ledger, results database, simulator
    days: float = 0.0  # run_day for every session
    finish: float = 0.0  # metrics, tearsheet, stored results
    minutes: int = 0
    slowest: tuple[float, date] = (0.0, date.min)

    @property
    def fixed(self) -> float:
        return self.setup + self.finish


def run_days(days: list[date], workdir: Path) -> Timing:
    """Wall seconds of one backtest over ``days``, split into its parts."""
    params = BacktestParams(system="smart0dte", start=days[0], end=days[-1], seed=SEED)
    timing = Timing()

    def count(*_: object) -> None:
        timing.minutes += 1

    tag = f"{days[0]:%Y%m%d}-{len(days)}"
    start = time.perf_counter()
    bt = Backtest(
        params,
        out_dir=workdir / f"out-{tag}",
        db_url=f"sqlite:///{workdir / f'ledger-{tag}.db'}",
        results_url=f"sqlite:///{workdir / f'results-{tag}.db'}",
        on_minute=count,
    )
    timing.setup = time.perf_counter() - start
    try:
        for day in bt.days:
            began = time.perf_counter()
            bt.run_day(day)
            took = time.perf_counter() - began
            timing.days += took
            timing.slowest = max(timing.slowest, (took, day))
        began = time.perf_counter()
        bt.finish()
        timing.finish = time.perf_counter() - began
    finally:
        bt.close()
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--days", type=int, default=YEAR_SESSIONS, help="sessions to time (default 252, a year)"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip backtrader / vectorbt")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the strategy's risk warnings are not the benchmark
    days = trading_days(START, date(2027, 12, 31))[: args.days]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="dte-bench-bt-") as tmp:
        work = Path(tmp)
        warm = run_days([WARMUP], work)
        timing = run_days(days, work)
    per_day = timing.days / len(days)
    per_minute_ms = 1000 * timing.days / timing.minutes
    bars = timing.minutes * UNDERLYINGS
    rate = bars / timing.days
    print(f"warm-up day (not counted): {warm.setup + warm.days + warm.finish:.1f} s")
    print(
        f"ours: {len(days)} sessions {days[0]}..{days[-1]}, {timing.minutes} loop minutes: "
        f"{timing.days:.1f} s of days + {timing.fixed:.1f} s fixed "
        f"(set-up {timing.setup:.1f} s, metrics/tearsheet/results {timing.finish:.1f} s)"
    )
    print(
        f"  {per_day:.3f} s per simulated day (slowest {timing.slowest[0]:.2f} s on "
        f"{timing.slowest[1]}), {per_minute_ms:.2f} ms per loop minute "
        "(3 chains priced, signals, risk, orders, ledger)"
    )
    print(f"  {rate:,.0f} bars/s (minute x underlying)")
    if len(days) >= YEAR_SESSIONS:
        year, how = timing.days + timing.fixed, "measured"
    else:
        year, how = timing.fixed + per_day * YEAR_SESSIONS, "extrapolated"
    verdict = "met" if year <= TARGET_YEAR_S else f"NOT met, {year / TARGET_YEAR_S:.1f}x over"
    print(
        f"  year of {YEAR_SESSIONS} sessions, {how}: {year:,.1f} s "
        f"(target <= {TARGET_YEAR_S:.0f} s: {verdict})"
    )
    if args.no_peers:
        return
    try:
        from backtest_peers import peer_bar_rates  # bench/ is on sys.path as the script's dir
    except ImportError as exc:  # the peers live in the bench venv (requirements/bench.in)
        print(f"peers: not installed here ({exc}); run in .venv-bench")
        return
    for name, peer in sorted(peer_bar_rates().items()):
        print(
            f"  {name:<11} plain SMA-cross bar loop: {peer:>12,.0f} bars/s; "
            f"ours / {name} = {rate / peer:.5f}"
        )


if __name__ == "__main__":
    main()
