"""Placing an order, and previewing what placing it would do.

Placement is the hot path. It reserves every line with one guarded statement per SKU, in
sorted SKU order; only a short line of a ``backorder`` product takes the slower road (lock
its stock row, reserve what is there, backorder the rest). Then, with the product rows
locked in the same SKU order, the replenishment rule decides what to order, and the PO
lines are written in the same transaction: the order and the purchase that covers it
commit together or not at all.

The preview runs the same rules on plain reads and writes nothing, so it shows the plan
that placing the order would produce if nothing else happened in between.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.audit import service as audit
from stockflow.auth.roles import Principal
from stockflow.errors import (
    BackorderNeedsSupplier,
    InsufficientStock,
    InvalidRequest,
    UnknownCustomer,
)
from stockflow.ids import new_id
from stockflow.inventory import backlog
from stockflow.inventory.policy import (
    ProductRules,
    ShortagePolicy,
    plan_replenishment,
    split_request,
)
from stockflow.orders import repository, rules
from stockflow.orders.repository import StockChange
from stockflow.orders.schemas import (
    OrderCreate,
    OrderLineRead,
    OrderPreview,
    OrderRead,
    PlannedPurchaseLine,
    PreviewLine,
)
from stockflow.orders.service import OrderLimits, customer_for
from stockflow.orders.states import fulfilment_flag, initial_status
from stockflow.purchasing import po_repository, replenishment
from stockflow.purchasing.po_repository import Counters, SupplierTerms
from stockflow.purchasing.replenishment import PlannedLine


@dataclass(frozen=True, slots=True)
class _Checked:
    customer_id: str
    priced: rules.PricedOrder
    product_rules: dict[str, ProductRules]

    @property
    def by_sku(self) -> list[rules.PricedLine]:
        # Sorted by SKU: every transaction that touches several stock rows (or product
        # rows) takes them in this order, so two can wait for each other but never deadlock.
        return sorted(self.priced.lines, key=lambda line: line.sku)

    def policy(self, line: rules.PricedLine) -> ShortagePolicy:
        return self.product_rules[line.product_id].shortage_policy


@dataclass(slots=True)
class _Outcome:
    line: rules.PricedLine
    stock: StockChange
    """The default-location stock row after this order's reservation."""
    allocated: int
    backordered: int


async def _check(
    session: AsyncSession, actor: Principal, data: OrderCreate, limits: OrderLimits
) -> _Checked:
    customer_id = customer_for(actor, data.customer_id)
    requested = rules.merge_lines(
        ((line.sku, line.quantity) for line in data.lines), max_quantity=limits.max_quantity
    )
    if len(requested) > limits.max_lines:
        raise InvalidRequest(
            f"An order has at most {limits.max_lines} lines (after merging lines of one SKU).",
            errors=[{"location": "body.lines", "message": f"at most {limits.max_lines} SKUs"}],
        )
    catalog, product_rules = await repository.catalog_entries(
        session, [line.sku for line in requested]
    )
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
    return _Checked(customer_id, priced, product_rules)


async def _refuse_short(session: AsyncSession, short: Sequence[rules.PricedLine]) -> NoReturn:
    """Report every short ``reject`` SKU, not just the first: the first is known short; the
    rest are judged on a plain read, since nothing is reserved for a refused order anyway."""
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


def _no_supplier(sku: str) -> BackorderNeedsSupplier:
    return BackorderNeedsSupplier(
        f"Product {sku} backorders shortages but has no active supplier to order them from.",
        sku=sku,
    )


def _plan_product(
    checked: _Checked,
    outcome: _Outcome,
    counters: Counters,
    supplier: SupplierTerms,
    cause: dict[str, Any],
) -> list[PlannedLine]:
    """The PO lines one product needs after this order, from the counters as the order
    leaves them (backlog) and found them (on_order)."""
    explanations = plan_replenishment(
        rules=checked.product_rules[outcome.line.product_id],
        backordered_now=outcome.backordered,
        backlog=counters.backordered,
        on_order=counters.on_order,
        available=outcome.stock.on_hand - outcome.stock.reserved,
        pack_size=supplier.pack_size,
        min_order_qty=supplier.min_order_qty,
    )
    return [
        PlannedLine(outcome.line.product_id, outcome.line.sku, supplier, explanation, [cause])
        for explanation in explanations
    ]


def _needs_rules(checked: _Checked, outcome: _Outcome) -> bool:
    return (
        outcome.backordered > 0
        or checked.product_rules[outcome.line.product_id].reorder_point is not None
    )


async def _reserve(session: AsyncSession, checked: _Checked, now: datetime) -> list[_Outcome]:
    by_sku = checked.by_sku
    outcomes: list[_Outcome] = []
    for index, line in enumerate(by_sku):
        change = await repository.reserve(
            session, product_id=line.product_id, quantity=line.quantity, now=now
        )
        if change is not None:
            outcomes.append(_Outcome(line, change, line.quantity, 0))
            continue
        if checked.policy(line) is ShortagePolicy.REJECT:
            # Any short reject line refuses the whole order; the rollback undoes what the
            # earlier lines reserved.
            await _refuse_short(
                session,
                [rest for rest in by_sku[index:] if checked.policy(rest) is ShortagePolicy.REJECT],
            )
        stock = await repository.stock_for_update(session, line.product_id)
        take, short = split_request(
            requested=line.quantity, available=stock.on_hand - stock.reserved
        )
        if take > 0:
            stock = await repository.reserve_units(
                session,
                product_id=line.product_id,
                location_id=stock.location_id,
                quantity=take,
                now=now,
            )
        outcomes.append(_Outcome(line, stock, take, short))
    return outcomes


async def place_order(
    session: AsyncSession, *, actor: Principal, data: OrderCreate, limits: OrderLimits
) -> OrderRead:
    checked = await _check(session, actor, data, limits)
    now = datetime.now(UTC)
    outcomes = await _reserve(session, checked, now)
    order_id = new_id("ord")
    line_ids = {line.product_id: new_id("oli") for line in checked.priced.lines}

    # Product rows after every stock row, in the same SKU order.
    needing = [outcome for outcome in outcomes if _needs_rules(checked, outcome)]
    terms = await po_repository.preferred_terms(
        session, [outcome.line.product_id for outcome in needing]
    )
    planned: list[PlannedLine] = []
    for outcome in needing:
        product_id = outcome.line.product_id
        counters = await po_repository.add_backlog(
            session, product_id=product_id, units=outcome.backordered
        )
        supplier = terms.get(product_id)
        if supplier is None:
            if outcome.backordered > 0:
                raise _no_supplier(outcome.line.sku)
            continue
        cause = {
            "order_id": order_id,
            "order_line_id": line_ids[product_id],
            "backordered": outcome.backordered,
        }
        product_planned = _plan_product(checked, outcome, counters, supplier, cause)
        ordered = sum(line.explanation.quantity for line in product_planned)
        if ordered:
            await po_repository.add_on_order(session, product_id=product_id, units=ordered)
        planned.extend(product_planned)
    await replenishment.place(
        session,
        planned,
        consolidation_seconds=limits.po_consolidation_seconds,
        actor_id=actor.id,
        now=now,
    )

    status = initial_status(payment_required=False)
    by_product = {outcome.line.product_id: outcome for outcome in outcomes}
    line_rows: list[dict[str, Any]] = [
        {
            "id": line_ids[line.product_id],
            "order_id": order_id,
            "product_id": line.product_id,
            "sku": line.sku,
            "position": position,
            "quantity": line.quantity,
            "unit_price": line.unit_price,
            "line_total": line.line_total,
            "allocated": by_product[line.product_id].allocated,
            "backordered": by_product[line.product_id].backordered,
            "shipped": 0,
        }
        for position, line in enumerate(checked.priced.lines)
    ]
    movement_rows = [
        repository.movement_row(
            outcome.stock,
            on_hand_delta=0,
            reserved_delta=outcome.allocated,
            reason="order_reserved",
            actor_id=actor.id,
            order_id=order_id,
            now=now,
        )
        for outcome in outcomes
        if outcome.allocated > 0
    ]
    await repository.insert_order(
        session,
        order={
            "id": order_id,
            "customer_id": checked.customer_id,
            "status": status.value,
            "currency": checked.priced.currency,
            "subtotal": checked.priced.subtotal,
            "shipping_amount": checked.priced.shipping_amount,
            "tax_amount": checked.priced.tax_amount,
            "discount_amount": checked.priced.discount_amount,
            "total": checked.priced.total,
            "metadata_": data.metadata,
            "placed_by": actor.id,
            "created_at": now,
            "updated_at": now,
        },
        lines=line_rows,
        movements=movement_rows,
    )
    waiting = [row["product_id"] for row in line_rows if row["backordered"] > 0]
    promised = await backlog.promises(session, waiting) if waiting else {}
    read = OrderRead(
        id=order_id,
        customer_id=checked.customer_id,
        status=status,
        fulfilment=fulfilment_flag(backordered_units=sum(r["backordered"] for r in line_rows)),
        currency=checked.priced.currency,
        subtotal=checked.priced.subtotal,
        shipping_amount=checked.priced.shipping_amount,
        tax_amount=checked.priced.tax_amount,
        discount_amount=checked.priced.discount_amount,
        total=checked.priced.total,
        lines=[
            OrderLineRead.model_validate(
                {**row, "expected_available_date": promised.get(row["id"])}
            )
            for row in line_rows
        ],
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
    checked = await _check(session, actor, data, limits)
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
        await _refuse_short(session, short_rejects)
    counters = await po_repository.counters(session, product_ids)
    outcomes: list[_Outcome] = []
    for line in by_sku:
        free = available.get(line.product_id, 0)
        take, short = split_request(requested=line.quantity, available=free)
        outcomes.append(_Outcome(line, StockChange(line.product_id, "", free, take), take, short))
    needing = [outcome for outcome in outcomes if _needs_rules(checked, outcome)]
    terms = await po_repository.preferred_terms(
        session, [outcome.line.product_id for outcome in needing]
    )
    planned: list[PlannedLine] = []
    for outcome in needing:
        product_id = outcome.line.product_id
        supplier = terms.get(product_id)
        if supplier is None:
            if outcome.backordered > 0:
                raise _no_supplier(outcome.line.sku)
            continue
        before = counters[product_id]
        after = Counters(before.backordered + outcome.backordered, before.on_order)
        cause = {"order_id": None, "order_line_id": None, "backordered": outcome.backordered}
        planned.extend(_plan_product(checked, outcome, after, supplier, cause))

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
