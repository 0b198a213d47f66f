"""``daily-backup`` through Prefect (temporary API): completes and records ok; a backup failing
verification ends the run Failed, is moved to rejected/ and recorded failed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters import backup
from adapters.store import TradeStore
from core.models import TradingState

pytestmark = [pytest.mark.usefixtures("prefect_api")]

T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def _ledger(url: str) -> TradeStore:
    store = TradeStore(url)
    store.migrate()
    store.set_trading_state(TradingState.ACTIVE, "start", T0, manual=False)
    store.record_risk_event("loss_limit", "warning", "75%", T0)
    return store


def test_daily_backup_when_ledger_populated_then_completed_recorded_ok_and_old_pruned(
    trade_db_url: str, tmp_path: Path
) -> None:
    from flows.backup import daily_backup

    store = _ledger(trade_db_url)
    folder = tmp_path / "backups"
    suffix = ".sqlite3" if trade_db_url.startswith("sqlite") else ".dump"
    old = folder / backup.backup_name(
        backup.url_kind(trade_db_url), datetime.now(UTC) - timedelta(days=30)
    )
    old.parent.mkdir(parents=True)
    old.write_bytes(b"an old backup")
    try:
        state = daily_backup(
            db_url=trade_db_url, backup_dir=str(folder), keep_days=14, return_state=True
        )

        assert state.is_completed(), state.message
        result = state.result()
        assert result["status"] == "ok"
        assert result["pruned"] == [str(old)]
        kept = backup.valid_backups(folder)
        assert [e.path for e in kept] == [Path(result["path"])]
        assert kept[0].path.suffix == suffix
        (row,) = store.backups()
        assert (row.status, row.verified, row.path) == ("ok", True, result["path"])
        assert row.row_counts["trading_state"] == 1
        assert row.row_counts["risk_events"] == 1
        assert "restore-verified" in row.message
    finally:
        store.dispose()


def test_daily_backup_when_verification_fails_then_failed_state_file_rejected_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.backup import daily_backup
    from tasks import backup as backup_tasks

    url = f"sqlite:///{tmp_path / 'dte.db'}"
    store = _ledger(url)
    real_dump = backup.dump

    def damaged_dump(db_url: str, backup_dir: str) -> backup.BackupFile:
        taken = real_dump(db_url, backup_dir)
        data = taken.path.read_bytes()
        taken.path.write_bytes(data[: len(data) // 3])  # a disk fault right after the dump
        return taken

    monkeypatch.setattr(backup_tasks.backup, "dump", damaged_dump)
    folder = tmp_path / "backups"
    try:
        state = daily_backup(db_url=url, backup_dir=str(folder), return_state=True)

        assert state.is_failed()
        assert "failed verification" in (state.message or "")
        assert "rejected" in (state.message or "")
        assert backup.valid_backups(folder) == []
        assert len(list((folder / "rejected").iterdir())) == 1
        (row,) = store.backups()
        assert (row.status, row.verified) == ("failed", False)
    finally:
        store.dispose()


def test_daily_backup_when_dump_fails_then_failed_state_and_failure_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.backup import daily_backup
    from tasks import backup as backup_tasks

    quick_retry = backup_tasks.take_backup.with_options(retry_delay_seconds=0)
    monkeypatch.setattr(backup_tasks, "take_backup", quick_retry)

    url = f"sqlite:///{tmp_path / 'dte.db'}"
    store = _ledger(url)
    folder = tmp_path / "backups"
    folder.parent.mkdir(exist_ok=True)
    folder.write_text("a file where the backup folder should be")
    try:
        state = daily_backup(db_url=url, backup_dir=str(folder), return_state=True)

        assert state.is_failed()
        assert "dump failed" in (state.message or "")
        (row,) = store.backups()
        assert (row.status, row.path, row.verified) == ("failed", "", False)
    finally:
        store.dispose()


def test_backup_cli_run_when_ok_then_exit_zero_else_exit_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    from cli.backup import backup_app
    from tasks import backup as backup_tasks

    monkeypatch.setattr("cli.main._prefect_env", lambda home: None)  # keep the test API
    quick_retry = backup_tasks.take_backup.with_options(retry_delay_seconds=0)
    monkeypatch.setattr(backup_tasks, "take_backup", quick_retry)
    app = typer.Typer()
    app.add_typer(backup_app, name="backup")
    url = f"sqlite:///{tmp_path / 'dte.db'}"
    _ledger(url).dispose()
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")

    ok = CliRunner().invoke(app, ["backup", "run", "--db", url, "--dir", str(tmp_path / "b")])
    failed = CliRunner().invoke(app, ["backup", "run", "--db", url, "--dir", str(not_a_dir)])

    assert ok.exit_code == 0, ok.output
    assert "backup ok: " in ok.output
    assert "restore-verified" in ok.output
    assert failed.exit_code == 1
    assert "backup FAILED" in failed.output
