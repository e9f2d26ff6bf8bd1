from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from stockflow.db.base import Base, JSONType, UTCDateTime, utcnow


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending_payment', 'confirmed', 'partially_shipped', 'shipped', "
            "'cancelled')",
            name="status_known",
        ),
        CheckConstraint("subtotal >= 0", name="subtotal_non_negative"),
        CheckConstraint("shipping_amount >= 0", name="shipping_non_negative"),
        CheckConstraint("tax_amount >= 0", name="tax_non_negative"),
        CheckConstraint("discount_amount >= 0", name="discount_non_negative"),
        CheckConstraint(
            "total = subtotal + shipping_amount + tax_amount - discount_amount",
            name="total_adds_up",
        ),
        CheckConstraint("total >= 0", name="total_non_negative"),
        CheckConstraint("length(currency) = 3", name="currency_iso4217"),
        CheckConstraint(
            "payment_provider IN ('none', 'manual', 'stripe')", name="payment_provider_known"
        ),
        CheckConstraint("amount_paid >= 0", name="amount_paid_non_negative"),
        CheckConstraint("amount_refunded >= 0", name="amount_refunded_non_negative"),
        CheckConstraint("amount_refunded <= amount_paid", name="refunded_within_paid"),
        Index("ix_orders_customer_id_id", "customer_id", "id"),
        # The worker's expiry job: the few orders still waiting for payment.
        Index(
            "ix_orders_unpaid",
            "created_at",
            postgresql_where=text("status = 'pending_payment'"),
            sqlite_where=text("status = 'pending_payment'"),
        ),
        Index("ix_orders_status_id", "status", "id"),
        # The quota on unpaid orders: one customer's orders still waiting for payment.
        Index(
            "ix_orders_customer_unpaid",
            "customer_id",
            postgresql_where=text("status = 'pending_payment'"),
            sqlite_where=text("status = 'pending_payment'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"))
    status: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[int] = mapped_column(BigInteger)
    shipping_amount: Mapped[int] = mapped_column(BigInteger)
    tax_amount: Mapped[int] = mapped_column(BigInteger)
    discount_amount: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How it is paid for, fixed when it is placed (`STOCKFLOW_PAYMENTS` then).
    payment_provider: Mapped[str] = mapped_column(String(10), server_default="none")
    amount_paid: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Refunds succeeded or still in progress: what may still be refunded is the difference.
    amount_refunded: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # One call to the payment provider at a time per order: held (outside any transaction)
    # by whoever talks to the provider about this order, until it returns or this passes.
    payment_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OrderLine(Base):
    """One SKU of an order. ``allocated`` is covered by reserved stock, ``backordered``
    waits for stock, ``shipped`` has left; shipped units come out of ``allocated``."""

    __tablename__ = "order_lines"
    __table_args__ = (
        UniqueConstraint("order_id", "product_id", name="uq_order_lines_order_id_product_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price >= 0", name="unit_price_non_negative"),
        CheckConstraint("line_total = unit_price * quantity", name="line_total_adds_up"),
        CheckConstraint("allocated >= 0", name="allocated_non_negative"),
        CheckConstraint("backordered >= 0", name="backordered_non_negative"),
        CheckConstraint("shipped >= 0", name="shipped_non_negative"),
        CheckConstraint("allocated + backordered <= quantity", name="covered_within_quantity"),
        CheckConstraint("shipped <= allocated", name="shipped_within_allocated"),
        # The backlog queue: the few lines still waiting for stock, not every line ever sold.
        Index(
            "ix_order_lines_waiting",
            "product_id",
            postgresql_where=text("backordered > 0"),
            sqlite_where=text("backordered > 0"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(40), ForeignKey("orders.id"))
    product_id: Mapped[str] = mapped_column(String(40), ForeignKey("products.id"), index=True)
    sku: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    line_total: Mapped[int] = mapped_column(BigInteger)
    allocated: Mapped[int] = mapped_column(Integer)
    backordered: Mapped[int] = mapped_column(Integer)
    shipped: Mapped[int] = mapped_column(Integer)


class Shipment(Base):
    __tablename__ = "shipments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(40), ForeignKey("orders.id"), index=True)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ShipmentLine(Base):
    __tablename__ = "shipment_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    shipment_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("shipments.id"), primary_key=True
    )
    product_id: Mapped[str] = mapped_column(String(40), ForeignKey("products.id"), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
