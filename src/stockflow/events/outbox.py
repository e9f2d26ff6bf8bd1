"""Writing events: always through the caller's transaction, so an event exists exactly
when the change it tells of committed (a rollback takes both away)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.events import repository
from stockflow.events.types import EventType
from stockflow.ids import new_id
from stockflow.observability import tracing


def render_data(obj: BaseModel, **extra: Any) -> str:
    """The event's ``data`` member as receivers get it: the object as the API shows it
    (the same serializer as the API's responses), and any extra members after it."""
    if not extra:
        return '{"object":' + obj.model_dump_json(by_alias=True) + "}"
    return to_json({"object": obj, **extra}, by_alias=True).decode()


def event_row(
    event_type: EventType,
    *,
    object_type: str,
    object_id: str,
    data: str,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": new_id("evt"),
        "type": event_type.value,
        "object_type": object_type,
        "object_id": object_id,
        "data": data,
        "created_at": now,
        "trace_context": tracing.traceparent(),
    }


async def record(
    session: AsyncSession,
    event_type: EventType,
    *,
    object_type: str,
    object_id: str,
    obj: BaseModel,
    now: datetime,
    **extra: Any,
) -> None:
    """Write one event. Callers hold the lock of the object's row (or have just inserted
    it), so an object's events are numbered in the order they commit."""
    await repository.add(
        session,
        [
            event_row(
                event_type,
                object_type=object_type,
                object_id=object_id,
                data=render_data(obj, **extra),
                now=now,
            )
        ],
    )
