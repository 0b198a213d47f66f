"""Prefect tasks of the ``daily-backup`` flow: one ``adapters.backup`` step each.

What verification compares (and why) is documented in ``adapters/backup.py``: the row counts of
every table read inside the dumped snapshot against a scratch restore of the file, plus the sha256
taken right after the dump. Nothing is cached (``NO_CACHE``): every run must dump and verify anew.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from adapters import backup
from adapters.backup import BackupFile, BackupOutcome, Verification
from adapters.store import TradeStore


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:  # outside a run (plain function call in a test)
        return logging.getLogger("dte.backup")


def failure_message(exc: BaseException, db_url: str) -> str:
    """One line for a failed step, with the database password (if any) masked."""
    text = str(exc) if isinstance(exc, backup.BackupError) else f"{type(exc).__name__}: {exc}"
    return backup.redact(text, db_url)


@task(name="backup-dump", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def take_backup(db_url: str, backup_dir: str) -> BackupFile:
    """Dump the database (SQLite online backup API / pg_dump custom format) into backup_dir."""
    taken = backup.dump(db_url, backup_dir)
    _logger().info(
        "dumped %s to %s (%d bytes, sha256 %s...)",
        backup.mask_url(db_url),
        taken.path,
        taken.size_bytes,
        taken.sha256[:12],
    )
    return taken


@task(name="backup-verify", cache_policy=NO_CACHE)
def verify_backup(taken: BackupFile, db_url: str) -> Verification:
    """Restore into a scratch database and compare row counts with the dumped snapshot."""
    verification = backup.verify(taken, db_url)
    if verification.ok:
        _logger().info("%s: %s", taken.path.name, verification.message)
    else:
        _logger().error("%s failed verification: %s", taken.path.name, verification.message)
    return verification


def _artifact(outcome: BackupOutcome) -> None:
    rows = "\n".join(f"| {table} | {n} |" for table, n in sorted(outcome.row_counts.items()))
    create_markdown_artifact(
        key="daily-backup",
        markdown=(
            f"# Backup {outcome.status.upper()}\n\n"
            f"- file: `{outcome.path}`\n- taken at: {outcome.taken_at.isoformat()}\n"
            f"- size: {outcome.size_bytes} bytes\n- sha256: `{outcome.sha256}`\n"
            f"- {outcome.message}\n\n| table | rows |\n|---|---:|\n{rows}\n"
        ),
        description=f"daily-backup {outcome.status}",
    )


@task(name="backup-record", cache_policy=NO_CACHE)
def record_backup(taken: BackupFile, verification: Verification, db_url: str) -> BackupOutcome:
    """Keep a verified backup, move a failed one to rejected/; record it in ``backups``."""
    store = TradeStore(db_url)
    try:
        store.migrate()  # after the dump: the backup holds the schema as it was found
        outcome = backup.settle(taken, verification, store)
    finally:
        store.dispose()
    _artifact(outcome)
    return outcome


@task(name="backup-record-failure", cache_policy=NO_CACHE)
def record_failed_dump(db_url: str, message: str) -> BackupOutcome:
    """Record a backup attempt whose dump failed (no file was kept)."""
    store = TradeStore(db_url)
    try:
        store.migrate()
        return backup.record_failure(store, db_url, message)
    finally:
        store.dispose()


@task(name="backup-prune", cache_policy=NO_CACHE)
def prune_backups(backup_dir: str, keep_days: int) -> list[str]:
    """Delete backups older than keep_days (never the newest valid one of each kind)."""
    deleted = backup.prune(backup_dir, keep_days)
    for path in deleted:
        _logger().info("retention: deleted %s", path)
    return [str(p) for p in deleted]


def summary(outcome: BackupOutcome, pruned: list[str]) -> dict[str, Any]:
    """The flow's result: plain values only."""
    return {
        "status": outcome.status,
        "backup_id": outcome.backup_id,
        "path": str(outcome.path) if outcome.path else None,
        "kind": outcome.kind,
        "taken_at": outcome.taken_at.isoformat(),
        "size_bytes": outcome.size_bytes,
        "sha256": outcome.sha256,
        "row_counts": outcome.row_counts,
        "message": outcome.message,
        "pruned": pruned,
    }
