"""Backtest parameters (validation, JSON form) and the results store."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.backtest_store import SCHEMA, BacktestStore, EquityRow, TradeRow
from core.calendar import NY
from core.models import RiskLimits
from tasks.backtest import BacktestParams, code_version, default_span


def test_params_when_valid_then_days_are_the_sessions_and_json_has_every_setting() -> None:
    p = BacktestParams(
        system="smart0dte",
        start=date(2026, 11, 25),
        end=date(2026, 11, 30),
        risk_overrides={"max_daily_loss": "2500", "max_open_positions": 4},
    )

    assert p.days() == [date(2026, 11, 25), date(2026, 11, 27), date(2026, 11, 30)]  # not 26th
    assert p.limits() == RiskLimits(max_daily_loss=Decimal("2500"), max_open_positions=4)
    data = json.loads(json.dumps(p.as_dict()))
    assert data["risk_limits"]["max_daily_loss"] == "2500"
    assert data["fill_fraction"] == "0.5"
    assert data["partial_fill_probability"] == 0.1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"start": date(2026, 11, 28), "end": date(2026, 11, 29)}, "no trading day"),
        ({"end": date(2026, 11, 20)}, "before start"),
        ({"source": "csv"}, "source must be"),
        ({"system": "spx"}, "system must be"),
        ({"risk_overrides": {"max_daly_loss": 1}}, "unknown risk limits: max_daly_loss"),
        ({"seed": -1}, "seed"),
        ({"fill_fraction": Decimal("0.2")}, "at least as strict"),
    ],
)
def test_params_when_invalid_then_value_error_naming_the_problem(
    changes: dict[str, object], message: str
) -> None:
    base: dict[str, object] = {
        "system": "smart0dte",
        "start": date(2026, 11, 23),
        "end": date(2026, 11, 24),
    }
    with pytest.raises(ValueError, match=message):
        BacktestParams(**{**base, **changes})  # type: ignore[arg-type]


def test_params_when_polygon_and_today_or_later_then_refused_as_not_yet_history() -> None:
    today = datetime.now(tz=NY).date()
    start, end = default_span(today)
    BacktestParams(system="smart0dte", start=start, end=end, source="polygon")  # completed days
    with pytest.raises(ValueError, match="completed days"):
        BacktestParams(system="smart0dte", start=start, end=today, source="polygon")


def test_default_span_when_friday_after_thanksgiving_then_five_sessions_before_it() -> None:
    assert default_span(date(2026, 11, 27)) == (date(2026, 11, 19), date(2026, 11, 25))


def test_code_version_when_in_the_repository_then_a_git_commit() -> None:
    version = code_version()

    assert len(version.removesuffix("-dirty")) == 40


def test_results_store_when_run_saved_then_read_back_with_trades_and_equity(
    tmp_path: Path,
) -> None:
    store = BacktestStore(f"sqlite:///{tmp_path / 'r.db'}")
    t0 = datetime(2026, 11, 24, 10, tzinfo=NY)
    try:
        for run_id, minute in (("a", 0), ("b", 1)):
            store.start_run(
                run_id,
                system="smart0dte",
                source="sim",
                seed=7,
                start_day=date(2026, 11, 24),
                end_day=date(2026, 11, 24),
                parameters={"x": Decimal("1.5")},
                code_version="abc",
                created_at=datetime(2026, 11, 27, 14, minute, tzinfo=UTC),
                ledger_url="sqlite:///l.db",
                report_dir="r",
            )
        trade = TradeRow(
            "p1", "smart0dte", "momentum", "SPY", "bull_call_debit SPY", 2, t0, t0, Decimal("1.1"),
            Decimal("1.6"), Decimal("5.2"), Decimal("94.8"), "take_profit",
        )  # fmt: skip
        store.save_trades("a", [trade])
        point = EquityRow(
            date(2026, 11, 24), "all", Decimal("100094.8"), Decimal("94.8"), Decimal("0"),
            Decimal("5.2"), 1,
        )  # fmt: skip
        store.save_equity("a", [point])
        store.finish_run("a", status="completed", finished_at=t0, metrics={"sharpe": None})

        assert [r.run_id for r in store.runs()] == ["b", "a"]  # newest first
        run = store.run("a")
        assert run is not None
        assert (run.status, run.metrics, run.parameters) == (
            "completed",
            {"sharpe": None},
            {"x": "1.5"},
        )
        assert store.trades("a") == [trade]
        assert store.equity("a") == [point]
        with pytest.raises(KeyError):
            store.finish_run("zz", status="failed", finished_at=t0)
    finally:
        store.dispose()


def test_results_store_when_schema_version_differs_then_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    BacktestStore(url).dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(SCHEMA.update().values(version="99"))
    engine.dispose()

    with pytest.raises(RuntimeError, match="schema version"):
        BacktestStore(url)
