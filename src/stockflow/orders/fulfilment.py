"""Shipping and cancelling orders.

Both lock the order row first and then its stock rows in sorted SKU order, the order
placement uses too, so fulfilment and placement can wait for each other but never
deadlock. The lines are read only once those stock rows are locked: serving the backlog
moves a line's units from backordered to allocated while holding its SKU's stock row, so
a line read before the lock could be stale by the time it is changed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.audit import service as audit
from stockflow.auth.roles import Principal
from stockflow.db.models import Order, OrderLine
from stockflow.errors import InvalidRequest, NotFound, ShipmentExceedsReserved
from stockflow.events import outbox
from stockflow.events.types import EventType
from stockflow.ids import new_id
from stockflow.inventory import backlog
from stockflow.orders import repository, rules
from stockflow.orders.repository import StockChange
from stockflow.orders.schemas import OrderRead, ShipmentCreate, ShipmentLineRead, ShipmentRead
from stockflow.orders.service import promises_for, to_read
from stockflow.orders.states import (
    InvalidStateTransition,
    OrderEvent,
    OrderStatus,
    can_cancel,
    next_status,
    shipment_event,
)
from stockflow.payments import refunds as payment_refunds
from stockflow.payments.rules import refundable, unshipped_value
from stockflow.purchasing import po_repository

_NO_PER_LINE_LIMIT = 2**31 - 1


async def _locked_order(
    session: AsyncSession, viewer: Principal, order_id: str, *, skus: set[str] | None = None
) -> tuple[Order, list[OrderLine], str]:
    """The order and its lines, with the order row and the stock rows of ``skus`` (all
    the order's SKUs when None) locked; also the default location's id."""
    order = await repository.get_for_update(session, order_id)
    if order is None or (viewer.is_customer and order.customer_id != viewer.customer_id):
        raise NotFound(f"Order {order_id} does not exist.")
    lines = (await repository.lines_of(session, [order.id]))[order.id]
    location_id = await repository.default_location_id(session)
    to_lock = sorted(
        (line for line in lines if skus is None or line.sku in skus), key=lambda line: line.sku
    )
    if to_lock:
        await repository.lock_stock_rows(
            session, product_ids=[line.product_id for line in to_lock], location_id=location_id
        )
        lines = (await repository.lines_of(session, [order.id]))[order.id]
    return order, lines, location_id


async def ship_order(
    session: AsyncSession, *, actor: Principal, order_id: str, data: ShipmentCreate
) -> ShipmentRead:
    requested = rules.merge_lines(
        ((line.sku, line.quantity) for line in data.lines), max_quantity=_NO_PER_LINE_LIMIT
    )
    order, lines, location_id = await _locked_order(
        session, actor, order_id, skus={line.sku for line in requested}
    )
    status = OrderStatus(order.status)
    # Any shipment event tells whether shipping is allowed from this status at all.
    next_status(status, OrderEvent.SHIPPED_PARTIALLY)
    by_sku = {line.sku: line for line in lines}
    unknown = [line for line in requested if line.sku not in by_sku]
    if unknown:
        raise InvalidRequest(
            f"Order {order_id} has no line for " + ", ".join(line.sku for line in unknown) + ".",
            errors=[
                {"location": f"body.lines.{line.position}.sku", "message": "not in this order"}
                for line in unknown
            ],
        )
    excess = [
        {
            "sku": line.sku,
            "requested": line.quantity,
            "shippable": by_sku[line.sku].allocated - by_sku[line.sku].shipped,
        }
        for line in requested
        if line.quantity > by_sku[line.sku].allocated - by_sku[line.sku].shipped
    ]
    if excess:
        raise ShipmentExceedsReserved(
            "A shipment can only take units reserved for the order and not yet shipped.",
            items=sorted(excess, key=lambda item: item["sku"]),
        )

    now = datetime.now(UTC)
    # Taken before the lines change below, so the audit record shows the order as it was.
    before = to_read(order, lines, await promises_for(session, lines))
    shipment_id = new_id("shp")
    movements = []
    for line in sorted(requested, key=lambda item: item.sku):
        order_line = by_sku[line.sku]
        change = await repository.take_shipped(
            session,
            product_id=order_line.product_id,
            location_id=location_id,
            quantity=line.quantity,
            now=now,
        )
        order_line.shipped += line.quantity
        movements.append(
            repository.movement_row(
                change,
                on_hand_delta=-line.quantity,
                reserved_delta=-line.quantity,
                reason="shipment",
                actor_id=actor.id,
                order_id=order.id,
                now=now,
            )
        )
    remaining = sum(line.quantity - line.shipped for line in lines)
    order.status = next_status(status, shipment_event(units_remaining_after=remaining)).value
    order.updated_at = now
    await repository.add_movements(session, movements)
    await repository.add_shipment(
        session,
        shipment={
            "id": shipment_id,
            "order_id": order.id,
            "created_by": actor.id,
            "created_at": now,
        },
        lines=[
            {
                "shipment_id": shipment_id,
                "product_id": by_sku[line.sku].product_id,
                "sku": line.sku,
                "quantity": line.quantity,
            }
            for line in requested
        ],
    )
    await repository.flush(session)
    after = to_read(order, lines, await promises_for(session, lines))
    await audit.record(
        session,
        actor=actor,
        action="order.shipped",
        resource_type="order",
        resource_id=order.id,
        before=before.model_dump(mode="json"),
        after={**after.model_dump(mode="json"), "shipment_id": shipment_id},
    )
    shipped = [ShipmentLineRead(sku=line.sku, quantity=line.quantity) for line in requested]
    await outbox.record(
        session,
        EventType.ORDER_SHIPPED,
        object_type="order",
        object_id=order.id,
        obj=after,
        now=now,
        shipment={"id": shipment_id, "lines": shipped, "created_at": now},
    )
    return ShipmentRead(
        id=shipment_id, order_id=order.id, lines=shipped, created_at=now, order=after
    )


async def cancel_order(
    session: AsyncSession, *, actor: Principal, order_id: str, reason: str
) -> OrderRead:
    """Cancel and release what is reserved and not shipped; what was shipped stays shipped.

    Released units go first to other orders waiting for that SKU, oldest first; the
    order's own backordered units leave the product's backlog.
    """
    order, lines, location_id = await _locked_order(session, actor, order_id)
    status = OrderStatus(order.status)
    new_status = next_status(status, OrderEvent.CANCELLED)
    shipped_units = sum(line.shipped for line in lines)
    if not can_cancel(status, shipped_units=shipped_units, by_customer=actor.is_customer):
        raise InvalidStateTransition(from_status=status, event=OrderEvent.CANCELLED)

    now = datetime.now(UTC)
    before = to_read(order, lines, await promises_for(session, lines))
    released = {line.product_id: line.allocated - line.shipped for line in lines}
    backordered = {line.product_id: line.backordered for line in lines}
    for line in lines:
        line.allocated = line.shipped
        line.backordered = 0
    order.status = new_status.value
    order.cancel_reason = reason
    order.cancelled_at = now
    order.updated_at = now
    # Written before serving, so this order is no longer in the queue it releases into.
    await repository.flush(session)
    movements = []
    after_release: dict[str, StockChange] = {}
    for line in sorted(lines, key=lambda item: item.sku):
        held = released[line.product_id]
        if held <= 0:
            continue
        change = await repository.release(
            session, product_id=line.product_id, location_id=location_id, quantity=held, now=now
        )
        after_release[line.product_id] = change
        movements.append(
            repository.movement_row(
                change,
                on_hand_delta=0,
                reserved_delta=-held,
                reason="order_cancelled",
                note=reason,
                actor_id=actor.id,
                order_id=order.id,
                now=now,
            )
        )
    await repository.add_movements(session, movements)
    # Product rows after every stock row, in SKU order, as placement takes them.
    for line in sorted(lines, key=lambda item: item.sku):
        if backordered[line.product_id] > 0:
            await po_repository.add_backlog(
                session, product_id=line.product_id, units=-backordered[line.product_id]
            )
        if line.product_id in after_release:
            # The row is still locked, so it is as the release left it.
            await backlog.serve(
                session, stock=after_release[line.product_id], actor_id=actor.id, now=now
            )
    owed = refundable(amount_paid=order.amount_paid, amount_refunded=order.amount_refunded)
    if owed > 0:
        # What was paid for and will not ship goes back: everything when nothing shipped
        # (shipping and tax included), else the unshipped units at their price.
        value = (
            owed
            if shipped_units == 0
            else min(
                owed,
                unshipped_value(
                    [(line.quantity, line.shipped, line.unit_price) for line in lines],
                    subtotal=order.subtotal,
                    total=order.total,
                    shipping_amount=order.shipping_amount,
                ),
            )
        )
        if value > 0:
            await payment_refunds.add_refund(
                session,
                order,
                amount=value,
                reason=f"order cancelled: {reason}",
                actor_id=actor.id,
                key=None,
                now=now,
            )
    after = to_read(order, lines)
    await outbox.record(
        session,
        EventType.ORDER_CANCELLED,
        object_type="order",
        object_id=order.id,
        obj=after,
        now=now,
    )
    if actor.is_staff:
        await audit.record(
            session,
            actor=actor,
            action="order.cancelled",
            resource_type="order",
            resource_id=order.id,
            before=before.model_dump(mode="json"),
            after=after.model_dump(mode="json"),
        )
    return after
