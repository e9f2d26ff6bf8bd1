from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field, model_validator

from stockflow.api.schemas import ReadModel, UtcTimestamp, WriteModel
from stockflow.auth.roles import Role


class ApiKeyCreate(WriteModel):
    """A new API key. A `customer` key is bound to exactly one customer."""

    read_only_fields: ClassVar[frozenset[str]] = frozenset(
        {
            "id",
            "created_at",
            "prefix",
            "key",
            "last_used_at",
            "revoked_at",
            "created_by",
            "replaced_by",
        }
    )
    json_schema_rules: ClassVar[dict[str, Any]] = {
        "if": {"properties": {"role": {"const": Role.CUSTOMER.value}}, "required": ["role"]},
        "then": {"required": ["customer_id"], "properties": {"customer_id": {"type": "string"}}},
        "else": {"properties": {"customer_id": {"type": "null"}}},
    }

    name: str = Field(min_length=1, max_length=200, examples=["Storefront backend"])
    role: Role = Field(examples=["service"])
    customer_id: str | None = Field(
        default=None,
        max_length=40,
        description="Required for the `customer` role, refused for the others.",
        examples=[None],
    )
    expires_at: UtcTimestamp | None = Field(
        default=None,
        description="When the key stops working (in the future). Omitted: it works until "
        "revoked or rotated.",
        examples=["2027-06-30T00:00:00Z"],
    )

    @model_validator(mode="after")
    def _customer_binding(self) -> ApiKeyCreate:
        if self.role is Role.CUSTOMER and self.customer_id is None:
            raise ValueError("a customer key needs customer_id")
        if self.role is not Role.CUSTOMER and self.customer_id is not None:
            raise ValueError("only a customer key takes customer_id")
        return self


class ApiKeyRead(ReadModel):
    """An API key as listed: never the key itself, only its first characters."""

    id: str = Field(examples=["key_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    name: str
    role: Role
    customer_id: str | None
    prefix: str = Field(description="First characters of the key.", examples=["sf_4fQz8Lm"])
    created_by: str
    created_at: datetime
    last_used_at: datetime | None = Field(
        description="Updated at most once a minute, so it may lag by up to a minute."
    )
    revoked_at: datetime | None
    expires_at: datetime | None = Field(
        description="When the key stops working: as created, or the end of a rotation's "
        "grace period. Null: until revoked.",
        examples=[None],
    )
    replaced_by: str | None = Field(
        description="The key that replaced this one in a rotation.", examples=[None]
    )


class ApiKeyRotate(WriteModel):
    """How long the rotated key keeps working beside its replacement."""

    grace_seconds: int = Field(
        default=86_400,
        ge=0,
        le=30 * 86_400,
        description="Seconds the old key stays valid (0: refused at once; at most 30 days).",
        examples=[3600],
    )


class ApiKeyCreated(ApiKeyRead):
    """The new key, with its secret. The secret is shown here once and never again."""

    key: str | None = Field(
        description="The key itself. Null in an idempotent replay: a secret is shown once.",
        examples=["sf_Xc9fQz8LmT2bV5nK7pR1sW3yH6jD4gA0ab12Cd"],
    )
