"""Queries about payments and refunds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import Order, Payment, Refund


def add(session: AsyncSession, row: Payment | Refund) -> None:
    session.add(row)


async def payments_of(session: AsyncSession, order_id: str) -> Sequence[Payment]:
    rows = await session.scalars(
        select(Payment).where(Payment.order_id == order_id).order_by(Payment.id)
    )
    return rows.all()


async def refunds_of(session: AsyncSession, order_id: str) -> Sequence[Refund]:
    rows = await session.scalars(
        select(Refund).where(Refund.order_id == order_id).order_by(Refund.id)
    )
    return rows.all()


async def by_intent(session: AsyncSession, intent_id: str) -> Payment | None:
    found: Payment | None = await session.scalar(
        select(Payment).where(Payment.intent_id == intent_id)
    )
    return found


async def stripe_payments_of(session: AsyncSession, order_id: str) -> Sequence[Payment]:
    rows = await session.scalars(
        select(Payment)
        .where(Payment.order_id == order_id)
        .where(Payment.provider == "stripe")
        .order_by(Payment.id)
    )
    return rows.all()


async def refund_by_key(session: AsyncSession, request_key: str) -> Refund | None:
    found: Refund | None = await session.scalar(
        select(Refund).where(Refund.request_key == request_key)
    )
    return found


async def refund_for_update(session: AsyncSession, refund_id: str) -> Refund | None:
    found: Refund | None = await session.scalar(
        select(Refund).where(Refund.id == refund_id).with_for_update(),
        execution_options={"populate_existing": True},
    )
    return found


async def unsent_refunds(session: AsyncSession, *, limit: int) -> list[str]:
    """Stripe refunds recorded here but not yet made at Stripe, oldest first."""
    rows = await session.scalars(
        select(Refund.id)
        .where(Refund.provider == "stripe")
        .where(Refund.status == "pending")
        .where(Refund.provider_refund_id.is_(None))
        .order_by(Refund.id)
        .limit(limit)
    )
    return list(rows.all())


async def unpaid_before(
    session: AsyncSession,
    cutoff: datetime,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[tuple[datetime, str]]:
    """(placed, id) of orders placed before ``cutoff`` that wait for payment and have none
    yet, oldest first, after ``after``. One partly paid is left to staff: cancelling it
    would owe the customer money nobody took through Stockflow."""
    stmt = (
        select(Order.created_at, Order.id)
        .where(Order.status == "pending_payment")
        .where(Order.amount_paid == 0)
        .where(Order.created_at < cutoff)
    )
    if after is not None:
        stmt = stmt.where(
            or_(
                Order.created_at > after[0],
                and_(Order.created_at == after[0], Order.id > after[1]),
            )
        )
    rows = await session.execute(stmt.order_by(Order.created_at, Order.id).limit(limit))
    return [(placed, order_id) for placed, order_id in rows]
