"""Customers: when their personal data was erased. Orders: an index of each customer's
unpaid orders, which the quota on unpaid orders counts when one is placed.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNPAID = "status = 'pending_payment'"


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_orders_customer_unpaid",
        "orders",
        ["customer_id"],
        unique=False,
        postgresql_where=sa.text(_UNPAID),
        sqlite_where=sa.text(_UNPAID),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_orders_customer_unpaid",
        table_name="orders",
        postgresql_where=sa.text(_UNPAID),
        sqlite_where=sa.text(_UNPAID),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("erased_at")
