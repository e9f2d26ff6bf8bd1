"""Placing an order (previewing one is in `preview`, on the same rules).

Placement is the hot path. The catalog read and the guarded reservation of every line, in
sorted SKU order, are one round trip on PostgreSQL (`repository.reserve_from_catalog`);
only a short line of a ``backorder`` product takes the slower road (its stock row is
already locked: reserve what is there, backorder the rest). Then, with the product rows
locked in the same SKU order, the replenishment rule decides what to order, and the PO
lines are written in the same transaction: the order and the purchase that covers it
commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NoReturn

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.audit import service as audit
from stockflow.auth.roles import Principal
from stockflow.errors import (
    BackorderNeedsSupplier,
    InsufficientStock,
    InvalidRequest,
    QuotaExceeded,
    UnknownCustomer,
)
from stockflow.events import outbox
from stockflow.events import repository as events_repository
from stockflow.events.types import EventType
from stockflow.ids import new_id
from stockflow.inventory import backlog
from stockflow.inventory import service as inventory
from stockflow.inventory.policy import (
    ProductRules,
    ShortagePolicy,
    plan_replenishment,
    split_request,
)
from stockflow.observability import tracing
from stockflow.orders import metrics as order_metrics
from stockflow.orders import repository, rules
from stockflow.orders.repository import StockChange
from stockflow.orders.schemas import (
    OrderCreate,
    OrderLineRead,
    OrderRead,
)
from stockflow.orders.service import OrderLimits, customer_for
from stockflow.orders.states import OrderStatus, fulfilment_flag, initial_status
from stockflow.payments.rules import payment_required, payment_status
from stockflow.purchasing import po_repository, replenishment
from stockflow.purchasing.po_repository import Counters, SupplierTerms
from stockflow.purchasing.replenishment import PlannedLine


@dataclass(frozen=True, slots=True)
class CheckedOrder:
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
class LineOutcome:
    """What an order does to one of its lines' stock."""

    line: rules.PricedLine
    allocated: int
    backordered: int
    available_after: int
    """Units still available at the default location once this line has reserved."""
    stock: StockChange | None = None
    """The locked stock row after the reservation (placing only; a preview locks nothing)."""


def _requested(
    actor: Principal, data: OrderCreate, limits: OrderLimits
) -> tuple[str, list[rules.RequestedLine]]:
    """The ordering customer and the order's lines, one per SKU, as the client listed them."""
    customer_id = customer_for(actor, data.customer_id)
    if actor.is_customer and data.discount_amount:
        # The storefront prices an order; a customer ordering directly pays the full price.
        raise InvalidRequest(
            "A customer key may not set discount_amount.",
            errors=[{"location": "body.discount_amount", "message": "not allowed for customers"}],
        )
    requested = rules.merge_lines(
        ((line.sku, line.quantity) for line in data.lines), max_quantity=limits.max_quantity
    )
    if len(requested) > limits.max_lines:
        raise InvalidRequest(
            f"An order has at most {limits.max_lines} lines (after merging lines of one SKU).",
            errors=[{"location": "body.lines", "message": f"at most {limits.max_lines} SKUs"}],
        )
    return customer_id, requested


def _checked(
    actor: Principal,
    data: OrderCreate,
    customer_id: str,
    requested: list[rules.RequestedLine],
    catalog: repository.OrderCatalog,
) -> CheckedOrder:
    priced = rules.price_order(
        requested,
        catalog.entries,
        shipping_amount=data.shipping_amount,
        tax_amount=data.tax_amount,
        discount_amount=data.discount_amount,
        inactive_is_unknown=actor.is_customer,
    )
    if not catalog.customer_exists:
        raise UnknownCustomer(f"Customer {customer_id} does not exist.", customer_id=customer_id)
    return CheckedOrder(customer_id, priced, catalog.rules)


async def check_order(
    session: AsyncSession, actor: Principal, data: OrderCreate, limits: OrderLimits
) -> CheckedOrder:
    """The order priced and checked against the catalog, from plain reads (a preview)."""
    customer_id, requested = _requested(actor, data, limits)
    catalog = await repository.order_catalog(
        session,
        [line.sku for line in requested],
        customer_id=None if actor.is_customer else customer_id,
    )
    return _checked(actor, data, customer_id, requested, catalog)


async def refuse_short(session: AsyncSession, short: Sequence[rules.PricedLine]) -> NoReturn:
    """Refuse the order, reporting every short ``reject`` SKU with what is available."""
    available = await repository.available(session, [line.product_id for line in short])
    lacking = list(short)
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


def no_supplier(sku: str) -> BackorderNeedsSupplier:
    return BackorderNeedsSupplier(
        f"Product {sku} backorders shortages but has no active supplier to order them from.",
        sku=sku,
    )


def plan_product(
    checked: CheckedOrder,
    outcome: LineOutcome,
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
        available=outcome.available_after,
        pack_size=supplier.pack_size,
        min_order_qty=supplier.min_order_qty,
    )
    return [
        PlannedLine(outcome.line.product_id, outcome.line.sku, supplier, explanation, [cause])
        for explanation in explanations
    ]


def _locked(outcome: LineOutcome) -> StockChange:
    assert outcome.stock is not None, "placing an order locks every stock row it reserves"
    return outcome.stock


def needs_rules(checked: CheckedOrder, outcome: LineOutcome) -> bool:
    return (
        outcome.backordered > 0
        or checked.product_rules[outcome.line.product_id].reorder_point is not None
    )


async def _reserve(
    session: AsyncSession,
    checked: CheckedOrder,
    reserved: dict[str, StockChange],
    now: datetime,
) -> list[LineOutcome]:
    """What each line got, from the guarded reservation already made (``reserved``, by
    product id): a short ``reject`` line refuses the order, a short ``backorder`` line
    takes what is there."""
    by_sku = checked.by_sku
    short = [line for line in by_sku if line.product_id not in reserved]
    refused = [line for line in short if checked.policy(line) is ShortagePolicy.REJECT]
    if refused:
        # Any short reject line refuses the whole order; the rollback undoes the rest.
        await refuse_short(session, refused)
    outcomes: list[LineOutcome] = []
    for line in by_sku:
        change = reserved.get(line.product_id)
        if change is not None:
            outcomes.append(
                LineOutcome(line, line.quantity, 0, change.on_hand - change.reserved, change)
            )
            continue
        # A short backorder line: its row is already locked; reserve what is there.
        stock = await repository.stock_for_update(session, line.product_id)
        take, missing = split_request(
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
        outcomes.append(LineOutcome(line, take, missing, stock.on_hand - stock.reserved, stock))
    return outcomes


def _order_read(
    order: dict[str, Any],
    line_rows: list[dict[str, Any]],
    status: OrderStatus,
    promised: dict[str, date | None],
) -> OrderRead:
    # Built from values placing computed, so not validated again (the hot path).
    return OrderRead.model_construct(
        id=order["id"],
        customer_id=order["customer_id"],
        status=status,
        fulfilment=fulfilment_flag(backordered_units=sum(r["backordered"] for r in line_rows)),
        currency=order["currency"],
        subtotal=order["subtotal"],
        shipping_amount=order["shipping_amount"],
        tax_amount=order["tax_amount"],
        discount_amount=order["discount_amount"],
        total=order["total"],
        payment_status=payment_status(
            provider=order["payment_provider"],
            total=order["total"],
            amount_paid=0,
            amount_refunded=0,
        ),
        amount_paid=0,
        amount_refunded=0,
        lines=[
            OrderLineRead.model_construct(
                sku=row["sku"],
                quantity=row["quantity"],
                unit_price=row["unit_price"],
                line_total=row["line_total"],
                allocated=row["allocated"],
                backordered=row["backordered"],
                shipped=row["shipped"],
                expected_available_date=promised.get(row["id"]),
            )
            for row in line_rows
        ],
        metadata=order["metadata"],
        cancel_reason=None,
        created_at=order["created_at"],
        updated_at=order["updated_at"],
        cancelled_at=None,
    )


def _order_events(read: OrderRead, now: datetime) -> list[dict[str, Any]]:
    """``order.created``, and ``order.backordered`` after it when a line waits for stock."""
    data = outbox.render_data(read)
    types = [EventType.ORDER_CREATED]
    if any(line.backordered for line in read.lines):
        types.append(EventType.ORDER_BACKORDERED)
    return [
        outbox.event_row(kind, object_type="order", object_id=read.id, data=data, now=now)
        for kind in types
    ]


async def _replenish(
    session: AsyncSession,
    actor: Principal,
    checked: CheckedOrder,
    needing: list[LineOutcome],
    order_id: str,
    line_ids: dict[str, str],
    limits: OrderLimits,
    now: datetime,
) -> None:
    """Count the backlog and order what the replenishment rule asks for, product by
    product: their rows are locked in SKU order, after every stock row."""
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
                raise no_supplier(outcome.line.sku)
            continue
        cause = {
            "order_id": order_id,
            "order_line_id": line_ids[product_id],
            "backordered": outcome.backordered,
        }
        product_planned = plan_product(checked, outcome, counters, supplier, cause)
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


async def _within_quota(
    session: AsyncSession, customer_id: str, outcomes: list[LineOutcome], limits: OrderLimits
) -> None:
    """Refuse an unpaid order that would take its customer past the quota on unpaid orders
    or on the units they hold reserved, so that no customer can hoard stock by ordering
    and never paying. Called after the reservation, so it counts the units this order
    really reserves; the refusal rolls the reservation back."""
    if not (limits.max_unpaid_orders or limits.max_unpaid_units):
        return
    held = await repository.unpaid_holdings(session, customer_id)
    if held is None:
        return
    units = sum(outcome.allocated for outcome in outcomes)
    for quota, limit, current, requested in (
        ("unpaid_orders", limits.max_unpaid_orders, held.orders, 1),
        ("reserved_units", limits.max_unpaid_units, held.units, units),
    ):
        if limit and current + requested > limit:
            raise QuotaExceeded(
                f"Customer {customer_id} may hold at most {limit} "
                + ("unpaid orders" if quota == "unpaid_orders" else "units reserved unpaid")
                + f"; it holds {current}, and this order would add {requested}.",
                quota=quota,
                limit=limit,
                current=current,
                requested=requested,
            )


async def place_order(
    session: AsyncSession, *, actor: Principal, data: OrderCreate, limits: OrderLimits
) -> OrderRead:
    customer_id, requested = _requested(actor, data, limits)
    now = datetime.now(UTC)
    # One round trip reads the catalog and reserves every line that has enough stock, in
    # SKU order. An order refused afterwards (unknown SKU, inactive product, wrong
    # currency, no such customer) rolls the reservation back with everything else.
    with tracing.span("reserve_stock", **{"stockflow.lines": len(requested)}):
        catalog, reserved = await repository.reserve_from_catalog(
            session,
            sorted((line.sku, line.quantity) for line in requested),
            customer_id=None if actor.is_customer else customer_id,
            now=now,
        )
        checked = _checked(actor, data, customer_id, requested, catalog)
        outcomes = await _reserve(session, checked, reserved, now)
    status = initial_status(
        payment_required=payment_required(limits.payment_provider, checked.priced.total)
    )
    if status is OrderStatus.PENDING_PAYMENT:
        await _within_quota(session, checked.customer_id, outcomes, limits)
    order_id = new_id("ord")
    line_ids = {line.product_id: new_id("oli") for line in checked.priced.lines}
    # Product rows after every stock row, in the same SKU order.
    needing = [outcome for outcome in outcomes if needs_rules(checked, outcome)]
    if needing:
        with tracing.span("replenish", **{"stockflow.products": len(needing)}):
            await _replenish(session, actor, checked, needing, order_id, line_ids, limits, now)

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
            _locked(outcome),
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
    order_row = {
        "id": order_id,
        "customer_id": checked.customer_id,
        "status": status.value,
        "currency": checked.priced.currency,
        "subtotal": checked.priced.subtotal,
        "shipping_amount": checked.priced.shipping_amount,
        "tax_amount": checked.priced.tax_amount,
        "discount_amount": checked.priced.discount_amount,
        "total": checked.priced.total,
        "metadata": data.metadata,
        "placed_by": actor.id,
        "created_at": now,
        "updated_at": now,
        "payment_provider": limits.payment_provider,
    }
    waiting = [row["product_id"] for row in line_rows if row["backordered"] > 0]
    if not waiting:
        # The common case: the order as the API shows it is known before it is written,
        # so its event travels in the same statement as the order.
        read = _order_read(order_row, line_rows, status, {})
        await repository.insert_order(
            session,
            order=order_row,
            lines=line_rows,
            movements=movement_rows,
            events=_order_events(read, now),
        )
    else:
        # Promise dates count this order's own lines in the queue, so they are read after
        # the lines are written.
        await repository.insert_order(
            session, order=order_row, lines=line_rows, movements=movement_rows
        )
        read = _order_read(order_row, line_rows, status, await backlog.promises(session, waiting))
        await events_repository.add(session, _order_events(read, now))
    for outcome in outcomes:
        await inventory.tell_if_low(
            session,
            product_id=outcome.line.product_id,
            sku=outcome.line.sku,
            threshold=checked.product_rules[outcome.line.product_id].low_stock_threshold,
            available_before=outcome.available_after + outcome.allocated,
            available_after=outcome.available_after,
            now=now,
        )
    order_metrics.placed(session, read)
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
