"""``stockflow worker``: every background job, as a process of its own."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
from prometheus_client import start_http_server

from stockflow.cli._common import console, load_settings
from stockflow.db.engine import Database
from stockflow.observability import tracing
from stockflow.observability.logging import configure_logging
from stockflow.workers.runner import Worker, build_relay


def worker(
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Hand out and send what is due now, once, then exit (no housekeeping).",
        ),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=1,
            max=65535,
            help=(
                "Serve this worker's own counters (deliveries, job durations, heartbeats) "
                "for Prometheus at http://<host>:<port>/metrics. The state read from the "
                "database is on the API's /metrics."
            ),
        ),
    ] = None,
) -> None:
    """Run the background jobs: the outbox relay (webhook, supplier and e-mail deliveries
    with retries), applying suppliers' messages, housekeeping (pruning past retention), the
    submission of consolidated purchase orders and, with payments on, applying Stripe's
    events, retrying Stripe refunds and cancelling orders unpaid past the timeout. Run as
    many as you like beside the servers: they share the work safely. On SIGTERM or Ctrl-C
    the jobs in hand are finished before it exits. Serving with
    STOCKFLOW_WORKER_IN_PROCESS=false leaves these jobs to this command."""
    settings = load_settings()
    configure_logging(settings)
    if metrics_port is not None:
        start_http_server(metrics_port, addr=settings.host)

    async def main() -> None:
        database = Database(settings)
        provider = tracing.provider_from_environment()
        if provider is not None:
            tracing.instrument(provider, database.engine)
        relay = build_relay(settings, database)
        try:
            if once:
                attempted = await relay.run_once()
                console.print(f"deliveries attempted: {attempted}")
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            console.print("Stockflow worker running; SIGTERM or Ctrl-C stops it.")
            await Worker(settings, database, relay).run(stop)
        finally:
            await relay.aclose()
            await database.dispose()
            if provider is not None:
                tracing.uninstrument()
                provider.shutdown()

    asyncio.run(main())
