"""Prefect Block classes for dte-trader: credentials and settings, one document of each per mode.

Five block types (slugs prefixed ``dte-``), each saved once per mode under the mode's name
(``development``, ``testing``, ``live``), e.g. ``dte-ibkr-connection/live``:

=========================  ===========================  =========================================
block type slug            class                        holds
=========================  ===========================  =========================================
``dte-ibkr-connection``    :class:`IBKRConnection`      host, port, client id, account, read-only
``dte-polygon-credentials``:class:`PolygonCredentials`  API key, base URL (Polygon is now Massive)
``dte-openai-credentials`` :class:`OpenAICredentials`   API key, model, daily token budget, timeout
``dte-storage-settings``   :class:`StorageSettings`     database URL, Redis URL, InfluxDB settings
``dte-trading-settings``   :class:`TradingSettings`     risk-limit overrides, approvals, tiers,
                                                        Smart-0DTE overrides
=========================  ===========================  =========================================

Why our own blocks and not ``prefect-sqlalchemy`` / ``prefect-redis``: those collections are not in
the frozen dependency lock of this project, so the database and Redis URLs live in
:class:`StorageSettings` as ``SecretStr`` fields (a URL may embed a password). Swapping in
``SqlAlchemyConnector`` / ``RedisDatabase`` later only changes where the URL is read from.

Secrets
-------
Every secret is a pydantic ``SecretStr`` (API keys, the IB account number, URLs that may carry a
password, the InfluxDB token). Prefect stores them encrypted and masks them in the REST API;
pydantic masks them in ``repr``/``str``/``model_dump``/``model_dump_json``. Log text is *not*
redacted by Prefect, so code must never log ``get_secret_value()``; logging a block itself (its
``repr``) is safe, and ``tests/flows/test_blocks.py`` checks logs, artifacts, events and failure
messages for leaks. Validation errors hide their input (``hide_input_in_errors``) so a mistyped
secret is not echoed in an exception either.

Each block has ``completeness(mode) -> list[str]``: the names of fields that are missing or empty
but required in that mode (development needs no credentials; testing and live need IBKR and
Polygon; OpenAI is always optional: without a key the advisor falls back to deterministic text).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar, Self

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, TypeAdapter, ValidationError, field_validator
from pydantic import model_validator as _model_validator

from core.approvals import TierRules
from core.models import RiskLimits, SystemName, TradingMode
from systems.mag7.config import DEFAULT as MAG7_DEFAULT
from systems.mag7.config import Mag7Config
from systems.smart0dte.config import DEFAULT as SMART0DTE_DEFAULT
from systems.smart0dte.config import Smart0DTEConfig

DEFAULT_DATABASE_URL = "sqlite:///var/dte.db"  # same embedded default as tasks.runtime
DEFAULT_POLYGON_BASE_URL = "https://api.massive.com"
PAPER_ACCOUNT_PREFIXES = ("DU", "DF")  # IB paper accounts: individual (DU) and advisor (DF)


def _config() -> ConfigDict:
    return ConfigDict(extra="forbid", hide_input_in_errors=True, validate_assignment=True)


def as_mode(mode: TradingMode | str) -> TradingMode:
    """``TradingMode`` from a mode or its name, with a clear error for anything else."""
    try:
        return TradingMode(mode)
    except ValueError:
        names = ", ".join(m.value for m in TradingMode)
        raise ValueError(f"unknown mode {mode!r}: use one of {names}") from None


def is_empty(value: object) -> bool:
    """True for ``None``, blank strings and blank secrets (the check behind ``completeness``)."""
    if value is None:
        return True
    if isinstance(value, SecretStr):
        return not value.get_secret_value().strip()
    if isinstance(value, str):
        return not value.strip()
    return False


def _missing(block: Block, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if is_empty(getattr(block, name))]


def secret_fields(cls: type[Block]) -> tuple[str, ...]:
    """Names of the fields of ``cls`` that hold a ``SecretStr``."""
    out = []
    for name, info in cls.model_fields.items():
        ann = info.annotation
        if ann is SecretStr or SecretStr in typing.get_args(ann):
            out.append(name)
    return tuple(out)


def data_fields(cls: type[Block]) -> tuple[str, ...]:
    """The user-settable fields of a block class, in declaration order."""
    return tuple(cls.model_fields)


class IBKRConnection(Block):
    """Interactive Brokers TWS / IB Gateway connection for one mode.

    The account number is a secret: it never goes into logs, artifacts or advisor prompts. Paper
    accounts start with ``DU`` (or ``DF``); :meth:`problems` refuses a live account in testing and
    a paper account in live.
    """

    _block_type_name: ClassVar[str] = "DTE IBKR Connection"
    _block_type_slug: ClassVar[str] = "dte-ibkr-connection"
    _description: ClassVar[str] = (
        "dte-trader: Interactive Brokers TWS/IB Gateway connection (one document per mode)."
    )
    model_config: ClassVar[ConfigDict] = _config()

    host: str = Field(default="127.0.0.1", description="TWS / IB Gateway host")
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="TWS 7497 paper / 7496 live; IB Gateway 4002 paper / 4001 live",
    )
    client_id: int | None = Field(
        default=None, ge=0, description="API client id, unique per connection"
    )
    account: SecretStr | None = Field(
        default=None, description="account id (U... live, DU... paper); sensitive"
    )
    read_only: bool = Field(default=True, description="connect read-only: no orders can be placed")

    REQUIRED: ClassVar[tuple[str, ...]] = ("host", "port", "client_id", "account")

    def completeness(self, mode: TradingMode | str) -> list[str]:
        if as_mode(mode) is TradingMode.DEVELOPMENT:
            return []
        return _missing(self, self.REQUIRED)

    def is_paper_account(self) -> bool | None:
        """True for an IB paper account, False for a live one, None when no account is set."""
        if is_empty(self.account):
            return None
        assert self.account is not None
        return self.account.get_secret_value().strip().upper().startswith(PAPER_ACCOUNT_PREFIXES)

    def problems(self, mode: TradingMode | str) -> list[str]:
        """Values that are set but wrong for ``mode`` (never quoting the account itself)."""
        m = as_mode(mode)
        paper = self.is_paper_account()
        if m is TradingMode.TESTING and paper is False:
            return ["account is not an IB paper account (DU...): testing must use paper"]
        if m is TradingMode.LIVE and paper is True:
            return ["account is an IB paper account (DU...): live needs the live account"]
        return []


class PolygonCredentials(Block):
    """Polygon.io (now Massive) REST credentials for market data and history."""

    _block_type_name: ClassVar[str] = "DTE Polygon Credentials"
    _block_type_slug: ClassVar[str] = "dte-polygon-credentials"
    _description: ClassVar[str] = "dte-trader: Polygon.io / Massive REST API key (per mode)."
    model_config: ClassVar[ConfigDict] = _config()

    api_key: SecretStr | None = Field(default=None, description="Polygon / Massive API key")
    base_url: str = Field(default=DEFAULT_POLYGON_BASE_URL, description="REST base URL")

    REQUIRED: ClassVar[tuple[str, ...]] = ("api_key", "base_url")

    def completeness(self, mode: TradingMode | str) -> list[str]:
        if as_mode(mode) is TradingMode.DEVELOPMENT:
            return []
        return _missing(self, self.REQUIRED)


class OpenAICredentials(Block):
    """OpenAI settings for the advisory model (brief, entry review, narrative). Always optional:
    without a key the advisor uses its deterministic fallback."""

    _block_type_name: ClassVar[str] = "DTE OpenAI Credentials"
    _block_type_slug: ClassVar[str] = "dte-openai-credentials"
    _description: ClassVar[str] = (
        "dte-trader: OpenAI API key and limits for the advisory model (optional, per mode)."
    )
    model_config: ClassVar[ConfigDict] = _config()

    api_key: SecretStr | None = Field(default=None, description="OpenAI API key (optional)")
    model: str = Field(default="gpt-4o-mini", description="model name")
    daily_token_budget: int = Field(default=200_000, ge=0, description="tokens per day, all calls")
    timeout_seconds: float = Field(default=20.0, gt=0, description="per call")
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible API base URL (empty: api.openai.com)"
    )

    def completeness(self, mode: TradingMode | str) -> list[str]:
        as_mode(mode)
        if is_empty(self.api_key):
            return []  # optional in every mode
        return _missing(self, ("model",))

    @property
    def enabled(self) -> bool:
        return not is_empty(self.api_key)


class StorageSettings(Block):
    """Where the ledger, cache and metrics live. Only the database is required; without Redis
    the cache is in-process, without InfluxDB metrics are a no-op."""

    _block_type_name: ClassVar[str] = "DTE Storage Settings"
    _block_type_slug: ClassVar[str] = "dte-storage-settings"
    _description: ClassVar[str] = (
        "dte-trader: database URL (SQLite or PostgreSQL), Redis URL, InfluxDB settings (per mode)."
    )
    model_config: ClassVar[ConfigDict] = _config()

    database_url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL),
        description="SQLAlchemy URL; may embed a password",
    )
    redis_url: SecretStr | None = Field(
        default=None, description="redis://...; may embed a password"
    )
    influx_url: str | None = Field(default=None, description="InfluxDB 2 URL")
    influx_org: str | None = Field(default=None, description="InfluxDB organisation")
    influx_bucket: str | None = Field(default=None, description="InfluxDB bucket")
    influx_token: SecretStr | None = Field(default=None, description="InfluxDB API token")

    INFLUX: ClassVar[tuple[str, ...]] = (
        "influx_url",
        "influx_org",
        "influx_bucket",
        "influx_token",
    )

    def completeness(self, mode: TradingMode | str) -> list[str]:
        as_mode(mode)
        missing = _missing(self, ("database_url",))
        influx_missing = _missing(self, self.INFLUX)
        if len(influx_missing) < len(self.INFLUX):  # InfluxDB partly configured: all or nothing
            missing += influx_missing
        return missing

    @property
    def influx_enabled(self) -> bool:
        return not _missing(self, self.INFLUX)

    @property
    def redis_enabled(self) -> bool:
        return not is_empty(self.redis_url)


_SMART0DTE_TYPES: dict[str, Any] = typing.get_type_hints(Smart0DTEConfig)


def smart0dte_config_from(overrides: Mapping[str, Any]) -> Smart0DTEConfig:
    """Smart-0DTE defaults with ``overrides`` applied, each value converted to its field's type.

    Unknown keys are refused by ``Smart0DTEConfig.with_overrides``; values are validated with
    pydantic against the dataclass field types (e.g. ``"09:50"`` becomes a ``time``, a table
    becomes a nested config with defaults for the keys it leaves out).
    """
    SMART0DTE_DEFAULT.with_overrides(overrides)  # ValueError naming unknown keys
    typed: dict[str, Any] = {}
    for key, value in overrides.items():
        try:
            typed[key] = TypeAdapter(_SMART0DTE_TYPES[key]).validate_python(value)
        except ValidationError as exc:
            detail = "; ".join(
                f"{'.'.join(str(p) for p in (key, *err['loc']))}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False)
            )
            raise ValueError(f"invalid Smart-0DTE setting {detail}") from None
    return SMART0DTE_DEFAULT.with_overrides(typed)


_MAG7_TYPES: dict[str, Any] = typing.get_type_hints(Mag7Config)


def mag7_config_from(overrides: Mapping[str, Any]) -> Mag7Config:
    """Mag7-7DTE defaults with ``overrides`` applied, like ``smart0dte_config_from``: unknown keys
    are refused, values are validated against the ``Mag7Config`` field types (e.g.
    ``{"management_times": ["10:00", "15:30"]}`` or ``{"sizing": {"max_open_positions": 2}}``)."""
    MAG7_DEFAULT.with_overrides(overrides)  # ValueError naming unknown keys
    typed: dict[str, Any] = {}
    for key, value in overrides.items():
        try:
            typed[key] = TypeAdapter(_MAG7_TYPES[key]).validate_python(value)
        except ValidationError as exc:
            detail = "; ".join(
                f"{'.'.join(str(p) for p in (key, *err['loc']))}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False)
            )
            raise ValueError(f"invalid Mag7 setting {detail}") from None
    return MAG7_DEFAULT.with_overrides(typed)


class TradingSettings(Block):
    """Per-mode trading settings: risk-limit overrides (unset = ``RiskLimits`` default), approvals,
    approval-tier thresholds and timeouts, and Smart-0DTE config overrides."""

    _block_type_name: ClassVar[str] = "DTE Trading Settings"
    _block_type_slug: ClassVar[str] = "dte-trading-settings"
    _description: ClassVar[str] = (
        "dte-trader: risk-limit overrides, approvals, tier thresholds, strategy overrides (per mode)."
    )
    model_config: ClassVar[ConfigDict] = _config()

    # risk-limit overrides: same names as core.models.RiskLimits; None = the default there
    max_daily_loss: Decimal | None = Field(default=None, gt=0, description="dollars")
    max_position_size: Decimal | None = Field(
        default=None, gt=0, description="max loss per position, dollars"
    )
    max_open_positions: int | None = Field(default=None, ge=1)
    max_per_underlying_per_system: int | None = Field(default=None, ge=1)
    max_errors_per_day: int | None = Field(default=None, ge=1)
    alert_fraction: Decimal | None = Field(default=None, gt=0)
    reduce_fraction: Decimal | None = Field(default=None, gt=0)
    halt_fraction: Decimal | None = Field(default=None, gt=0)

    approvals_enabled: bool | None = Field(
        default=None, description="None = per mode default: on in live, off otherwise"
    )
    # approval tiers (STRATEGIES.md): T1 auto at size <= 50% of max and confidence >= 0.80,
    # T3 above 80% of max or VIX above 25, T2 otherwise
    t1_max_size_fraction: Decimal = Field(default=Decimal("0.5"), gt=0, le=1)
    t1_min_confidence: float = Field(default=0.80, ge=0, le=1)
    t3_size_fraction: Decimal = Field(default=Decimal("0.8"), gt=0, le=1)
    t3_vix: float = Field(default=25.0, gt=0)
    approval_timeout_0dte_s: int = Field(default=300, gt=0, description="seconds")
    approval_timeout_mag7_s: int = Field(default=1800, gt=0, description="seconds")

    smart0dte_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Smart0DTEConfig top-level fields to replace, e.g. confidence_threshold",
    )
    mag7_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Mag7Config top-level fields to replace, e.g. management_times, sizing",
    )

    RISK_FIELDS: ClassVar[tuple[str, ...]] = (
        "max_daily_loss",
        "max_position_size",
        "max_open_positions",
        "max_per_underlying_per_system",
        "max_errors_per_day",
        "alert_fraction",
        "reduce_fraction",
        "halt_fraction",
    )

    @field_validator("smart0dte_overrides")
    @classmethod
    def _check_smart0dte(cls, value: dict[str, Any]) -> dict[str, Any]:
        smart0dte_config_from(value)
        return value

    @field_validator("mag7_overrides")
    @classmethod
    def _check_mag7(cls, value: dict[str, Any]) -> dict[str, Any]:
        mag7_config_from(value)
        return value

    @_model_validator(mode="after")
    def _check_consistent(self) -> Self:
        self.risk_limits()  # RiskLimits refuses e.g. alert >= reduce
        if self.t1_max_size_fraction > self.t3_size_fraction:
            raise ValueError("t1_max_size_fraction must not exceed t3_size_fraction")
        return self

    def completeness(self, mode: TradingMode | str) -> list[str]:
        as_mode(mode)
        return []  # every field has a default

    def risk_limits(self) -> RiskLimits:
        """``RiskLimits`` with the fields set here replacing the defaults."""
        given = {name: getattr(self, name) for name in self.RISK_FIELDS}
        return RiskLimits(**{k: v for k, v in given.items() if v is not None})

    def approvals_on(self, mode: TradingMode | str) -> bool:
        if self.approvals_enabled is not None:
            return self.approvals_enabled
        return as_mode(mode) is TradingMode.LIVE

    def tier_rules(self) -> TierRules:
        return TierRules(
            t1_max_size_fraction=self.t1_max_size_fraction,
            t1_min_confidence=self.t1_min_confidence,
            t3_size_fraction=self.t3_size_fraction,
            t3_vix=self.t3_vix,
        )

    def approval_timeout(self, system: SystemName) -> timedelta:
        seconds = (
            self.approval_timeout_0dte_s
            if system is SystemName.SMART0DTE
            else self.approval_timeout_mag7_s
        )
        return timedelta(seconds=seconds)

    def smart0dte_config(self) -> Smart0DTEConfig:
        return smart0dte_config_from(self.smart0dte_overrides)

    def mag7_config(self) -> Mag7Config:
        return mag7_config_from(self.mag7_overrides)


DteBlock = (
    IBKRConnection | PolygonCredentials | OpenAICredentials | StorageSettings | TradingSettings
)

BLOCK_CLASSES: tuple[type[DteBlock], ...] = (
    IBKRConnection,
    PolygonCredentials,
    OpenAICredentials,
    StorageSettings,
    TradingSettings,
)
