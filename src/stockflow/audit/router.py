from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from stockflow.api.deps import AdminPrincipal, ListParamsDep, SessionDep
from stockflow.api.problems import problem_responses
from stockflow.api.schemas import ListResponse
from stockflow.audit import service
from stockflow.audit.schemas import AuditEventRead

router = APIRouter(prefix="/audit-events", tags=["Audit"])


@router.get(
    "",
    summary="List audit events",
    description=(
        "Every change made by a staff or admin key (and by the command line), newest first, "
        "with the resource as it was before and after. Filter by `resource_type` and "
        "`resource_id`, by `actor_id` (a key's id, or `cli`) and by `action` (such as "
        "`product.updated` or `api_key.revoked`). Admin only."
    ),
    responses=problem_responses(403),
)
async def list_audit_events(
    session: SessionDep,
    _principal: AdminPrincipal,
    params: ListParamsDep,
    resource_type: Annotated[
        str | None, Query(max_length=40, description="Only changes to this kind of resource.")
    ] = None,
    resource_id: Annotated[
        str | None, Query(max_length=200, description="Only changes to this resource.")
    ] = None,
    actor_id: Annotated[
        str | None, Query(max_length=80, description="Only changes made by this key (or `cli`).")
    ] = None,
    action: Annotated[
        str | None, Query(max_length=80, description="Only this action, e.g. `order.cancelled`.")
    ] = None,
) -> ListResponse[AuditEventRead]:
    page = await service.list_events(
        session,
        limit=params.limit,
        cursor=params.cursor,
        resource_type=resource_type,
        resource_id=resource_id,
        actor_id=actor_id,
        action=action,
    )
    return ListResponse(data=page.items, next_cursor=page.next_cursor)
