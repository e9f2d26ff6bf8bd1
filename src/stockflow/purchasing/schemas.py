from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import AnyHttpUrl, Field, StrictBool
from pydantic_extra_types.currency_code import ISO4217

from stockflow.api.schemas import Email, Omittable, ReadModel, WriteModel

MAX_COST = 10**12
LeadTime = Annotated[int, Field(strict=True, ge=0, le=365, description="Days.")]
SupplierName = Annotated[str, Field(min_length=1, max_length=200)]
SupplierSku = Annotated[str, Field(min_length=1, max_length=100)]
CostPrice = Annotated[int, Field(strict=True, ge=0, le=MAX_COST)]
PackSize = Annotated[int, Field(strict=True, ge=1, le=1_000_000)]
MinOrderQty = Annotated[int, Field(strict=True, ge=1, le=1_000_000)]
Priority = Annotated[int, Field(strict=True, ge=-1000, le=1000)]


class ManualConnector(WriteModel):
    """Staff pass purchase orders on themselves (phone, portal)."""

    # No default: a connector without its `type` is refused, whichever it would be.
    type: Literal["manual"]


class EmailConnector(WriteModel):
    """Purchase orders are e-mailed to this address."""

    type: Literal["email"]
    to: Email = Field(examples=["orders@supplier.example"])


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

    name: SupplierName = Field(examples=["Stoneware Bros."])
    contact_email: Email | None = Field(default=None, examples=["sales@supplier.example"])
    lead_time_days: LeadTime = Field(default=7, examples=[7])
    connector: Connector = Field(
        default_factory=lambda: ManualConnector(type="manual"),
        description="How a purchase order reaches the supplier: manual, email or webhook.",
        examples=[{"type": "email", "to": "orders@supplier.example"}],
    )
    active: StrictBool = True


class SupplierUpdate(WriteModel):
    """Fields to change; omitted fields stay as they are."""

    read_only_fields: ClassVar[frozenset[str]] = _SERVER_OWNED

    name: Omittable[SupplierName] = None
    contact_email: Email | None = None
    lead_time_days: Omittable[LeadTime] = None
    connector: Omittable[Connector] = None
    active: Omittable[StrictBool] = Field(default=None, examples=[False])


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
    supplier_sku: SupplierSku = Field(examples=["SB-MUG-330-BL"])
    cost_price: CostPrice = Field(examples=[540])
    currency: ISO4217 = Field(examples=["EUR"])
    pack_size: PackSize = Field(default=1, examples=[12])
    min_order_qty: MinOrderQty = Field(default=1, examples=[24])
    lead_time_days: LeadTime | None = Field(
        default=None, description="Overrides the supplier's lead time for this product."
    )
    priority: Priority = Field(
        default=0,
        description="The highest priority is the preferred supplier.",
        examples=[10],
    )


class SupplierProductUpdate(WriteModel):
    read_only_fields: ClassVar[frozenset[str]] = _SERVER_OWNED | {"sku", "supplier_id", "preferred"}

    supplier_sku: Omittable[SupplierSku] = None
    cost_price: Omittable[CostPrice] = None
    currency: Omittable[ISO4217] = None
    pack_size: Omittable[PackSize] = None
    min_order_qty: Omittable[MinOrderQty] = None
    lead_time_days: LeadTime | None = None
    priority: Omittable[Priority] = None


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
