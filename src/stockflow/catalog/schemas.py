from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import Field, StrictBool, StringConstraints, ValidationInfo, field_validator
from pydantic_extra_types.currency_code import ISO4217

from stockflow.api.schemas import JsonObject, Omittable, ReadModel, WriteModel
from stockflow.inventory.policy import MAX_BUFFER_PCT, ShortagePolicy
from stockflow.purchasing.schemas import SupplierProductCreate

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

BufferPct = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=MAX_BUFFER_PCT,
        description="Extra percentage ordered on top of the backlog (backorder policy).",
    ),
]
StockLevelSetting = Annotated[int, Field(strict=True, ge=0, le=2**31 - 1)]


def check_reorder_levels(point: int | None, up_to: int | None) -> None:
    if up_to is not None and point is None:
        raise ValueError("reorder_up_to needs a reorder_point")
    if point is not None and up_to is not None and up_to < point:
        raise ValueError("reorder_up_to must be at least reorder_point")


_SERVER_OWNED = frozenset(
    {"id", "created_at", "updated_at", "version", "backordered", "on_order", "etag"}
)


class ProductCreate(WriteModel):
    """A sellable SKU. The SKU is its permanent key: it cannot be changed later."""

    read_only_fields: ClassVar[frozenset[str]] = _SERVER_OWNED
    # What `check_reorder_levels` requires that JSON Schema can say (not that the bound is at
    # least the point).
    json_schema_rules: ClassVar[dict[str, Any]] = {
        "if": {"properties": {"reorder_up_to": {"type": "integer"}}, "required": ["reorder_up_to"]},
        "then": {
            "properties": {"reorder_point": {"type": "integer"}},
            "required": ["reorder_point"],
        },
    }

    sku: Sku = Field(examples=["MUG-BLUE-330"])
    name: ProductName = Field(examples=["Blue mug, 330 ml"])
    description: str | None = Field(default=None, max_length=5000)
    unit_price: MinorUnits = Field(examples=[1290])
    currency: ISO4217 = Field(examples=["EUR"], description="ISO 4217 code.")
    active: StrictBool = Field(default=True, description="Inactive products cannot be ordered.")
    metadata: JsonObject = Field(default_factory=dict)
    shortage_policy: ShortagePolicy | None = Field(
        default=None,
        description=(
            "`reject` refuses an order that asks for more than is available; `backorder` "
            "accepts it and orders the difference plus the buffer from the preferred "
            "supplier. Omitted: the deployment's STOCKFLOW_DEFAULT_SHORTAGE_POLICY."
        ),
        examples=["backorder"],
    )
    replenish_buffer_pct: BufferPct = 20
    reorder_point: StockLevelSetting | None = Field(
        default=None,
        description="Order more when available + on order - backordered falls below this.",
    )
    reorder_up_to: StockLevelSetting | None = Field(
        default=None, description="Level a reorder-point order fills up to (default: the point)."
    )
    low_stock_threshold: StockLevelSetting | None = Field(
        default=None,
        description=(
            "A `stock.low` event is sent when an order or an adjustment takes available "
            "stock at the default location from above this to this or below."
        ),
        examples=[5],
    )
    suppliers: list[SupplierProductCreate] = Field(
        default_factory=list,
        max_length=20,
        description="Suppliers of this product and their terms, added with it.",
    )

    @field_validator("suppliers")
    @classmethod
    def _one_entry_per_supplier(
        cls, value: list[SupplierProductCreate]
    ) -> list[SupplierProductCreate]:
        seen: set[str] = set()
        for entry in value:
            if entry.supplier_id in seen:
                raise ValueError(f"supplier {entry.supplier_id} is listed twice")
            seen.add(entry.supplier_id)
        return value

    @field_validator("reorder_up_to")
    @classmethod
    def _reorder_levels(cls, value: int | None, info: ValidationInfo) -> int | None:
        # A field validator, so that the error names body.reorder_up_to as PATCH does (a
        # model validator's error would name the whole body). A reorder_point that failed
        # its own validation is absent here and already reported.
        if "reorder_point" in info.data:
            check_reorder_levels(info.data["reorder_point"], value)
        return value


class ProductUpdate(WriteModel):
    """Fields to change; omitted fields stay as they are. There is no delete: deactivate."""

    read_only_fields: ClassVar[frozenset[str]] = _SERVER_OWNED | {"sku"}

    name: Omittable[ProductName] = None
    description: str | None = Field(default=None, max_length=5000)
    unit_price: Omittable[MinorUnits] = None
    currency: Omittable[ISO4217] = None
    active: Omittable[StrictBool] = Field(default=None, examples=[False])
    metadata: Omittable[JsonObject] = None
    shortage_policy: Omittable[ShortagePolicy] = None
    replenish_buffer_pct: Omittable[BufferPct] = None
    reorder_point: StockLevelSetting | None = Field(
        default=None, description="null removes the reorder point (and reorder_up_to)."
    )
    reorder_up_to: StockLevelSetting | None = None
    low_stock_threshold: StockLevelSetting | None = Field(
        default=None, description="null removes the threshold (no more `stock.low`)."
    )


class ProductRead(ReadModel):
    id: str = Field(examples=["prod_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    sku: str = Field(examples=["MUG-BLUE-330"])
    name: str
    description: str | None
    unit_price: int = Field(examples=[1290])
    currency: str = Field(examples=["EUR"])
    active: bool
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    shortage_policy: ShortagePolicy
    replenish_buffer_pct: int
    reorder_point: int | None
    reorder_up_to: int | None
    low_stock_threshold: int | None
    version: int = Field(description="Changes on every update; the ETag is built from it.")
    created_at: datetime
    updated_at: datetime
