from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Text, case, cast, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.customers.erasure import ERASED, ERASED_NAME, PersonalData
from stockflow.db.models import (
    ApiKey,
    AuditRecord,
    Customer,
    Delivery,
    DeliveryAttempt,
    Event,
    IdempotencyRecord,
    InboxMessage,
    Order,
    Payment,
    Refund,
    StockMovement,
)
from stockflow.db.pagination import Page, paginate


async def get(session: AsyncSession, customer_id: str) -> Customer | None:
    return await session.get(Customer, customer_id)


async def get_by_external_ref(session: AsyncSession, external_ref: str) -> Customer | None:
    return await session.scalar(select(Customer).where(Customer.external_ref == external_ref))


async def add(session: AsyncSession, customer: Customer) -> Customer | None:
    """Insert the customer; None when its ``external_ref`` is taken.

    The caller's earlier look-up cannot see a customer that a concurrent transaction has
    inserted but not yet committed; only the unique constraint catches that one. The savepoint
    keeps the request's transaction usable after the refused insert.
    """
    try:
        async with session.begin_nested():
            session.add(customer)
            await session.flush()
    except IntegrityError as exc:
        if customer.external_ref is not None and "external_ref" in str(exc.orig):
            return None
        raise
    return customer


async def list_page(
    session: AsyncSession, *, limit: int, cursor: str | None, only_id: str | None = None
) -> Page[Customer]:
    stmt = select(Customer)
    if only_id is not None:
        stmt = stmt.where(Customer.id == only_id)
    return await paginate(session, stmt, Customer.id, limit=limit, cursor=cursor)


# Erasure: the rare, admin-only path that finds every copy of a customer's personal data.
# It reads whole tables where a copy may hide in a document, so it is batched by id.
_ID_BATCH = 50


@dataclass(frozen=True, slots=True)
class Footprint:
    """The customer's own records, locked: its orders (with their metadata), payments,
    refunds and API keys."""

    customer: Customer
    orders: dict[str, dict[str, Any]]
    payments: list[str]
    refunds: list[str]
    keys: list[str]

    @property
    def linked_ids(self) -> list[str]:
        """Every id whose mention makes a document one about this customer."""
        return [self.customer.id, *self.orders, *self.payments, *self.refunds]


async def footprint(session: AsyncSession, customer_id: str) -> Footprint | None:
    customer = await session.scalar(
        select(Customer).where(Customer.id == customer_id).with_for_update()
    )
    if customer is None:
        return None
    orders = {
        order_id: metadata or {}
        for order_id, metadata in await session.execute(
            select(Order.id, Order.metadata_)
            .where(Order.customer_id == customer_id)
            .order_by(Order.id)
            .with_for_update()
        )
    }
    payments: list[str] = []
    refunds: list[str] = []
    for batch in _batches(list(orders)):
        payments += await session.scalars(select(Payment.id).where(Payment.order_id.in_(batch)))
        refunds += await session.scalars(select(Refund.id).where(Refund.order_id.in_(batch)))
    keys = list(await session.scalars(select(ApiKey.id).where(ApiKey.customer_id == customer_id)))
    return Footprint(customer, orders, payments, refunds, keys)


def _batches(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), _ID_BATCH):
        yield ids[start : start + _ID_BATCH]


def _mentions(column: Any, ids: Sequence[str]) -> ColumnElement[bool]:
    text_ = cast(column, Text)
    return or_(*(text_.contains(value, autoescape=True) for value in ids))


async def erase_records(
    session: AsyncSession, found: Footprint, personal: PersonalData, *, now: datetime
) -> None:
    """Rewrite the customer, its orders, payments, refunds and keys, and every stored
    document that mentions one of them, without the customer's personal data."""
    customer = found.customer
    customer.name = ERASED_NAME
    customer.email = None
    customer.phone = None
    customer.external_ref = None
    customer.metadata_ = {}
    customer.erased_at = now
    customer.updated_at = now
    order_ids = list(found.orders)
    for batch in _batches(order_ids):
        await session.execute(
            update(Order)
            .where(Order.id.in_(batch))
            .values(
                metadata_={},
                cancel_reason=case((Order.cancel_reason.is_(None), None), else_=ERASED),
            )
        )
        await session.execute(
            update(Payment).where(Payment.order_id.in_(batch)).values(reference=None)
        )
        await session.execute(
            update(Refund).where(Refund.order_id.in_(batch)).values(reason=ERASED)
        )
        await session.execute(
            update(StockMovement)
            .where(StockMovement.order_id.in_(batch))
            .where(StockMovement.note.is_not(None))
            .values(note=ERASED)
        )
    if found.keys:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id.in_(found.keys))
            .values(
                name=ERASED,
                revoked_at=func.coalesce(ApiKey.revoked_at, now),
            )
        )
    await session.flush()
    await _rewrite_documents(session, found.linked_ids, personal)


async def _rewrite_documents(
    session: AsyncSession, linked: Sequence[str], personal: PersonalData
) -> None:
    """Each stored document (event data, audit before/after, idempotent response, inbox
    message, delivery error) that mentions one of ``linked``, scrubbed."""
    for batch in _batches(linked):
        for event_seq, data in await session.execute(
            select(Event.seq, Event.data).where(
                or_(Event.object_id.in_(batch), _mentions(Event.data, batch))
            )
        ):
            await session.execute(
                update(Event)
                .where(Event.seq == event_seq)
                .values(data=personal.scrub_document(data))
            )
        for audit_id, resource_id, before, after in await session.execute(
            select(
                AuditRecord.id, AuditRecord.resource_id, AuditRecord.before, AuditRecord.after
            ).where(
                or_(
                    AuditRecord.resource_id.in_(batch),
                    _mentions(AuditRecord.before, batch),
                    _mentions(AuditRecord.after, batch),
                )
            )
        ):
            await session.execute(
                update(AuditRecord)
                .where(AuditRecord.id == audit_id)
                .values(
                    resource_id=personal.scrub_text(resource_id),
                    before=personal.scrub(before),
                    after=personal.scrub(after),
                )
            )
        for principal_id, key, body in await session.execute(
            select(
                IdempotencyRecord.principal_id,
                IdempotencyRecord.key,
                IdempotencyRecord.response_body,
            ).where(_mentions(IdempotencyRecord.response_body, batch))
        ):
            if body is None:
                continue
            await session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.principal_id == principal_id)
                .where(IdempotencyRecord.key == key)
                .values(response_body=personal.scrub_document(body))
            )
        for message_id, body, error in await session.execute(
            select(InboxMessage.id, InboxMessage.body, InboxMessage.error).where(
                _mentions(InboxMessage.body, batch)
            )
        ):
            await session.execute(
                update(InboxMessage)
                .where(InboxMessage.id == message_id)
                .values(
                    body=personal.scrub_document(body),
                    error=None if error is None else personal.scrub_text(error),
                )
            )
        deliveries = list(
            await session.execute(
                select(Delivery.id, Delivery.last_error).where(
                    or_(Delivery.object_id.in_(batch), Delivery.target_id.in_(batch))
                )
            )
        )
        for delivery_id, last_error in deliveries:
            if last_error is not None:
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id == delivery_id)
                    .values(last_error=personal.scrub_text(last_error))
                )
        for delivery_batch in _batches([row[0] for row in deliveries]):
            for attempt_id, error in await session.execute(
                select(DeliveryAttempt.id, DeliveryAttempt.error)
                .where(DeliveryAttempt.delivery_id.in_(delivery_batch))
                .where(DeliveryAttempt.error.is_not(None))
            ):
                if error is None:
                    continue
                await session.execute(
                    update(DeliveryAttempt)
                    .where(DeliveryAttempt.id == attempt_id)
                    .values(error=personal.scrub_text(error))
                )
