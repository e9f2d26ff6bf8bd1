"""Shortage policy and replenishment settings on products.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECKS = {
    "shortage_policy_known": "shortage_policy IN ('reject', 'backorder')",
    "replenish_buffer_pct_range": "replenish_buffer_pct BETWEEN 0 AND 500",
    "reorder_point_non_negative": "reorder_point IS NULL OR reorder_point >= 0",
    "reorder_up_to_at_least_point": (
        "reorder_up_to IS NULL OR (reorder_point IS NOT NULL AND reorder_up_to >= reorder_point)"
    ),
}


def upgrade() -> None:
    # Existing products keep refusing shortages, as they did before the policy existed.
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "shortage_policy", sa.String(length=20), server_default="reject", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column("replenish_buffer_pct", sa.Integer(), server_default="20", nullable=False)
        )
        batch_op.add_column(sa.Column("reorder_point", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reorder_up_to", sa.Integer(), nullable=True))
        for name, condition in CHECKS.items():
            batch_op.create_check_constraint(op.f(f"ck_products_{name}"), condition)


def downgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        for name in CHECKS:
            batch_op.drop_constraint(op.f(f"ck_products_{name}"), type_="check")
        batch_op.drop_column("reorder_up_to")
        batch_op.drop_column("reorder_point")
        batch_op.drop_column("replenish_buffer_pct")
        batch_op.drop_column("shortage_policy")
