"""Bar throughput of backtesting peers on the project's synthetic bars. A script, not a test.

Run: ``make bench`` or ``.venv-bench/bin/python bench/backtest_peers.py`` (about 1-2 minutes; the
peers are in requirements/bench.in). The bars are the simulator's (``adapters.simulator``, seed
21): one year of 1-minute SPY, QQQ and IWM bars, 2025-12-01 to 2026-11-30 (251 sessions,
292,590 bars). The strategy is the plainest bar loop: per symbol, a 10/30-bar SMA cross on the
close, long 100 shares while the fast average is above the slow one.

* backtrader: ``Cerebro`` with the three feeds (PandasData, preloaded), the strategy's ``next``
  called once per bar; timed from building the Cerebro to the end of ``run``.
* vectorbt: ``MA.run`` for both averages, crossover signals, ``Portfolio.from_signals`` and the
  total return; its numba functions are compiled on a small slice first, outside the timing.

``peer_bar_rates()`` returns ``{name: bars_per_second}`` (bars summed over the three symbols, the
best of a few runs), so the project's own backtest figure (tasks/backtest.py) can be set beside
them in the same process; run as a script, it prints them.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SEED = 21
START, END = date(2025, 12, 1), date(2026, 11, 30)
SYMBOLS = ("SPY", "QQQ", "IWM")
FAST, SLOW, SIZE = 10, 30, 100


def load_bars(
    seed: int = SEED, start: date = START, end: date = END, symbols: tuple[str, ...] = SYMBOLS
) -> dict[str, Any]:
    """1-minute OHLCV of each symbol from the simulator, as pandas DataFrames (naive NY time
    index, which both peers expect)."""
    import pandas as pd

    from adapters.simulator import SimulatedMarket
    from core.calendar import session, trading_days

    market = SimulatedMarket(seed)
    days = trading_days(start, end)
    frames: dict[str, Any] = {}
    for sym in symbols:
        bars = market.bars(sym, session(days[0]).open, session(days[-1]).close)
        index = pd.DatetimeIndex([t.replace(tzinfo=None) for t in bars.times], name="datetime")
        frames[sym] = pd.DataFrame(
            {
                "open": bars.open,
                "high": bars.high,
                "low": bars.low,
                "close": bars.close,
                "volume": bars.volume,
            },
            index=index,
        )
    return frames


def best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def backtrader_rate(frames: dict[str, Any], repeats: int = 2) -> float:
    """Bars per second of the SMA cross in backtrader (all symbols in one Cerebro)."""
    import backtrader as bt

    class SmaCross(bt.Strategy):
        def __init__(self) -> None:
            self.cross = {
                d: bt.ind.CrossOver(
                    bt.ind.SMA(d.close, period=FAST), bt.ind.SMA(d.close, period=SLOW)
                )
                for d in self.datas
            }

        def next(self) -> None:
            for d in self.datas:
                held = self.getposition(d).size
                if self.cross[d][0] > 0 and not held:
                    self.buy(data=d, size=SIZE)
                elif self.cross[d][0] < 0 and held:
                    self.close(data=d)

    def run() -> None:
        cerebro = bt.Cerebro(stdstats=False)
        for sym, frame in frames.items():
            feed = bt.feeds.PandasData(
                dataname=frame, timeframe=bt.TimeFrame.Minutes, compression=1
            )
            cerebro.adddata(feed, name=sym)
        cerebro.addstrategy(SmaCross)
        cerebro.broker.setcash(10_000_000.0)
        cerebro.run()

    n = sum(len(f) for f in frames.values())
    return n / best_of(run, repeats)


def vectorbt_rate(frames: dict[str, Any], repeats: int = 3) -> float:
    """Bars per second of the same SMA cross in vectorbt (indicators, signals, portfolio)."""
    import pandas as pd
    import vectorbt as vbt

    close = pd.DataFrame({sym: f["close"] for sym, f in frames.items()})

    def run(px: Any) -> float:
        fast = vbt.MA.run(px, FAST)
        slow = vbt.MA.run(px, SLOW)
        pf = vbt.Portfolio.from_signals(
            px,
            fast.ma_crossed_above(slow),
            fast.ma_crossed_below(slow),
            size=SIZE,
            init_cash=10_000_000.0,
            freq="1min",
        )
        return float(pf.total_return().sum())

    run(close.iloc[:1000])  # numba compiles on first use: not timed
    return close.size / best_of(lambda: run(close), repeats)


def peer_bar_rates(frames: dict[str, Any] | None = None) -> dict[str, float]:
    """``{peer: bars per second}`` for the peers that are installed (NaN for one that fails)."""
    frames = load_bars() if frames is None else frames
    rates: dict[str, float] = {}
    for name, fn in (("backtrader", backtrader_rate), ("vectorbt", vectorbt_rate)):
        try:
            rates[name] = fn(frames)
        except ImportError:
            continue
        except Exception as exc:  # a broken peer must not hide the other's figure
            print(f"{name} fails: {type(exc).__name__}: {exc}", file=sys.stderr)
            rates[name] = float("nan")
    return rates


def main() -> None:
    frames = load_bars()
    n = sum(len(f) for f in frames.values())
    print(
        f"backtest peers: SMA {FAST}/{SLOW} cross, long {SIZE} shares, on {n:,} simulator 1-minute "
        f"bars ({', '.join(frames)}, {START} to {END}, seed {SEED}); best of a few runs"
    )
    for name, rate in peer_bar_rates(frames).items():
        print(f"  {name:<12} {rate:>14,.0f} bars/s")


if __name__ == "__main__":
    main()
