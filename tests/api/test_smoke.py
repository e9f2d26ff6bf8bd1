from __future__ import annotations

import httpx

from tests.conftest import Keys


async def test_readyz_reports_the_database(client: httpx.AsyncClient, backend: str) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["database"] == backend


async def test_admin_lists_products(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.get("/v1/products", headers=keys.admin)
    assert response.status_code == 200
    assert response.json() == {"data": [], "next_cursor": None}
