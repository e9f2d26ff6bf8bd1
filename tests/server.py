"""A real ``stockflow serve`` process on loopback, for tests that need one.

The server runs in a session (process group) of its own, so that stopping or SIGKILLing it
also reaches uvicorn's worker processes when it runs with ``--workers N``. Every wait here
has a deadline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from stockflow.auth import service as auth_service
from stockflow.auth.roles import Principal, Role
from stockflow.auth.schemas import ApiKeyCreate
from stockflow.cli.main import app as cli_app
from stockflow.config import Settings
from stockflow.db.engine import Database

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def asyncpg_dsn(database_url: str) -> str:
    """The plain ``postgresql://`` form of a ``postgresql+asyncpg://`` URL, for asyncpg."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _signal_group(self, signum: int) -> None:
        # The server is the leader of its own process group (start_new_session), so the
        # group id is its pid: this reaches exactly the processes this helper started.
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL the server and its workers, as a crash or the OOM killer would."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        if self.process.poll() is not None:
            self._signal_group(signal.SIGKILL)  # leftover workers, if any
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)
        self._signal_group(signal.SIGKILL)  # workers that outlived their supervisor


async def _wait_until_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with httpx.AsyncClient(base_url=server.base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise AssertionError(f"server exited on start:\n{server.log()}")
            with suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"server not ready within {START_TIMEOUT} s:\n{server.log()}")


def _spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stockflow.cli.main", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: see RunningServer
        )


@asynccontextmanager
async def running_server(
    database_url: str,
    log_path: Path,
    *,
    workers: int = 1,
    migrate: bool = False,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[RunningServer]:
    """``python -m stockflow.cli.main serve`` on a free loopback port, ready when yielded."""
    port = free_port()
    args = ["serve", "--workers", str(workers)]
    if not migrate:
        args.append("--no-migrate")
    environment = {
        **os.environ,
        "STOCKFLOW_DATABASE_URL": database_url,
        "STOCKFLOW_HOST": "127.0.0.1",
        "STOCKFLOW_PORT": str(port),
        "STOCKFLOW_LOG_LEVEL": "warning",
        **(env or {}),
    }
    process = await asyncio.to_thread(_spawn, args, environment, log_path)
    server = RunningServer(process, f"http://127.0.0.1:{port}", log_path)
    try:
        await _wait_until_ready(server)
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def create_keys(database_url: str) -> dict[Role, dict[str, str]]:
    """One admin, staff and service key, straight in the database (the bootstrap an operator
    does with ``stockflow keys create``), as ready-made headers."""
    database = Database(Settings(database_url=database_url))
    headers: dict[Role, dict[str, str]] = {}
    try:
        async with database.transaction() as session:
            for role in (Role.ADMIN, Role.STAFF, Role.SERVICE):
                created = await auth_service.create_key(
                    session,
                    actor=Principal.command_line(),
                    data=ApiKeyCreate(name=f"test {role.value}", role=role),
                )
                headers[role] = {"Authorization": f"Bearer {created.key}"}
    finally:
        await database.dispose()
    return headers


async def reconcile(database_url: str) -> Result:
    """``stockflow inventory reconcile`` against this database, as an operator runs it.

    The command runs its own event loop, hence the thread.
    """
    runner = CliRunner()
    return await asyncio.to_thread(
        runner.invoke,
        cli_app,
        ["inventory", "reconcile"],
        env={"STOCKFLOW_DATABASE_URL": database_url},
    )


# Below uvicorn's default keep-alive timeout (5 s), which the server runs with.
KEEPALIVE_SECONDS = 2.0
CLIENT_TIMEOUT = httpx.Timeout(60.0)


def concurrent_client(base_url: str, connections: int = 250) -> httpx.AsyncClient:
    """A client that really opens one connection per in-flight request.

    Idle connections are dropped well before the server's 5 s keep-alive timeout: reusing
    one just as the server closes it fails the request with a read error that says
    nothing about the server. The timeout is long enough for hundreds of requests queueing
    on one row lock behind the server's connection pool.
    """
    limits = httpx.Limits(
        max_connections=connections,
        max_keepalive_connections=connections,
        keepalive_expiry=KEEPALIVE_SECONDS,
    )
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=CLIENT_TIMEOUT)


@dataclass(frozen=True)
class OwnDatabase:
    """A PostgreSQL database of one test's own, migrated, with one key per role."""

    name: str
    url: str
    keys: dict[Role, dict[str, str]]

    @property
    def staff(self) -> dict[str, str]:
        return self.keys[Role.STAFF]

    @property
    def service(self) -> dict[str, str]:
        return self.keys[Role.SERVICE]


class InFlight:
    """Counts requests in flight, to show that they did overlap."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def run(self, request: Awaitable[httpx.Response]) -> httpx.Response:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            return await request
        finally:
            self.now -= 1


def expect(response: httpx.Response, status: int) -> Any:
    """The JSON body of a response that must have this status."""
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def problem_slug(response: httpx.Response) -> str:
    """The problem type of a problem+json response, which must carry no trace."""
    assert response.headers["content-type"] == "application/problem+json", response.text
    assert "Traceback" not in response.text
    slug: str = response.json()["type"].removeprefix("/problems/")
    return slug


async def create_customers(client: httpx.AsyncClient, db: OwnDatabase, count: int) -> list[str]:
    """``count`` customers made through the API (by the service key), their ids."""
    responses = await asyncio.gather(
        *(
            client.post("/v1/customers", headers=db.service, json={"name": f"Customer {n}"})
            for n in range(count)
        )
    )
    return [expect(response, 201)["id"] for response in responses]
