"""The audit trail as the API shows it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from stockflow.api.schemas import ReadModel


class AuditEventRead(ReadModel):
    """One mutation: who made it, to what, and the resource before and after."""

    id: str = Field(examples=["aud_01M8M8WNG3AE6GMWHADDX8NDAW"])
    actor_id: str = Field(
        description="The API key that made the change, or `cli` for the command line.",
        examples=["key_01M8M8WJRN7MJ77A25NW2G7KBJ"],
    )
    actor_role: str = Field(examples=["staff"])
    action: str = Field(examples=["product.updated"])
    resource_type: str = Field(examples=["product"])
    resource_id: str = Field(description="Its id (a product's SKU).", examples=["MUG-GREY-330"])
    before: dict[str, Any] | None = Field(
        description="The resource as the API showed it before; null for a creation.",
        examples=[{"sku": "MUG-GREY-330", "unit_price": 1290}],
    )
    after: dict[str, Any] | None = Field(
        description="The resource as the API showed it after.",
        examples=[{"sku": "MUG-GREY-330", "unit_price": 1490}],
    )
    request_id: str | None = Field(
        description="The request that made it (its `X-Request-ID`).",
        examples=["req_4dd644f1bfdee6aa9ba9ed75"],
    )
    created_at: datetime
