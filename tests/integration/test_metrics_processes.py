"""`/metrics` of a server running several processes (PostgreSQL only): whichever process
answers the scrape, its counters are the sum over all of them."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_order_concurrency import create_product
from tests.server import OwnDatabase, expect, running_server

pytestmark = pytest.mark.postgres_only

BATCH = 20
MAX_ORDERS = 400


def _sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


async def _shop(client: httpx.AsyncClient, db: OwnDatabase, sku: str, units: int) -> str:
    """A product with ``units`` in stock, and a customer to order it; the customer's id."""
    await create_product(client, db, sku, units)
    customer: str = expect(
        await client.post("/v1/customers", headers=db.staff, json={"name": f"Buyer of {sku}"}),
        201,
    )["id"]
    return customer


def _placed_by_process(directory: Path) -> dict[str, float]:
    """Orders accepted, by the pid of the process that placed them, from each process's
    own counter file."""
    served: dict[str, float] = {}
    for path in directory.glob("counter_*.db"):
        match = re.fullmatch(r"counter_(\d+)\.db", path.name)
        if match is None or path.stat().st_size < 8:
            continue
        values = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
        for key, value, *_rest in values:
            _metric, name, labels, _help = json.loads(key)
            if name == "stockflow_orders_placed_total" and labels == {"outcome": "accepted"}:
                served[match.group(1)] = served.get(match.group(1), 0) + value
    return served


async def _fresh(base_url: str, method: str, path: str, **kwargs: object) -> httpx.Response:
    """One request on a connection of its own, so that the kernel hands each to whichever
    server process accepts first."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return await client.request(method, path, **kwargs)  # type: ignore[arg-type]


async def test_counters_add_up_across_two_server_processes(
    own_database: OwnDatabase, tmp_path: Path
) -> None:
    db = own_database
    directory = tmp_path / "metrics"
    directory.mkdir()
    # A previous run's file, which the server must not count.
    (directory / "counter_1.db").write_bytes(b"stale")
    async with (
        running_server(
            db.url,
            tmp_path / "serve.log",
            workers=2,
            env={"PROMETHEUS_MULTIPROC_DIR": str(directory)},
        ) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=30) as client,
    ):
        customer = await _shop(client, db, "MULTI-1", 1000)
        semaphore = asyncio.Semaphore(8)

        async def place() -> httpx.Response:
            async with semaphore:
                return await _fresh(
                    server.base_url,
                    "POST",
                    "/v1/orders",
                    headers=db.service,
                    json={"customer_id": customer, "lines": [{"sku": "MULTI-1", "quantity": 1}]},
                )

        # Batches until both processes have placed some (the kernel hands each new
        # connection to whichever process accepts first), within a bound.
        served: dict[str, float] = {}
        orders = 0
        while orders < MAX_ORDERS:
            placed = await asyncio.gather(*(place() for _ in range(BATCH)))
            assert [r.status_code for r in placed] == [201] * BATCH
            orders += BATCH
            served = _placed_by_process(directory)
            if len([pid for pid, count in served.items() if count > 0]) == 2:
                break
        assert len([pid for pid, count in served.items() if count > 0]) == 2, served
        assert "1" not in served  # the stale file was removed at start
        assert sum(served.values()) == orders

        # Every scrape, whichever process answers it, counts every order.
        for _ in range(10):
            scraped = await _fresh(server.base_url, "GET", "/metrics")
            assert scraped.status_code == 200
            text = scraped.text
            assert _sample(text, "stockflow_orders_placed_total", outcome="accepted") == orders
            assert (
                _sample(
                    text,
                    "stockflow_http_requests_total",
                    method="POST",
                    route="/v1/orders",
                    status_class="2xx",
                )
                == orders
            )
            assert _sample(text, "stockflow_units_reserved_total") == orders


async def test_one_process_with_a_metrics_directory_counts_its_own_work(
    own_database: OwnDatabase, tmp_path: Path
) -> None:
    db = own_database
    directory = tmp_path / "metrics"
    async with (
        running_server(
            db.url,
            tmp_path / "serve.log",
            workers=1,
            env={"PROMETHEUS_MULTIPROC_DIR": str(directory)},
        ) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=30) as client,
    ):
        customer = await _shop(client, db, "SINGLE-1", 10)
        placed = await client.post(
            "/v1/orders",
            headers=db.service,
            json={"customer_id": customer, "lines": [{"sku": "SINGLE-1", "quantity": 2}]},
        )
        assert placed.status_code == 201, placed.text
        text = (await client.get("/metrics")).text
        assert _sample(text, "stockflow_orders_placed_total", outcome="accepted") == 1
        assert _sample(text, "stockflow_units_reserved_total") == 2
