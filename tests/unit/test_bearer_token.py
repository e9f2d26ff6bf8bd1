"""The order path reads its API key without FastAPI's bearer dependency; it must read
exactly what that dependency reads, or one route would accept what the others refuse."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from stockflow.api.deps import _bearer, bearer_token


def _request(authorization: bytes | None) -> Request:
    headers = [(b"host", b"example.test")]
    if authorization is not None:
        headers.append((b"authorization", authorization))
    return Request({"type": "http", "method": "POST", "path": "/v1/orders", "headers": headers})


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        b"",
        b"Bearer",
        b"Bearer ",
        b"Bearer  ",
        b"Bearer sf_abc",
        b"bearer sf_abc",
        b"BEARER sf_abc",
        b"Bearer   sf_abc  ",
        b"Bearer sf_abc def",
        b"Bearer\tsf_abc",
        b"Basic c2Y6YWJj",
        b"Token sf_abc",
        b" Bearer sf_abc",
        b"Bearersf_abc",
        b"sf_abc",
    ],
)
async def test_the_order_path_reads_the_key_as_the_bearer_dependency_does(
    authorization: bytes | None,
) -> None:
    request = _request(authorization)
    credentials = await _bearer(request)
    expected = None if credentials is None else credentials.credentials
    assert bearer_token(request) == expected


def test_a_bearer_key_is_read() -> None:
    assert bearer_token(_request(b"Bearer sf_abc")) == "sf_abc"
    assert bearer_token(_request(b"Basic sf_abc")) is None
