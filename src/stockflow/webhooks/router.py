from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse

from stockflow.api.deps import AdminPrincipal, ListParamsDep, SessionDep
from stockflow.api.idempotency import IdempotencyDep
from stockflow.api.problems import problem_responses
from stockflow.api.schemas import ListResponse, ResourceId
from stockflow.webhooks import service
from stockflow.webhooks.schemas import (
    DeliveryRead,
    ReplayQueued,
    ReplayRequest,
    SecretRotated,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointRead,
    WebhookEndpointUpdate,
)
from stockflow.webhooks.service import WebhookConfig

# Every operation here is the admin's alone.
router = APIRouter(prefix="/webhook-endpoints", tags=["Webhooks"], responses=problem_responses(403))
deliveries_router = APIRouter(
    prefix="/webhook-deliveries", tags=["Webhooks"], responses=problem_responses(403)
)


async def _config(request: Request) -> WebhookConfig:
    config: WebhookConfig = request.app.state.webhooks
    return config


ConfigDep = Annotated[WebhookConfig, Depends(_config)]

_SIGNING = (
    "Deliveries follow Standard Webhooks: `webhook-id` (the event id, the same on every "
    "retry), `webhook-timestamp` and `webhook-signature` (HMAC-SHA256 with the endpoint's "
    "secret), verifiable with any `standardwebhooks` library. "
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a webhook endpoint",
    description=(
        "Events of the types listed are POSTed to `url` as `{id, type, created_at, data}`. "
        + _SIGNING
        + "The response holds the signing secret: it is shown once. The URL must be https "
        "and resolve only to public addresses (`unsafe-webhook-url` otherwise). Admin only. "
        "With `Idempotency-Key`, a replay answers with `secret: null`."
    ),
    response_model=WebhookEndpointCreated,
    responses={422: {"description": "Invalid endpoint, or a URL that may not receive webhooks"}},
)
async def create_webhook_endpoint(
    data: WebhookEndpointCreate,
    session: SessionDep,
    principal: AdminPrincipal,
    config: ConfigDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return await idempotency.respond(
        lambda: service.create_endpoint(session, actor=principal, config=config, data=data),
        headers=lambda endpoint: {"Location": f"/v1/webhook-endpoints/{endpoint.id}"},
        secret_fields=frozenset({"secret"}),
    )


@router.get("", summary="List webhook endpoints", description="Newest first. Admin only.")
async def list_webhook_endpoints(
    session: SessionDep, _principal: AdminPrincipal, params: ListParamsDep
) -> ListResponse[WebhookEndpointRead]:
    page = await service.list_endpoints(session, limit=params.limit, cursor=params.cursor)
    return ListResponse(data=page.items, next_cursor=page.next_cursor)


_ETAG_HEADER = {"ETag": {"description": "Send it back as `If-Match` to update safely."}}


@router.get(
    "/{endpoint_id}",
    summary="Get a webhook endpoint",
    description="Answers with an `ETag` for a later `If-Match` update. Admin only.",
    responses={200: {"headers": _ETAG_HEADER}},
)
async def get_webhook_endpoint(
    endpoint_id: ResourceId, response: Response, session: SessionDep, _principal: AdminPrincipal
) -> WebhookEndpointRead:
    endpoint = await service.get_endpoint(session, endpoint_id=endpoint_id)
    response.headers["ETag"] = service.etag_of(endpoint)
    return endpoint


@router.patch(
    "/{endpoint_id}",
    summary="Change a webhook endpoint",
    description=(
        "Change its URL, event types or description, or pause (`enabled: false`) and "
        "resume it: deliveries wait while it is disabled and go out once it is enabled "
        "again. An endpoint whose receiver answered 410 Gone is disabled by Stockflow; "
        "enable it here when the receiver is back. With `If-Match`, only if unchanged "
        "since that ETag (else 412). Admin only."
    ),
    responses={200: {"headers": _ETAG_HEADER}, **problem_responses(412)},
)
async def update_webhook_endpoint(
    endpoint_id: ResourceId,
    data: WebhookEndpointUpdate,
    response: Response,
    session: SessionDep,
    principal: AdminPrincipal,
    config: ConfigDep,
    if_match: Annotated[
        str | None, Header(description="ETag from a previous read of this endpoint.")
    ] = None,
) -> WebhookEndpointRead:
    endpoint = await service.update_endpoint(
        session,
        actor=principal,
        config=config,
        endpoint_id=endpoint_id,
        data=data,
        if_match=if_match,
    )
    response.headers["ETag"] = service.etag_of(endpoint)
    return endpoint


@router.delete(
    "/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a webhook endpoint",
    description="Its pending deliveries are dropped, and its delivery log with it. Admin only.",
)
async def delete_webhook_endpoint(
    endpoint_id: ResourceId, session: SessionDep, principal: AdminPrincipal
) -> Response:
    await service.delete_endpoint(session, actor=principal, endpoint_id=endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{endpoint_id}/rotate-secret",
    summary="Rotate the signing secret",
    description=(
        "Issues a new secret (shown once). For 24 hours every delivery carries two "
        "signatures, one with the old secret and one with the new, so the receiver can "
        "switch at its own pace. Admin only."
    ),
    response_model=SecretRotated,
)
async def rotate_webhook_secret(
    endpoint_id: ResourceId,
    session: SessionDep,
    principal: AdminPrincipal,
    config: ConfigDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return await idempotency.respond(
        lambda: service.rotate_secret(
            session, actor=principal, config=config, endpoint_id=endpoint_id
        ),
        status_code=status.HTTP_200_OK,
        secret_fields=frozenset({"secret"}),
    )


@router.get(
    "/{endpoint_id}/deliveries",
    summary="List an endpoint's deliveries",
    description=(
        "Newest first, each with every attempt (time, status code, latency, error). A "
        "failed delivery is retried with exponential backoff for about three days, then "
        "becomes `dead`. Admin only."
    ),
)
async def list_webhook_deliveries(
    endpoint_id: ResourceId,
    session: SessionDep,
    _principal: AdminPrincipal,
    params: ListParamsDep,
    status_: Annotated[
        Literal["pending", "delivered", "dead"] | None,
        Query(alias="status", description="Only this status."),
    ] = None,
) -> ListResponse[DeliveryRead]:
    page = await service.list_deliveries(
        session,
        endpoint_id=endpoint_id,
        status=status_,
        limit=params.limit,
        cursor=params.cursor,
    )
    return ListResponse(data=page.items, next_cursor=page.next_cursor)


@router.post(
    "/{endpoint_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Replay past events to an endpoint",
    response_model=ReplayQueued,
    description=(
        "Queues a new delivery of every past event in the window (at most 10,000 per call, "
        "oldest first) that the endpoint subscribes to, or of the `types` given. Each keeps "
        "its event id as `webhook-id`. Admin only."
    ),
)
async def replay_webhook_events(
    endpoint_id: ResourceId,
    data: ReplayRequest,
    session: SessionDep,
    principal: AdminPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return await idempotency.respond(
        lambda: service.replay(session, actor=principal, endpoint_id=endpoint_id, data=data),
        status_code=status.HTTP_202_ACCEPTED,
    )


@deliveries_router.post(
    "/{delivery_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Retry a delivery now",
    response_model=DeliveryRead,
    description=(
        "A dead or delivered delivery gets one more attempt; a pending one is tried at "
        "once instead of at its scheduled time. 409 `delivery-in-flight` while a worker is "
        "sending it. Admin only."
    ),
    responses={409: {"description": "A worker is sending it right now (`delivery-in-flight`)"}},
)
async def retry_webhook_delivery(
    delivery_id: ResourceId,
    session: SessionDep,
    principal: AdminPrincipal,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return await idempotency.respond(
        lambda: service.retry_delivery(session, actor=principal, delivery_id=delivery_id),
        status_code=status.HTTP_202_ACCEPTED,
    )
