"""switch-mode: the only way the active mode (Prefect Variable ``dte-mode``) changes.

1. every block document of the target mode exists and is complete;
2. testing/live: connect to IB read-only and check the managed account (a paper account id
   starts with ``DU``: ``live`` refuses it, ``testing`` requires it; it must be the block's one);
3. live: a human approves in the Prefect UI (typed form, ``pause_flow_run``); no answer within
   the timeout -> refused (recorded; the run ends Failed, as every Prefect 3.9 pause timeout does);
4. the Variable is written and the change recorded with who/when/why in ``mode_changes``.
A refusal ends the run ``Completed(name="Refused")`` with the reasons and emits
``dte.mode.refused``; an applied change emits ``dte.mode.changed``.
"""

from __future__ import annotations

from typing import Any

from prefect import State, flow, get_run_logger, pause_flow_run
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from prefect.states import Completed

from blocks.registry import active_mode, set_active_mode
from core.models import TradingMode
from tasks import mode_steps


class LiveSwitchApproval(RunInput):
    """The form shown in the Prefect UI for a switch to live."""

    approve: bool = False
    approver: str = ""
    reason: str = ""


@flow(name="switch-mode", log_prints=False)
def switch_mode(
    target: str,
    who: str,
    why: str,
    db_url: str | None = None,
    approval_timeout_seconds: int = 1800,
    account_timeout_seconds: float = 10.0,
) -> dict[str, Any] | State:
    log = get_run_logger()
    to = TradingMode(target)
    if not who.strip() or not why.strip():
        raise ValueError("a mode change needs who and why")
    before = active_mode()  # read once
    checked = mode_steps.validate(to, account_timeout_seconds)

    def refuse(reasons: list[str], status: str = "refused") -> State:
        mode_steps.record(db_url, before, to, who, why, False, status)
        mode_steps.emit_refused(before, to, who, reasons)
        log.warning("switch %s -> %s refused: %s", before.value, to.value, "; ".join(reasons))
        return Completed(name="Refused", message="; ".join(reasons))

    if not checked.ok:
        return refuse(list(checked.reasons))
    approver = who
    if to is TradingMode.LIVE:
        summary = "\n".join(
            [
                f"## Switch {before.value} -> **live** (real money)",
                f"- requested by {who}: {why}",
                *[f"- {r}" for r in checked.reasons],
                "- approve only if the live blocks, the account and the limits are right",
            ]
        )
        try:
            answer = pause_flow_run(
                wait_for_input=LiveSwitchApproval.with_initial_data(description=summary),
                timeout=approval_timeout_seconds,
                poll_interval=2,
            )
        except FlowPauseTimeout:
            refuse(["no approval within the timeout"], status="expired")
            raise
        if not answer.approve:
            return refuse([f"rejected by {answer.approver or 'approver'}: {answer.reason}"])
        approver = answer.approver.strip() or "prefect-ui"
    set_active_mode(
        to, who=f"{who} (approved by {approver})" if to is TradingMode.LIVE else who, why=why
    )
    change_id = mode_steps.record(db_url, before, to, who, why, True, "applied")
    log.info("mode %s -> %s applied (%s)", before.value, to.value, "; ".join(checked.reasons))
    return {
        "from": before.value,
        "to": to.value,
        "account": checked.account,
        "approved_by": approver,
        "change_id": change_id,
    }
