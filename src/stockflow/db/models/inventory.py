from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from stockflow.db.base import Base, UTCDateTime, utcnow


class Location(Base):
    __tablename__ = "locations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StockLevel(Base):
    __tablename__ = "stock_levels"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_non_negative"),
        CheckConstraint("reserved >= 0", name="reserved_non_negative"),
        CheckConstraint("reserved <= on_hand", name="reserved_within_on_hand"),
    )

    product_id: Mapped[str] = mapped_column(String(40), ForeignKey("products.id"), primary_key=True)
    location_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("locations.id"), primary_key=True
    )
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StockMovement(Base):
    """The ledger: append-only, one row per stock row changed, with both deltas.

    ``on_hand_after``/``reserved_after`` record the row as the change left it, so a drift
    found by reconcile can be traced to the first movement that disagrees.
    """

    __tablename__ = "stock_movements"
    __table_args__ = (
        CheckConstraint("on_hand_delta <> 0 OR reserved_delta <> 0", name="changes_something"),
        ForeignKeyConstraint(
            ["product_id", "location_id"],
            ["stock_levels.product_id", "stock_levels.location_id"],
            name="fk_stock_movements_stock_level",
        ),
        Index("ix_stock_movements_product_id_id", "product_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(40))
    location_id: Mapped[str] = mapped_column(String(40))
    on_hand_delta: Mapped[int] = mapped_column(Integer)
    reserved_delta: Mapped[int] = mapped_column(Integer)
    on_hand_after: Mapped[int] = mapped_column(Integer)
    reserved_after: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(80))
    order_id: Mapped[str | None] = mapped_column(String(40))
    purchase_order_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
