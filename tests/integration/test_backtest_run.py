"""Whole backtest days on the seeded simulator: the same steps as the flows, results stored and
published, no look-ahead, identical reruns, cash settlement, and the ledgers it refuses.

The Smart-0DTE loop runs every 5 minutes here (``loop_interval_seconds`` is a setting like any
other) to keep the file short; the CLI and flow default to the strategy's 60 s.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.backtest_store import BacktestStore
from adapters.store import TradeStore
from core.calendar import NY, session
from core.chains import combo_quote
from core.models import IntentStatus, PositionStatus, SignalKind, SystemName, TradingState
from core.orders import open_intent
from core.spreads import bull_call_debit
from tasks import trading
from tasks.backtest import Backtest, BacktestParams, BacktestResult, run_backtest
from tasks.backtest_market import LookAheadError, intrinsic_value
from tasks.execution import execute_intent
from tests.builders import c, intent

DAY = date(2026, 11, 24)
PARAMS = BacktestParams(
    system="smart0dte",
    start=DAY,
    end=DAY,
    seed=7,
    smart_overrides={"loop_interval_seconds": 300},
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[BacktestResult, Backtest]:
    out = tmp_path_factory.mktemp("bt")
    kept: list[Backtest] = []
    result = run_backtest(PARAMS, out_dir=out, record_accesses=True, keep=kept.append)
    return result, kept[0]


def _trades(result: BacktestResult) -> list[tuple[object, ...]]:
    return [
        (
            t.position_id,
            t.quantity,
            t.opened_at,
            t.closed_at,
            t.entry_price,
            t.exit_price,
            t.commissions,
            t.pnl,
            t.exit_reason,
        )
        for t in result.trades
    ]


def test_backtest_when_sim_day_then_trades_through_the_order_path_and_ends_flat(
    run: tuple[BacktestResult, Backtest],
) -> None:
    result, _ = run
    (day,) = result.days

    assert day.flat is True
    assert day.iterations == 72  # 09:45 .. 15:40 every 5 minutes
    assert result.trades
    assert result.open_at_end == 0
    store = TradeStore(f"sqlite:///{result.report_dir / 'ledger.db'}")
    try:
        assert store.open_positions() == []
        assert all(f.commission > 0 for f in store.fills())
        kinds = {e.kind for e in store.risk_events()}
        assert "eod_flat" in kinds
        assert "reconciliation_mismatch" not in kinds
        statuses = {s.status for s in store.intents()}
        assert IntentStatus.FILLED in statuses
        assert store.daily_pnl(DAY)  # the EOD report's row, as the eod-report flow writes it
    finally:
        store.dispose()
    assert day.equity == Decimal("100000") + sum(t.pnl for t in result.trades)


def test_backtest_when_done_then_run_trades_and_equity_stored_with_parameters_and_version(
    run: tuple[BacktestResult, Backtest],
) -> None:
    result, _ = run
    store = BacktestStore(result.results_url)
    try:
        stored = store.run(result.run_id)
        assert stored is not None
        assert stored.status == "completed"
        assert (stored.system, stored.source, stored.seed) == ("smart0dte", "sim", 7)
        assert (stored.start_day, stored.end_day) == (DAY, DAY)
        assert stored.code_version and stored.code_version != "unknown"
        assert stored.parameters["smart_overrides"] == {"loop_interval_seconds": 300}
        assert stored.parameters["fill_fraction"] == "0.5"
        assert stored.metrics == result.metrics
        assert [t.position_id for t in store.trades(result.run_id)] == [
            t.position_id for t in result.trades
        ]
        (point,) = store.equity(result.run_id)
        assert point.equity == result.days[0].equity
    finally:
        store.dispose()


def test_backtest_when_done_then_tearsheet_folder_has_chart_csv_metrics_and_markdown(
    run: tuple[BacktestResult, Backtest],
) -> None:
    result, _ = run
    folder = result.report_dir

    assert folder.parent.name == folder.parent.name and folder.name == result.run_id
    assert (folder / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (folder / "trades.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(result.trades)
    assert {r["system"] for r in rows} == {"smart0dte"}
    md = (folder / "tearsheet.md").read_text(encoding="utf-8")
    for heading in ("## Metrics", "## Per signal type", "## Monthly returns", "Sharpe", "Sortino"):
        assert heading in md
    overall = result.metrics["overall"]
    for key in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "win_rate",
                "profit_factor", "average_win", "average_loss", "exposure", "commissions"):  # fmt: skip
        assert key in overall
    assert overall["trades"] == len(result.trades)
    assert overall["commissions"] == pytest.approx(float(sum(t.commissions for t in result.trades)))
    assert set(result.metrics["signals"]) <= {k.value for k in SignalKind}
    assert 0 < overall["exposure"] <= 1


def test_backtest_when_day_replayed_through_recording_guard_then_no_request_reaches_past_now(
    run: tuple[BacktestResult, Backtest],
) -> None:
    _, bt = run
    accesses = bt.market.accesses
    methods = {a.method for a in accesses}

    assert {"bars", "chain", "last_price", "prior_close", "expiries"} <= methods
    assert len(accesses) > 500
    assert [a for a in accesses if a.ahead] == []
    assert bt.market.violations == []
    # the signals see bars up to the tick only: the observe step's bars end exactly at now
    bars = [a for a in accesses if a.method == "bars"]
    assert all(a.asked_for <= a.now for a in bars)
    assert any(a.asked_for == a.now for a in bars)


def test_backtest_when_run_twice_with_same_inputs_then_identical_trades_and_metrics(
    run: tuple[BacktestResult, Backtest], tmp_path: Path
) -> None:
    first, _ = run

    second = run_backtest(PARAMS, out_dir=tmp_path)

    assert second.run_id != first.run_id
    assert _trades(second) == _trades(first)
    assert second.metrics == first.metrics
    assert [d.equity for d in second.days] == [d.equity for d in first.days]


def test_backtest_when_a_step_asks_for_the_next_minute_then_run_fails_and_is_marked_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = trading.observe

    def peeking(rt, now):  # a signal that would use the next bar
        rt.market.last_price("SPY", now + timedelta(minutes=1))
        return original(rt, now)

    monkeypatch.setattr(trading, "observe", peeking)

    with pytest.raises(LookAheadError, match="look-ahead: last_price"):
        run_backtest(PARAMS, out_dir=tmp_path)

    store = BacktestStore(f"sqlite:///{tmp_path / 'backtests.db'}")
    try:
        (failed,) = store.runs()
        assert failed.status == "failed"
        assert "look-ahead" in failed.message
    finally:
        store.dispose()


def test_settle_expired_when_position_left_open_at_close_then_cash_settled_at_intrinsic(
    tmp_path: Path,
) -> None:
    bt = Backtest(PARAMS, out_dir=tmp_path)
    try:
        rt = bt.runtime(DAY)
        sess = session(DAY)
        bt.clock.sleep_until(datetime(2026, 11, 24, 11, 0, tzinfo=NY))
        now = bt.clock.now()
        snap = bt.market.chain("SPY", DAY, now)
        calls = sorted(
            (abs(float(snap.strikes[i]) - snap.spot), i)
            for i in range(len(snap))
            if snap.is_call[i]
        )
        atm = snap.contract(calls[0][1])
        wing = next(
            snap.contract(i)
            for i in range(len(snap))
            if snap.is_call[i] and snap.contract(i).strike == atm.strike + 2
        )
        spread = bull_call_debit(atm, wing)
        quote = combo_quote({("SPY", DAY): snap}, spread)
        it = open_intent(SystemName.SMART0DTE, "manual-1", spread, 2, quote, now, "test entry")
        it = replace(it, limit_price=it.worst_price)  # marketable: fills at once
        walk = rt.smart.walk
        opened = execute_intent(it, bt.broker, bt.store, bt.clock, walk, SignalKind.MOMENTUM)
        assert opened.status is IntentStatus.FILLED
        bt.clock.sleep_until(sess.close)  # the day ends with the spread still open

        assert bt.settle_expired(rt) == 1

        pos = bt.store.position(it.client_order_id)
        assert pos.status is PositionStatus.CLOSED
        spot = bt.raw_market.last_price("SPY", sess.close)
        assert pos.exit_price == intrinsic_value(spread, spot)
        assert pos.exit_commission == 0
        assert pos.closed_at == sess.close
        assert bt.broker.positions() == []
        assert trading.reconcile(rt) == []
        assert [e.kind for e in bt.store.risk_events()] == ["expiry_settlement"]
    finally:
        bt.close()


def test_backtest_when_ledger_is_the_trading_ledger_or_not_empty_then_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trading_db = f"sqlite:///{tmp_path / 'trading.db'}"
    monkeypatch.setenv("DTE_DATABASE_URL", trading_db)
    with pytest.raises(ValueError, match="never writes to the trading ledger"):
        Backtest(PARAMS, out_dir=tmp_path / "a", db_url=trading_db)

    used = f"sqlite:///{tmp_path / 'used.db'}"
    store = TradeStore(used)
    store.migrate()
    store.save_intent(intent(bull_call_debit(c(590, expiry=DAY), c(592, expiry=DAY))))
    store.dispose()
    with pytest.raises(ValueError, match="not empty"):
        Backtest(PARAMS, out_dir=tmp_path / "b", db_url=used)
    assert not (tmp_path / "a").exists()  # refused before anything was written


@pytest.mark.parametrize("manual", [False, True])
def test_backtest_day_when_previous_session_ended_halted_then_reset_unless_manual(
    tmp_path: Path, manual: bool
) -> None:
    params = replace(PARAMS, smart_overrides={"loop_interval_seconds": 600})
    bt = Backtest(params, out_dir=tmp_path)
    try:
        before = datetime(2026, 11, 23, 15, 0, tzinfo=NY)
        bt.store.set_trading_state(TradingState.HALTED, "risk: daily loss", before, manual=manual)

        day = bt.run_day(DAY)

        row = bt.store.trading_state()
        assert row is not None
        opened = [p for p in bt.store.positions() if p.opened_at.astimezone(NY).date() == DAY]
        if manual:  # a kill switch holds until a human resets it
            assert day.state == "HALTED"
            assert opened == []
        else:  # the session start resets an automatic HALT: a fresh risk state every day
            assert opened
            assert any("start: reset HALTED" in r for r in _state_reasons(bt))
    finally:
        bt.close()


def _state_reasons(bt: Backtest) -> list[str]:
    from sqlalchemy import select

    from adapters.store import TradingStateRecord

    with bt.store.engine.connect() as conn:
        return [r.reason for r in conn.execute(select(TradingStateRecord))]
