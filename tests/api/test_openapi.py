"""The API describes itself: every operation has a summary and a description, every
schema field a description or an example, and the whole document is served."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from stockflow.app import create_app
from stockflow.config import Settings


@pytest.fixture(scope="module")
def openapi() -> dict[str, object]:
    app: FastAPI = create_app(Settings(database_url="sqlite:///:memory:"))
    return app.openapi()


def _operations(openapi: dict[str, object]) -> list[tuple[str, dict[str, Any]]]:
    """Every operation of the document, as ("POST /v1/orders", operation)."""
    paths = openapi["paths"]
    assert isinstance(paths, dict)
    return [
        (f"{method.upper()} {path}", operation)
        for path, operations in paths.items()
        for method, operation in operations.items()
    ]


def test_every_operation_is_documented(openapi: dict[str, object]) -> None:
    undocumented = [
        name
        for name, operation in _operations(openapi)
        if not operation.get("summary") or not operation.get("description")
    ]
    assert undocumented == []


def test_every_tag_is_described(openapi: dict[str, object]) -> None:
    # Routers are included busiest first, for matching; the documentation's sections keep
    # their own order, and each says what it holds.
    paths = openapi["paths"]
    tags = openapi["tags"]
    assert isinstance(paths, dict)
    assert isinstance(tags, list)
    described = [tag["name"] for tag in tags if tag.get("description")]
    used = {
        tag for operations in paths.values() for op in operations.values() for tag in op["tags"]
    }
    assert used <= set(described)
    assert described[0] == "API keys"


def test_v1_operations_declare_bearer_auth(openapi: dict[str, object]) -> None:
    paths = openapi["paths"]
    assert isinstance(paths, dict)
    for path, operations in paths.items():
        if path.startswith("/v1/"):
            for method, operation in operations.items():
                assert operation.get("security"), f"{method.upper()} {path} has no security"


def test_every_write_documents_the_idempotency_key_alike(openapi: dict[str, object]) -> None:
    # Placing an order reads the header itself rather than through a dependency, so its
    # documentation is written by hand: it must say what every other write says.
    paths = openapi["paths"]
    assert isinstance(paths, dict)
    documented = {
        f"POST {path}": next(
            (p for p in operations["post"].get("parameters", []) if p["in"] == "header"), None
        )
        for path, operations in paths.items()
        # A preview writes nothing; a supplier's message is kept once by its webhook-id, and
        # Stripe's event by its id; an order has one PaymentIntent per amount, whoever asks;
        # erasing a customer again does again what it did (and finds any later copy).
        if "post" in operations
        and not path.endswith(
            ("/preview", "/inbound", "/webhooks/stripe", "/payment-intent", "/erase")
        )
    }
    missing = [operation for operation, header in documented.items() if header is None]
    assert missing == []
    reference = documented.pop("POST /v1/customers")
    assert reference is not None
    assert reference["name"] == "idempotency-key"
    for operation, header in documented.items():
        assert header is not None
        assert header["name"] == reference["name"], operation
        assert header["description"] == reference["description"], operation
        assert not header["required"], operation


def test_no_dependency_leaks_into_the_parameters(openapi: dict[str, object]) -> None:
    # An annotation that cannot be resolved (a dependency alias not imported) silently turns
    # a dependency into a required query parameter.
    leaked = [
        f"{name}: {parameter['name']}"
        for name, operation in _operations(openapi)
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query"
        and parameter["name"] in {"session", "principal", "idempotency", "settings", "request"}
    ]
    assert leaked == []


def test_every_reference_resolves(openapi: dict[str, object]) -> None:
    # Some operations describe their body or security by hand (placing an order), with
    # references to what other operations make FastAPI declare.
    references: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    references.append(value)
                else:
                    collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    collect(openapi)
    assert "#/components/schemas/OrderCreate" in references
    for reference in references:
        node: object = openapi
        for part in reference.removeprefix("#/").split("/"):
            assert isinstance(node, dict), reference
            assert part in node, reference
            node = node[part]
    components = openapi["components"]
    assert isinstance(components, dict)
    schemes = components["securitySchemes"]
    paths = openapi["paths"]
    assert isinstance(paths, dict)
    for operations in paths.values():
        for operation in operations.values():
            for requirement in operation.get("security", []):
                assert set(requirement) <= set(schemes)


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
