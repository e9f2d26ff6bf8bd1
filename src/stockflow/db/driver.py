"""The PostgreSQL driver under a session's transaction, for the order path's own SQL.

SQLAlchemy's execution layer costs several times the database's own work per statement
(compiling, caching, result processing), and placing an order is the one path where that
decides the throughput. Its repositories therefore send hand-written SQL straight to
asyncpg on PostgreSQL, on the very connection and inside the very transaction of the
request's session: the session still begins, commits and rolls back, and everything else
keeps using it. SQLite has no round trips to save and keeps the portable statements.

Errors are raised as SQLAlchemy raises them (``DBAPIError`` around the driver's exception),
so the problem handlers and retry rules see one kind of database error, whichever path
sent the statement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from stockflow.observability import metrics, tracing


class PgDriver:
    """asyncpg's query methods, with its errors translated; statements are prepared once
    per connection by asyncpg's own statement cache. Each statement is counted for the
    request's metrics and, when tracing, gets its span (SQLAlchemy's instrumentation does
    not see statements sent this way)."""

    __slots__ = ("_connection",)

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        metrics.count_statement()
        try:
            with tracing.statement_span(sql):
                rows: list[asyncpg.Record] = await self._connection.fetch(sql, *args)
            return rows
        except Exception as exc:
            raise _translated(sql, args, exc) from exc

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        metrics.count_statement()
        try:
            with tracing.statement_span(sql):
                return await self._connection.fetchrow(sql, *args)
        except Exception as exc:
            raise _translated(sql, args, exc) from exc

    async def execute(self, sql: str, *args: Any) -> str:
        metrics.count_statement()
        try:
            with tracing.statement_span(sql):
                status: str = await self._connection.execute(sql, *args)
            return status
        except Exception as exc:
            raise _translated(sql, args, exc) from exc


def _translated(sql: str, args: Sequence[Any], exc: Exception) -> Exception:
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return IntegrityError(sql, args, exc)
    if isinstance(exc, asyncpg.PostgresError):
        return DBAPIError(sql, args, exc)
    if isinstance(exc, asyncpg.InterfaceError | OSError):
        # The connection is gone: the session's rollback finds that out and SQLAlchemy
        # discards the connection; the request answers 503 (retryable).
        return InterfaceError(sql, args, exc)
    return exc


_DRIVER = "stockflow.pg_driver"


class RequestConnection:
    """The pooled connection under one PostgreSQL transaction of `Database`: reachable
    from its session (which is bound to it) and from the driver, with the transaction
    begun by whichever speaks first."""

    __slots__ = ("_connection", "_driver")

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._driver: PgDriver | None = None

    @property
    def _pooled(self) -> Any:
        return self._connection.sync_connection.connection  # type: ignore[union-attr]

    def in_transaction(self) -> bool:
        """Whether a transaction is open on the connection, whoever began it."""
        return bool(self._pooled.driver_connection.is_in_transaction())

    async def driver(self) -> PgDriver:
        pooled = self._pooled
        if not pooled.driver_connection.is_in_transaction():
            # SQLAlchemy's asyncpg adapter begins lazily, with the first statement it sends
            # itself; when the driver speaks first, the adapter is asked to begin (its
            # BEGIN, its isolation level), so that a later statement through SQLAlchemy
            # and the commit (a DBAPI commit) work on the same transaction. Without that
            # hook, a statement through SQLAlchemy begins it, at one more round trip.
            begin = getattr(pooled.dbapi_connection, "_start_transaction", None)
            if begin is None:
                await self._connection.exec_driver_sql("SELECT 1")
            else:
                await self._guarded("BEGIN", begin)
        if self._driver is None:
            self._driver = PgDriver(pooled.driver_connection)
        return self._driver

    async def commit(self) -> None:
        """Commit what the driver alone sent (a transaction SQLAlchemy's session has not
        joined, so its own commit does not reach it)."""
        if self.in_transaction():
            dbapi_connection = self._pooled.dbapi_connection
            transaction = getattr(dbapi_connection, "_transaction", None)
            discarding = getattr(dbapi_connection, "_call_and_discard", None)
            if transaction is not None and discarding is not None:
                # The adapter's own commit, awaited here rather than through a greenlet:
                # the same COMMIT, after which the adapter forgets the transaction.
                await self._guarded("COMMIT", lambda: discarding(transaction.commit))
                return

            async def commit() -> None:
                await self._connection.run_sync(lambda _: dbapi_connection.commit())

            await self._guarded("COMMIT", commit)

    async def _guarded(self, command: str, step: Callable[[], Awaitable[Any]]) -> None:
        """Run a BEGIN or COMMIT that SQLAlchemy's own error handling does not see.

        If it fails or is cancelled midway, the server and the adapter may disagree about
        an open transaction (or the connection is gone), and the pool's rollback on return
        would not clean it up: the connection is discarded instead. The error is raised
        as SQLAlchemy raises database errors, so it answers as one (503 when the database
        is unreachable or the transaction was rolled back).
        """
        try:
            await step()
        except BaseException as exc:
            await self.discard()
            if not isinstance(exc, Exception):
                raise
            sqlstate = getattr(exc, "sqlstate", None)
            if isinstance(sqlstate, str) and sqlstate:
                raise DBAPIError(command, None, exc) from exc
            raise InterfaceError(command, None, exc) from exc

    async def discard(self) -> None:
        """Close the connection for good instead of returning it to the pool."""
        with contextlib.suppress(Exception):
            await self._connection.invalidate()


def attach(session: AsyncSession, connection: RequestConnection) -> None:
    session.info[_DRIVER] = connection


async def pg_driver(session: AsyncSession) -> PgDriver | None:
    """The asyncpg connection under the session's transaction; None on SQLite."""
    connection: RequestConnection | None = session.info.get(_DRIVER)
    if connection is None:
        return None
    return await connection.driver()
