from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import Field

from stockflow.api.schemas import ReadModel
from stockflow.db.models import Event


class EventRead(ReadModel):
    """An event, exactly the body a webhook endpoint receives for it."""

    id: str = Field(
        description="Stable: the `webhook-id` of every delivery of this event.",
        examples=["evt_01KB3J5Q2W8Z6Y4X0V9T7S5R3P"],
    )
    type: str = Field(examples=["order.created"])
    created_at: datetime
    data: dict[str, Any] = Field(
        description="`object`: the resource as the API showed it when the event happened; "
        "some types add members (`shipment`, `movement`, `receipt`).",
        examples=[{"object": {"id": "ord_01KB3J5Q2W8Z6Y4X0V9T7S5R3P", "status": "confirmed"}}],
    )

    @classmethod
    def of(cls, event: Event) -> EventRead:
        return cls(
            id=event.id, type=event.type, created_at=event.created_at, data=json.loads(event.data)
        )
