"""The audit trail: one record per mutation, written in the mutation's own transaction so
that a change and its record commit or vanish together."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.audit import repository
from stockflow.audit.schemas import AuditEventRead
from stockflow.auth.roles import Principal
from stockflow.db.base import utcnow
from stockflow.db.pagination import Page
from stockflow.ids import new_id
from stockflow.observability.logging import request_id_var


async def record(
    session: AsyncSession,
    *,
    actor: Principal,
    action: str,
    resource_type: str,
    resource_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    await repository.add(
        session,
        {
            "id": new_id("aud"),
            "actor_id": actor.id,
            "actor_role": actor.role.value,
            "action": action,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "before": before,
            "after": after,
            "request_id": request_id_var.get(),
            "created_at": utcnow(),
        },
    )


async def list_events(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    resource_type: str | None,
    resource_id: str | None,
    actor_id: str | None,
    action: str | None,
) -> Page[AuditEventRead]:
    page = await repository.list_page(
        session,
        limit=limit,
        cursor=cursor,
        resource_type=resource_type,
        resource_id=resource_id,
        actor_id=actor_id,
        action=action,
    )
    return Page([AuditEventRead.model_validate(r) for r in page.items], page.next_cursor)
