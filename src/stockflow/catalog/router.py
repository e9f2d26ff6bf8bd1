from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status
from fastapi.responses import JSONResponse

from stockflow.api.deps import (
    AnyPrincipal,
    ListParamsDep,
    SessionDep,
    SettingsDep,
    StaffPrincipal,
)
from stockflow.api.idempotency import IdempotencyDep
from stockflow.api.problems import problem_responses
from stockflow.api.schemas import ListResponse, SkuPath
from stockflow.catalog import service
from stockflow.catalog.schemas import ProductCreate, ProductRead, ProductUpdate
from stockflow.inventory.policy import ShortagePolicy

router = APIRouter(prefix="/products", tags=["Products"])

_ETAG_HEADER = {"ETag": {"description": "Send it back as `If-Match` to update safely."}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a product",
    description=(
        "Adds a SKU to the catalog with an empty stock row at the default location. "
        "Unknown or read-only fields are refused (422); an existing SKU is 409. Staff."
    ),
    response_model=ProductRead,
    responses={
        201: {"headers": _ETAG_HEADER},
        **problem_responses(403),
        409: {"description": "A product with this SKU exists (`already-exists`)"},
        422: {
            "description": (
                "Invalid product, an unknown or inactive supplier, or `backorder` without "
                "suppliers (`backorder-needs-supplier`)"
            )
        },
    },
)
async def create_product(
    data: ProductCreate,
    session: SessionDep,
    settings: SettingsDep,
    principal: StaffPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    default_policy = ShortagePolicy(settings.default_shortage_policy)
    return await idempotency.respond(
        lambda: service.create_product(
            session, actor=principal, data=data, default_policy=default_policy
        ),
        headers=lambda product: {
            "ETag": service.etag_of(product),
            "Location": f"/v1/products/{product.sku}",
        },
    )


@router.get(
    "",
    summary="List products",
    description="Newest first. Customer keys see active products only.",
)
async def list_products(
    session: SessionDep,
    principal: AnyPrincipal,
    params: ListParamsDep,
    active: Annotated[bool | None, Query(description="Only active (or inactive) ones.")] = None,
) -> ListResponse[ProductRead]:
    page = await service.list_products(
        session, viewer=principal, limit=params.limit, cursor=params.cursor, active=active
    )
    return ListResponse(data=page.items, next_cursor=page.next_cursor)


@router.get(
    "/{sku}",
    summary="Get a product",
    description="Answers with an `ETag` for a later `If-Match` update.",
    responses={200: {"headers": _ETAG_HEADER}},
)
async def get_product(
    sku: SkuPath, response: Response, session: SessionDep, principal: AnyPrincipal
) -> ProductRead:
    product = await service.get_product(session, viewer=principal, sku=sku)
    response.headers["ETag"] = service.etag_of(product)
    return product


@router.patch(
    "/{sku}",
    summary="Update a product",
    description=(
        "Changes the given fields. With `If-Match`, the update applies only if the product "
        "is unchanged since that ETag (else 412). The SKU is immutable; set `active: false` "
        "to withdraw a product. Staff."
    ),
    responses={200: {"headers": _ETAG_HEADER}, **problem_responses(403, 412)},
)
async def update_product(
    sku: SkuPath,
    data: ProductUpdate,
    response: Response,
    session: SessionDep,
    principal: StaffPrincipal,
    if_match: Annotated[
        str | None, Header(description="ETag from a previous read of this product.")
    ] = None,
) -> ProductRead:
    product = await service.update_product(
        session, actor=principal, sku=sku, data=data, if_match=if_match
    )
    response.headers["ETag"] = service.etag_of(product)
    return product
