"""Build the adapters a flow run needs, from plain parameters (no state survives between runs).

Development mode: the seeded simulator, a simulated clock, the paper broker and the SQL ledger.
Everything a flow needs is rebuilt from its parameters, so a deployed run, a retry and the demo all
see the same market for the same (date, seed).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from adapters.advisor import Advisor
from adapters.cache import InProcessCache
from adapters.cached_market import CachedMarketData
from adapters.clock import SimClock, WallClock
from adapters.metrics import NullMetrics
from adapters.paper import PaperBroker, paper_url_for
from adapters.ports import Broker, Cache, Clock, MarketData, Metrics
from adapters.redis_cache import CachePurpose, RedisCache
from adapters.simulator import SimulatedMarket
from adapters.store import TradeStore
from blocks.registry import ModeBlocks
from core.approvals import ApprovalTier, TierRules
from core.calendar import NY, Session, session
from core.models import OrderIntent, RiskLimits, SystemName, TradingMode
from systems.mag7.config import DEFAULT as MAG7_DEFAULT
from systems.mag7.config import Mag7Config
from systems.smart0dte.config import DEFAULT as SMART_DEFAULT
from systems.smart0dte.config import Smart0DTEConfig

if TYPE_CHECKING:  # the vendor SDKs load only in the modes that use them
    from adapters.ibkr.broker import IBKRBroker
    from adapters.polygon.client import PolygonMarketData

DEFAULT_DB_URL = "sqlite:///var/dte.db"


def database_url(explicit: str | None = None, fallback: str = DEFAULT_DB_URL) -> str:
    """Explicit URL, else $DTE_DATABASE_URL, else ``fallback`` (the mode's storage block, or the
    embedded SQLite file ``./var/dte.db``)."""
    return explicit or os.environ.get("DTE_DATABASE_URL") or fallback


@dataclass
class Runtime:
    mode: TradingMode
    session: Session
    clock: Clock
    market: MarketData
    broker: Broker
    store: TradeStore
    limits: RiskLimits = field(default_factory=RiskLimits)
    smart: Smart0DTEConfig = SMART_DEFAULT
    cache: Cache = field(default_factory=InProcessCache)  # never the source of truth
    metrics: Metrics = field(default_factory=NullMetrics)  # InfluxDB where the block names one
    advisor: Any = None  # adapters.advisor.Advisor (OpenAI or its deterministic fallback)
    publisher: Any = None  # tasks.events.Publisher when running under Prefect
    reference: Any = None  # tasks.trading.DayReference, filled on first use in the run
    approvals_enabled: bool = False  # T2/T3 entries wait for a human (default on in live)
    tier_rules: TierRules = field(default_factory=TierRules)
    approval_timeout: timedelta = timedelta(minutes=5)  # 0DTE; Mag7 uses 30 min
    # called with (intent, approval_id, tier, summary markdown) to ask a human; set by the flow
    approval_requester: Callable[[OrderIntent, int, ApprovalTier, str], None] | None = None
    mag7: Mag7Config = MAG7_DEFAULT  # Mag7-7DTE settings (mode overrides from the settings block)
    mag7_approval_timeout: timedelta = timedelta(minutes=30)

    def close(self) -> None:
        """Release every connection; metrics are flushed first (best effort, never raises)."""
        self.store.dispose()
        for adapter, method in (
            (self.metrics, "close"),
            (self.cache, "close"),
            (self.broker, "dispose"),
        ):
            release = getattr(adapter, method, None)
            if callable(release):
                release()


def build_runtime(
    day: date,
    seed: int,
    start: time,
    speed: float = 0.0,
    db_url: str | None = None,
    mode: TradingMode = TradingMode.DEVELOPMENT,
    simulated: bool = True,
    blocks: ModeBlocks | None = None,
) -> Runtime:
    """Adapters for one flow run. ``start`` is the simulated wall time the run begins at.

    development: the seeded simulator and the paper broker. testing / live: Polygon market data
    and the IBKR broker from the mode's blocks (``blocks`` required); with a simulated clock the
    Polygon adapter replays the day from history instead of reading live snapshots. In every
    mode the cache is Redis and the metrics InfluxDB where the storage block names them, and
    the advisor uses OpenAI where the OpenAI block holds a key (else its fallback text).
    """
    if mode is not TradingMode.DEVELOPMENT and blocks is None:
        raise ValueError(f"mode {mode.value} needs its blocks (IBKR, Polygon, storage)")
    sess = session(day)
    clock: Clock = (
        SimClock(datetime.combine(day, start, tzinfo=NY), speed) if simulated else WallClock()
    )
    cache = _cache(blocks)
    url = database_url(db_url)
    store = TradeStore(url)
    try:
        store.migrate()
        market: MarketData
        if mode is TradingMode.DEVELOPMENT:
            sim = SimulatedMarket(seed)
            market = sim
            broker: Broker = PaperBroker(sim, clock, paper_url_for(url))
        else:
            assert blocks is not None
            market = _polygon(blocks, live=not simulated)
            broker = _ibkr(blocks, fill_clock=clock.now if simulated else None)
        rt = Runtime(
            mode=mode,
            session=sess,
            clock=clock,
            # shared cache in front of the feed on the wall clock only: a simulated run asks for
            # every instant once, so caching its chains would only add encoding to each minute
            market=market if simulated else CachedMarketData(market, cache),
            broker=broker,
            store=store,
            cache=cache,
        )
    except BaseException:
        store.dispose()
        raise
    if blocks is not None:
        rt.metrics = _metrics(blocks, mode)
        rt.advisor = _advisor(blocks, cache, clock)
    return rt


def history_dir() -> Path:
    """Where downloaded history is kept as parquet: $DTE_HISTORY_DIR, else ``var/history``."""
    return Path(os.environ.get("DTE_HISTORY_DIR") or "var/history")


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None and value.get_secret_value() else None


def _cache(blocks: ModeBlocks | None) -> Cache:
    url = _secret(blocks.storage.redis_url) if blocks is not None else None
    if url is None:
        return InProcessCache()
    return RedisCache(url, SystemName.SMART0DTE, CachePurpose.CHAINS)


def _metrics(blocks: ModeBlocks, mode: TradingMode) -> Metrics:
    st = blocks.storage
    if not st.influx_url:
        return NullMetrics()
    from adapters.metrics import InfluxMetrics

    return InfluxMetrics(
        st.influx_url,
        _secret(st.influx_token) or "",
        st.influx_org or "dte",
        st.influx_bucket or "dte",
        default_tags={"mode": mode.value},
    )


def _advisor(blocks: ModeBlocks, cache: Cache, clock: Clock) -> Advisor:
    ai = blocks.openai
    return Advisor(
        api_key=_secret(ai.api_key),
        model=ai.model,
        base_url=ai.base_url,
        timeout_seconds=ai.timeout_seconds,
        daily_token_budget=ai.daily_token_budget,
        cache=cache,
        now=clock.now,
    )


def _polygon(blocks: ModeBlocks, live: bool) -> PolygonMarketData:
    from adapters.polygon.client import PolygonMarketData

    return PolygonMarketData(
        _secret(blocks.polygon.api_key),
        base_url=blocks.polygon.base_url,
        live=live,
        cache_dir=history_dir(),
    )


def _ibkr(blocks: ModeBlocks, fill_clock: Callable[[], datetime] | None) -> IBKRBroker:
    from adapters.ibkr.broker import IBKRBroker

    ib = blocks.ibkr
    if ib.port is None or ib.client_id is None:
        raise ValueError(f"{blocks.mode.value} IBKR block needs a port and a client id")
    return IBKRBroker(
        ib.host,
        ib.port,
        ib.client_id,
        _secret(ib.account),
        mode=blocks.mode.value,
        read_only=ib.read_only,
        fill_clock=fill_clock,
    ).connect()
