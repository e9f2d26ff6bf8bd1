"""Stripe's webhook events: kept once by their id when they arrive, applied by the worker.

Events may arrive twice, late or out of order. For a ``payment_intent.*`` event the worker
does not trust the event's copy of the PaymentIntent: it reads the PaymentIntent from
Stripe (outside any transaction) and applies what Stripe says now, so every order of
arrival ends in the same state. A payment that has succeeded stays succeeded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.adapters.stripe_gateway import (
    Intent,
    ProviderRefused,
    ProviderUnavailable,
    StripeEvent,
    StripeGateway,
)
from stockflow.adapters.stripe_gateway import (
    InvalidStripeSignature as BadSignature,
)
from stockflow.db.engine import Database
from stockflow.db.models import Order, Refund
from stockflow.errors import InvalidStripeSignature
from stockflow.events import outbox
from stockflow.events.types import EventType
from stockflow.ids import new_id
from stockflow.observability import metrics
from stockflow.observability.logging import get_logger
from stockflow.orders import repository as orders_repository
from stockflow.orders.states import OrderStatus
from stockflow.payments import refunds, repository
from stockflow.payments.checkout import record_intent
from stockflow.payments.rules import PaymentProvider, payment_state_of_intent, refundable
from stockflow.payments.service import payment_read, take_payment
from stockflow.purchasing import inbox_repository

log = get_logger(__name__)

SOURCE = "stripe"
BATCH = 50


def verified(gateway: StripeGateway, body: bytes, signature: str | None) -> StripeEvent:
    try:
        return gateway.verify_event(body, signature)
    except BadSignature as exc:
        raise InvalidStripeSignature(f"The Stripe event was refused: {exc}.") from exc


async def keep(session: AsyncSession, event: StripeEvent, body: bytes) -> bool:
    """Keep the event unless it is kept already; whether it was new."""
    return await inbox_repository.add_if_absent(
        session,
        source_type=SOURCE,
        source_id=SOURCE,
        message_id=event.id,
        type_=event.type,
        body=body.decode(),
        now=datetime.now(UTC),
    )


async def apply_intent(session: AsyncSession, order: Order, intent: Intent, now: datetime) -> None:
    """Bring the locked ``order``'s payment for ``intent`` to what Stripe says."""
    payment = await record_intent(session, order, intent)
    if payment.status == "succeeded" or (
        payment.status == "cancelled" and intent.status != "succeeded"
    ):
        # Final states; a stale read of the PaymentIntent (another worker's, say) must not
        # move a payment back.
        return
    state = payment_state_of_intent(intent.status, failed=intent.failure_message is not None)
    if state == payment.status:
        return
    payment.status = state
    payment.updated_at = now
    if state == "succeeded":
        payment.amount_received = intent.amount_received
        payment.failure_message = None
        await take_payment(session, order, payment, amount=intent.amount_received, now=now)
        if order.status == OrderStatus.CANCELLED:
            # Paid after it was cancelled (through a PaymentIntent the customer still had
            # open): the money goes back, made at Stripe by the worker's refund job.
            await refunds.add_refund(
                session,
                order,
                amount=refundable(
                    amount_paid=order.amount_paid, amount_refunded=order.amount_refunded
                ),
                reason="paid after the order was cancelled",
                actor_id=None,
                key=None,
                now=now,
            )
        return
    if state == "failed":
        payment.failure_message = intent.failure_message
        await orders_repository.flush(session)
        metrics.count_on_commit(session, metrics.PAYMENTS.labels(payment.provider, "failed"))
        await outbox.record(
            session,
            EventType.PAYMENT_FAILED,
            object_type="payment",
            object_id=payment.id,
            obj=payment_read(payment),
            now=now,
        )


async def _apply_refunded_charge(
    session: AsyncSession, charge: dict[str, Any], now: datetime
) -> str | None:
    intent_id = charge.get("payment_intent")
    payment = await repository.by_intent(session, intent_id) if isinstance(intent_id, str) else None
    if payment is None:
        return f"no payment for PaymentIntent {intent_id}"
    order = await orders_repository.get_for_update(session, payment.order_id)
    assert order is not None
    of_payment = [
        r for r in await repository.refunds_of(session, order.id) if r.payment_id == payment.id
    ]
    # A refund Stripe has confirmed the making of settles here. One not confirmed yet may
    # still have been made (its answer lost): it is counted, not settled, so that the
    # dashboard's refunds are told apart from it only once it is settled, never twice.
    for refund in of_payment:
        if refund.status == "pending" and refund.provider_refund_id is not None:
            refund.status = "succeeded"
            refund.updated_at = now
            await refunds.tell(session, refund, now)
    counted = sum(r.amount for r in of_payment if r.status != "failed")
    missing = min(
        int(charge.get("amount_refunded") or 0) - counted,
        refundable(amount_paid=order.amount_paid, amount_refunded=order.amount_refunded),
    )
    if missing > 0:
        # Refunded in Stripe's dashboard, not through Stockflow: recorded as it is.
        refund = Refund(
            id=new_id("ref"),
            order_id=order.id,
            payment_id=payment.id,
            provider=PaymentProvider.STRIPE.value,
            status="succeeded",
            amount=missing,
            currency=payment.currency,
            reason="refunded in Stripe",
            created_at=now,
            updated_at=now,
        )
        repository.add(session, refund)
        order.amount_refunded += missing
        order.updated_at = now
        await refunds.tell(session, refund, now)
    return None


async def _intent_of(gateway: StripeGateway, event: dict[str, Any]) -> Intent | str:
    obj = event.get("data", {}).get("object", {})
    intent_id = obj.get("id")
    if not isinstance(intent_id, str):
        return "the event carries no PaymentIntent id"
    return await gateway.retrieve_intent(intent_id)


async def apply_waiting(database: Database, gateway: StripeGateway) -> int:
    """Apply Stripe's events waiting in the inbox, oldest first; the number applied. An
    event whose PaymentIntent cannot be read from Stripe now waits for the next round."""
    async with database.transaction(write=False) as session:
        if not await inbox_repository.any_unprocessed(session, source_type=SOURCE):
            return 0
        waiting = [
            (kept.id, kept.type, kept.body)
            for kept in await inbox_repository.claim_unprocessed(
                session, limit=BATCH, source_type=SOURCE
            )
        ]
    applied = 0
    for kept_id, kind, body in waiting:
        event: dict[str, Any] = json.loads(body)
        intent: Intent | str | None = None
        if kind.startswith("payment_intent."):
            try:
                intent = await _intent_of(gateway, event)
            except ProviderUnavailable:
                log.warning("stripe_unavailable", event_id=event.get("id"))
                continue
            except ProviderRefused as exc:
                intent = f"Stripe refused to show the PaymentIntent: {exc}"
        async with database.transaction() as session:
            if not await inbox_repository.lock_unprocessed(session, kept_id):
                continue  # another worker applied it meanwhile
            now = datetime.now(UTC)
            error = await _apply(session, kind, event, intent, now)
            if error is not None:
                log.warning("stripe_event_not_applied", event_id=event.get("id"), error=error)
            await inbox_repository.mark_processed(session, message_id=kept_id, now=now, error=error)
            applied += 1
    return applied


async def _apply(
    session: AsyncSession,
    kind: str,
    event: dict[str, Any],
    intent: Intent | str | None,
    now: datetime,
) -> str | None:
    if isinstance(intent, str):
        return intent
    if intent is not None:
        if intent.order_id is None:
            return f"PaymentIntent {intent.id} names no order"
        order = await orders_repository.get_for_update(session, intent.order_id)
        if order is None or order.payment_provider != PaymentProvider.STRIPE:
            return f"PaymentIntent {intent.id} names no Stripe order of this service"
        await apply_intent(session, order, intent, now)
        return None
    if kind == "charge.refunded":
        return await _apply_refunded_charge(session, event.get("data", {}).get("object", {}), now)
    return None  # a type Stockflow has no use for
