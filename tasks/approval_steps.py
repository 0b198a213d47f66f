"""Ledger writes of the approval flow (a task, so each decision shows in the run's history)."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from adapters.store import TradeStore
from core.calendar import NY
from tasks.runtime import database_url


@task(name="record-approval-decision", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def record_decision(
    db_url: str | None, approval_id: int, decision: str, who: str, reason: str
) -> str:
    """Store the decision; if one was already taken (e.g. expired by the loop), keep that one."""
    store = TradeStore(database_url(db_url))
    try:
        try:
            row = store.update_approval(approval_id, decision, who, datetime.now(tz=NY), reason)
            return row.decision
        except ValueError:
            rows = [a for a in store.approvals() if a.id == approval_id]
            return rows[0].decision if rows else decision
    finally:
        store.dispose()
