from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from stockflow.db.base import Base, UTCDateTime, utcnow


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'staff', 'service', 'customer')", name="role_known"),
        CheckConstraint(
            "(role = 'customer') = (customer_id IS NOT NULL)", name="customer_role_bound"
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    customer_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("customers.id"), index=True
    )
    # SHA-256 of the whole key: keys carry 190 random bits, so a fast hash is safe and
    # keeps authentication to one indexed lookup.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the key, shown in lists so an operator can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Refused from this moment on; set at creation, or by a rotation's grace period.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The key that replaced this one in a rotation.
    replaced_by: Mapped[str | None] = mapped_column(String(40))
