"""Purchase-order queries, and the product-wide ``backordered``/``on_order`` counters the
replenishment rule reads and moves.

Lock order, shared with order placement, receipts and cancellations: stock rows (sorted by
SKU), then product rows (sorted by SKU), then purchase-order rows. Every counter change is a
single statement that returns the row as it left it, so no figure is read in one statement
and written back in another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import case, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import (
    Product,
    PurchaseOrder,
    PurchaseOrderLine,
    Supplier,
    SupplierProduct,
)
from stockflow.db.models.purchasing import OPEN_PO_STATUSES
from stockflow.db.pagination import Page, paginate
from stockflow.ids import new_id
from stockflow.inventory.policy import ProductRules, ShortagePolicy

_DRAFT_PREDICATE = "status = 'draft' AND origin = 'replenishment'"
"""The predicate of the partial unique index on ``purchase_orders.supplier_id``."""


@dataclass(frozen=True, slots=True)
class SupplierTerms:
    """What the preferred supplier sells a product on: what a PO line copies."""

    supplier_id: str
    supplier_sku: str
    cost_price: int
    currency: str
    pack_size: int
    min_order_qty: int
    lead_time_days: int


@dataclass(frozen=True, slots=True)
class Counters:
    backordered: int
    on_order: int


@dataclass(frozen=True, slots=True)
class Incoming:
    """Units of one open PO line still to come, with what decides their expected date."""

    product_id: str
    units: int
    lead_time_days: int
    expected_delivery_date: date | None
    submitted_at: datetime | None
    submit_after: datetime | None


def _terms_query(product_ids: Sequence[str]) -> Any:
    return (
        select(
            SupplierProduct.product_id,
            SupplierProduct.supplier_id,
            SupplierProduct.supplier_sku,
            SupplierProduct.cost_price,
            SupplierProduct.currency,
            SupplierProduct.pack_size,
            SupplierProduct.min_order_qty,
            func.coalesce(SupplierProduct.lead_time_days, Supplier.lead_time_days),
        )
        .join(Supplier, Supplier.id == SupplierProduct.supplier_id)
        .where(SupplierProduct.product_id.in_(product_ids))
        .where(Supplier.active.is_(True))
        .order_by(SupplierProduct.product_id, SupplierProduct.priority.desc(), SupplierProduct.id)
    )


async def preferred_terms(
    session: AsyncSession, product_ids: Sequence[str]
) -> dict[str, SupplierTerms]:
    """Each product's preferred supplier: the active one with the highest priority, the
    longest-standing link first on a tie (the order `supplier_products` lists them in)."""
    if not product_ids:
        return {}
    found: dict[str, SupplierTerms] = {}
    for row in (await session.execute(_terms_query(product_ids))).all():
        if row[0] not in found:
            found[row[0]] = SupplierTerms(*row[1:])
    return found


async def supplier_terms(
    session: AsyncSession, *, supplier_id: str, product_ids: Sequence[str]
) -> dict[str, SupplierTerms]:
    """One supplier's terms for each of these products it sells (for a manual PO)."""
    if not product_ids:
        return {}
    rows = await session.execute(
        _terms_query(product_ids).where(SupplierProduct.supplier_id == supplier_id)
    )
    return {row[0]: SupplierTerms(*row[1:]) for row in rows.all()}


async def add_backlog(session: AsyncSession, *, product_id: str, units: int) -> Counters:
    """Add to a product's backlog (units may be 0 or negative) and lock its row; returns
    the counters as this transaction now sees them."""
    row = (
        await session.execute(
            update(Product)
            .where(Product.id == product_id)
            .values(backordered=Product.backordered + units)
            .returning(Product.backordered, Product.on_order)
            .execution_options(synchronize_session=False)
        )
    ).one()
    return Counters(row[0], row[1])


async def add_on_order(session: AsyncSession, *, product_id: str, units: int) -> Counters:
    row = (
        await session.execute(
            update(Product)
            .where(Product.id == product_id)
            .values(on_order=Product.on_order + units)
            .returning(Product.backordered, Product.on_order)
            .execution_options(synchronize_session=False)
        )
    ).one()
    return Counters(row[0], row[1])


async def lock_products(session: AsyncSession, product_ids: Sequence[str]) -> dict[str, Counters]:
    """Row-lock products in the order given (callers sort by SKU) and read their counters."""
    counters: dict[str, Counters] = {}
    for product_id in product_ids:
        row = (
            await session.execute(
                select(Product.backordered, Product.on_order)
                .where(Product.id == product_id)
                .with_for_update()
            )
        ).one()
        counters[product_id] = Counters(row[0], row[1])
    return counters


async def counters(session: AsyncSession, product_ids: Sequence[str]) -> dict[str, Counters]:
    """Counters read without a lock, for a preview."""
    if not product_ids:
        return {}
    rows = await session.execute(
        select(Product.id, Product.backordered, Product.on_order).where(Product.id.in_(product_ids))
    )
    return {row[0]: Counters(row[1], row[2]) for row in rows.all()}


async def replenishment_draft(
    session: AsyncSession, *, supplier_id: str, submit_after: datetime, actor_id: str, now: datetime
) -> tuple[str, bool]:
    """The supplier's open replenishment draft, created if there is none, row-locked; and
    whether this call created it.

    The partial unique index allows one such draft per supplier, so concurrent orders
    either create it or wait for the one that did; a draft submitted while this one
    waited no longer matches the guarded UPDATE, and a new draft is opened instead.
    """
    dialect = session.get_bind().dialect.name
    make_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    draft_filter = (PurchaseOrder.status == "draft") & (PurchaseOrder.origin == "replenishment")
    for _ in range(5):
        created = await session.scalar(
            make_insert(PurchaseOrder)
            .values(
                id=new_id("po"),
                supplier_id=supplier_id,
                status="draft",
                origin="replenishment",
                created_by=actor_id,
                submit_after=submit_after,
                created_at=now,
                updated_at=now,
            )
            # Literal, not bound: PostgreSQL matches the partial index by its predicate
            # text, and a parameter would not prove it.
            .on_conflict_do_nothing(
                index_elements=["supplier_id"], index_where=text(_DRAFT_PREDICATE)
            )
            .returning(PurchaseOrder.id)
        )
        found = await session.scalar(
            update(PurchaseOrder)
            .where(PurchaseOrder.supplier_id == supplier_id)
            .where(draft_filter)
            .values(updated_at=now)
            .returning(PurchaseOrder.id)
            .execution_options(synchronize_session=False)
        )
        if found is not None:
            return found, created is not None
    raise RuntimeError(f"no replenishment draft for supplier {supplier_id} after 5 attempts")


async def replenishment_draft_submissions(
    session: AsyncSession, supplier_ids: Sequence[str]
) -> dict[str, datetime]:
    """When each supplier's open replenishment draft is due to be submitted (read without
    a lock, for a preview)."""
    rows = await session.execute(
        select(PurchaseOrder.supplier_id, PurchaseOrder.submit_after)
        .where(PurchaseOrder.supplier_id.in_(supplier_ids))
        .where(PurchaseOrder.status == "draft")
        .where(PurchaseOrder.origin == "replenishment")
    )
    return {supplier_id: due for supplier_id, due in rows.all() if due is not None}


async def insert_purchase_order(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(insert(PurchaseOrder), [row])


async def insert_lines(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(PurchaseOrderLine), rows)


async def get(session: AsyncSession, po_id: str) -> PurchaseOrder | None:
    return await session.get(PurchaseOrder, po_id, populate_existing=True)


async def lines_of(
    session: AsyncSession, po_ids: Sequence[str]
) -> dict[str, list[PurchaseOrderLine]]:
    grouped: dict[str, list[PurchaseOrderLine]] = {po_id: [] for po_id in po_ids}
    if not po_ids:
        return grouped
    rows = await session.scalars(
        select(PurchaseOrderLine)
        .where(PurchaseOrderLine.purchase_order_id.in_(po_ids))
        .order_by(PurchaseOrderLine.purchase_order_id, PurchaseOrderLine.id)
        .execution_options(populate_existing=True)
    )
    for line in rows:
        grouped[line.purchase_order_id].append(line)
    return grouped


async def list_page(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    status: str | None,
    supplier_id: str | None,
) -> Page[PurchaseOrder]:
    stmt = select(PurchaseOrder)
    if status is not None:
        stmt = stmt.where(PurchaseOrder.status == status)
    if supplier_id is not None:
        stmt = stmt.where(PurchaseOrder.supplier_id == supplier_id)
    return await paginate(session, stmt, PurchaseOrder.id, limit=limit, cursor=cursor)


async def change_status(
    session: AsyncSession,
    *,
    po_id: str,
    from_statuses: Sequence[str],
    values: dict[str, Any],
) -> bool:
    """A guarded status change: it happens only if the PO is still in one of
    ``from_statuses``, so two processes can never both make it. Locks the row."""
    found = await session.scalar(
        update(PurchaseOrder)
        .where(PurchaseOrder.id == po_id)
        .where(PurchaseOrder.status.in_(from_statuses))
        .values(**values)
        .returning(PurchaseOrder.id)
        .execution_options(synchronize_session=False)
    )
    return found is not None


async def acknowledge(
    session: AsyncSession,
    *,
    po_id: str,
    expected_delivery_date: date,
    from_statuses: Sequence[str],
    now: datetime,
) -> bool:
    """Record the supplier's date; a partially received PO keeps its status. Guarded and
    decided in one statement, so it never undoes a receipt committed meanwhile."""
    found = await session.scalar(
        update(PurchaseOrder)
        .where(PurchaseOrder.id == po_id)
        .where(PurchaseOrder.status.in_(from_statuses))
        .values(
            status=case(
                (PurchaseOrder.status == "partially_received", PurchaseOrder.status),
                else_="acknowledged",
            ),
            expected_delivery_date=expected_delivery_date,
            acknowledged_at=now,
            updated_at=now,
        )
        .returning(PurchaseOrder.id)
        .execution_options(synchronize_session=False)
    )
    return found is not None


async def lock(session: AsyncSession, po_id: str) -> str | None:
    """Row-lock a PO (last in the lock order) and read its status afresh."""
    status: str | None = await session.scalar(
        select(PurchaseOrder.status).where(PurchaseOrder.id == po_id).with_for_update()
    )
    return status


async def products_of(session: AsyncSession, po_id: str) -> list[tuple[str, str]]:
    """``(sku, product_id)`` of a PO's lines, sorted by SKU: the order to lock them in."""
    rows = await session.execute(
        select(PurchaseOrderLine.sku, PurchaseOrderLine.product_id)
        .where(PurchaseOrderLine.purchase_order_id == po_id)
        .distinct()
        .order_by(PurchaseOrderLine.sku)
    )
    return [(sku, product_id) for sku, product_id in rows.all()]


async def submit_due_drafts(session: AsyncSession, *, now: datetime) -> list[str]:
    """Submit every replenishment draft whose consolidation window has closed, in one
    guarded statement: a draft another process submitted first no longer matches."""
    rows = await session.scalars(
        update(PurchaseOrder)
        .where(PurchaseOrder.status == "draft")
        .where(PurchaseOrder.origin == "replenishment")
        .where(PurchaseOrder.submit_after <= now)
        .values(status="submitted", submitted_at=now, updated_at=now)
        .returning(PurchaseOrder.id)
        .execution_options(synchronize_session=False)
    )
    return list(rows.all())


async def receive_on_line(session: AsyncSession, *, line_id: str, units: int) -> None:
    await session.execute(
        update(PurchaseOrderLine)
        .where(PurchaseOrderLine.id == line_id)
        .values(received=PurchaseOrderLine.received + units)
        .execution_options(synchronize_session=False)
    )


async def incoming(session: AsyncSession, product_ids: Sequence[str]) -> list[Incoming]:
    """Every open PO line of these products with units still to come."""
    if not product_ids:
        return []
    rows = await session.execute(
        select(
            PurchaseOrderLine.product_id,
            PurchaseOrderLine.quantity - PurchaseOrderLine.received,
            PurchaseOrderLine.lead_time_days,
            PurchaseOrder.expected_delivery_date,
            PurchaseOrder.submitted_at,
            PurchaseOrder.submit_after,
        )
        .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
        .where(PurchaseOrderLine.product_id.in_(product_ids))
        .where(PurchaseOrder.status.in_(OPEN_PO_STATUSES))
        .where(PurchaseOrderLine.quantity > PurchaseOrderLine.received)
    )
    return [Incoming(*row) for row in rows.all()]


async def product_rules(
    session: AsyncSession, product_ids: Sequence[str]
) -> dict[str, tuple[str, ProductRules]]:
    """Each product's SKU and shortage rules."""
    if not product_ids:
        return {}
    rows = await session.execute(
        select(
            Product.id,
            Product.sku,
            Product.shortage_policy,
            Product.replenish_buffer_pct,
            Product.reorder_point,
            Product.reorder_up_to,
            Product.low_stock_threshold,
        ).where(Product.id.in_(product_ids))
    )
    return {
        row.id: (
            row.sku,
            ProductRules(
                ShortagePolicy(row.shortage_policy),
                row.replenish_buffer_pct,
                row.reorder_point,
                row.reorder_up_to,
                row.low_stock_threshold,
            ),
        )
        for row in rows.all()
    }
