"""Stock rows and the ledger. Every change to a stock row is one guarded statement, so
concurrent writers can never drive a counter past its constraint or lose an update."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import (
    Location,
    Order,
    OrderLine,
    Product,
    PurchaseOrder,
    PurchaseOrderLine,
    StockLevel,
    StockMovement,
)
from stockflow.db.models.purchasing import OPEN_PO_STATUSES
from stockflow.db.pagination import Page, paginate

# The stock counters are INTEGER columns, 32 bits on PostgreSQL: past this, an update fails
# with "integer out of range" there, while SQLite would silently store the larger value.
MAX_STOCK = 2**31 - 1


@dataclass(frozen=True, slots=True)
class LevelRow:
    location_id: str
    location_code: str
    on_hand: int
    reserved: int


@dataclass(frozen=True, slots=True)
class Drift:
    """A counter that differs from what its source of truth says it should be."""

    sku: str
    location_code: str | None  # None for a product-wide counter
    field: str
    recorded: int
    expected: int


async def default_location(session: AsyncSession) -> Location:
    location = await session.scalar(select(Location).where(Location.is_default.is_(True)))
    if location is None:
        raise RuntimeError("the default location is missing; run the migrations")
    return location


async def get_location_by_code(session: AsyncSession, code: str) -> Location | None:
    return await session.scalar(select(Location).where(Location.code == code))


async def open_stock_rows(session: AsyncSession, *, product_id: str, now: datetime) -> None:
    """Give a new product an empty stock row at every location."""
    locations = (await session.scalars(select(Location.id))).all()
    await session.execute(
        insert(StockLevel),
        [
            {
                "product_id": product_id,
                "location_id": location_id,
                "on_hand": 0,
                "reserved": 0,
                "updated_at": now,
            }
            for location_id in locations
        ],
    )


async def open_stock_row(
    session: AsyncSession, *, product_id: str, location_id: str, now: datetime
) -> None:
    """Give a product an empty stock row at one location, unless it has one already."""
    try:
        async with session.begin_nested():
            await session.execute(
                insert(StockLevel).values(
                    product_id=product_id,
                    location_id=location_id,
                    on_hand=0,
                    reserved=0,
                    updated_at=now,
                )
            )
    except IntegrityError:
        # Opened by a concurrent transaction; the savepoint keeps ours usable.
        pass


async def levels(session: AsyncSession, product_id: str) -> list[LevelRow]:
    stmt = (
        select(Location.id, Location.code, StockLevel.on_hand, StockLevel.reserved)
        .join(Location, Location.id == StockLevel.location_id)
        .where(StockLevel.product_id == product_id)
        .order_by(Location.code)
    )
    return [LevelRow(*row) for row in (await session.execute(stmt)).all()]


async def add_on_hand(
    session: AsyncSession,
    *,
    product_id: str,
    location_id: str,
    delta: int,
    now: datetime,
) -> tuple[int, int] | None:
    """Change ``on_hand`` unless that would leave it below ``reserved`` or above
    ``MAX_STOCK``.

    Returns ``(on_hand, reserved)`` after the change, or None when refused (or when the
    row does not exist). The check and the write are one statement, so no concurrent
    reservation can slip between them.
    """
    stmt = (
        update(StockLevel)
        .where(StockLevel.product_id == product_id)
        .where(StockLevel.location_id == location_id)
        # Same as on_hand + delta >= reserved, but with no sum that could overflow the
        # column type on PostgreSQL (and fail the statement) before the row is refused.
        .where(StockLevel.reserved - StockLevel.on_hand <= delta)
        .values(on_hand=StockLevel.on_hand + delta, updated_at=now)
        .returning(StockLevel.on_hand, StockLevel.reserved)
        .execution_options(synchronize_session=False)
    )
    if delta > 0:
        stmt = stmt.where(StockLevel.on_hand <= MAX_STOCK - delta)
    row = (await session.execute(stmt)).one_or_none()
    return None if row is None else (row[0], row[1])


async def add_movement(session: AsyncSession, movement: StockMovement) -> StockMovement:
    session.add(movement)
    await session.flush()
    return movement


async def movements_page(
    session: AsyncSession, *, product_id: str, limit: int, cursor: str | None
) -> Page[StockMovement]:
    stmt = select(StockMovement).where(StockMovement.product_id == product_id)
    return await paginate(session, stmt, StockMovement.id, limit=limit, cursor=cursor)


async def ledger_drift(session: AsyncSession) -> list[Drift]:
    """Stock rows whose counters differ from the sum of their ledger movements."""
    ledger = (
        select(
            StockMovement.product_id,
            StockMovement.location_id,
            func.sum(StockMovement.on_hand_delta).label("on_hand"),
            func.sum(StockMovement.reserved_delta).label("reserved"),
        )
        .group_by(StockMovement.product_id, StockMovement.location_id)
        .subquery()
    )
    ledger_on_hand = func.coalesce(ledger.c.on_hand, 0)
    ledger_reserved = func.coalesce(ledger.c.reserved, 0)
    stmt = (
        select(
            Product.sku,
            Location.code,
            StockLevel.on_hand,
            StockLevel.reserved,
            ledger_on_hand,
            ledger_reserved,
        )
        .join(Product, Product.id == StockLevel.product_id)
        .join(Location, Location.id == StockLevel.location_id)
        .outerjoin(
            ledger,
            and_(
                ledger.c.product_id == StockLevel.product_id,
                ledger.c.location_id == StockLevel.location_id,
            ),
        )
        .where(or_(StockLevel.on_hand != ledger_on_hand, StockLevel.reserved != ledger_reserved))
        .order_by(Product.sku, Location.code)
    )
    drifts: list[Drift] = []
    for sku, code, on_hand, reserved, l_on_hand, l_reserved in (await session.execute(stmt)).all():
        if on_hand != l_on_hand:
            drifts.append(Drift(sku, code, "on_hand", on_hand, int(l_on_hand)))
        if reserved != l_reserved:
            drifts.append(Drift(sku, code, "reserved", reserved, int(l_reserved)))
    return drifts


async def product_counter_drift(session: AsyncSession) -> list[Drift]:
    """Product-wide counters that disagree with the open lines they sum up.

    ``backordered`` is the sum of open order lines' uncovered quantities and ``on_order`` the
    sum of open purchase-order lines' unreceived quantities (an over-delivered line counts
    as nothing still to come, not as a negative).
    """
    waiting = (
        select(OrderLine.product_id, func.sum(OrderLine.backordered).label("units"))
        .join(Order, Order.id == OrderLine.order_id)
        .where(Order.status != "cancelled")
        .where(OrderLine.backordered > 0)
        .group_by(OrderLine.product_id)
        .subquery()
    )
    remaining = PurchaseOrderLine.quantity - PurchaseOrderLine.received
    coming = (
        select(PurchaseOrderLine.product_id, func.sum(remaining).label("units"))
        .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
        .where(PurchaseOrder.status.in_(OPEN_PO_STATUSES))
        .where(remaining > 0)
        .group_by(PurchaseOrderLine.product_id)
        .subquery()
    )
    want_backordered = func.coalesce(waiting.c.units, 0)
    want_on_order = func.coalesce(coming.c.units, 0)
    stmt = (
        select(Product.sku, Product.backordered, want_backordered, Product.on_order, want_on_order)
        .outerjoin(waiting, waiting.c.product_id == Product.id)
        .outerjoin(coming, coming.c.product_id == Product.id)
        .where(or_(Product.backordered != want_backordered, Product.on_order != want_on_order))
        .order_by(Product.sku)
    )
    drifts: list[Drift] = []
    for sku, backordered, expected_backordered, on_order, expected_on_order in (
        await session.execute(stmt)
    ).all():
        if backordered != expected_backordered:
            drifts.append(Drift(sku, None, "backordered", backordered, int(expected_backordered)))
        if on_order != expected_on_order:
            drifts.append(Drift(sku, None, "on_order", on_order, int(expected_on_order)))
    return drifts


async def reservation_drift(session: AsyncSession) -> list[Drift]:
    """Products whose reserved units differ from what open orders hold.

    Every unit reserved is allocated to an order line and not yet shipped; a cancelled
    order holds none.
    """
    held = (
        select(
            OrderLine.product_id,
            func.sum(OrderLine.allocated - OrderLine.shipped).label("held"),
        )
        .join(Order, Order.id == OrderLine.order_id)
        .where(Order.status != "cancelled")
        .group_by(OrderLine.product_id)
        .subquery()
    )
    reserved = (
        select(StockLevel.product_id, func.sum(StockLevel.reserved).label("reserved"))
        .group_by(StockLevel.product_id)
        .subquery()
    )
    expected = func.coalesce(held.c.held, 0)
    stmt = (
        select(Product.sku, reserved.c.reserved, expected)
        .join(reserved, reserved.c.product_id == Product.id)
        .outerjoin(held, held.c.product_id == Product.id)
        .where(reserved.c.reserved != expected)
        .order_by(Product.sku)
    )
    return [
        Drift(sku, None, "reserved", int(recorded), int(want))
        for sku, recorded, want in (await session.execute(stmt)).all()
    ]
