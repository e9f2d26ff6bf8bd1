"""``stockflow inventory``: check stock counters against the ledger."""

from __future__ import annotations

import typer
from rich.table import Table

from stockflow.cli._common import console, load_settings, run_with_database
from stockflow.db.engine import Database
from stockflow.inventory import service
from stockflow.inventory.repository import Drift

app = typer.Typer(help="Inspect stock against the ledger.", no_args_is_help=True)


@app.command()
def reconcile() -> None:
    """Recompute every stock counter from the ledger; list drift and exit 1 if any."""

    async def work(database: Database) -> list[Drift]:
        async with database.transaction(write=False) as session:
            return await service.reconcile(session)

    drifts = run_with_database(load_settings(), work)
    if not drifts:
        console.print("[green]no drift[/green]: every stock row matches its ledger")
        return
    table = Table("sku", "location", "counter", "recorded", "from ledger", "difference")
    for drift in drifts:
        table.add_row(
            drift.sku,
            drift.location_code,
            drift.field,
            str(drift.recorded),
            str(drift.from_ledger),
            f"{drift.recorded - drift.from_ledger:+d}",
        )
    console.print(table)
    console.print(f"[red]{len(drifts)} counter(s) drifted from the ledger[/red]")
    raise typer.Exit(1)
