from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from stockflow.api.deps import (
    AnyPrincipal,
    ListParamsDep,
    ReaderPrincipal,
    SessionDep,
    StaffPrincipal,
)
from stockflow.api.idempotency import IdempotencyDep
from stockflow.api.problems import problem_responses
from stockflow.api.schemas import ListResponse, SkuPath
from stockflow.inventory import service
from stockflow.inventory.schemas import (
    AdjustmentCreate,
    AdjustmentRead,
    AvailabilityRead,
    InventoryRead,
    MovementRead,
)

router = APIRouter(prefix="/inventory", tags=["Inventory"])


@router.get(
    "/{sku}",
    summary="Get stock of a product",
    description=(
        "On hand, reserved, available, backordered and on order, in total and per location. "
        "Customer keys get only `available`, and only for active products."
    ),
)
async def get_inventory(
    sku: SkuPath, session: SessionDep, principal: AnyPrincipal
) -> InventoryRead | AvailabilityRead:
    return await service.get_inventory(session, viewer=principal, sku=sku)


@router.post(
    "/{sku}/adjustments",
    status_code=status.HTTP_201_CREATED,
    summary="Adjust stock on hand",
    description=(
        "Adds or removes units at a location and writes one ledger movement. An adjustment "
        "that would leave less on hand than is reserved is refused with 409 "
        "`stock-below-reserved` and changes nothing. Staff. Send `Idempotency-Key` to make "
        "retries safe."
    ),
    response_model=AdjustmentRead,
    responses={
        **problem_responses(403),
        409: {"description": "Less would be on hand than is reserved (`stock-below-reserved`)"},
    },
)
async def adjust_stock(
    sku: SkuPath,
    data: AdjustmentCreate,
    session: SessionDep,
    principal: StaffPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return await idempotency.respond(
        lambda: service.adjust_stock(session, actor=principal, sku=sku, data=data)
    )


@router.get(
    "/{sku}/movements",
    summary="List stock movements",
    description="The ledger of one product, newest first. Admin, staff and service keys.",
    responses=problem_responses(403),
)
async def list_movements(
    sku: SkuPath, session: SessionDep, principal: ReaderPrincipal, params: ListParamsDep
) -> ListResponse[MovementRead]:
    page = await service.list_movements(
        session, viewer=principal, sku=sku, limit=params.limit, cursor=params.cursor
    )
    return ListResponse(data=page.items, next_cursor=page.next_cursor)
