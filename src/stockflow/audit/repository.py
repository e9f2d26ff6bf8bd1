from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import AuditRecord


async def add(session: AsyncSession, record: AuditRecord) -> None:
    session.add(record)
    await session.flush()


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
