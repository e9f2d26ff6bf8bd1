from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import bindparam, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.base import table_of
from stockflow.db.driver import pg_driver
from stockflow.db.models import ApiKey
from stockflow.db.pagination import Page, paginate


class KeyIdentity(NamedTuple):
    """Who a key is and whether it may be used."""

    id: str
    role: str
    name: str
    customer_id: str | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None


_KEYS = table_of(ApiKey)
# Every request authenticates: a Core statement built once, reading only what a caller is.
_BY_HASH = select(
    _KEYS.c.id,
    _KEYS.c.role,
    _KEYS.c.name,
    _KEYS.c.customer_id,
    _KEYS.c.revoked_at,
    _KEYS.c.last_used_at,
    _KEYS.c.expires_at,
).where(_KEYS.c.key_hash == bindparam("key_hash"))


_PG_BY_HASH = """
SELECT id, role, name, customer_id, revoked_at, last_used_at, expires_at
FROM api_keys WHERE key_hash = $1
"""


async def get_by_hash(session: AsyncSession, key_hash: str) -> KeyIdentity | None:
    """The key's identity and state (id, role, name, customer_id, revoked_at,
    last_used_at, expires_at), or None."""
    driver = await pg_driver(session)
    if driver is not None:
        # The first statement of nearly every request: on PostgreSQL, straight to the driver.
        record = await driver.fetchrow(_PG_BY_HASH, key_hash)
    else:
        result = await (await session.connection()).execute(_BY_HASH, {"key_hash": key_hash})
        record = result.one_or_none()
    return None if record is None else KeyIdentity(*record)


async def get(session: AsyncSession, key_id: str) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def get_fresh(session: AsyncSession, key_id: str) -> ApiKey | None:
    """The key as the database has it now, replacing what the session remembers."""
    return await session.get(ApiKey, key_id, populate_existing=True)


async def add(session: AsyncSession, key: ApiKey) -> ApiKey:
    session.add(key)
    await session.flush()
    return key


async def list_page(
    session: AsyncSession, *, limit: int, cursor: str | None, include_revoked: bool
) -> Page[ApiKey]:
    stmt = select(ApiKey)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return await paginate(session, stmt, ApiKey.id, limit=limit, cursor=cursor)


async def revoke(session: AsyncSession, key_id: str, *, now: datetime) -> bool:
    """Set ``revoked_at`` unless the key is already revoked; False when it was.

    One guarded statement: of two concurrent revocations exactly one changes the row (the
    other waits for it, then finds it revoked), so the first revocation time stands.
    """
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .where(ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def expire(session: AsyncSession, key_id: str, *, at: datetime, replaced_by: str) -> bool:
    """Make a key expire at ``at`` (never later than it already would), naming the key
    that replaces it; False when it is revoked or already rotated."""
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .where(ApiKey.revoked_at.is_(None))
        .where(ApiKey.replaced_by.is_(None))
        .values(
            expires_at=case(
                (ApiKey.expires_at.is_(None), at),
                (ApiKey.expires_at > at, at),
                else_=ApiKey.expires_at,
            ),
            replaced_by=replaced_by,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def record_use(
    session: AsyncSession, key_id: str, *, now: datetime, interval: timedelta
) -> bool:
    """Set ``last_used_at`` unless another process already did within ``interval``."""
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - interval))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def active_ids_named(session: AsyncSession, name: str) -> list[str]:
    stmt = select(ApiKey.id).where(ApiKey.name == name).where(ApiKey.revoked_at.is_(None))
    return list((await session.scalars(stmt)).all())
