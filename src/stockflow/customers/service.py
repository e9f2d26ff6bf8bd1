"""Customers: created by staff or by a storefront's backend, visible to themselves."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.audit import service as audit
from stockflow.auth.roles import Principal
from stockflow.customers import repository
from stockflow.customers.erasure import PersonalData
from stockflow.customers.schemas import CustomerCreate, CustomerRead
from stockflow.db.models import Customer
from stockflow.db.pagination import Page
from stockflow.errors import AlreadyExists, NotFound
from stockflow.ids import new_id


def _taken(external_ref: str | None) -> AlreadyExists:
    return AlreadyExists(f"A customer with external_ref {external_ref!r} already exists.")


async def create_customer(
    session: AsyncSession, *, actor: Principal, data: CustomerCreate
) -> CustomerRead:
    if data.external_ref is not None and (
        await repository.get_by_external_ref(session, data.external_ref) is not None
    ):
        raise _taken(data.external_ref)
    now = datetime.now(UTC)
    customer = await repository.add(
        session,
        Customer(
            id=new_id("cus"),
            name=data.name,
            email=str(data.email) if data.email is not None else None,
            phone=data.phone,
            external_ref=data.external_ref,
            metadata_=data.metadata,
            created_at=now,
            updated_at=now,
        ),
    )
    if customer is None:
        # Inserted meanwhile by a transaction that had not committed when we looked.
        raise _taken(data.external_ref)
    read = CustomerRead.model_validate(customer)
    await audit.record(
        session,
        actor=actor,
        action="customer.created",
        resource_type="customer",
        resource_id=customer.id,
        before=None,
        after=read.model_dump(mode="json"),
    )
    return read


async def get_customer(
    session: AsyncSession, *, viewer: Principal, customer_id: str
) -> CustomerRead:
    # A customer asking for someone else gets the same answer as for no one at all.
    customer = None
    if not viewer.is_customer or viewer.customer_id == customer_id:
        customer = await repository.get(session, customer_id)
    if customer is None:
        raise NotFound(f"Customer {customer_id} does not exist.")
    return CustomerRead.model_validate(customer)


async def list_customers(
    session: AsyncSession, *, viewer: Principal, limit: int, cursor: str | None
) -> Page[CustomerRead]:
    only_id = viewer.customer_id if viewer.is_customer else None
    page = await repository.list_page(session, limit=limit, cursor=cursor, only_id=only_id)
    return Page([CustomerRead.model_validate(c) for c in page.items], page.next_cursor)


async def erase_customer(
    session: AsyncSession, *, actor: Principal, customer_id: str
) -> CustomerRead:
    """Erase the customer's personal data everywhere it was kept, keeping its orders'
    quantities and money, its payments and the stock ledger; revoke its API keys.

    Erasing again finds what a later copy may have added, so it is safe to repeat. The
    audit record says who erased whom and when, and holds no personal data itself.
    """
    found = await repository.footprint(session, customer_id)
    if found is None:
        raise NotFound(f"Customer {customer_id} does not exist.")
    customer = found.customer
    personal = PersonalData.of(
        name=customer.name,
        email=customer.email,
        phone=customer.phone,
        external_ref=customer.external_ref,
        documents=[customer.metadata_, *found.orders.values()],
    )
    before = {
        "id": customer.id,
        "erased_at": CustomerRead.model_validate(customer).model_dump(mode="json")["erased_at"],
    }
    now = datetime.now(UTC)
    await repository.erase_records(session, found, personal, now=now)
    read = CustomerRead.model_validate(customer)
    await audit.record(
        session,
        actor=actor,
        action="customer.erased",
        resource_type="customer",
        resource_id=customer.id,
        before=before,
        after={
            **read.model_dump(mode="json"),
            "orders": len(found.orders),
            "api_keys_revoked": found.keys,
        },
    )
    return read
