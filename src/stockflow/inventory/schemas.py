from __future__ import annotations

from datetime import datetime

from pydantic import Field, field_validator

from stockflow.api.schemas import ReadModel, WriteModel

MAX_ADJUSTMENT = 1_000_000_000


class LocationStock(ReadModel):
    location_id: str = Field(examples=["loc_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    location: str = Field(description="Location code.", examples=["default"])
    on_hand: int = Field(description="Physically there.", examples=[40])
    reserved: int = Field(description="Promised to open orders, not shipped.", examples=[12])
    available: int = Field(description="on_hand - reserved.", examples=[28])


class InventoryRead(ReadModel):
    """Stock of one product, summed over locations, with the per-location rows."""

    sku: str = Field(examples=["MUG-BLUE-330"])
    on_hand: int = Field(examples=[40])
    reserved: int = Field(examples=[12])
    available: int = Field(examples=[28])
    backordered: int = Field(
        description="Open order quantities not yet covered by stock.", examples=[0]
    )
    on_order: int = Field(
        description="Open purchase-order quantities not yet received.", examples=[0]
    )
    locations: list[LocationStock]


class AvailabilityRead(ReadModel):
    """What a customer may know of stock: how many can be ordered now."""

    sku: str = Field(examples=["MUG-BLUE-330"])
    available: int = Field(examples=[28])


class AdjustmentCreate(WriteModel):
    """A manual correction of stock on hand: a count, damage, a delivery outside a PO."""

    delta: int = Field(
        strict=True,
        ge=-MAX_ADJUSTMENT,
        le=MAX_ADJUSTMENT,
        description="Units added (positive) or removed (negative); not zero.",
        examples=[24],
        json_schema_extra={"not": {"const": 0}},
    )
    reason: str = Field(
        min_length=1,
        max_length=500,
        description="Why, in words; kept in the ledger.",
        examples=["cycle count 2026-11-29"],
    )
    location: str | None = Field(
        default=None,
        max_length=64,
        description="Location code; the default location when omitted.",
        examples=["default"],
    )

    @field_validator("delta")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("delta must not be zero")
        return value


class MovementRead(ReadModel):
    """One ledger entry: how one stock row changed, why, and who did it."""

    id: str = Field(examples=["mov_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    location_id: str
    on_hand_delta: int = Field(examples=[24])
    reserved_delta: int = Field(examples=[0])
    on_hand_after: int = Field(examples=[64])
    reserved_after: int = Field(examples=[12])
    reason: str = Field(examples=["adjustment"])
    note: str | None = Field(examples=["cycle count 2026-11-29"])
    actor: str = Field(description="Id of the API key (or `cli`) that caused it.")
    order_id: str | None
    purchase_order_id: str | None
    created_at: datetime


class AdjustmentRead(ReadModel):
    movement: MovementRead
    inventory: InventoryRead
