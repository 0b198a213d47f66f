"""health-check: probe every dependency, publish an artifact and an event; unhealthy -> alert.

The event ``dte.health.unhealthy`` (or ``dte.health.ok``) is what the alert automation listens to;
the run itself ends Completed (named "Unhealthy" when a probe failed) so a failing dependency does
not also look like a crashed flow.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import State, flow, get_run_logger
from prefect.states import Completed

from core.calendar import NY, is_trading_day, previous_trading_day
from flows.common import window_reason
from tasks import health_steps


@flow(name="health-check", log_prints=False)
def health_check(
    db_url: str | None = None,
    seed: int = 7,
    mode: str = "development",
    work_pool: str = "dte-process",
    check_worker: bool = True,
    guard: bool = True,
    at: datetime | None = None,
) -> dict[str, Any] | State:
    """Probe everything now; with ``guard`` (scheduled runs) only on trading days 09:00-16:30.

    ``at`` judges the probes as of another time (drills, tests); default: the wall clock.
    """
    now = at.astimezone(NY) if at is not None else datetime.now(tz=NY)
    if guard and (why := window_reason("health-check", now)) is not None:
        return Completed(name="Skipped", message=why)
    today = now.date()
    day = today if is_trading_day(today) else previous_trading_day(today)
    rt = health_steps.prepare_wall(day, seed, db_url, mode)
    try:
        probes = health_steps.probe_all(rt, now, work_pool if check_worker else None)
    finally:
        rt.close()
    report = health_steps.publish(probes, mode, now)
    bad = [p for p in probes if not p.ok]
    if bad:
        get_run_logger().warning("unhealthy: %s", "; ".join(f"{p.name}: {p.detail}" for p in bad))
        return Completed(
            name="Unhealthy",
            message="; ".join(f"{p.name}: {p.detail}" for p in bad),
            data=report,
        )
    return report
