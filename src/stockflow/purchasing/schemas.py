from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import AnyHttpUrl, EmailStr, Field, field_validator
from pydantic_extra_types.currency_code import ISO4217

from stockflow.api.schemas import ReadModel, WriteModel

MAX_COST = 10**12
LeadTime = Annotated[int, Field(strict=True, ge=0, le=365, description="Days.")]


class ManualConnector(WriteModel):
    """Staff pass purchase orders on themselves (phone, portal)."""

    type: Literal["manual"] = "manual"


class EmailConnector(WriteModel):
    """Purchase orders are e-mailed to this address."""

    type: Literal["email"]
    to: EmailStr = Field(examples=["orders@supplier.example"])


class WebhookConnector(WriteModel):
    """Purchase orders are posted, signed, to the supplier's endpoint."""

    type: Literal["webhook"]
    url: AnyHttpUrl = Field(examples=["https://supplier.example/stockflow/po"])


Connector = Annotated[
    ManualConnector | EmailConnector | WebhookConnector, Field(discriminator="type")
]

_SERVER_OWNED = frozenset({"id", "version", "created_at", "updated_at", "etag"})


class SupplierCreate(WriteModel):
    """Someone we buy from, and how purchase orders reach them."""

    read_only_fields: ClassVar[frozenset[str]] = _SERVER_OWNED

    name: str = Field(min_length=1, max_length=200, examples=["Stoneware Bros."])
    contact_email: EmailStr | None = Field(default=None, examples=["sales@supplier.example"])
    lead_time_days: LeadTime = Field(default=7, examples=[7])
    connector: Connector = Field(
        default_factory=ManualConnector,
        description="How a purchase order reaches the supplier: manual, email or webhook.",
        examples=[{"type": "email", "to": "orders@supplier.example"}],
    )
    active: bool = True


class SupplierUpdate(WriteModel):
    """Fields to change; omitted fields stay as they are."""

    read_only_fields: ClassVar[frozenset[str]] = _SERVER_OWNED

    name: str | None = Field(default=None, min_length=1, max_length=200)
    contact_email: EmailStr | None = None
    lead_time_days: LeadTime | None = None
    connector: Connector | None = None
    active: bool | None = Field(default=None, examples=[False])

    @field_validator("name", "lead_time_days", "connector", "active", mode="before")
    @classmethod
    def _no_null_for_required(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null; omit the field to leave it unchanged")
        return value


class SupplierRead(ReadModel):
    id: str = Field(examples=["sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    name: str
    contact_email: str | None
    lead_time_days: int
    connector: dict[str, str]
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime


class SupplierProductCreate(WriteModel):
    """The terms on which a supplier sells us a product."""

    read_only_fields: ClassVar[frozenset[str]] = _SERVER_OWNED | {"sku", "preferred"}

    supplier_id: str = Field(max_length=40, examples=["sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    supplier_sku: str = Field(min_length=1, max_length=100, examples=["SB-MUG-330-BL"])
    cost_price: int = Field(strict=True, ge=0, le=MAX_COST, examples=[540])
    currency: ISO4217 = Field(examples=["EUR"])
    pack_size: int = Field(default=1, strict=True, ge=1, le=1_000_000, examples=[12])
    min_order_qty: int = Field(default=1, strict=True, ge=1, le=1_000_000, examples=[24])
    lead_time_days: LeadTime | None = Field(
        default=None, description="Overrides the supplier's lead time for this product."
    )
    priority: int = Field(
        default=0,
        strict=True,
        ge=-1000,
        le=1000,
        description="The highest priority is the preferred supplier.",
        examples=[10],
    )


class SupplierProductUpdate(WriteModel):
    read_only_fields: ClassVar[frozenset[str]] = _SERVER_OWNED | {"sku", "supplier_id", "preferred"}

    supplier_sku: str | None = Field(default=None, min_length=1, max_length=100)
    cost_price: int | None = Field(default=None, strict=True, ge=0, le=MAX_COST)
    currency: ISO4217 | None = None
    pack_size: int | None = Field(default=None, strict=True, ge=1, le=1_000_000)
    min_order_qty: int | None = Field(default=None, strict=True, ge=1, le=1_000_000)
    lead_time_days: LeadTime | None = None
    priority: int | None = Field(default=None, strict=True, ge=-1000, le=1000)

    @field_validator(
        "supplier_sku",
        "cost_price",
        "currency",
        "pack_size",
        "min_order_qty",
        "priority",
        mode="before",
    )
    @classmethod
    def _no_null_for_required(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null; omit the field to leave it unchanged")
        return value


class SupplierProductRead(ReadModel):
    id: str = Field(examples=["spr_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    sku: str
    supplier_id: str
    supplier_sku: str
    cost_price: int
    currency: str
    pack_size: int
    min_order_qty: int
    lead_time_days: int | None
    priority: int
    preferred: bool = Field(description="True for the supplier with the highest priority.")
    version: int = Field(
        description="Changes on every update of these terms; the ETag is built from it."
    )
    created_at: datetime
    updated_at: datetime
