from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from stockflow.api.schemas import Email, JsonObject, ReadModel, WriteModel


class CustomerCreate(WriteModel):
    """A customer who places orders, as the storefront knows them."""

    name: str = Field(min_length=1, max_length=200, examples=["Ada Lovelace"])
    email: Email | None = Field(default=None, examples=["ada@example.com"])
    phone: str | None = Field(default=None, max_length=40, examples=["+44 20 7946 0000"])
    external_ref: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The storefront's own id for this customer; unique.",
        examples=["shopify:7781"],
    )
    metadata: JsonObject = Field(
        default_factory=dict, description="Free-form data kept with the customer."
    )


class CustomerRead(ReadModel):
    id: str = Field(examples=["cus_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    name: str
    email: str | None
    phone: str | None
    external_ref: str | None
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    created_at: datetime
    updated_at: datetime
    erased_at: datetime | None = Field(
        description="When the customer's personal data was erased; null until then."
    )
