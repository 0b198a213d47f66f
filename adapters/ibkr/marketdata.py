"""``IBKRQuotes``: option chains, quotes and bars from IB (TWS / IB Gateway) via ``ib_async``.

Its own ``ib_async.IB`` connection (use a client id other than the broker's) on a private
event-loop thread, like ``adapters.ibkr.broker`` (see ``adapters.ibkr.session``). Nothing connects
at construction; call :meth:`IBKRQuotes.connect` / :meth:`IBKRQuotes.dispose`.

* ``expiries`` / ``chain``: expirations and strikes from ``reqSecDefOptParams`` (SMART, the
  underlying's trading class), the expiry's contracts from ONE ``reqContractDetails`` per expiry
  (conIds cached), bid/ask from market-data snapshots of every contract.
* ``quote`` / ``quotes``: snapshots; ``subscribe`` / ``latest`` / ``unsubscribe``: streams.
* ``bars``: ``reqHistoricalData`` (TRADES, regular hours).

Limits, all configurable:

* market-data lines: a :class:`~adapters.ibkr.pacing.LineBudget` of ``max_lines`` (IB's 100 by
  default). A snapshot holds a line while it is in flight and waits (up to ``line_wait_timeout``)
  for a free one; a streaming ``subscribe`` never waits: it raises
  :class:`~adapters.ibkr.errors.LineBudgetExhausted` when the budget is full. The budget is never
  exceeded, so IB's error 101 ("max number of tickers") is not reached by this adapter.
* pacing: token buckets (injectable clock) for historical data and for contract / chain requests;
  a pacing violation (162, 420) empties the bucket, waits ``pacing_backoff`` and retries.
* after 1101 (connectivity restored, data lost) and after a reconnect every stream is requested
  again.

``prior_close`` is not served (``NotImplementedError``): IB's daily bars need a subscription for
the index and the simulator / Polygon feeds provide it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import numpy as np

from adapters.ibkr.errors import (
    ContractNotFound,
    IBKRDisconnected,
    IBKRError,
    LineBudgetExhausted,
    QuotesError,
)
from adapters.ibkr.pacing import LineBudget, TokenBucket, contract_bucket, historical_bucket
from adapters.ibkr.parsing import expiry_text, option_from_ib, parse_expiry
from adapters.ibkr.session import (
    DEFAULT_BACKOFF,
    IBSession,
    LoopThread,
    SessionClient,
    paced_request,
)
from core.calendar import NY
from core.marketdata import Bars, ChainSnapshot
from core.models import OptionContract, Right

T = TypeVar("T")

log = logging.getLogger("dte.ibkr")

INDEX_SYMBOLS = frozenset({"VIX", "SPX", "NDX", "RUT", "XSP"})


@dataclass(frozen=True, slots=True)
class Quote:
    bid: float
    ask: float
    last: float

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0


def _price(value: float) -> float:
    """IB's "no price" (-1, NaN) as NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value < 0:
        return float("nan")
    return float(value)


class IBKRQuotes(SessionClient):
    """Market data from IB with a line budget and pacing (see the module docstring)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4002,
        client_id: int = 2,
        *,
        max_lines: int = 100,
        connect_timeout: float = 10.0,
        request_timeout: float = 10.0,
        line_wait_timeout: float = 30.0,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        pacing_backoff: Sequence[float] = (1.0, 5.0, 15.0),
        historical_limiter: TokenBucket | None = None,
        contract_limiter: TokenBucket | None = None,
        market_data_limiter: TokenBucket | None = None,
        trading_classes: Mapping[str, str] | None = None,
        index_symbols: frozenset[str] = INDEX_SYMBOLS,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.line_wait_timeout = line_wait_timeout
        self.pacing_backoff = tuple(pacing_backoff)
        self.trading_classes = dict(trading_classes or {})
        self.index_symbols = index_symbols
        self.lines = LineBudget(max_lines)
        self._historical = historical_limiter or historical_bucket()
        self._contracts_limiter = contract_limiter or contract_bucket()
        self._market_limiter = market_data_limiter or TokenBucket(capacity=50, rate=40.0)
        self._thread_name = "ibkr-quotes"
        self._thread: LoopThread | None = None
        self.session = IBSession(
            host=host,
            port=port,
            client_id=client_id,
            name=f"IBKRQuotes[{client_id}]",
            connect_timeout=connect_timeout,
            backoff=backoff,
            on_connected=self._on_connected,
            on_restored=self._on_restored,
            on_lost=self._on_lost,
        )
        self._underlyings: dict[str, Any] = {}  # symbol -> qualified ib Contract
        self._chain_params: dict[str, tuple[list[date], list[float]]] = {}
        self._options: dict[tuple[str, date], dict[OptionContract, Any]] = {}
        self._streams: dict[OptionContract | str, Any] = {}  # key -> qualified contract
        self._tickers: dict[OptionContract | str, Any] = {}
        self.pacing_violations = 0
        self.resubscriptions = 0

    # ------------------------------------------------------------------ life cycle
    def _connect_budget(self) -> float:
        return self.connect_timeout + self.request_timeout

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
        try:
            return self._call(coro, timeout, what)
        except IBKRError as error:
            if isinstance(error, QuotesError):
                raise
            raise QuotesError(error.reason) from error

    def _timeout(self, n: int = 1) -> float:
        return self.line_wait_timeout + n * self.request_timeout + sum(self.pacing_backoff) + 5

    @property
    def _ib(self) -> Any:
        ib = self.session.ib
        if ib is None or not self.session.ready:
            raise IBKRDisconnected("IBKRQuotes: no IB connection")
        return ib

    # ------------------------------------------------------------------ public API
    def expiries(self, underlying: str, on: date) -> list[date]:
        return self._run(self._expiries(underlying, on), self._timeout(2), "expiries")

    def chain(self, underlying: str, expiry: date, at: datetime) -> ChainSnapshot:
        return self._run(self._chain(underlying, expiry, at), self._timeout(6) * 4, "chain")

    def quote(self, contract: OptionContract) -> Quote:
        return self._run(self._quote_option(contract), self._timeout(2), "quote")

    def quotes(self, contracts: Sequence[OptionContract]) -> list[Quote]:
        return self._run(
            self._quote_many(list(contracts)),
            self._timeout(4) * (1 + len(contracts) // 50),
            "quotes",
        )

    def last_price(self, symbol: str, at: datetime) -> float:
        quote = self._run(self._quote_underlying(symbol), self._timeout(2), "last_price")
        return quote.last if not math.isnan(quote.last) else quote.mid

    def bars(self, symbol: str, start: datetime, end: datetime, freq: str = "1min") -> Bars:
        return self._run(self._bars(symbol, start, end, freq), self._timeout(2), "bars")

    def prior_close(self, symbol: str, on: date) -> float:
        raise NotImplementedError("IBKRQuotes does not serve prior_close (use another feed)")

    def subscribe(self, contract: OptionContract) -> None:
        """Stream ``contract``; raises :class:`LineBudgetExhausted` if every line is in use."""
        self._run(self._subscribe(contract), self._timeout(2), "subscribe")

    def unsubscribe(self, contract: OptionContract) -> None:
        self._run(self._unsubscribe(contract), self._timeout(), "unsubscribe")

    def latest(self, contract: OptionContract) -> Quote:
        """The last streamed quote of a subscribed contract (NaN where nothing arrived yet)."""
        return self._run(self._latest(contract), self._timeout(), "latest")

    @property
    def lines_in_use(self) -> int:
        return self.lines.in_use

    # ------------------------------------------------------------------ session callbacks
    async def _on_connected(self, ib: Any) -> None:
        self.lines.reset()
        self._tickers.clear()
        if self._streams:
            await self._resubscribe(ib)

    async def _on_restored(self, data_lost: bool) -> None:
        if data_lost and self._streams:
            ib = self.session.ib
            for ticker in list(self._tickers.values()):
                ib.cancelMktData(ticker.contract)
            self.lines.reset()
            self._tickers.clear()
            await self._resubscribe(ib)

    def _on_lost(self) -> None:
        self.lines.reset()
        self._tickers.clear()

    async def _resubscribe(self, ib: Any) -> None:
        for key, contract in list(self._streams.items()):
            if not self.lines.try_take():
                log.error("IBKRQuotes: no line left to resubscribe %s", key)
                continue
            self._tickers[key] = ib.reqMktData(contract, "", False, False, [])
            self.resubscriptions += 1

    # ------------------------------------------------------------------ contracts
    def _count_pacing(self, code: int) -> None:
        self.pacing_violations += 1

    async def _request(self, make: Any, bucket: TokenBucket, what: str) -> Any:
        try:
            return await paced_request(
                make,
                bucket=bucket,
                what=what,
                timeout=self.request_timeout,
                pacing_backoff=self.pacing_backoff,
                on_pacing=self._count_pacing,
            )
        except ContractNotFound as error:
            raise QuotesError(error.reason) from error
        except IBKRError as error:
            raise QuotesError(error.reason) from error

    async def _underlying(self, symbol: str) -> Any:
        cached = self._underlyings.get(symbol)
        if cached is not None:
            return cached
        from ib_async import Index, Stock

        ib = self._ib
        spec: Any = (
            Index(symbol, "CBOE", "USD")
            if symbol in self.index_symbols
            else Stock(symbol, "SMART", "USD")
        )
        details = await self._request(
            lambda: ib.reqContractDetailsAsync(spec),
            self._contracts_limiter,
            f"contract details for {symbol}",
        )
        if not details:
            raise QuotesError(f"IB knows no underlying {symbol}")
        contract = details[0].contract
        self._underlyings[symbol] = contract
        return contract

    async def _params(self, underlying: str) -> tuple[list[date], list[float]]:
        cached = self._chain_params.get(underlying)
        if cached is not None:
            return cached
        under = await self._underlying(underlying)
        ib = self._ib
        chains = await self._request(
            lambda: ib.reqSecDefOptParamsAsync(underlying, "", under.secType, under.conId),
            self._contracts_limiter,
            f"option chain definition of {underlying}",
        )
        wanted = self.trading_classes.get(underlying, underlying)
        chosen = [c for c in chains if c.exchange == "SMART" and c.tradingClass == wanted] or [
            c for c in chains if c.exchange == "SMART"
        ]
        if not chosen:
            raise QuotesError(f"IB lists no SMART option chain for {underlying}")
        expiries = sorted({parse_expiry(e) for c in chosen for e in c.expirations})
        strikes = sorted({float(k) for c in chosen for k in c.strikes})
        self._chain_params[underlying] = (expiries, strikes)
        return expiries, strikes

    async def _expiry_contracts(self, underlying: str, expiry: date) -> dict[OptionContract, Any]:
        key = (underlying, expiry)
        cached = self._options.get(key)
        if cached is not None:
            return cached
        from ib_async import Option

        ib = self._ib
        spec = Option(
            symbol=underlying,
            lastTradeDateOrContractMonth=expiry_text(expiry),
            exchange="SMART",
            currency="USD",
            tradingClass=self.trading_classes.get(underlying, ""),
        )
        details = await self._request(
            lambda: ib.reqContractDetailsAsync(spec),
            self._contracts_limiter,
            f"contracts of {underlying} {expiry.isoformat()}",
        )
        out: dict[OptionContract, Any] = {}
        for d in details:
            c = d.contract
            option = option_from_ib(
                c.symbol, c.secType, c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier
            )
            if option is not None:
                c.exchange = "SMART"
                out[option] = c
        self._options[key] = out
        return out

    async def _qualified(self, contract: OptionContract) -> Any:
        contracts = await self._expiry_contracts(contract.underlying, contract.expiry)
        found = contracts.get(contract)
        if found is None:
            raise QuotesError(f"IB lists no {contract.symbol}")
        return found

    # ------------------------------------------------------------------ quotes
    async def _snapshot(self, contract: Any, what: str) -> Quote:
        if not await self.lines.take(self.line_wait_timeout):
            raise LineBudgetExhausted(
                f"{what}: all {self.lines.limit} market-data lines busy for "
                f"{self.line_wait_timeout:g} s"
            )
        try:
            ib = self._ib

            async def one() -> Any:
                req_id = ib.client.getReqId()
                future = ib.wrapper.startReq(req_id, contract)
                ticker = ib.wrapper.startTicker(req_id, contract, "snapshot")
                ib.client.reqMktData(req_id, contract, "", True, False, [])
                try:
                    await asyncio.wait_for(future, self.request_timeout)
                except TimeoutError:
                    if ib.isConnected():
                        ib.client.cancelMktData(req_id)
                    raise
                finally:
                    ib.wrapper.endTicker(ticker, "snapshot")
                return ticker

            ticker = await self._request(one, self._market_limiter, what)
            return Quote(_price(ticker.bid), _price(ticker.ask), _price(ticker.last))
        finally:
            self.lines.give_back()

    async def _quote_option(self, contract: OptionContract) -> Quote:
        return await self._snapshot(await self._qualified(contract), f"quote of {contract.symbol}")

    async def _quote_underlying(self, symbol: str) -> Quote:
        return await self._snapshot(await self._underlying(symbol), f"quote of {symbol}")

    async def _quote_many(self, contracts: list[OptionContract]) -> list[Quote]:
        qualified = [await self._qualified(c) for c in contracts]
        return list(
            await asyncio.gather(
                *(
                    self._snapshot(q, f"quote of {c.symbol}")
                    for q, c in zip(qualified, contracts, strict=True)
                )
            )
        )

    async def _expiries(self, underlying: str, on: date) -> list[date]:
        expiries, _ = await self._params(underlying)
        return [e for e in expiries if e >= on]

    async def _chain(self, underlying: str, expiry: date, at: datetime) -> ChainSnapshot:
        expiries, _ = await self._params(underlying)
        if expiry not in expiries:
            raise QuotesError(f"IB lists no {underlying} expiry {expiry.isoformat()}")
        contracts = await self._expiry_contracts(underlying, expiry)
        if not contracts:
            raise QuotesError(f"IB returned no contracts for {underlying} {expiry.isoformat()}")
        ordered = sorted(contracts, key=lambda c: (c.right is Right.PUT, c.strike))
        spot_quote, *option_quotes = await asyncio.gather(
            self._quote_underlying(underlying),
            *(self._snapshot(contracts[c], f"quote of {c.symbol}") for c in ordered),
        )
        spot = spot_quote.last if not math.isnan(spot_quote.last) else spot_quote.mid
        n = len(ordered)
        return ChainSnapshot(
            underlying=underlying,
            expiry=expiry,
            at=at,
            spot=float(spot),
            strikes=np.array([float(c.strike) for c in ordered], dtype=np.float64),
            is_call=np.array([c.right is Right.CALL for c in ordered], dtype=np.bool_),
            bid=np.array([q.bid for q in option_quotes], dtype=np.float64),
            ask=np.array([q.ask for q in option_quotes], dtype=np.float64),
            open_interest=np.full(n, -1, dtype=np.int64),
            multiplier=ordered[0].multiplier,
        )

    # ------------------------------------------------------------------ streams
    async def _subscribe(self, contract: OptionContract) -> None:
        if contract in self._streams:
            return
        qualified = await self._qualified(contract)
        if not self.lines.try_take():
            raise LineBudgetExhausted(
                f"cannot stream {contract.symbol}: all {self.lines.limit} market-data lines are "
                "in use (unsubscribe something first)"
            )
        try:
            await self._market_limiter.acquire()
            self._tickers[contract] = self._ib.reqMktData(qualified, "", False, False, [])
            self._streams[contract] = qualified
        except BaseException:
            self.lines.give_back()
            raise

    async def _unsubscribe(self, contract: OptionContract) -> None:
        qualified = self._streams.pop(contract, None)
        ticker = self._tickers.pop(contract, None)
        if qualified is None:
            return
        if ticker is not None:
            if self.session.ib is not None and self.session.ib.isConnected():
                self.session.ib.cancelMktData(qualified)
            self.lines.give_back()

    async def _latest(self, contract: OptionContract) -> Quote:
        ticker = self._tickers.get(contract)
        if ticker is None:
            raise QuotesError(f"{contract.symbol} is not subscribed")
        return Quote(_price(ticker.bid), _price(ticker.ask), _price(ticker.last))

    # ------------------------------------------------------------------ bars
    async def _bars(self, symbol: str, start: datetime, end: datetime, freq: str) -> Bars:
        sizes = {"1min": ("1 min", 60), "5min": ("5 mins", 300), "1d": ("1 day", 86400)}
        if freq not in sizes:
            raise QuotesError(f"unsupported bar frequency {freq!r} (use {sorted(sizes)})")
        bar_size, step = sizes[freq]
        seconds = max(step, int((end - start).total_seconds()))
        duration = f"{seconds} S" if seconds <= 86400 else f"{math.ceil(seconds / 86400)} D"
        contract = await self._underlying(symbol)
        ib = self._ib
        rows = await self._request(
            lambda: ib.reqHistoricalDataAsync(
                contract,
                endDateTime=end,
                durationStr=duration,
                barSizeSetting=bar_size,
                whatToShow="TRADES",
                useRTH=True,
                formatDate=2,
                timeout=0,
            ),
            self._historical,
            f"bars of {symbol}",
        )
        times, o, h, low, c, v = [], [], [], [], [], []
        for bar in rows:
            at = bar.date
            if isinstance(at, datetime):
                at = at if at.tzinfo else at.replace(tzinfo=UTC)
            else:
                at = datetime(at.year, at.month, at.day, tzinfo=NY)
            at = at.astimezone(NY)
            if not start <= at < end or at + timedelta(seconds=step) > end:
                continue
            times.append(at)
            o.append(bar.open)
            h.append(bar.high)
            low.append(bar.low)
            c.append(bar.close)
            v.append(bar.volume)
        return Bars(
            symbol,
            tuple(times),
            np.array(o, dtype=np.float64),
            np.array(h, dtype=np.float64),
            np.array(low, dtype=np.float64),
            np.array(c, dtype=np.float64),
            np.array(v, dtype=np.float64),
        )
