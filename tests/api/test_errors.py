"""Every error is RFC 9457 problem+json, whatever produced it."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from stockflow.api.deps import SessionDep
from stockflow.db.models import StockLevel
from tests.assertions import assert_problem
from tests.conftest import Keys


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/no-such-thing"), 404)


async def test_wrong_method_is_a_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/healthz")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


async def test_validation_error_lists_each_field(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.post(
        "/v1/products",
        headers=keys.admin,
        json={"sku": "bad sku!", "unit_price": -1, "currency": "EUR", "colour": "red"},
    )
    body = assert_problem(response, 422, "validation-error")
    errors = body["errors"]
    assert isinstance(errors, list)
    by_location = {error["location"]: error["message"] for error in errors}
    assert set(by_location) == {"body.sku", "body.name", "body.unit_price", "body.colour"}
    assert by_location["body.colour"] == "unknown field"


async def test_malformed_json_is_a_422_problem(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.post(
        "/v1/products",
        headers={**keys.admin, "Content-Type": "application/json"},
        content=b'{"sku": ',
    )
    assert_problem(response, 422, "validation-error")


async def test_domain_error_carries_its_type(client: httpx.AsyncClient, keys: Keys) -> None:
    body = assert_problem(
        await client.get("/v1/products/NOPE", headers=keys.admin), 404, "not-found"
    )
    assert body["detail"] == "Product NOPE does not exist."


async def test_problem_types_are_described_at_their_uri(client: httpx.AsyncClient) -> None:
    response = await client.get("/problems/stock-below-reserved")
    assert response.status_code == 200
    assert response.json()["title"] == "Stock would fall below what is reserved"
    assert_problem(await client.get("/problems/no-such-problem"), 404, "not-found")


async def test_unexpected_exception_is_a_500_without_trace(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    secret = "internal detail that must not leak"

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(secret)

    response = await client.get("/boom", headers={"X-Request-ID": "trace-me-123"})
    body = assert_problem(response, 500, "internal-error")
    assert body["request_id"] == "trace-me-123"
    assert secret not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text


async def test_a_failed_commit_is_an_error_and_stores_nothing(
    app: FastAPI, client: httpx.AsyncClient, keys: Keys
) -> None:
    """The commit happens before the response: if it fails, the client hears about it."""

    @app.post("/commit-fails")
    async def commit_fails(session: SessionDep) -> dict[str, bool]:
        # Added but not flushed: the violation (unknown product, negative stock) surfaces
        # only when the request's transaction commits.
        session.add(StockLevel(product_id="prod_missing", location_id="loc_missing", on_hand=-1))
        return {"ok": True}

    response = await client.post("/commit-fails")
    assert_problem(response, 500, "internal-error")
    assert "ok" not in response.text


async def test_request_id_is_echoed_or_minted(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    minted = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert minted.headers["X-Request-ID"].startswith("req_")


async def test_405_allow_names_every_method_of_the_url(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    response = await client.delete("/v1/products/ANY-SKU", headers=keys.admin)
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, PATCH"


@pytest.mark.parametrize(
    ("path", "body", "location"),
    [
        (
            "/v1/products",
            {"sku": "NUL-1", "name": "a\x00b", "unit_price": 1, "currency": "EUR"},
            "body.name",
        ),
        (
            "/v1/products",
            {
                "sku": "NUL-1",
                "name": "n",
                "unit_price": 1,
                "currency": "EUR",
                "metadata": {"k": ["x", "\x00"]},
            },
            "body.metadata.k.1",
        ),
        ("/v1/customers", {"name": "n", "phone": "\x00"}, "body.phone"),
    ],
)
async def test_nul_characters_in_bodies_are_refused_on_every_database(
    client: httpx.AsyncClient, keys: Keys, path: str, body: dict[str, object], location: str
) -> None:
    response = await client.post(path, json=body, headers=keys.admin)
    problem = assert_problem(response, 422, "validation-error")
    assert problem["errors"] == [
        {"location": location, "message": "must not contain NUL characters"}
    ]


@pytest.mark.parametrize("url", ["/v1/products/A%00B", "/v1/products?cursor=%00"])
async def test_nul_characters_in_urls_are_a_400(
    client: httpx.AsyncClient, keys: Keys, url: str
) -> None:
    assert_problem(await client.get(url, headers=keys.admin), 400)


async def test_non_finite_numbers_are_refused_on_every_database(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    """Python's JSON parser takes NaN and Infinity; PostgreSQL refuses them and SQLite would
    store something else, so both answer 422."""
    response = await client.post(
        "/v1/customers",
        headers={**keys.admin, "Content-Type": "application/json"},
        content=b'{"name": "n", "metadata": {"score": NaN, "list": [1, Infinity]}}',
    )
    problem = assert_problem(response, 422, "validation-error")
    assert problem["errors"] == [
        {"location": f"body.{path}", "message": "must be a finite number (no NaN or Infinity)"}
        for path in ("metadata.score", "metadata.list.1")
    ]


@pytest.mark.parametrize(
    "url",
    [
        "/v1/orders?created_after=0001-01-01T00:00:00%2B01:00",
        "/v1/orders?created_before=9999-12-31T23:59:59-01:00",
        "/v1/orders?created_after=2026-01-01T00:00:00",
    ],
)
async def test_unusable_timestamps_in_queries_are_a_422(
    client: httpx.AsyncClient, keys: Keys, url: str
) -> None:
    response = await client.get(url, headers=keys.admin)
    problem = assert_problem(response, 422, "validation-error")
    assert problem["errors"][0]["location"].startswith("query.created_")


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "/v1/orders/ord_" + "A" * 600 + "/cancel"),
        ("POST", "/v1/inventory/" + "S" * 600 + "/adjustments"),
        ("GET", "/v1/products/" + "S" * 65),
        ("GET", "/v1/customers/cus_" + "C" * 100),
    ],
)
async def test_overlong_ids_in_urls_are_a_422_even_with_an_idempotency_key(
    client: httpx.AsyncClient, keys: Keys, method: str, url: str
) -> None:
    response = await client.request(
        method,
        url,
        headers={**keys.admin, "Idempotency-Key": "long-url"},
        json={"reason": "r", "delta": 1},
    )
    problem = assert_problem(response, 422, "validation-error")
    assert problem["errors"][0]["location"].startswith("path.")


# Placing an order reads its body itself, after the caller (decision 21); previewing one
# has FastAPI read the same model. Whatever is wrong with a body, both answer alike.
_BAD_BODIES: list[tuple[str | None, bytes]] = [
    ("application/json", b""),
    ("application/json", b'{"lines": '),
    ("application/json", b"\xff\xfe\xfa"),
    ("application/json", b"[]"),
    ("application/json", b'{"lines": []}'),
    ("application/json", b'{"lines": [{"sku": "MUG", "quantity": 0}], "colour": "red"}'),
    ("application/json", b'{"lines": [{"sku": "MUG", "quantity": 1}], "id": "ord_x"}'),
    ("application/json", b'{"lines": [{"sku": "M\\u0000G", "quantity": 1}]}'),
    ("application/json", b'{"lines": [{"sku": "MUG", "quantity": 1}], "metadata": {"r": NaN}}'),
    ("application/merge-patch+json", b'{"lines": []}'),
    ("application/json; charset=utf-8", b'{"lines": "all"}'),
    ("application/json", b"[" * 100_000),
    ("application/foo/bar+json", b'{"lines": [{"sku": "MUG", "quantity": 1}]}'),
    ("text/plain", b'{"lines": [{"sku": "MUG", "quantity": 1}]}'),
    (None, b'{"lines": [{"sku": "MUG", "quantity": 1}]}'),
]


@pytest.mark.parametrize(("content_type", "content"), _BAD_BODIES)
async def test_a_bad_order_body_is_refused_as_fastapi_refuses_it(
    client: httpx.AsyncClient, keys: Keys, content_type: str | None, content: bytes
) -> None:
    headers = dict(keys.staff)
    if content_type is not None:
        headers["Content-Type"] = content_type
    placed = await client.post("/v1/orders", headers=headers, content=content)
    previewed = await client.post("/v1/orders/preview", headers=headers, content=content)
    assert placed.status_code in (400, 422)
    assert placed.status_code == previewed.status_code
    first, second = placed.json(), previewed.json()
    first.pop("request_id")
    second.pop("request_id")
    assert first == second


@pytest.mark.parametrize("content", [b'{"lines": []}', b'{"lines": ', b""])
async def test_the_caller_is_checked_before_the_order_body(
    client: httpx.AsyncClient, keys: Keys, content: bytes
) -> None:
    for headers in ({}, {"Authorization": "Bearer sf_not_a_key"}, {"Authorization": "Basic x"}):
        response = await client.post(
            "/v1/orders", headers={**headers, "Content-Type": "application/json"}, content=content
        )
        assert_problem(response, 401, "unauthenticated")


async def test_a_bad_idempotency_key_is_reported_before_the_order_body(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    response = await client.post(
        "/v1/orders",
        headers={**keys.staff, "Idempotency-Key": "has spaces", "Content-Type": "application/json"},
        content=b'{"lines": []}',
    )
    body = assert_problem(response, 422, "validation-error")
    assert body["errors"] == [
        {"location": "header.Idempotency-Key", "message": "1-255 visible ASCII"}
    ]
