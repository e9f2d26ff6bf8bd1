from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
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


class Supplier(Base):
    __tablename__ = "suppliers"
    __table_args__ = (CheckConstraint("lead_time_days >= 0", name="lead_time_non_negative"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    lead_time_days: Mapped[int] = mapped_column(Integer)
    # How a purchase order reaches the supplier (manual, e-mail, webhook), as given.
    connector: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Signs what we send the supplier and checks what it sends us (encrypted like a
    # webhook endpoint's); none until issued.
    secret: Mapped[str | None] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __mapper_args__ = {"version_id_col": version}


class SupplierProduct(Base):
    """What one supplier sells us of one product, and on what terms."""

    __tablename__ = "supplier_products"
    __table_args__ = (
        UniqueConstraint(
            "product_id", "supplier_id", name="uq_supplier_products_product_id_supplier_id"
        ),
        CheckConstraint("cost_price >= 0", name="cost_price_non_negative"),
        CheckConstraint("length(currency) = 3", name="currency_iso4217"),
        CheckConstraint("pack_size >= 1", name="pack_size_positive"),
        CheckConstraint("min_order_qty >= 1", name="min_order_qty_positive"),
        CheckConstraint(
            "lead_time_days IS NULL OR lead_time_days >= 0", name="lead_time_non_negative"
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(40), ForeignKey("products.id"))
    supplier_id: Mapped[str] = mapped_column(String(40), ForeignKey("suppliers.id"), index=True)
    supplier_sku: Mapped[str] = mapped_column(String(100))
    cost_price: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    pack_size: Mapped[int] = mapped_column(Integer)
    min_order_qty: Mapped[int] = mapped_column(Integer)
    # Overrides the supplier's lead time for this product when set.
    lead_time_days: Mapped[int | None] = mapped_column(Integer)
    # The highest priority is the preferred supplier.
    priority: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __mapper_args__ = {"version_id_col": version}


PO_STATUSES = (
    "draft",
    "submitted",
    "acknowledged",
    "partially_received",
    "received",
    "cancelled",
)
OPEN_PO_STATUSES = ("draft", "submitted", "acknowledged", "partially_received")
"""Statuses whose unreceived quantities count as ``on_order``."""


class PurchaseOrder(Base):
    """Our order to one supplier.

    At most one *replenishment* draft per supplier is open at a time (a partial unique
    index): with a consolidation window, every shortage of that supplier's products lands
    on it until it is submitted, and concurrent orders cannot open a second one.
    """

    __tablename__ = "purchase_orders"
    __table_args__ = (
        CheckConstraint(
            "status IN ('draft', 'submitted', 'acknowledged', 'partially_received', "
            "'received', 'cancelled')",
            name="status_known",
        ),
        CheckConstraint("origin IN ('replenishment', 'manual')", name="origin_known"),
        Index("ix_purchase_orders_supplier_id_id", "supplier_id", "id"),
        Index("ix_purchase_orders_status_id", "status", "id"),
        Index(
            "uq_purchase_orders_replenishment_draft",
            "supplier_id",
            unique=True,
            postgresql_where=text("status = 'draft' AND origin = 'replenishment'"),
            sqlite_where=text("status = 'draft' AND origin = 'replenishment'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    supplier_id: Mapped[str] = mapped_column(String(40), ForeignKey("suppliers.id"))
    status: Mapped[str] = mapped_column(String(20))
    # replenishment: placed by the shortage rules; manual: created by staff.
    origin: Mapped[str] = mapped_column(String(20))
    created_by: Mapped[str] = mapped_column(String(80))
    # For a replenishment draft: when the consolidation window closes and it is submitted.
    submit_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expected_delivery_date: Mapped[date | None] = mapped_column(Date)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PurchaseOrderLine(Base):
    """One quantity ordered of one product, with the terms and the reason it was ordered.

    A replenishment adds a new line each time a rule fires, so every line keeps the one
    explanation that produced it; receipts fill a product's lines oldest first.
    """

    __tablename__ = "purchase_order_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("received >= 0", name="received_non_negative"),
        CheckConstraint("cost_price >= 0", name="cost_price_non_negative"),
        CheckConstraint("length(currency) = 3", name="currency_iso4217"),
        CheckConstraint("lead_time_days >= 0", name="lead_time_non_negative"),
        CheckConstraint("reason IN ('backorder', 'reorder_point', 'manual')", name="reason_known"),
        Index("ix_purchase_order_lines_purchase_order_id_id", "purchase_order_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    purchase_order_id: Mapped[str] = mapped_column(String(40), ForeignKey("purchase_orders.id"))
    product_id: Mapped[str] = mapped_column(String(40), ForeignKey("products.id"), index=True)
    sku: Mapped[str] = mapped_column(String(64))
    supplier_sku: Mapped[str] = mapped_column(String(100))
    cost_price: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    quantity: Mapped[int] = mapped_column(Integer)
    # May exceed quantity: an over-delivery is taken into stock and logged.
    received: Mapped[int] = mapped_column(Integer, default=0)
    # The lead time that applied when the line was ordered, for its promise date.
    lead_time_days: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(20))
    # How the quantity was chosen (the rule's figures and the order lines that caused it).
    explanation: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
