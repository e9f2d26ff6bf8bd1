"""The ``Idempotency-Key`` header, for every POST that writes."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.api.deps import SessionDep, get_principal
from stockflow.auth.roles import Principal
from stockflow.config import Settings
from stockflow.errors import InvalidRequest
from stockflow.idempotency import service

_KEY = re.compile(r"[\x21-\x7e]{1,255}")
REPLAYED_HEADER = "Idempotent-Replayed"


class Idempotency:
    """Runs an endpoint's work at most once per (API key, Idempotency-Key)."""

    def __init__(
        self,
        *,
        request: Request,
        session: AsyncSession,
        principal: Principal,
        key: str | None,
        ttl: timedelta,
        wait_seconds: float,
    ) -> None:
        self._request = request
        self._session = session
        self._principal = principal
        self.key = key
        self._ttl = ttl
        self._wait_seconds = wait_seconds

    async def respond(
        self,
        work: Callable[[], Awaitable[Any]],
        *,
        status_code: int = 201,
        headers: Callable[[Any], Mapping[str, str]] | None = None,
        secret_fields: frozenset[str] = frozenset(),
    ) -> JSONResponse:
        async def produce() -> tuple[Any, Mapping[str, str]]:
            result = await work()
            body = result if isinstance(result, BaseModel) else jsonable_encoder(result)
            return body, (headers(result) if headers else {})

        if self.key is None:
            body, extra = await produce()
            return _json(service.render(body), status_code, dict(extra))
        method = self._request.method
        path = _path(self._request)
        stored = await service.run_once(
            self._session,
            principal_id=self._principal.id,
            key=self.key,
            method=method,
            path=path,
            fingerprint=service.request_fingerprint(method, path, await self._request.body()),
            ttl=self._ttl,
            wait_seconds=self._wait_seconds,
            status_code=status_code,
            work=produce,
            secret_fields=secret_fields,
        )
        response_headers = dict(stored.headers)
        if stored.replayed:
            response_headers[REPLAYED_HEADER] = "true"
        return _json(stored.content, stored.status_code, response_headers)


# Characters Starlette's URL escapes ("?", "#", "\\") or drops (tab, CR, LF) from a path.
_URL_CHANGES = ("?", "#", "\\", "\t", "\r", "\n")


def _path(request: Request) -> str:
    """The request's path as its URL spells it (what keys were stored with), taken from the
    scope unless the URL would spell it differently: building the URL costs more than the
    rest of the key's bookkeeping."""
    path: str = request.scope["path"]
    if any(character in path for character in _URL_CHANGES):
        return request.url.path
    return path


class _RenderedJSONResponse(JSONResponse):
    """A JSON response whose body is already JSON text, sent as it is."""

    def render(self, content: Any) -> bytes:
        assert isinstance(content, str)
        return content.encode("utf-8")


def _json(content: str, status_code: int, headers: dict[str, str]) -> JSONResponse:
    # The same text for the first answer and every replay of it, byte for byte.
    return _RenderedJSONResponse(content, status_code=status_code, headers=headers)


_KEY_DESCRIPTION = (
    "Makes the request safe to retry: with the same key (per API key) the effect happens at "
    "most once and a retry gets the first response again, marked `Idempotent-Replayed: "
    "true`. Kept for `STOCKFLOW_IDEMPOTENCY_TTL_HOURS`."
)
_KEY_EXAMPLE = "3f1c2a9e-order-7781"
IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": "idempotency-key",
    "in": "header",
    "required": False,
    "description": _KEY_DESCRIPTION,
    "schema": {"type": "string", "title": "Idempotency-Key", "examples": [_KEY_EXAMPLE]},
}
"""The header as OpenAPI documents it, for an endpoint that reads it without declaring it."""


def checked_key(key: str | None) -> str | None:
    """The ``Idempotency-Key`` header's value, refused unless 1 to 255 visible ASCII."""
    if key is not None and not _KEY.fullmatch(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters.",
            errors=[{"location": "header.Idempotency-Key", "message": "1-255 visible ASCII"}],
        )
    return key


def idempotency_for(
    request: Request, session: AsyncSession, principal: Principal, key: str | None
) -> Idempotency:
    """``key`` checked, and the store configured from the application's settings."""
    checked_key(key)
    settings: Settings = request.app.state.settings
    return Idempotency(
        request=request,
        session=session,
        principal=principal,
        key=key,
        ttl=timedelta(hours=settings.idempotency_ttl_hours),
        wait_seconds=settings.idempotency_wait_seconds,
    )


async def get_idempotency(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(get_principal)],
    idempotency_key: Annotated[
        str | None, Header(description=_KEY_DESCRIPTION, examples=[_KEY_EXAMPLE])
    ] = None,
) -> Idempotency:
    return idempotency_for(request, session, principal, idempotency_key)


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]
