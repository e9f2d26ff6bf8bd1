"""Dependencies shared by every router: settings, the request's transaction, the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from stockflow.auth import service as auth_service
from stockflow.auth.roles import ALL_ROLES, Principal, Role
from stockflow.auth.usage import KeyUsageRecorder
from stockflow.config import Settings
from stockflow.db.engine import Database
from stockflow.errors import AuthenticationRequired, PermissionDenied

_READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_READ_ONLY_MARK = "__stockflow_read_only__"

F = TypeVar("F", bound=Callable[..., Any])


def read_only_transaction(endpoint: F) -> F:
    """Mark an endpoint that only computes an answer (a preview): its request gets a read
    transaction whatever its method, so it never takes SQLite's write lock."""
    setattr(endpoint, _READ_ONLY_MARK, True)
    return endpoint


def _writes(request: Request) -> bool:
    if request.method in _READ_ONLY_METHODS:
        return False
    route = request.scope.get("route")
    return not getattr(getattr(route, "endpoint", None), _READ_ONLY_MARK, False)


# Dependencies are coroutines, even those that only read: FastAPI runs a plain function
# in a worker thread, a hop that costs more than the function on every request.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed when the endpoint returns.

    Declared with ``scope="function"`` so the commit happens before the response is sent:
    a commit that fails becomes an error response, never a 2xx for lost work.
    """
    database = get_database(request)
    async with database.transaction(write=_writes(request)) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An API key: `sf_...`")


def bearer_token(request: Request) -> str | None:
    """The key of ``Authorization: Bearer <key>``, read as ``_bearer`` reads it, without
    building its credentials model on the order path."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if not (scheme and token) or scheme.lower() != "bearer":
        return None
    return token


async def _authenticated(request: Request, session: AsyncSession, token: str | None) -> Principal:
    if token is None:
        raise AuthenticationRequired("Send an API key as `Authorization: Bearer <key>`.")
    principal, last_used_at = await auth_service.authenticate(session, token)
    recorder: KeyUsageRecorder = request.app.state.key_usage
    recorder.note(principal.id, last_used_at)
    return principal


def _permitted(principal: Principal, allowed: frozenset[Role]) -> Principal:
    if principal.role not in allowed:
        raise PermissionDenied(f"The {principal.role.value} role may not perform this operation.")
    return principal


async def get_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return await _authenticated(
        request, session, None if credentials is None else credentials.credentials
    )


def require(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    allowed = frozenset(roles)

    async def dependency(
        principal: Annotated[Principal, Depends(get_principal)],
    ) -> Principal:
        return _permitted(principal, allowed)

    return dependency


@asynccontextmanager
async def caller_transaction(
    request: Request, allowed: frozenset[Role]
) -> AsyncIterator[tuple[AsyncSession, Principal]]:
    """The request's transaction and its authenticated, permitted caller, for an endpoint
    that declares no dependencies (placing an order; decision 21 in docs/decisions.md).

    The same steps as ``SessionDep`` with ``require(*allowed)``, in the same order and with
    the same answers, taken by the endpoint itself: FastAPI spends more on solving each
    dependency than the order path spends on its own Python. The endpoint receives its
    body's bytes before (`stockflow.api.bodies.read_body`), and checks its headers and
    parses its body after.
    Committed when the block ends, before the endpoint returns its response.
    """
    database = get_database(request)
    async with database.transaction(write=_writes(request)) as session:
        principal = await _authenticated(request, session, bearer_token(request))
        yield session, _permitted(principal, allowed)


async def authenticated_caller(request: Request, allowed: frozenset[Role]) -> Principal:
    """The authenticated, permitted caller, from a read transaction of its own that ends
    here: for an endpoint that talks to a third party and must hold no transaction (and on
    SQLite no lock) while it waits for the answer."""
    database = get_database(request)
    async with database.transaction(write=False) as session:
        principal = await _authenticated(request, session, bearer_token(request))
    return _permitted(principal, allowed)


BEARER_SECURITY: list[dict[str, list[str]]] = [{_bearer.scheme_name: []}]
"""The operation's ``security`` in OpenAPI, for an endpoint that authenticates without
declaring the bearer dependency."""


AnyPrincipal = Annotated[Principal, Depends(require(*ALL_ROLES))]
StaffPrincipal = Annotated[Principal, Depends(require(Role.ADMIN, Role.STAFF))]
AdminPrincipal = Annotated[Principal, Depends(require(Role.ADMIN))]
ReaderPrincipal = Annotated[Principal, Depends(require(Role.ADMIN, Role.STAFF, Role.SERVICE))]


class ListParams:
    """``?limit=`` (1-100, default 20) and ``?cursor=`` for every list."""

    def __init__(self, limit: int, cursor: str | None) -> None:
        self.limit = limit
        self.cursor = cursor


async def list_params(
    limit: Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")] = 20,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="`next_cursor` from the previous page."),
    ] = None,
) -> ListParams:
    return ListParams(limit, cursor)


ListParamsDep = Annotated[ListParams, Depends(list_params)]
