"""Taking and recording payments for orders, whichever provider took them.

An order's money moves under its row lock (``orders.amount_paid`` and ``amount_refunded``),
so two payments or two refunds of one order are decided one after the other and their
sums can never pass the order's total or what was paid. Calls to a payment provider happen
outside any transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.audit import service as audit
from stockflow.auth.roles import Principal
from stockflow.db.models import Order, Payment, Refund
from stockflow.errors import NotFound, PaymentExceedsAmountDue, PaymentProviderMismatch
from stockflow.events import outbox
from stockflow.events.types import EventType
from stockflow.ids import new_id
from stockflow.observability import metrics
from stockflow.orders import repository as orders_repository
from stockflow.orders.service import promises_for, to_read
from stockflow.orders.states import OrderEvent, OrderStatus, next_status
from stockflow.payments import repository
from stockflow.payments.rules import PaymentProvider, still_due
from stockflow.payments.schemas import OrderDetail, PaymentCreate, PaymentRead, RefundRead


def payment_read(payment: Payment) -> PaymentRead:
    return PaymentRead.model_validate(payment)


def refund_read(refund: Refund) -> RefundRead:
    return RefundRead.model_validate(refund)


async def order_detail(session: AsyncSession, *, viewer: Principal, order_id: str) -> OrderDetail:
    order = await orders_repository.get(session, order_id)
    if order is None or (viewer.is_customer and order.customer_id != viewer.customer_id):
        raise NotFound(f"Order {order_id} does not exist.")
    lines = (await orders_repository.lines_of(session, [order.id]))[order.id]
    read = to_read(order, lines, await promises_for(session, lines))
    return OrderDetail(
        **read.model_dump(),
        payments=[payment_read(p) for p in await repository.payments_of(session, order.id)],
        refunds=[refund_read(r) for r in await repository.refunds_of(session, order.id)],
    )


async def _locked(session: AsyncSession, order_id: str) -> Order:
    order = await orders_repository.get_for_update(session, order_id)
    if order is None:
        raise NotFound(f"Order {order_id} does not exist.")
    return order


async def take_payment(
    session: AsyncSession, order: Order, payment: Payment, *, amount: int, now: datetime
) -> None:
    """Count ``amount`` as paid on the locked ``order`` and tell it: ``payment.succeeded``,
    and ``order.confirmed`` when this completes the payment of an order waiting for it."""
    order.amount_paid += amount
    order.updated_at = now
    status = OrderStatus(order.status)
    confirmed = status is OrderStatus.PENDING_PAYMENT and order.amount_paid >= order.total
    if confirmed:
        order.status = next_status(status, OrderEvent.PAYMENT_SUCCEEDED).value
    await orders_repository.flush(session)
    metrics.count_on_commit(session, metrics.PAYMENTS.labels(payment.provider, "succeeded"))
    await outbox.record(
        session,
        EventType.PAYMENT_SUCCEEDED,
        object_type="payment",
        object_id=payment.id,
        obj=payment_read(payment),
        now=now,
    )
    if confirmed:
        lines = (await orders_repository.lines_of(session, [order.id]))[order.id]
        await outbox.record(
            session,
            EventType.ORDER_CONFIRMED,
            object_type="order",
            object_id=order.id,
            obj=to_read(order, lines, await promises_for(session, lines)),
            now=now,
        )


async def record_manual_payment(
    session: AsyncSession, *, actor: Principal, order_id: str, data: PaymentCreate
) -> PaymentRead:
    order = await _locked(session, order_id)
    if order.payment_provider != PaymentProvider.MANUAL:
        raise PaymentProviderMismatch(
            f"Order {order_id} is not paid by recorded offline payments.",
            payment_provider=order.payment_provider,
        )
    due = (
        0
        if order.status == OrderStatus.CANCELLED
        else still_due(total=order.total, amount_paid=order.amount_paid)
    )
    if data.amount > due:
        raise PaymentExceedsAmountDue(
            f"Order {order_id} owes {due}; a payment of {data.amount} is more than that.",
            amount_due=due,
        )
    now = datetime.now(UTC)
    status_before = order.status
    payment = Payment(
        id=new_id("pay"),
        order_id=order.id,
        provider=PaymentProvider.MANUAL.value,
        status="succeeded",
        amount=data.amount,
        amount_received=data.amount,
        currency=order.currency,
        reference=data.reference,
        created_by=actor.id,
        created_at=now,
        updated_at=now,
    )
    repository.add(session, payment)
    await take_payment(session, order, payment, amount=data.amount, now=now)
    read = payment_read(payment)
    await audit.record(
        session,
        actor=actor,
        action="payment.recorded",
        resource_type="order",
        resource_id=order.id,
        before={"status": status_before, "amount_paid": order.amount_paid - data.amount},
        after={
            "status": order.status,
            "amount_paid": order.amount_paid,
            "payment": read.model_dump(mode="json"),
        },
    )
    return read


async def record_intent_audit(
    session: AsyncSession, *, actor: Principal, order: Order, payment: Payment
) -> None:
    """Audit a PaymentIntent asked for by an admin or staff key, shaped like a recorded
    payment: the order's status and ``amount_paid`` (which only Stripe's confirmation
    moves), and the payment it now waits for in ``after``."""
    state = {"status": order.status, "amount_paid": order.amount_paid}
    await audit.record(
        session,
        actor=actor,
        action="payment_intent.created",
        resource_type="order",
        resource_id=order.id,
        before=state,
        after={**state, "payment": payment_read(payment).model_dump(mode="json")},
    )
