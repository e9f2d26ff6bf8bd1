"""The rules about an order's money. Pure: no web, database or provider imports."""

from __future__ import annotations

import hashlib
from enum import StrEnum


class PaymentProvider(StrEnum):
    NONE = "none"
    MANUAL = "manual"
    STRIPE = "stripe"


class PaymentStatus(StrEnum):
    """An order's payment state, beside its status (DESIGN §1)."""

    NOT_REQUIRED = "not_required"
    UNPAID = "unpaid"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


def payment_required(provider: PaymentProvider, total: int) -> bool:
    """Whether a new order waits for its payment: only with a provider, and only when there
    is something to pay (an order of total 0 is confirmed at once)."""
    return provider is not PaymentProvider.NONE and total > 0


def payment_status(
    *, provider: PaymentProvider, total: int, amount_paid: int, amount_refunded: int
) -> PaymentStatus:
    if amount_refunded > 0:
        return (
            PaymentStatus.REFUNDED
            if amount_refunded >= amount_paid
            else PaymentStatus.PARTIALLY_REFUNDED
        )
    if amount_paid > 0:
        return PaymentStatus.PAID if amount_paid >= total else PaymentStatus.PARTIALLY_PAID
    if not payment_required(provider, total):
        return PaymentStatus.NOT_REQUIRED
    return PaymentStatus.UNPAID


def still_due(*, total: int, amount_paid: int) -> int:
    return max(total - amount_paid, 0)


def refundable(*, amount_paid: int, amount_refunded: int) -> int:
    """What may still be refunded: refunds in progress already count against it."""
    return max(amount_paid - amount_refunded, 0)


def unshipped_value(
    lines: list[tuple[int, int, int]], *, subtotal: int, total: int, shipping_amount: int
) -> int:
    """What cancelling a partly shipped order refunds, from (quantity, shipped, unit_price)
    per line: the unshipped units' share of what was charged for the goods (the total less
    shipping, so discount and tax are shared out over the lines as the units are), rounded
    down. Shipping is not refunded: something was shipped. The caller caps it at what is
    refundable; when nothing shipped, everything paid goes back."""
    unshipped = sum((quantity - shipped) * unit_price for quantity, shipped, unit_price in lines)
    if subtotal <= 0:
        return 0
    return unshipped * max(total - shipping_amount, 0) // subtotal


def provider_key(*parts: str) -> str:
    """An idempotency key for the payment provider, derived from what identifies the
    request: the same parts give the same key, and no caller's raw key is ever sent."""
    digest = hashlib.sha256("\x1f".join(("stockflow", *parts)).encode()).hexdigest()
    return f"sf-{digest[:48]}"


def payment_state_of_intent(intent_status: str, *, failed: bool = False) -> str:
    """A Stripe PaymentIntent's status as a payment's: what the customer still has to do is
    ``requires_payment`` (``failed`` when the last attempt was declined)."""
    if intent_status == "succeeded":
        return "succeeded"
    if intent_status in ("processing", "requires_capture"):
        return "processing"
    if intent_status == "canceled":
        return "cancelled"
    return "failed" if failed else "requires_payment"


OPEN_PAYMENT_STATES = frozenset({"requires_payment", "failed", "processing"})
"""A Stripe payment in one of these can still be paid through its PaymentIntent."""
