"""Turning the replenishment rule's quantities into purchase-order lines, inside the
transaction of whatever caused them (an order, a cancelled PO).

With no consolidation window each cause gets its own PO per supplier, submitted at once.
With a window, a supplier's shortages collect on its one open replenishment draft, which
the housekeeping job submits when the window since the draft's creation has passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.events.types import EventType
from stockflow.ids import new_id
from stockflow.inventory.policy import (
    Explanation,
    ReplenishmentSettings,
    ShortagePolicy,
    backorder_quantity,
)
from stockflow.orders import repository as orders
from stockflow.purchasing import po_repository, po_service
from stockflow.purchasing.po_repository import SupplierTerms


@dataclass(frozen=True, slots=True)
class PlannedLine:
    """One quantity a rule decided to order, with what a PO line records about it."""

    product_id: str
    sku: str
    terms: SupplierTerms
    explanation: Explanation
    caused_by: list[dict[str, Any]] = field(default_factory=list)
    """The order lines (or the cancelled PO) that made the rule fire."""

    def explanation_json(self) -> dict[str, Any]:
        return {**self.explanation.as_dict(), "caused_by": self.caused_by}


async def place(
    session: AsyncSession,
    planned: Sequence[PlannedLine],
    *,
    consolidation_seconds: int,
    actor_id: str,
    now: datetime,
) -> dict[str, str]:
    """Write the planned lines onto POs, one PO per supplier; returns supplier id → PO id.

    The caller has already added the quantities to the products' ``on_order`` (product
    rows are locked before PO rows). Suppliers are taken in id order, so two transactions
    that both append to several drafts lock them in the same order.
    """
    by_supplier: dict[str, list[PlannedLine]] = {}
    for line in planned:
        by_supplier.setdefault(line.terms.supplier_id, []).append(line)
    placed: dict[str, str] = {}
    for supplier_id in sorted(by_supplier):
        if consolidation_seconds > 0:
            po_id, opened = await po_repository.replenishment_draft(
                session,
                supplier_id=supplier_id,
                submit_after=now + timedelta(seconds=consolidation_seconds),
                actor_id=actor_id,
                now=now,
            )
        else:
            po_id, opened = new_id("po"), True
            await po_repository.insert_purchase_order(
                session,
                {
                    "id": po_id,
                    "supplier_id": supplier_id,
                    "status": "submitted",
                    "origin": "replenishment",
                    "created_by": actor_id,
                    "submitted_at": now,
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
                    "product_id": line.product_id,
                    "sku": line.sku,
                    "supplier_sku": line.terms.supplier_sku,
                    "cost_price": line.terms.cost_price,
                    "currency": line.terms.currency,
                    "quantity": line.explanation.quantity,
                    "received": 0,
                    "lead_time_days": line.terms.lead_time_days,
                    "reason": line.explanation.kind,
                    "explanation": line.explanation_json(),
                    "created_at": now,
                }
                for line in by_supplier[supplier_id]
            ],
        )
        placed[supplier_id] = po_id
        if opened:
            await po_service.tell(session, EventType.PURCHASE_ORDER_CREATED, po_id, now=now)
        if consolidation_seconds == 0:
            await po_service.tell(session, EventType.PURCHASE_ORDER_SUBMITTED, po_id, now=now)
    return placed


async def cover_backlog(
    session: AsyncSession,
    *,
    product_ids: Sequence[str],
    cause: dict[str, Any],
    consolidation_seconds: int,
    actor_id: str,
    now: datetime,
) -> list[PlannedLine]:
    """Run the backorder rule again for products whose ``on_order`` just dropped without
    their backlog dropping as much (a cancelled PO), and order what it asks for.

    The products' rows must already be locked by the caller, in SKU order.
    """
    rules = await po_repository.product_rules(session, product_ids)
    terms = await po_repository.preferred_terms(session, product_ids)
    queues = await orders.waiting_lines(session, product_ids)
    planned: list[PlannedLine] = []
    for product_id in product_ids:
        sku, product = rules[product_id]
        supplier = terms.get(product_id)
        if product.shortage_policy is not ShortagePolicy.BACKORDER or supplier is None:
            continue
        counters = await po_repository.add_backlog(session, product_id=product_id, units=0)
        explanation = backorder_quantity(
            backlog=counters.backordered,
            on_order=counters.on_order,
            settings=ReplenishmentSettings(
                product.buffer_pct, supplier.pack_size, supplier.min_order_qty
            ),
        )
        if explanation.quantity <= 0:
            continue
        await po_repository.add_on_order(session, product_id=product_id, units=explanation.quantity)
        waiting = [
            {
                "order_id": line.order_id,
                "order_line_id": line.line_id,
                "backordered": line.backordered,
            }
            for line in queues[product_id]
        ]
        planned.append(
            PlannedLine(product_id, sku, supplier, explanation, [{**cause, "waiting": waiting}])
        )
    await place(
        session,
        planned,
        consolidation_seconds=consolidation_seconds,
        actor_id=actor_id,
        now=now,
    )
    return planned
