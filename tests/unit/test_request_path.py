"""The path idempotency keys are stored under, read cheaply from the scope."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from stockflow.api.idempotency import _path


def _request(path: str) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "query_string": b"a=1",
        "headers": [(b"host", b"example.test")],
        "scheme": "http",
        "server": ("example.test", 80),
    }
    return Request(scope)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/orders",
        "/v1/orders/ord_01/ship",
        "/v1/products/a b/ü",
        "/v1/orders/what?/ship",
        "/v1/orders/a#b",
        "/v1/orders/back\\slash",
        "/v1/orders/%3F",
        "/v1/orders/a\tb/cancel",
        "/v1/orders/a\r\nb",
    ],
)
def test_path_is_the_one_the_url_spells(path: str) -> None:
    assert _path(_request(path)) == _request(path).url.path
