from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import Supplier, SupplierProduct
from stockflow.db.pagination import Page, paginate


async def get_supplier(session: AsyncSession, supplier_id: str) -> Supplier | None:
    return await session.get(Supplier, supplier_id)


async def get_supplier_for_update(session: AsyncSession, supplier_id: str) -> Supplier | None:
    return await session.scalar(
        select(Supplier).where(Supplier.id == supplier_id).with_for_update(),
        execution_options={"populate_existing": True},
    )


async def add(session: AsyncSession, row: Supplier | SupplierProduct) -> None:
    session.add(row)
    await session.flush()


async def save(session: AsyncSession) -> None:
    await session.flush()


async def list_suppliers(
    session: AsyncSession, *, limit: int, cursor: str | None, active: bool | None
) -> Page[Supplier]:
    stmt = select(Supplier)
    if active is not None:
        stmt = stmt.where(Supplier.active.is_(active))
    return await paginate(session, stmt, Supplier.id, limit=limit, cursor=cursor)


async def supplier_products(session: AsyncSession, product_id: str) -> list[SupplierProduct]:
    """A product's suppliers, preferred first (highest priority, then the longest-standing)."""
    rows = await session.scalars(
        select(SupplierProduct)
        .where(SupplierProduct.product_id == product_id)
        .order_by(SupplierProduct.priority.desc(), SupplierProduct.id)
    )
    return list(rows.all())


async def get_supplier_product(
    session: AsyncSession, *, product_id: str, supplier_id: str
) -> SupplierProduct | None:
    return await session.scalar(
        select(SupplierProduct)
        .where(SupplierProduct.product_id == product_id)
        .where(SupplierProduct.supplier_id == supplier_id)
        .with_for_update()
    )


async def remove_supplier_product(session: AsyncSession, row: SupplierProduct) -> None:
    await session.execute(delete(SupplierProduct).where(SupplierProduct.id == row.id))
