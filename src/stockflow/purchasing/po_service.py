"""Purchase orders: reading them, placing them by hand, submitting and acknowledging them
(receipts and cancellation are in `po_receiving`).

Every state change is a guarded UPDATE (``... WHERE status IN (...)``), so two requests or
two server processes can never both submit, receive into or cancel one PO from the same
state. Locks follow the order shared with placement: stock rows, then product rows (both
by SKU), then the PO row.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.audit import service as audit
from stockflow.auth.roles import Principal
from stockflow.db.models import PurchaseOrder, PurchaseOrderLine
from stockflow.db.pagination import Page
from stockflow.errors import InvalidRequest, NotFound, UnknownSku
from stockflow.events import outbox
from stockflow.events.types import EventType
from stockflow.ids import new_id
from stockflow.inventory.queue import expected_arrival
from stockflow.observability.logging import get_logger
from stockflow.orders import repository as orders
from stockflow.orders import rules
from stockflow.purchasing import po_repository
from stockflow.purchasing import repository as suppliers
from stockflow.purchasing.po_schemas import (
    MAX_PO_QUANTITY,
    PurchaseOrderCreate,
    PurchaseOrderLineRead,
    PurchaseOrderRead,
)
from stockflow.purchasing.states import (
    PurchaseOrderAction,
    PurchaseOrderStatus,
    allowed_from,
    require,
)

log = get_logger(__name__)


def _line_read(po: PurchaseOrder, line: PurchaseOrderLine, now: datetime) -> PurchaseOrderLineRead:
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
            now=now,
            lead_time_days=line.lead_time_days,
        ),
    )


def to_read(po: PurchaseOrder, lines: list[PurchaseOrderLine]) -> PurchaseOrderRead:
    now = datetime.now(UTC)
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
        lines=[_line_read(po, line, now) for line in lines],
    )


async def found(session: AsyncSession, po_id: str) -> PurchaseOrder:
    po = await po_repository.get(session, po_id)
    if po is None:
        raise NotFound(f"Purchase order {po_id} does not exist.")
    return po


async def read(session: AsyncSession, po_id: str) -> PurchaseOrderRead:
    po = await found(session, po_id)
    return to_read(po, (await po_repository.lines_of(session, [po.id]))[po.id])


async def get_purchase_order(session: AsyncSession, *, po_id: str) -> PurchaseOrderRead:
    return await read(session, po_id)


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
    catalog = await orders.catalog_entries(session, [line.sku for line in requested])
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
    created = await tell(session, EventType.PURCHASE_ORDER_CREATED, po_id, now=now)
    await record(session, actor, "purchase_order.created", None, created)
    return created


async def tell(
    session: AsyncSession, event_type: EventType, po_id: str, *, now: datetime, **extra: Any
) -> PurchaseOrderRead:
    """Write a purchase order's event, with the PO as it is now; callers have just changed
    its row (so hold its lock). Returns the PO as the event shows it."""
    shown = await read(session, po_id)
    await outbox.record(
        session,
        event_type,
        object_type="purchase_order",
        object_id=po_id,
        obj=shown,
        now=now,
        **extra,
    )
    return shown


async def record(
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


async def transition(
    session: AsyncSession,
    *,
    po_id: str,
    action: PurchaseOrderAction,
    values: dict[str, object],
) -> PurchaseOrderRead:
    """Check, then make, a guarded status change; returns the PO as it was before."""
    before = await read(session, po_id)
    require(before.status, action)
    changed = await po_repository.change_status(
        session,
        po_id=po_id,
        from_statuses=[status.value for status in allowed_from(action)],
        values=values,
    )
    if not changed:
        # Another request moved it between the read and the guarded update.
        require(PurchaseOrderStatus((await found(session, po_id)).status), action)
    return before


async def submit(session: AsyncSession, *, actor: Principal, po_id: str) -> PurchaseOrderRead:
    now = datetime.now(UTC)
    before = await transition(
        session,
        po_id=po_id,
        action=PurchaseOrderAction.SUBMIT,
        values={"status": "submitted", "submitted_at": now, "updated_at": now},
    )
    submitted = await tell(session, EventType.PURCHASE_ORDER_SUBMITTED, po_id, now=now)
    await record(session, actor, "purchase_order.submitted", before, submitted)
    return submitted


async def acknowledge(
    session: AsyncSession, *, actor: Principal, po_id: str, expected_delivery_date: date
) -> PurchaseOrderRead:
    before = await read(session, po_id)
    require(before.status, PurchaseOrderAction.ACKNOWLEDGE)
    now = datetime.now(UTC)
    # The status is decided in the statement itself: a receipt committed between the read
    # above and this update must stay partially received, not move back to acknowledged.
    if not await po_repository.acknowledge(
        session,
        po_id=po_id,
        expected_delivery_date=expected_delivery_date,
        from_statuses=[status.value for status in allowed_from(PurchaseOrderAction.ACKNOWLEDGE)],
        now=now,
    ):
        require(
            PurchaseOrderStatus((await found(session, po_id)).status),
            PurchaseOrderAction.ACKNOWLEDGE,
        )
    after_ = await tell(session, EventType.PURCHASE_ORDER_ACKNOWLEDGED, po_id, now=now)
    await record(session, actor, "purchase_order.acknowledged", before, after_)
    return after_


async def submit_due(session: AsyncSession, *, now: datetime) -> list[str]:
    """Submit the replenishment drafts whose consolidation window has closed."""
    submitted = await po_repository.submit_due_drafts(session, now=now)
    for po_id in submitted:
        await tell(session, EventType.PURCHASE_ORDER_SUBMITTED, po_id, now=now)
        log.info("purchase_order_submitted", purchase_order_id=po_id, by="consolidation")
    return submitted
