"""Block documents per mode and the active-mode Variable against a Prefect API (test harness).

The secrets test runs every path a block value can take (registration output, ``dte blocks show``,
flow logs, artifacts, events, a failed state's message, the REST API) and asserts that no secret
value appears in any of them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blocks.registry import (
    MODE_VARIABLE,
    MODES,
    MissingBlockDocuments,
    RegistrationError,
    active_mode,
    load_mode_blocks,
    register_documents,
    register_types,
    set_active_mode,
)
from blocks.settings import BLOCK_CLASSES, DEFAULT_DATABASE_URL
from core.models import TradingMode

pytestmark = pytest.mark.usefixtures("prefect_api")

runner = CliRunner()

LIVE_SECRETS = {
    "account": "U9999999",
    "polygon": "pg-SECRET-4321",
    "openai": "sk-test-SECRET-1234",
    "db_password": "pw-SECRET-5678",
    "redis_password": "redis-SECRET-1357",
    "influx_token": "influx-SECRET-8765",
}
TESTING_SECRETS = {"account": "DU7777777", "polygon": "pg-SECRET-TESTING-2468"}
ALL_SECRETS = (*LIVE_SECRETS.values(), *TESTING_SECRETS.values())
MASK = "**********"


def _live_toml(path: Path) -> Path:
    s = LIVE_SECRETS
    path.write_text(
        f"""
[live.ibkr]
host = "127.0.0.1"
port = 4001
client_id = 21
account = "{s["account"]}"
read_only = true

[live.polygon]
api_key = "{s["polygon"]}"

[live.openai]
api_key = "{s["openai"]}"
model = "gpt-4o-mini"
daily_token_budget = 50000

[live.storage]
database_url = "postgresql+psycopg://dte:{s["db_password"]}@127.0.0.1:5432/dte_live"
redis_url = "redis://:{s["redis_password"]}@127.0.0.1:6379/8"
influx_url = "http://127.0.0.1:8086"
influx_org = "dte"
influx_bucket = "dte-live"
influx_token = "{s["influx_token"]}"

[live.trading]
max_daily_loss = 800
approvals_enabled = true

[live.trading.smart0dte_overrides]
confidence_threshold = 0.7
"""
    )
    return path


def _testing_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTE_TESTING_IBKR_HOST", "10.1.2.3")
    monkeypatch.setenv("DTE_TESTING_IBKR_PORT", "4002")
    monkeypatch.setenv("DTE_TESTING_IBKR_CLIENT_ID", "11")
    monkeypatch.setenv("DTE_TESTING_IBKR_ACCOUNT", TESTING_SECRETS["account"])
    monkeypatch.setenv("DTE_TESTING_IBKR_READ_ONLY", "false")
    monkeypatch.setenv("DTE_TESTING_POLYGON_API_KEY", TESTING_SECRETS["polygon"])
    monkeypatch.setenv("DTE_TESTING_TRADING_MAX_POSITION_SIZE", "2500")


def _delete_documents() -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for cls in BLOCK_CLASSES:
            for doc in client.read_block_documents_by_type(cls.get_block_type_slug()):
                if doc.name in MODES:
                    client.delete_block_document(doc.id)


@pytest.fixture(scope="module")
def block_types(prefect_api: None) -> Iterator[None]:
    from prefect.variables import Variable

    register_types()
    yield
    _delete_documents()
    Variable.unset(MODE_VARIABLE)


@pytest.fixture(autouse=True)
def clean_blocks(block_types: None) -> None:
    """Every test starts with no dte documents and no dte-mode Variable (none left at the end)."""
    from prefect.variables import Variable

    _delete_documents()
    Variable.unset(MODE_VARIABLE)


# --- registration --------------------------------------------------------------------------------


def test_register_when_env_for_testing_then_loads_back_and_reregistration_keeps_values(
    monkeypatch,
):
    _testing_env(monkeypatch)
    reports = register_documents("testing")  # source: os.environ
    assert [r.action for r in reports] == ["created"] * 5
    ibkr_report = reports[0]
    assert ibkr_report.ref == "dte-ibkr-connection/testing"
    assert ibkr_report.fields_set == ("host", "port", "client_id", "account", "read_only")
    assert ibkr_report.secrets_set == ("account",)

    blocks = load_mode_blocks(TradingMode.TESTING)
    assert blocks.ibkr.host == "10.1.2.3"
    assert blocks.ibkr.port == 4002
    assert blocks.ibkr.read_only is False
    assert blocks.ibkr.account is not None
    assert blocks.ibkr.account.get_secret_value() == TESTING_SECRETS["account"]
    assert blocks.polygon.api_key is not None
    assert blocks.polygon.api_key.get_secret_value() == TESTING_SECRETS["polygon"]
    assert blocks.storage.database_url.get_secret_value() == DEFAULT_DATABASE_URL
    assert str(blocks.trading.risk_limits().max_position_size) == "2500"
    assert blocks.missing() == {}
    assert blocks.ready

    # a source that omits fields keeps the stored values ...
    again = register_documents("testing", {"DTE_TESTING_IBKR_CLIENT_ID": "12"})
    assert [r.action for r in again] == ["updated", *["unchanged"] * 4]
    kept = load_mode_blocks("testing")
    assert kept.ibkr.client_id == 12
    assert kept.ibkr.account is not None
    assert kept.ibkr.account.get_secret_value() == TESTING_SECRETS["account"]
    # ... unless replace=True rebuilds the documents from the source and the defaults
    register_documents("testing", {"DTE_TESTING_IBKR_PORT": "4002"}, replace=True)
    rebuilt = load_mode_blocks("testing")
    assert rebuilt.ibkr.account is None
    assert rebuilt.polygon.api_key is None


def test_register_when_toml_for_live_then_documents_load_back_with_secret_values(tmp_path):
    register_documents("live", _live_toml(tmp_path / "blocks.toml"))
    blocks = load_mode_blocks("live")
    assert blocks.ibkr.account is not None
    assert blocks.ibkr.account.get_secret_value() == LIVE_SECRETS["account"]
    assert blocks.openai.api_key is not None
    assert blocks.openai.api_key.get_secret_value() == LIVE_SECRETS["openai"]
    assert LIVE_SECRETS["db_password"] in blocks.storage.database_url.get_secret_value()
    assert blocks.storage.influx_token is not None
    assert blocks.storage.influx_token.get_secret_value() == LIVE_SECRETS["influx_token"]
    assert blocks.storage.influx_enabled
    assert blocks.storage.redis_enabled
    assert blocks.openai.daily_token_budget == 50000
    assert blocks.trading.risk_limits().max_daily_loss == 800
    assert blocks.trading.approvals_on("live")
    assert blocks.trading.smart0dte_config().confidence_threshold == 0.7
    assert blocks.ready


def test_register_when_incomplete_then_completeness_lists_exactly_missing_fields_and_mode_show():
    from cli.blocks import mode_app

    reports = register_documents("testing", {"DTE_TESTING_IBKR_PORT": "4002"})
    by_ref = {r.ref: r.missing for r in reports}
    assert by_ref["dte-ibkr-connection/testing"] == ("client_id", "account")
    assert by_ref["dte-polygon-credentials/testing"] == ("api_key",)
    assert by_ref["dte-openai-credentials/testing"] == ()
    blocks = load_mode_blocks("testing")
    assert blocks.missing() == {
        "dte-ibkr-connection/testing": ["client_id", "account"],
        "dte-polygon-credentials/testing": ["api_key"],
    }
    assert not blocks.ready

    set_active_mode("testing", who="unit test", why="mode show")
    result = runner.invoke(mode_app, ["show"])
    assert result.exit_code == 0, result.output
    assert "active mode: testing" in result.output
    assert "MISSING" in result.output
    assert "not ready" in result.output
    assert "dte-ibkr-connection/testing: missing client_id, account" in result.output


def test_register_when_value_invalid_then_nothing_saved_and_load_names_each_missing_block():
    bad = {
        "DTE_LIVE_POLYGON_API_KEY": LIVE_SECRETS["polygon"],
        "DTE_LIVE_TRADING_SMART0DTE_OVERRIDES": '{"no_such_setting": 1}',
    }
    with pytest.raises(RegistrationError) as info:
        register_documents("live", bad)
    text = str(info.value)
    assert "dte-trading-settings/live" in text
    assert "unknown Smart-0DTE settings: no_such_setting" in text
    assert LIVE_SECRETS["polygon"] not in text
    with pytest.raises(MissingBlockDocuments) as missing:  # the valid documents were not saved
        load_mode_blocks("live")
    assert missing.value.missing == [f"{cls.get_block_type_slug()}/live" for cls in BLOCK_CLASSES]
    assert "dte blocks register --mode live" in str(missing.value)
    with pytest.raises(RegistrationError, match=r"live\.polygon\.api_key"):
        register_documents("live", {"DTE_LIVE_POLYGON_API_KEY": "REPLACE-ME"})
    with pytest.raises(RegistrationError, match="not an IB paper account") as wrong_kind:
        register_documents("testing", {"DTE_TESTING_IBKR_ACCOUNT": LIVE_SECRETS["account"]})
    assert LIVE_SECRETS["account"] not in str(wrong_kind.value)


def test_register_when_stored_document_no_longer_validates_then_refused_unless_replace():
    from blocks.settings import TradingSettings

    TradingSettings.model_construct(smart0dte_overrides={"retired_setting": 1}).save("live")
    with pytest.raises(RegistrationError, match="--replace"):
        register_documents("live", {})
    reports = register_documents("live", {}, replace=True)
    assert reports[-1].ref == "dte-trading-settings/live"
    assert reports[-1].action == "updated"
    assert load_mode_blocks("live").trading.smart0dte_overrides == {}


def test_load_when_development_not_registered_then_embedded_defaults():
    blocks = load_mode_blocks("development")
    assert len(blocks.defaulted) == 5
    assert blocks.storage.database_url.get_secret_value() == "sqlite:///var/dte.db"
    assert blocks.ready
    register_documents("development", {})
    registered = load_mode_blocks("development")
    assert registered.defaulted == ()
    assert registered.polygon.api_key is None


# --- active mode -------------------------------------------------------------------------------


def test_active_mode_when_variable_unset_then_development():
    assert active_mode() is TradingMode.DEVELOPMENT


def test_set_active_mode_when_testing_then_active_mode_changes_and_previous_returned():
    from prefect.variables import Variable

    assert set_active_mode("testing", who="unit test", why="check the switch") is (
        TradingMode.DEVELOPMENT
    )
    assert active_mode() is TradingMode.TESTING
    assert Variable.get(MODE_VARIABLE) == "testing"  # plain string, as deployments/bootstrap.py
    with pytest.raises(ValueError, match="who and why"):
        set_active_mode("live", who="", why="no one")
    assert active_mode() is TradingMode.TESTING


def test_active_mode_when_variable_holds_garbage_then_clear_error():
    from prefect.variables import Variable

    Variable.set(MODE_VARIABLE, "paper", overwrite=True)
    with pytest.raises(ValueError, match="holds 'paper'"):
        active_mode()


# --- secrets -------------------------------------------------------------------------------------


def _wait(check: Callable[[], list[str]], timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def test_secrets_when_registered_shown_logged_emitted_and_failed_then_never_exposed(
    tmp_path, monkeypatch, capfd
):
    from prefect import flow, get_run_logger
    from prefect.artifacts import create_markdown_artifact
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.events import emit_event
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    from cli.blocks import blocks_app, mode_app

    t0 = datetime.now(UTC) - timedelta(seconds=1)
    outputs: list[str] = []

    # registration: live from a TOML file through the CLI, testing from env vars directly
    toml = _live_toml(tmp_path / "blocks.toml")
    result = runner.invoke(blocks_app, ["register", "--mode", "live", "--toml", str(toml)])
    assert result.exit_code == 0, result.output
    assert "account (secret: ***)" in result.output
    outputs.append(result.output)
    _testing_env(monkeypatch)
    for report in register_documents("testing"):
        print(report.describe())
    set_active_mode("live", who="secrets test", why="mode show output")

    for args in (["show"], ["show", "--mode", "live"]):
        shown = runner.invoke(blocks_app, args)
        assert shown.exit_code == 0, shown.output
        assert "*** (set)" in shown.output
        outputs.append(shown.output)
    mode_shown = runner.invoke(mode_app, ["show"])
    assert mode_shown.exit_code == 0, mode_shown.output
    outputs.append(mode_shown.output)

    @flow(name="dte-blocks-secrets-probe")
    def probe() -> None:
        blocks = load_mode_blocks("live")
        logger = get_run_logger()
        logger.info("%s", blocks)
        logger.info("ibkr=%s storage=%r openai=%s", blocks.ibkr, blocks.storage, blocks.openai)
        create_markdown_artifact(key="dte-blocks-secrets-probe", markdown=f"```\n{blocks!r}\n```")
        emit_event(
            event="dte.test.blocks-probe",
            resource={"prefect.resource.id": "dte.test.blocks-probe"},
            payload={name: doc.model_dump() for name, doc in blocks.documents().items()},
        )

    @flow(name="dte-blocks-secrets-fail")
    def fail() -> None:
        blocks = load_mode_blocks("live")
        raise ValueError(f"bad config: {blocks.ibkr} {blocks.storage} {blocks.openai}")

    ok_state = probe(return_state=True)
    assert ok_state.is_completed()
    failed_state = fail(return_state=True)
    assert failed_state.is_failed()
    run_ids = [ok_state.state_details.flow_run_id, failed_state.state_details.flow_run_id]

    with get_client(sync_client=True) as client:

        def read_logs() -> list[str]:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids))
            )
            texts = [log.message for log in logs]
            complete = any("IBKRConnection(" in t for t in texts) and any(
                "bad config" in t for t in texts
            )
            return texts if complete else []

        logs = _wait(read_logs)
        assert logs, "the probe's logs never reached the API"
        assert any(MASK in t for t in logs)

        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids))
        )
        artifact_texts = [json.dumps(a.model_dump(mode="json")) for a in artifacts]
        assert any("IBKRConnection(" in t and MASK in t for t in artifact_texts)

        def probe_event() -> list[str]:
            page = client.read_events(
                filter=EventFilter(event=EventNameFilter(name=["dte.test.blocks-probe"])),
                limit=10,
            )
            return [json.dumps(e.model_dump(mode="json")) for e in page.events]

        probe_events = _wait(probe_event)
        assert probe_events, "the probe's event never reached the API"
        assert any(MASK in t and "127.0.0.1" in t for t in probe_events)

        event_texts: list[str] = []
        page = client.read_events(
            filter=EventFilter(
                occurred=EventOccurredFilter(since=t0, until=datetime.now(UTC) + timedelta(1))
            ),
            limit=50,
        )
        for _ in range(40):
            event_texts += [json.dumps(e.model_dump(mode="json")) for e in page.events]
            if not page.next_page:
                break
            page = client.read_events_page(str(page.next_page))
        assert any("dte.mode.changed" in t for t in event_texts)

        failed_run = client.read_flow_run(run_ids[1])
        assert failed_run.state is not None
        state_messages = [failed_run.state.message or "", failed_state.message or ""]
        assert any("bad config: IBKRConnection(" in m and MASK in m for m in state_messages)

        rest_docs = [
            json.dumps(
                client.read_block_document_by_name(
                    name=mode, block_type_slug=cls.get_block_type_slug(), include_secrets=False
                ).model_dump(mode="json")
            )
            for cls in BLOCK_CLASSES
            for mode in ("testing", "live")
        ]
        stored = client.read_block_document_by_name(
            name="live", block_type_slug="dte-ibkr-connection", include_secrets=True
        )
        assert stored.data["account"] == LIVE_SECRETS["account"]  # really stored, encrypted

    captured = capfd.readouterr()
    haystacks = {
        "cli output": "\n".join(outputs),
        "stdout": captured.out,
        "stderr": captured.err,
        "logs": "\n".join(logs),
        "artifacts": "\n".join(artifact_texts),
        "events": "\n".join(event_texts + probe_events),
        "failed state": "\n".join(state_messages),
        "REST block documents": "\n".join(rest_docs),
    }
    assert "dte-ibkr-connection/testing: created" in captured.out
    leaks = [
        f"{secret!r} in {where}"
        for where, text in haystacks.items()
        for secret in ALL_SECRETS
        if secret in text
    ]
    assert not leaks, leaks
