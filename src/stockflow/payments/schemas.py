from __future__ import annotations

from datetime import datetime

from pydantic import Field

from stockflow.api.schemas import ReadModel, WriteModel
from stockflow.orders.schemas import MAX_AMOUNT, OrderRead


class PaymentCreate(WriteModel):
    """An offline payment (bank transfer, cash, card terminal) staff took for an order."""

    amount: int = Field(
        strict=True,
        ge=1,
        le=MAX_AMOUNT,
        description="Minor units of the order's currency; at most what the order still owes.",
        examples=[3760],
    )
    reference: str = Field(
        min_length=1,
        max_length=200,
        description="Where the money can be found: a bank reference, a receipt number.",
        examples=["SEPA 2026-11-30 REF 88412"],
    )


class PaymentRead(ReadModel):
    id: str = Field(examples=["pay_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    order_id: str = Field(examples=["ord_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    provider: str = Field(description="`manual` or `stripe`.", examples=["manual"])
    status: str = Field(
        description=(
            "`requires_payment` (the customer has not paid yet), `processing`, `succeeded`, "
            "`failed` (the order can still be paid) or `cancelled`."
        ),
        examples=["succeeded"],
    )
    amount: int = Field(description="Minor units asked for.", examples=[3760])
    amount_received: int = Field(description="Minor units taken.", examples=[3760])
    currency: str = Field(examples=["EUR"])
    reference: str | None = Field(
        description="The offline payment's reference (`manual`).", examples=["SEPA REF 88412"]
    )
    intent_id: str | None = Field(
        description="The Stripe PaymentIntent (`stripe`).", examples=["pi_3QAbCdEfGhIjKlMn"]
    )
    failure_message: str | None = Field(
        description="Why the last attempt failed, as the provider put it.", examples=[None]
    )
    created_at: datetime
    updated_at: datetime


class RefundRead(ReadModel):
    id: str = Field(examples=["ref_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    order_id: str = Field(examples=["ord_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    payment_id: str | None = Field(examples=["pay_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    provider: str = Field(description="`manual` or `stripe`.", examples=["stripe"])
    status: str = Field(
        description="`pending` (sent, not yet settled), `succeeded` or `failed`.",
        examples=["succeeded"],
    )
    amount: int = Field(examples=[1290])
    currency: str = Field(examples=["EUR"])
    reason: str = Field(examples=["one mug arrived broken"])
    failure_message: str | None = Field(examples=[None])
    created_at: datetime
    updated_at: datetime


class OrderDetail(OrderRead):
    """An order with its payments and refunds, oldest first."""

    payments: list[PaymentRead]
    refunds: list[RefundRead]


class PaymentIntentRead(ReadModel):
    """What the storefront needs to take the payment with Stripe.js (Payment Element,
    Express Checkout for Google Pay and Apple Pay)."""

    payment_id: str = Field(examples=["pay_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    intent_id: str = Field(examples=["pi_3QAbCdEfGhIjKlMn"])
    client_secret: str = Field(
        description="Hand it to Stripe.js on the customer's device; never log it.",
        examples=["pi_3QAbCdEfGhIjKlMn_secret_4RsTuVwXyZ"],
    )
    amount: int = Field(description="Minor units to pay.", examples=[3760])
    currency: str = Field(examples=["EUR"])
    status: str = Field(
        description="The payment's status: `requires_payment` until the customer pays.",
        examples=["requires_payment"],
    )


class RefundCreate(WriteModel):
    amount: int = Field(
        strict=True,
        ge=1,
        le=MAX_AMOUNT,
        description="Minor units to give back; at most what was paid less earlier refunds.",
        examples=[1290],
    )
    reason: str = Field(min_length=1, max_length=500, examples=["one mug arrived broken"])
