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


async def pg_driver(session: AsyncSession) -> PgDriver | None:
    """The session's asyncpg connection, inside its transaction; None on SQLite."""
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        return None
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    if not driver.is_in_transaction():
        # SQLAlchemy begins lazily, with the first statement it sends itself. The order
        # path's first statement (authentication) always goes through it, so this only
        # runs for a caller that reaches the driver before anything else.
        await connection.exec_driver_sql("SELECT 1")
    return PgDriver(driver)
