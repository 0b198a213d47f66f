"""Alerts: a webhook notification block and the automations that use it.

Automations (all send through the ``dte-alerts`` webhook block):
* ``dte: flow run failed or crashed``: any ``prefect.flow-run.Failed`` / ``Crashed`` event;
* ``dte: critical risk event``: any ``dte.risk.*`` event whose resource has severity critical
  (state changes to REDUCING/HALTED, kill switch, reconciliation mismatch, book not flat);
* ``dte: unhealthy``: ``dte.health.unhealthy`` from the health-check flow.

``ensure_alerts`` is idempotent: it overwrites the block and replaces automations of the same name.
The webhook URL may embed a token, so it is never logged or returned.
"""

from __future__ import annotations

import contextlib
from typing import Any, cast
from uuid import UUID

from prefect.automations import Automation
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture

WEBHOOK_BLOCK = "dte-alerts"

_RULES: list[dict[str, Any]] = [
    {
        "name": "dte: flow run failed or crashed",
        "expect": {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
        "match": {"prefect.resource.id": "prefect.flow-run.*"},
        "subject": "dte-trader: flow run {{ flow_run.name }} {{ flow_run.state.name }}",
        "body": "{{ flow.name }} / {{ flow_run.name }}: {{ flow_run.state.message }}",
    },
    {
        "name": "dte: critical risk event",
        "expect": {"dte.risk.*"},
        "match": {"prefect.resource.id": "dte.account.*", "dte.severity": "critical"},
        "subject": "dte-trader risk: {{ event.event }}",
        "body": "{{ event.payload.message }}",
    },
    {
        "name": "dte: unhealthy",
        "expect": {"dte.health.unhealthy"},
        "match": {"prefect.resource.id": "dte.account.*"},
        "subject": "dte-trader unhealthy",
        "body": "{{ event.payload.failed }}",
    },
]


def ensure_alerts(webhook_url: str) -> list[str]:
    """Create/replace the webhook block and the automations; returns the automation names."""
    block = CustomWebhookNotificationBlock(
        name=WEBHOOK_BLOCK,
        url=webhook_url,
        method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
        headers=None,
        cookies=None,
    )
    block_id = cast(UUID, block.save(WEBHOOK_BLOCK, overwrite=True))
    names = []
    for rule in _RULES:
        with contextlib.suppress(ValueError):  # ValueError: no automation of that name yet
            cast(Automation, Automation.read(name=rule["name"])).delete()
        Automation(
            name=rule["name"],
            trigger=EventTrigger(
                expect=rule["expect"],
                match=rule["match"],
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_id, subject=rule["subject"], body=rule["body"]
                )
            ],
        ).create()
        names.append(rule["name"])
    return names
