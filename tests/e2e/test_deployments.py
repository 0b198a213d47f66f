"""prefect.yaml on a real Prefect server: bootstrap, deploy, process worker, runs through the CLI.

What an operator does on the trading host (``make deploy``, then the worker service), on loopback
with a temporary ``PREFECT_HOME`` and no network: start ``prefect server start``, run
``deployments/deploy.sh`` (bootstrap + ``prefect --no-prompt deploy --all``), start a process
worker, trigger a development-mode Smart-0DTE day with ``prefect deployment run``, then check
through the Prefect API (runs, artifacts, events) and the ledger (orders, flat book).

The deploy runs from the repository root with ``DTE_HOME`` pointing at a directory that does not
exist, and the worker with ``DTE_HOME`` = a fresh temporary directory: runs import the flows by
module path from the installed project and write relative paths (``reports/``) under the
worker's ``DTE_HOME``, so nothing depends on the deploying machine's paths.

Two variants: the server on its default SQLite database, and on PostgreSQL (what the README
recommends under load; marked ``services``).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.store import TradeStore
from core.calendar import NY
from core.models import SystemName
from flows.common import window_reason
from tests.e2e.prefect_stack import ROOT, VENV_BIN, PrefectStack, prefect_stack, wait_cli

pytestmark = pytest.mark.slow

DAY = date(2026, 11, 27)  # the day after Thanksgiving: early close 13:00, close-out 12:45
SEED = 21
DEPLOYMENTS = [
    "premarket-brief",
    "market-open-scan",
    "smart0dte-intraday",
    "eod-closeout",
    "eod-report",
    "mag7-weekly-entry",
    "mag7-manage",
    "kill-switch",
    "health-check",
    "switch-mode",
    "backtest",
    "daily-backup",
]
PULL_STEPS = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))["pull"]


# --- PostgreSQL database for the Prefect server ----------------------------------------------


@pytest.fixture
def prefect_pg_url(pg_admin_url: str) -> Iterator[str]:
    """A throwaway PostgreSQL database for the Prefect server (asyncpg URL); dropped afterwards.

    ``pg_admin_url`` skips (or fails with REQUIRE_SERVICES=1, via ``require_service``) when
    PostgreSQL is unreachable.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(pg_admin_url)
    libpq = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"dte_prefect_e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            admin.set(drivername="postgresql+asyncpg", database=name).render_as_string(
                hide_password=False
            )
        )
    finally:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- Prefect API checks (async client against the test server) ---------------------------------


def api(stack: PrefectStack, coro_fn: Any, *args: Any) -> Any:
    """Run ``coro_fn(client, *args)`` with a client bound to the test server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def main() -> Any:
        async with get_client() as client:
            return await coro_fn(client, *args)

    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        return asyncio.run(main())


async def deployments_by_name(client: Any) -> dict[str, Any]:
    return {d.name: d for d in await client.read_deployments()}


async def wait_scheduled_runs(client: Any, deployment_id: Any, timeout: float = 30) -> list[Any]:
    """The runs the scheduler service creates for a deployment after the deploy."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline = time.monotonic() + timeout
    while True:
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
        auto = [r for r in runs if r.auto_scheduled]
        if auto or time.monotonic() > deadline:
            return auto
        await asyncio.sleep(0.5)


async def deactivate_schedules(client: Any) -> int:
    """Keep cron runs out of the test: deactivate every schedule and delete scheduled runs."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    for dep in await client.read_deployments():
        for sched in dep.schedules:
            await client.update_deployment_schedule(dep.id, sched.id, active=False)
    deleted = 0
    for _ in range(2):  # a scheduler pass may have been in flight
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            )
        )
        for run in runs:
            await client.delete_flow_run(run.id)
            deleted += 1
        await asyncio.sleep(0.5)
    return deleted


async def read_run(client: Any, run_id: str) -> Any:
    return await client.read_flow_run(uuid.UUID(run_id))


async def run_artifact_keys(client: Any, run_id: str) -> set[str]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    artifacts = await client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(run_id)])
        )
    )
    return {a.key for a in artifacts if a.key}


async def run_events(client: Any, run_id: str, expect: str, timeout: float = 20) -> list[str]:
    """Event names recorded for a flow run (``/api/events/filter``); waits for ``expect``."""
    from prefect.events.filters import EventFilter, EventOccurredFilter, EventResourceFilter

    since = datetime.now(tz=NY) - timedelta(hours=1)
    flt = EventFilter(
        occurred=EventOccurredFilter(since=since, until=datetime.now(tz=NY) + timedelta(hours=1)),
        resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
    )
    deadline = time.monotonic() + timeout
    while True:
        page = await client.read_events(filter=flt, limit=50)
        names = [e.event for e in page.events]
        if expect in names or time.monotonic() > deadline:
            return names
        await asyncio.sleep(0.5)


async def wait_final(client: Any, run_ids: list[str], timeout: float) -> list[Any]:
    """Poll the flow runs every 0.25 s until all are in a final state (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = [await client.read_flow_run(uuid.UUID(i)) for i in run_ids]
        if all(r.state is not None and r.state.is_final() for r in runs):
            return runs
        if time.monotonic() > deadline:
            return runs
        await asyncio.sleep(0.25)


# --- the scenario ------------------------------------------------------------------------------


def run_deployments(
    stack: PrefectStack, label: str, *runs: tuple[str, dict[str, Any]], timeout: float = 120
) -> list[str]:
    """``prefect deployment run`` each (concurrently), wait until all are final; their ids."""
    t0 = time.monotonic()
    clis = [stack.trigger(f"{name}/{name}", params) for name, params in runs]
    run_ids = [wait_cli(cli, stack) for cli in clis]
    final = api(stack, wait_final, run_ids, timeout)
    stack.timings[f"trigger -> final: {label}"] = time.monotonic() - t0
    for (name, _), run in zip(runs, final, strict=True):
        assert run.state is not None and run.state.is_final(), (
            f"{name} not final after {timeout} s: {run.state}\n{stack.logs()}"
        )
    return run_ids


def wall_clock_check(now: datetime) -> tuple[str, set[str]]:
    """Which deployment to run with ``clock=wall`` now, and the state names it may end in.

    The intraday loop is only triggered when it must skip (now and a few minutes from now):
    inside its window it would loop until the close-out. Otherwise eod-report, which ends
    "Skipped" before 16:00 or on a closed day and "Completed" (a real report) after.
    """
    later = now + timedelta(minutes=3)
    if window_reason("smart0dte-intraday", now) and window_reason("smart0dte-intraday", later):
        return "smart0dte-intraday", {"Skipped"}
    names = {"Skipped" if window_reason("eod-report", t) else "Completed" for t in (now, later)}
    return "eod-report", names


def run_trading_day(
    stack: PrefectStack, tmp: Path, *, report: bool = True, intraday: bool = True
) -> None:
    """Deploy, then scan, intraday, close-out (+ the report) of 2026-11-27 through the worker.

    ``report``: also run eod-report, which writes ``reports/<day>/`` relative to the run's
    working directory, i.e. under the worker's ``DTE_HOME`` (the cwd proof). ``intraday``: also
    run the minute loop and the close-out (the longest runs; the second server backend skips
    them, they do not depend on it).
    """
    timings = stack.timings
    db_url = f"sqlite:///{tmp / 'dte.db'}"
    worker_home = tmp / "worker-home"  # the worker host's checkout ($DTE_HOME) ...
    worker_home.mkdir()
    # ... recognised by its prefect.yaml (first pull step); the code itself is imported from
    # the installed project, not from here
    shutil.copy(ROOT / "prefect.yaml", worker_home / "prefect.yaml")

    # 1. make deploy: bootstrap + prefect deploy --all, from the repo root, DTE_HOME elsewhere
    deploy_env = dict(stack.env, DTE_HOME="/nonexistent/deploy-machine/checkout")
    t0 = time.monotonic()
    deploy = stack.run(["bash", str(ROOT / "deployments" / "deploy.sh")], env=deploy_env)
    timings["deploy.sh (bootstrap + deploy)"] = time.monotonic() - t0
    out = deploy.stdout + deploy.stderr
    assert deploy.returncode == 0, f"{out}\n{stack.logs()}"
    assert "bootstrap: work pool 'dte-process' (process): created" in out, out
    assert "bootstrap: variable 'dte-mode' = 'development': created" in out, out

    # rerunning the bootstrap changes nothing (checked at the end; it runs alongside the day)
    again = subprocess.Popen(
        [str(VENV_BIN / "python"), str(ROOT / "deployments" / "bootstrap.py")],
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    # 2. what the server holds
    deps = api(stack, deployments_by_name)
    expected = set(DEPLOYMENTS)
    assert set(deps) == expected
    for name, dep in deps.items():
        assert dep.entrypoint.startswith("flows."), dep.entrypoint
        assert dep.pull_steps == PULL_STEPS, (
            f"{name}: the checkout path must be resolved by the worker, not frozen at deploy"
        )
        assert dep.work_pool_name == "dte-process"
    for name in (
        "market-open-scan",
        "smart0dte-intraday",
        "eod-closeout",
        "kill-switch",
        "mag7-weekly-entry",
        "mag7-manage",
    ):
        dep = deps[name]
        assert dep.global_concurrency_limit is not None and dep.global_concurrency_limit.limit == 1
        assert dep.concurrency_options.collision_strategy.value == "CANCEL_NEW", name
    assert sorted(s.schedule.cron for s in deps["eod-closeout"].schedules) == [
        "45 12 * * 1-5",
        "45 15 * * 1-5",
    ]
    assert deps["kill-switch"].schedules == []
    assert deps["market-open-scan"].parameters == {"clock": "wall"}
    assert sorted(s.schedule.cron for s in deps["mag7-manage"].schedules) == [
        "0 10,12,14 * * 1-5",
        "30 15 * * 1-5",
        "45 12 * * 1-5",
    ]
    assert [s.schedule.cron for s in deps["mag7-weekly-entry"].schedules] == ["0 10 * * 4,5"]
    assert deps["mag7-manage"].work_queue_name == "mag7"

    t0 = time.monotonic()
    scheduled = api(stack, wait_scheduled_runs, deps["market-open-scan"].id)
    timings["deploy -> scheduler created cron runs"] = time.monotonic() - t0
    assert scheduled, "the scheduler created no runs for market-open-scan"
    for run in scheduled:
        start = run.expected_start_time.astimezone(NY)
        assert (start.hour, start.minute, start.weekday() < 5) == (9, 35, True), start
    api(stack, deactivate_schedules)

    # 3. the worker, on "another host": its own DTE_HOME and cwd; runs through the CLI
    stack.start_worker(worker_home)
    params = {"day": DAY.isoformat(), "seed": SEED, "clock": "simulated", "speed": 0}
    params["db_url"] = db_url
    wall_deployment, wall_states = wall_clock_check(datetime.now(tz=NY))
    wall_params = {"seed": SEED, "clock": "wall", "db_url": f"sqlite:///{tmp / 'wall.db'}"}

    # the wall-clock run only ever skips or is eod-report: it may share the worker with the scan
    scan_id, wall_id = run_deployments(
        stack,
        "market-open-scan (incl. worker start) + wall-clock check",
        ("market-open-scan", params),
        (wall_deployment, wall_params),
    )
    intraday_id = closeout_id = None
    if intraday:
        (intraday_id,) = run_deployments(
            stack, "smart0dte-intraday (speed=0)", ("smart0dte-intraday", params)
        )
        (closeout_id,) = run_deployments(stack, "eod-closeout", ("eod-closeout", params))
    mag7_params = {k: v for k, v in params.items() if k != "speed"}
    (entry_id,) = run_deployments(stack, "mag7-weekly-entry", ("mag7-weekly-entry", mag7_params))
    (manage_id,) = run_deployments(
        stack, "mag7-manage 12:45", ("mag7-manage", {**mag7_params, "at": "12:45"})
    )
    report_id = None
    if report:
        report_params = {k: v for k, v in params.items() if k != "speed"}
        (report_id,) = run_deployments(stack, "eod-report", ("eod-report", report_params))

    out, _ = again.communicate(timeout=60)
    assert again.returncode == 0, out
    assert "'dte-process' (process): exists, left unchanged" in out, out
    assert "'dte-mode' = 'development': exists, left unchanged" in out, out

    # 4. runs, artifacts and events through the API
    for run_id in (scan_id, intraday_id, closeout_id, entry_id, manage_id, report_id):
        if run_id is None:
            continue
        run = api(stack, read_run, run_id)
        assert run.state.type.value == "COMPLETED", f"{run.name}: {run.state}\n{stack.logs()}"
        assert run.state.name == "Completed", run.state
    wall = api(stack, read_run, wall_id)
    assert wall.state.type.value == "COMPLETED", f"{wall.state}\n{stack.logs()}"
    assert wall.state.name in wall_states, (wall_deployment, wall.state)
    if wall.state.name == "Skipped":
        assert wall.state.message, "a skipped run says why"

    assert "market-open-candidates" in api(stack, run_artifact_keys, scan_id)
    assert "mag7-scan" in api(stack, run_artifact_keys, entry_id)
    if report_id is not None:
        assert {"eod-report", "eod-summary"} <= api(stack, run_artifact_keys, report_id)
    for run_id in (scan_id, intraday_id):
        if run_id is None:
            continue
        names = api(stack, run_events, run_id, "prefect.flow-run.Completed")
        assert "prefect.flow-run.Running" in names, names
        assert "prefect.flow-run.Completed" in names, names

    # 5. the ledger and the worker's checkout
    store = TradeStore(db_url)
    try:
        assert store.orders(day=DAY), "the seeded day placed no order"
        if intraday:
            assert store.open_positions(SystemName.SMART0DTE) == []
            assert store.risk_events(day=DAY, kinds=["eod_flat"]), "close-out verified it flat"
        # Mag7 through the same worker and ledger: its rows are attributed to it
        assert store.signals(day=DAY, system=SystemName.MAG7), "the Mag7 scan recorded signals"
        assert store.pnl_marks(DAY, SystemName.MAG7), "the Mag7 runs marked their book"
        assert all(
            i.intent.system is SystemName.MAG7 for i in store.intents(system=SystemName.MAG7)
        )
        assert store.iv_history("AAPL"), "the 12:45 check (the day's last) stored the day's IV"
    finally:
        store.dispose()
    if report:
        md = worker_home / "reports" / DAY.isoformat() / "report.md"
        assert md.exists(), f"runs must work in the worker's DTE_HOME\n{stack.logs()}"

    print(f"\nPrefect deployment e2e ({tmp.name}):")
    for what, seconds in timings.items():
        print(f"  {what:<60} {seconds:6.1f} s")
    print(f"  wall-clock check: {wall_deployment} -> {wall.state.name}: {wall.state.message}")
    locked = stack.server.log.read_text(encoding="utf-8", errors="replace").count(
        "database is locked"
    )
    print(f"  'database is locked' in the server log: {locked}")


def test_deployments_when_server_on_sqlite_then_a_development_day_runs_through_the_worker(
    tmp_path,
):
    with prefect_stack(tmp_path) as stack:
        run_trading_day(stack, tmp_path)


@pytest.mark.services
def test_deployments_when_server_on_postgresql_then_a_development_day_runs_through_the_worker(
    tmp_path, prefect_pg_url
):
    server_env = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": prefect_pg_url}
    with prefect_stack(tmp_path, server_env=server_env) as stack:
        # the report, the minute loop and the close-out do not depend on the server database:
        # the SQLite variant runs them
        run_trading_day(stack, tmp_path, report=False, intraday=False)
    assert not (tmp_path / "prefect-home" / "prefect.db").exists(), "the server used SQLite"
    import psycopg
    from sqlalchemy.engine import make_url

    libpq = make_url(prefect_pg_url).set(drivername="postgresql")
    with psycopg.connect(libpq.render_as_string(hide_password=False)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'"
        ).fetchone()
    assert row is not None and row[0] >= 4, "the runs are in the PostgreSQL database"
