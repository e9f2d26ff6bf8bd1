"""Inbox queries: messages from suppliers (and Stripe's events), kept once by their id.

Each sender's messages are applied by their own job: every query names its source type."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import InboxMessage
from stockflow.ids import new_id


async def add_if_absent(
    session: AsyncSession,
    *,
    source_id: str,
    message_id: str,
    type_: str,
    body: str,
    now: datetime,
    source_type: str = "supplier",
) -> bool:
    """Keep the message unless one with its id from this source is already kept; whether
    it was new. A concurrent duplicate waits for the first and then finds it."""
    dialect = session.get_bind().dialect.name
    make_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    inserted = await session.scalar(
        make_insert(InboxMessage)
        .values(
            id=new_id("inb"),
            source_type=source_type,
            source_id=source_id,
            message_id=message_id,
            type=type_,
            body=body,
            received_at=now,
        )
        .on_conflict_do_nothing(index_elements=["source_id", "message_id"])
        .returning(InboxMessage.id)
    )
    return inserted is not None


async def any_unprocessed(session: AsyncSession, *, source_type: str = "supplier") -> bool:
    found = await session.scalar(
        select(InboxMessage.id)
        .where(InboxMessage.processed_at.is_(None))
        .where(InboxMessage.source_type == source_type)
        .limit(1)
    )
    return found is not None


async def claim_unprocessed(
    session: AsyncSession, *, limit: int, source_type: str = "supplier"
) -> list[InboxMessage]:
    rows = await session.scalars(
        select(InboxMessage)
        .where(InboxMessage.processed_at.is_(None))
        .where(InboxMessage.source_type == source_type)
        .order_by(InboxMessage.received_at, InboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows.all())


async def mark_processed(
    session: AsyncSession, *, message_id: str, now: datetime, error: str | None
) -> None:
    await session.execute(
        update(InboxMessage)
        .where(InboxMessage.id == message_id)
        .values(processed_at=now, error=error)
        .execution_options(synchronize_session=False)
    )


async def lock_unprocessed(session: AsyncSession, message_id: str) -> bool:
    """Lock the kept message for applying it; False once it has been applied."""
    found = await session.scalar(
        select(InboxMessage.id)
        .where(InboxMessage.id == message_id)
        .where(InboxMessage.processed_at.is_(None))
        .with_for_update()
    )
    return found is not None
