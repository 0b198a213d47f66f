"""Seeded synthetic market (SPY/QQQ/IWM + VIX, option chains) implementing the MarketData port.

``SimulatedMarket(seed, SimulatorConfig(...))``; see ``paths`` (price model), ``chains`` (listings,
surface, quotes) and ``market`` (the port and its semantics).
"""

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
    "SimulatedMarket",
    "SimulatorConfig",
    "UnderlyingSpec",
]
