"""``stockflow serve`` as a user starts it: a real process on loopback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from typer.testing import CliRunner

from stockflow.cli.main import app as cli

KEY = re.compile(r"sf_[0-9A-Za-z]{38}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def served(tmp_path: Path, *args: str) -> Iterator[tuple[str, Path]]:
    port = _free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "STOCKFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "STOCKFLOW_PORT": str(port),
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "stockflow.cli.main", "serve", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None:
                    raise AssertionError(log.read_text()) from None
                time.sleep(0.2)
        else:
            raise AssertionError(f"server did not start:\n{log.read_text()}")
        yield base, log
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_serve_demo_migrates_seeds_and_prints_a_working_key(tmp_path: Path) -> None:
    with served(tmp_path, "--demo") as (base, log):
        assert httpx.get(f"{base}/readyz").status_code == 200
        output = log.read_text()
        assert f"{base}/docs" in output
        match = KEY.search(output)
        assert match is not None, output
        headers = {"Authorization": f"Bearer {match.group(0)}"}
        products = httpx.get(f"{base}/v1/products?limit=100", headers=headers).json()["data"]
        assert len(products) == 5
        stock = httpx.get(f"{base}/v1/inventory/MUG-BLUE-330", headers=headers).json()
        assert stock["on_hand"] == 40
        # The out-of-stock tea backorders: its shortfall plus 20 %, in packs of 6, is ordered.
        customer = re.search(r"customer (cus_\w+)", output)
        assert customer is not None, output
        placed = httpx.post(
            f"{base}/v1/orders",
            json={
                "customer_id": customer.group(1),
                "lines": [{"sku": "TEA-EARLGREY-250", "quantity": 3}],
            },
            headers=headers,
        )
        assert placed.status_code == 201, placed.text
        assert placed.json()["lines"][0]["backordered"] == 3
        [po] = httpx.get(f"{base}/v1/purchase-orders", headers=headers).json()["data"]
        assert [line["quantity"] for line in po["lines"]] == [6]
        assert httpx.get(f"{base}/docs").status_code == 200
        assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == "Stockflow"


def test_a_second_demo_start_replaces_the_demo_key(tmp_path: Path) -> None:
    keys = []
    for _ in range(2):
        with served(tmp_path, "--demo") as (base, log):
            match = KEY.search(log.read_text())
            assert match is not None
            keys.append(match.group(0))
    with served(tmp_path) as (base, _log):
        old, new = ({"Authorization": f"Bearer {key}"} for key in keys)
        assert httpx.get(f"{base}/v1/products", headers=old).status_code == 401
        products = httpx.get(f"{base}/v1/products?limit=100", headers=new).json()["data"]
        assert len(products) == 5  # seeding twice adds nothing


def test_serve_no_migrate_is_not_ready(tmp_path: Path) -> None:
    with served(tmp_path, "--no-migrate") as (base, _log):
        assert httpx.get(f"{base}/readyz").status_code == 503


def test_every_command_has_help() -> None:
    commands = [
        ["--help"],
        ["serve", "--help"],
        ["db", "--help"],
        ["db", "upgrade", "--help"],
        ["db", "downgrade", "--help"],
        ["db", "current", "--help"],
        ["db", "check", "--help"],
        ["keys", "--help"],
        ["keys", "create", "--help"],
        ["keys", "list", "--help"],
        ["keys", "revoke", "--help"],
        ["inventory", "--help"],
        ["inventory", "reconcile", "--help"],
        ["maintenance", "--help"],
        ["maintenance", "run", "--help"],
    ]
    runner = CliRunner()
    for command in commands:
        result = runner.invoke(cli, command)
        assert result.exit_code == 0, (command, result.output)
        assert "Usage" in result.output
