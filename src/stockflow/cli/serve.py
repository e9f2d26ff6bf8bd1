"""``stockflow serve``: migrate, optionally seed the demo, and run uvicorn."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from stockflow.cli._common import console, load_settings
from stockflow.db import migrate
from stockflow.observability.logging import configure_logging
from stockflow.observability.metrics import MULTIPROCESS_ENV


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (env: STOCKFLOW_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (env: STOCKFLOW_PORT).")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help=(
                "Server processes. With more than one, /metrics sums every process's "
                "counters (kept in PROMETHEUS_MULTIPROC_DIR, or a new temporary directory)."
            ),
        ),
    ] = 1,
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not apply pending migrations on start.")
    ] = False,
    demo: Annotated[
        bool, typer.Option("--demo", help="Seed a demo catalog and print a demo admin key.")
    ] = False,
) -> None:
    """Run the HTTP API."""
    settings = load_settings(host=host, port=port)
    if not no_migrate:
        migrate.upgrade(settings.database_url)
    if demo:
        from stockflow.cli.demo import seed_demo

        seed_demo(settings)
    # A directory made for this run is removed after it; an operator's is left in place.
    created = None
    if workers > 1 or os.environ.get(MULTIPROCESS_ENV):
        ours = not os.environ.get(MULTIPROCESS_ENV)
        directory = prepare_metrics_directory()
        created = directory if ours else None
    configure_logging(settings)
    base = f"http://{settings.host}:{settings.port}"
    console.print(f"Stockflow on [bold]{base}[/bold]  API docs: [bold]{base}/docs[/bold]")
    try:
        uvicorn.run(
            "stockflow.cli.serve:build_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_level=settings.log_level,
            # Its lines go through Stockflow's logging (JSON in production, redacted).
            log_config=None,
            access_log=False,
            server_header=False,
        )
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)


def prepare_metrics_directory() -> Path:
    """Where the server processes keep their metrics, so that a scrape of any one of them
    counts them all: ``PROMETHEUS_MULTIPROC_DIR`` if set (emptied of a previous run's
    files), else a new private directory. Set in the environment the processes inherit,
    before any of them starts."""
    configured = os.environ.get(MULTIPROCESS_ENV)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        # This process's own files are live already (its metrics were defined when it
        # imported them): with one server process, it is the one that serves.
        own = f"_{os.getpid()}.db"
        for stale in directory.glob("*.db"):
            if not stale.name.endswith(own):
                stale.unlink()
    else:
        directory = Path(tempfile.mkdtemp(prefix="stockflow-metrics-"))
        os.environ[MULTIPROCESS_ENV] = str(directory)
    return directory


def build_app() -> object:
    """Entry point for uvicorn's workers: each process builds its app from the environment."""
    from stockflow.app import create_app

    app = create_app()
    # What exists now (modules, schemas, the routes) lives as long as the process: moved
    # out of the collector's sight, it is not traversed again by every full collection.
    gc.collect()
    gc.freeze()
    return app
