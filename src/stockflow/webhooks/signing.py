"""What a receiver gets: the event body, and Standard Webhooks headers signed with the
``standardwebhooks`` library."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from pydantic import TypeAdapter
from standardwebhooks import Webhook

_TIMESTAMP = TypeAdapter(datetime)


def event_body(*, event_id: str, event_type: str, created_at: datetime, data: str) -> str:
    """``{id, type, created_at, data}``, with ``data`` exactly as stored (the JSON text the
    event was written with), the timestamp as the API renders it."""
    return (
        '{"id":'
        + json.dumps(event_id)
        + ',"type":'
        + json.dumps(event_type)
        + ',"created_at":'
        + _TIMESTAMP.dump_json(created_at).decode()
        + ',"data":'
        + data
        + "}"
    )


def headers(*, message_id: str, body: str, secrets: Sequence[str], now: datetime) -> dict[str, str]:
    """``webhook-id`` (the same on every retry, so receivers can drop duplicates),
    ``webhook-timestamp`` (this attempt's), and one ``v1`` signature per secret in use
    (two while a rotated secret is still honoured)."""
    signatures = [Webhook(secret).sign(message_id, now, body) for secret in secrets]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
    }
