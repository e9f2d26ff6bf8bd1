"""A JSON request body that an endpoint reads itself, refused as FastAPI refuses one it
reads for the endpoint: the same statuses, problem types and error lists.

Placing an order takes its body this way (decision 21): it receives the bytes before it
opens its transaction, as FastAPI does, but parses and validates them only once the caller
is known, so an unauthenticated caller's bad body (malformed JSON included) gets 401
rather than 422.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

M = TypeVar("M", bound=BaseModel)


def _is_json(content_type: str | None) -> bool:
    # FastAPI's strict content type: application/json or application/*+json, nothing else,
    # and a body without a content type is not JSON.
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    main, _, subtype = media_type.partition("/")
    if main != "application" or "/" in subtype:
        return False
    return subtype == "json" or subtype.endswith("+json")


def _unparsable() -> HTTPException:
    return HTTPException(400, "There was an error parsing the body")


async def read_body(request: Request) -> bytes:
    """The body's bytes, received before a transaction opens, so that a slow upload never
    holds a database connection or SQLite's write lock; a client that goes away mid-upload
    gets FastAPI's 400, not an error."""
    try:
        return await request.body()
    except HTTPException:
        raise  # the body is too large: 413
    except Exception as exc:
        raise _unparsable() from exc


def json_body(raw: bytes, content_type: str | None, model: type[M]) -> M:
    """The body received by `read_body` as ``model``; a 422 problem (400 for bytes that
    cannot be decoded) if not."""
    value: Any = raw
    if not raw:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing])
    if _is_json(content_type):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            invalid = {
                "type": "json_invalid",
                "loc": ("body", exc.pos),
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": exc.msg},
            }
            raise RequestValidationError([invalid], body=exc.doc) from exc
        except Exception as exc:  # not UTF-8, UTF-16 or UTF-32; nested beyond recursion
            raise _unparsable() from exc
    try:
        return model.model_validate(value, from_attributes=True)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors, body=value) from exc


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The body as OpenAPI documents it, for ``openapi_extra``: a reference to the model's
    schema, which exists because another operation declares the model as its body (the
    OpenAPI tests check that every reference resolves)."""
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
        },
    }
