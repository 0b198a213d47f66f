"""Health probes: database, cache, market data, broker, worker heartbeat, the intraday loop.

Each probe returns a ``Probe`` and never raises: an exception becomes ok=False with its type and
message (which never carry secrets: URLs are masked). ``health-check`` publishes them.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.engine import make_url

from adapters.cache import InProcessCache
from adapters.ports import Cache
from core.calendar import NY, is_trading_day, previous_trading_day, session
from core.models import SystemName
from tasks.runtime import Runtime

LOOP_STALE_AFTER = timedelta(minutes=3)
WORKER_STALE_AFTER = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class Probe:
    name: str
    ok: bool
    detail: str
    latency_ms: float


def masked(url: str) -> str:
    """A database URL safe to show (password hidden)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


def run_probe(name: str, fn: Callable[[], str]) -> Probe:
    start = _time.perf_counter()
    try:
        detail = fn()
        ok = True
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        ok = False
    return Probe(name, ok, detail, round((_time.perf_counter() - start) * 1000, 2))


def database(rt: Runtime) -> str:
    counts = rt.store.table_row_counts()
    return f"{masked(str(rt.store.engine.url))}: {len(counts)} tables, {sum(counts.values())} rows"


def cache(store: Cache | None = None) -> str:
    """A round trip through the run's cache (Redis where configured). The cache is never the
    source of truth, so an outage only degrades speed, but it is reported."""
    c = store or InProcessCache()
    ping = getattr(c, "ping", None)
    if callable(ping) and not ping():
        raise RuntimeError(f"{type(c).__name__} unreachable: trading runs without a cache")
    c.set("health:probe", b"ok", 30)
    if c.get("health:probe") != b"ok":
        raise RuntimeError("cache round trip returned a different value")
    return f"{type(c).__name__} round trip ok"


def market(rt: Runtime, now: datetime) -> str:
    day = now.astimezone(NY).date()
    ref: date = day if is_trading_day(day) else previous_trading_day(day)
    sess = session(ref)
    at = min(max(now, sess.open + timedelta(minutes=5)), sess.close - timedelta(minutes=1))
    if ref != day:
        at = sess.close - timedelta(minutes=1)
    expiries = rt.market.expiries("SPY", ref)
    chain = rt.market.chain("SPY", expiries[0], at)
    return f"SPY chain {expiries[0]} at {at:%H:%M}: {len(chain)} quotes, spot {chain.spot:.2f}"


def broker(rt: Runtime) -> str:
    acct = rt.broker.account()
    return (
        f"account reachable, equity {acct.equity:,.2f}, {len(rt.broker.open_orders())} open orders"
    )


def loop(rt: Runtime, now: datetime) -> str:
    """During the loop's window the last P&L mark must be fresh; outside it there is nothing to do."""
    day = now.astimezone(NY).date()
    if not is_trading_day(day):
        return "not a trading day: loop not scheduled"
    sess = session(day)
    start = datetime.combine(day, rt.smart.loop_start, tzinfo=NY) + LOOP_STALE_AFTER
    if not start <= now < sess.closeout:
        return f"outside the loop window ({rt.smart.loop_start:%H:%M}-{sess.closeout:%H:%M})"
    marks = rt.store.pnl_marks(day, SystemName.SMART0DTE)
    if not marks:
        raise RuntimeError(f"no loop iteration recorded today (window since {rt.smart.loop_start})")
    age = now - marks[-1].at
    if age > LOOP_STALE_AFTER:
        raise RuntimeError(f"last loop iteration {age.total_seconds():.0f} s ago")
    return f"last iteration {age.total_seconds():.0f} s ago"


def worker_heartbeat(heartbeats: list[datetime], now: datetime, pool: str) -> str:
    """``heartbeats`` are the pool's workers' last heartbeats (from the Prefect API)."""
    if not heartbeats:
        raise RuntimeError(f"no worker registered in pool {pool!r}")
    newest = max(heartbeats)
    age = now - newest
    if age > WORKER_STALE_AFTER:
        raise RuntimeError(
            f"newest worker heartbeat in {pool!r} is {age.total_seconds():.0f} s old"
        )
    return f"{len(heartbeats)} worker(s), newest heartbeat {age.total_seconds():.0f} s ago"
