"""Latency of one Smart-0DTE loop iteration, plain and as a Prefect task run. A script, not a test.

Run: ``make bench`` or ``.venv/bin/python bench/loop.py`` (about a minute). A full simulated
session (2026-12-01, seed 3: 3 chains a minute, signals, risk, the paper broker; no network) runs
twice on fresh SQLite ledgers:

1. plain: the function the ``intraday-iteration`` task wraps (``tasks.steps.iteration.fn``), called
   once a simulated minute, each call timed;
2. Prefect: the real ``smart0dte-intraday`` flow (ephemeral API, one task run per iteration); each
   task call is timed from the flow's side, and the task's own function inside the run, so the
   orchestration overhead of every iteration (task run minus its body) is measured directly.

Prints p50/p99/max per iteration for both, the overhead per iteration, and the whole-day wall times.
The budget is one iteration per 60 s of market time; the target is p99 <= 50 ms.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import tempfile
import time as _time
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DAY = date(2026, 12, 1)
SEED = 3
TARGET_P99_MS = 50.0


def pct(ms: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``ms``."""
    s = sorted(ms)
    return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]


def describe(ms: list[float]) -> str:
    return (
        f"p50 {statistics.median(ms):7.2f} ms   p99 {pct(ms, 0.99):7.2f} ms   "
        f"max {max(ms):7.2f} ms   mean {statistics.fmean(ms):6.2f} ms"
    )


def orders_of(out: Any) -> int:
    return len(out["entries"]) + len(out["exits"]) if isinstance(out, dict) else 0


def plain_day(url: str) -> tuple[list[float], list[int], float]:
    """Per-iteration latency (ms) of the task's function called directly, the orders placed in
    each iteration, and the day's wall s."""
    from core.calendar import NY, session
    from tasks import steps
    from tasks.runtime import build_runtime

    rt = build_runtime(DAY, SEED, time(9, 40), db_url=url)
    lat: list[float] = []
    orders: list[int] = []
    t0 = _time.perf_counter()
    try:
        steps.start_session.fn(rt)
        tick = datetime.combine(DAY, time(9, 45), tzinfo=NY)
        end = session(DAY).closeout
        while tick < end:
            rt.clock.sleep_until(tick)
            s = _time.perf_counter()
            out = steps.iteration.fn(rt, tick)
            lat.append((_time.perf_counter() - s) * 1000)
            orders.append(orders_of(out))
            tick += timedelta(minutes=1)
            while tick <= rt.clock.now() - timedelta(minutes=1):
                tick += timedelta(minutes=1)
    finally:
        rt.close()
    return lat, orders, _time.perf_counter() - t0


def flow_day(url: str) -> tuple[list[float], list[float], list[int], float]:
    """The real flow, with each ``intraday-iteration`` task call timed outside (the task run) and
    inside (its function). Returns (task-run ms, body ms, orders per iteration, the flow's wall s)."""
    from flows.smart0dte import smart0dte_intraday
    from tasks import steps

    task = steps.iteration
    outer: list[float] = []
    inner: list[float] = []
    orders: list[int] = []
    body = task.fn

    @functools.wraps(body)
    def timed_body(*args: Any, **kwargs: Any) -> Any:
        s = _time.perf_counter()
        out = body(*args, **kwargs)
        inner.append((_time.perf_counter() - s) * 1000)
        orders.append(orders_of(out))
        return out

    def timed_call(*args: Any, **kwargs: Any) -> Any:
        s = _time.perf_counter()
        try:
            return task(*args, **kwargs)
        finally:
            outer.append((_time.perf_counter() - s) * 1000)

    task.fn = timed_body
    steps.iteration = timed_call  # type: ignore[assignment]  # the flow looks it up per call
    try:
        t0 = _time.perf_counter()
        smart0dte_intraday(day=DAY, seed=SEED, db_url=url)
        wall = _time.perf_counter() - t0
    finally:
        steps.iteration = task
        task.fn = body
    return outer, inner, orders, wall


def print_split(ms: list[float], orders: list[int]) -> None:
    with_orders = [m for m, n in zip(ms, orders, strict=True) if n]
    without = [m for m, n in zip(ms, orders, strict=True) if not n]
    if with_orders:
        print(f"    {len(with_orders):>3} placing orders  {describe(with_orders)}")
    if without:
        print(f"    {len(without):>3} without orders {describe(without)}")


def timed_once(fn: Callable[[], object]) -> float:
    t0 = _time.perf_counter()
    fn()
    return _time.perf_counter() - t0


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="dte-bench-"))
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    import logging

    logging.getLogger("dte").setLevel(logging.ERROR)

    from core.pricing import implied_vol

    # numba imports and loads the compiled pricing kernel on the first pricing call of a process
    first = timed_once(lambda: implied_vol(1.0, 100.0, 100.0, 0.1, True))
    lat, orders, plain_wall = plain_day(f"sqlite:///{work / 'plain.db'}")
    print(f"Smart-0DTE loop, {DAY} seed {SEED}: {len(lat)} iterations, fresh SQLite ledger each")
    print(f"  (first pricing call of the process, loading the compiled kernel: {first:.2f} s)")
    print(f"  plain function   {describe(lat)}   day {plain_wall:6.2f} s")
    print_split(lat, orders)

    # the first flow call starts the ephemeral Prefect API: warm it up on a skipped (holiday) run
    from flows.smart0dte import market_open_scan

    warm = timed_once(
        lambda: market_open_scan(day=date(2026, 11, 26), db_url=f"sqlite:///{work / 'warm.db'}")
    )
    print(f"  Prefect API start + one skipped flow run: {warm:6.2f} s (once per process)")
    outer, inner, flow_orders, flow_wall = flow_day(f"sqlite:///{work / 'flow.db'}")
    if not outer or len(outer) != len(inner):
        print(f"  flow: timed {len(outer)} task calls and {len(inner)} bodies; no comparison")
        return
    overhead = [o - i for o, i in zip(outer, inner, strict=True)]
    print(f"  as a task run    {describe(outer)}   day {flow_wall:6.2f} s (whole flow)")
    print_split(outer, flow_orders)
    print(f"    its body       {describe(inner)}")
    print(f"  Prefect overhead {describe(overhead)}   per iteration (task run - body)")
    print(
        f"  flow day / plain day = {flow_wall / plain_wall:4.2f}; budget one iteration per 60 s "
        f"-> {60_000 / pct(outer, 0.99):,.0f}x headroom at p99"
    )
    p99 = pct(outer, 0.99)
    verdict = "met" if p99 <= TARGET_P99_MS else "NOT met"
    print(f"  target p99 <= {TARGET_P99_MS:.0f} ms (as a task run): {p99:.2f} ms, {verdict}")


if __name__ == "__main__":
    main()
