"""Managing webhook endpoints (admin): registration with SSRF checks, secrets shown once
and rotated with an overlap, deliveries shown with every attempt, retries and replays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow import etags
from stockflow.audit import service as audit
from stockflow.auth.roles import Principal
from stockflow.db.models import Delivery, DeliveryAttempt, WebhookEndpoint
from stockflow.db.pagination import Page
from stockflow.errors import DeliveryInFlight, NotFound, UnsafeWebhookUrl
from stockflow.ids import new_id
from stockflow.webhooks import addresses, repository, schedule
from stockflow.webhooks.addresses import Resolver, UnsafeUrl
from stockflow.webhooks.schemas import (
    DeliveryAttemptRead,
    DeliveryRead,
    ReplayQueued,
    ReplayRequest,
    SecretRotated,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointRead,
    WebhookEndpointUpdate,
)
from stockflow.webhooks.secrets import SecretBox, new_secret, rotate

MAX_REPLAY = 10_000


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """What the composition root decides: the secret box, the SSRF policy, the resolver."""

    box: SecretBox
    allow_private: bool
    resolver: Resolver = addresses.system_resolver


async def checked_url(config: WebhookConfig, url: str, *, location: str = "body.url") -> str:
    """The URL, normalised, if webhooks may go there (see `addresses`); else a 422."""
    try:
        return await addresses.check(
            url, allow_private=config.allow_private, resolver=config.resolver
        )
    except UnsafeUrl as exc:
        raise UnsafeWebhookUrl(
            f"The URL {exc}.", errors=[{"location": location, "message": str(exc)}]
        ) from None


def etag_of(endpoint: WebhookEndpointRead) -> str:
    return etags.etag(endpoint.id, endpoint.version)


def _read(endpoint: WebhookEndpoint) -> WebhookEndpointRead:
    return WebhookEndpointRead.model_validate(endpoint)


async def _found(
    session: AsyncSession, endpoint_id: str, *, for_update: bool = False
) -> WebhookEndpoint:
    endpoint = await repository.get_endpoint(session, endpoint_id, for_update=for_update)
    if endpoint is None:
        raise NotFound(f"Webhook endpoint {endpoint_id} does not exist.")
    return endpoint


async def _audit(
    session: AsyncSession,
    actor: Principal,
    action: str,
    resource_id: str,
    before: WebhookEndpointRead | None,
    after: WebhookEndpointRead | None,
) -> None:
    await audit.record(
        session,
        actor=actor,
        action=action,
        resource_type="webhook_endpoint",
        resource_id=resource_id,
        before=None if before is None else before.model_dump(mode="json"),
        after=None if after is None else after.model_dump(mode="json"),
    )


async def create_endpoint(
    session: AsyncSession, *, actor: Principal, config: WebhookConfig, data: WebhookEndpointCreate
) -> WebhookEndpointCreated:
    url = await checked_url(config, data.url)
    now = datetime.now(UTC)
    secret = new_secret()
    endpoint = WebhookEndpoint(
        id=new_id("whe"),
        url=url,
        description=data.description,
        events=[str(kind) for kind in data.events],
        enabled=True,
        secret=config.box.seal(secret),
        created_by=actor.id,
        created_at=now,
        updated_at=now,
    )
    await repository.add_endpoint(session, endpoint)
    read = _read(endpoint)
    await _audit(session, actor, "webhook_endpoint.created", endpoint.id, None, read)
    return WebhookEndpointCreated(**read.model_dump(), secret=secret)


async def get_endpoint(session: AsyncSession, *, endpoint_id: str) -> WebhookEndpointRead:
    return _read(await _found(session, endpoint_id))


async def list_endpoints(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> Page[WebhookEndpointRead]:
    page = await repository.list_endpoints(session, limit=limit, cursor=cursor)
    return Page([_read(endpoint) for endpoint in page.items], page.next_cursor)


async def update_endpoint(
    session: AsyncSession,
    *,
    actor: Principal,
    config: WebhookConfig,
    endpoint_id: str,
    data: WebhookEndpointUpdate,
    if_match: str | None = None,
) -> WebhookEndpointRead:
    changes = data.model_dump(exclude_unset=True)
    # Resolved before the row is locked: no lock is held across a name lookup.
    url = await checked_url(config, changes["url"]) if "url" in changes else None
    endpoint = await _found(session, endpoint_id, for_update=True)
    before = _read(endpoint)
    etags.require_match(if_match, etag_of(before), what=f"Webhook endpoint {endpoint_id}")
    if url is not None:
        endpoint.url = url
    if "events" in changes:
        endpoint.events = [str(kind) for kind in changes["events"]]
    if "description" in changes:
        endpoint.description = changes["description"]
    if "enabled" in changes:
        endpoint.enabled = changes["enabled"]
        if endpoint.enabled:
            endpoint.disabled_reason = None
    if not session.is_modified(endpoint):
        return before
    endpoint.updated_at = datetime.now(UTC)
    await repository.save(session)
    after = _read(endpoint)
    await _audit(session, actor, "webhook_endpoint.updated", endpoint.id, before, after)
    return after


async def delete_endpoint(session: AsyncSession, *, actor: Principal, endpoint_id: str) -> None:
    before = _read(await _found(session, endpoint_id, for_update=True))
    await repository.delete_endpoint(session, endpoint_id)
    await _audit(session, actor, "webhook_endpoint.deleted", endpoint_id, before, None)


async def rotate_secret(
    session: AsyncSession, *, actor: Principal, config: WebhookConfig, endpoint_id: str
) -> SecretRotated:
    """A new secret; the current one keeps signing beside it for 24 hours, so receivers
    can switch without losing a delivery."""
    endpoint = await _found(session, endpoint_id, for_update=True)
    before = _read(endpoint)
    now = datetime.now(UTC)
    rotation = rotate(config.box, endpoint.secret, now=now)
    endpoint.secret = rotation.sealed
    endpoint.previous_secret = rotation.previous
    endpoint.previous_secret_expires_at = rotation.previous_expires_at
    endpoint.updated_at = now
    await repository.save(session)
    after = _read(endpoint)
    await _audit(session, actor, "webhook_endpoint.secret_rotated", endpoint.id, before, after)
    assert rotation.previous_expires_at is not None  # an endpoint always has a secret
    return SecretRotated(
        secret=rotation.secret, previous_secret_expires_at=rotation.previous_expires_at
    )


def _delivery_read(
    delivery: Delivery, event_type: str, attempts: list[DeliveryAttempt]
) -> DeliveryRead:
    return DeliveryRead(
        id=delivery.id,
        endpoint_id=delivery.target_id,
        event_id=delivery.event_id,
        event_type=event_type,
        status=delivery.status,
        attempt_count=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
        attempts=[DeliveryAttemptRead.model_validate(attempt) for attempt in attempts],
    )


async def list_deliveries(
    session: AsyncSession,
    *,
    endpoint_id: str,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> Page[DeliveryRead]:
    await _found(session, endpoint_id)
    page = await repository.list_deliveries(
        session, endpoint_id=endpoint_id, status=status, limit=limit, cursor=cursor
    )
    attempts = await repository.attempts_of(session, [delivery.id for delivery, _ in page.items])
    return Page(
        [
            _delivery_read(delivery, event_type, attempts[delivery.id])
            for delivery, event_type in page.items
        ],
        page.next_cursor,
    )


async def retry_delivery(
    session: AsyncSession, *, actor: Principal, delivery_id: str
) -> DeliveryRead:
    """Send again now: a dead (or delivered) delivery gets one more attempt; a pending one
    waiting for its next attempt is sent at once."""
    delivery = await repository.get_delivery(session, delivery_id, for_update=True)
    if delivery is None or delivery.target_type != "webhook":
        raise NotFound(f"Webhook delivery {delivery_id} does not exist.")
    now = datetime.now(UTC)
    if delivery.lease_until is not None and delivery.lease_until > now:
        raise DeliveryInFlight(f"Webhook delivery {delivery_id} is being sent right now.")
    max_attempts = (
        delivery.max_attempts
        if delivery.status == "pending"
        else max(delivery.attempts + 1, delivery.max_attempts)
    )
    # Its attempts cannot change while its row is locked and no lease is out.
    event_type = (await repository.event_types(session, [delivery.event_id]))[delivery.event_id]
    attempts = (await repository.attempts_of(session, [delivery_id]))[delivery_id]
    before = _delivery_read(delivery, event_type, attempts)
    max_attempts_before = delivery.max_attempts
    await repository.retry_delivery(
        session, delivery_id=delivery_id, now=now, max_attempts=max_attempts
    )
    delivery = await repository.get_delivery(session, delivery_id)
    assert delivery is not None
    read = _delivery_read(delivery, event_type, attempts)
    await audit.record(
        session,
        actor=actor,
        action="webhook_delivery.retried",
        resource_type="webhook_delivery",
        resource_id=delivery_id,
        before=_audited_delivery(before, max_attempts_before),
        after=_audited_delivery(read, max_attempts),
    )
    return read


def _audited_delivery(read: DeliveryRead, max_attempts: int) -> dict[str, Any]:
    """A delivery as the API shows it, without the attempts a retry leaves as they were,
    and with the number of attempts it is allowed, which a retry may raise."""
    return {**read.model_dump(mode="json", exclude={"attempts"}), "max_attempts": max_attempts}


async def replay(
    session: AsyncSession, *, actor: Principal, endpoint_id: str, data: ReplayRequest
) -> ReplayQueued:
    """New deliveries of past events to one endpoint (at most 10,000 per call, oldest
    first: call again with a later ``since`` for more)."""
    endpoint = await _found(session, endpoint_id)
    subscribed = endpoint.events
    if data.types is not None:
        types: list[str] | None = [kind.value for kind in data.types]
    elif "*" in subscribed:
        types = None
    else:
        types = subscribed
    found = await repository.past_events(
        session, since=data.since, until=data.until, types=types, limit=MAX_REPLAY
    )
    now = datetime.now(UTC)
    await repository.add_deliveries(
        session,
        [
            {
                "id": new_id("whd"),
                "event_id": event_id,
                "event_seq": seq,
                "object_id": object_id,
                "target_type": "webhook",
                "target_id": endpoint_id,
                "status": "pending",
                "attempts": 0,
                "max_attempts": schedule.MAX_ATTEMPTS,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for event_id, seq, object_id in found
        ],
    )
    await audit.record(
        session,
        actor=actor,
        action="webhook_endpoint.replayed",
        resource_type="webhook_endpoint",
        resource_id=endpoint_id,
        before=None,
        after={**data.model_dump(mode="json"), "queued": len(found)},
    )
    return ReplayQueued(queued=len(found))
