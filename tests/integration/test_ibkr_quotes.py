"""``adapters.ibkr.IBKRQuotes`` against the fake TWS: chains, snapshots, streams, bars, limits.

The fake counts market-data lines per connection (and answers error 101 past its own limit), so
the line budget is checked on the server side, not just inside the adapter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from adapters.ibkr import IBKRQuotes, LineBudgetExhausted, QuotesError, TokenBucket
from core.calendar import NY
from core.models import OptionContract, Right
from tests.builders import DAY, c
from tests.fixtures.fake_tws import FakeContract, FakeTWS

HOST = "127.0.0.1"
STRIKES = [585.0 + k for k in range(11)]
CHAINS = {"SPY": ([DAY, DAY + timedelta(days=7)], STRIKES)}
FAST: dict[str, Any] = {
    "connect_timeout": 3.0,
    "request_timeout": 3.0,
    "line_wait_timeout": 5.0,
    "backoff": (0.05, 0.1),
    "pacing_backoff": (0.05, 0.05),
}


def quote_fn(contract: FakeContract) -> tuple[float, float, float]:
    if contract.sec_type != "OPT":
        return 589.95, 590.05, 590.0
    intrinsic = max(0.0, (590.0 - contract.strike) * (1 if contract.right == "C" else -1))
    mid = round(intrinsic + 1.0, 2)
    return round(mid - 0.05, 2), round(mid + 0.05, 2), mid


@contextmanager
def quotes(tws: FakeTWS, **overrides: Any) -> Iterator[IBKRQuotes]:
    feed = IBKRQuotes(HOST, tws.port, client_id=21, **{**FAST, **overrides}).connect()
    try:
        yield feed
    finally:
        feed.dispose()


def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


AT = datetime(2026, 11, 27, 10, 30, tzinfo=NY)


def test_expiries_when_chain_listed_then_expirations_on_or_after_the_day() -> None:
    with FakeTWS(chains=CHAINS, quote_fn=quote_fn) as tws, quotes(tws) as feed:
        assert feed.expiries("SPY", DAY) == [DAY, DAY + timedelta(days=7)]
        assert feed.expiries("SPY", DAY + timedelta(days=1)) == [DAY + timedelta(days=7)]


def test_chain_when_built_then_every_contract_quoted_from_a_snapshot() -> None:
    with FakeTWS(chains=CHAINS, quote_fn=quote_fn) as tws, quotes(tws) as feed:
        snap = feed.chain("SPY", DAY, AT)

        assert feed.lines_in_use == 0
        assert tws.active_lines == 0
    assert len(snap) == 22
    assert snap.spot == pytest.approx(590.0)
    assert snap.at == AT
    for i in range(len(snap)):
        contract = snap.contract(i)
        fake = tws.contract("SPY", DAY, float(contract.strike), contract.right.value)
        bid, ask, _ = quote_fn(fake)
        assert (snap.bid[i], snap.ask[i]) == pytest.approx((bid, ask))
    assert np.all(snap.open_interest == -1)
    assert tws.bag_detail_requests == 0


def test_chain_when_line_budget_is_small_then_the_fake_never_sees_more_lines() -> None:
    with (
        FakeTWS(
            chains=CHAINS, quote_fn=quote_fn, snapshot_delay=0.05, max_market_data_lines=4
        ) as tws,
        quotes(tws, max_lines=4) as feed,
    ):
        snap = feed.chain("SPY", DAY, AT)

    assert len(snap) == 22
    assert not np.isnan(snap.bid).any()
    assert tws.market_data_requests == 23  # 22 options + the underlying
    assert tws.max_active_lines == 4  # the budget was used in full, never exceeded
    assert feed.lines.high_water == 4


def test_chain_when_budget_larger_than_the_gateway_allows_then_error_101_surfaces() -> None:
    with (
        FakeTWS(
            chains=CHAINS, quote_fn=quote_fn, snapshot_delay=0.05, max_market_data_lines=4
        ) as tws,
        quotes(tws, max_lines=50) as feed,
        pytest.raises(QuotesError, match="101"),
    ):
        feed.chain("SPY", DAY, AT)


def test_subscribe_when_budget_full_then_clear_error_and_unsubscribe_frees_a_line() -> None:
    contracts = [c(585 + k) for k in range(4)]
    with FakeTWS(chains=CHAINS, quote_fn=quote_fn) as tws, quotes(tws, max_lines=3) as feed:
        for contract in contracts[:3]:
            feed.subscribe(contract)
        with pytest.raises(LineBudgetExhausted, match="3 market-data lines"):
            feed.subscribe(contracts[3])
        assert eventually(lambda: tws.active_lines == 3)

        feed.unsubscribe(contracts[0])
        feed.subscribe(contracts[3])
        assert eventually(lambda: tws.active_lines == 3)
        assert eventually(lambda: feed.latest(contracts[3]).bid == pytest.approx(2.95))
        latest = feed.latest(contracts[3])

    assert tws.max_active_lines == 3
    assert (latest.bid, latest.ask, latest.last) == pytest.approx((2.95, 3.05, 3.0))


def test_quote_when_market_data_pacing_violation_420_then_retried() -> None:
    with FakeTWS(chains=CHAINS, quote_fn=quote_fn) as tws, quotes(tws) as feed:
        tws.fail_next("market_data", 420)

        quote = feed.quote(c(590))

    assert feed.pacing_violations == 1
    assert (quote.bid, quote.ask) == pytest.approx((0.95, 1.05))


def test_quote_when_contract_not_listed_then_clear_error() -> None:
    with (
        FakeTWS(chains=CHAINS, quote_fn=quote_fn) as tws,
        quotes(tws) as feed,
        pytest.raises(QuotesError, match="SPY261127C00700000"),
    ):
        feed.quote(OptionContract("SPY", DAY, Decimal("700"), Right.CALL))


def test_bars_when_historical_pacing_violation_162_then_retried_and_bars_returned() -> None:
    end = datetime(2026, 11, 27, 10, 30, tzinfo=NY)
    start = end - timedelta(minutes=30)
    limiter = TokenBucket(capacity=6, rate=0.1)
    with (
        FakeTWS(chains=CHAINS, quote_fn=quote_fn) as tws,
        quotes(tws, historical_limiter=limiter) as feed,
    ):
        tws.fail_next("historical", 162)

        bars = feed.bars("SPY", start, end)

    assert feed.pacing_violations == 1
    assert len(bars) == 30
    assert bars.times[0] == start
    assert bars.times[-1] == end - timedelta(minutes=1)
    assert limiter.available() < 6


def test_streams_when_1101_data_lost_then_resubscribed_without_extra_lines() -> None:
    contracts = [c(590), c(591)]
    with FakeTWS(chains=CHAINS, quote_fn=quote_fn) as tws, quotes(tws, max_lines=2) as feed:
        for contract in contracts:
            feed.subscribe(contract)
        assert eventually(lambda: tws.active_lines == 2)

        tws.send_error(1101, "Connectivity restored - data lost.")
        assert eventually(lambda: feed.resubscriptions == 2)
        assert eventually(lambda: tws.active_lines == 2)
        assert eventually(lambda: not np.isnan(feed.latest(contracts[1]).bid))

        tws.drop_connections()
        assert eventually(lambda: feed.resubscriptions == 4)
        assert eventually(lambda: tws.active_lines == 2)

    assert feed.lines.high_water == 2
