from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from stockflow.api.schemas import ReadModel, WriteModel


class SupplierMessage(WriteModel):
    """What a supplier tells us about one of our purchase orders, signed with its secret
    (Standard Webhooks headers; `webhook-id` is the message's id, kept once)."""

    type: Literal["purchase_order.acknowledged", "purchase_order.shipped"] = Field(
        description=(
            "`purchase_order.acknowledged`: the order is confirmed, with the date it will "
            "arrive; `purchase_order.shipped`: it left the supplier (a shipment notice), "
            "optionally with a revised date."
        ),
        examples=["purchase_order.acknowledged"],
    )
    purchase_order_id: str = Field(
        min_length=1, max_length=40, examples=["po_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"]
    )
    expected_delivery_date: date | None = Field(
        default=None,
        description="Required for an acknowledgement.",
        examples=["2030-01-15"],
    )
    note: str | None = Field(default=None, max_length=2000, examples=["Tracking 1Z999"])


class InboundAccepted(ReadModel):
    id: str = Field(description="The message's id (its `webhook-id`).")
    duplicate: bool = Field(
        description="true when this id was received before: it is applied once."
    )


class SigningSecret(ReadModel):
    secret: str | None = Field(
        description="The supplier's signing secret (`whsec_...`), shown once. Null in an "
        "idempotent replay."
    )
    previous_secret_expires_at: datetime | None = Field(
        description="The previous secret, if there was one, is honoured until then."
    )
