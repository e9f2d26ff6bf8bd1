"""Receiving goods on a purchase order, and cancelling one: the two PO actions that move
stock figures.

Both follow the lock order shared with order placement: stock rows, then product rows
(both by SKU), then the PO row last. The PO's new status is decided only once its row is
locked, from its lines read after that lock, so two receipts on different lines of one PO
cannot both leave it "partially received".
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.auth.roles import Principal
from stockflow.db.models import PurchaseOrderLine
from stockflow.errors import InvalidRequest, ServiceUnavailable
from stockflow.events.types import EventType
from stockflow.inventory import backlog
from stockflow.inventory import repository as inventory
from stockflow.observability import metrics
from stockflow.observability.logging import get_logger
from stockflow.orders import repository as orders
from stockflow.orders import rules
from stockflow.purchasing import po_repository, po_service, replenishment
from stockflow.purchasing.po_schemas import (
    MAX_PO_QUANTITY,
    AllocationRead,
    PurchaseOrderRead,
    ReceiptCreate,
    ReceiptRead,
    ReceivedLineRead,
)
from stockflow.purchasing.states import (
    PurchaseOrderAction,
    PurchaseOrderStatus,
    after,
    require,
)

log = get_logger(__name__)

_CANCEL_ATTEMPTS = 3


def _still_to_come(lines: list[PurchaseOrderLine]) -> int:
    return sum(max(line.quantity - line.received, 0) for line in lines)


async def cancel(
    session: AsyncSession,
    *,
    actor: Principal,
    po_id: str,
    reason: str,
    consolidation_seconds: int,
) -> PurchaseOrderRead:
    """Cancel a PO: its unreceived units leave ``on_order``, and the backorder rule runs
    again for the backlog that leaves uncovered (ordering from the preferred supplier).

    The product rows must be locked before the PO row, but which products a replenishment
    draft holds is only certain once its row is locked (an order may add a line until
    then). So the attempt runs in a savepoint: if the draft gained a product meanwhile,
    it is rolled back, releasing the PO row to that order, and tried again with that
    product's row locked first.
    """
    before = await po_service.read(session, po_id)
    require(before.status, PurchaseOrderAction.CANCEL)
    now = datetime.now(UTC)
    for _attempt in range(_CANCEL_ATTEMPTS):
        products = await po_repository.products_of(session, po_id)
        product_ids = [product_id for _sku, product_id in products]
        savepoint = await session.begin_nested()
        await po_repository.lock_products(session, product_ids)
        await po_service.transition(
            session,
            po_id=po_id,
            action=PurchaseOrderAction.CANCEL,
            values={
                "status": "cancelled",
                "cancelled_at": now,
                "cancel_reason": reason,
                "updated_at": now,
            },
        )
        lines = (await po_repository.lines_of(session, [po_id]))[po_id]
        if {line.product_id for line in lines} <= set(product_ids):
            await savepoint.commit()
            break
        await savepoint.rollback()
    else:
        log.warning("purchase_order_cancel_contended", purchase_order_id=po_id)
        raise ServiceUnavailable(
            f"Purchase order {po_id} kept changing while it was being cancelled; nothing was "
            "changed. Retry.",
            retry_after_seconds=1,
        )
    uncovered: list[str] = []
    for product_id in product_ids:
        remaining = _still_to_come([line for line in lines if line.product_id == product_id])
        if remaining > 0:
            await po_repository.add_on_order(session, product_id=product_id, units=-remaining)
            uncovered.append(product_id)
    await replenishment.cover_backlog(
        session,
        product_ids=uncovered,
        cause={"purchase_order_cancelled": po_id},
        consolidation_seconds=consolidation_seconds,
        actor_id=actor.id,
        now=now,
    )
    read = await po_service.tell(session, EventType.PURCHASE_ORDER_CANCELLED, po_id, now=now)
    await po_service.record(session, actor, "purchase_order.cancelled", before, read)
    return read


async def receive(
    session: AsyncSession, *, actor: Principal, po_id: str, data: ReceiptCreate
) -> ReceiptRead:
    """Take goods into stock at the default location, serve waiting orders from them
    (oldest first), and move the PO to partially received or received."""
    before = await po_service.read(session, po_id)
    require(before.status, PurchaseOrderAction.RECEIVE)
    requested = rules.merge_lines(
        ((line.sku, line.quantity) for line in data.lines), max_quantity=MAX_PO_QUANTITY
    )
    product_of = dict(await po_repository.products_of(session, po_id))
    unknown = [line for line in requested if line.sku not in product_of]
    if unknown:
        raise InvalidRequest(
            f"Purchase order {po_id} has no line for "
            + ", ".join(line.sku for line in unknown)
            + ".",
            errors=[
                {"location": f"body.lines.{line.position}.sku", "message": "not on this PO"}
                for line in unknown
            ],
        )
    now = datetime.now(UTC)
    location = await inventory.default_location(session)
    by_sku = sorted(requested, key=lambda line: line.sku)

    # Stock rows first, in SKU order.
    movements = []
    after_receipt: dict[str, orders.StockChange] = {}
    for line in by_sku:
        stock = await inventory.add_on_hand(
            session,
            product_id=product_of[line.sku],
            location_id=location.id,
            delta=line.quantity,
            now=now,
        )
        if stock is None:
            raise InvalidRequest(
                f"Receiving {line.quantity} of {line.sku} would exceed what a stock row holds.",
                errors=[
                    {"location": f"body.lines.{line.position}.quantity", "message": "too large"}
                ],
            )
        after_receipt[line.sku] = orders.StockChange(
            product_of[line.sku], location.id, stock[0], stock[1]
        )
        movements.append(
            orders.movement_row(
                after_receipt[line.sku],
                on_hand_delta=line.quantity,
                reserved_delta=0,
                reason="po_receipt",
                note=data.note,
                actor_id=actor.id,
                order_id=None,
                purchase_order_id=po_id,
                now=now,
            )
        )
    await orders.add_movements(session, movements)

    # Then product rows, in the same order. A SKU's PO lines only change under its stock
    # row lock (held since above), so the lines read now are current for these SKUs.
    received: list[ReceivedLineRead] = []
    allocations: list[AllocationRead] = []
    lines = (await po_repository.lines_of(session, [po_id]))[po_id]
    for line in by_sku:
        product_id = product_of[line.sku]
        sku_lines = [po_line for po_line in lines if po_line.product_id == product_id]
        to_come = _still_to_come(sku_lines)
        covered = min(line.quantity, to_come)
        if covered > 0:
            await po_repository.add_on_order(session, product_id=product_id, units=-covered)
        left = line.quantity
        for po_line in sku_lines:
            units = min(max(po_line.quantity - po_line.received, 0), left)
            if units > 0:
                await po_repository.receive_on_line(session, line_id=po_line.id, units=units)
                left -= units
        if left > 0:
            # An over-delivery is kept (it is on the shelf) and booked on the last line.
            await po_repository.receive_on_line(session, line_id=sku_lines[-1].id, units=left)
            log.warning(
                "purchase_order_over_received",
                purchase_order_id=po_id,
                sku=line.sku,
                ordered_still_to_come=to_come,
                received=line.quantity,
            )
        received.append(ReceivedLineRead(sku=line.sku, quantity=line.quantity, over_received=left))
        # The stock row is still locked, so it is as the receipt left it.
        for allocation in await backlog.serve(
            session,
            stock=after_receipt[line.sku],
            actor_id=actor.id,
            now=now,
            purchase_order_id=po_id,
        ):
            allocations.append(
                AllocationRead(order_id=allocation.order_id, sku=line.sku, units=allocation.units)
            )

    # The PO row last: locked, then its lines read afresh, then its new status.
    status = await po_repository.lock(session, po_id)
    if status is None:
        raise RuntimeError(f"purchase order {po_id} vanished during a receipt")
    # Cancelled or closed by another request while this one waited for its locks.
    require(PurchaseOrderStatus(status), PurchaseOrderAction.RECEIVE)
    lines = (await po_repository.lines_of(session, [po_id]))[po_id]
    fully = all(po_line.received >= po_line.quantity for po_line in lines)
    new_status = after(
        PurchaseOrderStatus(status), PurchaseOrderAction.RECEIVE, fully_received=fully
    )
    await po_repository.change_status(
        session,
        po_id=po_id,
        from_statuses=[status],
        values={
            "status": new_status.value,
            "received_at": now if fully else None,
            "updated_at": now,
        },
    )
    read = await po_service.tell(
        session,
        EventType.PURCHASE_ORDER_RECEIVED,
        po_id,
        now=now,
        receipt={"lines": received, "note": data.note, "received_at": now},
    )
    await po_service.record(session, actor, "purchase_order.received", before, read)
    metrics.count_on_commit(session, metrics.RECEIPTS)
    metrics.count_on_commit(
        session, metrics.UNITS_RECEIVED, sum(line.quantity for line in received)
    )
    return ReceiptRead(purchase_order=read, received=received, allocations=allocations)
