"""API keys: authenticate a caller, issue, list and revoke keys."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.audit import service as audit
from stockflow.auth import repository
from stockflow.auth.keys import display_prefix, generate_key, hash_key, is_well_formed
from stockflow.auth.roles import Principal, Role
from stockflow.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from stockflow.customers import repository as customers_repository
from stockflow.db.models import ApiKey
from stockflow.db.pagination import Page
from stockflow.errors import AuthenticationRequired, InvalidRequest, NotFound
from stockflow.ids import new_id


async def authenticate(session: AsyncSession, raw_key: str) -> tuple[Principal, datetime | None]:
    """The caller behind a key, and when the key was last seen in use."""
    if not is_well_formed(raw_key):
        raise AuthenticationRequired("The API key is not valid.")
    key = await repository.get_by_hash(session, hash_key(raw_key))
    if key is None:
        raise AuthenticationRequired("The API key is not valid.")
    if key.revoked_at is not None:
        raise AuthenticationRequired("The API key has been revoked.")
    principal = Principal(
        id=key.id, role=Role(key.role), name=key.name, customer_id=key.customer_id
    )
    return principal, key.last_used_at


async def create_key(
    session: AsyncSession, *, actor: Principal, data: ApiKeyCreate
) -> ApiKeyCreated:
    if data.customer_id is not None and (
        await customers_repository.get(session, data.customer_id) is None
    ):
        raise InvalidRequest(
            "The customer does not exist.",
            errors=[{"location": "body.customer_id", "message": "unknown customer"}],
        )
    raw_key = generate_key()
    key = await repository.add(
        session,
        ApiKey(
            id=new_id("key"),
            name=data.name,
            role=data.role.value,
            customer_id=data.customer_id,
            key_hash=hash_key(raw_key),
            prefix=display_prefix(raw_key),
            created_by=actor.id,
            created_at=datetime.now(UTC),
        ),
    )
    read = ApiKeyRead.model_validate(key)
    await audit.record(
        session,
        actor=actor,
        action="api_key.created",
        resource_type="api_key",
        resource_id=key.id,
        before=None,
        after=read.model_dump(mode="json"),
    )
    return ApiKeyCreated(**read.model_dump(), key=raw_key)


async def list_keys(
    session: AsyncSession, *, limit: int, cursor: str | None, include_revoked: bool
) -> Page[ApiKeyRead]:
    page = await repository.list_page(
        session, limit=limit, cursor=cursor, include_revoked=include_revoked
    )
    return Page([ApiKeyRead.model_validate(key) for key in page.items], page.next_cursor)


async def get_key(session: AsyncSession, *, key_id: str) -> ApiKeyRead:
    key = await repository.get(session, key_id)
    if key is None:
        raise NotFound(f"API key {key_id} does not exist.")
    return ApiKeyRead.model_validate(key)


async def revoke_key(session: AsyncSession, *, actor: Principal, key_id: str) -> ApiKeyRead:
    """Revoke a key; it is refused from the next request on. Revoking twice is harmless."""
    key = await repository.get(session, key_id)
    if key is None:
        raise NotFound(f"API key {key_id} does not exist.")
    before = ApiKeyRead.model_validate(key)
    if key.revoked_at is not None:
        return before
    revoked = await repository.revoke(session, key_id, now=datetime.now(UTC))
    # Reload either way: a concurrent request may have revoked it first, and then its
    # revocation (and its audit record) stands.
    key = await repository.get_fresh(session, key_id)
    assert key is not None  # keys are never deleted
    after = ApiKeyRead.model_validate(key)
    if revoked:
        await audit.record(
            session,
            actor=actor,
            action="api_key.revoked",
            resource_type="api_key",
            resource_id=key.id,
            before=before.model_dump(mode="json"),
            after=after.model_dump(mode="json"),
        )
    return after
