"""Alerts reach a local webhook receiver; flows emit dte.risk.* / dte.order.* events; health-check."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.calendar import NY

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


class Receiver:
    """A local HTTP server that records every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, needle: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in list(self.bodies):
                if needle in json.dumps(body):
                    return body
            time.sleep(0.2)
        raise AssertionError(f"no alert containing {needle!r}; got {self.bodies}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    from blocks.alerts import ensure_alerts

    rec = Receiver()
    ensure_alerts(rec.url)
    yield rec
    rec.server.shutdown()


def test_alert_when_critical_risk_event_emitted_then_webhook_receives_it(receiver):
    from prefect.events import emit_event

    emit_event(
        event="dte.risk.state_halted",
        resource={"prefect.resource.id": "dte.account.development", "dte.severity": "critical"},
        payload={"message": "unit: HALTED by test"},
    )
    body = receiver.wait_for("unit: HALTED by test")
    assert "dte.risk.state_halted" in body["subject"]


def test_alert_when_info_risk_event_then_not_sent(receiver):
    from prefect.events import emit_event

    emit_event(
        event="dte.risk.intent_denied",
        resource={"prefect.resource.id": "dte.account.development", "dte.severity": "info"},
        payload={"message": "unit: info only"},
    )
    emit_event(
        event="dte.risk.kill_switch",
        resource={"prefect.resource.id": "dte.account.development", "dte.severity": "critical"},
        payload={"message": "unit: marker after info"},
    )
    receiver.wait_for("unit: marker after info")
    assert not any("unit: info only" in json.dumps(b) for b in receiver.bodies)


def test_alert_when_flow_run_fails_then_webhook_receives_it(receiver):
    from prefect import flow

    @flow(name="dte-always-fails")
    def always_fails() -> None:
        raise RuntimeError("boom for the alert test")

    state = always_fails(return_state=True)
    assert state.is_failed()
    body = receiver.wait_for("dte-always-fails")
    assert "Failed" in body["subject"]


def test_intraday_when_day_halts_then_risk_and_order_events_emitted_and_alerted(receiver, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    from flows.smart0dte import smart0dte_intraday

    url = f"sqlite:///{tmp_path / 'dte.db'}"
    smart0dte_intraday(day=date(2026, 11, 27), seed=7, db_url=url)  # seed 7 halts at 10:36
    receiver.wait_for("dte.risk.state_halted")

    def names(prefix: str) -> set[str]:
        with get_client(sync_client=True) as client:
            page = client.read_events(
                filter=EventFilter(event=EventNameFilter(prefix=[prefix])), limit=50
            )
        return {e.event for e in page.events}

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        risk, orders = names("dte.risk."), names("dte.order.")
        if {
            "dte.risk.state_halted",
            "dte.risk.daily_loss_alert",
        } <= risk and "dte.order.filled" in orders:
            break
        time.sleep(0.5)
    assert {"dte.risk.state_reducing", "dte.risk.state_halted", "dte.risk.daily_loss_alert"} <= risk
    assert "dte.order.filled" in orders


def test_health_check_when_no_worker_pool_then_unhealthy_event_and_alert(receiver, tmp_path):
    from flows.health import health_check

    state = health_check(
        db_url=f"sqlite:///{tmp_path / 'dte.db'}",
        work_pool="no-such-pool",
        guard=False,
        return_state=True,
    )
    assert state.is_completed()
    assert state.name == "Unhealthy"
    assert "no-such-pool" in (state.message or "")
    receiver.wait_for("no-such-pool")


def test_health_check_when_worker_not_checked_then_healthy(tmp_path):
    from flows.health import health_check

    # after the close (16:45): the loop probe has nothing to check, whatever the wall time is
    out = health_check(
        db_url=f"sqlite:///{tmp_path / 'dte.db'}",
        check_worker=False,
        guard=False,
        at=datetime(2026, 11, 24, 16, 45, tzinfo=NY),
    )
    assert out["healthy"], out
    assert {p["probe"] for p in out["probes"]} == {
        "database",
        "cache",
        "market data",
        "broker",
        "intraday loop",
    }
