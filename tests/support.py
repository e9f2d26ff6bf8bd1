"""Databases for tests: a migrated SQLite file or a PostgreSQL database of the test's own."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from stockflow.db.engine import Database

POSTGRES_URL = os.environ.get(
    "STOCKFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
BACKENDS = ("sqlite", "postgresql")

# Tables holding data, children first; locations and alembic_version survive a clean-up.
DATA_TABLES = (
    "worker_heartbeats",
    "readiness_checks",
    "inbox_messages",
    "delivery_attempts",
    "deliveries",
    "webhook_endpoints",
    "events",
    "purchase_order_lines",
    "purchase_orders",
    "supplier_products",
    "suppliers",
    "idempotency_records",
    "shipment_lines",
    "shipments",
    "refunds",
    "payments",
    "order_lines",
    "orders",
    "stock_movements",
    "stock_levels",
    "api_keys",
    "audit_records",
    "products",
    "customers",
)


def _asyncpg_dsn(database: str | None = None) -> str:
    url = make_url(POSTGRES_URL).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def postgres_url_for(database: str) -> str:
    return (
        make_url(_asyncpg_dsn(database))
        .set(drivername="postgresql+asyncpg")
        .render_as_string(hide_password=False)
    )


async def probe_postgres() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        connection = await asyncpg.connect(_asyncpg_dsn(), timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await connection.close()
    return None


async def create_postgres_database() -> str:
    name = f"stockflow_test_{secrets.token_hex(6)}"
    connection = await asyncpg.connect(_asyncpg_dsn())
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return name


async def drop_postgres_database(name: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn())
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@asynccontextmanager
async def empty_database(backend: str, directory: Path) -> AsyncIterator[str]:
    """A database URL with nothing in it, removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / f'{secrets.token_hex(4)}.db'}"
        return
    name = await create_postgres_database()
    try:
        yield postgres_url_for(name)
    finally:
        await drop_postgres_database(name)


async def clear_data(database: Database) -> None:
    async with database.transaction() as session:
        if database.dialect == "postgresql":
            await session.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)}"))
        else:
            for table in DATA_TABLES:
                await session.execute(text(f"DELETE FROM {table}"))
