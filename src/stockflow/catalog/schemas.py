from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import Field, StringConstraints, field_validator
from pydantic_extra_types.currency_code import ISO4217

from stockflow.api.schemas import ReadModel, WriteModel

SKU_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
Sku = Annotated[str, StringConstraints(pattern=SKU_PATTERN)]
# products.unit_price is a BIGINT column; orders check that their totals stay inside 64 bits.
MAX_PRICE = 10**12

ProductName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
MinorUnits = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=MAX_PRICE,
        description="Price in the currency's minor units (cents for EUR and USD).",
    ),
]

_SERVER_OWNED = frozenset(
    {"id", "created_at", "updated_at", "version", "backordered", "on_order", "etag"}
)


class ProductCreate(WriteModel):
    """A sellable SKU. The SKU is its permanent key: it cannot be changed later."""

    read_only_fields: ClassVar[frozenset[str]] = _SERVER_OWNED

    sku: Sku = Field(examples=["MUG-BLUE-330"])
    name: ProductName = Field(examples=["Blue mug, 330 ml"])
    description: str | None = Field(default=None, max_length=5000)
    unit_price: MinorUnits = Field(examples=[1290])
    currency: ISO4217 = Field(examples=["EUR"], description="ISO 4217 code.")
    active: bool = Field(default=True, description="Inactive products cannot be ordered.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class ProductUpdate(WriteModel):
    """Fields to change; omitted fields stay as they are. There is no delete: deactivate."""

    read_only_fields: ClassVar[frozenset[str]] = _SERVER_OWNED | {"sku"}

    name: ProductName | None = None
    description: str | None = Field(default=None, max_length=5000)
    unit_price: MinorUnits | None = None
    currency: ISO4217 | None = None
    active: bool | None = Field(default=None, examples=[False])
    metadata: dict[str, Any] | None = None

    @field_validator("name", "unit_price", "currency", "active", "metadata", mode="before")
    @classmethod
    def _no_null_for_required(cls, value: Any) -> Any:
        # Omitted means "leave as is"; an explicit null would erase a required field. Checked
        # per field so that the error's location names the field (body.name).
        if value is None:
            raise ValueError("cannot be null; omit the field to leave it unchanged")
        return value


class ProductRead(ReadModel):
    id: str = Field(examples=["prod_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    sku: str = Field(examples=["MUG-BLUE-330"])
    name: str
    description: str | None
    unit_price: int = Field(examples=[1290])
    currency: str = Field(examples=["EUR"])
    active: bool
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    version: int = Field(description="Changes on every update; the ETag is built from it.")
    created_at: datetime
    updated_at: datetime
