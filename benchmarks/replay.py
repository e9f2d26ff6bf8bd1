"""The ceiling: the captured round trips of one order replayed straight at PostgreSQL.

The template keeps every statement and round trip of the captured order and marks the
parameters that must change from one replayed order to the next, so that rows never collide:
the ids Stockflow generated for the order (``ord_…``, ``oli_…``, ``mov_…`` and any other
prefix that is not an existing row's), the ``Idempotency-Key``, and the products, which are
drawn at random from the catalog (one per line, from disjoint ranges, so they stay distinct
and in the SKU order Stockflow locks them in). Everything else (customer, key, location,
amounts, timestamps) is replayed as captured.

The same template becomes a pgbench script, where the products and fresh ids are pgbench
variables.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from benchmarks import catalog
from benchmarks.capture import Step
from benchmarks.loadgen import Window
from benchmarks.server import CpuSnapshot
from benchmarks.stats import Sample
from stockflow.db.engine import POSTGRESQL_SESSION_SETTINGS

ID_PATTERN = re.compile(r"^([a-z]+)_[0-9A-HJKMNP-TV-Z]{26}$")
STABLE_PREFIXES = frozenset({"cus", "key", "loc", "sup", "spr", "prod"})
"""Ids of rows that exist before the order (its customer, key, location, supplier terms):
replayed as they are. Any other id in a parameter is one the order created, and is made
fresh for every replayed order."""
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True)
class Slot:
    """A parameter that changes per replayed order: a product's id or SKU (``index`` is the
    line's rank in SKU order), or a fresh value (``index`` into the order's fresh values)."""

    kind: str
    index: int
    prefix: str = ""


@dataclass(frozen=True)
class TemplateStep:
    kind: str
    statement: str
    parameters: Any
    has_slots: bool
    origin: str


@dataclass(frozen=True)
class Template:
    steps: tuple[TemplateStep, ...]
    fresh_prefixes: tuple[str, ...]
    """The prefix of each fresh value (``ord_``, ``bench-``), by slot index."""
    products: int


def build_template(
    steps: Sequence[Step], products: Sequence[tuple[str, str]], idempotency_key: str
) -> Template:
    """Mark the per-order parameters of a captured order's steps."""
    known: dict[str, Slot] = {}
    for rank, (product_id, sku) in enumerate(products):
        known[product_id] = Slot("product_id", rank)
        known[sku] = Slot("sku", rank)
    fresh: list[str] = []

    def fresh_slot(value: str, prefix: str) -> Slot:
        slot = Slot("fresh", len(fresh), prefix)
        fresh.append(prefix)
        known[value] = slot
        return slot

    def mark(value: Any) -> Any:
        if isinstance(value, str):
            if value in known:
                return known[value]
            if value == idempotency_key:
                return fresh_slot(value, "bench-")
            match = ID_PATTERN.match(value)
            if match and match.group(1) not in STABLE_PREFIXES:
                return fresh_slot(value, f"{match.group(1)}_")
            return value
        if isinstance(value, tuple):
            return tuple(mark(v) for v in value)
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    marked = []
    for step in steps:
        parameters = mark(step.parameters)
        marked.append(
            TemplateStep(step.kind, step.statement, parameters, _has_slot(parameters), step.origin)
        )
    return Template(tuple(marked), tuple(fresh), len(products))


def _has_slot(value: Any) -> bool:
    if isinstance(value, Slot):
        return True
    if isinstance(value, tuple | list):
        return any(_has_slot(v) for v in value)
    return False


class FreshIds:
    """Ids no other run or Stockflow itself produces: a random run tag, then a counter,
    padded to Stockflow's 26-character id body."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or "R" + "".join(secrets.choice(_CROCKFORD) for _ in range(5))
        self._width = catalog.ID_BODY - len(self.tag)
        self._counter = 0

    def next(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self.tag}{self._counter:0{self._width}d}"


def pick_products(rng: random.Random, count: int, lines: int) -> list[int]:
    """One catalog index per line, line ``k`` from the ``k``-th of ``lines`` equal ranges:
    distinct, and ascending as their SKUs are (the order Stockflow locks stock rows in)."""
    size = count // lines
    if size < 1:
        raise ValueError(f"a catalog of {count} cannot give {lines} distinct products")
    return [rng.randint(k * size + 1, (k + 1) * size) for k in range(lines)]


def instantiate(
    template: Template, products: Sequence[tuple[str, str]], fresh: Sequence[str]
) -> list[tuple[str, str, Any]]:
    """The concrete (kind, statement, parameters) of one replayed order."""

    def fill(value: Any) -> Any:
        if isinstance(value, Slot):
            if value.kind == "product_id":
                return products[value.index][0]
            if value.kind == "sku":
                return products[value.index][1]
            return fresh[value.index]
        if isinstance(value, tuple):
            return tuple(fill(v) for v in value)
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return [
        (step.kind, step.statement, fill(step.parameters) if step.has_slots else step.parameters)
        for step in template.steps
    ]


async def run_steps(conn: Any, steps: list[tuple[str, str, Any]]) -> None:
    for kind, statement, parameters in steps:
        if kind == "execute":
            await conn.fetch(statement, *parameters)
        elif kind == "executemany":
            await conn.executemany(statement, parameters)
        else:
            await conn.execute(statement)


async def replay(
    dsn: str,
    template: Template,
    products_range: catalog.Range,
    *,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    seed: int,
) -> Window:
    """``concurrency`` asyncpg connections, each replaying whole orders back to back."""
    rng = random.Random(seed)
    ids = FreshIds()
    sample = Sample()
    connections = [
        await asyncpg.connect(dsn, server_settings=dict(POSTGRESQL_SESSION_SETTINGS))
        for _ in range(concurrency)
    ]
    start = time.perf_counter()
    measure_start = start + warmup_s
    measure_end = measure_start + duration_s
    cpu: dict[str, float] = {}

    async def worker(conn: Any) -> None:
        while time.perf_counter() < measure_end:
            indexes = pick_products(rng, products_range.count, template.products)
            products = [(products_range.product_id(i), products_range.sku(i)) for i in indexes]
            fresh = [ids.next(prefix) for prefix in template.fresh_prefixes]
            steps = instantiate(template, products, fresh)
            began = time.perf_counter()
            status = "ok"
            try:
                await run_steps(conn, steps)
            except asyncpg.PostgresError as exc:
                status = f"sqlstate {exc.sqlstate}"
                if conn.is_in_transaction():
                    await conn.execute("ROLLBACK")
            finished = time.perf_counter()
            if began >= measure_start and finished <= measure_end:
                sample.record("order", status, finished - began)

    async def meter() -> None:
        await asyncio.sleep(max(0.0, measure_start - time.perf_counter()))
        before = CpuSnapshot.take(None)
        await asyncio.sleep(max(0.0, measure_end - time.perf_counter()))
        cpu.update(before.until(CpuSnapshot.take(None)))

    try:
        await asyncio.gather(meter(), *(worker(conn) for conn in connections))
    finally:
        for conn in connections:
            await conn.close()
    return Window(sample, duration_s, cpu, with_server=False)


def _literal(value: Any) -> str:
    """A constant as SQL text that pgbench leaves alone (it takes any ``:name`` for one of its
    variables, even inside quotes, so colons are written as an escape)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, datetime):
        return "now()"
    if isinstance(value, date):
        return "current_date"
    if isinstance(value, list | tuple):
        return "ARRAY[" + ", ".join(_literal(v) for v in value) + "]" if value else "'{}'"
    if isinstance(value, bytes):
        return "'\\x" + value.hex() + "'::bytea"
    text = str(value).replace("\\", "\\\\").replace("'", "''").replace(":", "\\x3a")
    return f"E'{text}'"


def _pgbench_value(value: Any, r: catalog.Range) -> str:
    if isinstance(value, Slot):
        if value.kind == "product_id":
            return r.product_id_sql(f"p{value.index}")
        if value.kind == "sku":
            return r.sku_sql(f"p{value.index}")
        number = f"(:base::bigint * 64 + {value.index})::text"
        return f"('{value.prefix}F' || lpad({number}, {catalog.ID_BODY - 1}, '0'))"
    if isinstance(value, list | tuple) and any(isinstance(v, Slot) for v in value):
        return "ARRAY[" + ", ".join(_pgbench_value(v, r) for v in value) + "]"
    return _literal(value)


_PLACEHOLDER = re.compile(r"\$(\d+)")


def _bind(statement: str, parameters: Sequence[Any], r: catalog.Range) -> str:
    rendered = [_pgbench_value(value, r) for value in parameters]
    text = _PLACEHOLDER.sub(lambda m: rendered[int(m.group(1)) - 1], statement)
    return (text.strip().rstrip(";") or "SELECT") + ";"


def pgbench_script(template: Template, r: catalog.Range) -> str:
    """The order as a pgbench script (``-M prepared``): products as random variables from
    disjoint ranges (as in the asyncpg replay), fresh ids from a random per-order base, and
    an ``executemany`` as one pipeline (one round trip, as asyncpg sends it)."""
    if template.products and r.count // template.products < 1:
        raise ValueError("catalog too small for the order's lines")
    if len(template.fresh_prefixes) >= 64:
        raise ValueError("more than 63 fresh values per order")
    size = r.count // max(1, template.products)
    lines = [
        f"\\set p{k} random({k * size + 1}, {(k + 1) * size})" for k in range(template.products)
    ]
    lines.append("\\set base random(1, 100000000000000)")
    for step in template.steps:
        if step.kind in ("begin", "commit", "rollback"):
            lines.append(step.statement.strip().rstrip(";") + ";")
        elif step.kind == "executemany":
            lines.append("\\startpipeline")
            lines.extend(_bind(step.statement, row, r) for row in step.parameters)
            lines.append("\\endpipeline")
        else:
            lines.append(_bind(step.statement, step.parameters, r))
    return "\n".join(lines) + "\n"


_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)
_DONE = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)


def parse_pgbench(output: str) -> dict[str, float | None]:
    """tps, average latency, processed and failed transactions from pgbench's summary."""

    def find(pattern: re.Pattern[str]) -> float | None:
        match = pattern.search(output)
        return float(match.group(1)) if match else None

    return {
        "tps": find(_TPS),
        "latency_avg_ms": find(_LATENCY),
        "transactions": find(_DONE),
        "failed": find(_FAILED),
    }
