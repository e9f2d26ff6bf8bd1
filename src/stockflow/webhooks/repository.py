"""Webhook endpoint and delivery queries for the API (the relay's are in `relay_queries`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.base import table_of
from stockflow.db.models import Delivery, DeliveryAttempt, Event, WebhookEndpoint
from stockflow.db.pagination import Page, paginate

_INSERT_DELIVERIES = insert(table_of(Delivery))


async def add_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    session.add(endpoint)
    await session.flush()


async def get_endpoint(
    session: AsyncSession, endpoint_id: str, *, for_update: bool = False
) -> WebhookEndpoint | None:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
    if for_update:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt, execution_options={"populate_existing": True})


async def list_endpoints(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> Page[WebhookEndpoint]:
    return await paginate(
        session, select(WebhookEndpoint), WebhookEndpoint.id, limit=limit, cursor=cursor
    )


async def save(session: AsyncSession) -> None:
    await session.flush()


async def delete_endpoint(session: AsyncSession, endpoint_id: str) -> None:
    """The endpoint and everything sent or to be sent to it."""
    owned = select(Delivery.id).where(Delivery.target_id == endpoint_id)
    await session.execute(delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(owned)))
    await session.execute(delete(Delivery).where(Delivery.target_id == endpoint_id))
    await session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))


async def list_deliveries(
    session: AsyncSession, *, endpoint_id: str, status: str | None, limit: int, cursor: str | None
) -> Page[tuple[Delivery, str]]:
    """An endpoint's deliveries, newest first, each with its event's type."""
    stmt = select(Delivery).where(Delivery.target_id == endpoint_id)
    if status is not None:
        stmt = stmt.where(Delivery.status == status)
    page = await paginate(session, stmt, Delivery.id, limit=limit, cursor=cursor)
    types = await event_types(session, [delivery.event_id for delivery in page.items])
    return Page([(delivery, types[delivery.event_id]) for delivery in page.items], page.next_cursor)


async def event_types(session: AsyncSession, event_ids: Sequence[str]) -> dict[str, str]:
    if not event_ids:
        return {}
    rows = await session.execute(select(Event.id, Event.type).where(Event.id.in_(event_ids)))
    return {row[0]: row[1] for row in rows}


async def attempts_of(
    session: AsyncSession, delivery_ids: Sequence[str]
) -> dict[str, list[DeliveryAttempt]]:
    grouped: dict[str, list[DeliveryAttempt]] = {delivery_id: [] for delivery_id in delivery_ids}
    if delivery_ids:
        rows = await session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(delivery_ids))
            .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.id)
        )
        for attempt in rows:
            grouped[attempt.delivery_id].append(attempt)
    return grouped


async def get_delivery(
    session: AsyncSession, delivery_id: str, *, for_update: bool = False
) -> Delivery | None:
    stmt = select(Delivery).where(Delivery.id == delivery_id)
    if for_update:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt, execution_options={"populate_existing": True})


async def retry_delivery(
    session: AsyncSession, *, delivery_id: str, now: datetime, max_attempts: int
) -> None:
    await session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id)
        .values(
            status="pending",
            next_attempt_at=now,
            max_attempts=max_attempts,
            lease_until=None,
            lease_token=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


async def past_events(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime | None,
    types: Sequence[str] | None,
    limit: int,
) -> list[tuple[str, int, str]]:
    """(id, seq, object id) of past events, oldest first."""
    # Events not handed out yet get their deliveries from the dispatcher anyway.
    stmt = (
        select(Event.id, Event.seq, Event.object_id)
        .where(Event.created_at >= since)
        .where(Event.dispatched_at.is_not(None))
    )
    if until is not None:
        stmt = stmt.where(Event.created_at < until)
    if types is not None:
        stmt = stmt.where(Event.type.in_(types))
    rows = await session.execute(stmt.order_by(Event.seq).limit(limit))
    return [(row[0], row[1], row[2]) for row in rows]


async def add_deliveries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await (await session.connection()).execute(_INSERT_DELIVERIES, list(rows))
