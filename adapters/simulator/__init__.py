"""Seeded synthetic market (SPY/QQQ/IWM + VIX, the Mag7 stocks, option chains): the MarketData port.

``SimulatedMarket(seed, SimulatorConfig(...))``; see ``paths`` (price model), ``chains`` (listings,
surface, quotes), ``mag7`` (the stocks: factor model, earnings, IV history) and ``market`` (the
port and its semantics).
"""

from adapters.simulator.mag7 import EarningsEvent, EarningsTiming
from adapters.simulator.mag7_config import Mag7MarketConfig, StockSpec
from adapters.simulator.market import DayInfo, SimulatedMarket
from adapters.simulator.paths import (
    DayRegime,
    DivergenceEpisode,
    SimulatorConfig,
    UnderlyingSpec,
)

__all__ = [
    "DayInfo",
    "DayRegime",
    "DivergenceEpisode",
    "EarningsEvent",
    "EarningsTiming",
    "Mag7MarketConfig",
    "SimulatedMarket",
    "SimulatorConfig",
    "StockSpec",
    "UnderlyingSpec",
]
