"""switch-mode against a fake TWS wire server: DU refused for live, incomplete blocks refused,
an approved switch to live on a (fake) live account changes the Variable and is recorded."""

from __future__ import annotations

import threading
import time

import pytest

from tests.fixtures.fake_tws import FakeTWS

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def register(mode: str, port: int, account: str, polygon: bool = True) -> None:
    from blocks.registry import register_documents

    env = {
        f"DTE_{mode.upper()}_IBKR_HOST": "127.0.0.1",
        f"DTE_{mode.upper()}_IBKR_PORT": str(port),
        f"DTE_{mode.upper()}_IBKR_CLIENT_ID": "17",
        f"DTE_{mode.upper()}_IBKR_ACCOUNT": account,
    }
    if polygon:
        env[f"DTE_{mode.upper()}_POLYGON_API_KEY"] = "pk-test-not-a-real-key"
    register_documents(mode, env, replace=True)


@pytest.fixture(autouse=True)
def back_to_development():
    yield
    from blocks.registry import set_active_mode

    set_active_mode("development", who="test", why="restore")


def test_switch_mode_when_live_but_ib_reports_du_account_then_refused(tmp_path):
    from blocks.registry import active_mode
    from flows.mode import switch_mode

    with FakeTWS(accounts=["DU1234567"]) as tws:
        register("live", tws.port, "U7654321")
        state = switch_mode(
            target="live",
            who="ana",
            why="go live",
            db_url=f"sqlite:///{tmp_path / 'dte.db'}",
            account_timeout_seconds=5,
            return_state=True,
        )
    assert state.name == "Refused"
    assert "paper" in (state.message or "")
    assert "DU1234567" not in (state.message or "")  # account ids are masked
    assert active_mode().value == "development"
    from adapters.store import TradeStore

    store = TradeStore(f"sqlite:///{tmp_path / 'dte.db'}")
    assert [c.status for c in store.mode_changes()] == ["refused"]
    store.dispose()


def test_switch_mode_when_block_incomplete_then_refused_naming_missing_fields(tmp_path):
    from blocks.registry import active_mode
    from flows.mode import switch_mode

    with FakeTWS(accounts=["DU1234567"]) as tws:
        register("testing", tws.port, "DU1234567", polygon=False)
        state = switch_mode(
            target="testing",
            who="ana",
            why="paper trade",
            db_url=f"sqlite:///{tmp_path / 'dte.db'}",
            return_state=True,
        )
        assert tws.connections == 0  # refused before any connection
    assert state.name == "Refused"
    assert "api_key" in (state.message or "")
    assert active_mode().value == "development"


def test_switch_mode_when_testing_on_du_account_then_applied_without_approval(tmp_path):
    from blocks.registry import active_mode
    from flows.mode import switch_mode

    with FakeTWS(accounts=["DU1234567"]) as tws:
        register("testing", tws.port, "DU1234567")
        out = switch_mode(
            target="testing", who="ana", why="paper trade", db_url=f"sqlite:///{tmp_path / 'x.db'}"
        )
        assert tws.connections >= 1
    assert out["to"] == "testing"
    assert active_mode().value == "testing"


def test_switch_mode_when_live_approved_on_live_account_then_variable_changes_and_recorded(
    tmp_path,
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )
    from prefect.flow_runs import resume_flow_run

    from adapters.store import TradeStore
    from blocks.registry import active_mode
    from flows.mode import switch_mode

    url = f"sqlite:///{tmp_path / 'dte.db'}"
    result: dict = {}
    with FakeTWS(accounts=["U7654321"]) as tws:
        register("live", tws.port, "U7654321")
        runner = threading.Thread(
            target=lambda: result.update(
                state=switch_mode(
                    target="live",
                    who="ana",
                    why="approved go-live",
                    db_url=url,
                    approval_timeout_seconds=120,
                    return_state=True,
                )
            ),
            daemon=True,
        )
        runner.start()
        paused = None
        deadline = time.monotonic() + 90
        while paused is None and time.monotonic() < deadline:
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=["switch-mode"])),
                    flow_run_filter=FlowRunFilter(
                        state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Paused"]))
                    ),
                )
            paused = next((r for r in runs if r.parameters.get("target") == "live"), None)
            time.sleep(0.5)
        assert paused is not None, "switch-mode never paused for approval"
        assert active_mode().value == "development"  # nothing changes before the approval
        resume_flow_run(paused.id, run_input={"approve": True, "approver": "risk-officer"})
        runner.join(timeout=90)
    state = result["state"]
    assert state.is_completed()
    assert state.name != "Refused"
    assert active_mode().value == "live"
    store = TradeStore(url)
    change = store.mode_changes()[-1]
    assert (change.to_mode.value, change.status, change.approved) == ("live", "applied", True)
    assert change.who == "ana"
    store.dispose()
