"""Comparing Stripe's PaymentIntents with what Stockflow recorded (``stockflow payments
reconcile``): a webhook that never arrived must not become a lost payment.

Each recent PaymentIntent that names one of this service's Stripe orders is compared with
that order's payment; other PaymentIntents on the account are left alone. With
``repair``, a difference is applied exactly as the worker applies an event: from what
Stripe says now, under the order's row lock, so repairing twice changes nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from stockflow.adapters.stripe_gateway import Intent, StripeGateway
from stockflow.db.engine import Database
from stockflow.orders import repository as orders_repository
from stockflow.payments import repository
from stockflow.payments.rules import PaymentProvider, payment_state_of_intent
from stockflow.payments.stripe_events import apply_intent


@dataclass(frozen=True, slots=True)
class Difference:
    intent_id: str
    order_id: str | None
    stripe_status: str
    recorded: str
    """The payment's status here (``missing`` when there is none), or why it cannot be
    compared."""
    order_status: str | None
    repaired: bool


async def _compare(database: Database, intent: Intent, repair: bool) -> Difference | None:
    wanted = payment_state_of_intent(intent.status, failed=intent.failure_message is not None)
    async with database.transaction(write=repair) as session:
        order = (
            await orders_repository.get_for_update(session, intent.order_id)
            if intent.order_id is not None
            else None
        )
        if order is None or order.payment_provider != PaymentProvider.STRIPE:
            # Not one of this service's (another system on the same Stripe account).
            return None
        payment = await repository.by_intent(session, intent.id)
        recorded = payment.status if payment is not None else "missing"
        if recorded == wanted or (recorded == "missing" and wanted == "requires_payment"):
            return None
        if recorded == "succeeded":
            # Paid here stays paid: Stripe showing otherwise is for a person to look at.
            return Difference(intent.id, order.id, intent.status, recorded, order.status, False)
        status_before = order.status
        if repair:
            await apply_intent(session, order, intent, datetime.now(UTC))
        return Difference(intent.id, order.id, intent.status, recorded, status_before, repair)


async def reconcile(
    database: Database, gateway: StripeGateway, *, since: datetime, repair: bool
) -> list[Difference]:
    differences = []
    async for intent in gateway.intents_since(int(since.timestamp())):
        found = await _compare(database, intent, repair)
        if found is not None:
            differences.append(found)
    return differences
