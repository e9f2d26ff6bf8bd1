"""Reading orders, and what placing and fulfilling them share: who orders, within which
limits, and how an order is shown (with each waiting line's promise date)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.auth.roles import Principal
from stockflow.db.models import Order, OrderLine
from stockflow.db.pagination import Page
from stockflow.errors import InvalidRequest, NotFound
from stockflow.inventory import backlog
from stockflow.orders import repository
from stockflow.orders.schemas import OrderLineRead, OrderRead
from stockflow.orders.states import OrderStatus, fulfilment_flag
from stockflow.payments.rules import PaymentProvider, payment_status


@dataclass(frozen=True, slots=True)
class OrderLimits:
    max_lines: int
    max_quantity: int
    po_consolidation_seconds: int = 0
    payment_provider: PaymentProvider = PaymentProvider.NONE
    max_unpaid_orders: int = 0
    """Unpaid open orders one customer may hold at once; 0: no quota."""
    max_unpaid_units: int = 0
    """Units one customer's unpaid orders may hold reserved at once; 0: no quota."""


def customer_for(actor: Principal, requested: str | None) -> str:
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


def to_read(
    order: Order, lines: list[OrderLine], promised: Mapping[str, date | None] | None = None
) -> OrderRead:
    """The order as the API shows it; ``promised`` holds the promise dates of its waiting
    lines (see `promises_for`)."""
    promised = promised or {}
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
        payment_status=payment_status(
            provider=PaymentProvider(order.payment_provider),
            total=order.total,
            amount_paid=order.amount_paid,
            amount_refunded=order.amount_refunded,
        ),
        amount_paid=order.amount_paid,
        amount_refunded=order.amount_refunded,
        lines=[
            OrderLineRead.model_validate(line).model_copy(
                update={"expected_available_date": promised.get(line.id)}
            )
            for line in lines
        ],
        metadata=order.metadata_,
        cancel_reason=order.cancel_reason,
        created_at=order.created_at,
        updated_at=order.updated_at,
        cancelled_at=order.cancelled_at,
    )


async def promises_for(session: AsyncSession, lines: Iterable[OrderLine]) -> dict[str, date | None]:
    """Promise dates for the waiting lines among ``lines`` (no query when none waits)."""
    product_ids = sorted({line.product_id for line in lines if line.backordered > 0})
    return await backlog.promises(session, product_ids) if product_ids else {}


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
    promised = await promises_for(session, (line for group in lines.values() for line in group))
    return Page(
        [to_read(order, lines[order.id], promised) for order in page.items], page.next_cursor
    )
