from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictBool, field_validator

from stockflow.api.schemas import Omittable, ReadModel, UtcTimestamp, WriteModel
from stockflow.events.types import WILDCARD, EventType
from stockflow.webhooks.addresses import MAX_URL_LENGTH

Subscription = EventType | Literal["*"]

_EVENTS_DESCRIPTION = (
    'Event types to send, or `["*"]` for every type (including types added later).'
)
WebhookUrl = Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH)]
Subscriptions = Annotated[
    list[Subscription],
    Field(
        min_length=1,
        max_length=50,
        # "*" alone, as `_distinct` requires.
        json_schema_extra={"if": {"contains": {"const": WILDCARD}}, "then": {"maxItems": 1}},
    ),
]


def _everything() -> list[Subscription]:
    return ["*"]


def _distinct(value: list[Subscription]) -> list[Subscription]:
    if WILDCARD in value and len(value) > 1:
        raise ValueError('"*" already means every type; list it alone')
    return list(dict.fromkeys(value))


class WebhookEndpointCreate(WriteModel):
    """A receiver of events. Its URL must be https and resolve only to public addresses."""

    read_only_fields: ClassVar[frozenset[str]] = frozenset(
        {"id", "created_at", "updated_at", "secret", "enabled", "disabled_reason", "version"}
    )

    url: WebhookUrl = Field(examples=["https://shop.example/hooks/stockflow"])
    events: Subscriptions = Field(
        default_factory=_everything,
        description=_EVENTS_DESCRIPTION,
        examples=[["order.created", "order.shipped"]],
    )
    description: str | None = Field(default=None, max_length=500, examples=["Storefront"])

    _events = field_validator("events")(_distinct)


class WebhookEndpointUpdate(WriteModel):
    """Fields to change; omitted fields stay as they are."""

    read_only_fields: ClassVar[frozenset[str]] = WebhookEndpointCreate.read_only_fields - {
        "enabled"
    }

    url: Omittable[WebhookUrl] = None
    events: Omittable[Subscriptions] = Field(default=None, description=_EVENTS_DESCRIPTION)
    description: str | None = Field(default=None, max_length=500)
    enabled: Omittable[StrictBool] = Field(
        default=None,
        description="false pauses deliveries (they wait); true resumes them.",
        examples=[True],
    )

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[Subscription] | None) -> list[Subscription] | None:
        return None if value is None else _distinct(value)


class WebhookEndpointRead(ReadModel):
    id: str = Field(examples=["whe_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    url: str
    description: str | None
    events: list[str]
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why Stockflow disabled it (the receiver answered 410 Gone), if it did."
    )
    previous_secret_expires_at: datetime | None = Field(
        description="Until then, deliveries are signed with the previous secret too."
    )
    version: int
    created_at: datetime
    updated_at: datetime


class WebhookEndpointCreated(WebhookEndpointRead):
    secret: str | None = Field(
        description=(
            "The signing secret (Standard Webhooks, `whsec_...`): shown once. Null in an "
            "idempotent replay."
        ),
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class SecretRotated(ReadModel):
    secret: str | None = Field(
        description="The new signing secret, shown once. Null in an idempotent replay."
    )
    previous_secret_expires_at: datetime = Field(
        description="The old secret keeps signing (as a second signature) until then."
    )


class DeliveryAttemptRead(ReadModel):
    attempted_at: datetime
    status_code: int | None = Field(description="null when no HTTP answer came back.")
    latency_ms: int
    error: str | None = Field(examples=["timed out after 10.0 s"])


class DeliveryRead(ReadModel):
    id: str = Field(examples=["whd_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"])
    endpoint_id: str
    event_id: str
    event_type: str = Field(examples=["order.created"])
    status: Literal["pending", "delivered", "dead"] = Field(
        description="`dead`: every attempt failed; retry it by hand."
    )
    attempt_count: int
    next_attempt_at: datetime | None = Field(description="When pending: the next attempt.")
    delivered_at: datetime | None
    created_at: datetime
    attempts: list[DeliveryAttemptRead] = Field(description="Oldest first.")


class ReplayRequest(WriteModel):
    """Send past events to an endpoint again (each as a new delivery, same event id)."""

    since: UtcTimestamp = Field(description="Events created at or after this time.")
    until: UtcTimestamp | None = Field(default=None, description="And before this time.")
    types: list[EventType] | None = Field(
        default=None, description="Only these types (default: what the endpoint subscribes to)."
    )


class ReplayQueued(ReadModel):
    queued: int = Field(description="Deliveries created.", examples=[42])
