"""Placing and reading orders. Placement is the hot path: it reserves every line with one
guarded statement per SKU, in sorted SKU order, and writes the order, its lines and the
ledger with a handful of statements, all in the request's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.audit import service as audit
from stockflow.auth.roles import Principal
from stockflow.db.models import Order, OrderLine
from stockflow.db.pagination import Page
from stockflow.errors import InsufficientStock, InvalidRequest, NotFound, UnknownCustomer
from stockflow.ids import new_id
from stockflow.orders import repository, rules
from stockflow.orders.repository import StockChange
from stockflow.orders.schemas import OrderCreate, OrderLineRead, OrderRead
from stockflow.orders.states import OrderStatus, fulfilment_flag, initial_status


@dataclass(frozen=True, slots=True)
class OrderLimits:
    max_lines: int
    max_quantity: int


def _customer_for(actor: Principal, requested: str | None) -> str:
    if actor.is_customer:
        assert actor.customer_id is not None
        if requested is not None and requested != actor.customer_id:
            # Another customer's id reads as one that does not exist.
            raise NotFound(f"Customer {requested} does not exist.")
        return actor.customer_id
    if requested is None:
        raise InvalidRequest(
            "customer_id is required when ordering with a non-customer key.",
            errors=[{"location": "body.customer_id", "message": "required"}],
        )
    return requested


def to_read(order: Order, lines: list[OrderLine]) -> OrderRead:
    return OrderRead(
        id=order.id,
        customer_id=order.customer_id,
        status=OrderStatus(order.status),
        fulfilment=fulfilment_flag(backordered_units=sum(line.backordered for line in lines)),
        currency=order.currency,
        subtotal=order.subtotal,
        shipping_amount=order.shipping_amount,
        tax_amount=order.tax_amount,
        discount_amount=order.discount_amount,
        total=order.total,
        lines=[OrderLineRead.model_validate(line) for line in lines],
        metadata=order.metadata_,
        cancel_reason=order.cancel_reason,
        created_at=order.created_at,
        updated_at=order.updated_at,
        cancelled_at=order.cancelled_at,
    )


async def _refuse_short(session: AsyncSession, short: list[rules.PricedLine]) -> NoReturn:
    """Report every short SKU, not just the first: the first is known short; the rest are
    judged on a plain read, since nothing is reserved for a refused order anyway."""
    available = await repository.available(session, [line.product_id for line in short])
    lacking = [
        line
        for index, line in enumerate(short)
        if index == 0 or available.get(line.product_id, 0) < line.quantity
    ]
    raise InsufficientStock(
        "Not enough stock for " + ", ".join(line.sku for line in lacking) + ".",
        items=[
            {
                "sku": line.sku,
                "requested": line.quantity,
                "available": available.get(line.product_id, 0),
            }
            for line in lacking
        ],
    )


async def place_order(
    session: AsyncSession, *, actor: Principal, data: OrderCreate, limits: OrderLimits
) -> OrderRead:
    customer_id = _customer_for(actor, data.customer_id)
    requested = rules.merge_lines(
        ((line.sku, line.quantity) for line in data.lines), max_quantity=limits.max_quantity
    )
    if len(requested) > limits.max_lines:
        raise InvalidRequest(
            f"An order has at most {limits.max_lines} lines (after merging lines of one SKU).",
            errors=[{"location": "body.lines", "message": f"at most {limits.max_lines} SKUs"}],
        )
    catalog = await repository.catalog_entries(session, [line.sku for line in requested])
    priced = rules.price_order(
        requested,
        catalog,
        shipping_amount=data.shipping_amount,
        tax_amount=data.tax_amount,
        discount_amount=data.discount_amount,
        inactive_is_unknown=actor.is_customer,
    )
    if not actor.is_customer and not await repository.customer_exists(session, customer_id):
        raise UnknownCustomer(f"Customer {customer_id} does not exist.", customer_id=customer_id)

    now = datetime.now(UTC)
    # Sorted by SKU: every transaction that touches several stock rows takes them in this
    # order, so two orders can wait for each other but never deadlock.
    by_sku = sorted(priced.lines, key=lambda line: line.sku)
    changes: list[tuple[rules.PricedLine, StockChange]] = []
    for index, line in enumerate(by_sku):
        change = await repository.reserve(
            session, product_id=line.product_id, quantity=line.quantity, now=now
        )
        if change is None:
            await _refuse_short(session, by_sku[index:])
        changes.append((line, change))

    order_id = new_id("ord")
    status = initial_status(payment_required=False)
    order_row: dict[str, Any] = {
        "id": order_id,
        "customer_id": customer_id,
        "status": status.value,
        "currency": priced.currency,
        "subtotal": priced.subtotal,
        "shipping_amount": priced.shipping_amount,
        "tax_amount": priced.tax_amount,
        "discount_amount": priced.discount_amount,
        "total": priced.total,
        "metadata_": data.metadata,
        "placed_by": actor.id,
        "created_at": now,
        "updated_at": now,
    }
    line_rows = [
        {
            "id": new_id("oli"),
            "order_id": order_id,
            "product_id": line.product_id,
            "sku": line.sku,
            "position": position,
            "quantity": line.quantity,
            "unit_price": line.unit_price,
            "line_total": line.line_total,
            "allocated": line.quantity,
            "backordered": 0,
            "shipped": 0,
        }
        for position, line in enumerate(priced.lines)
    ]
    movement_rows = [
        repository.movement_row(
            change,
            on_hand_delta=0,
            reserved_delta=line.quantity,
            reason="order_reserved",
            actor_id=actor.id,
            order_id=order_id,
            now=now,
        )
        for line, change in changes
    ]
    await repository.insert_order(
        session, order=order_row, lines=line_rows, movements=movement_rows
    )
    read = OrderRead(
        id=order_id,
        customer_id=customer_id,
        status=status,
        fulfilment=fulfilment_flag(backordered_units=0),
        currency=priced.currency,
        subtotal=priced.subtotal,
        shipping_amount=priced.shipping_amount,
        tax_amount=priced.tax_amount,
        discount_amount=priced.discount_amount,
        total=priced.total,
        lines=[OrderLineRead.model_validate(row) for row in line_rows],
        metadata=data.metadata,
        cancel_reason=None,
        created_at=now,
        updated_at=now,
        cancelled_at=None,
    )
    if actor.is_staff:
        await audit.record(
            session,
            actor=actor,
            action="order.placed",
            resource_type="order",
            resource_id=order_id,
            before=None,
            after=read.model_dump(mode="json"),
        )
    return read


async def get_order(session: AsyncSession, *, viewer: Principal, order_id: str) -> OrderRead:
    order = await repository.get(session, order_id)
    if order is None or (viewer.is_customer and order.customer_id != viewer.customer_id):
        raise NotFound(f"Order {order_id} does not exist.")
    lines = await repository.lines_of(session, [order.id])
    return to_read(order, lines[order.id])


async def list_orders(
    session: AsyncSession,
    *,
    viewer: Principal,
    limit: int,
    cursor: str | None,
    customer_id: str | None,
    status: OrderStatus | None,
    created_after: datetime | None,
    created_before: datetime | None,
) -> Page[OrderRead]:
    if viewer.is_customer:
        if customer_id is not None and customer_id != viewer.customer_id:
            return Page([], None)
        customer_id = viewer.customer_id
    page = await repository.list_page(
        session,
        limit=limit,
        cursor=cursor,
        customer_id=customer_id,
        status=status.value if status is not None else None,
        created_after=created_after,
        created_before=created_before,
    )
    lines = await repository.lines_of(session, [order.id for order in page.items])
    return Page([to_read(order, lines[order.id]) for order in page.items], page.next_cursor)
