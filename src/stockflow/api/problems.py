"""RFC 9457 problem+json for every error: HTTP errors, validation, domain errors, crashes,
and the OpenAPI document saying so for every operation."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from stockflow.api.schemas import document_text
from stockflow.errors import (
    AuthenticationRequired,
    PaymentInProgress,
    PaymentProviderUnavailable,
    ServiceUnavailable,
    StockflowError,
    problem_type_uri,
)
from stockflow.observability.logging import get_logger, request_id_var
from stockflow.observability.metrics import PROBE_PATHS

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


VALIDATION_DETAIL = "{count} field(s) failed validation"
"""The detail of a request refused for its shape (types, ranges, required and unknown
fields), as opposed to one refused by a rule of the domain."""

_PER_FIELD_MESSAGES = {
    "read_only": "read-only field",
    "nul_character": "must not contain NUL characters",
    "non_finite_number": "must be a finite number (no NaN or Infinity)",
    "text_too_long": "String should have at most {limit} characters",
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
            limits = err["ctx"].get("limits", {})
            errors.extend(
                {
                    "location": f"{_location(err)}.{name}",
                    "message": message.format(limit=limits.get(name)),
                }
                for name in err["ctx"]["fields"]
            )
        else:
            errors.append({"location": _location(err), "message": _message(err)})
    return problem_response(
        status=422,
        type_=problem_type_uri("validation-error"),
        title="Invalid request",
        detail=VALIDATION_DETAIL.format(count=len(errors)),
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
    names only that route's methods (GET, when PATCH on the same URL works too). A path
    that spells out a resource of its own (``/v1/orders/preview``) is that resource, not
    an id of the template beside it (``/v1/orders/{order_id}``): only the templates with
    the most fixed segments count.
    """
    matches: list[tuple[int, Mapping[str, Any]]] = []
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            fixed = sum(1 for part in template.split("/") if not part.startswith("{"))
            matches.append((fixed, operations))
    most_fixed = max((fixed for fixed, _ in matches), default=0)
    methods = {
        method.upper()
        for fixed, operations in matches
        if fixed == most_fixed
        for method in operations
    }
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


PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"
PROBLEM_SCHEMAS: dict[str, dict[str, Any]] = {
    "Problem": {
        "title": "Problem",
        "description": (
            "RFC 9457 problem details: the body of every error. Types may add extension "
            "members (listed per type under `GET /problems/{slug}`)."
        ),
        "type": "object",
        "required": ["type", "title", "status", "detail", "request_id"],
        "properties": {
            "type": {
                "type": "string",
                "description": (
                    "A relative URI (`/problems/<slug>`) whose `GET` explains the type, or "
                    "`about:blank` for a plain HTTP error."
                ),
                "examples": ["/problems/not-found"],
            },
            "title": {
                "type": "string",
                "description": "Fixed per type.",
                "examples": ["Not found"],
            },
            "status": {
                "type": "integer",
                "minimum": 400,
                "maximum": 599,
                "description": "The HTTP status.",
                "examples": [404],
            },
            "detail": {
                "type": "string",
                "description": "What went wrong in this request.",
                "examples": ["Product NO-SUCH-SKU does not exist."],
            },
            "request_id": {
                "type": "string",
                "description": "The request's `X-Request-ID`; quote it when reporting a problem.",
                "examples": ["req_42af1d4ea65826e110c8d6e7"],
            },
            "errors": {
                "type": "array",
                "description": "For `validation-error` (and `unsafe-webhook-url`): each offence.",
                "items": {"$ref": "#/components/schemas/ProblemError"},
            },
        },
        "additionalProperties": True,
    },
    "ProblemError": {
        "title": "ProblemError",
        "description": "One offending part of the request.",
        "type": "object",
        "required": ["location", "message"],
        "properties": {
            "location": {
                "type": "string",
                "description": "`body.<field>`, `query.<name>`, `path.<name>`, `header.<name>`.",
                "examples": ["body.lines.0.quantity"],
            },
            "message": {"type": "string", "examples": ["Input should be greater than 0"]},
        },
        "additionalProperties": False,
    },
}
"""Components of the OpenAPI document that every error response refers to."""

PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "A NUL character in the URL, or a body that is not text",
    401: "No valid API key (`unauthenticated`)",
    403: "The key's role may not do this (`forbidden`)",
    404: "No such resource, or not one this key may see (`not-found`)",
    409: "Another request with this `Idempotency-Key` is still running (`idempotency-key-in-use`)",
    412: "`If-Match` does not match the current `ETag` (`precondition-failed`)",
    422: "The request is not valid (`validation-error`, with `errors`)",
    429: "Too many requests from this key or client address (`rate-limited`)",
    503: "The database is unreachable or busy, or the request collided with a concurrent "
    "one; nothing was changed (`service-unavailable`)",
}

_RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer", "minimum": 1},
}
_IMPLIED_HEADERS: dict[int, dict[str, dict[str, Any]]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'Always `Bearer realm="stockflow"`.',
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": _RETRY_AFTER,
        "RateLimit-Policy": {
            "description": 'The limit, e.g. `"per-key";q=60000;w=60` (`rate-limited`).',
            "schema": {"type": "string"},
        },
        "RateLimit": {
            "description": 'What is left of it, e.g. `"per-key";r=0;t=12` (`rate-limited`).',
            "schema": {"type": "string"},
        },
    },
    503: {"Retry-After": {**_RETRY_AFTER, "required": True}},
}
"""The headers that come with the implied statuses: each such error carries them, whichever
handler answered."""


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses`` for error statuses with their usual meaning (403 for a role
    the route refuses, say). Statuses that follow from an operation's shape need not be
    listed: `document_problems` adds them."""
    return {status: {"description": PROBLEM_DESCRIPTIONS[status]} for status in statuses}


def _implied_statuses(path: str, operation: Mapping[str, Any]) -> list[int]:
    """The errors that the machinery every request of this kind passes through can answer,
    whatever the route does."""
    statuses = [400]  # the URL is checked for NUL characters before anything else
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.append(422)
    if "{" in path:
        statuses.append(404)
    if any("HTTPBearer" in requirement for requirement in operation.get("security", [])):
        statuses.append(401)
    if any(
        parameter.get("in") == "header" and parameter.get("name", "").lower() == "idempotency-key"
        for parameter in operation.get("parameters", [])
    ):
        statuses.append(409)
    if path not in PROBE_PATHS:
        statuses.append(429)
    if path.startswith("/v1/"):
        statuses.append(503)
    return statuses


def document_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Declare, in an OpenAPI document, every error response as the problem+json it is.

    Routes list the errors of their own rules; the statuses that every operation of a kind
    can answer (401 for one that needs a key, 404 for one that names a resource, 429 for
    every rate-limited path, …) are added here, where the handlers that produce them live.
    FastAPI's own 422 schema, which the API never sends, gives way to the problem.
    """
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(copy.deepcopy(PROBLEM_SCHEMAS))
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") in ("path", "query"):
                    # The 400 for a NUL in the URL, from the parameters' side.
                    document_text(parameter.get("schema", {}))
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for status in _implied_statuses(path, operation):
                implied = PROBLEM_DESCRIPTIONS[status]
                response = responses.setdefault(str(status), {"description": implied})
                if status == 409 and response["description"] != implied:
                    # Any write with the header can meet its twin, whatever else it refuses.
                    response["description"] += f"; or {implied[0].lower()}{implied[1:]}"
                if status in _IMPLIED_HEADERS:
                    headers = copy.deepcopy(_IMPLIED_HEADERS[status])
                    response.setdefault("headers", {}).update(headers)
            for key, response in responses.items():
                if key[0] in "45":
                    if response.get("description") == "Validation Error":
                        response["description"] = PROBLEM_DESCRIPTIONS[422]
                    response["content"] = {
                        PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}
                    }
            operation["responses"] = dict(sorted(responses.items()))
    if "#/components/schemas/HTTPValidationError" not in json.dumps(document.get("paths")):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return document


def _document_in_openapi(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_problem_handlers(app: FastAPI) -> None:
    """Every error becomes problem+json, and the app's OpenAPI document declares it so."""
    app.add_exception_handler(StockflowError, _handle_stockflow_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_error)
    app.add_exception_handler(DBAPIError, _handle_database_error)
    app.add_exception_handler(ConnectionError, _handle_database_error)
    _document_in_openapi(app)
