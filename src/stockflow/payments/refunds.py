"""Refunds: asked for by staff, or owed when a paid order is cancelled.

A refund is decided under the order's row lock: it is recorded (``pending``) and its amount
counted in ``orders.amount_refunded`` at once, so two refunds of one order, however close
together, never add up to more than was paid. For Stripe, the refund is then made outside
any transaction, with an idempotency key derived from the request (the caller's key, its
``Idempotency-Key`` and the order) or else from the refund's id, never a raw client value;
a refund Stripe could not be asked for now stays ``pending`` and the worker asks again
with the same key, so Stripe makes it once. One Stripe refuses is ``failed`` and its amount
counts no more.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.adapters.stripe_gateway import ProviderRefused, ProviderUnavailable, StripeGateway
from stockflow.audit import service as audit
from stockflow.auth.roles import Principal
from stockflow.db.engine import Database
from stockflow.db.models import Order, Payment, Refund
from stockflow.errors import IdempotencyKeyReused, NotFound, RefundExceedsPaid
from stockflow.events import outbox
from stockflow.events.types import EventType
from stockflow.ids import new_id
from stockflow.observability import metrics
from stockflow.observability.logging import get_logger
from stockflow.orders import repository as orders_repository
from stockflow.payments import repository
from stockflow.payments.rules import PaymentProvider, provider_key, refundable
from stockflow.payments.schemas import RefundCreate, RefundRead
from stockflow.payments.service import refund_read

log = get_logger(__name__)


def request_key(principal_id: str, idempotency_key: str | None, order_id: str) -> str | None:
    """What identifies a refund request across retries; None without an Idempotency-Key."""
    if idempotency_key is None:
        return None
    return hashlib.sha256(f"{principal_id}\x1f{idempotency_key}\x1f{order_id}".encode()).hexdigest()


async def tell(session: AsyncSession, refund: Refund, now: datetime) -> None:
    await orders_repository.flush(session)
    metrics.count_on_commit(session, metrics.REFUNDS.labels("succeeded"))
    await outbox.record(
        session,
        EventType.REFUND_SUCCEEDED,
        object_type="refund",
        object_id=refund.id,
        obj=refund_read(refund),
        now=now,
    )


def _paid_through(payments: list[Payment]) -> Payment | None:
    succeeded = [p for p in payments if p.status == "succeeded" and p.amount_received > 0]
    return succeeded[-1] if succeeded else None


async def add_refund(
    session: AsyncSession,
    order: Order,
    *,
    amount: int,
    reason: str,
    actor_id: str | None,
    key: str | None,
    now: datetime,
) -> Refund:
    """Record a refund of the locked ``order``: a recorded (``manual``) one is done at once,
    a Stripe one is ``pending`` until Stripe has made it."""
    left = refundable(amount_paid=order.amount_paid, amount_refunded=order.amount_refunded)
    if amount > left:
        raise RefundExceedsPaid(
            f"Order {order.id} has {left} left to refund; {amount} is more than that.",
            refundable=left,
        )
    payments = list(await repository.payments_of(session, order.id))
    provider = PaymentProvider(order.payment_provider)
    paid_through = _paid_through(payments)
    refund = Refund(
        id=new_id("ref"),
        order_id=order.id,
        payment_id=paid_through.id if paid_through is not None else None,
        provider=provider.value,
        status="succeeded" if provider is PaymentProvider.MANUAL else "pending",
        amount=amount,
        currency=order.currency,
        reason=reason,
        request_key=key,
        created_by=actor_id,
        created_at=now,
        updated_at=now,
    )
    repository.add(session, refund)
    order.amount_refunded += amount
    order.updated_at = now
    if refund.status == "succeeded":
        await tell(session, refund, now)
    else:
        await orders_repository.flush(session)
    return refund


async def refund_order(
    session: AsyncSession,
    *,
    actor: Principal,
    order_id: str,
    data: RefundCreate,
    idempotency_key: str | None,
) -> tuple[RefundRead, bool]:
    """The refund recorded for this request (a retry finds its first one); whether it is a
    Stripe refund still to be made."""
    key = request_key(actor.id, idempotency_key, order_id)
    order = await orders_repository.get_for_update(session, order_id)
    if order is None:
        raise NotFound(f"Order {order_id} does not exist.")
    if key is not None:
        found = await repository.refund_by_key(session, key)
        if found is not None:
            if (found.amount, found.reason) != (data.amount, data.reason):
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was first used for a refund of "
                    f"{found.amount} ({found.reason!r}). Use a new key for a new refund."
                )
            return refund_read(found), found.status == "pending"
    now = datetime.now(UTC)
    before = {"amount_paid": order.amount_paid, "amount_refunded": order.amount_refunded}
    refund = await add_refund(
        session, order, amount=data.amount, reason=data.reason, actor_id=actor.id, key=key, now=now
    )
    read = refund_read(refund)
    await audit.record(
        session,
        actor=actor,
        action="refund.created",
        resource_type="order",
        resource_id=order.id,
        before=before,
        after={
            "amount_paid": order.amount_paid,
            "amount_refunded": order.amount_refunded,
            "refund": read.model_dump(mode="json"),
        },
    )
    return read, refund.status == "pending" and refund.provider == PaymentProvider.STRIPE


async def send(database: Database, gateway: StripeGateway, refund_id: str) -> RefundRead | None:
    """Ask Stripe for a pending refund, outside any transaction, and record its answer;
    the refund as it is then, or None if it was not there to send."""
    async with database.transaction(write=False) as session:
        refund = await repository.refund_for_update(session, refund_id)
        if refund is None or refund.status != "pending" or refund.provider_refund_id is not None:
            return refund_read(refund) if refund is not None else None
        payment = (
            await session.get(Payment, refund.payment_id) if refund.payment_id is not None else None
        )
        intent_id = payment.intent_id if payment is not None else None
        key = provider_key("refund", refund.request_key or refund.id)
        amount = refund.amount
        order_id = refund.order_id
    outcome: str | None = None
    made = None
    if intent_id is None:
        outcome = "the order has no succeeded Stripe payment to refund"
    else:
        try:
            made = await gateway.refund(
                intent_id=intent_id, amount=amount, idempotency_key=key, refund_id=refund_id
            )
        except ProviderUnavailable as exc:
            log.warning("refund_not_sent", refund_id=refund_id, reason=str(exc))
            async with database.transaction(write=False) as session:
                current = await session.get(Refund, refund_id)
                return refund_read(current) if current is not None else None
        except ProviderRefused as exc:
            outcome = str(exc)
    async with database.transaction() as session:
        # The order's row before the refund's, as everything else that changes both does.
        order = await orders_repository.get_for_update(session, order_id)
        refund = await repository.refund_for_update(session, refund_id)
        assert order is not None
        assert refund is not None
        if refund.status != "pending" or refund.provider_refund_id is not None:
            return refund_read(refund)
        now = datetime.now(UTC)
        refund.updated_at = now
        if made is None:
            metrics.count_on_commit(session, metrics.REFUNDS.labels("failed"))
            refund.status = "failed"
            refund.failure_message = outcome
            order.amount_refunded -= refund.amount
            order.updated_at = now
            await orders_repository.flush(session)
        else:
            refund.provider_refund_id = made.id
            if made.status == "succeeded":
                refund.status = "succeeded"
                await tell(session, refund, now)
            elif made.status in ("failed", "canceled"):
                metrics.count_on_commit(session, metrics.REFUNDS.labels("failed"))
                refund.status = "failed"
                order.amount_refunded -= refund.amount
                order.updated_at = now
                await orders_repository.flush(session)
        return refund_read(refund)


async def send_pending(database: Database, gateway: StripeGateway) -> int:
    """The worker's job: send the Stripe refunds still waiting; how many were tried."""
    async with database.transaction(write=False) as session:
        waiting = await repository.unsent_refunds(session, limit=20)
    for refund_id in waiting:
        await send(database, gateway, refund_id)
    return len(waiting)
