"""Helpers for tests that give products suppliers through the API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Keys


async def post_link(
    client: httpx.AsyncClient, keys: Keys, sku: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Add a supplier's terms to a product; the created entry."""
    response = await client.post(f"/v1/products/{sku}/suppliers", json=body, headers=keys.staff)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def links_of(client: httpx.AsyncClient, keys: Keys, sku: str) -> list[dict[str, Any]]:
    """A product's suppliers, preferred first."""
    response = await client.get(f"/v1/products/{sku}/suppliers", headers=keys.staff)
    assert response.status_code == 200, response.text
    body = response.json()
    # A few suppliers per product: one page, always.
    assert body["next_cursor"] is None
    listed: list[dict[str, Any]] = body["data"]
    return listed
