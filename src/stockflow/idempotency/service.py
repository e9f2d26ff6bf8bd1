"""``Idempotency-Key``: a write happens at most once per key, and its retries replay it.

The record of a request is written in the request's own transaction, claimed before the
work and completed with the response before the commit. So it exists exactly when the
work committed: a request that fails or a process that dies mid-request leaves no record,
and the retry simply runs again; a concurrent duplicate waits on the claim and then
replays the committed response.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.db.models import IdempotencyRecord
from stockflow.errors import IdempotencyKeyInUse, IdempotencyKeyReused
from stockflow.idempotency import repository


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    content: str
    """The JSON body as text: a replay sends exactly the characters the first answer sent."""
    headers: dict[str, str]
    replayed: bool


def render(body: Any) -> str:
    """JSON text as the API sends it (compact, UTF-8 as is), from a response model or a
    JSON value.

    The record keeps this text rather than the JSON value: PostgreSQL's JSONB reorders the
    keys of a stored object, so a replay rebuilt from the value would not be the same body.
    """
    if isinstance(body, BaseModel):
        # Serialised in one pass by pydantic-core: a third of the time of dumping the
        # model to values and encoding those, on every order placed.
        return body.model_dump_json(by_alias=True)
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """Same method, URL and JSON value (whatever the spacing or key order) → same hash."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except (ValueError, UnicodeDecodeError):
        canonical = body.decode("latin-1")
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


async def run_once(
    session: AsyncSession,
    *,
    principal_id: str,
    key: str,
    method: str,
    path: str,
    fingerprint: str,
    ttl: timedelta,
    status_code: int,
    work: Callable[[], Awaitable[tuple[Any, Mapping[str, str]]]],
    secret_fields: frozenset[str] = frozenset(),
    wait_seconds: float = 10.0,
) -> StoredResponse:
    """Do ``work`` unless this key already did; either way, the response to give.

    ``work`` returns the response body (a response model or a JSON value) and its headers.
    """
    existing = await _claim(
        session,
        principal_id=principal_id,
        key=key,
        method=method,
        path=path,
        fingerprint=fingerprint,
        ttl=ttl,
        wait_seconds=wait_seconds,
    )
    if existing is not None:
        if existing.request_hash != fingerprint or existing.status_code is None:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was used for a different request "
                f"({existing.method} {existing.path}).",
            )
        return StoredResponse(
            existing.status_code,
            existing.response_body or "null",
            existing.response_headers or {},
            True,
        )
    body, headers = await work()
    content = render(body)
    stored = content
    if secret_fields:
        # A secret is shown once: the replay says the field exists but not its value.
        value = body.model_dump(mode="json", by_alias=True) if isinstance(body, BaseModel) else body
        if isinstance(value, dict):
            stored = render({k: (None if k in secret_fields else v) for k, v in value.items()})
    await repository.complete(
        session,
        principal_id=principal_id,
        key=key,
        status_code=status_code,
        body=stored,
        headers=dict(headers),
    )
    return StoredResponse(status_code, content, dict(headers), False)


async def _claim(
    session: AsyncSession,
    *,
    principal_id: str,
    key: str,
    method: str,
    path: str,
    fingerprint: str,
    ttl: timedelta,
    wait_seconds: float,
) -> IdempotencyRecord | None:
    """None when this request now holds the key; else the committed record holding it."""
    while True:
        now = datetime.now(UTC)
        try:
            inserted = await repository.insert_if_absent(
                session,
                principal_id=principal_id,
                key=key,
                request_hash=fingerprint,
                method=method,
                path=path,
                now=now,
                expires_at=now + ttl,
                wait_seconds=wait_seconds,
            )
        except repository.KeyBusy as exc:
            raise IdempotencyKeyInUse(
                f"A request with Idempotency-Key {key!r} is still being processed; retry "
                "shortly to get its response."
            ) from exc
        if inserted:
            return None
        existing = await repository.get(session, principal_id=principal_id, key=key)
        if existing is not None and existing.expires_at > now:
            return existing
        if existing is not None:
            # Past its retention but not yet pruned: as good as absent.
            await repository.delete_one(session, principal_id=principal_id, key=key)
        # Gone (pruned meanwhile, or just deleted): claim it afresh.


async def prune(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Delete records past their retention; returns how many."""
    return await repository.delete_expired(session, now=now or datetime.now(UTC))
