"""approve-entry: one short flow run per T2/T3 intent, paused for a typed human decision.

The trading loop never waits: it records the request, starts this flow in a background thread,
and reads the decision from the ledger on a later iteration. The approver answers in the Prefect
UI (the paused run shows the signal, structure, max loss and reasons) or with
``resume_flow_run(run_id, run_input={...})``. No answer within the timeout (0DTE 5 min) raises
``FlowPauseTimeout``: the decision is recorded as ``expired`` first, then the run ends Failed (a
Prefect 3.9 pause timeout always fails the run), which is what "expired" looks like in the UI.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from prefect import flow, get_run_logger, pause_flow_run
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput

from core.approvals import ApprovalTier
from core.calendar import NY
from core.models import OrderIntent
from tasks.approval_steps import record_decision
from tasks.runtime import Runtime

log = logging.getLogger("dte.approvals")


class EntryApproval(RunInput):
    """The form shown in the Prefect UI."""

    approve: bool = False
    reason: str = ""
    approver: str = ""


@flow(name="approve-entry", log_prints=False)
def approve_entry(
    approval_id: int,
    client_order_id: str,
    tier: str,
    summary: str,
    db_url: str | None = None,
    timeout_seconds: int = 300,
    poll_interval: int = 2,
) -> str:
    """Pause for a decision on one intent; record approve / reject / expired in the ledger."""
    logger = get_run_logger()
    logger.info("awaiting %s approval for %s (%d s)", tier, client_order_id, timeout_seconds)
    try:
        answer = pause_flow_run(
            wait_for_input=EntryApproval.with_initial_data(description=summary, approve=False),
            timeout=timeout_seconds,
            poll_interval=poll_interval,
        )
    except FlowPauseTimeout:
        record_decision(db_url, approval_id, "expired", "dte-trader", "no answer in time")
        raise
    decision = "approve" if answer.approve else "reject"
    reason = answer.reason.strip()
    if decision == "approve" and ApprovalTier(tier).needs_reason and not reason:
        decision, reason = "reject", "T3 approval needs a reason; none given"
    who = answer.approver.strip() or "prefect-ui"
    return record_decision(db_url, approval_id, decision, who, reason)


def approval_requester(
    db_url: str | None, timeout_seconds: int
) -> Callable[[OrderIntent, int, ApprovalTier, str], None]:
    """A requester for ``Runtime.approval_requester``: one background approve-entry run each."""

    def request(intent: OrderIntent, approval_id: int, tier: ApprovalTier, summary: str) -> None:
        name = f"approve {intent.spread.underlying} {tier.value} {datetime.now(tz=NY):%H%M%S}"

        def run() -> None:
            try:
                approve_entry.with_options(flow_run_name=name)(
                    approval_id=approval_id,
                    client_order_id=intent.client_order_id,
                    tier=tier.value,
                    summary=summary,
                    db_url=db_url,
                    timeout_seconds=timeout_seconds,
                )
            except FlowPauseTimeout:
                log.info("approval for %s expired", intent.client_order_id)
            except Exception:
                log.exception("approval flow for %s failed", intent.client_order_id)

        threading.Thread(target=run, name=f"approval-{approval_id}", daemon=True).start()

    return request


def attach_approvals(rt: Runtime, approvals: bool | None, timeout: timedelta) -> None:
    """Approvals for a run: ``approvals`` None keeps the mode's setting (on in live); when on,
    T2/T3 entries go to a human through one approve-entry run each, expiring after ``timeout``.

    A password is never put into flow parameters (the API stores them): without one in the URL
    the URL is passed on, otherwise the approval run resolves ``$DTE_DATABASE_URL`` itself.
    """
    if approvals is not None:
        rt.approvals_enabled = approvals
    if rt.approvals_enabled:
        url = rt.store.engine.url
        rt.approval_requester = approval_requester(
            url.render_as_string(hide_password=False) if url.password is None else None,
            int(timeout.total_seconds()),
        )
