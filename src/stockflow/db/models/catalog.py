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
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __mapper_args__ = {"version_id_col": version}
