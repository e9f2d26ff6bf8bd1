from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import Product, Supplier, SupplierProduct
from stockflow.db.pagination import Page, paginate


async def get_supplier(session: AsyncSession, supplier_id: str) -> Supplier | None:
    return await session.get(Supplier, supplier_id)


async def get_supplier_for_update(session: AsyncSession, supplier_id: str) -> Supplier | None:
    return await session.scalar(
        select(Supplier).where(Supplier.id == supplier_id).with_for_update(),
        execution_options={"populate_existing": True},
    )


async def supplier_id_named(session: AsyncSession, name: str) -> str | None:
    """The oldest supplier with this name (names are not unique; the demo seeds by name)."""
    found: str | None = await session.scalar(
        select(Supplier.id).where(Supplier.name == name).order_by(Supplier.id).limit(1)
    )
    return found


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


async def supplier_products(
    session: AsyncSession, product_id: str
) -> list[tuple[SupplierProduct, bool]]:
    """A product's suppliers with whether each is active, preferred first: active ones
    before inactive ones, then the highest priority, then the longest-standing."""
    rows = await session.execute(
        select(SupplierProduct, Supplier.active)
        .join(Supplier, Supplier.id == SupplierProduct.supplier_id)
        .where(SupplierProduct.product_id == product_id)
        .order_by(Supplier.active.desc(), SupplierProduct.priority.desc(), SupplierProduct.id)
    )
    return [(link, bool(active)) for link, active in rows.all()]


async def backorder_products_relying_on(session: AsyncSession, supplier_id: str) -> list[str]:
    """SKUs of backorder products for which this supplier is the only active one."""
    other = (
        select(SupplierProduct.id)
        .join(Supplier, Supplier.id == SupplierProduct.supplier_id)
        .where(SupplierProduct.product_id == Product.id)
        .where(SupplierProduct.supplier_id != supplier_id)
        .where(Supplier.active.is_(True))
    )
    rows = await session.scalars(
        select(Product.sku)
        .join(SupplierProduct, SupplierProduct.product_id == Product.id)
        .where(SupplierProduct.supplier_id == supplier_id)
        .where(Product.shortage_policy == "backorder")
        .where(~other.exists())
        .order_by(Product.sku)
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
