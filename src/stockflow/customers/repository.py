from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import Customer
from stockflow.db.pagination import Page, paginate


async def get(session: AsyncSession, customer_id: str) -> Customer | None:
    return await session.get(Customer, customer_id)


async def get_by_external_ref(session: AsyncSession, external_ref: str) -> Customer | None:
    return await session.scalar(select(Customer).where(Customer.external_ref == external_ref))


async def add(session: AsyncSession, customer: Customer) -> Customer | None:
    """Insert the customer; None when its ``external_ref`` is taken.

    The caller's earlier look-up cannot see a customer that a concurrent transaction has
    inserted but not yet committed; only the unique constraint catches that one. The savepoint
    keeps the request's transaction usable after the refused insert.
    """
    try:
        async with session.begin_nested():
            session.add(customer)
            await session.flush()
    except IntegrityError as exc:
        if customer.external_ref is not None and "external_ref" in str(exc.orig):
            return None
        raise
    return customer


async def list_page(
    session: AsyncSession, *, limit: int, cursor: str | None, only_id: str | None = None
) -> Page[Customer]:
    stmt = select(Customer)
    if only_id is not None:
        stmt = stmt.where(Customer.id == only_id)
    return await paginate(session, stmt, Customer.id, limit=limit, cursor=cursor)
