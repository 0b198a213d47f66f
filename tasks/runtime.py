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
from typing import Any

from adapters.clock import SimClock, WallClock
from adapters.paper import PaperBroker, paper_url_for
from adapters.ports import Broker, Clock, MarketData
from adapters.simulator import SimulatedMarket
from adapters.store import TradeStore
from core.approvals import ApprovalTier, TierRules
from core.calendar import NY, Session, session
from core.models import OrderIntent, RiskLimits, TradingMode
from systems.smart0dte.config import DEFAULT as SMART_DEFAULT
from systems.smart0dte.config import Smart0DTEConfig

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
    publisher: Any = None  # tasks.events.Publisher when running under Prefect
    reference: Any = None  # tasks.trading.DayReference, filled on first use in the run
    approvals_enabled: bool = False  # T2/T3 entries wait for a human (default on in live)
    tier_rules: TierRules = field(default_factory=TierRules)
    approval_timeout: timedelta = timedelta(minutes=5)  # 0DTE; Mag7 uses 30 min
    # called with (intent, approval_id, tier, summary markdown) to ask a human; set by the flow
    approval_requester: Callable[[OrderIntent, int, ApprovalTier, str], None] | None = None

    def close(self) -> None:
        self.store.dispose()
        dispose = getattr(self.broker, "dispose", None)
        if callable(dispose):
            dispose()


def build_runtime(
    day: date,
    seed: int,
    start: time,
    speed: float = 0.0,
    db_url: str | None = None,
    mode: TradingMode = TradingMode.DEVELOPMENT,
    simulated: bool = True,
) -> Runtime:
    """Adapters for one flow run. ``start`` is the simulated wall time the run begins at."""
    if mode is not TradingMode.DEVELOPMENT:
        raise NotImplementedError(
            f"mode {mode.value} needs the IBKR and Polygon adapters (not in this build): "
            "use development"
        )
    sess = session(day)
    url = database_url(db_url)
    store = TradeStore(url)
    store.migrate()
    market = SimulatedMarket(seed)
    clock: Clock = (
        SimClock(datetime.combine(day, start, tzinfo=NY), speed) if simulated else WallClock()
    )
    broker: Broker = PaperBroker(market, clock, paper_url_for(url))
    return Runtime(mode=mode, session=sess, clock=clock, market=market, broker=broker, store=store)
