"""Prefect events from the trading day: ``dte.risk.<kind>`` and ``dte.order.<status>``.

Every risk event the ledger records becomes one Prefect event (automations turn the critical ones
into alerts); every order result becomes ``dte.order.filled|cancelled|rejected``. Publishing reads
the day's risk events from the ledger after each step, so every code path that records one (the
order path, the risk state machine, reconciliation, the kill switch) is covered without each of
them knowing about Prefect. Payloads carry no secrets and no account numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prefect.events import emit_event

from tasks.execution import ExecutionResult
from tasks.runtime import Runtime

RESOURCE = "dte.account"


@dataclass
class Publisher:
    """Remembers what this run already published so each ledger event is emitted once."""

    mode: str
    seen: set[tuple[str, str, str]] = field(default_factory=set)

    def prime(self, rt: Runtime) -> None:
        """Mark the day's existing risk events as published (an earlier run emitted them)."""
        self.seen.update(_key(e) for e in rt.store.risk_events(day=rt.session.day))

    def risk(self, rt: Runtime) -> int:
        sent = 0
        for e in rt.store.risk_events(day=rt.session.day):
            key = _key(e)
            if key in self.seen:
                continue
            self.seen.add(key)
            emit_event(
                event=f"dte.risk.{e.kind}",
                resource={
                    "prefect.resource.id": f"{RESOURCE}.{self.mode}",
                    "prefect.resource.name": f"dte-trader {self.mode}",
                    "dte.system": e.system.value if e.system else "account",
                    "dte.severity": e.severity,
                },
                payload={"message": e.message, "at": e.at.isoformat(), "severity": e.severity},
            )
            sent += 1
        return sent

    def orders(self, results: Iterable[ExecutionResult]) -> None:
        for r in results:
            key = ("order", r.client_order_id, r.status.value)
            if key in self.seen:
                continue
            self.seen.add(key)
            payload: dict[str, Any] = {
                "status": r.status.value,
                "filled_quantity": r.filled_quantity,
                "fill_price": None if r.fill_price is None else str(r.fill_price),
                "reason": r.reason,
                "placed": r.placed,
            }
            emit_event(
                event=f"dte.order.{r.status.value.lower()}",
                resource={"prefect.resource.id": f"dte.order.{r.client_order_id}"},
                related=[
                    {
                        "prefect.resource.id": f"{RESOURCE}.{self.mode}",
                        "prefect.resource.role": "account",
                    }
                ],
                payload=payload,
            )


def emit_halt(mode: str, reason: str) -> None:
    """The kill switch on a closed market (no runtime): one ``dte.risk.kill_switch`` event."""
    emit_event(
        event="dte.risk.kill_switch",
        resource={"prefect.resource.id": f"{RESOURCE}.{mode}", "dte.severity": "critical"},
        payload={"message": f"{reason} (market closed: flatten at the next open)"},
    )


def _key(e: Any) -> tuple[str, str, str]:
    return (e.at.isoformat(), e.kind, e.message)
