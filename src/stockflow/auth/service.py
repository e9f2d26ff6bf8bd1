"""API keys: authenticate a caller, issue, list and revoke keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.audit import service as audit
from stockflow.auth import repository
from stockflow.auth.keys import display_prefix, generate_key, hash_key, is_well_formed
from stockflow.auth.roles import Principal, Role
from stockflow.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead, ApiKeyRotate
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
    if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
        raise AuthenticationRequired("The API key has expired.")
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
    now = datetime.now(UTC)
    if data.expires_at is not None and data.expires_at <= now:
        raise InvalidRequest(
            "A key cannot be created already expired.",
            errors=[{"location": "body.expires_at", "message": "must be in the future"}],
        )
    created = await _issue(session, actor=actor, data=data, now=now)
    await audit.record(
        session,
        actor=actor,
        action="api_key.created",
        resource_type="api_key",
        resource_id=created.id,
        before=None,
        after=_shown(created),
    )
    return created


def _shown(created: ApiKeyCreated) -> dict[str, Any]:
    """The key's read view, for the audit trail: never the key itself."""
    return created.model_dump(mode="json", exclude={"key"})


async def _issue(
    session: AsyncSession, *, actor: Principal, data: ApiKeyCreate, now: datetime
) -> ApiKeyCreated:
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
            created_at=now,
            expires_at=data.expires_at,
        ),
    )
    return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), key=raw_key)


async def rotate_key(
    session: AsyncSession, *, actor: Principal, key_id: str, data: ApiKeyRotate
) -> ApiKeyCreated:
    """A new key with the old one's name, role and customer; the old one keeps working for
    the grace period (never longer than it already would), then is refused.

    A rotation is one change and writes one audit record, on the old key, with the
    replacement's read view in ``after``; the old key's ``replaced_by`` names it."""
    old = await repository.get(session, key_id)
    if old is None:
        raise NotFound(f"API key {key_id} does not exist.")
    now = datetime.now(UTC)
    if old.revoked_at is not None or (old.expires_at is not None and old.expires_at <= now):
        raise InvalidRequest(f"API key {key_id} is revoked or expired: create a new one.")
    if old.replaced_by is not None:
        raise InvalidRequest(f"API key {key_id} was already rotated, to {old.replaced_by}.")
    before = ApiKeyRead.model_validate(old)
    created = await _issue(
        session,
        actor=actor,
        data=ApiKeyCreate.model_construct(
            name=old.name,
            role=Role(old.role),
            customer_id=old.customer_id,
            expires_at=old.expires_at,
        ),
        now=now,
    )
    grace_end = now + timedelta(seconds=data.grace_seconds)
    if not await repository.expire(session, key_id, at=grace_end, replaced_by=created.id):
        # Revoked or rotated by a concurrent request since it was read: that one stands.
        raise InvalidRequest(f"API key {key_id} was revoked or rotated meanwhile.")
    old = await repository.get_fresh(session, key_id)
    assert old is not None  # keys are never deleted
    await audit.record(
        session,
        actor=actor,
        action="api_key.rotated",
        resource_type="api_key",
        resource_id=key_id,
        before=before.model_dump(mode="json"),
        after={
            **ApiKeyRead.model_validate(old).model_dump(mode="json"),
            "replacement": _shown(created),
        },
    )
    return created


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
