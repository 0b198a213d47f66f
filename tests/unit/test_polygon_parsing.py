"""Pure parsing of Polygon / Massive responses (``adapters.polygon.parsing``): no network."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from massive.rest.models import Agg, MarketStatus, OptionContractSnapshot, OptionsContract

from adapters.polygon.parsing import (
    ChainColumns,
    ParsedChain,
    build_chain,
    expiries_of,
    from_polygon_ticker,
    last_quote_at,
    ms_to_ny,
    option_ticker,
    parse_aggs,
    parse_chain_snapshot,
    parse_contracts,
    parse_index_value,
    parse_last_trade,
    parse_market_status,
    parse_option_ticker,
    parse_previous_close,
    parse_quotes,
    session_minute_grid,
    to_ms,
    to_ns,
    to_polygon_ticker,
)
from core import calendar as cal
from core.chains import quote_problem
from core.models import OptionContract, Right
from core.pricing import bs_delta, year_fraction

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "polygon"
NY = cal.NY
DAY = date(2026, 11, 24)
AT = datetime(2026, 11, 24, 10, 30, tzinfo=NY)


def _load(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return body


def _snapshot_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        _load("snapshot_options_SPY_2026-11-24_p1.json")["results"]
        + _load("snapshot_options_SPY_2026-11-24_p2.json")["results"]
    )
    return rows


@pytest.fixture(scope="module")
def parsed() -> ParsedChain:
    return parse_chain_snapshot(_snapshot_rows(), "SPY", DAY, AT)


def _row(parsed: ParsedChain, ticker: str) -> int:
    return parsed.tickers.index(ticker)


# ---- option chain snapshot -----------------------------------------------------------------


def test_parse_snapshot_when_greeks_missing_then_own_computed_and_issue_recorded(
    parsed: ParsedChain,
) -> None:
    i = _row(parsed, "O:SPY261124C00603000")
    assert math.isnan(parsed.vendor_delta[i])
    assert math.isnan(parsed.vendor_iv[i])
    assert parsed.computed[i]
    assert 0.05 < parsed.iv[i] < 0.5
    t = year_fraction(AT, cal.session(DAY).close)
    expected = float(bs_delta(601.37, 603.0, t, parsed.iv[i], True))
    assert parsed.delta[i] == pytest.approx(expected, rel=1e-9)
    assert 0.0 < parsed.delta[i] < 0.5
    assert parsed.theta[i] < 0  # per day, Polygon's unit
    codes = {x.code for x in parsed.issues if x.ticker == "O:SPY261124C00603000"}
    assert {"no_greeks", "no_iv"} <= codes


def test_parse_snapshot_when_vendor_greeks_present_then_kept_not_recomputed(
    parsed: ParsedChain,
) -> None:
    i = _row(parsed, "O:SPY261124C00598000")
    assert not parsed.computed[i]
    assert parsed.delta[i] == parsed.vendor_delta[i] == pytest.approx(0.942827)
    assert parsed.iv[i] == pytest.approx(0.1422)


def test_parse_snapshot_when_no_last_quote_then_nan_bid_ask_and_issue(parsed: ParsedChain) -> None:
    i = _row(parsed, "O:SPY261124P00598000")
    assert math.isnan(parsed.snapshot.bid[i])
    assert math.isnan(parsed.snapshot.ask[i])
    assert parsed.snapshot.strikes[i] == 598.0
    assert [x.code for x in parsed.issues if x.row == i] == ["no_quote"]


def test_parse_snapshot_when_open_interest_zero_or_absent_then_issues_and_minus_one(
    parsed: ParsedChain,
) -> None:
    zero = _row(parsed, "O:SPY261124P00603000")
    absent = _row(parsed, "O:SPY261124C00599000")
    assert parsed.snapshot.open_interest[zero] == 0
    assert parsed.snapshot.open_interest[absent] == -1
    assert any(x.code == "zero_open_interest" and x.row == zero for x in parsed.issues)
    assert any(x.code == "no_open_interest" and x.row == absent for x in parsed.issues)


def test_parse_snapshot_when_quote_crossed_then_flagged_and_left_as_is(parsed: ParsedChain) -> None:
    i = _row(parsed, "O:SPY261124C00602000")
    bid, ask = float(parsed.snapshot.bid[i]), float(parsed.snapshot.ask[i])
    assert (bid, ask) == (0.71, 0.66)
    assert quote_problem(bid, ask).startswith("crossed")
    assert any(x.code == "crossed_quote" and x.row == i for x in parsed.issues)


def test_parse_snapshot_when_strike_missing_then_taken_from_ticker_with_issue(
    parsed: ParsedChain,
) -> None:
    i = _row(parsed, "O:SPY261124P00601000")
    assert parsed.snapshot.strikes[i] == 601.0
    assert not parsed.snapshot.is_call[i]
    assert any(x.code == "missing_strike" for x in parsed.issues_with("missing_strike"))


def test_parse_snapshot_when_adjusted_contract_then_dropped_with_issue(parsed: ParsedChain) -> None:
    assert "O:SPY1261124C00600000" not in parsed.tickers
    assert [x.ticker for x in parsed.issues_with("nonstandard_deliverable")] == [
        "O:SPY1261124C00600000"
    ]


def test_parse_snapshot_when_parsed_then_sorted_rows_spot_and_contracts(
    parsed: ParsedChain,
) -> None:
    snap = parsed.snapshot
    assert len(snap) == 12
    assert snap.spot == 601.37
    assert snap.strikes.tolist() == [float(k) for k in range(598, 604) for _ in (0, 1)]
    assert snap.is_call.tolist() == [True, False] * 6
    assert snap.at == AT
    for i, ticker in enumerate(parsed.tickers):
        assert option_ticker(snap.contract(i)) == ticker


def test_parse_snapshot_when_fields_garbage_then_no_crash_and_rows_dropped_with_issues() -> None:
    rows: list[Any] = [
        {},
        {"details": None},
        {"details": {"ticker": 5}},
        {"details": {"ticker": "NOT-AN-OPTION", "contract_type": "call"}},
        {
            "details": {"ticker": "O:SPY261124C00600000", "expiration_date": "bad"},
            "last_quote": {"bid": "x", "ask": None},
            "greeks": None,
            "open_interest": "many",
            "underlying_asset": {},
        },
        {"details": {"ticker": "O:SPY261127C00600000"}},  # another expiry
    ]
    parsed = parse_chain_snapshot(rows, "SPY", DAY, AT, spot=600.0)
    assert len(parsed) == 1
    assert math.isnan(parsed.snapshot.bid[0])
    assert parsed.snapshot.open_interest[0] == -1
    assert parsed.snapshot.spot == 600.0
    counts = parsed.issue_counts()
    assert counts["missing_details"] == 3
    strikes = parsed.issues_with("missing_strike")
    assert [x.ticker for x in strikes if x.detail.endswith("dropped")] == ["NOT-AN-OPTION"]
    assert len(strikes) == 3  # the two OCC tickers give theirs
    assert counts["missing_expiry"] == 2
    assert counts["other_expiry"] == 1
    assert counts["no_quote"] == 1


def test_parse_snapshot_when_quotes_delayed_then_one_chain_issue() -> None:
    rows = _snapshot_rows()
    for r in rows:
        if "last_quote" in r:
            r["last_quote"]["timeframe"] = "DELAYED"
    parsed = parse_chain_snapshot(rows, "SPY", DAY, AT)
    assert [x.detail for x in parsed.issues_with("delayed_quotes")] == [
        "11 quotes are DELAYED"
    ]  # one row has no quote


def test_parse_snapshot_when_no_underlying_price_then_nan_spot_issue() -> None:
    rows = [r for r in _snapshot_rows() if r["details"]["ticker"] != "O:SPY1261124C00600000"]
    for r in rows:
        r.pop("underlying_asset", None)
    parsed = parse_chain_snapshot(rows, "SPY", DAY, AT)
    assert math.isnan(parsed.snapshot.spot)
    assert parsed.issues_with("no_spot")
    assert np.isnan(parsed.iv[parsed.computed]).all()


def test_parse_snapshot_when_massive_models_then_same_as_dicts(parsed: ParsedChain) -> None:
    models = [OptionContractSnapshot.from_dict(r) for r in _snapshot_rows()]
    from_models = parse_chain_snapshot(models, "SPY", DAY, AT)
    assert from_models.tickers == parsed.tickers
    np.testing.assert_array_equal(from_models.snapshot.bid, parsed.snapshot.bid)
    np.testing.assert_array_equal(from_models.snapshot.ask, parsed.snapshot.ask)
    np.testing.assert_array_equal(from_models.delta, parsed.delta)


def test_build_chain_when_quotes_only_then_no_vendor_issues_and_own_iv_everywhere() -> None:
    strikes = np.array([600.0, 600.0, 605.0])
    cols = ChainColumns.quotes_only(
        ("O:SPY261124P00600000", "O:SPY261124C00600000", "O:SPY261124C00605000"),
        strikes,
        np.array([False, True, True]),
        np.array([1.10, 2.30, 0.0]),
        np.array([1.15, 2.36, 0.02]),
    )
    parsed = build_chain("SPY", DAY, AT, 601.0, cols, vendor_analytics=False,
                         vendor_open_interest=False)  # fmt: skip
    assert parsed.tickers[0] == "O:SPY261124C00600000"  # call before put at a strike
    assert parsed.issues == ()
    assert parsed.computed.all()
    assert np.isfinite(parsed.iv).all()


# ---- tickers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ticker", "underlying", "expiry", "strike", "right"),
    [
        ("O:SPY261127C00600000", "SPY", date(2026, 11, 27), "600", Right.CALL),
        ("O:SPY261127P00592500", "SPY", date(2026, 11, 27), "592.5", Right.PUT),
        ("O:QQQ261204C00512000", "QQQ", date(2026, 12, 4), "512", Right.CALL),
        ("O:IWM261130P00230500", "IWM", date(2026, 11, 30), "230.5", Right.PUT),
    ],
)
def test_option_ticker_when_round_tripped_then_identical(
    ticker: str, underlying: str, expiry: date, strike: str, right: Right
) -> None:
    contract = parse_option_ticker(ticker)
    assert contract == OptionContract(underlying, expiry, Decimal(strike), right)
    assert option_ticker(contract) == ticker


def test_option_ticker_when_adjusted_root_then_parsed_with_digit() -> None:
    contract = parse_option_ticker("O:AAPL1230616C00150000")
    assert contract.underlying == "AAPL1"
    assert contract.expiry == date(2023, 6, 16)
    assert option_ticker(contract) == "O:AAPL1230616C00150000"


@pytest.mark.parametrize(
    "bad", ["SPY261127C00600000", "O:SPY261327C00600000", "O:SPY261127X00600000", "O:"]
)
def test_option_ticker_when_malformed_then_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="ticker"):
        parse_option_ticker(bad)


def test_index_ticker_when_mapped_then_vix_prefixed_and_stocks_unchanged() -> None:
    assert to_polygon_ticker("VIX") == "I:VIX"
    assert to_polygon_ticker("SPY") == "SPY"
    assert to_polygon_ticker("I:VIX") == "I:VIX"
    assert from_polygon_ticker("I:VIX") == "VIX"
    assert from_polygon_ticker("SPY") == "SPY"
    assert from_polygon_ticker(to_polygon_ticker("VIX")) == "VIX"


# ---- aggregates and time zones -------------------------------------------------------------


def _agg(t: datetime, price: float) -> dict[str, Any]:
    return {"v": 100.0, "vw": price, "o": price, "c": price, "h": price, "l": price,
            "t": to_ms(t), "n": 3}  # fmt: skip


def test_parse_aggs_when_dst_ends_between_days_then_both_bars_at_930_new_york() -> None:
    friday = datetime(2026, 10, 30, 13, 30, tzinfo=UTC)  # 09:30 EDT (UTC-4)
    monday = datetime(2026, 11, 2, 14, 30, tzinfo=UTC)  # 09:30 EST (UTC-5)
    bars = parse_aggs("SPY", [_agg(monday, 2.0), _agg(friday, 1.0)])
    assert [t.isoformat() for t in bars.times] == [
        "2026-10-30T09:30:00-04:00",
        "2026-11-02T09:30:00-05:00",
    ]
    assert bars.times[0].utcoffset() == timedelta(hours=-4)
    assert bars.times[1].utcoffset() == timedelta(hours=-5)
    assert bars.close.tolist() == [1.0, 2.0]


def test_parse_aggs_when_daily_then_bar_time_is_session_open_across_dst() -> None:
    rows = [
        _agg(datetime(2026, 10, 30, tzinfo=NY), 1.0),  # Polygon: midnight New York
        _agg(datetime(2026, 11, 2, tzinfo=NY), 2.0),
        _agg(datetime(2026, 11, 27, tzinfo=NY), 3.0),  # early close: still opens 09:30
    ]
    bars = parse_aggs("SPY", rows, "1d")
    assert [t.isoformat() for t in bars.times] == [
        "2026-10-30T09:30:00-04:00",
        "2026-11-02T09:30:00-05:00",
        "2026-11-27T09:30:00-05:00",
    ]


def test_parse_aggs_when_rows_incomplete_then_dropped_and_index_volume_zero() -> None:
    t = datetime(2026, 11, 24, 9, 30, tzinfo=NY)
    rows: list[Any] = [
        {"o": 16.1, "h": 16.3, "l": 16.0, "c": 16.2, "t": to_ms(t)},  # index: no v/vw/n
        {"o": 16.2, "h": 16.4, "l": 16.1, "t": to_ms(t + timedelta(minutes=1))},  # no close
        {"c": 1.0},
        "garbage",
    ]
    bars = parse_aggs("VIX", rows)
    assert len(bars) == 1
    assert bars.volume.tolist() == [0.0]


def test_parse_aggs_when_massive_agg_models_then_same_bars() -> None:
    t = datetime(2026, 11, 24, 9, 31, tzinfo=NY)
    rows = [_agg(t, 600.5), _agg(t - timedelta(minutes=1), 600.1)]
    from_models = parse_aggs("SPY", [Agg.from_dict(r) for r in rows])
    from_dicts = parse_aggs("SPY", rows)
    assert from_models.times == from_dicts.times
    np.testing.assert_array_equal(from_models.close, from_dicts.close)


def test_time_conversions_when_round_tripped_then_exact() -> None:
    t = datetime(2026, 11, 2, 9, 30, 0, 123456, tzinfo=NY)
    assert ms_to_ny(to_ms(t)) == t.replace(microsecond=123000)
    assert to_ns(t) % 1000 == 0
    grid = session_minute_grid(date(2026, 11, 27))
    assert grid.shape == (210,)  # 09:30-13:00
    assert grid[1] - grid[0] == 60 * 10**9


# ---- quotes --------------------------------------------------------------------------------


def test_last_quote_at_when_reduced_to_minutes_then_never_a_later_quote() -> None:
    open_ = datetime(2026, 11, 24, 9, 30, tzinfo=NY)
    rows = [  # given newest first, as with order=desc
        {
            "sip_timestamp": to_ns(open_ + timedelta(seconds=130)),
            "bid_price": 1.3,
            "ask_price": 1.4,
        },
        {"sip_timestamp": to_ns(open_ + timedelta(seconds=45)), "bid_price": 1.1, "ask_price": 1.2},
        {"sip_timestamp": to_ns(open_ + timedelta(seconds=60)), "ask_price": 1.25},  # no bid
        {"sip_timestamp": to_ns(open_ + timedelta(seconds=5)), "bid_price": 1.0, "ask_price": 1.1},
        {"bid_price": 9.9, "ask_price": 9.9},  # no timestamp: dropped
    ]
    series = parse_quotes(rows)
    assert series.dropped == 1
    assert np.all(np.diff(series.sip_ns) > 0)
    grid = np.array([to_ns(open_ + timedelta(minutes=k)) for k in range(4)], dtype=np.int64)
    got = last_quote_at(series, grid)
    assert math.isnan(got.bid[0])  # nothing at or before 09:30:00
    assert got.quote_ns[0] == -1
    assert math.isnan(got.bid[1])  # the 09:31:00 quote itself (bid missing: not repaired)
    assert got.ask[1] == 1.25
    assert got.ask[2] == 1.25  # 09:32:10 is after 09:32:00: not visible yet
    assert got.quote_ns[2] == to_ns(open_ + timedelta(seconds=60))
    assert (got.bid[3], got.ask[3]) == (1.3, 1.4)


def test_last_quote_at_when_no_quotes_then_all_missing() -> None:
    got = last_quote_at(parse_quotes([]), np.array([1, 2, 3], dtype=np.int64))
    assert np.isnan(got.bid).all()
    assert (got.quote_ns == -1).all()


# ---- reference, previous close, last trade, market status ----------------------------------


def test_parse_contracts_when_pages_joined_then_expiries_without_adjusted_series() -> None:
    rows = (
        _load("contracts_SPY_2026-11-24_p1.json")["results"]
        + _load("contracts_SPY_2026-11-24_p2.json")["results"]
    )
    listed, issues = parse_contracts(rows)
    assert issues == []
    assert len(listed) == 25
    standard = [c for c in listed if c.standard]
    assert len(standard) == 24
    assert expiries_of(standard, DAY) == [
        date(2026, 11, 24),
        date(2026, 11, 25),
        date(2026, 11, 27),
        date(2026, 12, 18),
    ]
    assert expiries_of(standard, date(2026, 11, 26)) == [date(2026, 11, 27), date(2026, 12, 18)]


def test_parse_contracts_when_massive_models_or_broken_rows_then_parsed_or_reported() -> None:
    row = _load("contracts_SPY_2026-11-24_p1.json")["results"][0]
    listed, issues = parse_contracts([OptionsContract.from_dict(row), {"ticker": "junk"}, {}])
    assert [c.ticker for c in listed] == [row["ticker"]]
    assert len(issues) == 2


def test_parse_previous_close_when_body_then_day_and_close() -> None:
    prev = parse_previous_close(_load("prev_SPY.json"))
    assert prev is not None
    assert (prev.symbol, prev.day, prev.close) == ("SPY", date(2026, 11, 23), 600.91)
    assert parse_previous_close({"status": "OK", "resultsCount": 0}) is None


def test_parse_last_trade_and_index_value_when_bodies_then_prices() -> None:
    trade = parse_last_trade(_load("last_trade_SPY.json"))
    assert trade is not None
    assert trade[0] == 601.37
    assert trade[1].tzinfo is not None
    results = _load("snapshot_indices_VIX.json")["results"]
    assert parse_index_value(results, "VIX") == 16.43
    broken = [{"ticker": "I:VIX", "error": "NOT_FOUND", "message": "Ticker not found."}]
    assert parse_index_value(broken, "VIX") is None


def test_parse_market_status_when_dict_or_model_then_same_fields() -> None:
    body = _load("marketstatus_now.json")
    status = parse_market_status(body)
    assert status.is_open
    assert status.exchanges["nyse"] == "open"
    assert status.server_time == AT
    model = parse_market_status(MarketStatus.from_dict(body))
    assert (model.market, model.early_hours, model.after_hours) == ("open", False, False)
