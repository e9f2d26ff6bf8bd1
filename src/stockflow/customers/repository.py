from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import Customer
from stockflow.db.pagination import Page, paginate


async def get(session: AsyncSession, customer_id: str) -> Customer | None:
    return await session.get(Customer, customer_id)


async def get_by_external_ref(session: AsyncSession, external_ref: str) -> Customer | None:
    return await session.scalar(select(Customer).where(Customer.external_ref == external_ref))


async def add(session: AsyncSession, customer: Customer) -> Customer:
    session.add(customer)
    await session.flush()
    return customer


async def list_page(
    session: AsyncSession, *, limit: int, cursor: str | None, only_id: str | None = None
) -> Page[Customer]:
    stmt = select(Customer)
    if only_id is not None:
        stmt = stmt.where(Customer.id == only_id)
    return await paginate(session, stmt, Customer.id, limit=limit, cursor=cursor)
