"""``daily-backup``: dump the ledger, restore-verify the dump, record it, apply retention.

Runs every day (17:00 America/New_York), trading day or not: there is no calendar guard because a
backup is wanted whenever the ledger may have changed, and a quiet day costs one small file. What is
verified and why is documented in ``adapters/backup.py``.

A backup that fails verification is moved to ``<backup_dir>/rejected/``, recorded as failed in the
``backups`` table and the run ends Failed (so the UI and alerts see it); retention then does not
run. A failed dump is recorded too (no file is kept).
"""

from __future__ import annotations

from typing import Any

from prefect import State, flow, get_run_logger
from prefect.states import Failed

from tasks import backup as steps
from tasks.runtime import database_url as database_url_of


@flow(name="daily-backup", log_prints=False)
def daily_backup(
    db_url: str | None = None, backup_dir: str = "var/backups", keep_days: int = 14
) -> dict[str, Any] | State:
    """Back up the database at ``db_url`` (default $DTE_DATABASE_URL or var/dte.db) into
    ``backup_dir``, verify it by a scratch restore, keep ``keep_days`` days of backups."""
    if keep_days < 0:
        raise ValueError(f"keep_days must be >= 0, got {keep_days}")
    url = database_url_of(db_url)
    log = get_run_logger()
    try:
        taken = steps.take_backup(url, backup_dir)
    except Exception as exc:
        message = f"dump failed: {steps.failure_message(exc, url)}"
        try:
            steps.record_failed_dump(url, message)
        except Exception as record_exc:
            log.error(
                "could not record the failed backup: %s", steps.failure_message(record_exc, url)
            )
        return Failed(message=f"daily-backup: {message}")
    verification = steps.verify_backup(taken, url)
    outcome = steps.record_backup(taken, verification, url)
    if not outcome.ok:
        return Failed(
            message=(
                f"daily-backup: {taken.path.name} failed verification and was moved to "
                f"{outcome.path}: {verification.message}"
            )
        )
    pruned = steps.prune_backups(backup_dir, keep_days)
    return steps.summary(outcome, pruned)
