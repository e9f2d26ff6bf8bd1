"""``python -m benchmarks``: run the benchmark, or show the SQL one order sends."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from benchmarks import capture, runner, seed
from benchmarks.rows import SeedPlan
from benchmarks.workloads import SCENARIOS

app = typer.Typer(
    help="Stockflow's load and throughput harness (see docs/benchmarks.md).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)
console = Console()
DEFAULT_ADMIN_URL = os.environ.get(
    "STOCKFLOW_BENCH_POSTGRES_URL",
    os.environ.get("STOCKFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)
RESULTS = Path(__file__).resolve().parent / "results"
SMOKE_CATALOG = 200
SMOKE_BACKORDER = 30
SMOKE_DURATION_S = 2.0
SMOKE_WARMUP_S = 1.0

PostgresUrl = Annotated[
    str,
    typer.Option(
        "--postgres-url",
        help="A database on the PostgreSQL server to use, for creating and dropping the "
        "benchmark database (env: STOCKFLOW_BENCH_POSTGRES_URL, else "
        "STOCKFLOW_TEST_POSTGRES_URL).",
    ),
]


@app.command()
def run(
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            "-s",
            help=f"Scenario to run, repeatable: {', '.join(SCENARIOS)}. Default: all.",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(min=0.5, help="Measured seconds per scenario (default 20; smoke 2)."),
    ] = None,
    warmup: Annotated[
        float | None,
        typer.Option(min=0, help="Warm-up seconds before each (default 5; smoke 1)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Concurrent clients (and replay connections).")
    ] = 8,
    rounds: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="`orders`, the replayed SQL and the bare endpoint take turns in this many "
            "rounds, sharing --duration, so that all see the machine in the same state "
            "(default: every order of turns once, 4 rounds for two sides, 6 for three; smoke 1).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="`stockflow serve --workers` (default 1, as `serve` starts: on a machine "
            "whose cores PostgreSQL shares, a second process costs more than it adds).",
        ),
    ] = 1,
    rate_share: Annotated[
        float,
        typer.Option(
            min=0.01, max=1.0, help="Fixed-rate run: this share of the measured orders maximum."
        ),
    ] = 0.5,
    smoke: Annotated[
        bool,
        typer.Option(
            "--smoke",
            help="A few seconds in all: 200 SKUs, 2 s per scenario, results in a temporary "
            "directory unless --out is given; fails only if the harness itself is broken.",
        ),
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Results directory (default benchmarks/results).")
    ] = None,
    catalog_size: Annotated[
        int | None, typer.Option(min=12, help="Regular SKUs (default 10000; smoke 200).")
    ] = None,
    backorder_size: Annotated[
        int | None, typer.Option(min=3, help="Backorder SKUs (default 300; smoke 30).")
    ] = None,
    ceiling: Annotated[
        bool, typer.Option(help="Replay the captured SQL (asyncpg, pgbench).")
    ] = True,
    bare: Annotated[
        bool,
        typer.Option(
            help="Also run `orders` against a bare FastAPI endpoint sending the same SQL "
            "(the framework's floor), taking turns with Stockflow and the replay."
        ),
    ] = True,
    sqlite: Annotated[bool, typer.Option(help="Also run `orders` embedded, on SQLite.")] = True,
    fixed_rate: Annotated[
        bool, typer.Option(help="After `orders`, run it at --rate-share of its maximum.")
    ] = True,
    client: Annotated[
        str, typer.Option(help="Load generator's HTTP client: raw (lean) or httpx.")
    ] = "raw",
    postgres_url: PostgresUrl = DEFAULT_ADMIN_URL,
    database: Annotated[
        str | None,
        typer.Option(
            help="Benchmark database, dropped and created (default stockflow_bench; "
            "smoke stockflow_bench_smoke)."
        ),
    ] = None,
    keep_database: Annotated[
        bool, typer.Option("--keep-database", help="Do not drop it at the end.")
    ] = False,
    random_seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 5,
) -> None:
    """Seed a fresh database, serve Stockflow, drive the scenarios, measure the ceiling and
    write benchmarks/results/<timestamp>.json and .md (and latest.md)."""
    chosen = tuple(scenario) if scenario else SCENARIOS
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        raise typer.BadParameter(f"unknown scenario(s) {unknown}; choose from {SCENARIOS}")
    if client not in ("raw", "httpx"):
        raise typer.BadParameter("--client is raw or httpx")
    ordered = tuple(name for name in SCENARIOS if name in chosen)
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="stockflow-bench-smoke-")) if smoke else RESULTS
    options = runner.Options(
        scenarios=ordered,
        duration_s=duration if duration is not None else (SMOKE_DURATION_S if smoke else 20.0),
        warmup_s=warmup if warmup is not None else (SMOKE_WARMUP_S if smoke else 5.0),
        concurrency=concurrency,
        rounds=rounds if rounds is not None else (1 if smoke else None),
        workers=workers,
        rate_share=rate_share,
        smoke=smoke,
        out=out,
        admin_url=postgres_url,
        database=database or ("stockflow_bench_smoke" if smoke else "stockflow_bench"),
        catalog_size=catalog_size or (SMOKE_CATALOG if smoke else 10_000),
        backorder_size=backorder_size or (SMOKE_BACKORDER if smoke else 300),
        ceiling=ceiling,
        bare=bare,
        sqlite=sqlite,
        fixed_rate=fixed_rate,
        client=client,
        keep_database=keep_database,
        seed=random_seed,
    )
    _, found = runner.run_blocking(options)
    for problem in found:
        console.print(f"[red]problem:[/red] {problem}")
    if found and smoke:
        raise typer.Exit(1)


@app.command()
def statements(
    postgres_url: PostgresUrl = DEFAULT_ADMIN_URL,
    database: Annotated[
        str, typer.Option(help="Scratch database, dropped and created, dropped again.")
    ] = "stockflow_bench_statements",
) -> None:
    """Print the round trips one 3-line order sends to PostgreSQL, with their parameters,
    and how many statements and round trips they make (no load, a few seconds)."""

    async def work() -> capture.CapturedOrder:
        url = seed.database_url(postgres_url, database)
        await seed.recreate_database(postgres_url, database)
        try:
            plan = SeedPlan(SMOKE_CATALOG, 1_000, 0, 0)
            fixture = await seed.seed(url, plan, label="seeding")
            return await capture.capture_order(url, fixture, plan)
        finally:
            await seed.drop_database(postgres_url, database)

    captured = asyncio.run(work())
    for number, step in enumerate(captured.steps, 1):
        console.print(f"[bold]{number:>2}[/bold] {step.origin} {step.kind}", highlight=False)
        console.print(f"   {' '.join(step.statement.split())}", highlight=False, soft_wrap=True)
        if step.parameters:
            console.print(f"   {step.parameters!r}", highlight=False, soft_wrap=True)
    figures = capture.counts(captured.steps)
    check = capture.driver_check(captured)
    if check["driver_prepares"]:
        console.print(f"asyncpg also prepared {check['driver_prepares']} statements")
    console.print(
        f"{figures['statements']} statements in {figures['round_trips']} round trips "
        f"(pool pre-ping: {figures['pre_ping_statements']} statements, "
        f"{figures['pre_ping_round_trips']} round trips)"
    )
