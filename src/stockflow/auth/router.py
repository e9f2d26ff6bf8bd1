from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse

from stockflow.api.deps import AdminPrincipal, ListParamsDep, SessionDep
from stockflow.api.idempotency import IdempotencyDep
from stockflow.api.problems import problem_responses
from stockflow.api.schemas import ListResponse, ResourceId
from stockflow.auth import service
from stockflow.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead, ApiKeyRotate

# Every operation here is the admin's alone.
router = APIRouter(prefix="/api-keys", tags=["API keys"], responses=problem_responses(403))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key",
    description=(
        "Issues a key for a role (`admin`, `staff`, `service`, or `customer` bound to one "
        "customer). The response holds the key itself: it is shown once, only its hash is "
        "stored. Admin only. With `Idempotency-Key`, a replay answers with `key: null`."
    ),
    response_model=ApiKeyCreated,
)
async def create_api_key(
    data: ApiKeyCreate,
    session: SessionDep,
    principal: AdminPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    # A replay says the key was created but does not show it again.
    return await idempotency.respond(
        lambda: service.create_key(session, actor=principal, data=data),
        secret_fields=frozenset({"key"}),
    )


@router.get(
    "",
    summary="List API keys",
    description="Newest first. Revoked keys are included only when asked. Admin only.",
)
async def list_api_keys(
    session: SessionDep,
    _principal: AdminPrincipal,
    params: ListParamsDep,
    include_revoked: Annotated[bool, Query(description="Also list revoked keys.")] = False,
) -> ListResponse[ApiKeyRead]:
    page = await service.list_keys(
        session, limit=params.limit, cursor=params.cursor, include_revoked=include_revoked
    )
    return ListResponse(data=page.items, next_cursor=page.next_cursor)


@router.get("/{key_id}", summary="Get an API key", description="Admin only.")
async def get_api_key(
    key_id: ResourceId, session: SessionDep, _principal: AdminPrincipal
) -> ApiKeyRead:
    return await service.get_key(session, key_id=key_id)


@router.post(
    "/{key_id}/rotate",
    status_code=status.HTTP_201_CREATED,
    summary="Rotate an API key",
    description=(
        "Issues a new key with the same name, role and customer, and shows it once. The old "
        "key keeps working for `grace_seconds` (default a day; 0 ends it at once), then is "
        "refused; it records the new key's id in `replaced_by`. A revoked, expired or already "
        "rotated key cannot be rotated (422). Admin only. With `Idempotency-Key`, a replay "
        "answers with `key: null`."
    ),
    response_model=ApiKeyCreated,
    responses={404: {"description": "No such key"}, 422: {"description": "Cannot rotate"}},
)
async def rotate_api_key(
    key_id: ResourceId,
    session: SessionDep,
    principal: AdminPrincipal,
    idempotency: IdempotencyDep,
    data: ApiKeyRotate | None = None,
) -> JSONResponse:
    return await idempotency.respond(
        lambda: service.rotate_key(
            session, actor=principal, key_id=key_id, data=data or ApiKeyRotate()
        ),
        secret_fields=frozenset({"key"}),
    )


@router.delete(
    "/{key_id}",
    summary="Revoke an API key",
    description=(
        "The key is refused from the next request on. The record stays, with `revoked_at` "
        "set, so the audit trail keeps its name. Admin only."
    ),
)
async def revoke_api_key(
    key_id: ResourceId, session: SessionDep, principal: AdminPrincipal
) -> ApiKeyRead:
    return await service.revoke_key(session, actor=principal, key_id=key_id)
