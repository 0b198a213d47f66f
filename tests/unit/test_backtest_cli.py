"""``dte backtest`` (the Typer sub-app, mounted here as ``cli.main`` will mount it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from adapters.backtest_store import BacktestStore
from cli import backtest as cli_backtest
from cli.backtest import backtest_app
from tasks import backtest as backtest_module

app = typer.Typer()


@app.command()
def other() -> None:  # a second command, so "backtest" is a sub-command as in cli.main
    """Placeholder."""


app.add_typer(backtest_app, name="backtest")
runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables at a terminal's width instead of the 80 columns of a captured stream."""
    monkeypatch.setattr(cli_backtest, "console", Console(width=200))


def test_backtest_cli_when_one_sim_day_then_runs_prints_metrics_and_lists_the_stored_run(
    tmp_path: Path,
) -> None:
    args = ["backtest", "--system", "smart0dte", "--start", "2026-11-27", "--end", "2026-11-27"]
    args += ["--source", "sim", "--seed", "7", "--out", str(tmp_path)]
    args += ["--smart", "loop_interval_seconds=600", "--risk", "max_daily_loss=2000"]

    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    assert "total return" in result.output
    assert "tearsheet" in result.output
    store = BacktestStore(f"sqlite:///{tmp_path / 'backtests.db'}")
    try:
        (run,) = store.runs()
        assert run.status == "completed"
        assert run.parameters["risk_limits"]["max_daily_loss"] == "2000"
        assert run.parameters["smart_overrides"] == {"loop_interval_seconds": 600}
    finally:
        store.dispose()
    assert (tmp_path / run.run_id / "tearsheet.md").exists()

    listed = runner.invoke(app, ["backtest", "list", "--out", str(tmp_path)])
    shown = runner.invoke(app, ["backtest", "show", run.run_id, "--out", str(tmp_path)])

    assert listed.exit_code == 0, listed.output
    assert "completed" in listed.output
    assert shown.exit_code == 0, shown.output
    assert "completed" in shown.output
    assert "Sharpe" in shown.output


def test_backtest_cli_when_mag7_not_in_build_then_exit_2_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backtest_module, "mag7_available", lambda: False)

    result = runner.invoke(
        app,
        [
            "backtest",
            "--system",
            "both",
            "--start",
            "2026-11-23",
            "--end",
            "2026-11-24",
            "--out",
            str(tmp_path),
        ],
    )

    assert result.exit_code == 2
    assert "not available in this build" in " ".join(result.output.split())
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--start and --end are required"),
        (["--start", "2026-11-28", "--end", "2026-11-29"], "no trading day"),
        (["--start", "2026-11-23", "--end", "2026-11-24", "--fill-fraction", "0.3"], "strict"),
        (["--start", "2026-11-23", "--end", "2026-11-24", "--system", "spx"], "system must be"),
        (["--start", "2026-11-23", "--end", "2026-11-24", "--risk", "nope"], "KEY=VALUE"),
    ],
)
def test_backtest_cli_when_bad_arguments_then_exit_2_with_a_message(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    result = runner.invoke(app, ["backtest", "--out", str(tmp_path), *extra])

    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
