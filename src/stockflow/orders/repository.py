"""Order queries. Placement is the hot path: Core statements, few round trips, and stock
rows touched in sorted SKU order by single guarded statements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import (
    Customer,
    Location,
    Order,
    OrderLine,
    Product,
    Shipment,
    ShipmentLine,
    StockLevel,
    StockMovement,
)
from stockflow.db.pagination import Page, paginate
from stockflow.ids import new_id
from stockflow.orders.rules import CatalogEntry

_DEFAULT_LOCATION = select(Location.id).where(Location.is_default.is_(True)).scalar_subquery()


@dataclass(frozen=True, slots=True)
class StockChange:
    """A stock row after a guarded change: what the ledger records as the row's new state."""

    product_id: str
    location_id: str
    on_hand: int
    reserved: int


def movement_row(
    change: StockChange,
    *,
    on_hand_delta: int,
    reserved_delta: int,
    reason: str,
    actor_id: str,
    order_id: str,
    now: datetime,
    note: str | None = None,
) -> dict[str, Any]:
    """The ledger row for one guarded stock change, carrying the row's state after it."""
    return {
        "id": new_id("mov"),
        "product_id": change.product_id,
        "location_id": change.location_id,
        "on_hand_delta": on_hand_delta,
        "reserved_delta": reserved_delta,
        "on_hand_after": change.on_hand,
        "reserved_after": change.reserved,
        "reason": reason,
        "note": note,
        "actor": actor_id,
        "order_id": order_id,
        "created_at": now,
    }


async def catalog_entries(session: AsyncSession, skus: Sequence[str]) -> dict[str, CatalogEntry]:
    rows = await session.execute(
        select(Product.id, Product.sku, Product.unit_price, Product.currency, Product.active).where(
            Product.sku.in_(skus)
        )
    )
    return {
        row.sku: CatalogEntry(row.id, row.sku, row.unit_price, row.currency, row.active)
        for row in rows
    }


async def customer_exists(session: AsyncSession, customer_id: str) -> bool:
    found = await session.scalar(select(Customer.id).where(Customer.id == customer_id))
    return found is not None


async def reserve(
    session: AsyncSession, *, product_id: str, quantity: int, now: datetime
) -> StockChange | None:
    """Reserve at the default location if that much is available; None when it is not."""
    row = (
        await session.execute(
            update(StockLevel)
            .where(StockLevel.product_id == product_id)
            .where(StockLevel.location_id == _DEFAULT_LOCATION)
            .where(StockLevel.on_hand - StockLevel.reserved >= quantity)
            .values(reserved=StockLevel.reserved + quantity, updated_at=now)
            .returning(StockLevel.location_id, StockLevel.on_hand, StockLevel.reserved)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    return None if row is None else StockChange(product_id, row[0], row[1], row[2])


async def available(session: AsyncSession, product_ids: Sequence[str]) -> dict[str, int]:
    """Available units at the default location, read without locking (for error reports)."""
    rows = await session.execute(
        select(StockLevel.product_id, StockLevel.on_hand - StockLevel.reserved)
        .where(StockLevel.product_id.in_(product_ids))
        .where(StockLevel.location_id == _DEFAULT_LOCATION)
    )
    return {product_id: int(units) for product_id, units in rows}


async def _change_row(
    session: AsyncSession,
    *,
    product_id: str,
    location_id: str,
    on_hand_delta: int,
    reserved_delta: int,
    now: datetime,
) -> StockChange:
    row = (
        await session.execute(
            update(StockLevel)
            .where(StockLevel.product_id == product_id)
            .where(StockLevel.location_id == location_id)
            .values(
                on_hand=StockLevel.on_hand + on_hand_delta,
                reserved=StockLevel.reserved + reserved_delta,
                updated_at=now,
            )
            .returning(StockLevel.on_hand, StockLevel.reserved)
            .execution_options(synchronize_session=False)
        )
    ).one()
    return StockChange(product_id, location_id, row[0], row[1])


async def release(
    session: AsyncSession, *, product_id: str, location_id: str, quantity: int, now: datetime
) -> StockChange:
    """Give reserved units back to available."""
    return await _change_row(
        session,
        product_id=product_id,
        location_id=location_id,
        on_hand_delta=0,
        reserved_delta=-quantity,
        now=now,
    )


async def take_shipped(
    session: AsyncSession, *, product_id: str, location_id: str, quantity: int, now: datetime
) -> StockChange:
    """Reserved units leave the building: on_hand and reserved both drop."""
    return await _change_row(
        session,
        product_id=product_id,
        location_id=location_id,
        on_hand_delta=-quantity,
        reserved_delta=-quantity,
        now=now,
    )


async def default_location_id(session: AsyncSession) -> str:
    location_id = await session.scalar(select(Location.id).where(Location.is_default.is_(True)))
    assert location_id is not None, "the default location is created by the first migration"
    return location_id


async def insert_order(
    session: AsyncSession,
    *,
    order: dict[str, Any],
    lines: list[dict[str, Any]],
    movements: list[dict[str, Any]],
) -> None:
    await session.execute(insert(Order), [order])
    await session.execute(insert(OrderLine), lines)
    if movements:
        await session.execute(insert(StockMovement), movements)


async def add_movements(session: AsyncSession, movements: list[dict[str, Any]]) -> None:
    if movements:
        await session.execute(insert(StockMovement), movements)


async def get_for_update(session: AsyncSession, order_id: str) -> Order | None:
    """The order, row-locked so shipments and cancellations of it run one at a time."""
    return await session.scalar(
        select(Order).where(Order.id == order_id).with_for_update(),
        execution_options={"populate_existing": True},
    )


async def get(session: AsyncSession, order_id: str) -> Order | None:
    return await session.get(Order, order_id)


async def lines_of(session: AsyncSession, order_ids: Sequence[str]) -> dict[str, list[OrderLine]]:
    grouped: dict[str, list[OrderLine]] = {order_id: [] for order_id in order_ids}
    if not order_ids:
        return grouped
    rows = await session.scalars(
        select(OrderLine)
        .where(OrderLine.order_id.in_(order_ids))
        .order_by(OrderLine.order_id, OrderLine.position)
        .execution_options(populate_existing=True)
    )
    for line in rows:
        grouped[line.order_id].append(line)
    return grouped


async def list_page(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    customer_id: str | None,
    status: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
) -> Page[Order]:
    stmt = select(Order)
    if customer_id is not None:
        stmt = stmt.where(Order.customer_id == customer_id)
    if status is not None:
        stmt = stmt.where(Order.status == status)
    if created_after is not None:
        stmt = stmt.where(Order.created_at >= created_after)
    if created_before is not None:
        stmt = stmt.where(Order.created_at < created_before)
    return await paginate(session, stmt, Order.id, limit=limit, cursor=cursor)


async def add_shipment(
    session: AsyncSession, *, shipment: dict[str, Any], lines: list[dict[str, Any]]
) -> None:
    await session.execute(insert(Shipment), [shipment])
    await session.execute(insert(ShipmentLine), lines)


async def flush(session: AsyncSession) -> None:
    await session.flush()
