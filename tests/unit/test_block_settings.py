"""Block classes and registration sources, validated without a Prefect API."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from blocks.registry import (
    PLACEHOLDER,
    RegistrationError,
    env_name,
    placeholders,
    read_env,
    read_toml,
)
from blocks.settings import (
    BLOCK_CLASSES,
    IBKRConnection,
    OpenAICredentials,
    PolygonCredentials,
    StorageSettings,
    TradingSettings,
    secret_fields,
)
from core.approvals import TierRules
from core.models import RiskLimits, SystemName, TradingMode

EXAMPLE = Path(__file__).resolve().parents[2] / "deployments" / "blocks.example.toml"

SECRETS = ("sk-test-SECRET-1234", "U9999999", "pw-SECRET-5678")


def _full_ibkr(account: str = "DU1234567") -> IBKRConnection:
    return IBKRConnection(host="127.0.0.1", port=4002, client_id=7, account=account)


# --- trading settings --------------------------------------------------------------------------


def test_risk_limits_when_overrides_set_then_applied_and_rest_default():
    settings = TradingSettings(max_daily_loss="2500", max_open_positions=4, halt_fraction="3")
    limits = settings.risk_limits()
    assert limits.max_daily_loss == Decimal("2500")
    assert limits.max_open_positions == 4
    assert limits.halt_fraction == Decimal("3")
    assert limits.max_position_size == RiskLimits().max_position_size
    assert limits.alert_fraction == RiskLimits().alert_fraction


def test_risk_limits_when_no_overrides_then_defaults():
    assert TradingSettings().risk_limits() == RiskLimits()


def test_risk_fields_when_compared_then_match_risk_limits_names():
    import dataclasses

    assert set(TradingSettings.RISK_FIELDS) == {f.name for f in dataclasses.fields(RiskLimits)}
    assert set(TradingSettings.RISK_FIELDS) <= set(TradingSettings.model_fields)


def test_validate_when_fractions_inconsistent_then_refused():
    with pytest.raises(ValidationError, match="alert < reduce < halt"):
        TradingSettings(alert_fraction="1.5")


def test_validate_when_negative_loss_limit_then_refused():
    with pytest.raises(ValidationError, match="max_daily_loss"):
        TradingSettings(max_daily_loss="-1")


def test_validate_when_unknown_smart0dte_override_then_refused_with_clear_error():
    with pytest.raises(ValidationError) as info:
        TradingSettings(smart0dte_overrides={"confidence_treshold": 0.7})
    text = str(info.value)
    assert "smart0dte_overrides" in text
    assert "unknown Smart-0DTE settings: confidence_treshold" in text


def test_validate_when_smart0dte_override_has_wrong_type_then_refused_naming_field():
    with pytest.raises(ValidationError, match="invalid Smart-0DTE setting loop_interval_seconds"):
        TradingSettings(smart0dte_overrides={"loop_interval_seconds": "often"})


def test_smart0dte_config_when_overrides_then_typed_values_and_defaults_elsewhere():
    settings = TradingSettings(
        smart0dte_overrides={
            "confidence_threshold": "0.7",
            "loop_start": "09:50",
            "regime": {"no_entry_from": 28},
            "underlyings": ["SPY", "QQQ"],
        }
    )
    cfg = settings.smart0dte_config()
    assert cfg.confidence_threshold == 0.7
    assert cfg.loop_start == time(9, 50)
    assert cfg.regime.no_entry_from == 28.0
    assert cfg.regime.low_below == 15.0  # left out of the table: default
    assert cfg.underlyings == ("SPY", "QQQ")
    assert cfg.loop_interval_seconds == 60


def test_approvals_on_when_unset_then_on_only_in_live():
    settings = TradingSettings()
    assert settings.approvals_on(TradingMode.LIVE)
    assert not settings.approvals_on("testing")
    assert not settings.approvals_on("development")


def test_approvals_on_when_set_then_same_in_every_mode():
    assert TradingSettings(approvals_enabled=True).approvals_on("development")
    assert not TradingSettings(approvals_enabled=False).approvals_on("live")


def test_tier_rules_when_defaults_then_match_core_defaults():
    assert TradingSettings().tier_rules() == TierRules()
    custom = TradingSettings(t1_max_size_fraction="0.4", t3_vix=28).tier_rules()
    assert custom.t1_max_size_fraction == Decimal("0.4")
    assert custom.t3_vix == 28.0


def test_validate_when_t1_fraction_above_t3_then_refused():
    with pytest.raises(ValidationError, match="t1_max_size_fraction"):
        TradingSettings(t1_max_size_fraction="0.9", t3_size_fraction="0.8")


def test_approval_timeout_when_system_then_per_system_default():
    settings = TradingSettings()
    assert settings.approval_timeout(SystemName.SMART0DTE) == timedelta(minutes=5)
    assert settings.approval_timeout(SystemName.MAG7) == timedelta(minutes=30)


# --- completeness --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", BLOCK_CLASSES)
def test_completeness_when_development_and_empty_then_nothing_missing(cls):
    assert cls().completeness("development") == []


@pytest.mark.parametrize("mode", ["testing", "live"])
def test_completeness_when_ibkr_incomplete_then_lists_exactly_missing(mode):
    assert IBKRConnection().completeness(mode) == ["port", "client_id", "account"]
    assert IBKRConnection(port=4002, account="  ").completeness(mode) == ["client_id", "account"]
    assert _full_ibkr().completeness(mode) == []


@pytest.mark.parametrize("mode", ["testing", "live"])
def test_completeness_when_polygon_without_key_then_api_key_missing(mode):
    assert PolygonCredentials().completeness(mode) == ["api_key"]
    assert PolygonCredentials(api_key="k", base_url="").completeness(mode) == ["base_url"]


def test_completeness_when_openai_without_key_then_complete_in_live():
    assert OpenAICredentials().completeness("live") == []
    assert OpenAICredentials(api_key="k", model=" ").completeness("live") == ["model"]


def test_completeness_when_influx_partly_set_then_rest_of_influx_missing():
    assert StorageSettings().completeness("live") == []
    partial = StorageSettings(influx_url="http://127.0.0.1:8086", influx_org="dte")
    assert partial.completeness("testing") == ["influx_bucket", "influx_token"]
    assert StorageSettings(database_url="").completeness("development") == ["database_url"]


def test_completeness_when_unknown_mode_then_value_error():
    with pytest.raises(ValueError, match="unknown mode 'paper'"):
        IBKRConnection().completeness("paper")


def test_problems_when_account_kind_wrong_for_mode_then_reported_without_account():
    assert _full_ibkr("DU1234567").problems("testing") == []
    assert _full_ibkr("U9999999").problems("live") == []
    wrong_testing = _full_ibkr("U9999999").problems("testing")
    wrong_live = _full_ibkr("DU1234567").problems("live")
    assert wrong_testing
    assert wrong_live
    assert "U9999999" not in " ".join(wrong_testing)
    assert "DU1234567" not in " ".join(wrong_live)


# --- types and secrets ---------------------------------------------------------------------------


def test_block_types_when_listed_then_dte_slugs_and_readable_names():
    slugs = [cls.get_block_type_slug() for cls in BLOCK_CLASSES]
    assert slugs == [
        "dte-ibkr-connection",
        "dte-polygon-credentials",
        "dte-openai-credentials",
        "dte-storage-settings",
        "dte-trading-settings",
    ]
    assert all(cls.get_block_type_name().startswith("DTE ") for cls in BLOCK_CLASSES)


def test_secret_fields_when_listed_then_every_sensitive_field_is_secret():
    assert secret_fields(IBKRConnection) == ("account",)
    assert secret_fields(PolygonCredentials) == ("api_key",)
    assert secret_fields(OpenAICredentials) == ("api_key",)
    assert secret_fields(StorageSettings) == ("database_url", "redis_url", "influx_token")
    assert secret_fields(TradingSettings) == ()


def test_repr_and_dumps_when_secrets_set_then_masked():
    blocks = [
        _full_ibkr("U9999999"),
        OpenAICredentials(api_key="sk-test-SECRET-1234"),
        StorageSettings(database_url="postgresql+psycopg://dte:pw-SECRET-5678@db/dte"),
    ]
    for block in blocks:
        rendered = [
            repr(block),
            str(block),
            f"{block}",
            str(block.model_dump()),
            block.model_dump_json(),
            str(block.model_dump(mode="json")),
        ]
        for text in rendered:
            assert "**********" in text
            for secret in SECRETS:
                assert secret not in text


def test_validation_error_when_secret_field_invalid_then_input_not_echoed():
    with pytest.raises(ValidationError) as info:
        IBKRConnection(account=99999999, port="not-a-port")  # an int is not a valid SecretStr
    assert "99999999" not in str(info.value)
    assert "not-a-port" not in str(info.value)
    assert "account" in str(info.value)


def test_validate_when_unknown_field_then_refused():
    with pytest.raises(ValidationError, match="acount"):
        IBKRConnection(acount="U1")


# --- registration sources ------------------------------------------------------------------------


def test_read_env_when_variables_set_then_values_by_section_and_empty_ignored():
    env = {
        env_name("testing", "ibkr", "port"): "4002",
        "DTE_TESTING_IBKR_ACCOUNT": "DU1234567",
        "DTE_TESTING_OPENAI_MODEL": "",
        "DTE_TESTING_TRADING_SMART0DTE_OVERRIDES": '{"confidence_threshold": 0.7}',
        "DTE_LIVE_IBKR_PORT": "4001",  # another mode: not read
        "DTE_TEST_PG_URL": "postgresql://x",  # not a DTE_<MODE>_ variable
    }
    assert read_env("testing", env) == {
        "ibkr": {"port": "4002", "account": "DU1234567"},
        "trading": {"smart0dte_overrides": {"confidence_threshold": 0.7}},
    }


def test_read_env_when_unknown_variable_then_refused_naming_variable_not_value():
    with pytest.raises(RegistrationError) as info:
        read_env("live", {"DTE_LIVE_OPENAI_API_KYE": "sk-test-SECRET-1234"})
    assert "DTE_LIVE_OPENAI_API_KYE" in str(info.value)
    assert "sk-test-SECRET-1234" not in str(info.value)


def test_read_env_when_overrides_not_json_object_then_refused():
    with pytest.raises(RegistrationError, match="JSON object"):
        read_env("live", {"DTE_LIVE_TRADING_SMART0DTE_OVERRIDES": "[1, 2]"})


def test_read_env_when_mag7_overrides_json_then_parsed_and_typed():
    env = {"DTE_LIVE_TRADING_MAG7_OVERRIDES": '{"target_dte": 8}'}
    raw = read_env("live", env)
    assert raw == {"trading": {"mag7_overrides": {"target_dte": 8}}}
    settings = TradingSettings(**raw["trading"])
    assert settings.mag7_config().target_dte == 8
    with pytest.raises(RegistrationError, match="DTE_LIVE_TRADING_MAG7_OVERRIDES must be a JSON"):
        read_env("live", {"DTE_LIVE_TRADING_MAG7_OVERRIDES": "target_dte=8"})


def test_read_toml_when_example_file_then_every_key_known_and_secrets_are_placeholders():
    testing = read_toml("testing", EXAMPLE)
    live = read_toml("live", EXAMPLE)
    development = read_toml("development", EXAMPLE)
    assert development == {"storage": {"database_url": "sqlite:///var/dte.db"}}
    assert live["ibkr"]["port"] == 4001
    assert testing["ibkr"]["read_only"] is False
    assert placeholders(development) == []
    assert set(placeholders(testing)) == {
        "ibkr.account",
        "polygon.api_key",
        "storage.database_url",
    }
    assert set(placeholders(live)) == {"ibkr.account", "polygon.api_key", "storage.database_url"}
    # with the placeholders filled in, the example's values validate
    for section, cls in (("ibkr", IBKRConnection), ("trading", TradingSettings)):
        values = {k: v for k, v in live[section].items() if PLACEHOLDER not in str(v)}
        cls(**values)
    assert TradingSettings(**live["trading"]).t1_max_size_fraction == Decimal("0.5")


def test_read_toml_when_unknown_key_or_table_then_refused_naming_them(tmp_path):
    path = tmp_path / "blocks.toml"
    path.write_text(
        '[live.polygon]\napi_kye = "pg-SECRET-4321"\n[live.broker]\nx = 1\n[paper.ibkr]\nport = 1\n'
    )
    with pytest.raises(RegistrationError) as info:
        read_toml("live", path)
    text = str(info.value)
    assert "live.polygon.api_kye" in text
    assert "[live.broker]" in text
    assert "[paper]" in text
    assert "pg-SECRET-4321" not in text


def test_read_toml_when_file_missing_then_registration_error(tmp_path):
    with pytest.raises(RegistrationError, match="not found"):
        read_toml("live", tmp_path / "nope.toml")


# --- CLI argument checks (no API needed) -------------------------------------------------------


@pytest.mark.parametrize("args", [["register"], ["register", "--mode", "live", "--all"]])
def test_blocks_register_cli_when_not_exactly_one_of_mode_or_all_then_usage_error(args):
    from typer.testing import CliRunner

    from cli.blocks import blocks_app

    result = CliRunner().invoke(blocks_app, args)
    assert result.exit_code == 2
    assert "--all" in result.output
