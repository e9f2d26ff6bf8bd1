from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import JSONResponse

from stockflow.api.bodies import json_body, json_request_body, read_body
from stockflow.api.deps import (
    BEARER_SECURITY,
    AnyPrincipal,
    ListParamsDep,
    SessionDep,
    SettingsDep,
    StaffPrincipal,
    caller_transaction,
    read_only_transaction,
)
from stockflow.api.idempotency import IDEMPOTENCY_KEY_PARAMETER, IdempotencyDep, idempotency_for
from stockflow.api.problems import problem_responses
from stockflow.api.schemas import ListResponse, ResourceId, UtcTimestamp
from stockflow.auth.roles import ALL_ROLES
from stockflow.config import Settings
from stockflow.observability import tracing
from stockflow.orders import fulfilment, placement, preview, service
from stockflow.orders import metrics as order_metrics
from stockflow.orders.schemas import (
    CancelRequest,
    OrderCreate,
    OrderPreview,
    OrderRead,
    ShipmentCreate,
    ShipmentRead,
)
from stockflow.orders.states import OrderStatus
from stockflow.payments import service as payments
from stockflow.payments.rules import PaymentProvider
from stockflow.payments.schemas import OrderDetail

router = APIRouter(prefix="/orders", tags=["Orders"])


def _limits(settings: Settings) -> service.OrderLimits:
    return service.OrderLimits(
        max_lines=settings.max_lines_per_order,
        max_quantity=settings.max_quantity_per_line,
        po_consolidation_seconds=settings.po_consolidation_seconds,
        payment_provider=PaymentProvider(settings.payments),
        max_unpaid_orders=settings.max_unpaid_orders_per_customer,
        max_unpaid_units=settings.max_reserved_units_per_customer,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderRead,
    summary="Place an order",
    description=(
        "Reserves stock for every line at the default location and records the order, in one "
        "transaction. What happens to a line that asks for more than is available depends "
        "on its product's `shortage_policy`: for `reject`, the whole order is refused with "
        "409 `insufficient-stock` listing every short SKU, and nothing is reserved; for "
        "`backorder`, what is there is reserved, the rest is backordered, and the "
        "replenishment rule adds the shortfall plus the product's buffer (rounded to the "
        "supplier's pack and minimum) to a purchase order of the preferred supplier, in the "
        "same transaction. Backordered lines show `expected_available_date`. Lines for one "
        "SKU are merged first. A customer key orders for its own customer. Send "
        "`Idempotency-Key` to make retries safe."
    ),
    responses={
        404: {"description": "A customer key naming another customer (`not-found`)"},
        409: {"description": "Insufficient stock of a `reject` product"},
        422: {
            "description": (
                "Invalid order, or a `backorder` product short of stock without an active "
                "supplier (`backorder-needs-supplier`)"
            )
        },
        429: {
            "description": (
                "Over the key's or address's rate limit (`rate-limited`), or the customer "
                "would pass its quota of unpaid orders or units (`quota-exceeded`)"
            )
        },
    },
    # The body's bytes, the transaction, the caller, the Idempotency-Key and the body's
    # value are taken by the endpoint itself (decision 21); OpenAPI is told here.
    openapi_extra={
        "security": BEARER_SECURITY,
        "parameters": [IDEMPOTENCY_KEY_PARAMETER],
        "requestBody": json_request_body(OrderCreate),
    },
)
async def place_order(request: Request) -> JSONResponse:
    limits = _limits(request.app.state.settings)
    try:
        with tracing.span("place_order"):
            raw = await read_body(request)
            async with caller_transaction(request, ALL_ROLES) as (session, principal):
                idempotency = idempotency_for(
                    request, session, principal, request.headers.get("idempotency-key")
                )
                data = json_body(raw, request.headers.get("content-type"), OrderCreate)
                return await idempotency.respond(
                    lambda: placement.place_order(
                        session, actor=principal, data=data, limits=limits
                    ),
                    headers=lambda order: {"Location": f"/v1/orders/{order.id}"},
                )
    except Exception as exc:
        order_metrics.refused(exc)
        raise


@router.post(
    "/preview",
    response_model=OrderPreview,
    summary="Preview an order",
    description=(
        "Takes the same body as placing an order and answers what placing it now would do: "
        "what would be reserved and backordered, promise dates, totals and, for staff and "
        "admin keys, the purchase-order quantities with their explanations. Nothing is "
        "reserved, ordered or stored. Refused exactly as placing would be (for example 409 "
        "`insufficient-stock` for a short `reject` line)."
    ),
    responses={
        404: {"description": "A customer key naming another customer (`not-found`)"},
        409: {"description": "Insufficient stock of a `reject` product"},
        422: {
            "description": (
                "Invalid order, or a `backorder` product short of stock without an active "
                "supplier (`backorder-needs-supplier`)"
            )
        },
    },
)
@read_only_transaction
async def preview_order(
    data: OrderCreate, session: SessionDep, settings: SettingsDep, principal: AnyPrincipal
) -> OrderPreview:
    return await preview.preview_order(
        session, actor=principal, data=data, limits=_limits(settings)
    )


@router.get(
    "",
    summary="List orders",
    description="Newest first. A customer key sees only its own customer's orders.",
)
async def list_orders(
    session: SessionDep,
    principal: AnyPrincipal,
    params: ListParamsDep,
    status_: Annotated[
        OrderStatus | None, Query(alias="status", description="Only this status.")
    ] = None,
    customer_id: Annotated[
        str | None, Query(max_length=40, description="Only this customer.")
    ] = None,
    # With an offset only: a time without one is ambiguous, and the UTC columns refuse it.
    created_after: Annotated[
        UtcTimestamp | None, Query(description="RFC 3339 with an offset, inclusive.")
    ] = None,
    created_before: Annotated[
        UtcTimestamp | None, Query(description="RFC 3339 with an offset, exclusive.")
    ] = None,
) -> ListResponse[OrderRead]:
    page = await service.list_orders(
        session,
        viewer=principal,
        limit=params.limit,
        cursor=params.cursor,
        customer_id=customer_id,
        status=status_,
        created_after=created_after,
        created_before=created_before,
    )
    return ListResponse(data=page.items, next_cursor=page.next_cursor)


@router.get(
    "/{order_id}",
    summary="Get an order",
    description=(
        "With its lines, money breakdown, status, fulfilment flag, payment status, and its "
        "payments and refunds. Customers: own only."
    ),
)
async def get_order(
    order_id: ResourceId, session: SessionDep, principal: AnyPrincipal
) -> OrderDetail:
    return await payments.order_detail(session, viewer=principal, order_id=order_id)


@router.post(
    "/{order_id}/shipments",
    status_code=status.HTTP_201_CREATED,
    response_model=ShipmentRead,
    summary="Ship units of an order",
    description=(
        "Ships reserved units: on hand and reserved both drop, one ledger movement per SKU. "
        "Partial shipments are allowed; when every unit has shipped the order is `shipped`. "
        "More than is reserved and unshipped → 409 `shipment-exceeds-reserved`. Staff."
    ),
    responses={
        **problem_responses(403),
        409: {
            "description": (
                "More than is reserved and unshipped (`shipment-exceeds-reserved`), an order "
                "that cannot ship in its state (`invalid-state-transition`), or another "
                "request with this `Idempotency-Key` still running (`idempotency-key-in-use`)"
            )
        },
    },
)
async def ship_order(
    order_id: ResourceId,
    data: ShipmentCreate,
    session: SessionDep,
    principal: StaffPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return await idempotency.respond(
        lambda: fulfilment.ship_order(session, actor=principal, order_id=order_id, data=data)
    )


@router.post(
    "/{order_id}/cancel",
    response_model=OrderRead,
    summary="Cancel an order",
    description=(
        "Releases whatever is reserved and not shipped; what was shipped stays shipped. "
        "Customers may cancel their own orders before anything has shipped. A shipped or "
        "cancelled order → 409 `invalid-state-transition`."
    ),
    responses={
        409: {
            "description": (
                "A shipped or cancelled order (`invalid-state-transition`), or another "
                "request with this `Idempotency-Key` still running (`idempotency-key-in-use`)"
            )
        },
    },
)
async def cancel_order(
    order_id: ResourceId,
    data: CancelRequest,
    session: SessionDep,
    principal: AnyPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return await idempotency.respond(
        lambda: fulfilment.cancel_order(
            session, actor=principal, order_id=order_id, reason=data.reason
        ),
        status_code=200,
    )
