"""Cancelling orders left unpaid past ``STOCKFLOW_PAYMENT_TIMEOUT`` (the worker's job).

Stock reserved for an order nobody pays for is stock other customers cannot buy. But the
customer may have paid a moment ago, or be paying right now: before cancelling a Stripe
order the worker reads its PaymentIntents from Stripe. One that succeeded confirms the
order instead; one still ``processing`` makes it wait for the next round; the others are
cancelled at Stripe first, so that nobody can pay them afterwards. The order's payment
lease keeps the storefront's PaymentIntent call and this job from talking to Stripe about
one order at the same time.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from stockflow.adapters.stripe_gateway import (
    Intent,
    ProviderRefused,
    ProviderUnavailable,
    StripeGateway,
)
from stockflow.auth.roles import Principal
from stockflow.db.engine import Database
from stockflow.observability.logging import get_logger
from stockflow.orders import fulfilment
from stockflow.orders import repository as orders_repository
from stockflow.orders.states import OrderStatus
from stockflow.payments import repository
from stockflow.payments.rules import PaymentProvider
from stockflow.payments.stripe_events import apply_intent

log = get_logger(__name__)

BATCH = 20
ROUNDS = 50
"""At most this many batches a round: a backlog larger than that waits for the next."""


async def _claim(database: Database, order_id: str, lease: timedelta) -> list[str] | None:
    """The order's lease and the PaymentIntents to settle; None when it is not (or no
    longer) an unpaid order this round may touch."""
    async with database.transaction() as session:
        order = await orders_repository.get_for_update(session, order_id)
        if order is None or order.status != OrderStatus.PENDING_PAYMENT:
            return None
        now = datetime.now(UTC)
        if order.payment_lease_until is not None and order.payment_lease_until > now:
            return None  # a PaymentIntent call is talking to Stripe about it right now
        order.payment_lease_until = now + lease
        return [
            p.intent_id
            for p in await repository.stripe_payments_of(session, order.id)
            if p.intent_id is not None and p.status not in ("succeeded", "cancelled")
        ]


async def _settle(gateway: StripeGateway, intent_id: str) -> Intent | bool | None:
    """The PaymentIntent once it can no longer be paid, or as it is when it was paid or is
    being paid; True when Stripe has no such PaymentIntent (nobody can pay it); None when
    Stripe cannot be asked now."""
    try:
        intent = await gateway.retrieve_intent(intent_id)
        if intent.status in ("succeeded", "processing", "canceled"):
            return intent
        try:
            return await gateway.cancel_intent(intent_id)
        except ProviderRefused:
            # Paid (or being paid) between the two calls: what it is now decides.
            return await gateway.retrieve_intent(intent_id)
    except ProviderRefused as exc:
        log.warning("payment_intent_unknown_to_stripe", intent_id=intent_id, reason=str(exc))
        return True
    except ProviderUnavailable as exc:
        log.warning("payment_expiry_deferred", intent_id=intent_id, reason=str(exc))
        return None


async def _expire(
    database: Database, gateway: StripeGateway | None, order_id: str, lease: timedelta
) -> bool:
    intent_ids = await _claim(database, order_id, lease)
    if intent_ids is None:
        return False
    intents: list[Intent] = []
    wait = False
    try:
        for intent_id in intent_ids:
            settled = await _settle(gateway, intent_id) if gateway is not None else None
            if settled is None:
                wait = True
                break
            if isinstance(settled, Intent):
                intents.append(settled)
    except BaseException:
        await asyncio.shield(_release(database, order_id))
        raise
    async with database.transaction() as session:
        order = await orders_repository.get_for_update(session, order_id)
        assert order is not None
        order.payment_lease_until = None
        if order.status != OrderStatus.PENDING_PAYMENT:
            return False
        now = datetime.now(UTC)
        for intent in intents:
            await apply_intent(session, order, intent, now)
        if (
            wait
            or order.status != OrderStatus.PENDING_PAYMENT
            or any(i.status == "processing" for i in intents)
        ):
            return False
        await fulfilment.cancel_order(
            session,
            actor=Principal.worker(),
            order_id=order_id,
            reason="payment not received in time",
        )
        return True


async def _release(database: Database, order_id: str) -> None:
    async with database.transaction() as session:
        order = await orders_repository.get_for_update(session, order_id)
        if order is not None:
            order.payment_lease_until = None


async def expire_unpaid(
    database: Database, gateway: StripeGateway | None, *, unpaid_for: timedelta, lease: timedelta
) -> int:
    """Cancel the orders unpaid for longer than ``unpaid_for``; how many were cancelled.
    Orders that must wait (a payment processing, Stripe out of reach) are passed over, so
    they never hold up the ones behind them; one that fails is logged and passed over too."""
    cutoff = datetime.now(UTC) - unpaid_for
    after: tuple[datetime, str] | None = None
    cancelled = 0
    for _ in range(ROUNDS):
        async with database.transaction(write=False) as session:
            due = await repository.unpaid_before(session, cutoff, after=after, limit=BATCH)
        for placed, order_id in due:
            after = (placed, order_id)
            async with database.transaction(write=False) as session:
                order = await orders_repository.get(session, order_id)
                provider = order.payment_provider if order is not None else None
            if provider == PaymentProvider.STRIPE and gateway is None:
                continue  # Stripe is not configured here: leave it to a worker that has it
            try:
                if await _expire(database, gateway, order_id, lease):
                    cancelled += 1
            except Exception:
                log.warning("payment_expiry_failed", order_id=order_id, exc_info=True)
        if len(due) < BATCH:
            break
    return cancelled
