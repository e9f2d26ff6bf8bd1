"""Every response carries the browser security headers; CORS answers only the origins the
settings list; production refuses settings that would leak data."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from stockflow.app import create_app
from stockflow.config import Settings
from stockflow.db.engine import Database
from tests.conftest import Keys

EXPECTED = {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}


def _client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://stockflow.test")


async def test_every_kind_of_answer_carries_the_headers(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    answers = [
        await client.get("/healthz"),
        await client.get("/metrics"),
        await client.get("/v1/products", headers=keys.staff),
        await client.get("/v1/products"),  # 401
        await client.get("/v1/no-such-thing"),  # 404, no route
        await client.post("/v1/orders", headers=keys.staff, content=b"{"),  # direct route
        await client.post(
            "/v1/orders",
            headers=keys.staff,
            json={"customer_id": keys.customer_id, "lines": [{"sku": "NONE", "quantity": 1}]},
        ),  # direct route, 422
        await client.get("/openapi.json"),
    ]
    assert {response.status_code for response in answers} == {200, 401, 404, 422}
    for response in answers:
        for name, value in EXPECTED.items():
            assert response.headers.get(name) == value, (response.request.url, name)
        assert "strict-transport-security" not in response.headers
        assert response.headers["x-request-id"]


async def test_the_api_documentation_page_still_loads_its_scripts(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "content-security-policy" not in page.headers
    assert page.headers["x-frame-options"] == "DENY"


async def test_production_adds_strict_transport_security(database: Database) -> None:
    settings = Settings(
        environment="production",
        database_url=str(database.engine.url.render_as_string(hide_password=False))
        if database.dialect == "postgresql"
        else "postgresql://postgres@127.0.0.1:5432/test",
        secret_key="a-production-secret-key-1234567890",
    )
    app = create_app(settings, database=database)
    async with _client(app) as client:
        response = await client.get("/healthz")
    assert response.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"


async def test_cors_answers_the_listed_origins_only(settings: Settings, database: Database) -> None:
    app = create_app(
        settings.model_copy(update={"cors_allow_origins": "https://shop.example"}),
        database=database,
    )
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }
    async with _client(app) as client:
        allowed = await client.options(
            "/v1/orders", headers={"Origin": "https://shop.example", **preflight}
        )
        refused = await client.options(
            "/v1/orders", headers={"Origin": "https://evil.example", **preflight}
        )
        simple = await client.get("/healthz", headers={"Origin": "https://shop.example"})
        other = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert simple.headers["access-control-allow-origin"] == "https://shop.example"
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    assert "access-control-allow-origin" not in other.headers


async def test_without_origins_there_is_no_cors(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"Origin": "https://shop.example"})
    assert "access-control-allow-origin" not in response.headers


def test_the_wildcard_origin_never_goes_with_credentials() -> None:
    with pytest.raises(ValidationError, match="wildcard"):
        Settings(cors_allow_origins="*", cors_allow_credentials=True)
    assert Settings(cors_allow_origins="*").cors_origins == ["*"]
    with pytest.raises(ValidationError, match="not an http"):
        Settings(cors_allow_origins="shop.example")


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("database_echo", True, "DATABASE_ECHO"),
        ("log_level", "debug", "LOG_LEVEL=debug"),
        ("cors_allow_origins", "http://shop.example", "https CORS origins"),
        ("webhooks_allow_private", True, "WEBHOOKS_ALLOW_PRIVATE"),
        ("database_url", "sqlite:///./var/x.db", "not SQLite"),
        ("secret_key", "change-me", "SECRET_KEY"),
    ],
)
def test_production_refuses_insecure_settings(setting: str, value: object, message: str) -> None:
    safe = {
        "environment": "production",
        "database_url": "postgresql://db.internal/stockflow",
        "secret_key": "a-production-secret-key-1234567890",
    }
    Settings(**safe)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=message):
        Settings(**{**safe, setting: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/orders"), ("POST", "/v1/products"), ("POST", "/v1/customers")],
)
async def test_a_body_over_one_mebibyte_is_refused_with_413(
    client: httpx.AsyncClient, keys: Keys, method: str, path: str
) -> None:
    body = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    response = await client.request(
        method, path, headers={**keys.staff, "Content-Type": "application/json"}, content=body
    )
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"]
    just_under = await client.request(
        method,
        path,
        headers={**keys.staff, "Content-Type": "application/json"},
        content=b'{"name": "' + b"x" * (1024 * 1024 - 100) + b'"}',
    )
    assert just_under.status_code == 422, just_under.text


async def test_a_page_of_more_than_100_is_refused(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.get("/v1/orders", params={"limit": 101}, headers=keys.staff)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_body_without_a_length_is_cut_off_past_one_mebibyte(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    response = await client.post(
        "/v1/products",
        headers={**keys.staff, "Content-Type": "application/json"},
        content=chunks(),
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
