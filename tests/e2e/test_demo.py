"""The README's demo command as a user runs it: a subprocess, a clean environment, a fresh folder."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from adapters.store import TradeStore
from core.calendar import NY
from core.models import IntentAction, IntentStatus, SystemName

pytestmark = pytest.mark.slow

DTE = Path(sys.executable).with_name("dte")


def clean_env(home: Path) -> dict[str, str]:
    """Only what a fresh login shell has: no PREFECT_*, no DTE_*, no API keys."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "COLUMNS": "120",
    }


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DTE), "demo", *args],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_demo_when_day_after_thanksgiving_then_trades_closes_out_at_1245_and_writes_report(
    tmp_path,
):
    proc = run_demo(tmp_path, "--date", "2026-11-27", "--seed", "21")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "12:45 flat=True" in out
    assert "orders placed" in out
    report = tmp_path / "reports" / "2026-11-27" / "report.md"
    chart = tmp_path / "reports" / "2026-11-27" / "intraday-pnl.png"
    assert report.exists()
    assert chart.stat().st_size > 10_000
    store = TradeStore(f"sqlite:///{tmp_path / 'var' / 'demo' / '2026-11-27-seed21.db'}")
    day = date(2026, 11, 27)
    assert store.orders(day=day), "a seeded day must place at least one order"
    assert any(i.status is IntentStatus.FILLED for i in store.intents(day=day))
    assert store.open_positions(SystemName.SMART0DTE) == []
    closeouts = [
        i
        for i in store.intents(day=day)
        if i.intent.action is IntentAction.CLOSE and i.intent.reason.startswith("closeout")
    ]
    assert closeouts, "seed 21 leaves positions for the 12:45 close-out"
    assert all(i.status is IntentStatus.FILLED for i in closeouts)
    assert all(i.intent.created_at.astimezone(NY).strftime("%H:%M") == "12:45" for i in closeouts)
    store.dispose()
    assert (tmp_path / "var" / "prefect").is_dir()  # Prefect state stays in the demo folder


def test_demo_when_not_a_trading_day_then_clear_message_naming_next_day(tmp_path):
    proc = run_demo(tmp_path, "--date", "2026-11-26")
    assert proc.returncode == 2
    assert "not an NYSE trading day" in proc.stdout
    assert "2026-11-27" in proc.stdout
    assert not (tmp_path / "var").exists()


def test_demo_when_bad_date_format_then_usage_error(tmp_path):
    proc = run_demo(tmp_path, "--date", "27/11/2026")
    assert proc.returncode == 2
    assert "YYYY-MM-DD" in proc.stdout + proc.stderr
