"""Register the dte block types and the per-mode documents; load them; the active-mode Variable.

Documents
---------
Every mode (``development``, ``testing``, ``live``) has one document of each block type in
:mod:`blocks.settings`, named after the mode: ``dte-ibkr-connection/testing``,
``dte-storage-settings/live``, ... :func:`register_documents` creates or updates them from a
*source*, either environment variables or a TOML file the user fills in (template:
``deployments/blocks.example.toml``).

* A value the source does not give keeps its stored value (or the block default when the document
  is new), so re-running registration never wipes a credential; ``replace=True`` rebuilds the
  documents from the source and the defaults only.
* Development documents start from embedded defaults: ``sqlite:///var/dte.db``, no keys. They are
  created even from an empty source, and :func:`load_mode_blocks` falls back to the same defaults
  when a development document is missing, so the demo needs no registration.
* Unknown names (a typo such as ``api_kye``), values still holding the example's placeholder
  ``REPLACE-ME`` and an IB account of the wrong kind (testing needs a paper ``DU...`` account,
  live a live one) are refused. Errors name the field, never its value.
* The returned :class:`BlockReport` lists the fields the source set and which of them are secret;
  it carries no values. Nothing here prints or logs a secret.

Environment variables: ``DTE_<MODE>_<SECTION>_<FIELD>`` in upper case, ``<MODE>`` one of
``DEVELOPMENT``, ``TESTING``, ``LIVE``. Empty values count as not given. The full list, shown for
``TESTING`` (secrets marked *)::

    DTE_TESTING_IBKR_HOST               DTE_TESTING_STORAGE_DATABASE_URL *
    DTE_TESTING_IBKR_PORT               DTE_TESTING_STORAGE_REDIS_URL *
    DTE_TESTING_IBKR_CLIENT_ID          DTE_TESTING_STORAGE_INFLUX_URL
    DTE_TESTING_IBKR_ACCOUNT *          DTE_TESTING_STORAGE_INFLUX_ORG
    DTE_TESTING_IBKR_READ_ONLY          DTE_TESTING_STORAGE_INFLUX_BUCKET
    DTE_TESTING_POLYGON_API_KEY *       DTE_TESTING_STORAGE_INFLUX_TOKEN *
    DTE_TESTING_POLYGON_BASE_URL
    DTE_TESTING_OPENAI_API_KEY *        DTE_TESTING_TRADING_MAX_DAILY_LOSS
    DTE_TESTING_OPENAI_MODEL            DTE_TESTING_TRADING_MAX_POSITION_SIZE
    DTE_TESTING_OPENAI_DAILY_TOKEN_BUDGET  DTE_TESTING_TRADING_MAX_OPEN_POSITIONS
    DTE_TESTING_OPENAI_TIMEOUT_SECONDS  DTE_TESTING_TRADING_MAX_PER_UNDERLYING_PER_SYSTEM
                                        DTE_TESTING_TRADING_MAX_ERRORS_PER_DAY
    DTE_TESTING_TRADING_ALERT_FRACTION  DTE_TESTING_TRADING_REDUCE_FRACTION
    DTE_TESTING_TRADING_HALT_FRACTION   DTE_TESTING_TRADING_APPROVALS_ENABLED (true/false)
    DTE_TESTING_TRADING_T1_MAX_SIZE_FRACTION   DTE_TESTING_TRADING_T1_MIN_CONFIDENCE
    DTE_TESTING_TRADING_T3_SIZE_FRACTION       DTE_TESTING_TRADING_T3_VIX
    DTE_TESTING_TRADING_APPROVAL_TIMEOUT_0DTE_S
    DTE_TESTING_TRADING_APPROVAL_TIMEOUT_MAG7_S
    DTE_TESTING_TRADING_SMART0DTE_OVERRIDES  (a JSON object, e.g. {"confidence_threshold": 0.7})
    DTE_TESTING_TRADING_MAG7_OVERRIDES       (a JSON object, e.g. {"target_dte": 8})

Any other ``DTE_<MODE>_...`` variable is refused as unknown. TOML: tables ``[<mode>.<section>]``
with the same field names in lower case, and ``[<mode>.trading.smart0dte_overrides]`` /
``[<mode>.trading.mag7_overrides]``.

Active mode
-----------
The Prefect Variable ``dte-mode`` holds the mode name as a plain string (default
``development`` when unset; ``deployments/bootstrap.py`` creates it). :func:`active_mode` reads it;
flows read it once at start. :func:`set_active_mode` writes it and emits a ``dte.mode.changed``
event with who and why; it does no checks itself: the ``switch-mode`` flow guards the switch
(blocks complete, account kind, human approval for live) before calling it.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from prefect.blocks.core import Block
from pydantic import ValidationError

from blocks.settings import (
    BLOCK_CLASSES,
    DteBlock,
    IBKRConnection,
    OpenAICredentials,
    PolygonCredentials,
    StorageSettings,
    TradingSettings,
    as_mode,
    data_fields,
    secret_fields,
)
from core.models import TradingMode

MODES: tuple[str, ...] = tuple(m.value for m in TradingMode)  # development, testing, live
MODE_VARIABLE = "dte-mode"
DEFAULT_MODE = TradingMode.DEVELOPMENT
PLACEHOLDER = "REPLACE-ME"

# TOML table / environment section -> block class
SECTIONS: dict[str, type[DteBlock]] = {
    "ibkr": IBKRConnection,
    "polygon": PolygonCredentials,
    "openai": OpenAICredentials,
    "storage": StorageSettings,
    "trading": TradingSettings,
}

_B = TypeVar("_B", bound=Block)

Source = Mapping[str, str] | Path | str | os.PathLike[str]


class RegistrationError(ValueError):
    """A source that cannot become block documents. The message names fields, never values."""


class MissingBlockDocuments(LookupError):
    """Block documents of a mode that are not registered; ``missing`` holds ``slug/mode`` names."""

    def __init__(self, mode: TradingMode, missing: list[str]) -> None:
        self.mode = mode
        self.missing = missing
        super().__init__(
            f"missing block documents for mode {mode.value}: {', '.join(missing)}; "
            f"run `dte blocks register --mode {mode.value}`"
        )


def block_ref(cls: type[Block], mode: TradingMode | str) -> str:
    """``<block type slug>/<mode>``, the name Prefect shows for a document."""
    return f"{cls.get_block_type_slug()}/{as_mode(mode).value}"


# ---------------------------------------------------------------------------------------------
# sources


def env_name(mode: TradingMode | str, section: str, field_name: str) -> str:
    return f"DTE_{as_mode(mode).value}_{section}_{field_name}".upper()


def read_env(mode: TradingMode | str, environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Per-section raw values for ``mode`` from ``DTE_<MODE>_<SECTION>_<FIELD>`` variables."""
    m = as_mode(mode)
    prefix = f"DTE_{m.value.upper()}_"
    out: dict[str, dict[str, Any]] = {}
    unknown: list[str] = []
    for key, raw in environ.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        section = next((s for s in SECTIONS if rest.startswith(s.upper() + "_")), None)
        name = rest[len(section) + 1 :].lower() if section else ""
        if section is None or name not in data_fields(SECTIONS[section]):
            unknown.append(key)
            continue
        if not raw.strip():
            continue
        value: Any = raw
        if section == "trading" and name in ("smart0dte_overrides", "mag7_overrides"):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = None
            if not isinstance(value, dict):
                raise RegistrationError(f"{key} must be a JSON object")
        out.setdefault(section, {})[name] = value
    if unknown:
        raise RegistrationError(
            "unknown variables (expected DTE_<MODE>_<SECTION>_<FIELD>, see blocks/registry.py): "
            + ", ".join(sorted(unknown))
        )
    return out


def read_toml(
    mode: TradingMode | str, path: Path | str | os.PathLike[str]
) -> dict[str, dict[str, Any]]:
    """Per-section raw values for ``mode`` from the ``[<mode>.<section>]`` tables of a TOML file.

    A file without a table for ``mode`` gives no values. Unknown tables and keys are refused.
    """
    m = as_mode(mode)
    file = Path(path)
    try:
        with file.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise RegistrationError(f"TOML file not found: {file}") from None
    except tomllib.TOMLDecodeError as exc:  # message has a line/column, not the value
        raise RegistrationError(f"{file} is not valid TOML: {exc}") from None
    problems = [f"[{k}]" for k in data if k not in MODES]
    table = data.get(m.value, {})
    if not isinstance(table, dict):
        raise RegistrationError(f"{file}: {m.value} must be a table")
    out: dict[str, dict[str, Any]] = {}
    for section, values in table.items():
        if section not in SECTIONS or not isinstance(values, dict):
            problems.append(f"[{m.value}.{section}]")
            continue
        allowed = data_fields(SECTIONS[section])
        problems += [f"{m.value}.{section}.{k}" for k in values if k not in allowed]
        out[section] = {k: v for k, v in values.items() if k in allowed}
    if problems:
        raise RegistrationError(f"{file}: unknown tables or keys: {', '.join(problems)}")
    return out


def read_source(mode: TradingMode | str, source: Source | None) -> dict[str, dict[str, Any]]:
    """Raw values for ``mode``: a mapping is environment variables, a path is a TOML file,
    ``None`` is ``os.environ``."""
    if source is None:
        return read_env(mode, os.environ)
    if isinstance(source, Mapping):
        return read_env(mode, source)
    return read_toml(mode, source)


def placeholders(values: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``section.field`` names whose value still contains the example's ``REPLACE-ME``."""
    return [
        f"{section}.{name}"
        for section, fields in values.items()
        for name, value in fields.items()
        if isinstance(value, str) and PLACEHOLDER in value
    ]


# ---------------------------------------------------------------------------------------------
# registration


@dataclass(frozen=True)
class BlockReport:
    """What registration did to one document. No values: field names only."""

    ref: str
    action: Literal["created", "updated", "unchanged"]
    fields_set: tuple[str, ...]
    secrets_set: tuple[str, ...]
    missing: tuple[str, ...]

    def describe(self) -> str:
        given = (
            ", ".join(f"{n} (secret: ***)" if n in self.secrets_set else n for n in self.fields_set)
            or "nothing"
        )
        text = f"{self.ref}: {self.action}; from source: {given}"
        if self.missing:
            text += f"; missing for this mode: {', '.join(self.missing)}"
        return text


def register_types() -> list[str]:
    """Create or update the five block types and schemas on the Prefect API; returns the slugs."""
    for cls in BLOCK_CLASSES:
        cls.register_type_and_schema()
    return [cls.get_block_type_slug() for cls in BLOCK_CLASSES]


def _load_or_none(cls: type[_B], mode: TradingMode) -> _B | None:
    from prefect.exceptions import ObjectNotFound

    try:
        return cast(_B, cls.load(mode.value))
    except ValueError as exc:  # Prefect wraps ObjectNotFound: "Unable to find block document"
        if isinstance(exc.__cause__, ObjectNotFound):
            return None
        raise


def _values(block: Block) -> dict[str, Any]:
    return {name: getattr(block, name) for name in data_fields(type(block))}


def _validated(cls: type[_B], ref: str, values: dict[str, Any]) -> _B:
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        raise RegistrationError(f"{ref}: {details}") from None


def register_documents(
    mode: TradingMode | str, source: Source | None = None, *, replace: bool = False
) -> list[BlockReport]:
    """Create or update the five documents of ``mode`` from ``source`` (see the module doc).

    All five are validated before any is saved, so a bad value leaves the stored documents as
    they were. An IB account of the wrong kind for the mode (a live account in testing, a paper
    account in live) is refused. Returns one report per document; raises
    :class:`RegistrationError`.
    """
    m = as_mode(mode)
    values = read_source(m, source)
    if left := placeholders(values):
        raise RegistrationError(
            f"fill in {', '.join(f'{m.value}.{name}' for name in left)} "
            f"(still the {PLACEHOLDER} placeholder) or remove those lines"
        )
    planned: list[tuple[DteBlock, DteBlock | None, bool, tuple[str, ...], str]] = []
    for section, cls in SECTIONS.items():
        ref = block_ref(cls, m)
        section_values = values.get(section, {})
        broken = False
        try:
            stored = _load_or_none(cls, m)
        except RuntimeError:  # Prefect: the stored document fails validation (schema changed)
            if not replace:
                raise RegistrationError(
                    f"{ref}: the stored document does not fit the current block schema; "
                    "register with --replace (replace=True) to rebuild it"
                ) from None
            stored, broken = None, True
        merged = {} if stored is None or replace else _values(stored)
        merged.update(section_values)
        block = _validated(cls, ref, merged)
        if isinstance(block, IBKRConnection) and (wrong := block.problems(m)):
            raise RegistrationError(f"{ref}: {'; '.join(wrong)}")
        planned.append((block, stored, broken, tuple(section_values), ref))
    reports = []
    for block, stored, broken, given, ref in planned:
        cls = type(block)
        action: Literal["created", "updated", "unchanged"]
        if stored is None:
            action = "updated" if broken else "created"
        elif _values(stored) == _values(block):
            action = "unchanged"
        else:
            action = "updated"
        if action != "unchanged":
            block.save(m.value, overwrite=True)
        secrets = set(secret_fields(cls))
        reports.append(
            BlockReport(
                ref=ref,
                action=action,
                fields_set=given,
                secrets_set=tuple(n for n in given if n in secrets),
                missing=tuple(block.completeness(m)),
            )
        )
    return reports


# ---------------------------------------------------------------------------------------------
# loading


@dataclass(frozen=True)
class ModeBlocks:
    """The five documents of one mode. ``repr`` is safe to log: secrets print as ``**********``.

    ``defaulted`` names documents that were not registered and were replaced by embedded
    defaults (development only).
    """

    mode: TradingMode
    ibkr: IBKRConnection
    polygon: PolygonCredentials
    openai: OpenAICredentials
    storage: StorageSettings
    trading: TradingSettings
    defaulted: tuple[str, ...] = field(default=())

    def documents(self) -> dict[str, DteBlock]:
        return {
            block_ref(type(b), self.mode): b
            for b in (self.ibkr, self.polygon, self.openai, self.storage, self.trading)
        }

    def missing(self) -> dict[str, list[str]]:
        """Per document (``slug/mode``), the fields this mode needs that are empty."""
        out = {ref: b.completeness(self.mode) for ref, b in self.documents().items()}
        return {ref: names for ref, names in out.items() if names}

    def problems(self) -> list[str]:
        """Everything that stops this mode from running: missing fields and wrong values."""
        out = [f"{ref}: missing {', '.join(names)}" for ref, names in self.missing().items()]
        ref = block_ref(IBKRConnection, self.mode)
        out += [f"{ref}: {p}" for p in self.ibkr.problems(self.mode)]
        return out

    @property
    def ready(self) -> bool:
        return not self.problems()


def load_mode_blocks(mode: TradingMode | str, *, development_defaults: bool = True) -> ModeBlocks:
    """Load the five documents of ``mode``.

    Missing documents raise :class:`MissingBlockDocuments` naming each one, except in development
    (with ``development_defaults``), where they are replaced by the embedded defaults.
    Synchronous (the flows here are sync); from async code use ``asyncio.to_thread``.
    """
    m = as_mode(mode)
    found: dict[str, DteBlock] = {}
    missing: list[str] = []
    defaulted: list[str] = []
    for section, cls in SECTIONS.items():
        block = _load_or_none(cls, m)
        if block is None:
            if m is TradingMode.DEVELOPMENT and development_defaults:
                block = cls()
                defaulted.append(block_ref(cls, m))
            else:
                missing.append(block_ref(cls, m))
                continue
        found[section] = block
    if missing:
        raise MissingBlockDocuments(m, missing)
    return ModeBlocks(
        mode=m,
        ibkr=_as(found["ibkr"], IBKRConnection),
        polygon=_as(found["polygon"], PolygonCredentials),
        openai=_as(found["openai"], OpenAICredentials),
        storage=_as(found["storage"], StorageSettings),
        trading=_as(found["trading"], TradingSettings),
        defaulted=tuple(defaulted),
    )


def _as(block: Block, cls: type[_B]) -> _B:
    if not isinstance(block, cls):  # pragma: no cover - Block.load returns cls instances
        raise TypeError(f"expected {cls.__name__}, got {type(block).__name__}")
    return block


def load_active_blocks() -> ModeBlocks:
    """The active mode's documents: what a flow calls once at its start."""
    return load_mode_blocks(active_mode())


# ---------------------------------------------------------------------------------------------
# the active mode


def active_mode() -> TradingMode:
    """The mode in the Prefect Variable ``dte-mode``; development when it is unset."""
    from prefect.variables import Variable

    value = Variable.get(MODE_VARIABLE, default=DEFAULT_MODE.value)
    try:
        return as_mode(str(value))
    except ValueError:
        raise ValueError(
            f"Prefect Variable {MODE_VARIABLE!r} holds {value!r}, not one of {', '.join(MODES)}"
        ) from None


def set_active_mode(mode: TradingMode | str, who: str, why: str) -> TradingMode:
    """Write the Variable ``dte-mode`` and emit ``dte.mode.changed``; returns the previous mode.

    No checks: call it from the ``switch-mode`` flow, which validates the target mode first.
    """
    from prefect.events import emit_event
    from prefect.variables import Variable

    m = as_mode(mode)
    if not who.strip() or not why.strip():
        raise ValueError("a mode change needs who and why")
    before = active_mode()
    Variable.set(MODE_VARIABLE, m.value, tags=["dte-trader"], overwrite=True)
    emit_event(
        event="dte.mode.changed",
        resource={"prefect.resource.id": "dte.mode", "prefect.resource.name": MODE_VARIABLE},
        payload={"from": before.value, "to": m.value, "who": who, "why": why},
    )
    return before
