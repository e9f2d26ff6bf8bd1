from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse

from stockflow.api.bodies import read_body
from stockflow.api.deps import ListParamsDep, ReaderPrincipal, SessionDep, StaffPrincipal
from stockflow.api.idempotency import IdempotencyDep
from stockflow.api.problems import problem_responses
from stockflow.api.schemas import ListResponse, ResourceId, SkuPath
from stockflow.purchasing import inbound, service
from stockflow.purchasing.inbound_schemas import InboundAccepted, SigningSecret, SupplierMessage
from stockflow.purchasing.schemas import (
    SupplierCreate,
    SupplierProductCreate,
    SupplierProductRead,
    SupplierProductUpdate,
    SupplierRead,
    SupplierUpdate,
)

suppliers_router = APIRouter(prefix="/suppliers", tags=["Suppliers"])
product_suppliers_router = APIRouter(prefix="/products/{sku}/suppliers", tags=["Suppliers"])

_ETAG_HEADER = {"ETag": {"description": "Send it back as `If-Match` to update safely."}}


@suppliers_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SupplierRead,
    summary="Create a supplier",
    description=(
        "Someone we buy from: contact, lead time in days, and the connector that carries "
        "purchase orders to them (`manual`, `email` with `to`, or `webhook` with `url`). "
        "Staff. Send `Idempotency-Key` to make retries safe."
    ),
    responses={
        201: {"headers": _ETAG_HEADER},
        **problem_responses(403),
        422: {"description": "Invalid supplier, or a connector URL that may not receive webhooks"},
    },
)
async def create_supplier(
    data: SupplierCreate,
    request: Request,
    session: SessionDep,
    principal: StaffPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    config = request.app.state.webhooks
    return await idempotency.respond(
        lambda: service.create_supplier(session, actor=principal, data=data, config=config),
        headers=lambda supplier: {
            "ETag": service.etag_of(supplier),
            "Location": f"/v1/suppliers/{supplier.id}",
        },
    )


@suppliers_router.get(
    "",
    summary="List suppliers",
    description="Newest first. Admin, staff and service keys.",
    responses=problem_responses(403),
)
async def list_suppliers(
    session: SessionDep,
    _principal: ReaderPrincipal,
    params: ListParamsDep,
    active: Annotated[bool | None, Query(description="Only active (or inactive) ones.")] = None,
) -> ListResponse[SupplierRead]:
    page = await service.list_suppliers(
        session, limit=params.limit, cursor=params.cursor, active=active
    )
    return ListResponse(data=page.items, next_cursor=page.next_cursor)


@suppliers_router.get(
    "/{supplier_id}",
    summary="Get a supplier",
    description="Answers with an `ETag` for a later `If-Match` update.",
    responses={200: {"headers": _ETAG_HEADER}, **problem_responses(403)},
)
async def get_supplier(
    supplier_id: ResourceId, response: Response, session: SessionDep, _principal: ReaderPrincipal
) -> SupplierRead:
    supplier = await service.get_supplier(session, supplier_id=supplier_id)
    response.headers["ETag"] = service.etag_of(supplier)
    return supplier


@suppliers_router.patch(
    "/{supplier_id}",
    summary="Update a supplier",
    description=(
        "Changes the given fields. With `If-Match`, only if unchanged since that ETag (else "
        "412). Deactivate with `active: false`; suppliers are never deleted. Staff."
    ),
    responses={
        200: {"headers": _ETAG_HEADER},
        **problem_responses(403),
        409: {
            "description": (
                "Deactivating the only active supplier of a `backorder` product "
                "(`supplier-still-needed`)"
            )
        },
        **problem_responses(412),
    },
)
async def update_supplier(
    supplier_id: ResourceId,
    data: SupplierUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: StaffPrincipal,
    if_match: Annotated[
        str | None, Header(description="ETag from a previous read of this supplier.")
    ] = None,
) -> SupplierRead:
    supplier = await service.update_supplier(
        session,
        actor=principal,
        supplier_id=supplier_id,
        data=data,
        if_match=if_match,
        config=request.app.state.webhooks,
    )
    response.headers["ETag"] = service.etag_of(supplier)
    return supplier


@product_suppliers_router.get(
    "",
    summary="List a product's suppliers",
    description=(
        "Preferred supplier (highest priority) first, flagged `preferred`. A product has few "
        "suppliers, so this list is always one page (`next_cursor` null). Staff."
    ),
    responses=problem_responses(403),
)
async def list_product_suppliers(
    sku: SkuPath, session: SessionDep, _principal: StaffPrincipal
) -> ListResponse[SupplierProductRead]:
    links = await service.list_product_suppliers(session, sku=sku)
    return ListResponse(data=links, next_cursor=None)


@product_suppliers_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SupplierProductRead,
    summary="Add a supplier to a product",
    description=(
        "The supplier's SKU, cost price, pack size, minimum order quantity, lead time and "
        "priority for this product. One entry per supplier and product (else 409). Answers "
        "with an `ETag` for a later `If-Match` update. Staff."
    ),
    responses={
        201: {"headers": _ETAG_HEADER},
        **problem_responses(403),
        409: {"description": "The supplier is listed for this product (`already-exists`)"},
        422: {"description": "Invalid terms, or an unknown or inactive supplier"},
    },
)
async def add_product_supplier(
    sku: SkuPath,
    data: SupplierProductCreate,
    session: SessionDep,
    principal: StaffPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return await idempotency.respond(
        lambda: service.add_product_supplier(session, actor=principal, sku=sku, data=data),
        headers=lambda link: {"ETag": service.link_etag_of(link)},
    )


@product_suppliers_router.patch(
    "/{supplier_id}",
    summary="Change a supplier's terms for a product",
    description=(
        "Changes the given fields of the entry. With `If-Match`, only if unchanged since that "
        "ETag (else 412); the ETag comes from adding or changing the entry, or is built from "
        "its `id` and `version` in the list. Staff."
    ),
    responses={200: {"headers": _ETAG_HEADER}, **problem_responses(403, 412)},
)
async def update_product_supplier(
    sku: SkuPath,
    supplier_id: ResourceId,
    data: SupplierProductUpdate,
    response: Response,
    session: SessionDep,
    principal: StaffPrincipal,
    if_match: Annotated[
        str | None, Header(description="ETag from adding or a previous change of this entry.")
    ] = None,
) -> SupplierProductRead:
    link = await service.update_product_supplier(
        session,
        actor=principal,
        sku=sku,
        supplier_id=supplier_id,
        data=data,
        if_match=if_match,
    )
    response.headers["ETag"] = service.link_etag_of(link)
    return link


@product_suppliers_router.delete(
    "/{supplier_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a supplier from a product",
    description="The supplier no longer sells this product to us. Staff.",
    responses={
        **problem_responses(403),
        409: {
            "description": (
                "The only active supplier of a `backorder` product (`supplier-still-needed`)"
            )
        },
    },
)
async def remove_product_supplier(
    sku: SkuPath, supplier_id: ResourceId, session: SessionDep, principal: StaffPrincipal
) -> None:
    await service.remove_product_supplier(
        session, actor=principal, sku=sku, supplier_id=supplier_id
    )


@suppliers_router.post(
    "/{supplier_id}/signing-secret",
    summary="Issue a supplier's signing secret",
    description=(
        "A new Standard Webhooks secret (`whsec_...`), shown once. It signs the purchase "
        "orders a `webhook` connector posts to the supplier, and the supplier signs the "
        "messages it sends to `/v1/suppliers/{id}/inbound` with it. Issuing again replaces "
        "it; the replaced one stays valid for 24 hours, both ways. Staff. With "
        "`Idempotency-Key`, a replay answers with `secret: null`."
    ),
    response_model=SigningSecret,
    responses=problem_responses(403),
)
async def issue_signing_secret(
    supplier_id: ResourceId,
    request: Request,
    session: SessionDep,
    principal: StaffPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    box = request.app.state.webhooks.box
    return await idempotency.respond(
        lambda: inbound.issue_secret(session, actor=principal, box=box, supplier_id=supplier_id),
        status_code=status.HTTP_200_OK,
        secret_fields=frozenset({"secret"}),
    )


@suppliers_router.post(
    "/{supplier_id}/inbound",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Receive a message from a supplier",
    description=(
        "For the supplier's own systems: an acknowledgement of a purchase order with its "
        "expected delivery date (which sets the PO's date and the promise dates of the "
        "order lines waiting for it), or a shipment notice. Authenticated by its Standard "
        "Webhooks signature with the supplier's signing secret, not by an API key (401 "
        "`invalid-signature` otherwise). Each message is kept once by its `webhook-id` and "
        "applied by the worker shortly after: sending it again is safe "
        "(`duplicate: true`)."
    ),
    response_model=InboundAccepted,
    responses={
        401: {
            "description": (
                "Not signed with the supplier's signing secret, or an unknown supplier "
                "(`invalid-signature`)"
            )
        },
        422: {"description": "Not a supplier message, or not about one of its purchase orders"},
    },
    openapi_extra={
        "security": [{"SupplierSignature": []}],
        # Inline: no other operation takes this model, so it has no component to refer to.
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SupplierMessage.model_json_schema()}},
        },
        "parameters": [
            {
                "name": name,
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": description,
            }
            for name, description in (
                ("webhook-id", "The message's id: a message is applied once per id."),
                ("webhook-timestamp", "Unix seconds; refused if more than 5 minutes off."),
                ("webhook-signature", "`v1,<base64 HMAC-SHA256>` with the signing secret."),
            )
        ],
    },
)
async def receive_supplier_message(supplier_id: ResourceId, request: Request) -> JSONResponse:
    # The body is read before the transaction opens (a slow sender holds no connection),
    # and checked byte for byte: the signature covers the exact bytes.
    raw = await read_body(request)
    database = request.app.state.database
    # Checked in a read transaction: an unsigned request never takes a write lock.
    async with database.transaction(write=False) as session:
        message = await inbound.verify(
            session,
            supplier_id=supplier_id,
            body=raw,
            headers=request.headers,
            box=request.app.state.webhooks.box,
        )
    async with database.transaction() as session:
        accepted = await inbound.keep(
            session,
            supplier_id=supplier_id,
            message=message,
            message_id=request.headers["webhook-id"],
            body=raw,
        )
    return JSONResponse(accepted.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)
