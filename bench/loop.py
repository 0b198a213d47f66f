"""Benchmark (not a test): latency of one Smart-0DTE loop iteration, plain and through Prefect.

Runs a full simulated session (2026-12-01, 360 iterations) twice on fresh SQLite ledgers:
1. the plain step functions (observe, exits, risk, entries) that the tasks wrap;
2. the real ``smart0dte-intraday`` flow (one Prefect task per iteration, ephemeral API).
Prints per-iteration percentiles for the plain loop, the wall time of both, and their ratio, so the
orchestration overhead per minute of trading is visible. Run: ``.venv/bin/python bench/loop.py``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time as _time
from datetime import date, datetime, time, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DAY = date(2026, 12, 1)
SEED = 3


def plain_day(url: str) -> tuple[list[float], float]:
    from core.calendar import NY, session
    from tasks import trading
    from tasks.runtime import build_runtime

    rt = build_runtime(DAY, SEED, time(9, 40), db_url=url)
    lat: list[float] = []
    t0 = _time.perf_counter()
    try:
        trading.start_session(rt)
        tick = datetime.combine(DAY, time(9, 45), tzinfo=NY)
        end = session(DAY).closeout
        while tick < end:
            rt.clock.sleep_until(tick)
            s = _time.perf_counter()
            obs = trading.observe(rt, tick)
            trading.manage_exits(rt, obs)
            change = trading.update_risk(rt, obs)
            if change.state.allows_entries:
                trading.enter(rt, obs, change.daily_pnl)
            lat.append(_time.perf_counter() - s)
            tick += timedelta(minutes=1)
            while tick <= rt.clock.now() - timedelta(minutes=1):
                tick += timedelta(minutes=1)
    finally:
        rt.close()
    return lat, _time.perf_counter() - t0


def flow_day(url: str) -> float:
    from flows.smart0dte import smart0dte_intraday

    t0 = _time.perf_counter()
    smart0dte_intraday(day=DAY, seed=SEED, db_url=url)
    return _time.perf_counter() - t0


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="dte-bench-"))
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    import logging

    logging.getLogger("dte").setLevel(logging.ERROR)

    lat, plain_wall = plain_day(f"sqlite:///{work / 'plain.db'}")
    ms = sorted(x * 1000 for x in lat)
    print(f"Smart-0DTE loop, {DAY} seed {SEED}: {len(ms)} iterations, fresh SQLite ledger")
    print(
        f"  plain steps      median {statistics.median(ms):7.2f} ms   p95 {ms[int(0.95 * len(ms))]:7.2f} ms"
        f"   max {ms[-1]:7.2f} ms   day {plain_wall:6.2f} s"
    )
    # first flow call starts the ephemeral Prefect API: warm it up on a skipped (holiday) run
    from flows.smart0dte import market_open_scan

    t0 = _time.perf_counter()
    market_open_scan(day=date(2026, 11, 26), db_url=f"sqlite:///{work / 'warm.db'}")
    print(f"  Prefect API start + one skipped flow run: {_time.perf_counter() - t0:6.2f} s")
    flow_wall = flow_day(f"sqlite:///{work / 'flow.db'}")
    per_iter = flow_wall / len(ms) * 1000
    print(
        f"  through the flow {per_iter:7.2f} ms per iteration (one task each)"
        f"   day {flow_wall:6.2f} s   flow/plain = {flow_wall / plain_wall:4.2f}"
    )
    print(f"  budget: one iteration per 60 s of market time -> {60_000 / per_iter:,.0f}x headroom")


if __name__ == "__main__":
    main()
