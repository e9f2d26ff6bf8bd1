from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import Product
from stockflow.db.pagination import Page, paginate


async def get_by_sku(session: AsyncSession, sku: str) -> Product | None:
    return await session.scalar(select(Product).where(Product.sku == sku))


async def get_by_sku_for_update(session: AsyncSession, sku: str) -> Product | None:
    """The product, row-locked until the transaction ends (SQLite's write lock already is)."""
    return await session.scalar(
        select(Product).where(Product.sku == sku).with_for_update(),
        execution_options={"populate_existing": True},
    )


async def save(session: AsyncSession) -> None:
    """Write pending changes; the version column makes the UPDATE bump ``version``."""
    await session.flush()


async def add(session: AsyncSession, product: Product) -> Product | None:
    """Insert the product; None when its SKU is taken.

    The caller's look-up cannot see a product that a concurrent transaction inserts and
    commits after it, so the unique constraint has the last word. The INSERT runs in a
    savepoint, which keeps the transaction usable (on PostgreSQL) to tell a taken SKU from
    any other integrity error.
    """
    try:
        async with session.begin_nested():
            session.add(product)
            await session.flush()
    except IntegrityError:
        if await get_by_sku(session, product.sku) is None:
            raise
        return None
    return product


async def list_page(
    session: AsyncSession, *, limit: int, cursor: str | None, active: bool | None
) -> Page[Product]:
    stmt = select(Product)
    if active is not None:
        stmt = stmt.where(Product.active.is_(active))
    return await paginate(session, stmt, Product.id, limit=limit, cursor=cursor)
