"""``stockflow payments``: check Stripe's payments against the orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from stockflow.cli._common import console, load_settings, run_with_database
from stockflow.db.engine import Database
from stockflow.payments.checkout import build_gateway
from stockflow.payments.reconcile import Difference, reconcile

app = typer.Typer(help="Payments taken through Stripe.", no_args_is_help=True)


@app.command(name="reconcile")
def reconcile_command(
    hours: Annotated[
        int, typer.Option(min=1, max=24 * 90, help="Look at PaymentIntents created this recently.")
    ] = 72,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Apply what Stripe says to each order that differs (as a webhook would).",
        ),
    ] = False,
) -> None:
    """Compare recent Stripe PaymentIntents with the orders, list the differences, and exit
    1 if any is left. The one that matters most is a PaymentIntent that succeeded at Stripe
    while its order still waits for payment (its webhook never arrived): with --repair the
    order is confirmed, exactly as the webhook would have done. Needs
    STOCKFLOW_PAYMENTS=stripe and Stripe's keys."""
    settings = load_settings()
    gateway = build_gateway(settings)
    if gateway is None:
        console.print("[red]payments are not `stripe` (STOCKFLOW_PAYMENTS)[/red]")
        raise typer.Exit(2)

    async def work(database: Database) -> list[Difference]:
        try:
            return await reconcile(
                database,
                gateway,
                since=datetime.now(UTC) - timedelta(hours=hours),
                repair=repair,
            )
        finally:
            await gateway.aclose()

    differences = run_with_database(settings, work)
    if not differences:
        console.print(f"[green]no difference[/green]: Stripe and the orders agree ({hours} h)")
        return
    table = Table()
    for header in ("PaymentIntent", "order"):
        table.add_column(header, no_wrap=True)
    for header in ("at Stripe", "recorded", "order status", "repaired"):
        table.add_column(header)
    for d in differences:
        table.add_row(
            d.intent_id,
            d.order_id or "-",
            d.stripe_status,
            d.recorded,
            d.order_status or "-",
            "yes" if d.repaired else "no",
        )
    console.print(table)
    left = [d for d in differences if not d.repaired]
    if left:
        console.print(f"[red]{len(left)} difference(s) left[/red]")
        raise typer.Exit(1)
    console.print(f"[green]{len(differences)} difference(s) repaired[/green]")
