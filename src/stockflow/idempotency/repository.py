"""Idempotency records: claimed, completed and pruned with single statements."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import IdempotencyRecord

LOCK_NOT_AVAILABLE = "55P03"


class KeyBusy(Exception):
    """Another transaction has held the key for longer than the caller will wait."""


async def insert_if_absent(
    session: AsyncSession,
    *,
    principal_id: str,
    key: str,
    request_hash: str,
    method: str,
    path: str,
    now: datetime,
    expires_at: datetime,
    wait_seconds: float,
) -> bool:
    """Insert the record; False when the key is already taken by a committed record.

    On PostgreSQL the INSERT waits while another transaction holds the same key uncommitted,
    then conflicts with its committed record or, if it rolled back, succeeds; on SQLite
    writers are already serialised. The wait is bounded by ``wait_seconds``: past it,
    :class:`KeyBusy` is raised.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(IdempotencyRecord)
        .values(
            principal_id=principal_id,
            key=key,
            request_hash=request_hash,
            method=method,
            path=path,
            created_at=now,
            expires_at=expires_at,
        )
        .on_conflict_do_nothing(index_elements=["principal_id", "key"])
        .returning(IdempotencyRecord.key)
    )
    if dialect != "postgresql":
        return (await session.execute(stmt)).first() is not None
    await session.execute(text(f"SET LOCAL lock_timeout = '{int(wait_seconds * 1000)}ms'"))
    try:
        inserted = (await session.execute(stmt)).first() is not None
    except DBAPIError as exc:
        # No savepoint to return to: a busy key fails the whole request (409), so the
        # transaction it aborted is only ever rolled back.
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise KeyBusy from exc
        raise
    # Only the claim is bounded; the request's own row locks wait as long as they must.
    await session.execute(text("SET LOCAL lock_timeout = 0"))
    return inserted


async def get(session: AsyncSession, *, principal_id: str, key: str) -> IdempotencyRecord | None:
    return await session.scalar(
        select(IdempotencyRecord)
        .where(IdempotencyRecord.principal_id == principal_id)
        .where(IdempotencyRecord.key == key)
        .execution_options(populate_existing=True)
    )


async def delete_one(session: AsyncSession, *, principal_id: str, key: str) -> None:
    await session.execute(
        delete(IdempotencyRecord)
        .where(IdempotencyRecord.principal_id == principal_id)
        .where(IdempotencyRecord.key == key)
    )


async def complete(
    session: AsyncSession,
    *,
    principal_id: str,
    key: str,
    status_code: int,
    body: str,
    headers: dict[str, str],
) -> None:
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.principal_id == principal_id)
        .where(IdempotencyRecord.key == key)
        .values(status_code=status_code, response_body=body, response_headers=headers)
        .execution_options(synchronize_session=False)
    )


async def delete_expired(session: AsyncSession, *, now: datetime) -> int:
    result = await session.execute(
        delete(IdempotencyRecord)
        .where(IdempotencyRecord.expires_at <= now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
