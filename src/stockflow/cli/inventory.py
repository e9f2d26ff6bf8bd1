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
    """Check every stock counter against its source; list drift and exit 1 if any.

    Stock rows' on_hand and reserved are replayed from the ledger; each product's reserved
    units are matched against its open orders' allocated, unshipped units; backordered and
    on_order are summed from open order and purchase-order lines.
    """

    async def work(database: Database) -> list[Drift]:
        async with database.transaction(write=False) as session:
            return await service.reconcile(session)

    drifts = run_with_database(load_settings(), work)
    if not drifts:
        console.print("[green]no drift[/green]: every counter matches its source")
        return
    table = Table("sku", "location", "counter", "recorded", "expected", "difference")
    for drift in drifts:
        table.add_row(
            drift.sku,
            drift.location_code or "(all)",
            drift.field,
            str(drift.recorded),
            str(drift.expected),
            f"{drift.recorded - drift.expected:+d}",
        )
    console.print(table)
    console.print(f"[red]{len(drifts)} counter(s) differ from their source[/red]")
    raise typer.Exit(1)
