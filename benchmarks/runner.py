"""One benchmark run from start to finish: databases, servers, scenarios, ceilings, report."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console

from benchmarks import bare, capture, pgbench, replay, report, seed
from benchmarks.httpclient import Connection, Response, connect
from benchmarks.loadgen import Window, closed_loop, open_loop
from benchmarks.rows import Fixture, SeedPlan
from benchmarks.server import Server, running
from benchmarks.workloads import WORKLOADS, Call, Context, Orders

console = Console()
REGULAR_STOCK = 1_000_000
BACKORDER_STOCK = 10
HISTORY_S = 1.0
ROUND_WARMUP_S = 1.0
"""Warm-up before each round of `orders` or of the replayed SQL after the first, whose
warm-up is the run's own."""
CONNECTIONS_PER_CLIENT = 8
"""Keep-alive connections per request in flight: enough that the server's workers, each
serving the connections it accepted, get even shares (see `loadgen.closed_loop`)."""


@dataclass(frozen=True)
class Options:
    scenarios: tuple[str, ...]
    duration_s: float
    warmup_s: float
    concurrency: int
    rounds: int | None
    workers: int
    rate_share: float
    smoke: bool
    out: Path
    admin_url: str
    database: str
    catalog_size: int
    backorder_size: int
    ceiling: bool
    bare: bool
    sqlite: bool
    fixed_rate: bool
    client: str
    keep_database: bool
    seed: int

    @property
    def connections(self) -> int:
        return max(32, self.concurrency * CONNECTIONS_PER_CLIENT)

    @property
    def plan(self) -> SeedPlan:
        return SeedPlan(self.catalog_size, REGULAR_STOCK, self.backorder_size, BACKORDER_STOCK)


SETTINGS_SHOWN = ("autovacuum", "synchronous_commit", "shared_buffers", "max_wal_size", "fsync")


async def settle(url: str) -> float:
    """``VACUUM ANALYZE`` and ``CHECKPOINT`` between measured phases, so that no phase pays
    for the dead rows, stale statistics and dirty pages the one before it left (a hot row's
    page full of its neighbours' dead versions makes every update of it slower). What a
    phase leaves for itself still counts. Returns the seconds it took."""
    began = time.perf_counter()
    conn = await asyncpg.connect(seed.plain_dsn(url))
    try:
        await conn.execute("VACUUM ANALYZE")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return time.perf_counter() - began


def _connector(kind: str, server: Server) -> Callable[[], Connection]:
    return functools.partial(connect, kind, server.host, server.port)


def _say(name: str, summary: dict[str, Any]) -> None:
    latency = summary["latency"]
    console.print(
        f"  [bold]{name:<28}[/bold] {summary['throughput_per_s']:>9,.1f}/s  "
        f"p50 {latency['p50_ms']:6.1f}  p90 {latency['p90_ms']:6.1f}  "
        f"p99 {latency['p99_ms']:6.1f} ms  errors {summary['error_count']}"
        + (
            f"  server {summary['server_cpu_ms_per_request']:.2f} CPU-ms/req"
            if summary.get("server_cpu_ms_per_request")
            else ""
        )
    )


async def _postgres_facts(url: str) -> tuple[str | None, dict[str, str]]:
    """The server's version and the settings that move the figures most."""
    try:
        conn = await asyncpg.connect(seed.plain_dsn(url))
    except (OSError, asyncpg.PostgresError):
        return None, {}
    try:
        version: str = await conn.fetchval("SHOW server_version")
        rows = await conn.fetch(
            "SELECT name, current_setting(name) AS value FROM pg_settings "
            "WHERE name = ANY($1::text[]) ORDER BY name",
            list(SETTINGS_SHOWN),
        )
        settings = {row["name"]: row["value"] for row in rows}
        return version, settings
    finally:
        await conn.close()


Side = Callable[[int, float, float], Awaitable[Window]]
"""One round of one side of the comparison: (round, warm-up seconds, measured seconds) ->
its measured window."""
CeilingRound = Side


def turn_orders(sides: int) -> list[list[int]]:
    """Orders in which ``sides`` sides take their turns, round after round: every side in
    every position, and after every other side, equally often over the list (a balanced
    Latin square; for three sides, six rounds)."""
    forward = [[(start + k) % sides for k in range(sides)] for start in range(sides)]
    if sides % 2 == 0:
        # Williams' design: one square balances what follows what for an even number.
        first = [0] + [(k + 1) // 2 if k % 2 else sides - k // 2 for k in range(1, sides)]
        return [[(start + x) % sides for x in first] for start in range(sides)]
    return forward + [list(reversed(order)) for order in forward]


async def _orders_in_rounds(
    options: Options, orders: Side, others: dict[str, Side]
) -> tuple[dict[str, Window], list[dict[str, Any]]]:
    """`orders` and what it is compared with (the replayed SQL, the bare endpoint) taking
    turns in rounds, each round a share of the measured time, in the orders of
    `turn_orders` (one window of `orders` alone when there is nothing to compare it with).

    The machine's own speed drifts: on a shared host the same load has cost up to a fifth
    more CPU per order from one minute to the next, and the Python processes up to twice.
    Measured one after the other, Stockflow and its ceiling could each catch a different
    state, and the ratio would measure the host; taking turns, all see the same mixture of
    states, and what grows through the run (dead rows, the tables, dirty pages) weighs on
    each alike. Each round's figures are kept, so the spread shows how much the host moved.
    """
    sides: list[tuple[str, Side]] = [("orders", orders), *others.items()]
    schedule = turn_orders(len(sides)) if others else [[0]]
    count = (options.rounds or len(schedule)) if others else 1
    share = options.duration_s / count
    windows: dict[str, list[Window]] = {name: [] for name, _ in sides}
    rounds: list[dict[str, Any]] = []
    for index in range(count):
        warmup = options.warmup_s if index == 0 else min(options.warmup_s, ROUND_WARMUP_S)
        turn = [sides[k] for k in schedule[index % len(schedule)]]
        entry: dict[str, Any] = {"warmup_s": warmup, "order": [name for name, _ in turn]}
        for name, side in turn:
            window = await side(index, warmup, share)
            windows[name].append(window)
            entry[f"{name}_per_s"] = window.sample.successes / share
        if entry.get("ceiling_per_s"):
            entry["ratio"] = entry["orders_per_s"] / entry["ceiling_per_s"]
            if "bare_per_s" in entry:
                entry["bare_ratio"] = entry["bare_per_s"] / entry["ceiling_per_s"]
        rounds.append(entry)
    return {name: Window.merged(found) for name, found in windows.items()}, rounds


class _OrdersElsewhere(Orders):
    """Orders sent to the bare endpoint: not kept for the reads, shipments and cancellations
    of later scenarios, which measure Stockflow's answers about orders it placed itself."""

    def done(self, call: Call, response: Response) -> None:
        pass


def _closed_loop_side(
    options: Options,
    ctx: Context,
    conn: Callable[[], Connection],
    server: Server,
    *,
    keep_orders: bool = True,
) -> Side:
    async def side(_index: int, warmup_s: float, duration_s: float) -> Window:
        return await closed_loop(
            Orders(ctx) if keep_orders else _OrdersElsewhere(ctx),
            conn,
            concurrency=options.concurrency,
            connections=options.connections,
            warmup_s=warmup_s,
            duration_s=duration_s,
            server=server,
        )

    return side


async def _scenarios_on(
    options: Options,
    url: str,
    server: Server,
    fixture: Fixture,
    results: dict[str, Any],
    ceiling_round: CeilingRound | None,
    bare_server: Callable[[], contextlib.AbstractAsyncContextManager[Server]] | None,
    after_orders: Callable[[], Awaitable[None]],
) -> None:
    ctx = Context(fixture, options.plan, options.seed, secrets.token_hex(4))
    conn = _connector(options.client, server)
    scenarios: dict[str, Any] = results.setdefault("scenarios", {})
    # A history first: orders for the reads to find, and tables that are not empty when
    # the first VACUUM ANALYZE runs. Planned on empty tables, the foreign-key checks each
    # server connection caches would scan the growing orders table for the whole run.
    await closed_loop(
        Orders(ctx),
        conn,
        concurrency=options.concurrency,
        connections=options.connections,
        warmup_s=max(HISTORY_S, options.warmup_s),
        duration_s=0.0,
        server=None,
    )
    for name in options.scenarios:
        await settle(url)
        compared: dict[str, Window] = {}
        if name == "orders":
            async with contextlib.AsyncExitStack() as beside:
                others: dict[str, Side] = {}
                if ceiling_round is not None:
                    others["ceiling"] = ceiling_round
                if bare_server is not None:
                    # Up only for these rounds, so that it holds no connections afterwards.
                    bare_running = await beside.enter_async_context(bare_server())
                    others["bare"] = _closed_loop_side(
                        options,
                        ctx,
                        _connector(options.client, bare_running),
                        bare_running,
                        keep_orders=False,
                    )
                compared, rounds = await _orders_in_rounds(
                    options, _closed_loop_side(options, ctx, conn, server), others
                )
            window = compared.pop("orders")
            results["rounds"] = rounds
        else:
            window = await closed_loop(
                WORKLOADS[name](ctx),
                conn,
                concurrency=options.concurrency,
                connections=options.connections,
                warmup_s=options.warmup_s,
                duration_s=options.duration_s,
                server=server,
            )
        scenarios[name] = window.summary()
        _say(name, scenarios[name])
        if name == "orders":
            if "ceiling" in compared:
                results.setdefault("ceiling", {})["asyncpg"] = compared["ceiling"].summary()
                _say("ceiling: replayed SQL", results["ceiling"]["asyncpg"])
            if "bare" in compared:
                results["bare"] = compared["bare"].summary()
                _say("bare endpoint", results["bare"])
            if options.fixed_rate and scenarios[name]["throughput_per_s"] > 0:
                rate = scenarios[name]["throughput_per_s"] * options.rate_share
                await settle(url)
                fixed = await open_loop(
                    Orders(ctx),
                    conn,
                    rate_per_s=rate,
                    connections=options.connections,
                    warmup_s=options.warmup_s,
                    duration_s=options.duration_s,
                    server=server,
                )
                summary = fixed.summary()
                summary["share"] = options.rate_share
                summary["offered_per_s"] = rate
                results["fixed_rate"] = summary
                _say(f"orders at {options.rate_share:.0%} of max", summary)
            await after_orders()


def _ceiling_round(options: Options, url: str, template: replay.Template) -> CeilingRound:
    async def one_round(index: int, warmup_s: float, duration_s: float) -> Window:
        return await replay.replay(
            seed.plain_dsn(url),
            template,
            options.plan.regular_range,
            concurrency=options.concurrency,
            warmup_s=warmup_s,
            duration_s=duration_s,
            seed=options.seed + index,
        )

    return one_round


async def _replay_alone(
    options: Options, url: str, round_: CeilingRound, results: dict[str, Any]
) -> None:
    """The replayed SQL when `orders` is not run beside it."""
    await settle(url)
    window = await round_(0, options.warmup_s, options.duration_s)
    results.setdefault("ceiling", {})["asyncpg"] = window.summary()
    _say("ceiling: replayed SQL", results["ceiling"]["asyncpg"])


async def _pgbench(
    options: Options, url: str, template: replay.Template, results: dict[str, Any]
) -> None:
    ceiling: dict[str, Any] = results.setdefault("ceiling", {})
    await settle(url)
    figures = await pgbench.run_pgbench(
        url,
        template,
        options.plan.regular_range,
        clients=options.concurrency,
        warmup_s=options.warmup_s,
        duration_s=options.duration_s,
    )
    ceiling["pgbench"] = figures
    if figures.get("tps") is not None:
        console.print(
            f"  [bold]{'ceiling: pgbench':<28}[/bold] {figures['tps']:>9,.1f}/s  "
            f"avg {figures['latency_avg_ms']} ms  failed {figures.get('failed')}"
        )
    else:
        console.print(f"  ceiling: pgbench: {figures.get('note') or figures.get('error')}")
    ceiling["pgbench_script"] = replay.pgbench_script(template, options.plan.regular_range)


async def _postgres_part(options: Options, results: dict[str, Any], logs: Path) -> None:
    url = seed.database_url(options.admin_url, options.database)
    console.print(f"[bold]PostgreSQL[/bold]: fresh database {options.database}")
    await seed.recreate_database(options.admin_url, options.database)
    try:
        began = time.perf_counter()
        fixture = await seed.seed(url, options.plan, label="seeding PostgreSQL")
        results["seed_s"] = time.perf_counter() - began
        captured: capture.CapturedOrder | None = None
        if "orders" in options.scenarios or options.ceiling:
            captured = await capture.capture_order(url, fixture, options.plan)
            results["order_path"] = {
                **capture.counts(captured.steps),
                **capture.driver_check(captured),
                "steps": [
                    {
                        "origin": step.origin,
                        "kind": step.kind,
                        "statement": step.statement,
                        **({"rows": len(step.parameters)} if step.kind == "executemany" else {}),
                    }
                    for step in captured.steps
                ],
            }
            path = results["order_path"]
            console.print(
                f"  order path: {path['statements']} statements in {path['round_trips']} round "
                f"trips per order (pool pre-ping: {path['pre_ping_round_trips']} round trips)"
            )
        template = (
            replay.build_template(captured.steps, captured.products, captured.idempotency_key)
            if (options.ceiling or options.bare) and captured is not None
            else None
        )
        ceiling_round = (
            _ceiling_round(options, url, template)
            if options.ceiling and template is not None
            else None
        )
        pgbench_done = False

        async def after_orders() -> None:
            nonlocal pgbench_done
            if ceiling_round is not None and template is not None and not pgbench_done:
                pgbench_done = True
                await _pgbench(options, url, template, results)

        bare_server = None
        if options.bare and template is not None:
            spec = logs / "bare-template.pickle"
            bare.write_spec(spec, template, options.plan.regular_range, seed.plain_dsn(url))

            def bare_server() -> contextlib.AbstractAsyncContextManager[Server]:
                return running(
                    url,
                    logs / "server-bare.log",
                    workers=options.workers,
                    env={bare.BARE_TEMPLATE_ENV: str(spec)},
                    bare=True,
                )

        if options.scenarios:
            async with running(url, logs / "server-postgresql.log", workers=options.workers) as s:
                await _scenarios_on(
                    options, url, s, fixture, results, ceiling_round, bare_server, after_orders
                )
        if template is not None and ceiling_round is not None and not pgbench_done:
            await _replay_alone(options, url, ceiling_round, results)
            await _pgbench(options, url, template, results)
        results["reconcile"] = await asyncio.to_thread(seed.reconcile, url)
        outcome = results["reconcile"]
        console.print(
            "  reconcile: "
            + ("consistent" if outcome["exit_code"] == 0 else f"DRIFT\n{outcome['output']}")
        )
    finally:
        if not options.keep_database:
            await seed.drop_database(options.admin_url, options.database)


async def _sqlite_part(options: Options, results: dict[str, Any], logs: Path) -> None:
    console.print("[bold]SQLite[/bold] (embedded): orders")
    with tempfile.TemporaryDirectory(prefix="stockflow-bench-sqlite-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        plan = SeedPlan(options.catalog_size, REGULAR_STOCK, 0, 0)
        fixture = await seed.seed(url, plan, label="seeding SQLite")
        async with running(url, logs / "server-sqlite.log", workers=1) as server:
            ctx = Context(fixture, plan, options.seed, secrets.token_hex(4))
            window = await closed_loop(
                Orders(ctx),
                _connector(options.client, server),
                concurrency=options.concurrency,
                connections=options.connections,
                warmup_s=options.warmup_s,
                duration_s=options.duration_s,
                server=server,
            )
    results["sqlite"] = window.summary()
    _say("SQLite orders", results["sqlite"])


def _ratios(results: dict[str, Any]) -> dict[str, float | None]:
    def rate(summary: dict[str, Any] | None) -> float | None:
        return None if not summary else summary.get("throughput_per_s")

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    scenarios = results.get("scenarios", {})
    ceiling = results.get("ceiling", {})
    orders = rate(scenarios.get("orders"))
    pgb = ceiling.get("pgbench") or {}
    return {
        "orders_vs_asyncpg": ratio(orders, rate(ceiling.get("asyncpg"))),
        "orders_vs_bare": ratio(orders, rate(results.get("bare"))),
        "bare_vs_asyncpg": ratio(rate(results.get("bare")), rate(ceiling.get("asyncpg"))),
        "orders_vs_pgbench": ratio(orders, pgb.get("tps")),
        "hot_vs_orders": ratio(rate(scenarios.get("hot")), orders),
        "sqlite_vs_orders": ratio(rate(results.get("sqlite")), orders),
    }


def problems(results: dict[str, Any]) -> list[str]:
    """What shows the harness itself is broken (the smoke run fails on these): a run with no
    successful request, mostly errors, or a pgbench script that does not run."""
    found: list[str] = []
    runs: list[tuple[str, dict[str, Any]]] = list(results.get("scenarios", {}).items())
    for name in ("fixed_rate", "sqlite"):
        if results.get(name):
            runs.append((name, results[name]))
    if results.get("ceiling", {}).get("asyncpg"):
        runs.append(("ceiling", results["ceiling"]["asyncpg"]))
    if results.get("bare"):
        runs.append(("bare endpoint", results["bare"]))
    for name, summary in runs:
        missing = summary["errors"].get("404", 0)
        if missing and name in ("reads", "mixed"):
            # They only ask for orders and products the run created: a 404 is the harness's.
            found.append(f"{name}: {missing} x 404 for rows the run created")
        if summary["successes"] == 0:
            found.append(f"{name}: no successful request ({summary['statuses']})")
        elif summary["error_count"] > summary["successes"]:
            found.append(f"{name}: more errors than successes ({summary['errors']})")
    checked = results.get("reconcile")
    if checked and checked["exit_code"] != 0:
        found.append(f"stockflow inventory reconcile found drift: {checked['output']}")
    pgb = results.get("ceiling", {}).get("pgbench")
    if pgb and pgb.get("available") and (pgb.get("tps") is None or pgb.get("failed")):
        found.append(f"pgbench: {pgb.get('error') or pgb}")
    return found


async def run(options: Options) -> tuple[dict[str, Any], list[str]]:
    started = datetime.now(UTC)
    began = time.perf_counter()
    results: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "options": {
            **{k: v for k, v in asdict(options).items() if k not in ("admin_url",)},
            "out": str(options.out),
            "scenarios": list(options.scenarios),
        },
    }
    version, pg_settings = await _postgres_facts(options.admin_url)
    results["machine"] = report.machine(version)
    results["machine"]["postgresql_settings"] = pg_settings
    logs = Path(tempfile.mkdtemp(prefix="stockflow-bench-logs-"))
    results["server_logs"] = str(logs)
    await _postgres_part(options, results, logs)
    if options.sqlite:
        await _sqlite_part(options, results, logs)
    results["ratios"] = _ratios(results)
    results["elapsed_s"] = time.perf_counter() - began
    found = problems(results)
    results["problems"] = found
    if not found:
        # The servers' logs only matter when something went wrong.
        shutil.rmtree(logs, ignore_errors=True)
        results["server_logs"] = None
    stamp = started.strftime("%Y%m%d-%H%M%S")
    json_path, md_path = report.write(results, options.out, stamp)
    console.print(f"results: {json_path} and {md_path}")
    return results, found


def run_blocking(options: Options) -> tuple[dict[str, Any], list[str]]:
    """Run on uvloop when it is there (uvicorn's standard extra brings it): the generator's
    own CPU per request is lower on it."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run(options))
    return uvloop.run(run(options))
