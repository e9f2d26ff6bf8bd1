"""Previewing an order: what placing it now would do, from plain reads.

It runs the rules of `placement` (the same checks, the same split into reserved and
backordered, the same replenishment plan) without locking or writing a row, so it shows the
plan that placing the order would produce if nothing else happened in between.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.auth.roles import Principal
from stockflow.inventory import backlog
from stockflow.inventory.policy import ShortagePolicy, split_request
from stockflow.orders import repository
from stockflow.orders.placement import (
    LineOutcome,
    check_order,
    needs_rules,
    no_supplier,
    plan_product,
    refuse_short,
)
from stockflow.orders.schemas import OrderCreate, OrderPreview, PlannedPurchaseLine, PreviewLine
from stockflow.orders.service import OrderLimits
from stockflow.orders.states import fulfilment_flag
from stockflow.purchasing import po_repository
from stockflow.purchasing.po_repository import Counters, SupplierTerms
from stockflow.purchasing.replenishment import PlannedLine


def _planned_arrival(
    supplier: SupplierTerms,
    *,
    now: datetime,
    consolidation_seconds: int,
    open_drafts: Mapping[str, datetime],
) -> date:
    """When a PO line ordered now is expected: submitted now; or, with a consolidation
    window, when the draft it would join is submitted (the supplier's open draft, else a
    new one whose window starts now)."""
    if consolidation_seconds <= 0:
        submitted = now
    else:
        submitted = open_drafts.get(
            supplier.supplier_id, now + timedelta(seconds=consolidation_seconds)
        )
    return (submitted + timedelta(days=supplier.lead_time_days)).date()


async def preview_order(
    session: AsyncSession, *, actor: Principal, data: OrderCreate, limits: OrderLimits
) -> OrderPreview:
    """What `place_order` would do now, from plain reads: no row is written or locked."""
    checked = await check_order(session, actor, data, limits)
    now = datetime.now(UTC)
    by_sku = checked.by_sku
    product_ids = [line.product_id for line in by_sku]
    available = await repository.available(session, product_ids)
    short_rejects = [
        line
        for line in by_sku
        if checked.policy(line) is ShortagePolicy.REJECT
        and available.get(line.product_id, 0) < line.quantity
    ]
    if short_rejects:
        await refuse_short(session, short_rejects)
    counters = await po_repository.counters(session, product_ids)
    outcomes: list[LineOutcome] = []
    for line in by_sku:
        free = available.get(line.product_id, 0)
        take, short = split_request(requested=line.quantity, available=free)
        outcomes.append(LineOutcome(line, take, short, free - take))
    needing = [outcome for outcome in outcomes if needs_rules(checked, outcome)]
    terms = await po_repository.preferred_terms(
        session, [outcome.line.product_id for outcome in needing]
    )
    planned: list[PlannedLine] = []
    for outcome in needing:
        product_id = outcome.line.product_id
        supplier = terms.get(product_id)
        if supplier is None:
            if outcome.backordered > 0:
                raise no_supplier(outcome.line.sku)
            continue
        before = counters[product_id]
        after = Counters(before.backordered + outcome.backordered, before.on_order)
        cause = {"order_id": None, "order_line_id": None, "backordered": outcome.backordered}
        planned.extend(plan_product(checked, outcome, after, supplier, cause))

    waiting = {
        outcome.line.product_id: [(outcome.line.product_id, outcome.backordered)]
        for outcome in outcomes
        if outcome.backordered > 0
    }
    incoming: dict[str, list[tuple[date, int]]] = {}
    open_drafts = (
        await po_repository.replenishment_draft_submissions(
            session, sorted({line.terms.supplier_id for line in planned})
        )
        if planned and limits.po_consolidation_seconds > 0
        else {}
    )
    for planned_line in planned:
        incoming.setdefault(planned_line.product_id, []).append(
            (
                _planned_arrival(
                    planned_line.terms,
                    now=now,
                    consolidation_seconds=limits.po_consolidation_seconds,
                    open_drafts=open_drafts,
                ),
                planned_line.explanation.quantity,
            )
        )
    promised = await _preview_promises(session, waiting, incoming)
    shows_purchases = actor.is_staff
    by_product = {outcome.line.product_id: outcome for outcome in outcomes}
    return OrderPreview(
        customer_id=checked.customer_id,
        fulfilment=fulfilment_flag(
            backordered_units=sum(outcome.backordered for outcome in outcomes)
        ),
        currency=checked.priced.currency,
        subtotal=checked.priced.subtotal,
        shipping_amount=checked.priced.shipping_amount,
        tax_amount=checked.priced.tax_amount,
        discount_amount=checked.priced.discount_amount,
        total=checked.priced.total,
        lines=[
            PreviewLine(
                sku=line.sku,
                quantity=line.quantity,
                unit_price=line.unit_price,
                line_total=line.line_total,
                allocated=by_product[line.product_id].allocated,
                backordered=by_product[line.product_id].backordered,
                expected_available_date=promised.get(line.product_id),
            )
            for line in checked.priced.lines
        ],
        purchase_order_lines=(
            [
                PlannedPurchaseLine(
                    supplier_id=line.terms.supplier_id,
                    sku=line.sku,
                    supplier_sku=line.terms.supplier_sku,
                    quantity=line.explanation.quantity,
                    cost_price=line.terms.cost_price,
                    currency=line.terms.currency,
                    reason=line.explanation.kind,
                    explanation=line.explanation.as_dict(),
                )
                for line in planned
            ]
            if shows_purchases
            else None
        ),
    )


async def _preview_promises(
    session: AsyncSession,
    waiting: Mapping[str, Sequence[tuple[str, int]]],
    incoming: Mapping[str, Sequence[tuple[date, int]]],
) -> dict[str, date | None]:
    """Promise dates of the preview's backordered lines, keyed by product id (a preview
    line has no id; one line per product)."""
    if not waiting:
        return {}
    dates = await backlog.promises(
        session, list(waiting), extra_waiting=waiting, extra_incoming=incoming
    )
    return {product_id: dates.get(product_id) for product_id in waiting}
