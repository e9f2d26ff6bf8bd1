"""A fresh database with the benchmark's catalog, stock, customer, supplier and API keys.

The schema comes from ``stockflow db upgrade``, as an operator would create it. The few
records that carry rules (keys, the customer, the supplier) are made by Stockflow's own
services; the thousands of products, stock rows and opening ledger movements are written in
bulk (COPY on PostgreSQL) into the real tables, with the values the services would write,
so that ``stockflow inventory reconcile`` finds the seeded stock consistent.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import make_url

from benchmarks.rows import JSON_COLUMNS, Fixture, SeedPlan, Table, tables
from stockflow.auth import service as auth_service
from stockflow.auth.roles import Principal, Role
from stockflow.auth.schemas import ApiKeyCreate
from stockflow.config import Settings
from stockflow.customers import service as customers_service
from stockflow.customers.schemas import CustomerCreate
from stockflow.db.engine import Database
from stockflow.purchasing import service as purchasing_service
from stockflow.purchasing.schemas import SupplierCreate

CHUNK = 2_000


def plain_dsn(url: str) -> str:
    """``postgresql://`` form of any PostgreSQL URL Stockflow accepts, for asyncpg and libpq."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def database_url(admin_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``admin_url``."""
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def recreate_database(admin_url: str, name: str) -> None:
    if not name.startswith("stockflow_bench"):
        raise ValueError(f"refusing to drop {name!r}: benchmark databases are stockflow_bench*")
    conn = await asyncpg.connect(plain_dsn(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    if not name.startswith("stockflow_bench"):
        raise ValueError(f"refusing to drop {name!r}: benchmark databases are stockflow_bench*")
    conn = await asyncpg.connect(plain_dsn(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def stockflow_command() -> list[str]:
    """``stockflow`` from this environment: the installed script, else the module."""
    script = Path(sys.executable).with_name("stockflow")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "stockflow.cli.main"]


def upgrade(url: str) -> None:
    """``stockflow db upgrade`` against ``url``."""
    env = {**os.environ, "STOCKFLOW_DATABASE_URL": url, "STOCKFLOW_LOG_LEVEL": "warning"}
    result = subprocess.run(
        [*stockflow_command(), "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"stockflow db upgrade failed:\n{result.stdout}{result.stderr}")


def reconcile(url: str) -> dict[str, object]:
    """``stockflow inventory reconcile`` after the run: every order the benchmark placed (and
    every replayed one) must have left stock, ledger and orders consistent."""
    env = {**os.environ, "STOCKFLOW_DATABASE_URL": url, "STOCKFLOW_LOG_LEVEL": "warning"}
    result = subprocess.run(
        [*stockflow_command(), "inventory", "reconcile"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = (result.stdout + result.stderr).strip()
    return {"exit_code": result.returncode, "output": output[-4000:]}


async def _bootstrap(url: str) -> Fixture:
    """Keys, customer and supplier through Stockflow's services (audited, as the CLI does)."""
    database = Database(Settings(database_url=url))
    actor = Principal.command_line()
    try:
        async with database.transaction() as session:
            customer = await customers_service.create_customer(
                session, actor=actor, data=CustomerCreate(name="Benchmark customer")
            )
            supplier = await purchasing_service.create_supplier(
                session,
                actor=actor,
                data=SupplierCreate(name="Benchmark supplier", lead_time_days=5),
            )
            service_key = await auth_service.create_key(
                session,
                actor=actor,
                data=ApiKeyCreate(name="benchmark storefront", role=Role.SERVICE),
            )
            staff_key = await auth_service.create_key(
                session, actor=actor, data=ApiKeyCreate(name="benchmark staff", role=Role.STAFF)
            )
        async with database.engine.connect() as conn:
            location_id = (
                await conn.exec_driver_sql("SELECT id FROM locations WHERE is_default")
            ).scalar_one()
    finally:
        await database.dispose()
    if service_key.key is None or staff_key.key is None:
        raise RuntimeError("a new API key came back without its secret")
    return Fixture(
        customer_id=customer.id,
        service_key=service_key.key,
        staff_key=staff_key.key,
        service_key_id=service_key.id,
        location_id=str(location_id),
        supplier_id=supplier.id,
    )


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    )


def _total(all_tables: list[Table]) -> int:
    return sum(len(table.rows) for table in all_tables)


async def _copy_postgres(url: str, all_tables: list[Table], label: str) -> None:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        with _progress() as progress:
            task = progress.add_task(label, total=_total(all_tables))
            for table in all_tables:
                for start in range(0, len(table.rows), CHUNK):
                    chunk = table.rows[start : start + CHUNK]
                    records = [
                        tuple(
                            json.dumps(row[c]) if c in JSON_COLUMNS else row[c]
                            for c in table.columns
                        )
                        for row in chunk
                    ]
                    await conn.copy_records_to_table(
                        table.name, records=records, columns=table.columns
                    )
                    progress.advance(task, len(chunk))
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def _sqlite_value(column: str, value: Any) -> Any:
    if column in JSON_COLUMNS:
        return json.dumps(value)
    if isinstance(value, datetime):
        # SQLAlchemy's SQLite DATETIME text form, naive UTC (see stockflow.db.base).
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return naive.isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, bool):
        return int(value)
    return value


def _insert_sqlite(path: Path, all_tables: list[Table], label: str) -> None:
    conn = sqlite3.connect(path)
    try:
        with _progress() as progress:
            task = progress.add_task(label, total=_total(all_tables))
            for table in all_tables:
                marks = ", ".join("?" for _ in table.columns)
                sql = f"INSERT INTO {table.name} ({', '.join(table.columns)}) VALUES ({marks})"  # noqa: S608
                for start in range(0, len(table.rows), CHUNK):
                    chunk = table.rows[start : start + CHUNK]
                    conn.executemany(
                        sql,
                        [tuple(_sqlite_value(c, row[c]) for c in table.columns) for row in chunk],
                    )
                    progress.advance(task, len(chunk))
            conn.commit()
        conn.execute("ANALYZE")
        conn.commit()
    finally:
        conn.close()


async def seed(url: str, plan: SeedPlan, *, label: str) -> Fixture:
    """Migrate ``url`` (a new, empty database) and fill it."""
    await asyncio.to_thread(upgrade, url)
    fixture = await _bootstrap(url)
    all_tables = tables(plan, fixture, datetime.now(UTC))
    settings = Settings(database_url=url)
    if settings.sqlite_path is not None:
        await asyncio.to_thread(_insert_sqlite, settings.sqlite_path, all_tables, label)
    else:
        await _copy_postgres(url, all_tables, label)
    return fixture
