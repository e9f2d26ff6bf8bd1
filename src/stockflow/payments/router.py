from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import JSONResponse
from pydantic import Field

from stockflow.api.bodies import read_body
from stockflow.api.deps import (
    BEARER_SECURITY,
    SessionDep,
    StaffPrincipal,
    authenticated_caller,
    get_database,
)
from stockflow.api.idempotency import IDEMPOTENCY_KEY_PARAMETER, IdempotencyDep, checked_key
from stockflow.api.problems import problem_responses
from stockflow.api.schemas import ReadModel, ResourceId
from stockflow.auth.roles import ALL_ROLES, Principal, Role
from stockflow.errors import NotFound
from stockflow.payments import refunds, service, stripe_events
from stockflow.payments.checkout import Checkout, payment_intent, refuse_without_stripe
from stockflow.payments.schemas import (
    PaymentCreate,
    PaymentIntentRead,
    PaymentRead,
    RefundCreate,
    RefundRead,
)

router = APIRouter(prefix="/orders", tags=["Payments"])
STAFF_ROLES = frozenset({Role.ADMIN, Role.STAFF})


async def staff_caller(request: Request) -> Principal:
    """The staff or admin caller, from a read transaction that ends before the endpoint
    runs (it may wait for Stripe). A dependency, so that the caller's key and role are
    checked before the body is validated, as for every other operation."""
    return await authenticated_caller(request, STAFF_ROLES)


StaffCaller = Annotated[Principal, Depends(staff_caller)]


@router.post(
    "/{order_id}/payments",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentRead,
    summary="Record an offline payment",
    description=(
        "With `STOCKFLOW_PAYMENTS=manual`, staff record money the business took outside "
        "Stockflow (bank transfer, cash, card terminal). An order waiting for payment is "
        "`confirmed` once what was recorded covers its total (`order.confirmed`); every "
        "payment tells `payment.succeeded`. More than the order still owes → 422 "
        "`payment-exceeds-amount-due`; an order placed under another provider → 409 "
        "`payment-provider-mismatch`. Staff. Send `Idempotency-Key` to make retries safe."
    ),
    responses={
        **problem_responses(403),
        409: {"description": "The order is not paid by recorded payments"},
        422: {"description": "More than the order still owes"},
    },
)
async def record_payment(
    order_id: ResourceId,
    data: PaymentCreate,
    session: SessionDep,
    principal: StaffPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return await idempotency.respond(
        lambda: service.record_manual_payment(
            session, actor=principal, order_id=order_id, data=data
        )
    )


@router.post(
    "/{order_id}/payment-intent",
    response_model=PaymentIntentRead,
    summary="Get the order's Stripe PaymentIntent",
    description=(
        "With `STOCKFLOW_PAYMENTS=stripe`, creates the order's PaymentIntent for what it "
        "still owes (automatic payment methods: cards, and wallets such as Google Pay and "
        "Apple Pay), or returns the one it has; answer its `client_secret` to Stripe.js. "
        "Safe to call any number of times, at once too: one PaymentIntent per order and "
        "amount. Stripe unreachable → 502 `payment-provider-unavailable` with `Retry-After` "
        "(nothing changed; retry); Stripe refusing the request itself → 422 `payment-refused`. "
        "Another request asking Stripe for this order right now "
        "→ 409 `payment-in-progress` with `Retry-After`. An order already paid or cancelled "
        "→ 409 `invalid-state-transition`. Customers: own orders."
    ),
    responses={
        409: {"description": "Already paid or cancelled, not a Stripe order, or in progress"},
        422: {"description": "Stripe refused the request itself (`payment-refused`)"},
        502: {"description": "Stripe could not be reached; retry"},
    },
    openapi_extra={"security": BEARER_SECURITY},
)
async def create_payment_intent(order_id: ResourceId, request: Request) -> PaymentIntentRead:
    principal = await authenticated_caller(request, ALL_ROLES)
    checkout: Checkout | None = request.app.state.checkout
    if checkout is None:
        await refuse_without_stripe(get_database(request), viewer=principal, order_id=order_id)
    assert checkout is not None
    return await payment_intent(checkout, viewer=principal, order_id=order_id)


stripe_router = APIRouter(prefix="/webhooks", tags=["Payments"])


class StripeAck(ReadModel):
    received: bool = Field(examples=[True])
    duplicate: bool = Field(
        description="The event was kept before (Stripe sent it again); nothing more happens.",
        examples=[False],
    )


@stripe_router.post(
    "/stripe",
    response_model=StripeAck,
    summary="Receive Stripe's events",
    description=(
        "The endpoint to register in Stripe's dashboard for `payment_intent.succeeded`, "
        "`payment_intent.payment_failed`, `payment_intent.processing`, "
        "`payment_intent.canceled` and `charge.refunded`. Authenticated by its "
        "`Stripe-Signature` (the endpoint's signing secret, "
        "`STOCKFLOW_STRIPE_WEBHOOK_SECRET`), not by an API key: a missing or bad signature, "
        "or one older than five minutes → 400 `invalid-stripe-signature`, nothing kept. "
        "Each event is kept once by its id and answered at once; the worker applies it. "
        "404 where payments are not `stripe`."
    ),
    responses={
        400: {"description": "Bad, missing or stale signature"},
        404: {"description": "Payments are not `stripe` here"},
    },
    openapi_extra={
        "security": [{"StripeSignature": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object", "description": "A Stripe event."}}
            },
        },
    },
)
async def stripe_webhook(request: Request) -> StripeAck:
    checkout: Checkout | None = request.app.state.checkout
    if checkout is None:
        raise NotFound("Stripe's events are not taken here: payments are not `stripe`.")
    body = await read_body(request)
    event = stripe_events.verified(checkout.gateway, body, request.headers.get("stripe-signature"))
    async with get_database(request).transaction() as session:
        new = await stripe_events.keep(session, event, body)
    return StripeAck(received=True, duplicate=not new)


@router.post(
    "/{order_id}/refunds",
    status_code=status.HTTP_201_CREATED,
    response_model=RefundRead,
    summary="Refund an order",
    description=(
        "Gives back part or all of what was paid: refunds of an order never add up to more "
        "than was paid (→ 422 `refund-exceeds-paid` with `refundable`), even when several "
        "are asked for at once. A recorded (`manual`) refund is `succeeded` at once: the "
        "business gives the money back itself. A Stripe refund is made at Stripe before the "
        "answer when Stripe can be reached (`succeeded`), else it is `pending` and the worker "
        "makes it; Stripe refusing it leaves it `failed`. `refund.succeeded` tells each one "
        "made. With the same `Idempotency-Key`, a retry answers the refund the first request "
        "made, as it is now, and Stripe is asked with the same derived key. Staff."
    ),
    responses={
        **problem_responses(403),
        422: {"description": "More than is left to refund"},
    },
    openapi_extra={"security": BEARER_SECURITY, "parameters": [IDEMPOTENCY_KEY_PARAMETER]},
)
async def refund_order(
    order_id: ResourceId, principal: StaffCaller, data: RefundCreate, request: Request
) -> RefundRead:
    key = checked_key(request.headers.get("idempotency-key"))
    database = get_database(request)
    async with database.transaction() as session:
        read, to_send = await refunds.refund_order(
            session, actor=principal, order_id=order_id, data=data, idempotency_key=key
        )
    checkout: Checkout | None = request.app.state.checkout
    if to_send and checkout is not None:
        sent = await refunds.send(database, checkout.gateway, read.id)
        if sent is not None:
            read = sent
    return read
