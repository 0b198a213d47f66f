"""Idempotent bootstrap of a Prefect server for dte-trader; run before ``prefect deploy --all``.

Creates what ``prefect.yaml`` refers to but does not create itself, and never touches anything
that exists already:

* the process work pool ``dte-process`` (its work queues ``smart0dte`` and ``ops`` are created by
  the deploy);
* the Prefect Variable ``dte-mode`` = ``"development"`` (the active trading mode; switching it is
  the job of the ``switch-mode`` flow, so an existing value is left alone);
* the dte block types (documents are filled in with ``dte blocks register``);
* with ``$DTE_ALERT_WEBHOOK_URL`` set: the ``dte-alerts`` webhook block and the alert automations
  (``blocks/alerts.py``; the URL is never printed).

No secrets: credentials belong in per-mode block documents, created separately.

Usage (``PREFECT_API_URL`` must point at the server)::

    .venv/bin/python deployments/bootstrap.py [--pool dte-process] [--mode development]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

# Telemetry off before prefect is imported (the SDK starts its analytics on import).
os.environ.setdefault("DO_NOT_TRACK", "1")

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import VariableCreate, WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import get_current_settings
from prefect.workers.process import ProcessWorker

DEFAULT_POOL = "dte-process"
MODE_VARIABLE = "dte-mode"
DEFAULT_MODE = "development"
MODES = ("development", "testing", "live")


async def ensure_work_pool(client: PrefectClient, name: str) -> str:
    try:
        pool = await client.read_work_pool(name)
    except ObjectNotFound:
        pass
    else:
        if pool.type != "process":
            raise SystemExit(
                f"work pool {name!r} exists with type {pool.type!r}, expected 'process': "
                "delete it or choose another name with --pool"
            )
        return f"work pool {name!r} (process): exists, left unchanged"
    try:
        await client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type="process",
                description="dte-trader flows: a process worker on the trading host",
                base_job_template=ProcessWorker.get_default_base_job_template(),
            )
        )
    except ObjectAlreadyExists:  # created concurrently by another bootstrap
        return f"work pool {name!r} (process): exists, left unchanged"
    return f"work pool {name!r} (process): created"


async def ensure_mode_variable(client: PrefectClient, mode: str) -> str:
    existing = await client.read_variable_by_name(MODE_VARIABLE)
    if existing is not None:
        return f"variable {MODE_VARIABLE!r} = {existing.value!r}: exists, left unchanged"
    try:
        await client.create_variable(
            VariableCreate(name=MODE_VARIABLE, value=mode, tags=["dte-trader"])
        )
    except ObjectAlreadyExists:
        return f"variable {MODE_VARIABLE!r}: exists, left unchanged"
    return f"variable {MODE_VARIABLE!r} = {mode!r}: created"


async def bootstrap(pool: str, mode: str) -> list[str]:
    async with get_client() as client:
        if (error := await client.api_healthcheck()) is not None:
            raise SystemExit(f"Prefect API at {client.api_url} is not healthy: {error}")
        done = [f"Prefect API: {client.api_url}"]
        done.append(await ensure_work_pool(client, pool))
        done.append(await ensure_mode_variable(client, mode))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default=DEFAULT_POOL, help="process work pool name")
    parser.add_argument(
        "--mode",
        default=DEFAULT_MODE,
        choices=MODES,
        help=f"initial value of the {MODE_VARIABLE!r} Variable (only if unset)",
    )
    args = parser.parse_args(argv)
    if not get_current_settings().api.url:  # no server: the client would start a throwaway one
        print(
            "PREFECT_API_URL is not set (env or Prefect profile): point it at the server, "
            "e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api",
            file=sys.stderr,
        )
        return 2
    for line in asyncio.run(bootstrap(args.pool, args.mode)):
        print(f"bootstrap: {line}")
    from blocks.registry import register_types

    print(f"bootstrap: block types registered: {', '.join(register_types())}")
    webhook = os.environ.get("DTE_ALERT_WEBHOOK_URL", "")
    if webhook:
        from blocks.alerts import ensure_alerts

        print(f"bootstrap: alert automations: {', '.join(ensure_alerts(webhook))}")
    else:
        print("bootstrap: alerts not configured (set DTE_ALERT_WEBHOOK_URL to create them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
