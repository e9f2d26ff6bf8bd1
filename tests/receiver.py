"""A webhook receiver on loopback: a real HTTP server (uvicorn) that records what it gets
and answers as each test scripts it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tests.loopback import free_port, serving


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: str
    path: str


Answer = tuple[int, dict[str, str]]
Script = Callable[[Received], Awaitable[Answer]]


async def accept(_: Received) -> Answer:
    return 204, {}


@dataclass
class Receiver:
    port: int
    script: Script = accept
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender went away mid-request: nothing was delivered
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        request = Received(
            headers={k.decode(): v.decode() for k, v in scope["headers"]},
            body=b"".join(chunks).decode(),
            path=scope["path"],
        )
        async with self.arrived:
            self.received.append(request)
            self.arrived.notify_all()
        status, headers = await self.script(request)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def wait_for(self, count: int, within: float = 30.0) -> list[Received]:
        """At least ``count`` requests received; fails after ``within`` seconds."""
        async with asyncio.timeout(within), self.arrived:
            await self.arrived.wait_for(lambda: len(self.received) >= count)
        return list(self.received)


@contextlib.asynccontextmanager
async def running_receiver(script: Script = accept) -> AsyncIterator[Receiver]:
    receiver = Receiver(free_port(), script)
    async with serving(receiver.app, receiver.port):
        yield receiver
