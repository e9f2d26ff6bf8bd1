from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from stockflow.db.base import Base, JSONType, UTCDateTime, utcnow


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("unit_price >= 0", name="unit_price_non_negative"),
        CheckConstraint("length(currency) = 3", name="currency_iso4217"),
        CheckConstraint("backordered >= 0", name="backordered_non_negative"),
        CheckConstraint("on_order >= 0", name="on_order_non_negative"),
        CheckConstraint("shortage_policy IN ('reject', 'backorder')", name="shortage_policy_known"),
        CheckConstraint(
            "replenish_buffer_pct BETWEEN 0 AND 500", name="replenish_buffer_pct_range"
        ),
        CheckConstraint(
            "reorder_point IS NULL OR reorder_point >= 0", name="reorder_point_non_negative"
        ),
        CheckConstraint(
            "reorder_up_to IS NULL OR (reorder_point IS NOT NULL "
            "AND reorder_up_to >= reorder_point)",
            name="reorder_up_to_at_least_point",
        ),
        CheckConstraint(
            "low_stock_threshold IS NULL OR low_stock_threshold >= 0",
            name="low_stock_threshold_non_negative",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    # Money is 64-bit: minor units of a large order (or a weak currency) pass 2**31 quickly.
    unit_price: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Product-wide counters: open order quantities not yet covered, and open purchase-order
    # quantities not yet received. Kept here (not per location) because the shortage rule
    # reasons about the product as a whole.
    backordered: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    on_order: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What an order that asks for more than is available does: refuse, or backorder the
    # difference and order it (plus the buffer) from the preferred supplier.
    shortage_policy: Mapped[str] = mapped_column(String(20), server_default="reject")
    replenish_buffer_pct: Mapped[int] = mapped_column(Integer, server_default="20")
    reorder_point: Mapped[int | None] = mapped_column(Integer)
    reorder_up_to: Mapped[int | None] = mapped_column(Integer)
    # ``stock.low`` is told when an order or an adjustment takes available to this or below.
    low_stock_threshold: Mapped[int | None] = mapped_column(Integer)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __mapper_args__ = {"version_id_col": version}
