"""Purchase orders: reading them, placing them by hand, and moving them along their states.

Every state change is a guarded UPDATE (``... WHERE status IN (...)``), so two requests or
two server processes can never both submit, receive into or cancel one PO from the same
state. Locks follow the order shared with placement: stock rows, then product rows (both
by SKU), then the PO row.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.audit import service as audit
from stockflow.auth.roles import Principal
from stockflow.db.models import PurchaseOrder, PurchaseOrderLine
from stockflow.db.pagination import Page
from stockflow.errors import InvalidRequest, NotFound, UnknownSku
from stockflow.ids import new_id
from stockflow.inventory import backlog
from stockflow.inventory import repository as inventory
from stockflow.inventory.queue import expected_arrival
from stockflow.observability.logging import get_logger
from stockflow.orders import repository as orders
from stockflow.orders import rules
from stockflow.purchasing import po_repository, replenishment
from stockflow.purchasing import repository as suppliers
from stockflow.purchasing.po_schemas import (
    MAX_PO_QUANTITY,
    AllocationRead,
    PurchaseOrderCreate,
    PurchaseOrderLineRead,
    PurchaseOrderRead,
    ReceiptCreate,
    ReceiptRead,
    ReceivedLineRead,
)
from stockflow.purchasing.states import (
    PurchaseOrderAction,
    PurchaseOrderStatus,
    after,
    allowed_from,
    require,
)

log = get_logger(__name__)


def _line_read(po: PurchaseOrder, line: PurchaseOrderLine) -> PurchaseOrderLineRead:
    return PurchaseOrderLineRead(
        id=line.id,
        sku=line.sku,
        supplier_sku=line.supplier_sku,
        quantity=line.quantity,
        received=line.received,
        cost_price=line.cost_price,
        currency=line.currency,
        lead_time_days=line.lead_time_days,
        reason=line.reason,
        explanation=line.explanation,
        expected_arrival=expected_arrival(
            acknowledged_date=po.expected_delivery_date,
            submitted_at=po.submitted_at,
            planned_submission=po.submit_after,
            created_at=po.created_at,
            lead_time_days=line.lead_time_days,
        ),
    )


def to_read(po: PurchaseOrder, lines: list[PurchaseOrderLine]) -> PurchaseOrderRead:
    return PurchaseOrderRead(
        id=po.id,
        supplier_id=po.supplier_id,
        status=PurchaseOrderStatus(po.status),
        origin=po.origin,
        created_by=po.created_by,
        note=po.note,
        submit_after=po.submit_after,
        submitted_at=po.submitted_at,
        acknowledged_at=po.acknowledged_at,
        expected_delivery_date=po.expected_delivery_date,
        received_at=po.received_at,
        cancelled_at=po.cancelled_at,
        cancel_reason=po.cancel_reason,
        created_at=po.created_at,
        updated_at=po.updated_at,
        lines=[_line_read(po, line) for line in lines],
    )


async def _found(session: AsyncSession, po_id: str) -> PurchaseOrder:
    po = await po_repository.get(session, po_id)
    if po is None:
        raise NotFound(f"Purchase order {po_id} does not exist.")
    return po


async def _read(session: AsyncSession, po_id: str) -> PurchaseOrderRead:
    po = await _found(session, po_id)
    return to_read(po, (await po_repository.lines_of(session, [po.id]))[po.id])


async def get_purchase_order(session: AsyncSession, *, po_id: str) -> PurchaseOrderRead:
    return await _read(session, po_id)


async def list_purchase_orders(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    status: PurchaseOrderStatus | None,
    supplier_id: str | None,
) -> Page[PurchaseOrderRead]:
    page = await po_repository.list_page(
        session,
        limit=limit,
        cursor=cursor,
        status=status.value if status is not None else None,
        supplier_id=supplier_id,
    )
    lines = await po_repository.lines_of(session, [po.id for po in page.items])
    return Page([to_read(po, lines[po.id]) for po in page.items], page.next_cursor)


async def create_purchase_order(
    session: AsyncSession, *, actor: Principal, data: PurchaseOrderCreate
) -> PurchaseOrderRead:
    supplier = await suppliers.get_supplier(session, data.supplier_id)
    if supplier is None or not supplier.active:
        raise InvalidRequest(
            f"Supplier {data.supplier_id} does not exist or is inactive.",
            errors=[{"location": "body.supplier_id", "message": "unknown or inactive supplier"}],
        )
    requested = rules.merge_lines(
        ((line.sku, line.quantity) for line in data.lines), max_quantity=MAX_PO_QUANTITY
    )
    catalog, _rules = await orders.catalog_entries(session, [line.sku for line in requested])
    unknown = [line for line in requested if line.sku not in catalog]
    if unknown:
        raise UnknownSku(
            "Unknown SKU " + ", ".join(line.sku for line in unknown) + ".",
            skus=[line.sku for line in unknown],
        )
    product_ids = [catalog[line.sku].product_id for line in requested]
    terms = await po_repository.supplier_terms(
        session, supplier_id=supplier.id, product_ids=product_ids
    )
    not_sold = [line for line in requested if catalog[line.sku].product_id not in terms]
    if not_sold:
        raise InvalidRequest(
            f"Supplier {supplier.id} does not sell "
            + ", ".join(line.sku for line in not_sold)
            + "; link it under /v1/products/{sku}/suppliers first.",
            errors=[
                {"location": f"body.lines.{line.position}.sku", "message": "not sold by supplier"}
                for line in not_sold
            ],
        )
    now = datetime.now(UTC)
    po_id = new_id("po")
    for line in sorted(requested, key=lambda item: item.sku):
        await po_repository.add_on_order(
            session, product_id=catalog[line.sku].product_id, units=line.quantity
        )
    await po_repository.insert_purchase_order(
        session,
        {
            "id": po_id,
            "supplier_id": supplier.id,
            "status": "draft",
            "origin": "manual",
            "created_by": actor.id,
            "note": data.note,
            "created_at": now,
            "updated_at": now,
        },
    )
    await po_repository.insert_lines(
        session,
        [
            {
                "id": new_id("pol"),
                "purchase_order_id": po_id,
                "product_id": catalog[line.sku].product_id,
                "sku": line.sku,
                "supplier_sku": terms[catalog[line.sku].product_id].supplier_sku,
                "cost_price": terms[catalog[line.sku].product_id].cost_price,
                "currency": terms[catalog[line.sku].product_id].currency,
                "quantity": line.quantity,
                "received": 0,
                "lead_time_days": terms[catalog[line.sku].product_id].lead_time_days,
                "reason": "manual",
                "explanation": None,
                "created_at": now,
            }
            for line in requested
        ],
    )
    read = await _read(session, po_id)
    await _audit(session, actor, "purchase_order.created", None, read)
    return read


async def _audit(
    session: AsyncSession,
    actor: Principal,
    action: str,
    before: PurchaseOrderRead | None,
    after_: PurchaseOrderRead,
) -> None:
    await audit.record(
        session,
        actor=actor,
        action=action,
        resource_type="purchase_order",
        resource_id=after_.id,
        before=None if before is None else before.model_dump(mode="json"),
        after=after_.model_dump(mode="json"),
    )


async def _transition(
    session: AsyncSession,
    *,
    po_id: str,
    action: PurchaseOrderAction,
    values: dict[str, object],
) -> PurchaseOrderRead:
    """Check, then make, a guarded status change; returns the PO as it was before."""
    before = await _read(session, po_id)
    require(before.status, action)
    changed = await po_repository.change_status(
        session,
        po_id=po_id,
        from_statuses=[status.value for status in allowed_from(action)],
        values=values,
    )
    if not changed:
        # Another request moved it between the read and the guarded update.
        require(PurchaseOrderStatus((await _found(session, po_id)).status), action)
    return before


async def submit(session: AsyncSession, *, actor: Principal, po_id: str) -> PurchaseOrderRead:
    now = datetime.now(UTC)
    before = await _transition(
        session,
        po_id=po_id,
        action=PurchaseOrderAction.SUBMIT,
        values={"status": "submitted", "submitted_at": now, "updated_at": now},
    )
    read = await _read(session, po_id)
    await _audit(session, actor, "purchase_order.submitted", before, read)
    return read


async def acknowledge(
    session: AsyncSession, *, actor: Principal, po_id: str, expected_delivery_date: date
) -> PurchaseOrderRead:
    now = datetime.now(UTC)
    current = await _found(session, po_id)
    status = after(PurchaseOrderStatus(current.status), PurchaseOrderAction.ACKNOWLEDGE)
    before = await _transition(
        session,
        po_id=po_id,
        action=PurchaseOrderAction.ACKNOWLEDGE,
        values={
            "status": status.value,
            "expected_delivery_date": expected_delivery_date,
            "acknowledged_at": now,
            "updated_at": now,
        },
    )
    read = await _read(session, po_id)
    await _audit(session, actor, "purchase_order.acknowledged", before, read)
    return read


async def submit_due(session: AsyncSession, *, now: datetime) -> list[str]:
    """Submit the replenishment drafts whose consolidation window has closed."""
    submitted = await po_repository.submit_due_drafts(session, now=now)
    for po_id in submitted:
        log.info("purchase_order_submitted", purchase_order_id=po_id, by="consolidation")
    return submitted


async def cancel(
    session: AsyncSession,
    *,
    actor: Principal,
    po_id: str,
    reason: str,
    consolidation_seconds: int,
) -> PurchaseOrderRead:
    """Cancel a PO: its unreceived units leave ``on_order``, and the backorder rule runs
    again for the backlog that leaves uncovered (ordering from the preferred supplier)."""
    before = await _read(session, po_id)
    require(before.status, PurchaseOrderAction.CANCEL)
    lines = (await po_repository.lines_of(session, [po_id]))[po_id]
    product_ids = sorted({(line.sku, line.product_id) for line in lines})
    await po_repository.lock_products(session, [product_id for _sku, product_id in product_ids])
    now = datetime.now(UTC)
    await _transition(
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
    # Re-read under the locks: a receipt may have landed since the first read.
    lines = (await po_repository.lines_of(session, [po_id]))[po_id]
    uncovered: list[str] = []
    for _sku, product_id in product_ids:
        remaining = sum(
            max(line.quantity - line.received, 0) for line in lines if line.product_id == product_id
        )
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
    read = await _read(session, po_id)
    await _audit(session, actor, "purchase_order.cancelled", before, read)
    return read


async def receive(
    session: AsyncSession, *, actor: Principal, po_id: str, data: ReceiptCreate
) -> ReceiptRead:
    """Take goods into stock at the default location, serve waiting orders from them
    (oldest first), and move the PO to partially received or received."""
    before = await _read(session, po_id)
    require(before.status, PurchaseOrderAction.RECEIVE)
    requested = rules.merge_lines(
        ((line.sku, line.quantity) for line in data.lines), max_quantity=MAX_PO_QUANTITY
    )
    lines = (await po_repository.lines_of(session, [po_id]))[po_id]
    product_of = {line.sku: line.product_id for line in lines}
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
        movements.append(
            orders.movement_row(
                orders.StockChange(product_of[line.sku], location.id, stock[0], stock[1]),
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

    # Then product rows (on_order, and the backlog served), in the same order.
    received: list[ReceivedLineRead] = []
    allocations: list[AllocationRead] = []
    lines = (await po_repository.lines_of(session, [po_id]))[po_id]
    for line in by_sku:
        product_id = product_of[line.sku]
        left = line.quantity
        sku_lines = [po_line for po_line in lines if po_line.product_id == product_id]
        to_come = sum(max(po_line.quantity - po_line.received, 0) for po_line in sku_lines)
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
        covered = min(line.quantity, to_come)
        if covered > 0:
            await po_repository.add_on_order(session, product_id=product_id, units=-covered)
        received.append(ReceivedLineRead(sku=line.sku, quantity=line.quantity, over_received=left))
        locked = await orders.stock_for_update(session, product_id)
        for allocation in await backlog.serve(
            session, stock=locked, actor_id=actor.id, now=now, purchase_order_id=po_id
        ):
            allocations.append(
                AllocationRead(order_id=allocation.order_id, sku=line.sku, units=allocation.units)
            )

    # The PO row last; its new status from the lines as they now are.
    lines = (await po_repository.lines_of(session, [po_id]))[po_id]
    fully = all(po_line.received >= po_line.quantity for po_line in lines)
    status = after(before.status, PurchaseOrderAction.RECEIVE, fully_received=fully)
    await _transition(
        session,
        po_id=po_id,
        action=PurchaseOrderAction.RECEIVE,
        values={
            "status": status.value,
            "received_at": now if fully else None,
            "updated_at": now,
        },
    )
    read = await _read(session, po_id)
    await _audit(session, actor, "purchase_order.received", before, read)
    return ReceiptRead(purchase_order=read, received=received, allocations=allocations)
