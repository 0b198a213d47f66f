"""Prefect tasks of the health-check flow."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.exceptions import ObjectNotFound

from core.models import TradingMode
from tasks import health
from tasks.runtime import Runtime, build_runtime


@task(name="build-runtime", cache_policy=NO_CACHE)
def prepare_wall(day: date, seed: int, db_url: str | None, mode: str) -> Runtime:
    return build_runtime(day, seed, time(9, 30), 0.0, db_url, TradingMode(mode), simulated=False)


def _heartbeats(pool: str) -> list[datetime]:
    with get_client(sync_client=True) as client:
        workers = client.read_workers_for_work_pool(work_pool_name=pool)
    return [w.last_heartbeat_time for w in workers if w.last_heartbeat_time is not None]


def _worker(pool: str, now: datetime) -> str:
    try:
        beats = _heartbeats(pool)
    except ObjectNotFound as exc:
        raise RuntimeError(f"work pool {pool!r} does not exist") from exc
    return health.worker_heartbeat(beats, now, pool)


@task(name="probe-all", cache_policy=NO_CACHE)
def probe_all(rt: Runtime, now: datetime, work_pool: str | None) -> list[health.Probe]:
    probes = [
        health.run_probe("database", lambda: health.database(rt)),
        health.run_probe("cache", lambda: health.cache(rt.cache)),
        health.run_probe("market data", lambda: health.market(rt, now)),
        health.run_probe("broker", lambda: health.broker(rt)),
        health.run_probe("intraday loop", lambda: health.loop(rt, now)),
    ]
    if work_pool is not None:
        probes.append(health.run_probe("worker", lambda: _worker(work_pool, now)))
    return probes


@task(name="publish-health", cache_policy=NO_CACHE)
def publish(probes: list[health.Probe], mode: str, now: datetime) -> dict[str, Any]:
    healthy = all(p.ok for p in probes)
    rows = [
        {"probe": p.name, "ok": p.ok, "latency_ms": p.latency_ms, "detail": p.detail}
        for p in probes
    ]
    create_table_artifact(key="health-check", table=rows, description=f"health at {now:%H:%M:%S}")
    lines = [
        f"# Health {'OK' if healthy else 'UNHEALTHY'} at {now:%Y-%m-%d %H:%M:%S %Z} ({mode})",
        "",
        "| probe | ok | ms | detail |",
        "|---|---|---|---|",
        *[
            f"| {p.name} | {'yes' if p.ok else '**NO**'} | {p.latency_ms} | "
            f"{p.detail.replace('|', '/')} |"
            for p in probes
        ],
    ]
    create_markdown_artifact(key="health-report", markdown="\n".join(lines))
    emit_event(
        event="dte.health.ok" if healthy else "dte.health.unhealthy",
        resource={
            "prefect.resource.id": f"dte.account.{mode}",
            "dte.severity": "info" if healthy else "critical",
        },
        payload={"failed": [r for r in rows if not r["ok"]], "checked": len(rows)},
    )
    return {"healthy": healthy, "probes": rows}
