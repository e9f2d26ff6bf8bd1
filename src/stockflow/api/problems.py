"""RFC 9457 problem+json for every error: HTTP errors, validation, domain errors, crashes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from stockflow.errors import (
    AuthenticationRequired,
    PaymentInProgress,
    PaymentProviderUnavailable,
    ServiceUnavailable,
    StockflowError,
    problem_type_uri,
)
from stockflow.observability.logging import get_logger, request_id_var

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = get_logger(__name__)


def problem_response(
    *,
    status: int,
    type_: str = "about:blank",
    title: str | None = None,
    detail: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    request_id = request_id_var.get()
    if request_id is not None:
        body["request_id"] = request_id
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


_PER_FIELD_MESSAGES = {
    "read_only": "read-only field",
    "nul_character": "must not contain NUL characters",
    "non_finite_number": "must be a finite number (no NaN or Infinity)",
}


def _location(error: dict[str, Any]) -> str:
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        # Pydantic puts the character offset where a field name would be; it is not a field.
        loc = loc[:1]
    return ".".join(str(part) for part in loc)


def _message(error: dict[str, Any]) -> str:
    if error.get("type") == "extra_forbidden":
        return "unknown field"
    if error.get("type") == "json_invalid":
        position = error.get("loc", (None, None))[-1]
        reason = (error.get("ctx") or {}).get("error", "malformed")
        return f"the body is not valid JSON ({reason} at character {position})"
    return str(error.get("msg", "invalid value"))


async def _handle_stockflow_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StockflowError)
    headers = None
    if isinstance(exc, AuthenticationRequired):
        headers = {"WWW-Authenticate": 'Bearer realm="stockflow"'}
    elif isinstance(exc, ServiceUnavailable | PaymentInProgress | PaymentProviderUnavailable):
        headers = {"Retry-After": str(exc.retry_after_seconds)}
    return problem_response(
        status=exc.status,
        type_=exc.type,
        title=exc.title,
        detail=exc.detail,
        headers=headers,
        **exc.extensions,
    )


async def _handle_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, str]] = []
    for err in exc.errors():
        if err.get("type") in _PER_FIELD_MESSAGES:
            # One entry per field, located at the field, like an unknown field.
            message = _PER_FIELD_MESSAGES[err["type"]]
            errors.extend(
                {"location": f"{_location(err)}.{name}", "message": message}
                for name in err["ctx"]["fields"]
            )
        else:
            errors.append({"location": _location(err), "message": _message(err)})
    return problem_response(
        status=422,
        type_=problem_type_uri("validation-error"),
        title="Invalid request",
        detail=f"{len(errors)} field(s) failed validation",
        errors=errors,
    )


# SQLSTATE classes that mean "no usable connection": connection exception, invalid
# authorization, unknown database, insufficient resources, operator intervention (shutdown).
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "28", "3D", "53", "57"})


def _database_unavailable(exc: Exception) -> bool:
    if isinstance(exc, ConnectionError | OperationalError | InterfaceError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return exc.connection_invalidated or (
        isinstance(sqlstate, str) and sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES
    )


def _rolled_back(exc: Exception) -> bool:
    """A transaction the database rolled back to break a deadlock or a serialisation
    conflict (SQLSTATE class 40): nothing was written, and the same request can succeed."""
    if not isinstance(exc, DBAPIError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("40")


async def _handle_database_error(_request: Request, exc: Exception) -> JSONResponse:
    # A lost or refused database connection is the deployment's trouble, not the request's:
    # say so with 503 and a retry hint instead of a 500 that reads like a bug. Any other
    # database error is a bug and goes on to the last-resort 500.
    if _rolled_back(exc):
        log.warning("transaction_rolled_back", error=type(exc).__name__)
        return problem_response(
            status=503,
            type_=problem_type_uri("service-unavailable"),
            title="Service unavailable",
            detail=(
                "The request collided with a concurrent one and was rolled back; nothing was "
                "changed. Retry it (with the same Idempotency-Key, if it had one)."
            ),
            headers={"Retry-After": "1"},
        )
    if not _database_unavailable(exc):
        raise exc
    log.warning("database_unavailable", error=type(exc).__name__)
    return problem_response(
        status=503,
        type_=problem_type_uri("service-unavailable"),
        title="Service unavailable",
        detail="The database is unreachable, busy or not migrated. Retry shortly.",
        headers={"Retry-After": "5"},
    )


def _allowed_methods(request: Request) -> str | None:
    """Every method the path accepts, across all routes that serve it.

    The router answers 405 from the first route whose path matched, so its own ``Allow``
    names only that route's methods (GET, when PATCH on the same URL works too).
    """
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods.update(method.upper() for method in operations)
    return ", ".join(sorted(methods)) or None


async def _handle_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No resource at this URL."
    if exc.status_code == 405:
        detail = "This URL does not accept that method."
        allowed = _allowed_methods(request)
        if allowed is not None:
            headers["Allow"] = allowed
    return problem_response(status=exc.status_code, detail=detail, headers=headers)


def internal_error_response() -> JSONResponse:
    """The body of every crash: no trace, only the request id to quote."""
    return problem_response(
        status=500,
        type_=problem_type_uri("internal-error"),
        title="Internal error",
        detail="The server failed to process the request. Quote the request id when reporting it.",
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StockflowError, _handle_stockflow_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_error)
    app.add_exception_handler(DBAPIError, _handle_database_error)
    app.add_exception_handler(ConnectionError, _handle_database_error)
