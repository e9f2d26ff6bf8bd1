"""The relay's queries: handing events to their receivers (fan-out), claiming due
deliveries under a lease, and writing what each attempt got.

Claims take rows with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite's single writer
serialises them anyway), never "everything after the last id seen": ids and sequence
numbers are given at insert, and a transaction that commits late would be skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from stockflow.db.base import table_of
from stockflow.db.models import (
    Customer,
    Delivery,
    DeliveryAttempt,
    Event,
    ReadinessCheck,
    Supplier,
    WebhookEndpoint,
)

_INSERT_ATTEMPT = insert(table_of(DeliveryAttempt))


@dataclass(frozen=True, slots=True)
class NewEvent:
    seq: int
    id: str
    type: str
    object_id: str
    created_at: datetime
    data: str | None
    """Only for the types whose receivers are found in the event itself (the supplier of a
    purchase order, the customer of an order)."""


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: str
    events: list[str]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Work:
    readiness: bool
    undispatched: bool
    claimable: bool


async def work_waiting(session: AsyncSession, *, now: datetime) -> Work:
    """A read first, with the claim's own filters, so that an idle relay (or one whose
    due deliveries all wait behind others) takes no write lock on its polls."""
    checks = select(ReadinessCheck.id).limit(1)
    undispatched = select(Event.seq).where(Event.dispatched_at.is_(None)).limit(1)
    claimable = _claimable(now, ()).limit(1)
    return Work(
        (await session.scalar(checks)) is not None,
        (await session.scalar(undispatched)) is not None,
        (await session.scalar(claimable)) is not None,
    )


async def claim_undispatched(
    session: AsyncSession, *, limit: int, with_data: Sequence[str]
) -> list[NewEvent]:
    rows = await session.execute(
        select(
            Event.seq,
            Event.id,
            Event.type,
            Event.object_id,
            Event.created_at,
            case((Event.type.in_(with_data), Event.data), else_=None),
        )
        .where(Event.dispatched_at.is_(None))
        .order_by(Event.seq)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [NewEvent(*row) for row in rows]


async def subscribers(session: AsyncSession) -> list[Subscriber]:
    """Every endpoint, enabled or not (a disabled one's deliveries wait for it), held
    ``FOR SHARE`` so that one deleted meanwhile cannot be handed deliveries nobody claims."""
    rows = await session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.events, WebhookEndpoint.created_at)
        .order_by(WebhookEndpoint.id)
        .with_for_update(read=True)
    )
    return [Subscriber(*row) for row in rows]


async def suppliers_sent_to(session: AsyncSession, supplier_ids: Sequence[str]) -> set[str]:
    """Those of these suppliers whose connector sends (webhook or e-mail, not manual)."""
    if not supplier_ids:
        return set()
    rows = await session.execute(
        select(Supplier.id, Supplier.connector).where(Supplier.id.in_(supplier_ids))
    )
    return {row[0] for row in rows if row[1].get("type") in ("webhook", "email")}


async def customers_with_email(session: AsyncSession, customer_ids: Sequence[str]) -> set[str]:
    if not customer_ids:
        return set()
    rows = await session.scalars(
        select(Customer.id).where(Customer.id.in_(customer_ids)).where(Customer.email.is_not(None))
    )
    return set(rows.all())


async def mark_dispatched(session: AsyncSession, seqs: Sequence[int], *, now: datetime) -> None:
    await session.execute(
        update(Event)
        .where(Event.seq.in_(seqs))
        .values(dispatched_at=now)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed delivery, with what sending it needs: for a webhook endpoint its URL and
    secrets; for a supplier its connector and secrets; for an e-mail its address."""

    delivery_id: str
    lease_token: str
    attempts: int
    max_attempts: int
    target_type: str
    target_id: str
    event_id: str
    event_type: str
    event_created_at: datetime
    data: str
    trace_context: str | None = None
    url: str | None = None
    secret: str | None = None
    previous_secret: str | None = None
    previous_secret_expires_at: datetime | None = None
    connector: dict[str, str] | None = None
    name: str | None = None
    email: str | None = None


def _endpoint_of_delivery() -> Any:
    return and_(Delivery.target_type == "webhook", WebhookEndpoint.id == Delivery.target_id)


def _claimable(now: datetime, busy_targets: Sequence[str]) -> Any:
    earlier = aliased(Delivery)
    stmt = (
        select(Delivery.id)
        .outerjoin(WebhookEndpoint, _endpoint_of_delivery())
        .where(Delivery.status == "pending")
        .where(Delivery.next_attempt_at <= now)
        .where(or_(Delivery.lease_until.is_(None), Delivery.lease_until <= now))
        # A disabled endpoint's deliveries wait for it to be enabled again.
        .where(or_(Delivery.target_type != "webhook", WebhookEndpoint.enabled.is_(True)))
        # An object's events reach a receiver in the order they happened: a delivery waits
        # while an earlier one of its object to the same receiver is still pending...
        .where(
            ~exists().where(
                and_(
                    earlier.target_id == Delivery.target_id,
                    earlier.object_id == Delivery.object_id,
                    earlier.event_seq < Delivery.event_seq,
                    earlier.status == "pending",
                )
            )
        )
        # ...or while an earlier event of its object has not been handed out yet.
        .where(
            ~exists().where(
                and_(
                    Event.object_id == Delivery.object_id,
                    Event.seq < Delivery.event_seq,
                    Event.dispatched_at.is_(None),
                )
            )
        )
    )
    if busy_targets:
        stmt = stmt.where(Delivery.target_id.not_in(busy_targets))
    return stmt


async def claim_due(
    session: AsyncSession,
    *,
    now: datetime,
    lease_until: datetime,
    lease_token: str,
    limit: int,
    busy_targets: Sequence[str] = (),
) -> list[Job]:
    """Lease up to ``limit`` due deliveries (soonest first) and return them as jobs."""
    chosen = (
        _claimable(now, busy_targets)
        .order_by(Delivery.next_attempt_at, Delivery.event_seq)
        .limit(limit)
        .with_for_update(of=Delivery, skip_locked=True)
    )
    claimed = list(
        (
            await session.scalars(
                update(Delivery)
                .where(Delivery.id.in_(chosen.scalar_subquery()))
                .values(lease_until=lease_until, lease_token=lease_token, updated_at=now)
                .returning(Delivery.id)
                .execution_options(synchronize_session=False)
            )
        ).all()
    )
    if not claimed:
        return []
    rows = await session.execute(
        select(Delivery, Event, WebhookEndpoint, Supplier, Customer)
        .join(Event, Event.id == Delivery.event_id)
        .outerjoin(WebhookEndpoint, _endpoint_of_delivery())
        .outerjoin(
            Supplier, and_(Delivery.target_type == "supplier", Supplier.id == Delivery.target_id)
        )
        .outerjoin(
            Customer, and_(Delivery.target_type == "email", Customer.id == Delivery.target_id)
        )
        .where(Delivery.id.in_(claimed))
        .order_by(Delivery.next_attempt_at, Delivery.event_seq)
    )
    return [_job(lease_token, *row) for row in rows]


def _job(
    lease_token: str,
    delivery: Delivery,
    event: Event,
    endpoint: WebhookEndpoint | None,
    supplier: Supplier | None,
    customer: Customer | None,
) -> Job:
    job = Job(
        delivery_id=delivery.id,
        lease_token=lease_token,
        attempts=delivery.attempts,
        max_attempts=delivery.max_attempts,
        target_type=delivery.target_type,
        target_id=delivery.target_id,
        event_id=event.id,
        event_type=event.type,
        event_created_at=event.created_at,
        data=event.data,
        trace_context=event.trace_context,
    )
    if endpoint is not None:
        return replace(
            job,
            url=endpoint.url,
            secret=endpoint.secret,
            previous_secret=endpoint.previous_secret,
            previous_secret_expires_at=endpoint.previous_secret_expires_at,
        )
    if supplier is not None:
        return replace(
            job,
            url=supplier.connector.get("url"),
            secret=supplier.secret,
            previous_secret=supplier.previous_secret,
            previous_secret_expires_at=supplier.previous_secret_expires_at,
            connector=dict(supplier.connector),
            name=supplier.name,
            email=supplier.connector.get("to"),
        )
    if customer is not None:
        return replace(job, name=customer.name, email=customer.email)
    # Its receiver is gone (a deleted endpoint): the attempt fails and the delivery ends.
    return job


async def release(session: AsyncSession, delivery_ids: Sequence[str]) -> None:
    """Hand claimed deliveries back untried."""
    await session.execute(
        update(Delivery)
        .where(Delivery.id.in_(delivery_ids))
        .values(lease_until=None, lease_token=None)
        .execution_options(synchronize_session=False)
    )


async def record_attempt(
    session: AsyncSession,
    *,
    attempt_id: str,
    delivery_id: str,
    now: datetime,
    status_code: int | None,
    latency_ms: int,
    error: str | None,
) -> None:
    await (await session.connection()).execute(
        _INSERT_ATTEMPT,
        [
            {
                "id": attempt_id,
                "delivery_id": delivery_id,
                "attempted_at": now,
                "status_code": status_code,
                "latency_ms": latency_ms,
                "error": error,
            }
        ],
    )


async def finish(session: AsyncSession, *, job: Job, values: dict[str, Any], now: datetime) -> bool:
    """Write an attempt's result, if the lease is still this worker's (a worker whose
    lease ran out lost the delivery to another, which writes its own result)."""
    result = await session.execute(
        update(Delivery)
        .where(Delivery.id == job.delivery_id)
        .where(Delivery.lease_token == job.lease_token)
        .values(**values, lease_until=None, lease_token=None, updated_at=now)
        .returning(literal(1))
        .execution_options(synchronize_session=False)
    )
    return result.first() is not None


async def disable_endpoint(
    session: AsyncSession, *, endpoint_id: str, reason: str, now: datetime
) -> None:
    await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .values(
            enabled=False,
            disabled_reason=reason,
            updated_at=now,
            version=WebhookEndpoint.version + 1,
        )
        .execution_options(synchronize_session=False)
    )
