"""``dte backup``: take a backup now (the ``daily-backup`` flow) or restore a backup file.

Mounted by ``cli.main`` as ``app.add_typer(backup_app, name="backup")``. ``restore`` needs no
Prefect: it proves the file restorable first (see ``adapters/backup.py``), refuses a corrupted one
with exit code 1 and changes nothing, asks before replacing the database unless ``--yes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

backup_app = typer.Typer(
    help="Backups of the ledger: take one now, or restore a file.", no_args_is_help=True
)
console = Console()

EXIT_REFUSED = 1  # corrupted or unusable file, failed backup, or not confirmed


def _counts_table(title: str, counts: dict[str, int]) -> Table:
    table = Table(title=title)
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in sorted(counts.items()):
        table.add_row(name, str(rows))
    return table


@backup_app.command("run")
def run(
    db: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default $DTE_DATABASE_URL or var/dte.db)")
    ] = None,
    backup_dir: Annotated[Path, typer.Option("--dir", help="backup folder")] = Path("var/backups"),
    keep_days: Annotated[int, typer.Option(min=0, help="days of backups to keep")] = 14,
) -> None:
    """Run the daily-backup flow now: dump, restore-verify, record, retention."""
    from cli.main import _prefect_env  # lazy: cli.main imports this module to mount it

    _prefect_env(Path("var") / "prefect")
    from flows.backup import daily_backup

    state = daily_backup(
        db_url=db, backup_dir=str(backup_dir), keep_days=keep_days, return_state=True
    )
    if not state.is_completed():
        typer.secho(f"backup FAILED: {state.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_REFUSED)
    result = state.result()
    if not isinstance(result, dict):  # pragma: no cover - the flow returns a dict when completed
        raise typer.Exit(EXIT_REFUSED)
    typer.echo(f"backup ok: {result['path']} ({result['size_bytes']} bytes)")
    typer.echo(result["message"])
    for path in result["pruned"]:
        typer.echo(f"retention: deleted {path}")


@backup_app.command("restore")
def restore(
    file: Annotated[Path, typer.Argument(help="backup file (.sqlite3 or pg_dump .dump)")],
    db: Annotated[
        str | None,
        typer.Option(help="target SQLAlchemy URL (default $DTE_DATABASE_URL or var/dte.db)"),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Verify FILE, then replace the database with it (a copy of the current one is kept)."""
    from adapters.backup import BackupError, CorruptBackupError, stage_restore
    from tasks.runtime import database_url

    url = database_url(db)
    try:
        with stage_restore(file, url) as staged:
            typer.echo(
                f"{file} is a restorable {staged.kind} backup at schema revision "
                f"{staged.revision} ({sum(staged.counts.values())} rows)"
            )
            console.print(_counts_table(f"rows in {file.name}", staged.counts))
            typer.echo(f"target: {staged.target_masked}")
            typer.echo("Stop the Prefect worker and any dte process using it before going on.")
            if not yes and not typer.confirm(
                f"Replace the database at {staged.target_masked} with {file.name}?"
            ):
                typer.echo("aborted: nothing changed")
                raise typer.Exit(EXIT_REFUSED)
            result = staged.apply()
    except CorruptBackupError as exc:
        typer.secho(
            f"refused: {file} is corrupted or not a restorable backup: {exc}\nnothing was changed",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(EXIT_REFUSED) from None
    except BackupError as exc:
        typer.secho(f"restore failed: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    typer.echo(f"restored {file} into {result.target} (schema {result.revision} after migrate)")
    if result.previous_copy is not None:
        typer.echo(f"the previous database was kept as {result.previous_copy}")
    console.print(_counts_table("rows after restore", result.counts))
