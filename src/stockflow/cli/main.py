"""``stockflow``: run the service, manage the database and keys, check the ledger."""

from __future__ import annotations

import typer

from stockflow.cli import db, inventory, keys, maintenance, payments, serve, worker

app = typer.Typer(
    name="stockflow",
    help="Stockflow: order and inventory backend.",
    no_args_is_help=True,
    add_completion=False,
)
app.command(name="serve")(serve.serve)
app.command(name="worker")(worker.worker)
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(inventory.app, name="inventory")
app.add_typer(maintenance.app, name="maintenance")
app.add_typer(payments.app, name="payments")

if __name__ == "__main__":
    app()
