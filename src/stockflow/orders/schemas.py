from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, ClassVar

from pydantic import Field

from stockflow.api.schemas import JsonObject, ReadModel, WriteModel
from stockflow.catalog.schemas import Sku
from stockflow.orders.states import FulfilmentFlag, OrderStatus
from stockflow.payments.rules import PaymentStatus

MAX_AMOUNT = 10**12
Money = Annotated[
    int,
    Field(strict=True, ge=0, le=MAX_AMOUNT, description="Minor units of the order's currency."),
]


class LineCreate(WriteModel):
    sku: Sku = Field(examples=["MUG-BLUE-330"])
    quantity: int = Field(
        strict=True,
        description="Units wanted: at least 1, at most the per-line maximum (after merging).",
        examples=[2],
    )


class OrderCreate(WriteModel):
    """An order as a storefront sends it. Lines for the same SKU are merged into one;
    subtotal and total are computed, never sent."""

    read_only_fields: ClassVar[frozenset[str]] = frozenset(
        {"id", "status", "subtotal", "total", "currency", "created_at", "updated_at", "fulfilment"}
    )

    customer_id: str | None = Field(
        default=None,
        max_length=40,
        description=(
            "Required for admin, staff and service keys. A customer key orders for its own "
            "customer: omit it or give its own id."
        ),
        examples=["cus_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"],
    )
    lines: list[LineCreate] = Field(
        min_length=1,
        # The deployment's own limit (STOCKFLOW_MAX_LINES_PER_ORDER) is checked after
        # parsing; this hard cap keeps a huge list from being validated at all.
        max_length=1000,
        description="At most the per-order maximum of lines (STOCKFLOW_MAX_LINES_PER_ORDER).",
        examples=[[{"sku": "MUG-BLUE-330", "quantity": 2}, {"sku": "COASTER-4", "quantity": 1}]],
    )
    shipping_amount: Money = Field(default=0, examples=[490])
    tax_amount: Money = Field(default=0, examples=[0])
    discount_amount: Money = Field(
        default=0,
        description=(
            "Set by the storefront (admin, staff and service keys): a customer key may not "
            "grant itself a discount."
        ),
        examples=[0],
    )
    metadata: JsonObject = Field(
        default_factory=dict, description="Free-form data kept with the order."
    )


class OrderLineRead(ReadModel):
    sku: str = Field(examples=["MUG-BLUE-330"])
    quantity: int = Field(examples=[2])
    unit_price: int = Field(examples=[1290])
    line_total: int = Field(examples=[2580])
    allocated: int = Field(description="Units covered by reserved stock.", examples=[2])
    backordered: int = Field(description="Units waiting for stock.", examples=[0])
    shipped: int = Field(description="Units shipped (out of the allocated ones).", examples=[0])
    expected_available_date: date | None = Field(
        default=None,
        description=(
            "For a line with backordered units: the date on which incoming purchase orders "
            "cover its place in the queue (oldest order first). Null when nothing waits, or "
            "when what is on order does not reach it yet."
        ),
        examples=["2026-12-10"],
    )


class OrderRead(ReadModel):
    id: str = Field(examples=["ord_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    customer_id: str
    status: OrderStatus
    fulfilment: FulfilmentFlag = Field(
        description="`awaiting_stock` while any line has backordered units, else `ready_to_ship`."
    )
    currency: str = Field(examples=["EUR"])
    subtotal: int = Field(examples=[3270])
    shipping_amount: int = Field(examples=[490])
    tax_amount: int = Field(examples=[0])
    discount_amount: int = Field(examples=[0])
    total: int = Field(examples=[3760])
    payment_status: PaymentStatus = Field(
        description=(
            "`not_required` when no payment provider is on (the order was confirmed at "
            "once); else `unpaid`, `partially_paid`, `paid`, `partially_refunded` or "
            "`refunded`."
        ),
        examples=["paid"],
    )
    amount_paid: int = Field(description="Minor units taken for this order.", examples=[3760])
    amount_refunded: int = Field(
        description="Minor units refunded or being refunded (never more than was paid).",
        examples=[0],
    )
    lines: list[OrderLineRead]
    metadata: dict[str, Any]
    cancel_reason: str | None
    created_at: datetime
    updated_at: datetime
    cancelled_at: datetime | None


class ShipmentLineCreate(WriteModel):
    sku: Sku = Field(examples=["MUG-BLUE-330"])
    quantity: int = Field(strict=True, ge=1, examples=[2])


class ShipmentCreate(WriteModel):
    """Units leaving the warehouse for this order; lines for one SKU are merged."""

    lines: list[ShipmentLineCreate] = Field(min_length=1, max_length=1000)


class ShipmentLineRead(ReadModel):
    sku: str
    quantity: int


class ShipmentRead(ReadModel):
    id: str = Field(examples=["shp_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    order_id: str
    lines: list[ShipmentLineRead]
    created_at: datetime
    order: OrderRead = Field(description="The order after this shipment.")


class CancelRequest(WriteModel):
    reason: str = Field(min_length=1, max_length=500, examples=["customer changed their mind"])


class PreviewLine(ReadModel):
    sku: str = Field(examples=["MUG-BLUE-330"])
    quantity: int = Field(examples=[50])
    unit_price: int = Field(examples=[1290])
    line_total: int = Field(examples=[64500])
    allocated: int = Field(description="Units that would be reserved now.", examples=[30])
    backordered: int = Field(description="Units that would wait for stock.", examples=[20])
    expected_available_date: date | None = Field(
        description="When the backordered units would be covered, as on an order line.",
        examples=["2026-12-10"],
    )


class PlannedPurchaseLine(ReadModel):
    """A quantity placing the order would add to a purchase order, and why."""

    supplier_id: str = Field(examples=["sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    sku: str = Field(examples=["MUG-BLUE-330"])
    supplier_sku: str = Field(examples=["AC-MUG-330-BL"])
    quantity: int = Field(examples=[24])
    cost_price: int = Field(examples=[540])
    currency: str = Field(examples=["EUR"])
    reason: str = Field(description="`backorder` or `reorder_point`.", examples=["backorder"])
    explanation: dict[str, Any] = Field(
        description=(
            "The rule's figures: backlog (B), on_order (O), buffer_pct, target, need, "
            "pack_size, min_order_qty and the resulting quantity; for a reorder point also "
            "available, reorder_point, reorder_up_to and position."
        ),
        examples=[
            {
                "kind": "backorder",
                "backlog": 20,
                "on_order": 0,
                "buffer_pct": 20,
                "target": 24,
                "need": 24,
                "pack_size": 1,
                "min_order_qty": 1,
                "quantity": 24,
            }
        ],
    )


class OrderPreview(ReadModel):
    """What placing the order would do now. Nothing is reserved, ordered or stored."""

    customer_id: str = Field(examples=["cus_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    fulfilment: FulfilmentFlag
    currency: str = Field(examples=["EUR"])
    subtotal: int = Field(examples=[64500])
    shipping_amount: int = Field(examples=[490])
    tax_amount: int = Field(examples=[0])
    discount_amount: int = Field(examples=[0])
    total: int = Field(examples=[64990])
    lines: list[PreviewLine]
    purchase_order_lines: list[PlannedPurchaseLine] | None = Field(
        description=(
            "What would be ordered from suppliers, with explanations. Shown to staff and "
            "admin keys only; null for customer and service keys."
        )
    )
