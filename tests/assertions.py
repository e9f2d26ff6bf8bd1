"""Assertions shared by the API tests: every error must be a complete problem response."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM = "application/problem+json"


def assert_problem(
    response: httpx.Response, status: int, slug: str | None = None, **extensions: Any
) -> dict[str, Any]:
    """A problem+json response with this status, type ``/problems/<slug>`` (``about:blank``
    when no slug is given), a title, the request id, no trace, and these extension values."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == (f"/problems/{slug}" if slug else "about:blank")
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "Traceback" not in response.text
    for name, value in extensions.items():
        assert body[name] == value, name
    return body


def assert_invalid(response: httpx.Response, location: str, message_part: str = "") -> None:
    """A 422 naming ``location`` with a message containing ``message_part``."""
    body = assert_problem(response, 422, "validation-error")
    matching = [e for e in body["errors"] if e["location"] == location]
    assert matching, f"no error at {location}: {body['errors']}"
    assert any(message_part in e["message"] for e in matching), body["errors"]
