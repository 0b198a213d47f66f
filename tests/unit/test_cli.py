"""The `dte` commands that need no Prefect: status and reset (in-process, Typer's runner)."""

from datetime import datetime

from typer.testing import CliRunner

from adapters.store import TradeStore
from cli.main import app
from core.calendar import NY
from core.models import TradingState

runner = CliRunner()


def test_reset_when_halted_then_active_and_recorded(tmp_path):
    url = f"sqlite:///{tmp_path / 'dte.db'}"
    store = TradeStore(url)
    store.migrate()
    store.set_trading_state(
        TradingState.HALTED,
        "error failsafe",
        datetime(2026, 11, 20, 11, 0, tzinfo=NY),
        manual=False,
    )
    result = runner.invoke(app, ["reset", "--reason", "broker fixed", "--db", url])
    assert result.exit_code == 0, result.output
    assert "was HALTED" in result.output
    row = store.trading_state()
    assert row is not None
    assert row.state is TradingState.ACTIVE
    assert any(e.kind == "manual_reset" for e in store.risk_events())
    store.dispose()


def test_status_when_empty_ledger_then_shows_active_and_no_positions(tmp_path):
    url = f"sqlite:///{tmp_path / 'dte.db'}"
    result = runner.invoke(app, ["status", "--db", url, "--date", "2026-12-01"])
    assert result.exit_code == 0, result.output
    assert "ACTIVE" in result.output
    assert "open positions" in result.output


def test_status_when_bad_date_then_usage_error(tmp_path):
    result = runner.invoke(
        app, ["status", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--date", "1/2/26"]
    )
    assert result.exit_code == 2
    assert "YYYY-MM-DD" in result.output
