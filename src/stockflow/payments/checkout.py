"""The storefront's PaymentIntent for an order (``POST /v1/orders/{id}/payment-intent``).

Placing the order never calls Stripe. This does, outside any transaction and row lock, and
for one order at a time: a short transaction takes the order's payment lease (a timestamp
on its row) and commits; Stripe is asked with a key derived from the order and the amount;
a second short transaction records the PaymentIntent and gives the lease back. A request
that finds the lease taken waits for the holder's result instead of asking Stripe too, so
Stripe never sees two requests about one order at once. A holder that dies leaves a lease
that lapses on its own.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.adapters.stripe_gateway import (
    Intent,
    ProviderRefused,
    ProviderUnavailable,
    StripeGateway,
)
from stockflow.auth.roles import Principal
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.db.models import Order, Payment
from stockflow.errors import (
    NotFound,
    PaymentInProgress,
    PaymentProviderMismatch,
    PaymentProviderUnavailable,
    PaymentRefused,
)
from stockflow.ids import new_id
from stockflow.observability.logging import get_logger
from stockflow.orders import repository as orders_repository
from stockflow.orders.states import InvalidStateTransition, OrderEvent, OrderStatus
from stockflow.payments import repository
from stockflow.payments.rules import (
    OPEN_PAYMENT_STATES,
    PaymentProvider,
    provider_key,
    still_due,
)
from stockflow.payments.schemas import PaymentIntentRead
from stockflow.payments.service import record_intent_audit

_POLL_SECONDS = 0.05
log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Checkout:
    database: Database
    gateway: StripeGateway
    lease: timedelta
    """How long a lease holds: longer than one call to Stripe may take."""
    wait_seconds: float
    """How long a request waits for another one's result before answering 409."""


def build_gateway(settings: Settings) -> StripeGateway | None:
    """Stripe's client when payments are `stripe` (the settings require its keys then)."""
    if settings.payments != "stripe":
        return None
    assert settings.stripe_secret_key is not None
    assert settings.stripe_webhook_secret is not None
    return StripeGateway(
        secret_key=settings.stripe_secret_key.get_secret_value(),
        webhook_secret=settings.stripe_webhook_secret.get_secret_value(),
        api_base=settings.stripe_api_base,
        timeout_seconds=settings.stripe_timeout_seconds,
    )


def payment_lease(settings: Settings) -> timedelta:
    """How long the order's payment lease holds: it outlives a call to Stripe that runs into
    its timeout, so a live holder never loses it."""
    return timedelta(seconds=2 * settings.stripe_timeout_seconds + 5)


def build_checkout(settings: Settings, database: Database) -> Checkout | None:
    gateway = build_gateway(settings)
    if gateway is None:
        return None
    return Checkout(
        database=database,
        gateway=gateway,
        lease=payment_lease(settings),
        wait_seconds=settings.idempotency_wait_seconds,
    )


def _read(payment: Payment) -> PaymentIntentRead:
    assert payment.intent_id is not None
    assert payment.client_secret is not None
    return PaymentIntentRead(
        payment_id=payment.id,
        intent_id=payment.intent_id,
        client_secret=payment.client_secret,
        amount=payment.amount,
        currency=payment.currency,
        status=payment.status,
    )


async def _payable(session: AsyncSession, viewer: Principal, order_id: str) -> Order:
    order = await orders_repository.get_for_update(session, order_id)
    if order is None or (viewer.is_customer and order.customer_id != viewer.customer_id):
        raise NotFound(f"Order {order_id} does not exist.")
    if order.payment_provider != PaymentProvider.STRIPE:
        raise PaymentProviderMismatch(
            f"Order {order_id} is not paid through Stripe.",
            payment_provider=order.payment_provider,
        )
    status = OrderStatus(order.status)
    if status is not OrderStatus.PENDING_PAYMENT:
        # Paid already, or cancelled: there is nothing to pay.
        raise InvalidStateTransition(from_status=status, event=OrderEvent.PAYMENT_SUCCEEDED)
    return order


async def refuse_without_stripe(database: Database, *, viewer: Principal, order_id: str) -> None:
    """Where payments are not taken through Stripe: 404 for an order the caller may not
    see, as everywhere, else 409 naming how the order is paid."""
    async with database.transaction(write=False) as session:
        order = await orders_repository.get(session, order_id)
        if order is None or (viewer.is_customer and order.customer_id != viewer.customer_id):
            raise NotFound(f"Order {order_id} does not exist.")
        raise PaymentProviderMismatch(
            f"Order {order_id} is not paid through Stripe: payments are not taken through "
            "Stripe here (STOCKFLOW_PAYMENTS).",
            payment_provider=order.payment_provider,
        )


@dataclass(frozen=True, slots=True)
class _Claim:
    order_id: str
    amount: int
    currency: str
    attempt: int
    """Earlier PaymentIntents of the order that can no longer be paid (cancelled): each
    new one needs a new idempotency key."""


async def _claim(
    checkout: Checkout, viewer: Principal, order_id: str
) -> PaymentIntentRead | _Claim | None:
    """The open PaymentIntent's answer, or the lease (None: another request holds it)."""
    async with checkout.database.transaction() as session:
        order = await _payable(session, viewer, order_id)
        due = still_due(total=order.total, amount_paid=order.amount_paid)
        payments = await repository.stripe_payments_of(session, order.id)
        for payment in payments:
            if (
                payment.status in OPEN_PAYMENT_STATES
                and payment.amount == due
                and payment.client_secret is not None
            ):
                return _read(payment)
        now = datetime.now(UTC)
        if order.payment_lease_until is not None and order.payment_lease_until > now:
            return None
        order.payment_lease_until = now + checkout.lease
        return _Claim(
            order.id,
            due,
            order.currency,
            attempt=sum(1 for p in payments if p.status == "cancelled"),
        )


async def _release(checkout: Checkout, order_id: str) -> None:
    async with checkout.database.transaction() as session:
        order = await orders_repository.get_for_update(session, order_id)
        if order is not None:
            order.payment_lease_until = None


async def record_intent(session: AsyncSession, order: Order, intent: Intent) -> Payment:
    """The payment of ``intent`` on the locked ``order``: found (a webhook may have
    recorded it first) or added, as not paid yet: only `take_payment` counts money, so a
    PaymentIntent that has already succeeded is applied by whoever applies its state."""
    payment = await repository.by_intent(session, intent.id)
    if payment is None:
        now = datetime.now(UTC)
        payment = Payment(
            id=new_id("pay"),
            order_id=order.id,
            provider=PaymentProvider.STRIPE.value,
            status="requires_payment",
            amount=intent.amount,
            amount_received=0,
            currency=intent.currency,
            intent_id=intent.id,
            client_secret=intent.client_secret,
            created_at=now,
            updated_at=now,
        )
        repository.add(session, payment)
        await orders_repository.flush(session)
    elif payment.client_secret is None and intent.client_secret is not None:
        payment.client_secret = intent.client_secret
    return payment


async def payment_intent(
    checkout: Checkout, *, viewer: Principal, order_id: str
) -> PaymentIntentRead:
    deadline = time.monotonic() + checkout.wait_seconds
    while True:
        claimed = await _claim(checkout, viewer, order_id)
        if isinstance(claimed, PaymentIntentRead):
            return claimed
        if claimed is not None:
            break
        if time.monotonic() >= deadline:
            raise PaymentInProgress(
                f"Another request is asking Stripe for order {order_id}'s payment."
            )
        await asyncio.sleep(_POLL_SECONDS)
    try:
        intent = await checkout.gateway.create_intent(
            amount=claimed.amount,
            currency=claimed.currency,
            order_id=claimed.order_id,
            idempotency_key=provider_key(
                "payment_intent",
                claimed.order_id,
                str(claimed.amount),
                claimed.currency,
                str(claimed.attempt),
            ),
        )
    except ProviderUnavailable as exc:
        await _release(checkout, claimed.order_id)
        raise PaymentProviderUnavailable(
            f"Stripe did not create the PaymentIntent for order {order_id}: {exc}"
        ) from exc
    except ProviderRefused as exc:
        # The request itself (an amount below Stripe's minimum, a currency the account
        # does not take): asking again will not help.
        await _release(checkout, claimed.order_id)
        raise PaymentRefused(
            f"Stripe refused a PaymentIntent for order {order_id}: {exc}",
            provider_code=exc.code,
        ) from exc
    except BaseException:
        await asyncio.shield(_release(checkout, claimed.order_id))
        raise
    async with checkout.database.transaction() as session:
        order = await orders_repository.get_for_update(session, claimed.order_id)
        assert order is not None
        order.payment_lease_until = None
        payment = await record_intent(session, order, intent)
        if viewer.is_staff:
            await record_intent_audit(session, actor=viewer, order=order, payment=payment)
        status = OrderStatus(order.status)
        if status is OrderStatus.PENDING_PAYMENT or payment.status == "succeeded":
            # Still to pay, or paid through this very PaymentIntent meanwhile.
            return _read(payment)
    # Cancelled (or paid) while Stripe was asked: the new PaymentIntent must not be paid.
    # Should the customer pay it regardless, the payment is refunded (see stripe_events).
    try:
        await checkout.gateway.cancel_intent(intent.id)
    except (ProviderUnavailable, ProviderRefused) as exc:
        log.warning("payment_intent_not_cancelled", intent_id=intent.id, reason=str(exc))
    raise InvalidStateTransition(from_status=status, event=OrderEvent.PAYMENT_SUCCEEDED)
