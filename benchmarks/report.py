"""The run's results as JSON (everything) and Markdown (the table to read), and the machine."""

from __future__ import annotations

import json
import math
import os
import platform
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import stockflow

TARGET_RATIO = 0.5
TARGET_STATEMENTS = 15
TARGET_P99_MS = 25.0
AIM_HOT_SHARE = 0.5


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def machine(postgres_version: str | None) -> dict[str, Any]:
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "postgresql": postgres_version,
        "sqlite": sqlite3.sqlite_version,
        "stockflow": stockflow.__version__,
        "commit": (commit + ("+changes" if dirty else "")) if commit else None,
    }


def write(results: dict[str, Any], out: Path, stamp: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{stamp}.json"
    md_path = out / f"{stamp}.md"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    markdown = render(results)
    md_path.write_text(markdown)
    (out / "latest.md").write_text(markdown)
    return json_path, md_path


def _ms(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _rate(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _cpu(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def _errors(summary: dict[str, Any]) -> str:
    errors: dict[str, int] = summary.get("errors", {})
    if not errors:
        return "0"
    return ", ".join(f"{count} x {status}" for status, count in errors.items())


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _row(name: str, summary: dict[str, Any], relation: str) -> str:
    latency = summary.get("latency", {})
    return (
        f"| {name} | {_rate(summary.get('throughput_per_s'))} | {_ms(latency.get('p50_ms'))} | "
        f"{_ms(latency.get('p90_ms'))} | {_ms(latency.get('p99_ms'))} | {_errors(summary)} | "
        f"{_cpu(summary.get('server_cpu_ms_per_request'))} | {relation} |"
    )


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**missed**")


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    opts = results["options"]
    scenarios: dict[str, Any] = results.get("scenarios", {})
    ceiling: dict[str, Any] = results.get("ceiling", {})
    order_path: dict[str, Any] = results.get("order_path", {})
    ratios: dict[str, Any] = results.get("ratios", {})
    lines = [
        f"# Stockflow benchmark, {results['started_at']}",
        "",
        f"Machine: {m['cores']} cores, {m['cpu_model']}; PostgreSQL {m['postgresql']}; "
        f"Python {m['python']}; SQLite {m['sqlite']}; Stockflow {m['stockflow']}"
        + (f" ({m['commit']})" if m.get("commit") else "")
        + "."
        + (
            " PostgreSQL settings: "
            + ", ".join(f"{k} {v}" for k, v in m["postgresql_settings"].items())
            + "."
            if m.get("postgresql_settings")
            else ""
        ),
        "",
        f"Run: {'smoke, ' if opts['smoke'] else ''}{opts['duration_s']:g} s measured after "
        f"{opts['warmup_s']:g} s warm-up per scenario, {opts['concurrency']} concurrent "
        f"clients, {opts['workers']} server worker(s), {opts['client']} HTTP client, catalog "
        f"of {opts['catalog_size']:,} SKUs ({opts['backorder_size']} backorder). "
        "Server, PostgreSQL and load generator share the machine; `VACUUM ANALYZE` and "
        "`CHECKPOINT` run before each scenario, the fixed-rate run and pgbench (before the "
        "first round of `orders` and what it takes turns with).",
        "",
        "| scenario | throughput (/s) | p50 ms | p90 ms | p99 ms | errors | "
        "server CPU-ms/req | relation |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    orders = scenarios.get("orders")
    for name in ("orders", "hot", "backorder", "reads", "mixed"):
        summary = scenarios.get(name)
        if summary is None:
            continue
        relation = ""
        if name == "orders":
            relation = f"{_ratio(ratios.get('orders_vs_asyncpg'))} of the asyncpg ceiling"
            if ratios.get("orders_vs_pgbench") is not None:
                relation += f", {_ratio(ratios.get('orders_vs_pgbench'))} of pgbench"
            if ratios.get("orders_vs_bare") is not None:
                relation += f", {_ratio(ratios.get('orders_vs_bare'))} of the bare endpoint"
        elif name == "hot" and orders:
            relation = f"{_ratio(ratios.get('hot_vs_orders'))} of orders"
        lines.append(_row(name, summary, relation))
    fixed = results.get("fixed_rate")
    if fixed:
        lines.append(
            _row(
                f"orders at {fixed['share']:.0%} of max",
                fixed,
                f"offered {fixed['offered_per_s']:,.0f}/s (open loop)",
            )
        )
    asyncpg_ceiling = ceiling.get("asyncpg")
    if asyncpg_ceiling:
        lines.append(
            _row("ceiling: replayed SQL (asyncpg)", asyncpg_ceiling, "same statements, no app")
        )
    bare = results.get("bare")
    if bare:
        lines.append(
            _row(
                "bare endpoint (same SQL, no features)",
                bare,
                f"{_ratio(ratios.get('bare_vs_asyncpg'))} of the asyncpg ceiling",
            )
        )
    pgb = ceiling.get("pgbench")
    if pgb:
        if pgb.get("available") and pgb.get("tps") is not None:
            lines.append(
                f"| ceiling: pgbench script | {_rate(pgb['tps'])} | - | - | - | "
                f"{int(pgb.get('failed') or 0)} | - | avg {_ms(pgb.get('latency_avg_ms'))} ms, "
                f"{pgb['clients']} clients |"
            )
        else:
            note = pgb.get("note") or pgb.get("error", "failed")
            lines.append(f"| ceiling: pgbench script | - | - | - | - | - | - | {note} |")
    sqlite_run = results.get("sqlite")
    if sqlite_run:
        lines.append(
            _row(
                "embedded: orders on SQLite",
                sqlite_run,
                f"{_ratio(ratios.get('sqlite_vs_orders'))} of orders on PostgreSQL",
            )
        )
    rounds: list[dict[str, float]] = results.get("rounds") or []
    if len(rounds) > 1 and all("ratio" in entry for entry in rounds):
        with_bare = all("bare_ratio" in entry for entry in rounds)
        per_round = ", ".join(
            f"{entry['orders_per_s']:,.0f}/{entry['ceiling_per_s']:,.0f} = {entry['ratio']:.2f}x"
            + (
                f" (bare {entry['bare_per_s']:,.0f} = {entry['bare_ratio']:.2f}x)"
                if with_bare
                else ""
            )
            for entry in rounds
        )
        lines += [
            "",
            "`orders`, the replayed SQL"
            + (" and the bare endpoint" if with_bare else "")
            + f" took turns (every order of turns equally often) in {len(rounds)} rounds of "
            f"{opts['duration_s'] / len(rounds):g} s, each after a warm-up of its own ("
            + ", ".join(f"{entry['warmup_s']:g}" for entry in rounds)
            + " s), and each figure above adds its rounds up. Per round, orders/s against the "
            f"ceiling: {per_round}.",
        ]
    if order_path:
        lines += [
            "",
            f"Order path (one 3-line order, captured): **{order_path['statements']} statements** "
            f"in **{order_path['round_trips']} round trips**, BEGIN and COMMIT included; of "
            f"these, the connection pool's pre-ping is {order_path['pre_ping_statements']} "
            f"statements in {order_path['pre_ping_round_trips']} round trips. An "
            "`executemany` counts one statement per row and one round trip.",
        ]
    checked = results.get("reconcile")
    if checked:
        lines += [
            "",
            "After the run, `stockflow inventory reconcile` found "
            + (
                "stock, ledger and orders consistent."
                if checked["exit_code"] == 0
                else f"**drift**:\n\n```\n{checked['output']}\n```"
            ),
        ]
    lines += ["", "## Targets (issue 5)", "", "| target | figure | verdict |"]
    lines.append("| --- | --- | --- |")
    vs = ratios.get("orders_vs_asyncpg")
    lines.append(
        f"| `orders` ≥ {TARGET_RATIO}x the replayed-statements ceiling | {_ratio(vs)} | "
        f"{_verdict(None if vs is None else vs >= TARGET_RATIO)} |"
    )
    statements = order_path.get("statements")
    lines.append(
        f"| ≤ {TARGET_STATEMENTS} statements per 3-line order | "
        f"{statements if statements is not None else '-'} | "
        f"{_verdict(None if statements is None else statements <= TARGET_STATEMENTS)} |"
    )
    p99 = fixed["latency"]["p99_ms"] if fixed else None
    lines.append(
        f"| p99 at 50 % of max ≤ {TARGET_P99_MS:g} ms | {_ms(p99)} ms | "
        f"{_verdict(None if p99 is None or math.isnan(p99) else p99 <= TARGET_P99_MS)} |"
    )
    hot = ratios.get("hot_vs_orders")
    lines.append(
        f"| `hot` / `orders` (aim ≥ {AIM_HOT_SHARE}x, reported) | {_ratio(hot)} | "
        f"{_verdict(None if hot is None else hot >= AIM_HOT_SHARE)} |"
    )
    lines += [
        "",
        "## CPU per request",
        "",
        "CPU-milliseconds per completed request in the measured window; PostgreSQL is every "
        "process of the cluster, the generator is this harness.",
        "",
        "| run | server | PostgreSQL | generator | machine busy |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    cpu_rows: list[tuple[str, dict[str, Any]]] = list(scenarios.items())
    if fixed:
        cpu_rows.append(("orders, fixed rate", fixed))
    if asyncpg_ceiling:
        cpu_rows.append(("ceiling (asyncpg)", asyncpg_ceiling))
    if bare:
        cpu_rows.append(("bare endpoint", bare))
    if sqlite_run:
        cpu_rows.append(("SQLite orders", sqlite_run))
    for name, summary in cpu_rows:
        busy = summary.get("cpu", {}).get("machine_busy_share")
        lines.append(
            f"| {name} | {_cpu(summary.get('server_cpu_ms_per_request'))} | "
            f"{_cpu(summary.get('postgres_cpu_ms_per_request'))} | "
            f"{_cpu(summary.get('generator_cpu_ms_per_request'))} | "
            f"{'-' if busy is None else f'{busy:.0%}'} |"
        )
    steps = order_path.get("steps", [])
    if steps:
        lines += [
            "",
            "## The order's round trips",
            "",
            "| # | origin | kind | statement |",
            "| ---: | --- | --- | --- |",
        ]
        for number, step in enumerate(steps, 1):
            text = " ".join(step["statement"].split())
            if len(text) > 110:
                text = text[:107] + "…"
            kind = step["kind"] + (f" x{step['rows']}" if step.get("rows") else "")
            text = text.replace("|", "\\|")
            lines.append(f"| {number} | {step['origin']} | {kind} | `{text}` |")
    lines += ["", f"Total time: {results.get('elapsed_s', 0):.0f} s.", ""]
    return "\n".join(lines)
