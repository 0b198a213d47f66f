"""``PolygonMarketData``: the ``MarketData`` port on the official ``massive.RESTClient``.

Two ways to answer ``chain(underlying, expiry, at)``:

* **live** (constructed with ``live=True`` and ``at`` within ``live_tolerance`` of ``now()``):
  ``/v3/snapshot/options/{u}?expiration_date=...`` (paginated), vendor IV/greeks/OI kept,
  ours computed where missing (``parsed_chain`` exposes both and the data-quality issues).
* **replay** (``live=False``, or an ``at`` in the past): contracts listed that day
  (``/v3/reference/options/contracts?as_of=day``) + every contract's quotes of the session
  (``/v3/quotes/{O:...}``, ``timestamp.gte/lt``), reduced to the last quote at or before each
  session minute; the chain at ``at`` takes minute ``floor(at - open)``, so it only ever sees
  quotes stamped at or before ``at`` (1-minute resolution). Spot = the underlying's last
  completed regular-session minute bar (the first bar's open before one completes), as in
  the simulator. Historical quotes carry no open interest: replayed chains have OI -1.

HTTP behaviour
--------------
Every request goes through the public ``RESTClient`` methods with ``raw=True``; we decode the
JSON and follow ``next_url`` ourselves, one page at a time (only its query, e.g. ``cursor``, is
sent back to the same endpoint on our own base URL), so a failed page is retried alone. The client
we build has ``retries=0``: massive's urllib3 ``Retry`` then turns 413/429/499/5xx into
``MaxRetryError`` at once (no hidden sleeps) while other statuses raise ``BadResponse``. 429, 5xx,
timeouts and connection errors are retried here with exponential backoff (``sleep`` injectable)
up to ``max_attempts``, then ``MarketDataError`` names the endpoint and the reason. 401/403/404
fail at once. The API key travels only in the ``Authorization`` header and is scrubbed from any
text we raise or log. Nothing connects at import or construction.

Caching
-------
With ``cache_dir``, a *completed* day (its date before ``now()``'s New York date) is stored as
parquet once (``adapters.polygon.cache``): minute aggregates per (symbol, day), daily bars per
(symbol, session), the contracts listed per (underlying, day) and the minute quote grid per
(underlying, expiry, day); later instances read it back without a request. Today's data is held in
memory only: in live mode it is fetched again when a request reaches past the time it was fetched;
in replay mode the source is taken as final and kept for the instance's life. An in-memory LRU
keeps recent days so a replayed day never re-reads parquet every minute.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from os import PathLike
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlparse

import numpy as np
import pyarrow as pa
from massive import RESTClient
from massive.exceptions import BadResponse
from urllib3.exceptions import (
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ResponseError,
    TimeoutError,
)

from adapters.polygon.cache import HistoryCache
from adapters.polygon.parsing import (
    AGG_COLUMNS,
    CONTRACT_FIELDS,
    NY,
    AggTable,
    ChainColumns,
    ChainIssue,
    ListedContract,
    MarketStatus,
    ParsedChain,
    PreviousClose,
    agg_table,
    bars_from_table,
    build_chain,
    contract_rows,
    empty_bars,
    expiries_of,
    is_index,
    last_quote_at,
    ms_to_ny,
    parse_chain_snapshot,
    parse_contracts,
    parse_index_value,
    parse_last_trade,
    parse_market_status,
    parse_previous_close,
    parse_quotes,
    results_of,
    session_minute_grid,
    to_ms,
    to_polygon_ticker,
)
from adapters.ports import MarketDataError
from core import calendar as cal
from core.marketdata import Bars, BoolArray, ChainSnapshot, FloatArray, IntArray
from core.models import require_aware

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.massive.com"
_T = TypeVar("_T")
_MINUTE_MS = 60_000
_AGGS_PATH = re.compile(r"^/v2/aggs/ticker/([^/]+)/range/(\d+)/([a-z]+)/([^/]+)/([^/]+)$")
_STATUS = re.compile(r"\b(\d{3})\b")

_AGG_SCHEMA = pa.schema(
    [
        ("t", pa.int64()),
        ("o", pa.float64()),
        ("h", pa.float64()),
        ("l", pa.float64()),
        ("c", pa.float64()),
        ("v", pa.float64()),
        ("vw", pa.float64()),
        ("n", pa.int64()),
    ]
)
_CONTRACT_SCHEMA = pa.schema(
    [
        ("ticker", pa.string()),
        ("underlying_ticker", pa.string()),
        ("contract_type", pa.string()),
        ("expiration_date", pa.string()),
        ("strike_price", pa.float64()),
        ("shares_per_contract", pa.int64()),
        ("exercise_style", pa.string()),
    ]
)
_QUOTE_SCHEMA = pa.schema(
    [
        ("ticker", pa.string()),
        ("minute", pa.int32()),
        ("bid", pa.float64()),
        ("ask", pa.float64()),
        ("bid_size", pa.float64()),
        ("ask_size", pa.float64()),
        ("quote_ns", pa.int64()),
    ]
)


# ---- small helpers -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    value: Any
    valid_until: datetime | None  # None: final (a completed day, or replay)


class _LRU:
    """A thread-safe bounded memo."""

    def __init__(self, size: int) -> None:
        self._size = max(size, 1)
        self._data: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> _Entry | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is not None:
                self._data.move_to_end(key)
            return entry

    def put(self, key: Hashable, entry: _Entry) -> None:
        with self._lock:
            self._data[key] = entry
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


@dataclass(frozen=True, slots=True, eq=False)
class _ReplayDay:
    contracts: tuple[ListedContract, ...]
    tickers: tuple[str, ...]
    strikes: FloatArray
    is_call: BoolArray
    cols: IntArray  # column of each contract in ``grid``
    grid: _QuoteGrid
    issues: tuple[ChainIssue, ...]


@dataclass(frozen=True, slots=True, eq=False)
class _QuoteGrid:
    """Last quote at or before each session minute, per contract ticker (column)."""

    index: dict[str, int]
    bid: FloatArray  # [minute, column]
    ask: FloatArray
    quote_ns: IntArray


@dataclass(frozen=True, slots=True, eq=False)
class _MinuteDay:
    """One day's minute aggregates and the same as ``Bars`` (times converted once)."""

    table: AggTable
    bars: Bars


_BAR_FIELDS = ("open", "high", "low", "close", "volume")


def _slice_bars(bars: Bars, i: int, j: int) -> Bars:
    return Bars(
        bars.symbol,
        bars.times[i:j],
        *(getattr(bars, f)[i:j].copy() for f in _BAR_FIELDS),
    )


def _agg_to_arrow(table: AggTable) -> pa.Table:
    return pa.table(table.columns(), schema=_AGG_SCHEMA)


def _agg_from_arrow(table: pa.Table) -> AggTable:
    cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in AGG_COLUMNS}
    return AggTable(
        t=cols["t"].astype(np.int64),
        o=cols["o"].astype(np.float64),
        h=cols["h"].astype(np.float64),
        low=cols["l"].astype(np.float64),
        c=cols["c"].astype(np.float64),
        v=cols["v"].astype(np.float64),
        vw=cols["vw"].astype(np.float64),
        n=cols["n"].astype(np.int64),
    )


def _concat_aggs(tables: Sequence[AggTable]) -> AggTable:
    if not tables:
        return agg_table([])
    if len(tables) == 1:
        return tables[0]
    cols = [t.columns() for t in tables]
    return AggTable(
        t=np.concatenate([c["t"] for c in cols]).astype(np.int64),
        o=np.concatenate([c["o"] for c in cols]),
        h=np.concatenate([c["h"] for c in cols]),
        low=np.concatenate([c["l"] for c in cols]),
        c=np.concatenate([c["c"] for c in cols]),
        v=np.concatenate([c["v"] for c in cols]),
        vw=np.concatenate([c["vw"] for c in cols]),
        n=np.concatenate([c["n"] for c in cols]).astype(np.int64),
    )


def _error_text(body: str) -> tuple[str, str | None]:
    """(message, status) from an error body: the JSON ``error``/``message`` or a body excerpt."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:200] or "(empty body)", None
    if not isinstance(data, dict):
        return str(data)[:200], None
    text = data.get("error") or data.get("message") or json.dumps(data)[:200]
    status = data.get("status")
    return str(text)[:300], None if status is None else str(status)


def _bad_response(body: str) -> tuple[str, bool]:
    """Reason and "worth retrying" for a ``BadResponse`` (massive gives only the body)."""
    text, status = _error_text(body)
    lowered = text.lower()
    if "maximum requests" in lowered or "rate limit" in lowered or "too many requests" in lowered:
        return f"rate limited: {text}", True
    if status is None and body.lstrip().startswith("<"):
        return "non-JSON error page from the server (gateway error?)", True
    if "api key" in lowered or status == "NOT_AUTHORIZED":
        return f"request refused: {text} (check the API key and the plan's entitlements)", False
    return f"request failed: {text}", False


def _transport_reason(error: BaseException | None) -> str:
    if isinstance(error, ResponseError):
        m = _STATUS.search(str(error))
        code = m.group(1) if m else "?"
        suffix = " (rate limited)" if code == "429" else ""
        return f"HTTP {code}{suffix}"
    if isinstance(error, NewConnectionError):
        return "connection failed"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ProtocolError):
        return "connection dropped"
    return type(error).__name__ if error is not None else "unknown error"


class RequestRefused(MarketDataError):
    """The API answered with a non-retryable error (bad key, no entitlement, not found)."""


# ---- the adapter ---------------------------------------------------------------------------


class PolygonMarketData:
    """Polygon / Massive market data behind ``adapters.ports.MarketData`` (see module doc).

    * ``api_key`` or ``client`` (a ``massive.RESTClient``; give it ``retries=0`` so our backoff
      is the only one) is required; ``base_url``, ``connect_timeout``/``read_timeout`` shape the
      client we build.
    * ``live``: True answers ``at`` within ``live_tolerance`` of ``now()`` from snapshots and
      last trades; False (simulated clock, backtests) always replays history.
    * ``now``: the wall clock (tz-aware) that decides "live" and which days are complete;
      inject it in tests and backtests. ``cache_dir``: parquet history (None: memory only).
    * ``sleep``, ``max_attempts``, ``backoff_seconds``, ``max_backoff_seconds``: retries of
      429/5xx/transport errors (delay ``backoff * 2**(attempt-1)``, capped).
    * ``workers``: parallel quote downloads of one replay day. ``*_limit``: page sizes asked for.
    * ``rate``/``dividend_yield``: for our own IV/greeks. ``memo_days``: size of the memory LRU.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        client: RESTClient | None = None,
        live: bool = True,
        cache_dir: str | PathLike[str] | None = None,
        now: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 5,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        expiry_horizon_days: int = 45,
        live_tolerance: timedelta = timedelta(minutes=2),
        workers: int = 4,
        quotes_page_limit: int = 50_000,
        contracts_page_limit: int = 1000,
        snapshot_page_limit: int = 250,
        aggs_limit: int = 50_000,
        rate: float = 0.0,
        dividend_yield: float = 0.0,
        memo_days: int = 8,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if client is None:
            if not api_key:
                raise ValueError("PolygonMarketData needs an API key (or a massive RESTClient)")
            client = RESTClient(
                api_key=api_key,
                base=base_url,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries=0,
                pagination=False,
                maxsize=max(10, workers),
            )
        self._client = client
        self._base = str(getattr(client, "BASE", base_url))
        self._live = live
        self._disk = HistoryCache(cache_dir) if cache_dir is not None else None
        self._now_fn = now
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._horizon = expiry_horizon_days
        self._live_tolerance = live_tolerance
        self._workers = max(workers, 1)
        self._quotes_limit = quotes_page_limit
        self._contracts_limit = contracts_page_limit
        self._snapshot_limit = snapshot_page_limit
        self._aggs_limit = aggs_limit
        self._rate = rate
        self._q = dividend_yield
        self._grids = _LRU(max(memo_days, 1) * 4)
        self._listings = _LRU(max(memo_days, 1) * 4)
        self._tables = _LRU(max(memo_days, 1) * 64)
        self._replay_days: OrderedDict[tuple[str, date, date], _ReplayDay] = OrderedDict()
        self._replay_days_max = max(memo_days, 1) * 4
        self._replay_lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self.http_requests = 0  # HTTP attempts made by this instance (retries included)

    def __repr__(self) -> str:
        mode = "live" if self._live else "replay"
        return f"PolygonMarketData(base={self._base!r}, mode={mode})"

    @property
    def live(self) -> bool:
        return self._live

    def close(self) -> None:
        """Drop pooled connections (the instance stays usable) and the in-memory memo."""
        pool = getattr(self._client, "client", None)
        if pool is not None and hasattr(pool, "clear"):
            pool.clear()
        self._grids.clear()
        self._listings.clear()
        self._tables.clear()
        with self._replay_lock:
            self._replay_days.clear()

    def __enter__(self) -> PolygonMarketData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- clock ------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        t = self._now_fn() if self._now_fn is not None else datetime.now(NY)
        require_aware(t, "now()")
        return t.astimezone(NY)

    def _complete(self, day: date) -> bool:
        """A day whose data is final at the source: strictly before today (New York)."""
        return day < self._now().date()

    def _live_at(self, at: datetime) -> bool:
        return self._live and abs(at - self._now()) <= self._live_tolerance

    # -- HTTP -------------------------------------------------------------------------------------

    def _clean(self, text: str) -> str:
        """``text`` without the API key (defensive: nothing we build should contain it)."""
        secret = str(getattr(self._client, "API_KEY", "") or "")
        if len(secret) >= 4:
            text = text.replace(secret, "***")
        return re.sub(r"(?i)(apikey=)[^&\s]+", r"\1***", text)

    def _request(self, what: str, call: Callable[[], Any]) -> dict[str, Any]:
        """One HTTP GET with retries on 429/5xx/transport errors; the decoded JSON body."""
        last = "no attempt"
        for attempt in range(1, self._max_attempts + 1):
            with self._counter_lock:
                self.http_requests += 1
            try:
                response = call()
            except BadResponse as exc:
                reason, transient = _bad_response(str(exc))
                if not transient:
                    raise RequestRefused(self._clean(f"polygon: {what}: {reason}")) from None
                last = reason
            except MaxRetryError as exc:
                last = _transport_reason(exc.reason)
            except (HTTPError, OSError) as exc:
                last = _transport_reason(exc)
            else:
                return self._decode(what, response)
            if attempt < self._max_attempts:
                delay = min(self._backoff * 2 ** (attempt - 1), self._max_backoff)
                log.warning(
                    "polygon: %s: %s; retry %d of %d in %.2fs",
                    what,
                    self._clean(last),
                    attempt,
                    self._max_attempts - 1,
                    delay,
                )
                self._sleep(delay)
        raise MarketDataError(
            self._clean(f"polygon: {what}: gave up after {self._max_attempts} attempts: {last}")
        )

    def _decode(self, what: str, response: Any) -> dict[str, Any]:
        data = getattr(response, "data", response)
        try:
            body = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
        except (ValueError, TypeError, AttributeError):
            raise MarketDataError(f"polygon: {what}: the response is not JSON") from None
        if not isinstance(body, dict):
            raise MarketDataError(f"polygon: {what}: unexpected response shape")
        if body.get("status") in ("ERROR", "NOT_AUTHORIZED"):
            text, _ = _error_text(json.dumps(body))
            raise RequestRefused(self._clean(f"polygon: {what}: request refused: {text}"))
        return body

    def _pages(
        self,
        what: str,
        first: Callable[[], Any],
        follow: Callable[[str, dict[str, str]], Any],
    ) -> Iterator[dict[str, Any]]:
        """Bodies of every page: ``first``, then ``follow(path, query)`` for each ``next_url``."""
        body = self._request(what, first)
        yield body
        seen: set[str] = set()
        for page in itertools.count(2):
            next_url = body.get("next_url")
            if not next_url:
                return
            if next_url in seen:
                raise MarketDataError(f"polygon: {what}: next_url repeats at page {page}")
            seen.add(str(next_url))
            parsed = urlparse(str(next_url))
            query = {
                k: v
                for k, v in parse_qsl(parsed.query, keep_blank_values=True)
                if k.lower() != "apikey"
            }
            body = self._request(
                f"{what} (page {page})", functools.partial(follow, parsed.path, query)
            )
            yield body

    def _collect(
        self,
        what: str,
        first: Callable[[], Any],
        follow: Callable[[str, dict[str, str]], Any],
    ) -> list[Any]:
        return [row for body in self._pages(what, first, follow) for row in results_of(body)]

    def _same_path(
        self, what: str, expected: str, call: Callable[[dict[str, str]], Any]
    ) -> Callable[[str, dict[str, str]], Any]:
        def follow(path: str, query: dict[str, str]) -> Any:
            if path.rstrip("/") != expected:
                raise MarketDataError(
                    self._clean(f"polygon: {what}: next_url leads elsewhere ({path})")
                )
            return call(query)

        return follow

    def _follow_aggs(self, path: str, query: dict[str, str]) -> Any:
        m = _AGGS_PATH.match(path)
        if m is None:
            raise MarketDataError(self._clean(f"polygon: unexpected aggregates next_url {path}"))
        ticker, mult, span, from_, to = m.groups()
        return self._client.list_aggs(ticker, int(mult), span, from_, to, params=query, raw=True)

    # -- downloads --------------------------------------------------------------------------------

    def _download_aggs(self, symbol: str, span: str, first: date, last: date) -> AggTable:
        ticker = to_polygon_ticker(symbol)
        a, b = first.isoformat(), last.isoformat()
        what = (
            f"{span} aggregates {ticker} {a}..{b}" if a != b else f"{span} aggregates {ticker} {a}"
        )
        rows = self._collect(
            what,
            lambda: self._client.list_aggs(
                ticker, 1, span, a, b, adjusted=True, sort="asc", limit=self._aggs_limit, raw=True
            ),
            self._follow_aggs,
        )
        table = agg_table(rows)
        if table.dropped:
            log.info("polygon: %s: %d unusable rows dropped", what, table.dropped)
        return table

    def _download_contracts(
        self, underlying: str, day: date, expiry: date | None
    ) -> list[ListedContract]:
        iso = day.isoformat()
        what = f"options contracts {underlying} as of {iso}"
        kwargs: dict[str, Any] = {}
        if expiry is None:
            kwargs["expiration_date_gte"] = iso
            kwargs["expiration_date_lte"] = (day + timedelta(days=self._horizon)).isoformat()
        else:
            kwargs["expiration_date"] = expiry.isoformat()
            what += f" expiring {expiry.isoformat()}"
        path = "/v3/reference/options/contracts"
        rows = self._collect(
            what,
            lambda: self._client.list_options_contracts(
                underlying_ticker=to_polygon_ticker(underlying),
                as_of=iso,
                limit=self._contracts_limit,
                raw=True,
                **kwargs,
            ),
            self._same_path(
                what, path, lambda q: self._client.list_options_contracts(params=q, raw=True)
            ),
        )
        listed, issues = parse_contracts(rows)
        if issues:
            log.info("polygon: %s: %d unusable rows: %s", what, len(issues), issues[:3])
        return listed

    def _download_quote_grid(
        self, underlying: str, expiry: date, day: date, contracts: Sequence[ListedContract]
    ) -> pa.Table:
        grid_ns = session_minute_grid(day)
        session = cal.session(day)
        lo, hi = to_ms(session.open) * 1_000_000, to_ms(session.close) * 1_000_000

        def one(ticker: str) -> dict[str, Any]:
            what = f"quotes {ticker} {day.isoformat()}"
            path = f"/v3/quotes/{ticker}"
            rows = self._collect(
                what,
                lambda: self._client.list_quotes(
                    ticker,
                    timestamp_gte=lo,
                    timestamp_lt=hi,
                    limit=self._quotes_limit,
                    sort="timestamp",
                    order="asc",
                    raw=True,
                ),
                self._same_path(
                    what, path, lambda q: self._client.list_quotes(ticker, params=q, raw=True)
                ),
            )
            series = parse_quotes(rows)
            grid = last_quote_at(series, grid_ns)
            have = grid.quote_ns >= 0
            minutes = np.nonzero(have)[0].astype(np.int32)
            return {
                "ticker": [ticker] * int(minutes.shape[0]),
                "minute": minutes,
                "bid": grid.bid[have],
                "ask": grid.ask[have],
                "bid_size": grid.bid_size[have],
                "ask_size": grid.ask_size[have],
                "quote_ns": grid.quote_ns[have],
            }

        tickers = [c.ticker for c in contracts]
        if self._workers == 1 or len(tickers) <= 1:
            parts = [one(t) for t in tickers]
        else:
            with ThreadPoolExecutor(self._workers, thread_name_prefix="polygon-quotes") as pool:
                futures: list[Future[dict[str, Any]]] = [pool.submit(one, t) for t in tickers]
                try:
                    parts = [f.result() for f in futures]
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
        log.info(
            "polygon: downloaded quotes of %d %s %s contracts for %s",
            len(tickers),
            underlying,
            expiry.isoformat(),
            day.isoformat(),
        )
        if not parts:
            return _QUOTE_SCHEMA.empty_table()
        return pa.table(
            {
                "ticker": pa.array([t for p in parts for t in p["ticker"]], type=pa.string()),
                **{
                    name: np.concatenate([p[name] for p in parts])
                    for name in ("minute", "bid", "ask", "bid_size", "ask_size", "quote_ns")
                },
            },
            schema=_QUOTE_SCHEMA,
        )

    # -- memo + parquet ---------------------------------------------------------------------------

    def _load(
        self,
        memo: _LRU,
        key: Hashable,
        day: date,
        need_until: datetime | None,
        disk_key: tuple[str, ...],
        columns: Sequence[str],
        download: Callable[[], pa.Table],
        build: Callable[[pa.Table], _T],
    ) -> _T:
        hit = memo.get(key)
        if hit is not None and (
            hit.valid_until is None or need_until is None or need_until <= hit.valid_until
        ):
            value: _T = hit.value
            return value
        complete = self._complete(day)
        table = None
        if complete and self._disk is not None:
            table = self._disk.load(*disk_key, columns=columns)
        fetched_at = self._now()
        if table is None:
            table = download()
            if complete and self._disk is not None:
                self._disk.store(*disk_key, table=table)
        value = build(table)
        final = complete or not self._live
        memo.put(key, _Entry(value, None if final else fetched_at))
        return value

    def _minute_day(self, symbol: str, day: date, need_until: datetime | None) -> _MinuteDay:
        def build(table: pa.Table) -> _MinuteDay:
            aggs = _agg_from_arrow(table)
            return _MinuteDay(aggs, bars_from_table(symbol, aggs, "1min"))

        return self._load(
            self._tables,
            ("minute", symbol, day),
            day,
            need_until,
            ("minute_aggs", symbol, day.isoformat()),
            AGG_COLUMNS,
            lambda: _agg_to_arrow(self._download_aggs(symbol, "minute", day, day)),
            build,
        )

    def _listing(self, underlying: str, day: date, expiry: date | None) -> list[ListedContract]:
        """Contracts listed on ``day``: the horizon listing, or one expiry beyond the horizon."""
        if expiry is not None and expiry <= day + timedelta(days=self._horizon):
            expiry = None
        name = (
            f"{day.isoformat()}_h{self._horizon}"
            if expiry is None
            else (f"{day.isoformat()}_e{expiry.isoformat()}")
        )
        return self._load(
            self._listings,
            ("contracts", underlying, day, expiry, self._horizon),
            day,
            None,
            ("contracts", underlying, name),
            CONTRACT_FIELDS,
            lambda: pa.Table.from_pylist(
                contract_rows(self._download_contracts(underlying, day, expiry)),
                schema=_CONTRACT_SCHEMA,
            ),
            lambda table: parse_contracts(table.to_pylist())[0],
        )

    def _quote_grid(
        self,
        underlying: str,
        expiry: date,
        day: date,
        contracts: Sequence[ListedContract],
        need_until: datetime,
    ) -> _QuoteGrid:
        n_minutes = int(session_minute_grid(day).shape[0])

        def build(table: pa.Table) -> _QuoteGrid:
            tickers = table.column("ticker").to_pylist()
            index: dict[str, int] = {}
            for c in contracts:
                index.setdefault(c.ticker, len(index))
            for t in tickers:
                index.setdefault(t, len(index))
            bid = np.full((n_minutes, len(index)), np.nan)
            ask = np.full((n_minutes, len(index)), np.nan)
            qns = np.full((n_minutes, len(index)), -1, dtype=np.int64)
            if tickers:
                cols = np.fromiter((index[t] for t in tickers), dtype=np.int64, count=len(tickers))
                rows = table.column("minute").to_numpy().astype(np.int64)
                ok = (rows >= 0) & (rows < n_minutes)
                rows, cols = rows[ok], cols[ok]
                bid[rows, cols] = table.column("bid").to_numpy(zero_copy_only=False)[ok]
                ask[rows, cols] = table.column("ask").to_numpy(zero_copy_only=False)[ok]
                qns[rows, cols] = table.column("quote_ns").to_numpy()[ok]
            return _QuoteGrid(index, bid, ask, qns)

        return self._load(
            self._grids,
            ("quotes", underlying, expiry, day),
            day,
            need_until,
            ("option_quotes", underlying, expiry.isoformat(), day.isoformat()),
            [f.name for f in _QUOTE_SCHEMA],
            lambda: self._download_quote_grid(underlying, expiry, day, contracts),
            build,
        )

    def _daily_rows(self, symbol: str, days: Sequence[date]) -> dict[date, AggTable]:
        """The daily bar (0 or 1 row) of each session in ``days``; one request for the misses."""
        out: dict[date, AggTable] = {}
        missing: list[date] = []
        for day in days:
            hit = self._tables.get(("daily", symbol, day))
            if hit is not None and hit.valid_until is None:
                out[day] = hit.value
                continue
            if self._complete(day) and self._disk is not None:
                table = self._disk.load("daily_aggs", symbol, day.isoformat(), columns=AGG_COLUMNS)
                if table is not None:
                    out[day] = _agg_from_arrow(table)
                    self._tables.put(("daily", symbol, day), _Entry(out[day], None))
                    continue
            missing.append(day)
        if missing:
            fetched_at = self._now()
            table = self._download_aggs(symbol, "day", min(missing), max(missing))
            day_of = np.array([ms_to_ny(int(t)).date().toordinal() for t in table.t.tolist()])
            for day in missing:
                part = table.select(day_of == day.toordinal()) if len(table) else table
                complete = self._complete(day)
                if complete and self._disk is not None:
                    self._disk.store(
                        "daily_aggs", symbol, day.isoformat(), table=_agg_to_arrow(part)
                    )
                final = complete or not self._live
                self._tables.put(
                    ("daily", symbol, day), _Entry(part, None if final else fetched_at)
                )
                out[day] = part
        return out

    # -- MarketData port --------------------------------------------------------------------------

    @staticmethod
    def _trading_days(first: date, last: date) -> list[date]:
        try:
            return cal.trading_days(first, last)
        except cal.CalendarError as exc:
            raise MarketDataError(f"polygon: {exc}") from None

    @staticmethod
    def _session(day: date) -> cal.Session:
        try:
            return cal.session(day)
        except cal.CalendarError as exc:
            raise MarketDataError(f"polygon: {exc}") from None

    def expiries(self, underlying: str, on: date) -> list[date]:
        """Expiries listed on ``on`` (as_of) within ``expiry_horizon_days``, ascending."""
        listed = self._listing(underlying, on, None)
        return expiries_of((c for c in listed if c.standard), on)

    def chain(self, underlying: str, expiry: date, at: datetime) -> ChainSnapshot:
        """The chain at ``at`` (live snapshot or replayed quotes; see the module docstring)."""
        return self.parsed_chain(underlying, expiry, at, analytics=False).snapshot

    def parsed_chain(
        self, underlying: str, expiry: date, at: datetime, *, analytics: bool = True
    ) -> ParsedChain:
        """The chain with vendor IV/greeks, ours where missing (``analytics``), and its issues."""
        require_aware(at, "at")
        at_ny = at.astimezone(NY)
        if self._live_at(at_ny):
            parsed = self._live_chain(underlying, expiry, at_ny, analytics)
        else:
            parsed = self._replay_chain(underlying, expiry, at_ny, analytics)
        if parsed.issues:
            log.debug(
                "polygon: %s %s chain at %s: issues %s",
                underlying,
                expiry.isoformat(),
                at_ny.isoformat(),
                parsed.issue_counts(),
            )
        return parsed

    def _live_chain(
        self, underlying: str, expiry: date, at: datetime, analytics: bool
    ) -> ParsedChain:
        ticker = to_polygon_ticker(underlying)
        iso = expiry.isoformat()
        what = f"option chain snapshot {ticker} {iso}"
        path = f"/v3/snapshot/options/{ticker}"
        results = self._collect(
            what,
            lambda: self._client.list_snapshot_options_chain(
                ticker, params={"expiration_date": iso, "limit": self._snapshot_limit}, raw=True
            ),
            self._same_path(
                what,
                path,
                lambda q: self._client.list_snapshot_options_chain(ticker, params=q, raw=True),
            ),
        )
        if not results:
            raise MarketDataError(f"polygon: no {underlying} {iso} option chain in the snapshot")
        options: dict[str, Any] = {
            "rate": self._rate,
            "dividend_yield": self._q,
            "compute_own": analytics,
        }
        parsed = parse_chain_snapshot(results, underlying, expiry, at, **options)
        if not math.isfinite(parsed.snapshot.spot):
            spot = self.last_price(underlying, at)
            parsed = parse_chain_snapshot(results, underlying, expiry, at, spot=spot, **options)
        if len(parsed) == 0:
            raise MarketDataError(
                f"polygon: the {underlying} {iso} snapshot has no usable contract "
                f"({parsed.issue_counts()})"
            )
        return parsed

    def _replay_chain(
        self, underlying: str, expiry: date, at: datetime, analytics: bool = False
    ) -> ParsedChain:
        day = at.date()
        session = self._session(day)
        if not session.open <= at < session.close:
            raise MarketDataError(
                f"polygon: {at.isoformat()} is outside the session "
                f"{session.open:%H:%M}-{session.close:%H:%M} of {day.isoformat()}"
            )
        if expiry < day:
            raise MarketDataError(
                f"polygon: {underlying} {expiry.isoformat()} expired before {day.isoformat()}"
            )
        rd = self._replay_day(underlying, expiry, day, at)
        minute = int((at - session.open).total_seconds() // 60)
        spot = self._session_price(underlying, day, at)
        grid = rd.grid
        columns = ChainColumns.quotes_only(
            rd.tickers,
            rd.strikes,
            rd.is_call,
            grid.bid[minute, rd.cols],
            grid.ask[minute, rd.cols],
            grid.quote_ns[minute, rd.cols],
        )
        return build_chain(
            underlying,
            expiry,
            at,
            spot,
            columns,
            expiry_close=self._session(expiry).close,
            vendor_analytics=False,
            vendor_open_interest=False,
            compute_own=analytics,
            rate=self._rate,
            dividend_yield=self._q,
            issues=rd.issues,
        )

    def _replay_day(self, underlying: str, expiry: date, day: date, at: datetime) -> _ReplayDay:
        """Contracts of one expiry listed on ``day`` with their quote grid (memoised)."""
        key = (underlying, expiry, day)
        with self._replay_lock:
            found = self._replay_days.get(key)
        issues: list[ChainIssue] = []
        contracts: list[ListedContract] = []
        if found is None:
            for c in self._listing(underlying, day, expiry):
                if c.contract.expiry != expiry:
                    continue
                if not c.standard:
                    issues.append(
                        ChainIssue(
                            c.ticker,
                            "nonstandard_deliverable",
                            f"{c.contract.underlying}, {c.shares_per_contract} shares: dropped",
                        )
                    )
                    continue
                contracts.append(c)
            if not contracts:
                raise MarketDataError(
                    f"polygon: no {underlying} contracts expiring {expiry.isoformat()} "
                    f"listed on {day.isoformat()}"
                )
        else:
            contracts, issues = list(found.contracts), list(found.issues)
        grid = self._quote_grid(underlying, expiry, day, contracts, at)
        if found is not None and found.grid is grid:
            return found
        rd = _ReplayDay(
            contracts=tuple(contracts),
            tickers=tuple(c.ticker for c in contracts),
            strikes=np.array([float(c.contract.strike) for c in contracts], dtype=np.float64),
            is_call=np.array([c.contract.right.value == "C" for c in contracts], dtype=np.bool_),
            cols=np.array([grid.index[c.ticker] for c in contracts], dtype=np.int64),
            grid=grid,
            issues=tuple(issues),
        )
        with self._replay_lock:
            self._replay_days[key] = rd
            while len(self._replay_days) > self._replay_days_max:
                self._replay_days.popitem(last=False)
        return rd

    def _session_price(self, symbol: str, day: date, at: datetime) -> float:
        """Last completed regular-session minute close at ``at`` (the open before one completes)."""
        session = self._session(day)
        table = self._minute_day(symbol, day, min(at, session.close)).table
        lo, hi, at_ms = to_ms(session.open), to_ms(session.close), to_ms(at)
        regular = (table.t >= lo) & (table.t < hi)
        starts = table.t[regular]
        if starts.shape[0] == 0:
            raise MarketDataError(
                f"polygon: no {symbol} minute bars in the {day.isoformat()} session"
            )
        done = int(np.searchsorted(starts + _MINUTE_MS, at_ms, side="right"))
        if done > 0:
            return float(table.c[regular][done - 1])
        if starts[0] <= at_ms:
            return float(table.o[regular][0])
        return self.prior_close(symbol, day)

    def bars(self, symbol: str, start: datetime, end: datetime, freq: str = "1min") -> Bars:
        """Bars whose start is in [start, end) and that completed by ``end`` (``1min``, ``1d``).

        Minute bars include Polygon's extended-hours bars inside the range; a daily bar's time is
        its session open and it is returned once its session has closed by ``end``.
        """
        require_aware(start, "start")
        require_aware(end, "end")
        if freq not in ("1min", "1d"):
            raise MarketDataError(f"polygon: unsupported bar frequency {freq!r}")
        start_ny, end_ny = start.astimezone(NY), end.astimezone(NY)
        if end_ny <= start_ny:
            return empty_bars(symbol)
        days = self._trading_days(start_ny.date(), end_ny.date())
        if freq == "1d":
            rows = self._daily_rows(symbol, days)
            keep = [
                rows[d]
                for d in days
                if cal.session(d).open >= start_ny and cal.session(d).close <= end_ny
            ]
            return bars_from_table(symbol, _concat_aggs(keep), "1d")
        lo, hi = to_ms(start_ny), to_ms(end_ny)
        parts: list[Bars] = []
        for d in days:
            minute_day = self._minute_day(symbol, d, end_ny)
            t = minute_day.table.t
            i = int(np.searchsorted(t, lo, side="left"))
            j = int(np.searchsorted(t + _MINUTE_MS, hi, side="right"))
            if j > i:
                parts.append(_slice_bars(minute_day.bars, i, j))
        if not parts:
            return empty_bars(symbol)
        if len(parts) == 1:
            return parts[0]
        return Bars(
            symbol,
            tuple(t for part in parts for t in part.times),
            *(np.concatenate([getattr(p, f) for p in parts]) for f in _BAR_FIELDS),
        )

    def prior_close(self, symbol: str, on: date) -> float:
        """Close of the last session before ``on`` (the ``prev`` endpoint only live, for today)."""
        try:
            previous = cal.previous_trading_day(on)
        except cal.CalendarError as exc:
            raise MarketDataError(f"polygon: no session before {on.isoformat()}: {exc}") from None
        if self._live and on == self._now().date():
            hit = self._tables.get(("prev", symbol, on))
            if hit is not None:
                cached: float = hit.value
                return cached
            prev = self._live_previous_close(symbol)
            if prev is not None and prev.day == previous:
                self._tables.put(("prev", symbol, on), _Entry(prev.close, None))
                return prev.close
        table = self._daily_rows(symbol, [previous])[previous]
        if len(table) == 0:
            raise MarketDataError(
                f"polygon: no daily bar of {symbol} for {previous.isoformat()} "
                f"(the session before {on.isoformat()})"
            )
        return float(table.c[-1])

    def _live_previous_close(self, symbol: str) -> PreviousClose | None:
        """The ``prev`` endpoint's bar, or None (logged) if it fails or has none."""
        ticker = to_polygon_ticker(symbol)
        try:
            body = self._request(
                f"previous close {ticker}",
                lambda: self._client.get_previous_close_agg(ticker, adjusted=True, raw=True),
            )
        except MarketDataError as exc:
            log.info("%s; using daily bars", exc)
            return None
        prev = parse_previous_close(body)
        if prev is None:
            log.info("polygon: prev endpoint gave no bar for %s; using daily bars", ticker)
        return prev

    def last_price(self, symbol: str, at: datetime) -> float:
        """Live: the last trade (index: its snapshot value). Otherwise the last completed
        regular-session minute close at ``at``; the prior close before the open or on a
        non-trading day; the session's last minute close after the close."""
        require_aware(at, "at")
        at_ny = at.astimezone(NY)
        if self._live_at(at_ny):
            return self._live_last_price(symbol)
        day = at_ny.date()
        try:
            trading = cal.is_trading_day(day)
        except cal.CalendarError as exc:
            raise MarketDataError(f"polygon: {exc}") from None
        if not trading:
            return self.prior_close(symbol, day)
        session = cal.session(day)
        if at_ny < session.open:
            return self.prior_close(symbol, day)
        return self._session_price(symbol, day, min(at_ny, session.close))

    def _live_last_price(self, symbol: str) -> float:
        """Last trade (index: snapshot value); the minute bars if the plan refuses those."""
        ticker = to_polygon_ticker(symbol)
        try:
            if is_index(symbol):
                body = self._request(
                    f"index snapshot {ticker}",
                    lambda: self._client.get_snapshot_indices(ticker_any_of=[ticker], raw=True),
                )
                value = parse_index_value(results_of(body), ticker)
                if value is not None:
                    return value
            else:
                body = self._request(
                    f"last trade {ticker}", lambda: self._client.get_last_trade(ticker, raw=True)
                )
                trade = parse_last_trade(body)
                if trade is not None:
                    return trade[0]
            log.info("polygon: no live price for %s; using minute bars", ticker)
        except RequestRefused as exc:
            log.info("%s; using minute bars", exc)
        now = self._now()
        day = now.date()
        if not cal.is_trading_day(day) or now < cal.session(day).open:
            return self.prior_close(symbol, day)
        return self._session_price(symbol, day, min(now, cal.session(day).close))

    # -- extras -----------------------------------------------------------------------------------

    def market_status(self) -> MarketStatus:
        body = self._request("market status", lambda: self._client.get_market_status(raw=True))
        return parse_market_status(body)

    def contracts(self, underlying: str, on: date) -> list[ListedContract]:
        """Contracts listed on ``on`` within the expiry horizon (reference data, cached)."""
        return list(self._listing(underlying, on, None))

    def preload(self, underlying: str, expiries: Iterable[date], day: date) -> None:
        """Download (or read from parquet) a replay day ahead of the first ``chain`` call."""
        at = self._session(day).open
        for expiry in expiries:
            self._replay_chain(underlying, expiry, at)
