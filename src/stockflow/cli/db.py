"""``stockflow db``: schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from stockflow.cli._common import console, load_settings, run_with_database
from stockflow.db import migrate
from stockflow.db.engine import Database

app = typer.Typer(help="Apply, roll back and inspect database migrations.", no_args_is_help=True)


@app.command()
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    settings = load_settings()
    migrate.upgrade(settings.database_url, revision)
    console.print(f"database at [bold]{revision}[/bold]")


@app.command()
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")],
) -> None:
    """Roll migrations back to REVISION (``-1`` for one step, ``base`` for an empty schema)."""
    settings = load_settings()
    migrate.downgrade(settings.database_url, revision)
    console.print(f"database at [bold]{revision}[/bold]")


async def _current(database: Database) -> str | None:
    engine: AsyncEngine = database.engine
    async with engine.connect() as connection:
        return await migrate.current_revision(connection)


@app.command()
def current() -> None:
    """Show the applied revision and the latest this build knows."""
    settings = load_settings()
    applied = run_with_database(settings, _current)
    head = migrate.head_revision()
    state = "up to date" if applied == head else "behind"
    console.print(f"applied: {applied or 'none'}  head: {head}  ({state})")
    if applied != head:
        raise typer.Exit(1)


async def _differences(database: Database) -> tuple[str | None, list[object]]:
    async with database.engine.connect() as connection:
        applied = await migrate.current_revision(connection)
        return applied, await migrate.schema_differences(connection)


@app.command()
def check() -> None:
    """Fail if the migrated schema differs from what the models declare.

    Run after ``stockflow db upgrade``; a difference means a model changed without a
    migration (or the other way round).
    """
    settings = load_settings()
    applied, differences = run_with_database(settings, _differences)
    if applied != migrate.head_revision():
        console.print(f"[red]database at {applied or 'no revision'}, not at head[/red]")
        raise typer.Exit(1)
    if differences:
        for difference in differences:
            console.print(f"[red]differs:[/red] {difference}")
        raise typer.Exit(1)
    console.print("[green]models and migrations agree[/green]")
