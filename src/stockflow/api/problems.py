"""RFC 9457 problem+json for every error: HTTP errors, validation, domain errors, crashes."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from stockflow.errors import AuthenticationRequired, StockflowError, problem_type_uri
from stockflow.observability.logging import request_id_var

PROBLEM_MEDIA_TYPE = "application/problem+json"


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


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _message(error: dict[str, Any]) -> str:
    if error.get("type") == "extra_forbidden":
        return "unknown field"
    return str(error.get("msg", "invalid value"))


async def _handle_stockflow_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StockflowError)
    headers = None
    if isinstance(exc, AuthenticationRequired):
        headers = {"WWW-Authenticate": 'Bearer realm="stockflow"'}
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
    errors = [
        {"location": _location(tuple(err.get("loc", ()))), "message": _message(err)}
        for err in exc.errors()
    ]
    return problem_response(
        status=422,
        type_=problem_type_uri("validation-error"),
        title="Invalid request",
        detail=f"{len(errors)} field(s) failed validation",
        errors=errors,
    )


async def _handle_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No resource at this URL."
    if exc.status_code == 405:
        detail = "This URL does not accept that method."
    return problem_response(status=exc.status_code, detail=detail, headers=exc.headers)


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
