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
from stockflow.db.driver import RequestConnection, attach
from stockflow.observability import metrics

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


# Every statement Stockflow sends is a short OLTP lookup or change whose best plan does not
# depend on the values bound to it. PostgreSQL's default heuristic re-plans a prepared
# statement whose custom plans look cheaper than the generic one, which is always the case
# for statements taking arrays (an order's SKUs): it planned the order path's catalog and
# reservation statements anew on every execution. The generic plan is planned once per
# connection. The benchmark's ceiling opens its connections with the same settings.
POSTGRESQL_SESSION_SETTINGS = {"plan_cache_mode": "force_generic_plan"}


def _count_statement(*_args: Any) -> None:
    metrics.count_statement()


def create_engine(settings: Settings) -> AsyncEngine:
    kwargs: dict[str, Any] = {"echo": settings.database_echo}
    if settings.is_sqlite:
        if settings.sqlite_path is not None:
            settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(settings.database_url, **kwargs)
        _configure_sqlite(engine)
        event.listen(engine.sync_engine, "before_cursor_execute", _count_statement)
        return engine
    # No ping before each checkout: it is a round trip on every request. A connection the
    # server dropped fails its request with a 503 instead, and SQLAlchemy then invalidates
    # the whole pool, so one request (retryable, nothing written) pays for a restart.
    # Last in, first out: a load lighter than the pool keeps reusing the same few
    # connections, whose server processes have their caches and plans warm, instead of
    # cycling through all of them. The others may then sit idle for long; one older than
    # the recycle age is replaced when it is next checked out, so that age must stay below
    # any idle timeout between here and PostgreSQL (docs/operations.md).
    kwargs.update(
        pool_size=settings.database_pool_size,
        max_overflow=0,
        pool_recycle=settings.database_pool_recycle_seconds,
        pool_use_lifo=True,
        connect_args={"server_settings": dict(POSTGRESQL_SESSION_SETTINGS)},
    )
    engine = create_async_engine(settings.database_url, **kwargs)
    # Statements per request (the order path's own are counted by its driver).
    event.listen(engine.sync_engine, "before_cursor_execute", _count_statement)
    return engine


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
        if self.dialect == "postgresql":
            async with self._postgresql_transaction() as session:
                yield session
            return
        maker = self._write if write else self._read
        async with maker() as session:
            try:
                async with session.begin():
                    yield session
            except BaseException:
                metrics.discarded(session)
                raise
            metrics.committed(session)

    @asynccontextmanager
    async def _postgresql_transaction(self) -> AsyncIterator[AsyncSession]:
        """The session is bound to one pooled connection that the hot paths also reach
        straight through the driver (`stockflow.db.driver`). Whoever speaks first begins
        the transaction; the session commits it if it took part, else a plain DBAPI commit
        does. This costs about half of what a session of its own does per request: the
        order path rarely needs the session at all."""
        connection = await self.engine.connect()
        request_connection = RequestConnection(connection)
        if request_connection.in_transaction():
            # Never expected (a failed BEGIN or COMMIT discards its connection), but a
            # connection left inside a transaction would swallow this one's work.
            await request_connection.discard()
            await connection.close()
            connection = await self.engine.connect()
            request_connection = RequestConnection(connection)
        try:
            session = AsyncSession(bind=connection, expire_on_commit=False)
            attach(session, request_connection)
            try:
                try:
                    yield session
                    if session.in_transaction():
                        await session.commit()
                    await request_connection.commit()
                except BaseException:
                    metrics.discarded(session)
                    raise
                metrics.committed(session)
            finally:
                if session.in_transaction() or session.sync_session.identity_map:
                    await session.close()
                # else the session never spoke: it holds nothing to release, and closing
                # it costs a greenlet hop on every order.
        finally:
            # Returns the connection to the pool, rolling back whatever is still open.
            await connection.close()

    def pool_status(self) -> tuple[int, int] | None:
        """Connections (in use, idle) in this process's pool; None for a pool that keeps
        none (SQLite in memory, tests' null pools)."""
        pool = self.engine.sync_engine.pool
        checked_out = getattr(pool, "checkedout", None)
        checked_in = getattr(pool, "checkedin", None)
        if checked_out is None or checked_in is None:
            return None
        return int(checked_out()), int(checked_in())

    async def dispose(self) -> None:
        await self.engine.dispose()
