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

from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError
from sqlalchemy.ext.asyncio import AsyncSession


class PgDriver:
    """asyncpg's query methods, with its errors translated; statements are prepared once
    per connection by asyncpg's own statement cache."""

    __slots__ = ("_connection",)

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            rows: list[asyncpg.Record] = await self._connection.fetch(sql, *args)
            return rows
        except Exception as exc:
            raise _translated(sql, args, exc) from exc

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        try:
            return await self._connection.fetchrow(sql, *args)
        except Exception as exc:
            raise _translated(sql, args, exc) from exc

    async def execute(self, sql: str, *args: Any) -> str:
        try:
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


_CACHED = "stockflow.pg_driver"


async def pg_driver(session: AsyncSession) -> PgDriver | None:
    """The session's asyncpg connection, inside its transaction; None on SQLite.

    Kept in the session's ``info`` for the rest of its transaction: finding the driver
    connection takes two trips through SQLAlchemy's greenlet bridge, and an order asks
    for it several times.
    """
    transaction = session.sync_session.get_transaction()
    cached = session.info.get(_CACHED)
    if cached is not None and transaction is not None and cached[0] is transaction:
        driver: PgDriver | None = cached[1]
        return driver
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        session.info[_CACHED] = (session.sync_session.get_transaction(), None)
        return None
    raw = await connection.get_raw_connection()
    asyncpg_connection: asyncpg.Connection = raw.driver_connection
    if not asyncpg_connection.is_in_transaction():
        # SQLAlchemy's asyncpg adapter begins lazily, with the first statement it sends
        # itself; here the driver speaks first, so the adapter is asked to begin (its BEGIN,
        # its isolation level, and its COMMIT later). Without that hook, a statement
        # through SQLAlchemy begins it, at the price of one more round trip.
        begin = getattr(raw.dbapi_connection, "_start_transaction", None)
        if begin is not None:
            await begin()
        else:
            await connection.exec_driver_sql("SELECT 1")
    driver = PgDriver(asyncpg_connection)
    session.info[_CACHED] = (session.sync_session.get_transaction(), driver)
    return driver
