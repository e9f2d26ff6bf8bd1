"""Idempotency records: claimed, completed and pruned with single statements."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.driver import pg_driver
from stockflow.db.models import IdempotencyRecord

LOCK_NOT_AVAILABLE = "55P03"


# The claim in one round trip. Only the claim's wait is bounded: ``lock_timeout`` is set
# for the transaction before the INSERT can wait on another request's uncommitted record,
# and set back to none (the request's own row locks wait as long as they must) once the
# claim is won; a lost claim sets it back with a statement of its own.
_PG_CLAIM = """
WITH bounded AS MATERIALIZED (SELECT set_config('lock_timeout', $8, true))
, claimed AS (
    INSERT INTO idempotency_records
        (principal_id, key, request_hash, method, path, created_at, expires_at)
    SELECT $1, $2, $3, $4, $5, $6, $7 FROM bounded
    ON CONFLICT (principal_id, key) DO NOTHING
    RETURNING key
)
SELECT key, set_config('lock_timeout', '0', true) FROM claimed
"""
_PG_COMPLETE = """
UPDATE idempotency_records
SET status_code = $3, response_body = $4, response_headers = $5::jsonb
WHERE principal_id = $1 AND key = $2
"""


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
    driver = await pg_driver(session)
    if driver is None:
        stmt = (
            sqlite.insert(IdempotencyRecord)
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
        return (await session.execute(stmt)).first() is not None
    try:
        row = await driver.fetchrow(
            _PG_CLAIM,
            principal_id,
            key,
            request_hash,
            method,
            path,
            now,
            expires_at,
            f"{int(wait_seconds * 1000)}ms",
        )
    except DBAPIError as exc:
        # No savepoint to return to: a busy key fails the whole request (409), so the
        # transaction it aborted is only ever rolled back.
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise KeyBusy from exc
        raise
    if row is None:
        # Lost to a committed record: the transaction only replays it (or, past its
        # retention, deletes and claims again), unbounded like any other.
        await driver.execute("SELECT set_config('lock_timeout', '0', true)")
    return row is not None


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
    driver = await pg_driver(session)
    if driver is not None:
        await driver.execute(
            _PG_COMPLETE, principal_id, key, status_code, body, json.dumps(headers)
        )
        return
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
