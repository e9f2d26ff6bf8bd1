"""Reading events (staff and admin)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.pagination import Page
from stockflow.errors import NotFound
from stockflow.events import repository
from stockflow.events.schemas import EventRead


async def get_event(session: AsyncSession, *, event_id: str) -> EventRead:
    event = await repository.get(session, event_id)
    if event is None:
        raise NotFound(f"Event {event_id} does not exist.")
    return EventRead.of(event)


async def list_events(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    types: Sequence[str],
    object_id: str | None,
) -> Page[EventRead]:
    page = await repository.list_page(
        session, limit=limit, cursor=cursor, types=types, object_id=object_id
    )
    return Page([EventRead.of(event) for event in page.items], page.next_cursor)
