"""``PolygonMarketData`` with the real ``massive.RESTClient`` against recorded JSON served by
``tests.fixtures.polygon_server`` (static mode): pagination, retries, errors, live endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pytest
from massive import RESTClient

from adapters.polygon import PolygonMarketData
from adapters.ports import MarketData, MarketDataError
from core import calendar as cal
from tests.fixtures.polygon_server import PolygonFixtureServer

NY = cal.NY
KEY = "pk-test-Zq9SECRETkey77"
DAY = date(2026, 11, 24)
AT = datetime(2026, 11, 24, 10, 30, tzinfo=NY)
SNAPSHOT = "/v3/snapshot/options/SPY"


@pytest.fixture
def server() -> Iterator[PolygonFixtureServer]:
    with PolygonFixtureServer(api_key=KEY) as srv:
        yield srv


def _md(server: PolygonFixtureServer, **kwargs: object) -> tuple[PolygonMarketData, list[float]]:
    sleeps: list[float] = []
    options: dict[str, object] = {
        "base_url": server.base_url,
        "now": lambda: AT,
        "sleep": sleeps.append,
        "backoff_seconds": 0.5,
        "max_attempts": 4,
    }
    options.update(kwargs)
    api_key = str(options.pop("api_key", KEY))
    return PolygonMarketData(api_key, **options), sleeps  # type: ignore[arg-type]


def test_construct_when_created_then_port_implemented_and_nothing_requested(
    server: PolygonFixtureServer,
) -> None:
    md, _ = _md(server)
    assert isinstance(md, MarketData)
    assert KEY not in repr(md)
    assert server.count() == 0


def test_chain_when_live_snapshot_paginates_then_every_page_followed(
    server: PolygonFixtureServer,
) -> None:
    md, _ = _md(server)
    parsed = md.parsed_chain("SPY", DAY, AT)
    assert len(parsed) == 12
    requests = [r for r in server.requests if r.path == SNAPSHOT]
    assert [r.status for r in requests] == [200, 200]
    assert requests[0].query["expiration_date"] == "2026-11-24"
    assert set(requests[1].query) == {"cursor"}  # next_url's query, on our own base URL
    snap = md.chain("SPY", DAY, AT)
    assert snap.spot == 601.37
    assert server.count(SNAPSHOT) == 4  # a live chain is never served from memory


def test_chain_when_rate_limited_twice_then_retried_with_backoff_and_succeeds(
    server: PolygonFixtureServer,
) -> None:
    server.fail(SNAPSHOT, 429, times=2)
    md, sleeps = _md(server)
    assert len(md.chain("SPY", DAY, AT)) == 12
    assert [r.status for r in server.requests] == [429, 429, 200, 200]
    assert sleeps == [0.5, 1.0]


def test_chain_when_second_page_fails_once_then_only_that_page_retried(
    server: PolygonFixtureServer,
) -> None:
    html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    server.fail(SNAPSHOT, 502, times=1, body=html, with_param="cursor")
    md, sleeps = _md(server)
    assert len(md.chain("SPY", DAY, AT)) == 12
    assert [(r.status, "cursor" in r.query) for r in server.requests] == [
        (200, False),
        (502, True),
        (200, True),
    ]
    assert sleeps == [0.5]


def test_chain_when_5xx_persists_then_market_data_error_with_reason_and_no_key(
    server: PolygonFixtureServer,
) -> None:
    server.fail(SNAPSHOT, 503, times=100)
    md, sleeps = _md(server, max_attempts=3)
    with pytest.raises(MarketDataError) as err:
        md.chain("SPY", DAY, AT)
    message = str(err.value)
    assert "option chain snapshot SPY 2026-11-24" in message
    assert "gave up after 3 attempts: HTTP 503" in message
    assert KEY not in message
    assert err.value.__cause__ is None
    assert err.value.__context__ is None
    assert server.count(SNAPSHOT) == 3
    assert sleeps == [0.5, 1.0]


def test_request_when_api_key_wrong_then_clear_error_at_once_without_key(
    server: PolygonFixtureServer,
) -> None:
    md, sleeps = _md(server, api_key="wrong-key-XYZ123")
    with pytest.raises(MarketDataError, match="Unknown API Key") as err:
        md.expiries("SPY", DAY)
    assert "wrong-key-XYZ123" not in str(err.value)
    assert "check the API key" in str(err.value)
    assert err.value.__suppress_context__  # no chained BadResponse/URL text in tracebacks
    assert [r.status for r in server.requests] == [401]
    assert sleeps == []


def test_request_when_server_unreachable_then_retried_then_connection_error() -> None:
    with PolygonFixtureServer(api_key=KEY) as srv:
        base = srv.base_url
    sleeps: list[float] = []
    md = PolygonMarketData(
        KEY, base_url=base, now=lambda: AT, sleep=sleeps.append, max_attempts=3, connect_timeout=2
    )
    with pytest.raises(MarketDataError, match="gave up after 3 attempts: connection failed"):
        md.bars("SPY", AT - timedelta(minutes=5), AT)
    assert len(sleeps) == 2


def test_expiries_when_contracts_paginate_then_all_pages_used_and_adjusted_excluded(
    server: PolygonFixtureServer,
) -> None:
    md, _ = _md(server)
    assert md.expiries("SPY", DAY) == [
        date(2026, 11, 24),
        date(2026, 11, 25),
        date(2026, 11, 27),
        date(2026, 12, 18),
    ]
    requests = server.requests
    assert [r.path for r in requests] == ["/v3/reference/options/contracts"] * 2
    first = requests[0].query
    assert (first["underlying_ticker"], first["as_of"], first["limit"]) == (
        "SPY",
        "2026-11-24",
        "1000",
    )
    assert (first["expiration_date.gte"], first["expiration_date.lte"]) == (
        "2026-11-24",
        "2027-01-08",
    )
    assert set(requests[1].query) == {"cursor"}
    md.expiries("SPY", DAY)
    assert server.count() == 2  # the listing of a day is kept in memory


def test_chain_when_no_contracts_listed_then_market_data_error(
    server: PolygonFixtureServer,
) -> None:
    md, _ = _md(server, live=False)
    with pytest.raises(MarketDataError, match="no QQQ contracts expiring 2026-11-24"):
        md.chain("QQQ", DAY, AT)


def test_chain_when_snapshot_has_no_rows_then_market_data_error(
    server: PolygonFixtureServer,
) -> None:
    md, _ = _md(server)
    with pytest.raises(MarketDataError, match="no IWM 2026-11-24 option chain"):
        md.chain("IWM", DAY, AT)
    with pytest.raises(MarketDataError, match="snapshot QQQ 2026-11-24: request failed: Not found"):
        md.chain("QQQ", DAY, AT)  # not served: 404, refused at once
    assert [r.status for r in server.requests] == [200, 404]


def test_bars_when_aggregates_paginate_then_next_url_path_followed(
    server: PolygonFixtureServer,
) -> None:
    md, _ = _md(server, live=False, now=lambda: datetime(2026, 12, 1, tzinfo=NY))
    open_ = cal.session(DAY).open
    bars = md.bars("SPY", open_, open_ + timedelta(minutes=5))
    assert [t.strftime("%H:%M") for t in bars.times] == [
        "09:30",
        "09:31",
        "09:32",
        "09:33",
        "09:34",
    ]
    paths = [r.path for r in server.requests]
    assert paths[0] == "/v2/aggs/ticker/SPY/range/1/minute/2026-11-24/2026-11-24"
    assert paths[1] == "/v2/aggs/ticker/SPY/range/1/minute/1795530780000/2026-11-24"
    assert set(server.requests[1].query) == {"cursor"}
    # the 09:29 extended-hours bar is there, but the session price starts at the 09:30 open
    assert md.last_price("SPY", open_) == bars.open[0]
    assert md.last_price("SPY", open_ + timedelta(minutes=2)) == bars.close[1]
    assert len(md.bars("SPY", open_ - timedelta(minutes=1), open_ + timedelta(minutes=1))) == 2


def test_last_price_when_live_then_last_trade_and_index_snapshot(
    server: PolygonFixtureServer,
) -> None:
    md, _ = _md(server)
    assert md.last_price("SPY", AT) == 601.37
    assert md.last_price("VIX", AT) == 16.43
    assert [r.path for r in server.requests] == ["/v2/last/trade/SPY", "/v3/snapshot/indices"]
    assert server.requests[1].query == {"ticker.any_of": "I:VIX"}


def test_last_price_when_plan_not_entitled_then_minute_bars_used(
    server: PolygonFixtureServer,
) -> None:
    body = {
        "status": "NOT_AUTHORIZED",
        "request_id": "4c3f2b1a",
        "message": "You are not entitled to this data. Please upgrade your plan.",
    }
    server.fail("/v2/last/trade/SPY", 403, times=1, body=body)
    md, sleeps = _md(server)
    assert md.last_price("SPY", AT) == 601.07  # close of the last bar served (09:34)
    assert [(r.path, r.status) for r in server.requests][:2] == [
        ("/v2/last/trade/SPY", 403),
        ("/v2/aggs/ticker/SPY/range/1/minute/2026-11-24/2026-11-24", 200),
    ]
    assert sleeps == []


def test_prior_close_when_live_today_then_prev_endpoint_else_daily_bars(
    server: PolygonFixtureServer,
) -> None:
    md, _ = _md(server)
    assert md.prior_close("SPY", DAY) == 600.91
    assert md.prior_close("VIX", DAY) == 16.84  # prev of I:VIX not served (404): daily bars
    assert [(r.path, r.status) for r in server.requests] == [
        ("/v2/aggs/ticker/SPY/prev", 200),
        ("/v2/aggs/ticker/I:VIX/prev", 404),
        ("/v2/aggs/ticker/I:VIX/range/1/day/2026-11-23/2026-11-23", 200),
    ]


def test_market_status_when_open_then_parsed(server: PolygonFixtureServer) -> None:
    md, _ = _md(server)
    status = md.market_status()
    assert status.is_open
    assert status.server_time == AT


def test_injected_client_when_given_then_used_as_is(server: PolygonFixtureServer) -> None:
    client = RESTClient(api_key=KEY, base=server.base_url, retries=0)
    md = PolygonMarketData(client=client, now=lambda: AT, sleep=lambda s: None)
    assert md.last_price("SPY", AT) == 601.37
    with pytest.raises(ValueError, match="API key"):
        PolygonMarketData(None)
