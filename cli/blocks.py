"""``dte blocks ...`` (register and show the per-mode block documents) and ``dte mode show``.

Mounted in ``cli/main.py`` as ``app.add_typer(blocks_app, name="blocks")`` and
``app.add_typer(mode_app, name="mode")``. Output names fields and says whether a secret is set
(``***``); it never prints a secret's value.

Like ``dte kill``, the commands talk to ``PREFECT_API_URL`` when it is set, else to the local
Prefect home under ``./var/prefect`` that ``dte demo`` uses (defaults from ``cli.main``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.models import TradingMode

if TYPE_CHECKING:
    from blocks.registry import ModeBlocks

blocks_app = typer.Typer(
    help="Prefect block documents per mode: credentials and settings", no_args_is_help=True
)
mode_app = typer.Typer(
    help="The active trading mode (Prefect Variable dte-mode)", no_args_is_help=True
)
console = Console()


@mode_app.callback()
def _mode_group() -> None:
    """The active trading mode (Prefect Variable dte-mode)."""


NOT_SET = "-"
SECRET_SET = "*** (set)"


def _say(text: str, style: str | None = None) -> None:
    """Print verbatim (no markup: messages may contain TOML "[tables]") and unwrapped."""
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def _prefect_defaults() -> None:
    """The same Prefect environment defaults as the other ``dte`` commands, applied only while
    Prefect is not imported yet (afterwards they could not take effect, e.g. under a test harness)."""
    if "prefect" in sys.modules:
        return
    from cli.main import _prefect_env

    home = Path("var") / "prefect"
    if "PREFECT_HOME" not in os.environ:
        home.mkdir(parents=True, exist_ok=True)  # Prefect does not create missing parents
    _prefect_env(home)


def _modes(mode: TradingMode | None, all_modes: bool) -> list[TradingMode]:
    if mode is not None and all_modes:
        raise typer.BadParameter("give either --mode or --all, not both")
    if mode is None and not all_modes:
        raise typer.BadParameter("give --mode development|testing|live, or --all")
    return [mode] if mode is not None else list(TradingMode)


@blocks_app.command("register")
def register(
    mode: Annotated[TradingMode | None, typer.Option(help="mode whose documents to write")] = None,
    all_modes: Annotated[bool, typer.Option("--all", help="all three modes")] = False,
    toml: Annotated[
        Path | None,
        typer.Option(help="TOML file with [<mode>.<section>] tables (default: DTE_<MODE>_* env)"),
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="rebuild documents from the source only (stored values dropped)")
    ] = False,
) -> None:
    """Create the block types and the documents of a mode from env variables or a TOML file."""
    modes = _modes(mode, all_modes)
    _prefect_defaults()
    from blocks.registry import RegistrationError, register_documents, register_types

    slugs = register_types()
    _say(f"block types: {', '.join(slugs)}")
    source: Path | dict[str, str] = toml if toml is not None else dict(os.environ)
    failed = False
    for m in modes:
        try:
            reports = register_documents(m, source, replace=replace)
        except RegistrationError as exc:
            _say(f"{m.value}: not registered: {exc}", "red")
            failed = True
            continue
        for report in reports:
            _say(report.describe())
    if failed:
        raise typer.Exit(1)


def _value_text(block: object, name: str, secret: bool) -> str:
    value = getattr(block, name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return NOT_SET
    if secret:
        from blocks.settings import is_empty

        return NOT_SET if is_empty(value) else SECRET_SET
    return str(value)


def _blocks_table(blocks: ModeBlocks) -> Table:
    from blocks.settings import data_fields, secret_fields

    missing = blocks.missing()
    table = Table(title=f"block documents: {blocks.mode.value}")
    for column in ("document", "field", "value", "status"):
        table.add_column(column, overflow="fold")
    for ref, block in blocks.documents().items():
        secrets = set(secret_fields(type(block)))
        need = set(missing.get(ref, ()))
        source = "embedded default" if ref in blocks.defaulted else ""
        for i, name in enumerate(data_fields(type(block))):
            status = "MISSING" if name in need else ""
            table.add_row(
                ref if i == 0 else "",
                name,
                _value_text(block, name, name in secrets),
                status or (source if i == 0 else ""),
            )
    return table


def _show_mode(mode: TradingMode) -> bool:
    """Print one mode's documents and completeness; True when the mode is ready."""
    from blocks.registry import MissingBlockDocuments, load_mode_blocks

    try:
        blocks = load_mode_blocks(mode)
    except MissingBlockDocuments as exc:
        console.print(f"[yellow]{mode.value}: not registered: {', '.join(exc.missing)}[/yellow]")
        console.print(f"  run: dte blocks register --mode {mode.value}")
        return False
    console.print(_blocks_table(blocks))
    problems = blocks.problems()
    if problems:
        console.print(f"[yellow]{mode.value}: not ready[/yellow]")
        for problem in problems:
            _say(f"  - {problem}")
    else:
        console.print(f"[green]{mode.value}: complete[/green]")
    return not problems


@blocks_app.command("show")
def show(
    mode: Annotated[TradingMode | None, typer.Option(help="one mode (default: all three)")] = None,
) -> None:
    """Each mode's documents (secrets masked) and what is missing for that mode."""
    _prefect_defaults()
    for m in [mode] if mode is not None else list(TradingMode):
        _show_mode(m)


@mode_app.command("show")
def mode_show() -> None:
    """The active mode (Prefect Variable dte-mode) and whether its blocks are complete."""
    _prefect_defaults()
    from blocks.registry import MODE_VARIABLE, active_mode

    current = active_mode()
    console.print(f"active mode: [bold]{current.value}[/bold] (Prefect Variable {MODE_VARIABLE})")
    _show_mode(current)


@mode_app.command("set")
def mode_set(
    target: Annotated[TradingMode, typer.Argument(help="development, testing or live")],
    why: Annotated[str, typer.Option(help="why the mode changes (recorded)")],
    who: Annotated[str, typer.Option(help="who asks (recorded)")] = "",
    db: Annotated[str | None, typer.Option(help="ledger URL for the mode-change record")] = None,
) -> None:
    """Run the switch-mode flow: blocks complete, IB account checked, live approved in the UI."""
    import getpass

    _prefect_defaults()
    from flows.mode import switch_mode

    state = switch_mode(
        target=target.value, who=who or getpass.getuser(), why=why, db_url=db, return_state=True
    )
    if state.name == "Refused" or not state.is_completed():
        console.print(f"[red]refused[/red]: {state.message}")
        raise typer.Exit(1)
    console.print(f"active mode: [bold]{target.value}[/bold]")
