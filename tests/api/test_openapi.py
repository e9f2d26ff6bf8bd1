"""The API describes itself: every operation has a summary and a description, every
schema field a description or an example, and the whole document is served."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from stockflow.app import create_app
from stockflow.config import Settings


@pytest.fixture(scope="module")
def openapi() -> dict[str, object]:
    app: FastAPI = create_app(Settings(database_url="sqlite:///:memory:"))
    return app.openapi()


def test_every_operation_is_documented(openapi: dict[str, object]) -> None:
    paths = openapi["paths"]
    assert isinstance(paths, dict)
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        for method, operation in operations.items()
        if not operation.get("summary") or not operation.get("description")
    ]
    assert undocumented == []


def test_v1_operations_declare_bearer_auth(openapi: dict[str, object]) -> None:
    paths = openapi["paths"]
    assert isinstance(paths, dict)
    for path, operations in paths.items():
        if path.startswith("/v1/"):
            for method, operation in operations.items():
                assert operation.get("security"), f"{method.upper()} {path} has no security"


def test_request_bodies_have_examples(openapi: dict[str, object]) -> None:
    components = openapi["components"]
    assert isinstance(components, dict)
    schemas = components["schemas"]
    for name in ("ProductCreate", "AdjustmentCreate", "CustomerCreate", "ApiKeyCreate"):
        properties = schemas[name]["properties"]
        assert any("examples" in field for field in properties.values()), name


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    document = await client.get("/openapi.json")
    assert document.status_code == 200
    assert document.json()["openapi"].startswith("3.1")
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
