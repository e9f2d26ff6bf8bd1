from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import Product
from stockflow.db.pagination import Page, paginate


async def get_by_sku(session: AsyncSession, sku: str) -> Product | None:
    return await session.scalar(select(Product).where(Product.sku == sku))


async def add(session: AsyncSession, product: Product) -> Product:
    session.add(product)
    await session.flush()
    return product


async def list_page(
    session: AsyncSession, *, limit: int, cursor: str | None, active: bool | None
) -> Page[Product]:
    stmt = select(Product)
    if active is not None:
        stmt = stmt.where(Product.active.is_(active))
    return await paginate(session, stmt, Product.id, limit=limit, cursor=cursor)
