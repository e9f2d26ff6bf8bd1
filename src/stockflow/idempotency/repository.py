"""Idempotency records: claimed, completed and pruned with single statements."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import IdempotencyRecord


async def claim(
    session: AsyncSession,
    *,
    principal_id: str,
    key: str,
    request_hash: str,
    method: str,
    path: str,
    now: datetime,
    expires_at: datetime,
) -> IdempotencyRecord | None:
    """Insert the record, or return the committed one that holds the key.

    On PostgreSQL the INSERT waits while another transaction holds the same key uncommitted,
    then either conflicts with its committed record or, if it rolled back, succeeds; on
    SQLite writers are already serialised. So a duplicate never runs beside the original.
    """
    values = {
        "principal_id": principal_id,
        "key": key,
        "request_hash": request_hash,
        "method": method,
        "path": path,
        "created_at": now,
        "expires_at": expires_at,
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(IdempotencyRecord)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["principal_id", "key"])
        .returning(IdempotencyRecord.key)
    )
    if (await session.execute(stmt)).first() is not None:
        return None
    existing = await session.scalar(
        select(IdempotencyRecord)
        .where(IdempotencyRecord.principal_id == principal_id)
        .where(IdempotencyRecord.key == key)
        .execution_options(populate_existing=True)
    )
    if existing is not None and existing.expires_at > now:
        return existing
    if existing is not None:
        # Past its retention but not yet pruned: as good as absent.
        await session.execute(
            delete(IdempotencyRecord)
            .where(IdempotencyRecord.principal_id == principal_id)
            .where(IdempotencyRecord.key == key)
        )
    # Gone (pruned meanwhile, or just deleted): claim it afresh.
    return await claim(
        session,
        principal_id=principal_id,
        key=key,
        request_hash=request_hash,
        method=method,
        path=path,
        now=now,
        expires_at=expires_at,
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
