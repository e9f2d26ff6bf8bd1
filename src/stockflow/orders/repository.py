"""Order queries. Placement is the hot path: on PostgreSQL, hand-written SQL sent straight to
asyncpg (see `stockflow.db.driver`), one statement per step whatever the number of lines;
on SQLite, prebuilt Core statements. Stock rows are always locked in sorted SKU order."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.base import table_of
from stockflow.db.driver import pg_driver
from stockflow.db.models import (
    Customer,
    Event,
    Location,
    Order,
    OrderLine,
    Product,
    ReadinessCheck,
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
    _PRODUCTS.c.low_stock_threshold,
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
_INSERT_EVENTS = insert(table_of(Event))


@dataclass(frozen=True, slots=True)
class OrderCatalog:
    entries: dict[str, CatalogEntry]
    """The products an order names, priced, by SKU."""
    rules: dict[str, ProductRules]
    """Their shortage rules, by product id."""
    customer_exists: bool
    """Whether the customer asked about exists (True when none was asked about)."""


_PG_CATALOG = """
SELECT p.id, p.sku, p.unit_price, p.currency, p.active, p.shortage_policy,
       p.replenish_buffer_pct, p.reorder_point, p.reorder_up_to, p.low_stock_threshold,
       ($2::varchar IS NULL OR EXISTS (SELECT 1 FROM customers c WHERE c.id = $2)) AS customer
FROM products p
WHERE p.sku = ANY($1::varchar[])
"""


def _entry(row: Any, entries: dict[str, CatalogEntry], rules: dict[str, ProductRules]) -> None:
    entries[row[1]] = CatalogEntry(row[0], row[1], row[2], row[3], row[4])
    rules[row[0]] = ProductRules(ShortagePolicy(row[5]), row[6], row[7], row[8], row[9])


async def order_catalog(
    session: AsyncSession, skus: Sequence[str], *, customer_id: str | None
) -> OrderCatalog:
    """What pricing and checking an order needs, in one round trip on PostgreSQL: its
    products and their rules, and whether ``customer_id`` (if given) exists. With no
    product found the customer is not looked at: the order is refused for its SKUs first."""
    entries: dict[str, CatalogEntry] = {}
    product_rules: dict[str, ProductRules] = {}
    driver = await pg_driver(session)
    if driver is not None:
        rows = await driver.fetch(_PG_CATALOG, list(skus), customer_id)
        for row in rows:
            _entry(row, entries, product_rules)
        return OrderCatalog(entries, product_rules, all(row[10] for row in rows))
    connection = await session.connection()
    for row in await connection.execute(_CATALOG, {"skus": list(skus)}):
        _entry(row, entries, product_rules)
    exists = customer_id is None or (
        await connection.scalar(_CUSTOMER_EXISTS, {"customer_id": customer_id}) is not None
    )
    return OrderCatalog(entries, product_rules, exists)


async def catalog_entries(session: AsyncSession, skus: Sequence[str]) -> dict[str, CatalogEntry]:
    """The products named, priced (by SKU)."""
    return (await order_catalog(session, skus, customer_id=None)).entries


async def _reserve_each(
    session: AsyncSession, lines: Sequence[tuple[str, int]], *, now: datetime
) -> dict[str, StockChange]:
    """SQLite: one guarded statement per (product id, quantity); its write transaction
    holds the whole database, so there are no row locks to order."""
    changes: dict[str, StockChange] = {}
    for product_id, quantity in lines:
        change = await reserve(session, product_id=product_id, quantity=quantity, now=now)
        if change is not None:
            changes[product_id] = change
    return changes


# The catalog read and the reservation in one statement (placing an order): ``wanted``
# locks the default-location stock rows of the SKUs given, in the order given (SKU order),
# ``reserved`` reserves each that has enough, and the products come back with what their
# rows hold now (NULL where nothing was reserved). The guard and the new count are judged
# on the row itself: a row another transaction changed while this one waited for its lock
# is re-read before the guard passes (READ COMMITTED's re-check), so nothing is reserved
# twice. A row that fails the guard as it stood when the statement began is not re-read:
# an order that waited on a concurrent restock can be refused as short although the
# restock, once committed, covers it (a retry then succeeds).
_PG_RESERVE_FROM_CATALOG = """
WITH wanted AS MATERIALIZED (
    SELECT s.product_id, s.location_id, r.quantity
    FROM unnest($1::varchar[], $2::int[]) WITH ORDINALITY AS r(sku, quantity, position)
    JOIN products p ON p.sku = r.sku
    JOIN stock_levels s
      ON s.product_id = p.id
     AND s.location_id = (SELECT id FROM locations WHERE is_default)
    ORDER BY r.position
    FOR UPDATE OF s
),
reserved AS (
    UPDATE stock_levels s
    SET reserved = s.reserved + w.quantity, updated_at = $3
    FROM wanted w
    WHERE s.product_id = w.product_id
      AND s.location_id = w.location_id
      AND s.on_hand - s.reserved >= w.quantity
    RETURNING s.product_id, s.location_id, s.on_hand, s.reserved
)
SELECT p.id, p.sku, p.unit_price, p.currency, p.active, p.shortage_policy,
       p.replenish_buffer_pct, p.reorder_point, p.reorder_up_to, p.low_stock_threshold,
       ($4::varchar IS NULL OR EXISTS (SELECT 1 FROM customers c WHERE c.id = $4)) AS customer,
       r.location_id, r.on_hand, r.reserved
FROM products p
LEFT JOIN reserved r ON r.product_id = p.id
WHERE p.sku = ANY($1::varchar[])
"""


async def reserve_from_catalog(
    session: AsyncSession,
    lines: Sequence[tuple[str, int]],
    *,
    customer_id: str | None,
    now: datetime,
) -> tuple[OrderCatalog, dict[str, StockChange]]:
    """`order_catalog`, and each line reserved at the default location if that much is
    available, for (SKU, quantity) pairs in SKU order: one round trip on PostgreSQL.
    Returns the stock rows after, by product id; a product missing was short (or is not
    in the catalog). Every line's stock row is locked, short or not, so the caller can
    look at a short one again without locking out of order."""
    driver = await pg_driver(session)
    if driver is None:
        catalog = await order_catalog(session, [sku for sku, _ in lines], customer_id=customer_id)
        wanted = [
            (catalog.entries[sku].product_id, quantity)
            for sku, quantity in lines
            if sku in catalog.entries
        ]
        return catalog, await _reserve_each(session, wanted, now=now)
    rows = await driver.fetch(
        _PG_RESERVE_FROM_CATALOG,
        [sku for sku, _ in lines],
        [quantity for _, quantity in lines],
        now,
        customer_id,
    )
    entries: dict[str, CatalogEntry] = {}
    product_rules: dict[str, ProductRules] = {}
    changes: dict[str, StockChange] = {}
    for row in rows:
        _entry(row, entries, product_rules)
        if row[11] is not None:
            changes[row[0]] = StockChange(row[0], row[11], row[12], row[13])
    catalog = OrderCatalog(entries, product_rules, all(row[10] for row in rows))
    return catalog, changes


@dataclass(frozen=True, slots=True)
class UnpaidHoldings:
    """What a customer holds without having paid: orders awaiting payment, and the units
    reserved for them."""

    orders: int
    units: int


async def unpaid_holdings(session: AsyncSession, customer_id: str) -> UnpaidHoldings | None:
    """The customer's unpaid orders and units, with the customer's row locked until the
    transaction ends, so that two orders of one customer placed at once are counted one
    after the other (None: no such customer).

    The lock comes first, in a statement of its own: a statement that waited for a lock
    still reads what was committed before it began, so a count made by the statement that
    waited would miss the order that the lock's holder has just committed. Only orders that
    wait for payment pay for these reads, and they are few per customer: the quota bounds
    them."""
    locked = await session.scalar(
        select(Customer.id).where(Customer.id == customer_id).with_for_update()
    )
    if locked is None:
        return None
    unpaid = (Order.customer_id == customer_id) & (Order.status == "pending_payment")
    orders = select(func.count()).select_from(Order).where(unpaid).scalar_subquery()
    units = (
        select(func.coalesce(func.sum(OrderLine.allocated), 0))
        .select_from(OrderLine)
        .join(Order, Order.id == OrderLine.order_id)
        .where(unpaid)
        .scalar_subquery()
    )
    row = (await session.execute(select(orders, units))).one()
    return UnpaidHoldings(int(row[0]), int(row[1]))


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


_ORDER_COLUMNS = (
    "id", "customer_id", "status", "currency", "subtotal", "shipping_amount", "tax_amount",
    "discount_amount", "total", "metadata", "placed_by", "created_at", "updated_at",
    "payment_provider",
)  # fmt: skip
_LINE_COLUMNS = (
    "id", "order_id", "product_id", "sku", "position", "quantity", "unit_price", "line_total",
    "allocated", "backordered", "shipped",
)  # fmt: skip
_EVENT_COLUMNS = ("id", "type", "object_type", "object_id", "data", "created_at", "trace_context")
_MOVEMENT_COLUMNS = (
    "id", "product_id", "location_id", "on_hand_delta", "reserved_delta", "on_hand_after",
    "reserved_after", "reason", "note", "actor", "order_id", "purchase_order_id", "created_at",
)  # fmt: skip
# The order, its lines, its ledger rows and its events in one statement: the lines,
# movements and events travel as one array per column, so the text (and asyncpg's
# prepared statement) is the same for any number of lines. Foreign keys are checked at
# the end of the statement, when the order row is there. Columns in the order of the
# tuples above.
_PG_INSERT_ORDER = """
WITH new_order AS (
    INSERT INTO orders (
        id, customer_id, status, currency, subtotal, shipping_amount, tax_amount,
        discount_amount, total, metadata, placed_by, created_at, updated_at, payment_provider
    )
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13, $14)
),
new_lines AS (
    INSERT INTO order_lines (
        id, order_id, product_id, sku, position, quantity, unit_price, line_total,
        allocated, backordered, shipped
    )
    SELECT * FROM unnest(
        $15::varchar[], $16::varchar[], $17::varchar[], $18::varchar[], $19::int[],
        $20::int[], $21::bigint[], $22::bigint[], $23::int[], $24::int[], $25::int[]
    )
),
new_events AS (
    INSERT INTO events (id, type, object_type, object_id, data, created_at, trace_context)
    SELECT * FROM unnest(
        $39::varchar[], $40::varchar[], $41::varchar[], $42::varchar[], $43::text[],
        $44::timestamptz[], $45::varchar[]
    )
)
INSERT INTO stock_movements (
    id, product_id, location_id, on_hand_delta, reserved_delta, on_hand_after,
    reserved_after, reason, note, actor, order_id, purchase_order_id, created_at
)
SELECT * FROM unnest(
    $26::varchar[], $27::varchar[], $28::varchar[], $29::int[], $30::int[], $31::int[],
    $32::int[], $33::varchar[], $34::varchar[], $35::varchar[], $36::varchar[],
    $37::varchar[], $38::timestamptz[]
)
"""


def _columns(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> list[list[Any]]:
    return [[row[name] for row in rows] for name in names]


async def insert_order(
    session: AsyncSession,
    *,
    order: dict[str, Any],
    lines: list[dict[str, Any]],
    movements: list[dict[str, Any]],
    events: Sequence[dict[str, Any]] = (),
) -> None:
    """Rows keyed by column name (``metadata``, not the attribute ``metadata_``)."""
    driver = await pg_driver(session)
    if driver is not None:
        head = [order[name] for name in _ORDER_COLUMNS]
        head[9] = json.dumps(head[9])
        await driver.execute(
            _PG_INSERT_ORDER,
            *head,
            *_columns(lines, _LINE_COLUMNS),
            *_columns(movements, _MOVEMENT_COLUMNS),
            *_columns(events, _EVENT_COLUMNS),
        )
        return
    connection = await session.connection()
    await connection.execute(_INSERT_ORDER, [order])
    # One multi-row INSERT each, not one execution per row.
    await connection.execute(_INSERT_LINES.values(lines))
    if movements:
        await connection.execute(_INSERT_MOVEMENTS.values(movements))
    if events:
        await connection.execute(_INSERT_EVENTS.values(list(events)))


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


async def get_many(session: AsyncSession, order_ids: Sequence[str]) -> dict[str, Order]:
    rows = await session.scalars(
        select(Order).where(Order.id.in_(order_ids)).execution_options(populate_existing=True)
    )
    return {order.id: order for order in rows}


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


_INSERT_CHECKS = insert(table_of(ReadinessCheck))


async def add_readiness_checks(
    session: AsyncSession, order_ids: Sequence[str], *, now: datetime
) -> None:
    if order_ids:
        await (await session.connection()).execute(
            _INSERT_CHECKS,
            [
                {"id": new_id("rdy"), "order_id": order_id, "created_at": now}
                for order_id in order_ids
            ],
        )


async def claim_readiness_checks(session: AsyncSession, *, limit: int) -> list[str]:
    """Take a batch of checks (deleted with this transaction); the orders they name."""
    rows = await session.execute(
        select(ReadinessCheck.id, ReadinessCheck.order_id)
        .order_by(ReadinessCheck.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = rows.all()
    if claimed:
        await session.execute(
            delete(ReadinessCheck).where(ReadinessCheck.id.in_([row[0] for row in claimed]))
        )
    return sorted({row[1] for row in claimed})


async def lock_orders(session: AsyncSession, order_ids: Sequence[str]) -> dict[str, Order]:
    """Row-lock orders in id order (so two workers never wait on each other in a cycle)."""
    rows = await session.scalars(
        select(Order)
        .where(Order.id.in_(order_ids))
        .order_by(Order.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {order.id: order for order in rows}


async def told_ready(session: AsyncSession, order_ids: Sequence[str]) -> set[str]:
    """Orders that already have their ``order.ready_to_ship`` (an order is told once: its
    backordered units only ever go down after it is placed)."""
    rows = await session.scalars(
        select(Event.object_id)
        .where(Event.object_id.in_(order_ids))
        .where(Event.type == "order.ready_to_ship")
    )
    return set(rows.all())
