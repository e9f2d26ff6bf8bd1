"""Event queries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.base import table_of
from stockflow.db.models import Delivery, DeliveryAttempt, Event
from stockflow.db.pagination import Page, paginate

_INSERT = insert(table_of(Event))


async def add(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await (await session.connection()).execute(_INSERT, list(rows))


async def get(session: AsyncSession, event_id: str) -> Event | None:
    return await session.scalar(select(Event).where(Event.id == event_id))


async def list_page(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    types: Sequence[str],
    object_id: str | None,
) -> Page[Event]:
    stmt = select(Event)
    if types:
        stmt = stmt.where(Event.type.in_(types))
    if object_id is not None:
        stmt = stmt.where(Event.object_id == object_id)
    return await paginate(session, stmt, Event.id, limit=limit, cursor=cursor)


PRUNE_BATCH = 5000


async def prune(session: AsyncSession, *, older_than: datetime) -> int:
    """Delete up to one batch of events created before ``older_than`` that are handed out
    and have no delivery still pending, with their deliveries and attempts."""
    done = (
        select(Event.id)
        .where(Event.created_at < older_than)
        .where(Event.dispatched_at.is_not(None))
        .where(~exists().where((Delivery.event_id == Event.id) & (Delivery.status == "pending")))
        .limit(PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    ids = list((await session.scalars(done)).all())
    if not ids:
        return 0
    # The events are locked, so no delivery of them can be added now; one retried by hand
    # meanwhile is pending again and kept, and then its event's delete fails on the
    # foreign key: the batch rolls back and the next round leaves that event alone.
    finished = (
        select(Delivery.id).where(Delivery.event_id.in_(ids)).where(Delivery.status != "pending")
    )
    await session.execute(delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(finished)))
    await session.execute(
        delete(Delivery).where(Delivery.event_id.in_(ids)).where(Delivery.status != "pending")
    )
    await session.execute(delete(Event).where(Event.id.in_(ids)))
    return len(ids)
