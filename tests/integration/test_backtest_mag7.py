"""``--system both`` on a Mag7 entry day: Mag7's checks and weekly scan interleaved with the
Smart-0DTE minutes on one clock, one ledger, one account-wide risk gate; results per system."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from core.models import SystemName
from tasks import backtest as backtest_module
from tasks.backtest import BacktestParams, BacktestUnavailable, run_backtest

FRIDAY = date(2026, 11, 13)  # a Mag7 entry day


def test_backtest_when_both_systems_on_entry_day_then_mag7_scans_and_results_split_by_system(
    tmp_path: Path,
) -> None:
    params = BacktestParams(
        system="both",
        start=FRIDAY,
        end=FRIDAY,
        seed=3,
        smart_overrides={"loop_interval_seconds": 600},
    )

    result = run_backtest(params, out_dir=tmp_path, record_accesses=True)

    (day,) = result.days
    assert day.mag7_checks == 4  # 10:00, 12:00, 14:00, 15:30
    assert day.flat is True  # Smart-0DTE's close-out; Mag7 positions may stay open
    assert set(day.systems) == {"smart0dte", "mag7"}
    assert {r.system for r in result.equity} == {"all", "smart0dte", "mag7"}
    assert set(result.metrics["systems"]) == {"smart0dte", "mag7"}
    mag7_rows = [t for t in result.trades if t.system == SystemName.MAG7.value]
    assert mag7_rows  # the weekly scan entered (seed 3: two stopped out at 12:00)
    assert all(t.signal_kind == "ensemble" for t in mag7_rows)
    assert result.data_accesses["atm_iv_history"] > 0  # the IV history, never today's close early
    account = next(r for r in result.equity if r.system == "all")
    parts = [r for r in result.equity if r.system != "all"]
    capital = params.capital
    assert account.equity - capital == sum(r.equity - capital for r in parts)


def test_backtest_when_mag7_missing_from_the_build_then_mag7_and_both_refused_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backtest_module, "mag7_available", lambda: False)

    for system in ("mag7", "both"):
        with pytest.raises(BacktestUnavailable, match="not available in this build"):
            BacktestParams(system=system, start=FRIDAY, end=FRIDAY)
    assert BacktestParams(system="smart0dte", start=FRIDAY, end=FRIDAY).systems == (
        SystemName.SMART0DTE,
    )


def test_backtest_when_mag7_spread_carried_then_day_close_mark_is_next_day_baseline(
    tmp_path: Path,
) -> None:
    from datetime import timedelta

    from sqlalchemy import select

    from adapters.store import PositionMarkRecord, TradeStore
    from core.calendar import next_trading_day, session

    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    params = BacktestParams(system="mag7", start=FRIDAY, end=FRIDAY, seed=5)

    run_backtest(params, out_dir=tmp_path, db_url=ledger)

    store = TradeStore(ledger)
    try:
        carried = store.open_positions(SystemName.MAG7)
        assert carried, "seed 5 carries a Mag7 spread into the next session"
        ids = [p.position_id for p in carried]
        assert set(store.baseline_marks(ids, next_trading_day(FRIDAY))) == set(ids)
        # taken at the session's last minute (after the 15:30 check's mark, which it replaces)
        with store.engine.connect() as conn:
            stamps = {row.at for row in conn.execute(select(PositionMarkRecord))}
        assert stamps == {session(FRIDAY).close - timedelta(minutes=1)}
    finally:
        store.dispose()


def test_backtest_when_ledger_reads_served_from_memory_then_same_results_as_reading_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backtest's ledger is exclusive (its hot reads come from memory until written): over
    four days with a Mag7 carry, take-profit/stop/risk exits and three HALTs (seed 5), the
    results equal a run whose every read goes to the database."""
    from adapters.store import TradeStore

    params = BacktestParams(
        system="both",
        start=FRIDAY,
        end=date(2026, 11, 18),
        seed=5,
        smart_overrides={"loop_interval_seconds": 300},
    )
    kept: list[backtest_module.Backtest] = []
    memo = run_backtest(params, out_dir=tmp_path / "memo", keep=kept.append)
    assert kept[0].store._memo is not None and kept[0].store._memo.hits > 0

    def plain(url: str, exclusive: bool = False) -> TradeStore:
        return TradeStore(url)  # every read from the database

    monkeypatch.setattr(backtest_module, "TradeStore", plain)
    direct = run_backtest(params, out_dir=tmp_path / "direct")

    assert len(memo.trades) > 10
    assert {t.system for t in memo.trades} == {"smart0dte", "mag7"}
    assert [(t.position_id, t.closed_at, t.pnl, t.exit_reason) for t in memo.trades] == [
        (t.position_id, t.closed_at, t.pnl, t.exit_reason) for t in direct.trades
    ]
    assert [(d.state, d.orders, d.equity) for d in memo.days] == [
        (d.state, d.orders, d.equity) for d in direct.days
    ]
    assert memo.metrics == direct.metrics
