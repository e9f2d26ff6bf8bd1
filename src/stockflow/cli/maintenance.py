"""``stockflow maintenance``: housekeeping on demand (the server also runs it on a timer)."""

from __future__ import annotations

import typer

from stockflow.cli._common import console, load_settings, run_with_database
from stockflow.workers import maintenance

app = typer.Typer(help="Housekeeping: prune data past its retention.", no_args_is_help=True)


@app.command()
def run() -> None:
    """Prune once: idempotency records past their expiry (set when each was written, from
    STOCKFLOW_IDEMPOTENCY_TTL_HOURS)."""
    counts = run_with_database(load_settings(), maintenance.run_once)
    for name, count in counts.items():
        console.print(f"{name}: {count} pruned")
