from __future__ import annotations

from typing import Any

from sqlalchemy import insert, null, select
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.base import table_of
from stockflow.db.models import AuditRecord
from stockflow.db.pagination import Page, paginate

_INSERT = insert(table_of(AuditRecord))


async def add(session: AsyncSession, row: dict[str, Any]) -> None:
    """One Core INSERT: audit records are written on hot paths (staff orders) and never
    read back in the same transaction, so they need no ORM identity."""
    values = {
        **row,
        # SQL NULL, not the JSON value null, for a record with no before or after.
        "before": null() if row.get("before") is None else row["before"],
        "after": null() if row.get("after") is None else row["after"],
    }
    await (await session.connection()).execute(_INSERT, [values])


async def for_resource(
    session: AsyncSession, resource_type: str, resource_id: str
) -> list[AuditRecord]:
    stmt = (
        select(AuditRecord)
        .where(AuditRecord.resource_type == resource_type)
        .where(AuditRecord.resource_id == resource_id)
        .order_by(AuditRecord.id)
    )
    return list((await session.scalars(stmt)).all())


async def list_page(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    actor_id: str | None = None,
    action: str | None = None,
) -> Page[AuditRecord]:
    stmt = select(AuditRecord)
    if resource_type is not None:
        stmt = stmt.where(AuditRecord.resource_type == resource_type)
    if resource_id is not None:
        stmt = stmt.where(AuditRecord.resource_id == resource_id)
    if actor_id is not None:
        stmt = stmt.where(AuditRecord.actor_id == actor_id)
    if action is not None:
        stmt = stmt.where(AuditRecord.action == action)
    return await paginate(session, stmt, AuditRecord.id, limit=limit, cursor=cursor)
