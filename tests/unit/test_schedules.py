"""prefect.yaml schedules against the NYSE calendar: what fires, and what the guard lets act.

Cron cannot express holidays or early closes, so every scheduled deployment fires on plain
weekdays (or every day) and the flow's calendar guard (``flows.common.window_reason``, applied
when the deployment's parameters say ``clock: wall``) decides whether the run acts or ends
``Skipped``. The fire times are computed with the Prefect server's own ``CronSchedule`` (the code
the scheduler service runs), in the deployment's time zone.

``pytest -s tests/unit/test_schedules.py`` prints the week's table.
"""

from __future__ import annotations

import asyncio
import importlib
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.server.schemas.schedules import CronSchedule

from core.calendar import NY
from flows.common import window_reason

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "prefect.yaml"

POOL = "dte-process"
# Deployments whose flow runs the calendar guard (they take ``clock`` and skip on their own).
GUARDED = {
    "premarket-brief",
    "market-open-scan",
    "smart0dte-intraday",
    "eod-closeout",
    "eod-report",
    "health-check",
    "mag7-weekly-entry",
    "mag7-manage",
}
# Deployments whose flow can place or cancel orders: one run at a time, extra runs cancelled.
PLACES_ORDERS = {
    "market-open-scan",
    "smart0dte-intraday",
    "eod-closeout",
    "kill-switch",
    "mag7-weekly-entry",
    "mag7-manage",
}
# Flows of the ARCHITECTURE table that exist in flows/ (others are added with their flow code).
EXPECTED_DEPLOYMENTS = {
    "premarket-brief",
    "market-open-scan",
    "smart0dte-intraday",
    "eod-closeout",
    "eod-report",
    "kill-switch",
    "daily-backup",
    "health-check",
    "switch-mode",
    "mag7-weekly-entry",
    "mag7-manage",
    "backtest",
}
# Deployments whose flow module is written in parallel: checked only once it exists.
OPTIONAL_MODULES = {"daily-backup": ROOT / "flows" / "backup.py"}


def load_deployments() -> dict[str, dict[str, Any]]:
    spec = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    return {d["name"]: d for d in spec["deployments"]}


def fire_times(deployment: dict[str, Any], start: date, end: date) -> list[datetime]:
    """Every cron fire time of ``deployment`` in [start, end) as the Prefect scheduler computes it."""
    times: list[datetime] = []
    for sched in deployment.get("schedules") or []:
        if not sched.get("active", True):
            continue
        cron = CronSchedule(cron=sched["cron"], timezone=sched["timezone"])
        dates = asyncio.run(
            cron.get_dates(
                start=datetime.combine(start, datetime.min.time(), tzinfo=NY),
                end=datetime.combine(end, datetime.min.time(), tzinfo=NY) - timedelta(seconds=1),
            )
        )
        times += [datetime.fromtimestamp(d.timestamp(), tz=NY) for d in dates]
    return sorted(times)


def decide(name: str, t: datetime) -> str | None:
    """None when a run fired at ``t`` acts, else the Skipped message its flow would return."""
    return window_reason(name, t) if name in GUARDED else None


def week_table(start: date, end: date) -> list[tuple[str, datetime, str | None]]:
    rows = []
    for name, dep in load_deployments().items():
        rows += [(name, t, decide(name, t)) for t in fire_times(dep, start, end)]
    return sorted(rows, key=lambda r: (r[1], r[0]))


def print_table(title: str, rows: list[tuple[str, datetime, str | None]]) -> None:
    print(f"\n{title}")
    print(f"{'fires (America/New_York)':<26} {'deployment':<20} {'guard':<6} reason")
    for name, t, why in rows:
        verdict = "act" if why is None else "skip"
        note = why or ("" if name in GUARDED else "(no calendar guard: every fire acts)")
        print(f"{t:%a %Y-%m-%d %H:%M %Z}  {name:<20} {verdict:<6} {note}")


def fired_times(rows: list[tuple[str, datetime, str | None]], name: str) -> list[str]:
    return [f"{t:%a %m-%d %H:%M}" for n, t, _ in rows if n == name]


def acting(rows: list[tuple[str, datetime, str | None]], name: str) -> list[str]:
    return [f"{t:%a %m-%d %H:%M}" for n, t, why in rows if n == name and why is None]


def test_schedules_when_thanksgiving_week_then_guard_acts_only_on_sessions_and_the_real_closeout():
    # Mon 11-23 .. Sun 11-29 2026: Thu 11-26 Thanksgiving (closed), Fri 11-27 closes at 13:00.
    rows = week_table(date(2026, 11, 23), date(2026, 11, 30))
    print_table("Thanksgiving week 2026 (Thu closed, Fri early close 13:00)", rows)

    fired = {name: [f"{t:%a %H:%M}" for n, t, _ in rows if n == name] for name, *_ in rows}
    assert fired["eod-closeout"] == [
        f"{d} {hm}" for d in ("Mon", "Tue", "Wed", "Thu", "Fri") for hm in ("12:45", "15:45")
    ]
    assert fired["daily-backup"] == [
        f"{d} 17:00" for d in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    ]
    assert "kill-switch" not in fired  # manual only

    sessions = ("Mon 11-23", "Tue 11-24", "Wed 11-25", "Fri 11-27")
    assert acting(rows, "market-open-scan") == [f"{d} 09:35" for d in sessions]
    assert acting(rows, "smart0dte-intraday") == [f"{d} 09:40" for d in sessions]
    assert acting(rows, "eod-closeout") == [
        "Mon 11-23 15:45",
        "Tue 11-24 15:45",
        "Wed 11-25 15:45",
        "Fri 11-27 12:45",
    ]
    assert acting(rows, "eod-report") == [f"{d} 16:15" for d in sessions]
    assert acting(rows, "premarket-brief") == [f"{d} 09:00" for d in sessions]
    # The backup is not a trading action: it runs every day, holidays and weekends included.
    assert len(acting(rows, "daily-backup")) == 7

    health = acting(rows, "health-check")
    assert len(health) == 4 * 91  # every 5 min 09:00-16:30 (91 runs) on the four sessions
    assert health[0] == "Mon 11-23 09:00"
    assert health[-1] == "Fri 11-27 16:30"

    thursday = [(n, why) for n, t, why in rows if t.date() == date(2026, 11, 26) and n in GUARDED]
    assert len(thursday) == 6 + 91 + 1 + 5  # + mag7-weekly-entry 10:00, five mag7-manage fires
    for name, why in thursday:
        assert why is not None, name
        assert why.startswith("market closed"), why
        assert "2026-11-27" in why, why  # names the next session

    friday_1545 = next(
        why
        for n, t, why in rows
        if n == "eod-closeout" and t == datetime(2026, 11, 27, 15, 45, tzinfo=NY)
    )
    assert friday_1545 is not None
    assert "12:45" in friday_1545
    assert "early close" in friday_1545

    # Mag7: the weekly scan fires Thu and Fri at 10:00 and acts on Friday (Thursday is closed);
    # the checks act at 10:00/12:00/14:00/15:30, on the early close at 10:00/12:00/12:45.
    assert fired_times(rows, "mag7-weekly-entry") == ["Thu 11-26 10:00", "Fri 11-27 10:00"]
    assert acting(rows, "mag7-weekly-entry") == ["Fri 11-27 10:00"]
    full_days = ("Mon 11-23", "Tue 11-24", "Wed 11-25")
    assert acting(rows, "mag7-manage") == [
        *[f"{d} {hm}" for d in full_days for hm in ("10:00", "12:00", "14:00", "15:30")],
        "Fri 11-27 10:00",
        "Fri 11-27 12:00",
        "Fri 11-27 12:45",
    ]
    friday_1530 = next(
        why
        for n, t, why in rows
        if n == "mag7-manage" and t == datetime(2026, 11, 27, 15, 30, tzinfo=NY)
    )
    assert friday_1530 is not None
    assert "12:45 today (early close)" in friday_1530
    wednesday_1245 = next(
        why
        for n, t, why in rows
        if n == "mag7-manage" and t == datetime(2026, 11, 25, 12, 45, tzinfo=NY)
    )
    assert wednesday_1245 is not None  # the 12:45 cron is for early closes only


def test_schedules_when_christmas_week_then_closeout_acts_at_1245_on_christmas_eve():
    # Thu 12-24 closes at 13:00, Fri 12-25 closed.
    rows = week_table(date(2026, 12, 21), date(2026, 12, 28))
    print_table("Christmas week 2026 (Thu early close 13:00, Fri closed)", rows)
    assert acting(rows, "eod-closeout") == [
        "Mon 12-21 15:45",
        "Tue 12-22 15:45",
        "Wed 12-23 15:45",
        "Thu 12-24 12:45",
    ]
    assert acting(rows, "market-open-scan") == [
        f"{d} 09:35" for d in ("Mon 12-21", "Tue 12-22", "Wed 12-23", "Thu 12-24")
    ]
    # Friday is Christmas: the Mag7 scan moves to Thursday, which closes early at 13:00
    assert acting(rows, "mag7-weekly-entry") == ["Thu 12-24 10:00"]
    friday = next(
        why
        for n, t, why in rows
        if n == "mag7-weekly-entry" and t == datetime(2026, 12, 25, 10, 0, tzinfo=NY)
    )
    assert friday is not None
    assert friday.startswith("market closed")
    assert [a for a in acting(rows, "mag7-manage") if a.startswith("Thu")] == [
        "Thu 12-24 10:00",
        "Thu 12-24 12:00",
        "Thu 12-24 12:45",
    ]


def test_schedules_when_good_friday_week_then_mag7_scan_acts_on_thursday_only():
    # 2027-03-26 Good Friday: NYSE closed, not a federal holiday; Thursday is a full day.
    rows = week_table(date(2027, 3, 22), date(2027, 3, 29))
    print_table("Good Friday week 2027 (Fri closed)", rows)
    assert fired_times(rows, "mag7-weekly-entry") == ["Thu 03-25 10:00", "Fri 03-26 10:00"]
    assert acting(rows, "mag7-weekly-entry") == ["Thu 03-25 10:00"]
    assert len(acting(rows, "mag7-manage")) == 4 * 4  # Mon-Thu, four checks each
    assert not [a for a in acting(rows, "mag7-manage") if a.startswith("Fri")]


def test_schedules_when_normal_week_then_mag7_scan_skips_thursday_naming_friday():
    rows = week_table(date(2026, 11, 30), date(2026, 12, 7))
    assert acting(rows, "mag7-weekly-entry") == ["Fri 12-04 10:00"]
    thursday = next(
        why for n, t, why in rows if n == "mag7-weekly-entry" and t.date() == date(2026, 12, 3)
    )
    assert thursday == (
        "2026-12-03 (Thursday) is not the Mag7 entry day; next entry scan 2026-12-04 (Friday) 10:00"
    )
    assert len(acting(rows, "mag7-manage")) == 5 * 4
    assert len(fired_times(rows, "mag7-manage")) == 5 * 5  # + the early-close-only 12:45


def test_schedules_when_dst_ends_then_cron_keeps_new_york_wall_time():
    # 2026-11-01: EDT -> EST. 09:35 New York is 13:35 UTC before and 14:35 UTC after.
    dep = load_deployments()["market-open-scan"]
    times = fire_times(dep, date(2026, 10, 29), date(2026, 11, 4))
    assert [f"{t:%m-%d %H:%M}" for t in times] == [
        "10-29 09:35",
        "10-30 09:35",
        "11-02 09:35",
        "11-03 09:35",
    ]
    assert [t.utcoffset() for t in times] == [timedelta(hours=-4)] * 2 + [timedelta(hours=-5)] * 2


def test_prefect_yaml_when_loaded_then_every_deployment_is_complete():
    deployments = load_deployments()
    assert set(deployments) == EXPECTED_DEPLOYMENTS
    for name, dep in deployments.items():
        assert dep["work_pool"]["name"] == POOL, name
        assert dep["work_pool"]["work_queue_name"] in {"smart0dte", "mag7", "ops"}, name
        assert dep["tags"], name
        assert ":" not in dep["entrypoint"], f"{name}: module path, not a file path"
        for sched in dep.get("schedules") or []:
            assert sched["timezone"] == "America/New_York", name
        if name == "health-check":  # always wall time; its guard is a flag
            assert dep["parameters"] == {"guard": True}
        elif name in GUARDED:
            assert dep["parameters"].get("clock") == "wall", f"{name}: scheduled runs use wall"
            assert dep["schedules"], name
        if name in PLACES_ORDERS:
            assert dep["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert deployments["kill-switch"]["schedules"] == []
    assert deployments["switch-mode"]["schedules"] == []
    assert deployments["backtest"]["schedules"] == []


def test_prefect_yaml_when_loaded_then_code_comes_from_the_workers_checkout():
    spec = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    # Not `pull: []` (runs start in a temp dir) and not omitted (deploy freezes its own cwd):
    # check $DTE_HOME names the checkout, then change into it, both on the worker at run time.
    check, chdir = spec["pull"]
    script = check["prefect.deployments.steps.run_shell_script"]["script"]
    assert "{{" not in script, "the shell expands $DTE_HOME at run time, not prefect deploy"
    assert '"$DTE_HOME/prefect.yaml"' in script
    assert chdir == {
        "prefect.deployments.steps.set_working_directory": {"directory": "{{ $DTE_HOME }}"}
    }
    assert all("pull" not in d for d in spec["deployments"])


@pytest.mark.parametrize(
    ("dte_home", "ok"), [("checkout", True), ("", False), ("elsewhere", False), (None, False)]
)
def test_prefect_yaml_when_pull_check_runs_then_only_a_checkout_passes(tmp_path, dte_home, ok):
    import os
    import subprocess

    spec = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    script = spec["pull"][0]["prefect.deployments.steps.run_shell_script"]["script"]
    (tmp_path / "checkout").mkdir()
    (tmp_path / "checkout" / "prefect.yaml").write_text("name: x\n", encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "DTE_HOME"}
    if dte_home is not None:
        env["DTE_HOME"] = str(tmp_path / dte_home) if dte_home else ""
    proc = subprocess.run(
        ["/bin/sh", "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert (proc.returncode == 0) is ok, proc.stderr
    if not ok:
        assert "DTE_HOME must name the dte-trader checkout" in proc.stderr


@pytest.mark.parametrize("name", sorted(EXPECTED_DEPLOYMENTS))
def test_prefect_yaml_when_entrypoint_imported_then_flow_name_matches_deployment(name):
    optional = OPTIONAL_MODULES.get(name)
    if optional is not None and not optional.exists():
        pytest.skip(f"{optional.relative_to(ROOT)} not written yet")
    from prefect import Flow

    module, attr = load_deployments()[name]["entrypoint"].rsplit(".", 1)
    flow = getattr(importlib.import_module(module), attr)
    assert isinstance(flow, Flow)
    assert flow.name == name
    params = load_deployments()[name].get("parameters") or {}
    assert set(params) <= set(flow.parameters.properties), f"{name}: unknown parameters"
