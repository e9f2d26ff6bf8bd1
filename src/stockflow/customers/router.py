from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.responses import JSONResponse

from stockflow.api.deps import AdminPrincipal, AnyPrincipal, ListParamsDep, SessionDep, require
from stockflow.api.idempotency import IdempotencyDep
from stockflow.api.problems import problem_responses
from stockflow.api.schemas import ListResponse, ResourceId
from stockflow.auth.roles import Principal, Role
from stockflow.customers import service
from stockflow.customers.schemas import CustomerCreate, CustomerRead

router = APIRouter(prefix="/customers", tags=["Customers"])

CreatorPrincipal = Annotated[Principal, Depends(require(Role.ADMIN, Role.STAFF, Role.SERVICE))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a customer",
    description=(
        "Admin, staff and service keys. `external_ref` is unique when given. Send "
        "`Idempotency-Key` to make retries safe."
    ),
    response_model=CustomerRead,
    responses={
        **problem_responses(403),
        409: {
            "description": (
                "`external_ref` already taken (`already-exists`), or another request with this "
                "`Idempotency-Key` still running (`idempotency-key-in-use`)"
            )
        },
    },
)
async def create_customer(
    data: CustomerCreate,
    session: SessionDep,
    principal: CreatorPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return await idempotency.respond(
        lambda: service.create_customer(session, actor=principal, data=data),
        headers=lambda customer: {"Location": f"/v1/customers/{customer.id}"},
    )


@router.get(
    "",
    summary="List customers",
    description="Newest first. A customer key sees only its own customer.",
)
async def list_customers(
    session: SessionDep, principal: AnyPrincipal, params: ListParamsDep
) -> ListResponse[CustomerRead]:
    page = await service.list_customers(
        session, viewer=principal, limit=params.limit, cursor=params.cursor
    )
    return ListResponse(data=page.items, next_cursor=page.next_cursor)


@router.get(
    "/{customer_id}",
    summary="Get a customer",
    description="A customer key may read only its own customer; any other id is 404.",
)
async def get_customer(
    customer_id: ResourceId, session: SessionDep, principal: AnyPrincipal
) -> CustomerRead:
    return await service.get_customer(session, viewer=principal, customer_id=customer_id)


@router.post(
    "/{customer_id}/erase",
    summary="Erase a customer's personal data",
    description=(
        "Admin keys only. Removes the customer's name, e-mail, phone, `external_ref` and "
        "metadata, and every copy of them: in its orders (metadata, cancel reasons), "
        "payments (references), refunds (reasons), events, audit records, stored "
        "idempotent responses, payment provider messages and delivery errors. Quantities, "
        "money, order and payment history and the stock ledger are kept. The customer's "
        "API keys are revoked. The customer reads back as `Erased customer` with "
        "`erased_at` set. Safe to repeat. Events already delivered to webhook endpoints "
        "and mail already sent are outside the service: erase them there."
    ),
    responses={**problem_responses(403), 404: {"description": "No such customer"}},
)
async def erase_customer(
    customer_id: ResourceId, session: SessionDep, principal: AdminPrincipal
) -> CustomerRead:
    return await service.erase_customer(session, actor=principal, customer_id=customer_id)
