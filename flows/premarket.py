"""premarket-brief (09:00 trading days): the advisor's brief, stored as an artifact and a file.

Advisory only: nothing here trades. Without an OpenAI key (or with its budget spent, or on any
failure) the brief is the advisor's deterministic fallback text, and the run still completes.
"""

from __future__ import annotations

from datetime import date, time
from typing import Any

from prefect import State, flow
from prefect.states import Completed

from flows.common import resolve_day
from flows.smart0dte import DEFAULT_SEED, _guard
from tasks import steps

BRIEF_AT = time(9, 0)


@flow(name="premarket-brief", log_prints=False)
def premarket_brief(
    day: date | None = None,
    seed: int = DEFAULT_SEED,
    db_url: str | None = None,
    mode: str | None = None,
    out_dir: str = "reports",
    clock: str = "simulated",
) -> dict[str, Any] | State:
    """09:00: prior closes, pre-market moves, VIX, calendar and open positions, as a brief."""
    d = resolve_day(day)
    if (why := _guard("premarket-brief", d, clock)) is not None:
        return Completed(name="Skipped", message=why)
    rt = steps.prepare(d, seed, BRIEF_AT, 0.0, db_url, mode, clock)
    try:
        return steps.brief(rt, out_dir)
    finally:
        rt.close()
