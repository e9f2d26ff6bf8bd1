from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse

from stockflow.api.deps import (
    BEARER_SECURITY,
    SessionDep,
    StaffPrincipal,
    authenticated_caller,
    get_database,
)
from stockflow.api.idempotency import IdempotencyDep
from stockflow.api.schemas import ResourceId
from stockflow.auth.roles import ALL_ROLES
from stockflow.payments import service
from stockflow.payments.checkout import Checkout, payment_intent, refuse_without_stripe
from stockflow.payments.schemas import PaymentCreate, PaymentIntentRead, PaymentRead

router = APIRouter(prefix="/orders", tags=["Payments"])


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
        "(nothing changed; retry). Another request asking Stripe for this order right now "
        "→ 409 `payment-in-progress` with `Retry-After`. An order already paid or cancelled "
        "→ 409 `invalid-state-transition`. Customers: own orders."
    ),
    responses={
        409: {"description": "Already paid or cancelled, not a Stripe order, or in progress"},
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
