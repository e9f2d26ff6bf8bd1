from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse

from stockflow.api.deps import ListParamsDep, SessionDep, SettingsDep, StaffPrincipal
from stockflow.api.idempotency import IdempotencyDep
from stockflow.api.problems import problem_responses
from stockflow.api.schemas import ListResponse, ResourceId
from stockflow.purchasing import po_receiving, po_service
from stockflow.purchasing.po_schemas import (
    AcknowledgeRequest,
    PurchaseOrderCancel,
    PurchaseOrderCreate,
    PurchaseOrderRead,
    ReceiptCreate,
    ReceiptRead,
)
from stockflow.purchasing.states import PurchaseOrderStatus

router = APIRouter(prefix="/purchase-orders", tags=["Purchase orders"])

_CONFLICT: dict[int | str, dict[str, Any]] = {
    **problem_responses(403),
    409: {
        "description": (
            "Not allowed in the purchase order's current status "
            "(`invalid-purchase-order-transition`)"
        )
    },
}


@router.get(
    "",
    summary="List purchase orders",
    description="Newest first, with lines and explanations. Staff.",
    responses=problem_responses(403),
)
async def list_purchase_orders(
    session: SessionDep,
    _principal: StaffPrincipal,
    params: ListParamsDep,
    status_: Annotated[
        PurchaseOrderStatus | None, Query(alias="status", description="Only this status.")
    ] = None,
    supplier_id: Annotated[
        str | None, Query(max_length=40, description="Only this supplier's.")
    ] = None,
) -> ListResponse[PurchaseOrderRead]:
    page = await po_service.list_purchase_orders(
        session,
        limit=params.limit,
        cursor=params.cursor,
        status=status_,
        supplier_id=supplier_id,
    )
    return ListResponse(data=page.items, next_cursor=page.next_cursor)


@router.get(
    "/{po_id}",
    summary="Get a purchase order",
    responses={**problem_responses(403), 404: {"description": "No such purchase order"}},
    description=(
        "Its lines, each with the explanation of how its quantity was chosen and which "
        "order lines caused it, and its expected arrival. Staff."
    ),
)
async def get_purchase_order(
    po_id: ResourceId, session: SessionDep, _principal: StaffPrincipal
) -> PurchaseOrderRead:
    return await po_service.get_purchase_order(session, po_id=po_id)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PurchaseOrderRead,
    summary="Create a purchase order by hand",
    responses={
        **problem_responses(403),
        422: {
            "description": (
                "Unknown or inactive supplier, unknown SKU, a SKU the supplier does not sell, "
                "or an invalid quantity"
            )
        },
    },
    description=(
        "A draft PO to one supplier; its quantities count as `on_order` at once. Terms are "
        "copied from each product's link to the supplier, so the supplier must sell every "
        "SKU (else 422). Submit it with `POST /v1/purchase-orders/{id}/submit`. Staff. Send "
        "`Idempotency-Key` to make retries safe."
    ),
)
async def create_purchase_order(
    data: PurchaseOrderCreate,
    session: SessionDep,
    principal: StaffPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return await idempotency.respond(
        lambda: po_service.create_purchase_order(session, actor=principal, data=data),
        headers=lambda po: {"Location": f"/v1/purchase-orders/{po.id}"},
    )


@router.post(
    "/{po_id}/submit",
    response_model=PurchaseOrderRead,
    summary="Submit a draft purchase order",
    description="draft → submitted. Anything else is 409. Staff.",
    responses=_CONFLICT,
)
async def submit_purchase_order(
    po_id: ResourceId, session: SessionDep, principal: StaffPrincipal, idempotency: IdempotencyDep
) -> JSONResponse:
    return await idempotency.respond(
        lambda: po_service.submit(session, actor=principal, po_id=po_id), status_code=200
    )


@router.post(
    "/{po_id}/acknowledge",
    response_model=PurchaseOrderRead,
    summary="Record the supplier's acknowledgement",
    description=(
        "The supplier confirmed the PO and said when it arrives: submitted → acknowledged. "
        "Repeat it to move the date (also on a partially received PO); promise dates of "
        "waiting order lines follow. Staff."
    ),
    responses=_CONFLICT,
)
async def acknowledge_purchase_order(
    po_id: ResourceId,
    data: AcknowledgeRequest,
    session: SessionDep,
    principal: StaffPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return await idempotency.respond(
        lambda: po_service.acknowledge(
            session,
            actor=principal,
            po_id=po_id,
            expected_delivery_date=data.expected_delivery_date,
        ),
        status_code=200,
    )


@router.post(
    "/{po_id}/receipts",
    status_code=status.HTTP_201_CREATED,
    response_model=ReceiptRead,
    summary="Receive goods",
    description=(
        "Takes the units into stock at the default location. They go first to orders "
        "waiting for that SKU, oldest order first (partial allocation allowed), and only "
        "the rest becomes available. Partial receipts are fine; receiving more than was "
        "ordered is accepted and logged. Only on a submitted, acknowledged or partially "
        "received PO. Staff. Send `Idempotency-Key`: a retried receipt would otherwise be "
        "counted twice."
    ),
    responses=_CONFLICT,
)
async def receive_purchase_order(
    po_id: ResourceId,
    data: ReceiptCreate,
    session: SessionDep,
    principal: StaffPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return await idempotency.respond(
        lambda: po_receiving.receive(session, actor=principal, po_id=po_id, data=data)
    )


@router.post(
    "/{po_id}/cancel",
    response_model=PurchaseOrderRead,
    summary="Cancel a purchase order",
    description=(
        "Its unreceived units leave `on_order`; what was received stays. The backorder rule "
        "then runs again for the backlog this leaves uncovered, ordering from each product's "
        "preferred supplier. Not on a received or cancelled PO. Staff."
    ),
    responses=_CONFLICT,
)
async def cancel_purchase_order(
    po_id: ResourceId,
    data: PurchaseOrderCancel,
    session: SessionDep,
    settings: SettingsDep,
    principal: StaffPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return await idempotency.respond(
        lambda: po_receiving.cancel(
            session,
            actor=principal,
            po_id=po_id,
            reason=data.reason,
            consolidation_seconds=settings.po_consolidation_seconds,
        ),
        status_code=200,
    )
