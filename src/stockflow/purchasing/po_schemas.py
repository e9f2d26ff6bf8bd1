"""Purchase orders as the API shows and takes them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from pydantic import Field

from stockflow.api.schemas import ReadModel, WriteModel
from stockflow.catalog.schemas import Sku
from stockflow.purchasing.states import PurchaseOrderStatus

MAX_PO_QUANTITY = 1_000_000


class PurchaseOrderLineRead(ReadModel):
    id: str = Field(examples=["pol_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    sku: str = Field(examples=["MUG-BLUE-330"])
    supplier_sku: str = Field(examples=["AC-MUG-330-BL"])
    quantity: int = Field(description="Units ordered.", examples=[24])
    received: int = Field(
        description="Units received so far; more than `quantity` after an over-delivery.",
        examples=[0],
    )
    cost_price: int = Field(description="Minor units per unit.", examples=[540])
    currency: str = Field(examples=["EUR"])
    lead_time_days: int = Field(examples=[7])
    reason: str = Field(
        description="`backorder` or `reorder_point` (ordered by the rules) or `manual`.",
        examples=["backorder"],
    )
    explanation: dict[str, Any] | None = Field(
        description=(
            "How a rule chose the quantity: backlog (B), on_order (O), buffer_pct, target, "
            "need, pack_size, min_order_qty, quantity, and `caused_by`, the order lines (or "
            "the cancelled purchase order) that made it fire. Null for a manual line."
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
                "caused_by": [
                    {
                        "order_id": "ord_01KB3J5Q2W8Z6Y4X0V9T7S5R3P",
                        "order_line_id": "oli_01KB3J5Q2W8Z6Y4X0V9T7S5R3Q",
                        "backordered": 20,
                    }
                ],
            }
        ],
    )
    expected_arrival: date = Field(
        description=(
            "The acknowledged delivery date, else the submission plus the lead time. A "
            "replenishment draft counts from its planned submission; a manual draft as if "
            "submitted today."
        ),
        examples=["2026-12-07"],
    )


class PurchaseOrderRead(ReadModel):
    id: str = Field(examples=["po_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    supplier_id: str = Field(examples=["sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    status: PurchaseOrderStatus
    origin: str = Field(
        description="`replenishment` (placed by the shortage rules) or `manual`.",
        examples=["replenishment"],
    )
    created_by: str
    note: str | None
    submit_after: datetime | None = Field(
        description="For a replenishment draft: when its consolidation window closes."
    )
    submitted_at: datetime | None
    acknowledged_at: datetime | None
    expected_delivery_date: date | None
    received_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    created_at: datetime
    updated_at: datetime
    lines: list[PurchaseOrderLineRead]


class PurchaseOrderLineCreate(WriteModel):
    sku: Sku = Field(examples=["MUG-BLUE-330"])
    quantity: int = Field(strict=True, ge=1, le=MAX_PO_QUANTITY, examples=[48])


class PurchaseOrderCreate(WriteModel):
    """A purchase order staff place by hand. It starts as a draft; its quantities count as
    `on_order` at once. The supplier's terms (supplier SKU, cost, lead time) are copied from
    the product's supplier link, so the supplier must sell every SKU."""

    read_only_fields: ClassVar[frozenset[str]] = frozenset(
        {
            "id",
            "status",
            "origin",
            "created_by",
            "submit_after",
            "submitted_at",
            "acknowledged_at",
            "expected_delivery_date",
            "received_at",
            "cancelled_at",
            "cancel_reason",
            "created_at",
            "updated_at",
        }
    )

    supplier_id: str = Field(max_length=40, examples=["sup_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    lines: list[PurchaseOrderLineCreate] = Field(min_length=1, max_length=1000)
    note: str | None = Field(default=None, max_length=2000, examples=["Christmas stock"])


class AcknowledgeRequest(WriteModel):
    expected_delivery_date: date = Field(
        description="When the supplier says the goods arrive; promise dates follow it.",
        examples=["2026-12-10"],
    )


class ReceiptLineCreate(WriteModel):
    sku: Sku = Field(examples=["MUG-BLUE-330"])
    quantity: int = Field(strict=True, ge=1, le=MAX_PO_QUANTITY, examples=[24])


class ReceiptCreate(WriteModel):
    """Goods that arrived for this purchase order. Partial receipts are fine; receiving more
    than was ordered is accepted and logged."""

    lines: list[ReceiptLineCreate] = Field(min_length=1, max_length=1000)
    note: str | None = Field(default=None, max_length=2000, examples=["pallet 1 of 2"])


class ReceivedLineRead(ReadModel):
    sku: str = Field(examples=["MUG-BLUE-330"])
    quantity: int = Field(description="Units taken into stock.", examples=[24])
    over_received: int = Field(
        description="Of those, units beyond what was still to come.", examples=[0]
    )


class AllocationRead(ReadModel):
    order_id: str = Field(examples=["ord_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    sku: str = Field(examples=["MUG-BLUE-330"])
    units: int = Field(
        description="Units moved from backordered to allocated on that order.", examples=[20]
    )


class ReceiptRead(ReadModel):
    purchase_order: PurchaseOrderRead
    received: list[ReceivedLineRead]
    allocations: list[AllocationRead] = Field(
        description="Waiting orders served by this receipt, oldest order first."
    )


class PurchaseOrderCancel(WriteModel):
    reason: str = Field(min_length=1, max_length=500, examples=["supplier discontinued it"])
