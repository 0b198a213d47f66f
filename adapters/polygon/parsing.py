"""Pure parsing of Polygon / Massive REST responses into dte-trader types (no I/O, no client).

Every function takes what the API returns (JSON dicts, or the equivalent ``massive`` model
objects where noted) and never crashes on a missing field: a row that cannot be used is dropped
or kept with NaN, and the reason is reported. Quotes are never repaired: a crossed, zero or
missing quote stays as it is in the ``ChainSnapshot`` and gets an issue.

Conventions
-----------
* Tickers: ``VIX`` (and the other names in ``INDEX_SYMBOLS``) is ``I:VIX`` at Polygon; options are
  ``O:`` + the OCC symbol (``O:SPY261127C00600000``: root, YYMMDD, C/P, strike x 1000 on 8 digits).
* Times: aggregate ``t`` is the bar *start* in Unix ms (UTC); quote ``sip_timestamp`` and
  ``last_updated`` are Unix ns. Both become tz-aware America/New_York datetimes. A daily bar's
  time is its session's open (the simulator's convention), not Polygon's midnight.
* Greeks in ``ParsedChain`` use Polygon's units: theta per calendar day, vega per vol point (per
  0.01 of IV). Where the vendor gives none, ours come from ``core.pricing`` (mid, intraday time to
  the expiry's close) converted to the same units.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from core import calendar as cal
from core.chains import quote_problem
from core.marketdata import Bars, BoolArray, ChainSnapshot, FloatArray, IntArray, strike_decimal
from core.models import OptionContract, Right, require_aware
from core.pricing import (
    ExpiredContractError,
    IVStatus,
    bs_greeks,
    implied_vol,
    theta_per_day,
    vega_per_point,
    year_fraction,
)

NY = cal.NY
INDEX_PREFIX = "I:"
OPTION_PREFIX = "O:"
INDEX_SYMBOLS = frozenset({"VIX", "VIX9D", "VIX3M", "VVIX", "SPX", "NDX", "RUT", "DJI", "XSP"})
STANDARD_SHARES = 100
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OPTION_RE = re.compile(r"^O:([A-Z][A-Z.]*\d?)(\d{2})(\d{2})(\d{2})([CP])(\d{8})$")
_AGG_ALIASES = {
    "t": "timestamp",
    "o": "open",
    "h": "high",
    "l": "low",
    "c": "close",
    "v": "volume",
    "vw": "vwap",
    "n": "transactions",
}
AGG_COLUMNS = ("t", "o", "h", "l", "c", "v", "vw", "n")


# ---- generic field access ------------------------------------------------------------------


def get_field(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` for a mapping, ``obj.name`` for a massive model; ``default`` if absent."""
    if obj is None:
        return default
    value = obj.get(name, default) if isinstance(obj, Mapping) else getattr(obj, name, default)
    return default if value is None else value


def _num(value: Any) -> float | None:
    """A finite float, or None for a missing / non-numeric / non-finite value."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def _int(value: Any) -> int | None:
    f = _num(value)
    return None if f is None else int(f)


def results_of(body: Any) -> list[Any]:
    """The ``results`` list of a response body (absent for an empty aggregate answer)."""
    results = get_field(body, "results")
    if results is None:
        return []
    if isinstance(results, list):
        return results
    return [results]


# ---- tickers and times ---------------------------------------------------------------------


def to_polygon_ticker(symbol: str) -> str:
    """Our symbol -> Polygon's ticker: ``VIX`` -> ``I:VIX``; ``SPY`` and prefixed tickers as is."""
    s = symbol.strip().upper()
    if len(s) > 2 and s[1] == ":":
        return s
    return f"{INDEX_PREFIX}{s}" if s in INDEX_SYMBOLS else s


def from_polygon_ticker(ticker: str) -> str:
    """Polygon's ticker -> our symbol: ``I:VIX`` -> ``VIX``; stock tickers unchanged."""
    t = ticker.strip().upper()
    return t[len(INDEX_PREFIX) :] if t.startswith(INDEX_PREFIX) else t


def is_index(symbol: str) -> bool:
    return to_polygon_ticker(symbol).startswith(INDEX_PREFIX)


def option_ticker(contract: OptionContract) -> str:
    """``O:`` + the OCC symbol, e.g. ``O:SPY261127C00600000``."""
    return f"{OPTION_PREFIX}{contract.symbol}"


def parse_option_ticker(ticker: str, multiplier: int = STANDARD_SHARES) -> OptionContract:
    """``O:SPY261127C00600000`` -> OptionContract; ValueError if it is not an option ticker.

    An adjusted contract's root carries a digit (``O:AAPL1230616C00150000`` -> ``AAPL1``).
    """
    m = _OPTION_RE.match(ticker.strip().upper())
    if m is None:
        raise ValueError(f"not a Polygon option ticker: {ticker!r}")
    root, yy, mm, dd, cp, thousandths = m.groups()
    try:
        expiry = date(2000 + int(yy), int(mm), int(dd))
    except ValueError as exc:
        raise ValueError(f"bad expiry in option ticker {ticker!r}: {exc}") from None
    strike = strike_decimal(int(thousandths) / 1000.0)
    if strike <= 0:
        raise ValueError(f"zero strike in option ticker {ticker!r}")
    right = Right.CALL if cp == "C" else Right.PUT
    return OptionContract(root, expiry, strike, right, multiplier)


def ms_to_ny(ms: int) -> datetime:
    """Unix milliseconds (UTC) -> tz-aware New York time (exact, no float rounding)."""
    return (_EPOCH + timedelta(milliseconds=int(ms))).astimezone(NY)


def ns_to_ny(ns: int) -> datetime:
    """Unix nanoseconds (UTC) -> tz-aware New York time (truncated to microseconds)."""
    return (_EPOCH + timedelta(microseconds=int(ns) // 1000)).astimezone(NY)


def to_ns(t: datetime) -> int:
    """Tz-aware datetime -> Unix nanoseconds (exact to the microsecond)."""
    require_aware(t, "t")
    delta = t.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def to_ms(t: datetime) -> int:
    return to_ns(t) // 1_000_000


def session_minute_grid(day: date) -> IntArray:
    """Unix ns of every minute start of ``day``'s session (390 values, 210 on an early close)."""
    session = cal.session(day)
    n = int((session.close - session.open).total_seconds() // 60)
    return to_ns(session.open) + np.arange(n, dtype=np.int64) * 60_000_000_000


# ---- aggregates ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class AggTable:
    """Aggregate rows as columns (Polygon names): ``t`` ms int64, prices/volume float64."""

    t: IntArray
    o: FloatArray
    h: FloatArray
    low: FloatArray
    c: FloatArray
    v: FloatArray
    vw: FloatArray
    n: IntArray
    dropped: int = 0

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def columns(self) -> dict[str, IntArray | FloatArray]:
        return {
            "t": self.t,
            "o": self.o,
            "h": self.h,
            "l": self.low,
            "c": self.c,
            "v": self.v,
            "vw": self.vw,
            "n": self.n,
        }

    def select(self, mask: BoolArray) -> AggTable:
        return AggTable(
            self.t[mask],
            self.o[mask],
            self.h[mask],
            self.low[mask],
            self.c[mask],
            self.v[mask],
            self.vw[mask],
            self.n[mask],
        )


def _agg_value(row: Any, key: str) -> Any:
    if isinstance(row, Mapping):
        return row.get(key)
    return getattr(row, _AGG_ALIASES[key], None)


def agg_table(results: Iterable[Any]) -> AggTable:
    """Aggregate results (dicts with t,o,h,l,c,v,vw,n or ``massive`` ``Agg``) -> sorted columns.

    Rows without a time or a price are dropped (counted in ``dropped``); a missing volume is 0
    (Polygon sends none for indices); duplicate times keep the last row.
    """
    rows: list[tuple[int, float, float, float, float, float, float, int]] = []
    dropped = 0
    for row in results:
        t = _int(_agg_value(row, "t"))
        o, h, lo, c = (_num(_agg_value(row, k)) for k in ("o", "h", "l", "c"))
        if t is None or o is None or h is None or lo is None or c is None:
            dropped += 1
            continue
        v = _num(_agg_value(row, "v"))
        vw = _num(_agg_value(row, "vw"))
        n = _int(_agg_value(row, "n"))
        rows.append(
            (t, o, h, lo, c, 0.0 if v is None else v, math.nan if vw is None else vw, n or 0)
        )
    rows.sort(key=lambda r: r[0])
    dedup: dict[int, tuple[int, float, float, float, float, float, float, int]] = {}
    for r in rows:
        if r[0] in dedup:
            dropped += 1
        dedup[r[0]] = r
    table = list(dedup.values())
    cols = list(zip(*table, strict=True)) if table else [()] * 8
    return AggTable(
        t=np.array(cols[0], dtype=np.int64),
        o=np.array(cols[1], dtype=np.float64),
        h=np.array(cols[2], dtype=np.float64),
        low=np.array(cols[3], dtype=np.float64),
        c=np.array(cols[4], dtype=np.float64),
        v=np.array(cols[5], dtype=np.float64),
        vw=np.array(cols[6], dtype=np.float64),
        n=np.array(cols[7], dtype=np.int64),
        dropped=dropped,
    )


def empty_bars(symbol: str) -> Bars:
    e = np.empty(0, dtype=np.float64)
    return Bars(symbol, (), e.copy(), e.copy(), e.copy(), e.copy(), e.copy())


def bars_from_table(symbol: str, table: AggTable, freq: str = "1min") -> Bars:
    """Bars from aggregate columns: ``1min`` bar time = ``t``; ``1d`` = the session's open.

    A daily row whose New York date is not a session is dropped.
    """
    if freq not in ("1min", "1d"):
        raise ValueError(f"unsupported bar frequency {freq!r} (have '1min', '1d')")
    if len(table) == 0:
        return empty_bars(symbol)
    if freq == "1min":
        times = tuple(ms_to_ny(int(t)) for t in table.t.tolist())
        keep = np.ones(len(table), dtype=np.bool_)
    else:
        opens: list[datetime] = []
        keep_list: list[bool] = []
        for t in table.t.tolist():
            day = ms_to_ny(int(t)).date()
            try:
                ok = cal.is_trading_day(day)
            except cal.CalendarError:
                ok = False
            keep_list.append(ok)
            if ok:
                opens.append(cal.session(day).open)
        keep = np.array(keep_list, dtype=np.bool_)
        times = tuple(opens)
    return Bars(
        symbol,
        times,
        table.o[keep].copy(),
        table.h[keep].copy(),
        table.low[keep].copy(),
        table.c[keep].copy(),
        table.v[keep].copy(),
    )


def parse_aggs(symbol: str, results: Iterable[Any], freq: str = "1min") -> Bars:
    """Minute or daily aggregate results -> ``Bars`` (New York bar start times, ascending)."""
    return bars_from_table(symbol, agg_table(results), freq)


@dataclass(frozen=True, slots=True)
class PreviousClose:
    symbol: str
    day: date
    open: float
    high: float
    low: float
    close: float
    volume: float


def parse_previous_close(body: Any) -> PreviousClose | None:
    """``/v2/aggs/ticker/{t}/prev`` body (or its results / a ``PreviousCloseAgg``) -> the bar.

    None when there is no usable row (no results, no time or no close).
    """
    if isinstance(body, list):
        rows: list[Any] = body
    elif isinstance(body, Mapping) and ("results" in body or "status" in body):
        rows = results_of(body)
    else:
        rows = [body]
    for row in rows:
        t = _int(_agg_value(row, "t"))
        c = _num(_agg_value(row, "c"))
        if t is None or c is None:
            continue
        ticker = get_field(row, "T") or get_field(row, "ticker") or ""
        if not ticker and isinstance(body, Mapping):
            ticker = body.get("ticker") or ""
        return PreviousClose(
            symbol=from_polygon_ticker(str(ticker)),
            day=ms_to_ny(t).date(),
            open=_or_nan(_num(_agg_value(row, "o"))),
            high=_or_nan(_num(_agg_value(row, "h"))),
            low=_or_nan(_num(_agg_value(row, "l"))),
            close=c,
            volume=_num(_agg_value(row, "v")) or 0.0,
        )
    return None


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


# ---- reference: option contracts -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListedContract:
    """One row of ``/v3/reference/options/contracts``."""

    ticker: str
    contract: OptionContract
    shares_per_contract: int
    exercise_style: str

    @property
    def standard(self) -> bool:
        """A plain 100-share contract of the underlying (not an adjusted one)."""
        root = self.contract.underlying
        return self.shares_per_contract == STANDARD_SHARES and not any(ch.isdigit() for ch in root)


@dataclass(frozen=True, slots=True)
class ContractIssue:
    ticker: str
    reason: str


CONTRACT_FIELDS = (
    "ticker",
    "underlying_ticker",
    "contract_type",
    "expiration_date",
    "strike_price",
    "shares_per_contract",
    "exercise_style",
)


def _parse_date(value: Any) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _right(value: Any) -> Right | None:
    if not isinstance(value, str):
        return None
    v = value.strip().lower()
    if v in ("call", "c"):
        return Right.CALL
    if v in ("put", "p"):
        return Right.PUT
    return None


def parse_contracts(
    results: Iterable[Any],
) -> tuple[list[ListedContract], list[ContractIssue]]:
    """Contracts reference rows (dicts or ``OptionsContract``) -> listed contracts + issues.

    A row needs a ticker and (from its fields, else from the ticker) type, expiry and strike.
    """
    listed: list[ListedContract] = []
    issues: list[ContractIssue] = []
    seen: set[str] = set()
    for row in results:
        ticker = get_field(row, "ticker")
        if not isinstance(ticker, str) or not ticker:
            issues.append(ContractIssue("?", "no ticker: row dropped"))
            continue
        try:
            from_ticker: OptionContract | None = parse_option_ticker(ticker)
        except ValueError:
            from_ticker = None
        right = _right(get_field(row, "contract_type"))
        expiry = _parse_date(get_field(row, "expiration_date"))
        strike = _num(get_field(row, "strike_price"))
        underlying = get_field(row, "underlying_ticker")
        if from_ticker is not None:
            right = right or from_ticker.right
            expiry = expiry or from_ticker.expiry
            strike = strike if strike is not None else float(from_ticker.strike)
            underlying = underlying or from_ticker.underlying
        if right is None or expiry is None or strike is None or strike <= 0 or not underlying:
            issues.append(ContractIssue(ticker, "no contract type/expiry/strike: row dropped"))
            continue
        if ticker in seen:
            issues.append(ContractIssue(ticker, "duplicate ticker: row dropped"))
            continue
        seen.add(ticker)
        shares = _int(get_field(row, "shares_per_contract")) or STANDARD_SHARES
        try:
            contract = OptionContract(
                from_polygon_ticker(str(underlying)),
                expiry,
                strike_decimal(strike),
                right,
                STANDARD_SHARES,
            )
        except ValueError as exc:
            issues.append(ContractIssue(ticker, f"invalid contract ({exc}): row dropped"))
            continue
        style = get_field(row, "exercise_style", "")
        listed.append(ListedContract(ticker, contract, shares, str(style)))
    return listed, issues


def contract_rows(listed: Sequence[ListedContract]) -> list[dict[str, Any]]:
    """Listed contracts back to reference-row dicts (what the parquet cache stores)."""
    return [
        {
            "ticker": c.ticker,
            "underlying_ticker": c.contract.underlying,
            "contract_type": "call" if c.contract.right is Right.CALL else "put",
            "expiration_date": c.contract.expiry.isoformat(),
            "strike_price": float(c.contract.strike),
            "shares_per_contract": c.shares_per_contract,
            "exercise_style": c.exercise_style,
        }
        for c in listed
    ]


def expiries_of(listed: Iterable[ListedContract], on: date) -> list[date]:
    """Distinct expiries on or after ``on``, ascending."""
    return sorted({c.contract.expiry for c in listed if c.contract.expiry >= on})


# ---- quotes --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class QuoteSeries:
    """NBBO quotes of one contract, ascending by ``sip_ns`` (NaN where a price was missing)."""

    sip_ns: IntArray
    bid: FloatArray
    ask: FloatArray
    bid_size: FloatArray
    ask_size: FloatArray
    dropped: int = 0

    def __len__(self) -> int:
        return int(self.sip_ns.shape[0])


def parse_quotes(results: Iterable[Any]) -> QuoteSeries:
    """``/v3/quotes/{ticker}`` results (dicts or ``Quote``) -> a time-sorted ``QuoteSeries``.

    A row without ``sip_timestamp`` is dropped; a missing price stays NaN (not repaired).
    """
    rows: list[tuple[int, float, float, float, float]] = []
    dropped = 0
    for row in results:
        ts = _int(get_field(row, "sip_timestamp"))
        if ts is None:
            dropped += 1
            continue
        bid, ask = _num(get_field(row, "bid_price")), _num(get_field(row, "ask_price"))
        bs, az = _num(get_field(row, "bid_size")), _num(get_field(row, "ask_size"))
        rows.append(
            (
                ts,
                math.nan if bid is None else bid,
                math.nan if ask is None else ask,
                math.nan if bs is None else bs,
                math.nan if az is None else az,
            )
        )
    rows.sort(key=lambda r: r[0])  # stable: equal stamps keep the feed's order
    cols = list(zip(*rows, strict=True)) if rows else [()] * 5
    return QuoteSeries(
        sip_ns=np.array(cols[0], dtype=np.int64),
        bid=np.array(cols[1], dtype=np.float64),
        ask=np.array(cols[2], dtype=np.float64),
        bid_size=np.array(cols[3], dtype=np.float64),
        ask_size=np.array(cols[4], dtype=np.float64),
        dropped=dropped,
    )


@dataclass(frozen=True, slots=True, eq=False)
class GridQuotes:
    """The last quote at or before each grid instant; ``quote_ns`` -1 (and NaN) where none."""

    bid: FloatArray
    ask: FloatArray
    bid_size: FloatArray
    ask_size: FloatArray
    quote_ns: IntArray


def last_quote_at(series: QuoteSeries, grid_ns: IntArray) -> GridQuotes:
    """For each grid instant, the last quote with ``sip_ns <= instant`` (never a later one)."""
    idx = np.searchsorted(series.sip_ns, grid_ns, side="right") - 1
    have = idx >= 0
    safe = np.where(have, idx, 0)

    def pick(arr: FloatArray) -> FloatArray:
        if arr.shape[0] == 0:
            return np.full(grid_ns.shape[0], np.nan)
        return np.where(have, arr[safe], np.nan)

    quote_ns = (
        np.where(have, series.sip_ns[safe], -1)
        if len(series)
        else np.full(grid_ns.shape[0], -1, dtype=np.int64)
    )
    return GridQuotes(
        bid=pick(series.bid),
        ask=pick(series.ask),
        bid_size=pick(series.bid_size),
        ask_size=pick(series.ask_size),
        quote_ns=quote_ns.astype(np.int64),
    )


# ---- option chains -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainIssue:
    """A data-quality problem of one chain row (``row`` None: the row was dropped)."""

    ticker: str
    code: str
    detail: str
    row: int | None = None


@dataclass(frozen=True, slots=True, eq=False)
class ParsedChain:
    """A ``ChainSnapshot`` plus per-row tickers, vendor and merged IV/greeks and the issues.

    ``vendor_*`` are NaN where the feed gave nothing. ``iv``/``delta``/... are the vendor's value
    where present, else ours (``computed`` True), else NaN. Units are Polygon's: theta per
    calendar day, vega per vol point.
    """

    snapshot: ChainSnapshot
    tickers: tuple[str, ...]
    quote_ns: IntArray
    vendor_iv: FloatArray
    vendor_delta: FloatArray
    vendor_gamma: FloatArray
    vendor_theta: FloatArray
    vendor_vega: FloatArray
    iv: FloatArray
    delta: FloatArray
    gamma: FloatArray
    theta: FloatArray
    vega: FloatArray
    computed: BoolArray
    issues: tuple[ChainIssue, ...]

    def __len__(self) -> int:
        return len(self.snapshot)

    def issues_with(self, code: str) -> list[ChainIssue]:
        return [i for i in self.issues if i.code == code]

    def issue_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for issue in self.issues:
            counts[issue.code] = counts.get(issue.code, 0) + 1
        return counts


@dataclass(frozen=True, slots=True, eq=False)
class ChainColumns:
    """A chain's rows as arrays (any order; ``build_chain`` sorts them)."""

    tickers: tuple[str, ...]
    strikes: FloatArray
    is_call: BoolArray
    bid: FloatArray
    ask: FloatArray
    open_interest: IntArray
    quote_ns: IntArray
    vendor_iv: FloatArray
    vendor_delta: FloatArray
    vendor_gamma: FloatArray
    vendor_theta: FloatArray
    vendor_vega: FloatArray

    @classmethod
    def quotes_only(
        cls,
        tickers: Sequence[str],
        strikes: FloatArray,
        is_call: BoolArray,
        bid: FloatArray,
        ask: FloatArray,
        quote_ns: IntArray | None = None,
    ) -> ChainColumns:
        """Rows with quotes but no open interest and no vendor analytics (historical data)."""
        n = len(tickers)
        nan = np.full(n, np.nan)
        return cls(
            tuple(tickers),
            strikes,
            is_call,
            bid,
            ask,
            np.full(n, -1, dtype=np.int64),
            quote_ns if quote_ns is not None else np.full(n, -1, dtype=np.int64),
            nan,
            nan.copy(),
            nan.copy(),
            nan.copy(),
            nan.copy(),
        )


@dataclass(slots=True)
class ChainRows:
    """Row-by-row builder of ``ChainColumns`` (for parsers that meet one record at a time)."""

    tickers: list[str]
    strikes: list[float]
    is_call: list[bool]
    bid: list[float]
    ask: list[float]
    open_interest: list[int]
    quote_ns: list[int]
    vendor_iv: list[float]
    vendor_delta: list[float]
    vendor_gamma: list[float]
    vendor_theta: list[float]
    vendor_vega: list[float]

    @classmethod
    def empty(cls) -> ChainRows:
        return cls([], [], [], [], [], [], [], [], [], [], [], [])

    def add(
        self,
        ticker: str,
        strike: float,
        is_call: bool,
        bid: float,
        ask: float,
        open_interest: int = -1,
        quote_ns: int = -1,
        iv: float = math.nan,
        greeks: tuple[float, float, float, float] = (math.nan,) * 4,
    ) -> None:
        self.tickers.append(ticker)
        self.strikes.append(strike)
        self.is_call.append(is_call)
        self.bid.append(bid)
        self.ask.append(ask)
        self.open_interest.append(open_interest)
        self.quote_ns.append(quote_ns)
        self.vendor_iv.append(iv)
        self.vendor_delta.append(greeks[0])
        self.vendor_gamma.append(greeks[1])
        self.vendor_theta.append(greeks[2])
        self.vendor_vega.append(greeks[3])

    def columns(self) -> ChainColumns:
        return ChainColumns(
            tickers=tuple(self.tickers),
            strikes=_f(self.strikes),
            is_call=np.array(self.is_call, dtype=np.bool_),
            bid=_f(self.bid),
            ask=_f(self.ask),
            open_interest=np.array(self.open_interest, dtype=np.int64),
            quote_ns=np.array(self.quote_ns, dtype=np.int64),
            vendor_iv=_f(self.vendor_iv),
            vendor_delta=_f(self.vendor_delta),
            vendor_gamma=_f(self.vendor_gamma),
            vendor_theta=_f(self.vendor_theta),
            vendor_vega=_f(self.vendor_vega),
        )


def _f(values: Sequence[float]) -> FloatArray:
    return np.array(values, dtype=np.float64)


def bad_quote_mask(bid: FloatArray, ask: FloatArray) -> BoolArray:
    """Vectorised ``core.chains.quote_problem(bid, ask) != ""`` (NaN, negative, zero ask, crossed)."""
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(bid) & np.isfinite(ask)
        ok = finite & (bid >= 0) & (ask > 0) & (bid <= ask)
    bad: BoolArray = ~ok
    return bad


def own_iv_and_greeks(
    spot: float,
    strikes: FloatArray,
    is_call: BoolArray,
    bid: FloatArray,
    ask: FloatArray,
    t: float,
    rate: float = 0.0,
    dividend_yield: float = 0.0,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, dict[int, str]]:
    """Our IV (from the mid of sane quotes) and greeks in Polygon units.

    Returns ``iv, delta, gamma, theta_per_day, vega_per_point, failures`` where ``failures`` maps
    a row whose quote was sane but whose IV did not solve to the reason (NaN values there).
    """
    n = strikes.shape[0]
    nan = np.full(n, np.nan)
    if n == 0 or not math.isfinite(spot) or spot <= 0:
        return nan, nan.copy(), nan.copy(), nan.copy(), nan.copy(), {}
    sane = ~bad_quote_mask(bid, ask)
    mid = np.where(sane, (bid + ask) / 2.0, 0.0)
    solved = implied_vol(mid, spot, strikes, t, is_call, rate, dividend_yield)
    ok = sane & (solved.status == IVStatus.OK)
    failures = {
        i: f"mid {mid[i]:.4f}: {IVStatus(int(solved.status[i])).name}"
        for i in np.nonzero(sane & ~ok)[0].tolist()
    }
    iv = np.where(ok, solved.iv, np.nan)
    g = bs_greeks(spot, strikes, t, np.where(ok, iv, 0.2), is_call, rate, dividend_yield)
    mask = ~ok
    delta = np.where(mask, np.nan, g.delta)
    gamma = np.where(mask, np.nan, g.gamma)
    theta = np.where(mask, np.nan, theta_per_day(g))
    vega = np.where(mask, np.nan, vega_per_point(g))
    return iv, delta, gamma, theta, vega, failures


def build_chain(
    underlying: str,
    expiry: date,
    at: datetime,
    spot: float,
    rows: ChainColumns | ChainRows,
    *,
    expiry_close: datetime | None = None,
    vendor_analytics: bool = True,
    vendor_open_interest: bool = True,
    compute_own: bool = True,
    rate: float = 0.0,
    dividend_yield: float = 0.0,
    issues: Sequence[ChainIssue] = (),
) -> ParsedChain:
    """Assemble a ``ParsedChain``: rows sorted by strike (call before put), issues per row.

    ``vendor_analytics``/``vendor_open_interest`` say whether the source is expected to carry
    IV/greeks and OI (a live snapshot does; historical quotes do not, so their absence is not an
    issue there). With ``compute_own`` our IV/greeks fill every row the vendor left without them
    (``computed`` marks those rows); without it they stay NaN (a caller that only needs the
    ``ChainSnapshot`` skips the kernel, ``core.chains.analyze_chain`` does its own).
    """
    require_aware(at, "at")
    cols = rows.columns() if isinstance(rows, ChainRows) else rows
    order = np.lexsort((~cols.is_call, cols.strikes))
    tickers = tuple(cols.tickers[i] for i in order.tolist())
    strikes = cols.strikes[order].astype(np.float64)
    is_call = cols.is_call[order].astype(np.bool_)
    bid, ask = cols.bid[order].astype(np.float64), cols.ask[order].astype(np.float64)
    oi = cols.open_interest[order].astype(np.int64)
    quote_ns = cols.quote_ns[order].astype(np.int64)
    v_iv, v_delta = cols.vendor_iv[order], cols.vendor_delta[order]
    v_gamma, v_theta, v_vega = (
        cols.vendor_gamma[order],
        cols.vendor_theta[order],
        cols.vendor_vega[order],
    )
    n = len(tickers)
    out: list[ChainIssue] = list(issues)

    if not math.isfinite(spot) or spot <= 0:
        out.append(ChainIssue("*", "no_spot", f"no usable underlying price ({spot})"))
    bad = bad_quote_mask(bid, ask)
    for i in np.nonzero(bad)[0].tolist():
        b, a = float(bid[i]), float(ask[i])
        if math.isnan(b) and math.isnan(a):
            out.append(ChainIssue(tickers[i], "no_quote", "no quote: bid/ask NaN", i))
            continue
        problem = quote_problem(b, a)
        code = "crossed_quote" if problem.startswith("crossed") else "bad_quote"
        out.append(ChainIssue(tickers[i], code, problem, i))
    if vendor_open_interest:
        for i in np.nonzero(oi <= 0)[0].tolist():
            if oi[i] < 0:
                out.append(ChainIssue(tickers[i], "no_open_interest", "no open interest", i))
            else:
                out.append(ChainIssue(tickers[i], "zero_open_interest", "open interest 0", i))

    vendor_greeks_ok = ~(np.isnan(v_delta) | np.isnan(v_gamma) | np.isnan(v_theta))
    vendor_greeks_ok &= ~np.isnan(v_vega)
    vendor_ok = vendor_greeks_ok & ~np.isnan(v_iv)
    if vendor_analytics:
        for i in np.nonzero(~vendor_greeks_ok)[0].tolist():
            out.append(ChainIssue(tickers[i], "no_greeks", "no vendor greeks: computed", i))
        for i in np.nonzero(np.isnan(v_iv))[0].tolist():
            out.append(ChainIssue(tickers[i], "no_iv", "no vendor IV: computed", i))

    need = ~vendor_ok
    own_iv = np.full(n, np.nan)
    own = [np.full(n, np.nan) for _ in range(4)]
    close = expiry_close if expiry_close is not None else _expiry_close(expiry)
    t: float | None = None
    if close is None:
        out.append(ChainIssue("*", "no_expiry_close", f"{expiry} is not a session"))
    else:
        try:
            t = year_fraction(at, close)
        except ExpiredContractError:
            out.append(ChainIssue("*", "expired", f"{expiry} expired at {close.isoformat()}"))
    if not compute_own:
        need = np.zeros(n, dtype=np.bool_)
    if t is not None and need.any():
        idx = np.nonzero(need)[0]
        iv_s, d_s, g_s, th_s, ve_s, failures = own_iv_and_greeks(
            spot, strikes[idx], is_call[idx], bid[idx], ask[idx], t, rate, dividend_yield
        )
        own_iv[idx] = iv_s
        for arr, sub in zip(own, (d_s, g_s, th_s, ve_s), strict=True):
            arr[idx] = sub
        for k, reason in failures.items():
            i = int(idx[k])
            out.append(ChainIssue(tickers[i], "no_own_iv", f"no IV: {reason}", i))

    iv = np.where(np.isnan(v_iv), own_iv, v_iv)
    delta = np.where(vendor_greeks_ok, v_delta, own[0])
    gamma = np.where(vendor_greeks_ok, v_gamma, own[1])
    theta = np.where(vendor_greeks_ok, v_theta, own[2])
    vega = np.where(vendor_greeks_ok, v_vega, own[3])
    snapshot = ChainSnapshot(
        underlying=underlying,
        expiry=expiry,
        at=at.astimezone(NY),
        spot=float(spot),
        strikes=strikes,
        is_call=is_call,
        bid=bid,
        ask=ask,
        open_interest=oi,
    )
    for arr in (quote_ns, v_iv, v_delta, v_gamma, v_theta, v_vega, iv, delta, gamma, theta, vega):
        arr.setflags(write=False)
    computed = need.copy()
    computed.setflags(write=False)
    return ParsedChain(
        snapshot=snapshot,
        tickers=tickers,
        quote_ns=quote_ns,
        vendor_iv=v_iv,
        vendor_delta=v_delta,
        vendor_gamma=v_gamma,
        vendor_theta=v_theta,
        vendor_vega=v_vega,
        iv=iv,
        delta=delta,
        gamma=gamma,
        theta=theta,
        vega=vega,
        computed=computed,
        issues=tuple(out),
    )


def _expiry_close(expiry: date) -> datetime | None:
    try:
        return cal.session(expiry).close
    except cal.CalendarError:
        return None


def parse_chain_snapshot(
    results: Iterable[Any],
    underlying: str,
    expiry: date,
    at: datetime,
    *,
    spot: float | None = None,
    expiry_close: datetime | None = None,
    compute_own: bool = True,
    rate: float = 0.0,
    dividend_yield: float = 0.0,
) -> ParsedChain:
    """``/v3/snapshot/options/{u}`` results (dicts or ``OptionContractSnapshot``) -> ParsedChain.

    Rows of other expiries are dropped (one summary issue). A row without details or a usable
    ticker is dropped; a missing type/strike/expiry is taken from the OCC ticker (issue
    ``missing_strike``/...). Non-standard deliverables (shares_per_contract != 100) and duplicate
    contracts are dropped. Spot = the latest ``underlying_asset.price`` (``value`` for an index),
    else ``spot`` if given, else NaN with an issue.
    """
    rows = ChainRows.empty()
    issues: list[ChainIssue] = []
    other_expiry = 0
    delayed = 0
    seen: set[tuple[float, bool]] = set()
    best_spot: tuple[int, float] | None = None
    for item in results:
        details = get_field(item, "details")
        ticker = get_field(details, "ticker")
        if details is None or not isinstance(ticker, str) or not ticker:
            issues.append(ChainIssue("?", "missing_details", "no contract details: dropped"))
            continue
        try:
            from_ticker: OptionContract | None = parse_option_ticker(ticker)
        except ValueError:
            from_ticker = None
        strike = _num(get_field(details, "strike_price"))
        right = _right(get_field(details, "contract_type"))
        exp = _parse_date(get_field(details, "expiration_date"))
        for name, missing, code in (
            ("strike", strike is None, "missing_strike"),
            ("contract type", right is None, "missing_contract_type"),
            ("expiration date", exp is None, "missing_expiry"),
        ):
            if not missing:
                continue
            if from_ticker is None:
                issues.append(ChainIssue(ticker, code, f"no {name}: dropped"))
                break
            issues.append(ChainIssue(ticker, code, f"no {name}: taken from the ticker"))
        else:
            if from_ticker is not None:
                strike = strike if strike is not None else float(from_ticker.strike)
                right = right or from_ticker.right
                exp = exp or from_ticker.expiry
            assert strike is not None
            assert right is not None
            assert exp is not None
            if exp != expiry:
                other_expiry += 1
                continue
            shares = _int(get_field(details, "shares_per_contract"))
            if shares is not None and shares != STANDARD_SHARES:
                issues.append(
                    ChainIssue(ticker, "nonstandard_deliverable", f"{shares} shares: dropped")
                )
                continue
            if strike <= 0:
                issues.append(ChainIssue(ticker, "missing_strike", f"strike {strike}: dropped"))
                continue
            key = (strike, right is Right.CALL)
            if key in seen:
                issues.append(ChainIssue(ticker, "duplicate", "duplicate contract: dropped"))
                continue
            seen.add(key)
            quote = get_field(item, "last_quote")
            bid, ask = _num(get_field(quote, "bid")), _num(get_field(quote, "ask"))
            if str(get_field(quote, "timeframe", "")).upper() == "DELAYED":
                delayed += 1
            greeks = get_field(item, "greeks")
            oi = _num(get_field(item, "open_interest"))
            rows.add(
                ticker,
                strike,
                right is Right.CALL,
                _or_nan(bid),
                _or_nan(ask),
                -1 if oi is None else int(oi),
                _int(get_field(quote, "last_updated")) or -1,
                _or_nan(_num(get_field(item, "implied_volatility"))),
                (
                    _or_nan(_num(get_field(greeks, "delta"))),
                    _or_nan(_num(get_field(greeks, "gamma"))),
                    _or_nan(_num(get_field(greeks, "theta"))),
                    _or_nan(_num(get_field(greeks, "vega"))),
                ),
            )
            asset = get_field(item, "underlying_asset")
            price = _num(get_field(asset, "price"))
            if price is None:
                price = _num(get_field(asset, "value"))
            if price is not None and price > 0:
                stamp = _int(get_field(asset, "last_updated")) or 0
                if best_spot is None or stamp > best_spot[0]:
                    best_spot = (stamp, price)
    if delayed:
        issues.append(ChainIssue("*", "delayed_quotes", f"{delayed} quotes are DELAYED"))
    if other_expiry:
        issues.append(
            ChainIssue("*", "other_expiry", f"{other_expiry} rows of other expiries dropped")
        )
    chosen = best_spot[1] if best_spot is not None else (spot if spot is not None else math.nan)
    return build_chain(
        underlying,
        expiry,
        at,
        chosen,
        rows,
        expiry_close=expiry_close,
        vendor_analytics=True,
        vendor_open_interest=True,
        compute_own=compute_own,
        rate=rate,
        dividend_yield=dividend_yield,
        issues=issues,
    )


# ---- last trade, indices, market status ----------------------------------------------------


def parse_last_trade(body: Any) -> tuple[float, datetime] | None:
    """``/v2/last/trade/{t}`` body (or a ``LastTrade``) -> (price, time); None if unusable."""
    res = get_field(body, "results", body)
    price = _num(get_field(res, "p"))
    if price is None:
        price = _num(get_field(res, "price"))
    ts = _int(get_field(res, "t"))
    if ts is None:
        ts = _int(get_field(res, "sip_timestamp"))
    if price is None or ts is None:
        return None
    return price, ns_to_ny(ts)


def parse_index_value(results: Iterable[Any], ticker: str) -> float | None:
    """``/v3/snapshot/indices`` results -> the ``value`` of ``ticker`` (None on an item error)."""
    want = to_polygon_ticker(ticker)
    for item in results:
        if get_field(item, "ticker") == want and not get_field(item, "error"):
            return _num(get_field(item, "value"))
    return None


@dataclass(frozen=True, slots=True)
class MarketStatus:
    market: str  # "open", "closed", "extended-hours"
    server_time: datetime | None
    exchanges: dict[str, str]
    early_hours: bool
    after_hours: bool

    @property
    def is_open(self) -> bool:
        return self.market == "open"


def parse_market_status(body: Any) -> MarketStatus:
    """``/v1/marketstatus/now`` body (or a ``massive`` ``MarketStatus``) -> MarketStatus."""
    server = get_field(body, "serverTime") or get_field(body, "server_time")
    server_time: datetime | None = None
    if isinstance(server, str):
        try:
            parsed = datetime.fromisoformat(server)
            server_time = parsed.astimezone(NY) if parsed.tzinfo is not None else None
        except ValueError:
            server_time = None
    exchanges_raw = get_field(body, "exchanges", {})
    if isinstance(exchanges_raw, Mapping):
        exchanges = {str(k): str(v) for k, v in exchanges_raw.items() if v is not None}
    else:
        exchanges = {
            k: str(v)
            for k in ("nasdaq", "nyse", "otc")
            if (v := getattr(exchanges_raw, k, None)) is not None
        }
    early = get_field(body, "earlyHours", None)
    early = get_field(body, "early_hours", False) if early is None else early
    after = get_field(body, "afterHours", None)
    after = get_field(body, "after_hours", False) if after is None else after
    return MarketStatus(
        market=str(get_field(body, "market", "unknown")),
        server_time=server_time,
        exchanges=exchanges,
        early_hours=bool(early),
        after_hours=bool(after),
    )
