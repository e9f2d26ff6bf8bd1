"""``stockflow maintenance``: housekeeping on demand (the server also runs it on a timer)."""

from __future__ import annotations

import typer

from stockflow.cli._common import console, load_settings, run_with_database
from stockflow.workers import maintenance

app = typer.Typer(
    help="Housekeeping: prune data past its retention, submit due purchase orders.",
    no_args_is_help=True,
)


@app.command()
def run() -> None:
    """Prune once: idempotency records past their expiry (set when each was written, from
    STOCKFLOW_IDEMPOTENCY_TTL_HOURS), and events older than STOCKFLOW_EVENT_RETENTION_DAYS
    whose deliveries are all finished, with their delivery logs."""
    settings = load_settings()
    counts = run_with_database(
        settings,
        lambda database: maintenance.run_once(
            database, event_retention_days=settings.event_retention_days
        ),
    )
    for name, count in counts.items():
        console.print(f"{name}: {count} pruned")


@app.command("submit-purchase-orders")
def submit_purchase_orders() -> None:
    """Submit every replenishment draft whose consolidation window has closed (the server
    does this every STOCKFLOW_PO_SUBMIT_INTERVAL_SECONDS when
    STOCKFLOW_PO_CONSOLIDATION_SECONDS is above 0). Safe to run alongside servers: each
    draft is submitted once."""
    submitted = run_with_database(load_settings(), maintenance.submit_due_purchase_orders)
    console.print(f"purchase orders submitted: {len(submitted)}")
    for po_id in submitted:
        console.print(po_id)
