"""Engine and session factory for PostgreSQL (asyncpg) and SQLite (aiosqlite).

SQLite notes: WAL lets readers run beside the single writer; foreign keys are off unless
asked for on every connection; and a write transaction starts with ``BEGIN IMMEDIATE`` so
that two writers queue on the lock instead of one failing with "database is locked" when it
tries to upgrade a read transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from stockflow.config import Settings

_SQLITE_BEGIN = "stockflow_sqlite_begin"


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def create_engine(settings: Settings) -> AsyncEngine:
    kwargs: dict[str, Any] = {"echo": settings.database_echo}
    if settings.is_sqlite:
        if settings.sqlite_path is not None:
            settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(settings.database_url, **kwargs)
        _configure_sqlite(engine)
        return engine
    # No ping before each checkout: it is a round trip on every request. A connection the
    # server dropped fails its request with a 503 instead, and SQLAlchemy then invalidates
    # the whole pool, so one request (retryable, nothing written) pays for a restart.
    kwargs.update(pool_size=settings.database_pool_size, max_overflow=0, pool_recycle=1800)
    return create_async_engine(settings.database_url, **kwargs)


class Database:
    """Owns the engine; hands out one transaction per unit of work."""

    def __init__(self, settings: Settings, engine: AsyncEngine | None = None) -> None:
        self.settings = settings
        self.engine = engine or create_engine(settings)
        self.dialect = self.engine.dialect.name
        write_engine = (
            self.engine.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
            if self.dialect == "sqlite"
            else self.engine
        )
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write = async_sessionmaker(write_engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends normally, rolled back otherwise."""
        maker = self._write if write else self._read
        async with maker() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
