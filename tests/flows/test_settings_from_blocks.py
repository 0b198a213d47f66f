"""Flows read the mode once at start and take limits and strategy numbers from its blocks."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal

import pytest

from tasks import steps

pytestmark = pytest.mark.usefixtures("prefect_api")

DAY = date(2026, 12, 1)


def test_prepare_when_development_settings_registered_then_runtime_uses_them(tmp_path):
    from blocks.registry import register_documents

    register_documents(
        "development",
        {
            "DTE_DEVELOPMENT_TRADING_MAX_POSITION_SIZE": "2000",
            "DTE_DEVELOPMENT_TRADING_APPROVALS_ENABLED": "true",
            "DTE_DEVELOPMENT_TRADING_APPROVAL_TIMEOUT_0DTE_S": "120",
            "DTE_DEVELOPMENT_TRADING_SMART0DTE_OVERRIDES": '{"confidence_threshold": 0.7}',
        },
        replace=True,
    )
    try:
        rt = steps.prepare.fn(DAY, 7, time(10, 0), 0.0, f"sqlite:///{tmp_path / 'a.db'}", None)
        try:
            assert rt.mode.value == "development"  # the Variable's default
            assert rt.limits.max_position_size == Decimal("2000")
            assert rt.limits.max_daily_loss == Decimal("1000")  # not overridden: default
            assert rt.approvals_enabled
            assert rt.approval_timeout.total_seconds() == 120
            assert rt.smart.confidence_threshold == 0.7
        finally:
            rt.close()
    finally:
        register_documents("development", {}, replace=True)  # back to embedded defaults


def test_prepare_when_mode_variable_testing_and_blocks_missing_then_refused(tmp_path):
    from blocks.registry import MissingBlockDocuments, set_active_mode

    set_active_mode("testing", who="test", why="check the refusal")
    try:
        with pytest.raises(MissingBlockDocuments, match="testing"):
            steps.prepare.fn(DAY, 7, time(10, 0), 0.0, f"sqlite:///{tmp_path / 'b.db'}", None)
    finally:
        set_active_mode("development", who="test", why="restore")
