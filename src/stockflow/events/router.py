from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from stockflow.api.deps import ListParamsDep, SessionDep, StaffPrincipal
from stockflow.api.problems import problem_responses
from stockflow.api.schemas import ListResponse, ResourceId
from stockflow.events import service
from stockflow.events.schemas import EventRead
from stockflow.events.types import DESCRIPTIONS, EventType

router = APIRouter(prefix="/events", tags=["Events"])

_TYPES = "\n".join(f"- `{kind.value}`: {text}" for kind, text in DESCRIPTIONS.items())


@router.get(
    "",
    summary="List events",
    description=(
        "Newest first; staff and admin keys. Every change writes its events in the same "
        "transaction, so an event exists exactly when its change committed. Filter by "
        "`type` (repeat it for several) and by `object_id` (an order's, a purchase "
        "order's or a product's id).\n\nTypes:\n" + _TYPES
    ),
    responses=problem_responses(403),
)
async def list_events(
    session: SessionDep,
    principal: StaffPrincipal,
    params: ListParamsDep,
    type_: Annotated[
        list[EventType] | None, Query(alias="type", description="Only these types.")
    ] = None,
    object_id: Annotated[
        str | None, Query(max_length=40, description="Only events of this object.")
    ] = None,
) -> ListResponse[EventRead]:
    page = await service.list_events(
        session,
        limit=params.limit,
        cursor=params.cursor,
        types=[kind.value for kind in type_ or ()],
        object_id=object_id,
    )
    return ListResponse(data=page.items, next_cursor=page.next_cursor)


@router.get(
    "/{event_id}",
    summary="Get an event",
    description="Staff and admin keys.",
    responses=problem_responses(403),
)
async def get_event(
    event_id: ResourceId, session: SessionDep, principal: StaffPrincipal
) -> EventRead:
    return await service.get_event(session, event_id=event_id)
