"""Polygon / Massive market data: ``PolygonMarketData`` (the ``MarketData`` port on the official
``massive.RESTClient``), pure response parsing and a parquet history cache.

See ``client`` (live snapshot vs. replay from historical quotes, retries, caching), ``parsing``
(JSON -> Bars / ChainSnapshot / issues, ticker mapping) and ``cache`` (parquet layout).
"""

from adapters.polygon.cache import HistoryCache
from adapters.polygon.client import DEFAULT_BASE_URL, PolygonMarketData, RequestRefused
from adapters.polygon.parsing import (
    ChainIssue,
    ListedContract,
    MarketStatus,
    ParsedChain,
    from_polygon_ticker,
    option_ticker,
    parse_option_ticker,
    to_polygon_ticker,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "ChainIssue",
    "HistoryCache",
    "ListedContract",
    "MarketStatus",
    "ParsedChain",
    "PolygonMarketData",
    "RequestRefused",
    "from_polygon_ticker",
    "option_ticker",
    "parse_option_ticker",
    "to_polygon_ticker",
]
