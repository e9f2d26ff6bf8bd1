"""Counts for metrics and readiness. Each is served by an index (or a small table): a
scrape every few seconds must stay cheap however many orders have been taken."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import (
    Delivery,
    Event,
    Location,
    Order,
    OrderLine,
    Product,
    PurchaseOrder,
    StockLevel,
    WebhookEndpoint,
    WorkerHeartbeat,
)

_OPEN_PO = ("draft", "submitted", "acknowledged", "partially_received")
_AWAITING = ("submitted", "acknowledged", "partially_received")


async def lines_waiting(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).select_from(OrderLine).where(OrderLine.backordered > 0)
    )
    return int(count or 0)


async def units_backordered(session: AsyncSession) -> int:
    total = await session.scalar(select(func.coalesce(func.sum(Product.backordered), 0)))
    return int(total or 0)


async def purchase_orders_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(PurchaseOrder.status, func.count()).group_by(PurchaseOrder.status)
    )
    return {status: int(count) for status, count in rows}


async def purchase_orders_overdue(session: AsyncSession, *, today: date) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(PurchaseOrder)
        .where(
            PurchaseOrder.status.in_(_AWAITING),
            PurchaseOrder.expected_delivery_date < today,
        )
    )
    return int(count or 0)


def _active_products() -> tuple[Select[Any], ColumnElement[int]]:
    """Active products with what is available of each at the default location (none
    stocked there counts as zero)."""
    available = func.coalesce(StockLevel.on_hand - StockLevel.reserved, 0)
    statement = (
        select(func.count())
        .select_from(Product)
        .outerjoin(Location, Location.is_default.is_(True))
        .outerjoin(
            StockLevel,
            and_(StockLevel.product_id == Product.id, StockLevel.location_id == Location.id),
        )
        .where(Product.active.is_(True))
    )
    return statement, available


async def products_out_of_stock(session: AsyncSession) -> int:
    statement, available = _active_products()
    return int(await session.scalar(statement.where(available <= 0)) or 0)


async def products_low_stock(session: AsyncSession) -> int:
    statement, available = _active_products()
    low = statement.where(
        Product.low_stock_threshold.is_not(None),
        available > 0,
        available <= Product.low_stock_threshold,
    )
    return int(await session.scalar(low) or 0)


async def undispatched_events(session: AsyncSession) -> tuple[int, datetime | None]:
    row = (
        await session.execute(
            select(func.count(), func.min(Event.created_at)).where(Event.dispatched_at.is_(None))
        )
    ).one()
    return int(row[0]), row[1]


async def oldest_undispatched(session: AsyncSession) -> datetime | None:
    """When the oldest event still waiting for the relay was written (one index probe)."""
    created: datetime | None = await session.scalar(
        select(Event.created_at).where(Event.dispatched_at.is_(None)).order_by(Event.seq).limit(1)
    )
    return created


async def deliveries_pending(session: AsyncSession) -> dict[str, tuple[int, datetime | None]]:
    rows = await session.execute(
        select(Delivery.target_type, func.count(), func.min(Delivery.created_at))
        .where(Delivery.status == "pending")
        .group_by(Delivery.target_type)
    )
    return {kind: (int(count), oldest) for kind, count, oldest in rows}


async def dead_letters(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(Delivery.target_type, func.count())
        .where(Delivery.status == "dead")
        .group_by(Delivery.target_type)
    )
    return {kind: int(count) for kind, count in rows}


async def endpoints_disabled(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(False))
    )
    return int(count or 0)


async def orders_awaiting_payment(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Order).where(Order.status == "pending_payment")
    )
    return int(count or 0)


async def heartbeats(
    session: AsyncSession, *, alive_since: datetime
) -> tuple[datetime | None, int]:
    """The most recent heartbeat of any worker, and how many workers beat since
    ``alive_since``."""
    row = (
        await session.execute(
            select(
                func.max(WorkerHeartbeat.beat_at),
                func.count().filter(WorkerHeartbeat.beat_at >= alive_since),
            )
        )
    ).one()
    return row[0], int(row[1] or 0)


async def beat(
    session: AsyncSession,
    *,
    worker_id: str,
    hostname: str,
    pid: int,
    started_at: datetime,
    now: datetime,
) -> None:
    """Refresh this worker's heartbeat row, writing it on the first beat."""
    updated = await session.execute(
        update(WorkerHeartbeat).where(WorkerHeartbeat.id == worker_id).values(beat_at=now)
    )
    if getattr(updated, "rowcount", 0) == 0:
        await session.execute(
            insert(WorkerHeartbeat).values(
                id=worker_id, hostname=hostname, pid=pid, started_at=started_at, beat_at=now
            )
        )


async def forget_heartbeats(
    session: AsyncSession, *, worker_id: str | None = None, older_than: datetime | None = None
) -> None:
    """Remove a stopping worker's row, or the rows of workers gone quiet long ago."""
    statement = delete(WorkerHeartbeat)
    if worker_id is not None:
        statement = statement.where(WorkerHeartbeat.id == worker_id)
    if older_than is not None:
        statement = statement.where(WorkerHeartbeat.beat_at < older_than)
    await session.execute(statement)
