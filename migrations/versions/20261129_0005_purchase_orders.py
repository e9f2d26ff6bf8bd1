"""Purchase orders and their lines; a version on supplier products for If-Match; an index
of the order lines waiting for stock.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "purchase_orders",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("supplier_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("submit_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expected_delivery_date", sa.Date(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "origin IN ('replenishment', 'manual')", name=op.f("ck_purchase_orders_origin_known")
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'submitted', 'acknowledged', 'partially_received', "
            "'received', 'cancelled')",
            name=op.f("ck_purchase_orders_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["supplier_id"], ["suppliers.id"], name=op.f("fk_purchase_orders_supplier_id_suppliers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_orders")),
    )
    with op.batch_alter_table("purchase_orders", schema=None) as batch_op:
        batch_op.create_index("ix_purchase_orders_status_id", ["status", "id"], unique=False)
        batch_op.create_index(
            "ix_purchase_orders_supplier_id_id", ["supplier_id", "id"], unique=False
        )
        batch_op.create_index(
            "uq_purchase_orders_replenishment_draft",
            ["supplier_id"],
            unique=True,
            postgresql_where=sa.text("status = 'draft' AND origin = 'replenishment'"),
            sqlite_where=sa.text("status = 'draft' AND origin = 'replenishment'"),
        )

    op.create_table(
        "purchase_order_lines",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("purchase_order_id", sa.String(length=40), nullable=False),
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("supplier_sku", sa.String(length=100), nullable=False),
        sa.Column("cost_price", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("lead_time_days", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column(
            "explanation", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "reason IN ('backorder', 'reorder_point', 'manual')",
            name=op.f("ck_purchase_order_lines_reason_known"),
        ),
        sa.CheckConstraint(
            "cost_price >= 0", name=op.f("ck_purchase_order_lines_cost_price_non_negative")
        ),
        sa.CheckConstraint(
            "lead_time_days >= 0", name=op.f("ck_purchase_order_lines_lead_time_non_negative")
        ),
        sa.CheckConstraint(
            "length(currency) = 3", name=op.f("ck_purchase_order_lines_currency_iso4217")
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_purchase_order_lines_quantity_positive")),
        sa.CheckConstraint(
            "received >= 0", name=op.f("ck_purchase_order_lines_received_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_purchase_order_lines_product_id_products"),
        ),
        sa.ForeignKeyConstraint(
            ["purchase_order_id"],
            ["purchase_orders.id"],
            name=op.f("fk_purchase_order_lines_purchase_order_id_purchase_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_order_lines")),
    )
    with op.batch_alter_table("purchase_order_lines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_purchase_order_lines_product_id"), ["product_id"], unique=False
        )
        batch_op.create_index(
            "ix_purchase_order_lines_purchase_order_id_id",
            ["purchase_order_id", "id"],
            unique=False,
        )

    with op.batch_alter_table("supplier_products", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))

    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.create_index(
            "ix_order_lines_waiting",
            ["product_id"],
            unique=False,
            postgresql_where=sa.text("backordered > 0"),
            sqlite_where=sa.text("backordered > 0"),
        )


def downgrade() -> None:
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.drop_index("ix_order_lines_waiting")

    with op.batch_alter_table("supplier_products", schema=None) as batch_op:
        batch_op.drop_column("version")

    with op.batch_alter_table("purchase_order_lines", schema=None) as batch_op:
        batch_op.drop_index("ix_purchase_order_lines_purchase_order_id_id")
        batch_op.drop_index(batch_op.f("ix_purchase_order_lines_product_id"))

    op.drop_table("purchase_order_lines")
    with op.batch_alter_table("purchase_orders", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_purchase_orders_replenishment_draft",
            postgresql_where=sa.text("status = 'draft' AND origin = 'replenishment'"),
            sqlite_where=sa.text("status = 'draft' AND origin = 'replenishment'"),
        )
        batch_op.drop_index("ix_purchase_orders_supplier_id_id")
        batch_op.drop_index("ix_purchase_orders_status_id")

    op.drop_table("purchase_orders")
