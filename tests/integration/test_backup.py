"""Backups on SQLite and PostgreSQL: dump, restore-verify, rejection, retention, restore CLI.

Also the repository methods of the operations tables (backups, approvals, mode changes).
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from adapters import backup
from adapters.backup import BackupError, CorruptBackupError
from adapters.store import TradeStore
from cli.backup import backup_app
from core.models import (
    BrokerOrder,
    Direction,
    Fill,
    OrderStatus,
    Signal,
    SignalKind,
    SystemName,
    TradingMode,
    TradingState,
)
from core.spreads import bull_call_debit
from tests.builders import T0, c, intent, position

runner = CliRunner()


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(backup_app, name="backup")
    return app


def signal(n: int) -> Signal:
    return Signal(
        signal_id=f"sig-{n}",
        system=SystemName.SMART0DTE,
        kind=SignalKind.MOMENTUM,
        underlying="SPY",
        direction=Direction.BULLISH,
        confidence=0.7,
        at=T0 + timedelta(minutes=n),
        reason="backup test",
    )


def populate(store: TradeStore) -> None:
    """A small ledger touching every table: signal, intent, order + events, fills, positions,
    P&L, risk events, trading state, approval, mode change."""
    spread = bull_call_debit(c(590), c(595))
    it = intent(spread, qty=2)
    store.record_signal(signal(1))
    store.record_signal(signal(2))
    store.save_intent(it)
    order = BrokerOrder(
        "ib-1", it.client_order_id, it.combo_side, spread, 2, Decimal("1.00"), OrderStatus.WORKING
    )
    store.record_order(order, it.system, T0, "submit")
    filled = dataclasses.replace(order, status=OrderStatus.FILLED, filled_quantity=2)
    store.record_order(filled, it.system, T0 + timedelta(seconds=5), "fill")
    for n in range(2):
        store.record_fill(
            Fill(it.client_order_id, "ib-1", f"x-{n}", 1, Decimal("1.02"), Decimal("1.3"), T0),
            it.system,
        )
    store.open_position(position(spread, "1.02", qty=2, pid="pos-1"), it.client_order_id)
    store.open_position(position(spread, "0.95", qty=1, pid="pos-2"), "coid-2")
    store.record_pnl_mark(SystemName.SMART0DTE, T0, Decimal("0"), Decimal("12.5"))
    store.upsert_daily_pnl(
        T0.date(), SystemName.SMART0DTE, Decimal("0"), Decimal("12.5"), Decimal("2.6"), 1
    )
    store.record_risk_event("loss_limit", "warning", "75% of daily loss", T0)
    store.record_risk_event("broker_error", "critical", "disconnected", T0, SystemName.MAG7)
    store.set_trading_state(TradingState.ACTIVE, "start", T0, manual=False)
    store.record_approval(it.client_order_id, it.system, "T2", T0)
    store.record_mode_change(
        T0, TradingMode.DEVELOPMENT, TradingMode.TESTING, "ops", "paper run", True, "applied"
    )
    store.record_iv("AAPL", T0.date(), 0.27, "simulator", T0)
    store.record_position_marks(T0.date(), T0, {"p1": Decimal("1.25")})


@pytest.fixture
def ledger(trade_db_url: str) -> Iterator[TradeStore]:
    store = TradeStore(trade_db_url)
    store.migrate()
    populate(store)
    try:
        yield store
    finally:
        store.dispose()


@pytest.fixture
def restore_target(trade_db_url: str, tmp_path: Path) -> Iterator[str]:
    """A URL next to ``trade_db_url`` (same backend) where nothing exists yet."""
    url = make_url(trade_db_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored' / 'dte.db'}"
        return
    import psycopg

    name = f"dte_test_{uuid.uuid4().hex}"
    target = url.set(database=name)
    try:
        yield target.render_as_string(hide_password=False)
    finally:
        admin = url.set(drivername="postgresql", database="postgres")
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


# -- round trip -------------------------------------------------------------------------------


def test_backup_when_ledger_populated_then_verified_and_restores_to_same_row_counts(
    ledger: TradeStore, trade_db_url: str, restore_target: str, tmp_path: Path
) -> None:
    before = ledger.table_row_counts()
    assert all(before[t] > 0 for t in before if t != "backups")
    folder = tmp_path / "backups"

    taken = backup.dump(trade_db_url, folder)
    verification = backup.verify(taken, trade_db_url)
    outcome = backup.settle(taken, verification, ledger)

    assert verification.ok, verification.message
    assert verification.restored_counts == taken.source_counts
    assert {t: n for t, n in taken.source_counts.items() if t in before} == before
    assert taken.source_counts["alembic_version"] == 1
    assert outcome.ok
    assert outcome.path == taken.path
    assert [e.path for e in backup.valid_backups(folder)] == [taken.path]
    (row,) = ledger.backups()
    assert (row.status, row.verified, row.path) == ("ok", True, str(taken.path))
    assert row.sha256 == backup.sha256_of(taken.path)
    assert row.size_bytes == taken.path.stat().st_size
    assert row.row_counts == taken.source_counts

    result = backup.restore(taken.path, restore_target)

    restored = TradeStore(restore_target)
    try:
        assert restored.table_row_counts() == before  # the backups row came after the dump
        assert restored.schema_revision() == ledger.schema_revision()
        assert restored.signals() == ledger.signals()
        assert restored.fills() == ledger.fills()
        assert restored.positions() == ledger.positions()
        assert restored.risk_events() == ledger.risk_events()
    finally:
        restored.dispose()
    assert result.previous_copy is None
    assert result.counts == taken.source_counts


def test_dump_when_writers_busy_then_counts_are_those_of_the_dumped_snapshot(
    ledger: TradeStore, trade_db_url: str, tmp_path: Path
) -> None:
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        n = 100
        while not stop.is_set():
            ledger.record_signal(signal(n))
            written.append(n)
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        taken = backup.dump(trade_db_url, tmp_path / "backups")
    finally:
        stop.set()
        thread.join()
    verification = backup.verify(taken, trade_db_url)

    assert verification.ok, verification.message
    assert 2 <= taken.source_counts["signals"] <= 2 + len(written)
    assert ledger.table_row_counts()["signals"] == 2 + len(written)


def test_dump_when_same_second_twice_then_second_name_gets_a_sequence_number(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'dte.db'}"
    store = TradeStore(url)
    store.migrate()
    store.dispose()
    at = datetime(2026, 12, 1, 22, 0, 0, tzinfo=UTC)

    first = backup.dump(url, tmp_path / "b", now=at)
    second = backup.dump(url, tmp_path / "b", now=at)

    assert first.path.name == "dte-20261201T220000Z.sqlite3"
    assert second.path.name == "dte-20261201T220000Z-1.sqlite3"
    assert [e.path for e in backup.valid_backups(tmp_path / "b")] == [first.path, second.path]
    assert backup.parse_backup_name(second.path.name) == (at, "sqlite")


# -- corrupted backups ------------------------------------------------------------------------


@pytest.mark.parametrize("damage", [truncate, flip], ids=["truncated", "flipped"])
def test_verify_when_backup_damaged_then_failed_rejected_and_recorded_failed(
    ledger: TradeStore, trade_db_url: str, tmp_path: Path, damage
) -> None:
    folder = tmp_path / "backups"
    taken = backup.dump(trade_db_url, folder)
    damage(taken.path)

    verification = backup.verify(taken, trade_db_url)
    outcome = backup.settle(taken, verification, ledger)

    assert not verification.ok
    assert "sha256 changed since the dump" in verification.message
    if damage is truncate:
        assert "restore into a scratch database failed" in verification.message
    rejected = folder / "rejected" / taken.path.name
    assert outcome.status == "failed"
    assert outcome.path == rejected
    assert rejected.exists()
    assert not taken.path.exists()
    assert backup.valid_backups(folder) == []
    (row,) = ledger.backups()
    assert (row.status, row.verified, row.path) == ("failed", False, str(rejected))
    assert "rejected" in row.message
    assert "sha256" in row.message


def test_verify_when_file_damaged_before_hashing_then_scratch_restore_catches_it(
    ledger: TradeStore, trade_db_url: str, tmp_path: Path
) -> None:
    taken = backup.dump(trade_db_url, tmp_path / "backups")
    truncate(taken.path)
    rehashed = dataclasses.replace(taken, sha256=backup.sha256_of(taken.path))

    verification = backup.verify(rehashed, trade_db_url)

    assert not verification.ok
    assert "sha256" not in verification.message
    assert "restore into a scratch database failed" in verification.message


def test_verify_when_restored_counts_differ_from_source_then_failed_with_table_named(
    ledger: TradeStore, trade_db_url: str, tmp_path: Path
) -> None:
    taken = backup.dump(trade_db_url, tmp_path / "backups")
    claimed = dataclasses.replace(taken, source_counts={**taken.source_counts, "fills": 99})

    verification = backup.verify(claimed, trade_db_url)

    assert not verification.ok
    assert "fills: 99 rows in the source, 2 restored" in verification.message


# -- retention --------------------------------------------------------------------------------

NOW = datetime(2026, 12, 20, 22, 0, tzinfo=UTC)


def touch(folder: Path, days_ago: float, kind: str = "sqlite", sub: str = "") -> Path:
    path = folder / sub / backup.backup_name(kind, NOW - timedelta(days=days_ago))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_prune_when_backups_older_than_keep_days_then_deleted_and_recent_kept(
    tmp_path: Path,
) -> None:
    old = [touch(tmp_path, d) for d in (40, 15, 14.01)]
    kept = [touch(tmp_path, d) for d in (13.99, 1, 0)]
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("keep me")

    deleted = backup.prune(tmp_path, keep_days=14, now=NOW)

    assert sorted(deleted) == sorted(old)
    assert [e.path for e in backup.valid_backups(tmp_path)] == kept
    assert unrelated.exists()


def test_prune_when_every_backup_is_old_then_newest_of_each_kind_kept(tmp_path: Path) -> None:
    sqlite_files = [touch(tmp_path, d) for d in (60, 30, 20)]
    pg_files = [touch(tmp_path, d, "postgresql") for d in (50, 25)]

    backup.prune(tmp_path, keep_days=14, now=NOW)

    assert [e.path for e in backup.valid_backups(tmp_path)] == [pg_files[-1], sqlite_files[-1]]


def test_prune_when_old_rejected_and_partial_files_then_deleted_too(tmp_path: Path) -> None:
    old_rejected = touch(tmp_path, 20, sub="rejected")
    new_rejected = touch(tmp_path, 2, sub="rejected")
    partial = touch(tmp_path, 20)
    partial = partial.rename(partial.with_name(partial.name + ".partial"))
    newest = touch(tmp_path, 1)

    deleted = backup.prune(tmp_path, keep_days=14, now=NOW)

    assert sorted(deleted) == sorted([old_rejected, partial])
    assert new_rejected.exists()
    assert newest.exists()


def test_prune_when_keep_days_negative_then_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep_days"):
        backup.prune(tmp_path, keep_days=-1)


# -- failures and secrets ---------------------------------------------------------------------


def test_dump_when_postgres_unreachable_then_error_masks_password_and_leaves_no_file(
    tmp_path: Path,
) -> None:
    url = "postgresql://dte:s3cr3t-pw@127.0.0.1:1/dte"

    with pytest.raises(BackupError) as caught:
        backup.dump(url, tmp_path)

    assert "s3cr3t-pw" not in str(caught.value)
    assert "***" in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    assert "s3cr3t-pw" not in backup.mask_url(url)
    assert backup.redact("password s3cr3t-pw refused", url) == "password *** refused"


def test_dump_when_sqlite_file_missing_or_in_memory_then_error_and_nothing_created(
    tmp_path: Path,
) -> None:
    with pytest.raises(BackupError, match="does not exist"):
        backup.dump(f"sqlite:///{tmp_path / 'nope.db'}", tmp_path / "b")
    with pytest.raises(BackupError, match="in-memory"):
        backup.dump("sqlite://", tmp_path / "b")

    assert not (tmp_path / "nope.db").exists()
    assert list((tmp_path / "b").iterdir()) == []


# -- restore CLI ------------------------------------------------------------------------------


def test_restore_cli_when_file_corrupted_then_refused_nonzero_and_database_unchanged(
    ledger: TradeStore, trade_db_url: str, tmp_path: Path
) -> None:
    taken = backup.dump(trade_db_url, tmp_path / "backups")
    truncate(taken.path)
    before = ledger.table_row_counts()

    result = runner.invoke(
        cli(), ["backup", "restore", str(taken.path), "--db", trade_db_url, "--yes"]
    )

    assert result.exit_code != 0
    assert "refused" in result.output
    assert "corrupted" in result.output
    assert "nothing was changed" in result.output
    assert ledger.table_row_counts() == before
    assert not list(tmp_path.rglob("*.restore-*"))  # no staged copy left behind


def test_restore_cli_when_not_a_backup_then_refused_nonzero(tmp_path: Path) -> None:
    junk = tmp_path / "dte-20261201T220000Z.sqlite3"
    junk.write_text("this is not a database")

    result = runner.invoke(
        cli(), ["backup", "restore", str(junk), "--db", f"sqlite:///{tmp_path / 'x.db'}", "-y"]
    )

    assert result.exit_code == 1
    assert "neither a SQLite database nor a pg_dump custom archive" in result.output
    assert not (tmp_path / "x.db").exists()


def test_restore_cli_when_confirmed_then_database_replaced_previous_kept_counts_printed(
    ledger: TradeStore, trade_db_url: str, tmp_path: Path
) -> None:
    taken = backup.dump(trade_db_url, tmp_path / "backups")
    before = ledger.table_row_counts()
    ledger.record_signal(signal(50))  # written after the backup: the restore drops it
    ledger.dispose()  # like stopping the worker: no connection to the old file stays open

    result = runner.invoke(
        cli(), ["backup", "restore", str(taken.path), "--db", trade_db_url], input="y\n"
    )

    assert result.exit_code == 0, result.output
    assert "Replace the database" in result.output
    assert "rows after restore" in result.output
    assert "the previous database was kept as" in result.output
    assert ledger.table_row_counts() == before
    previous = list(tmp_path.rglob("*pre-restore-*"))
    assert len(previous) == 1


def test_restore_cli_when_not_confirmed_then_aborted_and_unchanged(
    ledger: TradeStore, trade_db_url: str, tmp_path: Path
) -> None:
    taken = backup.dump(trade_db_url, tmp_path / "backups")
    ledger.record_signal(signal(50))
    before = ledger.table_row_counts()

    result = runner.invoke(
        cli(), ["backup", "restore", str(taken.path), "--db", trade_db_url], input="n\n"
    )

    assert result.exit_code == 1
    assert "aborted: nothing changed" in result.output
    assert ledger.table_row_counts() == before
    assert not list(tmp_path.rglob("*pre-restore-*"))


def test_restore_when_current_sqlite_database_damaged_then_restored_and_damaged_copy_kept(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'dte.db'}"
    store = TradeStore(url)
    store.migrate()
    populate(store)
    before = store.table_row_counts()
    store.dispose()
    taken = backup.dump(url, tmp_path / "b")
    truncate(tmp_path / "dte.db")  # the live ledger is lost

    result = backup.restore(taken.path, url, now=NOW)

    assert result.previous_copy == tmp_path / "dte.db.pre-restore-20261220T220000Z"
    assert result.previous_copy.stat().st_size < taken.size_bytes  # the damaged bytes, kept
    store = TradeStore(url)
    try:
        assert store.table_row_counts() == before
    finally:
        store.dispose()


def test_restore_when_backup_kind_differs_from_target_then_error_before_connecting(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'dte.db'}"
    store = TradeStore(url)
    store.migrate()
    store.dispose()
    taken = backup.dump(url, tmp_path / "b")

    with pytest.raises(BackupError, match="sqlite backup but the target is postgresql"):
        backup.restore(taken.path, "postgresql://nobody:pw@127.0.0.1:1/dte")


def test_stage_restore_when_revision_unknown_then_corrupt_backup_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dte.db'}"
    store = TradeStore(url)
    store.migrate()
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    store.dispose()
    taken = backup.dump(url, tmp_path / "b")

    with (
        pytest.raises(CorruptBackupError, match="revision '9999'"),
        backup.stage_restore(taken.path, f"sqlite:///{tmp_path / 'other.db'}"),
    ):
        pass


# -- operations tables ------------------------------------------------------------------------


def test_record_backup_when_ok_but_not_verified_then_value_error(store: TradeStore) -> None:
    with pytest.raises(ValueError, match="verified"):
        store.record_backup(
            at=T0,
            url_kind="sqlite",
            path="p",
            size_bytes=1,
            sha256="s",
            verified=False,
            row_counts={},
            status="ok",
        )
    with pytest.raises(ValueError, match="url_kind"):
        store.record_backup(
            at=T0,
            url_kind="mysql",
            path="p",
            size_bytes=1,
            sha256="s",
            verified=True,
            row_counts={},
            status="ok",
        )
    assert store.backups() == []


def test_backups_when_several_then_newest_first_and_limited(store: TradeStore) -> None:
    for n in range(3):
        store.record_backup(
            at=T0 + timedelta(days=n),
            url_kind="sqlite",
            path=f"p{n}",
            size_bytes=2**40,
            sha256="s",
            verified=True,
            row_counts={"signals": n},
            status="ok",
        )

    rows = store.backups(limit=2)

    assert [r.path for r in rows] == ["p2", "p1"]
    assert rows[0].row_counts == {"signals": 2}
    assert rows[0].size_bytes == 2**40
    assert rows[0].at == T0 + timedelta(days=2)


def test_update_approval_when_pending_then_decided_and_same_decision_idempotent(
    store: TradeStore,
) -> None:
    first = store.record_approval("coid-1", SystemName.MAG7, "T3", T0, "large size")
    store.record_approval("coid-2", SystemName.SMART0DTE, "T2", T0 + timedelta(days=1))

    decided = store.update_approval(first, "approve", "alice", T0 + timedelta(minutes=3))
    again = store.update_approval(first, "approve", "bob", T0 + timedelta(minutes=9))

    assert decided == again
    assert (decided.decision, decided.decided_by, decided.reason) == (
        "approve",
        "alice",
        "large size",
    )
    assert decided.decided_at == T0 + timedelta(minutes=3)
    assert [a.client_order_id for a in store.approvals(day=T0.date())] == ["coid-1"]
    assert [a.decision for a in store.approvals()] == ["approve", "pending"]
    assert store.approvals(client_order_id="coid-2")[0].decided_at is None
    with pytest.raises(ValueError, match="already decided"):
        store.update_approval(first, "reject", "bob", T0 + timedelta(minutes=9))
    with pytest.raises(ValueError, match="decision"):
        store.update_approval(first, "pending", "bob", T0)
    with pytest.raises(KeyError):
        store.update_approval(12345, "reject", "bob", T0)


def test_record_mode_change_when_recorded_then_listed_oldest_first(store: TradeStore) -> None:
    store.record_mode_change(
        T0 + timedelta(hours=1),
        TradingMode.TESTING,
        TradingMode.LIVE,
        "ops",
        "go",
        False,
        "refused",
    )
    store.record_mode_change(
        T0, TradingMode.DEVELOPMENT, TradingMode.TESTING, "ops", "paper", True, "applied"
    )

    rows = store.mode_changes()

    assert [(r.from_mode, r.to_mode, r.approved, r.status) for r in rows] == [
        (TradingMode.DEVELOPMENT, TradingMode.TESTING, True, "applied"),
        (TradingMode.TESTING, TradingMode.LIVE, False, "refused"),
    ]
    assert rows[0].at == T0
