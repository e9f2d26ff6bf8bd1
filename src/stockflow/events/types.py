"""The event types Stockflow tells, and what each means. Pure: no web or database imports."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    ORDER_CREATED = "order.created"
    ORDER_BACKORDERED = "order.backordered"
    ORDER_CONFIRMED = "order.confirmed"
    ORDER_CANCELLED = "order.cancelled"
    ORDER_READY_TO_SHIP = "order.ready_to_ship"
    ORDER_SHIPPED = "order.shipped"
    STOCK_ADJUSTED = "stock.adjusted"
    STOCK_LOW = "stock.low"
    PURCHASE_ORDER_CREATED = "purchase_order.created"
    PURCHASE_ORDER_SUBMITTED = "purchase_order.submitted"
    PURCHASE_ORDER_ACKNOWLEDGED = "purchase_order.acknowledged"
    PURCHASE_ORDER_RECEIVED = "purchase_order.received"
    PURCHASE_ORDER_CANCELLED = "purchase_order.cancelled"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    REFUND_SUCCEEDED = "refund.succeeded"


DESCRIPTIONS: dict[EventType, str] = {
    EventType.ORDER_CREATED: "An order was placed. `data.object` is the order.",
    EventType.ORDER_BACKORDERED: (
        "An order was placed with at least one line waiting for stock (sent after `order.created`)."
    ),
    EventType.ORDER_CONFIRMED: (
        "An order waiting for payment was paid in full and can now ship. `data.object` is "
        "the order."
    ),
    EventType.ORDER_CANCELLED: "An order was cancelled; `data.object.cancel_reason` says why.",
    EventType.ORDER_READY_TO_SHIP: (
        "Every unit of a backordered order is now reserved: it can ship in full."
    ),
    EventType.ORDER_SHIPPED: (
        "A shipment left, partial or final. `data.object` is the order after it, "
        "`data.shipment` the shipment."
    ),
    EventType.STOCK_ADJUSTED: (
        "Stock on hand was corrected by hand. `data.object` is the product's inventory, "
        "`data.movement` the ledger entry."
    ),
    EventType.STOCK_LOW: (
        "Available stock fell to the product's `low_stock_threshold` or below. "
        "`data.object` is the product's inventory."
    ),
    EventType.PURCHASE_ORDER_CREATED: "A purchase order was opened (by hand or to replenish).",
    EventType.PURCHASE_ORDER_SUBMITTED: "A purchase order was sent to its supplier.",
    EventType.PURCHASE_ORDER_ACKNOWLEDGED: (
        "The supplier confirmed a purchase order, usually with an expected delivery date."
    ),
    EventType.PURCHASE_ORDER_RECEIVED: (
        "Goods of a purchase order arrived (each receipt). `data.receipt` lists them."
    ),
    EventType.PURCHASE_ORDER_CANCELLED: "A purchase order was cancelled.",
    EventType.PAYMENT_SUCCEEDED: (
        "Money was taken for an order (a Stripe payment, or an offline payment staff "
        "recorded). `data.object` is the payment."
    ),
    EventType.PAYMENT_FAILED: (
        "A payment attempt failed; the order can still be paid. `data.object` is the payment."
    ),
    EventType.REFUND_SUCCEEDED: "Money was given back for an order. `data.object` is the refund.",
}

WILDCARD = "*"
"""Subscribes a webhook endpoint to every type, present and future."""


def wants(subscribed: list[str], event_type: str) -> bool:
    return WILDCARD in subscribed or event_type in subscribed
