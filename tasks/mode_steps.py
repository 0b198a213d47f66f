"""Steps of the switch-mode flow: validate the target mode's blocks, check the IB account, record.

Account ids are sensitive: only masked ids (``DU****567``) reach logs, events and the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from adapters.ibkr.account import (
    AccountCheckError,
    check_account,
    is_paper_account,
    mode_account_problem,
)
from adapters.store import TradeStore
from blocks.registry import MissingBlockDocuments, ModeBlocks, load_mode_blocks
from core.calendar import NY
from core.models import TradingMode
from tasks.runtime import database_url


@dataclass(frozen=True, slots=True)
class Validation:
    ok: bool
    reasons: tuple[str, ...]
    account: str  # masked, "" when not checked


def _mask(account: str) -> str:
    return (
        account[:2] + "*" * max(0, len(account) - 5) + account[-3:] if len(account) > 5 else "***"
    )


@task(name="validate-target-mode", cache_policy=NO_CACHE)
def validate(target: TradingMode, timeout: float) -> Validation:
    """Every block of ``target`` exists and is complete; for testing/live the IB account fits."""
    try:
        blocks: ModeBlocks = load_mode_blocks(target, development_defaults=True)
    except MissingBlockDocuments as exc:
        return Validation(False, (str(exc),), "")
    problems = tuple(blocks.problems())
    if problems:
        return Validation(False, problems, "")
    if target is TradingMode.DEVELOPMENT:
        return Validation(True, ("development: simulator and paper broker, no account",), "")
    ib = blocks.ibkr
    assert ib.port is not None
    assert ib.client_id is not None
    try:
        check = check_account(ib.host, ib.port, ib.client_id, None, timeout=timeout)
    except AccountCheckError as exc:
        return Validation(False, (str(exc),), "")
    masked = ", ".join(check.masked())
    if (problem := mode_account_problem(target.value, check)) is not None:
        return Validation(False, (problem,), masked)
    expected = ib.account.get_secret_value() if ib.account is not None else ""
    if expected and expected not in check.accounts:
        return Validation(
            False,
            (f"the block names account {_mask(expected)} but IB manages {masked}",),
            masked,
        )
    kind = "paper" if all(is_paper_account(a) for a in check.accounts) else "live"
    return Validation(True, (f"IB reports {kind} account(s) {masked}",), masked)


@task(name="record-mode-change", cache_policy=NO_CACHE)
def record(
    db_url: str | None,
    before: TradingMode,
    target: TradingMode,
    who: str,
    why: str,
    approved: bool,
    status: str,
) -> int:
    store = TradeStore(database_url(db_url))
    try:
        store.migrate()
        return store.record_mode_change(
            datetime.now(tz=NY), before, target, who, why, approved, status
        )
    finally:
        store.dispose()


def emit_refused(before: TradingMode, target: TradingMode, who: str, reasons: list[str]) -> None:
    emit_event(
        event="dte.mode.refused",
        resource={
            "prefect.resource.id": f"dte.account.{before.value}",
            "dte.severity": "critical" if target is TradingMode.LIVE else "warning",
        },
        payload={"from": before.value, "to": target.value, "who": who, "reasons": reasons},
    )
