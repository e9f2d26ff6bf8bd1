from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from stockflow.api.deps import SessionDep, StaffPrincipal
from stockflow.api.idempotency import IdempotencyDep
from stockflow.api.schemas import ResourceId
from stockflow.payments import service
from stockflow.payments.schemas import PaymentCreate, PaymentRead

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
