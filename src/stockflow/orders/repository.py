"""Order queries. Placement is the hot path: Core statements, few round trips, and stock
rows touched in sorted SKU order by single guarded statements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.base import table_of
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
from stockflow.inventory.policy import ProductRules, ShortagePolicy
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
    order_id: str | None,
    now: datetime,
    note: str | None = None,
    purchase_order_id: str | None = None,
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
        "purchase_order_id": purchase_order_id,
        "created_at": now,
    }


_PRODUCTS = table_of(Product)
_CUSTOMERS = table_of(Customer)
_STOCK = table_of(StockLevel)
_LOCATIONS = table_of(Location)

# The hot path's statements, built once: executed as Core with bound parameters, they
# skip the ORM's per-statement planning, which costs several times the database's work.
_CATALOG = select(
    _PRODUCTS.c.id,
    _PRODUCTS.c.sku,
    _PRODUCTS.c.unit_price,
    _PRODUCTS.c.currency,
    _PRODUCTS.c.active,
    _PRODUCTS.c.shortage_policy,
    _PRODUCTS.c.replenish_buffer_pct,
    _PRODUCTS.c.reorder_point,
    _PRODUCTS.c.reorder_up_to,
).where(_PRODUCTS.c.sku.in_(bindparam("skus", expanding=True)))
_CUSTOMER_EXISTS = select(_CUSTOMERS.c.id).where(_CUSTOMERS.c.id == bindparam("customer_id"))
_DEFAULT_LOCATION_ID = (
    select(_LOCATIONS.c.id).where(_LOCATIONS.c.is_default.is_(True)).scalar_subquery()
)
_RESERVE = (
    update(_STOCK)
    .where(_STOCK.c.product_id == bindparam("p_product_id"))
    .where(_STOCK.c.location_id == _DEFAULT_LOCATION_ID)
    .where(_STOCK.c.on_hand - _STOCK.c.reserved >= bindparam("p_quantity"))
    .values(reserved=_STOCK.c.reserved + bindparam("p_quantity"), updated_at=bindparam("p_now"))
    .returning(_STOCK.c.location_id, _STOCK.c.on_hand, _STOCK.c.reserved)
)
_INSERT_ORDER = insert(table_of(Order))
_INSERT_LINES = insert(table_of(OrderLine))
_INSERT_MOVEMENTS = insert(table_of(StockMovement))


async def catalog_entries(
    session: AsyncSession, skus: Sequence[str]
) -> tuple[dict[str, CatalogEntry], dict[str, ProductRules]]:
    """The products an order names, priced (by SKU), and their shortage rules (by id):
    one statement for both, since every order needs them."""
    rows = await (await session.connection()).execute(_CATALOG, {"skus": list(skus)})
    entries: dict[str, CatalogEntry] = {}
    product_rules: dict[str, ProductRules] = {}
    for row in rows:
        entries[row.sku] = CatalogEntry(row.id, row.sku, row.unit_price, row.currency, row.active)
        product_rules[row.id] = ProductRules(
            ShortagePolicy(row.shortage_policy),
            row.replenish_buffer_pct,
            row.reorder_point,
            row.reorder_up_to,
        )
    return entries, product_rules


async def customer_exists(session: AsyncSession, customer_id: str) -> bool:
    found = await (await session.connection()).scalar(
        _CUSTOMER_EXISTS, {"customer_id": customer_id}
    )
    return found is not None


async def reserve(
    session: AsyncSession, *, product_id: str, quantity: int, now: datetime
) -> StockChange | None:
    """Reserve at the default location if that much is available; None when it is not."""
    row = (
        await (await session.connection()).execute(
            _RESERVE, {"p_product_id": product_id, "p_quantity": quantity, "p_now": now}
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
    """Rows keyed by column name (``metadata``, not the attribute ``metadata_``)."""
    connection = await session.connection()
    await connection.execute(_INSERT_ORDER, [order])
    # One multi-row INSERT each, not one execution per row.
    await connection.execute(_INSERT_LINES.values(lines))
    if movements:
        await connection.execute(_INSERT_MOVEMENTS.values(movements))


async def add_movements(session: AsyncSession, movements: list[dict[str, Any]]) -> None:
    if movements:
        await (await session.connection()).execute(_INSERT_MOVEMENTS.values(movements))


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


@dataclass(frozen=True, slots=True)
class WaitingLine:
    """An open order's line with units waiting for stock, in the backlog queue."""

    line_id: str
    order_id: str
    product_id: str
    backordered: int


async def waiting_lines(
    session: AsyncSession, product_ids: Sequence[str]
) -> dict[str, list[WaitingLine]]:
    """Each product's backlog queue: backordered lines of open orders, oldest order first
    (order ids are time-sortable, so they break a tie in ``created_at``)."""
    queues: dict[str, list[WaitingLine]] = {product_id: [] for product_id in product_ids}
    if not product_ids:
        return queues
    rows = await session.execute(
        select(OrderLine.id, OrderLine.order_id, OrderLine.product_id, OrderLine.backordered)
        .join(Order, Order.id == OrderLine.order_id)
        .where(OrderLine.product_id.in_(product_ids))
        .where(OrderLine.backordered > 0)
        .where(Order.status != "cancelled")
        .order_by(Order.created_at, Order.id)
    )
    for row in rows.all():
        queues[row[2]].append(WaitingLine(*row))
    return queues


async def allocate_to_line(session: AsyncSession, *, line_id: str, units: int) -> None:
    """Move units of a line from backordered to allocated; guarded so a line is never
    given more than it waits for."""
    result = await session.execute(
        update(OrderLine)
        .where(OrderLine.id == line_id)
        .where(OrderLine.backordered >= units)
        .values(allocated=OrderLine.allocated + units, backordered=OrderLine.backordered - units)
        .returning(OrderLine.id)
        .execution_options(synchronize_session=False)
    )
    if result.one_or_none() is None:
        raise RuntimeError(f"order line {line_id} waits for fewer than {units} units")


async def stock_for_update(session: AsyncSession, product_id: str) -> StockChange:
    """The default-location stock row, row-locked (SQLite's write transaction already
    holds the whole database)."""
    row = (
        await session.execute(
            select(StockLevel.location_id, StockLevel.on_hand, StockLevel.reserved)
            .where(StockLevel.product_id == product_id)
            .where(StockLevel.location_id == _DEFAULT_LOCATION)
            .with_for_update()
        )
    ).one()
    return StockChange(product_id, row[0], row[1], row[2])


async def lock_stock_rows(
    session: AsyncSession, *, product_ids: Sequence[str], location_id: str
) -> None:
    """Row-lock stock rows in the order given (callers sort by SKU), before reading order
    lines whose allocation only changes while their SKU's stock row is locked."""
    for product_id in product_ids:
        await session.execute(
            select(StockLevel.product_id)
            .where(StockLevel.product_id == product_id)
            .where(StockLevel.location_id == location_id)
            .with_for_update()
        )


async def reserve_units(
    session: AsyncSession, *, product_id: str, location_id: str, quantity: int, now: datetime
) -> StockChange:
    """Reserve units known to be available (the row is locked): for serving the backlog."""
    return await _change_row(
        session,
        product_id=product_id,
        location_id=location_id,
        on_hand_delta=0,
        reserved_delta=quantity,
        now=now,
    )
